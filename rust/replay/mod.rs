//! Replaying captures: every IP packet of a pcap/pcapng file goes through the host's hook
//! pipeline (the IP stack's receive checks, PRE_ROUTING with defrag and conntrack, routing,
//! FORWARD or LOCAL_IN, POST_ROUTING with confirmation, and any operations registered), as on
//! a forwarding router by default, on a clock taken from the capture (or frozen at its first
//! packet).

pub mod capture;
pub mod route;
pub mod threads;

use crate::core::{Class, Net};
use crate::defrag::DefragCounters;
use crate::hooks::{self, Entry, ExtError, HookTable, Op};
use crate::wire::link;
use capture::{Capture, CaptureError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

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
    /// Packets dropped or stolen by each ruleset operation (by name).
    pub dropped_by: BTreeMap<String, u64>,
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
    /// Which way packets go through the host.
    pub path: ReplayPath,
}

/// A replay stopped early: the capture error, with everything before it already applied.
#[derive(Debug)]
pub enum ReplayError {
    Capture(CaptureError),
    Output(std::io::Error),
    /// An external operation raised (its error inside).
    Hook(ExtError),
    /// A bug of nfct's own (a worker thread panicked); what was done is kept.
    Internal(&'static str),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Capture(e) => e.fmt(f),
            ReplayError::Output(e) => write!(f, "writing output: {e}"),
            ReplayError::Hook(_) => f.write_str("a hook operation raised"),
            ReplayError::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ReplayError {}

/// Which way replayed packets go through the host (`nfct replay --path`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReplayPath {
    /// A router in the capture's path: every packet arrives from the wire (`ip_rcv`) and is
    /// forwarded, or delivered when it is addressed to one of the host's own addresses;
    /// packets from the host's own addresses are sent by it (`ip_local_out`).
    #[default]
    Forward,
    /// The capture was taken on the receiving host: every packet arrives from the wire and
    /// every unicast destination is the host's own.
    LocalIn,
    /// Every packet is sent by the host.
    LocalOut,
}

/// How one replayed packet ended.
#[derive(Debug)]
pub struct Processed {
    /// The final verdict (NF_ACCEPT, NF_DROP, NF_STOLEN).
    pub verdict: u32,
    /// The packet's ctinfo as it left the stack (IP_CT_UNTRACKED when untracked).
    pub ctinfo: Option<u8>,
    pub class: Class,
    pub reason: Option<&'static str>,
    /// The ruleset operation (not conntrack's own) that dropped or stole the packet.
    pub dropped_by: Option<Arc<Op>>,
}

impl Processed {
    /// What a replay keeps of a packet's outcome and final state; an external operation's
    /// error instead.
    pub fn of(out: hooks::Outcome, st: &hooks::PacketState) -> Result<Processed, ExtError> {
        if let Some(e) = out.error {
            return Err(e);
        }
        let (class, reason) = out.class(st);
        let dropped_by = out.dropped_by_rule().cloned();
        Ok(Processed { verdict: out.verdict, ctinfo: st.ct.ctinfo(), class, reason, dropped_by })
    }
}

impl Summary {
    /// Counts a capture record and returns the IP packet it carries for the IP stack, if any.
    /// IP inside MPLS is label-switched, not seen by the IP hooks of a router that does not
    /// terminate MPLS (the kernel harness does not feed it either).
    fn ip_packet<'a>(&mut self, rec: &capture::Record<'a>) -> Option<&'a [u8]> {
        self.frames += 1;
        let Some((pkt, _)) =
            link::ip_payload_encap(rec.linktype, rec.data).filter(|(_, e)| e.mpls_labels == 0)
        else {
            self.non_ip += 1;
            return None;
        };
        self.packets += 1;
        Some(pkt)
    }
}

/// Runs each replayed packet through the stack. The replay's own driver runs built-in
/// operations only; the Python binding supplies one that can call Python hooks.
pub trait Driver {
    fn packet(
        &mut self,
        net: &Net,
        table: &HookTable,
        entry: Entry,
        all_local: bool,
        pkt: &[u8],
        tstamp: u64,
    ) -> Result<Processed, ExtError>;
}

/// The driver for stacks whose operations are all built in.
#[derive(Default)]
pub struct Builtins {
    /// Run each packet at its own time (a threaded replay's worker clock), with shared timers
    /// firing only up to this horizon (the time every worker has reached).
    pub horizon: Option<u64>,
}

impl Driver for Builtins {
    fn packet(
        &mut self,
        net: &Net,
        table: &HookTable,
        entry: Entry,
        all_local: bool,
        pkt: &[u8],
        tstamp: u64,
    ) -> Result<Processed, ExtError> {
        let (out, st) = hooks::run_packet_clocked(net, table, entry, all_local, pkt, tstamp, self.horizon);
        Processed::of(out, &st)
    }
}

/// The end of a per-packet line: ` by RULE[: REASON]`, ` REASON` or nothing, and the newline.
fn write_reason(
    w: &mut dyn Write,
    class: Class,
    reason: Option<&str>,
    dropped_by: Option<&Op>,
) -> std::io::Result<()> {
    match (dropped_by, class, reason) {
        (Some(op), _, Some(why)) => writeln!(w, " by {}: {why}", op.name),
        (Some(op), _, None) => writeln!(w, " by {}", op.name),
        (None, Class::Invalid | Class::Dropped, Some(why)) => writeln!(w, " {why}"),
        _ => writeln!(w),
    }
}

/// Where a replayed packet enters the stack.
pub fn entry_for(path: ReplayPath, net: &Net, pkt: &[u8]) -> Entry {
    match path {
        ReplayPath::LocalOut => Entry::LocalOut,
        ReplayPath::Forward if src_is_local(net, pkt) => Entry::LocalOut,
        _ => Entry::Rcv,
    }
}

/// Whether an IP packet comes from one of the host's own addresses (its own packets in a
/// capture).
fn src_is_local(net: &Net, pkt: &[u8]) -> bool {
    hooks::Family::of_packet(pkt)
        .and_then(|f| hooks::addrs(f, pkt))
        .is_some_and(|(src, _)| net.stack.local.contains(src))
}

impl Replay<'_> {
    /// Replays the captures in order through `net`. On a capture error, what was read before
    /// it stays applied to the table and counted in the summary.
    pub fn run(&mut self, net: &Net, paths: &[&Path], summary: &mut Summary) -> Result<(), ReplayError> {
        self.run_with(net, paths, summary, &mut Builtins::default())
    }

    /// As [`Replay::run`], each packet handed to `driver`. The hook registrations are taken
    /// once, when the replay starts.
    pub fn run_with(
        &mut self,
        net: &Net,
        paths: &[&Path],
        summary: &mut Summary,
        driver: &mut dyn Driver,
    ) -> Result<(), ReplayError> {
        let table = net.stack.snapshot();
        let all_local = self.path == ReplayPath::LocalIn;
        let mut frozen_at: Option<u64> = None;
        if self.events_out.is_some() {
            net.events.listen(true, crate::events::DEFAULT_CAPACITY);
        }
        let mut line = String::new();
        for path in paths {
            let mut cap = Capture::open(path).map_err(ReplayError::Capture)?;
            let name = path.display().to_string();
            let mut out_err: Option<std::io::Error> = None;
            let mut hook_err: Option<ExtError> = None;
            // The defrag counters are read around the capture, not per packet (they sit behind
            // the defrag lock, which non-fragments never take).
            let defrag_before = net.defrag.counters();
            let res = cap.for_each(|rec| {
                if hook_err.is_some() {
                    return;
                }
                let Some(pkt) = summary.ip_packet(rec) else { return };
                let ts = u64::try_from(rec.ts_ns).unwrap_or(0);
                let t = match self.clock {
                    Clock::Capture => ts,
                    Clock::Frozen => *frozen_at.get_or_insert(ts),
                };
                if self.clock == Clock::Capture {
                    // The collector's runs due before this packet's time happen before it (the
                    // kernel's worker runs on its own clock, not after packets).
                    net.advance(t);
                    net.gc_if_due();
                }
                let entry = entry_for(self.path, net, pkt);
                let p = match driver.packet(net, &table, entry, all_local, pkt, t) {
                    Ok(p) => p,
                    Err(e) => {
                        hook_err = Some(e);
                        return;
                    }
                };
                let (class, reason) = (p.class, p.reason);
                summary.count(class, reason);
                if let Some(op) = &p.dropped_by {
                    match summary.dropped_by.get_mut(&*op.name) {
                        Some(n) => *n += 1,
                        None => {
                            summary.dropped_by.insert(op.name.to_string(), 1);
                        }
                    }
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
                    let r = r.and_then(|_| write_reason(w, class, reason, p.dropped_by.as_deref()));
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
            if let Some(e) = hook_err {
                return Err(ReplayError::Hook(e));
            }
            if let Some(e) = out_err {
                return Err(ReplayError::Output(e));
            }
            res.map_err(ReplayError::Capture)?;
        }
        Ok(())
    }
}
