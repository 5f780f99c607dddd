"""Capacity reports: what an operator asks of a capture, answered from a replay.

*Did the table hold, what filled it, what got dropped, and what* ``nf_conntrack_max`` *would
have held it?* :func:`compute` replays captures through a host (:class:`HostSetup`) once,
watching it through ``Net.replay(observe=...)`` and its ``conntrack -E`` events, and returns
the **figures** as one JSON-ready dict; :func:`render_html` makes them one self-contained HTML
page (matplotlib plots embedded as PNG data URIs: nothing is fetched to view it);
:func:`sweep` replays once per combination of sysctl values, in parallel processes, for the
what-if answers side by side. ``nfct report`` is the command for all three.

::

    figures = nfct.report.compute(["capture.pcap"], HostSetup(sysctl={"nf_conntrack_max": 65536}))
    figures["table"]["held"], figures["table"]["peak"], figures["table"]["demand"]
    Path("report.html").write_text(nfct.report.render_html(figures))

The figures (every time in seconds; series on the capture clock, in bins of
``timeline["bin"]`` seconds from ``span["start"]``, the first packet's time; the bins widen
by doubling so that a capture of any length gives at most ``max_bins`` of them):

- ``table``: ``max`` (``nf_conntrack_max``, 0 for no limit), ``peak`` and ``peak_tstamp``
  (the most entries after any packet, unconfirmed ones included, as ``nf_conntrack_count``
  counts them), ``headroom`` (max − peak), ``peak_ratio``, ``final``, ``held`` (no entry
  evicted by early drop, no packet dropped because the table was full), ``early_drops``,
  ``table_full_drops``, ``demand`` (the smallest ``nf_conntrack_max`` under which no new
  entry would have met a full table: from this replay when it held, else from a second
  replay with no limit; where a packet that did not stay may have held a transient entry at
  the peak, a plain replay at the peak settles it), ``demand_for_alert`` (the max that keeps
  the peak under
  the 90 % at which operators page), ``seconds_over_50``/``seconds_over_90`` (how long the
  occupancy was at or over 50 % and 90 % of the max, to the bin);
- ``timeline``: ``t`` (bin starts), ``packets``, the ct state classes (``new``,
  ``established``, ``related``, ``invalid``, ``untracked``, ``dropped``), ``occupancy``
  (the most entries in the bin; None where no packet fell in it), ``new_entries`` and
  ``destroyed`` (from the ``[NEW]`` and ``[DESTROY]`` events; None when events are off),
  ``early_drops``, ``table_full``, ``invalid_by_reason`` and ``dropped_by_reason`` (one
  series per reason; a rule's drop without a reason is ``"dropped by RULE"``);
- ``census``: ``t``, ``total`` and ``groups`` (``"PROTO STATE"``, with ``" zone N"`` where
  zones are used: entries held) from the table's censuses (at most one per bin: the fullest);
- ``states``: what held the table at the fullest census: family, proto, state, zone, entries,
  share, and the ``timeout_sysctl`` that keeps that state's entries with its ``timeout``;
- ``sources``/``destinations``: the 20 addresses holding the most entries at that census, as
  ``[address, entries]``;
- ``evictions``: ``total`` (early drop's victims), ``kept`` (the first ``keep_evictions``:
  tstamp, tuple, state, timeout, age), ``by_state``, ``age`` (min, mean, max and how many
  were younger than 1, 10, 60 and 300 s; ages need ``nf_conntrack_timestamp=1``, which
  :func:`compute` turns on unless told otherwise);
- ``invalid`` and ``dropped``: ``total`` and ``by_reason`` (and ``by_rule`` for drops);
- ``summary`` (the replay's :class:`~nfct.ReplayResult` as a dict), ``stats`` (``conntrack
  -S``), ``span`` (start, end, seconds), ``captures``, ``settings``, ``answers`` (the four
  questions answered in a sentence each), ``interrupted``, ``error``.

Computing figures needs numpy; rendering needs matplotlib (``pip install 'nfct[report]'``):
without them :class:`~nfct.MissingExtraError` says so.
"""

from __future__ import annotations

import base64
import concurrent.futures
import concurrent.futures.process
import dataclasses
import datetime
import html
import io
import itertools
import math
import multiprocessing
import os
import pickle
import random
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from nfct._pipes import LinePipe
from nfct._types import Clock, ReplayPath
from nfct.errors import CaptureError, MissingExtraError, NfctError, NfctValueError

if TYPE_CHECKING:
    import numpy
    import numpy.typing as npt

    from nfct._nfct import Net, ReplayResult
    from nfct.inputs import CaptureInputs

__all__ = [
    "TABLE_FULL",
    "Collector",
    "HostSetup",
    "answers",
    "check_extras",
    "compute",
    "render_html",
    "sweep",
    "sweep_rows",
    "timeout_sysctl",
    "write_html",
]

#: The reason a packet is dropped when the table is full and early drop freed nothing.
TABLE_FULL: Final = "nf_conntrack: table full, dropping packet"
CLASSES: Final = ("new", "established", "related", "invalid", "untracked", "dropped")
# Operators warn at 50 % and page at 90 % of nf_conntrack_max.
ALERT_RATIOS: Final = (0.5, 0.9)
_PROTO_NAMES: Final = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    33: "dccp",
    47: "gre",
    58: "icmpv6",
    132: "sctp",
    136: "udplite",
}
_AGE_LIMITS: Final = (1.0, 10.0, 60.0, 300.0)
# The time and kind of the events counted, from `conntrack -E -o timestamp` lines.
_EVENT_TIME: Final = re.compile(r"^\[([0-9.]+)\]\t\s*\[(NEW|DESTROY)\]", re.MULTILINE)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise MissingExtraError(
            "nfct.report needs numpy and matplotlib: pip install 'nfct[report]'"
        ) from None
    return numpy


def check_extras(*, html: bool = True) -> None:
    """Raises :class:`~nfct.MissingExtraError` unless what computing the figures (numpy) and,
    with ``html``, rendering them (matplotlib) needs is installed."""
    _numpy()
    if html:
        _matplotlib()


def proto_name(protonum: int) -> str:
    """The protocol's name as ``conntrack -L`` prints it (``"proto N"`` for the others)."""
    return _PROTO_NAMES.get(protonum, f"proto {protonum}")


def timeout_sysctl(proto: str, state: str) -> str:
    """The sysctl whose timeout keeps an entry of ``proto`` (a name: tcp, udp, ...) in
    ``state`` (a census state: TCP's and SCTP's own, else ASSURED, REPLIED or UNREPLIED).
    TCP entries with unacknowledged data or retransmissions are capped lower by
    ``nf_conntrack_tcp_timeout_unacknowledged`` and ``_max_retrans``."""
    s = state.lower()
    if proto == "tcp":
        s = {"syn_sent2": "syn_sent", "none": "syn_sent"}.get(s, s)
        return f"nf_conntrack_tcp_timeout_{s}"
    if proto == "sctp":
        s = {"none": "closed"}.get(s, s)
        return f"nf_conntrack_sctp_timeout_{s}"
    if proto in ("udp", "udplite"):
        return "nf_conntrack_udp_timeout_stream" if s == "assured" else "nf_conntrack_udp_timeout"
    if proto == "gre":
        return "nf_conntrack_gre_timeout_stream" if s == "assured" else "nf_conntrack_gre_timeout"
    if proto in ("icmp", "icmpv6"):
        return f"nf_conntrack_{proto}_timeout"
    return "nf_conntrack_generic_timeout"


# --- the host a replay goes through -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HostSetup:
    """What host captures are replayed through, as plain data (so a worker process can build
    the same one): the options of ``nfct replay``. ``seed`` None picks one per computation
    (and records it in the figures), so that a second replay of the same computation meets
    the same hashes. ``at``: control-plane actions ``(tstamp, fn(net))`` on the capture clock
    as :meth:`~nfct.Net.replay` takes them, ``after_first`` the same at seconds after the
    first packet of the first capture (``nfct report --at``); every replay of a computation
    (the demand's too) runs them. A :func:`sweep` in worker processes needs them picklable (a
    module-level function, ``functools.partial``, ``nfct.cli.AtAction``; not a lambda)."""

    sysctl: Mapping[str, int] = dataclasses.field(default_factory=dict)
    seed: int | None = None
    local_addrs: tuple[str, ...] = ()
    host: str | None = None
    mtu: int | None = None
    zone: int | None = None
    drop_invalid: bool = False
    clock: Clock = "capture"
    path: ReplayPath = "forward"
    iif: str | None = None
    at: tuple[tuple[float, Callable[[Net], object]], ...] = ()
    after_first: tuple[tuple[float, Callable[[Net], object]], ...] = ()

    def with_sysctl(self, values: Mapping[str, int]) -> HostSetup:
        """The same host with ``values`` set on top of its sysctls."""
        return dataclasses.replace(self, sysctl={**self.sysctl, **values})

    def with_seed(self, seed: int) -> HostSetup:
        return dataclasses.replace(self, seed=seed)

    def build(self) -> Net:
        """A fresh :class:`~nfct.Net` for this host, with the built-in operations of
        ``zone`` (a ``ct zone set`` template at the raw priority) and ``drop_invalid``."""
        import nfct

        net = nfct.Net(
            dict(self.sysctl),
            seed=self.seed,
            local_addrs=list(self.local_addrs),
            host=self.host,
            mtu=self.mtu,
        )
        if self.zone is not None:
            zone = nfct.BuiltinHook.ct_zone(self.zone)
            for hook in (nfct.NF_INET_PRE_ROUTING, nfct.NF_INET_LOCAL_OUT):
                ops = nfct.NfHookOps(zone, nfct.NFPROTO_INET, hook, nfct.NF_IP_PRI_RAW)
                nfct.nf_register_net_hook(net, ops)
        if self.drop_invalid:
            ops = nfct.NfHookOps(
                nfct.BuiltinHook.drop_invalid(),
                nfct.NFPROTO_INET,
                nfct.NF_INET_PRE_ROUTING,
                nfct.NF_IP_PRI_FILTER,
            )
            nfct.nf_register_net_hook(net, ops)
        return net

    def settings(self) -> dict[str, Any]:
        """As the figures record it."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["sysctl"] = dict(self.sysctl)
        d["local_addrs"] = list(self.local_addrs)
        d["at"] = [[t, _action_name(fn)] for t, fn in self.at]
        d["after_first"] = [[t, _action_name(fn)] for t, fn in self.after_first]
        return d

    def actions(self, first_tstamp: Callable[[], float | None]) -> list[tuple[float, Any]]:
        """``at`` and ``after_first`` as :meth:`~nfct.Net.replay` takes them (``at=``), the
        first packet's time from ``first_tstamp()`` where needed."""
        out: list[tuple[float, Any]] = list(self.at)
        if self.after_first:
            first = first_tstamp() or 0.0
            out += [(first + t, fn) for t, fn in self.after_first]
        return out


def _action_name(fn: Callable[..., object]) -> str:
    """How the figures name an action: an `--at` action by its text, a function by name."""
    own_str: object = type(fn).__str__
    if own_str is not object.__str__:
        return str(fn)
    name: object = getattr(fn, "__qualname__", None)
    return str(name or repr(fn))


# --- binned series -------------------------------------------------------------------------------


class _Bins:
    """Series over time in at most ``n`` bins from ``t0``; a time past the last bin doubles the
    width (adjacent bins merge) until it fits. Sum series add, max series keep the larger."""

    def __init__(self, n: int) -> None:
        self.np = _numpy()
        self.n = max(2, n + (n % 2))
        self.t0: float | None = None
        self.width = 1.0
        self.used = 0  # bins up to the last one touched
        self.sums: dict[str, npt.NDArray[numpy.float64]] = {}
        self.maxes: dict[str, npt.NDArray[numpy.float64]] = {}
        self.groups: dict[str, dict[str, npt.NDArray[numpy.float64]]] = {}
        # bin -> the fullest census that fell in it
        self.census: dict[int, dict[str, Any]] = {}

    def _new(self, fill: float = 0.0) -> npt.NDArray[numpy.float64]:
        a: npt.NDArray[numpy.float64] = self.np.full(self.n, fill, dtype=self.np.float64)
        return a

    def start(self, t: float) -> None:
        if self.t0 is None:
            self.t0 = math.floor(t)

    def _coarsen(self) -> None:
        half = self.n // 2

        def merge_sum(a: npt.NDArray[numpy.float64]) -> npt.NDArray[numpy.float64]:
            out = self._new()
            out[:half] = a.reshape(half, 2).sum(axis=1)
            return out

        def merge_max(a: npt.NDArray[numpy.float64]) -> npt.NDArray[numpy.float64]:
            out = self._new(-1.0)
            out[:half] = a.reshape(half, 2).max(axis=1)
            return out

        self.sums = {k: merge_sum(v) for k, v in self.sums.items()}
        self.maxes = {k: merge_max(v) for k, v in self.maxes.items()}
        self.groups = {g: {k: merge_sum(v) for k, v in d.items()} for g, d in self.groups.items()}
        census: dict[int, dict[str, Any]] = {}
        for i, c in sorted(self.census.items()):
            j = i // 2
            if j not in census or c["total"] >= census[j]["total"]:
                census[j] = c
        self.census = census
        self.width *= 2
        self.used = (self.used + 1) // 2

    def index(self, t: npt.NDArray[numpy.float64]) -> npt.NDArray[numpy.int64]:
        """Bin numbers of times ``t`` (widening the bins as needed)."""
        np = self.np
        assert self.t0 is not None
        if len(t) == 0:
            out: npt.NDArray[numpy.int64] = np.zeros(0, dtype=np.int64)
            return out
        last = float(t.max())
        while (last - self.t0) / self.width >= self.n:
            self._coarsen()
        idx: npt.NDArray[numpy.int64] = np.clip(
            ((t - self.t0) // self.width).astype(np.int64), 0, self.n - 1
        )
        self.used = max(self.used, int(idx.max()) + 1)
        return idx

    def add(self, name: str, idx: npt.NDArray[numpy.int64], weights: Any = None) -> None:
        if name not in self.sums:
            self.sums[name] = self._new()
        if len(idx):
            self.sums[name] += self.np.bincount(idx, weights=weights, minlength=self.n)[: self.n]

    def add_group(self, group: str, key: str, idx: npt.NDArray[numpy.int64]) -> None:
        d = self.groups.setdefault(group, {})
        if key not in d:
            d[key] = self._new()
        if len(idx):
            d[key] += self.np.bincount(idx, minlength=self.n)[: self.n]

    def maximum(self, name: str, idx: npt.NDArray[numpy.int64], values: Any) -> None:
        if name not in self.maxes:
            self.maxes[name] = self._new(-1.0)
        if len(idx):
            self.np.maximum.at(self.maxes[name], idx, values)

    def put_census(self, t: float, census: dict[str, Any]) -> None:
        i = int(self.index(self.np.array([t], dtype=self.np.float64))[0])
        old = self.census.get(i)
        if old is None or census["total"] >= old["total"]:
            self.census[i] = census


# --- gathering the figures ---------------------------------------------------------------------


class Collector:
    """The ``observe=`` callable (and events reader) of a replay that gathers the figures in
    bounded memory: binned series, at most one census a bin, the first ``keep_evictions``
    early-drop victims. :meth:`figures` assembles them after the replay."""

    def __init__(self, *, max_bins: int = 1024, keep_evictions: int = 1000) -> None:
        self.np = _numpy()
        self.bins = _Bins(max_bins)
        self.keep_evictions = keep_evictions
        self.lock = threading.Lock()
        self.packets = 0
        self.peak = 0
        self.peak_t: float | None = None
        self.demand = 0
        self.last_count = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.invalid_by_reason: dict[str, int] = {}
        self.dropped_by_reason: dict[str, int] = {}
        self.dropped_by_rule: dict[str, int] = {}
        self.evicted = 0
        self.evictions: list[dict[str, Any]] = []
        self.evicted_by_state: dict[str, int] = {}
        self.age_n = 0
        self.age_sum = 0.0
        self.age_min = math.inf
        self.age_max = 0.0
        self.age_under = [0] * len(_AGE_LIMITS)
        self.censuses = 0
        self.peak_census: dict[str, Any] | None = None
        self.last_census: dict[str, Any] | None = None
        self.events = 0
        self.zones = False

    # --- observe ---

    def __call__(self, kind: str, data: Any) -> None:
        with self.lock:
            if kind == "packets":
                self._packets(data)
            elif kind == "census":
                self._census(data)
            elif kind == "evictions":
                self._evictions(data)
            elif kind == "evictions_more":
                self._evictions_more(int(data))

    def _packets(self, cols: Mapping[str, Sequence[Any]]) -> None:
        np = self.np
        n = len(cols["frame"])
        if n == 0:
            return
        t = np.asarray(cols["tstamp"], dtype=np.float64)
        count = np.asarray(cols["count"], dtype=np.int64)
        cls = np.asarray(cols["cls"])
        if self.first_t is None:
            self.first_t = float(t[0])
            self.bins.start(self.first_t)
        self.last_t = float(t[-1]) if self.last_t is None else max(self.last_t, float(t[-1]))
        self.packets += n
        b = self.bins
        idx = b.index(t)
        b.add("packets", idx)
        for c in CLASSES:
            mask = cls == c
            b.add(c, idx[mask])
        b.maximum("occupancy", idx, count)
        i = int(count.argmax())
        if int(count[i]) > self.peak:
            self.peak, self.peak_t = int(count[i]), float(t[i])
        # The demand: the count after each packet, and one more before any packet that may
        # have held a transient entry (an INVALID or dropped one).
        prev = np.empty(n, dtype=np.int64)
        prev[0] = self.last_count
        prev[1:] = count[:-1]
        transient = (cls == "invalid") | (cls == "dropped")
        top = int(count.max())
        if transient.any():
            top = max(top, int(prev[transient].max()) + 1)
        self.demand = max(self.demand, top)
        self.last_count = int(count[-1])
        reasons = cols["reason"]
        rules = cols["dropped_by"]
        for j in np.flatnonzero((cls == "invalid") | (cls == "dropped")):
            j = int(j)
            c = str(cls[j])
            why = reasons[j]
            if c == "invalid":
                key = why or "(no reason)"
                self.invalid_by_reason[key] = self.invalid_by_reason.get(key, 0) + 1
                b.add_group("invalid_by_reason", key, idx[j : j + 1])
            else:
                rule = rules[j]
                key = why or (f"dropped by {rule}" if rule else "(no reason)")
                self.dropped_by_reason[key] = self.dropped_by_reason.get(key, 0) + 1
                if rule:
                    self.dropped_by_rule[rule] = self.dropped_by_rule.get(rule, 0) + 1
                b.add_group("dropped_by_reason", key, idx[j : j + 1])
                if why == TABLE_FULL:
                    b.add("table_full", idx[j : j + 1])

    def _census(self, d: Mapping[str, Any]) -> None:
        self.censuses += 1
        groups: dict[str, int] = {}
        for _family, proto, state, zone, n in d["by_state"]:
            if zone:
                self.zones = True
            label = f"{proto_name(proto)} {state}" + (f" zone {zone}" if zone else "")
            groups[label] = groups.get(label, 0) + int(n)
        t = float(d["tstamp"])
        point = {"t": t, "total": int(d["total"]), "groups": groups}
        if self.bins.t0 is not None:
            self.bins.put_census(t, point)
        full = {
            "tstamp": float(d["tstamp"]),
            "total": int(d["total"]),
            "by_state": [list(x) for x in d["by_state"]],
            "sources": [[a, int(n)] for a, n in d["sources"]],
            "destinations": [[a, int(n)] for a, n in d["destinations"]],
        }
        self.last_census = full
        if self.peak_census is None or full["total"] >= self.peak_census["total"]:
            self.peak_census = full

    def _evictions(self, victims: Sequence[Mapping[str, Any]]) -> None:
        np = self.np
        if not victims:
            return
        self.evicted += len(victims)
        ts = np.fromiter((v["tstamp"] for v in victims), dtype=np.float64, count=len(victims))
        if self.bins.t0 is not None:
            self.bins.add("early_drops", self.bins.index(ts))
        for (proto, state), n in Counter((v["proto"], v["state"]) for v in victims).items():
            label = f"{proto_name(int(proto))} {state}"
            self.evicted_by_state[label] = self.evicted_by_state.get(label, 0) + n
        ages = np.array([v["age"] for v in victims if v["age"] is not None], dtype=np.float64)
        if len(ages):
            self.age_n += len(ages)
            self.age_sum += float(ages.sum())
            self.age_min = min(self.age_min, float(ages.min()))
            self.age_max = max(self.age_max, float(ages.max()))
            for k, limit in enumerate(_AGE_LIMITS):
                self.age_under[k] += int((ages < limit).sum())
        room = self.keep_evictions - len(self.evictions)
        for v in victims[: max(0, room)]:
            age = v["age"]
            self.evictions.append(
                {
                    "tstamp": float(v["tstamp"]),
                    "family": v["family"],
                    "proto": proto_name(int(v["proto"])),
                    "src": v["src"],
                    "dst": v["dst"],
                    "sport": v["sport"],
                    "dport": v["dport"],
                    "state": v["state"],
                    "timeout": v["timeout"],
                    "age": None if age is None else float(age),
                    "line": v["line"],
                }
            )

    def _evictions_more(self, n: int) -> None:
        # Victims beyond what the replay kept: counted at the latest packet's time.
        self.evicted += n
        if self.last_t is not None and n:
            idx = self.bins.index(self.np.array([self.last_t], dtype=self.np.float64))
            self.bins.add("early_drops", idx, weights=self.np.array([float(n)]))

    # --- events ---

    def event_lines(self, lines: Iterable[str]) -> None:
        """``conntrack -E -o timestamp`` lines: counts ``[NEW]`` and ``[DESTROY]`` per bin."""
        np = self.np
        new: list[float] = []
        destroyed: list[float] = []
        for ts, kind in _EVENT_TIME.findall("".join(lines)):
            (new if kind == "NEW" else destroyed).append(float(ts))
        with self.lock:
            self.events += len(new) + len(destroyed)
            if self.bins.t0 is None:
                first = min(new + destroyed, default=None)
                if first is None:
                    return
                self.bins.start(first)
            for name, ts in (("new_entries", new), ("destroyed", destroyed)):
                self.bins.add(name, self.bins.index(np.array(ts, dtype=np.float64)))

    # --- assembling ---

    def start(self, tstamp: float) -> None:
        """Puts the first bin at ``tstamp`` (the first packet's time, if known before the
        replay; otherwise the first packet or event seen starts it)."""
        with self.lock:
            self.bins.start(tstamp)

    def figures(
        self,
        net: Net,
        summary: ReplayResult | None,
        *,
        captures: Sequence[str],
        setup: HostSetup,
        events: bool,
        interrupted: bool = False,
        error: str | None = None,
    ) -> dict[str, Any]:
        """The figures (see the module's description) of the replay this collector saw, on
        ``net`` as it is after it."""
        with self.lock:
            return self._figures(net, summary, captures, setup, events, interrupted, error)

    def _figures(
        self,
        net: Net,
        summary: ReplayResult | None,
        captures: Sequence[str],
        setup: HostSetup,
        events: bool,
        interrupted: bool,
        error: str | None,
    ) -> dict[str, Any]:
        stats = dict(net.stats)
        sysctl = net.sysctl
        ct_max = int(sysctl["nf_conntrack_max"])
        early = int(stats.get("early_drop", 0))
        full = self.dropped_by_reason.get(TABLE_FULL, 0)
        held = early == 0 and full == 0
        b = self.bins
        used = b.used

        def series(a: npt.NDArray[numpy.float64] | None) -> list[float] | None:
            if a is None:
                return None
            return [_num(x) for x in a[:used]]

        zeros = b._new()
        occupancy = b.maxes.get("occupancy", b._new(-1.0))
        timeline: dict[str, Any] = {
            "bin": b.width,
            "t": [i * b.width for i in range(used)],
            "packets": series(b.sums.get("packets", zeros)),
            **{c: series(b.sums.get(c, zeros)) for c in CLASSES},
            "occupancy": [None if x < 0 else int(x) for x in occupancy[:used]],
            "new_entries": series(b.sums.get("new_entries", zeros)) if events else None,
            "destroyed": series(b.sums.get("destroyed", zeros)) if events else None,
            "early_drops": series(b.sums.get("early_drops", zeros)),
            "table_full": series(b.sums.get("table_full", zeros)),
            "invalid_by_reason": {
                k: series(v) for k, v in sorted(b.groups.get("invalid_by_reason", {}).items())
            },
            "dropped_by_reason": {
                k: series(v) for k, v in sorted(b.groups.get("dropped_by_reason", {}).items())
            },
        }
        census_points = [b.census[i] for i in sorted(b.census)]
        labels = sorted({g for c in census_points for g in c["groups"]})
        t0 = b.t0 if b.t0 is not None else 0.0
        census = {
            "t": [c["t"] - t0 for c in census_points],
            "total": [c["total"] for c in census_points],
            "groups": {g: [c["groups"].get(g, 0) for c in census_points] for g in labels},
            "count": self.censuses,
            "zones": self.zones,
        }
        states: list[dict[str, Any]] = []
        pc = self.peak_census
        if pc is not None and pc["total"]:
            for family, proto, state, zone, n in pc["by_state"]:
                name = proto_name(int(proto))
                knob = timeout_sysctl(name, state)
                states.append(
                    {
                        "family": family,
                        "proto": name,
                        "state": state,
                        "zone": zone,
                        "entries": int(n),
                        "share": int(n) / pc["total"],
                        "timeout_sysctl": knob,
                        "timeout": int(sysctl[knob]) if knob in _sysctl_names() else None,
                    }
                )
        age = None
        if self.age_n:
            age = {
                "n": self.age_n,
                "min": self.age_min,
                "mean": self.age_sum / self.age_n,
                "max": self.age_max,
                "under": {
                    f"{limit:g}": n for limit, n in zip(_AGE_LIMITS, self.age_under, strict=True)
                },
            }
        span = {
            "start": self.first_t,
            "end": self.last_t,
            "seconds": (self.last_t - self.first_t)
            if self.first_t is not None and self.last_t is not None
            else 0.0,
        }
        demand: int | None = self.demand if held else None
        over = {}
        for ratio in ALERT_RATIOS:
            key = f"seconds_over_{round(ratio * 100)}"
            if ct_max and used:
                over[key] = float((occupancy[:used] >= ratio * ct_max).sum() * b.width)
            else:
                over[key] = 0.0
        table = {
            "max": ct_max,
            "buckets": int(sysctl["nf_conntrack_buckets"]),
            "peak": self.peak,
            "peak_tstamp": self.peak_t,
            "headroom": ct_max - self.peak if ct_max else None,
            "peak_ratio": self.peak / ct_max if ct_max else None,
            "final": int(net.count),
            "held": held,
            "early_drops": early,
            "table_full_drops": full,
            "demand": demand,
            "demand_for_alert": _for_alert(demand),
            **over,
        }
        settings = setup.settings()
        return {
            "version": 1,
            "captures": list(captures),
            "settings": settings,
            "interrupted": interrupted,
            "error": error,
            "summary": summary.to_dict() if summary is not None else None,
            "stats": stats,
            "span": span,
            "table": table,
            "timeline": timeline,
            "census": census,
            "states": states,
            "states_tstamp": pc["tstamp"] if pc is not None else None,
            "sources": pc["sources"] if pc is not None else [],
            "destinations": pc["destinations"] if pc is not None else [],
            "evictions": {
                "total": self.evicted,
                "kept": self.evictions,
                "by_state": dict(sorted(self.evicted_by_state.items(), key=lambda kv: -kv[1])),
                "age": age,
            },
            "invalid": {
                "total": sum(self.invalid_by_reason.values()),
                "by_reason": _desc(self.invalid_by_reason),
            },
            "dropped": {
                "total": sum(self.dropped_by_reason.values()),
                "by_reason": _desc(self.dropped_by_reason),
                "by_rule": _desc(self.dropped_by_rule),
            },
            "events": self.events if events else None,
        }


def _num(x: float) -> float:
    """A float for JSON (integral values as ints)."""
    v = float(x)
    return int(v) if v.is_integer() else v


def _desc(d: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))


def _for_alert(demand: int | None) -> int | None:
    if demand is None:
        return None
    return math.ceil(demand / ALERT_RATIOS[-1])


def _sysctl_names() -> frozenset[str]:
    import nfct

    return frozenset(nfct.SYSCTL_NAMES)


def answers(fig: Mapping[str, Any]) -> dict[str, str]:
    """The four questions, answered in a sentence each from the figures."""
    t = fig["table"]
    start = fig["span"]["start"] or 0.0

    def at(ts: float | None) -> str:
        return f"+{ts - start:.1f} s" if ts is not None else "?"

    ct_max = t["max"]
    limit = f"nf_conntrack_max {ct_max:,}" if ct_max else "no nf_conntrack_max (0: no limit)"
    if t["held"]:
        held = f"Yes: at most {t['peak']:,} entries ({at(t['peak_tstamp'])}) against {limit}"
        if ct_max:
            held += f", {t['peak_ratio']:.1%} of it; headroom {t['headroom']:,} entries"
        held += "."
    else:
        held = (
            f"No: the table reached {t['peak']:,} entries ({at(t['peak_tstamp'])}) against "
            f"{limit}; early drop evicted {t['early_drops']:,} entries and "
            f"{t['table_full_drops']:,} packets were dropped because the table was full."
        )
    chains = sum(n for r, n in fig["dropped"]["by_reason"].items() if "chain too long" in r)
    if chains:
        held = held.removesuffix(".") + (
            f"; but {chains:,} packets were dropped because a hash chain was too long "
            f"(nf_conntrack_buckets {t['buckets']:,})."
        )
    states = fig["states"]
    if states:
        parts = [
            f"{s['family']} {s['proto']} {s['state']}"
            f"{' zone ' + str(s['zone']) if s['zone'] else ''} "
            f"{s['share']:.0%} (kept by {s['timeout_sysctl']}"
            + (f" = {s['timeout']:,} s)" if s["timeout"] is not None else ")")
            for s in states[:3]
        ]
        filled = f"At the fullest census ({at(fig['states_tstamp'])}): " + "; ".join(parts)
        if fig["sources"]:
            a, n = fig["sources"][0]
            filled += f". Heaviest source: {a} with {n:,} {'entry' if n == 1 else 'entries'}"
        filled += "."
    else:
        filled = "Nothing: the table was empty at every census."
    ev = fig["evictions"]
    dropped = []
    if ev["total"]:
        top = next(iter(ev["by_state"]), None)
        d = f"early drop evicted {ev['total']:,} entries"
        if top:
            d += f" (most: {top}"
            if ev["age"]:
                d += f"; mean age {ev['age']['mean']:.1f} s"
            d += ")"
        dropped.append(d)
    if fig["dropped"]["total"]:
        reason, n = next(iter(fig["dropped"]["by_reason"].items()))
        dropped.append(f"{fig['dropped']['total']:,} packets dropped (most: {reason}, {n:,})")
    if fig["invalid"]["total"]:
        reason, n = next(iter(fig["invalid"]["by_reason"].items()))
        dropped.append(f"{fig['invalid']['total']:,} packets INVALID (most: {reason}, {n:,})")
    what = "; ".join(dropped)
    what = what[0].upper() + what[1:] + "." if what else "Nothing."
    partial = fig["interrupted"] or fig["error"]
    if t["demand"] is not None:
        need = (
            f"nf_conntrack_max {t['demand']:,} would have held it (the peak with no limit); "
            f"{t['demand_for_alert']:,} keeps the peak under the 90 % operators page at."
        )
        if partial:
            need += " (For what was replayed: the replay did not finish.)"
    elif partial:
        need = "Unknown: the replay did not finish."
    else:
        need = "Unknown: no replay without a limit was run."
    return {
        "Did the table hold?": held,
        "What filled it?": filled,
        "What got dropped?": what,
        "What max would have held it?": need,
    }


# --- computing ---------------------------------------------------------------------------------


def compute(
    captures: Sequence[str | os.PathLike[str]],
    setup: HostSetup | None = None,
    *,
    demand: bool = True,
    events: bool = True,
    timestamps: bool = True,
    progress: Callable[[int, int], object] | None = None,
    census_every: float = 1.0,
    keep_evictions: int = 1000,
    max_bins: int = 1024,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Replays ``captures`` (plain or compressed files, ``-`` for standard input) through the
    host ``setup`` describes and returns the figures (see the module's description).

    ``demand``: find the max that would have held it, with one more replay where needed
    (with no limit, ``nf_conntrack_max=0`` and the same seed, when the table did not hold; a
    plain one at the peak when a transient entry may have needed one more). ``events``:
    count new and destroyed entries from the ``conntrack -E`` events. ``timestamps``: turn
    on ``nf_conntrack_timestamp`` (unless ``setup`` sets it) so that victims have an age.
    ``progress(frames, packets)`` as :meth:`~nfct.Net.replay` calls it. ``names``: how to
    name the captures in the figures (default: as given).

    A capture that cannot be read raises :class:`~nfct.CaptureError`, and Ctrl-C
    ``KeyboardInterrupt``, each with a ``figures`` attribute holding the figures of what was
    replayed (and the exception's ``summary``)."""
    from nfct.inputs import CaptureInputs

    _numpy()
    setup = setup or HostSetup()
    if setup.seed is None:
        setup = setup.with_seed(random.getrandbits(63))
    if timestamps and "nf_conntrack_timestamp" not in setup.sysctl:
        setup = setup.with_sysctl({"nf_conntrack_timestamp": 1})
    shown = list(names) if names is not None else [os.fspath(c) for c in captures]
    kw: dict[str, Any] = {
        "demand": demand,
        "events": events,
        "progress": progress,
        "census_every": census_every,
        "keep_evictions": keep_evictions,
        "max_bins": max_bins,
        "names": shown,
    }
    if demand and any(os.fspath(c) == "-" for c in captures):
        # Standard input can be read once, and the demand may need more replays: spooled
        # into a temporary file first, which every replay reads.
        with CaptureInputs(captures, mode="spool") as spool:
            return _compute(spool.paths, setup, spool=spool, **kw)
    return _compute(captures, setup, spool=None, **kw)


def _compute(
    captures: Sequence[str | os.PathLike[str]],
    setup: HostSetup,
    *,
    demand: bool,
    events: bool,
    progress: Callable[[int, int], object] | None,
    census_every: float,
    keep_evictions: int,
    max_bins: int,
    names: list[str],
    spool: CaptureInputs | None,
) -> dict[str, Any]:
    """:func:`compute` once ``setup`` is complete; ``spool``: the captures as given, spooled
    into the temporary files ``captures`` names (its errors and names are the captures')."""
    from nfct.inputs import CaptureInputs

    net = setup.build()
    col = Collector(max_bins=max_bins, keep_evictions=keep_evictions)
    with_events = events and int(net.sysctl["nf_conntrack_events"]) != 0
    summary: ReplayResult | None = None
    failure: BaseException | None = None
    error: str | None = None
    interrupted = False
    with CaptureInputs(captures) as inputs:
        first = inputs.first_tstamp()
        if first is not None:
            col.start(first)
        reader = LinePipe(col.event_lines, "nfct-events") if with_events else None
        try:
            summary = net.replay(
                inputs.paths,
                clock=setup.clock,
                path=setup.path,
                iif=setup.iif,
                at=setup.actions(lambda: first),
                observe=col,
                census_every=census_every,
                keep_evictions=max(keep_evictions, 100_000),
                progress=progress,
                events_path=reader.path if reader is not None else None,
                event_timestamps=True,
            )
        except CaptureError as e:
            failure = inputs.rename(e)
            if spool is not None:
                failure = spool.rename(failure)
            summary = e.summary
        except KeyboardInterrupt as e:
            failure = e
            interrupted = True
            summary = getattr(e, "summary", None)
        finally:
            if reader is not None:
                reader.close()
    # A decompression error says why a capture ended early (and what was applied before).
    bad = inputs.error() or (spool.error() if spool is not None else None)
    if bad is not None:
        failure = bad
    if isinstance(failure, CaptureError):
        error = str(failure)
    fig = col.figures(
        net,
        summary,
        captures=names,
        setup=setup,
        events=with_events,
        interrupted=interrupted,
        error=error,
    )
    table = fig["table"]
    if demand and failure is None:
        if table["held"]:
            table["demand"] = _held_demand(captures, setup, table)
        else:
            table["demand"] = _demand(captures, setup, progress=progress, summary=summary)
        table["demand_for_alert"] = _for_alert(table["demand"])
    fig["answers"] = answers(fig)
    if failure is not None:
        setattr(failure, "figures", fig)  # noqa: B010 (an attribute exceptions do not declare)
        if isinstance(failure, CaptureError) and failure.summary is None:
            failure.summary = summary
        raise failure
    return fig


def _demand(
    captures: Sequence[str | os.PathLike[str]],
    setup: HostSetup,
    *,
    progress: Callable[[int, int], object] | None,
    summary: ReplayResult | None,
) -> int:
    """The peak demand on the table: the same replay with no nf_conntrack_max."""
    from nfct.inputs import CaptureInputs

    unlimited = setup.with_sysctl({"nf_conntrack_max": 0})
    net = unlimited.build()
    col = Collector(max_bins=2, keep_evictions=0)
    tick = None
    if progress is not None and summary is not None:
        f0, p0 = summary.frames, summary.packets
        tick = lambda f, p: progress(f0 + f, p0 + p)  # noqa: E731
    with CaptureInputs(captures) as inputs:
        net.replay(
            inputs.paths,
            clock=unlimited.clock,
            path=unlimited.path,
            iif=unlimited.iif,
            at=unlimited.actions(inputs.first_tstamp),
            observe=col,
            census_every=0.0,
            keep_evictions=0,
            progress=tick,
        )
    return _refine(captures, setup, col.demand, col.peak)


def _held_demand(
    captures: Sequence[str | os.PathLike[str]], setup: HostSetup, table: Mapping[str, Any]
) -> int:
    """The exact demand of a run that held (``table``: its figures), whose count went as it
    would have with no limit."""
    if table["max"] == table["peak"]:
        return int(table["peak"])  # it held at its very peak
    return _refine(captures, setup, int(table["demand"]), int(table["peak"]))


def _refine(
    captures: Sequence[str | os.PathLike[str]], setup: HostSetup, bound: int, peak: int
) -> int:
    """The demand is the peak count after a packet, or one more where a packet that never
    stayed (INVALID or dropped) may have held a transient entry at that peak: ``bound`` is
    then ``peak + 1``, and a replay at ``nf_conntrack_max=peak`` (plain, fast) tells which."""
    from nfct.inputs import CaptureInputs

    if bound != peak + 1 or peak <= 0:
        return bound
    probe = setup.with_sysctl({"nf_conntrack_max": peak})
    net = probe.build()
    with CaptureInputs(captures) as inputs:
        res = net.replay(
            inputs.paths,
            clock=probe.clock,
            path=probe.path,
            iif=probe.iif,
            at=probe.actions(inputs.first_tstamp),
        )
    held = net.stats["early_drop"] == 0 and res.reasons.get(TABLE_FULL, 0) == 0
    return peak if held else bound


# --- what-if -------------------------------------------------------------------------------------


def _combinations(grid: Mapping[str, Sequence[int]]) -> list[dict[str, int]]:
    names = list(grid)
    for name in names:
        if name not in _sysctl_names():
            raise NfctValueError(f"sweep: {name!r} is not a conntrack sysctl")
        if not grid[name]:
            raise NfctValueError(f"sweep: no values for {name}")
    return [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(grid[n] for n in names))
    ]


def _sweep_task(
    captures: Sequence[str], setup: HostSetup, names: Sequence[str], kw: Mapping[str, Any]
) -> tuple[dict[str, Any], tuple[str, str, int] | None]:
    """One run of a sweep (in a worker process): its figures, and when a capture could not
    be read all through, the error (message, capture as given, offset) with the capture
    named as given (figures and errors cross back to the parent pickled: a ReplayResult
    cannot)."""
    try:
        return compute(captures, setup, names=names, demand=False, **kw), None
    except CaptureError as e:
        msg, name = str(e), e.path
        for path, given in zip(captures, names, strict=True):
            if path != given:
                msg = msg.replace(path, "standard input" if given == "-" else given)
                name = given if name == path else name
        fig = getattr(e, "figures", None)
        if fig is None:
            raise CaptureError(msg, name, e.offset) from None
        fig["error"] = msg
        return fig, (msg, name, e.offset)


def _demand_task(captures: Sequence[str], setup: HostSetup, table: Mapping[str, Any] | None) -> int:
    """The demand of a group of a sweep: from its run that held (``table``), or from a
    replay with no limit."""
    if table is not None:
        return _held_demand(captures, setup, table)
    return _demand(captures, setup, progress=None, summary=None)


def sweep(
    captures: Sequence[str | os.PathLike[str]],
    grid: Mapping[str, Sequence[int]],
    setup: HostSetup | None = None,
    *,
    workers: int | None = None,
    demand: bool = True,
    on_done: Callable[[int, int, Mapping[str, int]], object] | None = None,
    executor: concurrent.futures.Executor | None = None,
    **kw: Any,
) -> list[dict[str, Any]]:
    """What-if: the figures of one replay per combination of ``grid``'s values (``{sysctl:
    [values]}``, combined as nested loops in the order given) on top of ``setup``, in
    parallel processes (``workers``, default: as many as the machine has cores; each builds
    its own Net; captures that are not plain files are decompressed once, first). Every run
    uses the same seed (``setup.seed``, or one picked here). ``demand``: the max that would
    have held it, once for each combination of the other settings (from a run that held, else
    from one more replay with no limit), for every run of that combination.
    ``on_done(done, total, values)`` after each run. Returns the figures in the grid's
    order, each with ``sweep`` set to its values. ``kw`` goes to :func:`compute` (not
    ``progress``, ``names`` or ``demand``). Ctrl-C stops the runs at once (the workers are
    terminated) and raises ``KeyboardInterrupt`` whose ``figures`` are the runs done so far
    (without their demand; run serially, the interrupted run's too, ``interrupted`` set).
    ``executor``: run the replays there instead (a Dask cluster's, from :mod:`nfct.cluster`),
    each reading the captures itself (files by their absolute path, nothing decompressed
    here first)."""
    from nfct.inputs import CaptureInputs

    _numpy()
    combos = _combinations(grid)
    setup = setup or HostSetup()
    if setup.seed is None:
        setup = setup.with_seed(random.getrandbits(63))
    if kw.get("timestamps", True) and "nf_conntrack_timestamp" not in setup.sysctl:
        setup = setup.with_sysctl({"nf_conntrack_timestamp": 1})
    kw = {k: v for k, v in kw.items() if k not in ("progress", "names", "demand")}
    remote = executor is not None
    with CaptureInputs([] if remote else captures, mode="spool") as inputs:
        err = inputs.error()
        if err is not None:
            raise err
        paths, names = list(inputs.paths), list(inputs.names)
        if remote:
            names = [os.fspath(c) for c in captures]
            paths = [os.path.abspath(c) if os.path.exists(c) else c for c in names]
        setups = [setup.with_sysctl(c) for c in combos]
        n = min(len(setups), workers or os.cpu_count() or 1)
        results: list[dict[str, Any] | None] = [None] * len(setups)
        errors: list[tuple[str, str, int] | None] = [None] * len(setups)
        done = 0
        demands: dict[tuple[tuple[str, int], ...], int] = {}
        try:
            if n <= 1 and not remote:
                for i, s in enumerate(setups):
                    try:
                        results[i], errors[i] = _sweep_task(paths, s, names, kw)
                    except KeyboardInterrupt as e:
                        results[i] = getattr(e, "figures", None)  # what this run replayed
                        raise
                    done += 1
                    if on_done is not None:
                        on_done(done, len(setups), combos[i])
                _raise_first(errors, combos, results)
                demands = _sweep_demands(paths, setup, combos, results, demand, None)
            else:
                _check_picklable(setup)
                ctx = multiprocessing.get_context(
                    "forkserver" if sys.platform.startswith("linux") else "spawn"
                )
                pool = executor or concurrent.futures.ProcessPoolExecutor(
                    max_workers=n, mp_context=ctx, initializer=_worker_init
                )
                try:
                    futures = {
                        pool.submit(_sweep_task, paths, s, names, kw): i
                        for i, s in enumerate(setups)
                    }
                    for fut in concurrent.futures.as_completed(futures):
                        i = futures[fut]
                        results[i], errors[i] = fut.result()
                        done += 1
                        if on_done is not None:
                            on_done(done, len(setups), combos[i])
                    _raise_first(errors, combos, results)
                    demands = _sweep_demands(paths, setup, combos, results, demand, pool)
                except concurrent.futures.process.BrokenProcessPool as e:
                    _stop(pool)
                    raise NfctError(
                        f"sweep: a worker process ended abruptly ({e}): out of memory? "
                        "Fewer workers (--jobs) need less"
                    ) from None
                except BaseException:
                    _stop(pool)
                    raise
                pool.shutdown()
        except KeyboardInterrupt as e:
            # Ctrl-C: the runs that were done (without their demand) go with it.
            setattr(e, "figures", _sweep_runs(combos, results, {}))  # noqa: B010
            raise
    return _sweep_runs(combos, results, demands)


def _raise_first(
    errors: Sequence[tuple[str, str, int] | None],
    combos: Sequence[Mapping[str, int]],
    results: Sequence[dict[str, Any] | None],
) -> None:
    """A CaptureError for the first run that could not read its captures all through, with
    ``figures`` the runs (each with its ``error``, without a demand), if any run had one."""
    for err in errors:
        if err is not None:
            exc = CaptureError(*err)
            setattr(exc, "figures", _sweep_runs(combos, results, {}))  # noqa: B010
            raise exc


def _sweep_runs(
    combos: Sequence[Mapping[str, int]],
    results: Sequence[dict[str, Any] | None],
    demands: Mapping[tuple[tuple[str, int], ...], int],
) -> list[dict[str, Any]]:
    """The figures of the runs that have them, each with its values and its group's demand."""
    out: list[dict[str, Any]] = []
    for c, fig in zip(combos, results, strict=True):
        if fig is None:
            continue
        fig["sweep"] = dict(c)
        key = _group_key(c)
        if key in demands:
            fig["table"]["demand"] = demands[key]
            fig["table"]["demand_for_alert"] = _for_alert(demands[key])
        fig["answers"] = answers(fig)
        out.append(fig)
    return out


def _check_picklable(setup: HostSetup) -> None:
    """The actions of ``setup`` go to worker processes: a clear error where they cannot."""
    for _, fn in (*setup.at, *setup.after_first):
        try:
            pickle.dumps(fn)
        except Exception as e:
            raise NfctValueError(
                f"sweep: the action {_action_name(fn)} cannot go to a worker process ({e}): "
                "use a module-level function or functools.partial, or workers=1"
            ) from None


def _worker_init() -> None:
    """A sweep's worker leaves Ctrl-C to the parent, which stops it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: concurrent.futures.Executor) -> None:
    """Ends a pool at once: its queued runs cancelled, its workers terminated (not waited
    for, as leaving a ``with`` block or the interpreter's exit would). Another executor (a
    cluster's) is shut down without waiting: its runs are cancelled, its workers go on."""
    if not isinstance(pool, concurrent.futures.ProcessPoolExecutor):
        pool.shutdown(wait=False)
        return
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    # Before shutdown(), which forgets them.
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(5.0)


def _group_key(values: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """A combination without its nf_conntrack_max: runs that differ only in the max share
    their demand."""
    return tuple(sorted((k, v) for k, v in values.items() if k != "nf_conntrack_max"))


def _sweep_demands(
    paths: Sequence[str],
    setup: HostSetup,
    combos: Sequence[Mapping[str, int]],
    results: Sequence[dict[str, Any] | None],
    demand: bool,
    pool: concurrent.futures.Executor | None,
) -> dict[tuple[tuple[str, int], ...], int]:
    """The demand of each group of combinations (runs that differ only in their max): from a
    run of the group that held, else from one more replay with no limit."""
    if not demand:
        return {}
    tasks: dict[tuple[tuple[str, int], ...], tuple[HostSetup, Mapping[str, Any] | None]] = {}
    for c, fig in zip(combos, results, strict=True):
        assert fig is not None
        key = _group_key(c)
        if fig["table"]["held"] and (key not in tasks or tasks[key][1] is None):
            tasks[key] = (setup.with_sysctl(dict(c)), fig["table"])
        elif key not in tasks:
            tasks[key] = (setup.with_sysctl(dict(c)), None)
    if pool is None:
        return {key: _demand_task(paths, s, t) for key, (s, t) in tasks.items()}
    futs = {key: pool.submit(_demand_task, paths, s, t) for key, (s, t) in tasks.items()}
    return {key: fut.result() for key, fut in futs.items()}


def sweep_rows(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The side-by-side table of a sweep: one row per run with its values, whether the table
    held, the peak and its share of the max, early drops, packets dropped, INVALID packets,
    the final entries and the demand."""
    rows = []
    for fig in runs:
        t = fig["table"]
        rows.append(
            {
                **fig.get("sweep", {}),
                "held": t["held"],
                "max": t["max"],
                "peak": t["peak"],
                "peak_ratio": t["peak_ratio"],
                "early_drops": t["early_drops"],
                "table_full_drops": t["table_full_drops"],
                "dropped": fig["dropped"]["total"],
                "invalid": fig["invalid"]["total"],
                "final": t["final"],
                "demand": t["demand"],
            }
        )
    return rows


# --- rendering -----------------------------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(
            "the HTML report needs matplotlib: pip install 'nfct[report]'"
        ) from None
    from matplotlib.figure import Figure

    _ = matplotlib
    return Figure


_COLORS: Final = (
    "#4c72b0",
    "#dd8452",
    "#55a868",
    "#c44e52",
    "#8172b3",
    "#937860",
    "#da8bc3",
    "#8c8c8c",
    "#ccb974",
    "#64b5cd",
)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _new_figure(height: float = 3.4) -> tuple[Any, Any]:
    figure_cls = _matplotlib()
    fig = figure_cls(figsize=(10, height), dpi=96)
    ax = fig.subplots()
    ax.grid(True, alpha=0.3)
    return fig, ax


def _top(groups: Mapping[str, Sequence[float]], n: int) -> list[tuple[str, Sequence[float]]]:
    """The ``n`` largest series by total, then the rest summed as "other"."""
    ranked = sorted(groups.items(), key=lambda kv: -sum(x or 0 for x in kv[1]))
    top = list(ranked[:n])
    rest = ranked[n:]
    if rest:
        length = len(rest[0][1])
        top.append(("other", [sum(s[i] or 0 for _, s in rest) for i in range(length)]))
    return top


def _xlabel(fig: Mapping[str, Any]) -> str:
    start = fig["span"]["start"]
    if start is None:
        return "seconds from the first packet"
    when = datetime.datetime.fromtimestamp(start, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"seconds from the first packet ({when} UTC, capture clock)"


def plot_occupancy(fig: Mapping[str, Any]) -> str:
    """Entries over time: the census split by protocol and state (and zone), the occupancy
    after each packet (the most in each bin), ``nf_conntrack_max`` and the alert levels."""
    f, ax = _new_figure(4.0)
    tl, census, t = fig["timeline"], fig["census"], fig["table"]
    if census["t"] and census["groups"]:
        top = _top(census["groups"], 7)
        ax.stackplot(
            census["t"],
            *[s for _, s in top],
            labels=[g for g, _ in top],
            colors=_COLORS[: len(top)],
            alpha=0.55,
            step="post",
        )
    occ = tl["occupancy"]
    xs, ys, last = [], [], None
    for x, y in zip(tl["t"], occ, strict=True):
        last = y if y is not None else last
        if last is not None:
            xs.append(x)
            ys.append(last)
    if xs:
        ax.step(xs, ys, where="post", color="black", lw=1.2, label="entries (most in each bin)")
    if t["max"]:
        ax.axhline(
            t["max"], color="#c44e52", ls="--", lw=1.2, label=f"nf_conntrack_max {t['max']:,}"
        )
        for ratio, style in zip(ALERT_RATIOS, (":", "-."), strict=True):
            if t["peak"] >= ratio * t["max"] * 0.5:
                ax.axhline(
                    ratio * t["max"],
                    color="#dd8452",
                    ls=style,
                    lw=0.8,
                    alpha=0.8,
                    label=f"{ratio:.0%} of the max",
                )
    if t["demand"] is not None and t["demand"] != t["peak"]:
        ax.axhline(t["demand"], color="#55a868", ls="--", lw=1.0, label=f"demand {t['demand']:,}")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_xlabel(fig))
    ax.set_ylabel("entries")
    ax.set_title("Entries in the table over time, by protocol and state")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    return _png(f)


def _rate(series: Sequence[float] | None, width: float) -> list[float] | None:
    return None if series is None else [(x or 0) / width for x in series]


def plot_rates(fig: Mapping[str, Any]) -> str:
    """New connections per second (entries confirmed, from the ``[NEW]`` events; packets in
    ct state NEW), and entries destroyed per second."""
    f, ax = _new_figure()
    tl = fig["timeline"]
    w = tl["bin"]
    new = _rate(tl["new_entries"], w)
    if new is not None:
        ax.step(tl["t"], new, where="post", color=_COLORS[0], label="new entries/s ([NEW] events)")
        ax.step(
            tl["t"],
            _rate(tl["destroyed"], w),
            where="post",
            color=_COLORS[7],
            label="entries destroyed/s ([DESTROY])",
        )
    ax.step(
        tl["t"],
        _rate(tl["new"], w),
        where="post",
        color=_COLORS[1],
        lw=0.8,
        ls="--",
        label="packets/s in ct state NEW",
    )
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_xlabel(fig))
    ax.set_ylabel("per second" + (f" (mean over {w:g} s bins)" if w != 1 else ""))
    ax.set_title("New connections per second")
    ax.legend(loc="upper left", fontsize=8)
    return _png(f)


def plot_drops(fig: Mapping[str, Any]) -> str:
    """Early drops (entries evicted) and packets dropped, by reason, per bin."""
    f, ax = _new_figure()
    tl = fig["timeline"]
    ax.step(
        tl["t"],
        tl["early_drops"],
        where="post",
        color=_COLORS[3],
        lw=1.4,
        label="entries evicted by early drop",
    )
    for i, (reason, s) in enumerate(_top(tl["dropped_by_reason"], 5)):
        ax.step(
            tl["t"],
            s,
            where="post",
            color=_COLORS[(i + 4) % len(_COLORS)],
            lw=1.0,
            label=f"packets dropped: {reason}",
        )
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_xlabel(fig))
    ax.set_ylabel(f"per {tl['bin']:g} s bin")
    ax.set_title("Early drops and dropped packets over time")
    ax.legend(loc="upper left", fontsize=8)
    return _png(f)


def plot_invalid(fig: Mapping[str, Any]) -> str:
    """INVALID packets per bin, one line per reason (the kernel's words)."""
    f, ax = _new_figure()
    tl = fig["timeline"]
    groups = tl["invalid_by_reason"]
    for i, (reason, s) in enumerate(_top(groups, 6)):
        ax.step(tl["t"], s, where="post", color=_COLORS[i % len(_COLORS)], label=reason)
    if not groups:
        ax.step(tl["t"], tl["invalid"], where="post", color=_COLORS[0], label="INVALID packets")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_xlabel(fig))
    ax.set_ylabel(f"packets per {tl['bin']:g} s bin")
    ax.set_title("INVALID packets over time, by reason")
    ax.legend(loc="upper left", fontsize=8)
    return _png(f)


def plot_heavy(fig: Mapping[str, Any]) -> str:
    """The addresses holding the most entries, as source and as destination."""
    figure_cls = _matplotlib()
    f = figure_cls(figsize=(10, 3.6), dpi=96)
    axes = f.subplots(1, 2)
    for ax, key, color in zip(
        axes, ("sources", "destinations"), (_COLORS[0], _COLORS[2]), strict=True
    ):
        rows = fig[key][:10][::-1]
        ax.barh([a for a, _ in rows], [n for _, n in rows], color=color)
        ax.set_title(f"Heaviest {key} (entries held)")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    f.tight_layout()
    return _png(f)


def plot_states(fig: Mapping[str, Any]) -> str:
    """Entries by state at the fullest census, each labelled with the timeout keeping it."""
    f, ax = _new_figure(max(2.0, 0.35 * min(len(fig["states"]), 12) + 1.0))
    rows = fig["states"][:12][::-1]
    labels = [
        f"{s['family']} {s['proto']} {s['state']}" + (f" zone {s['zone']}" if s["zone"] else "")
        for s in rows
    ]
    ax.barh(labels, [s["entries"] for s in rows], color=_COLORS[4])
    for i, s in enumerate(rows):
        ax.annotate(
            f" {s['timeout_sysctl']}"
            + (f" = {s['timeout']:,} s" if s["timeout"] is not None else ""),
            (s["entries"], i),
            va="center",
            fontsize=8,
        )
    ax.set_title("Which state holds the entries (the timeouts that dominate)")
    ax.set_xlabel("entries")
    ax.tick_params(axis="y", labelsize=8)
    return _png(f)


_CSS: Final = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1060px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.answers td:first-child { font-weight: bold; white-space: nowrap; }
.held { color: #1b7a2e; } .overflow { color: #b02a2a; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
code, .mono { font-family: monospace; font-size: 0.9em; }
.note { color: #666; font-size: 0.85em; }
"""


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Iterable[int] = ()
) -> str:
    num = set(numeric)
    out = ["<table><tr>"]
    out += [
        f"<th{' class=n' if i in num else ''}>{html.escape(h)}</th>" for i, h in enumerate(headers)
    ]
    out.append("</tr>")
    for row in rows:
        out.append("<tr>")
        for i, v in enumerate(row):
            cls = ' class="n"' if i in num else ""
            out.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if not v.is_integer() else f"{int(v):,}"
    return str(v)


def _section(fig: Mapping[str, Any], level: int = 2) -> str:
    """One run's figures as HTML (answers, plots, tables)."""
    h = f"h{level}"
    t = fig["table"]
    out = []
    ok = "held" if t["held"] else "overflow"
    out.append('<table class="answers">')
    for q, a in fig["answers"].items():
        css = f' class="{ok}"' if q == "Did the table hold?" else ""
        out.append(f"<tr><td>{html.escape(q)}</td><td{css}>{html.escape(a)}</td></tr>")
    out.append("</table>")
    if fig.get("error"):
        out.append(f'<p class="overflow">Replay stopped: {html.escape(fig["error"])}</p>')
    if fig.get("interrupted"):
        out.append('<p class="overflow">Interrupted: the figures cover what was replayed.</p>')
    s = fig["summary"] or {}
    rows = [
        ("packets (frames)", f"{s.get('packets', 0):,} ({s.get('frames', 0):,})"),
        ("capture span", f"{fig['span']['seconds']:,.1f} s"),
        ("nf_conntrack_max / buckets", f"{t['max']:,} / {t['buckets']:,}"),
        (
            "peak entries",
            f"{t['peak']:,}" + (f" ({t['peak_ratio']:.1%})" if t["peak_ratio"] is not None else ""),
        ),
        (
            "time at ≥ 50 % / ≥ 90 % of max",
            f"{t['seconds_over_50']:g} s / {t['seconds_over_90']:g} s",
        ),
        ("entries at the end", f"{t['final']:,}"),
        ("early drops / table-full drops", f"{t['early_drops']:,} / {t['table_full_drops']:,}"),
        ("demand (max that holds it)", _fmt(t["demand"])),
        (
            "new / established / related",
            f"{s.get('new', 0):,} / {s.get('established', 0):,} / {s.get('related', 0):,}",
        ),
        (
            "invalid / untracked / dropped",
            f"{s.get('invalid', 0):,} / {s.get('untracked', 0):,} / {s.get('dropped', 0):,}",
        ),
    ]
    out.append(_table(("figure", "value"), rows))
    out.append(f"<{h}>Entries over time</{h}>")
    out.append(_img(plot_occupancy(fig), "entries over time by protocol and state"))
    c = fig["census"]
    out.append(
        f'<p class="note">Stacked areas: {c["count"]:,} censuses of the table (at most one per '
        f"{fig['timeline']['bin']:g} s bin shown, spaced so that counting costs at most a quarter "
        "of the replay); black line: the occupancy after each packet (nf_conntrack_count, "
        "unconfirmed entries included).</p>"
    )
    out.append(f"<{h}>New connections per second</{h}>")
    out.append(_img(plot_rates(fig), "new connections per second"))
    out.append(f"<{h}>Early drops and drops</{h}>")
    out.append(_img(plot_drops(fig), "early drops and drops over time"))
    ev = fig["evictions"]
    if ev["total"]:
        age = ev["age"]
        if age:
            under = ", ".join(f"{n:,} under {k} s" for k, n in age["under"].items())
            out.append(
                f"<p>{ev['total']:,} entries evicted; age min {age['min']:.2f} s, mean "
                f"{age['mean']:.2f} s, max {age['max']:.2f} s ({under}).</p>"
            )
        out.append(_table(("evicted state", "entries"), ev["by_state"].items(), numeric=(1,)))
        start = fig["span"]["start"] or 0.0
        rows2 = [
            (
                f"+{v['tstamp'] - start:.3f}",
                f"{v['family']} {v['proto']}",
                f"{v['src']}" + (f":{v['sport']}" if v["sport"] is not None else ""),
                f"{v['dst']}" + (f":{v['dport']}" if v["dport"] is not None else ""),
                v["state"],
                v["timeout"],
                None if v["age"] is None else round(v["age"], 3),
            )
            for v in ev["kept"][:50]
        ]
        more = ev["total"] - len(rows2)
        out.append(
            f"<p>Who was evicted (the first {len(rows2):,}"
            + (f" of {ev['total']:,}" if more else "")
            + "):</p>"
        )
        out.append(
            _table(
                (
                    "time (s)",
                    "proto",
                    "source",
                    "destination",
                    "state",
                    "timeout left (s)",
                    "age (s)",
                ),
                rows2,
                numeric=(0, 5, 6),
            )
        )
    else:
        out.append("<p>No entry was evicted by early drop.</p>")
    if fig["dropped"]["total"]:
        out.append(
            _table(
                ("packets dropped because", "packets"),
                fig["dropped"]["by_reason"].items(),
                numeric=(1,),
            )
        )
    out.append(f"<{h}>INVALID packets</{h}>")
    if fig["invalid"]["total"]:
        out.append(_img(plot_invalid(fig), "INVALID packets over time by reason"))
        out.append(_table(("reason", "packets"), fig["invalid"]["by_reason"].items(), numeric=(1,)))
    else:
        out.append("<p>No packet was INVALID.</p>")
    out.append(f"<{h}>What holds the table</{h}>")
    if fig["states"]:
        out.append(_img(plot_states(fig), "entries by state"))
        out.append(_img(plot_heavy(fig), "heaviest sources and destinations"))
        srows = [
            (
                f"{s['family']} {s['proto']} {s['state']}"
                + (f" zone {s['zone']}" if s["zone"] else ""),
                s["entries"],
                f"{s['share']:.1%}",
                s["timeout_sysctl"],
                s["timeout"],
            )
            for s in fig["states"]
        ]
        out.append(
            _table(
                ("state", "entries", "share", "timeout sysctl", "timeout (s)"),
                srows,
                numeric=(1, 2, 4),
            )
        )
    else:
        out.append("<p>The table was empty at every census.</p>")
    return "\n".join(out)


def _settings_text(fig: Mapping[str, Any]) -> str:
    st = fig["settings"]
    parts = [f"clock {st['clock']}", f"path {st['path']}", f"seed {st['seed']}"]
    if st["host"]:
        parts.append(f"host {st['host']}")
    if st["zone"] is not None:
        parts.append(f"zone {st['zone']}")
    if st["drop_invalid"]:
        parts.append("drop invalid")
    parts += [f"{k}={v}" for k, v in sorted(st["sysctl"].items())]
    return ", ".join(parts)


def render_html(
    figures: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, title: str | None = None
) -> str:
    """One self-contained HTML page (inline CSS, plots as PNG data URIs) of the figures of
    :func:`compute`, or of a :func:`sweep` (a list: the runs side by side, then each run)."""
    _matplotlib()
    runs = [figures] if isinstance(figures, Mapping) else list(figures)
    if not runs:
        raise NfctValueError("render_html: no figures")
    first = runs[0]
    caps = ", ".join(first["captures"])
    title = title or f"nfct report: {caps}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if isinstance(figures, Mapping):
        out.append(f'<p class="note">{html.escape(_settings_text(first))}</p>')
        out.append(_section(first))
    else:
        out.append(_sweep_section(runs))
        for i, fig in enumerate(runs):
            label = ", ".join(f"{k}={v:,}" for k, v in fig.get("sweep", {}).items())
            opened = " open" if i == 0 else ""
            out.append(f"<details{opened}><summary><b>{html.escape(label)}</b></summary>")
            out.append(f'<p class="note">{html.escape(_settings_text(fig))}</p>')
            out.append(_section(fig, level=3))
            out.append("</details>")
    out.append(
        '<p class="note">Made by nfct from a replay of the capture through a model of Linux '
        "6.18's connection tracking; times on the capture's clock.</p></body></html>"
    )
    return "\n".join(out) + "\n"


def _sweep_section(runs: Sequence[Mapping[str, Any]]) -> str:
    rows = sweep_rows(runs)
    names = list(runs[0].get("sweep", {}))
    headers = [
        *names,
        "held",
        "peak",
        "of max",
        "early drops",
        "table-full drops",
        "dropped",
        "invalid",
        "entries at end",
        "demand",
    ]
    body = [
        [
            *(r[n] for n in names),
            r["held"],
            r["peak"],
            None if r["peak_ratio"] is None else f"{r['peak_ratio']:.1%}",
            r["early_drops"],
            r["table_full_drops"],
            r["dropped"],
            r["invalid"],
            r["final"],
            r["demand"],
        ]
        for r in rows
    ]
    out = ["<h2>What-if: the runs side by side</h2>"]
    held = [r for r in rows if r["held"]]
    if held:
        best = held[0]
        which = ", ".join(f"{n}={best[n]:,}" for n in names)
        out.append(
            f'<p class="held">Held in {len(held):,} of {len(rows):,} runs; the first, in the '
            f"order given: {html.escape(which)}.</p>"
        )
    else:
        out.append('<p class="overflow">No combination held the table.</p>')
    demands = {
        tuple((n, r[n]) for n in names if n != "nf_conntrack_max"): r["demand"]
        for r in rows
        if r["demand"] is not None
    }
    for key, d in demands.items():
        which = ", ".join(f"{n}={v:,}" for n, v in key) or "these settings"
        out.append(f"<p>With {html.escape(which)}: nf_conntrack_max {d:,} would have held it.</p>")
    out.append(_table(headers, body, numeric=range(len(names), len(headers))))
    out.append(_img(_plot_sweep(runs), "occupancy of each run"))
    return "\n".join(out)


def _plot_sweep(runs: Sequence[Mapping[str, Any]]) -> str:
    f, ax = _new_figure(4.0)
    for i, fig in enumerate(runs):
        tl = fig["timeline"]
        label = ", ".join(
            f"{k.removeprefix('nf_conntrack_')}={v:,}" for k, v in fig.get("sweep", {}).items()
        )
        color = _COLORS[i % len(_COLORS)]
        xs, ys, last = [], [], None
        for x, y in zip(tl["t"], tl["occupancy"], strict=True):
            last = y if y is not None else last
            if last is not None:
                xs.append(x)
                ys.append(last)
        ax.step(xs, ys, where="post", color=color, label=label)
        if fig["table"]["max"]:
            ax.axhline(fig["table"]["max"], color=color, ls="--", lw=0.8, alpha=0.6)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_xlabel(runs[0]))
    ax.set_ylabel("entries")
    ax.set_title("Entries over time in each run (dashed: its nf_conntrack_max)")
    ax.legend(loc="upper left", fontsize=8)
    return _png(f)


def write_html(
    figures: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> None:
    """:func:`render_html` into a file."""
    text = render_html(figures, title=title)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
