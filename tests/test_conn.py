"""Entries (`Conn`) and their tuples (`Tuple`) as live handles (spec §6): what they show, how
they compare, their counters, and the protocols with a tracker seen through them."""

from __future__ import annotations

import struct

import pytest

import nfct
import packets as P
from helpers import C6, S6, C, S, forward
from nfct import (
    NF_ACCEPT,
    Net,
)

# --- Conn is a live handle ------------------------------------------------------------------------


def test_conn_is_live() -> None:
    net = Net()
    _, skb = forward(net, P.udp(C, S, 2001, 53), t=10.0)
    conn = skb.nfct
    assert conn is not None
    assert conn.status & nfct.IPS_SEEN_REPLY == 0
    assert conn.timeout == 29
    net.advance(15.0)
    assert conn.timeout == 24  # the clock moved: less time left
    _, rskb = forward(net, P.udp(S, C, 53, 2001), t=15.0)
    assert rskb.nfct == conn
    assert conn.status & nfct.IPS_SEEN_REPLY  # changed under the same handle
    assert conn.timeout == 29  # refreshed by the reply
    assert "[UNREPLIED]" not in conn.line()
    net.advance(20.5)
    assert conn.timeout == 24
    assert conn.line() == (
        "ipv4     2 udp      17 24 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1"
    )


def test_conn_equality_and_hash() -> None:
    net = Net()
    _, a = forward(net, P.udp(C, S, 2001, 53), t=1.0)
    _, b = forward(net, P.udp(S, C, 53, 2001), t=1.0)
    _, c = forward(net, P.udp(C, S, 2002, 53), t=1.0)
    ca, cb, cc = a.nfct, b.nfct, c.nfct
    assert ca is not None and cb is not None and cc is not None
    assert ca == cb
    assert hash(ca) == hash(cb)
    assert ca != cc
    assert ca != "not a conn"
    assert len({ca, cb, cc}) == 2
    assert set(net) == {ca, cc}
    # Tuples are values.
    assert ca.orig == cb.orig
    assert hash(ca.orig) == hash(cb.orig)
    assert ca.orig != ca.reply
    assert ca.orig != cc.orig


def test_conn_counters_with_accounting() -> None:
    """Spec §15: bytes = L3 length (20 + 8 + 5 = 33 for a 5-byte UDP payload)."""
    net = Net(sysctl={"nf_conntrack_acct": 1})
    _, skb = forward(net, P.udp(C, S, 6001, 53, b"12345"), t=1.0)
    forward(net, P.udp(S, C, 53, 6001, b"1234567890"), t=1.1)
    conn = skb.nfct
    assert conn is not None
    assert conn.counters == ((1, 33), (1, 38))
    forward(net, P.udp(C, S, 6001, 53, b"1"), t=1.2)
    assert conn.counters == ((2, 33 + 29), (1, 38))


def test_icmp_tuple_fields() -> None:
    net = Net()
    _, skb = forward(net, P.icmp_echo(C, S, 4660), t=1.0)
    conn = skb.nfct
    assert conn is not None
    assert conn.proto == "icmp"
    o, r = conn.orig, conn.reply
    assert (o.type, o.code, o.id) == (8, 0, 4660)
    assert (r.type, r.code, r.id) == (0, 0, 4660)
    assert o.sport is None and o.dport is None
    assert o.protonum == 1


def test_repr_does_not_fail() -> None:
    net = Net()
    _, skb = forward(net, P.udp(C, S, 1000, 53))
    conn = skb.nfct
    assert conn is not None
    for obj in (net, skb, conn, conn.orig, net.sysctl):
        assert isinstance(repr(obj), str)


# --- TCP and SCTP are tracked ---------------------------------------------------------------------


def _tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    """A TCP segment without options or data (window 65535), correct checksum, in IPv4/IPv6."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    csum = P.l4_checksum(src, dst, P.IPPROTO_TCP, seg)
    return P.ip(src, dst, P.IPPROTO_TCP, seg[:16] + struct.pack("!H", csum) + seg[18:])


@pytest.mark.parametrize(("c", "s"), [(C, S), (C6, S6)])
def test_tcp_handshake_is_tracked(c: str, s: str) -> None:
    """TCP is tracked (spec §7): SYN, SYN-ACK, ACK give NEW, ESTABLISHED_REPLY, ESTABLISHED
    and one ESTABLISHED [ASSURED] entry with the established timeout; no counter moves."""
    net = Net()
    syn, synack, ack = 0x02, 0x12, 0x10
    handshake = (
        (_tcp(c, s, 2000, 80, 1000, 0, syn), "new", nfct.IP_CT_NEW),
        (_tcp(s, c, 80, 2000, 5000, 1001, synack), "established", nfct.IP_CT_ESTABLISHED_REPLY),
        (_tcp(c, s, 2000, 80, 1001, 5001, ack), "established", nfct.IP_CT_ESTABLISHED),
    )
    for pkt, ctstate, ctinfo in handshake:
        verdict, skb = forward(net, pkt, t=1.0)
        assert verdict == NF_ACCEPT
        assert (skb.ctstate, skb.ctinfo, skb.invalid_reason) == (ctstate, ctinfo, None)
        assert skb.nfct is not None
    (conn,) = list(net)
    assert conn.proto == "tcp"
    assert conn.state == "ESTABLISHED"
    assert conn.status & nfct.IPS_ASSURED
    assert conn.status & nfct.IPS_SEEN_REPLY
    assert (conn.orig.sport, conn.orig.dport, conn.reply.sport, conn.reply.dport) == (
        2000,
        80,
        80,
        2000,
    )
    assert 431_998 <= conn.timeout <= 432_000
    (line,) = net.dump("conntrack").splitlines()
    assert line.startswith("tcp      6 ")
    assert " ESTABLISHED src=" in line
    assert "[ASSURED]" in line
    assert all(v == 0 for v in net.stats.values())


def test_sctp_is_tracked() -> None:
    """SCTP has a tracker (spec §10.3; tests/test_sctp.py). An all-zero SCTP packet (wrong
    CRC32c, a zero-length chunk) is INVALID: no entry, counted in `invalid`, with checksum
    verification on and off."""
    sctp = P.ip(C, S, 132, b"\0" * 16)
    sctp6 = P.ip(C6, S6, 132, b"\0" * 16)
    for checksum, reason in ((1, "nf_ct_sctp: bad CRC"), (0, "nf_ct_sctp: do_basic_checks failed")):
        net = Net({"nf_conntrack_checksum": checksum})
        for pkt in (sctp, sctp6):
            verdict, skb = forward(net, pkt, t=1.0)
            assert verdict == NF_ACCEPT
            assert skb.ctstate == "invalid"
            assert skb.invalid_reason is not None and skb.invalid_reason.startswith(reason)
            assert skb.nfct is None
        assert net.count == 0
        assert net.stats["invalid"] == 2
