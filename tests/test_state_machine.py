"""A Hypothesis state machine that drives one `Net` (small `nf_conntrack_max` and bucket
count) with UDP and ICMP/ICMPv6 echo flows between a few hosts, and checks it against a plain
Python model of the table (spec §2, §3, §5, §8, §9, §11).

The model knows each confirmed entry's tuples, the time of its first packet (UDP's 2-second
rule), SEEN_REPLY, ASSURED and its expiry time. It cannot know bucket placement, so when the
table is full and `early_drop` runs it accepts either outcome the kernel allows (some
non-ASSURED entries evicted, or the packet dropped when nothing could be evicted) and then
resynchronises from the table, after checking that no ASSURED entry vanished early.

Lookups in the invariants are made with ICMP errors quoting a packet of the flow: such a
lookup finds the connection (RELATED) without changing its state, timeout or counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import nfct
import packets as P
from helpers import hooks
from nfct import NF_ACCEPT, NF_DROP, Conn, Net, Skb

NS = 1_000_000_000
MS = 1_000_000

UDP, ICMP = 17, 1
ICMPV6 = 58

V4_HOSTS = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
V6_HOSTS = ("fd00::1", "fd00::2")
PAIRS = [(a, b) for hosts in (V4_HOSTS, V6_HOSTS) for a in hosts for b in hosts if a != b]

UDP_TIMEOUT = 30 * NS
UDP_STREAM_TIMEOUT = 120 * NS
ICMP_TIMEOUT = 30 * NS
STREAM_AFTER = 2 * NS

# (protonum, src, dst, a, b): UDP a=sport b=dport; ICMP/ICMPv6 a=type b=id (code 0).
Key = tuple[int, str, str, int, int]

ECHO_REQUEST = {ICMP: 8, ICMPV6: 128}
ECHO_REPLY = {ICMP: 0, ICMPV6: 129}
INVERT_TYPE = {8: 0, 0: 8, 128: 129, 129: 128}


def is_v6(addr: str) -> bool:
    return ":" in addr


def invert(k: Key) -> Key:
    proto, src, dst, a, b = k
    if proto == UDP:
        return (proto, dst, src, b, a)
    return (proto, dst, src, INVERT_TYPE[a], b)


def build(k: Key) -> bytes:
    proto, src, dst, a, b = k
    if proto == UDP:
        return P.udp(src, dst, a, b, b"data")
    if proto == ICMP:
        return P.icmp(src, dst, a, 0, ident=b, seq=1, body=b"ping")
    return P.icmp6(src, dst, a, 0, bytes([b >> 8, b & 0xFF, 0, 1]), b"ping")


def error_about(k: Key) -> bytes:
    """An ICMP error sent back to the sender of a packet with tuple `k`, quoting it."""
    _, src, dst, _, _ = k
    quoted = build(k)
    if is_v6(src):
        return P.icmp6_error(dst, src, 1, 4, quoted)
    return P.icmp_error(dst, src, 3, 3, quoted)


def key_of(t: nfct.Tuple) -> Key:
    if t.protonum == UDP:
        assert t.sport is not None and t.dport is not None
        return (UDP, t.src, t.dst, t.sport, t.dport)
    assert t.type is not None and t.id is not None and t.code == 0
    return (t.protonum, t.src, t.dst, t.type, t.id)


@dataclass
class Entry:
    orig: Key
    first_ns: int  # time of the first packet: UDP becomes a stream after it + 2 s
    expires_ns: int
    seen_reply: bool = False
    assured: bool = False

    @property
    def reply(self) -> Key:
        return invert(self.orig)

    def status_bits(self) -> int:
        bits = nfct.IPS_CONFIRMED
        if self.seen_reply:
            bits |= nfct.IPS_SEEN_REPLY
        if self.assured:
            bits |= nfct.IPS_ASSURED
        return bits


@dataclass
class Prediction:
    """What the model expects of one packet at the `in` hook."""

    entry: Entry | None  # the existing entry it belongs to
    reply_dir: bool = False
    creates: bool = False  # needs a new entry (may hit the table limit)
    valid_new: bool = True  # for a new entry: whether the tracker accepts it


def timeout_for(e: Entry, now: int) -> int:
    """The timeout an accepted packet sets (before SEEN_REPLY changes for this packet)."""
    if e.orig[0] == UDP:
        if e.seen_reply and now > e.first_ns + STREAM_AFTER:
            return UDP_STREAM_TIMEOUT
        return UDP_TIMEOUT
    return ICMP_TIMEOUT


def listed_seconds(remaining_ns: int) -> int:
    """Whole seconds a listing shows (taken an instant after `now`: a fresh 30 s entry is 29)."""
    return max(remaining_ns - 1, 0) // NS


packet_keys: st.SearchStrategy[Key] = st.one_of(
    st.builds(
        lambda pair, sport, dport: (UDP, pair[0], pair[1], sport, dport),
        st.sampled_from(PAIRS),
        st.sampled_from([1000, 1001, 53]),
        st.sampled_from([53, 1000]),
    ),
    st.builds(
        lambda pair, reply, ident: (
            (ICMPV6 if is_v6(pair[0]) else ICMP),
            pair[0],
            pair[1],
            (ECHO_REPLY if reply else ECHO_REQUEST)[ICMPV6 if is_v6(pair[0]) else ICMP],
            ident,
        ),
        st.sampled_from(PAIRS),
        st.sampled_from([False, False, True]),
        st.sampled_from([7, 8]),
    ),
)


# Clock steps of 0 to 200 s, biased towards the interesting scale (UDP's 2 s, the 30 s
# timeouts).
time_steps = st.one_of(
    st.sampled_from([500, 2_001, 2_500, 29_999, 30_000, 119_999, 120_000]),
    st.integers(0, 200_000),
)


class ConntrackMachine(RuleBasedStateMachine):
    net: Net
    max_entries: int
    now_ns: int
    entries: dict[Key, Entry]
    seen_status: dict[Conn, int]

    def __init__(self) -> None:
        super().__init__()
        self.entries = {}
        self.seen_status = {}
        self.now_ns = 0

    @initialize(
        max_entries=st.integers(2, 8),
        buckets=st.sampled_from([1, 2, 16]),
        seed=st.integers(0, 2**32 - 1),
    )
    def setup(self, max_entries: int, buckets: int, seed: int) -> None:
        # A fixed hash seed: which entries early_drop evicts depends on bucket placement, and
        # the draws that follow depend on the model, so a run must be reproducible.
        self.max_entries = max_entries
        self.net = Net(
            sysctl={"nf_conntrack_max": max_entries, "nf_conntrack_buckets": buckets},
            seed=seed,
        )
        self.now_ns = 10 * NS
        self.net.advance(self.now_ns / NS)

    # --- model helpers --------------------------------------------------------------------

    def live(self) -> dict[Key, Entry]:
        return {k: e for k, e in self.entries.items() if e.expires_ns > self.now_ns}

    def find(self, k: Key) -> tuple[Entry | None, bool]:
        for e in self.live().values():
            if e.orig == k:
                return e, False
            if e.reply == k:
                return e, True
        return None, False

    def predict(self, k: Key) -> Prediction:
        e, reply_dir = self.find(k)
        if e is not None:
            return Prediction(entry=e, reply_dir=reply_dir)
        valid = k[0] == UDP or k[3] == ECHO_REQUEST[k[0]]
        return Prediction(entry=None, creates=True, valid_new=valid)

    def apply_to_entry(self, p: Prediction) -> None:
        """What an accepted packet of an existing flow does (at `in`, confirmed or not)."""
        e = p.entry
        assert e is not None
        timeout = timeout_for(e, self.now_ns)
        if e.orig[0] == UDP and timeout == UDP_STREAM_TIMEOUT:
            if not e.assured:
                event("UDP flow assured")
            e.assured = True
        e.expires_ns = self.now_ns + timeout
        if p.reply_dir:
            e.seen_reply = True

    def resync_after_early_drop(self, evicted: int) -> None:
        """The table evicted `evicted` entries we could not predict: check they were all
        non-ASSURED, then follow the table."""
        listed = {key_of(c.orig) for c in self.net}
        live = self.live()
        vanished = {k: e for k, e in live.items() if k not in listed}
        for k, e in vanished.items():
            assert not e.assured, f"early_drop evicted the ASSURED entry {k}"
        assert len(vanished) == evicted, (vanished, evicted)
        self.entries = {k: e for k, e in live.items() if k in listed}

    def conn_by_key(self) -> dict[Key, Conn]:
        return {key_of(c.orig): c for c in self.net}

    # --- sending packets ------------------------------------------------------------------

    def hook_in(self, k: Key) -> tuple[Skb, int, Prediction, dict[str, int]]:
        """Runs the `in` hook for a packet with tuple k and checks it against the model.
        Returns the packet, verdict, prediction and stats before."""
        p = self.predict(k)
        all_assured = all(e.assured for e in self.live().values())
        before = self.net.stats
        count_before = self.net.count
        assert count_before == len(self.live())
        pkt = build(k)
        hook_in, _ = hooks(pkt)
        skb = Skb(pkt, tstamp=self.now_ns / NS)
        verdict = hook_in(self.net, skb)
        after = self.net.stats
        delta = {name: after[name] - before[name] for name in after if after[name] != before[name]}
        assert self.net.count <= self.max_entries

        if p.entry is not None:
            assert verdict == NF_ACCEPT
            assert delta == {}
            if p.reply_dir:
                assert skb.ctinfo == nfct.IP_CT_ESTABLISHED_REPLY
            elif p.entry.seen_reply:
                assert skb.ctinfo == nfct.IP_CT_ESTABLISHED
            else:
                assert skb.ctinfo == nfct.IP_CT_NEW
            assert skb.nfct == self.conn_by_key()[p.entry.orig]
            self.apply_to_entry(p)
            return skb, verdict, p, before

        # A tuple the table does not have: an entry is allocated (perhaps after early_drop).
        full = count_before + 1 > self.max_entries
        if not full:
            assert "early_drop" not in delta and "drop" not in delta
        evicted = delta.get("early_drop", 0)
        if verdict == NF_DROP:
            event("table full: packet dropped")
            assert full
            assert skb.nfct is None
            assert evicted == 0
            assert delta == {"drop": 1}
            assert self.net.count == count_before
            return skb, verdict, p, before
        assert verdict == NF_ACCEPT
        if full:
            assert not all_assured, "a full table of ASSURED entries must drop the packet"
            assert evicted >= 1
            event(f"table full: early_drop ({'all' if evicted == count_before else 'some'})")
            self.resync_after_early_drop(evicted)
        rest = {name: n for name, n in delta.items() if name != "early_drop"}
        if p.valid_new:
            assert rest == {}
            assert skb.ctinfo == nfct.IP_CT_NEW
            assert skb.ctstate == "new"
            conn = skb.nfct
            assert conn is not None
            assert conn.status & nfct.IPS_CONFIRMED == 0
            assert self.net.count == len(self.live()) + 1  # unconfirmed entries count
            assert conn not in set(self.net)  # ...but are never listed
            del conn
        else:
            assert rest == {"invalid": 1}
            assert skb.ctstate == "invalid"
            assert skb.nfct is None
            assert self.net.count == len(self.live())
        return skb, verdict, p, before

    def draw_key(self, data: st.DataObject) -> Key:
        """Mostly a packet of a flow the model has (either direction), else any packet."""
        known = sorted(self.entries.values(), key=lambda x: x.orig)
        if known and data.draw(st.integers(0, 2), label="known flow") > 0:
            e = data.draw(st.sampled_from(known), label="flow")
            return e.reply if data.draw(st.booleans(), label="reply direction") else e.orig
        k: Key = data.draw(packet_keys, label="packet")
        return k

    @rule(data=st.data(), n=st.integers(1, 4))
    def send_some(self, data: st.DataObject, n: int) -> None:
        for _ in range(n):
            self.send(self.draw_key(data))

    @rule(data=st.data())
    def send_one_and_drop(self, data: st.DataObject) -> None:
        self.send_and_drop(self.draw_key(data))

    def send(self, k: Key) -> None:
        """A packet in either direction of a flow, confirmed at POST_ROUTING."""
        skb, verdict, p, _ = self.hook_in(k)
        if verdict == NF_DROP:
            return
        _, confirm = hooks(skb.data)
        assert confirm(self.net, skb) == NF_ACCEPT
        if p.entry is None and p.valid_new:
            # UDP and ICMP alike: 30 s for a new entry.
            self.entries[k] = Entry(orig=k, first_ns=self.now_ns, expires_ns=self.now_ns + 30 * NS)
            assert skb.nfct == self.conn_by_key()[k]
        del skb

    def send_and_drop(self, k: Key) -> None:
        """A packet dropped (by a filter rule) between `in` and confirm: a new entry is freed
        with it; an existing entry keeps what `in` did to it."""
        skb, verdict, p, _ = self.hook_in(k)
        count_in_flight = self.net.count
        del skb  # the last reference: CPython frees the packet (and its new entry) here
        if p.entry is None and p.valid_new and verdict == NF_ACCEPT:
            assert self.net.count == count_in_flight - 1
        else:
            assert self.net.count == count_in_flight
        assert self.net.count == len(self.live())

    # --- time -----------------------------------------------------------------------------

    @rule(dt_ms=time_steps)
    def advance(self, dt_ms: int) -> None:
        self.now_ns += dt_ms * MS
        self.net.advance(self.now_ns / NS)
        assert self.net.now * NS == self.now_ns or abs(self.net.now * NS - self.now_ns) < 1000

    @rule(dt_ms=time_steps)
    def advance_and_gc(self, dt_ms: int) -> None:
        """Nothing reaps while the clock moves; gc() then reaps exactly what expired."""
        self.now_ns += dt_ms * MS
        self.net.advance(self.now_ns / NS)
        expired = [k for k, e in self.entries.items() if e.expires_ns <= self.now_ns]
        if expired:
            event("gc reaped entries")
        assert self.net.count == len(self.entries)
        assert self.net.gc() == len(expired)
        for k in expired:
            del self.entries[k]
        assert self.net.count == len(self.entries)

    @rule()
    def collect(self) -> None:
        self.net.gc()
        self.entries = self.live()
        assert self.net.count == len(self.entries)

    # --- invariants -----------------------------------------------------------------------

    @invariant()
    def table_matches_model(self) -> None:
        if not hasattr(self, "net"):
            return
        conns = list(self.net)  # reaps what expired
        self.entries = self.live()
        assert self.net.count == len(self.entries) <= self.max_entries
        assert len(conns) == len(self.entries)
        by_key = {key_of(c.orig): c for c in conns}
        assert set(by_key) == set(self.entries)
        for k, e in self.entries.items():
            c = by_key[k]
            assert key_of(c.reply) == e.reply
            assert c.status == e.status_bits(), (k, c.status, e)
            assert c.timeout == listed_seconds(e.expires_ns - self.now_ns), (k, c.timeout, e)
            # SEEN_REPLY and ASSURED are never cleared while an entry lives (the handle of a
            # re-created flow is a different entry: Conn equality is identity).
            previous = self.seen_status.get(c, 0)
            assert c.status & previous == previous
        self.seen_status = {c: c.status & (nfct.IPS_SEEN_REPLY | nfct.IPS_ASSURED) for c in conns}

    @invariant()
    def both_tuples_resolve_to_the_entry(self) -> None:
        """An ICMP error about a packet of either direction finds the entry, as RELATED,
        without changing it."""
        if not hasattr(self, "net"):
            return
        before = self.net.stats
        lines_before = sorted(self.net.dump().splitlines())
        for k, c in self.conn_by_key().items():
            e = self.entries[k]
            for quoted, ctinfo in (
                (e.orig, nfct.IP_CT_RELATED_REPLY),
                (e.reply, nfct.IP_CT_RELATED),
            ):
                pkt = error_about(quoted)
                hook_in, confirm = hooks(pkt)
                skb = Skb(pkt, tstamp=self.now_ns / NS)
                assert hook_in(self.net, skb) == NF_ACCEPT
                assert skb.ctinfo == ctinfo
                assert skb.ctstate == "related"
                assert skb.nfct == c
                assert confirm(self.net, skb) == NF_ACCEPT
        assert self.net.stats == before
        assert sorted(self.net.dump().splitlines()) == lines_before


ConntrackMachine.TestCase.settings = settings(
    ConntrackMachine.TestCase.settings, max_examples=300, stateful_step_count=60
)
TestConntrackMachine = ConntrackMachine.TestCase
