"""NAT (issue #13) on nfct alone, no kernel: a two-legged router's host file (tests/nathost.py,
whose rules the kernel suite checks against nft's own listing) with snat, dnat, masquerade
and redirect rules; packets through ``ip_rcv``/``ipv6_rcv``. Checked: every rewritten packet's
checksums (IPv4 header, TCP, UDP, ICMP, ICMPv6, and an ICMP error's quoted header), the
translated reply tuples the table lists, the status bits, the counters, and the refusals of
what nfct does not model. tests/live/test_nat_kernel.py compares the same behaviour with the
live kernel. Packets from the clients arrive on ``lan``, the others on ``wan``."""

from __future__ import annotations

import copy
import ipaddress
import struct
from typing import Any

import pytest

import nathost as H
import nfct
import packets as P

C, C2 = "192.168.1.10", "192.168.1.11"
C6 = "fd00:1::10"
S, S2 = "198.51.100.7", "198.51.100.8"
S6 = "2001:db8:1::10"
T0 = 1000.0


def router(family: str, **chains: list[str]) -> nfct.Net:
    """A Net of the router with the named checked rules in its nat chains (``pre``/``post``)."""
    rules = {name: [H.CHECKED_RULES[r][2] for r in names] for name, names in chains.items()}
    return nfct.Net(host=H.router_host(H.ruleset_json(family, rules)), seed=5)


def send(net: nfct.Net, data: bytes, t: float = T0) -> tuple[nfct.HookResult, bytes, nfct.Skb]:
    """``data`` through ``ip_rcv``/``ipv6_rcv``, arriving on ``lan`` from a client's address,
    else on ``wan``: the result, the bytes as they left and the skb."""
    skb = nfct.Skb(data, t)
    src = ipaddress.ip_address(addrs(data)[0])
    lan = src in ipaddress.ip_network("192.168.1.0/24") or src in ipaddress.ip_network(
        "fd00:1::/64"
    )
    res = (nfct.ipv6_rcv if data[0] >> 4 == 6 else nfct.ip_rcv)(net, skb, "lan" if lan else "wan")
    return res, skb.data, skb


def fold(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def bad_checksums(data: bytes) -> list[str]:
    """The checksums of an IP packet that do not hold (empty: all do)."""
    bad = []
    v6 = data[0] >> 4 == 6
    if v6:
        proto, l4 = data[6], 40
        src, dst = data[8:24], data[24:40]
        seg = data[40 : 40 + struct.unpack("!H", data[4:6])[0]]
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), proto)
    else:
        ihl = (data[0] & 15) * 4
        if fold(data[:ihl]) != 0xFFFF:
            bad.append("IPv4 header")
        proto, l4 = data[9], ihl
        seg = data[ihl : struct.unpack("!H", data[2:4])[0]]
        pseudo = data[12:20] + struct.pack("!BBH", 0, proto, len(seg))
    del l4
    if proto in (6, 17, 58) and not (proto == 17 and not v6 and seg[6:8] == b"\0\0"):
        if fold(pseudo + seg) != 0xFFFF:
            bad.append(f"protocol {proto}")
    if proto == 1:
        if fold(seg) != 0xFFFF:
            bad.append("ICMP")
        if seg[0] in (3, 11, 12) and len(seg) >= 28:
            ihl = (seg[8] & 15) * 4
            if fold(seg[8 : 8 + ihl]) != 0xFFFF:
                bad.append("quoted IPv4 header")
    return bad


def addrs(data: bytes) -> tuple[str, str]:
    if data[0] >> 4 == 6:
        return str(ipaddress.IPv6Address(data[8:24])), str(ipaddress.IPv6Address(data[24:40]))
    return str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20]))


def ports(data: bytes) -> tuple[int, int]:
    l4 = 40 if data[0] >> 4 == 6 else (data[0] & 15) * 4
    sp, dp = struct.unpack("!HH", data[l4 : l4 + 4])
    return sp, dp


def conn_of(net: nfct.Net, t: nfct.Tuple) -> nfct.Conn:
    conn = net.get(t)
    assert conn is not None, (t, net.dump())
    return conn


NAT_BITS = nfct.IPS_SRC_NAT | nfct.IPS_DST_NAT | nfct.IPS_SRC_NAT_DONE | nfct.IPS_DST_NAT_DONE


# --- source NAT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("proto", ["udp", "tcp", "icmp"])
def test_snat_rewrites_the_source_and_the_reply_back(proto: str) -> None:
    net = router("ip", post=["snat"])
    if proto == "udp":
        first, tup = P.udp(C, S, 1000, 53, b"q"), nfct.Tuple(C, S, nfct.IPPROTO_UDP, 1000, 53)
        back = P.udp(S, H.WAN4, 53, 1000, b"a")
    elif proto == "tcp":
        first = P.tcp(C, S, 1000, 80, flags="S", seq=1)
        tup = nfct.Tuple(C, S, nfct.IPPROTO_TCP, 1000, 80)
        back = P.tcp(S, H.WAN4, 80, 1000, flags="SA", seq=50, ack=2)
    else:
        first, tup = (
            P.icmp_echo(C, S, 77),
            nfct.Tuple(C, S, nfct.IPPROTO_ICMP, type=8, code=0, id=77),
        )
        back = P.icmp_echo(S, H.WAN4, 77, reply=True)
    res, out, _ = send(net, first)
    assert (res.path, res.verdict) == ("forward", nfct.NF_ACCEPT)
    assert addrs(out) == (H.WAN4, S)
    assert out[20:] == first[20:] or proto != "icmp" or out[24:] == first[24:]
    assert not bad_checksums(out)
    conn = conn_of(net, tup)
    assert (conn.reply.src, conn.reply.dst) == (S, H.WAN4)
    assert (
        conn.status & NAT_BITS == nfct.IPS_SRC_NAT | nfct.IPS_SRC_NAT_DONE | nfct.IPS_DST_NAT_DONE
    )
    res, out, skb = send(net, back, T0 + 0.1)
    assert (res.path, res.verdict) == ("forward", nfct.NF_ACCEPT)
    assert addrs(out) == (S, C)
    assert not bad_checksums(out)
    assert skb.ctstate == "established"
    line = net.dump().splitlines()[0]
    assert f"src={S} dst={H.WAN4}" in line


def test_snat_keeps_a_free_port_and_searches_a_taken_one() -> None:
    net = router("ip", post=["snat"])
    _, out1, _ = send(net, P.udp(C, S, 1000, 53, b"q"))
    _, out2, _ = send(net, P.udp(C2, S, 1000, 53, b"q"))
    assert ports(out1) == (1000, 53)
    p2 = ports(out2)[0]
    assert p2 != 1000 and 600 <= p2 <= 1023, "a port from 1000's class, 600-1023"
    assert not bad_checksums(out2)
    assert net.stats["found"] == 1
    replies = {c.reply.dport for c in net}
    assert replies == {1000, p2}


def test_snat_one_port_range_exhausted_drops_at_confirm() -> None:
    net = router("ip", post=["snat ports"])
    res, out, _ = send(net, P.udp(C, S, 1000, 53, b"q"))
    assert ports(out)[0] == 40000
    res, _, _ = send(net, P.udp(C2, S, 1000, 53, b"q"))
    assert res.verdict == nfct.NF_DROP
    assert res.reason == "nf_conntrack: clash not resolvable"
    assert (net.stats["insert_failed"], net.stats["drop"], net.stats["found"]) == (1, 1, 1)
    assert len(net) == 1


def test_snat_range_persistent_maps_a_client_to_one_address() -> None:
    """The address comes from the kernel's jhash2 of the addresses (no seed): the same in every
    Net; with `persistent` the server does not enter the hash."""
    chosen = []
    for seed in (1, 2):
        net = nfct.Net(
            host=H.router_host(
                H.ruleset_json("ip", {"post": [H.CHECKED_RULES["snat range persistent"][2]]})
            ),
            seed=seed,
        )
        srcs = set()
        for i, server in enumerate([S, S2, "198.51.100.99", "198.51.100.200"]):
            _, out, _ = send(net, P.udp(C, server, 2000 + i, 53, b"q"))
            assert not bad_checksums(out)
            srcs.add(addrs(out)[0])
        assert len(srcs) == 1
        (src,) = srcs
        assert ipaddress.ip_address("203.0.113.10") <= ipaddress.ip_address(src)
        assert ipaddress.ip_address(src) <= ipaddress.ip_address("203.0.113.20")
        chosen.append(src)
    assert chosen[0] == chosen[1]


def test_random_flags_search_even_a_free_port() -> None:
    net = router("ip", post=["snat port range random"])
    got = []
    for i in range(20):
        _, out, _ = send(net, P.tcp(f"192.168.1.{20 + i}", S, 1500 + i, 80, flags="S", seq=1))
        assert not bad_checksums(out)
        got.append(ports(out)[0])
    assert all(1000 <= p <= 2000 for p in got)
    assert len(set(got)) == 20
    # Free ports in the range, kept without the flags: with them, drawn at random.
    assert sum(p == 1500 + i for i, p in enumerate(got)) <= 1, got


def test_masquerade_takes_the_outgoing_interfaces_address() -> None:
    net = router("ip", post=["masquerade"])
    _, out, _ = send(net, P.tcp(C, S, 1000, 80, flags="S", seq=1))
    assert addrs(out)[0] == H.WAN4
    assert not bad_checksums(out)
    net6 = router("ip6", post=["masquerade6"])
    res, out6, _ = send(net6, P.udp(C6, S6, 1000, 53, b"q"))
    assert res.verdict == nfct.NF_ACCEPT
    assert addrs(out6) == (H.WAN6, S6)
    assert not bad_checksums(out6)


def test_snat_ipv6_udp_and_icmpv6() -> None:
    net = router("ip6", post=["snat6"])
    _, out, _ = send(net, P.udp(C6, S6, 1000, 53, b"q6"))
    assert addrs(out)[0] == H.WAN6 and not bad_checksums(out)
    _, out, _ = send(net, P.icmp6_echo(C6, S6, 9))
    assert addrs(out)[0] == H.WAN6 and not bad_checksums(out)
    _, back, skb = send(net, P.icmp6_echo(S6, H.WAN6, 9, reply=True), T0 + 0.1)
    assert addrs(back) == (S6, C6) and not bad_checksums(back)
    assert skb.ctstate == "established"


# --- destination NAT, redirect ------------------------------------------------------------------


def test_dnat_to_address_and_port() -> None:
    net = router("ip", pre=["dnat port"])
    _, out, _ = send(net, P.tcp(C, "198.51.100.10", 1000, 80, flags="S", seq=1))
    assert (addrs(out), ports(out)) == ((C, "192.168.1.20"), (1000, 8080))
    assert not bad_checksums(out)
    conn = conn_of(net, nfct.Tuple(C, "198.51.100.10", nfct.IPPROTO_TCP, 1000, 80))
    assert (conn.reply.src, conn.reply.sport) == ("192.168.1.20", 8080)
    assert (
        conn.status & NAT_BITS == nfct.IPS_DST_NAT | nfct.IPS_DST_NAT_DONE | nfct.IPS_SRC_NAT_DONE
    )
    _, back, _ = send(net, P.tcp("192.168.1.20", C, 8080, 1000, flags="SA", seq=9, ack=2), T0 + 0.1)
    assert (addrs(back), ports(back)) == (("198.51.100.10", C), (80, 1000))
    assert not bad_checksums(back)


def test_dnat_prefix_is_a_range() -> None:
    net = router("ip", pre=["dnat prefix"])
    seen = set()
    for i in range(30):
        _, out, _ = send(net, P.udp(f"10.9.0.{i + 1}", "198.51.100.11", 5000, 53, b"q"))
        dst = ipaddress.ip_address(addrs(out)[1])
        assert ipaddress.ip_address("192.168.1.16") <= dst <= ipaddress.ip_address("192.168.1.31")
        seen.add(dst)
    assert len(seen) > 4


def test_dnat_ipv6() -> None:
    net = router("ip6", pre=["dnat6"])
    _, out, _ = send(net, P.udp(C6, "2001:db8:1::10", 1000, 53, b"q"))
    assert (addrs(out)[1], ports(out)[1]) == ("fd00:1::20", 5353)
    assert not bad_checksums(out)


def test_redirect_delivers_to_the_incoming_interfaces_address() -> None:
    net = router("ip", pre=["redirect"])
    res, out, skb = send(net, P.udp(S, "198.51.100.99", 1000, 53, b"q"))
    assert res.path == "local"
    assert (addrs(out)[1], ports(out)[1]) == (H.WAN4, 5353)
    _, out, _ = send(net, P.udp(C, "198.51.100.99", 1000, 53, b"q"))
    assert (addrs(out)[1], ports(out)[1]) == (H.LAN4, 5353)
    assert not bad_checksums(out)
    assert skb.ctstate == "new"


# --- ICMP errors --------------------------------------------------------------------------------


def test_icmp_errors_about_translated_flows_are_translated_back() -> None:
    net = router("ip", pre=["dnat port"], post=["snat"])
    send(net, P.udp(C, S, 1000, 53, b"q"))
    seen = P.udp(H.WAN4, S, 1000, 53, b"q", ttl=63)
    res, out, skb = send(net, P.icmp_error(S, H.WAN4, 3, 3, seen), T0 + 0.1)
    assert res.path == "forward" and skb.ctstate == "related"
    assert addrs(out) == (S, C)
    inner = out[28:]
    assert addrs(inner) == (C, S) and ports(inner) == (1000, 53)
    assert not bad_checksums(out)
    # About a DNATed connection (to a LAN server, so not SNATed on its way out of lan): the
    # quoted destination becomes the one the client used, and so does the error's source.
    send(net, P.tcp(C, "198.51.100.10", 2000, 80, flags="S", seq=1), T0 + 0.2)
    seen = P.tcp(C, "192.168.1.20", 2000, 8080, flags="S", seq=1, ttl=63)
    _, out, skb = send(net, P.icmp_error("192.168.1.20", C, 3, 3, seen), T0 + 0.3)
    assert skb.ctstate == "related"
    assert addrs(out) == ("198.51.100.10", C)
    assert (addrs(out[28:]), ports(out[28:])) == ((C, "198.51.100.10"), (2000, 80))
    assert not bad_checksums(out)


def test_icmpv6_error_translated_back() -> None:
    net = router("ip6", post=["snat6"])
    send(net, P.udp(C6, S6, 1000, 53, b"q6"))
    seen = P.udp(H.WAN6, S6, 1000, 53, b"q6", ttl=63)
    _, out, skb = send(net, P.icmp6_error(S6, H.WAN6, 1, 4, seen), T0 + 0.1)
    assert skb.ctstate == "related"
    assert addrs(out) == (S6, C6)
    assert addrs(out[48:]) == (C6, S6)
    assert not bad_checksums(out)


# --- what nfct refuses --------------------------------------------------------------------------


def _host_with(mutate: Any) -> dict[str, Any]:
    rs = copy.deepcopy(H.ruleset_json("ip", {"post": [H.CHECKED_RULES["snat"][2]]}))
    mutate(rs["nftables"])
    return H.router_host(rs)


def _refused(host: dict[str, Any]) -> str:
    with pytest.raises(nfct.NfctValueError) as e:
        nfct.Net(host=host)
    return str(e.value)


def test_a_nat_chain_at_forward_is_refused() -> None:
    def forward(objs: list[dict[str, Any]]) -> None:
        objs[1]["chain"]["hook"] = "forward"

    assert "nat chain at forward" in _refused(_host_with(forward))


def test_netmap_and_unknown_flags_are_refused() -> None:
    def netmap(objs: list[dict[str, Any]]) -> None:
        objs[2]["rule"]["expr"][-1] = {
            "snat": {
                "family": "ip",
                "addr": {"prefix": {"addr": "203.0.113.0", "len": 24}},
                "flags": "netmap",
                "type_flags": "prefix",
            }
        }

    def unknown(objs: list[dict[str, Any]]) -> None:
        objs[2]["rule"]["expr"][-1] = {"snat": {"addr": H.WAN4, "flags": "bogus"}}

    message = _refused(_host_with(netmap))
    assert "netmap" in message and "nat post handle 3" in message, message
    message = _refused(_host_with(unknown))
    assert "flag bogus" in message, message
