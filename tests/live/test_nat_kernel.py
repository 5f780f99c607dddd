"""NAT (issue #13) against the live kernel: a NAT router built in the harness's namespace
(tests/live/natlab.py: clients behind the TUN device, the outside behind the veth with the
router's addresses), its nft ruleset loaded from text, the namespace snapshotted as a host file
and replayed by nfct from it. Compared: the tables (translated reply tuples included), every
packet's class, the event stream, ``conntrack -S`` (found, insert_failed, drop, clash_resolve
among them) and the bytes of every packet that left the router (``run_packets(capture=True)``).

Where the kernel draws a random number (the port search of source NAT when the original port
is taken, ``random``/``fully-random``) the tests compare what must hold instead: ranges,
uniqueness, counters, and that nfct's own packets follow nfct's own table.

Kernel behaviour observed here that the spec (kernel-conntrack.md) does not cover is written
down in the tests' docstrings.
"""

from __future__ import annotations

import ipaddress
import json
import os
import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import packets as P
from live.natlab import (
    C1,
    C2,
    C3,
    C61,
    C62,
    HOST_TABLE,
    OUT4,
    OUT6,
    S1,
    S2,
    S61,
    S62,
    NatRun,
    Seq,
    checksums_ok,
    describe,
    forwarded_bytes,
    run_nat,
    setup_nat_host,
    timed,
)
from nfct import kernel
from nfct.compare import parse_conntrack_line

OUT_DEV = kernel.VETH_OUT


def nat_table(family: str, *chains: str) -> str:
    return f"table {family} nat_t {{\n" + "".join(chains) + "}\n"


def post(*rules: str, prio: str = "srcnat") -> str:
    body = "".join(f"        {r}\n" for r in rules)
    return (
        "    chain post {\n"
        f"        type nat hook postrouting priority {prio}; policy accept;\n{body}    }}\n"
    )


def pre(*rules: str, prio: str = "dstnat") -> str:
    body = "".join(f"        {r}\n" for r in rules)
    return (
        "    chain pre {\n"
        f"        type nat hook prerouting priority {prio}; policy accept;\n{body}    }}\n"
    )


def handshake(
    c: str,
    s: str,
    sport: int,
    dport: int,
    *,
    back: str | None = None,
    back_port: int | None = None,
    back_dst: str | None = None,
    back_dport: int | None = None,
) -> list[bytes]:
    """SYN c->s, SYN-ACK back (from ``back``:``back_port``, default s:dport, to ``back_dst``:
    ``back_dport``, default c:sport), ACK c->s."""
    b, bp = back or s, back_port or dport
    bd, bdp = back_dst or c, back_dport or sport
    isn_c, isn_s = 1000 + sport, 9000 + sport
    return [
        P.tcp(c, s, sport, dport, flags="S", seq=isn_c),
        P.tcp(b, bd, bp, bdp, flags="SA", seq=isn_s, ack=isn_c + 1),
        P.tcp(c, s, sport, dport, flags="A", seq=isn_c + 1, ack=isn_s + 1),
    ]


def agree(run: NatRun) -> None:
    assert run.cmp.agree and not run.byte_diffs and not run.written_diffs, run.render()
    for i, data in run.out:
        assert not checksums_ok(data), (i, checksums_ok(data))
    assert sorted(run.out_lines) == sorted(run.lines)


# --- deterministic scenarios: everything compared, bytes included ------------------------------

SNAT4 = nat_table("ip", post(f'oifname "{OUT_DEV}" ip saddr 10.1.0.0/16 snat to {OUT4}'))


def _snat_one_traffic() -> Seq:
    q1 = P.udp(C1, S1, 1234, 53, b"query")
    return timed(
        q1,
        P.udp(S1, OUT4, 53, 1234, b"answer"),
        P.udp(C2, S2, 1234, 53, b"other server"),
        *handshake(C1, S1, 40000, 80, back_dst=OUT4),
        P.icmp_echo(C1, S1, 77),
        P.icmp_echo(S1, OUT4, 77, reply=True),
        P.udp(C1, S1, 1234, 53, b"again"),
    )


SCENARIOS: dict[str, tuple[str, object]] = {}


def scenario(name: str, ruleset: str):  # type: ignore[no-untyped-def]
    def deco(fn):  # type: ignore[no-untyped-def]
        SCENARIOS[name] = (ruleset, fn)
        return fn

    return deco


scenario("snat to one address: udp, tcp, icmp echo", SNAT4)(_snat_one_traffic)

CLIENTS = [f"10.1.0.{i}" for i in range(2, 14)]
SERVERS = [S1, S2, "198.51.100.12"]


@scenario(
    "snat to a range: the address by jhash2",
    nat_table("ip", post(f'oifname "{OUT_DEV}" snat to 203.0.113.10-203.0.113.20')),
)
def _snat_range() -> Seq:
    out = []
    for n, c in enumerate(CLIENTS):
        for m, s in enumerate(SERVERS):
            out.append(P.udp(c, s, 2000 + n, 53 + m, b"q"))
    return timed(*out)


def test_snat_range_reuses_a_sources_mapping() -> None:
    """find_appropriate_src (the bysource list): a source (address, port, protocol) already
    mapped keeps its mapping for other destinations, though the hash of the addresses would
    pick another address for them; from another source port each connection gets the hashed
    address of its own destination. Both as the kernel does."""
    ruleset = SCENARIOS["snat to a range: the address by jhash2"][0]
    same = timed(*[P.udp(c, s, 2000 + n, 53, b"q") for n, c in enumerate(CLIENTS) for s in SERVERS])
    other = timed(
        *[
            P.udp(c, s, 2000 + 3 * n + m, 53, b"q")
            for n, c in enumerate(CLIENTS)
            for m, s in enumerate(SERVERS)
        ]
    )
    per_client = []
    for pkts in (same, other):
        run = run_nat(pkts, ruleset)
        agree(run)
        addrs: dict[str, set[str]] = {}
        for e in run.entries():
            addrs.setdefault(e["orig"]["src"], set()).add(e["reply"]["dst"])
        per_client.append(addrs)
    assert all(len(a) == 1 for a in per_client[0].values())
    assert any(len(a) > 1 for a in per_client[1].values())


@scenario(
    "snat to a range, persistent",
    nat_table("ip", post(f'oifname "{OUT_DEV}" snat to 203.0.113.10-203.0.113.20 persistent')),
)
def _snat_persistent() -> Seq:
    return _snat_range()


@scenario(
    "snat ip6 to a range",
    nat_table("ip6", post(f'oifname "{OUT_DEV}" snat to 2001:db8:ff::10-2001:db8:ff::30')),
)
def _snat6_range() -> Seq:
    out = []
    for n in range(2, 10):
        for m, s in enumerate([S61, S62]):
            out.append(P.udp(f"fd00:1::{n}", s, 2000 + n, 53 + m, b"q"))
    return timed(*out)


@scenario(
    "snat to address and port range, original port in range",
    nat_table(
        "ip", post(f'oifname "{OUT_DEV}" meta l4proto {{ tcp, udp }} snat to {OUT4}:1000-3000')
    ),
)
def _snat_port_in_range() -> Seq:
    return timed(
        P.udp(C1, S1, 2000, 53, b"q"),
        P.udp(S1, OUT4, 53, 2000, b"a"),
        *handshake(C2, S1, 2500, 80, back_dst=OUT4),
    )


@scenario("masquerade", nat_table("ip", post(f'oifname "{OUT_DEV}" masquerade')))
def _masquerade() -> Seq:
    return _snat_one_traffic()


@scenario(
    "masquerade in an inet table, both families",
    nat_table("inet", post(f'oifname "{OUT_DEV}" masquerade')),
)
def _masquerade_inet() -> Seq:
    return timed(
        *[p for p, _ in _snat_one_traffic()],
        P.udp(C61, S61, 1234, 53, b"q6"),
        P.udp(S61, OUT6, 53, 1234, b"a6"),
        P.icmp6_echo(C61, S61, 9),
        P.icmp6_echo(S61, OUT6, 9, reply=True),
        *handshake(C62, S62, 40001, 443, back_dst=OUT6),
    )


DNAT4 = nat_table(
    "ip",
    pre(
        f"ip daddr {S1} tcp dport 80 dnat to 198.51.100.20:8080",
        f"ip daddr {S1} udp dport 53 dnat to 198.51.100.21",
    ),
)


@scenario("dnat to address and port", DNAT4)
def _dnat() -> Seq:
    return timed(
        *handshake(C1, S1, 40000, 80, back="198.51.100.20", back_port=8080),
        P.udp(C1, S1, 1000, 53, b"q"),
        P.udp("198.51.100.21", C1, 53, 1000, b"a"),
        P.udp(C2, S1, 1000, 53, b"q"),
    )


@scenario(
    "dnat to a range: the address by jhash2",
    nat_table("ip", pre(f"ip daddr {S1} dnat to 198.51.100.20-198.51.100.29")),
)
def _dnat_range() -> Seq:
    return timed(*[P.udp(c, S1, 3000 + n, 53, b"q") for n, c in enumerate(CLIENTS)])


@scenario(
    "dnat ip6 to a range",
    nat_table("ip6", pre(f"ip6 daddr {S61} dnat to 2001:db8:1::20-2001:db8:1::2f")),
)
def _dnat6_range() -> Seq:
    return timed(*[P.udp(f"fd00:1::{n}", S61, 3000 + n, 53, b"q") for n in range(2, 12)])


@scenario(
    "dnat to a port range: searched from its start",
    nat_table("ip", pre("udp dport 53 dnat to 198.51.100.20:5300-5302")),
)
def _dnat_port_range() -> Seq:
    """The same client port to three servers: all DNATed to one address, so the second and
    third need other ports. Destination NAT searches from the range's start (offset 0, no
    random number): 5300, 5301, 5302; a fourth finds none and keeps the last tried."""
    return timed(
        P.udp(C1, S1, 1000, 53, b"q"),
        P.udp(C1, S2, 1000, 53, b"q"),
        P.udp(C1, "198.51.100.12", 1000, 53, b"q"),
        P.udp("198.51.100.20", C1, 5301, 1000, b"a"),
    )


@scenario(
    "redirect to a local port",
    nat_table(
        "ip",
        pre(
            f"ip daddr {S1} udp dport 53 redirect to :5353",
            f"ip daddr {S1} tcp dport 80 redirect to :8080",
        ),
    ),
)
def _redirect() -> Seq:
    """Redirected packets go to the incoming interface's first address (the TUN's 192.0.0.8)
    and are delivered: their class is the input chain's."""
    return timed(
        P.udp(C1, S1, 1000, 53, b"q"),
        P.tcp(C1, S1, 40000, 80, flags="S", seq=1),
        P.udp(C1, S2, 1000, 53, b"not redirected"),
    )


@scenario(
    "snat and dnat on one connection",
    nat_table(
        "ip",
        pre(f"ip daddr {S1} dnat to 198.51.100.20"),
        post(f'oifname "{OUT_DEV}" snat to {OUT4}'),
    ),
)
def _both() -> Seq:
    return timed(
        P.udp(C1, S1, 1000, 53, b"q"),
        P.udp("198.51.100.20", OUT4, 53, 1000, b"a"),
        *handshake(C2, S1, 40002, 22, back="198.51.100.20", back_dst=OUT4),
    )


@scenario(
    "icmp errors about translated flows",
    nat_table(
        "ip",
        pre(f"ip daddr {S2} udp dport 53 dnat to 198.51.100.20:5353"),
        post(f'oifname "{OUT_DEV}" snat to {OUT4}'),
    ),
)
def _icmp_errors() -> Seq:
    """Errors from the server and from a router on the way, quoting the translated packet,
    reach the client with the quoted header translated back."""
    seen = P.udp(OUT4, S1, 1234, 53, b"q", ttl=63)
    dnat_seen = P.udp(OUT4, "198.51.100.20", 1235, 5353, b"q", ttl=63)
    tcp_seen = P.tcp(OUT4, S1, 40000, 80, flags="S", seq=41001, ttl=63)
    return timed(
        P.udp(C1, S1, 1234, 53, b"q"),
        P.icmp_error(S1, OUT4, 3, 3, seen),
        P.icmp_error("198.51.100.99", OUT4, 11, 0, seen),
        P.udp(C1, S2, 1235, 53, b"q"),
        P.icmp_error("198.51.100.20", OUT4, 3, 3, dnat_seen),
        P.tcp(C1, S1, 40000, 80, flags="S", seq=41001),
        P.icmp_error("198.51.100.99", OUT4, 3, 1, tcp_seen, quote_len=48),
    )


@scenario(
    "icmpv6 errors about translated flows",
    nat_table("ip6", post(f'oifname "{OUT_DEV}" snat to {OUT6}')),
)
def _icmp6_errors() -> Seq:
    seen = P.udp(OUT6, S61, 1234, 53, b"q6", ttl=63)
    return timed(
        P.udp(C61, S61, 1234, 53, b"q6"),
        P.icmp6_error(S61, OUT6, 1, 4, seen),
        P.icmp6_error("2001:db8:1::99", OUT6, 3, 0, seen),
    )


@scenario(
    "dnat by numgen inc, and by a concatenated map of address and port",
    "table ip nat_t {\n"
    "    map backends {\n"
    "        type ipv4_addr . inet_service : ipv4_addr . inet_service\n"
    f"        elements = {{ {S2} . 80 : 198.51.100.30 . 8080,\n"
    f"                     {S2} . 443 : 198.51.100.31 . 8443 }}\n"
    "    }\n"
    + pre(
        f"ip daddr {S1} udp dport 53 dnat to numgen inc mod 3 map "
        "{ 0 : 198.51.100.20, 1 : 198.51.100.21, 2 : 198.51.100.22 }",
        f"ip daddr {S2} meta l4proto tcp dnat ip to ip daddr . tcp dport map @backends",
    )
    + "}\n",
)
def _maps() -> Seq:
    """`numgen inc` counts the packets that reach it (first packets only: later ones skip the
    nat chains), so backends go round in order; the map gives address and port at once."""
    return timed(
        *[P.udp(c, S1, 3000 + n, 53, b"q") for n, c in enumerate(CLIENTS[:7])],
        P.udp("198.51.100.21", C2, 53, 3001, b"a"),
        *handshake(C1, S2, 4000, 80, back="198.51.100.30", back_port=8080),
        P.tcp(C1, S2, 4001, 443, flags="S", seq=1),
        P.tcp(C1, S2, 4002, 22, flags="S", seq=1),
    )


@scenario(
    "snat at input",
    "table ip nat_t {\n"
    "    chain in {\n"
    "        type nat hook input priority 100; policy accept;\n"
    "        ip saddr 198.51.100.0/24 snat to 192.0.0.99\n"
    "    }\n"
    "}\n",
)
def _snat_input() -> Seq:
    """Source NAT of packets delivered to the router itself (the input hook, after the
    harness's counting chain): the entry's reply goes to the translated address."""
    return timed(P.udp(S1, OUT4, 1000, 53, b"q"), P.udp(S2, OUT4, 1001, 53, b"q"))


ONE_PORT_TCP = nat_table("ip", post(f'oifname "{OUT_DEV}" meta l4proto tcp snat to {OUT4}:40000'))


@scenario("port exhaustion: a one-port range, tcp", ONE_PORT_TCP)
def _exhaustion() -> Seq:
    """Two TCP connections to one server through a one-port range: the second's search (one
    attempt) finds the port taken and keeps it; confirmation finds the reply tuple in the
    table and TCP cannot clash: the SYN is dropped (insert_failed and drop +1). The search's
    one attempt is among its last 32, where a SYN's lookup counts no `found` (observed)."""
    return timed(
        *handshake(C1, S1, 1000, 80, back_dst=OUT4, back_dport=40000),
        P.tcp(C2, S1, 1000, 80, flags="S", seq=5),
        P.tcp(C2, S1, 1001, 80, flags="A", seq=6, ack=1),
    )


@scenario(
    "port exhaustion: a one-port range, udp",
    nat_table("ip", post(f'oifname "{OUT_DEV}" meta l4proto udp snat to {OUT4}:40000')),
)
def _exhaustion_udp() -> Seq:
    """UDP may clash, but the reply tuple of the second flow is the first flow's reply with
    a different original: not mergeable, not resolvable harder: dropped, insert_failed, drop
    and found +1 (observed)."""
    return timed(P.udp(C1, S1, 1000, 53, b"q"), P.udp(C2, S1, 1000, 53, b"q"))


def _closing(upto: int) -> list[bytes]:
    """A connection C1:1000 -> S1:80 SNATed to OUT4:40000, up to step ``upto`` of: SYN,
    SYN-ACK, ACK, FIN (client), ACK, FIN (server), ACK (TIME_WAIT)."""
    c = lambda f, q, a=0: P.tcp(C1, S1, 1000, 80, flags=f, seq=q, ack=a)  # noqa: E731
    r = lambda f, q, a=0: P.tcp(S1, OUT4, 80, 40000, flags=f, seq=q, ack=a)  # noqa: E731
    steps = [
        c("S", 1000),
        r("SA", 9000, 1001),
        c("A", 1001, 9001),
        c("FA", 1001, 9001),
        r("A", 9001, 1002),
        r("FA", 9001, 1002),
        c("A", 1002, 9002),
    ]
    return steps[:upto]


@scenario("one-port range: a SYN takes over a TIME_WAIT connection", ONE_PORT_TCP)
def _takeover_time_wait() -> Seq:
    """Linux 6.x (nf_nat_used_tuple_harder, not in the spec), observed: in a port search's
    last 32 attempts, a new connection's SYN whose sequence number is at or after the end of
    a TIME_WAIT or CLOSE connection's original direction deletes that connection (DESTROY)
    and takes its tuple. The SYN at 1002 follows the FIN at 1001: it takes over; the next one
    (seq 1001, not after the end of the connection it would replace, now in SYN_SENT) cannot."""
    return timed(
        *_closing(7),
        P.tcp(C2, S1, 1001, 80, flags="S", seq=1002),
        P.tcp(C3, S1, 1002, 80, flags="S", seq=1001),
    )


@scenario("one-port range: a SYN does not take over a CLOSE_WAIT connection", ONE_PORT_TCP)
def _no_takeover_close_wait() -> Seq:
    return timed(*_closing(5), P.tcp(C2, S1, 1001, 80, flags="S", seq=5000))


@scenario("one-port range: a SYN takes over a reset connection", ONE_PORT_TCP)
def _takeover_close() -> Seq:
    return timed(
        *_closing(3),
        P.tcp(S1, OUT4, 80, 40000, flags="R", seq=9001),
        P.tcp(C2, S1, 1001, 80, flags="S", seq=5000),
    )


@scenario("one-port range: an ACK does not take over a TIME_WAIT connection", ONE_PORT_TCP)
def _no_takeover_ack() -> Seq:
    return timed(*_closing(7), P.tcp(C2, S1, 1001, 80, flags="A", seq=5000, ack=1))


DNAT64 = nat_table(
    "ip", pre("ip daddr 198.51.100.0/24 meta l4proto tcp dnat to 198.51.100.200:5000-5063")
)
SERVERS64 = [f"198.51.100.{i}" for i in range(1, 65)]


@scenario("found: 64 SYNs searched into a 64-port range", DNAT64)
def _found_syn() -> Seq:
    """Destination NAT searches from the range's start, so connection k meets k taken ports:
    an ACK-created entry counts every one in `found` (2016), a SYN's search only those with
    more than 32 attempts left (1520), as observed."""
    return timed(*[P.tcp(C1, s, 1000, 80, flags="S", seq=1) for s in SERVERS64])


@scenario("found: 64 mid-stream ACKs searched into a 64-port range", DNAT64)
def _found_ack() -> Seq:
    return timed(*[P.tcp(C1, s, 1000, 80, flags="A", seq=1, ack=1) for s in SERVERS64])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_nat_scenario_agrees(name: str) -> None:
    ruleset, traffic = SCENARIOS[name]
    run = run_nat(traffic(), ruleset)  # type: ignore[operator]
    agree(run)
    if "exhaustion" in name:
        assert run.k.stats["insert_failed"] == run.k.stats["drop"] == 2 - ("udp" in name)
        assert run.confirm_drops == 2 - ("udp" in name)
    if "takes over" in name:
        destroyed = [e for e in run.k.events if "[DESTROY]" in e]
        assert len(destroyed) == 1 and "sport=1000" in destroyed[0], run.k.events
    if name.startswith("found"):
        assert run.k.stats["found"] == (1520 if "SYN" in name else 2016)


def test_ipv6_masquerade_source_selection() -> None:
    """IPv6 masquerade takes the source address RFC 6724 selects for the destination among the
    outgoing interface's addresses (ipv6_dev_get_saddr), not the first one: with
    2001:db8:ff::1, 3fff::1 and fd99::1 there (listed in the reverse order), the longest prefix
    in common decides (2001:db8:1::10, 2002::1, 2001::1 -> 2001:db8:ff::1; 3ffe::10 ->
    3fff::1), the label (ULA with ULA: fd00:7::1 -> fd99::1; not for 8000::1, whose one
    common bit is with fd99::1 -> 3fff::1), ties go to the first listed (4000::1,
    ::ffff:1.2.3.4 -> 3fff::1), a site-local destination to the longest common prefix
    (fec0::1 -> fd99::1). Observed on 6.18."""

    def more_addresses(lab: kernel.KernelLab) -> None:
        for a in ("3fff::1/64", "fd99::1/64"):
            lab.exec("ip", "-6", "addr", "add", a, "dev", OUT_DEV, "nodad")

    dsts = ["2001:db8:1::10", "3fff:1::10", "3ffe::10", "fd99:5::1", "fd00:7::1"]
    dsts += ["4000::1", "8000::1", "2002::1", "2001::1", "fec0::1"]
    pkts = timed(*[P.udp(C61, d, 1000 + i, 53, b"q") for i, d in enumerate(dsts)])
    ruleset = nat_table("ip6", post(f'oifname "{OUT_DEV}" masquerade'))
    agree(run_nat(pkts, ruleset, setup=more_addresses))


# --- random choices: what must hold -----------------------------------------------------------


def _masked(lines: list[str], searched: set[tuple[str, str]]) -> list[tuple[object, ...]]:
    """Entries as comparable keys, with the translated port (or ICMP id) of the entries whose
    original (src, sport or id) is in ``searched`` replaced by "*"."""
    out: list[tuple[object, ...]] = []
    for e in map(parse_conntrack_line, lines):
        o, r = dict(e["orig"]), dict(e["reply"])
        if (o["src"], o.get("sport", o.get("id"))) in searched:
            for k in ("dport", "id"):
                if k in r:
                    r[k] = "*"
        out.append((e["proto"], e["state"], tuple(sorted(o.items())), tuple(sorted(r.items()))))
    return sorted(out)


def _translated(lines: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """Original (src, sport or id) -> reply (dst, dport or id)."""
    result = {}
    for e in map(parse_conntrack_line, lines):
        o, r = e["orig"], e["reply"]
        result[(o["src"], o.get("sport", o.get("id", "")))] = (
            r["dst"],
            r.get("dport", r.get("id", "")),
        )
    return result


def _out_consistent(run: NatRun) -> None:
    """nfct's packets that left follow nfct's table (source address and port of each
    forwarded original packet = its entry's translated reply destination), with valid
    checksums; the kernel's do the same with the kernel's table."""
    for side, lines, out in (
        ("nfct", run.lines, run.out),
        ("kernel", run.k.lines, run.kernel_out),
    ):
        table = _translated(lines)
        for i, data in out:
            assert not checksums_ok(data), (side, i, checksums_ok(data))
            orig = run.sent[i]
            key = (_src(orig), _sport(orig))
            if key in table:
                assert (_src(data), _sport(data)) == table[key], (side, i, describe(data))


def _src(p: bytes) -> str:
    if p[0] >> 4 == 6:
        return str(ipaddress.IPv6Address(p[8:24]))
    return str(ipaddress.IPv4Address(p[12:16]))


def _sport(p: bytes) -> str:
    l4 = 40 if p[0] >> 4 == 6 else (p[0] & 15) * 4
    proto = p[6] if p[0] >> 4 == 6 else p[9]
    if proto in (1, 58):
        return str(struct.unpack("!H", p[l4 + 4 : l4 + 6])[0])
    return str(struct.unpack("!H", p[l4 : l4 + 2])[0])


def _run_random(
    pkts: Seq, ruleset: str, searched: set[tuple[str, str]], *, found_random: bool = False
) -> NatRun:
    """``found_random``: the port search draws from a range small enough that a random draw
    meeting a port already taken (one more ``found``, and a next draw) happens in a few
    percent of runs, on either side independently; then ``found`` is compared as "at least
    what the original tuples' checks count" by the caller, and every other statistic exactly."""
    run = run_nat(pkts, ruleset, exact=False, compare_bytes=False)
    assert run.k.classes == run.classes
    if found_random:
        k_stats = {k: v for k, v in run.k.stats.items() if k != "found"}
        n_stats = {k: v for k, v in run.stats.items() if k != "found"}
        assert k_stats == n_stats, (run.k.stats, run.stats)
    else:
        assert run.k.stats == run.stats, (run.k.stats, run.stats)
    assert _masked(run.k.lines, searched) == _masked(run.lines, searched), (run.k.lines, run.lines)
    assert len(run.kernel_out) == len(run.out)
    _out_consistent(run)
    return run


def _ports(lines: list[str], searched: set[tuple[str, str]]) -> list[int]:
    return [int(v[1]) for k, v in _translated(lines).items() if k in searched]


def test_snat_port_search_when_the_original_port_is_taken() -> None:
    """Five clients with the same source port to one server through SNAT to one address:
    the first keeps its port, the others get ports searched from a random offset in the
    original port's class (1024-65535 here; 600-1023 for a port in 512-1023), each unique.
    The check of the original tuple counts one `found` each."""
    clients = [f"10.1.0.{i}" for i in range(2, 7)]
    pkts = timed(
        *[P.udp(c, S1, 1234, 53, b"q") for c in clients],
        *[P.tcp(c, S1, 700, 80, flags="S", seq=1) for c in clients],
    )
    searched = {(c, p) for c in clients[1:] for p in ("1234", "700")}
    # Four draws in the 600-1023 class (424 ports): one meeting a port taken before it (found
    # + 1, and a next draw) happens in about 2% of runs on each side, kernel and nfct drawing
    # independently (the kernel counted 9 once, in CI, 2026-12-04).
    run = _run_random(pkts, SNAT4, searched, found_random=True)
    for stats in (run.k.stats, run.stats):
        assert 8 <= stats["found"] <= 10, (run.k.stats, run.stats)
    for lines in (run.k.lines, run.lines):
        udp = [int(v[1]) for k, v in _translated(lines).items() if k[1] == "1234"]
        tcp = [int(v[1]) for k, v in _translated(lines).items() if k[1] == "700"]
        assert len(set(udp)) == len(set(tcp)) == 5
        assert 1234 in udp and all(1024 <= p <= 65535 for p in udp)
        assert 700 in tcp and all(600 <= p <= 1023 for p in tcp)


@pytest.mark.parametrize("flag", ["random", "fully-random"])
def test_snat_random_flags(flag: str) -> None:
    """With `random` or `fully-random` even a free original port in the range is not kept:
    every port comes from the search from a random offset, each in the range and unique (of
    eight connections from free ports in the range, more than one keeping its port would
    happen once in ~30000 runs)."""
    ruleset = nat_table(
        "ip", post(f'oifname "{OUT_DEV}" meta l4proto udp snat to {OUT4}:10000-10999 {flag}')
    )
    clients = [f"10.1.0.{i}" for i in range(2, 10)]
    pkts = timed(*[P.udp(c, S1, 10000 + 7 * n, 53, b"q") for n, c in enumerate(clients)])
    searched = {(c, str(10000 + 7 * n)) for n, c in enumerate(clients)}
    # Eight draws from 1000 ports: one meeting a port an earlier connection took (found + 1)
    # happens in about 3% of runs, kernel and nfct drawing independently (observed once).
    run = _run_random(pkts, ruleset, searched, found_random=True)
    assert run.k.stats["found"] <= 3 and run.stats["found"] <= 3, (run.k.stats, run.stats)
    for lines in (run.k.lines, run.lines):
        table = _translated(lines)
        ports = [int(table[k][1]) for k in searched]
        assert len(set(ports)) == len(clients)
        assert all(10000 <= p <= 10999 for p in ports)
        assert sum(int(table[k][1]) == int(k[1]) for k in searched) <= 1, table


def test_icmp_echo_ids_translated() -> None:
    """Two clients pinging one server with the same echo id through SNAT: the second's id is
    searched (0-65535) from a random offset; the replies to it come back with the client's
    own id."""
    pkts = timed(P.icmp_echo(C1, S1, 77), P.icmp_echo(C2, S1, 77), P.icmp_echo(C3, S1, 78))
    searched = {(C2, "77")}
    run = _run_random(pkts, SNAT4, searched)
    assert run.k.stats["found"] == 1
    for lines in (run.k.lines, run.lines):
        ids = _ports(lines, searched)
        assert ids != [77] and len(ids) == 1


@pytest.mark.parametrize("order", ["translated first", "forwarded first"])
def test_null_binding_port_change(order: str) -> None:
    """A forwarded connection no rule translates gets the null binding at POST_ROUTING: its
    tuple kept unless the reply it would have is a translated connection's; then its source
    port is searched like a SNAT one. In the other order the SNAT connection is the one
    whose port is searched. `found` counts every check that met a taken tuple: translated
    first, the forwarded connection's destination null binding at PRE_ROUTING meets the
    translated reply (its port is kept: a destination is not searched without a range), then
    its source null binding meets it twice (the original tuple, then the mapped one): 3;
    forwarded first, only the SNAT's mapped tuple meets it: 1 (observed)."""
    x = "203.0.113.7"  # a SNAT address the router does not own, also a forwarded source
    ruleset = nat_table("ip", post(f'oifname "{OUT_DEV}" ip saddr 10.1.0.0/16 snat to {x}'))
    natted, plain = P.udp(C1, S1, 1234, 53, b"q"), P.udp(x, S1, 1234, 53, b"q")
    pkts = timed(natted, plain) if order == "translated first" else timed(plain, natted)
    second = (x, "1234") if order == "translated first" else (C1, "1234")
    run = _run_random(pkts, ruleset, {second})
    assert run.k.stats["found"] == (3 if order == "translated first" else 1)
    for lines in (run.k.lines, run.lines):
        assert _ports(lines, {second}) != [1234]


# --- fragments --------------------------------------------------------------------------------


def _fragments(datagram: bytes, first_len: int) -> list[bytes]:
    """An IPv4 datagram cut in two fragments, the first carrying ``first_len`` bytes of it
    after the header (a multiple of 8)."""
    ihl = (datagram[0] & 15) * 4
    body = datagram[ihl:]
    src, dst = _src(datagram), str(ipaddress.IPv4Address(datagram[16:20]))
    ident = 0x4242
    return [
        P.ipv4(src, dst, datagram[9], body[:first_len], ident=ident, more_fragments=True),
        P.ipv4(src, dst, datagram[9], body[first_len:], ident=ident, frag_off=first_len // 8),
    ]


def test_fragmented_datagram_dnat() -> None:
    """A UDP datagram in two fragments, DNATed. The kernel reassembles it in front of
    conntrack, translates the whole datagram and fragments it again on the way out (to the
    largest fragment size it received, keeping the IP id), so two fragments leave, both
    after the last one arrived; reassembled they are nfct's datagram, byte for byte. nfct
    writes the reassembled, translated datagram as one packet (it does not fragment again:
    that difference is the only one)."""
    ruleset = nat_table("ip", pre(f"ip daddr {S1} udp dport 53 dnat to 198.51.100.20:5353"))
    big = P.udp(C1, S1, 1000, 53, bytes(range(256)) * 4)
    pkts = timed(*_fragments(big, 600), P.udp("198.51.100.20", C1, 5353, 1000, b"answer"))
    run = run_nat(pkts, ruleset)
    assert run.cmp.agree, run.render()
    assert not run.byte_diffs and not run.written_diffs, run.render()
    assert run.k.egress is not None
    frags = [e for e in run.k.egress if e.packet == 1]
    assert len(frags) == 2 and all(len(e.data) <= 620 for e in frags), frags
    assert [i for i, _ in run.out] == [1, 2]
    assert not checksums_ok(run.out[0][1])


def test_fragmented_ipv6_datagram_dnat() -> None:
    """The same over IPv6 (nf_defrag_ipv6, then ip6_fragment to the largest fragment size
    received): two fragments leave after the last one arrived, and reassembled (fragment
    header dropped) they are nfct's translated datagram."""
    ruleset = nat_table("ip6", pre(f"ip6 daddr {S61} udp dport 53 dnat to [2001:db8:1::20]:5353"))
    big = P.udp(C61, S61, 1000, 53, bytes(range(256)) * 4)
    body = big[40:]
    frags = [
        P.ipv6(C61, S61, 17, body[:600], ext_headers=[(44, struct.pack("!HI", 0 | 1, 0x4242))]),
        P.ipv6(C61, S61, 17, body[600:], ext_headers=[(44, struct.pack("!HI", 600, 0x4242))]),
    ]
    pkts = timed(*frags, P.udp("2001:db8:1::20", C61, 5353, 1000, b"answer"))
    run = run_nat(pkts, ruleset)
    assert run.cmp.agree and not run.byte_diffs and not run.written_diffs, run.render()
    assert run.k.egress is not None
    assert len([e for e in run.k.egress if e.packet == 1]) == 2
    assert [i for i, _ in run.out] == [1, 2]


# --- the harness's capture ----------------------------------------------------------------------


def test_capture_tags_each_packet_that_left_with_the_packet_that_sent_it() -> None:
    """Without NAT: forwarded packets leave by the veth exactly as written but for the TTL
    (and the header checksum); a packet routed to the inside leaves by the TUN device; one
    with TTL 1 and one to the router's own address do not leave. Without ``capture`` nothing
    is kept."""
    pkts = timed(
        P.udp("198.51.100.50", S1, 1, 2, b"a"),
        P.udp("198.51.100.50", S1, 1, 2, b"ttl", ttl=1),
        P.udp(S1, C1, 2, 1, b"inside"),
        P.udp(S1, OUT4, 2, 1, b"local"),
        P.udp(C1, S2, 3, 4, b"out"),
    )
    k = kernel.run_packets(pkts, ruleset=HOST_TABLE, setup=setup_nat_host, capture=True)
    assert k.egress is not None
    assert [(e.packet, e.dev) for e in k.egress] == [
        (0, kernel.VETH_OUT),
        (2, kernel.TUN_NAME),
        (4, kernel.VETH_OUT),
    ]
    for e in k.egress:
        assert e.data == forwarded_bytes(pkts[e.packet][0])
    plain = kernel.run_packets(pkts[:1])
    assert plain.egress is None


# --- generated rulesets and traffic -------------------------------------------------------------

#: How many generated rulesets a run tries (CI: the derandomized `ci` profile, few examples);
#: NFCT_NAT_EXAMPLES=200 pytest tests/live/test_nat_kernel.py -k generated runs more.
NAT_EXAMPLES = int(os.environ.get("NFCT_NAT_EXAMPLES", "8"))

_SADDRS = ["10.1.0.0/16", "10.1.0.0/30", "10.1.0.4/31", "10.1.0.3"]
_DADDRS = [S1, S2, "198.51.100.8/30"]
_SERVERS = [S1, S2, "198.51.100.9", "198.51.100.12"]
_CLIENTS = [C1, C2, C3, "10.1.0.5", "10.1.0.9"]


@dataclass
class _Rule:
    chain: str  # "pre" or "post"
    text: str
    saddr: str | None
    daddr: str | None
    l4: tuple[str, int | None] | None  # ("udp", 53), ("tcp", 80), ("icmp", None)
    kind: str  # snat, masquerade, dnat, redirect
    addr: str | None  # a single address (None: a range, or masquerade/redirect)
    port: int | None

    def matches(self, proto: str, src: str, dst: str, dport: int | None) -> bool:
        if self.saddr and ipaddress.ip_address(src) not in ipaddress.ip_network(self.saddr):
            return False
        if self.daddr and ipaddress.ip_address(dst) not in ipaddress.ip_network(self.daddr):
            return False
        if self.l4 is not None:
            if self.l4[0] != proto or (self.l4[1] is not None and self.l4[1] != dport):
                return False
        return True


@st.composite
def _rules(draw: st.DrawFn) -> list[_Rule]:
    rules = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["snat", "snat", "masquerade", "dnat", "dnat", "redirect"]))
        saddr = draw(st.sampled_from([None, *_SADDRS]))
        daddr = draw(st.sampled_from([None, *_DADDRS]))
        l4 = draw(st.sampled_from([None, ("udp", 53), ("tcp", 80), ("icmp", None), ("udp", None)]))
        if kind == "redirect" and (l4 is None or l4[0] == "icmp"):
            l4 = ("udp", 53)
        match = []
        if saddr:
            match.append(f"ip saddr {saddr}")
        if daddr:
            match.append(f"ip daddr {daddr}")
        if l4 is not None:
            match.append(f"{l4[0]} dport {l4[1]}" if l4[1] is not None else f"meta l4proto {l4[0]}")
        ported = l4 is not None and l4[0] != "icmp"
        addr: str | None = None
        port: int | None = None
        if kind == "snat":
            target = draw(st.sampled_from([OUT4, "203.0.113.7", "203.0.113.10-203.0.113.13"]))
            addr = None if "-" in target else target
            flags = draw(st.sampled_from(["", " persistent"]))
            stmt = f"snat to {target}{flags}"
            chain = "post"
            match.insert(0, f'oifname "{OUT_DEV}"')
        elif kind == "masquerade":
            stmt, chain, addr = "masquerade", "post", OUT4
            match.insert(0, f'oifname "{OUT_DEV}"')
        elif kind == "dnat":
            target = draw(st.sampled_from(["198.51.100.20", "198.51.100.20-198.51.100.23"]))
            addr = None if "-" in target else target
            if ported and draw(st.booleans()):
                port = draw(st.sampled_from([8053, 8080]))
                target += f":{port}"
            stmt, chain = f"dnat to {target}", "pre"
        else:
            port = 5353
            stmt, chain = "redirect to :5353", "pre"
        text = " ".join([*match, stmt])
        rules.append(_Rule(chain, text, saddr, daddr, l4, kind, addr, port))
    return rules


def _ruleset(rules: list[_Rule]) -> str:
    pre_rules = [r.text for r in rules if r.chain == "pre"]
    post_rules = [r.text for r in rules if r.chain == "post"]
    return nat_table("ip", pre(*pre_rules), post(*post_rules))


def _predict(
    rules: list[_Rule], proto: str, c: str, s: str, dport: int | None
) -> tuple[str, int | None, str] | None:
    """Where the reply of a first packet c -> s:dport comes from and goes to, when the rules
    translate it predictably: (reply source, its port, reply destination); None when it is
    delivered locally or translated into a range (the kernel's hash decides)."""
    dst, dp = s, dport
    for r in (r for r in rules if r.chain == "pre"):
        if r.matches(proto, c, s, dport):
            if r.kind == "redirect" or r.addr is None:
                return None
            dst, dp = r.addr, r.port or dport
            break
    src = c
    for r in (r for r in rules if r.chain == "post"):
        if r.matches(proto, c, dst, dp):
            if r.addr is None:
                return None
            src = r.addr
            break
    return dst, dp, src


@st.composite
def _traffic(draw: st.DrawFn, rules: list[_Rule]) -> Seq:
    pkts: list[bytes] = []
    for i in range(draw(st.integers(1, 8))):
        proto = draw(st.sampled_from(["udp", "tcp", "icmp"]))
        c, s = draw(st.sampled_from(_CLIENTS)), draw(st.sampled_from(_SERVERS))
        sport = 3000 + i
        dport = None if proto == "icmp" else draw(st.sampled_from([53, 80, 443]))
        reply = draw(st.booleans())
        back = _predict(rules, proto, c, s, dport)
        if proto == "udp":
            pkts.append(P.udp(c, s, sport, dport or 0, b"q"))
            if reply and back:
                pkts.append(P.udp(back[0], back[2], back[1] or 0, sport, b"a"))
        elif proto == "icmp":
            pkts.append(P.icmp_echo(c, s, 200 + i))
            if reply and back:
                pkts.append(P.icmp_echo(back[0], back[2], 200 + i, reply=True))
        else:
            if reply and back:
                pkts += handshake(
                    c, s, sport, dport or 0, back=back[0], back_port=back[1], back_dst=back[2]
                )
            else:
                pkts.append(P.tcp(c, s, sport, dport or 0, flags="S", seq=7))
    return timed(*pkts)


@st.composite
def _nat_cases(draw: st.DrawFn) -> tuple[str, Seq]:
    rules = draw(_rules())
    return _ruleset(rules), draw(_traffic(rules))


@settings(max_examples=NAT_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_nat_cases())
def test_generated_nat_rulesets_agree(case: tuple[str, Seq]) -> None:
    """Random snat/dnat/masquerade/redirect rules with random matches, and random flows
    (every one with its own source port or echo id, so that no port search, whose offset is
    random, is needed), replies to the addresses the rules give where those are predictable:
    tables, classes, events, statistics and every byte that left agree."""
    ruleset, pkts = case
    agree(run_nat(pkts, ruleset))


def test_offline_nat_rules_are_what_nft_lists() -> None:
    """tests/test_nat.py builds its hosts from nat rules written as text and as the JSON nft
    prints for them (tests/nathost.py): nft itself, given the text, lists exactly that JSON."""
    import nathost

    with kernel.KernelLab() as lab:
        names = sorted(nathost.CHECKED_RULES)
        for i, name in enumerate(names):
            family, chain, rule = nathost.CHECKED_RULES[name]
            lab.nft_apply(nathost.ruleset_text(family, {chain: [rule]}, table=f"nat_{i}"))
        listed = json.loads(lab.exec("nft", "-j", "list", "ruleset"))["nftables"]
    exprs = {
        o["rule"]["table"]: o["rule"]["expr"]
        for o in listed
        if "rule" in o and o["rule"]["table"].startswith("nat_")
    }
    for i, name in enumerate(names):
        assert exprs[f"nat_{i}"] == nathost.rule_json(nathost.CHECKED_RULES[name][2]), name
