"""The report's HTML page as a reader sees it: rendered by a real headless Chromium (the Debian
package `chromium`, which `make test` installs as root), whose screenshot must have the size
asked for and enough drawn (non-white) pixels, in enough colours, to hold the plots. The
top of the screenshot is kept in target/report-screenshot.png (docs/report.png, which the README
shows, is a copy)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import IN_CI, REPO_ROOT, udp_flows
from nfct import report

np = pytest.importorskip("numpy")
pytest.importorskip("matplotlib")

WIDTH = 1200


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.geteuid() == 0 or IN_CI:
            pytest.fail("chromium is missing: `make deps` installs it as root (APT_PACKAGES)")
        pytest.skip("chromium is not installed and this is not root: sudo make system-deps")
    return path


def _screenshot(page: Path, out: Path, height: int, profile: Path) -> None:
    args = [
        _chromium(),
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{height}",
        f"--screenshot={out}",
        page.as_uri(),
    ]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]


def test_report_page_renders_in_chromium(tmp_path: Path) -> None:
    cap = udp_flows(tmp_path / "flows.pcap")
    setup = report.HostSetup(sysctl={"nf_conntrack_max": 64, "nf_conntrack_buckets": 16}, seed=3)
    fig = report.compute([cap], setup)
    assert fig["table"]["early_drops"] > 0 and fig["invalid"]["total"] > 0
    page = tmp_path / "report.html"
    report.write_html(fig, page, title="nfct report: flows.pcap")
    shot = tmp_path / "shot.png"
    height = 2600
    _screenshot(page, shot, height, tmp_path / "profile")
    from matplotlib import image

    pixels = image.imread(shot)
    assert pixels.shape[:2] == (height, WIDTH), pixels.shape
    rgb = pixels[:, :, :3]
    drawn = (rgb < 0.94).any(axis=2)
    assert drawn.mean() > 0.06, f"only {drawn.mean():.1%} of the page is drawn"
    # Every 200-pixel band of the first 2400 holds something (text, a table or a plot).
    for top in range(0, 2400, 200):
        assert drawn[top : top + 200].mean() > 0.005, f"band {top}..{top + 200} is blank"
    colours = np.unique((rgb[drawn] * 15).round().astype(np.uint8), axis=0)
    assert len(colours) > 40, "the plots' colours are missing"
    # The occupancy plot's census areas (the first series' blue, alpha-blended) are there.
    blue = (rgb[:, :, 2] > rgb[:, :, 0] + 0.15) & (rgb[:, :, 2] > 0.5)
    assert blue.sum() > 2000
    # The top of the page, for the README (a palette PNG: it is committed as docs/report.png).
    from PIL import Image

    target = REPO_ROOT / "target"
    target.mkdir(exist_ok=True)
    with Image.open(shot) as im:
        head = im.convert("RGB").crop((0, 0, WIDTH, 1150)).quantize(colors=96)
        head.save(target / "report-screenshot.png", optimize=True)
