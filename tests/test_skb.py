"""Packets (`Skb`) through the hook functions (spec §2, §3, §5): what an `Skb` takes, the
create-then-confirm path, ctinfo, the table's clock, and malformed packets that must never
raise."""

from __future__ import annotations

import gc
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nfct
import packets as P
from helpers import C6, S6, C, S, forward
from nfct import (
    NF_ACCEPT,
    NF_DROP,
    Conn,
    Net,
    Skb,
    ipv4_confirm,
    ipv4_conntrack_in,
    ipv4_conntrack_local,
    ipv6_confirm,
    ipv6_conntrack_in,
    ipv6_conntrack_local,
)

# --- Skb ------------------------------------------------------------------------------------------


def test_skb_data_and_tstamp() -> None:
    pkt = P.udp(C, S, 1000, 53, b"x")
    skb = Skb(pkt, tstamp=12.5)
    assert skb.data == pkt
    assert isinstance(skb.data, bytes)
    assert skb.tstamp == 12.5
    assert Skb(pkt).tstamp == 0.0
    assert skb.nfct is None
    assert skb.ctinfo is None
    assert skb.invalid_reason is None
    for buf in (bytearray(pkt), memoryview(pkt)):
        other = Skb(buf, tstamp=1)
        assert other.data == pkt
        assert isinstance(other.data, bytes)


@pytest.mark.parametrize("data", ["a string", 42, None, [1, 2, 3], 1.5, object()])
def test_skb_rejects_non_bytes(data: object) -> None:
    with pytest.raises(nfct.NfctError) as err:
        Skb(data)  # type: ignore[arg-type]
    assert isinstance(err.value, TypeError)


@pytest.mark.parametrize("tstamp", [-1.0, math.nan, math.inf])
def test_skb_rejects_bad_tstamp(tstamp: float) -> None:
    with pytest.raises(nfct.NfctError):
        Skb(P.udp(C, S, 1, 2), tstamp=tstamp)


def test_skb_copies_mutable_buffer() -> None:
    buf = bytearray(P.udp(C, S, 1000, 53))
    skb = Skb(buf)
    buf[0] = 0
    assert skb.data[0] == 0x45
    net = Net()
    assert ipv4_conntrack_in(net, skb) == NF_ACCEPT
    assert skb.ctstate == "new"


def test_clock() -> None:
    net = Net()
    net.advance(5)
    assert net.now == 5.0
    net.advance(3)  # never back
    assert net.now == 5.0
    forward(net, P.udp(C, S, 1000, 53), t=7.25)
    assert net.now == 7.25
    # A packet stamped in the past is processed at the table's time.
    forward(net, P.udp(C, S, 1001, 53), t=1.0)
    assert net.now == 7.25
    with pytest.raises(nfct.NfctError):
        net.advance(-1)
    with pytest.raises(nfct.NfctError):
        net.advance(math.nan)


# --- create, then confirm -------------------------------------------------------------------------


def test_create_then_confirm() -> None:
    net = Net()
    skb = Skb(P.udp(C, S, 2001, 53, b"query"), tstamp=1.0)
    assert ipv4_conntrack_in(net, skb) == NF_ACCEPT
    # Unconfirmed: counted, attached to the packet, not in the table.
    assert list(net) == []
    assert len(net) == 0
    assert net.dump() == ""
    assert net.count == 1
    conn = skb.nfct
    assert isinstance(conn, Conn)
    assert conn.status & nfct.IPS_CONFIRMED == 0
    assert skb.ctinfo == nfct.IP_CT_NEW
    assert skb.ctstate == "new"
    assert ipv4_confirm(net, skb) == NF_ACCEPT
    listed = list(net)
    assert listed == [conn]
    assert conn.status & nfct.IPS_CONFIRMED
    assert net.count == 1
    orig, reply = conn.orig, conn.reply
    assert (orig.src, orig.dst, orig.sport, orig.dport) == (C, S, 2001, 53)
    assert (reply.src, reply.dst, reply.sport, reply.dport) == (S, C, 53, 2001)
    assert orig.l3num == reply.l3num == 2
    assert orig.protonum == reply.protonum == 17
    assert orig.type is None and orig.code is None and orig.id is None
    assert conn.proto == "udp"
    assert conn.state is None
    assert conn.mark == 0
    assert conn.zone == 0
    assert conn.counters is None
    assert conn.timeout == 29
    # Confirming again changes nothing.
    assert ipv4_confirm(net, skb) == NF_ACCEPT
    assert net.count == 1


def test_drop_before_confirm_leaves_nothing() -> None:
    net = Net()
    skb = Skb(P.udp(C, S, 2001, 53), tstamp=1.0)
    assert ipv4_conntrack_in(net, skb) == NF_ACCEPT
    assert net.count == 1
    del skb
    gc.collect()
    assert net.count == 0
    assert list(net) == []
    assert net.dump("proc") == ""
    # The same flow is new again afterwards.
    _, skb2 = forward(net, P.udp(C, S, 2001, 53), t=2.0)
    assert skb2.ctstate == "new"
    assert net.count == 1


def test_handle_keeps_unconfirmed_entry_allocated() -> None:
    net = Net()
    skb = Skb(P.udp(C, S, 2001, 53), tstamp=1.0)
    ipv4_conntrack_in(net, skb)
    conn = skb.nfct
    del skb
    gc.collect()
    assert net.count == 1  # the handle still references it
    assert list(net) == []
    assert conn is not None and conn.status & nfct.IPS_CONFIRMED == 0
    del conn
    gc.collect()
    assert net.count == 0


def test_skb_of_other_net_raises() -> None:
    """Issue #17: a packet carrying one table's entry did nothing in another, silently; the
    hooks now say so (and leave both tables as they were)."""
    net1, net2 = Net(), Net()
    skb = Skb(P.udp(C, S, 2001, 53), tstamp=1.0)
    assert ipv4_conntrack_in(net1, skb) == NF_ACCEPT
    with pytest.raises(nfct.NfctValueError, match="another Net"):
        ipv4_conntrack_in(net2, skb)
    with pytest.raises(nfct.NfctValueError, match="another Net"):
        ipv4_confirm(net2, skb)
    assert net2.count == 0
    assert ipv4_confirm(net1, skb) == NF_ACCEPT
    assert len(net1) == 1 and len(net2) == 0


def test_local_out_hook_skips_checksum() -> None:
    """Spec §8: checksums are verified at PRE_ROUTING only."""
    net = Net()
    bad = P.udp(C, S, 2001, 53, b"x", checksum=0x1234)
    skb = Skb(bad, tstamp=1.0)
    assert ipv4_conntrack_local(net, skb) == NF_ACCEPT
    assert skb.ctstate == "new"
    skb6 = Skb(P.udp(C6, S6, 2001, 53, b"x", checksum=0x1234), tstamp=1.0)
    assert ipv6_conntrack_local(net, skb6) == NF_ACCEPT
    assert skb6.ctstate == "new"
    skb_in = Skb(bad, tstamp=1.0)
    assert ipv4_conntrack_in(Net(), skb_in) == NF_ACCEPT
    assert skb_in.ctstate == "invalid"


# --- ctinfo ---------------------------------------------------------------------------------------


def test_ctinfo_new_reply_established_related() -> None:
    net = Net()
    _, first = forward(net, P.udp(C, S, 2001, 53), t=1.0)
    assert first.ctinfo == nfct.IP_CT_NEW
    assert first.ctstate == "new"
    _, second = forward(net, P.udp(C, S, 2001, 53), t=1.1)
    assert second.ctinfo == nfct.IP_CT_NEW  # no reply yet: still NEW (spec §2 step 4.5)
    _, reply = forward(net, P.udp(S, C, 53, 2001), t=1.2)
    assert reply.ctinfo == nfct.IP_CT_ESTABLISHED_REPLY
    assert reply.ctstate == "established"
    _, again = forward(net, P.udp(C, S, 2001, 53), t=1.3)
    assert again.ctinfo == nfct.IP_CT_ESTABLISHED
    assert again.ctstate == "established"
    # ICMP port unreachable from S about the query: quotes C->S, so the reply direction.
    query = P.udp(C, S, 2001, 53)
    _, err = forward(net, P.icmp_error(S, C, 3, 3, query), t=1.4)
    assert err.ctinfo == nfct.IP_CT_RELATED_REPLY
    assert err.ctstate == "related"
    assert err.nfct == first.nfct
    # An error from the client side about a reply packet: the original direction.
    answer = P.udp(S, C, 53, 2001)
    _, err2 = forward(net, P.icmp_error(C, S, 3, 3, answer), t=1.5)
    assert err2.ctinfo == nfct.IP_CT_RELATED
    assert err2.ctstate == "related"


def test_ctinfo_invalid_and_untracked() -> None:
    net = Net()
    _, bad = forward(net, P.udp(C, S, 2001, 53, checksum=0xBEEF), t=1.0)
    assert bad.ctinfo is None
    assert bad.nfct is None
    assert bad.ctstate == "invalid"
    assert bad.invalid_reason
    _, ns = forward(net, P.icmp6_neighbour_solicitation("fe80::1", "ff02::1:ff00:2", S6), t=1.0)
    assert ns.ctinfo == nfct.IP_CT_UNTRACKED
    assert ns.nfct is None
    assert ns.ctstate == "untracked"
    assert ns.invalid_reason is None


# --- malformed packets never raise ----------------------------------------------------------------


VALID_V4_HEADER = P.ipv4(C, S, 17, b"")[:20]


VALID_V6_HEADER = P.ipv6(C6, S6, 17, b"")[:40]


def _run_everything(pkt: bytes) -> None:
    net = Net(sysctl={"nf_conntrack_buckets": 64, "nf_conntrack_max": 8})
    for hook_in, confirm in (
        (ipv4_conntrack_in, ipv4_confirm),
        (ipv6_conntrack_in, ipv6_confirm),
        (ipv4_conntrack_local, ipv4_confirm),
        (ipv6_conntrack_local, ipv6_confirm),
    ):
        skb = Skb(pkt, tstamp=1.0)
        verdict = hook_in(net, skb)
        assert verdict in (NF_ACCEPT, NF_DROP)
        assert skb.ctstate in {
            "new",
            "established",
            "related",
            "invalid",
            "untracked",
        }
        verdict = confirm(net, skb)
        assert verdict in (NF_ACCEPT, NF_DROP)
        del skb
    assert net.count == len(list(net))
    net.dump("proc")
    net.dump("conntrack")
    net.advance(10_000)
    net.gc()
    assert net.count == 0


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes(data: bytes) -> None:
    _run_everything(data)


@settings(max_examples=300)
@given(
    version=st.sampled_from([4, 6]),
    proto=st.sampled_from([0, 1, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 132, 136, 255]),
    tail=st.binary(max_size=80),
)
def test_fuzz_valid_ip_header_random_l4(version: int, proto: int, tail: bytes) -> None:
    """A sane IP header (so the L4 parsers are reached) followed by random bytes."""
    if version == 4:
        pkt = P.ipv4(C, S, proto, tail)
    else:
        pkt = P.ipv6(C6, S6, proto, tail)
    _run_everything(pkt)


@settings(max_examples=200)
@given(quoted=st.binary(max_size=80), v6=st.booleans(), type_=st.sampled_from([1, 3, 4, 11, 12]))
def test_fuzz_icmp_errors_quoting_garbage(quoted: bytes, v6: bool, type_: int) -> None:
    """ICMP errors whose quoted packet is random: the related lookup must cope."""
    if v6:
        pkt = P.icmp6_error(S6, C6, min(type_, 4), 0, VALID_V6_HEADER[:8] + quoted)
    else:
        pkt = P.icmp_error(S, C, type_, 3, VALID_V4_HEADER + quoted, quote_len=200)
    _run_everything(pkt)
