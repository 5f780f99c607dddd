//! SCTP (`nf_conntrack_proto_sctp.c`, spec §10.3): the chunk checks, the state machine kept as
//! the kernel's two transition tables, verification-tag learning and checking, and the timeout
//! of each state (§18).
//!
//! Every INVALID verdict carries a reason in the kernel's `nf_ct_sctp:` message family.

use super::{PacketCtx, PacketVerdict, ProtoState};
pub use crate::conn::state::sctp::*;
use crate::conn::Conn;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::tuple::Direction;
use crate::uapi::{IPCT_ASSURED, IPCT_PROTOINFO, IPS_ASSURED};
use crate::wire::checksum;
use crate::wire::sctp::{
    self, chunks, init_tag, CHUNK_FLAG_T, CID_ABORT, CID_COOKIE_ACK, CID_COOKIE_ECHO, CID_DATA, CID_ERROR,
    CID_HEARTBEAT, CID_HEARTBEAT_ACK, CID_INIT, CID_INIT_ACK, CID_SHUTDOWN, CID_SHUTDOWN_ACK,
    CID_SHUTDOWN_COMPLETE,
};

/// `SCTP_CONNTRACK_MAX`, used as "invalid" in the table.
const IV: u8 = 10;

// Abbreviations of the spec's tables (§10.3).
const CL: u8 = CLOSED;
const CW: u8 = COOKIE_WAIT;
const CE: u8 = COOKIE_ECHOED;
const ES: u8 = ESTABLISHED;
const SS: u8 = SHUTDOWN_SENT;
const SR: u8 = SHUTDOWN_RECD;
const SA: u8 = SHUTDOWN_ACK_SENT;
const HS: u8 = HEARTBEAT_SENT;

/// Table rows, in the order of `sctp_new_state`.
const ROW_INIT: usize = 0;
const ROW_INIT_ACK: usize = 1;
const ROW_ABORT: usize = 2;
const ROW_SHUTDOWN: usize = 3;
const ROW_SHUTDOWN_ACK: usize = 4;
const ROW_ERROR: usize = 5;
const ROW_COOKIE_ECHO: usize = 6;
const ROW_COOKIE_ACK: usize = 7;
const ROW_SHUTDOWN_COMPLETE: usize = 8;
const ROW_HEARTBEAT: usize = 9;
const ROW_HEARTBEAT_ACK: usize = 10;

/// `sctp_conntracks[dir][chunk row][old state]`: the new state or IV (invalid).
/// Columns: NO CL CW CE ES SS SR SA HS (HEARTBEAT_ACKED is never a current state).
#[rustfmt::skip]
const TRANSITIONS: [[[u8; 9]; 11]; 2] = [
    // ORIGINAL
    [
        /* init          */ [CL, CL, CW, CE, ES, CL, CL, SA, CW],
        /* init_ack      */ [CL, CL, CW, CE, ES, SS, SR, SA, CL],
        /* abort         */ [CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* shutdown      */ [CL, CL, CW, CE, SS, SS, SR, SA, CL],
        /* shutdown_ack  */ [SA, CL, CW, CE, ES, SA, SA, SA, SA],
        /* error         */ [CL, CL, CW, CE, ES, SS, SR, SA, CL],
        /* cookie_echo   */ [CL, CL, CE, CE, ES, SS, SR, SA, CL],
        /* cookie_ack    */ [CL, CL, CW, ES, ES, SS, SR, SA, CL],
        /* shutdown_comp */ [CL, CL, CW, CE, ES, SS, SR, CL, CL],
        /* heartbeat     */ [HS, CL, CW, CE, ES, SS, SR, SA, HS],
        /* heartbeat_ack */ [CL, CL, CW, CE, ES, SS, SR, SA, HS],
    ],
    // REPLY
    [
        /* init          */ [IV, CL, CW, CE, ES, SS, SR, SA, IV],
        /* init_ack      */ [IV, CW, CW, CE, ES, SS, SR, SA, IV],
        /* abort         */ [IV, CL, CL, CL, CL, CL, CL, CL, IV],
        /* shutdown      */ [IV, CL, CW, CE, SR, SS, SR, SA, IV],
        /* shutdown_ack  */ [IV, CL, CW, CE, ES, SA, SA, SA, IV],
        /* error         */ [IV, CL, CW, CL, ES, SS, SR, SA, IV],
        /* cookie_echo   */ [IV, CL, CE, CE, ES, SS, SR, SA, IV],
        /* cookie_ack    */ [IV, CL, CW, ES, ES, SS, SR, SA, IV],
        /* shutdown_comp */ [IV, CL, CW, CE, ES, SS, SR, CL, IV],
        /* heartbeat     */ [IV, CL, CW, CE, ES, SS, SR, SA, HS],
        /* heartbeat_ack */ [IV, CL, CW, CE, ES, SS, SR, SA, ES],
    ],
];

/// The timeout sysctl of each state from CLOSED on (index = state - 1).
const STATE_TIMEOUTS: [SysctlKey; 8] = [
    SysctlKey::SctpTimeoutClosed,
    SysctlKey::SctpTimeoutCookieWait,
    SysctlKey::SctpTimeoutCookieEchoed,
    SysctlKey::SctpTimeoutEstablished,
    SysctlKey::SctpTimeoutShutdownSent,
    SysctlKey::SctpTimeoutShutdownRecd,
    SysctlKey::SctpTimeoutShutdownAckSent,
    SysctlKey::SctpTimeoutHeartbeatSent,
];

/// `timeouts[SCTP_CONNTRACK_NONE]`: set once at netns init to CLOSED's default (10 s) and not
/// tied to any sysctl. No accepted packet leaves an entry in NONE, so this is never used in
/// practice.
const NONE_TIMEOUT_NS: u64 = 10_000_000_000;

/// The set of chunk types a packet carries (the kernel's 256-bit `map`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ChunkMap([u64; 4]);

impl ChunkMap {
    fn set(&mut self, t: u8) {
        self.0[usize::from(t >> 6)] |= 1 << (t & 63);
    }
    fn has(&self, t: u8) -> bool {
        self.0[usize::from(t >> 6)] & (1 << (t & 63)) != 0
    }
}

/// `do_basic_checks`: at least one chunk, none of zero length; INIT, INIT_ACK and
/// SHUTDOWN_COMPLETE only alone, COOKIE_ECHO and COOKIE_ACK only first.
fn basic_checks(l4: &[u8]) -> Result<ChunkMap, &'static str> {
    let mut map = ChunkMap::default();
    let mut alone = false;
    let mut count = 0usize;
    for c in chunks(l4) {
        if matches!(c.ty, CID_INIT | CID_INIT_ACK | CID_SHUTDOWN_COMPLETE) {
            alone = true;
        }
        if c.len == 0 {
            return Err("nf_ct_sctp: do_basic_checks failed: zero-length chunk");
        }
        if count != 0 {
            if matches!(c.ty, CID_COOKIE_ACK | CID_COOKIE_ECHO) {
                return Err("nf_ct_sctp: do_basic_checks failed: COOKIE_ECHO/COOKIE_ACK not the first chunk");
            }
            if alone {
                return Err(
                    "nf_ct_sctp: do_basic_checks failed: INIT/INIT_ACK/SHUTDOWN_COMPLETE not the only chunk",
                );
            }
        }
        map.set(c.ty);
        count += 1;
    }
    if count == 0 {
        return Err("nf_ct_sctp: do_basic_checks failed: no chunks");
    }
    Ok(map)
}

/// `sctp_new_state`: the table row of a chunk type, `None` for chunks that keep the state.
fn row(ty: u8) -> Option<usize> {
    Some(match ty {
        CID_INIT => ROW_INIT,
        CID_INIT_ACK => ROW_INIT_ACK,
        CID_ABORT => ROW_ABORT,
        CID_SHUTDOWN => ROW_SHUTDOWN,
        CID_SHUTDOWN_ACK => ROW_SHUTDOWN_ACK,
        CID_ERROR => ROW_ERROR,
        CID_COOKIE_ECHO => ROW_COOKIE_ECHO,
        CID_COOKIE_ACK => ROW_COOKIE_ACK,
        CID_SHUTDOWN_COMPLETE => ROW_SHUTDOWN_COMPLETE,
        CID_HEARTBEAT => ROW_HEARTBEAT,
        CID_HEARTBEAT_ACK => ROW_HEARTBEAT_ACK,
        _ => return None,
    })
}

/// `sctp_new_state`: the state after a chunk of type `ty` in direction `dir` (0 original,
/// 1 reply); IV when the table forbids it.
fn new_state(dir: usize, cur: u8, ty: u8) -> u8 {
    match row(ty) {
        None => cur,
        // HEARTBEAT_ACKED (9) has a zero column in the kernel's table: NONE.
        Some(r) => TRANSITIONS[dir][r].get(usize::from(cur)).copied().unwrap_or(NONE),
    }
}

/// `sctp_error`: the common header is there, and the CRC32c is right when checksums are
/// verified for this packet.
pub fn sctp_error(ctx: &PacketCtx<'_>) -> Result<(), &'static str> {
    if sctp::vtag(ctx.l4).is_none() {
        return Err("nf_ct_sctp: short packet");
    }
    if ctx.verify_checksum && !checksum::sctp_ok(ctx.l4) {
        return Err("nf_ct_sctp: bad CRC");
    }
    Ok(())
}

/// `sctp_new`: may this packet open an entry? Every chunk must move NONE somewhere in the
/// original direction; INIT needs tag 0 and gives the reply tag, HEARTBEAT gives the
/// original tag, SHUTDOWN_ACK (out of the blue) the reply tag.
fn sctp_new(l4: &[u8], vtag: u32) -> Result<SctpState, &'static str> {
    let mut st = SctpState::default();
    for c in chunks(l4) {
        let ns = new_state(Direction::Original.index(), NONE, c.ty);
        if ns == NONE || ns == IV {
            return Err("nf_ct_sctp: invalid new: chunk cannot start a connection");
        }
        match c.ty {
            CID_INIT => {
                if vtag != 0 {
                    return Err("nf_ct_sctp: invalid new: INIT with non-zero vtag");
                }
                let Some(tag) = init_tag(l4, c.off) else {
                    return Err("nf_ct_sctp: invalid new: truncated INIT chunk");
                };
                st.vtag[Direction::Reply.index()] = tag;
            }
            CID_HEARTBEAT => st.vtag[Direction::Original.index()] = vtag,
            CID_SHUTDOWN_ACK => st.vtag[Direction::Reply.index()] = vtag,
            _ => {}
        }
        st.state = NONE;
    }
    Ok(st)
}

/// `nf_conntrack_sctp_packet`.
pub fn sctp_packet(e: &mut Conn, ctx: &PacketCtx<'_>, sysctl: &Sysctl) -> PacketVerdict {
    if let Err(why) = sctp_error(ctx) {
        return PacketVerdict::Invalid(why);
    }
    let l4 = ctx.l4;
    let Some(vtag) = sctp::vtag(l4) else { return PacketVerdict::Invalid("nf_ct_sctp: short packet") };
    let map = match basic_checks(l4) {
        Ok(m) => m,
        Err(why) => return PacketVerdict::Invalid(why),
    };
    let mut st = match &e.proto {
        ProtoState::Sctp(st) => **st,
        _ => SctpState::default(),
    };
    if !e.confirmed() {
        // Out-of-the-blue packets with these chunks are discarded (RFC 4960 §8.4).
        if map.has(CID_ABORT) || map.has(CID_SHUTDOWN_COMPLETE) || map.has(CID_COOKIE_ACK) {
            return PacketVerdict::Invalid("nf_ct_sctp: invalid new: ABORT, SHUTDOWN_COMPLETE or COOKIE_ACK");
        }
        st = match sctp_new(l4, vtag) {
            Ok(st) => st,
            Err(why) => return PacketVerdict::Invalid(why),
        };
    }
    let verdict = sctp_state_machine(e, &mut st, &map, vtag, ctx, sysctl);
    // The kernel changes the state in place, chunk by chunk: what a packet changed before a
    // later chunk made it invalid stays.
    e.proto.set_sctp(st);
    verdict
}

fn sctp_state_machine(
    e: &mut Conn,
    st: &mut SctpState,
    map: &ChunkMap,
    vtag: u32,
    ctx: &PacketCtx<'_>,
    sysctl: &Sysctl,
) -> PacketVerdict {
    let l4 = ctx.l4;
    let dir = ctx.dir.index();
    let odir = 1 - dir;

    // Verification tag (RFC 4960 §8.5), unless a chunk with its own rule is present.
    let own_rule = [
        CID_INIT,
        CID_SHUTDOWN_COMPLETE,
        CID_COOKIE_ECHO,
        CID_ABORT,
        CID_SHUTDOWN_ACK,
        CID_HEARTBEAT,
        CID_HEARTBEAT_ACK,
    ];
    if !own_rule.iter().any(|&t| map.has(t)) && vtag != st.vtag[dir] {
        return PacketVerdict::Invalid("nf_ct_sctp: verification tag check failed");
    }

    let mut ignore = false;
    let mut old_state;
    let mut new = NONE;
    for c in chunks(l4) {
        // Special cases of the tag check (§8.5.1).
        match c.ty {
            // (A) an INIT's tag must be zero.
            CID_INIT if vtag != 0 => return PacketVerdict::Invalid("nf_ct_sctp: INIT with non-zero vtag"),
            CID_ABORT | CID_SHUTDOWN_COMPLETE => {
                // (B), (C) own tag without the T flag, the peer's with it.
                let want = if c.flags & CHUNK_FLAG_T != 0 { st.vtag[odir] } else { st.vtag[dir] };
                if vtag != want {
                    return PacketVerdict::Invalid(if c.ty == CID_ABORT {
                        "nf_ct_sctp: ABORT verification tag check failed"
                    } else {
                        "nf_ct_sctp: SHUTDOWN_COMPLETE verification tag check failed"
                    });
                }
            }
            // (D) a COOKIE_ECHO carries the tag the INIT_ACK gave.
            CID_COOKIE_ECHO if vtag != st.vtag[dir] => {
                return PacketVerdict::Invalid("nf_ct_sctp: COOKIE_ECHO verification tag check failed");
            }
            CID_COOKIE_ACK => st.init = [false, false],
            CID_HEARTBEAT => {
                if st.vtag[dir] == 0 {
                    st.vtag[dir] = vtag;
                } else if vtag != st.vtag[dir] {
                    if map.has(CID_DATA) || ignore {
                        return PacketVerdict::Invalid("nf_ct_sctp: HEARTBEAT verification tag check failed");
                    }
                    // Maybe a secondary path: let it through, remember the failure.
                    st.flags |= FLAG_HEARTBEAT_VTAG_FAILED;
                    st.last_dir = dir as u8;
                    ignore = true;
                    continue;
                } else {
                    st.flags &= !FLAG_HEARTBEAT_VTAG_FAILED;
                }
            }
            CID_HEARTBEAT_ACK => {
                if st.vtag[dir] == 0 {
                    st.vtag[dir] = vtag;
                } else if vtag != st.vtag[dir] {
                    if map.has(CID_DATA) || ignore {
                        return PacketVerdict::Invalid(
                            "nf_ct_sctp: HEARTBEAT_ACK verification tag check failed",
                        );
                    }
                    if st.flags & FLAG_HEARTBEAT_VTAG_FAILED == 0 || usize::from(st.last_dir) == dir {
                        return PacketVerdict::Invalid(
                            "nf_ct_sctp: HEARTBEAT_ACK verification tag check failed",
                        );
                    }
                    // The answer to a HEARTBEAT on a new path: adopt its tags.
                    st.flags &= !FLAG_HEARTBEAT_VTAG_FAILED;
                    st.vtag[dir] = vtag;
                    st.vtag[odir] = 0;
                } else {
                    st.flags &= !FLAG_HEARTBEAT_VTAG_FAILED;
                }
            }
            _ => {}
        }

        old_state = st.state;
        new = new_state(dir, old_state, c.ty);
        if new == IV {
            return PacketVerdict::Invalid("nf_ct_sctp: invalid state transition");
        }

        match c.ty {
            CID_INIT => {
                let Some(tag) = init_tag(l4, c.off) else {
                    return PacketVerdict::Invalid("nf_ct_sctp: truncated INIT chunk");
                };
                // A stale or retransmitted INIT (carrying the tag already known) is not
                // recorded as a new INIT.
                if old_state == NONE || st.vtag[odir] != tag {
                    if st.init[dir] && st.init[odir] {
                        st.init[odir] = false;
                    }
                    st.init[dir] = true;
                }
                st.vtag[odir] = tag;
                // A retransmitted INIT in CLOSED does not renew the timeout.
                if new == CLOSED && old_state == CLOSED && e.confirmed() {
                    ignore = true;
                }
            }
            CID_INIT_ACK => {
                let Some(tag) = init_tag(l4, c.off) else {
                    return PacketVerdict::Invalid("nf_ct_sctp: truncated INIT_ACK chunk");
                };
                let known = st.vtag[odir];
                if !st.init[odir] && known != 0 && known != tag {
                    return PacketVerdict::Invalid("nf_ct_sctp: INIT_ACK tag does not match");
                }
                if st.init[dir] && st.init[odir] && known != tag {
                    return PacketVerdict::Invalid("nf_ct_sctp: INIT_ACK tag does not match (collision)");
                }
                st.vtag[odir] = tag;
            }
            _ => {}
        }

        st.state = new;
        if old_state != new {
            e.events |= IPCT_PROTOINFO;
            if new == ESTABLISHED {
                e.set_status(IPS_ASSURED, IPCT_ASSURED);
            }
        }
    }

    // Accepted, but the timeout is not renewed (and the packet not counted).
    if ignore {
        return PacketVerdict::Accept;
    }
    let timeout = match new {
        CLOSED..=HEARTBEAT_SENT => sysctl.timeout_ns(STATE_TIMEOUTS[usize::from(new - 1)]),
        _ => NONE_TIMEOUT_NS,
    };
    e.refresh(ctx.dir, ctx.len, timeout, ctx.now);
    PacketVerdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::IPS_CONFIRMED;
    use crate::wire::sctp::CID_SACK;

    const O: usize = 0;
    const R: usize = 1;

    #[test]
    fn table_cells_match_the_spec() {
        // Every row of spec §10.3, columns NO CL CW CE ES SS SR SA HS.
        let orig: [(u8, [u8; 9]); 11] = [
            (CID_INIT, [CL, CL, CW, CE, ES, CL, CL, SA, CW]),
            (CID_INIT_ACK, [CL, CL, CW, CE, ES, SS, SR, SA, CL]),
            (CID_ABORT, [CL; 9]),
            (CID_SHUTDOWN, [CL, CL, CW, CE, SS, SS, SR, SA, CL]),
            (CID_SHUTDOWN_ACK, [SA, CL, CW, CE, ES, SA, SA, SA, SA]),
            (CID_ERROR, [CL, CL, CW, CE, ES, SS, SR, SA, CL]),
            (CID_COOKIE_ECHO, [CL, CL, CE, CE, ES, SS, SR, SA, CL]),
            (CID_COOKIE_ACK, [CL, CL, CW, ES, ES, SS, SR, SA, CL]),
            (CID_SHUTDOWN_COMPLETE, [CL, CL, CW, CE, ES, SS, SR, CL, CL]),
            (CID_HEARTBEAT, [HS, CL, CW, CE, ES, SS, SR, SA, HS]),
            (CID_HEARTBEAT_ACK, [CL, CL, CW, CE, ES, SS, SR, SA, HS]),
        ];
        let reply: [(u8, [u8; 9]); 11] = [
            (CID_INIT, [IV, CL, CW, CE, ES, SS, SR, SA, IV]),
            (CID_INIT_ACK, [IV, CW, CW, CE, ES, SS, SR, SA, IV]),
            (CID_ABORT, [IV, CL, CL, CL, CL, CL, CL, CL, IV]),
            (CID_SHUTDOWN, [IV, CL, CW, CE, SR, SS, SR, SA, IV]),
            (CID_SHUTDOWN_ACK, [IV, CL, CW, CE, ES, SA, SA, SA, IV]),
            (CID_ERROR, [IV, CL, CW, CL, ES, SS, SR, SA, IV]),
            (CID_COOKIE_ECHO, [IV, CL, CE, CE, ES, SS, SR, SA, IV]),
            (CID_COOKIE_ACK, [IV, CL, CW, ES, ES, SS, SR, SA, IV]),
            (CID_SHUTDOWN_COMPLETE, [IV, CL, CW, CE, ES, SS, SR, CL, IV]),
            (CID_HEARTBEAT, [IV, CL, CW, CE, ES, SS, SR, SA, HS]),
            (CID_HEARTBEAT_ACK, [IV, CL, CW, CE, ES, SS, SR, SA, ES]),
        ];
        for (dir, rows) in [(O, orig), (R, reply)] {
            for (ty, cells) in rows {
                for (cur, want) in cells.iter().enumerate() {
                    assert_eq!(new_state(dir, cur as u8, ty), *want, "dir {dir} chunk {ty} state {cur}");
                }
            }
        }
        // DATA, SACK and unknown chunks keep the state.
        for cur in 0..9 {
            assert_eq!(new_state(O, cur, CID_DATA), cur);
            assert_eq!(new_state(R, cur, CID_SACK), cur);
            assert_eq!(new_state(R, cur, 200), cur);
        }
    }

    /// A common header and the given chunks (type, flags, value), CRC32c filled in.
    fn pkt(vtag: u32, chunks: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut p = vec![0x13, 0x88, 0x13, 0x89];
        p.extend_from_slice(&vtag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        for &(ty, flags, val) in chunks {
            let len = (4 + val.len()) as u16;
            p.extend_from_slice(&[ty, flags]);
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(val);
            while p.len() % 4 != 0 {
                p.push(0);
            }
        }
        let crc = crc32c(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        p
    }

    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
            }
        }
        !crc
    }

    fn init_body(tag: u32) -> Vec<u8> {
        let mut v = tag.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1]);
        v
    }

    const Z: [u8; 16] = [0; 16];

    fn run(e: &mut Conn, p: &[u8], dir: Direction, now_s: u64, verify: bool) -> PacketVerdict {
        let ctx = PacketCtx {
            l4: p,
            l3num: crate::uapi::AF_INET,
            src: &Z,
            dst: &Z,
            len: 20 + p.len(),
            dir,
            now: now_s * 1_000_000_000,
            verify_checksum: verify,
        };
        sctp_packet(e, &ctx, &Sysctl::default())
    }

    fn state(e: &Conn) -> SctpState {
        match &e.proto {
            ProtoState::Sctp(st) => **st,
            _ => panic!("no sctp state"),
        }
    }

    fn secs_left(e: &Conn, now_s: u64) -> u64 {
        (e.timeout - now_s * 1_000_000_000) / 1_000_000_000
    }

    const TA: u32 = 0x1111_1111;
    const TB: u32 = 0x2222_2222;

    fn established() -> Conn {
        let mut e = Conn::default();
        assert_eq!(
            run(&mut e, &pkt(0, &[(CID_INIT, 0, &init_body(TA))]), Direction::Original, 0, true),
            PacketVerdict::Accept
        );
        e.status |= IPS_CONFIRMED;
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_INIT_ACK, 0, &init_body(TB))]), Direction::Reply, 0, true),
            PacketVerdict::Accept
        );
        assert_eq!(
            run(&mut e, &pkt(TB, &[(CID_COOKIE_ECHO, 0, &[1, 2, 3, 4])]), Direction::Original, 0, true),
            PacketVerdict::Accept
        );
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_COOKIE_ACK, 0, &[])]), Direction::Reply, 0, true),
            PacketVerdict::Accept
        );
        e
    }

    #[test]
    fn association_setup_and_shutdown() {
        let mut e = Conn::default();
        let init = pkt(0, &[(CID_INIT, 0, &init_body(TA))]);
        assert_eq!(run(&mut e, &init, Direction::Original, 0, true), PacketVerdict::Accept);
        assert_eq!(state(&e).state, CLOSED);
        assert_eq!(state(&e).vtag, [0, TA]);
        assert_eq!(e.timeout, 10_000_000_000);
        e.status |= IPS_CONFIRMED;
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_INIT_ACK, 0, &init_body(TB))]), Direction::Reply, 1, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, COOKIE_WAIT);
        assert_eq!(state(&e).vtag, [TB, TA]);
        assert_eq!(secs_left(&e, 1), 3);
        assert_eq!(
            run(&mut e, &pkt(TB, &[(CID_COOKIE_ECHO, 0, &[9; 8])]), Direction::Original, 1, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, COOKIE_ECHOED);
        assert_eq!(e.status & IPS_ASSURED, 0);
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_COOKIE_ACK, 0, &[])]), Direction::Reply, 2, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, ESTABLISHED);
        assert_ne!(e.status & IPS_ASSURED, 0);
        assert_ne!(e.events & IPCT_ASSURED, 0);
        assert_eq!(secs_left(&e, 2), 210);
        // DATA with the right tag keeps ESTABLISHED; a wrong tag is invalid.
        assert_eq!(
            run(&mut e, &pkt(TB, &[(CID_DATA, 3, &[0; 16])]), Direction::Original, 3, true),
            PacketVerdict::Accept
        );
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_SACK, 0, &[0; 12])]), Direction::Reply, 3, true),
            PacketVerdict::Accept
        );
        assert!(matches!(
            run(&mut e, &pkt(TA, &[(CID_DATA, 3, &[0; 16])]), Direction::Original, 3, true),
            PacketVerdict::Invalid(_)
        ));
        // SHUTDOWN, SHUTDOWN_ACK, SHUTDOWN_COMPLETE.
        assert_eq!(
            run(&mut e, &pkt(TB, &[(CID_SHUTDOWN, 0, &[0; 4])]), Direction::Original, 4, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, SHUTDOWN_SENT);
        assert_eq!(secs_left(&e, 4), 3);
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_SHUTDOWN_ACK, 0, &[])]), Direction::Reply, 4, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, SHUTDOWN_ACK_SENT);
        assert_eq!(
            run(&mut e, &pkt(TB, &[(CID_SHUTDOWN_COMPLETE, 0, &[])]), Direction::Original, 5, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, CLOSED);
        assert_eq!(secs_left(&e, 5), 10);
        assert_eq!(state(&e).name(), "CLOSED");
    }

    #[test]
    fn init_retransmission_in_closed_does_not_refresh() {
        let mut e = Conn::default();
        let init = pkt(0, &[(CID_INIT, 0, &init_body(TA))]);
        assert_eq!(run(&mut e, &init, Direction::Original, 0, true), PacketVerdict::Accept);
        e.status |= IPS_CONFIRMED;
        let before = e.timeout;
        assert_eq!(run(&mut e, &init, Direction::Original, 5, true), PacketVerdict::Accept);
        assert_eq!(e.timeout, before);
        assert_eq!(state(&e).state, CLOSED);
    }

    #[test]
    fn new_entry_rules() {
        let mut e = Conn::default();
        for bad in [
            pkt(7, &[(CID_INIT, 0, &init_body(TA))]),
            pkt(7, &[(CID_COOKIE_ACK, 0, &[])]),
            pkt(7, &[(CID_ABORT, 0, &[])]),
            pkt(7, &[(CID_SHUTDOWN_COMPLETE, 0, &[])]),
            pkt(7, &[(CID_DATA, 3, &[0; 16])]),
            pkt(0, &[(CID_INIT, 0, &[0; 8])]),
            pkt(0, &[]),
        ] {
            assert!(matches!(run(&mut e, &bad, Direction::Original, 0, true), PacketVerdict::Invalid(_)));
        }
        // HEARTBEAT opens an entry in HEARTBEAT_SENT and learns the original tag.
        let mut e = Conn::default();
        assert_eq!(
            run(
                &mut e,
                &pkt(TA, &[(CID_HEARTBEAT, 0, &[0, 1, 0, 8, 1, 2, 3, 4])]),
                Direction::Original,
                0,
                true
            ),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, HEARTBEAT_SENT);
        assert_eq!(state(&e).vtag, [TA, 0]);
        assert_eq!(e.timeout, 30_000_000_000);
        e.status |= IPS_CONFIRMED;
        assert_eq!(
            run(
                &mut e,
                &pkt(TB, &[(CID_HEARTBEAT_ACK, 0, &[0, 1, 0, 8, 1, 2, 3, 4])]),
                Direction::Reply,
                1,
                true
            ),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, ESTABLISHED);
        assert_eq!(state(&e).vtag, [TA, TB]);
        assert_ne!(e.status & IPS_ASSURED, 0);
    }

    #[test]
    fn chunk_checks() {
        let ib = init_body(TA);
        assert!(basic_checks(&pkt(0, &[(CID_INIT, 0, &ib)])).is_ok());
        assert!(basic_checks(&pkt(0, &[(CID_INIT, 0, &ib), (CID_DATA, 0, &[0; 12])])).is_err());
        assert!(basic_checks(&pkt(0, &[(CID_DATA, 0, &[0; 12]), (CID_INIT, 0, &ib)])).is_err());
        assert!(basic_checks(&pkt(0, &[(CID_DATA, 0, &[0; 12]), (CID_SHUTDOWN_COMPLETE, 0, &[])])).is_err());
        assert!(basic_checks(&pkt(0, &[(CID_COOKIE_ECHO, 0, &[0; 4]), (CID_DATA, 0, &[0; 12])])).is_ok());
        assert!(basic_checks(&pkt(0, &[(CID_DATA, 0, &[0; 12]), (CID_COOKIE_ECHO, 0, &[0; 4])])).is_err());
        assert!(basic_checks(&pkt(0, &[(CID_SACK, 0, &[0; 12]), (CID_COOKIE_ACK, 0, &[])])).is_err());
        assert!(basic_checks(&pkt(0, &[])).is_err());
        let mut zero = pkt(0, &[(CID_DATA, 0, &[0; 12])]);
        zero[14] = 0;
        zero[15] = 0;
        assert!(basic_checks(&zero).is_err());
        // A trailing partial chunk header is not a chunk.
        let mut tail = pkt(0, &[(CID_SACK, 0, &[0; 12])]);
        tail.extend_from_slice(&[0, 0]);
        assert!(basic_checks(&tail).is_ok());
        let m = basic_checks(&pkt(0, &[(CID_SACK, 0, &[0; 12]), (CID_HEARTBEAT, 0, &[0; 4])])).unwrap();
        assert!(m.has(CID_SACK) && m.has(CID_HEARTBEAT) && !m.has(CID_DATA));
    }

    #[test]
    fn checksum_only_when_verified() {
        let mut p = pkt(0, &[(CID_INIT, 0, &init_body(TA))]);
        p[8] ^= 1;
        let mut e = Conn::default();
        assert_eq!(
            run(&mut e, &p, Direction::Original, 0, true),
            PacketVerdict::Invalid("nf_ct_sctp: bad CRC")
        );
        let mut e = Conn::default();
        assert_eq!(run(&mut e, &p, Direction::Original, 0, false), PacketVerdict::Accept);
        assert_eq!(
            run(&mut e, &p[..11], Direction::Original, 0, false),
            PacketVerdict::Invalid("nf_ct_sctp: short packet")
        );
    }

    #[test]
    fn abort_and_vtag_rules() {
        // ABORT with own tag closes; with the T flag it must carry the peer's tag.
        let mut e = established();
        assert!(matches!(
            run(&mut e, &pkt(TA, &[(CID_ABORT, 0, &[])]), Direction::Original, 1, true),
            PacketVerdict::Invalid(_)
        ));
        assert_eq!(state(&e).state, ESTABLISHED);
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_ABORT, CHUNK_FLAG_T, &[])]), Direction::Original, 1, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, CLOSED);
        let mut e = established();
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_ABORT, 0, &[])]), Direction::Reply, 1, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).state, CLOSED);
        // An INIT on an existing entry with a non-zero tag is invalid.
        let mut e = established();
        assert!(matches!(
            run(&mut e, &pkt(TB, &[(CID_INIT, 0, &init_body(5))]), Direction::Original, 1, true),
            PacketVerdict::Invalid(_)
        ));
        // HEARTBEAT with a foreign tag: accepted once without refresh, flagged.
        let mut e = established();
        let t = e.timeout;
        assert_eq!(
            run(&mut e, &pkt(0x3333, &[(CID_HEARTBEAT, 0, &[0; 8])]), Direction::Original, 50, true),
            PacketVerdict::Accept
        );
        assert_eq!(e.timeout, t);
        assert_eq!(state(&e).flags, FLAG_HEARTBEAT_VTAG_FAILED);
        // Its answer from the other side adopts the new tags.
        assert_eq!(
            run(&mut e, &pkt(0x4444, &[(CID_HEARTBEAT_ACK, 0, &[0; 8])]), Direction::Reply, 51, true),
            PacketVerdict::Accept
        );
        assert_eq!(state(&e).vtag, [0, 0x4444]);
        assert_eq!(state(&e).flags, 0);
        assert_eq!(secs_left(&e, 51), 210);
        // HEARTBEAT_ACK with a foreign tag and no failed HEARTBEAT is invalid.
        let mut e = established();
        assert!(matches!(
            run(&mut e, &pkt(0x5555, &[(CID_HEARTBEAT_ACK, 0, &[0; 8])]), Direction::Reply, 1, true),
            PacketVerdict::Invalid(_)
        ));
        // Invalid transitions: COOKIE_ACK in reply on NONE cannot happen; HEARTBEAT in reply on
        // a HEARTBEAT_SENT entry goes to HEARTBEAT_SENT; INIT in reply on HEARTBEAT_SENT is IV.
        let mut e = Conn::default();
        assert_eq!(
            run(&mut e, &pkt(TA, &[(CID_HEARTBEAT, 0, &[0; 8])]), Direction::Original, 0, true),
            PacketVerdict::Accept
        );
        e.status |= IPS_CONFIRMED;
        assert_eq!(
            run(&mut e, &pkt(0, &[(CID_INIT, 0, &init_body(TB))]), Direction::Reply, 0, true),
            PacketVerdict::Invalid("nf_ct_sctp: invalid state transition")
        );
    }
}
