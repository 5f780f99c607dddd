"""The `nfct` command."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence

import nfct
from nfct import CaptureError, Net, NfctError
from nfct.conntrack_text import parse_conntrack_line

OUTPUTS = ("extended", "conntrack", "proc", "stats", "json", "packets", "events")


def _sysctl_pair(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: value {value!r} is not an integer") from None


def _version() -> str:
    """The installed distribution's version (its metadata), as `pip show nfct` gives it."""
    try:
        return importlib.metadata.version("nfct")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: no package metadata)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nfct", description="Linux netfilter connection tracking in userspace."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "replay",
        help="replay captures through conntrack and print the resulting table",
        description=(
            "Feed every IP packet of the captures, in order, through the netfilter hooks of a "
            "Linux host (by default a forwarding router: PRE_ROUTING with defrag and "
            "conntrack, routing, FORWARD, POST_ROUTING with confirmation), and print what "
            "`conntrack -L -o extended` would print afterwards."
        ),
    )
    r.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng file")
    r.add_argument(
        "--sysctl",
        action="append",
        default=[],
        type=_sysctl_pair,
        metavar="NAME=VALUE",
        help="set a /proc/sys/net/netfilter value, e.g. nf_conntrack_checksum=0",
    )
    r.add_argument(
        "--clock",
        choices=("capture", "frozen"),
        default="capture",
        help="capture: the capture's timestamps; frozen: no time passes (as a kernel fed "
        "the capture as fast as possible)",
    )
    r.add_argument("--output", "-o", choices=OUTPUTS, default="extended")
    r.add_argument("--seed", type=int, default=None, help="fixed hash seed (reproducible order)")
    r.add_argument(
        "--path",
        choices=("forward", "local-in", "local-out"),
        default="forward",
        help="forward: the host routes the capture's packets (those to a --local-addr are "
        "delivered, those from one are sent by the host); local-in: every packet is received "
        "by the host (a capture taken on it); local-out: every packet is sent by the host",
    )
    r.add_argument(
        "--local-addr",
        action="append",
        default=[],
        metavar="ADDR",
        help="an address the host owns (repeatable)",
    )
    r.add_argument(
        "--zone",
        type=int,
        default=None,
        metavar="ID",
        help="put every entry in conntrack zone ID (a `ct zone set` template in the raw "
        "table, before conntrack)",
    )
    r.add_argument(
        "--drop-invalid",
        action="store_true",
        help="drop packets in ct state invalid at the filter priority of PRE_ROUTING "
        "(`ct state invalid drop`)",
    )
    r.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="track on N threads sharing one table, packets spread by a symmetric flow hash "
        "as RSS does (1, the default, is exactly deterministic; not with --output events)",
    )
    r.add_argument(
        "--event-timestamps",
        action="store_true",
        help="with --output events: prefix each line with [seconds.micros] from the capture "
        "clock, as conntrack -E -o timestamp does",
    )
    v = sub.add_parser(
        "verify-kernel",
        help="replay captures through the live kernel's conntrack and through nfct, and compare",
        description=(
            "Replay each capture through the running kernel's conntrack (in a private network "
            "namespace with no link to the host's network; needs root, nft and conntrack) and "
            "through nfct, then print the agreement and the differences. Exit status 0 only "
            "on full agreement."
        ),
    )
    v.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng file")
    v.add_argument("--sysctl", action="append", default=[], type=_sysctl_pair, metavar="NAME=VALUE")
    v.add_argument(
        "--clock",
        choices=("frozen", "capture"),
        default="frozen",
        help="frozen: the kernel is fed as fast as possible and nfct lets no time pass; "
        "capture: the kernel is fed at the capture's pace (short captures) and nfct runs on "
        "the capture's clock",
    )
    v.add_argument(
        "--per-packet",
        choices=("auto", "yes", "no"),
        default="auto",
        help="compare every packet's ct state class (the kernel side reads its counters after "
        "each packet; auto = for captures of up to 2000 IP packets)",
    )
    v.add_argument("--limit", type=int, default=20, help="differences shown per section")
    return p


def _summary_line(summary: dict[str, object], entries: int) -> str:
    return (
        f"nfct: {summary['packets']} packets ({summary['frames']} frames, "
        f"{summary['non_ip']} not IP), {entries} entries, {summary['invalid']} invalid, "
        f"{summary['dropped']} dropped"
    )


def _rules(net: Net, args: argparse.Namespace) -> None:
    """Registers the built-in operations the options ask for."""
    if args.zone is not None:
        zone = nfct.BuiltinHook.ct_zone(args.zone)
        for hook in (nfct.NF_INET_PRE_ROUTING, nfct.NF_INET_LOCAL_OUT):
            ops = nfct.NfHookOps(zone, nfct.NFPROTO_INET, hook, nfct.NF_IP_PRI_RAW)
            nfct.nf_register_net_hook(net, ops)
    if args.drop_invalid:
        ops = nfct.NfHookOps(
            nfct.BuiltinHook.drop_invalid(),
            nfct.NFPROTO_INET,
            nfct.NF_INET_PRE_ROUTING,
            nfct.NF_IP_PRI_FILTER,
        )
        nfct.nf_register_net_hook(net, ops)


def _replay(args: argparse.Namespace) -> int:
    try:
        net = Net(dict(args.sysctl), seed=args.seed, local_addrs=args.local_addr)
        _rules(net, args)
    except NfctError as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    error: CaptureError | None = None
    packets_path = events_path = None
    if args.output == "packets":
        sys.stdout.flush()
        packets_path = "-"
    elif args.output == "events":
        sys.stdout.flush()
        events_path = "-"
    try:
        summary = net.replay(
            args.captures,
            clock=args.clock,
            packets_path=packets_path,
            events_path=events_path,
            event_timestamps=args.event_timestamps,
            path=args.path,
            threads=args.threads,
        )
    except CaptureError as e:
        error = e
        summary = getattr(e, "summary", {})
    except NfctError as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    lines = net.dump("extended")
    entries = lines.count("\n")
    if args.output in ("extended", "conntrack", "proc"):
        sys.stdout.write(lines if args.output == "extended" else net.dump(args.output))
    elif args.output == "stats":
        sys.stdout.write(net.stats_text())
    elif args.output == "json":
        doc = {
            "captures": args.captures,
            "clock": args.clock,
            "path": args.path,
            "local_addrs": args.local_addr,
            "sysctl": dict(args.sysctl),
            "lines": lines.splitlines(),
            "entries": [parse_conntrack_line(x) for x in lines.splitlines()],
            "stats": net.stats,
            "count": net.count,
            "summary": summary,
        }
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    sys.stdout.flush()
    if summary:
        print(_summary_line(summary, entries), file=sys.stderr)
    if error is not None:
        print(f"nfct: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nfct` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "replay":
            return _replay(args)
        if args.command == "verify-kernel":
            from nfct.verify import verify_kernel_cli

            return verify_kernel_cli(args)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
