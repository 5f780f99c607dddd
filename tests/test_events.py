"""Conntrack events (spec §13): the `conntrack -E -o extended` lines a listener sees, when they
are sent, and the `nf_conntrack_events` semantics. The live kernel's event logs are compared
with nfct's in tests/live/ (nfct verify-kernel compares event sequences)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import packets as P
from helpers import EXAMPLES_DIR, C, S, feed, timed
from nfct import Net
from tcp_conv import Conv

EXAMPLES = EXAMPLES_DIR


def send(net: Net, pkts: list[bytes], t0: float = 100.0) -> None:
    """The packets 1 ms apart from `t0` through a forwarding router."""
    feed(net, timed(*pkts, t0=t0))


def test_full_tcp_life_udp_and_icmp_as_the_kernel_reports_them() -> None:
    """The sequence observed on 6.18 (spec §13.5), less the USERSPACE decoration of a
    `conntrack -D` deletion."""
    net = Net()
    net.listen_events()
    conv = Conv(4001, sport=80, client=C, server=S)
    send(
        net,
        [
            *conv.handshake(),
            conv.c("PA", payload=b"GET /"),
            conv.s("A"),
            conv.c("FA"),
            conv.s("FA"),
            conv.c("A"),
        ],
    )
    conv.reopen("c")
    send(net, [conv.c("S")], t0=100.009)
    syn_ack = conv.nxt["c"]
    send(net, [P.tcp(S, C, 80, 4001, seq=0, ack=syn_ack, flags="RA", window=0)], t0=100.010)
    send(
        net,
        [P.udp(C, S, 4002, 53, b"q"), P.udp(S, C, 53, 4002, b"a")],
        t0=100.011,
    )
    send(net, [P.icmp_echo(C, S, 77), P.icmp_echo(S, C, 77, reply=True)], t0=100.013)
    tcp = "src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80"
    tcp_r = "src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001"
    udp = "src=10.1.0.2 dst=10.2.0.2 sport=4002 dport=53"
    udp_r = "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4002"
    icmp = "src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77"
    icmp_r = "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77"
    assert net.read_events() == [
        f"    [NEW] ipv4     2 tcp      6 120 SYN_SENT {tcp} [UNREPLIED] {tcp_r}",
        f" [UPDATE] ipv4     2 tcp      6 60 SYN_RECV {tcp} {tcp_r}",
        f" [UPDATE] ipv4     2 tcp      6 432000 ESTABLISHED {tcp} {tcp_r} [ASSURED]",
        f" [UPDATE] ipv4     2 tcp      6 120 FIN_WAIT {tcp} {tcp_r} [ASSURED]",
        f" [UPDATE] ipv4     2 tcp      6 30 LAST_ACK {tcp} {tcp_r} [ASSURED]",
        f" [UPDATE] ipv4     2 tcp      6 120 TIME_WAIT {tcp} {tcp_r} [ASSURED]",
        f"[DESTROY] ipv4     2 tcp      6 119 TIME_WAIT {tcp} {tcp_r} [ASSURED]",
        f"    [NEW] ipv4     2 tcp      6 120 SYN_SENT {tcp} [UNREPLIED] {tcp_r}",
        f"[DESTROY] ipv4     2 tcp      6 119 CLOSE {tcp} [UNREPLIED] {tcp_r}",
        f"    [NEW] ipv4     2 udp      17 30 {udp} [UNREPLIED] {udp_r}",
        f" [UPDATE] ipv4     2 udp      17 30 {udp} {udp_r}",
        f"    [NEW] ipv4     2 icmp     1 30 {icmp} [UNREPLIED] {icmp_r}",
        f" [UPDATE] ipv4     2 icmp     1 30 {icmp} {icmp_r}",
    ]
    assert net.events_lost == 0


def test_flows_created_before_listening_send_nothing_with_events_2() -> None:
    """E54: with nf_conntrack_events=2 only entries created while a listener exists get the
    event extension; with 1, every entry has it."""
    for setting, expected in ((2, 0), (1, 1)):
        net = Net({"nf_conntrack_events": setting})
        send(net, [P.udp(C, S, 5000, 53, b"q")])
        net.listen_events()
        send(net, [P.udp(S, C, 53, 5000, b"a")], t0=100.5)
        assert len(net.read_events()) == expected, setting
    net = Net({"nf_conntrack_events": 0})
    net.listen_events()
    send(net, [P.udp(C, S, 5000, 53, b"q"), P.udp(S, C, 53, 5000, b"a")])
    assert net.read_events() == []


def test_expiry_sends_destroy_without_timeout_and_timestamps_come_from_the_clock() -> None:
    net = Net()
    net.listen_events()
    send(net, [P.udp(C, S, 5000, 53, b"q")], t0=1000.25)
    net.advance(1031.0)
    assert net.gc() == 1
    lines = net.read_events(timestamps=True)
    assert lines[0].startswith("[1000.250000]\t    [NEW] ipv4     2 udp      17 30 ")
    assert lines[1] == (
        "[1031.000000]\t[DESTROY] ipv4     2 udp      17 src=10.1.0.2 dst=10.2.0.2 sport=5000 "
        "dport=53 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000"
    )


def test_a_full_queue_counts_lost_events_and_stays_bounded() -> None:
    net = Net()
    net.listen_events(capacity=3)
    send(net, [P.udp(C, S, 6000 + i, 53, b"q") for i in range(10)])
    assert len(net.read_events()) == 3
    assert net.events_lost == 7


def test_replay_prints_events(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nfct",
            "replay",
            str(EXAMPLES / "dns.pcap"),
            "--output",
            "events",
            "--event-timestamps",
            "--clock",
            "frozen",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.splitlines()
    # The kernel harness, fed this capture as fast as possible, logged 9 events.
    assert len(out) == 9
    assert all(line.startswith("[17") and "\t" in line for line in out)
    assert sum("[NEW]" in line for line in out) == 5


def test_counters_travel_only_with_destroy() -> None:
    """With nf_conntrack_acct=1, NEW and UPDATE carry no counters; DESTROY does (spec §13.3)."""
    net = Net({"nf_conntrack_acct": 1})
    net.listen_events()
    send(net, [P.udp(C, S, 5000, 53, b"q"), P.udp(S, C, 53, 5000, b"a")], t0=10.0)
    net.advance(100.0)
    net.gc()
    new, update, destroy = net.read_events()
    assert "packets=" not in new and "packets=" not in update
    assert destroy.count("packets=1 bytes=29") == 2, destroy
