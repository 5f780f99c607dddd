//! Rewriting a packet for NAT (`nf_nat_ipv4_manip_pkt`, `nf_nat_ipv6_manip_pkt`, the
//! protocols' `manip_pkt`): one side's address and protocol part (ports, ICMP echo id, PPTP
//! call id) become a target tuple's, and the checksums are updated incrementally as the kernel
//! updates them (the IPv4 header checksum, the transport checksum's pseudo-header and port
//! words; SCTP's CRC32c recomputed; a UDP checksum of 0 left alone over IPv4).
//!
//! Total over hostile bytes: what is not there is not rewritten, and `false` says so.

use super::Manip;
use crate::tuple::Tuple;
use crate::uapi::{
    AF_INET6, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPPROTO_UDPLITE,
};
use crate::wire::checksum;

/// One's-complement incremental update (RFC 1624): the checksum `check` after the bytes `old`
/// (an even number, 16-bit words) became `new`.
pub fn csum_replace(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut sum = u32::from(!check);
    for w in old.chunks(2) {
        let x = u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]);
        sum += u32::from(!x);
    }
    for w in new.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn get16(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2).map(|x| u16::from_be_bytes([x[0], x[1]]))
}

fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(x) = b.get_mut(off..off + 2) {
        x.copy_from_slice(&v.to_be_bytes());
    }
}

/// Updates the transport checksum at `check_off` for the address change `old` -> `new`
/// (the pseudo-header) and, when given, the port change at `port_off`.
fn l4_csum(pkt: &mut [u8], check_off: usize, old_addr: &[u8], new_addr: &[u8], port: Option<(u16, u16)>) {
    let Some(c) = get16(pkt, check_off) else { return };
    let mut c = csum_replace(c, old_addr, new_addr);
    if let Some((o, n)) = port {
        c = csum_replace(c, &o.to_be_bytes(), &n.to_be_bytes());
    }
    put16(pkt, check_off, c);
}

/// Rewrites the IP packet at `off` of `pkt` (its bytes from there on): the `manip` side of
/// its addresses and transport header becomes `target`'s. Returns false where the headers are
/// not all there (nothing is rewritten then).
pub fn manip_pkt(pkt: &mut [u8], off: usize, target: &Tuple, manip: Manip) -> bool {
    let Some(&b0) = pkt.get(off) else { return false };
    let v6 = b0 >> 4 == 6;
    if v6 != (target.l3num == AF_INET6) {
        return false;
    }
    let (addr_off, alen) = match (v6, manip) {
        (false, Manip::Src) => (off + 12, 4),
        (false, Manip::Dst) => (off + 16, 4),
        (true, Manip::Src) => (off + 8, 16),
        (true, Manip::Dst) => (off + 24, 16),
    };
    let mut old_buf = [0u8; 16];
    let Some(old_src) = pkt.get(addr_off..addr_off + alen) else { return false };
    old_buf[..alen].copy_from_slice(old_src);
    let old = &old_buf[..alen];
    let new_addr = match manip {
        Manip::Src => &target.src[..alen],
        Manip::Dst => &target.dst[..alen],
    };
    // Where the transport header is, and whether it is there at all (a later fragment has none).
    let (proto, l4_off) = if v6 {
        match crate::wire::ip::ipv6_get_l4proto(&pkt[off..]) {
            Ok(l3) => (l3.protonum, Some(off + l3.l4_off)),
            Err(_) => (0, None),
        }
    } else {
        let Some(ihl) = pkt.get(off).map(|b| usize::from(b & 0x0f) * 4) else { return false };
        let frag = get16(pkt, off + 6).is_some_and(|f| f & 0x1fff != 0);
        (pkt.get(off + 9).copied().unwrap_or(0), (!frag).then_some(off + ihl))
    };
    if let Some(l4) = l4_off {
        if proto == target.protonum {
            l4_manip(pkt, l4, proto, v6, old, new_addr, target, manip);
        }
    }
    if let Some(x) = pkt.get_mut(addr_off..addr_off + alen) {
        x.copy_from_slice(new_addr);
    }
    if !v6 {
        if let Some(c) = get16(pkt, off + 10) {
            put16(pkt, off + 10, csum_replace(c, old, new_addr));
        }
    }
    true
}

/// The transport part of a rewrite.
#[allow(clippy::too_many_arguments)]
fn l4_manip(pkt: &mut [u8], l4: usize, proto: u8, v6: bool, old: &[u8], new: &[u8], t: &Tuple, manip: Manip) {
    let avail = pkt.len().saturating_sub(l4);
    let port_off = match manip {
        Manip::Src => l4,
        Manip::Dst => l4 + 2,
    };
    let new_port = match manip {
        Manip::Src => t.src_u,
        Manip::Dst => t.dst_u,
    };
    match proto {
        IPPROTO_TCP => {
            let Some(old_port) = get16(pkt, port_off) else { return };
            put16(pkt, port_off, new_port);
            // An inner header quoted in an ICMP error may be cut after 8 bytes: no checksum.
            if avail >= 20 {
                l4_csum(pkt, l4 + 16, old, new, Some((old_port, new_port)));
            }
        }
        IPPROTO_UDP | IPPROTO_UDPLITE => {
            let Some(old_port) = get16(pkt, port_off) else { return };
            let check = get16(pkt, l4 + 6).unwrap_or(0);
            // Over IPv4 a UDP checksum of 0 means none; UDPLITE always has one.
            if check != 0 || proto == IPPROTO_UDPLITE || v6 {
                l4_csum(pkt, l4 + 6, old, new, Some((old_port, new_port)));
                if get16(pkt, l4 + 6) == Some(0) {
                    put16(pkt, l4 + 6, 0xffff);
                }
            }
            put16(pkt, port_off, new_port);
        }
        IPPROTO_SCTP => {
            if get16(pkt, port_off).is_none() {
                return;
            }
            put16(pkt, port_off, new_port);
            // The CRC32c is recomputed over the whole packet, when it is all there.
            if avail >= 12 {
                if let Some(c) = pkt.get_mut(l4 + 8..l4 + 12) {
                    c.copy_from_slice(&[0; 4]);
                }
                let crc = checksum::crc32c(&pkt[l4..]);
                if let Some(c) = pkt.get_mut(l4 + 8..l4 + 12) {
                    c.copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
        IPPROTO_ICMP => {
            // Only query messages carry an id.
            let Some(&typ) = pkt.get(l4) else { return };
            if !matches!(typ, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
                return;
            }
            let Some(old_id) = get16(pkt, l4 + 4) else { return };
            if let Some(c) = get16(pkt, l4 + 2) {
                put16(pkt, l4 + 2, csum_replace(c, &old_id.to_be_bytes(), &t.src_u.to_be_bytes()));
            }
            put16(pkt, l4 + 4, t.src_u);
        }
        IPPROTO_ICMPV6 => {
            l4_csum(pkt, l4 + 2, old, new, None);
            let Some(&typ) = pkt.get(l4) else { return };
            if matches!(typ, 128 | 129) {
                let Some(old_id) = get16(pkt, l4 + 4) else { return };
                if let Some(c) = get16(pkt, l4 + 2) {
                    put16(pkt, l4 + 2, csum_replace(c, &old_id.to_be_bytes(), &t.src_u.to_be_bytes()));
                }
                put16(pkt, l4 + 4, t.src_u);
            }
        }
        // PPTP (version 1): the call id, on destination rewrites only; version 0 is not
        // translated beyond its addresses.
        IPPROTO_GRE if manip == Manip::Dst && pkt.get(l4 + 1).is_some_and(|b| b & 7 == 1) => {
            put16(pkt, l4 + 6, t.dst_u);
        }
        _ => {}
    }
}

/// The ICMP or ICMPv6 checksum of the message at `l4` recomputed from scratch (after its
/// quoted packet was rewritten).
pub fn icmp_recompute(pkt: &mut [u8], l3: usize, l4: usize, v6: bool) {
    if pkt.len() < l4 + 4 {
        return;
    }
    put16(pkt, l4 + 2, 0);
    let c = if v6 {
        let (Some(src), Some(dst)) = (pkt.get(l3 + 8..l3 + 24), pkt.get(l3 + 24..l3 + 40)) else { return };
        let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
        s.copy_from_slice(src);
        d.copy_from_slice(dst);
        checksum::pseudo_checksum(AF_INET6, &s, &d, IPPROTO_ICMPV6, &pkt[l4..])
    } else {
        checksum::internet_checksum(&pkt[l4..])
    };
    put16(pkt, l4 + 2, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP/IPv4 packet with correct checksums.
    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let c = checksum::internet_checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&[0, 12, 0, 0, b'a', b'b', b'c', b'd']);
        let (mut s16, mut d16) = ([0u8; 16], [0u8; 16]);
        s16[..4].copy_from_slice(&src);
        d16[..4].copy_from_slice(&dst);
        let c = checksum::pseudo_checksum(crate::uapi::AF_INET, &s16, &d16, 17, &u);
        u[6..8].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&u);
        p
    }

    #[test]
    fn incremental_checksums_equal_recomputed_ones() {
        let mut p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        let t = Tuple::new_v4("192.0.2.7".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, 40000, 53);
        assert!(manip_pkt(&mut p, 0, &t, Manip::Src));
        let want = udp4([192, 0, 2, 7], [10, 0, 0, 2], 40000, 53);
        assert_eq!(p, want);
        let t = Tuple::new_v4("192.0.2.7".parse().unwrap(), "10.9.9.9".parse().unwrap(), 17, 40000, 5353);
        assert!(manip_pkt(&mut p, 0, &t, Manip::Dst));
        assert_eq!(p, udp4([192, 0, 2, 7], [10, 9, 9, 9], 40000, 5353));
        assert!(!manip_pkt(&mut [0x45, 0][..].to_vec(), 0, &t, Manip::Dst));
    }

    #[test]
    fn csum_replace_matches_rfc1624() {
        // RFC 1624's example: 0xDD2F, 0x5555 -> 0x3285 gives 0x0000.
        assert_eq!(csum_replace(0xdd2f, &[0x55, 0x55], &[0x32, 0x85]), 0x0000);
    }
}
