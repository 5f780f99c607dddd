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

use super::{entry_for, Builtins, Clock, Driver, ReplayError, ReplayPath, Summary};
use crate::core::{Class, Net};
use crate::hooks::Op;
use crate::replay::capture::Capture;
use crate::table::BULK;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

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
    dropped_by: Option<Arc<Op>>,
}

/// The symmetric hash that picks a packet's worker. Both directions of a flow hash alike;
/// TCP, SCTP and DCCP on their ports as well as addresses (RSS's 4-tuple), everything else on
/// protocol and addresses only, so the fragments of a UDP datagram stay with the rest of their
/// flow; an ICMP or ICMPv6 error hashes as the packet it quotes, so it is tracked after the flow
/// it belongs to, as it arrives after it on the wire.
pub fn flow_hash(pkt: &[u8]) -> u64 {
    flow_hash_depth(pkt, 0)
}

fn flow_hash_depth(pkt: &[u8], depth: u8) -> u64 {
    let (proto, src, dst, l4, frag) = match pkt.first().map(|b| b >> 4) {
        Some(4) if pkt.len() >= 20 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0;
            (pkt[9], &pkt[12..16], &pkt[16..20], pkt.get(ihl..).unwrap_or(&[]), frag)
        }
        Some(6) if pkt.len() >= 40 => (pkt[6], &pkt[8..24], &pkt[24..40], &pkt[40..], false),
        _ => return 0,
    };
    let error = match proto {
        1 => l4.first().is_some_and(|&t| matches!(t, 3 | 4 | 5 | 11 | 12)),
        58 => l4.first().is_some_and(|&t| (1..=4).contains(&t)),
        _ => false,
    };
    if error && !frag && depth == 0 && l4.len() > 8 {
        return flow_hash_depth(&l4[8..], 1);
    }
    let ports = (matches!(proto, 6 | 132 | 33) && !frag).then(|| l4.get(..4)).flatten();
    let (sp, dp) = ports.map_or((&[][..], &[][..]), |p| (&p[..2], &p[2..4]));
    let (a, b) = if (src, sp) <= (dst, dp) { ((src, sp), (dst, dp)) } else { ((dst, dp), (src, sp)) };
    // FNV-1a over the canonical order.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in [proto].iter().chain(a.0).chain(a.1).chain(b.0).chain(b.1) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A worker's clock, alone on its cache line (each worker writes its own per packet).
#[repr(align(64))]
#[derive(Default)]
struct WorkerClock(AtomicU64);

/// The time every worker has reached: the collector may reap what expired before it.
fn watermark(clocks: &[WorkerClock]) -> u64 {
    clocks.iter().map(|c| c.0.load(Ordering::Relaxed)).min().unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn worker(
    net: &Net,
    path: ReplayPath,
    clock: Clock,
    keep_lines: bool,
    rx: Receiver<Batch>,
    clocks: &[WorkerClock],
    me: usize,
) -> (Summary, Vec<Line>) {
    let table = net.stack.snapshot();
    let all_local = path == ReplayPath::LocalIn;
    let mut summary = Summary::default();
    let mut lines = Vec::new();
    // Each packet runs at its own worker's clock (monotonic, as jiffies are), so a flow's
    // timeouts come from its own packets' times whatever the other workers are at.
    let mut driver = Builtins { horizon: Some(0) };
    let mut local = 0u64;
    for batch in rx {
        for (w, it) in batch.items.iter().enumerate() {
            if w % BULK == 0 {
                // Warm what the next window's lookups will touch (a hint only).
                let end = (w + BULK).min(batch.items.len());
                std::hint::black_box(
                    net.prefetch_window(batch.items[w..end].iter().map(|i| &batch.buf[i.start..i.end])),
                );
            }
            let pkt = &batch.buf[it.start..it.end];
            local = local.max(it.ts);
            if clock == Clock::Capture {
                if clocks[me].0.load(Ordering::Relaxed) != local {
                    clocks[me].0.store(local, Ordering::Relaxed);
                }
                net.advance(local);
                let horizon = watermark(clocks);
                net.gc_if_due_at(horizon);
                driver.horizon = Some(horizon);
            } else {
                driver.horizon = Some(local);
            }
            let entry = entry_for(path, net, pkt);
            // Built-in operations only (the caller refuses Python hooks with threads).
            let Ok(p) = driver.packet(net, &table, entry, all_local, pkt, local) else { continue };
            summary.count(p.class, p.reason);
            if let Some(op) = &p.dropped_by {
                *summary.dropped_by.entry(op.name.to_string()).or_insert(0) += 1;
            }
            if keep_lines {
                lines.push(Line {
                    seq: it.seq,
                    capture: it.capture,
                    frame: it.frame,
                    class: p.class,
                    reason: p.reason,
                    dropped_by: p.dropped_by,
                });
            }
        }
    }
    // Done: this worker no longer holds the collector back.
    clocks[me].0.store(u64::MAX, Ordering::Relaxed);
    (summary, lines)
}

impl Summary {
    fn merge(&mut self, o: Summary) {
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
        if threads <= 1 {
            return self.run(net, paths, summary);
        }
        let keep_lines = self.packets_out.is_some();
        let (clock, path) = (self.clock, self.path);
        let defrag_before = net.defrag.counters();
        let mut frozen_at: Option<u64> = None;
        let mut running = net.now();
        let mut read_err = None;
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
                let r = if self.name_prefix {
                    write!(w, "{}:{} {}", names[l.capture as usize], l.frame, l.class.name())
                } else {
                    write!(w, "{} {}", l.frame, l.class.name())
                };
                r.and_then(|_| super::write_reason(w, l.class, l.reason, l.dropped_by.as_deref()))
                    .map_err(ReplayError::Output)?;
            }
            w.flush().map_err(ReplayError::Output)?;
        }
        match read_err {
            Some(e) => Err(ReplayError::Capture(e)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flow_hash;

    #[test]
    fn symmetric_and_fragments_together() {
        let mut a = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        a.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0, 0, 0, 0, 0, 0]);
        let mut b = a.clone();
        b[12..16].copy_from_slice(&[10, 0, 0, 2]);
        b[16..20].copy_from_slice(&[10, 0, 0, 1]);
        b[20..24].copy_from_slice(&[0, 80, 0x30, 0x39]);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        let mut other = a.clone();
        other[21] = 0x3a;
        assert_ne!(flow_hash(&a), flow_hash(&other));
        // UDP: addresses only, so a non-first fragment goes with its flow.
        let mut udp = a.clone();
        udp[9] = 17;
        let mut later = udp.clone();
        later[7] = 0x03;
        later[20..24].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(flow_hash(&udp), flow_hash(&later));
        // An ICMP error from a router goes where the packet it quotes went.
        let mut err = vec![0x45, 0, 0, 68, 0, 2, 0, 0, 64, 1, 0, 0, 10, 9, 9, 9, 10, 0, 0, 1];
        err.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        err.extend_from_slice(&a);
        assert_eq!(flow_hash(&err), flow_hash(&b));
        assert_eq!(flow_hash(&[]), 0);
    }
}
