"""Ray against Dask distributed on this machine: what nfct.cluster's choice of engine rests on.

For each engine installed (``pip install ray`` / ``pip install 'dask[distributed]'``), in a
fresh process each: the import, the start of a local cluster of two worker processes (until
a first task has come back), the round trip of 500 tasks that do nothing, a task returning an
Arrow table of 10^5 and of 10^6 rows, the shipped and shared captures replayed one task
each, and the shutdown; with the CPU seconds of the driver and every process the engine
started, and the memory they held (summed RSS) with the cluster up and idle.

    python benches/cluster_engines.py [dask|ray ...] [--rounds N]

Prints one JSON object per engine and round; benches/RESULTS.md has a run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def captures() -> list[str]:
    found = sorted(str(p) for p in (REPO / "examples").glob("*.pcap"))
    shared = Path(os.environ.get("NFCT_SHARED_PCAPS", REPO.parent / "shared" / "pcaps"))
    if shared.is_dir():
        found += sorted(str(p) for p in shared.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return found


def noop(i: int) -> int:
    return i


def table(n: int) -> Any:
    import pyarrow as pa

    return pa.table({"a": pa.array(range(n), type=pa.int64()), "b": pa.array([1.5] * n)})


def replay(path: str) -> dict[str, int]:
    import nfct

    return nfct.Net(seed=1).replay([path]).to_dict()


def tree_usage() -> tuple[float, float]:
    """CPU seconds and RSS (MiB) of this process and all its descendants, now."""
    import psutil

    me = psutil.Process()
    cpu = rss = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
        except psutil.Error:
            pass
    return cpu, rss / 2**20


class Dask:
    def start(self) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
        )
        self.client = Client(self.cluster)

    def map(self, f: Any, xs: list[Any]) -> list[Any]:
        return list(self.client.gather(self.client.map(f, xs, pure=False)))

    def stop(self) -> None:
        self.client.close()
        self.cluster.close()


class Ray:
    def start(self) -> None:
        import ray

        self.ray = ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    def map(self, f: Any, xs: list[Any]) -> list[Any]:
        rf = self.ray.remote(f)
        return list(self.ray.get([rf.remote(x) for x in xs]))

    def stop(self) -> None:
        self.ray.shutdown()


def measure(engine: str) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine, "load_before": os.getloadavg()[0]}
    t = time.perf_counter()
    e: Any = Dask() if engine == "dask" else Ray()
    if engine == "dask":
        import distributed  # noqa: F401
    else:
        import ray  # noqa: F401
    out["import_s"] = time.perf_counter() - t
    t = time.perf_counter()
    e.start()
    e.map(noop, [0, 1])
    out["start_s"] = time.perf_counter() - t
    cpu0, rss = tree_usage()
    out["idle_rss_mib"] = rss
    e.map(noop, list(range(50)))  # warm
    t = time.perf_counter()
    e.map(noop, list(range(500)))
    out["task_ms"] = (time.perf_counter() - t) / 500 * 1000
    e.map(table, [10])
    for n in (100_000, 1_000_000):
        t = time.perf_counter()
        e.map(table, [n])
        out[f"table_{n}_s"] = time.perf_counter() - t
    caps = captures()
    t = time.perf_counter()
    e.map(replay, caps)
    out["replay_captures"] = len(caps)
    out["replay_s"] = time.perf_counter() - t
    cpu1, _ = tree_usage()
    out["cpu_s_after_start"] = cpu1 - cpu0
    t = time.perf_counter()
    e.stop()
    out["stop_s"] = time.perf_counter() - t
    out["load_after"] = os.getloadavg()[0]
    return out


def serial() -> dict[str, Any]:
    caps = captures()
    t = time.perf_counter()
    for c in caps:
        replay(c)
    return {"engine": "serial", "replay_captures": len(caps), "replay_s": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("engines", nargs="*", default=["dask", "ray"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(serial() if a.one == "serial" else measure(a.one)))
        return
    for _ in range(a.rounds):
        for engine in ["serial", *a.engines]:
            r = subprocess.run(
                [sys.executable, __file__, "--one", engine],
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            print(lines[-1] if lines else f"{engine}: failed: {r.stderr[-500:]}", flush=True)


if __name__ == "__main__":
    main()
