"""The live-kernel differential suite: every test here is marked `kernel` and runs packets
through the running kernel's own conntrack (nfct.kernel). Where the harness cannot run (not
root, no namespaces, no nft/conntrack, no conntrack in the kernel) the whole directory is
skipped with the reason nfct.kernel gives, except under CI=true, where that is a failure (CI
installs the tools, so a skip there would hide a broken install step)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import IN_CI
from nfct.kernel import KernelLab, KernelUnavailable, check_available

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.kernel)


@pytest.fixture(autouse=True, scope="session")
def _kernel_harness_available() -> None:
    try:
        check_available()
    except KernelUnavailable as e:
        if IN_CI:
            pytest.fail(f"kernel harness unavailable under CI=true: {e}", pytrace=False)
        pytest.skip(f"kernel harness unavailable: {e}")


@pytest.fixture
def lab() -> Iterator[KernelLab]:
    """A live namespace set up for replay (default sysctls), removed afterwards."""
    with KernelLab() as live:
        yield live


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from helpers import TOTALS

    if TOTALS["runs"]:
        terminalreporter.write_line(
            f"kernel differential: {TOTALS['runs']} runs through the live kernel and nfct, "
            f"{TOTALS['packets']} packets sent, {TOTALS['packet classes']} packet classes and "
            f"{TOTALS['entries']} kernel entries compared"
        )
