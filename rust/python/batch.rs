//! Packets from Python in bulk: `Net.feed` (records in memory, per-packet results) and
//! `Net.conntrack_batch` (one buffer, numpy columns). Both copy their input out of Python,
//! release the GIL unless Python hooks are registered, and drive the replay's [`Feeder`].

use super::args::replay_path;
use super::errors::{Error, Result};
use super::hooks::PyRunner;
use super::net::Net;
use super::{detached, seconds_to_ns, type_name};
use crate::replay::{Clock, Feeder, Runner, Summary};
use crate::table::BULK;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

/// One packet's result as `Net.feed` keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PacketRow {
    pub frame: u64,
    pub cls: &'static str,
    pub reason: Option<&'static str>,
    pub dropped_by: Option<String>,
}

/// A packet's span in a shared buffer, and its time (ns).
pub(super) struct Span {
    start: usize,
    end: usize,
    ts: u64,
}

/// Copies `(tstamp, bytes)` records out of Python into one buffer.
pub(super) fn records(records: &Bound<'_, PyAny>) -> Result<(Vec<u8>, Vec<Span>)> {
    let bad = || Error::type_("records must be an iterable of (tstamp, bytes) pairs");
    let mut buf = Vec::new();
    let mut spans = Vec::new();
    for (i, r) in records.try_iter().map_err(|_| bad())?.enumerate() {
        let r = r.map_err(|_| bad())?;
        let (t, data): (f64, Bound<'_, PyAny>) = r.extract().map_err(|_| {
            Error::type_(format!("record {i} must be a (tstamp, bytes) pair, not {}", type_name(&r)))
        })?;
        let ts = seconds_to_ns(t)?;
        let start = buf.len();
        if let Ok(b) = data.cast::<PyBytes>() {
            buf.extend_from_slice(b.as_bytes());
        } else if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            let pb =
                PyBuffer::<u8>::get(&data).map_err(|_| Error::type_(format!("record {i}: not bytes")))?;
            buf.extend_from_slice(
                &pb.to_vec(data.py()).map_err(|_| Error::type_(format!("record {i}: not bytes")))?,
            );
        } else {
            return Err(Error::type_(format!("record {i}: packet must be bytes, not {}", type_name(&data))));
        }
        spans.push(Span { start, end: buf.len(), ts });
    }
    Ok((buf, spans))
}

/// Feeds the packets through `feeder` in order, as a replay of a capture holding them would.
pub(super) fn feed<R: Runner>(
    feeder: &mut Feeder<'_, R>,
    buf: &[u8],
    spans: &[Span],
) -> Result<(Summary, Vec<PacketRow>)> {
    let mut summary =
        Summary { frames: spans.len() as u64, packets: spans.len() as u64, ..Summary::default() };
    let mut rows = Vec::with_capacity(spans.len());
    let defrag_before = feeder.net.defrag.counters();
    for (i, s) in spans.iter().enumerate() {
        let mut out = feeder.feed(&buf[s.start..s.end], s.ts);
        if let Some(e) = out.error.take() {
            return Err(Error::Hook(e));
        }
        summary.record(&out);
        let (class, reason) = out.class();
        rows.push(PacketRow {
            frame: i as u64 + 1,
            cls: class.name(),
            reason: reason
                .filter(|_| out.verdict != crate::uapi::NF_ACCEPT || class == crate::ip::Class::Invalid),
            dropped_by: out.dropped_by_name(),
        });
    }
    summary.add_defrag(defrag_before, feeder.net.defrag.counters());
    Ok((summary, rows))
}

/// `Net.conntrack_batch`: see its documentation.
pub(super) fn conntrack_batch<'py>(
    slf: &Bound<'py, Net>,
    py: Python<'py>,
    buffer: PyBuffer<u8>,
    offsets: &Bound<'py, PyAny>,
    tstamps: Option<&Bound<'py, PyAny>>,
    path: &str,
) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
    use numpy::{IntoPyArray, PyReadonlyArray1};
    if py.import("numpy").is_err() {
        return Err(super::errors::MissingExtraError::new_err(
            "Net.conntrack_batch needs numpy: pip install 'nfct[numpy]'",
        ));
    }
    let path = replay_path(path)?;
    let data: Vec<u8> = buffer.to_vec(py)?;
    let offsets: PyReadonlyArray1<'py, i64> = offsets.extract().map_err(|_| {
        let what = match offsets.getattr("dtype") {
            Ok(dt) => format!("an array of {}", dt.str().map(|s| s.to_string()).unwrap_or_default()),
            Err(_) => type_name(offsets),
        };
        Error::type_(format!("offsets must be a one-dimensional numpy int64 array, not {what}"))
    })?;
    let offs = offsets.as_slice().map_err(|_| Error::value("offsets must be a contiguous int64 array"))?;
    let n = offs.len().saturating_sub(1);
    for w in offs.windows(2) {
        if w[0] < 0 || w[0] > w[1] || w[1] as usize > data.len() {
            return Err(Error::value(format!(
                "offsets must rise within the buffer ({} bytes): {} then {}",
                data.len(),
                w[0],
                w[1]
            ))
            .into());
        }
    }
    let net = slf.get().inner.clone();
    let ts: Vec<u64> = match tstamps {
        Some(t) => {
            let t: PyReadonlyArray1<'py, f64> = t.extract().map_err(|_| {
                let what = match t.getattr("dtype") {
                    Ok(dt) => format!("an array of {}", dt.str().map(|s| s.to_string()).unwrap_or_default()),
                    Err(_) => type_name(t),
                };
                Error::type_(format!("tstamps must be a one-dimensional numpy float64 array, not {what}"))
            })?;
            let t = t.as_slice().map_err(|_| Error::value("tstamps must be a contiguous float64 array"))?;
            if t.len() != n {
                return Err(Error::value(format!("{} tstamps for {n} packets", t.len())).into());
            }
            t.iter().map(|&x| seconds_to_ns(x)).collect::<Result<_>>()?
        }
        None => vec![net.now(); n],
    };
    let offs: Vec<usize> = offs.iter().map(|&o| o as usize).collect();
    let mut verdicts = Vec::with_capacity(n);
    let mut ctinfo = Vec::with_capacity(n);
    // As a replay on the capture clock: the collector runs when it is due.
    let mut each = |f: &mut dyn FnMut(&[u8], u64) -> crate::ip::Outcome| -> Result<()> {
        for i in 0..n {
            let mut out = f(&data[offs[i]..offs[i + 1]], ts[i]);
            if let Some(e) = out.error.take() {
                return Err(Error::Hook(e));
            }
            verdicts.push(out.verdict);
            ctinfo.push(out.ctinfo().map_or(-1, |c| c as i8));
        }
        Ok(())
    };
    if net.hooks.snapshot().has_external() {
        let mut feeder =
            Feeder::with_runner(&net, path, Clock::Capture, PyRunner { net_obj: slf.clone().unbind() });
        each(&mut |pkt, t| feeder.feed(pkt, t))?;
    } else {
        detached(py, || {
            let mut feeder = Feeder::new(&net, path, Clock::Capture);
            let mut i = 0usize;
            each(&mut |pkt, t| {
                if i.is_multiple_of(BULK) {
                    let end = (i + BULK).min(n);
                    feeder.prefetch((i..end).map(|j| &data[offs[j]..offs[j + 1]]));
                }
                i += 1;
                feeder.feed(pkt, t)
            })
        })?;
    }
    Ok((verdicts.into_pyarray(py).into_any().unbind(), ctinfo.into_pyarray(py).into_any().unbind()))
}
