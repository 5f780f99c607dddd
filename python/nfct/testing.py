"""The differential harness: test any connection tracker (an eBPF conntrack, a firewall, a
middlebox model, a student's state machine) against nfct, and through nfct against the live
kernel.

A *model* is any object with

* ``reset()``: forget everything (called before each trace);
* ``packet(data: bytes, tstamp: float) -> str``: take one IP packet (bytes from the IP
  header on, time in seconds) and return the class a rule at the forward hook would see:
  ``"new"``, ``"established"``, ``"related"``, ``"invalid"``, ``"untracked"`` or
  ``"dropped"`` (the classes of ``nfct replay --output packets``);
* optionally ``entries() -> list[str]``: the table as ``conntrack -L`` lines, compared
  after each trace (tuples, state, ``[UNREPLIED]``/``[ASSURED]``, mark, timeout within 2 s).

:func:`check` runs Hypothesis over traces, feeds every packet to a fresh model and to nfct,
and on the first disagreement raises :class:`Divergence` with the shrunk trace::

    import nfct.testing
    from my_tracker import Tracker

    def test_tracker_agrees_with_the_kernel():
        nfct.testing.check(Tracker, max_examples=200)

:class:`ConntrackMachine` drives a model step by step instead (new flow, next packet,
advance time, list table), as a Hypothesis ``RuleBasedStateMachine``.

Needs Hypothesis: ``pip install 'nfct[hypothesis]'``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

try:
    import hypothesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
except ImportError as _e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "nfct.testing needs Hypothesis, which is not installed: pip install 'nfct[hypothesis]'"
    ) from _e

import nfct
from nfct import strategies as nst
from nfct.traffic import US, Flow, Packet, Trace, describe_records

__all__ = [
    "CLASSES",
    "ConntrackMachine",
    "Divergence",
    "Model",
    "Verdict",
    "check",
    "default_traces",
    "kernel_verdicts",
    "nfct_step",
    "nfct_verdicts",
]

#: What a model's ``packet()`` may answer.
CLASSES: Final = ("new", "established", "related", "invalid", "untracked", "dropped")
#: The live kernel replays a trace in real time: longer traces are refused.
KERNEL_MAX_SPAN_S: Final = 15.0


@runtime_checkable
class Model(Protocol):
    """What :func:`check` and :class:`ConntrackMachine` drive (``entries()`` is optional)."""

    def reset(self) -> None: ...

    def packet(self, data: bytes, tstamp: float) -> str: ...


class Verdict(NamedTuple):
    """The oracle's answer for one packet: its class, and why (the kernel's log message for
    an INVALID packet, the stage that dropped a dropped one; None otherwise or unknown)."""

    cls: str
    reason: str | None = None

    def __str__(self) -> str:
        return f"{self.cls} ({self.reason})" if self.reason else self.cls


# --- the oracles --------------------------------------------------------------------------------


def nfct_verdicts(
    records: Iterable[tuple[float, bytes]], sysctl: Mapping[str, int] | None = None
) -> tuple[list[Verdict], list[str]]:
    """nfct's verdict for each ``(tstamp, packet)`` as a router forwarding them sees it
    (``nfct replay --output packets``), and its table afterwards as ``conntrack -L`` lines.
    A fresh ``Net(sysctl, seed=0)`` each time."""
    # Net.feed replays in memory exactly as `nfct replay` replays a capture (the same classes
    # and reasons as nfct_step one packet at a time: tests/test_testing.py).
    net = nfct.Net(dict(sysctl or {}), seed=0)
    res = net.feed([(tstamp, data) for tstamp, data in records])
    out = [Verdict(p.cls, p.reason) for p in res.per_packet or ()]  # always a list from feed
    return out, net.dump("conntrack").splitlines()


def kernel_verdicts(
    records: Sequence[tuple[float, bytes]], sysctl: Mapping[str, int] | None = None
) -> tuple[list[Verdict], list[str]]:
    """The live kernel's class for each packet (no reasons: the kernel does not say) and its
    table afterwards (``conntrack -L -o extended`` lines), through :mod:`nfct.kernel`: the
    packets are written into a private network namespace at the pace of their timestamps.
    Needs root, network namespaces, ``nft`` and ``conntrack`` (else ``KernelUnavailable``)."""
    from nfct import kernel

    values = dict(sysctl or {})
    global_names = {k for k in values if k.removeprefix("net.netfilter.") in kernel.GLOBAL_SYSCTLS}
    res = kernel.run_packets(
        [(data, t) for t, data in records],
        sysctl={k: v for k, v in values.items() if k not in global_names},
        global_sysctl={k.removeprefix("net.netfilter."): values[k] for k in global_names} or None,
        per_packet=True,
        pace=True,
    )
    classes = res.classes or []
    return [Verdict(c) for c in classes], res.lines


# --- the counterexample -------------------------------------------------------------------------


class Divergence(AssertionError):
    """A model disagreed with the oracle (nfct or the live kernel). The message shows the
    trace packet by packet with both answers and nfct's reason; :attr:`pcap` / :meth:`write_pcap`
    give the trace as a capture for ``nfct replay FILE --output packets``.

    Attributes: ``trace``; ``index`` (the packet, or None when the tables differ);
    ``model`` and ``expected`` (the two answers for that packet); ``against`` (``"nfct"`` or
    ``"kernel"``); ``sysctl``; ``table_diff`` (for a table difference)."""

    def __init__(
        self,
        trace: Trace,
        *,
        answers: Sequence[str],
        verdicts: Sequence[Verdict],
        reasons: Sequence[Verdict] | None = None,
        against: str = "nfct",
        sysctl: Mapping[str, int] | None = None,
        table_diff: str | None = None,
        pcap_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.trace = trace
        self.answers = list(answers)
        self.verdicts = list(verdicts)
        self.against = against
        self.sysctl = dict(sysctl or {})
        self.table_diff = table_diff
        self.index = None if table_diff is not None else len(self.answers) - 1
        self.model = self.answers[-1] if self.index is not None else None
        self.expected = self.verdicts[self.index] if self.index is not None else None
        self.pcap_path = os.fspath(pcap_path) if pcap_path is not None else None
        if self.pcap_path is not None:
            trace.to_pcap(self.pcap_path)
        super().__init__(self._render(reasons))

    @property
    def pcap(self) -> bytes:
        """The trace as a pcap file (raw IP, nanosecond timestamps)."""
        return self.trace.to_pcap()

    def write_pcap(self, path: str | os.PathLike[str]) -> None:
        """Write the trace as a pcap file."""
        self.trace.to_pcap(path)

    def _render(self, reasons: Sequence[Verdict] | None) -> str:
        n = len(self.trace)
        if self.index is not None and self.expected is not None:
            head = (
                f"the model and {self.against} disagree on packet {self.index} of {n}: the model "
                f"says {self.model!r}, {self.against} says {str(self.expected)!r}"
            )
        else:
            head = f"the model's table and {self.against}'s differ after the {n} packets"
        columns: list[tuple[str, Sequence[str]]] = [(self.against, [v.cls for v in self.verdicts])]
        if reasons is not None:
            columns.append(("nfct", [v.cls for v in reasons]))
        columns.append(("model", self.answers))
        lines = [head]
        if self.sysctl:
            lines.append("sysctl: " + ", ".join(f"{k}={v}" for k, v in sorted(self.sysctl.items())))
        for i, f in enumerate(self.trace.flows):
            muts = f"; mutated: {'; '.join(f.mutations)}" if f.mutations else ""
            lines.append(f"flow f{i}: {f.summary()}{muts}")
        if self.trace.title:
            lines.append(f"scenario: {self.trace.title}")
        lines.append(describe_records(self.trace.packets, columns, mark=self.index))
        why = [(i, v) for i, v in enumerate(reasons or self.verdicts) if v.reason]
        if why:
            lines.append("nfct's reasons:")
            lines += [f"  {i:>3}  {v.cls}: {v.reason}" for i, v in why]
        if self.table_diff:
            lines.append(self.table_diff)
        where = self.pcap_path or "divergence.pcap"
        how = "" if self.pcap_path else f"err.write_pcap({where!r}), then "
        lines.append(f"replay it: {how}nfct replay {where} --output packets")
        return "\n".join(lines)


# --- check --------------------------------------------------------------------------------------


def default_traces(against: str = "nfct") -> st.SearchStrategy[Trace]:
    """What :func:`check` draws when given no traces: valid and mutated flows interleaved
    (with idle gaps across the timeouts) and the scenarios. For the live kernel, which replays
    in real time: no idle gaps, the DNS race as the only scenario."""
    if against == "kernel":
        return st.one_of(
            nst.traces(nst.flows(), max_flows=3, idle=False),
            nst.traces(nst.mutated(max_mutations=2), max_flows=2, idle=False),
            nst.dns_race(),
        )
    return st.one_of(
        nst.traces(nst.flows()),
        nst.traces(nst.mutated()),
        nst.scenarios(),
    )


def _as_trace(value: Any) -> Trace:
    if isinstance(value, Trace):
        return value
    if isinstance(value, Flow):
        return Trace.of(value)
    records = list(value)
    packets = tuple(Packet(float(t), bytes(d), "other") for t, d in records)
    return Trace(packets)


def _check_answer(answer: object, model: object) -> str:
    if not isinstance(answer, str) or answer not in CLASSES:
        raise TypeError(
            f"{type(model).__name__}.packet() returned {answer!r}: expected one of {CLASSES}"
        )
    return answer


def _table_diff(reference: Sequence[str], mine: Sequence[str], against: str) -> str | None:
    from nfct.compare import compare_tables

    res = compare_tables(reference, mine)
    if res.agree:
        return None
    out = [f"table: {against} has {res.kernel_entries} entries, the model {res.nfct_entries}"]
    out += [f"  only in {against}'s: {x}" for x in res.missing]
    out += [f"  only in the model's: {x}" for x in res.extra]
    out += [f"  differ ({against} -> model): {x}" for x in res.entry_diffs]
    return "\n".join(out)


def check(
    model_factory: Callable[[], Any],
    traces: st.SearchStrategy[Any] | None = None,
    *,
    max_examples: int = 100,
    sysctl: Mapping[str, int] | None = None,
    against: str = "nfct",
    pcap_path: str | os.PathLike[str] | None = None,
    settings: hypothesis.settings | None = None,
) -> None:
    """Differential test: for each trace Hypothesis draws from `traces` (default
    :func:`default_traces`: a broad mix; a strategy of :class:`~nfct.traffic.Trace`,
    :class:`~nfct.traffic.Flow` or sequences of ``(tstamp, bytes)`` will do), a fresh model
    from ``model_factory()`` is reset and fed every packet in order, and each answer is
    compared with nfct's (``against="nfct"``, the default, with `sysctl` for its ``Net``) or
    the live kernel's (``against="kernel"``, through :mod:`nfct.kernel`, `sysctl` set in its
    namespace: needs root, and replays in real time). If the model has ``entries()``, its
    table is compared after the trace.

    Returns when every trace agrees; raises :class:`Divergence` (an ``AssertionError``) with
    the shrunk trace otherwise, written to `pcap_path` if given. `max_examples` traces at
    most; `settings` (a ``hypothesis.settings``) for anything else (the current profile
    otherwise, e.g. a derandomized CI profile).

    >>> import nfct.testing
    >>> class Tracker:
    ...     def reset(self): ...
    ...     def packet(self, data, tstamp): return "new"
    >>> nfct.testing.check(Tracker, max_examples=5)  # doctest: +SKIP
    Traceback (most recent call last):
    nfct.testing.Divergence: the model and nfct disagree on packet 1 of 4: ...
    """
    if against not in ("nfct", "kernel"):
        raise ValueError(f"against must be 'nfct' or 'kernel', not {against!r}")
    values = dict(sysctl or {})
    nfct.Net(dict(values))  # an unknown sysctl fails here, before Hypothesis starts
    if against == "kernel":
        from nfct import kernel

        kernel.check_available()
    strategy = traces if traces is not None else default_traces(against)

    def one_trace(value: Any) -> None:
        trace = _as_trace(value)
        reasons, nfct_table = nfct_verdicts(trace, values)
        if against == "kernel":
            span = trace[-1][0] - trace[0][0] if len(trace) else 0.0
            if span > KERNEL_MAX_SPAN_S:
                raise ValueError(
                    f"a trace of {span:.1f} s: the live kernel replays in real time, so "
                    f"against='kernel' takes traces of at most {KERNEL_MAX_SPAN_S:.0f} s "
                    "(strategies.traces(..., idle=False))"
                )
            verdicts, table = kernel_verdicts(trace, values)
        else:
            verdicts, table = reasons, nfct_table
        model = model_factory()
        model.reset()
        answers: list[str] = []
        for i, (tstamp, data) in enumerate(trace):
            answers.append(_check_answer(model.packet(data, tstamp), model))
            if answers[-1] != verdicts[i].cls:
                raise Divergence(
                    trace,
                    answers=answers,
                    verdicts=verdicts,
                    reasons=reasons if against == "kernel" else None,
                    against=against,
                    sysctl=values,
                    pcap_path=pcap_path,
                )
        entries = getattr(model, "entries", None)
        if callable(entries):
            diff = _table_diff(table, list(entries()), against)
            if diff is not None:
                raise Divergence(
                    trace,
                    answers=answers,
                    verdicts=verdicts,
                    reasons=reasons if against == "kernel" else None,
                    against=against,
                    sysctl=values,
                    table_diff=diff,
                    pcap_path=pcap_path,
                )

    base = settings if settings is not None else hypothesis.settings()
    test = given(strategy)(one_trace)
    test = hypothesis.settings(
        base,
        max_examples=max_examples,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        # Explaining which parts of a trace matter costs several times the shrinking, and
        # the message already shows every packet with both answers.
        phases=[p for p in base.phases if p != Phase.explain],
    )(test)
    test()


# --- step by step -------------------------------------------------------------------------------


class ConntrackMachine(RuleBasedStateMachine):
    """A Hypothesis state machine that drives a model and nfct side by side, step by step:
    start a new flow (from :attr:`flows`), send the next packet of a started flow (to both,
    answers compared), advance the clock (:func:`~nfct.strategies.idle_gaps`: the next packet
    comes that much later), and list the table (if the model has ``entries()``; both tables
    as of the last packet). Subclass it, define :meth:`make_model`, and let
    pytest collect its ``TestCase``::

        class TestTracker(nfct.testing.ConntrackMachine):
            def make_model(self):
                return Tracker()

        TestTracker = TestTracker.TestCase

    A disagreement raises :class:`Divergence` with the packets sent so far. :attr:`sysctl`
    configures nfct's table; :attr:`flows` is the strategy new flows come from (default
    :func:`nfct.strategies.flows`, one connection at a time per tuple)."""

    sysctl: Mapping[str, int] = {}
    flows: st.SearchStrategy[Flow] = nst.flows()

    def __init__(self) -> None:
        super().__init__()
        self.model = self.make_model()
        self.model.reset()
        self.net = nfct.Net(dict(self.sysctl), seed=0)
        self.now_us = 0
        self.pending: list[list[Packet]] = []
        self.started: list[Flow] = []
        self.sent: list[Packet] = []
        self.answers: list[str] = []
        self.verdicts: list[Verdict] = []

    def make_model(self) -> Any:
        """The model under test (a fresh one for each run of the machine)."""
        raise NotImplementedError("define make_model() in the subclass")

    @rule(data=st.data())
    def new_flow(self, data: st.DataObject) -> None:
        keys = {f.key() for f in self.started}
        flow = data.draw(self.flows.filter(lambda f: f.key() not in keys), label="flow")
        self.started.append(flow)
        self.pending.append(list(flow.packets))

    @precondition(lambda self: any(self.pending))
    @rule(data=st.data())
    def next_packet(self, data: st.DataObject) -> None:
        live = [i for i, p in enumerate(self.pending) if p]
        i = data.draw(st.sampled_from(live), label="flow index")
        pkt = self.pending[i].pop(0)
        self.now_us += 100
        pkt = Packet(self.now_us / US, pkt.data, pkt.direction, pkt.note, i)
        self.sent.append(pkt)
        verdict = nfct_step(self.net, pkt.data, pkt.tstamp)
        self.verdicts.append(verdict)
        self.answers.append(_check_answer(self.model.packet(pkt.data, pkt.tstamp), self.model))
        if self.answers[-1] != verdict.cls:
            raise Divergence(
                self._trace(), answers=self.answers, verdicts=self.verdicts, sysctl=self.sysctl
            )

    @rule(gap=nst.idle_gaps())
    def advance_time(self, gap: int) -> None:
        self.now_us += gap

    @precondition(lambda self: callable(getattr(self.model, "entries", None)))
    @rule()
    def list_table(self) -> None:
        # Both tables as of the last packet (the model has not seen the time advance since).
        mine = list(self.model.entries())
        diff = _table_diff(self.net.dump("conntrack").splitlines(), mine, "nfct")
        if diff is not None:
            raise Divergence(
                self._trace(),
                answers=self.answers,
                verdicts=self.verdicts,
                sysctl=self.sysctl,
                table_diff=diff,
            )

    def _trace(self) -> Trace:
        return Trace(tuple(self.sent), tuple(self.started), "ConntrackMachine")


def nfct_step(net: nfct.Net, data: bytes, tstamp: float) -> Verdict:
    """One packet through `net` as a router receives it: its :class:`Verdict`."""
    skb = nfct.Skb(data, tstamp=tstamp)
    receive = nfct.ipv6_rcv if data[:1] and data[0] >> 4 == 6 else nfct.ip_rcv
    res = receive(net, skb)
    if res.verdict != nfct.NF_ACCEPT:
        return Verdict("dropped", res.reason or skb.invalid_reason)
    return Verdict(skb.ctstate, skb.invalid_reason)
