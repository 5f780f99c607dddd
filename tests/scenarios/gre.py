"""GRE scenarios (spec §10.2): version 0 with and without keys, version 1 (PPTP) call ids,
version 1 carrying something other than PPP, a version 1 header too short for the call id,
version 2, and GRE over IPv6, with what the live 6.18 kernel does with them (recorded below by
tests/scenarios/record.py).

What the kernel does without the PPTP helper (nfct has none): a version 1 packet's tuple has
the call id as its destination key and 0 as its source key (the helper's keymap is empty), so
the peer's packets, which carry the peer's own call id, never match the reply tuple: each
direction is an [UNREPLIED] entry of its own.
"""

from __future__ import annotations

import packets as P
from helpers import C6, S6, C, S, timed
from scenarios.base import Outcome, Recorded

PPTP = 0x880B


def pptp(src: str, dst: str, call_id: int, *, length: int = 0, protocol: int = PPTP) -> bytes:
    """A GRE version 1 packet with a call id (and `length` bytes of payload)."""
    return P.gre(src, dst, b"\0" * length, version=1, protocol=protocol, key=length << 16 | call_id)


def gre6(src: str, dst: str, header: bytes) -> bytes:
    """GRE over IPv6 with a raw GRE header (tests/packets.py's gre() builds IPv4)."""
    return P.ipv6(src, dst, 47, header)


#: Every version and key case in one sequence (tests/live/test_gre.py also compares its
#: /proc lines and events with the kernel's byte for byte).
PACKETS: list[bytes] = [
    P.gre(C, S),
    P.gre(S, C),
    P.gre(C, S),
    P.gre(C, "10.2.0.3", key=0x1234),
    P.gre("10.2.0.3", C, key=0x5678),
    pptp(C, "10.2.0.4", 0x1111),
    pptp("10.2.0.4", C, 0x2222),
    pptp(C, "10.2.0.4", 0x1111, length=4),
    pptp("10.2.0.4", C, 0),
    pptp(C, "10.2.0.5", 0x3333, protocol=0x0800),
    P.gre(C, "10.2.0.6", version=1, protocol=PPTP),
    P.gre(C, "10.2.0.7", version=2, key=0x77),
    P.gre(C, S, b"\x45" + b"\0" * 19, with_checksum=True),
    gre6(C6, S6, b"\x00\x00\x08\x00"),
    gre6(S6, C6, b"\x00\x00\x08\x00"),
    gre6(C6, S6, b"\x20\x01\x88\x0b\x00\x00\x44\x44"),
]

RECORD = Recorded()
RECORD.add("GRE versions and keys", lambda: timed(*PACKETS))
RECORD.add(
    "GRE v1 (PPTP): each direction is an entry of its own",
    # Another packet of an unreplied entry is still "new" (IP_CT_NEW), on the same entry.
    lambda: timed(pptp(C, S, 0x1111), pptp(S, C, 0x2222), pptp(C, S, 0x1111)),
    checksums=False,
)
RECORD.add(
    "GRE v1 not carrying PPP is invalid; no call id or another version: keys 0",
    lambda: timed(
        P.gre(C, S, version=1, protocol=0x0800, key=7),
        P.gre(C, S, version=1, protocol=PPTP),
        P.gre(C, "10.2.0.3", version=5, key=9),
    ),
    checksums=False,
)
RECORD.add(
    "GRE over IPv6",
    lambda: timed(
        gre6(C6, S6, b"\x20\x01\x88\x0b\x00\x00\x44\x44"),
        gre6(C6, S6, b"\x00\x00\x08\x00"),
        gre6(S6, C6, b"\x00\x00\x08\x00"),
    ),
    checksums=False,
)

# --- recorded from the live kernel by tests/scenarios/record.py (do not edit by hand) ----------
RECORDED: dict[str, Outcome] = {
    "GRE versions and keys": Outcome(
        classes=(
            "new",
            "established",
            "established",
            "new",
            "established",
            "new",
            "new",
            "new",
            "new",
            "invalid",
            "new",
            "new",
            "established",
            "new",
            "established",
            "new",
        ),
        table=(
            "ipv4     2 gre      47 179 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 "
            "src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 [ASSURED] mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.3 srckey=0x0 dstkey=0x0 "
            "src=10.2.0.3 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.4 srckey=0x0 dstkey=0x1111 "
            "[UNREPLIED] src=10.2.0.4 dst=10.1.0.2 srckey=0x1111 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.6 srckey=0x0 dstkey=0x0 "
            "[UNREPLIED] src=10.2.0.6 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.7 srckey=0x0 dstkey=0x0 "
            "[UNREPLIED] src=10.2.0.7 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.2.0.4 dst=10.1.0.2 srckey=0x0 dstkey=0x0 "
            "[UNREPLIED] src=10.1.0.2 dst=10.2.0.4 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.2.0.4 dst=10.1.0.2 srckey=0x0 dstkey=0x2222 "
            "[UNREPLIED] src=10.1.0.2 dst=10.2.0.4 srckey=0x2222 dstkey=0x0 mark=0 use=1",
            "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x0 "
            "src=fd00:2::2 dst=fd00:1::2 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x4444 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 srckey=0x4444 dstkey=0x0 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "GRE v1 (PPTP): each direction is an entry of its own": Outcome(
        classes=("new", "new", "new"),
        table=(
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x1111 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 srckey=0x1111 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x2222 "
            "[UNREPLIED] src=10.1.0.2 dst=10.2.0.2 srckey=0x2222 dstkey=0x0 mark=0 use=1",
        ),
    ),
    "GRE v1 not carrying PPP is invalid; no call id or another version: keys 0": Outcome(
        classes=("invalid", "new", "new"),
        table=(
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 "
            "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.3 srckey=0x0 dstkey=0x0 "
            "[UNREPLIED] src=10.2.0.3 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1",
        ),
        stats={"invalid": 1},
    ),
    "GRE over IPv6": Outcome(
        classes=("new", "new", "established"),
        table=(
            "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x0 "
            "src=fd00:2::2 dst=fd00:1::2 srckey=0x0 dstkey=0x0 mark=0 use=1",
            "ipv6     10 gre      47 29 src=fd00:1::2 dst=fd00:2::2 srckey=0x0 dstkey=0x4444 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 srckey=0x4444 dstkey=0x0 mark=0 use=1",
        ),
    ),
}
# --- end of the recorded outcomes ---------------------------------------------------------------

SCENARIOS = RECORD.scenarios(RECORDED)
