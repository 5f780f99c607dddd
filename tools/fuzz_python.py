"""Atheris (coverage-guided, from PyPI: ``pip install atheris``) over nfct's Python entry
points (issue #17): ``Net`` with sysctls and its keyword arguments, ``Skb`` through ``ip_rcv``
and the conntrack hooks, ``Net.replay`` of any bytes as a capture, the host file parser
(``Net(host=...)``), listings and ``explain``. Any exception other than nfct's own (``NfctError``
and its subclasses, which name the argument or the file) is a finding.

    python tools/fuzz_python.py [-max_total_time=60] [CORPUS_DIR]

``one_input`` is also run without Atheris by tests/test_bad_inputs.py over a few seeds.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path

import nfct

ROOT = Path(__file__).resolve().parent.parent
_TMP = Path(tempfile.gettempdir()) / f"nfct-fuzz-python-{os.getpid()}.pcap"
_NAMES = [*sorted(nfct.SYSCTL_NAMES), "nf_conntrack_count", "nope", ""]


class _Bytes:
    """A cursor over the fuzzer's bytes (what atheris.FuzzedDataProvider gives, without it)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def int(self, nbytes: int = 8, signed: bool = True) -> int:
        b = self.take(nbytes).ljust(nbytes, b"\0")
        return int.from_bytes(b, "little", signed=signed)

    def byte(self) -> int:
        return self.int(1, signed=False)

    def rest(self) -> bytes:
        return self.take(len(self.data))


def one_input(data: bytes) -> None:
    """One input: which entry point the first byte says, its arguments from the rest."""
    b = _Bytes(data)
    what = b.byte() % 6
    try:
        if what == 0:  # sysctls and keyword arguments
            sysctl = {_NAMES[b.byte() % len(_NAMES)]: b.int() for _ in range(b.byte() % 4)}
            net = nfct.Net(sysctl, seed=b.int(9), mtu=b.int(5) if b.byte() & 1 else None)
            net.sysctl[_NAMES[b.byte() % len(_NAMES)]] = b.int()
            nfct.BuiltinHook.ct_zone(b.int(3))
            net.delete(zone=b.int(3), mark=b.int(5), sport=b.int(3))
        elif what == 1:  # packets through the stack and the hooks
            net = nfct.Net(seed=1)
            while b.at < len(b.data):
                n = b.byte()
                skb = nfct.Skb(b.take(n), tstamp=float(b.byte()))
                [nfct.ip_rcv, nfct.ipv6_rcv, nfct.ip_local_out, nfct.ip6_local_out][b.byte() % 4](
                    net, skb
                )
            for conn in net:
                conn.line()
            net.dump("conntrack")
        elif what == 2:  # any bytes as a capture
            _TMP.write_bytes(b.rest())
            nfct.Net(seed=1).replay([_TMP])
        elif what == 3:  # a capture header we write, then fuzzed records
            body = b.rest()
            _TMP.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + body)
            net = nfct.Net(seed=1)
            net.replay([_TMP])
            net.explain(_TMP, 1)
        elif what == 4:  # the host file parser
            text = b.rest().decode("utf-8", "replace")
            try:
                doc = json.loads(text)
            except ValueError:
                return
            nfct.Net(host=doc if isinstance(doc, dict) else {"addr": doc})
        else:  # a known host, then fuzzed packets through it
            net = nfct.Net(host=str(ROOT / "examples" / "host-firewalld.json"))
            skb = nfct.Skb(b.rest(), tstamp=1.0)
            nfct.ip_rcv(net, skb)
    except nfct.NfctError:
        pass  # the expected, specific errors


def main() -> None:
    import atheris

    # nfct's Python code is already imported: instrument what is loaded (the Rust extension
    # gives no coverage to Atheris; the Python layers around it do).
    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        _TMP.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
