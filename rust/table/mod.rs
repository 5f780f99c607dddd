//! The conntrack hash table (`nf_conntrack_hash`): one bucket array whose buckets are guarded
//! by an array of striped locks, each confirmed entry linked under both its original and its
//! reply tuple (spec §4.3), entries kept in a slab of slots each behind its own lock.
//!
//! As in the kernel, the two hash-chain nodes of an entry live in the entry's own slot
//! (`tuplehash[dir].hnnode` inside `nf_conn`), so a lookup goes bucket head → slot → slot and
//! never through a separate node. A slot is exactly two cache lines: node 0, the locked entry,
//! node 1.
//!
//! Lock order, everywhere: stripe locks in ascending stripe order, then entry locks. Nothing
//! takes a stripe lock while holding an entry lock. A lookup locks one stripe, walks the
//! bucket's chain (locking each entry on it to check its expiry and key, as the kernel's walk
//! reads each `nf_conn`), then lets the stripe go and hands back the matching entry still
//! locked.
//!
//! Both kinds are spinlocks, as the kernel's are (`nf_conntrack_locks[]`, `ct->lock`): they are
//! held for a few hundred instructions, never across anything that blocks, and a packet takes
//! several (a stripe and an entry to look up, the entry again to drop its reference, more to
//! confirm). Giving one back is a plain store, where a parking mutex needs a second atomic
//! read-modify-write (which also waits for the core's pending stores): `e2e_bench.py`'s replay
//! took 0.92 of the time it took with `parking_lot`'s mutexes (`benches/RESULTS.md`). A thread
//! that keeps finding a lock taken yields to the scheduler now and then ([`SpinThenYield`]), so
//! that a holder descheduled by an oversubscribed machine gets to run.
//!
//! The chain links and bucket heads are atomics so that they can sit outside the locks in safe
//! Rust; they are only written under the stripe lock of their bucket, which also orders them
//! (Relaxed is enough). Outside a stripe lock they are only read as prefetch hints
//! (`prefetch`), never trusted.

use crate::conn::Conn;
use crate::tuple::{reciprocal_scale, Direction, Tuple, Zone};
use parking_lot::Mutex;
use spin::mutex::{SpinMutex, SpinMutexGuard};
use spin::RelaxStrategy;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

/// How a thread waits for a table lock another holds: a spin-loop hint, and every
/// [`SPINS_PER_YIELD`]th time a `sched_yield` (a holder that was descheduled, on a machine with
/// more runnable threads than cores, then gets the CPU instead of a waiter burning its slice).
#[derive(Debug)]
pub struct SpinThenYield;

/// Spin-loop hints between two yields of a waiting thread.
const SPINS_PER_YIELD: u32 = 64;

impl RelaxStrategy for SpinThenYield {
    #[inline]
    fn relax() {
        thread_local! {
            static SPINS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let n = SPINS.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        if n.is_multiple_of(SPINS_PER_YIELD) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

/// A table lock (a stripe's or an entry's).
pub type Lock<T> = SpinMutex<T, SpinThenYield>;
/// A held table lock.
pub type LockGuard<'a, T> = SpinMutexGuard<'a, T, SpinThenYield>;

/// The end of a chain (the kernel uses "nulls" markers).
const NIL: u32 = u32::MAX;
/// Number of lock stripes (the kernel's `CONNTRACK_LOCKS`).
pub const STRIPES: usize = 1 << STRIPE_BITS;
const STRIPE_BITS: u32 = 10;

/// The stripe that guards bucket `b` of `nbuckets`: runs of consecutive buckets share one (the
/// kernel takes the hash modulo its lock count instead). A flow's buckets lie in one range of
/// the table ([`crate::tuple::RANGE_BITS`]) and a threaded replay gives each worker its own
/// ranges, so with runs the workers lock stripes of their own as well: with two workers on
/// two cores, a stripe's lock otherwise went from one core to the other on about every other
/// lookup.
#[inline]
fn stripe_of(b: usize, nbuckets: u32) -> usize {
    // Runs of 2^shift buckets, shift chosen so that the buckets fill the stripes at most once.
    let bits = u32::BITS - nbuckets.saturating_sub(1).leading_zeros();
    (b >> bits.saturating_sub(STRIPE_BITS)) % STRIPES
}
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << 15;
/// Bucket heads are allocated in chunks that are never freed, so a prefetch may read a head
/// without any lock even while a resize runs (it then reads a stale hint, never freed memory).
const HEAD_CHUNK_BITS: u32 = 16;
const HEAD_CHUNK: usize = 1 << HEAD_CHUNK_BITS;
/// Enough chunks for the largest `nf_conntrack_buckets` the sysctl accepts (2^31).
const MAX_HEAD_CHUNKS: usize = 1 << 15;
/// Slots a free list takes from the shared slab at a time when it runs dry.
const REFILL: u32 = 32;
/// Free lists that threads take slots from and give them back to, each in a stripe of its own
/// (list `h` in stripe `h * STRIPES / HOMES`; see [`set_slab_home`]).
const HOMES: usize = 16;

/// The list the next thread that has not chosen one gets (see [`HOME`]).
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The free list this thread takes new slots from and gives freed ones back to: for a
    /// thread that has not chosen one ([`set_slab_home`]), the next in turn when it first
    /// needs one (the first thread list 0), so that threads of the caller's own making (a
    /// free-threaded Python's, each feeding packets into one `Net`) do not all take turns at
    /// one list either.
    static HOME: std::cell::Cell<usize> = std::cell::Cell::new(NEXT_HOME.fetch_add(1, Relaxed) % HOMES);
}

/// Makes this thread, worker `i` of `n` in a threaded replay, take the slots of new entries
/// from a free list of its own and give freed ones back to it (other threads get lists in
/// turn: [`HOME`]). Entries made one after the other by one thread then sit side by side in
/// the slab, and the flows a capture has open at once share cache lines and pages instead of
/// being spread over the whole table (with one list per bucket stripe, as before, a replay of
/// e2e_bench's capture took 10% longer); two workers (of at most [`HOMES`]) never write the
/// same list, and each worker's list lies in a stripe of the bucket ranges it is given (the
/// first of its share, as `(range * n) >> RANGE_BITS` gives them out), which no other worker
/// locks.
pub fn set_slab_home(i: usize, n: usize) {
    HOME.with(|h| h.set((i * HOMES).div_ceil(n.max(1)) % HOMES));
}

/// The stripe that holds free list `h`.
#[inline]
fn home_stripe(h: usize) -> usize {
    h * (STRIPES / HOMES)
}

fn slab_home() -> usize {
    home_stripe(HOME.with(std::cell::Cell::get))
}
/// Most keys `find_bulk` prefetches at a time.
pub const BULK: usize = 32;
/// Nodes of each chain `prefetch` reads ahead of the walk (at the default sizes a full table
/// has two nodes per bucket on average).
const PREFETCH_DEPTH: usize = 4;

/// One hash-chain node of an entry: the hash of its direction's tuple and the next node of the
/// bucket (`slot << 1 | dir`, or NIL). Guarded by the stripe lock of the bucket it is in.
#[derive(Debug)]
struct Link {
    next: AtomicU32,
    hash: AtomicU32,
}

impl Default for Link {
    fn default() -> Link {
        Link { next: AtomicU32::new(NIL), hash: AtomicU32::new(0) }
    }
}

/// A slab slot (`struct nf_conn` with its `tuplehash[2]`): the original direction's node, the
/// entry behind its lock, the reply direction's node. Two cache lines.
#[derive(Debug, Default)]
#[repr(C, align(64))]
pub struct Slot {
    link0: Link,
    entry: Lock<Conn>,
    link1: Link,
}

impl Slot {
    #[inline]
    fn link(&self, dir: u32) -> &Link {
        if dir & 1 == 0 {
            &self.link0
        } else {
            &self.link1
        }
    }
}

/// One lock stripe: the buckets `b` that [`stripe_of`] gives its index (their heads are in
/// the table, guarded by this lock) and, for the [`HOMES`] stripes [`home_stripe`] names, a
/// list of free slab slots (see [`set_slab_home`]). Padded to a cache line so two threads
/// locking neighbouring stripes do not share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe {
    nbuckets: u32,
    free_slots: Vec<u32>,
}

/// Most expired entries one lookup hands back for reaping (the rest wait for the next walk).
pub const REAP_MAX: usize = 8;

/// Expired entries a walk met: (slot, generation) pairs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expired {
    pub len: usize,
    pub slots: [(u32, u32); REAP_MAX],
}

impl Expired {
    fn push(&mut self, slot: u32, gen: u32) {
        if let Some(s) = self.slots.get_mut(self.len) {
            *s = (slot, gen);
            self.len += 1;
        }
    }

    /// The entries collected.
    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.slots[..self.len]
    }
}

/// What a lookup found.
pub enum Found<'a> {
    /// A confirmed, live entry whose tuple in `dir` equals the key; the entry is locked.
    Hit { slot: u32, dir: Direction, entry: LockGuard<'a, Conn> },
    /// The walk met expired entries before any match: the caller reaps them (as the kernel's
    /// lookup does, `nf_ct_gc_expired`) and looks again.
    Reap(Expired),
    /// No confirmed, live entry holds the key (and no expired one was met).
    Miss,
}

/// Result of linking a new entry at confirmation.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    /// Both nodes are linked: the entry is in the table.
    Inserted,
    /// A confirmed entry already holds the tuple of `dir` (`nf_ct_resolve_clash` decides).
    Clash { slot: u32, dir: Direction },
    /// A chain was longer than the limit before a match was found.
    ChainTooLong,
}

/// A lookup key for `find_bulk`: the tuple, the zone of the lookup (as `find` takes it), and
/// the tuple's hash.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub tuple: Tuple,
    pub zone: Zone,
    pub hash: u32,
}

/// A fixed block of slab slots, allocated once and never moved.
type Chunk = Box<[Slot]>;

/// The lock-striped table.
pub struct Table {
    stripes: Box<[Lock<Stripe>]>,
    nbuckets: AtomicU32,
    /// Bucket heads (`slot << 1 | dir` of the first node, or NIL); bucket `b` is guarded by
    /// stripe `stripe_of(b, nbuckets)`.
    heads: Box<[OnceLock<Box<[AtomicU32]>>]>,
    chunks: Box<[OnceLock<Chunk>]>,
    next_slot: AtomicU32,
    /// Entries linked by their reply node only (`nf_ct_resolve_clash_harder`).
    reply_only: Mutex<Vec<u32>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("nbuckets", &self.nbuckets()).finish_non_exhaustive()
    }
}

/// Walks a chain: yields `slot << 1 | dir` of each node. Only meaningful under the stripe lock.
struct Chain<'a> {
    table: &'a Table,
    cur: u32,
}

impl Iterator for Chain<'_> {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.cur == NIL {
            return None;
        }
        let sd = self.cur;
        self.cur = self.table.slot_ref(sd >> 1).map_or(NIL, |s| s.link(sd).next.load(Relaxed));
        Some(sd)
    }
}

#[inline]
fn dir_of(sd: u32) -> Direction {
    if sd & 1 == 0 {
        Direction::Original
    } else {
        Direction::Reply
    }
}

impl Table {
    /// A table of `nbuckets` buckets (at least 1).
    pub fn new(nbuckets: u32) -> Table {
        let nbuckets = nbuckets.max(1);
        let t = Table {
            stripes: (0..STRIPES).map(|_| Lock::new(Stripe { nbuckets, ..Stripe::default() })).collect(),
            nbuckets: AtomicU32::new(nbuckets),
            heads: (0..MAX_HEAD_CHUNKS).map(|_| OnceLock::new()).collect(),
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            next_slot: AtomicU32::new(0),
            reply_only: Mutex::new(Vec::new()),
        };
        t.alloc_heads(nbuckets);
        t
    }

    /// Makes sure heads exist for buckets `0..nbuckets` (new chunks start empty).
    fn alloc_heads(&self, nbuckets: u32) {
        let n = (nbuckets as usize).div_ceil(HEAD_CHUNK).min(MAX_HEAD_CHUNKS);
        for c in &self.heads[..n] {
            c.get_or_init(|| (0..HEAD_CHUNK).map(|_| AtomicU32::new(NIL)).collect());
        }
    }

    /// The head of bucket `b`.
    #[inline]
    fn head(&self, b: usize) -> Option<&AtomicU32> {
        self.heads.get(b >> HEAD_CHUNK_BITS)?.get()?.get(b & (HEAD_CHUNK - 1))
    }

    #[inline]
    fn chain(&self, b: usize) -> Chain<'_> {
        Chain { table: self, cur: self.head(b).map_or(NIL, |h| h.load(Relaxed)) }
    }

    #[inline]
    pub fn nbuckets(&self) -> u32 {
        self.nbuckets.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The bucket a hash falls in.
    #[inline]
    pub fn bucket(&self, hash: u32) -> u32 {
        reciprocal_scale(hash, self.nbuckets())
    }

    /// Locks the stripe of the bucket `bucket` gives for the table's bucket count, retrying
    /// if a resize changed the count meanwhile. Returns the guard and the bucket.
    #[inline]
    fn lock_where(&self, bucket: impl Fn(u32) -> usize) -> (LockGuard<'_, Stripe>, usize) {
        loop {
            let nb = self.nbuckets();
            let b = bucket(nb);
            let g = self.stripes[stripe_of(b, nb)].lock();
            if g.nbuckets == nb {
                return (g, b);
            }
        }
    }

    /// Locks the stripe of the bucket of `hash`. Returns the guard and the bucket.
    fn lock_bucket(&self, hash: u32) -> (LockGuard<'_, Stripe>, usize) {
        self.lock_where(|nb| reciprocal_scale(hash, nb) as usize)
    }

    /// Locks the stripe of bucket `b`.
    fn lock_index(&self, b: usize) -> LockGuard<'_, Stripe> {
        self.lock_where(|_| b).0
    }

    #[inline]
    fn slot_ref(&self, slot: u32) -> Option<&Slot> {
        let chunk = self.chunks.get((slot >> CHUNK_BITS) as usize)?.get()?;
        chunk.get(slot as usize & (CHUNK - 1))
    }

    /// The lock of a slab slot.
    #[inline]
    pub fn slot(&self, slot: u32) -> Option<&Lock<Conn>> {
        self.slot_ref(slot).map(|s| &s.entry)
    }

    /// The hash an entry's node of `dir` is (or will be) linked with: the original one is set
    /// when the slot is allocated, the reply one when the entry is confirmed.
    #[inline]
    pub fn hash(&self, slot: u32, dir: Direction) -> u32 {
        self.slot_ref(slot).map_or(0, |s| s.link(dir as u32).hash.load(Relaxed))
    }

    /// Links node `sd` at the head of bucket `b` (stripe of `b` locked by the caller).
    fn link(&self, b: usize, sd: u32, hash: u32) {
        let (Some(head), Some(s)) = (self.head(b), self.slot_ref(sd >> 1)) else { return };
        let l = s.link(sd);
        l.hash.store(hash, Relaxed);
        l.next.store(head.load(Relaxed), Relaxed);
        head.store(sd, Relaxed);
    }

    /// Removes node `sd` from bucket `b` (stripe locked by the caller); false if not there.
    fn unlink_node(&self, b: usize, sd: u32) -> bool {
        let Some(head) = self.head(b) else { return false };
        let mut prev: Option<&Link> = None;
        let mut cur = head.load(Relaxed);
        while cur != NIL {
            let Some(s) = self.slot_ref(cur >> 1) else { return false };
            let l = s.link(cur);
            let next = l.next.load(Relaxed);
            if cur == sd {
                match prev {
                    None => head.store(next, Relaxed),
                    Some(p) => p.next.store(next, Relaxed),
                }
                l.next.store(NIL, Relaxed);
                return true;
            }
            prev = Some(l);
            cur = next;
        }
        false
    }

    /// Takes a free slot for a new entry from this thread's free list (see [`set_slab_home`])
    /// and stores `e` in it, its original node to be linked with `orig_hash`. A list that runs
    /// dry takes what another list has freed first, then fresh slots. None when the slab is
    /// exhausted.
    pub fn alloc(&self, orig_hash: u32, mut e: Conn) -> Option<u32> {
        let home = slab_home();
        let mut stripe = self.stripes[home].lock();
        if stripe.free_slots.is_empty() {
            // Slots other threads freed (a worker of an earlier threaded replay, say), before
            // the slab grows; never blocking on a list in use.
            for other in (0..HOMES).map(home_stripe).filter(|&o| o != home) {
                if let Some(mut o) = self.stripes[other].try_lock() {
                    let take = o.free_slots.len().min(REFILL as usize);
                    let from = o.free_slots.len() - take;
                    stripe.free_slots.extend(o.free_slots.drain(from..));
                    if take > 0 {
                        break;
                    }
                }
            }
        }
        if stripe.free_slots.is_empty() {
            let first = self.next_slot.fetch_add(REFILL, Relaxed);
            let last = first.checked_add(REFILL)?;
            if (last as usize) > MAX_CHUNKS * CHUNK {
                return None;
            }
            for s in first..last {
                let c = (s >> CHUNK_BITS) as usize;
                self.chunks[c].get_or_init(|| (0..CHUNK).map(|_| Slot::default()).collect());
            }
            stripe.free_slots.extend((first..last).rev());
        }
        let slot = stripe.free_slots.pop()?;
        drop(stripe);
        let s = self.slot_ref(slot)?;
        let mut g = s.entry.lock();
        s.link0.hash.store(orig_hash, Relaxed);
        e.gen = g.gen;
        e.live = true;
        *g = e;
        Some(slot)
    }

    /// Returns a slot to the free lists if it still holds generation `gen` (so two paths that
    /// both decided to free an entry free it once, never a successor in the reused slot); its
    /// generation moves on so stale handles notice.
    pub fn free(&self, slot: u32, gen: u32) {
        let Some(s) = self.slot_ref(slot) else { return };
        {
            let mut g = s.entry.lock();
            if !g.live || g.gen != gen {
                return;
            }
            let gen = g.gen.wrapping_add(1);
            *g = Conn { gen, ..Conn::default() };
        }
        self.stripes[slab_home()].lock().free_slots.push(slot);
    }

    /// `____nf_conntrack_find`: the confirmed entry whose tuple in some direction equals `t`,
    /// whose zone id for that direction equals `zone`'s id for that direction.
    #[inline]
    pub fn find(&self, t: &Tuple, zone: Zone, hash: u32, now: u64) -> Found<'_> {
        self.find_where(t, zone, hash, now, |_, _, _| false)
    }

    /// As [`Table::find`], passing over the matching entries `skip` says to (NAT's uniqueness
    /// check ignores the entry asking, and one with the same origin). Always inlined: every
    /// lookup of a packet runs it, and the plain `find`'s `skip` then folds away.
    #[inline(always)]
    pub fn find_where(
        &self,
        t: &Tuple,
        zone: Zone,
        hash: u32,
        now: u64,
        skip: impl Fn(u32, Direction, &Conn) -> bool,
    ) -> Found<'_> {
        let (stripe, b) = self.lock_bucket(hash);
        let mut expired = Expired::default();
        for sd in self.chain(b) {
            let Some(s) = self.slot_ref(sd >> 1) else { continue };
            let slot = sd >> 1;
            let e = s.entry.lock();
            if !e.live || !e.confirmed() || e.dying() {
                continue;
            }
            // Every expired entry the walk meets is reaped, matching or not.
            if e.expired(now) {
                if !expired.as_slice().iter().any(|&(x, _)| x == slot) {
                    expired.push(slot, e.gen);
                }
                continue;
            }
            let dir = dir_of(sd);
            if s.link(sd).hash.load(Relaxed) != hash
                || e.zone.id_for(dir) != zone.id_for(dir)
                || e.tuple(dir) != *t
                || skip(slot, dir, &e)
            {
                continue;
            }
            if expired.len > 0 {
                return Found::Reap(expired);
            }
            drop(stripe);
            return Found::Hit { slot, dir, entry: e };
        }
        if expired.len > 0 {
            Found::Reap(expired)
        } else {
            Found::Miss
        }
    }

    /// Brings the memory a lookup of each hash will touch into the cache before any of it is
    /// needed, so the misses of a batch overlap instead of queueing one after the other (what
    /// `rte_hash_lookup_bulk` does with prefetch instructions, which safe Rust does not have):
    /// the chains of all the batch's buckets are walked side by side, a level at a time (every
    /// bucket head, then the first node of every chain, then the second...), reading both cache
    /// lines of each node's slot as the real walk will, up to [`PREFETCH_DEPTH`] nodes or the
    /// node whose hash is the key's. The values read are only hints (no lock is held), so a
    /// concurrent change is harmless.
    ///
    /// Takes at most [`BULK`] hashes (the rest are not looked at). Returns a bit mask over
    /// them: set where no node with that hash was met (the lookup will most likely miss, and
    /// the packet make a new entry).
    pub fn prefetch(&self, hashes: &[u32]) -> u32 {
        let hashes = &hashes[..hashes.len().min(BULK)];
        let nb = self.nbuckets();
        let mut cur = [NIL; BULK];
        for (h, f) in hashes.iter().zip(cur.iter_mut()) {
            let b = reciprocal_scale(*h, nb) as usize;
            *f = self.head(b).map_or(NIL, |x| x.load(Relaxed));
        }
        let mut miss = if hashes.len() == BULK { u32::MAX } else { (1u32 << hashes.len()) - 1 };
        for _ in 0..PREFETCH_DEPTH {
            let mut more = false;
            for (i, (h, sd)) in hashes.iter().zip(cur.iter_mut()).enumerate() {
                let Some(s) = self.slot_ref(*sd >> 1) else { continue };
                // Both lines of the slot: the walk reads the node and locks the entry.
                let (n0, n1) = (s.link0.next.load(Relaxed), s.link1.next.load(Relaxed));
                if s.link(*sd).hash.load(Relaxed) == *h {
                    miss &= !(1 << i);
                    *sd = NIL;
                } else {
                    *sd = if *sd & 1 == 0 { n0 } else { n1 };
                    more |= *sd != NIL;
                }
            }
            if !more {
                break;
            }
        }
        miss
    }

    /// Bulk `find`: `f(i, found)` for each key in order, with the hashes given and the memory
    /// of the whole batch prefetched first (see `prefetch`). Each entry found is locked only
    /// during its own call of `f`, so a batch may hold the same flow twice.
    pub fn find_bulk<F>(&self, keys: &[Key], now: u64, mut f: F)
    where
        F: FnMut(usize, Found<'_>),
    {
        let mut hashes = [0u32; BULK];
        for (c, chunk) in keys.chunks(BULK).enumerate() {
            for (h, k) in hashes.iter_mut().zip(chunk) {
                *h = k.hash;
            }
            std::hint::black_box(self.prefetch(&hashes[..chunk.len()]));
            for (j, k) in chunk.iter().enumerate() {
                f(c * BULK + j, self.find(&k.tuple, k.zone, k.hash, now));
            }
        }
    }

    /// `__nf_conntrack_confirm`'s insertion: scans both buckets for a confirmed entry with the
    /// same key (and for chains longer than `max_chainlen`), then links both nodes.
    /// `keys` are the (tuple, zone id, hash) of the original and reply directions.
    pub fn insert(&self, slot: u32, keys: [(&Tuple, u16, u32); 2], max_chainlen: usize) -> Insert {
        // Lock both stripes in ascending order (one lock if they coincide).
        let (_g1, _g2, buckets) = loop {
            let nb = self.nbuckets();
            let b = [reciprocal_scale(keys[0].2, nb) as usize, reciprocal_scale(keys[1].2, nb) as usize];
            let s = [stripe_of(b[0], nb), stripe_of(b[1], nb)];
            let (first, second) = (s[0].min(s[1]), s[0].max(s[1]));
            let g1 = self.stripes[first].lock();
            let g2 = if first == second { None } else { Some(self.stripes[second].lock()) };
            if g1.nbuckets == nb && g2.as_ref().is_none_or(|g| g.nbuckets == nb) {
                break (g1, g2, b);
            }
        };
        for (i, (t, zone_id, hash)) in keys.iter().enumerate() {
            for (len, sd) in self.chain(buckets[i]).enumerate() {
                let Some(s) = self.slot_ref(sd >> 1) else { continue };
                if s.link(sd).hash.load(Relaxed) == *hash {
                    let e = s.entry.lock();
                    let d = dir_of(sd);
                    if e.live
                        && e.confirmed()
                        && !e.dying()
                        && e.zone.id_for(d) == *zone_id
                        && e.tuple(d) == **t
                    {
                        let dir = if i == 0 { Direction::Original } else { Direction::Reply };
                        return Insert::Clash { slot: sd >> 1, dir };
                    }
                }
                if len + 1 > max_chainlen {
                    return Insert::ChainTooLong;
                }
            }
        }
        for (i, b) in buckets.iter().enumerate() {
            self.link(*b, (slot << 1) | i as u32, keys[i].2);
        }
        Insert::Inserted
    }

    /// Links only the reply node of an entry (`nf_ct_resolve_clash_harder`: the original node
    /// is a fake, never findable, and the entry is hidden from listings). False when the
    /// reply tuple is already there.
    pub fn insert_reply_only(&self, slot: u32, t: &Tuple, zone_id: u16, hash: u32) -> bool {
        let (_g, b) = self.lock_bucket(hash);
        for sd in self.chain(b) {
            let Some(s) = self.slot_ref(sd >> 1) else { continue };
            if s.link(sd).hash.load(Relaxed) != hash {
                continue;
            }
            let e = s.entry.lock();
            let d = dir_of(sd);
            if e.live && e.confirmed() && !e.dying() && e.zone.id_for(d) == zone_id && e.tuple(d) == *t {
                return false;
            }
        }
        self.link(b, (slot << 1) | 1, hash);
        self.reply_only.lock().push(slot);
        true
    }

    /// Unlinks both nodes of an entry (a reply-only entry has only its reply node).
    pub fn unlink(&self, slot: u32) {
        for dir in [Direction::Original, Direction::Reply] {
            let (_stripe, b) = self.lock_bucket(self.hash(slot, dir));
            self.unlink_node(b, (slot << 1) | dir as u32);
        }
        let mut ro = self.reply_only.lock();
        if !ro.is_empty() {
            ro.retain(|s| *s != slot);
        }
    }

    /// The entries linked by their reply node only (NAT clashes), for the collector.
    pub fn reply_only_slots(&self) -> Vec<u32> {
        self.reply_only.lock().clone()
    }

    /// The distinct slots linked in bucket `b` (either direction), in chain order.
    pub fn bucket_slots(&self, b: u32, out: &mut Vec<u32>) {
        out.clear();
        let b = b as usize;
        let _stripe = self.lock_index(b);
        for sd in self.chain(b) {
            if !out.contains(&(sd >> 1)) {
                out.push(sd >> 1);
            }
        }
    }

    /// Every linked entry's slot, once each, in bucket order of its original node.
    pub fn slots(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let nb = self.nbuckets() as usize;
        for b in 0..nb {
            let _stripe = self.lock_index(b);
            out.extend(self.chain(b).filter(|sd| sd & 1 == 0).map(|sd| sd >> 1));
        }
        out
    }

    /// Every slab slot ever handed out (live or free): for walks that must also meet the
    /// unconfirmed entries no bucket links (the caller checks each slot's `live`).
    pub fn allocated_slots(&self) -> std::ops::Range<u32> {
        let n = self.next_slot.load(Relaxed).min((MAX_CHUNKS * CHUNK) as u32);
        0..n
    }

    /// Number of nodes in each bucket's chain, for diagnostics and tests.
    pub fn chain_lengths(&self) -> Vec<usize> {
        let nb = self.nbuckets() as usize;
        (0..nb)
            .map(|b| {
                let _stripe = self.lock_index(b);
                self.chain(b).count()
            })
            .collect()
    }

    /// `nf_conntrack_hash_resize`: rehash every node into `nbuckets` buckets.
    pub fn resize(&self, nbuckets: u32) {
        let nbuckets = nbuckets.max(1);
        let mut guards: Vec<_> = self.stripes.iter().map(|s| s.lock()).collect();
        let old = self.nbuckets() as usize;
        // Collected stripe by stripe and relinked at the heads in that order, as nfct always
        // has, so listings after a resize keep their order.
        let mut all = Vec::new();
        for s in 0..STRIPES {
            for b in (s..old).step_by(STRIPES) {
                all.extend(self.chain(b));
            }
        }
        for b in 0..old {
            if let Some(h) = self.head(b) {
                h.store(NIL, Relaxed);
            }
        }
        self.alloc_heads(nbuckets);
        for b in old..nbuckets as usize {
            if let Some(h) = self.head(b) {
                h.store(NIL, Relaxed);
            }
        }
        for g in guards.iter_mut() {
            g.nbuckets = nbuckets;
        }
        for &sd in &all {
            let h = self.hash(sd >> 1, dir_of(sd));
            self.link(reciprocal_scale(h, nbuckets) as usize, sd, h);
        }
        self.nbuckets.store(nbuckets, std::sync::atomic::Ordering::Release);
    }
}

/// Slab slots handed out beyond which a dropped table frees its slab on a thread of its own.
const BACKGROUND_FREE_SLOTS: u32 = 1 << 14;

impl Drop for Table {
    /// Freeing a large slab touches every slot (each entry's extensions) and gives tens of MiB
    /// back to the system, about 70 ns per slot: on a thread of its own, so that whoever drops
    /// the table (a command about to print its result and exit) does not wait for it. If that
    /// thread cannot be started, the slab is freed here.
    fn drop(&mut self) {
        if self.next_slot.load(Relaxed) < BACKGROUND_FREE_SLOTS {
            return;
        }
        let chunks = std::mem::take(&mut self.chunks);
        let _ = std::thread::Builder::new().name("nfct-free".into()).spawn(move || drop(chunks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::IPS_CONFIRMED;

    #[test]
    fn large_and_small_tables_drop_cleanly() {
        // A table past the bound frees its slab on a thread of its own (the time it saves is
        // in benches/RESULTS.md), a small one in place: both run without a panic.
        let tab = Table::new(1 << 10);
        let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, 1, 2);
        for i in 0..BACKGROUND_FREE_SLOTS + 5 {
            assert!(tab.alloc(i, entry(t)).is_some());
        }
        assert!(tab.allocated_slots().end >= BACKGROUND_FREE_SLOTS);
        drop(tab);
        let small = Table::new(4);
        assert!(small.alloc(1, entry(t)).is_some());
        drop(small);
    }

    fn entry(t: Tuple) -> Conn {
        Conn { orig: t, status: IPS_CONFIRMED, timeout: 100, ..Conn::default() }
    }

    /// More threads than this machine's cores wait on one table lock while its holder sleeps
    /// (descheduled), then all take it in turn: each increment made under the lock is kept,
    /// and nobody waits for ever.
    #[test]
    fn table_locks_exclude_and_progress_when_oversubscribed() {
        let lock = std::sync::Arc::new(Lock::new(0u64));
        let held = lock.lock();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(30));
        drop(held);
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(*lock.lock(), 6 * 20_000);
    }

    #[test]
    fn slot_is_two_cache_lines() {
        assert_eq!(std::mem::size_of::<Conn>(), 104);
        assert_eq!(std::mem::size_of::<Slot>(), 128);
        assert_eq!(std::mem::align_of::<Slot>(), 64);
    }

    /// `prefetch` says which keys no node of their chain holds (within its depth): those of
    /// entries linked are found, others are not, however the chains share buckets.
    #[test]
    fn prefetch_marks_the_keys_no_chain_holds() {
        let tab = Table::new(4);
        let mut linked = Vec::new();
        for i in 0..12u32 {
            let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, i as u16, 2);
            let r = t.invert().unwrap();
            let (h, rh) = (i.wrapping_mul(0x9e37_79b9), i.wrapping_mul(0x85eb_ca6b) ^ 1);
            let slot = tab.alloc(h, entry(t)).unwrap();
            if i % 2 == 0 {
                assert_eq!(tab.insert(slot, [(&t, 0, h), (&r, 0, rh)], 50), Insert::Inserted);
                linked.push((h, rh));
            }
        }
        // Four buckets, six entries linked under two hashes each: three nodes a chain.
        let newest = [linked[5].0, linked[5].1, linked[4].1, 0x1234_5678, 1u32.wrapping_mul(0x9e37_79b9)];
        assert_eq!(tab.prefetch(&newest), 0b11000, "found: the linked; missing: the others");
        assert_eq!(tab.prefetch(&[]), 0);
        // The newest nodes are at the heads of their chains, never deeper than the walk goes.
        let many: Vec<u32> = (0..40).map(|i| if i % 2 == 0 { linked[5].0 } else { linked[5].1 }).collect();
        assert_eq!(tab.prefetch(&many), 0, "a mask over the first BULK keys");
    }

    #[test]
    fn insert_find_unlink_free() {
        let tab = Table::new(16);
        let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, 1, 2);
        let r = t.invert().unwrap();
        let slot = tab.alloc(7, entry(t)).unwrap();
        assert_eq!(tab.insert(slot, [(&t, 0, 7), (&r, 0, 9)], 50), Insert::Inserted);
        match tab.find(&r, Zone::default(), 9, 0) {
            Found::Hit { slot: s, dir, .. } => assert_eq!((s, dir), (slot, Direction::Reply)),
            _ => panic!("reply tuple not found"),
        }
        assert!(
            matches!(tab.find(&t, Zone::default(), 7, 200), Found::Reap(x) if x.as_slice() == [(slot, 0)])
        );
        assert!(matches!(tab.find(&t, Zone { id: 5, dir: Zone::DIR_BOTH }, 7, 0), Found::Miss));
        assert_eq!(
            tab.insert(slot, [(&t, 0, 7), (&r, 0, 9)], 50),
            Insert::Clash { slot, dir: Direction::Original }
        );
        tab.unlink(slot);
        assert!(matches!(tab.find(&t, Zone::default(), 7, 0), Found::Miss));
        let gen = tab.slot(slot).unwrap().lock().gen;
        tab.free(slot, gen.wrapping_add(7));
        assert_eq!(tab.slot(slot).unwrap().lock().gen, gen, "a stale generation frees nothing");
        tab.free(slot, gen);
        assert_eq!(tab.slot(slot).unwrap().lock().gen, gen + 1);
        assert_eq!(tab.slots().len(), 0);
    }

    #[test]
    fn resize_keeps_entries() {
        let tab = Table::new(4);
        let mut keys = Vec::new();
        for p in 0..100u16 {
            let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, p, 53);
            let r = t.invert().unwrap();
            let (h0, h1) =
                (u32::from(p).wrapping_mul(0x9e37_79b9), u32::from(p).wrapping_mul(0x85eb_ca6b) | 1);
            let slot = tab.alloc(h0, entry(t)).unwrap();
            assert_eq!(tab.insert(slot, [(&t, 0, h0), (&r, 0, h1)], 1000), Insert::Inserted);
            keys.push((r, h1));
        }
        tab.resize(1000);
        assert_eq!(tab.chain_lengths().iter().sum::<usize>(), 200);
        for (r, h) in keys {
            assert!(matches!(tab.find(&r, Zone::default(), h, 0), Found::Hit { .. }));
        }
        assert_eq!(tab.slots().len(), 100);
    }

    #[test]
    fn find_bulk_answers_as_find() {
        let tab = Table::new(8);
        let h = |t: &Tuple| crate::tuple::TupleHasher::seeded(3).hash(t, 0);
        let tuple =
            |p: u16| Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, p, 53);
        for p in 0..40u16 {
            let (t, r) = (tuple(p), tuple(p).invert().unwrap());
            let slot = tab.alloc(h(&t), entry(t)).unwrap();
            assert_eq!(tab.insert(slot, [(&t, 0, h(&t)), (&r, 0, h(&r))], 1000), Insert::Inserted);
        }
        // Hits in both directions, misses, and the same flow twice in one batch.
        let keys: Vec<Key> = (0..70u16)
            .map(|i| {
                let t = if i % 3 == 0 { tuple(i % 50).invert().unwrap() } else { tuple(i % 50) };
                Key { tuple: t, zone: Zone::default(), hash: h(&t) }
            })
            .collect();
        let describe = |f: Found<'_>| match f {
            Found::Hit { slot, dir, entry } => Some((slot, dir, entry.gen)),
            _ => None,
        };
        let mut bulk = Vec::new();
        tab.find_bulk(&keys, 0, |i, f| bulk.push((i, describe(f))));
        let single: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i, describe(tab.find(&k.tuple, k.zone, k.hash, 0))))
            .collect();
        assert_eq!(bulk, single);
        assert_eq!(bulk.iter().filter(|(_, f)| f.is_some()).count(), 60);
    }

    #[test]
    fn chain_limit() {
        let tab = Table::new(1);
        for p in 0..10u16 {
            let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, p, 53);
            let r = t.invert().unwrap();
            let slot = tab.alloc(p.into(), entry(t)).unwrap();
            let res = tab.insert(slot, [(&t, 0, p.into()), (&r, 0, 100 + u32::from(p))], 5);
            assert_eq!(res == Insert::ChainTooLong, p >= 3, "p={p}");
        }
    }

    /// Stripes guard runs of buckets, every bucket has one, and the buckets of one worker's
    /// ranges (of a threaded replay's `n`) never share a stripe with another's: nor does the
    /// stripe of its free list.
    #[test]
    fn workers_ranges_have_stripes_of_their_own() {
        use crate::tuple::RANGE_BITS;
        for nb in [1u32, 5, 1000, 4096, 300_000, 1 << 18, 1 << 20] {
            assert!((0..nb as usize).all(|b| stripe_of(b, nb) < STRIPES));
        }
        for nb in [1u32 << 12, 1 << 16, 1 << 18, 1 << 20] {
            // Bucket b holds the hashes whose top bits are its range.
            let range = |b: usize| (b << RANGE_BITS) / nb as usize;
            for n in 1..=HOMES {
                let worker = |r: usize| (r * n) >> RANGE_BITS;
                let mut owner = vec![None; STRIPES];
                for b in 0..nb as usize {
                    let w = worker(range(b));
                    let o = owner[stripe_of(b, nb)].get_or_insert(w);
                    assert_eq!(*o, w, "{nb} buckets, {n} workers: bucket {b} shares a stripe");
                }
                for i in 0..n {
                    set_slab_home(i, n);
                    let home = owner[slab_home()];
                    assert_eq!(home, Some(i), "{nb} buckets: worker {i} of {n}'s free list");
                }
            }
        }
        set_slab_home(0, 1);
    }

    /// One thread's new entries sit side by side in the slab, whatever their buckets; freed
    /// slots are used again before the slab grows, those another thread freed included.
    #[test]
    fn a_threads_entries_sit_together_and_freed_slots_come_back() {
        let tab = Table::new(1 << 12);
        let t = Tuple::new_v4("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 17, 1, 2);
        let hashes = |n: u32| (0..n).map(|i| i.wrapping_mul(0x9e37_79b9));
        let slots: Vec<u32> = hashes(100).map(|h| tab.alloc(h, entry(t)).unwrap()).collect();
        assert_eq!(slots, (0..100).collect::<Vec<_>>(), "in order of allocation, not of bucket");
        // Another thread, on a list of its own, frees them all; this thread takes them back
        // before the slab grows.
        std::thread::scope(|s| {
            s.spawn(|| {
                set_slab_home(1, 2);
                for &slot in &slots {
                    let gen = tab.slot(slot).unwrap().lock().gen;
                    tab.free(slot, gen);
                }
                // Its own new entry comes from what it freed.
                let again = tab.alloc(7, entry(t)).unwrap();
                assert!(slots.contains(&again));
                let gen = tab.slot(again).unwrap().lock().gen;
                tab.free(again, gen);
            });
        });
        let grown = tab.allocated_slots().end;
        let back: Vec<u32> = hashes(100).map(|h| tab.alloc(h, entry(t)).unwrap()).collect();
        assert_eq!(tab.allocated_slots().end, grown, "no new slots while freed ones wait");
        // This thread's list still held the rest of its last block of fresh slots (100..128):
        // those first, then what the other thread freed.
        assert_eq!(back[..28], (100..128).collect::<Vec<_>>());
        assert!(back[28..].iter().all(|s| slots.contains(s)));
    }
}
