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
/// uniformly random. nfct uses foldhash (the `foldhash` crate's quality variant: folded 64×64-bit
/// multiplications with the key), a few instructions a tuple where SipHash-1-3 took about 110.
#[derive(Clone, Debug)]
pub struct TupleHasher {
    k0: u64,
    shared: foldhash::SharedSeed,
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
        TupleHasher { k0, shared: foldhash::SharedSeed::from_u64(k1) }
    }

    fn from_key(b: [u8; 16]) -> TupleHasher {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&b[..8]);
        k1.copy_from_slice(&b[8..]);
        TupleHasher {
            k0: u64::from_le_bytes(k0),
            shared: foldhash::SharedSeed::from_u64(u64::from_le_bytes(k1)),
        }
    }

    /// 32-bit hash of a tuple in a zone (the kernel xors the zone id into the key).
    #[inline]
    pub fn hash(&self, t: &Tuple, zone_id: u16) -> u32 {
        use std::hash::Hasher;
        let mut h = foldhash::quality::FoldHasher::with_seed(self.k0 ^ u64::from(zone_id), &self.shared);
        // What the kernel hashes (both addresses, both ports, the two protocol numbers), in as
        // few words as hold it: the addresses in one (IPv4) or two (IPv6), the rest in one.
        let ends = u64::from(t.src_u) << 48
            | u64::from(t.dst_u) << 32
            | u64::from(t.l3num) << 8
            | u64::from(t.protonum);
        if t.l3num == AF_INET {
            let (s, d) = (
                u32::from_be_bytes([t.src[0], t.src[1], t.src[2], t.src[3]]),
                u32::from_be_bytes([t.dst[0], t.dst[1], t.dst[2], t.dst[3]]),
            );
            h.write_u64(u64::from(s) << 32 | u64::from(d));
            h.write_u64(ends);
        } else {
            h.write_u128(u128::from_be_bytes(t.src));
            h.write_u128(u128::from_be_bytes(t.dst));
            h.write_u64(ends);
        }
        let x = h.finish();
        (x ^ (x >> 32)) as u32
    }
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
    }
}
