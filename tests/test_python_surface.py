"""The Python surface added with the re-layering: the kernel's numbers as int enums, a
constructible `Tuple` with `invert()`, lookup by tuple (`Net.get`, `conntrack -G`), deleting an
entry (`Net.delete`, `conntrack -D`), in-memory replays (`Net.feed`) with per-packet results,
the typed `ReplayResult`, and the error classes."""

from __future__ import annotations

import enum
import ipaddress
from pathlib import Path

import pytest

import nfct
import packets as P
from helpers import C6, S6, C, S
from nfct import Net, Tuple


def test_constants_are_int_enums_with_kernel_named_aliases() -> None:
    assert nfct.NF_ACCEPT is nfct.Verdict.NF_ACCEPT
    assert nfct.NF_ACCEPT == 1 and isinstance(nfct.NF_ACCEPT, int)
    assert issubclass(nfct.Status, enum.IntFlag)
    assert issubclass(nfct.Verdict, enum.IntEnum)
    assert nfct.IPS_ASSURED | nfct.IPS_SEEN_REPLY == 6
    assert nfct.NF_IP_PRI_CONNTRACK == -200 and nfct.Priority(-200) is nfct.NF_IP_PRI_CONNTRACK
    assert nfct.IPPROTO_TCP == 6 and nfct.IP_CT_DIR_REPLY == 1
    # Aliases keep the kernel's equal values.
    assert nfct.IPS_NAT_CLASH == nfct.IPS_UNTRACKED == 4096
    assert nfct.IP_CT_ESTABLISHED_REPLY == nfct.IP_CT_IS_REPLY == 3
    for group in (nfct.Verdict, nfct.NfProto, nfct.InetHook, nfct.CtInfo, nfct.Status):
        for name, member in group.__members__.items():
            assert getattr(nfct, name) == member, name
            assert name in nfct.__all__


def test_status_and_verdicts_print_as_their_names() -> None:
    net = Net()
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    res = nfct.ip_rcv(net, nfct.Skb(P.udp(S, C, 53, 1000), tstamp=1.5))
    assert res.verdict is nfct.Verdict.NF_ACCEPT
    (conn,) = list(net)
    assert isinstance(conn.status, nfct.Status)
    assert conn.status & nfct.IPS_SEEN_REPLY
    assert "IPS_SEEN_REPLY" in repr(conn.status) and "IPS_CONFIRMED" in repr(conn.status)


@pytest.mark.parametrize(
    ("args", "kwargs", "fields"),
    [
        ((C, S, 6, 40000, 80), {}, {"sport": 40000, "dport": 80, "type": None}),
        ((C6, S6, 17, 5353, 53), {}, {"l3num": 10, "sport": 5353}),
        ((C, S, 1), {"type": 8, "code": 0, "id": 7}, {"type": 8, "id": 7, "sport": None}),
        ((C6, S6, 58), {"type": 128, "id": 9}, {"type": 128, "code": 0}),
        ((C, S, 47), {"dstkey": 0x1111}, {"srckey": 0, "dstkey": 0x1111}),
        ((C, S, 50), {}, {"sport": None, "protonum": 50}),
        (
            (ipaddress.ip_address(C), ipaddress.ip_address(S), 132, 1, 2),
            {},
            {"src": C, "dst": S, "sport": 1},
        ),
    ],
)
def test_tuple_construction(args: tuple, kwargs: dict, fields: dict) -> None:  # type: ignore[type-arg]
    t = Tuple(*args, **kwargs)
    for k, v in fields.items():
        assert getattr(t, k) == v, k
    assert t == Tuple(*args, **kwargs) and hash(t) == hash(Tuple(*args, **kwargs))


def test_tuple_refuses_what_its_protocol_has_not() -> None:
    with pytest.raises(nfct.NfctValueError, match="needs sport and dport"):
        Tuple(C, S, 6)
    with pytest.raises(nfct.NfctValueError, match="no ports"):
        Tuple(C, S, 1, 1, 2, type=8)
    with pytest.raises(nfct.NfctValueError, match="different families"):
        Tuple(C, S6, 17, 1, 2)
    with pytest.raises(nfct.NfctValueError, match=r"0\.\.65535"):
        Tuple(C, S, 17, 70000, 2)
    with pytest.raises(nfct.NfctValueError, match="not an IP address"):
        Tuple("10.1.0", S, 17, 1, 2)
    with pytest.raises(nfct.NfctTypeError):
        Tuple(1234, S, 17, 1, 2)  # type: ignore[arg-type]


def test_invert_is_the_kernels() -> None:
    t = Tuple(C, S, 17, 1000, 53)
    assert t.invert() == Tuple(S, C, 17, 53, 1000)
    assert t.invert().invert() == t
    echo = Tuple(C, S, 1, type=8, code=0, id=7)
    assert echo.invert() == Tuple(S, C, 1, type=0, code=0, id=7)
    assert Tuple(C6, S6, 58, type=128, id=3).invert().type == 129
    with pytest.raises(nfct.NfctValueError, match="cannot be inverted"):
        Tuple(C, S, 1, type=3, code=1).invert()


def test_the_tuple_of_an_entry_equals_a_constructed_one() -> None:
    net = Net()
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    (conn,) = list(net)
    assert conn.orig == Tuple(C, S, 17, 1000, 53)
    assert conn.reply == conn.orig.invert()


def test_get_finds_an_entry_by_either_tuple_and_zone() -> None:
    net = Net()
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    orig = Tuple(C, S, 17, 1000, 53)
    conn = net.get(orig)
    assert conn is not None and conn.orig == orig
    assert net.get(orig.invert()) == conn
    assert net.get(Tuple(C, S, 17, 1001, 53)) is None
    assert net.get(orig, zone=5) is None
    # A zoned entry is found in its zone only.
    zoned = Net()
    ops = nfct.NfHookOps(
        nfct.BuiltinHook.ct_zone(5), nfct.NFPROTO_INET, nfct.NF_INET_PRE_ROUTING, nfct.NF_IP_PRI_RAW
    )
    nfct.nf_register_net_hook(zoned, ops)
    nfct.ip_rcv(zoned, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    assert zoned.get(orig) is None
    found = zoned.get(orig, zone=5)
    assert found is not None and found.zone == 5


def test_get_does_not_find_an_expired_entry_and_reaps_it() -> None:
    net = Net()
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    net.advance_to(100.0)
    assert net.count == 1
    assert net.get(Tuple(C, S, 17, 1000, 53)) is None
    assert net.count == 0


def test_delete_removes_the_entry_and_sends_destroy() -> None:
    net = Net()
    net.listen_events()
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    (conn,) = list(net)
    assert net.delete(conn) == 1
    assert net.count == 0 and len(net) == 0
    assert conn.status & nfct.IPS_DYING
    assert net.delete(conn) == 0
    events = net.read_events()
    assert [e.split()[0] for e in events] == ["[NEW]", "[DESTROY]"]
    with pytest.raises(nfct.NfctValueError, match="another Net"):
        Net().delete(conn)


def test_feed_equals_a_replay_of_the_same_packets(tmp_path: Path) -> None:
    records = [
        (1.0, P.udp(C, S, 1000, 53)),
        (1.5, P.udp(S, C, 53, 1000)),
        (2.0, P.udp(C, S, 1001, 53, checksum=0x1234)),
        (2.5, P.icmp_echo(C, S, 7)),
        (3.0, b"\x45\x00"),
    ]
    cap = tmp_path / "x.pcap"
    cap.write_bytes(P.pcap(records))
    lines = tmp_path / "lines"
    replayed = Net(seed=1).replay([cap], packets_path=lines)
    fed = Net(seed=1).feed(records)
    assert fed.to_dict() == replayed.to_dict()
    assert fed.per_packet is not None and replayed.per_packet is None
    printed = lines.read_text().splitlines()
    assert len(fed.per_packet) == len(printed)
    for row, line in zip(fed.per_packet, printed, strict=True):
        frame, cls, *reason = line.split(" ", 2)
        assert (row.frame, row.cls) == (int(frame), cls)
        assert row.reason == (reason[0] if reason else None)
    assert [r.cls for r in fed.per_packet] == ["new", "established", "invalid", "new", "dropped"]


def test_feed_arguments() -> None:
    with pytest.raises(nfct.NfctTypeError, match="record 0"):
        Net().feed([b"\x45"])  # type: ignore[list-item]
    with pytest.raises(nfct.NfctValueError, match="tstamp"):
        Net().feed([(-1.0, b"\x45")])
    assert Net().feed([]).packets == 0
    assert Net().feed([(0.0, bytearray(P.udp(C, S, 1, 2)))]).new == 1


def test_replay_result_is_a_read_only_mapping() -> None:
    res = Net().feed([(1.0, P.udp(C, S, 1000, 53))])
    assert res["packets"] == res.packets == 1
    assert res.get("new") == 1 and res.get("nope", 7) == 7
    assert "reasons" in res and list(res)[:3] == ["frames", "non_ip", "packets"]
    assert dict(res.items()) == res.to_dict()
    assert len(res) == len(res.keys())
    with pytest.raises(KeyError):
        res["nope"]
    assert res == Net().feed([(1.0, P.udp(C, S, 1000, 53))])


def test_capture_error_carries_the_result_so_far(tmp_path: Path) -> None:
    cap = tmp_path / "cut.pcap"
    data = P.pcap([(1.0, P.udp(C, S, 1, 2)), (2.0, P.udp(C, S, 3, 4))])
    cap.write_bytes(data[:-5])
    with pytest.raises(nfct.CaptureError) as err:
        Net().replay([cap])
    assert isinstance(err.value, OSError)
    assert err.value.path == str(cap) and err.value.offset > 0
    assert err.value.summary is not None and err.value.summary.packets == 1
    assert str(err.value).startswith(f"{cap}: ")


def test_replay_argument_errors_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(nfct.NfctTypeError, match="list of paths"):
        Net().replay(str(tmp_path / "x.pcap"))  # type: ignore[arg-type]
    cap = tmp_path / "x.pcap"
    cap.write_bytes(P.pcap([(1.0, P.udp(C, S, 1, 2))]))
    same = tmp_path / "out"
    with pytest.raises(nfct.NfctValueError, match="same file"):
        Net().replay([cap], packets_path=same, events_path=same)
    with pytest.raises(nfct.OutputError) as err:
        Net().replay([cap], packets_path=tmp_path / "no" / "such" / "dir")
    assert isinstance(err.value, OSError) and err.value.errno == 2


def test_unknown_sysctl_message_is_not_quoted() -> None:
    with pytest.raises(nfct.UnknownSysctlError) as err:
        Net({"nf_conntrack_nope": 1})
    assert str(err.value) == 'unknown sysctl "nf_conntrack_nope"'


def test_local_addrs_take_ipaddress_objects_and_refuse_a_bare_string() -> None:
    net = Net(local_addrs=[ipaddress.ip_address("192.0.2.1"), "2001:db8::1"])
    assert net.local_addrs == ["192.0.2.1", "2001:db8::1"]
    with pytest.raises(nfct.NfctTypeError, match="not a str"):
        Net(local_addrs="192.0.2.1")  # type: ignore[arg-type]


def test_listing_formats_refuse_unknown_names_everywhere() -> None:
    net = Net()
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    (conn,) = list(net)
    for bad in (lambda: net.dump("bogus"), lambda: conn.line("bogus")):  # type: ignore[arg-type]
        with pytest.raises(nfct.NfctValueError, match="unknown format"):
            bad()
    assert conn.line("proc") + "\n" == net.dump("proc")


def test_counters_are_named() -> None:
    net = Net({"nf_conntrack_acct": 1})
    nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53, b"x"), tstamp=1.0))
    (conn,) = list(net)
    assert conn.counters is not None
    orig, reply = conn.counters
    assert (orig.packets, orig.bytes, reply.packets) == (1, 29, 0)


def test_dropped_by_is_a_named_hook_op() -> None:
    net = Net()
    ops = nfct.NfHookOps(nfct.BuiltinHook.verdict(nfct.NF_DROP), nfct.NFPROTO_IPV4, 2, 0)
    nfct.nf_register_net_hook(net, ops)
    res = nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
    assert res.dropped_by == nfct.HookOp(nfct.NF_INET_FORWARD, 0, "drop")
    assert res.dropped_by is not None and res.dropped_by.name == "drop"


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("on_error", ["drop", "accept"])
def test_hooks_never_swallow_interrupts(exc: type[BaseException], on_error: str) -> None:
    def hook(skb: nfct.Skb, state: nfct.HookState) -> int:
        raise exc

    net = Net()
    ops = nfct.NfHookOps(
        hook,
        nfct.NFPROTO_IPV4,
        nfct.NF_INET_FORWARD,
        0,
        on_error=on_error,  # type: ignore[arg-type]
    )
    nfct.nf_register_net_hook(net, ops)
    with pytest.raises(exc):
        nfct.ip_rcv(net, nfct.Skb(P.udp(C, S, 1000, 53), tstamp=1.0))
