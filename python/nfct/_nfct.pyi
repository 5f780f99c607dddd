"""Type stub of the native module nfct._nfct (hand-written; checked by mypy.stubtest).

The docstrings here are the reference documentation editors and the docs site show."""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address, IPv6Address
from os import PathLike
from typing import Any, Literal, TypeAlias, final

import numpy as np
import numpy.typing as npt

from nfct._types import Clock as _Clock
from nfct._types import Counters, HookOp, PacketResult
from nfct._types import ListFormat as _ListFormat
from nfct._types import ReplayPath as _ReplayPath

_Address: TypeAlias = str | IPv4Address | IPv6Address
_CtState: TypeAlias = Literal["new", "established", "related", "invalid", "untracked"]
_StrPath: TypeAlias = str | PathLike[str]

class Verdict(IntEnum):
    """Netfilter verdicts (``NF_*``, linux/netfilter.h)."""

    NF_DROP = 0
    NF_ACCEPT = 1
    NF_STOLEN = 2
    NF_QUEUE = 3
    NF_REPEAT = 4
    NF_STOP = 5

class NfProto(IntEnum):
    """Protocol families of hook registrations (``NFPROTO_*``)."""

    NFPROTO_UNSPEC = 0
    NFPROTO_INET = 1
    NFPROTO_IPV4 = 2
    NFPROTO_ARP = 3
    NFPROTO_NETDEV = 5
    NFPROTO_BRIDGE = 7
    NFPROTO_IPV6 = 10

class InetHook(IntEnum):
    """The five inet hooks (``enum nf_inet_hooks``)."""

    NF_INET_PRE_ROUTING = 0
    NF_INET_LOCAL_IN = 1
    NF_INET_FORWARD = 2
    NF_INET_LOCAL_OUT = 3
    NF_INET_POST_ROUTING = 4

class Priority(IntEnum):
    """Hook priorities (``enum nf_ip_hook_priorities``; IPv6 uses the same numbers)."""

    NF_IP_PRI_FIRST = -2147483648
    NF_IP_PRI_RAW_BEFORE_DEFRAG = -450
    NF_IP_PRI_CONNTRACK_DEFRAG = -400
    NF_IP_PRI_RAW = -300
    NF_IP_PRI_SELINUX_FIRST = -225
    NF_IP_PRI_CONNTRACK = -200
    NF_IP_PRI_MANGLE = -150
    NF_IP_PRI_NAT_DST = -100
    NF_IP_PRI_FILTER = 0
    NF_IP_PRI_SECURITY = 50
    NF_IP_PRI_NAT_SRC = 100
    NF_IP_PRI_SELINUX_LAST = 225
    NF_IP_PRI_CONNTRACK_HELPER = 300
    NF_IP_PRI_CONNTRACK_CONFIRM = 2147483647
    NF_IP_PRI_LAST = 2147483647

class CtInfo(IntEnum):
    """A packet's relation to its entry (``enum ip_conntrack_info``); 7 is untracked."""

    IP_CT_ESTABLISHED = 0
    IP_CT_RELATED = 1
    IP_CT_NEW = 2
    IP_CT_IS_REPLY = 3
    IP_CT_ESTABLISHED_REPLY = 3
    IP_CT_RELATED_REPLY = 4
    IP_CT_NUMBER = 5
    IP_CT_UNTRACKED = 7

class CtDir(IntEnum):
    """Tuple directions (``enum ip_conntrack_dir``)."""

    IP_CT_DIR_ORIGINAL = 0
    IP_CT_DIR_REPLY = 1

class Status(IntFlag):
    """Entry status bits (``enum ip_conntrack_status``), as ``Conn.status`` returns them."""

    IPS_EXPECTED = 1
    IPS_SEEN_REPLY = 2
    IPS_ASSURED = 4
    IPS_CONFIRMED = 8
    IPS_SRC_NAT = 16
    IPS_DST_NAT = 32
    IPS_NAT_MASK = 48
    IPS_SEQ_ADJUST = 64
    IPS_SRC_NAT_DONE = 128
    IPS_DST_NAT_DONE = 256
    IPS_NAT_DONE_MASK = 384
    IPS_DYING = 512
    IPS_FIXED_TIMEOUT = 1024
    IPS_TEMPLATE = 2048
    IPS_UNTRACKED = 4096
    IPS_NAT_CLASH = 4096
    IPS_HELPER = 8192
    IPS_OFFLOAD = 16384
    IPS_HW_OFFLOAD = 32768

class CtEvent(IntFlag):
    """Event bits (``enum ip_conntrack_events``)."""

    IPCT_NEW = 1
    IPCT_RELATED = 2
    IPCT_DESTROY = 4
    IPCT_REPLY = 8
    IPCT_ASSURED = 16
    IPCT_PROTOINFO = 32
    IPCT_HELPER = 64
    IPCT_MARK = 128
    IPCT_SEQADJ = 256
    IPCT_SECMARK = 512
    IPCT_LABEL = 1024
    IPCT_SYNPROXY = 2048

class IpProto(IntEnum):
    """IP protocol numbers conntrack knows."""

    IPPROTO_ICMP = 1
    IPPROTO_IGMP = 2
    IPPROTO_TCP = 6
    IPPROTO_UDP = 17
    IPPROTO_DCCP = 33
    IPPROTO_GRE = 47
    IPPROTO_ESP = 50
    IPPROTO_AH = 51
    IPPROTO_ICMPV6 = 58
    IPPROTO_SCTP = 132
    IPPROTO_UDPLITE = 136

NF_DROP: Literal[Verdict.NF_DROP]
NF_ACCEPT: Literal[Verdict.NF_ACCEPT]
NF_STOLEN: Literal[Verdict.NF_STOLEN]
NF_QUEUE: Literal[Verdict.NF_QUEUE]
NF_REPEAT: Literal[Verdict.NF_REPEAT]
NF_STOP: Literal[Verdict.NF_STOP]
NFPROTO_UNSPEC: Literal[NfProto.NFPROTO_UNSPEC]
NFPROTO_INET: Literal[NfProto.NFPROTO_INET]
NFPROTO_IPV4: Literal[NfProto.NFPROTO_IPV4]
NFPROTO_ARP: Literal[NfProto.NFPROTO_ARP]
NFPROTO_NETDEV: Literal[NfProto.NFPROTO_NETDEV]
NFPROTO_BRIDGE: Literal[NfProto.NFPROTO_BRIDGE]
NFPROTO_IPV6: Literal[NfProto.NFPROTO_IPV6]
NF_INET_PRE_ROUTING: Literal[InetHook.NF_INET_PRE_ROUTING]
NF_INET_LOCAL_IN: Literal[InetHook.NF_INET_LOCAL_IN]
NF_INET_FORWARD: Literal[InetHook.NF_INET_FORWARD]
NF_INET_LOCAL_OUT: Literal[InetHook.NF_INET_LOCAL_OUT]
NF_INET_POST_ROUTING: Literal[InetHook.NF_INET_POST_ROUTING]
NF_IP_PRI_FIRST: Literal[Priority.NF_IP_PRI_FIRST]
NF_IP_PRI_RAW_BEFORE_DEFRAG: Literal[Priority.NF_IP_PRI_RAW_BEFORE_DEFRAG]
NF_IP_PRI_CONNTRACK_DEFRAG: Literal[Priority.NF_IP_PRI_CONNTRACK_DEFRAG]
NF_IP_PRI_RAW: Literal[Priority.NF_IP_PRI_RAW]
NF_IP_PRI_SELINUX_FIRST: Literal[Priority.NF_IP_PRI_SELINUX_FIRST]
NF_IP_PRI_CONNTRACK: Literal[Priority.NF_IP_PRI_CONNTRACK]
NF_IP_PRI_MANGLE: Literal[Priority.NF_IP_PRI_MANGLE]
NF_IP_PRI_NAT_DST: Literal[Priority.NF_IP_PRI_NAT_DST]
NF_IP_PRI_FILTER: Literal[Priority.NF_IP_PRI_FILTER]
NF_IP_PRI_SECURITY: Literal[Priority.NF_IP_PRI_SECURITY]
NF_IP_PRI_NAT_SRC: Literal[Priority.NF_IP_PRI_NAT_SRC]
NF_IP_PRI_SELINUX_LAST: Literal[Priority.NF_IP_PRI_SELINUX_LAST]
NF_IP_PRI_CONNTRACK_HELPER: Literal[Priority.NF_IP_PRI_CONNTRACK_HELPER]
NF_IP_PRI_CONNTRACK_CONFIRM: Literal[Priority.NF_IP_PRI_CONNTRACK_CONFIRM]
NF_IP_PRI_LAST: Literal[Priority.NF_IP_PRI_CONNTRACK_CONFIRM]
IP_CT_ESTABLISHED: Literal[CtInfo.IP_CT_ESTABLISHED]
IP_CT_RELATED: Literal[CtInfo.IP_CT_RELATED]
IP_CT_NEW: Literal[CtInfo.IP_CT_NEW]
IP_CT_IS_REPLY: Literal[CtInfo.IP_CT_IS_REPLY]
IP_CT_ESTABLISHED_REPLY: Literal[CtInfo.IP_CT_IS_REPLY]
IP_CT_RELATED_REPLY: Literal[CtInfo.IP_CT_RELATED_REPLY]
IP_CT_NUMBER: Literal[CtInfo.IP_CT_NUMBER]
IP_CT_UNTRACKED: Literal[CtInfo.IP_CT_UNTRACKED]
IP_CT_DIR_ORIGINAL: Literal[CtDir.IP_CT_DIR_ORIGINAL]
IP_CT_DIR_REPLY: Literal[CtDir.IP_CT_DIR_REPLY]
IPS_EXPECTED: Literal[Status.IPS_EXPECTED]
IPS_SEEN_REPLY: Literal[Status.IPS_SEEN_REPLY]
IPS_ASSURED: Literal[Status.IPS_ASSURED]
IPS_CONFIRMED: Literal[Status.IPS_CONFIRMED]
IPS_SRC_NAT: Literal[Status.IPS_SRC_NAT]
IPS_DST_NAT: Literal[Status.IPS_DST_NAT]
IPS_NAT_MASK: Literal[Status.IPS_NAT_MASK]
IPS_SEQ_ADJUST: Literal[Status.IPS_SEQ_ADJUST]
IPS_SRC_NAT_DONE: Literal[Status.IPS_SRC_NAT_DONE]
IPS_DST_NAT_DONE: Literal[Status.IPS_DST_NAT_DONE]
IPS_NAT_DONE_MASK: Literal[Status.IPS_NAT_DONE_MASK]
IPS_DYING: Literal[Status.IPS_DYING]
IPS_FIXED_TIMEOUT: Literal[Status.IPS_FIXED_TIMEOUT]
IPS_TEMPLATE: Literal[Status.IPS_TEMPLATE]
IPS_UNTRACKED: Literal[Status.IPS_UNTRACKED]
IPS_NAT_CLASH: Literal[Status.IPS_UNTRACKED]
IPS_HELPER: Literal[Status.IPS_HELPER]
IPS_OFFLOAD: Literal[Status.IPS_OFFLOAD]
IPS_HW_OFFLOAD: Literal[Status.IPS_HW_OFFLOAD]
IPCT_NEW: Literal[CtEvent.IPCT_NEW]
IPCT_RELATED: Literal[CtEvent.IPCT_RELATED]
IPCT_DESTROY: Literal[CtEvent.IPCT_DESTROY]
IPCT_REPLY: Literal[CtEvent.IPCT_REPLY]
IPCT_ASSURED: Literal[CtEvent.IPCT_ASSURED]
IPCT_PROTOINFO: Literal[CtEvent.IPCT_PROTOINFO]
IPCT_HELPER: Literal[CtEvent.IPCT_HELPER]
IPCT_MARK: Literal[CtEvent.IPCT_MARK]
IPCT_SEQADJ: Literal[CtEvent.IPCT_SEQADJ]
IPCT_SECMARK: Literal[CtEvent.IPCT_SECMARK]
IPCT_LABEL: Literal[CtEvent.IPCT_LABEL]
IPCT_SYNPROXY: Literal[CtEvent.IPCT_SYNPROXY]
IPPROTO_ICMP: Literal[IpProto.IPPROTO_ICMP]
IPPROTO_IGMP: Literal[IpProto.IPPROTO_IGMP]
IPPROTO_TCP: Literal[IpProto.IPPROTO_TCP]
IPPROTO_UDP: Literal[IpProto.IPPROTO_UDP]
IPPROTO_DCCP: Literal[IpProto.IPPROTO_DCCP]
IPPROTO_GRE: Literal[IpProto.IPPROTO_GRE]
IPPROTO_ESP: Literal[IpProto.IPPROTO_ESP]
IPPROTO_AH: Literal[IpProto.IPPROTO_AH]
IPPROTO_ICMPV6: Literal[IpProto.IPPROTO_ICMPV6]
IPPROTO_SCTP: Literal[IpProto.IPPROTO_SCTP]
IPPROTO_UDPLITE: Literal[IpProto.IPPROTO_UDPLITE]

SYSCTL_NAMES: list[str]
"""Every sysctl a :class:`Net` has, named as in /proc/sys/net/netfilter."""

_LINK_TYPES_DECODED: str
"""The link layers nfct decodes, as its messages list them (internal)."""

def _link_type(linktype: int) -> str:
    """A ``LINKTYPE_*`` number as nfct's messages name it, ``"147 (USER0)"`` (internal: for
    ``nfct replay``'s line on frames of link types nfct does not decode)."""

@final
class SysctlMap:
    """The sysctls of one :class:`Net`, read and written by name as in
    /proc/sys/net/netfilter (``net.sysctl["nf_conntrack_max"] = 1024``). Writing
    ``nf_conntrack_buckets`` resizes the table; ``nf_conntrack_count`` is read-only. Each
    sysctl takes exactly the values the kernel's takes (docs/fidelity.md, "Sysctl ranges"):
    ``nf_conntrack_buckets`` is rounded up to a multiple of 512 and at most 268434944, a
    negative timeout is held as 0; anything else raises NfctValueError naming the sysctl."""

    def __getitem__(self, name: str, /) -> int: ...
    def __setitem__(self, name: str, value: int, /) -> None: ...
    def __contains__(self, name: str, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]: ...
    def items(self) -> list[tuple[str, int]]: ...

@final
class Tuple:
    """A conntrack tuple (``struct nf_conntrack_tuple``): addresses, protocol, and the
    protocol's part. Immutable, hashable, equal by value.

    ``Tuple("10.0.0.1", "10.0.0.2", 6, 40000, 80)`` for TCP, UDP, UDPLITE and SCTP;
    ``Tuple("10.0.0.1", "10.0.0.2", 1, type=8, code=0, id=7)`` for ICMP and ICMPv6;
    ``srckey=``/``dstkey=`` for GRE; addresses and protocol only for the rest. Addresses are
    ``str`` or :mod:`ipaddress` objects, both of one family. The names of the protocol's
    fields are those ``conntrack -L`` prints.
    """

    def __new__(
        cls,
        src: _Address,
        dst: _Address,
        protonum: int,
        sport: int | None = None,
        dport: int | None = None,
        *,
        type: int | None = None,
        code: int | None = None,
        id: int | None = None,
        srckey: int | None = None,
        dstkey: int | None = None,
    ) -> Tuple: ...
    def invert(self) -> Tuple:
        """The tuple of the other direction (``nf_ct_invert_tuple``). ICMP types without a
        reply type cannot be inverted: :class:`~nfct.NfctValueError`."""
    @property
    def src(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def l3num(self) -> int:
        """AF_INET (2) or AF_INET6 (10)."""
    @property
    def protonum(self) -> int: ...
    @property
    def sport(self) -> int | None:
        """The source port (TCP, UDP, UDPLITE, SCTP), else None."""
    @property
    def dport(self) -> int | None:
        """The destination port (TCP, UDP, UDPLITE, SCTP), else None."""
    @property
    def type(self) -> int | None:
        """The ICMP/ICMPv6 type, else None."""
    @property
    def code(self) -> int | None:
        """The ICMP/ICMPv6 code, else None."""
    @property
    def id(self) -> int | None:
        """The ICMP/ICMPv6 echo id, else None."""
    @property
    def srckey(self) -> int | None:
        """The GRE source key, else None."""
    @property
    def dstkey(self) -> int | None:
        """The GRE destination key, else None."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Conn:
    """A live handle on an entry (``struct nf_conn *``): every attribute shows the entry's
    state now. The handle holds a reference, so a deleted entry stays readable (with
    ``IPS_DYING`` set) while a handle on it exists."""

    @property
    def orig(self) -> Tuple:
        """The original-direction tuple."""
    @property
    def reply(self) -> Tuple:
        """The reply-direction tuple."""
    @property
    def status(self) -> Status:
        """The ``IPS_*`` bits (an int: ``conn.status & nfct.IPS_ASSURED`` works)."""
    @property
    def state(self) -> str | None:
        """The protocol state ("ESTABLISHED", "SYN_SENT", ...), None for stateless
        protocols."""
    @property
    def timeout(self) -> int:
        """Whole seconds left, as ``conntrack -L`` prints it."""
    @property
    def proto(self) -> str:
        """ "tcp", "udp", "icmp", ... ("unknown" for protocols without a tracker)."""
    @property
    def mark(self) -> int: ...
    @property
    def zone(self) -> int: ...
    @property
    def counters(self) -> tuple[Counters, Counters] | None:
        """Per-direction ``Counters(packets, bytes)`` (original, reply) when
        ``nf_conntrack_acct`` was on at the entry's creation, else None."""
    def line(self, fmt: _ListFormat = "extended") -> str:
        """This entry as one line of a listing, as :meth:`Net.dump` prints it."""
    def row(self) -> dict[str, Any]:
        """Every field at once, from one snapshot of the entry (each attribute takes its
        own): the columns of :mod:`nfct.export`'s ``entries`` table but ``family`` and
        ``flags``, with ``l3num``."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Skb:
    """A packet (``struct sk_buff``): IPv4 or IPv6 bytes starting at the IP header, its time
    in float seconds, and the state the stack keeps with it."""

    def __new__(cls, data: bytes | bytearray | memoryview, tstamp: float = 0.0) -> Skb: ...
    @property
    def data(self) -> bytes:
        """The bytes as the IP stack sees them: trimmed to the IP length by the receive
        checks, the whole datagram once defragmentation reassembled one."""
    @property
    def tstamp(self) -> float:
        """The packet's time, in seconds."""
    @property
    def nfct(self) -> Conn | None:
        """The attached entry (``skb->_nfct``), or None. Each read takes a new reference."""
    @property
    def ctinfo(self) -> int | None:
        """The ``IP_CT_*`` value, IP_CT_UNTRACKED (7) when untracked, or None."""
    @property
    def invalid_reason(self) -> str | None:
        """Why the packet was INVALID or dropped, as the kernel would log it, else None."""
    @property
    def ctstate(self) -> _CtState:
        """The ``ct state`` an nft rule would see now."""

@final
class ReplayResult:
    """What :meth:`Net.replay` or :meth:`Net.feed` did: the counts ``nfct replay`` prints, as
    attributes and, read-only, by key (``result["packets"]``), the reasons packets were
    INVALID or dropped, the rules that dropped them, and (from :meth:`Net.feed`) each
    packet's result."""

    @property
    def frames(self) -> int:
        """Records read (captures), or packets given (feed)."""
    @property
    def non_ip(self) -> int:
        """Frames of a supported link type that carried no IP packet for the IP stack (ARP,
        IP inside MPLS, ...)."""
    @property
    def packets(self) -> int:
        """IP packets fed to the stack."""
    @property
    def new(self) -> int: ...
    @property
    def established(self) -> int: ...
    @property
    def related(self) -> int: ...
    @property
    def invalid(self) -> int: ...
    @property
    def untracked(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def fragments(self) -> int:
        """Fragments that entered reassembly."""
    @property
    def reassembled(self) -> int: ...
    @property
    def frag_timed_out(self) -> int: ...
    @property
    def frag_dropped(self) -> int: ...
    @property
    def unsupported_link(self) -> int:
        """Frames of a link type nfct does not decode (never looked into; not in
        :attr:`non_ip`)."""
    @property
    def unsupported_links(self) -> dict[int, int]:
        """Those frames by link type (``LINKTYPE_*`` number)."""
    @property
    def reasons(self) -> dict[str, int]:
        """How many packets were INVALID or dropped for each reason (the kernel's words)."""
    @property
    def dropped_by(self) -> dict[str, int]:
        """How many packets each rule dropped or stole, by the rule's name."""
    @property
    def per_packet(self) -> list[PacketResult] | None:
        """Each packet's result, from :meth:`Net.feed`; None from :meth:`Net.replay`."""
    def __getitem__(self, key: str, /) -> Any: ...
    def __contains__(self, key: str, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> list[str]: ...
    def items(self) -> list[tuple[str, Any]]: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def to_dict(self) -> dict[str, Any]:
        """The counts, reasons and rules as a plain dict (``--output json``'s "summary")."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class Net:
    """One network namespace: its conntrack table with the Linux 6.18 defaults (changed by
    ``sysctl``), its netfilter hooks, defrag queues, the addresses the host owns, and its clock
    (float seconds, moved by packets and :meth:`advance_to`, never back).

    ``seed`` fixes the hash key (reproducible bucket placement); ``kernel="6.12"`` follows
    6.12 where it differs from 6.18. ``host`` models a real host instead of nfct's default
    router: a host file (``nfct host-snapshot``) as a path, or its parsed JSON, with its
    interfaces, routes, nftables ruleset and sysctls (``sysctl`` given here wins over the
    file's). ``mtu`` sets the MTU of the default route's interface (of the default router's
    way out, 1500, without a host).
    """

    def __new__(
        cls,
        sysctl: dict[str, int] | None = None,
        *,
        seed: int | None = None,
        kernel: Literal["6.18", "6.12"] = "6.18",
        local_addrs: Sequence[_Address] | None = None,
        host: str | PathLike[str] | dict[str, Any] | None = None,
        mtu: int | None = None,
    ) -> Net: ...
    @classmethod
    def from_host(
        cls,
        host: str | PathLike[str] | dict[str, Any],
        sysctl: dict[str, int] | None = None,
        *,
        seed: int | None = None,
        kernel: Literal["6.18", "6.12"] = "6.18",
        mtu: int | None = None,
    ) -> Net:
        """The same as ``Net(sysctl, host=host, ...)``."""
    @property
    def ignored_sysctls(self) -> list[str]:
        """The host file's sysctls nfct does not apply (it models conntrack's, forwarding and
        rp_filter)."""
    @property
    def interfaces(self) -> list[tuple[int, str, int, bool]]:
        """The host's interfaces: (ifindex, name, mtu, up); none for the default router."""
    def counters(self) -> list[dict[str, Any]]:
        """The ruleset's counters now: ``family``, ``table``, ``chain`` and ``handle`` (a rule's
        counter) or ``name`` (a named counter), ``packets`` and ``bytes``."""
    @property
    def local_addrs(self) -> list[str]:
        """The addresses this host owns, as given."""
    def hooks(self, pf: int, hooknum: int) -> list[tuple[int, str]]:
        """The operations of one family's hook (pf NFPROTO_IPV4 or NFPROTO_IPV6), in the order
        they run: (priority, name) pairs, conntrack's own included."""
    @property
    def sysctl(self) -> SysctlMap:
        """The sysctls, by name as in /proc/sys/net/netfilter."""
    @property
    def count(self) -> int:
        """``nf_conntrack_count``: entries allocated, unconfirmed ones included."""
    @property
    def now(self) -> float:
        """The namespace's clock, in seconds."""
    @property
    def stats(self) -> dict[str, int]:
        """The statistics, with the keys ``conntrack -S`` prints."""
    def advance_to(self, t: float) -> None:
        """Moves the clock forward to ``t`` seconds (absolute; never back)."""
    def advance(self, t: float) -> None:
        """The same as :meth:`advance_to`: the clock moves *to* ``t``, not by it."""
    def gc(self) -> int:
        """Runs the garbage collector now; returns how many entries it reaped."""
    def __iter__(self) -> Iterator[Conn]:
        """The confirmed entries, as ``conntrack -L`` lists them. Listing reaps expired
        entries (with their DESTROY events), as the kernel's does."""
    def __len__(self) -> int:
        """How many entries a listing shows now (it reaps expired ones); :attr:`count` is
        ``nf_conntrack_count``, unconfirmed entries included."""
    def columns(self) -> dict[str, list[Any]]:
        """The table as columns, one list per field of :meth:`Conn.row` (the entries a
        listing shows now, in its order): what :mod:`nfct.export`'s ``entries`` table is
        built from, without a handle per entry."""
    def dump(self, fmt: _ListFormat = "extended") -> str:
        """The table as text: "extended" (``conntrack -L -o extended``), "conntrack"
        (``conntrack -L``) or "proc" (``/proc/net/nf_conntrack``)."""
    def get(self, tuple: Tuple, *, zone: int = 0) -> Conn | None:
        """``conntrack -G``: the entry holding ``tuple`` in either direction, or None."""
    def delete(
        self,
        conn: Conn | None = None,
        *,
        family: Literal["ipv4", "ipv6"] | None = None,
        proto: str | int | None = None,
        src: _Address | None = None,
        dst: _Address | None = None,
        sport: int | None = None,
        dport: int | None = None,
        reply_src: _Address | None = None,
        reply_dst: _Address | None = None,
        reply_sport: int | None = None,
        reply_dport: int | None = None,
        mark: int | None = None,
        mask: int | None = None,
        zone: int | None = None,
        state: str | None = None,
        status: str | int | Sequence[str] | None = None,
    ) -> int:
        """``conntrack -D``: deletes ``conn``, or every entry the filters select (conntrack's
        long options: ``proto`` ("tcp" or a number), ``family``, ``src``/``dst`` and
        ``reply_src``/``reply_dst`` (an address or a prefix "10.0.0.0/8"), ``sport``/``dport``
        and their reply twins, ``mark`` with ``mask``, ``zone``, ``state`` (a TCP or SCTP state
        as listed), ``status`` ("ASSURED,SEEN_REPLY" or bits)); each deleted entry sends its
        DESTROY event. Returns how many entries were deleted."""
    def select(
        self,
        *,
        family: Literal["ipv4", "ipv6"] | None = None,
        proto: str | int | None = None,
        src: _Address | None = None,
        dst: _Address | None = None,
        sport: int | None = None,
        dport: int | None = None,
        reply_src: _Address | None = None,
        reply_dst: _Address | None = None,
        reply_sport: int | None = None,
        reply_dport: int | None = None,
        mark: int | None = None,
        mask: int | None = None,
        zone: int | None = None,
        state: str | None = None,
        status: str | int | Sequence[str] | None = None,
    ) -> list[Conn]:
        """``conntrack -L`` with the filters of :meth:`delete`: the entries they select."""
    def flush(self) -> int:
        """``conntrack -F``: deletes every entry (packets still in flight lose theirs: their
        confirmation fails). Returns how many entries were deleted."""
    def update(
        self,
        *,
        set_mark: int | None = None,
        set_mask: int = 0xFFFFFFFF,
        timeout: int | None = None,
        family: Literal["ipv4", "ipv6"] | None = None,
        proto: str | int | None = None,
        src: _Address | None = None,
        dst: _Address | None = None,
        sport: int | None = None,
        dport: int | None = None,
        reply_src: _Address | None = None,
        reply_dst: _Address | None = None,
        reply_sport: int | None = None,
        reply_dport: int | None = None,
        mark: int | None = None,
        mask: int | None = None,
        zone: int | None = None,
        state: str | None = None,
        status: str | int | Sequence[str] | None = None,
    ) -> int:
        """``conntrack -U``: sets the mark (only the bits of ``set_mask``) and/or the timeout
        (seconds from now) of the entries the filters of :meth:`delete` select; each changed
        entry sends an UPDATE event. Returns how many changed."""
    def load_ruleset(self, host: _StrPath | Mapping[str, Any]) -> None:
        """Replaces the host's nftables ruleset, atomically between two packets: ``host`` is a
        host file (path or dict: its "ruleset" part) or an ``nft -j list ruleset`` document.
        Entries already made keep what they have (NAT bindings included); new connections meet
        the new rules; interfaces, routes and sysctls stay; operations registered from Python
        stay registered."""
    def stats_text(self) -> str:
        """``conntrack -S`` text."""
    def replay(
        self,
        captures: Sequence[_StrPath],
        *,
        clock: _Clock = "capture",
        packets_path: _StrPath | None = None,
        events_path: _StrPath | None = None,
        event_timestamps: bool = False,
        path: _ReplayPath = "forward",
        threads: int = 1,
        iif: str | None = None,
        write_path: _StrPath | None = None,
        at: Sequence[tuple[float, Callable[[Net], object]]] | None = None,
        observe: Callable[[str, Any], object] | None = None,
        observe_batch: int = 65536,
        census_every: float = 1.0,
        keep_evictions: int = 100_000,
        progress: Callable[[int, int], object] | None = None,
    ) -> ReplayResult:
        """Replays captures (pcap or pcapng) through this namespace, every IP packet through
        the hook pipeline as ``nfct replay`` does. ``packets_path`` receives one
        ``N CLASS [REASON]`` line per packet, ``events_path`` the ``conntrack -E -o extended``
        lines ("-" for standard output), ``write_path`` the packets that leave the host
        (forwarded or sent, as NAT rewrote them; a reassembled datagram whole) as a pcap file
        of raw IP packets (the replay then runs on one thread). ``iif`` (with a host) names
        the interface every packet from the wire arrives on (default: the one a pcapng names
        for it, else the host's first interface that is up and not loopback). A capture that
        cannot be read raises :class:`~nfct.CaptureError` after everything before the bad
        record was applied; its ``summary`` holds the result so far. ``threads > 1`` spreads
        packets over workers by a symmetric flow hash (built-in operations only, no events)."""
    def explain(
        self,
        capture: _StrPath,
        frame: int,
        *,
        clock: _Clock = "capture",
        path: _ReplayPath = "forward",
        iif: str | None = None,
    ) -> dict[str, Any]:
        """``nfct explain``: replays ``capture`` up to ``frame`` (numbered from 1, as
        ``--output packets`` numbers them) and runs that frame traced: a dict with its
        ``frame``, ``tstamp``, ``len``, ``tuple`` (family, proto, src, dst, sport, dport), every
        ``steps`` of its way (hook number or None for the routing decision, priority, name,
        verdict, the deciding ``rule``, ``reason``, the entry ``before`` and ``after`` as
        ``conntrack -L -o extended`` lines, ``ctinfo``), then its ``verdict``, ``path``,
        ``cls``, ``reason`` and ``dropped_by``. Built-in operations only. A frame that is not
        an IP packet, or that the capture does not have, raises :class:`NfctValueError`, which
        names the frame's link type when nfct does not decode it (``link type 105
        (IEEE802_11)``)."""
    def feed(
        self,
        records: Iterable[tuple[float, bytes | bytearray | memoryview]],
        *,
        clock: _Clock = "capture",
        path: _ReplayPath = "forward",
    ) -> ReplayResult:
        """Packets in memory, as a capture holding them would be replayed: ``records`` are
        ``(tstamp, ip_packet_bytes)`` pairs. The result's :attr:`~ReplayResult.per_packet`
        holds one ``PacketResult(frame, cls, reason, dropped_by)`` per packet."""
    def conntrack_batch(
        self,
        buffer: bytes | bytearray | memoryview,
        offsets: npt.NDArray[np.int64],
        tstamps: npt.NDArray[np.float64] | None = None,
        *,
        path: _ReplayPath = "forward",
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int8]]:
        """Packets in bulk: packet i is ``buffer[offsets[i]:offsets[i+1]]`` at ``tstamps[i]``
        seconds (default: the clock now), each through the hook pipeline as a replay sends
        them. Returns numpy arrays of verdicts (uint32) and ctinfo (int8, -1 where no
        conntrack is attached). Needs numpy (``pip install 'nfct[numpy]'``)."""
    def listen_events(self, on: bool = True, capacity: int = 65536) -> None:
        """Starts (or stops) listening for events, as ``conntrack -E`` does: with the default
        ``nf_conntrack_events=2`` only entries created while someone listens send events. At
        most ``capacity`` messages wait; more are lost and counted in :attr:`events_lost`."""
    def read_events(self, timestamps: bool = False) -> list[str]:
        """The events since the last read, oldest first, as ``conntrack -E -o extended``
        prints them (``timestamps``: with the ``[seconds.micros]`` prefix)."""
    @property
    def events_lost(self) -> int:
        """Events lost because the queue was full (netlink's ENOBUFS)."""

def ipv4_conntrack_in(net: Net, skb: Skb) -> int:
    """``ipv4_conntrack_in``: conntrack at PRE_ROUTING (checksums verified per
    ``nf_conntrack_checksum``). Finds or creates the packet's entry, a new one unconfirmed,
    and attaches it to ``skb``. Returns the verdict."""

def ipv4_conntrack_local(net: Net, skb: Skb) -> int:
    """``ipv4_conntrack_local``: conntrack at LOCAL_OUT (no checksum verification)."""

def ipv4_confirm(net: Net, skb: Skb) -> int:
    """``ipv4_confirm``: inserts the packet's new entry into the table (LOCAL_IN,
    POST_ROUTING). Returns NF_DROP when the insertion fails (a clash it cannot resolve)."""

def ipv6_conntrack_in(net: Net, skb: Skb) -> int:
    """``ipv6_conntrack_in``: as :func:`ipv4_conntrack_in`, for IPv6."""

def ipv6_conntrack_local(net: Net, skb: Skb) -> int:
    """``ipv6_conntrack_local``: as :func:`ipv4_conntrack_local`, for IPv6."""

def ipv6_confirm(net: Net, skb: Skb) -> int:
    """``ipv6_confirm``: as :func:`ipv4_confirm`, for IPv6."""

_HookFn: TypeAlias = Callable[[Skb, HookState], int]
_NatFlag: TypeAlias = Literal["random", "fully-random", "persistent"]

@final
class BuiltinHook:
    """An operation that runs in Rust at full speed (also inside replays), standing for the nft
    rule in its name."""

    @staticmethod
    def drop_invalid() -> BuiltinHook:
        """``ct state invalid drop``."""
    @staticmethod
    def ct_state(states: Sequence[_CtState], verdict: int, otherwise: int = 1) -> BuiltinHook:
        """``ct state {STATES} VERDICT``, else ``otherwise`` (NF_ACCEPT or NF_DROP)."""
    @staticmethod
    def ct_zone(zone: int, direction: Literal["both", "original", "reply"] = "both") -> BuiltinHook:
        """``ct zone set ZONE`` (a template: register it before conntrack's -200, e.g. at
        NF_IP_PRI_RAW, on PRE_ROUTING and LOCAL_OUT)."""
    @staticmethod
    def ct_mark_set(mark: int, mask: int = 0xFFFFFFFF) -> BuiltinHook:
        """``ct mark set MARK`` (with ``mask``, only the masked bits change)."""
    @staticmethod
    def ct_mark(mark: int, verdict: int, mask: int = 0xFFFFFFFF, otherwise: int = 1) -> BuiltinHook:
        """``ct mark and MASK == MARK VERDICT``, else ``otherwise``."""
    @staticmethod
    def notrack() -> BuiltinHook:
        """``notrack`` (register it before conntrack, at NF_IP_PRI_RAW)."""
    @staticmethod
    def verdict(verdict: int) -> BuiltinHook:
        """Always ``verdict`` (NF_ACCEPT or NF_DROP): a rule without a match, or a policy."""
    @staticmethod
    def snat(
        addr: str | tuple[str, str],
        port: int | tuple[int, int] | None = None,
        *,
        flags: Sequence[_NatFlag] | None = None,
    ) -> BuiltinHook:
        """``snat to ADDR[:PORT]`` in a nat chain: ``addr`` is "192.0.2.1", a range
        "192.0.2.1-192.0.2.9" or a pair, ``port`` a port or a (low, high) pair. Register it at
        POST_ROUTING (or LOCAL_IN); NAT chains run at the NAT core's priority, theirs only
        orders them among NAT chains. An address of one family applies to that family only."""
    @staticmethod
    def dnat(
        addr: str | tuple[str, str],
        port: int | tuple[int, int] | None = None,
        *,
        flags: Sequence[_NatFlag] | None = None,
    ) -> BuiltinHook:
        """``dnat to ADDR[:PORT]``, as :meth:`snat`; register it at PRE_ROUTING (or
        LOCAL_OUT)."""
    @staticmethod
    def masquerade(
        port: int | tuple[int, int] | None = None, *, flags: Sequence[_NatFlag] | None = None
    ) -> BuiltinHook:
        """``masquerade [to :PORT]``: source NAT to the address of the interface the packet
        leaves by (from the Net's host file); register it at POST_ROUTING."""
    @staticmethod
    def redirect(
        port: int | tuple[int, int] | None = None, *, flags: Sequence[_NatFlag] | None = None
    ) -> BuiltinHook:
        """``redirect [to :PORT]``: destination NAT to the host itself (the first address of
        the interface the packet came in on; 127.0.0.1 or ::1 for its own packets); register
        it at PRE_ROUTING or LOCAL_OUT."""
    @property
    def name(self) -> str:
        """The rule it stands for, in nft's words."""

@final
class NfHookOps:
    """``struct nf_hook_ops``: a hook function (a callable ``hook(skb, state) -> verdict``, or
    a :class:`BuiltinHook`), the family (NFPROTO_IPV4, NFPROTO_IPV6 or NFPROTO_INET for
    both), the hook number and the priority. A hook that raises drops its packet and the
    exception reaches the caller (``on_error="raise"``), or is kept in the result while the
    packet is dropped (``"drop"``) or accepted (``"accept"``); KeyboardInterrupt and
    SystemExit always reach the caller."""

    def __new__(
        cls,
        hook: _HookFn | BuiltinHook,
        pf: int,
        hooknum: int,
        priority: int,
        *,
        name: str | None = None,
        on_error: Literal["raise", "drop", "accept"] = "raise",
    ) -> NfHookOps: ...
    @property
    def hook(self) -> _HookFn | BuiltinHook: ...
    @property
    def pf(self) -> int: ...
    @property
    def hooknum(self) -> int: ...
    @property
    def priority(self) -> int: ...
    @property
    def name(self) -> str: ...

@final
class HookState:
    """``struct nf_hook_state``, as a Python hook sees it."""

    @property
    def hook(self) -> int: ...
    @property
    def pf(self) -> int: ...
    @property
    def net(self) -> Net: ...

@final
class HookResult:
    """Where a packet's path through the host ended."""

    @property
    def verdict(self) -> Verdict:
        """The final verdict: NF_ACCEPT, NF_DROP or NF_STOLEN."""
    @property
    def path(self) -> Literal["local", "forward", "output", "drop"]:
        """Delivered, forwarded, sent out, or dropped/stolen on the way."""
    @property
    def dropped_by(self) -> HookOp | None:
        """``HookOp(hooknum, priority, name)`` of the operation that dropped or stole it."""
    @property
    def reason(self) -> str | None:
        """Why the IP stack or an operation dropped it, when it says (receive checks,
        routing, defrag, conntrack)."""
    @property
    def exception(self) -> BaseException | None:
        """The exception a hook with on_error="drop" or "accept" raised."""

def nf_register_net_hook(net: Net, ops: NfHookOps) -> None:
    """``nf_register_net_hook``: adds ``ops`` to ``net``'s hooks (both families for
    NFPROTO_INET). Among equal priorities the one registered last runs first, as in the
    kernel (``nf_hook_entries_grow``): an operation at conntrack's own priority runs before
    conntrack's."""

def nf_unregister_net_hook(net: Net, ops: NfHookOps) -> None:
    """``nf_unregister_net_hook``."""

def ip_rcv(net: Net, skb: Skb, dev: str | int | None = None) -> HookResult:
    """``ip_rcv``: an IPv4 packet from the wire: the receive checks, PRE_ROUTING, routing, then
    LOCAL_IN, or FORWARD and POST_ROUTING. The simplest way to track a packet. ``dev`` is the
    interface it arrives on (a name or ifindex of the Net's host; by default its first
    interface that is up and not loopback). Afterwards ``skb.data`` is the packet as it left
    (rewritten by NAT)."""

def ipv6_rcv(net: Net, skb: Skb, dev: str | int | None = None) -> HookResult:
    """``ipv6_rcv``: as :func:`ip_rcv`, for IPv6."""

def nf_nat_ipv4_fn(
    net: Net, skb: Skb, hooknum: int, *, dev: str | int | None = None, out: str | int | None = None
) -> int:
    """``nf_nat_ipv4_fn``: the NAT core at ``hooknum`` for the create/confirm split (after
    :func:`ipv4_conntrack_in`, before :func:`ipv4_confirm`): the Net's nat chains of that hook
    bind a new connection (or it gets its null binding) and ``skb.data`` is rewritten to
    follow the binding. ``dev``/``out``: the interfaces the packet came in on and leaves by
    (masquerade needs ``out``). Returns the verdict; a drop releases the packet's new entry."""

def nf_nat_ipv6_fn(
    net: Net, skb: Skb, hooknum: int, *, dev: str | int | None = None, out: str | int | None = None
) -> int:
    """``nf_nat_ipv6_fn``: as :func:`nf_nat_ipv4_fn`, for IPv6."""

def ip_local_out(net: Net, skb: Skb) -> HookResult:
    """``ip_local_out``: an IPv4 packet this host sends (LOCAL_OUT, POST_ROUTING; one to the
    host's own address loops back through PRE_ROUTING and LOCAL_IN)."""

def ip6_local_out(net: Net, skb: Skb) -> HookResult:
    """``ip6_local_out``: as :func:`ip_local_out`, for IPv6."""
