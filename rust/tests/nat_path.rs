//! NAT through the whole IP path: a router's host file with an nft ruleset, packets from the
//! wire, the bytes that leave, the entries listed. The live-kernel comparison of the same
//! scenarios is tests/live/test_nat_kernel.py; these check nfct's own invariants offline
//! (checksums valid after every rewrite, reply tuples, status bits, counters).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test programs

use nfct::core::CtRef;
use nfct::host::{install, Host};
use nfct::ip::{run_with, Carrier, Ingress, Outcome, PacketClock, PacketRun, PathKind, Skb};
use nfct::net::{Net, NetOptions};
use nfct::netfilter::Family;
use nfct::sysctl::Sysctl;
use nfct::tuple::Direction;
use nfct::uapi::{
    IPS_DST_NAT, IPS_DST_NAT_DONE, IPS_SRC_NAT, IPS_SRC_NAT_DONE, IP_CT_ESTABLISHED_REPLY,
    IP_CT_RELATED_REPLY, NF_ACCEPT, NF_DROP,
};
use nfct::wire::checksum::{internet_checksum, pseudo_checksum};
use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::sync::Arc;

const LAN: u32 = 2;
const WAN: u32 = 3;

/// A router: `lan` 192.168.1.1/24, `wan` 203.0.113.1/24 with the default route via
/// 203.0.113.254, forwarding on, and these nat rules (nft -j rule bodies) in `inet nat`'s
/// `post` (srcnat) and `pre` (dstnat) chains.
fn router(post: &[&str], pre: &[&str]) -> Net {
    let rules = |chain: &str, list: &[&str]| -> Vec<String> {
        list.iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    r#"{{"rule": {{"family": "inet", "table": "nat", "chain": "{chain}", "handle": {}, "expr": {e}}}}}"#,
                    i + 10
                )
            })
            .collect()
    };
    let mut objs = vec![
        r#"{"table": {"family": "inet", "name": "nat", "handle": 1}}"#.to_string(),
        r#"{"chain": {"family": "inet", "table": "nat", "name": "pre", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}"#.to_string(),
        r#"{"chain": {"family": "inet", "table": "nat", "name": "post", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}"#.to_string(),
    ];
    objs.extend(rules("post", post));
    objs.extend(rules("pre", pre));
    let text = format!(
        r#"{{
        "addr": [
          {{"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "mtu": 65536, "link_type": "loopback",
            "addr_info": [{{"local": "127.0.0.1", "prefixlen": 8}}]}},
          {{"ifindex": 2, "ifname": "lan", "flags": ["UP"], "mtu": 1500,
            "addr_info": [{{"local": "192.168.1.1", "prefixlen": 24}}]}},
          {{"ifindex": 3, "ifname": "wan", "flags": ["UP"], "mtu": 1500,
            "addr_info": [{{"local": "203.0.113.1", "prefixlen": 24}}]}}],
        "route": [
          {{"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"}},
          {{"type": "local", "dst": "192.168.1.1", "dev": "lan", "table": "local"}},
          {{"type": "local", "dst": "203.0.113.1", "dev": "wan", "table": "local"}},
          {{"dst": "192.168.1.0/24", "dev": "lan"}},
          {{"dst": "203.0.113.0/24", "dev": "wan"}},
          {{"dst": "default", "gateway": "203.0.113.254", "dev": "wan"}}],
        "sysctl": {{"net.ipv4.ip_forward": "1"}},
        "ruleset": {{"nftables": [{}]}}
        }}"#,
        objs.join(",")
    );
    let host = Host::parse(&text).unwrap();
    let local = host.routing.devices.all().iter().flat_map(|d| d.addrs.iter().map(|a| a.addr)).collect();
    let ruleset = Arc::new(host.ruleset.clone().unwrap());
    let net = Net::new(
        NetOptions {
            seed: Some(3),
            local_addrs: local,
            routing: Some(host.routing),
            ..NetOptions::default()
        },
        Sysctl::default(),
    );
    install(&net, &ruleset);
    net
}

fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let c = internet_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

fn l4_sum(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> u16 {
    let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
    s[..4].copy_from_slice(&src);
    d[..4].copy_from_slice(&dst);
    pseudo_checksum(nfct::uapi::AF_INET, &s, &d, proto, l4)
}

/// A TCP segment with these flags and sequence numbers, checksums right.
fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    let c = l4_sum(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ip4(src, dst, 6, &t)
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&[0, 12, 0, 0, 1, 2, 3, 4]);
    let c = l4_sum(src, dst, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ip4(src, dst, 17, &u)
}

/// An ICMP destination unreachable (port) from `src` to `dst` quoting `orig`'s first 28 bytes.
fn icmp_unreach(src: [u8; 4], dst: [u8; 4], orig: &[u8]) -> Vec<u8> {
    let mut m = vec![3, 3, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&orig[..28.min(orig.len())]);
    let c = internet_checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ip4(src, dst, 1, &m)
}

/// Every checksum of an IPv4 TCP/UDP/ICMP packet holds.
fn checksums_ok(p: &[u8]) -> bool {
    let ihl = usize::from(p[0] & 0xf) * 4;
    if internet_checksum(&p[..ihl]) != 0 {
        return false;
    }
    let (src, dst) = (p[12..16].try_into().unwrap(), p[16..20].try_into().unwrap());
    let l4 = &p[ihl..];
    match p[9] {
        1 => internet_checksum(l4) == 0,
        proto => {
            let mut z = l4.to_vec();
            let at = if proto == 6 { 16 } else { 6 };
            let want = u16::from_be_bytes([z[at], z[at + 1]]);
            z[at..at + 2].copy_from_slice(&[0, 0]);
            let got = l4_sum(src, dst, proto, &z);
            want == got || (proto == 17 && got == 0 && want == 0xffff)
        }
    }
}

/// One packet arriving on `iif`; the outcome and the bytes as they left.
fn rcv(net: &Net, iif: u32, t: u64, pkt: &[u8]) -> (Outcome, Vec<u8>) {
    let cell = RefCell::new(Skb::default());
    let run = PacketRun {
        ingress: Ingress::Rcv,
        all_local: false,
        tstamp: t,
        clock: PacketClock::Shared,
        iif: Some(iif),
        hint: None,
    };
    let hooks = net.hooks.snapshot();
    let mut ext = nfct::ip::no_external;
    let out = run_with(net, &hooks, run, pkt, &cell, &mut ext);
    let bytes = cell.with(|st| st.data(pkt).to_vec());
    net.ct.release(&mut cell.into_inner().ct);
    (out, bytes)
}

fn a(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

/// The listed entries' (original, reply, status).
fn entries(net: &Net) -> Vec<(nfct::tuple::Tuple, nfct::tuple::Tuple, u32)> {
    net.ct.list(net.now()).into_iter().map(|(_, _, v)| (v.orig, v.reply, v.status)).collect()
}

const MASQ_WAN: &str = r#"[{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan"}}, {"masquerade": null}]"#;
const SYN: u8 = 0x02;
const SYNACK: u8 = 0x12;
const ACK: u8 = 0x10;
const MS: u64 = 1_000_000;

#[test]
fn masquerade_rewrites_both_directions() {
    let net = router(&[MASQ_WAN], &[]);
    let (client, server) = (a("192.168.1.10"), a("198.51.100.7"));
    let (out, bytes) = rcv(&net, LAN, MS, &tcp(client, server, 40000, 80, SYN, 1000, 0));
    assert_eq!((out.verdict, out.path), (NF_ACCEPT, PathKind::Forward));
    assert_eq!(&bytes[12..16], &a("203.0.113.1"), "the source is wan's address");
    assert_eq!(u16::from_be_bytes([bytes[20], bytes[21]]), 40000, "the port is kept when free");
    assert!(checksums_ok(&bytes));
    let listed = entries(&net);
    assert_eq!(listed.len(), 1);
    let (orig, reply, status) = listed[0];
    assert_eq!(&orig.src[..4], &client);
    assert_eq!((&reply.src[..4], &reply.dst[..4], reply.dst_u), (&server[..], &a("203.0.113.1")[..], 40000));
    assert_eq!(
        status & (IPS_SRC_NAT | IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE | IPS_DST_NAT),
        IPS_SRC_NAT | IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE
    );
    // The server's answer comes back to the router's address and goes on to the client.
    let (out, bytes) = rcv(&net, WAN, 2 * MS, &tcp(server, a("203.0.113.1"), 80, 40000, SYNACK, 5000, 1001));
    assert_eq!(
        (out.verdict, out.path, out.ctinfo()),
        (NF_ACCEPT, PathKind::Forward, Some(IP_CT_ESTABLISHED_REPLY))
    );
    assert_eq!((&bytes[16..20], u16::from_be_bytes([bytes[22], bytes[23]])), (&client[..], 40000));
    assert!(checksums_ok(&bytes));
    let (out, _) = rcv(&net, LAN, 3 * MS, &tcp(client, server, 40000, 80, ACK, 1001, 5001));
    assert_eq!(out.verdict, NF_ACCEPT);
    assert_eq!(entries(&net).len(), 1);
}

#[test]
fn a_taken_source_port_is_searched_and_counted() {
    let net = router(&[MASQ_WAN], &[]);
    let server = a("198.51.100.7");
    rcv(&net, LAN, MS, &tcp(a("192.168.1.10"), server, 40000, 80, SYN, 1, 0));
    let (out, bytes) = rcv(&net, LAN, 2 * MS, &tcp(a("192.168.1.11"), server, 40000, 80, SYN, 1, 0));
    assert_eq!(out.verdict, NF_ACCEPT);
    let port = u16::from_be_bytes([bytes[20], bytes[21]]);
    assert_ne!(port, 40000, "the second client cannot keep the port");
    assert!(port >= 1024, "a port of the same class (1024-65535): {port}");
    assert!(checksums_ok(&bytes));
    assert!(net.ct.stats().found >= 1, "tuple_taken counted");
    let replies: Vec<u16> = entries(&net).iter().map(|e| e.1.dst_u).collect();
    assert!(replies.contains(&40000) && replies.contains(&port), "{replies:?}");
}

#[test]
fn snat_gives_up_before_the_range_is_full_and_the_clash_drops() {
    let one_port = r#"[{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": 6}},
        {"snat": {"family": "ip", "addr": "203.0.113.1", "port": 5000}}]"#;
    let net = router(&[one_port], &[]);
    let server = a("198.51.100.7");
    let (out, bytes) = rcv(&net, LAN, MS, &tcp(a("192.168.1.10"), server, 40000, 80, SYN, 1, 0));
    assert_eq!(out.verdict, NF_ACCEPT);
    assert_eq!(u16::from_be_bytes([bytes[20], bytes[21]]), 5000);
    // The range has no other port: the second connection keeps the taken one and its
    // confirmation clashes; TCP clashes are not resolvable.
    let before = net.ct.stats();
    let (out, _) = rcv(&net, LAN, 2 * MS, &tcp(a("192.168.1.11"), server, 40001, 80, SYN, 1, 0));
    assert_eq!(out.verdict, NF_DROP);
    assert_eq!(out.dropped_by.as_ref().map(|o| o.name.to_string()).as_deref(), Some("ipv4_confirm"));
    let after = net.ct.stats();
    assert_eq!((after.insert_failed - before.insert_failed, after.drop - before.drop), (1, 1));
    assert_eq!(entries(&net).len(), 1);
}

#[test]
fn dnat_and_the_icmp_error_translated_back() {
    let dnat = r#"[{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}},
        {"dnat": {"family": "ip", "addr": "192.168.1.20", "port": 8080}}]"#;
    let net = router(&[], &[dnat]);
    let (client, me, backend) = (a("198.51.100.7"), a("203.0.113.1"), a("192.168.1.20"));
    let syn = tcp(client, me, 50000, 80, SYN, 7, 0);
    let (out, bytes) = rcv(&net, WAN, MS, &syn);
    assert_eq!((out.verdict, out.path), (NF_ACCEPT, PathKind::Forward));
    assert_eq!((&bytes[16..20], u16::from_be_bytes([bytes[22], bytes[23]])), (&backend[..], 8080));
    assert!(checksums_ok(&bytes));
    let (_, reply, status) = entries(&net)[0];
    assert_eq!((&reply.src[..4], reply.src_u), (&backend[..], 8080));
    assert_ne!(status & IPS_DST_NAT, 0);
    // The backend refuses: its ICMP error quotes the translated SYN; the client must see one
    // about the packet it sent, from the address it sent it to.
    let err = icmp_unreach(backend, client, &bytes);
    let (out, bytes) = rcv(&net, LAN, 2 * MS, &err);
    assert_eq!((out.verdict, out.ctinfo()), (NF_ACCEPT, Some(IP_CT_RELATED_REPLY)));
    assert_eq!(&bytes[12..16], &me, "the outer source is the address the client used");
    let inner = &bytes[28..];
    assert_eq!((&inner[16..20], u16::from_be_bytes([inner[22], inner[23]])), (&me[..], 80));
    assert!(checksums_ok(&bytes), "ICMP and IP checksums after the translation");
    assert_eq!(internet_checksum(&inner[..20]), 0, "the quoted IP header's checksum");
}

#[test]
fn dnat_to_random_backends_and_the_udp_clash_resolved_harder() {
    // Two datagrams of one flow (a resolver's A and AAAA queries from one socket) in flight
    // together, sent to different backends by `numgen random`: the second to confirm clashes
    // on its original tuple only and goes in by its reply direction, for a second.
    let dnat = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}},
        {"dnat": {"family": "ip", "addr": {"map": {"key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}},
           "data": {"set": [[0, "192.168.1.53"], [1, "192.168.1.54"]]}}}}}]"#;
    let net = router(&[], &[dnat]);
    let q = udp(a("198.51.100.7"), a("203.0.113.1"), 33000, 53);
    let run = |t| PacketRun {
        ingress: Ingress::Rcv,
        all_local: false,
        tstamp: t,
        clock: PacketClock::Shared,
        iif: Some(WAN),
        hint: None,
    };
    // Drive the hooks by hand up to confirmation for both packets: the first packet's path is
    // run with a hook table without confirm, then confirm is run for each.
    let mut backends = Vec::new();
    for _ in 0..64 {
        let cell = RefCell::new(Skb::default());
        let hooks = net.hooks.snapshot();
        let mut ext = nfct::ip::no_external;
        rcv_noconfirm(&net, &hooks, run(MS), &q, &cell, &mut ext);
        let dst = cell.with(|st| st.data(&q)[16..20].to_vec());
        backends.push(dst);
        net.ct.release(&mut cell.into_inner().ct);
    }
    assert!(backends.contains(&a("192.168.1.53").to_vec()) && backends.contains(&a("192.168.1.54").to_vec()));
    assert_eq!(entries(&net).len(), 0, "nothing confirmed");
    // Now two in flight, to different backends, then both confirmed.
    let mut flying = Vec::new();
    while flying.len() < 2 {
        let cell = RefCell::new(Skb::default());
        let hooks = net.hooks.snapshot();
        let mut ext = nfct::ip::no_external;
        rcv_noconfirm(&net, &hooks, run(2 * MS), &q, &cell, &mut ext);
        let dst = cell.with(|st| st.data(&q)[16..20].to_vec());
        if flying.iter().any(|(d, _): &(Vec<u8>, RefCell<Skb>)| *d == dst) {
            net.ct.release(&mut cell.into_inner().ct);
            continue;
        }
        flying.push((dst, cell));
    }
    let before = net.ct.stats().clash_resolve;
    for (_, cell) in &flying {
        let v = cell.with(|st| net.ct.confirm(&mut st.ct, 2 * MS));
        assert_eq!(v, NF_ACCEPT);
    }
    assert_eq!(net.ct.stats().clash_resolve - before, 1);
    let listed = entries(&net);
    assert_eq!(listed.len(), 1, "the loser is hidden from listings");
    // The loser's answer still finds it by its reply tuple.
    let loser = flying[1].0.clone();
    let answer = udp(loser.clone().try_into().unwrap(), a("198.51.100.7"), 53, 33000);
    let (out, bytes) = rcv(&net, LAN, 3 * MS, &answer);
    assert_eq!((out.verdict, out.ctinfo()), (NF_ACCEPT, Some(IP_CT_ESTABLISHED_REPLY)));
    assert_eq!(&bytes[12..16], &a("203.0.113.1"), "the answer leaves from the address the client asked");
    for (_, cell) in flying {
        net.ct.release(&mut cell.into_inner().ct);
    }
    let _ = (Direction::Reply, CtRef::None);
}

/// A packet through PRE_ROUTING (conntrack and NAT) only: what a packet still in flight has.
fn rcv_noconfirm<'a>(
    net: &'a Net,
    hooks: &'a nfct::netfilter::HookTable,
    run: PacketRun<'static>,
    pkt: &'a [u8],
    cell: &'a RefCell<Skb>,
    ext: &'a mut nfct::ip::ExternalOp<'a>,
) {
    let out =
        nfct::ip::run_hook_only(net, hooks, Family::V4, nfct::uapi::Hook::PreRouting, run, pkt, cell, ext);
    assert!(out.is_none(), "PRE_ROUTING accepts");
}

/// `nft -j` lists an address range that is a whole prefix as one (`dnat to 10.0.0.16/28` for
/// `dnat to 10.0.0.16-10.0.0.31`); without the netmap flag it is that range, as the kernel
/// gets it (observed on 6.18, nft 1.0.6).
#[test]
fn a_nat_prefix_is_a_range_of_addresses() {
    let dnat = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "198.51.100.10"}},
        {"dnat": {"family": "ip", "addr": {"prefix": {"addr": "192.168.1.16", "len": 28}}}}]"#;
    let net = router(&[], &[dnat]);
    let mut chosen = std::collections::BTreeSet::new();
    for i in 0..64u8 {
        let (out, bytes) = rcv(
            &net,
            WAN,
            MS,
            &udp([198, 51, 100, 100 + i % 50], a("198.51.100.10"), 1000 + u16::from(i), 53),
        );
        assert_eq!(out.verdict, NF_ACCEPT);
        assert!(checksums_ok(&bytes));
        let d = [bytes[16], bytes[17], bytes[18], bytes[19]];
        assert!(d >= a("192.168.1.16") && d <= a("192.168.1.31"), "{d:?}");
        chosen.insert(d);
    }
    assert!(chosen.len() > 4, "spread over the range: {chosen:?}");
}

/// The last attempts of a port search: a new connection's SYN takes the tuple of a
/// connection in TIME_WAIT (deleting it) when its sequence number is past the old one's end,
/// and counts no `found` for the lookup (observed on 6.18: tests/live/test_nat_kernel.py).
#[test]
fn a_syn_takes_over_a_time_wait_tuple_in_the_last_attempts() {
    const FINACK: u8 = 0x11;
    let one_port = r#"[{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": 6}},
        {"snat": {"family": "ip", "addr": "203.0.113.1", "port": 5000}}]"#;
    let (c1, c2, server, me) = (a("192.168.1.10"), a("192.168.1.11"), a("198.51.100.7"), a("203.0.113.1"));
    let close = |net: &Net| {
        let steps: [(u32, Vec<u8>); 7] = [
            (LAN, tcp(c1, server, 40000, 80, SYN, 1000, 0)),
            (WAN, tcp(server, me, 80, 5000, SYNACK, 9000, 1001)),
            (LAN, tcp(c1, server, 40000, 80, ACK, 1001, 9001)),
            (LAN, tcp(c1, server, 40000, 80, FINACK, 1001, 9001)),
            (WAN, tcp(server, me, 80, 5000, ACK, 9001, 1002)),
            (WAN, tcp(server, me, 80, 5000, FINACK, 9001, 1002)),
            (LAN, tcp(c1, server, 40000, 80, ACK, 1002, 9002)),
        ];
        for (i, (dev, p)) in steps.iter().enumerate() {
            let (out, _) = rcv(net, *dev, (i as u64 + 1) * MS, p);
            assert_eq!(out.verdict, NF_ACCEPT, "step {i}");
        }
    };
    // Past the old end (1002): the TIME_WAIT entry goes, the port is reused.
    let net = router(&[one_port], &[]);
    close(&net);
    let (out, bytes) = rcv(&net, LAN, 10 * MS, &tcp(c2, server, 40001, 80, SYN, 1002, 0));
    assert_eq!(out.verdict, NF_ACCEPT);
    assert_eq!(u16::from_be_bytes([bytes[20], bytes[21]]), 5000);
    let listed = entries(&net);
    assert_eq!(listed.len(), 1);
    assert_eq!(&listed[0].0.src[..4], &c2);
    assert_eq!(net.ct.stats().found, 0);
    // Not past it: the old entry stays and the SYN is dropped at confirmation.
    let net = router(&[one_port], &[]);
    close(&net);
    let (out, _) = rcv(&net, LAN, 10 * MS, &tcp(c2, server, 40001, 80, SYN, 1001, 0));
    assert_eq!(out.verdict, NF_DROP);
    assert_eq!(&entries(&net)[0].0.src[..4], &c1);
    // A connection picked up mid-stream (an ACK) does not evict, and its lookup counts.
    let net = router(&[one_port], &[]);
    close(&net);
    let (out, _) = rcv(&net, LAN, 10 * MS, &tcp(c2, server, 40001, 80, ACK, 5000, 1));
    assert_eq!(out.verdict, NF_DROP);
    assert_eq!(net.ct.stats().found, 1);
}
