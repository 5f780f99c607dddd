//! The bodies of nfct's fuzz targets (issue #17). Each takes the fuzzer's bytes and must not
//! panic; the stateful ones also assert the table's invariants after every packet. The
//! `fuzz_targets/` binaries hand them libFuzzer's inputs; `tests` below runs them over the seed
//! corpora (built from the shipped captures in `examples/`) and over `regressions/`.
#![forbid(unsafe_code)]

use nfct::core::CtRef;
use nfct::defrag::{Defrag, FragLimits};
use nfct::host::{install, Host};
#[allow(unused_imports)]
use nfct::ip::Carrier as _;
use nfct::ip::{run_with, Ingress, PacketClock, PacketRun, Skb};
use nfct::net::{Net, NetOptions};
use nfct::replay::capture::Capture;
use nfct::replay::{Clock, Feeder, ReplayPath};
use nfct::sysctl::{Sysctl, SysctlKey};
use nfct::tuple::Direction;
use nfct::uapi::{AF_INET, AF_INET6, NF_ACCEPT};
use nfct::wire::checksum::{internet_checksum, pseudo_checksum};
use nfct::wire::{ip, l4, link, rss};
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;

const NS: u64 = 1_000_000_000;

/// Splits the input into (selector byte, time step in ms, packet) records: each record is
/// `sel, dt, len_hi, len_lo, bytes...` (a short last record takes what is left).
pub fn records(data: &[u8]) -> Vec<(u8, u64, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let (sel, dt) = (rest[0], u64::from(rest[1]));
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let body = &rest[4..];
        let take = len.min(body.len());
        out.push((sel, dt, &body[..take]));
        rest = &body[take..];
    }
    out
}

/// One record as `records` reads it (for building seed corpora).
pub fn encode(sel: u8, dt_ms: u8, pkt: &[u8], out: &mut Vec<u8>) {
    let len = pkt.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&[sel, dt_ms]);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&pkt[..len]);
}

/// The wire parsers: IP receive checks, L3/L4 parsing, tuples, link layers, the RSS hash.
pub fn wire(data: &[u8]) {
    let _ = ip::ip_version(data);
    let _ = ip::ipv4_rcv_check(data);
    let _ = ip::ipv6_rcv_check(data);
    let _ = ip::addrs(data);
    let _ = ip::ipv4_fields(data);
    let _ = ip::ipv6_fields(data);
    if let Some(ends) = rss::flow_ends(data) {
        let _ = nfct::tuple::TupleHasher::seeded(1).flow_range(&ends);
    }
    for l3num in [AF_INET, AF_INET6] {
        if let Ok(l3) = ip::get_l4proto(l3num, data) {
            let l4b = data.get(l3.l4_off..).unwrap_or(&[]);
            if let Some(t) = nfct::tuple::get_tuple(&l3, l4b) {
                if let Some(r) = t.invert() {
                    assert_eq!(r.invert(), Some(t), "inverting twice gives the tuple back");
                }
            }
            let _ = l4::ports(l4b);
            let _ = l4::udp(l4b);
            let _ = l4::icmp(l4b);
            let _ = l4::gre(l4b);
            let _ = l4::sctp_ports(l4b);
            if let Some(h) = l4::tcp(l4b) {
                let _ = l4::tcp_options(l4b, usize::from(h.doff) * 4);
            }
            let _ = nfct::wire::checksum::l4_ok(l3num, &l3.src, &l3.dst, l3.protonum, l4b);
            let _ = nfct::wire::checksum::sctp_ok(l4b);
        }
    }
    for lt in [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147] {
        if let Some((p, _)) = link::ip_payload_encap(lt, data) {
            assert!(p.len() <= data.len());
        }
    }
}

/// The pcap/pcapng reader: any bytes as a capture file.
pub fn capture(data: &[u8]) {
    thread_local! {
        static PATH: std::path::PathBuf = {
            let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
            dir.join(format!("nfct-fuzz-capture-{}-{:?}.pcap", std::process::id(), std::thread::current().id()))
        };
    }
    PATH.with(|path| {
        if std::fs::write(path, data).is_err() {
            return;
        }
        if let Ok(mut cap) = Capture::open(path) {
            let mut last = 0u64;
            let _ = cap.for_each(|rec| {
                assert!(rec.index > last, "records are numbered in order");
                last = rec.index;
                let _ = link::ip_payload_encap(rec.linktype, rec.data);
            });
        }
        let _ = std::fs::remove_file(path);
    });
}

/// A namespace with a small table (`nf_conntrack_max` 1..=64 from `cfg`, the fewest buckets),
/// a fixed seed, and these IPv4/IPv6 fragment limits.
fn small_net(cfg: u8) -> Net {
    let s = Sysctl::default();
    s.set(SysctlKey::Max, u64::from(cfg % 64) + 1);
    s.set(SysctlKey::Buckets, 512);
    s.set(SysctlKey::UdpTimeout, 3 + u64::from(cfg >> 6));
    let net = Net::new(NetOptions { seed: Some(u64::from(cfg)), ..NetOptions::default() }, s);
    net.defrag.set_ipv4_limits(FragLimits {
        timeout_ns: 5 * NS,
        high_thresh: 256 << 10,
        low_thresh: 192 << 10,
    });
    net
}

/// The invariants after a packet: the count is the listed entries (no packet in flight holds
/// an unconfirmed one), within `nf_conntrack_max`; every entry is found by both its tuples;
/// the reply tuples are unique; defrag's memory is within its limits.
pub fn check_table(net: &Net, now: u64) {
    let listed = net.ct.list(now);
    let count = net.ct.count();
    assert_eq!(count as usize, listed.len(), "nf_conntrack_count equals the listed entries");
    let max = net.ct.sysctl.get(SysctlKey::Max);
    if max > 0 {
        assert!(count <= max, "count {count} over nf_conntrack_max {max}");
    }
    let mut replies = HashSet::new();
    for (slot, gen, v) in &listed {
        for (t, dir) in [(&v.orig, Direction::Original), (&v.reply, Direction::Reply)] {
            let found = net.ct.find_get(t, v.zone, now);
            let Some((s, g, _)) = found else { panic!("entry {slot} not found by its {dir:?} tuple") };
            net.ct.put(s, g);
            assert_eq!((s, g), (*slot, *gen), "the {dir:?} tuple finds another entry");
        }
        assert!(replies.insert((v.reply, v.zone.id)), "two entries with one reply tuple");
    }
    let (m4, m6) = net.defrag.mem();
    // The limits bound what may be queued before a new fragment is refused: one datagram over.
    assert!(m4 <= (256 << 10) + (128 << 10), "IPv4 defrag memory {m4}");
    let high6 = net.ct.sysctl.get(SysctlKey::Frag6HighThresh);
    assert!(m6 <= high6 + (128 << 10), "IPv6 defrag memory {m6}");
}

/// The whole pipeline: the first byte configures the table, then records of packets with time
/// steps go through a forwarding router (`selector` bit 0: frozen clock step), the invariants
/// checked after each; at the end everything expires and the table is empty.
pub fn pipeline(data: &[u8]) {
    let Some((&cfg, rest)) = data.split_first() else { return };
    let net = small_net(cfg);
    let mut feeder = Feeder::new(&net, ReplayPath::Forward, Clock::Capture);
    let mut t = 1_000 * NS;
    for (sel, dt, pkt) in records(rest) {
        if sel & 1 == 0 {
            t += dt * (NS / 1000) * if sel & 2 != 0 { 1000 } else { 1 };
        }
        let _ = feeder.feed(pkt, t);
        check_table(&net, net.now());
    }
    let end = net.now() + 10 * 86_400 * NS;
    net.ct.gc(end);
    assert_eq!((net.ct.count(), net.ct.list(end).len()), (0, 0), "everything expires");
}

/// Defragmentation alone: IPv4 and IPv6 fragments (selector bit 0) at increasing times; the
/// memory stays within the limits whatever arrives.
pub fn defrag(data: &[u8]) {
    let d = Defrag::new();
    let lim4 = FragLimits { timeout_ns: 5 * NS, high_thresh: 64 << 10, low_thresh: 48 << 10 };
    d.set_ipv4_limits(lim4);
    let lim6 = FragLimits { timeout_ns: 5 * NS, high_thresh: 64 << 10, low_thresh: 48 << 10 };
    let mut t = NS;
    for (sel, dt, pkt) in records(data) {
        t += dt * NS / 100;
        let _ = if sel & 1 == 0 { d.ipv4_gather(pkt, t) } else { d.ipv6_gather_with(pkt, t, &lim6) };
        let (m4, m6) = d.mem();
        assert!(m4 <= lim4.high_thresh + (128 << 10), "IPv4 defrag memory {m4}");
        assert!(m6 <= lim6.high_thresh + (128 << 10), "IPv6 defrag memory {m6}");
    }
}

/// The host file and nft JSON parser: any UTF-8 text; a host that parses is installed and a
/// few packets go through it.
pub fn host(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(host) = Host::parse(text) else { return };
    let ruleset = host.ruleset.clone().map(Arc::new);
    let small = Sysctl::default();
    small.set(SysctlKey::Buckets, 512);
    let net =
        Net::new(NetOptions { seed: Some(1), routing: Some(host.routing), ..NetOptions::default() }, small);
    if let Some(r) = &ruleset {
        install(&net, r);
    }
    let mut feeder = Feeder::new(&net, ReplayPath::Forward, Clock::Capture);
    for (i, p) in sample_packets().iter().enumerate() {
        let _ = feeder.feed(p, (1 + i as u64) * NS);
        check_table(&net, net.now());
    }
}

/// A router (lan 192.168.1.1/24 ifindex 2, wan 203.0.113.1/24 ifindex 3, default via wan) that
/// masquerades out of wan and forwards tcp/8080 on wan to 192.168.1.10:80.
const ROUTER: &str = r#"{
 "addr": [
  {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "mtu": 65536, "link_type": "loopback",
   "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
  {"ifindex": 2, "ifname": "lan", "flags": ["UP"], "mtu": 1500, "addr_info": [{"local": "192.168.1.1", "prefixlen": 24}]},
  {"ifindex": 3, "ifname": "wan", "flags": ["UP"], "mtu": 1500, "addr_info": [{"local": "203.0.113.1", "prefixlen": 24}]}],
 "route": [
  {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
  {"type": "local", "dst": "192.168.1.1", "dev": "lan", "table": "local"},
  {"type": "local", "dst": "203.0.113.1", "dev": "wan", "table": "local"},
  {"dst": "192.168.1.0/24", "dev": "lan"}, {"dst": "203.0.113.0/24", "dev": "wan"},
  {"dst": "default", "gateway": "203.0.113.254", "dev": "wan"}],
 "sysctl": {"net.ipv4.ip_forward": "1"},
 "ruleset": {"nftables": [
  {"table": {"family": "inet", "name": "nat", "handle": 1}},
  {"chain": {"family": "inet", "table": "nat", "name": "pre", "handle": 1, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}},
  {"chain": {"family": "inet", "table": "nat", "name": "post", "handle": 2, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}},
  {"rule": {"family": "inet", "table": "nat", "chain": "post", "handle": 10, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan"}}, {"masquerade": null}]}},
  {"rule": {"family": "inet", "table": "nat", "chain": "pre", "handle": 11, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wan"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}, {"dnat": {"family": "ip", "addr": "192.168.1.10", "port": 80}}]}}
 ]}
}"#;

/// The IPv4 header checksum and the TCP/UDP/ICMP checksum set right (when the packet is long
/// enough to have them), so that the fuzzer explores packets a host would accept.
pub fn fix_checksums(p: &mut [u8]) {
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    if ihl < 20 || p.len() < ihl {
        return;
    }
    p[10..12].copy_from_slice(&[0, 0]);
    let c = internet_checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).clamp(ihl, p.len());
    let frag = u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0;
    let (proto, mut src, mut dst) = (p[9], [0u8; 16], [0u8; 16]);
    src[..4].copy_from_slice(&p[12..16]);
    dst[..4].copy_from_slice(&p[16..20]);
    let l4 = &mut p[ihl..total];
    let at = match proto {
        1 if l4.len() >= 8 => 2,
        6 if l4.len() >= 20 => 16,
        17 if l4.len() >= 8 => 6,
        _ => return,
    };
    if frag {
        return;
    }
    l4[at..at + 2].copy_from_slice(&[0, 0]);
    let c = if proto == 1 { internet_checksum(l4) } else { pseudo_checksum(AF_INET, &src, &dst, proto, l4) };
    let c = if proto == 17 && c == 0 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Every checksum of an unfragmented IPv4 TCP/UDP/ICMP packet holds.
pub fn checksums_ok(p: &[u8]) -> bool {
    let mut q = p.to_vec();
    fix_checksums(&mut q);
    q == p
}

/// NAT: packets (checksums made right) arrive on lan or wan (selector bit 0) of a masquerading
/// router with a port forward; every packet NAT rewrote leaves with valid checksums, and the
/// table's invariants hold (reply tuples unique among them).
pub fn nat(data: &[u8]) {
    let Ok(host) = Host::parse(ROUTER) else { panic!("the router's host file parses") };
    let Some(ruleset) = host.ruleset.clone().map(Arc::new) else { panic!("it has a ruleset") };
    let local = host.routing.devices.all().iter().flat_map(|d| d.addrs.iter().map(|a| a.addr)).collect();
    let small = Sysctl::default();
    small.set(SysctlKey::Buckets, 512);
    let net = Net::new(
        NetOptions {
            seed: Some(3),
            local_addrs: local,
            routing: Some(host.routing),
            ..NetOptions::default()
        },
        small,
    );
    install(&net, &ruleset);
    let mut t = NS;
    for (sel, dt, pkt) in records(data) {
        t += dt * NS / 10;
        let mut p = pkt.to_vec();
        fix_checksums(&mut p);
        let valid = checksums_ok(&p) && p.len() >= 20 && p[0] >> 4 == 4;
        let cell = RefCell::new(Skb::default());
        let run = PacketRun {
            ingress: Ingress::Rcv,
            all_local: false,
            tstamp: t,
            clock: PacketClock::Shared,
            iif: Some(if sel & 1 == 0 { 2 } else { 3 }),
            hint: None,
        };
        let hooks = net.hooks.snapshot();
        let mut ext = nfct::ip::no_external;
        let out = run_with(&net, &hooks, run, &p, &cell, &mut ext);
        let bytes = cell.borrow().data(&p).to_vec();
        let mut skb = cell.into_inner();
        if out.verdict == NF_ACCEPT && valid && bytes != p && bytes.len() >= 20 {
            let ihl = usize::from(bytes[0] & 0xf) * 4;
            if bytes.len() == p.len() && ihl >= 20 && internet_checksum(&bytes[..ihl]) != 0 {
                panic!("rewritten packet with a bad IP header checksum");
            }
            assert!(checksums_ok(&bytes), "a packet NAT rewrote leaves with bad checksums");
        }
        if skb.ct.nfct != CtRef::None {
            net.ct.release(&mut skb.ct);
        }
        check_table(&net, net.now());
    }
}

/// A few fixed packets (UDP, TCP SYN, ICMP echo, IPv6 UDP) for targets that fuzz the host.
fn sample_packets() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (proto, l4) in [
        (17u8, vec![0x13, 0x88, 0, 53, 0, 9, 0, 0, b'q']),
        (6, vec![0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]),
        (1, vec![8, 0, 0, 0, 0, 1, 0, 1]),
    ] {
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0, 192, 168, 1, 10, 198, 51, 100, 7];
        p.extend_from_slice(&l4);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        fix_checksums(&mut p);
        out.push(p);
    }
    let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v6.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
    out.push(v6);
    out
}

#[cfg(test)]
mod tests;
