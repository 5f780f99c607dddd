"""The shipped artefacts, installed the way a user installs them.

- The wheel: one manylinux2014 (glibc 2.17) abi3 wheel for every CPython >= 3.11, which
  `auditwheel show` accepts, holding the package, the stub, the license files and the `nfct`
  script, with no dependency at run time (numpy is the `numpy` extra).
- Every CPython >= 3.11 on the machine (pyenv's versions, else `python3.X` on PATH): a fresh
  virtual environment per version gets the wheel (from the file alone, `--no-index`), then runs
  `nfct replay` on the shipped captures, `python -m nfct`, `nfct --version` and an API smoke
  test (tests/wheel_smoke.py). A classified version that is missing is skipped with a message;
  under CI=true a missing 3.11 (the machine's own Python) fails instead.
- The `numpy` extra: `pip install "nfct[numpy] @ wheel"` brings numpy and conntrack_batch
  works; without numpy conntrack_batch raises `nfct.MissingExtraError` (an `ImportError`)
  naming the extra.
- The sdist: its contents, and that it builds (cargo, maturin from PyPI) and installs in a
  fresh virtual environment.

The wheel and sdist are the ones in $NFCT_WHEEL_DIR where that is set (`make test` runs
`make wheels` into target/wheels, installs the wheel, and points this variable at it), else
built here by `make wheels` into a temporary directory. Select these tests with `-m wheel`.
"""

from __future__ import annotations

import configparser
import email.message
import email.parser
import email.policy
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.wheel, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
SMOKE = Path(__file__).resolve().parent / "wheel_smoke.py"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
VERSION = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())["package"]["version"]
# Shipped captures the installed command must replay (http.pcap is TCP only: it lists the three
# TCP entries, TCP being tracked).
SHIPPED = ("examples/http.pcap", "examples/dns.pcap", "examples/ping.pcap")
README = REPO_ROOT / "README.md"
QUICK_START = re.compile(r"^pip install \. && nfct replay (\S+)\s*$", re.MULTILINE)
# The Python this machine (and CI) runs the tests with: CI must not lose it.
REQUIRED_IN_CI = "3.11"
MANYLINUX_TAG = "manylinux_2_17_x86_64"


def _quick_start_captures() -> list[str]:
    """The captures the README's quick-start line `pip install . && nfct replay X` names."""
    return QUICK_START.findall(README.read_text()) if README.is_file() else []


def classified_pythons() -> list[str]:
    """The "Programming Language :: Python :: 3.X" classifiers of pyproject.toml, as "3.X"."""
    prefix = "Programming Language :: Python :: "
    found = [c.removeprefix(prefix) for c in PYPROJECT["project"]["classifiers"]]
    return sorted(
        (v for v in found if re.fullmatch(r"3\.\d+", v)), key=lambda v: int(v.split(".")[1])
    )


def _env() -> dict[str, str]:
    """This process's environment, less what would leak the outer Python into the venv."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYO3_PYTHON"}
    }
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", RUST_BACKTRACE="0")
    return env


def _run(
    args: list[str | Path], *, cwd: Path, timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
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
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
    return proc


# --- The interpreters -------------------------------------------------------------------------


def _pyenv_root() -> Path | None:
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        proc = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return Path(proc.stdout.strip())
    default = Path.home() / ".pyenv"
    return default if default.is_dir() else None


def _probe(exe: Path) -> str | None:
    """ "3.X" for a CPython with the GIL (abi3 wheels do not load on free-threaded builds)."""
    code = (
        "import sys, sysconfig; print(sys.implementation.name, "
        "'%d.%d' % sys.version_info[:2], bool(sysconfig.get_config_var('Py_GIL_DISABLED')))"
    )
    try:
        proc = subprocess.run(
            [exe, "-I", "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 3 or parts[0] != "cpython" or parts[2] != "False":
        return None
    return parts[1]


def _discover() -> dict[str, Path]:
    """One interpreter per CPython 3.X >= 3.11: the newest pyenv build of each, else
    `python3.X` on PATH (pyenv's shims excepted: they only run the selected versions)."""
    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    root = _pyenv_root()
    if root is not None and (root / "versions").is_dir():
        for version_dir in (root / "versions").iterdir():
            m = re.fullmatch(r"3\.(\d+)\.(\d+)", version_dir.name)
            exe = version_dir / "bin" / "python3"
            if not m or int(m.group(1)) < 11 or not exe.is_file():
                continue
            key = (int(m.group(1)), int(m.group(2)))
            minor = f"3.{m.group(1)}"
            if minor not in found or found[minor][0] < key:
                found[minor] = (key, exe)
    shims = root / "shims" if root else None
    for n in range(11, 30):
        minor = f"3.{n}"
        on_path = shutil.which(f"python{minor}")
        if minor in found or on_path is None:
            continue
        if shims is not None and Path(on_path).parent == shims:
            continue
        found[minor] = ((n, 0), Path(on_path))
    result = {}
    for minor, (_, exe) in found.items():
        if _probe(exe) == minor:
            result[minor] = exe
    return result


INTERPRETERS = _discover()
PYTHONS = sorted(set(classified_pythons()) | set(INTERPRETERS), key=lambda v: int(v.split(".")[1]))


# --- The artefacts ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$NFCT_WHEEL_DIR, else a directory `make wheels` has just filled."""
    prebuilt = os.environ.get("NFCT_WHEEL_DIR")
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp("dist")
    _run(
        ["make", "--no-print-directory", "wheels", f"WHEEL_DIR={out}", f"PYTHON={sys.executable}"],
        cwd=REPO_ROOT,
        timeout=3600,
    )
    return out


def _newest(paths: list[Path]) -> Path:
    return max(paths, key=lambda path: path.stat().st_mtime)


@pytest.fixture(scope="module")
def wheel(dist_dir: Path) -> Path:
    wheels = list(dist_dir.glob("nfct-*-manylinux*_x86_64.whl"))
    assert wheels, f"{dist_dir} holds no nfct-*-manylinux*_x86_64.whl (make wheels)"
    return _newest(wheels)


@pytest.fixture(scope="module")
def sdist(dist_dir: Path) -> Path:
    sdists = list(dist_dir.glob("nfct-*.tar.gz"))
    assert sdists, f"{dist_dir} holds no nfct-*.tar.gz (make wheels)"
    return _newest(sdists)


def _wheel_metadata(wheel: Path) -> tuple[set[str], str, email.message.Message]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        raw = archive.read(f"{dist_info}/METADATA")
    meta = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw)
    return names, dist_info, meta


def test_wheel_name_is_manylinux2014_abi3(wheel: Path) -> None:
    # name-version-cp311-abi3-platform.whl: one wheel for every CPython >= 3.11, and glibc 2.17.
    assert wheel.name == (
        f"nfct-{VERSION}-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
    ), wheel.name


def test_auditwheel_accepts_the_wheel(wheel: Path, tmp_path: Path) -> None:
    proc = _run([sys.executable, "-m", "auditwheel", "show", wheel], cwd=tmp_path, timeout=120)
    text = " ".join(proc.stdout.split())
    assert f'is consistent with the following platform tag: "{MANYLINUX_TAG}"' in text, proc.stdout
    # Only the system libraries manylinux allows: nothing bundled, nothing else linked.
    assert "libraries will be copied" not in text, proc.stdout


def test_wheel_contents(wheel: Path) -> None:
    names, dist_info, _ = _wheel_metadata(wheel)
    for shipped in (
        "nfct/__init__.py",
        "nfct/__main__.py",
        "nfct/cli.py",
        "nfct/_nfct.pyi",
        "nfct/py.typed",
        "nfct/_nfct.abi3.so",
        "_nfct_launcher/__init__.py",
        f"{dist_info}/licenses/LICENSE-MIT",
        f"{dist_info}/licenses/LICENSE-APACHE",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}: {sorted(names)}"
    with zipfile.ZipFile(wheel) as archive:
        entry_points = configparser.ConfigParser()
        entry_points.read_string(archive.read(f"{dist_info}/entry_points.txt").decode())
        for license_file in ("LICENSE-MIT", "LICENSE-APACHE"):
            shipped_text = archive.read(f"{dist_info}/licenses/{license_file}")
            assert shipped_text == (REPO_ROOT / license_file).read_bytes(), license_file
    assert entry_points.get("console_scripts", "nfct", fallback=None) == "_nfct_launcher:main"


def test_wheel_metadata(wheel: Path) -> None:
    _, _, meta = _wheel_metadata(wheel)
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT OR Apache-2.0"
    assert sorted(meta.get_all("License-File") or []) == ["LICENSE-APACHE", "LICENSE-MIT"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Keywords"], "no keywords"
    classifiers = meta.get_all("Classifier") or []
    for minor in classified_pythons():
        assert f"Programming Language :: Python :: {minor}" in classifiers
    # Nothing at run time: every requirement belongs to an extra.
    requires = meta.get_all("Requires-Dist") or []
    assert all("extra ==" in req for req in requires), requires
    numpy_reqs = [req for req in requires if req.startswith("numpy")]
    assert numpy_reqs and all("extra == 'numpy'" in req for req in numpy_reqs), requires
    assert {"numpy", "report", "test", "docs"} <= set(meta.get_all("Provides-Extra") or [])


def test_readme_has_quick_start() -> None:
    assert _quick_start_captures(), f"{README} has no line 'pip install . && nfct replay CAPTURE'"


# --- Every CPython ----------------------------------------------------------------------------


def _fresh_venv(python: Path, root: Path) -> Path:
    """bin/ of a new virtual environment of `python` (with its own pip)."""
    _run([python, "-m", "venv", root], cwd=root.parent, timeout=300)
    return root / "bin"


# One venv per CPython version for the whole module, made when a test first needs it.
_VENVS: dict[str, Path] = {}


def _wheel_venv(minor: str, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv of CPython `minor` with only the wheel installed (no index: the
    wheel needs nothing else at run time); skips (fails, for 3.11 under CI) where that CPython
    is not on the machine."""
    if minor in _VENVS:
        return _VENVS[minor]
    python = INTERPRETERS.get(minor)
    if python is None:
        message = (
            f"CPython {minor} is not on this machine (looked in $(pyenv root)/versions and for "
            f"python{minor} on PATH): the wheel is not checked on it"
        )
        if IN_CI and minor == REQUIRED_IN_CI:
            pytest.fail(f"{message}; CI=true requires it", pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp(f"venv-{minor}")
    bin_dir = _fresh_venv(python, root / "venv")
    _run(
        [bin_dir / "python", "-m", "pip", "install", "-q", "--no-index", wheel],
        cwd=root,
        timeout=600,
    )
    _VENVS[minor] = bin_dir
    return bin_dir


@pytest.fixture(scope="module", params=PYTHONS, ids=[f"py{v}" for v in PYTHONS])
def venv_bin(
    request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return _wheel_venv(request.param, wheel, tmp_path_factory)


def _sorted_lines(text: str) -> list[str]:
    # Listing order follows the table's keyed hash, which is random unless --seed is given.
    return sorted(text.splitlines())


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
    # The same table as the nfct the tests run with (this very wheel under `make test`).
    here = _run([sys.executable, "-m", "nfct", "replay", path], cwd=tmp_path, timeout=300)
    assert _sorted_lines(proc.stdout) == _sorted_lines(here.stdout)
    assert proc.stderr == here.stderr


def test_api_smoke(venv_bin: Path, tmp_path: Path) -> None:
    proc = _run([venv_bin / "python", "-I", SMOKE, EXAMPLES], cwd=tmp_path, timeout=300)
    assert proc.stdout.splitlines()[-1] == "smoke ok", proc.stdout


def test_python_m_nfct_and_version(venv_bin: Path, tmp_path: Path) -> None:
    script = _run([venv_bin / "nfct", "--version"], cwd=tmp_path, timeout=60)
    module = _run([venv_bin / "python", "-m", "nfct", "--version"], cwd=tmp_path, timeout=60)
    assert script.stdout == module.stdout == f"nfct {VERSION}\n"
    capture = EXAMPLES / "ping.pcap"
    script = _run([venv_bin / "nfct", "replay", "--seed", "7", capture], cwd=tmp_path, timeout=60)
    module = _run(
        [venv_bin / "python", "-m", "nfct", "replay", "--seed", "7", capture],
        cwd=tmp_path,
        timeout=60,
    )
    assert (module.stdout, module.stderr) == (script.stdout, script.stderr)
    bad = _run([venv_bin / "python", "-m", "nfct", "bogus"], cwd=tmp_path, timeout=60, check=False)
    assert bad.returncode == 2 and "usage: nfct" in bad.stderr, bad.stderr


# --- numpy, an extra --------------------------------------------------------------------------

# Run in a venv without numpy: what conntrack_batch raises, as JSON.
BATCH_WITHOUT_NUMPY = """
import json, sys
import nfct
try:
    nfct.Net().conntrack_batch(b"", [0])
except BaseException as e:
    print(json.dumps({"mro": [c.__qualname__ for c in type(e).__mro__],
                      "is_import_error": isinstance(e, ImportError),
                      "is_nfct_error": isinstance(e, nfct.NfctError),
                      "message": str(e)}))
else:
    print(json.dumps(None))
"""


@pytest.fixture(scope="module")
def venv_without_numpy(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv of this Python's version with the wheel alone (numpy absent)."""
    return _wheel_venv(f"3.{sys.version_info.minor}", wheel, tmp_path_factory)


def test_numpy_is_not_installed_with_the_wheel(venv_without_numpy: Path, tmp_path: Path) -> None:
    proc = _run(
        [venv_without_numpy / "python", "-I", "-c", "import numpy"],
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0 and "No module named 'numpy'" in proc.stderr, proc.stderr


def test_conntrack_batch_without_numpy_names_the_extra(
    venv_without_numpy: Path, tmp_path: Path
) -> None:
    proc = _run(
        [venv_without_numpy / "python", "-I", "-c", BATCH_WITHOUT_NUMPY],
        cwd=tmp_path,
        timeout=60,
    )
    raised = json.loads(proc.stdout.splitlines()[-1])
    assert raised is not None, "conntrack_batch worked without numpy"
    assert raised["is_import_error"] and raised["is_nfct_error"], raised
    assert "nfct[numpy]" in raised["message"], raised


BATCH_WITH_NUMPY = """
import numpy as np
import nfct
verdicts, ctinfo = nfct.Net().conntrack_batch(b"", np.zeros(1, dtype=np.int64))
assert (verdicts.dtype, ctinfo.dtype, len(verdicts)) == (np.uint32, np.int8, 0)
print("batch ok")
"""


def test_numpy_extra(wheel: Path, tmp_path: Path) -> None:
    """`nfct[numpy]` resolves from the wheel's metadata (numpy from PyPI, or pip's cache)."""
    bin_dir = _fresh_venv(Path(sys.executable), tmp_path / "venv")
    _run(
        [bin_dir / "python", "-m", "pip", "install", "-q", f"nfct[numpy] @ {wheel.as_uri()}"],
        cwd=tmp_path,
        timeout=900,
    )
    proc = _run([bin_dir / "python", "-I", "-c", BATCH_WITH_NUMPY], cwd=tmp_path, timeout=120)
    assert proc.stdout.strip() == "batch ok"


# --- The sdist --------------------------------------------------------------------------------


def test_sdist_contents(sdist: Path) -> None:
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
        pkg_info = archive.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        meta = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(pkg_info.read())
        for license_file in ("LICENSE-MIT", "LICENSE-APACHE"):
            member = archive.extractfile(f"{top}/{license_file}")
            assert member is not None, f"{license_file} missing from {sdist.name}"
            assert member.read() == (REPO_ROOT / license_file).read_bytes(), license_file
    for needed in (
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "rust/lib.rs",
        "python/nfct/__init__.py",
        "python/nfct/__main__.py",
        "python/_nfct_launcher/__init__.py",
        "python/nfct/_nfct.pyi",
        "python/nfct/py.typed",
    ):
        assert f"{top}/{needed}" in names, f"{needed} missing from {sdist.name}"
    assert top == f"nfct-{VERSION}"
    assert sorted(meta.get_all("License-File") or []) == ["LICENSE-APACHE", "LICENSE-MIT"]
    assert meta["License-Expression"] == "MIT OR Apache-2.0"
    # Nothing built and nothing from outside the repository.
    assert not [n for n in names if "/target/" in n or n.endswith((".so", ".whl"))], names


def test_sdist_builds_and_installs(sdist: Path, tmp_path: Path) -> None:
    """From scratch: pip builds the sdist in isolation (maturin from PyPI, the crates from
    crates.io or cargo's cache, a release build of its own), then the command runs."""
    if shutil.which("cargo") is None:
        pytest.fail("cargo is not on PATH: the sdist cannot be built", pytrace=False)
    bin_dir = _fresh_venv(Path(sys.executable), tmp_path / "venv")
    _run([bin_dir / "python", "-m", "pip", "install", "-q", sdist], cwd=tmp_path, timeout=3600)
    version = _run([bin_dir / "nfct", "--version"], cwd=tmp_path, timeout=60)
    assert version.stdout == f"nfct {VERSION}\n"
    proc = _run([bin_dir / "python", "-I", SMOKE, EXAMPLES], cwd=tmp_path, timeout=300)
    assert proc.stdout.splitlines()[-1] == "smoke ok", proc.stdout
