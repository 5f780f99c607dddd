"""``nfct.conntrack_text`` is the parser in :mod:`nfct.kernel.compare`, kept importable under
its first name."""

from nfct.kernel.compare import parse_conntrack_line

__all__ = ["parse_conntrack_line"]
