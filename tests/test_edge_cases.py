"""The non-TCP edge cases of spec §16 that nfct covers (E31–E52, E63), with the kernel's
observed results, plus expiry and timeout printing (spec §8–§11)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import nfct
import packets as P
from nfct import NF_ACCEPT, NF_DROP, Net, Skb

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"


def forward(net: Net, pkt: bytes, t: float | None = None) -> tuple[int, Skb]:
    """One packet through a forwarding router: `in` at PRE_ROUTING, confirm at POST_ROUTING
    (unless dropped). Returns the final verdict and the packet."""
    skb = Skb(pkt, tstamp=net.now if t is None else t)
    v6 = pkt[0] >> 4 == 6
    hook_in: Callable[[Net, Skb], int] = nfct.ipv6_conntrack_in if v6 else nfct.ipv4_conntrack_in
    confirm: Callable[[Net, Skb], int] = nfct.ipv6_confirm if v6 else nfct.ipv4_confirm
    verdict = hook_in(net, skb)
    if verdict != NF_DROP:
        verdict = confirm(net, skb)
    return verdict, skb


def only(net: Net) -> nfct.Conn:
    conns = list(net)
    assert len(conns) == 1, net.dump()
    return conns[0]


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


# --- E31–E36: UDP ------------------------------------------------------------------------------


def test_e31_icmp_port_unreachable_is_related_and_touches_nothing() -> None:
    net = Net(sysctl={"nf_conntrack_acct": 1})
    query = P.udp(C, S, 4002, 53, b"query")
    _, q = forward(net, query, t=0.0)
    before = net.stats
    verdict, err = forward(net, P.icmp_error(S, C, 3, 3, query), t=0.5)
    assert verdict == NF_ACCEPT
    assert err.ctstate == "related"
    assert err.ctinfo == nfct.IP_CT_RELATED_REPLY
    assert err.nfct == q.nfct
    assert stats_delta(before, net.stats) == {}
    conn = only(net)
    assert conn.status & nfct.IPS_SEEN_REPLY == 0
    assert conn.timeout == 29
    assert conn.counters == ((1, len(query)), (0, 0))  # the error is not accounted
    assert net.count == 1
    assert "[UNREPLIED]" in conn.line()
    assert conn.line("conntrack").startswith("udp      17 29 src=10.1.0.2 dst=10.2.0.2 ")


def test_e31_related_error_quoting_whole_packet_and_from_router() -> None:
    """The quote may be the whole packet; a router on the path may send the error (its
    source is not an endpoint; only the outer destination is checked)."""
    net = Net()
    query = P.udp(C, S, 4002, 53, b"some longer query payload")
    forward(net, query, t=0.0)
    _, full = forward(net, P.icmp_error(S, C, 3, 3, query, quote_len=len(query)), t=0.1)
    assert full.ctstate == "related"
    _, ttl = forward(net, P.icmp_error("10.0.0.1", C, 11, 0, query), t=0.2)
    assert ttl.ctstate == "related"


def test_e32_udp_exchange_within_two_seconds_stays_unassured() -> None:
    net = Net()
    _, q1 = forward(net, P.udp(C, S, 4003, 53), t=0.0)
    _, r = forward(net, P.udp(S, C, 53, 4003), t=0.5)
    _, q2 = forward(net, P.udp(C, S, 4003, 53), t=1.0)
    assert [x.ctstate for x in (q1, r, q2)] == ["new", "established", "established"]
    conn = only(net)
    assert conn.timeout == 29
    assert conn.status & nfct.IPS_SEEN_REPLY
    assert conn.status & nfct.IPS_ASSURED == 0
    assert "[ASSURED]" not in conn.line()
    assert "[UNREPLIED]" not in conn.line()


def test_e33_udp_packet_after_two_seconds_assures() -> None:
    net = Net()
    forward(net, P.udp(C, S, 4003, 53), t=0.0)
    forward(net, P.udp(S, C, 53, 4003), t=0.5)
    forward(net, P.udp(C, S, 4003, 53), t=1.0)
    _, late = forward(net, P.udp(C, S, 4003, 53), t=2.5)
    assert late.ctstate == "established"
    conn = only(net)
    assert conn.timeout == 119
    assert conn.status & nfct.IPS_ASSURED
    assert conn.line("conntrack") == (
        "udp      17 119 src=10.1.0.2 dst=10.2.0.2 sport=4003 dport=53 src=10.2.0.2 "
        "dst=10.1.0.2 sport=53 dport=4003 [ASSURED] mark=0 use=1"
    )
    # ASSURED is never cleared; later packets keep the stream timeout.
    forward(net, P.udp(S, C, 53, 4003), t=50.0)
    assert conn.status & nfct.IPS_ASSURED
    assert conn.timeout == 119


def test_e33_two_seconds_exactly_is_not_after() -> None:
    net = Net()
    forward(net, P.udp(C, S, 4004, 53), t=10.0)
    forward(net, P.udp(S, C, 53, 4004), t=10.5)
    forward(net, P.udp(C, S, 4004, 53), t=12.0)  # stream_ts = 12.0: not *after* it
    conn = only(net)
    assert conn.status & nfct.IPS_ASSURED == 0
    assert conn.timeout == 29
    forward(net, P.udp(C, S, 4004, 53), t=12.01)
    assert conn.status & nfct.IPS_ASSURED
    assert conn.timeout == 119


def test_e33_first_reply_late_does_not_assure_by_itself() -> None:
    """SEEN_REPLY is set only after the reply was processed (spec §2 step 7), so a first reply
    arriving after 2 s still gets 30 s; the next packet assures."""
    net = Net()
    forward(net, P.udp(C, S, 4005, 53), t=0.0)
    forward(net, P.udp(S, C, 53, 4005), t=5.0)
    conn = only(net)
    assert conn.status & nfct.IPS_SEEN_REPLY
    assert conn.status & nfct.IPS_ASSURED == 0
    assert conn.timeout == 29
    forward(net, P.udp(S, C, 53, 4005), t=5.1)
    assert conn.status & nfct.IPS_ASSURED
    assert conn.timeout == 119


def test_e33_stream_timeout_follows_sysctl() -> None:
    net = Net(sysctl={"nf_conntrack_udp_timeout": 10, "nf_conntrack_udp_timeout_stream": 50})
    forward(net, P.udp(C, S, 4006, 53), t=0.0)
    conn = only(net)
    assert conn.timeout == 9
    forward(net, P.udp(S, C, 53, 4006), t=1.0)
    forward(net, P.udp(C, S, 4006, 53), t=3.0)
    assert conn.timeout == 49


@pytest.mark.parametrize(("src", "dst"), [(C, S), (C6, S6)])
def test_e34_bad_udp_checksum_is_invalid(src: str, dst: str) -> None:
    net = Net()
    good = P.udp(src, dst, 4007, 53, b"payload")
    bad = P.udp(src, dst, 4007, 53, b"payload", checksum=0x1234)
    assert good != bad
    before = net.stats
    verdict, skb = forward(net, bad, t=1.0)
    assert verdict == NF_ACCEPT
    assert skb.ctstate == "invalid"
    assert skb.nfct is None
    assert skb.invalid_reason is not None and "checksum" in skb.invalid_reason
    assert stats_delta(before, net.stats) == {"invalid": 1}
    assert net.count == 0
    assert list(net) == []
    # A bad checksum on an existing flow: invalid, the entry is not refreshed.
    forward(net, good, t=1.0)
    conn = only(net)
    _, again = forward(net, bad, t=11.0)
    assert again.ctstate == "invalid"
    assert conn.timeout == 19
    assert net.stats["invalid"] == 2


@pytest.mark.parametrize(("src", "dst"), [(C, S), (C6, S6)])
def test_e34_checksum_sysctl_off(src: str, dst: str) -> None:
    net = Net(sysctl={"nf_conntrack_checksum": 0})
    _, skb = forward(net, P.udp(src, dst, 4008, 53, b"payload", checksum=0x1234), t=1.0)
    assert skb.ctstate == "new"
    assert net.stats["invalid"] == 0
    assert len(net) == 1


@pytest.mark.parametrize(("src", "dst"), [(C, S), (C6, S6)])
def test_e35_udp_checksum_zero_is_new(src: str, dst: str) -> None:
    net = Net()
    _, skb = forward(net, P.udp(src, dst, 4009, 53, b"payload", checksum=0), t=1.0)
    assert skb.ctstate == "new"
    assert len(net) == 1


def test_e36_udp_length_field() -> None:
    net = Net()
    payload = b"0123456789"
    before = net.stats
    _, longer = forward(net, P.udp(C, S, 4010, 53, payload, length=8 + len(payload) + 1), t=1.0)
    assert longer.ctstate == "invalid"
    assert stats_delta(before, net.stats) == {"invalid": 1}
    _, shorter = forward(net, P.udp(C, S, 4011, 53, payload, length=8 + 2), t=1.0)
    assert shorter.ctstate == "new"
    _, minimal = forward(net, P.udp(C, S, 4012, 53, payload, length=8), t=1.0)
    assert minimal.ctstate == "new"
    _, tiny = forward(net, P.udp(C, S, 4013, 53, payload, length=7), t=1.0)
    assert tiny.ctstate == "invalid"
    _, nocsum = forward(net, P.udp(C, S, 4014, 53, payload, length=9, checksum=0), t=1.0)
    assert nocsum.ctstate == "new"
    assert {c.orig.sport for c in net} == {4011, 4012, 4014}
    assert net.stats["invalid"] == 2


def test_udp_header_truncated_is_invalid() -> None:
    net = Net()
    seg = P.udp_segment(C, S, 4015, 53)[:6]
    _, skb = forward(net, P.ipv4(C, S, P.IPPROTO_UDP, seg), t=1.0)
    assert skb.ctstate == "invalid"
    _, ports_only = forward(net, P.ipv4(C, S, P.IPPROTO_UDP, seg[:3]), t=1.0)
    assert ports_only.ctstate == "invalid"
    assert net.stats["invalid"] == 2
    assert net.count == 0


# --- E37, E39: ICMP errors that match nothing --------------------------------------------------


def test_e37_icmp_error_outer_destination_mismatch() -> None:
    net = Net()
    query = P.udp(C, S, 4020, 53)
    forward(net, query, t=0.0)
    before = net.stats
    _, skb = forward(net, P.icmp_error(S, "10.9.9.9", 3, 3, query), t=0.1)
    assert skb.ctstate == "invalid"
    assert skb.nfct is None
    assert stats_delta(before, net.stats) == {"error": 1}
    conn = only(net)
    assert conn.status & nfct.IPS_SEEN_REPLY == 0


def test_e39_icmp_error_for_unknown_flow() -> None:
    net = Net()
    before = net.stats
    _, skb = forward(net, P.icmp_error(S, C, 3, 3, P.udp(C, S, 4021, 53)), t=0.0)
    assert skb.ctstate == "invalid"
    assert stats_delta(before, net.stats) == {"error": 1}
    assert net.stats["invalid"] == 0
    assert net.count == 0


def test_icmp_error_quoting_an_icmp_error_is_invalid() -> None:
    """An error about an error: the inner tuple cannot be inverted (spec §9.4 step 2)."""
    net = Net()
    inner_err = P.icmp_error(C, S, 3, 3, P.udp(S, C, 53, 4022))
    _, skb = forward(net, P.icmp_error(S, C, 3, 1, inner_err), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["error"] == 1
    assert net.stats["invalid"] == 0


def test_icmp_bad_checksum_counts_error() -> None:
    net = Net()
    _, skb = forward(net, P.icmp(C, S, 8, 0, ident=1, checksum=0x4321), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats == {**net.stats, "error": 1, "invalid": 0}
    assert net.count == 0


def test_icmp_short_header_counts_error() -> None:
    net = Net()
    _, skb = forward(net, P.ipv4(C, S, P.IPPROTO_ICMP, b"\x08\x00\xf7\xff"), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["error"] == 1


# --- E45–E47: ICMP requests --------------------------------------------------------------------


def test_e45_echo_code_is_part_of_the_tuple() -> None:
    net = Net()
    forward(net, P.icmp_echo(C, S, 9, code=5), t=0.0)
    forward(net, P.icmp_echo(C, S, 9, code=0), t=0.0)
    assert sorted(net.dump("conntrack").splitlines()) == [
        "icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=9 [UNREPLIED] src=10.2.0.2 "
        "dst=10.1.0.2 type=0 code=0 id=9 mark=0 use=1",
        "icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=5 id=9 [UNREPLIED] src=10.2.0.2 "
        "dst=10.1.0.2 type=0 code=5 id=9 mark=0 use=1",
    ]
    # The reply with code 5 belongs to the code-5 entry only.
    _, r = forward(net, P.icmp_echo(S, C, 9, code=5, reply=True), t=0.0)
    assert r.ctstate == "established"
    assert r.nfct is not None and r.nfct.orig.code == 5


def test_e46_echo_reply_echo() -> None:
    net = Net()
    _, a = forward(net, P.icmp_echo(C, S, 77, 1), t=0.0)
    _, b = forward(net, P.icmp_echo(S, C, 77, 1, reply=True), t=0.1)
    _, c = forward(net, P.icmp_echo(C, S, 77, 2), t=0.2)
    assert [x.ctstate for x in (a, b, c)] == ["new", "established", "established"]
    assert [x.ctinfo for x in (a, b, c)] == [
        nfct.IP_CT_NEW,
        nfct.IP_CT_ESTABLISHED_REPLY,
        nfct.IP_CT_ESTABLISHED,
    ]
    conn = only(net)
    assert conn.timeout == 29
    assert conn.status & nfct.IPS_SEEN_REPLY
    assert conn.status & nfct.IPS_ASSURED == 0  # ICMP is never assured
    net.advance(20.0)
    assert conn.timeout == 10  # last refreshed at 0.2 s
    forward(net, P.icmp_echo(S, C, 77, 2, reply=True), t=20.0)
    assert conn.timeout == 29  # refreshed by either direction
    assert conn.status & nfct.IPS_ASSURED == 0


def test_e47_echo_reply_without_request() -> None:
    net = Net()
    _, skb = forward(net, P.icmp_echo(S, C, 5, reply=True), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["invalid"] == 1
    assert net.stats["error"] == 0
    assert net.count == 0


def test_e47_unknown_icmp_type_counts_error() -> None:
    net = Net()
    _, skb = forward(net, P.icmp(C, S, 40, 0), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["error"] == 1
    assert net.stats["invalid"] == 0
    assert net.count == 0


def test_e47_timestamp_request_is_new() -> None:
    net = Net()
    _, skb = forward(net, P.icmp(C, S, 13, 0, ident=21, body=b"\0" * 12), t=0.0)
    assert skb.ctstate == "new"
    conn = only(net)
    assert (conn.orig.type, conn.reply.type, conn.reply.id) == (13, 14, 21)
    _, r = forward(net, P.icmp(S, C, 14, 0, ident=21, body=b"\0" * 12), t=0.1)
    assert r.ctstate == "established"


@pytest.mark.parametrize(("request_type", "reply_type"), [(15, 16), (17, 18)])
def test_other_icmp_requests_are_new(request_type: int, reply_type: int) -> None:
    net = Net()
    _, skb = forward(net, P.icmp(C, S, request_type, 0, ident=3), t=0.0)
    assert skb.ctstate == "new"
    assert only(net).reply.type == reply_type


@pytest.mark.parametrize("type_", [9, 10, 0, 14, 16, 18])
def test_e47_non_request_types_are_invalid(type_: int) -> None:
    net = Net()
    _, skb = forward(net, P.icmp(C, S, type_, 0, ident=3), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["invalid"] == 1
    assert net.stats["error"] == 0
    assert net.count == 0


# --- E48, E49: generic and GRE -----------------------------------------------------------------


def test_e48_esp_is_generic() -> None:
    net = Net()
    _, a = forward(net, P.esp(C, S, 0x1001), t=0.0)
    assert a.ctstate == "new"
    conn = only(net)
    assert conn.proto == "unknown"
    assert conn.timeout == 599
    assert conn.line() == (
        "ipv4     2 unknown  50 599 src=10.1.0.2 dst=10.2.0.2 [UNREPLIED] "
        "src=10.2.0.2 dst=10.1.0.2 mark=0 use=1"
    )
    assert conn.orig.sport is None and conn.orig.type is None
    _, b = forward(net, P.esp(S, C, 0x2002), t=1.0)  # another SPI: same entry
    assert b.ctstate == "established"
    assert conn.status & nfct.IPS_SEEN_REPLY
    for t in (3.0, 10.0, 100.0):
        forward(net, P.esp(C, S, 0x1001), t=t)
        forward(net, P.esp(S, C, 0x2002), t=t)
    assert conn.status & nfct.IPS_ASSURED == 0
    assert conn.timeout == 599
    assert conn.line("conntrack") == (
        "unknown  50 599 src=10.1.0.2 dst=10.2.0.2 src=10.2.0.2 dst=10.1.0.2 mark=0 use=1"
    )


def test_generic_timeout_sysctl_and_other_protocols() -> None:
    net = Net(sysctl={"nf_conntrack_generic_timeout": 100})
    forward(net, P.generic(C, S, 89), t=0.0)  # OSPF
    forward(net, P.generic(C6, S6, 103), t=0.0)  # PIM
    assert sorted(c.timeout for c in net) == [99, 99]
    assert {c.orig.protonum for c in net} == {89, 103}
    assert {c.proto for c in net} == {"unknown"}


def test_e49_gre_v0() -> None:
    net = Net()
    _, a = forward(net, P.gre(C, S, b"inner"), t=0.0)
    assert a.ctstate == "new"
    conn = only(net)
    assert conn.proto == "gre"
    assert conn.timeout == 29
    assert conn.line("conntrack") == (
        "gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED] "
        "src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1"
    )
    assert conn.line("proc").startswith(
        "ipv4     2 gre      47 29 timeout=30, stream_timeout=180 src=10.1.0.2 dst=10.2.0.2 "
        "srckey=0x0 dstkey=0x0 [UNREPLIED] "
    )
    _, b = forward(net, P.gre(S, C, b"back"), t=1.0)
    assert b.ctstate == "established"
    assert conn.timeout == 29  # the first reply itself: SEEN_REPLY not yet set
    assert conn.status & nfct.IPS_ASSURED == 0
    _, c = forward(net, P.gre(C, S, b"more", with_checksum=True), t=1.5)
    assert c.ctstate == "established"
    assert conn.timeout == 179
    assert conn.status & nfct.IPS_ASSURED
    assert conn.line("conntrack").endswith("srckey=0x0 dstkey=0x0 [ASSURED] mark=0 use=1")


def test_gre_timeouts_copied_at_creation() -> None:
    net = Net()
    forward(net, P.gre(C, S), t=0.0)
    net.sysctl["nf_conntrack_gre_timeout"] = 5
    net.sysctl["nf_conntrack_gre_timeout_stream"] = 7
    conn = only(net)
    forward(net, P.gre(S, C), t=0.5)
    assert conn.timeout == 29  # the entry keeps the values of its first packet
    forward(net, P.gre(C, S), t=0.6)
    assert conn.timeout == 179
    assert "timeout=30, stream_timeout=180" in conn.line("proc")
    forward(net, P.gre(C, "10.2.0.3"), t=1.0)
    new = next(c for c in net if c.orig.dst == "10.2.0.3")
    assert new.timeout == 4
    assert "timeout=5, stream_timeout=7" in new.line("proc")


def test_udplite_assured_on_first_packet_after_reply() -> None:
    net = Net()
    forward(net, P.udplite(C, S, 5000, 5001, b"abc"), t=0.0)
    conn = only(net)
    assert conn.proto == "udplite"
    forward(net, P.udplite(S, C, 5001, 5000, b"abc"), t=0.1)
    assert conn.status & nfct.IPS_ASSURED == 0
    assert conn.timeout == 29
    forward(net, P.udplite(C, S, 5000, 5001, b"abc"), t=0.2)  # no 2 s rule for UDPLITE
    assert conn.status & nfct.IPS_ASSURED
    assert conn.timeout == 119


def test_udplite_rfc_checksum_is_invalid_like_the_kernel() -> None:
    """conntrack verifies UDPLITE against a pseudo-header naming protocol 17: a packet
    checksummed as RFC 3828 says (protocol 136) is INVALID while checksums are verified."""
    rfc = P.udplite(C, S, 5000, 5001, b"abc", pseudo_proto=P.IPPROTO_UDPLITE)
    net = Net()
    _, skb = forward(net, rfc, t=0.0)
    assert skb.ctstate == "invalid"
    assert skb.invalid_reason == "nf_ct_udplite: bad checksum"
    _, skb = forward(Net({"nf_conntrack_checksum": 0}), rfc, t=0.0)
    assert skb.ctstate == "new"


def test_udplite_checksum_is_mandatory() -> None:
    net = Net()
    pkt = bytearray(P.udplite(C, S, 5000, 5001, b"abc"))
    pkt[26:28] = b"\0\0"
    _, skb = forward(net, bytes(pkt), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["invalid"] == 1


# --- E50: IPv6 ---------------------------------------------------------------------------------


def test_e50_icmpv6_echo() -> None:
    net = Net()
    _, a = forward(net, P.icmp6_echo(C6, S6, 85), t=0.0)
    _, b = forward(net, P.icmp6_echo(S6, C6, 85, reply=True), t=0.0)
    assert (a.ctstate, b.ctstate) == ("new", "established")
    assert only(net).line("conntrack") == (
        "icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=85 src=fd00:2::2 "
        "dst=fd00:1::2 type=129 code=0 id=85 mark=0 use=1"
    )


@pytest.mark.parametrize("type_", [130, 131, 132, 133, 134, 135, 136, 143, 151, 152])
def test_e50_neighbour_discovery_and_mld_untracked(type_: int) -> None:
    net = Net()
    before = net.stats
    pkt = P.icmp6("fe80::1", "ff02::1", type_, 0, b"\0\0\0\0", b"\0" * 16, hop_limit=255)
    verdict, skb = forward(net, pkt, t=0.0)
    assert verdict == NF_ACCEPT
    assert skb.ctstate == "untracked"
    assert skb.ctinfo == nfct.IP_CT_UNTRACKED
    assert net.count == 0
    assert stats_delta(before, net.stats) == {}


def test_e50_neighbour_solicitation_builder() -> None:
    net = Net()
    _, skb = forward(net, P.icmp6_neighbour_solicitation(C6, "ff02::1:ff00:2", S6), t=0.0)
    assert skb.ctstate == "untracked"
    assert list(net) == []


def test_e50_udp6_port_unreachable_is_related() -> None:
    net = Net()
    query = P.udp(C6, S6, 4030, 53, b"q")
    _, q = forward(net, query, t=0.0)
    _, err = forward(net, P.icmp6_error(S6, C6, 1, 4, query), t=0.1)
    assert err.ctstate == "related"
    assert err.ctinfo == nfct.IP_CT_RELATED_REPLY
    assert err.nfct == q.nfct
    conn = only(net)
    assert conn.status & nfct.IPS_SEEN_REPLY == 0
    assert conn.timeout == 29
    # No flow: error+1.
    _, none = forward(net, P.icmp6_error(S6, C6, 1, 4, P.udp(C6, S6, 4031, 53)), t=0.2)
    assert none.ctstate == "invalid"
    assert net.stats["error"] == 1
    assert net.stats["invalid"] == 0


@pytest.mark.parametrize("type_", [1, 128, 140])
def test_icmpv6_bad_checksum_counts_error(type_: int) -> None:
    net = Net()
    _, skb = forward(net, P.icmp6(C6, S6, type_, 0, checksum=0x1111), t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["error"] == 1


def test_icmpv6_node_information_query_and_unknown_informational() -> None:
    net = Net()
    _, q = forward(net, P.icmp6(C6, S6, 139, 0, b"\0\x07\0\0", b"\0" * 8), t=0.0)
    assert q.ctstate == "new"
    assert only(net).reply.type == 140
    _, other = forward(net, P.icmp6(C6, S6, 200, 0), t=0.0)
    assert other.ctstate == "invalid"
    assert net.stats["invalid"] == 1
    _, reply = forward(net, P.icmp6_echo(C6, S6, 1, reply=True), t=0.0)
    assert reply.ctstate == "invalid"
    assert net.stats["invalid"] == 2


def test_ipv6_extension_headers_are_walked() -> None:
    net = Net()
    seg = P.udp_segment(C6, S6, 4040, 53, b"q")
    pkt = P.ipv6(C6, S6, P.IPPROTO_UDP, seg, ext_headers=[(0, b"\x01\x04\0\0\0\0"), (60, b"")])
    _, skb = forward(net, pkt, t=0.0)
    assert skb.ctstate == "new"
    conn = only(net)
    assert (conn.orig.protonum, conn.orig.sport, conn.orig.dport) == (17, 4040, 53)
    # A first fragment (offset 0) is tracked; a later fragment is not.
    first = P.ipv6(
        C6,
        S6,
        P.IPPROTO_UDP,
        P.udp_segment(C6, S6, 4041, 53),
        ext_headers=[(44, b"\x00\x01\x00\x00\x00\x01")],
    )
    _, f = forward(net, first, t=0.0)
    assert f.ctstate == "new"
    later = P.ipv6(
        C6, S6, P.IPPROTO_UDP, b"\0" * 16, ext_headers=[(44, b"\x00\x08\x00\x00\x00\x01")]
    )
    _, g = forward(net, later, t=0.0)
    assert g.ctstate == "invalid"
    assert net.stats["invalid"] == 1


def test_e63_ipv6_no_next_header() -> None:
    net = Net()
    before = net.stats
    _, skb = forward(net, P.ipv6(C6, S6, P.IPPROTO_NONE, b""), t=0.0)
    assert skb.ctstate == "invalid"
    assert stats_delta(before, net.stats) == {"invalid": 1}
    assert net.count == 0
    # Also behind an extension header.
    _, skb2 = forward(net, P.ipv6(C6, S6, P.IPPROTO_NONE, b"", ext_headers=[(60, b"")]), t=0.0)
    assert skb2.ctstate == "invalid"
    assert net.stats["invalid"] == 2


def test_ipv4_non_first_fragment_is_invalid() -> None:
    net = Net()
    pkt = P.ipv4(C, S, P.IPPROTO_UDP, b"\0" * 16, frag_off=10)
    _, skb = forward(net, pkt, t=0.0)
    assert skb.ctstate == "invalid"
    assert net.stats["invalid"] == 1
    first = P.ipv4(
        C, S, P.IPPROTO_UDP, P.udp_segment(C, S, 4050, 53, b"x" * 8), more_fragments=True
    )
    _, f = forward(net, first, t=0.0)
    assert f.ctstate == "new"


# --- E51, E52: table full ----------------------------------------------------------------------


def _unreplied_flows(net: Net, n: int, t: float) -> None:
    for i in range(n):
        verdict, _ = forward(net, P.udp(C, S, 10000 + i, 53), t=t)
        assert verdict == NF_ACCEPT


def test_e52_table_full_of_unreplied_udp_early_drops() -> None:
    net = Net(sysctl={"nf_conntrack_max": 64, "nf_conntrack_buckets": 16})
    _unreplied_flows(net, 64, t=1.0)
    assert net.count == 64
    assert len(net) == 64
    before = net.stats
    verdict, skb = forward(net, P.udp(C, S, 20000, 53), t=2.0)
    assert verdict == NF_ACCEPT
    assert skb.ctstate == "new"
    delta = stats_delta(before, net.stats)
    assert set(delta) == {"early_drop"}
    evicted = delta["early_drop"]
    assert evicted >= 1
    assert net.count == 64 + 1 - evicted
    assert net.count <= 64
    listed = list(net)
    assert len(listed) == net.count
    assert any(c.orig.sport == 20000 for c in listed)
    # Keep going: the table never holds more than max.
    for i in range(40):
        verdict, _ = forward(net, P.udp(C, S, 30000 + i, 53), t=3.0)
        assert verdict == NF_ACCEPT
        assert net.count <= 64
    assert net.stats["drop"] == 0


def test_e52_early_drop_never_evicts_assured() -> None:
    net = Net(sysctl={"nf_conntrack_max": 16, "nf_conntrack_buckets": 16})
    _assured_flows(net, 8)
    _unreplied_flows(net, 8, t=10.0)
    assured = {c for c in net if c.status & nfct.IPS_ASSURED}
    assert len(assured) == 8
    for i in range(30):
        forward(net, P.udp(C, S, 40000 + i, 53), t=11.0)
        assert net.count <= 16
    assert assured <= set(net)


def test_e52_early_drop_evicts_every_unassured_entry_of_the_bucket() -> None:
    """Spec §3 step 4: every eligible entry of the first bucket that has one is deleted at
    once (a single bucket here); ASSURED entries stay."""
    net = Net(sysctl={"nf_conntrack_max": 12, "nf_conntrack_buckets": 1})
    _assured_flows(net, 4)
    _unreplied_flows(net, 8, t=3.0)
    assert net.count == 12
    verdict, _ = forward(net, P.udp(C, S, 20000, 53), t=3.0)
    assert verdict == NF_ACCEPT
    assert net.stats["early_drop"] == 8
    assert net.count == 5
    assert sorted(c.orig.sport or 0 for c in net) == [20000, 50000, 50001, 50002, 50003]


def _assured_flows(net: Net, n: int) -> None:
    """n UDP flows that are ASSURED: query, answer, and a packet more than 2 s later."""
    for i in range(n):
        forward(net, P.udp(C, S, 50000 + i, 53), t=0.0)
        forward(net, P.udp(S, C, 53, 50000 + i), t=0.5)
    for i in range(n):
        forward(net, P.udp(C, S, 50000 + i, 53), t=3.0)


def test_e51_table_full_of_assured_udp_drops_new_flow() -> None:
    net = Net(sysctl={"nf_conntrack_max": 8, "nf_conntrack_buckets": 16})
    _assured_flows(net, 8)
    assert all(c.status & nfct.IPS_ASSURED for c in net)
    assert net.count == 8
    before = net.stats
    snapshot = sorted(net.dump().splitlines())
    verdict, skb = forward(net, P.udp(C, S, 60000, 53), t=4.0)
    assert verdict == NF_DROP
    assert skb.nfct is None
    assert skb.invalid_reason is not None and "table full" in skb.invalid_reason
    assert stats_delta(before, net.stats) == {"drop": 1}
    assert net.count == 8
    assert len(net) == 8
    # The table is as it was (the clock did move by one second).
    assert [line.replace(" 118 ", " 119 ") for line in sorted(net.dump().splitlines())] == snapshot
    # Packets of the existing flows still pass.
    verdict, known = forward(net, P.udp(S, C, 53, 50003), t=4.0)
    assert verdict == NF_ACCEPT
    assert known.ctstate == "established"
    # ICMP echo too is dropped, while an ICMP error related to a flow is fine.
    verdict, _ = forward(net, P.icmp_echo(C, S, 1), t=4.0)
    assert verdict == NF_DROP
    assert net.stats["drop"] == 2
    verdict, rel = forward(net, P.icmp_error(S, C, 3, 3, P.udp(C, S, 50001, 53)), t=4.0)
    assert verdict == NF_ACCEPT
    assert rel.ctstate == "related"


def test_table_full_room_again_after_expiry() -> None:
    net = Net(sysctl={"nf_conntrack_max": 8, "nf_conntrack_buckets": 16})
    _assured_flows(net, 8)
    verdict, _ = forward(net, P.udp(C, S, 60000, 53), t=4.0)
    assert verdict == NF_DROP
    net.advance(3.0 + 120.0)
    assert net.gc() == 8  # the kernel's gc worker runs at least once a minute
    verdict, skb = forward(net, P.udp(C, S, 60000, 53), t=200.0)
    assert verdict == NF_ACCEPT
    assert skb.ctstate == "new"
    assert net.stats["early_drop"] == 0  # reaping expired entries is no early drop
    assert net.count == 1


def test_lookup_reaps_every_expired_entry_of_its_bucket() -> None:
    """Spec §4.4: the lookup walks the packet's bucket and reaps every expired entry it meets
    (not only one with the packet's tuple). With a single bucket, every entry is met."""
    net = Net(sysctl={"nf_conntrack_buckets": 1})
    _unreplied_flows(net, 5, t=0.0)
    net.advance(31.0)
    assert net.count == 5
    forward(net, P.udp(C, S, 20000, 53), t=31.0)
    assert net.count == 1
    assert net.gc() == 0


def test_table_full_of_expired_entries_accepts_new_flow() -> None:
    """Consequence of §4.4 with §3: the lookup frees the expired entries before the new one is
    allocated, so the table is not full (early_drop alone would reap them without counting them
    as freed, and the packet would be dropped)."""
    net = Net(sysctl={"nf_conntrack_buckets": 1, "nf_conntrack_max": 4})
    _unreplied_flows(net, 4, t=0.0)
    before = net.stats
    verdict, skb = forward(net, P.udp(C, S, 20000, 53), t=31.0)
    assert verdict == NF_ACCEPT
    assert skb.ctstate == "new"
    assert stats_delta(before, net.stats) == {}
    assert net.count == 1


def test_unlimited_table() -> None:
    net = Net(sysctl={"nf_conntrack_max": 0, "nf_conntrack_buckets": 256})
    _unreplied_flows(net, 300, t=0.0)
    assert net.count == 300
    assert net.stats["early_drop"] == 0
    assert net.stats["drop"] == 0


def test_chain_too_long() -> None:
    """Spec §5 step 6: confirmation fails once the chain holds more than a random 50..79
    nodes (each entry puts two nodes in the only bucket here)."""
    net = Net(sysctl={"nf_conntrack_max": 0, "nf_conntrack_buckets": 1})
    first_failure = None
    for i in range(60):
        before = net.stats
        verdict, skb = forward(net, P.udp(C, S, 10000 + i, 53), t=0.0)
        if verdict == NF_DROP:
            first_failure = i
            assert stats_delta(before, net.stats) == {"chaintoolong": 1, "insert_failed": 1}
            assert skb.nfct is None
            assert net.count == i  # the unconfirmed entry was freed with the packet
            break
    assert first_failure is not None
    assert 25 <= first_failure <= 41
    assert len(net) == first_failure


def test_max_lowered_below_count() -> None:
    net = Net(sysctl={"nf_conntrack_buckets": 16})
    _unreplied_flows(net, 20, t=0.0)
    net.sysctl["nf_conntrack_max"] = 10
    assert net.count == 20  # nothing is evicted by the write itself
    verdict, _ = forward(net, P.udp(C, S, 7, 53), t=0.0)
    # Early drop frees one bucket's unassured entries (maybe not enough to get under max):
    # the new entry is allocated whenever something was freed.
    assert verdict == NF_ACCEPT
    assert net.stats["early_drop"] >= 1


# --- expiry and printed timeouts (spec §11) ----------------------------------------------------


def test_timeouts_are_printed_truncated() -> None:
    net = Net()
    forward(net, P.udp(C, S, 4060, 53), t=100.0)
    conn = only(net)
    expected = {100.0: 29, 100.5: 29, 100.999: 29, 101.0: 28, 110.9: 19, 129.5: 0, 129.999: 0}
    for t, shown in expected.items():
        net.advance(t)
        assert conn.timeout == shown, t
        assert f" udp      17 {shown} src=" in net.dump()


def test_entries_vanish_after_their_timeout() -> None:
    net = Net()
    forward(net, P.udp(C, S, 4061, 53), t=0.0)
    forward(net, P.esp(C, S, 1), t=0.0)
    forward(net, P.icmp_echo(C, S, 1), t=10.0)
    net.advance(29.999)
    assert len(net) == 3
    net.advance(30.0)  # expired <=> timeout - now <= 0
    assert {c.proto for c in net} == {"icmp", "unknown"}
    net.advance(40.0)
    assert {c.proto for c in net} == {"unknown"}
    net.advance(600.0)
    assert list(net) == []
    assert net.dump() == net.dump("proc") == net.dump("conntrack") == ""
    assert net.count == 0


def test_gc_reaps_expired_entries() -> None:
    net = Net()
    for i in range(5):
        forward(net, P.udp(C, S, 4070 + i, 53), t=0.0)
    forward(net, P.esp(C, S, 9), t=0.0)
    net.advance(31.0)
    assert net.count == 6  # nothing has looked at them yet
    assert net.gc() == 5
    assert net.count == 1
    assert net.gc() == 0
    assert [c.proto for c in net] == ["unknown"]


def test_expired_flow_is_new_again() -> None:
    net = Net()
    _, first = forward(net, P.udp(C, S, 4080, 53), t=0.0)
    old = first.nfct
    del first
    _, again = forward(net, P.udp(C, S, 4080, 53), t=30.0)
    assert again.ctstate == "new"
    assert again.nfct != old
    assert net.count == 1
    assert old is not None and old.status & nfct.IPS_DYING


def test_reply_after_expiry_is_a_new_flow_the_other_way() -> None:
    net = Net()
    forward(net, P.udp(C, S, 4081, 53), t=0.0)
    _, reply = forward(net, P.udp(S, C, 53, 4081), t=31.0)
    assert reply.ctstate == "new"
    conn = only(net)
    assert (conn.orig.src, conn.orig.sport) == (S, 53)


def test_assured_flow_expires_too() -> None:
    net = Net()
    _assured_flows(net, 1)
    conn = only(net)
    assert conn.timeout == 119
    net.advance(3.0 + 119.9)
    assert len(net) == 1
    net.advance(3.0 + 120.0)
    assert list(net) == []


# --- E57, E58: two packets of a new flow in flight at once (spec §5.1) -----------------------


def _race(net: Net, first: bytes, second: bytes) -> tuple[Skb, Skb, int, int]:
    """Both packets pass `in` before either is confirmed (two CPUs in the kernel)."""
    a, b = Skb(first, tstamp=1.0), Skb(second, tstamp=1.0)
    assert nfct.ipv4_conntrack_in(net, a) == NF_ACCEPT
    assert nfct.ipv4_conntrack_in(net, b) == NF_ACCEPT
    assert a.ctinfo == b.ctinfo == nfct.IP_CT_NEW
    assert a.nfct != b.nfct  # two unconfirmed entries
    assert net.count == 2
    return a, b, nfct.ipv4_confirm(net, a), nfct.ipv4_confirm(net, b)


@pytest.mark.parametrize(
    "second",
    [P.udp(C, S, 5353, 53, b"AAAAA"), P.udp(S, C, 53, 5353, b"AAAAA")],
    ids=["same-direction", "reverse"],
)
def test_e57_udp_clash_is_merged(second: bytes) -> None:
    net = Net(sysctl={"nf_conntrack_acct": 1})
    before = net.stats
    a, b, va, vb = _race(net, P.udp(C, S, 5353, 53, b"AAAAA"), second)
    assert (va, vb) == (NF_ACCEPT, NF_ACCEPT)
    assert stats_delta(before, net.stats) == {"clash_resolve": 1}
    assert b.nfct == a.nfct
    assert b.ctinfo == nfct.IP_CT_NEW
    assert net.count == 1
    conn = only(net)
    assert (conn.orig.src, conn.orig.sport) == (C, 5353)
    assert conn.counters == ((2, 66), (0, 0))  # the loser's bytes are merged in
    del a, b
    assert net.count == 1


@pytest.mark.parametrize(
    "make", [lambda: P.gre(C, S), lambda: P.esp(C, S, 7)], ids=["gre", "generic"]
)
def test_e57_clash_allowed_for_gre_and_generic(make: Callable[[], bytes]) -> None:
    net = Net()
    _, _, va, vb = _race(net, make(), make())
    assert (va, vb) == (NF_ACCEPT, NF_ACCEPT)
    assert net.stats["clash_resolve"] == 1
    assert net.count == 1


@pytest.mark.parametrize(
    "make",
    [lambda: P.icmp_echo(C, S, 5), lambda: P.icmp6_echo(C6, S6, 5)],
    ids=["icmp", "icmpv6"],
)
def test_e58_icmp_clash_drops_the_second_packet(make: Callable[[], bytes]) -> None:
    """ICMP/ICMPv6 do not allow clashes: the later packet is dropped (like TCP in E58)."""
    net = Net()
    pkt = make()
    v6 = pkt[0] >> 4 == 6
    hook_in = nfct.ipv6_conntrack_in if v6 else nfct.ipv4_conntrack_in
    confirm = nfct.ipv6_confirm if v6 else nfct.ipv4_confirm
    a, b = Skb(pkt, tstamp=1.0), Skb(make(), tstamp=1.0)
    hook_in(net, a)
    hook_in(net, b)
    before = net.stats
    assert confirm(net, a) == NF_ACCEPT
    assert confirm(net, b) == NF_DROP
    assert stats_delta(before, net.stats) == {"drop": 1, "insert_failed": 1}
    assert b.nfct is None
    assert net.count == 1
    assert only(net) == a.nfct


def test_dropping_one_of_two_racing_packets() -> None:
    net = Net()
    a, b = Skb(P.udp(C, S, 1, 2), tstamp=1.0), Skb(P.udp(C, S, 1, 2), tstamp=1.0)
    nfct.ipv4_conntrack_in(net, a)
    nfct.ipv4_conntrack_in(net, b)
    del a  # filtered before confirm
    assert net.count == 1
    assert nfct.ipv4_confirm(net, b) == NF_ACCEPT
    assert net.stats["clash_resolve"] == 0
    assert len(net) == 1


# --- table resize and per-entry extensions --------------------------------------------------


def test_bucket_resize_keeps_every_entry_findable() -> None:
    net = Net(sysctl={"nf_conntrack_buckets": 64})
    for i in range(50):
        forward(net, P.udp(C, S, 3000 + i, 53), t=1.0)
    for buckets in (7, 1, 1000):
        net.sysctl["nf_conntrack_buckets"] = buckets
        assert net.sysctl["nf_conntrack_buckets"] == buckets
        assert net.count == len(net) == 50
    for i in range(50):
        _, skb = forward(net, P.udp(S, C, 53, 3000 + i), t=2.0)
        assert skb.ctstate == "established", i
    assert net.count == 50
    assert all(c.status & nfct.IPS_SEEN_REPLY for c in net)


def test_accounting_applies_to_entries_created_afterwards() -> None:
    """Spec §15: extensions are chosen at creation from the sysctls of that time."""
    net = Net()
    forward(net, P.udp(C, S, 1111, 53, b"x"), t=1.0)
    net.sysctl["nf_conntrack_acct"] = 1
    net.sysctl["nf_conntrack_timestamp"] = 1
    forward(net, P.udp(C, S, 2222, 53, b"x"), t=1.0)
    forward(net, P.udp(C, S, 1111, 53, b"x"), t=1.0)
    by_port = {c.orig.sport: c for c in net}
    assert by_port[1111].counters is None
    assert "delta-time" not in by_port[1111].line()
    assert by_port[2222].counters == ((1, 29), (0, 0))
    assert "delta-time=0" in by_port[2222].line()
    net.sysctl["nf_conntrack_acct"] = 0
    forward(net, P.udp(C, S, 2222, 53, b"x"), t=1.0)
    assert by_port[2222].counters == ((2, 58), (0, 0))


def test_ipv4_options_and_local_out_icmp() -> None:
    net = Net()
    seg = P.udp_segment(C, S, 4090, 53, b"q")
    _, skb = forward(net, P.ipv4(C, S, P.IPPROTO_UDP, seg, options=b"\x01\x01\x01\x00"), t=0.0)
    assert skb.ctstate == "new"
    assert (only(net).orig.sport, only(net).orig.dport) == (4090, 53)
    local = Skb(P.icmp(C, S, 8, 0, ident=3, checksum=0x1234), tstamp=0.0)
    assert nfct.ipv4_conntrack_local(net, local) == NF_ACCEPT
    assert local.ctstate == "new"  # no checksum check outside PRE_ROUTING


def test_icmp_error_quoting_a_fragment_or_garbage() -> None:
    net = Net()
    forward(net, P.udp(C, S, 4091, 53), t=0.0)
    frag = P.ipv4(C, S, P.IPPROTO_UDP, P.udp_segment(C, S, 4091, 53), frag_off=3)
    _, a = forward(net, P.icmp_error(S, C, 3, 3, frag), t=0.0)
    assert a.ctstate == "invalid"
    _, b = forward(net, P.icmp_error(S, C, 3, 3, P.udp(C6, S6, 4091, 53)), t=0.0)
    assert b.ctstate == "invalid"
    _, c = forward(net, P.icmp_error(S, C, 3, 3, b""), t=0.0)
    assert c.ctstate == "invalid"
    assert net.stats["error"] == 3
    assert net.stats["invalid"] == 0


@pytest.mark.parametrize(("type_", "code"), [(3, 1), (4, 0), (5, 1), (11, 0), (12, 0)])
def test_every_icmp_error_type_is_related(type_: int, code: int) -> None:
    net = Net()
    query = P.udp(C, S, 4100, 53)
    forward(net, query, t=0.0)
    _, err = forward(net, P.icmp_error(S, C, type_, code, query), t=0.0)
    assert err.ctstate == "related"


@pytest.mark.parametrize("type_", [1, 2, 3, 4])
def test_every_icmpv6_error_type_is_related(type_: int) -> None:
    net = Net()
    query = P.udp(C6, S6, 4101, 53)
    forward(net, query, t=0.0)
    _, err = forward(net, P.icmp6_error(S6, C6, type_, 0, query), t=0.0)
    assert err.ctstate == "related"


@pytest.mark.parametrize(
    ("quoted", "quote_len", "related"),
    [
        (P.udp(C, S, 4102, 53), 24, True),  # IP header + the 4 bytes of ports suffice
        (P.udp(C, S, 4102, 53), 23, False),
        (P.icmp_echo(C, S, 9), 28, True),  # inner ICMP needs its 8-byte header
        (P.icmp_echo(C, S, 9), 27, False),
    ],
)
def test_icmp_error_quote_length(quoted: bytes, quote_len: int, related: bool) -> None:
    net = Net()
    forward(net, quoted, t=0.0)
    _, err = forward(net, P.icmp_error(S, C, 3, 3, quoted, quote_len=quote_len), t=0.0)
    assert err.ctstate == ("related" if related else "invalid")
    assert net.stats["error"] == (0 if related else 1)


def test_already_tagged_packet_is_left_alone() -> None:
    """Spec §2 step 1: a packet that already carries its conntrack (loopback's second pass)
    is accepted at once, without touching the entry."""
    net = Net()
    forward(net, P.udp(C, S, 4103, 53), t=0.0)
    _, reply = forward(net, P.udp(S, C, 53, 4103), t=1.0)
    conn = only(net)
    net.advance(5.0)
    before = net.stats
    assert nfct.ipv4_conntrack_in(net, reply) == NF_ACCEPT
    assert reply.ctinfo == nfct.IP_CT_ESTABLISHED_REPLY
    assert nfct.ipv4_confirm(net, reply) == NF_ACCEPT
    assert conn.timeout == 25  # not refreshed at 5 s
    assert net.stats == before
    _, ns = forward(net, P.icmp6_neighbour_solicitation(C6, "ff02::1:ff00:2", S6), t=5.0)
    assert nfct.ipv6_conntrack_in(net, ns) == NF_ACCEPT
    assert ns.ctstate == "untracked"


def test_zero_timeout_entry_expires_at_once() -> None:
    net = Net(sysctl={"nf_conntrack_udp_timeout": 0})
    _, skb = forward(net, P.udp(C, S, 4104, 53), t=1.0)
    assert skb.ctstate == "new"
    assert list(net) == []
    assert net.count == 0


def test_udplite_bad_coverage_is_invalid() -> None:
    net = Net()
    for coverage in (4, 200):
        pkt = bytearray(P.udplite(C, S, 5000, 5001, b"abcdefgh"))
        pkt[24:26] = coverage.to_bytes(2, "big")
        _, skb = forward(net, bytes(pkt), t=0.0)
        assert skb.ctstate == "invalid"
    _, ok = forward(net, P.udplite(C, S, 5000, 5001, b"abcdefgh", coverage=12), t=0.0)
    assert ok.ctstate == "new"
    assert net.stats["invalid"] == 2
