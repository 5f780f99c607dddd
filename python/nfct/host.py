"""The host file: a Linux host as its own tools print it, for ``nfct replay --host``.

One JSON object, every part optional, each part exactly what the tool prints:

* ``"addr"``: ``ip -j addr show`` (interfaces, their addresses and MTUs, up or down);
* ``"route"``: ``ip -j -4 route show table all`` and ``ip -j -6 route show table all``,
  concatenated into one array;
* ``"rule"``: ``ip -j rule show`` and ``ip -j -6 rule show`` (nfct models the default rules
  only, and says so when there are others);
* ``"ruleset"``: ``nft -j list ruleset``;
* ``"sysctl"``: ``{"net.netfilter.nf_conntrack_tcp_loose": "1", ...}``, names as ``sysctl -a``
  prints them: the conntrack ones, forwarding and rp_filter.

:func:`snapshot` takes one on a live host (no root needed, but ``nft list ruleset`` needs
CAP_NET_ADMIN: without it the ruleset is left out with a warning).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["snapshot", "snapshot_cli"]

#: The sysctl files a host file keeps (globs under /proc/sys).
SYSCTL_GLOBS = (
    "net/netfilter/*",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/*/forwarding",
    "net/ipv4/conf/*/rp_filter",
    "net/ipv6/conf/all/forwarding",
)

Runner = Callable[[Sequence[str]], str]


def _run(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"exit status {proc.returncode}")
    return proc.stdout


def _json(run: Runner, argv: Sequence[str]) -> Any:
    return json.loads(run(argv) or "null")


def snapshot(
    *,
    run: Runner = _run,
    proc_sys: Path = Path("/proc/sys"),
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The host file of the host this runs on (``run`` runs a command and returns its
    output, ``proc_sys`` is where the sysctls are read). A part that cannot be read is left
    out, and ``warn`` is told why."""

    def note(msg: str) -> None:
        if warn is not None:
            warn(msg)

    host: dict[str, Any] = {}
    ip = shutil.which("ip") or "ip"
    nft = shutil.which("nft") or "nft"
    try:
        host["addr"] = _json(run, [ip, "-j", "addr", "show"])
    except (OSError, RuntimeError, ValueError) as e:
        note(f"addr left out: ip -j addr show: {e}")
    try:
        routes: list[Any] = []
        for fam in ("-4", "-6"):
            routes += _json(run, [ip, "-j", fam, "route", "show", "table", "all"]) or []
        host["route"] = routes
        rules: list[Any] = []
        for fam in ("-4", "-6"):
            rules += _json(run, [ip, "-j", fam, "rule", "show"]) or []
        host["rule"] = rules
    except (OSError, RuntimeError, ValueError) as e:
        note(f"route left out: ip -j route show table all: {e}")
    try:
        host["ruleset"] = _json(run, [nft, "-j", "list", "ruleset"])
    except (OSError, RuntimeError, ValueError) as e:
        note(f"ruleset left out: nft -j list ruleset: {e}")
    sysctl: dict[str, str] = {}
    for pattern in SYSCTL_GLOBS:
        for path in sorted(proc_sys.glob(pattern)):
            if not path.is_file():
                continue
            try:
                value = path.read_text().strip()
            except OSError:
                continue
            name = ".".join(path.relative_to(proc_sys).parts)
            sysctl[name] = value
    if sysctl:
        host["sysctl"] = sysctl
    else:
        note(f"sysctl left out: nothing readable under {proc_sys}")
    return host


def snapshot_cli(output: str | None) -> int:
    """``nfct host-snapshot [-o FILE]``."""

    def warn(msg: str) -> None:
        print(f"nfct host-snapshot: {msg}", file=sys.stderr)

    doc = snapshot(warn=warn)
    text = json.dumps(doc, indent=1) + "\n"
    if output is None or output == "-":
        sys.stdout.write(text)
    else:
        try:
            Path(output).write_text(text)
        except OSError as e:
            print(f"nfct host-snapshot: {output}: {e.strerror or e}", file=sys.stderr)
            return 2
    return 0
