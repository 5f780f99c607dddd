"""TCP tracking through nfct's API, beyond what the TCP scenarios check.

The TCP edge cases of spec §16 (E1–E30, E38, E40–E43, E53, E60–E62, E65 and more) are data in
tests/scenarios/tcp.py: every packet's class (and with it the ctinfo of its direction), the
entry's state, flags and timeout after the packets that matter and at the end, the counters,
the events and, for INVALID packets, the family of the kernel's log message. tests/
test_scenarios.py holds nfct to them exactly; tests/live/test_scenarios.py holds the live
kernel to them. The tests here check what the data does not say, on the same packets: which
entry a packet is attached to, the tuples, and what the passing of time does.
"""

from __future__ import annotations

import pytest

import nfct
from helpers import C6, S6, C, S, only
from nfct import Net, Skb
from scenarios.base import HTTP, Played, play
from scenarios.tcp import ES, SCENARIOS


def check(
    conn: nfct.Conn, state: str, timeout: int, *, assured: bool = False, replied: bool = True
) -> None:
    """State, timeout (as `conntrack -L` prints it: whole seconds, truncated), ASSURED and
    SEEN_REPLY ([UNREPLIED] when not replied)."""
    line = conn.line()
    assert conn.state == state, line
    assert conn.timeout == timeout, line
    assert bool(conn.status & nfct.IPS_ASSURED) == assured, line
    assert bool(conn.status & nfct.IPS_SEEN_REPLY) == replied, line
    assert ("[ASSURED]" in line) == assured, line
    assert ("[UNREPLIED]" in line) == (not replied), line


def entry(played: Played, i: int) -> nfct.Conn:
    """The entry packet i (0-based) was attached to."""
    conn = played.skbs[i].nfct
    assert conn is not None, f"packet {i + 1} has no entry"
    return conn


@pytest.mark.parametrize(
    ("name", "client", "server", "cport"),
    [
        ("E01 three-way handshake with MSS/SACK/WS/TS options", C, S, 40001),
        ("E01 three-way handshake over IPv6", C6, S6, 40101),
    ],
)
def test_e01_handshake_attaches_every_packet_to_the_entry(
    name: str, client: str, server: str, cport: int
) -> None:
    played = play(SCENARIOS[name])
    conn = only(played.net)
    assert all(skb.nfct == conn for skb in played.skbs)
    assert (conn.orig.src, conn.orig.dst, conn.orig.sport, conn.orig.dport) == (
        client,
        server,
        cport,
        HTTP,
    )
    assert (conn.reply.src, conn.reply.dst, conn.reply.sport, conn.reply.dport) == (
        server,
        client,
        HTTP,
        cport,
    )


def test_e14_bad_checksum_not_checked_outside_pre_routing() -> None:
    """Locally generated packets (LOCAL_OUT) are never checksummed: E13's SYN is NEW there."""
    ((syn, t),) = SCENARIOS["E13 SYN with a bad checksum"].build()
    net = Net()
    skb = Skb(syn, tstamp=t)
    assert nfct.ipv4_conntrack_local(net, skb) == nfct.NF_ACCEPT
    assert skb.ctstate == "new"


@pytest.mark.parametrize(
    "name",
    [
        "E19 new SYN from the client in TIME_WAIT reopens",
        "E22 client RST then client SYN reopens",
    ],
)
def test_reopening_makes_a_new_entry(name: str) -> None:
    played = play(SCENARIOS[name])
    old, new = entry(played, 0), entry(played, -1)
    assert new != old
    assert only(played.net) == new
    assert old.status & nfct.IPS_DYING
    assert new.orig.src == C


def test_e23_client_syn_after_a_server_rst_does_not_refresh() -> None:
    played = play(SCENARIOS["E23 server RST then client SYN is ignored"], at={4: 1.5})
    conn = entry(played, 0)
    assert entry(played, 4) == conn == only(played.net)
    check(conn, "CLOSE", 8, assured=True)  # 10 s from the RST, ~1.5 s ago


def test_e43_ignored_ack_in_syn_sent_does_not_refresh() -> None:
    played = play(
        SCENARIOS[
            "E43 SYN_SENT: ACK from the server is ignored; the client's ACK and FIN are invalid"
        ],
        at={1: 1.5},
    )
    conn = entry(played, 0)
    assert entry(played, 1) == conn
    # Ignored (no state change, no refresh), but an accepted reply: SEEN_REPLY is set.
    check(conn, "SYN_SENT", 118)


def test_e53_client_syn_in_established_does_not_refresh() -> None:
    played = play(SCENARIOS["E53 client SYN in ESTABLISHED is ignored"], at={3: 1.5})
    conn = entry(played, 0)
    assert entry(played, 3) == conn
    check(conn, ES, 431998, assured=True)


def test_e65_rst_ack_syn_from_the_client_keep_the_entry() -> None:
    played = play(SCENARIOS["E65 client RST, client ACK, client SYN: not a reopen"])
    conn = entry(played, 0)
    assert entry(played, 5) == conn == only(played.net)
    assert (conn.orig.src, conn.orig.dst) == (C, S)
