//! ICMP and ICMPv6 (`nf_conntrack_proto_icmp.c`, `nf_conntrack_proto_icmpv6.c`, spec §9).

use super::{PacketCtx, PacketVerdict};
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::uapi::{IPPROTO_ICMP, IPPROTO_ICMPV6};
use crate::wire::{checksum, l4};

/// What the error pre-processing (`nf_conntrack_icmpv4_error` / `icmpv6_error`) decided,
/// before any lookup of the packet's own tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpPre {
    /// Not an error message: track it like any other packet.
    Continue,
    /// Malformed: INVALID, counted in `error` (not `invalid`).
    Error(&'static str),
    /// An error message: look up the connection of the packet it quotes, at this offset of
    /// the L4 slice.
    Related { inner_off: usize },
    /// ICMPv6 neighbour discovery / MLD: marked untracked.
    Untracked,
}

/// ICMPv4 types conntrack treats as errors quoting a packet.
fn icmp_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

/// `nf_conntrack_icmpv4_error`.
pub fn icmpv4_error(ctx: &PacketCtx<'_>) -> IcmpPre {
    let Some(h) = l4::icmp(ctx.l4) else { return IcmpPre::Error("nf_ct_icmp: short packet") };
    if ctx.verify_checksum && !checksum::l4_ok(ctx.l3num, ctx.src, ctx.dst, IPPROTO_ICMP, ctx.l4) {
        return IcmpPre::Error("nf_ct_icmp: bad HW ICMP checksum");
    }
    if h.typ > 18 {
        return IcmpPre::Error("nf_ct_icmp: invalid ICMP type");
    }
    if !icmp_is_error(h.typ) {
        return IcmpPre::Continue;
    }
    IcmpPre::Related { inner_off: 8 }
}

/// `nf_conntrack_icmpv6_error`.
pub fn icmpv6_error(ctx: &PacketCtx<'_>, hop_limit: u8) -> IcmpPre {
    let Some(h) = l4::icmp(ctx.l4) else { return IcmpPre::Error("nf_ct_icmpv6: short packet") };
    if ctx.verify_checksum && !checksum::l4_ok(ctx.l3num, ctx.src, ctx.dst, IPPROTO_ICMPV6, ctx.l4) {
        return IcmpPre::Error("nf_ct_icmpv6: ICMPv6 checksum failed");
    }
    match h.typ {
        130..=136 | 143 | 151 | 152 => IcmpPre::Untracked,
        137 if h.code == 0 => icmpv6_redirect(ctx, hop_limit),
        128.. => IcmpPre::Continue,
        _ => IcmpPre::Related { inner_off: 8 },
    }
}

/// An ICMPv6 redirect must come from a link-local router with hop limit 255 and carry a
/// redirected-header option, whose quoted packet is then looked up like an error's.
fn icmpv6_redirect(ctx: &PacketCtx<'_>, hop_limit: u8) -> IcmpPre {
    let link_local = ctx.src[0] == 0xfe && ctx.src[1] & 0xc0 == 0x80;
    if hop_limit != 255 || !link_local {
        return IcmpPre::Error("nf_ct_icmpv6: invalid redirect");
    }
    // 8-byte header, then target and destination addresses, then options.
    let mut off = 40;
    while let (Some(&typ), Some(&len)) = (ctx.l4.get(off), ctx.l4.get(off + 1)) {
        let bytes = usize::from(len) * 8;
        if bytes == 0 {
            break;
        }
        if typ == 4 {
            // Redirected header: 8 bytes of option header, then the quoted packet.
            return IcmpPre::Related { inner_off: off + 8 };
        }
        off += bytes;
    }
    IcmpPre::Error("nf_ct_icmpv6: redirect without redirected header")
}

/// Request types that may open an ICMP entry (`valid_new`).
fn icmp_valid_new(t: u8) -> bool {
    matches!(t, 8 | 13 | 15 | 17)
}

/// Request types that may open an ICMPv6 entry.
fn icmpv6_valid_new(t: u8) -> bool {
    matches!(t, 128 | 139)
}

/// `nf_conntrack_icmp_packet` / `icmpv6_packet`: only requests create entries; every accepted
/// packet refreshes the timeout; never ASSURED.
pub fn icmp_packet(e: &mut Conn, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    let v6 = e.orig.protonum == IPPROTO_ICMPV6;
    if !e.confirmed() {
        let t = e.orig.icmp_type();
        let ok = if v6 { icmpv6_valid_new(t) } else { icmp_valid_new(t) };
        if !ok {
            return PacketVerdict::Invalid(if v6 {
                "nf_ct_icmpv6: invalid new with type"
            } else {
                "nf_ct_icmp: invalid new with type"
            });
        }
    }
    let timeout = sysctl.timeout_ns(if v6 { SysctlKey::Icmpv6Timeout } else { SysctlKey::IcmpTimeout });
    e.refresh(ctx.dir, ctx.len, timeout, ctx.now);
    PacketVerdict::Accept
}
