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
