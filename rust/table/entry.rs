//! `struct nf_conn`: one connection tracking entry, as kept in the table's slab.

use crate::format::{ConnView, Counter, Tstamp};
use crate::proto::ProtoState;
use crate::tuple::{Direction, Tuple, Zone};

pub const IPS_EXPECTED: u32 = 1 << 0;
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;
pub const IPS_SEQ_ADJUST: u32 = 1 << 6;
pub const IPS_SRC_NAT_DONE: u32 = 1 << 7;
pub const IPS_DST_NAT_DONE: u32 = 1 << 8;
pub const IPS_DYING: u32 = 1 << 9;
pub const IPS_FIXED_TIMEOUT: u32 = 1 << 10;
pub const IPS_TEMPLATE: u32 = 1 << 11;
pub const IPS_UNTRACKED: u32 = 1 << 12;
pub const IPS_NAT_CLASH: u32 = IPS_UNTRACKED;
pub const IPS_HELPER: u32 = 1 << 13;
pub const IPS_OFFLOAD: u32 = 1 << 14;
pub const IPS_HW_OFFLOAD: u32 = 1 << 15;

/// Every IPS_* bit with its name, for the Python module's constants.
pub const IPS_BITS: &[(&str, u32)] = &[
    ("IPS_EXPECTED", IPS_EXPECTED),
    ("IPS_SEEN_REPLY", IPS_SEEN_REPLY),
    ("IPS_ASSURED", IPS_ASSURED),
    ("IPS_CONFIRMED", IPS_CONFIRMED),
    ("IPS_SRC_NAT", IPS_SRC_NAT),
    ("IPS_DST_NAT", IPS_DST_NAT),
    ("IPS_NAT_MASK", IPS_SRC_NAT | IPS_DST_NAT),
    ("IPS_SEQ_ADJUST", IPS_SEQ_ADJUST),
    ("IPS_SRC_NAT_DONE", IPS_SRC_NAT_DONE),
    ("IPS_DST_NAT_DONE", IPS_DST_NAT_DONE),
    ("IPS_NAT_DONE_MASK", IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE),
    ("IPS_DYING", IPS_DYING),
    ("IPS_FIXED_TIMEOUT", IPS_FIXED_TIMEOUT),
    ("IPS_TEMPLATE", IPS_TEMPLATE),
    ("IPS_UNTRACKED", IPS_UNTRACKED),
    ("IPS_NAT_CLASH", IPS_NAT_CLASH),
    ("IPS_HELPER", IPS_HELPER),
    ("IPS_OFFLOAD", IPS_OFFLOAD),
    ("IPS_HW_OFFLOAD", IPS_HW_OFFLOAD),
];

/// Event bits (`enum ip_conntrack_events`), cached per entry while a packet is processed.
pub const IPCT_NEW: u16 = 1 << 0;
pub const IPCT_RELATED: u16 = 1 << 1;
pub const IPCT_DESTROY: u16 = 1 << 2;
pub const IPCT_REPLY: u16 = 1 << 3;
pub const IPCT_ASSURED: u16 = 1 << 4;
pub const IPCT_PROTOINFO: u16 = 1 << 5;
pub const IPCT_MARK: u16 = 1 << 7;

/// The extensions an entry has only when they were on at its creation (the kernel's
/// `nf_ct_ext`): packet and byte counters (`nf_conntrack_acct`) and the start timestamp
/// (`nf_conntrack_timestamp`). Both are off by default, so most entries carry one null pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ext {
    pub acct: Option<[Counter; 2]>,
    pub tstamp_start: Option<u64>,
}

impl Ext {
    /// The extensions of a new entry: None when neither is on.
    pub fn new(acct: bool, tstamp: bool) -> Option<Box<Ext>> {
        (acct || tstamp)
            .then(|| Box::new(Ext { acct: acct.then(Default::default), tstamp_start: tstamp.then_some(0) }))
    }
}

/// One entry. Lives in a slab slot behind its own lock (the kernel's `ct->lock`); the slot also
/// holds the links of the entry's two hash-chain nodes (see `table`).
///
/// Kept small on purpose (104 bytes; a 128-byte slot with its lock and the two
/// hash-chain links, see `table::Slot`): only the original tuple is
/// stored, since the reply tuple is its inverse (nfct has no NAT that would change it), and the
/// TCP/SCTP states and the acct/timestamp extensions are out of line.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct Entry {
    // In the order a lookup reads them, so a walk that stops at the expiry check stays in the
    // slot's first cache line.
    /// Bumped every time the slot is freed, so stale handles can tell.
    pub gen: u32,
    /// IPS_* bits.
    pub status: u32,
    /// Nanoseconds: relative before confirmation, absolute on the table's clock after.
    pub timeout: u64,
    /// The original tuple (`tuplehash[IP_CT_DIR_ORIGINAL]`); `tuple(Reply)` is its inverse.
    pub orig: Tuple,
    pub zone: Zone,
    /// Cached IPCT_* bits not yet delivered.
    pub events: u16,
    /// Whether the slot holds an entry at all.
    pub live: bool,
    /// Whether the entry has the event extension (decided at creation by
    /// `nf_conntrack_events` and whether anyone listened then).
    pub ecache: bool,
    /// References held by packets and handles (the kernel's `ct_general.use` less the table's).
    pub refs: u32,
    pub mark: u32,
    /// The opaque id `conntrack -o id` prints.
    pub id: u32,
    pub proto: ProtoState,
    /// Counters and start timestamp, when they were on at creation.
    pub ext: Option<Box<Ext>>,
}

impl Entry {
    /// The tuple of one direction (`tuplehash[dir].tuple`).
    #[inline]
    pub fn tuple(&self, dir: Direction) -> Tuple {
        match dir {
            Direction::Original => self.orig,
            // Entries are only created for invertible tuples.
            Direction::Reply => self.orig.invert().unwrap_or(self.orig),
        }
    }

    /// Both tuples, original first.
    #[inline]
    pub fn tuples(&self) -> [Tuple; 2] {
        [self.orig, self.tuple(Direction::Reply)]
    }

    /// Packet and byte counters per direction, when accounting was on at creation.
    #[inline]
    pub fn acct(&self) -> Option<[Counter; 2]> {
        self.ext.as_ref().and_then(|x| x.acct)
    }

    /// Mutable counters, when accounting was on at creation.
    #[inline]
    pub fn acct_mut(&mut self) -> Option<&mut [Counter; 2]> {
        self.ext.as_mut().and_then(|x| x.acct.as_mut())
    }

    /// Start timestamp (ns), when timestamps were on at creation.
    #[inline]
    pub fn tstamp_start(&self) -> Option<u64> {
        self.ext.as_ref().and_then(|x| x.tstamp_start)
    }

    /// Sets the start timestamp if the entry has one (at confirmation).
    #[inline]
    pub fn set_tstamp_start(&mut self, now: u64) {
        if let Some(t) = self.ext.as_mut().and_then(|x| x.tstamp_start.as_mut()) {
            *t = now;
        }
    }

    #[inline]
    pub fn confirmed(&self) -> bool {
        self.status & IPS_CONFIRMED != 0
    }

    #[inline]
    pub fn dying(&self) -> bool {
        self.status & IPS_DYING != 0
    }

    /// `nf_ct_is_expired`, on a confirmed entry.
    #[inline]
    pub fn expired(&self, now: u64) -> bool {
        self.timeout <= now
    }

    /// Nanoseconds left (`nf_ct_expires`); for an unconfirmed entry, its relative timeout.
    #[inline]
    pub fn remaining(&self, now: u64) -> u64 {
        if self.confirmed() {
            self.timeout.saturating_sub(now)
        } else {
            self.timeout
        }
    }

    /// `__nf_ct_refresh_acct`: set (never only extend) the timeout and count the packet.
    #[inline]
    pub fn refresh(&mut self, dir: Direction, len: usize, extra_ns: u64, now: u64) {
        if self.status & IPS_FIXED_TIMEOUT == 0 {
            self.timeout = if self.confirmed() { now.saturating_add(extra_ns) } else { extra_ns };
        }
        self.account(dir, len);
    }

    /// Counts one packet in `dir` when accounting is on.
    #[inline]
    pub fn account(&mut self, dir: Direction, len: usize) {
        if let Some(acct) = self.acct_mut() {
            let c = &mut acct[dir.index()];
            c.packets += 1;
            c.bytes += len as u64;
        }
    }

    /// Sets status bits, caching `event` when the bits were not all set before.
    #[inline]
    pub fn set_status(&mut self, bits: u32, event: u16) {
        if self.status & bits != bits {
            self.status |= bits;
            self.events |= event;
        }
    }

    /// A snapshot for the listings, with the time left as a listing taken at `now` shows it.
    pub fn view(&self, now: u64, listing: bool) -> ConnView {
        let remaining = self.remaining(now);
        // A listing is taken an instant after the last packet (as `conntrack -L` after a replay
        // is), so a fresh 30 s entry shows 29, as the kernel's does.
        let secs =
            if listing { remaining.saturating_sub(1) / 1_000_000_000 } else { remaining / 1_000_000_000 };
        ConnView {
            orig: self.orig,
            reply: self.tuple(Direction::Reply),
            status: self.status,
            timeout: secs,
            proto: self.proto.view(),
            mark: self.mark,
            zone: self.zone,
            acct: self.acct(),
            tstamp: self.tstamp_start().map(|start| Tstamp { start, stop: now }),
            use_count: 1,
            id: self.id,
        }
    }
}
