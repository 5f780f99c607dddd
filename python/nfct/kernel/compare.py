"""Comparing what the kernel's conntrack decided with what nfct decided: the judge's text side.

The kernel's side exists only as the text conntrack-tools print, so both sides are compared as
that text, parsed by :func:`parse_conntrack_line`. Entries are matched as sets on (l3,
protocol, original tuple, reply tuple), as the kernel's listing order is bucket order and so
effectively random. For matched entries the state, the ASSURED and UNREPLIED flags, the mark
and the timeout (beyond a tolerance) are compared. Per-packet classes, statistics and event
sequences are compared where both sides have them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "STATS",
    "Comparison",
    "Key",
    "compare_classes",
    "compare_events",
    "compare_stats",
    "compare_tables",
    "entry_key",
    "parse_conntrack_line",
]

# --- the text conntrack-tools print (`conntrack -L [-o extended]`) ----------------------------

_FLAGS = ("UNREPLIED", "ASSURED", "OFFLOAD", "HW_OFFLOAD")
_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id", "srckey", "dstkey")
_L3 = {"ipv4", "ipv6"}


def parse_conntrack_line(line: str) -> dict[str, Any]:
    """Parse one `conntrack -L` line (default or `-o extended`) into a dict with the keys
    l3, proto, protonum, timeout, state, orig, reply, flags, extra."""
    words = line.split()
    i = 0
    l3 = None
    if words and words[0] in _L3:
        l3 = words[0]
        i = 2
    if len(words) < i + 3:
        raise ValueError(f"not a conntrack line: {line!r}")
    proto = words[i]
    protonum = int(words[i + 1])
    timeout = int(words[i + 2])
    i += 3
    state = None
    if i < len(words) and "=" not in words[i] and not words[i].startswith("["):
        state = words[i]
        i += 1
    tuples: list[dict[str, str]] = [{}, {}]
    which = -1
    flags: list[str] = []
    extra: dict[str, str] = {}
    for w in words[i:]:
        if w.startswith("[") and w.endswith("]"):
            flags.append(w[1:-1])
            continue
        key, _, value = w.partition("=")
        if key == "src":
            which += 1
        if key in _TUPLE_KEYS and 0 <= which <= 1 and key not in tuples[which]:
            tuples[which][key] = value
        elif key in ("packets", "bytes") and 0 <= which <= 1:
            tuples[which][key] = value
        else:
            extra[key] = value
    if l3 is None:
        l3 = "ipv6" if ":" in tuples[0].get("src", "") else "ipv4"
    return {
        "l3": l3,
        "proto": proto,
        "protonum": protonum,
        "timeout": timeout,
        "state": state,
        "orig": tuples[0],
        "reply": tuples[1],
        "flags": [f for f in flags if f in _FLAGS] + [f for f in flags if f not in _FLAGS],
        "extra": extra,
    }


# --- comparing -------------------------------------------------------------------------------

# The counters compared; `found`, `insert` and `search_restart` are 0 for packet traffic on both.
STATS = (
    "found",
    "invalid",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "error",
    "search_restart",
    "clash_resolve",
    "chaintoolong",
)

Key = tuple[
    str, int, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]
]
# The zone fields are part of an entry's identity (the same tuples may be in two zones).
_ZONE_KEYS = ("zone", "zone-orig", "zone-reply")
# Fields that depend on when the table was listed: compared within the timeout tolerance.
_TIMED_KEYS = ("delta-time",)


def entry_key(e: Mapping[str, Any]) -> Key:
    """The identity of an entry: l3, protocol number, original and reply tuples, zone."""

    def tup(t: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple((k, t[k]) for k in _TUPLE_KEYS if k in t)

    extra = e.get("extra", {})
    zone = tuple((k, str(extra[k])) for k in _ZONE_KEYS if k in extra)
    return (str(e["l3"]), int(e["protonum"]), tup(e["orig"]), tup(e["reply"]), zone)


def _key_text(k: Key) -> str:
    orig = " ".join(f"{a}={b}" for a, b in k[2])
    reply = " ".join(f"{a}={b}" for a, b in k[3])
    zone = "".join(f" {a}={b}" for a, b in k[4])
    return f"{k[0]} proto {k[1]} {orig} | {reply}{zone}"


@dataclass
class Comparison:
    """Everything that differs between the kernel's run and nfct's."""

    kernel_entries: int = 0
    nfct_entries: int = 0
    matched: int = 0
    missing: list[str] = field(default_factory=list)  # in the kernel's table, not in nfct's
    extra: list[str] = field(default_factory=list)  # in nfct's table, not in the kernel's
    entry_diffs: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # an entry listed twice on one side
    packets: int = 0
    packets_matched: int = 0
    class_diffs: list[str] = field(default_factory=list)
    stats_diffs: dict[str, tuple[int, int]] = field(default_factory=dict)
    events: int = 0
    events_matched: int = 0
    event_diffs: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        """True when nothing differs."""
        return not (
            self.missing
            or self.extra
            or self.entry_diffs
            or self.duplicates
            or self.class_diffs
            or self.stats_diffs
            or self.event_diffs
        )

    def summary(self) -> str:
        """One line: entries and packet classes matched."""
        line = f"entries matched {self.matched}/{max(self.kernel_entries, self.nfct_entries)}"
        if self.packets:
            line += f", packet classes matched {self.packets_matched}/{self.packets}"
        if self.events:
            line += f", events matched {self.events_matched}/{self.events}"
        line += f", stats {'equal' if not self.stats_diffs else 'differ'}"
        return line

    def render(self, limit: int = 20) -> str:
        """A readable diff (kernel first, then nfct), at most `limit` items per section."""
        out = [self.summary()]

        def section(title: str, items: Sequence[str]) -> None:
            if items:
                out.append(f"{title} ({len(items)}):")
                out.extend(f"  {x}" for x in items[:limit])
                if len(items) > limit:
                    out.append(f"  ... {len(items) - limit} more")

        section("only in the kernel's table", self.missing)
        section("only in nfct's table", self.extra)
        section("entries that differ (kernel -> nfct)", self.entry_diffs)
        section("entries listed twice", self.duplicates)
        section("packets classified differently (kernel -> nfct)", self.class_diffs)
        section(
            "statistics that differ (kernel -> nfct)",
            [f"{k}: {a} -> {b}" for k, (a, b) in self.stats_diffs.items()],
        )
        section("events that differ", self.event_diffs)
        section("excluded from the comparison", self.excluded)
        return "\n".join(out)


def compare_tables(
    kernel_lines: Iterable[str],
    nfct_lines: Iterable[str],
    *,
    timeout_tolerance: int = 2,
    result: Comparison | None = None,
) -> Comparison:
    """Match `conntrack -L -o extended` lines of both sides by their tuples and zone, and
    compare every field: state, every flag, the timeout and `delta-time` (within
    ``timeout_tolerance`` seconds), the counters of each direction, mark, `use` and any other
    field either side prints. An entry listed twice on one side is a difference."""
    res = result if result is not None else Comparison()

    def index(lines: Iterable[str], side: str) -> dict[Key, dict[str, Any]]:
        out: dict[Key, dict[str, Any]] = {}
        for e in map(parse_conntrack_line, lines):
            k = entry_key(e)
            if k in out:
                res.duplicates.append(f"listed twice by {side}: {_key_text(k)}")
            out[k] = e
        return out

    kern = index(kernel_lines, "the kernel")
    mine = index(nfct_lines, "nfct")
    res.kernel_entries = len(kern)
    res.nfct_entries = len(mine)
    for k in sorted(kern.keys() - mine.keys()):
        res.missing.append(_key_text(k))
    for k in sorted(mine.keys() - kern.keys()):
        res.extra.append(_key_text(k))
    for k in sorted(kern.keys() & mine.keys()):
        a, b = kern[k], mine[k]
        diffs = _entry_diffs(a, b, timeout_tolerance)
        if diffs:
            res.entry_diffs.append(f"{_key_text(k)}: {', '.join(diffs)}")
        else:
            res.matched += 1
    return res


def _entry_diffs(a: Mapping[str, Any], b: Mapping[str, Any], tolerance: int) -> list[str]:
    """Every field of two entries with the same identity that differs (kernel -> nfct)."""
    diffs = []
    if a["state"] != b["state"]:
        diffs.append(f"state {a['state']} -> {b['state']}")
    for flag in sorted(set(a["flags"]) ^ set(b["flags"])):
        diffs.append(f"[{flag}] {flag in a['flags']} -> {flag in b['flags']}")
    if abs(int(a["timeout"]) - int(b["timeout"])) > tolerance:
        diffs.append(f"timeout {a['timeout']} -> {b['timeout']}")
    for d in ("orig", "reply"):
        for k in sorted((set(a[d]) | set(b[d])) - set(_TUPLE_KEYS)):
            if a[d].get(k) != b[d].get(k):
                diffs.append(f"{d} {k} {a[d].get(k)} -> {b[d].get(k)}")
    for k in sorted((set(a["extra"]) | set(b["extra"])) - set(_ZONE_KEYS)):
        x, y = a["extra"].get(k), b["extra"].get(k)
        if k in _TIMED_KEYS and x is not None and y is not None:
            if abs(int(x) - int(y)) > tolerance:
                diffs.append(f"{k} {x} -> {y}")
        elif x != y:
            diffs.append(f"{k} {x} -> {y}")
    return diffs


def compare_classes(
    kernel: Sequence[str], nfct: Sequence[str], *, result: Comparison | None = None
) -> Comparison:
    """Compare per-packet ct state classes (1-based packet numbers in the report)."""
    res = result if result is not None else Comparison()
    res.packets = max(len(kernel), len(nfct))
    for i in range(res.packets):
        a = kernel[i] if i < len(kernel) else "(none)"
        b = nfct[i] if i < len(nfct) else "(none)"
        if a == b:
            res.packets_matched += 1
        else:
            res.class_diffs.append(f"packet {i + 1}: {a} -> {b}")
    return res


def compare_stats(
    kernel: Mapping[str, int], nfct: Mapping[str, int], *, result: Comparison | None = None
) -> Comparison:
    """Compare the `conntrack -S` counters."""
    res = result if result is not None else Comparison()
    for k in STATS:
        a, b = int(kernel.get(k, 0)), int(nfct.get(k, 0))
        if a != b:
            res.stats_diffs[k] = (a, b)
    return res


def _event_body(line: str) -> str:
    """An event line without its timestamp prefix and with the timeout column dropped."""
    body = line.split("\t", 1)[-1].strip()
    words = body.split()
    # "[NEW] ipv4 2 udp 17 30 ..." : the timeout is the sixth word.
    if len(words) > 5 and words[5].isdigit():
        del words[5]
    return " ".join(words)


def compare_events(
    kernel: Sequence[str], nfct: Sequence[str], *, result: Comparison | None = None
) -> Comparison:
    """Compare event sequences (tags and bodies, timestamps and timeouts ignored)."""
    res = result if result is not None else Comparison()
    a = [_event_body(x) for x in kernel]
    b = [_event_body(x) for x in nfct]
    res.events = max(len(a), len(b))
    for i in range(res.events):
        x = a[i] if i < len(a) else "(none)"
        y = b[i] if i < len(b) else "(none)"
        if x != y:
            res.event_diffs.append(f"event {i + 1}: {x} -> {y}")
        else:
            res.events_matched += 1
    return res
