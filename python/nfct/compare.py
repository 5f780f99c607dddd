"""``nfct.compare`` is :mod:`nfct.kernel.compare` (comparing the kernel's tables with nfct's),
kept importable under its first name."""

from nfct.kernel.compare import (
    STATS,
    Comparison,
    Key,
    compare_classes,
    compare_events,
    compare_stats,
    compare_tables,
    entry_key,
    parse_conntrack_line,
)

__all__ = [
    "STATS",
    "Comparison",
    "Key",
    "compare_classes",
    "compare_events",
    "compare_stats",
    "compare_tables",
    "entry_key",
    "parse_conntrack_line",
]
