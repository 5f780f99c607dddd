//! Checks of the wire parsers against the shared capture set (`../shared/pcaps`, beside the
//! repository): the checksum counts its README gives and the IP frames its kernel verdicts
//! say were sent. Read through the replay's capture reader, so they live here, above both.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test programs

use nfct::replay::capture::Capture;
use nfct::wire::checksum::{ipv4_header_ok, l4_ok};
use nfct::wire::ip;
use nfct::wire::link::{self, ip_payload_encap};
use std::path::Path;

/// Counts (IPv4 header invalid, TCP invalid, UDP invalid, ICMP invalid, checked) over a
/// capture the way the shared README does: unfragmented L4 packets only.
fn count_bad(path: &Path) -> (u32, u32, u32, u32, u32) {
    let mut cap = Capture::open(path).expect("open");
    let (mut bad_ip, mut bad_tcp, mut bad_udp, mut bad_icmp, mut checked) = (0, 0, 0, 0, 0);
    cap.for_each(|r| {
        let Some(pkt) = link::ip_payload(r.linktype, r.data) else {
            return;
        };
        let l3 = match ip::ip_version(pkt) {
            Some(4) => {
                if !ipv4_header_ok(pkt) {
                    bad_ip += 1;
                }
                let tot = pkt.get(2..4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let flags = pkt.get(6..8).map(|b| u16::from_be_bytes([b[0], b[1]]));
                if flags.is_some_and(|f| f & 0x3fff != 0) {
                    return; // fragment (MF or offset)
                }
                let Ok(l3) = ip::ipv4_get_l4proto(pkt) else { return };
                let end = tot.unwrap_or(pkt.len()).min(pkt.len());
                (l3, end)
            }
            Some(6) => {
                let Ok(l3) = ip::ipv6_get_l4proto(pkt) else { return };
                let plen = pkt.get(4..6).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
                let end = (40 + plen.unwrap_or(0)).min(pkt.len());
                (l3, end)
            }
            _ => return,
        };
        let (l3, end) = l3;
        let Some(seg) = pkt.get(l3.l4_off..end) else { return };
        checked += 1;
        let ok = l4_ok(l3.l3num, &l3.src, &l3.dst, l3.protonum, seg);
        match l3.protonum {
            6 if !ok => bad_tcp += 1,
            // UDP checksum 0 means "none".
            17 if !ok && seg.get(6..8) != Some(&[0, 0][..]) => bad_udp += 1,
            1 | 58 if !ok => bad_icmp += 1,
            _ => {}
        }
    })
    .expect("read");
    (bad_ip, bad_tcp, bad_udp, bad_icmp, checked)
}

fn pcaps() -> Option<std::path::PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    absent_in_ci(&p);
    p.is_dir().then_some(p)
}

/// Under CI=true the shared captures must be there: a skip would hide a broken checkout.
fn absent_in_ci(p: &Path) {
    let ci = std::env::var("CI").map(|v| matches!(v.to_lowercase().as_str(), "1" | "true" | "yes"));
    assert!(p.is_dir() || !ci.unwrap_or(false), "{} absent under CI=true", p.display());
}

#[test]
fn shared_capture_checksum_counts_match_readme() {
    let Some(dir) = pcaps() else {
        eprintln!("../shared/pcaps absent, skipping");
        return;
    };
    // (file, bad IPv4 headers, bad TCP, bad UDP, bad ICMP/ICMPv6) from the README's
    // "Checksums:" lines.
    let expected: &[(&str, u32, u32, u32, u32)] = &[
        ("suricata-icmpv4-ping.pcap", 0, 0, 0, 0),
        ("pcapplusplus-sll.pcap", 0, 158, 16, 0),
        ("pcapplusplus-raw_ip.pcap", 46, 42, 3, 0),
        ("tcpreplay-test.pcap", 3, 2, 1, 1),
        ("ndpi-reddit.pcap", 0, 10, 0, 0),
        ("arkime-socks5-http-302-frag.pcap", 0, 10, 0, 0),
        ("suricata-http-range-multiflows.pcap", 614, 614, 0, 0),
        ("zeek-icmp6-ping.pcap", 0, 0, 0, 0),
        ("arkime-v6.pcap", 0, 0, 0, 0),
        ("ndpi-quic_interop_V.pcapng", 0, 0, 0, 0),
        ("zeek-echo-connections.pcap", 0, 0, 0, 0),
    ];
    for &(name, ip_bad, tcp_bad, udp_bad, icmp_bad) in expected {
        let (a, b, c, d, n) = count_bad(&dir.join(name));
        assert_eq!((a, b, c, d), (ip_bad, tcp_bad, udp_bad, icmp_bad), "{name} ({n} checked)");
    }
}

/// decode MPLS: tcpreplay-test.pcap has 6 IPv4-in-MPLS frames (ICMP echoes) that the kernel
/// never saw (its verdict JSON has no entry for their addresses), so `sent` is 160, not 166.
/// Per capture: the number of frames carrying IP equals the number of IP packets the kernel
/// harness wrote (`sent` in kernel/NAME.checksum1.json), except that the harness did not
/// decode MPLS: tcpreplay-test.pcap has 6 IPv4-in-MPLS frames (ICMP echoes) that the kernel
/// never saw (its verdict JSON has no entry for their addresses), so `sent` is 160, not 166.
#[test]
fn shared_captures_ip_counts_match_kernel_sent() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    absent_in_ci(&dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("../shared/pcaps absent, skipping");
        return;
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    names.sort();
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for path in names {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let json_path = dir.join("kernel").join(format!("{stem}.checksum1.json"));
        let Ok(json) = std::fs::read_to_string(&json_path) else {
            continue;
        };
        let sent = sent_field(&json).expect("sent field");
        let mut cap = Capture::open(&path).expect("open");
        let (mut ip, mut mpls) = (0u64, 0u64);
        cap.for_each(|r| {
            if let Some((_, enc)) = ip_payload_encap(r.linktype, r.data) {
                ip += 1;
                if enc.mpls_labels > 0 {
                    mpls += 1;
                }
            }
        })
        .expect("read");
        let expected_mpls = if stem == "tcpreplay-test" { 6 } else { 0 };
        if ip - mpls != sent || mpls != expected_mpls {
            mismatches.push(format!("{stem}: {ip} IP frames ({mpls} via MPLS), kernel sent {sent}"));
        }
        checked += 1;
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    assert!(checked >= 28, "only {checked} captures had a kernel verdict");
}

/// The integer after `"sent":` in the harness JSON (no JSON dependency in the crate).
fn sent_field(json: &str) -> Option<u64> {
    let at = json.find("\"sent\"")?;
    let rest = json.get(at + 6..)?.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}
