//! The generic tracker (any protocol without its own, spec §10.1).

use super::{PacketCtx, PacketVerdict};
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};

/// `generic_packet`: every packet refreshes the generic timeout; never ASSURED.
pub fn generic_packet(e: &mut Conn, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    e.refresh(ctx.dir, ctx.len, sysctl.timeout_ns(SysctlKey::GenericTimeout), ctx.now);
    PacketVerdict::Accept
}
