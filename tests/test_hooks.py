"""The netfilter hook pipeline (spec §1, §2 step 1, §5, §15): operations in priority order,
conntrack's own among them, verdicts, routing (local delivery, forwarding, martians, TTL),
loopback, zone templates, marks, Python hooks and the built-in ones, in replays too."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nfct
import packets as P
from helpers import C6, S6, C, S
from nfct import NF_ACCEPT, NF_DROP, NF_REPEAT, NF_STOLEN, Net, NfHookOps, Skb
from nfct.verify import write_pcap

LOCAL, LOCAL6 = "192.0.2.1", "2001:db8::1"
PRE, IN, FWD, OUT, POST = (
    nfct.NF_INET_PRE_ROUTING,
    nfct.NF_INET_LOCAL_IN,
    nfct.NF_INET_FORWARD,
    nfct.NF_INET_LOCAL_OUT,
    nfct.NF_INET_POST_ROUTING,
)
V4, V6, INET = nfct.NFPROTO_IPV4, nfct.NFPROTO_IPV6, nfct.NFPROTO_INET
INT_MAX = 2**31 - 1


def q(src: str = C, dst: str = S, sport: int = 4000, **kw: int) -> bytes:
    return P.udp(src, dst, sport, 53, b"query", **kw)


def register(net: Net, hook: Any, hooknum: int, prio: int, pf: int = V4, **kw: str) -> NfHookOps:
    ops = NfHookOps(hook=hook, pf=pf, hooknum=hooknum, priority=prio, **kw)
    nfct.nf_register_net_hook(net, ops)
    return ops


def noting(into: list[Any], what: Callable[[Skb, nfct.HookState], Any]) -> Any:
    """A hook that appends what(skb, state) to `into` and accepts the packet."""

    def hook(skb: Skb, state: nfct.HookState) -> int:
        into.append(what(skb, state))
        return NF_ACCEPT

    return hook


def test_constants_have_the_kernels_values() -> None:
    assert (nfct.NFPROTO_UNSPEC, nfct.NFPROTO_INET, nfct.NFPROTO_IPV4, nfct.NFPROTO_ARP) == (
        0,
        1,
        2,
        3,
    )
    assert (nfct.NFPROTO_NETDEV, nfct.NFPROTO_BRIDGE, nfct.NFPROTO_IPV6) == (5, 7, 10)


def test_conntracks_own_operations_are_listed() -> None:
    net = Net()
    assert net.hooks(V4, PRE) == [(-400, "ipv4_conntrack_defrag"), (-200, "ipv4_conntrack_in")]
    assert net.hooks(V4, OUT) == [(-400, "ipv4_conntrack_defrag"), (-200, "ipv4_conntrack_local")]
    assert net.hooks(V4, IN) == [(INT_MAX, "ipv4_confirm")]
    assert net.hooks(V4, POST) == [(INT_MAX, "ipv4_confirm")]
    assert net.hooks(V4, FWD) == []
    assert net.hooks(V6, PRE) == [(-400, "ipv6_defrag"), (-200, "ipv6_conntrack_in")]
    assert net.hooks(V6, IN) == [(INT_MAX - 1, "ipv6_confirm")]
    with pytest.raises(nfct.NfctValueError):
        net.hooks(INET, PRE)
    with pytest.raises(nfct.NfctValueError):
        net.hooks(V4, 5)


def test_operations_before_conntrack_see_no_entry_and_after_see_new() -> None:
    net = Net()
    seen: list[tuple[str, int | None, int, int]] = []

    def early(skb: Skb, state: nfct.HookState) -> int:
        seen.append(("early", skb.ctinfo, state.hook, state.pf))
        assert state.net is net
        return NF_ACCEPT

    def late(skb: Skb, state: nfct.HookState) -> int:
        seen.append(("late", skb.ctinfo, state.hook, state.pf))
        return NF_ACCEPT

    register(net, early, PRE, -250)
    register(net, late, PRE, -150)
    assert [n for _, n in net.hooks(V4, PRE)] == [
        "ipv4_conntrack_defrag",
        "test_operations_before_conntrack_see_no_entry_and_after_see_new.<locals>.early",
        "ipv4_conntrack_in",
        "test_operations_before_conntrack_see_no_entry_and_after_see_new.<locals>.late",
    ]
    res = nfct.ip_rcv(net, Skb(q()))
    assert (res.verdict, res.path, res.dropped_by) == (NF_ACCEPT, "forward", None)
    assert seen == [("early", None, PRE, V4), ("late", nfct.IP_CT_NEW, PRE, V4)]


def test_equal_priorities_run_the_last_registered_first_and_inet_covers_both() -> None:
    """As `nf_hook_entries_grow` inserts: a new operation goes before those of equal
    priority (the live kernel runs a chain at conntrack's -200 before conntrack)."""
    net = Net()
    order: list[str] = []

    def mk(name: str) -> Callable[[Skb, nfct.HookState], int]:
        def hook(skb: Skb, state: nfct.HookState) -> int:
            order.append(f"{name}/{state.pf}")
            return NF_ACCEPT

        return hook

    register(net, mk("a"), FWD, 0, pf=INET, name="a")
    register(net, mk("b"), FWD, 0, name="b")
    register(net, mk("c"), FWD, -1, pf=V6, name="c")
    assert net.hooks(V4, FWD) == [(0, "b"), (0, "a")]
    assert net.hooks(V6, FWD) == [(-1, "c"), (0, "a")]
    nfct.ip_rcv(net, Skb(q()))
    nfct.ipv6_rcv(net, Skb(P.udp(C6, S6, 1, 2)))
    assert order == ["b/2", "a/2", "c/10", "a/10"]


def test_drop_in_forward_leaves_no_entry_accept_leaves_one() -> None:
    for verdict, entries in ((NF_DROP, 0), (NF_ACCEPT, 1)):
        net = Net()
        net.listen_events()
        ops = register(net, nfct.BuiltinHook.verdict(verdict), FWD, nfct.NF_IP_PRI_FILTER)
        res = nfct.ip_rcv(net, Skb(q()))
        assert res.verdict == verdict
        assert len(net) == entries and net.count == entries
        assert len(net.read_events()) == entries
        if verdict == NF_DROP:
            assert res.path == "drop"
            assert res.dropped_by == (FWD, 0, "drop")
        nfct.nf_unregister_net_hook(net, ops)
        assert net.hooks(V4, FWD) == []


def test_stolen_keeps_the_unconfirmed_entry_while_the_packet_lives() -> None:
    net = Net()
    kept: list[Skb] = []

    def steal(skb: Skb, state: nfct.HookState) -> int:
        kept.append(skb)
        return NF_STOLEN

    register(net, steal, FWD, 0, name="steal")
    res = nfct.ip_rcv(net, Skb(q()))
    assert (res.verdict, res.path, res.dropped_by) == (NF_STOLEN, "drop", (FWD, 0, "steal"))
    # Not in the table, but alive (the hook owns the packet): nf_conntrack_count counts it.
    assert (len(net), net.count) == (0, 1)
    assert kept[0].ctinfo == nfct.IP_CT_NEW
    kept.clear()
    gc.collect()
    assert net.count == 0


def test_repeat_reruns_the_operation_and_queue_without_a_listener_drops() -> None:
    net = Net()
    calls: list[int] = []

    def once(skb: Skb, state: nfct.HookState) -> int:
        calls.append(1)
        return NF_REPEAT if len(calls) == 1 else NF_ACCEPT

    register(net, once, PRE, -300)
    assert nfct.ip_rcv(net, Skb(q())).verdict == NF_ACCEPT
    assert len(calls) == 2

    forever = Net()
    register(forever, lambda skb, st: NF_REPEAT, PRE, 0, name="spin")
    res = nfct.ip_rcv(forever, Skb(q()))
    assert res.verdict == NF_DROP and res.dropped_by == (PRE, 0, "spin")
    assert res.reason is not None and "NF_REPEAT" in res.reason
    assert forever.count == 0

    queued = Net()
    register(queued, lambda skb, st: nfct.NF_QUEUE, FWD, 0, name="queue")
    res = nfct.ip_rcv(queued, Skb(q()))
    assert res.verdict == NF_DROP and res.reason == "nf_queue: no userspace queue is bound"
    assert queued.count == 0


def test_a_raising_hook_drops_and_reaches_the_caller_with_its_name() -> None:
    net = Net()

    def broken(skb: Skb, state: nfct.HookState) -> int:
        raise KeyError("boom")

    register(net, broken, FWD, 7, name="broken")
    with pytest.raises(KeyError) as ei:
        nfct.ip_rcv(net, Skb(q()))
    assert ei.value.nfct_hook == (FWD, 7, "broken")  # type: ignore[attr-defined]
    assert any("broken" in n for n in ei.value.__notes__)
    gc.collect()
    assert (len(net), net.count) == (0, 0)


@pytest.mark.parametrize(("on_error", "verdict", "entries"), [("drop", 0, 0), ("accept", 1, 1)])
def test_on_error_drop_or_accept_keeps_the_exception(
    on_error: str, verdict: int, entries: int
) -> None:
    net = Net()
    register(net, lambda skb, st: 1 // 0, FWD, 0, name="div", on_error=on_error)
    res = nfct.ip_rcv(net, Skb(q()))
    assert res.verdict == verdict
    assert isinstance(res.exception, ZeroDivisionError)
    gc.collect()
    assert len(net) == entries


def test_a_hook_must_return_a_verdict() -> None:
    net = Net()
    register(net, lambda skb, st: None, FWD, 0, name="none")
    with pytest.raises(TypeError, match="not an NF_\\* verdict"):
        nfct.ip_rcv(net, Skb(q()))
    unknown = Net()
    register(unknown, lambda skb, st: 9, FWD, 0, name="nine")
    res = nfct.ip_rcv(unknown, Skb(q()))
    assert res.verdict == NF_DROP and res.reason == "nf_hook: unknown verdict"


def test_registration_errors() -> None:
    net = Net()
    ops = NfHookOps(hook=nfct.BuiltinHook.notrack(), pf=V4, hooknum=PRE, priority=-300)
    nfct.nf_register_net_hook(net, ops)
    with pytest.raises(nfct.NfctValueError, match="already registered"):
        nfct.nf_register_net_hook(net, ops)
    nfct.nf_unregister_net_hook(net, ops)
    with pytest.raises(nfct.NfctValueError, match="not registered"):
        nfct.nf_unregister_net_hook(net, ops)
    with pytest.raises(nfct.NfctValueError, match="not modelled"):
        NfHookOps(hook=nfct.BuiltinHook.notrack(), pf=nfct.NFPROTO_ARP, hooknum=0, priority=0)
    with pytest.raises(nfct.NfctValueError, match="inet hook"):
        NfHookOps(hook=nfct.BuiltinHook.notrack(), pf=V4, hooknum=5, priority=0)
    with pytest.raises(nfct.NfctTypeError):
        NfHookOps(hook=42, pf=V4, hooknum=0, priority=0)  # type: ignore[arg-type]
    with pytest.raises(nfct.NfctValueError):
        nfct.BuiltinHook.ct_state(["bogus"], NF_DROP)
    with pytest.raises(nfct.NfctValueError):
        nfct.BuiltinHook.verdict(NF_STOLEN)
    with pytest.raises(nfct.NfctValueError):
        Net(local_addrs=["not-an-address"])


def test_local_delivery_forwarding_martians_and_ttl() -> None:
    net = Net(local_addrs=[LOCAL, LOCAL6])
    assert net.local_addrs == [LOCAL, LOCAL6]
    where: list[str] = []
    register(net, noting(where, lambda skb, st: "in"), IN, 0, pf=INET, name="in")
    register(net, noting(where, lambda skb, st: "fwd"), FWD, 0, pf=INET, name="fwd")
    # To our address: delivered whatever the TTL; elsewhere: forwarded, unless TTL 1.
    assert nfct.ip_rcv(net, Skb(q(dst=LOCAL, ttl=1))).path == "local"
    assert nfct.ip_rcv(net, Skb(q(sport=1))).path == "forward"
    ttl = nfct.ip_rcv(net, Skb(q(sport=2, ttl=1)))
    assert (ttl.path, ttl.reason, ttl.dropped_by) == ("drop", "ip_forward: TTL exceeded", None)
    assert nfct.ipv6_rcv(net, Skb(P.udp(C6, LOCAL6, 1, 2))).path == "local"
    assert nfct.ipv6_rcv(net, Skb(P.udp(C6, S6, 1, 2, ttl=1))).path == "drop"
    assert where == ["in", "fwd", "in"]
    for pkt, why in [
        (q(dst="127.0.0.1", sport=3), "martian destination"),
        (q(src="127.0.0.1", sport=4), "martian source"),
        (q(src=LOCAL, sport=5), "martian source"),
        (q(dst="224.0.0.251", sport=6), "multicast not joined"),
        (q(dst="0.1.2.3", sport=7), "martian destination"),
    ]:
        res = nfct.ip_rcv(net, Skb(pkt))
        assert res.path == "drop" and res.reason is not None and why in res.reason, res.reason
    gc.collect()
    # Entries only for the three packets that reached a confirm hook.
    assert len(net) == 3 and net.count == 3
    assert nfct.ip_rcv(net, Skb(b"\x45garbage")).reason is not None
    assert nfct.ip_rcv(net, Skb(P.udp(C6, S6, 1, 2))).path == "drop"


def test_local_out_and_the_loopback_second_pass() -> None:
    net = Net(local_addrs=[LOCAL])
    passes: list[tuple[int, int | None]] = []
    register(net, noting(passes, lambda skb, st: (st.hook, skb.ctinfo)), PRE, -300)
    register(net, noting(passes, lambda skb, st: (st.hook, skb.ctinfo)), OUT, -300)
    out = nfct.ip_local_out(net, Skb(q(src=LOCAL, dst=S)))
    assert out.path == "output"
    assert passes == [(OUT, None)]
    passes.clear()
    skb = Skb(q(src=LOCAL, dst=LOCAL, sport=9))
    res = nfct.ip_local_out(net, skb)
    assert res.path == "local"
    # The second pass at PRE_ROUTING carries the entry made at LOCAL_OUT (already confirmed).
    assert passes == [(OUT, None), (PRE, nfct.IP_CT_NEW)]
    conn = skb.nfct
    assert conn is not None and conn.status & nfct.IPS_CONFIRMED
    assert len(net) == 2
    v6 = nfct.ip6_local_out(net, Skb(P.udp("::1", "::1", 5, 6)))
    assert v6.path == "local"


def test_zone_templates_give_separate_entries() -> None:
    net = Net()
    pkt = q()
    nfct.ip_rcv(net, Skb(pkt))
    zone = register(net, nfct.BuiltinHook.ct_zone(3), PRE, nfct.NF_IP_PRI_RAW, pf=INET)
    nfct.ip_rcv(net, Skb(pkt))
    nfct.ip_rcv(net, Skb(P.udp(S, C, 53, 4000, b"answer")))
    assert sorted(c.zone for c in net) == [0, 3]
    # The reply in zone 3 found the zone-3 entry; the zone-0 one never saw a reply.
    by_zone = {c.zone: c for c in net}
    assert by_zone[3].status & nfct.IPS_SEEN_REPLY
    assert not by_zone[0].status & nfct.IPS_SEEN_REPLY
    assert "zone=3" in net.dump()
    nfct.nf_unregister_net_hook(net, zone)
    register(net, nfct.BuiltinHook.ct_zone(5, "original"), PRE, nfct.NF_IP_PRI_RAW)
    nfct.ip_rcv(net, Skb(q(sport=4100)))
    assert "zone-orig=5" in net.dump()


def test_marks_set_and_matched_by_operations() -> None:
    net = Net()
    net.listen_events()
    register(net, nfct.BuiltinHook.ct_mark_set(0x2A), FWD, -10)
    nfct.ip_rcv(net, Skb(q()))
    (conn,) = list(net)
    assert conn.mark == 42 and "mark=42" in net.dump()
    assert "mark=42" in net.read_events()[0]
    register(net, nfct.BuiltinHook.ct_mark(0x2A, NF_DROP, mask=0xFF), FWD, -5)
    # Known flow: the mark matches and the reply is dropped in FORWARD, after conntrack at
    # PRE_ROUTING already saw it (as in the kernel, a later drop does not undo that).
    assert nfct.ip_rcv(net, Skb(P.udp(S, C, 53, 4000, b"a"))).verdict == NF_DROP
    assert next(iter(net)).status & nfct.IPS_SEEN_REPLY
    # A new flow gets its mark at -10, then matches at -5: dropped, never confirmed.
    res = nfct.ip_rcv(net, Skb(q(sport=4001)))
    assert res.dropped_by is not None and res.dropped_by[2].startswith("ct mark and 0xff")
    gc.collect()
    assert len(net) == 1


def test_ct_state_rules_and_notrack() -> None:
    net = Net()
    register(net, nfct.BuiltinHook.drop_invalid(), FWD, 0)
    res = nfct.ip_rcv(net, Skb(q(checksum=0x1234)))
    assert res.verdict == NF_DROP and res.reason == "nf_ct_udp: bad checksum"
    assert res.dropped_by == (FWD, 0, "ct state invalid drop")
    policy = Net()
    est = nfct.BuiltinHook.ct_state(["established", "related"], NF_ACCEPT, otherwise=NF_DROP)
    register(policy, est, IN, 0)
    register(policy, nfct.BuiltinHook.notrack(), PRE, nfct.NF_IP_PRI_RAW)
    skb = Skb(q())
    assert nfct.ip_rcv(policy, skb).verdict == NF_ACCEPT  # forwarded: the IN rule never ran
    assert skb.ctinfo == nfct.IP_CT_UNTRACKED and skb.ctstate == "untracked"
    assert len(policy) == 0


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[list[tuple[int, int, list[int]]], int]:
    """Up to 8 operations at random hooks of the forward path and random priorities, each with
    a verdict per packet; and how many packets (each its own flow) go through."""
    n = draw(st.integers(1, 5))
    prios = st.sampled_from([-450, -300, -250, -200, -150, 0, 0, 100, INT_MAX - 1, INT_MAX])
    verdicts = st.sampled_from([NF_ACCEPT, NF_ACCEPT, NF_ACCEPT, NF_DROP, NF_STOLEN, NF_REPEAT])
    ops = draw(
        st.lists(
            st.tuples(
                st.sampled_from([PRE, FWD, POST]), prios, st.lists(verdicts, min_size=n, max_size=n)
            ),
            max_size=8,
        )
    )
    return ops, n


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pipelines())
def test_random_operations_run_in_priority_order_and_stop_at_drop(
    spec: tuple[list[tuple[int, int, list[int]]], int],
) -> None:
    ops, n = spec
    net = Net()
    runs: list[tuple[int, int]] = []  # (op index, packet)
    confirmed: list[bool] = []

    for i, (hooknum, prio, verdicts) in enumerate(ops):

        def hook(
            skb: Skb, state: nfct.HookState, i: int = i, verdicts: list[int] = verdicts
        ) -> int:
            pkt = int.from_bytes(skb.data[20:22], "big") - 1000
            v = verdicts[pkt]
            # NF_REPEAT once, then accept: the same operation must run again right away.
            if v == NF_REPEAT and runs and runs[-1] == (i, pkt):
                v = NF_ACCEPT
            runs.append((i, pkt))
            return v

        register(net, hook, hooknum, prio, name=f"op{i}")

    path_order = {PRE: 0, FWD: 1, POST: 2}
    for pkt in range(n):
        before = len(runs)
        res = nfct.ip_rcv(net, Skb(q(sport=1000 + pkt)))
        # The expected run: every operation on the path, by hook then priority, among equal
        # priorities the last registered first (as the kernel inserts); NF_REPEAT runs the
        # same one again; the first NF_DROP or NF_STOLEN ends it.
        expected: list[int] = []
        stop: tuple[int, int, list[int]] | None = None
        for j in sorted(range(len(ops)), key=lambda j: (path_order[ops[j][0]], ops[j][1], -j)):
            v = ops[j][2][pkt]
            expected += [j, j] if v == NF_REPEAT else [j]
            if v in (NF_DROP, NF_STOLEN):
                stop = ops[j]
                break
        assert [j for j, p in runs[before:] if p == pkt] == expected
        assert res.verdict == (stop[2][pkt] if stop else NF_ACCEPT)
        assert res.path == ("drop" if stop else "forward")
        # Confirmed iff nothing stopped it: conntrack's confirm, registered before any of
        # them, runs last among the INT_MAX operations of POST_ROUTING.
        confirmed.append(stop is None)
    gc.collect()
    assert len(net) == sum(confirmed)
    assert net.count == len(net)


def test_replay_runs_builtin_and_python_hooks(tmp_path: Path) -> None:
    pkts = [
        (q(), 1.0),
        (P.udp(S, C, 53, 4000, b"answer"), 1.1),
        (q(checksum=0x1234, sport=4001), 1.2),
        (q(src=C, dst=LOCAL, sport=4002), 1.3),
        (q(src=LOCAL, dst=S, sport=4003), 1.4),
    ]
    cap = tmp_path / "t.pcap"
    write_pcap(cap, pkts)
    net = Net(local_addrs=[LOCAL])
    register(net, nfct.BuiltinHook.drop_invalid(), PRE, 0)
    register(net, nfct.BuiltinHook.ct_mark_set(7), POST, 0)
    seen: list[tuple[int, str]] = []
    register(net, noting(seen, lambda skb, st: (st.hook, skb.ctstate)), IN, 0)
    lines = tmp_path / "p.txt"
    summary = net.replay([cap], packets_path=lines)
    assert summary["dropped"] == 1 and summary["dropped_by"] == {"ct state invalid drop": 1}
    assert (
        lines.read_text().splitlines()[2]
        == "3 dropped by ct state invalid drop: nf_ct_udp: bad checksum"
    )
    # The packet to our address was delivered (LOCAL_IN hook), ours went out through LOCAL_OUT.
    assert seen == [(IN, "new")]
    marks = sorted((c.orig.sport, c.mark) for c in net)
    assert marks == [(4000, 7), (4002, 0), (4003, 7)]

    raising = Net()
    register(raising, lambda skb, st: 1 // 0 if skb.data[21] == 0xA3 else 1, FWD, 0, name="z")
    with pytest.raises(ZeroDivisionError) as ei:
        raising.replay([cap])
    assert ei.value.nfct_hook == (FWD, 0, "z")  # type: ignore[attr-defined]
    # What came before the raising packet stays applied.
    assert len(raising) == 2


@pytest.mark.parametrize("path", ["local-in", "local-out"])
def test_replay_paths(tmp_path: Path, path: str) -> None:
    pkts = [(q(ttl=1), 1.0), (P.udp(S, C, 53, 4000, b"a", ttl=1), 1.1)]
    cap = tmp_path / "t.pcap"
    write_pcap(cap, pkts)
    fwd = Net().replay([cap])
    assert fwd["dropped"] == 2  # TTL 1 is not forwarded
    net = Net()
    summary = net.replay([cap], path=path)
    assert (summary["new"], summary["established"], summary["dropped"]) == (1, 1, 0)
    with pytest.raises(nfct.NfctValueError):
        net.replay([cap], path="sideways")


def test_cli_path_local_addr_zone_and_drop_invalid(tmp_path: Path) -> None:
    cap = tmp_path / "t.pcap"
    write_pcap(cap, [(q(dst=LOCAL, ttl=1), 1.0), (q(checksum=1, sport=9), 1.1)])
    base = [sys.executable, "-m", "nfct", "replay", str(cap)]
    out = subprocess.run(
        [*base, "--local-addr", LOCAL, "--zone", "4", "--drop-invalid", "-o", "packets"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == ["1 new", "2 dropped by ct state invalid drop: nf_ct_udp: bad checksum"]
    table = subprocess.run(
        [*base, "--local-addr", LOCAL, "--zone", "4"], capture_output=True, text=True, check=True
    ).stdout
    assert "zone=4" in table and f"dst={LOCAL}" in table
