"""What two cores can give a replay at most, on e2e_bench's capture (issue #16).

`nfct replay --threads 2` shares one table between its workers, as the kernel's CPUs do, and
reads the capture once, handing each worker its flows. This bench separates the two costs.
e2e_bench's flows are split offline in two halves (every other TCP connection and UDP pair,
each packet at its time in the whole capture), and timed:

* end to end, as processes: one `nfct replay` on the whole capture (default sysctls), one
  with `--threads 2`, and two processes started together on a half each, with half the
  table (`nf_conntrack_max` and `nf_conntrack_buckets` 131,072): nothing shared at all;
* in-process (`Net.replay`, on the frozen clock so that no clock is shared either): the
  whole capture on one thread and on two, the two halves replayed at once by two Python
  threads into **one** `Net` (a shared table, no reading or hand-over shared), and into
  two `Net`s of half the table (nothing shared).

The halves are made offline, so their figures bound every design rather than measure one.

Usage: `python benches/threads_ceiling.py [--repeat R] [--dir D]` (the capture and its
halves are written to D on the first run).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_bench import write_capture
from replay_bench import nfct_command

HALF = ["--sysctl", "nf_conntrack_max=131072", "--sysctl", "nf_conntrack_buckets=131072"]
HALF_SYSCTLS = {"nf_conntrack_max": 131072, "nf_conntrack_buckets": 131072}


def timed(cmds: list[list[str]]) -> float:
    """Wall seconds from starting every command together until the last one ends."""
    t0 = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen(c, **quiet) for c in cmds]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"threads_ceiling: {' '.join(p.args)} failed")
    return time.perf_counter() - t0


def in_process(whole: Path, halves: list[Path]) -> dict[str, float]:
    """One round of the in-process runs, wall seconds each (the tables made beforehand)."""
    import nfct

    def at_once(nets: list[nfct.Net]) -> float:
        ts = [
            threading.Thread(target=n.replay, args=([str(h)],), kwargs={"clock": "frozen"})
            for n, h in zip(nets, halves, strict=True)
        ]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0

    out = {}
    for name, threads in (("one thread", 1), ("threads=2", 2)):
        net = nfct.Net()
        t0 = time.perf_counter()
        net.replay([str(whole)], clock="frozen", threads=threads)
        out[name] = time.perf_counter() - t0
    shared = nfct.Net()
    out["the halves at once, one Net"] = at_once([shared, shared])
    out["the halves at once, two Nets"] = at_once([nfct.Net(HALF_SYSCTLS), nfct.Net(HALF_SYSCTLS)])
    return out


def report(title: str, times: dict[str, list[float]]) -> None:
    base = statistics.median(next(iter(times.values())))
    print(f"{title:36} {'median s':>9} {'first / this':>13}")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:34} {med:>9.3f} {base / med:>13.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    d = args.dir or Path(tempfile.mkdtemp(prefix="nfct-ceiling-"))
    d.mkdir(parents=True, exist_ok=True)
    whole = d / "e2e.pcap"
    halves = [d / "e2e-half0.pcap", d / "e2e-half1.pcap"]
    if not whole.exists():
        write_capture(whole)
    for h, half in enumerate(halves):
        if not half.exists():
            write_capture(half, lambda _kind, i, h=h: i % 2 == h)
    cmd = [*nfct_command(), "replay", "--output", "stats"]
    runs = {
        "one process, one thread": [[*cmd, str(whole)]],
        "one process, --threads 2": [[*cmd, str(whole), "--threads", "2"]],
        "two processes, a half each": [[*cmd, str(h), *HALF] for h in halves],
    }
    e2e: dict[str, list[float]] = {k: [] for k in runs}
    inproc: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for k, cmds in runs.items():
            e2e[k].append(timed(cmds))
        for k, t in in_process(whole, halves).items():
            inproc.setdefault(k, []).append(t)
    report("end to end (processes)", e2e)
    report("in-process, frozen clock", inproc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
