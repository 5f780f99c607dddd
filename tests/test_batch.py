"""`Net.conntrack_batch`: packets in one buffer, numpy in and out, no Python object per
packet. It must give exactly what the simple path gives: the same table and the same
per-packet classes as replaying the same packets (shipped captures and Hypothesis traffic)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import nfct
import packets as P
from helpers import EXAMPLES_DIR, C, S, traffic
from nfct import Net
from nfct.verify import write_pcap

EXAMPLES = EXAMPLES_DIR

# ctinfo -> the class the replay prints (ctinfo -1: no conntrack).
CLASS = {-1: "invalid", 0: "established", 1: "related", 2: "new", 3: "established", 4: "related"}
CLASS[7] = "untracked"


def classes(verdicts: np.ndarray, ctinfo: np.ndarray) -> list[str]:
    return [
        "dropped" if v != nfct.NF_ACCEPT else CLASS[int(c)]
        for v, c in zip(verdicts.tolist(), ctinfo.tolist(), strict=True)
    ]


def batch_of(pkts: list[tuple[bytes, float]]) -> tuple[bytes, np.ndarray, np.ndarray]:
    buf = b"".join(p for p, _ in pkts)
    offsets = np.zeros(len(pkts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p, _ in pkts])
    return buf, offsets, np.array([t for _, t in pkts], dtype=np.float64)


def replayed(pkts: list[tuple[bytes, float]], tmp: Path) -> tuple[list[str], list[str]]:
    cap, lines = tmp / "b.pcap", tmp / "b.txt"
    write_pcap(cap, pkts)
    net = Net(seed=3)
    net.replay([cap], packets_path=lines)
    return net.dump().splitlines(), [x.split()[1] for x in lines.read_text().splitlines()]


def batched(pkts: list[tuple[bytes, float]]) -> tuple[list[str], list[str]]:
    net = Net(seed=3)
    v, c = net.conntrack_batch(*batch_of(pkts))
    assert v.dtype == np.uint32 and c.dtype == np.int8 and len(v) == len(pkts)
    return net.dump().splitlines(), classes(v, c)


def ip_packets(path: Path) -> list[tuple[bytes, float]]:
    """The IP packets of an Ethernet pcap shipped with nfct (written by tools/)."""
    import dpkt

    out = []
    with open(path, "rb") as f:
        reader = dpkt.pcap.UniversalReader(f)
        raw = reader.datalink() == 101  # LINKTYPE_RAW: the record is the IP packet
        for ts, buf in reader:
            if raw:
                out.append((bytes(buf), float(ts)))
                continue
            eth = dpkt.ethernet.Ethernet(buf)
            if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6):
                out.append((bytes(eth.data), float(ts)))
    return out


@pytest.mark.parametrize("name", ["http", "dns", "ping", "mixed", "invalid"])
def test_batch_equals_replay_on_shipped_captures(name: str, tmp_path: Path) -> None:
    path = EXAMPLES / f"{name}.pcap"
    pkts = ip_packets(path)
    assert pkts
    assert batched(pkts) == replayed(pkts, tmp_path)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pkts=traffic())
def test_batch_equals_replay_on_generated_traffic(
    pkts: list[tuple[bytes, float]], tmp_path: Path
) -> None:
    assert batched(pkts) == replayed(pkts, tmp_path)


def test_batch_runs_registered_operations_and_checks_its_arguments() -> None:
    net = Net()
    ops = nfct.NfHookOps(nfct.BuiltinHook.drop_invalid(), nfct.NFPROTO_INET, 2, 0)
    nfct.nf_register_net_hook(net, ops)
    pkts = [(P.udp(C, S, 1, 2), 1.0), (P.udp(C, S, 1, 2, b"x", checksum=0xBAD), 1.0)]
    v, c = net.conntrack_batch(*batch_of(pkts))
    assert v.tolist() == [nfct.NF_ACCEPT, nfct.NF_DROP] and c.tolist() == [2, -1]
    seen: list[int | None] = []

    def note(skb: nfct.Skb, state: nfct.HookState) -> int:
        seen.append(skb.ctinfo)
        return nfct.NF_ACCEPT

    hook = nfct.NfHookOps(note, nfct.NFPROTO_INET, 2, 5)
    nfct.nf_register_net_hook(net, hook)
    buf, offsets, _ = batch_of(pkts)
    v, _ = net.conntrack_batch(buf, offsets)
    # The flow has no reply yet: NEW again; the bad packet was dropped before the hook ran.
    assert seen == [nfct.IP_CT_NEW] and v.tolist() == [nfct.NF_ACCEPT, nfct.NF_DROP]
    with pytest.raises(nfct.NfctValueError):
        net.conntrack_batch(buf, np.array([0, len(buf) + 1], dtype=np.int64))
    with pytest.raises(nfct.NfctValueError):
        net.conntrack_batch(buf, offsets, np.zeros(5))
    empty_v, empty_c = net.conntrack_batch(b"", np.zeros(1, dtype=np.int64))
    assert len(empty_v) == len(empty_c) == 0
