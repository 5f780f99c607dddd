"""GRE tracking (spec §10.2) from Python: version 0 keys are always 0, version 1 (PPTP) keys
the call id as the destination key with source key 0 (nfct has no PPTP helper, and the live
kernel without one does the same: tests/kernel/test_gre_kernel.py), version 1 carrying
anything but PPP is INVALID, the unreplied and stream timeouts are copied into the entry on its
first packet, and the listings print the keys (and /proc the timeouts) as the kernel does."""

from __future__ import annotations

import packets as P
from nfct import Net, Skb, ipv4_confirm, ipv4_conntrack_in, ipv6_confirm, ipv6_conntrack_in

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"
PPTP = 0x880B


def send(net: Net, pkt: bytes, t: float, *, v6: bool = False) -> str:
    skb = Skb(pkt, tstamp=t)
    (ipv6_conntrack_in if v6 else ipv4_conntrack_in)(net, skb)
    (ipv6_confirm if v6 else ipv4_confirm)(net, skb)
    return skb.ctstate


def pptp(src: str, dst: str, call_id: int) -> bytes:
    return P.gre(src, dst, version=1, protocol=PPTP, key=call_id)


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


def test_version_1_pptp_directions_are_separate_entries() -> None:
    net = Net()
    assert send(net, pptp(C, S, 0x1111), 1.0) == "new"
    # The peer's packets carry its own call id: no match with the reply tuple (0x1111, 0).
    assert send(net, pptp(S, C, 0x2222), 1.1) == "new"
    # Another packet of an unreplied entry is still "new" (IP_CT_NEW), on the same entry.
    assert send(net, pptp(C, S, 0x1111), 1.2) == "new"
    assert len(net) == 2
    assert sorted(net.dump("extended").splitlines()) == [
        "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x1111 [UNREPLIED] "
        "src=10.2.0.2 dst=10.1.0.2 srckey=0x1111 dstkey=0x0 mark=0 use=1",
        "ipv4     2 gre      47 29 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x2222 [UNREPLIED] "
        "src=10.1.0.2 dst=10.2.0.2 srckey=0x2222 dstkey=0x0 mark=0 use=1",
    ]


def test_version_1_not_ppp_is_invalid_and_short_or_other_versions_key_0() -> None:
    net = Net()
    assert send(net, P.gre(C, S, version=1, protocol=0x0800, key=7), 1.0) == "invalid"
    assert net.stats["invalid"] == 1
    assert send(net, P.gre(C, S, version=1, protocol=PPTP), 1.1) == "new"  # no call id
    assert send(net, P.gre(C, "10.2.0.3", version=5, key=9), 1.2) == "new"
    assert all(" srckey=0x0 dstkey=0x0 [UNREPLIED] " in x for x in net.dump().splitlines())
    assert len(net) == 2


def test_gre_over_ipv6() -> None:
    net = Net()
    assert send(net, P.ipv6(C6, S6, 47, b"\x20\x01\x88\x0b\x00\x00\x44\x44"), 1.0, v6=True) == "new"
    assert send(net, P.ipv6(C6, S6, 47, b"\x00\x00\x08\x00"), 1.1, v6=True) == "new"
    assert send(net, P.ipv6(S6, C6, 47, b"\x00\x00\x08\x00"), 1.2, v6=True) == "established"
    assert sorted(net.dump().splitlines()) == [
        "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x0 "
        "src=fd00:2::2 dst=fd00:1::2 srckey=0x0 dstkey=0x0 mark=0 use=1",
        "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x4444 "
        "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 srckey=0x4444 dstkey=0x0 mark=0 use=1",
    ]
