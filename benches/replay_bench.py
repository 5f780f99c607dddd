"""Replay throughput of nfct against Python flow tools, on generated captures.

Both captures are IPv4 over Ethernet, with correct IP, UDP and TCP checksums:

* ``short.pcap``: many short flows interleaved 256 at a time: half DNS-like UDP flows of 2-4
  packets (query/answer; a retried query; two exchanges), half TCP connections of 7 packets
  (handshake, request, response, FIN both ways, last ACK) that end in TIME_WAIT.
* ``long.pcap``: few long flows (RTP-like, 172-byte payloads, two packets out for one back),
  all interleaved.

Each capture is timed with:

* ``nfct replay --clock frozen --output stats`` as a subprocess (wall time: interpreter start,
  import, replay, and the CLI's count of the table's entries for its summary line);
* ``nfct.Net(...).replay([path], clock="frozen")`` in process (the call only), on one thread
  and on two (``threads=2``: a reading thread and two tracking workers on the one table);
* a bare Python loop over the pcap records as ``nfct.pcap`` reads them (record headers only,
  no packet parsing: about the ceiling of any Python-side loop);
* dpkt parsing every packet to its 5-tuple;
* nfstream's ``NFStreamer`` (if importable), iterating the flows it exports.

Usage: ``python benches/replay_bench.py [--packets N] [--long-flows F] [--repeat R] [--dir D]``.
Captures are written with ``nfct.pcap`` (no scapy); dpkt is only used for its own timing loop.
"""

from __future__ import annotations

import argparse
import array
import os
import platform
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from nfct.pcap import LINKTYPE_ETHERNET, PcapWriter, iter_records

# --- The captures --------------------------------------------------------------------------

ETH = bytes.fromhex("0200000000020200000000010800")
ETH_REPLY = bytes.fromhex("0200000000010200000000020800")
NATIVE_H = struct.Struct("=H")


def csum(data: bytes) -> bytes:
    """The Internet checksum of ``data``, as the two bytes to store (network order).

    The one's-complement sum is byte-order independent (RFC 1071 2(B)): summing native 16-bit
    words and storing the result natively gives the same bytes as doing it big-endian.
    """
    if len(data) & 1:
        data += b"\0"
    s = sum(array.array("H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return NATIVE_H.pack(~s & 0xFFFF)


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ipid: int) -> bytes:
    """An IPv4 UDP packet (no Ethernet header) with correct IP and UDP checksums."""
    ulen = 8 + len(payload)
    udp = struct.pack("!HHH", sport, dport, ulen) + b"\0\0" + payload
    uc = csum(src + dst + struct.pack("!BBH", 0, 17, ulen) + udp)
    if uc == b"\0\0":
        uc = b"\xff\xff"
    udp = udp[:6] + uc + udp[8:]
    hdr = struct.pack("!BBHHHBB", 0x45, 0, 20 + ulen, ipid & 0xFFFF, 0x4000, 64, 17)
    hdr = hdr + b"\0\0" + src + dst
    return hdr[:10] + csum(hdr) + hdr[12:] + udp


def tcp_packet(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes
) -> bytes:
    """An IPv4 TCP packet (no Ethernet header, no options) with correct checksums."""
    tlen = 20 + len(data)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 64240, 0, 0) + data
    tc = csum(src + dst + struct.pack("!BBH", 0, 6, tlen) + tcp)
    tcp = tcp[:16] + tc + tcp[18:]
    hdr = struct.pack("!BBHHHBB", 0x45, 0, 20 + tlen, seq & 0xFFFF, 0x4000, 64, 6)
    hdr = hdr + b"\0\0" + src + dst
    return hdr[:10] + csum(hdr) + hdr[12:] + tcp


def tcp_flow(i: int) -> list[tuple[bool, bytes]]:
    """A short TCP connection as (is_reply, IP packet): handshake, one request and response,
    FIN from each side, the last ACK. 7 packets; the entry ends in TIME_WAIT."""
    c, cport = client_addr(i)
    s = bytes((192, 0, 2, 101 + i % 16))
    isn_c, isn_s = (i * 7919) & 0xFFFFFFFF, (i * 104729 + 1) & 0xFFFFFFFF
    req, resp = b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1.0 204 No Content\r\n\r\n"
    syn, ack, psh, fin = 0x02, 0x10, 0x08, 0x01
    c1, s1 = isn_c + 1, isn_s + 1
    return [
        (False, tcp_packet(c, s, cport, 80, isn_c, 0, syn, b"")),
        (True, tcp_packet(s, c, 80, cport, isn_s, c1, syn | ack, b"")),
        (False, tcp_packet(c, s, cport, 80, c1, s1, ack | psh, req)),
        (True, tcp_packet(s, c, 80, cport, s1, c1 + len(req), ack | psh, resp)),
        (False, tcp_packet(c, s, cport, 80, c1 + len(req), s1 + len(resp), ack | fin, b"")),
        (True, tcp_packet(s, c, 80, cport, s1 + len(resp), c1 + len(req) + 1, ack | fin, b"")),
        (False, tcp_packet(c, s, cport, 80, c1 + len(req) + 1, s1 + len(resp) + 1, ack, b"")),
    ]


def client_addr(i: int) -> tuple[bytes, int]:
    """Client address and port of flow ``i``: 10.x.y.z port 20000..20015."""
    return struct.pack("!I", 0x0A000000 | ((i >> 4) & 0xFFFFFF)), 20000 + (i & 15)


def dns_flow(i: int) -> list[tuple[bool, bytes]]:
    """The packets of short flow ``i`` as (is_reply, IP packet): 2, 3 or 4 packets."""
    c, cport = client_addr(i)
    s = bytes((192, 0, 2, 1 + i % 16))
    txid = (i * 2654435761) & 0xFFFF
    qname = b"\x03www\x07example" + bytes((3,)) + b"com\0"
    question = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + qname + b"\0\x01\0\x01"
    answer = (
        struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0)
        + qname
        + b"\0\x01\0\x01"
        + b"\xc0\x0c\0\x01\0\x01\0\0\x0e\x10\0\x04"
        + bytes((93, 184, 216, 34))
    )
    q = (False, udp_packet(c, s, cport, 53, question, i))
    a = (True, udp_packet(s, c, 53, cport, answer, i + 1))
    kind = i % 4
    if kind == 2:
        return [q, q, a]  # the query retried, one answer
    if kind == 3:
        return [q, a, q, a]  # two exchanges on the same socket
    return [q, a]


def write_short(path: Path, packets: int) -> tuple[int, int]:
    """Short flows, 256 interleaved at a time, until ``packets``. Returns (packets, flows)."""
    w = PcapWriter(path, linktype=LINKTYPE_ETHERNET)
    ts_us = 1_700_000_000_000_000
    i = 0
    while w.count < packets:
        group = [(tcp_flow if (i + k) % 2 else dns_flow)(i + k) for k in range(256)]
        i += 256
        depth = max(len(f) for f in group)
        for step in range(depth):
            for f in group:
                if step < len(f) and w.count < packets:
                    reply, pkt = f[step]
                    w.write(ts_us / 1e6, (ETH_REPLY if reply else ETH) + pkt)
                    ts_us += 2
    w.close()
    return w.count, i


def write_long(path: Path, packets: int, flows: int) -> tuple[int, int]:
    """``flows`` long RTP-like flows, round robin, two packets out for one back."""
    w = PcapWriter(path, linktype=LINKTYPE_ETHERNET)
    ts_us = 1_700_000_000_000_000
    templates = []
    for f in range(flows):
        c, cport = client_addr(1_000_000 + f)
        s = bytes((198, 51, 100, 1 + f % 200))
        templates.append((c, cport, s, 5004 + 2 * (f // 200)))
    seq = 0
    while w.count < packets:
        for f, (c, cport, s, sport) in enumerate(templates):
            if w.count >= packets:
                break
            reply = seq % 3 == 2
            rtp = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, f) + bytes(160)
            if reply:
                pkt = udp_packet(s, c, sport, cport, rtp, seq)
            else:
                pkt = udp_packet(c, s, cport, sport, rtp, seq)
            w.write(ts_us / 1e6, (ETH_REPLY if reply else ETH) + pkt)
            ts_us += 5
        seq += 1
    w.close()
    return w.count, flows


# --- The contenders ------------------------------------------------------------------------


def nfct_command() -> list[str]:
    """The `nfct` console script of this interpreter, or `python -m nfct.cli`."""
    script = Path(sysconfig.get_path("scripts")) / "nfct"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "nfct.cli"]


def time_cli(path: Path, sysctls: dict[str, int]) -> tuple[float, str]:
    cmd = [*nfct_command(), "replay", "--clock", "frozen", "--output", "stats"]
    for k, v in sysctls.items():
        cmd += ["--sysctl", f"{k}={v}"]
    cmd.append(str(path))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t0
    return dt, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""


def time_inprocess(
    path: Path, sysctls: dict[str, int], threads: int = 1
) -> tuple[float, dict[str, object]]:
    import nfct

    net = nfct.Net(dict(sysctls), seed=1)
    t0 = time.perf_counter()
    summary = net.replay([str(path)], clock="frozen", threads=threads)
    dt = time.perf_counter() - t0
    return dt, {**summary, "entries": net.count, "early_drop": net.stats["early_drop"]}


def time_bare_loop(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = 0
    for _ in iter_records(path):
        n += 1
    return time.perf_counter() - t0, n


def time_dpkt(path: Path) -> tuple[float, int]:
    import dpkt

    t0 = time.perf_counter()
    keys = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            key = (ip.src, ip.dst, ip.p, getattr(l4, "sport", 0), getattr(l4, "dport", 0))
            keys += key is not None
    return time.perf_counter() - t0, keys


def time_nfstream(path: Path, dissections: int) -> tuple[float, int, int]:
    from nfstream import NFStreamer

    t0 = time.perf_counter()
    flows = 0
    packets = 0
    for flow in NFStreamer(source=str(path), n_dissections=dissections):
        flows += 1
        packets += flow.bidirectional_packets
    return time.perf_counter() - t0, flows, packets


# --- Main ----------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets per capture")
    ap.add_argument("--long-flows", type=int, default=128, help="flows in long.pcap")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the nfct timings (median)")
    ap.add_argument("--dir", type=Path, default=None, help="keep/reuse captures here")
    ap.add_argument("--skip-slow", action="store_true", help="skip dpkt and nfstream")
    args = ap.parse_args()

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="nfct-bench-")
        d = Path(tmp.name)
    else:
        d = args.dir
        d.mkdir(parents=True, exist_ok=True)

    caps: list[tuple[str, Path, int, int]] = []
    for name, writer in (
        ("short", lambda p: write_short(p, args.packets)),
        ("long", lambda p: write_long(p, args.packets, args.long_flows)),
    ):
        path = d / f"{name}-{args.packets}.pcap"
        if path.exists():
            n, flows = sum(1 for _ in iter_records(path)), -1
            print(f"reusing {path} ({n} packets)")
            caps.append((name, path, n, flows))
            continue
        t0 = time.perf_counter()
        n, flows = writer(path)
        print(
            f"wrote {path} ({n} packets, {flows} flows, {path.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        caps.append((name, path, n, flows))

    unlimited = {"nf_conntrack_max": 0}
    results: dict[str, dict[str, float]] = {}

    def report(cap: str, label: str, seconds: float, n: int, note: str = "") -> None:
        rate = n / seconds
        results.setdefault(cap, {})[label] = rate
        print(f"  {label:<44} {seconds:8.3f} s  {rate / 1e6:7.3f} Mpps  {note}")

    try:
        import nfstream  # noqa: F401

        have_nfstream = True
    except ImportError:
        have_nfstream = False

    for cap, path, n, _flows in caps:
        print(f"\n{cap}.pcap: {n} packets")
        # Warm the page cache so that every contender reads from memory.
        path.read_bytes()

        cli_times: list[float] = []
        last = ""
        for _ in range(args.repeat):
            dt, last = time_cli(path, unlimited)
            cli_times.append(dt)
        report(cap, "nfct replay CLI (subprocess, max=0)", statistics.median(cli_times), n, last)

        for label, sysctls, threads in (
            ("nfct Net.replay (max=0)", unlimited, 1),
            ("nfct Net.replay (max=0, threads=2)", unlimited, 2),
            ("nfct Net.replay (defaults: max=262144)", {}, 1),
            ("nfct Net.replay (max=0, checksum=0)", {**unlimited, "nf_conntrack_checksum": 0}, 1),
        ):
            times = []
            summ: dict[str, object] = {}
            for _ in range(args.repeat):
                dt, summ = time_inprocess(path, sysctls, threads)
                times.append(dt)
            keys = ("new", "established", "invalid", "dropped", "entries", "early_drop")
            note = " ".join(f"{k}={summ.get(k)}" for k in keys)
            report(cap, label, statistics.median(times), n, note)

        times = [time_bare_loop(path)[0] for _ in range(args.repeat)]
        report(cap, "bare Python loop over nfct.pcap records", statistics.median(times), n)

        if args.skip_slow:
            continue
        dt, _ = time_dpkt(path)
        report(cap, "dpkt parse to 5-tuple", dt, n)
        if have_nfstream:
            for dis in (20, 0):
                dt, flows, pk = time_nfstream(path, dis)
                report(cap, f"nfstream (n_dissections={dis})", dt, n, f"{flows} flows, {pk} pkts")
        else:
            print("  nfstream: not installed")

    print("\nratios (packets/s of nfct Net.replay, max=0, over each other)")
    for cap, r in results.items():
        base = r["nfct Net.replay (max=0)"]
        for label, rate in r.items():
            if label != "nfct Net.replay (max=0)":
                print(f"  {cap:<6} vs {label:<44} {base / rate:7.2f}x")
        ovs = f"{base / 1.35e6:.2f}x-{base / 1.1e6:.2f}x"
        print(f"  {cap:<6} vs {'OVS C pcap mode (anchors.md: 1.1-1.35 Mpps)':<44} {ovs}")
        print(f"  {cap:<6} vs {'target of the later issue (10 Mpps)':<44} {base / 10e6:7.2f}x")

    if tmp is not None:
        tmp.cleanup()
    else:
        print(f"captures kept in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
