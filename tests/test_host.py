"""A host file (issue #12) offline: routing decisions on small hand-written hosts, refusals with
one clear error each, the command's behaviour, and the shipped firewalld example.
tests/live/test_host_kernel.py checks the same engine against the live kernel."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nfct
import packets as P
from nfct import pcap
from nfct.cli import main
from nfct.host import snapshot

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


# --- building host files -----------------------------------------------------------------------


def dev(index: int, name: str, *addrs: str, mtu: int = 1500, up: bool = True) -> dict[str, Any]:
    """One interface as `ip -j addr show` prints it (the fields nfct reads)."""
    loopback = name == "lo"
    flags = ["LOOPBACK"] if loopback else ["BROADCAST", "MULTICAST"]
    info = []
    for a in addrs:
        local, _, plen = a.partition("/")
        info.append(
            {"family": "inet6" if ":" in local else "inet", "local": local, "prefixlen": int(plen)}
        )
    return {
        "ifindex": index,
        "ifname": name,
        "flags": [*flags, *(["UP", "LOWER_UP"] if up else [])],
        "mtu": mtu,
        "link_type": "loopback" if loopback else "ether",
        "addr_info": info,
    }


def route(dst: str, dev_: str | None = None, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"dst": dst, **kw}
    if dev_ is not None:
        r["dev"] = dev_
    return r


def local(addr: str, dev_: str, typ: str = "local") -> dict[str, Any]:
    return {"type": typ, "dst": addr, "dev": dev_, "table": "local"}


def rule(chain: str, handle: int, *expr: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": {
            "family": "inet",
            "table": "t",
            "chain": chain,
            "handle": handle,
            "expr": list(expr),
        }
    }


def chain(name: str, hook: str, policy: str = "accept", prio: int = 0) -> dict[str, Any]:
    return {
        "chain": {
            "family": "inet",
            "table": "t",
            "name": name,
            "handle": 1,
            "type": "filter",
            "hook": hook,
            "prio": prio,
            "policy": policy,
        }
    }


def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


COUNTER = {"counter": {"packets": 0, "bytes": 0}}

# The probe ruleset: where a packet went. Input counts local delivery; forward counts per
# output interface (handles 11, 12, 13 for eth0, eth1, eth2).
PROBE = {
    "nftables": [
        {"table": {"family": "inet", "name": "t", "handle": 1}},
        chain("input", "input"),
        chain("forward", "forward"),
        rule("input", 10, COUNTER),
        *(
            rule("forward", 11 + i, match({"meta": {"key": "oifname"}}, f"eth{i}"), COUNTER)
            for i in range(3)
        ),
    ]
}


def router(**extra: Any) -> dict[str, Any]:
    """A router: eth0 192.0.2.1/24 + 2001:db8:1::1/64 (clients), eth1 198.51.100.1/24 (the
    default route, MTU 1400), eth2 203.0.113.1/24 (MTU 9000), blackhole/unreachable/prohibit
    prefixes, forwarding on, no reverse-path filter; `extra` replaces parts."""
    host: dict[str, Any] = {
        "addr": [
            dev(1, "lo", "127.0.0.1/8", "::1/128", mtu=65536),
            dev(2, "eth0", "192.0.2.1/24", "2001:db8:1::1/64"),
            dev(3, "eth1", "198.51.100.1/24", mtu=1400),
            dev(4, "eth2", "203.0.113.1/24", mtu=9000),
        ],
        "route": [
            route("default", "eth1", gateway="198.51.100.254"),
            route("192.0.2.0/24", "eth0", prefsrc="192.0.2.1"),
            route("198.51.100.0/24", "eth1"),
            route("203.0.113.0/24", "eth2"),
            route("203.0.113.128/25", "eth2", metrics=[{"mtu": 1280}]),
            route("10.66.0.0/16", type="blackhole"),
            route("10.67.0.0/16", type="unreachable"),
            route("10.68.0.0/16", type="prohibit"),
            route("2001:db8:1::/64", "eth0", pref="medium"),
            route("default", "eth1", gateway="fe80::1", pref="medium"),
            local("127.0.0.0/8", "lo"),
            local("192.0.2.1", "eth0"),
            local("192.0.2.255", "eth0", "broadcast"),
            local("198.51.100.1", "eth1"),
            local("203.0.113.1", "eth2"),
            local("2001:db8:1::1", "eth0"),
        ],
        "ruleset": PROBE,
        "sysctl": {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"},
    }
    host.update(extra)
    return host


def where(
    host: dict[str, Any], *packets: bytes, iif: str | None = None, tmp: Path, mtu: int | None = None
) -> list[str]:
    """Where each packet went through `host` (replayed as a capture, arriving on `iif`):
    "local", "forward eth1", or "dropped REASON"."""
    cap = tmp / "probe.pcap"
    pcap.write_pcap(cap, [(1.0 + i, p) for i, p in enumerate(packets)])
    out = []
    for i in range(len(packets)):
        # One packet per fresh Net, so the counters say where that packet went.
        net = nfct.Net(host=host, mtu=mtu)
        one = tmp / "one.pcap"
        pcap.write_pcap(one, [(1.0, packets[i])])
        lines = tmp / "packets.txt"
        net.replay([one], packets_path=lines, iif=iif)
        words = lines.read_text().split(None, 2)
        if words[1] == "dropped":
            out.append(f"dropped {words[2].strip()}")
            continue
        moved = {(c["chain"], c["handle"]) for c in net.counters() if c["packets"]}
        if ("input", 10) in moved:
            out.append("local")
        else:
            out.extend(f"forward eth{h - 11}" for c, h in sorted(moved) if c == "forward")
    return out


def udp(src: str, dst: str, size: int = 0, df: bool = False) -> bytes:
    if size and ":" not in src:
        seg = P.udp_segment(src, dst, 1000, 53, b"x" * (size - 28))
        return P.ipv4(src, dst, 17, seg, dont_fragment=df)
    if size:
        return P.udp(src, dst, 1000, 53, b"x" * (size - 48))
    return P.udp(src, dst, 1000, 53, b"x")


# --- routing -----------------------------------------------------------------------------------


def test_local_broadcast_forward_and_no_route(tmp_path: Path) -> None:
    h = router()
    assert where(
        h,
        udp("192.0.2.9", "192.0.2.1"),
        udp("192.0.2.9", "198.51.100.1"),
        udp("192.0.2.9", "192.0.2.255"),
        udp("192.0.2.9", "8.8.8.8"),
        udp("192.0.2.9", "203.0.113.7"),
        udp("2001:db8:1::9", "2001:db8:1::1"),
        udp("2001:db8:1::9", "2001:db8:2::1"),
        tmp=tmp_path,
    ) == ["local", "local", "local", "forward eth1", "forward eth2", "local", "forward eth1"]
    # Without a default route there is no way out.
    no_default = router(route=[r for r in h["route"] if r["dst"] != "default"])
    assert where(no_default, udp("192.0.2.9", "8.8.8.8"), tmp=tmp_path) == [
        "dropped ip_route_input: no route to host"
    ]
    assert where(no_default, udp("2001:db8:1::9", "2001:db8:2::1"), tmp=tmp_path) == [
        "dropped ip6_route_input: no route to host"
    ]


def test_blackhole_unreachable_prohibit(tmp_path: Path) -> None:
    assert where(
        router(),
        udp("192.0.2.9", "10.66.1.1"),
        udp("192.0.2.9", "10.67.1.1"),
        udp("192.0.2.9", "10.68.1.1"),
        tmp=tmp_path,
    ) == [
        "dropped ip_route_input: blackhole route",
        "dropped ip_route_input: unreachable route",
        "dropped ip_route_input: prohibit route",
    ]


def test_forwarding_off(tmp_path: Path) -> None:
    off = router(sysctl={"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"})
    assert where(
        off,
        udp("192.0.2.9", "8.8.8.8"),
        udp("192.0.2.9", "192.0.2.1"),
        udp("2001:db8:1::9", "2001:db8:2::1"),
        tmp=tmp_path,
    ) == [
        "dropped ip_route_input: forwarding is off (net.ipv4.ip_forward)",
        "local",
        "dropped ip6_route_input: forwarding is off (net.ipv6.conf.all.forwarding)",
    ]
    # Per interface: off for packets coming in on eth0 only.
    per_dev = router(sysctl={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.forwarding": "0"})
    assert where(per_dev, udp("192.0.2.9", "8.8.8.8"), tmp=tmp_path)[0].startswith("dropped")
    assert where(per_dev, udp("198.51.100.9", "203.0.113.7"), iif="eth1", tmp=tmp_path) == [
        "forward eth2"
    ]


@pytest.mark.parametrize("rp_filter", [1, 2])
def test_rp_filter(tmp_path: Path, rp_filter: int) -> None:
    h = router(sysctl={"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": str(rp_filter)})
    got = where(
        h,
        udp("192.0.2.9", "8.8.8.8"),  # the way back is eth0, where it came in
        udp("198.51.100.9", "8.8.8.8"),  # the way back is eth1, not eth0
        udp("10.66.0.9", "8.8.8.8"),  # the way back is a blackhole
        tmp=tmp_path,
    )
    assert got[0] == "forward eth1"
    if rp_filter == 1:
        assert got[1] == (
            "dropped ip_route_input: reverse path filter (the route back leaves by another "
            "interface)"
        )
    else:
        assert got[1] == "forward eth1", "loose: a route back exists"
    assert got[2] == "dropped ip_route_input: martian source"
    # With no route back at all, even loose drops.
    lonely = router(
        route=[r for r in h["route"] if r["dst"] != "default"],
        sysctl={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.rp_filter": "2"},
    )
    assert where(lonely, udp("8.8.8.8", "203.0.113.7"), tmp=tmp_path) == [
        "dropped ip_route_input: reverse path filter (no route back to the source)"
    ]


def test_mtu_of_the_route_and_the_interface(tmp_path: Path) -> None:
    h = router()
    big = "dropped ip_forward: fragmentation needed (packet larger than the MTU, DF set)"
    assert where(
        h,
        udp("192.0.2.9", "8.8.8.8", 1400, df=True),  # eth1: MTU 1400
        udp("192.0.2.9", "8.8.8.8", 1401, df=True),
        udp("192.0.2.9", "8.8.8.8", 1401),  # no DF: fragmented, forwarded
        udp("192.0.2.9", "203.0.113.7", 8000, df=True),  # eth2: MTU 9000
        udp("192.0.2.9", "203.0.113.200", 1281, df=True),  # the route's mtu 1280
        udp("2001:db8:1::9", "2001:db8:2::1", 1401),  # IPv6 never fragments on the way
        tmp=tmp_path,
    ) == [
        "forward eth1",
        big,
        "forward eth1",
        "forward eth2",
        big,
        "dropped ip6_forward: packet too big (larger than the MTU)",
    ]
    # --mtu N: the default route's interface.
    assert where(h, udp("192.0.2.9", "8.8.8.8", 1401, df=True), mtu=1500, tmp=tmp_path) == [
        "forward eth1"
    ]
    assert nfct.Net(host=h, mtu=9000).interfaces[2] == (3, "eth1", 9000, True)


def _pcapng(records: list[tuple[int, bytes]], names: list[str]) -> bytes:
    """A pcapng file of raw-IP interfaces named `names` and (interface, packet) records."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack("<II", kind, n) + body + struct.pack("<I", n)

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for name in names:
        opt = name.encode()
        opts = struct.pack("<HH", 2, len(opt)) + opt + b"\0" * (-len(opt) % 4)
        opts += struct.pack("<HH", 0, 0)
        out += block(1, struct.pack("<HHI", 101, 0, 0) + opts)
    for i, (iface, data) in enumerate(records):
        ts = 1_000_000 + i
        head = struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        out += block(6, head + data)
    return out


def test_pcapng_interface_names_choose_the_iif(tmp_path: Path) -> None:
    """A pcapng names each packet's interface: with strict reverse-path filtering the same
    packet passes on the interface its source is behind and is dropped on the other one; one
    seen on loopback was sent by the host itself."""
    h = router(sysctl={"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "1"})
    pkt = udp("198.51.100.9", "203.0.113.7")
    cap = tmp_path / "ifaces.pcapng"
    cap.write_bytes(
        _pcapng(
            [(0, pkt), (1, pkt), (2, udp("192.0.2.1", "192.0.2.1"))],
            ["eth0", "eth1", "lo"],
        )
    )
    lines = tmp_path / "packets.txt"
    nfct.Net(host=h).replay([cap], packets_path=lines)
    got = lines.read_text().splitlines()
    assert got[0].startswith("1 dropped ip_route_input: reverse path filter"), got
    assert got[1] == "2 new", got
    # From lo: the host's own packet to itself, through LOCAL_OUT and back in; not a martian.
    assert got[2] == "3 new", got
    # --iif overrides the names.
    nfct.Net(host=h).replay([cap], packets_path=lines, iif="eth1")
    assert lines.read_text().splitlines()[0] == "1 new"


def test_the_first_interface_up_is_the_default_iif(tmp_path: Path) -> None:
    h = router()
    h["addr"][1]["flags"] = ["BROADCAST"]  # eth0 down
    h["sysctl"] = {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "1"}
    # eth1 is now the default: a source behind eth1 passes the strict filter.
    assert where(h, udp("198.51.100.9", "203.0.113.7"), tmp=tmp_path) == ["forward eth2"]


# --- refusals ----------------------------------------------------------------------------------


def _refused(host: Any, tmp_path: Path) -> str:
    with pytest.raises(nfct.NfctError) as e:
        nfct.Net(host=host)
    text = str(e.value)
    assert "\n" not in text
    return text


def test_refusals_name_what_is_not_modelled(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not JSON" in _refused(str(bad), tmp_path)
    assert 'unknown part "routes"' in _refused({"routes": []}, tmp_path)
    assert "table 100 is not modelled" in _refused(
        {"route": [route("10.0.0.0/8", table="100")]}, tmp_path
    )
    assert "policy routing" in _refused(
        {"rule": [{"priority": 100, "src": "10.0.0.0/8", "table": "100"}]}, tmp_path
    )
    assert "multipath routes are not modelled" in _refused(
        {"route": [route("default", nexthops=[{"gateway": "10.0.0.1"}, {"gateway": "10.0.0.2"}])]},
        tmp_path,
    )
    assert 'interface eth9 is not in the "addr" part' in _refused(
        {"route": [route("10.0.0.0/8", "eth9")]}, tmp_path
    )


def _ruleset_with(
    *expr: dict[str, Any], extra: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "ruleset": {
            "nftables": [
                {"table": {"family": "inet", "name": "t", "handle": 1}},
                *(extra or []),
                chain("forward", "forward"),
                rule("forward", 7, *expr),
            ]
        }
    }


@pytest.mark.parametrize(
    ("expr", "extra", "what"),
    [
        ([{"xt": {"type": "match", "name": "conntrack"}}], None, "xt expressions"),
        ([{"queue": {"num": 1}}], None, "the queue verdict is not modelled"),
        ([{"limit": {"rate": 10, "per": "second"}}], None, "limit statements are not modelled"),
        (
            [match({"socket": {"key": "transparent"}}, 1)],
            None,
            "socket expressions are not modelled",
        ),
        ([match({"meta": {"key": "skuid"}}, 0)], None, "meta skuid is not modelled"),
        ([match({"ct": {"key": "helper"}}, "ftp")], None, "ct helper is not modelled"),
        (
            [
                {
                    "snat": {
                        "family": "ip",
                        "addr": {"prefix": {"addr": "10.0.0.0", "len": 24}},
                        "flags": "netmap",
                    }
                }
            ],
            None,
            "snat prefix (netmap) is not modelled",
        ),
    ],
)
def test_unsupported_expressions_name_table_chain_handle(
    tmp_path: Path, expr: list[dict[str, Any]], extra: Any, what: str
) -> None:
    text = _refused(_ruleset_with(*expr, extra=extra), tmp_path)
    assert "inet t forward handle 7" in text, text
    assert what in text, text


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        (
            {"flowtable": {"family": "inet", "table": "t", "name": "ft", "hook": "ingress"}},
            "flowtable objects (ft) are not modelled",
        ),
        (
            {"ct helper": {"family": "inet", "table": "t", "name": "ftp", "type": "ftp"}},
            "ct helper objects (ftp) are not modelled",
        ),
        (
            {
                "set": {
                    "family": "inet",
                    "table": "t",
                    "name": "dyn",
                    "type": "ipv4_addr",
                    "flags": ["dynamic"],
                }
            },
            "flag dynamic is not modelled",
        ),
    ],
)
def test_unsupported_objects_name_table(tmp_path: Path, obj: dict[str, Any], what: str) -> None:
    text = _refused(_ruleset_with(COUNTER, extra=[obj]), tmp_path)
    assert "inet t" in text, text
    assert what in text, text


def test_unsupported_families_and_hooks(tmp_path: Path) -> None:
    bridge = {"ruleset": {"nftables": [{"table": {"family": "bridge", "name": "b", "handle": 1}}]}}
    assert "bridge b: tables of family bridge are not modelled" in _refused(bridge, tmp_path)
    ingress = {
        "ruleset": {
            "nftables": [
                {"table": {"family": "netdev", "name": "n", "handle": 1}},
                {
                    "chain": {
                        "family": "netdev",
                        "table": "n",
                        "name": "in",
                        "handle": 1,
                        "type": "filter",
                        "hook": "ingress",
                        "prio": 0,
                        "policy": "accept",
                    }
                },
            ]
        }
    }
    assert "netdev ingress chains are not modelled" in _refused(ingress, tmp_path)


# --- the command -------------------------------------------------------------------------------


def test_host_snapshot_shape(tmp_path: Path) -> None:
    """`snapshot` with the tools replaced: each part is what its command printed, a part whose
    command fails is left out with a warning, sysctls come from the given /proc/sys."""
    outputs = {
        ("addr", "show"): json.dumps([dev(1, "lo", "127.0.0.1/8")]),
        ("-4", "route"): json.dumps([route("default", "lo")]),
        ("-6", "route"): "[]",
        ("-4", "rule"): "[]",
        ("-6", "rule"): "[]",
    }

    def run(argv: Any) -> str:
        for key, out in outputs.items():
            if all(k in argv for k in key):
                return out
        raise RuntimeError("Operation not permitted (you must be root)")

    sysdir = tmp_path / "sys"
    (sysdir / "net" / "netfilter").mkdir(parents=True)
    (sysdir / "net" / "netfilter" / "nf_conntrack_tcp_loose").write_text("0\n")
    (sysdir / "net" / "ipv4").mkdir()
    (sysdir / "net" / "ipv4" / "ip_forward").write_text("1\n")
    warnings: list[str] = []
    doc = snapshot(run=run, proc_sys=sysdir, warn=warnings.append)
    assert list(doc) == ["addr", "route", "rule", "sysctl"]
    assert doc["sysctl"] == {
        "net.netfilter.nf_conntrack_tcp_loose": "0",
        "net.ipv4.ip_forward": "1",
    }
    assert warnings == [
        "ruleset left out: nft -j list ruleset: Operation not permitted (you must be root)"
    ]
    net = nfct.Net(host=doc)
    assert net.interfaces == [(1, "lo", 1500, True)]


def test_host_snapshot_command(tmp_path: Path) -> None:
    """`nfct host-snapshot -o FILE` on this machine: a host file nfct can read back, with the
    parts the machine lets it read (the ruleset may hold what nfct refuses: not read back)."""
    if shutil.which("ip") is None and not Path("/usr/sbin/ip").exists():
        pytest.skip("iproute2's ip is not installed")
    out = tmp_path / "host.json"
    proc = subprocess.run(
        [sys.executable, "-m", "nfct", "host-snapshot", "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert set(doc) <= {"addr", "route", "rule", "ruleset", "sysctl"}
    assert {"addr", "route", "sysctl"} <= set(doc), proc.stderr
    assert any(d["ifname"] == "lo" for d in doc["addr"])
    doc.pop("ruleset", None)
    doc.pop("rule", None)
    assert nfct.Net(host=doc).interfaces


def _forward_drop_host(tmp_path: Path) -> Path:
    """A router between the examples' client and server (eth0 in, everything else out of
    eth1) whose `inet filter` forward chain drops UDP to port 10053 at handle 7 and counts
    ICMP (named counter `pings`) and the rest (handle 8)."""
    host = {
        "addr": [
            dev(1, "lo", "127.0.0.1/8", mtu=65536),
            dev(2, "eth0", "10.0.0.1/24"),
            dev(3, "eth1", "10.0.1.1/24"),
        ],
        "route": [
            route("default", "eth1", gateway="10.0.1.254"),
            route("default", "eth1", gateway="fe80::1", pref="medium"),
        ],
    }
    host["ruleset"] = {
        "nftables": [
            {"table": {"family": "inet", "name": "filter", "handle": 1}},
            {"counter": {"family": "inet", "table": "filter", "name": "pings", "handle": 2}},
            {
                "chain": {
                    "family": "inet",
                    "table": "filter",
                    "name": "forward",
                    "handle": 3,
                    "type": "filter",
                    "hook": "forward",
                    "prio": 0,
                    "policy": "accept",
                }
            },
            *(
                {"rule": {"family": "inet", "table": "filter", "chain": "forward", **r}}
                for r in (
                    {
                        "handle": 7,
                        "expr": [
                            match({"payload": {"protocol": "udp", "field": "dport"}}, 10053),
                            {"drop": None},
                        ],
                    },
                    {
                        "handle": 9,
                        "expr": [
                            match({"meta": {"key": "l4proto"}}, {"set": ["icmp", "ipv6-icmp"]}),
                            {"counter": "pings"},
                        ],
                    },
                    {"handle": 8, "expr": [COUNTER]},
                )
            ),
        ]
    }
    path = tmp_path / "host.json"
    path.write_text(json.dumps(host))
    return path


def test_replay_output_packets_names_the_rule(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    host = _forward_drop_host(tmp_path)
    args = ["replay", str(EXAMPLES / "dns.pcap"), "--host", str(host), "--output", "packets"]
    assert main(args) == 0
    out = capfd.readouterr().out.splitlines()
    dropped = [x for x in out if "dropped by" in x]
    assert dropped and all(
        x.endswith(" dropped by inet filter forward handle 7") for x in dropped
    ), out


def test_replay_output_counters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    host = _forward_drop_host(tmp_path)
    assert (
        main(["replay", str(EXAMPLES / "mixed.pcap"), "--host", str(host), "--output", "counters"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("inet filter counter pings packets "), out
    assert out[1].startswith("inet filter forward handle 8 packets "), out
    pings = int(out[0].split()[5])
    rest = int(out[1].split()[6])
    assert pings > 0 and rest > pings, out
    net = nfct.Net(host=str(host))
    net.replay([EXAMPLES / "mixed.pcap"])
    counted = {(c["name"], c["handle"]): (c["packets"], c["bytes"]) for c in net.counters()}
    assert counted[("pings", None)][0] == pings


def test_bad_host_file_exit_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "host.json"
    bad.write_text(json.dumps({"route": [route("10.0.0.0/8", "eth9")]}))
    proc = subprocess.run(
        [sys.executable, "-m", "nfct", "replay", str(EXAMPLES / "dns.pcap"), "--host", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "eth9" in lines[0] and lines[0].startswith("nfct: "), proc.stderr


def test_without_host_nothing_changes() -> None:
    net = nfct.Net()
    assert net.interfaces == [] and net.counters() == []
    res = net.feed([(1.0, udp("10.1.0.2", "10.2.0.2", 1600, df=True))])
    assert res.per_packet[0].reason is not None and "MTU" in res.per_packet[0].reason


# --- the shipped kube-proxy node --------------------------------------------------------------


def test_kube_proxy_example(capfd: pytest.CaptureFixture[str]) -> None:
    """examples/kube.pcapng replayed on the node of examples/host-kube-proxy.json with the seed
    tools/kube_example.py made it with: the pod's DNS and HTTP reach endpoints of the
    services (DNATed, the service port 80 to the endpoint's 8080), the NodePort connection from
    outside is DNATed and masqueraded to the node's address, and the three connections to no
    endpoint or an unserved port are rejected by the rules kube-proxy writes for them. Each
    packet arrives on the interface the pcapng names. tests/live/test_host_kernel.py checks
    the same ruleset and conversations against the kernel."""
    host = EXAMPLES / "host-kube-proxy.json"
    cap = EXAMPLES / "kube.pcapng"
    assert main(["replay", str(cap), "--host", str(host), "--seed", "1"]) == 0
    captured = capfd.readouterr()
    assert captured.err.splitlines()[-1] == (
        "nfct: 20 packets (20 frames, 0 not IP), 3 entries, 0 invalid, 3 dropped"
    )
    entries = captured.out.splitlines()
    assert len(entries) == 3, entries
    (nodeport,) = [x for x in entries if "dport=30080" in x]
    (dns,) = [x for x in entries if " udp " in x]
    (http,) = [x for x in entries if "dport=80 " in x]
    assert " CLOSE src=198.51.100.7 dst=192.168.0.2 sport=51000 dport=30080 " in nodeport
    # DNATed to an endpoint of svc1 and masqueraded to the node's address on the way there.
    assert " sport=8080 " in nodeport and "[ASSURED]" in nodeport
    back = nodeport.split("src=")[2]
    assert back.split()[0] in ("10.180.0.11", "10.180.1.11")
    masq = "10.180.0.1" if back.startswith("10.180.0.") else "192.168.0.2"
    assert f"dst={masq} " in back, nodeport
    assert "dst=172.30.0.10 sport=40001 dport=53 src=10.180.0.13 " in dns
    assert " TIME_WAIT src=10.180.0.21 dst=172.30.0.41 sport=48000 dport=80 " in http
    assert "sport=8080 dport=48000 [ASSURED]" in http
    assert (
        main(["replay", str(cap), "--host", str(host), "--seed", "1", "--output", "packets"]) == 0
    )
    lines = capfd.readouterr().out.splitlines()
    assert [x.split(":")[0] for x in lines[-3:]] == [
        "18 dropped by ip kube-proxy reject-chain handle 45",
        "19 dropped by ip kube-proxy cluster-ips-check handle 44",
        "20 dropped by ip kube-proxy reject-chain handle 45",
    ]
    assert not any("invalid" in x or "dropped" in x for x in lines[:-3]), lines
    # From another interface than the one the pcapng names (all on eth0): the pod's packets
    # still pass (the loose reverse-path filter), the same three are rejected.
    assert main(["replay", str(cap), "--host", str(host), "--seed", "1", "--iif", "eth0"]) == 0
    assert capfd.readouterr().err.splitlines()[-1].endswith("3 entries, 0 invalid, 3 dropped")


def test_write_pcapng_names_interfaces(tmp_path: Path) -> None:
    """nfct.pcap.write_pcapng: records read back in order with their times, and each packet's
    interface name is the one a replay takes as its incoming interface."""
    from nfct.pcap import iter_records, write_pcapng

    h = router(sysctl={"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "1"})
    pkt = udp("198.51.100.9", "203.0.113.7")
    cap = tmp_path / "w.pcapng"
    n = write_pcapng(cap, [(1.5, 0, pkt), (2.25, 1, pkt)], ["eth0", "eth1"])
    assert n == 2
    assert list(iter_records(cap)) == [(1.5, pkt), (2.25, pkt)]
    lines = tmp_path / "packets.txt"
    nfct.Net(host=h).replay([cap], packets_path=lines)
    got = lines.read_text().splitlines()
    assert got[0].startswith("1 dropped ip_route_input: reverse path filter"), got
    assert got[1] == "2 new", got
    with pytest.raises(nfct.NfctValueError, match="interface 2 is not one of the 2 given"):
        write_pcapng(tmp_path / "x.pcapng", [(0.0, 2, pkt)], ["eth0", "eth1"])


# --- the shipped firewalld host ----------------------------------------------------------------


def test_firewalld_example(capfd: pytest.CaptureFixture[str]) -> None:
    """examples/host-firewalld.json (tools/host_example.py took it with `nfct host-snapshot`
    from examples/host-firewalld.nft): mixed.pcap replayed on the server it describes. The
    client's DNS, HTTP and pings are accepted; the query to UDP 10053 is rejected by the zone;
    the server's own answers coming back from the wire are dropped (forwarding is off, and
    firewalld's IPv6 rpfilter drops an address of the host as a source).
    tests/live/test_host_kernel.py checks the same against the kernel."""
    host = EXAMPLES / "host-firewalld.json"
    doc = json.loads(host.read_text())
    tables = {(t["family"], t["name"]) for o in doc["ruleset"]["nftables"] if (t := o.get("table"))}
    assert tables == {("inet", "firewalld")}
    args = ["replay", str(EXAMPLES / "mixed.pcap"), "--host", str(host), "--output", "packets"]
    assert main(args) == 0
    captured = capfd.readouterr()
    lines = captured.out.splitlines()
    assert captured.err.splitlines()[-1] == (
        "nfct: 64 packets (66 frames, 2 not IP), 9 entries, 0 invalid, 33 dropped"
    )
    rejected = [x for x in lines if "filter_IN_public" in x]
    assert len(rejected) == 1 and "nft: reject" in rejected[0], rejected
    assert sum("dropped by inet firewalld filter_PREROUTING" in x for x in lines) == 11
    assert sum("forwarding is off" in x for x in lines) == 20
