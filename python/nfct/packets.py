"""Packets as bytes, for feeding nfct (or any connection tracker): IPv4/IPv6 carrying TCP
(with options), UDP, UDPLITE, ICMP, ICMPv6 (echo, errors, neighbour discovery, redirects), SCTP
(with its CRC32c), GRE, ESP or any other protocol, with correct checksums; fragments; a
one-line description of a packet; a pcap writer. Pure Python (`struct`), no scapy.

Every builder returns the whole packet starting at the IP header, as :class:`nfct.Skb` takes it.
The address family is chosen from the addresses (``"10.1.0.2"`` → IPv4, ``"fd00:1::2"`` → IPv6).

Checksums are computed the way the receiver (and conntrack's checksum check) verifies them:
over the whole L4 segment present in the packet, with the pseudo-header length being that
segment's length. For normal packets that equals the UDP length field. Pass ``checksum=`` to
force a value (e.g. a wrong one, or 0 for "no UDP checksum").

>>> from nfct import packets as P
>>> syn = P.tcp("10.1.0.2", "10.2.0.2", 40000, 80, seq=1, flags="S", options=P.tcp_syn_options())
>>> P.describe(syn)
'TCP 10.1.0.2:40000 > 10.2.0.2:80 [S] seq=1 ack=0 win=65535 len=0'
>>> len(P.udp("fd00:1::2", "fd00:2::2", 5353, 53, b"query"))
53
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "ICMPV6_DEST_UNREACH",
    "ICMPV6_ECHO_REPLY",
    "ICMPV6_ECHO_REQUEST",
    "ICMPV6_PKT_TOOBIG",
    "ICMPV6_PORT_UNREACH",
    "ICMPV6_TIME_EXCEED",
    "ICMP_DEST_UNREACH",
    "ICMP_ECHO",
    "ICMP_ECHOREPLY",
    "ICMP_PORT_UNREACH",
    "ICMP_TIMESTAMP",
    "ICMP_TIMESTAMPREPLY",
    "ICMP_TIME_EXCEEDED",
    "IPPROTO_ESP",
    "IPPROTO_FRAGMENT",
    "IPPROTO_GRE",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "IPPROTO_NONE",
    "IPPROTO_SCTP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPPROTO_UDPLITE",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_RAW",
    "NDISC_NEIGHBOUR_SOLICITATION",
    "NDISC_REDIRECT",
    "SCTP_ABORT",
    "SCTP_COOKIE_ACK",
    "SCTP_COOKIE_ECHO",
    "SCTP_DATA",
    "SCTP_ERROR",
    "SCTP_FLAG_T",
    "SCTP_HEARTBEAT",
    "SCTP_HEARTBEAT_ACK",
    "SCTP_INIT",
    "SCTP_INIT_ACK",
    "SCTP_SACK",
    "SCTP_SHUTDOWN",
    "SCTP_SHUTDOWN_ACK",
    "SCTP_SHUTDOWN_COMPLETE",
    "TCP_ACK",
    "TCP_CWR",
    "TCP_ECE",
    "TCP_FIN",
    "TCP_PSH",
    "TCP_RST",
    "TCP_SYN",
    "TCP_URG",
    "crc32c",
    "describe",
    "esp",
    "ethernet",
    "fix_checksum",
    "fragments",
    "generic",
    "gre",
    "icmp",
    "icmp6",
    "icmp6_echo",
    "icmp6_error",
    "icmp6_neighbour_solicitation",
    "icmp6_redirect",
    "icmp_echo",
    "icmp_error",
    "icmp_message",
    "inet_checksum",
    "ip",
    "ip_addresses",
    "ipv4",
    "ipv4_fragment",
    "ipv6",
    "ipv6_fragment",
    "l4_checksum",
    "l4_offset",
    "ones_complement_sum",
    "pcap",
    "pseudo_header",
    "replace_l4",
    "sctp",
    "sctp_chunk",
    "sctp_data_chunk",
    "sctp_heartbeat_info",
    "sctp_init_body",
    "sctp_sack_chunk",
    "sctp_segment",
    "set_ttl",
    "tcp",
    "tcp_flags",
    "tcp_opt_eol",
    "tcp_opt_mss",
    "tcp_opt_nop",
    "tcp_opt_sack",
    "tcp_opt_sack_perm",
    "tcp_opt_timestamps",
    "tcp_opt_wscale",
    "tcp_segment",
    "tcp_syn_options",
    "udp",
    "udp_segment",
    "udplite",
    "udplite_pseudo_length",
    "verify_ipv4_header",
]

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136
IPPROTO_FRAGMENT = 44

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

# --- checksums ---------------------------------------------------------------------------------


def ones_complement_sum(data: bytes) -> int:
    """RFC 1071 16-bit one's-complement sum (not inverted)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def inet_checksum(data: bytes) -> int:
    """The Internet checksum of `data` (whose checksum field is zero)."""
    return ~ones_complement_sum(data) & 0xFFFF


def pseudo_header(src: Addr, dst: Addr, proto: int, length: int) -> bytes:
    """The TCP/UDP/ICMPv6 pseudo-header for the checksum."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!IxxxB", length, proto)


def udplite_pseudo_length(version: int, length: int) -> int:
    """The length conntrack puts in the pseudo-header it verifies a UDPLITE checksum against,
    for a UDPLITE segment of `length` bytes over IP `version` 4 or 6: over IPv6 the length,
    over IPv4 only its low byte (``length % 256``). Observed on Linux 6.18 (the pseudo-header
    also names protocol 17, not 136; see "UDPLITE checksums" in docs/fidelity.md): over IPv4
    a UDPLITE datagram of 256 bytes or more whose checksum has the whole length is INVALID."""
    return length & 0xFF if version == 4 else length


def _udplite_checksum(
    s: Addr, d: Addr, seg: bytes, coverage: int, proto: int, length: int | None
) -> int:
    """The checksum of UDPLITE segment `seg` (its checksum field zero) over its coverage, the
    pseudo-header naming `proto` and `length` (None: what conntrack checks it with)."""
    if length is None:
        length = udplite_pseudo_length(s.version, len(seg))
    covered = seg if coverage == 0 else seg[:coverage]
    return inet_checksum(pseudo_header(s, d, proto, length) + covered)


def _addrs(src: str, dst: str) -> tuple[Addr, Addr]:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError(f"mixed address families: {src} {dst}")
    return s, d


def _with_checksum(segment: bytes, offset: int, value: int) -> bytes:
    return segment[:offset] + struct.pack("!H", value) + segment[offset + 2 :]


def l4_checksum(src: str, dst: str, proto: int, segment: bytes) -> int:
    """Checksum of an L4 segment with its pseudo-header (checksum field must be zero)."""
    s, d = _addrs(src, dst)
    return inet_checksum(pseudo_header(s, d, proto, len(segment)) + segment)


# --- network layer -----------------------------------------------------------------------------


def ipv4(
    src: str,
    dst: str,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    frag_off: int = 0,
    dont_fragment: bool = False,
    more_fragments: bool = False,
    options: bytes = b"",
    tot_len: int | None = None,
    tos: int = 0,
) -> bytes:
    """An IPv4 packet with a correct header checksum. `frag_off` in 8-byte units."""
    s, d = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)
    if len(options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    ihl = 5 + len(options) // 4
    length = ihl * 4 + len(payload) if tot_len is None else tot_len
    flags = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        tos,
        length,
        ident,
        flags | (frag_off & 0x1FFF),
        ttl,
        proto,
        0,
        s.packed,
        d.packed,
    )
    header += options
    header = _with_checksum(header, 10, inet_checksum(header))
    return header + payload


def ipv6(
    src: str,
    dst: str,
    next_header: int,
    payload: bytes,
    *,
    hop_limit: int = 64,
    flow_label: int = 0,
    ext_headers: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """An IPv6 packet. `ext_headers` is a list of (header type, body) for extension headers
    (hop-by-hop 0, routing 43, destination options 60: body padded to 8n-2 bytes; fragment 44:
    body of 6 bytes); they are chained in order, the last pointing at `next_header`."""
    s, d = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    exts = list(ext_headers)
    chain = b""
    types = [t for t, _ in exts] + [next_header]
    for i, (_, body) in enumerate(exts):
        nh = types[i + 1]
        if types[i] == 44:
            chain += struct.pack("!BB", nh, 0) + body.ljust(6, b"\x00")[:6]
        else:
            padded = body.ljust(((len(body) + 2 + 7) // 8) * 8 - 2, b"\x00")
            chain += struct.pack("!BB", nh, (len(padded) + 2) // 8 - 1) + padded
    first = types[0]
    body = chain + payload
    header = struct.pack(
        "!IHBB16s16s",
        (6 << 28) | (flow_label & 0xFFFFF),
        len(body),
        first,
        hop_limit,
        s.packed,
        d.packed,
    )
    return header + body


def ip(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64) -> bytes:
    """IPv4 or IPv6 (by address family) carrying `payload` as protocol `proto`; `ttl` is the
    IPv4 TTL or the IPv6 hop limit."""
    s, _ = _addrs(src, dst)
    if s.version == 4:
        return ipv4(src, dst, proto, payload, ttl=ttl)
    return ipv6(src, dst, proto, payload, hop_limit=ttl)


# --- UDP / UDPLITE -----------------------------------------------------------------------------


def udp_segment(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    length: int | None = None,
    checksum: int | None = None,
) -> bytes:
    """A UDP header + payload. `length` overrides the length field (the checksum is still
    computed over the segment as present, as the receiver verifies it); `checksum` overrides
    the checksum (0 = none)."""
    ulen = 8 + len(payload) if length is None else length
    seg = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    if checksum is None:
        checksum = l4_checksum(src, dst, IPPROTO_UDP, seg) or 0xFFFF
    return _with_checksum(seg, 6, checksum)


def udp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    length: int | None = None,
    checksum: int | None = None,
    ttl: int = 64,
) -> bytes:
    """A whole IPv4/IPv6 UDP packet with a correct checksum (unless overridden)."""
    seg = udp_segment(src, dst, sport, dport, payload, length=length, checksum=checksum)
    return ip(src, dst, IPPROTO_UDP, seg, ttl=ttl)


def udplite(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    coverage: int = 0,
    pseudo_proto: int = IPPROTO_UDP,
    pseudo_length: int | None = None,
    checksum: int | None = None,
    ttl: int = 64,
) -> bytes:
    """A UDPLITE packet; `coverage` 0 = whole segment (the checksum covers that much);
    `checksum` overrides the checksum (0 = missing, which UDPLITE does not allow).

    The checksum is computed the way the kernel's conntrack verifies it (observed on 6.18;
    see :func:`udplite_pseudo_length`): a pseudo-header naming `pseudo_proto`, by default 17
    (RFC 3828 says 136; conntrack finds such a packet INVALID with nf_conntrack_checksum=1),
    and `pseudo_length`, by default the segment's length over IPv6 but only its low byte over
    IPv4 (``pseudo_length=len(segment)``, what RFC 3828 says, makes an IPv4 datagram of 256
    bytes or more INVALID for conntrack)."""
    seg = struct.pack("!HHHH", sport, dport, coverage, 0) + payload
    if checksum is None:
        s, d = _addrs(src, dst)
        checksum = _udplite_checksum(s, d, seg, coverage, pseudo_proto, pseudo_length) or 0xFFFF
    return ip(src, dst, IPPROTO_UDPLITE, _with_checksum(seg, 6, checksum), ttl=ttl)


# --- TCP ---------------------------------------------------------------------------------------

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80

_TCP_FLAG_LETTERS = {
    "F": TCP_FIN,
    "S": TCP_SYN,
    "R": TCP_RST,
    "P": TCP_PSH,
    "A": TCP_ACK,
    "U": TCP_URG,
    "E": TCP_ECE,
    "C": TCP_CWR,
}


def tcp_flags(flags: int | str) -> int:
    """TCP flags as the header's flag byte: an int as is, or letters as scapy writes them
    ("S", "SA", "FA", "R", "RA", "PA", "A", "FPU", ""; F S R P A U E C)."""
    if isinstance(flags, int):
        if not 0 <= flags <= 0xFF:
            raise ValueError(f"TCP flags out of range: {flags:#x}")
        return flags
    value = 0
    for letter in flags.upper():
        if letter not in _TCP_FLAG_LETTERS:
            raise ValueError(f"unknown TCP flag letter {letter!r} in {flags!r}")
        value |= _TCP_FLAG_LETTERS[letter]
    return value


def tcp_opt_nop() -> bytes:
    """TCP option NOP (kind 1)."""
    return b"\x01"


def tcp_opt_eol() -> bytes:
    """TCP option End of Option List (kind 0)."""
    return b"\x00"


def tcp_opt_mss(mss: int = 1460) -> bytes:
    """TCP option Maximum Segment Size (kind 2, length 4)."""
    return struct.pack("!BBH", 2, 4, mss)


def tcp_opt_wscale(shift: int = 7) -> bytes:
    """TCP option Window Scale (kind 3, length 3); the kernel caps the shift at 14."""
    return struct.pack("!BBB", 3, 3, shift)


def tcp_opt_sack_perm() -> bytes:
    """TCP option SACK-Permitted (kind 4, length 2)."""
    return b"\x04\x02"


def tcp_opt_sack(blocks: Iterable[tuple[int, int]]) -> bytes:
    """TCP option SACK (kind 5) with (left edge, right edge) blocks (at most 4 fit)."""
    edges = [(left & 0xFFFFFFFF, right & 0xFFFFFFFF) for left, right in blocks]
    body = b"".join(struct.pack("!II", left, right) for left, right in edges)
    return struct.pack("!BB", 5, 2 + len(body)) + body


def tcp_opt_timestamps(tsval: int, tsecr: int = 0) -> bytes:
    """TCP option Timestamps (kind 8, length 10)."""
    return struct.pack("!BBII", 8, 10, tsval & 0xFFFFFFFF, tsecr & 0xFFFFFFFF)


def tcp_syn_options(
    *, mss: int = 1460, wscale: int | None = 7, sack_perm: bool = True, tsval: int | None = None
) -> bytes:
    """The options Linux puts on a SYN: MSS, SACK-permitted, timestamps, NOP, window scale
    (each optional), padded with NOPs to a multiple of 4 bytes."""
    opts = tcp_opt_mss(mss)
    if sack_perm and tsval is not None:
        opts += tcp_opt_sack_perm() + tcp_opt_timestamps(tsval)
    elif sack_perm:
        opts += tcp_opt_nop() + tcp_opt_nop() + tcp_opt_sack_perm()
    elif tsval is not None:
        opts += tcp_opt_nop() + tcp_opt_nop() + tcp_opt_timestamps(tsval)
    if wscale is not None:
        opts += tcp_opt_nop() + tcp_opt_wscale(wscale)
    return opts + tcp_opt_nop() * (-len(opts) % 4)


def tcp_segment(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int = 0,
    flags: int | str,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
    checksum: int | None = None,
    urg_ptr: int = 0,
    data_offset: int | None = None,
) -> bytes:
    """A TCP header + options + payload. Options are padded with EOL (zero) bytes to a
    multiple of 4; `data_offset` (in 32-bit words) overrides the header length field (the
    checksum is still computed over the segment as present); `checksum` overrides the
    checksum."""
    opts = options + b"\x00" * (-len(options) % 4)
    if len(opts) > 40:
        raise ValueError(f"TCP options too long: {len(opts)} bytes (at most 40)")
    doff = (20 + len(opts)) // 4 if data_offset is None else data_offset
    seg = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            (doff & 0xF) << 4,
            tcp_flags(flags),
            window,
            0,
            urg_ptr,
        )
        + opts
        + payload
    )
    if checksum is None:
        checksum = l4_checksum(src, dst, IPPROTO_TCP, seg)
    return _with_checksum(seg, 16, checksum)


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int = 0,
    flags: int | str,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
    checksum: int | None = None,
    ttl: int = 64,
    urg_ptr: int = 0,
    data_offset: int | None = None,
) -> bytes:
    """A whole IPv4/IPv6 TCP packet with a correct checksum (unless overridden). `seq` and
    `ack` are taken modulo 2**32; `flags` is the flag byte or letters ("SA", "FA"...);
    `options` are raw option bytes (see the tcp_opt_* helpers), padded to 4 bytes;
    `data_offset` overrides the header length field (see :func:`tcp_segment`)."""
    seg = tcp_segment(
        src,
        dst,
        sport,
        dport,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        payload=payload,
        options=options,
        checksum=checksum,
        urg_ptr=urg_ptr,
        data_offset=data_offset,
    )
    return ip(src, dst, IPPROTO_TCP, seg, ttl=ttl)


# --- ICMP --------------------------------------------------------------------------------------

ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_PORT_UNREACH = 3  # code
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_TIMESTAMP = 13
ICMP_TIMESTAMPREPLY = 14


def icmp_message(
    type_: int,
    code: int,
    rest: bytes = b"\x00\x00\x00\x00",
    body: bytes = b"",
    *,
    checksum: int | None = None,
) -> bytes:
    """An ICMPv4 message: type, code, checksum, 4 bytes `rest`, then `body`."""
    msg = struct.pack("!BBH", type_, code, 0) + rest + body
    if checksum is None:
        checksum = inet_checksum(msg)
    return _with_checksum(msg, 2, checksum)


def icmp(
    src: str,
    dst: str,
    type_: int,
    code: int = 0,
    *,
    ident: int = 0,
    seq: int = 0,
    body: bytes = b"",
    checksum: int | None = None,
    ttl: int = 64,
) -> bytes:
    """An IPv4 ICMP packet whose 4 `rest` bytes are (identifier, sequence)."""
    msg = icmp_message(type_, code, struct.pack("!HH", ident, seq), body, checksum=checksum)
    return ipv4(src, dst, IPPROTO_ICMP, msg, ttl=ttl)


def icmp_echo(
    src: str,
    dst: str,
    ident: int,
    seq: int = 1,
    *,
    reply: bool = False,
    code: int = 0,
    body: bytes = b"ping-data",
) -> bytes:
    """ICMP echo request (type 8) or, with `reply`, echo reply (type 0)."""
    t = ICMP_ECHOREPLY if reply else ICMP_ECHO
    return icmp(src, dst, t, code, ident=ident, seq=seq, body=body)


def icmp_error(
    src: str,
    dst: str,
    type_: int,
    code: int,
    quoted: bytes,
    *,
    quote_len: int = 28,
    rest: bytes = b"\x00\x00\x00\x00",
    ttl: int = 64,
) -> bytes:
    """An IPv4 ICMP error (e.g. type 3 code 3, port unreachable) from `src` to `dst` quoting
    the first `quote_len` bytes of the offending packet `quoted` (28 = IP header + 8);
    `rest` is the 4 bytes after the checksum (the next-hop MTU for "fragmentation needed")."""
    msg = icmp_message(type_, code, rest, quoted[:quote_len])
    return ipv4(src, dst, IPPROTO_ICMP, msg, ttl=ttl)


# --- ICMPv6 ------------------------------------------------------------------------------------

ICMPV6_DEST_UNREACH = 1
ICMPV6_PKT_TOOBIG = 2
ICMPV6_TIME_EXCEED = 3
ICMPV6_PORT_UNREACH = 4  # code
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
NDISC_NEIGHBOUR_SOLICITATION = 135
NDISC_REDIRECT = 137


def icmp6(
    src: str,
    dst: str,
    type_: int,
    code: int = 0,
    rest: bytes = b"\x00\x00\x00\x00",
    body: bytes = b"",
    *,
    hop_limit: int = 64,
    checksum: int | None = None,
) -> bytes:
    """An IPv6 ICMPv6 packet, checksum with the pseudo-header."""
    msg = struct.pack("!BBH", type_, code, 0) + rest + body
    if checksum is None:
        checksum = l4_checksum(src, dst, IPPROTO_ICMPV6, msg)
    msg = _with_checksum(msg, 2, checksum)
    return ipv6(src, dst, IPPROTO_ICMPV6, msg, hop_limit=hop_limit)


def icmp6_echo(
    src: str,
    dst: str,
    ident: int,
    seq: int = 1,
    *,
    reply: bool = False,
    body: bytes = b"ping6",
    hop_limit: int = 64,
) -> bytes:
    """ICMPv6 echo request (type 128) or, with `reply`, echo reply (type 129)."""
    t = ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST
    return icmp6(src, dst, t, 0, struct.pack("!HH", ident, seq), body, hop_limit=hop_limit)


def icmp6_error(
    src: str,
    dst: str,
    type_: int,
    code: int,
    quoted: bytes,
    *,
    quote_len: int = 1232,
    rest: bytes = b"\x00\x00\x00\x00",
    hop_limit: int = 64,
) -> bytes:
    """An ICMPv6 error (1 = unreachable, code 4 = port unreachable; 2 = packet too big, with
    the MTU in `rest`; 3 = time exceeded) quoting the first `quote_len` bytes of `quoted`
    (1232 keeps the error within the IPv6 minimum MTU of 1280)."""
    return icmp6(src, dst, type_, code, rest, quoted[:quote_len], hop_limit=hop_limit)


def icmp6_neighbour_solicitation(src: str, dst: str, target: str) -> bytes:
    """A neighbour solicitation (type 135, hop limit 255) for `target`."""
    body = ipaddress.IPv6Address(target).packed
    return icmp6(
        src, dst, NDISC_NEIGHBOUR_SOLICITATION, 0, b"\x00\x00\x00\x00", body, hop_limit=255
    )


def icmp6_redirect(
    src: str,
    dst: str,
    target: str,
    destination: str,
    *,
    redirected: bytes | None = b"",
    hop_limit: int = 255,
    code: int = 0,
) -> bytes:
    """An ICMPv6 redirect (type 137): `destination` is better reached through `target`.
    `redirected` is the packet the "redirected header" option (type 4) quotes; None leaves the
    option out. RFC 4861 wants hop limit 255 and a link-local source."""
    body = ipaddress.IPv6Address(target).packed + ipaddress.IPv6Address(destination).packed
    if redirected is not None:
        data = redirected + b"\x00" * (-(len(redirected) + 8) % 8)
        body += struct.pack("!BB6x", 4, (len(data) + 8) // 8) + data
    return icmp6(src, dst, NDISC_REDIRECT, code, b"\x00\x00\x00\x00", body, hop_limit=hop_limit)


# --- GRE, ESP, generic -------------------------------------------------------------------------


def gre(
    src: str,
    dst: str,
    payload: bytes = b"",
    *,
    version: int = 0,
    protocol: int = 0x0800,
    key: int | None = None,
    with_checksum: bool = False,
) -> bytes:
    """A GRE packet (RFC 2784/2890). With `with_checksum` the C bit is set and the checksum
    (over the GRE header and payload) is correct; `key` adds the K field. For version 1
    (PPTP) `key` is (payload length << 16 | call id)."""
    flags = version & 0x7
    if with_checksum:
        flags |= 0x8000
    if key is not None:
        flags |= 0x2000
    hdr = struct.pack("!HH", flags, protocol)
    csum_off = None
    if with_checksum:
        csum_off = len(hdr)
        hdr += b"\x00\x00\x00\x00"
    if key is not None:
        hdr += struct.pack("!I", key)
    seg = hdr + payload
    if csum_off is not None:
        seg = _with_checksum(seg, csum_off, inet_checksum(seg))
    return ip(src, dst, IPPROTO_GRE, seg)


def esp(src: str, dst: str, spi: int, seq: int = 1, payload: bytes = b"\xaa" * 16) -> bytes:
    """An ESP packet (protocol 50): SPI, sequence number, opaque payload."""
    return ip(src, dst, IPPROTO_ESP, struct.pack("!II", spi, seq) + payload)


def generic(src: str, dst: str, proto: int, payload: bytes = b"\x00" * 8) -> bytes:
    """Any protocol number with an opaque payload."""
    return ip(src, dst, proto, payload)


# --- SCTP --------------------------------------------------------------------------------------

# Chunk types (RFC 9260 §3.2).
SCTP_DATA = 0
SCTP_INIT = 1
SCTP_INIT_ACK = 2
SCTP_SACK = 3
SCTP_HEARTBEAT = 4
SCTP_HEARTBEAT_ACK = 5
SCTP_ABORT = 6
SCTP_SHUTDOWN = 7
SCTP_SHUTDOWN_ACK = 8
SCTP_ERROR = 9
SCTP_COOKIE_ECHO = 10
SCTP_COOKIE_ACK = 11
SCTP_SHUTDOWN_COMPLETE = 14
#: The T bit of ABORT and SHUTDOWN_COMPLETE: the verification tag is the peer's.
SCTP_FLAG_T = 0x01

_SCTP_CHUNK_NAMES = {
    SCTP_DATA: "DATA",
    SCTP_INIT: "INIT",
    SCTP_INIT_ACK: "INIT_ACK",
    SCTP_SACK: "SACK",
    SCTP_HEARTBEAT: "HEARTBEAT",
    SCTP_HEARTBEAT_ACK: "HEARTBEAT_ACK",
    SCTP_ABORT: "ABORT",
    SCTP_SHUTDOWN: "SHUTDOWN",
    SCTP_SHUTDOWN_ACK: "SHUTDOWN_ACK",
    SCTP_ERROR: "ERROR",
    SCTP_COOKIE_ECHO: "COOKIE_ECHO",
    SCTP_COOKIE_ACK: "COOKIE_ACK",
    SCTP_SHUTDOWN_COMPLETE: "SHUTDOWN_COMPLETE",
}


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli), as SCTP uses it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def sctp_chunk(
    type_: int, value: bytes = b"", flags: int = 0, *, length: int | None = None
) -> bytes:
    """One SCTP chunk, padded to 4 bytes; `length` forces the length field."""
    n = 4 + len(value) if length is None else length
    raw = struct.pack("!BBH", type_, flags, n) + value
    return raw + b"\x00" * (-len(raw) % 4)


def sctp_init_body(tag: int, tsn: int = 1, *, a_rwnd: int = 65536, streams: int = 10) -> bytes:
    """The fixed part of INIT/INIT_ACK: initiate tag, a_rwnd, outbound/inbound streams, initial
    TSN."""
    return struct.pack("!IIHHI", tag, a_rwnd, streams, streams, tsn)


def sctp_data_chunk(tsn: int, payload: bytes, *, stream: int = 0, ssn: int = 0) -> bytes:
    """A DATA chunk (beginning and end of a message) with payload protocol id 0."""
    value = struct.pack("!IHHI", tsn & 0xFFFFFFFF, stream, ssn & 0xFFFF, 0) + payload
    return sctp_chunk(SCTP_DATA, value, flags=0x03)


def sctp_sack_chunk(cum_tsn: int, a_rwnd: int = 65536) -> bytes:
    """A SACK chunk without gap blocks."""
    return sctp_chunk(SCTP_SACK, struct.pack("!IIHH", cum_tsn & 0xFFFFFFFF, a_rwnd, 0, 0))


def sctp_heartbeat_info(info: bytes = b"hbinfo\x00\x00") -> bytes:
    """The Heartbeat Info parameter (type 1) HEARTBEAT and HEARTBEAT_ACK carry."""
    param = struct.pack("!HH", 1, 4 + len(info)) + info
    return param + b"\x00" * (-len(param) % 4)


def sctp_segment(
    sport: int, dport: int, vtag: int, chunks: bytes, *, crc: int | None = None
) -> bytes:
    """The SCTP common header and `chunks`, with the CRC32c (stored little-endian) or `crc`."""
    head = struct.pack("!HHI", sport, dport, vtag & 0xFFFFFFFF)
    value = crc32c(head + b"\x00\x00\x00\x00" + chunks) if crc is None else crc
    return head + struct.pack("<I", value) + chunks


def sctp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    vtag: int,
    *chunks: bytes,
    crc: int | None = None,
    ttl: int = 64,
) -> bytes:
    """An IPv4/IPv6 packet carrying SCTP with the given chunks (see :func:`sctp_chunk`)."""
    seg = sctp_segment(sport, dport, vtag, b"".join(chunks), crc=crc)
    return ip(src, dst, IPPROTO_SCTP, seg, ttl=ttl)


# --- fragments ---------------------------------------------------------------------------------


def ipv4_fragment(packet: bytes, offset: int, length: int, *, more: bool | None = None) -> bytes:
    """The IPv4 fragment of an unfragmented IPv4 `packet` holding `length` bytes of its payload
    from byte `offset` (a multiple of 8). `more` (MF) defaults to "not the end of the payload".
    The header (options included) is copied, with its checksum recomputed."""
    ihl = (packet[0] & 0x0F) * 4
    if offset % 8:
        raise ValueError(f"fragment offset {offset} is not a multiple of 8")
    payload = packet[ihl:]
    data = payload[offset : offset + length]
    if more is None:
        more = offset + len(data) < len(payload)
    flags_off = struct.unpack("!H", packet[6:8])[0] & 0x4000  # keep DF
    flags_off |= (0x2000 if more else 0) | (offset // 8)
    header = bytearray(packet[:ihl])
    header[2:4] = struct.pack("!H", ihl + len(data))
    header[6:8] = struct.pack("!H", flags_off)
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", inet_checksum(bytes(header)))
    return bytes(header) + data


def ipv6_fragment(
    packet: bytes, offset: int, length: int, ident: int, *, more: bool | None = None
) -> bytes:
    """The IPv6 fragment of an unfragmented IPv6 `packet` (no extension headers) holding
    `length` bytes of its payload from byte `offset` (a multiple of 8), in a fragment header
    with identification `ident`. `more` (M) defaults to "not the end of the payload"."""
    if offset % 8:
        raise ValueError(f"fragment offset {offset} is not a multiple of 8")
    payload = packet[40:]
    data = payload[offset : offset + length]
    if more is None:
        more = offset + len(data) < len(payload)
    frag = struct.pack("!BBHI", packet[6], 0, offset | (1 if more else 0), ident & 0xFFFFFFFF)
    header = bytearray(packet[:40])
    header[4:6] = struct.pack("!H", len(frag) + len(data))
    header[6] = IPPROTO_FRAGMENT
    return bytes(header) + frag + data


def fragments(packet: bytes, size: int, *, ident: int = 0x1234) -> list[bytes]:
    """An unfragmented IPv4 or IPv6 `packet` cut into fragments of `size` payload bytes (a
    multiple of 8; the last one takes the rest), in order. The IPv4 identification field is
    the packet's own; `ident` is the IPv6 fragment header's."""
    if size <= 0 or size % 8:
        raise ValueError(f"fragment size {size} is not a positive multiple of 8")
    v6 = packet[0] >> 4 == 6
    total = len(packet) - (40 if v6 else (packet[0] & 0x0F) * 4)
    out = []
    for off in range(0, max(total, 1), size):
        if v6:
            out.append(ipv6_fragment(packet, off, size, ident))
        else:
            out.append(ipv4_fragment(packet, off, size))
    return out


# --- taking packets apart ------------------------------------------------------------------------


def l4_offset(packet: bytes) -> tuple[int, int]:
    """(protocol, offset of the L4 header) of an unfragmented IPv4 or IPv6 packet, IPv6
    extension headers walked. Raises ValueError for a fragment or a malformed header."""
    parsed = _l3(packet)
    if isinstance(parsed, str):
        raise ValueError(parsed)
    if parsed.frag_note:
        raise ValueError("a fragment has no whole L4 header")
    return parsed.proto, len(packet) - len(parsed.l4)


def replace_l4(packet: bytes, segment: bytes) -> bytes:
    """`packet` with its L4 bytes replaced by `segment`, the IPv4 total length and header
    checksum or the IPv6 payload length updated (L4 checksum untouched: see
    :func:`fix_checksum`)."""
    _, off = l4_offset(packet)
    out = bytearray(packet[:off] + segment)
    if out[0] >> 4 == 4:
        out[2:4] = struct.pack("!H", len(out))
        ihl = (out[0] & 0x0F) * 4
        out[10:12] = b"\x00\x00"
        out[10:12] = struct.pack("!H", inet_checksum(bytes(out[:ihl])))
    else:
        out[4:6] = struct.pack("!H", len(out) - 40)
    return bytes(out)


def set_ttl(packet: bytes, ttl: int) -> bytes:
    """`packet` with another IPv4 TTL (header checksum updated) or IPv6 hop limit."""
    out = bytearray(packet)
    if out[0] >> 4 == 4:
        out[8] = ttl
        ihl = (out[0] & 0x0F) * 4
        out[10:12] = b"\x00\x00"
        out[10:12] = struct.pack("!H", inet_checksum(bytes(out[:ihl])))
    else:
        out[7] = ttl
    return bytes(out)


def ip_addresses(packet: bytes) -> tuple[str, str]:
    """(source, destination) of an IPv4 or IPv6 packet, as strings."""
    if packet[0] >> 4 == 4:
        return str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
    return str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40]))


def fix_checksum(packet: bytes) -> bytes:
    """`packet` (unfragmented) with its L4 checksum recomputed: TCP, UDP (left at 0 when it is
    0), UDPLITE (over its checksum coverage, with the pseudo-header conntrack checks it with:
    protocol 17, over IPv4 the low byte of the length, see :func:`udplite_pseudo_length`;
    unless the coverage is out of range), ICMP, ICMPv6, SCTP (CRC32c). Other protocols are
    returned unchanged."""
    proto, off = l4_offset(packet)
    seg = bytearray(packet[off:])
    src, dst = ip_addresses(packet)
    if proto == IPPROTO_TCP and len(seg) >= 18:
        seg[16:18] = b"\x00\x00"
        seg[16:18] = struct.pack("!H", l4_checksum(src, dst, proto, bytes(seg)))
    elif proto == IPPROTO_UDP and len(seg) >= 8 and seg[6:8] != b"\x00\x00":
        seg[6:8] = b"\x00\x00"
        seg[6:8] = struct.pack("!H", l4_checksum(src, dst, proto, bytes(seg)) or 0xFFFF)
    elif proto == IPPROTO_UDPLITE and len(seg) >= 8:
        cov = struct.unpack("!H", seg[4:6])[0]
        if cov == 0 or 8 <= cov <= len(seg):
            seg[6:8] = b"\x00\x00"
            s, d = _addrs(src, dst)
            value = _udplite_checksum(s, d, bytes(seg), cov, IPPROTO_UDP, None)
            seg[6:8] = struct.pack("!H", value or 0xFFFF)
    elif proto == IPPROTO_ICMP and len(seg) >= 4:
        seg[2:4] = b"\x00\x00"
        seg[2:4] = struct.pack("!H", inet_checksum(bytes(seg)))
    elif proto == IPPROTO_ICMPV6 and len(seg) >= 4:
        seg[2:4] = b"\x00\x00"
        seg[2:4] = struct.pack("!H", l4_checksum(src, dst, proto, bytes(seg)))
    elif proto == IPPROTO_SCTP and len(seg) >= 12:
        seg[8:12] = b"\x00\x00\x00\x00"
        seg[8:12] = struct.pack("<I", crc32c(bytes(seg)))
    return packet[:off] + bytes(seg)


# --- description -------------------------------------------------------------------------------

_FLAG_ORDER: tuple[tuple[int, str], ...] = (
    (TCP_FIN, "F"),
    (TCP_SYN, "S"),
    (TCP_RST, "R"),
    (TCP_PSH, "P"),
    (TCP_ACK, "A"),
    (TCP_URG, "U"),
    (TCP_ECE, "E"),
    (TCP_CWR, "C"),
)
_ICMP_NAMES = {
    0: "echo-reply",
    3: "unreachable",
    4: "source-quench",
    5: "redirect",
    8: "echo-request",
    11: "time-exceeded",
    12: "parameter-problem",
    13: "timestamp",
    14: "timestamp-reply",
}
_ICMP6_NAMES = {
    1: "unreachable",
    2: "packet-too-big",
    3: "time-exceeded",
    4: "parameter-problem",
    128: "echo-request",
    129: "echo-reply",
    133: "router-solicitation",
    134: "router-advertisement",
    135: "neighbour-solicitation",
    136: "neighbour-advertisement",
    137: "redirect",
}
_ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
_PROTO_NAMES = {
    IPPROTO_TCP: "TCP",
    IPPROTO_UDP: "UDP",
    IPPROTO_UDPLITE: "UDPLITE",
    IPPROTO_ICMP: "ICMP",
    IPPROTO_ICMPV6: "ICMPv6",
    IPPROTO_SCTP: "SCTP",
    IPPROTO_GRE: "GRE",
    IPPROTO_ESP: "ESP",
}


def _flag_letters(flags: int) -> str:
    return "".join(letter for bit, letter in _FLAG_ORDER if flags & bit) or "none"


class _L3(NamedTuple):
    src: str
    dst: str
    proto: int
    ttl: int
    l4: bytes
    version: int
    frag_note: str  # "" unless a fragment
    frag_offset: int
    bad_header: bool


def _l3(packet: bytes) -> _L3 | str:
    """The parts of an IP packet :func:`describe` shows, or why it has no usable L3 header."""
    if not packet:
        return "empty packet"
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            return f"IPv4 truncated ({len(packet)} bytes)"
        ihl = (packet[0] & 0x0F) * 4
        frag = struct.unpack("!H", packet[6:8])[0]
        note, offset = "", (frag & 0x1FFF) * 8
        if frag & 0x3FFF:
            ident = struct.unpack("!H", packet[4:6])[0]
            note = f"fragment id={ident:#x} off={offset}{' MF' if frag & 0x2000 else ''}"
        return _L3(
            str(ipaddress.IPv4Address(packet[12:16])),
            str(ipaddress.IPv4Address(packet[16:20])),
            packet[9],
            packet[8],
            packet[ihl:],
            4,
            note,
            offset,
            ihl < 20 or ones_complement_sum(packet[:ihl]) != 0xFFFF,
        )
    if version == 6:
        if len(packet) < 40:
            return f"IPv6 truncated ({len(packet)} bytes)"
        nh, off, note, offset = packet[6], 40, "", 0
        while nh in (0, 43, 60, IPPROTO_FRAGMENT) and off + 8 <= len(packet):
            if nh == IPPROTO_FRAGMENT:
                fo, ident = struct.unpack("!HI", packet[off + 2 : off + 8])
                offset = fo & 0xFFF8
                note = f"fragment id={ident:#x} off={offset}{' M' if fo & 1 else ''}"
                nh, off = packet[off], off + 8
                if offset:
                    break
            else:
                nh, off = packet[off], off + (packet[off + 1] + 1) * 8
        return _L3(
            str(ipaddress.IPv6Address(packet[8:24])),
            str(ipaddress.IPv6Address(packet[24:40])),
            nh,
            packet[7],
            packet[off:],
            6,
            note,
            offset,
            False,
        )
    return f"not IP (version {version})"


def _l4_ok(src: str, dst: str, proto: int, l4: bytes) -> bool:
    """Whether the L4 checksum of a whole segment verifies (True where there is none)."""
    if proto in (IPPROTO_TCP, IPPROTO_ICMPV6) or (proto == IPPROTO_UDP and l4[6:8] != b"\0\0"):
        return l4_checksum(src, dst, proto, l4) == 0
    if proto == IPPROTO_UDPLITE and len(l4) >= 8:
        cov = struct.unpack("!H", l4[4:6])[0]
        if cov and not 8 <= cov <= len(l4):
            return True  # no checksum to speak of: the coverage is what is wrong
        s, d = _addrs(src, dst)
        return _udplite_checksum(s, d, l4, cov, IPPROTO_UDP, None) == 0
    if proto == IPPROTO_ICMP:
        return inet_checksum(l4) == 0
    if proto == IPPROTO_SCTP and len(l4) >= 12:
        stored: int = struct.unpack("<I", l4[8:12])[0]
        return crc32c(l4[:8] + b"\0\0\0\0" + l4[12:]) == stored
    return True


def describe(packet: bytes) -> str:
    """One line about an IP packet, tcpdump-like, for reading traces: addresses, ports, TCP
    flags, sequence and acknowledgement numbers, ICMP types (with the packet an error quotes),
    SCTP chunks, fragments; "(bad checksum)" where the L4 checksum does not verify. Never
    raises: a malformed packet is described as such.

    >>> describe(udp("10.1.0.2", "10.2.0.2", 5000, 53, b"query"))
    'UDP 10.1.0.2:5000 > 10.2.0.2:53 len=5'
    """
    return _describe(packet, partial=False)


def _describe(packet: bytes, *, partial: bool) -> str:
    """`describe`; `partial`: the packet is quoted by an ICMP error, so it may be cut short
    (no lengths or checksums shown)."""
    parsed = _l3(packet)
    if isinstance(parsed, str):
        return parsed
    src, dst, proto, ttl, l4 = parsed.src, parsed.dst, parsed.proto, parsed.ttl, parsed.l4
    tail = f" ttl={ttl}" if ttl <= 1 else ""
    if parsed.bad_header:
        tail += " (bad IP header)"
    if parsed.frag_offset:
        name = _PROTO_NAMES.get(proto, f"proto {proto}")
        return f"{name} {src} > {dst} {parsed.frag_note} len={len(l4)}{tail}"
    if parsed.frag_note or partial:
        body = _describe_l4(src, dst, proto, l4, parsed.version, partial=True)
        return f"{body} {parsed.frag_note}{tail}" if parsed.frag_note else f"{body}{tail}"
    bad = "" if _l4_ok(src, dst, proto, l4) else " (bad checksum)"
    return f"{_describe_l4(src, dst, proto, l4, parsed.version, partial=False)}{bad}{tail}"


def _describe_l4(src: str, dst: str, proto: int, l4: bytes, version: int, *, partial: bool) -> str:
    name = _PROTO_NAMES.get(proto, f"proto {proto}")

    def host(addr: str, port: int) -> str:
        return f"[{addr}]:{port}" if version == 6 else f"{addr}:{port}"

    if partial and proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP):
        if len(l4) < 4:
            return f"{name} {src} > {dst} ({len(l4)} bytes)"
        sport, dport = struct.unpack("!HH", l4[:4])
        more = f" seq={struct.unpack('!I', l4[4:8])[0]}" if proto == IPPROTO_TCP else ""
        if proto == IPPROTO_TCP and len(l4) >= 14:
            more = f" [{_flag_letters(l4[13])}]" + more
        return f"{name} {host(src, sport)} > {host(dst, dport)}{more if len(l4) >= 8 else ''}"
    if proto == IPPROTO_TCP:
        if len(l4) < 20:
            return f"TCP {src} > {dst} truncated ({len(l4)} bytes)"
        sport, dport, seq, ack, doff, flags, win = struct.unpack("!HHIIBBH", l4[:16])
        hlen = (doff >> 4) * 4
        extra = "" if 20 <= hlen <= len(l4) else f" doff={doff >> 4}"
        return (
            f"TCP {host(src, sport)} > {host(dst, dport)} [{_flag_letters(flags)}] "
            f"seq={seq} ack={ack} win={win} len={max(len(l4) - max(hlen, 20), 0)}{extra}"
        )
    if proto in (IPPROTO_UDP, IPPROTO_UDPLITE):
        if len(l4) < 8:
            return f"{name} {src} > {dst} truncated ({len(l4)} bytes)"
        sport, dport, ulen = struct.unpack("!HHH", l4[:6])
        field = "cov" if proto == IPPROTO_UDPLITE else "ulen"
        mismatch = "" if proto == IPPROTO_UDPLITE and ulen == 0 else f" {field}={ulen}"
        if proto == IPPROTO_UDP and ulen == len(l4):
            mismatch = ""
        return f"{name} {host(src, sport)} > {host(dst, dport)} len={len(l4) - 8}{mismatch}"
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if len(l4) < 8:
            return f"{name} {src} > {dst} truncated ({len(l4)} bytes)"
        type_, code = l4[0], l4[1]
        names = _ICMP_NAMES if proto == IPPROTO_ICMP else _ICMP6_NAMES
        what = names.get(type_, f"type={type_}")
        if code:
            what += f" code={code}"
        ident, seq = struct.unpack("!HH", l4[4:8])
        if (proto == IPPROTO_ICMP and type_ in _ICMP_ERRORS) or (
            proto == IPPROTO_ICMPV6 and type_ < 128
        ):
            return f"{name} {src} > {dst} {what} quoting [{_describe(l4[8:], partial=True)}]"
        if type_ in (0, 8, 13, 14, 128, 129):
            what += f" id={ident} seq={seq}"
        return f"{name} {src} > {dst} {what}"
    if proto == IPPROTO_SCTP:
        if len(l4) < 12:
            return f"SCTP {src} > {dst} truncated ({len(l4)} bytes)"
        sport, dport, vtag = struct.unpack("!HHI", l4[:8])
        chunks: list[str] = []
        off = 12
        while off + 4 <= len(l4) and len(chunks) < 8:
            ctype, cflags, clen = struct.unpack("!BBH", l4[off : off + 4])
            label = _SCTP_CHUNK_NAMES.get(ctype, f"chunk {ctype}")
            if ctype in (SCTP_INIT, SCTP_INIT_ACK) and clen >= 8 and off + 8 <= len(l4):
                label += f" tag={struct.unpack('!I', l4[off + 4 : off + 8])[0]:#x}"
            if ctype in (SCTP_ABORT, SCTP_SHUTDOWN_COMPLETE) and cflags & SCTP_FLAG_T:
                label += " T"
            if clen < 4:
                chunks.append(f"{label} len={clen}")
                break
            chunks.append(label)
            off += clen + (-clen % 4)
        shown = ", ".join(chunks) or "no chunks"
        return f"SCTP {host(src, sport)} > {host(dst, dport)} vtag={vtag:#x} [{shown}]"
    if proto == IPPROTO_GRE and len(l4) >= 4:
        flags, ptype = struct.unpack("!HH", l4[:4])
        return f"GRE {src} > {dst} v{flags & 7} proto={ptype:#06x} len={len(l4)}"
    return f"{name} {src} > {dst} len={len(l4)}"


# --- captures ----------------------------------------------------------------------------------


def ethernet(
    packet: bytes,
    *,
    src_mac: bytes = b"\x02\x00\x00\x00\x00\x01",
    dst_mac: bytes = b"\x02\x00\x00\x00\x00\x02",
) -> bytes:
    """An Ethernet II frame carrying an IPv4 or IPv6 packet."""
    ethertype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    return dst_mac + src_mac + struct.pack("!H", ethertype) + packet


def pcap(
    records: Iterable[tuple[float, bytes]],
    *,
    linktype: int = LINKTYPE_RAW,
    nanoseconds: bool = False,
) -> bytes:
    """A classic little-endian pcap file of (timestamp seconds, frame) records: microsecond
    timestamps, or nanosecond ones (magic 0xa1b23c4d) with `nanoseconds`."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    scale = 1_000_000_000 if nanoseconds else 1_000_000
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 262144, linktype)]
    for ts, frame in records:
        ticks = round(ts * scale)
        sec, frac = divmod(ticks, scale)
        out.append(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def verify_ipv4_header(packet: bytes) -> bool:
    """True if the IPv4 header checksum of `packet` verifies."""
    ihl = (packet[0] & 0x0F) * 4
    return ones_complement_sum(packet[:ihl]) == 0xFFFF
