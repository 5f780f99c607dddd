"""Runs through the live kernel: :func:`run_packets`, :func:`run_capture` and what they
return, :class:`KernelResult`."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from nfct.kernel.capture import iter_capture_ip
from nfct.kernel.lab import Egress, KernelLab, _sigterm_raises, check_available, global_sysctls

__all__ = ["KernelResult", "run_capture", "run_packets"]

# How long the kernel is left to finish with the last packets before its tables are read.
_SETTLE_S: Final = 0.3


@dataclass
class KernelResult:
    """What the live kernel made of a packet sequence."""

    #: The exact ``conntrack -L -o extended`` lines in the namespace after the run.
    lines: list[str]
    #: ``conntrack -S`` summed over CPUs (found invalid insert insert_failed drop early_drop
    #: error search_restart clash_resolve chaintoolong).
    stats: dict[str, int]
    #: ``nf_conntrack_count`` in the namespace after the run.
    count: int
    #: ``conntrack -E -o timestamp,extended`` lines printed during the run.
    events: list[str]
    #: Per packet, in order: new, established, related, invalid, untracked or dropped (never
    #: reached the forward hook: held fragment, routing drop, local delivery...). Only with
    #: ``per_packet=True``.
    classes: list[str] | None
    #: IP packets written to the TUN device.
    sent: int
    #: Wall-clock seconds from the first to the last packet written.
    replay_seconds: float = 0.0
    #: Packets the TUN device refused (write error); they count as "dropped".
    write_errors: int = 0
    #: Events the kernel dropped because the listener's socket was full (0 = complete log).
    events_lost: int = 0
    #: The netfilter sysctls applied in the namespace.
    sysctl: dict[str, int] = field(default_factory=dict)
    #: The namespace as a host file (``nfct host-snapshot`` run inside it before the first
    #: packet), with ``snapshot_host=True``.
    host: dict[str, Any] | None = None
    #: ``nft -j list ruleset`` in the namespace after the run (its counters as they ended), with
    #: ``ruleset_after=True``.
    ruleset_after: dict[str, Any] | None = None
    #: The packets that left the namespace's stack, in order, with ``capture=True``: each an
    #: :class:`~nfct.kernel.lab.Egress` ``(data, packet, dev)``, ``packet`` being the position
    #: in ``packets`` of the packet that made it leave (see :meth:`KernelLab.captured`).
    egress: list[Egress] | None = None


def run_packets(
    packets: Iterable[tuple[bytes, float]],
    *,
    sysctl: Mapping[str, int] | None = None,
    per_packet: bool = False,
    pace: bool = False,
    global_sysctl: Mapping[str, int] | None = None,
    after_each: Callable[[KernelLab], None] | None = None,
    ruleset: str | None = None,
    snapshot_host: bool = False,
    setup: Callable[[KernelLab], None] | None = None,
    ruleset_after: bool = False,
    capture: bool = False,
) -> KernelResult:
    """Write IP packets (bytes starting at the IPv4/IPv6 header, timestamp in seconds) in order
    into a fresh namespace's TUN device and report the kernel's verdict.

    ``sysctl``: netfilter sysctls for the namespace (``nf_conntrack_checksum`` etc., bare names or
    ``net.netfilter.*``). ``per_packet``: also record each packet's ct state class, from which
    of the forward chain's ``ct state`` counters moved ("dropped": none did, e.g. a fragment
    the kernel holds, a packet routing dropped or delivered locally). The counters are read
    after every packet over nfnetlink from inside the namespace (not by running ``nft``):
    about 55 us per packet, so even whole captures are fine. ``pace``: sleep to reproduce the
    gaps between the timestamps (for short captures; a timestamp going backwards counts as no
    gap); otherwise as fast as possible. ``global_sysctl``: ``nf_conntrack_max`` /
    ``nf_conntrack_buckets`` set machine-wide for the run and restored afterwards (also on
    KeyboardInterrupt/SIGTERM). ``after_each``: called with the live lab once each packet has
    been written (e.g. to list the table after every packet). ``ruleset``: more nft tables
    loaded into the namespace before the first packet (e.g. a raw chain setting ct zones;
    the harness's forward chain counts at the filter priority, so a chain that drops before
    it makes those packets "dropped"). ``setup``: called with the live lab once the ruleset is
    loaded, before the host snapshot and the first packet (e.g. to add addresses or routes, or
    to change an IP sysctl with ``lab.write_sysctl``). ``snapshot_host``: take
    :attr:`KernelResult.host` then. ``ruleset_after``: read :attr:`KernelResult.ruleset_after`
    (``nft -j list ruleset``) once the run is over. ``capture``: keep the packets that leave
    the namespace (forwarded out of the veth, where they are otherwise dropped, or routed back
    out of the TUN device) in :attr:`KernelResult.egress`.
    """
    check_available()
    with (
        _sigterm_raises(),
        global_sysctls(global_sysctl),
        KernelLab(sysctl, capture=capture) as lab,
    ):
        if ruleset:
            lab.nft_apply(ruleset)
        if setup is not None:
            setup(lab)
        host = lab.host_snapshot() if snapshot_host else None
        lab.events_start()
        sent = errors = 0
        classes: list[str] = []
        start = time.monotonic()
        target = start
        prev_ts: float | None = None
        for packet, ts in packets:
            if pace:
                if prev_ts is not None:
                    target += max(0.0, ts - prev_ts)
                prev_ts = ts
                delay = target - time.monotonic()
                if delay > 0:
                    lab.flush()
                    time.sleep(delay)
            lab.send(packet, classify=per_packet)
            if after_each is not None:
                n, e, _first, cls = lab.summary()
                sent, errors = sent + n, errors + e
                classes += cls
                after_each(lab)
            elif pace:
                lab.flush()
        n, e, _first, cls = lab.summary()
        sent, errors = sent + n, errors + e
        classes += cls
        replay_seconds = time.monotonic() - start
        time.sleep(_SETTLE_S)
        events = lab.events_stop()
        count = lab.count()
        lines = lab.lines()
        stats = lab.stats()
        after = json.loads(lab.exec("nft", "-j", "list", "ruleset")) if ruleset_after else None
        egress = lab.captured() if capture else None
        return KernelResult(
            lines=lines,
            stats=stats,
            count=count,
            events=events,
            classes=classes if per_packet else None,
            sent=sent,
            replay_seconds=round(replay_seconds, 6),
            write_errors=errors,
            events_lost=lab.events_lost,
            sysctl=dict(lab.sysctl),
            host=host,
            ruleset_after=after,
            egress=egress,
        )


def run_capture(
    path: str | os.PathLike[str],
    *,
    sysctl: Mapping[str, int] | None = None,
    per_packet: bool = False,
    pace: bool = False,
    global_sysctl: Mapping[str, int] | None = None,
    ruleset: str | None = None,
    snapshot_host: bool = False,
    setup: Callable[[KernelLab], None] | None = None,
    ruleset_after: bool = False,
    after_each: Callable[[KernelLab], None] | None = None,
    capture: bool = False,
) -> KernelResult:
    """:func:`run_packets` on the IP packets of a pcap/pcapng file (:func:`iter_capture_ip`)."""
    check_available()
    return run_packets(
        iter_capture_ip(path),
        sysctl=sysctl,
        per_packet=per_packet,
        pace=pace,
        global_sysctl=global_sysctl,
        ruleset=ruleset,
        snapshot_host=snapshot_host,
        setup=setup,
        ruleset_after=ruleset_after,
        after_each=after_each,
        capture=capture,
    )
