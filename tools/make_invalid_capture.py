#!/usr/bin/env python3
"""Writes examples/invalid.pcap: a short crafted conversation in which conntrack finds some
packets INVALID, each for a different reason, to show `nfct replay --output packets`.

The packets are built with the test suite's builders (tests/packets.py, correct checksums
unless a case breaks one on purpose); addresses are from the documentation ranges. Run from
the repository root: `python3 tools/make_invalid_capture.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "python"))

import packets as P  # noqa: E402
from nfct.pcap import write_pcap  # noqa: E402

C, S = "192.0.2.1", "198.51.100.7"
ISN_C, ISN_S = 1000, 5000
T0 = 1_764_000_000.0


def conversation() -> list[bytes]:
    syn_opts = P.tcp_opt_mss() + P.tcp_opt_sack_perm() + P.tcp_opt_nop() + P.tcp_opt_wscale(7)
    return [
        # 1-3: a handshake: new, established, established (ASSURED).
        P.tcp(C, S, 40000, 80, seq=ISN_C, flags="S", options=syn_opts),
        P.tcp(S, C, 80, 40000, seq=ISN_S, ack=ISN_C + 1, flags="SA", options=syn_opts),
        P.tcp(C, S, 40000, 80, seq=ISN_C + 1, ack=ISN_S + 1, flags="A", window=502),
        # 4: data far beyond the receiver's window: SEQ over the upper bound.
        P.tcp(
            C, S, 40000, 80, seq=ISN_C + 10_000_000, ack=ISN_S + 1, flags="PA", payload=b"x" * 10
        ),
        # 5: an ACK for data the server never sent: ACK over the upper bound.
        P.tcp(C, S, 40000, 80, seq=ISN_C + 1, ack=ISN_S + 900_000, flags="A", window=502),
        # 6: SYN and FIN together: an invalid flag combination.
        P.tcp(C, S, 40000, 80, seq=ISN_C + 1, flags="SF"),
        # 7: a good data segment and 8: its ACK.
        P.tcp(
            C, S, 40000, 80, seq=ISN_C + 1, ack=ISN_S + 1, flags="PA", window=502, payload=b"GET /"
        ),
        P.tcp(S, C, 80, 40000, seq=ISN_S + 1, ack=ISN_C + 6, flags="A", window=509),
        # 9: a DNS query with a broken UDP checksum.
        P.udp(C, S, 53000, 53, b"\x12\x34query", checksum=0xDEAD),
        # 10: a port unreachable for a flow that never existed.
        P.icmp_error(S, C, 3, 3, P.udp(C, S, 53999, 53, b"q")),
        # 11: an echo reply nobody asked for.
        P.icmp_echo(S, C, 4242, reply=True),
        # 12: a SYN-ACK as the first packet of a flow.
        P.tcp(S, C, 443, 40001, seq=7, ack=9, flags="SA"),
    ]


def main() -> None:
    out = ROOT / "examples" / "invalid.pcap"
    write_pcap(out, [(T0 + i * 0.01, p) for i, p in enumerate(conversation())], nanosecond=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
