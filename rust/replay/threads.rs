//! Replay on several threads sharing one table, as RSS spreads packets over CPUs. There is no
//! reading thread: the workers take turns at the captures (whichever runs out of packets reads
//! the next chunk of records, under a lock), so every record is parsed and hashed once; each
//! packet goes to one worker by the range of buckets its flow hashes into (the table's keyed
//! hash, symmetric in its top bits: [`crate::core::Conntrack::flow_range`]; both directions of
//! a flow, the fragments of a datagram and the ICMP errors quoting it go to the same worker, so
//! per-flow order is kept), staged in that worker's queue; every worker runs the same pipeline
//! on the one lock-striped table, its own packets' lookups prefetched 32 at a time. Each worker
//! takes a run of the ranges, so the buckets, chains and lock stripes of its TCP, SCTP and DCCP
//! flows are its own; those of other protocols, which the worker choice takes by their
//! addresses alone (a datagram's later fragments carry no ports), are spread over all ranges
//! by their ports as the kernel spreads them, and shared.
//!
//! On the capture clock each worker runs its packets at its own (monotonic) time, the
//! running maximum of the capture's timestamps in capture order (what one thread would use,
//! computed by the reading side), so a flow's timeouts come from its own packets whichever
//! worker is ahead; the collector reaps only what expired before the time every worker has
//! reached (expired entries are still reaped by the lookups that meet them and by listings,
//! as with one thread).
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
use crate::tuple::RANGE_BITS;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A worker's result for one packet (kept only when per-packet lines are wanted).
struct Line {
    seq: u64,
    capture: u32,
    frame: u64,
    class: Class,
    reason: Option<&'static str>,
    dropped_by: Option<String>,
}

/// A worker's clock, alone on its cache line (each worker writes its own once per batch).
#[repr(align(64))]
#[derive(Default)]
struct WorkerClock(AtomicU64);

/// The time every worker has reached: the collector may reap what expired before it.
fn watermark(clocks: &[WorkerClock]) -> u64 {
    clocks.iter().map(|c| c.0.load(Ordering::Relaxed)).min().unwrap_or(0)
}

/// One of a worker's packets, staged: its time, where its bytes end in the batch's buffer
/// (they start where the previous packet's end), and the interface it arrived on. Small,
/// since the reading side writes one for every packet: 24 bytes.
struct Own {
    ts: u64,
    end: u32,
    iif: Option<u32>,
}

const _: () = assert!(std::mem::size_of::<Own>() == 24);

/// Where a packet came from, for its per-packet line (kept only when lines are wanted).
struct Origin {
    seq: u64,
    capture: u32,
    frame: u64,
}

/// A worker's packets from one chunk of records, in capture order.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    own: Vec<Own>,
    /// One per packet when per-packet lines are wanted, else empty.
    origin: Vec<Origin>,
}

impl Batch {
    /// The packets' bytes, in order.
    fn packets(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0usize;
        self.own.iter().map(move |o| {
            let end = o.end as usize;
            let p = &self.buf[start..end];
            start = end;
            p
        })
    }
}

/// Batches, and bytes of packets, a worker may have waiting before the reading side waits for
/// it to catch up: deep enough that a worker briefly slower than the other (descheduled, or
/// running the collector) does not stall it, bounded so that a flow that hashes to one worker
/// does not pile the capture up in memory. (At 64 batches, the faster worker waited for the
/// slower one about 570 times in a replay of `e2e_bench.py`'s capture, its wall time up by
/// half; at 1,024, never.)
const MAX_QUEUED: usize = 1024;
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Batches (of `BULK` packets) for each worker that one turn at the captures reads, so that a
/// worker usually finds work queued instead of waiting for the other's turn to end. (At 4,
/// two workers on two cores took about 3% longer on `e2e_bench.py`'s capture, in paired runs;
/// at 64, no faster than at 16.)
const TURN: usize = 16;

/// A worker's waiting batches and the bytes of their packets.
#[derive(Default)]
struct Waiting {
    batches: VecDeque<Batch>,
    bytes: usize,
}

impl Waiting {
    fn over(&self, div: usize) -> bool {
        self.batches.len() >= MAX_QUEUED / div || self.bytes >= MAX_QUEUED_BYTES / div
    }
}

/// A worker's queue, alone on its cache lines.
#[repr(align(64))]
#[derive(Default)]
struct Queue {
    waiting: Mutex<Waiting>,
    /// Signalled when the queue has drained below half of its bounds.
    drained: Condvar,
}

impl Queue {
    /// The first batch waiting, and how many are left.
    fn pop(&self) -> Option<(Batch, usize)> {
        let mut q = self.waiting.lock();
        let b = q.batches.pop_front()?;
        q.bytes -= b.buf.len();
        if !q.over(2) {
            self.drained.notify_all();
        }
        Some((b, q.batches.len()))
    }

    fn push(&self, list: Vec<Batch>) {
        let mut q = self.waiting.lock();
        for b in list {
            q.bytes += b.buf.len();
            q.batches.push_back(b);
        }
    }

    fn full(&self) -> bool {
        self.waiting.lock().over(1)
    }

    /// Waits (a millisecond at most: the caller looks again) for the queue to drain.
    fn wait_drained(&self) {
        let mut q = self.waiting.lock();
        if q.over(2) {
            self.drained.wait_for(&mut q, Duration::from_millis(1));
        }
    }
}

/// The reading side, taken in turn by whichever worker has run out of packets: the capture
/// open, where the clock is in capture order, and the frames it has counted.
struct Reader {
    /// Index of the capture open (or to open next) in the replay's list.
    at: usize,
    cap: Option<Capture>,
    /// The running maximum of the timestamps so far (the capture clock never goes back).
    running: u64,
    frozen_at: Option<u64>,
    /// IP packets handed out so far (each one's number, for per-packet lines in order).
    seq: u64,
    /// Every capture read (or reading stopped): the workers finish what is queued.
    done: bool,
    err: Option<CaptureError>,
    /// Frames read, and those that gave no IP packet.
    summary: Summary,
}

/// What every worker shares: the settings, the clocks, the reading side and the queues, the
/// progress so far, and the flag that stops them all.
struct Shared<'a> {
    net: &'a Net,
    paths: &'a [&'a Path],
    path: ReplayPath,
    clock: Clock,
    fixed_iif: Option<u32>,
    keep_lines: bool,
    threads: usize,
    clocks: &'a [WorkerClock],
    reader: Mutex<Reader>,
    queues: Vec<Queue>,
    /// Batches run and emptied, for the reading side to fill again (no allocation per batch).
    spare: Mutex<Vec<Batch>>,
    frames: AtomicU64,
    packets: AtomicU64,
    stop: AtomicBool,
}

impl Shared<'_> {
    /// The worker's next batch: from its queue, else read from the captures (by this worker,
    /// once no other is reading); None once every capture is read and its queue is empty.
    /// A worker whose queue runs low reads ahead when no other worker is reading, so that it
    /// seldom has to wait for another's turn at the captures to end.
    fn next_batch(&self, me: usize) -> Option<Batch> {
        loop {
            if let Some((b, left)) = self.queues[me].pop() {
                if left < TURN {
                    if let Some(mut r) = self.reader.try_lock() {
                        if !r.done && self.full_other(me).is_none() {
                            self.read_chunk(&mut r);
                        }
                    }
                }
                return Some(b);
            }
            let mut r = self.reader.lock();
            // Another worker may have read a chunk while this one waited for the lock.
            if let Some((b, _)) = self.queues[me].pop() {
                return Some(b);
            }
            if r.done {
                return None;
            }
            if self.stop.load(Ordering::Relaxed) {
                r.done = true;
                return None;
            }
            if let Some(other) = self.full_other(me) {
                drop(r);
                self.queues[other].wait_drained();
                continue;
            }
            self.read_chunk(&mut r);
        }
    }

    /// Another worker with as much waiting as it may have, if any.
    fn full_other(&self, me: usize) -> Option<usize> {
        (0..self.threads).find(|&w| w != me && self.queues[w].full())
    }

    /// An empty batch (a spare one when there is one).
    fn empty_batch(&self) -> Batch {
        self.spare.lock().pop().unwrap_or_default()
    }

    /// Reads the next records (about `TURN` batches for each worker) and queues every IP
    /// packet for the worker its flow hashes to, in batches of at most `BULK`.
    fn read_chunk(&self, r: &mut Reader) {
        if self.stop.load(Ordering::Relaxed) {
            r.done = true;
            return;
        }
        let want = (BULK * TURN * self.threads) as u64;
        let mut read = 0u64;
        let mut out: Vec<Batch> = (0..self.threads).map(|_| self.empty_batch()).collect();
        let mut full: Vec<Vec<Batch>> = (0..self.threads).map(|_| Vec::new()).collect();
        while read < want && !r.done {
            if r.cap.is_none() {
                let Some(p) = self.paths.get(r.at) else {
                    r.done = true;
                    break;
                };
                match Capture::open(p) {
                    Ok(c) => r.cap = Some(c),
                    Err(e) => {
                        r.err = Some(e);
                        r.done = true;
                        break;
                    }
                }
            }
            let Reader { at, cap, running, frozen_at, seq, summary, .. } = &mut *r;
            let Some(cap) = cap.as_mut() else { break };
            let ci = *at as u32;
            let more = cap.read_some(want - read, |rec| {
                read += 1;
                summary.frames += 1;
                let Some(pkt) = ip_of(rec) else {
                    summary.not_ip(rec.linktype);
                    return;
                };
                let ts = u64::try_from(rec.ts_ns).unwrap_or(0);
                // The time this packet has with one thread: the running maximum in capture
                // order.
                let ts = match self.clock {
                    Clock::Capture => {
                        *running = (*running).max(ts);
                        *running
                    }
                    Clock::Frozen => *frozen_at.get_or_insert(ts),
                };
                // Each worker takes a run of the table's bucket ranges, so that the buckets,
                // chains and lock stripes its flows use are its own.
                let w = (self.net.ct.flow_range(pkt) as usize * self.threads) >> RANGE_BITS;
                if out[w].own.len() >= BULK {
                    let next = self.empty_batch();
                    full[w].push(std::mem::replace(&mut out[w], next));
                }
                let b = &mut out[w];
                b.buf.extend_from_slice(pkt);
                // A batch holds at most BULK packets of at most a record's 64 MiB each: 2 GiB,
                // below u32::MAX.
                let end = u32::try_from(b.buf.len()).unwrap_or(u32::MAX);
                b.own.push(Own { ts, end, iif: resolve_iif(self.net, self.fixed_iif, rec.iface) });
                if self.keep_lines {
                    b.origin.push(Origin { seq: *seq, capture: ci, frame: rec.index });
                }
                *seq += 1;
            });
            match more {
                Ok(true) => {}
                Ok(false) => {
                    r.cap = None;
                    r.at += 1;
                }
                Err(e) => {
                    r.err = Some(e);
                    r.done = true;
                }
            }
        }
        for ((q, mut list), last) in self.queues.iter().zip(full).zip(out) {
            if last.own.is_empty() {
                self.spare.lock().push(last);
            } else {
                list.push(last);
            }
            if !list.is_empty() {
                q.push(list);
            }
        }
        self.frames.store(r.summary.frames, Ordering::Relaxed);
        self.packets.store(r.seq, Ordering::Relaxed);
    }
}

/// What a worker brings back: its packets' summary and its lines.
struct WorkerResult {
    summary: Summary,
    lines: Vec<Line>,
}

fn worker(sh: &Shared<'_>, me: usize, start: u64) -> WorkerResult {
    // This worker's new entries take slots from a free list of its own.
    crate::table::set_slab_home(me, sh.threads);
    let net = sh.net;
    let mut feeder = Feeder::new(net, sh.path, sh.clock);
    let mut res = WorkerResult { summary: Summary::default(), lines: Vec::new() };
    let mut local = start;
    while let Some(mut batch) = sh.next_batch(me) {
        let Some(first) = batch.own.first() else { continue };
        feeder.prefetch_hinted(batch.packets().map(Some));
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
        for (i, (o, pkt)) in batch.own.iter().zip(batch.packets()).enumerate() {
            local = local.max(o.ts);
            let horizon = published.unwrap_or(local);
            res.summary.packets += 1;
            // Built-in operations only (the caller refuses Python hooks with threads).
            feeder.take_hint(i);
            let out = feeder.run_via(pkt, local, PacketClock::Worker { horizon }, o.iif);
            if out.error.is_some() {
                continue;
            }
            res.summary.record(&out);
            if let Some(at) = batch.origin.get(i) {
                let (class, reason) = out.class();
                res.lines.push(Line {
                    seq: at.seq,
                    capture: at.capture,
                    frame: at.frame,
                    class,
                    reason,
                    dropped_by: out.dropped_by_name(),
                });
            }
        }
        net.advance_to(local);
        batch.buf.clear();
        batch.own.clear();
        batch.origin.clear();
        sh.spare.lock().push(batch);
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
        // Each worker's running maximum starts at the namespace's clock when the replay
        // began, not wherever the other workers have moved it by the time it starts.
        let start = net.now();
        let sh = Shared {
            net,
            paths,
            path: self.path,
            clock: self.clock,
            fixed_iif: self.iif,
            keep_lines: self.packets_out.is_some(),
            threads,
            clocks: &clocks,
            reader: Mutex::new(Reader {
                at: 0,
                cap: None,
                running: start,
                frozen_at: None,
                seq: 0,
                done: false,
                err: None,
                summary: Summary::default(),
            }),
            queues: (0..threads).map(|_| Queue::default()).collect(),
            spare: Mutex::new(Vec::new()),
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
                        move || worker(sh, me, start)
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
        let reader = sh.reader.into_inner();
        let read_err = reader.err;
        let mut lines = Vec::new();
        let mut done = reader.summary;
        for r in results {
            done.merge(r.summary);
            lines.extend(r.lines);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(packets: usize, bytes: usize) -> Batch {
        let own = (0..packets).map(|_| Own { ts: 0, end: 0, iif: None }).collect();
        Batch { buf: vec![0; bytes], own, origin: Vec::new() }
    }

    #[test]
    fn a_queue_is_full_at_either_bound_and_drains_below_half() {
        let q = Queue::default();
        q.push((0..MAX_QUEUED - 1).map(|_| batch(1, 10)).collect());
        assert!(!q.full());
        q.push(vec![batch(1, 10)]);
        assert!(q.full(), "as many batches as it may hold");
        while q.pop().is_some() {}
        assert_eq!(q.waiting.lock().bytes, 0);
        q.push(vec![batch(1, MAX_QUEUED_BYTES - 1)]);
        assert!(!q.full());
        q.push(vec![batch(1, 1)]);
        assert!(q.full(), "as many bytes as it may hold");
        assert_eq!(q.pop().map(|(b, left)| (b.buf.len(), left)), Some((MAX_QUEUED_BYTES - 1, 1)));
        assert!(!q.full());
        // A wait on a queue below half its bounds returns at once.
        let t = std::time::Instant::now();
        q.wait_drained();
        assert!(t.elapsed() < Duration::from_millis(500));
    }
}
