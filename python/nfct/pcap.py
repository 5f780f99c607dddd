"""Reading and writing capture files from Python: one reader (classic pcap and pcapng) and two
writers (classic pcap, and pcapng for packets that name their interface), pure Python, with
records as ``(tstamp, data)`` everywhere: the timestamp in seconds first, the frame bytes
second.

nfct's own replay reads captures in Rust (``Net.replay``); this module is for Python callers:
building captures for tests and benchmarks, and the live-kernel harness (:mod:`nfct.kernel`),
which reads captures independently of nfct's reader on purpose.

Reading: :func:`iter_frames` yields :class:`Frame` ``(tstamp, data, linktype)`` for every
packet record of a classic pcap (micro- or nanosecond, either byte order, the "modified"
variant) or a pcapng file (enhanced and simple packet blocks, ``if_tsresol`` and
``if_tsoffset``); :func:`iter_records` yields only ``(tstamp, data)``. A missing, truncated or
corrupt file raises :class:`nfct.CaptureError` with ``path`` and ``offset``, after the records
before the bad one were yielded.

Writing: :class:`PcapWriter` (streaming), :func:`write_pcap` (a file) and :func:`pcap_bytes`
(in memory) write classic little-endian pcap, microsecond or (``nanosecond=True``) nanosecond
timestamps (``tstamp * 1e9`` rounded as ``nfct.Skb`` rounds it), one link type per file
(default ``LINKTYPE_RAW``: each record is an IP packet). :func:`write_pcapng` writes a pcapng
file whose records say which named interface each packet was seen on (``nfct replay`` takes a
packet's incoming interface from that name).
"""

from __future__ import annotations

import io
import math
import mmap
import operator
import os
import struct
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import BinaryIO, Final, NamedTuple, Self

from nfct.errors import CaptureError, NfctValueError

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "Frame",
    "PcapWriter",
    "Record",
    "iter_frames",
    "iter_records",
    "pcap_bytes",
    "write_pcap",
    "write_pcapng",
]

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276

#: One packet record: (timestamp in seconds, frame bytes).
Record = tuple[float, bytes]


class Frame(NamedTuple):
    """One packet record of a capture, with the link type of its interface."""

    tstamp: float
    data: bytes
    linktype: int


# --- reading ----------------------------------------------------------------------------------

_PCAPNG_SHB: Final = 0x0A0D0D0A
# magic -> (nanosecond timestamps, record header length)
_PCAP_MAGICS: Final = {
    0xA1B2C3D4: (False, 16),
    0xA1B23C4D: (True, 16),
    0xA1B2CD34: (False, 24),  # "modified" pcap (Kuznetzov): 8 more bytes per record header
}
_MAX_CAPLEN: Final = 1 << 26


def _error(path: str, offset: int, message: str) -> CaptureError:
    return CaptureError(f"{path}: {message} at byte offset {offset}", path, offset)


def iter_frames(path: str | os.PathLike[str]) -> Iterator[Frame]:
    """Every packet record of a pcap or pcapng file, in file order."""
    return map(Frame._make, _read(path))


def iter_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """``(tstamp, data)`` of every packet record of a pcap or pcapng file (link types dropped:
    use :func:`iter_frames` where they may differ)."""
    return map(_TSTAMP_DATA, _read(path))


_TSTAMP_DATA: Final = operator.itemgetter(0, 1)

# What the readers below yield: (tstamp, data, linktype), as a plain tuple (cheaper to make).
_Raw = tuple[float, bytes, int]


def _read(path: str | os.PathLike[str]) -> Iterator[_Raw]:
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except OSError as e:
        raise _error(name, 0, f"cannot open: {e}") from e
    with f:
        data = _map(f)
        try:
            if len(data) < 4:
                raise _error(name, 0, "file too short for a capture header")
            if int.from_bytes(data[:4], "little") == _PCAPNG_SHB:
                yield from _iter_pcapng(data, name)
            else:
                yield from _iter_pcap(data, name)
        finally:
            if isinstance(data, mmap.mmap):
                data.close()


def _map(f: BinaryIO) -> mmap.mmap | bytes:
    """The whole file, mapped (read on demand) where it can be, else read."""
    try:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty file, pipe, ...
        return f.read()


def _iter_pcap(data: mmap.mmap | bytes, name: str) -> Iterator[_Raw]:
    magic = bytes(data[:4])
    le, be = int.from_bytes(magic, "little"), int.from_bytes(magic, "big")
    if le in _PCAP_MAGICS:
        order = "<"
        nanos, rec_len = _PCAP_MAGICS[le]
    elif be in _PCAP_MAGICS:
        order = ">"
        nanos, rec_len = _PCAP_MAGICS[be]
    else:
        raise _error(name, 0, f"not a pcap or pcapng file (first bytes {magic.hex(' ')})")
    if len(data) < 24:
        raise _error(name, 0, "truncated file header")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0xFFFF
    unpack = struct.Struct(order + "IIII").unpack_from
    div = 1e9 if nanos else 1e6
    offset, end = 24, len(data)
    while offset < end:
        if offset + rec_len > end:
            raise _error(name, offset, "truncated record (file ends inside it)")
        sec, frac, caplen, _origlen = unpack(data, offset)
        if caplen > _MAX_CAPLEN:
            raise _error(name, offset, f"record length {caplen} is implausible (corrupt?)")
        start = offset + rec_len
        if start + caplen > end:
            raise _error(name, offset, "truncated record (file ends inside it)")
        offset = start + caplen
        yield sec + frac / div, data[start:offset], linktype


def _iter_pcapng(data: mmap.mmap | bytes, name: str) -> Iterator[_Raw]:
    order = "<"
    # (linktype, snaplen, units per second, offset in seconds) per interface of the section
    interfaces: list[tuple[int, int, int, int]] = []
    offset, end = 0, len(data)
    last_ts = 0.0
    while offset < end:
        if offset + 8 > end:
            raise _error(name, offset, "truncated block")
        if int.from_bytes(data[offset : offset + 4], "little") == _PCAPNG_SHB:
            if offset + 12 > end:
                raise _error(name, offset, "truncated section header")
            bom = bytes(data[offset + 8 : offset + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise _error(name, offset, "bad byte-order magic in section header")
            interfaces = []
        btype, blen = struct.unpack_from(order + "II", data, offset)
        if blen < 12 or blen % 4 or offset + blen > end:
            raise _error(name, offset, "truncated or corrupt block")
        # The body, without the type and length before it and the length repeated after it.
        body = data[offset + 8 : offset + blen - 4]
        if btype == 1 and len(body) >= 8:  # interface description
            interfaces.append(_interface(body, order))
        elif btype == 6 and len(body) >= 20:  # enhanced packet
            if_id, ts_hi, ts_lo, caplen, _origlen = struct.unpack_from(order + "IIIII", body)
            if if_id >= len(interfaces):
                raise _error(name, offset, f"packet block for undefined interface {if_id}")
            linktype, _snap, units, toff = interfaces[if_id]
            last_ts = ((ts_hi << 32) | ts_lo) / units + toff
            yield last_ts, body[20 : 20 + caplen], linktype
        elif btype == 3 and len(body) >= 4:  # simple packet: no timestamp of its own
            if not interfaces:
                raise _error(name, offset, "simple packet block with no interface")
            linktype, snaplen, _units, _toff = interfaces[0]
            n = min(len(body) - 4, struct.unpack_from(order + "I", body)[0])
            if snaplen:
                n = min(n, snaplen)
            yield last_ts, body[4 : 4 + n], linktype
        offset += blen


def _interface(body: bytes, order: str) -> tuple[int, int, int, int]:
    """(linktype, snaplen, timestamp units per second, timestamp offset in seconds) of an
    interface description block."""
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", body)
    resol, toff = 6, 0
    pos = 8
    while pos + 4 <= len(body):
        code, olen = struct.unpack_from(order + "HH", body, pos)
        val = body[pos + 4 : pos + 4 + olen]
        if code == 0:  # opt_endofopt
            break
        if code == 9 and val:  # if_tsresol
            resol = val[0]
        elif code == 14 and len(val) == 8:  # if_tsoffset
            toff = struct.unpack(order + "q", val)[0]
        pos += 4 + olen + (-olen % 4)
    units = 2 ** (resol & 0x7F) if resol & 0x80 else 10**resol
    return linktype, snaplen, units, toff


# --- writing ----------------------------------------------------------------------------------

_MAGIC_MICRO: Final = 0xA1B2C3D4
_MAGIC_NANO: Final = 0xA1B23C4D
_SNAPLEN: Final = 262144
_FILE_HEADER: Final = struct.Struct("<IHHiIII")
_RECORD_HEADER: Final = struct.Struct("<IIII")


class PcapWriter:
    """Writes a classic little-endian pcap record by record; a context manager.

    ``PcapWriter(path_or_binary_file, linktype=LINKTYPE_RAW, nanosecond=False)``, then
    ``write(tstamp, data)`` or ``write_all(records)``. A file object passed in is left open.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        *,
        linktype: int = LINKTYPE_RAW,
        nanosecond: bool = False,
    ) -> None:
        if isinstance(file, str | os.PathLike):
            self._f: BinaryIO = open(file, "wb", buffering=1 << 20)  # closed in close()
            self._owned = True
        else:
            self._f = file
            self._owned = False
        self._units = 10**9 if nanosecond else 10**6
        magic = _MAGIC_NANO if nanosecond else _MAGIC_MICRO
        self._f.write(_FILE_HEADER.pack(magic, 2, 4, 0, 0, _SNAPLEN, linktype))
        #: Records written so far.
        self.count = 0

    def write(self, tstamp: float, data: bytes | bytearray | memoryview) -> None:
        """One record: ``tstamp`` seconds (finite, >= 0), ``data`` the frame."""
        if not math.isfinite(tstamp) or tstamp < 0:
            raise NfctValueError(f"pcap timestamp must be a finite number >= 0, not {tstamp!r}")
        # The arithmetic nfct.Skb(tstamp=...) uses (Rust's f64::round of tstamp * 1e9: halves
        # away from zero), so that a replay of the file sees the very times the same packets
        # given directly would have.
        scaled = tstamp * self._units
        ticks = math.floor(scaled)
        ticks += scaled - ticks >= 0.5
        sec, frac = divmod(ticks, self._units)
        if sec > 0xFFFFFFFF:
            raise NfctValueError(f"pcap timestamp {tstamp!r} does not fit in 32-bit seconds")
        n = len(data)
        self._f.write(_RECORD_HEADER.pack(sec, frac, n, n))
        self._f.write(data)
        self.count += 1

    def write_all(self, records: Iterable[Record]) -> None:
        """Every ``(tstamp, data)`` record, in order."""
        for tstamp, data in records:
            self.write(tstamp, data)

    def close(self) -> None:
        """Flush, and close the file if this writer opened it; idempotent."""
        if self._owned:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_pcap(
    path: str | os.PathLike[str],
    records: Iterable[Record],
    *,
    linktype: int = LINKTYPE_RAW,
    nanosecond: bool = False,
) -> int:
    """Write ``(tstamp, data)`` records as a classic pcap file; returns how many."""
    with PcapWriter(path, linktype=linktype, nanosecond=nanosecond) as w:
        w.write_all(records)
        return w.count


def pcap_bytes(
    records: Iterable[Record], *, linktype: int = LINKTYPE_RAW, nanosecond: bool = False
) -> bytes:
    """The bytes of a classic pcap file holding ``(tstamp, data)`` records."""
    buf = io.BytesIO()
    with PcapWriter(buf, linktype=linktype, nanosecond=nanosecond) as w:
        w.write_all(records)
    return buf.getvalue()


def write_pcapng(
    path: str | os.PathLike[str],
    records: Iterable[tuple[float, int, bytes | bytearray | memoryview]],
    interfaces: Iterable[str],
    *,
    linktype: int = LINKTYPE_RAW,
) -> int:
    """Write a little-endian pcapng file of one section: an interface description block per
    name in ``interfaces`` (in order, their ``if_name`` option set; link type ``linktype``,
    microsecond timestamps) and one enhanced packet block per ``(tstamp, interface, data)``
    record, ``interface`` an index into ``interfaces``. Returns how many records."""
    names = list(interfaces)

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)

    count = 0
    with open(path, "wb", buffering=1 << 20) as f:
        # Section header: byte-order magic, version 1.0, section length unknown.
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        for name in names:
            raw = name.encode()
            opts = struct.pack("<HH", 2, len(raw)) + raw + b"\0" * (-len(raw) % 4)
            opts += struct.pack("<HH", 0, 0)
            f.write(block(1, struct.pack("<HHI", linktype, 0, _SNAPLEN) + opts))
        for tstamp, iface, data in records:
            if not 0 <= iface < len(names):
                raise NfctValueError(
                    f"pcapng record {count + 1}: interface {iface} is not one of the "
                    f"{len(names)} given"
                )
            if not math.isfinite(tstamp) or tstamp < 0:
                raise NfctValueError(f"pcap timestamp must be a finite number >= 0, not {tstamp!r}")
            scaled = tstamp * 10**6
            ticks = math.floor(scaled)
            ticks += scaled - ticks >= 0.5
            n = len(data)
            head = struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, n, n)
            f.write(block(6, head + bytes(data)))
            count += 1
    return count
