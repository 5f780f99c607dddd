"""The control plane against conntrack-tools on the live kernel: the same traffic in both,
then the same `conntrack -D` / `-U` / `-F` with filters; the entries each deletes or updates,
and the table left, must agree (timeouts aside: the kernel's clock runs while the commands
run)."""

from __future__ import annotations

import re
from typing import Any

import pytest

import nfct
import packets as P
from helpers import C6, S6, C, S, X, count_run, feed, timed
from nfct import kernel

pytestmark = pytest.mark.kernel


def _traffic() -> list[tuple[bytes, float]]:
    return timed(
        P.udp(C, S, 4000, 53, b"q1"),
        P.udp(S, C, 53, 4000, b"a1"),
        P.udp(C, S, 4001, 53, b"q2"),
        P.udp(X, S, 4002, 123, b"ntp"),
        P.udp(C, X, 4003, 5353, b"mdns"),
        P.tcp(C, S, 40000, 80, flags="S", seq=1000),
        P.tcp(S, C, 80, 40000, flags="SA", seq=5000, ack=1001),
        P.tcp(C, S, 40000, 80, flags="A", seq=1001, ack=5001),
        P.tcp(C, S, 40001, 443, flags="S", seq=7),
        P.icmp_echo(C, S, 9),
        P.udp(C6, S6, 5000, 53, b"q6"),
        P.udp(S6, C6, 53, 5000, b"a6"),
    )


def _conntrack(lab: kernel.KernelLab, *argv: str) -> str:
    """Runs conntrack in the lab; what it printed on both streams (the count goes to stderr)."""
    return lab.exec("sh", "-c", " ".join(["conntrack", *argv, "2>&1"]), check=False)


def _count(out: str) -> int:
    m = re.search(r"(\d+) flow entries have been (?:deleted|updated)", out)
    assert m, out
    return int(m.group(1))


_TIMEOUT = re.compile(r"^(\S+\s+\d+\s+\S+\s+\d+\s+)\d+ ")


def _tuples(lines: list[str]) -> list[str]:
    """The lines without their timeouts (and use counts), sorted."""
    return sorted(
        _TIMEOUT.sub(r"\1", ln).replace(" use=1", "").replace(" use=2", "") for ln in lines
    )


# (conntrack arguments, the same as nfct keyword arguments)
CASES: list[tuple[list[str], dict[str, Any]]] = [
    (["-D", "-p", "udp", "--dport", "53"], {"proto": "udp", "dport": 53}),
    (["-D", "-s", C], {"src": C}),
    (["-D", "-f", "ipv6"], {"family": "ipv6"}),
    (["-D", "-p", "tcp", "--state", "ESTABLISHED"], {"proto": "tcp", "state": "ESTABLISHED"}),
    (["-D", "-u", "SEEN_REPLY"], {"status": "SEEN_REPLY"}),
    (["-D", "-r", S], {"reply_src": S}),
    (
        ["-D", "-q", C, "-p", "udp", "--reply-port-src", "53"],
        {"reply_dst": C, "proto": "udp", "reply_sport": 53},
    ),
    (["-D", "-s", "10.1.0.0/16"], {"src": "10.1.0.0/16"}),
    (["-F"], {}),
]


@pytest.mark.parametrize(("argv", "kw"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_filters_agree_with_conntrack_tools(argv: list[str], kw: dict[str, Any]) -> None:
    pkts = _traffic()
    with kernel.KernelLab() as lab:
        for pkt, _ in pkts:
            lab.send(pkt)
        lab.flush()
        lab.summary()
        before = lab.lines()
        out = _conntrack(lab, *argv)
        after = lab.lines()
    # conntrack -F says nothing of how many it flushed.
    kernel_n = len(before) - len(after) if argv == ["-F"] else _count(out)
    net = nfct.Net()
    feed(net, pkts)
    assert _tuples(net.dump().splitlines()) == _tuples(before), "the same table before"
    n = net.flush() if argv == ["-F"] else net.delete(**kw)
    assert n == kernel_n, out
    assert _tuples(net.dump().splitlines()) == _tuples(after)
    count_run(packets=len(pkts), entries=len(before))


def test_update_mark_then_delete_by_mark() -> None:
    pkts = _traffic()
    with kernel.KernelLab() as lab:
        for pkt, _ in pkts:
            lab.send(pkt)
        lab.flush()
        lab.summary()
        # (conntrack-tools 1.4.7 refuses `-U -p udp -m 7` on 6.18: "Operation not supported";
        # with an address it updates.)
        out_u = _conntrack(lab, "-U", "-s", C, "-m", "7")
        again = _conntrack(lab, "-U", "-s", C, "-m", "7")
        marked = lab.lines()
        out_d = _conntrack(lab, "-D", "-m", "7")
        after = lab.lines()
    net = nfct.Net()
    feed(net, pkts)
    assert net.update(set_mark=7, src=C) == _count(out_u)
    # Entries that already have the mark are not updated again.
    assert net.update(set_mark=7, src=C) == _count(again)
    assert _tuples(net.dump().splitlines()) == _tuples(marked)
    assert net.delete(mark=7) == _count(out_d)
    assert _tuples(net.dump().splitlines()) == _tuples(after)
    count_run(packets=len(pkts), entries=len(marked))
