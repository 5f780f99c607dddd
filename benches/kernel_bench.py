"""What a run of the live-kernel harness (nfct.kernel) costs: creating and removing its
namespace, ``run_capture`` on each shared capture, and what ``per_packet=True`` adds per packet.

Usage (as root, with nft, conntrack and ip): ``python benches/kernel_bench.py [--pcaps DIR]
[--per-packet NAME]...``. DIR defaults to $NFCT_SHARED_PCAPS, else ../shared/pcaps beside the
repository.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from nfct import kernel

DEFAULT_PCAPS = Path(__file__).resolve().parents[2] / "shared" / "pcaps"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pcaps", type=Path, default=None, help="the shared capture directory")
    ap.add_argument(
        "--per-packet",
        action="append",
        default=None,
        metavar="NAME",
        help="captures to time with and without per_packet (repeatable)",
    )
    args = ap.parse_args()
    pcaps = args.pcaps or Path(os.environ.get("NFCT_SHARED_PCAPS") or DEFAULT_PCAPS)
    per_packet = args.per_packet or ["pcapplusplus-many-protocols.pcap", "ndpi-reddit.pcap"]
    kernel.check_available()

    setup = []
    for _ in range(5):
        t0 = time.perf_counter()
        with kernel.KernelLab():
            pass
        setup.append(time.perf_counter() - t0)
    runs = ", ".join(f"{x:.3f}" for x in setup)
    print(f"KernelLab open and close: median {statistics.median(setup):.3f} s ({runs})")

    times = []
    for path in sorted(pcaps.glob("*.pcap*")):
        n = sum(1 for _ in kernel.iter_capture_ip(path))
        t0 = time.perf_counter()
        result = kernel.run_capture(path)
        dt = time.perf_counter() - t0
        times.append(dt)
        writing = result.replay_seconds
        print(f"  {path.name:<40} {n:>6} packets  {dt:6.3f} s  (writing {writing:.3f} s)")
    if times:
        print(
            f"run_capture: median {statistics.median(times):.3f} s, min {min(times):.3f}, "
            f"max {max(times):.3f}, total {sum(times):.1f} s for {len(times)} captures"
        )

    for name in per_packet:
        path = pcaps / name
        if not path.is_file():
            print(f"per_packet: {path} not found")
            continue
        n = sum(1 for _ in kernel.iter_capture_ip(path))
        t0 = time.perf_counter()
        kernel.run_capture(path)
        t1 = time.perf_counter()
        kernel.run_capture(path, per_packet=True)
        t2 = time.perf_counter()
        print(
            f"per_packet on {name} ({n} packets): {t1 - t0:.3f} s -> {t2 - t1:.3f} s, "
            f"{(t2 - t1 - (t1 - t0)) / n * 1e6:.0f} us per packet"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
