"""`nfct replay --output json` builds its entries from the live `Conn` objects. They must be
exactly what the CLI printed when it parsed its own `conntrack -L -o extended` text back
(`parse_conntrack_line` over the `lines` of the same document): same keys, same key order,
same values, on every shipped capture and under the options that change the fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nfct
import packets as P
from nfct.cli import json_entry, main
from nfct.kernel.compare import parse_conntrack_line
from scenarios.sctp import Assoc

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

OPTIONS = {
    "default": [],
    "acct-tstamp": ["--sysctl", "nf_conntrack_acct=1", "--sysctl", "nf_conntrack_timestamp=1"],
    "zone-acct": ["--zone", "5", "--sysctl", "nf_conntrack_acct=1"],
    "frozen-drop-invalid": ["--clock", "frozen", "--drop-invalid"],
    "local-in-tstamp": ["--path", "local-in", "--sysctl", "nf_conntrack_timestamp=1"],
}


def _old_entries(lines: list[str]) -> str:
    """The entries as the CLI built them before: its own text parsed back (as JSON text, so
    that key order counts too)."""
    return json.dumps([parse_conntrack_line(line) for line in lines])


def _replay_json(capsys: pytest.CaptureFixture[str], capture: Path, opts: list[str]) -> dict:
    assert main(["replay", "-o", "json", "--seed", "7", *opts, str(capture)]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def _crafted(path: Path) -> Path:
    """Every L4 layout of the listing: TCP, UDP, UDP-Lite, ICMPv6, GRE (keys), SCTP (a state),
    DCCP (ports printed as 0), generic protocols; IPv6 addresses in inet_ntop's dotted forms."""
    packets = [
        P.gre("10.0.0.1", "10.0.0.2", b"\x45" + b"\0" * 19, version=1, protocol=0x880B, key=0x1234),
        P.gre("10.0.0.2", "10.0.0.1", b"", version=1, protocol=0x880B, key=0x5678),
        P.gre("10.0.0.3", "10.0.0.4", b"\x45" + b"\0" * 19, key=7),
        P.generic("10.0.0.5", "10.0.0.6", 33, b"\x04\xd2\x16\x2e" + b"\0" * 12),
        P.generic("fd00::5", "fd00::6", 33, b"\x04\xd2\x16\x2e" + b"\0" * 12),
        P.generic("10.0.0.7", "10.0.0.8", 99),
        P.esp("10.0.0.11", "10.0.0.12", 0x1234),
        P.udp("::1.2.3.4", "::ffff:5.6.7.8", 1000, 2000, b"x"),
        P.udp("::ffff:5.6.7.8", "::1.2.3.4", 2000, 1000, b"y"),
        P.udplite("10.0.0.9", "10.0.0.10", 5, 6, b"lite"),
        P.icmp6_echo("fd00::1", "fd00::2", 77),
        P.icmp6_echo("fd00::2", "fd00::1", 77, reply=True),
        *Assoc().handshake(),
        P.tcp("10.0.0.13", "10.0.0.14", 1111, 80, seq=1, flags="S"),
    ]
    path.write_bytes(P.pcap([(1000.0 + i * 0.25, p) for i, p in enumerate(packets)]))
    return path


@pytest.mark.parametrize("opts", sorted(OPTIONS))
@pytest.mark.parametrize("capture", sorted(p.name for p in EXAMPLES.glob("*.pcap")))
def test_shipped_capture_entries_equal_the_parsed_lines(
    capsys: pytest.CaptureFixture[str], capture: str, opts: str
) -> None:
    doc = _replay_json(capsys, EXAMPLES / capture, OPTIONS[opts])
    assert doc["entries"], "every shipped capture leaves entries"
    assert json.dumps(doc["entries"]) == _old_entries(doc["lines"])
    assert len(doc["lines"]) == doc["count"]
    # The lines are the table's own listing.
    assert main(["replay", "--seed", "7", *OPTIONS[opts], str(EXAMPLES / capture)]) == 0
    assert capsys.readouterr().out.splitlines() == doc["lines"]


@pytest.mark.parametrize("opts", ["default", "acct-tstamp", "zone-acct"])
def test_every_protocol_layout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, opts: str
) -> None:
    doc = _replay_json(capsys, _crafted(tmp_path / "crafted.pcap"), OPTIONS[opts])
    assert json.dumps(doc["entries"]) == _old_entries(doc["lines"])
    protos = {e["proto"] for e in doc["entries"]}
    assert protos == {"gre", "dccp", "unknown", "udp", "udplite", "icmpv6", "sctp", "tcp"}
    assert any("srckey" in e["orig"] for e in doc["entries"])
    assert any(e["orig"]["src"] == "::1.2.3.4" for e in doc["entries"])


def test_zone_directions_and_marks(tmp_path: Path) -> None:
    """Fields the CLI cannot set: zones of one direction, a mark."""
    capture = _crafted(tmp_path / "crafted.pcap")
    for zone in (nfct.BuiltinHook.ct_zone(5, "original"), nfct.BuiltinHook.ct_zone(6, "reply")):
        net = nfct.Net({"nf_conntrack_acct": 1, "nf_conntrack_timestamp": 1}, seed=3)
        for op, hook, prio in (
            (zone, nfct.NF_INET_PRE_ROUTING, nfct.NF_IP_PRI_RAW),
            (nfct.BuiltinHook.ct_mark_set(0x2A), nfct.NF_INET_FORWARD, 0),
        ):
            nfct.nf_register_net_hook(net, nfct.NfHookOps(op, nfct.NFPROTO_INET, hook, prio))
        net.replay([capture])
        conns = list(net)
        assert conns
        for conn in conns:
            assert json.dumps(json_entry(conn)) == json.dumps(parse_conntrack_line(conn.line()))
        extras = [json_entry(c)["extra"] for c in conns]
        assert any(e.get("zone-orig") == "5" or e.get("zone-reply") == "6" for e in extras)
        assert any(e["mark"] == "42" for e in extras)
