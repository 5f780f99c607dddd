//! The text conntrack-tools and the kernel print: `conntrack -L` (default and `-o extended`),
//! `/proc/net/nf_conntrack`, `conntrack -S` and `/proc/net/stat/nf_conntrack` (spec §12, §14).

use crate::conn::{ConnView, ProtoView};
use crate::stats::Stats;
use crate::tuple::{L4Kind, Tuple, Zone};
use crate::uapi::{
    AF_INET, AF_INET6, IPPROTO_DCCP, IPPROTO_GRE, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP,
    IPPROTO_UDP, IPPROTO_UDPLITE, IPS_ASSURED, IPS_HW_OFFLOAD, IPS_OFFLOAD, IPS_SEEN_REPLY,
};

// ---------------------------------------------------------------------------------------
// Printing. Everything appends to a caller-owned `String`; numbers and addresses are written
// digit by digit (no `format!`, no temporary allocation), so a replay can print millions of
// lines with one reused buffer.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The L4 name the kernel tracker prints in /proc (generic tracker: "unknown").
pub fn proc_l4_name(protonum: u8) -> &'static str {
    match protonum {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_UDPLITE => "udplite",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        IPPROTO_SCTP => "sctp",
        IPPROTO_GRE => "gre",
        _ => "unknown",
    }
}

/// The L4 name libnetfilter_conntrack prints (tcp, udp, udplite, icmp, icmpv6, sctp, gre, dccp;
/// else "unknown").
pub fn tool_l4_name(protonum: u8) -> &'static str {
    match protonum {
        IPPROTO_DCCP => "dccp",
        p => proc_l4_name(p),
    }
}

/// L3 name for the `%-8s %u ` column.
fn l3_name(l3num: u8) -> &'static str {
    match l3num {
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ => "unknown",
    }
}

/// Appends the decimal text of `n`.
#[inline]
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends lowercase hex without leading zeros (`%x`).
#[inline]
fn push_hex(out: &mut String, n: u32) {
    let mut started = false;
    for shift in (0..8).rev() {
        let d = ((n >> (shift * 4)) & 0xf) as usize;
        if d != 0 || started || shift == 0 {
            started = true;
            out.push(char::from(HEX[d]));
        }
    }
}

/// Appends exactly 8 lowercase hex digits (`%08x`).
#[inline]
fn push_hex8(out: &mut String, n: u32) {
    for shift in (0..8).rev() {
        out.push(char::from(HEX[((n >> (shift * 4)) & 0xf) as usize]));
    }
}

/// `%-8s %u `: a name left-justified in 8 columns, a space, a number, a space.
#[inline]
fn push_name_num(out: &mut String, name: &str, num: u8) {
    out.push_str(name);
    for _ in name.len()..8 {
        out.push(' ');
    }
    out.push(' ');
    push_u64(out, u64::from(num));
    out.push(' ');
}

/// `key=N `.
#[inline]
fn push_kv(out: &mut String, key: &str, v: u64) {
    out.push_str(key);
    push_u64(out, v);
    out.push(' ');
}

#[inline]
fn push_ipv4(out: &mut String, a: &[u8; 16]) {
    push_u64(out, u64::from(a[0]));
    for &b in &a[1..4] {
        out.push('.');
        push_u64(out, u64::from(b));
    }
}

#[inline]
fn group(a: &[u8; 16], i: usize) -> u16 {
    (u16::from(a[2 * i]) << 8) | u16::from(a[2 * i + 1])
}

/// inet_ntop-compatible IPv6 text (glibc rules: longest run of >= 2 zero groups compressed,
/// first one on ties; IPv4-mapped `::ffff:a.b.c.d` and IPv4-compatible `::a.b.c.d` in dotted
/// form; lowercase hex without leading zeros).
///
/// The dotted forms follow glibc exactly: the address starts with a run of exactly five zero
/// groups followed by `ffff` (mapped), or of exactly six zero groups (compatible, so group 6
/// is non-zero: `::`, `::1` and e.g. `::2` stay in hex).
pub fn fmt_ipv6_compressed(a: &[u8; 16], out: &mut String) {
    let mut words = [0u16; 8];
    for (i, w) in words.iter_mut().enumerate() {
        *w = group(a, i);
    }
    // Longest run of zero groups (first one wins ties), only if at least 2 long.
    let (mut best_base, mut best_len) = (usize::MAX, 0usize);
    let (mut cur_base, mut cur_len) = (usize::MAX, 0usize);
    for (i, &w) in words.iter().enumerate() {
        if w == 0 {
            if cur_len == 0 {
                cur_base = i;
            }
            cur_len += 1;
        } else {
            if cur_len > best_len {
                (best_base, best_len) = (cur_base, cur_len);
            }
            cur_len = 0;
        }
    }
    if cur_len > best_len {
        (best_base, best_len) = (cur_base, cur_len);
    }
    if best_len < 2 {
        best_base = usize::MAX;
        best_len = 0;
    }
    let in_run = |i: usize| best_base != usize::MAX && i >= best_base && i < best_base + best_len;
    for (i, &w) in words.iter().enumerate() {
        if in_run(i) {
            if i == best_base {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        if i == 6 && best_base == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff)) {
            push_u64(out, u64::from(a[12]));
            for &b in &a[13..16] {
                out.push('.');
                push_u64(out, u64::from(b));
            }
            return;
        }
        push_hex(out, u32::from(w));
    }
    if best_base != usize::MAX && best_base + best_len == 8 {
        out.push(':');
    }
}

/// The /proc form: 8 groups of 4 lowercase hex digits, uncompressed.
pub fn fmt_ipv6_full(a: &[u8; 16], out: &mut String) {
    for (i, pair) in a.chunks_exact(2).enumerate() {
        if i != 0 {
            out.push(':');
        }
        for &b in pair {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Which printer a line is for: the kernel's seq_file (/proc) or libnetfilter_conntrack's
/// default formatter (`conntrack -L`, `conntrack -E`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Printer {
    Proc,
    Tool,
}

/// `src=… dst=… ` plus the L4 part of one tuple.
fn push_tuple(out: &mut String, t: &Tuple, p: Printer) {
    out.push_str("src=");
    push_addr(out, t.l3num, &t.src, p);
    out.push_str(" dst=");
    push_addr(out, t.l3num, &t.dst, p);
    out.push(' ');
    // The kernel prints what its tracker put in the tuple; the tool prints the fields of
    // every protocol it knows the name of, 0 where the kernel sent none (DCCP on 6.18).
    let kind = t.kind();
    let layout = match p {
        Printer::Proc => kind,
        Printer::Tool => match t.protonum {
            IPPROTO_DCCP => L4Kind::Ports,
            _ => kind,
        },
    };
    let (su, du) = if kind == L4Kind::Generic { (0, 0) } else { (t.src_u, t.dst_u) };
    match layout {
        L4Kind::Ports => {
            push_kv(out, "sport=", u64::from(su));
            push_kv(out, "dport=", u64::from(du));
        }
        L4Kind::Icmp | L4Kind::Icmpv6 => {
            push_kv(out, "type=", u64::from(t.icmp_type()));
            push_kv(out, "code=", u64::from(t.icmp_code()));
            push_kv(out, "id=", u64::from(t.src_u));
        }
        L4Kind::Gre => {
            out.push_str("srckey=0x");
            push_hex(out, u32::from(t.src_u));
            out.push_str(" dstkey=0x");
            push_hex(out, u32::from(t.dst_u));
            out.push(' ');
        }
        L4Kind::Generic => {}
    }
}

#[inline]
fn push_addr(out: &mut String, l3num: u8, a: &[u8; 16], p: Printer) {
    if l3num == AF_INET {
        push_ipv4(out, a);
    } else if p == Printer::Proc {
        fmt_ipv6_full(a, out);
    } else {
        fmt_ipv6_compressed(a, out);
    }
}

/// `packets=N bytes=N ` of one direction, when accounting exists.
#[inline]
fn push_counter(out: &mut String, v: &ConnView, dir: usize) {
    if let Some(c) = v.acct.as_ref().and_then(|a| a.get(dir)) {
        push_kv(out, "packets=", c.packets);
        push_kv(out, "bytes=", c.bytes);
    }
}

/// `zone-orig=`/`zone-reply=`/`zone=` for the zone direction `dir` (1, 2 or 3): the kernel
/// prints the field whose direction matches exactly (even zone 0); the tool only gets it from
/// netlink for a non-default id.
#[inline]
fn push_zone(out: &mut String, v: &ConnView, dir: u8, p: Printer) {
    if v.zone.dir != dir || (p == Printer::Tool && v.zone.id == 0) {
        return;
    }
    let key = match dir {
        Zone::DIR_ORIG => "zone-orig=",
        Zone::DIR_REPL => "zone-reply=",
        _ => "zone=",
    };
    push_kv(out, key, u64::from(v.zone.id));
}

/// From the original tuple to the status flag: tuples, directional zones, counters,
/// `[UNREPLIED]`, and `[HW_OFFLOAD]`/`[OFFLOAD]`/`[ASSURED]`.
fn push_tuples_and_flags(out: &mut String, v: &ConnView, p: Printer) {
    push_tuple(out, &v.orig, p);
    push_zone(out, v, Zone::DIR_ORIG, p);
    push_counter(out, v, 0);
    if v.status & IPS_SEEN_REPLY == 0 {
        out.push_str("[UNREPLIED] ");
    }
    push_tuple(out, &v.reply, p);
    push_zone(out, v, Zone::DIR_REPL, p);
    push_counter(out, v, 1);
    if v.status & IPS_HW_OFFLOAD != 0 {
        out.push_str("[HW_OFFLOAD] ");
    } else if v.status & IPS_OFFLOAD != 0 {
        out.push_str("[OFFLOAD] ");
    } else if v.status & IPS_ASSURED != 0 {
        out.push_str("[ASSURED] ");
    }
}

/// The TCP/SCTP state word as the tool prints it (`%s `).
#[inline]
fn push_tool_state(out: &mut String, v: &ConnView) {
    match v.proto {
        ProtoView::Tcp(s) | ProtoView::Sctp(s) => {
            out.push_str(s);
            out.push(' ');
        }
        ProtoView::None | ProtoView::Gre { .. } => {}
    }
}

/// Removes the single trailing space the last field left (the tool's lines end without
/// trailing whitespace).
#[inline]
fn trim_one_space(out: &mut String, start: usize) {
    if out.len() > start && out.ends_with(' ') {
        out.pop();
    }
}

/// The listings of the table: `conntrack -L -o extended`, `conntrack -L`, and
/// `/proc/net/nf_conntrack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Extended,
    Conntrack,
    Proc,
}

/// The `use=` a /proc reader sees on an idle entry: the table's reference and its own.
pub const PROC_USE: u32 = 2;

impl ListFormat {
    /// The format of a name: "extended", "conntrack" or "proc".
    pub fn from_name(name: &str) -> Option<ListFormat> {
        match name {
            "extended" => Some(ListFormat::Extended),
            "conntrack" => Some(ListFormat::Conntrack),
            "proc" => Some(ListFormat::Proc),
            _ => None,
        }
    }

    /// One entry's line (no newline).
    pub fn line(self, v: &ConnView, out: &mut String) {
        match self {
            ListFormat::Extended => conntrack_line(v, true, out),
            ListFormat::Conntrack => conntrack_line(v, false, out),
            ListFormat::Proc => proc_line(&ConnView { use_count: PROC_USE, ..*v }, out),
        }
    }

    /// A whole listing, one line per entry, each ending in a newline.
    pub fn listing<'a>(self, rows: impl IntoIterator<Item = &'a ConnView>, out: &mut String) {
        for v in rows {
            self.line(v, out);
            out.push('\n');
        }
    }
}

/// One `conntrack -L` line (extended = `-o extended`: adds the L3 columns). No trailing
/// whitespace, no newline.
pub fn conntrack_line(v: &ConnView, extended: bool, out: &mut String) {
    let start = out.len();
    if extended {
        push_name_num(out, l3_name(v.orig.l3num), v.orig.l3num);
    }
    push_name_num(out, tool_l4_name(v.orig.protonum), v.orig.protonum);
    push_u64(out, v.timeout);
    out.push(' ');
    push_tool_state(out, v);
    push_tuples_and_flags(out, v, Printer::Tool);
    // The dump always carries the mark.
    push_kv(out, "mark=", u64::from(v.mark));
    push_zone(out, v, Zone::DIR_BOTH, Printer::Tool);
    if let Some(t) = v.tstamp {
        push_kv(out, "delta-time=", t.delta_tool());
    }
    push_kv(out, "use=", u64::from(v.use_count));
    trim_one_space(out, start);
}

/// One /proc/net/nf_conntrack line (ends with `use=N`, no newline).
pub fn proc_line(v: &ConnView, out: &mut String) {
    push_name_num(out, l3_name(v.orig.l3num), v.orig.l3num);
    push_name_num(out, proc_l4_name(v.orig.protonum), v.orig.protonum);
    let offloaded = v.status & IPS_OFFLOAD != 0;
    if !offloaded {
        push_u64(out, v.timeout);
        out.push(' ');
    }
    match v.proto {
        ProtoView::Tcp(s) => {
            if !offloaded {
                out.push_str(s);
                out.push(' ');
            }
        }
        ProtoView::Sctp(s) => {
            out.push_str(s);
            out.push(' ');
        }
        ProtoView::Gre { timeout, stream_timeout } => {
            push_kv(out, "timeout=", u64::from(timeout));
            // "timeout=%u, stream_timeout=%u ": the comma follows the first number.
            out.pop();
            out.push_str(", ");
            push_kv(out, "stream_timeout=", u64::from(stream_timeout));
        }
        ProtoView::None => {}
    }
    push_tuples_and_flags(out, v, Printer::Proc);
    push_kv(out, "mark=", u64::from(v.mark));
    push_zone(out, v, Zone::DIR_BOTH, Printer::Proc);
    if let Some(t) = v.tstamp {
        push_kv(out, "delta-time=", t.delta_proc());
    }
    out.push_str("use=");
    push_u64(out, u64::from(v.use_count));
}

/// The body of a `conntrack -E -o extended` line for an event: tag is "NEW", "UPDATE" or
/// "DESTROY", printed as `%9s ` of `[TAG]`; `with_protoinfo` says whether the TCP/SCTP state
/// word is printed (spec §13.3); no `use=`; DESTROY omits the timeout when it is 0; `mark=` only
/// when non-zero (the event carries it only then, or on a MARK event); the zone as in `-L`;
/// counters and delta-time when present in the view. No trailing whitespace, no newline.
pub fn event_line(tag: &str, v: &ConnView, with_protoinfo: bool, out: &mut String) {
    let start = out.len();
    // "%9s " of "[TAG]".
    for _ in (tag.len() + 2)..9 {
        out.push(' ');
    }
    out.push('[');
    out.push_str(tag);
    out.push_str("] ");
    push_name_num(out, l3_name(v.orig.l3num), v.orig.l3num);
    push_name_num(out, tool_l4_name(v.orig.protonum), v.orig.protonum);
    if !(tag == "DESTROY" && v.timeout == 0) {
        push_u64(out, v.timeout);
        out.push(' ');
    }
    if with_protoinfo {
        push_tool_state(out, v);
    }
    push_tuples_and_flags(out, v, Printer::Tool);
    if v.mark != 0 {
        push_kv(out, "mark=", u64::from(v.mark));
    }
    push_zone(out, v, Zone::DIR_BOTH, Printer::Tool);
    if let Some(t) = v.tstamp {
        push_kv(out, "delta-time=", t.delta_tool());
    }
    trim_one_space(out, start);
}

/// `conntrack -S` output: one line `cpu=0   \tfound=0 invalid=0 … chaintoolong=0 ` (`cpu=%-4u`,
/// TAB, each field followed by a space, trailing space kept), newline-terminated. The kernel's
/// per-CPU counters are 32-bit (`unsigned int`), so the values wrap as they would there.
pub fn stats_lines(s: &Stats, out: &mut String) {
    out.push_str("cpu=0   \t");
    for (name, val) in s.fields() {
        out.push_str(name);
        out.push('=');
        push_u64(out, u64::from(val as u32));
        out.push(' ');
    }
    out.push('\n');
}

/// `/proc/net/stat/nf_conntrack`: the header line and one data line (entries = `count`), each
/// newline-terminated; `%08x` fields (32-bit, as the kernel's), two spaces after `entries` and
/// before `expect_new`, no trailing space.
pub fn proc_stat_lines(s: &Stats, count: u64, out: &mut String) {
    out.push_str(
        "entries  clashres found new invalid ignore delete chainlength insert insert_failed \
         drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n",
    );
    let vals: [u64; 17] = [
        count,
        s.clash_resolve,
        s.found,
        0, // new
        s.invalid,
        0, // ignore
        0, // delete
        s.chaintoolong,
        s.insert,
        s.insert_failed,
        s.drop,
        s.early_drop,
        s.error,
        s.expect_new,
        s.expect_create,
        s.expect_delete,
        s.search_restart,
    ];
    for (i, &v) in vals.iter().enumerate() {
        match i {
            0 => {}
            1 | 13 => out.push_str("  "),
            _ => out.push(' '),
        }
        push_hex8(out, v as u32);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{Counter, Tstamp};

    const SEEN: u32 = IPS_SEEN_REPLY;
    const ASSURED: u32 = IPS_SEEN_REPLY | IPS_ASSURED;

    fn v4(src: &str, dst: &str, proto: u8, su: u16, du: u16) -> Tuple {
        Tuple::new_v4(src.parse().unwrap(), dst.parse().unwrap(), proto, su, du)
    }

    fn v6(src: &str, dst: &str, proto: u8, su: u16, du: u16) -> Tuple {
        Tuple::new_v6(src.parse().unwrap(), dst.parse().unwrap(), proto, su, du)
    }

    /// An idle entry as `conntrack -L` dumps it (`use=1`, mark 0, default zone), the reply
    /// tuple being the inverse of the original.
    fn view(orig: Tuple, status: u32, timeout: u64, proto: ProtoView) -> ConnView {
        ConnView {
            orig,
            reply: orig.invert().unwrap(),
            status,
            timeout,
            proto,
            mark: 0,
            zone: Zone::default(),
            acct: None,
            tstamp: None,
            use_count: 1,
            id: 0,
        }
    }

    fn tstamp(start: u64, stop: u64) -> Option<Tstamp> {
        Some(Tstamp { start, stop })
    }

    fn ct(v: &ConnView, extended: bool) -> String {
        let mut s = String::new();
        conntrack_line(v, extended, &mut s);
        s
    }

    fn proc(v: &ConnView) -> String {
        let mut s = String::new();
        proc_line(v, &mut s);
        s
    }

    fn ev(tag: &str, v: &ConnView, with_protoinfo: bool) -> String {
        let mut s = String::new();
        event_line(tag, v, with_protoinfo, &mut s);
        s
    }

    fn ip6c(s: &str) -> String {
        let a: std::net::Ipv6Addr = s.parse().unwrap();
        let mut o = String::new();
        fmt_ipv6_compressed(&a.octets(), &mut o);
        o
    }

    // --- Names ----------------------------------------------------------------------------

    #[test]
    fn l4_names() {
        for (p, n) in [(6, "tcp"), (17, "udp"), (136, "udplite"), (1, "icmp"), (58, "icmpv6")] {
            assert_eq!(proc_l4_name(p), n);
            assert_eq!(tool_l4_name(p), n);
        }
        assert_eq!(proc_l4_name(132), "sctp");
        assert_eq!(proc_l4_name(47), "gre");
        assert_eq!(tool_l4_name(47), "gre");
        // DCCP: generic tracker in the kernel (6.18), known name in the tool.
        assert_eq!(proc_l4_name(33), "unknown");
        assert_eq!(tool_l4_name(33), "dccp");
        for p in [0u8, 2, 50, 51, 89, 255] {
            assert_eq!(proc_l4_name(p), "unknown");
            assert_eq!(tool_l4_name(p), "unknown");
        }
    }

    // --- conntrack -L: real kernel lines (/work/shared/pcaps/kernel/*.json `lines`) ---------

    #[test]
    fn list_ipv6_udp_unreplied_arkime_v6() {
        // arkime-v6.checksum1.json
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:410:0:2c0:dfff:fe47:33e", 17, 41077, 33445);
        let v = view(o, 0, 29, ProtoView::None);
        let exp = "ipv6     10 udp      17 29 src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:410:0:2c0:dfff:fe47:33e sport=41077 dport=33445 [UNREPLIED] src=3ffe:501:410:0:2c0:dfff:fe47:33e dst=3ffe:507:0:1:200:86ff:fe05:80da sport=33445 dport=41077 mark=0 use=1";
        assert_eq!(ct(&v, true), exp);
        assert_eq!(ct(&v, false), &exp[12..]);
    }

    #[test]
    fn list_ipv6_udp_replied_arkime_v6() {
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:4819::42", 17, 2408, 53);
        let v = view(o, SEEN, 29, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv6     10 udp      17 29 src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:4819::42 sport=2408 dport=53 src=3ffe:501:4819::42 dst=3ffe:507:0:1:200:86ff:fe05:80da sport=53 dport=2408 mark=0 use=1"
        );
    }

    #[test]
    fn list_ipv6_tcp_time_wait_arkime_v6() {
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:410:0:2c0:dfff:fe47:33e", 6, 1022, 22);
        let v = view(o, ASSURED, 119, ProtoView::Tcp("TIME_WAIT"));
        assert_eq!(
            ct(&v, true),
            "ipv6     10 tcp      6 119 TIME_WAIT src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:410:0:2c0:dfff:fe47:33e sport=1022 dport=22 src=3ffe:501:410:0:2c0:dfff:fe47:33e dst=3ffe:507:0:1:200:86ff:fe05:80da sport=22 dport=1022 [ASSURED] mark=0 use=1"
        );
    }

    #[test]
    fn list_ipv6_icmpv6_arkime_v6() {
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 58, 30240, 128 << 8);
        let v = view(o, SEEN, 29, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv6     10 icmpv6   58 29 src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:0:1001::2 type=128 code=0 id=30240 src=3ffe:501:0:1001::2 dst=3ffe:507:0:1:200:86ff:fe05:80da type=129 code=0 id=30240 mark=0 use=1"
        );
    }

    #[test]
    fn list_ipv6_tcp_reddit_nat64() {
        // ndpi-reddit.checksum1.json
        let o = v6("2a01:cb01:2049:8b07:991d:ec85:28df:f629", "64:ff9b::9765:798c", 6, 56594, 443);
        let v = view(o, ASSURED, 431999, ProtoView::Tcp("ESTABLISHED"));
        assert_eq!(
            ct(&v, true),
            "ipv6     10 tcp      6 431999 ESTABLISHED src=2a01:cb01:2049:8b07:991d:ec85:28df:f629 dst=64:ff9b::9765:798c sport=56594 dport=443 src=64:ff9b::9765:798c dst=2a01:cb01:2049:8b07:991d:ec85:28df:f629 sport=443 dport=56594 [ASSURED] mark=0 use=1"
        );
        let o = v6("2a01:cb01:2049:8b07:991d:ec85:28df:f629", "2a00:1450:4007:808::2001", 6, 46812, 443);
        let v = view(o, ASSURED, 9, ProtoView::Tcp("CLOSE"));
        assert_eq!(
            ct(&v, true),
            "ipv6     10 tcp      6 9 CLOSE src=2a01:cb01:2049:8b07:991d:ec85:28df:f629 dst=2a00:1450:4007:808::2001 sport=46812 dport=443 src=2a00:1450:4007:808::2001 dst=2a01:cb01:2049:8b07:991d:ec85:28df:f629 sport=443 dport=46812 [ASSURED] mark=0 use=1"
        );
    }

    #[test]
    fn list_ipv6_icmpv6_zeek_single_zero_group_not_compressed() {
        // zeek-icmp6-ping.checksum1.json: "2620:0:e00:…" keeps its lone zero group.
        let o = v6("2620:0:e00:400e:d1d:db37:beb:5aac", "2001:4860:8006::63", 58, 1, 128 << 8);
        let v = view(o, SEEN, 29, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv6     10 icmpv6   58 29 src=2620:0:e00:400e:d1d:db37:beb:5aac dst=2001:4860:8006::63 type=128 code=0 id=1 src=2001:4860:8006::63 dst=2620:0:e00:400e:d1d:db37:beb:5aac type=129 code=0 id=1 mark=0 use=1"
        );
    }

    #[test]
    fn list_ipv4_tcp_syn_sent_alexa() {
        // ndpi-alexa-app.checksum0.json
        let o = v4("172.16.42.216", "10.201.126.241", 6, 40242, 8080);
        let v = view(o, 0, 119, ProtoView::Tcp("SYN_SENT"));
        let exp = "ipv4     2 tcp      6 119 SYN_SENT src=172.16.42.216 dst=10.201.126.241 sport=40242 dport=8080 [UNREPLIED] src=10.201.126.241 dst=172.16.42.216 sport=8080 dport=40242 mark=0 use=1";
        assert_eq!(ct(&v, true), exp);
        assert_eq!(ct(&v, false), &exp[11..]);
    }

    #[test]
    fn list_ipv4_tcp_established_unassured_nintendo() {
        // ndpi-nintendo.checksum0.json: replied but not (yet) assured.
        let o = v4("192.168.12.114", "54.146.242.74", 6, 11534, 443);
        let v = view(o, SEEN, 299, ProtoView::Tcp("ESTABLISHED"));
        assert_eq!(
            ct(&v, true),
            "ipv4     2 tcp      6 299 ESTABLISHED src=192.168.12.114 dst=54.146.242.74 sport=11534 dport=443 src=54.146.242.74 dst=192.168.12.114 sport=443 dport=11534 mark=0 use=1"
        );
    }

    #[test]
    fn list_ipv4_icmp_vlan_and_unknown_igmp() {
        // pcapplusplus-VlanPackets.checksum0.json
        let o = v4("10.118.10.1", "10.118.10.2", 1, 3, 8 << 8);
        let v = view(o, SEEN, 29, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 icmp     1 29 src=10.118.10.1 dst=10.118.10.2 type=8 code=0 id=3 src=10.118.10.2 dst=10.118.10.1 type=0 code=0 id=3 mark=0 use=1"
        );
        // pcapplusplus-many-protocols.checksum0.json
        let o = v4("10.0.0.1", "1.2.3.4", 1, 1, 8 << 8);
        let v = view(o, 0, 29, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 icmp     1 29 src=10.0.0.1 dst=1.2.3.4 type=8 code=0 id=1 [UNREPLIED] src=1.2.3.4 dst=10.0.0.1 type=0 code=0 id=1 mark=0 use=1"
        );
        // ndpi-alexa-app.checksum0.json: IGMP goes to the generic tracker.
        let o = v4("0.0.0.0", "224.0.0.1", 2, 0, 0);
        let v = view(o, 0, 599, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 unknown  2 599 src=0.0.0.0 dst=224.0.0.1 [UNREPLIED] src=224.0.0.1 dst=0.0.0.0 mark=0 use=1"
        );
    }

    // --- conntrack -L: spec §14.2 / §10 examples --------------------------------------------

    #[test]
    fn list_spec_examples() {
        let o = v4("10.1.0.2", "10.2.0.2", 6, 1001, 80);
        let v = view(o, ASSURED, 431999, ProtoView::Tcp("ESTABLISHED"));
        assert_eq!(
            ct(&v, false),
            "tcp      6 431999 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=1001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1001 [ASSURED] mark=0 use=1"
        );
        let v = view(o, 0, 119, ProtoView::Tcp("SYN_SENT"));
        assert_eq!(
            ct(&v, true),
            "ipv4     2 tcp      6 119 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=1001 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1001 mark=0 use=1"
        );
        // Zone 7 (both directions), accounting, timestamps.
        let o = v4("10.1.0.2", "10.2.0.2", 17, 6002, 5353);
        let mut v = view(o, 0, 28, ProtoView::None);
        v.zone = Zone { id: 7, dir: Zone::DIR_BOTH };
        v.acct = Some([Counter { packets: 1, bytes: 29 }, Counter { packets: 0, bytes: 0 }]);
        v.tstamp = tstamp(1_000_000_000, 2_000_000_000);
        assert_eq!(
            ct(&v, false),
            "udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6002 dport=5353 packets=1 bytes=29 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5353 dport=6002 packets=0 bytes=0 mark=0 zone=7 delta-time=1 use=1"
        );
        // Mark, counters on a replied flow (the `[start=…]`/`id=` parts need other -o flags).
        let o = v4("10.1.0.2", "10.2.0.2", 17, 6001, 53);
        let mut v = view(o, SEEN, 28, ProtoView::None);
        v.mark = 42;
        v.acct = Some([Counter { packets: 1, bytes: 33 }, Counter { packets: 1, bytes: 38 }]);
        v.tstamp = tstamp(1_000_000_000, 2_000_000_000);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 bytes=33 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 mark=42 delta-time=1 use=1"
        );
        // IPv6 compressed in -L.
        let o = v6("fd00:1::2", "fd00:2::2", 58, 85, 128 << 8);
        let v = view(o, SEEN, 29, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv6     10 icmpv6   58 29 src=fd00:1::2 dst=fd00:2::2 type=128 code=0 id=85 src=fd00:2::2 dst=fd00:1::2 type=129 code=0 id=85 mark=0 use=1"
        );
    }

    #[test]
    fn list_gre_generic_dccp() {
        // GRE: keys in hex, no timeouts (those are /proc only).
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_GRE, 0, 0);
        let v = view(o, 0, 29, ProtoView::Gre { timeout: 30, stream_timeout: 180 });
        assert_eq!(
            ct(&v, true),
            "ipv4     2 gre      47 29 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 use=1"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_GRE, 0xbeef, 0x1a);
        let v = view(o, ASSURED, 179, ProtoView::Gre { timeout: 30, stream_timeout: 180 });
        assert_eq!(
            ct(&v, false),
            "gre      47 179 src=10.1.0.2 dst=10.2.0.2 srckey=0xbeef dstkey=0x1a src=10.2.0.2 dst=10.1.0.2 srckey=0x1a dstkey=0xbeef [ASSURED] mark=0 use=1"
        );
        // ESP (50): generic, no L4 fields.
        let o = v4("10.1.0.2", "10.2.0.2", 50, 0, 0);
        let v = view(o, 0, 599, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 unknown  50 599 src=10.1.0.2 dst=10.2.0.2 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 mark=0 use=1"
        );
        // DCCP (33) on 6.18: generic in the kernel, but the tool prints its name and zero ports.
        let o = v4("10.1.0.2", "10.2.0.2", 33, 0, 0);
        let v = view(o, 0, 599, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 dccp     33 599 src=10.1.0.2 dst=10.2.0.2 sport=0 dport=0 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=0 dport=0 mark=0 use=1"
        );
        assert_eq!(
            proc(&v),
            "ipv4     2 unknown  33 599 src=10.1.0.2 dst=10.2.0.2 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 mark=0 zone=0 use=1"
        );
    }

    #[test]
    fn list_sctp_and_udplite() {
        let o = v4("10.1.0.2", "10.2.0.2", 132, 5000, 5001);
        let v = view(o, ASSURED, 210, ProtoView::Sctp("ESTABLISHED"));
        assert_eq!(
            ct(&v, true),
            "ipv4     2 sctp     132 210 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=5001 src=10.2.0.2 dst=10.1.0.2 sport=5001 dport=5000 [ASSURED] mark=0 use=1"
        );
        let o = v4("10.1.0.2", "10.2.0.2", 136, 7, 9);
        let v = view(o, 0, 30, ProtoView::None);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 udplite  136 30 src=10.1.0.2 dst=10.2.0.2 sport=7 dport=9 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=9 dport=7 mark=0 use=1"
        );
    }

    #[test]
    fn zones_by_direction() {
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_UDP, 1, 2);
        let mut v = view(o, SEEN, 30, ProtoView::None);
        v.acct = Some([Counter { packets: 3, bytes: 4 }, Counter { packets: 5, bytes: 6 }]);
        v.zone = Zone { id: 9, dir: Zone::DIR_ORIG };
        assert_eq!(
            ct(&v, false),
            "udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 zone-orig=9 packets=3 bytes=4 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 packets=5 bytes=6 mark=0 use=1"
        );
        v.use_count = 2;
        assert_eq!(
            proc(&v),
            "ipv4     2 udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 zone-orig=9 packets=3 bytes=4 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 packets=5 bytes=6 mark=0 use=2"
        );
        v.zone = Zone { id: 9, dir: Zone::DIR_REPL };
        assert_eq!(
            proc(&v),
            "ipv4     2 udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 packets=3 bytes=4 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 zone-reply=9 packets=5 bytes=6 mark=0 use=2"
        );
        assert_eq!(
            ev("UPDATE", &v, false),
            " [UPDATE] ipv4     2 udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 packets=3 bytes=4 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 zone-reply=9 packets=5 bytes=6"
        );
        // The tool never sees a zone 0 attribute; /proc prints its directional field anyway.
        v.zone = Zone { id: 0, dir: Zone::DIR_ORIG };
        v.acct = None;
        assert_eq!(
            ct(&v, false),
            "udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 mark=0 use=2"
        );
        assert_eq!(
            proc(&v),
            "ipv4     2 udp      17 30 src=10.1.0.2 dst=10.2.0.2 sport=1 dport=2 zone-orig=0 src=10.2.0.2 dst=10.1.0.2 sport=2 dport=1 mark=0 use=2"
        );
    }

    #[test]
    fn offload_flags() {
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_TCP, 1111, 80);
        let mut v = view(o, ASSURED | IPS_OFFLOAD, 86400, ProtoView::Tcp("ESTABLISHED"));
        v.use_count = 2;
        // /proc: no timeout, no TCP state, [OFFLOAD] instead of [ASSURED].
        assert_eq!(
            proc(&v),
            "ipv4     2 tcp      6 src=10.1.0.2 dst=10.2.0.2 sport=1111 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1111 [OFFLOAD] mark=0 zone=0 use=2"
        );
        assert_eq!(
            ct(&v, false),
            "tcp      6 86400 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=1111 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1111 [OFFLOAD] mark=0 use=2"
        );
        v.status |= IPS_HW_OFFLOAD;
        assert_eq!(
            ct(&v, false),
            "tcp      6 86400 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=1111 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1111 [HW_OFFLOAD] mark=0 use=2"
        );
        // Offloaded UDP: only the timeout goes.
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_UDP, 5, 6);
        let v = view(o, ASSURED | IPS_OFFLOAD, 30, ProtoView::None);
        assert_eq!(
            proc(&v),
            "ipv4     2 udp      17 src=10.1.0.2 dst=10.2.0.2 sport=5 dport=6 src=10.2.0.2 dst=10.1.0.2 sport=6 dport=5 [OFFLOAD] mark=0 zone=0 use=1"
        );
    }

    // --- /proc/net/nf_conntrack: spec §14.1 examples ---------------------------------------

    #[test]
    fn proc_spec_examples() {
        let p = |v: ConnView| proc(&ConnView { use_count: 2, ..v });
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_TCP, 1111, 80);
        assert_eq!(
            p(view(o, ASSURED, 431999, ProtoView::Tcp("ESTABLISHED"))),
            "ipv4     2 tcp      6 431999 ESTABLISHED src=10.1.0.2 dst=10.2.0.2 sport=1111 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1111 [ASSURED] mark=0 zone=0 use=2"
        );
        assert_eq!(
            p(view(o, 0, 119, ProtoView::Tcp("SYN_SENT"))),
            "ipv4     2 tcp      6 119 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=1111 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=1111 mark=0 zone=0 use=2"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_UDP, 2001, 53);
        assert_eq!(
            p(view(o, 0, 29, ProtoView::None)),
            "ipv4     2 udp      17 29 src=10.1.0.2 dst=10.2.0.2 sport=2001 dport=53 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=53 dport=2001 mark=0 zone=0 use=2"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_ICMP, 4660, 8 << 8);
        assert_eq!(
            p(view(o, SEEN, 29, ProtoView::None)),
            "ipv4     2 icmp     1 29 src=10.1.0.2 dst=10.2.0.2 type=8 code=0 id=4660 src=10.2.0.2 dst=10.1.0.2 type=0 code=0 id=4660 mark=0 zone=0 use=2"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_GRE, 0, 0);
        assert_eq!(
            p(view(o, 0, 29, ProtoView::Gre { timeout: 30, stream_timeout: 180 })),
            "ipv4     2 gre      47 29 timeout=30, stream_timeout=180 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0 mark=0 zone=0 use=2"
        );
        let o = v4("10.1.0.2", "10.2.0.2", 50, 0, 0);
        assert_eq!(
            p(view(o, 0, 599, ProtoView::None)),
            "ipv4     2 unknown  50 599 src=10.1.0.2 dst=10.2.0.2 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 mark=0 zone=0 use=2"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_UDP, 6001, 53);
        let mut v = view(o, SEEN, 28, ProtoView::None);
        v.mark = 42;
        v.acct = Some([Counter { packets: 1, bytes: 33 }, Counter { packets: 1, bytes: 38 }]);
        v.tstamp = tstamp(1_000_000_000, 2_000_000_000);
        assert_eq!(
            p(v),
            "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 bytes=33 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 mark=42 zone=0 delta-time=1 use=2"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_UDP, 6002, 5353);
        let mut v = view(o, 0, 28, ProtoView::None);
        v.zone = Zone { id: 7, dir: Zone::DIR_BOTH };
        v.acct = Some([Counter { packets: 1, bytes: 29 }, Counter::default()]);
        v.tstamp = tstamp(1_000_000_000, 2_000_000_000);
        assert_eq!(
            p(v),
            "ipv4     2 udp      17 28 src=10.1.0.2 dst=10.2.0.2 sport=6002 dport=5353 packets=1 bytes=29 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5353 dport=6002 packets=0 bytes=0 mark=0 zone=7 delta-time=1 use=2"
        );
        let o = v6("fd00:1::2", "fd00:2::2", IPPROTO_ICMPV6, 85, 128 << 8);
        let v = ConnView { use_count: 4, ..view(o, SEEN, 29, ProtoView::None) };
        assert_eq!(
            proc(&v),
            "ipv6     10 icmpv6   58 29 src=fd00:0001:0000:0000:0000:0000:0000:0002 dst=fd00:0002:0000:0000:0000:0000:0000:0002 type=128 code=0 id=85 src=fd00:0002:0000:0000:0000:0000:0000:0002 dst=fd00:0001:0000:0000:0000:0000:0000:0002 type=129 code=0 id=85 mark=0 zone=0 use=4"
        );
    }

    #[test]
    fn proc_sctp_state_and_gre_keys() {
        let o = v4("10.1.0.2", "10.2.0.2", 132, 5000, 5001);
        let v = view(o, 0, 3, ProtoView::Sctp("COOKIE_WAIT"));
        assert_eq!(
            proc(&v),
            "ipv4     2 sctp     132 3 COOKIE_WAIT src=10.1.0.2 dst=10.2.0.2 sport=5000 dport=5001 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=5001 dport=5000 mark=0 zone=0 use=1"
        );
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_GRE, 0xffff, 0x100);
        let v = view(o, ASSURED, 179, ProtoView::Gre { timeout: 30, stream_timeout: 180 });
        assert_eq!(
            proc(&v),
            "ipv4     2 gre      47 179 timeout=30, stream_timeout=180 src=10.1.0.2 dst=10.2.0.2 srckey=0xffff dstkey=0x100 src=10.2.0.2 dst=10.1.0.2 srckey=0x100 dstkey=0xffff [ASSURED] mark=0 zone=0 use=1"
        );
    }

    // --- conntrack -E -o extended: real kernel events (`events`, timestamp prefix cut) ------

    #[test]
    fn events_ipv6_arkime_v6() {
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:4819::42", 17, 2396, 53);
        assert_eq!(
            ev("NEW", &view(o, 0, 30, ProtoView::None), false),
            "    [NEW] ipv6     10 udp      17 30 src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:4819::42 sport=2396 dport=53 [UNREPLIED] src=3ffe:501:4819::42 dst=3ffe:507:0:1:200:86ff:fe05:80da sport=53 dport=2396"
        );
        assert_eq!(
            ev("UPDATE", &view(o, SEEN, 30, ProtoView::None), false),
            " [UPDATE] ipv6     10 udp      17 30 src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:4819::42 sport=2396 dport=53 src=3ffe:501:4819::42 dst=3ffe:507:0:1:200:86ff:fe05:80da sport=53 dport=2396"
        );
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:410:0:2c0:dfff:fe47:33e", 6, 1022, 22);
        assert_eq!(
            ev("NEW", &view(o, 0, 120, ProtoView::Tcp("SYN_SENT")), true),
            "    [NEW] ipv6     10 tcp      6 120 SYN_SENT src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:410:0:2c0:dfff:fe47:33e sport=1022 dport=22 [UNREPLIED] src=3ffe:501:410:0:2c0:dfff:fe47:33e dst=3ffe:507:0:1:200:86ff:fe05:80da sport=22 dport=1022"
        );
        assert_eq!(
            ev("UPDATE", &view(o, SEEN, 60, ProtoView::Tcp("SYN_RECV")), true),
            " [UPDATE] ipv6     10 tcp      6 60 SYN_RECV src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:410:0:2c0:dfff:fe47:33e sport=1022 dport=22 src=3ffe:501:410:0:2c0:dfff:fe47:33e dst=3ffe:507:0:1:200:86ff:fe05:80da sport=22 dport=1022"
        );
        assert_eq!(
            ev("UPDATE", &view(o, ASSURED, 432000, ProtoView::Tcp("ESTABLISHED")), true),
            " [UPDATE] ipv6     10 tcp      6 432000 ESTABLISHED src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:410:0:2c0:dfff:fe47:33e sport=1022 dport=22 src=3ffe:501:410:0:2c0:dfff:fe47:33e dst=3ffe:507:0:1:200:86ff:fe05:80da sport=22 dport=1022 [ASSURED]"
        );
        let o = v6("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 58, 30240, 128 << 8);
        assert_eq!(
            ev("NEW", &view(o, 0, 30, ProtoView::None), false),
            "    [NEW] ipv6     10 icmpv6   58 30 src=3ffe:507:0:1:200:86ff:fe05:80da dst=3ffe:501:0:1001::2 type=128 code=0 id=30240 [UNREPLIED] src=3ffe:501:0:1001::2 dst=3ffe:507:0:1:200:86ff:fe05:80da type=129 code=0 id=30240"
        );
    }

    #[test]
    fn events_ipv6_reddit() {
        let o = v6("2a01:cb01:2049:8b07:991d:ec85:28df:f629", "2a00:1450:4007:80a::200a", 6, 40028, 443);
        assert_eq!(
            ev("NEW", &view(o, 0, 120, ProtoView::Tcp("SYN_SENT")), true),
            "    [NEW] ipv6     10 tcp      6 120 SYN_SENT src=2a01:cb01:2049:8b07:991d:ec85:28df:f629 dst=2a00:1450:4007:80a::200a sport=40028 dport=443 [UNREPLIED] src=2a00:1450:4007:80a::200a dst=2a01:cb01:2049:8b07:991d:ec85:28df:f629 sport=443 dport=40028"
        );
        assert_eq!(
            ev("UPDATE", &view(o, ASSURED, 432000, ProtoView::Tcp("ESTABLISHED")), true),
            " [UPDATE] ipv6     10 tcp      6 432000 ESTABLISHED src=2a01:cb01:2049:8b07:991d:ec85:28df:f629 dst=2a00:1450:4007:80a::200a sport=40028 dport=443 src=2a00:1450:4007:80a::200a dst=2a01:cb01:2049:8b07:991d:ec85:28df:f629 sport=443 dport=40028 [ASSURED]"
        );
    }

    #[test]
    fn events_ipv4_kernel() {
        // ndpi-alexa-app.checksum0.json: RST in SYN_SENT.
        let o = v4("172.16.42.216", "192.168.11.1", 6, 38391, 8080);
        assert_eq!(
            ev("DESTROY", &view(o, 0, 120, ProtoView::Tcp("CLOSE")), true),
            "[DESTROY] ipv4     2 tcp      6 120 CLOSE src=172.16.42.216 dst=192.168.11.1 sport=38391 dport=8080 [UNREPLIED] src=192.168.11.1 dst=172.16.42.216 sport=8080 dport=38391"
        );
        let o = v4("0.0.0.0", "224.0.0.1", 2, 0, 0);
        assert_eq!(
            ev("NEW", &view(o, 0, 600, ProtoView::None), false),
            "    [NEW] ipv4     2 unknown  2 600 src=0.0.0.0 dst=224.0.0.1 [UNREPLIED] src=224.0.0.1 dst=0.0.0.0"
        );
        // pcapplusplus-sll.checksum1.json: a state change before any reply.
        let o = v4("212.199.202.69", "10.0.0.8", 6, 80, 40800);
        assert_eq!(
            ev("UPDATE", &view(o, 0, 120, ProtoView::Tcp("FIN_WAIT")), true),
            " [UPDATE] ipv4     2 tcp      6 120 FIN_WAIT src=212.199.202.69 dst=10.0.0.8 sport=80 dport=40800 [UNREPLIED] src=10.0.0.8 dst=212.199.202.69 sport=40800 dport=80"
        );
        // pcapplusplus-VlanPackets.checksum0.json
        let o = v4("10.118.10.1", "10.118.10.2", 1, 3, 8 << 8);
        assert_eq!(
            ev("UPDATE", &view(o, SEEN, 30, ProtoView::None), false),
            " [UPDATE] ipv4     2 icmp     1 30 src=10.118.10.1 dst=10.118.10.2 type=8 code=0 id=3 src=10.118.10.2 dst=10.118.10.1 type=0 code=0 id=3"
        );
    }

    #[test]
    fn events_spec_sequence() {
        let o = v4("10.1.0.2", "10.2.0.2", 6, 4001, 80);
        // No PROTOINFO bit: the state word is left out.
        assert_eq!(
            ev("UPDATE", &view(o, ASSURED, 432000, ProtoView::Tcp("ESTABLISHED")), false),
            " [UPDATE] ipv4     2 tcp      6 432000 src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 [ASSURED]"
        );
        assert_eq!(
            ev("DESTROY", &view(o, ASSURED, 119, ProtoView::Tcp("TIME_WAIT")), true),
            "[DESTROY] ipv4     2 tcp      6 119 TIME_WAIT src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 [ASSURED]"
        );
        // DESTROY with 0 left: no timeout column; NEW keeps a 0.
        assert_eq!(
            ev("DESTROY", &view(o, ASSURED, 0, ProtoView::Tcp("TIME_WAIT")), true),
            "[DESTROY] ipv4     2 tcp      6 TIME_WAIT src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80 src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 [ASSURED]"
        );
        assert!(ev("NEW", &view(o, 0, 0, ProtoView::None), false)
            .starts_with("    [NEW] ipv4     2 tcp      6 0 src="));
        // GRE in events: keys, never the /proc timeouts.
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_GRE, 0, 0);
        assert_eq!(
            ev("NEW", &view(o, 0, 30, ProtoView::Gre { timeout: 30, stream_timeout: 180 }), true),
            "    [NEW] ipv4     2 gre      47 30 src=10.1.0.2 dst=10.2.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 srckey=0x0 dstkey=0x0"
        );
        // Destroy with counters, mark, zone and delta-time; mark 0 is not printed in events.
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_UDP, 6001, 53);
        let mut v = view(o, SEEN, 0, ProtoView::None);
        v.acct = Some([Counter { packets: 1, bytes: 33 }, Counter { packets: 1, bytes: 38 }]);
        v.tstamp = tstamp(1_000_000_000, 31_000_000_000);
        v.zone = Zone { id: 7, dir: Zone::DIR_BOTH };
        assert_eq!(
            ev("DESTROY", &v, false),
            "[DESTROY] ipv4     2 udp      17 src=10.1.0.2 dst=10.2.0.2 sport=6001 dport=53 packets=1 bytes=33 src=10.2.0.2 dst=10.1.0.2 sport=53 dport=6001 packets=1 bytes=38 zone=7 delta-time=30"
        );
        v.mark = 42;
        assert!(ev("DESTROY", &v, false).ends_with(" bytes=38 mark=42 zone=7 delta-time=30"));
    }

    #[test]
    fn delta_time_as_proc_and_the_tool_compute_it() {
        // Observed on 6.18 with nf_conntrack_timestamp=1: a SYN confirmed at 1795617791.606592 s,
        // listed at 1795617794.306803 s and killed by a RST at 1795617794.319 s. /proc prints
        // the whole seconds of the difference (2), `conntrack -L` and the DESTROY event the
        // difference of the whole seconds (3).
        let o = v4("10.1.0.2", "10.2.0.2", IPPROTO_TCP, 4001, 80);
        let start = 1_795_617_791_606_592_000;
        let mut v = view(o, 0, 117, ProtoView::Tcp("SYN_SENT"));
        v.tstamp = tstamp(start, 1_795_617_794_306_803_000);
        assert_eq!(
            ct(&v, true),
            "ipv4     2 tcp      6 117 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 mark=0 delta-time=3 use=1"
        );
        assert_eq!(
            proc(&ConnView { use_count: 2, ..v }),
            "ipv4     2 tcp      6 117 SYN_SENT src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 mark=0 zone=0 delta-time=2 use=2"
        );
        v.proto = ProtoView::Tcp("CLOSE");
        v.tstamp = tstamp(start, 1_795_617_794_319_652_000);
        assert_eq!(
            ev("DESTROY", &v, true),
            "[DESTROY] ipv4     2 tcp      6 117 CLOSE src=10.1.0.2 dst=10.2.0.2 sport=4001 dport=80 [UNREPLIED] src=10.2.0.2 dst=10.1.0.2 sport=80 dport=4001 delta-time=3"
        );
        // Within one second on both sides, or a stop before the start: 0, never a wrap.
        assert_eq!(Tstamp { start: 5_100_000_000, stop: 5_900_000_000 }.delta_tool(), 0);
        assert_eq!(Tstamp { start: 5_900_000_000, stop: 6_100_000_000 }.delta_tool(), 1);
        assert_eq!(Tstamp { start: 5_900_000_000, stop: 6_100_000_000 }.delta_proc(), 0);
        assert_eq!(Tstamp { start: 7_000_000_000, stop: 6_000_000_000 }.delta_proc(), 0);
        assert_eq!(Tstamp { start: 7_000_000_000, stop: 6_000_000_000 }.delta_tool(), 0);
    }

    #[test]
    fn output_is_appended() {
        let o = v4("1.2.3.4", "5.6.7.8", IPPROTO_UDP, 1, 2);
        let v = view(o, SEEN, 30, ProtoView::None);
        let mut s = String::from("prefix\t");
        event_line("NEW", &v, false, &mut s);
        s.push('\n');
        conntrack_line(&v, false, &mut s);
        s.push('\n');
        proc_line(&v, &mut s);
        assert_eq!(
            s,
            "prefix\t    [NEW] ipv4     2 udp      17 30 src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1\n\
             udp      17 30 src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1 mark=0 use=1\n\
             ipv4     2 udp      17 30 src=1.2.3.4 dst=5.6.7.8 sport=1 dport=2 src=5.6.7.8 dst=1.2.3.4 sport=2 dport=1 mark=0 zone=0 use=1"
        );
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let t = Tuple {
            src: [0xff; 16],
            dst: [0; 16],
            src_u: u16::MAX,
            dst_u: u16::MAX,
            l3num: 0,
            protonum: 255,
        };
        let v = ConnView {
            orig: t,
            reply: t,
            status: u32::MAX,
            timeout: u64::MAX,
            proto: ProtoView::Gre { timeout: u32::MAX, stream_timeout: u32::MAX },
            mark: u32::MAX,
            zone: Zone { id: u16::MAX, dir: u8::MAX },
            acct: Some([Counter { packets: u64::MAX, bytes: u64::MAX }; 2]),
            tstamp: Some(Tstamp { start: 0, stop: u64::MAX }),
            use_count: u32::MAX,
            id: u32::MAX,
        };
        let mut s = String::new();
        proc_line(&v, &mut s);
        assert_eq!(
            s,
            "unknown  0 unknown  255 timeout=4294967295, stream_timeout=4294967295 src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff dst=0000:0000:0000:0000:0000:0000:0000:0000 packets=18446744073709551615 bytes=18446744073709551615 src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff dst=0000:0000:0000:0000:0000:0000:0000:0000 packets=18446744073709551615 bytes=18446744073709551615 [HW_OFFLOAD] mark=4294967295 delta-time=18446744073 use=4294967295"
        );
        s.clear();
        conntrack_line(&v, true, &mut s);
        assert!(s.starts_with("unknown  0 unknown  255 18446744073709551615 src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff dst=:: packets="));
        assert!(s.ends_with(" [HW_OFFLOAD] mark=4294967295 delta-time=18446744073 use=4294967295"));
        s.clear();
        event_line("A-VERY-LONG-TAG", &v, true, &mut s);
        assert!(s.starts_with("[A-VERY-LONG-TAG] unknown  0 unknown  255 18446744073709551615 src="));
        s.clear();
        event_line("", &v, true, &mut s);
        assert!(s.starts_with("       [] unknown  0 "));
        for p in 0..=255u8 {
            for kind in [ProtoView::None, ProtoView::Tcp(""), ProtoView::Sctp("X")] {
                let t = Tuple { protonum: p, l3num: if p % 2 == 0 { AF_INET } else { AF_INET6 }, ..t };
                let v = ConnView { orig: t, reply: t, proto: kind, ..v };
                s.clear();
                conntrack_line(&v, p % 3 == 0, &mut s);
                proc_line(&v, &mut s);
                event_line("UPDATE", &v, p % 5 == 0, &mut s);
                assert!(!s.contains('\n'));
            }
        }
    }

    // --- Addresses ------------------------------------------------------------------------

    #[test]
    fn ipv6_compressed_like_glibc() {
        for (input, exp) in [
            ("::", "::"),
            ("::1", "::1"),
            ("::2", "::2"),
            ("1::", "1::"),
            ("fe80::8c36:6ff:fe44:acaf", "fe80::8c36:6ff:fe44:acaf"),
            ("64:ff9b::9765:798c", "64:ff9b::9765:798c"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
            ("1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"),
            ("2620:0:e00:400e:d1d:db37:beb:5aac", "2620:0:e00:400e:d1d:db37:beb:5aac"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("::ffff:0:0", "::ffff:0.0.0.0"),
            ("::1.2.3.4", "::1.2.3.4"),
            ("::0.1.0.0", "::0.1.0.0"),
            ("::1:0:0", "::1:0:0"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("0:0:0:0:0:fffe:102:304", "::fffe:102:304"),
            ("1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"),
            ("1:2:3:4:5:6:0:0", "1:2:3:4:5:6::"),
            ("ABCD:EF01:2345:6789:ABCD:EF01:2345:6789", "abcd:ef01:2345:6789:abcd:ef01:2345:6789"),
        ] {
            assert_eq!(ip6c(input), exp, "{input}");
        }
    }

    #[test]
    fn ipv6_full_form() {
        let a: std::net::Ipv6Addr = "fd00:1::2".parse().unwrap();
        let mut s = String::new();
        fmt_ipv6_full(&a.octets(), &mut s);
        assert_eq!(s, "fd00:0001:0000:0000:0000:0000:0000:0002");
        s.clear();
        fmt_ipv6_full(&[0xab; 16], &mut s);
        assert_eq!(s, "abab:abab:abab:abab:abab:abab:abab:abab");
    }

    // --- Statistics -----------------------------------------------------------------------

    #[test]
    fn conntrack_s_line() {
        let mut s = String::new();
        stats_lines(&Stats::default(), &mut s);
        assert_eq!(
            s,
            "cpu=0   \tfound=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n"
        );
        let st = Stats {
            invalid: 12,
            error: 9,
            clash_resolve: 3,
            drop: 1 << 32 | 5,
            expect_new: 4,
            ..Stats::default()
        };
        s.clear();
        stats_lines(&st, &mut s);
        assert_eq!(
            s,
            "cpu=0   \tfound=0 invalid=12 insert=0 insert_failed=0 drop=5 early_drop=0 error=9 search_restart=0 clash_resolve=3 chaintoolong=0 \n"
        );
    }

    #[test]
    fn proc_stat_file() {
        let mut s = String::new();
        let st = Stats {
            found: 1,
            invalid: 0x1f,
            insert: 2,
            insert_failed: 3,
            drop: 4,
            early_drop: 5,
            error: 0xabc,
            search_restart: 6,
            clash_resolve: 7,
            chaintoolong: 8,
            expect_new: 9,
            expect_create: 10,
            expect_delete: 11,
        };
        proc_stat_lines(&st, 300, &mut s);
        assert_eq!(
            s,
            "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
             0000012c  00000007 00000001 00000000 0000001f 00000000 00000000 00000008 00000002 00000003 00000004 00000005 00000abc  00000009 0000000a 0000000b 00000006\n"
        );
        s.clear();
        proc_stat_lines(&Stats::default(), 0, &mut s);
        let data = s.lines().nth(1).unwrap();
        assert_eq!(data, "00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000");
        assert!(!data.ends_with(' '));
    }
}
