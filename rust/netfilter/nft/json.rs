//! Reading a ruleset as `nft -j list ruleset` prints it (libnftables-json(5)) and compiling it
//! for evaluation. What nfct does not evaluate is refused with one error naming the table,
//! chain, rule handle and expression, never skipped.

use super::types::{Datatype, Literal, Val};
use super::{
    Base, BaseChain, BinOp, Chain, ChainType, CmpOp, Comp, Counter, CounterSite, CtKey, Data, Expr,
    FibResult, MangleKey, MetaKey, NatKind, NatStmt, Payload, Rhs, Rule, Ruleset, Set, Stmt, Table,
    TableFamily, Verdict, FIB_DADDR, FIB_IIF, FIB_MARK, FIB_OIF, FIB_PRESENT, FIB_SADDR,
};
use crate::netfilter::Family;
use crate::tuple::{Direction, Zone};
use crate::uapi::{Hook, NF_ACCEPT, NF_DROP};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// A ruleset nfct cannot read or does not evaluate: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftError {
    /// `FAMILY TABLE [CHAIN [handle N]]`, or empty for the document itself.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for NftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "ruleset: {}", self.message)
        } else {
            write!(f, "ruleset: {}: {}", self.at, self.message)
        }
    }
}

impl std::error::Error for NftError {}

type Res<T> = Result<T, String>;

/// A short rendering of a JSON value for messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 160 {
        format!(
            "{}...",
            &s[..s.char_indices().take_while(|(i, _)| *i < 157).last().map_or(0, |(i, c)| i + c.len_utf8())]
        )
    } else {
        s
    }
}

/// The single key of a JSON object like `{"accept": null}`.
fn single(v: &Value) -> Option<(&str, &Value)> {
    let o = v.as_object()?;
    if o.len() != 1 {
        return None;
    }
    o.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn str_field<'a>(o: &'a Value, k: &str) -> Res<&'a str> {
    o.get(k).and_then(Value::as_str).ok_or_else(|| format!("missing \"{k}\" in {}", show(o)))
}

fn u64_field(o: &Value, k: &str) -> Option<u64> {
    o.get(k).and_then(Value::as_u64)
}

/// A set's key datatypes, and a map's data datatypes.
type SetTypes = (Vec<Datatype>, Option<Vec<Datatype>>);

/// One table while compiling: its chains by name, sets by name, named counters.
struct TableBuild {
    family: TableFamily,
    name: String,
    chains: Vec<Chain>,
    chain_ix: HashMap<String, usize>,
    sets: HashMap<String, Arc<Set>>,
    set_types: HashMap<String, SetTypes>,
    counters: HashMap<String, Arc<Counter>>,
}

/// The family of a table or chain object.
fn family_of(o: &Value) -> Res<&str> {
    str_field(o, "family")
}

fn table_family(f: &str) -> Option<TableFamily> {
    Some(match f {
        "ip" => TableFamily::Ip,
        "ip6" => TableFamily::Ip6,
        "inet" => TableFamily::Inet,
        "netdev" => TableFamily::Netdev,
        _ => return None,
    })
}

/// Reads `nft -j list ruleset` output.
pub fn parse(text: &str) -> Result<Ruleset, NftError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| NftError { at: String::new(), message: format!("not JSON: {e}") })?;
    compile(&doc)
}

thread_local! {
    /// The host's interfaces (name to ifindex) while [`compile_for`] runs: `nft -j` prints an
    /// `iface_index` value (`meta iif "eth0"`, `fib saddr oif "eth0"`, a set of them) as the
    /// interface's name, which the kernel resolved to its index when the rule was loaded.
    static IFINDEX: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Compiles a parsed `nft -j` document for a host with these interfaces (name, ifindex).
pub fn compile_for(doc: &Value, ifaces: &[(String, u32)]) -> Result<Ruleset, NftError> {
    IFINDEX.with(|m| *m.borrow_mut() = ifaces.iter().cloned().collect());
    let out = compile(doc);
    IFINDEX.with(|m| m.borrow_mut().clear());
    out
}

/// Compiles a parsed `nft -j` document (interface names in `iface_index` values resolve only
/// through [`compile_for`]).
pub fn compile(doc: &Value) -> Result<Ruleset, NftError> {
    let top = |m: String| NftError { at: String::new(), message: m };
    let objs = doc
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| top("expected {\"nftables\": [...]} as `nft -j list ruleset` prints it".into()))?;
    let mut tables: Vec<TableBuild> = Vec::new();
    let key = |f: &str, n: &str| format!("{f} {n}");
    let mut by_key: HashMap<String, usize> = HashMap::new();
    let mut sites: Vec<CounterSite> = Vec::new();
    // Pass 1: tables, chains, sets, named counters (rules refer to them).
    for o in objs {
        let Some((kind, body)) = single(o) else { return Err(top(format!("unexpected object {}", show(o)))) };
        match kind {
            "metainfo" => {}
            "table" => {
                let (f, n) = (family_of(body).map_err(top)?, str_field(body, "name").map_err(top)?);
                let Some(family) = table_family(f) else {
                    return Err(NftError {
                        at: key(f, n),
                        message: format!("tables of family {f} are not modelled (ip, ip6, inet only)"),
                    });
                };
                by_key.insert(key(f, n), tables.len());
                tables.push(TableBuild {
                    family,
                    name: n.to_string(),
                    chains: Vec::new(),
                    chain_ix: HashMap::new(),
                    sets: HashMap::new(),
                    set_types: HashMap::new(),
                    counters: HashMap::new(),
                });
            }
            "chain" => {
                let t = table_of(&mut tables, &by_key, body)?;
                let at = format!("{} {}", t.family.name(), t.name);
                let name = str_field(body, "name").map_err(|m| NftError { at: at.clone(), message: m })?;
                let at = format!("{at} {name}");
                let base = base_chain(t.family, body).map_err(|m| NftError { at, message: m })?;
                t.chain_ix.insert(name.to_string(), t.chains.len());
                t.chains.push(Chain { name: name.to_string(), base, rules: Vec::new() });
            }
            // After every chain is known (below): a verdict map's elements jump to chains, and
            // nft lists sets and maps before the chains of their table.
            "set" | "map" => {}
            "counter" => {
                let t = table_of(&mut tables, &by_key, body)?;
                let name = str_field(body, "name").map_err(top)?;
                let c = Arc::new(Counter::new(
                    u64_field(body, "packets").unwrap_or(0),
                    u64_field(body, "bytes").unwrap_or(0),
                ));
                sites.push(CounterSite {
                    family: t.family,
                    table: t.name.clone(),
                    chain: None,
                    handle: None,
                    name: Some(name.to_string()),
                    counter: c.clone(),
                });
                t.counters.insert(name.to_string(), c);
            }
            "rule" => {}
            other => {
                let at = match (
                    body.get("family").and_then(Value::as_str),
                    body.get("table").and_then(Value::as_str),
                ) {
                    (Some(f), Some(t)) => key(f, t),
                    _ => String::new(),
                };
                let name = body.get("name").and_then(Value::as_str).unwrap_or("?");
                return Err(NftError { at, message: format!("{other} objects ({name}) are not modelled") });
            }
        }
    }
    for o in objs {
        let Some((kind @ ("set" | "map"), body)) = single(o) else { continue };
        let t = table_of(&mut tables, &by_key, body)?;
        let at = format!("{} {}", t.family.name(), t.name);
        let (name, set, types) =
            named_set(kind == "map", body, t).map_err(|m| NftError { at: at.clone(), message: m })?;
        t.set_types.insert(name.clone(), types);
        t.sets.insert(name, Arc::new(set));
    }
    // Pass 2: rules, in order.
    for o in objs {
        let Some(("rule", body)) = single(o) else { continue };
        let t = table_of(&mut tables, &by_key, body)?;
        let chain = str_field(body, "chain").map_err(top)?;
        let handle = u64_field(body, "handle").unwrap_or(0);
        let at = format!("{} {} {chain} handle {handle}", t.family.name(), t.name);
        let Some(&ci) = t.chain_ix.get(chain) else {
            return Err(NftError { at, message: format!("rule of an unknown chain {chain}") });
        };
        let exprs = body
            .get("expr")
            .and_then(Value::as_array)
            .ok_or_else(|| NftError { at: at.clone(), message: "rule without \"expr\"".into() })?;
        let mut stmts = Vec::new();
        for e in exprs {
            let s = stmt(e, t, &mut sites, chain, handle)
                .map_err(|m| NftError { at: at.clone(), message: format!("{m} (in {})", show(e)) })?;
            stmts.push(s);
        }
        t.chains[ci].rules.push(Rule { handle, stmts });
    }
    for t in &tables {
        if t.family == TableFamily::Netdev {
            for c in &t.chains {
                if c.base.is_some_and(|b| b.hook != Hook::PostRouting)
                    || !c.rules.is_empty() && c.base.is_none()
                {
                    return Err(NftError {
                        at: format!("netdev {} {}", t.name, c.name),
                        message: "netdev chains are not modelled (egress ones are, as after conntrack)"
                            .into(),
                    });
                }
            }
        }
    }
    Ok(Ruleset {
        tables: tables
            .into_iter()
            .map(|t| Table { family: t.family, name: t.name, chains: t.chains })
            .collect(),
        counters: sites,
    })
}

/// The table an object belongs to.
fn table_of<'a>(
    tables: &'a mut [TableBuild],
    by_key: &HashMap<String, usize>,
    body: &Value,
) -> Result<&'a mut TableBuild, NftError> {
    let f = family_of(body).map_err(|m| NftError { at: String::new(), message: m })?;
    let t = str_field(body, "table").map_err(|m| NftError { at: String::new(), message: m })?;
    let key = format!("{f} {t}");
    match by_key.get(&key) {
        Some(&i) => Ok(&mut tables[i]),
        None => Err(NftError { at: key, message: "an object of a table that is not listed".into() }),
    }
}

/// A chain's hook, type, priority and policy, if it is a base chain.
fn base_chain(family: TableFamily, o: &Value) -> Res<Option<BaseChain>> {
    let Some(hook) = o.get("hook").and_then(Value::as_str) else { return Ok(None) };
    let hook = match (family, hook) {
        (TableFamily::Netdev, "egress") => Hook::PostRouting,
        (TableFamily::Netdev, h) => return Err(format!("netdev {h} chains are not modelled")),
        (_, "prerouting") => Hook::PreRouting,
        (_, "input") => Hook::LocalIn,
        (_, "forward") => Hook::Forward,
        (_, "output") => Hook::LocalOut,
        (_, "postrouting") => Hook::PostRouting,
        (_, h) => return Err(format!("hook {h} is not an inet hook")),
    };
    let typ = match o.get("type").and_then(Value::as_str).unwrap_or("filter") {
        "filter" => ChainType::Filter,
        "route" => ChainType::Route,
        "nat" => ChainType::Nat,
        t => return Err(format!("chain type {t} is not modelled")),
    };
    if typ == ChainType::Nat && hook == Hook::Forward {
        // nft_chain_nat hooks prerouting, input, output and postrouting only: nft's `type nat
        // hook forward` fails with EOPNOTSUPP (observed on 6.18), so no host has one.
        return Err("a nat chain at forward: the kernel has nat chains at prerouting, input, output and \
             postrouting only"
            .into());
    }
    let prio = o
        .get("prio")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| format!("base chain without a numeric \"prio\": {}", show(o)))?;
    let policy = match o.get("policy").and_then(Value::as_str).unwrap_or("accept") {
        "accept" => NF_ACCEPT,
        "drop" => NF_DROP,
        p => return Err(format!("policy {p} is not accept or drop")),
    };
    Ok(Some(BaseChain { typ, hook, prio, policy }))
}

/// A set's `type` (or a map's `map`): one datatype name or a list of them (a concatenation).
fn types_of(v: &Value) -> Res<Vec<Datatype>> {
    let one = |s: &Value| -> Res<Datatype> {
        let name = s.as_str().ok_or_else(|| format!("set type {} is not a name", show(s)))?;
        Datatype::from_set_type(name).ok_or_else(|| format!("set type {name} is not modelled"))
    };
    match v {
        Value::Array(a) => a.iter().map(one).collect(),
        Value::String(s) if s.contains(" . ") => {
            s.split(" . ").map(|x| one(&Value::String(x.into()))).collect()
        }
        s => Ok(vec![one(s)?]),
    }
}

/// A named set or map with its elements.
fn named_set(is_map: bool, o: &Value, t: &TableBuild) -> Res<(String, Set, SetTypes)> {
    let name = str_field(o, "name")?.to_string();
    let key_types = types_of(o.get("type").ok_or_else(|| format!("set {name} without \"type\""))?)
        .map_err(|m| format!("set {name}: {m}"))?;
    let data_types = if is_map {
        let m = o.get("map").ok_or_else(|| format!("map {name} without \"map\""))?;
        Some(types_of(m).map_err(|m| format!("map {name}: {m}"))?)
    } else {
        None
    };
    if let Some(flags) = o.get("flags").and_then(Value::as_array) {
        for f in flags.iter().filter_map(Value::as_str) {
            if !matches!(f, "interval" | "constant") {
                return Err(format!("set {name}: flag {f} is not modelled (static sets only)"));
            }
        }
    }
    let mut set = Set::new(name.clone(), key_types.iter().map(|d| d.width()).collect());
    if let Some(elems) = o.get("elem").and_then(Value::as_array) {
        for e in elems {
            let (k, d) = if is_map {
                match e.as_array().map(Vec::as_slice) {
                    Some([k, d]) => (k, Some(d)),
                    _ => return Err(format!("map {name}: element {} is not a [key, data] pair", show(e))),
                }
            } else {
                (e, None)
            };
            let comps = element(k, &key_types).map_err(|m| format!("set {name}: {m}"))?;
            let data = match (d, &data_types) {
                (Some(d), Some(dt)) => map_data(d, dt, t).map_err(|m| format!("map {name}: {m}"))?,
                _ => Data::None,
            };
            set.insert(comps, data);
        }
    }
    Ok((name, set, (key_types, data_types)))
}

/// A set element's components, read by the key's datatypes.
fn element(v: &Value, types: &[Datatype]) -> Res<Vec<Comp>> {
    let v = match v.get("elem") {
        Some(e) => e.get("val").ok_or_else(|| format!("element {} without \"val\"", show(v)))?,
        None => v,
    };
    if let Some(parts) = v.get("concat").and_then(Value::as_array) {
        if parts.len() != types.len() {
            return Err(format!("element {} does not have {} parts", show(v), types.len()));
        }
        return parts.iter().zip(types).map(|(p, d)| comp(p, *d)).collect();
    }
    match types {
        [d] => Ok(vec![comp(v, *d)?]),
        _ => Err(format!("element {} of a concatenated set is not a concat", show(v))),
    }
}

/// One component: a value, a range or a prefix.
fn comp(v: &Value, d: Datatype) -> Res<Comp> {
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        let [lo, hi] = r.as_slice() else { return Err(format!("range {} is not two values", show(v))) };
        return Ok(Comp::Range(lit(lo, d)?, lit(hi, d)?));
    }
    if let Some(p) = v.get("prefix") {
        let (lo, hi) = prefix(p, d)?;
        return Ok(Comp::Range(lo, hi));
    }
    Ok(Comp::Val(lit(v, d)?))
}

/// A prefix as its lowest and highest addresses.
fn prefix(p: &Value, d: Datatype) -> Res<(Val, Val)> {
    let addr = lit(p.get("addr").ok_or_else(|| format!("prefix {} without addr", show(p)))?, d)?;
    let len = p.get("len").and_then(Value::as_u64).ok_or_else(|| format!("prefix {} without len", show(p)))?
        as usize;
    let bits = addr.len() * 8;
    if len > bits {
        return Err(format!("prefix length {len} is longer than the address"));
    }
    let mut lo = addr.bytes().to_vec();
    let mut hi = addr.bytes().to_vec();
    for i in len..bits {
        lo[i / 8] &= !(0x80 >> (i % 8));
        hi[i / 8] |= 0x80 >> (i % 8);
    }
    Ok((Val::from_bytes(&lo), Val::from_bytes(&hi)))
}

/// A literal (number, string, boolean, or a list of flags ORed) of datatype `d`.
fn lit(v: &Value, d: Datatype) -> Res<Val> {
    let bad = || format!("{} is not a {d:?} value", show(v));
    if let (Datatype::IfIndex, Value::String(name)) = (d, v) {
        if super::types::parse_num(name).is_none() {
            let index = IFINDEX.with(|m| m.borrow().get(name.as_str()).copied());
            return index
                .map(|i| Val::uint(u64::from(i), 4))
                .ok_or_else(|| format!("interface {name:?} is not one of the host's (its \"addr\" part)"));
        }
    }
    match v {
        Value::Number(n) => d.literal(&Literal::Num(n.as_u64().ok_or_else(bad)?)).ok_or_else(bad),
        Value::String(s) => d.literal(&Literal::Str(s)).ok_or_else(bad),
        Value::Bool(b) => d.literal(&Literal::Bool(*b)).ok_or_else(bad),
        Value::Array(a) if d.is_bitmask() || matches!(d, Datatype::Mark | Datatype::Integer(_)) => {
            let mut acc = Val::uint(0, d.width());
            for x in a {
                acc = acc.bitwise(&lit(x, d)?, |a, b| a | b);
            }
            Ok(acc)
        }
        _ => {
            if let Some(("|", Value::Array(a))) = single(v) {
                return lit(&Value::Array(a.clone()), d);
            }
            Err(bad())
        }
    }
}

/// A map element's data.
fn map_data(v: &Value, types: &[Datatype], t: &TableBuild) -> Res<Data> {
    if types == [Datatype::Verdict] {
        return Ok(Data::Verdict(verdict(v, t)?.ok_or_else(|| format!("{} is not a verdict", show(v)))?));
    }
    let comps = element(v, types)?;
    let mut val = Val::default();
    for c in comps {
        match c {
            Comp::Val(x) => val = val.concat(&x),
            Comp::Range(..) => return Err(format!("map data {} is a range (not modelled)", show(v))),
        }
    }
    Ok(Data::Val(val))
}

/// A verdict object, if `v` is one.
fn verdict(v: &Value, t: &TableBuild) -> Res<Option<Verdict>> {
    let Some((k, body)) = single(v) else { return Ok(None) };
    let target = || -> Res<usize> {
        let name = str_field(body, "target")?;
        t.chain_ix.get(name).copied().ok_or_else(|| format!("jump to an unknown chain {name}"))
    };
    Ok(Some(match k {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "continue" => Verdict::Continue,
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(target()?),
        "goto" => Verdict::Goto(target()?),
        "queue" => return Err("the queue verdict is not modelled (no userspace queue)".into()),
        _ => return Ok(None),
    }))
}

/// A payload field's place: (base, bit offset, bit length, datatype, family, l4 protocol).
fn payload_field(proto: &str, field: &str) -> Option<(Payload, Datatype)> {
    use Datatype as D;
    let (base, fam, l4): (Base, Option<Family>, Option<u8>) = match proto {
        "ip" => (Base::Network, Some(Family::V4), None),
        "ip6" => (Base::Network, Some(Family::V6), None),
        "tcp" => (Base::Transport, None, Some(6)),
        "udp" => (Base::Transport, None, Some(17)),
        "udplite" => (Base::Transport, None, Some(136)),
        "sctp" => (Base::Transport, None, Some(132)),
        "dccp" => (Base::Transport, None, Some(33)),
        "icmp" => (Base::Transport, Some(Family::V4), Some(1)),
        "icmpv6" => (Base::Transport, Some(Family::V6), Some(58)),
        "esp" => (Base::Transport, None, Some(50)),
        "ah" => (Base::Transport, None, Some(51)),
        "th" => (Base::Transport, None, None),
        _ => return None,
    };
    let (off, len, d) = match (proto, field) {
        ("ip", "version") => (0, 4, D::Integer(1)),
        ("ip", "hdrlength") => (4, 4, D::Integer(1)),
        ("ip", "dscp") => (8, 6, D::Integer(1)),
        ("ip", "ecn") => (14, 2, D::Integer(1)),
        ("ip", "length") => (16, 16, D::Integer(2)),
        ("ip", "id") => (32, 16, D::Integer(2)),
        ("ip", "frag-off") => (48, 16, D::Integer(2)),
        ("ip", "ttl") => (64, 8, D::Integer(1)),
        ("ip", "protocol") => (72, 8, D::InetProto),
        ("ip", "checksum") => (80, 16, D::Integer(2)),
        ("ip", "saddr") => (96, 32, D::Ipv4Addr),
        ("ip", "daddr") => (128, 32, D::Ipv4Addr),
        ("ip6", "version") => (0, 4, D::Integer(1)),
        ("ip6", "dscp") => (4, 6, D::Integer(1)),
        ("ip6", "ecn") => (10, 2, D::Integer(1)),
        ("ip6", "flowlabel") => (12, 20, D::Integer(4)),
        ("ip6", "length") => (32, 16, D::Integer(2)),
        ("ip6", "nexthdr") => (48, 8, D::InetProto),
        ("ip6", "hoplimit") => (56, 8, D::Integer(1)),
        ("ip6", "saddr") => (64, 128, D::Ipv6Addr),
        ("ip6", "daddr") => (192, 128, D::Ipv6Addr),
        ("tcp" | "udp" | "udplite" | "sctp" | "dccp" | "th", "sport") => (0, 16, D::InetService),
        ("tcp" | "udp" | "udplite" | "sctp" | "dccp" | "th", "dport") => (16, 16, D::InetService),
        ("tcp", "sequence") => (32, 32, D::Integer(4)),
        ("tcp", "ackseq") => (64, 32, D::Integer(4)),
        ("tcp", "doff") => (96, 4, D::Integer(1)),
        ("tcp", "reserved") => (100, 4, D::Integer(1)),
        ("tcp", "flags") => (104, 8, D::TcpFlag),
        ("tcp", "window") => (112, 16, D::Integer(2)),
        ("tcp", "checksum") => (128, 16, D::Integer(2)),
        ("tcp", "urgptr") => (144, 16, D::Integer(2)),
        ("udp" | "udplite", "length" | "csumcov") => (32, 16, D::Integer(2)),
        ("udp" | "udplite", "checksum") => (48, 16, D::Integer(2)),
        ("sctp", "vtag") => (32, 32, D::Integer(4)),
        ("sctp", "checksum") => (64, 32, D::Integer(4)),
        ("icmp", "type") => (0, 8, D::IcmpType),
        ("icmpv6", "type") => (0, 8, D::Icmpv6Type),
        ("icmp", "code") => (8, 8, D::IcmpCode),
        ("icmpv6", "code") => (8, 8, D::Icmpv6Code),
        ("icmp" | "icmpv6", "checksum") => (16, 16, D::Integer(2)),
        ("icmp" | "icmpv6", "id") => (32, 16, D::Integer(2)),
        ("icmp" | "icmpv6", "sequence") => (48, 16, D::Integer(2)),
        ("icmp", "gateway") => (32, 32, D::Ipv4Addr),
        ("icmp", "mtu") => (48, 16, D::Integer(2)),
        ("icmpv6", "mtu" | "packet-too-big" | "parameter-problem") => (32, 32, D::Integer(4)),
        ("icmpv6", "max-delay") => (32, 16, D::Integer(2)),
        ("esp", "spi") => (0, 32, D::Integer(4)),
        ("esp", "sequence") => (32, 32, D::Integer(4)),
        ("ah", "nexthdr") => (0, 8, D::InetProto),
        ("ah", "hdrlength") => (8, 8, D::Integer(1)),
        ("ah", "spi") => (32, 32, D::Integer(4)),
        ("ah", "sequence") => (64, 32, D::Integer(4)),
        _ => return None,
    };
    Some((Payload { base, offset_bits: off, len_bits: len, nfproto: fam, l4proto: l4 }, d))
}

/// A meta key and its datatype.
fn meta_key(k: &str) -> Res<(MetaKey, Datatype)> {
    use Datatype as D;
    Ok(match k {
        "l4proto" => (MetaKey::L4Proto, D::InetProto),
        "nfproto" => (MetaKey::NfProto, D::NfProto),
        "protocol" => (MetaKey::Protocol, D::EtherType),
        "mark" => (MetaKey::Mark, D::Mark),
        "iif" => (MetaKey::Iif, D::IfIndex),
        "iifname" => (MetaKey::IifName, D::IfName),
        "iiftype" => (MetaKey::IifType, D::IfType),
        "oif" => (MetaKey::Oif, D::IfIndex),
        "oifname" => (MetaKey::OifName, D::IfName),
        "oiftype" => (MetaKey::OifType, D::IfType),
        "length" => (MetaKey::Length, D::Integer(4)),
        "pkttype" => (MetaKey::PktType, D::PktType),
        "random" => (MetaKey::Random, D::Integer(4)),
        "cpu" => (MetaKey::Cpu, D::Integer(4)),
        "iifgroup" => (MetaKey::IifGroup, D::Integer(4)),
        "oifgroup" => (MetaKey::OifGroup, D::Integer(4)),
        k => return Err(format!("meta {k} is not modelled")),
    })
}

/// A ct key (with its direction and, for addresses, family) and its datatype.
fn ct_key(o: &Value) -> Res<(CtKey, Option<Direction>, Datatype)> {
    use Datatype as D;
    let key = str_field(o, "key")?;
    let dir = match o.get("dir").and_then(Value::as_str) {
        None => None,
        Some("original") => Some(Direction::Original),
        Some("reply") => Some(Direction::Reply),
        Some(d) => return Err(format!("ct direction {d}")),
    };
    let fam = o.get("family").and_then(Value::as_str);
    let addr = |f: Option<&str>| match f {
        Some("ip6") => D::Ipv6Addr,
        _ => D::Ipv4Addr,
    };
    Ok(match key {
        "state" => (CtKey::State, None, D::CtState),
        "direction" => (CtKey::Direction, None, D::CtDir),
        "status" => (CtKey::Status, None, D::CtStatus),
        "mark" => (CtKey::Mark, None, D::Mark),
        "zone" => (CtKey::Zone, dir, D::Zone),
        "expiration" => (CtKey::Expiration, None, D::Integer(4)),
        "l3proto" => (CtKey::L3Proto, dir, D::NfProto),
        "protocol" => (CtKey::Protocol, dir, D::InetProto),
        "saddr" => (CtKey::Saddr, dir, addr(fam)),
        "daddr" => (CtKey::Daddr, dir, addr(fam)),
        "ip saddr" => (CtKey::Saddr, dir, D::Ipv4Addr),
        "ip daddr" => (CtKey::Daddr, dir, D::Ipv4Addr),
        "ip6 saddr" => (CtKey::Saddr, dir, D::Ipv6Addr),
        "ip6 daddr" => (CtKey::Daddr, dir, D::Ipv6Addr),
        "proto-src" => (CtKey::ProtoSrc, dir, D::InetService),
        "proto-dst" => (CtKey::ProtoDst, dir, D::InetService),
        "id" => (CtKey::Id, None, D::Integer(4)),
        "packets" => (CtKey::Packets, dir, D::Integer(8)),
        "bytes" => (CtKey::Bytes, dir, D::Integer(8)),
        k => return Err(format!("ct {k} is not modelled")),
    })
}

/// An expression and the datatypes of its value (several for a concatenation).
fn expr(v: &Value, t: &TableBuild) -> Res<(Expr, Vec<Datatype>)> {
    let Some((k, body)) = single(v) else { return Err(format!("expression {} is not modelled", show(v))) };
    Ok(match k {
        "payload" => {
            if let Some(proto) = body.get("protocol").and_then(Value::as_str) {
                let field = str_field(body, "field")?;
                let (p, d) =
                    payload_field(proto, field).ok_or_else(|| format!("{proto} {field} is not modelled"))?;
                (Expr::Payload(p), vec![d])
            } else {
                let base = match str_field(body, "base")? {
                    "nh" => Base::Network,
                    "th" => Base::Transport,
                    b => return Err(format!("payload base {b} is not modelled (no link layer)")),
                };
                let off = u64_field(body, "offset").ok_or("raw payload without offset")? as u32;
                let len = u64_field(body, "len").ok_or("raw payload without len")? as u32;
                if len == 0 || len > 128 {
                    return Err(format!("raw payload of {len} bits"));
                }
                let p = Payload { base, offset_bits: off, len_bits: len, nfproto: None, l4proto: None };
                (Expr::Payload(p), vec![Datatype::Integer(len.div_ceil(8) as u8)])
            }
        }
        "meta" => {
            let (m, d) = meta_key(str_field(body, "key")?)?;
            (Expr::Meta(m), vec![d])
        }
        "ct" => {
            let (key, dir, d) = ct_key(body)?;
            (Expr::Ct { key, dir }, vec![d])
        }
        "fib" => {
            let result = match str_field(body, "result")? {
                "oif" => (FibResult::Oif, Datatype::IfIndex),
                "oifname" => (FibResult::OifName, Datatype::IfName),
                "type" => (FibResult::Type, Datatype::FibAddrType),
                r => return Err(format!("fib {r} is not modelled")),
            };
            let mut flags = 0;
            let list = match body.get("flags") {
                Some(Value::Array(a)) => a.clone(),
                Some(f) => vec![f.clone()],
                None => Vec::new(),
            };
            for f in list.iter().filter_map(Value::as_str) {
                flags |= match f {
                    "saddr" => FIB_SADDR,
                    "daddr" => FIB_DADDR,
                    "mark" => FIB_MARK,
                    "iif" => FIB_IIF,
                    "oif" => FIB_OIF,
                    f => return Err(format!("fib flag {f}")),
                };
            }
            (Expr::Fib { result: result.0, flags }, vec![result.1])
        }
        "numgen" => {
            let random = match str_field(body, "mode")? {
                "random" => true,
                "inc" => false,
                m => return Err(format!("numgen mode {m}")),
            };
            let modulus = u64_field(body, "mod").ok_or("numgen without mod")? as u32;
            let offset = u64_field(body, "offset").unwrap_or(0) as u32;
            let next = Arc::new(AtomicU64::new(0));
            (Expr::Numgen { random, modulus, offset, next }, vec![Datatype::Integer(4)])
        }
        "&" | "|" | "^" | "<<" | ">>" => {
            let Some([a, b]) = body.as_array().map(Vec::as_slice) else {
                return Err(format!("{k} needs two operands"));
            };
            let (ea, ta) = expr(a, t)?;
            let [d] = ta.as_slice() else { return Err(format!("{k} on a concatenation")) };
            let eb = match expr(b, t) {
                Ok((e, _)) => e,
                Err(_) => {
                    let lit_ty = if matches!(k, "<<" | ">>") { Datatype::Integer(4) } else { *d };
                    Expr::Imm(lit(b, lit_ty)?)
                }
            };
            let op = match k {
                "&" => BinOp::And,
                "|" => BinOp::Or,
                "^" => BinOp::Xor,
                "<<" => BinOp::Shl,
                _ => BinOp::Shr,
            };
            (Expr::Bin(op, Box::new(ea), Box::new(eb)), ta)
        }
        "concat" => {
            let parts = body.as_array().ok_or("concat of a non-list")?;
            let mut es = Vec::new();
            let mut ts = Vec::new();
            for p in parts {
                let (e, mut ty) = expr(p, t)?;
                es.push(e);
                ts.append(&mut ty);
            }
            (Expr::Concat(es), ts)
        }
        "map" => {
            let (key, kt) = expr(body.get("key").ok_or("map without key")?, t)?;
            let data = body.get("data").ok_or("map without data")?;
            let (set, dt) = match data.as_str().and_then(|s| s.strip_prefix('@')) {
                Some(name) => {
                    let set = t.sets.get(name).ok_or_else(|| format!("unknown map @{name}"))?;
                    let (_, dt) = t.set_types.get(name).cloned().unwrap_or_default();
                    (set.clone(), dt.ok_or_else(|| format!("@{name} is a set, not a map"))?)
                }
                None => return Err(format!("anonymous data map {} is not modelled", show(data))),
            };
            let _ = kt;
            (Expr::Map(Box::new(key), set), dt)
        }
        "exthdr" => {
            if body.get("field").is_some() {
                return Err("IPv6 extension header fields are not modelled (existence only)".into());
            }
            let nh = match str_field(body, "name")? {
                "hbh" => 0,
                "rt" => 43,
                "frag" => 44,
                "dst" => 60,
                "mh" => 135,
                n => return Err(format!("exthdr {n}")),
            };
            (Expr::ExtHdrExists(nh), vec![Datatype::Boolean])
        }
        other => return Err(format!("{other} expressions are not modelled")),
    })
}

/// The right side of a match, read by the left side's datatypes.
fn rhs(v: &Value, types: &[Datatype], t: &TableBuild) -> Res<Rhs> {
    if let Some(name) = v.as_str().and_then(|s| s.strip_prefix('@')) {
        return t.sets.get(name).cloned().map(Rhs::Set).ok_or_else(|| format!("unknown set @{name}"));
    }
    if let Some(items) = v.get("set") {
        let items = match items {
            Value::Array(a) => a.clone(),
            x => vec![x.clone()],
        };
        let mut set = Set::new(String::new(), types.iter().map(|d| d.width()).collect());
        for it in &items {
            set.insert(element(it, types)?, Data::None);
        }
        return Ok(Rhs::Set(Arc::new(set)));
    }
    if let Some(r) = v.get("range").and_then(Value::as_array) {
        let [d] = types else { return Err("range on a concatenation".into()) };
        let [lo, hi] = r.as_slice() else { return Err("range of other than two values".into()) };
        return Ok(Rhs::Range(lit(lo, *d)?, lit(hi, *d)?));
    }
    if let Some(p) = v.get("prefix") {
        let [d] = types else { return Err("prefix on a concatenation".into()) };
        let (lo, hi) = prefix(p, *d)?;
        return Ok(Rhs::Range(lo, hi));
    }
    if let Some(parts) = v.get("concat").and_then(Value::as_array) {
        if parts.len() != types.len() {
            return Err(format!("{} does not have {} parts", show(v), types.len()));
        }
        let mut val = Val::default();
        for (p, d) in parts.iter().zip(types) {
            val = val.concat(&lit(p, *d)?);
        }
        return Ok(Rhs::Val(val));
    }
    match types {
        [d] => Ok(Rhs::Val(lit(v, *d)?)),
        _ => Err(format!("{} against a concatenation", show(v))),
    }
}

/// One statement of a rule.
fn stmt(v: &Value, t: &mut TableBuild, sites: &mut Vec<CounterSite>, chain: &str, handle: u64) -> Res<Stmt> {
    if let Some(vd) = verdict(v, t)? {
        return Ok(Stmt::Verdict(vd));
    }
    let Some((k, body)) = single(v) else { return Err("not a statement".into()) };
    Ok(match k {
        "match" => {
            let (mut left, mut types) = expr(body.get("left").ok_or("match without left")?, t)?;
            let right = body.get("right").ok_or("match without right")?;
            // `fib ... oif exists` / `oif missing` (firewalld's rpfilter): nft prints the
            // comparison with a boolean and sets NFTA_FIB_F_PRESENT, so the expression yields
            // whether a route (out of the interface asked for) was found, not the interface.
            if let (Expr::Fib { result: r @ (FibResult::Oif | FibResult::OifName), flags }, Value::Bool(_)) =
                (&left, right)
            {
                left = Expr::Fib { result: *r, flags: flags | FIB_PRESENT };
                types = vec![Datatype::Boolean];
            }
            let op = str_field(body, "op")?;
            let bits = types.len() == 1 && types[0].is_bitmask();
            let (op, right) = match op {
                "==" => (CmpOp::Eq, rhs(right, &types, t)?),
                "!=" => (CmpOp::Ne, rhs(right, &types, t)?),
                "<" => (CmpOp::Lt, rhs(right, &types, t)?),
                ">" => (CmpOp::Gt, rhs(right, &types, t)?),
                "<=" | "⇐" => (CmpOp::Le, rhs(right, &types, t)?),
                ">=" => (CmpOp::Ge, rhs(right, &types, t)?),
                "in" => match rhs(right, &types, t)? {
                    Rhs::Val(m) if bits => (CmpOp::Eq, Rhs::Bits(m)),
                    r => (CmpOp::Eq, r),
                },
                // `ct status & seen-reply == 0` (`ct status ! seen-reply`): none of the bits.
                "!" if bits => match rhs(right, &types, t)? {
                    Rhs::Val(m) => (CmpOp::Ne, Rhs::Bits(m)),
                    _ => return Err("! on other than flags".into()),
                },
                o => return Err(format!("match operator {o}")),
            };
            Stmt::Match { left, op, right }
        }
        "counter" => {
            let c = match body {
                Value::String(name) => {
                    t.counters.get(name).cloned().ok_or_else(|| format!("unknown counter {name}"))?
                }
                b => {
                    let c = Arc::new(Counter::new(
                        u64_field(b, "packets").unwrap_or(0),
                        u64_field(b, "bytes").unwrap_or(0),
                    ));
                    sites.push(CounterSite {
                        family: t.family,
                        table: t.name.clone(),
                        chain: Some(chain.to_string()),
                        handle: Some(handle),
                        name: None,
                        counter: c.clone(),
                    });
                    c
                }
            };
            Stmt::Counter(c)
        }
        "mangle" => {
            let key = body.get("key").ok_or("mangle without key")?;
            let value = body.get("value").ok_or("mangle without value")?;
            let (mk, d) = match single(key) {
                Some(("meta", m)) if m.get("key").and_then(Value::as_str) == Some("mark") => {
                    (MangleKey::MetaMark, Datatype::Mark)
                }
                Some(("ct", c)) => {
                    match (c.get("key").and_then(Value::as_str), c.get("dir").and_then(Value::as_str)) {
                        (Some("mark"), None) => (MangleKey::CtMark, Datatype::Mark),
                        (Some("zone"), None) => (MangleKey::CtZone { dir: Zone::DIR_BOTH }, Datatype::Zone),
                        (Some("zone"), Some("original")) => {
                            (MangleKey::CtZone { dir: Zone::DIR_ORIG }, Datatype::Zone)
                        }
                        (Some("zone"), Some("reply")) => {
                            (MangleKey::CtZone { dir: Zone::DIR_REPL }, Datatype::Zone)
                        }
                        _ => return Err(format!("setting {} is not modelled", show(key))),
                    }
                }
                _ => return Err(format!("setting {} is not modelled", show(key))),
            };
            let value = match expr(value, t) {
                Ok((e, _)) => e,
                Err(_) => Expr::Imm(lit(value, d)?),
            };
            Stmt::Mangle { key: mk, value }
        }
        "notrack" => Stmt::Notrack,
        "log" => {
            let c = Arc::new(Counter::default());
            Stmt::Log(c)
        }
        "reject" => Stmt::Reject,
        "vmap" => {
            let (key, types) = expr(body.get("key").ok_or("vmap without key")?, t)?;
            let data = body.get("data").ok_or("vmap without data")?;
            let set = match data.as_str().and_then(|s| s.strip_prefix('@')) {
                Some(name) => t.sets.get(name).cloned().ok_or_else(|| format!("unknown map @{name}"))?,
                None => {
                    let pairs = data.get("set").and_then(Value::as_array).ok_or("vmap data is not a set")?;
                    let mut set = Set::new(String::new(), types.iter().map(|d| d.width()).collect());
                    for p in pairs {
                        let Some([k, d]) = p.as_array().map(Vec::as_slice) else {
                            return Err(format!("vmap element {} is not a pair", show(p)));
                        };
                        let vd = verdict(d, t)?.ok_or_else(|| format!("{} is not a verdict", show(d)))?;
                        set.insert(element(k, &types)?, Data::Verdict(vd));
                    }
                    Arc::new(set)
                }
            };
            Stmt::VMap(key, set)
        }
        "xt" => return Err("xt expressions (left by iptables-nft) are not modelled".into()),
        "snat" | "dnat" | "masquerade" | "redirect" => Stmt::Nat(Box::new(nat_stmt(k, body, t)?)),
        other => return Err(format!("{other} statements are not modelled")),
    })
}

/// A NAT statement: `{"snat": {"family": "ip", "addr": A, "port": P, "flags": F}}` where A
/// is an address, `{"range": [lo, hi]}` or a map (whose values may be `address . port`), P a
/// port or `{"range": [lo, hi]}`, F a flag or a list of `random`, `fully-random`,
/// `persistent`; masquerade and redirect take a port and flags only (or null).
fn nat_stmt(k: &str, body: &Value, t: &TableBuild) -> Res<NatStmt> {
    let kind = match k {
        "snat" => NatKind::Snat,
        "dnat" => NatKind::Dnat,
        "masquerade" => NatKind::Masquerade,
        _ => NatKind::Redirect,
    };
    let family = match body.get("family").and_then(Value::as_str) {
        Some("ip") => Some(Family::V4),
        Some("ip6") => Some(Family::V6),
        Some(f) => return Err(format!("{k} for family {f}")),
        None => match t.family {
            TableFamily::Ip => Some(Family::V4),
            TableFamily::Ip6 => Some(Family::V6),
            _ => None,
        },
    };
    let mut flags = 0;
    let list = match body.get("flags") {
        Some(Value::Array(a)) => a.clone(),
        Some(f) => vec![f.clone()],
        None => Vec::new(),
    };
    for f in list.iter().filter_map(Value::as_str) {
        flags |= match f {
            "random" => crate::nat::RANGE_PROTO_RANDOM,
            "fully-random" => crate::nat::RANGE_PROTO_RANDOM_FULLY,
            "persistent" => crate::nat::RANGE_PERSISTENT,
            "netmap" => return Err(format!("{k} prefix (netmap) is not modelled")),
            f => return Err(format!("{k} flag {f} is not modelled")),
        };
    }
    if body.get("type_flags").is_some() {
        return Err(format!("{k} with type flags (prefix, interval maps) is not modelled"));
    }
    let addr_type = match family {
        Some(Family::V6) => Datatype::Ipv6Addr,
        _ => Datatype::Ipv4Addr,
    };
    let (mut addr, mut addr_hi) = (None, None);
    if let Some(a) = body.get("addr") {
        if matches!(kind, NatKind::Masquerade | NatKind::Redirect) {
            return Err(format!("{k} takes no address"));
        }
        if family.is_none() {
            // A literal names its family; nft needs `ip` or `ip6` for anything else.
            if let Some(s) = a.as_str() {
                let fam = if s.contains(':') { Family::V6 } else { Family::V4 };
                return nat_stmt(k, &with_family(body, fam), t);
            }
            return Err(format!("{k} in an inet table without ip or ip6"));
        }
        if let Some(r) = a.get("range").and_then(Value::as_array) {
            let [lo, hi] = r.as_slice() else { return Err(format!("range {} is not two values", show(a))) };
            addr = Some(Expr::Imm(lit(lo, addr_type)?));
            addr_hi = Some(Expr::Imm(lit(hi, addr_type)?));
        } else if let Some(m) = a.get("map") {
            addr = Some(nat_map(m, addr_type, t)?);
        } else if let Some(p) = a.get("prefix") {
            // Without the netmap flag (refused above) a prefix is the range of its addresses:
            // nft lists `dnat to 10.0.0.16-10.0.0.31` as `dnat to 10.0.0.16/28`, and the kernel
            // gets the range's first and last address (observed on 6.18 with nft 1.0.6).
            let (lo, hi) = prefix(p, addr_type)?;
            addr = Some(Expr::Imm(lo));
            addr_hi = Some(Expr::Imm(hi));
        } else if a.is_string() {
            addr = Some(Expr::Imm(lit(a, addr_type)?));
        } else {
            let (e, ty) = expr(a, t)?;
            if ty.first() != Some(&addr_type) {
                return Err(format!("{k} address {} is not a {addr_type:?}", show(a)));
            }
            addr = Some(e);
        }
    }
    let (mut port, mut port_hi) = (None, None);
    if let Some(p) = body.get("port") {
        if let Some(r) = p.get("range").and_then(Value::as_array) {
            let [lo, hi] = r.as_slice() else { return Err(format!("range {} is not two values", show(p))) };
            port = Some(Expr::Imm(lit(lo, Datatype::InetService)?));
            port_hi = Some(Expr::Imm(lit(hi, Datatype::InetService)?));
        } else if p.is_number() || p.is_string() {
            port = Some(Expr::Imm(lit(p, Datatype::InetService)?));
        } else if let Some(m) = p.get("map") {
            port = Some(nat_map(m, Datatype::InetService, t)?);
        } else {
            port = Some(expr(p, t)?.0);
        }
    }
    Ok(NatStmt { kind, family, addr, addr_hi, port, port_hi, flags })
}

/// The statement's body with a family named.
fn with_family(body: &Value, fam: Family) -> Value {
    let mut b = body.clone();
    if let Value::Object(o) = &mut b {
        o.insert("family".into(), Value::String(if fam == Family::V4 { "ip" } else { "ip6" }.into()));
    }
    b
}

/// A map a NAT statement takes its address (or address and port, or port) from: a named map,
/// or an anonymous one whose values are read as `data` (or `data . inet_service` where they
/// are concatenations).
fn nat_map(m: &Value, data: Datatype, t: &TableBuild) -> Res<Expr> {
    let (key, kt) = expr(m.get("key").ok_or("map without key")?, t)?;
    let d = m.get("data").ok_or("map without data")?;
    if d.as_str().is_some_and(|s| s.starts_with('@')) {
        return Ok(expr(&serde_json::json!({ "map": m }), t)?.0);
    }
    let pairs =
        d.get("set").and_then(Value::as_array).ok_or_else(|| format!("map data {} is not a set", show(d)))?;
    let mut set = Set::new(String::new(), kt.iter().map(|d| d.width()).collect());
    for p in pairs {
        let Some([k, v]) = p.as_array().map(Vec::as_slice) else {
            return Err(format!("map element {} is not a pair", show(p)));
        };
        let dt: Vec<Datatype> = match v.get("concat").and_then(Value::as_array) {
            Some(parts) if parts.len() == 2 && data != Datatype::InetService => {
                vec![data, Datatype::InetService]
            }
            Some(_) => return Err(format!("map value {} is not an address and a port", show(v))),
            None => vec![data],
        };
        set.insert(element(k, &kt)?, map_data(v, &dt, t)?);
    }
    Ok(Expr::Map(Box::new(key), Arc::new(set)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_where_and_what() {
        let doc = |rules: &str| {
            format!(
                r#"{{"nftables": [{{"table": {{"family": "inet", "name": "f", "handle": 1}}}},
                {{"chain": {{"family": "inet", "table": "f", "name": "fw", "handle": 1, "type": "filter",
                   "hook": "forward", "prio": 0, "policy": "accept"}}}}, {rules}]}}"#
            )
        };
        let e = parse(&doc(
            r#"{"rule": {"family": "inet", "table": "f", "chain": "fw", "handle": 7, "expr": [{"xt": {"type": "match", "name": "conntrack"}}]}}"#,
        ))
        .unwrap_err();
        assert_eq!(e.at, "inet f fw handle 7");
        assert!(e.message.contains("xt expressions"), "{e}");
        let e = parse(r#"{"nftables": [{"table": {"family": "bridge", "name": "b", "handle": 1}}]}"#)
            .unwrap_err();
        assert_eq!(e.at, "bridge b");
        assert!(parse("[1, 2").is_err());
        let ok = parse(&doc(
            r#"{"rule": {"family": "inet", "table": "f", "chain": "fw", "handle": 8, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [22, {"range": [80, 90]}]}}}, {"accept": null}]}}"#,
        ))
        .unwrap();
        assert_eq!(ok.tables[0].chains[0].rules.len(), 1);
        assert_eq!(ok.base_chains(), [(0, 0)]);
    }

    #[test]
    fn interface_names_are_the_hosts() {
        // `meta iif "eth1"` as nft -j prints it: the kernel resolved the name when it loaded the
        // rule, nfct resolves it through the host's interfaces.
        let doc: Value = serde_json::from_str(
            r#"{"nftables": [{"table": {"family": "inet", "name": "f", "handle": 1}},
            {"chain": {"family": "inet", "table": "f", "name": "fw", "handle": 1, "type": "filter",
               "hook": "forward", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "f", "chain": "fw", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "eth1"}}, {"drop": null}]}}]}"#,
        )
        .unwrap();
        let e = compile(&doc).unwrap_err();
        assert_eq!(e.at, "inet f fw handle 4");
        assert!(e.message.contains("interface \"eth1\" is not one of the host's"), "{e}");
        let ok = compile_for(&doc, &[("eth0".into(), 2), ("eth1".into(), 3)]).unwrap();
        let Stmt::Match { right: Rhs::Val(v), .. } = &ok.tables[0].chains[0].rules[0].stmts[0] else {
            panic!("not a match")
        };
        assert_eq!(v.as_u64(), 3);
        assert!(compile(&doc).is_err(), "the names do not outlive compile_for");
    }

    #[test]
    fn verdict_maps_jump_to_chains_listed_after_them() {
        // nft -j lists a table's sets and maps before its chains.
        let doc = r#"{"nftables": [{"table": {"family": "inet", "name": "svc", "handle": 1}},
            {"map": {"family": "inet", "name": "dispatch", "table": "svc", "type": "inet_service", "handle": 1, "map": "verdict",
                     "elem": [[80, {"goto": {"target": "svc_web"}}]]}},
            {"chain": {"family": "inet", "table": "svc", "name": "svc_web", "handle": 2}},
            {"chain": {"family": "inet", "table": "svc", "name": "pre", "handle": 3, "type": "filter", "hook": "prerouting", "prio": 0, "policy": "accept"}},
            {"rule": {"family": "inet", "table": "svc", "chain": "pre", "handle": 4, "expr": [{"vmap": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": "@dispatch"}}]}}]}"#;
        let rs = parse(doc).unwrap();
        assert_eq!(rs.tables[0].chains.len(), 2);
    }

    #[test]
    fn a_nat_chain_at_forward_is_refused() {
        let e = parse(
            r#"{"nftables": [{"table": {"family": "ip", "name": "n", "handle": 1}},
            {"chain": {"family": "ip", "table": "n", "name": "f", "handle": 1, "type": "nat",
               "hook": "forward", "prio": 0, "policy": "accept"}}]}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("nat chain at forward"), "{e}");
    }
}
