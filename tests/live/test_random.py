"""Random packet sequences through the live kernel and through nfct (Hypothesis), over IPv4
and IPv6: UDP, ICMP/ICMPv6, GRE (versions 0 and 1, keys) and SCTP packets (random chunks,
right and wrong verification tags) among a few hosts, with replies, bad checksums and ICMP
errors quoting earlier packets; and TCP conversations doing random things. Both must agree on
every packet's class, on the final table and on the statistics (helpers.run_both). The crafted
edge cases are tests/scenarios/, run through the kernel by test_scenarios.py.

The tests are `seeded` (tests/conftest.py): each run draws new examples from a seed printed in
the pytest header and under a failure (rerun with NFCT_SEED=N); NFCT_EXAMPLES_SCALE=20 gives
twenty times CI's examples. One example costs about half a second (the kernel's namespace)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import C6, S6, T0, C, S, Seq, examples, run_both, seeded, timed
from nfct import packets as P
from tcp_conv import Conv, far

HOSTS = {4: [C, S, "10.4.0.7"], 6: [C6, S6, "fd00:4::7"]}
KINDS = ("udp", "udp", "echo", "reply", "error", "badsum", "gre", "gre", "sctp", "sctp")
SCTP_CHUNKS = (
    P.SCTP_INIT,
    P.SCTP_INIT_ACK,
    P.SCTP_COOKIE_ECHO,
    P.SCTP_COOKIE_ACK,
    P.SCTP_DATA,
    P.SCTP_SACK,
    P.SCTP_HEARTBEAT,
    P.SCTP_HEARTBEAT_ACK,
    P.SCTP_ABORT,
    P.SCTP_SHUTDOWN,
    P.SCTP_SHUTDOWN_ACK,
    P.SCTP_SHUTDOWN_COMPLETE,
    P.SCTP_ERROR,
)
TAGS = (0, 0x1111, 0x2222, 0xDEADBEEF)


def gre_packet(draw: st.DrawFn, a: str, b: str) -> bytes:
    """GRE version 0 with or without a key, a checksum or both; version 1 (PPTP) with its
    call id; now and then a version 1 carrying something else, or version 2."""
    how = draw(st.sampled_from(["v0", "v0", "v0key", "v0csum", "pptp", "pptp", "v1other", "v2"]))
    if how == "v0":
        return P.gre(a, b, b"g" * 8)
    if how == "v0key":
        return P.gre(a, b, b"g", key=draw(st.sampled_from([1, 0x1111, 0x2222])))
    if how == "v0csum":
        return P.gre(a, b, b"g", with_checksum=True, key=draw(st.sampled_from([None, 0x1111])))
    if how == "pptp":
        call = draw(st.sampled_from([0x1111, 0x2222, 0]))
        return P.gre(a, b, b"p" * 4, version=1, protocol=0x880B, key=(4 << 16) | call)
    if how == "v1other":
        return P.gre(a, b, b"p", version=1, protocol=0x0800, key=0x1111)
    return P.gre(a, b, b"g", version=2)


def sctp_packet(draw: st.DrawFn, a: str, b: str) -> bytes:
    """One SCTP packet of one or two chunks between fixed ports (either way), with a tag from
    a few values (0, the ones the INITs announce, another): INITs and INIT_ACKs announce
    those tags, so handshakes, heartbeats and teardowns happen now and then."""
    sp, dp = draw(st.sampled_from([(5000, 2905), (2905, 5000), (5001, 2905)]))
    vtag = draw(st.sampled_from(TAGS))
    chunks = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(SCTP_CHUNKS))
        flags = draw(st.sampled_from([0, 0, P.SCTP_FLAG_T]))
        if kind in (P.SCTP_INIT, P.SCTP_INIT_ACK):
            body = P.sctp_init_body(draw(st.sampled_from(TAGS[1:])), 7)
            if kind == P.SCTP_INIT_ACK:
                body += struct.pack("!HH", 7, 8) + b"cook"
            chunks.append(P.sctp_chunk(kind, body))
        elif kind == P.SCTP_DATA:
            chunks.append(P.sctp_data_chunk(draw(st.integers(0, 3)), b"d" * 4))
        elif kind == P.SCTP_SACK:
            chunks.append(P.sctp_sack_chunk(draw(st.integers(0, 3))))
        elif kind in (P.SCTP_HEARTBEAT, P.SCTP_HEARTBEAT_ACK):
            chunks.append(P.sctp_chunk(kind, P.sctp_heartbeat_info()))
        elif kind == P.SCTP_COOKIE_ECHO:
            chunks.append(P.sctp_chunk(kind, b"cook"))
        elif kind == P.SCTP_SHUTDOWN:
            chunks.append(P.sctp_chunk(kind, struct.pack("!I", 3)))
        else:
            chunks.append(P.sctp_chunk(kind, flags=flags))
    return P.sctp(a, b, sp, dp, vtag, *chunks)


@st.composite
def random_sequences(draw: st.DrawFn) -> Seq:
    """Random UDP, ICMP (ICMPv6), GRE and SCTP packets among a few hosts of one family (IPv4
    or IPv6), replies, bad checksums, and ICMP errors quoting earlier packets in either
    direction."""
    family = draw(st.sampled_from([4, 6]))
    hosts = HOSTS[family]
    sent: list[bytes] = []
    out: Seq = []
    for i in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(KINDS))
        a, b = draw(st.permutations(hosts))[:2]
        if kind == "udp":
            sp, dp = draw(st.sampled_from([(1000, 53), (53, 1000), (2000, 2001)]))
            pkt = P.udp(a, b, sp, dp, b"d")
        elif kind == "badsum":
            pkt = P.udp(a, b, 1000, 53, b"d", checksum=0xBAD)
        elif kind in ("echo", "reply"):
            ident = draw(st.integers(1, 3))
            echo = P.icmp_echo if family == 4 else P.icmp6_echo
            pkt = echo(a, b, ident, reply=kind == "reply")
        elif kind == "gre":
            pkt = gre_packet(draw, a, b)
        elif kind == "sctp":
            pkt = sctp_packet(draw, a, b)
        elif sent:
            quoted = draw(st.sampled_from(sent))
            qsrc, qdst = P.ip_addresses(quoted)
            # The error comes from the quoted packet's destination or from elsewhere.
            src = qdst if draw(st.booleans()) else b
            if family == 4:
                pkt = P.icmp_error(src, qsrc, 3, 3, quoted)
            else:
                pkt = P.icmp6_error(src, qsrc, 1, 4, quoted)
        else:
            continue
        sent.append(pkt)
        out.append((pkt, T0 + i * 0.001))
    return out


@seeded
@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(random_sequences())
def test_random_sequences_agree(pkts: Seq) -> None:
    res, _, _ = run_both(list(pkts))
    assert res.agree, res.render()


# --- TCP conversations ---------------------------------------------------------------------------

ACTIONS = (
    "syn",
    "synack",
    "ack",
    "data",
    "data",
    "ack",
    "retransmit",
    "out_of_window",
    "rst",
    "fin",
    "reopen",
    "flags",
    "bad_checksum",
)


@st.composite
def conversations(draw: st.DrawFn) -> Seq:
    """Both ends of one or two TCP connections over IPv4 or IPv6 (opened by a handshake, from
    nothing, or picked up mid-stream) doing random things: handshakes, data, ACKs,
    retransmissions, out-of-window segments, RSTs (exact, inexact, seq 0), FINs, reopens with
    a new ISN (either side), random flag bytes and bad checksums."""
    client, server = (C, S) if draw(st.booleans()) else (C6, S6)
    n = draw(st.integers(1, 2))
    convs = [Conv(41000 + i, client=client, server=server) for i in range(n)]
    sent: list[bytes] = []
    pkts: list[bytes] = []
    for t in convs:
        # Start from scratch, from a completed handshake, or mid-stream (pickup).
        opening = draw(st.sampled_from(["none", "handshake", "handshake", "pickup"]))
        if opening == "handshake":
            opened = t.handshake()
            pkts += opened
            sent += opened
        elif opening == "pickup":
            t.skip_handshake()
    for _ in range(draw(st.integers(1, 18))):
        t = draw(st.sampled_from(convs))
        side = draw(st.sampled_from(["c", "c", "s"]))
        send = t.c if side == "c" else t.s
        action = draw(st.sampled_from(ACTIONS))
        if action == "syn":
            pkt = send("S")
        elif action == "synack":
            wrong = draw(st.sampled_from([0, 0, 0, 1000, -1]))
            peer = "s" if side == "c" else "c"
            pkt = send("SA", seq=t.isn[side], ack=(t.isn[peer] + 1 + wrong) & 0xFFFFFFFF)
            t.nxt[side] = (t.isn[side] + 1) & 0xFFFFFFFF
        elif action == "ack":
            pkt = send("A", window=draw(st.sampled_from([None, None, 0, 65535])))
        elif action == "data":
            pkt = send("PA", payload=b"d" * draw(st.sampled_from([1, 100, 1400])))
        elif action == "retransmit" and sent:
            pkt = draw(st.sampled_from(sent))
        elif action == "out_of_window":
            by = draw(st.sampled_from([10_000_000, 70_000, -70_000, -10_000_000]))
            pkt = send("PA", seq=far(t.nxt[side], by), payload=b"o" * 10)
        elif action == "rst":
            how = draw(st.sampled_from(["exact", "exact", "zero", "inside", "below"]))
            flags = draw(st.sampled_from(["R", "RA"]))
            seq = {
                "exact": t.nxt[side],
                "zero": 0,
                "inside": far(t.nxt[side], 5000),
                "below": far(t.nxt[side], -500),
            }[how]
            pkt = send(flags, seq=seq, window=0, options=b"")
        elif action == "fin":
            pkt = send("FA")
        elif action == "reopen":
            t.reopen(side, draw(st.sampled_from([0x0100_0000, 12345])))
            pkt = send("S")
        elif action == "flags":
            pkt = send(draw(st.integers(0, 255)), advance=False)
        elif action == "bad_checksum":
            pkt = send("PA", payload=b"c" * 20, checksum=0x0BAD, advance=False)
        else:
            continue
        sent.append(pkt)
        pkts.append(pkt)
    return timed(*pkts)


@seeded
@settings(
    max_examples=examples(50),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(conversations())
def test_random_conversations_agree(pkts: Seq) -> None:
    res, _, _ = run_both(pkts)
    assert res.agree, res.render()
