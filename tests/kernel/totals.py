"""How much the live-kernel suite compared: counted by the tests, printed at the end of the
run by conftest.py's terminal summary."""

from __future__ import annotations

TOTALS: dict[str, int] = {"runs": 0, "packets": 0, "packet classes": 0, "entries": 0}


def add(*, packets: int = 0, classes: int = 0, entries: int = 0) -> None:
    TOTALS["runs"] += 1
    TOTALS["packets"] += packets
    TOTALS["packet classes"] += classes
    TOTALS["entries"] += entries
