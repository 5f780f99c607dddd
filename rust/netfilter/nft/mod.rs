//! nftables as the kernel evaluates it (`nf_tables_core.c`, `nft_*.c`), on rulesets read from
//! `nft -j list ruleset` ([`json`]): tables of families ip, ip6 and inet; base chains at a hook
//! and priority with a policy; regular chains reached by jump and goto; rules of statements
//! (matches on payload, meta, ct and fib expressions, sets and maps with concatenations and
//! intervals, verdict maps, counters, marks, zones, notrack, log, reject, and the NAT
//! statements snat, dnat, masquerade and redirect, which give a connection its binding through
//! [`crate::nat`]).
//!
//! nfct's own built-in operations (`BuiltinHook`) are small rulesets of this same engine.
//!
//! Rules reach the packet, its conntrack entry and the host's routing tables through a
//! [`PktCtx`] the IP layer fills in; this module knows no `Net`.

pub mod json;
pub mod types;

use crate::core::{Conntrack, CtRef, SkbCt};
use crate::fib::{Dev, Devices, Fib, RouteType};
use crate::nat::{self, Manip, NatEnv, NatRange, NatState};
use crate::netfilter::Family;
use crate::tuple::{Direction, Zone};
use crate::uapi::{Hook, IPS_CONFIRMED, IPS_TEMPLATE, NF_ACCEPT, NF_DROP};
use crate::wire::ip::{self, ipv4_fields, ipv6_fields};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use types::Val;

/// `NFT_JUMP_STACK_SIZE`: how deep jumps nest.
pub const JUMP_STACK: usize = 16;

/// A table's family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFamily {
    Ip,
    Ip6,
    Inet,
    /// `netdev` (only egress chains, which run after conntrack's last hook: not evaluated).
    Netdev,
}

impl TableFamily {
    pub fn name(self) -> &'static str {
        match self {
            TableFamily::Ip => "ip",
            TableFamily::Ip6 => "ip6",
            TableFamily::Inet => "inet",
            TableFamily::Netdev => "netdev",
        }
    }
}

/// A base chain's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Route,
    Nat,
}

/// What makes a chain a base chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub typ: ChainType,
    pub hook: Hook,
    pub prio: i32,
    /// NF_ACCEPT or NF_DROP.
    pub policy: u32,
}

/// A counter's packets and bytes.
#[derive(Debug, Default)]
pub struct Counter {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

impl Counter {
    fn new(packets: u64, bytes: u64) -> Counter {
        Counter { packets: AtomicU64::new(packets), bytes: AtomicU64::new(bytes) }
    }

    fn add(&self, len: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (self.packets.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// A verdict (statement or map data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    /// Jump to (or go to) the chain of this index in the table.
    Jump(usize),
    Goto(usize),
}

/// Header a payload field lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    Network,
    Transport,
}

/// A payload field: where, how many bits, and what the packet must be for it to exist (the
/// dependency nft adds: `meta nfproto`, `meta l4proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payload {
    pub base: Base,
    pub offset_bits: u32,
    pub len_bits: u32,
    pub nfproto: Option<Family>,
    pub l4proto: Option<u8>,
}

/// `meta` keys nfct evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    L4Proto,
    NfProto,
    Protocol,
    Mark,
    Iif,
    IifName,
    IifType,
    Oif,
    OifName,
    OifType,
    Length,
    PktType,
    Random,
    Cpu,
    IifGroup,
    OifGroup,
}

/// `ct` keys nfct evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKey {
    State,
    Direction,
    Status,
    Mark,
    Zone,
    Expiration,
    L3Proto,
    Protocol,
    Saddr,
    Daddr,
    ProtoSrc,
    ProtoDst,
    Id,
    Packets,
    Bytes,
}

/// What a `fib` expression returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibResult {
    Oif,
    OifName,
    Type,
}

/// `fib` flags.
pub const FIB_SADDR: u8 = 1;
pub const FIB_DADDR: u8 = 2;
pub const FIB_MARK: u8 = 4;
pub const FIB_IIF: u8 = 8;
pub const FIB_OIF: u8 = 16;
/// `NFTA_FIB_F_PRESENT`: `fib ... oif exists` / `missing`, a boolean instead of the interface.
pub const FIB_PRESENT: u8 = 32;

/// Binary operators of expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

/// An expression: evaluates to a value, or to nothing (`NFT_BREAK`: the rule does not match).
#[derive(Clone, Debug)]
pub enum Expr {
    Imm(Val),
    Payload(Payload),
    Meta(MetaKey),
    Ct {
        key: CtKey,
        dir: Option<Direction>,
    },
    Fib {
        result: FibResult,
        flags: u8,
    },
    Numgen {
        random: bool,
        modulus: u32,
        offset: u32,
        next: Arc<AtomicU64>,
    },
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Concat(Vec<Expr>),
    /// A data map lookup.
    Map(Box<Expr>, Arc<Set>),
    /// Whether an IPv6 extension header exists.
    ExtHdrExists(u8),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

/// The right side of a match.
#[derive(Clone, Debug)]
pub enum Rhs {
    Val(Val),
    Range(Val, Val),
    Set(Arc<Set>),
    /// `in` on a bit set: some bit of the mask is set.
    Bits(Val),
}

/// What a `mangle` statement sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MangleKey {
    MetaMark,
    CtMark,
    CtZone { dir: u8 },
}

/// One statement.
#[derive(Clone, Debug)]
pub enum Stmt {
    Match {
        left: Expr,
        op: CmpOp,
        right: Rhs,
    },
    Verdict(Verdict),
    Counter(Arc<Counter>),
    Mangle {
        key: MangleKey,
        value: Expr,
    },
    Notrack,
    /// `log`: counted, not printed.
    Log(Arc<Counter>),
    /// `reject`: the packet is dropped; the kernel would also send an RST or ICMP error.
    Reject,
    VMap(Expr, Arc<Set>),
    /// `snat`, `dnat`, `masquerade`, `redirect`.
    Nat(Box<NatStmt>),
}

/// Which NAT statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
    Masquerade,
    Redirect,
}

impl NatKind {
    pub fn name(self) -> &'static str {
        match self {
            NatKind::Snat => "snat",
            NatKind::Dnat => "dnat",
            NatKind::Masquerade => "masquerade",
            NatKind::Redirect => "redirect",
        }
    }

    fn manip(self) -> Manip {
        match self {
            NatKind::Snat | NatKind::Masquerade => Manip::Src,
            NatKind::Dnat | NatKind::Redirect => Manip::Dst,
        }
    }
}

/// A NAT statement (`nft_nat`, `nft_masq`, `nft_redir`): the address (or the first address of
/// a range, or a map's value, which may carry the port after the address) and the port (or
/// range), the range flags (`random`, `fully-random`, `persistent`), and the family it applies
/// to (a statement of an inet table names one; None: the packet's).
#[derive(Clone, Debug)]
pub struct NatStmt {
    pub kind: NatKind,
    pub family: Option<Family>,
    pub addr: Option<Expr>,
    pub addr_hi: Option<Expr>,
    pub port: Option<Expr>,
    pub port_hi: Option<Expr>,
    pub flags: u32,
}

/// A rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub handle: u64,
    pub stmts: Vec<Stmt>,
}

/// A chain.
#[derive(Clone, Debug)]
pub struct Chain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// One component of a set element: a value or an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    Val(Val),
    Range(Val, Val),
}

/// What a map element maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    None,
    Verdict(Verdict),
    Val(Val),
}

/// A set or map.
#[derive(Clone, Debug, Default)]
pub struct Set {
    pub name: String,
    /// Elements made of single values only, by their concatenated value.
    exact: HashMap<Val, Data>,
    /// Elements with an interval in some component, in order.
    ranges: Vec<(Vec<Comp>, Data)>,
    /// The width of each component (to split a key).
    widths: Vec<usize>,
}

impl Set {
    pub fn new(name: String, widths: Vec<usize>) -> Set {
        Set { name, exact: HashMap::new(), ranges: Vec::new(), widths }
    }

    pub fn insert(&mut self, comps: Vec<Comp>, data: Data) {
        if comps.iter().all(|c| matches!(c, Comp::Val(_))) {
            let key = comps.iter().fold(Val::default(), |k, c| match c {
                Comp::Val(v) => k.concat(v),
                Comp::Range(..) => k,
            });
            self.exact.insert(key, data);
        } else {
            self.ranges.push((comps, data));
        }
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element holding `key`, and its data.
    pub fn lookup(&self, key: &Val) -> Option<Data> {
        if let Some(d) = self.exact.get(key) {
            return Some(*d);
        }
        'elems: for (comps, d) in &self.ranges {
            let mut at = 0;
            for (c, w) in comps.iter().zip(self.widths.iter().chain(std::iter::repeat(&0))) {
                let w = match c {
                    Comp::Val(v) | Comp::Range(v, _) => (*w).max(v.len()),
                };
                let Some(part) = key.bytes().get(at..at + w) else { continue 'elems };
                let ok = match c {
                    Comp::Val(v) => part == v.bytes(),
                    Comp::Range(lo, hi) => part >= lo.bytes() && part <= hi.bytes(),
                };
                if !ok {
                    continue 'elems;
                }
                at += w;
            }
            return Some(*d);
        }
        None
    }
}

/// A compiled table.
#[derive(Clone, Debug)]
pub struct Table {
    pub family: TableFamily,
    pub name: String,
    pub chains: Vec<Chain>,
}

/// Where a counter came from, for reading it back.
#[derive(Clone, Debug)]
pub struct CounterSite {
    pub family: TableFamily,
    pub table: String,
    /// The chain and rule handle of an anonymous counter, or the name of a named one.
    pub chain: Option<String>,
    pub handle: Option<u64>,
    pub name: Option<String>,
    pub counter: Arc<Counter>,
}

/// A compiled ruleset: tables, and its counters for reading back.
#[derive(Clone, Debug, Default)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    pub counters: Vec<CounterSite>,
}

impl Ruleset {
    /// One table with one base chain of these rules and this policy (a built-in operation).
    pub fn single(name: &str, base: BaseChain, rules: Vec<Vec<Stmt>>) -> Ruleset {
        let rules =
            rules.into_iter().enumerate().map(|(i, stmts)| Rule { handle: i as u64 + 1, stmts }).collect();
        let chain = Chain { name: name.to_string(), base: Some(base), rules };
        Ruleset {
            tables: vec![Table { family: TableFamily::Inet, name: "nfct".into(), chains: vec![chain] }],
            counters: Vec::new(),
        }
    }

    /// The base chains: (table index, chain index), for registering at their hooks.
    pub fn base_chains(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (t, table) in self.tables.iter().enumerate() {
            if table.family == TableFamily::Netdev {
                continue;
            }
            for (c, chain) in table.chains.iter().enumerate() {
                if chain.base.is_some() {
                    out.push((t, c));
                }
            }
        }
        out
    }
}

/// A base chain of a ruleset, as a hook operation runs it.
#[derive(Clone, Debug)]
pub struct ChainRef {
    pub ruleset: Arc<Ruleset>,
    pub table: usize,
    pub chain: usize,
    /// A built-in operation (its name is the rule it stands for), not a ruleset's chain.
    pub builtin: bool,
}

impl ChainRef {
    pub fn table(&self) -> &Table {
        &self.ruleset.tables[self.table]
    }

    pub fn chain(&self) -> &Chain {
        &self.table().chains[self.chain]
    }

    /// Whether this is a nat chain (the NAT core runs it, on first packets only).
    pub fn is_nat(&self) -> bool {
        self.chain().base.is_some_and(|b| b.typ == ChainType::Nat)
    }

    /// The families this chain's table applies to.
    pub fn families(&self) -> &'static [Family] {
        match self.table().family {
            TableFamily::Ip => &[Family::V4],
            TableFamily::Ip6 => &[Family::V6],
            TableFamily::Inet => &[Family::V4, Family::V6],
            TableFamily::Netdev => &[],
        }
    }

    /// `FAMILY TABLE CHAIN`, as nft names a chain.
    pub fn name(&self) -> String {
        let t = self.table();
        format!("{} {} {}", t.family.name(), t.name, self.chain().name)
    }
}

/// Which rule decided a chain's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decider {
    /// The rule with this handle, in this chain (index) of the table.
    Rule { chain: usize, handle: u64 },
    /// The base chain's policy.
    Policy,
}

/// A chain's verdict on a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainVerdict {
    pub verdict: u32,
    pub by: Decider,
    pub reason: Option<&'static str>,
}

/// What rules see of the packet: its bytes from the L3 header, its family and hook, the
/// interfaces it came in on and goes out of, its mark, its conntrack state and the namespace's
/// conntrack, the host's interfaces and routing tables, and a random source (`numgen random`,
/// `meta random`: the namespace's seeded generator).
pub struct PktCtx<'a> {
    pub data: &'a [u8],
    /// The namespace's NAT mappings (NAT statements bind connections through them).
    pub nat: &'a NatState,
    pub family: Family,
    pub hook: Hook,
    pub iif: Option<&'a Dev>,
    pub oif: Option<&'a Dev>,
    pub mark: &'a mut u32,
    pub skb: &'a mut SkbCt,
    pub ct: &'a Conntrack,
    pub devs: &'a Devices,
    pub fib: Option<&'a Fib>,
    pub random: &'a dyn Fn() -> u32,
    /// The namespace's time (ns), for `ct expiration`.
    pub now: u64,
}

/// The reason a `reject` gives.
pub const REJECT_REASON: &str =
    "nft: reject (the kernel would also send a TCP reset or an ICMP error, which nfct does not generate)";

/// What a statement did.
enum Step {
    Next,
    Break,
    Verdict(Verdict),
    Stop(u32, Option<&'static str>),
}

impl ChainRef {
    /// `nft_do_chain` from this base chain: the verdict and the rule that gave it.
    pub fn eval(&self, ctx: &mut PktCtx<'_>) -> ChainVerdict {
        let table = self.table();
        let Some(base) = self.chain().base else {
            return ChainVerdict { verdict: NF_ACCEPT, by: Decider::Policy, reason: None };
        };
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let (mut chain, mut at) = (self.chain, 0usize);
        loop {
            let rules = &table.chains[chain].rules;
            let Some(rule) = rules.get(at) else {
                match stack.pop() {
                    Some((c, r)) => {
                        chain = c;
                        at = r;
                        continue;
                    }
                    None => return ChainVerdict { verdict: base.policy, by: Decider::Policy, reason: None },
                }
            };
            let by = Decider::Rule { chain, handle: rule.handle };
            at += 1;
            for stmt in &rule.stmts {
                match exec(stmt, ctx) {
                    Step::Next => continue,
                    Step::Break => break,
                    Step::Stop(v, reason) => return ChainVerdict { verdict: v, by, reason },
                    Step::Verdict(v) => match v {
                        Verdict::Accept => return ChainVerdict { verdict: NF_ACCEPT, by, reason: None },
                        Verdict::Drop => return ChainVerdict { verdict: NF_DROP, by, reason: None },
                        Verdict::Continue => break,
                        Verdict::Return => {
                            match stack.pop() {
                                Some((c, r)) => {
                                    chain = c;
                                    at = r;
                                }
                                None => {
                                    return ChainVerdict {
                                        verdict: base.policy,
                                        by: Decider::Policy,
                                        reason: None,
                                    }
                                }
                            }
                            break;
                        }
                        Verdict::Jump(c) | Verdict::Goto(c) => {
                            if matches!(v, Verdict::Jump(_)) {
                                if stack.len() >= JUMP_STACK {
                                    return ChainVerdict {
                                        verdict: NF_DROP,
                                        by,
                                        reason: Some("nft: jump stack overflow"),
                                    };
                                }
                                stack.push((chain, at));
                            }
                            chain = c;
                            at = 0;
                            break;
                        }
                    },
                }
            }
        }
    }
}

/// Executes one statement.
fn exec(stmt: &Stmt, ctx: &mut PktCtx<'_>) -> Step {
    match stmt {
        Stmt::Match { left, op, right } => {
            let Some(l) = eval(left, ctx) else { return Step::Break };
            if matches(&l, *op, right) {
                Step::Next
            } else {
                Step::Break
            }
        }
        Stmt::Verdict(v) => Step::Verdict(*v),
        Stmt::Counter(c) | Stmt::Log(c) => {
            c.add(ctx.data.len());
            Step::Next
        }
        Stmt::Mangle { key, value } => {
            let Some(v) = eval(value, ctx) else { return Step::Break };
            mangle(*key, v, ctx);
            Step::Next
        }
        Stmt::Notrack => {
            // `nft_notrack_eval`: a packet that already has a ct (a template counts) is left
            // alone.
            if ctx.skb.nfct == CtRef::None && ctx.skb.tmpl.is_none() {
                ctx.skb.nfct = CtRef::Untracked;
            }
            Step::Next
        }
        Stmt::Reject => Step::Stop(NF_DROP, Some(REJECT_REASON)),
        Stmt::VMap(key, set) => {
            let Some(k) = eval(key, ctx) else { return Step::Break };
            match set.lookup(&k) {
                Some(Data::Verdict(v)) => Step::Verdict(v),
                _ => Step::Break,
            }
        }
        Stmt::Nat(n) => nat_exec(n, ctx),
    }
}

/// `nft_nat_eval`, `nft_masq_eval`, `nft_redir_eval`: the range from the statement's
/// expressions, then `nf_nat_setup_info` (through masquerade's or redirect's choice of
/// address); the verdict it gives (NF_ACCEPT) ends the chain. A statement for the other
/// family of an inet table does nothing.
fn nat_exec(n: &NatStmt, ctx: &mut PktCtx<'_>) -> Step {
    if n.family.is_some_and(|f| f != ctx.family) {
        return Step::Next;
    }
    let CtRef::Ct { slot, gen, .. } = ctx.skb.nfct else { return Step::Next };
    let alen = if ctx.family == Family::V4 { 4 } else { 16 };
    let mut range = NatRange { flags: n.flags, ..NatRange::default() };
    if let Some(a) = &n.addr {
        let Some(lo) = eval(a, ctx) else { return Step::Break };
        let hi = match &n.addr_hi {
            Some(h) => match eval(h, ctx) {
                Some(v) => v,
                None => return Step::Break,
            },
            None => lo,
        };
        let (Some(l), Some(h)) = (lo.bytes().get(..alen), hi.bytes().get(..alen)) else { return Step::Break };
        range.min_addr[..alen].copy_from_slice(l);
        range.max_addr[..alen].copy_from_slice(h);
        range.flags |= nat::RANGE_MAP_IPS;
        // A map's value may be an address and a port (`ip daddr . tcp dport map @m`).
        if let Some(p) = lo.bytes().get(alen..alen + 2) {
            let port = u16::from_be_bytes([p[0], p[1]]);
            range.min_proto = port;
            range.max_proto = port;
            range.flags |= nat::RANGE_PROTO_SPECIFIED;
        }
    }
    if let Some(p) = &n.port {
        let port = |v: Val| -> u16 { v.as_u64() as u16 };
        let Some(lo) = eval(p, ctx).map(port) else { return Step::Break };
        let hi = match &n.port_hi {
            Some(h) => match eval(h, ctx).map(port) {
                Some(v) => v,
                None => return Step::Break,
            },
            None => lo,
        };
        range.min_proto = lo;
        range.max_proto = hi;
        range.flags |= nat::RANGE_PROTO_SPECIFIED;
    }
    let random = ctx.random;
    let env = NatEnv { ct: ctx.ct, state: ctx.nat, now: ctx.now, random };
    let verdict = match n.kind {
        NatKind::Snat | NatKind::Dnat => nat::setup_info(&env, slot, gen, &range, n.kind.manip()),
        NatKind::Masquerade => {
            // `nf_nat_masquerade_ipv4/6`: the outgoing interface's address toward the next hop.
            let Some(orig) = ctx.ct.with_conn(slot, gen, |c| c.orig) else { return Step::Next };
            if orig.src[..alen].iter().all(|&b| b == 0) {
                return Step::Verdict(Verdict::Accept);
            }
            let Some(dev) = ctx.oif else {
                return Step::Stop(
                    NF_DROP,
                    Some("masquerade: no outgoing interface (the host file gives them)"),
                );
            };
            let Some((_, dst)) = ip::addrs(ctx.data) else { return Step::Break };
            let Some(addr) = nat::masquerade_addr(dev, nat::next_hop(ctx.fib, dst)) else {
                return Step::Stop(NF_DROP, Some("masquerade: the outgoing interface has no address"));
            };
            let dev_index = dev.index;
            ctx.ct.with_conn_mut(slot, gen, |c| {
                c.ext.get_or_insert_with(Box::default).masq_index = Some(dev_index)
            });
            let r = nat::addr_range(addr, range.flags, None);
            let r = NatRange { min_proto: range.min_proto, max_proto: range.max_proto, ..r };
            nat::setup_info(&env, slot, gen, &r, Manip::Src)
        }
        NatKind::Redirect => {
            let Some((_, dst)) = ip::addrs(ctx.data) else { return Step::Break };
            let Some(addr) = nat::redirect_addr(ctx.hook, ctx.iif, dst) else {
                return Step::Stop(NF_DROP, Some("redirect: the incoming interface has no address"));
            };
            let r = nat::addr_range(addr, range.flags, None);
            let r = NatRange { min_proto: range.min_proto, max_proto: range.max_proto, ..r };
            nat::setup_info(&env, slot, gen, &r, Manip::Dst)
        }
    };
    if verdict == NF_ACCEPT {
        Step::Verdict(Verdict::Accept)
    } else {
        Step::Stop(NF_DROP, Some("nf_nat: no binding"))
    }
}

/// Whether `l op right` holds.
fn matches(l: &Val, op: CmpOp, right: &Rhs) -> bool {
    let hit = match right {
        Rhs::Val(r) => match op {
            CmpOp::Eq | CmpOp::Ne => l.bytes() == r.bytes(),
            CmpOp::Lt => l.bytes() < r.bytes(),
            CmpOp::Gt => l.bytes() > r.bytes(),
            CmpOp::Le => l.bytes() <= r.bytes(),
            CmpOp::Ge => l.bytes() >= r.bytes(),
        },
        Rhs::Range(lo, hi) => l.bytes() >= lo.bytes() && l.bytes() <= hi.bytes(),
        Rhs::Set(s) => s.lookup(l).is_some(),
        Rhs::Bits(m) => !l.bitwise(m, |a, b| a & b).is_zero(),
    };
    if op == CmpOp::Ne {
        !hit
    } else {
        hit
    }
}

/// A `mangle` statement's effect.
fn mangle(key: MangleKey, v: Val, ctx: &mut PktCtx<'_>) {
    match key {
        MangleKey::MetaMark => *ctx.mark = v.as_u64() as u32,
        MangleKey::CtMark => {
            // Only a real entry takes a mark (`nft_ct_set_eval` skips templates).
            if let CtRef::Ct { slot, gen, .. } = ctx.skb.nfct {
                ctx.ct.set_mark(slot, gen, v.as_u64() as u32, u32::MAX);
            }
        }
        MangleKey::CtZone { dir } => {
            // A template: conntrack takes the zone when it creates the entry.
            if ctx.skb.nfct == CtRef::None {
                ctx.skb.tmpl = Some(Zone { id: v.as_u64() as u16, dir });
            }
        }
    }
}

/// The protocol the packet carries and where its transport header starts (None for a later
/// fragment, which has no transport header).
fn l4(ctx: &PktCtx<'_>) -> Option<(u8, Option<usize>)> {
    match ip::get_l4proto(ctx.family.af(), ctx.data) {
        Ok(l3) => Some((l3.protonum, Some(l3.l4_off))),
        Err(_) => match ctx.family {
            Family::V4 => ipv4_fields(ctx.data).map(|h| (h.protocol, None)),
            Family::V6 => None,
        },
    }
}

/// Evaluates an expression.
fn eval(e: &Expr, ctx: &mut PktCtx<'_>) -> Option<Val> {
    match e {
        Expr::Imm(v) => Some(*v),
        Expr::Payload(p) => payload(p, ctx),
        Expr::Meta(k) => meta(*k, ctx),
        Expr::Ct { key, dir } => ct(*key, *dir, ctx),
        Expr::Fib { result, flags } => fib(*result, *flags, ctx),
        Expr::Numgen { random, modulus, offset, next } => {
            let m = (*modulus).max(1);
            let n = if *random {
                // `nft_ng_random_eval`: reciprocal_scale of a random u32.
                ((u64::from((ctx.random)()) * u64::from(m)) >> 32) as u32
            } else {
                (next.fetch_add(1, Ordering::Relaxed) % u64::from(m)) as u32
            };
            Some(Val::uint(u64::from(n.wrapping_add(*offset)), 4))
        }
        Expr::Bin(op, a, b) => {
            let (x, y) = (eval(a, ctx)?, eval(b, ctx)?);
            Some(match op {
                BinOp::And => x.bitwise(&y, |a, b| a & b),
                BinOp::Or => x.bitwise(&y, |a, b| a | b),
                BinOp::Xor => x.bitwise(&y, |a, b| a ^ b),
                BinOp::Shl => x.shift(y.as_u64() as u32, true),
                BinOp::Shr => x.shift(y.as_u64() as u32, false),
            })
        }
        Expr::Concat(parts) => {
            let mut v = Val::default();
            for p in parts {
                v = v.concat(&eval(p, ctx)?);
            }
            Some(v)
        }
        Expr::Map(key, set) => match set.lookup(&eval(key, ctx)?) {
            Some(Data::Val(v)) => Some(v),
            _ => None,
        },
        Expr::ExtHdrExists(nh) => {
            let found = ctx.family == Family::V6 && ipv6_has_exthdr(ctx.data, *nh);
            Some(Val::uint(u64::from(found), 1))
        }
    }
}

/// Whether an IPv6 packet carries extension header `want` in its chain.
fn ipv6_has_exthdr(pkt: &[u8], want: u8) -> bool {
    let Some(h) = ipv6_fields(pkt) else { return false };
    let mut nh = h.next_header;
    let mut off = 40usize;
    for _ in 0..16 {
        if nh == want {
            return true;
        }
        let len = match nh {
            0 | 43 | 60 => pkt.get(off + 1).map(|&l| (usize::from(l) + 1) * 8),
            44 => Some(8),
            51 => pkt.get(off + 1).map(|&l| (usize::from(l) + 2) * 4),
            _ => None,
        };
        let (Some(len), Some(&next)) = (len, pkt.get(off)) else { return false };
        nh = next;
        off += len;
    }
    false
}

/// Reads a payload field.
fn payload(p: &Payload, ctx: &PktCtx<'_>) -> Option<Val> {
    if p.nfproto.is_some_and(|f| f != ctx.family) {
        return None;
    }
    let start = match p.base {
        Base::Network => 0,
        Base::Transport => {
            let (proto, off) = l4(ctx)?;
            if p.l4proto.is_some_and(|want| want != proto) {
                return None;
            }
            off?
        }
    };
    let bit0 = start * 8 + p.offset_bits as usize;
    let nbits = p.len_bits as usize;
    let first = bit0 / 8;
    let last = (bit0 + nbits).div_ceil(8);
    let forwarded;
    let bytes = match forwarded_header(ctx, first, last) {
        Some(h) => {
            forwarded = h;
            forwarded.get(first..last)?
        }
        None => ctx.data.get(first..last)?,
    };
    if bit0.is_multiple_of(8) && nbits.is_multiple_of(8) {
        return Some(Val::from_bytes(bytes));
    }
    // A bit field: shift it down into the low bits of its bytes.
    let mut x: u128 = 0;
    for &b in bytes {
        x = (x << 8) | u128::from(b);
    }
    let tail = last * 8 - (bit0 + nbits);
    let v = (x >> tail) & ((1u128 << nbits) - 1);
    Some(Val::uint(v as u64, nbits.div_ceil(8)))
}

/// At FORWARD, and at POST_ROUTING of a packet the host forwards, rules see the header as
/// `ip_forward` / `ip6_forward` left it before those hooks: the TTL (hop limit) one lower and
/// the IPv4 header checksum updated to match (`ip_decrease_ttl`). Seen in the harness: `ip ttl
/// 63` and `ip6 hoplimit 63` match packets sent with 64 in a forward chain. Returns the
/// header so changed when bytes `first..last` touch it.
fn forwarded_header(ctx: &PktCtx<'_>, first: usize, last: usize) -> Option<Vec<u8>> {
    let forwarded = ctx.hook == Hook::Forward || (ctx.hook == Hook::PostRouting && ctx.iif.is_some());
    if !forwarded {
        return None;
    }
    let (ttl_at, end) = match ctx.family {
        Family::V4 => (8, 12),
        Family::V6 => (7, 8),
    };
    if first >= end || last <= ttl_at || ctx.data.len() < end || ctx.data[ttl_at] == 0 {
        return None;
    }
    let mut h = ctx.data[..last.max(end).min(ctx.data.len())].to_vec();
    h[ttl_at] -= 1;
    if ctx.family == Family::V4 {
        // `ip_decrease_ttl` as a little-endian machine computes it: the checksum word loaded
        // as it lies in memory, plus htons(0x0100), with its end-around carry.
        let check = u32::from(u16::from_le_bytes([h[10], h[11]])) + 1;
        let check = (check + u32::from(check >= 0xffff)) as u16;
        h[10..12].copy_from_slice(&check.to_le_bytes());
    }
    Some(h)
}

/// The name of an interface as a register holds it (16 bytes, NUL-padded).
fn ifname(d: &Dev) -> Val {
    let mut b = [0u8; 16];
    let n = d.name.len().min(15);
    b[..n].copy_from_slice(&d.name.as_bytes()[..n]);
    Val::from_bytes(&b)
}

/// Reads a meta key.
fn meta(k: MetaKey, ctx: &PktCtx<'_>) -> Option<Val> {
    Some(match k {
        MetaKey::L4Proto => Val::uint(u64::from(l4(ctx)?.0), 1),
        MetaKey::NfProto => Val::uint(u64::from(ctx.family.nfproto()), 1),
        MetaKey::Protocol => Val::uint(if ctx.family == Family::V4 { 0x0800 } else { 0x86dd }, 2),
        MetaKey::Mark => Val::uint(u64::from(*ctx.mark), 4),
        // No interface (none in yet at LOCAL_OUT, none out yet at PRE_ROUTING and LOCAL_IN):
        // index 0 and the empty name (`nft_meta_store_ifindex`, `nft_meta_store_ifname`); the
        // type is no match.
        MetaKey::Iif => Val::uint(u64::from(ctx.iif.map_or(0, |d| d.index)), 4),
        MetaKey::IifName => ctx.iif.map_or(Val::from_bytes(&[0u8; 16]), ifname),
        MetaKey::IifType => Val::uint(u64::from(ctx.iif?.link_type), 2),
        MetaKey::Oif => Val::uint(u64::from(ctx.oif.map_or(0, |d| d.index)), 4),
        MetaKey::OifName => ctx.oif.map_or(Val::from_bytes(&[0u8; 16]), ifname),
        MetaKey::OifType => Val::uint(u64::from(ctx.oif?.link_type), 2),
        MetaKey::Length => Val::uint(ctx.data.len() as u64, 4),
        MetaKey::PktType => {
            let t = match ip::addrs(ctx.data)?.1 {
                IpAddr::V4(a) if a.is_broadcast() => 1,
                a if a.is_multicast() => 2,
                _ => 0,
            };
            Val::uint(t, 1)
        }
        MetaKey::Random => Val::uint(u64::from((ctx.random)()), 4),
        MetaKey::Cpu | MetaKey::IifGroup | MetaKey::OifGroup => Val::uint(0, 4),
    })
}

/// Reads a ct key (`nft_ct_get_eval`): the state always; anything else only with an entry
/// (or a template, for the keys a template has).
fn ct(k: CtKey, dir: Option<Direction>, ctx: &PktCtx<'_>) -> Option<Val> {
    let skb = &*ctx.skb;
    if k == CtKey::State {
        return Some(Val::uint(u64::from(skb.state().bit()), 4));
    }
    let (slot, gen, ctinfo) = match skb.nfct {
        CtRef::Ct { slot, gen, ctinfo } => (slot, gen, ctinfo),
        CtRef::None => {
            // A template (`ct zone set` before conntrack) is a ct to later rules.
            let z = skb.tmpl?;
            return match k {
                CtKey::Zone => Some(Val::uint(u64::from(z.id), 2)),
                CtKey::Mark => Some(Val::uint(0, 4)),
                CtKey::Status => Some(Val::uint(u64::from(IPS_TEMPLATE | IPS_CONFIRMED), 4)),
                _ => None,
            };
        }
        CtRef::Untracked => return None,
    };
    let now = ctx.now;
    ctx.ct.with_conn(slot, gen, |c| {
        let pkt_dir =
            if ctinfo >= crate::uapi::IP_CT_IS_REPLY { Direction::Reply } else { Direction::Original };
        let t = c.tuple(dir.unwrap_or(Direction::Original));
        let addr = |a: &[u8; 16]| {
            if t.l3num == crate::uapi::AF_INET {
                Val::from_bytes(&a[..4])
            } else {
                Val::from_bytes(a)
            }
        };
        let acct = |f: fn(&crate::conn::Counter) -> u64| {
            let a = c.acct()?;
            Some(Val::uint(
                match dir {
                    Some(d) => f(&a[d.index()]),
                    None => f(&a[0]) + f(&a[1]),
                },
                8,
            ))
        };
        Some(match k {
            // Read above, before any entry is looked at.
            CtKey::State => return None,
            CtKey::Direction => Val::uint(pkt_dir as u64, 1),
            CtKey::Status => Val::uint(u64::from(c.status), 4),
            CtKey::Mark => Val::uint(u64::from(c.mark), 4),
            CtKey::Zone => Val::uint(u64::from(dir.map_or(c.zone.id, |d| c.zone.id_for(d))), 2),
            CtKey::Expiration => Val::uint(c.remaining(now) / 1_000_000, 4),
            CtKey::L3Proto => Val::uint(u64::from(t.l3num), 1),
            CtKey::Protocol => Val::uint(u64::from(t.protonum), 1),
            CtKey::Saddr => addr(&t.src),
            CtKey::Daddr => addr(&t.dst),
            CtKey::ProtoSrc => Val::uint(u64::from(t.src_u), 2),
            CtKey::ProtoDst => Val::uint(u64::from(t.dst_u), 2),
            CtKey::Id => Val::uint(u64::from(c.id), 4),
            CtKey::Packets => acct(|x| x.packets)?,
            CtKey::Bytes => acct(|x| x.bytes)?,
        })
    })?
}

/// A `fib` expression (`nft_fib4_eval`, `nft_fib6_eval`, `nft_fib_eval_type`).
///
/// What the live kernel (6.18) was seen to do, and this follows: `oif` finds the interface of
/// the route to the address, and nothing for a local route (IPv4 and IPv6), for a
/// blackhole/unreachable/prohibit route or no route at all, or for a route out of another
/// interface than the one asked for (`. iif`, `. oif`); broadcast and multicast routes give
/// their interface. An IPv4 packet from 0.0.0.0 to the limited broadcast or to 224.0.0.0/24,
/// an ICMPv6 one from :: to a link-local address at PRE_ROUTING, and a packet that came in on
/// loopback at PRE_ROUTING give the input interface. IPv4 `type` asks the local table only (a
/// blackhole destination is `unicast`); IPv6 `type` follows the route (`blackhole`,
/// `prohibit`, `unreachable`), and is `unspec` for ::.
fn fib(result: FibResult, flags: u8, ctx: &PktCtx<'_>) -> Option<Val> {
    let (src, dst) = ip::addrs(ctx.data)?;
    let a = if flags & FIB_SADDR != 0 { src } else { dst };
    let Some(fib) = ctx.fib else {
        // No routing table (nfct's default router): every unicast address routes out.
        return Some(match result {
            FibResult::Type => Val::uint(if a.is_multicast() { 5 } else { 1 }, 4),
            _ if flags & FIB_PRESENT != 0 => Val::uint(u64::from(!a.is_multicast()), 1),
            FibResult::Oif => Val::uint(0, 4),
            FibResult::OifName => Val::from_bytes(&[0u8; 16]),
        });
    };
    let dev = if flags & FIB_IIF != 0 {
        ctx.iif.map(|d| d.index)
    } else if flags & FIB_OIF != 0 {
        ctx.oif.map(|d| d.index)
    } else {
        None
    };
    let store = |d: Option<&Dev>| -> Val {
        if flags & FIB_PRESENT != 0 {
            // `nft_fib_store_result` with NFTA_FIB_F_PRESENT: whether an interface was found.
            return Val::uint(u64::from(d.is_some()), 1);
        }
        match result {
            FibResult::OifName => d.map_or(Val::from_bytes(&[0u8; 16]), ifname),
            _ => Val::uint(u64::from(d.map_or(0, |d| d.index)), 4),
        }
    };
    if result == FibResult::Type {
        let t = match a {
            IpAddr::V4(_) => fib.addr_type(a, dev).rtn(),
            // RTN_UNSPEC for ::.
            IpAddr::V6(v) if v.is_unspecified() => 0,
            IpAddr::V6(_) => fib6_type(fib, a, dev).rtn(),
        };
        return Some(Val::uint(u64::from(t), 4));
    }
    // Answered with the input interface, without a lookup: a packet that came in on
    // loopback, an IPv4 one from 0.0.0.0 to the limited broadcast or 224.0.0.0/24, and at
    // PRE_ROUTING an ICMPv6 one from :: to a link-local address (duplicate address detection).
    let shortcut = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            s.is_unspecified() && (d.is_broadcast() || d.octets()[..3] == [224, 0, 0])
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let o = d.octets();
            let link_local = (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || (o[0] == 0xff && o[1] & 0x0f == 2);
            ctx.hook == Hook::PreRouting
                && s.is_unspecified()
                && link_local
                && l4(ctx).is_some_and(|(proto, _)| proto == 58)
        }
        _ => false,
    };
    if shortcut || (ctx.hook == Hook::PreRouting && ctx.iif.is_some_and(|d| d.loopback)) {
        return Some(store(ctx.iif));
    }
    // IPv6 link-local scope: the lookup is made out of the interface asked for.
    let route = fib.lookup(a, if link_scope(a) { dev } else { None });
    let out = route.filter(|r| match r.typ {
        RouteType::Unicast | RouteType::Broadcast | RouteType::Multicast => true,
        RouteType::Anycast => a.is_ipv4(),
        _ => false,
    });
    let idx = out.and_then(|r| r.dev).filter(|i| dev.is_none() || Some(*i) == dev);
    Some(store(idx.and_then(|i| ctx.devs.by_index(i))))
}

/// Whether an IPv6 address has link-local scope (unicast fe80::/10, or multicast of scope 1-2).
fn link_scope(a: IpAddr) -> bool {
    match a {
        IpAddr::V6(v) => {
            let o = v.octets();
            (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || (o[0] == 0xff && o[1] & 0x0f <= 2)
        }
        IpAddr::V4(_) => false,
    }
}

/// `fib ... type` of an IPv6 address (`__nft_fib6_eval_type`): local when it is one of the
/// interface's own (with `. iif`/`. oif`), else what the route to it says.
fn fib6_type(fib: &Fib, a: IpAddr, dev: Option<u32>) -> RouteType {
    if dev.is_some() && fib.addr_type(a, dev) == RouteType::Local {
        return RouteType::Local;
    }
    let typ = fib.lookup(a, if link_scope(a) { dev } else { None }).map(|r| r.typ);
    match typ {
        None | Some(RouteType::Unreachable | RouteType::Throw) => RouteType::Unreachable,
        Some(RouteType::Blackhole) => RouteType::Blackhole,
        Some(RouteType::Prohibit) => RouteType::Prohibit,
        Some(RouteType::Anycast) => RouteType::Anycast,
        Some(RouteType::Local) if dev.is_none() => RouteType::Local,
        _ if a.is_multicast() => RouteType::Multicast,
        _ if a.is_loopback() => RouteType::Local,
        _ => RouteType::Unicast,
    }
}

/// nfct's built-in operations, each a one-chain ruleset of this engine standing for the nft
/// rule in its name.
pub mod builtin {
    use super::*;
    use crate::uapi::NF_CT_STATE_INVALID_BIT;

    fn chain(policy: u32, rules: Vec<Vec<Stmt>>) -> ChainRef {
        let base = BaseChain { typ: ChainType::Filter, hook: Hook::PreRouting, prio: 0, policy };
        ChainRef {
            ruleset: Arc::new(Ruleset::single("builtin", base, rules)),
            table: 0,
            chain: 0,
            builtin: true,
        }
    }

    fn verdict_of(v: u32) -> Verdict {
        if v == NF_DROP {
            Verdict::Drop
        } else {
            Verdict::Accept
        }
    }

    /// Always `v` (NF_ACCEPT or NF_DROP): a policy.
    pub fn verdict(v: u32) -> ChainRef {
        chain(v, Vec::new())
    }

    /// `ct state {MASK} HIT`, policy `miss`.
    pub fn ct_state(mask: u32, hit: u32, miss: u32) -> ChainRef {
        let m = Stmt::Match {
            left: Expr::Ct { key: CtKey::State, dir: None },
            op: CmpOp::Eq,
            right: Rhs::Bits(Val::uint(u64::from(mask), 4)),
        };
        chain(miss, vec![vec![m, Stmt::Verdict(verdict_of(hit))]])
    }

    /// `ct state invalid drop`.
    pub fn drop_invalid() -> ChainRef {
        ct_state(NF_CT_STATE_INVALID_BIT, NF_DROP, NF_ACCEPT)
    }

    /// `ct zone set ID` (a template, before conntrack).
    pub fn ct_zone(zone: Zone) -> ChainRef {
        let set = Stmt::Mangle {
            key: MangleKey::CtZone { dir: zone.dir },
            value: Expr::Imm(Val::uint(u64::from(zone.id), 2)),
        };
        chain(NF_ACCEPT, vec![vec![set]])
    }

    /// `ct mark set ct mark and ~MASK or VALUE` (the bits of `mask` take `value`'s).
    pub fn ct_mark_set(value: u32, mask: u32) -> ChainRef {
        let kept = Expr::Bin(
            BinOp::And,
            Box::new(Expr::Ct { key: CtKey::Mark, dir: None }),
            Box::new(Expr::Imm(Val::uint(u64::from(!mask), 4))),
        );
        let v =
            Expr::Bin(BinOp::Or, Box::new(kept), Box::new(Expr::Imm(Val::uint(u64::from(value & mask), 4))));
        chain(NF_ACCEPT, vec![vec![Stmt::Mangle { key: MangleKey::CtMark, value: v }]])
    }

    /// `ct mark and MASK == VALUE HIT`, policy `miss`.
    pub fn ct_mark(value: u32, mask: u32, hit: u32, miss: u32) -> ChainRef {
        let left = Expr::Bin(
            BinOp::And,
            Box::new(Expr::Ct { key: CtKey::Mark, dir: None }),
            Box::new(Expr::Imm(Val::uint(u64::from(mask), 4))),
        );
        let m = Stmt::Match { left, op: CmpOp::Eq, right: Rhs::Val(Val::uint(u64::from(value & mask), 4)) };
        chain(miss, vec![vec![m, Stmt::Verdict(verdict_of(hit))]])
    }

    /// `notrack`.
    pub fn notrack() -> ChainRef {
        chain(NF_ACCEPT, vec![vec![Stmt::Notrack]])
    }

    /// A nat chain of one NAT statement: `snat`/`dnat to ADDR[-ADDR_HI][:PORT[-PORT_HI]]`
    /// (an address of the packet's family: the statement applies to that family only),
    /// `masquerade [to :PORTS]`, `redirect [to :PORTS]`, with range flags.
    pub fn nat(
        kind: NatKind,
        addrs: Option<(IpAddr, IpAddr)>,
        ports: Option<(u16, u16)>,
        flags: u32,
    ) -> ChainRef {
        let imm = |a: IpAddr| match a {
            IpAddr::V4(v) => Val::from_bytes(&v.octets()),
            IpAddr::V6(v) => Val::from_bytes(&v.octets()),
        };
        let family = addrs.map(|(a, _)| if a.is_ipv4() { Family::V4 } else { Family::V6 });
        let stmt = NatStmt {
            kind,
            family,
            addr: addrs.map(|(a, _)| Expr::Imm(imm(a))),
            addr_hi: addrs.map(|(_, b)| Expr::Imm(imm(b))),
            port: ports.map(|(p, _)| Expr::Imm(Val::uint(u64::from(p), 2))),
            port_hi: ports.map(|(_, p)| Expr::Imm(Val::uint(u64::from(p), 2))),
            flags,
        };
        let hook = match kind {
            NatKind::Snat | NatKind::Masquerade => Hook::PostRouting,
            NatKind::Dnat | NatKind::Redirect => Hook::PreRouting,
        };
        let base = BaseChain { typ: ChainType::Nat, hook, prio: 0, policy: NF_ACCEPT };
        ChainRef {
            ruleset: Arc::new(Ruleset::single("builtin", base, vec![vec![Stmt::Nat(Box::new(stmt))]])),
            table: 0,
            chain: 0,
            builtin: true,
        }
    }
}

#[cfg(test)]
mod tests;
