"""nfct.strategies: the flows are what they claim (valid by construction: forwarded, never
INVALID for nfct; well formed; their tuple is the entry's), traces interleave them on a
monotone clock and round-trip through a pcap and nfct's own replay, the scenarios do what
their docstrings say, every strategy shrinks toward less, and the mutations reach every
INVALID reason nfct knows (collected from rust/). The live kernel's side of "valid" is
tests/live/test_strategies.py."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import nfct
import nfct.strategies as nst
from nfct import packets as P
from nfct.testing import Verdict, nfct_verdicts
from nfct.traffic import Flow, Trace, TupleArgs

REPO = Path(__file__).resolve().parents[1]

# Properties over generated traffic: few examples each (CI budget), more under the dev profile
# by running with HYPOTHESIS_PROFILE=dev and a larger max_examples locally if needed.
SOME = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def classes(
    records: Sequence[tuple[float, bytes]], sysctl: dict[str, int] | None = None
) -> list[Verdict]:
    return nfct_verdicts(records, sysctl)[0]


def assert_valid(flow: Flow | Trace) -> None:
    verdicts = classes(flow)
    bad = [(i, v) for i, v in enumerate(verdicts) if v.cls in ("invalid", "dropped", "untracked")]
    assert not bad, f"{bad}\n{flow.render()}"


def forwardable(addr: str) -> bool:
    a = ipaddress.ip_address(addr)
    return not (
        a.is_loopback
        or a.is_multicast
        or a.is_link_local
        or a.is_unspecified
        or a.is_reserved
        or (a.version == 4 and (a in ipaddress.ip_network("0.0.0.0/8") or a.packed[3] in (0, 255)))
        or (a.version == 4 and a in ipaddress.ip_network("192.0.0.0/24"))
    )


def assert_well_formed(flow: Flow) -> None:
    times = [t for t, _ in flow]
    assert times == sorted(times) and len(set(times)) == len(times), times
    for p in flow.packets:
        assert len(p.data) <= nst.MTU, p
        version = p.data[0] >> 4
        ttl = p.data[8] if version == 4 else p.data[7]
        assert ttl > 1, p
        src, dst = P.ip_addresses(p.data)
        assert forwardable(src) and forwardable(dst), p
        assert p.direction in ("original", "reply", "other"), p
        if version == 4:
            assert P.verify_ipv4_header(p.data), p
        assert "bad checksum" not in P.describe(p.data), p


def entry_of(flow: Flow) -> nfct.Conn:
    """The entry nfct made of the flow's first packet."""
    net = nfct.Net(seed=0)
    t, data = flow[0]
    nfct.testing.nfct_step(net, data, t)
    (conn,) = list(net)
    return conn


def args_of(t: nfct.Tuple) -> TupleArgs:
    return TupleArgs(t.src, t.dst, t.protonum, t.sport, t.dport, t.type, t.code, t.id)


# --- valid flows ----------------------------------------------------------------------------------

VALID = {
    "tcp": nst.tcp_flows(),
    "tcp mid-stream": nst.tcp_flows(mid_stream=True),
    "udp": nst.udp_flows(lite=False),
    "udplite": nst.udp_flows(lite=True),
    "icmp echo": nst.icmp_flows(errors=False),
    "icmp errors": nst.icmp_flows(errors=True),
    "sctp": nst.sctp_flows(),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_flows_are_never_invalid_for_nfct(name: str) -> None:
    @SOME
    @given(VALID[name])
    def check(flow: Flow) -> None:
        assert_well_formed(flow)
        assert_valid(flow)
        # The flow's original tuple is the entry's.
        if flow.kind != "icmp-error":
            expected = flow.orig
            got = args_of(entry_of(flow).orig)
            assert got == expected, (got, expected)

    check()


@SOME
@given(nst.traces(idle=False, max_flows=5))
def test_interleaved_valid_flows_stay_valid(trace: Trace) -> None:
    assert_valid(trace)
    keys = [f.key() for f in trace.flows]
    assert len(keys) == len(set(keys))


def test_icmp_errors_are_related() -> None:
    @SOME
    @given(nst.icmp_flows(errors=True))
    def check(flow: Flow) -> None:
        verdicts = classes(flow)
        errors = [i for i, p in enumerate(flow.packets) if p.note.startswith("ICMP error")]
        assert len(errors) == 1
        assert verdicts[errors[0]].cls == "related", flow.render()

    check()


def test_tcp_flows_cover_their_options() -> None:
    """Over a few hundred flows: every teardown, window scaling, SACK holes, mid-stream
    pickups from either side, refused connections, both families occur."""
    seen: Counter[str] = Counter()

    @settings(SOME, max_examples=300, phases=[Phase.generate])
    @given(nst.tcp_flows())
    def look(flow: Flow) -> None:
        notes = " ".join(p.note for p in flow.packets)
        for word in ("FIN", "RST", "refused", "SACK", "retransmitted", "keep-alive", "mid-stream"):
            if word in notes:
                seen[word] += 1
        seen[f"ipv{flow.family}"] += 1
        syn = next((p.data for p in flow.packets if "SYN" in p.note), None)
        if syn is not None and P.tcp_opt_wscale(14)[:2] in syn:
            seen["window scale"] += 1

    look()
    for word in (
        "FIN",
        "RST",
        "refused",
        "SACK",
        "retransmitted",
        "keep-alive",
        "mid-stream",
        "ipv4",
        "ipv6",
        "window scale",
    ):
        assert seen[word] >= 1, seen


def test_strategy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="family"):
        nst.addresses(5)
    with pytest.raises(ValueError, match="teardown"):
        find(nst.tcp_flows(teardown="slam"), lambda f: True)
    with pytest.raises(ValueError, match="protocols"):
        nst.flows(protocols=["dccp"])
    with pytest.raises(ValueError, match="kinds"):
        find(nst.mutated(kinds=["teleport"]), lambda f: True)


# --- addresses, ports -------------------------------------------------------------------------


@SOME
@given(nst.addresses(), nst.ports(ephemeral=True), nst.ports(ephemeral=False))
def test_addresses_and_ports(addr: str, eph: int, service: int) -> None:
    assert forwardable(addr)
    assert 32768 <= eph <= 60999
    assert 1 <= service < 32768 or service in (443, 3306, 5432, 6379, 8080)


def test_addresses_shrink_to_the_first_private_address() -> None:
    assert minimal(nst.addresses(4)) == "10.0.0.1"
    assert minimal(nst.addresses(6)) == "fd00::1"


# --- tuples -----------------------------------------------------------------------------------


@SOME
@given(nst.tuple_args())
def test_tuple_args_are_what_a_first_packet_gives(a: TupleArgs) -> None:
    assert a.src != a.dst
    assert ipaddress.ip_address(a.src).version == ipaddress.ip_address(a.dst).version
    if a.protonum in (6, 17, 136, 132):
        assert a.sport is not None and a.dport is not None and a.type is None
    elif a.protonum in (1, 58):
        assert a.type in (8, 13, 15, 17, 128, 139) and a.code == 0 and a.id is not None
    else:
        assert a.sport is None and a.type is None


@SOME
@given(nst.tuples())
def test_tuples_are_nfct_tuples(t: nfct.Tuple) -> None:
    assert isinstance(t, nfct.Tuple)
    assert t.invert().invert() == t
    assert hash(t) == hash(args_of(t).to_tuple())
    assert forwardable(t.src) and forwardable(t.dst)


@SOME
@given(st.from_type(nfct.Tuple))
def test_from_type_gives_tuples(t: nfct.Tuple) -> None:
    assert isinstance(t, nfct.Tuple)


def test_the_entry_point_is_registered() -> None:
    """`st.from_type(nfct.Tuple)` resolves through the `hypothesis` entry point of the installed
    distribution (not through an import this test makes)."""
    code = (
        "from hypothesis import strategies as st; import nfct; "
        "print(repr(st.from_type(nfct.Tuple)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "tuple_args()" in out.stdout, out


# --- traces -----------------------------------------------------------------------------------


@SOME
@given(nst.traces(nst.mutated(), max_flows=3))
def test_traces_are_monotone_and_hold_every_flow(trace: Trace) -> None:
    times = [t for t, _ in trace]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert len(trace) == sum(len(f) for f in trace.flows)
    per_flow = Counter(p.flow for p in trace.packets)
    assert per_flow == Counter({i: len(f) for i, f in enumerate(trace.flows) if len(f)})
    # Each flow's packets keep their order.
    for i, f in enumerate(trace.flows):
        assert [p.data for p in trace.packets if p.flow == i] == [p.data for p in f.packets]


@settings(SOME, max_examples=25)
@given(st.one_of(nst.traces(nst.mutated(), max_flows=3), nst.scenarios()))
def test_a_trace_round_trips_through_a_pcap_and_nfct_replay(trace: Trace) -> None:
    """to_pcap() gives back the same records, and `nfct replay --output packets` of that file
    gives the per-packet classes nfct.testing uses."""
    import tempfile

    from nfct.traffic import _pcap_records

    data = trace.to_pcap()
    assert [(round(t * 1e6), d) for t, d in _pcap_records(data)] == [
        (round(t * 1e6), d) for t, d in trace
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cap, out = Path(tmp) / "t.pcap", Path(tmp) / "packets.txt"
        trace.to_pcap(cap)
        nfct.Net(seed=0).replay([str(cap)], packets_path=str(out))
        replayed = [line.split(None, 2) for line in out.read_text().splitlines()]
    verdicts = classes(trace)
    assert [int(r[0]) for r in replayed] == list(range(1, len(trace) + 1))
    got = [r[1] for r in replayed]
    want = [v.cls for v in verdicts]
    assert got == want, "\n" + trace.render()
    for r, v in zip(replayed, verdicts, strict=True):
        if v.cls == "invalid":
            assert r[2] == v.reason


def test_idle_gaps_reach_the_timeouts() -> None:
    gaps: Counter[int] = Counter()

    @settings(SOME, max_examples=200, phases=[Phase.generate])
    @given(nst.idle_gaps())
    def look(gap: int) -> None:
        for edge in (2, 30, 120, 600):
            if abs(gap - edge * 1_000_000) <= 1_000_000:
                gaps[edge] += 1

    look()
    assert all(gaps[e] for e in (2, 30, 120, 600)), gaps


# --- shrinking --------------------------------------------------------------------------------


def minimal(strategy: st.SearchStrategy[object], condition: object = None) -> object:
    """What Hypothesis reports for a test failing whenever `condition` holds: the shrunk
    example (the last one run is the one it reports)."""
    seen: list[object] = []

    @settings(
        database=None,
        derandomize=True,
        max_examples=200,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink],  # not "explain": it costs several shrinks
    )
    @given(strategy)
    def fails(x: object) -> None:
        if condition is None or condition(x):  # type: ignore[operator]
            seen.append(x)
            raise AssertionError

    with pytest.raises(AssertionError):
        fails()
    return seen[-1]


def test_flows_shrink_to_few_packets_and_small_values() -> None:
    tcp = minimal(nst.tcp_flows())
    assert isinstance(tcp, Flow)
    assert [p.note for p in tcp.packets] == ["SYN", "SYN-ACK", "ACK"]
    assert tcp.orig == TupleArgs("10.0.0.1", "10.0.0.2", 6, 32768, 80)
    # A flow with packets both ways shrinks to one each way.
    both = minimal(
        nst.udp_flows(), lambda f: {p.direction for p in f.packets} == {"original", "reply"}
    )
    assert isinstance(both, Flow) and len(both) == 2
    assert both.orig == TupleArgs("10.0.0.1", "10.0.0.2", 17, 32768, 80)
    assert [p.note for p in both.packets] == ["0 B", "0 B"]


def test_mutations_shrink_toward_one() -> None:
    one = minimal(nst.mutated(nst.udp_flows()))
    assert isinstance(one, Flow)
    assert len(one.mutations) == 1 and len(one) <= 2


# --- scenarios --------------------------------------------------------------------------------


@SOME
@given(nst.dns_race())
def test_dns_race(trace: Trace) -> None:
    verdicts = classes(trace)
    assert [v.cls for v in verdicts[:2]] == ["new", "new"]
    assert all(v.cls == "established" for v in verdicts[2:]), trace.render()
    assert trace[1][0] - trace[0][0] <= 0.0001


@SOME
@given(nst.port_reuse())
def test_port_reuse_opens_a_new_connection(trace: Trace) -> None:
    verdicts = classes(trace)
    second = next(i for i, p in enumerate(trace.packets) if p.flow == 1)
    old = trace.flows[0].packets[-1]
    gap = trace[second][0] - trace[second - 1][0]
    server_rst = "RST" in old.note and old.direction == "reply" and "refused" not in old.note
    if server_rst and gap < 9.9:
        assert verdicts[second].cls == "established", "\n" + trace.render()
    elif not server_rst:
        assert verdicts[second].cls == "new", "\n" + trace.render()
    assert all(v.cls not in ("invalid", "dropped") for v in verdicts), "\n" + trace.render()


@SOME
@given(nst.stale_udp())
def test_stale_udp(trace: Trace) -> None:
    verdicts = classes(trace)
    first = next(i for i, p in enumerate(trace.packets) if p.flow == 1)
    gap = trace[first][0] - trace[first - 1][0]
    first_flow = trace.flows[0]
    replied = any(p.direction == "reply" for p in first_flow.packets)
    # Long enough for the entry to go: 30 s unreplied or not a stream yet, else 120 s.
    span = first_flow.packets[-1].tstamp - first_flow.packets[0].tstamp
    stream = replied and span > 2 and len(first_flow) >= 3
    timeout = 120 if stream else 30
    if gap > timeout + 1:
        assert verdicts[first].cls == "new", "\n" + trace.render()
    if gap < timeout - 1 and not stream:
        assert verdicts[first].cls in ("new", "established"), "\n" + trace.render()


def test_syn_flood_fills_the_table() -> None:
    @SOME
    @given(nst.syn_flood(max_flood=24, max_established=3))
    def check(trace: Trace) -> None:
        established = [f for f in trace.flows if len(f) > 1]
        if not established:
            return
        n = len(established)
        verdicts = classes(trace, {"nf_conntrack_max": n})
        flood = [i for i, p in enumerate(trace.packets) if p.note == "flood SYN"]
        # The table holds the ASSURED connections only: every flood SYN is dropped, and the
        # connections go on.
        assert all(verdicts[i].cls == "dropped" for i in flood), "\n" + trace.render()
        assert all(
            verdicts[i].cls in ("new", "established")
            for i, p in enumerate(trace.packets)
            if p.note != "flood SYN"
        ), "\n" + trace.render()

    check()


# --- mutations ----------------------------------------------------------------------------------


@settings(SOME, max_examples=150, phases=[Phase.generate])
@given(nst.mutated(max_mutations=5), st.sampled_from(nst.MUTATIONS))
def test_mutations_never_fail_and_are_recorded(flow: Flow, kind: str) -> None:
    assert 1 <= len(flow.mutations) <= 5
    assert all(m.split(":")[0] in nst.MUTATIONS for m in flow.mutations)
    classes(flow)  # nfct takes whatever they made
    assert all(P.describe(p.data) for p in flow.packets)


@pytest.mark.parametrize("kind", nst.MUTATIONS)
def test_each_mutation_kind_applies(kind: str) -> None:
    """A mutation of each kind is made, and recorded, whenever the flow has a packet it
    applies to."""
    sources = {
        "flags": nst.tcp_flows(),
        "out_of_window": nst.tcp_flows(),
        "rst": nst.tcp_flows(),
        "inject": st.one_of(nst.sctp_flows(), nst.icmp_flows(errors=False)),
        "vtag": nst.sctp_flows(),
    }
    made = []

    @settings(SOME, max_examples=10, phases=[Phase.generate])
    @given(sources.get(kind, nst.flows()), st.data())
    def check(flow: Flow, data: st.DataObject) -> None:
        after = data.draw(nst.mutated(st.just(flow), kinds=[kind], max_mutations=1))
        if nst._MUTATORS[kind].candidates(flow):
            assert len(after.mutations) == 1 and after.mutations[0].startswith(f"{kind}:")
            made.append(after)
        else:
            assert after == flow or after.mutations == ()

    check()
    assert made, f"no flow had a packet for {kind}"


def nfct_reasons() -> set[str]:
    """The INVALID reasons nfct can give: the `nf_ct...:` string literals in rust/."""
    found: set[str] = set()
    for path in (REPO / "rust").rglob("*.rs"):
        found |= set(re.findall(r'"(nf_ct[a-z0-9_]*: [^"]*)"', path.read_text()))
    return found


# Reasons no forwarded packet can produce, and why.
UNREACHABLE = {
    # The entry just allocated by this packet vanished before its tracker ran: only another
    # thread could free it, and nothing frees an unconfirmed entry but its own packet.
    "nf_ct: lost new entry": "needs a concurrent free of an unconfirmed entry",
    # A reopen deletes the old entry; losing that race needs another CPU deleting it first.
    "nf_ct_tcp: reopen lost a race": "needs a concurrent delete (another CPU)",
    # A reopen needs an entry in TIME_WAIT or CLOSE; a new (unconfirmed) entry is in NONE.
    "nf_ct_tcp: reopen of an unconfirmed entry": "a new entry is never TIME_WAIT or CLOSE",
}

# (flows, sysctl, mutation kind, examples): one exploration each, a single kind at a time
# so that each gets its share (Hypothesis does not draw uniformly among alternatives).
_TCP, _UDP, _LITE = nst.tcp_flows(), nst.udp_flows(lite=False), nst.udp_flows(lite=True)
_ICMP, _ERR = nst.icmp_flows(errors=False), nst.icmp_flows(errors=True)
_ICMP6 = nst.icmp_flows(family=6, errors=False)
_SCTP, _INIT = nst.sctp_flows(), nst.sctp_flows(mid_stream=False)
_PICKUP = nst.sctp_flows(mid_stream=True)
COVERAGE_PLAN: list[tuple[st.SearchStrategy[Flow], dict[str, int], str, int]] = [
    *[(_TCP, {}, kind, 50) for kind in ("truncate", "field", "flags", "bad_checksum")],
    *[(_TCP, {}, kind, 60) for kind in ("out_of_window", "loss", "reorder")],
    (_TCP, {}, "rst", 150),
    (_TCP, {"nf_conntrack_tcp_loose": 0}, "loss", 20),
    *[(flows, {}, kind, 50) for flows in (_UDP, _LITE) for kind in ("field", "bad_checksum")],
    *[(flows, {}, "truncate", 150) for flows in (_UDP, _LITE)],
    (_ERR, {}, "icmp_error", 150),
    *[(_ICMP, {}, kind, 50) for kind in ("inject", "truncate", "bad_checksum", "loss")],
    *[(_ICMP6, {}, kind, 50) for kind in ("inject", "truncate", "loss")],
    (_INIT, {}, "inject", 250),
    (_PICKUP, {}, "inject", 80),
    (_INIT, {}, "truncate", 150),
    *[(_SCTP, {}, kind, 50) for kind in ("vtag", "field", "bad_checksum", "loss", "reorder")],
]


def reasons_of(flow: Flow, sysctl: dict[str, int]) -> set[str]:
    """Conntrack's reason for each packet, also where the router then dropped it."""
    net = nfct.Net(dict(sysctl), seed=0)
    out: set[str | None] = set()
    for t, data in flow:
        skb = nfct.Skb(data, tstamp=t)
        res = (nfct.ipv6_rcv if data[0] >> 4 == 6 else nfct.ip_rcv)(net, skb)
        out |= {skb.invalid_reason, res.reason}
    return {r for r in out if r is not None}


@pytest.mark.slow
def test_mutations_reach_every_invalid_reason() -> None:
    known = nfct_reasons()
    assert len(known) > 40, "the reasons are collected from rust/: did the strings move?"
    assert set(UNREACHABLE) <= known, set(UNREACHABLE) - known
    seen: Counter[str] = Counter()

    def explorer(sysctl: dict[str, int]) -> Callable[[Flow], None]:
        def explore(flow: Flow) -> None:
            seen.update(reasons_of(flow, sysctl))

        return explore

    for flows, sysctl, kind, n in COVERAGE_PLAN:
        run = settings(
            SOME, max_examples=n, derandomize=True, database=None, phases=[Phase.generate]
        )(given(nst.mutated(flows, kinds=[kind]))(explorer(sysctl)))
        run()
    missing = known - set(UNREACHABLE) - set(seen)
    report = "\n".join(f"{seen[r]:5} {r}" for r in sorted(known))
    assert not missing, f"not reached: {sorted(missing)}\n{report}"
    assert not set(UNREACHABLE) & set(seen), report


# --- nfct.packets -------------------------------------------------------------------------------


def test_describe_never_raises_on_garbage() -> None:
    @SOME
    @given(st.binary(max_size=80))
    def check(data: bytes) -> None:
        assert isinstance(P.describe(data), str)

    check()


def test_fragments_reassemble_to_the_datagram() -> None:
    for src, dst in (("10.1.0.2", "10.2.0.2"), ("fd00:1::2", "fd00:2::2")):
        datagram = P.udp(src, dst, 5000, 53, bytes(range(200)))
        frags = P.fragments(datagram, 64)
        assert len(frags) == 4
        verdicts = classes([(i / 1000, f) for i, f in enumerate(frags)])
        assert [v.cls for v in verdicts] == ["dropped"] * 3 + ["new"]


def test_fix_checksum_and_replace_l4() -> None:
    for pkt in (
        P.tcp("10.1.0.2", "10.2.0.2", 1, 2, seq=5, flags="S"),
        P.udp("fd00::1", "fd00::2", 1, 2, b"abc"),
        P.udplite("10.1.0.2", "10.2.0.2", 1, 2, b"abcdef", coverage=10),
        P.icmp_echo("10.1.0.2", "10.2.0.2", 7),
        P.icmp6_echo("fd00::1", "fd00::2", 7),
        P.sctp("10.1.0.2", "10.2.0.2", 1, 2, 0, P.sctp_chunk(P.SCTP_INIT, P.sctp_init_body(9))),
    ):
        _, off = P.l4_offset(pkt)
        broken = bytearray(pkt)
        broken[off + 8] ^= 0xFF  # inside every checksum's coverage
        assert P.fix_checksum(bytes(broken)) != bytes(broken)
        assert "bad checksum" in P.describe(bytes(broken))
        assert "bad checksum" not in P.describe(P.fix_checksum(bytes(broken)))
        assert P.replace_l4(pkt, pkt[off:]) == pkt
    assert (
        P.l4_offset(P.ipv6("fd00::1", "fd00::2", 17, b"x" * 8, ext_headers=[(0, b""), (60, b"")]))[
            1
        ]
        == 56
    )


def test_the_package_builders_cover_the_test_builders() -> None:
    """tests/packets.py will re-export nfct.packets: everything it defines exists there."""
    import ast

    def names(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        out = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        out |= {
            t.id
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        return out

    assert names(REPO / "tests" / "packets.py") <= set(dir(P))


# --- without Hypothesis -------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["nfct.strategies", "nfct.testing"])
def test_a_clear_error_without_hypothesis(module: str) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'hypothesis' or name.startswith('hypothesis.'):\n"
        "            raise ImportError('No module named ' + repr(name))\n"
        "sys.meta_path.insert(0, Block())\n"
        "import nfct, nfct.packets, nfct.traffic\n"
        f"import {module}\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"HYPOTHESIS_NO_PLUGINS": "1"},
    )
    assert out.returncode != 0
    assert "pip install 'nfct[hypothesis]'" in out.stderr, out.stderr


# --- the documentation's examples -----------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["nfct.packets", "nfct.traffic", "nfct.strategies", "nfct.testing"]
)
def test_docstring_examples_run(module: str) -> None:
    """Every example in the docstrings runs (the Hypothesis tests they define with 5 examples
    each)."""
    import doctest
    import importlib

    settings.register_profile("nfct-before-doctest", settings.default)
    settings.register_profile(
        "nfct-doctest", settings(settings.default, max_examples=5, deadline=None, database=None)
    )
    settings.load_profile("nfct-doctest")
    try:
        result = doctest.testmod(
            importlib.import_module(module), raise_on_error=False, verbose=False
        )
    finally:
        settings.load_profile("nfct-before-doctest")
    assert result.failed == 0, result
    assert result.attempted > 0 or module == "nfct.testing"
