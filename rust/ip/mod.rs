//! The IP layer (`net/ipv4/ip_input.c`, `ip_output.c`, `route.c` and their IPv6 twins): the
//! paths a packet takes through a host or router, running each hook's registered operations
//! in priority order (`nf_hook_slow`) with conntrack's own among them:
//!
//! * from the wire ([`input`]: `ip_rcv`): PRE_ROUTING, the routing decision ([`route`]), then
//!   LOCAL_IN, or FORWARD and POST_ROUTING;
//! * sent by the host ([`output`]: `ip_local_out`): LOCAL_OUT, POST_ROUTING, and for a packet
//!   to one of the host's own addresses the loopback second pass through PRE_ROUTING and
//!   LOCAL_IN.
//!
//! Operations are conntrack's own, rules (both run in Rust, also inside replays) or external:
//! those are handed to a caller-supplied function (the Python binding calls the user's hook
//! there), so this layer knows nothing of Python. It depends on `net`, `netfilter`, `core`,
//! `defrag` and `wire`.

pub mod input;
pub mod output;
pub mod route;

use crate::conn::ConnView;
use crate::core::{CtRef, CtState, SkbCt};
use crate::defrag::{FragLimits, Gathered};
use crate::nat::{self, Manip, NatEnv};
use crate::net::Net;
use crate::netfilter::nft::{ChainRef, ChainVerdict, Decider, PktCtx};
use crate::netfilter::{CtOp, Family, HookTable, Op, OpKind, MAX_REPEAT};
use crate::sysctl::SysctlKey;
use crate::tuple::{Direction, HashHint};
use crate::uapi::{
    Hook, IPPROTO_ICMP, IPPROTO_ICMPV6, IP_CT_IS_REPLY, IP_CT_NEW, IP_CT_RELATED, IP_CT_RELATED_REPLY,
    NF_ACCEPT, NF_DROP, NF_QUEUE, NF_REPEAT, NF_STOLEN, NF_STOP,
};
use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

/// What the IP stack keeps with a packet besides its bytes (the parts of `struct sk_buff`
/// nfct models): its conntrack state, the length it was trimmed to, and the reassembled
/// datagram once defrag made one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skb {
    pub ct: SkbCt,
    /// The IP total length the receive checks trimmed the bytes to.
    pub len: Option<usize>,
    /// The packet's own copy of its bytes: the whole datagram when this packet completed a
    /// reassembly, or the bytes NAT rewrote.
    pub whole: Option<Vec<u8>>,
    /// Whether NAT rewrote the bytes.
    pub rewritten: bool,
    /// The largest fragment of the reassembled datagram (the forward path's MTU check).
    pub max_frag: usize,
    /// `skb->mark` (`meta mark`).
    pub mark: u32,
}

impl Skb {
    /// The packet's bytes as the stack sees them now.
    pub fn data<'a>(&'a self, base: &'a [u8]) -> &'a [u8] {
        bytes_seen(self.whole.as_deref(), self.len, base)
    }

    /// The packet's bytes to write to (`skb_ensure_writable`): its own copy, made now if it
    /// had none.
    pub fn writable(&mut self, base: &[u8]) -> &mut Vec<u8> {
        if self.whole.is_none() {
            let copy = self.data(base).to_vec();
            self.max_frag = copy.len();
            self.whole = Some(copy);
        }
        self.rewritten = true;
        self.whole.get_or_insert_with(Vec::new)
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

/// Gives the path access to a packet's state, held however the caller holds it (a `RefCell`
/// in replays, the Python `Skb`'s lock in the binding). The state is only borrowed for the
/// duration of `f`, never across an external operation.
pub trait Carrier {
    fn with<R>(&self, f: impl FnOnce(&mut Skb) -> R) -> R;
}

impl Carrier for RefCell<Skb> {
    fn with<R>(&self, f: impl FnOnce(&mut Skb) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

/// An error an external operation raised (the caller's own type inside). One thin pointer,
/// so that an [`Outcome`], which every packet hands back, stays small enough to be moved
/// without a call to `memcpy` (128 bytes at most).
pub struct ExtError(pub Box<Box<dyn Any + Send>>);

impl ExtError {
    pub fn new<T: Any + Send>(value: T) -> ExtError {
        ExtError(Box::new(Box::new(value)))
    }
}

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
pub type ExternalOp<'a> = dyn FnMut(&Op, HookCall) -> Result<u32, ExtError> + 'a;

/// For paths with no external operations.
pub fn no_external(op: &Op, _: HookCall) -> Result<u32, ExtError> {
    Err(ExtError::new(format!("operation {} needs a caller", op.name)))
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

/// What a packet's path amounts to for a report (`nfct replay --output packets`): the ct
/// state a rule at its last hook would see, or dropped where it never got there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
    Dropped,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::New => "new",
            Class::Established => "established",
            Class::Related => "related",
            Class::Invalid => "invalid",
            Class::Untracked => "untracked",
            Class::Dropped => "dropped",
        }
    }
}

impl From<CtState> for Class {
    fn from(s: CtState) -> Class {
        match s {
            CtState::New => Class::New,
            CtState::Established => Class::Established,
            CtState::Related => Class::Related,
            CtState::Invalid => Class::Invalid,
            CtState::Untracked => Class::Untracked,
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
    /// The packet's conntrack state as it left the stack (its reference on the entry may
    /// already be released: only the values remain).
    pub ct: SkbCt,
    /// Which rule of the dropping chain gave its verdict (nft chains only).
    pub decider: Option<Decider>,
    /// The packet's bytes as they left when the stack made its own copy (rewritten by NAT, or
    /// a reassembled datagram); None when they are the bytes that came in. Filled by
    /// [`run_native`] (other callers read their carrier).
    pub data: Option<Vec<u8>>,
}

impl Outcome {
    /// Dropped by the stack outside any operation (receive checks, routing), for `reason`.
    pub fn dropped(reason: &'static str) -> Outcome {
        Outcome {
            verdict: NF_DROP,
            path: PathKind::Drop,
            dropped_by: None,
            reason: Some(reason),
            error: None,
            ct: SkbCt::default(),
            decider: None,
            data: None,
        }
    }

    /// An operation dropped or stole the packet.
    fn stopped(verdict: u32, op: &Arc<Op>, reason: Option<&'static str>, error: Option<ExtError>) -> Outcome {
        Outcome {
            verdict,
            path: PathKind::Drop,
            dropped_by: Some(op.clone()),
            reason,
            error,
            ct: SkbCt::default(),
            decider: None,
            data: None,
        }
    }

    fn accept(path: PathKind) -> Outcome {
        Outcome {
            verdict: NF_ACCEPT,
            path,
            dropped_by: None,
            reason: None,
            error: None,
            ct: SkbCt::default(),
            decider: None,
            data: None,
        }
    }

    /// The class a report gives the packet, and the reason it shows.
    pub fn class(&self) -> (Class, Option<&'static str>) {
        if self.verdict == NF_ACCEPT {
            (self.ct.state().into(), self.ct.reason)
        } else {
            (Class::Dropped, self.reason.or(self.ct.reason))
        }
    }

    /// The packet's ctinfo as it left the stack (IP_CT_UNTRACKED when untracked).
    pub fn ctinfo(&self) -> Option<u8> {
        self.ct.ctinfo()
    }

    /// The dropping operation, if it is a ruleset's or a caller's rather than conntrack's own.
    pub fn dropped_by_rule(&self) -> Option<&Arc<Op>> {
        self.dropped_by.as_ref().filter(|o| !o.is_conntrack())
    }

    /// What dropped the packet, in nft's words where a ruleset did (`inet filter forward handle
    /// 7`, `inet filter forward policy drop`), else the operation's name.
    pub fn dropped_by_name(&self) -> Option<String> {
        let op = self.dropped_by_rule()?;
        Some(match (&op.kind, self.decider) {
            (OpKind::Chain(c), Some(d)) if !c.builtin => match d {
                Decider::Rule { chain, handle } => {
                    let t = c.table();
                    let name = t.chains.get(chain).map_or("?", |c| c.name.as_str());
                    format!("{} {} {name} handle {handle}", t.family.name(), t.name)
                }
                Decider::Policy => format!("{} policy drop", c.name()),
            },
            _ => op.name.to_string(),
        })
    }
}

/// Where a packet enters the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// From the wire (`ip_rcv` / `ipv6_rcv`).
    Rcv,
    /// Sent by the host (`ip_local_out` / `ip6_local_out`).
    LocalOut,
}

/// Which clock a packet's conntrack work runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClock {
    /// The namespace's clock: moved to the packet's time when conntrack sees it, and read at
    /// confirmation (one thread, or a Python caller).
    Shared,
    /// The packet's own time (a threaded replay's worker, whose clock may be behind the
    /// namespace's, which other workers move); shared timers (other flows' defrag queues) fire
    /// only up to `horizon`, the time every worker has reached.
    Worker { horizon: u64 },
}

/// How one packet runs: where it enters, at what time, on which clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRun<'h> {
    pub ingress: Ingress,
    /// Every unicast destination is this host's (`--path local-in`).
    pub all_local: bool,
    /// The packet's time, ns.
    pub tstamp: u64,
    pub clock: PacketClock,
    /// The interface it arrives on (ifindex; none for a host without interfaces).
    pub iif: Option<u32>,
    /// Its tuple's hash, computed ahead by a replay's prefetch (conntrack checks that the
    /// tuple is the packet's before using it).
    pub hint: Option<&'h HashHint>,
}

/// One step of a packet's way through the stack, for `nfct explain`: an operation at a hook
/// with its verdict (and the rule that decided, for nft chains; the entry before and after,
/// for conntrack's own), or the routing decision (`hook` None).
#[derive(Clone, Debug)]
pub struct TraceStep {
    pub hook: Option<Hook>,
    pub priority: i32,
    pub name: String,
    pub verdict: u32,
    /// The deciding rule (nft), or what routing decided.
    pub rule: Option<String>,
    pub reason: Option<&'static str>,
    pub before: Option<ConnView>,
    pub after: Option<ConnView>,
    /// The packet's ctinfo after the step.
    pub ctinfo: Option<u8>,
}

/// How the NAT core's operation ended.
enum NatEnd {
    Verdict(u32, Option<&'static str>),
    /// A nat chain did not accept.
    Chain(Arc<Op>, ChainVerdict),
}

/// How a hook's operations ended.
enum HookEnd {
    /// All accepted (or one said NF_STOP): the packet goes on.
    Continue,
    Stop(Outcome),
}

/// A packet's way through one namespace: the hook table it was given at entry, its bytes, its
/// family, how it runs, and how to reach its state and the external operations.
pub struct Pipeline<'a, C: Carrier> {
    net: &'a Net,
    hooks: &'a HookTable,
    base: &'a [u8],
    family: Family,
    run: PacketRun<'a>,
    /// The interface the routing decision sends it out of.
    oif: Option<u32>,
    carrier: &'a C,
    ext: &'a mut ExternalOp<'a>,
    /// Where the steps go when the packet is traced (`nfct explain`).
    trace: Option<&'a RefCell<Vec<TraceStep>>>,
}

impl<'a, C: Carrier> Pipeline<'a, C> {
    /// The entry a conntrack operation will act on, before it does (traced packets only).
    #[inline(always)]
    fn trace_before(&self, op: &Op) -> Option<ConnView> {
        self.trace?;
        self.trace_before_slow(op)
    }

    #[cold]
    #[inline(never)]
    fn trace_before_slow(&self, op: &Op) -> Option<ConnView> {
        let OpKind::Conntrack(c) = op.kind else { return None };
        let net = self.net;
        let now = net.now();
        self.carrier.with(|st| match (c, st.ct.nfct) {
            (_, CtRef::Ct { slot, gen, .. }) => net.ct.view(slot, gen, now, false),
            (CtOp::In | CtOp::Local, CtRef::None) => {
                let l3num = self.family.af();
                let t = crate::tuple::packet_tuple(l3num, st.data(self.base))?;
                let zone = st.ct.tmpl.unwrap_or_default();
                let (slot, gen, _) = net.ct.find_get(&t, zone, self.run.tstamp.max(now))?;
                let v = net.ct.view(slot, gen, now, false);
                net.ct.put(slot, gen);
                v
            }
            _ => None,
        })
    }

    /// Records one operation's step (traced packets only: a test and a jump otherwise).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn trace_op(
        &self,
        hook: Hook,
        op: &Op,
        verdict: u32,
        rule: Option<String>,
        reason: Option<&'static str>,
        before: Option<ConnView>,
    ) {
        if self.trace.is_some() {
            self.trace_op_slow(hook, op, verdict, rule, reason, before);
        }
    }

    #[cold]
    #[inline(never)]
    fn trace_op_slow(
        &self,
        hook: Hook,
        op: &Op,
        verdict: u32,
        rule: Option<String>,
        reason: Option<&'static str>,
        before: Option<ConnView>,
    ) {
        let Some(tr) = self.trace else { return };
        let net = self.net;
        let (after, ctinfo) = self.carrier.with(|st| {
            let v = match st.ct.nfct {
                CtRef::Ct { slot, gen, .. } if op.is_conntrack() => net.ct.view(slot, gen, net.now(), false),
                _ => None,
            };
            (v, st.ct.ctinfo())
        });
        // An INVALID packet keeps going with its reason and no entry; a drop says why.
        let invalid = matches!(op.kind, OpKind::Conntrack(CtOp::In | CtOp::Local))
            && self.carrier.with(|st| st.ct.nfct == CtRef::None);
        let reason = reason.or_else(|| {
            (verdict != NF_ACCEPT || invalid).then(|| self.carrier.with(|st| st.ct.reason)).flatten()
        });
        tr.borrow_mut().push(TraceStep {
            hook: Some(hook),
            priority: op.priority,
            name: op.name.to_string(),
            verdict,
            rule,
            reason,
            before,
            after,
            ctinfo,
        });
    }

    /// Records the routing decision (traced packets only).
    fn trace_route(&self, what: String, verdict: u32, reason: Option<&'static str>) {
        let Some(tr) = self.trace else { return };
        tr.borrow_mut().push(TraceStep {
            hook: None,
            priority: 0,
            name: "routing".into(),
            verdict,
            rule: Some(what),
            reason,
            before: None,
            after: None,
            ctinfo: None,
        });
    }

    /// The words for the rule of a chain's verdict.
    fn rule_name(op: &Op, by: Decider) -> Option<String> {
        let OpKind::Chain(c) = &op.kind else { return None };
        if c.builtin {
            return Some(op.name.to_string());
        }
        Some(match by {
            Decider::Rule { chain, handle } => {
                let t = c.table();
                let name = t.chains.get(chain).map_or("?", |c| c.name.as_str());
                format!("{} {} {name} handle {handle}", t.family.name(), t.name)
            }
            Decider::Policy => format!("{} policy", c.name()),
        })
    }

    /// The packet's whole path from its ingress; the outcome carries the packet's conntrack
    /// state as it left (the carrier still holds the reference on its entry).
    fn go(mut self) -> Outcome {
        let mut out = match self.run.ingress {
            Ingress::Rcv => self.rcv(),
            Ingress::LocalOut => self.local_out(),
        };
        out.ct = self.carrier.with(|st| st.ct);
        out
    }

    /// Drops the packet's reference on its entry (a new, unconfirmed entry is freed).
    fn release(&self) {
        self.carrier.with(|st| self.net.ct.release(&mut st.ct));
    }

    /// `nf_hook`: a hook with no operations (FORWARD on a host without rules) costs only the
    /// look at its list, not the call that sets up the walk.
    #[inline(always)]
    fn run_hook(&mut self, hook: Hook) -> HookEnd {
        if self.hooks.ops(self.family, hook).is_empty() {
            return HookEnd::Continue;
        }
        self.run_ops(hook)
    }

    /// `nf_hook_slow`: the hook's operations in order until one does not accept.
    #[inline(never)]
    fn run_ops(&mut self, hook: Hook) -> HookEnd {
        let call = HookCall { hook, family: self.family };
        for op in self.hooks.ops(self.family, hook) {
            let mut repeats = 0;
            let before = self.trace_before(op);
            let mut rule = None;
            let verdict = loop {
                let v = match &op.kind {
                    OpKind::Conntrack(CtOp::Nat) => match self.nat_op(hook) {
                        NatEnd::Verdict(v, reason) => {
                            if v != NF_ACCEPT {
                                self.trace_op(hook, op, NF_DROP, None, reason, before);
                                self.release();
                                return HookEnd::Stop(Outcome::stopped(NF_DROP, op, reason, None));
                            }
                            v
                        }
                        NatEnd::Chain(chain_op, cv) => {
                            let v = if cv.verdict & 0xff == NF_STOLEN { NF_STOLEN } else { NF_DROP };
                            self.trace_op(hook, op, v, Self::rule_name(&chain_op, cv.by), cv.reason, before);
                            self.release();
                            let mut out = Outcome::stopped(v, &chain_op, cv.reason, None);
                            out.decider = Some(cv.by);
                            return HookEnd::Stop(out);
                        }
                    },
                    OpKind::Conntrack(c) => self.carrier.with(|st| self.conntrack_op(*c, hook, st)),
                    OpKind::Chain(c) => {
                        let cv = self.carrier.with(|st| self.chain(c, hook, st));
                        if self.trace.is_some() {
                            rule = Self::rule_name(op, cv.by);
                        }
                        match cv.verdict & 0xff {
                            NF_ACCEPT => cv.verdict,
                            v => {
                                let v = if v == NF_STOLEN { NF_STOLEN } else { NF_DROP };
                                self.trace_op(hook, op, v, rule, cv.reason, before);
                                self.release();
                                let mut out = Outcome::stopped(v, op, cv.reason, None);
                                out.decider = Some(cv.by);
                                return HookEnd::Stop(out);
                            }
                        }
                    }
                    OpKind::External(_) => match (self.ext)(op, call) {
                        Ok(v) => v,
                        Err(e) => {
                            self.trace_op(hook, op, NF_DROP, None, Some("the hook raised"), before);
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
                    NF_STOLEN => {
                        self.trace_op(hook, op, NF_STOLEN, rule, None, before);
                        return HookEnd::Stop(Outcome::stopped(NF_STOLEN, op, None, None));
                    }
                    NF_QUEUE => break Err(Some("nf_queue: no userspace queue is bound")),
                    NF_DROP => break Err(None),
                    _ => break Err(Some("nf_hook: unknown verdict")),
                }
            };
            match verdict {
                Ok(stop) => {
                    self.trace_op(hook, op, if stop { NF_STOP } else { NF_ACCEPT }, rule, None, before);
                    if stop {
                        // NF_STOP: accepted, and the rest of this hook is skipped.
                        return HookEnd::Continue;
                    }
                }
                Err(reason) => {
                    self.trace_op(hook, op, NF_DROP, rule, reason, before);
                    self.release();
                    return HookEnd::Stop(Outcome::stopped(NF_DROP, op, reason, None));
                }
            }
        }
        HookEnd::Continue
    }

    /// An nft base chain on the packet.
    fn chain(&self, c: &ChainRef, hook: Hook, st: &mut Skb) -> ChainVerdict {
        let net = self.net;
        let Skb { ct, len, whole, mark, .. } = st;
        let data = bytes_seen(whole.as_deref(), *len, self.base);
        let dev = |i: Option<u32>| i.and_then(|i| net.devices().by_index(i));
        let random = || net.random();
        let mut ctx = PktCtx {
            data,
            nat: &net.nat,
            family: self.family,
            hook,
            iif: dev(self.run.iif),
            oif: dev(self.oif),
            mark,
            skb: ct,
            ct: &net.ct,
            devs: net.devices(),
            fib: net.fib(),
            random: &random,
            now: self.packet_now(),
        };
        c.eval(&mut ctx)
    }

    /// One of conntrack's own operations on the packet.
    fn conntrack_op(&self, op: CtOp, hook: Hook, st: &mut Skb) -> u32 {
        let net = self.net;
        match op {
            CtOp::Defrag => self.defrag(st),
            CtOp::In | CtOp::Local => {
                let Skb { ct, len, whole, .. } = st;
                let data = bytes_seen(whole.as_deref(), *len, self.base);
                // A worker moves the namespace's clock itself, once per batch: per packet,
                // two workers would take its cache line from each other.
                let now = match self.run.clock {
                    PacketClock::Shared => net.advance_to(self.run.tstamp),
                    PacketClock::Worker { .. } => self.run.tstamp,
                };
                net.ct.conntrack_in_hinted(data, now, hook, self.family.af(), ct, self.run.hint)
            }
            CtOp::Confirm => {
                let now = match self.run.clock {
                    PacketClock::Shared => net.now(),
                    PacketClock::Worker { .. } => self.run.tstamp,
                };
                net.ct.confirm(&mut st.ct, now)
            }
            // Run by `nat_op`.
            CtOp::Nat => NF_ACCEPT,
        }
    }

    /// The time NAT and the rules work at (the port search's `tuple_taken` reaps what expired
    /// by then): the namespace's clock, or a worker's own.
    fn packet_now(&self) -> u64 {
        match self.run.clock {
            PacketClock::Shared => self.net.now(),
            PacketClock::Worker { .. } => self.run.tstamp,
        }
    }

    /// The NAT core at `hook` (`nf_nat_ipv4_fn`/`nf_nat_ipv6_fn` over `nf_nat_inet_fn`): an ICMP
    /// error related to a connection gets its quoted packet translated back; a connection's
    /// first packet runs the hook's nat chains until one binds it, and gets the null binding
    /// if none did; a masqueraded connection whose packets now leave by another interface is
    /// killed; then the packet is rewritten to follow the binding (`nf_nat_packet`). At
    /// LOCAL_OUT a packet whose destination changed is routed again.
    fn nat_op(&mut self, hook: Hook) -> NatEnd {
        let net = self.net;
        let Some((slot, gen, ctinfo)) = self.carrier.with(|st| match st.ct.nfct {
            CtRef::Ct { slot, gen, ctinfo } => Some((slot, gen, ctinfo)),
            _ => None,
        }) else {
            return NatEnd::Verdict(NF_ACCEPT, None);
        };
        let manip = Manip::of_hook(hook);
        let dir = if ctinfo >= IP_CT_IS_REPLY { Direction::Reply } else { Direction::Original };
        // One look at the entry: its status, masquerade interface, and the tuple this packet
        // must be rewritten to if this side of it is translated.
        let Some((status, masq, target)) = net.ct.with_conn(slot, gen, |c| {
            (c.status, c.ext.as_ref().and_then(|x| x.masq_index), nat::conn_target(c, dir, manip))
        }) else {
            return NatEnd::Verdict(NF_ACCEPT, None);
        };
        let related = ctinfo == IP_CT_RELATED || ctinfo == IP_CT_RELATED_REPLY;
        if related {
            let Some(tuples) = net.ct.with_conn(slot, gen, |c| c.tuples()) else {
                return NatEnd::Verdict(NF_ACCEPT, None);
            };
            let icmp = self.carrier.with(|st| {
                let d = st.data(self.base);
                let proto = match self.family {
                    Family::V4 => crate::wire::ip::ipv4_fields(d).map(|h| h.protocol),
                    Family::V6 => crate::wire::ip::ipv6_get_l4proto(d).ok().map(|l| l.protonum),
                };
                proto == Some(if self.family == Family::V4 { IPPROTO_ICMP } else { IPPROTO_ICMPV6 })
            });
            if icmp {
                let base = self.base;
                let v = self.carrier.with(|st| {
                    if !nat::icmp_translation_needed(status, dir, manip) {
                        return nat::icmp_redirect_check(st.data(base), status);
                    }
                    nat::icmp_reply_translation(st.writable(base), status, &tuples, dir, manip)
                });
                let why = (v != NF_ACCEPT)
                    .then_some("nf_nat: ICMP error about a translated connection not translatable");
                return NatEnd::Verdict(v, why);
            }
        }
        let oif_changed = |oif: Option<u32>| {
            masq.is_some() && hook == Hook::PostRouting && dir == Direction::Original && masq != oif
        };
        let first = ctinfo == IP_CT_NEW || related;
        let target = if first && !nat::initialized(status, manip) {
            let hooks = self.hooks;
            let mut bound = false;
            for op in hooks.nat_chains(self.family, hook) {
                let OpKind::Chain(c) = &op.kind else { continue };
                let cv = self.carrier.with(|st| self.chain(c, hook, st));
                if cv.verdict & 0xff != NF_ACCEPT {
                    return NatEnd::Chain(op.clone(), cv);
                }
                if net.ct.with_conn(slot, gen, |c| nat::initialized(c.status, manip)).unwrap_or(true) {
                    bound = true;
                    break;
                }
            }
            if !bound {
                let random = || net.random();
                let env = NatEnv { ct: &net.ct, state: &net.nat, now: self.packet_now(), random: &random };
                nat::null_binding(&env, slot, gen, hook);
            }
            // The binding just made.
            net.ct.with_conn(slot, gen, |c| nat::conn_target(c, dir, manip)).flatten()
        } else {
            if oif_changed(self.oif) {
                net.ct.delete(slot, gen, self.packet_now());
                return NatEnd::Verdict(
                    NF_DROP,
                    Some("nf_nat: a masqueraded connection now leaves by another interface"),
                );
            }
            target
        };
        // `nf_nat_packet`.
        let Some(target) = target else {
            return NatEnd::Verdict(NF_ACCEPT, None);
        };
        let base = self.base;
        let ok = self.carrier.with(|st| nat::manip::manip_pkt(st.writable(base), 0, &target, manip));
        if !ok {
            return NatEnd::Verdict(NF_DROP, Some("nf_nat: the packet's headers cannot be rewritten"));
        }
        if hook == Hook::LocalOut && manip == Manip::Dst {
            // `ip_route_me_harder`: the new destination's route.
            if let Some(r) = &net.routing {
                let dst = self.carrier.with(|st| crate::wire::ip::addrs(st.data(base)).map(|(_, d)| d));
                self.oif = dst.and_then(|d| r.fib.lookup(d, None)).and_then(|route| route.dev);
            }
        }
        NatEnd::Verdict(NF_ACCEPT, None)
    }

    /// `ipv4_conntrack_defrag` / `ipv6_defrag`: a packet that already has conntrack state
    /// (loopback) passes; a fragment is held (stolen) until its datagram is whole.
    fn defrag(&self, st: &mut Skb) -> u32 {
        if st.ct.nfct != CtRef::None || st.whole.is_some() {
            return NF_ACCEPT;
        }
        let data = st.data(self.base);
        let tstamp = self.run.tstamp;
        let sweep = match self.run.clock {
            PacketClock::Shared => tstamp,
            PacketClock::Worker { horizon } => horizon.min(tstamp),
        };
        let gathered = match self.family {
            Family::V4 => self.net.defrag.ipv4_gather_at(data, tstamp, sweep),
            Family::V6 => {
                let s = self.net.sysctl();
                let lim = FragLimits {
                    timeout_ns: s.timeout_ns(SysctlKey::Frag6Timeout),
                    high_thresh: s.get(SysctlKey::Frag6HighThresh),
                    low_thresh: s.get(SysctlKey::Frag6LowThresh),
                };
                self.net.defrag.ipv6_gather_at(data, tstamp, sweep, &lim)
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

/// One packet through `net` with its state in `carrier` and external operations run by `ext`;
/// the carrier keeps the packet's reference on its entry. A packet that is not IP is dropped
/// by the receive checks (or by local out).
pub fn run_with<'a, C: Carrier>(
    net: &'a Net,
    hooks: &'a HookTable,
    run: PacketRun<'a>,
    pkt: &'a [u8],
    carrier: &'a C,
    ext: &'a mut ExternalOp<'a>,
) -> Outcome {
    let Some(family) = Family::of_packet(pkt) else {
        return Outcome::dropped("ip_rcv: not an IP packet");
    };
    Pipeline { net, hooks, base: pkt, family, run, oif: None, carrier, ext, trace: None }.go()
}

/// As [`run_with`] for a packet of a known family (`ip_rcv` is IPv4's entry point whatever
/// the bytes say: its receive checks drop what is not IPv4).
pub fn run_family<'a, C: Carrier>(
    net: &'a Net,
    hooks: &'a HookTable,
    family: Family,
    run: PacketRun<'a>,
    pkt: &'a [u8],
    carrier: &'a C,
    ext: &'a mut ExternalOp<'a>,
) -> Outcome {
    Pipeline { net, hooks, base: pkt, family, run, oif: None, carrier, ext, trace: None }.go()
}

/// One hook's operations for a packet outside any path (the create/confirm split: a caller
/// drives the hooks itself). None when the packet goes on, else how it stopped; the carrier
/// keeps the packet's reference on its entry unless it was dropped.
#[allow(clippy::too_many_arguments)]
pub fn run_hook_only<'a, C: Carrier>(
    net: &'a Net,
    hooks: &'a HookTable,
    family: Family,
    hook: Hook,
    run: PacketRun<'a>,
    pkt: &'a [u8],
    carrier: &'a C,
    ext: &'a mut ExternalOp<'a>,
) -> Option<Outcome> {
    let mut p = Pipeline { net, hooks, base: pkt, family, run, oif: None, carrier, ext, trace: None };
    match p.run_hook(hook) {
        HookEnd::Continue => None,
        HookEnd::Stop(mut o) => {
            o.ct = carrier.with(|st| st.ct);
            Some(o)
        }
    }
}

/// The NAT core's operation alone at `hook` (`nf_nat_ipv4_fn` / `nf_nat_ipv6_fn`), for a
/// packet that came in on `run.iif` and leaves by `oif`: the verdict, and why when it is not
/// NF_ACCEPT. The packet's bytes are rewritten in the carrier.
#[allow(clippy::too_many_arguments)]
pub fn nat_hook<C: Carrier>(
    net: &Net,
    hooks: &HookTable,
    family: Family,
    hook: Hook,
    run: PacketRun<'_>,
    oif: Option<u32>,
    pkt: &[u8],
    carrier: &C,
) -> (u32, Option<String>) {
    let mut ext = no_external;
    let ext: &mut ExternalOp<'_> = &mut ext;
    let mut p = Pipeline { net, hooks, base: pkt, family, run, oif, carrier, ext, trace: None };
    match p.nat_op(hook) {
        NatEnd::Verdict(v, why) => (v, why.map(str::to_string)),
        NatEnd::Chain(op, cv) => {
            let by = match (&op.kind, cv.by) {
                (OpKind::Chain(c), Decider::Rule { handle, .. }) if !c.builtin => {
                    format!("{} handle {handle}", c.name())
                }
                (OpKind::Chain(c), Decider::Policy) if !c.builtin => format!("{} policy drop", c.name()),
                _ => op.name.to_string(),
            };
            (NF_DROP, Some(cv.reason.map_or(by.clone(), |r| format!("{by}: {r}"))))
        }
    }
}

/// As [`run_with`] for a packet whose way is traced step by step into `trace` (`nfct
/// explain`).
#[allow(clippy::too_many_arguments)]
pub fn run_traced<'a, C: Carrier>(
    net: &'a Net,
    hooks: &'a HookTable,
    run: PacketRun<'a>,
    pkt: &'a [u8],
    carrier: &'a C,
    ext: &'a mut ExternalOp<'a>,
    trace: &'a RefCell<Vec<TraceStep>>,
) -> Outcome {
    let Some(family) = Family::of_packet(pkt) else {
        return Outcome::dropped("ip_rcv: not an IP packet");
    };
    Pipeline { net, hooks, base: pkt, family, run, oif: None, carrier, ext, trace: Some(trace) }.go()
}

/// One packet through `net` with no external operations, its state held here: the replay's
/// fast path. The packet leaves the stack (delivered, sent or freed) and its reference on the
/// entry goes; the outcome still says what it carried.
pub fn run_native(net: &Net, hooks: &HookTable, run: PacketRun<'_>, pkt: &[u8]) -> Outcome {
    let cell = RefCell::new(Skb::default());
    let ext: &mut ExternalOp<'_> = &mut no_external;
    let mut out = run_with(net, hooks, run, pkt, &cell, ext);
    let mut st = cell.into_inner();
    net.ct.release(&mut st.ct);
    out.data = st.whole;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetOptions;
    use crate::netfilter::nft::builtin;
    use crate::sysctl::Sysctl;
    use crate::tuple::Zone;
    use crate::uapi::{IP_CT_NEW, NFPROTO_IPV4};
    use std::net::IpAddr;

    /// Every packet hands an `Outcome` back through several calls: at 128 bytes or less it
    /// moves with a few stores, above that with a call to `memcpy` each time (two calls a
    /// packet, 35 instructions by callgrind, when it was 136).
    #[test]
    fn an_outcome_moves_without_memcpy() {
        assert!(std::mem::size_of::<Outcome>() <= 128, "{}", std::mem::size_of::<Outcome>());
    }

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

    fn run(n: &Net, ingress: Ingress, p: &[u8]) -> Outcome {
        let r = PacketRun {
            ingress,
            all_local: false,
            tstamp: 1,
            clock: PacketClock::Shared,
            iif: None,
            hint: None,
        };
        run_native(n, &n.hooks.snapshot(), r, p)
    }

    fn listed(n: &Net) -> Vec<crate::conn::ConnView> {
        n.ct.list(n.now()).into_iter().map(|x| x.2).collect()
    }

    #[test]
    fn drop_in_forward_leaves_no_entry() {
        let n = net(&[]);
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        let rule = OpKind::Chain(builtin::verdict(NF_DROP));
        let id = n.hooks.register(NFPROTO_IPV4, Hook::Forward, 0, "filter".into(), rule).unwrap();
        let out = run(&n, Ingress::Rcv, &p);
        assert_eq!((out.verdict, out.path), (NF_DROP, PathKind::Drop));
        assert_eq!(out.dropped_by.as_ref().map(|o| &*o.name), Some("filter"));
        assert_eq!(out.ct.nfct, CtRef::None);
        assert_eq!((n.ct.count(), listed(&n).len()), (0, 0));
        n.hooks.unregister(id);
        let out = run(&n, Ingress::Rcv, &p);
        assert_eq!((out.verdict, out.path), (NF_ACCEPT, PathKind::Forward));
        assert_eq!(listed(&n).len(), 1);
    }

    #[test]
    fn local_delivery_forwarding_and_loopback() {
        let n = net(&["10.0.0.2"]);
        let out = run(&n, Ingress::Rcv, &udp4([10, 0, 0, 1], [10, 0, 0, 2], 1));
        assert_eq!(out.path, PathKind::Local);
        let out = run(&n, Ingress::Rcv, &udp4([10, 0, 0, 1], [10, 0, 0, 3], 1));
        assert_eq!((out.path, out.reason), (PathKind::Drop, Some("ip_forward: TTL exceeded")));
        let out = run(&n, Ingress::LocalOut, &udp4([10, 0, 0, 2], [10, 0, 0, 9], 64));
        assert_eq!(out.path, PathKind::Output);
        let out = run(&n, Ingress::LocalOut, &udp4([10, 0, 0, 2], [127, 0, 0, 1], 64));
        assert_eq!(out.path, PathKind::Local);
        assert_eq!(out.ctinfo(), Some(IP_CT_NEW));
        // Delivered, sent out and looped back: three entries; the TTL drop left none.
        assert_eq!(listed(&n).len(), 3);
    }

    #[test]
    fn zone_template_and_marks() {
        let n = net(&[]);
        let z = Zone { id: 7, dir: Zone::DIR_BOTH };
        n.hooks
            .register(NFPROTO_IPV4, Hook::PreRouting, -300, "zone".into(), OpKind::Chain(builtin::ct_zone(z)))
            .unwrap();
        let mark = OpKind::Chain(builtin::ct_mark_set(42, u32::MAX));
        n.hooks.register(NFPROTO_IPV4, Hook::Forward, 0, "mark".into(), mark).unwrap();
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 64);
        run(&n, Ingress::Rcv, &p);
        let rows = listed(&n);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].zone, rows[0].mark), (z, 42));
        // The same tuple in zone 0 is another entry.
        let plain = net(&[]);
        run(&plain, Ingress::Rcv, &p);
        assert_eq!(listed(&plain)[0].zone, Zone::default());
    }
}
