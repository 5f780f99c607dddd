"""nfct against its peers in one run: nfstream, dpkt and Open vSwitch's userspace conntrack.

Two captures, generated (and kept in ``--dir``):

* ``short``: e2e_bench's capture: 1.2M packets, 100,000 short TCP connections (8 packets each,
  ending in TIME_WAIT) and 200,000 UDP request/response pairs; with the default sysctls the
  table fills at ``nf_conntrack_max`` (262,144) and early drop runs.
* ``long``: 1,000 long TCP connections, 1M packets: a handshake, 994 data segments of 100 bytes
  alternating client and server (each acknowledging the other's last), FIN/FIN-ACK/ACK; the
  connections interleaved round robin over 10 s of capture time.

Each contender runs as its own process, interleaved (every contender once per round, rounds
repeated), and is reported as medians of wall seconds and of CPU seconds (user + system of
the child, from ``getrusage(RUSAGE_CHILDREN)``, so a multi-process contender counts all its
processes); the load average is recorded at every round, since the machine is shared:

* ``nfct replay CAPTURE --output stats``: the command, end to end (interpreter start, import,
  replay, summary);
* ``nfct Net.replay``: ``nfct.Net()`` with default sysctls, the call to ``replay([CAPTURE])``
  timed inside Python (reading the capture, parsing, tracking; no start-up, no output);
* ``nfstream``: ``NFStreamer(source=CAPTURE, n_dissections=0, statistical_analysis=False)``
  iterated to its last flow, in the interpreter given by ``--nfstream-python`` (nfstream's
  cheapest settings: no nDPI dissection, no per-flow statistics; it meters in one process per
  core, so its CPU seconds exceed its wall);
* ``dpkt``: a plain ``dpkt.pcap.Reader`` loop parsing every frame to its 5-tuple;
* ``ovs``, when ``--ovstest`` (or ``$OVSTEST``) names an ``ovstest`` binary:
  ``ovstest test-conntrack pcap CAPTURE 32`` (batches of 32, the datapath's burst), which
  commits every packet to OVS's userspace conntrack. Upstream it prints each packet's
  ct_state and no timing; the binary measured here carries a local timer (not upstream; see
  RESULTS.md) that, with ``OVS_CT_QUIET`` set, skips the per-packet printing and reports on
  standard error the nanoseconds spent in its flow extraction + ``conntrack_execute``
  (``ct_ns``: the loop compared with ``Net.replay``) and in the whole reading loop
  (``loop_ns``), by the monotonic clock and by the thread's CPU clock (``ct_cpu_ns``,
  ``loop_cpu_ns``). Both the quiet run and the upstream behaviour (printing to /dev/null) are
  timed.

``Net.replay`` is timed the same two ways (``perf_counter`` and ``process_time``): on a shared
machine the CPU clocks are the figures to compare, wall times only a hint.

Usage: ``python benches/peers_bench.py [--repeat R] [--dir D] [--ovstest PATH]
[--nfstream-python PY] [--only short|long] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_bench import TCP_FLOWS, UDP_FLOWS
from e2e_bench import write_capture as write_short
from replay_bench import ETH, ETH_REPLY, nfct_command, tcp_packet

from nfct.pcap import LINKTYPE_ETHERNET, PcapWriter

LONG_CONNS, LONG_PACKETS = 1_000, 1_000_000
DURATION = 10.0


def long_conn(i: int, packets: int) -> list[tuple[bool, bytes]]:
    """One long TCP connection of ``packets`` packets as (is_reply, IP packet)."""
    c = struct.pack("!I", 0x0A800000 | i)
    s = bytes((203, 0, 113, 1 + i % 200))
    cport, sport = 40000 + i % 20000, 443
    syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
    cs, ss = (i * 7919 + 5) & 0xFFFFFFFF, (i * 104729 + 11) & 0xFFFFFFFF
    data = bytes(100)
    out = [
        (False, tcp_packet(c, s, cport, sport, cs, 0, syn, b"")),
        (True, tcp_packet(s, c, sport, cport, ss, cs + 1, syn | ack, b"")),
        (False, tcp_packet(c, s, cport, sport, cs + 1, ss + 1, ack, b"")),
    ]
    cs, ss = cs + 1, ss + 1
    for k in range(packets - 6):
        if k % 2 == 0:
            out.append((False, tcp_packet(c, s, cport, sport, cs, ss, ack | psh, data)))
            cs += len(data)
        else:
            out.append((True, tcp_packet(s, c, sport, cport, ss, cs, ack | psh, data)))
            ss += len(data)
    out += [
        (False, tcp_packet(c, s, cport, sport, cs, ss, ack | fin, b"")),
        (True, tcp_packet(s, c, sport, cport, ss, cs + 1, ack | fin, b"")),
        (False, tcp_packet(c, s, cport, sport, cs + 1, ss + 1, ack, b"")),
    ]
    return out


def write_long(path: Path) -> int:
    """LONG_CONNS connections of LONG_PACKETS / LONG_CONNS packets each, round robin."""
    per = LONG_PACKETS // LONG_CONNS
    conns = [long_conn(i, per) for i in range(LONG_CONNS)]
    w = PcapWriter(path, linktype=LINKTYPE_ETHERNET)
    ts, step = 1_700_000_000.0, DURATION / LONG_PACKETS
    for k in range(per):
        for conn in conns:
            reply, pkt = conn[k]
            w.write(ts, (ETH_REPLY if reply else ETH) + pkt)
            ts += step
    w.close()
    return w.count


INPROC = """
import sys, time, json
import nfct
net = nfct.Net()
t0, c0 = time.perf_counter(), time.process_time()
r = net.replay([sys.argv[1]])
dt, dc = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"inner_s": dt, "inner_cpu": dc, "packets": r["packets"], "entries": net.count,
                  "early_drop": net.stats["early_drop"]}))
"""

DPKT = """
import sys, dpkt
n = 0
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        l4 = ip.data
        key = (ip.src, ip.dst, ip.p, getattr(l4, "sport", 0), getattr(l4, "dport", 0))
        n += 1
print(n)
"""

NFSTREAM = """
import sys
from nfstream import NFStreamer
flows = packets = 0
for f in NFStreamer(source=sys.argv[1], n_dissections=0, statistical_analysis=False):
    flows += 1
    packets += f.bidirectional_packets
print(flows, packets)
"""


def run(cmd: list[str], env: dict[str, str] | None = None, stdout=subprocess.PIPE) -> dict:
    """Runs ``cmd`` to its end: wall and the child's CPU seconds, its output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}... exited {p.returncode}: {p.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "out": p.stdout or "", "err": p.stderr}


def contenders(cap: Path, args: argparse.Namespace) -> dict[str, dict]:
    """name -> {cmd, env, stdout, parse}: what to run on ``cap`` and what to read back."""
    c: dict[str, dict] = {
        "nfct replay --output stats": {
            "cmd": [*nfct_command(), "replay", str(cap), "--output", "stats"],
        },
        "nfct Net.replay (in-process)": {
            "cmd": [sys.executable, "-c", INPROC, str(cap)],
            "parse": lambda r: {**json.loads(r["out"])},
        },
    }
    if args.ovstest:
        env = {**os.environ, "OVS_CT_QUIET": "1"}

        def ovs_times(r: dict) -> dict:
            for line in r["err"].splitlines():
                if line.startswith("ct-timing:"):
                    f = line.split()
                    d = dict(zip(f[1::2], f[2::2], strict=True))
                    return {
                        "packets": int(d["packets"]),
                        "inner_s": int(d["ct_ns"]) / 1e9,
                        "loop_s": int(d["loop_ns"]) / 1e9,
                        "inner_cpu": int(d["ct_cpu_ns"]) / 1e9,
                        "loop_cpu": int(d["loop_cpu_ns"]) / 1e9,
                    }
            return {}

        batch = str(args.ovs_batch)
        c["ovs test-conntrack pcap (quiet)"] = {
            "cmd": [args.ovstest, "test-conntrack", "pcap", str(cap), batch],
            "env": env,
            "parse": ovs_times,
        }
        c["ovs test-conntrack pcap (upstream)"] = {
            "cmd": [args.ovstest, "test-conntrack", "pcap", str(cap), batch],
            "stdout": subprocess.DEVNULL,
        }
    if args.nfstream_python:
        c["nfstream"] = {"cmd": [args.nfstream_python, "-c", NFSTREAM, str(cap)]}
    if not args.no_dpkt:
        c["dpkt 5-tuple loop"] = {"cmd": [sys.executable, "-c", DPKT, str(cap)]}
    return c


def bench(name: str, cap: Path, packets: int, args: argparse.Namespace) -> dict:
    cs = contenders(cap, args)
    runs: dict[str, list[dict]] = {k: [] for k in cs}
    loads = []
    for _ in range(args.repeat):
        loads.append(os.getloadavg()[0])
        for k, c in cs.items():
            r = run(c["cmd"], env=c.get("env"), stdout=c.get("stdout", subprocess.PIPE))
            if "parse" in c:
                r.update(c["parse"](r))
            runs[k].append(r)
    loads.append(os.getloadavg()[0])
    res: dict[str, dict] = {}
    for k, rs in runs.items():
        fields = ("wall", "cpu", "inner_s", "loop_s", "inner_cpu", "loop_cpu")
        m = {f: statistics.median(r[f] for r in rs) for f in fields if f in rs[0]}
        m["n"] = len(rs)
        for f in ("entries", "early_drop"):
            if f in rs[-1]:
                m[f] = rs[-1][f]
        res[k] = m
    # Paired ratios, round by round, for the comparisons the targets name.
    pairs = {}

    def paired(a: str, fa: str, b: str, fb: str) -> None:
        if a in runs and b in runs:
            rs = [y[fb] / x[fa] for x, y in zip(runs[a], runs[b], strict=True)]
            pairs[f"{b} {fb} / {a} {fa}"] = statistics.median(rs)

    cli, inproc = "nfct replay --output stats", "nfct Net.replay (in-process)"
    paired(cli, "wall", "nfstream", "wall")
    paired(cli, "cpu", "nfstream", "cpu")
    paired(cli, "wall", "dpkt 5-tuple loop", "wall")
    ovs = "ovs test-conntrack pcap (quiet)"
    paired(inproc, "inner_s", ovs, "inner_s")
    paired(inproc, "inner_s", ovs, "loop_s")
    paired(inproc, "inner_cpu", ovs, "inner_cpu")
    paired(inproc, "inner_cpu", ovs, "loop_cpu")
    paired(cli, "cpu", "ovs test-conntrack pcap (upstream)", "cpu")
    paired(cli, "wall", "ovs test-conntrack pcap (upstream)", "wall")
    raw = {
        k: [{f: v for f, v in r.items() if f not in ("out", "err")} for r in rs]
        for k, rs in runs.items()
    }
    return {
        "capture": name,
        "packets": packets,
        "loads": loads,
        "medians": res,
        "ratios": pairs,
        "runs": raw,
    }


def show(b: dict) -> None:
    n = b["packets"]
    la = b["loads"]
    print(f"\n{b['capture']}: {n:,} packets; load average {min(la):.2f}-{max(la):.2f}")
    print(
        f"{'contender':38} {'wall s':>8} {'CPU s':>8} {'inner s':>8} {'inner CPU':>9} "
        f"{'Mpps':>7} {'Mpps CPU':>8}"
    )
    for k, m in b["medians"].items():
        inner = m.get("inner_s")
        t = inner if inner else m["wall"]
        extra = ""
        if "loop_s" in m:
            extra = (
                f"  (whole reading loop {m['loop_s']:.3f} s, CPU {m['loop_cpu']:.3f} s: "
                f"{n / m['loop_cpu'] / 1e6:.2f} Mpps)"
            )
        if "entries" in m:
            extra = f"  (entries {m['entries']:,}, early_drop {m['early_drop']:,})"
        ins = f"{inner:8.3f}" if inner else f"{'':8}"
        c = m.get("inner_cpu") or m["cpu"]
        inc = f"{m['inner_cpu']:9.3f}" if "inner_cpu" in m else f"{'':9}"
        print(
            f"{k:38} {m['wall']:8.3f} {m['cpu']:8.3f} {ins} {inc} {n / t / 1e6:7.3f} "
            f"{n / c / 1e6:8.3f}{extra}"
        )
    for k, v in b["ratios"].items():
        print(f"  paired median ratio {k}: {v:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None, help="where the captures are kept")
    ap.add_argument("--ovstest", default=os.environ.get("OVSTEST"), help="an ovstest binary")
    ap.add_argument("--ovs-batch", type=int, default=32)
    ap.add_argument(
        "--nfstream-python",
        default=os.environ.get("NFSTREAM_PYTHON"),
        help="an interpreter that has nfstream (default: skip nfstream)",
    )
    ap.add_argument("--no-dpkt", action="store_true")
    ap.add_argument("--only", choices=("short", "long"))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    d = args.dir or Path(tempfile.mkdtemp(prefix="nfct-peers-"))
    d.mkdir(parents=True, exist_ok=True)
    caps = {"short": (d / "e2e.pcap", write_short), "long": (d / "long-tcp.pcap", write_long)}
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.repeat} rounds",
        flush=True,
    )
    out = []
    for name, (path, write) in caps.items():
        if args.only and name != args.only:
            continue
        if not path.exists():
            write(path)
        packets = TCP_FLOWS * 8 + UDP_FLOWS * 2 if name == "short" else LONG_PACKETS
        b = bench(name, path, packets, args)
        show(b)
        out.append(b)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
