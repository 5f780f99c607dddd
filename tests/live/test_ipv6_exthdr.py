"""IPv6 extension-header chains against the live kernel: hop-by-hop, routing (types 0, 2, 4 and
an unknown one, segments left 0 or not), destination options, AH, the fragment header at
offset 0 (an atomic fragment), several in a row and in unusual orders, an unknown or no next
header at the end, and chains that run past the packet. Each datagram is answered by a plain
one, so that the entry it made (or did not) shows. nfct and the kernel must agree on every
packet, the table and the statistics; what the kernel did is written down here too, so that a
change on both sides is noticed.

What Linux 6.18 was seen to do (and nfct does):

* every chain of well-formed headers is walked to the transport header whatever the order
  (hop-by-hop after another header included), whatever the routing type and segments left
  (the router forwards without processing the routing header: conntrack tracks the UDP inside);
* a hop-by-hop header with more than 7 bytes of padding never reaches conntrack (the IPv6
  input drops it), nor does one whose length runs past the packet;
* an unknown next header (253) and ESP end the walk: the entry is "unknown" (generic); no
  next header (59) is INVALID, as is a chain whose header runs past the packet once the IPv6
  input has let it through (destination options, AH); a UDP header cut short is INVALID;
* an atomic fragment (offset 0, M=0) alone is a datagram of one fragment: it passes (the
  kernel strips its fragment header). An empty one passes as it is (INVALID: no UDP header).
  A non-empty one whose (source, destination, identification) has a queue of fragments
  waiting is taken as the last fragment of that datagram (RFC 6946 says atomic fragments must
  be processed in isolation; Linux's nf_defrag_ipv6 does not): shorter than the queue's data
  it is dropped and the queue kept; as long as the queue's first fragment, a duplicate,
  dropped, which still marks the datagram's end there (the rest of it is then dropped); longer,
  an overlap that drops the queue with it. nfct passed every atomic fragment as it is until
  this test found the difference (rust/defrag.rs now queues them as the kernel does).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

from helpers import C6, S6, run_seen
from nfct import packets as P

HOP, ROUTING, FRAGMENT, DSTOPTS, AH, NONE = 0, 43, 44, 60, 51, 59
X6 = "fd00:9::1"

#: (type, the header's bytes after its next-header byte).
Header = tuple[int, bytes]


def options(n8: int = 1) -> bytes:
    """A hop-by-hop or destination options body filling 8*n8 - 2 bytes with one PadN."""
    pad = 8 * n8 - 2
    return bytes([1, pad - 2]) + b"\0" * (pad - 2)


def ext(kind: int, body: bytes, *, hdrlen: int | None = None) -> Header:
    """An options, routing or AH header with `body` after its length byte (the length right
    unless `hdrlen`)."""
    if kind == AH:
        n = (len(body) + 2) // 4 - 2 if hdrlen is None else hdrlen
    else:
        n = (len(body) + 2) // 8 - 1 if hdrlen is None else hdrlen
    return kind, bytes([n]) + body


def routing(rtype: int, segments_left: int, addrs: Sequence[str]) -> Header:
    data = b"".join(ipaddress.IPv6Address(a).packed for a in addrs)
    if rtype == 4:  # segment routing: last entry, flags, tag
        head = bytes([rtype, segments_left, len(addrs) - 1, 0, 0, 0])
    else:
        head = bytes([rtype, segments_left, 0, 0, 0, 0])
    return ext(ROUTING, head + data)


def fragment(ident: int, offset: int = 0, *, more: bool = False) -> Header:
    return FRAGMENT, b"\0" + struct.pack("!HI", offset | int(more), ident)


def ah() -> Header:
    return ext(AH, struct.pack("!HII", 0, 0x100, 1) + b"\0" * 12)


def chain(final: int, l4: bytes, headers: Sequence[Header], *, src: str = C6) -> bytes:
    """An IPv6 packet from `src` to S6 with `headers` in order, then `l4` as protocol
    `final`."""
    types = [t for t, _ in headers] + [final]
    body = b"".join(bytes([types[i + 1]]) + raw for i, (_, raw) in enumerate(headers)) + l4
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(body),
            types[0],
            64,
            ipaddress.IPv6Address(src).packed,
            ipaddress.IPv6Address(S6).packed,
        )
        + body
    )


def udp(sport: int, size: int = 8) -> bytes:
    return P.udp_segment(C6, S6, sport, 53, b"q" * size)


def answer(sport: int) -> bytes:
    return P.udp(S6, C6, 53, sport, b"a" * 8)


D, H = ext(DSTOPTS, options()), ext(HOP, options())
R0 = routing(0, 1, [X6])

#: (name, headers, what the kernel made of the datagram, of its answer).
CHAINS: tuple[tuple[str, tuple[Header, ...], str, str], ...] = (
    ("hop-by-hop", (H,), "new", "established"),
    ("hop-by-hop with 14 bytes of padding", (ext(HOP, options(2)),), "dropped", "new"),
    ("destination options", (D,), "new", "established"),
    ("routing type 0, segments left 0", (routing(0, 0, [X6]),), "new", "established"),
    ("routing type 0, segments left 1", (R0,), "new", "established"),
    ("routing type 2", (routing(2, 1, [X6]),), "new", "established"),
    ("routing type 4 (segment routing)", (routing(4, 1, [X6, S6]),), "new", "established"),
    ("routing type 253", (routing(253, 1, [X6]),), "new", "established"),
    ("atomic fragment", (fragment(0x100),), "new", "established"),
    ("AH", (ah(),), "new", "established"),
    ("dst, AH, dst", (D, ah(), D), "new", "established"),
    ("eight destination options", (D,) * 8, "new", "established"),
    ("hop-by-hop not first", (D, H), "new", "established"),
    ("two fragment headers", (fragment(0x101), fragment(0x102)), "new", "established"),
    ("hbh, dst, rt0, fragment, dst", (H, D, R0, fragment(0x103), D), "new", "established"),
    (
        "hbh, dst, rt0 (left 0), frag, dst",
        (H, D, routing(0, 0, [X6]), fragment(0x104), D),
        "new",
        "established",
    ),
    ("rt0, fragment, rt0", (R0, fragment(0x105), R0), "new", "established"),
    ("rt0, fragment, AH", (R0, fragment(0x106), ah()), "new", "established"),
    (
        "rt4, fragment, hop-by-hop",
        (routing(4, 1, [X6, S6]), fragment(0x107), H),
        "new",
        "established",
    ),
)

#: (name, packet, what the kernel made of it): chains without a transport header to track.
ODD: tuple[tuple[str, bytes, str], ...] = (
    ("unknown next header 253", chain(253, b"\0" * 16, []), "new"),
    ("unknown next header 253 after dst", chain(253, b"\1" * 16, [D]), "new"),
    ("no next header (59)", chain(NONE, b"\0" * 16, []), "invalid"),
    ("no next header after dst", chain(NONE, b"\0" * 16, [D]), "invalid"),
    ("ESP after dst", chain(50, b"\0" * 16, [D]), "new"),
    (
        "dst whose length runs past the packet",
        chain(17, b"", [ext(DSTOPTS, options(), hdrlen=5)]),
        "invalid",
    ),
    ("UDP header cut after dst", chain(17, udp(3333)[:-10], [D]), "invalid"),
    ("dst itself cut", chain(17, b"", [D])[:-3], "dropped"),
    (
        "hop-by-hop running past the packet",
        chain(17, b"", [ext(HOP, options(), hdrlen=5)]),
        "dropped",
    ),
    ("fragment header cut", chain(17, b"", [fragment(0x108)])[:-2], "dropped"),
    ("AH running past the packet", chain(17, b"", [ext(AH, b"\0" * 10, hdrlen=9)]), "invalid"),
    ("empty atomic fragment", chain(17, b"", [fragment(0x109)]), "invalid"),
)


def test_extension_header_chains_agree_with_the_kernel() -> None:
    pkts: list[bytes] = []
    labels: list[str] = []
    expected: list[str] = []
    for n, (name, headers, fwd, back) in enumerate(CHAINS):
        sport = 20000 + n
        pkts += [chain(P.IPPROTO_UDP, udp(sport), headers), answer(sport)]
        labels += [name, f"{name}: answer"]
        expected += [fwd, back]
    for name, pkt, cls in ODD:
        pkts.append(pkt)
        labels.append(name)
        expected.append(cls)
    run_seen(list(zip(labels, pkts, expected, strict=True)))


# --- atomic fragments beside a queue of the same identification ----------------------------------


def first_fragment(ident: int, sport: int) -> tuple[bytes, bytes]:
    """The first 16 bytes of a 32-byte UDP datagram (offset 0, M=1), and the datagram."""
    seg = udp(sport, 24)
    return chain(P.IPPROTO_UDP, seg[:16], [fragment(ident, more=True)]), seg


def last_fragment(ident: int, seg: bytes) -> bytes:
    return chain(P.IPPROTO_UDP, seg[16:], [fragment(ident, 16)])


def atomic(ident: int, sport: int, size: int, headers: Sequence[Header] = ()) -> bytes:
    """An atomic fragment holding a UDP datagram of 8 + `size` bytes."""
    return chain(P.IPPROTO_UDP, udp(sport, size), [*headers, fragment(ident)])


def test_atomic_fragments_beside_a_queue_agree_with_the_kernel() -> None:
    cases: list[tuple[bytes, str, str]] = []
    # Longer than the waiting first fragment: an overlap, the queue goes with it.
    first, seg = first_fragment(7, 3001)
    cases += [
        (first, "first fragment of datagram 7", "dropped"),
        (atomic(7, 3002, 16), "atomic 7, 24 bytes: overlaps", "dropped"),
        (last_fragment(7, seg), "rest of datagram 7: its queue is gone", "dropped"),
    ]
    # The same with another identification: isolated, as RFC 6946 wants.
    first, seg = first_fragment(8, 3011)
    cases += [
        (first, "first fragment of datagram 8", "dropped"),
        (atomic(9, 3012, 16), "atomic 9", "new"),
        (last_fragment(8, seg), "rest of datagram 8", "new"),
    ]
    # Shorter than the queue's data: dropped, the queue kept.
    first, seg = first_fragment(10, 3021)
    cases += [
        (first, "first fragment of datagram 10", "dropped"),
        (atomic(10, 3022, 0), "atomic 10, 8 bytes: before the queue's end", "dropped"),
        (last_fragment(10, seg), "rest of datagram 10", "new"),
    ]
    first, seg = first_fragment(11, 3031)
    cases += [
        (last_fragment(11, seg), "last fragment of datagram 11 first", "dropped"),
        (atomic(11, 3032, 16), "atomic 11, 24 bytes: before the queue's end", "dropped"),
        (first, "first fragment of datagram 11", "new"),
    ]
    # As long as the waiting first fragment: a duplicate that ends the datagram there.
    first, seg = first_fragment(12, 3041)
    cases += [
        (first, "first fragment of datagram 12", "dropped"),
        (atomic(12, 3042, 8), "atomic 12, 16 bytes: a duplicate", "dropped"),
        (last_fragment(12, seg), "rest of datagram 12: past the new end", "dropped"),
    ]
    # Empty: passes as it is (no UDP header: INVALID), the queue kept.
    first, seg = first_fragment(13, 3051)
    cases += [
        (first, "first fragment of datagram 13", "dropped"),
        (chain(P.IPPROTO_UDP, b"", [fragment(13)]), "empty atomic 13", "invalid"),
        (last_fragment(13, seg), "rest of datagram 13", "new"),
    ]
    # An atomic fragment leaves no queue behind; one after other headers is the same.
    first, seg = first_fragment(14, 3062)
    cases += [
        (atomic(14, 3061, 16), "atomic 14 alone", "new"),
        (first, "first fragment of datagram 14", "dropped"),
        (last_fragment(14, seg), "rest of datagram 14", "new"),
        (atomic(15, 3071, 16, [D, R0]), "atomic 15 after dst and rt0", "new"),
    ]
    run_seen([(label, p, e) for p, label, e in cases])
