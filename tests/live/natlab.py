"""A NAT host in the kernel harness's namespace, and the same host replayed by nfct, for
tests/live/test_nat_kernel.py.

The lab (nfct.kernel) injects every packet through its TUN device and routes everything else
out of its veth. Here it becomes a NAT router:

* the "inside" is behind the TUN device: routes for the client networks 10.1.0.0/16 and
  fd00:1::/64 point at it, so replies de-NATed to a client leave by the TUN (the harness reads
  them from the TUN's file descriptor);
* the "outside" is the veth, where the default routes already point: it gets the addresses
  203.0.113.1/24 and 2001:db8:ff::1/64 (masquerade and SNAT use them);
* replies from the outside are injected through the TUN device too (the TUN is the only way
  in): for conntrack and NAT the interface a packet came in on does not matter, except for
  ``redirect`` (the incoming interface's address: the TUN's 192.0.0.8) and the rules' iif
  matches, which the tests avoid;
* a destination in the veth's own subnets (203.0.113.0/24, 2001:db8:ff::/64) would need
  neighbour resolution, whose solicitations the host may not send: such packets never leave,
  so the tests send none;
* ICMP redirects are off and a chain at output priority -300 drops everything the host itself
  sends (ICMP errors, TCP resets of a redirected connection, redirects) before conntrack sees
  it, so only the injected packets touch the table.

The kernel's packets that left are captured (``run_packets(capture=True)``); nfct's are the
bytes of each forwarded packet after ``nfct.ip_rcv``/``nfct.ipv6_rcv`` (``skb.data``), and the
packets ``Net.replay(write_path=...)`` (``nfct replay --write``) writes. A known divergence:
neither carries the forwarding's TTL/hop limit decrement (``ip_forward`` ->
``ip_decrease_ttl``); :func:`as_forwarded` applies it with the kernel's checksum arithmetic
where it is missing (and counts it), so that the rest of the bytes are compared whole.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nfct
from helpers import count_run
from nfct import kernel, pcap
from nfct.compare import (
    Comparison,
    compare_classes,
    compare_events,
    compare_stats,
    compare_tables,
    parse_conntrack_line,
)

T0 = 1_000_000.0
SEED = 7

# The inside: clients behind the TUN device.
C1, C2, C3 = "10.1.0.2", "10.1.0.3", "10.1.0.4"
C61, C62 = "fd00:1::2", "fd00:1::3"
# The outside, behind the veth.
S1, S2 = "198.51.100.10", "198.51.100.11"
S61, S62 = "2001:db8:1::10", "2001:db8:1::11"
# The router's outside addresses (on the veth).
OUT4, OUT6 = "203.0.113.1", "2001:db8:ff::1"

Seq = list[tuple[bytes, float]]

#: nfct's reason for a packet its confirmation dropped (a clash it could not resolve).
CONFIRM_DROP = "nf_conntrack: clash not resolvable"


def timed(*pkts: bytes, gap: float = 0.001) -> Seq:
    return [(p, T0 + i * gap) for i, p in enumerate(pkts)]


#: The host's own table: nothing the host sends reaches conntrack.
HOST_TABLE = """
table inet nat_host {
    chain out_raw {
        type filter hook output priority -300; policy drop;
    }
}
"""


def setup_nat_host(lab: kernel.KernelLab) -> None:
    """Make the lab a NAT router (see the module docstring)."""
    lab.exec("ip", "addr", "add", f"{OUT4}/24", "dev", kernel.VETH_OUT)
    lab.exec("ip", "-6", "addr", "add", f"{OUT6}/64", "dev", kernel.VETH_OUT, "nodad")
    lab.exec("ip", "route", "add", "10.1.0.0/16", "dev", kernel.TUN_NAME)
    lab.exec("ip", "-6", "route", "add", "fd00:1::/64", "dev", kernel.TUN_NAME)
    for dev in ("all", "default", kernel.TUN_NAME, kernel.VETH_OUT):
        lab.write_sysctl(f"net/ipv4/conf/{dev}/send_redirects", "0")


# --- packets ----------------------------------------------------------------------------------


def forwarded_bytes(data: bytes) -> bytes:
    """``data`` as ``ip_forward`` sends it: TTL (hop limit) one less, and for IPv4 the header
    checksum updated as ``ip_decrease_ttl`` does (the 16-bit field read in host order, x86:
    little-endian, plus htons(0x0100), plus its carry)."""
    b = bytearray(data)
    if b[0] >> 4 == 4:
        b[8] -= 1
        check = int.from_bytes(b[10:12], "little") + 0x0001
        check = (check + (check >= 0xFFFF)) & 0xFFFF
        b[10:12] = check.to_bytes(2, "little")
    else:
        b[7] -= 1
    return bytes(b)


def checksums_ok(data: bytes) -> list[str]:
    """What is wrong with the checksums of an IP packet (IPv4 header, TCP, UDP, ICMP, ICMPv6;
    for an ICMP error also the quoted header's IPv4 checksum), empty when all are right.
    Fragments after the first are checked for their IPv4 header only."""
    bad: list[str] = []
    v6 = data[0] >> 4 == 6
    if v6:
        proto, l4 = data[6], 40
        src, dst = data[8:24], data[24:40]
        l4len = struct.unpack("!H", data[4:6])[0] + 40 - l4
        frag = False
    else:
        ihl = (data[0] & 15) * 4
        if _fold(data[:ihl]) != 0xFFFF:
            bad.append("IPv4 header checksum")
        proto, l4 = data[9], ihl
        src, dst = data[12:16], data[16:20]
        tot = struct.unpack("!H", data[2:4])[0]
        l4len = tot - ihl
        frag = struct.unpack("!H", data[6:8])[0] & 0x3FFF != 0
    if frag:
        return bad
    seg = data[l4 : l4 + l4len]

    def pseudo(p: int) -> bytes:
        if v6:
            return src + dst + struct.pack("!IxxxB", len(seg), p)
        return src + dst + struct.pack("!BBH", 0, p, len(seg))

    if proto == 6 and _fold(pseudo(6) + seg) != 0xFFFF:
        bad.append("TCP checksum")
    elif proto == 17 and (v6 or seg[6:8] != b"\0\0") and _fold(pseudo(17) + seg) != 0xFFFF:
        bad.append("UDP checksum")
    elif proto == 1:
        if _fold(seg) != 0xFFFF:
            bad.append("ICMP checksum")
        if seg[0] in (3, 4, 5, 11, 12) and len(seg) >= 28:
            inner = seg[8:]
            ihl = (inner[0] & 15) * 4
            if len(inner) >= ihl and _fold(inner[:ihl]) != 0xFFFF:
                bad.append("quoted IPv4 header checksum")
    elif proto == 58 and _fold(pseudo(58) + seg) != 0xFFFF:
        bad.append("ICMPv6 checksum")
    return bad


def _fold(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def reassemble4(frags: Sequence[bytes]) -> bytes:
    """IPv4 fragments back into one datagram (the first fragment's header, its offset and MF
    cleared, its length and checksum recomputed)."""
    parts = sorted(frags, key=lambda f: _frag_fields(f)[0])
    first = parts[0]
    ihl = (first[0] & 15) * 4
    payload = bytearray()
    for f in parts:
        fihl = (f[0] & 15) * 4
        off = (struct.unpack("!H", f[6:8])[0] & 0x1FFF) * 8
        body = f[fihl : struct.unpack("!H", f[2:4])[0]]
        payload[off : off + len(body)] = body
    hdr = bytearray(first[:ihl])
    hdr[2:4] = struct.pack("!H", ihl + len(payload))
    hdr[6:8] = struct.pack("!H", struct.unpack("!H", hdr[6:8])[0] & 0x4000)
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", ~_fold(bytes(hdr)) & 0xFFFF)
    return bytes(hdr) + bytes(payload)


def is_fragment(data: bytes) -> bool:
    if data[0] >> 4 == 6:
        return data[6] == 44
    return struct.unpack("!H", data[6:8])[0] & 0x3FFF != 0


def _frag_fields(f: bytes) -> tuple[int, bool, int, int]:
    """(offset in bytes, more fragments, header length, total length) of a fragment: IPv4, or
    IPv6 with the fragment header right after the fixed header."""
    if f[0] >> 4 == 6:
        off_mf = struct.unpack("!H", f[42:44])[0]
        return off_mf & 0xFFF8, bool(off_mf & 1), 48, 40 + struct.unpack("!H", f[4:6])[0]
    fl = struct.unpack("!H", f[6:8])[0]
    return (fl & 0x1FFF) * 8, bool(fl & 0x2000), (f[0] & 15) * 4, struct.unpack("!H", f[2:4])[0]


def reassemble6(frags: Sequence[bytes]) -> bytes:
    """IPv6 fragments (fragment header first) back into one datagram without it."""
    parts = sorted(frags, key=lambda f: _frag_fields(f)[0])
    payload = bytearray()
    for f in parts:
        off, _, hlen, tot = _frag_fields(f)
        payload[off : off + tot - hlen] = f[hlen:tot]
    hdr = bytearray(parts[0][:40])
    hdr[4:6] = struct.pack("!H", len(payload))
    hdr[6] = parts[0][40]
    return bytes(hdr) + bytes(payload)


def describe(data: bytes) -> str:
    """A short text for a packet: addresses, protocol, ports or ICMP type/id."""
    if data[0] >> 4 == 6:
        src, dst = ipaddress.IPv6Address(data[8:24]), ipaddress.IPv6Address(data[24:40])
        proto, l4 = data[6], data[40:]
    else:
        ihl = (data[0] & 15) * 4
        src, dst = ipaddress.IPv4Address(data[12:16]), ipaddress.IPv4Address(data[16:20])
        proto, l4 = data[9], data[ihl:]
    if proto in (6, 17) and len(l4) >= 4:
        sp, dp = struct.unpack("!HH", l4[:4])
        return f"{proto} {src}:{sp} > {dst}:{dp}"
    if proto in (1, 58) and len(l4) >= 8:
        return f"{proto} {src} > {dst} type {l4[0]} code {l4[1]} id {l4[4] << 8 | l4[5]}"
    return f"{proto} {src} > {dst}"


# --- running both -----------------------------------------------------------------------------


@dataclass
class NatRun:
    """One packet sequence through the kernel's NAT host and through nfct's model of it."""

    #: The packets injected, in order.
    sent: list[bytes]
    k: kernel.KernelResult
    #: nfct after :meth:`nfct.Net.feed` (classes, table, events, stats).
    net: nfct.Net
    lines: list[str]
    stats: dict[str, int]
    classes: list[str]
    events: list[str]
    #: The packets that left nfct's host: (index of the packet, bytes as forwarded).
    out: list[tuple[int, bytes]]
    #: nfct's table from the packet-by-packet run that gave ``out`` (must equal ``lines``).
    out_lines: list[str]
    cmp: Comparison
    byte_diffs: list[str] = field(default_factory=list)
    #: Packets nfct calls "dropped" (its confirmation dropped them) where the kernel's forward
    #: hook saw them as new (see :func:`run_nat`).
    confirm_drops: int = 0
    #: Forwarded packets whose TTL nfct's ``skb.data`` (``ttl_kept``) or ``replay --write``
    #: (``written_ttl_kept``) left undecremented.
    ttl_kept: int = 0
    written_ttl_kept: int = 0
    #: How ``replay --write``'s packets differ from the kernel's (in order).
    written_diffs: list[str] = field(default_factory=list)

    @property
    def kernel_out(self) -> list[tuple[int, bytes]]:
        """The kernel's packets that left, (index, bytes), fragments of one datagram
        reassembled."""
        assert self.k.egress is not None
        result: list[tuple[int, bytes]] = []
        pending: dict[tuple[int, bytes, bytes, int], list[bytes]] = {}
        for e in self.k.egress:
            if is_fragment(e.data):
                v6 = e.data[0] >> 4 == 6
                key = (
                    (e.packet, e.data[8:40], e.data[44:48], 6)
                    if v6
                    else (e.packet, e.data[12:20], e.data[4:6], e.data[9])
                )
                pending.setdefault(key, []).append(e.data)
                frags = pending[key]
                if _complete(frags):
                    result.append((e.packet, (reassemble6 if v6 else reassemble4)(frags)))
                    del pending[key]
            else:
                result.append((e.packet, e.data))
        return result

    def entries(self) -> list[dict[str, Any]]:
        """The kernel's entries, parsed."""
        return [parse_conntrack_line(line) for line in self.k.lines]

    def render(self) -> str:
        text = self.cmp.render()
        if self.byte_diffs:
            text += "\npackets that left differently (kernel -> nfct):\n  " + "\n  ".join(
                self.byte_diffs[:20]
            )
        if self.written_diffs:
            text += "\npackets replay --write wrote differently (kernel -> nfct):\n  "
            text += "\n  ".join(self.written_diffs[:20])
        return text


def _complete(frags: Sequence[bytes]) -> bool:
    have = 0
    last = False
    for f in sorted(frags, key=lambda f: _frag_fields(f)[0]):
        off, more, hlen, tot = _frag_fields(f)
        if off != have:
            return False
        have = off + tot - hlen
        last = not more
    return last


def _ttl(data: bytes) -> int:
    return data[7] if data[0] >> 4 == 6 else data[8]


def as_forwarded(data: bytes, sent_ttl: int) -> tuple[bytes, bool]:
    """nfct's bytes of a forwarded packet as they leave: ``forwarded_bytes`` applied where the
    TTL (hop limit) is still the one the packet was sent with (nfct does not decrement it:
    a known divergence, see the module docstring), and whether it had to be."""
    if _ttl(data) == sent_ttl:
        return forwarded_bytes(data), True
    return data, False


def nfct_out(
    host: dict[str, Any], pkts: Seq, sysctl: dict[str, int]
) -> tuple[list[tuple[int, bytes]], list[str], int]:
    """Each packet through ``ip_rcv``/``ipv6_rcv`` (arriving on the TUN device) of a fresh Net
    of ``host``: the bytes of those forwarded, as they leave, the table afterwards, and how
    many had their TTL left as it was."""
    net = nfct.Net(dict(sysctl), host=host, seed=SEED)
    out: list[tuple[int, bytes]] = []
    kept = 0
    for i, (data, ts) in enumerate(pkts):
        skb = nfct.Skb(data, ts)
        rcv = nfct.ipv6_rcv if data[0] >> 4 == 6 else nfct.ip_rcv
        res = rcv(net, skb, kernel.TUN_NAME)
        if res.path == "forward" and res.verdict == nfct.NF_ACCEPT:
            left, was_kept = as_forwarded(skb.data, _ttl(data))
            out.append((i, left))
            kept += was_kept
    return out, net.dump("extended").splitlines(), kept


def nfct_written(
    host: dict[str, Any], pkts: Seq, sysctl: dict[str, int]
) -> tuple[list[bytes], int]:
    """The packets ``Net.replay(..., write_path=...)`` (``nfct replay --write``) writes for a
    capture of ``pkts`` arriving on the TUN device, as they leave (see :func:`as_forwarded`:
    every packet here is sent with TTL 64), and how many had their TTL left as it was."""
    net = nfct.Net(dict(sysctl), host=host, seed=SEED)
    with tempfile.TemporaryDirectory(prefix="nfct-nat-") as tmp:
        cap, written = Path(tmp) / "in.pcap", Path(tmp) / "out.pcap"
        pcap.write_pcap(cap, [(ts, data) for data, ts in pkts], nanosecond=True)
        net.replay([cap], clock="capture", iif=kernel.TUN_NAME, write_path=written)
        records = [data for _, data in pcap.iter_records(written)]
    out = [as_forwarded(data, 64) for data in records]
    return [data for data, _ in out], sum(kept for _, kept in out)


def run_nat(
    pkts: Seq,
    ruleset: str,
    *,
    sysctl: dict[str, int] | None = None,
    setup: Callable[[kernel.KernelLab], None] | None = None,
    compare_bytes: bool = True,
    exact: bool = True,
) -> NatRun:
    """``pkts`` through the kernel's NAT host (``ruleset`` loaded, :func:`setup_nat_host`, then
    ``setup``) and through nfct with the host file taken in the lab. With ``exact``, tables,
    classes, events and statistics are compared (``cmp``); with ``compare_bytes`` also the
    packets that left (``byte_diffs``). Callers assert on ``run.cmp``/``run.byte_diffs`` or, where
    the kernel chooses at random, on the invariants."""
    sysctl = dict(sysctl or {})

    def lab_setup(lab: kernel.KernelLab) -> None:
        setup_nat_host(lab)
        if setup is not None:
            setup(lab)

    k = kernel.run_packets(
        pkts,
        sysctl=sysctl,
        per_packet=True,
        ruleset=HOST_TABLE + ruleset,
        setup=lab_setup,
        snapshot_host=True,
        capture=True,
    )
    assert k.host is not None and k.classes is not None and k.egress is not None
    assert k.events_lost == 0
    net = nfct.Net(dict(sysctl), host=k.host, seed=SEED)
    # Net.feed and ip_rcv take no interface: a packet arrives on the host's first interface
    # that is up and not loopback, which must be the TUN device every packet came in by.
    first_up = next(name for _, name, _, up in net.interfaces if up and name != "lo")
    assert first_up == kernel.TUN_NAME, net.interfaces
    net.listen_events(capacity=1 << 20)
    fed = net.feed([(ts, data) for data, ts in pkts], clock="capture")
    assert fed.per_packet is not None
    classes = [p.cls for p in fed.per_packet]
    lines = net.dump("extended").splitlines()
    stats = dict(net.stats)
    events = net.read_events()
    out, out_lines, ttl_kept = nfct_out(k.host, pkts, sysctl)
    cmp = Comparison()
    # A known divergence outside NAT (rust/ip: Outcome::class): a packet its confirmation
    # drops (a clash it cannot resolve) went through the forward hook, where the kernel's
    # counting rule saw it as new; nfct reports every packet with a drop verdict as
    # "dropped". Only that case is set aside, and counted in `confirm_drops`.
    compared = list(classes)
    confirm_drops = 0
    for i, p in enumerate(fed.per_packet):
        if (
            p.cls == "dropped"
            and p.reason == CONFIRM_DROP
            and i < len(k.classes)
            and k.classes[i] == "new"
        ):
            compared[i] = "new"
            confirm_drops += 1
    if exact:
        compare_tables(k.lines, lines, result=cmp)
        compare_stats(k.stats, stats, result=cmp)
        compare_classes(k.classes, compared, result=cmp)
        compare_events(k.events, events, result=cmp)
    run = NatRun([p for p, _ in pkts], k, net, lines, stats, classes, events, out, out_lines, cmp)
    run.confirm_drops = confirm_drops
    run.ttl_kept = ttl_kept
    if compare_bytes:
        run.byte_diffs = diff_packets(run.kernel_out, out)
        written, run.written_ttl_kept = nfct_written(k.host, pkts, sysctl)
        kern = [data for _, data in run.kernel_out]
        run.written_diffs = [
            f"{j + 1}: {describe(a) if a else '(none)'} -> {describe(b) if b else '(none)'}"
            for j, (a, b) in enumerate(itertools.zip_longest(kern, written))
            if a != b
        ]
    count_run(packets=k.sent, classes=cmp.packets, entries=cmp.kernel_entries)
    return run


def diff_packets(kern: Sequence[tuple[int, bytes]], mine: Sequence[tuple[int, bytes]]) -> list[str]:
    """The differences between two lists of (index, bytes) that left, in order."""
    diffs: list[str] = []
    for j in range(max(len(kern), len(mine))):
        a = kern[j] if j < len(kern) else None
        b = mine[j] if j < len(mine) else None
        if a == b:
            continue
        ta = f"#{a[0] + 1} {describe(a[1])} {a[1].hex()}" if a else "(none)"
        tb = f"#{b[0] + 1} {describe(b[1])} {b[1].hex()}" if b else "(none)"
        diffs.append(f"{ta}\n    -> {tb}")
    return diffs
