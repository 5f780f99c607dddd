//! The conntrack hash table (`nf_conntrack_hash`): one bucket array whose buckets are guarded
//! by an array of striped locks, each confirmed entry linked under both its original and its
//! reply tuple (spec §4.3), entries kept in a slab of slots each behind its own lock.
//!
//! Lock order, everywhere: stripe locks in ascending stripe order, then entry locks. Nothing
//! takes a stripe lock while holding an entry lock. A lookup locks one stripe, walks the
//! bucket comparing the 32-bit hash stored in each node (no entry is touched on a mismatch),
//! locks the candidate entry to compare the tuple, then lets the stripe go and hands back the
//! entry still locked.

pub mod entry;

use crate::tuple::{reciprocal_scale, Direction, Tuple, Zone};
use entry::Entry;
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The end of a chain (the kernel uses "nulls" markers).
const NIL: u32 = u32::MAX;
/// Number of lock stripes (the kernel's `CONNTRACK_LOCKS`).
pub const STRIPES: usize = 1024;
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;
const MAX_CHUNKS: usize = 1 << 15;
/// Slots a stripe takes from the shared slab at a time when its free list runs dry.
const REFILL: u32 = 32;

/// A bucket node: the tuple's hash, the slot of the entry and the direction it is linked for.
#[derive(Clone, Copy, Debug)]
struct Node {
    hash: u32,
    slot_dir: u32,
    next: u32,
}

impl Node {
    #[inline]
    fn slot(&self) -> u32 {
        self.slot_dir >> 1
    }
    #[inline]
    fn dir(&self) -> Direction {
        if self.slot_dir & 1 == 0 {
            Direction::Original
        } else {
            Direction::Reply
        }
    }
}

/// The buckets of one lock stripe (bucket `b` lives in stripe `b % STRIPES` at `b / STRIPES`),
/// their nodes, and the stripe's list of free slab slots.
#[derive(Debug, Default)]
struct Stripe {
    nbuckets: u32,
    heads: Vec<u32>,
    nodes: Vec<Node>,
    free_node: u32,
    free_slots: Vec<u32>,
}

impl Stripe {
    fn alloc_node(&mut self, n: Node) -> u32 {
        if self.free_node != NIL {
            let i = self.free_node;
            let slot = &mut self.nodes[i as usize];
            self.free_node = slot.next;
            *slot = n;
            i
        } else {
            self.nodes.push(n);
            (self.nodes.len() - 1) as u32
        }
    }

    fn link(&mut self, local: usize, hash: u32, slot_dir: u32) {
        let head = self.heads[local];
        let i = self.alloc_node(Node { hash, slot_dir, next: head });
        self.heads[local] = i;
    }

    /// Removes the node for `slot_dir` from a bucket; false if it was not there.
    fn unlink(&mut self, local: usize, slot_dir: u32) -> bool {
        let mut prev = NIL;
        let mut cur = self.heads[local];
        while cur != NIL {
            let n = self.nodes[cur as usize];
            if n.slot_dir == slot_dir {
                if prev == NIL {
                    self.heads[local] = n.next;
                } else {
                    self.nodes[prev as usize].next = n.next;
                }
                self.nodes[cur as usize].next = self.free_node;
                self.free_node = cur;
                return true;
            }
            prev = cur;
            cur = n.next;
        }
        false
    }

    fn chain(&self, local: usize) -> ChainIter<'_> {
        ChainIter { nodes: &self.nodes, cur: self.heads.get(local).copied().unwrap_or(NIL) }
    }
}

struct ChainIter<'a> {
    nodes: &'a [Node],
    cur: u32,
}

impl Iterator for ChainIter<'_> {
    type Item = Node;
    #[inline]
    fn next(&mut self) -> Option<Node> {
        let n = *self.nodes.get(self.cur as usize)?;
        self.cur = n.next;
        Some(n)
    }
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
    Hit {
        slot: u32,
        dir: Direction,
        entry: MutexGuard<'a, Entry>,
    },
    /// The walk met expired entries before any match: the caller reaps them (as the kernel's
    /// lookup does, `nf_ct_gc_expired`) and looks again.
    Reap(Expired),
    Miss,
}

/// Result of linking a new entry at confirmation.
#[derive(Debug, PartialEq, Eq)]
pub enum Insert {
    Inserted,
    /// A confirmed entry already holds the tuple of `dir` (`nf_ct_resolve_clash` decides).
    Clash {
        slot: u32,
        dir: Direction,
    },
    /// A chain was longer than the limit before a match was found.
    ChainTooLong,
}

/// A fixed block of slab slots, allocated once and never moved.
type Chunk = Box<[Mutex<Entry>]>;

/// The lock-striped table.
pub struct Table {
    stripes: Box<[Mutex<Stripe>]>,
    nbuckets: AtomicU32,
    chunks: Box<[OnceLock<Chunk>]>,
    next_slot: AtomicU32,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("nbuckets", &self.nbuckets()).finish_non_exhaustive()
    }
}

fn stripe_layout(nbuckets: u32, s: usize) -> usize {
    let nb = nbuckets as usize;
    if s < nb % STRIPES {
        nb / STRIPES + 1
    } else {
        nb / STRIPES
    }
}

impl Table {
    /// A table of `nbuckets` buckets (at least 1).
    pub fn new(nbuckets: u32) -> Table {
        let nbuckets = nbuckets.max(1);
        let stripes = (0..STRIPES)
            .map(|s| {
                Mutex::new(Stripe {
                    nbuckets,
                    heads: vec![NIL; stripe_layout(nbuckets, s)],
                    free_node: NIL,
                    ..Stripe::default()
                })
            })
            .collect();
        Table {
            stripes,
            nbuckets: AtomicU32::new(nbuckets),
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            next_slot: AtomicU32::new(0),
        }
    }

    #[inline]
    pub fn nbuckets(&self) -> u32 {
        self.nbuckets.load(Ordering::Acquire)
    }

    /// The bucket a hash falls in.
    #[inline]
    pub fn bucket(&self, hash: u32) -> u32 {
        reciprocal_scale(hash, self.nbuckets())
    }

    /// Locks the stripe of bucket `b`, retrying if a resize moved it meanwhile.
    fn lock_bucket(&self, hash: u32) -> (MutexGuard<'_, Stripe>, usize) {
        loop {
            let nb = self.nbuckets();
            let b = reciprocal_scale(hash, nb) as usize;
            let g = self.stripes[b % STRIPES].lock();
            if g.nbuckets == nb {
                return (g, b / STRIPES);
            }
        }
    }

    /// The lock of a slab slot.
    #[inline]
    pub fn slot(&self, slot: u32) -> Option<&Mutex<Entry>> {
        let chunk = self.chunks.get((slot >> CHUNK_BITS) as usize)?.get()?;
        chunk.get(slot as usize & (CHUNK - 1))
    }

    /// Takes a free slot for a new entry (allocated near the bucket of `orig_hash`) and stores
    /// `e` in it. None when the slab is exhausted.
    pub fn alloc(&self, orig_hash: u32, mut e: Entry) -> Option<u32> {
        let (mut stripe, _) = self.lock_bucket(orig_hash);
        if stripe.free_slots.is_empty() {
            let first = self.next_slot.fetch_add(REFILL, Ordering::Relaxed);
            let last = first.checked_add(REFILL)?;
            if (last as usize) > MAX_CHUNKS * CHUNK {
                return None;
            }
            for s in first..last {
                let c = (s >> CHUNK_BITS) as usize;
                self.chunks[c].get_or_init(|| (0..CHUNK).map(|_| Mutex::new(Entry::default())).collect());
            }
            stripe.free_slots.extend((first..last).rev());
        }
        let slot = stripe.free_slots.pop()?;
        drop(stripe);
        let mut g = self.slot(slot)?.lock();
        e.gen = g.gen;
        e.live = true;
        *g = e;
        Some(slot)
    }

    /// Returns a slot to the free lists; its generation moves on so stale handles notice.
    pub fn free(&self, slot: u32) {
        let Some(lock) = self.slot(slot) else { return };
        let hash = {
            let mut g = lock.lock();
            if !g.live {
                return;
            }
            let gen = g.gen.wrapping_add(1);
            let hash = g.hash[0];
            *g = Entry { gen, ..Entry::default() };
            hash
        };
        let (mut stripe, _) = self.lock_bucket(hash);
        stripe.free_slots.push(slot);
    }

    /// `____nf_conntrack_find`: the confirmed entry whose tuple in some direction equals `t`,
    /// whose zone id for that direction equals `zone`'s id for that direction.
    pub fn find(&self, t: &Tuple, zone: Zone, hash: u32, now: u64) -> Found<'_> {
        let (stripe, local) = self.lock_bucket(hash);
        let mut expired = Expired::default();
        for n in stripe.chain(local) {
            let Some(lock) = self.slot(n.slot()) else { continue };
            let e = lock.lock();
            if !e.live || !e.confirmed() || e.dying() {
                continue;
            }
            // Every expired entry the walk meets is reaped, matching or not.
            if e.expired(now) {
                if !expired.as_slice().iter().any(|&(s, _)| s == n.slot()) {
                    expired.push(n.slot(), e.gen);
                }
                continue;
            }
            let dir = n.dir();
            if n.hash != hash || e.tuple[dir.index()] != *t || e.zone.id_for(dir) != zone.id_for(dir) {
                continue;
            }
            if expired.len > 0 {
                return Found::Reap(expired);
            }
            drop(stripe);
            return Found::Hit { slot: n.slot(), dir, entry: e };
        }
        if expired.len > 0 {
            Found::Reap(expired)
        } else {
            Found::Miss
        }
    }

    /// `__nf_conntrack_confirm`'s insertion: scans both buckets for a confirmed entry with the
    /// same key (and for chains longer than `max_chainlen`), then links both nodes.
    /// `keys` are the (tuple, zone id, hash) of the original and reply directions.
    pub fn insert(&self, slot: u32, keys: [(&Tuple, u16, u32); 2], max_chainlen: usize) -> Insert {
        // Lock both stripes in ascending order (one lock if they coincide).
        let (mut lo, mut hi, locals, stripe_of) = loop {
            let nb = self.nbuckets();
            let b = [reciprocal_scale(keys[0].2, nb) as usize, reciprocal_scale(keys[1].2, nb) as usize];
            let s = [b[0] % STRIPES, b[1] % STRIPES];
            let (first, second) = (s[0].min(s[1]), s[0].max(s[1]));
            let g1 = self.stripes[first].lock();
            let g2 = if first == second { None } else { Some(self.stripes[second].lock()) };
            if g1.nbuckets == nb && g2.as_ref().is_none_or(|g| g.nbuckets == nb) {
                // Which guard holds direction i: 0 = the first (lower) stripe, 1 = the second.
                let which = [usize::from(s[0] != first), usize::from(s[1] != first)];
                break (g1, g2, [b[0] / STRIPES, b[1] / STRIPES], which);
            }
        };
        for (i, (t, zone_id, hash)) in keys.iter().enumerate() {
            let stripe: &Stripe = match (stripe_of[i], hi.as_ref()) {
                (1, Some(g)) => g,
                _ => &lo,
            };
            for (len, n) in stripe.chain(locals[i]).enumerate() {
                if n.hash == *hash {
                    if let Some(lock) = self.slot(n.slot()) {
                        let e = lock.lock();
                        let d = n.dir();
                        if e.live
                            && e.confirmed()
                            && !e.dying()
                            && e.tuple[d.index()] == **t
                            && e.zone.id_for(d) == *zone_id
                        {
                            let dir = if i == 0 { Direction::Original } else { Direction::Reply };
                            return Insert::Clash { slot: n.slot(), dir };
                        }
                    }
                }
                if len + 1 > max_chainlen {
                    return Insert::ChainTooLong;
                }
            }
        }
        for i in 0..2 {
            let stripe: &mut Stripe = match (stripe_of[i], hi.as_mut()) {
                (1, Some(g)) => g,
                _ => &mut lo,
            };
            stripe.link(locals[i], keys[i].2, (slot << 1) | i as u32);
        }
        Insert::Inserted
    }

    /// Unlinks both nodes of an entry (`hash` = its original and reply hashes).
    pub fn unlink(&self, slot: u32, hashes: [u32; 2]) {
        for (i, h) in hashes.iter().enumerate() {
            let (mut stripe, local) = self.lock_bucket(*h);
            stripe.unlink(local, (slot << 1) | i as u32);
        }
    }

    /// The distinct slots linked in bucket `b` (either direction), in chain order.
    pub fn bucket_slots(&self, b: u32, out: &mut Vec<u32>) {
        out.clear();
        let b = b as usize;
        let stripe = self.stripes[b % STRIPES].lock();
        for n in stripe.chain(b / STRIPES) {
            if !out.contains(&n.slot()) {
                out.push(n.slot());
            }
        }
    }

    /// Every linked entry's slot, once each, in bucket order of its original node.
    pub fn slots(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let nb = self.nbuckets() as usize;
        for b in 0..nb {
            let stripe = self.stripes[b % STRIPES].lock();
            out.extend(
                stripe.chain(b / STRIPES).filter(|n| n.dir() == Direction::Original).map(|n| n.slot()),
            );
        }
        out
    }

    /// Number of nodes in each bucket's chain, for diagnostics and tests.
    pub fn chain_lengths(&self) -> Vec<usize> {
        let nb = self.nbuckets() as usize;
        (0..nb).map(|b| self.stripes[b % STRIPES].lock().chain(b / STRIPES).count()).collect()
    }

    /// `nf_conntrack_hash_resize`: rehash every node into `nbuckets` buckets.
    pub fn resize(&self, nbuckets: u32) {
        let nbuckets = nbuckets.max(1);
        let mut guards: Vec<_> = self.stripes.iter().map(|s| s.lock()).collect();
        let mut all = Vec::new();
        for g in guards.iter_mut() {
            for local in 0..g.heads.len() {
                all.extend(g.chain(local));
            }
            g.nbuckets = nbuckets;
            g.nodes.clear();
            g.free_node = NIL;
        }
        for (s, g) in guards.iter_mut().enumerate() {
            g.heads = vec![NIL; stripe_layout(nbuckets, s)];
        }
        for n in all {
            let b = reciprocal_scale(n.hash, nbuckets) as usize;
            guards[b % STRIPES].link(b / STRIPES, n.hash, n.slot_dir);
        }
        self.nbuckets.store(nbuckets, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::entry::IPS_CONFIRMED;

    fn entry(t: Tuple) -> Entry {
        Entry { tuple: [t, t.invert().unwrap()], status: IPS_CONFIRMED, timeout: 100, ..Entry::default() }
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
        tab.unlink(slot, [7, 9]);
        assert!(matches!(tab.find(&t, Zone::default(), 7, 0), Found::Miss));
        let gen = tab.slot(slot).unwrap().lock().gen;
        tab.free(slot);
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
}
