//! One tracker per L4 protocol (`struct nf_conntrack_l4proto`): the checks a packet must pass,
//! the protocol's part of the tuple, and what an accepted packet does to its entry.

pub mod generic;
pub mod gre;
pub mod icmp;
pub mod sctp;
pub mod tcp;
pub mod udp;

pub use crate::conn::state::ProtoState;
use crate::conn::Conn;
use crate::sysctl::Sysctl;
use crate::tuple::Direction;

/// A tracker's verdict on one packet (`nf_conntrack_handle_packet`'s return convention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketVerdict {
    /// NF_ACCEPT: the packet is fine.
    Accept,
    /// -NF_ACCEPT: invalid for the tracker; the reason is the kernel's log message.
    Invalid(&'static str),
    /// NF_ACCEPT, and the entry is deleted now (`nf_ct_kill_acct`: a TCP RST before any reply).
    Kill,
    /// -NF_REPEAT: delete the entry and look the packet up again (a TCP reopen).
    Repeat,
}

/// What a tracker sees of the packet being processed.
#[derive(Clone, Copy, Debug)]
pub struct PacketCtx<'a> {
    /// The L4 header and everything after it, as far as the packet goes.
    pub l4: &'a [u8],
    pub l3num: u8,
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    /// The packet's length from its L3 header (what accounting counts).
    pub len: usize,
    pub dir: Direction,
    /// The table's clock, ns.
    pub now: u64,
    /// Whether checksums are verified for this packet (PRE_ROUTING with `nf_conntrack_checksum`).
    pub verify_checksum: bool,
}

/// Dispatches an accepted lookup or a new entry to its protocol's `packet()` handler.
pub fn packet(
    e: &mut Conn,
    ctx: &PacketCtx<'_>,
    sysctl: &Sysctl,
    rst_timeout: tcp::RstTimeout,
) -> PacketVerdict {
    use crate::uapi::{
        IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    };
    match e.orig.protonum {
        IPPROTO_TCP => tcp::tcp_packet(e, ctx, sysctl, rst_timeout),
        IPPROTO_UDP => udp::udp_packet(e, ctx, sysctl),
        IPPROTO_UDPLITE => udp::udplite_packet(e, ctx, sysctl),
        IPPROTO_SCTP => sctp::sctp_packet(e, ctx, sysctl),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => icmp::icmp_packet(e, ctx, sysctl),
        IPPROTO_GRE => gre::gre_packet(e, ctx, sysctl),
        _ => generic::generic_packet(e, ctx, sysctl),
    }
}
