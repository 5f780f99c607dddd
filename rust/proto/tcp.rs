//! TCP (`nf_conntrack_proto_tcp.c`, spec §7): the flag checks, the state machine kept as the
//! kernel's transition table, window tracking (`tcp_in_window`), and the timeout choice.
//!
//! Every INVALID verdict carries the message the kernel logs for it.

use super::{PacketCtx, PacketVerdict, ProtoState};
pub use crate::conn::state::tcp::*;
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::tuple::Direction;
use crate::uapi::IPPROTO_TCP;
use crate::uapi::{IPCT_ASSURED, IPCT_PROTOINFO, IPS_ASSURED, IPS_FIXED_TIMEOUT, IPS_SEEN_REPLY};
use crate::wire::l4::{after, before};
use crate::wire::{checksum, l4};

/// `TCP_CONNTRACK_MAX`, used as "invalid" in the table.
const IV: u8 = 10;
/// `TCP_CONNTRACK_IGNORE`.
const IG: u8 = 11;

/// Packet classes (`enum tcp_bit_set`), the table's middle index.
const SYN_SET: u8 = 0;
const SYNACK_SET: u8 = 1;
const FIN_SET: u8 = 2;
const ACK_SET: u8 = 3;
const RST_SET: u8 = 4;
const NONE_SET: u8 = 5;

// Abbreviations of the spec's table (§7.3).

const SS: u8 = SYN_SENT;
const SR: u8 = SYN_RECV;
const ES: u8 = ESTABLISHED;
const FW: u8 = FIN_WAIT;
const CW: u8 = CLOSE_WAIT;
const LA: u8 = LAST_ACK;
const TW: u8 = TIME_WAIT;
const CL: u8 = CLOSE;
const S2: u8 = SYN_SENT2;

/// `tcp_conntracks[dir][packet class][old state]`: the new state, IV (invalid) or IG (ignore).
/// Columns: NO SS SR ES FW CW LA TW CL S2.
#[rustfmt::skip]
const TRANSITIONS: [[[u8; 10]; 6]; 2] = [
    // ORIGINAL
    [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// The timeout sysctl of each state (NONE uses SYN_SENT's slot, SYN_SENT2 too: 120 s).
const STATE_TIMEOUTS: [SysctlKey; 10] = [
    SysctlKey::TcpTimeoutSynSent,
    SysctlKey::TcpTimeoutSynSent,
    SysctlKey::TcpTimeoutSynRecv,
    SysctlKey::TcpTimeoutEstablished,
    SysctlKey::TcpTimeoutFinWait,
    SysctlKey::TcpTimeoutCloseWait,
    SysctlKey::TcpTimeoutLastAck,
    SysctlKey::TcpTimeoutTimeWait,
    SysctlKey::TcpTimeoutClose,
    SysctlKey::TcpTimeoutSynSent,
];

/// Which kernel's behaviour to follow where 6.12 and 6.18 differ (spec §7.10): the timeout an
/// accepted RST gets when it leaves an assured connection ESTABLISHED.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RstTimeout {
    /// Linux 6.18 (observed): the CLOSE timeout (10 s).
    #[default]
    Close,
    /// Linux 6.12 (source): the UNACK timeout (300 s).
    Unack,
}

/// `get_conntrack_index`.
fn conntrack_index(flags: u8) -> u8 {
    if flags & l4::TCP_RST != 0 {
        RST_SET
    } else if flags & l4::TCP_SYN != 0 {
        if flags & l4::TCP_ACK != 0 {
            SYNACK_SET
        } else {
            SYN_SET
        }
    } else if flags & l4::TCP_FIN != 0 {
        FIN_SET
    } else if flags & l4::TCP_ACK != 0 {
        ACK_SET
    } else {
        NONE_SET
    }
}

/// The flag combinations `tcp_error` accepts, once ECE, CWR and PSH are removed.
fn valid_flags(flags: u8) -> bool {
    use l4::{TCP_ACK as A, TCP_FIN as F, TCP_RST as R, TCP_SYN as S, TCP_URG as U};
    let f = flags & !(l4::TCP_ECE | l4::TCP_CWR | l4::TCP_PSH);
    matches!(f, x if x == S || x == S | U || x == S | A || x == R || x == R | A || x == F | A
        || x == F | A | U || x == A || x == A | U)
}

/// A parsed segment.
struct Seg {
    h: l4::TcpHdr,
    opts: l4::TcpOptions,
    /// `segment_seq_plus_len`: seq + payload + SYN + FIN.
    end: u32,
}

/// `tcp_error`: header length, checksum and flag checks, before any state logic.
fn tcp_error(ctx: &PacketCtx<'_>) -> Result<Seg, &'static str> {
    let Some(h) = l4::tcp(ctx.l4) else { return Err("nf_ct_tcp: short packet") };
    if h.doff < 20 || ctx.l4.len() < h.doff {
        return Err("nf_ct_tcp: truncated packet");
    }
    if ctx.verify_checksum && !checksum::l4_ok(ctx.l3num, ctx.src, ctx.dst, IPPROTO_TCP, ctx.l4) {
        return Err("nf_ct_tcp: bad checksum");
    }
    if !valid_flags(h.flags) {
        return Err("nf_ct_tcp: invalid tcp flag combination");
    }
    let payload = (ctx.l4.len() - h.doff) as u32;
    let end = h
        .seq
        .wrapping_add(payload)
        .wrapping_add(u32::from(h.flags & l4::TCP_SYN != 0))
        .wrapping_add(u32::from(h.flags & l4::TCP_FIN != 0));
    let opts = l4::tcp_options(ctx.l4, h.doff);
    Ok(Seg { h, opts, end })
}

/// `tcp_options`: window scale and SACK-permitted into a direction (all other flags but
/// BE_LIBERAL cleared). A header without option bytes changes nothing: the kernel returns
/// before clearing, so an earlier SYN's window scale survives a re-sent SYN without options.
fn apply_options(d: &mut TcpDir, s: &Seg) {
    if s.h.doff <= 20 {
        return;
    }
    let o = &s.opts;
    d.td_scale = 0;
    d.flags &= FLAG_BE_LIBERAL;
    if o.sack_perm {
        d.flags |= FLAG_SACK_PERM;
    }
    if let Some(ws) = o.wscale {
        d.td_scale = ws.min(l4::TCP_MAX_WSCALE);
        d.flags |= FLAG_WINDOW_SCALE;
    }
}

/// `tcp_new`: may this packet open an entry? Sets up the originator's window data.
fn tcp_new(st: &mut TcpState, s: &Seg, sysctl: &Sysctl) -> Result<(), &'static str> {
    let new_state = TRANSITIONS[0][usize::from(conntrack_index(s.h.flags))][usize::from(NONE)];
    if new_state >= IV {
        return Err("nf_ct_tcp: invalid new");
    }
    *st = TcpState::default();
    let win = u32::from(s.h.window);
    if new_state == SYN_SENT {
        let d = &mut st.seen[0];
        d.td_end = s.end;
        d.td_maxwin = win.max(1);
        d.td_maxend = s.end;
        apply_options(d, s);
    } else if sysctl.get(SysctlKey::TcpLoose) == 0 {
        return Err("nf_ct_tcp: invalid new (mid-stream pickup off: nf_conntrack_tcp_loose=0)");
    } else {
        // Mid-stream pickup: both directions are liberal for good.
        let d = &mut st.seen[0];
        d.td_end = s.end;
        d.td_maxwin = win.max(1);
        d.td_maxend = s.end.wrapping_add(d.td_maxwin);
        st.seen[0].flags = FLAG_SACK_PERM | FLAG_BE_LIBERAL;
        st.seen[1].flags = FLAG_SACK_PERM | FLAG_BE_LIBERAL;
    }
    st.last_index = NONE_SET;
    Ok(())
}

/// `tcp_init_sender`: a SYN or SYN-ACK (re)initialises its sender's window data.
fn init_sender(st: &mut TcpState, dir: usize, s: &Seg, win: u32) {
    let (sender, receiver) = pair(&mut st.seen, dir);
    sender.td_end = s.end;
    sender.td_maxend = s.end;
    sender.td_maxwin = win.max(1);
    apply_options(sender, s);
    if !(sender.flags & FLAG_WINDOW_SCALE != 0 && receiver.flags & FLAG_WINDOW_SCALE != 0) {
        sender.td_scale = 0;
        receiver.td_scale = 0;
    }
}

/// The sender (`seen[dir]`) and the receiver (`seen[!dir]`).
fn pair(seen: &mut [TcpDir; 2], dir: usize) -> (&mut TcpDir, &mut TcpDir) {
    let [a, b] = seen;
    if dir == 0 {
        (a, b)
    } else {
        (b, a)
    }
}

/// What the window check decided.
enum Window {
    Accept,
    Ignore,
    Invalid(&'static str),
}

/// `MAXACKWINDOW`.
fn max_ack_window(d: &TcpDir) -> u32 {
    d.td_maxwin.max(66000)
}

/// `tcp_in_window` (spec §7.7).
fn tcp_in_window(st: &mut TcpState, dir: usize, index: u8, s: &Seg, sysctl: &Sysctl) -> Window {
    let h = &s.h;
    let mut seq = h.seq;
    let mut ack = h.ack;
    let mut sack = h.ack;
    let win_raw = h.window;
    let mut win = u32::from(win_raw);
    let mut end = s.end;
    let state = st.state;
    let syn = h.flags & l4::TCP_SYN != 0;
    let has_ack = h.flags & l4::TCP_ACK != 0;
    let rst = h.flags & l4::TCP_RST != 0;

    if st.seen[1 - dir].flags & FLAG_SACK_PERM != 0 {
        if let Some(edge) = s.opts.sack_max_right_edge {
            if after(edge, sack) {
                sack = edge;
            }
        }
    }

    if st.seen[dir].td_maxwin == 0 {
        if syn {
            init_sender(st, dir, s, win);
            if !has_ack {
                // Simultaneous open.
                return Window::Accept;
            }
        } else {
            // Picked up in the middle: use what the packet shows.
            let (sender, receiver) = pair(&mut st.seen, dir);
            sender.td_end = end;
            let swin = win << sender.td_scale;
            sender.td_maxwin = swin.max(1);
            sender.td_maxend = end.wrapping_add(sender.td_maxwin);
            if receiver.td_maxwin == 0 {
                receiver.td_end = sack;
                receiver.td_maxend = sack;
            } else if sack == receiver.td_end.wrapping_add(1) {
                // Likely the answer to a keep-alive.
                receiver.td_end = receiver.td_end.wrapping_add(1);
            }
        }
    } else if syn && after(end, st.seen[dir].td_end) && (state == SYN_SENT || state == SYN_RECV) {
        // A re-sent SYN (or SYN-ACK) with a later sequence number starts afresh.
        init_sender(st, dir, s, win);
        if dir == 1 && !has_ack {
            return Window::Accept;
        }
    }

    let (sender, receiver) = pair(&mut st.seen, dir);
    if !has_ack || (rst && ack == 0) {
        ack = receiver.td_end;
        sack = receiver.td_end;
    }
    if rst && seq == 0 && state == SYN_SENT {
        // A RST answering a SYN.
        seq = sender.td_end;
        end = sender.td_end;
    }

    // Liberal mode turns a failed check into ACCEPT at once: the state machine goes on, but
    // the window data below is not updated (observed on 6.18; spec §7.7 step 9 reads broader).
    let liberal = sender.flags & FLAG_BE_LIBERAL != 0 || sysctl.get(SysctlKey::TcpBeLiberal) != 0;
    let verdict = |w: Window| if liberal { Window::Accept } else { w };

    // I: upper bound of the sequence.
    if !before(seq, sender.td_maxend.wrapping_add(1)) {
        let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
        let ack_ok = after(sack, receiver.td_end.wrapping_sub(max_ack_window(sender)).wrapping_sub(1));
        let in_recv_win = receiver.td_maxwin != 0
            && after(end, sender.td_end.wrapping_sub(receiver.td_maxwin).wrapping_sub(1));
        if in_recv_win
            && ack_ok
            && overshot <= receiver.td_maxwin
            && before(sack, receiver.td_end.wrapping_add(1))
        {
            sender.td_end = end;
            sender.flags |= FLAG_DATA_UNACKNOWLEDGED;
            return verdict(Window::Ignore);
        }
        return verdict(Window::Invalid(
            "nf_ct_tcp: SEQ is over the upper bound (over the window of the receiver)",
        ));
    }
    // III: upper bound of the acknowledgement.
    if !before(sack, receiver.td_end.wrapping_add(1)) {
        return verdict(Window::Invalid("nf_ct_tcp: ACK is over the upper bound (ACKed data not seen yet)"));
    }
    // II: lower bound of the sequence (an old retransmission).
    let in_recv_win =
        receiver.td_maxwin == 0 || after(end, sender.td_end.wrapping_sub(receiver.td_maxwin).wrapping_sub(1));
    if !in_recv_win {
        return verdict(Window::Ignore);
    }
    // IV: lower bound of the acknowledgement.
    if !after(sack, receiver.td_end.wrapping_sub(max_ack_window(sender)).wrapping_sub(1)) {
        return verdict(Window::Ignore);
    }

    if !syn {
        win <<= sender.td_scale;
    }
    let swin = win.wrapping_add(sack.wrapping_sub(ack));
    if sender.td_maxwin < swin {
        sender.td_maxwin = swin;
    }
    if after(end, sender.td_end) {
        sender.td_end = end;
        sender.flags |= FLAG_DATA_UNACKNOWLEDGED;
    }
    if has_ack {
        if sender.flags & FLAG_MAXACK_SET == 0 {
            sender.td_maxack = ack;
            sender.flags |= FLAG_MAXACK_SET;
        } else if after(ack, sender.td_maxack) {
            sender.td_maxack = ack;
        }
    }
    if receiver.td_maxwin != 0 && after(end, sender.td_maxend) {
        receiver.td_maxwin = receiver.td_maxwin.wrapping_add(end.wrapping_sub(sender.td_maxend));
    }
    if after(sack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
        receiver.td_maxend = sack.wrapping_add(win);
        if win == 0 {
            receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
        }
    }
    if ack == receiver.td_end {
        receiver.flags &= !FLAG_DATA_UNACKNOWLEDGED;
    }

    // Retransmissions of the same ACK-class segment.
    if index == ACK_SET {
        if usize::from(st.last_dir) == dir
            && st.last_seq == seq
            && st.last_ack == ack
            && st.last_end == end
            && st.last_win == win_raw
        {
            st.retrans = st.retrans.saturating_add(1);
        } else {
            st.last_dir = dir as u8;
            st.last_seq = seq;
            st.last_ack = ack;
            st.last_end = end;
            st.last_win = win_raw;
            st.retrans = 0;
        }
    }
    Window::Accept
}

/// `nf_tcp_handle_invalid`: two out-of-window FIN/RSTs from both sides shrink a dead assured
/// entry's timeout to the UNACK value.
fn handle_invalid(
    e: &mut Conn,
    st: &mut TcpState,
    dir: usize,
    index: u8,
    ctx: &PacketCtx<'_>,
    sysctl: &Sysctl,
) {
    if e.status & IPS_ASSURED == 0 || e.status & IPS_FIXED_TIMEOUT != 0 {
        return;
    }
    if index != RST_SET && index != FIN_SET {
        return;
    }
    if usize::from(st.last_dir) != dir && (st.last_index == FIN_SET || st.last_index == RST_SET) {
        let expires = e.remaining(ctx.now);
        if expires < 120 * 1_000_000_000 {
            return;
        }
        let unack = sysctl.timeout_ns(SysctlKey::TcpTimeoutUnacknowledged);
        if expires > unack {
            e.timeout = ctx.now.saturating_add(unack);
        }
    } else {
        st.last_index = index;
        st.last_dir = dir as u8;
    }
}

/// `nf_conntrack_tcp_packet` (spec §7.6).
pub fn tcp_packet(
    e: &mut Conn,
    ctx: &PacketCtx<'_>,
    sysctl: &Sysctl,
    rst_timeout: RstTimeout,
) -> PacketVerdict {
    let s = match tcp_error(ctx) {
        Ok(s) => s,
        Err(why) => return PacketVerdict::Invalid(why),
    };
    let mut st = match &e.proto {
        ProtoState::Tcp(st) => **st,
        _ => TcpState::default(),
    };
    if !e.confirmed() {
        if let Err(why) = tcp_new(&mut st, &s, sysctl) {
            return PacketVerdict::Invalid(why);
        }
    }
    let verdict = tcp_state_machine(e, &mut st, &s, ctx, sysctl, rst_timeout);
    e.proto.set_tcp(st);
    verdict
}

fn tcp_state_machine(
    e: &mut Conn,
    st: &mut TcpState,
    s: &Seg,
    ctx: &PacketCtx<'_>,
    sysctl: &Sysctl,
    rst_timeout: RstTimeout,
) -> PacketVerdict {
    let dir = ctx.dir.index();
    let h = &s.h;
    let index = conntrack_index(h.flags);
    let mut old_state = st.state;
    let mut new_state = TRANSITIONS[dir][usize::from(index)][usize::from(old_state.min(SYN_SENT2))];
    let assured_established = old_state == ESTABLISHED && e.status & IPS_ASSURED != 0;
    let mut skip_window = false;

    // (a) SYN in TIME_WAIT or CLOSE: a reopen when a FIN was seen or the last packet was a
    // RST from the same side; otherwise ignored like (b).
    let mut ignore = new_state == IG;
    if new_state == SYN_SENT && old_state >= TIME_WAIT {
        let fin_seen = (st.seen[0].flags | st.seen[1].flags) & FLAG_CLOSE_INIT != 0;
        if fin_seen || (usize::from(st.last_dir) == dir && st.last_index == RST_SET) {
            return PacketVerdict::Repeat;
        }
        ignore = true;
    }
    if ignore {
        // (b) Possibly legitimate, but conntrack may be out of sync.
        let answers_ignored_syn = index == SYNACK_SET
            && st.last_index == SYN_SET
            && usize::from(st.last_dir) != dir
            && h.ack == st.last_end;
        if answers_ignored_syn {
            old_state = SYN_SENT;
            new_state = SYN_RECV;
            let ld = usize::from(st.last_dir).min(1);
            let (last_end, last_win, last_wscale, last_flags) =
                (st.last_end, st.last_win, st.last_wscale, st.last_flags);
            let d = &mut st.seen[ld];
            d.td_end = last_end;
            d.td_maxend = last_end;
            d.td_maxwin = u32::from(last_win).max(1);
            d.td_scale = last_wscale;
            d.flags = last_flags & !FLAG_EXP_CHALLENGE_ACK;
            // `nf_ct_tcp_state_reset`: everything but the liberal flag.
            st.seen[dir] = TcpDir { flags: st.seen[dir].flags & FLAG_BE_LIBERAL, ..TcpDir::default() };
        } else {
            st.last_index = index;
            st.last_dir = dir as u8;
            st.last_seq = h.seq;
            st.last_end = s.end;
            st.last_win = h.window;
            if index == SYN_SET && dir == Direction::Original.index() {
                let mut seen = TcpDir::default();
                apply_options(&mut seen, s);
                st.last_flags = 0;
                st.last_wscale = 0;
                if seen.flags & FLAG_WINDOW_SCALE != 0 {
                    st.last_flags |= FLAG_WINDOW_SCALE;
                    st.last_wscale = seen.td_scale;
                }
                if seen.flags & FLAG_SACK_PERM != 0 {
                    st.last_flags |= FLAG_SACK_PERM;
                }
                if old_state == LAST_ACK {
                    st.last_flags |= FLAG_EXP_CHALLENGE_ACK;
                }
            }
            if old_state == SYN_SENT && index == ACK_SET && dir == Direction::Reply.index() {
                st.last_ack = h.ack;
            }
            return PacketVerdict::Accept;
        }
    }
    match new_state {
        IV => return PacketVerdict::Invalid("nf_ct_tcp: invalid packet ignored in state"),
        // (d) An ACK answering a SYN seen in LAST_ACK: an RFC 5961 challenge ACK.
        TIME_WAIT
            if old_state == LAST_ACK
                && index == ACK_SET
                && usize::from(st.last_dir) != dir
                && st.last_index == SYN_SET
                && st.last_flags & FLAG_EXP_CHALLENGE_ACK != 0 =>
        {
            st.last_flags &= !FLAG_EXP_CHALLENGE_ACK;
            return PacketVerdict::Accept;
        }
        SYN_SENT2 => st.last_flags |= FLAG_SIMULTANEOUS_OPEN,
        // (f) The last ACK of a simultaneous open.
        SYN_RECV
            if dir == Direction::Reply.index()
                && index == ACK_SET
                && st.last_flags & FLAG_SIMULTANEOUS_OPEN != 0 =>
        {
            new_state = ESTABLISHED;
        }
        CLOSE if index == RST_SET => {
            // (g) RST validation.
            if matches!(old_state, FIN_WAIT | CLOSE_WAIT | LAST_ACK | TIME_WAIT | CLOSE) {
                skip_window = true;
            } else {
                let other = st.seen[1 - dir];
                let mut done = false;
                if other.flags & FLAG_MAXACK_SET != 0 && st.last_index != SYN_SET {
                    let seq = h.seq;
                    if seq == 0 && !assured_established {
                        done = true;
                    } else if before(seq, other.td_maxack) && sysctl.get(SysctlKey::TcpIgnoreInvalidRst) == 0
                    {
                        return PacketVerdict::Invalid("nf_ct_tcp: invalid RST");
                    } else if !assured_established
                        || seq == other.td_maxack
                        || (st.last_index == ACK_SET && usize::from(st.last_dir) == dir && seq == st.last_end)
                    {
                        done = true;
                    } else {
                        // Not the exact sequence number: keep ESTABLISHED, let a challenge
                        // ACK through.
                        new_state = old_state;
                    }
                }
                if !done {
                    let answers_let_through = ((e.status & IPS_SEEN_REPLY != 0
                        && st.last_index == SYN_SET
                        && usize::from(st.last_dir) != dir)
                        || (e.status & IPS_ASSURED == 0 && st.last_index == ACK_SET))
                        && h.ack == st.last_end;
                    let answers_challenge_ack = old_state == SYN_SENT
                        && st.last_index == ACK_SET
                        && st.last_dir == Direction::Reply.index() as u8
                        && h.seq == st.last_ack;
                    if answers_let_through || answers_challenge_ack {
                        skip_window = true;
                    }
                }
            }
        }
        _ => {}
    }

    // (h) The window check.
    if !skip_window {
        match tcp_in_window(st, dir, index, s, sysctl) {
            Window::Accept => {}
            Window::Ignore => return PacketVerdict::Accept,
            Window::Invalid(why) => {
                handle_invalid(e, st, dir, index, ctx, sysctl);
                return PacketVerdict::Invalid(why);
            }
        }
    }

    // (i) In window from here on.
    st.last_index = index;
    st.last_dir = dir as u8;
    st.state = new_state;
    if old_state != new_state && new_state == FIN_WAIT {
        st.seen[dir].flags |= FLAG_CLOSE_INIT;
    }

    // (j) The timeout.
    let t = |state: u8| sysctl.timeout_ns(STATE_TIMEOUTS[usize::from(state.min(SYN_SENT2))]);
    let t_retrans = sysctl.timeout_ns(SysctlKey::TcpTimeoutMaxRetrans);
    let t_unack = sysctl.timeout_ns(SysctlKey::TcpTimeoutUnacknowledged);
    let mut timeout = if u64::from(st.retrans) >= sysctl.get(SysctlKey::TcpMaxRetrans)
        && t(new_state) > t_retrans
    {
        t_retrans
    } else if index == RST_SET && new_state == ESTABLISHED && t(ESTABLISHED) > t_unack {
        match rst_timeout {
            RstTimeout::Close => t(CLOSE),
            RstTimeout::Unack => t_unack,
        }
    } else if (st.seen[0].flags | st.seen[1].flags) & FLAG_DATA_UNACKNOWLEDGED != 0 && t(new_state) > t_unack
    {
        t_unack
    } else if st.last_win == 0 && t(new_state) > t_retrans {
        t_retrans
    } else {
        t(new_state)
    };

    // (k)
    if new_state != old_state {
        e.events |= IPCT_PROTOINFO;
    }

    if e.status & IPS_SEEN_REPLY == 0 {
        // (l) Before any reply: a RST (either way) ends the entry at once.
        if h.flags & l4::TCP_RST != 0 {
            e.account(ctx.dir, ctx.len);
            return PacketVerdict::Kill;
        }
        if index == SYN_SET && old_state == SYN_SENT {
            // A retransmitted SYN does not renew the timeout.
            return PacketVerdict::Accept;
        }
        if new_state == ESTABLISHED && timeout > t_unack {
            timeout = t_unack;
        }
    } else if e.status & IPS_ASSURED == 0
        && (old_state == SYN_RECV || old_state == ESTABLISHED)
        && new_state == ESTABLISHED
    {
        // (m)
        e.set_status(IPS_ASSURED, IPCT_ASSURED);
    }
    // (n)
    e.refresh(ctx.dir, ctx.len, timeout, ctx.now);
    PacketVerdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_spec_rows() {
        // A few cells against spec §7.3, read across.
        assert_eq!(TRANSITIONS[0][usize::from(SYN_SET)][usize::from(NONE)], SYN_SENT);
        assert_eq!(TRANSITIONS[0][usize::from(ACK_SET)][usize::from(NONE)], ESTABLISHED);
        assert_eq!(TRANSITIONS[1][usize::from(SYN_SET)][usize::from(SYN_SENT)], SYN_SENT2);
        assert_eq!(TRANSITIONS[1][usize::from(ACK_SET)][usize::from(SYN_SENT)], IG);
        assert_eq!(TRANSITIONS[1][usize::from(SYN_SET)][usize::from(TIME_WAIT)], SYN_SENT);
        assert_eq!(TRANSITIONS[0][usize::from(FIN_SET)][usize::from(SYN_SENT2)], IV);
        assert!(TRANSITIONS.iter().all(|d| d[usize::from(NONE_SET)].iter().all(|&c| c == IV)));
    }

    #[test]
    fn flag_combinations() {
        use l4::{
            TCP_ACK as A, TCP_CWR, TCP_ECE, TCP_FIN as F, TCP_PSH, TCP_RST as R, TCP_SYN as S, TCP_URG as U,
        };
        for ok in [S, S | U, S | A, R, R | A, F | A, F | A | U, A, A | U, S | TCP_ECE | TCP_CWR, S | TCP_PSH]
        {
            assert!(valid_flags(ok), "{ok:#x}");
        }
        for bad in [0, F, U, TCP_PSH, S | F, S | R, S | A | U, R | U, S | A | F, F | TCP_PSH | U, S | A | R] {
            assert!(!valid_flags(bad), "{bad:#x}");
        }
    }

    #[test]
    fn sequence_order_wraps() {
        assert!(before(u32::MAX, 1));
        assert!(after(1, u32::MAX));
        assert!(!before(5, 5));
    }
}
