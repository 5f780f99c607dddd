"""API smoke test of an installed nfct, run by tests/test_wheel.py inside each fresh virtual
environment (of every CPython on the machine) that holds nothing but the installed wheel or
sdist:

    VENV/bin/python -I tests/wheel_smoke.py EXAMPLES_DIR

`-I` keeps the repository and the user's site-packages off sys.path, so only the installed
package can be imported. Stand-alone on purpose (no pytest, no test helpers, no numpy): it
prints one line per check and `smoke ok` at the end; a failed check raises (exit status 1).
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

import nfct


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp4(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int = 0) -> bytes:
    """An IPv4 TCP segment without payload, both checksums right."""
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    pseudo = s + d + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, s, d)
    return ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + tcp


def check(what: str, ok: bool, detail: object = "") -> None:
    if not ok:
        raise AssertionError(f"{what}: {detail}")
    print(f"ok: {what}")


def main(examples: Path) -> None:
    check(
        "nfct is imported from this environment",
        Path(nfct.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()),
        f"{nfct.__file__} is not under {sys.prefix}",
    )

    # A SYN through the kernel-named functions: PRE_ROUTING, then confirmation at LOCAL_IN.
    net = nfct.Net(seed=1, local_addrs=["192.0.2.2"])
    skb = nfct.Skb(tcp4("192.0.2.1", "192.0.2.2", 40000, 80, 0x02, seq=1000), tstamp=1.0)
    verdict = nfct.ipv4_conntrack_in(net, skb)
    check("ipv4_conntrack_in accepts the SYN", verdict == nfct.NF_ACCEPT, verdict)
    check("the SYN is IP_CT_NEW", skb.ctinfo == nfct.IP_CT_NEW, skb.ctinfo)
    check("its entry is unconfirmed", (net.count, len(net)) == (1, 0), (net.count, len(net)))
    check("ipv4_confirm accepts it", nfct.ipv4_confirm(net, skb) == nfct.NF_ACCEPT)
    (conn,) = list(net)
    check("the entry is listed in SYN_SENT", conn.state == "SYN_SENT", conn.line())
    check(
        "its reply tuple is the inverted one",
        (conn.reply.src, conn.reply.sport, conn.reply.dport) == ("192.0.2.2", 80, 40000),
        conn.reply,
    )

    # The whole path through the host: the SYN/ACK goes out from the local address.
    res = nfct.ip_local_out(
        net, nfct.Skb(tcp4("192.0.2.2", "192.0.2.1", 80, 40000, 0x12, 5000, 1001), tstamp=1.1)
    )
    check("ip_local_out sends the SYN/ACK", res.verdict == nfct.NF_ACCEPT, res.reason)
    check("the entry is now SYN_RECV", next(iter(net)).state == "SYN_RECV", net.dump())

    replayed = nfct.Net(seed=1)
    summary = replayed.replay([examples / "dns.pcap"])
    check("Net.replay(dns.pcap) leaves 5 entries", len(replayed) == 5, (summary, replayed.dump()))

    try:
        nfct.Net().replay([examples / "does-not-exist.pcap"])
    except nfct.CaptureError as e:
        check("a missing capture is a CaptureError (NfctError, OSError)", isinstance(e, OSError))
    else:
        raise AssertionError("replaying a missing capture did not raise")

    check("numpy was not needed", "numpy" not in sys.modules, sorted(sys.modules))
    print("smoke ok")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
