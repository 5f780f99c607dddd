"""`nfct.compare.compare_tables` (issue #17): it matches entries by tuples and zone, compares
every field, and rejects an entry listed twice; inputs that must disagree do."""

from __future__ import annotations

import pytest

from nfct.compare import compare_tables, entry_key
from nfct.conntrack_text import parse_conntrack_line

BASE = (
    "ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1000 dport=80 "
    "packets=3 bytes=180 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=1000 packets=2 bytes=120 "
    "[ASSURED] mark=0 zone=0 delta-time=5 use=1"
)


def test_identical_tables_agree() -> None:
    res = compare_tables([BASE], [BASE])
    assert res.agree and res.matched == 1


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ("ESTABLISHED", "TIME_WAIT", "state"),
        ("[ASSURED]", "[ASSURED] [OFFLOAD]", "[OFFLOAD]"),
        ("[ASSURED]", "", "[ASSURED]"),
        ("431999", "431990", "timeout"),
        ("packets=3", "packets=4", "orig packets"),
        ("bytes=120", "bytes=121", "reply bytes"),
        ("mark=0", "mark=1", "mark"),
        ("use=1", "use=2", "use"),
        ("delta-time=5", "delta-time=9", "delta-time"),
        (" zone=0", "", None),  # a different zone: another entry
        ("sport=1000 dport=80", "sport=1001 dport=80", None),  # other tuples: another entry
    ],
)
def test_any_field_that_differs_disagrees(old: str, new: str, what: str | None) -> None:
    other = BASE.replace(old, new, 1)
    assert other != BASE
    res = compare_tables([BASE], [other])
    assert not res.agree, res.render()
    if what is None:
        assert res.missing and res.extra and res.matched == 0
    else:
        (diff,) = res.entry_diffs
        assert what in diff, diff


def test_tolerances() -> None:
    near = BASE.replace("431999", "431998").replace("delta-time=5", "delta-time=6")
    assert compare_tables([BASE], [near]).agree
    assert not compare_tables([BASE], [near], timeout_tolerance=0).agree


@pytest.mark.parametrize("side", ["kernel", "nfct"])
def test_an_entry_listed_twice_disagrees(side: str) -> None:
    twice, once = [BASE, BASE], [BASE]
    res = compare_tables(twice, once) if side == "kernel" else compare_tables(once, twice)
    assert not res.agree
    assert len(res.duplicates) == 1 and "listed twice" in res.render()


def test_zone_is_part_of_the_identity() -> None:
    a = entry_key(parse_conntrack_line(BASE))
    b = entry_key(parse_conntrack_line(BASE.replace("zone=0", "zone=3")))
    assert a != b
    res = compare_tables([BASE, BASE.replace("zone=0", "zone=3")], [BASE])
    assert res.missing == [res.missing[0]] and "zone=3" in res.missing[0]
