"""The control plane offline: `Net.select/delete/update/flush` with conntrack's filters, the
events they send, bad filters refused; actions at capture times during a replay
(`replay(at=...)`, `nfct replay --at`), and a ruleset swapped mid-replay (`load_ruleset`).
(tests/live/test_ctnetlink.py checks the filters against conntrack-tools on the kernel.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import nfct
import packets as P
from helpers import C6, S6, C, S, X, feed, timed
from nfct.cli import main
from nfct.pcap import write_pcap


def _net() -> nfct.Net:
    net = nfct.Net()
    # With nf_conntrack_events=2, only entries made while someone listens send events.
    net.listen_events()
    feed(
        net,
        timed(
            P.udp(C, S, 4000, 53, b"q"),
            P.udp(S, C, 53, 4000, b"a"),
            P.udp(X, S, 4002, 123, b"ntp"),
            P.tcp(C, S, 40000, 80, flags="S", seq=1),
            P.udp(C6, S6, 5000, 53, b"q6"),
        ),
    )
    return net


def test_select_delete_update_flush() -> None:
    net = _net()
    assert len(net) == 4
    assert {c.proto for c in net.select(proto="udp")} == {"udp"}
    assert len(net.select(proto="udp")) == 3
    assert len(net.select(family="ipv6")) == 1
    assert len(net.select(src="10.1.0.0/16")) == 2
    assert len(net.select(reply_dst=C, reply_sport=53)) == 1
    assert len(net.select(status="SEEN_REPLY")) == 1
    assert len(net.select(proto=6, state="syn_sent")) == 1
    net.read_events()
    assert net.update(set_mark=0x10, dport=53) == 2
    assert net.update(set_mark=0x10, dport=53) == 0, "unchanged entries are not updated"
    events = net.read_events()
    assert len(events) == 2 and all(e.split()[0] == "[UPDATE]" and "mark=16" in e for e in events)
    assert net.update(timeout=5, proto="tcp") == 1
    assert [e.split()[0] for e in net.read_events()] == ["[UPDATE]"]
    (tcp,) = net.select(proto="tcp")
    # Listed an instant after the change, as conntrack -L after conntrack -U -t 5 shows it.
    assert tcp.timeout == 4
    assert net.delete(mark=0x10, mask=0xF0) == 2
    assert [e.split()[0] for e in net.read_events()] == ["[DESTROY]", "[DESTROY]"]
    assert net.flush() == 2
    assert len(net) == 0


def test_flush_kills_packets_in_flight() -> None:
    net = nfct.Net()
    skb = nfct.Skb(P.udp(C, S, 1, 2, b"x"), 1.0)
    nfct.ipv4_conntrack_in(net, skb)
    net.flush()
    assert nfct.ipv4_confirm(net, skb) == nfct.NF_DROP
    assert net.stats["insert_failed"] == 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"proto": "tcpp"}, "not a protocol name"),
        ({"src": "10.0.0.0/33"}, "prefix length"),
        ({"src": "nowhere"}, "not an address"),
        ({"status": "ASSURD"}, "not a status flag"),
        ({"family": "ipx"}, "family must be"),
        ({"mask": 1}, "mask needs mark"),
    ],
)
def test_bad_filters(kw: dict[str, object], match: str) -> None:
    with pytest.raises(nfct.NfctValueError, match=match):
        nfct.Net().delete(**kw)  # type: ignore[arg-type]


def test_update_needs_a_change_and_delete_one_or_the_other() -> None:
    net = _net()
    with pytest.raises(nfct.NfctValueError, match="set_mark or timeout"):
        net.update(proto="udp")
    with pytest.raises(nfct.NfctValueError, match="not both"):
        net.delete(next(iter(net)), proto="udp")


def _capture(tmp_path: Path) -> Path:
    """DNS queries every second for 10 s, from two ports."""
    recs = []
    for i in range(10):
        recs.append((100.0 + i, P.udp(C, S, 4000 + i % 2, 53, b"q")))
        recs.append((100.0 + i + 0.01, P.udp(S, C, 53, 4000 + i % 2, b"a")))
    path = tmp_path / "dns.pcap"
    write_pcap(path, recs)
    return path


def test_actions_at_capture_times(tmp_path: Path) -> None:
    cap = _capture(tmp_path)
    seen: list[tuple[float, int]] = []
    net = nfct.Net()
    net.listen_events()

    def wipe(n: nfct.Net) -> None:
        seen.append((n.now, n.delete(dport=53)))

    res = net.replay([cap], at=[(104.5, wipe), (200.0, lambda n: seen.append((n.now, len(n))))])
    assert res["packets"] == 20
    # At 104.5 the two flows were there and went; they came back with the next queries.
    assert seen[0] == (104.5, 2)
    assert seen[1][0] == 200.0, "after the capture's end, the clock moved to the action's time"
    kinds = [e.split()[0] for e in net.read_events()]
    assert kinds.count("[NEW]") == 4 and kinds.count("[DESTROY]") >= 2

    def boom(n: nfct.Net) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        nfct.Net().replay([cap], at=[(103.0, boom)])
    with pytest.raises(nfct.NfctTypeError, match="not callable"):
        nfct.Net().replay([cap], at=[(103.0, 5)])  # type: ignore[list-item]
    with pytest.raises(nfct.NfctValueError, match="threads=1"):
        nfct.Net().replay([cap], at=[(103.0, wipe)], threads=2)


def test_cli_at(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = _capture(tmp_path)
    assert (
        main(["replay", str(cap), "--at", "8.5:delete:proto=udp,dport=53", "-o", "conntrack"]) == 0
    )
    out = capsys.readouterr().out
    # Only the last query and answer, after the deletion, made the entry that is left.
    assert out.count("\n") == 1 and "sport=4001" in out
    assert (
        main(["replay", str(cap), "--at", "@105:update:set_mark=3,sport=4000", "-o", "conntrack"])
        == 0
    )
    out = capsys.readouterr().out
    assert "sport=4000 dport=53" in out and "mark=3" in out
    for bad in [
        "5",
        "x:delete",
        "5:delete:port=1",
        "5:update:proto=udp",
        "5:ruleset:/nonexistent",
        "5:reboot",
    ]:
        assert main(["replay", str(cap), "--at", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nfct: --at") and "Traceback" not in err, err


def test_load_ruleset_mid_replay(tmp_path: Path) -> None:
    """A ruleset that drops new connections replaces an empty one at 104.5 (the flows deleted at
    the same moment): every packet after it starts a new connection and is dropped."""
    drop = {
        "nftables": [
            {"table": {"family": "inet", "name": "f", "handle": 1}},
            {"chain": {"family": "inet", "table": "f", "name": "fw", "handle": 1, "type": "filter",
                       "hook": "forward", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "f", "chain": "fw", "handle": 2, "expr": [
                {"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": ["new"]}},
                {"drop": None},
            ]}},
        ]
    }  # fmt: skip
    cap = _capture(tmp_path)
    net = nfct.Net()

    def swap(n: nfct.Net) -> None:
        n.delete(proto="udp")
        n.load_ruleset(drop)

    res = net.replay([cap], at=[(104.5, swap)])
    # The 5 queries after the swap are new connections, and so are their answers (the
    # queries left no entry): all 10 dropped.
    assert res["dropped"] == 10
    assert len(net) == 0
    (tmp_path / "rs.json").write_text(json.dumps(drop))
    assert (
        main(
            [
                "replay",
                str(_capture(tmp_path)),
                "--at",
                f"4.5:ruleset:{tmp_path / 'rs.json'}",
                "-o",
                "stats",
            ]
        )
        == 0
    )


def _big_capture(path: Path, n: int) -> None:
    """`n` copies of one UDP datagram, 1 µs apart: a capture large enough to interrupt."""
    import struct

    pkt = P.udp(C, S, 4000, 53, b"q")
    hdr = struct.pack("<IHHiiII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    recs = bytearray(hdr)
    for i in range(n):
        recs += struct.pack("<IIII", 100, i, len(pkt), len(pkt)) + pkt
    path.write_bytes(bytes(recs))


def test_progress_and_an_interrupted_replay_keeps_what_was_done(tmp_path: Path) -> None:
    cap = tmp_path / "big.pcap"
    _big_capture(cap, 40_000)
    seen: list[tuple[int, int]] = []

    def progress(frames: int, packets: int) -> None:
        seen.append((frames, packets))
        if frames > 10_000:
            raise KeyboardInterrupt

    net = nfct.Net()
    with pytest.raises(KeyboardInterrupt) as e:
        net.replay([cap], progress=progress)
    assert seen[0] == (8191, 8191) and seen[-1] == (16383, 16383)
    summary = e.value.summary  # type: ignore[attr-defined]
    assert summary["packets"] == 16383 and len(net) == 1
    ok: list[tuple[int, int]] = []
    nfct.Net().replay([cap], progress=lambda f, p: ok.append((f, p)))
    assert ok[-1] == (40_000, 40_000)


def test_an_interrupted_threaded_replay_keeps_what_was_done(tmp_path: Path) -> None:
    # One flow: every packet goes to one worker, whose queue fills while the other reads; the
    # stop must end both (the reading side's wait for the queue to drain included).
    cap = tmp_path / "big.pcap"
    _big_capture(cap, 400_000)
    calls: list[tuple[int, int]] = []

    def progress(frames: int, packets: int) -> None:
        calls.append((frames, packets))
        raise KeyboardInterrupt

    net = nfct.Net()
    with pytest.raises(KeyboardInterrupt) as e:
        net.replay([cap], progress=progress, threads=2)
    summary = e.value.summary  # type: ignore[attr-defined]
    assert len(calls) == 1
    assert 0 < summary["packets"] < 400_000 and summary["frames"] >= summary["packets"]
    assert len(net) == 1


def test_ctrl_c_stops_the_command_and_prints_what_was_done(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    cap = tmp_path / "big.pcap"
    _big_capture(cap, 3_000_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nfct", "replay", str(cap), "-o", "conntrack"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Signal once the command has spent 0.3 s of CPU (past the interpreter's start, into the
    # replay), however loaded the machine is.
    ticks = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / ticks >= 0.3:
            break
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    if proc.returncode == 0:
        pytest.skip("the replay finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.rstrip().endswith("nfct: interrupted")
    assert "packets" in err and out.count("sport=4000") == 1, (out, err)
    assert took < 5, f"stopped {took:.1f} s after Ctrl-C"
