"""The `nfct` command's start-up: what a replay imports, and the stand-ins that spare it typing
(nfct._types's named tuples, typed only for type checkers) and shutil (the help's width)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import _nfct_launcher
import nfct
import nfct._types
from helpers import EXAMPLES_DIR
from nfct import cli

# Modules a replay does not need, with what each cost at start-up when it was imported anyway:
# typing about 2 ms (for names only type checkers read), shutil 2 ms (argparse's help width,
# with bz2, lzma, zlib, fnmatch), json 1.2 ms, threading 0.7 ms (the line pipes of a few
# outputs).
NOT_AT_START = ("typing", "json", "shutil", "threading")

# The installed command, as the launcher runs it, with an atexit function (the launcher runs
# them before it ends the process) that writes the modules imported by then into a file.
_MODULES = """
import atexit, sys
out = sys.argv[1]
sys.path[:0] = sys.argv[2].split(":")
def modules():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
atexit.register(modules)
import _nfct_launcher
sys.argv = ["nfct", *sys.argv[3:]]
sys.exit(_nfct_launcher.main())
"""


def _modules_imported(tmp_path: Path, *args: str) -> set[str]:
    """The modules in sys.modules at the end of `nfct ARGS...`. Without the site module (-S),
    whose .pth files may import anything in a development environment; nfct and the launcher
    are found where this test imported them from."""
    out = tmp_path / "modules"
    paths = {str(Path(m.__file__).parent.parent) for m in (nfct, _nfct_launcher)}  # type: ignore[arg-type]
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _MODULES, str(out), ":".join(paths), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return set(out.read_text().split("\n"))


@pytest.mark.parametrize(
    "output", ["stats", "extended", "conntrack", "proc", "packets", "events", "counters", "json"]
)
def test_a_replay_imports_only_what_it_needs(tmp_path: Path, output: str) -> None:
    # A module imported at the top of nfct.cli (or of what it imports) for one subcommand or
    # output costs every command its import time: such imports go where they are used.
    modules = _modules_imported(
        tmp_path, "replay", str(EXAMPLES_DIR / "mixed.pcap"), "--output", output
    )
    assert "nfct.cli" in modules
    unwanted = {"json"} if output == "json" else set()
    assert sorted(modules.intersection(NOT_AT_START)) == sorted(unwanted)


def test_help_imports_no_shutil(tmp_path: Path) -> None:
    modules = _modules_imported(tmp_path, "replay", "--help")
    assert "argparse" in modules
    assert not modules.intersection(NOT_AT_START)


@pytest.mark.parametrize("columns", [None, "", "0", "-3", "wide", "37", " 120 ", "200"])
def test_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    # The width argparse would have found with shutil.get_terminal_size (the COLUMNS variable,
    # else the terminal's, else 80).
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._terminal_columns() == shutil.get_terminal_size().columns
    assert cli._HelpFormatter("nfct")._width == shutil.get_terminal_size().columns - 2


def test_named_tuples_are_the_typed_ones() -> None:
    # nfct._types defines each named tuple twice: as a typing.NamedTuple class for type
    # checkers and the documentation, and with collections.namedtuple at run time. The two
    # have the same fields, annotations and docstring.
    source = Path(nfct._types.__file__).read_text()
    guarded = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING" and node.orelse
    )
    classes = [node for node in guarded.body if isinstance(node, ast.ClassDef)]
    assert [c.name for c in classes] == ["PacketResult", "Counters", "HookOp"]
    for node in classes:
        runtime = getattr(nfct._types, node.name)
        assert runtime is getattr(nfct, node.name)
        fields = {
            stmt.target.id: ast.unparse(stmt.annotation)
            for stmt in node.body
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
        }
        assert runtime._fields == tuple(fields)
        assert runtime.__annotations__ == fields
        assert runtime.__doc__ == ast.get_docstring(node)
        assert runtime.__module__ == "nfct._types"
        assert runtime.__bases__ == (tuple,)
        assert runtime._field_defaults == {}
