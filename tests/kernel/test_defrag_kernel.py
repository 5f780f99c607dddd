"""Defragmentation against the live kernel (spec §1.2, E44): crafted IPv4 and IPv6 fragment
sequences go through the running kernel (nf_defrag_ipv4/ipv6 in front of conntrack) and through
nfct, and both must agree on every packet's class (a held fragment never reaches the forward
hook: "dropped"; the fragment that completes a datagram takes the datagram's class), on the
final table and on the statistics."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

import packets as P
from kernel.test_differential import T0, Seq, both

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"

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


def timed(pkts: list[bytes], gap: float = 0.001) -> Seq:
    return [(p, T0 + i * gap) for i, p in enumerate(pkts)]


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

SCENARIOS: dict[str, Callable[[], Seq]] = {
    "v4 in order, then a reply": lambda: timed(
        [*frags4(C, S, 17, D4, split(len(D4), 48)), reply4()]
    ),
    "v4 out of order": lambda: timed(
        [*reversed(frags4(C, S, 17, D4, split(len(D4), 32))), reply4()]
    ),
    "v4 duplicate fragment": lambda: timed(
        frags4(C, S, 17, D4, [(0, 48, True), (48, 32, True), (48, 32, True), (80, 28, False)])
    ),
    "v4 duplicate inside a run": lambda: timed(
        frags4(C, S, 17, D4, [(0, 32, True), (32, 32, True), (16, 32, True), (64, 44, False)])
    ),
    "v4 overlap drops the queue": lambda: timed(
        frags4(C, S, 17, D4, [(0, 48, True), (40, 16, True), (48, 32, True), (80, 28, False)])
    ),
    "v4 overlap past the tail": lambda: timed(
        frags4(C, S, 17, D4, [(0, 48, True), (32, 48, True), (48, 60, False), (0, 48, True)])
    ),
    "E44 v4 lone non-first fragment": lambda: timed(frags4(C, S, 17, D4, [(48, 60, False)])),
    "v4 lone first fragment": lambda: timed(frags4(C, S, 17, D4, [(0, 48, True)])),
    "v4 first fragment only, then the datagram whole": lambda: timed(
        [*frags4(C, S, 17, D4, [(0, 48, True)]), P.ipv4(C, S, 17, D4), reply4()]
    ),
    "v4 last fragment again after completion": lambda: timed(
        frags4(C, S, 17, D4, [(0, 48, True), (48, 60, False), (48, 60, False)])
    ),
    "v4 two datagrams interleaved": lambda: timed(
        [
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
        ]
    ),
    "v4 same id, different protocol": lambda: timed(
        [
            *frags4(C, S, 17, D4, [(0, 48, True)]),
            *frags4(C, S, 47, D4, [(48, 60, False)]),
            *frags4(C, S, 17, D4, [(48, 60, False)]),
        ]
    ),
    "v4 MF fragment not a multiple of 8": lambda: timed(
        frags4(C, S, 17, D4, [(0, 52, True), (48, 60, False)])
    ),
    "v4 tiny MF fragment": lambda: timed(
        frags4(C, S, 17, D4, [(0, 48, True), (48, 5, True), (48, 60, False)])
    ),
    "v4 fragment beyond the last": lambda: timed(
        frags4(C, S, 17, D4, [(48, 60, False), (112, 16, True), (0, 48, True)])
    ),
    "v4 ECN mix fails the reassembly": lambda: timed(
        [
            *frags4(C, S, 17, D4, [(0, 48, True)], tos=0),
            *frags4(C, S, 17, D4, [(48, 60, False)], tos=3),
        ]
    ),
    "v4 bad UDP checksum in the datagram": lambda: timed(
        frags4(C, S, 17, P.udp_segment(C, S, 5003, 53, bytes(100), checksum=0x1234), split(108, 56))
    ),
    "v4 TCP SYN in fragments": lambda: timed(
        frags4(
            C,
            S,
            6,
            P.tcp_segment(C, S, 40000, 80, flags="S", seq=1000),
            [(0, 8, True), (8, 12, False)],
        )
    ),
    "v4 ICMP echo in fragments": lambda: timed(
        [
            *frags4(C, S, 1, P.icmp_echo(C, S, 77, body=bytes(64))[20:], split(72, 24)),
            P.icmp_echo(S, C, 77, reply=True, body=bytes(64)),
        ]
    ),
    "v4 DF fragments of a datagram over the MTU": lambda: timed(
        [
            *frags4(
                C, S, 17, P.udp_segment(C, S, 5004, 53, bytes(2900)), split(2908, 1480), df=True
            ),
            *frags4(
                C,
                S,
                17,
                P.udp_segment(C, S, 5005, 53, bytes(2900)),
                split(2908, 1000),
                ident=7,
                df=True,
            ),
        ]
    ),
    "v6 in order, then a reply": lambda: timed(
        [*frags6(C6, S6, 17, D6, split(len(D6), 48)), reply6()]
    ),
    "v6 out of order": lambda: timed(list(reversed(frags6(C6, S6, 17, D6, split(len(D6), 32))))),
    "v6 duplicate fragment": lambda: timed(
        frags6(C6, S6, 17, D6, [(0, 48, True), (0, 48, True), (48, 60, False)])
    ),
    "v6 overlap drops the queue": lambda: timed(
        frags6(C6, S6, 17, D6, [(0, 56, True), (48, 60, False), (56, 52, False)])
    ),
    "v6 lone non-first fragment": lambda: timed(frags6(C6, S6, 17, D6, [(48, 60, False)])),
    "v6 atomic fragment": lambda: timed([*frags6(C6, S6, 17, D6, [(0, len(D6), False)]), reply6()]),
    "v6 empty atomic fragment": lambda: timed(frags6(C6, S6, 17, b"", [(0, 0, False)])),
    "v6 MF fragment not a multiple of 8": lambda: timed(
        frags6(C6, S6, 17, D6, [(0, 52, True), (48, 60, False)])
    ),
    "v6 last fragment inconsistent": lambda: timed(
        frags6(C6, S6, 17, D6, [(48, 60, False), (48, 52, False), (0, 48, True)])
    ),
    "v6 behind destination options": lambda: timed(
        frags6(C6, S6, 17, D6, split(len(D6), 48), before=((60, b"\x01\x04\x00\x00\x00\x00"),))
    ),
    "v6 ICMPv6 echo in fragments": lambda: timed(
        [
            *frags6(C6, S6, 58, P.icmp6_echo(C6, S6, 9, body=bytes(80))[40:], split(88, 32)),
            P.icmp6_echo(S6, C6, 9, reply=True, body=bytes(80)),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("checksum", [1, 0])
def test_fragment_sequence_agrees(name: str, checksum: int) -> None:
    res, _k, _classes = both(SCENARIOS[name](), {"nf_conntrack_checksum": checksum})
    assert res.agree, res.render()


def test_reassembled_datagram_is_tracked() -> None:
    """The datagram's entry is there on both, made by the fragment that completed it."""
    res, k, classes = both(timed([*frags4(C, S, 17, D4, split(len(D4), 48)), reply4()]))
    assert res.agree, res.render()
    assert classes == ["dropped", "dropped", "new", "established"], classes
    assert any("sport=5000 dport=53" in line for line in k.lines), k.lines


def test_frag6_timeout_expires_the_queue() -> None:
    """nf_conntrack_frag6_timeout=1: the last fragment's queue is gone 1.5 s later, so the
    first fragment never completes a datagram. (The queue holds no first fragment: with one,
    the kernel's expiry sends an ICMPv6 reassembly-time-exceeded of its own, which conntrack
    counts at LOCAL_OUT, the hook pipeline gap.)"""
    pieces = frags6(C6, S6, 17, D6, [(48, 60, False), (0, 48, True)])
    pkts = [(pieces[0], T0), (pieces[1], T0 + 1.5)]
    res, _k, classes = both(pkts, {"nf_conntrack_frag6_timeout": 1}, pace=True)
    assert res.agree, res.render()
    assert classes == ["dropped", "dropped"], classes
