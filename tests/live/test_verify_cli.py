"""`nfct verify-kernel`'s bad inputs (issue #17): a file that is not a capture, or one cut
short, is one line and exit status 2; the machine-wide sysctls (nf_conntrack_max) are set for
the kernel's run and restored, not refused with a pointer to an option only Python has."""

from __future__ import annotations

from pathlib import Path

from helpers import run_cli

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


def test_global_sysctl_from_the_command_line() -> None:
    before = MAX.read_text()
    done = run_cli("verify-kernel", DNS, "--sysctl", "nf_conntrack_max=100")
    assert done.returncode == 0, done.stderr
    assert "entries matched 5/5" in done.stdout
    assert "global" not in done.stderr
    assert MAX.read_text() == before
