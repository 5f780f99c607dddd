"""Both ends of a TCP connection, for tests: tracks each side's next sequence number so that
segments acknowledge exactly what the other side sent (used by the TCP scenarios,
tests/scenarios/tcp.py, and other tests)."""

from __future__ import annotations

from typing import Any

import packets as P
from helpers import C, S

HTTP = 80


class Conv:
    """Both ends of one TCP connection, client `c` and server `s`: each side's next sequence
    number is tracked, so `c("PA", payload=...)` then `s("A")` acknowledges exactly what was
    sent. SYNs carry Linux's options (MSS, SACK-permitted, timestamps, window scale 7) and an
    unscaled window; later segments carry NOP,NOP,timestamps and a scaled window.

    A segment with an explicit `seq` (retransmission, out of window, RST with a chosen seq)
    does not move the sender's next sequence number unless `advance=True`."""

    def __init__(
        self,
        cport: int,
        *,
        sport: int = HTTP,
        client: str = C,
        server: str = S,
        cisn: int | None = None,
        sisn: int | None = None,
        timestamps: bool = True,
        wscale: int | None = 7,
    ) -> None:
        self.cport, self.sport = cport, sport
        self.addr = {"c": (client, cport), "s": (server, sport)}
        # Realistic-looking ISNs, different for every client port.
        self.isn = {
            "c": (cport * 2654435761 + 0x1F2E3D4C) & 0xFFFFFFFF if cisn is None else cisn,
            "s": (cport * 40503 * 65537 + 0x0BADCAFE) & 0xFFFFFFFF if sisn is None else sisn,
        }
        self.nxt = dict(self.isn)
        self.tsval = {"c": 3_000_000 + cport, "s": 7_000_000 + cport * 3}
        self.syn_window = {"c": 64240, "s": 65160}
        self.window = {"c": 502, "s": 509}  # x128 with window scale 7
        self.timestamps = timestamps
        self.wscale = wscale

    def c(self, flags: int | str = "A", **kw: Any) -> bytes:
        """A segment from the client to the server."""
        return self._segment("c", flags, **kw)

    def s(self, flags: int | str = "A", **kw: Any) -> bytes:
        """A segment from the server to the client."""
        return self._segment("s", flags, **kw)

    def _segment(
        self,
        side: str,
        flags: int | str,
        *,
        seq: int | None = None,
        ack: int | None = None,
        payload: bytes = b"",
        window: int | None = None,
        options: bytes | None = None,
        checksum: int | None = None,
        advance: bool | None = None,
    ) -> bytes:
        peer = "s" if side == "c" else "c"
        f = P.tcp_flags(flags)
        syn = bool(f & P.TCP_SYN)
        if seq is None:
            seq = self.nxt[side]
            advance = True if advance is None else advance
        if ack is None:
            ack = self.nxt[peer] if f & P.TCP_ACK else 0
        if window is None:
            window = self.syn_window[side] if syn else self.window[side]
        self.tsval[side] += 7
        if options is None:
            if syn:
                tsval = self.tsval[side] if self.timestamps else None
                options = P.tcp_syn_options(wscale=self.wscale, tsval=tsval)
            elif self.timestamps:
                tsecr = self.tsval[peer] if f & P.TCP_ACK else 0
                options = P.tcp_opt_nop() * 2 + P.tcp_opt_timestamps(self.tsval[side], tsecr)
            else:
                options = b""
        if advance:
            self.nxt[side] = (
                seq + len(payload) + (1 if syn else 0) + (1 if f & P.TCP_FIN else 0)
            ) & 0xFFFFFFFF
        src, sport = self.addr[side]
        dst, dport = self.addr[peer]
        return P.tcp(
            src,
            dst,
            sport,
            dport,
            seq=seq,
            ack=ack,
            flags=f,
            window=window,
            payload=payload,
            options=options,
            checksum=checksum,
        )

    def handshake(self) -> list[bytes]:
        """SYN, SYN-ACK, ACK."""
        return [self.c("S"), self.s("SA"), self.c("A")]

    def skip_handshake(self) -> None:
        """Both sides as if the handshake had happened unseen (mid-stream pickup)."""
        self.nxt = {k: (v + 1) & 0xFFFFFFFF for k, v in self.isn.items()}

    def reopen(self, side: str, delta: int = 0x0100_0000) -> None:
        """A new incarnation: `side` picks a higher ISN for its next SYN."""
        self.isn[side] = self.nxt[side] = (self.nxt[side] + delta) & 0xFFFFFFFF

    def fin_close(self) -> list[bytes]:
        """The client closes first: FIN/ACK(C), ACK(S), FIN/ACK(S), ACK(C)."""
        return [self.c("FA"), self.s("A"), self.s("FA"), self.c("A")]

    def rst(self, side: str, flags: str = "R", **kw: Any) -> bytes:
        """A RST as stacks send it: no options, window 0."""
        return self._segment(side, flags, window=0, options=b"", **kw)


def far(seq: int, by: int = 10_000_000) -> int:
    """A sequence number `by` beyond `seq`, modulo 2**32."""
    return (seq + by) & 0xFFFFFFFF
