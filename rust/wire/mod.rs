//! Packet bytes: link-layer decapsulation, IP header sanity and L4 header views.
//!
//! Every parser here is total: truncated or hostile bytes give `None`/`Err`, never a panic.
//! Nothing allocates; every function works on borrowed slices.

pub mod checksum;
pub mod ip;
pub mod l4;
pub mod link;
pub mod rss;
pub mod sctp;

/// Big-endian u16 at `off`, if the bytes are there.
#[inline]
pub(crate) fn be16(b: &[u8], off: usize) -> Option<u16> {
    match b.get(off..off.checked_add(2)?) {
        Some(&[x, y]) => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

/// Big-endian u32 at `off`, if the bytes are there.
#[inline]
pub(crate) fn be32(b: &[u8], off: usize) -> Option<u32> {
    match b.get(off..off.checked_add(4)?) {
        Some(&[a, c, d, e]) => Some(u32::from_be_bytes([a, c, d, e])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::{AF_INET, IPPROTO_TCP, IPPROTO_UDP};

    // Ethernet / IPv4 10.1.0.2 -> 10.2.0.2 / TCP SYN 40000 -> 80, options mss 1460, sackOK,
    // nop, wscale 7, nop, nop; all checksums valid.
    const ETH_SYN: [u8; 66] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x45, 0x00, 0x00,
        0x34, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x26, 0xbd, 0x0a, 0x01, 0x00, 0x02, 0x0a, 0x02, 0x00, 0x02,
        0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0x80, 0x02, 0xfa, 0xf0, 0x5a,
        0xdd, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x01, 0x03, 0x03, 0x07, 0x01, 0x01,
    ];

    // Ethernet / 802.1Q vid 100 / IPv4 / UDP 1234 -> 53 with 4 payload bytes, padded to the
    // 60-byte Ethernet minimum; checksums valid.
    const VLAN_UDP_PADDED: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x64, 0x08,
        0x00, 0x45, 0x00, 0x00, 0x20, 0x00, 0x02, 0x40, 0x00, 0x40, 0x11, 0x26, 0xc5, 0x0a, 0x01, 0x00, 0x02,
        0x0a, 0x02, 0x00, 0x02, 0x04, 0xd2, 0x00, 0x35, 0x00, 0x0c, 0x49, 0x2b, 0xde, 0xad, 0xbe, 0xef, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn frame_to_tcp_syn() {
        let pkt = link::ip_payload(link::LINKTYPE_ETHERNET, &ETH_SYN).expect("ip");
        let len = ip::ipv4_rcv_check(pkt).expect("ip_rcv");
        let pkt = &pkt[..len];
        let l3 = ip::ipv4_get_l4proto(pkt).expect("l4proto");
        assert_eq!((l3.l3num, l3.protonum, l3.l4_off), (AF_INET, IPPROTO_TCP, 20));
        let seg = &pkt[l3.l4_off..];
        assert!(checksum::l4_ok(l3.l3num, &l3.src, &l3.dst, l3.protonum, seg));
        let th = l4::tcp(seg).expect("tcp");
        assert_eq!(th.flags, l4::TCP_SYN);
        assert_eq!(th.doff, 32);
        let opts = l4::tcp_options(seg, th.doff);
        assert_eq!(opts.wscale, Some(7));
        assert!(opts.sack_perm);
    }

    #[test]
    fn padded_frame_needs_trimming() {
        let pkt = link::ip_payload(link::LINKTYPE_ETHERNET, &VLAN_UDP_PADDED).expect("ip");
        assert_eq!(pkt.len(), 42);
        let len = ip::ipv4_rcv_check(pkt).expect("ip_rcv");
        assert_eq!(len, 32);
        let l3 = ip::ipv4_get_l4proto(&pkt[..len]).expect("l4proto");
        let seg = &pkt[l3.l4_off..len];
        let uh = l4::udp(seg).expect("udp");
        assert_eq!((uh.sport, uh.dport, uh.len), (1234, 53, 12));
        assert!(checksum::l4_ok(l3.l3num, &l3.src, &l3.dst, IPPROTO_UDP, seg));
        // Without the trim the pseudo-header length is wrong and the checksum fails.
        let untrimmed = &pkt[l3.l4_off..];
        assert!(!checksum::l4_ok(l3.l3num, &l3.src, &l3.dst, IPPROTO_UDP, untrimmed));
    }
}
