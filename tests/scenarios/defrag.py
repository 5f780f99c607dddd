"""Defragmentation scenarios (spec §1.2, E44): IPv4 and IPv6 fragment sequences, with what
the live 6.18 kernel (nf_defrag_ipv4/ipv6 in front of conntrack) does with them (recorded below
by tests/scenarios/record.py), with checksum verification on and off. A held fragment never
reaches the forward hook ("dropped"); the fragment that completes a datagram takes the
datagram's class. Only the full path (Net.replay, the kernel) defragments, so none of these
goes through the API packet by packet.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import packets as P
from helpers import C6, S6, T0, C, S, Seq, timed
from scenarios.base import Outcome, Recorded

Piece = tuple[int, int, bool]  # (offset in bytes, length, more fragments)


def frags4(
    src: str,
    dst: str,
    proto: int,
    datagram: bytes,
    pieces: list[Piece],
    *,
    ident: int = 0x4242,
    df: bool = False,
    tos: int = 0,
) -> list[bytes]:
    """IPv4 fragments carrying `datagram[off:off+len]` each."""
    return [
        P.ipv4(
            src,
            dst,
            proto,
            datagram[off : off + n],
            ident=ident,
            frag_off=off // 8,
            more_fragments=mf,
            dont_fragment=df,
            tos=tos,
        )
        for off, n, mf in pieces
    ]


def frags6(
    src: str,
    dst: str,
    nh: int,
    datagram: bytes,
    pieces: list[Piece],
    *,
    ident: int = 0x1234567,
    before: tuple[tuple[int, bytes], ...] = (),
) -> list[bytes]:
    """IPv6 fragments (fragment header after the `before` extension headers)."""
    return [
        P.ipv6(
            src,
            dst,
            nh,
            datagram[off : off + n],
            ext_headers=[*before, (44, struct.pack("!HI", off | int(mf), ident))],
        )
        for off, n, mf in pieces
    ]


def split(total: int, size: int) -> list[Piece]:
    """In-order pieces of `size` bytes (a multiple of 8) covering `total` bytes."""
    return [(off, min(size, total - off), off + size < total) for off in range(0, total, size)]


def udp4(sport: int = 5000, n: int = 100) -> bytes:
    return P.udp_segment(C, S, sport, 53, bytes(range(256))[:n])


def udp6(sport: int = 5000, n: int = 100) -> bytes:
    return P.udp_segment(C6, S6, sport, 53, bytes(range(256))[:n])


def reply4(sport: int = 5000) -> bytes:
    return P.udp(S, C, 53, sport, b"answer")


def reply6(sport: int = 5000) -> bytes:
    return P.udp(S6, C6, 53, sport, b"answer")


D4 = udp4()  # 108 bytes of UDP
D6 = udp6()

SEQUENCES: dict[str, Callable[[], Seq]] = {
    "v4 in order, then a reply": lambda: timed(*frags4(C, S, 17, D4, split(len(D4), 48)), reply4()),
    "v4 out of order": lambda: timed(*reversed(frags4(C, S, 17, D4, split(len(D4), 32))), reply4()),
    "v4 duplicate fragment": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True), (48, 32, True), (48, 32, True), (80, 28, False)])
    ),
    "v4 duplicate inside a run": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 32, True), (32, 32, True), (16, 32, True), (64, 44, False)])
    ),
    "v4 overlap drops the queue": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True), (40, 16, True), (48, 32, True), (80, 28, False)])
    ),
    "v4 overlap past the tail": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True), (32, 48, True), (48, 60, False), (0, 48, True)])
    ),
    "E44 v4 lone non-first fragment": lambda: timed(*frags4(C, S, 17, D4, [(48, 60, False)])),
    "v4 lone first fragment": lambda: timed(*frags4(C, S, 17, D4, [(0, 48, True)])),
    "v4 first fragment only, then the datagram whole": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True)]), P.ipv4(C, S, 17, D4), reply4()
    ),
    "v4 last fragment again after completion": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True), (48, 60, False), (48, 60, False)])
    ),
    "v4 two datagrams interleaved": lambda: timed(
        *(
            p
            for pair in zip(
                frags4(C, S, 17, udp4(5001), split(108, 40), ident=1),
                frags4(C, S, 17, udp4(5002), split(108, 40), ident=2),
                strict=True,
            )
            for p in pair
        ),
        reply4(5001),
        reply4(5002),
    ),
    "v4 same id, different protocol": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True)]),
        *frags4(C, S, 47, D4, [(48, 60, False)]),
        *frags4(C, S, 17, D4, [(48, 60, False)]),
    ),
    "v4 MF fragment not a multiple of 8": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 52, True), (48, 60, False)])
    ),
    "v4 tiny MF fragment": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True), (48, 5, True), (48, 60, False)])
    ),
    "v4 fragment beyond the last": lambda: timed(
        *frags4(C, S, 17, D4, [(48, 60, False), (112, 16, True), (0, 48, True)])
    ),
    "v4 ECN mix fails the reassembly": lambda: timed(
        *frags4(C, S, 17, D4, [(0, 48, True)], tos=0),
        *frags4(C, S, 17, D4, [(48, 60, False)], tos=3),
    ),
    "v4 bad UDP checksum in the datagram": lambda: timed(
        *frags4(
            C, S, 17, P.udp_segment(C, S, 5003, 53, bytes(100), checksum=0x1234), split(108, 56)
        )
    ),
    "v4 TCP SYN in fragments": lambda: timed(
        *frags4(
            C,
            S,
            6,
            P.tcp_segment(C, S, 40000, 80, flags="S", seq=1000),
            [(0, 8, True), (8, 12, False)],
        )
    ),
    "v4 ICMP echo in fragments": lambda: timed(
        *frags4(C, S, 1, P.icmp_echo(C, S, 77, body=bytes(64))[20:], split(72, 24)),
        P.icmp_echo(S, C, 77, reply=True, body=bytes(64)),
    ),
    "v4 DF fragments of a datagram over the MTU": lambda: timed(
        *frags4(C, S, 17, P.udp_segment(C, S, 5004, 53, bytes(2900)), split(2908, 1480), df=True),
        *frags4(
            C,
            S,
            17,
            P.udp_segment(C, S, 5005, 53, bytes(2900)),
            split(2908, 1000),
            ident=7,
            df=True,
        ),
    ),
    "v6 in order, then a reply": lambda: timed(
        *frags6(C6, S6, 17, D6, split(len(D6), 48)), reply6()
    ),
    "v6 out of order": lambda: timed(*list(reversed(frags6(C6, S6, 17, D6, split(len(D6), 32))))),
    "v6 duplicate fragment": lambda: timed(
        *frags6(C6, S6, 17, D6, [(0, 48, True), (0, 48, True), (48, 60, False)])
    ),
    "v6 overlap drops the queue": lambda: timed(
        *frags6(C6, S6, 17, D6, [(0, 56, True), (48, 60, False), (56, 52, False)])
    ),
    "v6 lone non-first fragment": lambda: timed(*frags6(C6, S6, 17, D6, [(48, 60, False)])),
    "v6 atomic fragment": lambda: timed(*frags6(C6, S6, 17, D6, [(0, len(D6), False)]), reply6()),
    "v6 empty atomic fragment": lambda: timed(*frags6(C6, S6, 17, b"", [(0, 0, False)])),
    "v6 MF fragment not a multiple of 8": lambda: timed(
        *frags6(C6, S6, 17, D6, [(0, 52, True), (48, 60, False)])
    ),
    "v6 last fragment inconsistent": lambda: timed(
        *frags6(C6, S6, 17, D6, [(48, 60, False), (48, 52, False), (0, 48, True)])
    ),
    "v6 behind destination options": lambda: timed(
        *frags6(C6, S6, 17, D6, split(len(D6), 48), before=((60, b"\x01\x04\x00\x00\x00\x00"),))
    ),
    "v6 ICMPv6 echo in fragments": lambda: timed(
        *frags6(C6, S6, 58, P.icmp6_echo(C6, S6, 9, body=bytes(80))[40:], split(88, 32)),
        P.icmp6_echo(S6, C6, 9, reply=True, body=bytes(80)),
    ),
}

RECORD = Recorded()
for _name, _build in SEQUENCES.items():
    RECORD.add(_name, _build, stepwise=False)


def _frag6_timeout() -> Seq:
    """nf_conntrack_frag6_timeout=1: the last fragment's queue is gone 1.5 s later, so the
    first fragment never completes a datagram. (The queue holds no first fragment: with one,
    the kernel's expiry sends an ICMPv6 reassembly-time-exceeded of its own, which conntrack
    counts at LOCAL_OUT, the hook pipeline gap.)"""
    pieces = frags6(C6, S6, 17, D6, [(48, 60, False), (0, 48, True)])
    return [(pieces[0], T0), (pieces[1], T0 + 1.5)]


RECORD.add(
    "v6 queue expires after nf_conntrack_frag6_timeout",
    _frag6_timeout,
    sysctl={"nf_conntrack_frag6_timeout": 1},
    checksums=False,
    pace=True,
    stepwise=False,
)

# --- recorded from the live kernel by tests/scenarios/record.py (do not edit by hand) ----------
RECORDED: dict[str, Outcome] = {
    "v4 in order, then a reply": Outcome(
        classes=("dropped", "dropped", "new", "established"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 out of order": Outcome(
        classes=("dropped", "dropped", "dropped", "new", "established"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 duplicate fragment": Outcome(
        classes=("dropped", "dropped", "dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 duplicate inside a run": Outcome(
        classes=("dropped", "dropped", "dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 overlap drops the queue": Outcome(
        classes=("dropped", "dropped", "dropped", "dropped"),
    ),
    "v4 overlap past the tail": Outcome(
        classes=("dropped", "dropped", "dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "E44 v4 lone non-first fragment": Outcome(
        classes=("dropped",),
    ),
    "v4 lone first fragment": Outcome(
        classes=("dropped",),
    ),
    "v4 first fragment only, then the datagram whole": Outcome(
        classes=("dropped", "new", "established"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 last fragment again after completion": Outcome(
        classes=("dropped", "new", "dropped"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 two datagrams interleaved": Outcome(
        classes=(
            "dropped",
            "dropped",
            "dropped",
            "dropped",
            "new",
            "new",
            "established",
            "established",
        ),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5001 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5001 mark=0 use=1",
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5002 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5002 mark=0 use=1",
        ),
    ),
    "v4 same id, different protocol": Outcome(
        classes=("dropped", "dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 MF fragment not a multiple of 8": Outcome(
        classes=("dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v4 tiny MF fragment": Outcome(
        classes=("dropped", "dropped", "dropped"),
    ),
    "v4 fragment beyond the last": Outcome(
        classes=("dropped", "dropped", "dropped"),
    ),
    "v4 ECN mix fails the reassembly": Outcome(
        classes=("dropped", "dropped"),
    ),
    "v4 bad UDP checksum in the datagram": Outcome(
        classes=("dropped", "invalid"),
        stats={"invalid": 1},
    ),
    "v4 bad UDP checksum in the datagram, checksum=0": Outcome(
        classes=("dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5003 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5003 mark=0 use=1",
        ),
    ),
    "v4 TCP SYN in fragments": Outcome(
        classes=("dropped", "new"),
        table=(
            "ipv4     2 tcp      6 119 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=40000 dport=80"
            " [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=40000 mark=0 use=1",
        ),
    ),
    "v4 ICMP echo in fragments": Outcome(
        classes=("dropped", "dropped", "new", "established"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77 "
            "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77 mark=0 use=1",
        ),
    ),
    "v4 DF fragments of a datagram over the MTU": Outcome(
        classes=("dropped", "new", "dropped", "dropped", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5004 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5004 mark=0 use=1",
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=5005 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5005 mark=0 use=1",
        ),
    ),
    "v6 in order, then a reply": Outcome(
        classes=("dropped", "dropped", "new", "established"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v6 out of order": Outcome(
        classes=("dropped", "dropped", "dropped", "new"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v6 duplicate fragment": Outcome(
        classes=("dropped", "dropped", "new"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v6 overlap drops the queue": Outcome(
        classes=("dropped", "dropped", "dropped"),
    ),
    "v6 lone non-first fragment": Outcome(
        classes=("dropped",),
    ),
    "v6 atomic fragment": Outcome(
        classes=("new", "established"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v6 empty atomic fragment": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "v6 MF fragment not a multiple of 8": Outcome(
        classes=("invalid", "dropped"),
        stats={"invalid": 1},
    ),
    "v6 last fragment inconsistent": Outcome(
        classes=("dropped", "dropped", "new"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v6 behind destination options": Outcome(
        classes=("dropped", "dropped", "new"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "v6 ICMPv6 echo in fragments": Outcome(
        classes=("dropped", "dropped", "new", "established"),
        table=(
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=9 "
            "src=fd00:2::2 dst=fd00:1::2 type=129 code=0 id=9 mark=0 use=1",
        ),
    ),
    "v6 queue expires after nf_conntrack_frag6_timeout": Outcome(
        classes=("dropped", "dropped"),
    ),
}
# --- end of the recorded outcomes ---------------------------------------------------------------

SCENARIOS = RECORD.scenarios(RECORDED)
