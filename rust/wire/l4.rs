//! L4 header views used by the per-protocol trackers (spec §4.1, §7.4, §7.7, §8, §9, §10).
//!
//! Every function takes the slice starting at the L4 header and returns `None` when the bytes
//! are too short; values are converted to host order.

use super::{be16, be32};

/// TCP flag bits of the 14th header byte.
pub const TCP_FIN: u8 = 0x01;
/// SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// RST flag.
pub const TCP_RST: u8 = 0x04;
/// PSH flag.
pub const TCP_PSH: u8 = 0x08;
/// ACK flag.
pub const TCP_ACK: u8 = 0x10;
/// URG flag.
pub const TCP_URG: u8 = 0x20;
/// ECE flag.
pub const TCP_ECE: u8 = 0x40;
/// CWR flag.
pub const TCP_CWR: u8 = 0x80;

/// Largest window scale conntrack accepts (`TCP_MAX_WSCALE`); larger values are clamped.
pub const TCP_MAX_WSCALE: u8 = 14;

/// Source and destination port (first 4 bytes), as the port protocols' `pkt_to_tuple` read
/// them (TCP, UDP, UDPLITE, SCTP, DCCP).
#[inline]
pub fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    l4.first_chunk::<4>().map(|&[a, b, c, d]| (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])))
}

/// `struct udphdr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHdr {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Length field (UDP: header + payload; UDPLITE: checksum coverage).
    pub len: u16,
    /// Checksum field (0 = none for UDP).
    pub check: u16,
}

/// The 8-byte UDP/UDPLITE header (`udp_error` needs it all).
#[inline]
pub fn udp(l4: &[u8]) -> Option<UdpHdr> {
    let h = l4.first_chunk::<8>()?;
    Some(UdpHdr {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        len: u16::from_be_bytes([h[4], h[5]]),
        check: u16::from_be_bytes([h[6], h[7]]),
    })
}

/// `struct icmphdr` / `struct icmp6hdr` (same layout for the fields conntrack uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpHdr {
    /// Type.
    pub typ: u8,
    /// Code.
    pub code: u8,
    /// Checksum field.
    pub check: u16,
    /// Bytes 4-5: the echo identifier, taken for every type by the tuple step.
    pub id: u16,
    /// Bytes 6-7: echo sequence number.
    pub seq: u16,
}

/// The 8-byte ICMP/ICMPv6 header (`icmp_pkt_to_tuple` needs 8 bytes).
#[inline]
pub fn icmp(l4: &[u8]) -> Option<IcmpHdr> {
    let h = l4.first_chunk::<8>()?;
    Some(IcmpHdr {
        typ: h[0],
        code: h[1],
        check: u16::from_be_bytes([h[2], h[3]]),
        id: u16::from_be_bytes([h[4], h[5]]),
        seq: u16::from_be_bytes([h[6], h[7]]),
    })
}

/// `struct tcphdr`, the fixed 20 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHdr {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Header length in bytes (data offset * 4); may be bogus, the caller checks it.
    pub doff: usize,
    /// Flag byte: FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80.
    pub flags: u8,
    /// Window field (unscaled).
    pub window: u16,
    /// Checksum field.
    pub check: u16,
}

/// The fixed 20-byte TCP header (`tcp_error` reads it; `doff` is not validated here).
#[inline]
pub fn tcp(l4: &[u8]) -> Option<TcpHdr> {
    let h = l4.first_chunk::<20>()?;
    Some(TcpHdr {
        sport: u16::from_be_bytes([h[0], h[1]]),
        dport: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        doff: usize::from(h[12] >> 4) * 4,
        flags: h[13],
        window: u16::from_be_bytes([h[14], h[15]]),
        check: u16::from_be_bytes([h[16], h[17]]),
    })
}

/// TCP options of interest to window tracking, parsed from bytes 20..doff (total: a bad
/// option list stops parsing, never panics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Window scale shift (kind 3, length 3), clamped to 14 like conntrack's `tcp_options`.
    pub wscale: Option<u8>,
    /// SACK-permitted seen (kind 4, length 2).
    pub sack_perm: bool,
    /// Highest right edge (sequence-space `after()` order) among the blocks of the first
    /// SACK option (kind 5) of valid length, as `tcp_sack` computes it.
    pub sack_max_right_edge: Option<u32>,
}

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_WINDOW: u8 = 3;
const TCPOPT_SACK_PERM: u8 = 4;
const TCPOPT_SACK: u8 = 5;

/// Parses the option bytes 20..`doff` of the TCP header at `l4` the way conntrack's
/// `tcp_options` and `tcp_sack` do: EOL ends the list, NOP is skipped, an option with a length
/// below 2 or running past the header end stops parsing (earlier results are kept). Window
/// scale counts only with length 3, SACK-permitted only with length 2, and SACK blocks only from
/// the first SACK option whose length is 2 + 8n (n >= 1). A `doff` below 20 or beyond the
/// slice gives no options.
pub fn tcp_options(l4: &[u8], doff: usize) -> TcpOptions {
    let mut out = TcpOptions::default();
    if doff <= 20 {
        return out;
    }
    let Some(opts) = l4.get(20..doff) else {
        return out;
    };
    let mut sack_done = false;
    let mut i = 0usize;
    while let Some(&kind) = opts.get(i) {
        match kind {
            TCPOPT_EOL => break,
            TCPOPT_NOP => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(i + 1) else { break };
        let len = usize::from(len);
        if len < 2 {
            break;
        }
        let Some(body) = opts.get(i + 2..i + len) else {
            break;
        };
        match kind {
            TCPOPT_WINDOW if len == 3 => {
                if let Some(&s) = body.first() {
                    out.wscale = Some(s.min(TCP_MAX_WSCALE));
                }
            }
            TCPOPT_SACK_PERM if len == 2 => out.sack_perm = true,
            TCPOPT_SACK if !sack_done && len >= 10 && (len - 2) % 8 == 0 => {
                sack_done = true;
                let mut max: Option<u32> = None;
                for block in body.chunks_exact(8) {
                    if let Some(right) = be32(block, 4) {
                        max = Some(match max {
                            Some(m) if !after(right, m) => m,
                            _ => right,
                        });
                    }
                }
                out.sack_max_right_edge = max;
            }
            _ => {}
        }
        i += len;
    }
    out
}

/// The kernel's `before(a, b)`: sequence number `a` comes before `b` (mod 2^32).
#[inline]
pub fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The kernel's `after(a, b)`: sequence number `a` comes after `b` (mod 2^32).
#[inline]
pub fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// The GRE header fields conntrack uses (`gre_pkt_to_tuple`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GreHdr {
    /// Version (low 3 bits of byte 1): 0 plain GRE, 1 enhanced GRE (PPTP).
    pub version: u8,
    /// Protocol type (0x880B = PPP for PPTP).
    pub protocol: u16,
    /// Version 0: the key field if the K bit is set. Version 1 (PPTP): the
    /// payload-length(16)+call-id(16) field, i.e. `key & 0xffff` is the call id.
    pub key: Option<u32>,
}

/// GRE flag bits of the first header byte.
const GRE_CSUM: u8 = 0x80;
const GRE_ROUTING: u8 = 0x40;
const GRE_KEY: u8 = 0x20;

/// Parses a GRE header: 4 bytes needed (8 for version 1, and 4 more for a version-0 key after
/// an optional checksum/offset word). Note the kernel treats a version-1 header shorter than
/// 8 bytes like generic GRE; this function returns `None` for it.
pub fn gre(l4: &[u8]) -> Option<GreHdr> {
    let h = l4.first_chunk::<4>()?;
    let version = h[1] & 0x07;
    let protocol = u16::from_be_bytes([h[2], h[3]]);
    let key = if version == 1 {
        Some(be32(l4, 4)?)
    } else if h[0] & GRE_KEY != 0 {
        let off = if h[0] & (GRE_CSUM | GRE_ROUTING) != 0 { 8 } else { 4 };
        Some(be32(l4, off)?)
    } else {
        None
    };
    Some(GreHdr { version, protocol, key })
}

/// SCTP source and destination ports; needs the whole 12-byte common header
/// (`sctp_pkt_to_tuple` / `sctp_error`).
#[inline]
pub fn sctp_ports(l4: &[u8]) -> Option<(u16, u16)> {
    if l4.len() < 12 {
        return None;
    }
    Some((be16(l4, 0)?, be16(l4, 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    // SYN from a Linux client: mss 1460, sackOK, TS, nop, wscale 7 (doff 40).
    const SYN: [u8; 40] = [
        0x9c, 0x40, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0xab,
        0xcd, 0x00, 0x00, // fixed header
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x03, 0x03, 0x07,
    ];

    // ACK with NOP NOP SACK (2 blocks, the second has the higher right edge across a wrap).
    const SACK: [u8; 40] = [
        0x00, 0x50, 0x9c, 0x40, 0x00, 0x00, 0x10, 0x00, 0x12, 0x34, 0x56, 0x79, 0xa0, 0x10, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, // fixed
        0x01, 0x01, 0x05, 0x12, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xf0, 0x00, 0x00, 0x00, 0x10, 0x00,
        0x00, 0x00, 0x20,
    ];

    #[test]
    fn tcp_header_and_options() {
        let h = tcp(&SYN).expect("tcp");
        assert_eq!((h.sport, h.dport), (40000, 80));
        assert_eq!(h.seq, 0x1234_5678);
        assert_eq!(h.ack, 0);
        assert_eq!(h.doff, 40);
        assert_eq!(h.flags, TCP_SYN);
        assert_eq!(h.window, 0xfaf0);
        assert_eq!(h.check, 0xabcd);
        let o = tcp_options(&SYN, h.doff);
        assert_eq!(o, TcpOptions { wscale: Some(7), sack_perm: true, sack_max_right_edge: None });
        assert!(tcp(&SYN[..19]).is_none());
        assert_eq!(ports(&SYN), Some((40000, 80)));
        assert_eq!(ports(&SYN[..3]), None);
    }

    #[test]
    fn sack_right_edge_wraps() {
        let h = tcp(&SACK).expect("tcp");
        assert_eq!(h.flags, TCP_ACK);
        let o = tcp_options(&SACK, h.doff);
        // 0xfffffff0 vs 0x00000020: the latter is after() across the wrap.
        assert_eq!(o.sack_max_right_edge, Some(0x20));
        assert_eq!(o.wscale, None);
        assert!(!o.sack_perm);
    }

    #[test]
    fn bad_option_lists_stop_parsing() {
        // wscale 200 is clamped to 14.
        let mut s = SYN;
        s[39] = 200;
        assert_eq!(tcp_options(&s, 40).wscale, Some(14));
        // Wrong wscale length is ignored.
        let mut s = SYN;
        s[37] = 4;
        assert_eq!(tcp_options(&s, 40).wscale, None);
        // Zero-length option stops parsing before the later options.
        let mut s = SYN;
        s[21] = 0;
        assert_eq!(tcp_options(&s, 40), TcpOptions::default());
        // Option that runs past doff stops parsing but keeps what came before.
        let mut s = SYN;
        s[37] = 9;
        assert_eq!(
            tcp_options(&s, 40),
            TcpOptions { wscale: None, sack_perm: true, sack_max_right_edge: None }
        );
        // EOL stops.
        let mut s = SYN;
        s[24] = 0;
        assert_eq!(tcp_options(&s, 40), TcpOptions::default());
        // doff beyond the slice, below 20, or the truncated slice.
        assert_eq!(tcp_options(&SYN, 60), TcpOptions::default());
        assert_eq!(tcp_options(&SYN, 8), TcpOptions::default());
        assert_eq!(tcp_options(&SYN[..30], 40), TcpOptions::default());
        // SACK with a bad length (not 2 + 8n) is ignored.
        let mut k = SACK;
        k[23] = 0x11;
        assert_eq!(tcp_options(&k, 40).sack_max_right_edge, None);
    }

    #[test]
    fn udp_icmp_sctp() {
        let u = [0x04, 0xd2, 0x00, 0x35, 0x00, 0x1d, 0xbe, 0xef, 0xff];
        assert_eq!(udp(&u), Some(UdpHdr { sport: 1234, dport: 53, len: 29, check: 0xbeef }));
        assert_eq!(udp(&u[..7]), None);
        let e = [8, 0, 0xf7, 0xfd, 0x00, 0x01, 0x00, 0x02];
        assert_eq!(icmp(&e), Some(IcmpHdr { typ: 8, code: 0, check: 0xf7fd, id: 1, seq: 2 }));
        assert_eq!(icmp(&e[..7]), None);
        let s = [0x13, 0x88, 0x0b, 0x59, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(sctp_ports(&s), Some((5000, 2905)));
        assert_eq!(sctp_ports(&s[..11]), None);
    }

    #[test]
    fn gre_versions() {
        // Plain GRE carrying IPv4, no key.
        assert_eq!(gre(&[0x00, 0x00, 0x08, 0x00]), Some(GreHdr { version: 0, protocol: 0x0800, key: None }));
        // GRE with key.
        let k = [0x20, 0x00, 0x65, 0x58, 0x00, 0x00, 0x01, 0x2c];
        assert_eq!(gre(&k), Some(GreHdr { version: 0, protocol: 0x6558, key: Some(300) }));
        assert_eq!(gre(&k[..6]), None);
        // GRE with checksum and key: key after the checksum word.
        let ck = [0xa0, 0x00, 0x08, 0x00, 0xaa, 0xbb, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07];
        assert_eq!(gre(&ck).and_then(|g| g.key), Some(7));
        // PPTP enhanced GRE: K set, version 1, payload length 0x10, call id 0x4321.
        let p = [0x30, 0x81, 0x88, 0x0b, 0x00, 0x10, 0x43, 0x21, 0, 0, 0, 1];
        let g = gre(&p).expect("gre");
        assert_eq!(g.version, 1);
        assert_eq!(g.protocol, 0x880b);
        assert_eq!(g.key.map(|k| k & 0xffff), Some(0x4321));
        assert_eq!(gre(&p[..7]), None);
        assert_eq!(gre(&p[..3]), None);
    }

    #[test]
    fn options_never_panic_on_noise() {
        let mut x: u64 = 0x0123_4567_89ab_cdef;
        let mut buf = [0u8; 64];
        for _ in 0..50_000 {
            for b in buf.iter_mut() {
                x ^= x << 7;
                x ^= x >> 9;
                *b = x as u8;
            }
            let len = (x as usize) % 65;
            let doff = (x >> 20) as usize % 80;
            let _ = tcp_options(&buf[..len], doff);
            let _ = tcp(&buf[..len]);
            let _ = gre(&buf[..len]);
        }
    }
}
