"""Time judged by the live kernel on captures (spec §11): paced runs with lowered timeouts.

The harness sends each packet at its capture time (`pace=True`), so entries expire in the kernel
mid-capture, on its own clock: a packet after its flow's entry expired is NEW again (the lookup
reaps the old entry: DESTROY, then NEW), and entries that expired before the listing are not
listed. nfct replays the same packets at the instants the kernel actually got them (measured
after each one is written) and lists its table when the kernel listed its own.

Under load a paced run can be late: a gap the capture has may be stretched or shrunk across a
timeout. Each run is therefore checked against a timing guard before it is judged, and retried
(up to `ATTEMPTS` times) while the guard fails:

* every packet was sent within `DRIFT` seconds of its capture time (relative to the first);
* nfct gives the same classes on the measured instants as on the capture's own, and the same
  table whether the listing is placed at the earliest or the latest instant it can have
  happened (no expiry falls inside that window).

Then the classes, the table and the counters must be equal, and the events as the spec allows
their timing: the kernel's garbage collector runs on its own schedule (up to a minute apart,
for every namespace at once), so the DESTROY of an entry that expired and was never met again
comes when it runs, or not before the listing; nfct's comes when its listing reaps it. So the
events other than DESTROY must be the same sequence; every DESTROY nfct sends before the
listing (a lookup reaping an expired entry) the kernel sends too; every DESTROY the kernel sends
is one nfct sends (before or at its listing), comes after the entry's other events and before
the next NEW of its tuple, and not before the entry has expired (nfct, fed the packets up to
that instant, has no live entry for the tuple then).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

import packets as P
from helpers import EXAMPLES_DIR, C, S, Seq, count_run
from nfct import Net, Tuple, kernel
from nfct.compare import compare_classes, compare_stats, compare_tables, parse_conntrack_line
from nfct.kernel import iter_capture_ip

#: How far (s) a packet may be sent from its capture time, relative to the first packet.
DRIFT = 0.1
#: Runs tried before the timing guard is declared broken.
ATTEMPTS = 4
#: How long before a DESTROY the kernel sent its entry must already have expired in nfct (s):
#: the instants are measured in user space, around the kernel's own.
DESTROY_SLACK = 0.05
#: The kernel run's last packet to its listing: the harness's settle time.
SETTLE = 0.3


@dataclass
class Sent:
    """A paced kernel run with the instants its packets were written."""

    result: kernel.KernelResult
    #: Per packet: seconds since the first packet was written (monotonic clock).
    offsets: list[float]
    #: Wall-clock time (time.time) when the first packet had been written.
    wall0: float
    #: Seconds from the first packet to the end of the run (the listing is before that).
    end: float


def paced(pkts: Seq, sysctl: Mapping[str, int]) -> Sent:
    stamps: list[tuple[float, float]] = []
    result = kernel.run_packets(
        pkts,
        sysctl=dict(sysctl),
        per_packet=True,
        pace=True,
        after_each=lambda _lab: stamps.append((time.monotonic(), time.time())),
    )
    end = time.monotonic()
    m0, w0 = stamps[0]
    return Sent(result, [m - m0 for m, _ in stamps], w0, end - m0)


@dataclass
class NfctRun:
    lines: list[str]
    stats: dict[str, int]
    classes: list[str]
    #: Events up to the last packet, then those the listing sent (its reaped entries).
    events: list[str]
    listing_events: list[str]


def nfct_run(
    pkts: Seq, times: Sequence[float], sysctl: Mapping[str, int], list_at: float
) -> NfctRun:
    """The packets through nfct at `times`, the table listed at `list_at`."""
    net = Net(dict(sysctl))
    net.listen_events(capacity=1 << 20)
    res = net.feed([(t, p) for (p, _), t in zip(pkts, times, strict=True)])
    events = net.read_events(timestamps=True)
    net.advance_to(list_at)
    lines = net.dump("extended").splitlines()
    return NfctRun(
        lines, dict(net.stats), [p.cls for p in res.per_packet], events, net.read_events()
    )


def event_tag(line: str) -> str:
    return line.split("\t", 1)[-1].split()[0]


def event_body(line: str) -> str:
    """Tag and entry without the timestamp and the timeout (what remained when it was sent)."""
    words = line.split("\t", 1)[-1].split()
    if len(words) > 5 and words[5].isdigit():
        del words[5]
    return " ".join(words)


def event_entry(line: str) -> dict[str, object]:
    """The entry of an event line (a DESTROY of an expired entry has no timeout: 0 then)."""
    words = line.split("\t", 1)[-1].split()[1:]
    if not words[4].isdigit():
        words.insert(4, "0")
    return parse_conntrack_line(" ".join(words))


def event_tuple(line: str) -> Tuple:
    """The original tuple of an event's entry, as nfct takes it."""
    e = event_entry(line)
    o = e["orig"]
    assert isinstance(o, dict)
    if e["proto"] in ("icmp", "icmpv6"):
        return Tuple(
            o["src"], o["dst"], int(e["protonum"]), type=int(o["type"]), code=int(o["code"]),
            id=int(o["id"]),
        )  # fmt: skip
    return Tuple(o["src"], o["dst"], int(e["protonum"]), int(o["sport"]), int(o["dport"]))


def event_key(line: str) -> tuple[str, ...]:
    """The entry's identity in an event: its original tuple's fields."""
    e = event_entry(line)
    o = e["orig"]
    assert isinstance(o, dict)
    return (str(e["proto"]), *(f"{k}={v}" for k, v in sorted(o.items())))


def judge(pkts: Seq, sysctl: Mapping[str, int]) -> tuple[Sent, NfctRun, list[str]]:
    """A paced kernel run whose timing guard holds (retried until it does), nfct's run on its
    instants, and the classes nfct gives on the capture's own times."""
    t0 = pkts[0][1]
    capture = [t - t0 for _, t in pkts]
    on_capture = nfct_run(pkts, [t0 + c for c in capture], sysctl, t0 + capture[-1] + SETTLE)
    why = []
    for attempt in range(ATTEMPTS):
        sent = paced(pkts, sysctl)
        drift = max(abs(a - c) for a, c in zip(sent.offsets, capture, strict=True))
        times = [t0 + a for a in sent.offsets]
        early = nfct_run(pkts, times, sysctl, t0 + sent.offsets[-1] + SETTLE)
        late = nfct_run(pkts, times, sysctl, t0 + sent.end)
        if drift > DRIFT:
            why.append(f"attempt {attempt + 1}: a packet {drift:.3f} s off its capture time")
        elif early.classes != on_capture.classes:
            why.append(f"attempt {attempt + 1}: the measured instants change nfct's classes")
        elif not compare_tables(early.lines, late.lines, timeout_tolerance=1).agree:
            why.append(f"attempt {attempt + 1}: an entry expired within the listing's window")
        else:
            return sent, early, on_capture.classes
    pytest.fail("the timing guard never held: " + "; ".join(why))


def check_events(sent: Sent, pkts: Seq, n: NfctRun, sysctl: Mapping[str, int]) -> Counter[str]:
    """The event logs as the spec allows their timing (module docstring). Returns the tags of
    the kernel's events, counted."""
    k = sent.result.events
    assert sent.result.events_lost == 0
    # The same events but DESTROY, in the same order.
    others_k = [event_body(e) for e in k if event_tag(e) != "[DESTROY]"]
    others_n = [event_body(e) for e in n.events if event_tag(e) != "[DESTROY]"]
    assert others_k == others_n, "\n".join(["kernel:", *others_k, "nfct:", *others_n])
    # Every DESTROY the kernel sent, nfct sends (before or at its listing); those nfct sent
    # before the listing (lookups reaping), the kernel did too.
    destroy_k = Counter(event_body(e) for e in k if event_tag(e) == "[DESTROY]")
    destroy_run = Counter(event_body(e) for e in n.events if event_tag(e) == "[DESTROY]")
    destroy_all = destroy_run + Counter(
        event_body(e) for e in n.listing_events if event_tag(e) == "[DESTROY]"
    )
    assert not destroy_k - destroy_all, f"DESTROY only on the kernel: {destroy_k - destroy_all}"
    assert not destroy_run - destroy_k, f"DESTROY missing on the kernel: {destroy_run - destroy_k}"
    # Per entry, the kernel's sequence is the entry's events then its DESTROY, then the next
    # entry of the tuple: a DESTROY is followed by a NEW of the tuple or nothing.
    per_key: dict[tuple[str, ...], list[str]] = {}
    for e in k:
        per_key.setdefault(event_key(e), []).append(event_tag(e))
    for key, tags in per_key.items():
        for a, b in itertools.pairwise(tags):
            assert a != "[DESTROY]" or b == "[NEW]", f"{key}: {tags}"
    # Not before the entry expired: nfct, fed the packets sent before the DESTROY, has no live
    # entry for the tuple at its instant (give or take DESTROY_SLACK: the instants are measured
    # in user space, a little after the kernel's).
    t0 = pkts[0][1]
    times = [t0 + a for a in sent.offsets]
    for e in k:
        if event_tag(e) != "[DESTROY]":
            continue
        at = t0 + float(e.split("\t", 1)[0].strip("[]")) - sent.wall0
        net = Net(dict(sysctl))
        net.feed([(t, p) for (p, _), t in zip(pkts, times, strict=True) if t < at - DESTROY_SLACK])
        net.advance_to(max(at + DESTROY_SLACK, net.now))
        conn = net.get(event_tuple(e))
        assert conn is None, f"the kernel destroyed a live entry ({at - t0:.3f} s): {e}\n{conn}"
    return Counter(event_tag(e) for e in k)


def check(
    pkts: Seq, sysctl: Mapping[str, int], stat_gaps: Mapping[str, int] | None = None
) -> tuple[Sent, NfctRun]:
    """Judge nfct on a paced kernel run of the packets: classes, table, counters (the kernel's
    minus `stat_gaps`, the known gaps), events."""
    sent, n, on_capture = judge(pkts, sysctl)
    k = sent.result
    assert k.write_errors == 0 and k.sent == len(pkts)
    assert k.classes is not None
    res = compare_tables(k.lines, n.lines, timeout_tolerance=1)
    compare_classes(k.classes, n.classes, result=res)
    gaps = dict(stat_gaps or {})
    compare_stats({c: v - gaps.get(c, 0) for c, v in k.stats.items()}, n.stats, result=res)
    assert res.agree, res.render()
    assert k.classes == on_capture
    check_events(sent, pkts, n, sysctl)
    count_run(packets=k.sent, classes=res.packets, entries=res.kernel_entries)
    return sent, n


# --- a shipped capture ----------------------------------------------------------------------

MIXED_SYSCTL = {
    "nf_conntrack_udp_timeout": 2,
    "nf_conntrack_icmp_timeout": 1,
    "nf_conntrack_icmpv6_timeout": 1,
    "nf_conntrack_tcp_timeout_time_wait": 1,
}


def test_mixed_capture_with_lowered_timeouts() -> None:
    """examples/mixed.pcap (6.35 s) with 1-2 s timeouts: the three HTTP connections' TIME_WAIT
    entries expire a second after their last packets; the DNS flows' 2 s after theirs, the flow
    that asks again 2.5 s later (ASSURED with the default timeouts) is NEW again then, and the
    echo flow 1 s after the last ping. Only the ICMPv6 echo flow, whose last ping is 0.3 s
    before the listing, is still listed."""
    pkts = [(p, t) for p, t in iter_capture_ip(EXAMPLES_DIR / "mixed.pcap")]
    # The known gap of this capture (tests/live/test_captures.py, EXAMPLE_STAT_GAPS): the
    # router answers a neighbour solicitation, counted in `error` on the kernel.
    sent, _ = check(pkts, MIXED_SYSCTL, {"error": 1})
    k = sent.result
    assert k.classes is not None
    (line,) = k.lines
    assert line.startswith("ipv6") and " icmpv6 " in line, line
    # The DNS flow asking again after 2.5 s: NEW again on the kernel, then its answer.
    again = [
        i
        for i, (p, _) in enumerate(pkts)
        if p[0] == 0x45 and p[9] == 17 and p[20:22] == (40005).to_bytes(2, "big")
    ]
    assert [k.classes[i] for i in again] == ["new", "new"], again
    destroyed = [e for e in k.events if event_tag(e) == "[DESTROY]" and "sport=40005 " in e]
    assert destroyed, "the expired DNS flow was not destroyed before its new query"


# --- a generated capture: every protocol's timeout crossed mid-capture -------------------------

GEN_SYSCTL = {
    "nf_conntrack_udp_timeout": 1,
    "nf_conntrack_icmp_timeout": 1,
    "nf_conntrack_tcp_timeout_syn_sent": 1,
    "nf_conntrack_tcp_timeout_established": 2,
}


def handshake(sport: int, t: float) -> Seq:
    return [
        (P.tcp(C, S, sport, 80, flags="S", seq=100), t),
        (P.tcp(S, C, 80, sport, flags="SA", seq=500, ack=101), t + 0.01),
        (P.tcp(C, S, sport, 80, flags="A", seq=101, ack=501), t + 0.02),
    ]


def data(sport: int, t: float, seq: int, *, reply: bool = False) -> tuple[bytes, float]:
    if reply:
        return P.tcp(S, C, 80, sport, flags="PA", seq=seq, ack=111, payload=b"y" * 10), t
    return P.tcp(C, S, sport, 80, flags="PA", seq=seq, ack=501, payload=b"x" * 10), t


def generated() -> Seq:
    """3.4 s of traffic; every gap that matters is at least 0.29 s from a timeout (1 s for UDP,
    ICMP and SYN_SENT, 2 s for ESTABLISHED), and every entry's expiry at least 0.29 s from the
    listing (0.3 s after the last packet)."""
    t0 = 1_700_000_000.0
    seq: Seq = [
        (P.udp(C, S, 1000, 53, b"a?"), 0.00),  # A: answered, expires at 1.01
        (P.udp(S, C, 53, 1000, b"a!"), 0.01),
        (P.tcp(C, S, 2000, 80, flags="S", seq=7), 0.10),  # T1: SYN_SENT, expires at 1.10
        *handshake(2001, 0.20),  # T2: ESTABLISHED, expires at 2.22
        *handshake(2002, 0.30),  # T3: ESTABLISHED, expires at 2.32
        (P.icmp_echo(C, S, 9), 0.40),  # E: expires at 1.41
        (P.icmp_echo(S, C, 9, reply=True), 0.41),
        (P.udp(C, S, 1001, 53, b"b?"), 0.50),  # B: unreplied, expires at 1.50
        (P.udp(C, S, 1001, 53, b"b?"), 1.00),  # B refreshed (0.5 s): expires at 2.00
        (P.icmp_echo(C, S, 9, seq=2), 1.05),  # E refreshed (0.64 s): expires at 2.05
        (P.udp(C, S, 1000, 53, b"a?"), 1.60),  # A expired 0.59 s ago: NEW
        (P.tcp(C, S, 2000, 80, flags="S", seq=7), 1.70),  # T1 expired 0.6 s ago: NEW
        data(2002, 1.80, 101),  # T3 refreshed (1.48 s): expires at 3.80
        (P.icmp_echo(C, S, 9, seq=3), 2.40),  # E expired 0.35 s ago: NEW, expires at 3.41
        (P.icmp_echo(S, C, 9, seq=3, reply=True), 2.41),
        data(2001, 3.10, 101),  # T2 expired 0.88 s ago: NEW (picked up mid-stream)
        (P.udp(C, S, 1001, 53, b"b?"), 3.20),  # B expired 1.2 s ago: NEW, expires at 4.20
        data(2002, 3.30, 501, reply=True),  # T3 (1.5 s): ESTABLISHED
        (P.tcp(C, S, 2002, 80, flags="A", seq=111, ack=511), 3.40),
    ]
    return [(p, t0 + t) for p, t in seq]


def test_generated_capture_crosses_every_timeout() -> None:
    """UDP, ICMP, SYN_SENT and ESTABLISHED entries expiring mid-capture and met again (NEW
    again, after a DESTROY), and refreshed just in time (not NEW): the kernel's classes are the
    ones the capture's times give, and nfct agrees with it on everything."""
    pkts = generated()
    sent, _ = check(pkts, GEN_SYSCTL)
    k = sent.result
    t0 = pkts[0][1]
    assert k.classes is not None
    # (A flow's packets before any reply are "new" too: B at 1.00, T1's SYN at 1.70 would be
    # even if alive; A at 1.60, E at 2.40 and T2 at 3.10 would be "established".)
    got = [round(t - t0, 2) for (_, t), c in zip(pkts, k.classes, strict=True) if c == "new"]
    assert got == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 1.6, 1.7, 2.4, 3.1, 3.2], got
    # Two entries in turn for each flow met after its expiry, one for T3.
    news = Counter(
        (str(e["proto"]), str(e["orig"].get("sport", e["orig"].get("id"))))
        for e in (event_entry(x) for x in k.events if event_tag(x) == "[NEW]")
    )
    assert news == {
        ("udp", "1000"): 2,
        ("udp", "1001"): 2,
        ("tcp", "2000"): 2,
        ("tcp", "2001"): 2,
        ("tcp", "2002"): 1,
        ("icmp", "9"): 2,
    }, news
    listed = sorted((e["proto"], e["orig"]["sport"]) for e in map(parse_conntrack_line, k.lines))
    # A, T1 and E expired before the listing; B, T2 (picked up again) and T3 remain.
    assert listed == [("tcp", "2001"), ("tcp", "2002"), ("udp", "1001")], k.lines
    destroyed = [event_key(e) for e in k.events if event_tag(e) == "[DESTROY]"]
    assert len(destroyed) >= 5, k.events  # the five met again, at the latest then
