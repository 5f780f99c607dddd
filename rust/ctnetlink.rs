//! The control plane as conntrack-tools drives it over ctnetlink (`nf_conntrack_netlink.c`):
//! the filters of `conntrack -L/-D/-U` (original and reply addresses with prefix lengths,
//! ports, protocol, family, mark with a mask, zone, protocol state, status bits), deleting the
//! entries that match (`-D`, each with its DESTROY event), flushing the table (`-F`: every
//! entry, and the unconfirmed ones die so their confirmation fails), and updating the mark and
//! timeout of the entries that match (`-U`, each with the UPDATE event ctnetlink sends).
//!
//! Depends on `core`, `conn`, `tuple` and `uapi`.

use crate::conn::{Conn, ProtoView};
use crate::core::Conntrack;
use crate::tuple::{Direction, Tuple};
use crate::uapi::{AF_INET, AF_INET6, IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE};
use std::net::IpAddr;

/// An address with a prefix length (`-s 10.0.0.0/8`; a plain address is a full-length prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// Whether the address of family `l3num` held in tuple layout (`bytes`) is in the prefix.
    fn holds(&self, l3num: u8, bytes: &[u8; 16]) -> bool {
        match self.addr {
            IpAddr::V4(a) if l3num == AF_INET => {
                let x = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                let m = if self.len == 0 { 0 } else { u32::MAX << (32 - u32::from(self.len.min(32))) };
                x & m == u32::from(a) & m
            }
            IpAddr::V6(a) if l3num == AF_INET6 => {
                let x = u128::from_be_bytes(*bytes);
                let m = if self.len == 0 { 0 } else { u128::MAX << (128 - u32::from(self.len.min(128))) };
                x & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

/// One direction's part of a filter (`--orig-src`/`-s`, `--orig-dst`/`-d`, `--sport`,
/// `--dport`, and their `--reply-*` twins).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TupleFilter {
    pub src: Option<Prefix>,
    pub dst: Option<Prefix>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

impl TupleFilter {
    fn matches(&self, t: &Tuple) -> bool {
        let ports =
            matches!(t.protonum, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP);
        self.src.is_none_or(|p| p.holds(t.l3num, &t.src))
            && self.dst.is_none_or(|p| p.holds(t.l3num, &t.dst))
            && self.sport.is_none_or(|p| ports && t.src_u == p)
            && self.dport.is_none_or(|p| ports && t.dst_u == p)
    }
}

/// What selects entries; every field given must hold (an empty filter selects all).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `AF_INET` or `AF_INET6` (`-f ipv4|ipv6`).
    pub l3num: Option<u8>,
    /// `-p PROTO`.
    pub proto: Option<u8>,
    pub orig: TupleFilter,
    pub reply: TupleFilter,
    /// `-m MARK[/MASK]`: `mark & mask == value & mask`.
    pub mark: Option<(u32, u32)>,
    /// `-w ZONE`.
    pub zone: Option<u16>,
    /// `--state NAME` (TCP and SCTP states as the listings print them).
    pub state: Option<String>,
    /// `-u FLAGS`: every one of these IPS_* bits set.
    pub status: Option<u32>,
}

impl Filter {
    /// Whether the entry matches.
    pub fn matches(&self, c: &Conn) -> bool {
        let orig = c.orig;
        if self.l3num.is_some_and(|f| f != orig.l3num) || self.proto.is_some_and(|p| p != orig.protonum) {
            return false;
        }
        if !self.orig.matches(&orig) {
            return false;
        }
        if self.reply != TupleFilter::default() && !self.reply.matches(&c.tuple(Direction::Reply)) {
            return false;
        }
        if self.mark.is_some_and(|(v, m)| c.mark & m != v & m) || self.zone.is_some_and(|z| c.zone.id != z) {
            return false;
        }
        if self.status.is_some_and(|s| c.status & s != s) {
            return false;
        }
        if let Some(want) = &self.state {
            let name = match ProtoView::of(&c.proto) {
                ProtoView::Tcp(n) | ProtoView::Sctp(n) => n,
                _ => return false,
            };
            if !name.eq_ignore_ascii_case(want) {
                return false;
            }
        }
        true
    }
}

/// What `-U` changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// `-m MARK[/MASK]`: the bits of the mask take the value's.
    pub mark: Option<(u32, u32)>,
    /// `-t SECONDS`: the entry's timeout, from now.
    pub timeout_s: Option<u64>,
}

/// The handles of the confirmed, live entries that match at `now` (expired ones are reaped on
/// the way, as a dump does).
pub fn select(ct: &Conntrack, f: &Filter, now: u64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (slot, gen, _) in ct.list(now) {
        if ct.with_conn(slot, gen, |c| f.matches(c)) == Some(true) {
            out.push((slot, gen));
        }
    }
    out
}

/// `conntrack -D` with a filter: deletes the entries that match; how many.
pub fn delete(ct: &Conntrack, f: &Filter, now: u64) -> usize {
    select(ct, f, now).into_iter().filter(|&(s, g)| ct.delete(s, g, now)).count()
}

/// `conntrack -F`: deletes every entry; unconfirmed ones (packets still in flight) are marked
/// dying, so their confirmation fails (`insert_failed`). How many confirmed entries went.
pub fn flush(ct: &Conntrack, now: u64) -> usize {
    ct.kill_unconfirmed();
    delete(ct, &Filter::default(), now)
}

/// `conntrack -U` with a filter: changes the mark and/or timeout of the entries that match,
/// each changed entry sending an UPDATE event (entries the change leaves as they were are
/// skipped, as conntrack-tools skips them). How many changed.
pub fn update(ct: &Conntrack, f: &Filter, u: Update, now: u64) -> usize {
    let mut n = 0;
    for (slot, gen) in select(ct, f, now) {
        let changed = ct.with_conn_mut(slot, gen, |c| {
            let mut changed = false;
            if let Some((v, m)) = u.mark {
                let new = (c.mark & !m) | (v & m);
                changed |= new != c.mark;
                c.mark = new;
            }
            if let Some(t) = u.timeout_s {
                let new = now.saturating_add(t.saturating_mul(1_000_000_000));
                changed |= new != c.timeout;
                c.timeout = new;
            }
            changed
        });
        if changed == Some(true) {
            ct.report_update(slot, gen, now);
            n += 1;
        }
    }
    n
}

/// A census group: (l3num, protonum, state, zone).
pub type StateKey = (u8, u8, &'static str, u16);

/// What holds the table at one moment (a dump summarised): entries by family, protocol,
/// state and zone, and the addresses holding the most entries as original source and as
/// original destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// ((l3num, protonum, state, zone), entries), most entries first.
    pub by_state: Vec<(StateKey, u64)>,
    pub sources: Vec<(IpAddr, u64)>,
    pub destinations: Vec<(IpAddr, u64)>,
    pub total: u64,
}

/// The state an entry is counted under: TCP's and SCTP's as listed; for the others the
/// timeout class they are in (`ASSURED`, `REPLIED`, `UNREPLIED`).
pub fn state_label(c: &Conn) -> &'static str {
    use crate::uapi::{IPS_ASSURED, IPS_SEEN_REPLY};
    match ProtoView::of(&c.proto) {
        ProtoView::Tcp(n) | ProtoView::Sctp(n) => n,
        _ if c.status & IPS_ASSURED != 0 => "ASSURED",
        _ if c.status & IPS_SEEN_REPLY != 0 => "REPLIED",
        _ => "UNREPLIED",
    }
}

/// A census of the confirmed entries at `now`, with the `top` heaviest sources and
/// destinations (expired entries met are reaped, as a dump does).
pub fn census(ct: &Conntrack, now: u64, top: usize) -> Census {
    use std::collections::HashMap;
    let mut by: HashMap<StateKey, u64> = HashMap::new();
    let mut src: HashMap<(u8, [u8; 16]), u64> = HashMap::new();
    let mut dst: HashMap<(u8, [u8; 16]), u64> = HashMap::new();
    let mut total = 0;
    for (slot, gen, _) in ct.list(now) {
        ct.with_conn(slot, gen, |c| {
            total += 1;
            *by.entry((c.orig.l3num, c.orig.protonum, state_label(c), c.zone.id)).or_default() += 1;
            *src.entry((c.orig.l3num, c.orig.src)).or_default() += 1;
            *dst.entry((c.orig.l3num, c.orig.dst)).or_default() += 1;
        });
    }
    let heaviest = |m: HashMap<(u8, [u8; 16]), u64>| {
        let mut v: Vec<(IpAddr, u64)> =
            m.into_iter().map(|((l3, a), n)| (crate::tuple::addr(l3, &a), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(top);
        v
    };
    let mut by_state: Vec<_> = by.into_iter().collect();
    by_state.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Census { by_state, sources: heaviest(src), destinations: heaviest(dst), total }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CtOptions, SkbCt};
    use crate::sysctl::Sysctl;
    use crate::uapi::Hook;

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let c = crate::wire::checksum::internet_checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    }

    fn table() -> Conntrack {
        let ct = Conntrack::new(CtOptions { seed: Some(1), ..CtOptions::default() }, Sysctl::default());
        for (i, dport) in [(1u8, 53u16), (2, 53), (3, 123)] {
            let mut skb = SkbCt::default();
            ct.conntrack_in(
                &udp([10, 0, 0, i], [192, 0, 2, 1], 1000, dport),
                1,
                Hook::PreRouting,
                AF_INET,
                &mut skb,
            );
            ct.confirm(&mut skb, 1);
            ct.release(&mut skb);
        }
        ct
    }

    #[test]
    fn filters_select_delete_and_update() {
        let ct = table();
        let dns = Filter {
            proto: Some(17),
            orig: TupleFilter { dport: Some(53), ..Default::default() },
            ..Filter::default()
        };
        assert_eq!(select(&ct, &dns, 2).len(), 2);
        let one = Filter {
            orig: TupleFilter {
                src: Some(Prefix { addr: "10.0.0.2".parse().unwrap(), len: 32 }),
                ..Default::default()
            },
            ..Filter::default()
        };
        assert_eq!(select(&ct, &one, 2).len(), 1);
        let reply = Filter {
            reply: TupleFilter {
                dst: Some(Prefix { addr: "10.0.0.0".parse().unwrap(), len: 30 }),
                ..Default::default()
            },
            ..Filter::default()
        };
        assert_eq!(select(&ct, &reply, 2).len(), 3, "10.0.0.1-3 are in 10.0.0.0/30");
        assert_eq!(update(&ct, &dns, Update { mark: Some((7, 0xff)), timeout_s: None }, 2), 2);
        assert_eq!(update(&ct, &dns, Update { mark: Some((7, 0xff)), timeout_s: None }, 2), 0, "unchanged");
        let marked = Filter { mark: Some((7, 0xff)), ..Filter::default() };
        assert_eq!(delete(&ct, &marked, 3), 2);
        assert_eq!(ct.count(), 1);
        assert_eq!(flush(&ct, 3), 1);
        assert_eq!(ct.count(), 0);
    }

    #[test]
    fn census_counts_states_and_heaviest_addresses() {
        let ct = table();
        let c = census(&ct, 2, 2);
        assert_eq!(c.total, 3);
        assert_eq!(c.by_state, vec![((AF_INET, 17, "UNREPLIED", 0), 3)]);
        assert_eq!(c.destinations, vec![("192.0.2.1".parse().unwrap(), 3)]);
        assert_eq!(c.sources.len(), 2, "the top 2 of 3 sources, one entry each");
    }
}
