"""Every name of nfct's Python API: the table (`Net`) and its sysctls, packets (`Skb`), the hook
functions, entries (`Conn`, `Tuple`), constants, listings, statistics, and the `nfct replay`
command (spec §2, §3, §5, §6, §12, §14, §18)."""

from __future__ import annotations

import gc
import json
import math
import re
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nfct
import packets as P
from nfct import (
    NF_ACCEPT,
    NF_DROP,
    Conn,
    Net,
    Skb,
    ipv4_confirm,
    ipv4_conntrack_in,
    ipv4_conntrack_local,
    ipv6_confirm,
    ipv6_conntrack_in,
    ipv6_conntrack_local,
)
from nfct.conntrack_text import parse_conntrack_line

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"

# --- helpers -------------------------------------------------------------------------------------


def hooks(pkt: bytes) -> tuple[Callable[[Net, Skb], int], Callable[[Net, Skb], int]]:
    """The PRE_ROUTING `in` hook and the confirm hook for the packet's family."""
    if pkt[0] >> 4 == 6:
        return ipv6_conntrack_in, ipv6_confirm
    return ipv4_conntrack_in, ipv4_confirm


def forward(net: Net, pkt: bytes, t: float | None = None) -> tuple[int, Skb]:
    """One packet through a forwarding router: `in` at PRE_ROUTING, then confirm (unless
    dropped). Returns the final verdict and the packet."""
    skb = Skb(pkt, tstamp=net.now if t is None else t)
    hook_in, confirm = hooks(pkt)
    verdict = hook_in(net, skb)
    if verdict != NF_DROP:
        verdict = confirm(net, skb)
    return verdict, skb


def lines(text: str) -> list[str]:
    return text.splitlines()


def proc_fixup(line: str) -> str:
    """Strips `use=N` so a /proc line can be compared apart from its refcount."""
    return re.sub(r" use=\d+$", "", line)


# --- Net and its sysctls -------------------------------------------------------------------------

# Spec §18: the live 6.18 defaults.
DEFAULTS = {
    "nf_conntrack_max": 262144,
    "nf_conntrack_buckets": 262144,
    "nf_conntrack_expect_max": 4096,
    "nf_conntrack_checksum": 1,
    "nf_conntrack_log_invalid": 0,
    "nf_conntrack_acct": 0,
    "nf_conntrack_timestamp": 0,
    "nf_conntrack_events": 2,
    "nf_conntrack_generic_timeout": 600,
    "nf_conntrack_icmp_timeout": 30,
    "nf_conntrack_icmpv6_timeout": 30,
    "nf_conntrack_udp_timeout": 30,
    "nf_conntrack_udp_timeout_stream": 120,
    "nf_conntrack_gre_timeout": 30,
    "nf_conntrack_gre_timeout_stream": 180,
    "nf_conntrack_tcp_timeout_syn_sent": 120,
    "nf_conntrack_tcp_timeout_syn_recv": 60,
    "nf_conntrack_tcp_timeout_established": 432000,
    "nf_conntrack_tcp_timeout_fin_wait": 120,
    "nf_conntrack_tcp_timeout_close_wait": 60,
    "nf_conntrack_tcp_timeout_last_ack": 30,
    "nf_conntrack_tcp_timeout_time_wait": 120,
    "nf_conntrack_tcp_timeout_close": 10,
    "nf_conntrack_tcp_timeout_max_retrans": 300,
    "nf_conntrack_tcp_timeout_unacknowledged": 300,
    "nf_conntrack_tcp_loose": 1,
    "nf_conntrack_tcp_be_liberal": 0,
    "nf_conntrack_tcp_ignore_invalid_rst": 0,
    "nf_conntrack_tcp_max_retrans": 3,
    "nf_conntrack_sctp_timeout_closed": 10,
    "nf_conntrack_sctp_timeout_cookie_wait": 3,
    "nf_conntrack_sctp_timeout_cookie_echoed": 3,
    "nf_conntrack_sctp_timeout_established": 210,
    "nf_conntrack_sctp_timeout_shutdown_sent": 3,
    "nf_conntrack_sctp_timeout_shutdown_recd": 3,
    "nf_conntrack_sctp_timeout_shutdown_ack_sent": 3,
    "nf_conntrack_sctp_timeout_heartbeat_sent": 30,
    "nf_conntrack_frag6_timeout": 60,
    "nf_conntrack_frag6_high_thresh": 4194304,
    "nf_conntrack_frag6_low_thresh": 3145728,
}


def test_net_defaults() -> None:
    net = Net()
    assert net.sysctl["nf_conntrack_udp_timeout"] == 30
    for name, value in DEFAULTS.items():
        assert net.sysctl[name] == value, name
    assert net.sysctl["nf_conntrack_count"] == 0
    assert net.count == 0
    assert len(net) == 0
    assert list(net) == []
    assert net.now == 0.0
    assert net.dump() == ""


def test_sysctl_write_and_read_back() -> None:
    net = Net()
    net.sysctl["nf_conntrack_udp_timeout"] = 45
    assert net.sysctl["nf_conntrack_udp_timeout"] == 45
    net.sysctl["nf_conntrack_checksum"] = 0
    assert net.sysctl["nf_conntrack_checksum"] == 0
    # The full /proc path form is accepted too.
    assert net.sysctl["net.netfilter.nf_conntrack_udp_timeout"] == 45
    # Another table is independent.
    assert Net().sysctl["nf_conntrack_udp_timeout"] == 30


def test_sysctl_mapping_protocol() -> None:
    net = Net()
    keys = net.sysctl.keys()
    assert set(DEFAULTS) | {"nf_conntrack_count"} == set(keys)
    assert len(net.sysctl) == len(keys)
    assert list(net.sysctl) == keys
    assert "nf_conntrack_udp_timeout" in net.sysctl
    assert "nf_conntrack_count" in net.sysctl
    assert "nf_conntrack_nope" not in net.sysctl
    items = dict(net.sysctl.items())
    assert items["nf_conntrack_udp_timeout"] == 30
    assert items["nf_conntrack_count"] == 0
    assert set(nfct.SYSCTL_NAMES) == set(DEFAULTS)


def test_net_constructor_sysctls() -> None:
    net = Net(
        sysctl={"nf_conntrack_udp_timeout": 7, "nf_conntrack_max": 10, "nf_conntrack_buckets": 16}
    )
    assert net.sysctl["nf_conntrack_udp_timeout"] == 7
    assert net.sysctl["nf_conntrack_max"] == 10
    assert net.sysctl["nf_conntrack_buckets"] == 16
    forward(net, P.udp(C, S, 1000, 53))
    (conn,) = list(net)
    assert conn.timeout == 6  # a fresh 7 s entry lists as 6
    assert Net(sysctl={}).sysctl["nf_conntrack_udp_timeout"] == 30
    assert Net(seed=1).sysctl["nf_conntrack_udp_timeout"] == 30


@pytest.mark.parametrize("name", ["nf_conntrack_nope", "udp_timeout", ""])
def test_unknown_sysctl(name: str) -> None:
    net = Net()
    with pytest.raises(nfct.UnknownSysctlError) as read:
        net.sysctl[name]
    assert isinstance(read.value, KeyError)
    assert isinstance(read.value, nfct.NfctError)
    with pytest.raises(nfct.UnknownSysctlError):
        net.sysctl[name] = 1
    with pytest.raises(nfct.UnknownSysctlError):
        Net(sysctl={name: 1})
    assert issubclass(nfct.UnknownSysctlError, KeyError)
    assert issubclass(nfct.UnknownSysctlError, nfct.NfctError)


def test_negative_sysctl() -> None:
    net = Net()
    with pytest.raises(nfct.NfctError) as err:
        net.sysctl["nf_conntrack_udp_timeout"] = -1
    assert isinstance(err.value, ValueError)
    assert net.sysctl["nf_conntrack_udp_timeout"] == 30
    with pytest.raises(nfct.NfctError) as err2:
        Net(sysctl={"nf_conntrack_max": -5})
    assert isinstance(err2.value, ValueError)


@pytest.mark.parametrize(
    ("name", "value"),
    [("nf_conntrack_checksum", 2), ("nf_conntrack_acct", 5), ("nf_conntrack_buckets", 0)],
)
def test_out_of_range_sysctl(name: str, value: int) -> None:
    """Like the kernel's proc handlers (EINVAL): booleans are 0/1, at least one bucket."""
    net = Net()
    old = net.sysctl[name]
    with pytest.raises(nfct.NfctError) as err:
        net.sysctl[name] = value
    assert isinstance(err.value, ValueError)
    assert net.sysctl[name] == old


@pytest.mark.parametrize("value", ["30", 30.0, 2.5, None, b"1", [1]])
def test_non_int_sysctl(value: object) -> None:
    net = Net()
    with pytest.raises(nfct.NfctError) as err:
        net.sysctl["nf_conntrack_udp_timeout"] = value  # type: ignore[assignment]
    assert isinstance(err.value, TypeError)
    assert net.sysctl["nf_conntrack_udp_timeout"] == 30
    with pytest.raises(nfct.NfctError) as err2:
        Net(sysctl={"nf_conntrack_udp_timeout": value})  # type: ignore[dict-item]
    assert isinstance(err2.value, TypeError)


def test_count_sysctl_is_read_only() -> None:
    net = Net()
    forward(net, P.udp(C, S, 1000, 53))
    assert net.sysctl["nf_conntrack_count"] == 1
    with pytest.raises(nfct.NfctError):
        net.sysctl["nf_conntrack_count"] = 0
    assert net.sysctl["nf_conntrack_count"] == 1
    with pytest.raises(nfct.NfctError):
        Net(sysctl={"nf_conntrack_count": 5})


def test_error_hierarchy() -> None:
    assert issubclass(nfct.NfctTypeError, nfct.NfctError)
    assert issubclass(nfct.NfctTypeError, TypeError)
    assert issubclass(nfct.NfctValueError, nfct.NfctError)
    assert issubclass(nfct.NfctValueError, ValueError)
    assert issubclass(nfct.CaptureError, nfct.NfctError)
    assert issubclass(nfct.CaptureError, OSError)


def test_clock() -> None:
    net = Net()
    net.advance(5)
    assert net.now == 5.0
    net.advance(3)  # never back
    assert net.now == 5.0
    forward(net, P.udp(C, S, 1000, 53), t=7.25)
    assert net.now == 7.25
    # A packet stamped in the past is processed at the table's time.
    forward(net, P.udp(C, S, 1001, 53), t=1.0)
    assert net.now == 7.25
    with pytest.raises(nfct.NfctError):
        net.advance(-1)
    with pytest.raises(nfct.NfctError):
        net.advance(math.nan)


def test_repr_does_not_fail() -> None:
    net = Net()
    _, skb = forward(net, P.udp(C, S, 1000, 53))
    conn = skb.nfct
    assert conn is not None
    for obj in (net, skb, conn, conn.orig, net.sysctl):
        assert isinstance(repr(obj), str)


# --- Skb ---------------------------------------------------------------------------------------


def test_skb_data_and_tstamp() -> None:
    pkt = P.udp(C, S, 1000, 53, b"x")
    skb = Skb(pkt, tstamp=12.5)
    assert skb.data == pkt
    assert isinstance(skb.data, bytes)
    assert skb.tstamp == 12.5
    assert Skb(pkt).tstamp == 0.0
    assert skb.nfct is None
    assert skb.ctinfo is None
    assert skb.invalid_reason is None
    for buf in (bytearray(pkt), memoryview(pkt)):
        other = Skb(buf, tstamp=1)
        assert other.data == pkt
        assert isinstance(other.data, bytes)


@pytest.mark.parametrize("data", ["a string", 42, None, [1, 2, 3], 1.5, object()])
def test_skb_rejects_non_bytes(data: object) -> None:
    with pytest.raises(nfct.NfctError) as err:
        Skb(data)  # type: ignore[arg-type]
    assert isinstance(err.value, TypeError)


@pytest.mark.parametrize("tstamp", [-1.0, math.nan, math.inf])
def test_skb_rejects_bad_tstamp(tstamp: float) -> None:
    with pytest.raises(nfct.NfctError):
        Skb(P.udp(C, S, 1, 2), tstamp=tstamp)


def test_skb_copies_mutable_buffer() -> None:
    buf = bytearray(P.udp(C, S, 1000, 53))
    skb = Skb(buf)
    buf[0] = 0
    assert skb.data[0] == 0x45
    net = Net()
    assert ipv4_conntrack_in(net, skb) == NF_ACCEPT
    assert skb.ctstate == "new"


# --- malformed packets never raise -------------------------------------------------------------

VALID_V4_HEADER = P.ipv4(C, S, 17, b"")[:20]
VALID_V6_HEADER = P.ipv6(C6, S6, 17, b"")[:40]


def _run_everything(pkt: bytes) -> None:
    net = Net(sysctl={"nf_conntrack_buckets": 64, "nf_conntrack_max": 8})
    for hook_in, confirm in (
        (ipv4_conntrack_in, ipv4_confirm),
        (ipv6_conntrack_in, ipv6_confirm),
        (ipv4_conntrack_local, ipv4_confirm),
        (ipv6_conntrack_local, ipv6_confirm),
    ):
        skb = Skb(pkt, tstamp=1.0)
        verdict = hook_in(net, skb)
        assert verdict in (NF_ACCEPT, NF_DROP)
        assert skb.ctstate in {
            "new",
            "established",
            "related",
            "invalid",
            "untracked",
        }
        verdict = confirm(net, skb)
        assert verdict in (NF_ACCEPT, NF_DROP)
        del skb
    assert net.count == len(list(net))
    net.dump("proc")
    net.dump("conntrack")
    net.advance(10_000)
    net.gc()
    assert net.count == 0


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_fuzz_random_bytes(data: bytes) -> None:
    _run_everything(data)


@settings(max_examples=300)
@given(
    version=st.sampled_from([4, 6]),
    proto=st.sampled_from([0, 1, 6, 17, 41, 43, 44, 47, 50, 51, 58, 59, 60, 132, 136, 255]),
    tail=st.binary(max_size=80),
)
def test_fuzz_valid_ip_header_random_l4(version: int, proto: int, tail: bytes) -> None:
    """A sane IP header (so the L4 parsers are reached) followed by random bytes."""
    if version == 4:
        pkt = P.ipv4(C, S, proto, tail)
    else:
        pkt = P.ipv6(C6, S6, proto, tail)
    _run_everything(pkt)


@settings(max_examples=200)
@given(quoted=st.binary(max_size=80), v6=st.booleans(), type_=st.sampled_from([1, 3, 4, 11, 12]))
def test_fuzz_icmp_errors_quoting_garbage(quoted: bytes, v6: bool, type_: int) -> None:
    """ICMP errors whose quoted packet is random: the related lookup must cope."""
    if v6:
        pkt = P.icmp6_error(S6, C6, min(type_, 4), 0, VALID_V6_HEADER[:8] + quoted)
    else:
        pkt = P.icmp_error(S, C, type_, 3, VALID_V4_HEADER + quoted, quote_len=200)
    _run_everything(pkt)


# --- constants ---------------------------------------------------------------------------------


def test_verdict_and_hook_constants() -> None:
    assert (
        nfct.NF_DROP,
        nfct.NF_ACCEPT,
        nfct.NF_STOLEN,
        nfct.NF_QUEUE,
        nfct.NF_REPEAT,
        nfct.NF_STOP,
    ) == (0, 1, 2, 3, 4, 5)
    assert (
        nfct.NF_INET_PRE_ROUTING,
        nfct.NF_INET_LOCAL_IN,
        nfct.NF_INET_FORWARD,
        nfct.NF_INET_LOCAL_OUT,
        nfct.NF_INET_POST_ROUTING,
    ) == (0, 1, 2, 3, 4)


def test_priority_constants() -> None:
    expected = {
        "NF_IP_PRI_FIRST": -2147483648,
        "NF_IP_PRI_RAW_BEFORE_DEFRAG": -450,
        "NF_IP_PRI_CONNTRACK_DEFRAG": -400,
        "NF_IP_PRI_RAW": -300,
        "NF_IP_PRI_SELINUX_FIRST": -225,
        "NF_IP_PRI_CONNTRACK": -200,
        "NF_IP_PRI_MANGLE": -150,
        "NF_IP_PRI_NAT_DST": -100,
        "NF_IP_PRI_FILTER": 0,
        "NF_IP_PRI_SECURITY": 50,
        "NF_IP_PRI_NAT_SRC": 100,
        "NF_IP_PRI_SELINUX_LAST": 225,
        "NF_IP_PRI_CONNTRACK_HELPER": 300,
        "NF_IP_PRI_CONNTRACK_CONFIRM": 2147483647,
        "NF_IP_PRI_LAST": 2147483647,
    }
    for name, value in expected.items():
        assert getattr(nfct, name) == value, name


def test_ctinfo_constants() -> None:
    assert nfct.IP_CT_ESTABLISHED == 0
    assert nfct.IP_CT_RELATED == 1
    assert nfct.IP_CT_NEW == 2
    assert nfct.IP_CT_IS_REPLY == 3
    assert nfct.IP_CT_ESTABLISHED_REPLY == 3
    assert nfct.IP_CT_RELATED_REPLY == 4
    assert nfct.IP_CT_NUMBER == 5
    assert nfct.IP_CT_UNTRACKED == 7
    assert nfct.IP_CT_DIR_ORIGINAL == 0
    assert nfct.IP_CT_DIR_REPLY == 1


def test_status_bits() -> None:
    """Spec §6: every IPS_* bit."""
    expected = {
        "IPS_EXPECTED": 0x1,
        "IPS_SEEN_REPLY": 0x2,
        "IPS_ASSURED": 0x4,
        "IPS_CONFIRMED": 0x8,
        "IPS_SRC_NAT": 0x10,
        "IPS_DST_NAT": 0x20,
        "IPS_NAT_MASK": 0x30,
        "IPS_SEQ_ADJUST": 0x40,
        "IPS_SRC_NAT_DONE": 0x80,
        "IPS_DST_NAT_DONE": 0x100,
        "IPS_NAT_DONE_MASK": 0x180,
        "IPS_DYING": 0x200,
        "IPS_FIXED_TIMEOUT": 0x400,
        "IPS_TEMPLATE": 0x800,
        "IPS_UNTRACKED": 0x1000,
        "IPS_NAT_CLASH": 0x1000,
        "IPS_HELPER": 0x2000,
        "IPS_OFFLOAD": 0x4000,
        "IPS_HW_OFFLOAD": 0x8000,
    }
    for name, value in expected.items():
        assert getattr(nfct, name) == value, name


def test_all_exports_exist() -> None:
    for name in nfct.__all__:
        assert hasattr(nfct, name), name
    for name in (
        "Net",
        "Skb",
        "Conn",
        "Tuple",
        "SysctlMap",
        "ipv4_conntrack_in",
        "ipv4_conntrack_local",
        "ipv4_confirm",
        "ipv6_conntrack_in",
        "ipv6_conntrack_local",
        "ipv6_confirm",
        "NfctError",
        "CaptureError",
    ):
        assert name in nfct.__all__, name


# --- create, then confirm ---------------------------------------------------------------------


def test_create_then_confirm() -> None:
    net = Net()
    skb = Skb(P.udp(C, S, 2001, 53, b"query"), tstamp=1.0)
    assert ipv4_conntrack_in(net, skb) == NF_ACCEPT
    # Unconfirmed: counted, attached to the packet, not in the table.
    assert list(net) == []
    assert len(net) == 0
    assert net.dump() == ""
    assert net.count == 1
    conn = skb.nfct
    assert isinstance(conn, Conn)
    assert conn.status & nfct.IPS_CONFIRMED == 0
    assert skb.ctinfo == nfct.IP_CT_NEW
    assert skb.ctstate == "new"
    assert ipv4_confirm(net, skb) == NF_ACCEPT
    listed = list(net)
    assert listed == [conn]
    assert conn.status & nfct.IPS_CONFIRMED
    assert net.count == 1
    orig, reply = conn.orig, conn.reply
    assert (orig.src, orig.dst, orig.sport, orig.dport) == (C, S, 2001, 53)
    assert (reply.src, reply.dst, reply.sport, reply.dport) == (S, C, 53, 2001)
    assert orig.l3num == reply.l3num == 2
    assert orig.protonum == reply.protonum == 17
    assert orig.type is None and orig.code is None and orig.id is None
    assert conn.proto == "udp"
    assert conn.state is None
    assert conn.mark == 0
    assert conn.zone == 0
    assert conn.counters is None
    assert conn.timeout == 29
    # Confirming again changes nothing.
    assert ipv4_confirm(net, skb) == NF_ACCEPT
    assert net.count == 1


def test_drop_before_confirm_leaves_nothing() -> None:
    net = Net()
    skb = Skb(P.udp(C, S, 2001, 53), tstamp=1.0)
    assert ipv4_conntrack_in(net, skb) == NF_ACCEPT
    assert net.count == 1
    del skb
    gc.collect()
    assert net.count == 0
    assert list(net) == []
    assert net.dump("proc") == ""
    # The same flow is new again afterwards.
    _, skb2 = forward(net, P.udp(C, S, 2001, 53), t=2.0)
    assert skb2.ctstate == "new"
    assert net.count == 1


def test_handle_keeps_unconfirmed_entry_allocated() -> None:
    net = Net()
    skb = Skb(P.udp(C, S, 2001, 53), tstamp=1.0)
    ipv4_conntrack_in(net, skb)
    conn = skb.nfct
    del skb
    gc.collect()
    assert net.count == 1  # the handle still references it
    assert list(net) == []
    assert conn is not None and conn.status & nfct.IPS_CONFIRMED == 0
    del conn
    gc.collect()
    assert net.count == 0


def test_skb_of_other_net_is_left_alone() -> None:
    net1, net2 = Net(), Net()
    skb = Skb(P.udp(C, S, 2001, 53), tstamp=1.0)
    assert ipv4_conntrack_in(net1, skb) == NF_ACCEPT
    assert ipv4_conntrack_in(net2, skb) == NF_ACCEPT
    assert ipv4_confirm(net2, skb) == NF_ACCEPT
    assert net2.count == 0
    assert ipv4_confirm(net1, skb) == NF_ACCEPT
    assert len(net1) == 1 and len(net2) == 0


def test_local_out_hook_skips_checksum() -> None:
    """Spec §8: checksums are verified at PRE_ROUTING only."""
    net = Net()
    bad = P.udp(C, S, 2001, 53, b"x", checksum=0x1234)
    skb = Skb(bad, tstamp=1.0)
    assert ipv4_conntrack_local(net, skb) == NF_ACCEPT
    assert skb.ctstate == "new"
    skb6 = Skb(P.udp(C6, S6, 2001, 53, b"x", checksum=0x1234), tstamp=1.0)
    assert ipv6_conntrack_local(net, skb6) == NF_ACCEPT
    assert skb6.ctstate == "new"
    skb_in = Skb(bad, tstamp=1.0)
    assert ipv4_conntrack_in(Net(), skb_in) == NF_ACCEPT
    assert skb_in.ctstate == "invalid"


# --- Conn is a live handle --------------------------------------------------------------------


def test_conn_is_live() -> None:
    net = Net()
    _, skb = forward(net, P.udp(C, S, 2001, 53), t=10.0)
    conn = skb.nfct
    assert conn is not None
    assert conn.status & nfct.IPS_SEEN_REPLY == 0
    assert conn.timeout == 29
    net.advance(15.0)
    assert conn.timeout == 24  # the clock moved: less time left
    _, rskb = forward(net, P.udp(S, C, 53, 2001), t=15.0)
    assert rskb.nfct == conn
    assert conn.status & nfct.IPS_SEEN_REPLY  # changed under the same handle
    assert conn.timeout == 29  # refreshed by the reply
    assert "[UNREPLIED]" not in conn.line()
    net.advance(20.5)
    assert conn.timeout == 24
    assert conn.line() == (
        "ipv4     2 udp      17 24 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1"
    )


def test_conn_equality_and_hash() -> None:
    net = Net()
    _, a = forward(net, P.udp(C, S, 2001, 53), t=1.0)
    _, b = forward(net, P.udp(S, C, 53, 2001), t=1.0)
    _, c = forward(net, P.udp(C, S, 2002, 53), t=1.0)
    ca, cb, cc = a.nfct, b.nfct, c.nfct
    assert ca is not None and cb is not None and cc is not None
    assert ca == cb
    assert hash(ca) == hash(cb)
    assert ca != cc
    assert ca != "not a conn"
    assert len({ca, cb, cc}) == 2
    assert set(net) == {ca, cc}
    # Tuples are values.
    assert ca.orig == cb.orig
    assert hash(ca.orig) == hash(cb.orig)
    assert ca.orig != ca.reply
    assert ca.orig != cc.orig


def test_conn_counters_with_accounting() -> None:
    """Spec §15: bytes = L3 length (20 + 8 + 5 = 33 for a 5-byte UDP payload)."""
    net = Net(sysctl={"nf_conntrack_acct": 1})
    _, skb = forward(net, P.udp(C, S, 6001, 53, b"12345"), t=1.0)
    forward(net, P.udp(S, C, 53, 6001, b"1234567890"), t=1.1)
    conn = skb.nfct
    assert conn is not None
    assert conn.counters == ((1, 33), (1, 38))
    forward(net, P.udp(C, S, 6001, 53, b"1"), t=1.2)
    assert conn.counters == ((2, 33 + 29), (1, 38))


def test_icmp_tuple_fields() -> None:
    net = Net()
    _, skb = forward(net, P.icmp_echo(C, S, 4660), t=1.0)
    conn = skb.nfct
    assert conn is not None
    assert conn.proto == "icmp"
    o, r = conn.orig, conn.reply
    assert (o.type, o.code, o.id) == (8, 0, 4660)
    assert (r.type, r.code, r.id) == (0, 0, 4660)
    assert o.sport is None and o.dport is None
    assert o.protonum == 1


# --- ctinfo --------------------------------------------------------------------------------------


def test_ctinfo_new_reply_established_related() -> None:
    net = Net()
    _, first = forward(net, P.udp(C, S, 2001, 53), t=1.0)
    assert first.ctinfo == nfct.IP_CT_NEW
    assert first.ctstate == "new"
    _, second = forward(net, P.udp(C, S, 2001, 53), t=1.1)
    assert second.ctinfo == nfct.IP_CT_NEW  # no reply yet: still NEW (spec §2 step 4.5)
    _, reply = forward(net, P.udp(S, C, 53, 2001), t=1.2)
    assert reply.ctinfo == nfct.IP_CT_ESTABLISHED_REPLY
    assert reply.ctstate == "established"
    _, again = forward(net, P.udp(C, S, 2001, 53), t=1.3)
    assert again.ctinfo == nfct.IP_CT_ESTABLISHED
    assert again.ctstate == "established"
    # ICMP port unreachable from S about the query: quotes C->S, so the reply direction.
    query = P.udp(C, S, 2001, 53)
    _, err = forward(net, P.icmp_error(S, C, 3, 3, query), t=1.4)
    assert err.ctinfo == nfct.IP_CT_RELATED_REPLY
    assert err.ctstate == "related"
    assert err.nfct == first.nfct
    # An error from the client side about a reply packet: the original direction.
    answer = P.udp(S, C, 53, 2001)
    _, err2 = forward(net, P.icmp_error(C, S, 3, 3, answer), t=1.5)
    assert err2.ctinfo == nfct.IP_CT_RELATED
    assert err2.ctstate == "related"


def test_ctinfo_invalid_and_untracked() -> None:
    net = Net()
    _, bad = forward(net, P.udp(C, S, 2001, 53, checksum=0xBEEF), t=1.0)
    assert bad.ctinfo is None
    assert bad.nfct is None
    assert bad.ctstate == "invalid"
    assert bad.invalid_reason
    _, ns = forward(net, P.icmp6_neighbour_solicitation("fe80::1", "ff02::1:ff00:2", S6), t=1.0)
    assert ns.ctinfo == nfct.IP_CT_UNTRACKED
    assert ns.nfct is None
    assert ns.ctstate == "untracked"
    assert ns.invalid_reason is None


def _tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    """A TCP segment without options or data (window 65535), correct checksum, in IPv4/IPv6."""
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    csum = P.l4_checksum(src, dst, P.IPPROTO_TCP, seg)
    return P.ip(src, dst, P.IPPROTO_TCP, seg[:16] + struct.pack("!H", csum) + seg[18:])


@pytest.mark.parametrize(("c", "s"), [(C, S), (C6, S6)])
def test_tcp_handshake_is_tracked(c: str, s: str) -> None:
    """TCP is tracked (spec §7): SYN, SYN-ACK, ACK give NEW, ESTABLISHED_REPLY, ESTABLISHED
    and one ESTABLISHED [ASSURED] entry with the established timeout; no counter moves."""
    net = Net()
    syn, synack, ack = 0x02, 0x12, 0x10
    handshake = (
        (_tcp(c, s, 2000, 80, 1000, 0, syn), "new", nfct.IP_CT_NEW),
        (_tcp(s, c, 80, 2000, 5000, 1001, synack), "established", nfct.IP_CT_ESTABLISHED_REPLY),
        (_tcp(c, s, 2000, 80, 1001, 5001, ack), "established", nfct.IP_CT_ESTABLISHED),
    )
    for pkt, ctstate, ctinfo in handshake:
        verdict, skb = forward(net, pkt, t=1.0)
        assert verdict == NF_ACCEPT
        assert (skb.ctstate, skb.ctinfo, skb.invalid_reason) == (ctstate, ctinfo, None)
        assert skb.nfct is not None
    (conn,) = list(net)
    assert conn.proto == "tcp"
    assert conn.state == "ESTABLISHED"
    assert conn.status & nfct.IPS_ASSURED
    assert conn.status & nfct.IPS_SEEN_REPLY
    assert (conn.orig.sport, conn.orig.dport, conn.reply.sport, conn.reply.dport) == (
        2000,
        80,
        80,
        2000,
    )
    assert 431_998 <= conn.timeout <= 432_000
    (line,) = lines(net.dump("conntrack"))
    assert line.startswith("tcp      6 ")
    assert " ESTABLISHED src=" in line
    assert "[ASSURED]" in line
    assert all(v == 0 for v in net.stats.values())


def test_sctp_is_tracked() -> None:
    """SCTP has a tracker (spec §10.3; tests/test_sctp.py). An all-zero SCTP packet (wrong
    CRC32c, a zero-length chunk) is INVALID: no entry, counted in `invalid`, with checksum
    verification on and off."""
    sctp = P.ip(C, S, 132, b"\0" * 16)
    sctp6 = P.ip(C6, S6, 132, b"\0" * 16)
    for checksum, reason in ((1, "nf_ct_sctp: bad CRC"), (0, "nf_ct_sctp: do_basic_checks failed")):
        net = Net({"nf_conntrack_checksum": checksum})
        for pkt in (sctp, sctp6):
            verdict, skb = forward(net, pkt, t=1.0)
            assert verdict == NF_ACCEPT
            assert skb.ctstate == "invalid"
            assert skb.invalid_reason is not None and skb.invalid_reason.startswith(reason)
            assert skb.nfct is None
        assert net.count == 0
        assert net.stats["invalid"] == 2


# --- statistics ------------------------------------------------------------------------------

STAT_KEYS = [
    "found",
    "invalid",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "error",
    "search_restart",
    "clash_resolve",
    "chaintoolong",
]


def test_stats_keys() -> None:
    net = Net()
    assert list(net.stats) == STAT_KEYS
    assert all(v == 0 for v in net.stats.values())
    forward(net, P.udp(C, S, 1, 2, checksum=1), t=1.0)
    forward(net, P.icmp_error(S, C, 3, 3, P.udp(C, S, 9, 9)), t=1.0)
    assert net.stats["invalid"] == 1
    assert net.stats["error"] == 1
    assert net.stats_text() == (
        "cpu=0   \tfound=0 invalid=1 insert=0 insert_failed=0 drop=0 early_drop=0 error=1 "
        "search_restart=0 clash_resolve=0 chaintoolong=0 \n"
    )


def test_normal_confirm_does_not_count_insert() -> None:
    """Spec §5: `insert` stays 0 for packet traffic."""
    net = Net()
    for port in range(10):
        forward(net, P.udp(C, S, 1000 + port, 53), t=1.0)
    assert net.stats["insert"] == 0
    assert net.stats["found"] == 0


# --- listings (spec §14) -----------------------------------------------------------------------


def _udp_and_icmp(net: Net) -> None:
    """An unreplied UDP flow and an answered ping, as in the §14 examples."""
    forward(net, P.udp(C, S, 2001, 53, b"query"), t=100.0)
    forward(net, P.icmp_echo(C, S, 4660), t=100.0)
    forward(net, P.icmp_echo(S, C, 4660, reply=True), t=100.0)


def test_dump_conntrack_and_extended() -> None:
    net = Net()
    _udp_and_icmp(net)
    udp = (
        "udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 [UNREPLIED] "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1"
    )
    icmp = (
        "icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
        "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 use=1"
    )
    assert sorted(lines(net.dump("conntrack"))) == sorted([udp, icmp])
    assert sorted(lines(net.dump())) == sorted(["ipv4     2 " + udp, "ipv4     2 " + icmp])
    assert net.dump() == net.dump("extended")
    assert net.dump().endswith("\n")
    assert all(not line.endswith(" ") for line in lines(net.dump()))
    by_proto = {c.proto: c for c in net}
    assert by_proto["udp"].line() == "ipv4     2 " + udp
    assert by_proto["udp"].line("conntrack") == udp
    assert by_proto["icmp"].line("extended") == "ipv4     2 " + icmp


PROC_UDP = (
    "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 [UNREPLIED] "
    "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 zone=0 use=2"
)
PROC_ICMP = (
    "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
    "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 zone=0 use=2"
)


def test_dump_proc_fields() -> None:
    """Every /proc field but the refcount (checked separately below)."""
    net = Net()
    _udp_and_icmp(net)
    got = sorted(proc_fixup(x) for x in lines(net.dump("proc")))
    assert got == sorted([proc_fixup(PROC_UDP), proc_fixup(PROC_ICMP)])


def test_dump_proc_exact_lines() -> None:
    """/proc shows use=2 for an idle entry (the reader holds a reference), `conntrack -L`
    use=1 (spec §14.1 item 17)."""
    net = Net()
    _udp_and_icmp(net)
    assert sorted(lines(net.dump("proc"))) == sorted([PROC_UDP, PROC_ICMP])
    by_proto = {c.proto: c for c in net}
    assert by_proto["udp"].line("proc") == PROC_UDP


def test_dump_unknown_format() -> None:
    with pytest.raises(nfct.NfctError) as err:
        Net().dump("xml")
    assert isinstance(err.value, ValueError)


def test_dump_accounting_and_timestamp() -> None:
    """Spec §14.1/§14.2 examples with counters and delta-time (mark/zone cannot be set)."""
    net = Net(sysctl={"nf_conntrack_acct": 1, "nf_conntrack_timestamp": 1})
    forward(net, P.udp(C, S, 6001, 53, b"12345"), t=50.0)
    forward(net, P.udp(S, C, 53, 6001, b"1234567890"), t=50.2)
    forward(net, P.udp(C, S, 6002, 5353, b"x"), t=50.2)
    net.advance(51.5)
    assert sorted(lines(net.dump("conntrack"))) == [
        "udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 bytes=33 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 mark=0 "
        "delta-time=1 use=1",
        "udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6002 dport=5353 packets=1 bytes=29 "
        "[UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5353 dport=6002 packets=0 bytes=0 mark=0 "
        "delta-time=1 use=1",
    ]
    assert sorted(proc_fixup(x) for x in lines(net.dump("proc"))) == [
        "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 "
        "bytes=33 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 mark=0 "
        "zone=0 delta-time=1",
        "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6002 dport=5353 packets=1 "
        "bytes=29 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5353 dport=6002 packets=0 "
        "bytes=0 mark=0 zone=0 delta-time=1",
    ]


def test_dump_ipv6() -> None:
    """IPv6: compressed in `conntrack -L`, full 8-group form in /proc (spec §14)."""
    net = Net()
    forward(net, P.icmp6_echo(C6, S6, 85), t=3.0)
    forward(net, P.icmp6_echo(S6, C6, 85, reply=True), t=3.0)
    forward(net, P.udp(C6, S6, 4000, 53, b"q"), t=3.0)
    assert sorted(lines(net.dump())) == sorted(
        [
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=85 "
            "src=fd00:2::2 dst=fd00:1::2 type=129 code=0 id=85 mark=0 use=1",
            "ipv6     10 udp      17 29 src=fd00:1::2 dst=fd00:2::2 sport=4000 dport=53 "
            "[UNREPLIED] src=fd00:2::2 dst=fd00:1::2 sport=53 dport=4000 mark=0 use=1",
        ]
    )
    full1 = "fd00:0001:0000:0000:0000:0000:0000:0002"
    full2 = "fd00:0002:0000:0000:0000:0000:0000:0002"
    assert sorted(proc_fixup(x) for x in lines(net.dump("proc"))) == sorted(
        [
            f"ipv6     10 icmpv6   58 29 src={full1} dst={full2} type=128 code=0 id=85 "
            f"src={full2} dst={full1} type=129 code=0 id=85 mark=0 zone=0",
            f"ipv6     10 udp      17 29 src={full1} dst={full2} sport=4000 dport=53 [UNREPLIED] "
            f"src={full2} dst={full1} sport=53 dport=4000 mark=0 zone=0",
        ]
    )
    conn = next(c for c in net if c.proto == "icmpv6")
    assert conn.orig.src == C6
    assert conn.orig.l3num == 10
    assert (conn.orig.type, conn.reply.type, conn.orig.id) == (128, 129, 85)


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("2001:db8:0:1:0:0:0:1", "2001:db8:0:1::1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  # first of two equal runs
        ("::1", "::1"),
        ("fe80::1:2:3:4", "fe80::1:2:3:4"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),  # a single zero group is not compressed
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),
    ],
)
def test_ipv6_compression_like_inet_ntop(addr: str, text: str) -> None:
    net = Net()
    forward(net, P.udp(addr, "2001:db8::99", 1, 2), t=1.0)
    (line,) = lines(net.dump("conntrack"))
    assert f"src={text} dst=2001:db8::99 " in line


# --- Net.replay and the `nfct replay` command --------------------------------------------------

EXAMPLES = ("http", "dns", "ping", "mixed")


def _capture_records(t0: float = 1000.0) -> list[tuple[float, bytes]]:
    """A small known capture: DNS query + answer, ping + pong, then a bad-checksum UDP."""
    return [
        (t0, P.udp(C, S, 2001, 53, b"query")),
        (t0 + 0.1, P.udp(S, C, 53, 2001, b"answer")),
        (t0 + 0.2, P.icmp_echo(C, S, 4660)),
        (t0 + 0.3, P.icmp_echo(S, C, 4660, reply=True)),
        (t0 + 5.0, P.udp(C, S, 2002, 53, b"bad", checksum=0x0BAD)),
    ]


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "small.pcap"
    path.write_bytes(P.pcap(_capture_records()))
    return path


@pytest.fixture
def ether_capture(tmp_path: Path) -> Path:
    path = tmp_path / "small-ether.pcap"
    records = [(t, P.ethernet(p)) for t, p in _capture_records()]
    path.write_bytes(P.pcap(records, linktype=P.LINKTYPE_ETHERNET))
    return path


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nfct.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_net_replay_api(capture: Path, tmp_path: Path) -> None:
    net = Net()
    out = tmp_path / "packets.txt"
    summary = net.replay([capture], packets_path=out)
    assert summary["frames"] == 5
    assert summary["packets"] == 5
    assert summary["non_ip"] == 0
    assert (summary["new"], summary["established"], summary["invalid"]) == (2, 2, 1)
    assert summary["related"] == summary["dropped"] == summary["untracked"] == 0
    assert "unsupported" not in summary
    assert summary["reasons"] == {"nf_ct_udp: bad checksum": 1}
    assert out.read_text().splitlines() == [
        "1 new",
        "2 established",
        "3 new",
        "4 established",
        "5 invalid nf_ct_udp: bad checksum",
    ]
    assert net.now == pytest.approx(1005.0)
    assert sorted(lines(net.dump("conntrack"))) == [
        "icmp     1 25 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 src=10.2.0.2 "
        "dst=10.1.0.2 type=0 code=0 id=4660 mark=0 use=1",
        "udp      17 25 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 src=10.2.0.2 "
        "dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1",
    ]
    frozen = Net()
    frozen.replay([capture], clock="frozen")
    assert {c.timeout for c in frozen} == {29}
    with pytest.raises(nfct.NfctError) as err:
        Net().replay([capture], clock="wall")
    assert isinstance(err.value, ValueError)


def test_net_replay_capture_error(capture: Path, tmp_path: Path) -> None:
    data = capture.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 10])  # ends inside the 5th record
    net = Net()
    with pytest.raises(nfct.CaptureError) as err:
        net.replay([cut])
    assert isinstance(err.value, OSError)
    assert err.value.path == str(cut)
    assert err.value.offset > 24
    assert err.value.summary["packets"] == 4
    assert "byte offset" in str(err.value)
    assert len(net) == 2  # everything before the damage was applied
    with pytest.raises(nfct.CaptureError) as missing:
        Net().replay([tmp_path / "nope.pcap"])
    assert missing.value.path == str(tmp_path / "nope.pcap")


def test_cli_replay_default_output(capture: Path, ether_capture: Path) -> None:
    proc = run_cli("replay", capture)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == [
        "ipv4     2 icmp     1 25 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
        "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 use=1",
        "ipv4     2 udp      17 25 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 use=1",
    ]
    assert proc.stderr.splitlines() == [
        "nfct: 5 packets (5 frames, 0 not IP), 2 entries, 1 invalid, 0 dropped"
    ]
    ether = run_cli("replay", "--output", "extended", ether_capture)
    assert ether.returncode == 0, ether.stderr
    assert sorted(ether.stdout.splitlines()) == sorted(proc.stdout.splitlines())


def test_cli_replay_output_modes(capture: Path) -> None:
    conntrack = run_cli("replay", "-o", "conntrack", capture)
    assert conntrack.returncode == 0
    assert sorted(conntrack.stdout.splitlines())[1].startswith("udp      17 25 src=10.1.0.2")
    proc = run_cli("replay", "--output", "proc", capture)
    assert proc.returncode == 0
    assert sorted(proc_fixup(x) for x in proc.stdout.splitlines()) == [
        "ipv4     2 icmp     1 25 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 "
        "src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 zone=0",
        "ipv4     2 udp      17 25 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 "
        "src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 zone=0",
    ]
    stats = run_cli("replay", "--output", "stats", capture)
    assert stats.returncode == 0
    assert stats.stdout == (
        "cpu=0   \tfound=0 invalid=1 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 "
        "search_restart=0 clash_resolve=0 chaintoolong=0 \n"
    )
    pkts = run_cli("replay", "--output", "packets", capture)
    assert pkts.returncode == 0
    assert pkts.stdout.splitlines() == [
        "1 new",
        "2 established",
        "3 new",
        "4 established",
        "5 invalid nf_ct_udp: bad checksum",
    ]
    js = run_cli("replay", "--output", "json", capture)
    assert js.returncode == 0
    doc = json.loads(js.stdout)
    assert doc["count"] == 2
    assert doc["clock"] == "capture"
    assert doc["captures"] == [str(capture)]
    assert doc["stats"]["invalid"] == 1
    assert doc["summary"]["packets"] == 5
    assert sorted(doc["lines"]) == sorted(run_cli("replay", capture).stdout.splitlines())
    assert {e["proto"] for e in doc["entries"]} == {"udp", "icmp"}


def test_cli_replay_clock_and_sysctl(capture: Path) -> None:
    frozen = run_cli("replay", "--clock", "frozen", "-o", "conntrack", capture)
    assert frozen.returncode == 0
    assert [line.split()[2] for line in frozen.stdout.splitlines()] == ["29", "29"]
    nocsum = run_cli("replay", "--sysctl", "nf_conntrack_checksum=0", "-o", "conntrack", capture)
    assert nocsum.returncode == 0
    got = nocsum.stdout.splitlines()
    assert len(got) == 3
    assert any("sport=2002 dport=53 [UNREPLIED]" in line for line in got)
    short = run_cli(
        "replay",
        "--sysctl",
        "nf_conntrack_udp_timeout=3",
        "--sysctl",
        "nf_conntrack_icmp_timeout=3",
        capture,
    )
    assert short.returncode == 0
    assert short.stdout == ""  # both expired by the time of the last packet
    unknown = run_cli("replay", "--sysctl", "nf_conntrack_nope=1", capture)
    assert unknown.returncode == 2
    assert "nf_conntrack_nope" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    malformed = run_cli("replay", "--sysctl", "nf_conntrack_udp_timeout", capture)
    assert malformed.returncode == 2


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "byte offset" in line]


def test_cli_replay_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.pcap"
    proc = run_cli("replay", missing)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (err,) = _error_lines(proc.stderr)
    assert str(missing) in err
    assert proc.stdout == ""


@pytest.mark.parametrize("output", ["extended", "packets"])
def test_cli_replay_truncated_capture(capture: Path, tmp_path: Path, output: str) -> None:
    data = capture.read_bytes()
    cut = tmp_path / "truncated.pcap"
    cut.write_bytes(data[: len(data) - 30])  # inside the 5th record
    proc = run_cli("replay", "--output", output, cut)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (err,) = _error_lines(proc.stderr)
    assert str(cut) in err
    if output == "packets":
        assert proc.stdout.splitlines() == ["1 new", "2 established", "3 new", "4 established"]
    else:
        # What was read before the damage is applied and printed.
        assert len(proc.stdout.splitlines()) == 2


def test_cli_replay_truncated_file_header(tmp_path: Path) -> None:
    cut = tmp_path / "header.pcap"
    cut.write_bytes(P.pcap([])[:10])
    proc = run_cli("replay", cut)
    assert proc.returncode == 2
    (err,) = _error_lines(proc.stderr)
    assert str(cut) in err


def test_cli_replay_packets_appends_to_redirected_stdout(capture: Path, tmp_path: Path) -> None:
    """`nfct replay -o packets x.pcap >> log` must not wipe what log already held."""
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n")
    with log.open("a") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "nfct.cli", "replay", "-o", "packets", str(capture)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            check=False,
        )
    assert proc.returncode == 0
    assert log.read_text().splitlines()[0] == "earlier line"
    assert log.read_text().splitlines()[1:] == [
        "1 new",
        "2 established",
        "3 new",
        "4 established",
        "5 invalid nf_ct_udp: bad checksum",
    ]


def _without_timeout(
    line: str,
) -> tuple[str, str | None, tuple[tuple[str, str], ...], tuple[str, ...]]:
    entry = parse_conntrack_line(line)
    tuples = tuple(sorted((f"{d}.{k}", v) for d in ("orig", "reply") for k, v in entry[d].items()))
    return entry["l3"] + " " + entry["proto"], entry["state"], tuples, tuple(entry["flags"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_cli_replay_examples(examples_dir: Path, name: str, tmp_path: Path) -> None:
    path = examples_dir / f"{name}.pcap"
    assert path.is_file(), f"{path} is missing"
    outputs: dict[str, str] = {}
    for output in ("extended", "conntrack", "proc", "stats", "json", "packets"):
        proc = run_cli("replay", "--output", output, path)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        outputs[output] = proc.stdout
    extended = outputs["extended"].splitlines()
    assert all(line.startswith(("ipv4 ", "ipv6 ")) for line in extended)
    assert len(outputs["conntrack"].splitlines()) == len(extended)
    assert len(outputs["proc"].splitlines()) == len(extended)
    assert outputs["stats"].startswith("cpu=0   \tfound=0 invalid=")
    doc = json.loads(outputs["json"])
    assert doc["count"] == len(extended)
    packet_lines = outputs["packets"].splitlines()
    assert len(packet_lines) == doc["summary"]["packets"]
    pattern = r"\d+ (new|established|related|invalid|untracked|dropped)( .*)?"
    assert all(re.fullmatch(pattern, x) for x in packet_lines)

    # The kernel's table right after the recording (listed about a second later): every entry
    # is there, TCP included (TIME_WAIT [ASSURED] in http and mixed), with the same tuples,
    # state and flags, and a timeout at most a few seconds longer.
    truth = [x for x in (examples_dir / f"{name}.conntrack").read_text().splitlines() if x]
    assert sorted(map(_without_timeout, extended)) == sorted(map(_without_timeout, truth))
    ours = {_without_timeout(x): parse_conntrack_line(x)["timeout"] for x in extended}
    for line in truth:
        theirs = parse_conntrack_line(line)["timeout"]
        assert 0 <= ours[_without_timeout(line)] - theirs <= 3, line
    tcp = [parse_conntrack_line(x) for x in truth if parse_conntrack_line(x)["proto"] == "tcp"]
    assert len(tcp) == (3 if name in ("http", "mixed") else 0), tcp
    assert all(e["state"] == "TIME_WAIT" and "ASSURED" in e["flags"] for e in tcp), tcp

    frozen = run_cli("replay", "--clock", "frozen", "-o", "conntrack", path)
    assert frozen.returncode == 0
    assert len(frozen.stdout.splitlines()) == len(extended)
    nocsum = run_cli("replay", "--sysctl", "nf_conntrack_checksum=0", path)
    assert nocsum.returncode == 0
    assert sorted(nocsum.stdout.splitlines()) == sorted(extended)  # real checksums are right

    # A truncated copy of the capture: exit 2, one error line naming it and the offset.
    data = path.read_bytes()
    cut = tmp_path / f"{name}-truncated.pcap"
    cut.write_bytes(data[: len(data) - 3])
    bad = run_cli("replay", "--output", "packets", cut)
    assert bad.returncode == 2
    (err,) = _error_lines(bad.stderr)
    assert str(cut) in err
    bad_lines = bad.stdout.splitlines()
    # Every packet before the damaged last record was printed (a non-IP last frame has none).
    assert bad_lines == packet_lines[: len(bad_lines)]
    assert len(bad_lines) >= len(packet_lines) - 1


def test_cli_replay_several_captures(examples_dir: Path) -> None:
    """dns then ping into one table: the union of both tables, packet lines name the file."""
    dns, ping = examples_dir / "dns.pcap", examples_dir / "ping.pcap"
    both = run_cli("replay", "--clock", "frozen", "-o", "conntrack", dns, ping)
    assert both.returncode == 0, both.stderr
    one = run_cli("replay", "--clock", "frozen", "-o", "conntrack", dns)
    two = run_cli("replay", "--clock", "frozen", "-o", "conntrack", ping)
    assert len(both.stdout.splitlines()) == len(one.stdout.splitlines()) + len(
        two.stdout.splitlines()
    )
    pkts = run_cli("replay", "-o", "packets", dns, ping)
    assert pkts.returncode == 0
    names = {line.split(":")[0] for line in pkts.stdout.splitlines()}
    assert names == {str(dns), str(ping)}
