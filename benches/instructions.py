"""Instructions per packet, counted by valgrind's callgrind: a measure load cannot move.

On fixed generated captures (replay_bench's generators: ``short``, 20,000 packets of short TCP
and UDP flows; ``long``, 20,000 packets of 128 long UDP flows; ``full``, 320,000 packets of
short flows into a table of at most 49,152 entries, which fills: early drop runs, and past
32,768 entries each batch's lookups are prefetched, as on the captures users ask about
capacity), it counts the instructions executed inside

* ``Net.replay`` (one thread, frozen clock, default sysctls), and
* ``Net.conntrack_batch`` (the same packets in one buffer),

each divided by the packets, as callgrind attributes them to the Rust method (inclusive), so
the interpreter's start-up and the import are not counted. ``--check`` compares with the
baseline in ``benches/instructions.json`` and exits 1 when any count grew by more than 10%
(CI runs this: ``tests/test_instructions.py``); ``--record`` writes the baseline (do that
deliberately, saying why in the commit).

Usage: ``python benches/instructions.py [--check | --record]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "instructions.json"
PACKETS = 20_000
TOLERANCE = 0.10

FULL_PACKETS, FULL_MAX = 320_000, 49_152

# What runs under valgrind: argv[1] capture, argv[2] "replay" or "batch", argv[3] the
# table's nf_conntrack_max (0: the default).
CHILD = """
import sys
import numpy as np
import nfct
from nfct.pcap import iter_records
cap, what, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
net = nfct.Net({"nf_conntrack_max": limit} if limit else None, seed=1)
if what == "replay":
    net.replay([cap], clock="frozen")
else:
    pkts = [frame[14:] for _ts, frame in iter_records(cap)]
    offsets = np.zeros(len(pkts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pkts], out=offsets[1:])
    ts = np.full(len(pkts), 1.0)
    net.conntrack_batch(b"".join(pkts), offsets, ts)
"""

METHOD = {"replay": "Net::__pymethod_replay__", "batch": "Net::__pymethod_conntrack_batch__"}


def captures(tmp: Path) -> dict[str, tuple[Path, int, int]]:
    """name: (capture, packets, nf_conntrack_max or 0)."""
    sys.path.insert(0, str(HERE))
    from replay_bench import write_long, write_short

    short, long, full = tmp / "short.pcap", tmp / "long.pcap", tmp / "full.pcap"
    write_short(short, PACKETS)
    write_long(long, PACKETS, 128)
    write_short(full, FULL_PACKETS)
    return {
        "short": (short, PACKETS, 0),
        "long": (long, PACKETS, 0),
        "full": (full, FULL_PACKETS, FULL_MAX),
    }


def count(cap: Path, what: str, tmp: Path, limit: int = 0) -> int:
    """Instructions inside the Rust method for one run, per callgrind (inclusive)."""
    out = tmp / f"cg.{cap.stem}.{what}"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-c",
            CHILD,
            str(cap),
            what,
            str(limit),
        ],
        check=True,
        capture_output=True,
    )
    ann = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in ann.splitlines():
        if line.rstrip().endswith(METHOD[what]) or f"{METHOD[what]} " in line:
            m = re.match(r"\s*([\d,]+)", line)
            if m:
                return int(m.group(1).replace(",", ""))
    raise RuntimeError(f"{METHOD[what]} not found in callgrind's output for {cap.name}")


def measure() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nfct-instr-") as d:
        tmp = Path(d)
        caps = captures(tmp)
        return {
            f"{name} {what}": round(count(path, what, tmp, limit) / packets, 1)
            for name, (path, packets, limit) in caps.items()
            for what in ("replay", "batch")
        }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument(
        "--check", action="store_true", help="compare with the baseline (exit 1 on growth)"
    )
    g.add_argument("--record", action="store_true", help="write the baseline")
    args = ap.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        print("valgrind is not installed", file=sys.stderr)
        return 2
    got = measure()
    base = json.loads(BASELINE.read_text())["per_packet"] if BASELINE.exists() else {}
    worse = []
    print(f"{'':16} {'instr/packet':>13} {'baseline':>10} {'ratio':>7}")
    for k, v in got.items():
        b = base.get(k)
        ratio = v / b if b else float("nan")
        print(f"{k:16} {v:>13,.1f} {b if b else '-':>10} {ratio:>7.3f}")
        if b and ratio > 1 + TOLERANCE:
            worse.append(k)
    if args.record:
        doc = {
            "per_packet": got,
            "packets": {"short": PACKETS, "long": PACKETS, "full": FULL_PACKETS},
            "full_nf_conntrack_max": FULL_MAX,
            "note": "instructions per packet inside Net.replay / Net.conntrack_batch "
            "(callgrind, inclusive)",
            "python": sys.version.split()[0],
        }
        BASELINE.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"recorded {BASELINE}")
    if args.check and worse:
        print(f"more than {TOLERANCE:.0%} over the baseline: {', '.join(worse)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
