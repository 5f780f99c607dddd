"""The exceptions nfct raises, all rooted in :class:`NfctError`, each also the builtin that
fits (``except ValueError`` works as well as ``except nfct.NfctError``)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from nfct._nfct import ReplayResult


class NfctError(Exception):
    """Base class of every error nfct raises."""


class NfctTypeError(NfctError, TypeError):
    """An argument of the wrong type (e.g. packet data that is not bytes)."""


class NfctValueError(NfctError, ValueError):
    """An argument with a bad value (negative sysctl, unknown format, ...)."""


class UnknownSysctlError(NfctError, KeyError):
    """A sysctl name that /proc/sys/net/netfilter does not have."""

    def __str__(self) -> str:
        # KeyError quotes its argument; this one is a sentence.
        return str(self.args[0]) if self.args else ""


class CaptureError(NfctError, OSError):
    """A capture file that is missing, truncated or corrupt.

    ``path`` and ``offset`` say where; ``summary`` holds the replay result up to the bad
    record (everything before it was applied to the table).
    """

    path: str
    offset: int
    summary: ReplayResult | None

    def __init__(
        self,
        message: str,
        path: str = "",
        offset: int = 0,
        summary: ReplayResult | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.summary = summary


class OutputError(NfctError, OSError):
    """A file nfct was asked to write (per-packet lines, events) that cannot be written:
    ``errno``, ``strerror`` and ``filename`` as :class:`OSError` has them."""


class MissingExtraError(NfctError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra to install (``pip install 'nfct[numpy]'``)."""


class HookError(NfctError):
    """A hook operation failed in a way that is not a Python exception of its own.

    A Python hook that raises drops its packet, and that very exception reaches the caller
    of ``ip_rcv``/``ip_local_out``/``Net.replay`` with a note naming the hook and an
    ``nfct_hook`` attribute ``(hooknum, priority, name)``.
    """
