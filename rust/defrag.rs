//! Defragmentation in front of conntrack (`nf_defrag_ipv4` / `nf_defrag_ipv6`, PRE_ROUTING and
//! LOCAL_OUT at priority −400, spec §1.2): conntrack only ever sees whole datagrams.
//!
//! Modelled on Linux 6.x `ip_defrag` (net/ipv4/ip_fragment.c), `nf_ct_frag6_gather`
//! (net/ipv6/netfilter/nf_conntrack_reasm.c) and the shared `inet_frag_queue_insert`
//! (net/ipv4/inet_fragment.c):
//!
//! * queues keyed as the kernel keys them: IPv4 (src, dst, id, protocol) and IPv6 (src, dst,
//!   fragment id); the defrag user (conntrack, zone 0) and the input interface are the same for
//!   every packet of a replay;
//! * a queue lives `ipfrag_time` (IPv4, 30 s) / `nf_conntrack_frag6_timeout` (IPv6, 60 s) from
//!   its creation (the timer is not re-armed by later fragments);
//! * while the accounted memory is above `high_thresh`, every fragment is refused (Linux 6.x
//!   `inet_frag_find`; the old evictor down to `low_thresh` is gone since 4.17, `low_thresh` is
//!   kept only as a setting); memory is the kernel's `truesize` estimate, so it is bounded by
//!   `high_thresh` plus one fragment whatever the input;
//! * fragments are kept as runs of contiguous fragments: one entirely inside a run is a
//!   duplicate (dropped, the queue kept); any other overlap drops the whole queue (RFC 5722,
//!   applied to IPv4 too since Linux 4.19);
//! * IPv4: a packet from a source that sent more than `ipfrag_max_dist` (64) other fragments
//!   since the queue's previous one restarts the queue (`ip_frag_too_far`);
//! * IPv6 atomic fragments (offset 0, M=0) pass as they are, except a non-empty one whose id
//!   has a live queue: that one is a last fragment of the queue's datagram (as Linux 6.18 has
//!   it, not isolated as RFC 6946 asks);
//! * ECN codepoints that may not be mixed fail the reassembly; a datagram over 65535 bytes too.
//!
//! Parsing is total: any byte sequence gives a [`Gathered`], never a panic.

use parking_lot::Mutex;
use std::collections::HashMap;

/// `ipfrag_time` default, seconds.
pub const IPFRAG_TIME_S: u64 = 30;
/// `ipfrag_high_thresh` / `ipfrag_low_thresh` defaults (IPv4).
pub const IPFRAG_HIGH_THRESH: u64 = 4 * 1024 * 1024;
pub const IPFRAG_LOW_THRESH: u64 = 3 * 1024 * 1024;
/// `ipfrag_max_dist` default.
pub const IPFRAG_MAX_DIST: u32 = 64;
/// `nf_conntrack_frag6_*` defaults.
pub const FRAG6_TIMEOUT_S: u64 = 60;
pub const FRAG6_HIGH_THRESH: u64 = 4 * 1024 * 1024;
pub const FRAG6_LOW_THRESH: u64 = 3 * 1024 * 1024;

/// Largest IP datagram.
const MAX_DATAGRAM: usize = 65535;
/// Memory a queue itself is charged (`sizeof(struct ipq)` / `frag_queue`, rounded).
const QUEUE_SIZE: u64 = 256;

/// `skb->truesize` of a received fragment of `len` bytes, estimated as the kernel's: the data
/// buffer (headroom + data + `skb_shared_info`, rounded up by the slab) plus the `sk_buff`.
fn truesize(len: usize) -> u64 {
    let buf = (len as u64).saturating_add(64 + 320);
    buf.next_power_of_two().max(512) + 256
}

/// What defrag did with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gathered {
    /// Not a fragment (or one the kernel lets through as it is): pass the packet on.
    NotFragment,
    /// Queued (stolen): no verdict, conntrack does not see it.
    Held,
    /// This fragment completed a datagram: the whole datagram, which conntrack sees instead.
    /// `max_frag` is the largest fragment's size (`frag_max_size`), what the MTU check of the
    /// forwarding path uses.
    Reassembled { pkt: Vec<u8>, max_frag: usize },
    /// Dropped (stolen or NF_DROP): the fragment, and maybe its queue, is gone.
    Dropped(&'static str),
}

/// Defrag counters (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragCounters {
    /// Fragments that entered reassembly.
    pub fragments: u64,
    /// Datagrams reassembled.
    pub reassembled: u64,
    /// Queues whose timer expired before they were complete.
    pub timed_out: u64,
    /// Queues discarded (overlap, inconsistent lengths, oversize, ECN, restart) plus fragments
    /// refused because fragment memory was over `high_thresh`.
    pub dropped: u64,
}

/// Settings of one family's reassembly (`fqdir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    pub timeout_ns: u64,
    pub high_thresh: u64,
    pub low_thresh: u64,
}

impl FragLimits {
    pub const IPV4: FragLimits = FragLimits {
        timeout_ns: IPFRAG_TIME_S * 1_000_000_000,
        high_thresh: IPFRAG_HIGH_THRESH,
        low_thresh: IPFRAG_LOW_THRESH,
    };
    pub const IPV6: FragLimits = FragLimits {
        timeout_ns: FRAG6_TIMEOUT_S * 1_000_000_000,
        high_thresh: FRAG6_HIGH_THRESH,
        low_thresh: FRAG6_LOW_THRESH,
    };
}

/// Contiguous fragments queued one after the other (`frag_run`).
#[derive(Debug)]
struct Run {
    off: usize,
    data: Vec<u8>,
}

impl Run {
    fn end(&self) -> usize {
        self.off + self.data.len()
    }
}

/// `inet_frag_queue_insert` outcome.
enum Insert {
    Ok,
    Dup,
    Overlap,
}

/// One datagram being reassembled (`inet_frag_queue` + `ipq` / `frag_queue`).
#[derive(Debug)]
struct Queue {
    expires: u64,
    /// Sorted by offset, disjoint; the last one is the tail.
    runs: Vec<Run>,
    len: usize,
    meat: usize,
    first_in: bool,
    last_in: bool,
    max_size: usize,
    max_df_size: usize,
    ecn: u8,
    /// The offset-0 fragment's headers: IPv4 header, or IPv6 header + extension headers
    /// before the fragment header (whose next-header byte is at `nhoff`).
    head: Vec<u8>,
    nhoff: usize,
    /// IPv6: the next header the offset-0 fragment's fragment header names.
    head_nexthdr: u8,
    mem: u64,
    /// `ip_frag_too_far` bookkeeping (IPv4).
    rid: u32,
}

impl Queue {
    fn new(expires: u64, rid: u32) -> Queue {
        Queue {
            expires,
            runs: Vec::new(),
            len: 0,
            meat: 0,
            first_in: false,
            last_in: false,
            max_size: 0,
            max_df_size: 0,
            ecn: 0,
            head: Vec::new(),
            nhoff: 0,
            head_nexthdr: 0,
            mem: QUEUE_SIZE,
            rid,
        }
    }

    fn insert(&mut self, off: usize, end: usize, data: &[u8]) -> Insert {
        let tail_end = self.runs.last().map(Run::end);
        match tail_end {
            None => self.runs.push(Run { off, data: data.to_vec() }),
            Some(te) if te < end => {
                if off < te {
                    return Insert::Overlap;
                }
                match self.runs.last_mut() {
                    Some(last) if off == te => last.data.extend_from_slice(data),
                    _ => self.runs.push(Run { off, data: data.to_vec() }),
                }
            }
            Some(_) => {
                let mut at = self.runs.len();
                for (i, r) in self.runs.iter().enumerate() {
                    if end <= r.off {
                        at = i;
                        break;
                    }
                    if off >= r.end() {
                        continue;
                    }
                    return if off >= r.off && end <= r.end() { Insert::Dup } else { Insert::Overlap };
                }
                self.runs.insert(at, Run { off, data: data.to_vec() });
            }
        }
        Insert::Ok
    }

    fn complete(&self) -> bool {
        self.first_in && self.last_in && self.meat == self.len
    }

    /// The payload of a complete queue, if its runs cover `[0, len)` exactly.
    fn payload(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len);
        for r in &self.runs {
            if r.off != out.len() {
                return None;
            }
            out.extend_from_slice(&r.data);
        }
        (out.len() == self.len).then_some(out)
    }

    /// `ip_frag_ecn_table`: None for an invalid mix, else the bits to OR into the TOS.
    fn ecn_bits(&self) -> Option<u8> {
        const NOT_ECT: u8 = 1;
        const CE: u8 = 8;
        if self.ecn & NOT_ECT != 0 && self.ecn & !NOT_ECT != 0 {
            return None;
        }
        Some(if self.ecn & CE != 0 && self.ecn & !CE != 0 { 3 } else { 0 })
    }
}

/// `IPFRAG_ECN_*` bit of a TOS / traffic class.
fn frag_ecn(tos: u8) -> u8 {
    1 << (tos & 3)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key4 {
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    proto: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key6 {
    src: [u8; 16],
    dst: [u8; 16],
    id: u32,
}

/// `inet_peer` rid counter of a source with live queues.
#[derive(Debug, Default)]
struct Peer {
    rid: u32,
    queues: u32,
}

/// One family's queues and memory (`fqdir`).
#[derive(Debug)]
struct Dir<K> {
    queues: HashMap<K, Queue>,
    mem: u64,
    /// No queue expires before this.
    next_expiry: u64,
}

impl<K: std::hash::Hash + Eq + Copy> Dir<K> {
    fn new() -> Dir<K> {
        Dir { queues: HashMap::new(), mem: 0, next_expiry: u64::MAX }
    }

    /// Expires the queues whose timer fired by `now`; returns their keys.
    fn expire(&mut self, now: u64, counters: &mut DefragCounters) -> Vec<K> {
        if now < self.next_expiry {
            return Vec::new();
        }
        let mut gone = Vec::new();
        let mut next = u64::MAX;
        let mut freed = 0;
        self.queues.retain(|k, q| {
            if now >= q.expires {
                freed += q.mem;
                gone.push(*k);
                false
            } else {
                next = next.min(q.expires);
                true
            }
        });
        self.mem = self.mem.saturating_sub(freed);
        counters.timed_out += gone.len() as u64;
        self.next_expiry = next;
        gone
    }

    fn kill(&mut self, k: &K) -> bool {
        match self.queues.remove(k) {
            Some(q) => {
                self.mem = self.mem.saturating_sub(q.mem);
                true
            }
            None => false,
        }
    }

    /// `inet_frag_find`: refuses every fragment while memory is over `high_thresh`.
    fn over_limit(&self, lim: &FragLimits) -> bool {
        lim.high_thresh == 0 || self.mem > lim.high_thresh
    }

    /// The queue for `k`, created if missing. Returns whether it was created.
    fn find_or_create(&mut self, k: K, now: u64, lim: &FragLimits, rid: u32) -> bool {
        if self.queues.contains_key(&k) {
            return false;
        }
        let expires = now.saturating_add(lim.timeout_ns);
        self.next_expiry = self.next_expiry.min(expires);
        self.queues.insert(k, Queue::new(expires, rid));
        self.mem += QUEUE_SIZE;
        true
    }
}

#[derive(Debug)]
struct State {
    v4: Dir<Key4>,
    v6: Dir<Key6>,
    peers: HashMap<[u8; 4], Peer>,
    v4_limits: FragLimits,
    counters: DefragCounters,
}

impl State {
    fn peer_drop(&mut self, src: [u8; 4]) {
        if let Some(p) = self.peers.get_mut(&src) {
            p.queues = p.queues.saturating_sub(1);
            if p.queues == 0 {
                self.peers.remove(&src);
            }
        }
    }

    fn kill4(&mut self, k: &Key4) {
        if self.v4.kill(k) {
            self.peer_drop(k.src);
        }
    }

    fn expire4(&mut self, now: u64) {
        for k in self.v4.expire(now, &mut self.counters) {
            self.peer_drop(k.src);
        }
    }
}

/// Reassembly for one network namespace (both families).
#[derive(Debug)]
pub struct Defrag {
    state: Mutex<State>,
}

impl Default for Defrag {
    fn default() -> Self {
        Defrag::new()
    }
}

/// The IPv4 header checksum over `h`, with its checksum field taken as zero.
fn ipv4_header_csum(h: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, c) in h.chunks(2).enumerate() {
        if i == 5 {
            continue;
        }
        let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

impl Defrag {
    pub fn new() -> Defrag {
        Defrag {
            state: Mutex::new(State {
                v4: Dir::new(),
                v6: Dir::new(),
                peers: HashMap::new(),
                v4_limits: FragLimits::IPV4,
                counters: DefragCounters::default(),
            }),
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> DefragCounters {
        self.state.lock().counters
    }

    /// Sets the IPv4 settings (`ipfrag_time`, `ipfrag_high_thresh`, `ipfrag_low_thresh`).
    pub fn set_ipv4_limits(&self, lim: FragLimits) {
        self.state.lock().v4_limits = lim;
    }

    /// Accounted fragment memory (IPv4, IPv6).
    pub fn mem(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.v4.mem, s.v6.mem)
    }

    /// Queues being reassembled (IPv4, IPv6).
    pub fn queues(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.v4.queues.len(), s.v6.queues.len())
    }

    /// `ipv4_conntrack_defrag` → `ip_defrag` on an IPv4 packet that passed `ip_rcv`'s checks
    /// (anything else is passed on untouched).
    pub fn ipv4_gather(&self, pkt: &[u8], now_ns: u64) -> Gathered {
        self.ipv4_gather_at(pkt, now_ns, now_ns)
    }

    /// As `ipv4_gather`, with the other queues' timers fired only up to `sweep_ns` (a threaded
    /// replay's worker passes the time every worker has reached; its own queue still expires
    /// by its own time, `now_ns`).
    ///
    /// Inlined up to the fragment bits, so that a whole packet (nearly every one) costs its
    /// caller no call.
    #[inline]
    pub fn ipv4_gather_at(&self, pkt: &[u8], now_ns: u64, sweep_ns: u64) -> Gathered {
        if !ipv4_fragment_bits(pkt) {
            return Gathered::NotFragment;
        }
        self.ipv4_gather_fragment(pkt, now_ns, sweep_ns)
    }

    /// [`Defrag::ipv4_gather_at`] for a packet whose fragment bits are set.
    #[inline(never)]
    fn ipv4_gather_fragment(&self, pkt: &[u8], now_ns: u64, sweep_ns: u64) -> Gathered {
        let Some(h) = pkt.first_chunk::<20>() else {
            return Gathered::NotFragment;
        };
        let ihl = usize::from(h[0] & 0x0f) * 4;
        let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
        if h[0] >> 4 != 4 || ihl < 20 || tot < ihl || tot > pkt.len() {
            return Gathered::NotFragment;
        }
        let fo = u16::from_be_bytes([h[6], h[7]]);
        if fo & 0x3fff == 0 {
            return Gathered::NotFragment;
        }
        let pkt = &pkt[..tot];
        let key = Key4 {
            src: [h[12], h[13], h[14], h[15]],
            dst: [h[16], h[17], h[18], h[19]],
            id: u16::from_be_bytes([h[4], h[5]]),
            proto: h[9],
        };
        let mut guard = self.state.lock();
        let st = &mut *guard;
        st.counters.fragments += 1;
        st.expire4(sweep_ns.min(now_ns));
        if st.v4.queues.get(&key).is_some_and(|q| now_ns >= q.expires) {
            st.kill4(&key);
            st.counters.timed_out += 1;
        }
        let lim = st.v4_limits;
        if st.v4.over_limit(&lim) {
            st.counters.dropped += 1;
            return Gathered::Dropped("nf_defrag: fragment memory over high_thresh");
        }
        let peer_rid = st.peers.get(&key.src).map_or(0, |p| p.rid);
        if st.v4.find_or_create(key, now_ns, &lim, peer_rid) {
            st.peers.entry(key.src).or_default().queues += 1;
        }
        // ip_frag_too_far: the source's fragment counter against the queue's.
        let peer = st.peers.entry(key.src).or_default();
        peer.rid = peer.rid.wrapping_add(1);
        let rid = peer.rid;
        let Some(q) = st.v4.queues.get_mut(&key) else {
            return Gathered::Dropped("nf_defrag: no queue");
        };
        let start = q.rid;
        q.rid = rid;
        if IPFRAG_MAX_DIST != 0 && !q.runs.is_empty() && rid.wrapping_sub(start) > IPFRAG_MAX_DIST {
            // ip_frag_reinit: forget the fragments, re-arm the timer, queue this one.
            st.counters.dropped += 1;
            let freed = q.mem - QUEUE_SIZE;
            let expires = now_ns.saturating_add(lim.timeout_ns);
            *q = Queue::new(expires, rid);
            st.v4.mem = st.v4.mem.saturating_sub(freed);
            st.v4.next_expiry = st.v4.next_expiry.min(expires);
        }
        let ecn = frag_ecn(h[1]);
        let offset = usize::from(fo & 0x1fff) << 3;
        let mf = fo & 0x2000 != 0;
        let mut end = offset + (tot - ihl);
        let kill = |st: &mut State, why| {
            st.kill4(&key);
            st.counters.dropped += 1;
            Gathered::Dropped(why)
        };
        if !mf {
            if end < q.len || (q.last_in && end != q.len) {
                return kill(st, "nf_defrag: last fragment inconsistent with the queue");
            }
            q.last_in = true;
            q.len = end;
        } else {
            end &= !7;
            if end > q.len {
                if q.last_in {
                    return kill(st, "nf_defrag: fragment beyond the last fragment");
                }
                q.len = end;
            }
        }
        if end <= offset {
            return kill(st, "nf_defrag: empty fragment");
        }
        let data = &pkt[ihl..ihl + (end - offset)];
        match q.insert(offset, end, data) {
            Insert::Ok => {}
            Insert::Dup => return Gathered::Dropped("nf_defrag: duplicate fragment"),
            Insert::Overlap => return kill(st, "nf_defrag: overlapping fragment"),
        }
        q.meat += end - offset;
        q.ecn |= ecn;
        let ts = truesize(tot);
        q.mem += ts;
        st.v4.mem += ts;
        if offset == 0 {
            q.first_in = true;
            q.head = pkt[..ihl].to_vec();
        }
        let fragsize = end - offset + ihl;
        q.max_size = q.max_size.max(fragsize);
        if fo & 0x4000 != 0 {
            q.max_df_size = q.max_df_size.max(fragsize);
        }
        if !q.complete() {
            return Gathered::Held;
        }
        // ip_frag_reasm
        let ecn_bits = q.ecn_bits();
        let total = q.head.len() + q.len;
        let out = match (ecn_bits, q.payload()) {
            (Some(bits), Some(payload)) if total <= MAX_DATAGRAM => {
                let mut out = q.head.clone();
                out[1] |= bits;
                out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                let df = q.max_df_size == q.max_size;
                out[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
                let c = ipv4_header_csum(&out);
                out[10..12].copy_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&payload);
                Some((out, q.max_size))
            }
            _ => None,
        };
        match out {
            Some((pkt, max_frag)) => {
                st.kill4(&key);
                st.counters.reassembled += 1;
                Gathered::Reassembled { pkt, max_frag }
            }
            None => kill(st, "nf_defrag: reassembly failed (oversize or ECN mix)"),
        }
    }

    /// `ipv6_defrag` → `nf_ct_frag6_gather` with the default `nf_conntrack_frag6_*` settings.
    pub fn ipv6_gather(&self, pkt: &[u8], now_ns: u64) -> Gathered {
        self.ipv6_gather_with(pkt, now_ns, &FragLimits::IPV6)
    }

    /// `nf_ct_frag6_gather` on an IPv6 packet that passed `ip6_rcv`'s checks, with these
    /// `nf_conntrack_frag6_*` settings.
    pub fn ipv6_gather_with(&self, pkt: &[u8], now_ns: u64, lim: &FragLimits) -> Gathered {
        self.ipv6_gather_at(pkt, now_ns, now_ns, lim)
    }

    /// As `ipv6_gather_with`, with the other queues' timers fired only up to `sweep_ns` (see
    /// `ipv4_gather_at`).
    pub fn ipv6_gather_at(&self, pkt: &[u8], now_ns: u64, sweep_ns: u64, lim: &FragLimits) -> Gathered {
        let Some(h) = pkt.first_chunk::<40>() else {
            return Gathered::NotFragment;
        };
        let payload_len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        // Jumbo payload inhibits the fragment header.
        if h[0] >> 4 != 6 || payload_len == 0 || 40 + payload_len > pkt.len() {
            return Gathered::NotFragment;
        }
        let pkt = &pkt[..40 + payload_len];
        // find_prev_fhdr
        let mut nexthdr = h[6];
        let mut start = 40usize;
        let mut left = payload_len as isize;
        let mut nhoff = 6usize;
        while nexthdr != 44 {
            if !matches!(nexthdr, 0 | 43 | 51 | 60) || left < 2 {
                return Gathered::NotFragment;
            }
            let (Some(&nh), Some(&l)) = (pkt.get(start), pkt.get(start + 1)) else {
                return Gathered::NotFragment;
            };
            let hdrlen = if nexthdr == 51 { (usize::from(l) + 2) * 4 } else { (usize::from(l) + 1) * 8 };
            nhoff = start;
            nexthdr = nh;
            left -= hdrlen as isize;
            start += hdrlen;
        }
        if left < 0 {
            return Gathered::NotFragment;
        }
        let fhoff = start;
        let (Some(fh), Some(id)) = (pkt.get(fhoff..fhoff + 4), pkt.get(fhoff + 4..fhoff + 8)) else {
            return Gathered::Dropped("nf_defrag: truncated fragment header");
        };
        let frag_nexthdr = fh[0];
        let fo = usize::from(u16::from_be_bytes([fh[2], fh[3]]));
        let key = Key6 {
            src: pkt[8..24].try_into().unwrap_or([0; 16]),
            dst: pkt[24..40].try_into().unwrap_or([0; 16]),
            id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        };
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if fo & !6 == 0 {
            // An atomic fragment (offset 0, M=0, RFC 6946). Alone it is a datagram of one
            // fragment, whole at once: it passes (the kernel strips its fragment header; here
            // it passes as it is, which conntrack cannot tell apart). An empty one passes as it
            // is and leaves the queues alone. A non-empty one whose (src, dst, id) has a live
            // queue is a last fragment of that datagram like any other (RFC 6946 asks for
            // isolation; Linux 6.18's nf_defrag_ipv6 does not isolate it): shorter than the
            // queue's data it is dropped; inside its first run a duplicate that still marks the
            // queue's end; otherwise an overlap that drops the queue [obs 6.18:
            // tests/live/test_ipv6_exthdr.py].
            let live = st.v6.queues.get(&key).is_some_and(|q| now_ns < q.expires);
            if pkt.len() == fhoff + 8 || !live {
                return Gathered::NotFragment;
            }
        }
        st.counters.fragments += 1;
        st.v6.expire(sweep_ns.min(now_ns), &mut st.counters);
        if st.v6.queues.get(&key).is_some_and(|q| now_ns >= q.expires) {
            st.v6.kill(&key);
            st.counters.timed_out += 1;
        }
        if st.v6.over_limit(lim) {
            st.counters.dropped += 1;
            return Gathered::Dropped("nf_defrag: fragment memory over high_thresh");
        }
        st.v6.find_or_create(key, now_ns, lim, 0);
        let Some(q) = st.v6.queues.get_mut(&key) else {
            return Gathered::Dropped("nf_defrag: no queue");
        };
        // nf_ct_frag6_queue
        let offset = fo & !7;
        let data_start = fhoff + 8;
        let end = offset + (pkt.len() - data_start);
        if end > MAX_DATAGRAM {
            return Gathered::Dropped("nf_defrag: fragment past 65535");
        }
        let tclass = ((h[0] & 0x0f) << 4) | (h[1] >> 4);
        let ecn = frag_ecn(tclass);
        if fo & 1 == 0 {
            if end < q.len || (q.last_in && end != q.len) {
                return Gathered::Dropped("nf_defrag: last fragment inconsistent with the queue");
            }
            q.last_in = true;
            q.len = end;
        } else {
            if end & 7 != 0 {
                // RFC 2460 parameter problem: the queue goes, the packet passes as it is.
                st.v6.kill(&key);
                st.counters.dropped += 1;
                return Gathered::NotFragment;
            }
            if end > q.len {
                if q.last_in {
                    return Gathered::Dropped("nf_defrag: fragment beyond the last fragment");
                }
                q.len = end;
            }
        }
        if end == offset {
            return Gathered::Dropped("nf_defrag: empty fragment");
        }
        match q.insert(offset, end, &pkt[data_start..]) {
            Insert::Ok => {}
            // No error for duplicates: pretend they got queued.
            Insert::Dup => return Gathered::Held,
            Insert::Overlap => {
                st.v6.kill(&key);
                st.counters.dropped += 1;
                return Gathered::Dropped("nf_defrag: overlapping fragment");
            }
        }
        q.meat += end - offset;
        q.ecn |= ecn;
        q.max_size = q.max_size.max(payload_len);
        let ts = truesize(pkt.len());
        q.mem += ts;
        st.v6.mem += ts;
        if offset == 0 {
            q.first_in = true;
            q.head = pkt[..fhoff].to_vec();
            q.nhoff = nhoff;
            q.head_nexthdr = frag_nexthdr;
        }
        if !q.complete() {
            return Gathered::Held;
        }
        // nf_ct_frag6_reasm
        let new_plen = q.head.len() - 40 + q.len;
        let out = match (q.ecn_bits(), q.payload()) {
            (Some(bits), Some(payload)) if new_plen <= MAX_DATAGRAM && q.nhoff < q.head.len() => {
                let mut out = q.head.clone();
                out[q.nhoff] = q.head_nexthdr;
                out[4..6].copy_from_slice(&(new_plen as u16).to_be_bytes());
                // ipv6_change_dsfield(hdr, 0xff, ecn)
                out[1] |= bits << 4;
                out.extend_from_slice(&payload);
                Some((out, 40 + q.max_size))
            }
            _ => None,
        };
        st.v6.kill(&key);
        match out {
            Some((pkt, max_frag)) => {
                st.counters.reassembled += 1;
                Gathered::Reassembled { pkt, max_frag }
            }
            None => {
                st.counters.dropped += 1;
                Gathered::Held
            }
        }
    }
}

/// Whether an IPv4 packet may be a fragment (`ip_is_fragment`: MF set or a fragment offset),
/// read from its first 20 bytes only. False is certain (`ipv4_gather_at` leaves the packet
/// alone); true still needs the header checks `ipv4_gather_at` makes.
#[inline]
pub fn ipv4_fragment_bits(pkt: &[u8]) -> bool {
    match pkt.first_chunk::<20>() {
        Some(h) => u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    /// An IPv4 fragment: `off` in bytes, `payload` its data.
    fn v4(id: u16, off: usize, mf: bool, payload: &[u8]) -> Vec<u8> {
        let tot = 20 + payload.len();
        let fo = (off / 8) as u16 | if mf { 0x2000 } else { 0 };
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p[2..4].copy_from_slice(&(tot as u16).to_be_bytes());
        p[4..6].copy_from_slice(&id.to_be_bytes());
        p[6..8].copy_from_slice(&fo.to_be_bytes());
        let c = ipv4_header_csum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn v6(id: u32, off: usize, mf: bool, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 44, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let fo = off as u16 | u16::from(mf);
        p.extend_from_slice(&[17, 0]);
        p.extend_from_slice(&fo.to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(payload);
        let plen = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn reasm(g: Gathered) -> Vec<u8> {
        match g {
            Gathered::Reassembled { pkt, .. } => pkt,
            other => panic!("not reassembled: {other:?}"),
        }
    }

    #[test]
    fn not_fragments() {
        let d = Defrag::new();
        assert_eq!(d.ipv4_gather(&v4(1, 0, false, &data(16)), 0), Gathered::NotFragment);
        assert_eq!(d.ipv4_gather(&[], 0), Gathered::NotFragment);
        let mut p = v6(1, 0, false, &data(8));
        p[6] = 17;
        assert_eq!(d.ipv6_gather(&p, 0), Gathered::NotFragment);
        assert_eq!(d.counters(), DefragCounters::default());
    }

    /// The hook path's quick test never says "no fragment" of a packet gather would hold:
    /// MF alone, an offset alone, both, and the reserved bit (which is no fragment) checked
    /// against what gather makes of the same packet.
    #[test]
    fn fragment_bits_agree_with_gather() {
        let d = Defrag::new();
        let reserved = {
            let mut p = v4(9, 0, false, &data(16));
            p[6] |= 0x80;
            p
        };
        for (p, frag) in [
            (v4(1, 0, false, &data(16)), false),
            (v4(2, 0, true, &data(16)), true),
            (v4(3, 16, false, &data(16)), true),
            (v4(4, 8, true, &data(16)), true),
            (reserved, false),
            (vec![0x45; 19], false),
        ] {
            assert_eq!(ipv4_fragment_bits(&p), frag, "{p:?}");
            let held = !matches!(d.ipv4_gather(&p, 0), Gathered::NotFragment);
            assert_eq!(held, frag, "{p:?}");
        }
    }

    #[test]
    fn ipv4_in_order() {
        let d = Defrag::new();
        let all = data(40);
        assert_eq!(d.ipv4_gather(&v4(7, 0, true, &all[..16]), 0), Gathered::Held);
        assert_eq!(d.ipv4_gather(&v4(7, 16, true, &all[16..32]), 0), Gathered::Held);
        let out = reasm(d.ipv4_gather(&v4(7, 32, false, &all[32..]), 0));
        assert_eq!(out.len(), 60);
        assert_eq!(&out[20..], &all[..]);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 60);
        assert_eq!(u16::from_be_bytes([out[6], out[7]]), 0);
        assert!(crate::wire::ip::ipv4_rcv_check(&out).is_ok());
        let c = d.counters();
        assert_eq!((c.fragments, c.reassembled, c.timed_out, c.dropped), (3, 1, 0, 0));
        assert_eq!(d.queues(), (0, 0));
        assert_eq!(d.mem(), (0, 0));
    }

    #[test]
    fn ipv4_out_of_order_and_duplicate() {
        let d = Defrag::new();
        let all = data(48);
        assert_eq!(d.ipv4_gather(&v4(7, 32, false, &all[32..]), 0), Gathered::Held);
        assert_eq!(d.ipv4_gather(&v4(7, 16, true, &all[16..32]), 0), Gathered::Held);
        // duplicate of a queued fragment: dropped, queue kept
        assert!(matches!(d.ipv4_gather(&v4(7, 16, true, &all[16..32]), 0), Gathered::Dropped(_)));
        let out = reasm(d.ipv4_gather(&v4(7, 0, true, &all[..16]), 0));
        assert_eq!(&out[20..], &all[..]);
        assert_eq!(d.counters().dropped, 0);
    }

    #[test]
    fn ipv4_overlap_drops_queue() {
        let d = Defrag::new();
        let all = data(48);
        assert_eq!(d.ipv4_gather(&v4(7, 0, true, &all[..16]), 0), Gathered::Held);
        assert!(matches!(d.ipv4_gather(&v4(7, 8, true, &all[8..24]), 0), Gathered::Dropped(_)));
        assert_eq!(d.queues(), (0, 0));
        // the rest alone never completes
        assert_eq!(d.ipv4_gather(&v4(7, 16, false, &all[16..]), 0), Gathered::Held);
        assert_eq!(d.counters().dropped, 1);
        assert_eq!(d.counters().reassembled, 0);
    }

    #[test]
    fn ipv4_lone_fragment_times_out() {
        let d = Defrag::new();
        assert_eq!(d.ipv4_gather(&v4(9, 8, false, &data(8)), 0), Gathered::Held);
        assert_eq!(d.queues(), (1, 0));
        assert_eq!(d.ipv4_gather(&v4(10, 8, false, &data(8)), 29 * S), Gathered::Held);
        assert_eq!(d.counters().timed_out, 0);
        // 30 s after it was created, the first queue expires; the second does not yet.
        assert_eq!(d.ipv4_gather(&v4(9, 0, true, &data(8)), 30 * S), Gathered::Held);
        assert_eq!(d.counters().timed_out, 1);
        assert_eq!(d.queues(), (2, 0));
    }

    #[test]
    fn memory_bound() {
        let d = Defrag::new();
        let big = data(1400);
        let mut refused = 0;
        for id in 0..10_000u32 {
            match d.ipv4_gather(&v4(id as u16, 0, true, &big), 0) {
                Gathered::Held => {}
                Gathered::Dropped(_) => refused += 1,
                other => panic!("{other:?}"),
            }
            match d.ipv6_gather(&v6(id, 8, true, &big), 0) {
                Gathered::Held | Gathered::Dropped(_) => {}
                other => panic!("{other:?}"),
            }
            let (m4, m6) = d.mem();
            assert!(m4 <= IPFRAG_HIGH_THRESH + truesize(65535) + QUEUE_SIZE);
            assert!(m6 <= FRAG6_HIGH_THRESH + truesize(65535) + QUEUE_SIZE);
        }
        assert!(refused > 5000);
        assert_eq!(d.counters().dropped, refused * 2);
        // when the queues time out, fragments are accepted again
        assert_eq!(d.ipv4_gather(&v4(1, 0, true, &big), 61 * S), Gathered::Held);
        assert_eq!(d.ipv6_gather(&v6(1, 0, true, &big), 61 * S), Gathered::Held);
    }

    #[test]
    fn ipv6_reassembly_and_atomic() {
        let d = Defrag::new();
        let all = data(40);
        assert_eq!(d.ipv6_gather(&v6(5, 16, false, &all[16..]), 0), Gathered::Held);
        let out = reasm(d.ipv6_gather(&v6(5, 0, true, &all[..16]), 0));
        assert_eq!(out.len(), 80);
        assert_eq!(out[6], 17);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 40);
        assert_eq!(&out[40..], &all[..]);
        // atomic fragments with no queue of their id pass as they are, and so do empty ones;
        // one shorter than a queue of its id is dropped and leaves the queue alone
        assert_eq!(d.ipv6_gather(&v6(6, 16, false, &all[16..]), 0), Gathered::Held);
        assert_eq!(d.ipv6_gather(&v6(10, 0, false, &all[..12]), 0), Gathered::NotFragment);
        assert_eq!(d.ipv6_gather(&v6(6, 0, false, &[]), 0), Gathered::NotFragment);
        assert!(matches!(d.ipv6_gather(&v6(6, 0, false, &all[..12]), 0), Gathered::Dropped(_)));
        assert_eq!(d.queues(), (0, 1));
        assert!(matches!(d.ipv6_gather(&v6(6, 0, true, &all[..16]), 0), Gathered::Reassembled { .. }));
        // non-multiple-of-8 with M=1: the queue goes, the packet passes as it is
        assert_eq!(d.ipv6_gather(&v6(8, 0, true, &all[..12]), 0), Gathered::NotFragment);
        // overlap
        assert_eq!(d.ipv6_gather(&v6(9, 0, true, &all[..16]), 0), Gathered::Held);
        assert!(matches!(d.ipv6_gather(&v6(9, 8, false, &all[8..]), 0), Gathered::Dropped(_)));
        let c = d.counters();
        assert_eq!(c.reassembled, 2);
        assert_eq!(c.dropped, 2);
    }

    #[test]
    fn ipv6_atomic_fragment_joins_a_live_queue_of_its_id() {
        let d = Defrag::new();
        // longer than the queue's first fragment: an overlap, the queue goes
        assert_eq!(d.ipv6_gather(&v6(7, 0, true, &data(16)), 0), Gathered::Held);
        assert!(matches!(d.ipv6_gather(&v6(7, 0, false, &data(24)), 0), Gathered::Dropped(_)));
        assert_eq!(d.queues(), (0, 0));
        // as long as it: a duplicate, held, but the queue now ends there
        assert_eq!(d.ipv6_gather(&v6(12, 0, true, &data(16)), 0), Gathered::Held);
        assert_eq!(d.ipv6_gather(&v6(12, 0, false, &data(16)), 0), Gathered::Held);
        assert!(matches!(d.ipv6_gather(&v6(12, 16, false, &data(16)), 0), Gathered::Dropped(_)));
        assert_eq!(d.queues(), (0, 1));
        // a queue past its timeout is no queue
        assert_eq!(d.ipv6_gather(&v6(13, 0, true, &data(16)), 0), Gathered::Held);
        assert_eq!(d.ipv6_gather(&v6(13, 0, false, &data(24)), 61 * S), Gathered::NotFragment);
    }

    #[test]
    fn ipv6_timeout() {
        let d = Defrag::new();
        assert_eq!(d.ipv6_gather(&v6(5, 16, false, &data(8)), 0), Gathered::Held);
        assert_eq!(d.ipv6_gather(&v6(5, 0, true, &data(8)), 59 * S), Gathered::Held);
        assert_eq!(d.ipv6_gather(&v6(6, 0, true, &data(8)), 60 * S), Gathered::Held);
        assert_eq!(d.counters().timed_out, 1);
        assert_eq!(d.queues(), (0, 1));
    }

    #[test]
    fn hostile_offsets() {
        let d = Defrag::new();
        // last possible offset with a big payload: datagram over 65535, queue dropped
        let big = data(1480);
        assert_eq!(d.ipv4_gather(&v4(3, 0, true, &big), 0), Gathered::Held);
        assert!(matches!(d.ipv4_gather(&v4(3, 65528, false, &big), 0), Gathered::Held));
        assert_eq!(d.queues(), (1, 0));
        // IPv6: end past 65535 is refused
        assert!(matches!(d.ipv6_gather(&v6(3, 65528, false, &big), 0), Gathered::Dropped(_)));
        // MF fragment shorter than 8 bytes: empty after rounding, queue dropped
        assert!(matches!(d.ipv4_gather(&v4(4, 8, true, &[1, 2, 3]), 0), Gathered::Dropped(_)));
        // a fragment past the last one
        assert_eq!(d.ipv4_gather(&v4(5, 8, false, &data(8)), 0), Gathered::Held);
        assert!(matches!(d.ipv4_gather(&v4(5, 16, true, &data(8)), 0), Gathered::Dropped(_)));
        // random bytes never panic
        let mut x: u64 = 0x1234_5678;
        for i in 0..20_000u64 {
            let n = (i % 90) as usize;
            let mut p: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            if let Some(b) = p.first_mut() {
                *b = if i % 2 == 0 { 0x45 } else { 0x60 };
            }
            if p.len() >= 8 && i % 2 == 0 {
                let tot = p.len() as u16;
                p[2..4].copy_from_slice(&tot.to_be_bytes());
            }
            if p.len() >= 40 && i % 2 == 1 {
                let plen = (p.len() - 40) as u16;
                p[4..6].copy_from_slice(&plen.to_be_bytes());
                p[6] = [0, 43, 44, 51, 60][(i % 5) as usize];
            }
            let _ = d.ipv4_gather(&p, i);
            let _ = d.ipv6_gather(&p, i);
        }
    }

    #[test]
    fn ipv4_oversize_fails() {
        let d = Defrag::new();
        let big = data(1480);
        assert_eq!(d.ipv4_gather(&v4(3, 65528, false, &big[..8]), 0), Gathered::Held);
        let mut off = 0;
        let mut last = Gathered::Held;
        while off < 65528 {
            let n = (65528 - off).min(1480);
            last = d.ipv4_gather(&v4(3, off, true, &big[..n]), 0);
            off += n;
        }
        // 20 + 65536 > 65535: reassembly fails, queue dropped
        assert!(matches!(last, Gathered::Dropped(_)));
        assert_eq!(d.queues(), (0, 0));
    }

    #[test]
    fn ipv4_too_far_restarts() {
        let d = Defrag::new();
        let all = data(16);
        assert_eq!(d.ipv4_gather(&v4(1, 0, true, &all[..8]), 0), Gathered::Held);
        for id in 2..70u16 {
            assert_eq!(d.ipv4_gather(&v4(id, 8, true, &all[..8]), 0), Gathered::Held);
        }
        // 68 fragments from the same source in between: the queue restarts with this one
        assert_eq!(d.ipv4_gather(&v4(1, 8, false, &all[8..]), 0), Gathered::Held);
        assert_eq!(d.counters().dropped, 1);
        assert!(matches!(d.ipv4_gather(&v4(1, 0, true, &all[..8]), 0), Gathered::Reassembled { .. }));
    }

    /// Tiny deterministic xorshift64* PRNG for the property tests (no dependencies).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform-ish in `[0, n)`; `n > 0`.
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// Uniform-ish in `[lo, hi]`.
        fn range(&mut self, lo: usize, hi: usize) -> usize {
            lo + self.below(hi - lo + 1)
        }
        fn chance(&mut self, num: usize, den: usize) -> bool {
            self.below(den) < num
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
    }

    /// Random split of `[0, len)` into at least two pieces at 8-byte-aligned boundaries.
    fn random_cuts(rng: &mut Rng, len: usize) -> Vec<(usize, usize)> {
        assert!(len > 8);
        let max_piece = [8, 16, 64, 256, 1480, 4000][rng.below(6)];
        let mut pieces = Vec::new();
        let mut off = 0;
        while off < len {
            let units = rng.range(1, max_piece / 8);
            let mut end = (off + units * 8).min(len);
            if off == 0 && end == len {
                // at least two fragments: the first may not hold it all
                end = ((len - 1) / 8) * 8;
            }
            pieces.push((off, end));
            off = end;
        }
        pieces
    }

    /// One random datagram fragmented; `frags[i]` is the exact packet of piece `i`.
    struct Case {
        /// The datagram as the kernel rebuilds it.
        expected: Vec<u8>,
        frags: Vec<Vec<u8>>,
        v6: bool,
        /// Where the L4 bytes start in `expected`; its addresses and L4 protocol.
        l4_at: usize,
        src: Vec<u8>,
        dst: Vec<u8>,
        proto: u8,
    }

    /// ECN codepoints of the fragments and the codepoint Linux gives the reassembled datagram
    /// (`ip_frag_ecn_table`), with `first` the offset-0 fragment's.
    fn ecn_plan(rng: &mut Rng, n: usize) -> (Vec<u8>, impl Fn(u8) -> u8) {
        let ecn: Vec<u8> = if rng.chance(1, 3) {
            // ECT(1) / ECT(0) / CE mixed: valid, CE wins if present with an ECT one
            (0..n).map(|_| rng.range(1, 3) as u8).collect()
        } else {
            vec![rng.below(4) as u8; n]
        };
        let ce = ecn.contains(&3);
        let ect = ecn.iter().any(|&e| e == 1 || e == 2);
        (ecn, move |first: u8| if ce && ect { 3 } else { first })
    }

    fn random_v4_case(rng: &mut Rng, idx: u16) -> Case {
        let l4 = {
            let n = rng.range(9, 4000);
            rng.bytes(n)
        };
        let cuts = random_cuts(rng, l4.len());
        let n = cuts.len();
        let ihl = if rng.chance(1, 2) { 5 } else { rng.range(5, 15) };
        let mut src = rng.bytes(4);
        src[0] = idx as u8;
        src[1] = (idx >> 8) as u8;
        let dst = rng.bytes(4);
        let proto = rng.next() as u8;
        let id = rng.next() as u16;
        let df = rng.chance(1, 2);
        let tos_hi = rng.next() as u8 & 0xfc;
        let (ecn, ecn_out) = ecn_plan(rng, n);
        let opts = rng.bytes((ihl - 5) * 4);
        let header = |ihl: usize, opts: &[u8], tos: u8, ttl: u8, tot: usize, fo: u16| {
            let mut h = vec![0x40 | ihl as u8, tos, 0, 0, 0, 0, 0, 0, ttl, proto, 0, 0];
            h[2..4].copy_from_slice(&(tot as u16).to_be_bytes());
            h[4..6].copy_from_slice(&id.to_be_bytes());
            h[6..8].copy_from_slice(&fo.to_be_bytes());
            h.extend_from_slice(&src);
            h.extend_from_slice(&dst);
            h.extend_from_slice(opts);
            let c = ipv4_header_csum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h
        };
        let mut frags = Vec::with_capacity(n);
        let mut expected = Vec::new();
        for (i, &(off, end)) in cuts.iter().enumerate() {
            let tos = tos_hi | ecn[i];
            let ttl = rng.next() as u8;
            let mut fo = (off / 8) as u16;
            if end < l4.len() {
                fo |= 0x2000;
            }
            if df {
                fo |= 0x4000;
            }
            // later fragments carry other (copied / NOP-ed) options: only the first one's count
            let (fihl, fopts) = if i == 0 {
                (ihl, opts.clone())
            } else {
                let k = rng.range(5, 15);
                (k, rng.bytes((k - 5) * 4))
            };
            let mut p = header(fihl, &fopts, tos, ttl, fihl * 4 + end - off, fo);
            p.extend_from_slice(&l4[off..end]);
            if i == 0 {
                let df_field = if df { 0x4000 } else { 0 };
                expected = header(ihl, &opts, tos_hi | ecn_out(ecn[0]), ttl, ihl * 4 + l4.len(), df_field);
                expected.extend_from_slice(&l4);
            }
            // link-layer padding past the total length
            if rng.chance(1, 8) {
                let pad = {
                    let n = rng.range(1, 20);
                    rng.bytes(n)
                };
                p.extend_from_slice(&pad);
            }
            frags.push(p);
        }
        Case { expected, frags, v6: false, l4_at: ihl * 4, src, dst, proto }
    }

    fn random_v6_case(rng: &mut Rng, idx: u16) -> Case {
        let l4 = {
            let n = rng.range(9, 4000);
            rng.bytes(n)
        };
        let cuts = random_cuts(rng, l4.len());
        let n = cuts.len();
        let mut src = rng.bytes(16);
        src[0] = idx as u8;
        src[1] = (idx >> 8) as u8;
        let dst = rng.bytes(16);
        let proto = loop {
            // an L4 protocol, not an extension header find_prev_fhdr would walk
            let p = rng.next() as u8;
            if !matches!(p, 0 | 43 | 44 | 51 | 60) {
                break p;
            }
        };
        let id = rng.next() as u32;
        let tc_hi = rng.next() as u8 & 0xfc;
        let flow = rng.next() as u32 & 0xf_ffff;
        let (ecn, ecn_out) = ecn_plan(rng, n);
        // the unfragmentable part: hop-by-hop (first only), routing, destination options
        let mut exts: Vec<(u8, Vec<u8>)> = Vec::new();
        if rng.chance(1, 3) {
            exts.push((0, Vec::new()));
        }
        for _ in 0..rng.below(3) {
            exts.push((if rng.chance(1, 2) { 43 } else { 60 }, Vec::new()));
        }
        for e in &mut exts {
            let l = rng.below(3);
            e.1 = rng.bytes((l + 1) * 8);
            e.1[1] = l as u8;
        }
        let ext_len: usize = exts.iter().map(|e| e.1.len()).sum();
        // headers up to (not including) the fragment header, whose nexthdr chain ends in `last`
        let unfrag = |tc: u8, hop: u8, plen: usize, last: u8| {
            let mut h = vec![0x60 | (tc >> 4), (tc << 4) | (flow >> 16) as u8, (flow >> 8) as u8, flow as u8];
            h.extend_from_slice(&(plen as u16).to_be_bytes());
            h.push(exts.first().map_or(last, |e| e.0));
            h.push(hop);
            h.extend_from_slice(&src);
            h.extend_from_slice(&dst);
            for (i, e) in exts.iter().enumerate() {
                let mut b = e.1.clone();
                b[0] = exts.get(i + 1).map_or(last, |e| e.0);
                h.extend_from_slice(&b);
            }
            h
        };
        let mut frags = Vec::with_capacity(n);
        let mut expected = Vec::new();
        for (i, &(off, end)) in cuts.iter().enumerate() {
            let tc = tc_hi | ecn[i];
            let hop = rng.next() as u8;
            let mf = end < l4.len();
            let mut p = unfrag(tc, hop, ext_len + 8 + end - off, 44);
            p.push(proto);
            p.push(rng.next() as u8); // reserved: ignored
            p.extend_from_slice(&(off as u16 | u16::from(mf)).to_be_bytes());
            p.extend_from_slice(&id.to_be_bytes());
            p.extend_from_slice(&l4[off..end]);
            if i == 0 {
                expected = unfrag(tc_hi | ecn_out(ecn[0]), hop, ext_len + l4.len(), proto);
                expected.extend_from_slice(&l4);
            }
            if rng.chance(1, 8) {
                let pad = {
                    let n = rng.range(1, 20);
                    rng.bytes(n)
                };
                p.extend_from_slice(&pad);
            }
            frags.push(p);
        }
        Case { expected, frags, v6: true, l4_at: 40 + ext_len, src, dst, proto }
    }

    /// A random order to feed `n` fragments in (indices into `frags`), with exact duplicates of
    /// some fragments, all before the last one, the one that completes the datagram.
    fn random_order(rng: &mut Rng, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        let dups = if rng.chance(1, 2) { 0 } else { rng.range(1, n + 3) };
        for _ in 0..dups {
            // a copy of any fragment but the completing one, anywhere before the completing one
            let what = order[rng.below(n - 1)];
            let at = rng.below(order.len());
            order.insert(at, what);
        }
        order
    }

    #[test]
    fn property_random_datagrams_reassemble() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let d = Defrag::new();
        let mut done = 0u64;
        let mut fed = 0u64;
        for round in 0..400u16 {
            // up to three datagrams (distinct sources) in flight at once, interleaved
            let k = rng.range(1, 3);
            let cases: Vec<Case> = (0..k)
                .map(|j| {
                    let idx = round * 4 + j as u16;
                    if rng.chance(1, 2) {
                        random_v4_case(&mut rng, idx)
                    } else {
                        random_v6_case(&mut rng, idx)
                    }
                })
                .collect();
            let mut orders: Vec<Vec<usize>> =
                cases.iter().map(|c| random_order(&mut rng, c.frags.len())).collect();
            for o in &mut orders {
                o.reverse(); // popped from the back
            }
            let mut got: Vec<Option<Gathered>> = vec![None; k];
            while let Some(j) = {
                let live: Vec<usize> = (0..k).filter(|&j| !orders[j].is_empty()).collect();
                (!live.is_empty()).then(|| live[rng.below(live.len())])
            } {
                let c = &cases[j];
                let fi = orders[j].pop().unwrap_or_default();
                let pkt = &c.frags[fi];
                let now = round as u64 * S / 100;
                let g = if c.v6 { d.ipv6_gather(pkt, now) } else { d.ipv4_gather(pkt, now) };
                fed += 1;
                if orders[j].is_empty() {
                    got[j] = Some(g);
                } else {
                    match g {
                        Gathered::Held => {}
                        Gathered::Dropped(why) if !c.v6 && why == "nf_defrag: duplicate fragment" => {}
                        other => panic!("round {round} datagram {j} fragment {fi}: {other:?}"),
                    }
                }
            }
            for (c, g) in cases.iter().zip(got) {
                let Some(Gathered::Reassembled { pkt, max_frag }) = g else {
                    panic!("round {round}: last fragment gave {g:?}, v6 {}", c.v6);
                };
                let e = &c.expected;
                // addresses, protocol and the L4 bytes
                if c.v6 {
                    assert_eq!(&pkt[8..24], &c.src[..]);
                    assert_eq!(&pkt[24..40], &c.dst[..]);
                    assert_eq!(u16::from_be_bytes([pkt[4], pkt[5]]) as usize, pkt.len() - 40);
                } else {
                    assert_eq!(&pkt[12..16], &c.src[..]);
                    assert_eq!(&pkt[16..20], &c.dst[..]);
                    assert_eq!(pkt[9], c.proto);
                    assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]) as usize, pkt.len());
                    assert!(crate::wire::ip::ipv4_rcv_check(&pkt).is_ok());
                }
                assert_eq!(&pkt[c.l4_at..], &e[c.l4_at..], "round {round}: L4 bytes");
                // and the whole datagram, headers as Linux rewrites them
                assert_eq!(pkt, *e, "round {round}: v6 {}", c.v6);
                let largest = c
                    .frags
                    .iter()
                    .map(|f| {
                        if c.v6 {
                            40 + usize::from(u16::from_be_bytes([f[4], f[5]]))
                        } else {
                            usize::from(u16::from_be_bytes([f[2], f[3]]))
                        }
                    })
                    .max();
                assert_eq!(Some(max_frag), largest);
                done += 1;
            }
            assert_eq!(d.queues(), (0, 0), "round {round}");
            assert_eq!(d.mem(), (0, 0), "round {round}");
            assert!(d.state.lock().peers.is_empty());
        }
        let c = d.counters();
        assert_eq!(c.reassembled, done);
        assert_eq!(c.fragments, fed);
        assert_eq!((c.timed_out, c.dropped), (0, 0));
    }

    /// A random, mostly hostile, IPv4 fragment: few keys so that they share queues.
    fn hostile_v4(rng: &mut Rng) -> Vec<u8> {
        let ihl = if rng.chance(7, 8) { 5 } else { rng.below(16) };
        let plen = match rng.below(8) {
            0 => rng.range(0, 1500),
            1 => rng.range(0, 7),
            _ => rng.range(1, 16) * 8,
        };
        let mut p = rng.bytes(ihl.max(5) * 4 + plen);
        p[0] = 0x40 | ihl as u8;
        let tot = if rng.chance(15, 16) { p.len() } else { rng.below(p.len() + 20) };
        p[2..4].copy_from_slice(&(tot as u16).to_be_bytes());
        p[4..6].copy_from_slice(&(rng.below(3) as u16).to_be_bytes());
        let units = match rng.below(4) {
            0 => rng.below(0x2000),
            1 => 0x1fff - rng.below(4),
            _ => rng.below(24),
        };
        let flags = (rng.below(4) as u16) << 13;
        p[6..8].copy_from_slice(&(units as u16 | flags).to_be_bytes());
        p[9] = [6, 17][rng.below(2)];
        p[12..16].copy_from_slice(&[10, 0, 0, rng.below(2) as u8]);
        p[16..20].copy_from_slice(&[10, 0, 0, 9]);
        if rng.chance(1, 16) {
            p.truncate(rng.below(p.len() + 1));
        }
        p
    }

    /// A random, mostly hostile, IPv6 fragment (extension headers, truncated fragment header).
    fn hostile_v6(rng: &mut Rng) -> Vec<u8> {
        let mut p = rng.bytes(40);
        p[0] = 0x60 | (p[0] & 0x0f);
        p[8..24].fill(0);
        p[23] = rng.below(2) as u8;
        p[24..40].fill(0);
        p[39] = 9;
        let mut at = 6;
        for _ in 0..rng.below(3) {
            let t = [0, 43, 51, 60][rng.below(4)];
            p[at] = t;
            at = p.len();
            let l = rng.below(3);
            let n = if t == 51 { (l + 2) * 4 } else { (l + 1) * 8 };
            let mut e = rng.bytes(n);
            e[1] = l as u8;
            p.extend_from_slice(&e);
        }
        p[at] = if rng.chance(31, 32) { 44 } else { rng.next() as u8 };
        let units = match rng.below(4) {
            0 => rng.below(0x2000),
            1 => 0x1fff - rng.below(4),
            _ => rng.below(24),
        };
        let fo = (units << 3) as u16 | (rng.below(8) as u16 & if rng.chance(1, 4) { 7 } else { 1 });
        p.push(17);
        p.push(0);
        p.extend_from_slice(&fo.to_be_bytes());
        p.extend_from_slice(&(rng.below(3) as u32).to_be_bytes());
        let plen = match rng.below(8) {
            0 => rng.range(0, 1500),
            1 => rng.range(0, 7),
            _ => rng.range(1, 16) * 8,
        };
        p.extend(rng.bytes(plen));
        let declared = if rng.chance(15, 16) { p.len() - 40 } else { rng.below(p.len() + 20) };
        p[4..6].copy_from_slice(&(declared as u16).to_be_bytes());
        if rng.chance(1, 16) {
            p.truncate(rng.below(p.len() + 1));
        }
        p
    }

    /// Accounted memory is the sum of the queues' and every live IPv4 queue's source is counted.
    fn check_books(d: &Defrag) {
        let s = d.state.lock();
        assert_eq!(s.v4.mem, s.v4.queues.values().map(|q| q.mem).sum::<u64>());
        assert_eq!(s.v6.mem, s.v6.queues.values().map(|q| q.mem).sum::<u64>());
        let mut per_src: HashMap<[u8; 4], u32> = HashMap::new();
        for k in s.v4.queues.keys() {
            *per_src.entry(k.src).or_default() += 1;
        }
        assert_eq!(per_src.len(), s.peers.len());
        for (src, n) in per_src {
            assert_eq!(s.peers.get(&src).map(|p| p.queues), Some(n));
        }
    }

    #[test]
    fn property_hostile_streams() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut reassembled = 0;
        for stream in 0..12u64 {
            let d = Defrag::new();
            let high = [0, 4096, 20_000, 64 * 1024, 1 << 20, IPFRAG_HIGH_THRESH][(stream % 6) as usize];
            let lim = FragLimits { timeout_ns: 5 * S, high_thresh: high, low_thresh: high / 2 };
            d.set_ipv4_limits(lim);
            let mut now = 0u64;
            let mut largest_one = 0;
            let (mut case, mut pending, mut cases) = (None::<Case>, Vec::new(), 0u32);
            for _ in 0..3000 {
                now += rng.below(2_000_000) as u64;
                if rng.chance(1, 500) {
                    now += 6 * S;
                }
                // a quarter of the packets are fragments of well-formed datagrams (their own keys)
                let valid = rng.chance(1, 4);
                if valid && pending.is_empty() {
                    cases += 1;
                    let idx = 0xff00 | (cases & 0xff) as u16;
                    let c = if rng.chance(1, 2) {
                        random_v4_case(&mut rng, idx)
                    } else {
                        random_v6_case(&mut rng, idx)
                    };
                    pending = random_order(&mut rng, c.frags.len());
                    pending.reverse();
                    case = Some(c);
                }
                let (v6, pkt) = match (valid, &case, if valid { pending.pop() } else { None }) {
                    (true, Some(c), Some(fi)) => (c.v6, c.frags[fi].clone()),
                    _ if rng.chance(1, 2) => (true, hostile_v6(&mut rng)),
                    _ => (false, hostile_v4(&mut rng)),
                };
                let (b4, b6) = d.mem();
                let timed_out = d.counters().timed_out;
                let before = if v6 { b6 } else { b4 };
                let g = if v6 { d.ipv6_gather_with(&pkt, now, &lim) } else { d.ipv4_gather(&pkt, now) };
                let (a4, a6) = d.mem();
                let (after, other_before, other_after) = if v6 { (a6, b4, a4) } else { (a4, b6, a6) };
                assert_eq!(other_before, other_after, "one family's packet leaves the other alone");
                // a fragment accepted below high_thresh adds at most its queue and itself; above
                // it, nothing is accepted: memory never passes high_thresh plus one fragment
                let one = QUEUE_SIZE + truesize(pkt.len());
                let expired = d.counters().timed_out != timed_out;
                if before > high && !expired {
                    // (expiry runs first and may bring memory under high_thresh again)
                    assert!(after <= before, "over high_thresh yet {before} -> {after}");
                } else if before <= high {
                    assert!(after <= high + one, "stream {stream}: mem {after} > {high} + {one}");
                }
                largest_one = largest_one.max(one);
                assert!(after <= high + largest_one, "stream {stream}: mem {after} > {high} + {largest_one}");
                if let Gathered::Reassembled { pkt: out, max_frag } = &g {
                    if v6 {
                        assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])) + 40, out.len());
                        assert!(max_frag <= &(40 + 65535));
                    } else {
                        assert!(crate::wire::ip::ipv4_rcv_check(out).is_ok());
                        assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());
                        assert_eq!(u16::from_be_bytes([out[6], out[7]]) & !0x4000, 0);
                    }
                    assert!(out.len() <= MAX_DATAGRAM + if v6 { 40 } else { 0 });
                    if valid {
                        let e = case.as_ref().map(|c| &c.expected);
                        assert_eq!(Some(out), e, "stream {stream}: well-formed datagram");
                        reassembled += 1;
                    }
                }
                check_books(&d);
            }
        }
        // the well-formed datagrams do get through when memory allows
        assert!(reassembled > 20, "{reassembled}");
    }
}
