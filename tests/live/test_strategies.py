"""nfct.strategies and nfct.testing against the live kernel: the valid flows of the strategies
are never INVALID (nor dropped or untracked) for the kernel either, and nfct classifies every
packet of them as the kernel does; `check(..., against="kernel")` runs a model against the
kernel itself.

Many flows go through one namespace at a time (the kernel harness costs about half a second
per run), as fast as the kernel takes them: the flows' own gaps are short, so no entry expires
on either side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import nfct
import nfct.strategies as nst
from helpers import count_run, udplite_length_cases
from nfct import kernel
from nfct.testing import check, nfct_step, nfct_verdicts
from nfct.traffic import Trace

RUNS = settings(
    max_examples=4,
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
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_flows_are_valid_for_the_kernel(name: str) -> None:
    @RUNS
    @given(nst.traces(VALID[name](), min_flows=12, max_flows=20, idle=False))
    def run(trace: Trace) -> None:
        valid_on_both(trace)

    run()


@RUNS
@given(nst.traces(nst.flows(), min_flows=12, max_flows=20, idle=False))
def test_mixed_valid_flows_are_valid_for_the_kernel(trace: Trace) -> None:
    valid_on_both(trace)


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
