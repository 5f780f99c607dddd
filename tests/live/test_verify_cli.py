"""`nfct verify-kernel`'s bad inputs (issue #17): a file that is not a capture, or one cut
short, is one line and exit status 2; the machine-wide sysctls (nf_conntrack_max) are set for
the kernel's run and restored, not refused with a pointer to an option only Python has."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from helpers import run_cli
from nfct.kernel import machine_lock

ROOT = Path(__file__).resolve().parents[2]
DNS = ROOT / "examples" / "dns.pcap"
MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")


def test_not_a_capture_and_a_truncated_one(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"hello, not a capture at all" * 4)
    done = run_cli("verify-kernel", junk)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"nfct verify-kernel: {junk}: not a pcap or pcapng file (first bytes 68 65 6c 6c) "
        "at byte offset 0"
    ]
    data = DNS.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2])
    done = run_cli("verify-kernel", cut)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"nfct verify-kernel: {cut}: truncated record") and "byte offset" in line


# Another harness run that sets nf_conntrack_max for a while (under the machine lock, as
# global_sysctls does) and then restores it.
OTHER_RUN = """
import sys, time
from pathlib import Path
from nfct.kernel import global_sysctls, machine_lock

with machine_lock():
    value = int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text()) + 1000
    with global_sysctls({"nf_conntrack_max": value}):
        Path(sys.argv[1]).touch()
        time.sleep(1)
"""


def test_global_sysctl_from_the_command_line(tmp_path: Path) -> None:
    """The machine-wide value is read, and put back if the command left it changed, under the
    machine lock: another run may hold the lock with a value of its own meanwhile (one does
    here), which is not the value to compare with. Not held across the command, which takes
    the lock itself (exclusively, in its own process)."""
    inside = tmp_path / "inside"
    other = subprocess.Popen([sys.executable, "-c", OTHER_RUN, str(inside)])
    try:
        deadline = time.monotonic() + 120
        while not inside.exists() and other.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert inside.exists(), "the other run never got to set its value"
        with machine_lock():
            before = MAX.read_text()
        done = run_cli("verify-kernel", DNS, "--sysctl", "nf_conntrack_max=100")
        with machine_lock():
            after = MAX.read_text()
            if after != before:
                MAX.write_text(before)  # the machine as it was, for the runs after this one
    finally:
        assert other.wait(120) == 0
    assert done.returncode == 0, done.stderr
    assert "entries matched 5/5" in done.stdout
    assert "global" not in done.stderr
    assert after == before
