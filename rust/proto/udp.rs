//! UDP and UDPLITE (`nf_conntrack_proto_udp.c`, spec §8).

use super::{PacketCtx, PacketVerdict, ProtoState};
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::uapi::IPPROTO_UDP;
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
    // The kernel verifies UDP-Lite against a pseudo-header naming protocol 17, not 136
    // (udplite_error hands IPPROTO_UDP to nf_checksum_partial): a packet checksummed as RFC
    // 3828 says is INVALID with nf_conntrack_checksum=1, one checksummed as UDP passes.
    // Observed on 6.18 with nfct.kernel; nfct keeps the kernel's behaviour.
    if ctx.verify_checksum && !checksum::partial_ok(ctx.l3num, ctx.src, ctx.dst, IPPROTO_UDP, ctx.l4, cscov) {
        return Err("nf_ct_udplite: bad checksum");
    }
    Ok(())
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
