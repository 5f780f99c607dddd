//! The netfilter hook pipeline (spec §1): the five inet hooks of each family, each running its
//! registered operations in priority order, conntrack's own among them (defrag at −400, `in`
//! at −200, confirm last), and the paths a packet takes through a host or router:
//!
//! * from the wire (`ip_rcv`): PRE_ROUTING, the routing decision, then LOCAL_IN, or FORWARD
//!   and POST_ROUTING;
//! * sent by the host (`ip_local_out`): LOCAL_OUT, POST_ROUTING, and for a packet to one of
//!   the host's own addresses the loopback second pass through PRE_ROUTING and LOCAL_IN.
//!
//! Operations are either built in (they run at full speed, also inside replays) or external:
//! the pipeline hands those to a caller-supplied function (the Python binding calls the
//! user's hook there), so this module knows nothing of Python.

use crate::core::{
    Class, Hook, Net, Nfct, SkbCt, NF_ACCEPT, NF_DROP, NF_QUEUE, NF_REPEAT, NF_STOLEN, NF_STOP,
};
use crate::defrag::{FragLimits, Gathered};
use crate::replay::route::{self, LocalAddrs, Owner, Route};
use crate::sysctl::Sx;
use crate::tuple::{Zone, AF_INET, AF_INET6};
use crate::wire::ip;
use parking_lot::RwLock;
use std::any::Any;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_ARP: u8 = 3;
pub const NFPROTO_NETDEV: u8 = 5;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;

/// The `ct state` bits nft and iptables match (spec §1.4).
pub const CT_STATE_INVALID: u32 = 1;
pub const CT_STATE_ESTABLISHED: u32 = 2;
pub const CT_STATE_RELATED: u32 = 4;
pub const CT_STATE_NEW: u32 = 8;
pub const CT_STATE_UNTRACKED: u32 = 64;

/// How many times one operation may answer NF_REPEAT for one packet before the packet is
/// dropped (the kernel would spin forever).
pub const MAX_REPEAT: u32 = 64;

const HOOKS: [Hook; 5] = [Hook::PreRouting, Hook::LocalIn, Hook::Forward, Hook::LocalOut, Hook::PostRouting];

/// An IP family's hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn nfproto(self) -> u8 {
        match self {
            Family::V4 => NFPROTO_IPV4,
            Family::V6 => NFPROTO_IPV6,
        }
    }

    fn af(self) -> u8 {
        match self {
            Family::V4 => AF_INET,
            Family::V6 => AF_INET6,
        }
    }

    /// The family of an IP packet, from its version nibble.
    pub fn of_packet(pkt: &[u8]) -> Option<Family> {
        match ip::ip_version(pkt) {
            Some(4) => Some(Family::V4),
            Some(6) => Some(Family::V6),
            _ => None,
        }
    }
}

/// The `ct state` bit of a packet's conntrack state.
pub fn ct_state_bit(ct: &SkbCt) -> u32 {
    match ct.class(NF_ACCEPT) {
        Class::New => CT_STATE_NEW,
        Class::Established => CT_STATE_ESTABLISHED,
        Class::Related => CT_STATE_RELATED,
        Class::Untracked => CT_STATE_UNTRACKED,
        Class::Invalid | Class::Dropped => CT_STATE_INVALID,
    }
}

/// Operations that need no caller code: conntrack's own, and what rulesets do with conntrack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `nf_defrag_ipv4/ipv6` (−400): reassembly; a held fragment is stolen.
    Defrag,
    /// `ipv4_conntrack_in` / `ipv6_conntrack_in` (PRE_ROUTING −200).
    ConntrackIn,
    /// `ipv4_conntrack_local` / `ipv6_conntrack_local` (LOCAL_OUT −200).
    ConntrackLocal,
    /// `nf_confirm` (LOCAL_IN, POST_ROUTING, last).
    Confirm,
    /// Always this verdict (a chain's policy, `drop`, `accept`).
    Verdict(u32),
    /// `ct state { ... } VERDICT`: `hit` when the packet's state bit is in `mask`, else `miss`.
    CtState { mask: u32, hit: u32, miss: u32 },
    /// `ct zone set ID` (a template, before conntrack's −200): the packet's entry lives in this
    /// zone. Without effect on a packet that already has conntrack state.
    CtZone(Zone),
    /// `ct mark set`: the bits of `mask` take `value`'s (IPCT_MARK on a change).
    CtMarkSet { value: u32, mask: u32 },
    /// `ct mark and MASK == VALUE VERDICT`: `hit` on a match, else (no entry either) `miss`.
    CtMark { value: u32, mask: u32, hit: u32, miss: u32 },
    /// `notrack` (raw table): the packet stays untracked.
    Notrack,
}

impl Builtin {
    /// Whether this is conntrack's own operation (not a ruleset's).
    pub fn is_conntrack(&self) -> bool {
        matches!(self, Builtin::Defrag | Builtin::ConntrackIn | Builtin::ConntrackLocal | Builtin::Confirm)
    }
}

/// What an operation runs.
#[derive(Clone)]
pub enum OpKind {
    Builtin(Builtin),
    /// Handed to the caller's function; the payload is the caller's (a Python callable).
    External(Arc<dyn Any + Send + Sync>),
}

impl std::fmt::Debug for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpKind::Builtin(b) => b.fmt(f),
            OpKind::External(_) => f.write_str("External"),
        }
    }
}

/// One registered operation (`struct nf_hook_ops`).
#[derive(Clone, Debug)]
pub struct Op {
    /// Unique per stack, for unregistering.
    pub id: u64,
    pub name: Arc<str>,
    pub hooknum: Hook,
    pub priority: i32,
    pub kind: OpKind,
}

/// The operations of every hook of both families, each list sorted by priority (equal
/// priorities in registration order, as `nf_hook_entries_grow` inserts).
#[derive(Clone, Debug, Default)]
pub struct HookTable {
    ops: [[Vec<Arc<Op>>; 5]; 2],
}

impl HookTable {
    /// The operations of one hook, in the order they run.
    pub fn ops(&self, fam: Family, hook: Hook) -> &[Arc<Op>] {
        &self.ops[fam as usize][hook as usize]
    }

    fn insert(&mut self, fam: Family, op: Arc<Op>) {
        let list = &mut self.ops[fam as usize][op.hooknum as usize];
        let at = list.iter().position(|o| op.priority < o.priority).unwrap_or(list.len());
        list.insert(at, op);
    }

    fn remove(&mut self, id: u64) -> bool {
        let mut found = false;
        for list in self.ops.iter_mut().flatten() {
            let before = list.len();
            list.retain(|o| o.id != id);
            found |= list.len() != before;
        }
        found
    }

    /// Whether any operation needs the caller's function.
    pub fn has_external(&self) -> bool {
        self.ops.iter().flatten().flatten().any(|o| matches!(o.kind, OpKind::External(_)))
    }
}

/// Why an operation cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterError {
    Family(u8),
    HookNum(u32),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::Family(pf) => write!(
                f,
                "pf {pf} is not modelled: use NFPROTO_IPV4 ({NFPROTO_IPV4}), NFPROTO_IPV6 ({NFPROTO_IPV6}) \
                 or NFPROTO_INET ({NFPROTO_INET})"
            ),
            RegisterError::HookNum(h) => write!(f, "hooknum {h} is not an inet hook (0..=4)"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// The hook number of a value, if it is one of the five inet hooks.
pub fn hook_of(n: u32) -> Option<Hook> {
    HOOKS.get(n as usize).copied()
}

/// The families an `NFPROTO_*` registration applies to.
pub fn families(pf: u8) -> Result<&'static [Family], RegisterError> {
    match pf {
        NFPROTO_IPV4 => Ok(&[Family::V4]),
        NFPROTO_IPV6 => Ok(&[Family::V6]),
        NFPROTO_INET => Ok(&[Family::V4, Family::V6]),
        _ => Err(RegisterError::Family(pf)),
    }
}

/// A network namespace's hook registrations and its own addresses.
#[derive(Debug)]
pub struct Stack {
    table: RwLock<Arc<HookTable>>,
    next_id: AtomicU64,
    pub local: LocalAddrs,
}

impl Stack {
    /// A stack with conntrack's operations registered (spec §1.2).
    pub fn new(local: LocalAddrs) -> Stack {
        let st = Stack { table: RwLock::new(Arc::default()), next_id: AtomicU64::new(1), local };
        let ct = |b| OpKind::Builtin(b);
        for (fam, defrag, conn_in, local_out, confirm, confirm_in_prio) in [
            (
                NFPROTO_IPV4,
                "ipv4_conntrack_defrag",
                "ipv4_conntrack_in",
                "ipv4_conntrack_local",
                "ipv4_confirm",
                i32::MAX,
            ),
            (
                NFPROTO_IPV6,
                "ipv6_defrag",
                "ipv6_conntrack_in",
                "ipv6_conntrack_local",
                "ipv6_confirm",
                i32::MAX - 1,
            ),
        ] {
            for (name, hook, prio, kind) in [
                (defrag, Hook::PreRouting, -400, ct(Builtin::Defrag)),
                (defrag, Hook::LocalOut, -400, ct(Builtin::Defrag)),
                (conn_in, Hook::PreRouting, -200, ct(Builtin::ConntrackIn)),
                (local_out, Hook::LocalOut, -200, ct(Builtin::ConntrackLocal)),
                (confirm, Hook::PostRouting, i32::MAX, ct(Builtin::Confirm)),
                (confirm, Hook::LocalIn, confirm_in_prio, ct(Builtin::Confirm)),
            ] {
                st.register(fam, hook, prio, name.into(), kind).expect("conntrack's own ops are valid");
            }
        }
        st
    }

    /// `nf_register_net_hook`: adds an operation to one family's hook, or both for
    /// NFPROTO_INET. Returns its id.
    pub fn register(
        &self,
        pf: u8,
        hook: Hook,
        priority: i32,
        name: Arc<str>,
        kind: OpKind,
    ) -> Result<u64, RegisterError> {
        let fams = families(pf)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let op = Arc::new(Op { id, name, hooknum: hook, priority, kind });
        let mut guard = self.table.write();
        let mut t = HookTable::clone(&guard);
        for &f in fams {
            t.insert(f, op.clone());
        }
        *guard = Arc::new(t);
        Ok(id)
    }

    /// `nf_unregister_net_hook`; false if no such operation is registered.
    pub fn unregister(&self, id: u64) -> bool {
        let mut guard = self.table.write();
        let mut t = HookTable::clone(&guard);
        let found = t.remove(id);
        *guard = Arc::new(t);
        found
    }

    /// The registrations as they are now (what a packet entering now runs through).
    pub fn snapshot(&self) -> Arc<HookTable> {
        self.table.read().clone()
    }

    /// The ordered (priority, name) list of one hook.
    pub fn hooks(&self, fam: Family, hook: Hook) -> Vec<(i32, Arc<str>)> {
        self.snapshot().ops(fam, hook).iter().map(|o| (o.priority, o.name.clone())).collect()
    }
}

/// What the IP stack keeps with a packet besides its bytes: its conntrack state, the length it
/// was trimmed to, and the reassembled datagram once defrag made one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacketState {
    pub ct: SkbCt,
    /// The IP total length the receive checks trimmed the bytes to.
    pub len: Option<usize>,
    /// The whole datagram, when this packet completed a reassembly.
    pub whole: Option<Vec<u8>>,
    /// The largest fragment of the reassembled datagram (the forward path's MTU check).
    pub max_frag: usize,
}

impl PacketState {
    /// The packet's bytes as the stack sees them now.
    pub fn data<'a>(&'a self, base: &'a [u8]) -> &'a [u8] {
        bytes_seen(self.whole.as_deref(), self.len, base)
    }
}

/// The bytes the stack sees: the reassembled datagram, else `base` trimmed to the IP length
/// (a free function so callers can borrow the packet's conntrack state mutably beside it).
pub fn bytes_seen<'a>(whole: Option<&'a [u8]>, len: Option<usize>, base: &'a [u8]) -> &'a [u8] {
    match (whole, len) {
        (Some(w), _) => w,
        (None, Some(n)) => base.get(..n).unwrap_or(base),
        (None, None) => base,
    }
}

/// Gives the pipeline access to a packet's state, held however the caller holds it (a
/// `RefCell` in replays, the Python `Skb`'s lock in the binding). The state is only borrowed
/// for the duration of `f`, never across an external operation.
pub trait Carrier {
    fn with<R>(&self, f: impl FnOnce(&mut PacketState) -> R) -> R;
}

impl Carrier for RefCell<PacketState> {
    fn with<R>(&self, f: impl FnOnce(&mut PacketState) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

/// An error an external operation raised (the caller's own type inside).
pub struct ExtError(pub Box<dyn Any + Send>);

impl std::fmt::Debug for ExtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtError")
    }
}

/// Where a call of an external operation happens.
#[derive(Clone, Copy, Debug)]
pub struct HookCall {
    pub hook: Hook,
    pub family: Family,
}

/// Runs an external operation: its verdict, or an error that drops the packet and stops the
/// caller.
pub type Ext<'a> = dyn FnMut(&Op, HookCall) -> Result<u32, ExtError> + 'a;

/// For pipelines with no external operations.
pub fn no_external(op: &Op, _: HookCall) -> Result<u32, ExtError> {
    Err(ExtError(Box::new(format!("operation {} needs a caller", op.name))))
}

/// The way a packet went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Delivered to this host (LOCAL_IN).
    Local,
    /// Forwarded (FORWARD, POST_ROUTING).
    Forward,
    /// Sent by this host out of an interface (LOCAL_OUT, POST_ROUTING).
    Output,
    /// Dropped or stolen on the way.
    Drop,
}

impl PathKind {
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Local => "local",
            PathKind::Forward => "forward",
            PathKind::Output => "output",
            PathKind::Drop => "drop",
        }
    }
}

/// The end of a packet's path.
#[derive(Debug)]
pub struct Outcome {
    /// The final verdict: NF_ACCEPT, NF_DROP or NF_STOLEN.
    pub verdict: u32,
    pub path: PathKind,
    /// The operation that dropped or stole the packet, and the hook it ran at.
    pub dropped_by: Option<Arc<Op>>,
    /// Why the stack dropped it outside any operation (receive checks, routing), or why an
    /// operation did when it says (defrag, a repeat loop, no queue).
    pub reason: Option<&'static str>,
    /// What an external operation raised.
    pub error: Option<ExtError>,
}

impl Outcome {
    fn drop(reason: &'static str) -> Outcome {
        Outcome {
            verdict: NF_DROP,
            path: PathKind::Drop,
            dropped_by: None,
            reason: Some(reason),
            error: None,
        }
    }

    /// An operation dropped or stole the packet.
    fn stopped(verdict: u32, op: &Arc<Op>, reason: Option<&'static str>, error: Option<ExtError>) -> Outcome {
        Outcome { verdict, path: PathKind::Drop, dropped_by: Some(op.clone()), reason, error }
    }

    fn accept(path: PathKind) -> Outcome {
        Outcome { verdict: NF_ACCEPT, path, dropped_by: None, reason: None, error: None }
    }

    /// The class a replay reports for the packet, and the reason it shows.
    pub fn class(&self, st: &PacketState) -> (Class, Option<&'static str>) {
        if self.verdict == NF_ACCEPT {
            (st.ct.class(NF_ACCEPT), st.ct.reason)
        } else {
            (Class::Dropped, self.reason.or(st.ct.reason))
        }
    }

    /// The dropping operation, if it is a ruleset's rather than conntrack's own.
    pub fn dropped_by_rule(&self) -> Option<&Arc<Op>> {
        self.dropped_by.as_ref().filter(|o| !matches!(o.kind, OpKind::Builtin(b) if b.is_conntrack()))
    }
}

/// How a hook's operations ended.
enum HookEnd {
    /// All accepted (or one said NF_STOP): the packet goes on.
    Continue,
    Stop(Outcome),
}

/// A packet's way through one stack: the hook table it was given at entry, its bytes, its
/// time, its family, and how to reach its state and the external operations.
pub struct Pipeline<'a, C: Carrier> {
    pub net: &'a Net,
    pub table: &'a HookTable,
    pub base: &'a [u8],
    pub tstamp: u64,
    pub family: Family,
    /// Every unicast destination is this host's (`--path local-in`).
    pub all_local: bool,
    /// `tstamp` is the packet's own clock (a threaded replay's worker): conntrack runs at that
    /// time rather than at the table's clock, which other workers move ahead.
    pub own_clock: bool,
    /// Shared timers (defrag queues of other flows) fire only up to this time: the time every
    /// worker of a threaded replay has reached; u64::MAX otherwise (then `tstamp` rules).
    pub horizon: u64,
    pub carrier: &'a C,
    pub ext: &'a mut Ext<'a>,
}

impl<C: Carrier> Pipeline<'_, C> {
    /// The packet's whole path from `entry`.
    pub fn run(mut self, entry: Entry) -> Outcome {
        match entry {
            Entry::Rcv => self.rcv(),
            Entry::LocalOut => self.local_out(),
        }
    }

    /// `ip_rcv` / `ipv6_rcv`: a packet from the wire.
    pub fn rcv(&mut self) -> Outcome {
        let checked = match self.family {
            Family::V4 if ip::ip_version(self.base) == Some(4) => ip::ipv4_rcv_check(self.base),
            Family::V6 if ip::ip_version(self.base) == Some(6) => ip::ipv6_rcv_check(self.base),
            Family::V4 => Err("ip_rcv: not an IPv4 packet"),
            Family::V6 => Err("ipv6_rcv: not an IPv6 packet"),
        };
        let len = match checked {
            Ok(len) => len,
            Err(why) => return Outcome::drop(why),
        };
        self.carrier.with(|st| st.len = Some(len));
        if let HookEnd::Stop(o) = self.run_hook(Hook::PreRouting) {
            return o;
        }
        self.after_prerouting()
    }

    /// The routing decision and what follows it, for a packet that passed PRE_ROUTING.
    fn after_prerouting(&mut self) -> Outcome {
        let own = Owner { local: &self.net.stack.local, all_unicast: self.all_local };
        let route = self.carrier.with(|st| {
            let data = st.data(self.base);
            // The forwarding path's MTU check uses the largest fragment of a reassembled
            // datagram (`frag_max_size`; defrag sets `ignore_df`): it is refragmented on output.
            let len = if st.whole.is_some() { data.len().min(st.max_frag) } else { data.len() };
            route_of(own, self.family, data, len)
        });
        match route {
            Route::Drop(why) => {
                self.release();
                Outcome::drop(why)
            }
            Route::Local => match self.run_hook(Hook::LocalIn) {
                HookEnd::Stop(o) => o,
                HookEnd::Continue => Outcome::accept(PathKind::Local),
            },
            Route::Forward => {
                for hook in [Hook::Forward, Hook::PostRouting] {
                    if let HookEnd::Stop(o) = self.run_hook(hook) {
                        return o;
                    }
                }
                Outcome::accept(PathKind::Forward)
            }
        }
    }

    /// `ip_local_out` / `ip6_local_out`: a packet this host sends; one to its own address
    /// loops back in through PRE_ROUTING and LOCAL_IN still carrying its entry (spec §1.3).
    pub fn local_out(&mut self) -> Outcome {
        let plausible = match self.family {
            Family::V4 => ip::ip_version(self.base) == Some(4),
            Family::V6 => ip::ip_version(self.base) == Some(6),
        };
        if !plausible {
            return Outcome::drop("ip_local_out: not a packet of this family");
        }
        for hook in [Hook::LocalOut, Hook::PostRouting] {
            if let HookEnd::Stop(o) = self.run_hook(hook) {
                return o;
            }
        }
        let dst = self.carrier.with(|st| addrs(self.family, st.data(self.base)).map(|(_, d)| d));
        if !dst.is_some_and(|d| route::output_is_loopback(&self.net.stack.local, d)) {
            return Outcome::accept(PathKind::Output);
        }
        // Loopback: `lo` receives it (no receive checks fail on a packet we built ourselves).
        if let HookEnd::Stop(o) = self.run_hook(Hook::PreRouting) {
            return o;
        }
        match self.run_hook(Hook::LocalIn) {
            HookEnd::Stop(o) => o,
            HookEnd::Continue => Outcome::accept(PathKind::Local),
        }
    }

    /// Drops the packet's reference on its entry (a new, unconfirmed entry is freed).
    fn release(&self) {
        self.carrier.with(|st| self.net.release(&mut st.ct));
    }

    /// `nf_hook_slow`: the hook's operations in order until one does not accept.
    fn run_hook(&mut self, hook: Hook) -> HookEnd {
        let call = HookCall { hook, family: self.family };
        for op in self.table.ops(self.family, hook) {
            let mut repeats = 0;
            let verdict = loop {
                let v = match &op.kind {
                    OpKind::Builtin(b) => self.carrier.with(|st| self.builtin(*b, hook, st)),
                    OpKind::External(_) => match (self.ext)(op, call) {
                        Ok(v) => v,
                        Err(e) => {
                            self.release();
                            return HookEnd::Stop(Outcome::stopped(NF_DROP, op, None, Some(e)));
                        }
                    },
                };
                // The low byte is the verdict; NF_DROP_ERR and queue numbers use the rest.
                match v & 0xff {
                    NF_REPEAT if repeats < MAX_REPEAT => repeats += 1,
                    NF_REPEAT => break Err(Some("nf_hook: the operation kept answering NF_REPEAT")),
                    NF_ACCEPT => break Ok(false),
                    NF_STOP => break Ok(true),
                    NF_STOLEN => return HookEnd::Stop(Outcome::stopped(NF_STOLEN, op, None, None)),
                    NF_QUEUE => break Err(Some("nf_queue: no userspace queue is bound")),
                    NF_DROP => break Err(None),
                    _ => break Err(Some("nf_hook: unknown verdict")),
                }
            };
            match verdict {
                Ok(false) => {}
                // NF_STOP: accepted, and the rest of this hook is skipped.
                Ok(true) => return HookEnd::Continue,
                Err(reason) => {
                    self.release();
                    return HookEnd::Stop(Outcome::stopped(NF_DROP, op, reason, None));
                }
            }
        }
        HookEnd::Continue
    }

    /// One built-in operation on the packet.
    fn builtin(&self, b: Builtin, hook: Hook, st: &mut PacketState) -> u32 {
        let net = self.net;
        match b {
            Builtin::Defrag => self.defrag(st),
            Builtin::ConntrackIn | Builtin::ConntrackLocal => {
                let PacketState { ct, len, whole, .. } = st;
                let data = bytes_seen(whole.as_deref(), *len, self.base);
                if self.own_clock {
                    net.advance(self.tstamp);
                    ct.clock = Some(self.tstamp);
                    net.conntrack_in_at(data, self.tstamp, hook, self.family.af(), ct)
                } else {
                    net.conntrack_in(data, self.tstamp, hook, self.family.af(), ct)
                }
            }
            Builtin::Confirm => net.confirm(&mut st.ct),
            Builtin::Verdict(v) => v,
            Builtin::CtState { mask, hit, miss } => {
                if ct_state_bit(&st.ct) & mask != 0 {
                    hit
                } else {
                    miss
                }
            }
            Builtin::CtZone(zone) => {
                if st.ct.nfct == Nfct::None {
                    st.ct.tmpl = Some(zone);
                }
                NF_ACCEPT
            }
            Builtin::CtMarkSet { value, mask } => {
                if let Nfct::Ct { slot, gen, .. } = st.ct.nfct {
                    net.set_mark(slot, gen, value, mask);
                }
                NF_ACCEPT
            }
            Builtin::CtMark { value, mask, hit, miss } => {
                let mark = match st.ct.nfct {
                    Nfct::Ct { slot, gen, .. } => net.mark(slot, gen),
                    // A template's mark is 0; an untracked packet has no ct to match.
                    Nfct::None if st.ct.tmpl.is_some() => Some(0),
                    _ => None,
                };
                if mark.is_some_and(|m| m & mask == value) {
                    hit
                } else {
                    miss
                }
            }
            Builtin::Notrack => {
                if st.ct.nfct == Nfct::None {
                    st.ct.nfct = Nfct::Untracked;
                    st.ct.tmpl = None;
                }
                NF_ACCEPT
            }
        }
    }

    /// `ipv4_conntrack_defrag` / `ipv6_defrag`: a packet that already has conntrack state
    /// (loopback) passes; a fragment is held (stolen) until its datagram is whole.
    fn defrag(&self, st: &mut PacketState) -> u32 {
        if st.ct.nfct != Nfct::None || st.whole.is_some() {
            return NF_ACCEPT;
        }
        let data = st.data(self.base);
        let sweep = self.horizon.min(self.tstamp);
        let gathered = match self.family {
            Family::V4 => self.net.defrag.ipv4_gather_at(data, self.tstamp, sweep),
            Family::V6 => {
                let s = &self.net.sysctl;
                let lim = FragLimits {
                    timeout_ns: s.timeout_ns(Sx::Frag6Timeout),
                    high_thresh: s.get(Sx::Frag6HighThresh),
                    low_thresh: s.get(Sx::Frag6LowThresh),
                };
                self.net.defrag.ipv6_gather_at(data, self.tstamp, sweep, &lim)
            }
        };
        match gathered {
            Gathered::NotFragment => NF_ACCEPT,
            Gathered::Held => {
                st.ct.reason = Some("nf_defrag: fragment held for reassembly");
                NF_STOLEN
            }
            Gathered::Dropped(why) => {
                st.ct.reason = Some(why);
                // IPv4's gather consumes the skb either way; IPv6 drops on an error.
                if self.family == Family::V4 {
                    NF_STOLEN
                } else {
                    NF_DROP
                }
            }
            Gathered::Reassembled { pkt, max_frag } => {
                st.whole = Some(pkt);
                st.max_frag = max_frag;
                NF_ACCEPT
            }
        }
    }
}

/// The source and destination addresses of an IP packet, if its header has them.
pub fn addrs(fam: Family, data: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match fam {
        Family::V4 => {
            let s: [u8; 4] = data.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = data.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        Family::V6 => {
            let s: [u8; 16] = data.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = data.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
    }
}

/// The routing decision for a packet that passed the receive checks (so its fixed header is
/// all there).
fn route_of(own: Owner<'_>, fam: Family, data: &[u8], len: usize) -> Route {
    match fam {
        Family::V4 => match (data.get(12..16), data.get(16..20), data.get(8), data.get(9)) {
            (Some(s), Some(d), Some(&ttl), Some(&proto)) => {
                let df = data.get(6).is_some_and(|b| b & 0x40 != 0);
                route::route_v4(own, [s[0], s[1], s[2], s[3]], [d[0], d[1], d[2], d[3]], ttl, proto, len, df)
            }
            _ => Route::Forward,
        },
        Family::V6 => {
            let addr = |r: std::ops::Range<usize>| -> Option<[u8; 16]> { data.get(r)?.try_into().ok() };
            match (addr(8..24), addr(24..40), data.get(7)) {
                (Some(s), Some(d), Some(&hop)) => route::route_v6(own, &s, &d, hop, len),
                _ => Route::Forward,
            }
        }
    }
}

/// Which entry point a replayed packet takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Rcv,
    LocalOut,
}

/// One packet through `net`'s stack, its state in a `RefCell`, with no external operations:
/// the replay's fast path. Returns the outcome and the packet's state as it left the stack
/// (its reference on the entry is already released).
pub fn run_packet(
    net: &Net,
    table: &HookTable,
    entry: Entry,
    all_local: bool,
    pkt: &[u8],
    tstamp: u64,
) -> (Outcome, PacketState) {
    run_packet_clocked(net, table, entry, all_local, pkt, tstamp, None)
}

/// As [`run_packet`]; with `horizon` (a threaded replay's worker), conntrack runs at `tstamp`
/// (the worker's clock) rather than at the table's, and shared timers fire only up to the
/// horizon (the time every worker has reached).
pub fn run_packet_clocked(
    net: &Net,
    table: &HookTable,
    entry: Entry,
    all_local: bool,
    pkt: &[u8],
    tstamp: u64,
    horizon: Option<u64>,
) -> (Outcome, PacketState) {
    let cell = RefCell::new(PacketState::default());
    let Some(family) = Family::of_packet(pkt) else {
        return (Outcome::drop("ip_rcv: not an IP packet"), cell.into_inner());
    };
    let ext: &mut Ext<'_> = &mut no_external;
    let (own_clock, horizon) = (horizon.is_some(), horizon.unwrap_or(u64::MAX));
    let out = Pipeline {
        net,
        table,
        base: pkt,
        tstamp,
        family,
        all_local,
        own_clock,
        horizon,
        carrier: &cell,
        ext,
    }
    .run(entry);
    let mut st = cell.into_inner();
    // The packet leaves the stack (delivered, sent or freed): its reference on the entry goes;
    // the state returned still says what the packet carried when it left.
    let left = st.ct;
    net.release(&mut st.ct);
    st.ct = left;
    (out, st)
}

/// One packet through `net`'s stack with its state in `carrier` and external operations run
/// by `ext`. A packet that is not IP is dropped by the receive checks (or by local out).
#[allow(clippy::too_many_arguments)]
pub fn run_packet_in<'a, C: Carrier>(
    net: &'a Net,
    table: &'a HookTable,
    entry: Entry,
    all_local: bool,
    pkt: &'a [u8],
    tstamp: u64,
    carrier: &'a C,
    ext: &'a mut Ext<'a>,
) -> Outcome {
    let Some(family) = Family::of_packet(pkt) else {
        return Outcome::drop("ip_rcv: not an IP packet");
    };
    Pipeline {
        net,
        table,
        base: pkt,
        tstamp,
        family,
        all_local,
        own_clock: false,
        horizon: u64::MAX,
        carrier,
        ext,
    }
    .run(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::NetOptions;
    use crate::sysctl::Sysctl;

    fn udp4(src: [u8; 4], dst: [u8; 4], ttl: u8) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 1, 0, 0, ttl, 17, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        let c = crate::wire::checksum::internet_checksum(&p);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        p
    }

    fn net(local: &[&str]) -> Net {
        let addrs: Vec<IpAddr> = local.iter().map(|a| a.parse().unwrap()).collect();
        Net::new(NetOptions { seed: Some(1), local_addrs: addrs, ..NetOptions::default() }, Sysctl::default())
    }

    #[test]
    fn conntrack_ops_in_kernel_order() {
        let n = net(&[]);
        let names =
            |f, h| n.stack.hooks(f, h).into_iter().map(|(p, s)| (p, s.to_string())).collect::<Vec<_>>();
        assert_eq!(
            names(Family::V4, Hook::PreRouting),
            [(-400, "ipv4_conntrack_defrag".to_string()), (-200, "ipv4_conntrack_in".to_string())]
        );
        assert_eq!(names(Family::V6, Hook::LocalIn), [(i32::MAX - 1, "ipv6_confirm".to_string())]);
        assert!(names(Family::V4, Hook::Forward).is_empty());
    }

    #[test]
    fn equal_priorities_run_in_registration_order() {
        let n = net(&[]);
        let v = |x| OpKind::Builtin(Builtin::Verdict(x));
        n.stack.register(NFPROTO_INET, Hook::Forward, 0, "a".into(), v(NF_ACCEPT)).unwrap();
        n.stack.register(NFPROTO_IPV4, Hook::Forward, -5, "b".into(), v(NF_ACCEPT)).unwrap();
        let c = n.stack.register(NFPROTO_IPV4, Hook::Forward, 0, "c".into(), v(NF_ACCEPT)).unwrap();
        let names: Vec<String> =
            n.stack.hooks(Family::V4, Hook::Forward).iter().map(|h| h.1.to_string()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert_eq!(n.stack.hooks(Family::V6, Hook::Forward).len(), 1);
        assert!(n.stack.unregister(c));
        assert!(!n.stack.unregister(c));
        assert!(n.stack.register(NFPROTO_ARP, Hook::Forward, 0, "x".into(), v(NF_ACCEPT)).is_err());
    }

    #[test]
    fn drop_in_forward_leaves_no_entry() {
        let n = net(&[]);
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let id = n
            .stack
            .register(
                NFPROTO_IPV4,
                Hook::Forward,
                0,
                "filter".into(),
                OpKind::Builtin(Builtin::Verdict(NF_DROP)),
            )
            .unwrap();
        let (out, st) = run_packet(&n, &n.stack.snapshot(), Entry::Rcv, false, &p, 1);
        assert_eq!((out.verdict, out.path), (NF_DROP, PathKind::Drop));
        assert_eq!(out.dropped_by.as_ref().map(|o| &*o.name), Some("filter"));
        assert_eq!(st.ct.nfct, Nfct::None);
        assert_eq!((n.count(), n.list().len()), (0, 0));
        n.stack.unregister(id);
        let (out, _) = run_packet(&n, &n.stack.snapshot(), Entry::Rcv, false, &p, 1);
        assert_eq!((out.verdict, out.path), (NF_ACCEPT, PathKind::Forward));
        assert_eq!(n.list().len(), 1);
    }

    #[test]
    fn local_delivery_forwarding_and_loopback() {
        let n = net(&["10.0.0.2"]);
        let t = n.stack.snapshot();
        let (out, _) = run_packet(&n, &t, Entry::Rcv, false, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 1), 1);
        assert_eq!(out.path, PathKind::Local);
        let (out, _) = run_packet(&n, &t, Entry::Rcv, false, &udp4([10, 0, 0, 1], [10, 0, 0, 3], 1), 1);
        assert_eq!((out.path, out.reason), (PathKind::Drop, Some("ip_forward: TTL exceeded")));
        let (out, _) = run_packet(&n, &t, Entry::LocalOut, false, &udp4([10, 0, 0, 2], [10, 0, 0, 9], 64), 1);
        assert_eq!(out.path, PathKind::Output);
        let (out, st) =
            run_packet(&n, &t, Entry::LocalOut, false, &udp4([10, 0, 0, 2], [127, 0, 0, 1], 64), 1);
        assert_eq!(out.path, PathKind::Local);
        assert_eq!(st.ct.ctinfo(), Some(crate::core::IP_CT_NEW));
        // Delivered, sent out and looped back: three entries; the TTL drop left none.
        assert_eq!(n.list().len(), 3);
    }

    #[test]
    fn zone_template_and_marks() {
        let n = net(&[]);
        let z = Zone { id: 7, dir: Zone::DIR_BOTH };
        n.stack
            .register(
                NFPROTO_IPV4,
                Hook::PreRouting,
                -300,
                "zone".into(),
                OpKind::Builtin(Builtin::CtZone(z)),
            )
            .unwrap();
        n.stack
            .register(
                NFPROTO_IPV4,
                Hook::Forward,
                0,
                "mark".into(),
                OpKind::Builtin(Builtin::CtMarkSet { value: 42, mask: u32::MAX }),
            )
            .unwrap();
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        run_packet(&n, &n.stack.snapshot(), Entry::Rcv, false, &p, 1);
        let rows = n.list();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].2.zone, rows[0].2.mark), (z, 42));
        // The same tuple in zone 0 is another entry.
        let plain = net(&[]);
        run_packet(&plain, &plain.stack.snapshot(), Entry::Rcv, false, &p, 1);
        assert_eq!(plain.list()[0].2.zone, Zone::default());
    }
}
