"""Named result tuples the native module returns (defined here so they are real tuples with
field names; the native module builds them)."""

from __future__ import annotations

from typing import Literal, NamedTuple, TypeAlias

Clock: TypeAlias = Literal["capture", "frozen"]
"""A replay's clock: the capture's timestamps, or frozen at the first packet's."""
ReplayPath: TypeAlias = Literal["forward", "local-in", "local-out"]
"""Which way replayed packets go through the host."""
ListFormat: TypeAlias = Literal["extended", "conntrack", "proc"]
"""A listing format: ``conntrack -L -o extended``, ``conntrack -L``, /proc/net/nf_conntrack."""
PacketClass: TypeAlias = Literal["new", "established", "related", "invalid", "untracked", "dropped"]
"""What `--output packets` says of a packet."""


class PacketResult(NamedTuple):
    """One packet's result, as `nfct replay --output packets` prints it."""

    frame: int
    """1-based position among the packets (the capture's frame number in a replay)."""
    cls: str
    """``new``, ``established``, ``related``, ``invalid``, ``untracked`` or ``dropped``."""
    reason: str | None
    """Why it was INVALID or dropped, in the kernel's words."""
    dropped_by: str | None
    """The rule that dropped or stole it."""


class Counters(NamedTuple):
    """Packet and byte counters of one direction (``nf_conntrack_acct``)."""

    packets: int
    bytes: int


class HookOp(NamedTuple):
    """Where an operation sits: its hook number, priority and name."""

    hooknum: int
    priority: int
    name: str
