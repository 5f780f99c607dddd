"""What a report and an explanation are built from: `Net.replay(observe=...)` (packet rows in
bounded batches, censuses of the table, early-drop victims) and `Net.explain` /
`nfct explain` (one frame's way through the host, step by step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nfct
import packets as P
from helpers import C, S
from nfct.cli import main
from nfct.pcap import write_pcap

ROOT = Path(__file__).resolve().parent.parent


def _flows(tmp_path: Path, n: int = 40, gap: float = 0.1) -> Path:
    recs = []
    for i in range(n):
        recs.append((10.0 + i * gap, P.udp(C, S, 5000 + i, 53, b"q")))
        if i % 2:
            recs.append((10.0 + i * gap + gap / 10, P.udp(S, C, 53, 5000 + i, b"a")))
    path = tmp_path / "flows.pcap"
    write_pcap(path, recs)
    return path


def test_observe_rows_census_and_evictions(tmp_path: Path) -> None:
    cap = _flows(tmp_path)
    got: dict[str, list[Any]] = {"packets": [], "census": [], "evictions": [], "evictions_more": []}

    def observe(kind: str, data: Any) -> None:
        got[kind].append(data)

    # A full table of 1024 entries in 512 buckets (the fewest the kernel has: it rounds
    # nf_conntrack_buckets up to 512s); early drop looks at 8 buckets from the new entry's, 16
    # entries on average: new flows evict unreplied ones.
    cap = _flows(tmp_path, 1500, gap=0.01)
    sysctl = {"nf_conntrack_max": 1024, "nf_conntrack_buckets": 1, "nf_conntrack_timestamp": 1}
    net = nfct.Net(sysctl, seed=1)
    assert net.sysctl["nf_conntrack_buckets"] == 512
    res = net.replay([cap], observe=observe, observe_batch=7, census_every=0.5)
    rows = got["packets"]
    assert all(len(b["frame"]) <= 7 for b in rows), "batches are bounded"
    frames = [f for b in rows for f in b["frame"]]
    assert frames == list(range(1, res["frames"] + 1))
    cols = {k: [x for b in rows for x in b[k]] for k in rows[0]}
    assert set(cols["cls"]) <= {"new", "established"}
    assert cols["proto"][0] == 17 and cols["src"][0] == C and cols["dport"][0] == 53
    assert max(cols["count"]) == 1024, "occupancy after each packet, bounded by nf_conntrack_max"
    assert got["census"], "at least the final census"
    last = got["census"][-1]
    assert last["total"] == len(net)
    assert sum(n for *_, n in last["by_state"]) == last["total"]
    assert last["destinations"][0] == (S, last["total"])
    evicted = [e for batch in got["evictions"] for e in batch]
    assert len(evicted) == net.stats["early_drop"] > 0
    assert all(
        e["state"] in ("UNREPLIED", "REPLIED") and e["age"] is not None and e["age"] >= 0
        for e in evicted
    )
    with pytest.raises(nfct.NfctTypeError, match="callable"):
        net.replay([cap], observe=5)  # type: ignore[arg-type]
    with pytest.raises(nfct.NfctValueError, match="threads=1"):
        net.replay([cap], observe=observe, threads=2)


def test_explain_steps_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = nfct.Net()
    e = net.explain(ROOT / "examples" / "invalid.pcap", 4)
    names = [s["name"] for s in e["steps"]]
    assert names == ["ipv4_conntrack_defrag", "ipv4_conntrack_in", "routing", "ipv4_confirm"]
    ct_in = e["steps"][1]
    assert ct_in["reason"].startswith("nf_ct_tcp: SEQ is over the upper bound")
    assert "ESTABLISHED" in ct_in["before"] and ct_in["after"] is None
    assert (e["cls"], e["path"]) == ("invalid", "forward")
    # The same from the command line, as text and as JSON.
    assert main(["explain", str(ROOT / "examples" / "invalid.pcap"), "4"]) == 0
    text = capsys.readouterr().out
    assert "ipv4_conntrack_in: ACCEPT: nf_ct_tcp: SEQ is over the upper bound" in text
    assert text.rstrip().endswith(
        "class invalid: nf_ct_tcp: SEQ is over the upper bound (over the window of the receiver)"
    )
    assert main(["explain", str(ROOT / "examples" / "invalid.pcap"), "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cls"] == "invalid"
    assert main(["explain", str(ROOT / "examples" / "invalid.pcap"), "999"]) == 2
    assert "no IP packet at frame 999" in capsys.readouterr().err


def test_explain_names_the_rule_and_nat(tmp_path: Path) -> None:
    """A host with a filter rule and a DNAT: the steps say which rule decided and how the
    entry's reply tuple changed."""
    rules = {
        "nftables": [
            {"table": {"family": "ip", "name": "t", "handle": 1}},
            {"chain": {"family": "ip", "table": "t", "name": "pre", "handle": 1, "type": "nat",
                       "hook": "prerouting", "prio": -100, "policy": "accept"}},
            {"chain": {"family": "ip", "table": "t", "name": "fw", "handle": 2, "type": "filter",
                       "hook": "forward", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "ip", "table": "t", "chain": "pre", "handle": 3, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                           "right": 53}},
                {"dnat": {"family": "ip", "addr": "10.9.0.53"}}]}},
            {"rule": {"family": "ip", "table": "t", "chain": "fw", "handle": 4, "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                           "right": "10.9.0.53"}},
                {"accept": None}]}},
        ]
    }  # fmt: skip
    net = nfct.Net()
    net.load_ruleset(rules)
    cap = _flows(tmp_path, 2)
    e = net.explain(cap, 1)
    steps = {s["name"]: s for s in e["steps"]}
    assert "dst=10.9.0.53" not in (steps["nf_nat_ipv4_pre_routing"]["before"] or "")
    assert "src=10.9.0.53" in steps["nf_nat_ipv4_pre_routing"]["after"], (
        "the reply now comes from the backend"
    )
    assert steps["ip t fw"]["rule"] == "ip t fw handle 4"
    assert e["cls"] == "new" and e["path"] == "forward"
