"""Random packet sequences through the live kernel and through nfct (Hypothesis): UDP and
ICMP flows among a few hosts with replies, bad checksums and ICMP errors quoting earlier packets,
and TCP conversations doing random things. Both must agree on every packet's class, on the final
table and on the statistics (helpers.run_both). The crafted edge cases are tests/scenarios/,
run through the kernel by test_scenarios.py."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import packets as P
from helpers import T0, C, S, Seq, run_both, timed
from tcp_conv import Conv, far


@st.composite
def random_sequences(draw: st.DrawFn) -> Seq:
    """Random UDP and ICMP flows among a few hosts, replies, bad checksums, and ICMP errors
    quoting earlier packets in either direction."""
    hosts = [C, S, "10.4.0.7"]
    sent: list[bytes] = []
    out: Seq = []
    for i in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["udp", "udp", "echo", "reply", "error", "badsum"]))
        a, b = draw(st.permutations(hosts))[:2]
        if kind == "udp":
            sp, dp = draw(st.sampled_from([(1000, 53), (53, 1000), (2000, 2001)]))
            pkt = P.udp(a, b, sp, dp, b"d")
        elif kind == "badsum":
            pkt = P.udp(a, b, 1000, 53, b"d", checksum=0xBAD)
        elif kind in ("echo", "reply"):
            pkt = P.icmp_echo(a, b, draw(st.integers(1, 3)), reply=kind == "reply")
        elif sent:
            quoted = draw(st.sampled_from(sent))
            # The error comes from the quoted packet's destination or from elsewhere.
            src = quoted_dst(quoted) if draw(st.booleans()) else b
            pkt = P.icmp_error(src, quoted_src(quoted), 3, 3, quoted)
        else:
            continue
        sent.append(pkt)
        out.append((pkt, T0 + i * 0.001))
    return out


def quoted_src(pkt: bytes) -> str:
    return ".".join(str(x) for x in pkt[12:16])


def quoted_dst(pkt: bytes) -> str:
    return ".".join(str(x) for x in pkt[16:20])


@settings(
    max_examples=12,
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
    """Both ends of one or two TCP connections (opened by a handshake, from nothing, or picked
    up mid-stream) doing random things: handshakes, data, ACKs, retransmissions,
    out-of-window segments, RSTs (exact, inexact, seq 0), FINs, reopens with a new ISN (either
    side), random flag bytes and bad checksums."""
    convs = [Conv(41000 + i) for i in range(draw(st.integers(1, 2)))]
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


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(conversations())
def test_random_conversations_agree(pkts: Seq) -> None:
    res, _, _ = run_both(pkts)
    assert res.agree, res.render()
