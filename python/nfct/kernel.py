"""The live kernel as the judge: replay IP packets through Linux's own conntrack.

Method (kernel-conntrack.md §17, TUN variant): one private network namespace holding only

* ``lo``;
* a TUN device (``IFF_TUN | IFF_NO_PI``) whose file descriptor belongs to a small helper
  process running inside the namespace: every IP packet written to it enters the namespace
  through PRE_ROUTING exactly as if it had been received. It has the IPv4 address 192.0.0.8/32
  and keeps the IPv6 link-local address the kernel gives it, so that, as in the reference
  harness, a packet to a link-local destination is routed back out of the TUN itself (the
  kernel forwards it, sends an ND redirect, and conntrack confirms the entry);
* a veth pair whose two ends are both in the namespace; the default IPv4 and IPv6 routes
  point into one end (through a permanent fake neighbour, so no neighbour resolution), and an
  nft ``netdev`` egress hook on both ends drops every frame. A forwarded packet therefore
  passes PRE_ROUTING, FORWARD and POST_ROUTING (where conntrack confirms its entry) and then
  vanishes;
* nft table ``inet nfct``: a forward chain with one named counter per ``ct state`` (an nft
  ``ct`` expression is what enables conntrack in the namespace), and an output chain dropping
  everything so the namespace never answers.

The namespace has no link to the host's network: whatever the addresses in the packets, nothing
leaves it. Forwarding is on and ``rp_filter`` off, per namespace. The netfilter sysctls given as
``sysctl`` are written to the namespace's own ``/proc/sys/net/netfilter``. The two global knobs
(``nf_conntrack_max``, ``nf_conntrack_buckets``) are only touched when asked (``global_sysctl``)
and always restored, also on KeyboardInterrupt and SIGTERM; runs that change them exclude
every other harness run on the machine (an ``flock`` on ``/run/lock/nfct-kernel.lock``).

Afterwards ``conntrack -L -o extended``, ``conntrack -S`` and ``nf_conntrack_count`` are read in
the namespace; ``conntrack -E -o timestamp,extended`` runs during the replay (started, and seen
subscribed, before the first packet: with the default ``nf_conntrack_events=2`` only entries
created while a listener exists ever produce events). conntrack-tools 1.4.7 leaves its event
socket at ``net.core.rmem_default`` whatever ``-b`` says, so a fast replay overruns it and the
kernel drops events (ENOBUFS; the reference logs in shared/pcaps/kernel/ of the larger captures
lost events that way). The writer therefore pauses whenever the listener's socket holds more
than a quarter of its buffer, until it has drained: the log is complete, and
:attr:`KernelResult.events_lost` (the socket's drop count) says so.

Typical cost: about 0.1 s to set up and tear down the namespace plus a 0.3 s settle before
reading the results, so 0.4-0.5 s per capture of the shared set (0.75 s for the 82,582 packets of
zeek-echo-connections). ``per_packet`` adds about 55 us per packet (the counters are read over
nfnetlink by the helper inside the namespace, not by running ``nft``).

Entry points: :func:`run_packets`, :func:`run_capture`, :class:`KernelLab` (the live namespace,
for tests that want to look inside), :func:`iter_capture_ip` (the IP packets of a pcap/pcapng
file, extracted as nfct does, except IP inside MPLS, which the reference harness did not send),
:func:`check_available`.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, BinaryIO, Final, Self

from nfct.compare import STATS
from nfct.errors import CaptureError, NfctError, NfctValueError, UnknownSysctlError

__all__ = [
    "CT_CLASSES",
    "GLOBAL_SYSCTLS",
    "NFT_TABLE",
    "NS_PREFIX",
    "TUN_NAME",
    "VETH_OUT",
    "VETH_PEER",
    "KernelHarnessError",
    "KernelLab",
    "KernelResult",
    "KernelUnavailable",
    "check_available",
    "global_sysctls",
    "iter_capture_frames",
    "iter_capture_ip",
    "machine_lock",
    "run_capture",
    "run_packets",
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
_STAT_KEYS: Final = STATS

NS_PREFIX: Final = "nfct-k-"
TUN_NAME: Final = "nfct0"
VETH_OUT: Final = "nfct-v0"  # the routes point here; its egress drops everything
VETH_PEER: Final = "nfct-v1"
#: The TUN device's own address: RFC 7600's "IPv4 dummy address", which no capture uses.
TUN_ADDR4: Final = "192.0.0.8"
_GW4: Final = "169.254.255.1"
_GW6: Final = "fe80::1"
_GW_MAC: Final = "02:00:5e:00:53:01"
NFT_TABLE: Final = "nfct"
_COUNTER_NAMES: Final = ("ct_new", "ct_established", "ct_related", "ct_invalid", "ct_untracked")

_SETTLE_S: Final = 0.3
_CMD_TIMEOUT_S: Final = 120.0
_LOCK_PATHS: Final = ("/run/lock/nfct-kernel.lock", "/tmp/nfct-kernel.lock")
_LOCK_TIMEOUT_S: Final = 900.0

# Helper protocol (parent -> helper): 1-byte op, 4-byte length, payload.
_OP_PACKET: Final = 1
_OP_PACKET_CLASSIFY: Final = 2
_OP_SYSCTL: Final = 3
_OP_COUNTERS: Final = 4
_OP_SUMMARY: Final = 5
_OP_EVENTS_START: Final = 6
_OP_EVENTS_STOP: Final = 7
_OP_READ: Final = 8
_FRAME: Final = struct.Struct("!BI")

# --- the helper that lives in the namespace ---------------------------------------------------

# Runs as `ip netns exec NS python3 -I -S -c _HELPER TUN CONNTRACK`. It opens the TUN device
# (which is thus created inside the namespace), then serves frames read from stdin: packets to
# write (optionally classifying each by which nft counter moved, read over nfnetlink: no process
# per packet), sysctl writes, file reads, and the `conntrack -E` listener's start and stop (the
# listener is its child, so it dies with it). Replies: 4-byte length + JSON.
_HELPER: Final = r"""
import fcntl, json, os, signal, socket, struct, subprocess, sys, time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
NAMES = ("ct_new", "ct_established", "ct_related", "ct_invalid", "ct_untracked")
CODES = "neriud"
TABLE = b"nfct\0"
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFT_MSG_GETOBJ = (10 << 8) | 19
NFPROTO_INET = 1


def main():
    ifname, conntrack = sys.argv[1], sys.argv[2]
    inp, out = sys.stdin.buffer, sys.stdout.buffer

    def reply(obj):
        data = json.dumps(obj).encode()
        out.write(struct.pack("!I", len(data)) + data)
        out.flush()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as e:
        reply({"error": "cannot create TUN device %s: %s" % (ifname, e)})
        return
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    nl.bind((0, 0))
    seq = [0]

    def counters():
        seq[0] += 1
        attr = struct.pack("=HH", 4 + len(TABLE), 1) + TABLE + b"\0" * (-len(TABLE) % 4)
        attr += struct.pack("=HH", 8, 3) + struct.pack("!I", 1)  # NFTA_OBJ_TYPE = counter
        body = struct.pack("=BBH", NFPROTO_INET, 0, 0) + attr
        nl.send(struct.pack("=IHHII", 16 + len(body), NFT_MSG_GETOBJ,
                            NLM_F_REQUEST | NLM_F_DUMP, seq[0], 0) + body)
        result = {}
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _flags, s, _pid = struct.unpack_from("=IHHII", data, off)
                if ln < 16:
                    raise OSError("bad netlink message")
                if s != seq[0]:
                    off += (ln + 3) & ~3
                    continue
                if typ == NLMSG_DONE:
                    return result
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(-err, "nft counter dump: " + os.strerror(-err))
                    return result
                pos, end, name, packets = off + 20, off + ln, None, None
                while pos + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, pos)
                    if alen < 4:
                        break
                    atype &= 0x3FFF
                    val = data[pos + 4:pos + alen]
                    if atype == 2:  # NFTA_OBJ_NAME
                        name = val.rstrip(b"\0").decode()
                    elif atype == 4:  # NFTA_OBJ_DATA (nested counter attributes)
                        q = 0
                        while q + 4 <= len(val):
                            l2, t2 = struct.unpack_from("=HH", val, q)
                            if l2 < 4:
                                break
                            if t2 & 0x3FFF == 2:  # NFTA_COUNTER_PACKETS
                                packets = struct.unpack_from("!Q", val, q + 4)[0]
                            q += (l2 + 3) & ~3
                    pos += (alen + 3) & ~3
                if name is not None and packets is not None:
                    result[name] = packets
                off += (ln + 3) & ~3

    listener = None
    listener_err = None
    watch = None  # the listener's socket inode, while it runs
    try:
        with open("/proc/sys/net/core/rmem_default") as f:
            rcvbuf = int(f.read())
    except (OSError, ValueError):
        rcvbuf = 212992
    high, low = rcvbuf // 4, rcvbuf // 16
    since_check = 0

    def drain(limit):
        # conntrack -E (1.4.7) keeps its event socket at rmem_default whatever -b says: do not
        # let events pile up beyond a quarter of it, or the kernel drops them (ENOBUFS).
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and listener is not None and listener.poll() is None:
            socks = netlink_sockets()
            if watch not in socks or socks[watch][0] <= limit:
                return
            time.sleep(0.0002)

    sent = errors = 0
    first_error = None
    classes = bytearray()
    last = None
    reply({"ok": True, "pid": os.getpid()})
    try:
        while True:
            hdr = inp.read(5)
            if len(hdr) < 5:
                break
            op, n = struct.unpack("!BI", hdr)
            payload = inp.read(n) if n else b""
            if len(payload) < n:
                break
            if op == 1 or op == 2:
                if op == 2 and last is None:
                    last = counters()
                try:
                    os.write(fd, payload)
                    sent += 1
                    written = True
                except OSError as e:
                    errors += 1
                    written = False
                    if first_error is None:
                        first_error = str(e)
                if watch is not None:
                    since_check += 1
                    if since_check >= 4:
                        since_check = 0
                        socks = netlink_sockets()
                        if watch in socks and socks[watch][0] > high:
                            drain(low)
                if op == 2:
                    now = counters() if written else last
                    code = "d"
                    for i, name in enumerate(NAMES):
                        if now.get(name, 0) != last.get(name, 0):
                            code = CODES[i]
                            break
                    classes.append(ord(code))
                    last = now
            elif op == 3:
                path, _, value = payload.decode().partition("\0")
                try:
                    with open("/proc/sys/" + path, "w") as f:
                        f.write(value)
                    reply({"ok": True})
                except OSError as e:
                    reply({"error": "%s=%s: %s" % (path, value, e)})
            elif op == 4:
                try:
                    reply({"ok": True, "counters": counters()})
                except OSError as e:
                    reply({"error": str(e)})
            elif op == 5:
                reply({"ok": True, "sent": sent, "errors": errors, "first_error": first_error,
                       "classes": classes.decode()})
                sent = errors = 0
                first_error = None
                classes = bytearray()
                last = None
            elif op == 6:
                path = payload.decode()
                args = [conntrack, "-E", "-o", "timestamp,extended", "-b", "16777216"]
                listener_err = open(path + ".stderr", "wb")
                with open(path, "wb") as fout:
                    listener = subprocess.Popen(args, stdout=fout, stderr=listener_err,
                                                stdin=subprocess.DEVNULL)
                deadline = time.monotonic() + 10.0
                watch = None
                while watch is None and time.monotonic() < deadline and listener.poll() is None:
                    watch = subscribed(listener.pid)
                    if watch is None:
                        time.sleep(0.005)
                if watch is not None:
                    reply({"ok": True, "pid": listener.pid})
                else:
                    stop(listener)
                    listener = None
                    reply({"error": "conntrack -E did not subscribe to conntrack events"})
            elif op == 7:
                drops = None
                if listener is not None:
                    drain(0)
                    drops = netlink_sockets().get(watch, (0, None))[1]
                rc = stop(listener) if listener is not None else None
                listener = watch = None
                reply({"ok": True, "rc": rc, "drops": drops})
            elif op == 8:
                try:
                    with open(payload.decode()) as f:
                        reply({"ok": True, "text": f.read()})
                except OSError as e:
                    reply({"error": str(e)})
            else:
                reply({"error": "unknown op %d" % op})
    finally:
        if listener is not None:
            stop(listener)
        os.close(fd)


def netlink_sockets():
    # inode -> (rmem, drops) of the NETLINK_NETFILTER sockets bound to multicast groups
    result = {}
    with open("/proc/self/net/netlink") as f:
        next(f)
        for line in f:
            cols = line.split()
            if len(cols) >= 10 and cols[1] == "12" and int(cols[3], 16):
                result[cols[9]] = (int(cols[4]), int(cols[8]))
    return result


def subscribed(pid):
    # The listener's socket bound to conntrack event groups (its inode), or None.
    inodes = set()
    try:
        for fdname in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fdname))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for inode in netlink_sockets():
            if inode in inodes:
                return inode
    except (OSError, ValueError, StopIteration):
        return None
    return None


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


main()
"""


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


def _nft_ruleset() -> str:
    counters = "".join(f"    counter {c} {{ }}\n" for c in _COUNTER_NAMES)
    rules = "".join(f"        ct state {c[3:]} counter name {c}\n" for c in _COUNTER_NAMES)
    egress = "".join(
        f"    chain egress_{dev.replace('-', '_')} {{\n"
        f'        type filter hook egress device "{dev}" priority filter; policy drop;\n'
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


class KernelLab:
    """A live namespace set up for replay (see the module docstring); a context manager.

    ``with KernelLab({"nf_conntrack_checksum": 0}) as lab:`` then ``lab.send(packet)``,
    ``lab.lines()``, ``lab.stats()``, ``lab.exec("ip", "-o", "link")``... The namespace (and the
    helper and listener processes in it) is removed on exit, also on KeyboardInterrupt/SIGTERM.
    """

    def __init__(self, sysctl: Mapping[str, int] | None = None, *, name: str | None = None):
        check_available()
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
        self._helper = subprocess.Popen(
            [
                self._ip,
                "netns",
                "exec",
                self.ns,
                sys.executable,
                "-I",
                "-S",
                "-c",
                _HELPER,
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
        self.nft_apply(_nft_ruleset())

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

    def nft_apply(self, ruleset: str) -> None:
        """Load an nft ruleset (``nft -f -``) in the namespace."""
        self._run([self._ip, "netns", "exec", self.ns, self._nft, "-f", "-"], input=ruleset)

    def write_sysctl(self, path: str, value: str | int) -> None:
        """Write ``/proc/sys/<path>`` of the namespace (``path`` with / or . separators)."""
        if "/" not in path:
            path = path.replace(".", "/")
        self._request(_OP_SYSCTL, f"{path}\0{value}".encode())

    def read_file(self, path: str) -> str:
        """Read a file as seen from inside the namespace (e.g. /proc/net/stat/nf_conntrack)."""
        reply = self._request(_OP_READ, path.encode())
        return str(reply["text"])

    # -- packets

    def send(self, packet: bytes, *, classify: bool = False) -> None:
        """Queue one IP packet for writing to the TUN device (in order). With ``classify``, its
        ct state class is recorded (see :meth:`summary`)."""
        helper = self._live()
        assert helper.stdin is not None
        op = _OP_PACKET_CLASSIFY if classify else _OP_PACKET
        try:
            helper.stdin.write(_FRAME.pack(op, len(packet)))
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
        reply = self._request(_OP_SUMMARY, b"")
        names = {c[0]: c for c in CT_CLASSES}
        names["d"] = "dropped"
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
        raw = self._request(_OP_COUNTERS, b"")["counters"]
        assert isinstance(raw, dict)
        return {name[3:]: int(raw.get(name, 0)) for name in _COUNTER_NAMES}

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

    # -- events

    def events_start(self) -> None:
        """Start ``conntrack -E -o timestamp,extended``; returns once it is subscribed."""
        assert self._tmpdir is not None
        self._events_path = os.path.join(self._tmpdir, f"events-{secrets.token_hex(3)}.txt")
        self._request(_OP_EVENTS_START, self._events_path.encode())

    def events_stop(self) -> list[str]:
        """Stop the listener (SIGTERM) and return the lines it printed."""
        reply = self._request(_OP_EVENTS_STOP, b"")
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
        """Packets dropped at the veth egress (i.e. forwarded out of the namespace's stack)."""
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
            helper.stdin.write(_FRAME.pack(op, len(payload)) + payload)
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
    totals = dict.fromkeys(_STAT_KEYS, 0)
    for line in text.splitlines():
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep and key != "cpu" and value.isdigit():
                totals[key] = totals.get(key, 0) + int(value)
    return totals


# --- results and runs -------------------------------------------------------------------------


@dataclass
class KernelResult:
    """What the live kernel made of a packet sequence."""

    #: The exact ``conntrack -L -o extended`` lines in the namespace after the run.
    lines: list[str]
    #: ``conntrack -S`` summed over CPUs (found invalid insert insert_failed drop early_drop
    #: error search_restart clash_resolve chaintoolong).
    stats: dict[str, int]
    #: ``nf_conntrack_count`` in the namespace after the run.
    count: int
    #: ``conntrack -E -o timestamp,extended`` lines printed during the run.
    events: list[str]
    #: Per packet, in order: new, established, related, invalid, untracked or dropped (never
    #: reached the forward hook: held fragment, routing drop, local delivery...). Only with
    #: ``per_packet=True``.
    classes: list[str] | None
    #: IP packets written to the TUN device.
    sent: int
    #: Wall-clock seconds from the first to the last packet written.
    replay_seconds: float = 0.0
    #: Packets the TUN device refused (write error); they count as "dropped".
    write_errors: int = 0
    #: Events the kernel dropped because the listener's socket was full (0 = complete log).
    events_lost: int = 0
    #: The netfilter sysctls applied in the namespace.
    sysctl: dict[str, int] = field(default_factory=dict)


def run_packets(
    packets: Iterable[tuple[bytes, float]],
    *,
    sysctl: Mapping[str, int] | None = None,
    per_packet: bool = False,
    pace: bool = False,
    global_sysctl: Mapping[str, int] | None = None,
    after_each: Callable[[KernelLab], None] | None = None,
    ruleset: str | None = None,
) -> KernelResult:
    """Write IP packets (bytes starting at the IPv4/IPv6 header, timestamp in seconds) in order
    into a fresh namespace's TUN device and report the kernel's verdict.

    ``sysctl``: netfilter sysctls for the namespace (``nf_conntrack_checksum`` etc., bare names or
    ``net.netfilter.*``). ``per_packet``: also record each packet's ct state class, from which
    of the forward chain's ``ct state`` counters moved ("dropped": none did, e.g. a fragment
    the kernel holds, a packet routing dropped or delivered locally). The counters are read
    after every packet over nfnetlink from inside the namespace (not by running ``nft``):
    about 55 us per packet, so even whole captures are fine. ``pace``: sleep to reproduce the
    gaps between the timestamps (for short captures; a timestamp going backwards counts as no
    gap); otherwise as fast as possible. ``global_sysctl``: ``nf_conntrack_max`` /
    ``nf_conntrack_buckets`` set machine-wide for the run and restored afterwards (also on
    KeyboardInterrupt/SIGTERM). ``after_each``: called with the live lab once each packet has
    been written (e.g. to list the table after every packet). ``ruleset``: more nft tables
    loaded into the namespace before the first packet (e.g. a raw chain setting ct zones;
    the harness's forward chain counts at the filter priority, so a chain that drops before
    it makes those packets "dropped").
    """
    check_available()
    with (
        _sigterm_raises(),
        global_sysctls(global_sysctl),
        KernelLab(sysctl) as lab,
    ):
        if ruleset:
            lab.nft_apply(ruleset)
        lab.events_start()
        sent = errors = 0
        classes: list[str] = []
        start = time.monotonic()
        target = start
        prev_ts: float | None = None
        for packet, ts in packets:
            if pace:
                if prev_ts is not None:
                    target += max(0.0, ts - prev_ts)
                prev_ts = ts
                delay = target - time.monotonic()
                if delay > 0:
                    lab.flush()
                    time.sleep(delay)
            lab.send(packet, classify=per_packet)
            if after_each is not None:
                n, e, _first, cls = lab.summary()
                sent, errors = sent + n, errors + e
                classes += cls
                after_each(lab)
            elif pace:
                lab.flush()
        n, e, _first, cls = lab.summary()
        sent, errors = sent + n, errors + e
        classes += cls
        replay_seconds = time.monotonic() - start
        time.sleep(_SETTLE_S)
        events = lab.events_stop()
        count = lab.count()
        lines = lab.lines()
        stats = lab.stats()
        return KernelResult(
            lines=lines,
            stats=stats,
            count=count,
            events=events,
            classes=classes if per_packet else None,
            sent=sent,
            replay_seconds=round(replay_seconds, 6),
            write_errors=errors,
            events_lost=lab.events_lost,
            sysctl=dict(lab.sysctl),
        )


def run_capture(
    path: str | os.PathLike[str],
    *,
    sysctl: Mapping[str, int] | None = None,
    per_packet: bool = False,
    pace: bool = False,
    global_sysctl: Mapping[str, int] | None = None,
) -> KernelResult:
    """:func:`run_packets` on the IP packets of a pcap/pcapng file (:func:`iter_capture_ip`)."""
    check_available()
    return run_packets(
        iter_capture_ip(path),
        sysctl=sysctl,
        per_packet=per_packet,
        pace=pace,
        global_sysctl=global_sysctl,
    )


# --- captures ---------------------------------------------------------------------------------

_ETH_P_IP: Final = 0x0800
_ETH_P_IPV6: Final = 0x86DD
_VLAN_TYPES: Final = frozenset({0x8100, 0x88A8, 0x9100, 0x9200, 0x9300})
_ETH_P_MPLS_UC: Final = 0x8847
_ETH_P_PPP_SES: Final = 0x8864
_MAX_STACK: Final = 64
_PCAPNG_SHB: Final = 0x0A0D0D0A


def _by_ethertype(ethertype: int, payload: bytes) -> bytes | None:
    for _ in range(_MAX_STACK):
        if ethertype in (_ETH_P_IP, _ETH_P_IPV6):
            return payload
        if ethertype in _VLAN_TYPES:
            if len(payload) < 4:
                return None
            ethertype = int.from_bytes(payload[2:4], "big")
            payload = payload[4:]
            continue
        if ethertype == _ETH_P_PPP_SES:
            if len(payload) < 8:
                return None
            proto = int.from_bytes(payload[6:8], "big")
            return payload[8:] if proto in (0x0021, 0x0057) else None
        # MPLS (0x8847): nfct decodes it, the reference harness did not send it. Anything
        # else (ARP, LLDP, 802.3 lengths, ...) is not IP.
        return None
    return None


def _by_version(p: bytes, versions: tuple[int, ...] = (4, 6)) -> bytes | None:
    return p if p and (p[0] >> 4) in versions else None


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a frame (possibly with trailing link padding), or None."""
    if linktype == 1:  # Ethernet
        if len(frame) < 14:
            return None
        return _by_ethertype(int.from_bytes(frame[12:14], "big"), frame[14:])
    if linktype == 113:  # Linux SLL
        if len(frame) < 16:
            return None
        return _by_ethertype(int.from_bytes(frame[14:16], "big"), frame[16:])
    if linktype == 276:  # Linux SLL2
        if len(frame) < 20:
            return None
        return _by_ethertype(int.from_bytes(frame[0:2], "big"), frame[20:])
    if linktype in (0, 108):  # NULL (host byte order, either), LOOP (network order)
        if len(frame) < 4:
            return None
        be = int.from_bytes(frame[:4], "big")
        families = (be,) if linktype == 108 else (int.from_bytes(frame[:4], "little"), be)
        ok = any(af == 2 or af in (10, 24, 28, 30) for af in families)
        return frame[4:] if ok else None
    if linktype in (101, 12, 14):
        return _by_version(frame)
    if linktype == 228:
        return _by_version(frame, (4,))
    if linktype == 229:
        return _by_version(frame, (6,))
    return None


def _capture_error(path: str, offset: int, message: str) -> CaptureError:
    return CaptureError(f"{path}: {message} at byte offset {offset}", path, offset)


def _read_block(f: BinaryIO, n: int) -> bytes:
    return f.read(n)


def iter_capture_frames(path: str | os.PathLike[str]) -> Iterator[tuple[int, float, bytes]]:
    """(linktype, timestamp in seconds, frame bytes) for every packet record of a classic pcap
    (micro/nanosecond, either byte order, the "modified" variant) or pcapng file (enhanced and
    simple packet blocks; ``if_tsresol``/``if_tsoffset``)."""
    name = os.fspath(path)
    try:
        f = open(name, "rb")
    except OSError as e:
        raise _capture_error(name, 0, f"cannot open: {e}") from e
    with f:
        head = _read_block(f, 4)
        if len(head) < 4:
            raise _capture_error(name, 0, "file too short for a capture header")
        if int.from_bytes(head, "little") == _PCAPNG_SHB:
            f.seek(0)
            yield from _iter_pcapng(f, name)
        else:
            yield from _iter_pcap(f, name, head)


def _iter_pcap(f: BinaryIO, name: str, magic: bytes) -> Iterator[tuple[int, float, bytes]]:
    formats = {
        0xA1B2C3D4: (False, 16),
        0xA1B23C4D: (True, 16),
        0xA1B2CD34: (False, 24),
    }
    le = int.from_bytes(magic, "little")
    be = int.from_bytes(magic, "big")
    if le in formats:
        order = "<"
        nanos, rec_len = formats[le]
    elif be in formats:
        order = ">"
        nanos, rec_len = formats[be]
    else:
        raise _capture_error(name, 0, f"not a pcap or pcapng file (first bytes {magic.hex(' ')})")
    rest = _read_block(f, 20)
    if len(rest) < 20:
        raise _capture_error(name, 0, "truncated file header")
    linktype = struct.unpack(order + "I", rest[16:20])[0] & 0xFFFF
    rec = struct.Struct(order + "IIII")
    offset = 24
    div = 1e9 if nanos else 1e6
    while True:
        hdr = _read_block(f, rec_len)
        if not hdr:
            return
        if len(hdr) < rec_len:
            raise _capture_error(name, offset, "truncated record (file ends inside it)")
        sec, frac, caplen, _origlen = rec.unpack_from(hdr)
        if caplen > 1 << 26:
            raise _capture_error(name, offset, f"record length {caplen} is implausible (corrupt?)")
        data = _read_block(f, caplen)
        if len(data) < caplen:
            raise _capture_error(name, offset, "truncated record (file ends inside it)")
        yield linktype, sec + frac / div, data
        offset += rec_len + caplen


def _iter_pcapng(f: BinaryIO, name: str) -> Iterator[tuple[int, float, bytes]]:
    order = "<"
    # (linktype, snaplen, units per second, offset seconds) per interface of the section
    interfaces: list[tuple[int, int, int, int]] = []
    offset = 0
    last_ts = 0.0
    while True:
        head = _read_block(f, 8)
        if not head:
            return
        if len(head) < 8:
            raise _capture_error(name, offset, "truncated block")
        btype = int.from_bytes(head[:4], "little")
        if btype == _PCAPNG_SHB:
            bom = _read_block(f, 4)
            if len(bom) < 4:
                raise _capture_error(name, offset, "truncated section header")
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise _capture_error(name, offset, "bad byte-order magic in section header")
            interfaces = []
            blen = struct.unpack(order + "I", head[4:8])[0]
            body = bom + _read_block(f, blen - 12) if blen >= 12 else b""
        else:
            btype = struct.unpack(order + "I", head[:4])[0]
            blen = struct.unpack(order + "I", head[4:8])[0]
            body = _read_block(f, blen - 8) if blen >= 12 else b""
        if blen < 12 or blen % 4 or len(body) < blen - 8:
            raise _capture_error(name, offset, "truncated or corrupt block")
        body = body[:-4]  # trailing block length
        if btype == 1 and len(body) >= 8:  # interface description
            linktype, _res, snaplen = struct.unpack_from(order + "HHI", body)
            resol, toff = 6, 0
            pos = 8
            while pos + 4 <= len(body):
                code, olen = struct.unpack_from(order + "HH", body, pos)
                val = body[pos + 4 : pos + 4 + olen]
                if code == 0:
                    break
                if code == 9 and val:
                    resol = val[0]
                elif code == 14 and len(val) == 8:
                    toff = struct.unpack(order + "q", val)[0]
                pos += 4 + olen + (-olen % 4)
            units = 2 ** (resol & 0x7F) if resol & 0x80 else 10**resol
            interfaces.append((linktype, snaplen, units, toff))
        elif btype == 6 and len(body) >= 20:  # enhanced packet
            if_id, ts_hi, ts_lo, caplen, _origlen = struct.unpack_from(order + "IIIII", body)
            if if_id >= len(interfaces):
                raise _capture_error(name, offset, f"packet block for undefined interface {if_id}")
            linktype, _snap, units, toff = interfaces[if_id]
            ticks = (ts_hi << 32) | ts_lo
            last_ts = ticks / units + toff
            yield linktype, last_ts, body[20 : 20 + caplen]
        elif btype == 3 and len(body) >= 4:  # simple packet
            if not interfaces:
                raise _capture_error(name, offset, "simple packet block with no interface")
            linktype, snaplen, _units, _toff = interfaces[0]
            origlen = struct.unpack_from(order + "I", body)[0]
            n = min(len(body) - 4, origlen)
            if snaplen:
                n = min(n, snaplen)
            yield linktype, last_ts, body[4 : 4 + n]
        offset += blen


def iter_capture_ip(path: str | os.PathLike[str]) -> Iterator[tuple[bytes, float]]:
    """(IP packet, timestamp) for every frame of a capture that carries IPv4/IPv6, extracted as
    nfct does (Ethernet with any VLAN/QinQ tags 0x8100/0x88a8/0x9100-0x9300, PPPoE session;
    SLL; SLL2; NULL/LOOP; RAW 101/228/229/12/14), except IP inside MPLS, which is skipped (the
    harness behind shared/pcaps/kernel/ did not send it). Link padding after the IP packet is
    kept: the kernel trims it, as it trims a received frame."""
    for linktype, ts, frame in iter_capture_frames(path):
        packet = _ip_payload(linktype, frame)
        if packet:
            yield packet, ts
