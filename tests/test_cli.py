"""The `nfct replay` command: its outputs, clocks and sysctls, its errors (missing, truncated
and damaged captures), and the shipped example captures against the kernel's tables recorded
with them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import packets as P
from helpers import proc_fixup, run_cli
from nfct.conntrack_text import parse_conntrack_line

# --- nfct replay ----------------------------------------------------------------------------------


EXAMPLES = ("http", "dns", "ping", "mixed")


def test_cli_replay_default_output(capture: Path, ether_capture: Path) -> None:
    proc = run_cli("replay", capture)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [
        "ipv4     2 icmp     1 25 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
        "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 use=1",
        "ipv4     2 udp      17 25 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1",
    ]
    assert proc.stderr.splitlines() == [
        "nfct: 5 packets (5 frames, 0 not IP), 2 entries, 1 invalid, 0 dropped"
    ]
    ether = run_cli("replay", "--output", "extended", ether_capture)
    assert ether.returncode == 0, ether.stderr
    assert sorted(ether.stdout.splitlines()) == sorted(proc.stdout.splitlines())


def test_cli_replay_output_modes(capture: Path) -> None:
    conntrack = run_cli("replay", "-o", "conntrack", capture)
    assert conntrack.returncode == 0
    assert sorted(conntrack.stdout.splitlines())[1].startswith("udp      17 25 src=10.1.0.2")
    proc = run_cli("replay", "--output", "proc", capture)
    assert proc.returncode == 0
    assert sorted(proc_fixup(x) for x in proc.stdout.splitlines()) == [
        "ipv4     2 icmp     1 25 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
        "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 zone=0",
        "ipv4     2 udp      17 25 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 zone=0",
    ]
    stats = run_cli("replay", "--output", "stats", capture)
    assert stats.returncode == 0
    assert stats.stdout == (
        "cpu=0   \tfound=0 invalid=1 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 "
        "search_restart=0 clash_resolve=0 chaintoolong=0 \n"
    )
    pkts = run_cli("replay", "--output", "packets", capture)
    assert pkts.returncode == 0
    assert pkts.stdout.splitlines() == [
        "1 new",
        "2 established",
        "3 new",
        "4 established",
        "5 invalid nf_ct_udp: bad checksum",
    ]
    js = run_cli("replay", "--output", "json", capture)
    assert js.returncode == 0
    doc = json.loads(js.stdout)
    assert doc["count"] == 2
    assert doc["clock"] == "capture"
    assert doc["captures"] == [str(capture)]
    assert doc["stats"]["invalid"] == 1
    assert doc["summary"]["packets"] == 5
    assert sorted(doc["lines"]) == sorted(run_cli("replay", capture).stdout.splitlines())
    assert {e["proto"] for e in doc["entries"]} == {"udp", "icmp"}


def test_cli_replay_clock_and_sysctl(capture: Path) -> None:
    frozen = run_cli("replay", "--clock", "frozen", "-o", "conntrack", capture)
    assert frozen.returncode == 0
    assert [line.split()[2] for line in frozen.stdout.splitlines()] == ["29", "29"]
    nocsum = run_cli("replay", "--sysctl", "nf_conntrack_checksum=0", "-o", "conntrack", capture)
    assert nocsum.returncode == 0
    got = nocsum.stdout.splitlines()
    assert len(got) == 3
    assert any("sport=2002 dport=53 [UNREPLIED]" in line for line in got)
    short = run_cli(
        "replay",
        "--sysctl",
        "nf_conntrack_udp_timeout=3",
        "--sysctl",
        "nf_conntrack_icmp_timeout=3",
        capture,
    )
    assert short.returncode == 0
    assert short.stdout == ""  # both expired by the time of the last packet
    unknown = run_cli("replay", "--sysctl", "nf_conntrack_nope=1", capture)
    assert unknown.returncode == 2
    assert "nf_conntrack_nope" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    malformed = run_cli("replay", "--sysctl", "nf_conntrack_udp_timeout", capture)
    assert malformed.returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--mtu", "-5"], "argument --mtu: -5 is not in 0..65535"),
        (["replay", "--zone", "-1"], "argument --zone: -1 is not in 0..65535"),
        (["replay", "--seed", "-1"], "argument --seed: -1 is not in 0..18446744073709551615"),
        (["replay", "--threads", "-1"], "argument --threads: -1 is not in 0..65535"),
        (["explain", "--seed", "x"], "argument --seed: 'x' is not an integer"),
    ],
)
def test_cli_numbers_out_of_range(capture: Path, args: list[str], message: str) -> None:
    """An integer option the extension module cannot take: argparse's error, not an
    OverflowError's traceback."""
    proc = run_cli(*args, capture, *(["1"] if args[0] == "explain" else []))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].endswith(message)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "byte offset" in line]


def test_cli_replay_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.pcap"
    proc = run_cli("replay", missing)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (err,) = _error_lines(proc.stderr)
    assert str(missing) in err
    assert proc.stdout == ""


@pytest.mark.parametrize("output", ["extended", "packets"])
def test_cli_replay_truncated_capture(capture: Path, tmp_path: Path, output: str) -> None:
    data = capture.read_bytes()
    cut = tmp_path / "truncated.pcap"
    cut.write_bytes(data[: len(data) - 30])  # inside the 5th record
    proc = run_cli("replay", "--output", output, cut)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (err,) = _error_lines(proc.stderr)
    assert str(cut) in err
    if output == "packets":
        assert proc.stdout.splitlines() == ["1 new", "2 established", "3 new", "4 established"]
    else:
        # What was read before the damage is applied and printed.
        assert len(proc.stdout.splitlines()) == 2


def test_cli_replay_truncated_file_header(tmp_path: Path) -> None:
    cut = tmp_path / "header.pcap"
    cut.write_bytes(P.pcap([])[:10])
    proc = run_cli("replay", cut)
    assert proc.returncode == 2
    (err,) = _error_lines(proc.stderr)
    assert str(cut) in err


def test_cli_replay_packets_appends_to_redirected_stdout(capture: Path, tmp_path: Path) -> None:
    """`nfct replay -o packets x.pcap >> log` must not wipe what log already held."""
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n")
    with log.open("a") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "nfct", "replay", "-o", "packets", str(capture)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0
    assert log.read_text().splitlines()[0] == "earlier line"
    assert log.read_text().splitlines()[1:] == [
        "1 new",
        "2 established",
        "3 new",
        "4 established",
        "5 invalid nf_ct_udp: bad checksum",
    ]


def _without_timeout(
    line: str,
) -> tuple[str, str | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
    entry = parse_conntrack_line(line)
    tuples = tuple(sorted((f"{d}.{k}", v) for d in ("orig", "reply") for k, v in entry[d].items()))
    return entry["l3"] + " " + entry["proto"], entry["state"], tuples, tuple(entry["flags"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_cli_replay_examples(examples_dir: Path, name: str, tmp_path: Path) -> None:
    path = examples_dir / f"{name}.pcap"
    assert path.is_file(), f"{path} is missing"
    outputs: dict[str, str] = {}
    for output in ("extended", "conntrack", "proc", "stats", "json", "packets"):
        proc = run_cli("replay", "--output", output, path)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        outputs[output] = proc.stdout
    extended = outputs["extended"].splitlines()
    assert all(line.startswith(("ipv4 ", "ipv6 ")) for line in extended)
    assert len(outputs["conntrack"].splitlines()) == len(extended)
    assert len(outputs["proc"].splitlines()) == len(extended)
    assert outputs["stats"].startswith("cpu=0   \tfound=0 invalid=")
    doc = json.loads(outputs["json"])
    assert doc["count"] == len(extended)
    packet_lines = outputs["packets"].splitlines()
    assert len(packet_lines) == doc["summary"]["packets"]
    pattern = r"\d+ (new|established|related|invalid|untracked|dropped)( .*)?"
    assert all(re.fullmatch(pattern, x) for x in packet_lines)

    # The kernel's table right after the recording (listed about a second later): every entry
    # is there, TCP included (TIME_WAIT [ASSURED] in http and mixed), with the same tuples,
    # state and flags, and a timeout at most a few seconds longer.
    truth = [x for x in (examples_dir / f"{name}.conntrack").read_text().splitlines() if x]
    assert sorted(map(_without_timeout, extended)) == sorted(map(_without_timeout, truth))
    ours = {_without_timeout(x): parse_conntrack_line(x)["timeout"] for x in extended}
    for line in truth:
        theirs = parse_conntrack_line(line)["timeout"]
        assert 0 <= ours[_without_timeout(line)] - theirs <= 3, line
    tcp = [parse_conntrack_line(x) for x in truth if parse_conntrack_line(x)["proto"] == "tcp"]
    assert len(tcp) == (3 if name in ("http", "mixed") else 0), tcp
    assert all(e["state"] == "TIME_WAIT" and "ASSURED" in e["flags"] for e in tcp), tcp

    frozen = run_cli("replay", "--clock", "frozen", "-o", "conntrack", path)
    assert frozen.returncode == 0
    assert len(frozen.stdout.splitlines()) == len(extended)
    nocsum = run_cli("replay", "--sysctl", "nf_conntrack_checksum=0", path)
    assert nocsum.returncode == 0
    assert sorted(nocsum.stdout.splitlines()) == sorted(extended)  # real checksums are right

    # A truncated copy of the capture: exit 2, one error line naming it and the offset.
    data = path.read_bytes()
    cut = tmp_path / f"{name}-truncated.pcap"
    cut.write_bytes(data[: len(data) - 3])
    bad = run_cli("replay", "--output", "packets", cut)
    assert bad.returncode == 2
    (err,) = _error_lines(bad.stderr)
    assert str(cut) in err
    bad_lines = bad.stdout.splitlines()
    # Every packet before the damaged last record was printed (a non-IP last frame has none).
    assert bad_lines == packet_lines[: len(bad_lines)]
    assert len(bad_lines) >= len(packet_lines) - 1


def test_cli_replay_several_captures(examples_dir: Path) -> None:
    """dns then ping into one table: the union of both tables, packet lines name the file."""
    dns, ping = examples_dir / "dns.pcap", examples_dir / "ping.pcap"
    both = run_cli("replay", "--clock", "frozen", "-o", "conntrack", dns, ping)
    assert both.returncode == 0, both.stderr
    one = run_cli("replay", "--clock", "frozen", "-o", "conntrack", dns)
    two = run_cli("replay", "--clock", "frozen", "-o", "conntrack", ping)
    assert len(both.stdout.splitlines()) == len(one.stdout.splitlines()) + len(
        two.stdout.splitlines()
    )
    pkts = run_cli("replay", "-o", "packets", dns, ping)
    assert pkts.returncode == 0
    names = {line.split(":")[0] for line in pkts.stdout.splitlines()}
    assert names == {str(dns), str(ping)}


_ENDING = """
import atexit, sys, threading, time
import _nfct_launcher
mark, wait, cap, mp, torn = sys.argv[1:6]
if mp == "mp":
    import multiprocessing


class Torn:
    # Writes its file when the interpreter tears this module down (the usual ending).
    # (What it needs is bound now: the module's names are gone by then.)
    def __del__(self, open=open, torn=torn) -> None:
        open(torn, "w").write("torn down")


kept = Torn()
atexit.register(lambda: (open(mark, "w").write("atexit ran"), sys.stdout.write("from atexit\\n")))
if wait != "-":
    def late() -> None:
        time.sleep(0.3)
        open(wait, "w").write("thread done")
    threading.Thread(target=late).start()
sys.stdout.write("written before the command, never flushed by it\\n")
sys.argv = ["nfct", "replay", "--output", "stats", cap]
sys.exit(_nfct_launcher.main())
"""


@pytest.mark.parametrize("mp", [False, True])
@pytest.mark.parametrize("thread", [False, True])
@pytest.mark.parametrize("good", [True, False])
def test_the_command_ends_without_teardown_but_loses_nothing(
    capture: Path, tmp_path: Path, thread: bool, good: bool, mp: bool
) -> None:
    # The launcher ends the process without the interpreter's teardown (os._exit): the
    # atexit functions still run, what is buffered on stdout is still written, the command's
    # exit status is kept. A Python thread still running is waited for, and a command that
    # used multiprocessing ends as usual (the teardown runs then, and only then).
    mark, wait, torn = tmp_path / "mark", tmp_path / "wait", tmp_path / "torn"
    cap = capture if good else tmp_path / "missing.pcap"
    args = [str(mark), str(wait) if thread else "-", str(cap), "mp" if mp else "-", str(torn)]
    proc = subprocess.run(
        [sys.executable, "-c", _ENDING, *args],
        # Buffered, as users' pipes are (unbuffered, nothing would be left to lose).
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == (0 if good else 2), proc.stderr
    assert proc.stdout.startswith("written before the command, never flushed by it\n")
    if good:
        assert "cpu=0" in proc.stdout
        assert proc.stderr.splitlines()[-1].startswith("nfct: ")
    else:
        assert "missing.pcap" in proc.stderr
    assert mark.read_text() == "atexit ran"
    assert proc.stdout.endswith("from atexit\n")
    assert wait.exists() == thread
    assert torn.exists() == (thread or mp)
