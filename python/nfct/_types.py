"""Named result tuples the native module returns (defined here so they are real tuples with
field names; the native module builds them).

Without importing typing: every ``nfct`` command imports this module, and typing took about
2 ms of its start-up. Type checkers (and the documentation, read statically) see the
``NamedTuple`` classes under ``TYPE_CHECKING``; at run time the same tuples are made by
:func:`collections.namedtuple`, as ``typing.NamedTuple`` itself does (tests/test_startup.py
checks that the two agree)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, NamedTuple, TypeAlias

# The aliases are strings at run time (only type checkers read them).
Clock: TypeAlias = "Literal['capture', 'frozen']"
"""A replay's clock: the capture's timestamps, or frozen at the first packet's."""
ReplayPath: TypeAlias = "Literal['forward', 'local-in', 'local-out']"
"""Which way replayed packets go through the host."""
ListFormat: TypeAlias = "Literal['extended', 'conntrack', 'proc']"
"""A listing format: ``conntrack -L -o extended``, ``conntrack -L``, /proc/net/nf_conntrack."""
PacketClass: TypeAlias = (
    "Literal['new', 'established', 'related', 'invalid', 'untracked', 'dropped']"
)
"""What `--output packets` says of a packet."""

if TYPE_CHECKING:

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

else:
    from collections import namedtuple

    def _named_tuple(name: str, doc: str, fields: dict[str, str]) -> type:
        """The class ``typing.NamedTuple`` makes of a class body with these annotated fields
        (as strings, as under ``from __future__ import annotations``) and this docstring."""
        cls = namedtuple(name, fields, module=__name__)  # noqa: PYI024 (typing is what is avoided)
        cls.__doc__ = doc
        cls.__annotations__ = dict(fields)
        return cls

    PacketResult = _named_tuple(
        "PacketResult",
        "One packet's result, as `nfct replay --output packets` prints it.",
        {"frame": "int", "cls": "str", "reason": "str | None", "dropped_by": "str | None"},
    )
    Counters = _named_tuple(
        "Counters",
        "Packet and byte counters of one direction (``nf_conntrack_acct``).",
        {"packets": "int", "bytes": "int"},
    )
    HookOp = _named_tuple(
        "HookOp",
        "Where an operation sits: its hook number, priority and name.",
        {"hooknum": "int", "priority": "int", "name": "str"},
    )
