"""Package metadata that must stay consistent with itself (fast: nothing is built here; the
built wheel and sdist are checked in tests/test_wheel.py)."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import nfct.cli

REPO_ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
CARGO = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_python_classifiers_run_from_requires_python_without_gaps() -> None:
    minimum = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert minimum, PROJECT["requires-python"]
    prefix = "Programming Language :: Python :: 3."
    minors = sorted(
        int(c.removeprefix(prefix)) for c in PROJECT["classifiers"] if re.fullmatch(r".*3\.\d+", c)
    )
    assert minors == list(range(int(minimum.group(1)), minors[-1] + 1)), minors


def test_license_is_declared_once_and_shipped() -> None:
    assert PROJECT["license"] == CARGO["package"]["license"] == "MIT OR Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE-MIT", "LICENSE-APACHE"]
    assert "MIT License" in (REPO_ROOT / "LICENSE-MIT").read_text()
    assert "Apache License" in (REPO_ROOT / "LICENSE-APACHE").read_text()
    # PEP 639: a license expression replaces the license classifiers.
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


def test_no_runtime_dependency_and_the_extras() -> None:
    assert PROJECT["dependencies"] == []
    extras = PROJECT["optional-dependencies"]
    assert [r for r in extras["numpy"] if r.startswith("numpy")], extras["numpy"]
    assert {"numpy", "report", "test", "docs", "dist"} <= set(extras)
    # The tests need conntrack_batch, so the test extra pulls in the numpy one.
    assert "nfct[numpy]" in extras["test"]


def test_changelog_has_the_current_version() -> None:
    version = CARGO["package"]["version"]
    headings = re.findall(r"^## (\S+)", (REPO_ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] == version, headings


def test_make_deps_requirements_expand_nfct_extras() -> None:
    proc = subprocess.run(
        [sys.executable, REPO_ROOT / "tools" / "dev_requirements.py", "test", "docs", "dist"],
        capture_output=True,
        text=True,
        check=True,
    )
    reqs = proc.stdout.splitlines()
    # nfct's own extras are expanded, never installed from an index.
    assert not [r for r in reqs if r.replace(" ", "").startswith("nfct")], reqs
    names = {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert {"maturin", "numpy", "pytest", "mkdocs", "ziglang", "auditwheel"} <= names, names
    assert len(reqs) == len(set(reqs)), reqs


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        nfct.cli.main(["--version"])
    assert exit_info.value.code == 0
    version = importlib.metadata.version("nfct")
    assert capsys.readouterr().out == f"nfct {version}\n"
    assert version == CARGO["package"]["version"]
