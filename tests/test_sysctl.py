"""`Net` and its sysctls (spec §18): the 6.18 defaults, reading and writing them as a mapping,
what the constructor takes, and the errors for unknown, negative, out-of-range and non-int
values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nfct
import packets as P
from helpers import C, S, forward
from nfct import (
    Net,
)

# --- Net and its sysctls --------------------------------------------------------------------------


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
    assert net.sysctl["nf_conntrack_buckets"] == 512  # rounded up as the kernel does
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
        net.sysctl["nf_conntrack_log_invalid"] = -1
    assert isinstance(err.value, ValueError)
    assert net.sysctl["nf_conntrack_log_invalid"] == 0
    # The kernel takes a negative timeout (its jiffies conversion keeps the sign) and expires
    # entries at once: held as 0, which does the same.
    net.sysctl["nf_conntrack_udp_timeout"] = -1
    assert net.sysctl["nf_conntrack_udp_timeout"] == 0
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


# --- the kernel's ranges --------------------------------------------------------------------------

_RANGES = json.loads((Path(__file__).parent / "scenarios" / "sysctl_ranges.json").read_text())


def _recorded_writes() -> list[tuple[str, int, str]]:
    out = []
    for name, seen in _RANGES["writes"].items():
        for value, what in seen.items():
            if value == "default" or value.startswith("'"):
                continue  # the text forms are the CLI's parsing, not the range
            out.append((name, int(value), what))
    return out


def test_recording_covers_every_sysctl() -> None:
    assert set(_RANGES["writes"]) == set(DEFAULTS)
    for name, seen in _RANGES["writes"].items():
        assert int(seen["default"]) == DEFAULTS[name], name


@pytest.mark.parametrize(("name", "value", "kernel"), _recorded_writes())
def test_sysctl_range_is_the_kernels(name: str, value: int, kernel: str) -> None:
    """Every value written to the live kernel's /proc/sys (tools/probe_sysctls.py, recorded in
    tests/scenarios/sysctl_ranges.json): nfct accepts it exactly when the kernel did, and holds
    what the kernel read back (a negative timeout, which the kernel keeps and which expires
    entries at once, is held as 0, which does the same)."""
    net = Net()
    if kernel.startswith("ok "):
        net.sysctl[name] = value
        want = int(kernel[3:])
        if want < 0 and "_timeout" in name:
            want = 0
        assert net.sysctl[name] == want
        assert Net(sysctl={name: value}).sysctl[name] == want
    else:
        old = net.sysctl[name]
        with pytest.raises(nfct.NfctValueError) as err:
            net.sysctl[name] = value
        assert name in str(err.value) and str(value) in str(err.value)
        assert "\n" not in str(err.value)
        assert net.sysctl[name] == old
        with pytest.raises(nfct.NfctValueError):
            Net(sysctl={name: value})


def test_buckets_the_issue_named() -> None:
    """Issue #17: 2^28 buckets took 1 GB and 10 s before the first packet; refused now at once,
    and the message says the limit."""
    for value in (268435456, 2**31 - 1):
        with pytest.raises(nfct.NfctValueError, match="at most 268434944"):
            Net(sysctl={"nf_conntrack_buckets": value})
    assert Net(sysctl={"nf_conntrack_buckets": 1000}).sysctl["nf_conntrack_buckets"] == 1024


def test_frag6_thresholds_bound_each_other() -> None:
    net = Net()
    with pytest.raises(nfct.NfctValueError, match="nf_conntrack_frag6_high_thresh"):
        net.sysctl["nf_conntrack_frag6_low_thresh"] = 4194305
    net.sysctl["nf_conntrack_frag6_high_thresh"] = 8 << 20
    net.sysctl["nf_conntrack_frag6_low_thresh"] = 4194305
    # One mapping is checked once applied, whatever its order.
    n = Net(
        sysctl={"nf_conntrack_frag6_low_thresh": 5 << 20, "nf_conntrack_frag6_high_thresh": 6 << 20}
    )
    assert n.sysctl["nf_conntrack_frag6_low_thresh"] == 5 << 20
    with pytest.raises(nfct.NfctValueError):
        Net(sysctl={"nf_conntrack_frag6_low_thresh": 5 << 20})


@pytest.mark.parametrize("value", [2**64, -(2**80), 10**40])
def test_huge_sysctl_values_name_the_sysctl(value: int) -> None:
    with pytest.raises(nfct.NfctValueError, match="nf_conntrack_udp_timeout"):
        Net(sysctl={"nf_conntrack_udp_timeout": value})
