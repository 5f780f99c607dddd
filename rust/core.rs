//! The conntrack core: `nf_conntrack_in` (classify a packet, find or create its entry, run its
//! tracker), `init_conntrack` with the table limit and `early_drop`, confirmation with clash
//! resolution, deletion, the statistics and the garbage collector on the table's clock
//! (spec §2, §3, §5, §11, §12).

use crate::conn::{Conn, ConnView, CtExt};
use crate::events::{Event, EventKind, EventSink};
use crate::proto::icmp::{self, IcmpPre};
use crate::proto::tcp::RstTimeout;
use crate::proto::{self, PacketCtx, PacketVerdict};
use crate::stats::Stats;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::table::{Expired, Found, Insert, Table, BULK};
use crate::tuple::{get_tuple, Direction, HashHint, Tuple, TupleHasher, Zone};
use crate::uapi::{
    Hook, AF_INET, AF_INET6, IPCT_MARK, IPCT_NEW, IPCT_PROTOINFO, IPCT_RELATED, IPCT_REPLY, IPPROTO_DCCP,
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPS_ASSURED, IPS_CONFIRMED, IPS_DYING,
    IPS_EXPECTED, IPS_FIXED_TIMEOUT, IPS_NAT_CLASH, IPS_SEEN_REPLY, IP_CT_ESTABLISHED,
    IP_CT_ESTABLISHED_REPLY, IP_CT_IS_REPLY, IP_CT_NEW, IP_CT_RELATED, IP_CT_RELATED_REPLY, IP_CT_UNTRACKED,
    NF_ACCEPT, NF_CT_STATE_ESTABLISHED_BIT, NF_CT_STATE_INVALID_BIT, NF_CT_STATE_NEW_BIT,
    NF_CT_STATE_RELATED_BIT, NF_CT_STATE_UNTRACKED_BIT, NF_DROP,
};
use crate::wire::ip::{self, L3};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const NS: u64 = 1_000_000_000;
/// `NF_CT_EVICTION_RANGE`.
const EVICTION_RANGE: u32 = 8;

/// The conntrack reference a packet carries (`skb->_nfct`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CtRef {
    #[default]
    None,
    /// Marked untracked (ICMPv6 neighbour discovery, `notrack`).
    Untracked,
    /// An entry and the packet's ctinfo. The packet holds a reference on the entry.
    Ct { slot: u32, gen: u32, ctinfo: u8 },
}

/// The per-packet conntrack state that travels with a packet from `in` to `confirm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbCt {
    pub nfct: CtRef,
    /// The zone a template gave the packet before conntrack (`ct zone set`, `CT --zone`, spec
    /// §15); conntrack takes it and drops the template.
    pub tmpl: Option<Zone>,
    /// Why the packet is INVALID or dropped (the kernel's log message).
    pub reason: Option<&'static str>,
}

/// What an nft rule's `ct state` sees of a packet (spec §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtState {
    /// The name nft and `nfct replay --output packets` use.
    pub fn name(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::Invalid => "invalid",
            CtState::Untracked => "untracked",
        }
    }

    /// The bit `ct state` matches (`NF_CT_STATE_*_BIT`).
    pub fn bit(self) -> u32 {
        match self {
            CtState::New => NF_CT_STATE_NEW_BIT,
            CtState::Established => NF_CT_STATE_ESTABLISHED_BIT,
            CtState::Related => NF_CT_STATE_RELATED_BIT,
            CtState::Invalid => NF_CT_STATE_INVALID_BIT,
            CtState::Untracked => NF_CT_STATE_UNTRACKED_BIT,
        }
    }
}

impl SkbCt {
    /// The `ct state` of a packet with this conntrack state.
    pub fn state(&self) -> CtState {
        match self.nfct {
            // A template attached after conntrack (`ct zone set` on an INVALID packet) is a
            // ct with IP_CT_NEW to later rules, as in nft.
            CtRef::None if self.tmpl.is_some() => CtState::New,
            CtRef::None => CtState::Invalid,
            CtRef::Untracked => CtState::Untracked,
            CtRef::Ct { ctinfo, .. } => match ctinfo % IP_CT_IS_REPLY {
                IP_CT_ESTABLISHED => CtState::Established,
                IP_CT_RELATED => CtState::Related,
                _ => CtState::New,
            },
        }
    }

    /// The ctinfo, if a conntrack entry is attached.
    pub fn ctinfo(&self) -> Option<u8> {
        match self.nfct {
            CtRef::Ct { ctinfo, .. } => Some(ctinfo),
            CtRef::Untracked => Some(IP_CT_UNTRACKED),
            CtRef::None => None,
        }
    }
}

/// Counters kept with atomics so threads can share a table.
#[derive(Debug, Default)]
struct AtomicStats {
    found: AtomicU64,
    invalid: AtomicU64,
    insert_failed: AtomicU64,
    drop: AtomicU64,
    early_drop: AtomicU64,
    error: AtomicU64,
    clash_resolve: AtomicU64,
    chaintoolong: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// `nf_conntrack_count`, the next entry id and the random state of the chain limit: written by
/// every new entry, alone on their cache lines (two, for the adjacent-line prefetch).
#[repr(align(128))]
#[derive(Debug)]
struct Created {
    count: AtomicU64,
    next_id: AtomicU32,
    rng: AtomicU64,
}

/// Options fixed when a namespace's conntrack is created.
#[derive(Clone, Debug, Default)]
pub struct CtOptions {
    /// A fixed hash seed for reproducible bucket placement (random when None).
    pub seed: Option<u64>,
    /// Which kernel to follow where 6.12 and 6.18 differ (spec §7.10).
    pub rst_timeout: RstTimeout,
}

/// One network namespace's conntrack (`struct netns_ct` with the table it uses): the table,
/// the netfilter sysctls, the statistics, the event listeners and the collector's pacing.
/// Time is always passed in: nothing here reads a clock.
#[derive(Debug)]
pub struct Conntrack {
    pub table: Table,
    pub sysctl: Sysctl,
    hasher: TupleHasher,
    /// What every new entry writes, apart from what every packet reads (threads creating
    /// entries at once would otherwise take the hash keys' cache line from each other).
    created: Created,
    stats: AtomicStats,
    rst_timeout: RstTimeout,
    /// The event listeners' queue (`conntrack -E`).
    pub events: EventSink,
    /// When the garbage collector runs next (`gc_worker` pacing, spec §11.4), ns.
    next_gc: AtomicU64,
    /// The entries `early_drop` evicted, when someone asked to keep them (a report).
    evictions: Mutex<Option<EvictionLog>>,
}

/// An entry `early_drop` evicted to make room: when, and the entry as it was.
#[derive(Clone, Debug)]
pub struct Eviction {
    pub tstamp: u64,
    pub view: ConnView,
}

/// The evictions kept (at most `cap`; the others only counted).
#[derive(Debug, Default)]
pub struct EvictionLog {
    pub kept: Vec<Eviction>,
    pub cap: usize,
    pub more: u64,
}

/// Outcome of `init_conntrack`.
enum Init {
    Created(u32),
    NotInvertible,
    TableFull,
}

impl Conntrack {
    /// A table with the Linux 6.18 defaults, changed by `sysctl` pairs.
    pub fn new(opts: CtOptions, sysctl: Sysctl) -> Conntrack {
        let nbuckets = sysctl.get(SysctlKey::Buckets) as u32;
        let hasher = match opts.seed {
            Some(s) => TupleHasher::seeded(s),
            None => TupleHasher::random(),
        };
        let rng_seed = opts.seed.unwrap_or_else(|| u64::from(hasher.hash(&Tuple::default(), 0))) | 1;
        Conntrack {
            table: Table::new(nbuckets),
            sysctl,
            hasher,
            created: Created {
                count: AtomicU64::new(0),
                next_id: AtomicU32::new(1),
                rng: AtomicU64::new(rng_seed),
            },
            stats: AtomicStats::default(),
            rst_timeout: opts.rst_timeout,
            events: EventSink::default(),
            next_gc: AtomicU64::new(0),
            evictions: Mutex::new(None),
        }
    }

    /// Starts keeping the entries `early_drop` evicts (at most `cap` of them; the rest are
    /// counted), or stops with `cap` None. Returns what was kept so far.
    pub fn keep_evictions(&self, cap: Option<usize>) -> Option<EvictionLog> {
        let mut g = self.evictions.lock();
        std::mem::replace(&mut *g, cap.map(|cap| EvictionLog { cap, ..EvictionLog::default() }))
    }

    /// Takes the evictions kept since the last call (keeping on).
    pub fn take_evictions(&self) -> (Vec<Eviction>, u64) {
        match self.evictions.lock().as_mut() {
            Some(log) => (std::mem::take(&mut log.kept), std::mem::take(&mut log.more)),
            None => (Vec::new(), 0),
        }
    }

    /// Sets a sysctl the way writing it in /proc does (the bucket count resizes the table).
    pub fn set_sysctl(&self, s: SysctlKey, v: u64) {
        self.sysctl.set(s, v);
        if s == SysctlKey::Buckets {
            self.table.resize(v as u32);
        }
    }

    /// `nf_conntrack_count`: allocated entries, unconfirmed ones included.
    pub fn count(&self) -> u64 {
        self.created.count.load(Ordering::Relaxed)
    }

    /// The statistics as `conntrack -S` shows them.
    pub fn stats(&self) -> Stats {
        let s = &self.stats;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            found: l(&s.found),
            invalid: l(&s.invalid),
            insert_failed: l(&s.insert_failed),
            drop: l(&s.drop),
            early_drop: l(&s.early_drop),
            error: l(&s.error),
            clash_resolve: l(&s.clash_resolve),
            chaintoolong: l(&s.chaintoolong),
            ..Stats::default()
        }
    }

    /// The hash of a tuple with a zone id.
    #[inline]
    pub fn hash(&self, t: &Tuple, zone_id: u16) -> u32 {
        self.hasher.hash(t, zone_id)
    }

    /// Which range of buckets (of 2^[`crate::tuple::RANGE_BITS`]) the flow of packet `pkt`
    /// hashes into, both directions alike (0 for bytes that are not an IP packet): a threaded
    /// replay gives each worker the flows of its own ranges.
    #[inline]
    pub fn flow_range(&self, pkt: &[u8]) -> u32 {
        crate::wire::rss::flow_ends(pkt).map_or(0, |f| self.hasher.flow_range(&f))
    }

    /// A cheap pseudo-random number (xorshift), for the kernel's random chain limit.
    fn random(&self) -> u64 {
        let mut x = self.created.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.created.rng.store(x, Ordering::Relaxed);
        x
    }

    /// `nf_conntrack_in`: classify the packet (`data` starts at its L3 header, family `pf`),
    /// find or create its entry, run its tracker, at time `now` (ns); attaches the result to
    /// `skb`. Returns the verdict.
    pub fn conntrack_in(&self, data: &[u8], now: u64, hook: Hook, pf: u8, skb: &mut SkbCt) -> u32 {
        self.conntrack_in_hinted(data, now, hook, pf, skb, None)
    }

    /// As [`Conntrack::conntrack_in`], with the hash of the packet's tuple computed ahead
    /// (`prefetch_hinted`), used when it is the hash of the tuple the packet turns out to have.
    pub fn conntrack_in_hinted(
        &self,
        data: &[u8],
        now: u64,
        hook: Hook,
        pf: u8,
        skb: &mut SkbCt,
        hint: Option<&HashHint>,
    ) -> u32 {
        if skb.nfct != CtRef::None {
            return NF_ACCEPT;
        }
        let zone = skb.tmpl.take().unwrap_or_default();
        let l3 = match ip::get_l4proto(pf, data) {
            Ok(l3) => l3,
            Err(e) => return self.invalid(skb, e.reason()),
        };
        let l4b = data.get(l3.l4_off..).unwrap_or(&[]);
        let verify_checksum = hook == Hook::PreRouting && self.sysctl.get(SysctlKey::Checksum) != 0;
        let ctx0 = PacketCtx {
            l4: l4b,
            l3num: l3.l3num,
            src: &l3.src,
            dst: &l3.dst,
            len: data.len(),
            dir: Direction::Original,
            now,
            verify_checksum,
        };
        let pre = match (l3.l3num, l3.protonum) {
            (AF_INET, IPPROTO_ICMP) => icmp::icmpv4_error(&ctx0),
            (AF_INET6, IPPROTO_ICMPV6) => icmp::icmpv6_error(&ctx0, l3.hop_limit),
            _ => IcmpPre::Continue,
        };
        match pre {
            IcmpPre::Continue => {}
            IcmpPre::Error(why) => {
                bump(&self.stats.error, 1);
                skb.reason = Some(why);
                return NF_ACCEPT;
            }
            IcmpPre::Untracked => {
                skb.nfct = CtRef::Untracked;
                return NF_ACCEPT;
            }
            IcmpPre::Related { inner_off } => {
                return self.inet_error(&l3, l4b.get(inner_off..).unwrap_or(&[]), zone, now, skb);
            }
        }
        self.resolve_normal_ct(&l3, l4b, zone, ctx0, skb, hint)
    }

    /// `nf_ct_gc_expired` on the entries a lookup met.
    fn reap(&self, expired: &Expired, now: u64) {
        for &(slot, gen) in expired.as_slice() {
            self.delete(slot, gen, now);
        }
    }

    fn invalid(&self, skb: &mut SkbCt, why: &'static str) -> u32 {
        bump(&self.stats.invalid, 1);
        skb.reason = Some(why);
        NF_ACCEPT
    }

    /// `nf_conntrack_inet_error`: an ICMP error is RELATED to the connection of the packet it
    /// quotes, or INVALID (counted in `error`).
    fn inet_error(&self, outer: &L3, inner: &[u8], zone: Zone, now: u64, skb: &mut SkbCt) -> u32 {
        let err = |skb: &mut SkbCt, why| {
            bump(&self.stats.error, 1);
            skb.reason = Some(why);
            NF_ACCEPT
        };
        let Ok(il3) = ip::get_l4proto(outer.l3num, inner) else {
            return err(skb, "nf_ct_icmp: failed to parse inner packet");
        };
        let Some(it) = get_tuple(&il3, inner.get(il3.l4_off..).unwrap_or(&[])) else {
            return err(skb, "nf_ct_icmp: failed to get inner tuple");
        };
        let Some(target) = it.invert() else { return err(skb, "nf_ct_icmp: inner tuple not invertible") };
        let found = self.lookup(&target, zone, None, now);
        match found {
            Found::Hit { slot, dir, mut entry } => {
                if entry.tuple(dir).dst != outer.dst {
                    return err(skb, "nf_ct_icmp: outer destination does not match the connection");
                }
                entry.refs += 1;
                let ctinfo = if dir == Direction::Reply { IP_CT_RELATED_REPLY } else { IP_CT_RELATED };
                skb.nfct = CtRef::Ct { slot, gen: entry.gen, ctinfo };
                NF_ACCEPT
            }
            Found::Reap(_) | Found::Miss => err(skb, "nf_ct_icmp: no connection for the quoted packet"),
        }
    }

    /// `__nf_conntrack_find_get` with the zone's ORIGINAL id, then (direction-specific zones)
    /// with its REPLY id; expired entries met on the way are reaped.
    /// `hash` is the tuple's hash with the zone's ORIGINAL id, when the caller has it.
    fn lookup(&self, t: &Tuple, zone: Zone, hash: Option<u32>, now: u64) -> Found<'_> {
        let (oid, rid) = (zone.id_for(Direction::Original), zone.id_for(Direction::Reply));
        let ids = [oid, rid];
        for (i, id) in ids[..if oid == rid { 1 } else { 2 }].iter().enumerate() {
            let hash = match hash {
                Some(h) if i == 0 => h,
                _ => self.hash(t, *id),
            };
            loop {
                match self.table.find(t, zone, hash, now) {
                    Found::Reap(expired) => self.reap(&expired, now),
                    Found::Miss => break,
                    hit => return hit,
                }
            }
        }
        Found::Miss
    }

    /// `nf_conntrack_find_get` (what `conntrack -G` asks): the confirmed entry holding tuple `t`
    /// in either direction in `zone` at time `now`, with a reference taken for the caller, and
    /// which direction matched. Expired entries met on the way are reaped.
    pub fn find_get(&self, t: &Tuple, zone: Zone, now: u64) -> Option<(u32, u32, Direction)> {
        match self.lookup(t, zone, None, now) {
            Found::Hit { slot, dir, mut entry } => {
                entry.refs += 1;
                Some((slot, entry.gen, dir))
            }
            Found::Reap(_) | Found::Miss => None,
        }
    }

    /// `nf_conntrack_tuple_taken`: whether a confirmed entry other than the asking one holds
    /// tuple `t` (a reply tuple NAT would give the asking entry) in `zone` at `now`; counts
    /// `found` when one does. An entry with the asking entry's original tuple does not count
    /// when it holds `t` as its reply (the same origin, not yet translated: clash resolution
    /// merges them).
    pub fn tuple_taken(&self, t: &Tuple, zone: Zone, asking: (u32, Tuple), now: u64) -> bool {
        let hash = self.hash(t, zone.id_for(Direction::Reply));
        let skip = |slot: u32, dir: Direction, e: &Conn| {
            slot == asking.0
                || (dir == Direction::Reply
                    && e.zone.id_for(Direction::Original) == zone.id_for(Direction::Original)
                    && e.orig == asking.1)
        };
        loop {
            match self.table.find_where(t, zone, hash, now, skip) {
                Found::Reap(expired) => self.reap(&expired, now),
                Found::Miss => return false,
                Found::Hit { .. } => {
                    bump(&self.stats.found, 1);
                    return true;
                }
            }
        }
    }

    /// Runs `f` on one entry under its lock, if the handle is still valid.
    pub fn with_conn_mut<R>(&self, slot: u32, gen: u32, f: impl FnOnce(&mut Conn) -> R) -> Option<R> {
        let lock = self.table.slot(slot)?;
        let mut e = lock.lock();
        (e.live && e.gen == gen).then(|| f(&mut e))
    }

    /// `resolve_normal_ct` and the tracker call: look the tuple up, create an entry if there is
    /// none, set ctinfo, run the protocol's `packet()`.
    fn resolve_normal_ct(
        &self,
        l3: &L3,
        l4b: &[u8],
        zone: Zone,
        mut ctx: PacketCtx<'_>,
        skb: &mut SkbCt,
        hint: Option<&HashHint>,
    ) -> u32 {
        let Some(t) = get_tuple(l3, l4b) else { return self.invalid(skb, "nf_ct: cannot get the tuple") };
        let zone_id = zone.id_for(Direction::Original);
        let hash = match hint {
            Some(h) if zone_id == 0 && h.tuple == t => h.hash,
            _ => self.hash(&t, zone_id),
        };
        loop {
            match self.lookup(&t, zone, Some(hash), ctx.now) {
                Found::Hit { slot, dir, mut entry } => {
                    ctx.dir = dir;
                    let ctinfo = if dir == Direction::Reply {
                        IP_CT_ESTABLISHED_REPLY
                    } else if entry.status & IPS_SEEN_REPLY != 0 {
                        IP_CT_ESTABLISHED
                    } else if entry.status & IPS_EXPECTED != 0 {
                        IP_CT_RELATED
                    } else {
                        IP_CT_NEW
                    };
                    let gen = entry.gen;
                    match proto::packet(&mut entry, &ctx, &self.sysctl, self.rst_timeout) {
                        PacketVerdict::Accept => {
                            if ctinfo == IP_CT_ESTABLISHED_REPLY {
                                entry.set_status(IPS_SEEN_REPLY, IPCT_REPLY);
                            }
                            entry.refs += 1;
                            skb.nfct = CtRef::Ct { slot, gen, ctinfo };
                            return NF_ACCEPT;
                        }
                        PacketVerdict::Kill => {
                            entry.refs += 1;
                            skb.nfct = CtRef::Ct { slot, gen, ctinfo };
                            drop(entry);
                            self.delete(slot, gen, ctx.now);
                            return NF_ACCEPT;
                        }
                        PacketVerdict::Invalid(why) => {
                            drop(entry);
                            return self.invalid(skb, why);
                        }
                        PacketVerdict::Repeat => {
                            // A reopen: the old entry goes, the packet is looked up again.
                            drop(entry);
                            if !self.delete(slot, gen, ctx.now) {
                                bump(&self.stats.invalid, 1);
                                bump(&self.stats.drop, 1);
                                skb.reason = Some("nf_ct_tcp: reopen lost a race");
                                return NF_DROP;
                            }
                            continue;
                        }
                    }
                }
                Found::Reap(_) | Found::Miss => {}
            }
            break;
        }
        // A new entry sees the packet in its original direction (also after a reopen, where
        // the lookup had found the old entry's reply direction).
        ctx.dir = Direction::Original;
        let slot = match self.init_conntrack(&t, zone, hash, ctx.now) {
            Init::Created(slot) => slot,
            Init::NotInvertible => return self.invalid(skb, "nf_ct: tuple not invertible"),
            Init::TableFull => {
                bump(&self.stats.drop, 1);
                skb.reason = Some("nf_conntrack: table full, dropping packet");
                return NF_DROP;
            }
        };
        let Some(lock) = self.table.slot(slot) else { return self.invalid(skb, "nf_ct: lost new entry") };
        let mut entry = lock.lock();
        let gen = entry.gen;
        match proto::packet(&mut entry, &ctx, &self.sysctl, self.rst_timeout) {
            PacketVerdict::Accept | PacketVerdict::Kill => {
                let ctinfo = if entry.status & IPS_EXPECTED != 0 { IP_CT_RELATED } else { IP_CT_NEW };
                skb.nfct = CtRef::Ct { slot, gen, ctinfo };
                NF_ACCEPT
            }
            PacketVerdict::Invalid(why) => {
                drop(entry);
                self.free_unconfirmed(slot, gen);
                self.invalid(skb, why)
            }
            PacketVerdict::Repeat => {
                drop(entry);
                self.free_unconfirmed(slot, gen);
                self.invalid(skb, "nf_ct_tcp: reopen of an unconfirmed entry")
            }
        }
    }

    /// `init_conntrack`: invert the tuple, honour `nf_conntrack_max` (with `early_drop`),
    /// allocate an unconfirmed entry held by the packet alone.
    fn init_conntrack(&self, t: &Tuple, zone: Zone, hash: u32, now: u64) -> Init {
        if t.invert().is_none() {
            return Init::NotInvertible;
        }
        let max = self.sysctl.get(SysctlKey::Max);
        let count = self.created.count.fetch_add(1, Ordering::Relaxed) + 1;
        if max != 0 && count > max && !self.early_drop(hash, now) {
            self.created.count.fetch_sub(1, Ordering::Relaxed);
            return Init::TableFull;
        }
        let e = Conn {
            refs: 1,
            orig: *t,
            zone,
            ext: CtExt::new(
                self.sysctl.get(SysctlKey::Acct) != 0,
                self.sysctl.get(SysctlKey::Timestamp) != 0,
            ),
            ecache: match self.sysctl.get(SysctlKey::Events) {
                0 => false,
                1 => true,
                _ => self.events.listening(),
            },
            id: self.created.next_id.fetch_add(1, Ordering::Relaxed),
            ..Conn::default()
        };
        match self.table.alloc(hash, e) {
            Some(slot) => Init::Created(slot),
            None => {
                self.created.count.fetch_sub(1, Ordering::Relaxed);
                Init::TableFull
            }
        }
    }

    /// `early_drop`: from the new tuple's bucket, look at up to 8 buckets and delete every
    /// confirmed, non-ASSURED entry of the first bucket that has any (expired entries met are
    /// reaped without counting).
    fn early_drop(&self, hash: u32, now: u64) -> bool {
        let nb = self.table.nbuckets();
        let start = self.table.bucket(hash);
        let mut slots = Vec::new();
        let mut victims = Vec::new();
        let mut expired = Vec::new();
        for i in 0..EVICTION_RANGE.min(nb) {
            let b = (start + i) % nb;
            self.table.bucket_slots(b, &mut slots);
            victims.clear();
            for &slot in &slots {
                let Some(lock) = self.table.slot(slot) else { continue };
                let e = lock.lock();
                if !e.live || !e.confirmed() || e.dying() {
                    continue;
                }
                if e.expired(now) {
                    expired.push((slot, e.gen));
                } else if e.status & IPS_ASSURED == 0 {
                    victims.push((slot, e.gen));
                }
            }
            for (slot, gen) in expired.drain(..) {
                self.delete(slot, gen, now);
            }
            if !victims.is_empty() {
                if let Some(log) = self.evictions.lock().as_mut() {
                    for &(slot, gen) in &victims {
                        if log.kept.len() >= log.cap {
                            log.more += 1;
                        } else if let Some(view) = self.view(slot, gen, now, false) {
                            log.kept.push(Eviction { tstamp: now, view });
                        }
                    }
                }
            }
            let dropped = victims.iter().filter(|(slot, gen)| self.delete(*slot, *gen, now)).count() as u64;
            if dropped > 0 {
                bump(&self.stats.early_drop, dropped);
                return true;
            }
        }
        false
    }

    /// `nf_confirm` / `__nf_conntrack_confirm`: insert the packet's new entry into the table,
    /// at time `now` (ns).
    pub fn confirm(&self, skb: &mut SkbCt, now: u64) -> u32 {
        let CtRef::Ct { slot, gen, ctinfo } = skb.nfct else { return NF_ACCEPT };
        let Some(lock) = self.table.slot(slot) else { return NF_ACCEPT };
        let (tuples, zone, orig_hash) = {
            let mut e = lock.lock();
            if e.gen != gen || !e.live {
                return NF_ACCEPT;
            }
            if e.confirmed() {
                self.deliver_cached(&mut e, now, 0);
                return NF_ACCEPT;
            }
            if ctinfo >= IP_CT_IS_REPLY {
                return NF_ACCEPT;
            }
            if e.dying() {
                bump(&self.stats.insert_failed, 1);
                skb.reason = Some("nf_conntrack: entry killed before confirmation");
                return NF_DROP;
            }
            (e.tuples(), e.zone, self.table.hash(slot, Direction::Original))
        };
        let reply_zone = zone.id_for(Direction::Reply);
        let reply_hash = self.hash(&tuples[1], reply_zone);
        let max_chainlen = 50 + (self.random() % 30) as usize;
        let keys =
            [(&tuples[0], zone.id_for(Direction::Original), orig_hash), (&tuples[1], reply_zone, reply_hash)];
        match self.table.insert(slot, keys, max_chainlen) {
            Insert::Inserted => {
                let mut e = lock.lock();
                e.timeout = e.timeout.saturating_add(now);
                e.set_tstamp_start(now);
                e.status |= IPS_CONFIRMED;
                let new = if e.status & IPS_EXPECTED != 0 { IPCT_RELATED } else { IPCT_NEW };
                self.deliver_cached(&mut e, now, new);
                NF_ACCEPT
            }
            Insert::ChainTooLong => {
                bump(&self.stats.chaintoolong, 1);
                bump(&self.stats.insert_failed, 1);
                skb.reason = Some("nf_conntrack: chain too long");
                NF_DROP
            }
            Insert::Clash { slot: other, .. } => {
                self.resolve_clash(skb, slot, other, &tuples, zone, (reply_zone, reply_hash), now)
            }
        }
    }

    /// `nf_ct_resolve_clash`: a confirmed entry took our tuple while our packet was in flight.
    /// Protocols that allow it merge with an identical entry; otherwise, when only the original
    /// direction collides (two packets of one flow sent to different NAT targets), our entry
    /// goes in by its reply direction only, hidden, for a second (`nf_ct_resolve_clash_harder`);
    /// anything else drops the packet.
    #[allow(clippy::too_many_arguments)]
    fn resolve_clash(
        &self,
        skb: &mut SkbCt,
        ours: u32,
        other: u32,
        tuples: &[Tuple; 2],
        zone: Zone,
        (reply_zone, reply_hash): (u16, u32),
        now: u64,
    ) -> u32 {
        let allow = !matches!(
            tuples[0].protonum,
            IPPROTO_TCP | IPPROTO_ICMP | IPPROTO_ICMPV6 | IPPROTO_SCTP | IPPROTO_DCCP
        );
        let fail = |skb: &mut SkbCt| {
            bump(&self.stats.drop, 1);
            bump(&self.stats.insert_failed, 1);
            skb.reason = Some("nf_conntrack: clash not resolvable");
            NF_DROP
        };
        if !allow {
            return fail(skb);
        }
        if self.merge_clash(skb, ours, other, tuples, zone) {
            return NF_ACCEPT;
        }
        // Harder: the reply direction must not collide, unless both tuples are identical.
        if let Found::Hit { slot, entry, .. } = self.table.find(&tuples[1], zone, reply_hash, now) {
            drop(entry);
            return if self.merge_clash(skb, ours, slot, tuples, zone) { NF_ACCEPT } else { fail(skb) };
        }
        let Some(lock) = self.table.slot(ours) else { return fail(skb) };
        {
            let mut e = lock.lock();
            // Gone in a second; never ASSURED (the trackers check NAT_CLASH).
            e.timeout = now.saturating_add(NS);
            e.status |= IPS_FIXED_TIMEOUT | IPS_NAT_CLASH | IPS_CONFIRMED;
            e.events = 0;
        }
        if !self.table.insert_reply_only(ours, &tuples[1], reply_zone, reply_hash) {
            let mut e = lock.lock();
            e.status &= !IPS_CONFIRMED;
            drop(e);
            return fail(skb);
        }
        bump(&self.stats.clash_resolve, 1);
        NF_ACCEPT
    }

    /// `__nf_ct_resolve_clash`: merges our packet into `other` when it is the same connection
    /// (same tuples and zone, or the same with directions swapped) and not dying: our
    /// packet's counters move to it and the packet takes it.
    fn merge_clash(&self, skb: &mut SkbCt, ours: u32, other: u32, tuples: &[Tuple; 2], zone: Zone) -> bool {
        let Some(lock) = self.table.slot(other) else { return false };
        let CtRef::Ct { ctinfo, .. } = skb.nfct else { return false };
        let mut e = lock.lock();
        let et = e.tuples();
        let same = et == *tuples && e.zone == zone;
        let reverse = et[0] == tuples[1] && et[1] == tuples[0] && e.zone == zone;
        if !e.live || e.dying() || !(same || reverse) {
            return false;
        }
        let ours_acct = self.table.slot(ours).and_then(|l| l.lock().acct());
        if let (Some(a), Some(o)) = (e.acct_mut(), ours_acct) {
            for d in 0..2 {
                a[d].packets += o[d].packets;
                a[d].bytes += o[d].bytes;
            }
        }
        e.refs += 1;
        let gen = e.gen;
        drop(e);
        self.release(skb);
        skb.nfct = CtRef::Ct { slot: other, gen, ctinfo };
        bump(&self.stats.clash_resolve, 1);
        true
    }

    /// `nf_ct_deliver_cached_events`: the bits cached while the packet was processed become one
    /// message (NEW for a new entry, else UPDATE), for a confirmed entry that is not dying.
    fn deliver_cached(&self, e: &mut Conn, now: u64, extra: u16) {
        let bits = e.events | extra;
        e.events = 0;
        if bits == 0 || !e.ecache || e.dying() || !self.events.listening() {
            return;
        }
        let kind = if bits & (IPCT_NEW | IPCT_RELATED) != 0 { EventKind::New } else { EventKind::Update };
        // Counters and timestamps travel only with DESTROY (ctnetlink_conntrack_event).
        let mut view = e.view(now, false);
        view.acct = None;
        view.tstamp = None;
        self.events.send(Event { kind, tstamp: now, view, protoinfo: bits & IPCT_PROTOINFO != 0 });
    }

    /// Frees an unconfirmed entry that no packet holds any more.
    fn free_unconfirmed(&self, slot: u32, gen: u32) {
        self.created.count.fetch_sub(1, Ordering::Relaxed);
        self.table.free(slot, gen);
    }

    /// Drops the packet's reference on its entry (the skb is freed): an unconfirmed entry held
    /// by nobody else is freed, so a packet dropped before confirmation leaves nothing behind.
    pub fn release(&self, skb: &mut SkbCt) {
        let CtRef::Ct { slot, gen, .. } = skb.nfct else {
            skb.nfct = CtRef::None;
            return;
        };
        skb.nfct = CtRef::None;
        self.put(slot, gen);
    }

    /// The entry's `ct->mark`, None if the slot moved on.
    pub fn mark(&self, slot: u32, gen: u32) -> Option<u32> {
        let e = self.table.slot(slot)?.lock();
        (e.gen == gen && e.live).then_some(e.mark)
    }

    /// `ct mark set`: the bits of `mask` take `value`'s; a change caches IPCT_MARK, delivered
    /// with the packet's other events at its confirm hook.
    pub fn set_mark(&self, slot: u32, gen: u32, value: u32, mask: u32) {
        let Some(lock) = self.table.slot(slot) else { return };
        let mut e = lock.lock();
        let new = (e.mark & !mask) | (value & mask);
        if e.gen == gen && e.live && e.mark != new {
            e.mark = new;
            e.events |= IPCT_MARK;
        }
    }

    /// Takes a reference on an entry (for a handle); false if the slot moved on.
    pub fn get(&self, slot: u32, gen: u32) -> bool {
        let Some(lock) = self.table.slot(slot) else { return false };
        let mut e = lock.lock();
        if e.live && e.gen == gen {
            e.refs += 1;
            true
        } else {
            false
        }
    }

    /// `nf_ct_put`: drops a reference taken by a packet or a handle.
    pub fn put(&self, slot: u32, gen: u32) {
        let Some(lock) = self.table.slot(slot) else { return };
        let (free, unconfirmed) = {
            let mut e = lock.lock();
            if !e.live || e.gen != gen {
                return;
            }
            e.refs = e.refs.saturating_sub(1);
            (e.refs == 0 && (e.dying() || !e.confirmed()), !e.confirmed() && !e.dying())
        };
        if free {
            if unconfirmed {
                self.created.count.fetch_sub(1, Ordering::Relaxed);
            }
            self.table.free(slot, gen);
        }
    }

    /// `nf_ct_delete` at time `now` (ns): mark the entry DYING, unlink it, and free it once
    /// nothing references it. False if it was already gone or dying.
    pub fn delete(&self, slot: u32, gen: u32, now: u64) -> bool {
        let Some(lock) = self.table.slot(slot) else { return false };
        let confirmed = {
            let mut e = lock.lock();
            if !e.live || e.gen != gen || e.dying() {
                return false;
            }
            e.status |= IPS_DYING;
            if e.confirmed() && e.ecache && self.events.listening() {
                // DESTROY goes out at once, with the state, what time was left and the stop
                // timestamp: now, or when it expired if it is reaped late (spec §11.3, §15).
                let mut view = e.view(now, false);
                if let Some(t) = view.tstamp.as_mut() {
                    t.stop = if e.expired(now) { e.timeout } else { now };
                }
                self.events.send(Event { kind: EventKind::Destroy, tstamp: now, view, protoinfo: true });
            }
            e.confirmed()
        };
        if confirmed {
            self.table.unlink(slot);
            self.created.count.fetch_sub(1, Ordering::Relaxed);
        }
        let free = {
            let e = lock.lock();
            e.live && e.gen == gen && e.refs == 0
        };
        if free {
            self.table.free(slot, gen);
        }
        true
    }

    /// `nf_ct_unconfirmed_destroy`: every unconfirmed entry (a packet still in flight holds it)
    /// is marked dying, so its confirmation fails (`conntrack -F`).
    pub fn kill_unconfirmed(&self) {
        for slot in self.table.allocated_slots() {
            let Some(lock) = self.table.slot(slot) else { continue };
            let mut e = lock.lock();
            if e.live && !e.confirmed() {
                e.status |= IPS_DYING;
            }
        }
    }

    /// The UPDATE event ctnetlink sends after changing an entry (`conntrack -U`): with its
    /// protocol state, if someone listens and the entry has the event cache.
    pub fn report_update(&self, slot: u32, gen: u32, now: u64) {
        let Some(lock) = self.table.slot(slot) else { return };
        let mut e = lock.lock();
        if e.live && e.gen == gen && e.confirmed() {
            e.events |= IPCT_PROTOINFO;
            self.deliver_cached(&mut e, now, 0);
        }
    }

    /// A snapshot of one entry at time `now`, if the handle is still valid (`listing`: as a
    /// listing taken an instant after the last packet shows it).
    pub fn view(&self, slot: u32, gen: u32, now: u64, listing: bool) -> Option<ConnView> {
        let lock = self.table.slot(slot)?;
        let e = lock.lock();
        if !e.live || e.gen != gen {
            return None;
        }
        Some(e.view(now, listing))
    }

    /// Runs `f` on one entry, if the handle is still valid.
    pub fn with_conn<R>(&self, slot: u32, gen: u32, f: impl FnOnce(&Conn) -> R) -> Option<R> {
        let lock = self.table.slot(slot)?;
        let e = lock.lock();
        (e.live && e.gen == gen).then(|| f(&e))
    }

    /// The confirmed entries at time `now`, as `conntrack -L` lists them: expired entries met
    /// are reaped instead (DESTROY events included), as the kernel's listing does.
    pub fn list(&self, now: u64) -> Vec<(u32, u32, ConnView)> {
        // Sized once: growing a vector of views copies them again and again.
        let mut out = Vec::with_capacity(usize::try_from(self.count()).unwrap_or(0));
        for slot in self.table.slots() {
            let Some(lock) = self.table.slot(slot) else { continue };
            let e = lock.lock();
            if !e.live || e.dying() || !e.confirmed() {
                continue;
            }
            let gen = e.gen;
            if e.expired(now) {
                drop(e);
                self.delete(slot, gen, now);
                continue;
            }
            out.push((slot, gen, e.view(now, true)));
        }
        out
    }

    /// How many entries [`Conntrack::list`] would list at `now`, without making their views:
    /// expired entries met are reaped the same way. Walks the slab in memory order, not the
    /// buckets (entries in by their reply direction only, NAT clashes, are not listed).
    pub fn count_listed(&self, now: u64) -> usize {
        let mut n = 0;
        for slot in self.table.allocated_slots() {
            let Some(lock) = self.table.slot(slot) else { continue };
            let e = lock.lock();
            if !e.live || e.dying() || !e.confirmed() || e.status & IPS_NAT_CLASH != 0 {
                continue;
            }
            if e.expired(now) {
                let gen = e.gen;
                drop(e);
                self.delete(slot, gen, now);
                continue;
            }
            n += 1;
        }
        n
    }

    /// `gc_worker`, one full pass at time `now`: reap every expired entry. Returns how many were
    /// reaped and schedules the next pass as the kernel paces it (the average remaining
    /// lifetime, clamped to 1 s .. 60 s).
    pub fn gc(&self, now: u64) -> usize {
        let mut reaped = 0;
        let (mut avg, mut n) = (60.0 * NS as f64, 100.0f64);
        if self.count() == 0 {
            // No entry at all, confirmed or not: the walk over every bucket would meet none
            // (the pass that runs at a replay's first packet, on an empty table of 262,144
            // buckets, took 10M instructions), and the pacing below comes out the same.
            self.next_gc.store(now.saturating_add(Self::gc_interval(avg)), Ordering::Relaxed);
            return 0;
        }
        // Entries linked by their reply node only (NAT clashes) are in the table too.
        let mut slots = self.table.slots();
        slots.extend(self.table.reply_only_slots());
        for slot in slots {
            let Some(lock) = self.table.slot(slot) else { continue };
            let e = lock.lock();
            if !e.live || !e.confirmed() || e.dying() {
                continue;
            }
            if e.expired(now) {
                let gen = e.gen;
                drop(e);
                if self.delete(slot, gen, now) {
                    reaped += 1;
                }
            } else {
                let x = e.remaining(now).clamp(NS, 300 * NS) as f64;
                n += 1.0;
                avg += (x - avg) / n;
            }
        }
        self.next_gc.store(now.saturating_add(Self::gc_interval(avg)), Ordering::Relaxed);
        reaped
    }

    /// The time to the next pass after one that found `avg` ns of lifetime left on average.
    fn gc_interval(avg: f64) -> u64 {
        (avg as u64).clamp(NS, 60 * NS)
    }

    /// Runs the garbage collector if `now` has reached its next scheduled pass. One caller
    /// runs a pass that is due (the kernel has one `gc_worker`): it claims the pass first, so
    /// that the other threads of a threaded replay, reaching the same time meanwhile, do not
    /// walk the table again (they did: two or three passes where one thread makes one).
    pub fn gc_if_due(&self, now: u64) -> usize {
        let due = self.next_gc.load(Ordering::Relaxed);
        if now < due {
            return 0;
        }
        match self.next_gc.compare_exchange(due, u64::MAX, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => self.gc(now),
            Err(_) => 0,
        }
    }

    /// Prefetches what the lookups of a window of records will read, once the table is large
    /// enough for it to pay: parses each IP packet's tuple (each starting at its L3 header;
    /// None for a record without one), hashes it, then `Table::prefetch`s `BULK` at a time.
    /// Only a hint: it changes nothing in the table, and the hash assumes the default zone.
    /// Each tuple and its hash are kept in `hints` (one element per record, None where nothing
    /// was computed), so that the packet's lookup need not hash it again
    /// (`conntrack_in_hinted` uses a hint only for that tuple in zone id 0).
    pub fn prefetch_hinted<'a>(
        &self,
        pkts: impl Iterator<Item = Option<&'a [u8]>>,
        hints: &mut Vec<Option<HashHint>>,
    ) {
        hints.clear();
        if self.count() >= PREFETCH_MIN_ENTRIES {
            self.prefetch_all(pkts, hints);
        }
    }

    /// [`Conntrack::prefetch_hinted`] whatever the table's size (appending to `hints`).
    pub fn prefetch_all<'a>(
        &self,
        pkts: impl Iterator<Item = Option<&'a [u8]>>,
        hints: &mut Vec<Option<HashHint>>,
    ) {
        let zone_id = Zone::default().id_for(Direction::Original);
        let mut hashes = [0u32; BULK];
        // Where in `hints` each of `hashes` is.
        let mut at = [0usize; BULK];
        let mut n = 0;
        for data in pkts {
            let pf = match data.and_then(|d| d.first()).map(|b| b >> 4) {
                Some(6) => AF_INET6,
                _ => AF_INET,
            };
            let Some(t) = data.and_then(|d| crate::tuple::packet_tuple(pf, d)) else {
                hints.push(None);
                continue;
            };
            let hash = self.hash(&t, zone_id);
            hashes[n] = hash;
            at[n] = hints.len();
            hints.push(Some(HashHint { tuple: t, hash }));
            n += 1;
            if n == BULK {
                self.prefetch_keys(&hashes, &at, hints);
                n = 0;
            }
        }
        self.prefetch_keys(&hashes[..n], &at[..n], hints);
    }

    /// Prefetches the lookups of `hashes` (at most [`BULK`]; `at[i]` is where the key of
    /// `hashes[i]` is in `hints`), then, for the keys no entry seems to hold (most likely new
    /// connections), the buckets their reply tuples go into: `__nf_conntrack_confirm` walks
    /// those to insert the new entry.
    fn prefetch_keys(&self, hashes: &[u32], at: &[usize], hints: &[Option<HashHint>]) {
        let mut miss = std::hint::black_box(self.table.prefetch(hashes));
        let reply_id = Zone::default().id_for(Direction::Reply);
        let mut reply = [0u32; BULK];
        let mut m = 0;
        while miss != 0 {
            let i = miss.trailing_zeros() as usize;
            miss &= miss - 1;
            let Some(Some(h)) = at.get(i).and_then(|&j| hints.get(j)) else { continue };
            // Confirmation hashes the reply tuple again: the hash cannot travel with the
            // unconfirmed entry (a slot has no room for it, and NAT may change the tuple).
            if let Some(r) = h.tuple.invert() {
                reply[m] = self.hash(&r, reply_id);
                m += 1;
            }
        }
        if m > 0 {
            std::hint::black_box(self.table.prefetch(&reply[..m]));
        }
    }
}

/// Entries beyond which a batch's lookups are prefetched: below it the table sits in the
/// caches and the second parse of each tuple costs more than it saves (benches/RESULTS.md
/// §0, measured when the prefetch hashed each tuple a second time too: −11% at 10k entries,
/// +43% at 100k, +55% at 1M).
pub const PREFETCH_MIN_ENTRIES: u64 = 32_768;

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 UDP packet with checksum 0 ("none").
    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 29, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0, 9, 0, 0, b'x']);
        p
    }

    fn net(max: u64, buckets: u64) -> Conntrack {
        let s = Sysctl::default();
        s.set(SysctlKey::Max, max);
        s.set(SysctlKey::Buckets, buckets);
        Conntrack::new(CtOptions { seed: Some(7), ..CtOptions::default() }, s)
    }

    /// One packet through `in` and confirm at `t`: the verdict and the ct state a rule would
    /// see (None when dropped).
    fn through(net: &Conntrack, pkt: &[u8], t: u64) -> (u32, Option<CtState>) {
        let mut skb = SkbCt::default();
        let mut v = net.conntrack_in(pkt, t, Hook::PreRouting, AF_INET, &mut skb);
        let state = (v != NF_DROP).then(|| skb.state());
        if v != NF_DROP {
            v = net.confirm(&mut skb, t);
        }
        net.release(&mut skb);
        (v, state)
    }

    #[test]
    fn create_then_confirm() {
        let n = net(0, 64);
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        let mut skb = SkbCt::default();
        assert_eq!(n.conntrack_in(&p, NS, Hook::PreRouting, AF_INET, &mut skb), NF_ACCEPT);
        assert_eq!(skb.ctinfo(), Some(IP_CT_NEW));
        assert_eq!((n.count(), n.list(NS).len()), (1, 0), "unconfirmed: counted, never listed");
        // Dropped before confirmation: the entry never existed.
        n.release(&mut skb);
        assert_eq!((n.count(), n.list(NS).len()), (0, 0));
        assert_eq!(through(&n, &p, NS), (NF_ACCEPT, Some(CtState::New)));
        assert_eq!((n.count(), n.list(NS).len()), (1, 1));
        let r = udp4([10, 0, 0, 2], [10, 0, 0, 1], 53, 1000);
        assert_eq!(through(&n, &r, 2 * NS), (NF_ACCEPT, Some(CtState::Established)));
        let v = n.list(2 * NS)[0].2;
        assert!(v.status & IPS_SEEN_REPLY != 0 && v.status & IPS_ASSURED == 0);
        // The 2-second rule: a packet more than 2 s after the first makes it a stream.
        through(&n, &p, 3 * NS + 1);
        let v = n.list(3 * NS + 1)[0].2;
        assert!(v.status & IPS_ASSURED != 0);
        assert_eq!(v.timeout, 119);
    }

    /// A prefetch's hints are the hashes the lookups would compute; a hint is used only for
    /// its own tuple in zone id 0, so a wrong one changes nothing.
    #[test]
    fn hash_hints() {
        let n = net(0, 1 << 16);
        let flow = |i: u32| udp4([10, 1, (i >> 8) as u8, i as u8], [10, 0, 0, 2], 1000, 53);
        for i in 0..PREFETCH_MIN_ENTRIES as u32 {
            through(&n, &flow(i), NS);
        }
        let pkts: Vec<Vec<u8>> = (0..40).map(flow).collect();
        let mut hints = Vec::new();
        n.prefetch_hinted(
            pkts.iter().map(|p| Some(p.as_slice())).chain([None, Some(&[0x45u8][..])]),
            &mut hints,
        );
        assert_eq!(hints.len(), 42);
        assert_eq!(hints[40..], [None, None], "no packet, no tuple: no hint");
        for (p, h) in pkts.iter().zip(&hints) {
            let t = crate::tuple::packet_tuple(AF_INET, p).unwrap();
            assert_eq!(*h, Some(HashHint { tuple: t, hash: n.hash(&t, 0) }));
        }
        // The reply of flow 3 with flow 5's hint: the hint is not its tuple's, so it is hashed.
        let r = udp4([10, 0, 0, 2], [10, 1, 0, 3], 53, 1000);
        let mut skb = SkbCt::default();
        n.conntrack_in_hinted(&r, 2 * NS, Hook::PreRouting, AF_INET, &mut skb, hints[5].as_ref());
        assert_eq!(skb.state(), CtState::Established);
        let first = skb.nfct;
        n.release(&mut skb);
        // With its own hint it finds the same entry.
        let rt = crate::tuple::packet_tuple(AF_INET, &r).unwrap();
        let own = HashHint { tuple: rt, hash: n.hash(&rt, 0) };
        let mut skb2 = SkbCt::default();
        n.conntrack_in_hinted(&r, 2 * NS, Hook::PreRouting, AF_INET, &mut skb2, Some(&own));
        assert_eq!((skb2.state(), skb2.nfct), (CtState::Established, first));
        n.release(&mut skb2);
        // In another zone the hint (zone id 0) is not used: the entry of zone 0 is not found.
        let mut skb3 = SkbCt { tmpl: Some(Zone { id: 4, dir: Zone::DIR_BOTH }), ..SkbCt::default() };
        n.conntrack_in_hinted(&r, 2 * NS, Hook::PreRouting, AF_INET, &mut skb3, Some(&own));
        assert_eq!(skb3.state(), CtState::New);
        n.release(&mut skb3);
    }

    #[test]
    fn expiry_on_lookup_and_gc() {
        let n = net(0, 64);
        through(&n, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2), NS);
        through(&n, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 3, 4), NS);
        assert_eq!(n.gc(31 * NS), 2);
        assert_eq!(n.count(), 0);
        // Reap on lookup: the same flow after its timeout is a new entry.
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 5, 6);
        assert_eq!(through(&n, &p, 40 * NS).1, Some(CtState::New));
        assert_eq!(through(&n, &p, 80 * NS).1, Some(CtState::New));
        assert_eq!(n.count(), 1);
    }

    /// `n` unreplied UDP flows created at `t` (distinct sources), each with the UDP timeout.
    fn flows(net: &Conntrack, n: u32, first: u32, t: u64) {
        for i in first..first + n {
            let p = udp4([10, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8], [10, 0, 0, 2], 1000, 53);
            assert_eq!(through(net, &p, t).1, Some(CtState::New));
        }
    }

    /// The pass after `gc(now)`: the spec's §11.4 pacing, computed apart from the code: the
    /// average starts at 60 s with a weight of 100 entries, each live entry adds its remaining
    /// time clamped to 1 s .. 300 s (expired ones add nothing), and the next pass is that
    /// average clamped to 1 s .. 60 s later.
    fn spec_next(now: u64, remaining: &[u64]) -> u64 {
        let sum: u64 = remaining.iter().map(|r| (*r).clamp(NS, 300 * NS)).sum();
        let avg = (100 * 60 * NS + sum) / (100 + remaining.len() as u64);
        now + avg.clamp(NS, 60 * NS)
    }

    fn next_gc(net: &Conntrack) -> u64 {
        net.next_gc.load(Ordering::Relaxed)
    }

    /// Within a microsecond: the code averages in floating point.
    fn assert_near(got: u64, want: u64) {
        assert!(got.abs_diff(want) < 1000, "next pass at {got} ns, the spec's at {want} ns");
    }

    #[test]
    fn gc_schedule_first_pass_and_an_empty_table() {
        let n = net(0, 1024);
        // Nothing run yet: the first call runs a pass whenever it comes.
        assert_eq!(next_gc(&n), 0);
        assert_eq!(n.gc_if_due(5 * NS), 0);
        // An empty table: the average stays at 60 s.
        assert_eq!(next_gc(&n), 65 * NS);
        // Three entries that expire at 36 s.
        flows(&n, 3, 0, 6 * NS);
        // Not due before 65 s: expired entries stay (counted, never listed).
        assert_eq!(n.gc_if_due(65 * NS - 1), 0);
        assert_eq!(n.count(), 3);
        assert_eq!(next_gc(&n), 65 * NS);
        // Due at 65 s: all three reaped, and with nothing live the next pass is 60 s later.
        assert_eq!(n.gc_if_due(65 * NS), 3);
        assert_eq!(n.count(), 0);
        assert_eq!(next_gc(&n), 125 * NS);
    }

    #[test]
    fn a_due_pass_runs_once_whoever_calls() {
        // Four threads reach the due time together, as a threaded replay's workers do: one
        // pass reaps all 50,000 expired entries, and the others find it taken.
        let n = net(0, 1 << 16);
        flows(&n, 50_000, 0, 0);
        assert_eq!(n.gc(0), 0);
        let due = next_gc(&n);
        let barrier = std::sync::Barrier::new(4);
        let reaped: Vec<usize> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        n.gc_if_due(due + 60 * NS)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = reaped.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 0, 0, 50_000], "passes: {reaped:?}");
        assert_eq!(n.count(), 0);
        assert_eq!(next_gc(&n), due + 120 * NS);
    }

    #[test]
    fn gc_schedule_follows_the_average_remaining_time() {
        // 100 entries with 30 s left: (100 * 60 + 100 * 30) / 200 = 45 s.
        let n = net(0, 1024);
        flows(&n, 100, 0, 0);
        assert_eq!(n.gc(0), 0);
        assert_eq!(next_gc(&n), spec_next(0, &[30 * NS; 100]));
        assert_eq!(next_gc(&n), 45 * NS);
        // 900 more with 10 s left at the next pass (45 s), the first 100 expired by then (30 s):
        // these add nothing, so (100 * 60 + 900 * 10) / 1000 = 15 s.
        flows(&n, 900, 100, 25 * NS);
        // (a lookup reaping its own bucket's expired entries would take some of the first
        // hundred early; none of these lookups comes after 30 s.)
        assert_eq!(n.gc_if_due(45 * NS), 100);
        assert_near(next_gc(&n), 60 * NS);
        assert_eq!(spec_next(45 * NS, &[10 * NS; 900]), 60 * NS);
        // Short timeouts: every entry counts as at least 1 s, so even 10000 entries with a few
        // milliseconds left keep the average above 1 s: (6000 + 10000) / 10100 s.
        let n = net(0, 1 << 14);
        n.sysctl.set(SysctlKey::UdpTimeout, 1);
        flows(&n, 10_000, 0, 0);
        let now = NS - 5_000_000;
        assert_eq!(n.gc(now), 0);
        let want = spec_next(now, &[5_000_000; 10_000]);
        assert_near(next_gc(&n), want);
        assert_near(want - now, 16_000 * NS / 10_100);
        // Every entry expired: nothing live, back to 60 s.
        assert_eq!(n.gc(2 * NS), 10_000);
        assert_eq!(next_gc(&n), 62 * NS);
    }

    #[test]
    fn gc_schedule_clamps() {
        // Long timeouts count as 300 s: 100 entries of 1000 s give (6000 + 30000) / 200 = 180 s,
        // and the next pass is at most 60 s away.
        let n = net(0, 1024);
        n.sysctl.set(SysctlKey::UdpTimeout, 1000);
        flows(&n, 100, 0, 0);
        assert_eq!(n.gc(0), 0);
        assert_eq!(next_gc(&n), 60 * NS);
        assert_eq!(spec_next(0, &[1000 * NS; 100]), 60 * NS);
        // Unclamped it would be 180 s; with 300 s each (not 1000 s) 5000 entries give
        // (6000 + 5000 * 300) / 5100 s = 295 s: still 60 s.
        let n = net(0, 1 << 13);
        n.sysctl.set(SysctlKey::UdpTimeout, 1000);
        flows(&n, 5000, 0, 0);
        assert_eq!(n.gc(0), 0);
        assert_eq!(next_gc(&n), 60 * NS);
        // A mix: 300 entries with 2 s left and 100 with 1000 s (300 s):
        // (6000 + 600 + 30000) / 500 = 73.2 s, clamped to 60 s; with 2 s left for 700 entries
        // instead: (6000 + 1400 + 30000) / 900 = 41.56 s.
        let n = net(0, 1 << 12);
        n.sysctl.set(SysctlKey::UdpTimeout, 1000);
        flows(&n, 100, 0, 0);
        n.sysctl.set(SysctlKey::UdpTimeout, 2);
        flows(&n, 700, 100, 0);
        assert_eq!(n.gc(0), 0);
        let mut remaining = vec![1000 * NS; 100];
        remaining.extend([2 * NS; 700]);
        assert_near(next_gc(&n), spec_next(0, &remaining));
        assert_near(next_gc(&n), 37_400 * NS / 900);
        // gc_if_due runs exactly from then on, not before.
        let due = next_gc(&n);
        assert_eq!(n.gc_if_due(due - 1), 0);
        assert_eq!(next_gc(&n), due);
        assert_eq!(n.gc_if_due(due), 700);
        assert_eq!(n.count(), 100);
        // 100 entries left with 1000 - 41.56 s: (6000 + 100 * 300) / 200 = 180 s, clamped: 60 s.
        assert_eq!(next_gc(&n), due + 60 * NS);
    }

    #[test]
    fn early_drop_evicts_unassured_and_table_full_drops() {
        let n = net(32, 4);
        for port in 0..32 {
            assert_eq!(through(&n, &udp4([10, 0, 0, 1], [10, 0, 0, 2], port, 53), NS).0, NF_ACCEPT);
        }
        assert_eq!(n.count(), 32);
        assert_eq!(through(&n, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 999, 53), NS).0, NF_ACCEPT);
        let evicted = n.stats().early_drop;
        assert!(evicted >= 1);
        assert_eq!(n.count(), 32 - evicted + 1);
        assert!(n.count() <= 32);

        // A table full of ASSURED entries evicts nothing: the new flow is dropped.
        let n = net(4, 4);
        for port in 0..4u16 {
            let t = u64::from(port) * 10 * NS;
            let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], port, 53);
            through(&n, &p, t);
            through(&n, &udp4([10, 0, 0, 2], [10, 0, 0, 1], 53, port), t);
            through(&n, &p, t + 3 * NS);
        }
        assert!(n.list(34 * NS).iter().all(|(_, _, v)| v.status & IPS_ASSURED != 0));
        let (v, class) = through(&n, &udp4([10, 0, 0, 3], [10, 0, 0, 2], 1, 53), 34 * NS);
        assert_eq!((v, class), (NF_DROP, None));
        let s = n.stats();
        assert_eq!((s.drop, s.early_drop, n.count()), (1, 0, 4));
    }

    #[test]
    fn clash_merges_udp() {
        let n = net(0, 64);
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 7, 53);
        let (mut a, mut b) = (SkbCt::default(), SkbCt::default());
        n.conntrack_in(&p, NS, Hook::PreRouting, AF_INET, &mut a);
        n.conntrack_in(&p, NS, Hook::PreRouting, AF_INET, &mut b);
        assert_eq!(n.count(), 2, "two unconfirmed entries for one tuple");
        assert_eq!(n.confirm(&mut a, NS), NF_ACCEPT);
        assert_eq!(n.confirm(&mut b, NS), NF_ACCEPT);
        assert_eq!(a.nfct, b.nfct, "the second packet now carries the first entry");
        n.release(&mut a);
        n.release(&mut b);
        assert_eq!((n.count(), n.list(NS).len(), n.stats().clash_resolve), (1, 1, 1));
    }

    #[test]
    fn clash_drops_icmp() {
        let n = net(0, 64);
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p.extend_from_slice(&[8, 0, 0, 0, 0, 9, 0, 1]);
        let (mut a, mut b) = (SkbCt::default(), SkbCt::default());
        n.conntrack_in(&p, NS, Hook::LocalOut, AF_INET, &mut a);
        n.conntrack_in(&p, NS, Hook::LocalOut, AF_INET, &mut b);
        assert_eq!(n.confirm(&mut a, NS), NF_ACCEPT);
        assert_eq!(n.confirm(&mut b, NS), NF_DROP);
        n.release(&mut a);
        n.release(&mut b);
        let s = n.stats();
        assert_eq!((s.drop, s.insert_failed, n.count()), (1, 1, 1));
    }

    #[test]
    fn deleted_entry_stays_readable_while_referenced() {
        let n = net(0, 64);
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 7, 53);
        through(&n, &p, NS);
        let (slot, gen, _) = n.list(NS)[0];
        assert!(n.get(slot, gen));
        assert!(n.delete(slot, gen, NS));
        assert_eq!(n.count(), 0);
        let v = n.view(slot, gen, NS, true).expect("still referenced");
        assert!(v.status & IPS_DYING != 0);
        n.put(slot, gen);
        assert!(n.view(slot, gen, NS, true).is_none(), "freed with the last reference");
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let n = net(16, 4);
        let mut x: u64 = 0x1234_5678;
        for len in 0..200usize {
            for _ in 0..20 {
                let mut p: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if let Some(b) = p.first_mut() {
                    *b = if x & 1 == 0 { 0x45 } else { 0x60 };
                }
                for pf in [AF_INET, AF_INET6] {
                    let mut skb = SkbCt::default();
                    let v = n.conntrack_in(&p, NS, Hook::PreRouting, pf, &mut skb);
                    if v != NF_DROP {
                        n.confirm(&mut skb, NS);
                    }
                    n.release(&mut skb);
                }
            }
        }
        assert!(n.count() <= 16);
    }
}
