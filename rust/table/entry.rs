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

/// One entry. Lives in a slab slot behind its own lock (the kernel's `ct->lock`); the table's
/// buckets hold only small nodes that point here.
#[derive(Clone, Debug, Default)]
pub struct Entry {
    /// Bumped every time the slot is freed, so stale handles can tell.
    pub gen: u32,
    /// References held by packets and handles (the kernel's `ct_general.use` less the table's).
    pub refs: u32,
    /// Whether the slot holds an entry at all.
    pub live: bool,
    /// Original and reply tuples (`tuplehash[IP_CT_DIR_*]`).
    pub tuple: [Tuple; 2],
    /// Raw hashes of the original tuple (computed at creation) and of the reply tuple
    /// (computed at confirmation), each with its direction's zone id.
    pub hash: [u32; 2],
    /// IPS_* bits.
    pub status: u32,
    /// Nanoseconds: relative before confirmation, absolute on the table's clock after.
    pub timeout: u64,
    pub zone: Zone,
    pub mark: u32,
    pub proto: ProtoState,
    /// Packet and byte counters when `nf_conntrack_acct` was on at creation.
    pub acct: Option<[Counter; 2]>,
    /// Start timestamp (ns) when `nf_conntrack_timestamp` was on at creation.
    pub tstamp_start: Option<u64>,
    /// Cached IPCT_* bits not yet delivered.
    pub events: u16,
    /// Whether the entry has the event extension (decided at creation by
    /// `nf_conntrack_events` and whether anyone listened then).
    pub ecache: bool,
    /// The opaque id `conntrack -o id` prints.
    pub id: u32,
}

impl Entry {
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
        if let Some(acct) = self.acct.as_mut() {
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
            orig: self.tuple[0],
            reply: self.tuple[1],
            status: self.status,
            timeout: secs,
            proto: self.proto.view(),
            mark: self.mark,
            zone: self.zone,
            acct: self.acct,
            tstamp: self.tstamp_start.map(|start| Tstamp { start, stop: now }),
            use_count: 1,
            id: self.id,
        }
    }
}
