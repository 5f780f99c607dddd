"""`Net.conntrack_batch` throughput: the IP packets of replay_bench's short capture (half TCP,
half UDP short flows), handed over in buffers of ``--chunk`` packets with numpy offsets and
timestamps, against a Python loop of ``nfct.ip_rcv(net, nfct.Skb(...))`` on the same packets.

Usage: ``python benches/batch_bench.py [--packets N] [--chunk C] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import nfct
from nfct.pcap import iter_records

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_bench import write_short


def ip_packets(path: Path) -> list[bytes]:
    """The IP packets of the capture's Ethernet frames."""
    return [frame[14:] for _ts, frame in iter_records(path)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nfct-batch-bench-") as tmp:
        path = Path(tmp) / "short.pcap"
        write_short(path, args.packets)
        pkts = ip_packets(path)
    chunks = []
    for i in range(0, len(pkts), args.chunk):
        part = pkts[i : i + args.chunk]
        offsets = np.zeros(len(part) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in part])
        chunks.append((b"".join(part), offsets, np.full(len(part), 1.0)))
    best = 0.0
    for _ in range(args.repeat):
        net = nfct.Net({"nf_conntrack_max": 0}, seed=1)
        t = time.perf_counter()
        for buf, offsets, ts in chunks:
            net.conntrack_batch(buf, offsets, ts)
        best = max(best, len(pkts) / (time.perf_counter() - t))
    print(f"{len(pkts)} packets, chunks of {args.chunk}, best of {args.repeat}")
    print(f"  conntrack_batch                       {best / 1e6:7.3f} Mpps")
    n = min(len(pkts), 200_000)
    best_loop = 0.0
    for _ in range(args.repeat):
        net = nfct.Net({"nf_conntrack_max": 0}, seed=1)
        rcv, skb = nfct.ip_rcv, nfct.Skb
        t = time.perf_counter()
        for p in pkts[:n]:
            rcv(net, skb(p, 1.0))
        best_loop = max(best_loop, n / (time.perf_counter() - t))
    print(f"  ip_rcv(net, Skb(...)) loop ({n} pkts) {best_loop / 1e6:7.3f} Mpps")
    print(f"  ratio                                 {best / best_loop:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
