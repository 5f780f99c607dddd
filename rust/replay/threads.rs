//! Replay on several threads sharing one table, as RSS spreads packets over CPUs: every
//! worker reads the captures itself and takes its own share of the packets by a symmetric
//! hash of their flow ([`flow_hash`]: both directions of a flow, the fragments of a datagram
//! and the ICMP errors quoting it go to the same worker, so per-flow order is kept), with no
//! reading thread or queue between (reading a record's header costs far less than handing the
//! packet over); every worker runs the same pipeline on the one lock-striped table, its own
//! packets staged and their lookups prefetched 32 at a time.
//!
//! On the capture clock each worker runs its packets at its own (monotonic) time, the
//! running maximum of the capture's timestamps in capture order (what one thread would use),
//! so a flow's timeouts come from its own packets whichever worker is ahead; the collector
//! reaps only what expired before the time every worker has reached (expired entries are
//! still reaped by the lookups that meet them and by listings, as with one thread).
//!
//! What may differ from one thread (as it may on a multi-CPU kernel): which of two racing
//! packets creates an entry (clashes), which entries `early_drop` evicts when the table is
//! full (the collector may have run later), and an ICMP error racing the flow it quotes
//! (hashed on its own addresses).

use super::{ip_of, resolve_iif, write_line, Clock, Feeder, ReplayError, ReplayPath, Summary};
use crate::ip::{Class, PacketClock};
use crate::net::Net;
use crate::replay::capture::{Capture, CaptureError};
use crate::table::BULK;
use crate::wire::rss::flow_hash;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A worker's result for one packet (kept only when per-packet lines are wanted).
struct Line {
    seq: u64,
    capture: u32,
    frame: u64,
    class: Class,
    reason: Option<&'static str>,
    dropped_by: Option<String>,
}

/// A worker's clock, alone on its cache line (each worker writes its own per packet).
#[repr(align(64))]
#[derive(Default)]
struct WorkerClock(AtomicU64);

/// The time every worker has reached: the collector may reap what expired before it.
fn watermark(clocks: &[WorkerClock]) -> u64 {
    clocks.iter().map(|c| c.0.load(Ordering::Relaxed)).min().unwrap_or(0)
}

/// What every worker shares: the settings, the clocks, the frames read (by worker 0, for the
/// progress), and the flag that stops them all.
struct Shared<'a> {
    net: &'a Net,
    paths: &'a [&'a Path],
    path: ReplayPath,
    clock: Clock,
    fixed_iif: Option<u32>,
    keep_lines: bool,
    threads: usize,
    clocks: &'a [WorkerClock],
    /// The namespace's clock when the replay began (each worker's running maximum starts
    /// there, not wherever the other workers have moved it by the time it starts).
    start: u64,
    frames: AtomicU64,
    packets: AtomicU64,
    stop: AtomicBool,
}

/// One of this worker's packets, staged.
struct Own {
    seq: u64,
    capture: u32,
    frame: u64,
    ts: u64,
    iif: Option<u32>,
    start: usize,
    end: usize,
}

/// What a worker brings back: its packets' summary (worker 0 also counts every frame), its
/// lines, and the capture error it met (every worker meets the same one).
struct WorkerResult {
    summary: Summary,
    lines: Vec<Line>,
    read_err: Option<CaptureError>,
}

fn worker(sh: &Shared<'_>, me: usize) -> WorkerResult {
    let net = sh.net;
    let mut feeder = Feeder::new(net, sh.path, sh.clock);
    let mut res = WorkerResult { summary: Summary::default(), lines: Vec::new(), read_err: None };
    let mut local = 0u64;
    let mut running = sh.start;
    let mut frozen_at: Option<u64> = None;
    let mut seq = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut own: Vec<Own> = Vec::new();
    let mut run = |buf: &mut Vec<u8>, own: &mut Vec<Own>, res: &mut WorkerResult| {
        let Some(first) = own.first() else { return };
        feeder.prefetch_hinted(own.iter().map(|o| Some(&buf[o.start..o.end])));
        // The shared clocks move once per batch, not per packet (per packet, the workers
        // would take their cache lines from each other): this worker publishes the time of
        // the batch's first packet (its packets' times only grow), so the watermark, and the
        // collector's and the defrag sweep's horizon, lag by at most a batch, never run ahead.
        let published = (sh.clock == Clock::Capture).then(|| {
            sh.clocks[me].0.store(local.max(first.ts), Ordering::Relaxed);
            let horizon = watermark(sh.clocks);
            net.ct.gc_if_due(horizon);
            horizon
        });
        for (i, o) in own.iter().enumerate() {
            let pkt = &buf[o.start..o.end];
            local = local.max(o.ts);
            let horizon = published.unwrap_or(local);
            // Built-in operations only (the caller refuses Python hooks with threads).
            feeder.take_hint(i);
            let out = feeder.run_via(pkt, local, PacketClock::Worker { horizon }, o.iif);
            if out.error.is_some() {
                continue;
            }
            res.summary.record(&out);
            if sh.keep_lines {
                let (class, reason) = out.class();
                res.lines.push(Line {
                    seq: o.seq,
                    capture: o.capture,
                    frame: o.frame,
                    class,
                    reason,
                    dropped_by: out.dropped_by_name(),
                });
            }
        }
        net.advance_to(local);
        buf.clear();
        own.clear();
    };
    'captures: for (ci, p) in sh.paths.iter().enumerate() {
        let mut cap = match Capture::open(p) {
            Ok(c) => c,
            Err(e) => {
                res.read_err = Some(e);
                break;
            }
        };
        let read = cap.for_each(|rec| {
            if sh.stop.load(Ordering::Relaxed) {
                return;
            }
            if me == 0 {
                res.summary.frames += 1;
                if rec.index.is_multiple_of(1024) {
                    sh.frames.store(res.summary.frames, Ordering::Relaxed);
                }
            }
            let Some(pkt) = ip_of(rec) else {
                if me == 0 {
                    res.summary.not_ip(rec.linktype);
                }
                return;
            };
            let ts = u64::try_from(rec.ts_ns).unwrap_or(0);
            // The time this packet has with one thread: the running maximum (the clock never
            // goes back) in capture order, which every worker sees whole.
            let ts = match sh.clock {
                Clock::Capture => {
                    running = running.max(ts);
                    running
                }
                Clock::Frozen => *frozen_at.get_or_insert(ts),
            };
            let this = seq;
            seq += 1;
            if me == 0 && this.is_multiple_of(1024) {
                sh.packets.store(this, Ordering::Relaxed);
            }
            if (flow_hash(pkt) % sh.threads as u64) as usize != me {
                return;
            }
            res.summary.packets += 1;
            let start = buf.len();
            buf.extend_from_slice(pkt);
            own.push(Own {
                seq: this,
                capture: ci as u32,
                frame: rec.index,
                ts,
                iif: resolve_iif(net, sh.fixed_iif, rec.iface),
                start,
                end: buf.len(),
            });
            if own.len() >= BULK {
                run(&mut buf, &mut own, &mut res);
            }
        });
        run(&mut buf, &mut own, &mut res);
        if let Err(e) = read {
            res.read_err = Some(e);
            break 'captures;
        }
        if sh.stop.load(Ordering::Relaxed) {
            break;
        }
    }
    // Done: this worker no longer holds the collector back.
    sh.clocks[me].0.store(u64::MAX, Ordering::Relaxed);
    res
}

impl super::Replay<'_> {
    /// Replays on `threads` workers sharing `net` (see the module's documentation). Per-packet
    /// lines come out in capture order; event output needs one thread.
    pub fn run_threads(
        &mut self,
        net: &Net,
        paths: &[&Path],
        summary: &mut Summary,
        threads: usize,
    ) -> Result<(), ReplayError> {
        if threads <= 1 || self.sent_out.is_some() || !self.actions.is_empty() || self.observer.is_some() {
            // The packets that leave are written in capture order, and actions happen between
            // two packets: by one thread.
            return self.run(net, paths, summary);
        }
        let defrag_before = net.defrag.counters();
        let clocks: Vec<WorkerClock> = (0..threads).map(|_| WorkerClock::default()).collect();
        let sh = Shared {
            net,
            paths,
            path: self.path,
            clock: self.clock,
            fixed_iif: self.iif,
            keep_lines: self.packets_out.is_some(),
            threads,
            clocks: &clocks,
            start: net.now(),
            frames: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        };
        let mut tick = self.tick.take();
        let mut stopped: Option<crate::ip::ExtError> = None;
        let (results, failed) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|me| {
                    s.spawn({
                        let sh = &sh;
                        move || worker(sh, me)
                    })
                })
                .collect();
            // This thread watches: progress and the caller's chance to stop, about every
            // 5 ms, until the workers are done.
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if stopped.is_none() {
                    if let Some(t) = tick.as_mut() {
                        let (f, p) = (sh.frames.load(Ordering::Relaxed), sh.packets.load(Ordering::Relaxed));
                        if let Err(e) = t(f, p) {
                            stopped = Some(e);
                            sh.stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            let mut results = Vec::new();
            let mut failed = false;
            for h in handles {
                match h.join() {
                    Ok(r) => results.push(r),
                    // Never silently lose a worker's packets: the replay fails instead.
                    Err(_) => failed = true,
                }
            }
            (results, failed)
        });
        self.tick = tick;
        if failed {
            return Err(ReplayError::Internal("a replay worker thread panicked"));
        }
        let mut read_err = None;
        let mut lines = Vec::new();
        let mut done = Summary::default();
        for (i, r) in results.into_iter().enumerate() {
            done.merge(r.summary);
            lines.extend(r.lines);
            if i == 0 {
                read_err = r.read_err;
            }
        }
        summary.merge(done);
        summary.add_defrag(defrag_before, net.defrag.counters());
        if let Some(w) = self.packets_out.as_mut() {
            let mut lines = lines;
            lines.sort_unstable_by_key(|l| l.seq);
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            for l in &lines {
                let name = self.name_prefix.then(|| names[l.capture as usize].as_str());
                write_line(*w, name, l.frame, l.class, l.reason, l.dropped_by.as_deref())
                    .map_err(ReplayError::Output)?;
            }
            w.flush().map_err(ReplayError::Output)?;
        }
        if let Some(e) = stopped {
            return Err(ReplayError::Interrupted(e));
        }
        match read_err {
            Some(e) => Err(ReplayError::Capture(e)),
            None => Ok(()),
        }
    }
}
