"""Print what `make deps` installs from PyPI, one requirement a line: pyproject.toml's build
requirements, its runtime dependencies and the extras named on the command line, with the
extras that name nfct itself (`nfct[numpy]`) expanded, so that nfct is not built or fetched.

    python tools/dev_requirements.py test docs dist > target/requirements-dev.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# `nfct[a,b]` (optionally with a marker or spaces): a reference to nfct's own extras.
SELF = re.compile(r"^\s*nfct\s*\[([^\]]*)\]\s*$")


def requirements(extras: list[str]) -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())
    optional: dict[str, list[str]] = project["project"].get("optional-dependencies", {})
    out: list[str] = [*project["build-system"]["requires"], *project["project"]["dependencies"]]
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (has: {sorted(optional)})")
        seen.add(extra)
        for req in optional[extra]:
            own = SELF.match(req)
            if own:
                todo += [name.strip() for name in own.group(1).split(",") if name.strip()]
            else:
                out.append(req)
    return list(dict.fromkeys(out))


if __name__ == "__main__":
    print(*requirements(sys.argv[1:]), sep="\n")
