"""GRE (spec §10.2) with the live kernel as the judge, beyond what the GRE scenarios
(tests/scenarios/gre.py, run by test_scenarios.py) check: the scenario "GRE versions and keys"
through the running kernel and through nfct's replay must also agree on the
/proc/net/nf_conntrack lines, the `conntrack -L -o extended` lines byte for byte (timeouts
included: the run takes milliseconds) and the event log."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from helpers import count_run, timed
from nfct import Net
from nfct.compare import compare_classes, compare_stats
from nfct.kernel import KernelLab
from nfct.verify import write_pcap
from scenarios.gre import PACKETS

NfctRun = tuple[list[str], list[str], list[str], list[str], Net]


def _nfct(pkts: list[tuple[bytes, float]]) -> NfctRun:
    """nfct's replay: -L and /proc lines (sorted), events, per-packet classes, the table."""
    net = Net()
    with tempfile.TemporaryDirectory(prefix="nfct-gre-") as tmp:
        cap, classes, events = Path(tmp) / "gre.pcap", Path(tmp) / "c.txt", Path(tmp) / "e.txt"
        write_pcap(cap, pkts)
        net.replay([str(cap)], clock="capture", packets_path=str(classes), events_path=str(events))
        cls = [line.split()[1] for line in classes.read_text().splitlines()]
        ev = events.read_text().splitlines()
    return (
        sorted(net.dump("extended").splitlines()),
        sorted(net.dump("proc").splitlines()),
        ev,
        cls,
        net,
    )


def test_gre_versions_and_keys_agree_line_for_line() -> None:
    with KernelLab() as lab:
        lab.events_start()
        t0 = time.time()
        for pkt in PACKETS:
            lab.send(pkt, classify=True)
        _n, _e, _first, k_classes = lab.summary()
        # A listing within the same jiffy as the last packet shows a fresh 180 s entry as 180,
        # one a little later as 179 (nfct lists "an instant after" its last packet): wait
        # past a jiffy so the kernel's listing is deterministic.
        time.sleep(0.05)
        k_lines = sorted(lab.lines())
        k_proc = sorted(lab.read_file("/proc/net/nf_conntrack").splitlines())
        k_stats = lab.stats()
        elapsed = time.time() - t0
        time.sleep(0.2)
        k_events = [e.split("\t", 1)[-1] for e in lab.events_stop()]
    # Byte-for-byte timeouts need the kernel run to stay within its first second.
    assert elapsed < 0.9, elapsed
    pkts = timed(*PACKETS)
    n_lines, n_proc, n_events, n_classes, net = _nfct(pkts)
    res = compare_classes(k_classes, n_classes)
    compare_stats(k_stats, net.stats, result=res)
    count_run(packets=len(PACKETS), classes=res.packets, entries=len(k_lines))
    assert res.agree, res.render()
    assert n_lines == k_lines
    assert n_proc == k_proc
    assert n_events == k_events
    # What the kernel showed, so that a change on both sides is noticed too.
    assert k_classes[5:10] == ["new", "new", "new", "new", "invalid"], k_classes
    assert k_stats["invalid"] == 1
    v1 = [x for x in k_lines if "10.2.0.4" in x]
    assert len(v1) == 3 and all("[UNREPLIED]" in x for x in v1), v1
    assert any("srckey=0x0 dstkey=0x1111 [UNREPLIED]" in x for x in v1)
    assert any("srckey=0x0 dstkey=0x4444 [UNREPLIED]" in x for x in k_lines)
    assert all("timeout=30, stream_timeout=180 " in x for x in k_proc)
