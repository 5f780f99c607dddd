"""nfct.pcap, the pure-Python capture reader and writer: round trips, the pcap and pcapng
variants built byte by byte, errors with their offsets, and agreement with nfct's Rust reader
and with dpkt on the shipped (and, where present, shared) captures."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt
import pytest

import nfct
import packets as P
from nfct import CaptureError, NfctValueError, pcap

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

RECORDS = [
    (1_764_000_000.0, P.udp("192.0.2.1", "192.0.2.2", 1000, 53, b"q")),
    (1_764_000_000.25, P.udp("192.0.2.2", "192.0.2.1", 53, 1000, b"answer")),
    (1_764_000_001.000001, P.tcp("2001:db8::1", "2001:db8::2", 40000, 80, seq=1, flags="S")),
]


@pytest.mark.parametrize("nanosecond", [False, True])
def test_round_trip(tmp_path: Path, nanosecond: bool) -> None:
    path = tmp_path / "x.pcap"
    assert pcap.write_pcap(path, RECORDS, nanosecond=nanosecond) == len(RECORDS)
    frames = list(pcap.iter_frames(path))
    assert [f.data for f in frames] == [data for _, data in RECORDS]
    assert {f.linktype for f in frames} == {pcap.LINKTYPE_RAW}
    for frame, (ts, _) in zip(frames, RECORDS, strict=True):
        assert frame.tstamp == pytest.approx(ts, abs=1e-6)
    assert [data for _, data in pcap.iter_records(path)] == [data for _, data in RECORDS]
    assert path.read_bytes() == pcap.pcap_bytes(RECORDS, nanosecond=nanosecond)


def test_writer_streams_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "eth.pcap"
    with pcap.PcapWriter(path, linktype=pcap.LINKTYPE_ETHERNET) as w:
        for ts, data in RECORDS:
            w.write(ts, P.ethernet(data))
        assert w.count == len(RECORDS)
    assert [f.linktype for f in pcap.iter_frames(path)] == [pcap.LINKTYPE_ETHERNET] * 3
    # nfct's own reader takes the Ethernet frames apart.
    summary = nfct.Net().replay([path])
    assert (summary["frames"], summary["packets"]) == (3, 3)


@pytest.mark.parametrize(
    ("ts", "micros", "nanos"),
    [
        (1.9999996, 2_000_000, 1_999_999_600),
        (2.5e-6, 3, 2_500),  # tstamp * 1e6 is exactly 2.5: halves go up
        (2.5e-9, 0, 3),
        (1_764_000_000.25, 1_764_000_000_250_000, 1_764_000_000_249_999_872),
    ],
)
def test_timestamps_are_rounded_as_skb_rounds_them(ts: float, micros: int, nanos: int) -> None:
    """tstamp * units rounded half away from zero, as nfct.Skb(tstamp=...) converts to
    nanoseconds (float arithmetic included): a replay of the file sees the times the same
    packets given directly would have."""
    for nanosecond, units, want in ((False, 10**6, micros), (True, 10**9, nanos)):
        sec, frac = struct.unpack_from(
            "<II", pcap.pcap_bytes([(ts, b"")], nanosecond=nanosecond), 24
        )
        assert sec * units + frac == want


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 2.0**32])
def test_writer_rejects_timestamps_pcap_cannot_hold(bad: float) -> None:
    with pytest.raises(NfctValueError):
        pcap.pcap_bytes([(bad, b"\x45")])


def test_legacy_verify_writer_is_the_same_file(tmp_path: Path) -> None:
    """nfct.verify.write_pcap keeps its (packet, tstamp) order and writes what nfct.pcap does."""
    from nfct.verify import write_pcap

    write_pcap(tmp_path / "old.pcap", [(data, ts) for ts, data in RECORDS])
    assert (tmp_path / "old.pcap").read_bytes() == pcap.pcap_bytes(RECORDS, nanosecond=True)


# --- variants built byte by byte ----------------------------------------------------------------


def _classic(order: str, magic: int, linktype: int, records: list[tuple[int, int, bytes]]) -> bytes:
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for sec, frac, data in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), len(data)) + data
    return out


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(
    ("magic", "scale"), [(0xA1B2C3D4, 1e-6), (0xA1B23C4D, 1e-9)], ids=["micro", "nano"]
)
def test_classic_byte_orders(tmp_path: Path, order: str, magic: int, scale: float) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(_classic(order, magic, 113, [(10, 5, b"ab"), (11, 0, b"")]))
    assert list(pcap.iter_frames(path)) == [
        pcap.Frame(10 + 5 * scale, b"ab", 113),
        pcap.Frame(11.0, b"", 113),
    ]


def test_modified_pcap_has_longer_record_headers(tmp_path: Path) -> None:
    head = struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack("<IIII", 3, 500000, 2, 2) + b"\0" * 8 + b"xy"
    (tmp_path / "m.pcap").write_bytes(head + rec)
    assert list(pcap.iter_frames(tmp_path / "m.pcap")) == [pcap.Frame(3.5, b"xy", 1)]


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def _option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng(tmp_path: Path, order: str) -> None:
    """Two interfaces (10^-3 and 2^-10 s units, the second 100 s later by if_tsoffset), enhanced
    packet blocks on both, a simple packet block (the first interface, last timestamp, cut to
    the snap length), unknown blocks skipped."""
    shb = _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb0 = _block(
        order,
        1,
        struct.pack(order + "HHI", 1, 0, 4) + _option(order, 9, b"\x03") + _option(order, 0, b""),
    )
    idb1 = _block(
        order,
        1,
        struct.pack(order + "HHI", 101, 0, 0)
        + _option(order, 9, b"\x8a")
        + _option(order, 14, struct.pack(order + "q", 100)),
    )

    def epb(if_id: int, ticks: int, data: bytes) -> bytes:
        fields = struct.pack(order + "IIIII", if_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), 99)
        return _block(order, 6, fields + data)

    spb = _block(order, 3, struct.pack(order + "I", 6) + b"simple")
    unknown = _block(order, 0x999, b"whatever")
    path = tmp_path / "n.pcapng"
    path.write_bytes(
        shb + idb0 + idb1 + epb(0, 1500, b"eth") + unknown + epb(1, 3 * 1024, b"\x45raw") + spb
    )
    assert list(pcap.iter_frames(path)) == [
        pcap.Frame(1.5, b"eth", 1),
        pcap.Frame(103.0, b"\x45raw", 101),
        pcap.Frame(103.0, b"simp", 1),
    ]


# --- errors -------------------------------------------------------------------------------------


def test_truncated_record_after_good_ones(tmp_path: Path) -> None:
    data = pcap.pcap_bytes(RECORDS)
    path = tmp_path / "t.pcap"
    path.write_bytes(data[:-3])
    frames = pcap.iter_frames(path)
    assert [next(frames).data, next(frames).data] == [RECORDS[0][1], RECORDS[1][1]]
    with pytest.raises(CaptureError, match="truncated record") as info:
        next(frames)
    assert info.value.path == str(path)
    assert info.value.offset == len(data) - 16 - len(RECORDS[2][1])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file too short"),
        (b"\x00\x01\x02\x03" + b"\0" * 20, "not a pcap or pcapng file"),
        (struct.pack("<IHH", 0xA1B2C3D4, 2, 4), "truncated file header"),
        (struct.pack("<II", 0x0A0D0D0A, 28) + b"\0" * 4, "bad byte-order magic"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=message) as info:
        list(pcap.iter_frames(path))
    assert info.value.offset == 0


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open") as info:
        list(pcap.iter_frames(tmp_path / "absent.pcap"))
    assert isinstance(info.value, OSError)


# --- against the other readers --------------------------------------------------------------------


def _against_other_readers(path: Path) -> None:
    frames = list(pcap.iter_frames(path))
    assert nfct.Net().replay([path], clock="frozen")["frames"] == len(frames)
    with path.open("rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        theirs = list(reader)
    assert [data for _, data in theirs] == [f.data for f in frames]
    for (ts, _), frame in zip(theirs, frames, strict=True):
        assert frame.tstamp == pytest.approx(float(ts), abs=1e-6)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.pcap")))
def test_shipped_captures_read_as_nfct_and_dpkt_read_them(name: str) -> None:
    _against_other_readers(EXAMPLES / name)


def test_shared_captures_read_as_nfct_and_dpkt_read_them(shared_pcaps: Path) -> None:
    paths = sorted(shared_pcaps.glob("*.pcap*"))
    assert paths
    for path in paths:
        _against_other_readers(path)
