"""The command users run, end to end, on a capture whose table fills (issue #16).

The capture: 1.2M packets, 100,000 short TCP connections (handshake, request, response,
FIN/FIN-ACK/ACK teardown: 8 packets each, ending in TIME_WAIT) and 200,000 UDP
request/response pairs, interleaved 512 flows at a time over 10 s of capture time. With the
default sysctls the table fills at `nf_conntrack_max` (262,144) and early drop evicts the
unassured UDP entries.

Timed, as subprocesses, interpreter start and output included, `--output stats`:

* `nfct replay CAPTURE` (default settings, one thread) and `--threads 2`;
* the same with room to spare (`--sysctl nf_conntrack_max=1048576`), for the table-full cost;
* dpkt parsing every packet to its 5-tuple, and nfstream (if importable) exporting its flows.

Each round runs every contender once, in this order; the ratios nfstream / nfct and one
thread / two are printed per round as well as of the medians, since nfstream's own time
moves by 10% or more between runs (12% in RESULTS.md, 2026-12-04).

Usage: `python benches/e2e_bench.py [--repeat R] [--dir D] [--no-peers]`.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_bench import ETH, ETH_REPLY, nfct_command, tcp_packet, udp_packet

from nfct.pcap import LINKTYPE_ETHERNET, PcapWriter

TCP_FLOWS, UDP_FLOWS = 100_000, 200_000
DURATION = 10.0


def tcp_conn(i: int) -> list[tuple[bool, bytes]]:
    c = struct.pack("!I", 0x0A000000 | (i & 0xFFFFFF))
    s = bytes((192, 0, 2, 1 + i % 200))
    cport = 20000 + (i >> 24) % 40000
    a, b = (i * 7919) & 0xFFFFFFFF, (i * 104729 + 1) & 0xFFFFFFFF
    req, resp = b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"
    syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
    a1, b1 = a + 1, b + 1
    return [
        (False, tcp_packet(c, s, cport, 80, a, 0, syn, b"")),
        (True, tcp_packet(s, c, 80, cport, b, a1, syn | ack, b"")),
        (False, tcp_packet(c, s, cport, 80, a1, b1, ack, b"")),
        (False, tcp_packet(c, s, cport, 80, a1, b1, ack | psh, req)),
        (True, tcp_packet(s, c, 80, cport, b1, a1 + len(req), ack | psh, resp)),
        (False, tcp_packet(c, s, cport, 80, a1 + len(req), b1 + len(resp), ack | fin, b"")),
        (True, tcp_packet(s, c, 80, cport, b1 + len(resp), a1 + len(req) + 1, ack | fin, b"")),
        (False, tcp_packet(c, s, cport, 80, a1 + len(req) + 1, b1 + len(resp) + 1, ack, b"")),
    ]


def udp_pair(i: int) -> list[tuple[bool, bytes]]:
    c = struct.pack("!I", 0x0B000000 | (i & 0xFFFFFF))
    s = bytes((198, 51, 100, 1 + i % 200))
    cport = 30000 + (i >> 24) % 30000
    q = (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    )
    return [
        (False, udp_packet(c, s, cport, 53, q, i)),
        (True, udp_packet(s, c, 53, cport, q, i + 1)),
    ]


def write_capture(path: Path, keep: Callable[[str, int], bool] | None = None) -> int:
    """Writes the capture; with `keep`, only the packets of the flows it keeps (kind "t" or
    "u", index), each at the time it has in the whole capture."""
    flows = [("t", i) for i in range(TCP_FLOWS)] + [("u", i) for i in range(UDP_FLOWS)]
    # Interleave TCP and UDP: one TCP connection for two UDP pairs.
    order = []
    ti, ui = 0, 0
    while ti < TCP_FLOWS or ui < UDP_FLOWS:
        if ti < TCP_FLOWS:
            order.append(flows[ti])
            ti += 1
        for _ in range(2):
            if ui < UDP_FLOWS:
                order.append(flows[TCP_FLOWS + ui])
                ui += 1
    total = TCP_FLOWS * 8 + UDP_FLOWS * 2
    step = DURATION / total
    w = PcapWriter(path, linktype=LINKTYPE_ETHERNET)
    ts = 1_700_000_000.0
    for g in range(0, len(order), 512):
        group = [
            (tcp_conn(i) if k == "t" else udp_pair(i), keep is None or keep(k, i))
            for k, i in order[g : g + 512]
        ]
        for stepi in range(8):
            for f, kept in group:
                if stepi < len(f):
                    reply, pkt = f[stepi]
                    if kept:
                        w.write(ts, (ETH_REPLY if reply else ETH) + pkt)
                    ts += step
    w.close()
    return w.count


def run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, (p.stderr.strip().splitlines() or [""])[-1]


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
n = sum(1 for _ in NFStreamer(source=sys.argv[1], n_dissections=0, statistical_analysis=False))
print(n)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--no-peers", action="store_true", help="nfct only")
    args = ap.parse_args()
    d = args.dir or Path(tempfile.mkdtemp(prefix="nfct-e2e-"))
    d.mkdir(parents=True, exist_ok=True)
    cap = d / "e2e.pcap"
    if not cap.exists():
        n = write_capture(cap)
        print(f"wrote {cap}: {n} packets")
    n = TCP_FLOWS * 8 + UDP_FLOWS * 2
    nfct_cmd = [*nfct_command(), "replay", str(cap), "--output", "stats"]
    contenders: dict[str, list[str]] = {
        "nfct replay (defaults)": nfct_cmd,
        "nfct replay --threads 2": [*nfct_cmd, "--threads", "2"],
        "nfct replay, room to spare": [*nfct_cmd, "--sysctl", "nf_conntrack_max=1048576"],
    }
    if not args.no_peers:
        try:
            import dpkt  # noqa: F401

            contenders["dpkt, 5-tuple of every packet"] = [sys.executable, "-c", DPKT, str(cap)]
        except ImportError:
            pass
        try:
            import nfstream  # noqa: F401

            contenders["nfstream (flows exported)"] = [sys.executable, "-c", NFSTREAM, str(cap)]
        except ImportError:
            pass
    times: dict[str, list[float]] = {k: [] for k in contenders}
    last: dict[str, str] = {}
    for _ in range(args.repeat):
        for k, cmd in contenders.items():
            t, line = run(cmd)
            times[k].append(t)
            last[k] = line
    print(f"{'contender':32} {'median s':>9} {'Mpps':>7}  last line")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"{k:32} {med:>9.3f} {n / med / 1e6:>7.3f}  {last[k]}")
    # (name, numerator times, denominator times): a ratio per round and of the medians.
    one, two = times["nfct replay (defaults)"], times["nfct replay --threads 2"]
    ratios = [("nfct one thread / two", one, two)]
    if "nfstream (flows exported)" in times:
        ratios.insert(0, ("nfstream / nfct replay", times["nfstream (flows exported)"], one))
    for name, num, den in ratios:
        rounds = [a / b for a, b in zip(num, den, strict=True)]
        of_medians = statistics.median(num) / statistics.median(den)
        print(
            f"{name}: {of_medians:.2f} of the medians; by round median "
            f"{statistics.median(rounds):.2f}, min {min(rounds):.2f}, max {max(rounds):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
