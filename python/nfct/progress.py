"""A progress display for long replays, fed by ``Net.replay(progress=...)``.

:func:`progress_bar` returns a callable to pass as ``progress=``: the replay calls it with
``(frames, packets)`` every 8192 frames and after each capture. On a terminal it shows the
packets replayed, the rate and the time elapsed, with ``tqdm`` when it is installed
(``pip install 'nfct[cli]'``) and otherwise as one line rewritten in place; anywhere else (a
file, a pipe, a CI log) it shows nothing. ``nfct replay``, ``nfct report`` and
``--export`` use it on standard error unless given ``--quiet``.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Self, TextIO

__all__ = ["ProgressBar", "progress_bar"]


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _count(n: float) -> str:
    """A count as a short number: 950, 12.3k, 4.56M."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """A ``progress(frames, packets)`` callable that draws on ``stream`` (a terminal), and
    a context manager that clears the display when the replay is over. ``enabled=False``
    makes every call do nothing."""

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool = True,
        desc: str = "nfct",
        use_tqdm: bool | None = None,
        min_interval: float = 0.2,
    ) -> None:
        self.stream = stream
        self.enabled = enabled
        self.desc = desc
        self.packets = 0
        self.frames = 0
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._min_interval = min_interval
        self._width = 0
        self._tqdm: Any = None
        if enabled and use_tqdm is not False:
            try:
                from tqdm import tqdm
            except ImportError:
                if use_tqdm:
                    raise
            else:
                # A terminal that reports no size (0 x 0) would get no bar from tqdm.
                cols = _columns(stream)
                self._tqdm = tqdm(
                    desc=desc,
                    unit=" packets",
                    unit_scale=True,
                    file=stream,
                    leave=False,
                    mininterval=min_interval,
                    dynamic_ncols=cols > 0,
                    ncols=None if cols > 0 else 80,
                    nrows=None if cols > 0 else 24,
                )

    @property
    def uses_tqdm(self) -> bool:
        """Whether the display is tqdm's."""
        return self._tqdm is not None

    def __call__(self, frames: int, packets: int) -> None:
        if not self.enabled:
            return
        new = packets - self.packets
        self.frames, self.packets = frames, packets
        if self._tqdm is not None:
            if new > 0:
                self._tqdm.update(new)
            return
        now = time.monotonic()
        if now - self._last_draw < self._min_interval:
            return
        self._last_draw = now
        elapsed = now - self._start
        rate = packets / elapsed if elapsed > 0 else 0.0
        line = (
            f"{self.desc}: {_count(packets)} packets ({_count(frames)} frames), "
            f"{_count(rate)} packets/s, {_clock(elapsed)} elapsed"
        )
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        """Removes the display (the summary line follows it)."""
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        elif self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
        self.enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def progress_bar(
    *,
    quiet: bool = False,
    stream: TextIO | None = None,
    desc: str = "nfct",
    use_tqdm: bool | None = None,
) -> ProgressBar:
    """A progress display on ``stream`` (default: standard error), enabled only when that is
    a terminal and ``quiet`` is false. ``use_tqdm``: None uses tqdm if it is installed, False
    never does."""
    out = stream if stream is not None else sys.stderr
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    return ProgressBar(out, enabled=tty and not quiet, desc=desc, use_tqdm=use_tqdm)
