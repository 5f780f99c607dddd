"""nfct.strategies and nfct.testing against the live kernel: the valid flows of the strategies
are never INVALID (nor dropped or untracked) for the kernel either, and nfct classifies every
packet of them as the kernel does; `check(..., against="kernel")` runs a model against the
kernel itself.

Many flows go through one namespace at a time (the kernel harness costs about half a second
per run), as fast as the kernel takes them: the flows' own gaps are short, so no entry expires
on either side. The idle-gap test replays in real time instead, with lowered timeouts, so that
entries do expire.

The Hypothesis tests are `seeded` (tests/conftest.py): new examples each run from a printed
seed (NFCT_SEED=N reruns them), NFCT_EXAMPLES_SCALE=20 for twenty times CI's examples."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import nfct
import nfct.strategies as nst
from helpers import T0, compare_with_nfct, count_run, examples, seeded, udplite_length_cases
from nfct import kernel
from nfct.kernel import KernelLab
from nfct.testing import check, nfct_step, nfct_verdicts
from nfct.traffic import US, Trace, describe_records

RUNS = settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)


def through_the_kernel(trace: Trace) -> list[str]:
    res = kernel.run_packets([(data, t) for t, data in trace], per_packet=True)
    assert res.classes is not None
    count_run(packets=res.sent, classes=len(res.classes))
    return res.classes


def valid_on_both(trace: Trace) -> None:
    theirs = through_the_kernel(trace)
    ours = [v.cls for v in nfct_verdicts(trace)[0]]
    bad = [i for i, c in enumerate(theirs) if c in ("invalid", "dropped", "untracked")]
    rows = "\n".join(
        f"{'>' if i in bad else ' '}{i:4} {k:12} {n:12} {p.describe()}  ({p.note}, f{p.flow})"
        for i, (k, n, p) in enumerate(zip(theirs, ours, trace.packets, strict=True))
    )
    assert not bad, f"the kernel finds valid packets INVALID:\n{rows}"
    assert theirs == ours, f"nfct and the kernel classify differently:\n{rows}"


VALID: dict[str, Callable[[], Any]] = {
    "tcp": nst.tcp_flows,
    "udp and udplite": nst.udp_flows,
    "icmp echo and errors": nst.icmp_flows,
    "sctp": nst.sctp_flows,
    "gre": nst.gre_flows,
}


@pytest.mark.seeded
@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_flows_are_valid_for_the_kernel(name: str) -> None:
    @seeded
    @RUNS
    @given(nst.traces(VALID[name](), min_flows=12, max_flows=20, idle=False))
    def run(trace: Trace) -> None:
        valid_on_both(trace)

    run()


@seeded
@RUNS
@given(nst.traces(nst.flows(), min_flows=12, max_flows=20, idle=False))
def test_mixed_valid_flows_are_valid_for_the_kernel(trace: Trace) -> None:
    valid_on_both(trace)


# --- idle gaps, in real time ------------------------------------------------------------------

#: Timeouts lowered so that gaps of seconds cross them: 1 s for every state, 4 s for the
#: states of an answered flow (UDP and GRE streams, TCP and SCTP ESTABLISHED).
SHORT_S, LONG_S = 1, 4
LOWERED = {
    name: LONG_S
    if name.endswith(("_stream", "tcp_timeout_established", "sctp_timeout_established"))
    else SHORT_S
    for name in nfct.Net().sysctl
    if "_timeout" in name and "frag6" not in name
}
#: Between the packets of a trace at most this (s): a trace's own time adds up to little.
STEP_S = 0.002
#: Idle gaps (us): "mid" past the short timeouts and UDP's 2-second stream rule, well short of
#: the long ones; "long" past every timeout. Sums of them and of the traces' own steps (at
#: most 0.3 s) stay 0.4 s or more away from every edge (1, 2, 4 s), as the kernel's pacing
#: and jiffies need: an entry expires on both sides or on neither.
IDLE_GAPS_US = ((2_400_000, 2_900_000), (4_500_000, 5_000_000))
#: A run counts only if every packet went out within this of its time (relative to the first):
#: any interval then errs by less than twice this, well inside the 0.4 s margins. Else it is
#: run again, up to ATTEMPTS times (a loaded machine can oversleep).
DRIFT_S = 0.15
ATTEMPTS = 3


@st.composite
def idle_traces(draw: st.DrawFn) -> Trace:
    """Valid flows on one clock, squeezed to STEP_S between packets, with one or two idle
    gaps of IDLE_GAPS_US anywhere."""
    trace = draw(nst.traces(nst.flows(), max_flows=4, idle=False))
    n = len(trace.packets)
    assert n * STEP_S <= 0.3 + STEP_S, n  # the margins above assume it
    gaps: dict[int, int] = {}
    if n > 1:
        for pos, (low, high), at in draw(
            st.lists(
                st.tuples(
                    st.integers(1, n - 1), st.sampled_from(IDLE_GAPS_US), st.integers(0, 10**6)
                ),
                min_size=1,
                max_size=2,
            )
        ):
            gaps[pos] = gaps.get(pos, 0) + low + at * (high - low) // 10**6
    pkts, t, prev = [], 0, None
    for i, p in enumerate(trace.packets):
        us = round(p.tstamp * US)
        if prev is not None:
            t += min(us - prev, round(STEP_S * US)) + gaps.get(i, 0)
        prev = us
        pkts.append(replace(p, tstamp=T0 + t / US))
    return Trace(tuple(pkts), trace.flows, "idle")


def paced_run(pkts: list[tuple[bytes, float]]) -> tuple[kernel.KernelResult, float]:
    """The packets through the kernel at their own pace with the LOWERED timeouts, its table
    listed right after the last one (instead of the harness's listing a moment later); and how
    late or early the latest packet went out, relative to the first (s)."""
    listed: list[str] = []
    sent: list[float] = []

    def stamp_and_list(lab: KernelLab) -> None:
        sent.append(time.monotonic())
        if len(sent) == len(pkts):
            listed.extend(lab.lines())

    k = kernel.run_packets(
        pkts, sysctl=LOWERED, per_packet=True, pace=True, after_each=stamp_and_list
    )
    drift = max(abs((s - sent[0]) - (t - pkts[0][1])) for s, (_, t) in zip(sent, pkts, strict=True))
    return replace(k, lines=listed), drift


@seeded
@settings(
    max_examples=examples(5),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(idle_traces())
def test_idle_gaps_agree_with_the_kernel_in_real_time(trace: Trace) -> None:
    """Valid flows with idle gaps that cross lowered timeouts (or do not), replayed at their
    own pace: nfct (on the packets' clock) and the kernel (on its own) agree on every packet
    (an entry expired in a gap makes the next packet NEW, or INVALID: an echo reply, a RST, an
    SCTP chunk other than INIT with no entry), on the table listed right after the last packet
    and on the statistics. Validity is not asserted: after an expiry a flow's next packet may
    rightly be INVALID."""
    pkts = [(data, t) for t, data in trace]
    late: list[str] = []
    for _ in range(ATTEMPTS):
        k, drift = paced_run(pkts)
        if drift <= DRIFT_S:
            break
        late.append(f"{drift:.3f} s")
    else:
        pytest.fail(f"the kernel run was late by more than {DRIFT_S} s each time: {late}")
    res, ours = compare_with_nfct(k, pkts, LOWERED)
    assert k.classes is not None
    table = describe_records(trace.packets, [("kernel", k.classes), ("nfct", ours)])
    assert res.agree, f"{res.render()}\n{table}"


class NfctModel:
    def reset(self) -> None:
        self.net = nfct.Net(seed=0)

    def packet(self, data: bytes, tstamp: float) -> str:
        return nfct_step(self.net, data, tstamp).cls


def test_check_against_the_kernel() -> None:
    """A model that is nfct, checked against the kernel on valid flows and the DNS race
    (`against="kernel"` replays at the traces' own pace)."""
    traces = nst.traces(nst.flows(), max_flows=3, idle=False) | nst.dns_race()
    check(NfctModel, traces, max_examples=3, against="kernel")


@pytest.mark.parametrize("checksum", [1, 0])
def test_udplite_checksums_across_lengths(checksum: int) -> None:
    """Over IPv4 conntrack verifies a UDPLITE checksum against a pseudo-header whose length is
    only the low byte of the datagram's (docs/fidelity.md, "UDPLITE checksums"): found by the
    strategies (a correct datagram of 256 bytes or more was INVALID for the kernel, NEW for
    nfct). One kernel run: lengths 8 to 600 and more, both families, four coverages, three
    ways to compute the checksum, plain UDP beside it, a fragmented datagram."""
    pkts, expected, labels = udplite_length_cases(checksum=bool(checksum))
    sysctl = {"nf_conntrack_checksum": checksum}
    k = kernel.run_packets(pkts, sysctl=sysctl, per_packet=True)
    assert k.classes is not None
    count_run(packets=k.sent, classes=len(k.classes))
    verdicts, table = nfct_verdicts([(t, p) for p, t in pkts], sysctl)
    ours = [v.cls for v in verdicts]
    wrong = [
        f"{label}: kernel {theirs}, expected {want}, nfct {mine}"
        for label, theirs, want, mine in zip(labels, k.classes, expected, ours, strict=True)
        if not theirs == want == mine
    ]
    assert not wrong, f"{len(wrong)} of {len(pkts)} differ:\n" + "\n".join(wrong[:40])
    # The same entries (the run lasts seconds: their timeouts are not compared) and counters.
    assert k.count == len(table) == expected.count("new")
    assert k.stats["invalid"] == expected.count("invalid")
