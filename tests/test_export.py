"""`nfct.export` and `nfct replay --export`: one packets row per IP frame, equal to what
`--output packets` prints, on the shipped and the shared captures; events, entries, timeline
and evictions against the replay's own outputs; Parquet written in batches; pandas loads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nfct
import packets as P
from helpers import EXAMPLES_DIR, S, forward, run_cli, shared_pcaps_dir
from nfct import export
from nfct.cli import main
from nfct.pcap import iter_records, write_pcap

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")


def _captures() -> list[Path]:
    caps = sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix in (".pcap", ".pcapng"))
    shared = shared_pcaps_dir()
    if shared is not None:
        caps += sorted(p for p in shared.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return caps


def _packet_lines(path: Path, tmp_path: Path, **kw: object) -> list[tuple[int, str, str | None]]:
    """(frame, class, reason) as `--output packets` prints them, from a replay of its own."""
    out = tmp_path / "packets.txt"
    nfct.Net(seed=1, **kw).replay([path], packets_path=out)  # type: ignore[arg-type]
    rows = []
    for line in out.read_text().splitlines():
        frame, cls, *rest = line.split(" ", 2)
        reason = rest[0] if rest else None
        if cls == "dropped" and reason is not None and reason.startswith("by "):
            continue  # a rule's drop reads differently; none in these captures
        rows.append((int(frame), cls, reason))
    return rows


@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_one_row_per_ip_frame(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    summary = export.export_replay(nfct.Net(seed=1), [path], out)
    assert summary is not None
    packets = pq.read_table(out / "packets.parquet")
    assert packets.num_rows == summary.packets == summary.frames - summary.non_ip
    df = pd.read_parquet(out / "packets.parquet")
    assert len(df) == summary.packets
    assert df["frame"].is_unique and (df["capture"] == str(path)).all()
    rows = [
        (int(f), c, r if isinstance(r, str) else None)
        for f, c, r in zip(df["frame"], df["cls"], df["reason"], strict=True)
    ]
    assert rows == _packet_lines(path, tmp_path)
    schemas = export.schemas()
    for name in export.TABLES:
        assert pq.read_schema(out / f"{name}.parquet").equals(schemas[name]), name
    tl = pq.read_table(out / "timeline.parquet").to_pandas()
    assert tl["packets"].sum() == summary.packets
    for cls in ("new", "established", "related", "invalid", "untracked", "dropped"):
        assert tl[cls].sum() == summary[cls], cls


def test_schemas_are_pinned() -> None:
    """Other tools (the cluster backend of issue #19) read these files: the names and types
    only grow at the end of a table. docs/report.md pins the names; this, the types."""
    types = {name: [str(f.type) for f in schema] for name, schema in export.schemas().items()}
    entry = [
        "string", "string", "uint8", "int64", "string", "string", "string", "uint16", "uint16",
        "uint8", "uint8", "uint16", "string", "string", "uint16", "uint16", "string",
        "uint32", "uint16", "uint64", "uint64", "uint64", "uint64",
    ]  # fmt: skip
    census = (
        "list<item: struct<family: string, proto: string, state: string, zone: uint16, "
        "entries: uint64>>"
    )
    assert types == {
        "packets": [
            "dictionary<values=string, indices=int32, ordered=0>", "uint64", "double",
            "string", "string", "string", "string", "uint8", "string", "string", "uint16",
            "uint16", "uint64",
        ],
        "events": ["double", "string", *entry, "string"],
        "entries": [*entry, "uint32", "string"],
        "timeline": ["double", *["uint64"] * 11, census],
        "evictions": [
            "double", "string", "string", "string", "string", "uint16", "uint16", "string",
            "int64", "double", "string",
        ],
    }  # fmt: skip


def test_export_through_a_host_with_actions(tmp_path: Path) -> None:
    """--export with --host, --iif and --at: the same replay (output, entries) as without,
    one packets row per IP frame, the deletion among the events."""
    host = EXAMPLES_DIR / "host-kube-proxy.json"
    cap = EXAMPLES_DIR / "kube.pcapng"
    args = ["replay", cap, "--host", host, "--iif", "eth0", "--seed", "1"]
    args += ["--at", "3:delete:proto=tcp"]
    plain = run_cli(*args)
    exported = run_cli(*args, "--export", tmp_path / "x")
    assert plain.returncode == exported.returncode == 0, exported.stderr
    assert exported.stdout == plain.stdout and exported.stderr == plain.stderr
    first = next(iter_records(cap))[0]
    tables = export.replay_tables(
        nfct.Net(seed=1, host=str(host)),
        [cap],
        iif="eth0",
        at=[(first + 3, lambda net: net.delete(proto="tcp"))],
    )
    frames = pd.read_parquet(tmp_path / "x" / "packets.parquet")
    assert len(frames) == tables.summary.packets == 20
    entries = pd.read_parquet(tmp_path / "x" / "entries.parquet")
    assert list(entries["line"]) == plain.stdout.splitlines()
    assert tables["entries"].to_pandas().equals(entries)
    events = pd.read_parquet(tmp_path / "x" / "events.parquet")
    destroyed = events[events["event"] == "DESTROY"]
    assert len(destroyed) > 0 and set(destroyed["proto"]) == {"tcp"}


def _flows(path: Path, n: int = 120) -> Path:
    recs = []
    for i in range(n):
        t = 1000.0 + i * 0.05
        recs.append((t, P.udp(f"10.0.{i % 5}.{1 + i % 40}", S, 5000 + i, 53, b"q")))
        if i % 4 == 0:
            recs.append((t + 0.01, P.udp(S, f"10.0.{i % 5}.{1 + i % 40}", 53, 5000 + i, b"a")))
        if i % 30 == 5:
            recs.append((t + 0.02, P.icmp_echo(f"10.0.{i % 5}.9", S, 77 + i)))
    write_pcap(path, recs)
    return path


SMALL = {"nf_conntrack_max": 32, "nf_conntrack_buckets": 8, "nf_conntrack_timestamp": 1}


def test_tables_against_the_replays_own_outputs(tmp_path: Path) -> None:
    cap = _flows(tmp_path / "flows.pcap")
    net = nfct.Net({**SMALL, "nf_conntrack_acct": 1}, seed=4)
    tables = export.replay_tables(net, [cap], census_every=0.5)
    assert set(tables) == set(export.TABLES)
    # The same replay again, writing events and listing the table as the command does.
    ref = nfct.Net({**SMALL, "nf_conntrack_acct": 1}, seed=4)
    ref.replay([cap], events_path=tmp_path / "ev.txt", event_timestamps=True)
    events = (tmp_path / "ev.txt").read_text().splitlines()
    ev = tables["events"].to_pandas()
    assert list(ev["line"]) == [line.split("\t", 1)[1] for line in events]
    assert list(ev["tstamp"]) == [float(line[1 : line.index("]")]) for line in events]
    assert set(ev["event"]) == {"NEW", "UPDATE", "DESTROY"}
    entries = tables["entries"].to_pandas()
    assert sorted(entries["line"]) == sorted(ref.dump().splitlines())
    assert len(entries) == len(net) > 0
    assert tables.summary is not None and tables.summary.packets == len(tables["packets"])
    icmp = entries[entries["proto"] == "icmp"]
    assert (icmp["icmp_type"] == 8).all() and icmp["sport"].isna().all()
    assert (entries["orig_packets"] >= 1).all(), "nf_conntrack_acct counters"
    destroyed = ev[ev["event"] == "DESTROY"]
    assert destroyed["orig_packets"].notna().all()
    evictions = tables["evictions"].to_pandas()
    assert len(evictions) == net.stats["early_drop"] > 0
    assert (evictions["age"] >= 0).all()
    # Every flow is to or from S (an answer whose query's entry was evicted makes its own).
    assert ((evictions["dst"] == S) | (evictions["src"] == S)).all()
    tl = tables["timeline"].to_pandas()
    assert tl["early_drops"].sum() == net.stats["early_drop"]
    assert tl["second"].is_monotonic_increasing
    assert tl["count_max"].max() == 32
    censuses = tl[tl["census_total"].notna()]
    assert len(censuses) >= 1
    last = censuses.iloc[-1]
    assert sum(item["entries"] for item in last["census"]) == last["census_total"]
    packets = tables["packets"].to_pandas()
    assert packets["count"].max() == 32
    assert tables.to_pandas()["packets"].shape == packets.shape


def test_parquet_is_written_in_batches(tmp_path: Path) -> None:
    cap = _flows(tmp_path / "flows.pcap")
    out = tmp_path / "out"
    exp = export.Exporter(out, [str(cap)], batch_rows=10)
    net = nfct.Net(SMALL, seed=4)
    net.replay([cap], observe=exp, observe_batch=25)
    assert all(not s.batches for s in exp.sinks.values()), "nothing is held in memory"
    assert exp.finish(net) == {}
    f = pq.ParquetFile(out / "packets.parquet")
    assert f.metadata.num_row_groups >= 6 and f.metadata.num_rows == exp.rows()["packets"]
    assert pq.ParquetFile(out / "entries.parquet").metadata.num_row_groups >= 2


def test_export_option_keeps_the_replay_output(tmp_path: Path) -> None:
    cap = _flows(tmp_path / "flows.pcap")
    plain = run_cli("replay", cap, "--seed", "2", "--output", "events", "--event-timestamps")
    exported = run_cli(
        "replay", cap, "--seed", "2", "--output", "events", "--event-timestamps",
        "--export", tmp_path / "x",
    )  # fmt: skip
    assert exported.returncode == plain.returncode == 0, exported.stderr
    assert exported.stdout == plain.stdout and exported.stderr == plain.stderr
    no_ts = run_cli("replay", cap, "--seed", "2", "--output", "events", "--export", tmp_path / "y")
    assert no_ts.stdout == run_cli("replay", cap, "--seed", "2", "--output", "events").stdout
    table = run_cli("replay", cap, "--seed", "2", "--export", tmp_path / "z")
    assert table.stdout == run_cli("replay", cap, "--seed", "2").stdout
    assert len(pq.read_table(tmp_path / "z" / "entries.parquet")) == table.stdout.count("\n")


def test_export_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = _flows(tmp_path / "flows.pcap")
    assert main(["replay", str(cap), "--export", str(tmp_path / "o"), "--threads", "2"]) == 2
    assert capsys.readouterr().err == (
        "nfct: --export sees packets in capture order: use --threads 1\n"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["replay", str(cap), "--export", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nfct: --export {blocker / 'sub'}: ") and err.count("\n") == 1


def test_truncated_capture_exports_what_was_read(tmp_path: Path) -> None:
    cap = _flows(tmp_path / "flows.pcap")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(cap.read_bytes()[:3000])
    proc = run_cli("replay", cut, "--export", tmp_path / "o", "--output", "stats")
    assert proc.returncode == 2 and "truncated record" in proc.stderr
    n = len(pq.read_table(tmp_path / "o" / "packets.parquet"))
    assert n > 0 and f"nfct: {n} packets" in proc.stderr
    with pytest.raises(nfct.CaptureError) as info:
        export.replay_tables(nfct.Net(), [cut])
    assert len(info.value.tables["packets"]) == n  # type: ignore[attr-defined]


def test_the_export_owns_observe(tmp_path: Path) -> None:
    cap = _flows(tmp_path / "flows.pcap")
    with pytest.raises(nfct.NfctValueError, match="observe"):
        export.replay_tables(nfct.Net(), [cap], observe=print)


def test_event_rows() -> None:
    row = export.event_row(
        "[1000.250000]\t [DESTROY] ipv4     2 tcp      6 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 "
        "packets=3 bytes=180 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 packets=2 bytes=120 "
        "[ASSURED] mark=5 zone=3\n"
    )
    assert row is not None
    assert (row["tstamp"], row["event"], row["proto"], row["sport"], row["reply_dport"]) == (
        1000.25, "DESTROY", "tcp", 1, 1,
    )  # fmt: skip
    assert (row["orig_bytes"], row["reply_packets"], row["flags"], row["mark"], row["zone"]) == (
        180, 2, "ASSURED", 5, 3,
    )  # fmt: skip
    assert export.event_row("not an event\n") is None
    nfct_line = (
        "[1.5]\t    [NEW] ipv4     2 udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=9 dport=53"
    )
    new = export.event_row(nfct_line + " [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=9")
    assert new is not None and (new["timeout"], new["flags"], new["zone"]) == (30, "UNREPLIED", 0)
    json.dumps(row)


def test_event_columns_equal_event_rows(tmp_path: Path) -> None:
    """The batch parser (Arrow's regular expressions) against the line-by-line one, on the
    events of every shipped capture and generated flows, with counters, a zone and a mark."""
    lines: list[str] = []
    small = {"nf_conntrack_acct": 1, "nf_conntrack_max": 6, "nf_conntrack_buckets": 4}
    for path in [*sorted(EXAMPLES_DIR.glob("*.pcap")), _flows(tmp_path / "flows.pcap", 30)]:
        # A small table: early drop's victims give DESTROY events with their counters.
        net = nfct.Net(small, seed=1)
        for hook, op in (
            (nfct.NF_INET_PRE_ROUTING, nfct.BuiltinHook.ct_zone(3)),
            (nfct.NF_INET_FORWARD, nfct.BuiltinHook.ct_mark_set(9)),
        ):
            prio = nfct.NF_IP_PRI_RAW if hook == nfct.NF_INET_PRE_ROUTING else 0
            nfct.nf_register_net_hook(net, nfct.NfHookOps(op, nfct.NFPROTO_INET, hook, prio))
        out = tmp_path / f"{path.stem}.events"
        net.replay([path], events_path=out, event_timestamps=True)
        lines += out.read_text().splitlines(keepends=True)
        plain = tmp_path / f"{path.stem}.plain"
        nfct.Net(seed=1).replay([path], events_path=plain, event_timestamps=True)
        lines += plain.read_text().splitlines(keepends=True)
    assert {"[NEW]", "[UPDATE]", "[DESTROY]"} <= {w for x in lines for w in x.split()}
    assert any("zone=3" in x for x in lines) and any("mark=9" in x for x in lines)
    assert any("type=8" in x for x in lines) and any(" TIME_WAIT " in x for x in lines)
    lines.append("not an event\n")
    cols = export.event_columns(pa, lines)
    rows = [r for r in map(export.event_row, lines) if r is not None]
    assert len(rows) == len(lines) - 1
    for name, values in cols.items():
        assert values.to_pylist() == [r[name] for r in rows], name


def _row_by_attributes(conn: nfct.Conn) -> dict[str, object]:
    """An ``entries`` row read attribute by attribute (each a snapshot of its own)."""
    o, r, c = conn.orig, conn.reply, conn.counters
    return {
        "l3num": o.l3num,
        "proto": conn.proto,
        "protonum": o.protonum,
        "timeout": conn.timeout,
        "state": conn.state,
        "src": o.src,
        "dst": o.dst,
        "sport": o.sport,
        "dport": o.dport,
        "icmp_type": o.type,
        "icmp_code": o.code,
        "icmp_id": o.id,
        "reply_src": r.src,
        "reply_dst": r.dst,
        "reply_sport": r.sport,
        "reply_dport": r.dport,
        "mark": conn.mark,
        "zone": conn.zone,
        "orig_packets": c[0].packets if c else None,
        "orig_bytes": c[0].bytes if c else None,
        "reply_packets": c[1].packets if c else None,
        "reply_bytes": c[1].bytes if c else None,
        "status": int(conn.status),
        "line": conn.line(),
    }


@pytest.mark.parametrize("acct", [0, 1])
def test_conn_row_is_every_attribute_at_once(acct: int) -> None:
    """``Conn.row`` (what the entries table is built from) holds what the attributes say, for
    TCP, UDP, ICMP and IPv6 entries, with counters on and off, a mark and a zone."""
    net = nfct.Net({"nf_conntrack_acct": acct}, seed=1)
    for pkt in (
        P.tcp("10.0.0.1", "10.0.0.2", 1234, 80, seq=1, flags="S"),
        P.udp("10.0.0.1", "10.0.0.3", 5000, 53, b"q" * 30),
        P.icmp_echo("10.0.0.1", "10.0.0.4", ident=7),
        P.tcp("2001:db8::1", "2001:db8::2", 4321, 443, seq=1, flags="S"),
    ):
        forward(net, pkt, 1.0)
    forward(net, P.udp("10.0.0.3", "10.0.0.1", 53, 5000, b"a" * 60), 1.5)
    conns = list(net)
    net.update(set_mark=42, dport=80)
    assert len(conns) == 4
    protos = set()
    for conn in conns:
        row = conn.row()
        assert row == _row_by_attributes(conn)
        assert list(row) == list(_row_by_attributes(conn))
        protos.add(row["proto"])
        assert (row["orig_packets"] is None) == (acct == 0)
    assert protos == {"tcp", "udp", "icmp"}
    cols = net.columns()
    assert list(cols) == list(conns[0].row())
    rows_back = [dict(zip(cols, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
    assert rows_back == [c.row() for c in conns]
    table = export.entry_columns(net)
    assert set(table["family"]) == {"ipv4", "ipv6"}
    assert "UNREPLIED" in table["flags"]
    assert len(table["flags"]) == len(conns)
