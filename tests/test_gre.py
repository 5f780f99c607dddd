"""GRE tracking (spec §10.2) from Python: version 0 keys are always 0, version 1 (PPTP) keys
the call id as the destination key with source key 0 (nfct has no PPTP helper, and the live
kernel without one does the same: the GRE scenarios, tests/scenarios/gre.py), version 1
carrying anything but PPP is INVALID, the unreplied and stream timeouts are copied into the
entry on its first packet, and the listings print the keys (and /proc the timeouts) as the
kernel does, text for text."""

from __future__ import annotations

import packets as P
from helpers import C, S, forward
from nfct import Net
from scenarios.base import play
from scenarios.gre import SCENARIOS


def send(net: Net, pkt: bytes, t: float) -> str:
    """The packet through a forwarding router; its class."""
    return forward(net, pkt, t)[1].ctstate


def test_version_0_flow_life_and_timeouts() -> None:
    net = Net()
    net.listen_events()
    assert send(net, P.gre(C, S, key=0xABCD), 10.0) == "new"
    assert send(net, P.gre(S, C), 10.5) == "established"
    (conn,) = net
    assert repr(conn.orig).endswith("proto=47 srckey=0x0 dstkey=0x0>")
    # A reply alone: SEEN_REPLY, still the unreplied timeout; the next packet: stream + ASSURED.
    assert conn.timeout == 29
    assert send(net, P.gre(C, S, with_checksum=True), 11.0) == "established"
    assert conn.timeout == 179
    assert net.dump("proc") == (
        "ipv4     2 gre      47 179 timeout=30, stream_timeout=180 src=10.1.0.2 dst=10.2.0.2 "
        "srckey=0x0 dstkey=0x0 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 [ASSURED] "
        "mark=0 zone=0 use=2\n"
    )
    assert [e.split()[5] for e in net.read_events()] == ["30", "30", "180"]
    net.advance(11.0 + 180)
    assert net.gc() == 1


def test_unreplied_entry_expires_after_the_gre_timeout() -> None:
    net = Net({"nf_conntrack_gre_timeout": 12, "nf_conntrack_gre_timeout_stream": 40})
    send(net, P.gre(C, S), 100.0)
    net.sysctl["nf_conntrack_gre_timeout"] = 1000
    assert net.dump("proc").startswith("ipv4     2 gre      47 11 timeout=12, stream_timeout=40 ")
    net.advance(111.9)
    assert len(net) == 1
    net.advance(112.0)
    assert len(net) == 0


def test_version_1_pptp_listing() -> None:
    played = play(SCENARIOS["GRE v1 (PPTP): each direction is an entry of its own"])
    assert len(played.net) == 2
    assert played.skbs[2].nfct == played.skbs[0].nfct
    assert sorted(played.net.dump("extended").splitlines()) == [
        "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x1111 [UNREPLIED] "
        "src=10.2.0.2 dst=10.1.0.2 srckey=0x1111 dstkey=0x0 mark=0 use=1",
        "ipv4     2 gre      47 29 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x2222 [UNREPLIED] "
        "src=10.1.0.2 dst=10.2.0.2 srckey=0x2222 dstkey=0x0 mark=0 use=1",
    ]


def test_version_1_not_ppp_and_other_versions_listing() -> None:
    played = play(
        SCENARIOS["GRE v1 not carrying PPP is invalid; no call id or another version: keys 0"]
    )
    lines = played.net.dump().splitlines()
    assert len(lines) == 2
    assert all(" srckey=0x0 dstkey=0x0 [UNREPLIED] " in x for x in lines)


def test_gre_over_ipv6_listing() -> None:
    played = play(SCENARIOS["GRE over IPv6"])
    assert sorted(played.net.dump().splitlines()) == [
        "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x0 "
        "src=fd00:2::2 dst=fd00:1::2 srckey=0x0 dstkey=0x0 mark=0 use=1",
        "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x4444 "
        "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 srckey=0x4444 dstkey=0x0 mark=0 use=1",
    ]
