//! Internet checksum (RFC 1071) verification as `nf_conntrack_checksum` / `ip_rcv` do it
//! (spec §7.4 step 2, §8, §9.2, §9.3).
//!
//! The one's-complement sum is accumulated eight bytes at a time into a `u64` with end-around
//! carry. Because 2^64 - 1 is a multiple of 2^16 - 1, folding that 64-bit sum down to 16 bits
//! gives exactly the RFC 1071 16-bit sum, whatever the alignment of the word boundaries inside
//! the 8-byte groups (they are always even, so big-endian 16-bit words never straddle).

use crate::uapi::{
    AF_INET, AF_INET6, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
};

/// One's-complement addition of two 64-bit partial sums (end-around carry).
#[inline(always)]
fn add64(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // When a carry occurred, s <= 2^64 - 2, so adding it back cannot overflow.
    s.wrapping_add(u64::from(carry))
}

/// Adds `data` (big-endian 16-bit words, an odd last byte padded with a zero byte) to `acc`.
/// `data` must start at an even offset of the checksummed stream for the result to be exact.
#[inline]
fn sum_bytes(mut acc: u64, data: &[u8]) -> u64 {
    let (chunks, rest) = data.as_chunks::<8>();
    // Two independent accumulators let the CPU overlap the add-with-carry chains.
    let mut acc2: u64 = 0;
    let mut pairs = chunks.chunks_exact(2);
    for pair in &mut pairs {
        if let [a, b] = pair {
            acc = add64(acc, u64::from_be_bytes(*a));
            acc2 = add64(acc2, u64::from_be_bytes(*b));
        }
    }
    for c in pairs.remainder() {
        acc = add64(acc, u64::from_be_bytes(*c));
    }
    acc = add64(acc, acc2);
    if !rest.is_empty() {
        // The last 1 to 7 bytes, big-endian from the top byte down (a byte at a time: copying
        // them into an array costs a `memcpy` call).
        let mut tail = 0u64;
        for (i, b) in rest.iter().enumerate() {
            tail |= u64::from(*b) << (56 - 8 * i);
        }
        acc = add64(acc, tail);
    }
    acc
}

/// Folds a 64-bit one's-complement sum to 16 bits (`csum_fold` without the final inversion).
#[inline]
fn fold(acc: u64) -> u16 {
    let mut s = (acc >> 32) + (acc & 0xffff_ffff); // < 2^33
    s = (s >> 32) + (s & 0xffff_ffff); // < 2^32 + 1
    s = (s >> 16) + (s & 0xffff); // < 2^17
    s = (s >> 16) + (s & 0xffff); // <= 0xffff (+1 at most once more)
    s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// The RFC 1071 16-bit one's-complement sum of `data` (not inverted). A region that contains a
/// correct checksum field sums to `0xffff`.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    fold(sum_bytes(0, data))
}

/// The 16-bit Internet checksum to store in a header whose checksum field is zero in `data`
/// (`~sum`). Handy to build test packets.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// IPv4 header check as `ip_rcv_core` does it with `ip_fast_csum`: false if the header is
/// shorter than 20 bytes, shorter than `ihl*4`, or its checksum does not verify.
pub fn ipv4_header_ok(hdr: &[u8]) -> bool {
    let Some(&b0) = hdr.first() else {
        return false;
    };
    let hlen = usize::from(b0 & 0x0f) * 4;
    if hlen < 20 {
        return false;
    }
    match hdr.get(..hlen) {
        Some(h) => ones_complement_sum(h) == 0xffff,
        None => false,
    }
}

/// Partial sum of the TCP/UDP pseudo-header (`csum_tcpudp_nofold` / `csum_ipv6_magic`):
/// addresses, upper-layer length and protocol. `None` for an unknown address family.
#[inline]
fn pseudo_header_sum(l3num: u8, src: &[u8; 16], dst: &[u8; 16], proto: u8, len: usize) -> Option<u64> {
    // The length enters as a 32-bit quantity; for IPv4 it always fits in 16 bits anyway.
    let len32 = u64::try_from(len).ok().filter(|&l| l <= u64::from(u32::MAX))?;
    if l3num == AF_INET {
        let s = u64::from(u32::from_be_bytes([src[0], src[1], src[2], src[3]]));
        let d = u64::from(u32::from_be_bytes([dst[0], dst[1], dst[2], dst[3]]));
        // Four values below 2^32: their plain sum cannot overflow a u64.
        Some(s + d + u64::from(proto) + len32)
    } else if l3num == AF_INET6 {
        let acc = sum_bytes(0, src);
        let acc = sum_bytes(acc, dst);
        Some(add64(acc, len32 + u64::from(proto)))
    } else {
        None
    }
}

/// The checksum to store in a TCP, UDP or ICMPv6 segment (its checksum field zeroed), with
/// the pseudo-header of these addresses.
pub fn pseudo_checksum(l3num: u8, src: &[u8; 16], dst: &[u8; 16], proto: u8, l4: &[u8]) -> u16 {
    let ph = pseudo_header_sum(l3num, src, dst, proto, l4.len()).unwrap_or(0);
    !fold(sum_bytes(ph, l4))
}

/// Checksum verification of an L4 segment as `nf_conntrack_checksum` (`nf_ip_checksum`,
/// `nf_ip6_checksum`) does it.
///
/// TCP, UDP, ICMPv6 and UDPLITE (full coverage) are summed with the pseudo-header (`src`,
/// `dst`, `l4.len()`, `protonum`; IPv4 or IPv6 layout per `l3num`); ICMP has no pseudo-header;
/// SCTP is checked with CRC32c like `sctp_error` does. Protocols conntrack never checksums
/// (GRE, generic) return true. `l4` is the whole L4 segment as present in the skb (after the
/// IP layer trimmed it to the IP total length). For UDP the caller handles `check == 0`
/// ("no checksum") before calling. Returns true if valid.
pub fn l4_ok(l3num: u8, src: &[u8; 16], dst: &[u8; 16], protonum: u8, l4: &[u8]) -> bool {
    match protonum {
        IPPROTO_ICMP => ones_complement_sum(l4) == 0xffff,
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6 | IPPROTO_UDPLITE => {
            match pseudo_header_sum(l3num, src, dst, protonum, l4.len()) {
                Some(ph) => fold(sum_bytes(ph, l4)) == 0xffff,
                None => false,
            }
        }
        IPPROTO_SCTP => sctp_ok(l4),
        _ => true,
    }
}

/// `nf_checksum_partial`: the checksum over the first `coverage` bytes (0 = all) of `l4`,
/// with a pseudo-header naming `pseudo_proto` and `pseudo_len` (what conntrack's UDPLITE check
/// puts there is not what RFC 3828 says: see `proto::udp::udplite_error`). A coverage larger
/// than the segment is invalid.
pub fn partial_ok(
    l3num: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    pseudo_proto: u8,
    pseudo_len: usize,
    l4: &[u8],
    coverage: usize,
) -> bool {
    let covered = if coverage == 0 {
        l4
    } else {
        match l4.get(..coverage) {
            Some(c) => c,
            None => return false,
        }
    };
    match pseudo_header_sum(l3num, src, dst, pseudo_proto, pseudo_len) {
        Some(ph) => fold(sum_bytes(ph, covered)) == 0xffff,
        None => false,
    }
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) lookup table, built at compile time.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Feeds `data` into a running (pre-inverted) CRC32c register.
#[inline]
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        let idx = ((crc ^ u32::from(b)) & 0xff) as u8;
        crc = (crc >> 8) ^ CRC32C_TABLE[usize::from(idx)];
    }
    crc
}

/// CRC32c of `data` (initial value and final xor 0xFFFFFFFF), as `crc32c()` + inversion.
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

/// SCTP packet checksum (`sctp_compute_cksum`): CRC32c over the common header and chunks with
/// the checksum field (bytes 8-11) taken as zero, stored little-endian. False if the 12-byte
/// common header is not present.
pub fn sctp_ok(l4: &[u8]) -> bool {
    let Some((head, rest)) = l4.split_first_chunk::<12>() else {
        return false;
    };
    let stored = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    let mut crc = crc32c_update(!0, &head[..8]);
    crc = crc32c_update(crc, &[0, 0, 0, 0]);
    crc = crc32c_update(crc, rest);
    !crc == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference one's-complement sum, 16 bits at a time, to check the 64-bit fast path.
    fn slow_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut it = data.chunks(2);
        for c in &mut it {
            let w = match c {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from_be_bytes([*a, 0]),
                _ => 0,
            };
            acc += u32::from(w);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    // A textbook IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) with a valid checksum 0xb861.
    const IPV4_HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0,
        0xa8, 0x00, 0xc7,
    ];

    // A complete IPv4/UDP DNS query (checksums valid): 10.0.0.1:53000 -> 10.0.0.2:53.
    const IPV4_UDP: [u8; 45] = [
        0x45, 0x00, 0x00, 0x2d, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x54, 0x8a, 0x0a, 0x00, 0x00, 0x01, 0x0a,
        0x00, 0x00, 0x02, // IP
        0xcf, 0x08, 0x00, 0x35, 0x00, 0x19, 0x00, 0x00, // UDP, checksum filled in by the test
        0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x61, 0x00, 0x00,
        0x01, // 17 bytes of payload (odd length)
    ];

    #[test]
    fn fast_sum_matches_reference_on_all_lengths_and_offsets() {
        let mut data = [0u8; 300];
        let mut x: u32 = 0x1234_5678;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for start in [0usize, 2, 4, 6, 8, 10] {
            for len in 0..(data.len() - start) {
                let d = &data[start..start + len];
                assert_eq!(ones_complement_sum(d), slow_sum(d), "start {start} len {len}");
            }
        }
        // All-ones data must not overflow the accumulator.
        let ff = [0xffu8; 1024];
        assert_eq!(ones_complement_sum(&ff), slow_sum(&ff));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        assert_eq!(ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
    }

    #[test]
    fn ipv4_header() {
        assert!(ipv4_header_ok(&IPV4_HDR));
        let mut bad = IPV4_HDR;
        bad[11] ^= 1;
        assert!(!ipv4_header_ok(&bad));
        assert!(!ipv4_header_ok(&IPV4_HDR[..19]));
        assert!(!ipv4_header_ok(&[]));
        let mut short_ihl = IPV4_HDR;
        short_ihl[0] = 0x44;
        assert!(!ipv4_header_ok(&short_ihl));
        let mut long_ihl = IPV4_HDR;
        long_ihl[0] = 0x46; // claims 24 bytes, only 20 present
        assert!(!ipv4_header_ok(&long_ihl));
    }

    fn addr4(b: &[u8]) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&b[..4]);
        a
    }

    #[test]
    fn udp_ipv4_pseudo_header() {
        let mut pkt = IPV4_UDP;
        let src = addr4(&pkt[12..16]);
        let dst = addr4(&pkt[16..20]);
        // Compute the UDP checksum the slow way over pseudo-header + segment.
        let mut ph = Vec::new();
        ph.extend_from_slice(&pkt[12..20]);
        ph.extend_from_slice(&[0, 17, 0, 25]);
        ph.extend_from_slice(&pkt[20..]);
        let c = !slow_sum(&ph);
        pkt[26..28].copy_from_slice(&c.to_be_bytes());
        assert!(ipv4_header_ok(&pkt[..20]));
        assert!(l4_ok(AF_INET, &src, &dst, IPPROTO_UDP, &pkt[20..]));
        // Any single bit flip breaks it.
        for i in 20..pkt.len() {
            let mut p = pkt;
            p[i] ^= 0x10;
            assert!(!l4_ok(AF_INET, &src, &dst, IPPROTO_UDP, &p[20..]), "flip at {i}");
        }
        // Wrong pseudo-header: other protocol, other address, unknown family.
        assert!(!l4_ok(AF_INET, &src, &dst, IPPROTO_TCP, &pkt[20..]));
        assert!(!l4_ok(AF_INET, &dst, &dst, IPPROTO_UDP, &pkt[20..]));
        assert!(!l4_ok(7, &src, &dst, IPPROTO_UDP, &pkt[20..]));
        // UDPLITE with full coverage (0 or the whole segment): the same sum, here with protocol
        // 136 and the full length (as RFC 3828 says), checked as `nf_checksum_partial` does.
        let mut lite = pkt;
        lite[26..28].copy_from_slice(&[0, 0]);
        let mut ph2 = Vec::new();
        ph2.extend_from_slice(&lite[12..20]);
        ph2.extend_from_slice(&[0, 136, 0, 25]);
        ph2.extend_from_slice(&lite[20..]);
        let c2 = !slow_sum(&ph2);
        lite[26..28].copy_from_slice(&c2.to_be_bytes());
        assert!(l4_ok(AF_INET, &src, &dst, IPPROTO_UDPLITE, &lite[20..]));
        assert!(partial_ok(AF_INET, &src, &dst, IPPROTO_UDPLITE, 25, &lite[20..], 0));
        assert!(partial_ok(AF_INET, &src, &dst, IPPROTO_UDPLITE, 25, &lite[20..], 25));
        assert!(!partial_ok(AF_INET, &src, &dst, IPPROTO_UDPLITE, 25, &lite[20..], 26));
        // Another pseudo-header protocol or length: another sum.
        assert!(!partial_ok(AF_INET, &src, &dst, IPPROTO_UDP, 25, &lite[20..], 0));
        assert!(!partial_ok(AF_INET, &src, &dst, IPPROTO_UDPLITE, 24, &lite[20..], 0));
    }

    #[test]
    fn udplite_partial_coverage() {
        // UDPLITE over IPv6, coverage 8 (header only): payload changes do not matter.
        let src: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut seg: [u8; 13] = [0x04, 0xd2, 0x16, 0x2e, 0x00, 0x08, 0, 0, b'h', b'e', b'l', b'l', b'o'];
        let mut ph = Vec::new();
        ph.extend_from_slice(&src);
        ph.extend_from_slice(&dst);
        ph.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 136]);
        ph.extend_from_slice(&seg[..8]);
        let c = !slow_sum(&ph);
        seg[6..8].copy_from_slice(&c.to_be_bytes());
        let ok = |seg: &[u8], pseudo_len: usize, cov: usize| {
            partial_ok(AF_INET6, &src, &dst, IPPROTO_UDPLITE, pseudo_len, seg, cov)
        };
        assert!(ok(&seg, 13, 8));
        seg[12] = b'X';
        assert!(ok(&seg, 13, 8));
        assert!(!ok(&seg, 13, 0));
        assert!(!ok(&seg[..7], 13, 8));
    }

    // ICMPv6 echo request fe80::1 -> fe80::2; the checksum is computed by the reference sum.
    #[test]
    fn icmpv6_and_icmp() {
        let src: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut icmp6: [u8; 12] = [128, 0, 0, 0, 0x12, 0x34, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        let mut ph = Vec::new();
        ph.extend_from_slice(&src);
        ph.extend_from_slice(&dst);
        ph.extend_from_slice(&12u32.to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 58]);
        ph.extend_from_slice(&icmp6);
        let c = !slow_sum(&ph);
        icmp6[2..4].copy_from_slice(&c.to_be_bytes());
        assert!(l4_ok(AF_INET6, &src, &dst, IPPROTO_ICMPV6, &icmp6));
        // The same bytes as ICMPv4 (no pseudo-header) do not verify ...
        assert!(!l4_ok(AF_INET, &src, &dst, IPPROTO_ICMP, &icmp6));
        // ... but a plain-summed ICMPv4 echo does.
        let mut icmp4: [u8; 12] = [8, 0, 0, 0, 0x12, 0x34, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef];
        let c4 = internet_checksum(&icmp4);
        icmp4[2..4].copy_from_slice(&c4.to_be_bytes());
        assert!(l4_ok(AF_INET, &src, &dst, IPPROTO_ICMP, &icmp4));
        // Protocols conntrack does not checksum.
        assert!(l4_ok(AF_INET, &src, &dst, 47, &[]));
    }

    #[test]
    fn crc32c_check_value_and_sctp() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        // SCTP INIT-like packet: ports 5000 -> 5001, vtag 0, one chunk.
        let mut p: Vec<u8> = vec![0x13, 0x88, 0x13, 0x89, 0, 0, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&[1, 0, 0, 20, 0xaa, 0xbb, 0xcc, 0xdd, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1]);
        let c = crc32c(&p);
        p[8..12].copy_from_slice(&c.to_le_bytes());
        assert!(sctp_ok(&p));
        assert!(l4_ok(AF_INET, &[0; 16], &[0; 16], IPPROTO_SCTP, &p));
        p[20] ^= 1;
        assert!(!sctp_ok(&p));
        assert!(!sctp_ok(&p[..11]));
    }
}
