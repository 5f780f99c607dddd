"""nfct: Linux netfilter connection tracking in userspace, faithful to the kernel.

The API is named after the kernel's: a packet (:class:`Skb`) enters through
:func:`ipv4_conntrack_in`, which attaches a new, unconfirmed entry to it; only
:func:`ipv4_confirm`, at the end of the packet's path, inserts the entry into the table
(:class:`Net`). Drop the packet in between and the entry never existed.
"""

from __future__ import annotations

from nfct import _nfct
from nfct._nfct import (
    BuiltinHook,
    Conn,
    HookResult,
    HookState,
    Net,
    NfHookOps,
    Skb,
    SysctlMap,
    Tuple,
    ip6_local_out,
    ip_local_out,
    ip_rcv,
    ipv4_confirm,
    ipv4_conntrack_in,
    ipv4_conntrack_local,
    ipv6_confirm,
    ipv6_conntrack_in,
    ipv6_conntrack_local,
    ipv6_rcv,
    nf_register_net_hook,
    nf_unregister_net_hook,
)
from nfct.errors import (
    CaptureError,
    HookError,
    NfctError,
    NfctTypeError,
    NfctValueError,
    UnknownSysctlError,
)

NF_DROP: int = _nfct.NF_DROP
NF_ACCEPT: int = _nfct.NF_ACCEPT
NF_STOLEN: int = _nfct.NF_STOLEN
NF_QUEUE: int = _nfct.NF_QUEUE
NF_REPEAT: int = _nfct.NF_REPEAT
NF_STOP: int = _nfct.NF_STOP

NFPROTO_UNSPEC: int = _nfct.NFPROTO_UNSPEC
NFPROTO_INET: int = _nfct.NFPROTO_INET
NFPROTO_IPV4: int = _nfct.NFPROTO_IPV4
NFPROTO_ARP: int = _nfct.NFPROTO_ARP
NFPROTO_NETDEV: int = _nfct.NFPROTO_NETDEV
NFPROTO_BRIDGE: int = _nfct.NFPROTO_BRIDGE
NFPROTO_IPV6: int = _nfct.NFPROTO_IPV6

NF_INET_PRE_ROUTING: int = _nfct.NF_INET_PRE_ROUTING
NF_INET_LOCAL_IN: int = _nfct.NF_INET_LOCAL_IN
NF_INET_FORWARD: int = _nfct.NF_INET_FORWARD
NF_INET_LOCAL_OUT: int = _nfct.NF_INET_LOCAL_OUT
NF_INET_POST_ROUTING: int = _nfct.NF_INET_POST_ROUTING

NF_IP_PRI_FIRST: int = _nfct.NF_IP_PRI_FIRST
NF_IP_PRI_RAW_BEFORE_DEFRAG: int = _nfct.NF_IP_PRI_RAW_BEFORE_DEFRAG
NF_IP_PRI_CONNTRACK_DEFRAG: int = _nfct.NF_IP_PRI_CONNTRACK_DEFRAG
NF_IP_PRI_RAW: int = _nfct.NF_IP_PRI_RAW
NF_IP_PRI_SELINUX_FIRST: int = _nfct.NF_IP_PRI_SELINUX_FIRST
NF_IP_PRI_CONNTRACK: int = _nfct.NF_IP_PRI_CONNTRACK
NF_IP_PRI_MANGLE: int = _nfct.NF_IP_PRI_MANGLE
NF_IP_PRI_NAT_DST: int = _nfct.NF_IP_PRI_NAT_DST
NF_IP_PRI_FILTER: int = _nfct.NF_IP_PRI_FILTER
NF_IP_PRI_SECURITY: int = _nfct.NF_IP_PRI_SECURITY
NF_IP_PRI_NAT_SRC: int = _nfct.NF_IP_PRI_NAT_SRC
NF_IP_PRI_SELINUX_LAST: int = _nfct.NF_IP_PRI_SELINUX_LAST
NF_IP_PRI_CONNTRACK_HELPER: int = _nfct.NF_IP_PRI_CONNTRACK_HELPER
NF_IP_PRI_CONNTRACK_CONFIRM: int = _nfct.NF_IP_PRI_CONNTRACK_CONFIRM
NF_IP_PRI_LAST: int = _nfct.NF_IP_PRI_LAST

IP_CT_ESTABLISHED: int = _nfct.IP_CT_ESTABLISHED
IP_CT_RELATED: int = _nfct.IP_CT_RELATED
IP_CT_NEW: int = _nfct.IP_CT_NEW
IP_CT_IS_REPLY: int = _nfct.IP_CT_IS_REPLY
IP_CT_ESTABLISHED_REPLY: int = _nfct.IP_CT_ESTABLISHED_REPLY
IP_CT_RELATED_REPLY: int = _nfct.IP_CT_RELATED_REPLY
IP_CT_NUMBER: int = _nfct.IP_CT_NUMBER
IP_CT_UNTRACKED: int = _nfct.IP_CT_UNTRACKED
IP_CT_DIR_ORIGINAL: int = _nfct.IP_CT_DIR_ORIGINAL
IP_CT_DIR_REPLY: int = _nfct.IP_CT_DIR_REPLY

IPS_EXPECTED: int = _nfct.IPS_EXPECTED
IPS_SEEN_REPLY: int = _nfct.IPS_SEEN_REPLY
IPS_ASSURED: int = _nfct.IPS_ASSURED
IPS_CONFIRMED: int = _nfct.IPS_CONFIRMED
IPS_SRC_NAT: int = _nfct.IPS_SRC_NAT
IPS_DST_NAT: int = _nfct.IPS_DST_NAT
IPS_NAT_MASK: int = _nfct.IPS_NAT_MASK
IPS_SEQ_ADJUST: int = _nfct.IPS_SEQ_ADJUST
IPS_SRC_NAT_DONE: int = _nfct.IPS_SRC_NAT_DONE
IPS_DST_NAT_DONE: int = _nfct.IPS_DST_NAT_DONE
IPS_NAT_DONE_MASK: int = _nfct.IPS_NAT_DONE_MASK
IPS_DYING: int = _nfct.IPS_DYING
IPS_FIXED_TIMEOUT: int = _nfct.IPS_FIXED_TIMEOUT
IPS_TEMPLATE: int = _nfct.IPS_TEMPLATE
IPS_UNTRACKED: int = _nfct.IPS_UNTRACKED
IPS_NAT_CLASH: int = _nfct.IPS_NAT_CLASH
IPS_HELPER: int = _nfct.IPS_HELPER
IPS_OFFLOAD: int = _nfct.IPS_OFFLOAD
IPS_HW_OFFLOAD: int = _nfct.IPS_HW_OFFLOAD

SYSCTL_NAMES: list[str] = _nfct.SYSCTL_NAMES

__all__ = [
    "IPS_ASSURED",
    "IPS_CONFIRMED",
    "IPS_DST_NAT",
    "IPS_DST_NAT_DONE",
    "IPS_DYING",
    "IPS_EXPECTED",
    "IPS_FIXED_TIMEOUT",
    "IPS_HELPER",
    "IPS_HW_OFFLOAD",
    "IPS_NAT_CLASH",
    "IPS_NAT_DONE_MASK",
    "IPS_NAT_MASK",
    "IPS_OFFLOAD",
    "IPS_SEEN_REPLY",
    "IPS_SEQ_ADJUST",
    "IPS_SRC_NAT",
    "IPS_SRC_NAT_DONE",
    "IPS_TEMPLATE",
    "IPS_UNTRACKED",
    "IP_CT_DIR_ORIGINAL",
    "IP_CT_DIR_REPLY",
    "IP_CT_ESTABLISHED",
    "IP_CT_ESTABLISHED_REPLY",
    "IP_CT_IS_REPLY",
    "IP_CT_NEW",
    "IP_CT_NUMBER",
    "IP_CT_RELATED",
    "IP_CT_RELATED_REPLY",
    "IP_CT_UNTRACKED",
    "NFPROTO_ARP",
    "NFPROTO_BRIDGE",
    "NFPROTO_INET",
    "NFPROTO_IPV4",
    "NFPROTO_IPV6",
    "NFPROTO_NETDEV",
    "NFPROTO_UNSPEC",
    "NF_ACCEPT",
    "NF_DROP",
    "NF_INET_FORWARD",
    "NF_INET_LOCAL_IN",
    "NF_INET_LOCAL_OUT",
    "NF_INET_POST_ROUTING",
    "NF_INET_PRE_ROUTING",
    "NF_IP_PRI_CONNTRACK",
    "NF_IP_PRI_CONNTRACK_CONFIRM",
    "NF_IP_PRI_CONNTRACK_DEFRAG",
    "NF_IP_PRI_CONNTRACK_HELPER",
    "NF_IP_PRI_FILTER",
    "NF_IP_PRI_FIRST",
    "NF_IP_PRI_LAST",
    "NF_IP_PRI_MANGLE",
    "NF_IP_PRI_NAT_DST",
    "NF_IP_PRI_NAT_SRC",
    "NF_IP_PRI_RAW",
    "NF_IP_PRI_RAW_BEFORE_DEFRAG",
    "NF_IP_PRI_SECURITY",
    "NF_IP_PRI_SELINUX_FIRST",
    "NF_IP_PRI_SELINUX_LAST",
    "NF_QUEUE",
    "NF_REPEAT",
    "NF_STOLEN",
    "NF_STOP",
    "SYSCTL_NAMES",
    "BuiltinHook",
    "CaptureError",
    "Conn",
    "HookError",
    "HookResult",
    "HookState",
    "Net",
    "NfHookOps",
    "NfctError",
    "NfctTypeError",
    "NfctValueError",
    "Skb",
    "SysctlMap",
    "Tuple",
    "UnknownSysctlError",
    "ip6_local_out",
    "ip_local_out",
    "ip_rcv",
    "ipv4_confirm",
    "ipv4_conntrack_in",
    "ipv4_conntrack_local",
    "ipv6_confirm",
    "ipv6_conntrack_in",
    "ipv6_conntrack_local",
    "ipv6_rcv",
    "nf_register_net_hook",
    "nf_unregister_net_hook",
]
