"""What NAT costs a replay: the same traffic through the same router, with and without a DNAT.

Two captures of replay_bench.py's flows (short: DNS-like UDP and 7-packet TCP connections;
long: RTP-like UDP flows), each in two versions:

* ``plain``: the flows as they are, replayed through a router host (``wan`` 203.0.113.1/24 with
  the default route, ``lan`` 10.200.0.1/16, forwarding on) with no ruleset;
* ``nat``: the same router with ``ip daddr { 192.0.2.0/24, 198.51.100.0/24 } dnat ip to
  10.200.0.10`` in a nat prerouting chain, and the flows' answers coming from that backend (as
  a capture taken on both sides of the router shows them): every connection is translated and
  every packet rewritten, in both directions.

Both replays give the same number of entries and no INVALID packet (checked). Timed end to end
as users run it: ``nfct replay CAPTURE --host HOST --iif wan --clock frozen --output stats``.

Usage: ``python benches/nat_bench.py [--packets N] [--repeat R] [--dir D]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_bench import (
    ETH,
    ETH_REPLY,
    client_addr,
    csum,
    dns_flow,
    nfct_command,
    tcp_flow,
    udp_packet,
)

from nfct.pcap import LINKTYPE_ETHERNET, PcapWriter

BACKEND = bytes((10, 200, 0, 10))


def from_backend(pkt: bytes) -> bytes:
    """An answer as it comes from the backend: its source rewritten, checksums recomputed."""
    ihl = (pkt[0] & 0xF) * 4
    proto, dst, l4 = pkt[9], pkt[16:20], bytearray(pkt[ihl:])
    at = 16 if proto == 6 else 6
    l4[at : at + 2] = b"\0\0"
    c = csum(BACKEND + dst + struct.pack("!BBH", 0, proto, len(l4)) + bytes(l4))
    l4[at : at + 2] = b"\xff\xff" if proto == 17 and c == b"\0\0" else c
    hdr = bytearray(pkt[:ihl])
    hdr[12:16] = BACKEND
    hdr[10:12] = b"\0\0"
    hdr[10:12] = csum(bytes(hdr))
    return bytes(hdr) + bytes(l4)


def write_pair(plain: Path, nat: Path, flows_of, packets: int) -> int:
    """The same packets twice: as they are, and with the answers from the backend."""
    wp = PcapWriter(plain, linktype=LINKTYPE_ETHERNET)
    wn = PcapWriter(nat, linktype=LINKTYPE_ETHERNET)
    ts = 1_700_000_000.0
    for reply, pkt in flows_of(packets):
        eth = ETH_REPLY if reply else ETH
        wp.write(ts, eth + pkt)
        wn.write(ts, eth + (from_backend(pkt) if reply else pkt))
        ts += 2e-6
    wp.close()
    wn.close()
    return wp.count


def short_flows(packets: int):
    n, i = 0, 0
    while n < packets:
        group = [(tcp_flow if (i + k) % 2 else dns_flow)(i + k) for k in range(256)]
        i += 256
        for step in range(max(len(f) for f in group)):
            for f in group:
                if step < len(f) and n < packets:
                    n += 1
                    yield f[step]


def long_flows(packets: int, flows: int = 1000):
    templates = []
    for f in range(flows):
        c, cport = client_addr(1_000_000 + f)
        templates.append((c, cport, bytes((198, 51, 100, 1 + f % 200)), 5004 + 2 * (f // 200)))
    n, seq = 0, 0
    while n < packets:
        for f, (c, cport, s, sport) in enumerate(templates):
            if n >= packets:
                return
            rtp = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, f) + bytes(160)
            reply = seq % 3 == 2
            pkt = (
                udp_packet(s, c, sport, cport, rtp, seq)
                if reply
                else udp_packet(c, s, cport, sport, rtp, seq)
            )
            n += 1
            yield reply, pkt
        seq += 1


def host(nat: bool) -> dict[str, object]:
    def dev(i: int, name: str, addr: str, plen: int) -> dict[str, object]:
        return {"ifindex": i, "ifname": name, "flags": ["UP"], "mtu": 1500,
                "addr_info": [{"local": addr, "prefixlen": plen}]}  # fmt: skip

    doc: dict[str, object] = {
        "addr": [dev(2, "wan", "203.0.113.1", 24), dev(3, "lan", "10.200.0.1", 16)],
        "route": [
            {"type": "local", "dst": "203.0.113.1", "dev": "wan", "table": "local"},
            {"type": "local", "dst": "10.200.0.1", "dev": "lan", "table": "local"},
            {"dst": "10.200.0.0/16", "dev": "lan"},
            {"dst": "203.0.113.0/24", "dev": "wan"},
            {"dst": "default", "gateway": "203.0.113.254", "dev": "wan"},
        ],
        "sysctl": {"net.ipv4.ip_forward": "1"},
    }
    if nat:
        services = {"set": [{"prefix": {"addr": "192.0.2.0", "len": 24}},
                            {"prefix": {"addr": "198.51.100.0", "len": 24}}]}  # fmt: skip
        daddr = {"payload": {"protocol": "ip", "field": "daddr"}}
        doc["ruleset"] = {
            "nftables": [
                {"table": {"family": "ip", "name": "nat", "handle": 1}},
                {
                    "chain": {
                        "family": "ip",
                        "table": "nat",
                        "name": "pre",
                        "handle": 1,
                        "type": "nat",
                        "hook": "prerouting",
                        "prio": -100,
                        "policy": "accept",
                    }
                },
                {
                    "rule": {
                        "family": "ip",
                        "table": "nat",
                        "chain": "pre",
                        "handle": 2,
                        "expr": [
                            {"match": {"op": "==", "left": daddr, "right": services}},
                            {"dnat": {"family": "ip", "addr": "10.200.0.10"}},
                        ],
                    }
                },
            ]
        }
    return doc


def run(cap: Path, hostfile: Path) -> tuple[float, str]:
    cmd = [*nfct_command(), "replay", str(cap), "--host", str(hostfile), "--iif", "wan"]
    cmd += ["--clock", "frozen", "--output", "stats"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, p.stderr.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    d = args.dir or Path(tempfile.mkdtemp(prefix="nfct-nat-bench-"))
    d.mkdir(parents=True, exist_ok=True)
    hosts = {}
    for kind in ("plain", "nat"):
        hosts[kind] = d / f"host-{kind}.json"
        hosts[kind].write_text(json.dumps(host(kind == "nat")))
    print(
        f"{'capture':8} {'packets':>9} {'plain s':>8} {'nat s':>8} {'nat/plain':>9}  summary (nat)"
    )
    for name, gen in (("short", short_flows), ("long", long_flows)):
        caps = {k: d / f"{name}-{k}.pcap" for k in ("plain", "nat")}
        n = write_pair(caps["plain"], caps["nat"], gen, args.packets)
        times: dict[str, list[float]] = {"plain": [], "nat": []}
        summary = {}
        for _ in range(args.repeat):  # alternating, so drift hits both alike
            for kind in ("plain", "nat"):
                t, summary[kind] = run(caps[kind], hosts[kind])
                times[kind].append(t)
        same = summary["plain"].split(",")[1:] == summary["nat"].split(",")[1:]
        if not same or " 0 invalid" not in summary["nat"]:
            print(f"replays differ: {summary}", file=sys.stderr)
            return 1
        med = {k: statistics.median(v) for k, v in times.items()}
        ratios = statistics.median(a / b for a, b in zip(times["nat"], times["plain"], strict=True))
        row = f"{name:8} {n:>9} {med['plain']:>8.3f} {med['nat']:>8.3f} {ratios:>9.3f}"
        print(f"{row}  {summary['nat']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
