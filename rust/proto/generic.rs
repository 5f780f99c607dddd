//! The generic tracker (any protocol without its own, spec §10.1) and GRE (spec §10.2).

use super::{PacketCtx, PacketVerdict, ProtoState};
use crate::sysctl::{Sx, Sysctl};
use crate::table::entry::{Entry, IPCT_ASSURED, IPS_ASSURED, IPS_NAT_CLASH, IPS_SEEN_REPLY};

/// `generic_packet`: every packet refreshes the generic timeout; never ASSURED.
pub fn generic_packet(e: &mut Entry, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    e.refresh(ctx.dir, ctx.len, sysctl.timeout_ns(Sx::GenericTimeout), ctx.now);
    PacketVerdict::Accept
}

/// `gre_packet`: the timeouts are copied into the entry on its first packet; after a reply
/// every packet gives the stream timeout and ASSURED.
pub fn gre_packet(e: &mut Entry, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    if !e.confirmed() {
        e.proto = ProtoState::Gre {
            timeout: sysctl.get(Sx::GreTimeout) as u32,
            stream_timeout: sysctl.get(Sx::GreTimeoutStream) as u32,
        };
    }
    let (timeout, stream_timeout) = match e.proto {
        ProtoState::Gre { timeout, stream_timeout } => (timeout, stream_timeout),
        _ => (sysctl.get(Sx::GreTimeout) as u32, sysctl.get(Sx::GreTimeoutStream) as u32),
    };
    if e.status & IPS_SEEN_REPLY != 0 {
        e.refresh(ctx.dir, ctx.len, u64::from(stream_timeout) * 1_000_000_000, ctx.now);
        if e.status & IPS_NAT_CLASH == 0 {
            e.set_status(IPS_ASSURED, IPCT_ASSURED);
        }
    } else {
        e.refresh(ctx.dir, ctx.len, u64::from(timeout) * 1_000_000_000, ctx.now);
    }
    PacketVerdict::Accept
}
