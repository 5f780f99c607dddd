"""Ctrl-C while the `nfct` command starts: one line (`nfct: interrupted`) and exit status 130,
never a KeyboardInterrupt traceback, for the installed command and for `python -m nfct`.

The real command runs in a subprocess with a `sitecustomize` of the test's on PYTHONPATH that
adds an audit hook (nothing of nfct's is changed). Two ways to send the SIGINT:

- at an exact point: the hook itself sends it when the k-th module import after the start of
  `nfct.cli`'s import begins, for k spread over every import of the command's start-up (the
  heavy part: the nfct package, its extension module, nfct.cli and the standard library, and
  then those of `nfct --version` itself, importlib.metadata's, where Ctrl-C is a
  KeyboardInterrupt again);
- after a delay: the hook tells the test (a byte on a pipe) when `nfct.cli` starts to be
  imported, and the test sends the SIGINT 0, 5, 10, 20 or 40 ms later.

Both start from the import of `nfct.cli`, which only the entry point (`_nfct_launcher.main`)
does, once it has taken over Ctrl-C. What runs before it is not nfct's: the interpreter's own
start-up (a SIGINT there kills the process silently, status 130 in a shell, or aborts `import
site` with a traceback of Python's) and the launcher pip writes, which imports `re` before
the entry point.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SITECUSTOMIZE = """
import _signal
import os
import sys

_mode, _arg = os.environ["NFCT_TEST_SIGINT"].split(":")
_seen = []


def _hook(event, args):
    if event != "import" or not (_seen or args[0] == "nfct.cli"):
        return
    handler = _signal.getsignal(_signal.SIGINT)
    _seen.append(f"{args[0]} {getattr(handler, '__name__', handler)}")
    if _mode == "kill" and len(_seen) == int(_arg) + 1:
        os.kill(os.getpid(), 2)
    elif _mode == "sync" and len(_seen) == 1:
        os.write(int(_arg), b"x")


if _mode == "count":
    import atexit

    atexit.register(lambda: open(_arg, "w").write("\\n".join(_seen)))
sys.addaudithook(_hook)
"""

INTERRUPTED = "nfct: interrupted\n"


def _commands() -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("nfct")
    return {"nfct": [str(script)], "python -m nfct": [sys.executable, "-m", "nfct"]}


@pytest.fixture(params=["nfct", "python -m nfct"])
def command(request: pytest.FixtureRequest) -> list[str]:
    cmd = _commands()[request.param]
    if not Path(cmd[0]).exists():
        pytest.fail(f"{cmd[0]} is not installed (make install)", pytrace=False)
    return cmd


@pytest.fixture
def hook_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    return env


def _run(cmd: list[str], env: dict[str, str], mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cmd, "--version"],
        env={**env, "NFCT_TEST_SIGINT": mode},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ctrl_c_at_every_stage_of_the_imports(
    command: list[str], hook_env: dict[str, str], tmp_path: Path
) -> None:
    listing = tmp_path / "imports.txt"
    proc = _run(command, hook_env, f"count:{listing}")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    # Each import with the SIGINT handler in place as it began.
    imports = [line.split(" ") for line in listing.read_text().split("\n")]
    names = [name for name, _ in imports]
    # nfct.cli, the nfct package and its extension module (unless `python -m` imported them
    # first), argparse, json, socket, ...
    assert names[0] == "nfct.cli" and "argparse" in names and len(names) > 20, names
    # Both phases: while the command is imported (the entry point's handler exits at once),
    # then inside it (--version imports importlib.metadata: a KeyboardInterrupt, caught).
    handlers = [handler for _, handler in imports]
    assert handlers[0] == "_interrupted" and handlers[-1] == "default_int_handler", imports
    n = len(imports)
    points = sorted({*range(0, n, 3), 1, n - 2, n - 1, handlers.index("default_int_handler")})
    for k in points:
        proc = _run(command, hook_env, f"kill:{k}")
        where = f"SIGINT at import {k} of {n} ({' under '.join(imports[k])})"
        assert "Traceback" not in proc.stderr, f"{where}:\n{proc.stderr}"
        assert (proc.returncode, proc.stderr) == (130, INTERRUPTED), where


@pytest.mark.parametrize("delay_ms", [0, 5, 10, 20, 40])
def test_ctrl_c_soon_after_the_start(
    command: list[str], hook_env: dict[str, str], delay_ms: int
) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb", buffering=0) as started:
        try:
            proc = subprocess.Popen(
                [*command, "--version"],
                env={**hook_env, "NFCT_TEST_SIGINT": f"sync:{write_end}"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                pass_fds=(write_end,),
            )
        finally:
            os.close(write_end)
        ready, _, _ = select.select([started], [], [], 60)
        assert ready and started.read(1) == b"x", "nfct.cli was never imported"
    time.sleep(delay_ms / 1000)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    # Done before the SIGINT came (the version printed), or stopped with the one line.
    if proc.returncode == 0:
        assert err == "" and out.startswith("nfct "), (out, err)
    else:
        assert (proc.returncode, err) == (130, INTERRUPTED)
