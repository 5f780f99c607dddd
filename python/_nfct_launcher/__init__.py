"""The entry point of the `nfct` command (``[project.scripts]`` in pyproject.toml) and of
``python -m nfct``: a Ctrl-C is at most one line, ``nfct: interrupted``, and exit status 130,
never a KeyboardInterrupt traceback.

Outside the nfct package on purpose: importing the package (its extension module, typing, ...)
and then `nfct.cli` takes tens of milliseconds, and a Ctrl-C in that time used to print a
traceback. Importing this module imports nothing new and takes over Ctrl-C at once.
"""

# _signal: the builtin module under `signal`, which would import enum first (milliseconds more
# with Python's default handler under launchers that have not imported enum already; pip's has).
import _signal  # type: ignore[import-not-found]
import os
import sys

INTERRUPTED = "nfct: interrupted"


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, INTERRUPTED.encode() + b"\n")
    os._exit(130)


# While the command is imported, Ctrl-C exits at once: nothing has been done yet, and no
# KeyboardInterrupt can be swallowed by an import's `except BaseException`. At import, not in
# main(): the launcher imports this module and then calls main(), and a Ctrl-C between the two
# must not print a traceback either.
_signal.signal(_signal.SIGINT, _interrupted)


def main() -> int:
    """The `nfct` command: `nfct.cli.main` on ``sys.argv``.

    Once the command is imported a Ctrl-C is a KeyboardInterrupt again, which the commands
    handle where they can (a replay prints what it did); one that reaches here is the one line.
    Once the command has returned or exited, Ctrl-C is ignored: there is nothing left to stop.
    """
    from nfct.cli import main as command

    try:
        try:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            code = command()
        finally:
            _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return _exit_now(code)


def _exit_now(code: int) -> int:
    """Ends the process once the command is done, without the interpreter's teardown: after
    a replay that filled the table, freeing every object and module took 15-20 ms, 5% of the
    command (mypy ends the same way). What must happen still does: the atexit functions run
    and the standard streams are flushed. Where another Python thread is still running, or
    a stream cannot be flushed, or the command used worker processes (`report --jobs`,
    `--cluster`), the interpreter ends as usual instead: it waits for the thread, reports the
    stream as it always has, and lets multiprocessing take its processes down in order. The
    code is returned for that."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return code
    if "multiprocessing" in sys.modules:
        return code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        return code
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
