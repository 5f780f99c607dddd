"""Capture-level numbers of the captures shipped in examples/, pinned: entries per protocol and
state, packets per class, and the INVALID reasons. The entries themselves are checked against
the kernel's own tables in test_cli.py (examples/*.conntrack) and, live, in tests/live/."""

from __future__ import annotations

from collections import Counter

import pytest

import nfct
from helpers import EXAMPLES_DIR

EXAMPLES = EXAMPLES_DIR

# capture -> ({(proto, state): entries}, {class: packets}, {reason: packets})
PINNED: dict[str, tuple[dict[tuple[str, str | None], int], dict[str, int], dict[str, int]]] = {
    "http": (
        {("tcp", "TIME_WAIT"): 3},
        {"new": 3, "established": 34, "untracked": 1, "dropped": 1},
        {"ip6_route_input: multicast not joined": 1},
    ),
    "dns": (
        {("udp", None): 5},
        {"new": 5, "established": 6, "related": 1, "untracked": 1, "dropped": 1},
        {"ip6_route_input: multicast not joined": 1},
    ),
    "ping": (
        {("icmp", None): 1, ("icmpv6", None): 1},
        {"new": 2, "established": 10, "untracked": 1, "dropped": 1},
        {"ip6_route_input: multicast not joined": 1},
    ),
    "mixed": (
        {("tcp", "TIME_WAIT"): 3, ("udp", None): 5, ("icmp", None): 1, ("icmpv6", None): 1},
        {"new": 10, "established": 49, "related": 1, "untracked": 2, "dropped": 2},
        {"ip6_forward: source beyond scope": 1, "ip6_route_input: multicast not joined": 1},
    ),
    "invalid": (
        {("tcp", "ESTABLISHED"): 1},
        {"new": 1, "established": 4, "invalid": 7},
        {
            "nf_ct_tcp: SEQ is over the upper bound (over the window of the receiver)": 1,
            "nf_ct_tcp: ACK is over the upper bound (ACKed data not seen yet)": 1,
            "nf_ct_tcp: invalid tcp flag combination": 1,
            "nf_ct_udp: bad checksum": 1,
            "nf_ct_icmp: no connection for the quoted packet": 1,
            "nf_ct_icmp: invalid new with type": 1,
            "nf_ct_tcp: invalid new": 1,
        },
    ),
}

CLASSES = ("new", "established", "related", "invalid", "untracked", "dropped")


def test_every_shipped_capture_is_pinned() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.pcap")} == set(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_numbers(name: str) -> None:
    entries, classes, reasons = PINNED[name]
    net = nfct.Net(seed=1)
    summary = net.replay([str(EXAMPLES / f"{name}.pcap")])
    assert dict(Counter((c.proto, c.state) for c in net)) == entries
    assert {k: summary[k] for k in CLASSES if summary[k]} == classes
    assert summary["reasons"] == reasons
    # ICMP errors quoting no flow count in `error`, every other INVALID packet in `invalid`.
    errors = sum(n for r, n in reasons.items() if r.startswith("nf_ct_icmp: no connection"))
    assert (net.stats["invalid"], net.stats["error"]) == (
        classes.get("invalid", 0) - errors,
        errors,
    )
