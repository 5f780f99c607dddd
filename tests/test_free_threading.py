"""Python threads hammering one `Net`: several threads drive packets through it (`ip_rcv`,
`ipv6_rcv` and `conntrack_batch`, which release the GIL while they work, so the table really is
used from several threads at once, and with a free-threaded Python without any GIL) while
another lists it (`list(net)`, `net.dump()`), runs the garbage collector, resizes the bucket
array (`nf_conntrack_buckets`) and deletes entries (`Net.delete`, as `conntrack -D`).

Nothing may raise, nothing may hang (each thread must finish within its join timeout, and
pytest-timeout's thread method ends the whole run if the main thread itself hangs in native
code), and once the threads are done the table must be consistent: `net.count` equals the
number of entries listed, and no entry is listed twice.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

import nfct
import packets as P
from helpers import C6, S6, Seq, timed
from nfct import Net, Skb
from tcp_conv import Conv

FEEDERS = 3  # threads per way of feeding packets
ROUNDS = 200  # times each feeder sends its packets, at least
LAPS = 20  # rounds of the lister while the feeders run, at least
DEADLINE = 30.0  # seconds the feeders keep going for the lister's LAPS, at most
JOIN_TIMEOUT = 60.0  # seconds; the whole test takes about one


def flows(k: int) -> Seq:
    """Thread k's packets: UDP exchanges, TCP handshakes with data and a close, pings and
    IPv6, on ports of its own (so the threads also race on shared buckets, not on entries)."""
    client, server = f"10.1.{k}.2", f"10.2.{k}.2"
    pkts: list[bytes] = []
    for i in range(8):
        pkts += [
            P.udp(client, server, 10000 + i, 53, b"q"),
            P.udp(server, client, 53, 10000 + i, b"a"),
        ]
    for i in range(4):
        conv = Conv(20000 + i, client=client, server=server)
        pkts += [*conv.handshake(), conv.c("PA", payload=b"x" * 50), conv.s("A"), *conv.fin_close()]
    pkts += [P.icmp_echo(client, server, 7 + k), P.icmp_echo(server, client, 7 + k, reply=True)]
    pkts += [P.udp(C6, S6, 30000 + k, 53, b"q6"), P.udp(S6, C6, 53, 30000 + k, b"a6")]
    return timed(*pkts, t0=1.0, gap=0.0001)


def batch_of(pkts: Seq) -> tuple[bytes, np.ndarray, np.ndarray]:
    buf = b"".join(p for p, _ in pkts)
    offsets = np.zeros(len(pkts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p, _ in pkts])
    return buf, offsets, np.array([t for _, t in pkts], dtype=np.float64)


def hammer(net: Net, *, delete: bool) -> list[BaseException]:
    """Runs the feeders and the lister on `net` until the feeders are done; returns what the
    threads raised (empty when nothing did)."""
    errors: list[BaseException] = []
    done = threading.Event()
    laps = [0]  # the lister's rounds while the feeders ran
    deleted = [0]

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as e:  # every thread's failure is the test's
                errors.append(e)

        return run

    start = time.monotonic()

    def more(rounds: int) -> bool:
        """Whether a feeder goes on: ROUNDS at least, and until the lister has done LAPS (not
        after a thread failed)."""
        if errors:
            return False
        if rounds < ROUNDS:
            return True
        return laps[0] < LAPS and time.monotonic() - start < DEADLINE

    def through_the_stack(k: int) -> Callable[[], None]:
        pkts = flows(k)

        def body() -> None:
            rounds = 0
            while more(rounds):
                rounds += 1
                for pkt, t in pkts:
                    rcv = nfct.ipv6_rcv if pkt[0] >> 4 == 6 else nfct.ip_rcv
                    res = rcv(net, Skb(pkt, tstamp=t))
                    assert res.verdict in (nfct.NF_ACCEPT, nfct.NF_DROP)

        return body

    def in_batches(k: int) -> Callable[[], None]:
        batch = batch_of(flows(FEEDERS + k))

        def body() -> None:
            rounds = 0
            while more(rounds):
                rounds += 1
                verdicts, ctinfo = net.conntrack_batch(*batch)
                assert len(verdicts) == len(ctinfo) == len(batch[1]) - 1

        return body

    def lister() -> None:
        sizes = [16, 1, 1024, 7, 262144]
        i = 0
        while not done.is_set():
            conns = list(net)
            net.dump()
            net.dump("proc")
            net.gc()
            net.sysctl["nf_conntrack_buckets"] = sizes[i % len(sizes)]
            if delete:
                for conn in conns[::3]:
                    n = net.delete(conn)
                    assert n in (0, 1)
                    deleted[0] += n
            i += 1
            laps[0] += not done.is_set()

    feeders = [threading.Thread(target=guarded(through_the_stack(k))) for k in range(FEEDERS)]
    feeders += [threading.Thread(target=guarded(in_batches(k))) for k in range(FEEDERS)]
    watcher = threading.Thread(target=guarded(lister))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often: more interleavings
    try:
        for thread in (*feeders, watcher):
            thread.daemon = True  # a hung thread must not keep the process alive
            thread.start()
        for thread in feeders:
            thread.join(JOIN_TIMEOUT)
        done.set()
        watcher.join(JOIN_TIMEOUT)
    finally:
        sys.setswitchinterval(interval)
    hung = [t.name for t in (*feeders, watcher) if t.is_alive()]
    assert not hung, f"threads still running after {JOIN_TIMEOUT} s (deadlock?): {hung}"
    if not errors:
        assert laps[0] >= LAPS, f"the lister ran only {laps[0]} times beside the feeders"
        assert deleted[0] > 0 or not delete, "the lister deleted nothing"
    return errors


def check_quiet(net: Net) -> None:
    """Once the threads are done: what is listed is what is counted, each entry once."""
    gc.collect()  # no packet object keeps an unconfirmed entry alive
    listed = list(net)
    assert net.count == len(listed) == len(net)
    assert len({(c.orig, c.reply) for c in listed}) == len(listed)
    assert len(net.dump().splitlines()) == len(listed)
    assert listed, "the feeders left no entry at all"


@pytest.mark.timeout(300, method="thread")
def test_threads_feed_list_collect_and_resize_one_net() -> None:
    net = Net({"nf_conntrack_buckets": 64}, seed=5)
    errors = hammer(net, delete=False)
    if errors:
        raise errors[0]
    check_quiet(net)


@pytest.mark.timeout(300, method="thread")
def test_threads_feed_list_and_delete_from_one_net() -> None:
    net = Net({"nf_conntrack_buckets": 64}, seed=5)
    errors = hammer(net, delete=True)
    if errors:
        raise errors[0]
    check_quiet(net)


def test_delete_returns_how_many_entries_it_deleted() -> None:
    net = Net()
    nfct.ip_rcv(net, Skb(P.udp("10.1.0.2", "10.2.0.2", 1000, 53), tstamp=1.0))
    (conn,) = list(net)
    assert net.delete(conn) == 1
    assert list(net) == [] and net.count == 0
    assert net.delete(conn) == 0
