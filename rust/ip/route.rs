//! The routing decision (`ip_route_input` / `ip6_route_input`, `ip_forward` / `ip6_forward`):
//! which packets a host forwards (and out of which interface) or delivers locally, both past
//! the confirm hook, and which it drops between PRE_ROUTING and confirmation, so their new
//! entries are never inserted.
//!
//! Two models: nfct's default router, with no routing table (every unicast destination that is
//! not one of the host's own addresses is forwarded, as in the kernel harness's set-up, spec
//! §17), and a host's own interfaces, routing tables and IP settings (a host file): longest
//! prefix match through the default rules, local and broadcast delivery, forwarding and
//! reverse-path settings, blackhole/unreachable/prohibit routes, the MTU of the route used.

use crate::fib::{RouteType, Routing};
use crate::net::LocalAddrs;
use crate::netfilter::Family;
use crate::wire::ip::{ipv4_fields, ipv6_fields};
use std::net::IpAddr;

/// Where the host sends a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Forwarded, out of this interface (none for the default router).
    Forward(Option<u32>),
    Local,
    Drop(&'static str),
}

/// Which destinations are this host's: the addresses it owns, or (a capture taken on the host
/// itself replayed with `--path local-in`) every unicast destination.
#[derive(Clone, Copy, Debug)]
pub struct Owner<'a> {
    pub local: &'a LocalAddrs,
    pub all_unicast: bool,
    /// The MTU of the default router's way out (a veth's default, 1500, the harness's too).
    pub egress_mtu: usize,
}

/// IPv4 routing of a packet with these addresses, TTL, protocol, length and DF bit.
#[inline]
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
    if len > own.egress_mtu && dont_fragment {
        return Route::Drop(FRAG_NEEDED);
    }
    Route::Forward(None)
}

const FRAG_NEEDED: &str = "ip_forward: fragmentation needed (packet larger than the MTU, DF set)";
const TOO_BIG: &str = "ip6_forward: packet too big (larger than the MTU)";

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
    if len > own.egress_mtu {
        // Routers do not fragment IPv6: the packet is dropped and a Packet Too Big sent.
        return Route::Drop(TOO_BIG);
    }
    Route::Forward(None)
}

/// The routing decision for a packet of family `fam` that passed the receive checks (so its
/// fixed header is all there), `len` bytes long as the forwarding path's MTU check sees it.
#[inline]
pub fn route_of(own: Owner<'_>, fam: Family, data: &[u8], len: usize) -> Route {
    match fam {
        Family::V4 => match ipv4_fields(data) {
            Some(h) => route_v4(own, h.src, h.dst, h.ttl, h.protocol, len, h.df),
            None => Route::Forward(None),
        },
        Family::V6 => match ipv6_fields(data) {
            Some(h) => route_v6(own, &h.src, &h.dst, h.hop_limit, len),
            None => Route::Forward(None),
        },
    }
}

/// The routing decision on a host's own routing (`r`) for a packet that arrived on `iif`
/// (an ifindex), `len` bytes long as the forwarding path's MTU check sees it.
pub fn host_route(
    r: &Routing,
    all_unicast: bool,
    fam: Family,
    data: &[u8],
    len: usize,
    iif: Option<u32>,
) -> Route {
    match fam {
        Family::V4 => match ipv4_fields(data) {
            Some(h) => host_route_v4(r, all_unicast, h.src, h.dst, h.ttl, h.protocol, len, h.df, iif),
            None => Route::Drop("ip_rcv: truncated header"),
        },
        Family::V6 => match ipv6_fields(data) {
            Some(h) => host_route_v6(r, all_unicast, &h.src, &h.dst, h.hop_limit, len, iif),
            None => Route::Drop("ipv6_rcv: truncated header"),
        },
    }
}

/// `fib_validate_source`: a packet from `src` arriving on `iif` is a martian when `src` is one
/// of the host's own addresses; with `rp_filter` on, the route back to `src` must exist (loose,
/// 2) and go out of `iif` (strict, 1).
fn validate_source(r: &Routing, src: IpAddr, iif: Option<u32>) -> Result<(), &'static str> {
    let dev = iif.and_then(|i| r.devices.by_index(i));
    let rpf = r.conf.rp_filter(dev.map(|d| d.name.as_str()));
    if rpf == 0 {
        return match r.devices.owner_of(src) {
            Some(_) => Err("ip_route_input: martian source"),
            None => Ok(()),
        };
    }
    match r.fib.lookup(src, None) {
        None => Err("ip_route_input: reverse path filter (no route back to the source)"),
        Some(back) if back.typ != RouteType::Unicast => Err("ip_route_input: martian source"),
        Some(back) if rpf == 1 && back.dev != iif => {
            Err("ip_route_input: reverse path filter (the route back leaves by another interface)")
        }
        Some(_) => Ok(()),
    }
}

/// The MTU of a route: its own, else its interface's.
fn route_mtu(r: &Routing, route: &crate::fib::Route) -> usize {
    let dev = route.dev.and_then(|i| r.devices.by_index(i)).map_or(1500, |d| d.mtu);
    route.mtu.unwrap_or(dev) as usize
}

/// The drop reason of a route type that stops packets.
fn refused(t: RouteType, v6: bool) -> &'static str {
    match (t, v6) {
        (RouteType::Blackhole, false) => "ip_route_input: blackhole route",
        (RouteType::Unreachable, false) => "ip_route_input: unreachable route",
        (RouteType::Prohibit, false) => "ip_route_input: prohibit route",
        (RouteType::Blackhole, true) => "ip6_route_input: blackhole route",
        (RouteType::Unreachable, true) => "ip6_route_input: unreachable route",
        (RouteType::Prohibit, true) => "ip6_route_input: prohibit route",
        (_, false) => "ip_route_input: no route to host",
        (_, true) => "ip6_route_input: no route to host",
    }
}

/// IPv4 on a host's routing.
#[allow(clippy::too_many_arguments)]
fn host_route_v4(
    r: &Routing,
    all_unicast: bool,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    proto: u8,
    len: usize,
    df: bool,
    iif: Option<u32>,
) -> Route {
    // The checks that need no table, as the default router makes them.
    let none = LocalAddrs::default();
    let own = Owner { local: &none, all_unicast: false, egress_mtu: usize::MAX };
    match route_v4(own, src, dst, 64, proto, 0, false) {
        Route::Forward(_) => {}
        other => return other,
    }
    let (s, d) = (IpAddr::from(src), IpAddr::from(dst));
    if all_unicast {
        return match validate_source(r, s, iif) {
            Ok(()) => Route::Local,
            Err(why) => Route::Drop(why),
        };
    }
    let Some(route) = r.fib.lookup(d, None) else { return Route::Drop(refused(RouteType::Throw, false)) };
    match route.typ {
        RouteType::Local | RouteType::Broadcast => match validate_source(r, s, iif) {
            Ok(()) => Route::Local,
            Err(why) => Route::Drop(why),
        },
        RouteType::Unicast => {
            let dev = iif.and_then(|i| r.devices.by_index(i)).map(|d| d.name.as_str());
            if !r.conf.forwards4(dev) {
                return Route::Drop("ip_route_input: forwarding is off (net.ipv4.ip_forward)");
            }
            if let Err(why) = validate_source(r, s, iif) {
                return Route::Drop(why);
            }
            if ttl <= 1 {
                return Route::Drop("ip_forward: TTL exceeded");
            }
            if len > route_mtu(r, route) && df {
                return Route::Drop(FRAG_NEEDED);
            }
            Route::Forward(route.dev)
        }
        t => Route::Drop(refused(t, false)),
    }
}

/// IPv6 on a host's routing.
fn host_route_v6(
    r: &Routing,
    all_unicast: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    hop_limit: u8,
    len: usize,
    iif: Option<u32>,
) -> Route {
    let loopback = |a: &[u8; 16]| a[..15].iter().all(|&b| b == 0) && a[15] == 1;
    if src[0] == 0xff || loopback(src) {
        return Route::Drop("ip6_rcv: martian source");
    }
    if loopback(dst) {
        return Route::Drop("ip6_rcv: loopback destination");
    }
    if dst[0] == 0xff {
        let scope = dst[1] & 0x0f;
        let zeros = dst[2..15].iter().all(|&b| b == 0);
        let routers = r.conf.forward6 && dst[15] == 2 && matches!(scope, 2 | 5);
        let joined = zeros && ((scope == 2 && dst[15] == 1) || routers);
        return if joined { Route::Local } else { Route::Drop("ip6_route_input: multicast not joined") };
    }
    if all_unicast {
        return Route::Local;
    }
    let d = IpAddr::from(*dst);
    let Some(route) = r.fib.lookup(d, None) else { return Route::Drop(refused(RouteType::Throw, true)) };
    match route.typ {
        RouteType::Local | RouteType::Anycast => Route::Local,
        RouteType::Unicast => {
            if !r.conf.forward6 {
                return Route::Drop("ip6_route_input: forwarding is off (net.ipv6.conf.all.forwarding)");
            }
            if hop_limit <= 1 {
                return Route::Drop("ip6_forward: hop limit exceeded");
            }
            // Only a packet going back out of the interface it came in on may keep a
            // link-local source (the redirect case).
            let link_local = |a: &[u8; 16]| a[0] == 0xfe && a[1] & 0xc0 == 0x80;
            let unspecified = src.iter().all(|&b| b == 0);
            if route.dev != iif && (link_local(src) || unspecified) {
                return Route::Drop("ip6_forward: source beyond scope");
            }
            if len > route_mtu(r, route).max(1280) {
                return Route::Drop(TOO_BIG);
            }
            Route::Forward(route.dev)
        }
        t => Route::Drop(refused(t, true)),
    }
}

/// Where a packet this host sends goes: back in through loopback (to one of its own
/// addresses, 127.0.0.0/8 or ::1), or out.
pub fn output_is_loopback(local: &LocalAddrs, routing: Option<&Routing>, dst: IpAddr) -> bool {
    dst.is_loopback()
        || local.contains(dst)
        || routing.is_some_and(|r| r.fib.addr_type(dst, None) == RouteType::Local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_v4(src: [u8; 4], dst: [u8; 4], ttl: u8, proto: u8, len: usize, df: bool) -> Route {
        let none = LocalAddrs::default();
        super::route_v4(
            Owner { local: &none, all_unicast: false, egress_mtu: 1500 },
            src,
            dst,
            ttl,
            proto,
            len,
            df,
        )
    }

    fn route_v6(src: &[u8; 16], dst: &[u8; 16], hop: u8, len: usize) -> Route {
        let none = LocalAddrs::default();
        super::route_v6(Owner { local: &none, all_unicast: false, egress_mtu: 1500 }, src, dst, hop, len)
    }

    #[test]
    fn local_addresses() {
        let l = LocalAddrs::new(&["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]);
        let own = Owner { local: &l, all_unicast: false, egress_mtu: 1500 };
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
        assert_eq!(
            super::route_v6(own, &v6("2001:db8::2"), &v6("2001:db8::3"), 64, 100),
            Route::Forward(None)
        );
        let all = Owner { local: &l, all_unicast: true, egress_mtu: 1500 };
        assert_eq!(super::route_v4(all, [10, 0, 0, 1], [10, 0, 0, 2], 1, 6, 100, false), Route::Local);
        assert!(matches!(
            super::route_v4(all, [10, 0, 0, 1], [224, 0, 0, 5], 1, 6, 100, false),
            Route::Drop(_)
        ));
        assert!(output_is_loopback(&l, None, "127.0.0.5".parse().unwrap()));
        assert!(output_is_loopback(&l, None, "192.0.2.1".parse().unwrap()));
        assert!(!output_is_loopback(&l, None, "192.0.2.2".parse().unwrap()));
        assert!(output_is_loopback(&l, None, "::1".parse().unwrap()));
    }

    #[test]
    fn v4() {
        assert_eq!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 64, 17, 100, false), Route::Forward(None));
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
        assert_eq!(route_v6(&a, &b, 64, 100), Route::Forward(None));
        assert!(matches!(route_v6(&a, &b, 1, 100), Route::Drop(_)));
        assert!(matches!(route_v6(&a, &ff, 255, 100), Route::Drop(_)));
        assert_eq!(route_v6(&a, &all, 1, 100), Route::Local);
        let routers: [u8; 16] = "ff02::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(route_v6(&a, &routers, 255, 100), Route::Local);
        let ll: [u8; 16] = "fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert!(matches!(route_v6(&ll, &b, 64, 100), Route::Drop(_)));
        assert_eq!(route_v6(&ll, &ll, 64, 100), Route::Forward(None));
        assert!(matches!(route_v6(&a, &b, 64, 1501), Route::Drop(_)));
        assert!(matches!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 64, 6, 1501, true), Route::Drop(_)));
        assert_eq!(route_v4([10, 0, 0, 1], [10, 0, 0, 2], 64, 6, 1501, false), Route::Forward(None));
        assert!(matches!(route_v6(&a, &std::net::Ipv6Addr::LOCALHOST.octets(), 64, 100), Route::Drop(_)));
    }
}
