"""`nfct.report` and `nfct report`: the figures of a replay checked against what a packet-by-
packet loop over `ip_rcv` computes on its own (occupancy, peak, early drops, classes, reasons,
the table at the end), the demand against replays at that max and one below, the what-if
sweep against serial runs, and the command's HTML, JSON and bad inputs."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import nfct
import packets as P
from helpers import S, run_cli, udp_flows
from nfct import report
from nfct.cli import main
from nfct.pcap import iter_records, write_pcap

pytest.importorskip("numpy")

# A table of 64 entries in 512 buckets (the fewest the kernel has): the table overflows within
# seconds, early drop mostly finding nothing in the 8 buckets it looks at.
SMALL = {"nf_conntrack_max": 64, "nf_conntrack_buckets": 512}
T0 = 1_700_000_000.0


def loop(path: Path, sysctl: dict[str, int], seed: int) -> dict[str, Any]:
    """What the figures should say, from `ip_rcv` packet by packet (no replay, no observer):
    the count after each packet, classes and reasons, the table at the end."""
    net = nfct.Net({**sysctl, "nf_conntrack_timestamp": 1}, seed=seed)
    counts: list[int] = []
    times: list[float] = []
    classes: Counter[str] = Counter()
    invalid: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for t, data in iter_records(path):
        skb = nfct.Skb(data, tstamp=t)
        res = nfct.ip_rcv(net, skb)
        cls = skb.ctstate if res.verdict == nfct.NF_ACCEPT else "dropped"
        classes[cls] += 1
        if cls == "invalid":
            invalid[skb.invalid_reason or "(no reason)"] += 1
        elif cls == "dropped":
            dropped[res.reason or skb.invalid_reason or "(no reason)"] += 1
        counts.append(net.count)
        times.append(t)
    peak = max(counts)
    return {
        "net": net,
        "counts": counts,
        "peak": peak,
        "peak_t": times[counts.index(peak)],
        "classes": classes,
        "invalid": invalid,
        "dropped": dropped,
        "early_drop": net.stats["early_drop"],
        "final": len(net),
    }


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return udp_flows(tmp_path_factory.mktemp("report") / "flows.pcap", t0=T0)


@pytest.fixture(scope="module")
def small_figures(capture: Path) -> dict[str, Any]:
    return report.compute([capture], report.HostSetup(sysctl=SMALL, seed=3))


def test_figures_agree_with_a_packet_by_packet_loop(
    capture: Path, small_figures: dict[str, Any]
) -> None:
    fig = small_figures
    want = loop(capture, SMALL, seed=3)
    t = fig["table"]
    assert (t["max"], t["buckets"]) == (64, 512)
    assert t["peak"] == want["peak"] == 64
    assert t["peak_tstamp"] == pytest.approx(want["peak_t"])
    assert t["early_drops"] == want["early_drop"] > 0
    assert t["final"] == want["final"]
    assert not t["held"] and t["headroom"] == 0 and t["peak_ratio"] == 1.0
    tl = fig["timeline"]
    for cls in ("new", "established", "related", "invalid", "untracked", "dropped"):
        assert sum(tl[cls]) == want["classes"][cls] == fig["summary"][cls], cls
    assert sum(tl["packets"]) == sum(want["classes"].values()) == fig["summary"]["packets"]
    assert sum(tl["early_drops"]) == want["early_drop"] == fig["evictions"]["total"]
    # The occupancy series: the most entries after any packet of each 1 s bin.
    assert tl["bin"] == 1.0
    start = fig["span"]["start"]
    by_bin: dict[int, int] = {}
    for (ts, _), n in zip(iter_records(capture), want["counts"], strict=True):
        i = int((ts - int(start)) // 1)
        by_bin[i] = max(by_bin.get(i, 0), n)
    assert {i: v for i, v in enumerate(tl["occupancy"]) if v is not None} == by_bin
    assert fig["invalid"]["by_reason"] == dict(want["invalid"])
    assert set(fig["invalid"]["by_reason"]) == {
        "nf_ct_udp: bad checksum",
        "nf_ct_tcp: invalid tcp flag combination",
    }
    assert {k: sum(v) for k, v in tl["invalid_by_reason"].items()} == dict(want["invalid"])
    json.dumps(fig, allow_nan=False)


def test_evictions_are_the_early_drop_victims(small_figures: dict[str, Any]) -> None:
    ev = small_figures["evictions"]
    assert len(ev["kept"]) == ev["total"] == small_figures["table"]["early_drops"]
    assert sum(ev["by_state"].values()) == ev["total"]
    # Early drop takes only entries that are not ASSURED; these UDP flows never are.
    assert set(ev["by_state"]) <= {"udp UNREPLIED", "udp REPLIED"}
    ages = [v["age"] for v in ev["kept"]]
    assert all(a is not None and a >= 0 for a in ages)
    assert ev["age"]["n"] == len(ages)
    assert ev["age"]["max"] == pytest.approx(max(ages))
    assert ev["age"]["under"]["300"] == len(ages)
    first = ev["kept"][0]
    assert first["proto"] == "udp" and first["dst"] == S and first["dport"] == 53
    assert first["line"].startswith("udp ")


def test_victims_and_their_ages_from_the_capture(
    capture: Path, small_figures: dict[str, Any]
) -> None:
    """Each query of udp_flows has a source port of its own (5000 + i, sent at T0 + i * 50 ms
    from 10.0.{i % 7}.{1 + i % 50}): a victim's age is the time from its query to its
    eviction, it was evicted when a packet arrived, and it is not in the table at the end of
    a packet-by-packet loop."""
    times = [ts for ts, _ in iter_records(capture)]
    final = {
        (c.orig.src, c.orig.sport, c.orig.dst, c.orig.dport)
        for c in loop(capture, SMALL, seed=3)["net"]
    }
    for v in small_figures["evictions"]["kept"]:
        # In 512 buckets an answer whose query's entry was evicted makes an entry of its own
        # (from S, 10 ms after the query), which may be evicted in turn.
        query = v["src"] != S
        port, client = (v["sport"], v["src"]) if query else (v["dport"], v["dst"])
        i = port - 5000
        assert 0 <= i < 400 and client == f"10.0.{i % 7}.{1 + i % 50}"
        sent = T0 + i * 0.05 + (0.0 if query else 0.01)
        assert v["age"] == pytest.approx(v["tstamp"] - sent, abs=1e-6)
        assert min(abs(v["tstamp"] - t) for t in times) < 1e-6
        assert (v["src"], v["sport"], v["dst"], v["dport"]) not in final


def test_census_states_and_heaviest_addresses(small_figures: dict[str, Any]) -> None:
    fig = small_figures
    c = fig["census"]
    assert c["count"] >= 1 and c["t"] and len(c["total"]) == len(c["t"])
    for i, total in enumerate(c["total"]):
        assert sum(series[i] for series in c["groups"].values()) == total
    assert set(c["groups"]) <= {"udp UNREPLIED", "udp REPLIED", "udp ASSURED"}
    states = fig["states"]
    assert sum(s["entries"] for s in states) == max(c["total"])
    assert sum(s["share"] for s in states) == pytest.approx(1.0)
    for s in states:
        assert s["timeout_sysctl"] == "nf_conntrack_udp_timeout"
        assert s["timeout"] == 30
    # Every entry goes to S; the census the heaviest addresses come from is not always the
    # fullest once the table drops (entries expire between censuses).
    assert fig["destinations"][0][0] == S and fig["destinations"][0][1] <= max(c["total"])
    assert all(n >= 1 for _, n in fig["sources"]) and len(fig["sources"]) <= 20


def test_demand_is_the_max_that_holds(capture: Path, small_figures: dict[str, Any]) -> None:
    demand = small_figures["table"]["demand"]
    unlimited = loop(capture, {**SMALL, "nf_conntrack_max": 0}, seed=3)
    assert demand == unlimited["peak"] > 64
    at = report.compute(
        [capture], report.HostSetup(sysctl={**SMALL, "nf_conntrack_max": demand}, seed=3)
    )
    below = report.compute(
        [capture], report.HostSetup(sysctl={**SMALL, "nf_conntrack_max": demand - 1}, seed=3),
        demand=False,
    )  # fmt: skip
    assert at["table"]["held"] and at["table"]["peak"] == demand and at["table"]["headroom"] == 0
    assert at["table"]["demand"] == demand, "a run that held knows its demand"
    assert not below["table"]["held"] and below["table"]["early_drops"] > 0
    assert below["table"]["demand"] is None
    assert small_figures["table"]["demand_for_alert"] == -(-demand * 10 // 9)
    answers = small_figures["answers"]
    assert answers["Did the table hold?"].startswith("No: ")
    assert (
        f"nf_conntrack_max {demand:,} would have held it" in answers["What max would have held it?"]
    )


def test_demand_where_a_dropped_packet_met_the_peak(examples_dir: Path) -> None:
    """mixed.pcap has two packets that routing drops when the table holds its most: the
    demand is settled by a replay at the peak, and it holds there and not one below."""
    mixed = [examples_dir / "mixed.pcap"]
    small = {"nf_conntrack_buckets": 4}
    fig = report.compute(mixed, report.HostSetup(sysctl={**small, "nf_conntrack_max": 16}, seed=1))
    assert fig["table"]["held"] and fig["dropped"]["total"] == 2
    demand = fig["table"]["demand"]
    assert demand == fig["table"]["peak"] == 10
    for ct_max, held in ((demand, True), (demand - 1, False)):
        setup = report.HostSetup(sysctl={**small, "nf_conntrack_max": ct_max}, seed=1)
        assert report.compute(mixed, setup, demand=False)["table"]["held"] is held
    overflow = report.compute(
        mixed, report.HostSetup(sysctl={**small, "nf_conntrack_max": 6}, seed=1)
    )
    assert overflow["table"]["demand"] == demand


def test_table_full_drops_when_early_drop_finds_nothing(capture: Path) -> None:
    """With the default bucket count the 8 buckets early drop looks at are mostly empty:
    packets are dropped instead, each counted under the kernel's reason."""
    fig = report.compute([capture], report.HostSetup(sysctl={"nf_conntrack_max": 64}, seed=3))
    want = loop(capture, {"nf_conntrack_max": 64}, seed=3)
    full = want["dropped"][report.TABLE_FULL]
    assert full > 0
    assert fig["table"]["table_full_drops"] == full == sum(fig["timeline"]["table_full"])
    assert fig["dropped"]["by_reason"][report.TABLE_FULL] == full
    assert fig["table"]["early_drops"] == want["early_drop"] < full and not fig["table"]["held"]


def test_new_entries_come_from_the_events(capture: Path) -> None:
    fig = report.compute([capture], report.HostSetup(seed=5))
    net = nfct.Net({"nf_conntrack_timestamp": 1}, seed=5)
    events_file = capture.parent / "events.txt"
    net.replay([capture], events_path=events_file)
    lines = events_file.read_text().splitlines()
    assert sum(fig["timeline"]["new_entries"]) == sum("[NEW]" in x for x in lines) > 0
    assert sum(fig["timeline"]["destroyed"]) == sum("[DESTROY]" in x for x in lines)
    assert fig["table"]["held"] and fig["table"]["demand"] == fig["table"]["peak"]
    off = report.compute([capture], report.HostSetup(seed=5), events=False)
    assert off["timeline"]["new_entries"] is None and off["events"] is None


def test_bins_widen_and_keep_totals(capture: Path) -> None:
    fig = report.compute([capture], report.HostSetup(sysctl=SMALL, seed=3), max_bins=4)
    tl = fig["timeline"]
    assert tl["bin"] == 8.0 and len(tl["t"]) <= 4, (tl["bin"], tl["t"])
    assert sum(tl["packets"]) == fig["summary"]["packets"]
    assert sum(tl["early_drops"]) == fig["table"]["early_drops"]
    assert max(x for x in tl["occupancy"] if x is not None) == fig["table"]["peak"]


def test_zones_label_the_census(capture: Path) -> None:
    fig = report.compute([capture], report.HostSetup(zone=7, seed=1))
    assert fig["census"]["zones"]
    assert all(g.endswith(" zone 7") for g in fig["census"]["groups"])
    assert {s["zone"] for s in fig["states"]} == {7}


def test_a_truncated_capture_still_gives_figures(capture: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(capture.read_bytes()[:5000])
    with pytest.raises(nfct.CaptureError) as info:
        report.compute([cut], report.HostSetup(seed=1))
    fig = info.value.figures  # type: ignore[attr-defined]
    assert "truncated" in fig["error"] and fig["summary"]["packets"] > 0
    assert info.value.summary is not None


def test_interrupted_replay_keeps_what_was_done(capture: Path) -> None:
    """A KeyboardInterrupt between captures (as Ctrl-C gives) carries the figures so far."""

    def stop(frames: int, packets: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        report.compute([capture, capture], report.HostSetup(seed=1), progress=stop)
    fig = info.value.figures  # type: ignore[attr-defined]
    assert fig["interrupted"] and fig["summary"]["packets"] == len(list(iter_records(capture)))
    assert "the replay did not finish" in fig["answers"]["What max would have held it?"]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_standard_input_is_read_once_for_the_demand(
    capture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demand of a table that overflowed needs a second replay, and standard input can be
    read once: it is spooled, and the figures are the file's (compressed or not)."""
    want = report.compute([capture], report.HostSetup(sysctl=SMALL, seed=3))
    assert not want["table"]["held"] and want["table"]["demand"] > 64
    for data in (capture.read_bytes(), gzip.compress(capture.read_bytes())):
        _stdin(monkeypatch, data)
        fig = report.compute(["-"], report.HostSetup(sysctl=SMALL, seed=3))
        assert fig == {**want, "captures": ["-"]}


def test_truncated_standard_input_names_itself(
    capture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spooled standard input that ends early: the error names standard input, not the
    temporary file, and a decompression error says why it ended."""
    setup = report.HostSetup(sysctl=SMALL, seed=3)
    for data, start in (
        (capture.read_bytes()[:9000], "standard input: truncated record"),
        (gzip.compress(capture.read_bytes())[:3000], "standard input: gzip data is corrupt"),
    ):
        _stdin(monkeypatch, data)
        with pytest.raises(nfct.CaptureError) as info:
            report.compute(["-"], setup)
        assert str(info.value).startswith(start) and info.value.path == "-"
        fig = info.value.figures  # type: ignore[attr-defined]
        assert fig["error"] == str(info.value) and fig["captures"] == ["-"]
        assert fig["summary"]["packets"] > 0 and fig["table"]["demand"] is None
        assert "did not finish" in fig["answers"]["What max would have held it?"]
        assert info.value.summary is not None


def _without(fig: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in fig.items() if k not in keys}


def test_sweep_equals_serial_runs(capture: Path) -> None:
    grid = {"nf_conntrack_max": [64, 1024], "nf_conntrack_udp_timeout": [5, 30]}
    setup = report.HostSetup(sysctl={"nf_conntrack_buckets": 16}, seed=11)
    runs = report.sweep([capture], grid, setup, workers=2)
    assert [r["sweep"] for r in runs] == [
        {"nf_conntrack_max": 64, "nf_conntrack_udp_timeout": 5},
        {"nf_conntrack_max": 64, "nf_conntrack_udp_timeout": 30},
        {"nf_conntrack_max": 1024, "nf_conntrack_udp_timeout": 5},
        {"nf_conntrack_max": 1024, "nf_conntrack_udp_timeout": 30},
    ]
    for run in runs:
        serial = report.compute([capture], setup.with_sysctl(run["sweep"]))
        assert _without(run, "sweep") == serial
    rows = report.sweep_rows(runs)
    assert [r["held"] for r in rows] == [False, False, True, True]
    # The demand of a timeout is the same whatever the max: the overflowing runs learn it.
    assert rows[0]["demand"] == rows[2]["demand"] < rows[1]["demand"] == rows[3]["demand"]


@pytest.mark.parametrize("workers", [1, 2])
def test_sweep_of_a_truncated_capture(capture: Path, tmp_path: Path, workers: int) -> None:
    """Every run reads what there is; the error and the runs' figures come back (from the
    worker processes too), each run as a run of its own would have ended."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(capture.read_bytes()[:5000])
    setup = report.HostSetup(seed=1)
    with pytest.raises(nfct.CaptureError) as info:
        report.sweep([cut], {"nf_conntrack_max": [64, 1024]}, setup, workers=workers)
    assert "truncated record" in str(info.value) and info.value.path == str(cut)
    runs = info.value.figures  # type: ignore[attr-defined]
    assert [r["sweep"] for r in runs] == [{"nf_conntrack_max": 64}, {"nf_conntrack_max": 1024}]
    for run in runs:
        with pytest.raises(nfct.CaptureError) as alone:
            report.compute([cut], setup.with_sysctl(run["sweep"]), demand=False)
        assert _without(run, "sweep") == alone.value.figures  # type: ignore[attr-defined]
        assert run["error"] == str(info.value)
    proc = run_cli("report", cut, "--json", "--sweep", "nf_conntrack_max=64,1024", "-j", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"nfct: {info.value}"
    assert len(json.loads(proc.stdout)) == 2


SWEEP_CTRL_C = """
import os, signal, sys, time
from multiprocessing import forkserver
from nfct import report

t0 = time.monotonic()
marks = {}

def done(i, n, values):
    if i == 1:
        marks["run"] = time.monotonic() - t0
        marks["kill"] = time.monotonic()
        os.killpg(os.getpgrp(), signal.SIGINT)  # as Ctrl-C on a terminal: the workers too

grid = {"nf_conntrack_max": [100, 200, 300, 400, 500, 600]}
try:
    report.sweep([sys.argv[1]], grid, report.HostSetup(seed=1), workers=2, on_done=done)
    print("not interrupted")
except KeyboardInterrupt as e:
    stopped = time.monotonic() - marks["kill"]
    server = forkserver._forkserver._forkserver_pid
    workers = []
    for stat in os.listdir("/proc"):
        try:
            with open(f"/proc/{stat}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == server and fields[0] != "Z":
            workers.append(stat)
    print(len(e.figures), marks["run"], stopped, workers)
"""


def test_ctrl_c_stops_a_sweep_at_once(tmp_path: Path) -> None:
    """Ctrl-C during a parallel sweep: the workers ignore it (no traceback of theirs), the
    parent terminates them instead of waiting for the runs queued and running, and the runs
    done come with the KeyboardInterrupt."""
    path = tmp_path / "many.pcap"
    recs = [
        (T0 + i * 0.001, P.udp(f"10.{i % 7}.{i % 200}.{1 + i % 250}", S, 1024 + i % 60000, 53))
        for i in range(60_000)
    ]
    write_pcap(path, recs)
    proc = subprocess.run(
        [sys.executable, "-c", SWEEP_CTRL_C, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,
        check=False,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    n, run, stopped, workers = proc.stdout.split(maxsplit=3)
    assert 1 <= int(n) < 6
    assert float(stopped) < float(run), "stopped well before another run could end"
    assert workers.strip() == "[]", "no worker left running"


def test_report_through_a_host_with_actions(examples_dir: Path) -> None:
    """nfct report takes replay's host options and --at: the figures are those of the same
    replay (the table at the end), a sweep's workers run the actions too, and an action a
    worker cannot get is refused before any run."""
    host, cap = examples_dir / "host-kube-proxy.json", examples_dir / "kube.pcapng"
    args = [cap, "--host", host, "--iif", "eth0", "--seed", "1", "--at", "3:delete:proto=tcp"]
    replayed = run_cli("replay", *args)
    assert replayed.returncode == 0, replayed.stderr
    entries = len(replayed.stdout.splitlines())
    proc = run_cli("report", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    fig = json.loads(proc.stdout)
    without = run_cli("replay", *args[:-2])  # no --at
    assert fig["table"]["final"] == entries < len(without.stdout.splitlines())
    assert fig["settings"]["after_first"] == [[3.0, "delete:proto=tcp"]]
    assert fig["settings"]["iif"] == "eth0" and fig["settings"]["host"] == str(host)
    assert "host file: net.netfilter.nf_hooks_lwtunnel is not modelled" in proc.stderr
    swept = run_cli("report", *args, "--json", "--sweep", "nf_conntrack_max=2,8", "-j", "2")
    assert swept.returncode == 0, swept.stderr
    runs = json.loads(swept.stdout)
    for run in runs:
        assert run["table"]["final"] == entries and run["settings"]["after_first"]
    first = next(iter_records(cap))[0]
    setup = report.HostSetup(
        host=str(host), iif="eth0", seed=1, at=((first + 3, lambda n: n.delete(proto="tcp")),)
    )
    alone = report.compute([cap], setup)
    assert alone["table"]["final"] == entries
    with pytest.raises(nfct.NfctValueError, match="cannot go to a worker process"):
        report.sweep([cap], {"nf_conntrack_max": [2, 8]}, setup, workers=2)
    serial = report.sweep([cap], {"nf_conntrack_max": [2, 8]}, setup, workers=1)
    assert [r["table"]["final"] for r in serial] == [entries, entries]
    bad = run_cli("report", cap, "--json", "--at", "1:nope")
    assert bad.returncode == 2 and bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == [
        "nfct: --at '1:nope': ACTION is delete[:FILTERS], flush, update:SETTINGS[,FILTERS] "
        "or ruleset:FILE"
    ]


def _die(net: nfct.Net) -> None:
    """An action that ends its worker process at once (as the OOM killer would)."""
    os._exit(3)


def test_a_worker_that_dies_is_one_error(capture: Path) -> None:
    setup = report.HostSetup(seed=1, at=((T0 + 1, _die),))
    with pytest.raises(nfct.NfctError, match="a worker process ended abruptly"):
        report.sweep([capture], {"nf_conntrack_max": [64, 128]}, setup, workers=2)


def test_sweep_rejects_what_is_not_a_sysctl(capture: Path) -> None:
    with pytest.raises(nfct.NfctValueError, match="not a conntrack sysctl"):
        report.sweep([capture], {"nf_conntrack_maxx": [1]}, workers=1)


def test_timeout_sysctls() -> None:
    assert report.timeout_sysctl("tcp", "ESTABLISHED") == "nf_conntrack_tcp_timeout_established"
    assert report.timeout_sysctl("tcp", "SYN_SENT2") == "nf_conntrack_tcp_timeout_syn_sent"
    assert report.timeout_sysctl("udp", "ASSURED") == "nf_conntrack_udp_timeout_stream"
    assert report.timeout_sysctl("udp", "UNREPLIED") == "nf_conntrack_udp_timeout"
    assert report.timeout_sysctl("sctp", "HEARTBEAT_SENT") == (
        "nf_conntrack_sctp_timeout_heartbeat_sent"
    )
    assert report.timeout_sysctl("icmpv6", "REPLIED") == "nf_conntrack_icmpv6_timeout"
    assert report.timeout_sysctl("gre", "ASSURED") == "nf_conntrack_gre_timeout_stream"
    assert report.timeout_sysctl("proto 50", "UNREPLIED") == "nf_conntrack_generic_timeout"
    for proto, states in {
        "tcp": ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
                "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"],
        "sctp": ["NONE", "CLOSED", "COOKIE_WAIT", "COOKIE_ECHOED", "ESTABLISHED",
                 "SHUTDOWN_SENT", "SHUTDOWN_RECD", "SHUTDOWN_ACK_SENT", "HEARTBEAT_SENT"],
    }.items():  # fmt: skip
        for state in states:
            assert report.timeout_sysctl(proto, state) in nfct.SYSCTL_NAMES, (proto, state)


# --- rendering and the command ---------------------------------------------------------------


def test_html_is_self_contained(small_figures: dict[str, Any]) -> None:
    pytest.importorskip("matplotlib")
    page = report.render_html(small_figures)
    assert page.startswith("<!DOCTYPE html>")
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 6 and all(i.startswith("data:image/png;base64,") for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing to fetch"
    assert "Did the table hold?" in page and "udp UNREPLIED" in page


def test_report_command_html_and_json(
    capture: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "r.html"
    args = ["report", str(capture), "--seed", "3", "--sysctl", "nf_conntrack_max=64"]
    assert main([*args, "--sysctl", "nf_conntrack_buckets=16", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"report written to {out}" in err and "Did the table hold? No:" in err
    assert "\r" not in err, "no progress display when stderr is not a terminal"
    assert out.read_text().count("data:image/png;base64,") == 6
    assert main([*args, "--sysctl", "nf_conntrack_buckets=16", "--json"]) == 0
    fig = json.loads(capsys.readouterr().out)
    assert fig["table"]["early_drops"] > 0 and fig["settings"]["seed"] == 3


def test_report_command_sweep(capture: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep.html"
    proc = run_cli(
        "report", capture, "--seed", "3", "--sysctl", "nf_conntrack_buckets=16",
        "--sweep", "nf_conntrack_max=64,1024", "-o", out, "--json", "--jobs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)
    assert [r["sweep"]["nf_conntrack_max"] for r in runs] == [64, 1024]
    page = out.read_text()
    assert "What-if: the runs side by side" in page and page.count("<details") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "nf_conntrack_maxx=1"], "is not a conntrack sysctl"),
        (["--sweep", "nf_conntrack_max=a"], "is not an integer"),
        (["--sweep", "nf_conntrack_max=1", "--sweep", "nf_conntrack_max=2"], "given twice"),
        (["-o", "/nonexistent/dir/r.html"], "no such directory"),
        (["--sysctl", "nf_conntrack_nope=1"], "nf_conntrack_nope"),
        (["--jobs", "0"], "--jobs at least 1"),
        (["--census-every", "nan"], "--census-every must be a finite number"),
        (["--seed", "-1"], "argument --seed: -1 is not in 0..18446744073709551615"),
        (["--zone", "70000"], "argument --zone: 70000 is not in 0..65535"),
        (["--mtu", "-5"], "argument --mtu: -5 is not in 0..65535"),
        (["--evictions", "1e3"], "argument --evictions: '1e3' is not an integer"),
        (["--at", "x:flush"], "--at 'x:flush': 'x' is not a time in seconds"),
        (["--iif", "eth0"], "iif names an interface of a host: give the Net a host file"),
    ],
)
def test_report_bad_input_is_one_line(capture: Path, args: list[str], message: str) -> None:
    proc = run_cli("report", capture, "--json", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_report_missing_capture(tmp_path: Path) -> None:
    proc = run_cli("report", tmp_path / "nope.pcap", "--json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"nfct: {tmp_path / 'nope.pcap'}")


def test_missing_matplotlib_is_one_line(
    capture: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main(["report", str(capture), "-o", "x.html"]) == 2
    err = capsys.readouterr().err
    assert err == "nfct: the HTML report needs matplotlib: pip install 'nfct[report]'\n"
    with pytest.raises(nfct.MissingExtraError, match=r"nfct\[report\]"):
        report.render_html({})
