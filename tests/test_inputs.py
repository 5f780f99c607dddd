"""Captures compressed (gzip, bzip2, xz, zstd: recognised by their first bytes) and on standard
input give the replay of the plain file; a corrupt or truncated compressed file applies what
came before and names itself; a reader that stops early stops the streaming; and the
progress display shows only on a terminal."""

from __future__ import annotations

import bz2
import fcntl
import gzip
import io
import lzma
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

import nfct
import packets as P
from helpers import EXAMPLES_DIR, S, run_cli
from nfct.cli import main
from nfct.inputs import CaptureInputs, compression_of, open_decompressed, reader_takes_pipes
from nfct.pcap import iter_records, write_pcap
from nfct.progress import ProgressBar, progress_bar

MIXED = EXAMPLES_DIR / "mixed.pcap"


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return bytes(zstandard.ZstdCompressor().compress(data))


COMPRESS = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
    "zstd": _zstd,
}


def _big(tmp_path: Path, n: int = 30000) -> Path:
    """A capture of some megabytes (more than a pipe and a decompressor's chunk hold)."""
    recs = [
        (1000.0 + i * 0.001, P.udp(f"10.0.{i % 200}.{1 + i % 250}", S, 1024 + i % 60000, 53))
        for i in range(n)
    ]
    path = tmp_path / "big.pcap"
    write_pcap(path, recs)
    return path


def _replay(path: Path | str, **kw: object) -> tuple[str, str]:
    net = nfct.Net(seed=1)
    res = net.replay([path], **kw)  # type: ignore[arg-type]
    return repr(res.to_dict()), net.dump()


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_compressed_captures_replay_as_the_plain_one(kind: str, tmp_path: Path) -> None:
    data = MIXED.read_bytes()
    # Named as if it were plain: the first bytes decide.
    path = tmp_path / "mixed.pcap"
    path.write_bytes(COMPRESS[kind](data))
    assert compression_of(path.read_bytes()[:6]) == kind
    with CaptureInputs([path]) as inputs:
        assert inputs.substituted and inputs.names == [str(path)]
        assert inputs.first_tstamp() == next(iter_records(MIXED))[0]
        got = _replay(inputs.paths[0])
    assert got == _replay(MIXED)
    assert inputs.error() is None
    proc = run_cli("replay", path, "--seed", "1")
    assert proc.returncode == 0 and proc.stdout == run_cli("replay", MIXED, "--seed", "1").stdout


def test_a_plain_file_named_gz_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "plain.pcap.gz"
    path.write_bytes(MIXED.read_bytes())
    with CaptureInputs([path]) as inputs:
        assert inputs.paths == [str(path)] and not inputs.substituted


def test_standard_input(tmp_path: Path) -> None:
    want = run_cli("replay", MIXED, "--output", "packets")
    for data in (MIXED.read_bytes(), gzip.compress(MIXED.read_bytes())):
        proc = subprocess.run(
            [sys.executable, "-m", "nfct", "replay", "-", "--output", "packets"],
            input=data,
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.decode() == want.stdout
    with pytest.raises(nfct.NfctValueError, match="only once"):
        CaptureInputs(["-", "-"])


def test_names_and_relative_times_survive_the_substitution(tmp_path: Path) -> None:
    gz = tmp_path / "dns.pcap.gz"
    gz.write_bytes(gzip.compress((EXAMPLES_DIR / "dns.pcap").read_bytes()))
    plain = run_cli("replay", EXAMPLES_DIR / "dns.pcap", MIXED, "--output", "packets")
    proc = run_cli("replay", gz, MIXED, "--output", "packets")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == plain.stdout.replace(f"{EXAMPLES_DIR / 'dns.pcap'}:", f"{gz}:")
    # --at counts from the first packet of the first capture, compressed or not.
    at = ["--at", "1.5:flush", "--output", "extended", "--seed", "1"]
    assert (
        run_cli("replay", gz, *at).stdout
        == run_cli("replay", EXAMPLES_DIR / "dns.pcap", *at).stdout
    )


@pytest.mark.parametrize("mode", ["spool", "pipe"])
def test_truncated_compressed_capture(mode: str, tmp_path: Path) -> None:
    """A gzip file cut in the middle: the records before the cut are replayed (spooled), or
    read (piped), and the error names the file, the compression and where it stopped."""
    big = _big(tmp_path)
    data = gzip.compress(big.read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(data[: len(data) // 2])
    records = list(iter_records(big))
    with CaptureInputs([cut], mode=mode) as inputs:
        # The data may end inside a record (the reader says so) or between two.
        if mode == "pipe":
            got: list[tuple[float, bytes]] = []
            try:
                got.extend(iter_records(inputs.paths[0]))
            except nfct.CaptureError:
                pass
            assert 0 < len(got) < len(records) and got == records[: len(got)]
        else:
            net = nfct.Net(seed=1)
            try:
                summary = net.replay(inputs.paths)
            except nfct.CaptureError as e:
                renamed = str(inputs.rename(e))
                summary = e.summary
                assert "cut.pcap.gz" in renamed
            assert summary is not None
            assert 0 < summary.packets < len(records)
    err = inputs.error()
    assert err is not None and err.path == str(cut)
    assert str(err).startswith(f"{cut}: gzip data is corrupt or truncated: ")
    assert err.offset > 0
    proc = run_cli("replay", cut, "--output", "stats")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("nfct: ") and " packets (" in lines[0], "what was replayed"
    assert lines[-1].startswith(f"nfct: {cut}: gzip data is corrupt or truncated")


def test_corrupt_compressed_data(tmp_path: Path) -> None:
    data = bytearray(lzma.compress(MIXED.read_bytes()))
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.xz"
    bad.write_bytes(bytes(data))
    proc = run_cli("replay", bad)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(f"nfct: {bad}: xz data is corrupt or truncated")


def test_a_reader_that_stops_early_stops_the_stream(tmp_path: Path) -> None:
    """The pipe's reader closes after the first records: the streaming thread ends (no
    error, no hang) when the inputs are closed."""
    big = _big(tmp_path)
    gz = tmp_path / "big.pcap.gz"
    gz.write_bytes(gzip.compress(big.read_bytes()))
    inputs = CaptureInputs([gz], mode="pipe")
    inputs.open()
    with open(inputs.paths[0], "rb") as f:
        head = f.read(1000)
    assert head[:4] == big.read_bytes()[:4]
    done = threading.Event()
    closer = threading.Thread(target=lambda: (inputs.close(), done.set()))
    closer.start()
    assert done.wait(30), "the streaming thread did not stop"
    assert inputs.error() is None


def test_pipes_stream_every_format(tmp_path: Path) -> None:
    big = _big(tmp_path, 5000)
    want = list(iter_records(big))
    for kind, compress in COMPRESS.items():
        path = tmp_path / f"c.{kind}"
        path.write_bytes(compress(big.read_bytes()))
        with CaptureInputs([path], mode="pipe") as inputs:
            assert inputs.paths[0].startswith("/dev/fd/")
            assert inputs.first_tstamp() == want[0][0]
            assert list(iter_records(inputs.paths[0])) == want, kind


def test_the_replay_reads_a_pipe_when_it_can(tmp_path: Path) -> None:
    """Streaming straight into the replay needs a reader that does not seek back after the
    magic number; until then the compressed capture is spooled into a temporary file."""
    gz = tmp_path / "m.gz"
    gz.write_bytes(gzip.compress(MIXED.read_bytes()))
    with CaptureInputs([gz]) as inputs:
        spooled = inputs.paths[0]
        assert spooled.startswith("/dev/fd/") == reader_takes_pipes()
    if not reader_takes_pipes():
        assert not os.path.exists(spooled), "the temporary file is removed"
        pytest.skip("Net.replay cannot read a pipe yet (its reader seeks back to the start)")
    with CaptureInputs([gz], mode="pipe") as inputs:
        assert _replay(inputs.paths[0]) == _replay(MIXED)


def test_missing_zstd_module_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setitem(sys.modules, "compression", None)
    with pytest.raises(nfct.MissingExtraError, match=r"zstandard.*nfct\[cli\]"):
        open_decompressed("zstd", io.BytesIO(path.read_bytes()))
    assert main(["replay", str(path)]) == 2
    assert capsys.readouterr().err == (
        "nfct: reading zstd-compressed captures needs the zstandard package: "
        "pip install 'nfct[cli]'\n"
    )


def test_standard_input_from_a_terminal_is_refused() -> None:
    class Tty(io.BytesIO):
        def isatty(self) -> bool:
            return True

    with pytest.raises(nfct.NfctValueError, match="terminal"):
        CaptureInputs(["-"], stdin=Tty()).open()


# --- progress ----------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("use_tqdm", [False, True])
def test_progress_bar_on_a_terminal(use_tqdm: bool) -> None:
    if use_tqdm:
        pytest.importorskip("tqdm")
    out = _Terminal()
    bar = progress_bar(stream=out, use_tqdm=use_tqdm)
    assert bar.enabled and bar.uses_tqdm == use_tqdm
    bar(8192, 8000)
    bar(16384, 16000)
    text = out.getvalue()
    assert "packets" in text
    if not use_tqdm:
        assert text.startswith("\rnfct: 8k packets (8.19k frames), ") and "elapsed" in text
    bar.close()
    assert not bar.enabled


def test_progress_bar_off_when_not_a_terminal_or_quiet() -> None:
    out = io.StringIO()
    bar = progress_bar(stream=out)
    bar(8192, 8000)
    bar.close()
    assert not bar.enabled and out.getvalue() == ""
    quiet = progress_bar(stream=_Terminal(), quiet=True)
    assert not quiet.enabled
    assert isinstance(quiet, ProgressBar)


def _on_a_terminal(*args: str) -> str:
    """Runs `nfct ARGS` with standard error on a pseudo-terminal; what the terminal got."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nfct", *args],
        stdout=subprocess.DEVNULL,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(60)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_display_of_the_command(tmp_path: Path) -> None:
    big = _big(tmp_path, 20000)
    shown = _on_a_terminal("replay", str(big), "--output", "stats")
    assert "packets" in shown and "nfct: 20000 packets" in shown
    assert "/s" in shown, shown
    quiet = _on_a_terminal("replay", str(big), "--output", "stats", "--quiet")
    assert "/s" not in quiet and "nfct: 20000 packets" in quiet
    plain = run_cli("replay", big, "--output", "stats")
    assert "\r" not in plain.stderr and "/s" not in plain.stderr
