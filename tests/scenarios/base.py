"""The shape of a scenario and the checks both runners apply to it.

A scenario is a named packet sequence (with times and sysctls) and what the live Linux 6.18
kernel does with it: every packet's ct state class, the table at the end (and, where given,
after some packets), the non-zero `conntrack -S` counters and, where given, the event sequence.
The expectation is written by hand where the spec says it (`W` entries: state, timeout, flags,
the original tuple) or recorded from the kernel (`conntrack -L -o extended` lines, written by
tests/scenarios/record.py).

`check_nfct` holds nfct to the expectation (tests/test_scenarios.py, no kernel needed);
`check_kernel` holds the kernel to it (tests/live/test_scenarios.py, which also compares the
kernel's run with nfct's directly). So "nfct agrees with the kernel on E17" is one fact,
checked both ways.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nfct
from helpers import T0, C, S, Seq, forward, nonzero
from nfct.compare import STATS, compare_stats, compare_tables
from nfct.conntrack_text import parse_conntrack_line

HTTP = 80

# Per-packet classes, as `nfct replay --output packets` and the kernel harness name them.
NEW, EST, REL, INV = "new", "established", "related", "invalid"
UNTRACKED, DROPPED = "untracked", "dropped"


@dataclass(frozen=True)
class W:
    """One expected TCP table entry: the state word, the timeout as listed an instant after the
    last packet (the kernel's may be 1 s off), the flags and the original tuple (client port
    `sport`; the server's side unless `src`/`dst`/`dport` say else)."""

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


#: A table expectation: hand-written TCP entries, or the kernel's listing lines as recorded.
Table = tuple[W, ...] | tuple[str, ...]


@dataclass(frozen=True)
class Scenario:
    """A packet sequence and what the live kernel does with it."""

    name: str
    #: Builds the packets with their times (a fresh sequence on every call).
    build: Callable[[], Seq]
    #: Every packet's class on the kernel (new, established, related, invalid, untracked, or
    #: dropped where the packet never reaches the forward hook).
    classes: tuple[str, ...]
    #: The table after the last packet.
    table: Table
    #: The non-zero `conntrack -S` counters (every other counter is 0).
    stats: Mapping[str, int] = field(default_factory=dict)
    #: Per-namespace sysctls of the run.
    sysctl: Mapping[str, int] = field(default_factory=dict)
    #: The table right after packet i (0-based).
    steps: Mapping[int, tuple[W, ...]] = field(default_factory=dict)
    #: The event sequence as "[TAG] STATE [FLAGS]" (None: not checked).
    events: tuple[str, ...] | None = None
    #: Key words (lower case) of the reason nfct gives for INVALID packet i: the family of
    #: the message the kernel logs (nf_conntrack_log_invalid); checked on nfct only.
    reasons: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    #: The kernel is fed at the packets' own pace (real time) rather than at once.
    pace: bool = False
    #: The packets also go one at a time through the API (`forward`: `in` and confirm), which
    #: must give the same classes and table. False where routing or defragmentation, which
    #: only the full path (`Net.replay`, the kernel) has, decides.
    stepwise: bool = True
    #: The live runner lists the kernel's table after every packet and compares nfct's
    #: stepwise table with it after each one.
    snapshots: bool = False

    def __post_init__(self) -> None:
        n = len(self.build())
        assert len(self.classes) == n, f"{self.name}: {len(self.classes)} classes, {n} packets"
        assert all(0 <= i < n for i in self.steps), f"{self.name}: step beyond the packets"
        for i in self.reasons:
            assert self.classes[i] == INV, f"{self.name}: reason for a packet not INVALID"


@dataclass(frozen=True)
class Outcome:
    """What the kernel did with a sequence, as recorded (tests/scenarios/record.py)."""

    classes: tuple[str, ...]
    table: tuple[str, ...] = ()
    stats: Mapping[str, int] = field(default_factory=dict)


def register(into: dict[str, Scenario], scenario: Scenario) -> Scenario:
    assert scenario.name not in into, f"scenario {scenario.name!r} defined twice"
    into[scenario.name] = scenario
    return scenario


@dataclass(frozen=True)
class RecordedSequence:
    """A packet sequence whose expectation is recorded from the live kernel."""

    name: str
    build: Callable[[], Seq]
    sysctl: Mapping[str, int]
    checksums: bool
    options: Mapping[str, Any]

    def variants(self) -> list[tuple[str, dict[str, int]]]:
        """(scenario name, sysctls): with `checksums`, NAME with nf_conntrack_checksum=1 and
        "NAME, checksum=0"; otherwise NAME alone."""
        if not self.checksums:
            return [(self.name, dict(self.sysctl))]
        return [
            (self.name, {**self.sysctl, "nf_conntrack_checksum": 1}),
            (f"{self.name}, checksum=0", {**self.sysctl, "nf_conntrack_checksum": 0}),
        ]


#: Set by tests/scenarios/record.py: recorded sequences without an outcome yet are left out
#: instead of failing the import.
RECORDING = False


class Recorded:
    """The sequences of a scenario module whose expectations are recorded from the kernel:
    `add` them where they are defined; the module ends with its RECORDED outcomes (written by
    tests/scenarios/record.py) and `scenarios(RECORDED)` pairs them up."""

    def __init__(self) -> None:
        self.sequences: list[RecordedSequence] = []

    def add(
        self,
        name: str,
        build: Callable[[], Seq],
        *,
        sysctl: Mapping[str, int] | None = None,
        checksums: bool = True,
        **options: Any,
    ) -> None:
        """A sequence run with nf_conntrack_checksum 1 and 0 (unless `checksums` is False).
        `options`: the other Scenario fields (reasons, pace, stepwise, snapshots); `reasons`
        apply to the variants where the packet is INVALID."""
        assert name not in {s.name for s in self.sequences}, f"{name!r} defined twice"
        self.sequences.append(RecordedSequence(name, build, dict(sysctl or {}), checksums, options))

    def scenarios(self, outcomes: Mapping[str, Outcome]) -> dict[str, Scenario]:
        """The scenarios, each with its recorded outcome ("NAME, checksum=0" falls back to
        NAME's, which is how the recorder writes equal outcomes)."""
        out: dict[str, Scenario] = {}
        names = set()
        for seq in self.sequences:
            for label, sysctl in seq.variants():
                names.add(label)
                outcome = outcomes.get(label) or outcomes.get(seq.name)
                if outcome is None:
                    assert RECORDING, f"no recorded outcome for {label!r} (run record.py)"
                    continue
                options = dict(seq.options)
                # Reasons apply where the packet is INVALID (with checksums off it may not be).
                reasons = options.pop("reasons", {})
                register(
                    out,
                    Scenario(
                        name=label,
                        build=seq.build,
                        classes=tuple(outcome.classes),
                        table=tuple(outcome.table),
                        stats=dict(outcome.stats),
                        sysctl=sysctl,
                        reasons={i: w for i, w in reasons.items() if outcome.classes[i] == INV},
                        **options,
                    ),
                )
        stale = set(outcomes) - names
        assert not stale, f"recorded outcomes of no sequence: {sorted(stale)}"
        return out


# --- reading tables and events ----------------------------------------------------------------


def check_table(lines: Sequence[str], want: Sequence[W], where: str, *, slack: int = 1) -> None:
    """The listing holds exactly the expected TCP entries, with their state, flags and
    timeout (within `slack` seconds)."""
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
        assert abs(int(e["timeout"]) - w.timeout) <= slack, (
            f"{where}: timeout {e['timeout']}, want {w.timeout}"
            + (f" ±{slack}" if slack else "")
            + "\n"
            + "\n".join(lines)
        )


def check_listing(lines: Sequence[str], want: Table, where: str, *, slack: int = 1) -> None:
    """The listing is the expected table: hand-written entries (`check_table`), or recorded
    lines matched as sets on their tuples, with the same state, flags and mark and a timeout
    within 2 s (`nfct.compare.compare_tables`, as the live comparison matches them)."""
    if all(isinstance(w, W) for w in want):
        check_table(lines, [w for w in want if isinstance(w, W)], where, slack=slack)
        return
    res = compare_tables([w for w in want if isinstance(w, str)], lines)
    assert res.agree, f"{where} (recorded -> here):\n{res.render()}\n" + "\n".join(lines)


def check_stats(stats: Mapping[str, int], want: Mapping[str, int], where: str) -> None:
    """The `conntrack -S` counters are the expected ones (all others 0)."""
    res = compare_stats(want, stats)
    assert res.agree, f"{where} (expected -> here):\n{res.render()}"
    assert {k: v for k, v in nonzero(stats).items() if k not in STATS} == {}, stats


def event_words(events: Sequence[str]) -> list[str]:
    """`conntrack -E` lines (with or without a timestamp prefix) as "[TAG] STATE [FLAGS]"."""
    out = []
    for line in events:
        words = line.split("\t", 1)[-1].split()
        # "[NEW] ipv4 2 tcp 6 120 SYN_SENT src=... [UNREPLIED] src=..."
        state = next((w for w in words[1:] if w.isupper() and "=" not in w), "")
        flags = [w for w in words[1:] if w in ("[UNREPLIED]", "[ASSURED]")]
        out.append(" ".join([words[0], state, *flags]))
    return out


# --- nfct packet by packet ------------------------------------------------------------------


def _destination(pkt: bytes) -> str:
    raw = pkt[16:20] if pkt[0] >> 4 == 4 else pkt[24:40]
    return str(ipaddress.ip_address(raw))


def expected_ctinfo(skb: nfct.Skb) -> int | None:
    """The ctinfo a packet of this class must carry: none when INVALID, IP_CT_UNTRACKED,
    IP_CT_NEW, or ESTABLISHED/RELATED with _REPLY where the packet goes to the entry's
    original source (the reply direction)."""
    cls = skb.ctstate
    if cls == INV:
        return None
    if cls == UNTRACKED:
        return nfct.IP_CT_UNTRACKED
    if cls == NEW:
        return nfct.IP_CT_NEW
    conn = skb.nfct
    assert conn is not None, f"a {cls} packet without its entry"
    reply = _destination(skb.data) == conn.orig.src
    if cls == EST:
        return nfct.IP_CT_ESTABLISHED_REPLY if reply else nfct.IP_CT_ESTABLISHED
    assert cls == REL, cls
    return nfct.IP_CT_RELATED_REPLY if reply else nfct.IP_CT_RELATED


@dataclass
class Played:
    """A scenario's packets sent one at a time through nfct's API (`forward`)."""

    scenario: Scenario
    packets: Seq
    net: nfct.Net
    skbs: list[nfct.Skb]
    verdicts: list[int]
    #: `net.dump("extended")` lines right after each packet.
    tables: list[list[str]]

    @property
    def classes(self) -> list[str]:
        return [skb.ctstate for skb in self.skbs]


def play(
    scenario: Scenario,
    *,
    sysctl: Mapping[str, int] | None = None,
    at: Mapping[int, float] | None = None,
    events: bool = False,
    packets: Seq | None = None,
) -> Played:
    """The scenario's packets through a forwarding router's `in` and confirm hooks, one at a
    time, on the packets' clock. `sysctl` adds to (or overrides) the scenario's; `at` moves
    packet i to T0 + at[i] seconds, and the packets after it by as much (for checks of what
    time does); `events` listens to
    events from the start; `packets` are the scenario's, already built."""
    pkts = scenario.build() if packets is None else list(packets)
    if at:
        shift = 0.0
        moved: Seq = []
        for i, (p, t) in enumerate(pkts):
            if i in at:
                shift = T0 + at[i] - t
            moved.append((p, t + shift))
        pkts = moved
    net = nfct.Net({**scenario.sysctl, **(sysctl or {})})
    if events:
        net.listen_events()
    played = Played(scenario, pkts, net, [], [], [])
    for pkt, t in pkts:
        verdict, skb = forward(net, pkt, t)
        played.verdicts.append(verdict)
        played.skbs.append(skb)
        played.tables.append(net.dump("extended").splitlines())
    return played


# --- the checks -------------------------------------------------------------------------------


def check_nfct(scenario: Scenario) -> None:
    """nfct does what the kernel does with the scenario: replayed as a router on the packets'
    clock (`Net.replay`, the path the live comparison uses), and, where `stepwise`, packet by
    packet through the API. Timeouts of hand-written entries must be exact here."""
    from nfct.verify import nfct_run_packets

    sc = scenario
    lines, stats, classes = nfct_run_packets(sc.build(), dict(sc.sysctl), "capture")
    assert classes == list(sc.classes), f"replay: per-packet classes {classes}"
    check_listing(lines, sc.table, "replay, at the end", slack=0)
    check_stats(stats, sc.stats, "replay")
    if not sc.stepwise:
        return

    played = play(sc, events=sc.events is not None)
    net = played.net
    for i, skb in enumerate(played.skbs):
        where = f"packet {i + 1}"
        assert played.verdicts[i] == nfct.NF_ACCEPT, f"{where}: dropped ({skb.invalid_reason})"
        assert skb.ctstate == sc.classes[i], f"{where}: {skb.ctstate} ({skb.invalid_reason})"
        assert skb.ctinfo == expected_ctinfo(skb), f"{where}: ctinfo {skb.ctinfo}"
        if skb.ctstate == INV:
            assert skb.nfct is None, where
            reason = skb.invalid_reason
            assert reason, f"{where}: INVALID without a reason"
            words = sc.reasons.get(i, ())
            assert all(w in reason.lower() for w in words), f"{where}: {reason!r} lacks {words}"
        else:
            assert skb.invalid_reason is None, f"{where}: {skb.invalid_reason}"
        if i in sc.steps:
            check_table(played.tables[i], sc.steps[i], f"after {where}", slack=0)
    lines = net.dump("extended").splitlines()
    check_listing(lines, sc.table, "stepwise, at the end", slack=0)
    assert net.count == len(sc.table), net.dump()
    check_stats(net.stats, sc.stats, "stepwise")
    if sc.events is not None:
        assert event_words(net.read_events()) == list(sc.events)
        assert net.events_lost == 0


def check_kernel(
    scenario: Scenario, k: Any, packets: Sequence[Any], snapshots: Sequence[Sequence[str]]
) -> None:
    """The live kernel's run (`nfct.kernel.KernelResult`, with per-packet classes, and its
    listing after each packet where the scenario takes `snapshots`) did what the scenario
    says."""
    sc = scenario
    assert k.write_errors == 0 and k.sent == len(packets)
    assert k.classes == list(sc.classes), f"per-packet classes {k.classes}"
    for i, want in sc.steps.items():
        check_table(snapshots[i], want, f"after packet {i + 1}")
    check_listing(k.lines, sc.table, "at the end")
    assert k.count == len(sc.table), k.lines
    check_stats(k.stats, sc.stats, "kernel")
    if sc.events is not None:
        assert k.events_lost == 0
        assert event_words(k.events) == list(sc.events), "\n".join(k.events)
