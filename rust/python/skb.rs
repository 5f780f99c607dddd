//! `nfct.Skb` (a packet and the state the stack keeps with it) and the six conntrack hook
//! functions named after the kernel's: `ipv4_conntrack_in`, `ipv4_conntrack_local`,
//! `ipv4_confirm` and their IPv6 twins.

use super::conn::Conn;
use super::errors::Error;
use super::net::Net;
use super::{seconds_to_ns, type_name};
use crate::core::CtRef;
use crate::ip::{bytes_seen, Skb as IpSkb};
use crate::net::Net as CoreNet;
use crate::uapi::{Hook, AF_INET, AF_INET6, NF_ACCEPT, NF_DROP};
use parking_lot::Mutex;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use std::sync::Arc;

/// The state a packet carries between hooks: what the IP stack keeps with it, and the
/// namespace whose entry it references (the reference is dropped with the packet).
pub(super) struct SkbInner {
    pub(super) pkt: IpSkb,
    pub(super) net: Option<Arc<CoreNet>>,
}

impl Drop for SkbInner {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            net.ct.release(&mut self.pkt.ct);
        }
    }
}

/// A packet: IPv4 or IPv6 bytes starting at the IP header, and its time in seconds.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct Skb {
    pub(super) data: Py<PyBytes>,
    tstamp: f64,
    pub(super) tstamp_ns: u64,
    pub(super) state: Mutex<SkbInner>,
}

#[pymethods]
impl Skb {
    #[new]
    #[pyo3(signature = (data, tstamp=0.0))]
    fn new(py: Python<'_>, data: &Bound<'_, PyAny>, tstamp: f64) -> PyResult<Skb> {
        let bytes = if let Ok(b) = data.cast::<PyBytes>() {
            b.clone().unbind()
        } else if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            let buf = PyBuffer::<u8>::get(data).map_err(|_| Error::type_("packet buffer is not bytes"))?;
            PyBytes::new(py, &buf.to_vec(py)?).unbind()
        } else {
            return Err(Error::type_(format!(
                "Skb data must be bytes, bytearray or memoryview, not {}",
                type_name(data)
            ))
            .into());
        };
        let tstamp_ns = seconds_to_ns(tstamp)?;
        Ok(Skb::from_parts(bytes, tstamp, tstamp_ns))
    }

    /// The packet's bytes as the IP stack sees them: trimmed to the IP length by the receive
    /// checks, and the whole datagram once defragmentation reassembled one.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        let st = self.state.lock();
        if st.pkt.whole.is_none() && st.pkt.len.is_none() {
            return self.data.clone_ref(py);
        }
        PyBytes::new(py, st.pkt.data(self.data.bind(py).as_bytes())).unbind()
    }

    /// The packet's time, seconds.
    #[getter]
    fn tstamp(&self) -> f64 {
        self.tstamp
    }

    /// The attached entry (`skb->_nfct`), or None.
    #[getter]
    fn nfct(&self) -> Option<Conn> {
        let st = self.state.lock();
        match (st.pkt.ct.nfct, &st.net) {
            (CtRef::Ct { slot, gen, .. }, Some(net)) if net.ct.get(slot, gen) => {
                Some(Conn { net: net.clone(), slot, gen })
            }
            _ => None,
        }
    }

    /// The ctinfo (`IP_CT_*`), IP_CT_UNTRACKED (7) when untracked, or None.
    #[getter]
    fn ctinfo(&self) -> Option<u8> {
        self.state.lock().pkt.ct.ctinfo()
    }

    /// Why the packet was found INVALID or dropped (the kernel's log message), else None.
    #[getter]
    fn invalid_reason(&self) -> Option<&'static str> {
        let st = self.state.lock();
        match st.pkt.ct.nfct {
            CtRef::None => st.pkt.ct.reason,
            _ => None,
        }
    }

    /// The ct state class an nft rule would see: "new", "established", "related",
    /// "invalid", "untracked".
    #[getter]
    fn ctstate(&self) -> &'static str {
        self.state.lock().pkt.ct.state().name()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<nfct.Skb len={} tstamp={} ctinfo={:?}>",
            self.data.bind(py).as_bytes().len(),
            self.tstamp,
            self.ctinfo()
        )
    }
}

impl Skb {
    pub(super) fn from_parts(data: Py<PyBytes>, tstamp: f64, tstamp_ns: u64) -> Skb {
        Skb { data, tstamp, tstamp_ns, state: Mutex::new(SkbInner { pkt: IpSkb::default(), net: None }) }
    }
}

/// `ipv4_conntrack_in` and friends: conntrack's `in` at `hook` for family `pf`, at the
/// packet's time (the namespace's clock moves to it).
fn hook_in(py: Python<'_>, net: &Net, skb: &Skb, hook: Hook, pf: u8) -> PyResult<u32> {
    let base = skb.data.bind(py).as_bytes();
    let mut st = skb.state.lock();
    other_net(&st, net)?;
    let SkbInner { pkt, net: owner } = &mut *st;
    let data = bytes_seen(pkt.whole.as_deref(), pkt.len, base);
    let now = net.inner.advance_to(skb.tstamp_ns);
    let verdict = net.inner.ct.conntrack_in(data, now, hook, pf, &mut pkt.ct);
    if matches!(pkt.ct.nfct, CtRef::Ct { .. }) {
        *owner = Some(net.inner.clone());
    }
    Ok(verdict)
}

/// A packet that carries an entry of another namespace's table cannot go through this one's
/// hooks: conntrack would leave it alone (it is tagged) and nothing would happen there.
fn other_net(st: &SkbInner, net: &Net) -> PyResult<()> {
    if st.net.as_ref().is_some_and(|n| !Arc::ptr_eq(n, &net.inner)) && st.pkt.ct.nfct != CtRef::None {
        return Err(Error::value("skb carries an entry of another Net: use a new Skb for each Net").into());
    }
    Ok(())
}

/// `ipv4_confirm` / `ipv6_confirm`, at the namespace's clock.
fn hook_confirm(net: &Net, skb: &Skb) -> PyResult<u32> {
    let mut st = skb.state.lock();
    other_net(&st, net)?;
    match &st.net {
        Some(n) if Arc::ptr_eq(n, &net.inner) => {}
        _ => return Ok(NF_ACCEPT),
    }
    let verdict = net.inner.ct.confirm(&mut st.pkt.ct, net.inner.now());
    if verdict == NF_DROP {
        // The packet is freed with its unconfirmed entry.
        net.inner.ct.release(&mut st.pkt.ct);
        st.net = None;
    }
    Ok(verdict)
}

/// `ipv4_conntrack_in`: the PRE_ROUTING hook.
#[pyfunction]
pub fn ipv4_conntrack_in(py: Python<'_>, net: &Net, skb: &Skb) -> PyResult<u32> {
    hook_in(py, net, skb, Hook::PreRouting, AF_INET)
}

/// `ipv4_conntrack_local`: the LOCAL_OUT hook (no checksum verification).
#[pyfunction]
pub fn ipv4_conntrack_local(py: Python<'_>, net: &Net, skb: &Skb) -> PyResult<u32> {
    hook_in(py, net, skb, Hook::LocalOut, AF_INET)
}

/// `ipv4_confirm`: the LOCAL_IN / POST_ROUTING confirm hook.
#[pyfunction]
pub fn ipv4_confirm(net: &Net, skb: &Skb) -> PyResult<u32> {
    hook_confirm(net, skb)
}

/// `ipv6_conntrack_in`: the PRE_ROUTING hook for IPv6.
#[pyfunction]
pub fn ipv6_conntrack_in(py: Python<'_>, net: &Net, skb: &Skb) -> PyResult<u32> {
    hook_in(py, net, skb, Hook::PreRouting, AF_INET6)
}

/// `ipv6_conntrack_local`: the LOCAL_OUT hook for IPv6.
#[pyfunction]
pub fn ipv6_conntrack_local(py: Python<'_>, net: &Net, skb: &Skb) -> PyResult<u32> {
    hook_in(py, net, skb, Hook::LocalOut, AF_INET6)
}

/// `ipv6_confirm`.
#[pyfunction]
pub fn ipv6_confirm(net: &Net, skb: &Skb) -> PyResult<u32> {
    hook_confirm(net, skb)
}
