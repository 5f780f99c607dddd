"""The DNS A/AAAA race behind a DNAT to random backends, reproduced packet by packet.

A client resolves a name: glibc sends the A and the AAAA query at the same time, from one
socket, to the cluster's DNS service address. The node DNATs the service to one of two
backends chosen at random per packet (kube-proxy's rule; here ``dnat ip to numgen random mod 2
map { 0 : POD1, 1 : POD2 }``). Neither query's conntrack entry is confirmed when the other
arrives, so each gets its own entry, with the same original tuple, and NAT may send them to
different backends. The second to reach ``ipv4_confirm`` clashes with the first.

Linux 6.18 resolves that clash (``nf_ct_resolve_clash``): with the same backend the two entries
are one connection and merge; with different backends the loser goes into the table by its
reply direction only, for one second (``nf_ct_resolve_clash_harder``), so its answer still finds
its way back. Both count ``clash_resolve``; no packet is dropped. Over TCP (or on kernels
before 5.6 for UDP) the loser is dropped and ``insert_failed`` and ``drop`` move: the
five-second timeout resolvers are known for.

Run it: ``python examples/dns_race.py``. It drives the kernel's hook functions itself (the
create/confirm split), so the interleaving is exact and the output reproducible.
"""

from __future__ import annotations

import struct
import sys

import nfct

CLIENT, SERVICE = "10.244.0.5", "10.96.0.10"
PODS = ("10.244.1.2", "10.244.2.2")


def host() -> dict[str, object]:
    """A Kubernetes-like node: pods on cni0, the service DNATed in a nat prerouting chain."""
    rule = {
        "family": "ip",
        "table": "nat",
        "chain": "pre",
        "handle": 4,
        "expr": [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": SERVICE,
                }
            },
            {
                "match": {
                    "op": "==",
                    "left": {"meta": {"key": "l4proto"}},
                    "right": {"set": ["udp", "tcp"]},
                }
            },
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "th", "field": "dport"}},
                    "right": 53,
                }
            },
            {
                "dnat": {
                    "family": "ip",
                    "addr": {
                        "map": {
                            "key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}},
                            "data": {"set": [[0, PODS[0]], [1, PODS[1]]]},
                        }
                    },
                }
            },
        ],
    }
    return {
        "addr": [
            {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"], "link_type": "loopback",
             "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
            {"ifindex": 2, "ifname": "cni0", "flags": ["UP"], "mtu": 1450,
             "addr_info": [{"local": "10.244.0.1", "prefixlen": 16}]},
        ],
        "sysctl": {"net.ipv4.ip_forward": "1"},
        "ruleset": {"nftables": [
            {"table": {"family": "ip", "name": "nat", "handle": 1}},
            {"chain": {"family": "ip", "table": "nat", "name": "pre", "handle": 1, "type": "nat",
                       "hook": "prerouting", "prio": -100, "policy": "accept"}},
            {"rule": rule},
        ]},
    }  # fmt: skip


def checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    a, b = (bytes(map(int, x.split("."))) for x in (src, dst))
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, a, b)
    h = h[:10] + struct.pack("!H", checksum(h)) + h[12:]
    pseudo = a + b + struct.pack("!BBH", 0, proto, len(l4))
    at = 6 if proto == 17 else 16
    l4 = l4[:at] + struct.pack("!H", checksum(pseudo + l4)) + l4[at + 2 :]
    return h + l4


def dns_query(qid: int, qtype: int, *, src: str, dst: str, sport: int, dport: int = 53) -> bytes:
    name = b"".join(bytes([len(p)]) + p for p in (b"api", b"example", b"com")) + b"\0"
    payload = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return ip4(src, dst, 17, udp)


def tcp_syn(seq: int) -> bytes:
    return ip4(
        CLIENT, SERVICE, 6, struct.pack("!HHIIBBHHH", 41000, 53, seq, 0, 0x50, 0x02, 64240, 0, 0)
    )


def dst_of(skb: nfct.Skb) -> str:
    return ".".join(map(str, skb.data[16:20]))


def race(first: bytes, second: bytes, *, seed: int, swap: bool = False) -> None:
    net = nfct.Net(host=host(), seed=seed)
    a, b = nfct.Skb(first, 1.0), nfct.Skb(second, 1.0)
    for skb in (a, b):  # both in flight: created, translated, neither confirmed
        nfct.ipv4_conntrack_in(net, skb)
        nfct.nf_nat_ipv4_fn(net, skb, nfct.NF_INET_PRE_ROUTING, dev="cni0")
    print(f"  first -> {dst_of(a)}, second -> {dst_of(b)}")
    before = net.stats
    order = (b, a) if swap else (a, b)
    for n, skb in enumerate(order, 1):
        v = nfct.ipv4_confirm(net, skb)
        which = "first" if skb is a else "second"
        print(f"  confirm #{n} ({which} packet): {nfct.Verdict(v).name}")
    moved = {k: net.stats[k] - before[k] for k in before if net.stats[k] != before[k]}
    print(f"  counters moved: {moved or 'none'}; entries listed: {len(net)}")
    for line in net.dump().splitlines():
        print(f"    {line}")
    if first[9] == 17:
        # Each pod answers; the client must see both answers come from the service address.
        for skb, qid in ((a, 0x1111), (b, 0x2222)):
            pod = dst_of(skb)
            ans = nfct.Skb(dns_query(qid, 1, src=pod, dst=CLIENT, sport=53, dport=41000), 1.01)
            res = nfct.ip_rcv(net, ans, dev="cni0")
            src = ".".join(map(str, ans.data[12:16]))
            print(f"  answer from {pod}: {res.verdict.name}, reaches the client from {src}")


def main() -> int:
    a = dns_query(0x1111, 1, src=CLIENT, dst=SERVICE, sport=41000)  # A
    aaaa = dns_query(0x2222, 28, src=CLIENT, dst=SERVICE, sport=41000)  # AAAA, same socket
    seeds = {}
    for seed in range(1, 200):  # one seed where numgen picks the same pod, one where it differs
        net = nfct.Net(host=host(), seed=seed)
        picks = []
        for pkt in (a, aaaa):
            skb = nfct.Skb(pkt, 1.0)
            nfct.ipv4_conntrack_in(net, skb)
            nfct.nf_nat_ipv4_fn(net, skb, nfct.NF_INET_PRE_ROUTING, dev="cni0")
            picks.append(dst_of(skb))
        seeds.setdefault(picks[0] == picks[1], seed)
        if len(seeds) == 2:
            break
    print("UDP, both queries to the same pod: the entries are one connection and merge")
    race(a, aaaa, seed=seeds[True])
    print("UDP, the queries to different pods: the loser goes in by its reply direction, 1 s")
    race(a, aaaa, seed=seeds[False])
    print("the same, confirmed in the other order: the other packet is the loser")
    race(a, aaaa, seed=seeds[False], swap=True)
    print("TCP (a SYN and its retransmission in flight together): clashes are not resolvable")
    race(tcp_syn(1000), tcp_syn(1000), seed=seeds[False])
    return 0


if __name__ == "__main__":
    sys.exit(main())
