"""Many captures replayed serially and on a local Dask cluster (nfct.cluster), and the memory a
Net takes per entry: the figures of benches/RESULTS.md and of docs/cluster.md's plan.

    python benches/cluster_bench.py [--workers N] [--settings K] [--rounds R] [--json FILE]

The units are the shipped captures and, where present, the shared ones (../shared/pcaps or
$NFCT_SHARED_PCAPS), at least 16 (the shipped ones are repeated where the shared are absent),
each under K settings (nf_conntrack_max values; K=1: the defaults). For each round: the
serial run (``replay_many(cluster=None)``: the same work in this process, one unit after the
other), then the cluster run (``cluster="local"``: start, replay, stop), then the same units
again on a cluster already up (the replays alone). Wall time, the CPU seconds of this process
and of every process the cluster started, and the load average before and after; the results
are checked equal. Then a Net is filled with UDP flows and its resident memory per entry
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def generated(tmp: Path, packets: int) -> list[str]:
    """16 units over 4 generated captures (benches/replay_bench.py's short flows, TCP and
    DNS, ``packets`` each, different address ranges), each listed 4 times under a name of
    its own (a symbolic link)."""
    sys.path.insert(0, str(REPO / "benches"))
    from replay_bench import write_long, write_short

    names = []
    for i in range(4):
        path = tmp / f"gen{i}.pcap"
        if i % 2:
            write_long(path, packets, 2000 * (i + 1))
        else:
            write_short(path, packets)
        for k in range(4):
            link = tmp / f"gen{i}-{k}.pcap"
            link.symlink_to(path)
            names.append(str(link))
    return names


def units(k: int) -> tuple[list[str], list[dict[str, int]]]:
    caps = sorted(str(p) for p in (REPO / "examples").glob("*.pcap"))
    shared = Path(os.environ.get("NFCT_SHARED_PCAPS", REPO.parent / "shared" / "pcaps"))
    if shared.is_dir():
        caps += sorted(str(p) for p in shared.iterdir() if p.suffix in (".pcap", ".pcapng"))
    while len(caps) < 16:
        caps += caps[: 16 - len(caps)]
    settings = [{}] if k == 1 else [{"nf_conntrack_max": 2**i} for i in range(4, 4 + k)]
    return caps, settings


def cpu_tree() -> float:
    """CPU seconds of this process, of every descendant still running and of the children
    that ended and were waited for (a local cluster's worker processes, once stopped)."""
    import psutil

    me = psutil.Process()
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ended.ru_utime + ended.ru_stime
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run(label: str, fn: Any) -> tuple[dict[str, Any], Any]:
    load0 = os.getloadavg()
    c0, t0 = cpu_tree(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - t0, cpu_tree() - c0
    return {
        "run": label,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 2),
        "load_before": [round(x, 2) for x in load0],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }, out


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _udp(i: int) -> bytes:
    """A UDP packet of flow i (10.x.y.z:port -> 192.0.2.1:53), checksum of the IP header set."""
    import struct

    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    payload = b"x" * 8
    udph = struct.pack("!HHHH", 1024 + i % 60000, 53, 8 + len(payload), 0)
    total = 20 + len(udph) + len(payload)
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0, src, b"\xc0\x00\x02\x01")
    c = sum(struct.unpack("!10H", iph))
    c = (c & 0xFFFF) + (c >> 16)
    c = (c & 0xFFFF) + (c >> 16)
    return iph[:10] + struct.pack("!H", ~c & 0xFFFF) + iph[12:] + udph + payload


def entry_memory(n: int = 500_000) -> dict[str, Any]:
    """Resident memory of a Net per entry: a capture of n one-packet UDP flows replayed into
    a Net with no limit, in a fresh process (RSS after the Net is made, and after the replay:
    no Python object per packet is made, so the growth is the table's)."""
    import subprocess
    import tempfile

    from nfct.pcap import write_pcap

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.pcap"
        write_pcap(path, [(1000.0 + i * 1e-5, _udp(i)) for i in range(n)])
        code = (
            "import json, nfct, sys; sys.path.insert(0, sys.argv[2]);"
            "from cluster_bench import _rss;"
            "net = nfct.Net({'nf_conntrack_max': 0}, seed=1); a = _rss();"
            "net.replay([sys.argv[1]], clock='frozen'); b = _rss();"
            "print(json.dumps([a, b, len(net)]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path), str(REPO / "benches")],
            capture_output=True,
            text=True,
            check=True,
        )
    a, b, entries = json.loads(out.stdout)
    return {
        "entries": entries,
        "rss_net_mib": round(a / 2**20, 1),
        "rss_filled_mib": round(b / 2**20, 1),
        "bytes_per_entry": round((b - a) / entries),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--settings", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--generated",
        type=int,
        default=0,
        metavar="PACKETS",
        help="replay 16 units over 4 generated captures of PACKETS packets instead",
    )
    a = ap.parse_args()
    import distributed

    from nfct import cluster

    caps, settings = units(a.settings)
    if a.generated:
        import tempfile

        tmp = Path(tempfile.mkdtemp(prefix="nfct-cluster-bench-"))
        caps = generated(tmp, a.generated)
    n = len(caps) * len(settings)
    print(
        f"# {n} units ({len(caps)} captures x {len(settings)} settings), "
        f"{a.workers} workers, {os.cpu_count()} cores",
        flush=True,
    )
    kw: dict[str, Any] = {"sysctl": settings, "seed": 1, "tables": ["entries"]}
    results = []
    drop = ["seconds", "worker"]
    for _ in range(a.rounds):
        m, serial = run("serial", lambda: cluster.replay_many(caps, cluster=None, **kw))
        results.append(m)
        print(json.dumps(m), flush=True)
        m, there = run(
            "cluster (start, replay, stop)",
            lambda: cluster.replay_many(caps, cluster="local", workers=a.workers, **kw),
        )
        results.append(m)
        print(json.dumps(m), flush=True)
        assert there.units.drop(drop).equals(serial.units.drop(drop))
        assert there["entries"].equals(serial["entries"])
        t0 = time.perf_counter()
        local = distributed.LocalCluster(
            n_workers=a.workers,
            threads_per_worker=1,
            dashboard_address="127.0.0.1:0",
            silence_logs=40,
        )
        client = distributed.Client(local)
        client.run(lambda: __import__("nfct.cluster"))  # the workers' imports, done
        started = time.perf_counter() - t0
        try:
            m, warm = run(
                "cluster (up already)",
                lambda c=client: cluster.replay_many(caps, cluster=c, **kw),
            )
        finally:
            client.close()
            local.close()
        m["start_s"] = round(started, 2)
        results.append(m)
        print(json.dumps(m), flush=True)
        assert warm.units.drop(drop).equals(serial.units.drop(drop))
        worker_s = sum(serial.units["seconds"].to_pylist())
        packets = sum(serial.units["packets"].to_pylist())
        print(f"# serial: {packets} packets, the units' own time {worker_s:.2f} s", flush=True)
    if a.generated:
        import shutil

        shutil.rmtree(tmp)
    mem = entry_memory()
    print(json.dumps({"run": "memory per entry", **mem}), flush=True)
    results.append({"run": "memory per entry", **mem})
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
