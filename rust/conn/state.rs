//! The protocol-private state an entry carries (`union nf_conntrack_proto`, and the
//! `nf_conntrack_tcp.h` / `nf_conntrack_sctp.h` structs): data only. The trackers (`proto`)
//! hold the logic and act on the entry, which holds this state.

/// TCP's state (`struct ip_ct_tcp`).
pub mod tcp {
    /// `enum tcp_conntrack`, and the names conntrack prints.
    pub const NONE: u8 = 0;
    pub const SYN_SENT: u8 = 1;
    pub const SYN_RECV: u8 = 2;
    pub const ESTABLISHED: u8 = 3;
    pub const FIN_WAIT: u8 = 4;
    pub const CLOSE_WAIT: u8 = 5;
    pub const LAST_ACK: u8 = 6;
    pub const TIME_WAIT: u8 = 7;
    pub const CLOSE: u8 = 8;
    pub const SYN_SENT2: u8 = 9;

    pub const STATE_NAMES: [&str; 10] = [
        "NONE",
        "SYN_SENT",
        "SYN_RECV",
        "ESTABLISHED",
        "FIN_WAIT",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSE",
        "SYN_SENT2",
    ];

    /// Per-direction flags (`IP_CT_TCP_FLAG_*`).
    pub const FLAG_WINDOW_SCALE: u8 = 0x01;
    pub const FLAG_SACK_PERM: u8 = 0x02;
    pub const FLAG_CLOSE_INIT: u8 = 0x04;
    pub const FLAG_BE_LIBERAL: u8 = 0x08;
    pub const FLAG_DATA_UNACKNOWLEDGED: u8 = 0x10;
    pub const FLAG_MAXACK_SET: u8 = 0x20;
    pub const FLAG_EXP_CHALLENGE_ACK: u8 = 0x40;
    pub const FLAG_SIMULTANEOUS_OPEN: u8 = 0x80;

    /// `struct ip_ct_tcp_state`: what window tracking knows of one direction's sender.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TcpDir {
        pub td_end: u32,
        pub td_maxend: u32,
        pub td_maxwin: u32,
        pub td_maxack: u32,
        pub td_scale: u8,
        pub flags: u8,
    }

    /// `struct ip_ct_tcp`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TcpState {
        pub seen: [TcpDir; 2],
        /// The state (`enum tcp_conntrack`).
        pub state: u8,
        // The rest are `ip_ct_tcp`'s retransmission counting (`retrans` and the direction,
        // index, sequence, ack and end of the last packet) and its ignore tracking (the window,
        // window scale and flags of the packet the table said to ignore).
        pub last_dir: u8,
        pub retrans: u8,
        pub last_index: u8,
        pub last_seq: u32,
        pub last_ack: u32,
        pub last_end: u32,
        pub last_win: u16,
        pub last_wscale: u8,
        pub last_flags: u8,
    }

    impl TcpState {
        /// The state name conntrack prints.
        pub fn name(&self) -> &'static str {
            STATE_NAMES.get(usize::from(self.state)).copied().unwrap_or("NONE")
        }
    }
}

/// SCTP's state (`struct ip_ct_sctp`).
pub mod sctp {
    /// `enum sctp_conntrack`.
    pub const NONE: u8 = 0;
    pub const CLOSED: u8 = 1;
    pub const COOKIE_WAIT: u8 = 2;
    pub const COOKIE_ECHOED: u8 = 3;
    pub const ESTABLISHED: u8 = 4;
    pub const SHUTDOWN_SENT: u8 = 5;
    pub const SHUTDOWN_RECD: u8 = 6;
    pub const SHUTDOWN_ACK_SENT: u8 = 7;
    pub const HEARTBEAT_SENT: u8 = 8;
    /// `SCTP_CONNTRACK_HEARTBEAT_ACKED`: kept in the enum, never entered.
    pub const HEARTBEAT_ACKED: u8 = 9;

    /// The names conntrack prints (`sctp_conntrack_names`).
    pub const STATE_NAMES: [&str; 9] = [
        "NONE",
        "CLOSED",
        "COOKIE_WAIT",
        "COOKIE_ECHOED",
        "ESTABLISHED",
        "SHUTDOWN_SENT",
        "SHUTDOWN_RECD",
        "SHUTDOWN_ACK_SENT",
        "HEARTBEAT_SENT",
    ];

    /// `SCTP_FLAG_HEARTBEAT_VTAG_FAILED`.
    pub const FLAG_HEARTBEAT_VTAG_FAILED: u8 = 1;

    /// `struct ip_ct_sctp`. Tags are kept as the numbers the wire carries (big-endian read).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct SctpState {
        pub state: u8,
        /// The tag each direction's packets must carry.
        pub vtag: [u32; 2],
        /// Whether an INIT was seen from each direction (cleared by COOKIE_ACK).
        pub init: [bool; 2],
        /// `SCTP_FLAG_HEARTBEAT_VTAG_FAILED`.
        pub flags: u8,
        /// The direction of the HEARTBEAT whose tag failed.
        pub last_dir: u8,
    }

    impl SctpState {
        /// The state name conntrack prints.
        pub fn name(&self) -> &'static str {
            STATE_NAMES.get(usize::from(self.state)).copied().unwrap_or("NONE")
        }
    }
}

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
