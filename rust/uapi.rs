//! The kernel's numbers, as its uapi headers define them: address families, IP protocols,
//! netfilter verdicts, protocol families, inet hooks and their priorities, ctinfo, directions,
//! status bits, event bits and the `ct state` bits nft matches.
//!
//! The leaf of the crate: it depends on nothing, and every module takes its numbers from here
//! rather than writing them as literals. Each group is also a `(name, value)` table ([`GROUPS`])
//! so the Python binding exports them with one loop.

// --- Address families and IP protocols (linux/socket.h, linux/in.h) ---------------------------

/// AF_INET, as `nf_conntrack_tuple.src.l3num` stores it.
pub const AF_INET: u8 = 2;
/// AF_INET6.
pub const AF_INET6: u8 = 10;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IGMP: u8 = 2;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_DCCP: u8 = 33;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ESP: u8 = 50;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

// --- Verdicts (linux/netfilter.h) -------------------------------------------------------------

pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;
pub const NF_STOLEN: u32 = 2;
pub const NF_QUEUE: u32 = 3;
pub const NF_REPEAT: u32 = 4;
pub const NF_STOP: u32 = 5;

// --- Protocol families (linux/netfilter.h) ----------------------------------------------------

pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_ARP: u8 = 3;
pub const NFPROTO_NETDEV: u8 = 5;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

// --- Hooks (`enum nf_inet_hooks`) --------------------------------------------------------------

/// Netfilter inet hook numbers (`enum nf_inet_hooks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    PreRouting = 0,
    LocalIn = 1,
    Forward = 2,
    LocalOut = 3,
    PostRouting = 4,
}

impl Hook {
    /// The five hooks, by number.
    pub const ALL: [Hook; 5] =
        [Hook::PreRouting, Hook::LocalIn, Hook::Forward, Hook::LocalOut, Hook::PostRouting];

    /// The hook of a number, if it is one of the five inet hooks.
    pub fn from_num(n: u32) -> Option<Hook> {
        Hook::ALL.get(n as usize).copied()
    }

    /// The name nft uses for the hook (`prerouting`, `input`, ...).
    pub fn nft_name(self) -> &'static str {
        match self {
            Hook::PreRouting => "prerouting",
            Hook::LocalIn => "input",
            Hook::Forward => "forward",
            Hook::LocalOut => "output",
            Hook::PostRouting => "postrouting",
        }
    }
}

pub const NF_INET_PRE_ROUTING: u32 = Hook::PreRouting as u32;
pub const NF_INET_LOCAL_IN: u32 = Hook::LocalIn as u32;
pub const NF_INET_FORWARD: u32 = Hook::Forward as u32;
pub const NF_INET_LOCAL_OUT: u32 = Hook::LocalOut as u32;
pub const NF_INET_POST_ROUTING: u32 = Hook::PostRouting as u32;

// --- Priorities (`enum nf_ip_hook_priorities`; IPv6 has the same numbers) --------------------

pub const NF_IP_PRI_FIRST: i32 = i32::MIN;
pub const NF_IP_PRI_RAW_BEFORE_DEFRAG: i32 = -450;
pub const NF_IP_PRI_CONNTRACK_DEFRAG: i32 = -400;
pub const NF_IP_PRI_RAW: i32 = -300;
pub const NF_IP_PRI_SELINUX_FIRST: i32 = -225;
pub const NF_IP_PRI_CONNTRACK: i32 = -200;
pub const NF_IP_PRI_MANGLE: i32 = -150;
pub const NF_IP_PRI_NAT_DST: i32 = -100;
pub const NF_IP_PRI_FILTER: i32 = 0;
pub const NF_IP_PRI_SECURITY: i32 = 50;
pub const NF_IP_PRI_NAT_SRC: i32 = 100;
pub const NF_IP_PRI_SELINUX_LAST: i32 = 225;
pub const NF_IP_PRI_CONNTRACK_HELPER: i32 = 300;
pub const NF_IP_PRI_CONNTRACK_CONFIRM: i32 = i32::MAX;
pub const NF_IP_PRI_LAST: i32 = i32::MAX;

// --- ctinfo and directions (`enum ip_conntrack_info`, `enum ip_conntrack_dir`) -----------------

pub const IP_CT_ESTABLISHED: u8 = 0;
pub const IP_CT_RELATED: u8 = 1;
pub const IP_CT_NEW: u8 = 2;
pub const IP_CT_IS_REPLY: u8 = 3;
pub const IP_CT_ESTABLISHED_REPLY: u8 = 3;
pub const IP_CT_RELATED_REPLY: u8 = 4;
pub const IP_CT_NUMBER: u8 = 5;
pub const IP_CT_UNTRACKED: u8 = 7;

pub const IP_CT_DIR_ORIGINAL: u8 = 0;
pub const IP_CT_DIR_REPLY: u8 = 1;

// --- Status bits (`enum ip_conntrack_status`) -------------------------------------------------

pub const IPS_EXPECTED: u32 = 1 << 0;
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;
pub const IPS_NAT_MASK: u32 = IPS_SRC_NAT | IPS_DST_NAT;
pub const IPS_SEQ_ADJUST: u32 = 1 << 6;
pub const IPS_SRC_NAT_DONE: u32 = 1 << 7;
pub const IPS_DST_NAT_DONE: u32 = 1 << 8;
pub const IPS_NAT_DONE_MASK: u32 = IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE;
pub const IPS_DYING: u32 = 1 << 9;
pub const IPS_FIXED_TIMEOUT: u32 = 1 << 10;
pub const IPS_TEMPLATE: u32 = 1 << 11;
pub const IPS_UNTRACKED: u32 = 1 << 12;
/// Shares its bit with IPS_UNTRACKED (the kernel reuses it on entries, which are never
/// untracked).
pub const IPS_NAT_CLASH: u32 = IPS_UNTRACKED;
pub const IPS_HELPER: u32 = 1 << 13;
pub const IPS_OFFLOAD: u32 = 1 << 14;
pub const IPS_HW_OFFLOAD: u32 = 1 << 15;

// --- Event bits (`enum ip_conntrack_events`) --------------------------------------------------

pub const IPCT_NEW: u16 = 1 << 0;
pub const IPCT_RELATED: u16 = 1 << 1;
pub const IPCT_DESTROY: u16 = 1 << 2;
pub const IPCT_REPLY: u16 = 1 << 3;
pub const IPCT_ASSURED: u16 = 1 << 4;
pub const IPCT_PROTOINFO: u16 = 1 << 5;
pub const IPCT_HELPER: u16 = 1 << 6;
pub const IPCT_MARK: u16 = 1 << 7;
pub const IPCT_SEQADJ: u16 = 1 << 8;
pub const IPCT_SECMARK: u16 = 1 << 9;
pub const IPCT_LABEL: u16 = 1 << 10;
pub const IPCT_SYNPROXY: u16 = 1 << 11;

// --- `ct state` bits nft and iptables match (`NF_CT_STATE_*_BIT`, spec §1.4) ------------------

pub const NF_CT_STATE_INVALID_BIT: u32 = 1;
pub const NF_CT_STATE_ESTABLISHED_BIT: u32 = 1 << IP_CT_ESTABLISHED << 1;
pub const NF_CT_STATE_RELATED_BIT: u32 = 1 << IP_CT_RELATED << 1;
pub const NF_CT_STATE_NEW_BIT: u32 = 1 << IP_CT_NEW << 1;
pub const NF_CT_STATE_UNTRACKED_BIT: u32 = 1 << 6;

// --- The groups as tables ---------------------------------------------------------------------

/// How a group's values combine: one value at a time, or bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Enum,
    Flags,
}

/// One group of constants: its name as a Python enum, how it combines, and its members in
/// the kernel's order (aliases, equal values under another name, included).
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub name: &'static str,
    pub kind: Kind,
    pub members: &'static [(&'static str, i64)],
}

macro_rules! table {
    ($($c:ident),* $(,)?) => { &[$((stringify!($c), $c as i64)),*] };
}

pub const VERDICTS: Group = Group {
    name: "Verdict",
    kind: Kind::Enum,
    members: table![NF_DROP, NF_ACCEPT, NF_STOLEN, NF_QUEUE, NF_REPEAT, NF_STOP],
};

pub const NFPROTOS: Group = Group {
    name: "NfProto",
    kind: Kind::Enum,
    members: table![
        NFPROTO_UNSPEC,
        NFPROTO_INET,
        NFPROTO_IPV4,
        NFPROTO_ARP,
        NFPROTO_NETDEV,
        NFPROTO_BRIDGE,
        NFPROTO_IPV6
    ],
};

pub const INET_HOOKS: Group = Group {
    name: "InetHook",
    kind: Kind::Enum,
    members: table![
        NF_INET_PRE_ROUTING,
        NF_INET_LOCAL_IN,
        NF_INET_FORWARD,
        NF_INET_LOCAL_OUT,
        NF_INET_POST_ROUTING
    ],
};

pub const PRIORITIES: Group = Group {
    name: "Priority",
    kind: Kind::Enum,
    members: table![
        NF_IP_PRI_FIRST,
        NF_IP_PRI_RAW_BEFORE_DEFRAG,
        NF_IP_PRI_CONNTRACK_DEFRAG,
        NF_IP_PRI_RAW,
        NF_IP_PRI_SELINUX_FIRST,
        NF_IP_PRI_CONNTRACK,
        NF_IP_PRI_MANGLE,
        NF_IP_PRI_NAT_DST,
        NF_IP_PRI_FILTER,
        NF_IP_PRI_SECURITY,
        NF_IP_PRI_NAT_SRC,
        NF_IP_PRI_SELINUX_LAST,
        NF_IP_PRI_CONNTRACK_HELPER,
        NF_IP_PRI_CONNTRACK_CONFIRM,
        NF_IP_PRI_LAST
    ],
};

pub const CTINFOS: Group = Group {
    name: "CtInfo",
    kind: Kind::Enum,
    members: table![
        IP_CT_ESTABLISHED,
        IP_CT_RELATED,
        IP_CT_NEW,
        IP_CT_IS_REPLY,
        IP_CT_ESTABLISHED_REPLY,
        IP_CT_RELATED_REPLY,
        IP_CT_NUMBER,
        IP_CT_UNTRACKED
    ],
};

pub const DIRECTIONS: Group =
    Group { name: "CtDir", kind: Kind::Enum, members: table![IP_CT_DIR_ORIGINAL, IP_CT_DIR_REPLY] };

pub const STATUS: Group = Group {
    name: "Status",
    kind: Kind::Flags,
    members: table![
        IPS_EXPECTED,
        IPS_SEEN_REPLY,
        IPS_ASSURED,
        IPS_CONFIRMED,
        IPS_SRC_NAT,
        IPS_DST_NAT,
        IPS_NAT_MASK,
        IPS_SEQ_ADJUST,
        IPS_SRC_NAT_DONE,
        IPS_DST_NAT_DONE,
        IPS_NAT_DONE_MASK,
        IPS_DYING,
        IPS_FIXED_TIMEOUT,
        IPS_TEMPLATE,
        IPS_UNTRACKED,
        IPS_NAT_CLASH,
        IPS_HELPER,
        IPS_OFFLOAD,
        IPS_HW_OFFLOAD
    ],
};

pub const EVENTS: Group = Group {
    name: "CtEvent",
    kind: Kind::Flags,
    members: table![
        IPCT_NEW,
        IPCT_RELATED,
        IPCT_DESTROY,
        IPCT_REPLY,
        IPCT_ASSURED,
        IPCT_PROTOINFO,
        IPCT_HELPER,
        IPCT_MARK,
        IPCT_SEQADJ,
        IPCT_SECMARK,
        IPCT_LABEL,
        IPCT_SYNPROXY
    ],
};

pub const IPPROTOS: Group = Group {
    name: "IpProto",
    kind: Kind::Enum,
    members: table![
        IPPROTO_ICMP,
        IPPROTO_IGMP,
        IPPROTO_TCP,
        IPPROTO_UDP,
        IPPROTO_DCCP,
        IPPROTO_GRE,
        IPPROTO_ESP,
        IPPROTO_AH,
        IPPROTO_ICMPV6,
        IPPROTO_SCTP,
        IPPROTO_UDPLITE
    ],
};

/// Every group the Python module exports.
pub const GROUPS: &[Group] =
    &[VERDICTS, NFPROTOS, INET_HOOKS, PRIORITIES, CTINFOS, DIRECTIONS, STATUS, EVENTS, IPPROTOS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values() {
        // A few values checked against the uapi headers by hand.
        assert_eq!((NF_CT_STATE_ESTABLISHED_BIT, NF_CT_STATE_RELATED_BIT, NF_CT_STATE_NEW_BIT), (2, 4, 8));
        assert_eq!(IPS_HW_OFFLOAD, 0x8000);
        assert_eq!(Hook::from_num(4), Some(Hook::PostRouting));
        assert_eq!(Hook::from_num(5), None);
        let names: Vec<&str> = GROUPS.iter().flat_map(|g| g.members.iter().map(|m| m.0)).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a constant name appears in two groups");
    }
}
