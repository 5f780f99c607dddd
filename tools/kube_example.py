#!/usr/bin/env python3
"""Make examples/kube.pcapng: traffic as the Kubernetes node of examples/host-kube-proxy.json
sees it on its two interfaces, eth0 (the node network) and cni0 (its pods).

Usage:  python3 tools/kube_example.py [OUTPUT]   (default: examples/kube.pcapng)

The packets are built with nfct.packets; the capture is a pcapng whose records name the
interface each packet arrived on. What comes back from a service's endpoint depends on the
endpoint kube-proxy's ``numgen random`` chose and on the port masquerade's ``fully-random``
chose, so the capture is made conversation by conversation with nfct itself as the node
(``Net(host=..., seed=SEED)``): each reply comes from the endpoint, and to the address and
port, that the node's entry says. Replayed with ``nfct replay examples/kube.pcapng --host
examples/host-kube-proxy.json --seed 1`` the node makes the same choices (a real node's
capture holds the choices that node made; with another seed nfct chooses differently and the
replies of the capture no longer belong to its entries).

Conversations (times in seconds after the first packet):

* 0.0: a pod (10.180.0.21) asks the cluster DNS (172.30.0.10:53) for an A and an AAAA record
  from one socket; both answers come back from the endpoint chosen for the flow.
* 1.0: the pod opens an HTTP connection to ns1/svc1 (172.30.0.41:80): handshake, request,
  response, close, with the endpoint's port 8080 behind the service port.
* 2.0: a client outside (198.51.100.7) connects to the NodePort 192.168.0.2:30080: DNATed to
  an endpoint and masqueraded (kube-proxy marks it 0x4000) to the node's address on the way
  out; the handshake completes and the client resets the connection.
* 3.0: the pod connects to ns2/svc2 (172.30.0.44:80), which has no endpoints: rejected in the
  forward hook. 3.1: the pod tries port 443 of svc1's ClusterIP: rejected by
  ``cluster-ips-check``. 3.2: the outside client tries the NodePort 30044 of svc2: rejected
  in the input hook.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nfct
from nfct import packets as P
from nfct.pcap import write_pcapng

REPO = Path(__file__).resolve().parent.parent
HOST = REPO / "examples" / "host-kube-proxy.json"
SEED = 1
T0 = 1_764_000_000.0
IFACES = ["eth0", "cni0"]
POD, CLIENT = "10.180.0.21", "198.51.100.7"
DNS, SVC1, SVC2, NODE = "172.30.0.10", "172.30.0.41", "172.30.0.44", "192.168.0.2"


Record = tuple[float, int, bytes]


class Node:
    """nfct as the node, recording every packet it is given as the capture's record."""

    def __init__(self, net: nfct.Net) -> None:
        self.net = net
        self.records: list[Record] = []

    def arrive(self, t: float, dev: str, data: bytes) -> nfct.HookResult:
        self.records.append((T0 + t, IFACES.index(dev), data))
        return nfct.ip_rcv(self.net, nfct.Skb(data, tstamp=T0 + t), dev=dev)

    def reply_of(self, src: str, sport: int, proto: int) -> tuple[str, int, str, int]:
        """The reply direction (src, sport, dst, dport) of the entry of a flow from
        ``src:sport``."""
        for c in self.net:
            o = c.orig
            if o.src == src and o.sport == sport and o.protonum == proto:
                r = c.reply
                return r.src, r.sport, r.dst, r.dport
        raise SystemExit(f"kube_example.py: no entry for {src}:{sport}")


def dev_of(addr: str) -> str:
    """The interface a packet from ``addr`` arrives on: this node's pods are behind cni0."""
    return "cni0" if addr.startswith("10.180.0.") else "eth0"


def dns_query(qid: int, qtype: int) -> bytes:
    name = b"\x03www\x04nfct\x04test\x00"
    return (
        qid.to_bytes(2, "big")
        + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + name
        + (qtype.to_bytes(2, "big") + b"\x00\x01")
    )


def dns_answer(query: bytes) -> bytes:
    return query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x00" + query[8:]


def conversations(net: nfct.Net) -> list[Record]:
    """The capture's records, ``(tstamp, interface index in IFACES, IP packet)``, made with
    ``net`` (a Net of the node's host file) as the node."""
    node = Node(net)

    # DNS: A and AAAA from one socket, each answered by the chosen endpoint.
    sport = 40001
    for i, qtype in enumerate((1, 28)):
        q = dns_query(0x1000 + i, qtype)
        node.arrive(0.001 * i, "cni0", P.udp(POD, DNS, sport, 53, q))
    ep, ep_port, _, _ = node.reply_of(POD, sport, 17)
    for i, qtype in enumerate((1, 28)):
        a = dns_answer(dns_query(0x1000 + i, qtype))
        node.arrive(0.010 + 0.001 * i, dev_of(ep), P.udp(ep, POD, ep_port, sport, a))

    # HTTP to svc1 through its ClusterIP.
    sport, c, s = 48000, 1000, 5000
    node.arrive(1.000, "cni0", P.tcp(POD, SVC1, sport, 80, seq=c, flags="S"))
    ep, ep_port, _, _ = node.reply_of(POD, sport, 6)
    back = dev_of(ep)
    req = b"GET / HTTP/1.1\r\nHost: svc1\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    steps = [
        (1.001, back, P.tcp(ep, POD, ep_port, sport, seq=s, ack=c + 1, flags="SA")),
        (1.002, "cni0", P.tcp(POD, SVC1, sport, 80, seq=c + 1, ack=s + 1, flags="A")),
        (1.003, "cni0", P.tcp(POD, SVC1, sport, 80, seq=c + 1, ack=s + 1, flags="PA", payload=req)),
        (1.004, back, P.tcp(ep, POD, ep_port, sport, seq=s + 1, ack=c + 1 + len(req), flags="A")),
        (
            1.005,
            back,
            P.tcp(
                ep, POD, ep_port, sport, seq=s + 1, ack=c + 1 + len(req), flags="PA", payload=resp
            ),
        ),
        (
            1.006,
            "cni0",
            P.tcp(POD, SVC1, sport, 80, seq=c + 1 + len(req), ack=s + 1 + len(resp), flags="FA"),
        ),
        (
            1.007,
            back,
            P.tcp(ep, POD, ep_port, sport, seq=s + 1 + len(resp), ack=c + 2 + len(req), flags="FA"),
        ),
        (
            1.008,
            "cni0",
            P.tcp(POD, SVC1, sport, 80, seq=c + 2 + len(req), ack=s + 2 + len(resp), flags="A"),
        ),
    ]
    for t, dev, data in steps:
        node.arrive(t, dev, data)

    # The NodePort from outside: DNAT to an endpoint, masqueraded on the way out.
    sport = 51000
    node.arrive(2.000, "eth0", P.tcp(CLIENT, NODE, sport, 30080, seq=c, flags="S"))
    ep, ep_port, masq, masq_port = node.reply_of(CLIENT, sport, 6)
    back = dev_of(ep)
    node.arrive(2.001, back, P.tcp(ep, masq, ep_port, masq_port, seq=s, ack=c + 1, flags="SA"))
    node.arrive(2.002, "eth0", P.tcp(CLIENT, NODE, sport, 30080, seq=c + 1, ack=s + 1, flags="A"))
    node.arrive(2.003, "eth0", P.tcp(CLIENT, NODE, sport, 30080, seq=c + 1, flags="R"))

    # Rejected: a service without endpoints, a port the ClusterIP does not serve, a NodePort
    # without endpoints.
    node.arrive(3.000, "cni0", P.tcp(POD, SVC2, 48001, 80, seq=c, flags="S"))
    node.arrive(3.100, "cni0", P.tcp(POD, SVC1, 48002, 443, seq=c, flags="S"))
    node.arrive(3.200, "eth0", P.tcp(CLIENT, NODE, 51001, 30044, seq=c, flags="S"))

    return node.records


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else REPO / "examples" / "kube.pcapng"
    records = conversations(nfct.Net(host=str(HOST), seed=SEED))
    n = write_pcapng(out, records, IFACES)
    print(f"wrote {out}: {n} packets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
