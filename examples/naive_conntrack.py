#!/usr/bin/env python3
"""A small naive TCP connection tracker with a deliberate bug, and nfct.testing finding it.

The model keys connections by their 5-tuple in both directions and gets the common cases
right: a SYN or a bare ACK (mid-stream pickup) opens a connection, packets before the first
reply are `new`, everything after it `established`, a RST before any reply removes the entry,
anything else as a first packet is `invalid`. Its bug: it accepts every RST, whatever its
sequence number. The kernel checks a RST's sequence number against the receiver's window and
against what the peer has acknowledged (spec §7.6 (g), §7.7): a RST outside them is INVALID.
`nfct.testing.check` finds that, shrinks the trace to a handful of packets, and prints it with
both answers and nfct's reason:

    python examples/naive_conntrack.py                    # exit 0: the bug was found and shown
    python examples/naive_conntrack.py --pcap bug.pcap    # also writes the trace as a capture
    nfct replay bug.pcap --output packets                 # nfct's verdicts on it, with reasons

Needs nfct with its `hypothesis` extra (`pip install 'nfct[hypothesis]'`).
"""

from __future__ import annotations

import struct
import sys
import time

import nfct.strategies as nst
import nfct.testing

SYN, RST, FIN, ACK = 0x02, 0x04, 0x01, 0x10


class NaiveConntrack:
    """TCP only, no windows, no timeouts."""

    def __init__(self) -> None:
        self.conns: dict[tuple[bytes, int, bytes, int], dict[str, bool]] = {}

    def reset(self) -> None:
        self.conns.clear()

    def packet(self, data: bytes, tstamp: float) -> str:
        if data[0] >> 4 == 4:
            src, dst, l4 = data[12:16], data[16:20], data[(data[0] & 15) * 4 :]
        else:
            src, dst, l4 = data[8:24], data[24:40], data[40:]
        sport, dport = struct.unpack("!HH", l4[:4])
        flags = l4[13]
        key, back = (src, sport, dst, dport), (dst, dport, src, sport)
        if key in self.conns:
            conn, reply = self.conns[key], False
        elif back in self.conns:
            conn, reply = self.conns[back], True
        else:
            core = flags & (SYN | ACK | RST | FIN)
            if core not in (SYN, ACK):
                return "invalid"
            conn = {"replied": False}
            self.conns[key] = conn
            reply = False
        if flags & RST:
            # The bug: every RST is accepted, whatever its sequence number.
            answer = "established" if reply or conn["replied"] else "new"
            if not conn["replied"]:
                self.conns.pop(back if reply else key)
            return answer
        if reply:
            conn["replied"] = True
            return "established"
        return "established" if conn["replied"] else "new"


def main() -> int:
    pcap = sys.argv[sys.argv.index("--pcap") + 1] if "--pcap" in sys.argv else None
    # Valid TCP flows (the model gets those right), with RSTs injected: in window, before it,
    # beyond it, random. No idle gaps: the model has no timeouts.
    traces = nst.traces(nst.mutated(nst.tcp_flows(), kinds=["rst"]), max_flows=2, idle=False)
    start = time.monotonic()
    try:
        nfct.testing.check(NaiveConntrack, traces, max_examples=300, pcap_path=pcap)
    except nfct.testing.Divergence as err:
        print(err)
        print(f"\nfound and shrunk in {time.monotonic() - start:.1f} s")
        return 0
    print(f"no divergence found ({time.monotonic() - start:.1f} s): the bug went unnoticed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
