"""nfct against the live Linux 6.18 kernel on every shared capture, with checksum checking on
and off (../shared/pcaps, its README "The live kernel's verdict"; spec §12, §16, §17).

The kernel harness wrote each capture's IP packets, in order and as fast as possible, into a
namespace that forwards everything; `kernel/NAME.checksumN.json` is what its conntrack held
afterwards. Here each capture is replayed in-process the same way (`Net.replay(...,
clock="frozen")`) and compared:

* the IP packet count: nfct's `summary["packets"]` equals the harness's `sent`;
* the entries of every protocol (TCP, UDP, ICMP, ICMPv6, GRE, SCTP, generic), as SETS keyed on
  (l3, protonum, original tuple, reply tuple); matched entries must agree on protocol, state,
  flags ([UNREPLIED]/[ASSURED]), mark and every other field, and on the timeout within 2 s;
* the `conntrack -S` counters invalid, error, drop, early_drop, insert_failed, clash_resolve.

Per-packet classes are not compared here: the recorded JSONs hold the table, the counters and
the events, not each packet's class. tests/live/test_captures.py compares every packet's class
against the live kernel (with the known differences in CLASS_GAPS).

Every difference that remains is a known gap of this version, written down as DATA in
tests/verdicts.py (ENTRY_GAPS, STAT_GAPS; CLASS_GAPS for the live test): the expected
kernel-minus-nfct difference, the issue that will close it and why. The test fails when
nfct's behaviour changes in any way the data does not say, including a gap closing (a
known-missing entry appearing, a counter difference shrinking): then update the data (and
tests/KERNEL_PCAPS.md) in the same change.

Known gaps and what they cover:

* hook pipeline issue: nfct models the router's routing decision (martians, multicast, hop
  limit) but not the packets the router itself sends. On the kernel those pass conntrack's
  LOCAL_OUT hook before the harness's output-hook drop rule: an ICMPv6 time-exceeded for a
  hop-limit-1 packet, or a redirect for a link-local packet routed back out the TUN device,
  quotes a packet whose entry was never confirmed (or an ND packet, which has no inverse) and
  counts in `error` (spec §9.4 steps 2-3, §12).

TCP (spec §7) used to be a gap: its packets got no entry, and the kernel's `invalid` and `error`
differed wherever TCP was judged. It is tracked since the TCP tracker landed, and every TCP
entry and counter of every capture matches. Fragments (defrag issue 5) used to be a gap: nfct
counted them invalid where the kernel's defrag hook holds them and tracks the reassembled
datagram (spec §1.2, E44). Reassembly is modelled since the defrag step landed, and the three
captures with fragments match entry for entry, counter for counter. Routing (loopback,
martians, multicast, hop limit) is modelled since the replay's routing step landed, and leaves
no difference. SCTP is tracked too; no shared capture carries it (checked by
test_capture_facts), so the SCTP scenarios (tests/scenarios/sctp.py) compare it with crafted
packets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import verdicts as K
from helpers import REPO_ROOT
from nfct.kernel import CT_CLASSES, iter_capture_frames, iter_capture_ip_frames
from verdicts import (
    CAPTURES,
    CHECKSUM_SETTINGS,
    CLASS_GAPS,
    ENTRY_GAPS,
    EXAMPLE_STAT_GAPS,
    HOOK_ISSUE,
    ISSUES,
    PARAMS,
    STAT_GAPS,
)

EXAMPLES = {p.stem for p in (REPO_ROOT / "examples").glob("*.pcap")}

# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def run(shared_pcaps: Path, request: pytest.FixtureRequest) -> tuple[dict[str, Any], Any]:
    """(kernel result, nfct result) for the test's capture and checksum setting."""
    name, cs = request.node.callspec.params["name"], request.node.callspec.params["cs"]
    capture = shared_pcaps / CAPTURES[name].file
    assert capture.is_file(), f"{capture} is missing from the shared capture set"
    return K.kernel_result(shared_pcaps, name, cs), K.nfct_result(capture, cs)


# --- the data itself ----------------------------------------------------------------------


def test_every_shared_capture_is_covered(shared_pcaps: Path) -> None:
    """A capture added to (or removed from) the shared set needs its line in CAPTURES, and
    every capture needs both kernel files."""
    on_disk = {p.name for p in shared_pcaps.iterdir() if p.suffix in (".pcap", ".pcapng")}
    assert on_disk == {c.file for c in CAPTURES.values()}
    for name in CAPTURES:
        for cs in CHECKSUM_SETTINGS:
            assert (shared_pcaps / "kernel" / f"{name}.checksum{cs}.json").is_file()


def test_gap_data_is_consistent() -> None:
    """Each known gap names a known issue, covers both checksum settings, and fits the
    capture: hook pipeline gaps only in `error`, where the kernel counts more; class gaps
    name real frames and real classes, and differ."""
    stat_gaps = [
        ("STAT_GAPS", STAT_GAPS, set(CAPTURES)),
        ("EXAMPLE_STAT_GAPS", EXAMPLE_STAT_GAPS, EXAMPLES),
    ]
    for table, data, names in stat_gaps:
        for name, gaps in data.items():
            assert name in names, (table, name)
            for counter, gap in gaps.items():
                where = f"{table}[{name!r}][{counter!r}]"
                _check_stat_gap(where, counter, gap)
    for name, cgap in CLASS_GAPS.items():
        where = f"CLASS_GAPS[{name!r}]"
        assert name in CAPTURES or name in EXAMPLES, where
        assert cgap.issues and set(cgap.issues) <= set(ISSUES), where
        assert cgap.classes and set(cgap.classes) <= set(CHECKSUM_SETTINGS), where
        for cs, frames in cgap.classes.items():
            assert frames, f"{where}[{cs}]: no frame"
            for frame, (k, n) in frames.items():
                assert frame >= 1 and k != n and {k, n} <= set(CT_CLASSES), (where, cs, frame)
    for name, egap in ENTRY_GAPS.items():
        assert name in CAPTURES and egap.issues and set(egap.issues) <= set(ISSUES), name
        sides = set(egap.kernel_only) | set(egap.nfct_only) | set(egap.fields)
        assert sides <= set(CHECKSUM_SETTINGS), name
        for cs, per_line in egap.fields.items():
            for line, diffs in per_line.items():
                assert diffs, f"ENTRY_GAPS[{name!r}].fields[{cs}][{line!r}]: no difference"


@pytest.mark.parametrize("name", list(CAPTURES))
def test_capture_facts(shared_pcaps: Path, name: str) -> None:
    """The facts CAPTURES states, read from the capture without nfct; the same reader's IP
    packet count must equal the harness's `sent`, which validates the reader."""
    pytest.importorskip("dpkt")
    cap = CAPTURES[name]
    facts = K.capture_facts(shared_pcaps / cap.file)
    assert facts.ip_packets == K.kernel_result(shared_pcaps, name, 1)["sent"]
    assert (facts.sctp > 0) == cap.sctp, facts
    assert (facts.fragments > 0) == cap.fragments, facts


def _check_stat_gap(where: str, counter: str, gap: K.StatGap) -> None:
    assert counter in K.COMPARED_STATS, where
    assert gap.issues and set(gap.issues) <= set(ISSUES), where
    assert set(gap.delta) == set(CHECKSUM_SETTINGS), where
    assert any(gap.delta.values()), f"{where}: a gap of 0 is no gap"
    if gap.issues == (HOOK_ISSUE,):
        assert counter == "error", where
        assert all(d > 0 for d in gap.delta.values()), where


def test_class_differences_name_frames() -> None:
    """The per-packet comparison of tests/live/test_captures.py reports a packet whose class
    differs by its frame number in the capture (non-IP frames counted), with both classes,
    and refuses a side that did not classify every IP packet."""
    path = REPO_ROOT / "examples" / "mixed.pcap"
    frames = [n for n, _p, _t in iter_capture_ip_frames(path)]
    every = [n for n, _f in enumerate(iter_capture_frames(path), 1)]
    assert len(frames) < len(every), "mixed.pcap has frames that are not IP"
    same = ["new"] * len(frames)
    assert K.class_differences(path, same, same) == {}
    other = ["related", *same[1:-1], "invalid"]
    assert K.class_differences(path, same, other) == {
        frames[0]: ("new", "related"),
        frames[-1]: ("new", "invalid"),
    }
    with pytest.raises(AssertionError, match="nfct classified"):
        K.class_differences(path, same, same[:-1])
    with pytest.raises(AssertionError, match="the kernel classified"):
        K.class_differences(path, [*same, "new"], same)


# --- nfct against the kernel ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "cs"), PARAMS)
def test_ip_packet_count(run: tuple[dict[str, Any], K.NfctResult], name: str, cs: int) -> None:
    kernel, ours = run
    assert ours.summary["packets"] == kernel["sent"], ours.summary


@pytest.mark.parametrize(("name", "cs"), PARAMS)
def test_entries(run: tuple[dict[str, Any], K.NfctResult], name: str, cs: int) -> None:
    kernel, ours = run
    k, n = K.by_key(kernel["entries"]), K.by_key(ours.entries)
    gap = ENTRY_GAPS.get(name)
    want_kernel_only = gap.kernel_only.get(cs, frozenset()) if gap else frozenset()
    want_nfct_only = gap.nfct_only.get(cs, frozenset()) if gap else frozenset()
    want_fields = gap.fields.get(cs, {}) if gap else {}
    kernel_only = {K.format_key(key) for key in k.keys() - n.keys()}
    nfct_only = {K.format_key(key) for key in n.keys() - k.keys()}
    assert kernel_only == want_kernel_only, "entries on the kernel only (missing in nfct)"
    assert nfct_only == want_nfct_only, "entries in nfct only (not on the kernel)"

    mismatches = {
        K.format_key(key): diffs
        for key in k.keys() & n.keys()
        if (diffs := K.differing_fields(k[key], n[key]))
    }
    assert mismatches.keys() == want_fields.keys(), mismatches
    for line, want in want_fields.items():
        assert K.differences_match(mismatches[line], want), (line, mismatches[line], want)


@pytest.mark.parametrize(("name", "cs"), PARAMS)
def test_stats(run: tuple[dict[str, Any], K.NfctResult], name: str, cs: int) -> None:
    kernel, ours = run
    gaps = STAT_GAPS.get(name, {})
    got = {c: int(kernel["stats"][c]) - int(ours.stats[c]) for c in K.COMPARED_STATS}
    want = {c: gaps[c].delta[cs] if c in gaps else 0 for c in K.COMPARED_STATS}
    kernel_stats = {c: kernel["stats"][c] for c in K.COMPARED_STATS}
    nfct_stats = {c: ours.stats[c] for c in K.COMPARED_STATS}
    assert got == want, f"kernel minus nfct; kernel {kernel_stats}, nfct {nfct_stats}"
