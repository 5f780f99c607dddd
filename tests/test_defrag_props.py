"""Defragmentation properties as a user of `nfct.Net.replay` sees them (spec §1.2, §18).

The datagram is an SCTP INIT whose padding parameter holds random bytes. With
nf_conntrack_checksum=1 (the default) conntrack verifies SCTP's CRC32c over the whole
reassembled datagram, and CRC32c depends on where every byte is: a fragment's data placed at
the wrong offset, lost, doubled or altered makes the datagram INVALID. So "the completing
fragment is `new`, and the table is the one the unfragmented datagram gives (byte counter
included)" observes that reassembly produced the same bytes, not just the same length.

Memory: with a small nf_conntrack_frag6_high_thresh, the fragment data nfct holds (fragments
it reports held, minus the queues it completed or dropped) never exceeds the threshold by more
than one fragment, and once the queues time out new fragments are accepted again.

The Rust property tests in rust/defrag.rs check the reassembled bytes directly; these go
through the public Python API only."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import packets as P
from helpers import C6, S6, T0, C, S
from nfct import Net
from nfct.verify import write_pcap
from scenarios.sctp import INIT, chunk, init_body, sctp_segment

IPPROTO_SCTP = 132
HELD = "nf_defrag: fragment held for reassembly"
OVER = "nf_defrag: fragment memory over high_thresh"
DUP = "nf_defrag: duplicate fragment"


def init_datagram(pad: bytes) -> bytes:
    """An SCTP INIT (vtag 0) with one padding parameter (type 0x8005) carrying `pad`."""
    param = struct.pack("!HH", 0x8005, 4 + len(pad)) + pad
    param += b"\0" * (-len(param) % 4)
    return sctp_segment(5000, 6000, 0, chunk(INIT, init_body(0x1234ABCD) + param))


def fragment(v6: bool, seg: bytes, off: int, size: int, ident: int) -> bytes:
    """The fragment of `seg` at byte offset `off` (a multiple of 8) of at most `size` bytes."""
    data = seg[off : off + size]
    more = off + size < len(seg)
    if v6:
        return P.ipv6(
            C6, S6, IPPROTO_SCTP, data, ext_headers=[(44, struct.pack("!HI", off | more, ident))]
        )
    return P.ipv4(C, S, IPPROTO_SCTP, data, ident=ident, frag_off=off // 8, more_fragments=more)


def run(
    pkts: list[tuple[bytes, float]], sysctl: dict[str, int]
) -> tuple[dict[str, Any], list[str], Net]:
    """Replays the packets; returns the summary, the per-packet lines and the table."""
    net = Net(sysctl)
    with tempfile.TemporaryDirectory(prefix="nfct-defrag-") as tmp:
        cap, out = Path(tmp) / "f.pcap", Path(tmp) / "packets.txt"
        write_pcap(cap, pkts)
        summary = net.replay([str(cap)], clock="capture", packets_path=str(out))
        lines = out.read_text().splitlines()
    return summary, lines, net


@st.composite
def fragment_trains(draw: st.DrawFn) -> tuple[bool, bytes, int, list[int]]:
    """(IPv6?, datagram, fragment size, order): the order lists fragment indices, each at least
    once (a permutation with exact duplicates inserted anywhere), cut where the last missing
    fragment arrives (what comes after would start a new queue)."""
    v6 = draw(st.booleans())
    pad = draw(st.binary(min_size=8, max_size=900))
    seg = init_datagram(pad)
    # At least two fragments, of 16 bytes or more (the first one then holds the SCTP header).
    size = 8 * draw(st.integers(2, min(64, (len(seg) - 1) // 8)))
    n = -(-len(seg) // size)
    order = list(draw(st.permutations(range(n))))
    for _ in range(draw(st.integers(0, n + 2))):
        order.insert(draw(st.integers(0, len(order))), draw(st.integers(0, n - 1)))
    seen: set[int] = set()
    for i, k in enumerate(order):
        seen.add(k)
        if len(seen) == n:
            return v6, seg, size, order[: i + 1]
    raise AssertionError("unreachable: every index is in the permutation")


SYSCTL = {"nf_conntrack_acct": 1}


@settings(max_examples=60, deadline=None)
@given(fragment_trains())
def test_any_order_and_duplication_reassembles_to_the_same_datagram(
    train: tuple[bool, bytes, int, list[int]],
) -> None:
    v6, seg, size, order = train
    n = -(-len(seg) // size)
    pkts = [
        (fragment(v6, seg, k * size, size, 0x4242), T0 + i * 0.001) for i, k in enumerate(order)
    ]
    summary, lines, net = run(pkts, SYSCTL)
    whole = P.ipv6(C6, S6, IPPROTO_SCTP, seg) if v6 else P.ipv4(C, S, IPPROTO_SCTP, seg)
    _, whole_lines, whole_net = run([(whole, T0 + (len(order) - 1) * 0.001)], SYSCTL)
    assert whole_lines == ["1 new"]
    # Every fragment before the last is held; an exact duplicate is dropped (IPv4 says so, IPv6
    # pretends it was queued, as nf_ct_frag6_queue does) and the queue kept; the last one
    # completes the datagram.
    expected = []
    for i, k in enumerate(order[:-1]):
        dup = k in order[:i] and not v6
        expected.append(f"{i + 1} dropped {DUP if dup else HELD}")
    assert lines[:-1] == expected
    assert lines[-1] == f"{len(order)} new"
    assert (summary["fragments"], summary["reassembled"]) == (len(order), 1)
    assert (summary["frag_dropped"], summary["frag_timed_out"]) == (0, 0)
    # The same entry, byte counter included, as the datagram sent whole.
    assert net.dump("extended") == whole_net.dump("extended")
    assert f" packets=1 bytes={(40 if v6 else 20) + len(seg)} " in net.dump("extended")
    assert n >= 2


def test_a_misplaced_or_altered_fragment_is_seen() -> None:
    """What makes the property above observe bytes: CRC32c. The same fragments with two of them
    exchanged (each at the other's offset), or one byte changed, reassemble to a datagram of
    the right length that conntrack finds INVALID."""
    seg = init_datagram(bytes(range(256)) * 2)
    size = 64
    good = [fragment(False, seg, off, size, 7) for off in range(0, len(seg), size)]
    assert run([(p, T0) for p in good], {})[1][-1] == f"{len(good)} new"
    swapped = bytearray(seg)
    swapped[64:128], swapped[128:192] = seg[128:192], seg[64:128]
    bad = [fragment(False, bytes(swapped), off, size, 8) for off in range(0, len(seg), size)]
    summary, lines, _ = run([(p, T0) for p in bad], {})
    assert summary["reassembled"] == 1 and lines[-1].split()[1] == "invalid", lines[-1]
    altered = bytearray(seg)
    altered[300] ^= 1
    bad = [fragment(False, bytes(altered), off, size, 9) for off in range(0, len(seg), size)]
    assert run([(p, T0) for p in bad], {})[1][-1].split()[1] == "invalid"


@settings(max_examples=40, deadline=None)
@given(
    high=st.integers(4096, 65536),
    frags=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(1, 128)),
        min_size=1,
        max_size=150,
    ),
)
def test_held_fragment_data_stays_under_high_thresh(
    high: int, frags: list[tuple[int, int, int]]
) -> None:
    """Incomplete IPv6 datagrams (ids 0..40, fragments at distinct offsets of 1024 bytes, never
    the last one) against nf_conntrack_frag6_high_thresh: the data of the fragments held at any
    moment is at most high_thresh plus one fragment; after nf_conntrack_frag6_timeout every
    queue has timed out and a new fragment is held again."""
    sysctl = {"nf_conntrack_frag6_high_thresh": high, "nf_conntrack_frag6_low_thresh": high // 2}
    seen: set[tuple[int, int]] = set()
    train: list[tuple[int, int]] = []  # (id, data length)
    pkts: list[tuple[bytes, float]] = []
    for ident, slot, units in frags:
        if (ident, slot) in seen:
            continue  # a second fragment at the same offset would be a duplicate or an overlap
        seen.add((ident, slot))
        data = bytes([ident]) * (8 * units)
        ext = [(44, struct.pack("!HI", slot * 1024 | 1, ident))]
        pkts.append((P.ipv6(C6, S6, 17, data, ext_headers=ext), T0 + len(pkts) * 0.001))
        train.append((ident, len(data)))
    late = P.ipv6(C6, S6, 17, b"x" * 8, ext_headers=[(44, struct.pack("!HI", 1, 999))])
    pkts.append((late, T0 + 61.0))
    summary, lines, _ = run(pkts, sysctl)
    held = 0
    queues: set[int] = set()
    largest = max(n for _, n in train)
    for (ident, n), line in zip(train, lines, strict=False):
        reason = line.split(" ", 2)[2]
        assert reason in (HELD, OVER), line
        if reason == HELD:
            held += n
            queues.add(ident)
        assert held <= high + largest, (held, high)
    # What was refused is what the summary counts as dropped; nothing completed.
    refused = sum(1 for line in lines[:-1] if line.endswith(OVER))
    assert summary["frag_dropped"] == refused
    assert summary["reassembled"] == 0
    if sum(n for _, n in train) > high + largest:
        assert refused > 0
    # 61 s later every queue has timed out, so memory is back under the threshold and the
    # late fragment is held.
    assert summary["frag_timed_out"] == len(queues)
    assert lines[-1] == f"{len(pkts)} dropped {HELD}"
