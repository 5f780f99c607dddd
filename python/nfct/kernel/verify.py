"""`nfct verify-kernel`: the same capture through the live kernel and through nfct."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from nfct import CaptureError, Net, NfctError, pcap
from nfct._types import Clock
from nfct.kernel.capture import iter_capture_ip
from nfct.kernel.compare import (
    Comparison,
    compare_classes,
    compare_events,
    compare_stats,
    compare_tables,
)
from nfct.kernel.lab import GLOBAL_SYSCTLS, KernelUnavailable, check_available
from nfct.kernel.runs import run_capture

__all__ = [
    "AUTO_PER_PACKET_LIMIT",
    "Setup",
    "nfct_run",
    "nfct_run_events",
    "nfct_run_packets",
    "verify_capture",
    "verify_kernel_cli",
]

# Per-packet classification on the kernel side reads its counters after every packet.
AUTO_PER_PACKET_LIMIT = 2000


Setup = Callable[[Net], None]


def nfct_run(
    path: str | Path, sysctl: Mapping[str, int], clock: Clock, setup: Setup | None = None
) -> tuple[list[str], dict[str, int], list[str]]:
    """nfct's table lines, statistics and per-packet classes for one capture. ``setup`` gets
    the table before the replay (to register hook operations)."""
    lines, stats, classes, _ = _nfct(Path(path), sysctl, clock, setup)
    return lines, stats, classes


def nfct_run_events(
    path: str | Path, sysctl: Mapping[str, int], clock: Clock, setup: Setup | None = None
) -> tuple[list[str], dict[str, int], list[str], list[str]]:
    """As `nfct_run`, plus the `conntrack -E -o extended` lines a listener saw."""
    return _nfct(Path(path), sysctl, clock, setup)


def nfct_run_packets(
    packets: Iterable[tuple[bytes, float]],
    sysctl: Mapping[str, int],
    clock: Clock = "capture",
    setup: Setup | None = None,
) -> tuple[list[str], dict[str, int], list[str]]:
    """nfct's table lines, statistics and per-packet classes for a sequence of IP packets
    (``(packet, tstamp)``, the order :func:`nfct.kernel.run_packets` takes them in)."""
    records = [(ts, packet) for packet, ts in packets]
    lines, stats, classes, _ = _nfct(records, sysctl, clock, setup)
    return lines, stats, classes


def _nfct(
    source: Path | list[pcap.Record],
    sysctl: Mapping[str, int],
    clock: Clock,
    setup: Setup | None,
) -> tuple[list[str], dict[str, int], list[str], list[str]]:
    """A fresh table's listing, statistics, per-packet classes and events after ``source``."""
    net = Net(dict(sysctl))
    if setup is not None:
        setup(net)
    # A listener, as `conntrack -E` beside the kernel's run (with nf_conntrack_events=2 only
    # entries created while one listens send events); unbounded, as the queue is read after.
    net.listen_events(capacity=sys.maxsize)
    classes = _nfct_classes(net, source, clock)
    return net.dump("extended").splitlines(), dict(net.stats), classes, net.read_events()


def _nfct_classes(net: Net, source: Path | Iterable[pcap.Record], clock: Clock) -> list[str]:
    """Replays ``source`` (a capture file, or ``(tstamp, IP packet)`` records) through ``net``
    as a forwarding router and returns each IP packet's class, as ``nfct replay --output
    packets`` prints it.

    The one place left that writes nfct's results to a file and reads the text back (records
    go through a temporary raw-IP pcap too): to be replaced by the binding's planned
    ``Net.feed(records, clock=..., path="forward")``, whose ``.packets`` carry each packet's
    class (``cls``).
    """
    with tempfile.TemporaryDirectory(prefix="nfct-verify-") as tmp:
        if isinstance(source, Path):
            capture = source
        else:
            capture = Path(tmp) / "packets.pcap"
            pcap.write_pcap(capture, source, nanosecond=True)
        lines = Path(tmp) / "packets.txt"
        net.replay([capture], clock=clock, packets_path=lines)
        return [line.split()[1] for line in lines.read_text().splitlines() if line]


def verify_capture(
    path: str | Path,
    sysctl: Mapping[str, int],
    clock: Clock,
    per_packet: str,
    global_sysctl: Mapping[str, int] | None = None,
) -> Comparison:
    """Run one capture through both and compare. The sysctls named in ``global_sysctl``
    (``nf_conntrack_max``, ``nf_conntrack_buckets``: machine-wide in the kernel) are set on
    the machine for the kernel's run and restored, and given to nfct with the others."""
    n_ip = sum(1 for _ in iter_capture_ip(path))
    want_classes = per_packet == "yes" or (per_packet == "auto" and n_ip <= AUTO_PER_PACKET_LIMIT)
    glob = dict(global_sysctl or {})
    k = run_capture(
        path,
        sysctl={k: v for k, v in sysctl.items() if k not in glob},
        per_packet=want_classes,
        pace=clock == "capture",
        global_sysctl=glob or None,
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


def _message(e: BaseException) -> str:
    """An error as one line (a KeyError's str() is the repr of its argument)."""
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e)


def verify_kernel_cli(args: argparse.Namespace) -> int:
    """Entry point of `nfct verify-kernel`."""
    sysctl = dict(args.sysctl)
    try:
        Net(sysctl)  # an unknown sysctl or a value out of its range: one line, before the kernel
    except NfctError as e:
        print(f"nfct verify-kernel: --sysctl: {_message(e)}", file=sys.stderr)
        return 2
    try:
        check_available()
    except KernelUnavailable as e:
        print(f"nfct verify-kernel: {e}", file=sys.stderr)
        return 2
    glob = {
        k: sysctl[k] for k in list(sysctl) if k.removeprefix("net.netfilter.") in GLOBAL_SYSCTLS
    }
    all_agree = True
    totals = [0, 0, 0, 0]
    for path in args.captures:
        if not Path(path).is_file():
            print(f"nfct verify-kernel: {path}: no such file", file=sys.stderr)
            return 2
        try:
            res = verify_capture(path, sysctl, args.clock, args.per_packet, glob)
        except (CaptureError, NfctError) as e:
            print(f"nfct verify-kernel: {_message(e)}", file=sys.stderr)
            return 2
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
