//! `nf_conntrack_tuple`: the 5-tuple conntrack keys entries on, how a packet's tuple is read
//! (`nf_ct_get_tuple`), its inversion, zones, and the keyed hash that places it in a bucket
//! (spec §4.1, §4.2).
//!
//! Depends on `uapi` and `wire` only.

use crate::uapi::{
    AF_INET, AF_INET6, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPPROTO_UDPLITE,
};
use crate::wire::ip::L3;
use crate::wire::l4;
use crate::wire::rss::FlowEnds;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `enum ip_conntrack_dir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Original = 0,
    Reply = 1,
}

impl Direction {
    #[inline]
    pub fn flip(self) -> Direction {
        match self {
            Direction::Original => Direction::Reply,
            Direction::Reply => Direction::Original,
        }
    }
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A conntrack tuple. `src_u`/`dst_u` are the kernel's 16-bit "manipulable" parts in host
/// order: ports for TCP/UDP/UDPLITE/SCTP; for ICMP/ICMPv6 `src_u` is the echo id and `dst_u`
/// is `type << 8 | code`; for GRE the source and destination keys; 0 for generic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Tuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_u: u16,
    pub dst_u: u16,
    pub l3num: u8,
    pub protonum: u8,
}

/// How a protocol's `u` fields are printed and inverted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Kind {
    Ports,
    Icmp,
    Icmpv6,
    Gre,
    Generic,
}

/// Which tuple layout a protocol number uses (the tracker that handles it).
#[inline]
pub fn l4_kind(protonum: u8) -> L4Kind {
    match protonum {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => L4Kind::Ports,
        IPPROTO_ICMP => L4Kind::Icmp,
        IPPROTO_ICMPV6 => L4Kind::Icmpv6,
        IPPROTO_GRE => L4Kind::Gre,
        _ => L4Kind::Generic,
    }
}

/// ICMP type of the reply to a request (and back), for the types conntrack can invert
/// (`invmap` of nf_conntrack_proto_icmp.c, spec §4.1).
#[inline]
pub fn icmp_invert_type(t: u8) -> Option<u8> {
    match t {
        8 => Some(0),
        0 => Some(8),
        13 => Some(14),
        14 => Some(13),
        15 => Some(16),
        16 => Some(15),
        17 => Some(18),
        18 => Some(17),
        _ => None,
    }
}

/// ICMPv6 type inversion (spec §4.1): echo and node information.
#[inline]
pub fn icmpv6_invert_type(t: u8) -> Option<u8> {
    match t {
        128 => Some(129),
        129 => Some(128),
        139 => Some(140),
        140 => Some(139),
        _ => None,
    }
}

impl Tuple {
    pub fn new_v4(src: Ipv4Addr, dst: Ipv4Addr, protonum: u8, src_u: u16, dst_u: u16) -> Tuple {
        let mut t = Tuple { l3num: AF_INET, protonum, src_u, dst_u, ..Tuple::default() };
        t.src[..4].copy_from_slice(&src.octets());
        t.dst[..4].copy_from_slice(&dst.octets());
        t
    }

    pub fn new_v6(src: Ipv6Addr, dst: Ipv6Addr, protonum: u8, src_u: u16, dst_u: u16) -> Tuple {
        Tuple { src: src.octets(), dst: dst.octets(), src_u, dst_u, l3num: AF_INET6, protonum }
    }

    #[inline]
    pub fn kind(&self) -> L4Kind {
        l4_kind(self.protonum)
    }

    /// ICMP/ICMPv6 type (high byte of `dst_u`).
    #[inline]
    pub fn icmp_type(&self) -> u8 {
        (self.dst_u >> 8) as u8
    }

    /// ICMP/ICMPv6 code (low byte of `dst_u`).
    #[inline]
    pub fn icmp_code(&self) -> u8 {
        self.dst_u as u8
    }

    /// `nf_ct_invert_tuple`: the tuple of the other direction, or None where the protocol
    /// cannot invert it (ICMP types without a reply type).
    #[inline]
    pub fn invert(&self) -> Option<Tuple> {
        let mut r = Tuple {
            src: self.dst,
            dst: self.src,
            src_u: self.dst_u,
            dst_u: self.src_u,
            l3num: self.l3num,
            protonum: self.protonum,
        };
        match self.kind() {
            L4Kind::Icmp | L4Kind::Icmpv6 => {
                let inv = if self.kind() == L4Kind::Icmp {
                    icmp_invert_type(self.icmp_type())
                } else {
                    icmpv6_invert_type(self.icmp_type())
                }?;
                r.src_u = self.src_u;
                r.dst_u = (u16::from(inv) << 8) | u16::from(self.icmp_code());
            }
            L4Kind::Ports | L4Kind::Gre | L4Kind::Generic => {}
        }
        Some(r)
    }

    /// Source address as an `IpAddr`.
    pub fn src_addr(&self) -> std::net::IpAddr {
        addr(self.l3num, &self.src)
    }

    /// Destination address as an `IpAddr`.
    pub fn dst_addr(&self) -> std::net::IpAddr {
        addr(self.l3num, &self.dst)
    }
}

/// `nf_ct_get_tuple`: the tuple of a packet whose L3 header was parsed into `l3`, with `l4b`
/// its L4 bytes. None where the protocol's part cannot be read (short header, GRE version 1
/// that is not PPTP).
pub fn get_tuple(l3: &L3, l4b: &[u8]) -> Option<Tuple> {
    let mut t =
        Tuple { src: l3.src, dst: l3.dst, l3num: l3.l3num, protonum: l3.protonum, src_u: 0, dst_u: 0 };
    match l4_kind(l3.protonum) {
        L4Kind::Ports => {
            let (s, d) = l4::ports(l4b)?;
            t.src_u = s;
            t.dst_u = d;
        }
        L4Kind::Icmp | L4Kind::Icmpv6 => {
            let h = l4::icmp(l4b)?;
            t.src_u = h.id;
            t.dst_u = (u16::from(h.typ) << 8) | u16::from(h.code);
        }
        L4Kind::Gre => {
            if let Some(h) = l4::gre(l4b) {
                if h.version == 1 {
                    if h.protocol != 0x880b {
                        return None;
                    }
                    // PPTP: destination key is the call id; the source key would come from the
                    // PPTP helper's keymap, which nfct does not have yet.
                    t.dst_u = h.key? as u16;
                }
            }
        }
        L4Kind::Generic => {}
    }
    Some(t)
}

/// The tuple of an IP packet of family `l3num` starting at its L3 header, if it has one.
pub fn packet_tuple(l3num: u8, pkt: &[u8]) -> Option<Tuple> {
    let l3 = crate::wire::ip::get_l4proto(l3num, pkt).ok()?;
    get_tuple(&l3, pkt.get(l3.l4_off..).unwrap_or(&[]))
}

/// An address stored in a 16-byte tuple field, for the given family.
pub fn addr(l3num: u8, a: &[u8; 16]) -> std::net::IpAddr {
    if l3num == AF_INET {
        std::net::IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    } else {
        std::net::IpAddr::V6(Ipv6Addr::from(*a))
    }
}

/// `struct nf_conntrack_zone`: an id and the directions it applies to (spec §15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Zone {
    pub id: u16,
    /// `NF_CT_ZONE_DIR_ORIG` (1) | `NF_CT_ZONE_DIR_REPL` (2); 3 = both, the default.
    pub dir: u8,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone { id: 0, dir: Zone::DIR_BOTH }
    }
}

impl Zone {
    pub const DIR_ORIG: u8 = 1;
    pub const DIR_REPL: u8 = 2;
    pub const DIR_BOTH: u8 = 3;

    /// `nf_ct_zone_id`: the zone id that applies to one direction (0 where it does not apply).
    #[inline]
    pub fn id_for(&self, dir: Direction) -> u16 {
        let bit = match dir {
            Direction::Original => Zone::DIR_ORIG,
            Direction::Reply => Zone::DIR_REPL,
        };
        if self.dir & bit != 0 {
            self.id
        } else {
            0
        }
    }
}

/// The keyed hash of `hash_conntrack_raw`: a hash of the tuple and the zone id of the node's
/// direction, with a 128-bit key that is random per table unless a seed is given. The kernel
/// uses SipHash-2-4 with a key drawn at boot; no re-implementation can reproduce its bucket
/// placement (spec §4.2), only its effects, which need a keyed hash whose buckets are
/// uniformly random (`buckets_fill_as_random_placement_does` holds it to that).
///
/// Each end of the tuple is one word (an IPv4 address and its port, key or ICMP field exactly,
/// an IPv6 address folded with the key first), and a hash is two keyed folded multiplications
/// (64×64 → 128 bits, the halves XORed, as foldhash and wyhash do): one of the two ends in
/// their order, with the protocol numbers and the zone, mixed once more (a multiply-xorshift);
/// and one of the two ends in canonical order (the lesser first, an ICMP id on both), which is
/// the same for both directions of a flow, mixed the same way. Four multiplications for an
/// IPv4 tuple, where the `foldhash` crate took three before the flow part was needed
/// (`benches/RESULTS.md`).
/// The top [`RANGE_BITS`] bits of the hash, which of 256 ranges of buckets it falls in, come
/// from the second: both nodes of an entry lie in one range. A threaded replay gives each
/// worker the flows of its own ranges ([`Self::flow_range`]) where it can (TCP, SCTP and DCCP,
/// which receive-side scaling hashes on their ports too), so that the buckets, chains and lock
/// stripes of those flows are their worker's alone (`benches/RESULTS.md`).
#[derive(Clone, Debug)]
pub struct TupleHasher {
    /// Keys: the ordered fold (0, 1), the canonical fold (2, 3), an IPv6 address's fold (4, 5).
    k: [u64; 6],
}

/// Bits at the top of a tuple's hash that depend on its flow alone (both directions alike).
pub const RANGE_BITS: u32 = 8;
const FLOW_MASK: u32 = !(u32::MAX >> RANGE_BITS);

/// 64×64 → 128-bit multiplication folded to 64 bits (the two halves XORed).
#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A multiply-xorshift: one folded multiplication leaves keys that differ in one field (a
/// client's ports) at fixed offsets from each other, more evenly spread than at random.
#[inline]
fn mix(y: u64, m: u64) -> u64 {
    (y ^ (y >> 29)).wrapping_mul(m)
}

/// SplitMix64: spreads a 128-bit key over the hash's six key words.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl TupleHasher {
    /// A hasher with a random key, as the kernel draws one per boot.
    pub fn random() -> TupleHasher {
        let mut b = [0u8; 16];
        // A failing OS RNG leaves the key zero: still a valid (if predictable) hash.
        let _ = getrandom::fill(&mut b);
        TupleHasher::from_key(b)
    }

    /// A hasher with a fixed key, for reproducible runs.
    pub fn seeded(seed: u64) -> TupleHasher {
        let k0 = seed ^ 0x6e66_6374_5f6b_3030;
        let k1 = seed.rotate_left(32) ^ 0x6e66_6374_5f6b_3131;
        TupleHasher::with_keys(k0, k1)
    }

    fn from_key(b: [u8; 16]) -> TupleHasher {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&b[..8]);
        k1.copy_from_slice(&b[8..]);
        TupleHasher::with_keys(u64::from_le_bytes(k0), u64::from_le_bytes(k1))
    }

    fn with_keys(k0: u64, k1: u64) -> TupleHasher {
        let mut k = [0u64; 6];
        let mut x = k0;
        for (i, w) in k.iter_mut().enumerate() {
            x = splitmix(x ^ k1.rotate_left(i as u32 * 11));
            *w = x;
        }
        TupleHasher { k }
    }

    /// An address as a word: an IPv4 one shifted to leave the low 16 bits for a port, an IPv6
    /// one folded with the key.
    #[inline]
    fn addr_word(&self, v6: bool, addr: u128) -> u64 {
        if v6 {
            folded_mul(addr as u64 ^ self.k[4], (addr >> 64) as u64 ^ self.k[5])
        } else {
            (addr as u64) << 16
        }
    }

    /// The flow bits of a hash (its top `RANGE_BITS`, the rest zero) from the two ends' words
    /// (in either order) and the protocol word.
    #[inline]
    fn flow_bits(&self, a: u64, b: u64, proto: u64) -> u32 {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ((mix(folded_mul(lo ^ self.k[2], hi ^ self.k[3] ^ proto), 0x94d0_49bb_1331_11eb) >> 32) as u32)
            & FLOW_MASK
    }

    /// Which of the 2^`RANGE_BITS` ranges of buckets the tuples of a flow seen on the wire
    /// hash into, in every zone: for TCP, SCTP and DCCP, the range of both directions' tuples;
    /// for other protocols (whose ports or ids the wire's ends leave out, so that a datagram's
    /// fragments go where its flow goes) only a range of the same spread. What a threaded
    /// replay chooses a packet's worker by.
    #[inline]
    pub fn flow_range(&self, f: &FlowEnds) -> u32 {
        let end = |(addr, port): (u128, u16)| self.addr_word(f.v6, addr) ^ u64::from(port);
        let l3 = if f.v6 { AF_INET6 } else { AF_INET };
        self.flow_bits(end(f.lo), end(f.hi), proto_word(l3, f.proto)) >> (32 - RANGE_BITS)
    }

    /// 32-bit hash of a tuple in a zone (the kernel xors the zone id into the key).
    #[inline]
    pub fn hash(&self, t: &Tuple, zone_id: u16) -> u32 {
        let v6 = t.l3num != AF_INET;
        let (s, d) = if v6 {
            (
                self.addr_word(true, u128::from_be_bytes(t.src)),
                self.addr_word(true, u128::from_be_bytes(t.dst)),
            )
        } else {
            let s = u32::from_be_bytes([t.src[0], t.src[1], t.src[2], t.src[3]]);
            let d = u32::from_be_bytes([t.dst[0], t.dst[1], t.dst[2], t.dst[3]]);
            (u64::from(s) << 16, u64::from(d) << 16)
        };
        let pw = proto_word(t.l3num, t.protonum);
        // Ordered: each end with its own `u` field (port, GRE key; for ICMP the id, then the
        // type and code, which differ between directions).
        let (a, b) = (s ^ u64::from(t.src_u), d ^ u64::from(t.dst_u));
        // The zone above an IPv4 end's 48 bits, where it cannot stand for another port.
        let ordered = folded_mul(a ^ self.k[0] ^ u64::from(zone_id) << 48, b ^ self.k[1] ^ pw);
        // Canonical: ports swap with the addresses when a tuple is inverted, an ICMP id stays.
        let flow = if matches!(l4_kind(t.protonum), L4Kind::Icmp | L4Kind::Icmpv6) {
            self.flow_bits(s ^ u64::from(t.src_u), d ^ u64::from(t.src_u), pw)
        } else {
            self.flow_bits(a, b, pw)
        };
        flow | ((mix(ordered, 0xbf58_476d_1ce4_e5b9) >> 32) as u32 & !FLOW_MASK)
    }
}

/// The protocol numbers as a word above an IPv4 end's 48 bits.
#[inline]
fn proto_word(l3num: u8, protonum: u8) -> u64 {
    u64::from(protonum) << 56 | u64::from(l3num) << 48
}

/// A tuple's hash in zone id 0, computed ahead of the packet (when a window of packets is
/// prefetched): conntrack uses it instead of hashing again when the packet's tuple and zone
/// turn out to be these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashHint {
    pub tuple: Tuple,
    pub hash: u32,
}

/// `reciprocal_scale`: map a 32-bit hash onto `size` buckets.
#[inline]
pub fn reciprocal_scale(hash: u32, size: u32) -> u32 {
    ((u64::from(hash) * u64::from(size)) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invert_ports_swaps() {
        let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, 1234, 53);
        let r = t.invert().unwrap();
        assert_eq!(r.src[..4], [10, 0, 0, 2]);
        assert_eq!((r.src_u, r.dst_u), (53, 1234));
        assert_eq!(r.invert().unwrap(), t);
    }

    #[test]
    fn invert_icmp_keeps_id_and_code() {
        let t = Tuple::new_v4("1.1.1.1".parse().unwrap(), "2.2.2.2".parse().unwrap(), 1, 77, (8 << 8) | 5);
        let r = t.invert().unwrap();
        assert_eq!(r.src_u, 77);
        assert_eq!((r.icmp_type(), r.icmp_code()), (0, 5));
        for (a, b) in [(13, 14), (15, 16), (17, 18)] {
            let t = Tuple { dst_u: a << 8, ..t };
            assert_eq!(t.invert().unwrap().icmp_type(), b as u8);
        }
        assert!(Tuple { dst_u: 9 << 8, ..t }.invert().is_none());
        assert!(Tuple { dst_u: 3 << 8, ..t }.invert().is_none());
    }

    #[test]
    fn invert_icmpv6() {
        let t = Tuple::new_v6("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap(), 58, 9, 128 << 8);
        assert_eq!(t.invert().unwrap().icmp_type(), 129);
        assert_eq!(Tuple { dst_u: 139 << 8, ..t }.invert().unwrap().icmp_type(), 140);
        assert!(Tuple { dst_u: 135 << 8, ..t }.invert().is_none());
    }

    #[test]
    fn hash_depends_on_zone_and_seed() {
        let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 6, 1, 2);
        let h = TupleHasher::seeded(1);
        assert_eq!(h.hash(&t, 0), TupleHasher::seeded(1).hash(&t, 0));
        assert_ne!(h.hash(&t, 0), h.hash(&t, 7));
        assert_ne!(h.hash(&t, 0), TupleHasher::seeded(2).hash(&t, 0));
        assert!(reciprocal_scale(u32::MAX, 512) < 512);
    }

    /// Both directions of a flow hash into one range of buckets, in every zone, for every
    /// kind of tuple; and what a threaded replay computes from a TCP, SCTP or DCCP packet on
    /// the wire is that range.
    #[test]
    fn both_directions_share_their_flow_range() {
        let h = TupleHasher::seeded(7);
        let range = |t: &Tuple, z: u16| h.hash(t, z) >> (32 - RANGE_BITS);
        let (a, b): (Ipv4Addr, Ipv4Addr) = ("10.1.2.3".parse().unwrap(), "192.0.2.9".parse().unwrap());
        let (c, d): (Ipv6Addr, Ipv6Addr) =
            ("2001:db8::1".parse().unwrap(), "2001:db8:1::77".parse().unwrap());
        let mut seen = std::collections::HashSet::new();
        for i in 0..2_000u16 {
            let (p, q) = (1024 + i * 7, 80 + i % 5);
            let tuples = [
                Tuple::new_v4(a, b, IPPROTO_TCP, p, q),
                Tuple::new_v4(a, b, IPPROTO_UDP, p, q),
                Tuple::new_v4(a, b, IPPROTO_SCTP, p, q),
                Tuple::new_v4(a, b, IPPROTO_GRE, p, q),
                Tuple::new_v4(a, b, IPPROTO_ICMP, i, 8 << 8),
                Tuple::new_v6(c, d, IPPROTO_TCP, p, q),
                Tuple::new_v6(c, d, IPPROTO_ICMPV6, i, 128 << 8),
                Tuple::new_v4(a, b, 47 + (i % 3) as u8 * 50, 0, 0),
            ];
            for t in tuples {
                let r = t.invert().unwrap();
                for z in [0, 9] {
                    assert_eq!(range(&t, z), range(&r, z), "{t:?} in zone {z}");
                }
                seen.insert(range(&t, 0));
                if matches!(t.protonum, IPPROTO_TCP | IPPROTO_SCTP) {
                    let v6 = t.l3num == AF_INET6;
                    let num = |x: &[u8; 16]| {
                        if v6 {
                            u128::from_be_bytes(*x)
                        } else {
                            u128::from(u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
                        }
                    };
                    let ends = FlowEnds::new(v6, t.protonum, (num(&t.src), t.src_u), (num(&t.dst), t.dst_u));
                    assert_eq!(h.flow_range(&ends), range(&t, 0), "{t:?} from the wire");
                }
            }
        }
        assert_eq!(seen.len(), 1 << RANGE_BITS, "flows fall in every range");
    }

    /// The zone changes a tuple's place without standing in for one of its fields: a tuple in
    /// zone `z` does not share its bucket bits with the same tuple in zone 0 whose source port
    /// differs by `z` (as XORing the zone into the port's bits would make it).
    #[test]
    fn zones_do_not_alias_ports() {
        let h = TupleHasher::seeded(3);
        let t = |p: u16| {
            Tuple::new_v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), IPPROTO_UDP, p, 53)
        };
        for z in 1..200u16 {
            let p = 4000 + z * 3;
            assert_ne!(h.hash(&t(p), z) & !FLOW_MASK, h.hash(&t(p ^ z), 0) & !FLOW_MASK, "zone {z}");
            assert_ne!(h.hash(&t(p), z), h.hash(&t(p), 0), "zone {z}");
        }
    }

    /// A threaded replay's workers, each given the flows of a run of ranges, get the shares of
    /// random placement: 100,000 TCP flows from consecutive addresses and ports, over 2, 3 and
    /// 4 workers, each within 4.5 standard deviations of its ranges' share.
    #[test]
    fn flow_ranges_spread_flows_evenly_over_workers() {
        const N: u32 = 100_000;
        let h = TupleHasher::seeded(11);
        for workers in [2usize, 3, 4] {
            let mut got = vec![0u32; workers];
            for i in 0..N {
                let ends = FlowEnds::new(
                    false,
                    IPPROTO_TCP,
                    (u128::from(0x0a00_0000 | (i / 7)), 1024 + (i % 7) as u16 * 1000),
                    (u128::from(0xc000_0201u32), 80),
                );
                got[(h.flow_range(&ends) as usize * workers) >> RANGE_BITS] += 1;
            }
            for (w, g) in got.into_iter().enumerate() {
                let ranges = (0..1usize << RANGE_BITS).filter(|r| (r * workers) >> RANGE_BITS == w).count();
                let p = ranges as f64 / f64::from(1u32 << RANGE_BITS);
                let (share, sd) = (f64::from(N) * p, (f64::from(N) * p * (1.0 - p)).sqrt());
                assert!((f64::from(g) - share).abs() < 4.5 * sd, "{workers} workers: {g} of {share:.0}");
            }
        }
    }

    /// Tuples as structured as real traffic gets (one client's consecutive source ports to one
    /// server; consecutive addresses on one port; each tuple's reply; IPv6 neighbours) fill the
    /// buckets as uniformly random placement does: the share of empty buckets and the longest
    /// chain are those of a Poisson distribution, for every kind and several keys.
    #[test]
    fn buckets_fill_as_random_placement_does() {
        const BUCKETS: u32 = 1 << 16;
        let n = 3 * BUCKETS as usize / 2; // load 1.5, a full table's two nodes per bucket
        fn v4(a: u32, b: u32, sp: u16, dp: u16) -> Tuple {
            Tuple::new_v4(std::net::Ipv4Addr::from(a), std::net::Ipv4Addr::from(b), 6, sp, dp)
        }
        type Kind = (&'static str, fn(usize) -> Tuple);
        let kinds: [Kind; 7] = [
            ("one client's ports", |i| {
                v4(0x0a00_0001, 0xc000_0207, (1024 + i % 60_000) as u16, 443 + (i / 60_000) as u16)
            }),
            // Flows between one pair of hosts that differ only in their ports or ICMP ids must
            // spread as others do (a placement by addresses alone for UDP, which a threaded
            // replay's worker choice uses, would put all of one resolver's queries in a few
            // chains: `benches/RESULTS.md`).
            ("one resolver's queries", |i| {
                let t = v4(0x0a00_0035, 0xc000_0235, (i % 65_536) as u16, 53 + (i / 65_536) as u16);
                Tuple { protonum: 17, ..t }
            }),
            ("one host's pings", |i| {
                let t = v4(0x0a00_0001, 0xc000_0207 + (i / 65_536) as u32, (i % 65_536) as u16, 8 << 8);
                Tuple { protonum: 1, ..t }
            }),
            ("consecutive addresses", |i| v4(0x0a00_0000 + i as u32, 0xc000_0207, 40_000, 53)),
            ("their replies", |i| v4(0x0a00_0000 + i as u32, 0xc000_0207, 40_000, 53).invert().unwrap()),
            ("address and port together", |i| {
                v4(0x0a00_0000 + (i / 256) as u32, 0x0a01_0000 + (i % 256) as u32, 5000 + (i % 7) as u16, 80)
            }),
            ("IPv6 neighbours", |i| {
                let s = std::net::Ipv6Addr::from(0xfd00_u128 << 112 | i as u128);
                Tuple::new_v6(s, "fd00::1".parse().unwrap(), 17, 5353, 5353)
            }),
        ];
        for seed in [1, 2, 3] {
            let h = TupleHasher::seeded(seed);
            for (what, make) in &kinds {
                let mut load = vec![0u32; BUCKETS as usize];
                for i in 0..n {
                    load[reciprocal_scale(h.hash(&make(i), 0), BUCKETS) as usize] += 1;
                }
                let empty = load.iter().filter(|&&c| c == 0).count() as f64 / f64::from(BUCKETS);
                let longest = load.iter().max().copied().unwrap_or(0);
                // Poisson(1.5): e^-1.5 = 0.223 of the buckets empty (the standard deviation of
                // that share is 0.0016 here); the longest of 65,536 chains is 8 or 9, rarely 10.
                assert!(
                    (empty - 0.2231).abs() < 0.01,
                    "{what}, seed {seed}: {empty:.4} of the buckets empty"
                );
                assert!(longest <= 11, "{what}, seed {seed}: a chain of {longest}");
            }
        }
        // A table of 256 buckets has one a range: its buckets are the flow bits alone, and they
        // too fill as random placement does (over 40 keys, so that the share is exact enough).
        for (what, make) in &kinds {
            let mut empty = 0usize;
            for seed in 0..40 {
                let h = TupleHasher::seeded(seed);
                let mut load = [0u32; 256];
                for i in 0..384 {
                    load[reciprocal_scale(h.hash(&make(i * 97), 0), 256) as usize] += 1;
                }
                empty += load.iter().filter(|&&c| c == 0).count();
            }
            let share = empty as f64 / (40.0 * 256.0);
            assert!((share - 0.2231).abs() < 0.02, "{what}, 256 buckets: {share:.4} of them empty");
        }
        // And neighbours land independently: where a flow's successor (the next port, address
        // or id) falls relative to it takes nearly every one of the 256 offsets, as it would at
        // random (about 251 of them in 1,000 pairs), not a few.
        let h = TupleHasher::seeded(5);
        for (what, make) in &kinds {
            let range = |i: usize| reciprocal_scale(h.hash(&make(i), 0), 256);
            let steps: std::collections::HashSet<u32> =
                (0..1000).map(|i| range(i + 1).wrapping_sub(range(i)) % 256).collect();
            assert!(steps.len() > 230, "{what}: {} offsets between neighbours", steps.len());
        }
    }
}
