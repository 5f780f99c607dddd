"""The live namespace the harness replays into (see :mod:`nfct.kernel` for the method):
availability checks, signal handling, the machine-wide lock and global sysctls, and
:class:`KernelLab`, which creates the namespace, runs the helper (:mod:`nfct.kernel._helper`)
inside it and reads the kernel's tables back."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import importlib.resources
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Final, NamedTuple, Self

from nfct.errors import NfctError, NfctValueError, UnknownSysctlError
from nfct.kernel import _helper
from nfct.kernel._helper import COUNTER_NAMES, NFT_TABLE
from nfct.kernel.compare import STATS

__all__ = [
    "CT_CLASSES",
    "GLOBAL_SYSCTLS",
    "NFT_TABLE",
    "NS_PREFIX",
    "TUN_ADDR4",
    "TUN_NAME",
    "VETH_OUT",
    "VETH_PEER",
    "Egress",
    "KernelHarnessError",
    "KernelLab",
    "KernelUnavailable",
    "check_available",
    "global_sysctls",
    "machine_lock",
]


class KernelUnavailable(NfctError, RuntimeError):
    """The live-kernel harness cannot run here; the message names what is missing."""


class KernelHarnessError(NfctError, RuntimeError):
    """A step of the harness failed (a command, the TUN helper, the event listener)."""


# --- constants --------------------------------------------------------------------------------

#: The per-packet classes, as reported in :attr:`KernelResult.classes`.
CT_CLASSES: Final = ("new", "established", "related", "invalid", "untracked", "dropped")
#: The sysctls that are global to the machine (writable only from the initial namespace).
GLOBAL_SYSCTLS: Final = frozenset({"nf_conntrack_max", "nf_conntrack_buckets"})
_GLOBAL_ONLY: Final = GLOBAL_SYSCTLS | {"nf_conntrack_expect_max"}

NS_PREFIX: Final = "nfct-k-"
TUN_NAME: Final = "nfct0"
VETH_OUT: Final = "nfct-v0"  # the routes point here; its egress drops everything
VETH_PEER: Final = "nfct-v1"
#: The TUN device's own address: RFC 7600's "IPv4 dummy address", which no capture uses.
TUN_ADDR4: Final = "192.0.0.8"
_GW4: Final = "169.254.255.1"
_GW6: Final = "fe80::1"
_GW_MAC: Final = "02:00:5e:00:53:01"
#: With capture on, the veth's peer gets this address, so that every frame the veth sends (to
#: _GW_MAC) reaches the peer as PACKET_OTHERHOST: its packet socket sees it, then ip_rcv and
#: ipv6_rcv drop it before PRE_ROUTING. (A netdev ingress chain would drop it too, but nfct's
#: host model refuses netdev ingress chains in a snapshot.)
_PEER_MAC: Final = "02:00:5e:00:53:02"

_CMD_TIMEOUT_S: Final = 120.0
_LOCK_PATHS: Final = ("/run/lock/nfct-kernel.lock", "/tmp/nfct-kernel.lock")
_LOCK_TIMEOUT_S: Final = 900.0

# --- availability -----------------------------------------------------------------------------

_TOOL_PATH: Final = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)


def _which(tool: str) -> str | None:
    return shutil.which(tool, path=_TOOL_PATH)


_available: KernelUnavailable | bool | None = False  # False = not checked yet


def check_available() -> None:
    """Raise :class:`KernelUnavailable` unless the harness can run here (cached).

    Checks: running as root, conntrack in the kernel, ``nft``, ``conntrack`` and ``ip``
    installed, ``/dev/net/tun``, and that a network namespace can be created.
    """
    global _available
    if _available is False:
        _available = _probe()
    if isinstance(_available, KernelUnavailable):
        raise KernelUnavailable(str(_available))


def _probe() -> KernelUnavailable | None:
    if os.geteuid() != 0:
        return KernelUnavailable("not root")
    if not _conntrack_in_kernel():
        return KernelUnavailable("no conntrack in this kernel (/proc/sys/net/netfilter missing)")
    if _which("ip") is None:
        return KernelUnavailable("ip not found (apt-get install iproute2)")
    if _which("nft") is None:
        return KernelUnavailable("nft not found (apt-get install nftables)")
    if _which("conntrack") is None:
        return KernelUnavailable("conntrack not found (apt-get install conntrack)")
    if not os.path.exists("/dev/net/tun"):
        return KernelUnavailable("TUN devices unavailable (/dev/net/tun missing)")
    name = f"{NS_PREFIX}probe-{os.getpid()}-{secrets.token_hex(3)}"
    ip = _tool("ip")
    try:
        proc = subprocess.run(
            [ip, "netns", "add", name],
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return KernelUnavailable(f"network namespaces unavailable (ip netns add failed: {e})")
    if proc.returncode != 0:
        msg = proc.stderr.strip() or f"exit status {proc.returncode}"
        return KernelUnavailable(f"network namespaces unavailable (ip netns add failed: {msg})")
    subprocess.run(
        [ip, "netns", "del", name],
        capture_output=True,
        timeout=30,
        start_new_session=True,
        check=False,
    )
    return None


def _conntrack_in_kernel() -> bool:
    """Conntrack is built in or loaded, or is a module that the first nft ``ct`` rule loads."""
    if os.path.exists("/proc/sys/net/netfilter/nf_conntrack_count"):
        return True
    moddir = Path("/lib/modules") / os.uname().release / "kernel" / "net" / "netfilter"
    return any(moddir.glob("nf_conntrack.ko*"))


def _tool(name: str) -> str:
    path = _which(name)
    if path is None:
        raise KernelUnavailable(f"{name} not found")
    return path


# --- signals ----------------------------------------------------------------------------------

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143) (so `finally` clauses run) where it
    would otherwise kill the process outright."""
    if not _in_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the duration of the block (a clean-up must not be cut
    short); a signal that arrived meanwhile is re-raised right after it."""
    if not _in_main_thread():
        yield
        return
    pending: list[int] = []
    saved: dict[int, _Handler] = {}

    def record(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        saved[signum] = signal.getsignal(signum)
        signal.signal(signum, record)
    try:
        yield
    finally:
        for saved_sig, old in saved.items():
            signal.signal(saved_sig, old if old is not None else signal.SIG_DFL)
        for pending_sig in dict.fromkeys(pending):
            signal.raise_signal(pending_sig)


# --- the machine-wide lock and the global sysctls -----------------------------------------------


class _MachineLock:
    """flock on a well-known file: shared for ordinary runs, exclusive for runs that change the
    global sysctls (so that no other run sees, or restores, a value it did not set).
    Reentrant within a process in the obvious cases."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.mode = 0
        self.depth = 0

    def acquire(self, exclusive: bool) -> None:
        want = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if self.fd is not None:
            if self.mode == fcntl.LOCK_EX or want == fcntl.LOCK_SH:
                self.depth += 1
                return
            raise KernelHarnessError(
                "cannot change global sysctls while a KernelLab is open in this process"
            )
        fd = self._open()
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, want | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise KernelHarnessError(
                        "timed out waiting for another nfct kernel run (lock "
                        f"{_LOCK_PATHS[0]}) that changes global sysctls"
                    ) from None
                time.sleep(0.05)
        self.fd, self.mode, self.depth = fd, want, 1

    def release(self) -> None:
        if self.fd is None:
            return
        self.depth -= 1
        if self.depth == 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd, self.mode = None, 0

    @staticmethod
    def _open() -> int:
        last: OSError | None = None
        for path in _LOCK_PATHS:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                last = e
        raise KernelHarnessError(f"cannot open a lock file: {last}")


_LOCK = _MachineLock()


@contextlib.contextmanager
def machine_lock(exclusive: bool = True) -> Iterator[None]:
    """Hold the machine-wide harness lock: exclusive = no other harness run (in any process)
    is in progress or starts meanwhile, so the global sysctls hold their baseline values;
    runs started inside the block by this process are allowed (the lock is reentrant)."""
    _LOCK.acquire(exclusive=exclusive)
    try:
        yield
    finally:
        _LOCK.release()


def _int_value(value: object) -> int | None:
    """``value`` if it is a true int (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _global_path(name: str) -> Path:
    return Path("/proc/sys/net/netfilter") / name


@contextlib.contextmanager
def global_sysctls(values: Mapping[str, int] | None) -> Iterator[dict[str, int]]:
    """Set machine-wide conntrack sysctls (only ``nf_conntrack_max``, ``nf_conntrack_buckets``)
    for the duration of the block, then restore the saved values, also on KeyboardInterrupt,
    SIGTERM and exceptions. Holds the machine lock exclusively (no other harness run overlaps).
    Yields the saved values. With ``values`` empty or None it only takes the lock shared."""
    values = dict(values or {})
    for name, value in values.items():
        if name not in GLOBAL_SYSCTLS:
            raise NfctValueError(
                f"global_sysctl: {name!r} is not a global conntrack sysctl "
                f"(allowed: {', '.join(sorted(GLOBAL_SYSCTLS))})"
            )
        if _int_value(value) is None or value <= 0:
            raise NfctValueError(f"global_sysctl: {name} must be a positive integer, not {value!r}")
    with _sigterm_raises():
        _LOCK.acquire(exclusive=bool(values))
        try:
            saved: dict[str, int] = {}
            try:
                with _signals_deferred():
                    for name in values:
                        saved[name] = int(_global_path(name).read_text().split()[0])
                    for name, value in values.items():
                        _global_path(name).write_text(f"{value}\n")
                yield dict(saved)
            finally:
                with _signals_deferred():
                    for name, value in saved.items():
                        try:
                            _global_path(name).write_text(f"{value}\n")
                        except OSError as e:  # pragma: no cover - nothing better to do
                            print(
                                f"nfct.kernel: cannot restore {name}={value}: {e}", file=sys.stderr
                            )
        finally:
            _LOCK.release()


# --- the namespace ----------------------------------------------------------------------------


def _netfilter_name(name: str) -> str:
    bare = name.removeprefix("net.netfilter.").removeprefix("net/netfilter/")
    if not bare or "/" in bare or "." in bare:
        raise UnknownSysctlError(f"unknown sysctl {name!r}")
    return bare


def _nft_ruleset(capture: bool = False) -> str:
    """The harness's tables. With ``capture``, the veth's egress lets frames through to its
    peer (still counting them); see :data:`_PEER_MAC` for where they end."""
    counters = "".join(f"    counter {c} {{ }}\n" for c in COUNTER_NAMES)
    rules = "".join(f"        ct state {c[3:]} counter name {c}\n" for c in COUNTER_NAMES)
    egress = "".join(
        f"    chain egress_{dev.replace('-', '_')} {{\n"
        f'        type filter hook egress device "{dev}" priority filter; '
        f"policy {'accept' if capture and dev == VETH_OUT else 'drop'};\n"
        "        counter name egress_dropped\n"
        "    }\n"
        for dev in (VETH_OUT, VETH_PEER)
    )
    return (
        f"table inet {NFT_TABLE} {{\n{counters}"
        "    chain forward {\n"
        "        type filter hook forward priority filter; policy accept;\n"
        f"{rules}"
        "    }\n"
        # Packets the router delivers to itself (broadcast, all-hosts multicast) never reach
        # the forward hook; their class is what the input hook sees.
        "    chain input {\n"
        "        type filter hook input priority filter; policy accept;\n"
        f"{rules}"
        "    }\n"
        "    chain output {\n"
        "        type filter hook output priority filter; policy drop;\n"
        "    }\n"
        "}\n"
        f"table netdev {NFT_TABLE}_egress {{\n"
        "    counter egress_dropped { }\n"
        f"{egress}"
        "}\n"
    )


_IP_SETUP: Final = f"""\
link set lo up
addr add {TUN_ADDR4}/32 dev {TUN_NAME}
link add {VETH_OUT} type veth peer name {VETH_PEER}
link set {VETH_OUT} addrgenmode none
link set {VETH_PEER} addrgenmode none
link set {TUN_NAME} up
link set {VETH_OUT} up
link set {VETH_PEER} up
route add default via {_GW4} dev {VETH_OUT} onlink
neigh replace {_GW4} lladdr {_GW_MAC} dev {VETH_OUT} nud permanent
route add default via {_GW6} dev {VETH_OUT}
neigh replace {_GW6} lladdr {_GW_MAC} dev {VETH_OUT} nud permanent
"""

# Per-namespace stack settings, before the links come up (device entries after the TUN exists).
_NS_SYSCTLS: Final = (
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv4/conf/all/forwarding", "1"),
    ("net/ipv4/conf/default/forwarding", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
    (f"net/ipv4/conf/{TUN_NAME}/rp_filter", "0"),
    (f"net/ipv4/conf/{TUN_NAME}/forwarding", "1"),
    ("net/ipv6/conf/all/disable_ipv6", "0"),
    ("net/ipv6/conf/default/disable_ipv6", "0"),
    (f"net/ipv6/conf/{TUN_NAME}/disable_ipv6", "0"),
    ("net/ipv6/conf/all/forwarding", "1"),
    ("net/ipv6/conf/default/forwarding", "1"),
    ("net/ipv6/conf/all/accept_ra", "0"),
    ("net/ipv6/conf/default/accept_ra", "0"),
)


class Egress(NamedTuple):
    """A packet that left the lab's stack (:meth:`KernelLab.captured`): its bytes from the IP
    header, the number (from 0) of the written packet whose write it followed, and the device
    it left by (the TUN device, or :data:`VETH_OUT`)."""

    data: bytes
    packet: int
    dev: str


class KernelLab:
    """A live namespace set up for replay (see the module docstring); a context manager.

    ``with KernelLab({"nf_conntrack_checksum": 0}) as lab:`` then ``lab.send(packet)``,
    ``lab.lines()``, ``lab.stats()``, ``lab.exec("ip", "-o", "link")``... The namespace (and the
    helper and listener processes in it) is removed on exit, also on KeyboardInterrupt/SIGTERM.
    With ``capture=True`` the packets leaving the stack are kept for :meth:`captured`.
    """

    def __init__(
        self,
        sysctl: Mapping[str, int] | None = None,
        *,
        name: str | None = None,
        capture: bool = False,
    ):
        check_available()
        #: Whether the packets leaving the stack are captured (:meth:`captured`).
        self.capture = capture
        self.sysctl: dict[str, int] = {}
        for key, value in (sysctl or {}).items():
            bare = _netfilter_name(key)
            if bare in _GLOBAL_ONLY:
                raise NfctValueError(
                    f"{bare} is global to the machine: pass it as global_sysctl, not sysctl"
                )
            if _int_value(value) is None:
                raise NfctValueError(f"sysctl {bare}: value must be an int, not {value!r}")
            self.sysctl[bare] = value
        self.ns = name or f"{NS_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.tun = TUN_NAME
        self.veth = (VETH_OUT, VETH_PEER)
        self._ip = _tool("ip")
        self._nft = _tool("nft")
        self._conntrack = _tool("conntrack")
        self._helper: subprocess.Popen[bytes] | None = None
        self._ns_created = False
        self._locked = False
        self._tmpdir: str | None = None
        self._events_path: str | None = None
        #: Events the kernel could not deliver to the last listener (netlink drops).
        self.events_lost = 0
        self._stack = contextlib.ExitStack()

    # -- lifecycle

    def __enter__(self) -> Self:
        self._stack.enter_context(_sigterm_raises())
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Create and configure the namespace (called by ``__enter__``)."""
        _LOCK.acquire(exclusive=False)
        self._locked = True
        _sweep_stale_namespaces(self._ip)
        with _signals_deferred():
            self._run([self._ip, "netns", "add", self.ns])
            self._ns_created = True
        self._tmpdir = tempfile.mkdtemp(prefix="nfct-kernel-")
        # The helper is this package's _helper.py, run as a script by the same interpreter
        # (isolated and without site: it needs the standard library only).
        script = importlib.resources.files("nfct.kernel").joinpath("_helper.py")
        helper_path = self._stack.enter_context(importlib.resources.as_file(script))
        self._helper = subprocess.Popen(
            [
                self._ip,
                "netns",
                "exec",
                self.ns,
                sys.executable,
                "-I",
                "-S",
                os.fspath(helper_path),
                self.tun,
                self._conntrack,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._reply()  # the TUN device exists
        for path, text in _NS_SYSCTLS:
            self.write_sysctl(path, text)
        self._run([self._ip, "-n", self.ns, "-batch", "-"], input=_IP_SETUP)
        self.write_sysctl(f"net/ipv4/conf/{VETH_OUT}/rp_filter", "0")
        for name, value in self.sysctl.items():
            try:
                self.write_sysctl(f"net/netfilter/{name}", str(value))
            except KernelHarnessError as e:
                if not os.path.exists(f"/proc/sys/net/netfilter/{name}"):
                    raise UnknownSysctlError(f"unknown sysctl {name!r}") from e
                raise
        self.nft_apply(_nft_ruleset(self.capture))
        if self.capture:
            self._run([self._ip, "-n", self.ns, "link", "set", VETH_PEER, "address", _PEER_MAC])
            self._request(_helper.OP_CAPTURE_START, VETH_PEER.encode())

    def close(self) -> None:
        """Stop the helper (and the listener), delete the namespace; idempotent."""
        with _signals_deferred():
            helper, self._helper = self._helper, None
            if helper is not None:
                _stop_process(helper)
            if self._ns_created:
                self._ns_created = False
                subprocess.run(
                    [self._ip, "netns", "del", self.ns],
                    capture_output=True,
                    timeout=_CMD_TIMEOUT_S,
                    start_new_session=True,
                    check=False,
                )
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            if self._locked:
                self._locked = False
                _LOCK.release()
            self._stack.close()

    # -- commands in the namespace

    def exec(self, *argv: str, input: str | None = None, check: bool = True) -> str:
        """Run a command inside the namespace (``ip netns exec``); returns its stdout."""
        tool = _which(argv[0]) or argv[0]
        proc = self._run(
            [self._ip, "netns", "exec", self.ns, tool, *argv[1:]], input=input, check=check
        )
        return proc.stdout

    def host_snapshot(self) -> dict[str, Any]:
        """The namespace as a host file (``nfct host-snapshot`` run inside it)."""
        proc = self._run(
            [self._ip, "netns", "exec", self.ns, sys.executable, "-m", "nfct", "host-snapshot"]
        )
        doc = json.loads(proc.stdout)
        assert isinstance(doc, dict)
        return doc

    def nft_apply(self, ruleset: str) -> None:
        """Load an nft ruleset (``nft -f -``) in the namespace."""
        self._run([self._ip, "netns", "exec", self.ns, self._nft, "-f", "-"], input=ruleset)

    def write_sysctl(self, path: str, value: str | int) -> None:
        """Write ``/proc/sys/<path>`` of the namespace (``path`` with / or . separators)."""
        if "/" not in path:
            path = path.replace(".", "/")
        self._request(_helper.OP_SYSCTL, f"{path}\0{value}".encode())

    def read_file(self, path: str) -> str:
        """Read a file as seen from inside the namespace (e.g. /proc/net/stat/nf_conntrack)."""
        reply = self._request(_helper.OP_READ, path.encode())
        return str(reply["text"])

    # -- packets

    def send(self, packet: bytes, *, classify: bool = False) -> None:
        """Queue one IP packet for writing to the TUN device (in order). With ``classify``, its
        ct state class is recorded (see :meth:`summary`)."""
        helper = self._live()
        assert helper.stdin is not None
        op = _helper.OP_PACKET_CLASSIFY if classify else _helper.OP_PACKET
        try:
            helper.stdin.write(_helper.FRAME.pack(op, len(packet)))
            helper.stdin.write(packet)
        except BrokenPipeError:
            raise KernelHarnessError(f"the TUN helper died: {self._helper_stderr()}") from None

    def flush(self) -> None:
        """Hand the queued packets to the helper now (it writes them as they arrive)."""
        helper = self._live()
        assert helper.stdin is not None
        try:
            helper.stdin.flush()
        except BrokenPipeError:
            raise KernelHarnessError(f"the TUN helper died: {self._helper_stderr()}") from None

    def summary(self) -> tuple[int, int, str | None, list[str]]:
        """(packets written, write errors, first error, classes of the classified packets)
        since the last call; waits until every queued packet has been written."""
        reply = self._request(_helper.OP_SUMMARY, b"")
        names = dict(zip(_helper.CLASS_CODES, CT_CLASSES, strict=True))
        classes = [names[ch] for ch in str(reply["classes"])]
        first = reply.get("first_error")
        return (
            int(reply["sent"]),
            int(reply["errors"]),
            None if first is None else str(first),
            classes,
        )

    def counters(self) -> dict[str, int]:
        """The forward chain's ct state counters (packets), by class name."""
        raw = self._request(_helper.OP_COUNTERS, b"")["counters"]
        assert isinstance(raw, dict)
        return {name[3:]: int(raw.get(name, 0)) for name in COUNTER_NAMES}

    def named_counters(self) -> dict[str, int]:
        """Every named counter of the harness's table ``inet nfct`` (packets), its ct state
        counters and any a test added to that table, read over nfnetlink (no process): cheap
        enough to call after every packet."""
        raw = self._request(_helper.OP_COUNTERS, b"")["counters"]
        assert isinstance(raw, dict)
        return {str(name): int(value) for name, value in raw.items()}

    def nft_counters(self, table: str = NFT_TABLE, family: str = "inet") -> dict[str, int]:
        """Named counters of a table as ``nft -j list counters`` reports them (packets)."""
        out = self.exec("nft", "-j", "list", "counters", "table", family, table)
        doc = json.loads(out)
        result: dict[str, int] = {}
        for item in doc.get("nftables", []):
            counter = item.get("counter")
            if isinstance(counter, dict):
                result[str(counter["name"])] = int(counter["packets"])
        return result

    def captured(self) -> list[Egress]:
        """With ``capture=True``: the packets that left the stack since the last call, in the
        order they left: routed out of the TUN device, or sent by :data:`VETH_OUT` (seen by
        a packet socket on :data:`VETH_PEER`). Each carries the number of the packet (counted
        from 0 since the lab opened) whose write it followed: the kernel forwards a packet
        written to the TUN device within the write, so that is the packet that made it leave
        (a fragment the kernel held makes nothing leave; the one completing the datagram makes
        all of its fragments leave)."""
        if not self.capture:
            raise KernelHarnessError("the lab does not capture: KernelLab(capture=True)")
        frames = self._request(_helper.OP_CAPTURE_READ, b"")["frames"]
        assert isinstance(frames, list)
        # Frames the veth sent were seen on its peer: name the device they left by.
        return [
            Egress(base64.b64decode(data), int(index), VETH_OUT if dev == VETH_PEER else str(dev))
            for index, dev, data in frames
        ]

    # -- events

    def events_start(self) -> None:
        """Start ``conntrack -E -o timestamp,extended``; returns once it is subscribed."""
        assert self._tmpdir is not None
        self._events_path = os.path.join(self._tmpdir, f"events-{secrets.token_hex(3)}.txt")
        self._request(_helper.OP_EVENTS_START, self._events_path.encode())

    def events_stop(self) -> list[str]:
        """Stop the listener (SIGTERM) and return the lines it printed."""
        reply = self._request(_helper.OP_EVENTS_STOP, b"")
        drops = reply.get("drops")
        self.events_lost = int(drops) if isinstance(drops, int) else 0
        path, self._events_path = self._events_path, None
        if path is None:
            return []
        text = Path(path).read_text(errors="replace")
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []

    # -- the table

    def lines(self) -> list[str]:
        """``conntrack -L -o extended`` in the namespace, line by line."""
        out = self.exec("conntrack", "-L", "-o", "extended")
        return out.splitlines()

    def stats(self) -> dict[str, int]:
        """``conntrack -S`` summed over the CPUs."""
        return _parse_stats(self.exec("conntrack", "-S"))

    def count(self) -> int:
        """``nf_conntrack_count`` of the namespace (including unconfirmed entries)."""
        return int(self.read_file("/proc/sys/net/netfilter/nf_conntrack_count").split()[0])

    def egress_dropped(self) -> int:
        """Packets dropped at the veth egress (i.e. forwarded out of the namespace's stack); with
        ``capture=True``, the packets that passed it to the peer."""
        return self.nft_counters(f"{NFT_TABLE}_egress", "netdev").get("egress_dropped", 0)

    # -- plumbing

    def _live(self) -> subprocess.Popen[bytes]:
        if self._helper is None:
            raise KernelHarnessError("the KernelLab is not open")
        return self._helper

    def _request(self, op: int, payload: bytes) -> dict[str, Any]:
        helper = self._live()
        assert helper.stdin is not None
        try:
            helper.stdin.write(_helper.FRAME.pack(op, len(payload)) + payload)
            helper.stdin.flush()
        except BrokenPipeError:
            raise KernelHarnessError(f"the TUN helper died: {self._helper_stderr()}") from None
        reply = self._reply()
        return reply

    def _reply(self) -> dict[str, Any]:
        helper = self._live()
        assert helper.stdout is not None
        head = _read_exact(helper.stdout, 4)
        body = _read_exact(helper.stdout, struct.unpack("!I", head)[0]) if len(head) == 4 else b""
        if len(head) < 4 or not body:
            raise KernelHarnessError(f"the TUN helper died: {self._helper_stderr()}")
        reply = json.loads(body)
        if not isinstance(reply, dict):
            raise KernelHarnessError(f"bad reply from the TUN helper: {reply!r}")
        if "error" in reply:
            raise KernelHarnessError(str(reply["error"]))
        return reply

    def _helper_stderr(self) -> str:
        helper = self._helper
        if helper is None or helper.stderr is None:
            return "(no helper)"
        try:
            helper.wait(5)
        except subprocess.TimeoutExpired:
            return "(helper still running but not answering)"
        err = helper.stderr.read().decode(errors="replace").strip()
        return err or f"exit status {helper.returncode}"

    def _run(
        self, argv: list[str], *, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=_CMD_TIMEOUT_S,
            start_new_session=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KernelHarnessError(
                f"{' '.join(argv[:8])}{' ...' if len(argv) > 8 else ''} failed "
                f"(exit status {proc.returncode}): {proc.stderr.strip()}"
            )
        return proc


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    chunks: list[bytes] = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """End a helper we started: EOF on its stdin, then SIGTERM, then SIGKILL."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    for step in ("wait", "term", "kill"):
        if step == "term":
            with contextlib.suppress(OSError):
                proc.terminate()
        elif step == "kill":
            with contextlib.suppress(OSError):
                proc.kill()
        try:
            proc.wait(5)
            break
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _sweep_stale_namespaces(ip: str) -> None:
    """Remove namespaces left by harness runs whose process is gone (e.g. killed with SIGKILL)
    and in which no process remains. Never touches another live run's namespace."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        m = re.fullmatch(re.escape(NS_PREFIX) + r"(?:probe-)?(\d+)-[0-9a-f]+", name)
        if m is None or int(m.group(1)) == os.getpid() or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        pids = subprocess.run(
            [ip, "netns", "pids", name],
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
            check=False,
        )
        if pids.returncode == 0 and not pids.stdout.strip():
            subprocess.run(
                [ip, "netns", "del", name],
                capture_output=True,
                timeout=30,
                start_new_session=True,
                check=False,
            )


def _parse_stats(text: str) -> dict[str, int]:
    totals = dict.fromkeys(STATS, 0)
    for line in text.splitlines():
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep and key != "cpu" and value.isdigit():
                totals[key] = totals.get(key, 0) + int(value)
    return totals
