"""A replay's text output (``conntrack -E`` lines, ``--output packets`` lines) read on a thread
through a pipe, so that it is handled while the replay runs and never held whole."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class LinePipe:
    """A pipe whose writing end the replay opens by :attr:`path` (``/dev/fd/N``); a thread
    reads it and hands ``sink`` the lines (with their newlines) in chunks. :meth:`close`
    after the replay ends the stream, waits for the thread and raises what the sink raised."""

    def __init__(self, sink: Callable[[list[str]], object], name: str = "nfct-lines") -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.path = f"/dev/fd/{self.write_fd}"
        self.sink = sink
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with open(self.read_fd, encoding="utf-8", errors="replace", buffering=1 << 16) as f:
            while lines := f.readlines(1 << 16):
                if self.error is not None:
                    continue  # drained, so that the replay never blocks on a full pipe
                try:
                    self.sink(lines)
                except BaseException as e:  # raised by close(), after the replay
                    self.error = e

    def close(self) -> None:
        """Ends the stream (the replay has closed its own copy of the writing end), waits for
        the reading thread and raises the sink's exception, if any."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        self.thread.join()
        if self.error is not None:
            err, self.error = self.error, None
            raise err
