"""nfct's constants (verdicts, hooks, priorities, ctinfo, status bits) have the kernel's values,
and every name the package exports exists."""

from __future__ import annotations

import nfct

# --- constants ------------------------------------------------------------------------------------


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
