"""What hook operations cost: one generated capture (short TCP and UDP flows, ``replay_bench``'s
writer) replayed in process (frozen clock) through the hook pipeline with

* conntrack's own operations only;
* three built-in operations (a zone template, ``ct state invalid drop``, ``ct mark set``);
* one Python hook returning NF_ACCEPT at FORWARD (a Python call per packet, and the GIL taken
  per packet);
* the same Python hook at PRE_ROUTING, FORWARD and POST_ROUTING (three calls per packet);

and, for packets built in Python, ``nfct.ip_rcv(net, nfct.Skb(...))`` in a loop.

Usage: ``python benches/hooks_bench.py [--packets N] [--repeat R]``. Prints packets/s (best of
R) and the cost per Python call derived from the difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nfct

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_bench import write_short


def accept(skb: nfct.Skb, state: nfct.HookState) -> int:
    return nfct.NF_ACCEPT


def builtins(net: nfct.Net) -> None:
    for hook, hooknum, prio in (
        (nfct.BuiltinHook.ct_zone(3), nfct.NF_INET_PRE_ROUTING, nfct.NF_IP_PRI_RAW),
        (nfct.BuiltinHook.drop_invalid(), nfct.NF_INET_FORWARD, 0),
        (nfct.BuiltinHook.ct_mark_set(42), nfct.NF_INET_FORWARD, 10),
    ):
        nfct.nf_register_net_hook(net, nfct.NfHookOps(hook, nfct.NFPROTO_INET, hooknum, prio))


def python_hooks(*hooks: int) -> Callable[[nfct.Net], None]:
    def setup(net: nfct.Net) -> None:
        for h in hooks:
            nfct.nf_register_net_hook(net, nfct.NfHookOps(accept, nfct.NFPROTO_INET, h, 0))

    return setup


def best(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nfct-hooks-bench-") as tmp:
        path = Path(tmp) / "short.pcap"
        n, flows = write_short(path, args.packets)
        print(f"capture: {n} packets, {flows} short flows (frozen clock, best of {args.repeat})")
        cases: list[tuple[str, Callable[[nfct.Net], None] | None, int]] = [
            ("conntrack's operations only", None, 0),
            ("+ 3 built-in operations", builtins, 0),
            ("+ 1 Python hook (FORWARD)", python_hooks(nfct.NF_INET_FORWARD), 1),
            (
                "+ 3 Python hooks (PRE, FORWARD, POST)",
                python_hooks(
                    nfct.NF_INET_PRE_ROUTING, nfct.NF_INET_FORWARD, nfct.NF_INET_POST_ROUTING
                ),
                3,
            ),
        ]
        rates: dict[int, float] = {}
        for name, setup, calls in cases:

            def run(setup: Callable[[nfct.Net], None] | None = setup) -> None:
                net = nfct.Net({"nf_conntrack_max": 0}, seed=1)
                if setup is not None:
                    setup(net)
                net.replay([path], clock="frozen")

            secs = best(args.repeat, run)
            rate = n / secs
            rates.setdefault(calls, rate)
            print(f"  replay, {name:40s} {rate / 1e6:7.3f} Mpps  ({secs * 1e9 / n:7.0f} ns/pkt)")
        base = 1e9 / rates[0]
        for calls in (1, 3):
            per = (1e9 / rates[calls] - base) / calls
            print(f"  cost per Python hook call ({calls} per packet): {per:.0f} ns")

        # Packets built in Python, one ip_rcv call each (no hooks, then one Python hook).
        import struct

        data = path.read_bytes()
        pkts = []
        off = 24
        while off + 16 <= len(data) and len(pkts) < 100_000:
            incl = struct.unpack_from("<I", data, off + 8)[0]
            pkts.append(data[off + 16 + 14 : off + 16 + incl])
            off += 16 + incl
        for name, setup in (
            ("ip_rcv loop, no user hooks", None),
            ("ip_rcv loop, 1 Python hook", python_hooks(nfct.NF_INET_FORWARD)),
        ):

            def loop(setup: Callable[[nfct.Net], None] | None = setup) -> None:
                net = nfct.Net({"nf_conntrack_max": 0}, seed=1)
                if setup is not None:
                    setup(net)
                rcv, skb = nfct.ip_rcv, nfct.Skb
                for p in pkts:
                    rcv(net, skb(p, 1.0))

            secs = best(args.repeat, loop)
            print(f"  {name:48s} {len(pkts) / secs / 1e6:7.3f} Mpps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
