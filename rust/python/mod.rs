//! The Python module `nfct._nfct`: the only place that knows PyO3. One file per Python class
//! (or family of functions); every long call releases the GIL through [`detached`]; every Rust
//! error becomes a Python exception through `From<errors::Error> for PyErr`. No formatting,
//! replay or packet logic lives here: the binding converts arguments and results.

mod args;
mod batch;
mod conn;
mod consts;
mod errors;
mod filter;
mod hooks;
mod net;
mod observe;
mod result;
mod skb;

use errors::Error;
use pyo3::prelude::*;

/// The one place the GIL is released, around pure-Rust work.
fn detached<T: Send, F: FnOnce() -> T + Send>(py: Python<'_>, f: F) -> T {
    py.detach(f)
}

/// Float seconds (Python's time unit, scapy's `pkt.time`) to the core's nanoseconds.
fn seconds_to_ns(t: f64) -> Result<u64, Error> {
    if !t.is_finite() || t < 0.0 {
        return Err(Error::value(format!("tstamp must be a finite number >= 0, not {t}")));
    }
    Ok((t * 1e9).round() as u64)
}

/// A Python object's type name, for error messages.
fn type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

#[pymodule]
mod _nfct {
    #[pymodule_export]
    use super::conn::{Conn, Tuple};
    #[pymodule_export]
    use super::consts::link_type;
    #[pymodule_export]
    use super::hooks::{
        ip6_local_out, ip_local_out, ip_rcv, ipv6_rcv, nf_nat_ipv4_fn, nf_nat_ipv6_fn, nf_register_net_hook,
        nf_unregister_net_hook, BuiltinHook, HookResult, HookState, NfHookOps,
    };
    #[pymodule_export]
    use super::net::{Net, SysctlMap};
    #[pymodule_export]
    use super::result::ReplayResult;
    #[pymodule_export]
    use super::skb::{
        ipv4_confirm, ipv4_conntrack_in, ipv4_conntrack_local, ipv6_confirm, ipv6_conntrack_in,
        ipv6_conntrack_local, Skb,
    };
    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        super::consts::add(m)?;
        let names: Vec<&str> = crate::sysctl::SYSCTLS.iter().map(|s| s.1).collect();
        m.add("SYSCTL_NAMES", names)?;
        m.add("_LINK_TYPES_DECODED", crate::wire::link::DECODED)
    }
}
