//! Criterion benchmarks of the conntrack core: `conntrack_in` at PRE_ROUTING, `confirm`, then
//! `release`, on one shared `Conntrack`, as a forwarding router runs them for every packet.
//!
//! Every flow here is IPv4 UDP (the table's cost, not a tracker's): 60-byte DNS-like datagrams
//! (20 IP + 8 UDP + 32 payload) built in memory with correct IP and UDP checksums. The table runs with `nf_conntrack_max = 0`
//! (unlimited, no early drop), `nf_conntrack_buckets = max(262144, table size)`, a fixed hash
//! seed, and a frozen clock (nothing expires while measuring).
//!
//! Groups, one `Conntrack` each (built on first use, so a filter skips the pre-fill too):
//!
//! * `udp_{10k,100k,1M}_csum1`: `nf_conntrack_checksum = 1` (the kernel default: the UDP checksum
//!   is verified at PRE_ROUTING). Benchmarks:
//!   - `new/{1,2}t`: every element is a packet of a flow the table has never seen, creating and
//!     confirming its entry, on a table pre-filled with the group's size. New flows are inserted in
//!     batches of `max(1000, size / 10)`; each batch is timed, then its entries are deleted
//!     untimed, so the table stays between size and size + 10%.
//!   - `existing/{1,2}t`: every element is a packet (either direction at random) of a flow chosen
//!     at random among the pre-filled ones (all already seen both ways).
//!   - With 2 threads, both share one `&Conntrack`; each takes half of the flows (its own new flows;
//!     the even or the odd pre-filled flows, as RSS would steer them), and the time is the wall
//!     time of both (the rate is the aggregate).
//!   - `existing_pf32/{1,2}t`: the same packets, but each window of 32 is first handed to
//!     `Conntrack::prefetch_packets` (parse, hash, prefetch bucket heads and first slots), then
//!     processed one by one as above.
//!   - `lookup/{single,bulk32}`: the table alone: hash a tuple of a random pre-filled flow
//!     (either direction) and `Table::find` it, one at a time, or 32 at a time through
//!     `Table::find_bulk` (all hashes first, then the prefetch, then the finds).
//! * `udp_{10k,100k,1M}_csum0`: the same with `nf_conntrack_checksum = 0`, 1 thread only.
//!
//! With `NFCT_BENCH_BATCH_STATS=1`, each `new` benchmark also prints the spread of its per-batch
//! rates (wall time of one batch over its size): on a shared machine a thread preempted in the
//! middle of a small batch stalls the other at the next barrier, and the median batch shows the
//! rate without those stalls.
//!
//! Before the benchmarks, the memory per entry is printed: the computed size (slab slot, nodes,
//! bucket heads) and the RSS growth from filling 1M entries (`/proc/self/status` VmRSS).
//!
//! `cargo bench --bench conntrack` runs everything (a few minutes). Under `cargo test --benches`
//! (criterion's test mode) the tables are tiny and the memory report is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark program: a failed setup should stop it

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use nfct::conn::Conn;
use nfct::core::{Conntrack as Net, CtOptions, CtRef, CtState, SkbCt};
use nfct::sysctl::{Sysctl, SysctlKey};
use nfct::table::{Found, Key, Slot, BULK};
use nfct::tuple::{HashHint, Tuple, Zone};
use nfct::uapi::{Hook, AF_INET, IPPROTO_UDP, NF_DROP};
use nfct::wire::checksum::internet_checksum;
use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The fixed hash seed of every table.
const SEED: u64 = 0x6e66_6374_6265_6e63;
/// IP total length of every packet: 20 IP + 8 UDP + 32 payload.
const PKT_LEN: usize = 60;
/// Packets are stored 64 bytes apart (one cache line each).
const STRIDE: usize = 64;
/// The frozen clock: every packet at t = 1 s.
const TSTAMP: u64 = 1_000_000_000;
/// The kernel's default `nf_conntrack_buckets`.
const KERNEL_BUCKETS: u64 = 262_144;

// --- Packets ---------------------------------------------------------------------------------

/// Flow `i`: client 10.x.y.z (from `i >> 4`) port 20000 + (i & 15) to one of 16 servers
/// 192.0.2.1..16 port 53. Distinct for every `i < 2^28`.
fn flow_addrs(i: u32) -> ([u8; 4], u16, [u8; 4], u16) {
    let c = 0x0a00_0000 | ((i >> 4) & 0x00ff_ffff);
    let client = c.to_be_bytes();
    let server = [192, 0, 2, 1 + (i % 16) as u8];
    (client, 20_000 + (i & 15) as u16, server, 53)
}

/// Writes the IPv4 UDP packet of flow `i` (the query, or its answer if `reply`) into `out`.
fn write_packet(out: &mut [u8], i: u32, reply: bool) {
    let (c, cport, s, sport) = flow_addrs(i);
    let (src, sp, dst, dp) = if reply { (s, sport, c, cport) } else { (c, cport, s, sport) };
    let p = &mut out[..PKT_LEN];
    p.fill(0);
    // IPv4 header.
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(PKT_LEN as u16).to_be_bytes());
    p[4..6].copy_from_slice(&(i as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = IPPROTO_UDP;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let hc = internet_checksum(&p[..20]);
    p[10..12].copy_from_slice(&hc.to_be_bytes());
    // UDP header and a DNS-like payload (transaction id, flags, one question).
    let ulen = (PKT_LEN - 20) as u16;
    p[20..22].copy_from_slice(&sp.to_be_bytes());
    p[22..24].copy_from_slice(&dp.to_be_bytes());
    p[24..26].copy_from_slice(&ulen.to_be_bytes());
    p[28..30].copy_from_slice(&(i as u16 ^ 0x5a5a).to_be_bytes());
    p[30..32].copy_from_slice(&(if reply { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    p[33] = 1;
    for (k, b) in p[40..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_add(k as u8);
    }
    // UDP checksum over the pseudo-header and the datagram.
    let mut ph = [0u8; 12 + PKT_LEN - 20];
    ph[..4].copy_from_slice(&src);
    ph[4..8].copy_from_slice(&dst);
    ph[9] = IPPROTO_UDP;
    ph[10..12].copy_from_slice(&ulen.to_be_bytes());
    ph[12..].copy_from_slice(&p[20..]);
    let uc = match internet_checksum(&ph) {
        0 => 0xffff,
        x => x,
    };
    p[26..28].copy_from_slice(&uc.to_be_bytes());
}

/// Packets stored back to back, `STRIDE` bytes apart.
struct Packets {
    buf: Vec<u8>,
}

impl Packets {
    fn new(flows: impl ExactSizeIterator<Item = (u32, bool)>) -> Packets {
        let mut buf = vec![0u8; flows.len() * STRIDE];
        for (k, (i, reply)) in flows.enumerate() {
            write_packet(&mut buf[k * STRIDE..], i, reply);
        }
        Packets { buf }
    }

    fn len(&self) -> usize {
        self.buf.len() / STRIDE
    }

    #[inline]
    fn get(&self, k: usize) -> &[u8] {
        &self.buf[k * STRIDE..k * STRIDE + PKT_LEN]
    }
}

/// splitmix64, for the fixed random choice of flows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

// --- The per-packet work ---------------------------------------------------------------------

/// One packet through a forwarding router's conntrack: `in` at PRE_ROUTING, confirm, release.
/// Returns its class and, if it holds an entry, the entry's (slot, gen).
#[inline]
fn process(net: &Net, pkt: &[u8]) -> (Option<CtState>, Option<(u32, u32)>) {
    process_hinted(net, pkt, None)
}

/// As [`process`], with the tuple hash a prefetch computed.
fn process_hinted(net: &Net, pkt: &[u8], hint: Option<&HashHint>) -> (Option<CtState>, Option<(u32, u32)>) {
    let mut skb = SkbCt::default();
    let mut verdict = net.conntrack_in_hinted(pkt, TSTAMP, Hook::PreRouting, AF_INET, &mut skb, hint);
    let class = (verdict != NF_DROP).then(|| skb.state());
    if verdict != NF_DROP {
        verdict = net.confirm(&mut skb, TSTAMP);
    }
    let handle = match skb.nfct {
        CtRef::Ct { slot, gen, .. } if verdict != NF_DROP => Some((slot, gen)),
        _ => None,
    };
    net.release(&mut skb);
    (class, handle)
}

/// `max(262144, size)`, or what `NFCT_BENCH_BUCKETS` says: a number, or `size` for as many
/// buckets as entries.
fn buckets_for(size: usize) -> u64 {
    match std::env::var("NFCT_BENCH_BUCKETS").ok().as_deref() {
        Some("size") => size as u64,
        Some(n) => n.parse().expect("NFCT_BENCH_BUCKETS: a number or 'size'"),
        None => KERNEL_BUCKETS.max(size as u64),
    }
}

/// New connections per timed batch: `max(1000, size / 10)`, or `NFCT_BENCH_BATCH`.
fn batch_for(size: usize) -> usize {
    let n = std::env::var("NFCT_BENCH_BATCH").ok().and_then(|v| v.parse().ok());
    n.unwrap_or((size / 10).max(1000)).next_multiple_of(64)
}

fn new_net(size: usize, checksum: u64) -> Net {
    let sysctl = Sysctl::default();
    sysctl.set(SysctlKey::Max, 0);
    sysctl.set(SysctlKey::Buckets, buckets_for(size));
    sysctl.set(SysctlKey::Checksum, checksum);
    Net::new(CtOptions { seed: Some(SEED), ..CtOptions::default() }, sysctl)
}

/// Creates flows `0..n` and answers each, so every one is seen both ways (ESTABLISHED).
fn fill(net: &Net, n: usize) {
    let mut pkt = [0u8; STRIDE];
    for i in 0..n as u32 {
        for reply in [false, true] {
            write_packet(&mut pkt, i, reply);
            let (class, handle) = process(net, &pkt[..PKT_LEN]);
            let want = Some(if reply { CtState::Established } else { CtState::New });
            assert!(class == want && handle.is_some(), "pre-fill flow {i} reply={reply}: {class:?}");
        }
    }
    assert_eq!(net.count(), n as u64);
}

/// A table pre-filled with `size` flows, the packets of flows it has not seen, and a stream of
/// packets of its flows in random order.
struct State {
    net: Net,
    size: usize,
    /// Original-direction packets of flows `size..size + batch`, never in the table between
    /// batches.
    fresh: Packets,
    /// Packets of random pre-filled flows, either direction: the first half of even flows, the
    /// second of odd ones.
    trace: Packets,
    /// Where each thread's walk through its part of `trace` continues (index = threads - 1 + t).
    cursors: [AtomicUsize; 3],
    /// Tuples of random pre-filled flows, either direction, for the table-only lookups.
    lookups: Vec<Tuple>,
    lookup_cursor: AtomicUsize,
}

impl State {
    fn build(size: usize, checksum: u64, bench_mode: bool) -> State {
        let t0 = Instant::now();
        let net = new_net(size, checksum);
        fill(&net, size);
        let batch = if bench_mode { batch_for(size) } else { 64 };
        let fresh = Packets::new((0..batch as u32).map(|k| (size as u32 + k, false)));
        let tlen = if bench_mode { (2 * size).clamp(1 << 16, 1 << 21) } else { 256 };
        // Two halves: packets of random even flows, then of random odd flows, so that with two
        // threads each owns its flows (as RSS steers a flow to one queue) and no entry is
        // written from both cores; one thread walks both halves.
        let mut rng = Rng(SEED ^ size as u64);
        let trace = Packets::new((0..tlen).map(|k| {
            let r = rng.next();
            let half = (k >= tlen / 2) as u64;
            let flow = ((r % size as u64) & !1) | half;
            (flow.min(size as u64 - 1) as u32, r >> 63 == 1)
        }));
        let lookups = (0..tlen)
            .map(|_| {
                let r = rng.next();
                let (c, cport, srv, sport) = flow_addrs((r % size as u64) as u32);
                let t = Tuple::new_v4(c.into(), srv.into(), IPPROTO_UDP, cport, sport);
                if r >> 63 == 1 {
                    t.invert().expect("UDP inverts")
                } else {
                    t
                }
            })
            .collect();
        let st = State {
            net,
            size,
            fresh,
            trace,
            cursors: Default::default(),
            lookups,
            lookup_cursor: AtomicUsize::new(0),
        };
        // Check once that fresh flows are NEW and trace packets ESTABLISHED, then undo.
        let mut handles = Vec::new();
        for k in 0..st.fresh.len() {
            let (class, h) = process(&st.net, st.fresh.get(k));
            assert_eq!(class, Some(CtState::New));
            handles.push(h.expect("new entry"));
        }
        for (slot, gen) in handles {
            assert!(st.net.delete(slot, gen, TSTAMP));
        }
        for k in 0..st.trace.len().min(1000) {
            assert_eq!(process(&st.net, st.trace.get(k)).0, Some(CtState::Established));
        }
        st.check();
        if bench_mode {
            eprintln!(
                "[setup] {} flows, checksum={checksum}, buckets={}: built in {:.1} s",
                size,
                st.net.table.nbuckets(),
                t0.elapsed().as_secs_f64()
            );
        }
        st
    }

    /// The table holds exactly the pre-filled flows and nothing failed.
    fn check(&self) {
        assert_eq!(self.net.count(), self.size as u64, "table size drifted");
        let s = self.net.stats();
        assert_eq!((s.invalid, s.insert_failed, s.drop, s.early_drop), (0, 0, 0, 0), "{s:?}");
    }
}

/// A barrier that spins (both threads have a core each): no futex wake-up in the timed region.
struct SpinBarrier {
    n: usize,
    count: AtomicUsize,
    gen: AtomicUsize,
}

impl SpinBarrier {
    fn new(n: usize) -> SpinBarrier {
        SpinBarrier { n, count: AtomicUsize::new(0), gen: AtomicUsize::new(0) }
    }

    fn wait(&self) {
        let g = self.gen.load(Ordering::Acquire);
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.count.store(0, Ordering::Relaxed);
            self.gen.fetch_add(1, Ordering::Release);
        } else {
            while self.gen.load(Ordering::Acquire) == g {
                std::hint::spin_loop();
            }
        }
    }
}

/// Thread `t`'s share of `n` items split over `threads`.
fn share(n: usize, threads: usize, t: usize) -> usize {
    n / threads + usize::from(t < n % threads)
}

/// `iters` new connections: batches of at most `fresh.len()` inserts, each timed, each followed
/// by the untimed deletion of what it inserted. With several threads, thread `t` inserts from
/// its own part of `fresh` and the time is the wall time from a common start to both done.
fn run_new(st: &State, threads: usize, iters: u64) -> Duration {
    let m = st.fresh.len();
    let mut batches = Vec::new();
    let mut left = iters as usize;
    while left > 0 {
        batches.push(left.min(m));
        left -= left.min(m);
    }
    let part = m / threads;
    let worker = |t: usize, barrier: Option<&SpinBarrier>| -> Duration {
        let base = t * part;
        let mut handles = Vec::with_capacity(part + 1);
        let mut total = Duration::ZERO;
        for &n in &batches {
            let mine = share(n, threads, t);
            if let Some(b) = barrier {
                b.wait();
            }
            let t0 = Instant::now();
            for k in base..base + mine {
                if let (_, Some(h)) = process(&st.net, st.fresh.get(k)) {
                    handles.push(h);
                }
            }
            if let Some(b) = barrier {
                b.wait();
            }
            total += t0.elapsed();
            if t == 0 && batch_stats() {
                BATCH_NS.lock().unwrap().push(t0.elapsed().as_nanos() as f64 / n as f64);
            }
            assert_eq!(handles.len(), mine, "a new connection was not created");
            for (slot, gen) in handles.drain(..) {
                st.net.delete(slot, gen, TSTAMP);
            }
        }
        total
    };
    let total = if threads == 1 {
        worker(0, None)
    } else {
        let barrier = SpinBarrier::new(threads);
        let (barrier, worker) = (&barrier, &worker);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|t| s.spawn(move || worker(t, Some(barrier)))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).max().unwrap_or_default()
        })
    };
    st.check();
    total
}

/// Per-batch wall time per new connection (ns), kept when `NFCT_BENCH_BATCH_STATS` is set: the
/// median batch says what the code does when no other process preempts a thread mid-batch.
static BATCH_NS: Mutex<Vec<f64>> = Mutex::new(Vec::new());

fn batch_stats() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NFCT_BENCH_BATCH_STATS").is_some())
}

/// Prints and forgets the batch times collected during one benchmark.
fn print_batch_stats(id: &str) {
    let mut v = std::mem::take(&mut *BATCH_NS.lock().unwrap());
    if v.is_empty() {
        return;
    }
    v.sort_by(f64::total_cmp);
    let q = |f: f64| 1e3 / v[((v.len() - 1) as f64 * f) as usize];
    println!(
        "{id}: {} batches, per-batch rate p10 {:.2} / median {:.2} / p90 {:.2} M/s",
        v.len(),
        q(0.9),
        q(0.5),
        q(0.1)
    );
}

/// `iters` packets of existing connections, walking the random trace from where the last call
/// stopped. With two threads, thread `t` walks half `t` of it: its own flows.
fn run_existing(st: &State, threads: usize, iters: u64, prefetch: bool) -> Duration {
    let k = st.trace.len();
    let part = k / threads;
    let worker = |t: usize, barrier: Option<&SpinBarrier>| -> Duration {
        let base = t * part;
        let cursor = &st.cursors[threads - 1 + t];
        let mut c = cursor.load(Ordering::Relaxed) % part;
        let n = share(iters as usize, threads, t);
        if let Some(b) = barrier {
            b.wait();
        }
        let t0 = Instant::now();
        if prefetch {
            // Windows of BULK packets (cut at the end of the part): prefetch, then process.
            let mut left = n;
            let mut hints = Vec::with_capacity(BULK);
            while left > 0 {
                let m = left.min(BULK).min(part - c);
                hints.clear();
                st.net.prefetch_all((c..c + m).map(|k| Some(st.trace.get(base + k))), &mut hints);
                for (i, k) in (c..c + m).enumerate() {
                    black_box(process_hinted(
                        &st.net,
                        st.trace.get(base + k),
                        hints.get(i).and_then(Option::as_ref),
                    ));
                }
                left -= m;
                c += m;
                if c == part {
                    c = 0;
                }
            }
        } else {
            for _ in 0..n {
                black_box(process(&st.net, st.trace.get(base + c)));
                c += 1;
                if c == part {
                    c = 0;
                }
            }
        }
        if let Some(b) = barrier {
            b.wait();
        }
        let d = t0.elapsed();
        cursor.store(c, Ordering::Relaxed);
        d
    };
    if threads == 1 {
        worker(0, None)
    } else {
        let barrier = SpinBarrier::new(threads);
        let (barrier, worker) = (&barrier, &worker);
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|t| s.spawn(move || worker(t, Some(barrier)))).collect();
            hs.into_iter().map(|h| h.join().unwrap()).max().unwrap_or_default()
        })
    }
}

/// `iters` table lookups of existing flows (hash, then `Table::find`, then unlock): one at a
/// time, or `bulk` at a time through `Table::find_bulk` (hashes first, then the prefetch of the
/// batch's bucket heads and first slots, then the finds). Every lookup must hit.
fn run_lookup(st: &State, bulk: usize, iters: u64) -> Duration {
    let n = st.lookups.len();
    let mut c = st.lookup_cursor.load(Ordering::Relaxed) % n;
    let net = &st.net;
    let now = TSTAMP;
    let mut keys = Vec::with_capacity(bulk);
    let mut hits = 0u64;
    let t0 = Instant::now();
    let mut left = iters as usize;
    while left > 0 {
        let m = left.min(bulk).min(n - c);
        let batch = &st.lookups[c..c + m];
        if bulk == 1 {
            let t = &batch[0];
            let h = net.hash(t, 0);
            if let Found::Hit { entry, .. } = net.table.find(t, Zone::default(), h, now) {
                hits += u64::from(black_box(entry.gen) == 0);
            }
        } else {
            keys.clear();
            keys.extend(batch.iter().map(|t| Key { tuple: *t, zone: Zone::default(), hash: net.hash(t, 0) }));
            net.table.find_bulk(&keys, now, |_, f| {
                if let Found::Hit { entry, .. } = f {
                    hits += u64::from(black_box(entry.gen) == 0);
                }
            });
        }
        left -= m;
        c = (c + m) % n;
    }
    let d = t0.elapsed();
    assert_eq!(hits, iters, "a lookup missed");
    st.lookup_cursor.store(c, Ordering::Relaxed);
    d
}

// --- Memory ----------------------------------------------------------------------------------

/// VmRSS of this process, bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn memory_report() {
    const N: usize = 1_000_000;
    let entry = std::mem::size_of::<Conn>();
    let mutex = std::mem::size_of::<parking_lot::Mutex<Conn>>();
    let slot = std::mem::size_of::<Slot>();
    println!("memory per entry (IPv4 UDP entries; TCP/SCTP state and acct/tstamp are out of line)");
    println!("  size_of::<Conn>()                     = {entry} B");
    println!("  size_of::<Mutex<Conn>>()              = {mutex} B (lock + padding = {} B)", mutex - entry);
    println!("  size_of::<Slot>() (+ both chain links) = {slot} B (links {} B)", slot - mutex);
    println!(
        "  out of line when used: TcpState {} B, SctpState {} B, Ext (acct+tstamp) {} B (heap)",
        std::mem::size_of::<nfct::proto::tcp::TcpState>(),
        std::mem::size_of::<nfct::proto::sctp::SctpState>(),
        std::mem::size_of::<nfct::conn::CtExt>()
    );
    for buckets in [KERNEL_BUCKETS as usize, N] {
        let heads = 4.0 * buckets as f64 / N as f64;
        println!(
            "  computed at 1M entries, {buckets} buckets: {slot} + {heads:.1} = {:.1} B/entry",
            slot as f64 + heads
        );
    }
    for buckets in [KERNEL_BUCKETS, N as u64] {
        let r0 = rss();
        let sysctl = Sysctl::default();
        sysctl.set(SysctlKey::Max, 0);
        sysctl.set(SysctlKey::Buckets, buckets);
        let net = Net::new(CtOptions { seed: Some(SEED), ..CtOptions::default() }, sysctl);
        let r1 = rss();
        fill(&net, N);
        let r2 = rss();
        println!(
            "  measured RSS, {buckets} buckets: empty table {:.1} MiB; +{:.1} MiB for 1M entries = {:.0} B/entry \
             ({:.0} B/entry counting the empty table)",
            (r1 - r0) as f64 / 1048576.0,
            (r2 - r1) as f64 / 1048576.0,
            (r2 - r1) as f64 / N as f64,
            (r2 - r0) as f64 / N as f64
        );
        drop(net);
    }
}

// --- Benchmarks ------------------------------------------------------------------------------

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn benches(c: &mut Criterion, bench_mode: bool) {
    let sizes: &[usize] = if bench_mode { &[10_000, 100_000, 1_000_000] } else { &[1000] };
    for checksum in [1u64, 0] {
        for &size in sizes {
            // Built on first use, outside `iter_custom`: criterion's warm-up times the whole
            // `iter_custom` call, and a pre-fill inside it would make it plan one iteration.
            let state: OnceCell<State> = OnceCell::new();
            let st = || state.get_or_init(|| State::build(size, checksum, bench_mode));
            let mut g = c.benchmark_group(format!("udp_{}_csum{checksum}", label(size)));
            g.throughput(Throughput::Elements(1)).sampling_mode(SamplingMode::Flat);
            if size >= 1_000_000 {
                g.sample_size(10)
                    .warm_up_time(Duration::from_secs(1))
                    .measurement_time(Duration::from_secs(4));
            } else {
                g.sample_size(20)
                    .warm_up_time(Duration::from_secs(1))
                    .measurement_time(Duration::from_secs(3));
            }
            let threads: &[usize] = if checksum == 1 { &[1, 2] } else { &[1] };
            for &t in threads {
                g.bench_function(BenchmarkId::new("new", format!("{t}t")), |b| {
                    let st = st();
                    b.iter_custom(|iters| run_new(st, t, iters))
                });
                print_batch_stats(&format!("udp_{}_csum{checksum}/new/{t}t", label(size)));
            }
            for &t in threads {
                g.bench_function(BenchmarkId::new("existing", format!("{t}t")), |b| {
                    let st = st();
                    b.iter_custom(|iters| run_existing(st, t, iters, false))
                });
                g.bench_function(BenchmarkId::new("existing_pf32", format!("{t}t")), |b| {
                    let st = st();
                    b.iter_custom(|iters| run_existing(st, t, iters, true))
                });
            }
            if checksum == 1 {
                for bulk in [1usize, BULK] {
                    let name = if bulk == 1 { "single".to_string() } else { format!("bulk{bulk}") };
                    g.bench_function(BenchmarkId::new("lookup", name), |b| {
                        let st = st();
                        b.iter_custom(|iters| run_lookup(st, bulk, iters))
                    });
                }
            }
            g.finish();
        }
    }
}

fn main() {
    // cargo bench passes --bench; cargo test --benches does not (criterion's quick test mode).
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let list_only = std::env::args().any(|a| a == "--list");
    if bench_mode && !list_only && std::env::var_os("NFCT_BENCH_NO_MEMORY").is_none() {
        memory_report();
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, bench_mode);
    c.final_summary();
}
