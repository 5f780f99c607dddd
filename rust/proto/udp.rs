//! UDP and UDPLITE (`nf_conntrack_proto_udp.c`, spec §8).

use super::{PacketCtx, PacketVerdict, ProtoState};
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::uapi::{AF_INET, IPPROTO_UDP};
use crate::uapi::{IPCT_ASSURED, IPS_ASSURED, IPS_NAT_CLASH, IPS_SEEN_REPLY};
use crate::wire::{checksum, l4};

/// Nanoseconds a replied UDP flow must live before it counts as a stream (the kernel's 2*HZ).
const STREAM_AFTER_NS: u64 = 2_000_000_000;

/// `udp_error`: header present, length field sane, checksum (when verified) right.
pub fn udp_error(ctx: &PacketCtx<'_>) -> Result<(), &'static str> {
    let Some(h) = l4::udp(ctx.l4) else { return Err("nf_ct_udp: short packet") };
    let udplen = usize::from(h.len);
    if udplen > ctx.l4.len() || udplen < 8 {
        return Err("nf_ct_udp: truncated/malformed packet");
    }
    if h.check == 0 {
        return Ok(());
    }
    if ctx.verify_checksum && !checksum::l4_ok(ctx.l3num, ctx.src, ctx.dst, IPPROTO_UDP, ctx.l4) {
        return Err("nf_ct_udp: bad checksum");
    }
    Ok(())
}

/// `udplite_error`: coverage sane, checksum mandatory and right.
pub fn udplite_error(ctx: &PacketCtx<'_>) -> Result<(), &'static str> {
    let Some(h) = l4::udp(ctx.l4) else { return Err("nf_ct_udplite: short packet") };
    let mut cscov = usize::from(h.len);
    if cscov == 0 {
        cscov = ctx.l4.len();
    } else if cscov < 8 || cscov > ctx.l4.len() {
        return Err("nf_ct_udplite: invalid checksum coverage");
    }
    if h.check == 0 {
        return Err("nf_ct_udplite: checksum missing");
    }
    if ctx.verify_checksum
        && !checksum::partial_ok(
            ctx.l3num,
            ctx.src,
            ctx.dst,
            IPPROTO_UDP,
            udplite_pseudo_len(ctx.l3num, ctx.l4.len()),
            ctx.l4,
            cscov,
        )
    {
        return Err("nf_ct_udplite: bad checksum");
    }
    Ok(())
}

/// The length in the pseudo-header conntrack verifies a UDPLITE checksum against.
///
/// Observed on Linux 6.18 with `nfct.kernel` (PRE_ROUTING, `nf_conntrack_checksum=1`; see
/// docs/fidelity.md, "UDPLITE checksums"): conntrack sums the covered bytes with a pseudo-header
/// naming protocol 17 (UDP), not 136 as RFC 3828 says, and whose length is, over IPv6, the L4
/// length, but over IPv4 only its low byte (L4 length mod 256), whatever the checksum coverage
/// (0, 8, partial, full), the IPv4 options or the fragmentation (reassembled datagrams up to
/// 65515 bytes). So over IPv4 a UDPLITE datagram of 256 bytes or more checksummed as UDP would
/// be is INVALID, and one checksummed with the low byte is NEW; below 256 bytes both agree. A
/// checksum computed as RFC 3828 says (protocol 136) is INVALID at every length in both
/// families. Plain UDP has no such effect (full length over IPv4 and IPv6).
pub fn udplite_pseudo_len(l3num: u8, l4_len: usize) -> usize {
    if l3num == AF_INET {
        l4_len & 0xff
    } else {
        l4_len
    }
}

/// `nf_conntrack_udp_packet`: 30 s until a reply has been seen and the flow has lived 2 s,
/// then the stream timeout and ASSURED.
pub fn udp_packet(e: &mut Conn, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    if let Err(why) = udp_error(ctx) {
        return PacketVerdict::Invalid(why);
    }
    if !e.confirmed() {
        e.proto = ProtoState::Udp { stream_ts: ctx.now.saturating_add(STREAM_AFTER_NS) };
    }
    let mut extra = sysctl.timeout_ns(SysctlKey::UdpTimeout);
    let mut stream = false;
    if e.status & IPS_SEEN_REPLY != 0 {
        let stream_ts = match e.proto {
            ProtoState::Udp { stream_ts } => stream_ts,
            _ => 0,
        };
        if ctx.now > stream_ts {
            extra = sysctl.timeout_ns(SysctlKey::UdpTimeoutStream);
            stream = e.status & IPS_ASSURED == 0;
        }
    }
    e.refresh(ctx.dir, ctx.len, extra, ctx.now);
    if stream && e.status & IPS_NAT_CLASH == 0 {
        e.set_status(IPS_ASSURED, IPCT_ASSURED);
    }
    PacketVerdict::Accept
}

/// `nf_conntrack_udplite_packet`: the stream timeout and ASSURED as soon as a reply was seen.
pub fn udplite_packet(e: &mut Conn, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    if let Err(why) = udplite_error(ctx) {
        return PacketVerdict::Invalid(why);
    }
    if e.status & IPS_SEEN_REPLY != 0 {
        e.refresh(ctx.dir, ctx.len, sysctl.timeout_ns(SysctlKey::UdpTimeoutStream), ctx.now);
        if e.status & IPS_NAT_CLASH == 0 {
            e.set_status(IPS_ASSURED, IPCT_ASSURED);
        }
    } else {
        e.refresh(ctx.dir, ctx.len, sysctl.timeout_ns(SysctlKey::UdpTimeout), ctx.now);
    }
    PacketVerdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuple::Direction;
    use crate::uapi::{AF_INET6, IPPROTO_UDPLITE};

    const SRC4: [u8; 16] = [10, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const DST4: [u8; 16] = [10, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const SRC6: [u8; 16] = [0x20, 1, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const DST6: [u8; 16] = [0x20, 1, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// RFC 1071 sum, 16 bits at a time (independent of `wire::checksum`).
    fn slow_sum(data: &[u8]) -> u32 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc
    }

    /// A UDPLITE segment of `len` bytes with coverage `cov`, checksummed with a pseudo-header
    /// naming `proto` and `pseudo_len` (IPv4 or IPv6 layout per `family`).
    fn segment(family: u8, len: usize, cov: u16, proto: u8, pseudo_len: usize) -> Vec<u8> {
        let mut seg = vec![0x1b, 0x58, 0x1b, 0x59];
        seg.extend_from_slice(&cov.to_be_bytes());
        seg.extend_from_slice(&[0, 0]);
        seg.extend((0..len - 8).map(|i| (i * 7 + 3) as u8));
        let mut ph = Vec::new();
        if family == AF_INET {
            ph.extend_from_slice(&SRC4[..4]);
            ph.extend_from_slice(&DST4[..4]);
            ph.extend_from_slice(&[0, proto]);
            ph.extend_from_slice(&(pseudo_len as u16).to_be_bytes());
        } else {
            ph.extend_from_slice(&SRC6);
            ph.extend_from_slice(&DST6);
            ph.extend_from_slice(&(pseudo_len as u32).to_be_bytes());
            ph.extend_from_slice(&[0, 0, 0, proto]);
        }
        let covered = if cov == 0 { len } else { usize::from(cov) };
        ph.extend_from_slice(&seg[..covered]);
        let sum = slow_sum(&ph);
        let check = match !(sum as u16) {
            0 => 0xffff,
            c => c,
        };
        seg[6..8].copy_from_slice(&check.to_be_bytes());
        seg
    }

    fn ok(family: u8, seg: &[u8], verify: bool) -> bool {
        let (src, dst) = if family == AF_INET { (&SRC4, &DST4) } else { (&SRC6, &DST6) };
        let ctx = PacketCtx {
            l4: seg,
            l3num: family,
            src,
            dst,
            len: seg.len() + 20,
            dir: Direction::Original,
            now: 0,
            verify_checksum: verify,
        };
        udplite_error(&ctx).is_ok()
    }

    /// What the live kernel (6.18) did with such packets, lengths 8 to 600 and more, coverage
    /// 0, 8, partial and full: over IPv4 it accepts the checksum with the low byte of the
    /// length in the pseudo-header at every length, the UDP-style one (full length) only below
    /// 256 bytes; over IPv6 the other way round; protocol 136 (RFC 3828) never; with checksum
    /// verification off, all of them.
    #[test]
    fn udplite_checksums_as_the_kernel_judges_them() {
        let lengths = (8..=600).chain([767, 768, 769, 1000, 1024, 1280, 1452, 1480, 3000, 65_515]);
        for len in lengths {
            let low = len & 0xff;
            for cov in [0, 8, 8 + (len - 8) / 2, len] {
                let cov = u16::try_from(cov).unwrap();
                for family in [AF_INET, AF_INET6] {
                    let kernel_style = segment(family, len, cov, IPPROTO_UDP, low);
                    let udp_style = segment(family, len, cov, IPPROTO_UDP, len);
                    let rfc3828 = segment(family, len, cov, IPPROTO_UDPLITE, len);
                    let v4 = family == AF_INET;
                    let what = format!("family {family} length {len} coverage {cov}");
                    assert_eq!(ok(family, &kernel_style, true), v4 || len < 256, "low byte, {what}");
                    assert_eq!(ok(family, &udp_style, true), !v4 || len < 256, "UDP-style, {what}");
                    assert!(!ok(family, &rfc3828, true), "RFC 3828, {what}");
                    for seg in [&kernel_style, &udp_style, &rfc3828] {
                        assert!(ok(family, seg, false), "no verification, {what}");
                    }
                }
            }
        }
    }

    #[test]
    fn udplite_pseudo_length() {
        assert_eq!(udplite_pseudo_len(AF_INET, 255), 255);
        assert_eq!(udplite_pseudo_len(AF_INET, 256), 0);
        assert_eq!(udplite_pseudo_len(AF_INET, 300), 44);
        assert_eq!(udplite_pseudo_len(AF_INET6, 300), 300);
    }
}
