"""Flows and traces of IP packets, as :mod:`nfct.strategies` generates them and
:mod:`nfct.testing` replays them (no Hypothesis needed to use them).

A :class:`Flow` is the packets of one connection (or of one ICMP error and the flow it quotes);
a :class:`Trace` is several flows interleaved on one clock. Both are sequences of
``(tstamp, ip_packet_bytes)`` pairs, as a capture is, and keep per-packet metadata
(:class:`Packet`: direction, what the packet is, which flow) for reading counterexamples.

>>> from nfct import packets as P
>>> from nfct.traffic import Flow, Packet, TupleArgs, Trace
>>> q = P.udp("10.1.0.2", "10.2.0.2", 40000, 53, b"query")
>>> a = P.udp("10.2.0.2", "10.1.0.2", 53, 40000, b"answer")
>>> flow = Flow("udp", TupleArgs("10.1.0.2", "10.2.0.2", 17, 40000, 53),
...             (Packet(0.0, q, "original", "query"), Packet(0.01, a, "reply", "answer")))
>>> trace = Trace.of(flow)
>>> len(trace), trace.packets[1].tstamp
(2, 0.01)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, overload

import nfct
from nfct import packets as P

__all__ = ["Flow", "Packet", "Trace", "TupleArgs", "describe_records"]

#: Timestamps are kept on a microsecond grid, so that a pcap round trip is exact.
US = 1_000_000


class TupleArgs(NamedTuple):
    """The arguments of ``nfct.Tuple(src, dst, protonum, sport, dport, *, type, code, id)``:
    the original-direction tuple of a flow, as the kernel builds it from its first packet."""

    src: str
    dst: str
    protonum: int
    sport: int | None = None
    dport: int | None = None
    type: int | None = None
    code: int | None = None
    id: int | None = None

    def key(self) -> tuple[Any, ...]:
        """A key equal for both directions of the flow (two flows with equal keys in one trace
        would be one connection)."""
        a = (self.src, self.sport if self.sport is not None else self.id)
        b = (self.dst, self.dport if self.dport is not None else self.id)
        return (self.protonum, *sorted([a, b], key=repr))

    def to_tuple(self) -> nfct.Tuple:
        """The ``nfct.Tuple``."""
        return nfct.Tuple(
            self.src,
            self.dst,
            self.protonum,
            self.sport,
            self.dport,
            type=self.type,
            code=self.code,
            id=self.id,
        )


@dataclass(frozen=True)
class Packet:
    """One packet of a flow or trace: its time (seconds), its bytes from the IP header on, its
    direction in its flow (``original``, ``reply``, or ``other`` for a packet from a third
    host, e.g. a router's ICMP error), what it is (``note``), and the index of its flow in a
    trace."""

    tstamp: float
    data: bytes
    direction: str
    note: str = ""
    flow: int = 0

    def describe(self) -> str:
        """The packet in one line (:func:`nfct.packets.describe`)."""
        return P.describe(self.data)

    def __repr__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"<Packet {self.tstamp:.6f} f{self.flow} {self.direction}: {self.describe()}{note}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class _Records(Sequence[tuple[float, bytes]]):
    """A sequence of ``(tstamp, bytes)`` built on a tuple of :class:`Packet`."""

    packets: tuple[Packet, ...]

    @overload
    def __getitem__(self, i: int) -> tuple[float, bytes]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[float, bytes]]: ...
    def __getitem__(self, i: int | slice) -> tuple[float, bytes] | list[tuple[float, bytes]]:
        if isinstance(i, slice):
            return [(p.tstamp, p.data) for p in self.packets[i]]
        p = self.packets[i]
        return (p.tstamp, p.data)

    def __len__(self) -> int:
        return len(self.packets)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return ((p.tstamp, p.data) for p in self.packets)

    def to_pcap(self, path: str | os.PathLike[str] | None = None) -> bytes:
        """The packets as a classic pcap file (raw IP, nanosecond timestamps), which
        ``nfct replay FILE --output packets`` replays; written to `path` too if given."""
        data = P.pcap(iter(self), nanoseconds=True)
        if path is not None:
            with open(path, "wb") as f:
                f.write(data)
        return data

    def render(self) -> str:
        """One line per packet: number, time, direction, flow, what it is."""
        return describe_records(self.packets)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Hypothesis prints a failing example with this (IPython's protocol): the packets one
        # per line rather than the dataclass fields with every byte.
        p.text(repr(self) + "\n" + self.render())


@dataclass(frozen=True, eq=False)
class Flow(_Records):
    """The packets of one connection, in time order (a :class:`Sequence` of ``(tstamp,
    bytes)`` pairs, times in seconds from 0).

    ``kind``: ``tcp``, ``udp``, ``udplite``, ``icmp``, ``icmpv6``, ``sctp``, or
    ``icmp-error`` (a flow and an ICMP error quoting one of its packets); ``orig``: the
    original direction's tuple (as ``Conn.orig``); ``packets``: the :class:`Packet` s;
    ``mutations``: what :func:`nfct.strategies.mutated` did to it (empty for a valid
    flow)."""

    kind: str
    orig: TupleArgs
    packets: tuple[Packet, ...]
    mutations: tuple[str, ...] = field(default=())

    @property
    def family(self) -> int:
        """4 or 6."""
        return 6 if ":" in self.orig.src else 4

    def key(self) -> tuple[Any, ...]:
        """See :meth:`TupleArgs.key`."""
        return self.orig.key()

    def shifted(self, seconds: float) -> Flow:
        """The same flow `seconds` later."""
        us = round(seconds * US)
        return replace(
            self,
            packets=tuple(
                replace(p, tstamp=(round(p.tstamp * US) + us) / US) for p in self.packets
            ),
        )

    def summary(self) -> str:
        """The flow in a few words: kind, original tuple, packet count."""
        t = self.orig
        if t.sport is not None:
            host = "[{}]:{}" if ":" in t.src else "{}:{}"
            ends = f"{host.format(t.src, t.sport)} > {host.format(t.dst, t.dport)}"
        else:
            ends = f"{t.src} > {t.dst} id={t.id}"
        return f"{self.kind} {ends}, {len(self.packets)} packets"

    def __repr__(self) -> str:
        muts = f", mutations={list(self.mutations)}" if self.mutations else ""
        return f"<Flow {self.summary()}{muts}>"


@dataclass(frozen=True, eq=False)
class Trace(_Records):
    """Several flows interleaved on one monotone clock: a :class:`Sequence` of ``(tstamp,
    bytes)`` pairs, like a capture. ``flows`` are the flows it was made of, as they were
    drawn (the trace's packets carry their flow's index in ``flow``, and their own times:
    a trace may have moved them, to interleave them or to add idle gaps), ``packets`` the
    interleaved :class:`Packet` s and ``title`` what made it (a scenario's name, say)."""

    packets: tuple[Packet, ...]
    flows: tuple[Flow, ...] = field(default=())
    title: str = ""

    @classmethod
    def of(cls, *flows: Flow, title: str = "") -> Trace:
        """The flows' packets merged by time (ties: earlier flow first), each packet marked
        with its flow's index."""
        tagged = [
            (round(p.tstamp * US), i, j, replace(p, flow=i))
            for i, f in enumerate(flows)
            for j, p in enumerate(f.packets)
        ]
        tagged.sort(key=lambda x: (x[0], x[1], x[2]))
        return cls(tuple(x[3] for x in tagged), tuple(flows), title)

    def __repr__(self) -> str:
        title = f" {self.title}" if self.title else ""
        return f"<Trace{title}: {len(self.flows)} flows, {len(self.packets)} packets>"


def describe_records(
    packets: Iterable[Packet],
    columns: Sequence[tuple[str, Sequence[str]]] = (),
    *,
    mark: int | None = None,
) -> str:
    """A table of packets: number, time, flow, direction, the packet in one line and what it
    is, then one column per ``(title, values)`` of `columns` (e.g. each side's answer).
    ``mark`` flags one packet number with ``>``."""
    pkts = list(packets)
    rows = []
    for i, p in enumerate(pkts):
        what = P.describe(p.data)
        if p.note:
            what += f"  ({p.note})"
        extra = [values[i] if i < len(values) else "" for _, values in columns]
        flag = ">" if mark == i else " "
        rows.append(
            (
                f"{flag}{i:>3}",
                f"{p.tstamp:.6f}",
                f"f{p.flow}",
                _DIR.get(p.direction, "?"),
                what,
                *extra,
            )
        )
    head = (" #", "time", "flow", "dir", "packet", *(title for title, _ in columns))
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
    lines = []
    for r in [head, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=True)]
        # The packet column goes last when it is the widest, so answers stay aligned.
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


_DIR = {"original": "->", "reply": "<-", "other": "**"}


def _pcap_records(data: bytes) -> list[tuple[float, bytes]]:
    """The records of a classic pcap file as :meth:`Flow.to_pcap` writes it (for tests)."""
    magic = struct.unpack("<I", data[:4])[0]
    scale = 1e9 if magic == 0xA1B23C4D else 1e6
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack("<IIII", data[off : off + 16])
        out.append((sec + frac / scale, data[off + 16 : off + 16 + caplen]))
        off += 16 + caplen
    return out
