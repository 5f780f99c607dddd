"""`replay(threads=N)`: packets spread over N workers by a symmetric flow hash, one shared
table. It must give what one thread gives (same table, same statistics, same per-packet
classes in capture order) on the shipped and shared captures, where nothing races the way the
kernel's CPUs would (no full table, no clashes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import nfct
import packets as P
from helpers import traffic
from nfct import Net
from nfct.verify import write_pcap


def run(paths: list[Path], threads: int, clock: str, tmp: Path) -> tuple[object, ...]:
    lines = tmp / f"p{threads}.txt"
    net = Net(seed=11)
    captures: list[str | os.PathLike[str]] = [*paths]
    summary = net.replay(captures, clock=clock, packets_path=lines, threads=threads)
    return (
        sorted(net.dump().splitlines()),
        net.stats,
        summary,
        lines.read_text().splitlines(),
    )


def captures(examples_dir: Path) -> list[Path]:
    return sorted(examples_dir.glob("*.pcap"))


@pytest.mark.parametrize("clock", ["frozen", "capture"])
def test_two_threads_equal_one_on_the_shipped_captures(
    examples_dir: Path, tmp_path: Path, clock: str
) -> None:
    paths = captures(examples_dir)
    assert paths
    one = run(paths, 1, clock, tmp_path)
    assert run(paths, 2, clock, tmp_path) == one
    assert run(paths, 3, clock, tmp_path) == one


def test_two_threads_equal_one_on_every_shared_capture(shared_pcaps: Path, tmp_path: Path) -> None:
    paths = sorted(shared_pcaps.glob("*.pcap*"))
    assert len(paths) >= 20
    for path in paths:
        for clock in ("frozen", "capture"):
            one = run([path], 1, clock, tmp_path)
            assert run([path], 2, clock, tmp_path) == one, (path.name, clock)


def test_threads_with_builtin_rules_and_refusals(tmp_path: Path) -> None:
    cap = tmp_path / "t.pcap"
    pkts = [(P.udp("10.0.0.1", "10.0.0.2", 1000 + i, 53, b"q"), 1.0 + i / 1000) for i in range(600)]
    pkts += [(P.udp("10.0.0.1", "10.0.0.2", 7, 53, b"q", checksum=0xBAD), 2.0)]
    write_pcap(cap, pkts)
    results = []
    for threads in (1, 2):
        net = Net(seed=1)
        ops = nfct.NfHookOps(nfct.BuiltinHook.drop_invalid(), nfct.NFPROTO_INET, 2, 0)
        nfct.nf_register_net_hook(net, ops)
        results.append((net.replay([cap], threads=threads), sorted(net.dump().splitlines())))
    assert results[0] == results[1]
    assert results[0][0]["dropped_by"] == {"ct state invalid drop": 1}
    net = Net()
    with pytest.raises(nfct.NfctValueError, match="threads"):
        net.replay([cap], threads=2, events_path=str(tmp_path / "e"))
    nfct.nf_register_net_hook(net, nfct.NfHookOps(lambda s, st: 1, nfct.NFPROTO_INET, 2, 0))
    with pytest.raises(nfct.NfctValueError, match="threads"):
        net.replay([cap], threads=2)
    with pytest.raises(nfct.NfctValueError):
        Net().replay([cap], threads=0)


def test_cli_threads(examples_dir: Path) -> None:
    def out(threads: str) -> list[str]:
        cmd = [sys.executable, "-m", "nfct", "replay", str(examples_dir / "mixed.pcap")]
        res = subprocess.run([*cmd, "--threads", threads, "--seed", "2"], capture_output=True)
        assert res.returncode == 0, res.stderr
        return sorted(res.stdout.decode().splitlines())

    assert out("2") == out("1")


def test_a_bad_capture_keeps_what_was_done(tmp_path: Path) -> None:
    cap = tmp_path / "cut.pcap"
    write_pcap(cap, [(P.udp("10.0.0.1", "10.0.0.2", 1000 + i, 53), 1.0) for i in range(300)])
    data = cap.read_bytes()
    cap.write_bytes(data[: len(data) - 10])
    net = Net()
    with pytest.raises(nfct.CaptureError) as ei:
        net.replay([cap], threads=2)
    assert ei.value.summary["packets"] == 299
    assert len(net) == 299


def test_one_flow_longer_than_a_worker_may_queue(tmp_path: Path) -> None:
    # Every packet of the big flow goes to one worker: reading outpaces it, its queue reaches
    # the bound (1,024 batches waiting) and the reading side waits for it to drain (7 waits
    # when this was written); a few other flows go on meanwhile. Nothing hangs, and the result
    # is one thread's.
    big = P.udp("10.0.0.1", "10.0.0.2", 4000, 53, b"x" * 10)
    back = P.udp("10.0.0.2", "10.0.0.1", 53, 4000, b"y" * 10)
    pkts = []
    for i in range(100_000):
        pkts.append((big if i % 2 else back, 1.0 + i * 1e-4))
        if i % 5000 == 0:
            pkts.append((P.udp("10.0.1.1", "10.0.1.2", 5000 + i // 5000, 53), 1.0 + i * 1e-4))
    cap = tmp_path / "one-flow.pcap"
    write_pcap(cap, pkts)
    for clock in ("capture", "frozen"):
        one = run([cap], 1, clock, tmp_path)
        assert run([cap], 2, clock, tmp_path) == one, clock
        assert one[2]["established"] == 99_999


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pkts=traffic())
def test_two_threads_equal_one_on_generated_traffic(
    pkts: list[tuple[bytes, float]], tmp_path: Path
) -> None:
    # More packets than one batch per worker, so both workers run concurrently.
    pkts = pkts * 30
    pkts = [(p, t + i * 0.01) for i, (p, t) in enumerate(pkts)]
    cap = tmp_path / "h.pcap"
    write_pcap(cap, pkts)
    for clock in ("capture", "frozen"):
        assert run([cap], 2, clock, tmp_path) == run([cap], 1, clock, tmp_path), clock
