"""`nfct verify-kernel`: the same capture through the live kernel and through nfct."""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from nfct import Net
from nfct._types import Clock as _Clock
from nfct.compare import (
    Comparison,
    compare_classes,
    compare_events,
    compare_stats,
    compare_tables,
)

# Per-packet classification on the kernel side reads its counters after every packet.
AUTO_PER_PACKET_LIMIT = 2000


Setup = Callable[[Net], None]


def nfct_run(
    path: str | Path, sysctl: Mapping[str, int], clock: _Clock, setup: Setup | None = None
) -> tuple[list[str], dict[str, int], list[str]]:
    """nfct's table lines, statistics and per-packet classes for one capture. ``setup`` gets
    the table before the replay (to register hook operations)."""
    lines, stats, classes, _ = nfct_run_events(path, sysctl, clock, setup)
    return lines, stats, classes


def nfct_run_events(
    path: str | Path, sysctl: Mapping[str, int], clock: _Clock, setup: Setup | None = None
) -> tuple[list[str], dict[str, int], list[str], list[str]]:
    """As `nfct_run`, plus the `conntrack -E -o extended` lines a listener saw."""
    net = Net(dict(sysctl))
    if setup is not None:
        setup(net)
    with tempfile.TemporaryDirectory(prefix="nfct-verify-") as tmp:
        packets = Path(tmp) / "packets.txt"
        events = Path(tmp) / "events.txt"
        net.replay([str(path)], clock=clock, packets_path=str(packets), events_path=str(events))
        classes = [line.split()[1] for line in packets.read_text().splitlines() if line]
        event_lines = events.read_text().splitlines()
    return net.dump("extended").splitlines(), dict(net.stats), classes, event_lines


# pcap's LINKTYPE_RAW: each record is an IPv4 or IPv6 packet.
_LINKTYPE_RAW = 101


def write_pcap(path: str | Path, packets: Iterable[tuple[bytes, float]]) -> None:
    """Write IP packets (bytes, time in seconds) as a nanosecond pcap of raw IP."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, _LINKTYPE_RAW))
        for data, t in packets:
            ns = round(t * 1e9)
            f.write(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(data), len(data)))
            f.write(data)


def nfct_run_packets(
    packets: Iterable[tuple[bytes, float]],
    sysctl: Mapping[str, int],
    clock: _Clock = "capture",
    setup: Setup | None = None,
) -> tuple[list[str], dict[str, int], list[str]]:
    """nfct's table lines, statistics and per-packet classes for a sequence of IP packets."""
    with tempfile.TemporaryDirectory(prefix="nfct-verify-") as tmp:
        path = Path(tmp) / "packets.pcap"
        write_pcap(path, packets)
        return nfct_run(path, sysctl, clock, setup)


def verify_capture(
    path: str | Path, sysctl: Mapping[str, int], clock: _Clock, per_packet: str
) -> Comparison:
    """Run one capture through both and compare."""
    from nfct import kernel

    n_ip = sum(1 for _ in kernel.iter_capture_ip(path))
    want_classes = per_packet == "yes" or (per_packet == "auto" and n_ip <= AUTO_PER_PACKET_LIMIT)
    k = kernel.run_capture(
        path, sysctl=dict(sysctl), per_packet=want_classes, pace=clock == "capture"
    )
    lines, stats, classes, events = nfct_run_events(path, sysctl, clock)
    res = compare_tables(k.lines, lines)
    compare_stats(k.stats, stats, result=res)
    if want_classes and k.classes is not None:
        compare_classes(k.classes, classes, result=res)
    else:
        res.excluded.append(f"per-packet classes ({n_ip} packets; use --per-packet yes)")
    compare_events(k.events, events, result=res)
    return res


def verify_kernel_cli(args: argparse.Namespace) -> int:
    """Entry point of `nfct verify-kernel`."""
    from nfct.kernel import KernelUnavailable, check_available

    try:
        check_available()
    except KernelUnavailable as e:
        print(f"nfct verify-kernel: {e}", file=sys.stderr)
        return 2
    sysctl = dict(args.sysctl)
    all_agree = True
    totals = [0, 0, 0, 0]
    for path in args.captures:
        if not Path(path).is_file():
            print(f"nfct verify-kernel: {path}: no such file", file=sys.stderr)
            return 2
        res = verify_capture(path, sysctl, args.clock, args.per_packet)
        print(f"== {path}")
        print(res.render(limit=args.limit))
        all_agree &= res.agree
        totals[0] += res.matched
        totals[1] += max(res.kernel_entries, res.nfct_entries)
        totals[2] += res.packets_matched
        totals[3] += res.packets
    if len(args.captures) > 1:
        print(
            f"== total: entries matched {totals[0]}/{totals[1]}, "
            f"packet classes matched {totals[2]}/{totals[3]}"
        )
    print("agreement" if all_agree else "DISAGREEMENT", file=sys.stderr)
    return 0 if all_agree else 1
