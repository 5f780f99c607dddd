//! GRE keys and timeouts through the whole conntrack path (nf_conntrack_in, confirm, the
//! listings), as the live 6.18 kernel showed them without the PPTP helper
//! (tests/live/test_gre.py compares the same packets with it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test programs

use nfct::core::{Conntrack, CtOptions, CtState, SkbCt};
use nfct::format::{conntrack_line, proc_line};
use nfct::sysctl::{Sysctl, SysctlKey};
use nfct::uapi::{Hook, AF_INET, NF_DROP};

const NS: u64 = 1_000_000_000;
const PPTP: u16 = 0x880b;

/// An IPv4 packet carrying `gre` (the GRE header and payload) from 10.1.0.2 to 10.2.0.`d`
/// (or back with `back`).
fn ip4(gre: &[u8], d: u8, back: bool) -> Vec<u8> {
    let len = (20 + gre.len()) as u16;
    let (a, b) = ([10, 1, 0, 2], [10, 2, 0, d]);
    let (src, dst) = if back { (b, a) } else { (a, b) };
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 47, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(gre);
    p
}

/// GRE version 0 with an optional key (K bit).
fn v0(key: Option<u32>) -> Vec<u8> {
    let mut h = vec![if key.is_some() { 0x20 } else { 0 }, 0, 0x08, 0x00];
    if let Some(k) = key {
        h.extend_from_slice(&k.to_be_bytes());
    }
    h
}

/// Enhanced GRE (version 1, K bit): protocol, payload length 0, call id.
fn v1(protocol: u16, call_id: u16) -> Vec<u8> {
    let mut h = vec![0x20, 0x01];
    h.extend_from_slice(&protocol.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&call_id.to_be_bytes());
    h
}

/// A conntrack with a fixed seed, and the time of the last packet it saw (listings are taken
/// then).
struct Net {
    ct: Conntrack,
    now: std::cell::Cell<u64>,
}

fn net(sysctl: Sysctl) -> Net {
    Net { ct: Conntrack::new(CtOptions { seed: Some(7), ..CtOptions::default() }, sysctl), now: 0.into() }
}

/// One packet through `in` and confirm at time `t`: the ct state a rule would have seen.
fn through(net: &Net, pkt: &[u8], t: u64) -> CtState {
    net.now.set(t);
    let mut skb = SkbCt::default();
    let v = net.ct.conntrack_in(pkt, t, Hook::PreRouting, AF_INET, &mut skb);
    assert_ne!(v, NF_DROP);
    let state = skb.state();
    net.ct.confirm(&mut skb, t);
    net.ct.release(&mut skb);
    state
}

/// The table as `conntrack -L -o extended` (sorted) and /proc print it.
fn listing(net: &Net) -> (Vec<String>, Vec<String>) {
    let (mut ct, mut proc) = (Vec::new(), Vec::new());
    for (_, _, v) in net.ct.list(net.now.get()) {
        let mut s = String::new();
        conntrack_line(&v, true, &mut s);
        ct.push(s);
        let mut s = String::new();
        proc_line(&v, &mut s);
        proc.push(s);
    }
    ct.sort();
    proc.sort();
    (ct, proc)
}

#[test]
fn version_0_keys_are_zero_and_a_reply_then_a_packet_assures() {
    let n = net(Sysctl::default());
    // The K field of version 0 is not part of the tuple: keys 0 whatever it holds.
    assert_eq!(through(&n, &ip4(&v0(None), 2, false), NS), CtState::New);
    assert_eq!(through(&n, &ip4(&v0(Some(0x5678)), 2, true), NS + 1), CtState::Established);
    let (ct, _) = listing(&n);
    assert_eq!(
        ct,
        ["ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1"]
    );
    assert_eq!(through(&n, &ip4(&v0(Some(0x1234)), 2, false), NS + 2), CtState::Established);
    let (ct, proc) = listing(&n);
    assert_eq!(
        ct,
        ["ipv4     2 gre      47 179 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 use=1"]
    );
    assert_eq!(
        proc,
        ["ipv4     2 gre      47 179 timeout=30, stream_timeout=180 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 zone=0 use=1"]
    );
}

#[test]
fn version_1_pptp_keys_the_call_id_and_the_reply_is_a_flow_of_its_own() {
    // Without the PPTP helper's keymap the source key is 0: the original tuple is
    // (srckey 0, dstkey call id), so its reply tuple expects (call id, 0), which the peer's
    // packets (srckey 0, dstkey its own call id) never carry. Seen on 6.18: each direction
    // is an entry of its own, both [UNREPLIED]; a second packet of a direction is still NEW.
    let n = net(Sysctl::default());
    assert_eq!(through(&n, &ip4(&v1(PPTP, 0x1111), 4, false), NS), CtState::New);
    assert_eq!(through(&n, &ip4(&v1(PPTP, 0x2222), 4, true), NS + 1), CtState::New);
    assert_eq!(through(&n, &ip4(&v1(PPTP, 0x1111), 4, false), NS + 2), CtState::New);
    assert_eq!(through(&n, &ip4(&v1(PPTP, 0), 4, true), NS + 3), CtState::New);
    let (ct, proc) = listing(&n);
    assert_eq!(
        ct,
        [
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.4 srckey=0x0 dstkey=0x1111 [UNREPLIED] src=10.2.0.4 dst=10.1.0.2 srckey=0x1111 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.2.0.4 dst=10.1.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=10.1.0.2 dst=10.2.0.4 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.2.0.4 dst=10.1.0.2 srckey=0x0 dstkey=0x2222 [UNREPLIED] src=10.1.0.2 dst=10.2.0.4 srckey=0x2222 dstkey=0x0 mark=0 use=1",
        ]
    );
    assert!(proc[0].starts_with("ipv4     2 gre      47 29 timeout=30, stream_timeout=180 src=10.1.0.2 dst=10.2.0.4 srckey=0x0 dstkey=0x1111 [UNREPLIED] "));
}

#[test]
fn version_1_other_protocols_short_headers_and_other_versions() {
    let n = net(Sysctl::default());
    // Version 1 carrying anything but PPP: no tuple, INVALID.
    assert_eq!(through(&n, &ip4(&v1(0x0800, 0x3333), 5, false), NS), CtState::Invalid);
    assert_eq!(n.ct.stats().invalid, 1);
    // Version 1 too short for the call id: keys 0 (the kernel's fallback to generic GRE).
    assert_eq!(through(&n, &ip4(&[0x20, 0x01, 0x88, 0x0b], 6, false), NS), CtState::New);
    // Version 2..7: keys 0.
    assert_eq!(through(&n, &ip4(&[0x20, 0x02, 0x08, 0x00, 0, 0, 0, 0x77], 7, false), NS), CtState::New);
    let (ct, _) = listing(&n);
    assert_eq!(ct.len(), 2);
    assert!(ct.iter().all(|l| l.contains(" srckey=0x0 dstkey=0x0 [UNREPLIED] ")), "{ct:?}");
}

#[test]
fn timeouts_are_copied_at_creation() {
    let s = Sysctl::default();
    s.set(SysctlKey::GreTimeout, 10);
    s.set(SysctlKey::GreTimeoutStream, 100);
    let n = net(s);
    through(&n, &ip4(&v0(None), 2, false), NS);
    // Changed afterwards: the entry keeps what it copied on its first packet.
    n.ct.sysctl.set(SysctlKey::GreTimeout, 50);
    n.ct.sysctl.set(SysctlKey::GreTimeoutStream, 500);
    through(&n, &ip4(&v0(None), 2, false), 2 * NS);
    let (_, proc) = listing(&n);
    assert!(proc[0].starts_with("ipv4     2 gre      47 9 timeout=10, stream_timeout=100 "), "{proc:?}");
    through(&n, &ip4(&v0(None), 2, true), 3 * NS);
    through(&n, &ip4(&v0(None), 2, false), 4 * NS);
    let (ct, proc) = listing(&n);
    assert!(ct[0].starts_with("ipv4     2 gre      47 99 ") && ct[0].contains("[ASSURED]"), "{ct:?}");
    assert!(proc[0].starts_with("ipv4     2 gre      47 99 timeout=10, stream_timeout=100 "));
    // A new entry takes the new values.
    through(&n, &ip4(&v0(None), 3, false), 5 * NS);
    let (_, proc) = listing(&n);
    assert!(proc.iter().any(|l| l.starts_with("ipv4     2 gre      47 49 timeout=50, stream_timeout=500 ")));
}
