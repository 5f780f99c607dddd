"""NAT from the command line and the Python surface, offline: ``nfct replay --write`` gives the
packets as they left the host (rewritten, checksums right), the listings show translated reply
tuples, the built-in NAT operations refuse hooks nft would refuse, and the shipped DNS-race
example runs and says what the kernel does. (The live-kernel comparison of the same NAT is
tests/live/test_nat_kernel.py.)"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nfct
from nfct.cli import main
from nfct.pcap import LINKTYPE_RAW, iter_frames, write_pcap

ROOT = Path(__file__).resolve().parent.parent
LAN_ADDR, WAN_ADDR = "192.168.1.1", "203.0.113.1"


def _sum16(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _ip(a: str) -> bytes:
    return bytes(map(int, a.split(".")))


def tcp_syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    """An IPv4 TCP SYN with both checksums right."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 0x50, 0x02, 64240, 0, 0)
    pseudo = _ip(src) + _ip(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", ~_sum16(pseudo + tcp) & 0xFFFF) + tcp[18:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, _ip(src), _ip(dst))
    hdr = hdr[:10] + struct.pack("!H", ~_sum16(hdr) & 0xFFFF) + hdr[12:]
    return hdr + tcp


def checksums_hold(p: bytes) -> bool:
    """The IPv4 header's and the TCP segment's checksums are right."""
    ihl = (p[0] & 0xF) * 4
    pseudo = p[12:20] + struct.pack("!BBH", 0, p[9], len(p) - ihl)
    return _sum16(p[:ihl]) == 0xFFFF and _sum16(pseudo + p[ihl:]) == 0xFFFF


def nat_host(rules: list[list[dict[str, Any]]], *, hook: str = "postrouting") -> dict[str, Any]:
    """A router (lan 192.168.1.1/24, wan 203.0.113.1/24, default via wan) with one nat chain
    of these rules."""
    chain = {
        "family": "ip",
        "table": "nat",
        "name": "c",
        "handle": 1,
        "type": "nat",
        "hook": hook,
        "prio": 100 if hook == "postrouting" else -100,
        "policy": "accept",
    }
    objs: list[dict[str, Any]] = [
        {"table": {"family": "ip", "name": "nat", "handle": 1}},
        {"chain": chain},
    ]
    for i, expr in enumerate(rules):
        objs.append(
            {"rule": {"family": "ip", "table": "nat", "chain": "c", "handle": 10 + i, "expr": expr}}
        )

    def dev(i: int, n: str, a: str) -> dict[str, Any]:
        return {
            "ifindex": i,
            "ifname": n,
            "flags": ["UP"],
            "mtu": 1500,
            "addr_info": [{"local": a, "prefixlen": 24}],
        }

    return {
        "addr": [
            {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "link_type": "loopback",
             "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
            dev(2, "lan", LAN_ADDR),
            dev(3, "wan", WAN_ADDR),
        ],
        "route": [
            {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
            {"type": "local", "dst": LAN_ADDR, "dev": "lan", "table": "local"},
            {"type": "local", "dst": WAN_ADDR, "dev": "wan", "table": "local"},
            {"dst": "192.168.1.0/24", "dev": "lan"},
            {"dst": "203.0.113.0/24", "dev": "wan"},
            {"dst": "default", "gateway": "203.0.113.254", "dev": "wan"},
        ],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "ruleset": {"nftables": objs},
    }  # fmt: skip


MASQUERADE = [
    {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wan"}},
    {"masquerade": None},
]


def test_write_gives_the_rewritten_packets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host = tmp_path / "host.json"
    host.write_text(json.dumps(nat_host([MASQUERADE])))
    cap = tmp_path / "in.pcap"
    syns = [
        tcp_syn("192.168.1.10", "198.51.100.7", 40000, 443),
        tcp_syn("192.168.1.11", "198.51.100.7", 40000, 443),  # the same source port: searched
        tcp_syn("192.168.1.12", "192.168.1.13", 5000, 22),  # stays on the LAN: not translated
    ]
    write_pcap(cap, [(1.0 + i / 10, p) for i, p in enumerate(syns)])
    out = tmp_path / "out.pcap"
    rc = main(
        [
            "replay",
            str(cap),
            "--host",
            str(host),
            "--iif",
            "lan",
            "--write",
            str(out),
            "-o",
            "conntrack",
        ]
    )
    listing = capsys.readouterr().out
    assert rc == 0
    frames = list(iter_frames(out))
    assert [f.linktype for f in frames] == [LINKTYPE_RAW] * 3
    assert [f.tstamp for f in frames] == pytest.approx([1.0, 1.1, 1.2])
    sent = [f.data for f in frames]
    assert all(checksums_hold(p) for p in sent)
    assert [p[12:16] for p in sent] == [_ip(WAN_ADDR), _ip(WAN_ADDR), _ip("192.168.1.12")]
    ports = [struct.unpack("!H", p[20:22])[0] for p in sent]
    assert ports[0] == 40000 and ports[1] != 40000 and ports[1] >= 1024
    # The table knows the connections by their translated reply tuples.
    for port in ports[:2]:
        assert f"dst={WAN_ADDR} sport=443 dport={port}" in listing
    assert "src=192.168.1.13 dst=192.168.1.12 sport=22 dport=5000" in listing


def test_write_refuses_standard_output_and_a_shared_file(tmp_path: Path) -> None:
    net = nfct.Net()
    cap = tmp_path / "in.pcap"
    write_pcap(cap, [(1.0, tcp_syn("10.0.0.1", "10.0.0.2", 1, 2))])
    with pytest.raises(nfct.NfctValueError, match="write_path is a pcap file"):
        net.replay([cap], write_path="-")
    with pytest.raises(nfct.NfctValueError, match="packets_path and write_path are the same file"):
        net.replay([cap], write_path=tmp_path / "x", packets_path=tmp_path / "x")


def test_builtin_nat_hooks_and_arguments() -> None:
    net = nfct.Net()
    masq = nfct.BuiltinHook.masquerade()
    assert masq.name == "masquerade"
    snat = nfct.BuiltinHook.snat(
        "192.0.2.1-192.0.2.9", (1024, 2048), flags=["fully-random", "persistent"]
    )
    assert snat.name == "snat to 192.0.2.1-192.0.2.9:1024-2048 fully-random,persistent"
    assert nfct.BuiltinHook.dnat("2001:db8::1", 80).name == "dnat to [2001:db8::1]:80"
    with pytest.raises(nfct.NfctValueError, match="runs at postrouting only"):
        nfct.nf_register_net_hook(
            net,
            nfct.NfHookOps(
                masq, nfct.NFPROTO_INET, nfct.NF_INET_PRE_ROUTING, nfct.NF_IP_PRI_NAT_DST
            ),
        )
    with pytest.raises(nfct.NfctValueError, match="prerouting or output only"):
        nfct.nf_register_net_hook(
            net,
            nfct.NfHookOps(
                nfct.BuiltinHook.redirect(8080), nfct.NFPROTO_IPV4, nfct.NF_INET_FORWARD, 0
            ),
        )
    for bad, match in [
        (lambda: nfct.BuiltinHook.snat("192.0.2.9-192.0.2.1"), "empty range"),
        (lambda: nfct.BuiltinHook.snat("192.0.2.1-2001:db8::1"), "mixes IPv4 and IPv6"),
        (lambda: nfct.BuiltinHook.snat("nowhere"), "not an IP address"),
        (lambda: nfct.BuiltinHook.dnat("192.0.2.1", (2048, 1024)), "not a range of ports"),
        (lambda: nfct.BuiltinHook.masquerade(flags=["sticky"]), "unknown NAT flag"),
    ]:
        with pytest.raises(nfct.NfctValueError, match=match):
            bad()
    skb = nfct.Skb(tcp_syn("10.0.0.1", "10.0.0.2", 1, 2))
    with pytest.raises(nfct.NfctValueError, match="NAT runs at"):
        nfct.nf_nat_ipv4_fn(net, skb, nfct.NF_INET_FORWARD)


def test_builtin_snat_through_ip_rcv() -> None:
    net = nfct.Net(host=nat_host([]))
    ops = nfct.NfHookOps(
        nfct.BuiltinHook.snat("203.0.113.1", (6000, 6000)),
        nfct.NFPROTO_IPV4,
        nfct.NF_INET_POST_ROUTING,
        nfct.NF_IP_PRI_NAT_SRC,
    )
    nfct.nf_register_net_hook(net, ops)
    first = nfct.Skb(tcp_syn("192.168.1.10", "198.51.100.7", 40000, 443), 1.0)
    assert nfct.ip_rcv(net, first, dev="lan").verdict == nfct.NF_ACCEPT
    assert struct.unpack("!H", first.data[20:22])[0] == 6000 and checksums_hold(first.data)
    # The one-port range is taken: the search gives up, the confirm clashes, the SYN is dropped.
    second = nfct.Skb(tcp_syn("192.168.1.11", "198.51.100.7", 40001, 443), 1.1)
    res = nfct.ip_rcv(net, second, dev="lan")
    assert (res.verdict, res.reason) == (nfct.NF_DROP, "nf_conntrack: clash not resolvable")
    assert (net.stats["insert_failed"], net.stats["drop"]) == (1, 1)
    nfct.nf_unregister_net_hook(net, ops)
    # Without a nat chain the NAT core is gone: nothing is translated any more.
    third = nfct.Skb(tcp_syn("192.168.1.12", "198.51.100.7", 40002, 443), 1.2)
    nfct.ip_rcv(net, third, dev="lan")
    assert third.data[12:16] == _ip("192.168.1.12")


def test_the_dns_race_example() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dns_race.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    out = proc.stdout
    assert out.count("counters moved: {'clash_resolve': 1}") == 3
    assert "confirm #2 (second packet): NF_DROP" in out
    assert "counters moved: {'insert_failed': 1, 'drop': 1}" in out
    assert out.count("reaches the client from 10.96.0.10") == 6
