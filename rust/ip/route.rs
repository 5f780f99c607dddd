//! The routing decision of a Linux router with no addresses of its own on the capture's
//! networks and no multicast routing (the kernel harness's set-up, spec §17): which packets
//! it forwards or delivers locally (both pass the confirm hook) and which it drops between
//! PRE_ROUTING and confirmation, so their new entries are never inserted.
//!
//! This is the part of `ip_route_input` / `ip6_route_input` and `ip_forward` / `ip6_forward`
//! that the hook pipeline needs (no routing table: every unicast destination that is not one
//! of the host's own addresses is forwarded).

use crate::net::LocalAddrs;
use crate::netfilter::Family;
use crate::wire::ip::{ipv4_fields, ipv6_fields};
use std::net::IpAddr;

/// The MTU of the router's way out (a veth's default), the harness's as well.
pub const EGRESS_MTU: usize = 1500;

/// Where the router sends a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Forward,
    Local,
    Drop(&'static str),
}

/// Which destinations are this host's: the addresses it owns, or (a capture taken on the host
/// itself replayed with `--path local-in`) every unicast destination.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub local: &'a LocalAddrs,
    pub all_unicast: bool,
}

/// IPv4 routing of a packet with these addresses, TTL, protocol, length and DF bit.
pub fn route_v4(
    own: Owner<'_>,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    proto: u8,
    len: usize,
    dont_fragment: bool,
) -> Route {
    let multicast = |a: [u8; 4]| a[0] & 0xf0 == 0xe0;
    let lbcast = |a: [u8; 4]| a == [255; 4];
    if multicast(src) || lbcast(src) {
        return Route::Drop("ip_route_input: martian source");
    }
    if multicast(dst) {
        // ip_route_input_mc: every interface is in the all-hosts group; no other group is
        // joined and nothing routes multicast.
        if src[0] == 127 {
            return Route::Drop("ip_route_input: martian source");
        }
        if src[0] == 0 && dst[..3] != [224, 0, 0] && proto != 2 {
            return Route::Drop("ip_route_input: martian source");
        }
        return if dst == [224, 0, 0, 1] {
            Route::Local
        } else {
            Route::Drop("ip_route_input: multicast not joined")
        };
    }
    if lbcast(dst) || (src == [0; 4] && dst == [0; 4]) {
        return Route::Local;
    }
    if src[0] == 0 || src[0] == 127 {
        return Route::Drop("ip_route_input: martian source");
    }
    if dst[0] == 0 || dst[0] == 127 {
        return Route::Drop("ip_route_input: martian destination");
    }
    // fib_validate_source: a packet from the wire claiming one of our addresses is a martian
    // (accept_local is off).
    if own.local.has_v4(src) {
        return Route::Drop("ip_route_input: martian source");
    }
    if own.all_unicast || own.local.has_v4(dst) {
        return Route::Local;
    }
    if ttl <= 1 {
        return Route::Drop("ip_forward: TTL exceeded");
    }
    if len > EGRESS_MTU && dont_fragment {
        return Route::Drop("ip_forward: fragmentation needed (packet larger than the MTU, DF set)");
    }
    Route::Forward
}

/// IPv6 routing of a packet with these addresses, hop limit and length.
pub fn route_v6(own: Owner<'_>, src: &[u8; 16], dst: &[u8; 16], hop_limit: u8, len: usize) -> Route {
    let loopback = |a: &[u8; 16]| a[..15].iter().all(|&b| b == 0) && a[15] == 1;
    if src[0] == 0xff || loopback(src) {
        return Route::Drop("ip6_rcv: martian source");
    }
    if loopback(dst) {
        return Route::Drop("ip6_rcv: loopback destination");
    }
    if dst[0] == 0xff {
        // Joined: all-nodes (ff02::1) and, as the router forwards, all-routers (ff02::2, ff05::2).
        let scope = dst[1] & 0x0f;
        let zeros = dst[2..15].iter().all(|&b| b == 0);
        let joined = zeros && ((scope == 2 && matches!(dst[15], 1 | 2)) || (scope == 5 && dst[15] == 2));
        return if joined { Route::Local } else { Route::Drop("ip6_route_input: multicast not joined") };
    }
    if own.all_unicast || own.local.has_v6(dst) {
        return Route::Local;
    }
    let link_local = |a: &[u8; 16]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
    if link_local(src) && !link_local(dst) {
        return Route::Drop("ip6_forward: source beyond scope");
    }
    if hop_limit <= 1 {
        return Route::Drop("ip6_forward: hop limit exceeded");
    }
    if len > EGRESS_MTU {
        // Routers do not fragment IPv6: the packet is dropped and a Packet Too Big sent.
        return Route::Drop("ip6_forward: packet too big (larger than the MTU)");
    }
    Route::Forward
}

/// The routing decision for a packet of family `fam` that passed the receive checks (so its
/// fixed header is all there), `len` bytes long as the forwarding path's MTU check sees it.
pub fn route_of(own: Owner<'_>, fam: Family, data: &[u8], len: usize) -> Route {
    match fam {
        Family::V4 => match ipv4_fields(data) {
            Some(h) => route_v4(own, h.src, h.dst, h.ttl, h.protocol, len, h.df),
            None => Route::Forward,
        },
        Family::V6 => match ipv6_fields(data) {
            Some(h) => route_v6(own, &h.src, &h.dst, h.hop_limit, len),
            None => Route::Forward,
        },
    }
}

/// Where a packet this host sends goes: back in through loopback (to one of its own
/// addresses, 127.0.0.0/8 or ::1), or out.
pub fn output_is_loopback(local: &LocalAddrs, dst: IpAddr) -> bool {
    dst.is_loopback() || local.contains(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_v4(src: [u8; 4], dst: [u8; 4], ttl: u8, proto: u8, len: usize, df: bool) -> Route {
        let none = LocalAddrs::default();
        super::route_v4(Owner { local: &none, all_unicast: false }, src, dst, ttl, proto, len, df)
    }

    fn route_v6(src: &[u8; 16], dst: &[u8; 16], hop: u8, len: usize) -> Route {
        let none = LocalAddrs::default();
        super::route_v6(Owner { local: &none, all_unicast: false }, src, dst, hop, len)
    }

    #[test]
    fn local_addresses() {
        let l = LocalAddrs::new(&["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]);
        let own = Owner { local: &l, all_unicast: false };
        // Delivered whatever the TTL; a local source from the wire is a martian.
        assert_eq!(super::route_v4(own, [10, 0, 0, 1], [192, 0, 2, 1], 1, 6, 100, false), Route::Local);
        assert!(matches!(
            super::route_v4(own, [192, 0, 2, 1], [10, 0, 0, 1], 64, 6, 100, false),
            Route::Drop(_)
        ));
        assert!(matches!(
            super::route_v4(own, [10, 0, 0, 1], [127, 0, 0, 1], 64, 6, 100, false),
            Route::Drop(_)
        ));
        let a = l.addrs();
        assert_eq!(a.len(), 2);
        let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(super::route_v6(own, &v6("2001:db8::2"), &v6("2001:db8::1"), 1, 100), Route::Local);
        assert_eq!(super::route_v6(own, &v6("2001:db8::2"), &v6("2001:db8::3"), 64, 100), Route::Forward);
        let all = Owner { local: &l, all_unicast: true };
        assert_eq!(super::route_v4(all, [10, 0, 0, 1], [10, 0, 0, 2], 1, 6, 100, false), Route::Local);
        assert!(matches!(
            super::route_v4(all, [10, 0, 0, 1], [224, 0, 0, 5], 1, 6, 100, false),
            Route::Drop(_)
        ));
        assert!(output_is_loopback(&l, "127.0.0.5".parse().unwrap()));
        assert!(output_is_loopback(&l, "192.0.2.1".parse().unwrap()));
        assert!(!output_is_loopback(&l, "192.0.2.2".parse().unwrap()));
        assert!(output_is_loopback(&l, "::1".parse().unwrap()));
    }

    #[test]
    fn v4() {
        assert_eq!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 64, 17, 100, false), Route::Forward);
        assert_eq!(route_v4([0, 0, 0, 0], [255, 255, 255, 255], 64, 17, 100, false), Route::Local);
        assert_eq!(route_v4([0, 0, 0, 0], [224, 0, 0, 1], 1, 2, 100, false), Route::Local);
        assert_eq!(route_v4([10, 0, 0, 1], [224, 0, 0, 1], 1, 17, 100, false), Route::Local);
        assert!(matches!(route_v4([10, 0, 0, 1], [224, 0, 0, 251], 255, 17, 100, false), Route::Drop(_)));
        assert!(matches!(route_v4([235, 1, 1, 1], [224, 0, 0, 1], 1, 17, 100, false), Route::Drop(_)));
        assert!(matches!(route_v4([127, 0, 0, 1], [127, 0, 0, 1], 64, 17, 100, false), Route::Drop(_)));
        assert!(matches!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 17, 100, false), Route::Drop(_)));
    }

    #[test]
    fn v6() {
        let a: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let b: [u8; 16] = "2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let ff: [u8; 16] = "ff02::fb".parse::<std::net::Ipv6Addr>().unwrap().octets();
        let all: [u8; 16] = "ff02::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(route_v6(&a, &b, 64, 100), Route::Forward);
        assert!(matches!(route_v6(&a, &b, 1, 100), Route::Drop(_)));
        assert!(matches!(route_v6(&a, &ff, 255, 100), Route::Drop(_)));
        assert_eq!(route_v6(&a, &all, 1, 100), Route::Local);
        let routers: [u8; 16] = "ff02::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(route_v6(&a, &routers, 255, 100), Route::Local);
        let ll: [u8; 16] = "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert!(matches!(route_v6(&ll, &b, 64, 100), Route::Drop(_)));
        assert_eq!(route_v6(&ll, &ll, 64, 100), Route::Forward);
        assert!(matches!(route_v6(&a, &b, 64, 1501), Route::Drop(_)));
        assert!(matches!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 64, 6, 1501, true), Route::Drop(_)));
        assert_eq!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 64, 6, 1501, false), Route::Forward);
        assert!(matches!(route_v6(&a, &std::net::Ipv6Addr::LOCALHOST.octets(), 64, 100), Route::Drop(_)));
    }
}
