//! Replaying captures: every IP packet of a pcap/pcapng file goes through the IP stack's
//! receive checks, conntrack's `in` hook and the confirm hook, as on a forwarding router, on a
//! clock taken from the capture (or frozen at its first packet).

pub mod capture;
pub mod route;

use crate::core::{Class, Hook, Net, SkbCt, NF_DROP};
use crate::defrag::{DefragCounters, FragLimits, Gathered};
use crate::sysctl::Sx;
use crate::tuple::{AF_INET, AF_INET6};
use crate::wire::{ip, link};
use capture::{Capture, CaptureError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Which clock the table runs on during a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The capture's timestamps.
    Capture,
    /// Every packet at the first packet's time: no time passes, as when the kernel is fed a
    /// capture as fast as it can take it.
    Frozen,
}

/// What a replay saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read from the captures.
    pub frames: u64,
    /// Frames that carried no IP packet for the IP stack (ARP, CDP, IP inside MPLS, ...).
    pub non_ip: u64,
    /// IP packets fed to the stack.
    pub packets: u64,
    pub new: u64,
    pub established: u64,
    pub related: u64,
    pub invalid: u64,
    pub untracked: u64,
    pub dropped: u64,
    /// How many packets were INVALID or dropped for each reason.
    pub reasons: BTreeMap<&'static str, u64>,
    /// Defrag (spec §1.2): fragments that entered reassembly, datagrams reassembled, queues
    /// that timed out, queues dropped (overlap, inconsistent, memory).
    pub fragments: u64,
    pub reassembled: u64,
    pub frag_timed_out: u64,
    pub frag_dropped: u64,
}

impl Summary {
    /// Adds the defrag counters' growth from `from` to `to`.
    fn add_defrag(&mut self, from: DefragCounters, to: DefragCounters) {
        self.fragments += to.fragments.saturating_sub(from.fragments);
        self.reassembled += to.reassembled.saturating_sub(from.reassembled);
        self.frag_timed_out += to.timed_out.saturating_sub(from.timed_out);
        self.frag_dropped += to.dropped.saturating_sub(from.dropped);
    }

    fn count(&mut self, class: Class, reason: Option<&'static str>) {
        match class {
            Class::New => self.new += 1,
            Class::Established => self.established += 1,
            Class::Related => self.related += 1,
            Class::Invalid => self.invalid += 1,
            Class::Untracked => self.untracked += 1,
            Class::Dropped => self.dropped += 1,
        }
        if let Some(r) = reason {
            if matches!(class, Class::Invalid | Class::Dropped) {
                *self.reasons.entry(r).or_insert(0) += 1;
            }
        }
    }
}

/// Replay settings.
pub struct Replay<'w> {
    pub clock: Clock,
    /// Where per-packet lines (`N CLASS [REASON]`) go, if anywhere.
    pub packets_out: Option<&'w mut dyn Write>,
    /// Prefix each per-packet line with the capture's name (several captures).
    pub name_prefix: bool,
    /// Where `conntrack -E -o extended` lines go, if anywhere (the replay then listens).
    pub events_out: Option<&'w mut dyn Write>,
    /// Prefix event lines with `[seconds.micros]` on the table's clock (`-o timestamp`).
    pub event_timestamps: bool,
}

/// A replay stopped early: the capture error, with everything before it already applied.
#[derive(Debug)]
pub enum ReplayError {
    Capture(CaptureError),
    Output(std::io::Error),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Capture(e) => e.fmt(f),
            ReplayError::Output(e) => write!(f, "writing output: {e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// One IP packet through a router's conntrack: `ip_rcv` checks, `in` at PRE_ROUTING, the
/// routing decision, then confirm at POST_ROUTING (forwarded) or LOCAL_IN (delivered); a packet
/// the router drops in between frees its new entry. Returns the packet's class and reason.
pub fn forward_packet(net: &Net, pkt: &[u8], tstamp: u64) -> (Class, Option<&'static str>) {
    let (pf, checked) = match ip::ip_version(pkt) {
        Some(4) => (AF_INET, ip::ipv4_rcv_check(pkt)),
        Some(6) => (AF_INET6, ip::ipv6_rcv_check(pkt)),
        _ => (0, Err("ip_rcv: not an IP packet")),
    };
    let len = match checked {
        Ok(len) => len,
        Err(why) => return (Class::Dropped, Some(why)),
    };
    let data = pkt.get(..len).unwrap_or(pkt);
    // nf_defrag_ipv4/ipv6 at PRE_ROUTING −400: conntrack only sees whole datagrams; a held
    // fragment never reaches the forward hook.
    let gathered = if pf == AF_INET {
        net.defrag.ipv4_gather(data, tstamp)
    } else {
        let lim = FragLimits {
            timeout_ns: net.sysctl.timeout_ns(Sx::Frag6Timeout),
            high_thresh: net.sysctl.get(Sx::Frag6HighThresh),
            low_thresh: net.sysctl.get(Sx::Frag6LowThresh),
        };
        net.defrag.ipv6_gather_with(data, tstamp, &lim)
    };
    let whole;
    let (data, route_len) = match gathered {
        Gathered::NotFragment => (data, data.len()),
        Gathered::Held => return (Class::Dropped, Some("nf_defrag: fragment held for reassembly")),
        Gathered::Dropped(why) => return (Class::Dropped, Some(why)),
        Gathered::Reassembled { pkt, max_frag } => {
            whole = pkt;
            // The forwarding path's MTU check uses the largest fragment (`frag_max_size`,
            // `ignore_df` set by defrag): the datagram is refragmented on output.
            let n = whole.len().min(max_frag);
            (&whole[..], n)
        }
    };
    let mut skb = SkbCt::default();
    let mut verdict = net.conntrack_in(data, tstamp, Hook::PreRouting, pf, &mut skb);
    let mut class = skb.class(verdict);
    let mut reason = skb.reason;
    if verdict != NF_DROP {
        let route = route_of(pf, data, route_len);
        if let route::Route::Drop(why) = route {
            class = Class::Dropped;
            reason = Some(why);
        } else {
            verdict = net.confirm(&mut skb);
            if verdict == NF_DROP {
                class = Class::Dropped;
                reason = skb.reason;
            }
        }
    }
    net.release(&mut skb);
    (class, reason)
}

/// The routing decision for a packet that passed the receive checks (so its fixed header is
/// all there).
fn route_of(pf: u8, data: &[u8], len: usize) -> route::Route {
    if pf == AF_INET {
        match (data.get(12..16), data.get(16..20), data.get(8), data.get(9)) {
            (Some(s), Some(d), Some(&ttl), Some(&proto)) => {
                let df = data.get(6).is_some_and(|b| b & 0x40 != 0);
                route::route_v4([s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]], ttl, proto, len, df)
            }
            _ => route::Route::Forward,
        }
    } else {
        let addr = |r: std::ops::Range<usize>| -> Option<[u8; 16]> { data.get(r)?.try_into().ok() };
        match (addr(8..24), addr(24..40), data.get(7)) {
            (Some(s), Some(d), Some(&hop)) => route::route_v6(&s, &d, hop, len),
            _ => route::Route::Forward,
        }
    }
}

impl Replay<'_> {
    /// Replays the captures in order through `net`. On a capture error, what was read before
    /// it stays applied to the table and counted in the summary.
    pub fn run(&mut self, net: &Net, paths: &[&Path], summary: &mut Summary) -> Result<(), ReplayError> {
        let mut frozen_at: Option<u64> = None;
        if self.events_out.is_some() {
            net.events.listen(true, crate::events::DEFAULT_CAPACITY);
        }
        let mut line = String::new();
        for path in paths {
            let mut cap = Capture::open(path).map_err(ReplayError::Capture)?;
            let name = path.display().to_string();
            let mut out_err: Option<std::io::Error> = None;
            // The defrag counters are read around the capture, not per packet (they sit behind
            // the defrag lock, which non-fragments never take).
            let defrag_before = net.defrag.counters();
            let res = cap.for_each(|rec| {
                summary.frames += 1;
                // IP inside MPLS is label-switched, not seen by the IP hooks of a router that
                // does not terminate MPLS (the kernel harness does not feed it either).
                let Some((pkt, _)) =
                    link::ip_payload_encap(rec.linktype, rec.data).filter(|(_, e)| e.mpls_labels == 0)
                else {
                    summary.non_ip += 1;
                    return;
                };
                summary.packets += 1;
                let ts = u64::try_from(rec.ts_ns).unwrap_or(0);
                let t = match self.clock {
                    Clock::Capture => ts,
                    Clock::Frozen => *frozen_at.get_or_insert(ts),
                };
                let (class, reason) = forward_packet(net, pkt, t);
                summary.count(class, reason);
                if self.clock == Clock::Capture {
                    net.gc_if_due();
                }
                if let (Some(w), None) = (self.events_out.as_mut(), out_err.as_ref()) {
                    net.events.drain(|ev| {
                        line.clear();
                        ev.line(self.event_timestamps, &mut line);
                        line.push('\n');
                        if let Err(e) = w.write_all(line.as_bytes()) {
                            out_err.get_or_insert(e);
                        }
                    });
                }
                if let (Some(w), None) = (self.packets_out.as_mut(), out_err.as_ref()) {
                    let r = if self.name_prefix {
                        write!(w, "{name}:{} {}", rec.index, class.name())
                    } else {
                        write!(w, "{} {}", rec.index, class.name())
                    };
                    let r = r.and_then(|_| match (class, reason) {
                        (Class::Invalid | Class::Dropped, Some(why)) => {
                            writeln!(w, " {why}")
                        }
                        _ => writeln!(w),
                    });
                    if let Err(e) = r {
                        out_err = Some(e);
                    }
                }
            });
            summary.add_defrag(defrag_before, net.defrag.counters());
            if let Some(w) = self.packets_out.as_mut() {
                w.flush().map_err(ReplayError::Output)?;
            }
            if let Some(w) = self.events_out.as_mut() {
                w.flush().map_err(ReplayError::Output)?;
            }
            if let Some(e) = out_err {
                return Err(ReplayError::Output(e));
            }
            res.map_err(ReplayError::Capture)?;
        }
        Ok(())
    }
}
