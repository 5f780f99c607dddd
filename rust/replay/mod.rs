//! Replaying captures: every IP packet of a pcap/pcapng file goes through a namespace's IP
//! layer (`ip`: the receive checks, PRE_ROUTING with defrag and conntrack, routing, FORWARD or
//! LOCAL_IN, POST_ROUTING with confirmation, and any operations registered), as on a
//! forwarding router by default, on a clock taken from the capture (or frozen at its first
//! packet).
//!
//! [`Feeder`] is the one per-packet driver: the replay loop, the threaded workers
//! ([`threads`]) and the Python binding's batch call all feed packets through it. This module
//! keeps capture reading ([`capture`]), batching, threads and the clock policy; it depends on
//! `ip`, `net` and `wire`, never the other way round.

pub mod capture;
pub mod threads;

use crate::defrag::DefragCounters;
use crate::ip::{self, Class, Ingress, Outcome, PacketClock, PacketRun};
use crate::net::Net;
use crate::netfilter::HookTable;
use crate::table::BULK;
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
    /// Frames of a link type nfct decodes that carried no IP packet for the IP stack (ARP,
    /// CDP, IP inside MPLS, ...).
    pub non_ip: u64,
    /// Frames of a link type nfct does not decode (802.11, USER0, ...): never looked into.
    pub unsupported_link: u64,
    /// Those frames by link type (`LINKTYPE_*`).
    pub unsupported_links: BTreeMap<u32, u64>,
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
    pub fn add_defrag(&mut self, from: DefragCounters, to: DefragCounters) {
        self.fragments += to.fragments.saturating_sub(from.fragments);
        self.reassembled += to.reassembled.saturating_sub(from.reassembled);
        self.frag_timed_out += to.timed_out.saturating_sub(from.timed_out);
        self.frag_dropped += to.dropped.saturating_sub(from.dropped);
    }

    /// Counts one packet's outcome: its class, its reason when INVALID or dropped, and the
    /// rule that dropped it.
    pub fn record(&mut self, out: &Outcome) {
        let (class, reason) = out.class();
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
        // Most packets were dropped by nothing: no call to name what did.
        if out.dropped_by.is_some() {
            if let Some(name) = out.dropped_by_name() {
                *self.dropped_by.entry(name).or_insert(0) += 1;
            }
        }
    }

    /// Adds another summary's packet counts (a threaded replay's workers).
    fn merge(&mut self, o: Summary) {
        self.frames += o.frames;
        self.packets += o.packets;
        self.non_ip += o.non_ip;
        self.unsupported_link += o.unsupported_link;
        for (k, v) in o.unsupported_links {
            *self.unsupported_links.entry(k).or_insert(0) += v;
        }
        self.new += o.new;
        self.established += o.established;
        self.related += o.related;
        self.invalid += o.invalid;
        self.untracked += o.untracked;
        self.dropped += o.dropped;
        for (k, v) in o.reasons {
            *self.reasons.entry(k).or_insert(0) += v;
        }
        for (k, v) in o.dropped_by {
            *self.dropped_by.entry(k).or_insert(0) += v;
        }
    }

    /// Counts a frame that gave the IP stack no packet: not IP, or of a link type nfct does
    /// not decode.
    pub(crate) fn not_ip(&mut self, linktype: u32) {
        if link::is_supported(linktype) {
            self.non_ip += 1;
        } else {
            self.unsupported_link += 1;
            *self.unsupported_links.entry(linktype).or_insert(0) += 1;
        }
    }

    /// Counts a capture record and returns the IP packet it carries for the IP stack, if any.
    /// IP inside MPLS is label-switched, not seen by the IP hooks of a router that does not
    /// terminate MPLS (the kernel harness does not feed it either).
    /// Only the Python binding's record-by-record loop uses it.
    #[cfg_attr(not(feature = "python"), allow(dead_code))]
    pub(crate) fn ip_packet<'a>(&mut self, rec: &capture::Record<'a>) -> Option<&'a [u8]> {
        self.frames += 1;
        let Some(pkt) = ip_of(rec) else {
            self.not_ip(rec.linktype);
            return None;
        };
        self.packets += 1;
        Some(pkt)
    }
}

/// One per-packet line of `nfct replay --output packets`: `[NAME:]FRAME CLASS`, then
/// ` by RULE[: REASON]`, ` REASON` (INVALID or dropped) or nothing, and the newline.
pub fn write_line(
    w: &mut dyn Write,
    name: Option<&str>,
    frame: u64,
    class: Class,
    reason: Option<&str>,
    dropped_by: Option<&str>,
) -> std::io::Result<()> {
    match name {
        Some(n) => write!(w, "{n}:{frame} {}", class.name())?,
        None => write!(w, "{frame} {}", class.name())?,
    }
    match (dropped_by, class, reason) {
        (Some(by), _, Some(why)) => writeln!(w, " by {by}: {why}"),
        (Some(by), _, None) => writeln!(w, " by {by}"),
        (None, Class::Invalid | Class::Dropped, Some(why)) => writeln!(w, " {why}"),
        _ => writeln!(w),
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
    /// The interface every packet from the wire arrives on (`--iif`), if one is fixed.
    pub iif: Option<u32>,
    /// Where the packets that leave the host (forwarded or sent, as NAT rewrote them) go, as
    /// a pcap file of raw IP packets (`--write`), if anywhere.
    pub sent_out: Option<&'w mut dyn Write>,
    /// What to do at capture times (ns), in time order: each runs before the first packet
    /// captured at or after its time (the rest after the last packet), on a clock moved to
    /// its time; the replay then sees the hooks as the action left them.
    pub actions: Vec<(u64, Action<'w>)>,
    /// Who sees every packet after it ran, if anyone (the replay then runs on one thread).
    pub observer: Option<&'w mut dyn Observer>,
    /// Called every `TICK` frames and at the end of each capture with the frames and IP
    /// packets read so far (progress, and the caller's chance to stop the replay: an error
    /// ends it as interrupted, with everything done so far kept).
    pub tick: Option<&'w mut dyn FnMut(u64, u64) -> Result<(), ip::ExtError>>,
}

/// How many frames pass between two calls of [`Replay::tick`].
pub const TICK: u64 = 8192;

/// Sees every IP packet of a replay after it ran (a report's or an export's collector), in
/// capture order, on the replay's thread; an error stops the replay.
pub trait Observer {
    /// Packet `frame` of capture `capture` (index into the replay's list), captured at `ts`
    /// (ns), with its bytes as read and what happened to it.
    fn packet(
        &mut self,
        net: &Net,
        capture: usize,
        frame: u64,
        ts: u64,
        pkt: &[u8],
        out: &Outcome,
    ) -> Result<(), ip::ExtError>;
    /// The replay has run every packet (also after a capture error, with what was done).
    fn finish(&mut self, net: &Net) -> Result<(), ip::ExtError>;
}

/// Something done to the namespace at a capture time during a replay (`conntrack -D`, a new
/// ruleset, ...): an error stops the replay, as a raising hook does.
pub type Action<'a> = Box<dyn FnMut(&Net) -> Result<(), ip::ExtError> + Send + 'a>;

/// The bytes of a packet as it left the host, if it did (forwarded or sent out, not delivered
/// or dropped): the stack's own copy when it made one (NAT, reassembly), else the packet
/// trimmed to its IP length.
pub fn sent_bytes<'a>(out: &'a Outcome, pkt: &'a [u8]) -> Option<&'a [u8]> {
    if out.verdict != crate::uapi::NF_ACCEPT
        || !matches!(out.path, ip::PathKind::Forward | ip::PathKind::Output)
    {
        return None;
    }
    Some(match &out.data {
        Some(d) => d,
        None => {
            let len = match crate::wire::ip::ip_version(pkt) {
                Some(4) => crate::wire::ip::ipv4_rcv_check(pkt).ok(),
                Some(6) => crate::wire::ip::ipv6_rcv_check(pkt).ok(),
                _ => None,
            };
            len.and_then(|n| pkt.get(..n)).unwrap_or(pkt)
        }
    })
}

/// A replay stopped early: the capture error, with everything before it already applied.
#[derive(Debug)]
pub enum ReplayError {
    Capture(CaptureError),
    Output(std::io::Error),
    /// An external operation raised (its error inside).
    Hook(ip::ExtError),
    /// A bug of nfct's own (a worker thread panicked); what was done is kept.
    Internal(&'static str),
    /// The caller stopped the replay (Ctrl-C): what was done is kept.
    Interrupted(ip::ExtError),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Capture(e) => e.fmt(f),
            ReplayError::Output(e) => write!(f, "writing output: {e}"),
            ReplayError::Hook(_) => f.write_str("a hook operation raised"),
            ReplayError::Internal(m) => f.write_str(m),
            ReplayError::Interrupted(_) => f.write_str("interrupted"),
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

/// Where a replayed packet enters the stack.
pub fn ingress_for(path: ReplayPath, net: &Net, pkt: &[u8]) -> Ingress {
    match path {
        ReplayPath::LocalOut => Ingress::LocalOut,
        ReplayPath::Forward if src_is_local(net, pkt) => Ingress::LocalOut,
        _ => Ingress::Rcv,
    }
}

/// Whether an IP packet comes from one of the host's own addresses (its own packets in a
/// capture).
fn src_is_local(net: &Net, pkt: &[u8]) -> bool {
    crate::wire::ip::addrs(pkt).is_some_and(|(src, _)| net.local.contains(src))
}

/// The interface a packet arrives on: `fixed` (`--iif`), else the one its capture names (a
/// pcapng `if_name` the host has), else the host's first interface that is up and not
/// loopback.
pub fn resolve_iif(net: &Net, fixed: Option<u32>, iface: Option<&str>) -> Option<u32> {
    fixed
        .or_else(|| iface.and_then(|n| net.devices().by_name(n)).map(|d| d.index))
        .or_else(|| net.default_iif())
}

/// Runs one packet through the namespace: natively, or (the Python binding's) with external
/// operations.
pub trait Runner {
    fn run(&mut self, net: &Net, hooks: &HookTable, run: PacketRun<'_>, pkt: &[u8]) -> Outcome;
}

/// The runner for namespaces whose operations all run in Rust.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

impl Runner for Native {
    #[inline]
    fn run(&mut self, net: &Net, hooks: &HookTable, run: PacketRun<'_>, pkt: &[u8]) -> Outcome {
        ip::run_native(net, hooks, run, pkt)
    }
}

/// The one per-packet driver: advances the clock, runs the collector when due, picks where
/// the packet enters, runs it, and hands back its outcome. The hook registrations are taken
/// once, when the feeder is made.
pub struct Feeder<'n, R: Runner = Native> {
    pub net: &'n Net,
    hooks: Arc<HookTable>,
    path: ReplayPath,
    clock: Clock,
    frozen_at: Option<u64>,
    /// The interface every packet from the wire arrives on (`--iif`), if one is fixed.
    iif_fixed: Option<u32>,
    /// Where a packet arrives when neither `--iif` nor its capture says.
    iif_default: Option<u32>,
    pub runner: R,
    /// The tuple hashes `prefetch_hinted` computed for the records of the window.
    hints: Vec<Option<crate::tuple::HashHint>>,
    /// Which of them the next packet run takes (`take_hint`).
    hint_at: Option<usize>,
}

impl<'n> Feeder<'n, Native> {
    pub fn new(net: &'n Net, path: ReplayPath, clock: Clock) -> Self {
        Feeder::with_runner(net, path, clock, Native)
    }
}

impl<'n, R: Runner> Feeder<'n, R> {
    pub fn with_runner(net: &'n Net, path: ReplayPath, clock: Clock, runner: R) -> Self {
        let iif_default = net.default_iif();
        Feeder {
            net,
            hooks: net.hooks.snapshot(),
            path,
            clock,
            frozen_at: None,
            iif_fixed: None,
            iif_default,
            runner,
            hints: Vec::new(),
            hint_at: None,
        }
    }

    /// Every packet from the wire arrives on this interface (ifindex), whatever its capture
    /// says.
    pub fn set_iif(&mut self, iif: Option<u32>) {
        self.iif_fixed = iif;
    }

    /// The interface a packet arrives on (see [`resolve_iif`]).
    #[inline]
    fn iif_for(&self, iface: Option<&str>) -> Option<u32> {
        // `iif_default` is `resolve_iif`'s last resort, taken once: the host's interfaces do
        // not change during a replay.
        match iface {
            None => self.iif_fixed.or(self.iif_default),
            Some(_) => self.iif_fixed.or_else(|| resolve_iif(self.net, None, iface)).or(self.iif_default),
        }
    }

    /// Takes the hook registrations anew (after something changed them mid-replay).
    pub fn refresh_hooks(&mut self) {
        self.hooks = self.net.hooks.snapshot();
    }

    /// Whether the registrations need the caller's function (Python hooks).
    pub fn has_external(&self) -> bool {
        self.hooks.has_external()
    }

    /// The time a packet captured at `ts` (ns) runs at: its own, or the first packet's on a
    /// frozen clock.
    #[inline]
    pub fn time(&mut self, ts: u64) -> u64 {
        match self.clock {
            Clock::Capture => ts,
            Clock::Frozen => *self.frozen_at.get_or_insert(ts),
        }
    }

    /// One packet captured at `ts` (ns) on the namespace's clock: on the capture clock the
    /// collector's runs due before the packet's time happen first (the kernel's worker runs on
    /// its own clock, not after packets).
    #[inline]
    pub fn feed(&mut self, pkt: &[u8], ts: u64) -> Outcome {
        self.feed_on(pkt, ts, None)
    }

    /// As [`Feeder::feed`], for a packet its capture says arrived on interface `iface`.
    #[inline]
    pub fn feed_on(&mut self, pkt: &[u8], ts: u64, iface: Option<&str>) -> Outcome {
        let t = self.time(ts);
        if self.clock == Clock::Capture {
            let now = self.net.advance_to(t);
            self.net.ct.gc_if_due(now);
        }
        self.run_on(pkt, t, PacketClock::Shared, iface)
    }

    /// One packet at time `t` on clock `clock`, with no clock step of its own (a threaded
    /// worker keeps its own clock).
    #[inline]
    pub fn run(&mut self, pkt: &[u8], t: u64, clock: PacketClock) -> Outcome {
        self.run_on(pkt, t, clock, None)
    }

    /// As [`Feeder::run`], for a packet its capture says arrived on `iface`. A packet that
    /// arrives on a loopback interface was sent by the host itself.
    pub fn run_on(&mut self, pkt: &[u8], t: u64, clock: PacketClock, iface: Option<&str>) -> Outcome {
        let iif = self.iif_for(iface);
        self.run_via(pkt, t, clock, iif)
    }

    /// As [`Feeder::run`], for a packet arriving on interface `iif` (ifindex) when it comes
    /// from the wire.
    pub fn run_via(&mut self, pkt: &[u8], t: u64, clock: PacketClock, arrives: Option<u32>) -> Outcome {
        let mut run = self.packet_run(pkt, t, clock, arrives);
        // Borrowed where prefetching left it, not copied (the run reads it once).
        run.hint = self.hint_at.take().and_then(|i| self.hints.get(i)).and_then(Option::as_ref);
        self.runner.run(self.net, &self.hooks, run, pkt)
    }

    /// How a packet arriving on `arrives` runs: where it enters (one arriving on a loopback
    /// interface was sent by the host), at `t` on `clock`.
    fn packet_run(&self, pkt: &[u8], t: u64, clock: PacketClock, arrives: Option<u32>) -> PacketRun<'static> {
        let mut ingress = ingress_for(self.path, self.net, pkt);
        let mut iif = None;
        if ingress == Ingress::Rcv {
            iif = arrives;
            if iif.and_then(|i| self.net.devices().by_index(i)).is_some_and(|d| d.loopback) {
                ingress = Ingress::LocalOut;
                iif = None;
            }
        }
        PacketRun { ingress, all_local: self.path == ReplayPath::LocalIn, tstamp: t, clock, iif, hint: None }
    }

    /// As [`Feeder::feed_on`], the packet's way recorded step by step into `trace` (built-in
    /// operations only: `nfct explain`).
    pub fn feed_traced(
        &mut self,
        pkt: &[u8],
        ts: u64,
        iface: Option<&str>,
        trace: &std::cell::RefCell<Vec<ip::TraceStep>>,
    ) -> Outcome {
        let t = self.time(ts);
        if self.clock == Clock::Capture {
            let now = self.net.advance_to(t);
            self.net.ct.gc_if_due(now);
        }
        let iif = self.iif_for(iface);
        let run = self.packet_run(pkt, t, PacketClock::Shared, iif);
        let cell = std::cell::RefCell::new(ip::Skb::default());
        let mut ext = ip::no_external;
        let mut out = ip::run_traced(self.net, &self.hooks, run, pkt, &cell, &mut ext, trace);
        let mut st = cell.into_inner();
        self.net.ct.release(&mut st.ct);
        out.data = st.whole;
        out
    }

    /// Warms the cache lines the lookups of a window of records will touch (None: a record
    /// without an IP packet), keeping each packet's tuple hash for [`Feeder::take_hint`].
    #[inline]
    pub fn prefetch_hinted<'p>(&mut self, pkts: impl Iterator<Item = Option<&'p [u8]>>) {
        self.net.ct.prefetch_hinted(pkts, &mut self.hints);
    }

    /// The next packet run uses the hash `prefetch_hinted` computed for record `i` of the window.
    #[inline]
    pub fn take_hint(&mut self, i: usize) {
        self.hint_at = Some(i);
    }
}

impl Replay<'_> {
    /// Replays the captures in order through `net`. On a capture error, what was read before
    /// it stays applied to the table and counted in the summary.
    pub fn run(&mut self, net: &Net, paths: &[&Path], summary: &mut Summary) -> Result<(), ReplayError> {
        let mut feeder = Feeder::new(net, self.path, self.clock);
        feeder.set_iif(self.iif);
        self.run_with(&mut feeder, paths, summary)
    }

    /// As [`Replay::run`], each packet fed through `feeder`.
    pub fn run_with<R: Runner>(
        &mut self,
        feeder: &mut Feeder<'_, R>,
        paths: &[&Path],
        summary: &mut Summary,
    ) -> Result<(), ReplayError> {
        let net = feeder.net;
        if self.events_out.is_some() {
            net.ct.events.listen(true, crate::events::DEFAULT_CAPACITY);
        }
        let mut line = String::new();
        if let Some(w) = self.sent_out.as_mut() {
            capture::write_pcap_header(*w).map_err(ReplayError::Output)?;
        }
        self.actions.sort_by_key(|(t, _)| *t);
        let mut next_action = 0usize;
        let res = self.run_captures(feeder, paths, summary, &mut next_action, &mut line);
        if let Some(o) = self.observer.as_mut() {
            o.finish(net).map_err(ReplayError::Hook)?;
        }
        res
    }

    fn run_captures<R: Runner>(
        &mut self,
        feeder: &mut Feeder<'_, R>,
        paths: &[&Path],
        summary: &mut Summary,
        next_action: &mut usize,
        line: &mut String,
    ) -> Result<(), ReplayError> {
        let net = feeder.net;
        // Records are staged BULK at a time (their IP bytes copied out of the reader's buffer)
        // so that the lookups of a batch are prefetched before its packets run, as
        // `conntrack_batch` and the threaded workers do; they then run one by one in order.
        let mut staged = Staged::default();
        for (ci, path) in paths.iter().enumerate() {
            let mut cap = Capture::open(path).map_err(ReplayError::Capture)?;
            let name = path.display().to_string();
            let name = self.name_prefix.then_some(name.as_str());
            let mut st = RunState::default();
            // The defrag counters are read around the capture, not per packet (they sit behind
            // the defrag lock, which non-fragments never take).
            let defrag_before = net.defrag.counters();
            let res = cap.for_each(|rec| {
                if st.hook_err.is_some() || st.stopped.is_some() {
                    return;
                }
                staged.push(rec);
                if staged.items.len() >= BULK {
                    self.run_staged(feeder, &mut staged, ci, name, summary, next_action, line, &mut st);
                }
            });
            self.run_staged(feeder, &mut staged, ci, name, summary, next_action, line, &mut st);
            summary.add_defrag(defrag_before, net.defrag.counters());
            if let Some(w) = self.packets_out.as_mut() {
                w.flush().map_err(ReplayError::Output)?;
            }
            if let Some(w) = self.events_out.as_mut() {
                w.flush().map_err(ReplayError::Output)?;
            }
            if let Some(w) = self.sent_out.as_mut() {
                w.flush().map_err(ReplayError::Output)?;
            }
            if let Some(e) = st.hook_err {
                return Err(ReplayError::Hook(e));
            }
            if let Some(e) = st.stopped {
                return Err(ReplayError::Interrupted(e));
            }
            if let Some(t) = self.tick.as_mut() {
                t(summary.frames, summary.packets).map_err(ReplayError::Interrupted)?;
            }
            if let Some(e) = st.out_err {
                return Err(ReplayError::Output(e));
            }
            res.map_err(ReplayError::Capture)?;
        }
        // Actions after the last packet.
        while let Some((t, act)) = self.actions.get_mut(*next_action) {
            *next_action += 1;
            run_action(feeder, *t, act).map_err(ReplayError::Hook)?;
        }
        Ok(())
    }

    /// Runs the staged records in order (after prefetching their lookups) and empties the
    /// stage: per record the tick, the actions due, the packet through the stack, and what the
    /// replay writes or hands on about it. Stops at the first error, which `st` keeps.
    #[allow(clippy::too_many_arguments)]
    fn run_staged<R: Runner>(
        &mut self,
        feeder: &mut Feeder<'_, R>,
        staged: &mut Staged,
        ci: usize,
        name: Option<&str>,
        summary: &mut Summary,
        next_action: &mut usize,
        line: &mut String,
        st: &mut RunState,
    ) {
        let net = feeder.net;
        feeder.prefetch_hinted(staged.items.iter().map(|it| it.ip.map(|(a, b)| &staged.buf[a..b])));
        for (i, it) in staged.items.iter().enumerate() {
            if st.hook_err.is_some() || st.stopped.is_some() {
                break;
            }
            if it.index % TICK == 0 {
                if let Some(t) = self.tick.as_mut() {
                    if let Err(e) = t(summary.frames, summary.packets) {
                        st.stopped = Some(e);
                        break;
                    }
                }
            }
            let ts = it.ts;
            while *next_action < self.actions.len() && self.actions[*next_action].0 <= ts {
                let (t, act) = &mut self.actions[*next_action];
                *next_action += 1;
                if let Err(e) = run_action(feeder, *t, act) {
                    st.hook_err = Some(e);
                    break;
                }
            }
            if st.hook_err.is_some() {
                break;
            }
            summary.frames += 1;
            let Some((a, b)) = it.ip else {
                summary.not_ip(it.linktype);
                continue;
            };
            summary.packets += 1;
            let pkt = &staged.buf[a..b];
            feeder.take_hint(i);
            let mut out = feeder.feed_on(pkt, ts, it.iface.as_deref());
            if let Some(e) = out.error.take() {
                st.hook_err = Some(e);
                break;
            }
            summary.record(&out);
            if let Some(o) = self.observer.as_mut() {
                if let Err(e) = o.packet(net, ci, it.index, ts, pkt, &out) {
                    st.hook_err = Some(e);
                    break;
                }
            }
            if let (Some(w), None) = (self.events_out.as_mut(), st.out_err.as_ref()) {
                net.ct.events.drain(|ev| {
                    line.clear();
                    ev.line(self.event_timestamps, line);
                    line.push('\n');
                    if let Err(e) = w.write_all(line.as_bytes()) {
                        st.out_err.get_or_insert(e);
                    }
                });
            }
            if let (Some(w), None) = (self.sent_out.as_mut(), st.out_err.as_ref()) {
                if let Some(bytes) = sent_bytes(&out, pkt) {
                    if let Err(e) = capture::write_pcap_record(*w, ts, bytes) {
                        st.out_err = Some(e);
                    }
                }
            }
            if let (Some(w), None) = (self.packets_out.as_mut(), st.out_err.as_ref()) {
                let (class, reason) = out.class();
                let by = out.dropped_by_name();
                if let Err(e) = write_line(*w, name, it.index, class, reason, by.as_deref()) {
                    st.out_err = Some(e);
                }
            }
        }
        staged.clear();
    }
}

/// What stopped a capture's replay, if anything.
#[derive(Default)]
struct RunState {
    out_err: Option<std::io::Error>,
    hook_err: Option<ip::ExtError>,
    stopped: Option<ip::ExtError>,
}

/// Capture records waiting to run: their IP bytes (copied out of the reader's buffer).
#[derive(Default)]
struct Staged {
    buf: Vec<u8>,
    items: Vec<StagedRecord>,
}

struct StagedRecord {
    index: u64,
    ts: u64,
    /// Where its IP packet is in the buffer; None for a record that carries none.
    ip: Option<(usize, usize)>,
    linktype: u32,
    iface: Option<Box<str>>,
}

impl Staged {
    fn push(&mut self, rec: &capture::Record<'_>) {
        let ip = ip_of(rec).map(|pkt| {
            let a = self.buf.len();
            self.buf.extend_from_slice(pkt);
            (a, self.buf.len())
        });
        self.items.push(StagedRecord {
            index: rec.index,
            ts: u64::try_from(rec.ts_ns).unwrap_or(0),
            ip,
            linktype: rec.linktype,
            iface: rec.iface.map(Box::from),
        });
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.items.clear();
    }
}

/// The IP packet a capture record carries for the IP stack, if any. IP inside MPLS is
/// label-switched, not seen by the IP hooks of a router that does not terminate MPLS (the
/// kernel harness does not feed it either).
fn ip_of<'a>(rec: &capture::Record<'a>) -> Option<&'a [u8]> {
    link::ip_payload_encap(rec.linktype, rec.data).filter(|(_, e)| e.mpls_labels == 0).map(|(p, _)| p)
}

/// Runs an action at capture time `t`: the namespace's clock first moves there (on the
/// capture clock, with the collector's passes due by then), then the hooks are taken anew.
fn run_action<R: Runner>(
    feeder: &mut Feeder<'_, R>,
    t: u64,
    act: &mut Action<'_>,
) -> Result<(), ip::ExtError> {
    let net = feeder.net;
    if feeder.clock == Clock::Capture {
        let now = net.advance_to(t);
        net.ct.gc_if_due(now);
    }
    let r = act(net);
    feeder.refresh_hooks();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_without_ip_by_link_type() {
        let mut s = Summary::default();
        s.not_ip(link::LINKTYPE_ETHERNET); // ARP, say: not IP
        s.not_ip(105); // IEEE 802.11: never looked into
        s.not_ip(105);
        s.not_ip(147); // USER0
        assert_eq!((s.non_ip, s.unsupported_link), (1, 3));
        assert_eq!(s.unsupported_links, BTreeMap::from([(105, 2), (147, 1)]));
        let mut t = Summary::default();
        t.not_ip(105);
        t.not_ip(link::LINKTYPE_RAW);
        s.merge(t);
        assert_eq!((s.non_ip, s.unsupported_link), (2, 4));
        assert_eq!(s.unsupported_links, BTreeMap::from([(105, 3), (147, 1)]));
    }
}
