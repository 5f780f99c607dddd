"""The exceptions nfct raises, all rooted in :class:`NfctError`."""

from __future__ import annotations


class NfctError(Exception):
    """Base class of every error nfct raises."""


class NfctTypeError(NfctError, TypeError):
    """An argument of the wrong type (e.g. packet data that is not bytes)."""


class NfctValueError(NfctError, ValueError):
    """An argument with a bad value (negative sysctl, unknown format, ...)."""


class UnknownSysctlError(NfctError, KeyError):
    """A sysctl name that /proc/sys/net/netfilter does not have."""


class CaptureError(NfctError, OSError):
    """A capture file that is missing, truncated or corrupt.

    ``path`` and ``offset`` say where; ``summary`` holds the replay counts up to the bad
    record (everything before it was applied to the table).
    """

    path: str
    offset: int
    summary: dict[str, object]


class HookError(NfctError):
    """A hook operation failed in a way that is not a Python exception of its own.

    A Python hook that raises drops its packet, and that very exception reaches the caller
    of ``ip_rcv``/``ip_local_out``/``Net.replay`` with a note naming the hook and an
    ``nfct_hook`` attribute ``(hooknum, priority, name)``.
    """
