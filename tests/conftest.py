"""Shared pytest set-up for nfct's tests.

- Hypothesis profiles: "dev" (the default) and "ci" (no deadline, derandomized, no example
  database), chosen by the HYPOTHESIS_PROFILE environment variable, else "ci" when CI=true.
  Which applies, per test:
  * the random kernel tests (tests/live/test_random.py, tests/live/test_strategies.py) are
    `@helpers.seeded`: whatever the profile, they draw from this run's seed, a new one per
    run (random), printed in the pytest header and under each of their failures with the
    command that reruns it (`NFCT_SEED=N pytest NODEID`; `--hypothesis-seed=N` is the same).
    A property of the kernel that holds for every input should be tried on new inputs each
    run; the printed seed makes a failure reproducible, which is what derandomizing bought.
    `NFCT_EXAMPLES_SCALE=20` multiplies their examples (helpers.examples) for long runs.
  * every other Hypothesis test follows the profile: derandomized in CI. Many of them pass
    only if the search finds something (a model's bug, every INVALID reason, a shrunk
    trace), which must not depend on the seed; the rest run hundreds of examples offline
    each run, and the dev profile tries new inputs on every developer's run.
- Paths: `repo_root`, `examples_dir`, and `shared_pcaps`, the developer capture set kept in
  <repo>/../shared/pcaps (beside the clone, as CI lays it out); tests that need it skip with a
  reason where it is absent. NFCT_SHARED_PCAPS overrides the location.
- `capture` and `ether_capture`: a small known capture (helpers.small_capture_records) as a
  raw-IP and as an Ethernet pcap.
- The `kernel` marker: such a test needs root, network namespaces, nft, conntrack and ip. Where
  these are missing it is skipped, except under CI=true, where it fails: CI installs them, so a
  skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The shared checks assert; show their operands on failure as in test modules.
pytest.register_assert_rewrite("helpers", "scenarios", "verdicts")

import helpers  # noqa: E402
import packets as P  # noqa: E402
from helpers import IN_CI, REPO_ROOT, shared_pcaps_dir, small_capture_records  # noqa: E402

# --- Hypothesis -------------------------------------------------------------------------------

settings.register_profile("dev", settings.default)
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev")
settings.load_profile(HYPOTHESIS_PROFILE)


def run_seed(config: pytest.Config) -> int:
    """The seed of the `seeded` tests: --hypothesis-seed, else $NFCT_SEED, else a random one."""
    given = config.getoption("hypothesis_seed", None) or os.environ.get("NFCT_SEED")
    if given is None or given == "":
        return secrets.randbelow(2**32)
    try:
        return int(given)
    except ValueError:
        raise pytest.UsageError(f"the Hypothesis seed must be an integer, not {given!r}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "seeded: a Hypothesis test drawn from this run's printed seed (helpers.seeded)"
    )
    helpers.RUN_SEED = run_seed(config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and item.get_closest_marker("seeded") is not None:
        report.sections.append(
            (
                "hypothesis seed",
                f"this run's seed is {helpers.RUN_SEED}; rerun this test with it:\n"
                f"  NFCT_SEED={helpers.RUN_SEED} python -m pytest '{item.nodeid}'",
            )
        )
    return report


# --- Paths ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """examples/ is shipped with the repository: its absence is a failure, not a skip."""
    path = REPO_ROOT / "examples"
    assert path.is_dir(), f"{path} is missing: examples/ is part of the repository"
    return path


@pytest.fixture(scope="session")
def shared_pcaps() -> Path:
    """<repo>/../shared/pcaps (or $NFCT_SHARED_PCAPS); skips the test where it is absent,
    except under CI=true, where a missing capture set is a failure (a skip would hide it)."""
    path = shared_pcaps_dir()
    if path is None:
        (pytest.fail if IN_CI else pytest.skip)(
            "shared capture set not found: expected ../shared/pcaps beside the repository "
            f"({REPO_ROOT.parent / 'shared' / 'pcaps'}) or NFCT_SHARED_PCAPS"
        )
    return path


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    """helpers.small_capture_records as a raw-IP pcap."""
    path = tmp_path / "small.pcap"
    path.write_bytes(P.pcap(small_capture_records()))
    return path


@pytest.fixture
def ether_capture(tmp_path: Path) -> Path:
    """helpers.small_capture_records as an Ethernet pcap."""
    path = tmp_path / "small-ether.pcap"
    records = [(t, P.ethernet(p)) for t, p in small_capture_records()]
    path.write_bytes(P.pcap(records, linktype=P.LINKTYPE_ETHERNET))
    return path


# --- The kernel marker ------------------------------------------------------------------------

KERNEL_TOOLS = ("nft", "conntrack", "ip")


def kernel_prerequisites_missing() -> list[str]:
    """What a `kernel` test needs and this machine lacks (empty where all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if not Path("/proc/self/ns/net").exists():
        missing.append("network namespaces")
    missing += [tool for tool in KERNEL_TOOLS if shutil.which(tool) is None]
    return missing


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is None:
        return
    missing = kernel_prerequisites_missing()
    if not missing:
        return
    reason = "kernel test needs " + ", ".join(missing)
    if IN_CI:
        pytest.fail(f"{reason}: CI=true, and .ci/run should have installed them", pytrace=False)
    pytest.skip(reason)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"hypothesis profile: {HYPOTHESIS_PROFILE}",
        f"hypothesis seed of the seeded tests: {helpers.RUN_SEED} (rerun with "
        f"NFCT_SEED={helpers.RUN_SEED}; examples x{helpers.EXAMPLES_SCALE:g})",
        f"shared pcaps: {shared_pcaps_dir() or 'absent'}",
        f"wheel dir: {os.environ.get('NFCT_WHEEL_DIR') or '(test_wheel builds its own)'}",
    ]
