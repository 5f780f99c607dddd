"""The scenarios of tests/scenarios/ (the spec's edge cases as data) through the live kernel.

Every scenario runs once through the running kernel's conntrack (nfct.kernel's namespace, one
packet at a time: its ct state class, where the scenario asks for it `conntrack -L -o extended`
after each packet, the statistics and the event log at the end). Two tests per scenario:

* ``test_kernel_does_what_the_scenario_says``: the kernel's classes, tables, statistics and
  events are the scenario's (tests/scenarios/base.py, `check_kernel`), so the data that
  tests/test_scenarios.py holds nfct to is still the kernel's behaviour.
* ``test_nfct_agrees_with_the_kernel``: the same packets through nfct (helpers.
  compare_with_nfct: replayed on the packets' own clock, then classes, table and statistics
  compared with the kernel's run), and where the kernel's table was listed after every packet,
  stepwise through the API (the same class and the same table after every packet).

The addresses exist only inside the harness's namespace, which has no link to the host's
network.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from helpers import Seq, compare_with_nfct
from nfct import kernel
from nfct.compare import compare_tables
from scenarios import all_scenarios
from scenarios.base import check_kernel, play

SCENARIOS = all_scenarios()


@dataclass
class KernelRun:
    """A scenario through the kernel, one packet at a time."""

    packets: Seq
    result: kernel.KernelResult
    #: `conntrack -L -o extended` right after each packet (where the scenario asks for it).
    snapshots: list[list[str]]


_RUNS: dict[str, KernelRun] = {}


def kernel_run(name: str) -> KernelRun:
    """The scenario's kernel run (once per session: both tests of a scenario share it)."""
    if name not in _RUNS:
        sc = SCENARIOS[name]
        pkts = sc.build()
        snapshots: list[list[str]] = []
        result = kernel.run_packets(
            pkts,
            sysctl=dict(sc.sysctl),
            per_packet=True,
            pace=sc.pace,
            after_each=(lambda lab: snapshots.append(lab.lines())) if sc.snapshots else None,
        )
        _RUNS[name] = KernelRun(pkts, result, snapshots)
    return _RUNS[name]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kernel_does_what_the_scenario_says(name: str) -> None:
    run = kernel_run(name)
    check_kernel(SCENARIOS[name], run.result, run.packets, run.snapshots)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nfct_agrees_with_the_kernel(name: str) -> None:
    sc = SCENARIOS[name]
    run = kernel_run(name)
    res, _ = compare_with_nfct(run.result, run.packets, sc.sysctl)
    assert res.agree, res.render()
    if not run.snapshots:
        return
    # Stepwise through the API: the same class and the same table after every packet.
    played = play(sc, packets=run.packets)
    assert run.result.classes is not None
    for i, skb in enumerate(played.skbs):
        assert skb.ctstate == run.result.classes[i], f"packet {i + 1}: {skb.invalid_reason}"
        step = compare_tables(run.snapshots[i], played.tables[i])
        assert step.agree, f"after packet {i + 1}:\n{step.render()}"


# --- checks beyond the data, next to their scenarios ------------------------------------------


def test_sctp_init_retransmission_does_not_refresh_on_the_kernel_clock() -> None:
    """10 s from the first INIT, 3.5 s ago: at most 7 s left on the kernel (a refresh by the
    retransmitted INIT would show 9)."""
    run = kernel_run("INIT retransmitted after 3.5 s on the kernel clock")
    (line,) = run.result.lines
    assert " CLOSED " in line, line
    assert int(line.split()[4]) <= 7, line
