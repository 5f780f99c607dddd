"""TCP scenarios: the TCP edge cases of spec §16 (E1–E30, E38, E40–E43, E53, E60–E62, E65,
plus a few more) as packet sequences, with what the live 6.18 kernel does with them: every
packet's class, the table after the packets the spec describes and at the end (state word,
[ASSURED]/[UNREPLIED], timeout), the statistics, and for some the event sequence. Where the
kernel disagreed with the spec the expectation follows the kernel and says so.

For INVALID packets `reasons` gives the key words of the message the kernel logs
(nf_conntrack_log_invalid, 6.18: "nf_ct_proto_6: " followed by e.g. "invalid new", "SEQ is
over upper bound N (over the window of the receiver)", "ACK is over upper bound N (ACKed data
not seen yet)", "bad checksum", "invalid tcp flag combination", "invalid rst", "packet (index
3) in dir 0 invalid, state SYN_SENT"); nfct words them its own way, so only key words are
checked, on nfct.

Client C=10.1.0.2, server S=10.2.0.2 (and fd00:1::2, fd00:2::2): these addresses exist only
inside the kernel harness's namespace, which has no link to the host's network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import packets as P
from helpers import C6, S6, C, S, Seq, timed
from scenarios.base import EST, HTTP, INV, NEW, Outcome, Recorded, Scenario, W, register
from tcp_conv import Conv, far

SCENARIOS: dict[str, Scenario] = {}

ES = "ESTABLISHED"
ES_T = 431999  # a fresh 432000 s timeout as listed a moment later

# Key words of the kernel's log messages (see the module docstring).
W_NEW = ("new",)
W_SEQ_OVER = ("seq", "upper bound")
W_ACK_OVER = ("ack", "upper bound")
W_CHECKSUM = ("checksum",)
W_FLAGS = ("flag",)
W_RST = ("rst",)
W_STATE = ("invalid", "state")


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
    reasons: Mapping[int, tuple[str, ...]] | None = None,
) -> Callable[[Callable[[], Seq]], Callable[[], Seq]]:
    """Registers the decorated sequence builder as scenario NAME, with hand-written
    expectations; the live runner lists the kernel's table after every packet."""

    def add(build: Callable[[], Seq]) -> Callable[[], Seq]:
        register(
            SCENARIOS,
            Scenario(
                name=name,
                build=build,
                classes=tuple(classes),
                table=tuple(final),
                stats=dict(stats or {}),
                sysctl=dict(sysctl or {}),
                steps={i: tuple(w) for i, w in (steps or {}).items()},
                events=None if events is None else tuple(events),
                reasons=dict(reasons or {}),
                pace=pace,
                snapshots=True,
            ),
        )
        return build

    return add


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
    steps={
        0: [W("SYN_SENT", 119, 40101, unreplied=True, src=C6, dst=S6)],
        1: [W("SYN_RECV", 59, 40101, src=C6, dst=S6)],
        2: [W(ES, ES_T, 40101, assured=True, src=C6, dst=S6)],
    },
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
    reasons={0: W_NEW},
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
    reasons={0: W_NEW},
)
def e04_strict() -> Seq:
    return e04()


@case(
    "E04 FIN/ACK, RST or RST/ACK as the first packet",
    classes=[INV, INV, INV],
    final=[],
    stats={"invalid": 3},
    reasons={0: W_NEW, 1: W_NEW, 2: W_NEW},
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
    reasons={0: W_NEW},
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
    final=[W("SYN_RECV", 58, 40009)],  # the kernel, listed later, may show 57
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
    reasons={3: W_SEQ_OVER},
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
    reasons={3: W_ACK_OVER},
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
    reasons={0: W_CHECKSUM},
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
    reasons={3: W_CHECKSUM},
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
    reasons=dict.fromkeys(range(len(E15_FLAGS)), W_FLAGS),
)
def e15() -> Seq:
    return timed(*(Conv(40150 + i).c(f) for i, f in enumerate(E15_FLAGS)))


@case(
    "E15 an invalid flag combination in ESTABLISHED leaves the entry alone",
    classes=handshake_then(0, INV),
    final=[W(ES, ES_T, 40151, assured=True)],
    stats={"invalid": 1},
    reasons={3: W_FLAGS},
)
def e15_est() -> Seq:
    t = Conv(40151)
    return timed(*t.handshake(), t.c("SF", advance=False))


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
    steps={4: [W(ES, ES_T, 40026, assured=True)]},
    final=[W(ES, ES_T, 40026, assured=True)],
    stats={"invalid": 1},
    reasons={5: W_RST},
)
def e26() -> Seq:
    return _e26()


@case(
    "E26b same with ignore_invalid_rst=1: accepted, stays ESTABLISHED with the CLOSE timeout",
    classes=handshake_then(3),
    steps={4: [W(ES, ES_T, 40026, assured=True)]},
    final=[W(ES, 9, 40026, assured=True)],
    sysctl={"nf_conntrack_tcp_ignore_invalid_rst": 1},
)
def e26b() -> Seq:
    return _e26()


# --- E27–E30: data, retransmissions, windows ------------------------------------------------------


@case(
    "E27 the same data segment five times without an ACK",
    classes=handshake_then(5),
    steps={i: [W(ES, 299, 40027, assured=True)] for i in range(3, 8)},
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
    reasons={1: W_ACK_OVER},
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
    reasons={1: W_ACK_OVER},
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
    reasons={2: W_STATE, 3: W_STATE},
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
    reasons={3: W_SEQ_OVER, 4: W_SEQ_OVER},
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
    reasons={4: W_ACK_OVER},
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


# --- sequences where nfct once disagreed with the kernel (found by replaying the TCP state
# machine's conversations through it); their outcomes are recorded -----------------------------

RECORD = Recorded()


def _resync_keeps_liberal() -> Seq:
    """A picked-up (liberal) entry, an ignored SYN, a SYN-ACK answering it (resync to
    SYN_RECV): the side reset by the resync stays liberal, so its far out-of-window data is
    accepted (nf_ct_tcp_state_reset keeps BE_LIBERAL)."""
    return timed(
        P.tcp(C, S, 40000, 80, seq=1000, ack=5000, flags="A"),
        P.tcp(C, S, 40000, 80, seq=9000, flags="S"),
        P.tcp(S, C, 80, 40000, seq=20000, ack=9001, flags="SA"),
        P.tcp(S, C, 80, 40000, seq=20001 + 10_000_000, ack=9001, flags="PA", payload=b"x" * 10),
    )


def _syn_without_options() -> Seq:
    """A re-sent SYN without any option bytes leaves the first SYN's window scale in place
    (tcp_options returns before clearing), which widens the window the data is checked
    against."""
    ws7 = P.tcp_opt_nop() + P.tcp_opt_wscale(7)
    ws14 = P.tcp_opt_nop() + P.tcp_opt_wscale(14)
    return timed(
        P.tcp(C, S, 40001, 80, seq=1000, flags="S", options=ws7),
        P.tcp(C, S, 40001, 80, seq=5000, flags="S"),
        P.tcp(S, C, 80, 40001, seq=700, ack=5001, flags="SA", options=ws14),
        P.tcp(C, S, 40001, 80, seq=5001, ack=701, flags="A"),
        P.tcp(S, C, 80, 40001, seq=701, ack=5001, flags="A"),
        P.tcp(C, S, 40001, 80, seq=5001 + 6_000_000, ack=701, flags="PA", payload=b"y" * 10),
    )


RECORD.add(
    "resync keeps the liberal flag of the reset side", _resync_keeps_liberal, checksums=False
)
RECORD.add(
    "a SYN without options keeps the earlier window scale", _syn_without_options, checksums=False
)

# --- recorded from the live kernel by tests/scenarios/record.py (do not edit by hand) ----------
RECORDED: dict[str, Outcome] = {
    "resync keeps the liberal flag of the reset side": Outcome(
        classes=("new", "new", "established", "established"),
        table=(
            "ipv4     2 tcp      6 59 SYN_RECV src=10.1.0.2 dst=10.2.0.2 sport=40000 dport=80 "
            "src=10.2.0.2 dst=10.1.0.2 sport=80 dport=40000 mark=0 use=1",
        ),
    ),
    "a SYN without options keeps the earlier window scale": Outcome(
        classes=("new", "new", "established", "established", "established", "established"),
        table=(
            "ipv4     2 tcp      6 299 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=40001 "
            "dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=40001 [ASSURED] mark=0 use=1",
        ),
    ),
}
# --- end of the recorded outcomes ---------------------------------------------------------------

SCENARIOS.update(RECORD.scenarios(RECORDED))
