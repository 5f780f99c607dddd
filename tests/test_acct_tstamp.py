"""Accounting and timestamps (spec §15, §11.2, §11.3, §13.3): `packets= bytes=` and
`delta-time=` in the listings and in DESTROY events, from Python and from `nfct replay
--sysctl ...`. The live kernel's own lines are compared in tests/live/test_tstamp.py."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dpkt
import pytest

import packets as P
from helpers import EXAMPLES_DIR, C, S, forward
from nfct import Net
from nfct.verify import write_pcap

EXAMPLES = EXAMPLES_DIR


def delta(line: str) -> int:
    m = re.search(r" delta-time=(\d+) ", line + " ")
    assert m, line
    return int(m.group(1))


def test_listings_compute_delta_time_as_the_tool_and_proc_do() -> None:
    """Seen on 6.18: an entry confirmed at x.607 s and listed 2.7 s later shows delta-time=3 in
    `conntrack -L` (whole seconds of each instant) and 2 in /proc (whole seconds elapsed)."""
    net = Net({"nf_conntrack_timestamp": 1})
    forward(net, P.udp(C, S, 5000, 53, b"q"), 1000.607)
    net.advance(1003.307)
    (ext,) = net.dump("extended").splitlines()
    (conntrack,) = net.dump("conntrack").splitlines()
    (proc,) = net.dump("proc").splitlines()
    assert ext.endswith(" mark=0 delta-time=3 use=1"), ext
    assert delta(conntrack) == 3
    assert proc.endswith(" mark=0 zone=0 delta-time=2 use=2"), proc
    # Within the same second of the clock: 0 in both.
    net = Net({"nf_conntrack_timestamp": 1})
    forward(net, P.udp(C, S, 5000, 53, b"q"), 1000.1)
    net.advance(1000.9)
    assert delta(net.dump("extended")) == delta(net.dump("proc")) == 0


def test_destroy_of_an_entry_reaped_late_is_backdated_to_its_expiry() -> None:
    """The stop timestamp of an entry reaped after it expired is when it expired (spec §15):
    a UDP flow last refreshed at 1000.7 expires at 1030.7; reaped at 1100.9 it reports
    delta-time=30, not 100, with its counters."""
    net = Net({"nf_conntrack_timestamp": 1, "nf_conntrack_acct": 1})
    net.listen_events()
    forward(net, P.udp(C, S, 5000, 53, b"q"), 1000.6)
    forward(net, P.udp(S, C, 53, 5000, b"ans"), 1000.7)
    net.advance(1100.9)
    assert net.gc() == 1
    new, update, destroy = net.read_events(timestamps=True)
    # NEW and UPDATE carry neither counters nor timestamps; DESTROY both.
    assert "delta-time" not in new and "delta-time" not in update
    assert destroy == (
        "[1100.900000]\t[DESTROY] ipv4     2 udp      17 src=10.1.0.2 dst=10.2.0.2 sport=5000 "
        "dport=53 packets=1 bytes=29 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 "
        "packets=1 bytes=31 delta-time=30"
    )


def test_destroy_of_a_killed_entry_stops_at_the_kill() -> None:
    """A RST/ACK answering a SYN kills the entry at once: stop = now. Start 1000.6, kill at
    1003.3: the tool prints 1003 - 1000 = 3 (as the kernel run in the differential test)."""
    net = Net({"nf_conntrack_timestamp": 1})
    net.listen_events()
    syn = P.tcp(C, S, 4001, 80, seq=1000, flags="S")
    forward(net, syn, 1000.6)
    forward(net, P.tcp(S, C, 80, 4001, seq=0, ack=1001, flags="RA", window=0), 1003.3)
    new, destroy = net.read_events()
    assert new.startswith("    [NEW] ipv4     2 tcp      6 120 SYN_SENT ")
    assert destroy == (
        "[DESTROY] ipv4     2 tcp      6 117 CLOSE src=10.1.0.2 dst=10.2.0.2 sport=4001 "
        "dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 delta-time=3"
    )


def test_without_the_sysctls_nothing_is_printed() -> None:
    net = Net()
    net.listen_events()
    forward(net, P.udp(C, S, 5000, 53, b"q"), 1000.6)
    net.advance(1100.0)
    net.gc()
    for fmt in ("extended", "proc"):
        assert "delta-time" not in net.dump(fmt) and "packets=" not in net.dump(fmt)
    assert all("delta-time" not in e and "packets=" not in e for e in net.read_events())


def test_the_sysctl_applies_to_entries_created_afterwards() -> None:
    """Like the kernel's extensions, decided when the entry is created."""
    net = Net()
    forward(net, P.udp(C, S, 5000, 53, b"q"), 1000.0)
    net.sysctl["nf_conntrack_timestamp"] = 1
    net.sysctl["nf_conntrack_acct"] = 1
    forward(net, P.udp(C, S, 5001, 53, b"q"), 1001.0)
    net.advance(1002.0)
    lines = {int(x.split("sport=")[1].split()[0]): x for x in net.dump().splitlines()}
    assert "delta-time" not in lines[5000] and "packets=" not in lines[5000]
    assert delta(lines[5001]) == 1 and " packets=1 bytes=29 " in lines[5001]


def replay(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "nfct", "replay", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.splitlines()


def test_replay_with_timestamps_runs_on_the_capture_clock(tmp_path: Path) -> None:
    """`nfct replay --sysctl nf_conntrack_timestamp=1`: the start is the capture time of the
    confirming packet, listings are taken at the last packet's time, and a DESTROY reaped by the
    garbage collector is backdated to the expiry. With --clock frozen no time passes."""
    cap = tmp_path / "t.pcap"
    write_pcap(
        cap,
        [
            (P.udp(C, S, 5000, 53, b"q"), 1000.6),
            (P.udp(S, C, 53, 5000, b"ans"), 1000.7),
            (P.icmp_echo(C, S, 7), 1001.9),
            (P.udp(C, S, 5001, 53, b"q2"), 1100.2),
            (P.icmp_echo(C, S, 8), 1104.1),
        ],
    )
    ts = ["--sysctl", "nf_conntrack_timestamp=1"]
    events = replay(str(cap), *ts, "--clock", "capture", "--output", "events")
    destroys = sorted(e for e in events if e.startswith("[DESTROY]"))
    # Expired at 1030.7 and 1031.9, reaped later: both print 30.
    assert [delta(e) for e in destroys] == [30, 30], events
    assert [e.split()[3] for e in destroys] == ["icmp", "udp"]
    listing = replay(str(cap), *ts, "--clock", "capture", "--output", "extended")
    # Listed at 1104.1: the UDP flow of 1100.2 shows 1104 - 1100, the echo of 1104.1 shows 0.
    assert sorted(delta(x) for x in listing) == [0, 4], listing
    proc = replay(str(cap), *ts, "--clock", "capture", "--output", "proc")
    # /proc: 3.9 s and 0 s elapsed.
    assert sorted(delta(x) for x in proc) == [0, 3], proc
    frozen = replay(str(cap), *ts, "--clock", "frozen", "--output", "extended")
    assert len(frozen) == 4 and {delta(x) for x in frozen} == {0}
    assert not any("delta-time" in x for x in replay(str(cap), "--output", "extended"))


# --- accounting against an independent count of the shipped captures ---------------------------

LINE = re.compile(
    r"src=(?P<src>\S+) dst=(?P<dst>\S+) (?:sport=(?P<sport>\d+) dport=(?P<dport>\d+) "
    r"|type=(?P<type>\d+) code=(?P<code>\d+) id=(?P<id>\d+) )?packets=(?P<p>\d+) bytes=(?P<b>\d+)"
)

FlowKey = tuple[int, object, object, tuple[int, ...]]


def listed_counters(lines: list[str]) -> dict[FlowKey, tuple[int, int]]:
    """(protocol, src, dst, ports or type/code/id) -> (packets, bytes), both directions of every
    entry, from the `-o extended` lines."""
    out: dict[FlowKey, tuple[int, int]] = {}
    for line in lines:
        proto = int(line.split()[3])
        halves = LINE.findall(line)
        matches = list(LINE.finditer(line))
        assert len(halves) == 2, line
        for m in matches:
            if m["sport"] is not None:
                l4: tuple[int, ...] = (int(m["sport"]), int(m["dport"]))
            elif m["type"] is not None:
                l4 = (int(m["type"]), int(m["code"]), int(m["id"]))
            else:
                l4 = ()
            key = (proto, ipaddress.ip_address(m["src"]), ipaddress.ip_address(m["dst"]), l4)
            out[key] = (int(m["p"]), int(m["b"]))
    return out


def pcap_counts(path: Path) -> Counter[tuple[FlowKey, str]]:
    """Packets and IP-layer bytes per 5-tuple, read with dpkt (not with nfct): TCP/UDP ports,
    ICMP/ICMPv6 echo type, code and id; bytes are the IP header's own length fields."""
    counts: Counter[tuple[FlowKey, str]] = Counter()
    with open(path, "rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                proto, length = ip.p, ip.len
            elif isinstance(ip, dpkt.ip6.IP6):
                proto, length = ip.nxt, 40 + ip.plen
            else:
                continue
            l4 = ip.data
            if proto in (6, 17):
                ident: tuple[int, ...] = (l4.sport, l4.dport)
            elif proto in (1, 58) and l4.type in (0, 8, 128, 129):
                echo = dpkt.icmp.ICMP.Echo(bytes(l4.data))
                ident = (l4.type, l4.code, echo.id)
            else:
                continue
            key = (
                proto,
                ipaddress.ip_address(ip.src),
                ipaddress.ip_address(ip.dst),
                ident,
            )
            counts[key, "packets"] += 1
            counts[key, "bytes"] += length
    return counts


@pytest.mark.parametrize("name", ["dns", "http", "ping", "mixed"])
def test_counters_of_shipped_captures_match_a_count_of_their_packets(name: str) -> None:
    """`nfct replay --sysctl nf_conntrack_acct=1`: every direction of every entry counts the
    packets of exactly its tuple and their L3 length (spec §11.2). These captures have no
    INVALID packet (checked below), so every packet of a flow's tuple is counted."""
    cap = EXAMPLES / f"{name}.pcap"
    lines = replay(str(cap), "--sysctl", "nf_conntrack_acct=1", "--clock", "frozen")
    assert not any(
        x.split()[1] == "invalid"
        for x in replay(str(cap), "--clock", "frozen", "--output", "packets")
    )
    listed = listed_counters(lines)
    counted = pcap_counts(cap)
    assert len(listed) == 2 * len(lines)
    for key, (packets, nbytes) in listed.items():
        assert (packets, nbytes) == (counted[key, "packets"], counted[key, "bytes"]), key
    # And nothing the tuples did not cover was counted: every echo/TCP/UDP packet of the
    # capture belongs to a listed direction.
    flows = {k for k, _ in counted}
    assert flows <= set(listed), flows - set(listed)
    assert sum(p for p, _ in listed.values()) > 0
