//! The hook pipeline from Python: `NfHookOps`, `BuiltinHook`, `nf_register_net_hook`,
//! `ip_rcv` and friends, and the runner that calls Python hooks inside replays.

use super::args;
use super::errors::Error;
use super::net::Net;
use super::skb::Skb;
use super::type_name;
use crate::core::CtRef;
use crate::ip::{self, Carrier, ExtError, HookCall, Ingress, Outcome, PacketClock, PacketRun, Skb as IpSkb};
use crate::net::Net as CoreNet;
use crate::netfilter::nft::{builtin, ChainRef, NatKind};
use crate::netfilter::{self as nf, Family, HookTable, Op, OpKind};
use crate::replay::Runner;
use crate::tuple::Zone;
use crate::uapi::{
    Hook, NF_ACCEPT, NF_CT_STATE_ESTABLISHED_BIT, NF_CT_STATE_INVALID_BIT, NF_CT_STATE_NEW_BIT,
    NF_CT_STATE_RELATED_BIT, NF_CT_STATE_UNTRACKED_BIT, NF_DROP, NF_QUEUE, NF_REPEAT, NF_STOLEN, NF_STOP,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

/// What a Python hook's exception does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnError {
    /// Drop the packet and raise the exception to the caller (`ip_rcv`, `replay`).
    Raise,
    /// Drop the packet; the exception is kept in the result.
    Drop,
    /// Accept the packet (fail open); the exception is kept in the result.
    Accept,
}

/// The payload of an external operation: the Python callable.
struct PyHook {
    callable: Py<PyAny>,
    on_error: OnError,
}

/// A built-in operation, run in Rust at full speed (also inside replays).
#[pyclass(frozen, module = "nfct._nfct")]
#[derive(Clone)]
pub struct BuiltinHook {
    op: ChainRef,
    name: String,
    /// For a NAT statement: the hooks nft lets it run at.
    nat_hooks: Option<&'static [Hook]>,
}

/// A NAT statement's range flags, by nft's names.
fn nat_flags(flags: &[String]) -> Result<u32, Error> {
    let mut f = 0;
    for name in flags {
        f |= match name.as_str() {
            "random" => crate::nat::RANGE_PROTO_RANDOM,
            "fully-random" => crate::nat::RANGE_PROTO_RANDOM_FULLY,
            "persistent" => crate::nat::RANGE_PERSISTENT,
            other => {
                return Err(Error::value(format!(
                    "unknown NAT flag {other:?}: use random, fully-random or persistent"
                )))
            }
        };
    }
    Ok(f)
}

/// An address or a range of them: "10.0.0.1", "10.0.0.1-10.0.0.9" or a pair.
fn nat_addrs(addr: &Bound<'_, PyAny>) -> Result<(IpAddr, IpAddr), Error> {
    let parse = |s: &str| -> Result<IpAddr, Error> {
        s.trim().parse().map_err(|_| Error::value(format!("{s:?} is not an IP address")))
    };
    let (lo, hi) = if let Ok(s) = addr.extract::<String>() {
        match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let a = parse(&s)?;
                (a, a)
            }
        }
    } else if let Ok((a, b)) = addr.extract::<(String, String)>() {
        (parse(&a)?, parse(&b)?)
    } else {
        return Err(Error::type_(format!(
            "a NAT address is a string (\"10.0.0.1\" or \"10.0.0.1-10.0.0.9\") or a pair of them, not {}",
            type_name(addr)
        )));
    };
    if lo.is_ipv4() != hi.is_ipv4() {
        return Err(Error::value(format!("{lo}-{hi} mixes IPv4 and IPv6")));
    }
    let bytes = |a: IpAddr| match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    if bytes(lo) > bytes(hi) {
        return Err(Error::value(format!("{lo}-{hi} is an empty range")));
    }
    Ok((lo, hi))
}

/// A port or a range of them: 8080 or (1024, 2048).
fn nat_ports(port: Option<&Bound<'_, PyAny>>) -> Result<Option<(u16, u16)>, Error> {
    let Some(p) = port else { return Ok(None) };
    let (lo, hi) = if let Ok(n) = p.extract::<u16>() {
        (n, n)
    } else if let Ok(pair) = p.extract::<(u16, u16)>() {
        pair
    } else {
        return Err(Error::value(format!(
            "a NAT port is a port number or a (low, high) pair of them, not {}",
            p.repr().map(|r| r.to_string()).unwrap_or_default()
        )));
    };
    if lo > hi || lo == 0 {
        return Err(Error::value(format!("ports {lo}-{hi} are not a range of ports")));
    }
    Ok(Some((lo, hi)))
}

/// nft's words for a NAT statement.
fn nat_name(
    kind: NatKind,
    addrs: Option<(IpAddr, IpAddr)>,
    ports: Option<(u16, u16)>,
    flags: &[String],
) -> String {
    let mut s = kind.name().to_string();
    let fmt = |a: IpAddr| if a.is_ipv6() && ports.is_some() { format!("[{a}]") } else { a.to_string() };
    let addr = addrs.map(|(a, b)| if a == b { fmt(a) } else { format!("{}-{}", fmt(a), fmt(b)) });
    let port = ports.map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") });
    match (addr, port) {
        (Some(a), Some(p)) => s += &format!(" to {a}:{p}"),
        (Some(a), None) => s += &format!(" to {a}"),
        (None, Some(p)) => s += &format!(" to :{p}"),
        (None, None) => {}
    }
    if !flags.is_empty() {
        s += &format!(" {}", flags.join(","));
    }
    s
}

fn nat_builtin(
    kind: NatKind,
    addr: Option<&Bound<'_, PyAny>>,
    port: Option<&Bound<'_, PyAny>>,
    flags: Option<Vec<String>>,
) -> PyResult<BuiltinHook> {
    let flags = flags.unwrap_or_default();
    let addrs = addr.map(nat_addrs).transpose()?;
    let ports = nat_ports(port)?;
    let f = nat_flags(&flags)?;
    let hooks: &'static [Hook] = match kind {
        NatKind::Snat => &[Hook::PostRouting, Hook::LocalIn],
        NatKind::Masquerade => &[Hook::PostRouting],
        NatKind::Dnat | NatKind::Redirect => &[Hook::PreRouting, Hook::LocalOut],
    };
    Ok(BuiltinHook {
        op: builtin::nat(kind, addrs, ports, f),
        name: nat_name(kind, addrs, ports, &flags),
        nat_hooks: Some(hooks),
    })
}

fn verdict_arg(what: &str, v: u32) -> super::errors::Result<u32> {
    match v {
        NF_DROP | NF_ACCEPT => Ok(v),
        _ => Err(Error::value(format!("{what} must be NF_ACCEPT or NF_DROP, not {v}"))),
    }
}

fn verdict_name(v: u32) -> &'static str {
    match v {
        NF_DROP => "drop",
        NF_ACCEPT => "accept",
        NF_STOLEN => "stolen",
        NF_QUEUE => "queue",
        NF_REPEAT => "repeat",
        NF_STOP => "stop",
        _ => "?",
    }
}

const STATES: [(&str, u32); 5] = [
    ("invalid", NF_CT_STATE_INVALID_BIT),
    ("established", NF_CT_STATE_ESTABLISHED_BIT),
    ("related", NF_CT_STATE_RELATED_BIT),
    ("new", NF_CT_STATE_NEW_BIT),
    ("untracked", NF_CT_STATE_UNTRACKED_BIT),
];

#[pymethods]
impl BuiltinHook {
    /// `ct state invalid drop`.
    #[staticmethod]
    fn drop_invalid() -> BuiltinHook {
        BuiltinHook { op: builtin::drop_invalid(), name: "ct state invalid drop".into(), nat_hooks: None }
    }

    /// `ct state {STATES} VERDICT`, else `otherwise` (a chain's policy). States are
    /// "new", "established", "related", "invalid", "untracked".
    #[staticmethod]
    #[pyo3(signature = (states, verdict, otherwise=1))]
    fn ct_state(states: Vec<String>, verdict: u32, otherwise: u32) -> PyResult<BuiltinHook> {
        let mut mask = 0;
        for s in &states {
            let Some((_, bit)) = STATES.iter().find(|(n, _)| n == s) else {
                return Err(Error::value(format!(
                    "unknown ct state {s:?}: use new, established, related, invalid or untracked"
                ))
                .into());
            };
            mask |= bit;
        }
        if mask == 0 {
            return Err(Error::value("ct_state needs at least one state").into());
        }
        let (hit, miss) = (verdict_arg("verdict", verdict)?, verdict_arg("otherwise", otherwise)?);
        let name = format!("ct state {} {}", states.join(","), verdict_name(hit));
        Ok(BuiltinHook { op: builtin::ct_state(mask, hit, miss), name, nat_hooks: None })
    }

    /// `ct zone set ZONE` (a template): register it before conntrack (priority < -200, e.g.
    /// NF_IP_PRI_RAW) at PRE_ROUTING and LOCAL_OUT. `direction` "both" (default), "original"
    /// or "reply" makes a direction-specific zone.
    #[staticmethod]
    #[pyo3(signature = (zone, direction="both"))]
    fn ct_zone(#[pyo3(from_py_with = args::zone)] zone: u16, direction: &str) -> PyResult<BuiltinHook> {
        let dir = match direction {
            "both" => Zone::DIR_BOTH,
            "original" => Zone::DIR_ORIG,
            "reply" => Zone::DIR_REPL,
            _ => {
                return Err(Error::value(format!(
                    "direction must be both, original or reply, not {direction:?}"
                ))
                .into())
            }
        };
        let name = match direction {
            "both" => format!("ct zone set {zone}"),
            d => format!("ct {d} zone set {zone}"),
        };
        Ok(BuiltinHook { op: builtin::ct_zone(Zone { id: zone, dir }), name, nat_hooks: None })
    }

    /// `ct mark set MARK`: with `mask`, only the masked bits change.
    #[staticmethod]
    #[pyo3(signature = (mark, mask=0xffff_ffff))]
    fn ct_mark_set(
        #[pyo3(from_py_with = args::mark)] mark: u32,
        #[pyo3(from_py_with = args::mask)] mask: u32,
    ) -> BuiltinHook {
        let name = if mask == u32::MAX {
            format!("ct mark set {mark:#x}")
        } else {
            format!("ct mark set {mark:#x}/{mask:#x}")
        };
        BuiltinHook { op: builtin::ct_mark_set(mark, mask), name, nat_hooks: None }
    }

    /// `ct mark and MASK == MARK VERDICT`, else `otherwise`.
    #[staticmethod]
    #[pyo3(signature = (mark, verdict, mask=0xffff_ffff, otherwise=1))]
    fn ct_mark(
        #[pyo3(from_py_with = args::mark)] mark: u32,
        verdict: u32,
        #[pyo3(from_py_with = args::mask)] mask: u32,
        otherwise: u32,
    ) -> PyResult<BuiltinHook> {
        let (hit, miss) = (verdict_arg("verdict", verdict)?, verdict_arg("otherwise", otherwise)?);
        let name = format!("ct mark and {mask:#x} == {mark:#x} {}", verdict_name(hit));
        Ok(BuiltinHook { op: builtin::ct_mark(mark & mask, mask, hit, miss), name, nat_hooks: None })
    }

    /// `notrack`: register it before conntrack (NF_IP_PRI_RAW).
    #[staticmethod]
    fn notrack() -> BuiltinHook {
        BuiltinHook { op: builtin::notrack(), name: "notrack".into(), nat_hooks: None }
    }

    /// Always `verdict` (NF_ACCEPT or NF_DROP): a rule without a match, or a policy.
    #[staticmethod]
    fn verdict(verdict: u32) -> PyResult<BuiltinHook> {
        let v = verdict_arg("verdict", verdict)?;
        Ok(BuiltinHook { op: builtin::verdict(v), name: verdict_name(v).into(), nat_hooks: None })
    }

    /// `snat to ADDR[:PORT]` in a nat chain: `addr` is "192.0.2.1", a range
    /// "192.0.2.1-192.0.2.9" or a pair; `port` a port or a (low, high) pair; `flags` of
    /// "random", "fully-random", "persistent". An address of one family applies to that
    /// family's packets only. Register it at POST_ROUTING (or LOCAL_IN): NAT chains run at the
    /// NAT core's priority (NF_IP_PRI_NAT_SRC), theirs only ordering them among NAT chains.
    #[staticmethod]
    #[pyo3(signature = (addr, port=None, *, flags=None))]
    fn snat(
        addr: &Bound<'_, PyAny>,
        port: Option<&Bound<'_, PyAny>>,
        flags: Option<Vec<String>>,
    ) -> PyResult<BuiltinHook> {
        nat_builtin(NatKind::Snat, Some(addr), port, flags)
    }

    /// `dnat to ADDR[:PORT]`, as `snat`; register it at PRE_ROUTING (or LOCAL_OUT).
    #[staticmethod]
    #[pyo3(signature = (addr, port=None, *, flags=None))]
    fn dnat(
        addr: &Bound<'_, PyAny>,
        port: Option<&Bound<'_, PyAny>>,
        flags: Option<Vec<String>>,
    ) -> PyResult<BuiltinHook> {
        nat_builtin(NatKind::Dnat, Some(addr), port, flags)
    }

    /// `masquerade [to :PORT]`: source NAT to the address of the interface the packet leaves
    /// by (the host's, from its host file); register it at POST_ROUTING.
    #[staticmethod]
    #[pyo3(signature = (port=None, *, flags=None))]
    fn masquerade(port: Option<&Bound<'_, PyAny>>, flags: Option<Vec<String>>) -> PyResult<BuiltinHook> {
        nat_builtin(NatKind::Masquerade, None, port, flags)
    }

    /// `redirect [to :PORT]`: destination NAT to the host itself (the first address of the
    /// interface the packet came in on; 127.0.0.1 or ::1 for its own packets); register it at
    /// PRE_ROUTING or LOCAL_OUT.
    #[staticmethod]
    #[pyo3(signature = (port=None, *, flags=None))]
    fn redirect(port: Option<&Bound<'_, PyAny>>, flags: Option<Vec<String>>) -> PyResult<BuiltinHook> {
        nat_builtin(NatKind::Redirect, None, port, flags)
    }

    /// The rule it stands for, in nft's words.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __repr__(&self) -> String {
        format!("<nfct.BuiltinHook {:?}>", self.name)
    }
}

/// `struct nf_hook_ops`: a hook function (a callable `hook(skb, state) -> verdict`, or a
/// BuiltinHook), the family, the hook number and the priority.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct NfHookOps {
    hook: Py<PyAny>,
    #[pyo3(get)]
    pf: u8,
    #[pyo3(get)]
    hooknum: u32,
    #[pyo3(get)]
    priority: i32,
    #[pyo3(get)]
    name: String,
    on_error: OnError,
}

#[pymethods]
impl NfHookOps {
    #[new]
    #[pyo3(signature = (hook, pf, hooknum, priority, *, name=None, on_error="raise"))]
    fn new(
        hook: Bound<'_, PyAny>,
        pf: u8,
        hooknum: u32,
        #[pyo3(from_py_with = args::priority)] priority: i32,
        name: Option<String>,
        on_error: &str,
    ) -> PyResult<NfHookOps> {
        nf::families(pf).map_err(|e| Error::value(e.to_string()))?;
        if Hook::from_num(hooknum).is_none() {
            return Err(Error::value(nf::RegisterError::HookNum(hooknum).to_string()).into());
        }
        let on_error = match on_error {
            "raise" => OnError::Raise,
            "drop" => OnError::Drop,
            "accept" => OnError::Accept,
            _ => {
                return Err(
                    Error::value(format!("on_error must be raise, drop or accept, not {on_error:?}")).into()
                )
            }
        };
        let name = match (name, hook.cast::<BuiltinHook>()) {
            (Some(n), _) => n,
            (None, Ok(b)) => b.get().name.clone(),
            (None, Err(_)) if hook.is_callable() => hook
                .getattr("__qualname__")
                .or_else(|_| hook.getattr("__name__"))
                .and_then(|n| n.extract::<String>())
                .unwrap_or_else(|_| type_name(&hook)),
            (None, Err(_)) => {
                return Err(Error::type_(format!(
                    "hook must be a callable hook(skb, state) or a BuiltinHook, not {}",
                    type_name(&hook)
                ))
                .into())
            }
        };
        Ok(NfHookOps { hook: hook.unbind(), pf, hooknum, priority, name, on_error })
    }

    /// The hook function (a callable or a BuiltinHook).
    #[getter]
    fn hook(&self, py: Python<'_>) -> Py<PyAny> {
        self.hook.clone_ref(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<nfct.NfHookOps {:?} pf={} hooknum={} priority={}>",
            self.name, self.pf, self.hooknum, self.priority
        )
    }
}

/// `struct nf_hook_state`, as a Python hook sees it.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct HookState {
    #[pyo3(get)]
    hook: u32,
    #[pyo3(get)]
    pf: u8,
    #[pyo3(get)]
    net: Py<Net>,
}

#[pymethods]
impl HookState {
    fn __repr__(&self) -> String {
        format!("<nfct.HookState hook={} pf={}>", self.hook, self.pf)
    }
}

/// Where a packet's path ended.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct HookResult {
    /// The final verdict: NF_ACCEPT, NF_DROP or NF_STOLEN.
    verdict: u32,
    /// "local", "forward", "output" or "drop".
    #[pyo3(get)]
    path: &'static str,
    /// (hooknum, priority, name) of the operation that dropped or stole the packet.
    dropped_by: Option<(u32, i32, String)>,
    /// Why the IP stack or an operation dropped it, when it says (receive checks, routing,
    /// defrag, conntrack).
    #[pyo3(get)]
    reason: Option<String>,
    /// The exception a hook with on_error="drop" or "accept" raised.
    #[pyo3(get)]
    exception: Option<Py<PyAny>>,
}

static VERDICT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static HOOK_OP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A class of the `nfct` package's Python side, cached.
fn class<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))
        .map(|c| c.bind(py).clone())
}

#[pymethods]
impl HookResult {
    /// The final verdict, a `Verdict`: NF_ACCEPT, NF_DROP or NF_STOLEN.
    #[getter]
    fn verdict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        class(py, &VERDICT, "nfct._nfct", "Verdict")?.call1((self.verdict,))
    }

    /// `HookOp(hooknum, priority, name)` of the operation that dropped or stole the packet.
    #[getter]
    fn dropped_by<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        match &self.dropped_by {
            Some((h, p, n)) => Ok(Some(class(py, &HOOK_OP, "nfct._types", "HookOp")?.call1((*h, *p, n))?)),
            None => Ok(None),
        }
    }

    fn __repr__(&self) -> String {
        let by = match &self.dropped_by {
            Some((h, p, n)) => format!(" dropped_by=({h}, {p}, {n:?})"),
            None => String::new(),
        };
        format!("<nfct.HookResult verdict={} path={:?}{by}>", self.verdict, self.path)
    }
}

/// Registered operations of one Net, by the NfHookOps object that registered them.
#[derive(Default)]
pub struct Registry {
    ops: Vec<(Py<NfHookOps>, u64)>,
}

/// `nf_register_net_hook`: adds `ops` to `net`'s hooks (both families for NFPROTO_INET).
#[pyfunction]
pub fn nf_register_net_hook(py: Python<'_>, net: &Net, ops: Bound<'_, NfHookOps>) -> PyResult<()> {
    let mut reg = net.registry.lock();
    if reg.ops.iter().any(|(o, _)| o.is(&ops)) {
        return Err(Error::value(format!("{} is already registered", ops.get().__repr__())).into());
    }
    let o = ops.get();
    let hook = Hook::from_num(o.hooknum).unwrap_or(Hook::PreRouting);
    let kind = match o.hook.bind(py).cast::<BuiltinHook>() {
        Ok(b) => {
            if let Some(allowed) = b.get().nat_hooks {
                if !allowed.contains(&hook) {
                    let names: Vec<&str> = allowed.iter().map(|h| h.nft_name()).collect();
                    return Err(Error::value(format!(
                        "{} runs at {} only, not hooknum {}",
                        b.get().name,
                        names.join(" or "),
                        o.hooknum
                    ))
                    .into());
                }
            }
            OpKind::Chain(b.get().op.clone())
        }
        Err(_) => OpKind::External(Arc::new(PyHook { callable: o.hook.clone_ref(py), on_error: o.on_error })),
    };
    let id = net
        .inner
        .hooks
        .register(o.pf, hook, o.priority, o.name.as_str().into(), kind)
        .map_err(|e| Error::value(e.to_string()))?;
    reg.ops.push((ops.unbind(), id));
    Ok(())
}

/// `nf_unregister_net_hook`.
#[pyfunction]
pub fn nf_unregister_net_hook(net: &Net, ops: Bound<'_, NfHookOps>) -> PyResult<()> {
    let mut reg = net.registry.lock();
    let Some(i) = reg.ops.iter().position(|(o, _)| o.is(&ops)) else {
        return Err(Error::value(format!("{} is not registered", ops.get().__repr__())).into());
    };
    let (_, id) = reg.ops.remove(i);
    net.inner.hooks.unregister(id);
    Ok(())
}

/// Gives the pipeline a Python Skb's state, the reference on its entry owned by `net`.
struct SkbCarrier<'a> {
    skb: &'a Skb,
    net: &'a Arc<CoreNet>,
}

impl Carrier for SkbCarrier<'_> {
    fn with<R>(&self, f: impl FnOnce(&mut IpSkb) -> R) -> R {
        let mut st = self.skb.state.lock();
        let r = f(&mut st.pkt);
        if st.net.is_none() && matches!(st.pkt.ct.nfct, CtRef::Ct { .. }) {
            st.net = Some(self.net.clone());
        }
        r
    }
}

/// Calls Python hooks for the pipeline. Exceptions of on_error="drop"/"accept" hooks are kept
/// in `swallowed`.
fn python_ext<'a>(
    py: Python<'a>,
    net_obj: &'a Py<Net>,
    skb_obj: &'a Py<Skb>,
    swallowed: &'a RefCell<Option<PyErr>>,
) -> impl FnMut(&Op, HookCall) -> Result<u32, ExtError> + 'a {
    move |op: &Op, call: HookCall| {
        let OpKind::External(payload) = &op.kind else { return Ok(NF_ACCEPT) };
        let Some(h) = payload.downcast_ref::<PyHook>() else { return Ok(NF_ACCEPT) };
        let state =
            HookState { hook: call.hook as u32, pf: call.family.nfproto(), net: net_obj.clone_ref(py) };
        let res = h.callable.call1(py, (skb_obj.clone_ref(py), state)).and_then(|v| {
            let b = v.bind(py);
            if b.is_instance_of::<pyo3::types::PyBool>() {
                return Err(Error::type_(format!(
                    "hook {:?} returned a bool, not an NF_* verdict",
                    &*op.name
                ))
                .into());
            }
            b.extract::<u32>().map_err(|_| {
                Error::type_(format!(
                    "hook {:?} returned {}, not an NF_* verdict",
                    &*op.name,
                    b.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into())
                ))
                .into()
            })
        });
        match res {
            Ok(v) => Ok(v),
            Err(e) => {
                annotate(py, &e, op, call.hook);
                // KeyboardInterrupt and SystemExit are never swallowed: they stop the caller.
                let fatal = e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
                    || e.is_instance_of::<pyo3::exceptions::PySystemExit>(py);
                match h.on_error {
                    _ if fatal => Err(ExtError::new(e)),
                    OnError::Raise => Err(ExtError::new(e)),
                    OnError::Drop => {
                        *swallowed.borrow_mut() = Some(e);
                        Ok(NF_DROP)
                    }
                    OnError::Accept => {
                        *swallowed.borrow_mut() = Some(e);
                        Ok(NF_ACCEPT)
                    }
                }
            }
        }
    }
}

/// Names the hook on its exception: a note (shown in the traceback) and `nfct_hook`.
fn annotate(py: Python<'_>, e: &PyErr, op: &Op, hook: Hook) {
    let v = e.value(py);
    let where_ = (hook as u32, op.priority, op.name.to_string());
    let note =
        format!("raised by nfct hook {:?} (hooknum {}, priority {})", &*op.name, hook as u32, op.priority);
    let _ = v.call_method1("add_note", (note,));
    let _ = v.setattr("nfct_hook", where_);
}

fn result(py: Python<'_>, out: Outcome, swallowed: Option<PyErr>) -> HookResult {
    let name = out.dropped_by_name();
    let dropped_by = out
        .dropped_by
        .as_ref()
        .map(|o| (o.hooknum as u32, o.priority, name.unwrap_or_else(|| o.name.to_string())));
    // Only a packet that did not get through has a reason here (the replay's rule).
    let reason = if out.verdict == NF_ACCEPT { None } else { out.class().1 };
    HookResult {
        verdict: out.verdict,
        path: out.path.name(),
        dropped_by,
        reason: reason.map(str::to_string),
        exception: swallowed.map(|e| e.into_value(py).into_any()),
    }
}

/// One packet of a Python Skb through the stack.
fn run(
    py: Python<'_>,
    net: &Bound<'_, Net>,
    skb: &Bound<'_, Skb>,
    fam: Family,
    ingress: Ingress,
    dev: Option<&Bound<'_, PyAny>>,
) -> PyResult<HookResult> {
    let n = net.get();
    let dev = n.dev_arg(dev)?;
    let s = skb.get();
    {
        let st = s.state.lock();
        if st.net.as_ref().is_some_and(|o| !Arc::ptr_eq(o, &n.inner)) && st.pkt.ct.nfct != CtRef::None {
            return Err(Error::value("the packet carries an entry of another Net").into());
        }
    }
    let base = s.data.bind(py).as_bytes();
    let table = n.inner.hooks.snapshot();
    let carrier = SkbCarrier { skb: s, net: &n.inner };
    let net_obj = net.clone().unbind();
    let skb_obj = skb.clone().unbind();
    let swallowed = RefCell::new(None);
    let mut ext = python_ext(py, &net_obj, &skb_obj, &swallowed);
    let iif = (ingress == Ingress::Rcv).then(|| dev.or_else(|| n.inner.default_iif())).flatten();
    let run = PacketRun {
        ingress,
        all_local: false,
        tstamp: s.tstamp_ns,
        clock: PacketClock::Shared,
        iif,
        hint: None,
    };
    let mut out = ip::run_family(&n.inner, &table, fam, run, base, &carrier, &mut ext);
    if let Some(e) = out.error.take() {
        return Err(super::errors::hook_err(e));
    }
    Ok(result(py, out, swallowed.take()))
}

/// `ip_rcv`: an IPv4 packet arriving from the wire (PRE_ROUTING, routing, LOCAL_IN or
/// FORWARD + POST_ROUTING), on interface `dev` (a name or ifindex of the host; by default
/// its first interface that is up and not loopback). `skb.data` is then the packet as it
/// left (rewritten by NAT).
#[pyfunction]
#[pyo3(signature = (net, skb, dev=None))]
pub fn ip_rcv(
    py: Python<'_>,
    net: &Bound<'_, Net>,
    skb: &Bound<'_, Skb>,
    dev: Option<&Bound<'_, PyAny>>,
) -> PyResult<HookResult> {
    run(py, net, skb, Family::V4, Ingress::Rcv, dev)
}

/// `ipv6_rcv`: an IPv6 packet arriving from the wire, on interface `dev`.
#[pyfunction]
#[pyo3(signature = (net, skb, dev=None))]
pub fn ipv6_rcv(
    py: Python<'_>,
    net: &Bound<'_, Net>,
    skb: &Bound<'_, Skb>,
    dev: Option<&Bound<'_, PyAny>>,
) -> PyResult<HookResult> {
    run(py, net, skb, Family::V6, Ingress::Rcv, dev)
}

/// `ip_local_out`: an IPv4 packet this host sends (LOCAL_OUT, POST_ROUTING; to one of its own
/// addresses, back in through PRE_ROUTING and LOCAL_IN).
#[pyfunction]
pub fn ip_local_out(py: Python<'_>, net: &Bound<'_, Net>, skb: &Bound<'_, Skb>) -> PyResult<HookResult> {
    run(py, net, skb, Family::V4, Ingress::LocalOut, None)
}

/// `ip6_local_out`: an IPv6 packet this host sends.
#[pyfunction]
pub fn ip6_local_out(py: Python<'_>, net: &Bound<'_, Net>, skb: &Bound<'_, Skb>) -> PyResult<HookResult> {
    run(py, net, skb, Family::V6, Ingress::LocalOut, None)
}

/// The NAT core at one hook (`nf_nat_ipv4_fn` and its IPv6 twin) for the create/confirm
/// split: after `ipv4_conntrack_in`, the hook's nat chains bind a new connection (or it gets
/// its null binding) and the packet is rewritten to follow the binding. `dev` is the
/// interface the packet came in on, `out` the one it leaves by (masquerade needs it).
/// Returns the verdict; a drop releases the packet's new entry.
fn nat_fn(
    py: Python<'_>,
    net: &Net,
    skb: &Skb,
    fam: Family,
    hooknum: u32,
    dev: Option<&Bound<'_, PyAny>>,
    out: Option<&Bound<'_, PyAny>>,
) -> PyResult<u32> {
    let hook = match Hook::from_num(hooknum) {
        Some(h) if h != Hook::Forward => h,
        _ => {
            return Err(Error::value(format!(
                "hooknum {hooknum}: NAT runs at PRE_ROUTING, LOCAL_IN, LOCAL_OUT or POST_ROUTING"
            ))
            .into())
        }
    };
    let (iif, oif) = (net.dev_arg(dev)?, net.dev_arg(out)?);
    {
        let st = skb.state.lock();
        if st.net.as_ref().is_some_and(|o| !Arc::ptr_eq(o, &net.inner)) {
            return Ok(NF_ACCEPT);
        }
    }
    let base = skb.data.bind(py).as_bytes();
    let table = net.inner.hooks.snapshot();
    let carrier = SkbCarrier { skb, net: &net.inner };
    let run = PacketRun {
        ingress: Ingress::Rcv,
        all_local: false,
        tstamp: skb.tstamp_ns,
        clock: PacketClock::Shared,
        iif,
        hint: None,
    };
    let (verdict, _why) = ip::nat_hook(&net.inner, &table, fam, hook, run, oif, base, &carrier);
    if verdict != NF_ACCEPT {
        let mut st = skb.state.lock();
        net.inner.ct.release(&mut st.pkt.ct);
        st.net = None;
    }
    Ok(verdict)
}

/// `nf_nat_ipv4_fn`: the NAT core for an IPv4 packet at `hooknum`.
#[pyfunction]
#[pyo3(signature = (net, skb, hooknum, *, dev=None, out=None))]
pub fn nf_nat_ipv4_fn(
    py: Python<'_>,
    net: &Net,
    skb: &Skb,
    hooknum: u32,
    dev: Option<&Bound<'_, PyAny>>,
    out: Option<&Bound<'_, PyAny>>,
) -> PyResult<u32> {
    nat_fn(py, net, skb, Family::V4, hooknum, dev, out)
}

/// `nf_nat_ipv6_fn`: the NAT core for an IPv6 packet at `hooknum`.
#[pyfunction]
#[pyo3(signature = (net, skb, hooknum, *, dev=None, out=None))]
pub fn nf_nat_ipv6_fn(
    py: Python<'_>,
    net: &Net,
    skb: &Skb,
    hooknum: u32,
    dev: Option<&Bound<'_, PyAny>>,
    out: Option<&Bound<'_, PyAny>>,
) -> PyResult<u32> {
    nat_fn(py, net, skb, Family::V6, hooknum, dev, out)
}

/// The replay's runner when Python hooks are registered: each packet becomes an Skb the hooks
/// see, with the GIL taken for the packet's whole path.
pub struct PyRunner {
    pub net_obj: Py<Net>,
}

impl Runner for PyRunner {
    fn run(&mut self, net: &CoreNet, hooks: &HookTable, run: PacketRun<'_>, pkt: &[u8]) -> Outcome {
        Python::attach(|py| {
            let bytes = PyBytes::new(py, pkt).unbind();
            let skb = match Py::new(py, Skb::from_parts(bytes, run.tstamp as f64 / 1e9, run.tstamp)) {
                Ok(s) => s,
                Err(e) => {
                    let mut out = Outcome::dropped("nfct: could not make the packet's Skb");
                    out.error = Some(ExtError::new(e));
                    return out;
                }
            };
            let s = skb.get();
            let owner = self.net_obj.get().inner.clone();
            let carrier = SkbCarrier { skb: s, net: &owner };
            let swallowed = RefCell::new(None);
            let mut ext = python_ext(py, &self.net_obj, &skb, &swallowed);
            ip::run_with(net, hooks, run, pkt, &carrier, &mut ext)
            // The Skb goes with its last reference (a hook may keep it, and its entry with it).
        })
    }
}
