"""SCTP scenarios (spec §10.3, `nf_conntrack_proto_sctp.c`): association setup and shutdown,
INIT retransmission, ABORT, verification tags, the chunk rules, what may open an entry, the
CRC32c check and HEARTBEAT, as packet sequences with what the live 6.18 kernel does with them
(recorded below by tests/scenarios/record.py), with checksum verification on and off.

Also the SCTP packet builders the tests share: `sctp(src, dst, sport, dport, vtag, *chunks)`
builds an IPv4/IPv6 packet with a correct CRC32c (or a forced one); `Assoc` the packets of
one association.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import packets as P
from helpers import C6, S6, T0, C, S, Seq, timed
from scenarios.base import Outcome, Recorded

IPPROTO_SCTP = 132

# Chunk types (RFC 9260 §3.2).
DATA, INIT, INIT_ACK, SACK, HEARTBEAT, HEARTBEAT_ACK, ABORT = 0, 1, 2, 3, 4, 5, 6
SHUTDOWN, SHUTDOWN_ACK, ERROR, COOKIE_ECHO, COOKIE_ACK, SHUTDOWN_COMPLETE = 7, 8, 9, 10, 11, 14
FLAG_T = 0x01

CP, SP = 5000, 2905
TAG_C, TAG_S = 0x0A0B0C0D, 0x11223344

# --- builders ------------------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli), as SCTP uses it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


Chunk = tuple[int, int, bytes]


def chunk(ty: int, value: bytes = b"", flags: int = 0, *, length: int | None = None) -> bytes:
    """One chunk, padded to 4 bytes; `length` forces the length field."""
    n = 4 + len(value) if length is None else length
    raw = struct.pack("!BBH", ty, flags, n) + value
    return raw + b"\0" * (-len(raw) % 4)


def init_body(tag: int, tsn: int = 1) -> bytes:
    """The fixed part of INIT/INIT_ACK: initiate tag, a_rwnd, streams out/in, initial TSN."""
    return struct.pack("!IIHHI", tag, 65536, 10, 10, tsn)


def sctp_segment(
    sport: int, dport: int, vtag: int, chunks: bytes, *, crc: int | None = None
) -> bytes:
    """The SCTP common header and chunks, with the CRC32c (stored little-endian) or `crc`."""
    head = struct.pack("!HHI", sport, dport, vtag)
    value = crc32c(head + b"\0\0\0\0" + chunks) if crc is None else crc
    return head + struct.pack("<I", value) + chunks


def sctp(
    src: str, dst: str, sport: int, dport: int, vtag: int, *chunks: bytes, crc: int | None = None
) -> bytes:
    """An IPv4/IPv6 packet carrying SCTP with the given chunks."""
    return P.ip(src, dst, IPPROTO_SCTP, sctp_segment(sport, dport, vtag, b"".join(chunks), crc=crc))


class Assoc:
    """Packets of one association between client `c` and server `s` (tags TAG_C for packets to
    the client, TAG_S for packets to the server)."""

    def __init__(self, c: str = C, s: str = S, cp: int = CP, sp: int = SP) -> None:
        self.c, self.s, self.cp, self.sp = c, s, cp, sp

    def out(self, vtag: int, *chunks: bytes, crc: int | None = None) -> bytes:
        return sctp(self.c, self.s, self.cp, self.sp, vtag, *chunks, crc=crc)

    def back(self, vtag: int, *chunks: bytes, crc: int | None = None) -> bytes:
        return sctp(self.s, self.c, self.sp, self.cp, vtag, *chunks, crc=crc)

    def init(self, tag: int = TAG_C, vtag: int = 0) -> bytes:
        return self.out(vtag, chunk(INIT, init_body(tag)))

    def init_ack(self, tag: int = TAG_S) -> bytes:
        return self.back(TAG_C, chunk(INIT_ACK, init_body(tag, 7) + b"\x00\x07\x00\x08cookie!!"))

    def cookie_echo(self) -> bytes:
        return self.out(TAG_S, chunk(COOKIE_ECHO, b"cookie!!"))

    def cookie_ack(self) -> bytes:
        return self.back(TAG_C, chunk(COOKIE_ACK))

    def handshake(self) -> list[bytes]:
        return [self.init(), self.init_ack(), self.cookie_echo(), self.cookie_ack()]

    def data(self, vtag: int = TAG_S) -> bytes:
        return self.out(vtag, chunk(DATA, struct.pack("!IHHI", 1, 0, 0, 0) + b"payload", flags=3))

    def sack(self) -> bytes:
        return self.back(TAG_C, chunk(SACK, struct.pack("!IIHH", 1, 65536, 0, 0)))

    def shutdown(self) -> list[bytes]:
        return [
            self.out(TAG_S, chunk(SHUTDOWN, struct.pack("!I", 1))),
            self.back(TAG_C, chunk(SHUTDOWN_ACK)),
            self.out(TAG_S, chunk(SHUTDOWN_COMPLETE)),
        ]


def heartbeat_info() -> bytes:
    return struct.pack("!HH", 1, 12) + b"hbinfo\0\0"


# --- the sequences -------------------------------------------------------------------------------

A = Assoc(C, S)
A6 = Assoc(C6, S6)
B = Assoc(C, S, 6000, 6001)  # a second association beside A


def _hs(a: Assoc) -> list[bytes]:
    return a.handshake()


SEQUENCES: dict[str, Callable[[], Seq]] = {
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

RECORD = Recorded()
for _name, _build in SEQUENCES.items():
    RECORD.add(_name, _build)
RECORD.add(
    "INIT retransmitted after 3.5 s on the kernel clock",
    # A retransmitted INIT in CLOSED leaves the 10 s timeout running (paced in real time).
    lambda: [(A.init(), T0), (A.init(), T0 + 3.5)],
    checksums=False,
    pace=True,
)

# --- recorded from the live kernel by tests/scenarios/record.py (do not edit by hand) ----------
RECORDED: dict[str, Outcome] = {
    "INIT only": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "INIT, INIT_ACK": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 sctp     132 2 COOKIE_WAIT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "INIT, INIT_ACK, COOKIE_ECHO": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 sctp     132 2 COOKIE_ECHOED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "handshake": Outcome(
        classes=("new", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "handshake IPv6": Outcome(
        classes=("new", "established", "established", "established", "established", "established"),
        table=(
            "ipv6     10 sctp     132 209 ESTABLISHED src=fd00:1::2 dst=fd00:2::2 sport=5000 "
            "dport=2905 src=fd00:2::2 dst=fd00:1::2 sport=2905 dport=5000 [ASSURED] mark=0 "
            "use=1",
        ),
    ),
    "handshake, data, sack": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
        ),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "shutdown": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
        ),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "shutdown sent": Outcome(
        classes=("new", "established", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 2 SHUTDOWN_SENT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "shutdown ack sent": Outcome(
        classes=("new", "established", "established", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 2 SHUTDOWN_ACK_SENT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "shutdown from the server": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
        ),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "INIT retransmitted": Outcome(
        classes=("new", "new", "new"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "INIT retransmitted after INIT_ACK": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 sctp     132 2 COOKIE_WAIT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "ABORT from the client": Outcome(
        classes=("new", "established", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "ABORT with T flag": Outcome(
        classes=("new", "established", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "ABORT with a wrong tag": Outcome(
        classes=("new", "established", "established", "established", "invalid", "established"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "ABORT from the server during setup": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "bad vtag": Outcome(
        classes=("new", "established", "established", "established", "invalid", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 2},
    ),
    "INIT with non-zero vtag first": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "INIT with non-zero vtag on an entry": Outcome(
        classes=("new", "established", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "INIT and DATA": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "DATA then COOKIE_ECHO": Outcome(
        classes=("new", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 2 COOKIE_WAIT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "COOKIE_ECHO and DATA": Outcome(
        classes=("new", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "SACK then COOKIE_ACK": Outcome(
        classes=("new", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 2 COOKIE_ECHOED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "SHUTDOWN_COMPLETE not alone": Outcome(
        classes=("new", "established", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "zero-length chunk": Outcome(
        classes=("new", "established", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "no chunks": Outcome(
        classes=("invalid", "new", "established", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 2},
    ),
    "short SCTP header": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "truncated INIT": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "DATA first": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "first packet COOKIE_ACK": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "first packet ABORT": Outcome(
        classes=("invalid", "invalid"),
        stats={"invalid": 2},
    ),
    "first packet SHUTDOWN_COMPLETE": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "first packet COOKIE_ECHO": Outcome(
        classes=("invalid", "invalid"),
        stats={"invalid": 2},
    ),
    "first packet INIT_ACK": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "first packet SHUTDOWN_ACK": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
    "SHUTDOWN_ACK then T-flag SHUTDOWN_COMPLETE": Outcome(
        classes=("new", "invalid"),
        table=(
            "ipv4     2 sctp     132 2 SHUTDOWN_ACK_SENT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 "
            "use=1",
        ),
        stats={"invalid": 1},
    ),
    "bad CRC INIT": Outcome(
        classes=("invalid", "new"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=6000 dport=6001 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=6001 dport=6000 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "bad CRC INIT, checksum=0": Outcome(
        classes=("new", "new"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=6000 dport=6001 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=6001 dport=6000 mark=0 use=1",
        ),
    ),
    "bad CRC on an entry": Outcome(
        classes=("new", "established", "established", "established", "invalid", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 2},
    ),
    "bad CRC on an entry, checksum=0": Outcome(
        classes=("new", "established", "established", "established", "established", "established"),
        table=(
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "HEARTBEAT first": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 sctp     132 29 HEARTBEAT_SENT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 "
            "use=1",
        ),
    ),
    "HEARTBEAT, HEARTBEAT_ACK": Outcome(
        classes=("new", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "HEARTBEAT in both directions on an association": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
        ),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "HEARTBEAT on a secondary path": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "established",
            "established",
            "established",
            "invalid",
            "established",
        ),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "HEARTBEAT with foreign tag and DATA": Outcome(
        classes=("new", "established", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "HEARTBEAT_ACK with a foreign tag": Outcome(
        classes=("new", "established", "established", "established", "invalid"),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "reply INIT on a HEARTBEAT entry": Outcome(
        classes=("new", "invalid"),
        table=(
            "ipv4     2 sctp     132 29 HEARTBEAT_SENT src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 "
            "use=1",
        ),
        stats={"invalid": 1},
    ),
    "two associations": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "established",
            "new",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
            "established",
        ),
        table=(
            "ipv4     2 sctp     132 209 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 "
            "dport=2905 src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 [ASSURED] mark=0 use=1",
            "ipv4     2 sctp     132 9 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=6000 dport=6001 "
            "src=10.2.0.2 dst=10.1.0.2 sport=6001 dport=6000 [ASSURED] mark=0 use=1",
        ),
    ),
    "INIT retransmitted after 3.5 s on the kernel clock": Outcome(
        classes=("new", "new"),
        table=(
            "ipv4     2 sctp     132 6 CLOSED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=2905 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=2905 dport=5000 mark=0 use=1",
        ),
    ),
}
# --- end of the recorded outcomes ---------------------------------------------------------------

SCENARIOS = RECORD.scenarios(RECORDED)
