//! Network-layer header views: the IP stack's receive sanity checks (`ip_rcv_core`,
//! `ip6_rcv_core`) and conntrack's `get_l4proto` (spec §2 step 2, §4.1).

use crate::uapi::{AF_INET, AF_INET6};
use std::net::IpAddr;

use super::be16;
use super::checksum;

/// What conntrack's get_l4proto and the tuple step need from the network header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L3 {
    /// `tuple::AF_INET` or `tuple::AF_INET6`.
    pub l3num: u8,
    /// Source address; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    /// Destination address; IPv4 in the first 4 bytes, the rest zero.
    pub dst: [u8; 16],
    /// L4 protocol (IPv6: the one found after walking the extension headers).
    pub protonum: u8,
    /// Offset of the L4 header from the start of the packet.
    pub l4_off: usize,
    /// IPv4 TTL / IPv6 hop limit.
    pub hop_limit: u8,
}

/// Why `get_l4proto` could not find the L4 header (conntrack counts the packet `invalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3Error {
    /// Fewer bytes than the fixed IP header.
    TooShort,
    /// Version nibble does not match the parser.
    BadVersion,
    /// IPv4 ihl below 5 or `ihl*4` beyond the packet.
    BadHeaderLength,
    /// Non-first fragment (IPv4 offset or IPv6 fragment-header offset non-zero).
    Fragment,
    /// IPv6 next header 59 in the chain.
    NoNextHeader,
    /// IPv6 extension-header chain runs past the packet.
    BadExtHeader,
}

impl L3Error {
    /// Short human text for logs and per-packet verdict reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            L3Error::TooShort => "packet shorter than the IP header",
            L3Error::BadVersion => "bad IP version",
            L3Error::BadHeaderLength => "bad IPv4 header length",
            L3Error::Fragment => "non-first fragment",
            L3Error::NoNextHeader => "IPv6 no next header",
            L3Error::BadExtHeader => "truncated IPv6 extension header",
        }
    }
}

impl std::fmt::Display for L3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// An IPv4 address in a tuple's 16-byte field (zeros after it), made in registers and stored
/// as two words rather than zeroed and then written a byte at a time (8 instructions a packet
/// fewer; the time it saves is within noise: `benches/RESULTS.md`).
#[inline]
fn v4_in_16(a: [u8; 4]) -> [u8; 16] {
    u128::from(u32::from_le_bytes(a)).to_le_bytes()
}

/// Copies 4 or 16 address bytes at `off` into a zero-padded 16-byte tuple address.
#[inline]
fn addr(b: &[u8], off: usize, len: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    if let Some(src) = b.get(off..off.saturating_add(len)) {
        for (d, s) in a.iter_mut().zip(src) {
            *d = *s;
        }
    }
    a
}

/// Version nibble of the first byte, if any.
#[inline]
pub fn ip_version(pkt: &[u8]) -> Option<u8> {
    pkt.first().map(|b| b >> 4)
}

/// get_l4proto for IPv4 (spec §2 step 2, `ipv4_get_l4proto` in nf_conntrack_core.c).
///
/// Shorter than 20 bytes -> `TooShort`; version != 4 -> `BadVersion`; fragment offset != 0 ->
/// `Fragment` (a first fragment is fine); ihl < 5 or `ihl*4` beyond the packet ->
/// `BadHeaderLength`. `pkt` should already be trimmed to the IP total length.
pub fn ipv4_get_l4proto(pkt: &[u8]) -> Result<L3, L3Error> {
    let Some(h) = pkt.first_chunk::<20>() else {
        return Err(L3Error::TooShort);
    };
    if h[0] >> 4 != 4 {
        return Err(L3Error::BadVersion);
    }
    if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
        return Err(L3Error::Fragment);
    }
    let hlen = usize::from(h[0] & 0x0f) * 4;
    if hlen < 20 || hlen > pkt.len() {
        return Err(L3Error::BadHeaderLength);
    }
    Ok(L3 {
        l3num: AF_INET,
        src: v4_in_16([h[12], h[13], h[14], h[15]]),
        dst: v4_in_16([h[16], h[17], h[18], h[19]]),
        protonum: h[9],
        l4_off: hlen,
        hop_limit: h[8],
    })
}

/// IPv6 extension header numbers `ipv6_ext_hdr()` recognises.
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_NONE: u8 = 59;
const NEXTHDR_DEST: u8 = 60;

/// get_l4proto for IPv6: walks extension headers like `ipv6_skip_exthdr`.
///
/// Skips hop-by-hop (0), routing (43), fragment (44, 8 bytes), destination options (60)
/// (length `(hdrlen+1)*8`) and AH (51, length `(hdrlen+2)*4`). ESP (50) is not skipped: it is
/// the L4 protocol. Next header 59 -> `NoNextHeader`; a fragment header with a non-zero offset
/// -> `Fragment` (the walk stops there like the kernel's); a header that cannot be read or a
/// chain ending past the packet -> `BadExtHeader`. An L4 offset equal to the packet end is OK.
pub fn ipv6_get_l4proto(pkt: &[u8]) -> Result<L3, L3Error> {
    let Some(h) = pkt.first_chunk::<40>() else {
        return Err(L3Error::TooShort);
    };
    if h[0] >> 4 != 6 {
        return Err(L3Error::BadVersion);
    }
    let mut nexthdr = h[6];
    let mut off: usize = 40;
    loop {
        let hdrlen = match nexthdr {
            NEXTHDR_NONE => return Err(L3Error::NoNextHeader),
            NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST | NEXTHDR_AUTH | NEXTHDR_FRAGMENT => {
                let Some(&[nh, len]) = pkt.get(off..off + 2) else {
                    return Err(L3Error::BadExtHeader);
                };
                let hdrlen = match nexthdr {
                    NEXTHDR_FRAGMENT => {
                        let Some(frag) = be16(pkt, off + 2) else {
                            return Err(L3Error::BadExtHeader);
                        };
                        if frag & !0x7 != 0 {
                            return Err(L3Error::Fragment);
                        }
                        8
                    }
                    NEXTHDR_AUTH => (usize::from(len) + 2) * 4,
                    _ => (usize::from(len) + 1) * 8,
                };
                nexthdr = nh;
                hdrlen
            }
            _ => break,
        };
        off += hdrlen;
    }
    if off > pkt.len() {
        return Err(L3Error::BadExtHeader);
    }
    Ok(L3 {
        l3num: AF_INET6,
        src: addr(pkt, 8, 16),
        dst: addr(pkt, 24, 16),
        protonum: nexthdr,
        l4_off: off,
        hop_limit: h[7],
    })
}

/// `get_l4proto` for a packet of family `l3num` (`AF_INET` or `AF_INET6`).
#[inline]
pub fn get_l4proto(l3num: u8, pkt: &[u8]) -> Result<L3, L3Error> {
    if l3num == AF_INET6 {
        ipv6_get_l4proto(pkt)
    } else {
        ipv4_get_l4proto(pkt)
    }
}

/// The source and destination addresses of an IPv4 or IPv6 packet (by its version nibble),
/// if its header has them.
pub fn addrs(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match ip_version(pkt)? {
        4 => {
            let h = ipv4_fields(pkt)?;
            Some((IpAddr::from(h.src), IpAddr::from(h.dst)))
        }
        6 => {
            let h = ipv6_fields(pkt)?;
            Some((IpAddr::from(h.src), IpAddr::from(h.dst)))
        }
        _ => None,
    }
}

/// The fields of an IPv4 header that routing and forwarding read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Fields {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub protocol: u8,
    /// The Don't Fragment bit.
    pub df: bool,
    /// More Fragments set or a non-zero offset.
    pub fragment: bool,
}

/// The fixed IPv4 header's fields, if its 20 bytes are there (the version is not checked).
#[inline]
pub fn ipv4_fields(pkt: &[u8]) -> Option<Ipv4Fields> {
    let h = pkt.first_chunk::<20>()?;
    let frag = u16::from_be_bytes([h[6], h[7]]);
    Some(Ipv4Fields {
        src: [h[12], h[13], h[14], h[15]],
        dst: [h[16], h[17], h[18], h[19]],
        ttl: h[8],
        protocol: h[9],
        df: frag & 0x4000 != 0,
        fragment: frag & 0x3fff != 0,
    })
}

/// The fields of an IPv6 header that routing and forwarding read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Fields {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hop_limit: u8,
    /// The first next-header field (extension headers not walked).
    pub next_header: u8,
}

/// The fixed IPv6 header's fields, if its 40 bytes are there (the version is not checked).
#[inline]
pub fn ipv6_fields(pkt: &[u8]) -> Option<Ipv6Fields> {
    let h = pkt.first_chunk::<40>()?;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    Some(Ipv6Fields { src, dst, hop_limit: h[7], next_header: h[6] })
}

/// The sanity checks of `ip_rcv_core` that drop a packet before PRE_ROUTING (so conntrack
/// never sees it): len >= 20, version 4, ihl >= 5, the header present, header checksum valid
/// (`ip_fast_csum`), len >= tot_len, tot_len >= ihl*4.
///
/// `Ok(tot_len)` is the length the skb is trimmed to (`pskb_trim_rcsum`); Ethernet padding
/// beyond it is not part of the packet.
pub fn ipv4_rcv_check(pkt: &[u8]) -> Result<usize, &'static str> {
    let Some(h) = pkt.first_chunk::<20>() else {
        return Err("ip_rcv: truncated header");
    };
    if h[0] >> 4 != 4 {
        return Err("ip_rcv: bad version");
    }
    let hlen = usize::from(h[0] & 0x0f) * 4;
    if hlen < 20 {
        return Err("ip_rcv: bad header length");
    }
    if pkt.len() < hlen {
        return Err("ip_rcv: truncated header");
    }
    if !checksum::ipv4_header_ok(pkt) {
        return Err("ip_rcv: bad header checksum");
    }
    let tot_len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if pkt.len() < tot_len {
        return Err("ip_rcv: truncated packet");
    }
    if tot_len < hlen {
        return Err("ip_rcv: bad total length");
    }
    Ok(tot_len)
}

/// IPv6 hop-by-hop option types `ip6_parse_tlv` knows for the hop-by-hop header.
const TLV_PAD1: u8 = 0;
const TLV_PADN: u8 = 1;
const TLV_ROUTERALERT: u8 = 5;
const TLV_JUMBO: u8 = 0xc2;
/// `net.ipv6.max_hbh_opts_number` default.
const MAX_HBH_OPTS: usize = 8;

/// Walks the hop-by-hop options header at offset 40 like `ipv6_parse_hopopts` /
/// `ip6_parse_tlv` do before PRE_ROUTING. Returns the jumbo payload length if a valid Jumbo
/// Payload option was found. `payload_len` is the IPv6 header's field; `len` the bytes present.
fn parse_hopopts(pkt: &[u8], payload_len: u16) -> Result<Option<usize>, &'static str> {
    const BAD: &str = "ipv6_rcv: bad hop-by-hop options";
    let Some(&optlen_field) = pkt.get(41) else {
        return Err("ipv6_rcv: truncated hop-by-hop header");
    };
    let total = (usize::from(optlen_field) + 1) * 8;
    let Some(opts) = pkt.get(42..40 + total) else {
        return Err("ipv6_rcv: truncated hop-by-hop header");
    };
    let mut off = 0usize; // within `opts`; option offset in the header is off + 2
    let mut padlen = 0usize;
    let mut count = 0usize;
    let mut jumbo = None;
    while off < opts.len() {
        let Some(&typ) = opts.get(off) else { break };
        if typ == TLV_PAD1 {
            padlen += 1;
            if padlen > 7 {
                return Err(BAD);
            }
            off += 1;
            continue;
        }
        let Some(&l) = opts.get(off + 1) else {
            return Err(BAD);
        };
        let olen = usize::from(l) + 2;
        let Some(body) = opts.get(off + 2..off + olen) else {
            return Err(BAD);
        };
        if typ == TLV_PADN {
            padlen += olen;
            if padlen > 7 || body.iter().any(|&b| b != 0) {
                return Err(BAD);
            }
            off += olen;
            continue;
        }
        padlen = 0;
        count += 1;
        if count > MAX_HBH_OPTS {
            return Err(BAD);
        }
        match typ {
            TLV_ROUTERALERT => {
                if l != 2 {
                    return Err(BAD);
                }
            }
            TLV_JUMBO => {
                // Must be 4 bytes long and 4n+2 aligned in the header.
                let &[a, b, c, d] = body else {
                    return Err(BAD);
                };
                if (off + 2) & 3 != 2 {
                    return Err(BAD);
                }
                let jlen = u32::from_be_bytes([a, b, c, d]);
                if jlen <= 65535 || payload_len != 0 {
                    return Err(BAD);
                }
                let jlen = usize::try_from(jlen).map_err(|_| BAD)?;
                if jlen > pkt.len().saturating_sub(40) {
                    return Err("ipv6_rcv: truncated jumbo packet");
                }
                jumbo = Some(jlen);
            }
            // IOAM (0x31) is ignored unless enabled on the device; CALIPSO (7) is accepted.
            0x31 | 7 => {}
            _ => {
                // Unknown option: the two high bits say what to do; 00 = skip, else discard.
                if typ >> 6 != 0 {
                    return Err("ipv6_rcv: unknown hop-by-hop option");
                }
            }
        }
        off += olen;
    }
    Ok(jumbo)
}

/// `ip6_rcv_core`'s checks before PRE_ROUTING, for a packet arriving on a non-loopback device
/// (the replay's TUN device): len >= 40, version 6, destination not `::1` (RFC 4291 2.5.3),
/// destination not interface-local (ff.1) or reserved-scope (ff.0) multicast, source not
/// multicast (ff00::/8), 40 + payload_len <= len, and a well-formed hop-by-hop header if one
/// follows (`ipv6_parse_hopopts`). payload_len 0 with a hop-by-hop header is the jumbogram
/// case: the Jumbo Payload option's length is used, else the whole packet.
///
/// `Ok(n)` is the length the skb is trimmed to (40 + payload_len normally).
pub fn ipv6_rcv_check(pkt: &[u8]) -> Result<usize, &'static str> {
    let Some(h) = pkt.first_chunk::<40>() else {
        return Err("ipv6_rcv: truncated header");
    };
    if h[0] >> 4 != 6 {
        return Err("ipv6_rcv: bad version");
    }
    let src = &h[8..24];
    let dst = &h[24..40];
    let dst_loopback = dst[..15].iter().all(|&b| b == 0) && dst[15] == 1;
    if dst_loopback {
        return Err("ipv6_rcv: loopback destination on a non-loopback device");
    }
    if dst[0] == 0xff {
        match dst[1] & 0x0f {
            1 => return Err("ipv6_rcv: interface-local multicast destination"),
            0 => return Err("ipv6_rcv: reserved-scope multicast destination"),
            _ => {}
        }
    }
    if src[0] == 0xff {
        return Err("ipv6_rcv: multicast source address");
    }
    let payload_len = u16::from_be_bytes([h[4], h[5]]);
    let nexthdr = h[6];
    let mut end = pkt.len();
    if payload_len != 0 || nexthdr != NEXTHDR_HOP {
        let want = 40 + usize::from(payload_len);
        if want > pkt.len() {
            return Err("ipv6_rcv: truncated packet");
        }
        end = want;
    }
    if nexthdr == NEXTHDR_HOP {
        let trimmed = pkt.get(..end).unwrap_or(pkt);
        if let Some(jlen) = parse_hopopts(trimmed, payload_len)? {
            end = 40 + jlen;
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    // IPv4 TCP SYN 10.1.0.2:40000 -> 10.2.0.2:80, header checksum valid, 20-byte TCP header.
    const V4_SYN: [u8; 40] = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x26, 0xc9, 0x0a, 0x01, 0x00, 0x02, 0x0a,
        0x02, 0x00, 0x02, // IP
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0x72, 0x10, 0x00,
        0x00, 0x00, 0x00, // TCP
    ];

    // IPv6 UDP 2001:db8::1 -> 2001:db8::2 behind hop-by-hop (router alert) + destination
    // options + fragment header (offset 0, M=1); payload 8 bytes of UDP header.
    fn v6_chain() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, NEXTHDR_HOP, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        // hop-by-hop: next = dest opts, len 0 (8 bytes): router alert (5,2,0,0) + PadN(1,0)
        p.extend_from_slice(&[NEXTHDR_DEST, 0, 5, 2, 0, 0, 1, 0]);
        // destination options: next = fragment, len 1 (16 bytes), PadN of 12 + Pad1s... use
        // one PadN(4) + unknown skippable option (type 0x1e, 4 bytes) + PadN(2)
        p.extend_from_slice(&[NEXTHDR_FRAGMENT, 1, 1, 2, 0, 0, 0x1e, 4, 9, 9, 9, 9, 1, 0, 0, 0]);
        // fragment: next = UDP, offset 0, M=1
        p.extend_from_slice(&[17, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        // UDP header
        p.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p
    }

    #[test]
    fn ipv4_basic() {
        let l3 = ipv4_get_l4proto(&V4_SYN).expect("ok");
        assert_eq!(l3.l3num, AF_INET);
        assert_eq!(&l3.src[..4], &[10, 1, 0, 2]);
        assert_eq!(&l3.src[4..], &[0; 12]);
        assert_eq!(&l3.dst[..4], &[10, 2, 0, 2]);
        assert_eq!(l3.protonum, 6);
        assert_eq!(l3.l4_off, 20);
        assert_eq!(l3.hop_limit, 64);
        assert_eq!(ip_version(&V4_SYN), Some(4));
        assert_eq!(ip_version(&[]), None);
        assert_eq!(ipv4_rcv_check(&V4_SYN), Ok(40));
    }

    #[test]
    fn ipv4_errors() {
        assert_eq!(ipv4_get_l4proto(&V4_SYN[..19]), Err(L3Error::TooShort));
        let mut p = V4_SYN;
        p[0] = 0x65;
        assert_eq!(ipv4_get_l4proto(&p), Err(L3Error::BadVersion));
        let mut p = V4_SYN;
        p[6] = 0x20; // MF only: first fragment is fine
        assert!(ipv4_get_l4proto(&p).is_ok());
        p[7] = 0x01; // offset 1 -> non-first fragment
        assert_eq!(ipv4_get_l4proto(&p), Err(L3Error::Fragment));
        let mut p = V4_SYN;
        p[0] = 0x4f; // 60-byte header in a 40-byte packet
        assert_eq!(ipv4_get_l4proto(&p), Err(L3Error::BadHeaderLength));
        p[0] = 0x44;
        assert_eq!(ipv4_get_l4proto(&p), Err(L3Error::BadHeaderLength));
        assert_eq!(L3Error::Fragment.reason(), "non-first fragment");
        assert_eq!(L3Error::NoNextHeader.reason(), "IPv6 no next header");
    }

    #[test]
    fn ipv4_rcv_checks() {
        assert_eq!(ipv4_rcv_check(&V4_SYN[..10]), Err("ip_rcv: truncated header"));
        let mut p = V4_SYN;
        p[11] ^= 0xff;
        assert_eq!(ipv4_rcv_check(&p), Err("ip_rcv: bad header checksum"));
        // Ethernet padding after tot_len is trimmed off.
        let mut padded = V4_SYN.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(ipv4_rcv_check(&padded), Ok(40));
        // Truncated: header claims 40, only 39 present.
        assert_eq!(ipv4_rcv_check(&V4_SYN[..39]), Err("ip_rcv: truncated packet"));
        // tot_len smaller than the header (checksum fixed up).
        let mut p = V4_SYN;
        p[2..4].copy_from_slice(&[0, 16]);
        p[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(ipv4_rcv_check(&p), Err("ip_rcv: bad total length"));
        let mut p = V4_SYN;
        p[0] = 0x44;
        assert_eq!(ipv4_rcv_check(&p), Err("ip_rcv: bad header length"));
        p[0] = 0x55;
        assert_eq!(ipv4_rcv_check(&p), Err("ip_rcv: bad version"));
    }

    #[test]
    fn ipv6_chain_walk() {
        let p = v6_chain();
        let l3 = ipv6_get_l4proto(&p).expect("ok");
        assert_eq!(l3.l3num, AF_INET6);
        assert_eq!(l3.protonum, 17);
        assert_eq!(l3.l4_off, 40 + 8 + 16 + 8);
        assert_eq!(l3.hop_limit, 64);
        assert_eq!(l3.src[15], 1);
        assert_eq!(l3.dst[15], 2);
        assert_eq!(ipv6_rcv_check(&p), Ok(p.len()));
        // Truncate inside the chain -> BadExtHeader; at the L4 start -> OK (empty L4).
        assert_eq!(ipv6_get_l4proto(&p[..41]), Err(L3Error::BadExtHeader));
        assert_eq!(ipv6_get_l4proto(&p[..60]), Err(L3Error::BadExtHeader));
        assert_eq!(ipv6_get_l4proto(&p[..70]), Err(L3Error::BadExtHeader));
        assert_eq!(ipv6_get_l4proto(&p[..72]).map(|l| l.l4_off), Ok(72));
        // Non-first fragment.
        let mut f = p.clone();
        f[66..68].copy_from_slice(&[0x00, 0x08]); // offset 1
        assert_eq!(ipv6_get_l4proto(&f), Err(L3Error::Fragment));
        // No next header.
        let mut n = p.clone();
        n[64] = NEXTHDR_NONE;
        assert_eq!(ipv6_get_l4proto(&n), Err(L3Error::NoNextHeader));
        let mut n0 = p.clone();
        n0[6] = NEXTHDR_NONE;
        assert_eq!(ipv6_get_l4proto(&n0), Err(L3Error::NoNextHeader));
        // ESP is the L4 protocol, not skipped.
        let mut e = p.clone();
        e[6] = 50;
        assert_eq!(ipv6_get_l4proto(&e).map(|l| (l.protonum, l.l4_off)), Ok((50, 40)));
        assert_eq!(ipv6_get_l4proto(&p[..39]), Err(L3Error::TooShort));
        assert_eq!(ipv6_get_l4proto(&V4_SYN), Err(L3Error::BadVersion));
    }

    #[test]
    fn ipv6_auth_header_length() {
        // AH with payload-length field 4 -> (4+2)*4 = 24 bytes, then TCP.
        let mut p = vec![0x60, 0, 0, 0, 0, 44, NEXTHDR_AUTH, 255];
        p.extend_from_slice(&[0u8; 32]);
        p.extend_from_slice(&[6, 4, 0, 0]);
        p.extend_from_slice(&[0u8; 20]);
        p.extend_from_slice(&[0u8; 20]);
        let l3 = ipv6_get_l4proto(&p).expect("ok");
        assert_eq!((l3.protonum, l3.l4_off), (6, 64));
    }

    #[test]
    fn ipv6_rcv_checks() {
        let p = v6_chain();
        assert_eq!(ipv6_rcv_check(&p[..39]), Err("ipv6_rcv: truncated header"));
        assert_eq!(ipv6_rcv_check(&p[..70]), Err("ipv6_rcv: truncated packet"));
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 5]);
        assert_eq!(ipv6_rcv_check(&padded), Ok(p.len()));
        let mut m = p.clone();
        m[8] = 0xff;
        assert_eq!(ipv6_rcv_check(&m), Err("ipv6_rcv: multicast source address"));
        let mut lo = p.clone();
        lo[24..40].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(ipv6_rcv_check(&lo).is_err());
        let mut mc = p.clone();
        mc[24] = 0xff;
        mc[25] = 0x02; // link-local scope: fine
        assert!(ipv6_rcv_check(&mc).is_ok());
        mc[25] = 0x01;
        assert!(ipv6_rcv_check(&mc).is_err());
        mc[25] = 0x00;
        assert!(ipv6_rcv_check(&mc).is_err());
        let mut v = p.clone();
        v[0] = 0x40;
        assert_eq!(ipv6_rcv_check(&v), Err("ipv6_rcv: bad version"));
        // Bad hop-by-hop: unknown option with "discard" action bits.
        let mut u = p.clone();
        u[42] = 0x45;
        assert_eq!(ipv6_rcv_check(&u), Err("ipv6_rcv: unknown hop-by-hop option"));
        // Router alert with the wrong length.
        let mut r = p.clone();
        r[43] = 3;
        assert!(ipv6_rcv_check(&r).is_err());
        // Non-zero PadN content.
        let mut z = p.clone();
        z[47] = 1;
        assert!(ipv6_rcv_check(&z).is_err());
    }

    #[test]
    fn ipv6_jumbogram() {
        // payload_len 0, hop-by-hop with a Jumbo Payload option (at header offset 2).
        let jlen: u32 = 70_000;
        let mut p = vec![0x60, 0, 0, 0, 0, 0, NEXTHDR_HOP, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[59, 0, TLV_JUMBO, 4]);
        p.extend_from_slice(&jlen.to_be_bytes());
        p.resize(40 + jlen as usize + 3, 0);
        assert_eq!(ipv6_rcv_check(&p), Ok(40 + jlen as usize));
        assert_eq!(ipv6_rcv_check(&p[..40 + 1000]), Err("ipv6_rcv: truncated jumbo packet"));
        // No jumbo option: whole packet.
        let mut q = p[..48].to_vec();
        q[42..48].copy_from_slice(&[1, 4, 0, 0, 0, 0]);
        q.extend_from_slice(&[1, 2, 3]);
        assert_eq!(ipv6_rcv_check(&q), Ok(51));
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut x: u32 = 0x9e37_79b9;
        let base4 = V4_SYN;
        let base6 = v6_chain();
        for round in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let mut p = if round % 2 == 0 { base4.to_vec() } else { base6.clone() };
            let n = x % 4 + 1;
            for k in 0..n {
                let i = (x.rotate_left(k * 7) as usize) % p.len();
                p[i] = (x >> (k * 8)) as u8;
            }
            let cut = (x as usize >> 3) % (p.len() + 1);
            let p = &p[..cut];
            let _ = ipv4_get_l4proto(p);
            let _ = ipv6_get_l4proto(p);
            let _ = ipv4_rcv_check(p);
            let _ = ipv6_rcv_check(p);
            if let Ok(l3) = ipv6_get_l4proto(p) {
                assert!(l3.l4_off <= p.len());
            }
            if let Ok(l3) = ipv4_get_l4proto(p) {
                assert!(l3.l4_off <= p.len());
            }
        }
    }
}
