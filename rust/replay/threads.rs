//! Replay on several threads sharing one table, as RSS spreads packets over CPUs: the reading
//! thread hashes each packet's flow symmetrically ([`flow_hash`]: both directions of a flow,
//! the fragments of a datagram and the ICMP errors quoting it go to the same worker, so
//! per-flow order is kept) and hands packets to the workers in batches; every worker runs the
//! same pipeline on the one lock-striped table.
//!
//! On the capture clock each worker runs its packets at its own (monotonic) time, so a flow's
//! timeouts come from its own packets whichever worker is ahead; the collector reaps only what
//! expired before the time every worker has reached (expired entries are still reaped by the
//! lookups that meet them and by listings, as with one thread).
//!
//! What may differ from one thread (as it may on a multi-CPU kernel): which of two racing
//! packets creates an entry (clashes), which entries `early_drop` evicts when the table is
//! full (the collector may have run later), and an ICMP error racing the flow it quotes
//! (hashed on its own addresses).

use super::{resolve_iif, write_line, Clock, Feeder, ReplayError, ReplayPath, Summary};
use crate::ip::{Class, PacketClock};
use crate::net::Net;
use crate::replay::capture::Capture;
use crate::table::BULK;
use crate::wire::rss::flow_hash;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Packets per batch handed to a worker.
const BATCH: usize = 256;
/// Batches in flight per worker.
const DEPTH: usize = 8;

/// One packet of a batch: where it came from and where its bytes are in the batch buffer.
struct Item {
    seq: u64,
    capture: u32,
    frame: u64,
    ts: u64,
    /// The interface it arrives on (resolved by the reader).
    iif: Option<u32>,
    start: usize,
    end: usize,
}

#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    items: Vec<Item>,
}

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

fn worker(
    net: &Net,
    path: ReplayPath,
    clock: Clock,
    keep_lines: bool,
    rx: Receiver<Batch>,
    clocks: &[WorkerClock],
    me: usize,
) -> (Summary, Vec<Line>) {
    let mut feeder = Feeder::new(net, path, clock);
    let mut summary = Summary::default();
    let mut lines = Vec::new();
    // Each packet runs at its own worker's clock (monotonic, as jiffies are), so a flow's
    // timeouts come from its own packets' times whatever the other workers are at.
    let mut local = 0u64;
    for batch in rx {
        for (w, it) in batch.items.iter().enumerate() {
            if w % BULK == 0 {
                let end = (w + BULK).min(batch.items.len());
                feeder.prefetch(batch.items[w..end].iter().map(|i| &batch.buf[i.start..i.end]));
            }
            let pkt = &batch.buf[it.start..it.end];
            local = local.max(it.ts);
            let horizon = if clock == Clock::Capture {
                if clocks[me].0.load(Ordering::Relaxed) != local {
                    clocks[me].0.store(local, Ordering::Relaxed);
                }
                net.advance_to(local);
                let horizon = watermark(clocks);
                net.ct.gc_if_due(horizon);
                horizon
            } else {
                local
            };
            // Built-in operations only (the caller refuses Python hooks with threads).
            let out = feeder.run_via(pkt, local, PacketClock::Worker { horizon }, it.iif);
            if out.error.is_some() {
                continue;
            }
            summary.record(&out);
            if keep_lines {
                let (class, reason) = out.class();
                lines.push(Line {
                    seq: it.seq,
                    capture: it.capture,
                    frame: it.frame,
                    class,
                    reason,
                    dropped_by: out.dropped_by_name(),
                });
            }
        }
    }
    // Done: this worker no longer holds the collector back.
    clocks[me].0.store(u64::MAX, Ordering::Relaxed);
    (summary, lines)
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
        let keep_lines = self.packets_out.is_some();
        let (clock, path, fixed_iif) = (self.clock, self.path, self.iif);
        let defrag_before = net.defrag.counters();
        let mut frozen_at: Option<u64> = None;
        let mut running = net.now();
        let mut read_err = None;
        let mut stopped: Option<crate::ip::ExtError> = None;
        let mut tick = self.tick.take();
        let clocks: Vec<WorkerClock> = (0..threads).map(|_| WorkerClock::default()).collect();
        let clocks = &clocks[..];
        let (done, lines, failed) = std::thread::scope(|s| {
            let mut txs: Vec<SyncSender<Batch>> = Vec::new();
            let mut handles = Vec::new();
            for me in 0..threads {
                let (tx, rx) = sync_channel::<Batch>(DEPTH);
                txs.push(tx);
                handles.push(s.spawn(move || worker(net, path, clock, keep_lines, rx, clocks, me)));
            }
            let mut pending: Vec<Batch> = (0..threads).map(|_| Batch::default()).collect();
            let mut seq = 0u64;
            for (ci, p) in paths.iter().enumerate() {
                let mut cap = match Capture::open(p) {
                    Ok(c) => c,
                    Err(e) => {
                        read_err = Some(e);
                        break;
                    }
                };
                let res = cap.for_each(|rec| {
                    if stopped.is_some() {
                        return;
                    }
                    if rec.index % super::TICK == 0 {
                        if let Some(t) = tick.as_mut() {
                            if let Err(e) = t(summary.frames, summary.packets) {
                                stopped = Some(e);
                                return;
                            }
                        }
                    }
                    let Some(pkt) = summary.ip_packet(rec) else { return };
                    let ts = u64::try_from(rec.ts_ns).unwrap_or(0);
                    // The time this packet has with one thread: the running maximum (the clock
                    // never goes back), fixed here in capture order for whichever worker runs it.
                    let ts = match clock {
                        Clock::Capture => {
                            running = running.max(ts);
                            running
                        }
                        Clock::Frozen => *frozen_at.get_or_insert(ts),
                    };
                    let w = (flow_hash(pkt) % threads as u64) as usize;
                    let b = &mut pending[w];
                    let start = b.buf.len();
                    b.buf.extend_from_slice(pkt);
                    b.items.push(Item {
                        seq,
                        capture: ci as u32,
                        frame: rec.index,
                        ts,
                        iif: resolve_iif(net, fixed_iif, rec.iface),
                        start,
                        end: b.buf.len(),
                    });
                    seq += 1;
                    if b.items.len() == BATCH {
                        // A worker that died has its error reported at the join below.
                        let _ = txs[w].send(std::mem::take(b));
                    }
                });
                if let Err(e) = res {
                    read_err = Some(e);
                    break;
                }
                if stopped.is_some() {
                    break;
                }
            }
            for (tx, b) in txs.iter().zip(pending) {
                if !b.items.is_empty() {
                    let _ = tx.send(b);
                }
            }
            drop(txs);
            let mut all = Summary::default();
            let mut lines = Vec::new();
            let mut failed = false;
            for h in handles {
                match h.join() {
                    Ok((s, l)) => {
                        all.merge(s);
                        lines.extend(l);
                    }
                    // Never silently lose a worker's packets: the replay fails instead.
                    Err(_) => failed = true,
                }
            }
            (all, lines, failed)
        });
        summary.merge(done);
        summary.add_defrag(defrag_before, net.defrag.counters());
        if failed {
            return Err(ReplayError::Internal("a replay worker thread panicked"));
        }
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
