"""TCP tracking through nfct's API: the TCP edge cases of spec §16 (E1–E30, E38, E40–E43, E53,
E60–E62, E65), each asserting what the live 6.18 kernel was observed to do with the same kind
of sequence (tests/kernel/test_tcp_kernel.py replays them through the running kernel): the
class and ctinfo of every packet, the entry's state, flags and timeout, the counters, and for
INVALID packets the family of the kernel's log message.

The kernel's messages (nf_conntrack_log_invalid, 6.18) are "nf_ct_proto_6: " followed by e.g.
"invalid new", "SEQ is over upper bound N (over the window of the receiver)", "ACK is over
upper bound N (ACKed data not seen yet)", "bad checksum", "invalid tcp flag combination",
"invalid rst", "packet (index 3) in dir 0 invalid, state SYN_SENT". nfct words them its own way,
so only their key words are checked (case-insensitively).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import nfct
import packets as P
from nfct import IP_CT_ESTABLISHED, IP_CT_ESTABLISHED_REPLY, IP_CT_NEW, Net, Skb
from tcp_conv import Conv, far

C, S = "10.1.0.2", "10.2.0.2"
C6, S6 = "fd00:1::2", "fd00:2::2"
HTTP = 80


# (ctstate, ctinfo) of a packet
NEW = ("new", IP_CT_NEW)
EST = ("established", IP_CT_ESTABLISHED)
REPLY = ("established", IP_CT_ESTABLISHED_REPLY)
INVALID = ("invalid", None)

ES = "ESTABLISHED"

# Key words of the kernel's log messages (see the module docstring).
W_NEW = ("new",)
W_SEQ_OVER = ("seq", "upper bound")
W_ACK_OVER = ("ack", "upper bound")
W_CHECKSUM = ("checksum",)
W_FLAGS = ("flag",)
W_RST = ("rst",)
W_STATE = ("invalid", "state")


# --- helpers ------------------------------------------------------------------------------------


class Router:
    """nfct as a forwarding router: PRE_ROUTING then confirm, on a clock advanced 1 ms per
    packet unless a time is given."""

    def __init__(self, **sysctl: int) -> None:
        self.net = Net(sysctl)
        self.t = 0.0
        self.skbs: list[Skb] = []

    def send(self, *pkts: bytes, at: float | None = None) -> Skb:
        skb: Skb | None = None
        for i, pkt in enumerate(pkts):
            if at is not None and i == 0:
                self.t = at
            elif self.skbs:
                self.t += 0.001
            skb = Skb(pkt, tstamp=self.t)
            v6 = pkt[0] >> 4 == 6
            hook_in: Callable[[Net, Skb], int] = (
                nfct.ipv6_conntrack_in if v6 else nfct.ipv4_conntrack_in
            )
            confirm: Callable[[Net, Skb], int] = nfct.ipv6_confirm if v6 else nfct.ipv4_confirm
            if hook_in(self.net, skb) != nfct.NF_DROP:
                confirm(self.net, skb)
            self.skbs.append(skb)
        assert skb is not None
        return skb

    def classes(self) -> list[tuple[str, int | None]]:
        return [(s.ctstate, s.ctinfo) for s in self.skbs]

    def conns(self) -> list[nfct.Conn]:
        return list(self.net)

    def only(self) -> nfct.Conn:
        conns = self.conns()
        assert len(conns) == 1, self.net.dump()
        return conns[0]

    def stats(self) -> dict[str, int]:
        """The non-zero counters."""
        return {k: v for k, v in self.net.stats.items() if v}


def check(
    conn: nfct.Conn,
    state: str,
    timeout: int,
    *,
    assured: bool = False,
    replied: bool = True,
) -> None:
    """State, timeout (as `conntrack -L` prints it: whole seconds, truncated), ASSURED and
    SEEN_REPLY ([UNREPLIED] when not replied)."""
    line = conn.line()
    assert conn.state == state, line
    assert conn.timeout == timeout, line
    assert bool(conn.status & nfct.IPS_ASSURED) == assured, line
    assert bool(conn.status & nfct.IPS_SEEN_REPLY) == replied, line
    assert ("[ASSURED]" in line) == assured, line
    assert ("[UNREPLIED]" in line) == (not replied), line


def check_invalid(skb: Skb, words: tuple[str, ...]) -> None:
    """The packet is INVALID (no entry attached) for the reason the kernel logs."""
    assert skb.ctstate == "invalid"
    assert skb.nfct is None and skb.ctinfo is None
    reason = skb.invalid_reason
    assert reason is not None
    assert all(w in reason.lower() for w in words), f"{reason!r} lacks {words}"


# --- E1–E10: opening --------------------------------------------------------------------------


@pytest.mark.parametrize(("client", "server"), [(C, S), (C6, S6)], ids=["ipv4", "ipv6"])
def test_e01_handshake(client: str, server: str) -> None:
    r, t = Router(), Conv(40001, client=client, server=server)
    syn = r.send(t.c("S"))
    conn = r.only()
    check(conn, "SYN_SENT", 119, replied=False)
    assert syn.nfct == conn
    r.send(t.s("SA"))
    check(conn, "SYN_RECV", 59)
    r.send(t.c("A"))
    check(conn, ES, 431999, assured=True)
    assert r.classes() == [NEW, REPLY, EST]
    assert (conn.orig.src, conn.orig.sport, conn.orig.dport) == (client, 40001, HTTP)
    assert (conn.reply.src, conn.reply.sport, conn.reply.dport) == (server, HTTP, 40001)
    assert r.stats() == {}


def test_e01_handshake_without_options() -> None:
    r, t = Router(), Conv(40201)
    r.send(t.c("S", options=b""), t.s("SA", options=b""), t.c("A", options=b""))
    check(r.only(), ES, 431999, assured=True)


def test_e02_syn_answered_by_rst_ack_deletes_the_entry() -> None:
    r, t = Router(), Conv(40002)
    syn = t.c("S")
    r.send(syn, t.rst("s", "RA", seq=0))
    assert r.classes() == [NEW, REPLY]
    assert r.conns() == []
    assert r.net.count == 0
    assert r.stats() == {}


def test_e03_syn_answered_by_bare_rst_seq_zero() -> None:
    r, t = Router(), Conv(40003)
    syn = t.c("S")
    r.send(syn, t.rst("s", "R", seq=0))
    assert r.classes() == [NEW, REPLY]
    assert r.conns() == []


@pytest.mark.parametrize("loose", [1, 0])
def test_e04_synack_first_is_invalid(loose: int) -> None:
    r, t = Router(nf_conntrack_tcp_loose=loose), Conv(40004)
    t.c("S")  # not seen
    skb = r.send(t.s("SA"))
    check_invalid(skb, W_NEW)
    assert r.conns() == []
    assert r.stats() == {"invalid": 1}


@pytest.mark.parametrize("flags", ["FA", "R", "RA"], ids=["fin-ack", "rst", "rst-ack"])
def test_e04_other_first_packets_are_invalid(flags: str) -> None:
    r, t = Router(), Conv(40104)
    t.skip_handshake()
    skb = r.send(t.c(flags))
    check_invalid(skb, W_NEW)
    assert r.conns() == []
    assert r.stats() == {"invalid": 1}


def test_e05_ack_first_is_picked_up() -> None:
    r, t = Router(), Conv(40005)
    t.skip_handshake()
    r.send(t.c("A"))
    assert r.classes() == [NEW]
    check(r.only(), ES, 299, replied=False)


def test_e06_ack_first_with_loose_off_is_invalid() -> None:
    r, t = Router(nf_conntrack_tcp_loose=0), Conv(40006)
    t.skip_handshake()
    skb = r.send(t.c("A"))
    check_invalid(skb, W_NEW)
    assert r.conns() == []
    assert r.stats() == {"invalid": 1}


def test_e07_pickup_then_reply_then_original() -> None:
    r, t = Router(), Conv(40007)
    t.skip_handshake()
    r.send(t.c("A"))
    conn = r.only()
    r.send(t.s("A"))
    check(conn, ES, 299)
    r.send(t.c("A"))
    check(conn, ES, 431999, assured=True)
    assert r.classes() == [NEW, REPLY, EST]


def test_e08_syn_retransmission_does_not_refresh() -> None:
    r, t = Router(), Conv(40008)
    syn = t.c("S")
    r.send(syn, at=0.0)
    r.send(syn, at=2.5)
    assert r.classes() == [NEW, NEW]
    check(r.only(), "SYN_SENT", 117, replied=False)


def test_e09_synack_retransmission_is_ignored() -> None:
    r, t = Router(), Conv(40009)
    syn = t.c("S")
    synack = t.s("SA")
    r.send(syn, synack, at=0.0)
    conn = r.only()
    check(conn, "SYN_RECV", 59)
    r.send(synack, at=2.5)
    assert r.classes() == [NEW, REPLY, REPLY]
    check(conn, "SYN_RECV", 57)


def test_e10_data_in_syn_recv_establishes() -> None:
    r, t = Router(), Conv(40010)
    r.send(t.c("S"), t.s("SA"), t.c("PA", payload=b"G" * 100))
    assert r.classes() == [NEW, REPLY, EST]
    check(r.only(), ES, 299, assured=True)


# --- E11–E16: invalid packets -----------------------------------------------------------------


def established(cport: int, **sysctl: int) -> tuple[Router, Conv, nfct.Conn]:
    r, t = Router(**sysctl), Conv(cport)
    r.send(*t.handshake())
    conn = r.only()
    check(conn, ES, 431999, assured=True)
    return r, t, conn


def test_e11_data_far_beyond_the_window() -> None:
    r, t, conn = established(40011)
    skb = r.send(t.c("PA", seq=far(t.nxt["c"]), payload=b"x" * 100))
    check_invalid(skb, W_SEQ_OVER)
    check(conn, ES, 431999, assured=True)
    assert r.stats() == {"invalid": 1}


def test_e12_ack_for_data_never_sent() -> None:
    r, t, conn = established(40012)
    skb = r.send(t.c("A", ack=far(t.nxt["s"], 1_000_000)))
    check_invalid(skb, W_ACK_OVER)
    check(conn, ES, 431999, assured=True)
    assert r.stats() == {"invalid": 1}


def test_e13_bad_checksum_syn_is_invalid() -> None:
    r, t = Router(), Conv(40013)
    skb = r.send(t.c("S", checksum=0x0BAD))
    check_invalid(skb, W_CHECKSUM)
    assert r.conns() == []
    assert r.stats() == {"invalid": 1}


def test_e13_bad_checksum_in_established_is_invalid() -> None:
    r, t, conn = established(40113)
    skb = r.send(t.c("PA", payload=b"q" * 10, checksum=0x0BAD, advance=False))
    check_invalid(skb, W_CHECKSUM)
    check(conn, ES, 431999, assured=True)


def test_e14_bad_checksum_not_checked_when_off() -> None:
    r, t = Router(nf_conntrack_checksum=0), Conv(40013)
    skb = r.send(t.c("S", checksum=0x0BAD))
    assert (skb.ctstate, skb.ctinfo) == NEW
    check(r.only(), "SYN_SENT", 119, replied=False)
    r2, t2, conn = established(40113, nf_conntrack_checksum=0)
    r2.send(t2.c("PA", payload=b"q" * 10, checksum=0x0BAD))
    check(conn, ES, 299, assured=True)


def test_e14_bad_checksum_not_checked_outside_pre_routing() -> None:
    """Locally generated packets (LOCAL_OUT) are never checksummed."""
    net, t = Net(), Conv(40213)
    skb = Skb(t.c("S", checksum=0x0BAD), tstamp=0.0)
    nfct.ipv4_conntrack_local(net, skb)
    assert skb.ctstate == "new"


@pytest.mark.parametrize(
    "flags", ["SF", "SR", "F", "", "FPU", "SAR", "SAF", "U", "P", "SAU", "RU", "FP", "SRFAPU"]
)
def test_e15_invalid_flag_combinations(flags: str) -> None:
    r, t = Router(), Conv(40150)
    skb = r.send(t.c(flags))
    check_invalid(skb, W_FLAGS)
    assert r.conns() == []
    assert r.stats() == {"invalid": 1}


def test_e15_invalid_flags_in_established_leave_the_entry_alone() -> None:
    r, t, conn = established(40151)
    skb = r.send(t.c("SF", advance=False))
    check_invalid(skb, W_FLAGS)
    check(conn, ES, 431999, assured=True)


@pytest.mark.parametrize("flags", ["SEC", "SP", "SU", "SPEC"])
def test_e16_syn_with_ece_cwr_psh_urg_is_valid(flags: str) -> None:
    r, t = Router(), Conv(40160)
    skb = r.send(t.c(flags))
    assert (skb.ctstate, skb.ctinfo) == NEW
    check(r.only(), "SYN_SENT", 119, replied=False)


# --- E17–E26: closing, reopening, RSTs --------------------------------------------------------


def test_e17_fin_close_client_first() -> None:
    r, t, conn = established(40017)
    fin_c, ack_s, fin_s, ack_c = t.fin_close()
    r.send(fin_c)
    check(conn, "FIN_WAIT", 119, assured=True)
    r.send(ack_s)
    check(conn, "CLOSE_WAIT", 59, assured=True)
    r.send(fin_s)
    check(conn, "LAST_ACK", 29, assured=True)
    r.send(ack_c)
    check(conn, "TIME_WAIT", 119, assured=True)
    assert r.classes()[3:] == [EST, REPLY, REPLY, EST]
    assert r.stats() == {}


def test_e18_crossing_fins() -> None:
    r, t, conn = established(40018)
    before_fin = t.nxt["c"]
    r.send(t.c("FA"))
    check(conn, "FIN_WAIT", 119, assured=True)
    r.send(t.s("FA", ack=before_fin))
    check(conn, "LAST_ACK", 29, assured=True)
    r.send(t.c("A"))
    check(conn, "TIME_WAIT", 119, assured=True)
    r.send(t.s("A"))
    check(conn, "TIME_WAIT", 119, assured=True)
    assert r.classes()[3:] == [EST, REPLY, EST, REPLY]


def test_e19_client_syn_in_time_wait_reopens() -> None:
    r, t, old = established(40019)
    r.send(*t.fin_close())
    t.reopen("c")
    skb = r.send(t.c("S"))
    assert (skb.ctstate, skb.ctinfo) == NEW
    conn = r.only()
    assert conn != old
    assert skb.nfct == conn
    check(conn, "SYN_SENT", 119, replied=False)
    assert conn.orig.src == C
    assert r.stats() == {}


def test_e20_server_syn_in_time_wait_reopens_the_other_way() -> None:
    r, t, _ = established(40020)
    r.send(*t.fin_close())
    t.reopen("s")
    skb = r.send(t.s("S"))
    assert (skb.ctstate, skb.ctinfo) == NEW, skb.invalid_reason
    conn = r.only()
    check(conn, "SYN_SENT", 119, replied=False)
    assert (conn.orig.src, conn.orig.sport, conn.orig.dport) == (S, HTTP, 40020)
    assert r.stats() == {}


def test_e21_exact_client_rst_closes() -> None:
    r, t, conn = established(40021)
    skb = r.send(t.rst("c"))
    assert (skb.ctstate, skb.ctinfo) == EST
    check(conn, "CLOSE", 9, assured=True)


def test_e22_client_rst_then_client_syn_reopens() -> None:
    r, t, old = established(40022)
    r.send(t.rst("c"))
    check(old, "CLOSE", 9, assured=True)
    t.reopen("c")
    skb = r.send(t.c("S"))
    assert (skb.ctstate, skb.ctinfo) == NEW
    conn = r.only()
    assert conn != old
    check(conn, "SYN_SENT", 119, replied=False)


def test_e23_server_rst_then_client_syn_is_ignored() -> None:
    r, t, conn = established(40023)
    r.send(t.rst("s", "RA"))
    check(conn, "CLOSE", 9, assured=True)
    t.reopen("c")
    skb = r.send(t.c("S"), at=1.5)
    assert (skb.ctstate, skb.ctinfo) == EST
    assert skb.nfct == conn
    check(conn, "CLOSE", 8, assured=True)  # not refreshed: 10 s from the RST, ~1.5 s ago


def test_e24_inexact_server_rst_keeps_established_with_close_timeout() -> None:
    r, t, conn = established(40024)
    skb = r.send(t.rst("s", "RA", seq=t.nxt["s"] + 5000))
    assert (skb.ctstate, skb.ctinfo) == REPLY
    check(conn, ES, 9, assured=True)  # 6.18; the 6.12 source gives 299


def test_e25_challenge_ack_then_exact_rst() -> None:
    r, t, conn = established(40025)
    r.send(t.rst("s", "RA", seq=t.nxt["s"] + 5000))
    check(conn, ES, 9, assured=True)
    r.send(t.c("A"))
    check(conn, ES, 299, assured=True)
    r.send(t.rst("s", "RA"))
    check(conn, "CLOSE", 9, assured=True)
    assert r.classes()[3:] == [REPLY, EST, REPLY]


def _rst_below_max_ack(r: Router) -> tuple[Skb, nfct.Conn]:
    t = Conv(40026)
    r.send(*t.handshake(), t.s("PA", payload=b"d" * 1000), t.c("A"))
    conn = r.only()
    check(conn, ES, 431999, assured=True)
    return r.send(t.rst("s", "RA", seq=t.nxt["s"] - 500)), conn


def test_e26_rst_below_max_ack_is_invalid() -> None:
    r = Router()
    skb, conn = _rst_below_max_ack(r)
    check_invalid(skb, W_RST)
    check(conn, ES, 431999, assured=True)
    assert r.stats() == {"invalid": 1}


def test_e26_rst_below_max_ack_with_ignore_invalid_rst() -> None:
    r = Router(nf_conntrack_tcp_ignore_invalid_rst=1)
    skb, conn = _rst_below_max_ack(r)
    assert (skb.ctstate, skb.ctinfo) == REPLY
    check(conn, ES, 9, assured=True)
    assert r.stats() == {}


# --- E27–E30: data, retransmissions, windows --------------------------------------------------


def test_e27_same_segment_five_times() -> None:
    r, t, conn = established(40027)
    seq = t.nxt["c"]
    r.send(t.c("PA", payload=b"r" * 100))
    check(conn, ES, 299, assured=True)
    for _ in range(4):
        skb = r.send(t.c("PA", seq=seq, payload=b"r" * 100))
        assert (skb.ctstate, skb.ctinfo) == EST
        check(conn, ES, 299, assured=True)


def test_e28_data_then_its_ack() -> None:
    r, t, conn = established(40028)
    r.send(t.c("PA", payload=b"GET / HTTP/1.1\r\n\r\n"))
    check(conn, ES, 299, assured=True)
    r.send(t.s("A"))
    check(conn, ES, 431999, assured=True)


def test_e29_zero_window() -> None:
    r, t, conn = established(40029)
    skb = r.send(t.s("A", window=0))
    assert (skb.ctstate, skb.ctinfo) == REPLY
    check(conn, ES, 299, assured=True)


def test_e30_be_liberal_accepts_far_data_and_far_rst() -> None:
    r, t, conn = established(40030, nf_conntrack_tcp_be_liberal=1)
    data = r.send(t.c("PA", seq=far(t.nxt["c"]), payload=b"z" * 100))
    assert (data.ctstate, data.ctinfo) == EST
    # The liberal accept skips the window update: no unacknowledged data recorded.
    check(conn, ES, 431999, assured=True)
    rst = r.send(t.rst("s", "RA", seq=far(t.nxt["s"])))
    assert (rst.ctstate, rst.ctinfo) == REPLY
    check(conn, ES, 9, assured=True)
    assert r.stats() == {}


# --- E38–E43: before the first reply; simultaneous open ---------------------------------------


def test_e38_client_rst_before_any_reply() -> None:
    r, t = Router(), Conv(40038)
    r.send(t.c("S"), t.rst("c"))
    assert r.classes() == [NEW, NEW]
    assert r.conns() == []
    assert r.stats() == {}


def test_e40_rst_ack_with_wrong_ack_is_invalid() -> None:
    r, t = Router(), Conv(40040)
    r.send(t.c("S"))
    skb = r.send(t.rst("s", "RA", seq=0, ack=t.nxt["c"] + 1000))
    check_invalid(skb, W_ACK_OVER)
    check(r.only(), "SYN_SENT", 119, replied=False)
    assert r.stats() == {"invalid": 1}


def test_e41_synack_with_wrong_ack_is_invalid() -> None:
    r, t = Router(), Conv(40041)
    r.send(t.c("S"))
    skb = r.send(t.s("SA", ack=t.nxt["c"] + 1000))
    check_invalid(skb, W_ACK_OVER)
    check(r.only(), "SYN_SENT", 119, replied=False)
    assert r.stats() == {"invalid": 1}


def test_e42_simultaneous_open() -> None:
    r, t = Router(), Conv(40042, sport=40043)
    r.send(t.c("S"))
    conn = r.only()
    check(conn, "SYN_SENT", 119, replied=False)
    r.send(t.s("S"))
    check(conn, "SYN_SENT2", 119)
    r.send(t.c("SA", seq=t.isn["c"]))
    check(conn, "SYN_RECV", 59)
    r.send(t.s("SA", seq=t.isn["s"]))
    check(conn, "SYN_RECV", 59)
    r.send(t.c("A"))
    check(conn, ES, 431999, assured=True)
    r.send(t.s("A"))
    check(conn, ES, 431999, assured=True)
    assert r.classes() == [NEW, REPLY, EST, REPLY, EST, REPLY]


def test_e43_ack_from_server_in_syn_sent_is_ignored() -> None:
    r, t = Router(), Conv(40043)
    r.send(t.c("S"))
    conn = r.only()
    t.skip_handshake()
    skb = r.send(t.s("A"), at=1.5)
    assert (skb.ctstate, skb.ctinfo) == REPLY
    # Ignored (no state change, no refresh), but it is an accepted reply: SEEN_REPLY is set.
    check(conn, "SYN_SENT", 118)
    check_invalid(r.send(t.c("A")), W_STATE)
    check_invalid(r.send(t.c("FA", advance=False)), W_STATE)
    check(conn, "SYN_SENT", 118)
    assert r.stats() == {"invalid": 2}


# --- E53, E60–E62, E65 -------------------------------------------------------------------------


def test_e53_client_syn_in_established_is_ignored() -> None:
    r, t, conn = established(40053)
    t.reopen("c")
    skb = r.send(t.c("S"), at=1.5)
    assert (skb.ctstate, skb.ctinfo) == EST
    check(conn, ES, 431998, assured=True)  # not refreshed


def test_e60_four_identical_acks_switch_to_retrans_timeout() -> None:
    r, t = Router(), Conv(40060)
    pkts = t.handshake()
    r.send(*pkts)
    conn = r.only()
    r.send(pkts[-1])
    check(conn, ES, 431999, assured=True)
    r.send(pkts[-1])
    check(conn, ES, 431999, assured=True)
    r.send(pkts[-1])
    check(conn, ES, 299, assured=True)


def test_e61_out_of_window_fins_from_both_sides_lower_the_timeout() -> None:
    r, t, conn = established(40061)
    check_invalid(r.send(t.c("FA", seq=far(t.nxt["c"]))), W_SEQ_OVER)
    check(conn, ES, 431999, assured=True)
    check_invalid(r.send(t.s("FA", seq=far(t.nxt["s"]))), W_SEQ_OVER)
    check(conn, ES, 299, assured=True)
    assert r.stats() == {"invalid": 2}


def test_e62_picked_up_flow_is_liberal() -> None:
    r, t = Router(), Conv(40062)
    t.skip_handshake()
    r.send(t.c("A"))
    skb = r.send(t.c("PA", seq=far(t.nxt["c"]), payload=b"w" * 100))
    assert (skb.ctstate, skb.ctinfo) == NEW
    check(r.only(), ES, 299, replied=False)
    assert r.stats() == {}


def test_e65_rst_ack_syn_from_the_client_is_not_a_reopen() -> None:
    r, t, conn = established(40065)
    r.send(t.rst("c"))
    check(conn, "CLOSE", 9, assured=True)
    r.send(t.c("A"))
    check(conn, "CLOSE", 9, assured=True)
    t.reopen("c")
    skb = r.send(t.c("S"))
    assert (skb.ctstate, skb.ctinfo) == EST
    assert r.only() == conn
    check(conn, "CLOSE", 9, assured=True)


# --- more ---------------------------------------------------------------------------------------


def test_sack_within_data_sent_is_fine() -> None:
    r, t, conn = established(40301)
    base = t.nxt["s"]
    r.send(t.s("PA", payload=b"s" * 1000))
    sack = P.tcp_opt_nop() * 2 + P.tcp_opt_sack([(base + 500, base + 1000)])
    skb = r.send(t.c("A", ack=base, options=sack))
    assert (skb.ctstate, skb.ctinfo) == EST
    check(conn, ES, 299, assured=True)


def test_sack_beyond_data_sent_is_invalid() -> None:
    r, t, conn = established(40302)
    base = t.nxt["s"]
    r.send(t.s("PA", payload=b"s" * 1000))
    sack = P.tcp_opt_nop() * 2 + P.tcp_opt_sack([(base + 500, base + 5000)])
    check_invalid(r.send(t.c("A", ack=base, options=sack)), W_ACK_OVER)
    check(conn, ES, 299, assured=True)


def test_truncated_tcp_header_is_invalid() -> None:
    r = Router()
    seg = P.tcp_segment(C, S, 40400, HTTP, seq=1, flags="S")
    skb = r.send(P.ipv4(C, S, P.IPPROTO_TCP, seg[:12]))
    assert skb.ctstate == "invalid"
    assert r.conns() == []
    bad_doff = P.tcp_segment(C, S, 40401, HTTP, seq=1, flags="S", data_offset=4)
    skb = r.send(P.ipv4(C, S, P.IPPROTO_TCP, bad_doff))
    assert skb.ctstate == "invalid"
    assert r.stats() == {"invalid": 2}
