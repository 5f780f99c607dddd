"""The edge-case scenarios of the spec (§16's E-numbers and more) as data: name -> packets
(with times), sysctls, and what the live Linux 6.18 kernel does with them. One module per
protocol family; tests/scenarios/base.py has the shape and the checks.

tests/test_scenarios.py holds nfct to every scenario (no kernel needed); tests/live/
test_scenarios.py runs each through the live kernel, holds the kernel to it and compares the
kernel with nfct. Checks that go beyond a scenario's data are tests beside the module's other
tests (tests/test_tcp.py, tests/test_edge_cases.py, ...), built on the scenario's packets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scenarios.base import Scenario


def all_scenarios() -> dict[str, Scenario]:
    """Every scenario by name (names are unique across the modules)."""
    from scenarios import defrag, gre, sctp, tcp, udp_icmp

    out: dict[str, Scenario] = {}
    for module in (tcp, udp_icmp, sctp, gre, defrag):
        for name, scenario in module.SCENARIOS.items():
            assert name not in out, f"scenario {name!r} in two modules"
            out[name] = scenario
    return out
