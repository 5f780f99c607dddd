"""Whole captures through the live kernel and through nfct: every capture shipped in
examples/ and every one in ../shared/pcaps/ (skipped where absent, a failure under CI=true),
with checksum verification on and off.

Compared for every capture: the entries of every protocol (TCP, UDP, UDPLITE, ICMP, ICMPv6,
GRE, SCTP, generic), the `conntrack -S` counters, and every IP packet's class (new,
established, related, invalid, untracked or dropped: which of the harness's `ct state`
counters the packet moved). The known gaps are data in ONE place, tests/verdicts.py:
STAT_GAPS and EXAMPLE_STAT_GAPS (counters), ENTRY_GAPS (entries) and CLASS_GAPS (the exact
frames whose class differs, with the kernel's and nfct's class). Anything else that differs
fails the test, and so does a listed difference that no longer shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import verdicts as K
from helpers import count_run
from nfct import kernel
from nfct.conntrack_text import parse_conntrack_line
from nfct.verify import nfct_run

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.pcap"))


def _run(path: Path, cs: int) -> tuple[kernel.KernelResult, list[str], dict[str, int], list[str]]:
    k = kernel.run_capture(path, sysctl={"nf_conntrack_checksum": cs}, per_packet=True)
    lines, stats, classes = nfct_run(path, {"nf_conntrack_checksum": cs}, "frozen")
    return k, lines, stats, classes


def _check(
    name: str,
    path: Path,
    cs: int,
    k: kernel.KernelResult,
    lines: list[str],
    stats: dict[str, int],
    classes: list[str],
    stat_gaps: dict[str, int],
    entry_gap: tuple[frozenset[str], frozenset[str], dict[str, dict[str, tuple[Any, Any]]]] = (
        frozenset(),
        frozenset(),
        {},
    ),
) -> None:
    """Compares one run. ENTRY_GAP: the known (kernel-only, nfct-only, field differences) of
    tests/verdicts.py's EntryGap for this checksum setting."""
    want_kernel_only, want_nfct_only, want_fields = entry_gap
    kt = K.by_key([parse_conntrack_line(x) for x in k.lines])
    nt = K.by_key([parse_conntrack_line(x) for x in lines])
    kernel_only = {K.format_key(key) for key in kt.keys() - nt.keys()}
    nfct_only = {K.format_key(key) for key in nt.keys() - kt.keys()}
    assert kernel_only == want_kernel_only, "entries only on the kernel"
    assert nfct_only == want_nfct_only, "entries only in nfct"
    mismatches = {
        K.format_key(key): diffs
        for key in kt.keys() & nt.keys()
        if (diffs := K.differing_fields(kt[key], nt[key]))
    }
    assert mismatches.keys() == want_fields.keys(), mismatches
    for line, want in want_fields.items():
        assert K.differences_match(mismatches[line], want), (line, mismatches[line], want)
    got = {c: int(k.stats[c]) - int(stats[c]) for c in K.COMPARED_STATS}
    want_stats = {c: stat_gaps.get(c, 0) for c in K.COMPARED_STATS}
    assert got == want_stats, f"kernel minus nfct: kernel {k.stats}, nfct {stats}"
    # Every packet's class, whatever the counters say: a counter gap excuses no class
    # difference that CLASS_GAPS does not list frame by frame.
    assert k.classes is not None
    gap = K.CLASS_GAPS.get(name)
    want_classes = gap.classes.get(cs, {}) if gap else {}
    assert K.class_differences(path, k.classes, classes) == want_classes, (
        "frame -> (kernel class, nfct class), against CLASS_GAPS"
    )
    count_run(packets=k.sent, classes=len(k.classes), entries=len(kt))


@pytest.mark.parametrize("cs", [1, 0])
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_shipped_capture(path: Path, cs: int) -> None:
    k, lines, stats, classes = _run(path, cs)
    gaps = {c: g.delta[cs] for c, g in K.EXAMPLE_STAT_GAPS.get(path.stem, {}).items()}
    _check(path.stem, path, cs, k, lines, stats, classes, gaps)


@pytest.mark.parametrize(("name", "cs"), K.PARAMS)
def test_shared_capture(shared_pcaps: Path, name: str, cs: int) -> None:
    path = shared_pcaps / K.CAPTURES[name].file
    k, lines, stats, classes = _run(path, cs)
    # The live kernel reproduces the recorded verdict (a changed kernel shows up here).
    recorded = K.kernel_result(shared_pcaps, name, cs)
    assert k.sent == recorded["sent"]
    assert {c: k.stats[c] for c in K.COMPARED_STATS} == {
        c: recorded["stats"][c] for c in K.COMPARED_STATS
    }
    assert {K.entry_key(parse_conntrack_line(x)) for x in k.lines} == {
        K.entry_key(e) for e in recorded["entries"]
    }
    gaps = {c: g.delta[cs] for c, g in K.STAT_GAPS.get(name, {}).items()}
    egap = K.ENTRY_GAPS.get(name)
    entry_gap = (
        (
            egap.kernel_only.get(cs, frozenset()),
            egap.nfct_only.get(cs, frozenset()),
            egap.fields.get(cs, {}),
        )
        if egap
        else (frozenset(), frozenset(), {})
    )
    _check(name, path, cs, k, lines, stats, classes, gaps, entry_gap)
