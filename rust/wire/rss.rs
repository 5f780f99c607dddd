//! A flow's two ends as receive-side scaling sees them in a packet's headers: TCP, SCTP and
//! DCCP by address and port (RSS's 4-tuple), everything else by address only, so the fragments
//! of a UDP datagram stay with the rest of their flow; an ICMP or ICMPv6 error as the packet
//! it quotes. The ends come in a canonical order, so both directions of a flow give the same
//! [`FlowEnds`]; the table's keyed hash places a flow by them ([`crate::tuple::TupleHasher`]'s
//! `flow_range`), which a threaded replay uses to choose a packet's worker.

use super::ip::{ipv4_fields, ipv6_fields};
use crate::uapi::{IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP};

/// Whether RSS counts a protocol's ports as part of its flow (its 4-tuple).
#[inline]
fn ports_count(proto: u8) -> bool {
    matches!(proto, IPPROTO_TCP | IPPROTO_SCTP | IPPROTO_DCCP)
}

/// A flow's protocol and its two ends (address, port; port 0 where ports do not count), the
/// lesser end first; IPv4 addresses as 32-bit numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEnds {
    pub v6: bool,
    pub proto: u8,
    pub lo: (u128, u16),
    pub hi: (u128, u16),
}

impl FlowEnds {
    /// The ends of a flow from its protocol and its source and destination, in either order.
    #[inline]
    pub fn new(v6: bool, proto: u8, a: (u128, u16), b: (u128, u16)) -> FlowEnds {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        FlowEnds { v6, proto, lo, hi }
    }
}

/// The flow of an IP packet (None for bytes that are not an IP header).
pub fn flow_ends(pkt: &[u8]) -> Option<FlowEnds> {
    ends_depth(pkt, 0)
}

fn ends_depth(pkt: &[u8], depth: u8) -> Option<FlowEnds> {
    let (v6, proto, src, dst, l4, frag) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let h = ipv4_fields(pkt)?;
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let (s, d) = (u32::from_be_bytes(h.src), u32::from_be_bytes(h.dst));
            (false, h.protocol, u128::from(s), u128::from(d), pkt.get(ihl..).unwrap_or(&[]), h.fragment)
        }
        Some(6) => {
            let h = ipv6_fields(pkt)?;
            let (s, d) = (u128::from_be_bytes(h.src), u128::from_be_bytes(h.dst));
            (true, h.next_header, s, d, pkt.get(40..).unwrap_or(&[]), false)
        }
        _ => return None,
    };
    let error = match proto {
        IPPROTO_ICMP => l4.first().is_some_and(|&t| matches!(t, 3 | 4 | 5 | 11 | 12)),
        IPPROTO_ICMPV6 => l4.first().is_some_and(|&t| (1..=4).contains(&t)),
        _ => false,
    };
    if error && !frag && depth == 0 && l4.len() > 8 {
        return ends_depth(&l4[8..], 1);
    }
    let ports = match l4.first_chunk::<4>() {
        Some(p) if ports_count(proto) && !frag => {
            (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
        }
        _ => (0, 0),
    };
    Some(FlowEnds::new(v6, proto, (src, ports.0), (dst, ports.1)))
}

#[cfg(test)]
mod tests {
    use super::flow_ends;

    #[test]
    fn symmetric_and_fragments_together() {
        let mut a = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        a.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0, 0, 0, 0, 0, 0]);
        let mut b = a.clone();
        b[12..16].copy_from_slice(&[10, 0, 0, 2]);
        b[16..20].copy_from_slice(&[10, 0, 0, 1]);
        b[20..24].copy_from_slice(&[0, 80, 0x30, 0x39]);
        assert_eq!(flow_ends(&a), flow_ends(&b));
        let mut other = a.clone();
        other[21] = 0x3a;
        assert_ne!(flow_ends(&a), flow_ends(&other));
        // UDP: addresses only, so a non-first fragment goes with its flow.
        let mut udp = a.clone();
        udp[9] = 17;
        let mut later = udp.clone();
        later[7] = 0x03;
        later[20..24].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(flow_ends(&udp), flow_ends(&later));
        // An ICMP error from a router goes where the packet it quotes went.
        let mut err = vec![0x45, 0, 0, 68, 0, 2, 0, 0, 64, 1, 0, 0, 10, 9, 9, 9, 10, 0, 0, 1];
        err.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        err.extend_from_slice(&a);
        assert_eq!(flow_ends(&err), flow_ends(&b));
        // IPv6: both directions alike, another port another flow.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        v6.extend_from_slice(&[0x20, 1, 0xd, 0xb8].repeat(4));
        v6.extend_from_slice(&[0x20, 1, 0xd, 0xb9].repeat(4));
        v6.extend_from_slice(&a[20..]);
        let mut v6r = v6.clone();
        v6r[8..24].copy_from_slice(&v6[24..40]);
        v6r[24..40].copy_from_slice(&v6[8..24]);
        v6r[40..44].copy_from_slice(&[0, 80, 0x30, 0x39]);
        assert_eq!(flow_ends(&v6), flow_ends(&v6r));
        let mut v6o = v6.clone();
        v6o[41] = 0x3a;
        assert_ne!(flow_ends(&v6), flow_ends(&v6o));
        assert_eq!(flow_ends(&[]), None);
        assert_eq!(flow_ends(&[0x45, 0, 0]), None);
    }
}
