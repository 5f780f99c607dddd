"""``nfct.verify`` is :mod:`nfct.kernel.verify` (``nfct verify-kernel``), kept importable under
its first name, with the raw-IP pcap writer its callers used."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nfct import pcap
from nfct.kernel.verify import (
    AUTO_PER_PACKET_LIMIT,
    Setup,
    nfct_run,
    nfct_run_events,
    nfct_run_packets,
    verify_capture,
    verify_kernel_cli,
)

__all__ = [
    "AUTO_PER_PACKET_LIMIT",
    "Setup",
    "nfct_run",
    "nfct_run_events",
    "nfct_run_packets",
    "verify_capture",
    "verify_kernel_cli",
    "write_pcap",
]


def write_pcap(path: str | Path, packets: Iterable[tuple[bytes, float]]) -> None:
    """Write IP packets given as ``(packet, time in seconds)`` as a nanosecond pcap of raw IP.

    The old argument order; new code calls :func:`nfct.pcap.write_pcap`, which takes
    ``(tstamp, data)`` records.
    """
    pcap.write_pcap(path, ((t, data) for data, t in packets), nanosecond=True)
