"""What nfct's test modules share, defined once: where things are (the repository, the shared
captures), the addresses they use, the packet helpers (`hooks`, `forward`, `feed`, `timed`),
small table helpers, running the `nfct` command, and the live-kernel side (`run_both`, the
totals the live suite prints at the end).

Test modules import from here and from tests/packets.py (the packet builders), never from one
another. The edge-case scenarios shared by the offline and the live runners are data in
tests/scenarios/.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import hypothesis
import pytest
from hypothesis import strategies as st

import nfct
import packets as P
from nfct import NF_DROP, Net, Skb

if TYPE_CHECKING:
    from nfct.compare import Comparison
    from nfct.kernel import KernelResult

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The captures shipped in the repository (tests/conftest.py's `examples_dir` fixture checks it).
EXAMPLES_DIR = REPO_ROOT / "examples"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shared_pcaps_dir() -> Path | None:
    """The shared capture directory (<repo>/../shared/pcaps, or $NFCT_SHARED_PCAPS), or None
    where this checkout has none."""
    override = os.environ.get("NFCT_SHARED_PCAPS")
    candidate = Path(override) if override else REPO_ROOT.parent / "shared" / "pcaps"
    return candidate if candidate.is_dir() else None


# Client, server and a third host, as the live kernel's harness namespace routes them (these
# addresses exist only inside it); IPv6 likewise.
C, S, X = "10.1.0.2", "10.2.0.2", "10.3.0.9"
C6, S6 = "fd00:1::2", "fd00:2::2"

#: The time of a sequence's first packet (seconds): far from 0, as a capture's would be.
T0 = 1_000_000.0

#: Packets with their times (seconds), in the order they are sent.
Seq = list[tuple[bytes, float]]

Hook = Callable[[Net, Skb], int]


# --- seeded Hypothesis tests -------------------------------------------------------------------

#: The seed of this pytest run for the tests decorated with `seeded` (tests/conftest.py sets
#: it before the test modules are imported: --hypothesis-seed, else $NFCT_SEED, else random,
#: and prints it in the header and under every failure of such a test).
RUN_SEED: int | None = None
#: How many examples the seeded tests draw: their CI budget times this ($NFCT_EXAMPLES_SCALE,
#: e.g. 20 for a long local run).
EXAMPLES_SCALE = float(os.environ.get("NFCT_EXAMPLES_SCALE", "1"))


def examples(ci: int) -> int:
    """`ci` examples, scaled by $NFCT_EXAMPLES_SCALE."""
    return max(1, round(ci * EXAMPLES_SCALE))


F = TypeVar("F", bound=Callable[..., object])


def seeded(test: F) -> F:
    """A Hypothesis test (`@seeded` above `@given`) drawn from this run's seed (RUN_SEED)
    whatever the profile says: a new seed per run, printed, instead of the `ci` profile's
    derandomized search. Also marks it `seeded`, so that a failure prints the seed and the
    command that reruns it (tests/conftest.py)."""
    if RUN_SEED is None:
        raise RuntimeError("helpers.RUN_SEED is unset: tests/conftest.py sets it at configure")
    marked: F = pytest.mark.seeded(hypothesis.seed(RUN_SEED)(test))
    return marked


# --- packets through the hooks ------------------------------------------------------------------


def hooks(pkt: bytes) -> tuple[Hook, Hook]:
    """The PRE_ROUTING `in` hook and the confirm hook for the packet's address family."""
    if pkt[0] >> 4 == 6:
        return nfct.ipv6_conntrack_in, nfct.ipv6_confirm
    return nfct.ipv4_conntrack_in, nfct.ipv4_confirm


def forward(net: Net, pkt: bytes, t: float | None = None) -> tuple[int, Skb]:
    """One packet through a forwarding router: `in` at PRE_ROUTING, then confirm at
    POST_ROUTING unless `in` dropped it (the packet at `t`, by default the table's time).
    Returns the final verdict and the packet."""
    skb = Skb(pkt, tstamp=net.now if t is None else t)
    hook_in, confirm = hooks(pkt)
    verdict = hook_in(net, skb)
    if verdict != NF_DROP:
        verdict = confirm(net, skb)
    return verdict, skb


def feed(net: Net, pkts: Iterable[tuple[bytes, float]]) -> list[Skb]:
    """`forward` for each (packet, time) in order; the packets, in that order."""
    return [forward(net, pkt, t)[1] for pkt, t in pkts]


def timed(
    *pkts: bytes, gap: float = 0.001, at: Mapping[int, float] | None = None, t0: float = T0
) -> Seq:
    """The packets `gap` seconds apart from `t0`; `at` moves packet i (0-based) to `t0 + at[i]`
    (the ones after it follow `gap` apart)."""
    out: Seq = []
    t = t0
    for i, p in enumerate(pkts):
        if at and i in at:
            t = t0 + at[i]
        elif i:
            t += gap
        out.append((p, t))
    return out


# --- generated traffic ------------------------------------------------------------------------


@st.composite
def traffic(draw: st.DrawFn) -> Seq:
    """Up to 30 packets among three hosts: UDP, echo requests and replies, bad checksums, TTL
    1, TCP SYNs and ACKs, at times that sometimes jump (by 1 s or 40 s)."""
    hosts = [C, S, X]
    out = []
    t = 100.0
    for _ in range(draw(st.integers(1, 30))):
        a, b = draw(st.permutations(hosts))[:2]
        kind = draw(st.sampled_from(["udp", "echo", "reply", "bad", "ttl1", "syn", "ack"]))
        if kind == "udp":
            pkt = P.udp(a, b, draw(st.sampled_from([53, 1000])), draw(st.sampled_from([53, 1000])))
        elif kind in ("echo", "reply"):
            pkt = P.icmp_echo(a, b, draw(st.integers(1, 2)), reply=kind == "reply")
        elif kind == "bad":
            pkt = P.udp(a, b, 1, 2, b"x", checksum=0xBAD)
        elif kind == "ttl1":
            pkt = P.udp(a, b, 3, 4, ttl=1)
        else:
            flags = "S" if kind == "syn" else "A"
            pkt = P.tcp(a, b, 40000, 80, flags=flags, seq=draw(st.integers(0, 3)), ack=1)
        t += draw(st.sampled_from([0.0, 0.001, 1.0, 40.0]))
        out.append((pkt, t))
    return out


def udp_flows(path: Path, n: int = 400, *, invalid: bool = True, t0: float = 1.7e9) -> Path:
    """A pcap of DNS-like UDP queries from 350 addresses to S, one every 50 ms from `t0`, a
    third of them answered; with `invalid`, a bad UDP checksum every 40th query and a TCP
    packet with SYN and FIN every 60th (the report's tests: a small nf_conntrack_max
    overflows within seconds)."""

    def client(i: int) -> str:
        return f"10.0.{i % 7}.{1 + i % 50}"

    recs = []
    for i in range(n):
        t = t0 + i * 0.05
        recs.append((t, P.udp(client(i), S, 5000 + i, 53, b"q")))
        if i % 3 == 0:
            recs.append((t + 0.01, P.udp(S, client(i), 53, 5000 + i, b"a")))
        if invalid and i % 40 == 7:
            recs.append((t + 0.02, P.udp(client(i), S, 7000 + i, 53, b"x", checksum=0xBAD)))
        if invalid and i % 60 == 11:
            recs.append((t + 0.03, P.tcp(client(i), S, 9000 + i, 80, flags="SF", seq=1)))
    path.write_bytes(P.pcap(recs))
    return path


# --- the table --------------------------------------------------------------------------------


def only(net: Net) -> nfct.Conn:
    """The table's single entry (fails, showing the table, when there are more or none)."""
    conns = list(net)
    assert len(conns) == 1, net.dump()
    return conns[0]


def nonzero(stats: Mapping[str, int]) -> dict[str, int]:
    """The counters that are not 0."""
    return {k: v for k, v in stats.items() if v}


def stats_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The counters that moved, by how much."""
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def proc_fixup(line: str) -> str:
    """A /proc/net/nf_conntrack line without its `use=N` (to compare it apart from the
    refcount)."""
    return re.sub(r" use=\d+$", "", line)


# --- captures ---------------------------------------------------------------------------------


def small_capture_records(t0: float = 1000.0) -> list[tuple[float, bytes]]:
    """A small known capture (tests/conftest.py's `capture` fixtures): DNS query and answer,
    ping and pong, then a UDP packet with a bad checksum 5 s after the first."""
    return [
        (t0, P.udp(C, S, 2001, 53, b"query")),
        (t0 + 0.1, P.udp(S, C, 53, 2001, b"answer")),
        (t0 + 0.2, P.icmp_echo(C, S, 4660)),
        (t0 + 0.3, P.icmp_echo(S, C, 4660, reply=True)),
        (t0 + 5.0, P.udp(C, S, 2002, 53, b"bad", checksum=0x0BAD)),
    ]


# --- the command ------------------------------------------------------------------------------


def run_cli(*args: object, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`nfct ARGS...` (as `python -m nfct`, the installed command's path: the launcher and its
    ending), output captured as text, stdin closed."""
    return subprocess.run(
        [sys.executable, "-m", "nfct", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


# --- the live kernel --------------------------------------------------------------------------

#: How much the live-kernel suite compared, printed at the end of the run by
#: tests/live/conftest.py.
TOTALS: dict[str, int] = {"runs": 0, "packets": 0, "packet classes": 0, "entries": 0}


def count_run(*, packets: int = 0, classes: int = 0, entries: int = 0) -> None:
    """Adds one run through the live kernel (and nfct) to TOTALS."""
    TOTALS["runs"] += 1
    TOTALS["packets"] += packets
    TOTALS["packet classes"] += classes
    TOTALS["entries"] += entries


def compare_with_nfct(
    k: KernelResult, pkts: Seq, sysctl: Mapping[str, int] | None = None
) -> tuple[Comparison, list[str]]:
    """The kernel's run against nfct replaying the same packets as a router on the packets'
    own clock: the tables, the statistics and every packet's class (the kernel's run must have
    classified them). Counted in TOTALS. Returns the comparison and nfct's classes."""
    from nfct.compare import compare_classes, compare_stats, compare_tables
    from nfct.verify import nfct_run_packets

    lines, stats, classes = nfct_run_packets(pkts, dict(sysctl or {}), "capture")
    res = compare_tables(k.lines, lines)
    compare_stats(k.stats, stats, result=res)
    assert k.classes is not None, "the kernel's run did not classify its packets"
    compare_classes(k.classes, classes, result=res)
    count_run(packets=k.sent, classes=res.packets, entries=res.kernel_entries)
    return res, classes


def run_both(
    pkts: Seq, sysctl: Mapping[str, int] | None = None, *, pace: bool = False
) -> tuple[Comparison, KernelResult, list[str]]:
    """The packets through the live kernel (classifying each one; `pace` reproduces the gaps
    between their times) and through nfct (`compare_with_nfct`). Returns the comparison, the
    kernel's result and nfct's classes."""
    from nfct import kernel

    k = kernel.run_packets(pkts, sysctl=dict(sysctl or {}), per_packet=True, pace=pace)
    res, classes = compare_with_nfct(k, pkts, sysctl)
    return res, k, classes


def run_seen(steps: Sequence[tuple[str, bytes, str]]) -> KernelResult:
    """Labelled packets, 1 ms apart, through the live kernel and nfct (`run_both`): both must
    agree, and the kernel's classes must be the ones seen when the case was written (each
    step: label, packet, class). A failure lists every step with both sides' classes."""
    seq: Seq = [(pkt, T0 + i * 0.001) for i, (_, pkt, _) in enumerate(steps)]
    res, k, ours = run_both(seq)
    assert k.classes is not None
    width = max((len(label) for label, _, _ in steps), default=0)
    rows = [
        f"{'  ' if a == b == e else '!!'} {label:{width}} kernel {a:12} nfct {b:12} seen {e}"
        for (label, _, e), a, b in zip(steps, k.classes, ours, strict=True)
    ]
    assert res.agree, res.render() + "\n" + "\n".join(rows)
    assert k.classes == [e for _, _, e in steps], "\n".join(rows)
    return k


# --- UDPLITE checksums across lengths ----------------------------------------------------------

#: L4 lengths (header included) of the UDPLITE and UDP datagrams of `udplite_length_cases`.
UDPLITE_LENGTHS = (*range(8, 601), 767, 768, 769, 1000, 1024, 1279, 1280, 1452, 1480)


def udplite_length_cases(*, checksum: bool = True) -> tuple[Seq, list[str], list[str]]:
    """One packet per flow, IPv4 and IPv6, for every length of UDPLITE_LENGTHS: UDPLITE with
    checksum coverage 0, 8, half and all, its checksum computed three ways (pseudo-header
    protocol 17 and the length's low byte over IPv4, protocol 17 and the whole length as UDP
    has it, protocol 136 and the whole length as RFC 3828 says); plain UDP with its checksum
    right, and with the length's low byte in its pseudo-header; IPv4 UDPLITE datagrams of
    3000 bytes in fragments. Returns the packets, the class the kernel gives each one (what
    Linux 6.18 was observed to do, `checksum`: with nf_conntrack_checksum 1 or 0; see
    docs/fidelity.md, "UDPLITE checksums") and a label for each."""
    pkts, oks, labels = _udplite_length_cases()
    expected = [ok if ok == "dropped" or checksum else "new" for ok in oks]
    return list(pkts), expected, list(labels)


@functools.cache
def _udplite_length_cases() -> tuple[
    tuple[tuple[bytes, float], ...], tuple[str, ...], tuple[str, ...]
]:
    pkts: Seq = []
    expected: list[str] = []
    labels: list[str] = []
    sport = 1024

    def add(pkt: bytes, ok: bool, label: str) -> None:
        pkts.append((pkt, T0 + len(pkts) / 100_000))
        expected.append("new" if ok else "invalid")
        labels.append(label)

    for src, dst in ((C, S), (C6, S6)):
        v4 = src == C
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        for n in UDPLITE_LENGTHS:
            if not v4 and n > 1460:
                continue
            payload = bytes((i * 7 + n) & 0xFF for i in range(n - 8))
            for cov in (0, 8, 8 + (n - 8) // 2, n):
                for how, proto, length, ok in (
                    ("low byte", P.IPPROTO_UDP, n & 0xFF, v4 or n < 256),
                    ("UDP's", P.IPPROTO_UDP, n, not v4 or n < 256),
                    ("RFC 3828", P.IPPROTO_UDPLITE, n, False),
                ):
                    sport += 1
                    pkt = P.udplite(
                        src, dst, sport, 7001, payload, coverage=cov, pseudo_proto=proto,
                        pseudo_length=length,
                    )  # fmt: skip
                    add(pkt, ok, f"UDPLITE IPv{s.version} {n} B coverage {cov}, {how} checksum")
            sport += 1
            add(P.udp(src, dst, sport, 7001, payload), True, f"UDP IPv{s.version} {n} B")
            seg = P.udp_segment(src, dst, sport + 1, 7001, payload, checksum=0)
            low = P.inet_checksum(P.pseudo_header(s, d, P.IPPROTO_UDP, n & 0xFF) + seg) or 0xFFFF
            sport += 1
            pkt = P.udp(src, dst, sport, 7001, payload, checksum=low)
            add(pkt, n < 256, f"UDP IPv{s.version} {n} B, low byte checksum")
    payload = bytes(i & 0xFF for i in range(3000 - 8))
    for how, length, ok in (("low byte", 3000 & 0xFF, True), ("UDP's", 3000, False)):
        sport += 1
        seg = P.udplite(C, S, sport, 7001, payload, pseudo_length=length)[20:]
        for off in range(0, len(seg), 1400):
            more = off + 1400 < len(seg)
            frag = P.ipv4(
                C, S, P.IPPROTO_UDPLITE, seg[off : off + 1400], ident=sport, frag_off=off // 8,
                more_fragments=more,
            )  # fmt: skip
            add(frag, ok, f"UDPLITE IPv4 3000 B fragment at {off}, {how} checksum")
            if more:
                expected[-1] = "dropped"  # held until the datagram is whole
    return tuple(pkts), tuple(expected), tuple(labels)
