//! A symmetric flow hash over packet headers, as receive-side scaling spreads packets over
//! CPUs: both directions of a flow hash alike; TCP, SCTP and DCCP on their ports as well as
//! their addresses (RSS's 4-tuple), everything else on protocol and addresses only, so the
//! fragments of a UDP datagram stay with the rest of their flow; an ICMP or ICMPv6 error hashes
//! as the packet it quotes.

use super::ip::{ipv4_fields, ipv6_fields};
use crate::uapi::{IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP};

/// The symmetric hash of an IP packet's flow (0 for bytes that are not an IP header).
pub fn flow_hash(pkt: &[u8]) -> u64 {
    hash_depth(pkt, 0)
}

fn hash_depth(pkt: &[u8], depth: u8) -> u64 {
    let (proto, src, dst, l4, frag) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let Some(h) = ipv4_fields(pkt) else { return 0 };
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            (h.protocol, Addr::V4(h.src), Addr::V4(h.dst), pkt.get(ihl..).unwrap_or(&[]), h.fragment)
        }
        Some(6) => {
            let Some(h) = ipv6_fields(pkt) else { return 0 };
            (h.next_header, Addr::V6(h.src), Addr::V6(h.dst), pkt.get(40..).unwrap_or(&[]), false)
        }
        _ => return 0,
    };
    let error = match proto {
        IPPROTO_ICMP => l4.first().is_some_and(|&t| matches!(t, 3 | 4 | 5 | 11 | 12)),
        IPPROTO_ICMPV6 => l4.first().is_some_and(|&t| (1..=4).contains(&t)),
        _ => false,
    };
    if error && !frag && depth == 0 && l4.len() > 8 {
        return hash_depth(&l4[8..], 1);
    }
    let ports =
        (matches!(proto, IPPROTO_TCP | IPPROTO_SCTP | IPPROTO_DCCP) && !frag).then(|| l4.get(..4)).flatten();
    let (sp, dp) = ports.map_or((&[][..], &[][..]), |p| (&p[..2], &p[2..4]));
    let (src, dst) = (src.bytes(), dst.bytes());
    let (a, b) = if (src, sp) <= (dst, dp) { ((src, sp), (dst, dp)) } else { ((dst, dp), (src, sp)) };
    // FNV-1a over the canonical order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in [proto].iter().chain(a.0).chain(a.1).chain(b.0).chain(b.1) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// An address as its bytes.
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    fn bytes(&self) -> &[u8] {
        match self {
            Addr::V4(a) => a,
            Addr::V6(a) => a,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flow_hash;

    #[test]
    fn symmetric_and_fragments_together() {
        let mut a = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        a.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0, 0, 0, 0, 0, 0]);
        let mut b = a.clone();
        b[12..16].copy_from_slice(&[10, 0, 0, 2]);
        b[16..20].copy_from_slice(&[10, 0, 0, 1]);
        b[20..24].copy_from_slice(&[0, 80, 0x30, 0x39]);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        let mut other = a.clone();
        other[21] = 0x3a;
        assert_ne!(flow_hash(&a), flow_hash(&other));
        // UDP: addresses only, so a non-first fragment goes with its flow.
        let mut udp = a.clone();
        udp[9] = 17;
        let mut later = udp.clone();
        later[7] = 0x03;
        later[20..24].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(flow_hash(&udp), flow_hash(&later));
        // An ICMP error from a router goes where the packet it quotes went.
        let mut err = vec![0x45, 0, 0, 68, 0, 2, 0, 0, 64, 1, 0, 0, 10, 9, 9, 9, 10, 0, 0, 1];
        err.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        err.extend_from_slice(&a);
        assert_eq!(flow_hash(&err), flow_hash(&b));
        assert_eq!(flow_hash(&[]), 0);
        assert_eq!(flow_hash(&[0x45, 0, 0]), 0);
    }
}
