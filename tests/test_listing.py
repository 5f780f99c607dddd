"""What the table shows (spec §12, §14): `conntrack -S` statistics, and the `conntrack -L`,
`conntrack -L -o extended` and /proc/net/nf_conntrack listings, text for text."""

from __future__ import annotations

import pytest

import nfct
import packets as P
from helpers import C6, S6, C, S, forward, proc_fixup
from nfct import (
    Net,
)

# --- statistics -----------------------------------------------------------------------------------


STAT_KEYS = [
    "found",
    "invalid",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "error",
    "search_restart",
    "clash_resolve",
    "chaintoolong",
]


def test_stats_keys() -> None:
    net = Net()
    assert list(net.stats) == STAT_KEYS
    assert all(v == 0 for v in net.stats.values())
    forward(net, P.udp(C, S, 1, 2, checksum=1), t=1.0)
    forward(net, P.icmp_error(S, C, 3, 3, P.udp(C, S, 9, 9)), t=1.0)
    assert net.stats["invalid"] == 1
    assert net.stats["error"] == 1
    assert net.stats_text() == (
        "cpu=0   \tfound=0 invalid=1 insert=0 insert_failed=0 drop=0 early_drop=0 error=1 "
        "search_restart=0 clash_resolve=0 chaintoolong=0 \n"
    )


def test_normal_confirm_does_not_count_insert() -> None:
    """Spec §5: `insert` stays 0 for packet traffic."""
    net = Net()
    for port in range(10):
        forward(net, P.udp(C, S, 1000 + port, 53), t=1.0)
    assert net.stats["insert"] == 0
    assert net.stats["found"] == 0


# --- listings (spec §14) --------------------------------------------------------------------------


def _udp_and_icmp(net: Net) -> None:
    """An unreplied UDP flow and an answered ping, as in the §14 examples."""
    forward(net, P.udp(C, S, 2001, 53, b"query"), t=100.0)
    forward(net, P.icmp_echo(C, S, 4660), t=100.0)
    forward(net, P.icmp_echo(S, C, 4660, reply=True), t=100.0)


def test_dump_conntrack_and_extended() -> None:
    net = Net()
    _udp_and_icmp(net)
    udp = (
        "udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 [UNREPLIED] "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1"
    )
    icmp = (
        "icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
        "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 use=1"
    )
    assert sorted(net.dump("conntrack").splitlines()) == sorted([udp, icmp])
    assert sorted(net.dump().splitlines()) == sorted(["ipv4     2 " + udp, "ipv4     2 " + icmp])
    assert net.dump() == net.dump("extended")
    assert net.dump().endswith("\n")
    assert all(not line.endswith(" ") for line in net.dump().splitlines())
    by_proto = {c.proto: c for c in net}
    assert by_proto["udp"].line() == "ipv4     2 " + udp
    assert by_proto["udp"].line("conntrack") == udp
    assert by_proto["icmp"].line("extended") == "ipv4     2 " + icmp


PROC_UDP = (
    "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 [UNREPLIED] "
    "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 zone=0 use=2"
)


PROC_ICMP = (
    "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
    "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 zone=0 use=2"
)


def test_dump_proc_fields() -> None:
    """Every /proc field but the refcount (checked separately below)."""
    net = Net()
    _udp_and_icmp(net)
    got = sorted(proc_fixup(x) for x in net.dump("proc").splitlines())
    assert got == sorted([proc_fixup(PROC_UDP), proc_fixup(PROC_ICMP)])


def test_dump_proc_exact_lines() -> None:
    """/proc shows use=2 for an idle entry (the reader holds a reference), `conntrack -L`
    use=1 (spec §14.1 item 17)."""
    net = Net()
    _udp_and_icmp(net)
    assert sorted(net.dump("proc").splitlines()) == sorted([PROC_UDP, PROC_ICMP])
    by_proto = {c.proto: c for c in net}
    assert by_proto["udp"].line("proc") == PROC_UDP


def test_dump_unknown_format() -> None:
    with pytest.raises(nfct.NfctError) as err:
        Net().dump("xml")
    assert isinstance(err.value, ValueError)


def test_dump_accounting_and_timestamp() -> None:
    """Spec §14.1/§14.2 examples with counters and delta-time (mark/zone cannot be set)."""
    net = Net(sysctl={"nf_conntrack_acct": 1, "nf_conntrack_timestamp": 1})
    forward(net, P.udp(C, S, 6001, 53, b"12345"), t=50.0)
    forward(net, P.udp(S, C, 53, 6001, b"1234567890"), t=50.2)
    forward(net, P.udp(C, S, 6002, 5353, b"x"), t=50.2)
    net.advance(51.5)
    assert sorted(net.dump("conntrack").splitlines()) == [
        "udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 bytes=33 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 mark=0 "
        "delta-time=1 use=1",
        "udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6002 dport=5353 packets=1 bytes=29 "
        "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5353 dport=6002 packets=0 bytes=0 mark=0 "
        "delta-time=1 use=1",
    ]
    assert sorted(proc_fixup(x) for x in net.dump("proc").splitlines()) == [
        "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 "
        "bytes=33 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 mark=0 "
        "zone=0 delta-time=1",
        "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6002 dport=5353 packets=1 "
        "bytes=29 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5353 dport=6002 packets=0 "
        "bytes=0 mark=0 zone=0 delta-time=1",
    ]


def test_dump_ipv6() -> None:
    """IPv6: compressed in `conntrack -L`, full 8-group form in /proc (spec §14)."""
    net = Net()
    forward(net, P.icmp6_echo(C6, S6, 85), t=3.0)
    forward(net, P.icmp6_echo(S6, C6, 85, reply=True), t=3.0)
    forward(net, P.udp(C6, S6, 4000, 53, b"q"), t=3.0)
    assert sorted(net.dump().splitlines()) == sorted(
        [
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=85 "
            "src=fd00:2::2 dst=fd00:1::2 type=129 code=0 id=85 mark=0 use=1",
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4000 mark=0 use=1",
        ]
    )
    full1 = "fd00:0001:0000:0000:0000:0000:0000:0002"
    full2 = "fd00:0002:0000:0000:0000:0000:0000:0002"
    assert sorted(proc_fixup(x) for x in net.dump("proc").splitlines()) == sorted(
        [
            f"ipv6     10 icmpv6   58 29 src={full1} dst={full2} type=128 code=0 id=85 "
            f"src={full2} dst={full1} type=129 code=0 id=85 mark=0 zone=0",
            f"ipv6     10 udp      17 29 src={full1} dst={full2} sport=4000 dport=53 [UNREPLIED] "
            f"src={full2} dst={full1} sport=53 dport=4000 mark=0 zone=0",
        ]
    )
    conn = next(c for c in net if c.proto == "icmpv6")
    assert conn.orig.src == C6
    assert conn.orig.l3num == 10
    assert (conn.orig.type, conn.reply.type, conn.orig.id) == (128, 129, 85)


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  # first of two equal runs
        ("::1", "::1"),
        ("fe80::1:2:3:4", "fe80::1:2:3:4"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),  # a single zero group is not compressed
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),
    ],
)
def test_ipv6_compression_like_inet_ntop(addr: str, text: str) -> None:
    net = Net()
    forward(net, P.udp(addr, "2001:db8::99", 1, 2), t=1.0)
    (line,) = net.dump("conntrack").splitlines()
    assert f"src={text} dst=2001:db8::99 " in line
