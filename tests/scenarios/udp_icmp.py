"""UDP, UDPLITE, ICMP, ICMPv6 and generic-protocol scenarios: the non-TCP edge cases of spec
§16 (E31–E37, E39, E45–E50, E63) and neighbouring cases, as packet sequences with what the
live 6.18 kernel does with them (recorded below by tests/scenarios/record.py), with checksum
verification on and off (", checksum=0") where a checksum is part of the case.

Client C=10.1.0.2, server S=10.2.0.2, a third host X=10.3.0.9 (and fd00:1::2, fd00:2::2):
addresses that exist only inside the kernel harness's namespace.
"""

from __future__ import annotations

import packets as P
from helpers import C6, S6, T0, C, S, Seq, X, timed
from scenarios.base import Outcome, Recorded

RECORD = Recorded()
add = RECORD.add


def _udp_q() -> bytes:
    return P.udp(C, S, 4002, 53, b"query")


# --- E31–E36: UDP --------------------------------------------------------------------------------

add(
    "udp exchange",
    lambda: timed(_udp_q(), P.udp(S, C, 53, 4002, b"answer"), P.udp(C, S, 4002, 53, b"again")),
)
add("E31 port unreachable is related", lambda: timed(_udp_q(), P.icmp_error(S, C, 3, 3, _udp_q())))


def _e31_whole_and_router() -> Seq:
    """The quote may be the whole packet; a router on the path may send the error (its source
    is no endpoint: only the outer destination is checked)."""
    query = P.udp(C, S, 4002, 53, b"some longer query payload")
    return timed(
        query,
        P.icmp_error(S, C, 3, 3, query, quote_len=len(query)),
        P.icmp_error("10.0.0.1", C, 11, 0, query),
    )


add(
    "E31 errors quoting the whole packet, and from a router", _e31_whole_and_router, checksums=False
)
add(
    "E32/E33 UDP two-second rule on the kernel clock",
    # A reply within 2 s keeps 30 s; a packet more than 2 s after the first makes the flow
    # ASSURED with 120 s. Paced in real time on the kernel side.
    lambda: [
        (_udp_q(), T0),
        (P.udp(S, C, 53, 4002, b"answer"), T0 + 0.1),
        (_udp_q(), T0 + 0.2),
        (_udp_q(), T0 + 2.4),
    ],
    checksums=False,
    pace=True,
)
CHECKSUM = ("checksum",)
add(
    "E34 bad UDP checksum",
    lambda: timed(P.udp(C, S, 4003, 53, b"x", checksum=0x1234)),
    reasons={0: CHECKSUM},
)
add(
    "E34 bad UDP checksum over IPv6",
    lambda: timed(P.udp(C6, S6, 4007, 53, b"payload", checksum=0x1234)),
    reasons={0: CHECKSUM},
)
add(
    "E34 bad UDP checksum on an existing flow",
    lambda: timed(
        P.udp(C, S, 4007, 53, b"payload"), P.udp(C, S, 4007, 53, b"payload", checksum=0x1234)
    ),
    reasons={1: CHECKSUM},
)
add(
    "E34 bad UDP checksum on an existing IPv6 flow",
    lambda: timed(
        P.udp(C6, S6, 4007, 53, b"payload"), P.udp(C6, S6, 4007, 53, b"payload", checksum=0x1234)
    ),
    reasons={1: CHECKSUM},
)
add("E35 UDP checksum 0", lambda: timed(P.udp(C, S, 4004, 53, b"x", checksum=0)))
add("E35 UDP checksum 0 over IPv6", lambda: timed(P.udp(C6, S6, 4009, 53, b"x", checksum=0)))
add("E36 UDP length beyond the packet", lambda: timed(P.udp(C, S, 4005, 53, b"xx", length=40)))
add(
    "E36 UDP length inside the packet",
    lambda: timed(P.udp(C, S, 4006, 53, b"xxxxxxxx", length=9)),
)


def _e36_lengths() -> Seq:
    payload = b"0123456789"
    return timed(
        P.udp(C, S, 4010, 53, payload, length=8 + len(payload) + 1),  # beyond: invalid
        P.udp(C, S, 4011, 53, payload, length=8 + 2),  # inside: fine
        P.udp(C, S, 4012, 53, payload, length=8),  # the header alone: fine
        P.udp(C, S, 4013, 53, payload, length=7),  # shorter than the header: invalid
        P.udp(C, S, 4014, 53, payload, length=9, checksum=0),  # no checksum: fine
    )


add("E36 UDP length field, five ways", _e36_lengths)


def _udp_truncated() -> Seq:
    seg = P.udp_segment(C, S, 4015, 53)[:6]
    return timed(P.ipv4(C, S, P.IPPROTO_UDP, seg), P.ipv4(C, S, P.IPPROTO_UDP, seg[:3]))


add("UDP header truncated", _udp_truncated, checksums=False)

# --- E37, E39: ICMP errors that match nothing ----------------------------------------------------

add(
    "E37 ICMP error to the wrong endpoint",
    lambda: timed(_udp_q(), P.icmp_error(S, X, 3, 3, _udp_q())),
)
add("E39 ICMP error for no flow", lambda: timed(P.icmp_error(S, C, 3, 3, _udp_q())))
add(
    "ICMP error quoting an ICMP error",
    # An error about an error: the inner tuple cannot be inverted (spec §9.4 step 2).
    lambda: timed(P.icmp_error(S, C, 3, 1, P.icmp_error(C, S, 3, 3, P.udp(S, C, 53, 4022)))),
    checksums=False,
)
add("ICMP echo with a bad checksum", lambda: timed(P.icmp(C, S, 8, 0, ident=1, checksum=0x4321)))
add(
    "ICMP header too short",
    lambda: timed(P.ipv4(C, S, P.IPPROTO_ICMP, b"\x08\x00\xf7\xff")),
    checksums=False,
)


def _error_types() -> Seq:
    query = P.udp(C, S, 4100, 53)
    errors = [(3, 1), (4, 0), (5, 1), (11, 0), (12, 0)]
    return timed(query, *(P.icmp_error(S, C, t, c, query) for t, c in errors))


add("every ICMP error type is related", _error_types, checksums=False)


def _error_types6() -> Seq:
    query = P.udp(C6, S6, 4101, 53)
    return timed(query, *(P.icmp6_error(S6, C6, t, 0, query) for t in (1, 2, 3, 4)))


add("every ICMPv6 error type is related", _error_types6, checksums=False)


def _quote_lengths() -> Seq:
    udp, echo = P.udp(C, S, 4102, 53), P.icmp_echo(C, S, 9)
    return timed(
        udp,
        P.icmp_error(S, C, 3, 3, udp, quote_len=24),  # IP header + the 4 bytes of ports suffice
        P.icmp_error(S, C, 3, 3, udp, quote_len=23),
        echo,
        P.icmp_error(S, C, 3, 3, echo, quote_len=28),  # inner ICMP needs its 8-byte header
        P.icmp_error(S, C, 3, 3, echo, quote_len=27),
    )


add("ICMP error quote lengths", _quote_lengths, checksums=False)


def _quoting_garbage() -> Seq:
    frag = P.ipv4(C, S, P.IPPROTO_UDP, P.udp_segment(C, S, 4091, 53), frag_off=3)
    return timed(
        P.udp(C, S, 4091, 53),
        P.icmp_error(S, C, 3, 3, frag),
        P.icmp_error(S, C, 3, 3, P.udp(C6, S6, 4091, 53)),
        P.icmp_error(S, C, 3, 3, b""),
    )


add("ICMP error quoting a fragment, IPv6 or nothing", _quoting_garbage, checksums=False)

# --- E45–E47: ICMP requests ----------------------------------------------------------------------

add(
    "E45 echo with code 5",
    lambda: timed(P.icmp_echo(C, S, 9, code=5), P.icmp_echo(S, C, 9, code=5, reply=True)),
)
add(
    "E45 echo codes 5 and 0 are two flows",
    # The reply with code 5 belongs to the code-5 entry only.
    lambda: timed(
        P.icmp_echo(C, S, 9, code=5),
        P.icmp_echo(C, S, 9, code=0),
        P.icmp_echo(S, C, 9, code=5, reply=True),
    ),
    checksums=False,
)
add(
    "E46 echo reply echo",
    lambda: timed(
        P.icmp_echo(C, S, 77), P.icmp_echo(S, C, 77, reply=True), P.icmp_echo(C, S, 77, seq=2)
    ),
)
add(
    "E47 reply alone, type 40, 13, 9",
    lambda: timed(
        P.icmp_echo(C, S, 5, reply=True),
        P.icmp(C, S, 40, 0),
        P.icmp(C, S, 13, 0, ident=3),
        P.icmp(C, S, 9, 0),
    ),
)
add(
    "E47 timestamp, information and address mask requests and replies",
    lambda: timed(
        P.icmp(C, S, 13, 0, ident=21, body=b"\0" * 12),
        P.icmp(S, C, 14, 0, ident=21, body=b"\0" * 12),
        P.icmp(C, S, 15, 0, ident=3),
        P.icmp(C, S, 17, 0, ident=4),
    ),
    checksums=False,
)
add(
    "E47 types that are no request",
    lambda: timed(*(P.icmp(C, S, t, 0, ident=3) for t in (9, 10, 0, 14, 16, 18))),
    checksums=False,
)

# --- E48, E49: generic and GRE -------------------------------------------------------------------

add("E48 ESP both ways", lambda: timed(P.esp(C, S, 0x100), P.esp(S, C, 0x100)))
add(
    "E48 ESP with another SPI each way is one entry",
    lambda: timed(P.esp(C, S, 0x1001), P.esp(S, C, 0x2002)),
    checksums=False,
)
add("E49 GRE v0", lambda: timed(P.gre(C, S), P.gre(S, C), P.gre(C, S)))
add("generic protocol 89", lambda: timed(P.generic(C, S, 89), P.generic(S, C, 89)))
add(
    "generic protocols 89 and 103 over IPv6",
    lambda: timed(P.generic(C6, S6, 89), P.generic(C6, S6, 103)),
    checksums=False,
)
add(
    "UDPLITE both ways",
    lambda: timed(P.udplite(C, S, 7000, 7001, b"lite"), P.udplite(S, C, 7001, 7000, b"lite")),
)
add(
    "UDPLITE assured on the first packet after the reply",
    # No 2 s rule for UDPLITE.
    lambda: timed(
        P.udplite(C, S, 5000, 5001, b"abc"),
        P.udplite(S, C, 5001, 5000, b"abc"),
        P.udplite(C, S, 5000, 5001, b"abc"),
    ),
    checksums=False,
)
add(
    "UDPLITE checksummed as RFC 3828 says",
    # conntrack verifies UDPLITE against a pseudo-header naming protocol 17: a packet
    # checksummed with 136 is INVALID while checksums are verified.
    lambda: timed(P.udplite(C, S, 5000, 5001, b"abc", pseudo_proto=P.IPPROTO_UDPLITE)),
    reasons={0: ("nf_ct_udplite: bad checksum",)},
)


def _udplite_no_checksum() -> Seq:
    pkt = bytearray(P.udplite(C, S, 5000, 5001, b"abc"))
    pkt[26:28] = b"\0\0"  # the checksum is mandatory
    return timed(bytes(pkt))


add("UDPLITE without a checksum", _udplite_no_checksum)


def _udplite_coverage() -> Seq:
    bad = []
    for coverage in (4, 200):
        pkt = bytearray(P.udplite(C, S, 5000, 5001, b"abcdefgh"))
        pkt[24:26] = coverage.to_bytes(2, "big")
        bad.append(bytes(pkt))
    return timed(*bad, P.udplite(C, S, 5000, 5001, b"abcdefgh", coverage=12))


add("UDPLITE coverage", _udplite_coverage)

# --- E50, E63: IPv6 ------------------------------------------------------------------------------

add(
    "E50 ICMPv6 echo, NS, port unreachable",
    lambda: timed(
        P.icmp6_echo(C6, S6, 85),
        P.icmp6_echo(S6, C6, 85, reply=True),
        P.icmp6_neighbour_solicitation(C6, S6, S6),
        P.udp(C6, S6, 5000, 53, b"q6"),
        P.icmp6_error(S6, C6, 1, 4, P.udp(C6, S6, 5000, 53, b"q6")),
    ),
)
add(
    "E50 ICMPv6 error for no flow",
    lambda: timed(P.icmp6_error(S6, C6, 1, 4, P.udp(C6, S6, 4031, 53))),
    checksums=False,
)
add(
    "ICMPv6 with a bad checksum",
    lambda: timed(*(P.icmp6(C6, S6, t, 0, checksum=0x1111) for t in (1, 128, 140))),
)
add(
    "ICMPv6 node information query and other informational types",
    lambda: timed(
        P.icmp6(C6, S6, 139, 0, b"\0\x07\0\0", b"\0" * 8),
        P.icmp6(C6, S6, 200, 0),
        P.icmp6_echo(C6, S6, 1, reply=True),
    ),
    checksums=False,
)
add(
    "IPv6 extension headers are walked",
    lambda: timed(
        P.ipv6(
            C6,
            S6,
            P.IPPROTO_UDP,
            P.udp_segment(C6, S6, 4040, 53, b"q"),
            ext_headers=[(0, b"\x01\x04\0\0\0\0"), (60, b"")],
        )
    ),
    checksums=False,
)
add("E63 IPv6 no next header", lambda: timed(P.ipv6(C6, S6, 59, b"")))
add(
    "E63 IPv6 no next header behind an extension header",
    lambda: timed(P.ipv6(C6, S6, P.IPPROTO_NONE, b"", ext_headers=[(60, b"")])),
    checksums=False,
)

# --- IPv4 ----------------------------------------------------------------------------------------

add(
    "IPv4 options",
    lambda: timed(
        P.ipv4(
            C, S, P.IPPROTO_UDP, P.udp_segment(C, S, 4090, 53, b"q"), options=b"\x01\x01\x01\x00"
        )
    ),
    checksums=False,
)
add(
    "TTL 1 is not forwarded",
    lambda: timed(P.udp(C, S, 4010, 53, b"x", ttl=1)),
    stepwise=False,  # routing drops it; `in` and confirm alone would not
)

# --- recorded from the live kernel by tests/scenarios/record.py (do not edit by hand) ----------
RECORDED: dict[str, Outcome] = {
    "udp exchange": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4002 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4002 mark=0 use=1",
        ),
    ),
    "E31 port unreachable is related": Outcome(
        classes=("new", "related"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4002 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4002 mark=0 use=1",
        ),
    ),
    "E31 errors quoting the whole packet, and from a router": Outcome(
        classes=("new", "related", "related"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4002 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4002 mark=0 use=1",
        ),
    ),
    "E32/E33 UDP two-second rule on the kernel clock": Outcome(
        classes=("new", "established", "established", "established"),
        table=(
            "ipv4     2 udp      17 119 src=10.1.0.2 dst=10.2.0.2 sport=4002 dport=53 "
            "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4002 [ASSURED] mark=0 use=1",
        ),
    ),
    "E34 bad UDP checksum": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "E34 bad UDP checksum, checksum=0": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4003 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4003 mark=0 use=1",
        ),
    ),
    "E34 bad UDP checksum over IPv6": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "E34 bad UDP checksum over IPv6, checksum=0": Outcome(
        classes=("new",),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4007 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4007 mark=0 use=1",
        ),
    ),
    "E34 bad UDP checksum on an existing flow": Outcome(
        classes=("new", "invalid"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4007 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4007 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "E34 bad UDP checksum on an existing flow, checksum=0": Outcome(
        classes=("new", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4007 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4007 mark=0 use=1",
        ),
    ),
    "E34 bad UDP checksum on an existing IPv6 flow": Outcome(
        classes=("new", "invalid"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4007 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4007 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "E34 bad UDP checksum on an existing IPv6 flow, checksum=0": Outcome(
        classes=("new", "new"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4007 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4007 mark=0 use=1",
        ),
    ),
    "E35 UDP checksum 0": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4004 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4004 mark=0 use=1",
        ),
    ),
    "E35 UDP checksum 0 over IPv6": Outcome(
        classes=("new",),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4009 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4009 mark=0 use=1",
        ),
    ),
    "E36 UDP length beyond the packet": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "E36 UDP length inside the packet": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4006 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4006 mark=0 use=1",
        ),
    ),
    "E36 UDP length field, five ways": Outcome(
        classes=("invalid", "new", "new", "invalid", "new"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4011 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4011 mark=0 use=1",
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4012 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4012 mark=0 use=1",
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4014 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4014 mark=0 use=1",
        ),
        stats={"invalid": 2},
    ),
    "UDP header truncated": Outcome(
        classes=("invalid", "invalid"),
        stats={"invalid": 2},
    ),
    "E37 ICMP error to the wrong endpoint": Outcome(
        classes=("new", "invalid"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4002 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4002 mark=0 use=1",
        ),
        stats={"error": 1},
    ),
    "E39 ICMP error for no flow": Outcome(
        classes=("invalid",),
        stats={"error": 1},
    ),
    "ICMP error quoting an ICMP error": Outcome(
        classes=("invalid",),
        stats={"error": 1},
    ),
    "ICMP echo with a bad checksum": Outcome(
        classes=("invalid",),
        stats={"error": 1},
    ),
    "ICMP echo with a bad checksum, checksum=0": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=1 [UNREPLIED]"
            " src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=1 mark=0 use=1",
        ),
    ),
    "ICMP header too short": Outcome(
        classes=("invalid",),
        stats={"error": 1},
    ),
    "every ICMP error type is related": Outcome(
        classes=("new", "related", "related", "related", "related", "related"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4100 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4100 mark=0 use=1",
        ),
    ),
    "every ICMPv6 error type is related": Outcome(
        classes=("new", "related", "related", "related", "related"),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4101 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4101 mark=0 use=1",
        ),
    ),
    "ICMP error quote lengths": Outcome(
        classes=("new", "related", "invalid", "new", "related", "invalid"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=9 [UNREPLIED]"
            " src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=9 mark=0 use=1",
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4102 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4102 mark=0 use=1",
        ),
        stats={"error": 2},
    ),
    "ICMP error quoting a fragment, IPv6 or nothing": Outcome(
        classes=("new", "invalid", "invalid", "invalid"),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4091 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4091 mark=0 use=1",
        ),
        stats={"error": 3},
    ),
    "E45 echo with code 5": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=5 id=9 "
            "src=10.2.0.2 dst=10.1.0.2 type=0 code=5 id=9 mark=0 use=1",
        ),
    ),
    "E45 echo codes 5 and 0 are two flows": Outcome(
        classes=("new", "new", "established"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=9 [UNREPLIED]"
            " src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=9 mark=0 use=1",
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=5 id=9 "
            "src=10.2.0.2 dst=10.1.0.2 type=0 code=5 id=9 mark=0 use=1",
        ),
    ),
    "E46 echo reply echo": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=77 "
            "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=77 mark=0 use=1",
        ),
    ),
    "E47 reply alone, type 40, 13, 9": Outcome(
        classes=("invalid", "invalid", "new", "invalid"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=13 code=0 id=3 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 type=14 code=0 id=3 mark=0 use=1",
        ),
        stats={"invalid": 2, "error": 1},
    ),
    "E47 timestamp, information and address mask requests and replies": Outcome(
        classes=("new", "established", "new", "new"),
        table=(
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=13 code=0 id=21 "
            "src=10.2.0.2 dst=10.1.0.2 type=14 code=0 id=21 mark=0 use=1",
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=15 code=0 id=3 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 type=16 code=0 id=3 mark=0 use=1",
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=17 code=0 id=4 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 type=18 code=0 id=4 mark=0 use=1",
        ),
    ),
    "E47 types that are no request": Outcome(
        classes=("invalid", "invalid", "invalid", "invalid", "invalid", "invalid"),
        stats={"invalid": 6},
    ),
    "E48 ESP both ways": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 unknown  50 599 src=10.1.0.2 dst=10.2.0.2 src=10.2.0.2 dst=10.1.0.2 "
            "mark=0 use=1",
        ),
    ),
    "E48 ESP with another SPI each way is one entry": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 unknown  50 599 src=10.1.0.2 dst=10.2.0.2 src=10.2.0.2 dst=10.1.0.2 "
            "mark=0 use=1",
        ),
    ),
    "E49 GRE v0": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 gre      47 179 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 "
            "src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 use=1",
        ),
    ),
    "generic protocol 89": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 unknown  89 599 src=10.1.0.2 dst=10.2.0.2 src=10.2.0.2 dst=10.1.0.2 "
            "mark=0 use=1",
        ),
    ),
    "generic protocols 89 and 103 over IPv6": Outcome(
        classes=("new", "new"),
        table=(
            "ipv6     10 unknown  103 599 src=fd00:1::2 dst=fd00:2::2 [UNREPLIED] "
            "src=fd00:2::2 dst=fd00:1::2 mark=0 use=1",
            "ipv6     10 unknown  89 599 src=fd00:1::2 dst=fd00:2::2 [UNREPLIED] src=fd00:2::2"
            " dst=fd00:1::2 mark=0 use=1",
        ),
    ),
    "UDPLITE both ways": Outcome(
        classes=("new", "established"),
        table=(
            "ipv4     2 udplite  136 29 src=10.1.0.2 dst=10.2.0.2 sport=7000 dport=7001 "
            "src=10.2.0.2 dst=10.1.0.2 sport=7001 dport=7000 mark=0 use=1",
        ),
    ),
    "UDPLITE assured on the first packet after the reply": Outcome(
        classes=("new", "established", "established"),
        table=(
            "ipv4     2 udplite  136 119 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=5001 "
            "src=10.2.0.2 dst=10.1.0.2 sport=5001 dport=5000 [ASSURED] mark=0 use=1",
        ),
    ),
    "UDPLITE checksummed as RFC 3828 says": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "UDPLITE checksummed as RFC 3828 says, checksum=0": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 udplite  136 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=5001 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5001 dport=5000 mark=0 use=1",
        ),
    ),
    "UDPLITE without a checksum": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "UDPLITE coverage": Outcome(
        classes=("invalid", "invalid", "new"),
        table=(
            "ipv4     2 udplite  136 29 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=5001 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5001 dport=5000 mark=0 use=1",
        ),
        stats={"invalid": 2},
    ),
    "E50 ICMPv6 echo, NS, port unreachable": Outcome(
        classes=("new", "established", "untracked", "new", "related"),
        table=(
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=85 "
            "src=fd00:2::2 dst=fd00:1::2 type=129 code=0 id=85 mark=0 use=1",
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=5000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=5000 mark=0 use=1",
        ),
    ),
    "E50 ICMPv6 error for no flow": Outcome(
        classes=("invalid",),
        stats={"error": 1},
    ),
    "ICMPv6 with a bad checksum": Outcome(
        classes=("invalid", "invalid", "invalid"),
        stats={"error": 3},
    ),
    "ICMPv6 with a bad checksum, checksum=0": Outcome(
        classes=("invalid", "new", "invalid"),
        table=(
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=0 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 type=129 code=0 id=0 mark=0 use=1",
        ),
        stats={"invalid": 1, "error": 1},
    ),
    "ICMPv6 node information query and other informational types": Outcome(
        classes=("new", "invalid", "invalid"),
        table=(
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=139 code=0 id=7 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 type=140 code=0 id=7 mark=0 use=1",
        ),
        stats={"invalid": 2},
    ),
    "IPv6 extension headers are walked": Outcome(
        classes=("new",),
        table=(
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4040 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4040 mark=0 use=1",
        ),
    ),
    "E63 IPv6 no next header": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "E63 IPv6 no next header behind an extension header": Outcome(
        classes=("invalid",),
        stats={"invalid": 1},
    ),
    "IPv4 options": Outcome(
        classes=("new",),
        table=(
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=4090 dport=53 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=4090 mark=0 use=1",
        ),
    ),
    "TTL 1 is not forwarded": Outcome(
        classes=("dropped",),
    ),
}
# --- end of the recorded outcomes ---------------------------------------------------------------

SCENARIOS = RECORD.scenarios(RECORDED)
