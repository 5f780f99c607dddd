"""A Hypothesis state machine that plays both ends of random TCP conversations through one
`Net` and checks the TCP tracker (rust/proto/tcp.rs) against spec §7 after every packet.

One flow (client 10.1.0.1:40000, server 10.2.0.2:80) is driven with SYNs and SYN-ACKs from
either side, data segments (in window, retransmitted, far ahead of the window, ACKing more
than was sent), RSTs with exact and inexact sequence numbers, FINs, reopens (a new SYN after
the close), random flag bytes and clock advances. Each side's sequence numbers are modelled,
so most packets are plausible and some are not.

The model does not predict the window tracker's verdicts; it checks what the spec makes
certain whatever those verdicts are:

* the entry's state after a packet is one the transition table (§7.3, typed below as data)
  allows from the previous state, the packet's class (§7.2) and direction: the table cell, or
  unchanged (IG cells, window IGNORE, an INVALID verdict), a documented exception of §7.6
  (the SYN-ACK resync of (b), the simultaneous-open ACK of (f)), a reopen (§7.6 (a): the entry
  is replaced by a new SYN_SENT one), or deletion (§7.6 (l): a RST before any reply; expiry);
* every packet the spec classifies INVALID up front is INVALID: a bad flag combination
  (§7.4), a first packet that is neither SYN nor ACK (§7.5), an IV cell (§7.3/§7.6 (c));
* the timeout is the current state's sysctl (§7.1) or one of the caps of §7.6 (j) (UNACK
  300 s, RETRANS 300 s, CLOSE 10 s for a RST leaving ESTABLISHED), counted from the last packet
  that refreshed the entry, as whole seconds (truncated, an instant later: up to 1 s less);
  an entry disappears without a packet only once that time has run out (§11.1);
* SEEN_REPLY and ASSURED are never cleared while the entry lives (§6); a reopen is a new
  `Conn` (Conn equality is entry identity).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from hypothesis import event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import nfct
import packets as P
from nfct import NF_ACCEPT, Conn, Net, Skb

NS: Final = 1_000_000_000
MS: Final = 1_000_000
TOL_NS: Final = 1_000  # float seconds → ns rounding in Skb/advance
U32: Final = 1 << 32

CLIENT: Final = ("10.1.0.1", 40000)
SERVER: Final = ("10.2.0.2", 80)

# --- spec §7.2, §7.3, §7.4, §7.1 as data ------------------------------------------------------

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# §7.4: the valid combinations once ECE, CWR and PSH are cleared.
VALID_FLAGS: Final = frozenset(
    {SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG}
)

STATE_ABBREV: Final = {
    "NONE": "NO",
    "SYN_SENT": "SS",
    "SYN_RECV": "SR",
    "ESTABLISHED": "ES",
    "FIN_WAIT": "FW",
    "CLOSE_WAIT": "CW",
    "LAST_ACK": "LA",
    "TIME_WAIT": "TW",
    "CLOSE": "CL",
    "SYN_SENT2": "S2",
}

# §7.3, typed from the spec's two tables: rows = packet class, columns = current state.
_COLUMNS: Final = "NO SS SR ES FW CW LA TW CL S2".split()
_TABLE_TEXT: Final = {
    "ORIGINAL": """
        SYN    | SS | SS | IG | IG | IG | IG | IG | SS | SS | S2
        SYNACK | IV | IV | SR | IV | IV | IV | IV | IV | IV | SR
        FIN    | IV | IV | FW | FW | LA | LA | LA | TW | CL | IV
        ACK    | ES | IV | ES | ES | CW | CW | TW | TW | CL | IV
        RST    | IV | CL | CL | CL | CL | CL | CL | CL | CL | CL
        NONE   | IV | IV | IV | IV | IV | IV | IV | IV | IV | IV
    """,
    "REPLY": """
        SYN    | IV | S2 | IV | IV | IV | IV | IV | SS | IV | S2
        SYNACK | IV | SR | IG | IG | IG | IG | IG | IG | IG | SR
        FIN    | IV | IV | FW | FW | LA | LA | LA | TW | CL | IV
        ACK    | IV | IG | SR | ES | CW | CW | TW | TW | CL | IG
        RST    | IV | CL | CL | CL | CL | CL | CL | CL | CL | CL
        NONE   | IV | IV | IV | IV | IV | IV | IV | IV | IV | IV
    """,
}


def _parse_table() -> dict[tuple[str, str, str], str]:
    table: dict[tuple[str, str, str], str] = {}
    for direction, text in _TABLE_TEXT.items():
        for line in text.strip().splitlines():
            cls, *cells = (cell.strip() for cell in line.split("|"))
            assert len(cells) == len(_COLUMNS), line
            for state, cell in zip(_COLUMNS, cells, strict=True):
                table[direction, cls, state] = cell
    return table


TRANSITIONS: Final = _parse_table()

# §7.1 defaults (SYN_SENT2 has no sysctl: 120 s) and the timeout-only slots.
TIMEOUT_S: Final = {
    "SS": 120,
    "SR": 60,
    "ES": 432000,
    "FW": 120,
    "CW": 60,
    "LA": 30,
    "TW": 120,
    "CL": 10,
    "S2": 120,
}
RETRANS_S: Final = 300
UNACK_S: Final = 300
TIMEOUT_SYSCTL: Final = {
    "SS": "nf_conntrack_tcp_timeout_syn_sent",
    "SR": "nf_conntrack_tcp_timeout_syn_recv",
    "ES": "nf_conntrack_tcp_timeout_established",
    "FW": "nf_conntrack_tcp_timeout_fin_wait",
    "CW": "nf_conntrack_tcp_timeout_close_wait",
    "LA": "nf_conntrack_tcp_timeout_last_ack",
    "TW": "nf_conntrack_tcp_timeout_time_wait",
    "CL": "nf_conntrack_tcp_timeout_close",
}


def packet_class(flags: int) -> str:
    """§7.2: RST, then SYN (SYNACK with ACK), then FIN, then ACK, else NONE."""
    if flags & RST:
        return "RST"
    if flags & SYN:
        return "SYNACK" if flags & ACK else "SYN"
    if flags & FIN:
        return "FIN"
    if flags & ACK:
        return "ACK"
    return "NONE"


def flags_valid(flags: int) -> bool:
    """§7.4."""
    return flags & ~(ECE | CWR | PSH) in VALID_FLAGS


def refreshed_timeouts(state: str, cls: str) -> set[int]:
    """§7.6 (j), (l): the timeouts (s) an accepted packet leaving the entry in `state` may set."""
    t = TIMEOUT_S[state]
    values = {t}
    if t > UNACK_S:
        values.add(UNACK_S)  # (j)3 data unacknowledged, (l) picked up before a reply
    if t > RETRANS_S:
        values.add(RETRANS_S)  # (j)1 retransmissions, (j)4 zero window
    if cls == "RST" and state == "ES" and t > UNACK_S:
        values.add(TIMEOUT_S["CL"])  # (j)2 as observed on 6.18 (§7.10)
    return values


# --- the two ends -------------------------------------------------------------------------------


@dataclass
class Side:
    """One end of the conversation: what it has sent so far."""

    ip: str
    port: int
    isn: int | None = None
    nxt: int = 0  # the next sequence number it sends (once isn is set)
    sent: list[bytes] = field(default_factory=list)

    def ack_for(self) -> int:
        """The acknowledgement number the peer sends for everything this side sent."""
        return self.nxt if self.isn is not None else 0


sides_st = st.sampled_from([0, 1])
seq_st = st.integers(0, U32 - 1)
syn_options = st.sampled_from(
    [
        b"",
        P.tcp_opt_mss(1460),
        P.tcp_syn_options(),
        P.tcp_syn_options(wscale=None, sack_perm=False),
        P.tcp_syn_options(wscale=14, tsval=12345),
    ]
)
payload_len = st.one_of(st.just(0), st.integers(1, 1460))
windows = st.sampled_from([65535, 65535, 65535, 29200, 512, 0])
# Clock steps: mostly short, sometimes past a state's timeout.
clock_steps_ms = st.one_of(
    st.integers(0, 3_000),
    st.sampled_from([9_999, 10_000, 10_001, 30_500, 60_500, 119_999, 120_001, 300_500]),
    st.just(432_000_500),
)


class TcpMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A small table: listing it (done after every step) walks every bucket.
        self.net = Net({"nf_conntrack_buckets": 16})
        for abbrev, name in TIMEOUT_SYSCTL.items():
            assert self.net.sysctl[name] == TIMEOUT_S[abbrev], name  # §7.1 defaults
        assert self.net.sysctl["nf_conntrack_tcp_timeout_max_retrans"] == RETRANS_S
        assert self.net.sysctl["nf_conntrack_tcp_timeout_unacknowledged"] == UNACK_S
        assert self.net.sysctl["nf_conntrack_tcp_loose"] == 1
        assert self.net.sysctl["nf_conntrack_tcp_be_liberal"] == 0
        self.now_ns = 1_000 * NS
        self.net.advance(self.now_ns / NS)
        self.sides = (Side(*CLIENT), Side(*SERVER))
        # The entry being watched, and what is known of it.
        self.conn: Conn | None = None
        self.state = "NO"
        self.bits = 0  # SEEN_REPLY | ASSURED seen on it so far
        self.deadlines: set[int] = set()  # candidate expiry instants (ns)
        self.was_s2 = False  # it went through SYN_SENT2 (simultaneous open)

    # --- observation ----------------------------------------------------------------------

    def entry_now(self) -> Conn | None:
        conns = list(self.net)  # a listing reaps what expired
        assert len(conns) <= 1, [c.line() for c in conns]
        return conns[0] if conns else None

    def forget(self) -> None:
        self.conn, self.state, self.bits, self.deadlines, self.was_s2 = None, "NO", 0, set(), False

    def adopt(self, conn: Conn, cls: str) -> None:
        """Start watching a new entry created by the packet just sent."""
        self.conn = conn
        self.state = STATE_ABBREV[conn.state or "NONE"]
        self.bits = 0
        self.was_s2 = self.state == "S2"
        self.deadlines = {self.now_ns + t * NS for t in refreshed_timeouts(self.state, cls)}

    def check_entry(self) -> None:
        """Reconciles the watched entry with the table at the current clock: it lives as
        long as one candidate expiry lies ahead, shows that time left, keeps its bits."""
        current = self.entry_now()
        if self.conn is None:
            assert current is None, f"an entry appeared without a packet: {current!r}"
            return
        if current is None or current != self.conn:
            assert current is None, f"the entry was replaced without a packet: {current!r}"
            expired = {d for d in self.deadlines if d <= self.now_ns + TOL_NS}
            assert expired, (
                f"the {self.state} entry vanished at {self.now_ns / NS:.3f}s, before its "
                f"timeout (candidate expiry: {sorted(d / NS for d in self.deadlines)})"
            )
            event(f"expired in {self.state}")
            self.forget()
            return
        listed = current.timeout
        alive = {
            d
            for d in self.deadlines
            if d > self.now_ns - TOL_NS
            and listed * NS <= d - self.now_ns + TOL_NS
            and listed * NS >= d - self.now_ns - NS - TOL_NS
        }
        assert alive, (
            f"{self.state} entry at {self.now_ns / NS:.3f}s shows timeout {listed}; "
            f"allowed: {sorted((d - self.now_ns) / NS for d in self.deadlines)} s left"
        )
        self.deadlines = alive
        sticky = current.status & (nfct.IPS_SEEN_REPLY | nfct.IPS_ASSURED)
        assert sticky & self.bits == self.bits, (
            f"status bits cleared on a live entry: {self.bits:#x} -> {current.status:#x}"
        )
        self.bits = sticky
        assert STATE_ABBREV[current.state or "NONE"] == self.state

    @invariant()
    def entry_consistent(self) -> None:
        self.check_entry()

    # --- sending --------------------------------------------------------------------------

    def send(
        self,
        side: int,
        flags: int,
        seq: int,
        ack: int = 0,
        *,
        payload: bytes = b"",
        window: int = 65535,
        options: bytes = b"",
        packet: bytes | None = None,
    ) -> None:
        me, peer = self.sides[side], self.sides[1 - side]
        if packet is None:
            packet = P.tcp(
                me.ip,
                peer.ip,
                me.port,
                peer.port,
                seq=seq % U32,
                ack=ack % U32,
                flags=flags,
                window=window,
                payload=payload,
                options=options,
            )
            me.sent.append(packet)
            del me.sent[:-16]
        flags = packet[20 + 13]
        cls = packet_class(flags)

        self.now_ns += MS  # packets are 1 ms apart at least
        self.net.advance(self.now_ns / NS)
        self.check_entry()  # may see the entry expire first

        prev, prev_state, prev_bits = self.conn, self.state, self.bits
        prev_timeout = prev.timeout if prev is not None else None
        if prev is not None:
            ours = (prev.orig.src, prev.orig.sport) == (me.ip, me.port)
            direction = "ORIGINAL" if ours else "REPLY"
        else:
            direction = "ORIGINAL"
        cell = TRANSITIONS[direction, cls, prev_state]

        t = self.now_ns / NS
        note(
            f"t={t:.3f} {'client' if side == 0 else 'server'} {cls} flags={flags:#04x} "
            f"seq={int.from_bytes(packet[24:28])} ack={int.from_bytes(packet[28:32])} "
            f"len={len(packet) - 20 - (packet[32] >> 4) * 4} | {direction} in {prev_state} "
            f"-> cell {cell}"
        )
        skb = Skb(packet, tstamp=t)
        verdict = nfct.ipv4_conntrack_in(self.net, skb)
        assert verdict == NF_ACCEPT, verdict
        if skb.nfct is not None:
            assert nfct.ipv4_confirm(self.net, skb) == NF_ACCEPT
        invalid = skb.ctstate == "invalid"
        reason = skb.invalid_reason
        after = self.entry_now()
        note(
            f"  -> ctstate={skb.ctstate} reason={reason} "
            f"entry={after.line('conntrack') if after is not None else None}"
        )
        if invalid:
            assert reason is not None, "an INVALID packet must say why"
            assert skb.nfct is None
        else:
            assert reason is None, reason
            assert skb.nfct is not None

        # --- INVALID up front (§7.4, §7.5, §7.3 IV cells) --------------------------------
        must_be_invalid = None
        if not flags_valid(flags):
            must_be_invalid = "invalid flag combination (§7.4)"
        elif prev is None and cls not in ("SYN", "ACK"):
            must_be_invalid = "first packet neither SYN nor ACK (§7.5)"
        elif cell == "IV":
            must_be_invalid = f"IV cell {direction}/{cls}/{prev_state} (§7.3)"
        if must_be_invalid is not None:
            event(f"invalid up front: {must_be_invalid.split(' (')[0]}")
            assert invalid, f"{must_be_invalid}, but ctstate={skb.ctstate}"
        if invalid:
            event(f"INVALID: {reason}")
            # The entry is untouched (§7.4, §7.6 (c), (h)); only nf_tcp_handle_invalid may
            # lower an assured entry's timeout, for a FIN or RST.
            assert after == prev, (
                f"an INVALID {direction} {cls} in {prev_state} (cell {cell}, {reason!r}) "
                f"changed the entry: {prev!r} -> {after!r}"
            )
            if prev is not None:
                assert after is not None
                assert STATE_ABBREV[after.state or "NONE"] == prev_state
                assert after.status & (nfct.IPS_SEEN_REPLY | nfct.IPS_ASSURED) == prev_bits
                if prev_bits & nfct.IPS_ASSURED and cls in ("FIN", "RST"):
                    self.deadlines.add(self.now_ns + UNACK_S * NS)
                else:
                    assert after.timeout == prev_timeout
            self.check_entry()
            return

        # --- accepted: which entry, which state? ------------------------------------------
        if prev is None:
            # §7.5: only SYN → SYN_SENT or ACK → ESTABLISHED (loose pickup) open an entry.
            assert after is not None, f"a valid first {cls} created no entry"
            assert skb.nfct == after
            assert (after.orig.src, after.orig.sport) == (me.ip, me.port)
            assert STATE_ABBREV[after.state or "NONE"] == cell, (after.state, cell)
            assert skb.ctstate == "new"
            event(f"new entry by {cls}")
            self.adopt(after, cls)
            self.check_entry()
            return

        if after is None:
            # §7.6 (l): a RST before any reply (either direction) deletes the entry.
            assert cls == "RST" and not prev_bits & nfct.IPS_SEEN_REPLY, (
                f"entry deleted by an accepted {direction} {cls} in {prev_state} "
                f"(status before {prev_bits:#x})"
            )
            event("deleted by a RST before any reply")
            self.forget()
            return

        if after != prev:
            # §7.6 (a): a SYN in TIME_WAIT/CLOSE may reopen: the old entry goes, the SYN makes
            # a brand-new one with its sender as originator.
            assert cell == "SS" and prev_state in ("TW", "CL"), (
                f"entry replaced by a {direction} {cls} in {prev_state}"
            )
            assert (after.orig.src, after.orig.sport) == (me.ip, me.port)
            assert STATE_ABBREV[after.state or "NONE"] == "SS"
            assert skb.ctstate == "new"
            assert skb.nfct == after
            event(f"reopen from {prev_state} ({direction})")
            self.adopt(after, cls)
            self.check_entry()
            return

        # The same entry.
        assert skb.nfct == prev
        new_state = STATE_ABBREV[after.state or "NONE"]
        allowed = {prev_state}
        if cell not in ("IG", "IV"):
            allowed.add(cell)
        if cls == "SYNACK" and cell == "IG":
            allowed.add("SR")  # (b) the SYN-ACK answering an ignored SYN
        if direction == "REPLY" and cls == "ACK" and cell == "SR" and self.was_s2:
            allowed.add("ES")  # (f) the last ACK of a simultaneous open
        assert new_state in allowed, (
            f"{direction} {cls} in {prev_state}: state became {new_state}, the table "
            f"allows {sorted(allowed)} (cell {cell})"
        )
        if new_state != prev_state:
            event(f"{prev_state} -> {new_state}")
        # §2 4.5: the packet's class.
        if direction == "REPLY":
            assert skb.ctstate == "established", skb.ctstate
            # §2 step 7: an accepted reply sets SEEN_REPLY.
            assert after.status & nfct.IPS_SEEN_REPLY
        else:
            expected = "established" if prev_bits & nfct.IPS_SEEN_REPLY else "new"
            assert skb.ctstate == expected, (skb.ctstate, expected)
        # §11.2: a state change comes with a refresh, except (l): before any reply a SYN in
        # SYN_SENT (either direction: also the one moving it to SYN_SENT2) leaves the timeout
        # alone. Without a state change, maybe (the IGNORE paths do not refresh).
        fresh = {self.now_ns + s * NS for s in refreshed_timeouts(new_state, cls)}
        syn_in_syn_sent = cls == "SYN" and prev_state == "SS"
        if not (syn_in_syn_sent and not prev_bits & nfct.IPS_SEEN_REPLY):
            if new_state != prev_state:
                self.deadlines = fresh
            else:
                self.deadlines |= fresh
        self.state = new_state
        if new_state == "S2":
            self.was_s2 = True
        self.check_entry()
        if new_state == "ES" and after.timeout + 1 in (UNACK_S, TIMEOUT_S["CL"]):
            event(f"ESTABLISHED with a {after.timeout + 1} s timeout after {cls}")

    # --- rules: opening -------------------------------------------------------------------

    @rule(side=sides_st, fresh=st.booleans(), isn=seq_st, options=syn_options, window=windows)
    def syn(self, side: int, fresh: bool, isn: int, options: bytes, window: int) -> None:
        """A SYN: a new ISN, or the same one again (a retransmission)."""
        me = self.sides[side]
        if fresh or me.isn is None:
            me.isn, me.nxt = isn, isn + 1
        assert me.isn is not None
        self.send(side, SYN, me.isn, window=window or 1, options=options)

    @rule(side=sides_st, fresh=st.booleans(), isn=seq_st, options=syn_options)
    def syn_ack(self, side: int, fresh: bool, isn: int, options: bytes) -> None:
        me, peer = self.sides[side], self.sides[1 - side]
        if fresh or me.isn is None:
            me.isn, me.nxt = isn, isn + 1
        assert me.isn is not None
        self.send(side, SYN | ACK, me.isn, peer.ack_for(), options=options)

    @rule(
        side=sides_st,
        isns=st.tuples(seq_st, seq_st),
        options=st.tuples(syn_options, syn_options),
        length=payload_len,
    )
    def handshake(
        self, side: int, isns: tuple[int, int], options: tuple[bytes, bytes], length: int
    ) -> None:
        """A whole three-way handshake with fresh ISNs, `side` opening, then maybe data."""
        me, peer = self.sides[side], self.sides[1 - side]
        me.isn, me.nxt = isns[0], isns[0] + 1
        peer.isn, peer.nxt = isns[1], isns[1] + 1
        self.send(side, SYN, me.isn, options=options[0])
        self.send(1 - side, SYN | ACK, peer.isn, me.ack_for(), options=options[1])
        self.send(side, ACK | (PSH if length else 0), me.nxt, peer.ack_for(), payload=b"h" * length)
        me.nxt += length

    @rule(side=sides_st, peer_acks_first=st.booleans())
    def close(self, side: int, peer_acks_first: bool) -> None:
        """An orderly close started by `side`: FIN, (ACK,) FIN, ACK."""
        me, peer = self.sides[side], self.sides[1 - side]
        self.send(side, FIN | ACK, me.nxt, peer.ack_for())
        me.nxt += 1
        if peer_acks_first:
            self.send(1 - side, ACK, peer.nxt, me.ack_for())
        self.send(1 - side, FIN | ACK, peer.nxt, me.ack_for())
        peer.nxt += 1
        self.send(side, ACK, me.nxt, peer.ack_for())

    @precondition(lambda self: self.state in ("TW", "CL"))
    @rule(side=sides_st, jump=st.integers(1, 1 << 30), options=syn_options)
    def reopen(self, side: int, jump: int, options: bytes) -> None:
        """A new connection on the same ports after the close, ISN beyond the old one."""
        me = self.sides[side]
        me.isn = (me.nxt + jump) % U32
        me.nxt = me.isn + 1
        self.send(side, SYN, me.isn, options=options)

    # --- rules: data and ACKs -------------------------------------------------------------

    @rule(
        side=sides_st,
        length=payload_len,
        window=windows,
        psh=st.booleans(),
        lag=st.sampled_from([0, 0, 0, 1, 1000]),
    )
    def data(self, side: int, length: int, window: int, psh: bool, lag: int) -> None:
        """An in-window segment (or a bare ACK), acknowledging everything or a bit less."""
        me, peer = self.sides[side], self.sides[1 - side]
        flags = ACK | (PSH if psh and length else 0)
        self.send(side, flags, me.nxt, peer.ack_for() - lag, payload=b"d" * length, window=window)
        me.nxt += length

    @precondition(lambda self: any(s.sent for s in self.sides))
    @rule(side=sides_st, back=st.integers(0, 15))
    def retransmit(self, side: int, back: int) -> None:
        """One of the last 16 packets of a side, byte for byte."""
        sent = self.sides[side].sent or self.sides[1 - side].sent
        side = side if self.sides[side].sent else 1 - side
        self.send(side, 0, 0, packet=sent[-1 - back % len(sent)])

    @rule(side=sides_st, offset=st.integers(70_000, (1 << 31) - 1), length=payload_len)
    def far_ahead(self, side: int, offset: int, length: int) -> None:
        """Data far beyond the receiver's window."""
        me, peer = self.sides[side], self.sides[1 - side]
        self.send(side, ACK | PSH, me.nxt + offset, peer.ack_for(), payload=b"f" * length)

    @rule(side=sides_st, excess=st.one_of(st.integers(1, 70_000), st.integers(1, 1 << 31)))
    def ack_too_far(self, side: int, excess: int) -> None:
        """An ACK of data the peer never sent (over the upper bound)."""
        me, peer = self.sides[side], self.sides[1 - side]
        self.send(side, ACK, me.nxt, peer.ack_for() + excess)

    # --- rules: closing -------------------------------------------------------------------

    @rule(side=sides_st, length=st.sampled_from([0, 0, 10]))
    def fin(self, side: int, length: int) -> None:
        me, peer = self.sides[side], self.sides[1 - side]
        self.send(side, FIN | ACK, me.nxt, peer.ack_for(), payload=b"e" * length)
        me.nxt += length + 1

    @rule(
        side=sides_st,
        kind=st.sampled_from(["exact", "exact", "zero", "ahead", "behind"]),
        with_ack=st.booleans(),
        delta=st.integers(1, 100_000),
    )
    def rst(self, side: int, kind: str, with_ack: bool, delta: int) -> None:
        """A RST: exact sequence number, 0, somewhat ahead, or behind what was acked."""
        me, peer = self.sides[side], self.sides[1 - side]
        seq = {"exact": me.nxt, "zero": 0, "ahead": me.nxt + delta, "behind": me.nxt - delta}[kind]
        flags = RST | (ACK if with_ack else 0)
        self.send(side, flags, seq, peer.ack_for() if with_ack else 0)

    # --- rules: anything ------------------------------------------------------------------

    @rule(side=sides_st, flags=st.integers(0, 255), plausible=st.booleans(), seq=seq_st)
    def random_flags(self, side: int, flags: int, plausible: bool, seq: int) -> None:
        me, peer = self.sides[side], self.sides[1 - side]
        self.send(side, flags, me.nxt if plausible else seq, peer.ack_for())

    @rule(dt_ms=clock_steps_ms)
    def advance(self, dt_ms: int) -> None:
        self.now_ns += dt_ms * MS
        self.net.advance(self.now_ns / NS)


TcpMachine.TestCase.settings = settings(
    TcpMachine.TestCase.settings, max_examples=500, stateful_step_count=80, deadline=None
)
TestTcpMachine = TcpMachine.TestCase
