"""Records what the live kernel does with the scenario sequences whose expectations are
recorded (each module's RECORD), and writes them into the module's RECORDED block.

    cd tests && python -m scenarios.record [-k TEXT] [--check] [--format-only]   # as root

Needs what the live suite needs (root, network namespaces, nft, conntrack). Each sequence runs
through a fresh namespace (nfct.kernel.run_packets, classifying every packet); the outcome is
its classes, its `conntrack -L -o extended` lines and its non-zero counters. "NAME, checksum=0"
is written only where it differs from NAME. `--check` writes nothing and exits 1 when an
outcome changed; `-k` records only the sequences whose name contains TEXT (the others keep
what they had); `--format-only` rewrites the blocks as they are, without a kernel. Review the
diff: a recorded outcome is what the tests then hold nfct to.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from scenarios import base

base.RECORDING = True

from helpers import nonzero  # noqa: E402
from nfct import kernel  # noqa: E402
from nfct.compare import compare_tables  # noqa: E402
from scenarios.base import Outcome, Recorded  # noqa: E402

MODULES = (
    "scenarios.tcp",
    "scenarios.udp_icmp",
    "scenarios.sctp",
    "scenarios.gre",
    "scenarios.defrag",
)
BEGIN = "# --- recorded from the live kernel by tests/scenarios/record.py"
END = "# --- end of the recorded outcomes"


def observe(seq: base.RecordedSequence, sysctl: dict[str, int]) -> Outcome:
    k = kernel.run_packets(
        seq.build(), sysctl=sysctl, per_packet=True, pace=bool(seq.options.get("pace"))
    )
    assert k.classes is not None and k.write_errors == 0
    return Outcome(classes=tuple(k.classes), table=tuple(sorted(k.lines)), stats=nonzero(k.stats))


def same(a: Outcome, b: Outcome) -> bool:
    """The same outcome, timeouts within 2 s (as the tests compare tables)."""
    tables = compare_tables(a.table, b.table)
    return a.classes == b.classes and dict(a.stats) == dict(b.stats) and tables.agree


def _q(text: str) -> str:
    return json.dumps(text)


def _string(text: str, indent: str, width: int = 96) -> list[str]:
    """A long string as implicitly concatenated pieces broken at spaces."""
    pieces = textwrap.wrap(text, width - len(indent) - 3, drop_whitespace=False)
    return [f"{indent}{_q(piece)}" for piece in pieces] or [f'{indent}""']


def render(outcomes: dict[str, Outcome]) -> str:
    out = ["RECORDED: dict[str, Outcome] = {"]
    for name, o in outcomes.items():
        out.append(f"    {_q(name)}: Outcome(")
        classes = ", ".join(_q(c) for c in o.classes) + ("," if len(o.classes) == 1 else "")
        out.append(f"        classes=({classes}),")
        if o.table:
            out.append("        table=(")
            for line in o.table:
                out += _string(line, " " * 12)
                out[-1] += ","
            out.append("        ),")
        if o.stats:
            stats = ", ".join(f"{_q(k)}: {v}" for k, v in o.stats.items())
            out.append(f"        stats={{{stats}}},")
        out.append("    ),")
    out.append("}")
    return "\n".join(out) + "\n"


def record(module: ModuleType, only: str | None) -> tuple[dict[str, Outcome], list[str]]:
    rec: Recorded = module.RECORD
    old: dict[str, Outcome] = dict(module.RECORDED)
    new: dict[str, Outcome] = {}
    changed: list[str] = []
    for seq in rec.sequences:
        variants = seq.variants()
        for label, sysctl in variants:
            if only is not None and only not in seq.name:
                fallback = old.get(label) or old.get(seq.name)
                if fallback is not None:
                    new[label] = fallback
                continue
            outcome = observe(seq, sysctl)
            before = old.get(label) or old.get(seq.name)
            if before is not None and same(before, outcome):
                outcome = before  # no churn from a timeout listed a second off
            else:
                changed.append(label)
            print(f"{label}: {outcome.classes} {outcome.stats}", file=sys.stderr)
            new[label] = outcome
        if len(variants) == 2:
            (on, _), (off, _) = variants
            if on in new and new.get(off) == new[on]:
                del new[off]
    return new, changed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", dest="only", help="only sequences whose name contains this")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 on changes")
    ap.add_argument(
        "--format-only", action="store_true", help="rewrite the blocks as they are (no kernel)"
    )
    args = ap.parse_args()
    if not args.format_only:
        kernel.check_available()
    all_changed: list[str] = []
    for name in MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, "RECORD"):
            continue
        changed: list[str] = []
        if args.format_only:
            outcomes = dict(module.RECORDED)
        else:
            outcomes, changed = record(module, args.only)
        all_changed += changed
        if args.check:
            continue
        path = Path(module.__file__ or "")
        text = path.read_text()
        start = text.index(BEGIN)
        start = text.index("\n", start) + 1
        end = text.index(END)
        path.write_text(text[:start] + render(outcomes) + text[end:])
        subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(path)], check=False)
    for label in all_changed:
        print(f"changed: {label}")
    return 1 if args.check and all_changed else 0


if __name__ == "__main__":
    sys.exit(main())
