"""The `nfct` command."""

from __future__ import annotations

import argparse
import math
import os
import sys

import nfct
from nfct import CaptureError, Conn, Net, NfctError, NfctValueError, ReplayResult, Tuple
from nfct._nfct import _LINK_TYPES_DECODED, _link_type
from nfct.inputs import CaptureInputs
from nfct.progress import progress_bar

# typing.TYPE_CHECKING without importing typing: a replay's start-up imports neither typing
# (2 ms) nor json, threading or shutil (tests/test_startup.py checks it).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from nfct._pipes import LinePipe
    from nfct.export import Exporter

CAPTURE_HELP = (
    "pcap or pcapng file, also compressed (gzip, bzip2, xz, zstd: recognised by its first "
    "bytes); - reads standard input"
)
OUTPUTS = ("extended", "conntrack", "proc", "stats", "json", "packets", "events", "counters")


def _sysctl_pair(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: value {value!r} is not an integer") from None


def _ranged(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``lo`` to ``hi`` (a clear error, not an overflow
    deep in the extension module)."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= n <= hi:
            raise argparse.ArgumentTypeError(f"{n} is not in {lo}..{hi}")
        return n

    parse.__name__ = "integer"
    return parse


def _unsupported_line(summary: ReplayResult) -> str | None:
    """When frames of a link type nfct does not decode were skipped, one line naming the link
    types and how many frames each had."""
    links = summary["unsupported_links"]
    if not links:
        return None
    kinds = [_link_type(lt) for lt in sorted(links)]
    if len(links) == 1:
        what = f"link type {kinds[0]}"
    else:
        what = "link types " + ", ".join(
            f"{kind}: {links[lt]}" for kind, lt in zip(kinds, sorted(links), strict=True)
        )
    return (
        f"nfct: {summary['unsupported_link']} frames of unsupported {what} skipped; "
        f"nfct reads {_LINK_TYPES_DECODED}"
    )


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


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil: COLUMNS if it is a
    positive integer, else the width of the terminal on ``sys.__stdout__``, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stdout = sys.__stdout__
    if stdout is None:
        return 80
    try:
        return os.get_terminal_size(stdout.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with the width argparse gives it by default (the terminal's
    columns less 2), found without shutil: argparse imports shutil for it (and with it bz2,
    lzma, zlib and fnmatch, 2 ms) as soon as a parser is built, help or not."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
        **kw: Any,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width, **kw)


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
    r.add_argument(
        "--seed",
        type=_ranged(0, 2**64 - 1),
        default=None,
        help="fixed hash seed (reproducible order)",
    )
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
        type=_ranged(0, 65535),
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
        type=_ranged(0, 65535),
        default=None,
        metavar="N",
        help="the MTU of the way out: of the default route's interface with --host, of the "
        "default router's otherwise (1500)",
    )


def _at_option(p: argparse.ArgumentParser) -> None:
    """`--at TIME:ACTION` (replay and report)."""
    p.add_argument(
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


def _quiet_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress display (shown only when standard error is a terminal)",
    )


def _cluster_options(p: argparse.ArgumentParser, unit: str) -> None:
    p.add_argument(
        "--cluster",
        metavar="local|ADDRESS",
        default=None,
        help=f"run {unit} as tasks on a Dask cluster: `local` starts one on this machine's "
        "cores (--jobs worker processes) and stops it afterwards, ADDRESS (tcp://HOST:8786) "
        "joins a running scheduler whose workers have nfct and reach the captures by the "
        "names given; needs pip install 'nfct[cluster]'",
    )


def _sweep_spec(text: str) -> tuple[str, list[int]]:
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE,VALUE,..., got {text!r}")
    if name not in nfct.SYSCTL_NAMES:
        raise argparse.ArgumentTypeError(f"{name!r} is not a conntrack sysctl")
    out: list[int] = []
    for v in values.split(","):
        try:
            out.append(int(v.strip(), 0))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: value {v!r} is not an integer") from None
    return name, out


def _report_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "report",
        formatter_class=_HelpFormatter,
        help="a capacity report: did the table hold, what filled it, what got dropped, what "
        "max would have held it (HTML with plots, or JSON)",
        description=(
            "Replay the captures as `nfct replay` does and answer an operator's questions: "
            "entries over time by protocol and state, new connections per second, the peak "
            "against nf_conntrack_max and the headroom, early drops (who was evicted) and "
            "drops over time, INVALID packets by reason, the heaviest sources and "
            "destinations, the states (and timeouts) holding the table, and the max that "
            "would have held it. One self-contained HTML page (-o), or the figures as JSON "
            "(--json). With --sweep, one replay per combination of values, side by side."
        ),
    )
    rep.add_argument("captures", nargs="+", metavar="CAPTURE", help=CAPTURE_HELP)
    _host_options(rep)
    _at_option(rep)
    rep.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write the HTML report here (default: report.html, unless --json is given)",
    )
    rep.add_argument(
        "--json", action="store_true", help="print the figures as JSON on standard output"
    )
    rep.add_argument(
        "--sweep",
        action="append",
        default=[],
        type=_sweep_spec,
        metavar="NAME=V1,V2,...",
        help="what-if: replay once per combination of these sysctl values (repeatable; "
        "combined as nested loops), in parallel processes, and report them side by side",
    )
    rep.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help="with --sweep: at most N processes (default: as many as cores); with "
        "--cluster local: N worker processes",
    )
    rep.add_argument(
        "--census-every",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="count the table by protocol, state and address about this often (capture "
        "time; spaced further apart where counting would cost more than a quarter of the "
        "replay)",
    )
    rep.add_argument(
        "--evictions",
        type=_ranged(0, 2**32 - 1),
        default=1000,
        metavar="N",
        help="early-drop victims listed in the figures (all are counted)",
    )
    rep.add_argument(
        "--no-demand",
        action="store_true",
        help="when the table overflowed, do not replay again without a limit to find the "
        "max that would have held it",
    )
    _cluster_options(rep, "the report's replays (each run of a --sweep is a task)")
    _quiet_option(rep)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nfct",
        description="Linux netfilter connection tracking in userspace.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--version", action=_VersionAction, help="show the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "replay",
        formatter_class=_HelpFormatter,
        help="replay captures through conntrack and print the resulting table",
        description=(
            "Feed every IP packet of the captures, in order, through the netfilter hooks of a "
            "Linux host (by default a forwarding router: PRE_ROUTING with defrag and "
            "conntrack, routing, FORWARD, POST_ROUTING with confirmation), and print what "
            "`conntrack -L -o extended` would print afterwards."
        ),
    )
    r.add_argument("captures", nargs="+", metavar="CAPTURE", help=CAPTURE_HELP)
    _host_options(r)
    r.add_argument(
        "--output",
        "-o",
        choices=(*OUTPUTS, "units"),
        default=None,
        help="what to print (default: extended; with --cluster: units, one line per capture "
        "and setting; --cluster takes units, json or extended)",
    )
    r.add_argument(
        "--threads",
        type=_ranged(0, 65535),
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
    _at_option(r)
    r.add_argument(
        "--write",
        "-w",
        metavar="FILE",
        default=None,
        help="write the packets that leave the host (forwarded or sent, as NAT rewrote "
        "them) to FILE, a pcap of raw IP packets (replays on one thread)",
    )
    r.add_argument(
        "--export",
        metavar="DIR",
        default=None,
        help="also write the replay as Parquet files into DIR (created if needed): "
        "packets.parquet (one row per IP frame), events.parquet, entries.parquet (the final "
        "table), timeline.parquet (occupancy and censuses per second), evictions.parquet; "
        "needs pyarrow (pip install 'nfct[report]'); one thread; with --cluster also "
        "units.parquet, every table keyed by unit, capture and setting",
    )
    _cluster_options(r, "each capture (under each --sweep setting)")
    r.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help="with --cluster local: N worker processes (default: as many as cores)",
    )
    r.add_argument(
        "--sweep",
        action="append",
        default=[],
        type=_sweep_spec,
        metavar="NAME=V1,V2,...",
        help="with --cluster: replay every capture once per combination of these sysctl "
        "values (repeatable; combined as nested loops), on top of --sysctl",
    )
    _quiet_option(r)
    e = sub.add_parser(
        "explain",
        formatter_class=_HelpFormatter,
        help="show one packet's way through the host, hook by hook",
        description=(
            "Replay a capture up to one frame, then show that frame's way through the host: "
            "every operation and rule at every hook with its verdict, the routing decision, "
            "the conntrack entry before and after, and the reason for an INVALID class or a "
            "drop in the kernel's words."
        ),
    )
    e.add_argument("capture", metavar="CAPTURE", help=CAPTURE_HELP)
    e.add_argument(
        "frame",
        type=_ranged(0, 2**64 - 1),
        metavar="FRAME",
        help="the frame, numbered from 1 as --output packets numbers them",
    )
    e.add_argument("--json", action="store_true", help="print the explanation as JSON")
    _host_options(e)
    _report_parser(sub)
    s = sub.add_parser(
        "host-snapshot",
        formatter_class=_HelpFormatter,
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
        formatter_class=_HelpFormatter,
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
    v.add_argument(
        "--limit", type=_ranged(0, 2**31 - 1), default=20, help="differences shown per section"
    )
    return p


def _summary_line(summary: ReplayResult, entries: int) -> str:
    unsupported = summary["unsupported_link"]
    link = f", {unsupported} unsupported link type" if unsupported else ""
    return (
        f"nfct: {summary['packets']} packets ({summary['frames']} frames, "
        f"{summary['non_ip']} not IP{link}), {entries} entries, {summary['invalid']} invalid, "
        f"{summary['dropped']} dropped"
    )


def _why_dropped(summary: ReplayResult, top: int = 3) -> str | None:
    """When packets were dropped, one line with the commonest reasons (INVALID or dropped) and
    the rules that dropped packets; a hint when the host's own packets came in as martians."""
    if not summary["dropped"]:
        return None
    parts = [f"{n} {reason}" for reason, n in _top(summary["reasons"], top)]
    parts += [f"{n} by {rule}" for rule, n in _top(summary["dropped_by"], top)]
    if not parts:
        return None
    line = "nfct: why (invalid or dropped, commonest first): " + "; ".join(parts)
    if any("martian" in reason for reason in summary["reasons"]):
        line += (
            " (martian sources: a capture taken on the host itself? try --path local-out "
            "or --path local-in)"
        )
    return line


def _top(counts: dict[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# --- the entries of --output json ---------------------------------------------------------------

# The L3 names conntrack -L prints (by AF_INET, AF_INET6: socket is imported only where an
# IPv6 address is printed, as every module the command imports costs each run its start-up).
_AF_INET6 = int(nfct.NFPROTO_IPV6)
_L3_NAMES: dict[int, str] = {int(nfct.NFPROTO_IPV4): "ipv4", _AF_INET6: "ipv6"}
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
    if l3num == _AF_INET6:
        import socket

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


class AtAction:
    """One `--at` action, callable with a Net as `Net.replay(at=...)` calls it; plain data,
    so that a sweep's worker processes get it too. ``verb``: delete, flush, update or
    ruleset; ``kw``: its keyword arguments (filters, settings); ``path``: the ruleset file.
    (A class of its own, not a dataclass: importing dataclasses costs every run 10 ms.)"""

    __slots__ = ("kw", "path", "spec", "verb")

    def __init__(
        self,
        verb: str,
        kw: tuple[tuple[str, Any], ...] = (),
        path: str | None = None,
        spec: str = "",
    ) -> None:
        self.verb, self.kw, self.path, self.spec = verb, kw, path, spec

    def _key(self) -> tuple[object, ...]:
        return (self.verb, self.kw, self.path, self.spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtAction) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"AtAction(verb={self.verb!r}, kw={self.kw!r}, path={self.path!r}, spec={self.spec!r})"
        )

    def __call__(self, net: Net) -> object:
        kw = dict(self.kw)
        if self.verb == "delete":
            return net.delete(**kw)
        if self.verb == "flush":
            return net.flush()
        if self.verb == "update":
            return net.update(**kw)
        assert self.path is not None
        net.load_ruleset(_json_file(self.path))
        return None

    def __str__(self) -> str:
        return self.spec


def parse_at(spec: str) -> tuple[float, bool, AtAction]:
    """One `--at TIME:ACTION`: (time, whether it counts from the first packet, action)."""
    when, sep, action = spec.partition(":")
    if not sep:
        raise NfctValueError(f"--at {spec!r}: expected TIME:ACTION")
    try:
        relative = not when.startswith("@")
        t = float(when if relative else when[1:])
    except ValueError:
        raise NfctValueError(f"--at {spec!r}: {when!r} is not a time in seconds") from None
    verb, _, rest = action.partition(":")
    if verb == "delete":
        act = AtAction("delete", tuple(_action_args(rest, _FILTER_KEYS).items()), spec=action)
    elif verb == "flush" and not rest:
        act = AtAction("flush", spec=action)
    elif verb == "update":
        kw = _action_args(rest, _FILTER_KEYS | {"set_mark", "set_mask", "timeout"})
        if "set_mark" not in kw and "timeout" not in kw:
            raise NfctValueError(f"--at {spec!r}: update needs set_mark=N or timeout=S")
        act = AtAction("update", tuple(kw.items()), spec=action)
    elif verb == "ruleset" and rest:
        if not os.path.exists(rest):
            raise NfctValueError(f"--at {spec!r}: no such file {rest!r}")
        act = AtAction("ruleset", path=os.path.abspath(rest), spec=action)
    else:
        raise NfctValueError(
            f"--at {spec!r}: ACTION is delete[:FILTERS], flush, "
            "update:SETTINGS[,FILTERS] or ruleset:FILE"
        )
    return t, relative, act


def _scheduled(
    specs: Sequence[str], first_tstamp: Callable[[], float | None]
) -> list[tuple[float, Any]]:
    """The `--at TIME:ACTION` options as `Net.replay(at=...)` takes them (relative times
    from ``first_tstamp()``, the first packet's time)."""
    first: float | None = None
    out: list[tuple[float, Any]] = []
    for t, relative, act in map(parse_at, specs):
        if relative:
            if first is None:
                first = first_tstamp() or 0.0
            t += first
        out.append((t, act))
    return out


def _json_file(path: str) -> Any:
    import json

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
        with CaptureInputs([args.capture]) as inputs:
            try:
                e = net.explain(
                    inputs.paths[0], args.frame, clock=args.clock, path=args.path, iif=args.iif
                )
            except CaptureError as err:
                raise inputs.rename(err) from None
    except (NfctError, CaptureError) as err:
        print(f"nfct: {err}", file=sys.stderr)
        return 2
    if args.json:
        import json

        json.dump(e, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(explain_text(e))
    return 0


def _renaming_printer(inputs: CaptureInputs) -> Callable[[list[str]], None]:
    """`--output packets` lines with the captures' own names in front, not the pipes' or
    temporary files' the replay read."""
    prefixes = [(p + ":", inputs.name_of(p) + ":") for p in inputs.paths if inputs.name_of(p) != p]

    def write(lines: list[str]) -> None:
        out = []
        for line in lines:
            for old, new in prefixes:
                if line.startswith(old):
                    line = new + line[len(old) :]
                    break
            out.append(line)
        sys.stdout.write("".join(out))

    return write


def _event_printer(timestamps: bool) -> Callable[[list[str]], None]:
    """`--output events` lines from the export's event stream (which has the timestamps)."""

    def write(lines: list[str]) -> None:
        if timestamps:
            sys.stdout.write("".join(lines))
        else:
            sys.stdout.write("".join(line.partition("\t")[2] or line for line in lines))

    return write


def _warn_ignored(net: Net) -> None:
    """The host file's conntrack settings that nfct does not model, named on stderr."""
    for name in net.ignored_sysctls:
        if name.startswith("net.netfilter."):
            print(f"nfct: host file: {name} is not modelled (ignored)", file=sys.stderr)


def _replay(args: argparse.Namespace) -> int:
    if args.cluster is not None:
        return _replay_on_cluster(args)
    if args.output is None:
        args.output = "extended"
    for flag, given in (
        ("--output units", args.output == "units"),
        ("--sweep", bool(args.sweep)),
        ("--jobs", args.jobs is not None),
    ):
        if given:
            print(f"nfct: {flag} needs --cluster", file=sys.stderr)
            return 2
    if args.export is not None and args.threads > 1:
        print("nfct: --export sees packets in capture order: use --threads 1", file=sys.stderr)
        return 2
    cpus = os.cpu_count() or 1
    if args.threads > cpus:
        print(
            f"nfct: warning: --threads {args.threads} is more than the {cpus} CPUs here: "
            "the workers contend for them (slower, more memory, not faster)",
            file=sys.stderr,
        )
    try:
        net = _make_net(args)
        inputs = CaptureInputs(args.captures)
        inputs.open()
    except (NfctError, CaptureError) as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    try:
        return _replay_inputs(args, net, inputs)
    finally:
        inputs.close()


def _replay_inputs(args: argparse.Namespace, net: Net, inputs: CaptureInputs) -> int:
    exporter: Exporter | None = None
    try:
        at = _scheduled(args.at, inputs.first_tstamp)
        if args.export is not None:
            from nfct.export import Exporter

            exporter = Exporter(args.export, inputs.names)
    except (NfctError, CaptureError) as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"nfct: --export {args.export}: {e.strerror or e}", file=sys.stderr)
        return 2
    _warn_ignored(net)
    error: CaptureError | None = None
    interrupted = False
    summary: ReplayResult | None = None
    packets_path = events_path = None
    pipes: list[LinePipe] = []
    if args.output == "packets":
        sys.stdout.flush()
        packets_path = "-"
        if inputs.substituted and len(inputs.paths) > 1:
            from nfct._pipes import LinePipe  # and threading: only where a pipe is read

            pipes.append(LinePipe(_renaming_printer(inputs), "nfct-packets"))
            packets_path = pipes[-1].path
    if exporter is not None:
        if args.output == "events":
            sys.stdout.flush()
            exporter.tee = _event_printer(args.event_timestamps)
        from nfct._pipes import LinePipe

        pipes.append(LinePipe(exporter.event_lines, "nfct-events"))
        events_path = pipes[-1].path
    elif args.output == "events":
        sys.stdout.flush()
        events_path = "-"
    bar = progress_bar(quiet=args.quiet)
    try:
        summary = net.replay(
            inputs.paths,
            clock=args.clock,
            packets_path=packets_path,
            events_path=events_path,
            event_timestamps=args.event_timestamps or exporter is not None,
            path=args.path,
            threads=args.threads,
            iif=args.iif,
            write_path=args.write,
            at=at,
            observe=exporter,
            progress=bar if bar.enabled else None,
        )
    except CaptureError as e:
        error = inputs.rename(e)
        summary = e.summary
    except KeyboardInterrupt as e:
        # Stopped between two batches of frames: what was done is printed as for a
        # truncated capture.
        interrupted = True
        summary = getattr(e, "summary", None)
    except NfctError as e:
        for pipe in pipes:
            pipe.close()
        if exporter is not None:
            exporter.finish(net)
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    for pipe in pipes:
        pipe.close()
    inputs.close()
    error = inputs.error() or error
    if exporter is not None:
        try:
            exporter.finish(net)
        except OSError as e:
            print(f"nfct: --export {args.export}: {e.strerror or e}", file=sys.stderr)
            return 2
    if args.output in ("extended", "conntrack", "proc"):
        text = net.dump(args.output)
        entries = text.count("\n")
        sys.stdout.write(text)
    elif args.output == "json":
        import json

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
        # The explanations first: the summary stays the last line (`2>&1 | tail -1`).
        unsupported = _unsupported_line(summary)
        if unsupported:
            print(unsupported, file=sys.stderr)
        why = _why_dropped(summary)
        if why:
            print(why, file=sys.stderr)
        print(_summary_line(summary, entries), file=sys.stderr)
    if error is not None:
        print(f"nfct: {error}", file=sys.stderr)
        return 2
    if interrupted:
        print("nfct: interrupted", file=sys.stderr)
        return 130
    return 0


# --- replay --cluster ----------------------------------------------------------------------------

_CLUSTER_OUTPUTS = ("units", "json", "extended")
# The columns of --output units, after the capture and the setting.
_UNIT_COUNTS = ("packets", "new", "established", "related", "invalid", "untracked", "dropped")


def _replay_on_cluster(args: argparse.Namespace) -> int:
    """`nfct replay --cluster`: every capture under every --sweep setting, one task each."""
    from nfct import cluster
    from nfct.report import _combinations

    output = args.output or "units"
    refused = [
        (output not in _CLUSTER_OUTPUTS, f"--output {output} (units, json or extended)"),
        (args.threads != 1, "--threads"),
        (args.write is not None, "--write"),
        (bool(args.at), "--at"),
        (args.event_timestamps, "--event-timestamps"),
    ]
    for bad, what in refused:
        if bad:
            print(f"nfct: --cluster does not take {what}", file=sys.stderr)
            return 2
    if args.jobs is not None and (args.jobs < 1 or args.cluster != "local"):
        print(
            "nfct: --jobs is a number of workers, at least 1, for --cluster local", file=sys.stderr
        )
        return 2
    grid: dict[str, list[int]] = {}
    for name, values in args.sweep:
        if name in grid:
            print(f"nfct: --sweep {name} given twice", file=sys.stderr)
            return 2
        grid[name] = values
    tables: list[str] = []
    if args.export is not None:
        from nfct.export import TABLES

        tables = list(TABLES)
    elif output == "extended":
        tables = ["entries"]
    show = progress_bar(quiet=args.quiet).enabled

    def done(i: int, n: int, row: Mapping[str, Any]) -> None:
        if not show:
            return
        what = " ".join(x for x in (row["capture"], row["setting"]) if x)
        if row["error"] is not None:
            print(f"nfct: [{i}/{n}] {what}: failed: {row['error']}", file=sys.stderr)
        else:
            print(
                f"nfct: [{i}/{n}] {what}: {row['packets']} packets, {row['entries']} entries, "
                f"{row['seconds']:.2f} s on {row['worker']}",
                file=sys.stderr,
            )

    try:
        if args.export is not None:
            os.makedirs(args.export, exist_ok=True)
        combos = _combinations(grid) if grid else [{}]
        setup = _host_setup(args)
        setup.build()  # the options' errors now, not in every worker
        out = cluster.replay_many(
            args.captures,
            host=setup,
            sysctl=[{**dict(args.sysctl), **c} for c in combos],
            cluster=args.cluster,
            workers=args.jobs,
            tables=tables,
            on_done=done,
        )
    except (NfctError, CaptureError) as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"nfct: --export {args.export}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nfct: interrupted (the cluster's results are lost)", file=sys.stderr)
        return 130
    units = out.units
    rows = units.to_pylist()
    if args.export is not None:
        import pyarrow.parquet as pq

        try:
            for name, table in out.items():
                pq.write_table(table, os.path.join(args.export, f"{name}.parquet"))
        except OSError as e:
            print(f"nfct: --export {args.export}: {e.strerror or e}", file=sys.stderr)
            return 2
    if output == "units":
        sys.stdout.write(_units_text(rows))
    elif output == "json":
        import json

        for row in rows:
            row["reasons"] = dict(row["reasons"] or [])
            row["dropped_by"] = dict(row["dropped_by"] or [])
        json.dump({"cluster": args.cluster, "units": rows}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        entries = out["entries"]
        lines: dict[int, list[str]] = {}
        for unit, line in zip(
            entries["unit"].to_pylist(), entries["line"].to_pylist(), strict=True
        ):
            lines.setdefault(unit, []).append(line)
        for row in rows:
            what = " ".join(x for x in (row["capture"], row["setting"]) if x)
            sys.stdout.write(f"# {what}\n")
            sys.stdout.write("".join(f"{line}\n" for line in lines.get(row["unit"], [])))
    sys.stdout.flush()
    failed = out.failed()
    packets = sum(r["packets"] or 0 for r in rows)
    print(
        f"nfct: {len(rows)} units ({len(args.captures)} captures x {len(combos)} settings) on "
        f"--cluster {args.cluster}: {len(rows) - len(failed)} replayed, {len(failed)} failed, "
        f"{packets} packets",
        file=sys.stderr,
    )
    for capture, setting, error in failed:
        where = f" ({setting})" if setting else ""
        print(
            f"nfct: {error}{where}" if capture in error else f"nfct: {capture}{where}: {error}",
            file=sys.stderr,
        )
    return 2 if failed else 0


def _units_text(rows: list[dict[str, Any]]) -> str:
    """--output units: one line per unit, the columns aligned."""
    settings = any(r["setting"] for r in rows)
    head = ["capture", *(["setting"] if settings else []), *_UNIT_COUNTS, "entries", "error"]
    table = [head]
    for r in rows:
        cells = [r["capture"], *([r["setting"]] if settings else [])]
        cells += ["-" if r[c] is None else str(r[c]) for c in (*_UNIT_COUNTS, "entries")]
        cells.append("" if r["error"] is None else "failed")
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    n_text = 1 + settings
    return "".join(
        "  ".join(
            c.ljust(w) if i < n_text else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        + "\n"
        for row in table
    )


# --- report ---------------------------------------------------------------------------------------


def _host_setup(args: argparse.Namespace) -> Any:
    from nfct.report import HostSetup

    at: list[tuple[float, AtAction]] = []
    after_first: list[tuple[float, AtAction]] = []
    for t, relative, act in map(parse_at, args.at):
        (after_first if relative else at).append((t, act))
    return HostSetup(
        sysctl=dict(args.sysctl),
        seed=args.seed,
        local_addrs=tuple(args.local_addr),
        host=args.host,
        mtu=args.mtu,
        zone=args.zone,
        drop_invalid=args.drop_invalid,
        clock=args.clock,
        path=args.path,
        iif=args.iif,
        at=tuple(at),
        after_first=tuple(after_first),
    )


def _sweep_text(runs: list[dict[str, Any]]) -> str:
    """A sweep's runs side by side, one line each (the columns aligned)."""
    from nfct.report import sweep_rows

    rows = sweep_rows(runs)
    names = list(runs[0].get("sweep", {})) if runs else []
    head = [*names, "held", "peak", "early_drops", "dropped", "invalid", "demand"]
    table = [head] + [
        [str(r[n]) for n in names]
        + ["yes" if r["held"] else "no"]
        + [str(r[k]) for k in ("peak", "early_drops", "dropped", "invalid", "demand")]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "".join(
        "nfct: " + "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + "\n"
        for row in table
    )


def _report(args: argparse.Namespace) -> int:
    from nfct import report

    grid: dict[str, list[int]] = {}
    for name, values in args.sweep:
        if name in grid:
            print(f"nfct: --sweep {name} given twice", file=sys.stderr)
            return 2
        grid[name] = values
    output = args.output
    if output is None and not args.json:
        output = "report.html"
    if (
        args.evictions < 0
        or not 0 <= args.census_every < math.inf
        or (args.jobs is not None and args.jobs < 1)
    ):
        print(
            "nfct: --evictions must not be negative, --census-every must be a finite number "
            "not negative, --jobs at least 1",
            file=sys.stderr,
        )
        return 2
    try:
        report.check_extras(html=output is not None)
        if output is not None:
            parent = os.path.dirname(os.path.abspath(output))
            if not os.path.isdir(parent):
                raise NfctValueError(f"-o {output}: no such directory {parent}")
        setup = _host_setup(args)
        net = setup.build()  # the options' errors now, not after a replay
    except (NfctError, CaptureError) as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    _warn_ignored(net)
    kw: dict[str, Any] = {"census_every": args.census_every, "keep_evictions": args.evictions}

    figures: Any = None
    error: BaseException | None = None
    interrupted = False
    bar = progress_bar(quiet=args.quiet, desc="nfct report")
    try:

        def done(i: int, n: int, values: Any) -> None:
            if bar.enabled:
                which = ", ".join(f"{k}={v}" for k, v in values.items())
                print(f"nfct report: run {i}/{n} done ({which})", file=sys.stderr)

        if args.cluster is not None:
            from nfct.cluster import report_on

            figures = report_on(
                args.cluster,
                args.captures,
                setup,
                grid,
                workers=args.jobs,
                demand=not args.no_demand,
                on_done=done,
                **kw,
            )
        elif grid:
            figures = report.sweep(
                args.captures,
                grid,
                setup,
                workers=args.jobs,
                demand=not args.no_demand,
                on_done=done,
                **kw,
            )
        else:
            figures = report.compute(
                args.captures,
                setup,
                demand=not args.no_demand,
                progress=bar if bar.enabled else None,
                **kw,
            )
    except CaptureError as e:
        error, figures = e, getattr(e, "figures", None)
    except KeyboardInterrupt as e:
        interrupted, figures = True, getattr(e, "figures", None)
    except NfctError as e:
        print(f"nfct: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    runs = figures if isinstance(figures, list) else [figures] if figures is not None else []
    if not runs or (
        error is not None and not any((f.get("summary") or {}).get("frames") for f in runs)
    ):
        figures = None  # nothing was read (or no run of a sweep was done): the error says it all
    if figures is not None:
        if args.json:
            import json

            json.dump(figures, sys.stdout, indent=1, allow_nan=False)
            sys.stdout.write("\n")
            sys.stdout.flush()
        if output is not None:
            try:
                report.write_html(figures, output)
            except OSError as e:
                print(f"nfct: -o {output}: {e.strerror or e}", file=sys.stderr)
                return 2
            print(f"nfct: report written to {output}", file=sys.stderr)
        if isinstance(figures, list):
            sys.stderr.write(_sweep_text(figures))
        else:
            for question, answer in figures["answers"].items():
                print(f"nfct: {question} {answer}", file=sys.stderr)
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
        if args.command == "report":
            return _report(args)
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
