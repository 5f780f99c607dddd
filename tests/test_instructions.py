"""Instructions per packet (callgrind) against the recorded baseline: fails when replay or
`conntrack_batch` costs more than 10% over `benches/instructions.json` (update it deliberately
with `python benches/instructions.py --record`, saying why in the commit). Skips where valgrind
is missing, except in CI, which installs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benches" / "instructions.py"


def test_instructions_per_packet_within_ten_percent_of_the_baseline() -> None:
    if not shutil.which("valgrind"):
        if os.environ.get("CI"):
            pytest.fail("valgrind is not installed (make test installs it as root)")
        pytest.skip("valgrind is not installed")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--check"], capture_output=True, text=True, timeout=900
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
