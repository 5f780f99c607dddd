"""Timestamps and accounting (spec §15) with the live kernel as the judge: a short paced run
with nf_conntrack_timestamp=1 and nf_conntrack_acct=1, then `conntrack -L -o extended`,
/proc/net/nf_conntrack and the `conntrack -E` log compared line for line with nfct fed the same
packets at the same wall-clock instants.

`delta-time=` depends on where the instants fall within their seconds (`conntrack -L` and the
DESTROY event print the difference of whole seconds, /proc the whole seconds elapsed), so the
run starts at a known fraction of a second (x.60 .. x.65) and nothing happens near a second
boundary: the expected numbers are then the same on every run."""

from __future__ import annotations

import time

import packets as P
from helpers import C, S, count_run, forward
from nfct import Net
from nfct.kernel import KernelLab

SYSCTL = {"nf_conntrack_timestamp": 1, "nf_conntrack_acct": 1, "nf_conntrack_udp_timeout": 2}


def _script() -> list[tuple[float, bytes]]:
    """(offset in seconds, packet): a DNS-like UDP exchange and an echo at 0, a SYN killed by
    a RST/ACK at 1.2 s (DESTROY with stop = now), the UDP flow expiring at 2.0 s (DESTROY
    backdated), one more echo request at 2.7 s (no event), then the listing."""
    syn = P.tcp(C, S, 4001, 80, seq=1000, flags="S")
    return [
        (0.000, P.udp(C, S, 5000, 53, b"query")),
        (0.001, P.udp(S, C, 53, 5000, b"answer!")),
        (0.002, P.icmp_echo(C, S, 7)),
        (0.003, P.icmp_echo(S, C, 7, reply=True)),
        (0.004, syn),
        (1.200, P.tcp(S, C, 80, 4001, seq=0, ack=1001, flags="RA", window=0)),
        (2.700, P.icmp_echo(C, S, 7, seq=2)),
    ]


def _body(event: str) -> str:
    """An event line without the listener's `-o timestamp` prefix."""
    return event.split("\t", 1)[-1]


def _kernel_run(
    script: list[tuple[float, bytes]],
) -> tuple[list[tuple[bytes, float]], list[str], list[str], list[str], float]:
    """One paced run through the kernel: (packets with the instants sent, listing, /proc,
    events, seconds from the first packet to the listing)."""
    sent: list[tuple[bytes, float]] = []
    with KernelLab(SYSCTL) as lab:
        lab.events_start()
        # Start at x.60 .. x.65 of the wall clock (the clock the kernel stamps entries with).
        while not 0.60 <= time.time() % 1 < 0.65:
            time.sleep(0.005)
        t0 = time.time()
        for offset, pkt in script:
            delay = t0 + offset - time.time()
            if delay > 0:
                time.sleep(delay)
            now = time.time()
            lab.send(pkt)
            lab.summary()  # written now, before the next one
            sent.append((pkt, now))
        # Past the last packet's jiffy: listed in that same jiffy, a fresh 30 s entry would
        # show 30 rather than the 29 of any later instant (nfct lists an instant after).
        time.sleep(0.05)
        k_lines = sorted(lab.lines())
        k_proc = sorted(lab.read_file("/proc/net/nf_conntrack").splitlines())
        listed_at = time.time()
        time.sleep(0.2)
        k_events = [_body(e) for e in lab.events_stop()]
    assert lab.events_lost == 0
    return sent, k_lines, k_proc, k_events, listed_at - t0


def _paced_in_time(
    sent: list[tuple[bytes, float]], script: list[tuple[float, bytes]], took: float
) -> bool:
    """Whether the run kept to its plan: every packet within 0.15 s of its offset and the
    listing clear of a second boundary (the expected numbers rely on both)."""
    t0 = sent[0][1]
    on_time = all(abs((t - t0) - off) < 0.15 for (_, t), (off, _) in zip(sent, script, strict=True))
    return on_time and 0.55 <= took % 1 < 0.95


# The timeout a [NEW] event shows: the whole of it (seconds), by protocol.
NEW_TIMEOUTS = {"udp": "2", "icmp": "30", "tcp": "120"}


def _new_events_whole(k_events: list[str]) -> bool:
    """Whether every [NEW] event shows its whole timeout. The kernel builds the event at
    confirmation, just after it made the timeout absolute: a jiffy tick in between (a loaded
    machine preempting it there) shows one second less (seen once in CI: `udp 17 1`). That is
    the kernel's own race, not a behaviour to compare."""
    new = [e.split() for e in k_events if e.lstrip().startswith("[NEW]")]
    return all(f[5] == NEW_TIMEOUTS.get(f[3]) for f in new)


def test_timestamps_and_counters_agree_line_for_line() -> None:
    script = _script()
    # A loaded machine can make a run late, or tick a jiffy inside the kernel's confirmation
    # (both seen in concurrent or full runs): the run is made again, up to three times,
    # rather than judged on instants it did not keep.
    for _attempt in range(3):
        sent, k_lines, k_proc, k_events, took = _kernel_run(script)
        if _paced_in_time(sent, script, took) and _new_events_whole(k_events):
            break
    assert _paced_in_time(sent, script, took), ("three runs late", took, [t for _, t in sent])
    assert _new_events_whole(k_events), ("three runs with a tick in confirmation", k_events)

    net = Net(SYSCTL)
    net.listen_events()
    for pkt, t in sent:
        forward(net, pkt, t)
    n_lines = sorted(net.dump("extended").splitlines())
    n_proc = sorted(net.dump("proc").splitlines())
    n_events = net.read_events()
    count_run(packets=len(sent), entries=len(k_lines))

    assert n_lines == k_lines
    assert n_proc == k_proc
    assert n_events == k_events
    # What the run shows (so that a change on either side is noticed, not only a difference):
    # the echo flow listed 2.7 s after x.6 s: 3 for the tool, 2 for /proc; the SYN killed at
    # 1.2 s: 1; the UDP flow expired at 2.0 s and reaped later: 2, with its counters.
    (echo,) = k_lines
    assert echo.endswith(" mark=0 delta-time=3 use=1"), echo
    assert " packets=2 bytes=74 " in echo and " packets=1 bytes=37 " in echo, echo
    assert k_proc[0].endswith(" delta-time=2 use=2"), k_proc
    destroys = [e for e in k_events if e.startswith("[DESTROY]")]
    assert len(destroys) == 2, k_events
    assert destroys[0].startswith("[DESTROY] ipv4     2 tcp      6 118 CLOSE ")
    assert destroys[0].endswith(" delta-time=1"), destroys
    assert destroys[1] == (
        "[DESTROY] ipv4     2 udp      17 src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=53 "
        "packets=1 bytes=33 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=5000 packets=1 bytes=35 "
        "delta-time=2"
    )
