#!/usr/bin/env bash
# record_captures.sh - record the example captures shipped in examples/ from REAL traffic.
#
# Usage:  sudo tools/record_captures.sh [OUTPUT_DIR]      (default: <repo>/examples)
#
# Creates two network namespaces (client and server) joined by one veth pair, runs small
# servers in the server namespace, generates traffic from the client namespace and records it
# with tcpdump on the client-side veth (link type Ethernet). Writes:
#
#   http.pcap   3 HTTP requests (python http.server, curl): 2 over IPv4, 1 over IPv6
#   dns.pcap    UDP DNS queries to a tiny python DNS server, plus one query to a closed port
#               (answered by the server kernel with ICMP port unreachable)
#   ping.pcap   ping -c 3 over IPv4 and over IPv6 (with ARP / neighbour discovery)
#   mixed.pcap  all of the above in one capture
#
# If `nft` and `conntrack` are installed, conntrack is also enabled in the client namespace
# (one nftables `ct state` rule) and the kernel's own table is saved next to each capture as
# NAME.conntrack (`conntrack -L -o extended`, sorted, default sysctls, taken about 1 s after
# the last packet), as ground truth for `nfct replay`. Without them that step is skipped.
#
# Needs root. Installs nothing. Required: ip (iproute2), tcpdump, curl, python3, ping
# (iputils-ping). Optional: ethtool (turns checksum offload off so captured checksums are the
# real ones), nft + conntrack (ground truth). On Debian/Ubuntu:
#   apt-get update && apt-get install -y iproute2 tcpdump curl python3 iputils-ping ethtool \
#       nftables conntrack
#
# Traffic only goes between the two namespaces (192.0.2.0/24 TEST-NET-1, 2001:db8::/64
# documentation prefix). Only per-namespace sysctls are changed; the host's own network
# configuration is never touched. The namespaces (and every process left in them) are removed
# on exit, also on failure. Re-running is safe: stale namespaces from an earlier, interrupted
# run are removed first, and the outputs are only replaced once all captures have been verified.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/examples}

NS_C=nfct-rec-client
NS_S=nfct-rec-server
VETH_C=nfct-c0            # client side; tcpdump listens here
VETH_S=nfct-s0
V4_C=192.0.2.1
V4_S=192.0.2.2
V6_C=2001:db8::1
V6_S=2001:db8::2
HTTP_PORT=80
DNS_PORT=53
CLOSED_PORT=10053         # nothing listens here: the server kernel answers ICMP port unreachable
CAPTURES=(http dns ping mixed)

log()  { printf '[record] %s\n' "$*" >&2; }
warn() { printf '[record] WARNING: %s\n' "$*" >&2; }
die()  { printf '[record] ERROR: %s\n' "$*" >&2; exit 1; }

# --- preconditions -------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, tcpdump)"

missing=()
for tool in ip tcpdump curl python3 ping; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    die "missing required tools: ${missing[*]}
  on Debian/Ubuntu: apt-get update && apt-get install -y iproute2 tcpdump curl python3 iputils-ping"
fi
HAVE_ETHTOOL=0; command -v ethtool >/dev/null 2>&1 && HAVE_ETHTOOL=1
HAVE_CT=0; command -v nft >/dev/null 2>&1 && command -v conntrack >/dev/null 2>&1 && HAVE_CT=1
[ "$HAVE_ETHTOOL" -eq 1 ] || warn "ethtool not found: checksum offload stays ON, captured checksums may be partial (apt-get install ethtool)"
[ "$HAVE_CT" -eq 1 ] || warn "nft and/or conntrack not found: skipping the kernel conntrack ground truth (apt-get install nftables conntrack)"

# The real interpreter, not a shim (pyenv etc.), so the pids we start are the servers themselves.
PY=$(python3 -c 'import sys; print(sys.executable)')

WORK=$(mktemp -d /tmp/nfct-record.XXXXXX)
TCPDUMP_PID=

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

remove_ns() {
    local ns=$1 pids
    [ -e "/run/netns/$ns" ] || return 0
    # Only processes inside our own namespace: the servers this script (or an interrupted
    # earlier run of it) started there.
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
        kill $pids 2>/dev/null || true
        sleep 0.3
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$TCPDUMP_PID" ]; then
        kill -INT "$TCPDUMP_PID" 2>/dev/null
        wait "$TCPDUMP_PID" 2>/dev/null
    fi
    remove_ns "$NS_C"
    remove_ns "$NS_S"
    rm -rf "$WORK"
    [ "$rc" -eq 0 ] || log "failed (exit $rc); namespaces removed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helper programs -----------------------------------------------------------------------
mkdir -p "$WORK/www"
printf 'hello from the nfct example capture\n' > "$WORK/www/hello.txt"

cat > "$WORK/http_server.py" <<'EOF'
# python http.server on [::]:PORT (dual stack, HTTP/1.0: the server closes each connection).
import functools, http.server, socket, sys
port, root, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
srv = DualStack(("::", port), handler)
open(ready, "w").close()
srv.serve_forever()
EOF

cat > "$WORK/dns_server.py" <<'EOF'
# A tiny authoritative DNS server: UDP [::]:PORT (dual stack), real DNS wire format.
import socket, struct, sys
port, ready = int(sys.argv[1]), sys.argv[2]
ZONE = {  # (name, qtype) -> rdata
    ("www.nfct.test", 1): socket.inet_pton(socket.AF_INET, "192.0.2.80"),
    ("www.nfct.test", 28): socket.inet_pton(socket.AF_INET6, "2001:db8::80"),
    ("ns.nfct.test", 1): socket.inet_pton(socket.AF_INET, "192.0.2.2"),
}
def answer(q):
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    if qd != 1:
        return None
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii").lower())
        i += 1 + q[i]
    i += 1
    qtype, qclass = struct.unpack("!HH", q[i:i + 4])
    question = q[12:i + 4]
    rdata = ZONE.get((".".join(labels), qtype))
    rcode = 0 if rdata or any(n == ".".join(labels) for n, _ in ZONE) else 3
    hdr = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, 1 if rdata else 0, 0, 0)
    ans = b""
    if rdata:
        ans = struct.pack("!HHHIH", 0xC00C, qtype, qclass, 300, len(rdata)) + rdata
    return hdr + question + ans
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", port))
open(ready, "w").close()
while True:
    q, peer = s.recvfrom(2048)
    try:
        r = answer(q)
    except Exception:
        r = None
    if r:
        s.sendto(r, peer)
EOF

cat > "$WORK/dns_client.py" <<'EOF'
# Fixed queries with fixed source ports and ids, so the README can name every flow.
import socket, struct, sys, time
v4, v6 = sys.argv[1].split(","), sys.argv[2].split(",")  # "client,server" address pairs
port, closed = int(sys.argv[3]), int(sys.argv[4])
def query(qid, name, qtype):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", qtype, 1)
def ask(fam, src, sport, dst, dport, qid, name, qtype, sock=None, expect="answer"):
    s = sock or socket.socket(fam, socket.SOCK_DGRAM)
    if sock is None:
        s.bind((src, sport))
        s.connect((dst, dport))     # connected: an ICMP error comes back as ECONNREFUSED
        s.settimeout(2)
    s.send(query(qid, name, qtype))
    try:
        r = s.recv(2048)
        got = "answer rcode=%d an=%d" % (r[3] & 15, struct.unpack("!H", r[6:8])[0])
        assert struct.unpack("!H", r[:2])[0] == qid
    except ConnectionRefusedError:
        got = "ICMP port unreachable"
    print("  dns %s:%d -> %s:%d id=%#06x %s: %s" % (src, sport, dst, dport, qid, name, got))
    ok = (got == "ICMP port unreachable") == (expect == "refused")
    if not ok:
        sys.exit("unexpected result")
    return s
I4, I6 = socket.AF_INET, socket.AF_INET6
ask(I4, v4[0], 40001, v4[1], port, 0x1001, "www.nfct.test", 1).close()
ask(I4, v4[0], 40002, v4[1], port, 0x1002, "www.nfct.test", 28).close()   # same server port
ask(I6, v6[0], 40003, v6[1], port, 0x1003, "www.nfct.test", 28).close()
ask(I4, v4[0], 40004, v4[1], closed, 0x1004, "www.nfct.test", 1, expect="refused").close()
# a UDP "stream": the same socket asks again after more than 2 s (the kernel marks it ASSURED)
s = ask(I4, v4[0], 40005, v4[1], port, 0x1005, "ns.nfct.test", 1)
time.sleep(2.5)
ask(I4, v4[0], 40005, v4[1], port, 0x1006, "ns.nfct.test", 1, sock=s).close()
EOF

cat > "$WORK/pcap_check.py" <<'EOF'
# Verify every IPv4 header checksum and every TCP/UDP/ICMP/ICMPv6 checksum in classic pcap
# files (link type Ethernet), and summarise the packets. Exit status 1 on any bad checksum.
import collections, os, struct, sys

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s  # 0xFFFF when the embedded checksum is right

def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    end = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
           b"\xa1\xb2\x3c\x4d": ">"}[magic]
    linktype = struct.unpack(end + "I", data[20:24])[0]
    assert linktype == 1, "link type %d, want 1 (Ethernet)" % linktype
    off = 24
    while off < len(data):
        sec, frac, incl, orig = struct.unpack(end + "IIII", data[off:off + 16])
        assert incl == orig, "truncated packet"
        yield sec + frac / 1e6, data[off + 16:off + 16 + incl]
        off += 16 + incl

def l4_check(proto, src, dst, seg, v6):
    if v6:
        pseudo = src + dst + struct.pack("!IxxxB", len(seg), proto)
    else:
        pseudo = src + dst + struct.pack("!xBH", proto, len(seg))
    if proto == 1:                      # ICMP: no pseudo header
        return csum(seg) == 0xFFFF
    if proto == 17 and not v6 and seg[6:8] == b"\0\0":
        return None                     # UDP over IPv4 without checksum
    return csum(pseudo + seg) == 0xFFFF

bad = 0
for path in sys.argv[1:]:
    kinds, checked, first, last = collections.Counter(), collections.Counter(), None, None
    n = 0
    for ts, pkt in packets(path):
        n += 1
        first = ts if first is None else first
        last = ts
        etype = struct.unpack("!H", pkt[12:14])[0]
        if etype == 0x0806:
            kinds["arp"] += 1
            continue
        if etype == 0x0800:
            ip = pkt[14:]
            ihl = (ip[0] & 15) * 4
            if csum(ip[:ihl]) != 0xFFFF:
                print("%s: packet %d: bad IPv4 header checksum" % (path, n)); bad += 1
            checked["ipv4-header"] += 1
            proto, src, dst = ip[9], ip[12:16], ip[16:20]
            seg, v6 = ip[ihl:struct.unpack("!H", ip[2:4])[0]], False
        elif etype == 0x86DD:
            ip = pkt[14:]
            proto, src, dst = ip[6], ip[8:24], ip[24:40]
            seg, v6 = ip[40:40 + struct.unpack("!H", ip[4:6])[0]], True
            while proto in (0, 43, 60):     # hop-by-hop (MLD), routing, destination options
                proto, seg = seg[0], seg[(seg[1] + 1) * 8:]
        else:
            kinds["ethertype-%#06x" % etype] += 1
            continue
        name = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}.get(proto, "proto%d" % proto)
        fam = "ipv6" if v6 else "ipv4"
        detail = ""
        if proto == 6:
            flags = seg[13]
            detail = "".join(c for b, c in ((2, "S"), (16, "."), (8, "P"), (1, "F"), (4, "R")) if flags & b)
        elif proto in (1, 58):
            detail = "type%d" % seg[0]
        kinds["%s/%s %s" % (fam, name, detail)] += 1
        ok = l4_check(proto, src, dst, seg, v6)
        if ok is False:
            print("%s: packet %d: bad %s checksum" % (path, n, name)); bad += 1
        elif ok:
            checked[name] += 1
    print("%s: %d packets, %d bytes on disk, %.3f s; checksums verified: %s" % (
        path, n, os.path.getsize(path), (last or 0) - (first or 0),
        ", ".join("%s=%d" % kv for kv in sorted(checked.items()))))
    for k, v in sorted(kinds.items()):
        print("    %-28s %d" % (k, v))
    stamp = path[:-len(".pcap")] + ".conntrack-time"
    if os.path.exists(stamp):
        print("    conntrack -L snapshot taken %.3f s after the last packet" % (float(open(stamp).read()) - last))
print("checksum errors:", bad)
sys.exit(1 if bad else 0)
EOF

# --- namespaces and link -------------------------------------------------------------------
remove_ns "$NS_C"   # leftovers of an interrupted run
remove_ns "$NS_S"

log "creating namespaces $NS_C and $NS_S"
ip netns add "$NS_C"
ip netns add "$NS_S"
for ns in "$NS_C" "$NS_S"; do
    # per-namespace only: no DAD (IPv6 usable at once), no router solicitations (quiet link)
    for scope in all default; do
        nsx "$ns" sysctl -qw "net.ipv6.conf.$scope.accept_dad=0"
        nsx "$ns" sysctl -qw "net.ipv6.conf.$scope.router_solicitations=0"
    done
    nsx "$ns" ip link set lo up
done

ip -n "$NS_C" link add "$VETH_C" type veth peer name "$VETH_S" netns "$NS_S"
for pair in "$NS_C:$VETH_C" "$NS_S:$VETH_S"; do
    ns=${pair%%:*} dev=${pair#*:}
    nsx "$ns" sysctl -qw "net.ipv6.conf.$dev.accept_dad=0"
    if [ "$HAVE_ETHTOOL" -eq 1 ]; then
        nsx "$ns" ethtool -K "$dev" tx off rx off >/dev/null \
            || warn "ethtool -K $dev tx off rx off failed: checksums may be partial"
        for feat in tso gso gro; do    # one packet on the wire = one packet in the capture
            nsx "$ns" ethtool -K "$dev" "$feat" off >/dev/null 2>&1 || true
        done
    fi
done
ip -n "$NS_C" addr add "$V4_C/24" dev "$VETH_C"
ip -n "$NS_S" addr add "$V4_S/24" dev "$VETH_S"
ip -n "$NS_C" addr add "$V6_C/64" dev "$VETH_C" nodad
ip -n "$NS_S" addr add "$V6_S/64" dev "$VETH_S" nodad
ip -n "$NS_C" link set "$VETH_C" up
ip -n "$NS_S" link set "$VETH_S" up

if [ "$HAVE_CT" -eq 1 ]; then
    # Any `ct` expression makes the kernel track this namespace's traffic (both families).
    nsx "$NS_C" nft -f - <<'EOF'
table inet nfct_record {
    chain pre { type filter hook prerouting priority 0; policy accept; ct state new counter; }
    chain out { type filter hook output priority 0; policy accept; ct state new counter; }
}
EOF
fi

# --- servers -------------------------------------------------------------------------------
wait_for_file() {
    local f=$1 what=$2 i
    for i in $(seq 100); do [ -e "$f" ] && return 0; sleep 0.1; done
    die "$what did not start"
}
log "starting http.server on port $HTTP_PORT and the DNS server on udp/$DNS_PORT in $NS_S"
ip netns exec "$NS_S" "$PY" "$WORK/http_server.py" "$HTTP_PORT" "$WORK/www" "$WORK/http.ready" \
    >"$WORK/http_server.log" 2>&1 &
ip netns exec "$NS_S" "$PY" "$WORK/dns_server.py" "$DNS_PORT" "$WORK/dns.ready" >"$WORK/dns_server.log" 2>&1 &
wait_for_file "$WORK/http.ready" "http server"
wait_for_file "$WORK/dns.ready" "dns server"

# Sanity check outside any capture, then let the link go quiet (MLD reports after link up).
nsx "$NS_C" ping -q -c 1 -W 2 "$V4_S" >/dev/null || die "no IPv4 connectivity between namespaces"
nsx "$NS_C" ping -6 -q -c 1 -W 2 "$V6_S" >/dev/null || die "no IPv6 connectivity between namespaces"
sleep 3

# --- traffic -------------------------------------------------------------------------------
CURL=(curl -sS --noproxy '*' --max-time 5 -o /dev/null -w '  http %{remote_ip} %{url_effective} -> %{http_code}\n')
traffic_http() {
    nsx "$NS_C" "${CURL[@]}" "http://$V4_S:$HTTP_PORT/hello.txt" >&2
    sleep 0.3
    nsx "$NS_C" "${CURL[@]}" "http://$V4_S:$HTTP_PORT/missing.txt" >&2
    sleep 0.3
    nsx "$NS_C" "${CURL[@]}" -g "http://[$V6_S]:$HTTP_PORT/hello.txt" >&2
}
traffic_dns() {
    nsx "$NS_C" "$PY" "$WORK/dns_client.py" "$V4_C,$V4_S" "$V6_C,$V6_S" "$DNS_PORT" "$CLOSED_PORT" >&2
}
traffic_ping() {
    nsx "$NS_C" ping -c 3 -i 0.5 -W 2 "$V4_S" | tail -n 2 | sed 's/^/  /' >&2
    nsx "$NS_C" ping -6 -c 3 -i 0.5 -W 2 "$V6_S" | tail -n 2 | sed 's/^/  /' >&2
}
traffic_mixed() {
    traffic_http; sleep 0.5
    traffic_dns; sleep 0.5
    traffic_ping
}

capture() {
    local name=$1 pcap=$WORK/$1.pcap i
    log "capture $name"
    # every capture starts from cold caches: ARP/ND and the kernel conntrack table
    ip -n "$NS_C" neigh flush all
    ip -n "$NS_S" neigh flush all
    [ "$HAVE_CT" -eq 1 ] && nsx "$NS_C" conntrack -F 2>/dev/null
    # `ip netns exec` execs tcpdump, so $! is tcpdump itself (not a subshell) and gets the SIGINT
    ip netns exec "$NS_C" tcpdump -n -i "$VETH_C" -U -Z root -w "$pcap" 2>"$WORK/$name.tcpdump.log" &
    TCPDUMP_PID=$!
    for i in $(seq 100); do
        grep -qs 'listening on' "$WORK/$name.tcpdump.log" && break
        kill -0 "$TCPDUMP_PID" 2>/dev/null || die "tcpdump failed: $(cat "$WORK/$name.tcpdump.log")"
        sleep 0.1
    done
    grep -qs 'listening on' "$WORK/$name.tcpdump.log" || die "tcpdump did not start listening"
    sleep 0.5
    "traffic_$name"
    sleep 1                      # in-flight packets (last ACKs, ICMP errors) reach the capture
    if [ "$HAVE_CT" -eq 1 ]; then
        nsx "$NS_C" conntrack -L -o extended 2>/dev/null | sort > "$WORK/$name.conntrack"
        date +%s.%N > "$WORK/$name.conntrack-time"
    fi
    sleep 0.5
    kill -INT "$TCPDUMP_PID"     # tcpdump flushes and closes the file on SIGINT
    for i in $(seq 50); do kill -0 "$TCPDUMP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$TCPDUMP_PID" 2>/dev/null && die "$name: tcpdump did not stop on SIGINT"
    wait "$TCPDUMP_PID" || true
    TCPDUMP_PID=
    grep -E 'captured|dropped' "$WORK/$name.tcpdump.log" | sed 's/^/  tcpdump: /' >&2
    grep -q '^0 packets dropped by kernel' "$WORK/$name.tcpdump.log" \
        || die "$name: tcpdump reports dropped packets"
}

for c in "${CAPTURES[@]}"; do capture "$c"; done

# --- verification --------------------------------------------------------------------------
log "verifying"
for c in "${CAPTURES[@]}"; do
    f=$WORK/$c.pcap
    n=$(tcpdump -n -r "$f" 2>/dev/null | wc -l)
    # tcpdump -vv: TCP "cksum 0x... (correct)", UDP "[udp sum ok]", ICMPv6 "[icmp6 sum ok]";
    # failures read "(incorrect -> 0x...)", "[bad udp cksum ...]", "bad cksum", "wrong icmp cksum"
    vv=$(tcpdump -n -vv -r "$f" 2>/dev/null)
    correct=$( { grep -Eo '\(correct\)|sum ok\]' <<<"$vv" || true; } | wc -l)
    incorrect=$( { grep -Eo 'incorrect|bad [a-z0-9 ]*cksum|wrong [a-z0-9 ]*cksum' <<<"$vv" || true; } | wc -l)
    log "$c.pcap: $n packets; tcpdump -vv: $correct checksums reported correct, $incorrect incorrect"
    [ "$incorrect" -eq 0 ] || die "$c.pcap: tcpdump reports incorrect checksums"
    [ "$n" -gt 0 ] || die "$c.pcap is empty"
done
(cd "$WORK" && "$PY" pcap_check.py "${CAPTURES[@]/%/.pcap}") >&2 || die "checksum verification failed"

# --- publish -------------------------------------------------------------------------------
mkdir -p "$OUT"
for c in "${CAPTURES[@]}"; do
    size=$(stat -c %s "$WORK/$c.pcap")
    [ "$size" -lt 102400 ] || die "$c.pcap is $size bytes, want < 100 KB"
    install -m 0644 "$WORK/$c.pcap" "$OUT/$c.pcap"
    if [ "$HAVE_CT" -eq 1 ]; then
        install -m 0644 "$WORK/$c.conntrack" "$OUT/$c.conntrack"
    fi
done
log "wrote ${CAPTURES[*]/%/.pcap} to $OUT (kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%M:%SZ))"
