//! The binding choice on a bare conntrack (no IP path): original tuples kept, ports searched,
//! source mappings reused, addresses hashed into a range; ICMP errors translated back.

use super::*;
use crate::core::{CtOptions, CtRef, SkbCt};
use crate::sysctl::Sysctl;
use crate::uapi::{IPS_DST_NAT_DONE, IPS_SRC_NAT_DONE};
use crate::wire::checksum;
use std::net::Ipv4Addr;

fn ct() -> Conntrack {
    Conntrack::new(CtOptions { seed: Some(9), ..CtOptions::default() }, Sysctl::default())
}

/// A UDP/IPv4 datagram with a valid checksum.
fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = checksum::internet_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 12, 0, 0, 9, 9, 9, 9]);
    let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
    s[..4].copy_from_slice(&src);
    d[..4].copy_from_slice(&dst);
    let c = checksum::pseudo_checksum(AF_INET, &s, &d, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&u);
    p
}

/// A new, unconfirmed entry for `pkt` (its handle).
fn new_entry(ct: &Conntrack, pkt: &[u8], now: u64) -> (SkbCt, u32, u32) {
    let mut skb = SkbCt::default();
    ct.conntrack_in(pkt, now, Hook::PreRouting, AF_INET, &mut skb);
    let CtRef::Ct { slot, gen, .. } = skb.nfct else { panic!("no entry: {:?}", skb.reason) };
    (skb, slot, gen)
}

fn env<'a>(ct: &'a Conntrack, st: &'a NatState, random: &'a dyn Fn() -> u32) -> NatEnv<'a> {
    NatEnv { ct, state: st, now: 1, random }
}

fn reply(ct: &Conntrack, slot: u32, gen: u32) -> Tuple {
    ct.with_conn(slot, gen, |c| c.tuple(Direction::Reply)).unwrap()
}

fn v4(t: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(t[0], t[1], t[2], t[3])
}

fn range(lo: &str, hi: &str, ports: Option<(u16, u16)>, flags: u32) -> NatRange {
    let mut r = addr_range(lo.parse().unwrap(), flags, ports);
    r.max_addr[..4].copy_from_slice(&lo.parse::<Ipv4Addr>().unwrap().octets());
    r.max_addr[..4].copy_from_slice(&hi.parse::<Ipv4Addr>().unwrap().octets());
    r
}

#[test]
fn null_binding_keeps_a_free_tuple_and_searches_a_taken_one() {
    let ct = ct();
    let st = NatState::default();
    let random = || 12345u32;
    let e = env(&ct, &st, &random);
    // A connection no rule translates.
    let (_skb, s2, g2) = new_entry(&ct, &udp4([10, 0, 0, 2], [10, 0, 0, 7], 2000, 80), 1);
    let status = ct.with_conn(s2, g2, |c| c.status).unwrap();
    assert_eq!(null_binding(&e, s2, g2, Hook::PostRouting), NF_ACCEPT);
    let st2 = ct.with_conn(s2, g2, |c| c.status).unwrap();
    assert_eq!(st2 & IPS_NAT_MASK, 0, "nothing translated");
    assert_eq!(st2 & !status, IPS_SRC_NAT_DONE);
    assert_eq!(reply(&ct, s2, g2).dst_u, 2000);
    // Destination side: its _DONE bit only.
    null_binding(&e, s2, g2, Hook::PreRouting);
    assert_ne!(ct.with_conn(s2, g2, |c| c.status).unwrap() & IPS_DST_NAT_DONE, 0);
    // Now a source whose port is taken: a confirmed entry's reply is 10.0.0.7:80 -> 10.0.0.3:3000.
    let (mut skb3, s3, g3) = new_entry(&ct, &udp4([10, 0, 0, 3], [10, 0, 0, 7], 3000, 80), 1);
    null_binding(&e, s3, g3, Hook::PostRouting);
    ct.confirm(&mut skb3, 1);
    // An entry from 10.0.0.4:3000 SNATed to 10.0.0.3 must not keep port 3000.
    let (_skb4, s4, g4) = new_entry(&ct, &udp4([10, 0, 0, 4], [10, 0, 0, 7], 3000, 80), 1);
    let found = ct.stats().found;
    setup_info(&e, s4, g4, &range("10.0.0.3", "10.0.0.3", None, 0), Manip::Src);
    let r = reply(&ct, s4, g4);
    assert_eq!(v4(&r.dst), Ipv4Addr::new(10, 0, 0, 3));
    assert_ne!(r.dst_u, 3000);
    assert!(r.dst_u >= 1024, "the port stays in its class (1024-65535): {}", r.dst_u);
    assert!(ct.stats().found > found);
    assert_ne!(ct.with_conn(s4, g4, |c| c.status).unwrap() & IPS_SRC_NAT, 0);
}

#[test]
fn port_classes_below_1024() {
    let ct = ct();
    let st = NatState::default();
    let random = || 77u32;
    let e = env(&ct, &st, &random);
    for (sport, lo, hi) in [(22u16, 1u16, 511u16), (700, 600, 1023)] {
        let (mut a, sa, ga) = new_entry(&ct, &udp4([10, 1, 0, 1], [10, 9, 0, 1], sport, 53), 1);
        setup_info(&e, sa, ga, &range("10.2.0.1", "10.2.0.1", None, 0), Manip::Src);
        ct.confirm(&mut a, 1);
        assert_eq!(reply(&ct, sa, ga).dst_u, sport, "a free port is kept");
        let (_b, sb, gb) = new_entry(&ct, &udp4([10, 1, 0, 2], [10, 9, 0, 1], sport, 53), 1);
        setup_info(&e, sb, gb, &range("10.2.0.1", "10.2.0.1", None, 0), Manip::Src);
        let p = reply(&ct, sb, gb).dst_u;
        assert!((lo..=hi).contains(&p) && p != sport, "{sport} -> {p}");
    }
}

#[test]
fn a_source_keeps_its_mapping_across_destinations() {
    let ct = ct();
    let st = NatState::default();
    let n = std::cell::Cell::new(0u32);
    let random = || {
        n.set(n.get().wrapping_mul(1_103_515_245).wrapping_add(12345));
        n.get()
    };
    let e = env(&ct, &st, &random);
    let r = range("192.0.2.10", "192.0.2.20", None, 0);
    let (mut a, sa, ga) = new_entry(&ct, &udp4([10, 0, 0, 5], [198, 51, 100, 1], 5555, 53), 1);
    setup_info(&e, sa, ga, &r, Manip::Src);
    ct.confirm(&mut a, 1);
    let first = reply(&ct, sa, ga);
    assert!((10..=20).contains(&first.dst[3]));
    // The same source to another server: `find_appropriate_src` gives it the same address
    // and port.
    let (_b, sb, gb) = new_entry(&ct, &udp4([10, 0, 0, 5], [198, 51, 100, 2], 5555, 53), 1);
    setup_info(&e, sb, gb, &r, Manip::Src);
    let second = reply(&ct, sb, gb);
    assert_eq!((second.dst, second.dst_u), (first.dst, first.dst_u));
}

#[test]
fn the_address_hash_is_stable_and_persistent_ignores_the_destination() {
    let t = |d: u8| Tuple::new_v4(Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(198, 51, 100, d), 17, 1, 2);
    let pick = |t: Tuple, flags: u32| {
        let mut x = t;
        best_ips(&mut x, &range("192.0.2.0", "192.0.2.255", None, flags), Manip::Src, Zone::default());
        x.src[3]
    };
    let picks: Vec<u8> = (1..=40).map(|d| pick(t(d), 0)).collect();
    assert!(picks.iter().collect::<std::collections::HashSet<_>>().len() > 10, "{picks:?}");
    assert_eq!(picks, (1..=40).map(|d| pick(t(d), 0)).collect::<Vec<_>>());
    let persistent: Vec<u8> = (1..=40).map(|d| pick(t(d), RANGE_PERSISTENT)).collect();
    assert!(persistent.iter().all(|&p| p == persistent[0]));
    // lookup3's hashword of no words is its initial value (the kernel's choice among a
    // range's addresses is compared live in tests/live/test_nat_kernel.py).
    assert_eq!(jhash2(&[], 0), 0xdead_beef);
}

#[test]
fn icmp_error_about_a_dnat_connection() {
    // Connection: client 198.51.100.7:50000 -> 203.0.113.1:80, DNATed to 192.168.1.20:8080.
    let orig = Tuple::new_v4(Ipv4Addr::new(198, 51, 100, 7), Ipv4Addr::new(203, 0, 113, 1), 17, 50000, 80);
    let reply =
        Tuple::new_v4(Ipv4Addr::new(192, 168, 1, 20), Ipv4Addr::new(198, 51, 100, 7), 17, 8080, 50000);
    let status = IPS_DST_NAT | IPS_DST_NAT_DONE | IPS_SRC_NAT_DONE;
    // The backend's port unreachable about the translated datagram.
    let quoted = udp4([198, 51, 100, 7], [192, 168, 1, 20], 50000, 8080);
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&quoted);
    let c = checksum::internet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p =
        vec![0x45, 0, 0, (20 + m.len()) as u8, 0, 2, 0, 0, 64, 1, 0, 0, 192, 168, 1, 20, 198, 51, 100, 7];
    let c = checksum::internet_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&m);
    // At POST_ROUTING (source manip) of the reply direction, the DST_NAT bit is the one.
    assert!(icmp_translation_needed(status, Direction::Reply, Manip::Src));
    assert_eq!(
        icmp_reply_translation(&mut p, status, &[orig, reply], Direction::Reply, Manip::Src),
        NF_ACCEPT
    );
    assert_eq!(&p[12..16], &[203, 0, 113, 1], "outer source");
    assert_eq!(&p[28 + 16..28 + 20], &[203, 0, 113, 1], "quoted destination");
    assert_eq!(u16::from_be_bytes([p[28 + 22], p[28 + 23]]), 80, "quoted port");
    assert_eq!(checksum::internet_checksum(&p[..20]), 0);
    assert_eq!(checksum::internet_checksum(&p[20..]), 0);
    assert_eq!(checksum::internet_checksum(&p[28..48]), 0, "quoted IP header");
    // A bad ICMP checksum drops, as `nf_ip_checksum` does.
    p[22] ^= 1;
    assert_eq!(icmp_reply_translation(&mut p, status, &[orig, reply], Direction::Reply, Manip::Src), NF_DROP);
}

#[test]
fn packet_target_follows_the_status_bits() {
    let orig = Tuple::new_v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2), 6, 1, 2);
    let reply = Tuple::new_v4(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(192, 0, 2, 1), 6, 2, 9);
    let tuples = [orig, reply];
    let snat = IPS_SRC_NAT | IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE;
    let out = packet_target(snat, &tuples, Direction::Original, Manip::Src).unwrap();
    assert_eq!((v4(&out.src), out.src_u), (Ipv4Addr::new(192, 0, 2, 1), 9));
    assert!(packet_target(snat, &tuples, Direction::Original, Manip::Dst).is_none());
    let back = packet_target(snat, &tuples, Direction::Reply, Manip::Dst).unwrap();
    assert_eq!((v4(&back.dst), back.dst_u), (Ipv4Addr::new(10, 0, 0, 1), 1));
    assert!(packet_target(IPS_SRC_NAT_DONE, &tuples, Direction::Original, Manip::Src).is_none());
}

#[test]
fn ipv6_masquerade_looks_at_the_destination_not_the_link_local_gateway() {
    use crate::fib::{IfAddr, Route, RouteType, RT_TABLE_MAIN};
    let mut fib = Fib::default();
    fib.add(Route {
        table: RT_TABLE_MAIN,
        dst: "::".parse().unwrap(),
        prefix_len: 0,
        typ: RouteType::Unicast,
        dev: Some(3),
        gateway: Some("fe80::1".parse().unwrap()),
        prefsrc: None,
        metric: 1024,
        mtu: None,
    })
    .unwrap();
    let dst: IpAddr = "2001:db8:1::10".parse().unwrap();
    assert_eq!(next_hop(Some(&fib), dst), dst);
    let dev = Dev {
        index: 3,
        name: "wan".into(),
        mtu: 1500,
        up: true,
        loopback: false,
        link_type: crate::fib::ARPHRD_ETHER,
        addrs: vec![IfAddr { addr: "2001:db8:ff::1".parse().unwrap(), prefix_len: 64 }],
    };
    assert_eq!(masquerade_addr(&dev, next_hop(Some(&fib), dst)), Some("2001:db8:ff::1".parse().unwrap()));
    // IPv4 still looks at the gateway.
    fib.add(Route {
        table: RT_TABLE_MAIN,
        dst: "0.0.0.0".parse().unwrap(),
        prefix_len: 0,
        typ: RouteType::Unicast,
        dev: Some(3),
        gateway: Some("203.0.113.254".parse().unwrap()),
        prefsrc: None,
        metric: 0,
        mtu: None,
    })
    .unwrap();
    assert_eq!(
        next_hop(Some(&fib), "198.51.100.7".parse().unwrap()),
        "203.0.113.254".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn ipv6_masquerade_selects_its_source_as_rfc6724_says() {
    use crate::fib::IfAddr;
    // As the kernel lists them after adding 2001:db8:ff::1, 3fff::1, then fd99::1 (observed).
    let dev = Dev {
        index: 3,
        name: "wan".into(),
        mtu: 1500,
        up: true,
        loopback: false,
        link_type: crate::fib::ARPHRD_ETHER,
        addrs: ["fd99::1", "3fff::1", "2001:db8:ff::1", "203.0.113.1"]
            .iter()
            .map(|a| IfAddr { addr: a.parse().unwrap(), prefix_len: if a.contains(':') { 64 } else { 24 } })
            .collect(),
    };
    let pick = |d: &str| masquerade_addr(&dev, d.parse().unwrap()).unwrap().to_string();
    for (dst, src) in [
        ("2001:db8:1::10", "2001:db8:ff::1"),
        ("2001:db8:ff::77", "2001:db8:ff::1"),
        ("2002::1", "2001:db8:ff::1"),
        ("2001::1", "2001:db8:ff::1"),
        ("3fff:1::10", "3fff::1"),
        ("3ffe::10", "3fff::1"),
        ("4000::1", "3fff::1"),
        ("8000::1", "3fff::1"),
        ("::ffff:1.2.3.4", "3fff::1"),
        ("fd99:5::1", "fd99::1"),
        ("fd00:7::1", "fd99::1"),
        ("fec0::1", "fd99::1"),
        ("198.51.100.7", "203.0.113.1"),
    ] {
        assert_eq!(pick(dst), src, "for {dst}");
    }
    // A link-local destination wants a link-local source.
    let mut ll = dev.clone();
    ll.addrs.push(IfAddr { addr: "fe80::1".parse().unwrap(), prefix_len: 64 });
    assert_eq!(masquerade_addr(&ll, "fe80::2".parse().unwrap()), Some("fe80::1".parse().unwrap()));
    assert_eq!(
        masquerade_addr(&ll, "2001:db8:1::1".parse().unwrap()),
        Some("2001:db8:ff::1".parse().unwrap())
    );
}
