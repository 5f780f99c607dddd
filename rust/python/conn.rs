//! `nfct.Conn` (a live handle on an entry, `struct nf_conn *`) and `nfct.Tuple`
//! (`struct nf_conntrack_tuple`, constructible and invertible).

use super::args::{list_format, parse_addr};
use super::errors::{Error, Result};
use crate::conn::{ConnView, ProtoView};
use crate::format;
use crate::net::Net as CoreNet;
use crate::tuple::{self, L4Kind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use std::net::IpAddr;
use std::sync::Arc;

/// A live handle on an entry (`struct nf_conn *`): attributes always show its current state.
/// The handle holds a reference, so the entry stays readable (DYING) after it is deleted.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct Conn {
    pub(super) net: Arc<CoreNet>,
    pub(super) slot: u32,
    pub(super) gen: u32,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.net.ct.put(self.slot, self.gen);
    }
}

impl Conn {
    fn view(&self) -> ConnView {
        // The handle holds a reference, so the slot cannot be reused under it.
        self.net.ct.view(self.slot, self.gen, self.net.now(), true).unwrap_or_else(ConnView::dying)
    }
}

/// A cached attribute of the `nfct` package's Python side (its enums and named tuples).
fn nfct_attr<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))
        .map(|c| c.bind(py).clone())
}

/// The protocol state name ("ESTABLISHED", ...), None for stateless protocols.
fn state_name(v: &ConnView) -> Option<&'static str> {
    match v.proto {
        ProtoView::Tcp(s) | ProtoView::Sctp(s) => Some(s),
        _ => None,
    }
}

/// The fields of [`row_values`], in its order (`Conn.row`'s keys, `Net.columns`' columns).
pub(super) const ROW_FIELDS: [&str; 24] = [
    "l3num",
    "proto",
    "protonum",
    "timeout",
    "state",
    "src",
    "dst",
    "sport",
    "dport",
    "icmp_type",
    "icmp_code",
    "icmp_id",
    "reply_src",
    "reply_dst",
    "reply_sport",
    "reply_dport",
    "mark",
    "zone",
    "orig_packets",
    "orig_bytes",
    "reply_packets",
    "reply_bytes",
    "status",
    "line",
];

/// An entry's fields as Python values, in [`ROW_FIELDS`]' order: what its attributes show,
/// from one snapshot.
pub(super) fn row_values<'py>(py: Python<'py>, v: &ConnView) -> PyResult<[Bound<'py, PyAny>; 24]> {
    use pyo3::IntoPyObjectExt;
    let (o, r) = (Tuple { t: v.orig }, Tuple { t: v.reply });
    let mut line = String::new();
    format::ListFormat::Extended.line(v, &mut line);
    let counter =
        |dir: usize, packets: bool| v.acct.map(|a| if packets { a[dir].packets } else { a[dir].bytes });
    Ok([
        o.t.l3num.into_bound_py_any(py)?,
        format::proc_l4_name(o.t.protonum).into_bound_py_any(py)?,
        o.t.protonum.into_bound_py_any(py)?,
        v.timeout.into_bound_py_any(py)?,
        state_name(v).into_bound_py_any(py)?,
        o.src().into_bound_py_any(py)?,
        o.dst().into_bound_py_any(py)?,
        o.sport().into_bound_py_any(py)?,
        o.dport().into_bound_py_any(py)?,
        o.r#type().into_bound_py_any(py)?,
        o.code().into_bound_py_any(py)?,
        o.id().into_bound_py_any(py)?,
        r.src().into_bound_py_any(py)?,
        r.dst().into_bound_py_any(py)?,
        r.sport().into_bound_py_any(py)?,
        r.dport().into_bound_py_any(py)?,
        v.mark.into_bound_py_any(py)?,
        v.zone.id.into_bound_py_any(py)?,
        counter(0, true).into_bound_py_any(py)?,
        counter(0, false).into_bound_py_any(py)?,
        counter(1, true).into_bound_py_any(py)?,
        counter(1, false).into_bound_py_any(py)?,
        v.status.into_bound_py_any(py)?,
        line.into_bound_py_any(py)?,
    ])
}

static STATUS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COUNTERS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[pymethods]
impl Conn {
    /// The original-direction tuple.
    #[getter]
    fn orig(&self) -> Tuple {
        Tuple { t: self.view().orig }
    }

    /// The reply-direction tuple.
    #[getter]
    fn reply(&self) -> Tuple {
        Tuple { t: self.view().reply }
    }

    /// The IPS_* bits, as a `Status` flag (an int).
    #[getter]
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        nfct_attr(py, &STATUS, "nfct._nfct", "Status")?.call1((self.view().status,))
    }

    /// The protocol state name ("ESTABLISHED", ...) or None for stateless protocols.
    #[getter]
    fn state(&self) -> Option<&'static str> {
        state_name(&self.view())
    }

    /// Whole seconds left on the namespace's clock, as conntrack -L prints it.
    #[getter]
    fn timeout(&self) -> u64 {
        self.view().timeout
    }

    /// "tcp", "udp", "icmp", ... ("unknown" for protocols without a tracker).
    #[getter]
    fn proto(&self) -> &'static str {
        format::proc_l4_name(self.view().orig.protonum)
    }

    #[getter]
    fn mark(&self) -> u32 {
        self.view().mark
    }

    #[getter]
    fn zone(&self) -> u16 {
        self.view().zone.id
    }

    /// Per-direction `Counters(packets, bytes)` (original, reply) when accounting was on at
    /// creation, else None.
    #[getter]
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let Some(a) = self.view().acct else { return Ok(None) };
        let cls = nfct_attr(py, &COUNTERS, "nfct._types", "Counters")?;
        Ok(Some((cls.call1((a[0].packets, a[0].bytes))?, cls.call1((a[1].packets, a[1].bytes))?)))
    }

    /// Every field at once, from one snapshot of the entry (each attribute takes its own):
    /// the columns of `nfct.export`'s `entries` table but `family` and `flags`, with `l3num`.
    fn row<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        for (name, value) in ROW_FIELDS.iter().zip(row_values(py, &self.view())?) {
            d.set_item(pyo3::types::PyString::intern(py, name), value)?;
        }
        Ok(d)
    }

    /// This entry as one line of a listing (fmt as in Net.dump: "extended", "conntrack" or
    /// "proc").
    #[pyo3(signature = (fmt="extended"))]
    fn line(&self, fmt: &str) -> PyResult<String> {
        let fmt = list_format(fmt)?;
        let mut s = String::new();
        fmt.line(&self.view(), &mut s);
        Ok(s)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<Conn>() {
            Ok(o) => {
                let o = o.get();
                Arc::ptr_eq(&self.net, &o.net) && self.slot == o.slot && self.gen == o.gen
            }
            Err(_) => false,
        }
    }

    fn __hash__(&self) -> u64 {
        (u64::from(self.slot) << 32) | u64::from(self.gen)
    }

    fn __repr__(&self) -> String {
        let mut s = String::new();
        format::ListFormat::Conntrack.line(&self.view(), &mut s);
        format!("<nfct.Conn {s}>")
    }
}

/// A conntrack tuple (`nf_conntrack_tuple`): addresses, protocol, and the protocol's part
/// (ports; ICMP type, code and id; GRE keys). Immutable, hashable, equal by value.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct Tuple {
    pub(super) t: tuple::Tuple,
}

/// A 16-bit field of a tuple given from Python.
fn u16_arg(name: &str, v: Option<i64>) -> Result<Option<u16>> {
    v.map(|x| u16::try_from(x).map_err(|_| Error::value(format!("{name} must be 0..65535, not {x}"))))
        .transpose()
}

/// An 8-bit field of a tuple given from Python.
fn u8_arg(name: &str, v: Option<i64>) -> Result<Option<u8>> {
    v.map(|x| u8::try_from(x).map_err(|_| Error::value(format!("{name} must be 0..255, not {x}"))))
        .transpose()
}

#[pymethods]
impl Tuple {
    /// `Tuple(src, dst, protonum, sport, dport)` for TCP, UDP, UDPLITE and SCTP;
    /// `Tuple(src, dst, 1, type=8, code=0, id=7)` for ICMP and ICMPv6; `srckey=`/`dstkey=` for
    /// GRE; addresses and protocol only for the rest. Addresses are str or `ipaddress`
    /// objects, both of one family.
    #[new]
    #[pyo3(signature = (src, dst, protonum, sport=None, dport=None, *, r#type=None, code=None, id=None, srckey=None, dstkey=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        src: &Bound<'_, PyAny>,
        dst: &Bound<'_, PyAny>,
        protonum: i64,
        sport: Option<i64>,
        dport: Option<i64>,
        r#type: Option<i64>,
        code: Option<i64>,
        id: Option<i64>,
        srckey: Option<i64>,
        dstkey: Option<i64>,
    ) -> PyResult<Tuple> {
        let (s, d) = (parse_addr(src, "src")?, parse_addr(dst, "dst")?);
        let protonum = u8::try_from(protonum)
            .map_err(|_| Error::value(format!("protonum must be 0..255, not {protonum}")))?;
        let (sport, dport) = (u16_arg("sport", sport)?, u16_arg("dport", dport)?);
        let (typ, code, id) = (u8_arg("type", r#type)?, u8_arg("code", code)?, u16_arg("id", id)?);
        let (srckey, dstkey) = (u16_arg("srckey", srckey)?, u16_arg("dstkey", dstkey)?);
        let mut t = match (s, d) {
            (IpAddr::V4(a), IpAddr::V4(b)) => tuple::Tuple::new_v4(a, b, protonum, 0, 0),
            (IpAddr::V6(a), IpAddr::V6(b)) => tuple::Tuple::new_v6(a, b, protonum, 0, 0),
            _ => return Err(Error::value(format!("src {s} and dst {d} are of different families")).into()),
        };
        let kind = t.kind();
        let unused = |what: &str| -> PyErr {
            Error::value(format!("protocol {protonum} has no {what} in its tuple")).into()
        };
        if kind != L4Kind::Ports && (sport.is_some() || dport.is_some()) {
            return Err(unused("ports"));
        }
        if !matches!(kind, L4Kind::Icmp | L4Kind::Icmpv6) && (typ.is_some() || code.is_some() || id.is_some())
        {
            return Err(unused("ICMP type, code or id"));
        }
        if kind != L4Kind::Gre && (srckey.is_some() || dstkey.is_some()) {
            return Err(unused("GRE keys"));
        }
        match kind {
            L4Kind::Ports => {
                let (Some(sp), Some(dp)) = (sport, dport) else {
                    return Err(Error::value(format!("protocol {protonum} needs sport and dport")).into());
                };
                t.src_u = sp;
                t.dst_u = dp;
            }
            L4Kind::Icmp | L4Kind::Icmpv6 => {
                let Some(typ) = typ else {
                    return Err(Error::value("an ICMP tuple needs its type").into());
                };
                t.src_u = id.unwrap_or(0);
                t.dst_u = (u16::from(typ) << 8) | u16::from(code.unwrap_or(0));
            }
            L4Kind::Gre => {
                t.src_u = srckey.unwrap_or(0);
                t.dst_u = dstkey.unwrap_or(0);
            }
            L4Kind::Generic => {}
        }
        Ok(Tuple { t })
    }

    /// The tuple of the other direction (`nf_ct_invert_tuple`); ICMP types without a reply
    /// type cannot be inverted (NfctValueError).
    fn invert(&self) -> PyResult<Tuple> {
        match self.t.invert() {
            Some(t) => Ok(Tuple { t }),
            None => Err(Error::value(format!(
                "ICMP type {} has no reply type: the tuple cannot be inverted",
                self.t.icmp_type()
            ))
            .into()),
        }
    }

    #[getter]
    fn src(&self) -> String {
        self.t.src_addr().to_string()
    }
    #[getter]
    fn dst(&self) -> String {
        self.t.dst_addr().to_string()
    }
    /// AF_INET (2) or AF_INET6 (10).
    #[getter]
    fn l3num(&self) -> u8 {
        self.t.l3num
    }
    #[getter]
    fn protonum(&self) -> u8 {
        self.t.protonum
    }
    #[getter]
    fn sport(&self) -> Option<u16> {
        (self.t.kind() == L4Kind::Ports).then_some(self.t.src_u)
    }
    #[getter]
    fn dport(&self) -> Option<u16> {
        (self.t.kind() == L4Kind::Ports).then_some(self.t.dst_u)
    }
    /// ICMP/ICMPv6 type (conntrack -L's `type=`).
    #[getter]
    fn r#type(&self) -> Option<u8> {
        matches!(self.t.kind(), L4Kind::Icmp | L4Kind::Icmpv6).then(|| self.t.icmp_type())
    }
    #[getter]
    fn code(&self) -> Option<u8> {
        matches!(self.t.kind(), L4Kind::Icmp | L4Kind::Icmpv6).then(|| self.t.icmp_code())
    }
    /// ICMP/ICMPv6 echo id (conntrack -L's `id=`).
    #[getter]
    fn id(&self) -> Option<u16> {
        matches!(self.t.kind(), L4Kind::Icmp | L4Kind::Icmpv6).then_some(self.t.src_u)
    }
    /// GRE source key.
    #[getter]
    fn srckey(&self) -> Option<u16> {
        (self.t.kind() == L4Kind::Gre).then_some(self.t.src_u)
    }
    /// GRE destination key.
    #[getter]
    fn dstkey(&self) -> Option<u16> {
        (self.t.kind() == L4Kind::Gre).then_some(self.t.dst_u)
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Tuple>().is_ok_and(|o| o.get().t == self.t)
    }
    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.t.hash(&mut h);
        h.finish()
    }
    fn __repr__(&self) -> String {
        let mut s = format!("<nfct.Tuple src={} dst={} proto={}", self.src(), self.dst(), self.t.protonum);
        match self.t.kind() {
            L4Kind::Ports => s += &format!(" sport={} dport={}", self.t.src_u, self.t.dst_u),
            L4Kind::Icmp | L4Kind::Icmpv6 => {
                s += &format!(" type={} code={} id={}", self.t.icmp_type(), self.t.icmp_code(), self.t.src_u)
            }
            L4Kind::Gre => s += &format!(" srckey={:#x} dstkey={:#x}", self.t.src_u, self.t.dst_u),
            L4Kind::Generic => {}
        }
        s + ">"
    }
}
