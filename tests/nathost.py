"""A NAT router as a host file, without a kernel (for tests/test_nat.py): the interfaces, routes
and sysctls of a two-legged router, and nat rules written as nft text together with the JSON
``nft -j list ruleset`` prints for them. tests/live/test_nat_kernel.py loads every rule's
text into the live kernel and checks that nft lists exactly this JSON, so the offline host is
what a snapshot of such a router would hold.

The router: ``lan`` 192.168.1.1/24 and fd00:1::1/64 (the clients), ``wan`` 203.0.113.1/24 and
2001:db8:ff::1/64 with default routes via 203.0.113.254 and fe80::1 (the outside), forwarding
on for both families.
"""

from __future__ import annotations

import ipaddress
from typing import Any

LAN4, LAN6 = "192.168.1.1", "fd00:1::1"
WAN4, WAN6 = "203.0.113.1", "2001:db8:ff::1"
LAN_IF, WAN_IF = 2, 3

Json = dict[str, Any]


def _match(left: Json, right: Any) -> Json:
    return {"match": {"op": "==", "left": left, "right": right}}


def _addr(a: str) -> Any:
    if "/" in a:
        net = ipaddress.ip_network(a)
        return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    return a


def oifname(name: str) -> tuple[str, Json]:
    return f'oifname "{name}"', _match({"meta": {"key": "oifname"}}, name)


def saddr(a: str) -> tuple[str, Json]:
    fam = "ip6" if ":" in a else "ip"
    return f"{fam} saddr {a}", _match({"payload": {"protocol": fam, "field": "saddr"}}, _addr(a))


def daddr(a: str) -> tuple[str, Json]:
    fam = "ip6" if ":" in a else "ip"
    return f"{fam} daddr {a}", _match({"payload": {"protocol": fam, "field": "daddr"}}, _addr(a))


def dport(proto: str, port: int) -> tuple[str, Json]:
    return f"{proto} dport {port}", _match({"payload": {"protocol": proto, "field": "dport"}}, port)


def l4proto(proto: str) -> tuple[str, Json]:
    return f"meta l4proto {proto}", _match({"meta": {"key": "l4proto"}}, proto)


def _flags(flags: list[str]) -> Json:
    if not flags:
        return {}
    return {"flags": flags[0] if len(flags) == 1 else flags}


def _target(addr: str | None, ports: tuple[int, int] | None) -> tuple[str, Json]:
    """``to ADDR[:PORT[-PORT]]`` and its JSON fields."""
    text, js = "", {}
    if addr is not None:
        lo, _, hi = addr.partition("-")
        bracket = ":" in lo and ports is not None
        text = f"[{addr}]" if bracket else addr
        js["addr"] = {"range": [lo, hi]} if hi else _addr(lo)
    if ports is not None:
        text += f":{ports[0]}" if ports[0] == ports[1] else f":{ports[0]}-{ports[1]}"
        js["port"] = ports[0] if ports[0] == ports[1] else {"range": list(ports)}
    return text, js


def snat(
    addr: str, ports: tuple[int, int] | None = None, flags: list[str] = ()
) -> tuple[str, Json]:  # type: ignore[assignment]
    text, js = _target(addr, ports)
    return f"snat to {text}{' ' + ','.join(flags) if flags else ''}", {
        "snat": {**js, **_flags(list(flags))}
    }


def dnat(
    addr: str, ports: tuple[int, int] | None = None, flags: list[str] = ()
) -> tuple[str, Json]:  # type: ignore[assignment]
    text, js = _target(addr, ports)
    return f"dnat to {text}{' ' + ','.join(flags) if flags else ''}", {
        "dnat": {**js, **_flags(list(flags))}
    }


def masquerade(ports: tuple[int, int] | None = None, flags: list[str] = ()) -> tuple[str, Json]:  # type: ignore[assignment]
    text, js = _target(None, ports)
    body = {**js, **_flags(list(flags))}
    words = ["masquerade"] + ([f"to {text}"] if text else []) + ([",".join(flags)] if flags else [])
    return " ".join(words), {"masquerade": body or None}


def redirect(port: int | None = None) -> tuple[str, Json]:
    if port is None:
        return "redirect", {"redirect": None}
    return f"redirect to :{port}", {"redirect": {"port": port}}


Rule = list[tuple[str, Json]]


def rule_text(rule: Rule) -> str:
    return " ".join(t for t, _ in rule)


def rule_json(rule: Rule) -> list[Json]:
    return [j for _, j in rule]


_HOOKS = {"pre": ("prerouting", -100), "post": ("postrouting", 100)}


def ruleset_text(family: str, chains: dict[str, list[Rule]], table: str = "nat") -> str:
    out = [f"table {family} {table} {{"]
    for name, rules in chains.items():
        hook, prio = _HOOKS[name]
        out.append(f"    chain {name} {{")
        out.append(f"        type nat hook {hook} priority {prio}; policy accept;")
        out += [f"        {rule_text(r)}" for r in rules]
        out.append("    }")
    out.append("}")
    return "\n".join(out) + "\n"


def ruleset_json(family: str, chains: dict[str, list[Rule]], table: str = "nat") -> Json:
    objs: list[Json] = [{"table": {"family": family, "name": table, "handle": 1}}]
    handle = 1
    for name, rules in chains.items():
        hook, prio = _HOOKS[name]
        handle += 1
        objs.append(
            {
                "chain": {
                    "family": family,
                    "table": table,
                    "name": name,
                    "handle": handle,
                    "type": "nat",
                    "hook": hook,
                    "prio": prio,
                    "policy": "accept",
                }
            }
        )
        for r in rules:
            handle += 1
            objs.append(
                {
                    "rule": {
                        "family": family,
                        "table": table,
                        "chain": name,
                        "handle": handle,
                        "expr": rule_json(r),
                    }
                }
            )
    return {"nftables": objs}


def router_host(ruleset: Json | None) -> Json:
    """The router as a host file, with ``ruleset`` (``nft -j`` JSON)."""

    def dev(index: int, name: str, addrs: list[tuple[str, int]], flags: list[str]) -> Json:
        return {
            "ifindex": index,
            "ifname": name,
            "flags": flags,
            "mtu": 65536 if name == "lo" else 1500,
            "link_type": "loopback" if name == "lo" else "ether",
            "addr_info": [{"local": a, "prefixlen": p} for a, p in addrs],
        }

    host: Json = {
        "addr": [
            dev(1, "lo", [("127.0.0.1", 8), ("::1", 128)], ["LOOPBACK", "UP", "LOWER_UP"]),
            dev(LAN_IF, "lan", [(LAN4, 24), (LAN6, 64)], ["UP", "LOWER_UP"]),
            dev(WAN_IF, "wan", [(WAN4, 24), (WAN6, 64)], ["UP", "LOWER_UP"]),
        ],
        "route": [
            {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local"},
            {"type": "local", "dst": LAN4, "dev": "lan", "table": "local"},
            {"type": "local", "dst": WAN4, "dev": "wan", "table": "local"},
            {"type": "local", "dst": "::1", "dev": "lo", "table": "local"},
            {"type": "local", "dst": LAN6, "dev": "lan", "table": "local"},
            {"type": "local", "dst": WAN6, "dev": "wan", "table": "local"},
            {"dst": "192.168.1.0/24", "dev": "lan"},
            {"dst": "203.0.113.0/24", "dev": "wan"},
            {"dst": "default", "gateway": "203.0.113.254", "dev": "wan"},
            {"dst": "fd00:1::/64", "dev": "lan"},
            {"dst": "2001:db8:ff::/64", "dev": "wan"},
            {"dst": "default", "gateway": "fe80::1", "dev": "wan"},
        ],
        "sysctl": {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            "net.ipv4.conf.all.rp_filter": "0",
        },
    }
    if ruleset is not None:
        host["ruleset"] = ruleset
    return host


#: Rules whose JSON the kernel suite checks against nft's own listing (name -> family, chain,
#: rule). Offline tests build their hosts from these.
CHECKED_RULES: dict[str, tuple[str, str, Rule]] = {
    "snat": ("ip", "post", [oifname("wan"), saddr("192.168.1.0/24"), snat(WAN4)]),
    "snat range persistent": (
        "ip",
        "post",
        [oifname("wan"), snat("203.0.113.10-203.0.113.20", flags=["persistent"])],
    ),
    "snat ports": ("ip", "post", [l4proto("udp"), snat(WAN4, (40000, 40000))]),
    "snat port range random": (
        "ip",
        "post",
        [l4proto("tcp"), snat(WAN4, (1000, 2000), flags=["random", "fully-random", "persistent"])],
    ),
    "masquerade": ("ip", "post", [oifname("wan"), masquerade()]),
    "masquerade ports": ("ip", "post", [l4proto("tcp"), masquerade((1000, 2000), ["random"])]),
    "dnat port": (
        "ip",
        "pre",
        [daddr("198.51.100.10"), dport("tcp", 80), dnat("192.168.1.20", (8080, 8080))],
    ),
    "dnat prefix": ("ip", "pre", [daddr("198.51.100.11"), dnat("192.168.1.16/28")]),
    "redirect": ("ip", "pre", [dport("udp", 53), redirect(5353)]),
    "snat6": ("ip6", "post", [oifname("wan"), snat(WAN6)]),
    "masquerade6": ("ip6", "post", [oifname("wan"), masquerade()]),
    "dnat6": (
        "ip6",
        "pre",
        [daddr("2001:db8:1::10"), dport("udp", 53), dnat("fd00:1::20", (5353, 5353))],
    ),
}
