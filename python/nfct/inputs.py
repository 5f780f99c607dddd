"""Captures as users hand them over: plain files, compressed files (gzip, bzip2, xz, zstd) and
standard input (``-``), turned into paths that :meth:`nfct.Net.replay` can open.

The compression is recognised by the file's first bytes, whatever its name. A plain pcap or
pcapng file is handed over as it is; anything else is decompressed by Python and either

* streamed through a pipe (``/dev/fd/N``) by a thread, when the replay's reader can read a
  pipe (it reads sequentially; :func:`reader_takes_pipes` asks it once), or
* written decompressed into a temporary file first (the ``spool`` mode, and the fallback while
  the reader still seeks back to the start of a file after its magic number: that needs as much
  room in the temporary directory as the decompressed capture).

Decompression errors (a corrupt or truncated compressed file) are remembered, not raised in
the middle of a replay: the reader sees the capture end where the good data ended, and
:meth:`CaptureInputs.error` then names the file and what went wrong, as a
:class:`~nfct.CaptureError`. An early end on the reading side (a replay stopped by Ctrl-C or
by a corrupt record) only stops the streaming thread.

::

    with CaptureInputs(["day1.pcap.gz", "-"]) as inputs:
        result = net.replay(inputs.paths)
    if inputs.error() is not None:
        ...

zstd needs the ``zstandard`` package (``pip install 'nfct[cli]'``) on Pythons without a
``compression.zstd`` module of their own.
"""

from __future__ import annotations

import functools
import os
import sys

from nfct.errors import CaptureError, MissingExtraError, NfctValueError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator, Sequence
    from types import TracebackType
    from typing import IO, Any, BinaryIO, Final, Literal, Self, TypeAlias

__all__ = [
    "CaptureInputs",
    "Mode",
    "compression_of",
    "open_decompressed",
    "reader_takes_pipes",
]

Mode: TypeAlias = "Literal['auto', 'pipe', 'spool']"
"""How a capture that is not a plain file reaches the replay: ``pipe`` streams it, ``spool``
writes it into a temporary file first, ``auto`` streams where the reader can read a pipe."""

#: Leading bytes of each compressed format nfct reads.
MAGICS: Final = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_HEAD: Final = 6
_CHUNK: Final = 1 << 20
# How much decompressed data is read ahead to find the first packet's time (--at).
_PREFIX_MAX: Final = 4 << 20


def compression_of(head: bytes) -> str | None:
    """The compression whose magic number ``head`` (the first bytes of a file) starts with:
    ``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zstd"``, or None."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return None


def _binary(f: object) -> BinaryIO:
    """``f``, a binary reader (a decompressor's file object, standard input behind the bytes
    read ahead), as the type checkers' BinaryIO: ``typing.cast`` without importing typing."""
    return f  # type: ignore[return-value]


def open_decompressed(kind: str, raw: BinaryIO) -> BinaryIO:
    """A reader of the decompressed bytes of ``raw`` (a binary stream in ``kind``'s format;
    concatenated gzip members, bzip2 streams and zstd frames are read through). Raises
    :class:`~nfct.MissingExtraError` when zstd is asked for and no zstd module is installed."""
    # Imported here: a plain capture should not pay for them at start-up.
    if kind == "gzip":
        import gzip

        return _binary(gzip.GzipFile(fileobj=raw, mode="rb"))
    if kind == "bzip2":
        import bz2

        return _binary(bz2.BZ2File(raw))
    if kind == "xz":
        import lzma

        return _binary(lzma.LZMAFile(raw))
    if kind == "zstd":
        return _zstd_reader(raw)
    raise NfctValueError(f"unknown compression {kind!r}")


def _zstd_reader(raw: BinaryIO) -> BinaryIO:
    try:  # Python 3.14 and later
        from compression import zstd

        return _binary(zstd.ZstdFile(raw))
    except ImportError:
        pass
    try:
        import zstandard
    except ImportError:
        raise MissingExtraError(
            "reading zstd-compressed captures needs the zstandard package: pip install 'nfct[cli]'"
        ) from None
    return _binary(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True))


def _pcap_header() -> bytes:
    """A classic pcap file header and no record (raw IP)."""
    return (
        (0xA1B2C3D4).to_bytes(4, "little")
        + bytes.fromhex("02000400")
        + bytes(8)
        + (65535).to_bytes(4, "little")
        + (101).to_bytes(4, "little")
    )


@functools.cache
def reader_takes_pipes() -> bool:
    """Whether :meth:`nfct.Net.replay` reads a capture from a pipe (asked once, with an empty
    capture). Its reader reads sequentially, but while it still seeks back to the start after
    reading the magic number a pipe fails, and compressed input is spooled instead."""
    from nfct._nfct import Net

    r, w = os.pipe()
    try:
        os.write(w, _pcap_header())
        os.close(w)
        w = -1
        try:
            Net().replay([f"/dev/fd/{r}"])
        except CaptureError:
            return False
        return True
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


class _Source:
    """One capture: where it came from and what the replay opens."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = name
        self.kind: str | None = None
        self.stream: BinaryIO | None = None  # the decompressed (or stdin) bytes
        self.raw: IO[bytes] | None = None  # the file under it, closed with it
        self.prefix = b""
        self.error: BaseException | None = None
        self.written = 0
        self.thread: threading.Thread | None = None
        self.read_fd = -1
        self.write_fd = -1
        self.spooled: str | None = None

    def describe(self) -> str:
        return "standard input" if self.name == "-" else self.name


class CaptureInputs:
    """The paths a replay opens for ``captures`` (file names, ``-`` for standard input), as a
    context manager: entering opens them (streaming threads, temporary files), leaving closes
    and removes them. ``paths`` and ``names`` are parallel lists; ``names`` are the captures
    as given."""

    def __init__(
        self,
        captures: Sequence[str | os.PathLike[str]],
        *,
        mode: Mode = "auto",
        tmpdir: str | os.PathLike[str] | None = None,
        stdin: BinaryIO | None = None,
    ) -> None:
        if mode not in ("auto", "pipe", "spool"):
            raise NfctValueError(f"mode must be auto, pipe or spool, not {mode!r}")
        self.names = [os.fspath(c) for c in captures]
        if self.names.count("-") > 1:
            raise NfctValueError("standard input (-) can be read only once")
        self._mode = mode
        self._tmpdir = os.fspath(tmpdir) if tmpdir is not None else None
        self._stdin = stdin
        self._sources = [_Source(n) for n in self.names]
        self.paths = list(self.names)
        self._open = False

    # --- opening --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Opens every capture that is not a plain file (see the module's description)."""
        if self._open:
            return
        self._open = True
        try:
            mode = self._mode
            for src in self._sources:
                self._sniff(src)
                if src.stream is None:
                    continue
                if mode == "auto":
                    mode = "pipe" if reader_takes_pipes() else "spool"
                if mode == "pipe":
                    self._start_pipe(src)
                else:
                    self._spool(src)
            self.paths = [s.path for s in self._sources]
        except BaseException:
            self.close()
            raise

    def _sniff(self, src: _Source) -> None:
        if src.name == "-":
            raw: IO[bytes] = self._stdin if self._stdin is not None else sys.stdin.buffer
            if raw.isatty():
                raise NfctValueError("-: standard input is a terminal, not a capture")
        else:
            try:
                raw = open(src.name, "rb")
            except OSError:
                return  # the replay names the file and the reason
        head = raw.read(_HEAD) if src.name == "-" else raw.peek(_HEAD)[:_HEAD]  # type: ignore[attr-defined]
        src.kind = compression_of(head)
        if src.kind is None and src.name != "-":
            raw.close()
            return
        src.raw = raw
        if src.kind is None:
            src.stream = _binary(raw)
            src.prefix = head
            return
        if src.name == "-":
            # What was read to look at the magic number goes back in front.
            raw = _binary(_Prepend(head, raw))
        try:
            src.stream = open_decompressed(src.kind, _binary(raw))
        except BaseException:
            if src.name != "-":
                src.raw.close()
            raise

    def _read(self, src: _Source, n: int) -> bytes:
        """Up to ``n`` bytes of the source's stream; a decompression error ends it (and is
        remembered)."""
        assert src.stream is not None
        if src.error is not None:
            return b""
        try:
            # read1: what one step of the decompressor gives, so that an error loses little.
            read = getattr(src.stream, "read1", src.stream.read)
            data: bytes = read(n)
            return data
        except Exception as e:  # OSError, EOFError, lzma.LZMAError, zstandard.ZstdError, ...
            src.error = e
            return b""

    def _chunks(self, src: _Source) -> Iterator[bytes]:
        """The source's bytes: what was read ahead, then the rest, chunk by chunk."""
        if src.prefix:
            yield src.prefix
        while chunk := self._read(src, _CHUNK):
            yield chunk

    def _start_pipe(self, src: _Source) -> None:
        src.read_fd, src.write_fd = os.pipe()
        src.path = f"/dev/fd/{src.read_fd}"
        # The start of the capture, decompressed, for first_tstamp().
        while len(src.prefix) < _PREFIX_MAX:
            chunk = self._read(src, _CHUNK)
            if not chunk:
                break
            src.prefix += chunk
            if _first_tstamp(src.prefix) is not None:
                break
        import threading

        src.thread = threading.Thread(
            target=self._pump, args=(src,), name=f"nfct-input-{src.describe()}", daemon=True
        )
        src.thread.start()

    def _pump(self, src: _Source) -> None:
        """Writes the stream into the pipe until it ends or the reading side goes away."""
        fd = src.write_fd
        try:
            for data in self._chunks(src):
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    src.written += n
        except OSError:
            pass  # the reader stopped early (EPIPE) or its side was closed: not an error
        finally:
            src.write_fd = -1
            os.close(fd)

    def _spool(self, src: _Source) -> None:
        import tempfile

        fd, path = tempfile.mkstemp(prefix="nfct-", suffix=".pcap", dir=self._tmpdir)
        src.spooled = src.path = path
        with os.fdopen(fd, "wb") as out:
            for data in self._chunks(src):
                out.write(data)
                src.written += len(data)

    # --- after the replay -----------------------------------------------------------------

    def close(self) -> None:
        """Stops the streaming threads (closing the reading side), closes the files and
        removes the temporary ones. Idempotent."""
        for src in self._sources:
            if src.read_fd >= 0:
                os.close(src.read_fd)
                src.read_fd = -1
        for src in self._sources:
            if src.thread is not None:
                src.thread.join()
                src.thread = None
            if src.stream is not None and src.name != "-":
                try:
                    src.stream.close()
                finally:
                    if src.raw is not None:
                        src.raw.close()
            src.stream = None
            if src.spooled is not None:
                try:
                    os.unlink(src.spooled)
                except FileNotFoundError:
                    pass
                src.spooled = None

    def error(self) -> CaptureError | None:
        """The first capture whose decompression failed, as a CaptureError naming it (its
        ``offset`` is how many decompressed bytes were handed over before), else None.
        Complete only after :meth:`close`."""
        for src in self._sources:
            if src.error is not None:
                what = f"{src.kind} " if src.kind else ""
                e = src.error
                msg = str(e) or type(e).__name__
                return CaptureError(
                    f"{src.describe()}: {what}data is corrupt or truncated: {msg} "
                    f"(after {src.written} bytes of capture)",
                    src.name,
                    src.written,
                )
        return None

    def rename(self, err: CaptureError) -> CaptureError:
        """``err`` (from a replay of :attr:`paths`) naming the capture as given instead of the
        pipe or temporary file the replay read."""
        for src in self._sources:
            if src.path != src.name and err.path == src.path:
                msg = str(err).replace(src.path, src.describe(), 1)
                new = CaptureError(msg, src.name, err.offset, err.summary)
                return new
        return err

    def name_of(self, path: str) -> str:
        """The capture as given for a path of :attr:`paths`."""
        for src in self._sources:
            if src.path == path:
                return src.name
        return path

    @property
    def substituted(self) -> bool:
        """Whether any capture is read through a pipe or a temporary file."""
        return any(s.path != s.name for s in self._sources)

    def first_tstamp(self) -> float | None:
        """The time of the first packet record of the first capture (None if it has none or
        cannot be read), without consuming what the replay will read."""
        if not self._sources:
            return None
        src = self._sources[0]
        if src.path == src.name or src.spooled is not None:
            from nfct.pcap import iter_records

            try:
                return next((ts for ts, _ in iter_records(src.path)), None)
            except CaptureError:
                return None
        return _first_tstamp(src.prefix)


def _first_tstamp(data: bytes) -> float | None:
    """The first record's time in the start of a capture, if it holds one whole."""
    from nfct import pcap

    if len(data) < 4:
        return None
    it: Any
    if int.from_bytes(data[:4], "little") == 0x0A0D0D0A:
        it = pcap._iter_pcapng(data, "-")
    else:
        it = pcap._iter_pcap(data, "-")
    try:
        for rec in it:
            return float(rec[0])
    except CaptureError:
        return None
    return None


class _Prepend:
    """A binary reader: ``head``, then the rest of ``raw``."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self._head = head
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                out, self._head = self._head + self._raw.read(), b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            if len(out) < n:
                out += self._raw.read(n - len(out))
            return out
        return self._raw.read(n)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return False

    def flush(self) -> None:
        pass
