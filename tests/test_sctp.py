"""SCTP tracking (spec §10.3, `nf_conntrack_proto_sctp.c`) through the Python API, beyond what
the SCTP scenarios (tests/scenarios/sctp.py: every packet's class, the table at the end and the
counters, as the live kernel has them) check: the state and the time left after every packet
of an association's setup and shutdown, INIT retransmission, ABORT, verification tags, the
chunk rules, what may open an entry, the CRC32c check and HEARTBEAT, and the reasons nfct gives
for INVALID packets. The packet builders are tests/scenarios/sctp.py's."""

from __future__ import annotations

import pytest

import helpers
import nfct
from helpers import C6, S6, C, S, only
from nfct import NF_ACCEPT, Net, Skb
from scenarios.sctp import (
    ABORT,
    COOKIE_ACK,
    COOKIE_ECHO,
    CP,
    DATA,
    FLAG_T,
    HEARTBEAT,
    HEARTBEAT_ACK,
    INIT,
    SACK,
    SHUTDOWN_ACK,
    SHUTDOWN_COMPLETE,
    SP,
    TAG_C,
    TAG_S,
    Assoc,
    chunk,
    crc32c,
    heartbeat_info,
    init_body,
    sctp,
)

# --- helpers -------------------------------------------------------------------------------------


def send(net: Net, pkt: bytes, t: float = 1.0) -> Skb:
    """The packet through a forwarding router (helpers.forward), which accepts it."""
    verdict, skb = helpers.forward(net, pkt, t)
    assert verdict == NF_ACCEPT, skb.invalid_reason
    return skb


def run(net: Net, pkts: list[bytes], t: float = 1.0) -> list[str]:
    return [send(net, p, t).ctstate for p in pkts]


def ttl(net: Net) -> int:
    """The single entry's time left in whole seconds. `Conn.timeout` is what a listing taken an
    instant after the last packet shows (one less than a fresh timeout), hence the + 1."""
    return only(net).timeout + 1


# --- tests ---------------------------------------------------------------------------------------


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize(("c", "s"), [(C, S), (C6, S6)])
def test_association_setup_and_shutdown(c: str, s: str) -> None:
    a, net = Assoc(c, s), Net()
    steps = [
        (a.init(), "new", "CLOSED", 10),
        (a.init_ack(), "established", "COOKIE_WAIT", 3),
        (a.cookie_echo(), "established", "COOKIE_ECHOED", 3),
        (a.cookie_ack(), "established", "ESTABLISHED", 210),
        (a.data(), "established", "ESTABLISHED", 210),
        (a.sack(), "established", "ESTABLISHED", 210),
    ]
    shutdown = a.shutdown()
    steps += [
        (shutdown[0], "established", "SHUTDOWN_SENT", 3),
        (shutdown[1], "established", "SHUTDOWN_ACK_SENT", 3),
        (shutdown[2], "established", "CLOSED", 10),
    ]
    for pkt, ctstate, state, timeout in steps:
        skb = send(net, pkt)
        assert (skb.ctstate, skb.invalid_reason) == (ctstate, None)
        conn = only(net)
        assert conn.proto == "sctp"
        assert (conn.state, ttl(net)) == (state, timeout)
        assert bool(conn.status & nfct.IPS_ASSURED) == (
            state not in ("CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED") or pkt in shutdown
        )
    assert all(
        v == 0 for k, v in net.stats.items() if k not in ("found", "insert", "search_restart")
    )
    line = only(net).line()
    assert " sctp " in line and " CLOSED " in line and "[ASSURED]" in line


def test_init_retransmission_does_not_refresh() -> None:
    a, net = Assoc(), Net()
    assert run(net, [a.init()], t=1.0) == ["new"]
    # Same INIT 4 s later (still unreplied: NEW), and one with a new tag: no refresh.
    assert send(net, a.init(), t=5.0).ctstate == "new"
    assert send(net, a.init(tag=0x5555), t=6.0).ctstate == "new"
    net.advance(6.0)
    conn = only(net)
    assert conn.state == "CLOSED"
    assert ttl(net) == 5


def test_abort_closes_and_checks_its_tag() -> None:
    a, net = Assoc(), Net()
    run(net, a.handshake())
    # ABORT from the client must carry the server's tag (no T flag) ...
    skb = send(net, a.out(TAG_C, chunk(ABORT)))
    assert skb.ctstate == "invalid" and "ABORT" in (skb.invalid_reason or "")
    assert only(net).state == "ESTABLISHED"
    # ... or the client's own with the T flag.
    assert send(net, a.out(TAG_C, chunk(ABORT, flags=FLAG_T))).ctstate == "established"
    assert (only(net).state, ttl(net)) == ("CLOSED", 10)
    assert net.stats["invalid"] == 1


def test_bad_vtag_is_invalid() -> None:
    a, net = Assoc(), Net()
    run(net, a.handshake())
    skb = send(net, a.data(vtag=0xDEAD))
    assert skb.ctstate == "invalid"
    assert skb.invalid_reason == "nf_ct_sctp: verification tag check failed"
    assert send(net, a.data()).ctstate == "established"
    assert net.stats["invalid"] == 1


def test_init_with_nonzero_vtag() -> None:
    a, net = Assoc(), Net()
    skb = send(net, a.init(vtag=7))
    assert skb.ctstate == "invalid" and skb.invalid_reason is not None
    assert skb.invalid_reason.startswith("nf_ct_sctp: ")
    assert net.count == 0
    run(net, a.handshake())
    assert send(net, a.init(vtag=7)).ctstate == "invalid"
    assert only(net).state == "ESTABLISHED"
    assert net.stats["invalid"] == 2


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([chunk(INIT, init_body(TAG_C)), chunk(DATA, b"x" * 12)], id="init-not-alone"),
        pytest.param([chunk(DATA, b"x" * 12), chunk(INIT, init_body(TAG_C))], id="init-second"),
        pytest.param([chunk(DATA, b"x" * 12), chunk(COOKIE_ECHO, b"c")], id="cookie-echo-second"),
        pytest.param([chunk(HEARTBEAT, heartbeat_info(), length=0)], id="zero-length"),
        pytest.param([], id="no-chunks"),
        pytest.param([chunk(DATA, b"x" * 12)], id="data-first"),
        pytest.param([chunk(COOKIE_ACK)], id="cookie-ack-first"),
        pytest.param([chunk(ABORT)], id="abort-first"),
        pytest.param([chunk(SHUTDOWN_COMPLETE)], id="shutdown-complete-first"),
        pytest.param([chunk(INIT, b"\0" * 8)], id="truncated-init"),
    ],
)
def test_invalid_first_packets(chunks: list[bytes]) -> None:
    net = Net()
    vtag = 0 if chunks and chunks[0][0] == INIT else TAG_S
    skb = send(net, sctp(C, S, CP, SP, vtag, *chunks))
    assert skb.ctstate == "invalid"
    assert (skb.invalid_reason or "").startswith("nf_ct_sctp: ")
    assert net.count == 0
    assert net.stats["invalid"] == 1


def test_invalid_chunk_combination_on_an_entry() -> None:
    a, net = Assoc(), Net()
    run(net, a.handshake())
    skb = send(net, a.out(TAG_S, chunk(SACK, b"\0" * 12), chunk(COOKIE_ACK)))
    assert skb.ctstate == "invalid"
    assert "do_basic_checks" in (skb.invalid_reason or "")


@pytest.mark.parametrize("checksum", [1, 0])
def test_bad_crc(checksum: int) -> None:
    a, net = Assoc(), Net({"nf_conntrack_checksum": checksum})
    skb = send(net, a.out(0, chunk(INIT, init_body(TAG_C)), crc=0x12345678))
    if checksum:
        assert (skb.ctstate, skb.invalid_reason) == ("invalid", "nf_ct_sctp: bad CRC")
        assert net.count == 0
    else:
        assert skb.ctstate == "new"
        assert only(net).state == "CLOSED"


def test_heartbeat_opens_and_heartbeat_ack_establishes() -> None:
    a, net = Assoc(), Net()
    assert send(net, a.out(TAG_S, chunk(HEARTBEAT, heartbeat_info()))).ctstate == "new"
    assert (only(net).state, ttl(net)) == ("HEARTBEAT_SENT", 30)
    assert send(net, a.back(TAG_C, chunk(HEARTBEAT_ACK, heartbeat_info()))).ctstate == "established"
    conn = only(net)
    assert (conn.state, ttl(net)) == ("ESTABLISHED", 210)
    assert conn.status & nfct.IPS_ASSURED
    # Now DATA must carry the learned tags.
    assert send(net, a.data()).ctstate == "established"
    assert send(net, a.data(vtag=1)).ctstate == "invalid"


def test_heartbeat_on_a_secondary_path() -> None:
    """A HEARTBEAT with an unknown tag passes once without refreshing; the HEARTBEAT_ACK from
    the other side then replaces the tags."""
    a, net = Assoc(), Net()
    run(net, a.handshake(), t=1.0)
    assert (
        send(net, a.out(0x7777, chunk(HEARTBEAT, heartbeat_info())), t=51.0).ctstate
        == "established"
    )
    net.advance(51.0)
    assert ttl(net) == 160
    assert (
        send(net, a.back(0x8888, chunk(HEARTBEAT_ACK, heartbeat_info())), t=52.0).ctstate
        == "established"
    )
    net.advance(52.0)
    assert ttl(net) == 210
    # The reply direction now expects 0x8888.
    assert send(net, a.back(TAG_C, chunk(SACK, b"\0" * 12)), t=53.0).ctstate == "invalid"
    assert send(net, a.back(0x8888, chunk(SACK, b"\0" * 12)), t=53.0).ctstate == "established"


def test_heartbeat_ack_with_foreign_tag_is_invalid() -> None:
    a, net = Assoc(), Net()
    run(net, a.handshake())
    assert send(net, a.back(0x9999, chunk(HEARTBEAT_ACK, heartbeat_info()))).ctstate == "invalid"


def test_shutdown_ack_out_of_the_blue() -> None:
    a, net = Assoc(), Net()
    assert send(net, a.out(0x4242, chunk(SHUTDOWN_ACK))).ctstate == "new"
    assert (only(net).state, ttl(net)) == ("SHUTDOWN_ACK_SENT", 3)
    # The kernel files the OOTB SHUTDOWN_ACK's tag as the reply direction's own tag: the
    # answering SHUTDOWN_COMPLETE passes with that tag and no T flag (with T it would have to
    # carry the original direction's tag, still 0).
    assert send(net, a.back(0x4242, chunk(SHUTDOWN_COMPLETE, flags=FLAG_T))).ctstate == "invalid"
    assert send(net, a.back(0x4242, chunk(SHUTDOWN_COMPLETE))).ctstate == "established"
    assert only(net).state == "CLOSED"


def test_reply_init_on_heartbeat_entry_is_an_invalid_transition() -> None:
    a, net = Assoc(), Net()
    send(net, a.out(TAG_S, chunk(HEARTBEAT, heartbeat_info())))
    skb = send(net, a.back(0, chunk(INIT, init_body(TAG_S))))
    assert (skb.ctstate, skb.invalid_reason) == ("invalid", "nf_ct_sctp: invalid state transition")


def test_sctp_timeouts_follow_the_sysctls() -> None:
    a = Assoc()
    net = Net(
        {"nf_conntrack_sctp_timeout_established": 1000, "nf_conntrack_sctp_timeout_closed": 20}
    )
    send(net, a.init())
    assert ttl(net) == 20
    run(net, a.handshake()[1:])
    assert (only(net).state, ttl(net)) == ("ESTABLISHED", 1000)
