//! `Net.replay(observe=...)`: what a report or an export needs from a replay, handed to a
//! Python callable in batches so memory stays bounded however long the capture:
//!
//! * `("packets", columns)`: one row per packet that carried IP (capture index, frame,
//!   tstamp, class, reason, the rule that dropped it, the packet's tuple, the table's
//!   occupancy after it), as a dict of equal-length lists, every `batch` packets and at the end;
//! * `("census", dict)`: what holds the table (entries by family, protocol, state and zone;
//!   the heaviest sources and destinations) every `census_every` seconds of capture time,
//!   spaced so that counting costs at most about a quarter of the replay (a scan of the table
//!   at most once per four times as many packets as it holds entries), and at the end;
//! * `("evictions", list)`: the entries `early_drop` evicted since the last call (the first
//!   `keep_evictions` of them; `("evictions_more", n)` counts the rest).

use crate::ctnetlink::census;
use crate::ip::{ExtError, Outcome};
use crate::net::Net;
use crate::replay::Observer;
use crate::tuple::packet_tuple;
use crate::uapi::{AF_INET, AF_INET6, IPPROTO_DCCP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

#[derive(Default)]
struct Columns {
    capture: Vec<usize>,
    frame: Vec<u64>,
    tstamp: Vec<f64>,
    cls: Vec<&'static str>,
    reason: Vec<Option<&'static str>>,
    dropped_by: Vec<Option<String>>,
    family: Vec<Option<&'static str>>,
    proto: Vec<Option<u8>>,
    src: Vec<Option<String>>,
    dst: Vec<Option<String>>,
    sport: Vec<Option<u16>>,
    dport: Vec<Option<u16>>,
    count: Vec<u64>,
}

impl Columns {
    fn len(&self) -> usize {
        self.frame.len()
    }

    fn into_dict(self, py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("capture", self.capture)?;
        d.set_item("frame", self.frame)?;
        d.set_item("tstamp", self.tstamp)?;
        d.set_item("cls", self.cls)?;
        d.set_item("reason", self.reason)?;
        d.set_item("dropped_by", self.dropped_by)?;
        d.set_item("family", self.family)?;
        d.set_item("proto", self.proto)?;
        d.set_item("src", self.src)?;
        d.set_item("dst", self.dst)?;
        d.set_item("sport", self.sport)?;
        d.set_item("dport", self.dport)?;
        d.set_item("count", self.count)?;
        Ok(d)
    }
}

/// The collector behind `observe=`.
pub(super) struct PyObserver {
    pub callback: Py<PyAny>,
    pub batch: usize,
    /// Capture time between two censuses, ns (0: only at the end).
    pub census_every: u64,
    cols: Columns,
    last_census: Option<u64>,
    since_census: u64,
    last_ts: u64,
}

fn py_err(e: PyErr) -> ExtError {
    ExtError::new(e)
}

impl PyObserver {
    pub fn new(callback: Py<PyAny>, batch: usize, census_every: u64) -> PyObserver {
        PyObserver {
            callback,
            batch: batch.max(1),
            census_every,
            cols: Columns::default(),
            last_census: None,
            since_census: 0,
            last_ts: 0,
        }
    }

    fn flush(&mut self, net: &Net) -> Result<(), ExtError> {
        let cols = std::mem::take(&mut self.cols);
        let (evicted, more) = net.ct.take_evictions();
        Python::attach(|py| -> PyResult<()> {
            if cols.len() > 0 {
                self.callback.call1(py, ("packets", cols.into_dict(py)?))?;
            }
            if !evicted.is_empty() {
                let list = PyList::empty(py);
                for ev in evicted {
                    let d = PyDict::new(py);
                    let v = &ev.view;
                    d.set_item("tstamp", ev.tstamp as f64 / 1e9)?;
                    let mut line = String::new();
                    crate::format::conntrack_line(v, false, &mut line);
                    d.set_item("line", line)?;
                    d.set_item("family", if v.orig.l3num == AF_INET { "ipv4" } else { "ipv6" })?;
                    d.set_item("proto", v.orig.protonum)?;
                    d.set_item("src", v.orig.src_addr().to_string())?;
                    d.set_item("dst", crate::tuple::addr(v.orig.l3num, &v.orig.dst).to_string())?;
                    let ports = has_ports(v.orig.protonum);
                    d.set_item("sport", ports.then_some(v.orig.src_u))?;
                    d.set_item("dport", ports.then_some(v.orig.dst_u))?;
                    let state = match v.proto {
                        crate::conn::ProtoView::Tcp(n) | crate::conn::ProtoView::Sctp(n) => n,
                        _ if v.status & crate::uapi::IPS_SEEN_REPLY != 0 => "REPLIED",
                        _ => "UNREPLIED",
                    };
                    d.set_item("state", state)?;
                    d.set_item("timeout", v.timeout)?;
                    d.set_item("age", v.tstamp.map(|t| ev.tstamp.saturating_sub(t.start) as f64 / 1e9))?;
                    list.append(d)?;
                }
                self.callback.call1(py, ("evictions", list))?;
            }
            if more > 0 {
                self.callback.call1(py, ("evictions_more", more))?;
            }
            Ok(())
        })
        .map_err(py_err)
    }

    fn census(&mut self, net: &Net, t: u64) -> Result<(), ExtError> {
        self.flush(net)?;
        let c = census(&net.ct, net.now(), 20);
        self.last_census = Some(t);
        self.since_census = 0;
        Python::attach(|py| -> PyResult<()> {
            let d = PyDict::new(py);
            d.set_item("tstamp", t as f64 / 1e9)?;
            d.set_item("total", c.total)?;
            let by: Vec<(&str, u8, &str, u16, u64)> = c
                .by_state
                .iter()
                .map(|((l3, p, s, z), n)| (if *l3 == AF_INET6 { "ipv6" } else { "ipv4" }, *p, *s, *z, *n))
                .collect();
            d.set_item("by_state", by)?;
            let addrs = |v: &[(std::net::IpAddr, u64)]| -> Vec<(String, u64)> {
                v.iter().map(|(a, n)| (a.to_string(), *n)).collect()
            };
            d.set_item("sources", addrs(&c.sources))?;
            d.set_item("destinations", addrs(&c.destinations))?;
            self.callback.call1(py, ("census", d))?;
            Ok(())
        })
        .map_err(py_err)
    }
}

fn has_ports(p: u8) -> bool {
    matches!(p, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP)
}

impl Observer for PyObserver {
    fn packet(
        &mut self,
        net: &Net,
        capture: usize,
        frame: u64,
        ts: u64,
        pkt: &[u8],
        out: &Outcome,
    ) -> Result<(), ExtError> {
        let (class, reason) = out.class();
        let c = &mut self.cols;
        c.capture.push(capture);
        c.frame.push(frame);
        c.tstamp.push(ts as f64 / 1e9);
        c.cls.push(class.name());
        c.reason.push(reason);
        c.dropped_by.push(out.dropped_by_name());
        let l3 = match crate::wire::ip::ip_version(pkt) {
            Some(4) => Some(AF_INET),
            Some(6) => Some(AF_INET6),
            _ => None,
        };
        let t = l3.and_then(|l3| packet_tuple(l3, pkt));
        c.family.push(l3.map(|f| if f == AF_INET { "ipv4" } else { "ipv6" }));
        c.proto.push(t.map(|t| t.protonum));
        c.src.push(t.map(|t| t.src_addr().to_string()));
        c.dst.push(t.map(|t| crate::tuple::addr(t.l3num, &t.dst).to_string()));
        let ports = t.filter(|t| has_ports(t.protonum));
        c.sport.push(ports.map(|t| t.src_u));
        c.dport.push(ports.map(|t| t.dst_u));
        let count = net.ct.count();
        c.count.push(count);
        self.last_ts = ts;
        self.since_census += 1;
        let due = self.census_every > 0
            && self.last_census.is_none_or(|l| ts.saturating_sub(l) >= self.census_every)
            && self.since_census >= 4 * count;
        if due {
            return self.census(net, ts);
        }
        if self.cols.len() >= self.batch {
            return self.flush(net);
        }
        Ok(())
    }

    fn finish(&mut self, net: &Net) -> Result<(), ExtError> {
        let t = self.last_ts;
        self.census(net, t)
    }
}
