"""A replay as Arrow tables, for notebooks and Parquet files (``pip install 'nfct[report]'``).

:func:`replay_tables` replays captures and returns the tables in memory (``pyarrow.Table``;
:meth:`ReplayTables.to_pandas` gives DataFrames); :func:`export_replay` (``nfct replay
--export DIR``) writes them as Parquet files instead, batch by batch, so memory stays
bounded however long the capture. The tables:

- ``packets``: one row per frame that carried IP: ``capture`` (the capture's name), ``frame``
  (numbered from 1 in its capture), ``tstamp``, ``cls`` (new, established, related, invalid,
  untracked, dropped), ``reason`` (why it was INVALID or dropped, in the kernel's words),
  ``dropped_by`` (the rule), ``family``, ``proto`` (the protocol *number* here), ``src``,
  ``dst``, ``sport``, ``dport`` (null where the protocol has no ports), ``count``
  (``nf_conntrack_count`` after it);
- ``events``: what ``conntrack -E`` reported: ``tstamp``, ``event`` (NEW, UPDATE, DESTROY),
  the entry's fields (``family``, ``proto`` (the protocol's name, as conntrack prints it),
  ``protonum``, ``timeout``, ``state``, both
  tuples, ``flags``, ``mark`` (null where the event does not carry it), ``zone``, the
  counters when ``nf_conntrack_acct=1``) and its ``line`` (``conntrack -E -o extended``);
- ``entries``: the table at the end, as ``conntrack -L`` lists it, one row per entry (the same
  fields, ``status`` as the ``IPS_*`` bits, and ``line``);
- ``timeline``: one row per second of capture time that had packets: ``second`` (its start),
  the packets of each class, ``count_max`` and ``count_last`` (occupancy), ``early_drops``,
  and, for a second in which the replay counted the table, ``census_total`` and ``census``
  (a list of ``{family, proto, state, zone, entries}``). Rows come in time order; a capture
  whose clock goes back to a second already written gives that second another row;
- ``evictions``: the entries early drop evicted: ``tstamp``, the tuple, ``state``,
  ``timeout`` (left), ``age`` (needs ``nf_conntrack_timestamp=1``) and ``line``.

The column names and types are a stable interface (other tools read these files): they are
:func:`schemas`, pinned by the tests; a column is added at the end of its table, never renamed
or retyped.

::

    tables = nfct.export.replay_tables(nfct.Net(), ["capture.pcap"])
    df = tables.to_pandas()["packets"]
    df.groupby("cls").size()
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from nfct._pipes import LinePipe
from nfct.errors import CaptureError, MissingExtraError, NfctValueError
from nfct.kernel.compare import parse_conntrack_line

if TYPE_CHECKING:
    import pyarrow

    from nfct._nfct import Net, ReplayResult

__all__ = ["TABLES", "Exporter", "ReplayTables", "export_replay", "replay_tables", "schemas"]

#: The tables, in the order they are written.
TABLES: Final = ("packets", "events", "entries", "timeline", "evictions")
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
_FAMILIES: Final = {2: "ipv4", 10: "ipv6"}  # AF_INET, AF_INET6
# The bracketed flags of a listing line after [UNREPLIED], in conntrack's order of preference
# (IPS_HW_OFFLOAD, IPS_OFFLOAD, IPS_ASSURED).
_IPS_SEEN_REPLY: Final = 1 << 1
_STATUS_FLAGS: Final = ((1 << 15, "HW_OFFLOAD"), (1 << 14, "OFFLOAD"), (1 << 2, "ASSURED"))
_CLASSES: Final = ("new", "established", "related", "invalid", "untracked", "dropped")


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise MissingExtraError(
            "exporting tables needs pyarrow: pip install 'nfct[report]'"
        ) from None
    return pyarrow


def _proto(n: int) -> str:
    return _PROTO_NAMES.get(n, "unknown")


def schemas() -> dict[str, pyarrow.Schema]:
    """The Arrow schema of each table (:data:`TABLES`), as the Parquet files and
    :func:`replay_tables` have them: the column names and types other tools may rely on."""
    return _schemas(_pyarrow())


def _schemas(pa: Any) -> dict[str, Any]:
    s, u8, u16, u32, u64 = pa.string(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()
    f64, i64 = pa.float64(), pa.int64()
    tuple_fields = [
        ("src", s),
        ("dst", s),
        ("sport", u16),
        ("dport", u16),
        ("icmp_type", u8),
        ("icmp_code", u8),
        ("icmp_id", u16),
        ("reply_src", s),
        ("reply_dst", s),
        ("reply_sport", u16),
        ("reply_dport", u16),
    ]
    counters = [
        ("orig_packets", u64),
        ("orig_bytes", u64),
        ("reply_packets", u64),
        ("reply_bytes", u64),
    ]
    entry = [
        ("family", s),
        ("proto", s),
        ("protonum", u8),
        ("timeout", i64),
        ("state", s),
        *tuple_fields,
        ("flags", s),
        ("mark", u32),
        ("zone", u16),
        *counters,
    ]
    census_item = pa.struct(
        [("family", s), ("proto", s), ("state", s), ("zone", u16), ("entries", u64)]
    )
    return {
        "packets": pa.schema(
            [
                ("capture", pa.dictionary(pa.int32(), s)),
                ("frame", u64),
                ("tstamp", f64),
                ("cls", s),
                ("reason", s),
                ("dropped_by", s),
                ("family", s),
                ("proto", u8),
                ("src", s),
                ("dst", s),
                ("sport", u16),
                ("dport", u16),
                ("count", u64),
            ]
        ),
        "events": pa.schema([("tstamp", f64), ("event", s), *entry, ("line", s)]),
        "entries": pa.schema([*entry, ("status", u32), ("line", s)]),
        "timeline": pa.schema(
            [
                ("second", f64),
                ("packets", u64),
                *[(c, u64) for c in _CLASSES],
                ("count_max", u64),
                ("count_last", u64),
                ("early_drops", u64),
                ("census_total", u64),
                ("census", pa.list_(census_item)),
            ]
        ),
        "evictions": pa.schema(
            [
                ("tstamp", f64),
                ("family", s),
                ("proto", s),
                ("src", s),
                ("dst", s),
                ("sport", u16),
                ("dport", u16),
                ("state", s),
                ("timeout", i64),
                ("age", f64),
                ("line", s),
            ]
        ),
    }


class _Sink:
    """Where one table's batches go: a Parquet file (written as they come) or a list."""

    def __init__(self, pa: Any, schema: Any, path: Path | None) -> None:
        self.pa = pa
        self.schema = schema
        self.path = path
        self.rows = 0
        self.batches: list[Any] = []
        self.writer: Any = None
        if path is not None:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(str(path), schema)

    def write(self, columns: Mapping[str, Any]) -> None:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return
        batch = self.pa.record_batch(
            [self._array(columns[f.name], f.type) for f in self.schema], schema=self.schema
        )
        self.rows += n
        if self.writer is not None:
            self.writer.write_batch(batch)
        else:
            self.batches.append(batch)

    def _array(self, values: Any, typ: Any) -> Any:
        if isinstance(values, (self.pa.Array, self.pa.ChunkedArray)):
            return values  # built by the caller
        return self.pa.array(values, type=typ)

    def close(self) -> Any:
        """Closes the file; returns the table (in memory) or None."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            return None
        return self.pa.Table.from_batches(self.batches, schema=self.schema)


def _empty_row(schema: Any) -> dict[str, list[Any]]:
    return {f.name: [] for f in schema}


def _entry_fields(parsed: Mapping[str, Any]) -> dict[str, Any]:
    """The entry columns of one parsed ``conntrack -L``/``-E`` line."""
    o, r = parsed["orig"], parsed["reply"]
    extra = parsed["extra"]

    def num(d: Mapping[str, str], k: str) -> int | None:
        v = d.get(k)
        return int(v) if v is not None else None

    return {
        "family": parsed["l3"],
        "proto": parsed["proto"],
        "protonum": parsed["protonum"],
        "timeout": parsed["timeout"],
        "state": parsed["state"],
        "src": o.get("src"),
        "dst": o.get("dst"),
        "sport": num(o, "sport"),
        "dport": num(o, "dport"),
        "icmp_type": num(o, "type"),
        "icmp_code": num(o, "code"),
        "icmp_id": num(o, "id"),
        "reply_src": r.get("src"),
        "reply_dst": r.get("dst"),
        "reply_sport": num(r, "sport"),
        "reply_dport": num(r, "dport"),
        "flags": " ".join(parsed["flags"]) or None,
        "mark": num(extra, "mark"),
        "zone": num(extra, "zone") or 0,  # listed only when not 0
        "orig_packets": num(o, "packets"),
        "orig_bytes": num(o, "bytes"),
        "reply_packets": num(r, "packets"),
        "reply_bytes": num(r, "bytes"),
    }


def event_row(line: str) -> dict[str, Any] | None:
    """One ``conntrack -E -o timestamp,extended`` line as an ``events`` row (None for a
    line that is not an event)."""
    text = line.rstrip("\n")
    tstamp = None
    if text.startswith("["):
        end = text.find("]")
        try:
            tstamp = float(text[1:end])
        except ValueError:
            tstamp = None
        else:
            text = text[end + 1 :]
    body = text.strip()
    if not body.startswith("[") or "]" not in body:
        return None
    end = body.index("]")
    event = body[1:end]
    words = body[end + 1 :].split()
    # conntrack-tools print no timeout in some events (DESTROY); nfct's lines have one.
    i = 2 if words and words[0] in ("ipv4", "ipv6") else 0
    no_timeout = len(words) > i + 2 and not words[i + 2].isdigit()
    if no_timeout:
        words.insert(i + 2, "0")
    try:
        parsed = parse_conntrack_line(" ".join(words))
    except (ValueError, IndexError):
        return None
    if no_timeout:
        parsed["timeout"] = None
    return {"tstamp": tstamp, "event": event, **_entry_fields(parsed), "line": text.lstrip("\t")}


# The fields of a `conntrack -E -o extended` line, found by anchored regular expressions over a
# whole batch of lines at once (Arrow's compute functions, RE2): what event_row finds line by
# line in Python, several times faster. A field a line lacks is null.
# (Captures spanning a whole line are slow in RE2: the lines are cut with split_pattern.)
_IS_EVENT: Final = r"^\[[0-9.]+\]\t\s*\[[A-Z]+\] "
_HEAD: Final = (
    r"^(?P<family>ipv[46])\s+\d+\s+(?P<proto>\S+)\s+(?P<protonum>\d+)"
    r"(?:\s+(?P<timeout>\d+))?(?:\s+(?P<state>[A-Z][A-Z0-9_]*))?$"
)


def _tuple_pattern(prefix: str, counters: str) -> str:
    """One direction after its ``src=``: addresses, ports or ICMP fields, GRE keys, counters."""
    icmp = (
        r"(?: type=(?P<icmp_type>\d+) code=(?P<icmp_code>\d+) id=(?P<icmp_id>\d+))?"
        if not prefix
        else r"(?: type=\d+ code=\d+ id=\d+)?"
    )
    return (
        rf"^(?P<{prefix}src>\S+) dst=(?P<{prefix}dst>\S+)"
        rf"(?: sport=(?P<{prefix}sport>\d+) dport=(?P<{prefix}dport>\d+))?{icmp}"
        r"(?: srckey=\S+ dstkey=\S+)?"
        rf"(?: packets=(?P<{counters}_packets>\d+) bytes=(?P<{counters}_bytes>\d+))?"
    )


_ORIG: Final = _tuple_pattern("", "orig")
_REPLY: Final = _tuple_pattern("reply_", "reply")
_FLAG_WORDS: Final = ("HW_OFFLOAD", "OFFLOAD", "ASSURED")


def _names(struct: Any) -> list[str]:
    return [struct.type.field(i).name for i in range(struct.type.num_fields)]


def event_columns(pa: Any, lines: Sequence[str]) -> dict[str, Any]:
    """The ``events`` columns (Arrow arrays) of ``conntrack -E -o timestamp,extended`` lines;
    lines that are not events are left out. The same rows as :func:`event_row` gives."""
    import pyarrow.compute as pc

    schema = _schemas(pa)["events"]
    types = {f.name: f.type for f in schema}
    null = pa.scalar(None, pa.string())
    text = pc.utf8_rtrim(pa.array(lines, type=pa.string()), characters="\n")
    text = text.filter(pc.match_substring_regex(text, _IS_EVENT))
    stamp_body = pc.split_pattern(text, "\t", max_splits=1)
    body = pc.list_element(stamp_body, 1)
    stamp = pc.utf8_slice_codeunits(pc.list_element(stamp_body, 0), 1, -1)
    event_rest = pc.split_pattern(body, "] ", max_splits=1)
    rest = pc.utf8_ltrim_whitespace(pc.list_element(event_rest, 1))
    out: dict[str, Any] = {
        "tstamp": pc.cast(stamp, pa.float64()),
        "event": pc.utf8_ltrim(pc.utf8_ltrim_whitespace(pc.list_element(event_rest, 0)), "["),
        "line": body,
    }
    # Before the first " src=", the original tuple, the reply tuple (and what follows it).
    padded = pc.binary_join_element_wise(rest, " src= src=", "")
    parts = pc.split_pattern(padded, " src=", max_splits=2)
    fields = (
        (pc.list_element(parts, 0), _HEAD),
        (pc.list_element(parts, 1), _ORIG),
        (pc.list_element(parts, 2), _REPLY),
    )
    for part, pattern in fields:
        found = pc.extract_regex(part, pattern)
        for name, values in zip(_names(found), found.flatten(), strict=True):
            values = pc.if_else(pc.equal(values, ""), null, values)
            out[name] = pc.cast(values, types[name])
    for name in ("mark", "zone"):
        found = pc.extract_regex(rest, rf" {name}=(?P<{name}>\d+)")
        out[name] = pc.cast(found.flatten()[0], types[name])
    # zone=N is listed only where N is not 0.
    out["zone"] = pc.fill_null(out["zone"], pa.scalar(0, types["zone"]))
    # The flags, as conntrack prints them: UNREPLIED, then ASSURED or (HW_)OFFLOAD.
    second = null
    for word in reversed(_FLAG_WORDS):
        second = pc.if_else(pc.match_substring(rest, f" [{word}]"), word, second)
    unreplied = pc.match_substring(rest, " [UNREPLIED]")
    both = pc.binary_join_element_wise("UNREPLIED", second, " ")
    out["flags"] = pc.if_else(unreplied, pc.if_else(pc.is_null(second), "UNREPLIED", both), second)
    return {f.name: out[f.name] for f in schema}


class Exporter:
    """The ``observe=`` callable (and events sink) of a replay that writes the tables: to
    Parquet files in ``out_dir`` (``packets.parquet``, ...), or, with ``out_dir`` None, into
    memory. ``captures`` name the captures in the packets table. Call :meth:`finish` with the
    Net after the replay (also after an error or Ctrl-C: what was replayed is kept)."""

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | None,
        captures: Sequence[str],
        *,
        batch_rows: int = 65536,
        tee: Callable[[list[str]], object] | None = None,
    ) -> None:
        self.pa = pa = _pyarrow()
        self.tee = tee
        import numpy

        self.np = numpy
        self.schemas = _schemas(pa)
        self.dir = Path(out_dir) if out_dir is not None else None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.batch_rows = max(1, batch_rows)
        self.sinks: dict[str, _Sink] = {}
        try:
            for name in TABLES:
                path = self.dir / f"{name}.parquet" if self.dir is not None else None
                self.sinks[name] = _Sink(pa, self.schemas[name], path)
        except BaseException:
            self._close_all()
            raise
        self.capture_names = pa.array(list(captures), type=pa.string())
        self.event_text: list[str] = []
        self.seconds: dict[int, list[Any]] = {}
        # Seconds at or after this one wait for the evictions and censuses of their batch.
        self.hold_from: int | None = None
        self.early: dict[int, int] = {}
        self.pending_census: dict[int, tuple[int, list[dict[str, Any]]]] = {}
        self.closed = False

    # --- observe ---

    def __call__(self, kind: str, data: Any) -> None:
        if kind == "packets":
            self._packets(data)
        elif kind == "census":
            self._census(data)
        elif kind == "evictions":
            self._evictions(data)
        elif kind == "evictions_more":
            pass  # the export keeps every victim (replay(keep_evictions=) bounds a batch)

    def _packets(self, cols: Mapping[str, Sequence[Any]]) -> None:
        pa, np = self.pa, self.np
        n = len(cols["frame"])
        if n == 0:
            return
        # The previous batch's evictions and census have come by now: its seconds can go.
        if self.hold_from is not None:
            self._flush_seconds(before=self.hold_from)
        indices = pa.array(cols["capture"], type=pa.int32())
        capture = pa.DictionaryArray.from_arrays(indices, self.capture_names)
        self.sinks["packets"].write({**cols, "capture": capture})
        # The timeline: packets of each class and the occupancy, by whole second.
        t = np.asarray(cols["tstamp"], dtype=np.float64)
        count = np.asarray(cols["count"], dtype=np.int64)
        cls = np.asarray(cols["cls"])
        sec = np.floor(t).astype(np.int64)
        uniq, inv = np.unique(sec, return_inverse=True)
        m = len(uniq)
        packets = np.bincount(inv, minlength=m)
        per_class = [np.bincount(inv[cls == c], minlength=m) for c in _CLASSES]
        cmax = np.full(m, -1, dtype=np.int64)
        np.maximum.at(cmax, inv, count)
        clast = np.zeros(m, dtype=np.int64)
        clast[inv] = count  # the last packet of each second (in capture order) wins
        for k, s in enumerate(uniq.tolist()):
            row = self.seconds.get(s)
            if row is None:
                row = self.seconds[s] = [0] * (2 + len(_CLASSES)) + [0, 0]
                row[-2] = -1
            row[0] += int(packets[k])
            for j in range(len(_CLASSES)):
                row[1 + j] += int(per_class[j][k])
            row[-3] = max(row[-3], int(cmax[k]))  # count_max
            row[-2] = int(clast[k])  # count_last
        self.hold_from = int(sec[-1])

    def _census(self, d: Mapping[str, Any]) -> None:
        s = int(self.np.floor(float(d["tstamp"])))
        items = [
            {"family": f, "proto": _proto(int(p)), "state": st, "zone": int(z), "entries": int(n)}
            for f, p, st, z, n in d["by_state"]
        ]
        self.pending_census[s] = (int(d["total"]), items)

    def _evictions(self, victims: Sequence[Mapping[str, Any]]) -> None:
        if not victims:
            return
        np = self.np
        cols = {k: [v[k] for v in victims] for k in _empty_row(self.schemas["evictions"])}
        cols["proto"] = [_proto(int(p)) for p in cols["proto"]]
        seconds, counts = np.unique(
            np.floor(np.asarray(cols["tstamp"], dtype=np.float64)).astype(np.int64),
            return_counts=True,
        )
        for sec, n in zip(seconds.tolist(), counts.tolist(), strict=True):
            self.early[sec] = self.early.get(sec, 0) + n
        self.sinks["evictions"].write(cols)

    def _flush_seconds(self, before: int | None) -> None:
        """Writes the timeline rows of every second before ``before`` (all: None)."""
        done = sorted(s for s in self.seconds if before is None or s < before)
        if not done:
            return
        cols = _empty_row(self.schemas["timeline"])
        for s in done:
            row = self.seconds.pop(s)
            cols["second"].append(float(s))
            cols["packets"].append(row[0])
            for j, c in enumerate(_CLASSES):
                cols[c].append(row[1 + j])
            cols["count_max"].append(row[-3] if row[-3] >= 0 else None)
            cols["count_last"].append(row[-2] if row[-2] >= 0 else None)
            cols["early_drops"].append(self.early.pop(s, 0))
            census = self.pending_census.pop(s, None)
            cols["census_total"].append(census[0] if census else None)
            cols["census"].append(census[1] if census else None)
        self.sinks["timeline"].write(cols)

    # --- events ---

    def event_lines(self, lines: Iterable[str]) -> None:
        """``conntrack -E -o timestamp,extended`` lines from the replay (handed to ``tee``
        first, if given)."""
        lines = list(lines)
        if self.tee is not None:
            self.tee(lines)
        self.event_text.extend(lines)
        if len(self.event_text) >= self.batch_rows:
            self._flush_events()

    def _flush_events(self) -> None:
        if self.event_text:
            cols = event_columns(self.pa, self.event_text)
            self.event_text = []
            self.sinks["events"].write(cols)

    # --- the end ---

    def finish(self, net: Net) -> dict[str, Any]:
        """Writes the rest (the last seconds, the events, the table as ``net`` holds it now)
        and closes the files. Returns the tables (in memory; empty with an ``out_dir``)."""
        if self.closed:
            raise NfctValueError("Exporter.finish: already finished")
        try:
            self._flush_seconds(before=None)
            # Censuses of seconds that had no packet of their own (the final one, after an
            # action at the end): rows of their own.
            if self.pending_census:
                cols = _empty_row(self.schemas["timeline"])
                for s, (total, items) in sorted(self.pending_census.items()):
                    for k in cols:
                        cols[k].append(None)
                    cols["second"][-1] = float(s)
                    cols["census_total"][-1] = total
                    cols["census"][-1] = items
                self.pending_census.clear()
                self.sinks["timeline"].write(cols)
            self._flush_events()
            self._entries(net)
        finally:
            tables = self._close_all()
        return tables

    def _entries(self, net: Net) -> None:
        cols = entry_columns(net)
        n = len(cols["line"])
        step = self.batch_rows
        for lo in range(0, n, step):
            self.sinks["entries"].write({k: v[lo : lo + step] for k, v in cols.items()})

    def _close_all(self) -> dict[str, Any]:
        self.closed = True
        tables: dict[str, Any] = {}
        error: BaseException | None = None
        for name, sink in self.sinks.items():
            try:
                t = sink.close()
            except BaseException as e:
                error = error or e
                continue
            if t is not None:
                tables[name] = t
        if error is not None:
            raise error
        return tables

    def rows(self) -> dict[str, int]:
        """Rows written so far, per table."""
        return {name: sink.rows for name, sink in self.sinks.items()}


def _flags(status: int) -> str | None:
    flags = [] if status & _IPS_SEEN_REPLY else ["UNREPLIED"]
    for bit, word in _STATUS_FLAGS:
        if status & bit:
            flags.append(word)
            break
    return " ".join(flags) or None


def entry_columns(net: Net) -> dict[str, list[Any]]:
    """The ``entries`` table's columns, built from ``Net.columns`` (no handle per entry)."""
    cols = net.columns()
    cols["family"] = [_FAMILIES.get(x, "unknown") for x in cols.pop("l3num")]
    cols["flags"] = [_flags(x) for x in cols["status"]]
    return cols


class ReplayTables(dict[str, Any]):
    """The tables of :func:`replay_tables` by name (``pyarrow.Table`` values), with the
    replay's :attr:`summary`."""

    summary: ReplayResult | None = None

    def to_pandas(self) -> dict[str, Any]:
        """Each table as a pandas DataFrame (needs pandas)."""
        import importlib.util

        if importlib.util.find_spec("pandas") is None:
            raise MissingExtraError("to_pandas needs pandas: pip install pandas")
        return {name: table.to_pandas() for name, table in self.items()}


_OWNED: Final = ("observe", "events_path", "event_timestamps", "threads")


def _run(
    net: Net,
    captures: Sequence[str | os.PathLike[str]],
    exporter_for: Callable[[Sequence[str]], Exporter],
    replay_kw: Mapping[str, Any],
    events: bool,
) -> tuple[Exporter, ReplayResult | None, dict[str, Any], BaseException | None]:
    from nfct.inputs import CaptureInputs

    bad = [k for k in _OWNED if k in replay_kw]
    if bad:
        raise NfctValueError(f"the export runs the replay's {', '.join(bad)} itself")
    with CaptureInputs(captures) as inputs:
        exporter = exporter_for(inputs.names)
        pipe = LinePipe(exporter.event_lines, "nfct-events") if events else None
        summary: ReplayResult | None = None
        failure: BaseException | None = None
        try:
            summary = net.replay(
                inputs.paths,
                observe=exporter,
                events_path=pipe.path if pipe is not None else None,
                event_timestamps=True,
                **replay_kw,
            )
        except CaptureError as e:
            failure, summary = inputs.rename(e), e.summary
        except KeyboardInterrupt as e:
            failure, summary = e, getattr(e, "summary", None)
        except BaseException:
            if pipe is not None:
                pipe.close()
            exporter.finish(net)
            raise
        if pipe is not None:
            pipe.close()
    failure = inputs.error() or failure
    tables = exporter.finish(net)
    return exporter, summary, tables, failure


def replay_tables(
    net: Net,
    captures: Sequence[str | os.PathLike[str]],
    *,
    events: bool = True,
    **replay_kw: Any,
) -> ReplayTables:
    """Replays ``captures`` (plain or compressed files, ``-`` for standard input) on ``net``
    and returns the tables (see the module's description) in memory. ``replay_kw`` go to
    :meth:`~nfct.Net.replay` (clock, path, iif, at, progress, census_every, ...).
    ``events=False`` leaves the events table empty (and the replay faster). A capture that
    cannot be read raises :class:`~nfct.CaptureError` (Ctrl-C ``KeyboardInterrupt``) with a
    ``tables`` attribute holding the tables of what was replayed."""
    _, summary, tables, failure = _run(
        net, captures, lambda names: Exporter(None, names), replay_kw, events
    )
    out = ReplayTables(tables)
    out.summary = summary
    if failure is not None:
        setattr(failure, "tables", out)  # noqa: B010 (an attribute exceptions do not declare)
        raise failure
    return out


def export_replay(
    net: Net,
    captures: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    events: bool = True,
    batch_rows: int = 65536,
    on_events: Callable[[list[str]], object] | None = None,
    **replay_kw: Any,
) -> ReplayResult | None:
    """Replays ``captures`` on ``net`` and writes the tables as Parquet files into
    ``out_dir`` (created if needed), batch by batch. ``on_events`` also gets the event lines
    (with their ``[seconds.micros]`` prefix) as they come. Returns the replay's summary;
    a capture that cannot be read raises :class:`~nfct.CaptureError` after the files were
    written (and closed) with what was replayed; Ctrl-C likewise."""

    def make(names: Sequence[str]) -> Exporter:
        return Exporter(out_dir, names, batch_rows=batch_rows, tee=on_events)

    _, summary, _, failure = _run(net, captures, make, replay_kw, events or on_events is not None)
    if failure is not None:
        if isinstance(failure, CaptureError) and failure.summary is None:
            failure.summary = summary
        raise failure
    return summary
