"""Issue #17: every bad input a user can type gets one clear line naming the argument (the CLI:
exit status 2, no traceback; Python: a specific exception), and what nfct cannot read says so."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import nfct
import packets as P
from helpers import C, S, hooks
from nfct import Net, Skb
from nfct.cli import main
from nfct.pcap import PcapWriter, write_pcap

ROOT = Path(__file__).resolve().parent.parent
DNS = ROOT / "examples" / "dns.pcap"


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """`nfct ARGV...` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's errors
        rc = e.code if isinstance(e.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


def _one_error_line(err: str) -> str:
    """The message of a CLI error: no traceback, one line after argparse's usage lines."""
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln and not ln.startswith(("usage:", " "))]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--threads", "-3"], ["--threads", "-3"]),
        (["--threads", "70000"], ["--threads", "0..65535"]),
        (["--threads", "x"], ["--threads", "'x'"]),
        (["--zone", "-1"], ["--zone", "0..65535"]),
        (["--zone", "70000"], ["--zone", "70000"]),
        (["--seed", "-1"], ["--seed", "-1"]),
        (["--seed", str(2**64)], ["--seed", str(2**64)]),
        (["--seed", "1e3"], ["--seed"]),
        (["--mtu", "-1"], ["--mtu"]),
        (["--sysctl", "nf_conntrack_nope=1"], ["nf_conntrack_nope"]),
        (["--sysctl", "nf_conntrack_udp_timeout"], ["NAME=VALUE"]),
        (["--sysctl", "nf_conntrack_udp_timeout=abc"], ["nf_conntrack_udp_timeout", "abc"]),
        (["--sysctl", "nf_conntrack_buckets=268435456"], ["nf_conntrack_buckets", "268434944"]),
        (["--sysctl", "nf_conntrack_buckets=2147483647"], ["nf_conntrack_buckets"]),
        (["--sysctl", "nf_conntrack_udp_timeout=17179869"], ["nf_conntrack_udp_timeout"]),
        (["--sysctl", "nf_conntrack_count=1"], ["nf_conntrack_count"]),
        (["--sysctl", "nf_conntrack_acct=2"], ["nf_conntrack_acct", "0 or 1"]),
        (["--sysctl", "nf_conntrack_max=-1"], ["nf_conntrack_max"]),
    ],
)
def test_replay_bad_options_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], names: list[str]
) -> None:
    rc, out, err = _cli(capsys, "replay", DNS, *argv)
    assert rc == 2
    line = _one_error_line(err)
    for name in names:
        assert name in line, line
    assert out == ""


@pytest.mark.parametrize("command", ["explain", "report"])
def test_other_commands_share_the_checks(capsys: pytest.CaptureFixture[str], command: str) -> None:
    extra = ["1"] if command == "explain" else ["--json"]
    for argv in (["--zone", "70000"], ["--seed", "-1"], ["--sysctl", "nf_conntrack_acct=9"]):
        rc, _, err = _cli(capsys, command, DNS, *extra, *argv)
        assert rc == 2, (command, argv)
        assert argv[0] in _one_error_line(err) or argv[1].split("=")[0] in err


def test_explain_frame_and_verify_limit(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli(capsys, "explain", DNS, "-1")
    assert rc == 2
    assert "argument FRAME" in _one_error_line(err)
    rc, _, err = _cli(capsys, "verify-kernel", DNS, "--limit", "-1")
    assert rc == 2 and "--limit" in _one_error_line(err)


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--sysctl", "nf_conntrack_nope=1"], ["--sysctl", "nf_conntrack_nope"]),
        (["--sysctl", "nf_conntrack_acct=7"], ["nf_conntrack_acct", "0 or 1"]),
        (["--sysctl", "nf_conntrack_buckets=0"], ["nf_conntrack_buckets"]),
    ],
)
def test_verify_kernel_bad_sysctls_before_the_kernel(
    capsys: pytest.CaptureFixture[str], argv: list[str], names: list[str]
) -> None:
    """Checked before the kernel is asked (so also where it is unavailable)."""
    rc, out, err = _cli(capsys, "verify-kernel", DNS, *argv)
    assert rc == 2
    line = _one_error_line(err)
    assert line.startswith("nfct verify-kernel: ")
    for name in names:
        assert name in line
    assert out == ""


def test_threads_above_the_cpus_warn(capsys: pytest.CaptureFixture[str]) -> None:
    cpus = os.cpu_count() or 1
    rc, _, err = _cli(capsys, "replay", DNS, "--threads", cpus + 1, "-o", "stats")
    assert rc == 0
    assert f"--threads {cpus + 1} is more than the {cpus} CPUs" in err
    rc, _, err = _cli(capsys, "replay", DNS, "--threads", 1, "-o", "stats")
    assert rc == 0 and "CPUs" not in err


def _link_capture(path: Path, linktype: int, n: int) -> Path:
    """N UDP packets stored under LINKTYPE (the bytes are raw IP, whatever it says)."""
    with PcapWriter(path, linktype=linktype) as w:
        for i in range(n):
            w.write(1.0 + i, P.udp(C, S, 1000 + i, 53))
    return path


@pytest.mark.parametrize("threads", [1, 2])
def test_unsupported_link_type_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, threads: int
) -> None:
    """Frames of a link type nfct does not decode are counted under their own counter, not as
    "not IP", and the summary names the link type (both replay paths: one thread and
    workers)."""
    wifi = _link_capture(tmp_path / "wifi.pcap", 105, 3)
    rc, _, err = _cli(capsys, "replay", "--threads", threads, wifi)
    assert rc == 0
    assert err.splitlines() == [
        "nfct: 3 frames of unsupported link type 105 (IEEE802_11) skipped; "
        "nfct reads Ethernet, Linux SLL/SLL2, NULL/LOOP and raw IP",
        "nfct: 0 packets (3 frames, 0 not IP, 3 unsupported link type), 0 entries, 0 invalid, "
        "0 dropped",
    ]
    # Two unsupported link types and a supported one, whose frames that are not IP stay
    # "not IP": every link type named with its frames.
    user0 = _link_capture(tmp_path / "user0.pcap", 147, 2)
    rc, _, err = _cli(capsys, "replay", "--threads", threads, "-o", "stats", user0, DNS, wifi)
    assert rc == 0
    lines = err.splitlines()
    assert lines[0] == (
        "nfct: 5 frames of unsupported link types 105 (IEEE802_11): 3, 147 (USER0): 2 "
        "skipped; nfct reads Ethernet, Linux SLL/SLL2, NULL/LOOP and raw IP"
    )
    assert lines[-1].startswith("nfct: 14 packets (21 frames, 2 not IP, 5 unsupported link type), ")
    assert sum("link type" in line for line in lines) == 2
    # A supported link type with frames that are not IP says nothing of the kind.
    rc, _, err = _cli(capsys, "replay", "--threads", threads, DNS)
    assert rc == 0 and "2 not IP)" in err and "link type" not in err


@pytest.mark.parametrize("threads", [1, 2])
def test_unsupported_link_type_in_the_result(tmp_path: Path, threads: int) -> None:
    wifi = _link_capture(tmp_path / "wifi.pcap", 105, 3)
    odd = _link_capture(tmp_path / "odd.pcap", 4000, 1)
    res = Net().replay([odd, DNS, wifi], threads=threads)
    assert (res.unsupported_link, res["unsupported_link"]) == (4, 4)
    assert res.unsupported_links == res["unsupported_links"] == {105: 3, 4000: 1}
    assert res.non_ip == 2
    assert res.frames == res.packets + res.non_ip + res.unsupported_link
    plain = Net().replay([DNS])
    assert (plain.unsupported_link, plain.unsupported_links) == (0, {})


def test_unsupported_link_type_from_standard_input(tmp_path: Path) -> None:
    """A capture read from a pipe is named too (nothing looks at the file before the replay)."""
    wifi = _link_capture(tmp_path / "wifi.pcap", 105, 3)
    with wifi.open("rb") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "nfct", "replay", "-"],
            stdin=f,
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    assert "3 frames of unsupported link type 105 (IEEE802_11) skipped" in proc.stderr


@pytest.mark.parametrize(
    ("linktype", "kind"), [(147, "147 (USER0)"), (105, "105 (IEEE802_11)"), (4000, "4000")]
)
def test_explain_names_an_unsupported_link_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, linktype: int, kind: str
) -> None:
    """`nfct explain` on a frame of a link type nfct does not decode says so, and names the link
    type as `nfct replay`'s line on such frames does, not "no IP packet"."""
    cap = _link_capture(tmp_path / "odd.pcap", linktype, 2)
    decoded = "nfct reads Ethernet, Linux SLL/SLL2, NULL/LOOP and raw IP"
    rc, out, err = _cli(capsys, "explain", cap, 2)
    assert (rc, out) == (2, "")
    assert err.splitlines() == [
        f"nfct: {cap}: frame 2 is of link type {kind}, which nfct does not decode; {decoded}"
    ]
    rc, _, err = _cli(capsys, "replay", cap)
    assert rc == 0 and f"frames of unsupported link type {kind} skipped; {decoded}" in err
    with pytest.raises(nfct.NfctValueError, match=rf"frame 1 is of link type {re.escape(kind)},"):
        Net().explain(cap, 1)
    # A frame the capture does not have, and one of a link type nfct decodes that is not IP
    # (ARP in Ethernet), have no IP packet, whatever the link type.
    rc, _, err = _cli(capsys, "explain", cap, 3)
    assert rc == 2 and err.endswith("has no IP packet at frame 3\n") and "link type" not in err
    arp = tmp_path / "arp.pcap"
    write_pcap(arp, [(1.0, bytes(12) + b"\x08\x06" + bytes(28))], linktype=1)
    rc, _, err = _cli(capsys, "explain", arp, 1)
    assert rc == 2 and err.endswith("has no IP packet at frame 1\n") and "link type" not in err


def test_summary_says_why_packets_were_dropped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A capture taken on a host's loopback, replayed as if routed: martian sources, and the
    way out."""
    path = tmp_path / "lo.pcap"
    write_pcap(path, [(1.0 + i, P.udp("127.0.0.1", "127.0.0.1", 1000 + i, 53)) for i in range(4)])
    rc, _, err = _cli(capsys, "replay", path)
    assert rc == 0
    assert "4 dropped" in err
    (why,) = [ln for ln in err.splitlines() if ln.startswith("nfct: why")]
    assert "4 ip_route_input: martian source" in why
    assert "--path local-out" in why
    rc, _, err = _cli(capsys, "replay", path, "--path", "local-out")
    assert rc == 0 and "0 dropped" in err and "why" not in err


def _pipe_to_head(*argv: object) -> subprocess.CompletedProcess[bytes]:
    """`nfct ARGV... | head -1`: the reader goes away after one line."""
    cmd = [sys.executable, "-m", "nfct", *map(str, argv)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        rc = p.wait(timeout=120)
    return subprocess.CompletedProcess(cmd, rc, b"", err)


@pytest.mark.parametrize("output", ["packets", "events", "extended"])
def test_broken_pipe_exits_0(tmp_path: Path, output: str) -> None:
    path = tmp_path / "many.pcap"
    write_pcap(path, [(1.0 + i * 1e-3, P.udp(C, S, 1000 + i, 53)) for i in range(20000)])
    done = _pipe_to_head("replay", path, "-o", output)
    assert done.returncode == 0, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"Broken pipe" not in done.stderr and b"writing" not in done.stderr


# --- Python: the exception names the argument ----------------------------------------------------


def _raises(exc: type[BaseException], match: str, f: Callable[[], Any]) -> None:
    with pytest.raises(exc, match=match):
        f()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Net(seed=-1), "seed -1 is out of range"),
        (lambda: Net(seed=2**64), "seed"),
        (lambda: Net.from_host({}, seed=-1), "seed"),
        (lambda: Net(mtu=-1), "mtu"),
        (lambda: Net().listen_events(True, -1), "capacity"),
        (lambda: nfct.BuiltinHook.ct_zone(70000), "zone 70000 is out of range: 0 to 65535"),
        (lambda: nfct.BuiltinHook.ct_zone(-1), "zone"),
        (lambda: nfct.BuiltinHook.ct_mark_set(-1), "mark"),
        (lambda: nfct.BuiltinHook.ct_mark_set(1, 2**32), "mask"),
        (lambda: nfct.BuiltinHook.ct_mark(2**32, nfct.NF_ACCEPT), "mark"),
        (
            lambda: nfct.NfHookOps(nfct.BuiltinHook.notrack(), nfct.NFPROTO_INET, 0, 2**31),
            "priority",
        ),
        (lambda: Net().delete(zone=-1), "zone"),
        (lambda: Net().delete(mark=2**32), "mark"),
        (lambda: Net().delete(sport=65536), "sport"),
        (lambda: Net().select(reply_dport=-1), "reply_dport"),
        (lambda: Net().update(set_mark=-1), "set_mark"),
        (lambda: Net().update(set_mark=1, set_mask=2**32), "set_mask"),
        (lambda: Net().update(timeout=-1), "timeout"),
        (lambda: Net().get(nfct.Tuple(C, S, 17, 1, 2), zone=-1), "zone"),
    ],
)
def test_int_arguments_out_of_range_name_the_argument(call: Callable[[], Any], match: str) -> None:
    """A bare OverflowError named nothing; now a NfctValueError (a ValueError) does."""
    with pytest.raises(nfct.NfctValueError, match=match) as err:
        call()
    assert isinstance(err.value, ValueError)
    assert not isinstance(err.value, OverflowError)


def test_int_arguments_of_the_wrong_type_name_the_argument() -> None:
    with pytest.raises(nfct.NfctTypeError, match="seed must be an int, not str"):
        Net(seed="1")  # type: ignore[arg-type]
    with pytest.raises(nfct.NfctTypeError, match="zone must be an int"):
        nfct.BuiltinHook.ct_zone(1.5)  # type: ignore[arg-type]
    # In range, every form still works.
    assert Net(seed=0) is not None and Net(seed=2**64 - 1) is not None
    assert nfct.BuiltinHook.ct_zone(65535) is not None
    assert Net().delete(zone=None, mark=None) == 0


def test_addresses_and_paths_name_the_argument() -> None:
    with pytest.raises(nfct.NfctTypeError, match="local_addrs"):
        Net(local_addrs="1.2.3.4")  # type: ignore[arg-type]
    with pytest.raises(nfct.NfctTypeError, match="captures"):
        Net().replay("x.pcap")  # type: ignore[arg-type]


def test_skb_in_a_second_net_raises() -> None:
    pkt = P.udp(C, S, 1000, 53)
    hook_in, confirm = hooks(pkt)
    first, second = Net(), Net()
    skb = Skb(pkt, tstamp=1.0)
    assert hook_in(first, skb) == nfct.NF_ACCEPT
    assert confirm(first, skb) == nfct.NF_ACCEPT
    assert len(first) == 1
    for f in (hook_in, confirm):
        with pytest.raises(nfct.NfctValueError, match="another Net"):
            f(second, skb)
    with pytest.raises(nfct.NfctValueError, match="another Net"):
        nfct.ip_rcv(second, skb)
    assert len(second) == 0 and second.count == 0
    # A fresh Skb of the same bytes goes through the second Net.
    fresh = Skb(pkt, tstamp=1.0)
    assert hook_in(second, fresh) == nfct.NF_ACCEPT and confirm(second, fresh) == nfct.NF_ACCEPT
    assert len(second) == 1


def test_conn_line_rejects_an_unknown_format() -> None:
    net = Net()
    nfct.ip_rcv(net, Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    (conn,) = list(net)
    for bad in ("bogus", ""):
        with pytest.raises(nfct.NfctValueError, match="unknown format") as a:
            conn.line(bad)
        with pytest.raises(nfct.NfctValueError, match="unknown format") as b:
            net.dump(bad)
        assert str(a.value) == str(b.value)


def test_python_fuzz_harness_over_its_seeds() -> None:
    """tools/fuzz_python.py's one_input (Atheris's target) without Atheris: each entry point
    fed a seed and some corruptions of it raises nothing but nfct's own errors."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import fuzz_python as F
    finally:
        sys.path.pop(0)
    udp = P.udp(C, S, 1000, 53)
    seeds = [
        bytes([0, 3, 5]) + b"\x05" * 40 + (2**70).to_bytes(9, "little"),
        bytes([1, 40]) + udp + b"\x01\x00" + bytes([len(udp) - 3]) + udp,
        bytes([2]) + DNS.read_bytes(),
        bytes([3]) + bytes(16) + udp,
        bytes([4]) + (ROOT / "examples" / "host-firewalld.json").read_bytes(),
        bytes([5]) + udp,
    ]
    for seed in seeds:
        for cut in (len(seed), len(seed) // 2, 3):
            F.one_input(seed[:cut])
            F.one_input(bytes(x ^ 0x5A for x in seed[:cut]))
