"""The shipped artefact: an abi3 wheel that installs into a fresh venv, whose `nfct` script
replays the shipped example captures (examples/http.pcap, dns.pcap, ping.pcap and the one the
README's quick start names).

The wheel is the one in $NFCT_WHEEL_DIR where that is set (`make test` builds it once into
target/wheels, installs it, and points this variable at it), else one built here with
`maturin build --release`. The venv gets numpy from PyPI; the wheel is installed by path.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
# Shipped captures the installed command must replay (http.pcap is TCP only: it lists the three
# TCP entries, TCP being tracked).
SHIPPED = ("examples/http.pcap", "examples/dns.pcap", "examples/ping.pcap")
README = REPO_ROOT / "README.md"
QUICK_START = re.compile(r"^pip install \. && nfct replay (\S+)\s*$", re.MULTILINE)


def _quick_start_captures() -> list[str]:
    """The captures the README's quick-start line `pip install . && nfct replay X` names."""
    return QUICK_START.findall(README.read_text()) if README.is_file() else []


def _env() -> dict[str, str]:
    """This process's environment, less what would leak the outer Python into the venv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    }
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _run(args: list[str | Path], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, args))} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get("NFCT_WHEEL_DIR")
    if prebuilt:
        wheels = sorted(Path(prebuilt).glob("nfct-*.whl"), key=lambda path: path.stat().st_mtime)
        assert wheels, f"NFCT_WHEEL_DIR={prebuilt} holds no nfct-*.whl"
        return wheels[-1]
    out = tmp_path_factory.mktemp("wheels")
    _run(
        [sys.executable, "-m", "maturin", "build", "--release", "-i", sys.executable, "-o", out],
        cwd=REPO_ROOT,
        timeout=3600,
    )
    (built,) = out.glob("nfct-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv with the wheel (and numpy, from PyPI) installed."""
    root = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", root], cwd=root, timeout=300)
    bin_dir = root / "bin"
    _run([bin_dir / "python", "-m", "pip", "install", "-q", wheel], cwd=root, timeout=900)
    return bin_dir


def test_wheel_is_abi3(wheel: Path) -> None:
    # name-version-cp311-abi3-platform.whl: one wheel for every CPython >= 3.11.
    assert "-cp311-abi3-" in wheel.name, wheel.name
    assert wheel.name.endswith(("_x86_64.whl", "_aarch64.whl")), wheel.name


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
    for shipped in (
        "nfct/__init__.py",
        "nfct/cli.py",
        "nfct/_nfct.pyi",
        "nfct/py.typed",
        "nfct/_nfct.abi3.so",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}: {sorted(names)}"
    assert entry_points.get("console_scripts", "nfct", fallback=None) == "nfct.cli:main"


def test_installed_package_is_the_wheel(venv_bin: Path, tmp_path: Path) -> None:
    proc = _run(
        [venv_bin / "python", "-c", "import nfct, nfct._nfct; print(nfct._nfct.__file__)"],
        cwd=tmp_path,
        timeout=60,
    )
    assert Path(proc.stdout.strip()).is_relative_to(venv_bin.parent), proc.stdout


def test_readme_has_quick_start() -> None:
    assert _quick_start_captures(), f"{README} has no line 'pip install . && nfct replay CAPTURE'"


@pytest.mark.parametrize("capture", sorted({*SHIPPED, *_quick_start_captures()}))
def test_cli_replays_shipped_example(capture: str, venv_bin: Path, tmp_path: Path) -> None:
    # The examples ship with the repository: a missing one is a failure, not a skip.
    path = REPO_ROOT / capture
    assert path.is_file(), f"{path} is missing"
    # Run outside the repository, so that only the installed package can be imported.
    proc = _run([venv_bin / "nfct", "replay", path], cwd=tmp_path, timeout=300)
    lines = proc.stdout.splitlines()
    assert any(line.startswith("ipv4") for line in lines), (
        f"no line starting with 'ipv4' in the output of nfct replay {capture}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
