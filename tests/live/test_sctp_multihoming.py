"""SCTP multi-homing against the live kernel: an association set up on one address pair whose
INIT (and INIT_ACK) lists a second address (IPv4 or IPv6 address parameters), then traffic on
the second path: HEARTBEAT and HEARTBEAT_ACK from either end, DATA and SACK, DATA before any
HEARTBEAT, a HEARTBEAT with a wrong tag, a SHUTDOWN on the first path. nfct and the kernel must
agree on every packet, the table and the statistics.

What Linux 6.18 was seen to do (and nfct does):

* conntrack ignores the address parameters: an INIT listing a second address prepares nothing
  for it. The second path is a connection of its own, with its own entry;
* a HEARTBEAT opens that entry (NEW; the kernel records the HEARTBEAT's verification tag for
  its direction), the HEARTBEAT_ACK makes it ESTABLISHED and ASSURED with the ESTABLISHED
  timeout (210 s), whichever end sent the HEARTBEAT; DATA and SACK then pass both ways;
* DATA on the second path before any HEARTBEAT is INVALID (an SCTP entry is opened by INIT or
  HEARTBEAT only), and so is the SACK answering it;
* a HEARTBEAT with a wrong tag opens the entry all the same, with that tag: DATA in that
  direction with the association's real tag is then INVALID, while the other direction's
  packets pass;
* the entries are independent: SHUTDOWN, SHUTDOWN_ACK and SHUTDOWN_COMPLETE on the first path
  leave its entry CLOSED (10 s) and the second path's ESTABLISHED, still passing DATA;
* with the association over IPv4 and the second path over IPv6 (or the reverse) the same.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

from helpers import C6, S6, C, S, run_seen
from nfct import packets as P

#: The verification tags the client (A) and the server (B) announce in INIT and INIT_ACK.
TAG_A, TAG_B = 0x11111111, 0x22222222
A2, A2_6, B2_6, B2 = "10.5.0.2", "fd00:5::2", "fd00:6::2", "10.6.0.2"
SERVER_PORT = 2905

HB = P.sctp_chunk(P.SCTP_HEARTBEAT, P.sctp_heartbeat_info())
HB_ACK = P.sctp_chunk(P.SCTP_HEARTBEAT_ACK, P.sctp_heartbeat_info())

Step = tuple[str, bytes, str]  # what it is, the packet, what the kernel made of it


def address(addr: str) -> bytes:
    """An IPv4 (type 5) or IPv6 (type 6) address parameter."""
    ip = ipaddress.ip_address(addr)
    return struct.pack("!HH", 5 if ip.version == 4 else 6, 4 + len(ip.packed)) + ip.packed


def association(
    a: str, b: str, port: int, a_more: Sequence[str], b_more: Sequence[str] = ()
) -> list[Step]:
    """The handshake on (a, b), INIT listing `a_more`, INIT_ACK `b_more`, then DATA and SACK."""
    init = P.sctp_init_body(TAG_A, 100) + b"".join(map(address, a_more))
    cookie = struct.pack("!HH", 7, 8) + b"cook"
    init_ack = P.sctp_init_body(TAG_B, 500) + b"".join(map(address, b_more)) + cookie
    sp, dp = port, SERVER_PORT
    return [
        ("INIT", P.sctp(a, b, sp, dp, 0, P.sctp_chunk(P.SCTP_INIT, init)), "new"),
        (
            "INIT_ACK",
            P.sctp(b, a, dp, sp, TAG_A, P.sctp_chunk(P.SCTP_INIT_ACK, init_ack)),
            "established",
        ),
        (
            "COOKIE_ECHO",
            P.sctp(a, b, sp, dp, TAG_B, P.sctp_chunk(P.SCTP_COOKIE_ECHO, b"cook")),
            "established",
        ),
        ("COOKIE_ACK", P.sctp(b, a, dp, sp, TAG_A, P.sctp_chunk(P.SCTP_COOKIE_ACK)), "established"),
        ("DATA", P.sctp(a, b, sp, dp, TAG_B, P.sctp_data_chunk(100, b"x" * 8)), "established"),
        ("SACK", P.sctp(b, a, dp, sp, TAG_A, P.sctp_sack_chunk(100)), "established"),
    ]


def second_path(a2: str, b2: str, port: int, how: str) -> list[Step]:
    """Traffic on (a2, b2): a HEARTBEAT exchange started by B (`how` "b") or A ("a"), by A
    with a wrong tag ("a-wrong-tag") or none ("none"), then DATA and SACK both ways."""
    sp, dp = port, SERVER_PORT
    steps: list[Step] = []
    data_ok = "established"
    if how == "b":
        steps += [
            ("B>A2 HEARTBEAT", P.sctp(b2, a2, dp, sp, TAG_A, HB), "new"),
            ("A2>B HEARTBEAT_ACK", P.sctp(a2, b2, sp, dp, TAG_B, HB_ACK), "established"),
        ]
    elif how == "a":
        steps += [
            ("A2>B HEARTBEAT", P.sctp(a2, b2, sp, dp, TAG_B, HB), "new"),
            ("B>A2 HEARTBEAT_ACK", P.sctp(b2, a2, dp, sp, TAG_A, HB_ACK), "established"),
        ]
    elif how == "a-wrong-tag":
        steps += [
            ("A2>B HEARTBEAT, wrong tag", P.sctp(a2, b2, sp, dp, 0x999, HB), "new"),
            ("B>A2 HEARTBEAT_ACK", P.sctp(b2, a2, dp, sp, TAG_A, HB_ACK), "established"),
        ]
    return [
        *steps,
        (
            "A2>B DATA",
            P.sctp(a2, b2, sp, dp, TAG_B, P.sctp_data_chunk(101, b"y" * 8)),
            "invalid" if how in ("none", "a-wrong-tag") else data_ok,
        ),
        (
            "B>A2 SACK",
            P.sctp(b2, a2, dp, sp, TAG_A, P.sctp_sack_chunk(101)),
            "invalid" if how == "none" else data_ok,
        ),
        (
            "B>A2 DATA",
            P.sctp(b2, a2, dp, sp, TAG_A, P.sctp_data_chunk(500, b"z" * 8)),
            "invalid" if how == "none" else data_ok,
        ),
    ]


def shutdown(a: str, b: str, port: int) -> list[Step]:
    sp, dp = port, SERVER_PORT
    cum = struct.pack("!I", 500)
    return [
        (
            "SHUTDOWN",
            P.sctp(a, b, sp, dp, TAG_B, P.sctp_chunk(P.SCTP_SHUTDOWN, cum)),
            "established",
        ),
        (
            "SHUTDOWN_ACK",
            P.sctp(b, a, dp, sp, TAG_A, P.sctp_chunk(P.SCTP_SHUTDOWN_ACK)),
            "established",
        ),
        (
            "SHUTDOWN_COMPLETE",
            P.sctp(a, b, sp, dp, TAG_B, P.sctp_chunk(P.SCTP_SHUTDOWN_COMPLETE)),
            "established",
        ),
    ]


CASES: dict[str, list[Step]] = {
    "B heartbeats A's second address": association(C, S, 5001, [A2])
    + second_path(A2, S, 5001, "b"),
    "A heartbeats from its second address": association(C, S, 5002, [A2])
    + second_path(A2, S, 5002, "a"),
    "DATA on the second path first": association(C, S, 5003, [A2])
    + second_path(A2, S, 5003, "none"),
    "a HEARTBEAT with a wrong tag": association(C, S, 5004, [A2])
    + second_path(A2, S, 5004, "a-wrong-tag"),
    "IPv4 association, IPv6 second path": association(C, S, 5005, [A2_6], [B2_6])
    + second_path(A2_6, B2_6, 5005, "b"),
    "IPv6 association, IPv4 second path": association(C6, S6, 5006, [A2], [B2])
    + second_path(A2, B2, 5006, "a"),
    "SHUTDOWN on the first path": association(C, S, 5007, [A2])
    + second_path(A2, S, 5007, "b")
    + shutdown(C, S, 5007)
    + [
        (
            "A2>B DATA after",
            P.sctp(A2, S, 5007, SERVER_PORT, TAG_B, P.sctp_data_chunk(102, b"w")),
            "established",
        )
    ],
}


def test_multihomed_associations_agree_with_the_kernel() -> None:
    steps = [
        (f"{name}: {what}", pkt, cls) for name, case in CASES.items() for what, pkt, cls in case
    ]
    k = run_seen(steps)
    # One entry per path, the second path's ESTABLISHED and ASSURED with the ESTABLISHED
    # timeout; the first path's of the last case CLOSED, its second path's ESTABLISHED.
    by_port: dict[int, list[str]] = {}
    for line in k.lines:
        port = next(
            int(w.split("=")[1]) for w in line.split() if w.startswith(("sport=5", "dport=5"))
        )
        by_port.setdefault(port, []).append(line)
    assert sorted(len(v) for v in by_port.values()) == [1, 2, 2, 2, 2, 2, 2], k.lines
    second = [x for x in by_port[5001] if A2 in x]
    assert len(second) == 1 and "ESTABLISHED" in second[0] and "[ASSURED]" in second[0]
    assert int(second[0].split()[4]) > 200, second  # ESTABLISHED's 210 s, not HEARTBEAT's 30
    closing = sorted(by_port[5007], key=lambda x: A2 in x)
    assert " CLOSED " in closing[0] and " ESTABLISHED " in closing[1], closing
