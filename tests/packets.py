"""Builders of test packets as bytes: IPv4/IPv6 with TCP, UDP, ICMP, ICMPv6, GRE, ESP or any other
protocol, with correct checksums (written from scratch with `struct`, no scapy).

Every builder returns the whole packet starting at the IP header, as `nfct.Skb` takes it. The
address family is chosen from the addresses (`"10.1.0.2"` → IPv4, `"fd00:1::2"` → IPv6).

Checksums are computed the way the receiver (and conntrack's `nf_ip_checksum`) verifies them:
over the whole L4 segment present in the packet, with the pseudo-header length being that
segment's length. For normal packets that equals the UDP length field. Pass ``checksum=`` to
force a value (e.g. a wrong one, or 0 for "no UDP checksum").

Also: `pcap()` writes a classic pcap file (LINKTYPE_RAW) from (timestamp, packet) pairs.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_UDPLITE = 136

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
    """IPv4 or IPv6 (by address family) carrying `payload` as protocol `proto`."""
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
) -> bytes:
    """A UDPLITE packet; `coverage` 0 = whole segment (the checksum covers that much).

    The checksum's pseudo-header is the one the kernel's conntrack verifies UDPLITE against
    (observed on 6.18): it names `pseudo_proto`, by default 17 (RFC 3828 says 136; conntrack
    finds such a packet INVALID with nf_conntrack_checksum=1), and `pseudo_length`, by default
    the segment's length over IPv6 but only its low byte over IPv4 (with the whole length, an
    IPv4 datagram of 256 bytes or more is INVALID for conntrack)."""
    seg = struct.pack("!HHHH", sport, dport, coverage, 0) + payload
    covered = seg if coverage == 0 else seg[:coverage]
    s, d = _addrs(src, dst)
    if pseudo_length is None:
        pseudo_length = len(seg) & 0xFF if s.version == 4 else len(seg)
    csum = inet_checksum(pseudo_header(s, d, pseudo_proto, pseudo_length) + covered) or 0xFFFF
    return ip(src, dst, IPPROTO_UDPLITE, _with_checksum(seg, 6, csum))


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
) -> bytes:
    """A whole IPv4/IPv6 TCP packet with a correct checksum (unless overridden). `seq` and
    `ack` are taken modulo 2**32; `flags` is the flag byte or letters ("SA", "FA"...);
    `options` are raw option bytes (see the tcp_opt_* helpers), padded to 4 bytes."""
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
    src: str, dst: str, type_: int, code: int, quoted: bytes, *, quote_len: int = 28
) -> bytes:
    """An IPv4 ICMP error (e.g. type 3 code 3, port unreachable) from `src` to `dst` quoting
    the first `quote_len` bytes of the offending packet `quoted` (28 = IP header + 8)."""
    msg = icmp_message(type_, code, b"\x00\x00\x00\x00", quoted[:quote_len])
    return ipv4(src, dst, IPPROTO_ICMP, msg)


# --- ICMPv6 ------------------------------------------------------------------------------------

ICMPV6_DEST_UNREACH = 1
ICMPV6_PORT_UNREACH = 4  # code
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
NDISC_NEIGHBOUR_SOLICITATION = 135


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
    src: str, dst: str, ident: int, seq: int = 1, *, reply: bool = False, body: bytes = b"ping6"
) -> bytes:
    t = ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST
    return icmp6(src, dst, t, 0, struct.pack("!HH", ident, seq), body)


def icmp6_error(
    src: str, dst: str, type_: int, code: int, quoted: bytes, *, quote_len: int = 1232
) -> bytes:
    """An ICMPv6 error (1 = unreachable, code 4 = port unreachable) quoting `quoted`."""
    return icmp6(src, dst, type_, code, b"\x00\x00\x00\x00", quoted[:quote_len])


def icmp6_neighbour_solicitation(src: str, dst: str, target: str) -> bytes:
    """A neighbour solicitation (type 135, hop limit 255) for `target`."""
    body = ipaddress.IPv6Address(target).packed
    return icmp6(
        src, dst, NDISC_NEIGHBOUR_SOLICITATION, 0, b"\x00\x00\x00\x00", body, hop_limit=255
    )


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


def pcap(records: Iterable[tuple[float, bytes]], *, linktype: int = LINKTYPE_RAW) -> bytes:
    """A classic little-endian microsecond pcap file of (timestamp seconds, frame) records."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, frame in records:
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return b"".join(out)


def verify_ipv4_header(packet: bytes) -> bool:
    """True if the IPv4 header checksum of `packet` verifies."""
    ihl = (packet[0] & 0x0F) * 4
    return ones_complement_sum(packet[:ihl]) == 0xFFFF
