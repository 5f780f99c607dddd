"""UDPLITE checksums as the kernel's conntrack verifies them, without a kernel: over IPv4 the
pseudo-header's length is only the low byte of the datagram's (and its protocol 17, not 136),
over IPv6 the whole length (docs/fidelity.md, "UDPLITE checksums"; the live side is
tests/live/test_strategies.py::test_udplite_checksums_across_lengths). nfct against what the
kernel was observed to do, the packet builders and describe(), and the strategies' valid UDPLITE
flows of every size."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, given, settings

import nfct.strategies as nst
from helpers import udplite_length_cases
from nfct import packets as NP
from nfct.testing import nfct_verdicts
from nfct.traffic import Flow


@pytest.mark.parametrize("checksum", [1, 0])
def test_nfct_judges_udplite_checksums_as_the_kernel(checksum: int) -> None:
    pkts, expected, labels = udplite_length_cases(checksum=bool(checksum))
    verdicts, table = nfct_verdicts([(t, p) for p, t in pkts], {"nf_conntrack_checksum": checksum})
    wrong = [
        f"{label}: nfct {v.cls} ({v.reason}), kernel {want}"
        for label, v, want in zip(labels, verdicts, expected, strict=True)
        if v.cls != want
    ]
    assert not wrong, f"{len(wrong)} differ:\n" + "\n".join(wrong[:40])
    assert len(table) == expected.count("new")
    reasons = {v.reason for v in verdicts if v.cls == "invalid"}
    assert reasons <= {"nf_ct_udplite: bad checksum", "nf_ct_udp: bad checksum"}, reasons
    # Both sides of the rule are exercised: big IPv4 UDPLITE datagrams both NEW and INVALID.
    if checksum:
        assert "invalid" in expected and expected.count("new") > len(expected) // 3


def test_the_pseudo_header_length() -> None:
    assert [NP.udplite_pseudo_length(4, n) for n in (8, 255, 256, 257, 300, 1480)] == [
        8, 255, 0, 1, 44, 200,
    ]  # fmt: skip
    assert [NP.udplite_pseudo_length(6, n) for n in (8, 256, 1460)] == [8, 256, 1460]


@pytest.mark.parametrize(("src", "dst"), [("10.1.0.2", "10.2.0.2"), ("fd00:1::2", "fd00:2::2")])
@pytest.mark.parametrize("size", [0, 247, 248, 300, 504, 1000])
def test_builders_and_describe_follow_the_kernel(src: str, dst: str, size: int) -> None:
    payload = (bytes(range(256)) * 4)[:size]
    n = size + 8
    v4 = ":" not in src
    default = NP.udplite(src, dst, 5000, 5001, payload, coverage=8 + size // 2)
    udp_style = NP.udplite(src, dst, 5001, 5001, payload, pseudo_length=n)
    rfc3828 = NP.udplite(
        src, dst, 5002, 5001, payload, pseudo_proto=NP.IPPROTO_UDPLITE, pseudo_length=n
    )
    got = [v.cls for v in nfct_verdicts([(0.0, default), (0.1, udp_style), (0.2, rfc3828)])[0]]
    assert got == ["new", "new" if not v4 or n < 256 else "invalid", "invalid"]
    assert "bad checksum" not in NP.describe(default)
    assert ("bad checksum" in NP.describe(udp_style)) == (v4 and n >= 256)
    assert "bad checksum" in NP.describe(rfc3828)
    # fix_checksum writes the checksum the kernel accepts.
    for pkt in (default, udp_style, rfc3828):
        fixed = NP.fix_checksum(pkt)
        assert "bad checksum" not in NP.describe(fixed)
        assert nfct_verdicts([(0.0, fixed)])[0][0].cls == "new"


def test_valid_udplite_flows_over_ipv4_reach_past_256_bytes() -> None:
    """The strategies no longer keep IPv4 UDPLITE below 256 bytes (they did while nfct got the
    rule wrong); such flows are valid for nfct."""
    flow = find(
        nst.udp_flows(family=4, lite=True),
        lambda f: any(len(p.data) - 20 >= 512 for p in f.packets),
        settings=settings(max_examples=2000, suppress_health_check=list(HealthCheck)),
    )
    assert all(v.cls != "invalid" for v in nfct_verdicts(flow)[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nst.udp_flows(lite=True))
def test_valid_udplite_flows_are_valid(flow: Flow) -> None:
    verdicts = nfct_verdicts(flow)[0]
    assert all(v.cls in ("new", "established") for v in verdicts), verdicts


def test_bad_checksum_mutations_of_big_ipv4_udplite() -> None:
    """The bad_checksum mutation can give a big IPv4 UDPLITE datagram the UDP-style checksum
    (the whole length), which the kernel finds INVALID."""
    flow = find(
        nst.mutated(nst.udp_flows(family=4, lite=True), kinds=["bad_checksum"], max_mutations=1),
        lambda f: "UDP's, whole length" in f.mutations[0],
        settings=settings(max_examples=3000, suppress_health_check=list(HealthCheck)),
    )
    notes = [p.note for p in flow.packets]
    i = next(i for i, n in enumerate(notes) if "UDP's, whole length" in n)
    assert len(flow.packets[i].data) - 20 >= 256
    assert nfct_verdicts(flow)[0][i].cls == "invalid"
