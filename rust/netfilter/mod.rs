//! The netfilter hook registry (`net/netfilter/core.c`): the operations registered at each
//! hook of each family, sorted by priority, and what an operation runs. Data only: the packet
//! path that runs the operations (`nf_hook_slow`) is the IP layer's (`ip`), and this module
//! knows no `Net`. The operations that rulesets install live in [`nft`].
//!
//! Registrations are copy-on-write: a packet (or a whole replay) takes a snapshot of the table
//! when it enters, as the kernel's packets read `nf_hook_entries` under RCU.

pub mod nft;

use crate::uapi::{Hook, NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6};
use parking_lot::RwLock;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many times one operation may answer NF_REPEAT for one packet before the packet is
/// dropped (the kernel would spin forever).
pub const MAX_REPEAT: u32 = 64;

/// An IP family's hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

    /// The address family (`AF_INET`, `AF_INET6`) conntrack keys on.
    pub fn af(self) -> u8 {
        match self {
            Family::V4 => crate::uapi::AF_INET,
            Family::V6 => crate::uapi::AF_INET6,
        }
    }

    /// The family of an IP packet, from its version nibble.
    pub fn of_packet(pkt: &[u8]) -> Option<Family> {
        match crate::wire::ip::ip_version(pkt) {
            Some(4) => Some(Family::V4),
            Some(6) => Some(Family::V6),
            _ => None,
        }
    }

    /// The family of an `NFPROTO_IPV4`/`NFPROTO_IPV6` value (one family's hooks).
    pub fn of_nfproto(pf: u8) -> Option<Family> {
        match pf {
            NFPROTO_IPV4 => Some(Family::V4),
            NFPROTO_IPV6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// Conntrack's own operations (`nf_conntrack_proto.c`, `nf_defrag_ipv4/6`); the IP layer runs
/// them with the namespace's conntrack and defrag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtOp {
    /// `ipv4_conntrack_defrag` / `ipv6_defrag` (−400): reassembly; a held fragment is stolen.
    Defrag,
    /// `ipv4_conntrack_in` / `ipv6_conntrack_in` (PRE_ROUTING −200).
    In,
    /// `ipv4_conntrack_local` / `ipv6_conntrack_local` (LOCAL_OUT −200).
    Local,
    /// `ipv4_confirm` / `ipv6_confirm` (LOCAL_IN, POST_ROUTING, last).
    Confirm,
    /// The NAT core (`nf_nat_ipv4_fn` and friends: dstnat −100 at PRE_ROUTING and LOCAL_OUT,
    /// srcnat 100 at POST_ROUTING and LOCAL_IN), registered with a family's first nat chain:
    /// it runs the family's nat chains of its hook on a connection's first packet, gives
    /// connections no rule translated their null binding, and rewrites every packet of a
    /// translated connection.
    Nat,
}

/// What an operation runs.
#[derive(Clone)]
pub enum OpKind {
    /// One of conntrack's own operations.
    Conntrack(CtOp),
    /// An nftables base chain (a ruleset's, or a built-in operation), evaluated in Rust (also
    /// inside replays).
    Chain(nft::ChainRef),
    /// Handed to the caller's function; the payload is the caller's (a Python callable).
    External(Arc<dyn Any + Send + Sync>),
}

impl std::fmt::Debug for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpKind::Conntrack(c) => c.fmt(f),
            OpKind::Chain(c) => f.write_str(&c.name()),
            OpKind::External(_) => f.write_str("External"),
        }
    }
}

/// One registered operation (`struct nf_hook_ops`).
#[derive(Clone, Debug)]
pub struct Op {
    /// Unique per namespace, for unregistering.
    pub id: u64,
    pub name: Arc<str>,
    pub hooknum: Hook,
    pub priority: i32,
    pub kind: OpKind,
}

impl Op {
    /// Whether this is one of conntrack's own operations (not a ruleset's or a caller's).
    pub fn is_conntrack(&self) -> bool {
        matches!(self.kind, OpKind::Conntrack(_))
    }
}

/// The operations of every hook of both families, each list sorted by priority; among equal
/// priorities the one registered last runs first, as `nf_hook_entries_grow` inserts a new
/// operation before those of equal priority (observed: a ruleset's chain at conntrack's own
/// -200 runs before conntrack, registered earlier).
#[derive(Clone, Debug, Default)]
pub struct HookTable {
    ops: [[Vec<Arc<Op>>; 5]; 2],
    /// The nat chains (type nat) of each hook, by priority: the NAT core runs them
    /// (`nf_nat_register_fn` keeps them out of the hook's own list).
    nat: [[Vec<Arc<Op>>; 5]; 2],
}

impl HookTable {
    /// The operations of one hook, in the order they run.
    #[inline]
    pub fn ops(&self, fam: Family, hook: Hook) -> &[Arc<Op>] {
        &self.ops[fam as usize][hook as usize]
    }

    /// The nat chains the NAT core runs at one hook, in order.
    pub fn nat_chains(&self, fam: Family, hook: Hook) -> &[Arc<Op>] {
        &self.nat[fam as usize][hook as usize]
    }

    fn insert(&mut self, fam: Family, op: Arc<Op>) {
        let nat = matches!(&op.kind, OpKind::Chain(c) if c.is_nat());
        let lists = if nat { &mut self.nat } else { &mut self.ops };
        let list = &mut lists[fam as usize][op.hooknum as usize];
        let at = list.iter().position(|o| op.priority <= o.priority).unwrap_or(list.len());
        list.insert(at, op);
    }

    fn remove(&mut self, id: u64) -> bool {
        let mut found = false;
        for list in self.ops.iter_mut().chain(self.nat.iter_mut()).flatten() {
            let before = list.len();
            list.retain(|o| o.id != id);
            found |= list.len() != before;
        }
        found
    }

    /// Whether a family has nat chains (so its NAT core operations are registered).
    fn has_nat(&self, fam: Family) -> bool {
        self.nat[fam as usize].iter().any(|l| !l.is_empty())
    }

    /// Whether the NAT core is registered for a family.
    pub fn nat_core(&self, fam: Family) -> bool {
        self.ops[fam as usize].iter().flatten().any(|o| matches!(o.kind, OpKind::Conntrack(CtOp::Nat)))
    }

    /// `nf_nat_register_fn` / `nf_nat_unregister_fn`: the NAT core's four operations are
    /// registered with a family's first nat chain and go with its last.
    fn sync_nat_core(&mut self, fam: Family, next_id: &AtomicU64) {
        use crate::uapi::{NF_IP_PRI_NAT_DST, NF_IP_PRI_NAT_SRC};
        match (self.has_nat(fam), self.nat_core(fam)) {
            (true, false) => {
                let names: [&str; 4] = match fam {
                    Family::V4 => [
                        "nf_nat_ipv4_pre_routing",
                        "nf_nat_ipv4_local_in",
                        "nf_nat_ipv4_local_fn",
                        "nf_nat_ipv4_out",
                    ],
                    Family::V6 => {
                        ["nf_nat_ipv6_in", "nf_nat_ipv6_fn", "nf_nat_ipv6_local_fn", "nf_nat_ipv6_out"]
                    }
                };
                for (name, hook, priority) in [
                    (names[0], Hook::PreRouting, NF_IP_PRI_NAT_DST),
                    (names[1], Hook::LocalIn, NF_IP_PRI_NAT_SRC),
                    (names[2], Hook::LocalOut, NF_IP_PRI_NAT_DST),
                    (names[3], Hook::PostRouting, NF_IP_PRI_NAT_SRC),
                ] {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let kind = OpKind::Conntrack(CtOp::Nat);
                    self.insert(fam, Arc::new(Op { id, name: name.into(), hooknum: hook, priority, kind }));
                }
            }
            (false, true) => {
                for list in self.ops[fam as usize].iter_mut() {
                    list.retain(|o| !matches!(o.kind, OpKind::Conntrack(CtOp::Nat)));
                }
            }
            _ => {}
        }
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
    /// A nat chain at FORWARD (nat chains hook PRE_ROUTING, LOCAL_IN, LOCAL_OUT and
    /// POST_ROUTING only).
    NatHook,
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
            RegisterError::NatHook => f.write_str(
                "a nat chain cannot hook FORWARD (NAT happens at PRE_ROUTING, LOCAL_IN, LOCAL_OUT and POST_ROUTING)",
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

/// The families an `NFPROTO_*` registration applies to.
pub fn families(pf: u8) -> Result<&'static [Family], RegisterError> {
    match pf {
        NFPROTO_IPV4 => Ok(&[Family::V4]),
        NFPROTO_IPV6 => Ok(&[Family::V6]),
        NFPROTO_INET => Ok(&[Family::V4, Family::V6]),
        _ => Err(RegisterError::Family(pf)),
    }
}

/// A network namespace's hook registrations (`struct netns_nf`'s hook entries).
#[derive(Debug, Default)]
pub struct Hooks {
    table: RwLock<Arc<HookTable>>,
    next_id: AtomicU64,
}

impl Hooks {
    /// Registrations with conntrack's own operations at the kernel's priorities (spec §1.2):
    /// defrag at −400 on PRE_ROUTING and LOCAL_OUT, `in` at −200 on PRE_ROUTING, `local` at
    /// −200 on LOCAL_OUT, confirm last on POST_ROUTING and LOCAL_IN (IPv6's LOCAL_IN confirm
    /// one below INT_MAX).
    pub fn with_conntrack() -> Hooks {
        use crate::uapi::{NF_IP_PRI_CONNTRACK, NF_IP_PRI_CONNTRACK_CONFIRM, NF_IP_PRI_CONNTRACK_DEFRAG};
        let hooks = Hooks { table: RwLock::default(), next_id: AtomicU64::new(1) };
        for (pf, defrag, conn_in, local_out, confirm, confirm_in_prio) in [
            (
                NFPROTO_IPV4,
                "ipv4_conntrack_defrag",
                "ipv4_conntrack_in",
                "ipv4_conntrack_local",
                "ipv4_confirm",
                NF_IP_PRI_CONNTRACK_CONFIRM,
            ),
            (
                NFPROTO_IPV6,
                "ipv6_defrag",
                "ipv6_conntrack_in",
                "ipv6_conntrack_local",
                "ipv6_confirm",
                NF_IP_PRI_CONNTRACK_CONFIRM - 1,
            ),
        ] {
            for (name, hook, prio, op) in [
                (defrag, Hook::PreRouting, NF_IP_PRI_CONNTRACK_DEFRAG, CtOp::Defrag),
                (defrag, Hook::LocalOut, NF_IP_PRI_CONNTRACK_DEFRAG, CtOp::Defrag),
                (conn_in, Hook::PreRouting, NF_IP_PRI_CONNTRACK, CtOp::In),
                (local_out, Hook::LocalOut, NF_IP_PRI_CONNTRACK, CtOp::Local),
                (confirm, Hook::PostRouting, NF_IP_PRI_CONNTRACK_CONFIRM, CtOp::Confirm),
                (confirm, Hook::LocalIn, confirm_in_prio, CtOp::Confirm),
            ] {
                // The families are valid constants, so registration cannot fail.
                let _ = hooks.register(pf, hook, prio, name.into(), OpKind::Conntrack(op));
            }
        }
        hooks
    }

    /// `nf_register_net_hook`: adds an operation to one family's hook, or both for
    /// NFPROTO_INET. Returns its id. A nat chain goes to the NAT core's list of its hook (it
    /// runs at the core's priority, its own only ordering it among nat chains; FORWARD has no
    /// NAT and refuses it), and a family's first brings the core's operations.
    pub fn register(
        &self,
        pf: u8,
        hook: Hook,
        priority: i32,
        name: Arc<str>,
        kind: OpKind,
    ) -> Result<u64, RegisterError> {
        let fams = families(pf)?;
        let nat = matches!(&kind, OpKind::Chain(c) if c.is_nat());
        if nat && hook == Hook::Forward {
            return Err(RegisterError::NatHook);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let op = Arc::new(Op { id, name, hooknum: hook, priority, kind });
        let mut guard = self.table.write();
        let mut t = HookTable::clone(&guard);
        for &f in fams {
            t.insert(f, op.clone());
            if nat {
                t.sync_nat_core(f, &self.next_id);
            }
        }
        *guard = Arc::new(t);
        Ok(id)
    }

    /// `nf_unregister_net_hook`; false if no such operation is registered.
    pub fn unregister(&self, id: u64) -> bool {
        let mut guard = self.table.write();
        let mut t = HookTable::clone(&guard);
        let found = t.remove(id);
        for f in [Family::V4, Family::V6] {
            t.sync_nat_core(f, &self.next_id);
        }
        *guard = Arc::new(t);
        found
    }

    /// The registrations as they are now (what a packet entering now runs through).
    pub fn snapshot(&self) -> Arc<HookTable> {
        self.table.read().clone()
    }

    /// The ordered (priority, name) list of one hook.
    pub fn list(&self, fam: Family, hook: Hook) -> Vec<(i32, Arc<str>)> {
        self.snapshot().ops(fam, hook).iter().map(|o| (o.priority, o.name.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi::{NFPROTO_ARP, NF_ACCEPT};

    fn names(h: &Hooks, f: Family, hook: Hook) -> Vec<(i32, String)> {
        h.list(f, hook).into_iter().map(|(p, s)| (p, s.to_string())).collect()
    }

    #[test]
    fn conntrack_ops_in_kernel_order() {
        let h = Hooks::with_conntrack();
        assert_eq!(
            names(&h, Family::V4, Hook::PreRouting),
            [(-400, "ipv4_conntrack_defrag".to_string()), (-200, "ipv4_conntrack_in".to_string())]
        );
        assert_eq!(names(&h, Family::V6, Hook::LocalIn), [(i32::MAX - 1, "ipv6_confirm".to_string())]);
        assert!(names(&h, Family::V4, Hook::Forward).is_empty());
    }

    #[test]
    fn equal_priorities_run_the_last_registered_first() {
        let h = Hooks::with_conntrack();
        let v = |x| OpKind::Chain(nft::builtin::verdict(x));
        h.register(NFPROTO_INET, Hook::Forward, 0, "a".into(), v(NF_ACCEPT)).unwrap();
        h.register(NFPROTO_IPV4, Hook::Forward, -5, "b".into(), v(NF_ACCEPT)).unwrap();
        let c = h.register(NFPROTO_IPV4, Hook::Forward, 0, "c".into(), v(NF_ACCEPT)).unwrap();
        let order: Vec<String> = names(&h, Family::V4, Hook::Forward).into_iter().map(|x| x.1).collect();
        assert_eq!(order, ["b", "c", "a"]);
        assert_eq!(h.list(Family::V6, Hook::Forward).len(), 1);
        assert!(h.unregister(c));
        assert!(!h.unregister(c));
        assert!(h.register(NFPROTO_ARP, Hook::Forward, 0, "x".into(), v(NF_ACCEPT)).is_err());
    }
}
