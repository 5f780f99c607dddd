//! One tracker per L4 protocol (`struct nf_conntrack_l4proto`): the checks a packet must pass,
//! the protocol's part of the tuple, and what an accepted packet does to its entry.

pub mod generic;
pub mod icmp;
pub mod sctp;
pub mod tcp;
pub mod udp;

use crate::format::ProtoView;
use crate::sysctl::Sysctl;
use crate::table::entry::Entry;
use crate::tuple::Direction;

/// Protocol-private state of an entry (`union nf_conntrack_proto`). The TCP and SCTP states
/// live out of line so that every other entry stays small (16 bytes here instead of 56).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProtoState {
    #[default]
    None,
    /// UDP/UDPLITE: the time (ns) after which a replied flow counts as a stream.
    Udp { stream_ts: u64 },
    /// GRE: the timeouts copied into the entry on its first packet, in seconds.
    Gre { timeout: u32, stream_timeout: u32 },
    /// TCP: the state machine and window tracking.
    Tcp(Box<tcp::TcpState>),
    /// SCTP: the state machine and verification tags.
    Sctp(Box<sctp::SctpState>),
}

impl ProtoState {
    /// What the listings print for this state.
    pub fn view(&self) -> ProtoView {
        match self {
            ProtoState::None | ProtoState::Udp { .. } => ProtoView::None,
            &ProtoState::Gre { timeout, stream_timeout } => ProtoView::Gre { timeout, stream_timeout },
            ProtoState::Tcp(st) => ProtoView::Tcp(st.name()),
            ProtoState::Sctp(st) => ProtoView::Sctp(st.name()),
        }
    }

    /// Stores a TCP state, reusing the entry's box when it has one.
    pub fn set_tcp(&mut self, st: tcp::TcpState) {
        match self {
            ProtoState::Tcp(b) => **b = st,
            _ => *self = ProtoState::Tcp(Box::new(st)),
        }
    }

    /// Stores an SCTP state, reusing the entry's box when it has one.
    pub fn set_sctp(&mut self, st: sctp::SctpState) {
        match self {
            ProtoState::Sctp(b) => **b = st,
            _ => *self = ProtoState::Sctp(Box::new(st)),
        }
    }
}

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
    e: &mut Entry,
    ctx: &PacketCtx<'_>,
    sysctl: &Sysctl,
    rst_timeout: tcp::RstTimeout,
) -> PacketVerdict {
    use crate::tuple::*;
    match e.orig.protonum {
        IPPROTO_TCP => tcp::tcp_packet(e, ctx, sysctl, rst_timeout),
        IPPROTO_UDP => udp::udp_packet(e, ctx, sysctl),
        IPPROTO_UDPLITE => udp::udplite_packet(e, ctx, sysctl),
        IPPROTO_SCTP => sctp::sctp_packet(e, ctx, sysctl),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => icmp::icmp_packet(e, ctx, sysctl),
        IPPROTO_GRE => generic::gre_packet(e, ctx, sysctl),
        _ => generic::generic_packet(e, ctx, sysctl),
    }
}
