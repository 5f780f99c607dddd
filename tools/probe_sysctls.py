"""Observe which values the running kernel accepts for each /proc/sys/net/netfilter conntrack
sysctl, and what it reads back: the ground truth of rust/sysctl.rs's ranges (as root).

Per-namespace sysctls are probed in a private network namespace (`unshare -n`), so nothing of
the host changes. The global ones (nf_conntrack_max, nf_conntrack_buckets,
nf_conntrack_expect_max: read-only in a child namespace) are probed in the initial namespace
under the nfct kernel harness's exclusive machine lock, and restored afterwards.

    python tools/probe_sysctls.py [--global] [--json FILE]

prints one line per (sysctl, value written): `ok READBACK` or the errno name.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

PROC = Path("/proc/sys/net/netfilter")
GLOBAL = ("nf_conntrack_max", "nf_conntrack_buckets", "nf_conntrack_expect_max")
READ_ONLY = ("nf_conntrack_count",)

I32 = 2**31 - 1
U32 = 2**32 - 1
# INT_MAX / HZ for the usual HZ values (the jiffies conversion's limit), and one beyond.
JIFFY_EDGES = [s * (I32 // hz + d) for hz in (100, 250, 300, 1000) for d in (0, 1) for s in (1, -1)]
VALUES = sorted(
    {
        -(2**63),
        -(2**31) - 1,
        -(2**31),
        -(2**31) + 1,
        -1,
        0,
        1,
        2,
        3,
        255,
        256,
        511,
        512,
        513,
        65535,
        65536,
        I32,
        I32 + 1,
        U32,
        U32 + 1,
        2**63 - 1,
        2**63,
        2**64,
        *JIFFY_EDGES,
    }
)
# Text that is not one decimal number.
TEXTS = ["", "abc", "0x1", "01", "+1", " 1", "1 0", "1abc", "1e0", "-0"]
# Buckets in the initial namespace: each accepted write resizes the machine's table, so only
# these (the largest allocates 2 GiB of buckets for a moment).
BUCKET_VALUES = [
    -1,
    0,
    1,
    511,
    512,
    513,
    1000,
    262144,
    268434944,
    268434945,
    268435455,
    268435456,
    I32,
    I32 + 1,
    U32 + 1 + 512,
]


def write(name: str, text: str) -> str:
    """Writes `text` to the sysctl; `ok VALUE-READ-BACK` or the errno's name."""
    path = PROC / name
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e))
    try:
        os.write(fd, text.encode())
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e))
    finally:
        os.close(fd)
    return "ok " + path.read_text().strip()


def probe(names: list[str], values: list[int], texts: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in names:
        default = (PROC / name).read_text().strip()
        seen: dict[str, str] = {"default": default}
        for v in values:
            seen[str(v)] = write(name, f"{v}\n")
            write(name, f"{default}\n")
        for t in texts:
            seen[repr(t)] = write(name, t + "\n")
            write(name, f"{default}\n")
        assert (PROC / name).read_text().strip() == default, name
        out[name] = seen
    return out


def per_netns() -> dict[str, dict[str, str]]:
    names = sorted(
        p.name
        for p in PROC.iterdir()
        if p.name.startswith("nf_conntrack_") and p.name not in GLOBAL + READ_ONLY
    )
    return probe(names, VALUES, TEXTS)


def global_ones() -> dict[str, dict[str, str]]:
    from nfct.kernel.lab import machine_lock

    with machine_lock(exclusive=True):
        out = probe(["nf_conntrack_max", "nf_conntrack_expect_max"], VALUES, TEXTS[:3])
        out.update(probe(["nf_conntrack_buckets"], BUCKET_VALUES, ["abc"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--global", dest="glob", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        json.dump(per_netns(), sys.stdout)
        return 0
    done = subprocess.run(
        ["unshare", "-n", sys.executable, __file__, "--child"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout)
    if a.glob:
        result.update(global_ones())
    for name, seen in result.items():
        for value, what in seen.items():
            print(f"{name} {value}: {what}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
