"""The IP packets of a capture, as the harness writes them to the kernel.

The harness reads captures with :mod:`nfct.pcap` (pure Python), not with nfct's Rust reader, so
that the judge does not share the code it judges; the link layers are peeled here, the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

from nfct.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    iter_frames,
)

__all__ = ["iter_capture_frames", "iter_capture_ip", "iter_capture_ip_frames"]

#: Every packet record of a capture, as :class:`nfct.pcap.Frame` ``(tstamp, data, linktype)``.
iter_capture_frames = iter_frames

_ETH_P_IP: Final = 0x0800
_ETH_P_IPV6: Final = 0x86DD
_VLAN_TYPES: Final = frozenset({0x8100, 0x88A8, 0x9100, 0x9200, 0x9300})
_ETH_P_PPP_SES: Final = 0x8864
_MAX_STACK: Final = 64
# DLT_RAW's platform values (12; 14 on OpenBSD), which some writers store: raw IP too.
_RAW_ALIASES: Final = (12, 14)


def _by_ethertype(ethertype: int, payload: bytes) -> bytes | None:
    for _ in range(_MAX_STACK):
        if ethertype in (_ETH_P_IP, _ETH_P_IPV6):
            return payload
        if ethertype in _VLAN_TYPES:
            if len(payload) < 4:
                return None
            ethertype = int.from_bytes(payload[2:4], "big")
            payload = payload[4:]
            continue
        if ethertype == _ETH_P_PPP_SES:
            if len(payload) < 8:
                return None
            proto = int.from_bytes(payload[6:8], "big")
            return payload[8:] if proto in (0x0021, 0x0057) else None
        # MPLS (0x8847): nfct decodes it, the reference harness did not send it. Anything
        # else (ARP, LLDP, 802.3 lengths, ...) is not IP.
        return None
    return None


def _by_version(p: bytes, versions: tuple[int, ...] = (4, 6)) -> bytes | None:
    return p if p and (p[0] >> 4) in versions else None


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a frame (possibly with trailing link padding), or None."""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        return _by_ethertype(int.from_bytes(frame[12:14], "big"), frame[14:])
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        return _by_ethertype(int.from_bytes(frame[14:16], "big"), frame[16:])
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        return _by_ethertype(int.from_bytes(frame[0:2], "big"), frame[20:])
    # NULL: the family in host byte order (either); LOOP: in network order.
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            return None
        be = int.from_bytes(frame[:4], "big")
        families = (be,) if linktype == LINKTYPE_LOOP else (int.from_bytes(frame[:4], "little"), be)
        ok = any(af == 2 or af in (10, 24, 28, 30) for af in families)
        return frame[4:] if ok else None
    if linktype == LINKTYPE_RAW or linktype in _RAW_ALIASES:
        return _by_version(frame)
    if linktype == LINKTYPE_IPV4:
        return _by_version(frame, (4,))
    if linktype == LINKTYPE_IPV6:
        return _by_version(frame, (6,))
    return None


def iter_capture_ip(path: str | os.PathLike[str]) -> Iterator[tuple[bytes, float]]:
    """(IP packet, timestamp) for every frame of a capture that carries IPv4/IPv6, extracted as
    nfct does (Ethernet with any VLAN/QinQ tags 0x8100/0x88a8/0x9100-0x9300, PPPoE session;
    SLL; SLL2; NULL/LOOP; RAW 101/228/229/12/14), except IP inside MPLS, which is skipped (the
    harness behind shared/pcaps/kernel/ did not send it). Link padding after the IP packet is
    kept: the kernel trims it, as it trims a received frame."""
    for _number, packet, tstamp in iter_capture_ip_frames(path):
        yield packet, tstamp


def iter_capture_ip_frames(path: str | os.PathLike[str]) -> Iterator[tuple[int, bytes, float]]:
    """:func:`iter_capture_ip` with each packet's frame number in the capture (1-based, as
    ``nfct replay --output packets`` and ``nfct explain`` number frames): ``(frame, IP packet,
    timestamp)``."""
    for number, frame in enumerate(iter_frames(path), 1):
        packet = _ip_payload(frame.linktype, frame.data)
        if packet:
            yield number, packet, frame.tstamp
