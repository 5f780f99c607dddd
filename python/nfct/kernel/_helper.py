"""The helper program that lives inside the harness's network namespace.

Run by :class:`nfct.kernel.lab.KernelLab` as ``ip netns exec NS python3 -I -S <this file> TUN
CONNTRACK`` (isolated, no site: it imports the standard library only, never nfct). It creates
the TUN device (so it exists inside the namespace), then serves frames read from stdin:

* packets to write to the TUN device, optionally classifying each by which nft ``ct state``
  counter moved (read over nfnetlink: no process per packet);
* sysctl writes and file reads inside the namespace;
* the start and stop of a ``conntrack -E`` listener (its child, so it dies with it), pacing the
  packets so that the listener's socket never overflows;
* with capture on, the packets that leave the namespace's stack: those routed out of the TUN
  device (read from its file descriptor) and those sent by the veth (received by a packet
  socket on its peer, which sees them before the peer's netdev ingress chain drops them),
  each with the number of the packet whose write they followed.

Protocol: a request is a 1-byte op, a 4-byte length (network order) and the payload; a reply is
a 4-byte length and a JSON object, ``{"error": ...}`` on failure. Packet ops get no reply; their
results come with :data:`OP_SUMMARY`. The parent imports the constants below from this module.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import IO, Any, BinaryIO, Final

# --- the protocol (shared with the parent) ----------------------------------------------------

OP_PACKET: Final = 1  # payload: an IP packet; no reply
OP_PACKET_CLASSIFY: Final = 2  # the same, and record its class
OP_SYSCTL: Final = 3  # payload: "path\0value" under /proc/sys
OP_COUNTERS: Final = 4  # reply: {"counters": {name: packets}}
OP_SUMMARY: Final = 5  # reply: sent, errors, first_error, classes since the last summary
OP_EVENTS_START: Final = 6  # payload: the path the listener writes to
OP_EVENTS_STOP: Final = 7  # reply: the listener's exit status and its socket's drop count
OP_READ: Final = 8  # payload: a path; reply: {"text": ...}
OP_CAPTURE_START: Final = 9  # payload: the veth peer's name; capture from now on
OP_CAPTURE_READ: Final = 10  # reply: {"frames": [[index, device, base64 bytes], ...]}
FRAME: Final = struct.Struct("!BI")

#: The harness's nft table (family inet) and its named counters, one per ct state.
NFT_TABLE: Final = "nfct"
COUNTER_NAMES: Final = ("ct_new", "ct_established", "ct_related", "ct_invalid", "ct_untracked")
#: One letter per class in a summary's "classes": the counters' initials, "d" for dropped.
CLASS_CODES: Final = "neriud"

# --- kernel interfaces ------------------------------------------------------------------------

TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
NETLINK_NETFILTER: Final = 12
NLM_F_REQUEST: Final = 0x1
NLM_F_DUMP: Final = 0x300
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NFT_MSG_GETOBJ: Final = (10 << 8) | 19  # NFNL_SUBSYS_NFTABLES
NFPROTO_INET: Final = 1
NFTA_OBJ_TABLE: Final = 1
NFTA_OBJ_NAME: Final = 2
NFTA_OBJ_TYPE: Final = 3
NFTA_OBJ_DATA: Final = 4
NFT_OBJECT_COUNTER: Final = 1
NFTA_COUNTER_PACKETS: Final = 2
NLA_TYPE_MASK: Final = 0x3FFF
ETH_P_ALL: Final = 0x0003
PACKET_OUTGOING: Final = 4

_NLMSGHDR: Final = struct.Struct("=IHHII")
_NLATTR: Final = struct.Struct("=HH")


def _align4(n: int) -> int:
    return (n + 3) & ~3


class CounterReader:
    """The nft table's named counters, dumped over NETLINK_NETFILTER."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.seq = 0
        table = NFT_TABLE.encode() + b"\0"
        attrs = _NLATTR.pack(4 + len(table), NFTA_OBJ_TABLE) + table + b"\0" * (-len(table) % 4)
        attrs += _NLATTR.pack(8, NFTA_OBJ_TYPE) + struct.pack("!I", NFT_OBJECT_COUNTER)
        self.body = struct.pack("=BBH", NFPROTO_INET, 0, 0) + attrs  # nfgenmsg + attributes

    def read(self) -> dict[str, int]:
        """Counter name -> packets."""
        self.seq += 1
        flags = NLM_F_REQUEST | NLM_F_DUMP
        self.sock.send(
            _NLMSGHDR.pack(16 + len(self.body), NFT_MSG_GETOBJ, flags, self.seq, 0) + self.body
        )
        result: dict[str, int] = {}
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
                if ln < 16:
                    raise OSError("bad netlink message")
                if seq != self.seq:
                    off += _align4(ln)
                    continue
                if typ == NLMSG_DONE:
                    return result
                if typ == NLMSG_ERROR:
                    err: int = struct.unpack_from("=i", data, off + 16)[0]
                    if err:
                        raise OSError(-err, "nft counter dump: " + os.strerror(-err))
                    return result
                name, packets = self._object(data, off + 20, off + ln)
                if name is not None and packets is not None:
                    result[name] = packets
                off += _align4(ln)

    @staticmethod
    def _object(data: bytes, pos: int, end: int) -> tuple[str | None, int | None]:
        """The name and packet count of one NFT_MSG_NEWOBJ message's attributes."""
        name: str | None = None
        packets: int | None = None
        while pos + 4 <= end:
            alen, atype = _NLATTR.unpack_from(data, pos)
            if alen < 4:
                break
            val = data[pos + 4 : pos + alen]
            atype &= NLA_TYPE_MASK
            if atype == NFTA_OBJ_NAME:
                name = val.rstrip(b"\0").decode()
            elif atype == NFTA_OBJ_DATA:  # the counter's nested attributes
                q = 0
                while q + 4 <= len(val):
                    l2, t2 = _NLATTR.unpack_from(val, q)
                    if l2 < 4:
                        break
                    if t2 & NLA_TYPE_MASK == NFTA_COUNTER_PACKETS:
                        packets = struct.unpack_from("!Q", val, q + 4)[0]
                    q += _align4(l2)
            pos += _align4(alen)
        return name, packets


def netlink_sockets() -> dict[str, tuple[int, int]]:
    """inode -> (bytes queued, drops) of this namespace's NETLINK_NETFILTER sockets bound to
    multicast groups (the event listeners)."""
    result: dict[str, tuple[int, int]] = {}
    with open("/proc/self/net/netlink") as f:
        next(f)
        for line in f:
            cols = line.split()
            if len(cols) >= 10 and cols[1] == str(NETLINK_NETFILTER) and int(cols[3], 16):
                result[cols[9]] = (int(cols[4]), int(cols[8]))
    return result


def subscribed(pid: int) -> str | None:
    """The inode of process ``pid``'s socket bound to conntrack event groups, or None."""
    inodes = set()
    try:
        for fdname in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fdname}")
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


def stop(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then SIGKILL after 5 s; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Helper:
    """The served state: the TUN device, the counters, the listener, the summary so far."""

    def __init__(self, fd: int, conntrack: str, out: BinaryIO, ifname: str) -> None:
        self.fd = fd
        self.ifname = ifname
        # Capture: the packet socket on the veth's peer, and what left, as (index, device,
        # bytes); the index counts the packets written since the capture started.
        self.capture_sock: socket.socket | None = None
        self.peer = ""
        self.written = 0
        self.frames: list[tuple[int, str, bytes]] = []
        self.conntrack = conntrack
        self.out = out
        self.counters = CounterReader()
        self.listener: subprocess.Popen[bytes] | None = None
        self.listener_err: IO[bytes] | None = None
        self.watch: str | None = None  # the listener's socket inode, while it runs
        try:
            with open("/proc/sys/net/core/rmem_default") as f:
                rcvbuf = int(f.read())
        except (OSError, ValueError):
            rcvbuf = 212992
        # conntrack -E (1.4.7) keeps its event socket at rmem_default whatever -b says: do not
        # let events pile up beyond a quarter of it, or the kernel drops them (ENOBUFS).
        self.high, self.low = rcvbuf // 4, rcvbuf // 16
        self.since_check = 0
        self.sent = self.errors = 0
        self.first_error: str | None = None
        self.classes = bytearray()
        self.last: dict[str, int] | None = None  # the counters before the next classified packet

    def reply(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.out.write(struct.pack("!I", len(data)) + data)
        self.out.flush()

    def drain(self, limit: int) -> None:
        """Wait (10 s at most) until the listener's socket holds at most ``limit`` bytes."""
        deadline = time.monotonic() + 10.0
        while (
            time.monotonic() < deadline
            and self.listener is not None
            and self.listener.poll() is None
        ):
            socks = netlink_sockets()
            if self.watch not in socks or socks[self.watch][0] <= limit:
                return
            time.sleep(0.0002)

    def packet(self, payload: bytes, classify: bool) -> None:
        if classify and self.last is None:
            self.last = self.counters.read()
        try:
            os.write(self.fd, payload)
            self.sent += 1
            written = True
        except OSError as e:
            self.errors += 1
            written = False
            if self.first_error is None:
                self.first_error = str(e)
        if self.watch is not None:
            self.since_check += 1
            if self.since_check >= 4:
                self.since_check = 0
                socks = netlink_sockets()
                if self.watch in socks and socks[self.watch][0] > self.high:
                    self.drain(self.low)
        if self.capture_sock is not None:
            # The kernel handles a TUN write synchronously (netif_receive_skb under
            # local_bh_disable; the veth's peer receives in the softirq run when bottom halves
            # are enabled again): whatever the packet made leave has left when write returns.
            self.drain_capture(self.written)
            self.written += 1
        if classify:
            assert self.last is not None
            now = self.counters.read() if written else self.last
            code = CLASS_CODES[-1]
            for i, name in enumerate(COUNTER_NAMES):
                if now.get(name, 0) != self.last.get(name, 0):
                    code = CLASS_CODES[i]
                    break
            self.classes.append(ord(code))
            self.last = now

    def sysctl(self, payload: bytes) -> None:
        path, _, value = payload.decode().partition("\0")
        try:
            with open("/proc/sys/" + path, "w") as f:
                f.write(value)
            self.reply({"ok": True})
        except OSError as e:
            self.reply({"error": f"{path}={value}: {e}"})

    def read_counters(self) -> None:
        try:
            self.reply({"ok": True, "counters": self.counters.read()})
        except OSError as e:
            self.reply({"error": str(e)})

    def summary(self) -> None:
        self.reply(
            {
                "ok": True,
                "sent": self.sent,
                "errors": self.errors,
                "first_error": self.first_error,
                "classes": self.classes.decode(),
            }
        )
        self.sent = self.errors = 0
        self.first_error = None
        self.classes = bytearray()
        self.last = None

    def events_start(self, payload: bytes) -> None:
        path = payload.decode()
        args = [self.conntrack, "-E", "-o", "timestamp,extended", "-b", "16777216"]
        # The listener's stderr, open until the helper exits.
        self.listener_err = open(path + ".stderr", "wb")
        with open(path, "wb") as fout:
            listener = subprocess.Popen(
                args, stdout=fout, stderr=self.listener_err, stdin=subprocess.DEVNULL
            )
        self.listener = listener
        deadline = time.monotonic() + 10.0
        self.watch = None
        while self.watch is None and time.monotonic() < deadline and listener.poll() is None:
            self.watch = subscribed(listener.pid)
            if self.watch is None:
                time.sleep(0.005)
        if self.watch is not None:
            self.reply({"ok": True, "pid": listener.pid})
        else:
            stop(listener)
            self.listener = None
            self.reply({"error": "conntrack -E did not subscribe to conntrack events"})

    def events_stop(self) -> None:
        drops: int | None = None
        rc: int | None = None
        if self.listener is not None:
            self.drain(0)
            if self.watch is not None:
                drops = netlink_sockets().get(self.watch, (0, None))[1]
            rc = stop(self.listener)
        self.listener = self.watch = None
        self.reply({"ok": True, "rc": rc, "drops": drops})

    def capture_start(self, payload: bytes) -> None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind((payload.decode(), ETH_P_ALL))
            sock.setblocking(False)
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        except OSError as e:
            self.reply({"error": f"cannot capture on {payload.decode()}: {e}"})
            return
        if self.capture_sock is not None:
            self.capture_sock.close()
        self.capture_sock, self.peer = sock, payload.decode()
        self.written = 0
        self.frames = []
        self.drain_capture(-1)
        self.frames = []
        self.reply({"ok": True})

    def drain_capture(self, index: int) -> None:
        """Read everything that left so far, as having followed packet ``index``."""
        sock = self.capture_sock
        if sock is None:
            return
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            self.frames.append((index, self.ifname, data))
        while True:
            try:
                data, addr = sock.recvfrom(1 << 16)
            except BlockingIOError:
                break
            if addr[2] != PACKET_OUTGOING:
                self.frames.append((index, self.peer, data))

    def capture_read(self) -> None:
        self.drain_capture(self.written - 1)
        frames = [[i, dev, base64.b64encode(data).decode()] for i, dev, data in self.frames]
        self.frames = []
        self.reply({"ok": True, "frames": frames})

    def read_file(self, payload: bytes) -> None:
        try:
            with open(payload.decode()) as f:
                self.reply({"ok": True, "text": f.read()})
        except OSError as e:
            self.reply({"error": str(e)})

    def serve(self, inp: BinaryIO) -> None:
        """Answer requests until stdin ends (or a frame is cut short)."""
        while True:
            hdr = inp.read(FRAME.size)
            if len(hdr) < FRAME.size:
                return
            op, n = FRAME.unpack(hdr)
            payload = inp.read(n) if n else b""
            if len(payload) < n:
                return
            if op in (OP_PACKET, OP_PACKET_CLASSIFY):
                self.packet(payload, classify=op == OP_PACKET_CLASSIFY)
            elif op == OP_SYSCTL:
                self.sysctl(payload)
            elif op == OP_COUNTERS:
                self.read_counters()
            elif op == OP_SUMMARY:
                self.summary()
            elif op == OP_EVENTS_START:
                self.events_start(payload)
            elif op == OP_EVENTS_STOP:
                self.events_stop()
            elif op == OP_READ:
                self.read_file(payload)
            elif op == OP_CAPTURE_START:
                self.capture_start(payload)
            elif op == OP_CAPTURE_READ:
                self.capture_read()
            else:
                self.reply({"error": f"unknown op {op}"})

    def close(self) -> None:
        if self.listener is not None:
            stop(self.listener)
        if self.capture_sock is not None:
            self.capture_sock.close()
        os.close(self.fd)


def main(argv: list[str]) -> int:
    """``argv``: the TUN device's name and the path of the conntrack tool."""
    ifname, conntrack = argv[0], argv[1]
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
    except OSError as e:
        data = json.dumps({"error": f"cannot create TUN device {ifname}: {e}"}).encode()
        out.write(struct.pack("!I", len(data)) + data)
        out.flush()
        return 1
    helper = Helper(fd, conntrack, out, ifname)
    helper.reply({"ok": True, "pid": os.getpid()})
    try:
        helper.serve(inp)
    finally:
        helper.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
