#!/usr/bin/env python3
"""Make the example host files: what `nfct host-snapshot` prints on the examples' hosts.

Usage:  sudo python3 tools/host_example.py [firewalld|kube-proxy] [OUTPUT]
        (default: firewalld; OUTPUT defaults to examples/host-NAME.json)

Creates a network namespace holding the host, loads its ruleset (`nft -f
examples/host-NAME.nft`) and runs `python -m nfct host-snapshot -o OUTPUT` inside it, so the
file is exactly what the tool prints there. Each host's eth0 is one end of a veth pair whose
other end lives in a second namespace, with a fixed MAC address, so that its IPv6 link-local
address is always the same. The namespaces are removed afterwards, also on failure. Needs
root, ip and nft; nfct importable by this interpreter. Only the namespaces' own settings are
touched.

* firewalld: the server of the examples' captures (examples/README.md: 192.0.2.0/24 and
  2001:db8::/64) running firewalld 1.3: lo and eth0 with 192.0.2.2/24 and 2001:db8::2/64,
  default routes through 192.0.2.254 and 2001:db8::fe, forwarding off (a server) and the loose
  reverse-path filter Debian's systemd sets (rp_filter=2).
* kube-proxy: a Kubernetes node running kube-proxy in its nftables mode: eth0 192.168.0.2/24
  on the node network (default route via 192.168.0.1; the other node's pods 10.180.1.0/24 via
  192.168.0.3), cni0 10.180.0.1/24 for this node's pods (one end of a second veth pair
  standing in for the pods' bridge), IPv4 forwarding on, rp_filter=2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NS = f"nfct-hostex-{os.getpid()}"
PEER_NS = f"{NS}-peer"

COMMON = [
    "ip link set lo up",
    "ip link set eth0 address 52:54:00:12:34:56",
    "ip link set eth0 addrgenmode eui64",
    "sysctl -q -w net.ipv6.conf.eth0.accept_dad=0",
    "sysctl -q -w net.ipv6.conf.eth0.accept_ra=0",
    "sysctl -q -w net.ipv4.conf.all.rp_filter=2",
    "sysctl -q -w net.ipv4.conf.default.rp_filter=2",
]

SETUP = {
    "firewalld": [
        *COMMON,
        "sysctl -q -w net.ipv4.ip_forward=0",
        "sysctl -q -w net.ipv6.conf.all.forwarding=0",
        "ip link set eth0 up",
        "ip addr add 192.0.2.2/24 dev eth0",
        "ip -6 addr add 2001:db8::2/64 dev eth0 nodad",
        "ip route add default via 192.0.2.254 dev eth0",
        "ip -6 route add default via 2001:db8::fe dev eth0",
    ],
    "kube-proxy": [
        *COMMON,
        "sysctl -q -w net.ipv4.ip_forward=1",
        "ip link set eth0 up",
        "ip addr add 192.168.0.2/24 dev eth0",
        "ip route add default via 192.168.0.1 dev eth0",
        f"ip link add cni0 address 52:54:00:ab:cd:ef type veth peer name pods0 netns {PEER_NS}",
        f"ip -n {PEER_NS} link set pods0 up",
        "ip link set cni0 addrgenmode none",
        "ip link set cni0 up",
        "ip addr add 10.180.0.1/24 dev cni0",
        "ip route add 10.180.1.0/24 via 192.168.0.3 dev eth0",
    ],
}


def run(argv: list[str], **kw: object) -> None:
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "firewalld"
    if name not in SETUP:
        print(f"host_example.py: no example host {name!r} (firewalld, kube-proxy)", file=sys.stderr)
        return 2
    out = Path(argv[2]) if len(argv) > 2 else REPO / "examples" / f"host-{name}.json"
    ruleset = REPO / "examples" / f"host-{name}.nft"
    if os.geteuid() != 0:
        print("host_example.py: needs root (it creates a network namespace)", file=sys.stderr)
        return 2
    run(["ip", "netns", "add", NS])
    try:
        run(["ip", "netns", "add", PEER_NS])
        run(
            [
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                NS,
                "type",
                "veth",
                "peer",
                "name",
                "peer0",
                "netns",
                PEER_NS,
            ]
        )
        run(["ip", "-n", PEER_NS, "link", "set", "peer0", "up"])
        for cmd in SETUP[name]:
            run(["ip", "netns", "exec", NS, *cmd.split()])
        run(["ip", "netns", "exec", NS, "nft", "-f", str(ruleset)])
        run(
            [
                "ip",
                "netns",
                "exec",
                NS,
                sys.executable,
                "-m",
                "nfct",
                "host-snapshot",
                "-o",
                str(out),
            ]
        )
    finally:
        for ns in (NS, PEER_NS):
            subprocess.run(["ip", "netns", "del", ns], check=False, stderr=subprocess.DEVNULL)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
