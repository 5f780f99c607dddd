"""The live kernel as the judge: crafted packet sequences (the non-TCP edge cases of spec §16)
and random ones go through the running kernel's conntrack and through nfct, and both must
agree on every packet's ct state class, on the final table and on the statistics.

The kernel is fed through a TUN device of a private namespace that forwards everything into a
veth whose egress drops it (nfct.kernel); nfct replays the same packets as a router on the
packets' own clock. Addresses here exist only inside that namespace."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import packets as P
from kernel import totals
from nfct import kernel
from nfct.compare import Comparison, compare_classes, compare_stats, compare_tables
from nfct.verify import nfct_run_packets

C, S, X = "10.1.0.2", "10.2.0.2", "10.3.0.9"
C6, S6 = "fd00:1::2", "fd00:2::2"
T0 = 1_000_000.0

Seq = list[tuple[bytes, float]]


def both(
    pkts: Seq, sysctl: dict[str, int] | None = None, *, pace: bool = False
) -> tuple[Comparison, kernel.KernelResult, list[str]]:
    """Runs the packets through the kernel (per-packet classes) and through nfct."""
    sysctl = sysctl or {}
    k = kernel.run_packets(pkts, sysctl=sysctl, per_packet=True, pace=pace)
    lines, stats, classes = nfct_run_packets(pkts, sysctl, "capture")
    res = compare_tables(k.lines, lines)
    compare_stats(k.stats, stats, result=res)
    assert k.classes is not None
    compare_classes(k.classes, classes, result=res)
    totals.add(packets=k.sent, classes=res.packets, entries=res.kernel_entries)
    return res, k, classes


def timed(*pkts: bytes, gap: float = 0.001) -> Seq:
    return [(p, T0 + i * gap) for i, p in enumerate(pkts)]


def _udp_q() -> bytes:
    return P.udp(C, S, 4002, 53, b"query")


SCENARIOS: dict[str, Callable[[], Seq]] = {
    "udp exchange": lambda: timed(
        _udp_q(), P.udp(S, C, 53, 4002, b"answer"), P.udp(C, S, 4002, 53, b"again")
    ),
    "E31 port unreachable is related": lambda: timed(_udp_q(), P.icmp_error(S, C, 3, 3, _udp_q())),
    "E34 bad UDP checksum": lambda: timed(P.udp(C, S, 4003, 53, b"x", checksum=0x1234)),
    "E35 UDP checksum 0": lambda: timed(P.udp(C, S, 4004, 53, b"x", checksum=0)),
    "E36 UDP length beyond the packet": lambda: timed(P.udp(C, S, 4005, 53, b"xx", length=40)),
    "E36 UDP length inside the packet": lambda: timed(P.udp(C, S, 4006, 53, b"xxxxxxxx", length=9)),
    "E37 ICMP error to the wrong endpoint": lambda: timed(
        _udp_q(), P.icmp_error(S, X, 3, 3, _udp_q())
    ),
    "E39 ICMP error for no flow": lambda: timed(P.icmp_error(S, C, 3, 3, _udp_q())),
    "E45 echo with code 5": lambda: timed(
        P.icmp_echo(C, S, 9, code=5), P.icmp_echo(S, C, 9, code=5, reply=True)
    ),
    "E46 echo reply echo": lambda: timed(
        P.icmp_echo(C, S, 77), P.icmp_echo(S, C, 77, reply=True), P.icmp_echo(C, S, 77, seq=2)
    ),
    "E47 reply alone, type 40, 13, 9": lambda: timed(
        P.icmp_echo(C, S, 5, reply=True),
        P.icmp(C, S, 40, 0),
        P.icmp(C, S, 13, 0, ident=3),
        P.icmp(C, S, 9, 0),
    ),
    "E48 ESP both ways": lambda: timed(P.esp(C, S, 0x100), P.esp(S, C, 0x100)),
    "E49 GRE v0": lambda: timed(P.gre(C, S), P.gre(S, C), P.gre(C, S)),
    "E50 ICMPv6 echo, NS, port unreachable": lambda: timed(
        P.icmp6_echo(C6, S6, 85),
        P.icmp6_echo(S6, C6, 85, reply=True),
        P.icmp6_neighbour_solicitation(C6, S6, S6),
        P.udp(C6, S6, 5000, 53, b"q6"),
        P.icmp6_error(S6, C6, 1, 4, P.udp(C6, S6, 5000, 53, b"q6")),
    ),
    "E63 IPv6 no next header": lambda: timed(P.ipv6(C6, S6, 59, b"")),
    "generic protocol 89": lambda: timed(P.generic(C, S, 89), P.generic(S, C, 89)),
    "UDPLITE both ways": lambda: timed(
        P.udplite(C, S, 7000, 7001, b"lite"), P.udplite(S, C, 7001, 7000, b"lite")
    ),
    "TTL 1 is not forwarded": lambda: timed(P.udp(C, S, 4010, 53, b"x", ttl=1)),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("checksum", [1, 0])
def test_crafted_sequence_agrees(name: str, checksum: int) -> None:
    res, _, _ = both(SCENARIOS[name](), {"nf_conntrack_checksum": checksum})
    assert res.agree, res.render()


def test_udp_two_second_rule_on_the_kernel_clock() -> None:
    """E32/E33: a reply within 2 s keeps 30 s; a packet more than 2 s after the first makes
    the flow ASSURED with 120 s. Paced in real time on the kernel side."""
    q, a = _udp_q(), P.udp(S, C, 53, 4002, b"answer")
    pkts = [(q, T0), (a, T0 + 0.1), (q, T0 + 0.2), (q, T0 + 2.4)]
    res, k, _ = both(pkts, pace=True)
    assert res.agree, res.render()
    assert any("[ASSURED]" in line for line in k.lines), k.lines


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
def test_random_sequences_agree(pkts: Sequence[tuple[bytes, float]]) -> None:
    res, _, _ = both(list(pkts))
    assert res.agree, res.render()
