#!/usr/bin/env python3
"""Make examples/host-firewalld.json: the host file `nfct host-snapshot` prints on a server
running firewalld 1.3 (examples/host-firewalld.nft).

Usage:  sudo python3 tools/host_example.py [OUTPUT]   (default: examples/host-firewalld.json)

Creates a network namespace holding the server as the examples' captures know it
(examples/README.md: the server of 192.0.2.0/24 and 2001:db8::/64): lo and one interface eth0
(one end of a veth pair whose other end lives in a second namespace, with a fixed MAC address,
so that its IPv6 link-local address is always the same)
with 192.0.2.2/24 and 2001:db8::2/64, default routes through 192.0.2.254 and 2001:db8::fe,
forwarding off (a server) and the loose reverse-path filter Debian's systemd sets
(rp_filter=2); loads firewalld's ruleset (`nft -f examples/host-firewalld.nft`) and runs
`python -m nfct host-snapshot -o OUTPUT` inside it, so the file is exactly what the tool
prints there. The namespace is removed afterwards, also on failure. Needs root, ip and nft;
nfct importable by this interpreter. Only the namespace's own settings are touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RULESET = REPO / "examples" / "host-firewalld.nft"
NS = f"nfct-hostex-{os.getpid()}"
PEER_NS = f"{NS}-peer"

SETUP = [
    "ip link set lo up",
    "ip link set eth0 address 52:54:00:12:34:56",
    "ip link set eth0 addrgenmode eui64",
    "sysctl -q -w net.ipv6.conf.eth0.accept_dad=0",
    "sysctl -q -w net.ipv6.conf.eth0.accept_ra=0",
    "sysctl -q -w net.ipv4.ip_forward=0",
    "sysctl -q -w net.ipv6.conf.all.forwarding=0",
    "sysctl -q -w net.ipv4.conf.all.rp_filter=2",
    "sysctl -q -w net.ipv4.conf.default.rp_filter=2",
    "ip link set eth0 up",
    "ip addr add 192.0.2.2/24 dev eth0",
    "ip -6 addr add 2001:db8::2/64 dev eth0 nodad",
    "ip route add default via 192.0.2.254 dev eth0",
    "ip -6 route add default via 2001:db8::fe dev eth0",
]


def run(argv: list[str], **kw: object) -> None:
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else REPO / "examples" / "host-firewalld.json"
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
        for cmd in SETUP:
            run(["ip", "netns", "exec", NS, *cmd.split()])
        run(["ip", "netns", "exec", NS, "nft", "-f", str(RULESET)])
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
