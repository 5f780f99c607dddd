"""Hypothesis strategies for realistic packet traffic, with nfct as the oracle.

Strategies for addresses, ports and tuples; for flows that are valid by construction (the
default router forwards every packet and neither nfct nor the kernel finds any INVALID):
TCP (handshake, data both ways with consistent sequence, acknowledgement and window numbers,
window scaling, SACK, retransmissions, keep-alives, teardown by FIN or RST, refused
connections, mid-stream pickup), UDP and UDPLITE, ICMP/ICMPv6 echo and errors quoting a
flow's packet, SCTP, GRE (version 0 and PPTP); mutations of flows (loss, duplication,
reordering, bad checksums, fragmentation, out-of-window segments, RSTs, odd flags, ...);
traces interleaving flows on one clock with idle gaps that cross the kernel's timeouts; and
scenarios users ask about.

Every strategy shrinks toward fewer flows, fewer packets and smaller values. A flow or trace
is a sequence of ``(tstamp, ip_packet_bytes)`` pairs (:mod:`nfct.traffic`).

>>> from hypothesis import given
>>> import nfct.strategies as nst
>>> @given(nst.traces())
... def test_my_tracker(trace):
...     for tstamp, packet in trace:
...         ...
>>> test_my_tracker()

Needs Hypothesis: ``pip install 'nfct[hypothesis]'``.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import DrawFn, SearchStrategy
except ImportError as _e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "nfct.strategies needs Hypothesis, which is not installed: pip install 'nfct[hypothesis]'"
    ) from _e

import nfct
from nfct import packets as P
from nfct.traffic import US, Flow, Packet, Trace, TupleArgs

__all__ = [
    "MTU",
    "MUTATIONS",
    "Flow",
    "Packet",
    "Trace",
    "TupleArgs",
    "addresses",
    "dns_race",
    "flows",
    "gre_flows",
    "icmp_flows",
    "idle_gaps",
    "mutated",
    "port_reuse",
    "ports",
    "scenarios",
    "sctp_flows",
    "stale_udp",
    "syn_flood",
    "tcp_flows",
    "traces",
    "tuple_args",
    "tuples",
    "udp_flows",
]

MTU: Final = 1500

# --- addresses and ports ------------------------------------------------------------------------

# Unicast prefixes a Linux router forwards (no loopback, 0/8, multicast, class E, limited
# broadcast, link-local, 192.0.0.0/24 where the kernel harness has its own address), in the
# order shrinking prefers: private and documentation ranges first.
_V4_PREFIXES: Final = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("198.51.100.0/24"),
    ipaddress.IPv4Network("203.0.113.0/24"),
    ipaddress.IPv4Network("100.64.0.0/10"),
    ipaddress.IPv4Network("1.0.0.0/8"),
    ipaddress.IPv4Network("11.0.0.0/8"),
    ipaddress.IPv4Network("128.0.0.0/3"),
)
_V6_PREFIXES: Final = (
    ipaddress.IPv6Network("fd00::/8"),
    ipaddress.IPv6Network("2001:db8::/32"),
    ipaddress.IPv6Network("2000::/3"),
)


def _address(prefix: ipaddress.IPv4Network | ipaddress.IPv6Network, offset: int) -> str:
    """The address at `offset` in `prefix` (wrapping), never the first or last of a /24 (they
    look like a network or a broadcast to people reading traces), nor an IPv6 address whose
    last 16 bits are 0 (a subnet-router anycast address on a /112)."""
    addr = int(prefix.network_address) + 1 + offset % (prefix.num_addresses - 2)
    if prefix.version == 4:
        if addr & 0xFF in (0, 255):
            addr ^= 0x03  # .0 -> .3, .255 -> .252
        return str(ipaddress.IPv4Address(addr))
    if addr & 0xFFFF == 0:
        addr |= 1
    return str(ipaddress.IPv6Address(addr))


@functools.cache
def addresses(family: int | None = None) -> SearchStrategy[str]:
    """Unicast addresses a router forwards (no martians: loopback, 0.0.0.0/8, multicast,
    class E, broadcast, link-local, IPv4-mapped; none of 192.0.0.0/24, where the kernel
    harness has its own address), as strings; `family` 4 or 6 (None: either). Shrinks toward
    ``10.0.0.1`` / ``fd00::1``.

    >>> from nfct.strategies import addresses
    >>> addresses(4).example()  # doctest: +SKIP
    '10.0.3.17'
    """
    if family not in (None, 4, 6):
        raise ValueError(f"family must be 4, 6 or None, not {family!r}")
    parts: list[SearchStrategy[str]] = []
    offsets = st.integers(0, 2**64 - 1)
    if family in (None, 4):
        parts.append(st.builds(_address, st.sampled_from(_V4_PREFIXES), offsets))
    if family in (None, 6):
        parts.append(st.builds(_address, st.sampled_from(_V6_PREFIXES), offsets))
    return st.one_of(parts)


_WELL_KNOWN: Final = (80, 443, 53, 22, 25, 123, 8080, 3306, 5432, 6379)


@functools.cache
def ports(*, ephemeral: bool | None = None) -> SearchStrategy[int]:
    """Port numbers 1-65535; ``ephemeral=True``: Linux's default local port range
    (32768-60999), ``False``: well-known service ports and others below 32768.

    >>> from nfct.strategies import ports
    >>> ports(ephemeral=True).example()  # doctest: +SKIP
    40123
    """
    if ephemeral is True:
        return st.integers(32768, 60999)
    if ephemeral is False:
        return st.one_of(st.sampled_from(_WELL_KNOWN), st.integers(1, 32767))
    return st.integers(1, 65535)


def _two_hosts(draw: DrawFn, family: int | None) -> tuple[str, str]:
    fam = draw(_family(family))
    a = draw(addresses(fam))
    return a, _other(draw, fam, a)


def _other(draw: DrawFn, fam: int, *taken: str) -> str:
    """An address of family `fam` other than those `taken`."""
    b = draw(addresses(fam))
    n = 0
    while b in taken:
        n += 1
        b = _address(_V4_PREFIXES[0] if fam == 4 else _V6_PREFIXES[0], n)
    return b


@functools.cache
def _family(family: int | None) -> SearchStrategy[int]:
    if family not in (None, 4, 6):
        raise ValueError(f"family must be 4, 6 or None, not {family!r}")
    return st.sampled_from([4, 6]) if family is None else st.just(family)


# --- tuples -------------------------------------------------------------------------------------

_PROTO_NUMBERS: Final = {
    "tcp": P.IPPROTO_TCP,
    "udp": P.IPPROTO_UDP,
    "udplite": P.IPPROTO_UDPLITE,
    "sctp": P.IPPROTO_SCTP,
    "icmp": P.IPPROTO_ICMP,
    "icmpv6": P.IPPROTO_ICMPV6,
    "gre": P.IPPROTO_GRE,
    "esp": P.IPPROTO_ESP,
}
_PORT_PROTOS: Final = frozenset({6, 17, 136, 132, 33})
# Request types that may open an entry, with their ids (ICMP 8/13/15/17, ICMPv6 128/139).
_ICMP_NEW_TYPES: Final = {4: (8, 13, 15, 17), 6: (128, 139)}


def _protonum(proto: int | str | None) -> int | None:
    if proto is None or isinstance(proto, int):
        return proto
    try:
        return _PROTO_NUMBERS[proto.lower()]
    except KeyError:
        raise ValueError(f"unknown protocol {proto!r}: one of {sorted(_PROTO_NUMBERS)}") from None


@st.composite
def tuple_args(
    draw: DrawFn, family: int | None = None, proto: int | str | None = None
) -> TupleArgs:
    """The constructor arguments of an ``nfct.Tuple`` (see :func:`tuples`) as a
    :class:`~nfct.traffic.TupleArgs`: forwardable addresses of one family, and ports for
    TCP, UDP, UDPLITE, SCTP and DCCP, type/code/id for ICMP and ICMPv6 (a request type that
    can open an entry), nothing more for other protocols.

    >>> from nfct.strategies import tuple_args
    >>> tuple_args(4, "udp").example()  # doctest: +SKIP
    TupleArgs(src='10.0.0.1', dst='10.0.0.2', protonum=17, sport=40000, dport=53, ...)
    """
    fam = draw(_family(family))
    num = _protonum(proto)
    if num is None:
        choices = [6, 17, 136, 132, 1 if fam == 4 else 58, 47]
        num = draw(st.sampled_from(choices))
    if num == P.IPPROTO_ICMP and fam == 6:
        raise ValueError("ICMP with IPv6: use proto='icmpv6'")
    if num == P.IPPROTO_ICMPV6 and fam == 4:
        raise ValueError("ICMPv6 with IPv4: use proto='icmp'")
    src, dst = _two_hosts(draw, fam)
    if num in _PORT_PROTOS:
        return TupleArgs(src, dst, num, draw(ports(ephemeral=True)), draw(ports(ephemeral=False)))
    if num in (P.IPPROTO_ICMP, P.IPPROTO_ICMPV6):
        typ = draw(st.sampled_from(_ICMP_NEW_TYPES[fam]))
        return TupleArgs(src, dst, num, type=typ, code=0, id=draw(st.integers(0, 65535)))
    return TupleArgs(src, dst, num)


def tuples(family: int | None = None, proto: int | str | None = None) -> SearchStrategy[nfct.Tuple]:
    """``nfct.Tuple`` s: the original direction of a connection a router could see (see
    :func:`tuple_args` for what is drawn). `family` 4 or 6, `proto` a number or a name
    (``"tcp"``, ``"udp"``, ``"udplite"``, ``"sctp"``, ``"icmp"``, ``"icmpv6"``, ``"gre"``,
    ``"esp"``); None draws one. ``st.from_type(nfct.Tuple)`` gives ``tuples()``.

    >>> from hypothesis import given
    >>> from nfct.strategies import tuples
    >>> @given(tuples(family=6, proto="tcp"))
    ... def test_invert_twice(t):
    ...     assert t.invert().invert() == t
    >>> test_invert_twice()
    """
    return tuple_args(family, proto).map(TupleArgs.to_tuple)


# --- time ---------------------------------------------------------------------------------------

# The kernel's default timeouts (s) a gap may cross: UDP's 2-second stream rule, SCTP's 3 s
# handshake states, TCP CLOSE 10, UDP/ICMP 30, SYN_RECV 60, TCP 120, GRE stream 180, UNACK 300,
# generic 600.
_TIMEOUT_EDGES: Final = (2, 3, 10, 30, 60, 120, 180, 300, 600)


def idle_gaps(*, max_seconds: float | None = None) -> SearchStrategy[int]:
    """Idle gaps in microseconds: short ones, and ones within a second of the kernel's
    default timeouts (2 s UDP stream rule, 3, 10, 30, 60, 120, 180, 300, 600 s), so that an
    entry expires, or just does not, before the next packet. `max_seconds` caps them."""
    near = st.builds(
        lambda edge, jitter: edge * US + jitter,
        st.sampled_from(_TIMEOUT_EDGES),
        st.integers(-US, US),
    )
    gaps = st.one_of(st.integers(1, 100_000), near)
    if max_seconds is not None:
        cap = round(max_seconds * US)
        gaps = gaps.map(lambda g: max(1, min(g, cap)))
    return gaps


class _Clock:
    """Microseconds since a flow's first packet. The gaps between packets (1 us to 50 ms)
    come from two draws made once per flow, not one per packet: a flow's choices then do not
    depend on how many packets it has, which lets Hypothesis shrink values freely."""

    def __init__(self, draw: DrawFn) -> None:
        self.longest = draw(st.integers(1, 50_000))
        self.mix = draw(st.integers(0, 2**16))
        self.k = 0
        self.now = 0

    def next(self, at_least: int = 0) -> float:
        if self.k:
            gap = 1 + (self.mix * 2654435761 + self.k * 40503) % self.longest
            self.now += max(gap, at_least)
        self.k += 1
        return self.now / US


# --- TCP ----------------------------------------------------------------------------------------

_U32: Final = 0xFFFFFFFF
# What a packet may fill of the MTU after the IP header and a TCP header with options.
_TCP_PAYLOAD_MAX: Final = {4: MTU - 20 - 60, 6: MTU - 40 - 60}
# In flight (sent, not acknowledged) at most this much, below MAXACKWINDOW's 66000.
_IN_FLIGHT_MAX: Final = 60_000


@dataclass
class _TcpEnd:
    addr: str
    port: int
    isn: int
    wscale: int | None
    sack_perm: bool
    syn_win: int  # raw window on SYN / SYN-ACK (never scaled)
    win: int  # raw window on every other segment
    tsval: int
    nxt: int = 0
    acked: int = 0  # the highest ack the peer sent for this side's data
    adv: int = 0  # the window this side last advertised, in bytes
    last_data: tuple[int, bytes] | None = None
    unacked: list[tuple[int, bytes]] | None = None


class _Tcp:
    """Both ends of a TCP connection, building segments whose sequence, acknowledgement and
    window numbers stay inside what conntrack's window tracking accepts."""

    def __init__(
        self,
        draw: DrawFn,
        fam: int,
        client: _TcpEnd,
        server: _TcpEnd,
        timestamps: bool,
        ttl: dict[str, int],
    ) -> None:
        self.fam = fam
        self.ttl = ttl
        self.end = {"c": client, "s": server}
        self.timestamps = timestamps
        self.clock = _Clock(draw)
        self.out: list[Packet] = []
        self.first: str | None = None
        for e in (client, server):
            e.nxt = e.acked = e.isn
            e.unacked = []

    def scale(self, side: str) -> int:
        a, b = self.end["c"].wscale, self.end["s"].wscale
        if a is None or b is None:
            return 0
        return min(self.end[side].wscale or 0, 14)

    def seg(
        self,
        side: str,
        flags: str,
        payload: bytes = b"",
        note: str = "",
        *,
        seq: int | None = None,
        ack_to: int | None = None,
        sack: tuple[int, int] | None = None,
        wait: int = 0,
    ) -> None:
        me = self.end[side]
        peer = self.end["s" if side == "c" else "c"]
        f = P.tcp_flags(flags)
        if seq is None:
            seq = me.nxt
            me.nxt = (
                me.nxt + len(payload) + (1 if f & P.TCP_SYN else 0) + (1 if f & P.TCP_FIN else 0)
            ) & _U32
            if payload:
                me.last_data = (seq, payload)
                assert me.unacked is not None
                me.unacked.append((seq, payload))
        ack = 0
        if f & P.TCP_ACK:
            ack = peer.nxt if ack_to is None else ack_to
            peer.acked = ack
            assert peer.unacked is not None
            peer.unacked = [s for s in peer.unacked if _after(s[0] + len(s[1]), ack)]
        me.tsval += 1
        if f & P.TCP_RST:
            options, window = b"", 0
        elif f & P.TCP_SYN:
            tsval = me.tsval if self.timestamps else None
            options = P.tcp_syn_options(
                mss=1460 if self.fam == 4 else 1440,
                wscale=me.wscale,
                sack_perm=me.sack_perm,
                tsval=tsval,
            )
            window = me.syn_win
            me.adv = window
        else:
            options = b""
            if self.timestamps:
                options += P.tcp_opt_nop() * 2 + P.tcp_opt_timestamps(me.tsval, peer.tsval)
            if sack is not None:
                options += P.tcp_opt_nop() * 2 + P.tcp_opt_sack([sack])
            window = me.win
            me.adv = me.win << self.scale(side)
        if self.first is None:
            self.first = side
        direction = "original" if side == self.first else "reply"
        data = P.tcp(
            me.addr,
            peer.addr,
            me.port,
            peer.port,
            seq=seq,
            ack=ack,
            flags=f,
            window=window,
            payload=payload,
            options=options,
            ttl=self.ttl[side],
        )
        assert len(data) <= MTU, len(data)
        self.out.append(Packet(self.clock.next(wait), data, direction, note or _flags_note(flags)))

    def room(self, side: str) -> int:
        """How many bytes `side` may send now without leaving the peer's window."""
        me = self.end[side]
        peer = self.end["s" if side == "c" else "c"]
        in_flight = (me.nxt - me.acked) & _U32
        return max(0, min(peer.adv, _IN_FLIGHT_MAX) - in_flight)

    def send_data(self, side: str, size: int, note: str = "") -> None:
        other = "s" if side == "c" else "c"
        if self.room(side) < max(size, 1):
            self.seg(other, "A", note="window update")
        size = min(size, self.room(side), _TCP_PAYLOAD_MAX[self.fam])
        self.seg(side, "PA" if size else "A", _payload(size), note or f"data {size} B")


def _after(a: int, b: int) -> bool:
    """`a` after `b` in sequence space."""
    return 0 < ((a - b) & _U32) < 0x80000000


def _payload(size: int) -> bytes:
    return (b"nfct-data-" * (size // 10 + 1))[:size]


def _flags_note(flags: str) -> str:
    names = {"S": "SYN", "SA": "SYN-ACK", "A": "ACK", "PA": "data", "FA": "FIN", "R": "RST"}
    return names.get(flags, f"[{flags}]")


_TCP_OPS: Final = ("data", "data", "data", "ack", "retransmit", "keepalive", "sack")
_TEARDOWNS: Final = ("none", "fin", "rst")


@st.composite
def tcp_flows(
    draw: DrawFn,
    *,
    family: int | None = None,
    mid_stream: bool | None = None,
    teardown: str | None = None,
    max_segments: int = 12,
    endpoints: tuple[str, int, str, int] | None = None,
) -> Flow:
    """TCP connections a router forwards, none of whose packets nfct or the kernel finds
    INVALID: a handshake (SYN retransmissions, ECN negotiation, the options Linux sends: MSS,
    SACK-permitted, timestamps, window scale 0-14, each or not; or a refused connection: SYN
    then RST-ACK), data both ways within the peer's advertised window with matching
    acknowledgements, retransmissions, keep-alives, SACK blocks for a hole then its
    retransmission, and a teardown (`teardown`: ``"fin"`` (either side first, simultaneous or
    half-closed), ``"rst"``, ``"none"``; None draws one). ``mid_stream=True`` starts in the
    middle of a connection (conntrack picks it up, from either side); None draws it.
    `max_segments` bounds the data phase. `endpoints` fixes ``(client address, client port,
    server address, server port)``.

    >>> from hypothesis import given
    >>> from nfct.strategies import tcp_flows
    >>> @given(tcp_flows(family=4, teardown="fin"))
    ... def test_closes(flow):
    ...     assert flow.orig.protonum == 6 and flow.packets[-1].note == "last ACK"
    >>> test_closes()
    """
    if teardown not in (None, *_TEARDOWNS):
        raise ValueError(f"teardown must be one of {_TEARDOWNS} or None, not {teardown!r}")
    if endpoints is None:
        fam = draw(_family(family))
        caddr, saddr = _two_hosts(draw, fam)
        cport, sport = draw(ports(ephemeral=True)), draw(ports(ephemeral=False))
    else:
        caddr, cport, saddr, sport = endpoints
        fam = 6 if ":" in caddr else 4
    timestamps = draw(st.booleans())

    # Every choice is drawn whatever the path the flow takes, so that Hypothesis can shrink
    # values across paths (its shrinker prefers fewer choices first).
    def end(addr: str, port: int) -> _TcpEnd:
        shift = draw(st.integers(0, 15))
        wscale = shift - 1 if shift else None
        low = max(1, 1024 >> (wscale or 0))
        return _TcpEnd(
            addr,
            port,
            isn=draw(st.integers(0, _U32)),
            wscale=wscale,
            sack_perm=draw(st.booleans()),
            syn_win=draw(st.integers(1024, 65535)),
            win=max(low, draw(st.integers(1, 65535))),
            tsval=draw(st.integers(0, 2**31)),
        )

    client = end(caddr, cport)
    server = end(saddr, sport)
    ttl = {"c": draw(st.integers(2, 255)), "s": draw(st.integers(2, 255))}
    conn = _Tcp(draw, fam, client, server, timestamps, ttl)
    mid = draw(st.booleans()) if mid_stream is None else mid_stream
    how = draw(st.sampled_from(_TEARDOWNS)) if teardown is None else teardown
    ecn, syn_retries, refused = draw(st.booleans()), draw(st.integers(0, 2)), draw(st.booleans())
    synack_again = draw(st.integers(0, 3)) == 3
    skipped = (draw(st.integers(0, 100_000)), draw(st.integers(0, 100_000)))
    first, first_size = draw(st.sampled_from("cs")), draw(st.integers(0, 1400))
    ops = draw(
        st.lists(
            st.tuples(st.sampled_from(_TCP_OPS), st.sampled_from("cs"), st.integers(0, 1400)),
            max_size=max_segments,
        )
    )
    closer, fin_data, crossing = (
        draw(st.sampled_from("cs")),
        draw(st.integers(0, 200)),
        draw(st.booleans()),
    )
    half_closed = draw(st.lists(st.integers(1, 1400), max_size=2))
    rst_flags = draw(st.sampled_from(["R", "RA"]))

    if mid:
        # Both ends as if the handshake had happened unseen; the first packet seen is an ACK
        # from either side (conntrack's mid-stream pickup).
        for e, k in zip((client, server), skipped, strict=True):
            e.nxt = e.acked = (e.isn + 1 + k) & _U32
            e.adv = e.win << conn.scale("c" if e is client else "s")
        conn.send_data(first, first_size, "picked up mid-stream")
    else:
        conn.seg("c", "SEC" if ecn else "S", note="SYN")
        for _ in range(syn_retries):
            client.nxt = (client.nxt - 1) & _U32
            conn.seg("c", "SEC" if ecn else "S", note="SYN retransmitted", wait=US)
        if how == "rst" and refused:
            # Refused: the server answers the SYN with a RST-ACK (sequence 0).
            conn.seg("s", "RA", seq=0, note="RST-ACK: connection refused")
            return _tcp_flow(conn)
        conn.seg("s", "SAE" if ecn else "SA", note="SYN-ACK")
        if synack_again:
            server.nxt = (server.nxt - 1) & _U32
            conn.seg("s", "SAE" if ecn else "SA", note="SYN-ACK retransmitted")
        conn.seg("c", "A", note="ACK")

    for op, side, size in ops:
        other = "s" if side == "c" else "c"
        me = conn.end[side]
        if op == "data":
            conn.send_data(side, size)
        elif op == "ack":
            conn.seg(side, "A", note="ACK")
        elif op == "retransmit" and me.last_data is not None:
            seq, payload = me.last_data
            conn.seg(side, "PA", payload, f"data {len(payload)} B retransmitted", seq=seq)
        elif op == "keepalive":
            conn.seg(side, "A", note="keep-alive", seq=(me.nxt - 1) & _U32)
        elif op == "sack" and client.sack_perm and server.sack_perm:
            # Two segments in flight, the first lost beyond the router: the receiver ACKs
            # up to the hole and SACKs the rest, the sender retransmits, all is ACKed.
            conn.send_data(side, max(size, 1))
            conn.send_data(side, max(size // 2, 1))
            assert me.unacked is not None
            if len(me.unacked) >= 2:
                hole_seq, hole = me.unacked[0]
                right = me.nxt
                left = (hole_seq + len(hole)) & _U32
                conn.seg(other, "A", note="ACK with SACK", ack_to=hole_seq, sack=(left, right))
                conn.seg(side, "PA", hole, "hole retransmitted", seq=hole_seq)
                conn.seg(other, "A", note="ACK")

    if how == "fin":
        other = "s" if closer == "c" else "c"
        conn.seg(closer, "FPA" if fin_data else "FA", _payload(fin_data), "FIN")
        if crossing:
            # Simultaneous close: the FINs cross.
            conn.seg(other, "FA", note="FIN (crossing)")
            conn.seg(closer, "A", note="last ACK")
            conn.seg(other, "A", note="last ACK")
        else:
            conn.seg(other, "A", note="ACK of FIN")
            for size in half_closed:
                conn.send_data(other, size, "data after the peer's FIN")
                conn.seg(closer, "A", note="ACK")
            conn.seg(other, "FA", note="FIN")
            conn.seg(closer, "A", note="last ACK")
    elif how == "rst":
        # A stack resets at its next sequence number, but an assured connection closes only
        # on a RST at the sequence the peer acknowledged last (or right after the closer's own
        # segment ending there; spec §7.6 (g) 2): the peer first acknowledges what is in flight.
        closing = conn.end[closer]
        if closing.acked != closing.nxt:
            conn.seg("s" if closer == "c" else "c", "A", note="ACK")
        conn.seg(closer, rst_flags, note="RST")
    return _tcp_flow(conn)


def _tcp_flow(conn: _Tcp) -> Flow:
    first = conn.end[conn.first or "c"]
    second = conn.end["s" if conn.first == "c" else "c"]
    orig = TupleArgs(first.addr, second.addr, P.IPPROTO_TCP, first.port, second.port)
    return Flow("tcp", orig, tuple(conn.out))


# --- UDP and UDPLITE ----------------------------------------------------------------------------

_UDP_PAYLOAD_MAX: Final = {4: MTU - 20 - 8, 6: MTU - 40 - 8}


@st.composite
def udp_flows(
    draw: DrawFn,
    *,
    family: int | None = None,
    lite: bool | None = None,
    max_packets: int = 8,
    endpoints: tuple[str, int, str, int] | None = None,
) -> Flow:
    """UDP (or, with ``lite=True``, UDPLITE; None draws, UDP more often) exchanges between a
    client port and a server port: a first datagram from the client, then datagrams either
    way (a one-way stream, request and answers, ...), payloads of 0 to 1472 bytes (1452 over
    IPv6), checksums the kernel accepts (over IPv4 sometimes none, which UDP allows; UDPLITE
    with a checksum coverage of the whole datagram or part of it, checksummed the way
    conntrack verifies it, see :func:`nfct.packets.udplite_pseudo_length`). `endpoints`
    fixes ``(client address, client port, server address, server port)``.

    >>> from hypothesis import given
    >>> from nfct.strategies import udp_flows
    >>> @given(udp_flows(lite=False))
    ... def test_first_from_client(flow):
    ...     assert flow.packets[0].direction == "original"
    >>> test_first_from_client()
    """
    if endpoints is None:
        fam = draw(_family(family))
        caddr, saddr = _two_hosts(draw, fam)
        cport, sport = draw(ports(ephemeral=True)), draw(ports(ephemeral=False))
    else:
        caddr, cport, saddr, sport = endpoints
        fam = 6 if ":" in caddr else 4
    is_lite = draw(st.sampled_from([False, False, True])) if lite is None else lite
    no_checksum = draw(st.integers(0, 4)) == 4 and fam == 4 and not is_lite
    ttl = {"c": draw(st.integers(2, 255)), "s": draw(st.integers(2, 255))}
    ends = {"c": (caddr, cport), "s": (saddr, sport)}
    clock = _Clock(draw)
    size_max = _UDP_PAYLOAD_MAX[fam]
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from("sc"),
                st.integers(0, _UDP_PAYLOAD_MAX[4]),
                st.integers(0, _UDP_PAYLOAD_MAX[4] + 1),
            ),
            min_size=1,
            max_size=max_packets,
        )
    )
    out = []
    for i, (side, drawn_size, partial) in enumerate(steps):
        # Bounds that depend on earlier choices are applied after drawing (for shrinking).
        side, size = "c" if i == 0 else side, min(drawn_size, size_max)
        (src, sp), (dst, dp) = ends[side], ends["s" if side == "c" else "c"]
        payload = _payload(size)
        if is_lite:
            # Coverage 0 (all), or 8 (the header) up to the whole datagram. The checksum is the
            # one conntrack accepts: over IPv4 its pseudo-header has the low byte of the length
            # (P.udplite's default), so one with the whole length, as UDP has it, would be
            # INVALID from 256 bytes on (the bad_checksum mutation makes those).
            cov = 0 if partial == 0 else 8 + min(partial - 1, size)
            data = P.udplite(src, dst, sp, dp, payload, coverage=cov, ttl=ttl[side])
        else:
            data = P.udp(
                src, dst, sp, dp, payload, checksum=0 if no_checksum else None, ttl=ttl[side]
            )
        direction = "original" if side == "c" else "reply"
        out.append(Packet(clock.next(), data, direction, f"{size} B"))
    proto = P.IPPROTO_UDPLITE if is_lite else P.IPPROTO_UDP
    return Flow(
        "udplite" if is_lite else "udp", TupleArgs(caddr, saddr, proto, cport, sport), tuple(out)
    )


# --- ICMP and ICMPv6 ----------------------------------------------------------------------------

_ICMP_PAYLOAD_MAX: Final = {4: MTU - 20 - 8, 6: MTU - 40 - 8}


@st.composite
def _echo_flows(draw: DrawFn, family: int | None, max_packets: int) -> Flow:
    fam = draw(_family(family))
    a, b = _two_hosts(draw, fam)
    ident = draw(st.integers(0, 65535))
    seq0 = draw(st.integers(0, 65535))
    ttl = draw(st.integers(2, 255))
    clock = _Clock(draw)
    steps = draw(
        st.lists(
            st.tuples(st.booleans(), st.integers(0, _ICMP_PAYLOAD_MAX[4])),
            min_size=1,
            max_size=max(1, max_packets // 2),
        )
    )
    out = []
    build = P.icmp_echo if fam == 4 else P.icmp6_echo
    for k, (answered, drawn_size) in enumerate(steps):
        size = min(drawn_size, _ICMP_PAYLOAD_MAX[fam])
        seq = (seq0 + k) & 0xFFFF
        body = _payload(size)
        request = build(a, b, ident, seq, body=body)
        out.append(
            Packet(clock.next(), P.set_ttl(request, ttl), "original", f"echo request seq={seq}")
        )
        if answered:
            reply = build(b, a, ident, seq, reply=True, body=body)
            out.append(Packet(clock.next(), reply, "reply", f"echo reply seq={seq}"))
    proto = P.IPPROTO_ICMP if fam == 4 else P.IPPROTO_ICMPV6
    typ = 8 if fam == 4 else 128
    return Flow(
        "icmp" if fam == 4 else "icmpv6",
        TupleArgs(a, b, proto, type=typ, code=0, id=ident),
        tuple(out),
    )


# (type, code, from a router?) of the errors a host or a router on the path sends.
_ERRORS: Final = {
    4: (
        (3, 3, False),
        (3, 2, False),
        (3, 13, False),
        (3, 0, True),
        (3, 1, True),
        (11, 0, True),
        (3, 4, True),
    ),
    6: ((1, 4, False), (1, 1, False), (1, 0, True), (1, 3, True), (3, 0, True), (2, 0, True)),
}


@st.composite
def _error_flows(draw: DrawFn, family: int | None) -> Flow:
    fam = draw(_family(family))
    base = draw(
        st.one_of(
            udp_flows(family=fam, lite=False, max_packets=3),
            _echo_flows(fam, 4),
            tcp_flows(family=fam, mid_stream=False, teardown="none", max_segments=2),
        )
    )
    # Fixed ranges, reduced afterwards, and no draw that depends on a branch: for shrinking.
    i = draw(st.integers(0, 15)) % len(base.packets)
    quoted = base.packets[i]
    qsrc, qdst = _endpoints_of(quoted.data)
    typ, code, router = _ERRORS[fam][draw(st.integers(0, 6)) % len(_ERRORS[fam])]
    router_addr = _other(draw, fam, qsrc, qdst)
    short_quote = draw(st.booleans())
    src = router_addr if router else qdst
    if fam == 4:
        rest = struct.pack("!HH", 0, 1400) if (typ, code) == (3, 4) else b"\0\0\0\0"
        quote_len = 28 if short_quote else min(len(quoted.data), 548)
        error = P.icmp_error(src, qsrc, typ, code, quoted.data, quote_len=quote_len, rest=rest)
    else:
        rest = struct.pack("!I", 1280) if typ == 2 else b"\0\0\0\0"
        error = P.icmp6_error(src, qsrc, typ, code, quoted.data, rest=rest)
    if src == base.orig.dst:
        direction = "reply"
    elif src == base.orig.src:
        direction = "original"
    else:
        direction = "other"
    who = "a router" if router else "the destination"
    note = f"ICMP error type {typ} code {code} from {who}, quoting #{i}"
    pkts = list(base.packets)
    pkts.insert(i + 1, Packet(quoted.tstamp, error, direction, note))
    return Flow("icmp-error", base.orig, _retime(pkts))


def _endpoints_of(packet: bytes) -> tuple[str, str]:
    return P.ip_addresses(packet)


def icmp_flows(
    *, family: int | None = None, errors: bool | None = None, max_packets: int = 8
) -> SearchStrategy[Flow]:
    """ICMP or ICMPv6 flows: echo requests, answered or not (kind ``icmp``/``icmpv6``), or,
    with ``errors=True``, a UDP, echo or TCP flow and an ICMP error quoting one of its
    packets, in either direction, sent by the packet's destination (port unreachable, ...) or
    by a router on the path (time exceeded, unreachable, fragmentation needed / packet too
    big) (kind ``icmp-error``; the error is RELATED). None draws either.

    >>> from hypothesis import given
    >>> from nfct.strategies import icmp_flows
    >>> @given(icmp_flows(errors=True))
    ... def test_error_is_related(flow):
    ...     assert flow.kind == "icmp-error"
    >>> test_error_is_related()
    """
    echo = _echo_flows(family, max_packets)
    err = _error_flows(family)
    if errors is True:
        return err
    if errors is False:
        return echo
    return st.one_of(echo, err)


def _retime(pkts: Sequence[Packet]) -> tuple[Packet, ...]:
    """The packets with strictly increasing microsecond timestamps (each at least 1 us after
    the previous one, otherwise unchanged)."""
    out: list[Packet] = []
    last = -1
    for p in pkts:
        t = max(round(p.tstamp * US), last + 1)
        out.append(replace(p, tstamp=t / US))
        last = t
    return tuple(out)


# --- SCTP ---------------------------------------------------------------------------------------

_SCTP_PAYLOAD_MAX: Final = {4: MTU - 20 - 12 - 16, 6: MTU - 40 - 12 - 16}
_SCTP_TEARDOWNS: Final = ("none", "shutdown", "abort")


@st.composite
def sctp_flows(
    draw: DrawFn,
    *,
    family: int | None = None,
    mid_stream: bool | None = None,
    teardown: str | None = None,
    max_chunks: int = 8,
) -> Flow:
    """SCTP associations: the four-way handshake (INIT, INIT_ACK with a state cookie,
    COOKIE_ECHO possibly bundling DATA, COOKIE_ACK; an INIT retransmission sometimes), or
    with ``mid_stream=True`` a pickup by a HEARTBEAT and its HEARTBEAT_ACK; then DATA and SACK
    both ways and HEARTBEATs; `teardown` ``"shutdown"`` (SHUTDOWN, SHUTDOWN_ACK,
    SHUTDOWN_COMPLETE from either side), ``"abort"`` or ``"none"`` (None draws one).
    Verification tags and CRC32c are right on every packet.

    >>> from hypothesis import given
    >>> from nfct.strategies import sctp_flows
    >>> @given(sctp_flows(teardown="shutdown"))
    ... def test_ends_with_shutdown_complete(flow):
    ...     assert flow.packets[-1].note == "SHUTDOWN_COMPLETE"
    >>> test_ends_with_shutdown_complete()
    """
    if teardown not in (None, *_SCTP_TEARDOWNS):
        raise ValueError(f"teardown must be one of {_SCTP_TEARDOWNS} or None, not {teardown!r}")
    fam = draw(_family(family))
    caddr, saddr = _two_hosts(draw, fam)
    ends = {
        "c": (caddr, draw(ports(ephemeral=True))),
        "s": (saddr, draw(st.sampled_from([2905, 3868, 38412, 5060, 9899]))),
    }
    # The tag a packet towards each side carries: the tag that side chose.
    tag = {"c": draw(st.integers(1, _U32)), "s": draw(st.integers(1, _U32))}
    tsn = {"c": draw(st.integers(0, _U32)), "s": draw(st.integers(0, _U32))}
    ttl = {"c": draw(st.integers(2, 255)), "s": draw(st.integers(2, 255))}
    clock = _Clock(draw)
    out: list[Packet] = []
    first: list[str] = []

    def send(side: str, vtag: int, note: str, *chunks: bytes) -> None:
        other = "s" if side == "c" else "c"
        (src, sp), (dst, dp) = ends[side], ends[other]
        data = P.sctp(src, dst, sp, dp, vtag, *chunks, ttl=ttl[side])
        assert len(data) <= MTU
        if not first:
            first.append(side)
        direction = "original" if side == first[0] else "reply"
        out.append(Packet(clock.next(), data, direction, note))

    def to(side: str) -> int:
        return tag[side]

    def data_chunk(side: str, size: int) -> bytes:
        chunk = P.sctp_data_chunk(tsn[side], _payload(size))
        tsn[side] = (tsn[side] + 1) & _U32
        return chunk

    def sack_for(side: str) -> bytes:
        """The SACK `side` sends for what the other side sent."""
        other = "s" if side == "c" else "c"
        return P.sctp_sack_chunk((tsn[other] - 1) & _U32)

    mid = draw(st.booleans()) if mid_stream is None else mid_stream
    # Drawn whatever the path, for shrinking (see tcp_flows).
    side, init_again, bundle = (
        draw(st.sampled_from("cs")),
        draw(st.integers(0, 3)) == 3,
        draw(st.integers(0, 201)),
    )
    if mid:
        other = "s" if side == "c" else "c"
        info = P.sctp_heartbeat_info()
        send(
            side,
            to(other),
            "HEARTBEAT (picked up mid-association)",
            P.sctp_chunk(P.SCTP_HEARTBEAT, info),
        )
        send(other, to(side), "HEARTBEAT_ACK", P.sctp_chunk(P.SCTP_HEARTBEAT_ACK, info))
    else:
        init = P.sctp_chunk(P.SCTP_INIT, P.sctp_init_body(tag["c"], tsn["c"]))
        send("c", 0, "INIT", init)
        if init_again:
            send("c", 0, "INIT retransmitted", init)
        cookie = struct.pack("!HH", 7, 4 + 16) + _payload(16)
        init_ack = P.sctp_chunk(P.SCTP_INIT_ACK, P.sctp_init_body(tag["s"], tsn["s"]) + cookie)
        send("s", to("c"), "INIT_ACK", init_ack)
        echo = P.sctp_chunk(P.SCTP_COOKIE_ECHO, _payload(16))
        if bundle:
            send("c", to("s"), "COOKIE_ECHO + DATA", echo, data_chunk("c", bundle - 1))
            send("s", to("c"), "COOKIE_ACK + SACK", P.sctp_chunk(P.SCTP_COOKIE_ACK), sack_for("s"))
        else:
            send("c", to("s"), "COOKIE_ECHO", echo)
            send("s", to("c"), "COOKIE_ACK", P.sctp_chunk(P.SCTP_COOKIE_ACK))

    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["data", "data", "heartbeat"]),
                st.sampled_from("cs"),
                st.integers(0, _SCTP_PAYLOAD_MAX[4]),
            ),
            max_size=max_chunks,
        )
    )
    for op, side, drawn_size in ops:
        other = "s" if side == "c" else "c"
        size = min(drawn_size, _SCTP_PAYLOAD_MAX[fam])
        if op == "data":
            send(side, to(other), f"DATA {size} B", data_chunk(side, size))
            if draw(st.booleans()):
                send(other, to(side), "SACK", sack_for(other))
        else:
            info = P.sctp_heartbeat_info()
            send(side, to(other), "HEARTBEAT", P.sctp_chunk(P.SCTP_HEARTBEAT, info))
            send(other, to(side), "HEARTBEAT_ACK", P.sctp_chunk(P.SCTP_HEARTBEAT_ACK, info))

    how = draw(st.sampled_from(_SCTP_TEARDOWNS)) if teardown is None else teardown
    side = draw(st.sampled_from("cs"))
    other = "s" if side == "c" else "c"
    if how == "shutdown":
        cum = struct.pack("!I", (tsn[other] - 1) & _U32)
        send(side, to(other), "SHUTDOWN", P.sctp_chunk(P.SCTP_SHUTDOWN, cum))
        send(other, to(side), "SHUTDOWN_ACK", P.sctp_chunk(P.SCTP_SHUTDOWN_ACK))
        send(side, to(other), "SHUTDOWN_COMPLETE", P.sctp_chunk(P.SCTP_SHUTDOWN_COMPLETE))
    elif how == "abort":
        send(side, to(other), "ABORT", P.sctp_chunk(P.SCTP_ABORT))
    a, b = (ends["c"], ends["s"]) if first[0] == "c" else (ends["s"], ends["c"])
    return Flow("sctp", TupleArgs(a[0], b[0], P.IPPROTO_SCTP, a[1], b[1]), tuple(out))


# --- GRE ----------------------------------------------------------------------------------------

# What GRE version 0 carries here: IPv4, IPv6, transparent Ethernet bridging.
_GRE_PROTOCOLS: Final = (0x0800, 0x86DD, 0x6558)
_GRE_PPTP: Final = 0x880B
_GRE_PAYLOAD_MAX: Final = {4: MTU - 20 - 16, 6: MTU - 40 - 16}


@st.composite
def gre_flows(
    draw: DrawFn,
    *,
    family: int | None = None,
    version: int | None = None,
    max_packets: int = 8,
) -> Flow:
    """GRE exchanges between two hosts: version 0 (RFC 2784/2890: IPv4, IPv6 or Ethernet
    inside, with or without a key, with or without a checksum, the same on every packet) or,
    with ``version=1``, PPTP's enhanced GRE (protocol 0x880B, each side's packets carrying
    the peer's call id; conntrack keys them through the PPTP helper's keymap, which without
    the helper is empty: keys 0, like version 0). None draws either, version 0 more often.
    A first packet from the initiator, then packets either way.

    >>> from hypothesis import given
    >>> from nfct.strategies import gre_flows
    >>> @given(gre_flows(version=1))
    ... def test_pptp(flow):
    ...     assert flow.kind == "gre" and flow.orig.protonum == 47
    >>> test_pptp()
    """
    if version not in (None, 0, 1):
        raise ValueError(f"version must be 0, 1 or None, not {version!r}")
    fam = draw(_family(family))
    a, b = _two_hosts(draw, fam)
    ver = draw(st.sampled_from([0, 0, 1])) if version is None else version
    # Drawn whatever the version, for shrinking (see tcp_flows).
    proto, key, checksum = (
        draw(st.sampled_from(_GRE_PROTOCOLS)),
        draw(st.one_of(st.none(), st.integers(0, _U32))),
        draw(st.booleans()),
    )
    call = {"c": draw(st.integers(0, 0xFFFF)), "s": draw(st.integers(0, 0xFFFF))}
    ttl = {"c": draw(st.integers(2, 255)), "s": draw(st.integers(2, 255))}
    ends = {"c": a, "s": b}
    clock = _Clock(draw)
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from("cs"), st.integers(0, _GRE_PAYLOAD_MAX[4])),
            min_size=1,
            max_size=max_packets,
        )
    )
    out = []
    for i, (side, drawn_size) in enumerate(steps):
        side, size = "c" if i == 0 else side, min(drawn_size, _GRE_PAYLOAD_MAX[fam])
        other = "s" if side == "c" else "c"
        payload = _payload(size)
        if ver == 0:
            data = P.gre(ends[side], ends[other], payload, protocol=proto, key=key,
                         with_checksum=checksum)  # fmt: skip
            note = f"GRE {size} B" + ("" if key is None else f" key {key:#x}")
        else:
            pptp_key = (size << 16) | call[other]
            data = P.gre(ends[side], ends[other], payload, version=1, protocol=_GRE_PPTP,
                         key=pptp_key)  # fmt: skip
            note = f"PPTP GRE {size} B call id {call[other]:#x}"
        direction = "original" if side == "c" else "reply"
        out.append(Packet(clock.next(), P.set_ttl(data, ttl[side]), direction, note))
    return Flow("gre", TupleArgs(a, b, P.IPPROTO_GRE), tuple(out))


# --- any flow -----------------------------------------------------------------------------------

_FLOW_KINDS: Final = ("tcp", "udp", "udplite", "icmp", "sctp", "gre")


def flows(
    *, family: int | None = None, protocols: Sequence[str] | None = None
) -> SearchStrategy[Flow]:
    """A valid flow of any kind: :func:`tcp_flows`, :func:`udp_flows` (UDP and UDPLITE),
    :func:`icmp_flows` (echo and errors), :func:`sctp_flows` and :func:`gre_flows`;
    `protocols` restricts them to some of ``"tcp"``, ``"udp"``, ``"udplite"``, ``"icmp"``
    (ICMP or ICMPv6 by family, echo and errors), ``"sctp"``, ``"gre"``.

    >>> from hypothesis import given
    >>> from nfct.strategies import flows
    >>> @given(flows(family=6))
    ... def test_ipv6(flow):
    ...     assert all(data[0] >> 4 == 6 for _, data in flow)
    >>> test_ipv6()
    """
    chosen = tuple(protocols) if protocols is not None else _FLOW_KINDS
    unknown = set(chosen) - set(_FLOW_KINDS)
    if unknown or not chosen:
        raise ValueError(f"protocols must be some of {_FLOW_KINDS}, not {protocols!r}")
    parts: list[SearchStrategy[Flow]] = []
    if "tcp" in chosen:
        parts.append(tcp_flows(family=family))
    if "udp" in chosen:
        parts.append(udp_flows(family=family, lite=False))
    if "icmp" in chosen:
        parts.append(icmp_flows(family=family))
    if "sctp" in chosen:
        parts.append(sctp_flows(family=family))
    if "udplite" in chosen:
        parts.append(udp_flows(family=family, lite=True))
    if "gre" in chosen:
        parts.append(gre_flows(family=family))
    return st.one_of(parts)


# `mutated` and `traces` take a `flows` argument; this is the default for it.
_any_flow: Final = flows

# --- mutations ----------------------------------------------------------------------------------


def _l4(data: bytes) -> tuple[int, int] | None:
    """(protocol, L4 offset) of an unfragmented packet, else None."""
    try:
        return P.l4_offset(data)
    except ValueError:
        return None


def _direction(flow: Flow, data: bytes) -> str:
    src, _ = _endpoints_of(data)
    if src == flow.orig.src:
        return "original"
    if src == flow.orig.dst:
        return "reply"
    return "other"


class _Mutation:
    """One kind of mutation: which packets it can apply to, and how."""

    def __init__(
        self,
        name: str,
        fits: Callable[[bytes], bool],
        apply: Callable[[DrawFn, Flow, list[Packet], int], str],
        *,
        min_packets: int = 1,
    ) -> None:
        self.name = name
        self.fits = fits
        self.apply = apply
        self.min_packets = min_packets

    def candidates(self, flow: Flow) -> list[int]:
        if len(flow.packets) < self.min_packets:
            return []
        return [i for i, p in enumerate(flow.packets) if self.fits(p.data)]


def _any(data: bytes) -> bool:
    return True


def _unfragmented(data: bytes) -> bool:
    return _l4(data) is not None


# Where each protocol's checksum ends: a packet cut shorter has none to break.
_CHECKSUM_END: Final = {
    P.IPPROTO_TCP: 18,
    P.IPPROTO_UDP: 8,
    P.IPPROTO_UDPLITE: 8,
    P.IPPROTO_ICMP: 4,
    P.IPPROTO_ICMPV6: 4,
    P.IPPROTO_SCTP: 12,
}


def _checksummed(data: bytes) -> bool:
    parsed = _l4(data)
    return (
        parsed is not None
        and parsed[0] in _CHECKSUM_END
        and len(data) - parsed[1] >= _CHECKSUM_END[parsed[0]]
    )


def _whole_tcp(data: bytes) -> bool:
    parsed = _l4(data)
    return parsed is not None and parsed[0] == P.IPPROTO_TCP and len(data) - parsed[1] >= 20


def _tcp_not_syn(data: bytes) -> bool:
    return _whole_tcp(data) and not data[P.l4_offset(data)[1] + 13] & P.TCP_SYN


def _m_loss(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    del pkts[i]
    return f"loss: #{i} lost"


def _m_duplicate(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    pkts.insert(i + 1, replace(pkts[i], note=f"duplicate of #{i}"))
    return f"duplicate: #{i} twice"


def _m_reorder(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    j = draw(st.integers(i + 1, len(pkts) - 1)) if i + 1 < len(pkts) else len(pkts) - 1
    p = pkts.pop(i)
    pkts.insert(j, replace(p, tstamp=pkts[j - 1].tstamp, note=f"{p.note} (sent before #{i + 1})"))
    return f"reorder: #{i} arrives after #{j}"


def _m_retransmit(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    j = draw(st.integers(i + 1, len(pkts)))
    t = pkts[j - 1].tstamp + draw(st.integers(1, US)) / US
    pkts.insert(j, replace(pkts[i], tstamp=t, note=f"#{i} sent again"))
    return f"retransmit: #{i} again after #{j - 1}"


def _udplite_bad_checksums(data: bytes, off: int) -> list[tuple[int, str]]:
    """Checksums conntrack rejects on this UDPLITE packet that a sender could well compute:
    none (0), the RFC 3828 one (pseudo-header protocol 136 and the whole length) and, over
    IPv4 from 256 bytes on, the UDP-style one (protocol 17 and the whole length, where
    conntrack has the low byte of the length: :func:`nfct.packets.udplite_pseudo_length`)."""
    seg = data[off:]
    cov = struct.unpack("!H", seg[4:6])[0]
    if cov and not 8 <= cov <= len(seg):
        return [(0, "checksum 0 (missing)")]
    src, dst = P.ip_addresses(data)
    zeroed = seg[:6] + b"\0\0" + seg[8:]
    covered = zeroed if cov == 0 else zeroed[:cov]
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)

    def value(proto: int) -> int:
        return P.inet_checksum(P.pseudo_header(s, d, proto, len(seg)) + covered) or 0xFFFF

    out = [(0, "checksum 0 (missing)"), (value(P.IPPROTO_UDPLITE), "L4 checksum (RFC 3828's)")]
    if data[0] >> 4 == 4 and len(seg) >= 256:
        out.append((value(P.IPPROTO_UDP), "L4 checksum (UDP's, whole length)"))
    return out


def _m_bad_checksum(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    proto, off = P.l4_offset(data)
    out = bytearray(data)
    if data[0] >> 4 == 4 and draw(st.integers(0, 4)) == 0:
        out[10] ^= draw(st.integers(1, 255))
        what = "IPv4 header checksum"
    elif proto == P.IPPROTO_SCTP:
        out[off + 8] ^= draw(st.integers(1, 255))
        what = "CRC32c"
    else:
        at = off + {P.IPPROTO_TCP: 16, P.IPPROTO_UDP: 6, P.IPPROTO_UDPLITE: 6}.get(proto, 2)
        if proto == P.IPPROTO_UDPLITE and draw(st.booleans()):
            value, what = draw(st.sampled_from(_udplite_bad_checksums(data, off)))
        else:
            old = struct.unpack("!H", out[at : at + 2])[0]
            value = old ^ draw(st.integers(1, 0xFFFF))
            if value == 0 and proto == P.IPPROTO_UDP:
                value = 1 if old != 1 else 2  # 0 would mean "no checksum"
            what = "L4 checksum"
        out[at : at + 2] = struct.pack("!H", value)
    pkts[i] = replace(pkts[i], data=bytes(out), note=f"{pkts[i].note}, bad {what}")
    return f"bad_checksum: #{i} bad {what}"


def _fragmentable(data: bytes) -> bool:
    """Unfragmented, with enough payload for two fragments (IPv6: the first holding 64
    bytes, the whole L4 header), no IPv6 extension headers."""
    parsed = _l4(data)
    if parsed is None:
        return False
    if data[0] >> 4 == 6:
        return parsed[1] == 40 and len(data) - 40 > 64
    return len(data) - parsed[1] > 8


def _m_fragment(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    v6 = data[0] >> 4 == 6
    _, off = P.l4_offset(data)
    payload_len = len(data) - off
    # IPv6 fragments keep the whole L4 header in the first one (RFC 7112); _fragmentable
    # made sure there is room for two fragments.
    low = 64 if v6 else 8
    size = 8 * draw(st.integers(low // 8, (payload_len - 1) // 8))
    ident = draw(st.integers(1, 0xFFFF if not v6 else _U32))
    if v6:
        frags = [P.ipv6_fragment(data, o, size, ident) for o in range(0, payload_len, size)]
    else:
        tagged = bytearray(data)
        tagged[4:6] = struct.pack("!H", ident)
        tagged[10:12] = b"\0\0"
        tagged[10:12] = struct.pack("!H", P.inet_checksum(bytes(tagged[:off])))
        frags = [P.ipv4_fragment(bytes(tagged), o, size) for o in range(0, payload_len, size)]
    notes = [f"fragment {k + 1}/{len(frags)} of #{i}" for k in range(len(frags))]
    how = draw(st.sampled_from(["in order", "out of order", "duplicate", "overlap", "incomplete"]))
    order = list(range(len(frags)))
    extra: list[tuple[bytes, str]] = []
    if how == "out of order":
        order = list(draw(st.permutations(order)))
    elif how == "duplicate":
        k = draw(st.sampled_from(order))
        order.insert(order.index(k) + 1, k)
    elif how == "incomplete":
        order.remove(draw(st.sampled_from(order)))
    elif how == "overlap":
        # A fragment 8 bytes longer than its slot, running into the next one.
        k = draw(st.integers(0, len(frags) - 2)) if len(frags) > 1 else 0
        o = k * size
        more = o + size + 8 < payload_len
        base = bytes(data) if v6 else bytes(tagged)
        big = (
            P.ipv6_fragment(base, o, size + 8, ident, more=more)
            if v6
            else P.ipv4_fragment(base, o, size + 8, more=more)
        )
        extra.append((big, f"fragment overlapping {k + 2}/{len(frags)} of #{i}"))
    seq = [(frags[k], notes[k]) for k in order] + extra
    t = pkts[i].tstamp
    base_note = pkts[i].note
    pkts[i : i + 1] = [
        replace(pkts[i], tstamp=t, data=d, note=f"{n} ({base_note})") for d, n in seq
    ]
    return f"fragment: #{i} in {len(frags)} fragments of {size} B, {how}"


def _m_truncate(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    _, off = P.l4_offset(data)
    longest = max(0, len(data) - off - 1)
    # Often within the headers, where the length checks are: each of their first 8 bytes and
    # the ends of the usual headers (UDP 8, SCTP common 12, TCP 20, SCTP INIT 32, ...).
    near = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 16, 19, 20, 24, 31, 32, 40])
    keep = min(draw(st.one_of(near, st.integers(0, longest))), longest)
    # The checksum is right for what is left (a sender's bug, not a transmission error).
    cut = P.fix_checksum(P.replace_l4(data, data[off : off + keep]))
    pkts[i] = replace(pkts[i], data=cut, note=f"{pkts[i].note}, cut to {keep} B of L4")
    return f"truncate: #{i} L4 cut to {keep} B"


# The bytes of each L4 header a field mutation may change (the checksum is recomputed).
_HEADER_BYTES: Final = {
    P.IPPROTO_TCP: [b for b in range(20) if b not in (16, 17)],
    P.IPPROTO_UDP: [0, 1, 2, 3, 4, 5],
    P.IPPROTO_UDPLITE: [0, 1, 2, 3, 4, 5],
    P.IPPROTO_ICMP: [0, 1, 4, 5, 6, 7],
    P.IPPROTO_ICMPV6: [0, 1, 4, 5, 6, 7],
    P.IPPROTO_SCTP: [b for b in range(32) if not 8 <= b < 12],
}


def _m_field(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    proto, off = P.l4_offset(data)
    choices = [b for b in _HEADER_BYTES.get(proto, range(8)) if off + b < len(data)]
    if not choices:
        return _m_truncate(draw, flow, pkts, i)
    b = draw(st.sampled_from(choices))
    value = draw(st.one_of(st.sampled_from([0, 0xFF, 1]), st.integers(0, 255)))
    if value == data[off + b]:
        value = (value + 1) % 256
    out = bytearray(data)
    out[off + b] = value
    pkts[i] = replace(
        pkts[i], data=P.fix_checksum(bytes(out)), note=f"{pkts[i].note}, L4 byte {b} = {value}"
    )
    return f"field: #{i} L4 byte {b} set to {value}"


def _m_flags(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    _, off = P.l4_offset(data)
    flags = draw(st.integers(0, 255))
    out = bytearray(data)
    out[off + 13] = flags
    letters = P.describe(bytes(out)).split("[", 1)[-1].split("]", 1)[0]
    pkts[i] = replace(
        pkts[i], data=P.fix_checksum(bytes(out)), note=f"{pkts[i].note}, flags [{letters}]"
    )
    return f"flags: #{i} flags [{letters}]"


def _m_out_of_window(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    _, off = P.l4_offset(data)
    seq, ack = struct.unpack("!II", data[off + 4 : off + 12])
    shift = draw(st.integers(70_000, 0x7FFFFFFF))
    which = draw(st.sampled_from(["seq ahead", "ack ahead", "seq behind"]))
    if which == "seq ahead":
        seq = (seq + shift) & _U32
    elif which == "ack ahead":
        ack = (ack + shift) & _U32
    else:
        seq = (seq - shift) & _U32
    out = bytearray(data)
    out[off + 4 : off + 12] = struct.pack("!II", seq, ack)
    t = pkts[i].tstamp
    pkts.insert(
        i + 1,
        Packet(t, P.fix_checksum(bytes(out)), pkts[i].direction, f"#{i} with {which} by {shift}"),
    )
    return f"out_of_window: #{i} again, {which} by {shift}"


def _tcp_next(pkts: Sequence[Packet], upto: int, src: str) -> tuple[int, int] | None:
    """(next sequence number from `src`, next from its peer) after the first `upto` packets."""
    nxt: dict[bool, int] = {}
    for p in pkts[:upto]:
        parsed = _l4(p.data)
        if parsed is None or parsed[0] != P.IPPROTO_TCP or len(p.data) < parsed[1] + 20:
            continue
        off = parsed[1]
        seq = struct.unpack("!I", p.data[off + 4 : off + 8])[0]
        flags = p.data[off + 13]
        hlen = (p.data[off + 12] >> 4) * 4
        end = (
            seq
            + len(p.data)
            - off
            - hlen
            + (1 if flags & P.TCP_SYN else 0)
            + (1 if flags & P.TCP_FIN else 0)
        ) & _U32
        mine = _endpoints_of(p.data)[0] == src
        if mine not in nxt or _after(end, nxt[mine]):
            nxt[mine] = end
    if True not in nxt:
        return None
    return nxt[True], nxt.get(False, 0)


def _m_rst(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    # A RST from the sender of packet i, inserted right after it.
    data = pkts[i].data
    _, off = P.l4_offset(data)
    src, dst = _endpoints_of(data)
    sport, dport = struct.unpack("!HH", data[off : off + 4])
    state = _tcp_next(pkts, i + 1, src)
    mine, peers = state if state is not None else (0, 0)
    which = draw(st.sampled_from(["behind", "exact", "behind", "ahead", "random"]))
    if which == "exact":
        seq = mine
    elif which == "behind":
        seq = (mine - draw(st.integers(1, 65535))) & _U32
    elif which == "ahead":
        seq = (mine + draw(st.integers(1, 65535))) & _U32
    else:
        seq = draw(st.integers(0, _U32))
    flags = draw(st.sampled_from(["R", "RA"]))
    rst = P.tcp(
        src, dst, sport, dport, seq=seq, ack=peers if "A" in flags else 0, flags=flags, window=0
    )
    pkts.insert(i + 1, Packet(pkts[i].tstamp, rst, pkts[i].direction, f"RST, seq {which} ({seq})"))
    return f"rst: RST with seq {which} after #{i}"


def _m_icmp_error(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    quoted = pkts[i].data
    v6 = quoted[0] >> 4 == 6
    qsrc, qdst = _endpoints_of(quoted)
    which = draw(
        st.sampled_from(
            [
                "valid",
                "from a router",
                "to a third host",
                "quoting an unknown flow",
                "inner truncated",
                "inner fragment",
                "quoting an ICMP error",
            ]
        )
    )
    src, dst = qdst, qsrc
    inner = quoted
    if which == "from a router":
        src = _other(draw, 6 if v6 else 4, qsrc, qdst)
    elif which == "to a third host":
        dst = _other(draw, 6 if v6 else 4, qsrc, qdst)
    elif which == "quoting an unknown flow" and len(quoted) - P.l4_offset(quoted)[1] >= 2:
        _, off = P.l4_offset(quoted)
        out = bytearray(quoted)
        out[off + 1] ^= draw(st.integers(1, 255))  # another port or ICMP code
        inner = bytes(out)
    elif which == "inner truncated":
        _, off = P.l4_offset(quoted)
        inner = quoted[: off + draw(st.integers(0, 3))]
    elif which == "inner fragment":
        if v6:
            inner = quoted[: draw(st.integers(0, 39))]  # not even an IPv6 header
        else:
            out = bytearray(quoted)
            out[6:8] = struct.pack("!H", draw(st.integers(1, 0x1FFF)))
            inner = bytes(out)
    elif which == "quoting an ICMP error":
        inner = (
            P.icmp6_error(qdst, qsrc, 1, 4, quoted)
            if v6
            else P.icmp_error(qdst, qsrc, 3, 3, quoted)
        )
    if v6:
        error = P.icmp6_error(src, dst, 1, 4, inner)
    else:
        error = P.icmp_error(src, dst, 3, 3, inner, quote_len=max(28, min(len(inner), 548)))
    direction = _direction(flow, error)
    pkts.insert(
        i + 1, Packet(pkts[i].tstamp, error, direction, f"ICMP error quoting #{i}, {which}")
    )
    return f"icmp_error: an ICMP error quoting #{i}, {which}"


def _sctp_vtag(pkts: Sequence[Packet], src: str) -> int:
    """The last non-zero verification tag of SCTP packets from `src`."""
    tag = 0
    for p in pkts:
        parsed = _l4(p.data)
        if (
            parsed
            and parsed[0] == P.IPPROTO_SCTP
            and len(p.data) >= parsed[1] + 8
            and _endpoints_of(p.data)[0] == src
        ):
            v = struct.unpack("!I", p.data[parsed[1] + 4 : parsed[1] + 8])[0]
            tag = v or tag
    return tag


_SCTP_INJECT: Final = (
    P.SCTP_INIT,
    P.SCTP_INIT_ACK,
    P.SCTP_ABORT,
    P.SCTP_SHUTDOWN,
    P.SCTP_SHUTDOWN_ACK,
    P.SCTP_ERROR,
    P.SCTP_COOKIE_ECHO,
    P.SCTP_COOKIE_ACK,
    P.SCTP_SHUTDOWN_COMPLETE,
    P.SCTP_HEARTBEAT,
    P.SCTP_HEARTBEAT_ACK,
    P.SCTP_DATA,
    P.SCTP_SACK,
)


def _sctp_inject_chunk(draw: DrawFn) -> tuple[bytes, str]:
    typ = draw(st.sampled_from(_SCTP_INJECT))
    name = (
        P.describe(P.sctp("10.0.0.1", "10.0.0.2", 1, 2, 0, P.sctp_chunk(typ)))
        .split("[", 1)[1]
        .split("]")[0]
    )
    if typ in (P.SCTP_INIT, P.SCTP_INIT_ACK):
        body = P.sctp_init_body(draw(st.integers(0, _U32)))
        if draw(st.integers(0, 3)) == 0:
            body = body[: draw(st.integers(0, len(body) - 1))]
            name += " (truncated)"
        return P.sctp_chunk(typ, body), name
    if typ == P.SCTP_DATA:
        return P.sctp_data_chunk(draw(st.integers(0, _U32)), b"x"), name
    if typ == P.SCTP_SACK:
        return P.sctp_sack_chunk(draw(st.integers(0, _U32))), name
    if typ in (P.SCTP_HEARTBEAT, P.SCTP_HEARTBEAT_ACK):
        return P.sctp_chunk(typ, P.sctp_heartbeat_info()), name
    flags = P.SCTP_FLAG_T if draw(st.booleans()) else 0
    return P.sctp_chunk(typ, flags=flags), name + (" T" if flags else "")


# INIT and INIT_ACK twice: they have the most ways to go wrong.
_SCTP_RECIPES: Final = (
    "chunks",
    "collision",
    "INIT",
    "INIT_ACK",
    "INIT",
    "INIT_ACK",
    "foreign HEARTBEAT",
    "foreign HEARTBEAT_ACK",
    "no chunks",
    "zero-length chunk",
    "bad bundle",
)


def _sctp_inject(
    draw: DrawFn,
    flow: Flow,
    before: Sequence[Packet],
    src: str,
    dst: str,
    sport: int,
    dport: int,
) -> tuple[bytes, str, int]:
    """An SCTP packet for the association of `before` (the packets so far), from `src`, and
    where it goes (right after `before`, or after the first packet for a collision)."""
    recipe = draw(st.sampled_from(_SCTP_RECIPES))
    if recipe == "collision":
        # The peer of the flow's first sender sends its own INIT (an initialization
        # collision, RFC 9260 §5.2.1).
        o = flow.orig
        src, dst, sport, dport = o.dst, o.src, o.dport or 0, o.sport or 0
    right = _sctp_vtag(before, src)
    if recipe == "collision":
        body = P.sctp_init_body(draw(st.integers(1, _U32)))
        chunk = P.sctp_chunk(P.SCTP_INIT, body)
        return P.sctp(src, dst, sport, dport, 0, chunk), "injected SCTP [INIT] from the peer", 1
    elif recipe == "chunks":
        first, name = _sctp_inject_chunk(draw)
        chunks = [first]
        if draw(st.integers(0, 2)) == 0:
            second, name2 = _sctp_inject_chunk(draw)
            chunks.append(second)
            name += f", {name2}"
        tag_kind = draw(st.sampled_from(["right", "zero", "random"]))
        vtag = {"right": right, "zero": 0}.get(tag_kind)
        if vtag is None:
            vtag = draw(st.integers(1, _U32))
        note = f"[{name}] vtag {tag_kind}"
    elif recipe in ("INIT", "INIT_ACK"):
        typ = P.SCTP_INIT if recipe == "INIT" else P.SCTP_INIT_ACK
        body = P.sctp_init_body(draw(st.integers(1, _U32)))
        truncated = draw(st.booleans())
        if truncated:
            body = body[: draw(st.integers(0, len(body) - 1))]
        vtag = draw(st.sampled_from([0, 0, right, right ^ 1])) if typ == P.SCTP_INIT else right
        chunks = [P.sctp_chunk(typ, body)]
        note = f"[{recipe}{' truncated' if truncated else ''}, new tag] vtag {vtag:#x}"
    elif recipe == "foreign HEARTBEAT":
        vtag = right ^ draw(st.integers(1, _U32))
        second = (
            P.sctp_data_chunk(1, b"x")
            if draw(st.booleans())
            else P.sctp_chunk(P.SCTP_HEARTBEAT, P.sctp_heartbeat_info())
        )
        chunks = [P.sctp_chunk(P.SCTP_HEARTBEAT, P.sctp_heartbeat_info()), second]
        note = "[HEARTBEAT, DATA or HEARTBEAT] with a foreign tag"
    elif recipe == "foreign HEARTBEAT_ACK":
        vtag = right ^ draw(st.integers(1, _U32))
        chunks = [P.sctp_chunk(P.SCTP_HEARTBEAT_ACK, P.sctp_heartbeat_info())]
        note = "[HEARTBEAT_ACK] with a foreign tag"
    elif recipe == "bad bundle":
        # INIT, INIT_ACK or SHUTDOWN_COMPLETE not alone, or COOKIE_ECHO/COOKIE_ACK not first.
        vtag = right
        lone = draw(st.sampled_from([P.SCTP_INIT, P.SCTP_INIT_ACK, P.SCTP_SHUTDOWN_COMPLETE]))
        body = (
            P.sctp_init_body(draw(st.integers(1, _U32)))
            if lone != P.SCTP_SHUTDOWN_COMPLETE
            else b""
        )
        cookie = P.sctp_chunk(draw(st.sampled_from([P.SCTP_COOKIE_ECHO, P.SCTP_COOKIE_ACK])))
        data = P.sctp_data_chunk(1, b"x")
        chunks = draw(
            st.sampled_from(
                [[P.sctp_chunk(lone, body), data], [data, P.sctp_chunk(lone, body)], [data, cookie]]
            )
        )
        note = "chunks bundled against the rules"
    elif recipe == "no chunks":
        vtag, chunks, note = right, [], "no chunks"
    else:
        vtag = right
        chunks = [P.sctp_chunk(P.SCTP_DATA, b"\0" * 12, length=0)]
        note = "[DATA] with chunk length 0"
    return P.sctp(src, dst, sport, dport, vtag, *chunks), f"injected SCTP {note}", len(before)


def _m_inject(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    proto, off = P.l4_offset(data)
    # From either end of packet i, right after it.
    src, dst = _endpoints_of(data)
    if draw(st.booleans()):
        src, dst = dst, src
    if proto == P.IPPROTO_SCTP:
        sport, dport = struct.unpack("!HH", data[off : off + 4])
        if src != _endpoints_of(data)[0]:
            sport, dport = dport, sport
        pkt, note, at = _sctp_inject(draw, flow, pkts[: i + 1], src, dst, sport, dport)
        pkts.insert(at, Packet(pkts[at - 1].tstamp, pkt, _direction(flow, pkt), note))
        return f"inject: {note} after #{at - 1}"
    else:
        v6 = proto == P.IPPROTO_ICMPV6
        ident = struct.unpack("!H", data[off + 4 : off + 6])[0]
        kind = draw(st.sampled_from(["type", "redirect"] if v6 else ["type"]))
        if kind == "redirect":
            # From a link-local router with hop limit 255 and a redirected header, as RFC 4861
            # wants, or one of them wrong.
            how = draw(
                st.sampled_from(["valid", "hop limit 64", "global source", "no redirected header"])
            )
            pkt = P.icmp6_redirect(
                src if how == "global source" else "fe80::1",
                dst,
                "fe80::2",
                src,
                redirected=None if how == "no redirected header" else data[:48],
                hop_limit=64 if how == "hop limit 64" else 255,
            )
            note = f"injected ICMPv6 redirect ({how})"
        else:
            typ = draw(st.integers(0, 255))
            code = draw(st.sampled_from([0, 0, 1, 3]))
            rest = struct.pack("!HH", ident, 1)
            pkt = (
                P.icmp6(src, dst, typ, code, rest, b"x" * 8)
                if v6
                else P.ipv4(src, dst, P.IPPROTO_ICMP, P.icmp_message(typ, code, rest, b"x" * 8))
            )
            note = f"injected ICMP{'v6' if v6 else ''} type {typ} code {code}"
    pkts.insert(i + 1, Packet(pkts[i].tstamp, pkt, _direction(flow, pkt), note))
    return f"inject: {note} after #{i}"


def _injectable(data: bytes) -> bool:
    parsed = _l4(data)
    if parsed is None:
        return False
    need = {P.IPPROTO_SCTP: 12, P.IPPROTO_ICMP: 8, P.IPPROTO_ICMPV6: 8}.get(parsed[0])
    return need is not None and len(data) - parsed[1] >= need


def _sctp_tagged(data: bytes) -> bool:
    parsed = _l4(data)
    return parsed is not None and parsed[0] == P.IPPROTO_SCTP and len(data) >= parsed[1] + 12


def _m_vtag(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    data = pkts[i].data
    _, off = P.l4_offset(data)
    dst = _endpoints_of(data)[1]
    old = struct.unpack("!I", data[off + 4 : off + 8])[0]
    which = draw(st.sampled_from(["zero", "the peer's", "random"]))
    if which == "zero":
        tag = 0
    elif which == "the peer's":
        tag = _sctp_vtag(pkts, dst)
    else:
        tag = draw(st.integers(1, _U32))
    if tag == old:
        tag = old ^ 1
    out = bytearray(data)
    out[off + 4 : off + 8] = struct.pack("!I", tag)
    note = f"{pkts[i].note}, vtag {which} ({tag:#x})"
    pkts[i] = replace(pkts[i], data=P.fix_checksum(bytes(out)), note=note)
    return f"vtag: #{i} with vtag {which}"


def _m_ttl(draw: DrawFn, flow: Flow, pkts: list[Packet], i: int) -> str:
    ttl = draw(st.sampled_from([1, 0]))
    pkts[i] = replace(pkts[i], data=P.set_ttl(pkts[i].data, ttl), note=f"{pkts[i].note}, TTL {ttl}")
    return f"ttl: #{i} with TTL {ttl}"


_MUTATORS: Final = {
    m.name: m
    for m in (
        _Mutation("loss", _any, _m_loss, min_packets=2),
        _Mutation("duplicate", _any, _m_duplicate),
        _Mutation("reorder", _any, _m_reorder, min_packets=2),
        _Mutation("retransmit", _any, _m_retransmit, min_packets=2),
        _Mutation("bad_checksum", _checksummed, _m_bad_checksum),
        _Mutation("fragment", _fragmentable, _m_fragment),
        _Mutation("truncate", _unfragmented, _m_truncate),
        _Mutation("field", _checksummed, _m_field),
        _Mutation("flags", _whole_tcp, _m_flags),
        _Mutation("out_of_window", _tcp_not_syn, _m_out_of_window),
        _Mutation("rst", _whole_tcp, _m_rst),
        _Mutation("icmp_error", _unfragmented, _m_icmp_error),
        _Mutation("inject", _injectable, _m_inject),
        _Mutation("vtag", _sctp_tagged, _m_vtag),
        _Mutation("ttl", _any, _m_ttl),
    )
}

#: The kinds of mutation :func:`mutated` applies, simplest first (shrinking prefers them).
MUTATIONS: Final = tuple(_MUTATORS)


@st.composite
def mutated(
    draw: DrawFn,
    flows: SearchStrategy[Flow] | None = None,
    *,
    kinds: Sequence[str] | None = None,
    max_mutations: int = 3,
) -> Flow:
    """Flows (from `flows`, default :func:`flows`) with 1 to `max_mutations` mutations, each
    of a kind from `kinds` (default all of :data:`MUTATIONS`) that applies to the flow:

    * ``loss``, ``duplicate``, ``reorder``, ``retransmit`` (a packet sent again later);
    * ``bad_checksum`` (L4 checksum, CRC32c, IPv4 header checksum, UDPLITE's missing one);
    * ``fragment`` (IPv4 or IPv6 fragments in order, out of order, duplicated, overlapping,
      or one missing);
    * ``truncate`` (the L4 header or data cut short, lengths consistent);
    * ``field`` (one L4 header byte changed, checksum recomputed: ports, lengths, data
      offset, ICMP type and code, SCTP tags and chunk headers...);
    * ``flags`` (any TCP flag byte), ``out_of_window`` (a TCP segment again with its
      sequence or acknowledgement number far off), ``rst`` (a RST with the exact, an earlier,
      a later or a random sequence number);
    * ``icmp_error`` (an ICMP error quoting a packet: valid, from a router, to the wrong host,
      quoting an unknown flow, a truncated or fragmented inner packet, or an ICMP error);
    * ``inject`` (SCTP packets: chunks with right, zero or random tags, INITs and INIT_ACKs
      with new tags, foreign HEARTBEATs, chunks bundled against the rules, no chunks, a
      zero-length chunk; ICMP messages of any type; ICMPv6 redirects, valid or not);
    * ``vtag`` (an SCTP packet with a zero, the peer's or a random verification tag);
    * ``ttl`` (TTL 0 or 1: the router drops the packet).

    Each mutation is recorded in ``flow.mutations`` and in the notes of the packets it made.

    >>> from hypothesis import given
    >>> from nfct.strategies import mutated, tcp_flows
    >>> @given(mutated(tcp_flows(), kinds=["rst", "out_of_window"]))
    ... def test_my_tracker_survives(flow):
    ...     assert flow.mutations
    >>> test_my_tracker_survives()
    """
    names = tuple(kinds) if kinds is not None else MUTATIONS
    unknown = set(names) - set(MUTATIONS)
    if unknown or not names:
        raise ValueError(f"kinds must be some of {MUTATIONS}, not {kinds!r}")
    flow = draw(flows if flows is not None else _any_flow())
    for _ in range(draw(st.integers(1, max_mutations))):
        usable = [(m, c) for m in (_MUTATORS[n] for n in names) if (c := m.candidates(flow))]
        if not usable:
            break
        m, cands = draw(st.sampled_from(usable))
        # Half the time early packets more often: the handshakes, where the state machines
        # have the most to say.
        k = draw(st.integers(0, len(cands) - 1))
        i = cands[draw(st.integers(0, k)) if draw(st.booleans()) else k]
        pkts = list(flow.packets)
        note = m.apply(draw, flow, pkts, i)
        flow = replace(flow, packets=_retime(pkts), mutations=(*flow.mutations, note))
    return flow


# --- traces -------------------------------------------------------------------------------------


@st.composite
def traces(
    draw: DrawFn,
    flows: SearchStrategy[Flow] | None = None,
    *,
    min_flows: int = 1,
    max_flows: int = 4,
    idle: bool = True,
    max_idle: float | None = None,
    start: float = 0.0,
) -> Trace:
    """Several flows (from `flows`, default :func:`flows`; no two of them the same
    connection) interleaved on a monotone clock starting at `start` seconds: each flow starts
    up to 2 s after the previous one, and with `idle` up to three idle gaps anywhere
    (:func:`idle_gaps`, capped at `max_idle` seconds) can make entries expire or not.

    >>> from hypothesis import given
    >>> from nfct.strategies import traces, mutated
    >>> @given(traces(mutated(), max_flows=2, idle=False))
    ... def test_monotone(trace):
    ...     times = [t for t, _ in trace]
    ...     assert times == sorted(times)
    >>> test_monotone()
    """
    source = flows if flows is not None else _any_flow()
    chosen = draw(st.lists(source, min_size=min_flows, max_size=max_flows, unique_by=Flow.key))
    offset = round(start * US)
    placed = []
    for k, f in enumerate(chosen):
        if k:
            offset += draw(st.integers(0, 2 * US))
        placed.append(f.shifted(offset / US))
    trace = Trace.of(*placed)
    trace = Trace(_retime(trace.packets), trace.flows, trace.title)
    if idle and len(trace.packets) > 1:
        gaps = draw(
            st.lists(
                st.tuples(st.integers(1, len(trace.packets) - 1), idle_gaps(max_seconds=max_idle)),
                max_size=3,
            )
        )
        if gaps:
            shift = [0] * len(trace.packets)
            for pos, gap in gaps:
                for j in range(pos, len(shift)):
                    shift[j] += gap
            pkts = [
                replace(p, tstamp=(round(p.tstamp * US) + s) / US)
                for p, s in zip(trace.packets, shift, strict=True)
            ]
            trace = Trace(_retime(pkts), trace.flows, trace.title)
    return trace


# --- scenarios ----------------------------------------------------------------------------------


def _dns_message(ident: int, name: str, qtype: int, answer: bytes | None = None) -> bytes:
    """A DNS query (or, with `answer` rdata, a response with one answer) in wire format."""
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    question = qname + struct.pack("!HH", qtype, 1)
    if answer is None:
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
    rr = struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(answer)) + answer
    return struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + rr


@st.composite
def dns_race(draw: DrawFn, *, family: int | None = None) -> Trace:
    """The DNS A/AAAA race: a resolver sends the A and AAAA queries from the same socket
    (same 5-tuple) microseconds apart, before any answer, as glibc does; the answers come
    back in either order, sometimes one of them twice. On a multi-CPU kernel the two queries
    race to create the same entry (the clash resolution of spec §5.1); one CPU, nfct and this
    trace see the second query find the first one's entry: both queries ``new``, the answers
    ``established``.

    >>> from hypothesis import given
    >>> from nfct.strategies import dns_race
    >>> @given(dns_race())
    ... def test_race(trace):
    ...     assert len(trace) >= 4
    >>> test_race()
    """
    fam = draw(_family(family))
    client, resolver = _two_hosts(draw, fam)
    cport = draw(ports(ephemeral=True))
    qid = draw(st.integers(0, 0xFFFE))
    name = "www.example.test"
    a_rdata = ipaddress.IPv4Address(draw(addresses(4))).packed
    aaaa_rdata = ipaddress.IPv6Address(draw(addresses(6))).packed
    queries = [
        (_dns_message(qid, name, 1), "A query"),
        (_dns_message(qid + 1, name, 28), "AAAA query, same socket"),
    ]
    answers = [
        (_dns_message(qid, name, 1, a_rdata), "A answer"),
        (_dns_message(qid + 1, name, 28, aaaa_rdata), "AAAA answer"),
    ]
    if draw(st.booleans()):
        answers.reverse()
    if draw(st.booleans()):
        answers.append((answers[0][0], answers[0][1] + " again"))
    t = 0
    out = []
    for payload, note in queries:
        out.append(Packet(t / US, P.udp(client, resolver, cport, 53, payload), "original", note))
        t += draw(st.integers(1, 100))
    for payload, note in answers:
        t += draw(st.integers(100, 50_000))
        out.append(Packet(t / US, P.udp(resolver, client, 53, cport, payload), "reply", note))
    flow = Flow("udp", TupleArgs(client, resolver, P.IPPROTO_UDP, cport, 53), tuple(out))
    return Trace.of(flow, title="dns_race")


@st.composite
def port_reuse(draw: DrawFn, *, family: int | None = None) -> Trace:
    """Source-port reuse: a TCP connection closes (FIN, leaving TIME_WAIT; or a RST from either
    side, leaving CLOSE, or no entry at all if the server refused it), then the same client port
    connects to the same server again, after a short pause or after the old entry's timeout
    (TIME_WAIT 120 s, CLOSE 10 s). After a FIN, or a RST from the client itself, the new SYN
    reopens the connection (spec §7.6 (a)): the old entry goes and the SYN is ``new``. After a
    RST from the server, the SYN finds the entry in CLOSE and is let through as ``established``
    without a new entry, until CLOSE's 10 s are over.

    >>> from hypothesis import given
    >>> from nfct.strategies import port_reuse
    >>> @given(port_reuse())
    ... def test_two_connections(trace):
    ...     assert len(trace.flows) == 2
    >>> test_two_connections()
    """
    fam = draw(_family(family))
    caddr, saddr = _two_hosts(draw, fam)
    ends = (caddr, draw(ports(ephemeral=True)), saddr, draw(ports(ephemeral=False)))
    first = draw(
        tcp_flows(mid_stream=False, teardown=draw(st.sampled_from(["fin", "rst"])), endpoints=ends)
    )
    second = draw(tcp_flows(mid_stream=False, endpoints=ends, max_segments=3))
    pause = draw(
        st.one_of(
            st.integers(1, 2 * US), st.integers(9 * US, 11 * US), st.integers(119 * US, 125 * US)
        )
    )
    last = round(first.packets[-1].tstamp * US)
    return Trace.of(first, second.shifted((last + pause) / US), title="port_reuse")


@st.composite
def stale_udp(draw: DrawFn, *, family: int | None = None) -> Trace:
    """A stale UDP flow: an exchange, then silence across the timeout (30 s unreplied or
    replied, 120 s for an ASSURED stream) or just short of it, then traffic on the same ports
    again, sometimes from the server first (after expiry: a new entry with the server as
    originator).

    >>> from hypothesis import given
    >>> from nfct.strategies import stale_udp
    >>> @given(stale_udp())
    ... def test_same_ports(trace):
    ...     assert trace.flows[0].key() == trace.flows[1].key()
    >>> test_same_ports()
    """
    fam = draw(_family(family))
    caddr, saddr = _two_hosts(draw, fam)
    cport, sport = draw(ports(ephemeral=True)), draw(ports(ephemeral=False))
    first = draw(udp_flows(lite=False, endpoints=(caddr, cport, saddr, sport)))
    if draw(st.booleans()):
        again = (saddr, sport, caddr, cport)
    else:
        again = (caddr, cport, saddr, sport)
    second = draw(udp_flows(lite=False, endpoints=again, max_packets=4))
    edge = draw(st.sampled_from([30, 120]))
    pause = edge * US + draw(st.integers(-2 * US, 2 * US))
    last = round(first.packets[-1].tstamp * US)
    return Trace.of(first, second.shifted((last + pause) / US), title="stale_udp")


@st.composite
def syn_flood(
    draw: DrawFn, *, family: int | None = None, max_flood: int = 64, max_established: int = 4
) -> Trace:
    """A SYN flood filling the table: up to `max_established` connections to a server complete
    their handshakes (ASSURED entries), then SYNs from many spoofed sources arrive, none
    answered, then the connections go on. Replay it with a small table, e.g.
    ``sysctl={"nf_conntrack_max": 16}``: ``early_drop`` evicts unreplied entries to make room
    and never an ASSURED one; once nothing can be evicted, new SYNs are ``dropped``. Which
    unreplied entry is evicted depends on the hash table's layout, which nfct and the kernel
    key randomly: a model cannot predict it, so compare classes, not tables, on this one
    (with ``nf_conntrack_max`` at most the number of established connections every flood SYN
    is dropped, which a model can predict).

    >>> from hypothesis import given
    >>> from nfct.strategies import syn_flood
    >>> @given(syn_flood(max_flood=8))
    ... def test_flood(trace):
    ...     assert any("flood" in p.note for p in trace.packets)
    >>> test_flood()
    """
    fam = draw(_family(family))
    server = draw(addresses(fam))
    sport = draw(ports(ephemeral=False))
    n_est = draw(st.integers(0, max_established))
    conns = []
    for _ in range(n_est):
        caddr = _other(draw, fam, server)
        ends = (caddr, draw(ports(ephemeral=True)), server, sport)
        conns.append(
            draw(tcp_flows(mid_stream=False, teardown="none", endpoints=ends, max_segments=3))
        )
    conns = [c for i, c in enumerate(conns) if c.key() not in {d.key() for d in conns[:i]}]
    t = 0
    heads, tails = [], []
    for c in conns:
        head = c.packets[:3]
        heads.append(replace(c, packets=tuple(replace(p, tstamp=p.tstamp + t / US) for p in head)))
        t = round(heads[-1].packets[-1].tstamp * US) + draw(st.integers(1, 1000))
    n_flood = draw(st.integers(1, max_flood))
    flood = []
    seen = {(c.orig.src, c.orig.sport) for c in conns}
    for _ in range(n_flood):
        src = _other(draw, fam, server)
        sp = draw(ports())
        while (src, sp) in seen:
            sp = sp % 65535 + 1
        seen.add((src, sp))
        syn = P.tcp(
            src,
            server,
            sp,
            sport,
            seq=draw(st.integers(0, _U32)),
            flags="S",
            options=P.tcp_syn_options(),
        )
        t += draw(st.integers(1, 500))
        flood.append(
            Flow(
                "tcp",
                TupleArgs(src, server, P.IPPROTO_TCP, sp, sport),
                (Packet(t / US, syn, "original", "flood SYN"),),
            )
        )
    for c, h in zip(conns, heads, strict=True):
        rest = c.packets[3:]
        if rest:
            shift = t + 1000 - round(rest[0].tstamp * US) + round(h.packets[0].tstamp * US)
            tails.append(
                replace(
                    c,
                    packets=tuple(
                        replace(p, tstamp=(round(p.tstamp * US) + max(shift, 0)) / US) for p in rest
                    ),
                )
            )
        else:
            tails.append(replace(c, packets=()))
    joined = [
        replace(h, packets=h.packets + tl.packets) for h, tl in zip(heads, tails, strict=True)
    ]
    return Trace.of(*joined, *flood, title="syn_flood")


def scenarios(*, family: int | None = None) -> SearchStrategy[Trace]:
    """Any of :func:`dns_race`, :func:`port_reuse`, :func:`stale_udp`, :func:`syn_flood`.

    >>> from hypothesis import given
    >>> from nfct.strategies import scenarios
    >>> @given(scenarios())
    ... def test_named(trace):
    ...     assert trace.title
    >>> test_named()
    """
    return st.one_of(
        dns_race(family=family),
        port_reuse(family=family),
        stale_udp(family=family),
        syn_flood(family=family),
    )
