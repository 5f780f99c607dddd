//! `nfct.ReplayResult`: what `Net.replay` or `Net.feed` did.

use super::batch::PacketRow;
use crate::replay::Summary;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// What a replay or a feed did: the counts `nfct replay` prints (as attributes, and by key as
/// a read-only mapping, `result["packets"]`), the reasons packets were INVALID or dropped,
/// the rules that dropped them, and (from `Net.feed`) each packet's result.
#[pyclass(frozen, module = "nfct._nfct", mapping)]
pub struct ReplayResult {
    summary: Summary,
    pub(super) per_packet: Option<Vec<PacketRow>>,
}

/// The counters of a result, by name, in the order they print.
fn counters(s: &Summary) -> [(&'static str, u64); 14] {
    [
        ("frames", s.frames),
        ("non_ip", s.non_ip),
        ("packets", s.packets),
        ("new", s.new),
        ("established", s.established),
        ("related", s.related),
        ("invalid", s.invalid),
        ("untracked", s.untracked),
        ("dropped", s.dropped),
        ("fragments", s.fragments),
        ("reassembled", s.reassembled),
        ("frag_timed_out", s.frag_timed_out),
        ("frag_dropped", s.frag_dropped),
        ("unsupported_link", s.unsupported_link),
    ]
}

impl ReplayResult {
    pub(super) fn from_summary(summary: Summary) -> ReplayResult {
        ReplayResult { summary, per_packet: None }
    }

    fn value<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        if let Some((_, v)) = counters(&self.summary).iter().find(|(k, _)| *k == key) {
            return Ok(Some(v.into_pyobject(py)?.into_any()));
        }
        Ok(match key {
            "reasons" => Some(self.reasons(py)?.into_any()),
            "dropped_by" => Some(self.dropped_by(py)?.into_any()),
            "unsupported_links" => Some(self.unsupported_links(py)?.into_any()),
            _ => None,
        })
    }

    const KEYS: [&'static str; 17] = [
        "frames",
        "non_ip",
        "packets",
        "new",
        "established",
        "related",
        "invalid",
        "untracked",
        "dropped",
        "fragments",
        "reassembled",
        "frag_timed_out",
        "frag_dropped",
        "unsupported_link",
        "reasons",
        "dropped_by",
        "unsupported_links",
    ];
}

#[pymethods]
impl ReplayResult {
    /// Records read from the captures.
    #[getter]
    fn frames(&self) -> u64 {
        self.summary.frames
    }
    /// Frames of a supported link type that carried no IP packet for the IP stack (ARP, IP
    /// inside MPLS, ...).
    #[getter]
    fn non_ip(&self) -> u64 {
        self.summary.non_ip
    }
    /// IP packets fed to the stack.
    #[getter]
    fn packets(&self) -> u64 {
        self.summary.packets
    }
    #[getter(new)]
    fn new_(&self) -> u64 {
        self.summary.new
    }
    #[getter]
    fn established(&self) -> u64 {
        self.summary.established
    }
    #[getter]
    fn related(&self) -> u64 {
        self.summary.related
    }
    #[getter]
    fn invalid(&self) -> u64 {
        self.summary.invalid
    }
    #[getter]
    fn untracked(&self) -> u64 {
        self.summary.untracked
    }
    #[getter]
    fn dropped(&self) -> u64 {
        self.summary.dropped
    }
    /// Fragments that entered reassembly.
    #[getter]
    fn fragments(&self) -> u64 {
        self.summary.fragments
    }
    #[getter]
    fn reassembled(&self) -> u64 {
        self.summary.reassembled
    }
    #[getter]
    fn frag_timed_out(&self) -> u64 {
        self.summary.frag_timed_out
    }
    #[getter]
    fn frag_dropped(&self) -> u64 {
        self.summary.frag_dropped
    }
    /// Frames of a link type nfct does not decode (never looked into; not in `non_ip`).
    #[getter]
    fn unsupported_link(&self) -> u64 {
        self.summary.unsupported_link
    }
    /// Those frames by link type (`LINKTYPE_*` number).
    #[getter]
    fn unsupported_links<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.summary.unsupported_links {
            d.set_item(*k, *v)?;
        }
        Ok(d)
    }
    /// How many packets were INVALID or dropped for each reason (the kernel's words).
    #[getter]
    fn reasons<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.summary.reasons {
            d.set_item(*k, *v)?;
        }
        Ok(d)
    }
    /// How many packets each rule dropped or stole, by the rule's name.
    #[getter]
    fn dropped_by<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.summary.dropped_by {
            d.set_item(k, *v)?;
        }
        Ok(d)
    }
    /// Each packet's result (from `Net.feed`), else None.
    #[getter]
    fn per_packet<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let Some(rows) = &self.per_packet else { return Ok(None) };
        let cls = py.import("nfct._types")?.getattr("PacketResult")?;
        let list = PyList::empty(py);
        for r in rows {
            list.append(cls.call1((r.frame, r.cls, r.reason, r.dropped_by.as_deref()))?)?;
        }
        Ok(Some(list))
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        self.value(py, key)?.ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(key.to_string()))
    }
    fn __contains__(&self, key: &str) -> bool {
        Self::KEYS.contains(&key)
    }
    fn __len__(&self) -> usize {
        Self::KEYS.len()
    }
    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyList::new(py, Self::KEYS)?.try_iter()?.into_any().unbind())
    }
    /// The keys, in the order they print.
    fn keys(&self) -> Vec<&'static str> {
        Self::KEYS.to_vec()
    }
    /// (key, value) pairs.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Vec<(&'static str, Bound<'py, PyAny>)>> {
        Self::KEYS.iter().map(|k| Ok((*k, self.__getitem__(py, k)?))).collect()
    }
    /// The value of `key`, or `default`.
    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.value(py, key)?.or(default))
    }
    /// The counts, reasons and rules as a plain dict (what `--output json` prints as
    /// "summary").
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for k in Self::KEYS {
            d.set_item(k, self.__getitem__(py, k)?)?;
        }
        Ok(d)
    }
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<ReplayResult>().is_ok_and(|o| {
            let o = o.get();
            o.summary == self.summary && o.per_packet == self.per_packet
        })
    }
    fn __repr__(&self) -> String {
        let s = &self.summary;
        format!(
            "<nfct.ReplayResult packets={} new={} established={} related={} invalid={} untracked={} dropped={}>",
            s.packets, s.new, s.established, s.related, s.invalid, s.untracked, s.dropped
        )
    }
}
