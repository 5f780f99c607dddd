//! GRE (`nf_conntrack_proto_gre.c`, spec §10.2): keys in the tuple (`tuple::get_tuple`),
//! timeouts copied into the entry on its first packet.

use super::{PacketCtx, PacketVerdict, ProtoState};
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::uapi::{IPCT_ASSURED, IPS_ASSURED, IPS_NAT_CLASH, IPS_SEEN_REPLY};

/// `gre_packet`: the timeouts are copied into the entry on its first packet; after a reply
/// every packet gives the stream timeout and ASSURED.
pub fn gre_packet(e: &mut Conn, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    if !e.confirmed() {
        e.proto = ProtoState::Gre {
            timeout: sysctl.get(SysctlKey::GreTimeout) as u32,
            stream_timeout: sysctl.get(SysctlKey::GreTimeoutStream) as u32,
        };
    }
    let (timeout, stream_timeout) = match e.proto {
        ProtoState::Gre { timeout, stream_timeout } => (timeout, stream_timeout),
        _ => (sysctl.get(SysctlKey::GreTimeout) as u32, sysctl.get(SysctlKey::GreTimeoutStream) as u32),
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
