"""The `nfct` command."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

import nfct
from nfct import CaptureError, Conn, Net, NfctError, NfctValueError, ReplayResult, Tuple

OUTPUTS = ("extended", "conntrack", "proc", "stats", "json", "packets", "events", "counters")


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
    import importlib.metadata  # only for --version: importing it costs more than a replay

    try:
        return importlib.metadata.version("nfct")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: no package metadata)"


class _VersionAction(argparse.Action):
    """`--version`, reading the package metadata only when asked."""

    def __init__(
        self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: Any
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _host_options(r: argparse.ArgumentParser) -> None:
    """The options that say what host a capture goes through (replay and explain)."""
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
        "--host",
        metavar="FILE",
        default=None,
        help="replay through this host (a host file from `nfct host-snapshot`: its "
        "interfaces, routes, nftables ruleset and sysctls) instead of nfct's default router",
    )
    r.add_argument(
        "--iif",
        metavar="NAME",
        default=None,
        help="with --host: every packet from the wire arrives on this interface (default: "
        "the one a pcapng names for the packet, else the first interface up and not loopback)",
    )
    r.add_argument(
        "--mtu",
        type=int,
        default=None,
        metavar="N",
        help="the MTU of the way out: of the default route's interface with --host, of the "
        "default router's otherwise (1500)",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nfct", description="Linux netfilter connection tracking in userspace."
    )
    p.add_argument("--version", action=_VersionAction, help="show the version and exit")
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
    _host_options(r)
    r.add_argument("--output", "-o", choices=OUTPUTS, default="extended")
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
    r.add_argument(
        "--at",
        action="append",
        default=[],
        metavar="TIME:ACTION",
        help="at TIME (seconds after the capture's first packet, or @EPOCH), do ACTION: "
        "`delete[:FILTERS]` (conntrack -D), `flush` (conntrack -F), "
        "`update:set_mark=N[,FILTERS]` or `update:timeout=S[,FILTERS]` (conntrack -U), "
        "`ruleset:FILE` (a host file's or `nft -j` ruleset replaces the host's); FILTERS are "
        "NAME=VALUE pairs separated by commas: proto, family, src, dst, sport, dport, "
        "reply_src, reply_dst, reply_sport, reply_dport, mark, mask, zone, state, status "
        "(repeatable)",
    )
    r.add_argument(
        "--write",
        "-w",
        metavar="FILE",
        default=None,
        help="write the packets that leave the host (forwarded or sent, as NAT rewrote "
        "them) to FILE, a pcap of raw IP packets (replays on one thread)",
    )
    e = sub.add_parser(
        "explain",
        help="show one packet's way through the host, hook by hook",
        description=(
            "Replay a capture up to one frame, then show that frame's way through the host: "
            "every operation and rule at every hook with its verdict, the routing decision, "
            "the conntrack entry before and after, and the reason for an INVALID class or a "
            "drop in the kernel's words."
        ),
    )
    e.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file")
    e.add_argument(
        "frame",
        type=int,
        metavar="FRAME",
        help="the frame, numbered from 1 as --output packets numbers them",
    )
    e.add_argument("--json", action="store_true", help="print the explanation as JSON")
    _host_options(e)
    s = sub.add_parser(
        "host-snapshot",
        help="write this host's interfaces, routes, nftables ruleset and sysctls as a host file",
        description=(
            "Print the host file of the host this runs on (ip -j addr, ip -j route, ip -j rule, "
            "nft -j list ruleset, and the conntrack, forwarding and rp_filter sysctls), for "
            "`nfct replay --host FILE` on any machine. No root needed, except to read the "
            "nftables ruleset (left out with a warning when it cannot be read)."
        ),
    )
    s.add_argument("-o", "--output", metavar="FILE", default=None, help="write here, not stdout")
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


def _summary_line(summary: ReplayResult, entries: int) -> str:
    return (
        f"nfct: {summary['packets']} packets ({summary['frames']} frames, "
        f"{summary['non_ip']} not IP), {entries} entries, {summary['invalid']} invalid, "
        f"{summary['dropped']} dropped"
    )


# --- the entries of --output json ---------------------------------------------------------------

# The L3 names conntrack -L prints.
_L3_NAMES: dict[int, str] = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}
# DCCP has no tracker in the modelled kernel (Conn.proto says "unknown", as /proc does), but
# conntrack-tools knows its name and prints its ports, 0 where the kernel sent none.
_IPPROTO_DCCP = 33
# What Conn and Tuple do not expose (yet): GRE keys, the zone's direction, the timestamp's
# delta-time and use=. These come from the entry's own line.
_GRE_KEYS = ("srckey", "dstkey")
_ZONE_DIR_KEYS = ("zone-orig", "zone-reply")
_TAIL_KEYS = ("zone", "delta-time", "use")


def _line_fields(line: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """From one `conntrack -L -o extended` line, only what the attributes do not give: the GRE
    keys of each tuple, and the zone, delta-time and use fields."""
    keys: list[dict[str, str]] = [{}, {}]
    fields: dict[str, str] = {}
    direction = -1
    for word in line.split():
        key, _, value = word.partition("=")
        if key == "src":
            direction += 1
        elif key in _GRE_KEYS and 0 <= direction <= 1:
            keys[direction][key] = value
        elif key in _ZONE_DIR_KEYS or key in _TAIL_KEYS:
            fields[key] = value
    return keys, fields


def _address(l3num: int, text: str) -> str:
    """An address as conntrack-tools print it: IPv6 in inet_ntop's form (``::1.2.3.4``)."""
    if l3num == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))
    return text


def _tuple(t: Tuple, gre: dict[str, str], counter: tuple[int, int] | None) -> dict[str, str]:
    """One direction's fields, as conntrack -L prints them (values as text)."""
    d = {"src": _address(t.l3num, t.src), "dst": _address(t.l3num, t.dst)}
    if t.sport is not None and t.dport is not None:
        d["sport"], d["dport"] = str(t.sport), str(t.dport)
    elif t.protonum == _IPPROTO_DCCP:
        d["sport"] = d["dport"] = "0"
    elif t.type is not None and t.code is not None and t.id is not None:
        d["type"], d["code"], d["id"] = str(t.type), str(t.code), str(t.id)
    d.update(gre)
    if counter is not None:
        d["packets"], d["bytes"] = str(counter[0]), str(counter[1])
    return d


def _flags(status: int) -> list[str]:
    """The bracketed flags of a listing line, in its order."""
    flags = [] if status & nfct.IPS_SEEN_REPLY else ["UNREPLIED"]
    if status & nfct.IPS_HW_OFFLOAD:
        flags.append("HW_OFFLOAD")
    elif status & nfct.IPS_OFFLOAD:
        flags.append("OFFLOAD")
    elif status & nfct.IPS_ASSURED:
        flags.append("ASSURED")
    return flags


def json_entry(conn: Conn) -> dict[str, Any]:
    """One entry of ``--output json``: its ``conntrack -L -o extended`` line as data (l3,
    proto, protonum, timeout, state, orig, reply, flags, extra; numbers inside orig, reply and
    extra as text), from the live entry's attributes."""
    orig, reply = conn.orig, conn.reply
    gre, fields = _line_fields(conn.line())
    counters = conn.counters
    extra = {k: fields[k] for k in _ZONE_DIR_KEYS if k in fields}
    extra["mark"] = str(conn.mark)
    extra.update((k, fields[k]) for k in _TAIL_KEYS if k in fields)
    return {
        "l3": _L3_NAMES.get(orig.l3num, "unknown"),
        "proto": "dccp" if orig.protonum == _IPPROTO_DCCP else conn.proto,
        "protonum": orig.protonum,
        "timeout": conn.timeout,
        "state": conn.state,
        "orig": _tuple(orig, gre[0], counters[0] if counters else None),
        "reply": _tuple(reply, gre[1], counters[1] if counters else None),
        "flags": _flags(conn.status),
        "extra": extra,
    }


# --- replay ---------------------------------------------------------------------------------------


_INT_KEYS = frozenset(
    {
        "sport",
        "dport",
        "reply_sport",
        "reply_dport",
        "mark",
        "mask",
        "zone",
        "set_mark",
        "set_mask",
        "timeout",
    }
)
_FILTER_KEYS = frozenset(
    {"proto", "family", "src", "dst", "reply_src", "reply_dst", "state", "status"}
) | (_INT_KEYS - {"set_mark", "set_mask", "timeout"})


def _action_args(text: str, allowed: frozenset[str]) -> dict[str, Any]:
    """`NAME=VALUE,...` as keyword arguments (numbers where the name takes one)."""
    kw: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in allowed:
            raise NfctValueError(
                f"--at: {part!r} is not NAME=VALUE with NAME one of {', '.join(sorted(allowed))}"
            )
        try:
            kw[name] = int(value, 0) if name in _INT_KEYS else value
        except ValueError:
            raise NfctValueError(f"--at: {name}={value!r} is not a number") from None
    return kw


def _scheduled(specs: Sequence[str], captures: Sequence[str]) -> list[tuple[float, Any]]:
    """The `--at TIME:ACTION` options as `Net.replay(at=...)` takes them."""
    if not specs:
        return []
    first: float | None = None
    out: list[tuple[float, Any]] = []
    for spec in specs:
        when, sep, action = spec.partition(":")
        if not sep:
            raise NfctValueError(f"--at {spec!r}: expected TIME:ACTION")
        try:
            if when.startswith("@"):
                t = float(when[1:])
            else:
                if first is None:
                    from nfct.pcap import iter_records

                    first = next((ts for ts, _ in iter_records(captures[0])), 0.0)
                t = first + float(when)
        except ValueError:
            raise NfctValueError(f"--at {spec!r}: {when!r} is not a time in seconds") from None
        verb, _, rest = action.partition(":")
        fn: Any
        if verb == "delete":
            kw = _action_args(rest, _FILTER_KEYS)
            fn = lambda net, kw=kw: net.delete(**kw)  # noqa: E731
        elif verb == "flush" and not rest:
            fn = lambda net: net.flush()  # noqa: E731
        elif verb == "update":
            kw = _action_args(rest, _FILTER_KEYS | {"set_mark", "set_mask", "timeout"})
            if "set_mark" not in kw and "timeout" not in kw:
                raise NfctValueError(f"--at {spec!r}: update needs set_mark=N or timeout=S")
            fn = lambda net, kw=kw: net.update(**kw)  # noqa: E731
        elif verb == "ruleset" and rest:
            path = rest
            if not os.path.exists(path):
                raise NfctValueError(f"--at {spec!r}: no such file {path!r}")
            fn = lambda net, path=path: net.load_ruleset(_json_file(path))  # noqa: E731
        else:
            raise NfctValueError(
                f"--at {spec!r}: ACTION is delete[:FILTERS], flush, "
                "update:SETTINGS[,FILTERS] or ruleset:FILE"
            )
        out.append((t, fn))
    return out


def _json_file(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


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


def _make_net(args: argparse.Namespace) -> Net:
    """The host the options describe, with the built-in operations they ask for."""
    net = Net(
        dict(args.sysctl),
        seed=args.seed,
        local_addrs=args.local_addr,
        host=args.host,
        mtu=args.mtu,
    )
    _rules(net, args)
    return net


_HOOK_NAMES = ("PRE_ROUTING", "LOCAL_IN", "FORWARD", "LOCAL_OUT", "POST_ROUTING")
_CTINFO_NAMES = (
    "ESTABLISHED",
    "RELATED",
    "NEW",
    "ESTABLISHED_REPLY",
    "RELATED_REPLY",
    "NEW_REPLY",
    "?",
    "UNTRACKED",
)


def explain_text(e: dict[str, Any]) -> str:
    """An explanation (`Net.explain`) as `nfct explain` prints it."""
    out = []
    t = e["tuple"]
    what = "not IP"
    if t is not None:
        ports = f" {t['sport']} -> {t['dport']}" if t["proto"] in (6, 17, 33, 132, 136) else ""
        what = f"{t['family']} proto {t['proto']} {t['src']} -> {t['dst']}{ports}"
    out.append(f"frame {e['frame']} at {e['tstamp']:.6f}: {what}, {e['len']} bytes")
    for st in e["steps"]:
        verdict = nfct.Verdict(st["verdict"]).name.removeprefix("NF_")
        if st["hook"] is None:
            line = f"  routing: {st['rule']}"
        else:
            prio = {2147483647: "INT_MAX", 2147483646: "INT_MAX-1"}.get(
                st["priority"], str(st["priority"])
            )
            line = f"  {_HOOK_NAMES[st['hook']]:<12} {prio:>9}  {st['name']}: {verdict}"
            if st["rule"] and st["rule"] != st["name"]:
                line += f" ({st['rule']})"
            if st["ctinfo"] is not None and st["name"].endswith(("_in", "_local")):
                line += f", ctinfo {_CTINFO_NAMES[st['ctinfo']]}"
        if st["reason"]:
            line += f": {st['reason']}"
        out.append(line)
        if st["before"] != st["after"]:
            out.append(f"      entry before: {st['before'] or '(none)'}")
            out.append(f"      entry after:  {st['after'] or '(none)'}")
    verdict = nfct.Verdict(e["verdict"]).name.removeprefix("NF_")
    tail = f"result: {verdict}, path {e['path']}, class {e['cls']}"
    if e["dropped_by"]:
        tail += f", dropped by {e['dropped_by']}"
    if e["reason"]:
        tail += f": {e['reason']}"
    out.append(tail)
    return "\n".join(out) + "\n"


def _explain(args: argparse.Namespace) -> int:
    try:
        net = _make_net(args)
        e = net.explain(args.capture, args.frame, clock=args.clock, path=args.path, iif=args.iif)
    except (NfctError, CaptureError) as err:
        print(f"nfct: {err}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(e, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(explain_text(e))
    return 0


def _replay(args: argparse.Namespace) -> int:
    try:
        net = _make_net(args)
        at = _scheduled(args.at, args.captures)
    except (NfctError, CaptureError) as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    for name in net.ignored_sysctls:
        if name.startswith("net.netfilter."):
            print(f"nfct: host file: {name} is not modelled (ignored)", file=sys.stderr)
    error: CaptureError | None = None
    interrupted = False
    summary: ReplayResult | None = None
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
            iif=args.iif,
            write_path=args.write,
            at=at,
        )
    except CaptureError as e:
        error = e
        summary = e.summary
    except KeyboardInterrupt as e:
        # Stopped between two batches of frames: what was done is printed as for a
        # truncated capture.
        interrupted = True
        summary = getattr(e, "summary", None)
    except NfctError as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    if args.output in ("extended", "conntrack", "proc"):
        text = net.dump(args.output)
        entries = text.count("\n")
        sys.stdout.write(text)
    elif args.output == "json":
        conns = list(net)
        entries = len(conns)
        doc = {
            "captures": args.captures,
            "clock": args.clock,
            "path": args.path,
            "local_addrs": args.local_addr,
            "sysctl": dict(args.sysctl),
            "lines": [conn.line() for conn in conns],
            "entries": [json_entry(conn) for conn in conns],
            "stats": net.stats,
            "count": net.count,
            "summary": summary.to_dict() if summary is not None else {},
        }
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        entries = len(net)
        if args.output == "stats":
            sys.stdout.write(net.stats_text())
        elif args.output == "counters":
            sys.stdout.write(_counters_text(net))
    sys.stdout.flush()
    if summary:
        print(_summary_line(summary, entries), file=sys.stderr)
    if error is not None:
        print(f"nfct: {error}", file=sys.stderr)
        return 2
    if interrupted:
        print("nfct: interrupted", file=sys.stderr)
        return 130
    return 0


def _counters_text(net: Net) -> str:
    """The ruleset's counters, one per line: where (`FAMILY TABLE CHAIN handle N`, or
    `FAMILY TABLE counter NAME`), then `packets N bytes N` as nft prints them."""
    out = []
    for c in net.counters():
        if c["name"] is not None:
            where = f"{c['family']} {c['table']} counter {c['name']}"
        else:
            where = f"{c['family']} {c['table']} {c['chain']} handle {c['handle']}"
        out.append(f"{where} packets {c['packets']} bytes {c['bytes']}\n")
    return "".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nfct` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "replay":
            return _replay(args)
        if args.command == "explain":
            return _explain(args)
        if args.command == "host-snapshot":
            from nfct.host import snapshot_cli

            return snapshot_cli(args.output)
        if args.command == "verify-kernel":
            from nfct.kernel.verify import verify_kernel_cli

            return verify_kernel_cli(args)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
