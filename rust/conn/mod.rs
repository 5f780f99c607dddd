//! `struct nf_conn`: one connection tracking entry, as kept in the table's slab, with its
//! extensions, and the snapshot of it that listings and events print (`ConnView`).
//!
//! The protocol-private state it carries (`state`) is data only, as the kernel's
//! `nf_conntrack_tcp.h`-style headers are: the trackers (`proto`) act on both.
//!
//! Depends on `uapi` and `tuple`; never on the table, the trackers, the core or the printers.

pub mod state;

use crate::tuple::{Direction, Tuple, Zone};
use crate::uapi::{IPS_CONFIRMED, IPS_DYING, IPS_FIXED_TIMEOUT};
use state::ProtoState;

/// The extensions an entry has only when they were on at its creation (the kernel's
/// `nf_ct_ext`): packet and byte counters (`nf_conntrack_acct`) and the start timestamp
/// (`nf_conntrack_timestamp`). Both are off by default, so most entries carry one null pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CtExt {
    pub acct: Option<[Counter; 2]>,
    pub tstamp_start: Option<u64>,
    /// The reply tuple NAT gave the entry (`nf_conntrack_alter_reply`), when it differs from
    /// the inverse of the original.
    pub nat_reply: Option<Tuple>,
    /// The interface a masquerading entry left by (`nf_conn_nat.masq_index`).
    pub masq_index: Option<u32>,
}

impl CtExt {
    /// The extensions of a new entry: None when neither is on.
    pub fn new(acct: bool, tstamp: bool) -> Option<Box<CtExt>> {
        (acct || tstamp).then(|| {
            Box::new(CtExt {
                acct: acct.then(Default::default),
                tstamp_start: tstamp.then_some(0),
                ..CtExt::default()
            })
        })
    }
}

/// One entry (`struct nf_conn`). Lives in a slab slot behind its own lock (the kernel's `ct->lock`); the slot also
/// holds the links of the entry's two hash-chain nodes (see `table`).
///
/// Kept small on purpose (104 bytes; a 128-byte slot with its lock and the two
/// hash-chain links, see `table::Slot`): only the original tuple is stored inline, since the
/// reply tuple is its inverse unless NAT changed it (then it lives in the extensions), and the
/// TCP/SCTP states and the acct/timestamp/NAT extensions are out of line.
#[derive(Clone, Debug, Default)]
#[repr(C)]
pub struct Conn {
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
    pub ext: Option<Box<CtExt>>,
}

impl Conn {
    /// The tuple of one direction (`tuplehash[dir].tuple`).
    #[inline]
    pub fn tuple(&self, dir: Direction) -> Tuple {
        match dir {
            Direction::Original => self.orig,
            Direction::Reply => match self.ext.as_ref().and_then(|x| x.nat_reply) {
                Some(r) => r,
                // Entries are only created for invertible tuples.
                None => self.orig.invert().unwrap_or(self.orig),
            },
        }
    }

    /// `nf_conntrack_alter_reply`: NAT gives the (unconfirmed) entry another reply tuple.
    pub fn set_reply(&mut self, reply: Tuple) {
        let ext = self.ext.get_or_insert_with(Box::default);
        ext.nat_reply = (self.orig.invert() != Some(reply)).then_some(reply);
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
            proto: ProtoView::of(&self.proto),
            mark: self.mark,
            zone: self.zone,
            acct: self.acct(),
            tstamp: self.tstamp_start().map(|start| Tstamp { start, stop: now }),
            use_count: 1,
            id: self.id,
        }
    }
}

/// The protocol-private part of an entry, as the listings print it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoView {
    None,
    /// TCP state name as conntrack prints it (`ESTABLISHED`, `SYN_SENT2`, ...).
    Tcp(&'static str),
    /// SCTP state name.
    Sctp(&'static str),
    /// GRE: the timeouts copied into the entry on its first packet, in seconds.
    Gre {
        timeout: u32,
        stream_timeout: u32,
    },
}

/// Packet and byte counters of one direction (`nf_conntrack_acct`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// The timestamp extension (`nf_conntrack_timestamp`) as the printers need it, in nanoseconds on
/// the table's clock.
///
/// The kernel and the tool derive `delta-time=` differently, and the live 6.18 kernel shows it
/// (an entry started at x.6 s and listed 2.7 s later): `/proc` prints the whole seconds of
/// `now - start` (2), while libnetfilter_conntrack gets only the start over netlink and prints
/// `time(NULL) - start / 10^9`, whole seconds of each (3). A DESTROY event carries the stop
/// timestamp too, and the tool prints `stop / 10^9 - start / 10^9`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tstamp {
    /// When the entry was confirmed.
    pub start: u64,
    /// The stop timestamp of a destroyed entry (`nf_ct_delete`), else the time of the listing.
    pub stop: u64,
}

impl Tstamp {
    const NS: u64 = 1_000_000_000;

    /// `delta-time=` as `/proc/net/nf_conntrack` prints it: whole seconds of the difference.
    #[inline]
    pub fn delta_proc(&self) -> u64 {
        self.stop.saturating_sub(self.start) / Self::NS
    }

    /// `delta-time=` as libnetfilter_conntrack prints it (`conntrack -L`, `conntrack -E`): the
    /// difference of the whole seconds of each.
    #[inline]
    pub fn delta_tool(&self) -> u64 {
        (self.stop / Self::NS).saturating_sub(self.start / Self::NS)
    }
}

/// A snapshot of one confirmed entry, everything the listings need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnView {
    pub orig: Tuple,
    pub reply: Tuple,
    /// IPS_* bits.
    pub status: u32,
    /// Whole seconds left (already truncated).
    pub timeout: u64,
    pub proto: ProtoView,
    pub mark: u32,
    pub zone: Zone,
    /// Per-direction counters when the accounting extension exists.
    pub acct: Option<[Counter; 2]>,
    /// The start timestamp and the instant the listing is taken at (or, in a DESTROY event, the
    /// stop timestamp), when the timestamp extension exists.
    pub tstamp: Option<Tstamp>,
    /// The refcount shown as `use=`.
    pub use_count: u32,
    /// The opaque 32-bit id `-o id` prints.
    pub id: u32,
}

impl ProtoView {
    /// What the listings print for a protocol state.
    pub fn of(p: &ProtoState) -> ProtoView {
        match p {
            ProtoState::None | ProtoState::Udp { .. } => ProtoView::None,
            &ProtoState::Gre { timeout, stream_timeout } => ProtoView::Gre { timeout, stream_timeout },
            ProtoState::Tcp(st) => ProtoView::Tcp(st.name()),
            ProtoState::Sctp(st) => ProtoView::Sctp(st.name()),
        }
    }
}

impl ConnView {
    /// What a handle on an entry that is gone shows: a dying, empty entry.
    pub fn dying() -> ConnView {
        ConnView {
            orig: Tuple::default(),
            reply: Tuple::default(),
            status: IPS_DYING,
            timeout: 0,
            proto: ProtoView::None,
            mark: 0,
            zone: Zone::default(),
            acct: None,
            tstamp: None,
            use_count: 0,
            id: 0,
        }
    }
}
