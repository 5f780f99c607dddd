"""Many replays at once on a Dask cluster (``pip install 'nfct[cluster]'``).

Conntrack state belongs to one host, so the unit of work is one capture replayed through one
host under one setting (its sysctls): a worker process builds its own :class:`~nfct.Net`
for it, reads the capture where it lies (a path the workers can open, or a URL that fsspec
opens on the worker: nothing goes through the calling process), replays it and sends back
Arrow tables. :func:`replay_many` gathers them into one ``pyarrow.Table`` with a row per
unit, and, where asked for, the further tables of :mod:`nfct.export` (the final entries, the
per-packet classes, ...) with the same key columns in front.

::

    out = nfct.cluster.replay_many(
        ["day1/fw1.pcap", "day1/fw2.pcap"],
        sysctl=[{"nf_conntrack_max": 65536}, {"nf_conntrack_max": 262144}],
        cluster="local",                 # or "tcp://scheduler:8786", or a distributed.Client
        tables=["entries"],
    )
    out.units.to_pandas()[["capture", "setting", "packets", "entries", "error"]]

``cluster="local"`` starts a Dask ``LocalCluster`` of one single-threaded worker process per
core (``workers=`` to choose) and stops it when done; an address (``tcp://host:8786``, or
``host:8786``) joins a running Dask scheduler, whose workers must have the same nfct
installed and reach the captures by the names given (paths on a shared file system, or URLs);
a ``distributed.Client`` is used as it is and left open; ``None`` runs every unit here, one
after the other (the serial reference). Why Dask rather than Ray: ``benches/RESULTS.md``.

The units table (:data:`UNIT_COLUMNS`): ``unit`` (the unit's number, captures in the order
given, each under every setting in turn), ``capture`` (as given), ``setting`` (the unit's
sysctls as ``NAME=VALUE`` words, ``""`` for none), the replay's counts under
:class:`~nfct.ReplayResult`'s names (``frames``, ``non_ip``, ``packets``, ``new``,
``established``, ``related``, ``invalid``, ``untracked``, ``dropped``, the fragment counts,
``unsupported_link``), ``reasons`` and ``dropped_by`` (maps), ``entries`` (the final table's
size), the ``conntrack -S`` counters as ``stats_found``, ``stats_invalid``, ...
(:attr:`nfct.Net.stats` with a prefix), ``error`` (None when the unit succeeded; else what
went wrong, with the counts of what was replayed before, or None where nothing was),
``seconds`` (the unit's time on its worker) and ``worker``. A unit that fails (a corrupt
capture, a file a worker cannot open, a worker that died) is a row with its error; the other
units are not affected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from nfct.errors import CaptureError, MissingExtraError, NfctError, NfctValueError
from nfct.export import TABLES, ReplayTables
from nfct.report import HostSetup

if TYPE_CHECKING:
    from nfct._nfct import Net, ReplayResult

__all__ = [
    "COUNTS",
    "KEYS",
    "STATS",
    "TABLES",
    "UNIT_COLUMNS",
    "ManyTables",
    "Unit",
    "connect",
    "replay_many",
    "run_unit",
    "setting_text",
    "units_of",
]

#: The columns that name a unit, in front of every table.
KEYS: Final = ("unit", "capture", "setting")
#: The replay summary's counts (:meth:`nfct.ReplayResult.to_dict`), a column each.
COUNTS: Final = (
    "frames",
    "non_ip",
    "packets",
    "new",
    "established",
    "related",
    "invalid",
    "untracked",
    "dropped",
    "fragments",
    "reassembled",
    "frag_timed_out",
    "frag_dropped",
    "unsupported_link",
)
#: The ``conntrack -S`` counters (:attr:`nfct.Net.stats`), as ``stats_NAME`` columns.
STATS: Final = (
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
#: The units table's columns, in order.
UNIT_COLUMNS: Final = (
    *KEYS,
    *COUNTS,
    "reasons",
    "dropped_by",
    "entries",
    *(f"stats_{s}" for s in STATS),
    "error",
    "seconds",
    "worker",
)
# What replay_tables must run for (the entries alone come from a plain replay).
_EXPORT_ONLY: Final = frozenset(TABLES) - {"entries"}
_MISSING: Final = (
    "the cluster backend needs Dask distributed and pyarrow: pip install 'nfct[cluster]'"
)


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise MissingExtraError(_MISSING) from None
    return pyarrow


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(_MISSING) from None
    return distributed


def units_schema() -> Any:
    """The units table's schema (a ``pyarrow.Schema``)."""
    pa = _pyarrow()
    u64, s = pa.uint64(), pa.string()
    reasons = pa.map_(s, u64)
    return pa.schema(
        [
            ("unit", pa.int64()),
            ("capture", s),
            ("setting", s),
            *[(c, u64) for c in COUNTS],
            ("reasons", reasons),
            ("dropped_by", reasons),
            ("entries", u64),
            *[(f"stats_{c}", u64) for c in STATS],
            ("error", s),
            ("seconds", pa.float64()),
            ("worker", s),
        ]
    )


# --- units ---------------------------------------------------------------------------------------


def setting_text(sysctl: Mapping[str, int]) -> str:
    """A unit's sysctls as its ``setting`` column shows them: ``NAME=VALUE`` words in the
    order given (``""`` for none)."""
    return " ".join(f"{k}={v}" for k, v in sysctl.items())


@dataclasses.dataclass(frozen=True)
class Unit:
    """One capture under one setting: what a worker replays."""

    index: int
    #: The capture as given (the ``capture`` column).
    capture: str
    #: What the worker opens: the absolute path of a file this process sees, else as given.
    source: str
    sysctl: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def setting(self) -> str:
        return setting_text(self.sysctl)


def _is_url(name: str) -> bool:
    scheme, sep, _ = name.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def units_of(
    captures: Sequence[str | os.PathLike[str]],
    settings: Sequence[Mapping[str, int]] = ({},),
) -> list[Unit]:
    """Every capture under every setting, numbered in that order. A capture that is a file
    here is sent to the workers by its absolute path (a local cluster's workers may not share
    the caller's directory); anything else (a URL, a path only the workers see) as given.
    Standard input (``-``) cannot be sent."""
    if not captures:
        raise NfctValueError("no captures")
    if not settings:
        raise NfctValueError("no settings")
    units: list[Unit] = []
    for c in captures:
        name = os.fspath(c)
        if name == "-":
            raise NfctValueError(
                "-: standard input cannot be replayed on a cluster (workers read the captures "
                "themselves): give a file"
            )
        source = os.path.abspath(name) if not _is_url(name) and os.path.exists(name) else name
        for s in settings:
            units.append(Unit(len(units), name, source, dict(s)))
    return units


# --- in a worker ------------------------------------------------------------------------------


@contextlib.contextmanager
def _local_file(source: str) -> Iterator[str]:
    """A path to replay: ``source`` itself, or for a URL a temporary copy on this worker
    (fsspec opens it: ``s3://`` and the like need their fsspec backend installed here)."""
    if not _is_url(source) or source.startswith("file://"):
        yield source.removeprefix("file://")
        return
    try:
        import fsspec
    except ImportError:
        raise MissingExtraError(
            f"{source}: reading URLs needs fsspec: pip install fsspec"
        ) from None
    fd, tmp = tempfile.mkstemp(prefix="nfct-capture-")
    try:
        with os.fdopen(fd, "wb") as out, fsspec.open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        yield tmp
    finally:
        os.unlink(tmp)


def _message(e: BaseException, path: str, capture: str) -> str:
    text = str(e) or type(e).__name__
    if not isinstance(e, (CaptureError, NfctValueError, OSError)):
        text = f"{type(e).__name__}: {text}"
    return text.replace(path, capture) if path and path != capture else text


def _summary_row(summary: ReplayResult | None) -> dict[str, Any]:
    if summary is None:
        return dict.fromkeys((*COUNTS, "reasons", "dropped_by"))
    d = summary.to_dict()
    row = {c: d[c] for c in COUNTS}
    row["reasons"] = list(d["reasons"].items())
    row["dropped_by"] = list(d["dropped_by"].items())
    return row


def _keyed(pa: Any, table: Any, unit: Unit) -> Any:
    """``table`` with the unit's key columns in front (the packets table names its capture
    already: as given, in its own dictionary column)."""
    n = table.num_rows
    names = table.column_names
    if "capture" in names:
        i = names.index("capture")
        capture = pa.DictionaryArray.from_arrays(
            pa.array([0] * n, type=pa.int32()), pa.array([unit.capture], type=pa.string())
        )
        table = table.set_column(i, table.schema.field(i), capture)
    else:
        table = table.append_column("capture", pa.array([unit.capture] * n, type=pa.string()))
    table = table.append_column("unit", pa.array([unit.index] * n, type=pa.int64()))
    table = table.append_column("setting", pa.array([unit.setting] * n, type=pa.string()))
    return table.select([*KEYS, *(c for c in names if c not in KEYS)])


def _empty(pa: Any, name: str) -> Any:
    """A further table with no rows: the keys and the export's columns."""
    from nfct.export import _schemas

    schema = _schemas(pa)[name]
    fields = [pa.field("unit", pa.int64())]
    if "capture" not in schema.names:
        fields.append(pa.field("capture", pa.string()))
    fields.append(pa.field("setting", pa.string()))
    table = pa.schema([*fields, *schema]).empty_table()
    return table.select([*KEYS, *(c for c in schema.names if c not in KEYS)])


def run_unit(
    unit: Unit, setup: HostSetup | None = None, tables: Sequence[str] = ()
) -> dict[str, Any]:
    """Replays one unit here (what each worker runs): its capture through a fresh
    :class:`~nfct.Net` that ``setup`` with the unit's sysctls describes. Returns
    ``{"units": <one-row pyarrow.Table>, name: <keyed table>, ...}`` for the ``tables`` asked
    for. Never raises for the unit's own failures: they are its ``error``."""
    from nfct import export
    from nfct.inputs import CaptureInputs

    pa = _pyarrow()
    setup = setup or HostSetup()
    start = time.perf_counter()
    summary: ReplayResult | None = None
    error: str | None = None
    net: Net | None = None
    got: dict[str, Any] = {}
    kw: dict[str, Any] = {"clock": setup.clock, "path": setup.path, "iif": setup.iif}
    path = ""
    try:
        with _local_file(unit.source) as path:
            net = setup.with_sysctl(unit.sysctl).build()
            if _EXPORT_ONLY & set(tables):
                try:
                    rt = export.replay_tables(net, [path], events="events" in tables, **kw)
                    summary = rt.summary
                    got = dict(rt)
                except CaptureError as e:
                    summary, error = e.summary, _message(e, path, unit.capture)
                    got = dict(getattr(e, "tables", None) or {})
            else:
                with CaptureInputs([path]) as inputs:
                    try:
                        summary = net.replay(inputs.paths, **kw)
                    except CaptureError as e:
                        summary, error = e.summary, _message(inputs.rename(e), path, unit.capture)
                bad = inputs.error()
                if bad is not None:
                    error = _message(bad, path, unit.capture)
                if "entries" in tables:
                    got = export.Exporter(None, [unit.capture]).finish(net)
    except Exception as e:  # the unit's failure, whatever it is, is its row's error
        error = _message(e, path, unit.capture)
    row: dict[str, Any] = {"unit": unit.index, "capture": unit.capture, "setting": unit.setting}
    row.update(_summary_row(summary))
    row["entries"] = len(net) if net is not None else None
    stats = net.stats if net is not None else {}
    row.update({f"stats_{s}": stats.get(s) for s in STATS})
    row["error"] = error
    row["seconds"] = time.perf_counter() - start
    row["worker"] = _worker_name()
    out: dict[str, Any] = {"units": pa.Table.from_pylist([row], schema=units_schema())}
    for name in tables:
        if name in got:
            out[name] = _keyed(pa, got[name], unit)
    return out


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _failed(unit: Unit, error: BaseException) -> dict[str, Any]:
    """The row of a unit whose task failed outside :func:`run_unit` (its worker died)."""
    pa = _pyarrow()
    row: dict[str, Any] = dict.fromkeys(UNIT_COLUMNS)
    row.update({"unit": unit.index, "capture": unit.capture, "setting": unit.setting})
    row["error"] = f"{type(error).__name__}: {error}"
    return {"units": pa.Table.from_pylist([row], schema=units_schema())}


# --- the cluster --------------------------------------------------------------------------------


def _start_local(distributed: Any, workers: int) -> Any:
    """A started ``LocalCluster`` of ``workers`` single-threaded processes. A start that fails
    is tried once more (a worker process now and then failed to start, with an exception that
    said nothing: a full test run, 2026-12-04), then fails in one line naming what stopped
    it."""
    import gc
    import warnings

    failure = ""
    for _ in range(2):
        try:
            return distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",  # the scheduler serves HTTP anyway: any port
                silence_logs=40,  # logging.ERROR: no banner
            )
        except Exception as e:  # whatever stopped the processes from starting, in one line
            failure = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            e.__traceback__ = None
        # The cluster that did not start is garbage now (in that run, the cyclic collector
        # found it during a later test and its warning that it was never closed failed that
        # test): collected here, under a filter, it cannot warn later. (Not reproduced in a
        # test: a start made to fail on purpose leaves no such garbage.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    raise NfctError(f"cluster local: could not start: {failure}")


@contextlib.contextmanager
def connect(
    cluster: Any = "local", *, workers: int | None = None, timeout: float = 30.0
) -> Iterator[Any]:
    """A ``distributed.Client`` for ``cluster``: ``"local"`` starts a ``LocalCluster`` of
    ``workers`` single-threaded worker processes (default: one per core) and stops it on
    leaving; an address joins that scheduler (``timeout`` seconds to reach it); a Client is
    handed back as it is and left open."""
    distributed = _distributed()
    if isinstance(cluster, distributed.Client):
        yield cluster
        return
    if not isinstance(cluster, str) or not cluster:
        raise NfctValueError(f"cluster must be 'local', an address or a Client, not {cluster!r}")
    if workers is not None and workers < 1:
        raise NfctValueError(f"workers must be at least 1, not {workers}")
    if cluster == "local":
        local = _start_local(distributed, workers or os.cpu_count() or 1)
        try:
            client = distributed.Client(local, set_as_default=False)
            try:
                yield client
            finally:
                client.close()
        finally:
            local.close()
        return
    address = cluster if "://" in cluster else f"tcp://{cluster}"
    try:
        # Not the default client: a Client that fails to connect stays the process's default
        # otherwise, and whatever then asks for the default (as_completed without a loop)
        # waits on a loop nothing runs (replay_many stalled 30 s to minutes after one bad
        # address, on a good client).
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise NfctValueError(f"cluster {cluster}: cannot reach the scheduler: {e}") from None
    try:
        yield client
    finally:
        client.close()


class ManyTables(ReplayTables):
    """What :func:`replay_many` gathered: ``"units"`` (one row per unit) and each further
    table asked for (keyed by :data:`KEYS`), as ``pyarrow.Table`` values by name."""

    @property
    def units(self) -> Any:
        """The units table."""
        return self["units"]

    def failed(self) -> list[tuple[str, str, str]]:
        """``(capture, setting, error)`` of every unit that failed, in unit order."""
        t = self["units"]
        return [
            (c, s, e)
            for c, s, e in zip(
                t["capture"].to_pylist(),
                t["setting"].to_pylist(),
                t["error"].to_pylist(),
                strict=True,
            )
            if e is not None
        ]


def _setup(host: HostSetup | str | os.PathLike[str] | None, seed: int | None) -> HostSetup:
    if host is None:
        setup = HostSetup()
    elif isinstance(host, HostSetup):
        setup = host
    else:
        setup = HostSetup(host=os.path.abspath(os.fspath(host)))
    if seed is not None:
        setup = setup.with_seed(seed)
    return setup


def _settings(
    sysctl: Mapping[str, int] | Sequence[Mapping[str, int]] | None,
) -> list[dict[str, int]]:
    import nfct

    if sysctl is None:
        out: list[dict[str, int]] = [{}]
    elif isinstance(sysctl, Mapping):
        out = [dict(sysctl)]
    else:
        out = [dict(s) for s in sysctl]
    for s in out:
        for name, value in s.items():
            if name not in nfct.SYSCTL_NAMES:
                raise NfctValueError(f"sysctl: {name!r} is not a conntrack sysctl")
            if not isinstance(value, int):
                raise NfctValueError(f"sysctl: {name}: {value!r} is not an integer")
    return out


def replay_many(
    captures: Sequence[str | os.PathLike[str]],
    *,
    host: HostSetup | str | os.PathLike[str] | None = None,
    sysctl: Mapping[str, int] | Sequence[Mapping[str, int]] | None = None,
    cluster: Any = "local",
    workers: int | None = None,
    tables: Sequence[str] = (),
    seed: int | None = None,
    on_done: Callable[[int, int, Mapping[str, Any]], object] | None = None,
    timeout: float = 30.0,
) -> ManyTables:
    """Replays every capture under every setting, one unit per task on ``cluster`` (see the
    module's description), and gathers the results.

    ``host``: a host file (as ``nfct replay --host``) or a :class:`~nfct.report.HostSetup`
    (sysctls, seed, local addresses, zone, drop-invalid, clock, path, iif, mtu) every unit
    starts from. ``sysctl``: one mapping set on top of it, or a sequence of mappings, the
    settings (each capture is replayed under each). ``tables``: further tables of
    :mod:`nfct.export` to gather (``"entries"``, ``"packets"``: each packet's class,
    ``"events"``, ``"timeline"``, ``"evictions"``). ``seed``: the hash seed of every Net
    (default: the setup's, else a random one per Net, as ``nfct replay`` does: listings
    come in another order, and what early drop evicts may differ). ``on_done(done, total,
    row)`` after each unit, in the order they finish (``row``: its units row as a dict).
    Returns the tables sorted by unit."""
    pa = _pyarrow()
    bad = [t for t in tables if t not in TABLES]
    if bad:
        raise NfctValueError(f"tables: {', '.join(bad)} (known: {', '.join(TABLES)})")
    tables = tuple(dict.fromkeys(tables))
    setup = _setup(host, seed)
    units = units_of(captures, _settings(sysctl))
    results: list[dict[str, Any]] = []

    def done(res: dict[str, Any]) -> None:
        results.append(res)
        if on_done is not None:
            on_done(len(results), len(units), res["units"].to_pylist()[0])

    if cluster is None:
        for u in units:
            done(run_unit(u, setup, tables))
    else:
        distributed = _distributed()
        with connect(cluster, workers=workers, timeout=timeout) as client:
            futures = client.map(
                run_unit,
                units,
                setup=setup,
                tables=tables,
                pure=False,
                key=[f"nfct-unit-{u.index}-{os.getpid()}-{time.monotonic_ns()}" for u in units],
            )
            which = {f.key: u for f, u in zip(futures, units, strict=True)}
            for fut in distributed.as_completed(futures, loop=client.loop):
                try:
                    res = fut.result()
                except Exception as e:  # the task itself failed: its worker died
                    res = _failed(which[fut.key], e)
                fut.release()
                done(res)
    return _gather(pa, results, tables)


def _gather(pa: Any, results: list[dict[str, Any]], tables: Sequence[str]) -> ManyTables:
    results.sort(key=lambda r: r["units"]["unit"][0].as_py())
    out = ManyTables()
    out["units"] = pa.concat_tables([r["units"] for r in results])
    for name in tables:
        parts = [r[name] for r in results if name in r]
        out[name] = pa.concat_tables(parts) if parts else _empty(pa, name)
    return out


def report_on(
    cluster: Any,
    captures: Sequence[str | os.PathLike[str]],
    setup: HostSetup | None = None,
    grid: Mapping[str, Sequence[int]] | None = None,
    *,
    workers: int | None = None,
    demand: bool = True,
    on_done: Callable[[int, int, Mapping[str, int]], object] | None = None,
    timeout: float = 30.0,
    **kw: Any,
) -> Any:
    """``nfct report --cluster``: the figures of :func:`nfct.report.compute` (one task), or
    with a ``grid`` those of :func:`nfct.report.sweep` with every run (and every replay for
    the demand) a task on ``cluster``. The captures are read by the workers."""
    from nfct import report

    units_of(captures)  # no standard input
    with connect(cluster, workers=workers, timeout=timeout) as client:
        if grid:
            return report.sweep(
                captures,
                grid,
                setup,
                demand=demand,
                on_done=on_done,
                executor=client.get_executor(pure=False),
                **kw,
            )
        names = [os.fspath(c) for c in captures]
        paths = [u.source for u in units_of(names)]
        fut = client.submit(
            report.compute, paths, setup, names=names, demand=demand, pure=False, **kw
        )
        figures = fut.result()
        if on_done is not None:
            on_done(1, 1, {})
        return figures
