"""nfct against every scenario of tests/scenarios/ (the spec's edge cases as data, with what the
live kernel does with them), without a kernel: each scenario's packets replayed by nfct as a
router on their own clock, and, where they can, sent through the API one packet at a time
(tests/scenarios/base.py, `check_nfct`). tests/live/test_scenarios.py runs the same scenarios
through the live kernel."""

from __future__ import annotations

import pytest

from scenarios import all_scenarios
from scenarios.base import check_nfct

SCENARIOS = all_scenarios()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_nfct_does_what_the_kernel_does(name: str) -> None:
    check_nfct(SCENARIOS[name])
