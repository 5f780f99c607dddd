"""TCP against the live kernel: the TCP edge cases of spec §16 (E1–E30, E38, E40–E43, E53,
E60–E62, E65, plus a few more) as crafted packet sequences, and random TCP conversations.

Every case is run once through the running kernel's conntrack (nfct.kernel's namespace, one
packet at a time: its ct state class and `conntrack -L -o extended` after each packet, the
statistics and the event log at the end). Two tests per case:

* ``test_kernel_does_what_the_spec_says``: the kernel's per-packet classes, the table after the
  packets the spec describes and at the end (state word, [ASSURED]/[UNREPLIED], timeout ±1 s)
  and the statistics are what spec §16/§7 says. This validates the sequences themselves; where
  the kernel disagreed with the spec the expectation follows the kernel and says so.
* ``test_nfct_agrees_with_the_kernel``: the same packets through nfct (the ``both()`` pattern of
  test_differential.py: ``nfct_run_packets`` on the packets' own clock, then classes, table
  and statistics compared), and stepwise through the API (the table after every packet).

Client C=10.1.0.2, server S=10.2.0.2 (and fd00:1::2, fd00:2::2): these addresses exist only
inside the harness namespace, which has no link to the host's network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfct
import packets as P
from kernel import totals
from nfct import kernel
from nfct.compare import STATS, Comparison, compare_classes, compare_stats, compare_tables
from nfct.conntrack_text import parse_conntrack_line
from nfct.verify import nfct_run_packets
from tcp_conv import Conv, far

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"
T0 = 1_000_000.0
HTTP = 80

Seq = list[tuple[bytes, float]]


# --- both ends of a connection ------------------------------------------------------------------


def timed(*pkts: bytes, gap: float = 0.001, at: Mapping[int, float] | None = None) -> Seq:
    """Timestamps `gap` apart from T0; `at` gives packet index -> seconds after T0."""
    out: Seq = []
    t = T0
    for i, p in enumerate(pkts):
        if at and i in at:
            t = T0 + at[i]
        elif i:
            t += gap
        out.append((p, t))
    return out


# --- expectations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class W:
    """One expected table entry: the state word, the timeout as printed (±1 s), the flags and
    the original tuple (client port `sport`; the server's side unless `src`/`dst` say else)."""

    state: str
    timeout: int
    sport: int
    assured: bool = False
    unreplied: bool = False
    src: str = C
    dst: str = S
    dport: int = HTTP

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.src, self.dst, str(self.sport), str(self.dport))


@dataclass(frozen=True)
class Case:
    """A crafted sequence and what the live kernel does with it."""

    name: str
    build: Callable[[], Seq]
    classes: tuple[str, ...]
    final: tuple[W, ...]
    #: Non-zero `conntrack -S` counters (every other counter must be 0).
    stats: Mapping[str, int] = field(default_factory=dict)
    #: The table right after packet i (0-based).
    steps: Mapping[int, tuple[W, ...]] = field(default_factory=dict)
    sysctl: Mapping[str, int] = field(default_factory=dict)
    pace: bool = False
    #: Expected event sequence as "[TAG] STATE [FLAGS]" (None: not checked).
    events: tuple[str, ...] | None = None


CASES: dict[str, Case] = {}


def case(
    name: str,
    *,
    classes: Sequence[str],
    final: Sequence[W],
    stats: Mapping[str, int] | None = None,
    steps: Mapping[int, Sequence[W]] | None = None,
    sysctl: Mapping[str, int] | None = None,
    pace: bool = False,
    events: Sequence[str] | None = None,
) -> Callable[[Callable[[], Seq]], Callable[[], Seq]]:
    def register(build: Callable[[], Seq]) -> Callable[[], Seq]:
        assert name not in CASES, name
        CASES[name] = Case(
            name=name,
            build=build,
            classes=tuple(classes),
            final=tuple(final),
            stats=dict(stats or {}),
            steps={i: tuple(w) for i, w in (steps or {}).items()},
            sysctl=dict(sysctl or {}),
            pace=pace,
            events=None if events is None else tuple(events),
        )
        return build

    return register


NEW, EST, INV = "new", "established", "invalid"
ES = "ESTABLISHED"
ES_T = 431999  # a fresh 432000 s timeout as printed a moment later


def handshake_then(n: int, *then: str) -> list[str]:
    """Classes of a handshake followed by `n` established-class packets, then `then`."""
    return [NEW, EST, EST, *([EST] * n), *then]


# --- E1–E16: opening, pickup, invalid packets ---------------------------------------------------


@case(
    "E01 three-way handshake with MSS/SACK/WS/TS options",
    classes=[NEW, EST, EST],
    steps={
        0: [W("SYN_SENT", 119, 40001, unreplied=True)],
        1: [W("SYN_RECV", 59, 40001)],
        2: [W(ES, ES_T, 40001, assured=True)],
    },
    final=[W(ES, ES_T, 40001, assured=True)],
    events=["[NEW] SYN_SENT [UNREPLIED]", "[UPDATE] SYN_RECV", "[UPDATE] ESTABLISHED [ASSURED]"],
)
def e01() -> Seq:
    return timed(*Conv(40001).handshake())


@case(
    "E01 three-way handshake over IPv6",
    classes=[NEW, EST, EST],
    steps={0: [W("SYN_SENT", 119, 40101, unreplied=True, src=C6, dst=S6)]},
    final=[W(ES, ES_T, 40101, assured=True, src=C6, dst=S6)],
)
def e01_v6() -> Seq:
    return timed(*Conv(40101, client=C6, server=S6).handshake())


@case(
    "E01 three-way handshake without options",
    classes=[NEW, EST, EST],
    final=[W(ES, ES_T, 40201, assured=True)],
)
def e01_bare() -> Seq:
    t = Conv(40201, timestamps=False, wscale=None)
    t.syn_window = {"c": 29200, "s": 28960}
    t.window = {"c": 29200, "s": 28960}
    pkts = [t.c("S", options=b""), t.s("SA", options=b""), t.c("A")]
    return timed(*pkts)


@case(
    "E02 SYN answered by RST/ACK",
    classes=[NEW, EST],
    steps={0: [W("SYN_SENT", 119, 40002, unreplied=True)], 1: []},
    final=[],
    events=["[NEW] SYN_SENT [UNREPLIED]", "[DESTROY] CLOSE [UNREPLIED]"],
)
def e02() -> Seq:
    t = Conv(40002)
    syn = t.c("S")
    return timed(syn, t.s("RA", seq=0, window=0, options=b""))


@case(
    "E03 SYN answered by a bare RST with seq 0",
    classes=[NEW, EST],
    final=[],
    events=["[NEW] SYN_SENT [UNREPLIED]", "[DESTROY] CLOSE [UNREPLIED]"],
)
def e03() -> Seq:
    t = Conv(40003)
    syn = t.c("S")
    return timed(syn, t.s("R", seq=0, window=0, options=b""))


@case(
    "E04 SYN-ACK as the first packet",
    classes=[INV],
    final=[],
    stats={"invalid": 1},
)
def e04() -> Seq:
    t = Conv(40004)
    t.c("S")  # sent before the capture: only its answer is seen
    return timed(t.s("SA"))


@case(
    "E04 SYN-ACK as the first packet, loose=0",
    classes=[INV],
    final=[],
    stats={"invalid": 1},
    sysctl={"nf_conntrack_tcp_loose": 0},
)
def e04_strict() -> Seq:
    return e04()


@case(
    "E04 FIN/ACK, RST or RST/ACK as the first packet",
    classes=[INV, INV, INV],
    final=[],
    stats={"invalid": 3},
)
def e04_others() -> Seq:
    pkts = []
    for i, flags in enumerate(("FA", "R", "RA")):
        t = Conv(40104 + i)
        t.skip_handshake()
        pkts.append(t.c(flags))
    return timed(*pkts)


@case(
    "E05 bare ACK as the first packet (mid-stream pickup)",
    classes=[NEW],
    final=[W(ES, 299, 40005, unreplied=True)],
)
def e05() -> Seq:
    t = Conv(40005)
    t.skip_handshake()
    return timed(t.c("A"))


@case(
    "E06 bare ACK as the first packet, loose=0",
    classes=[INV],
    final=[],
    stats={"invalid": 1},
    sysctl={"nf_conntrack_tcp_loose": 0},
)
def e06() -> Seq:
    t = Conv(40006)
    t.skip_handshake()
    return timed(t.c("A"))


@case(
    "E07 pickup, reply ACK, original ACK",
    classes=[NEW, EST, EST],
    steps={
        0: [W(ES, 299, 40007, unreplied=True)],
        1: [W(ES, 299, 40007)],
    },
    final=[W(ES, ES_T, 40007, assured=True)],
)
def e07() -> Seq:
    t = Conv(40007)
    t.skip_handshake()
    return timed(t.c("A"), t.s("A"), t.c("A"))


@case(
    "E08 SYN retransmitted after 2 s does not refresh",
    classes=[NEW, NEW],
    final=[W("SYN_SENT", 117, 40008, unreplied=True)],
    pace=True,
)
def e08() -> Seq:
    t = Conv(40008)
    syn = t.c("S")
    return timed(syn, syn, at={1: 2.0})


@case(
    "E09 SYN-ACK retransmitted in SYN_RECV is ignored (no refresh)",
    classes=[NEW, EST, EST],
    steps={1: [W("SYN_RECV", 59, 40009)]},
    final=[W("SYN_RECV", 57, 40009)],
    pace=True,
)
def e09() -> Seq:
    t = Conv(40009)
    syn, synack = t.c("S"), t.s("SA")
    return timed(syn, synack, synack, at={2: 2.0})


@case(
    "E10 data from the client while SYN_RECV (final ACK lost)",
    classes=[NEW, EST, EST],
    final=[W(ES, 299, 40010, assured=True)],
)
def e10() -> Seq:
    t = Conv(40010)
    return timed(t.c("S"), t.s("SA"), t.c("PA", payload=b"G" * 100))


@case(
    "E11 data with seq 10^7 beyond the window",
    classes=handshake_then(0, INV),
    final=[W(ES, ES_T, 40011, assured=True)],
    stats={"invalid": 1},
)
def e11() -> Seq:
    t = Conv(40011)
    pkts = t.handshake()
    pkts.append(t.c("PA", seq=far(t.nxt["c"]), payload=b"x" * 100))
    return timed(*pkts)


@case(
    "E12 ACK for data never sent (ACK over the upper bound)",
    classes=handshake_then(0, INV),
    final=[W(ES, ES_T, 40012, assured=True)],
    stats={"invalid": 1},
)
def e12() -> Seq:
    t = Conv(40012)
    pkts = t.handshake()
    pkts.append(t.c("A", ack=far(t.nxt["s"], 1_000_000)))
    return timed(*pkts)


def _bad_checksum_syn(cport: int) -> bytes:
    t = Conv(cport)
    good = t.c("S")
    bad = Conv(cport).c("S", checksum=0x0BAD)
    assert good != bad, "0x0BAD happens to be the right checksum"
    return bad


@case(
    "E13 SYN with a bad checksum",
    classes=[INV],
    final=[],
    stats={"invalid": 1},
)
def e13() -> Seq:
    return timed(_bad_checksum_syn(40013))


@case(
    "E14 SYN with a bad checksum, checksum=0",
    classes=[NEW],
    final=[W("SYN_SENT", 119, 40013, unreplied=True)],
    sysctl={"nf_conntrack_checksum": 0},
)
def e14() -> Seq:
    return timed(_bad_checksum_syn(40013))


@case(
    "E13 data with a bad checksum in ESTABLISHED",
    classes=handshake_then(0, INV),
    final=[W(ES, ES_T, 40113, assured=True)],
    stats={"invalid": 1},
)
def e13_est() -> Seq:
    t = Conv(40113)
    pkts = t.handshake()
    pkts.append(t.c("PA", payload=b"q" * 10, checksum=0x0BAD, advance=False))
    return timed(*pkts)


@case(
    "E14 data with a bad checksum in ESTABLISHED, checksum=0",
    classes=handshake_then(1),
    final=[W(ES, 299, 40113, assured=True)],
    sysctl={"nf_conntrack_checksum": 0},
)
def e14_est() -> Seq:
    return e13_est()


E15_FLAGS = ("SF", "SR", "F", "", "FPU", "SAR", "SAF", "U", "P", "SAU", "RU", "FP", "SRFAPU")


@case(
    "E15 invalid flag combinations",
    classes=[INV] * len(E15_FLAGS),
    final=[],
    stats={"invalid": len(E15_FLAGS)},
)
def e15() -> Seq:
    return timed(*(Conv(40150 + i).c(f) for i, f in enumerate(E15_FLAGS)))


E16_FLAGS = ("SEC", "SP", "SU", "SPEC")


@case(
    "E16 SYN with ECE+CWR, PSH or URG is valid",
    classes=[NEW] * len(E16_FLAGS),
    final=[W("SYN_SENT", 119, 40160 + i, unreplied=True) for i in range(len(E16_FLAGS))],
)
def e16() -> Seq:
    return timed(*(Conv(40160 + i).c(f) for i, f in enumerate(E16_FLAGS)))


# --- E17–E25: closing, reopening, RSTs ------------------------------------------------------------


E17_EVENTS = (
    "[NEW] SYN_SENT [UNREPLIED]",
    "[UPDATE] SYN_RECV",
    "[UPDATE] ESTABLISHED [ASSURED]",
    "[UPDATE] FIN_WAIT [ASSURED]",
    "[UPDATE] CLOSE_WAIT [ASSURED]",
    "[UPDATE] LAST_ACK [ASSURED]",
    "[UPDATE] TIME_WAIT [ASSURED]",
)


@case(
    "E17 FIN close, client first",
    classes=handshake_then(4),
    steps={
        3: [W("FIN_WAIT", 119, 40017, assured=True)],
        4: [W("CLOSE_WAIT", 59, 40017, assured=True)],
        5: [W("LAST_ACK", 29, 40017, assured=True)],
        6: [W("TIME_WAIT", 119, 40017, assured=True)],
    },
    final=[W("TIME_WAIT", 119, 40017, assured=True)],
    events=E17_EVENTS,
)
def e17() -> Seq:
    t = Conv(40017)
    return timed(*t.handshake(), *t.fin_close())


@case(
    "E18 crossing FINs",
    classes=handshake_then(4),
    steps={
        3: [W("FIN_WAIT", 119, 40018, assured=True)],
        4: [W("LAST_ACK", 29, 40018, assured=True)],
        5: [W("TIME_WAIT", 119, 40018, assured=True)],
        6: [W("TIME_WAIT", 119, 40018, assured=True)],
    },
    final=[W("TIME_WAIT", 119, 40018, assured=True)],
)
def e18() -> Seq:
    t = Conv(40018)
    pkts = t.handshake()
    c_fin_ack = t.nxt["c"]  # the server's FIN does not yet acknowledge the client's FIN
    pkts.append(t.c("FA"))
    pkts.append(t.s("FA", ack=c_fin_ack))
    pkts += [t.c("A"), t.s("A")]
    return timed(*pkts)


@case(
    "E19 new SYN from the client in TIME_WAIT reopens",
    classes=handshake_then(4, NEW),
    final=[W("SYN_SENT", 119, 40019, unreplied=True)],
    events=[
        *E17_EVENTS,
        "[DESTROY] TIME_WAIT [ASSURED]",
        "[NEW] SYN_SENT [UNREPLIED]",
    ],
)
def e19() -> Seq:
    t = Conv(40019)
    pkts = [*t.handshake(), *t.fin_close()]
    t.reopen("c")
    pkts.append(t.c("S"))
    return timed(*pkts)


@case(
    "E20 SYN from the server side in TIME_WAIT reopens the other way",
    classes=handshake_then(4, NEW),
    final=[W("SYN_SENT", 119, HTTP, unreplied=True, src=S, dst=C, dport=40020)],
    events=[*E17_EVENTS, "[DESTROY] TIME_WAIT [ASSURED]", "[NEW] SYN_SENT [UNREPLIED]"],
)
def e20() -> Seq:
    t = Conv(40020)
    pkts = [*t.handshake(), *t.fin_close()]
    t.reopen("s")
    pkts.append(t.s("S"))
    return timed(*pkts)


@case(
    "E21 client RST with the exact seq in ESTABLISHED",
    classes=handshake_then(1),
    final=[W("CLOSE", 9, 40021, assured=True)],
)
def e21() -> Seq:
    t = Conv(40021)
    return timed(*t.handshake(), t.c("R", window=0, options=b""))


@case(
    "E22 client RST then client SYN reopens",
    classes=handshake_then(1, NEW),
    steps={3: [W("CLOSE", 9, 40022, assured=True)]},
    final=[W("SYN_SENT", 119, 40022, unreplied=True)],
)
def e22() -> Seq:
    t = Conv(40022)
    pkts = [*t.handshake(), t.c("R", window=0, options=b"")]
    t.reopen("c")
    pkts.append(t.c("S"))
    return timed(*pkts)


@case(
    "E23 server RST then client SYN is ignored",
    classes=handshake_then(2),
    steps={3: [W("CLOSE", 9, 40023, assured=True)]},
    final=[W("CLOSE", 9, 40023, assured=True)],
)
def e23() -> Seq:
    t = Conv(40023)
    pkts = [*t.handshake(), t.s("RA", window=0, options=b"")]
    t.reopen("c")
    pkts.append(t.c("S"))
    return timed(*pkts)


@case(
    "E24 assured: server RST in window but not exact keeps ESTABLISHED, CLOSE timeout",
    classes=handshake_then(1),
    final=[W(ES, 9, 40024, assured=True)],
)
def e24() -> Seq:
    t = Conv(40024)
    pkts = t.handshake()
    pkts.append(t.s("RA", seq=t.nxt["s"] + 5000, window=0, options=b""))
    return timed(*pkts)


@case(
    "E25 E24, then the client's challenge ACK, then the exact RST",
    classes=handshake_then(3),
    steps={3: [W(ES, 9, 40025, assured=True)], 4: [W(ES, 299, 40025, assured=True)]},
    final=[W("CLOSE", 9, 40025, assured=True)],
)
def e25() -> Seq:
    t = Conv(40025)
    pkts = t.handshake()
    pkts.append(t.s("RA", seq=t.nxt["s"] + 5000, window=0, options=b""))
    pkts.append(t.c("A"))  # the challenge ACK: acknowledges what the server really sent
    pkts.append(t.s("RA", window=0, options=b""))
    return timed(*pkts)


def _e26() -> Seq:
    t = Conv(40026)
    pkts = [*t.handshake(), t.s("PA", payload=b"d" * 1000), t.c("A")]
    pkts.append(t.s("RA", seq=t.nxt["s"] - 500, window=0, options=b""))
    return timed(*pkts)


@case(
    "E26 server RST below the client's max ack is invalid",
    classes=handshake_then(2, INV),
    final=[W(ES, ES_T, 40026, assured=True)],
    stats={"invalid": 1},
)
def e26() -> Seq:
    return _e26()


@case(
    "E26b same with ignore_invalid_rst=1: accepted, stays ESTABLISHED with the CLOSE timeout",
    classes=handshake_then(3),
    final=[W(ES, 9, 40026, assured=True)],
    sysctl={"nf_conntrack_tcp_ignore_invalid_rst": 1},
)
def e26b() -> Seq:
    return _e26()


# --- E27–E30: data, retransmissions, windows ------------------------------------------------------


@case(
    "E27 the same data segment five times without an ACK",
    classes=handshake_then(5),
    steps={3: [W(ES, 299, 40027, assured=True)]},
    final=[W(ES, 299, 40027, assured=True)],
)
def e27() -> Seq:
    t = Conv(40027)
    pkts = t.handshake()
    seq = t.nxt["c"]
    first = t.c("PA", payload=b"r" * 100)
    pkts += [first] + [t.c("PA", seq=seq, payload=b"r" * 100) for _ in range(4)]
    return timed(*pkts)


@case(
    "E28 data, then its ACK",
    classes=handshake_then(2),
    steps={3: [W(ES, 299, 40028, assured=True)]},
    final=[W(ES, ES_T, 40028, assured=True)],
)
def e28() -> Seq:
    t = Conv(40028)
    return timed(*t.handshake(), t.c("PA", payload=b"GET / HTTP/1.1\r\n\r\n"), t.s("A"))


@case(
    "E29 zero window from the server",
    classes=handshake_then(1),
    final=[W(ES, 299, 40029, assured=True)],
)
def e29() -> Seq:
    t = Conv(40029)
    return timed(*t.handshake(), t.s("A", window=0))


@case(
    "E30 be_liberal=1: far out-of-window data and a far RST are accepted",
    classes=handshake_then(2),
    # Observed: the liberal ACCEPT returns before the window update (§7.7 step 10): the far
    # data sets no DATA_UNACKNOWLEDGED, so the timeout stays 431999 (not 299).
    steps={3: [W(ES, ES_T, 40030, assured=True)]},
    final=[W(ES, 9, 40030, assured=True)],
    sysctl={"nf_conntrack_tcp_be_liberal": 1},
)
def e30() -> Seq:
    t = Conv(40030)
    pkts = t.handshake()
    pkts.append(t.c("PA", seq=far(t.nxt["c"]), payload=b"z" * 100))
    pkts.append(t.s("RA", seq=far(t.nxt["s"]), window=0, options=b""))
    return timed(*pkts)


# --- E38–E43: before the first reply; simultaneous open -------------------------------------------


@case(
    "E38 client RST before any reply",
    classes=[NEW, NEW],
    final=[],
    events=["[NEW] SYN_SENT [UNREPLIED]", "[DESTROY] CLOSE [UNREPLIED]"],
)
def e38() -> Seq:
    t = Conv(40038)
    return timed(t.c("S"), t.c("R", window=0, options=b""))


@case(
    "E40 RST/ACK answering the SYN with a wrong ack number",
    classes=[NEW, INV],
    final=[W("SYN_SENT", 119, 40040, unreplied=True)],
    stats={"invalid": 1},
)
def e40() -> Seq:
    t = Conv(40040)
    syn = t.c("S")
    return timed(syn, t.s("RA", seq=0, ack=t.nxt["c"] + 1000, window=0, options=b""))


@case(
    "E41 SYN-ACK with a wrong ack number",
    classes=[NEW, INV],
    final=[W("SYN_SENT", 119, 40041, unreplied=True)],
    stats={"invalid": 1},
)
def e41() -> Seq:
    t = Conv(40041)
    syn = t.c("S")
    return timed(syn, t.s("SA", ack=t.nxt["c"] + 1000))


@case(
    "E42 simultaneous open",
    classes=[NEW, EST, EST, EST, EST, EST],
    steps={
        0: [W("SYN_SENT", 119, 40042, unreplied=True, dport=40043)],
        1: [W("SYN_SENT2", 119, 40042, dport=40043)],
        2: [W("SYN_RECV", 59, 40042, dport=40043)],
        3: [W("SYN_RECV", 59, 40042, dport=40043)],
        4: [W(ES, ES_T, 40042, assured=True, dport=40043)],
    },
    final=[W(ES, ES_T, 40042, assured=True, dport=40043)],
)
def e42() -> Seq:
    t = Conv(40042, sport=40043)
    c_isn, s_isn = t.isn["c"], t.isn["s"]
    return timed(
        t.c("S"),
        t.s("S"),
        t.c("SA", seq=c_isn),
        t.s("SA", seq=s_isn),
        t.c("A"),
        t.s("A"),
    )


@case(
    "E43 SYN_SENT: ACK from the server is ignored; the client's ACK and FIN are invalid",
    classes=[NEW, EST, INV, INV],
    # Observed: "unchanged" is state and timeout only: the ignored ACK is an accepted reply,
    # so SEEN_REPLY is set and [UNREPLIED] disappears (§2 step 7).
    steps={1: [W("SYN_SENT", 119, 40043)]},
    final=[W("SYN_SENT", 119, 40043)],
    stats={"invalid": 2},
)
def e43() -> Seq:
    t = Conv(40043)
    syn = t.c("S")
    t.skip_handshake()
    return timed(syn, t.s("A"), t.c("A"), t.c("FA", advance=False))


# --- E53, E60–E62, E65 --------------------------------------------------------------------------


@case(
    "E53 client SYN in ESTABLISHED is ignored",
    classes=handshake_then(1),
    final=[W(ES, ES_T, 40053, assured=True)],
)
def e53() -> Seq:
    t = Conv(40053)
    pkts = t.handshake()
    t.reopen("c")
    pkts.append(t.c("S"))
    return timed(*pkts)


@case(
    "E60 four identical pure ACKs switch to the RETRANS timeout",
    classes=handshake_then(3),
    steps={
        3: [W(ES, ES_T, 40060, assured=True)],
        4: [W(ES, ES_T, 40060, assured=True)],
        5: [W(ES, 299, 40060, assured=True)],
    },
    final=[W(ES, 299, 40060, assured=True)],
)
def e60() -> Seq:
    t = Conv(40060)
    pkts = t.handshake()
    return timed(*pkts, pkts[-1], pkts[-1], pkts[-1])


@case(
    "E61 out-of-window FINs from both sides lower the timeout to 300 s",
    classes=handshake_then(0, INV, INV),
    steps={3: [W(ES, ES_T, 40061, assured=True)]},
    final=[W(ES, 299, 40061, assured=True)],
    stats={"invalid": 2},
)
def e61() -> Seq:
    t = Conv(40061)
    pkts = t.handshake()
    pkts.append(t.c("FA", seq=far(t.nxt["c"])))
    pkts.append(t.s("FA", seq=far(t.nxt["s"])))
    return timed(*pkts)


@case(
    "E62 picked-up flow accepts far out-of-window data (liberal)",
    classes=[NEW, NEW],
    final=[W(ES, 299, 40062, unreplied=True)],
)
def e62() -> Seq:
    t = Conv(40062)
    t.skip_handshake()
    first = t.c("A")
    return timed(first, t.c("PA", seq=far(t.nxt["c"]), payload=b"w" * 100))


@case(
    "E65 client RST, client ACK, client SYN: not a reopen",
    classes=handshake_then(3),
    steps={3: [W("CLOSE", 9, 40065, assured=True)], 4: [W("CLOSE", 9, 40065, assured=True)]},
    final=[W("CLOSE", 9, 40065, assured=True)],
)
def e65() -> Seq:
    t = Conv(40065)
    pkts = [*t.handshake(), t.c("R", window=0, options=b""), t.c("A")]
    t.reopen("c")
    pkts.append(t.c("S"))
    return timed(*pkts)


# --- more: SACK, keep-alive, sequence wrap --------------------------------------------------------


@case(
    "SACK block within the data sent is fine",
    classes=handshake_then(2),
    final=[W(ES, 299, 40301, assured=True)],
)
def sack_ok() -> Seq:
    t = Conv(40301)
    pkts = t.handshake()
    base = t.nxt["s"]
    pkts.append(t.s("PA", payload=b"s" * 1000))
    sack = P.tcp_opt_nop() * 2 + P.tcp_opt_sack([(base + 500, base + 1000)])
    pkts.append(t.c("A", ack=base, options=sack))
    return timed(*pkts)


@case(
    "SACK right edge beyond the data sent is invalid (ACK over the upper bound)",
    classes=handshake_then(1, INV),
    final=[W(ES, 299, 40302, assured=True)],
    stats={"invalid": 1},
)
def sack_over() -> Seq:
    t = Conv(40302)
    pkts = t.handshake()
    base = t.nxt["s"]
    pkts.append(t.s("PA", payload=b"s" * 1000))
    sack = P.tcp_opt_nop() * 2 + P.tcp_opt_sack([(base + 500, base + 5000)])
    pkts.append(t.c("A", ack=base, options=sack))
    return timed(*pkts)


@case(
    "sequence numbers wrapping through 2^32",
    classes=handshake_then(3),
    final=[W(ES, ES_T, 40303, assured=True)],
)
def seq_wrap() -> Seq:
    t = Conv(40303, cisn=0xFFFFFF00, sisn=0xFFFFFFF0)
    pkts = t.handshake()
    pkts += [t.c("PA", payload=b"a" * 600), t.s("PA", payload=b"b" * 300), t.c("A")]
    return timed(*pkts)


@case(
    "keep-alive probe (seq - 1) and its answer",
    classes=handshake_then(2),
    final=[W(ES, ES_T, 40304, assured=True)],
)
def keepalive() -> Seq:
    t = Conv(40304)
    pkts = t.handshake()
    pkts.append(t.c("A", seq=(t.nxt["c"] - 1) & 0xFFFFFFFF))
    pkts.append(t.s("A"))
    return timed(*pkts)


@case(
    "truncated TCP header (12 bytes) and data offset 4 (16 bytes)",
    classes=[INV, INV],
    final=[],
    stats={"invalid": 2},
)
def truncated() -> Seq:
    seg = P.tcp_segment(C, S, 40400, HTTP, seq=1, flags="S")
    short = P.ipv4(C, S, P.IPPROTO_TCP, seg[:12])
    bad_doff = P.tcp_segment(C, S, 40401, HTTP, seq=1, flags="S", data_offset=4)
    return timed(short, P.ipv4(C, S, P.IPPROTO_TCP, bad_doff))


# --- running the kernel -------------------------------------------------------------------------


@dataclass
class KernelRun:
    """A sequence through the kernel, one packet at a time."""

    packets: Seq
    result: kernel.KernelResult
    #: `conntrack -L -o extended` right after each packet.
    snapshots: list[list[str]]


def run_kernel(
    pkts: Seq, sysctl: Mapping[str, int] | None = None, *, pace: bool = False
) -> KernelRun:
    """nfct.kernel.run_packets(per_packet=True), plus the table after every packet."""
    snapshots: list[list[str]] = []
    result = kernel.run_packets(
        pkts,
        sysctl=dict(sysctl or {}),
        per_packet=True,
        pace=pace,
        after_each=lambda lab: snapshots.append(lab.lines()),
    )
    return KernelRun(pkts, result, snapshots)


_RUNS: dict[str, KernelRun] = {}


def kernel_run_of(name: str) -> KernelRun:
    """The case's kernel run (once per session: both tests of a case share it)."""
    if name not in _RUNS:
        c = CASES[name]
        _RUNS[name] = run_kernel(c.build(), c.sysctl, pace=c.pace)
    return _RUNS[name]


# --- checking -----------------------------------------------------------------------------------


def check_table(lines: Sequence[str], want: Sequence[W], where: str) -> None:
    """The listing holds exactly the expected TCP entries, with their state, flags and
    timeout (±1 s)."""
    got: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for line in lines:
        e = parse_conntrack_line(line)
        assert e["proto"] == "tcp" and e["protonum"] == 6, f"{where}: {line}"
        o = e["orig"]
        got[(o["src"], o["dst"], o["sport"], o["dport"])] = e
    assert sorted(got) == sorted(w.key for w in want), f"{where}: table is\n" + "\n".join(lines)
    for w in want:
        e = got[w.key]
        have = (e["state"], "ASSURED" in e["flags"], "UNREPLIED" in e["flags"])
        assert have == (w.state, w.assured, w.unreplied), (
            f"{where}: want {w.state} assured={w.assured} unreplied={w.unreplied}, got "
            f"{e['state']} assured={have[1]} unreplied={have[2]}\n" + "\n".join(lines)
        )
        assert abs(int(e["timeout"]) - w.timeout) <= 1, (
            f"{where}: timeout {e['timeout']}, want {w.timeout} ±1\n" + "\n".join(lines)
        )


def event_words(events: Sequence[str]) -> list[str]:
    """`conntrack -E` lines as "[TAG] STATE [FLAGS]"."""
    out = []
    for line in events:
        words = line.split("\t", 1)[-1].split()
        # "[NEW] ipv4 2 tcp 6 120 SYN_SENT src=... [UNREPLIED] src=..."
        state = next((w for w in words[1:] if w.isupper() and "=" not in w), "")
        flags = [w for w in words[1:] if w in ("[UNREPLIED]", "[ASSURED]")]
        out.append(" ".join([words[0], state, *flags]))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_does_what_the_spec_says(name: str) -> None:
    c = CASES[name]
    run = kernel_run_of(name)
    k = run.result
    assert k.write_errors == 0 and k.sent == len(run.packets)
    assert k.classes == list(c.classes), f"per-packet classes {k.classes}"
    for i, want in c.steps.items():
        check_table(run.snapshots[i], want, f"after packet {i + 1}")
    check_table(k.lines, c.final, "at the end")
    assert k.count == len(c.final)
    want_stats = {key: c.stats.get(key, 0) for key in STATS}
    assert {key: k.stats.get(key, 0) for key in STATS} == want_stats
    if c.events is not None:
        assert k.events_lost == 0
        assert event_words(k.events) == list(c.events), "\n".join(k.events)


# --- nfct against the kernel --------------------------------------------------------------------


def forward(net: nfct.Net, pkt: bytes, ts: float) -> nfct.Skb:
    """One packet through nfct as a forwarding router: PRE_ROUTING, then confirm."""
    skb = nfct.Skb(pkt, tstamp=ts)
    if pkt[0] >> 4 == 6:
        if nfct.ipv6_conntrack_in(net, skb) != nfct.NF_DROP:
            nfct.ipv6_confirm(net, skb)
    elif nfct.ipv4_conntrack_in(net, skb) != nfct.NF_DROP:
        nfct.ipv4_confirm(net, skb)
    return skb


def compare_run(k: kernel.KernelResult, pkts: Seq, sysctl: Mapping[str, int]) -> Comparison:
    """test_differential.both()'s comparison of a kernel run with nfct's replay."""
    lines, stats, classes = nfct_run_packets(pkts, dict(sysctl), "capture")
    res = compare_tables(k.lines, lines)
    compare_stats(k.stats, stats, result=res)
    assert k.classes is not None
    compare_classes(k.classes, classes, result=res)
    totals.add(packets=k.sent, classes=res.packets, entries=res.kernel_entries)
    return res


@pytest.mark.parametrize("name", list(CASES))
def test_nfct_agrees_with_the_kernel(name: str) -> None:
    c = CASES[name]
    run = kernel_run_of(name)
    res = compare_run(run.result, run.packets, c.sysctl)
    assert res.agree, res.render()
    # Stepwise through the API: the same class and the same table after every packet.
    net = nfct.Net(dict(c.sysctl))
    for i, (pkt, ts) in enumerate(run.packets):
        skb = forward(net, pkt, ts)
        assert run.result.classes is not None
        assert skb.ctstate == run.result.classes[i], f"packet {i + 1}: {skb.invalid_reason}"
        step = compare_tables(run.snapshots[i], net.dump("extended").splitlines())
        assert step.agree, f"after packet {i + 1}:\n{step.render()}"


# --- random conversations -----------------------------------------------------------------------

ACTIONS = (
    "syn",
    "synack",
    "ack",
    "data",
    "data",
    "ack",
    "retransmit",
    "out_of_window",
    "rst",
    "fin",
    "reopen",
    "flags",
    "bad_checksum",
)


@st.composite
def conversations(draw: st.DrawFn) -> Seq:
    """Both ends of one or two TCP connections (opened by a handshake, from nothing, or picked
    up mid-stream) doing random things: handshakes, data, ACKs, retransmissions,
    out-of-window segments, RSTs (exact, inexact, seq 0), FINs, reopens with a new ISN (either
    side), random flag bytes and bad checksums."""
    convs = [Conv(41000 + i) for i in range(draw(st.integers(1, 2)))]
    sent: list[bytes] = []
    pkts: list[bytes] = []
    for t in convs:
        # Start from scratch, from a completed handshake, or mid-stream (pickup).
        opening = draw(st.sampled_from(["none", "handshake", "handshake", "pickup"]))
        if opening == "handshake":
            opened = t.handshake()
            pkts += opened
            sent += opened
        elif opening == "pickup":
            t.skip_handshake()
    for _ in range(draw(st.integers(1, 18))):
        t = draw(st.sampled_from(convs))
        side = draw(st.sampled_from(["c", "c", "s"]))
        send = t.c if side == "c" else t.s
        action = draw(st.sampled_from(ACTIONS))
        if action == "syn":
            pkt = send("S")
        elif action == "synack":
            wrong = draw(st.sampled_from([0, 0, 0, 1000, -1]))
            peer = "s" if side == "c" else "c"
            pkt = send("SA", seq=t.isn[side], ack=(t.isn[peer] + 1 + wrong) & 0xFFFFFFFF)
            t.nxt[side] = (t.isn[side] + 1) & 0xFFFFFFFF
        elif action == "ack":
            pkt = send("A", window=draw(st.sampled_from([None, None, 0, 65535])))
        elif action == "data":
            pkt = send("PA", payload=b"d" * draw(st.sampled_from([1, 100, 1400])))
        elif action == "retransmit" and sent:
            pkt = draw(st.sampled_from(sent))
        elif action == "out_of_window":
            by = draw(st.sampled_from([10_000_000, 70_000, -70_000, -10_000_000]))
            pkt = send("PA", seq=far(t.nxt[side], by), payload=b"o" * 10)
        elif action == "rst":
            how = draw(st.sampled_from(["exact", "exact", "zero", "inside", "below"]))
            flags = draw(st.sampled_from(["R", "RA"]))
            seq = {
                "exact": t.nxt[side],
                "zero": 0,
                "inside": far(t.nxt[side], 5000),
                "below": far(t.nxt[side], -500),
            }[how]
            pkt = send(flags, seq=seq, window=0, options=b"")
        elif action == "fin":
            pkt = send("FA")
        elif action == "reopen":
            t.reopen(side, draw(st.sampled_from([0x0100_0000, 12345])))
            pkt = send("S")
        elif action == "flags":
            pkt = send(draw(st.integers(0, 255)), advance=False)
        elif action == "bad_checksum":
            pkt = send("PA", payload=b"c" * 20, checksum=0x0BAD, advance=False)
        else:
            continue
        sent.append(pkt)
        pkts.append(pkt)
    return timed(*pkts)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(conversations())
def test_random_conversations_agree(pkts: Seq) -> None:
    k = kernel.run_packets(pkts, per_packet=True)
    res = compare_run(k, pkts, {})
    assert res.agree, res.render()
