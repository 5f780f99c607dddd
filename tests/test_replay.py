"""`Net.replay` from Python: the summary, the per-packet lines, the clocks, and what a damaged
capture leaves (the `nfct replay` command: tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import nfct
from nfct import (
    Net,
)

# --- Net.replay -----------------------------------------------------------------------------------


def test_net_replay_api(capture: Path, tmp_path: Path) -> None:
    net = Net()
    out = tmp_path / "packets.txt"
    summary = net.replay([capture], packets_path=out)
    assert summary["frames"] == 5
    assert summary["packets"] == 5
    assert summary["non_ip"] == 0
    assert (summary["new"], summary["established"], summary["invalid"]) == (2, 2, 1)
    assert summary["related"] == summary["dropped"] == summary["untracked"] == 0
    assert "unsupported" not in summary
    assert summary["reasons"] == {"nf_ct_udp: bad checksum": 1}
    assert out.read_text().splitlines() == [
        "1 new",
        "2 established",
        "3 new",
        "4 established",
        "5 invalid nf_ct_udp: bad checksum",
    ]
    assert net.now == pytest.approx(1005.0)
    assert sorted(net.dump("conntrack").splitlines()) == [
        "icmp     1 25 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 src=10.2.0.2 "
        "dst=10.1.0.2 type=0 code=0 id=4660 mark=0 use=1",
        "udp      17 25 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 src=10.2.0.2 "
        "dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1",
    ]
    frozen = Net()
    frozen.replay([capture], clock="frozen")
    assert {c.timeout for c in frozen} == {29}
    with pytest.raises(nfct.NfctError) as err:
        Net().replay([capture], clock="wall")
    assert isinstance(err.value, ValueError)


def test_net_replay_capture_error(capture: Path, tmp_path: Path) -> None:
    data = capture.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 10])  # ends inside the 5th record
    net = Net()
    with pytest.raises(nfct.CaptureError) as err:
        net.replay([cut])
    assert isinstance(err.value, OSError)
    assert err.value.path == str(cut)
    assert err.value.offset > 24
    assert err.value.summary["packets"] == 4
    assert "byte offset" in str(err.value)
    assert len(net) == 2  # everything before the damage was applied
    with pytest.raises(nfct.CaptureError) as missing:
        Net().replay([tmp_path / "nope.pcap"])
    assert missing.value.path == str(tmp_path / "nope.pcap")


def test_classic_and_pcapng_replay_alike_across_buffer_refills(tmp_path: Path) -> None:
    """Classic pcap records are parsed in place in the reader's buffer, pcapng blocks one at a
    time by the reader: the same packets in either format give the same per-packet lines,
    summary and table, over a capture of several megabytes (records cut by the buffer's end)
    whose flows time out and whose table fills."""
    from nfct import packets as P
    from nfct import pcap

    records: list[tuple[float, bytes]] = []
    t = 1.7e9
    for i in range(3000):
        c, s = f"10.{i // 250}.{i % 250}.1", "192.0.2.80"
        sport = 20000 + i % 40000
        size = (i * 397) % 1400
        t += 0.037
        records.append((t, P.tcp(c, s, sport, 80, seq=1, flags="S")))
        records.append((t + 0.001, P.tcp(s, c, 80, sport, seq=9, ack=2, flags="SA")))
        records.append(
            (t + 0.002, P.tcp(c, s, sport, 80, seq=2, ack=10, flags="A", payload=b"q" * size))
        )
        if i % 3 == 0:
            records.append((t + 0.003, P.udp(c, s, sport, 53, b"x" * size)))
        if i % 7 == 0:
            # Out of the window: INVALID.
            records.append((t + 0.004, P.tcp(s, c, 80, sport, seq=9_000_000, ack=2, flags="A")))
    classic, ng = tmp_path / "c.pcap", tmp_path / "c.pcapng"
    pcap.write_pcap(classic, records)
    pcap.write_pcapng(ng, [(ts, 0, data) for ts, data in records], ["eth0"])
    assert classic.stat().st_size > 3 << 20
    results = []
    for path in (classic, ng):
        net = Net({"nf_conntrack_max": 2048, "nf_conntrack_udp_timeout": 5}, seed=1)
        lines = tmp_path / f"{path.suffix}.txt"
        result = net.replay([path], packets_path=lines)
        summary = {
            k: result[k]
            for k in ("frames", "packets", "new", "established", "invalid", "dropped", "reasons")
        }
        early = net.stats["early_drop"]
        results.append((lines.read_text(), summary, net.dump("extended"), early))
    assert results[0] == results[1]
    text, summary, _, early = results[0]
    assert early > 0
    assert summary["packets"] == len(records)
    assert summary["invalid"] > 0 and summary["new"] > 0
    assert len(text.splitlines()) == len(records)
