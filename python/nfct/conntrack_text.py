"""Parsing the text conntrack-tools print (`conntrack -L [-o extended]`), so nfct's listings and
the kernel's can be compared as data."""

from __future__ import annotations

from typing import Any

_FLAGS = ("UNREPLIED", "ASSURED", "OFFLOAD", "HW_OFFLOAD")
_TUPLE_KEYS = ("src", "dst", "sport", "dport", "type", "code", "id", "srckey", "dstkey")
_L3 = {"ipv4", "ipv6"}


def parse_conntrack_line(line: str) -> dict[str, Any]:
    """Parse one `conntrack -L` line (default or `-o extended`) into a dict with the keys
    l3, proto, protonum, timeout, state, orig, reply, flags, extra."""
    words = line.split()
    i = 0
    l3 = None
    if words and words[0] in _L3:
        l3 = words[0]
        i = 2
    if len(words) < i + 3:
        raise ValueError(f"not a conntrack line: {line!r}")
    proto = words[i]
    protonum = int(words[i + 1])
    timeout = int(words[i + 2])
    i += 3
    state = None
    if i < len(words) and "=" not in words[i] and not words[i].startswith("["):
        state = words[i]
        i += 1
    tuples: list[dict[str, str]] = [{}, {}]
    which = -1
    flags: list[str] = []
    extra: dict[str, str] = {}
    for w in words[i:]:
        if w.startswith("[") and w.endswith("]"):
            flags.append(w[1:-1])
            continue
        key, _, value = w.partition("=")
        if key == "src":
            which += 1
        if key in _TUPLE_KEYS and 0 <= which <= 1 and key not in tuples[which]:
            tuples[which][key] = value
        elif key in ("packets", "bytes") and 0 <= which <= 1:
            tuples[which][key] = value
        else:
            extra[key] = value
    if l3 is None:
        l3 = "ipv6" if ":" in tuples[0].get("src", "") else "ipv4"
    return {
        "l3": l3,
        "proto": proto,
        "protonum": protonum,
        "timeout": timeout,
        "state": state,
        "orig": tuples[0],
        "reply": tuples[1],
        "flags": [f for f in flags if f in _FLAGS] + [f for f in flags if f not in _FLAGS],
        "extra": extra,
    }
