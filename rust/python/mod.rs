//! The Python module `nfct._nfct`: the only place that knows PyO3. Thin wrappers over the
//! core; every long call releases the GIL through [`detached`]; every Rust error becomes a
//! Python exception through [`to_py_err`].

mod hooks;

use crate::core::{self, Hook, Net as CoreNet, NetOptions, Nfct};
use crate::format::{self, ConnView};
use crate::hooks::PacketState;
use crate::proto::tcp::RstTimeout;
use crate::replay::{Clock, Replay, ReplayError, ReplayPath, Summary};
use crate::sysctl::{Sysctl, SysctlError};
use crate::table::entry::IPS_BITS;
use crate::tuple::{self, L4Kind, AF_INET, AF_INET6};
use parking_lot::Mutex;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

pyo3::import_exception!(nfct.errors, NfctError);
pyo3::import_exception!(nfct.errors, NfctTypeError);
pyo3::import_exception!(nfct.errors, NfctValueError);
pyo3::import_exception!(nfct.errors, UnknownSysctlError);
pyo3::import_exception!(nfct.errors, CaptureError);

/// Errors raised by the binding layer, mapped to Python in one place.
enum Error {
    Type(String),
    Value(String),
    Sysctl(SysctlError),
    Capture {
        path: String,
        offset: u64,
        message: String,
        summary: Box<Summary>,
    },
    Io(String),
    /// A Python hook raised during a replay: the exception itself.
    Hook(crate::hooks::ExtError),
}

/// The single mapping from Rust errors to Python exceptions.
fn to_py_err(py: Python<'_>, e: Error) -> PyErr {
    match e {
        Error::Type(m) => NfctTypeError::new_err(m),
        Error::Value(m) => NfctValueError::new_err(m),
        Error::Sysctl(SysctlError::Unknown(n)) => {
            UnknownSysctlError::new_err(format!("unknown sysctl {n:?}"))
        }
        Error::Sysctl(e) => NfctValueError::new_err(e.to_string()),
        Error::Capture { path, offset, message, summary } => {
            let text = format!("{path}: {message} at byte offset {offset}");
            let err = CaptureError::new_err(text);
            let v = err.value(py);
            let _ = v.setattr("path", path);
            let _ = v.setattr("offset", offset);
            if let Ok(d) = summary_dict(py, &summary) {
                let _ = v.setattr("summary", d);
            }
            err
        }
        Error::Io(m) => NfctError::new_err(m),
        Error::Hook(e) => hooks::hook_err(e),
    }
}

/// The one place the GIL is released, around pure-Rust work.
fn detached<T: Send, F: FnOnce() -> T + Send>(py: Python<'_>, f: F) -> T {
    py.detach(f)
}

fn seconds_to_ns(py: Python<'_>, t: f64) -> PyResult<u64> {
    if !t.is_finite() || t < 0.0 {
        return Err(to_py_err(py, Error::Value(format!("tstamp must be a finite number >= 0, not {t}"))));
    }
    Ok((t * 1e9).round() as u64)
}

/// Validates and applies one sysctl value given from Python.
fn apply_sysctl(py: Python<'_>, net: &CoreNet, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if name.trim_start_matches("net.netfilter.") == "nf_conntrack_count" {
        return Err(to_py_err(py, Error::Sysctl(SysctlError::ReadOnly(name.to_string()))));
    }
    if value.is_instance_of::<pyo3::types::PyBool>() {
        return Err(to_py_err(py, Error::Type(format!("sysctl {name} takes an int, not bool"))));
    }
    let v: i128 = value.extract().map_err(|_| {
        to_py_err(py, Error::Type(format!("sysctl {name} takes an int, not {}", type_name(value))))
    })?;
    let (s, v) = Sysctl::validate(name, v).map_err(|e| to_py_err(py, Error::Sysctl(e)))?;
    net.set_sysctl(s, v);
    Ok(())
}

fn type_name(o: &Bound<'_, PyAny>) -> String {
    o.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// One conntrack table (a network namespace's conntrack), Linux 6.18 defaults.
#[pyclass(frozen, module = "nfct._nfct")]
struct Net {
    inner: Arc<CoreNet>,
    /// The operations registered from Python, by their NfHookOps.
    registry: Mutex<hooks::Registry>,
}

#[pymethods]
impl Net {
    #[new]
    #[pyo3(signature = (sysctl=None, *, seed=None, kernel="6.18", local_addrs=None))]
    fn new(
        py: Python<'_>,
        sysctl: Option<&Bound<'_, PyDict>>,
        seed: Option<u64>,
        kernel: &str,
        local_addrs: Option<Vec<String>>,
    ) -> PyResult<Net> {
        let local_addrs = local_addrs.unwrap_or_default();
        let mut addrs = Vec::with_capacity(local_addrs.len());
        for a in &local_addrs {
            let ip: std::net::IpAddr = a.parse().map_err(|_| {
                to_py_err(py, Error::Value(format!("local address {a:?} is not an IP address")))
            })?;
            addrs.push(ip);
        }
        // Where kernels differ (spec §7.10: the timeout of an in-window but inexact RST that
        // keeps an assured connection ESTABLISHED), follow this one.
        let rst_timeout = match kernel {
            "6.18" => RstTimeout::Close,
            "6.12" => RstTimeout::Unack,
            _ => {
                return Err(to_py_err(
                    py,
                    Error::Value(format!("kernel must be \"6.18\" or \"6.12\", not {kernel:?}")),
                ))
            }
        };
        let values = Sysctl::default();
        // The bucket count sizes the table, so it is read before the table is made.
        if let Some(d) = sysctl {
            if let Some(b) = d.get_item("nf_conntrack_buckets")? {
                let v: i128 = b.extract().map_err(|_| {
                    to_py_err(py, Error::Type("sysctl nf_conntrack_buckets takes an int".into()))
                })?;
                let (s, v) = Sysctl::validate("nf_conntrack_buckets", v)
                    .map_err(|e| to_py_err(py, Error::Sysctl(e)))?;
                values.set(s, v);
            }
        }
        let net = CoreNet::new(NetOptions { seed, rst_timeout, local_addrs: addrs }, values);
        if let Some(d) = sysctl {
            for (k, v) in d.iter() {
                let name: String =
                    k.extract().map_err(|_| to_py_err(py, Error::Type("sysctl names are str".into())))?;
                apply_sysctl(py, &net, &name, &v)?;
            }
        }
        Ok(Net { inner: Arc::new(net), registry: Mutex::default() })
    }

    /// The addresses this host owns, as given.
    #[getter]
    fn local_addrs(&self) -> Vec<String> {
        self.inner.stack.local.addrs().iter().map(|a| a.to_string()).collect()
    }

    /// The operations of one family's hook, in the order they run: (priority, name) pairs,
    /// conntrack's own included.
    fn hooks(&self, py: Python<'_>, pf: u8, hooknum: u32) -> PyResult<Vec<(i32, String)>> {
        hooks::hooks_of(py, &self.inner, pf, hooknum)
    }

    /// The sysctls, read and written by name as in /proc/sys/net/netfilter.
    #[getter]
    fn sysctl(&self) -> SysctlMap {
        SysctlMap { net: self.inner.clone() }
    }

    /// nf_conntrack_count: entries allocated, unconfirmed ones included.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.count()
    }

    /// The table's clock, in seconds.
    #[getter]
    fn now(&self) -> f64 {
        self.inner.now() as f64 / 1e9
    }

    /// The statistics, with the keys `conntrack -S` prints.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.stats().fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Moves the clock forward to `t` seconds (never back).
    fn advance(&self, py: Python<'_>, t: f64) -> PyResult<()> {
        let ns = seconds_to_ns(py, t)?;
        self.inner.advance(ns);
        Ok(())
    }

    /// Runs the garbage collector now; returns the number of entries reaped.
    fn gc(&self, py: Python<'_>) -> usize {
        let net = self.inner.clone();
        detached(py, move || net.gc())
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = PyList::empty(py);
        let net = self.inner.clone();
        let rows = detached(py, move || net.list());
        for (slot, gen, _) in rows {
            if self.inner.get(slot, gen) {
                list.append(Conn { net: self.inner.clone(), slot, gen })?;
            }
        }
        Ok(list.try_iter()?.into_any().unbind())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        let net = self.inner.clone();
        detached(py, move || net.list().len())
    }

    /// The table as text: fmt "extended" (`conntrack -L -o extended`), "conntrack"
    /// (`conntrack -L`) or "proc" (`/proc/net/nf_conntrack`).
    #[pyo3(signature = (fmt="extended"))]
    fn dump(&self, py: Python<'_>, fmt: &str) -> PyResult<String> {
        let kind = match fmt {
            "extended" | "conntrack" | "proc" => fmt.to_string(),
            _ => {
                return Err(to_py_err(
                    py,
                    Error::Value(format!("unknown dump format {fmt:?}: use extended, conntrack or proc")),
                ))
            }
        };
        let net = self.inner.clone();
        Ok(detached(py, move || dump_text(&net, &kind)))
    }

    /// Starts (or stops) listening for events, as `conntrack -E` does: with the default
    /// `nf_conntrack_events=2`, only entries created while someone listens send events. At most
    /// `capacity` messages wait to be read; more are lost and counted in `events_lost`.
    #[pyo3(signature = (on=true, capacity=65536))]
    fn listen_events(&self, on: bool, capacity: usize) {
        self.inner.events.listen(on, capacity);
    }

    /// The events sent since the last read, oldest first, as `conntrack -E -o extended` prints
    /// them (with `timestamps`, prefixed `[seconds.micros]` from the table's clock).
    #[pyo3(signature = (timestamps=false))]
    fn read_events(&self, timestamps: bool) -> Vec<String> {
        let mut out = Vec::new();
        self.inner.events.drain(|ev| {
            let mut line = String::new();
            ev.line(timestamps, &mut line);
            out.push(line);
        });
        out
    }

    /// Events lost because the queue was full (netlink's ENOBUFS).
    #[getter]
    fn events_lost(&self) -> u64 {
        self.inner.events.lost()
    }

    /// `conntrack -S` text.
    fn stats_text(&self) -> String {
        let mut s = String::new();
        format::stats_lines(&self.inner.stats(), &mut s);
        s
    }

    /// Replays captures (pcap or pcapng) through this table as a forwarding router would.
    /// Returns the summary as a dict. `packets_path` receives one `N CLASS [REASON]` line per
    /// packet, `events_path` the `conntrack -E -o extended` lines ("-" for standard output). A capture that cannot be read raises CaptureError after everything before the
    /// bad record was applied; its `summary` attribute holds the counts so far.
    #[pyo3(signature = (captures, *, clock="capture", packets_path=None, events_path=None, event_timestamps=false, path="forward", threads=1))]
    #[allow(clippy::too_many_arguments)]
    fn replay<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        captures: Vec<PathBuf>,
        clock: &str,
        packets_path: Option<PathBuf>,
        events_path: Option<PathBuf>,
        event_timestamps: bool,
        path: &str,
        threads: usize,
    ) -> PyResult<Bound<'py, PyDict>> {
        let path = replay_path(py, path)?;
        if threads == 0 || threads > 256 {
            return Err(to_py_err(py, Error::Value(format!("threads must be 1 to 256, not {threads}"))));
        }
        let clock = match clock {
            "capture" => Clock::Capture,
            "frozen" => Clock::Frozen,
            _ => {
                return Err(to_py_err(
                    py,
                    Error::Value(format!("clock must be 'capture' or 'frozen', not {clock:?}")),
                ))
            }
        };
        let net = slf.get().inner.clone();
        // Python hooks need the GIL per packet; built-in operations run without it.
        let mut py_driver =
            net.stack.snapshot().has_external().then(|| hooks::PyDriver { net_obj: slf.clone().unbind() });
        if threads > 1 && (py_driver.is_some() || events_path.is_some()) {
            return Err(to_py_err(
                py,
                Error::Value(
                    "threads > 1 runs built-in operations only and writes no events (their order \
                     would depend on the threads): use threads=1"
                        .into(),
                ),
            ));
        }
        let res = detached(py, move || -> Result<Summary, Error> {
            let mut summary = Summary::default();
            let mut out = open_output(packets_path.as_deref())?;
            let mut events = open_output(events_path.as_deref())?;
            let paths: Vec<&std::path::Path> = captures.iter().map(|p| p.as_path()).collect();
            let mut replay = Replay {
                clock,
                packets_out: out.as_mut().map(|f| f.as_mut() as &mut dyn Write),
                name_prefix: paths.len() > 1,
                events_out: events.as_mut().map(|f| f.as_mut() as &mut dyn Write),
                event_timestamps,
                path,
            };
            let ran = match py_driver.as_mut() {
                Some(d) => replay.run_with(&net, &paths, &mut summary, d),
                None => replay.run_threads(&net, &paths, &mut summary, threads),
            };
            match ran {
                Ok(()) => Ok(summary),
                Err(ReplayError::Capture(e)) => Err(Error::Capture {
                    path: e.path,
                    offset: e.offset,
                    message: e.message,
                    summary: Box::new(summary),
                }),
                Err(ReplayError::Output(e)) => Err(Error::Io(format!("writing packet lines: {e}"))),
                Err(ReplayError::Hook(e)) => Err(Error::Hook(e)),
                Err(ReplayError::Internal(m)) => Err(Error::Io(format!("replay failed: {m}"))),
            }
        });
        match res {
            Ok(s) => summary_dict(py, &s),
            Err(e) => Err(to_py_err(py, e)),
        }
    }

    /// Packets built by the caller, in bulk: packet i is `buffer[offsets[i]:offsets[i+1]]`
    /// (offsets has one entry more than there are packets) at `tstamps[i]` seconds (None: the
    /// table's current time), each through the hook pipeline as `replay` sends them (`path`).
    /// Returns numpy arrays (verdicts: uint32 NF_*; ctinfo: int8, -1 where no conntrack is
    /// attached). The GIL is released unless Python hooks are registered.
    #[pyo3(signature = (buffer, offsets, tstamps=None, *, path="forward"))]
    fn conntrack_batch<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        buffer: PyBuffer<u8>,
        offsets: numpy::PyReadonlyArray1<'py, i64>,
        tstamps: Option<numpy::PyReadonlyArray1<'py, f64>>,
        path: &str,
    ) -> PyResult<BatchArrays<'py>> {
        use numpy::IntoPyArray;
        let path = replay_path(py, path)?;
        let bad = |m: String| to_py_err(py, Error::Value(m));
        let data: Vec<u8> = buffer.to_vec(py)?;
        let offs = offsets.as_slice().map_err(|_| bad("offsets must be a contiguous int64 array".into()))?;
        let n = offs.len().saturating_sub(1);
        for w in offs.windows(2) {
            if w[0] < 0 || w[0] > w[1] || w[1] as usize > data.len() {
                return Err(bad(format!(
                    "offsets must rise within the buffer ({} bytes): {} then {}",
                    data.len(),
                    w[0],
                    w[1]
                )));
            }
        }
        let now = slf.get().inner.now();
        let ts: Vec<u64> = match &tstamps {
            Some(t) => {
                let t = t.as_slice().map_err(|_| bad("tstamps must be a contiguous float64 array".into()))?;
                if t.len() != n {
                    return Err(bad(format!("{} tstamps for {n} packets", t.len())));
                }
                t.iter().map(|&x| seconds_to_ns(py, x)).collect::<PyResult<_>>()?
            }
            None => vec![now; n],
        };
        let offs: Vec<usize> = offs.iter().map(|&o| o as usize).collect();
        let net = slf.get().inner.clone();
        let table = net.stack.snapshot();
        let mut verdicts = Vec::with_capacity(n);
        let mut ctinfo = Vec::with_capacity(n);
        let all_local = path == ReplayPath::LocalIn;
        let mut each = |d: &mut dyn crate::replay::Driver| -> Result<(), crate::hooks::ExtError> {
            for i in 0..n {
                if i % crate::table::BULK == 0 {
                    let end = (i + crate::table::BULK).min(n);
                    std::hint::black_box(net.prefetch_window((i..end).map(|j| &data[offs[j]..offs[j + 1]])));
                }
                let pkt = &data[offs[i]..offs[i + 1]];
                let entry = crate::replay::entry_for(path, &net, pkt);
                // As a replay on the capture clock: the collector runs when it is due.
                net.advance(ts[i]);
                net.gc_if_due();
                let p = d.packet(&net, &table, entry, all_local, pkt, ts[i])?;
                verdicts.push(p.verdict);
                ctinfo.push(p.ctinfo.map_or(-1, |c| c as i8));
            }
            Ok(())
        };
        let res = if table.has_external() {
            each(&mut hooks::PyDriver { net_obj: slf.clone().unbind() })
        } else {
            detached(py, || each(&mut crate::replay::Builtins::default()))
        };
        res.map_err(hooks::hook_err)?;
        Ok((verdicts.into_pyarray(py), ctinfo.into_pyarray(py)))
    }

    fn __repr__(&self) -> String {
        format!("<nfct.Net count={} buckets={}>", self.inner.count(), self.inner.table.nbuckets())
    }
}

/// What `conntrack_batch` returns: verdicts and ctinfo per packet.
type BatchArrays<'py> = (Bound<'py, numpy::PyArray1<u32>>, Bound<'py, numpy::PyArray1<i8>>);

fn replay_path(py: Python<'_>, path: &str) -> PyResult<ReplayPath> {
    match path {
        "forward" => Ok(ReplayPath::Forward),
        "local-in" => Ok(ReplayPath::LocalIn),
        "local-out" => Ok(ReplayPath::LocalOut),
        _ => Err(to_py_err(
            py,
            Error::Value(format!("path must be forward, local-in or local-out, not {path:?}")),
        )),
    }
}

/// Opens where per-packet or event lines go: "-" is this process's standard output, written
/// through its own descriptor so a redirection (even in append mode) keeps what was there.
fn open_output(path: Option<&std::path::Path>) -> Result<Option<Box<dyn Write>>, Error> {
    Ok(match path {
        Some(p) if p.as_os_str() == "-" => {
            Some(Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock())))
        }
        Some(p) => Some(Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|e| Error::Io(format!("{}: {e}", p.display())))?,
        ))),
        None => None,
    })
}

fn summary_dict<'py>(py: Python<'py>, s: &Summary) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in [
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
    ] {
        d.set_item(k, v)?;
    }
    let r = PyDict::new(py);
    for (k, v) in &s.reasons {
        r.set_item(*k, *v)?;
    }
    d.set_item("reasons", r)?;
    let by = PyDict::new(py);
    for (k, v) in &s.dropped_by {
        by.set_item(k, *v)?;
    }
    d.set_item("dropped_by", by)?;
    Ok(d)
}

/// The `use=` a /proc reader sees on an idle entry: the table's reference and its own.
const PROC_USE: u32 = 2;

fn dump_text(net: &CoreNet, fmt: &str) -> String {
    let mut out = String::new();
    for (_, _, mut v) in net.list() {
        match fmt {
            "proc" => {
                v.use_count = PROC_USE;
                format::proc_line(&v, &mut out)
            }
            "conntrack" => format::conntrack_line(&v, false, &mut out),
            _ => format::conntrack_line(&v, true, &mut out),
        }
        out.push('\n');
    }
    out
}

/// The sysctls of one table, as a mutable mapping.
#[pyclass(frozen, module = "nfct._nfct", mapping)]
struct SysctlMap {
    net: Arc<CoreNet>,
}

#[pymethods]
impl SysctlMap {
    fn __getitem__(&self, py: Python<'_>, name: &str) -> PyResult<u64> {
        if name.trim_start_matches("net.netfilter.") == "nf_conntrack_count" {
            return Ok(self.net.count());
        }
        self.net.sysctl.get_by_name(name).map_err(|e| to_py_err(py, Error::Sysctl(e)))
    }

    fn __setitem__(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        apply_sysctl(py, &self.net, name, value)
    }

    fn __contains__(&self, name: &str) -> bool {
        Sysctl::lookup(name).is_some() || name == "nf_conntrack_count"
    }

    fn __len__(&self) -> usize {
        crate::sysctl::SYSCTLS.len() + 1
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyList::new(py, self.keys())?.try_iter()?.into_any().unbind())
    }

    fn keys(&self) -> Vec<&'static str> {
        let mut k: Vec<&'static str> = crate::sysctl::SYSCTLS.iter().map(|s| s.1).collect();
        k.insert(1, "nf_conntrack_count");
        k
    }

    fn items(&self) -> Vec<(&'static str, u64)> {
        self.keys()
            .into_iter()
            .map(|k| {
                (
                    k,
                    if k == "nf_conntrack_count" {
                        self.net.count()
                    } else {
                        self.net.sysctl.get_by_name(k).unwrap_or(0)
                    },
                )
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("<nfct sysctl: {} entries>", self.__len__())
    }
}

/// The state a packet carries between hooks: its conntrack state (the reference on its
/// entry belongs to `net`), trimmed length and reassembled datagram.
struct SkbState {
    pkt: PacketState,
    net: Option<Arc<CoreNet>>,
}

impl Drop for SkbState {
    fn drop(&mut self) {
        if let Some(net) = self.net.take() {
            net.release(&mut self.pkt.ct);
        }
    }
}

/// A packet: IPv4 or IPv6 bytes starting at the IP header, and its time in seconds.
#[pyclass(frozen, module = "nfct._nfct")]
struct Skb {
    data: Py<PyBytes>,
    tstamp: f64,
    tstamp_ns: u64,
    state: Mutex<SkbState>,
}

#[pymethods]
impl Skb {
    #[new]
    #[pyo3(signature = (data, tstamp=0.0))]
    fn new(py: Python<'_>, data: &Bound<'_, PyAny>, tstamp: f64) -> PyResult<Skb> {
        let bytes = if let Ok(b) = data.cast::<PyBytes>() {
            b.clone().unbind()
        } else if data.is_instance_of::<pyo3::types::PyByteArray>()
            || data.is_instance_of::<pyo3::types::PyMemoryView>()
        {
            let buf = PyBuffer::<u8>::get(data)
                .map_err(|_| to_py_err(py, Error::Type("packet buffer is not bytes".into())))?;
            PyBytes::new(py, &buf.to_vec(py)?).unbind()
        } else {
            return Err(to_py_err(
                py,
                Error::Type(format!(
                    "Skb data must be bytes, bytearray or memoryview, not {}",
                    type_name(data)
                )),
            ));
        };
        let tstamp_ns = seconds_to_ns(py, tstamp)?;
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
            (Nfct::Ct { slot, gen, .. }, Some(net)) if net.get(slot, gen) => {
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
            Nfct::None => st.pkt.ct.reason,
            _ => None,
        }
    }

    /// The ct state class an nft rule would see: "new", "established", "related",
    /// "invalid", "untracked".
    #[getter]
    fn ctstate(&self) -> &'static str {
        self.state.lock().pkt.ct.class(core::NF_ACCEPT).name()
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
    fn from_parts(data: Py<PyBytes>, tstamp: f64, tstamp_ns: u64) -> Skb {
        Skb {
            data,
            tstamp,
            tstamp_ns,
            state: Mutex::new(SkbState { pkt: PacketState::default(), net: None }),
        }
    }
}

fn hook_in(py: Python<'_>, net: &Net, skb: &Skb, hook: Hook, pf: u8) -> u32 {
    let base = skb.data.bind(py).as_bytes();
    let mut st = skb.state.lock();
    if st.net.as_ref().is_some_and(|n| !Arc::ptr_eq(n, &net.inner)) && st.pkt.ct.nfct != Nfct::None {
        // Already carries another table's entry: conntrack leaves tagged packets alone.
        return core::NF_ACCEPT;
    }
    let SkbState { pkt, net: owner } = &mut *st;
    let data = crate::hooks::bytes_seen(pkt.whole.as_deref(), pkt.len, base);
    let verdict = net.inner.conntrack_in(data, skb.tstamp_ns, hook, pf, &mut pkt.ct);
    if matches!(pkt.ct.nfct, Nfct::Ct { .. }) {
        *owner = Some(net.inner.clone());
    }
    verdict
}

fn hook_confirm(net: &Net, skb: &Skb) -> u32 {
    let mut st = skb.state.lock();
    match &st.net {
        Some(n) if Arc::ptr_eq(n, &net.inner) => {}
        _ => return core::NF_ACCEPT,
    }
    let verdict = net.inner.confirm(&mut st.pkt.ct);
    if verdict == core::NF_DROP {
        // The packet is freed with its unconfirmed entry.
        let n = net.inner.clone();
        n.release(&mut st.pkt.ct);
        st.net = None;
    }
    verdict
}

/// `ipv4_conntrack_in`: the PRE_ROUTING hook.
#[pyfunction]
fn ipv4_conntrack_in(py: Python<'_>, net: &Net, skb: &Skb) -> u32 {
    hook_in(py, net, skb, Hook::PreRouting, AF_INET)
}

/// `ipv4_conntrack_local`: the LOCAL_OUT hook (no checksum verification).
#[pyfunction]
fn ipv4_conntrack_local(py: Python<'_>, net: &Net, skb: &Skb) -> u32 {
    hook_in(py, net, skb, Hook::LocalOut, AF_INET)
}

/// `ipv4_confirm`: the LOCAL_IN / POST_ROUTING confirm hook.
#[pyfunction]
fn ipv4_confirm(net: &Net, skb: &Skb) -> u32 {
    hook_confirm(net, skb)
}

/// `ipv6_conntrack_in`: the PRE_ROUTING hook for IPv6.
#[pyfunction]
fn ipv6_conntrack_in(py: Python<'_>, net: &Net, skb: &Skb) -> u32 {
    hook_in(py, net, skb, Hook::PreRouting, AF_INET6)
}

/// `ipv6_conntrack_local`: the LOCAL_OUT hook for IPv6.
#[pyfunction]
fn ipv6_conntrack_local(py: Python<'_>, net: &Net, skb: &Skb) -> u32 {
    hook_in(py, net, skb, Hook::LocalOut, AF_INET6)
}

/// `ipv6_confirm`.
#[pyfunction]
fn ipv6_confirm(net: &Net, skb: &Skb) -> u32 {
    hook_confirm(net, skb)
}

/// A live handle on an entry (`struct nf_conn *`): attributes always show its current state.
#[pyclass(frozen, module = "nfct._nfct")]
struct Conn {
    net: Arc<CoreNet>,
    slot: u32,
    gen: u32,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.net.put(self.slot, self.gen);
    }
}

impl Conn {
    fn view(&self) -> ConnView {
        // The handle holds a reference, so the slot cannot be reused under it.
        match self.net.view(self.slot, self.gen, true) {
            Some((v, _)) => v,
            None => ConnView {
                orig: tuple::Tuple::default(),
                reply: tuple::Tuple::default(),
                status: crate::table::entry::IPS_DYING,
                timeout: 0,
                proto: format::ProtoView::None,
                mark: 0,
                zone: tuple::Zone::default(),
                acct: None,
                tstamp: None,
                use_count: 0,
                id: 0,
            },
        }
    }
}

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

    /// IPS_* bits.
    #[getter]
    fn status(&self) -> u32 {
        self.view().status
    }

    /// The protocol state name ("ESTABLISHED", ...) or None for stateless protocols.
    #[getter]
    fn state(&self) -> Option<&'static str> {
        match self.view().proto {
            format::ProtoView::Tcp(s) | format::ProtoView::Sctp(s) => Some(s),
            _ => None,
        }
    }

    /// Whole seconds left on the table's clock, as conntrack -L prints it.
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

    /// Per-direction (packets, bytes) when accounting was on at creation, else None.
    #[getter]
    fn counters(&self) -> Option<((u64, u64), (u64, u64))> {
        self.view().acct.map(|a| ((a[0].packets, a[0].bytes), (a[1].packets, a[1].bytes)))
    }

    /// This entry as one `conntrack -L` line (fmt as in Net.dump).
    #[pyo3(signature = (fmt="extended"))]
    fn line(&self, fmt: &str) -> String {
        let mut v = self.view();
        let mut s = String::new();
        match fmt {
            "proc" => {
                v.use_count = PROC_USE;
                format::proc_line(&v, &mut s)
            }
            "conntrack" => format::conntrack_line(&v, false, &mut s),
            _ => format::conntrack_line(&v, true, &mut s),
        }
        s
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
        format!("<nfct.Conn {}>", self.line("conntrack"))
    }
}

/// A conntrack tuple (`nf_conntrack_tuple`).
#[pyclass(frozen, module = "nfct._nfct")]
struct Tuple {
    t: tuple::Tuple,
}

#[pymethods]
impl Tuple {
    #[getter]
    fn src(&self) -> String {
        self.t.src_addr().to_string()
    }
    #[getter]
    fn dst(&self) -> String {
        self.t.dst_addr().to_string()
    }
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
    #[getter]
    fn r#type(&self) -> Option<u8> {
        matches!(self.t.kind(), L4Kind::Icmp | L4Kind::Icmpv6).then(|| self.t.icmp_type())
    }
    #[getter]
    fn code(&self) -> Option<u8> {
        matches!(self.t.kind(), L4Kind::Icmp | L4Kind::Icmpv6).then(|| self.t.icmp_code())
    }
    #[getter]
    fn id(&self) -> Option<u16> {
        matches!(self.t.kind(), L4Kind::Icmp | L4Kind::Icmpv6).then_some(self.t.src_u)
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

#[pymodule]
fn _nfct(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Net>()?;
    m.add_class::<Skb>()?;
    m.add_class::<Conn>()?;
    m.add_class::<Tuple>()?;
    m.add_class::<SysctlMap>()?;
    m.add_function(wrap_pyfunction!(ipv4_conntrack_in, m)?)?;
    m.add_function(wrap_pyfunction!(ipv4_conntrack_local, m)?)?;
    m.add_function(wrap_pyfunction!(ipv4_confirm, m)?)?;
    m.add_function(wrap_pyfunction!(ipv6_conntrack_in, m)?)?;
    m.add_function(wrap_pyfunction!(ipv6_conntrack_local, m)?)?;
    m.add_function(wrap_pyfunction!(ipv6_confirm, m)?)?;
    m.add_class::<hooks::NfHookOps>()?;
    m.add_class::<hooks::BuiltinHook>()?;
    m.add_class::<hooks::HookState>()?;
    m.add_class::<hooks::HookResult>()?;
    m.add_function(wrap_pyfunction!(hooks::nf_register_net_hook, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::nf_unregister_net_hook, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::ip_rcv, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::ipv6_rcv, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::ip_local_out, m)?)?;
    m.add_function(wrap_pyfunction!(hooks::ip6_local_out, m)?)?;
    for (k, v) in [
        ("NFPROTO_UNSPEC", crate::hooks::NFPROTO_UNSPEC),
        ("NFPROTO_INET", crate::hooks::NFPROTO_INET),
        ("NFPROTO_IPV4", crate::hooks::NFPROTO_IPV4),
        ("NFPROTO_ARP", crate::hooks::NFPROTO_ARP),
        ("NFPROTO_NETDEV", crate::hooks::NFPROTO_NETDEV),
        ("NFPROTO_BRIDGE", crate::hooks::NFPROTO_BRIDGE),
        ("NFPROTO_IPV6", crate::hooks::NFPROTO_IPV6),
    ] {
        m.add(k, v)?;
    }
    for (k, v) in [
        ("NF_DROP", core::NF_DROP),
        ("NF_ACCEPT", core::NF_ACCEPT),
        ("NF_STOLEN", core::NF_STOLEN),
        ("NF_QUEUE", core::NF_QUEUE),
        ("NF_REPEAT", core::NF_REPEAT),
        ("NF_STOP", core::NF_STOP),
        ("NF_INET_PRE_ROUTING", Hook::PreRouting as u32),
        ("NF_INET_LOCAL_IN", Hook::LocalIn as u32),
        ("NF_INET_FORWARD", Hook::Forward as u32),
        ("NF_INET_LOCAL_OUT", Hook::LocalOut as u32),
        ("NF_INET_POST_ROUTING", Hook::PostRouting as u32),
        ("IP_CT_ESTABLISHED", core::IP_CT_ESTABLISHED.into()),
        ("IP_CT_RELATED", core::IP_CT_RELATED.into()),
        ("IP_CT_NEW", core::IP_CT_NEW.into()),
        ("IP_CT_IS_REPLY", core::IP_CT_IS_REPLY.into()),
        ("IP_CT_ESTABLISHED_REPLY", core::IP_CT_ESTABLISHED_REPLY.into()),
        ("IP_CT_RELATED_REPLY", core::IP_CT_RELATED_REPLY.into()),
        ("IP_CT_NUMBER", 5),
        ("IP_CT_UNTRACKED", core::IP_CT_UNTRACKED.into()),
        ("IP_CT_DIR_ORIGINAL", 0),
        ("IP_CT_DIR_REPLY", 1),
    ] {
        m.add(k, v)?;
    }
    for (k, v) in [
        ("NF_IP_PRI_FIRST", i32::MIN),
        ("NF_IP_PRI_RAW_BEFORE_DEFRAG", -450),
        ("NF_IP_PRI_CONNTRACK_DEFRAG", -400),
        ("NF_IP_PRI_RAW", -300),
        ("NF_IP_PRI_SELINUX_FIRST", -225),
        ("NF_IP_PRI_CONNTRACK", -200),
        ("NF_IP_PRI_MANGLE", -150),
        ("NF_IP_PRI_NAT_DST", -100),
        ("NF_IP_PRI_FILTER", 0),
        ("NF_IP_PRI_SECURITY", 50),
        ("NF_IP_PRI_NAT_SRC", 100),
        ("NF_IP_PRI_SELINUX_LAST", 225),
        ("NF_IP_PRI_CONNTRACK_HELPER", 300),
        ("NF_IP_PRI_CONNTRACK_CONFIRM", i32::MAX),
        ("NF_IP_PRI_LAST", i32::MAX),
    ] {
        m.add(k, v)?;
    }
    for (k, v) in IPS_BITS {
        m.add(*k, *v)?;
    }
    let names: Vec<&str> = crate::sysctl::SYSCTLS.iter().map(|s| s.1).collect();
    m.add("SYSCTL_NAMES", names)?;
    Ok(())
}
