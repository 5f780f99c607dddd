"""Every code example of the documentation site (docs/*.md) runs here.

Fenced blocks, by their language:

- `python`: run in page order, all the blocks of a page in one namespace, from the repository
  root (so `examples/...` paths resolve), with the installed nfct. Their `assert` lines are
  the claims the page makes.
- `console`: each `$ command` (with `\\` continuation lines) runs in bash from the repository
  root, with this Python environment's bin/ first on PATH (so `nfct` is the installed
  command); what it prints, stdout and stderr together as a terminal shows them, must be the
  lines that follow it, exactly (trailing spaces aside).
- `sh`: build and install commands (pip, make, git, rustup, python -m venv, mkdocs). They are
  not run here (the Makefile and tests/test_wheel.py run the real ones) but may contain
  nothing else, so that no nfct example escapes the tests by being written as `sh`.
- `text`, `toml`, `yaml`: output or configuration shown, not code.

A block right after the line `<!-- test: kernel -->` needs the live kernel (root, nft,
conntrack): it runs as a `kernel` test. `make docs` builds the site itself
(`mkdocs build --strict`).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
KERNEL_MARK = "<!-- test: kernel -->"
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)(?P<rest>.*)$")
RUN = {"python", "console"}
SHOWN = {"text", "toml", "yaml"}
# What an `sh` block may hold: commands that build or install, and comments.
SH_COMMANDS = ("pip", "python", "python3", "make", "git", "rustup", "cd", ".", "source", "mkdocs")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    kernel: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page, at the start of a line (as the docs write them)."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].strip() == m.group("fence")), None
        )
        assert end is not None, f"{page}:{i + 1}: unclosed code fence"
        found.append(
            Block(
                page,
                i + 1,
                m.group("lang"),
                "\n".join(lines[i + 1 : end]) + "\n",
                previous == KERNEL_MARK,
            )
        )
        i = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def _param(block: Block) -> object:
    marks = [pytest.mark.kernel] if block.kernel else []
    return pytest.param(block, id=block.where, marks=marks)


def test_docs_have_examples() -> None:
    assert PAGES, f"no pages in {DOCS}"
    assert [b for b in ALL_BLOCKS if b.lang == "python"], "no python example in docs/"
    assert [b for b in ALL_BLOCKS if b.lang == "console"], "no console example in docs/"


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.where for b in ALL_BLOCKS])
def test_every_block_is_run_or_known(block: Block) -> None:
    assert block.lang in RUN | SHOWN | {"sh"}, (
        f"{block.where}: a ```{block.lang or '(no language)'} block: the docs tests do not "
        f"know whether to run it (use one of {sorted(RUN | SHOWN | {'sh'})})"
    )
    if block.lang == "sh":
        for raw in _commands(block.code):
            first = shlex.split(raw, comments=True)[:1]
            assert not first or first[0] in SH_COMMANDS, (
                f"{block.where}: `{raw}` in an sh block: only build and install commands "
                f"({', '.join(SH_COMMANDS)}) go there; write examples as console or python, "
                "so that they run"
            )


# --- python -----------------------------------------------------------------------------------

PYTHON_PAGES = sorted(
    {(b.page, b.kernel) for b in ALL_BLOCKS if b.lang == "python"},
    key=lambda pk: (str(pk[0]), pk[1]),
)


@pytest.mark.parametrize(
    ("page", "kernel"),
    [
        pytest.param(
            page,
            kernel,
            id=str(page.relative_to(REPO_ROOT)) + (" (kernel)" if kernel else ""),
            marks=[pytest.mark.kernel] if kernel else [],
        )
        for page, kernel in PYTHON_PAGES
    ],
)
def test_python_examples(page: Path, kernel: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's python blocks (those of the kernel kind, or the others), in order, in one
    namespace, as a reader would paste them into one interpreter."""
    monkeypatch.chdir(REPO_ROOT)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in blocks(page):
        if block.lang != "python" or block.kernel != kernel:
            continue
        # Line numbers in a traceback are the page's.
        code = compile("\n" * block.line + block.code, str(page), "exec")
        exec(code, namespace)


# --- console ----------------------------------------------------------------------------------


def _commands(code: str) -> list[str]:
    """Shell commands of a block, with `\\` continuation lines joined."""
    commands: list[str] = []
    pending = ""
    for line in code.splitlines():
        if pending:
            pending += " " + line.strip()
        else:
            pending = line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        if pending:
            commands.append(pending)
        pending = ""
    return commands


def console_sessions(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ ` prompt of a console block."""
    sessions: list[tuple[str, list[str]]] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"{block.where}: console text before any `$ ` prompt"
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        sessions.append((command, output))
    return sessions


CONSOLE = [b for b in ALL_BLOCKS if b.lang == "console"]


@pytest.mark.parametrize("block", [_param(b) for b in CONSOLE])
def test_console_examples(block: Block) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    # Python's stdout is line-buffered on a terminal: the same order of stdout and stderr.
    env["PYTHONUNBUFFERED"] = "1"
    for command, expected in console_sessions(block):
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            check=False,
        )
        printed = [line.rstrip() for line in proc.stdout.splitlines()]
        assert printed == [line.rstrip() for line in expected], (
            f"{block.where}: `{command}` (exit status {proc.returncode}) printed\n"
            + "\n".join(printed)
        )


# --- the API reference ------------------------------------------------------------------------


def test_reference_reads_the_stub() -> None:
    """The API reference (mkdocstrings, static) documents the native module from its stub, so
    that the stub's docstrings appear in it with no further change."""
    griffe = pytest.importorskip("griffe")
    package = griffe.load("nfct", search_paths=[str(REPO_ROOT / "python")], allow_inspection=False)
    for name in ("Net", "Skb", "Conn", "ipv4_conntrack_in", "ipv4_confirm", "ip_rcv"):
        target = package[name].final_target
        assert target.filepath.name == "_nfct.pyi", (name, target.filepath)
    assert package["NfctError"].final_target.docstring is not None


# --- figures ----------------------------------------------------------------------------------

FIGURE = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)+(?:–\d+(?:\.\d+)?)?(?!\w)")


def test_performance_figures_come_from_results() -> None:
    """Every decimal figure of docs/performance.md is one of benches/RESULTS.md, so that the
    page cannot drift from the measurements (update both together)."""
    page = (DOCS / "performance.md").read_text()
    results = (REPO_ROOT / "benches" / "RESULTS.md").read_text()
    figures = set(FIGURE.findall(page))
    assert len(figures) > 20, figures
    assert sorted(f for f in figures if f not in results) == []
