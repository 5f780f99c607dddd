"""TCP sequences where nfct once disagreed with the live kernel (found by replaying the TCP
state machine's conversations through the kernel), kept as regression tests."""

from __future__ import annotations

import packets as P
from kernel.test_differential import both, timed

C, S = "10.1.0.2", "10.2.0.2"


def test_resync_keeps_the_liberal_flag_of_the_reset_side() -> None:
    """A picked-up (liberal) entry, an ignored SYN, a SYN-ACK answering it (resync to
    SYN_RECV): the side reset by the resync stays liberal, so its far out-of-window data is
    accepted (nf_ct_tcp_state_reset keeps BE_LIBERAL)."""
    pkts = timed(
        P.tcp(C, S, 40000, 80, seq=1000, ack=5000, flags="A"),
        P.tcp(C, S, 40000, 80, seq=9000, flags="S"),
        P.tcp(S, C, 80, 40000, seq=20000, ack=9001, flags="SA"),
        P.tcp(S, C, 80, 40000, seq=20001 + 10_000_000, ack=9001, flags="PA", payload=b"x" * 10),
    )
    res, k, _ = both(pkts)
    assert res.agree, res.render()
    assert k.classes is not None and k.classes[3] == "established"


def test_syn_without_options_keeps_the_earlier_window_scale() -> None:
    """A re-sent SYN without any option bytes leaves the first SYN's window scale in place
    (tcp_options returns before clearing), which widens the window the data is checked
    against."""
    ws7 = P.tcp_opt_nop() + P.tcp_opt_wscale(7)
    ws14 = P.tcp_opt_nop() + P.tcp_opt_wscale(14)
    pkts = timed(
        P.tcp(C, S, 40001, 80, seq=1000, flags="S", options=ws7),
        P.tcp(C, S, 40001, 80, seq=5000, flags="S"),
        P.tcp(S, C, 80, 40001, seq=700, ack=5001, flags="SA", options=ws14),
        P.tcp(C, S, 40001, 80, seq=5001, ack=701, flags="A"),
        P.tcp(S, C, 80, 40001, seq=701, ack=5001, flags="A"),
        P.tcp(C, S, 40001, 80, seq=5001 + 6_000_000, ack=701, flags="PA", payload=b"y" * 10),
    )
    res, k, _ = both(pkts)
    assert res.agree, res.render()
    assert k.classes is not None and k.classes[5] == "established"
