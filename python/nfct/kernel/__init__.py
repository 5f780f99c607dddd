"""The live kernel as the judge: replay IP packets through Linux's own conntrack.

Method (kernel-conntrack.md §17, TUN variant): one private network namespace holding only

* ``lo``;
* a TUN device (``IFF_TUN | IFF_NO_PI``) whose file descriptor belongs to a small helper
  process running inside the namespace: every IP packet written to it enters the namespace
  through PRE_ROUTING exactly as if it had been received. It has the IPv4 address 192.0.0.8/32
  and keeps the IPv6 link-local address the kernel gives it, so that, as in the reference
  harness, a packet to a link-local destination is routed back out of the TUN itself (the
  kernel forwards it, sends an ND redirect, and conntrack confirms the entry);
* a veth pair whose two ends are both in the namespace; the default IPv4 and IPv6 routes
  point into one end (through a permanent fake neighbour, so no neighbour resolution), and an
  nft ``netdev`` egress hook on both ends drops every frame. A forwarded packet therefore
  passes PRE_ROUTING, FORWARD and POST_ROUTING (where conntrack confirms its entry) and then
  vanishes;
* nft table ``inet nfct``: a forward chain with one named counter per ``ct state`` (an nft
  ``ct`` expression is what enables conntrack in the namespace), and an output chain dropping
  everything so the namespace never answers.

The namespace has no link to the host's network: whatever the addresses in the packets, nothing
leaves it. Forwarding is on and ``rp_filter`` off, per namespace. The netfilter sysctls given as
``sysctl`` are written to the namespace's own ``/proc/sys/net/netfilter``. The two global knobs
(``nf_conntrack_max``, ``nf_conntrack_buckets``) are only touched when asked (``global_sysctl``)
and always restored, also on KeyboardInterrupt and SIGTERM; runs that change them exclude
every other harness run on the machine (an ``flock`` on ``/run/lock/nfct-kernel.lock``).

Afterwards ``conntrack -L -o extended``, ``conntrack -S`` and ``nf_conntrack_count`` are read in
the namespace; ``conntrack -E -o timestamp,extended`` runs during the replay (started, and seen
subscribed, before the first packet: with the default ``nf_conntrack_events=2`` only entries
created while a listener exists ever produce events). conntrack-tools 1.4.7 leaves its event
socket at ``net.core.rmem_default`` whatever ``-b`` says, so a fast replay overruns it and the
kernel drops events (ENOBUFS; the reference logs in shared/pcaps/kernel/ of the larger captures
lost events that way). The writer therefore pauses whenever the listener's socket holds more
than a quarter of its buffer, until it has drained: the log is complete, and
:attr:`KernelResult.events_lost` (the socket's drop count) says so.

The cost of a run is measured in benches/RESULTS.md ("The live-kernel harness").

Entry points: :func:`run_packets`, :func:`run_capture`, :class:`KernelLab` (the live namespace,
for tests that want to look inside), :func:`iter_capture_ip` (the IP packets of a pcap/pcapng
file, extracted as nfct does, except IP inside MPLS, which the reference harness did not send;
:func:`iter_capture_ip_frames` with their frame numbers),
:func:`check_available`.

Modules: :mod:`~nfct.kernel.lab` (the namespace, the machine lock, signals, global sysctls),
:mod:`~nfct.kernel._helper` (the program that runs inside the namespace),
:mod:`~nfct.kernel.runs` (runs and their results), :mod:`~nfct.kernel.capture` (captures, read
with :mod:`nfct.pcap`), :mod:`~nfct.kernel.compare` (comparing the kernel's text with nfct's),
:mod:`~nfct.kernel.verify` (``nfct verify-kernel``).
"""

from __future__ import annotations

from nfct.kernel.capture import iter_capture_frames, iter_capture_ip, iter_capture_ip_frames
from nfct.kernel.lab import (
    CT_CLASSES,
    GLOBAL_SYSCTLS,
    NFT_TABLE,
    NS_PREFIX,
    TUN_ADDR4,
    TUN_NAME,
    VETH_OUT,
    VETH_PEER,
    Egress,
    KernelHarnessError,
    KernelLab,
    KernelUnavailable,
    check_available,
    global_sysctls,
    machine_lock,
)
from nfct.kernel.runs import KernelResult, run_capture, run_packets

__all__ = [
    "CT_CLASSES",
    "GLOBAL_SYSCTLS",
    "NFT_TABLE",
    "NS_PREFIX",
    "TUN_ADDR4",
    "TUN_NAME",
    "VETH_OUT",
    "VETH_PEER",
    "Egress",
    "KernelHarnessError",
    "KernelLab",
    "KernelResult",
    "KernelUnavailable",
    "check_available",
    "global_sysctls",
    "iter_capture_frames",
    "iter_capture_ip",
    "iter_capture_ip_frames",
    "machine_lock",
    "run_capture",
    "run_packets",
]
