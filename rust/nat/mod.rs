//! NAT as Linux 6.18 does it (`nf_nat_core.c`, `nf_nat_proto.c`, `nf_nat_masquerade.c`,
//! `nf_nat_redirect.c`): a connection's binding chosen once, on its first packet
//! (`nf_nat_setup_info`: the reply tuple the translated connection will be known by, unique
//! in the table), the packets of both directions rewritten to follow it (`nf_nat_packet`), and
//! ICMP errors about a translated connection translated back (`nf_nat_icmp_reply_translation`).
//!
//! The choice is the kernel's: the original tuple kept when it is free and in range; for
//! source NAT an existing mapping of the same source reused; otherwise the address from the
//! range by the kernel's hash of the addresses (`find_best_ips_proto`, Bob Jenkins' lookup3
//! as `jhash2`), and the port by a bounded search from a random offset (128, 64, 32, 16 and 8
//! attempts: it can give up before the range is full, and the clash then drops the packet at
//! confirmation). Random numbers come from the namespace's seeded generator.
//!
//! Depends on `core`, `conn`, `tuple`, `fib`, `wire` and `uapi`.

pub mod manip;

use crate::core::Conntrack;
use crate::fib::{Dev, Fib};
use crate::tuple::{Direction, Tuple, Zone};
use crate::uapi::{
    Hook, AF_INET, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    IPS_CONFIRMED, IPS_DST_NAT, IPS_DST_NAT_DONE, IPS_NAT_DONE_MASK, IPS_NAT_MASK, IPS_SRC_NAT,
    IPS_SRC_NAT_DONE, NF_ACCEPT, NF_DROP,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;

/// Which side of a packet NAT rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Manip {
    Src,
    Dst,
}

impl Manip {
    /// `HOOK2MANIP`: source NAT at POST_ROUTING and LOCAL_IN, destination NAT at PRE_ROUTING
    /// and LOCAL_OUT.
    pub fn of_hook(hook: Hook) -> Manip {
        match hook {
            Hook::PostRouting | Hook::LocalIn => Manip::Src,
            _ => Manip::Dst,
        }
    }

    fn flip(self) -> Manip {
        match self {
            Manip::Src => Manip::Dst,
            Manip::Dst => Manip::Src,
        }
    }

    /// The status bit saying this side is translated, and its `_DONE` bit.
    fn bits(self) -> (u32, u32) {
        match self {
            Manip::Src => (IPS_SRC_NAT, IPS_SRC_NAT_DONE),
            Manip::Dst => (IPS_DST_NAT, IPS_DST_NAT_DONE),
        }
    }
}

/// `NF_NAT_RANGE_*` flags.
pub const RANGE_MAP_IPS: u32 = 1;
pub const RANGE_PROTO_SPECIFIED: u32 = 2;
pub const RANGE_PROTO_RANDOM: u32 = 4;
pub const RANGE_PERSISTENT: u32 = 8;
pub const RANGE_PROTO_RANDOM_FULLY: u32 = 16;
pub const RANGE_PROTO_OFFSET: u32 = 32;
pub const RANGE_PROTO_RANDOM_ALL: u32 = RANGE_PROTO_RANDOM | RANGE_PROTO_RANDOM_FULLY;

/// `struct nf_nat_range2`: addresses and ports a binding may take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatRange {
    pub flags: u32,
    /// Addresses in tuple layout (IPv4 in the first 4 bytes).
    pub min_addr: [u8; 16],
    pub max_addr: [u8; 16],
    pub min_proto: u16,
    pub max_proto: u16,
}

/// `NF_NAT_MAX_ATTEMPTS`: the first round of the port search.
const MAX_ATTEMPTS: u32 = 128;

/// A source-NAT mapping's key: original source address, port, protocol and zone id.
type SrcKey = ([u8; 16], u16, u8, u16);

/// The source-NAT mappings by original source (`nf_nat_bysource`): each key's entries that
/// went through source NAT setup (as handles), newest last. Handles of entries that are gone
/// are skipped when met and swept out as the map grows.
#[derive(Debug, Default)]
pub struct NatState {
    bysource: Mutex<BySource>,
}

#[derive(Debug, Default)]
struct BySource {
    /// Keyed by packet data: the standard library's randomly keyed SipHash, so a capture
    /// cannot choose colliding keys.
    map: HashMap<SrcKey, Vec<(u32, u32)>>,
    /// The size at which the next sweep happens.
    sweep_at: usize,
}

impl NatState {
    fn add(&self, ct: &Conntrack, orig: &Tuple, zone: Zone, slot: u32, gen: u32) {
        let key = (orig.src, orig.src_u, orig.protonum, zone.id_for(Direction::Original));
        let mut m = self.bysource.lock();
        if m.map.len() >= m.sweep_at.max(4096) {
            // `nf_nat_cleanup_conntrack` unhashes an entry when it is freed; here the handles of
            // freed entries go in a sweep, amortised over the adds that grew the map.
            m.map.retain(|_, v| {
                v.retain(|&(s, g)| ct.with_conn(s, g, |_| ()).is_some());
                !v.is_empty()
            });
            m.sweep_at = m.map.len() * 2;
        }
        let v = m.map.entry(key).or_default();
        v.retain(|&(s, g)| ct.with_conn(s, g, |_| ()).is_some());
        v.push((slot, gen));
    }

    /// The candidates mapped from this source, newest first.
    fn candidates(&self, t: &Tuple, zone: Zone) -> Vec<(u32, u32)> {
        let key = (t.src, t.src_u, t.protonum, zone.id_for(Direction::Original));
        self.bysource.lock().map.get(&key).map(|v| v.iter().rev().copied().collect()).unwrap_or_default()
    }
}

/// Where NAT works: the namespace's conntrack and mappings, the time, a random source.
pub struct NatEnv<'a> {
    pub ct: &'a Conntrack,
    pub state: &'a NatState,
    pub now: u64,
    pub random: &'a dyn Fn() -> u32,
}

/// An entry asking for a binding: its handle, original tuple and zone.
#[derive(Clone, Copy, Debug)]
struct Asking {
    slot: u32,
    gen: u32,
    orig: Tuple,
    zone: Zone,
}

/// Whether the entry's `manip` side is set up (`nf_nat_initialized`).
pub fn initialized(status: u32, manip: Manip) -> bool {
    status & manip.bits().1 != 0
}

/// `nf_nat_setup_info`: gives the (unconfirmed) entry its binding for `manip` within `range`.
/// A confirmed entry is never bound anew. Returns the verdict (NF_ACCEPT).
pub fn setup_info(env: &NatEnv<'_>, slot: u32, gen: u32, range: &NatRange, manip: Manip) -> u32 {
    let Some((orig, reply, zone, status)) =
        env.ct.with_conn(slot, gen, |c| (c.orig, c.tuple(Direction::Reply), c.zone, c.status))
    else {
        return NF_ACCEPT;
    };
    if status & IPS_CONFIRMED != 0 || initialized(status, manip) {
        return NF_ACCEPT;
    }
    // What we have looks like the inverse of the reply (earlier manips included).
    let Some(curr) = reply.invert() else { return NF_ACCEPT };
    let asking = Asking { slot, gen, orig, zone };
    let new = unique_tuple(env, &curr, range, asking, manip);
    let (bit, done) = manip.bits();
    let changed = new != curr;
    let reply = new.invert();
    env.ct.with_conn_mut(slot, gen, |c| {
        if changed {
            if let Some(r) = reply {
                c.set_reply(r);
                c.status |= bit;
            }
        }
        c.status |= done;
    });
    if manip == Manip::Src {
        env.state.add(env.ct, &orig, zone, slot, gen);
    }
    NF_ACCEPT
}

/// `nf_nat_alloc_null_binding`: the binding of an entry no rule translated at this hook: its
/// address kept, its port changed only if the tuple it has is taken.
pub fn null_binding(env: &NatEnv<'_>, slot: u32, gen: u32, hook: Hook) -> u32 {
    let manip = Manip::of_hook(hook);
    let Some(reply) = env.ct.with_conn(slot, gen, |c| c.tuple(Direction::Reply)) else { return NF_ACCEPT };
    let ip = match manip {
        Manip::Src => reply.dst,
        Manip::Dst => reply.src,
    };
    let range = NatRange { flags: RANGE_MAP_IPS, min_addr: ip, max_addr: ip, ..NatRange::default() };
    setup_info(env, slot, gen, &range, manip)
}

/// `nf_nat_used_tuple`: whether an entry other than the asking one would answer to `t`'s
/// reply.
fn used(env: &NatEnv<'_>, t: &Tuple, a: Asking) -> bool {
    match t.invert() {
        Some(r) => env.ct.tuple_taken(&r, a.zone, (a.slot, a.orig), env.now),
        None => false,
    }
}

/// The last attempts of a port search (`attempts_left` at most this many, in any round) in
/// which a new TCP connection may take the tuple of a closing one.
const HARDER_THRESH: u32 = MAX_ATTEMPTS / 4;

/// The uniqueness check of the port search's attempt with `left` attempts to go in its round
/// (`left` counts down to 1). Observed on 6.18 (tests/live/test_nat_kernel.py):
///
/// * In the last [`HARDER_THRESH`] (32) attempts of a round, for a TCP entry in SYN_SENT (a
///   connection opened by a SYN), the check is a plain lookup of the reply the candidate would
///   have: it does not count `found` (a 65-port search that meets 64 taken ports counts 32).
/// * Found there as another entry's reply, an entry in TIME_WAIT or CLOSE whose original
///   direction's `td_end` is before the new SYN's (32-bit serial order: the SYN with its
///   sequence number at or after the old end, e.g. 1002 after a FIN at 1001; not 2^31 or more
///   beyond it) is deleted (a DESTROY event) and its tuple reused. CLOSE_WAIT, LAST_ACK,
///   FIN_WAIT, SYN_RECV, ESTABLISHED and SYN_SENT entries are not; nor is anything for UDP or
///   for TCP entries picked up from the middle of a connection.
/// * Found as another entry's original tuple: taken.
fn used_harder(env: &NatEnv<'_>, t: &Tuple, a: Asking, left: u32) -> bool {
    use crate::conn::state::{tcp, ProtoState};
    if left > HARDER_THRESH || t.protonum != IPPROTO_TCP {
        return used(env, t, a);
    }
    let syn_end = env.ct.with_conn(a.slot, a.gen, |c| match &c.proto {
        ProtoState::Tcp(st) if st.state == tcp::SYN_SENT => Some(st.seen[0].td_end),
        _ => None,
    });
    let Some(Some(syn_end)) = syn_end else { return used(env, t, a) };
    let Some(r) = t.invert() else { return false };
    let Some((slot, gen, dir)) = env.ct.find_get(&r, a.zone, env.now) else { return false };
    let taken = if slot == a.slot || dir == Direction::Original {
        true
    } else {
        let closing = env.ct.with_conn(slot, gen, |c| match &c.proto {
            ProtoState::Tcp(st) => {
                matches!(st.state, tcp::TIME_WAIT | tcp::CLOSE)
                    && (syn_end.wrapping_sub(st.seen[0].td_end) as i32) > 0
            }
            _ => false,
        });
        !(closing == Some(true) && env.ct.delete(slot, gen, env.now))
    };
    env.ct.put(slot, gen);
    taken
}

/// `nf_inet_addr` comparison for the tuple layout (IPv4 in the first 4 bytes).
fn addr_bytes(t: &Tuple, a: &[u8; 16]) -> usize {
    if t.l3num == AF_INET {
        let _ = a;
        4
    } else {
        16
    }
}

/// `nf_nat_inet_in_range` on the source (the only side it is used for).
fn addr_in_range(t: &Tuple, r: &NatRange) -> bool {
    let n = addr_bytes(t, &t.src);
    t.src[..n] >= r.min_addr[..n] && t.src[..n] <= r.max_addr[..n]
}

/// Whether a protocol has a part NAT maps (ports, ICMP id).
fn has_proto_part(p: u8) -> bool {
    matches!(p, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_ICMP | IPPROTO_ICMPV6)
}

/// `l4proto_in_range`.
fn proto_in_range(t: &Tuple, manip: Manip, min: u16, max: u16) -> bool {
    let v = match t.protonum {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => t.src_u,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => match manip {
            Manip::Src => t.src_u,
            Manip::Dst => t.dst_u,
        },
        _ => return true,
    };
    v >= min && v <= max
}

/// `nf_in_range`: the source address (when mapped) and source part (when specified) fit.
fn in_range(t: &Tuple, r: &NatRange) -> bool {
    if r.flags & RANGE_MAP_IPS != 0 && !addr_in_range(t, r) {
        return false;
    }
    r.flags & RANGE_PROTO_SPECIFIED == 0 || proto_in_range(t, Manip::Src, r.min_proto, r.max_proto)
}

/// `find_appropriate_src`: an entry mapping the same source (address, port, protocol, zone)
/// whose translated source, with our destination, fits the range.
fn appropriate_src(env: &NatEnv<'_>, t: &Tuple, r: &NatRange, zone: Zone) -> Option<Tuple> {
    for (slot, gen) in env.state.candidates(t, zone) {
        let hit = env.ct.with_conn(slot, gen, |c| {
            let o = c.orig;
            let same = o.protonum == t.protonum && o.src == t.src && o.src_u == t.src_u;
            (same && c.zone.id_for(Direction::Original) == zone.id_for(Direction::Original))
                .then(|| c.tuple(Direction::Reply))
        });
        let Some(Some(reply)) = hit else { continue };
        let Some(mut res) = reply.invert() else { continue };
        res.dst = t.dst;
        res.dst_u = t.dst_u;
        if in_range(&res, r) {
            return Some(res);
        }
    }
    None
}

/// The kernel's `jhash2` (Bob Jenkins' lookup3 `hashword`).
pub fn jhash2(k: &[u32], initval: u32) -> u32 {
    let mut a = 0xdead_beefu32.wrapping_add((k.len() as u32) << 2).wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = k;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        // mix
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
        k = &k[3..];
    }
    if k.is_empty() {
        return c;
    }
    if k.len() == 3 {
        c = c.wrapping_add(k[2]);
    }
    if k.len() >= 2 {
        b = b.wrapping_add(k[1]);
    }
    a = a.wrapping_add(k[0]);
    // final
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

/// An address as the kernel's `u32 all[4]` words read natively (little-endian, as x86 reads
/// them).
fn words(a: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = u32::from_le_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]);
    }
    w
}

/// `find_best_ips_proto`: the mapped address, by the kernel's hash of the addresses (the same
/// client always gets the same address from a range; with `persistent`, whatever the server).
fn best_ips(t: &mut Tuple, r: &NatRange, manip: Manip, zone: Zone) {
    if r.flags & RANGE_MAP_IPS == 0 {
        return;
    }
    let n = if t.l3num == AF_INET { 4 } else { 16 };
    if r.min_addr[..n] == r.max_addr[..n] {
        match manip {
            Manip::Src => t.src[..n].copy_from_slice(&r.min_addr[..n]),
            Manip::Dst => t.dst[..n].copy_from_slice(&r.min_addr[..n]),
        }
        return;
    }
    let max = n / 4 - 1;
    let (src, dst) = (words(&t.src), words(&t.dst));
    let init = if r.flags & RANGE_PERSISTENT != 0 { 0 } else { dst[max] ^ u32::from(zone.id) };
    let mut j = jhash2(&src, init);
    let (minw, maxw) = (words(&r.min_addr), words(&r.max_addr));
    let mut out = [0u32; 4];
    let mut full = false;
    for i in 0..=max {
        let (minip, dist) = if full {
            (0u32, u32::MAX)
        } else {
            let (lo, hi) = (u32::from_be(minw[i]), u32::from_be(maxw[i]));
            (lo, hi.wrapping_sub(lo).wrapping_add(1))
        };
        out[i] = minip.wrapping_add(((u64::from(j) * u64::from(dist)) >> 32) as u32).to_be();
        if out[i] != maxw[i] {
            full = true;
        }
        if r.flags & RANGE_PERSISTENT == 0 {
            j ^= dst[i];
        }
    }
    let mut bytes = [0u8; 16];
    for (i, w) in out.iter().enumerate().take(max + 1) {
        bytes[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    match manip {
        Manip::Src => t.src[..n].copy_from_slice(&bytes[..n]),
        Manip::Dst => t.dst[..n].copy_from_slice(&bytes[..n]),
    }
}

/// `get_unique_tuple`: the tuple the connection will be known by, unique in the table if the
/// search finds one.
fn unique_tuple(env: &NatEnv<'_>, orig: &Tuple, r: &NatRange, a: Asking, manip: Manip) -> Tuple {
    if manip == Manip::Src && r.flags & RANGE_PROTO_RANDOM_ALL == 0 {
        if in_range(orig, r) {
            if !used(env, orig, a) {
                return *orig;
            }
        } else if let Some(t) = appropriate_src(env, orig, r, a.zone) {
            if !used(env, &t, a) {
                return t;
            }
        }
    }
    let mut t = *orig;
    best_ips(&mut t, r, manip, a.zone);
    if r.flags & RANGE_PROTO_RANDOM_ALL == 0 {
        if r.flags & RANGE_PROTO_SPECIFIED != 0 {
            if r.flags & RANGE_PROTO_OFFSET == 0
                && proto_in_range(&t, manip, r.min_proto, r.max_proto)
                && (r.min_proto == r.max_proto || !used(env, &t, a))
            {
                return t;
            }
        } else if !used(env, &t, a) {
            return t;
        }
    }
    port_search(env, &mut t, r, manip, a);
    t
}

/// `nf_nat_l4proto_unique_tuple`: a port (or ICMP id) from the range, searched from an offset
/// (random for source NAT and random flags, 0 otherwise) in rounds of 128, 64, 32, 16 and 8
/// attempts; on failure the last one tried stays (the clash drops the packet later). Each
/// round's last attempts may take a closing TCP connection's tuple ([`used_harder`]).
fn port_search(env: &NatEnv<'_>, t: &mut Tuple, r: &NatRange, manip: Manip, a: Asking) {
    if !has_proto_part(t.protonum) {
        return;
    }
    let icmp = matches!(t.protonum, IPPROTO_ICMP | IPPROTO_ICMPV6);
    let key_is_src = icmp || manip == Manip::Src;
    let key = if key_is_src { t.src_u } else { t.dst_u };
    let (min, size): (u32, u32) = if r.flags & RANGE_PROTO_SPECIFIED == 0 {
        if icmp {
            (0, 65536)
        } else if manip == Manip::Dst {
            // A destination's port is not changed without a range.
            return;
        } else if key < 512 {
            (1, 511)
        } else if key < 1024 {
            (600, 1023 - 600 + 1)
        } else {
            (1024, 65535 - 1024 + 1)
        }
    } else {
        let (lo, hi) = (u32::from(r.min_proto.min(r.max_proto)), u32::from(r.min_proto.max(r.max_proto)));
        (lo, hi - lo + 1)
    };
    let rand16 = || (env.random)() as u16;
    let mut off: u32 =
        if r.flags & RANGE_PROTO_RANDOM_ALL != 0 || manip != Manip::Dst { u32::from(rand16()) } else { 0 };
    let mut attempts = size.min(MAX_ATTEMPTS);
    loop {
        for i in 0..attempts {
            let v = (min + off % size) as u16;
            if key_is_src {
                t.src_u = v;
            } else {
                t.dst_u = v;
            }
            if !used_harder(env, t, a, attempts - i) {
                return;
            }
            off = off.wrapping_add(1);
        }
        if attempts >= size || attempts < 16 {
            return;
        }
        attempts /= 2;
        off = u32::from(rand16());
    }
}

/// `nf_nat_packet`'s target: the tuple a packet of direction `dir` must look like on its
/// `manip` side, when that side is translated for the connection.
pub fn packet_target(status: u32, tuples: &[Tuple; 2], dir: Direction, manip: Manip) -> Option<Tuple> {
    let mut bit = manip.bits().0;
    if dir == Direction::Reply {
        bit ^= IPS_NAT_MASK;
    }
    if status & bit == 0 {
        return None;
    }
    tuples[dir.flip().index()].invert()
}

/// [`packet_target`] for an entry, building only the tuple it needs.
pub fn conn_target(c: &crate::conn::Conn, dir: Direction, manip: Manip) -> Option<Tuple> {
    let mut bit = manip.bits().0;
    if dir == Direction::Reply {
        bit ^= IPS_NAT_MASK;
    }
    if c.status & bit == 0 {
        return None;
    }
    c.tuple(dir.flip()).invert()
}

/// The status bit an ICMP error's translation depends on: the connection's `manip` side
/// translated, seen from the error's direction.
fn icmp_bit(dir: Direction, manip: Manip) -> u32 {
    let bit = manip.bits().0;
    if dir == Direction::Reply {
        bit ^ IPS_NAT_MASK
    } else {
        bit
    }
}

/// Whether an ICMP error about a connection has anything translated at this hook.
pub fn icmp_translation_needed(status: u32, dir: Direction, manip: Manip) -> bool {
    status & icmp_bit(dir, manip) != 0
}

/// Where an ICMP error's ICMP header starts, its protocol and whether it is IPv6.
fn icmp_at(pkt: &[u8]) -> Option<(usize, bool)> {
    let v6 = pkt.first().is_some_and(|b| b >> 4 == 6);
    let hdr = if v6 {
        crate::wire::ip::ipv6_get_l4proto(pkt).ok()?.l4_off
    } else {
        pkt.first().map(|b| usize::from(b & 0x0f) * 4)?
    };
    (pkt.len() >= hdr + 8).then_some((hdr, v6))
}

/// The checks `nf_nat_icmp_reply_translation` makes before translating: the ICMP checksum
/// (`nf_ip_checksum`), and that a redirect is about a connection with no translation at all.
/// NF_ACCEPT or NF_DROP.
pub fn icmp_redirect_check(pkt: &[u8], status: u32) -> u32 {
    let Some((hdr, v6)) = icmp_at(pkt) else { return NF_DROP };
    if !v6 {
        if crate::wire::checksum::internet_checksum(&pkt[hdr..]) != 0 {
            return NF_DROP;
        }
        if pkt[hdr] == 5 && ((status & IPS_NAT_DONE_MASK) != IPS_NAT_DONE_MASK || status & IPS_NAT_MASK != 0)
        {
            return NF_DROP;
        }
    }
    NF_ACCEPT
}

/// `nf_nat_icmp_reply_translation` / `nf_nat_icmpv6_reply_translation`: an ICMP error about a
/// translated connection gets the quoted packet translated back and its outer header
/// translated as the connection's packets are (the ICMP checksum recomputed in between, as
/// the kernel does for a packet without checksum offload). Returns the verdict: a redirect
/// about a translated connection, a bad ICMP checksum or headers not all there drop it.
pub fn icmp_reply_translation(
    pkt: &mut [u8],
    status: u32,
    tuples: &[Tuple; 2],
    dir: Direction,
    manip: Manip,
) -> u32 {
    if icmp_redirect_check(pkt, status) != NF_ACCEPT {
        return NF_DROP;
    }
    let Some((hdr, v6)) = icmp_at(pkt) else { return NF_DROP };
    if !icmp_translation_needed(status, dir, manip) {
        return NF_ACCEPT;
    }
    let quoted = tuples[dir.flip().index()];
    if !manip::manip_pkt(pkt, hdr + 8, &quoted, manip.flip()) {
        return NF_DROP;
    }
    manip::icmp_recompute(pkt, 0, hdr, v6);
    let Some(mut target) = quoted.invert() else { return NF_DROP };
    target.protonum = if v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
    if !manip::manip_pkt(pkt, 0, &target, manip) {
        return NF_DROP;
    }
    NF_ACCEPT
}

/// The address masquerade translates to on `dev`: over IPv4 `inet_select_addr` (the address
/// in the same subnet as `next_hop`, else the first of the family); over IPv6 the source
/// address selection of RFC 6724 for the destination `next_hop` ([`ipv6_source`]).
pub fn masquerade_addr(dev: &Dev, next_hop: IpAddr) -> Option<IpAddr> {
    let IpAddr::V4(hop) = next_hop else {
        return ipv6_source(dev, next_hop);
    };
    let in_subnet = |a: &crate::fib::IfAddr| match a.addr {
        IpAddr::V4(x) => {
            let m = if a.prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(a.prefix_len.min(32))) };
            u32::from(x) & m == u32::from(hop) & m
        }
        IpAddr::V6(_) => false,
    };
    dev.addrs
        .iter()
        .find(|a| in_subnet(a))
        .or_else(|| dev.addrs.iter().find(|a| a.addr.is_ipv4()))
        .map(|a| a.addr)
}

/// An IPv6 address's scope as the kernel numbers it (`IPV6_ADDR_SCOPE_*`).
fn scope6(a: std::net::Ipv6Addr) -> u8 {
    let s = a.segments();
    if a.is_loopback() {
        0x1
    } else if s[0] & 0xffc0 == 0xfe80 {
        0x2
    } else if s[0] & 0xffc0 == 0xfec0 {
        0x5
    } else {
        0xe
    }
}

/// The label of RFC 6724's default policy table (with Linux's ORCHID entry): addresses of
/// one label belong together (6to4, Teredo, ULA, site-local, 6bone, v4-mapped...).
fn label6(a: std::net::Ipv6Addr) -> u8 {
    let v = u128::from(a);
    let table: [(u128, u8, u8); 9] = [
        (1, 128, 0),                // ::1/128
        (0xffff_0000_0000, 96, 4),  // ::ffff:0:0/96
        (0, 96, 3),                 // ::/96
        (0x2001_0010 << 96, 28, 7), // 2001:10::/28
        (0x2001_0000 << 96, 32, 5), // 2001::/32
        (0x2002 << 112, 16, 2),     // 2002::/16
        (0x3ffe << 112, 16, 12),    // 3ffe::/16
        (0xfec0 << 112, 10, 11),    // fec0::/10
        (0xfc00 << 112, 7, 13),     // fc00::/7
    ];
    table
        .iter()
        .filter(|(p, len, _)| {
            let m = u128::MAX << (128 - u32::from(*len));
            v & m == *p & m
        })
        .max_by_key(|(_, len, _)| *len)
        .map_or(1, |(_, _, l)| *l)
}

/// Source address selection (RFC 6724 §5, as `ipv6_dev_get_saddr` ranks the candidates) among
/// `dev`'s IPv6 addresses for destination `dst`: the address itself; an appropriate scope;
/// the destination's label; the longest prefix in common with it (up to the address's
/// prefix length); on a tie the one listed first. Observed on 6.18 with 2001:db8:ff::1,
/// 3fff::1 and fd99::1 on the outgoing interface (listed fd99::1, 3fff::1, 2001:db8:ff::1):
/// 2001:db8:1::10, 2002::1 and 2001::1 get 2001:db8:ff::1; 3ffe::10, 4000::1, 8000::1 and
/// ::ffff:1.2.3.4 get 3fff::1; fd00:7::1 and fec0::1 get fd99::1. Not modelled: deprecated
/// and temporary addresses (the host file does not say), and addresses of other interfaces
/// (the kernel takes one of those when the outgoing interface has none).
fn ipv6_source(dev: &Dev, dst: IpAddr) -> Option<IpAddr> {
    let IpAddr::V6(d) = dst else { return None };
    let (dscope, dlabel) = (scope6(d), label6(d));
    let mut best: Option<(std::net::Ipv6Addr, u8)> = None;
    for a in &dev.addrs {
        let IpAddr::V6(sa) = a.addr else { continue };
        let Some((sb, blen)) = best else {
            best = Some((sa, a.prefix_len));
            continue;
        };
        // Whether `sa` beats the best so far, rule by rule; None: a tie.
        let rules = [
            // 1: the destination itself.
            (sa == d, sb == d),
            // 2: an appropriate scope.
            {
                let (x, y) = (scope6(sa), scope6(sb));
                if x == y {
                    (false, false)
                } else if x < y {
                    (x >= dscope, x < dscope)
                } else {
                    (y < dscope, y >= dscope)
                }
            },
            // 6: the destination's label.
            (label6(sa) == dlabel, label6(sb) == dlabel),
        ];
        let mut decided = None;
        for (x, y) in rules {
            if x != y {
                decided = Some(x);
                break;
            }
        }
        let better = decided.unwrap_or_else(|| {
            // 8: the longest prefix in common, up to the address's prefix length.
            let common = |s: std::net::Ipv6Addr, len: u8| {
                ((u128::from(s) ^ u128::from(d)).leading_zeros()).min(u32::from(len))
            };
            common(sa, a.prefix_len) > common(sb, blen)
        });
        if better {
            best = Some((sa, a.prefix_len));
        }
    }
    best.map(|(a, _)| IpAddr::V6(a))
}

/// The address masquerade chooses its source for: over IPv4 the next hop (`rt_nexthop`: the
/// route's gateway, else the destination), over IPv6 the destination itself
/// (`nf_nat_masquerade_ipv6` asks `ipv6_dev_get_saddr` about the packet's daddr). Observed on
/// 6.18: behind a default route via fe80::1 out of an interface whose only address is a
/// global one, IPv6 masquerade takes that global address.
pub fn next_hop(fib: Option<&Fib>, dst: IpAddr) -> IpAddr {
    if dst.is_ipv6() {
        return dst;
    }
    fib.and_then(|f| f.lookup(dst, None)).and_then(|r| r.gateway).unwrap_or(dst)
}

/// `nf_nat_redirect_ipv4/6`'s new destination: the loopback address for a packet the host
/// sends, else the first address of the interface it came in on (a link-local one for a
/// link-local destination, over IPv6).
pub fn redirect_addr(hook: Hook, iif: Option<&Dev>, dst: IpAddr) -> Option<IpAddr> {
    if hook == Hook::LocalOut {
        return Some(match dst {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        });
    }
    let dev = iif?;
    match dst {
        IpAddr::V4(_) => dev.addrs.iter().find(|a| a.addr.is_ipv4()).map(|a| a.addr),
        IpAddr::V6(d) => {
            let ll = |v: &std::net::Ipv6Addr| v.segments()[0] & 0xffc0 == 0xfe80;
            dev.addrs.iter().find(|a| matches!(a.addr, IpAddr::V6(v) if ll(&v) == ll(&d))).map(|a| a.addr)
        }
    }
}

/// A range of one address (and ports, when given) in tuple layout.
pub fn addr_range(a: IpAddr, flags: u32, ports: Option<(u16, u16)>) -> NatRange {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v) => b[..4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => b.copy_from_slice(&v.octets()),
    }
    let mut r = NatRange { flags: flags | RANGE_MAP_IPS, min_addr: b, max_addr: b, ..NatRange::default() };
    if let Some((lo, hi)) = ports {
        r.flags |= RANGE_PROTO_SPECIFIED;
        r.min_proto = lo;
        r.max_proto = hi;
    }
    r
}

#[cfg(test)]
mod tests;
