"""SCTP (spec §10.3) with the live kernel as the judge: crafted SCTP packet sequences (correct
CRC32c unless a test breaks it on purpose) go through the running kernel's conntrack and
through nfct, and both must agree on every packet's ct state class, on the final table (state
word, flags, timeouts) and on the statistics, with nf_conntrack_checksum on and off.

Builders: tests/test_sctp.py. Addresses exist only inside the harness's namespace."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

import packets as P
from kernel.test_differential import T0, Seq, both, timed
from test_sctp import (
    ABORT,
    COOKIE_ACK,
    COOKIE_ECHO,
    DATA,
    FLAG_T,
    HEARTBEAT,
    HEARTBEAT_ACK,
    INIT,
    INIT_ACK,
    SACK,
    SHUTDOWN_ACK,
    SHUTDOWN_COMPLETE,
    TAG_C,
    TAG_S,
    Assoc,
    chunk,
    heartbeat_info,
    init_body,
    sctp_segment,
)

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"
A = Assoc(C, S)
A6 = Assoc(C6, S6)
B = Assoc(C, S, 6000, 6001)  # a second association beside A


def _hs(a: Assoc) -> list[bytes]:
    return a.handshake()


SCENARIOS: dict[str, Callable[[], Seq]] = {
    "INIT only": lambda: timed(A.init()),
    "INIT, INIT_ACK": lambda: timed(*_hs(A)[:2]),
    "INIT, INIT_ACK, COOKIE_ECHO": lambda: timed(*_hs(A)[:3]),
    "handshake": lambda: timed(*_hs(A)),
    "handshake IPv6": lambda: timed(*_hs(A6), A6.data(), A6.sack()),
    "handshake, data, sack": lambda: timed(*_hs(A), A.data(), A.sack(), A.data()),
    "shutdown": lambda: timed(*_hs(A), A.data(), A.sack(), *A.shutdown()),
    "shutdown sent": lambda: timed(*_hs(A), A.shutdown()[0]),
    "shutdown ack sent": lambda: timed(*_hs(A), *A.shutdown()[:2]),
    "shutdown from the server": lambda: timed(
        *_hs(A),
        A.back(TAG_C, chunk(7, struct.pack("!I", 1))),
        A.out(TAG_S, chunk(SHUTDOWN_ACK)),
        A.back(TAG_C, chunk(SHUTDOWN_COMPLETE)),
    ),
    "INIT retransmitted": lambda: timed(A.init(), A.init(), A.init(tag=0x5555)),
    "INIT retransmitted after INIT_ACK": lambda: timed(*_hs(A)[:2], A.init()),
    "ABORT from the client": lambda: timed(*_hs(A), A.out(TAG_S, chunk(ABORT))),
    "ABORT with T flag": lambda: timed(*_hs(A), A.out(TAG_C, chunk(ABORT, flags=FLAG_T))),
    "ABORT with a wrong tag": lambda: timed(*_hs(A), A.out(TAG_C, chunk(ABORT)), A.data()),
    "ABORT from the server during setup": lambda: timed(*_hs(A)[:2], A.back(TAG_C, chunk(ABORT))),
    "bad vtag": lambda: timed(*_hs(A), A.data(vtag=0xDEAD), A.back(TAG_S, chunk(SACK, b"\0" * 12))),
    "INIT with non-zero vtag first": lambda: timed(A.init(vtag=9)),
    "INIT with non-zero vtag on an entry": lambda: timed(*_hs(A), A.init(vtag=TAG_S)),
    "INIT and DATA": lambda: timed(A.out(0, chunk(INIT, init_body(TAG_C)), chunk(DATA, b"d" * 16))),
    "DATA then COOKIE_ECHO": lambda: timed(
        *_hs(A)[:2], A.out(TAG_S, chunk(DATA, b"d" * 16), chunk(COOKIE_ECHO, b"cookie!!"))
    ),
    "COOKIE_ECHO and DATA": lambda: timed(
        *_hs(A)[:2],
        A.out(TAG_S, chunk(COOKIE_ECHO, b"cookie!!"), chunk(DATA, b"d" * 16)),
        A.cookie_ack(),
    ),
    "SACK then COOKIE_ACK": lambda: timed(
        *_hs(A)[:3], A.back(TAG_C, chunk(SACK, b"\0" * 12), chunk(COOKIE_ACK))
    ),
    "SHUTDOWN_COMPLETE not alone": lambda: timed(
        *_hs(A), A.out(TAG_S, chunk(SACK, b"\0" * 12), chunk(SHUTDOWN_COMPLETE))
    ),
    "zero-length chunk": lambda: timed(*_hs(A), A.out(TAG_S, chunk(DATA, b"d" * 16, length=0))),
    "no chunks": lambda: timed(A.out(TAG_S), *_hs(A), A.out(TAG_S)),
    "short SCTP header": lambda: timed(
        P.ip(C, S, 132, sctp_segment(5000, 2905, 0, chunk(INIT, init_body(TAG_C)))[:8])
    ),
    "truncated INIT": lambda: timed(A.out(0, chunk(INIT, b"\0" * 8))),
    "DATA first": lambda: timed(A.data()),
    "first packet COOKIE_ACK": lambda: timed(A.out(TAG_S, chunk(COOKIE_ACK))),
    "first packet ABORT": lambda: timed(
        A.out(TAG_S, chunk(ABORT)), A.out(0, chunk(ABORT, flags=FLAG_T))
    ),
    "first packet SHUTDOWN_COMPLETE": lambda: timed(A.out(TAG_S, chunk(SHUTDOWN_COMPLETE))),
    "first packet COOKIE_ECHO": lambda: timed(A.cookie_echo(), A.cookie_ack()),
    "first packet INIT_ACK": lambda: timed(A.back(TAG_C, chunk(INIT_ACK, init_body(TAG_S)))),
    "first packet SHUTDOWN_ACK": lambda: timed(
        A.out(0x4242, chunk(SHUTDOWN_ACK)), A.back(0x4242, chunk(SHUTDOWN_COMPLETE))
    ),
    "SHUTDOWN_ACK then T-flag SHUTDOWN_COMPLETE": lambda: timed(
        A.out(0x4242, chunk(SHUTDOWN_ACK)), A.back(0x4242, chunk(SHUTDOWN_COMPLETE, flags=FLAG_T))
    ),
    "bad CRC INIT": lambda: timed(A.out(0, chunk(INIT, init_body(TAG_C)), crc=0x1234), B.init()),
    "bad CRC on an entry": lambda: timed(
        *_hs(A), A.data()[:-4] + b"XXXX", A.out(TAG_S, chunk(ABORT), crc=7)
    ),
    "HEARTBEAT first": lambda: timed(A.out(TAG_S, chunk(HEARTBEAT, heartbeat_info()))),
    "HEARTBEAT, HEARTBEAT_ACK": lambda: timed(
        A.out(TAG_S, chunk(HEARTBEAT, heartbeat_info())),
        A.back(TAG_C, chunk(HEARTBEAT_ACK, heartbeat_info())),
        A.data(),
        A.data(vtag=1),
    ),
    "HEARTBEAT in both directions on an association": lambda: timed(
        *_hs(A),
        A.out(TAG_S, chunk(HEARTBEAT, heartbeat_info())),
        A.back(TAG_C, chunk(HEARTBEAT_ACK, heartbeat_info())),
        A.back(TAG_C, chunk(HEARTBEAT, heartbeat_info())),
        A.out(TAG_S, chunk(HEARTBEAT_ACK, heartbeat_info())),
    ),
    "HEARTBEAT on a secondary path": lambda: timed(
        *_hs(A),
        A.out(0x7777, chunk(HEARTBEAT, heartbeat_info())),
        A.back(0x8888, chunk(HEARTBEAT_ACK, heartbeat_info())),
        A.back(TAG_C, chunk(SACK, b"\0" * 12)),
        A.back(0x8888, chunk(SACK, b"\0" * 12)),
    ),
    "HEARTBEAT with foreign tag and DATA": lambda: timed(
        *_hs(A), A.out(0x7777, chunk(DATA, b"d" * 16), chunk(HEARTBEAT, heartbeat_info()))
    ),
    "HEARTBEAT_ACK with a foreign tag": lambda: timed(
        *_hs(A), A.back(0x9999, chunk(HEARTBEAT_ACK, heartbeat_info()))
    ),
    "reply INIT on a HEARTBEAT entry": lambda: timed(
        A.out(TAG_S, chunk(HEARTBEAT, heartbeat_info())), A.back(0, chunk(INIT, init_body(TAG_S)))
    ),
    "two associations": lambda: timed(*_hs(A), *_hs(B), *B.shutdown(), A.data()),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("checksum", [1, 0])
def test_sctp_sequence_agrees(name: str, checksum: int) -> None:
    res, _k, _ = both(SCENARIOS[name](), {"nf_conntrack_checksum": checksum})
    assert res.agree, res.render()


def test_handshake_is_assured_on_the_kernel() -> None:
    """The kernel itself shows the expected state word, flags and timeout."""
    res, k, classes = both(timed(*_hs(A)))
    assert res.agree, res.render()
    assert classes == ["new", "established", "established", "established"]
    assert any("ESTABLISHED" in x and "[ASSURED]" in x for x in k.lines), k.lines


def test_init_retransmission_does_not_refresh_on_the_kernel_clock() -> None:
    """A retransmitted INIT in CLOSED leaves the 10 s timeout running (paced in real time)."""
    pkts = [(A.init(), T0), (A.init(), T0 + 3.5)]
    res, k, _ = both(pkts, pace=True)
    assert res.agree, res.render()
    (line,) = k.lines
    assert " CLOSED " in line, line
    # 10 s from the first INIT, 3.5 s ago: at most 7 left (a refresh would show 9).
    assert int(line.split()[4]) <= 7, line
