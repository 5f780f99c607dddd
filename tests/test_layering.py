"""The crate's layering, as rust/lib.rs draws it: every `crate::` path in a module's non-test
code names a module below it. A new upward import (routing under replay, the table reaching
into the core, the core into netfilter, wire into tuple) fails here, with the line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RUST = Path(__file__).resolve().parent.parent / "rust"

# Lowest first; a module may use any module of a lower rank, none of its own rank or above.
LAYERS: list[set[str]] = [
    {"uapi", "sysctl", "stats"},
    {"wire"},
    {"tuple", "defrag", "fib"},
    {"conn"},
    {"proto", "table", "format"},
    {"events"},
    {"core"},
    {"nat", "ctnetlink"},
    {"netfilter"},
    {"net"},
    {"ip", "host"},
    {"replay"},
    {"python"},
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def module_of(path: Path) -> str:
    rel = path.relative_to(RUST)
    return rel.parts[0].removesuffix(".rs")


def non_test_code(text: str) -> str:
    """The file without its `#[cfg(test)]` items (test code may reach anywhere)."""
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def crate_refs(code: str) -> list[tuple[int, str]]:
    """(line, module) of every `crate::module` named, also inside `use crate::{a, b}`."""
    refs = []
    for n, line in enumerate(code.splitlines(), 1):
        stripped = line.split("//", 1)[0]
        refs += [(n, m) for m in re.findall(r"\bcrate::(\w+)", stripped)]
        for group in re.findall(r"\bcrate::\{([^}]*)", stripped):
            refs += [(n, m) for m in re.findall(r"(?:^|,)\s*(\w+)", group)]
    return refs


SOURCES = sorted(p for p in RUST.rglob("*.rs") if p.parts[-2] != "tests" and p.name != "lib.rs")


def test_every_module_has_a_layer() -> None:
    modules = {module_of(p) for p in SOURCES}
    assert modules <= set(RANK), f"modules without a layer: {sorted(modules - set(RANK))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(RUST)))
def test_imports_point_down(path: Path) -> None:
    me = module_of(path)
    upward = [
        f"{path.relative_to(RUST)}:{line}: {me} (layer {RANK[me]}) uses {other} "
        f"(layer {RANK.get(other, '?')})"
        for line, other in crate_refs(non_test_code(path.read_text()))
        if other != me and RANK.get(other, -1) >= RANK[me]
    ]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_an_upward_import() -> None:
    code = "use crate::core::Conntrack;\nfn f() { crate::ip::run(); }\nuse crate::{uapi, replay};"
    assert [m for _, m in crate_refs(code)] == ["core", "ip", "uapi", "replay"]
