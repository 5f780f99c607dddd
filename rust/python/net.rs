//! `nfct.Net` (one network namespace: its conntrack table, hooks, defrag, addresses and
//! clock) and its `sysctl` mapping.

use super::args::{
    self, frag_thresholds, list_format, parse_addrs, paths_arg, replay_clock, replay_path, sysctl_value,
    sysctl_write,
};
use super::batch;
use super::conn::{row_values, Conn, Tuple, ROW_FIELDS};
use super::errors::{Error, Result};
use super::filter::FilterArgs;
use super::hooks::{PyRunner, Registry};
use super::result::ReplayResult;
use super::{detached, seconds_to_ns};
use crate::format;
use crate::net::{Net as CoreNet, NetOptions};
use crate::netfilter::Family;
use crate::proto::tcp::RstTimeout;
use crate::replay::{Feeder, Replay, Summary};
use crate::sysctl::{Sysctl, SYSCTLS};
use crate::tuple::Zone;
use crate::uapi::Hook;
use crate::wire::link;
use parking_lot::Mutex;
use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// One network namespace: its conntrack table (Linux 6.18 defaults), netfilter hooks, defrag
/// queues, the addresses the host owns, and its clock.
#[pyclass(frozen, module = "nfct._nfct")]
pub struct Net {
    pub(super) inner: Arc<CoreNet>,
    /// The operations registered from Python, by their NfHookOps.
    pub(super) registry: Mutex<Registry>,
    /// The host file's ruleset (for its counters) and the ids of its registered chains (to
    /// replace it).
    ruleset: Mutex<Option<(Arc<crate::netfilter::nft::Ruleset>, Vec<u64>)>>,
    /// The host file's sysctls nfct does not apply.
    ignored: Vec<String>,
}

/// A host file given as a path (str or PathLike) or as its parsed JSON (a dict).
fn read_host(py: Python<'_>, h: &Bound<'_, PyAny>) -> Result<crate::host::Host> {
    let text = if h.is_instance_of::<PyDict>() {
        let json = py.import("json").map_err(|_| Error::value("json module unavailable"))?;
        json.call_method1("dumps", (h,))
            .and_then(|t| t.extract::<String>())
            .map_err(|e| Error::value(format!("host: the dict is not JSON: {e}")))?
    } else {
        let path: PathBuf = h.extract().map_err(|_| {
            Error::type_(format!("host must be a path or a dict, not {}", super::type_name(h)))
        })?;
        std::fs::read_to_string(&path).map_err(|e| Error::Output(path.display().to_string(), e))?
    };
    crate::host::Host::parse(&text).map_err(|e| Error::value(e.to_string()))
}

#[pymethods]
impl Net {
    #[new]
    #[pyo3(signature = (sysctl=None, *, seed=None, kernel="6.18", local_addrs=None, host=None, mtu=None))]
    fn new(
        py: Python<'_>,
        sysctl: Option<&Bound<'_, PyDict>>,
        #[pyo3(from_py_with = args::seed_opt)] seed: Option<u64>,
        kernel: &str,
        local_addrs: Option<&Bound<'_, PyAny>>,
        host: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::mtu_opt)] mtu: Option<u32>,
    ) -> PyResult<Net> {
        let addrs = match local_addrs {
            Some(v) => parse_addrs(v, "local_addrs")?,
            None => Vec::new(),
        };
        let host = match host {
            Some(h) => Some(read_host(py, h)?),
            None => None,
        };
        if host.is_some() && !addrs.is_empty() {
            return Err(Error::value(
                "local_addrs and host both say which addresses the host owns: give one",
            )
            .into());
        }
        if mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
            return Err(Error::value(format!("mtu must be 68 to 65535, not {}", mtu.unwrap_or(0))).into());
        }
        // Where kernels differ (spec §7.10: the timeout of an in-window but inexact RST that
        // keeps an assured connection ESTABLISHED), follow this one.
        let rst_timeout = match kernel {
            "6.18" => RstTimeout::Close,
            "6.12" => RstTimeout::Unack,
            _ => {
                return Err(
                    Error::value(format!("kernel must be \"6.18\" or \"6.12\", not {kernel:?}")).into()
                )
            }
        };
        let values = Sysctl::default();
        // The bucket count sizes the table, so it is read before the table is made.
        if let Some(d) = sysctl {
            if let Some(b) = d.get_item("nf_conntrack_buckets")? {
                let (s, v) = sysctl_value("nf_conntrack_buckets", &b)?;
                values.set(s, v);
            }
        }
        let (routing, ruleset, host_sysctls, ignored) = match host {
            Some(mut h) => {
                if let Some(m) = mtu {
                    h.set_default_route_mtu(m);
                }
                (Some(h.routing), h.ruleset.map(Arc::new), h.sysctls, h.ignored)
            }
            None => (None, None, Vec::new(), Vec::new()),
        };
        let egress_mtu = if routing.is_none() { mtu } else { None };
        let opts = NetOptions { seed, rst_timeout, local_addrs: addrs, routing, egress_mtu };
        let net = CoreNet::new(opts, values);
        // The host file's conntrack sysctls first; the caller's win over them.
        for (k, v) in host_sysctls {
            if sysctl.is_some_and(|d| d.contains(crate::sysctl::Sysctl::name(k)).unwrap_or(false)) {
                continue;
            }
            net.set_sysctl(k, v);
        }
        let ruleset = ruleset.map(|rs| {
            let ids = crate::host::install(&net, &rs);
            (rs, ids)
        });
        if let Some(d) = sysctl {
            for (k, v) in d.iter() {
                let name: String = k.extract().map_err(|_| Error::type_("sysctl names are str"))?;
                let (s, v) = sysctl_value(&name, &v)?;
                net.set_sysctl(s, v);
            }
            frag_thresholds(net.sysctl())?;
        }
        Ok(Net { inner: Arc::new(net), registry: Mutex::default(), ruleset: Mutex::new(ruleset), ignored })
    }

    /// A namespace modelling a host: `host` is a host file (`nfct host-snapshot`) as a path,
    /// or its parsed JSON as a dict. The same as `Net(host=host, ...)`.
    #[classmethod]
    #[pyo3(signature = (host, sysctl=None, *, seed=None, kernel="6.18", mtu=None))]
    fn from_host(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        host: &Bound<'_, PyAny>,
        sysctl: Option<&Bound<'_, PyDict>>,
        #[pyo3(from_py_with = args::seed_opt)] seed: Option<u64>,
        kernel: &str,
        #[pyo3(from_py_with = args::mtu_opt)] mtu: Option<u32>,
    ) -> PyResult<Net> {
        Net::new(py, sysctl, seed, kernel, None, Some(host), mtu)
    }

    /// The host file's sysctls nfct does not apply (it models only conntrack's, forwarding
    /// and rp_filter), by name.
    #[getter]
    fn ignored_sysctls(&self) -> Vec<String> {
        self.ignored.clone()
    }

    /// The interfaces of the modelled host: (ifindex, name, mtu, up) tuples (none for the
    /// default router).
    #[getter]
    fn interfaces(&self) -> Vec<(u32, String, u32, bool)> {
        self.inner.devices().all().iter().map(|d| (d.index, d.name.clone(), d.mtu, d.up)).collect()
    }

    /// The ruleset's counters after what ran so far: one dict per counter, with `family`,
    /// `table`, `chain` and `handle` (a rule's anonymous counter) or `name` (a named counter
    /// object), `packets` and `bytes`.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let mut out = Vec::new();
        let rs = self.ruleset.lock().as_ref().map(|(r, _)| r.clone());
        for site in rs.iter().flat_map(|r| r.counters.iter()) {
            let d = PyDict::new(py);
            let (packets, bytes) = site.counter.get();
            d.set_item("family", site.family.name())?;
            d.set_item("table", &site.table)?;
            d.set_item("chain", &site.chain)?;
            d.set_item("handle", site.handle)?;
            d.set_item("name", &site.name)?;
            d.set_item("packets", packets)?;
            d.set_item("bytes", bytes)?;
            out.push(d);
        }
        Ok(out)
    }

    /// Replaces the host's nftables ruleset (`nft -f` of a whole ruleset, atomically between
    /// two packets): `host` is a host file (path or dict: its "ruleset" part) or an `nft -j list
    /// ruleset` document. Entries already made keep what they had (their NAT bindings
    /// included); new connections meet the new rules. The host's interfaces, routes and
    /// sysctls stay as they were. Operations registered from Python stay registered.
    fn load_ruleset(&self, py: Python<'_>, host: &Bound<'_, PyAny>) -> PyResult<()> {
        let nft_doc = |d: &Bound<'_, PyAny>| -> bool {
            d.cast::<PyDict>().is_ok_and(|d| d.contains("nftables").unwrap_or(false))
        };
        let h = if nft_doc(host) {
            let wrapped = PyDict::new(py);
            wrapped.set_item("ruleset", host)?;
            read_host(py, wrapped.as_any())?
        } else {
            read_host(py, host)?
        };
        let new = h.ruleset.map(Arc::new);
        let mut cur = self.ruleset.lock();
        if let Some((_, ids)) = cur.take() {
            for id in ids {
                self.inner.hooks.unregister(id);
            }
        }
        *cur = new.map(|rs| {
            let ids = crate::host::install(&self.inner, &rs);
            (rs, ids)
        });
        Ok(())
    }

    /// The addresses this host owns, as given.
    #[getter]
    fn local_addrs(&self) -> Vec<String> {
        self.inner.local.addrs().iter().map(|a| a.to_string()).collect()
    }

    /// The operations of one family's hook, in the order they run: (priority, name) pairs,
    /// conntrack's own included.
    fn hooks(&self, pf: u8, hooknum: u32) -> PyResult<Vec<(i32, String)>> {
        let Some(fam) = Family::of_nfproto(pf) else {
            return Err(Error::value(format!(
                "pf must be NFPROTO_IPV4 or NFPROTO_IPV6 (each family has its own hooks), not {pf}"
            ))
            .into());
        };
        let Some(hook) = Hook::from_num(hooknum) else {
            return Err(Error::value(format!("hooknum {hooknum} is not an inet hook (0..=4)")).into());
        };
        Ok(self.inner.hooks.list(fam, hook).into_iter().map(|(p, n)| (p, n.to_string())).collect())
    }

    /// The sysctls, read and written by name as in /proc/sys/net/netfilter.
    #[getter]
    fn sysctl(&self) -> SysctlMap {
        SysctlMap { net: self.inner.clone() }
    }

    /// nf_conntrack_count: entries allocated, unconfirmed ones included.
    #[getter]
    fn count(&self) -> u64 {
        self.inner.ct.count()
    }

    /// The namespace's clock, in seconds.
    #[getter]
    fn now(&self) -> f64 {
        self.inner.now() as f64 / 1e9
    }

    /// The statistics, with the keys `conntrack -S` prints.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.inner.ct.stats().fields() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    /// Moves the clock forward to `t` seconds (absolute; never back).
    fn advance_to(&self, t: f64) -> PyResult<()> {
        self.inner.advance_to(seconds_to_ns(t)?);
        Ok(())
    }

    /// The same as `advance_to` (the clock moves to `t` seconds, not by `t`).
    fn advance(&self, t: f64) -> PyResult<()> {
        self.advance_to(t)
    }

    /// Runs the garbage collector now; returns the number of entries reaped.
    fn gc(&self, py: Python<'_>) -> usize {
        let net = self.inner.clone();
        detached(py, move || net.ct.gc(net.now()))
    }

    /// The confirmed entries, as `conntrack -L` lists them (listing reaps expired entries, with
    /// their DESTROY events, as the kernel's does).
    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = PyList::empty(py);
        let net = self.inner.clone();
        let rows = detached(py, move || net.ct.list(net.now()));
        for (slot, gen, _) in rows {
            if self.inner.ct.get(slot, gen) {
                list.append(Conn { net: self.inner.clone(), slot, gen })?;
            }
        }
        Ok(list.try_iter()?.into_any().unbind())
    }

    /// The table as columns, one list per field of `Conn.row` (the entries a listing shows
    /// now, in its order): what `nfct.export`'s `entries` table is built from, without a
    /// handle per entry.
    fn columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let net = self.inner.clone();
        let rows = detached(py, move || net.ct.list(net.now()));
        let cols: Vec<Bound<'py, PyList>> = ROW_FIELDS.iter().map(|_| PyList::empty(py)).collect();
        for (_, _, v) in &rows {
            for (col, value) in cols.iter().zip(row_values(py, v)?) {
                col.append(value)?;
            }
        }
        let d = PyDict::new(py);
        for (name, col) in ROW_FIELDS.iter().zip(cols) {
            d.set_item(pyo3::types::PyString::intern(py, name), col)?;
        }
        Ok(d)
    }

    /// The number of confirmed entries a listing shows now (it reaps expired ones, as
    /// `conntrack -L` does); `count` is nf_conntrack_count, unconfirmed entries included.
    fn __len__(&self, py: Python<'_>) -> usize {
        let net = self.inner.clone();
        detached(py, move || net.ct.count_listed(net.now()))
    }

    /// The table as text: fmt "extended" (`conntrack -L -o extended`), "conntrack"
    /// (`conntrack -L`) or "proc" (`/proc/net/nf_conntrack`).
    #[pyo3(signature = (fmt="extended"))]
    fn dump(&self, py: Python<'_>, fmt: &str) -> PyResult<String> {
        let fmt = list_format(fmt)?;
        let net = self.inner.clone();
        Ok(detached(py, move || {
            let rows = net.ct.list(net.now());
            let mut out = String::new();
            fmt.listing(rows.iter().map(|r| &r.2), &mut out);
            out
        }))
    }

    /// `conntrack -G`: the entry holding `tuple` in either direction (in `zone`), or None.
    #[pyo3(signature = (tuple, *, zone=0))]
    fn get(&self, tuple: &Tuple, #[pyo3(from_py_with = args::zone)] zone: u16) -> Option<Conn> {
        let z = Zone { id: zone, dir: Zone::DIR_BOTH };
        let (slot, gen, _) = self.inner.ct.find_get(&tuple.t, z, self.inner.now())?;
        Some(Conn { net: self.inner.clone(), slot, gen })
    }

    /// `conntrack -D`: deletes `conn`, or every entry the filters select (the long options
    /// of conntrack: `proto` ("tcp" or a number), `family` ("ipv4"/"ipv6"), `src`/`dst` and
    /// `reply_src`/`reply_dst` (an address or a prefix "10.0.0.0/8"), `sport`/`dport` and
    /// their reply twins, `mark` with `mask`, `zone`, `state` (a TCP or SCTP state as listed),
    /// `status` (flags "ASSURED,SEEN_REPLY" or bits)), each sending its DESTROY event. Returns
    /// how many entries were deleted.
    #[pyo3(signature = (conn=None, *, family=None, proto=None, src=None, dst=None, sport=None, dport=None, reply_src=None, reply_dst=None, reply_sport=None, reply_dport=None, mark=None, mask=None, zone=None, state=None, status=None))]
    #[allow(clippy::too_many_arguments)]
    fn delete<'py>(
        &self,
        conn: Option<&Conn>,
        family: Option<&Bound<'py, PyAny>>,
        proto: Option<&Bound<'py, PyAny>>,
        src: Option<&Bound<'py, PyAny>>,
        dst: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::sport_opt)] sport: Option<u16>,
        #[pyo3(from_py_with = args::dport_opt)] dport: Option<u16>,
        reply_src: Option<&Bound<'py, PyAny>>,
        reply_dst: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::reply_sport_opt)] reply_sport: Option<u16>,
        #[pyo3(from_py_with = args::reply_dport_opt)] reply_dport: Option<u16>,
        #[pyo3(from_py_with = args::mark_opt)] mark: Option<u32>,
        #[pyo3(from_py_with = args::mask_opt)] mask: Option<u32>,
        #[pyo3(from_py_with = args::zone_opt)] zone: Option<u16>,
        state: Option<String>,
        status: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<usize> {
        let f = FilterArgs {
            family,
            proto,
            src,
            dst,
            sport,
            dport,
            reply_src,
            reply_dst,
            reply_sport,
            reply_dport,
            mark,
            mask,
            zone,
            state,
            status,
        }
        .filter()?;
        let now = self.inner.now();
        match conn {
            Some(conn) => {
                if !Arc::ptr_eq(&conn.net, &self.inner) {
                    return Err(Error::value("the entry belongs to another Net").into());
                }
                if f != crate::ctnetlink::Filter::default() {
                    return Err(Error::value("give an entry or filters, not both").into());
                }
                Ok(usize::from(self.inner.ct.delete(conn.slot, conn.gen, now)))
            }
            None => Ok(crate::ctnetlink::delete(&self.inner.ct, &f, now)),
        }
    }

    /// `conntrack -L` with the filters of :meth:`delete`: the entries they select.
    #[pyo3(signature = (*, family=None, proto=None, src=None, dst=None, sport=None, dport=None, reply_src=None, reply_dst=None, reply_sport=None, reply_dport=None, mark=None, mask=None, zone=None, state=None, status=None))]
    #[allow(clippy::too_many_arguments)]
    fn select<'py>(
        &self,
        family: Option<&Bound<'py, PyAny>>,
        proto: Option<&Bound<'py, PyAny>>,
        src: Option<&Bound<'py, PyAny>>,
        dst: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::sport_opt)] sport: Option<u16>,
        #[pyo3(from_py_with = args::dport_opt)] dport: Option<u16>,
        reply_src: Option<&Bound<'py, PyAny>>,
        reply_dst: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::reply_sport_opt)] reply_sport: Option<u16>,
        #[pyo3(from_py_with = args::reply_dport_opt)] reply_dport: Option<u16>,
        #[pyo3(from_py_with = args::mark_opt)] mark: Option<u32>,
        #[pyo3(from_py_with = args::mask_opt)] mask: Option<u32>,
        #[pyo3(from_py_with = args::zone_opt)] zone: Option<u16>,
        state: Option<String>,
        status: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Conn>> {
        let f = FilterArgs {
            family,
            proto,
            src,
            dst,
            sport,
            dport,
            reply_src,
            reply_dst,
            reply_sport,
            reply_dport,
            mark,
            mask,
            zone,
            state,
            status,
        }
        .filter()?;
        let now = self.inner.now();
        Ok(crate::ctnetlink::select(&self.inner.ct, &f, now)
            .into_iter()
            .filter(|&(slot, gen)| self.inner.ct.get(slot, gen))
            .map(|(slot, gen)| Conn { net: self.inner.clone(), slot, gen })
            .collect())
    }

    /// `conntrack -F`: deletes every entry (packets still in flight lose theirs: their
    /// confirmation fails). Returns how many entries were deleted.
    fn flush(&self) -> usize {
        crate::ctnetlink::flush(&self.inner.ct, self.inner.now())
    }

    /// `conntrack -U`: sets the mark (`set_mark`, only the bits of `set_mask` change) and/or
    /// the timeout (`timeout`, seconds from now) of the entries the filters of :meth:`delete`
    /// select, each changed entry sending an UPDATE event. Returns how many changed.
    #[pyo3(signature = (*, set_mark=None, set_mask=0xffff_ffff, timeout=None, family=None, proto=None, src=None, dst=None, sport=None, dport=None, reply_src=None, reply_dst=None, reply_sport=None, reply_dport=None, mark=None, mask=None, zone=None, state=None, status=None))]
    #[allow(clippy::too_many_arguments)]
    fn update<'py>(
        &self,
        #[pyo3(from_py_with = args::set_mark_opt)] set_mark: Option<u32>,
        #[pyo3(from_py_with = args::set_mask)] set_mask: u32,
        #[pyo3(from_py_with = args::timeout_opt)] timeout: Option<u64>,
        family: Option<&Bound<'py, PyAny>>,
        proto: Option<&Bound<'py, PyAny>>,
        src: Option<&Bound<'py, PyAny>>,
        dst: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::sport_opt)] sport: Option<u16>,
        #[pyo3(from_py_with = args::dport_opt)] dport: Option<u16>,
        reply_src: Option<&Bound<'py, PyAny>>,
        reply_dst: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::reply_sport_opt)] reply_sport: Option<u16>,
        #[pyo3(from_py_with = args::reply_dport_opt)] reply_dport: Option<u16>,
        #[pyo3(from_py_with = args::mark_opt)] mark: Option<u32>,
        #[pyo3(from_py_with = args::mask_opt)] mask: Option<u32>,
        #[pyo3(from_py_with = args::zone_opt)] zone: Option<u16>,
        state: Option<String>,
        status: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<usize> {
        if set_mark.is_none() && timeout.is_none() {
            return Err(Error::value("update needs set_mark or timeout").into());
        }
        let f = FilterArgs {
            family,
            proto,
            src,
            dst,
            sport,
            dport,
            reply_src,
            reply_dst,
            reply_sport,
            reply_dport,
            mark,
            mask,
            zone,
            state,
            status,
        }
        .filter()?;
        let u = crate::ctnetlink::Update { mark: set_mark.map(|m| (m, set_mask)), timeout_s: timeout };
        Ok(crate::ctnetlink::update(&self.inner.ct, &f, u, self.inner.now()))
    }

    /// Starts (or stops) listening for events, as `conntrack -E` does: with the default
    /// `nf_conntrack_events=2`, only entries created while someone listens send events. At most
    /// `capacity` messages wait to be read; more are lost and counted in `events_lost`.
    #[pyo3(signature = (on=true, capacity=65536))]
    fn listen_events(&self, on: bool, #[pyo3(from_py_with = args::capacity)] capacity: usize) {
        self.inner.ct.events.listen(on, capacity);
    }

    /// The events sent since the last read, oldest first, as `conntrack -E -o extended` prints
    /// them (with `timestamps`, prefixed `[seconds.micros]` from the table's clock).
    #[pyo3(signature = (timestamps=false))]
    fn read_events(&self, timestamps: bool) -> Vec<String> {
        let mut out = Vec::new();
        self.inner.ct.events.drain(|ev| {
            let mut line = String::new();
            ev.line(timestamps, &mut line);
            out.push(line);
        });
        out
    }

    /// Events lost because the queue was full (netlink's ENOBUFS).
    #[getter]
    fn events_lost(&self) -> u64 {
        self.inner.ct.events.lost()
    }

    /// `conntrack -S` text.
    fn stats_text(&self) -> String {
        let mut s = String::new();
        format::stats_lines(&self.inner.ct.stats(), &mut s);
        s
    }

    /// Replays captures (pcap or pcapng) through this namespace as a forwarding router would.
    /// `packets_path` receives one `N CLASS [REASON]` line per packet, `events_path` the
    /// `conntrack -E -o extended` lines ("-" for standard output), `write_path` the packets
    /// that leave the host (forwarded or sent, as NAT rewrote them) as a pcap file of raw IP
    /// packets. A capture that cannot be read raises CaptureError after everything before the
    /// bad record was applied; its `summary` attribute holds the result so far. `at` is a
    /// list of `(tstamp, callable)`: each callable is called with this Net when the capture
    /// reaches its time (seconds; before the first packet at or after it, the clock moved
    /// there; after the last packet if the capture ends first), e.g. to `delete` entries or
    /// `load_ruleset` a new one; an exception stops the replay and is raised. `observe` is
    /// called as `observe(kind, data)` with what a report or an export needs, in batches:
    /// `("packets", columns)` every `observe_batch` packets (capture, frame, tstamp, cls,
    /// reason, dropped_by, family, proto, src, dst, sport, dport, count: equal-length
    /// lists), `("census", dict)` about every `census_every` seconds of capture time and at
    /// the end (entries by family, protocol, state and zone; heaviest sources and
    /// destinations), `("evictions", list)` the entries early drop evicted (the first
    /// `keep_evictions`; `("evictions_more", n)` counts the rest). `progress(frames,
    /// packets)` is called every 8192 frames and after each capture. Ctrl-C (or any signal
    /// whose handler raises) stops the replay within 8192 frames: the exception is raised with
    /// what was done as its `summary`, the table kept as it is.
    #[pyo3(signature = (captures, *, clock="capture", packets_path=None, events_path=None, event_timestamps=false, path="forward", threads=1, iif=None, write_path=None, at=None, observe=None, observe_batch=65536, census_every=1.0, keep_evictions=100_000, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn replay(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        captures: &Bound<'_, PyAny>,
        clock: &str,
        packets_path: Option<PathBuf>,
        events_path: Option<PathBuf>,
        event_timestamps: bool,
        path: &str,
        threads: usize,
        iif: Option<&str>,
        write_path: Option<PathBuf>,
        at: Option<&Bound<'_, PyAny>>,
        observe: Option<&Bound<'_, PyAny>>,
        observe_batch: usize,
        census_every: f64,
        keep_evictions: usize,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ReplayResult> {
        if progress.is_some_and(|p| !p.is_callable()) {
            return Err(Error::type_("progress must be callable").into());
        }
        let progress = progress.map(|p| p.clone().unbind());
        // Signals (Ctrl-C) are looked at between batches of frames, with the GIL.
        let mut tick = move |frames: u64, packets: u64| -> std::result::Result<(), crate::ip::ExtError> {
            Python::attach(|py| {
                py.check_signals()?;
                if let Some(p) = &progress {
                    p.call1(py, (frames, packets))?;
                }
                Ok(())
            })
            .map_err(|e: PyErr| crate::ip::ExtError::new(e))
        };
        let mut observer = match observe {
            Some(f) if f.is_callable() => Some(super::observe::PyObserver::new(
                f.clone().unbind(),
                observe_batch,
                seconds_to_ns(census_every)?,
            )),
            Some(f) => {
                return Err(
                    Error::type_(format!("observe must be callable, not {}", super::type_name(f))).into()
                )
            }
            None => None,
        };
        if threads > 1 && observer.is_some() {
            return Err(Error::value("observe= sees packets in capture order: use threads=1").into());
        }
        let captures = paths_arg(captures)?;
        let mut scheduled: Vec<(u64, Py<PyAny>)> = Vec::new();
        if let Some(list) = at {
            for item in
                list.try_iter().map_err(|_| Error::type_("at must be a list of (tstamp, callable)"))?
            {
                let (t, f): (f64, Bound<'_, PyAny>) = item?
                    .extract()
                    .map_err(|_| Error::type_("at must be a list of (tstamp, callable) pairs"))?;
                if !f.is_callable() {
                    return Err(Error::type_(format!("at: {} is not callable", super::type_name(&f))).into());
                }
                scheduled.push((seconds_to_ns(t)?, f.unbind()));
            }
        }
        if threads > 1 && !scheduled.is_empty() {
            return Err(Error::value("at= actions happen between two packets: use threads=1").into());
        }
        let net_obj = slf.clone().unbind();
        let actions: Vec<(u64, crate::replay::Action<'static>)> = scheduled
            .into_iter()
            .map(|(t, f)| {
                let net_obj = net_obj.clone_ref(py);
                let act: crate::replay::Action<'static> = Box::new(move |_: &CoreNet| {
                    Python::attach(|py| {
                        f.call1(py, (net_obj.clone_ref(py),)).map(|_| ()).map_err(crate::ip::ExtError::new)
                    })
                });
                (t, act)
            })
            .collect();
        let iif = slf.get().iif_arg(iif)?;
        let path = replay_path(path)?;
        let clock = replay_clock(clock)?;
        if threads == 0 || threads > 256 {
            return Err(Error::value(format!("threads must be 1 to 256, not {threads}")).into());
        }
        let named =
            [("packets_path", &packets_path), ("events_path", &events_path), ("write_path", &write_path)];
        for (i, (a, pa)) in named.iter().enumerate() {
            for (b, pb) in &named[i + 1..] {
                if let (Some(p), Some(q)) = (pa, pb) {
                    if p == q && p.as_os_str() != "-" {
                        return Err(Error::value(format!(
                            "{a} and {b} are the same file ({}): one would overwrite the other",
                            p.display()
                        ))
                        .into());
                    }
                }
            }
        }
        if write_path.as_ref().is_some_and(|p| p.as_os_str() == "-") {
            return Err(Error::value("write_path is a pcap file: give a file name, not -").into());
        }
        let net = slf.get().inner.clone();
        // Python hooks need the GIL per packet; built-in operations run without it.
        let py_runner =
            net.hooks.snapshot().has_external().then(|| PyRunner { net_obj: slf.clone().unbind() });
        if threads > 1 && (py_runner.is_some() || events_path.is_some()) {
            return Err(Error::value(
                "threads > 1 runs built-in operations only and writes no events (their order would depend \
                 on the threads): use threads=1",
            )
            .into());
        }
        let keep = observer.is_some().then_some(keep_evictions);
        if keep.is_some() {
            net.ct.keep_evictions(keep);
        }
        let res = detached(py, move || -> Result<Summary> {
            let mut summary = Summary::default();
            let mut out = open_output(packets_path.as_deref())?;
            let mut events = open_output(events_path.as_deref())?;
            let mut sent = open_output(write_path.as_deref())?;
            let paths: Vec<&std::path::Path> = captures.iter().map(|p| p.as_path()).collect();
            let names: Vec<String> =
                [&out, &events, &sent].into_iter().flatten().map(|(n, _)| n.clone()).collect();
            let mut replay = Replay {
                clock,
                packets_out: out.as_mut().map(|f| &mut f.1 as &mut dyn Write),
                name_prefix: paths.len() > 1,
                events_out: events.as_mut().map(|f| &mut f.1 as &mut dyn Write),
                event_timestamps,
                path,
                iif,
                sent_out: sent.as_mut().map(|f| &mut f.1 as &mut dyn Write),
                actions,
                observer: observer.as_mut().map(|o| o as &mut dyn crate::replay::Observer),
                tick: Some(&mut tick),
            };
            let ran = match py_runner {
                Some(r) => {
                    let mut feeder = Feeder::with_runner(&net, path, clock, r);
                    feeder.set_iif(iif);
                    replay.run_with(&mut feeder, &paths, &mut summary)
                }
                None => replay.run_threads(&net, &paths, &mut summary, threads),
            };
            match ran {
                Ok(()) => Ok(summary),
                Err(e) => {
                    let what = match (&e, names.as_slice()) {
                        (crate::replay::ReplayError::Output(_), [one]) => one.clone(),
                        _ => "replay output".to_string(),
                    };
                    Err(Error::replay(e, summary, &what))
                }
            }
        });
        if keep.is_some() {
            slf.get().inner.ct.keep_evictions(None);
        }
        Ok(ReplayResult::from_summary(res?))
    }

    /// `nfct explain`: replays `capture` up to frame `frame` (numbered from 1, as
    /// `--output packets` numbers them) and runs that frame traced: a dict with the frame's
    /// `tstamp`, its `tuple` (family, proto, src, dst, sport, dport) and every `step` of its
    /// way (hook, priority, name, verdict, the deciding rule, the reason, the entry before and
    /// after as `conntrack -L -o extended` lines, the ctinfo), then the `verdict`, `path`,
    /// `cls`, `reason` and `dropped_by` of the packet. Built-in operations only. A frame that
    /// is not an IP packet, or is not in the capture, is a `NfctValueError`, which names the
    /// frame's link type when nfct does not decode it.
    #[pyo3(signature = (capture, frame, *, clock="capture", path="forward", iif=None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        capture: PathBuf,
        frame: u64,
        clock: &str,
        path: &str,
        iif: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        use crate::replay::capture::Capture;
        let path = replay_path(path)?;
        let clock = replay_clock(clock)?;
        let iif = self.iif_arg(iif)?;
        if self.inner.hooks.snapshot().has_external() {
            return Err(
                Error::value("explain runs built-in operations only (Python hooks are registered)").into()
            );
        }
        let net = self.inner.clone();
        let name = capture.display().to_string();
        // The frame traced, or else the link type of that frame when nfct does not decode it.
        let found = detached(py, move || -> Result<(Option<Traced>, Option<u32>)> {
            let mut cap = Capture::open(&capture)
                .map_err(|e| Error::replay(crate::replay::ReplayError::Capture(e), Summary::default(), ""))?;
            let mut feeder = Feeder::new(&net, path, clock);
            feeder.set_iif(iif);
            let mut summary = Summary::default();
            let mut hit = None;
            let mut unsupported = None;
            let res = cap.for_each(|rec| {
                if hit.is_some() || rec.index > frame {
                    return;
                }
                if rec.index == frame && !link::is_supported(rec.linktype) {
                    unsupported = Some(rec.linktype);
                }
                let Some(pkt) = summary.ip_packet(rec) else { return };
                let ts = u64::try_from(rec.ts_ns).unwrap_or(0);
                if rec.index < frame {
                    feeder.feed_on(pkt, ts, rec.iface);
                } else {
                    let trace = std::cell::RefCell::new(Vec::new());
                    let out = feeder.feed_traced(pkt, ts, rec.iface, &trace);
                    hit = Some((pkt.to_vec(), ts, trace.into_inner(), out));
                }
            });
            if hit.is_none() && unsupported.is_none() {
                res.map_err(|e| Error::replay(crate::replay::ReplayError::Capture(e), summary, ""))?;
            }
            Ok((hit, unsupported))
        })?;
        let (hit, unsupported) = found;
        let Some((pkt, ts, steps, out)) = hit else {
            return Err(Error::value(match unsupported {
                Some(lt) => format!(
                    "{name}: frame {frame} is of link type {}, which nfct does not decode; nfct reads {}",
                    link::describe(lt),
                    link::DECODED
                ),
                None => format!("{name} has no IP packet at frame {frame}"),
            })
            .into());
        };
        let d = PyDict::new(py);
        d.set_item("frame", frame)?;
        d.set_item("tstamp", ts as f64 / 1e9)?;
        let l3 = match crate::wire::ip::ip_version(&pkt) {
            Some(6) => crate::uapi::AF_INET6,
            _ => crate::uapi::AF_INET,
        };
        if let Some(t) = crate::tuple::packet_tuple(l3, &pkt) {
            let td = PyDict::new(py);
            td.set_item("family", if l3 == crate::uapi::AF_INET { "ipv4" } else { "ipv6" })?;
            td.set_item("proto", t.protonum)?;
            td.set_item("src", t.src_addr().to_string())?;
            td.set_item("dst", crate::tuple::addr(t.l3num, &t.dst).to_string())?;
            td.set_item("sport", t.src_u)?;
            td.set_item("dport", t.dst_u)?;
            d.set_item("tuple", td)?;
        } else {
            d.set_item("tuple", py.None())?;
        }
        d.set_item("len", pkt.len())?;
        let line = |v: &Option<crate::conn::ConnView>| {
            v.as_ref().map(|v| {
                let mut s = String::new();
                format::conntrack_line(v, true, &mut s);
                s
            })
        };
        let list = PyList::empty(py);
        for st in &steps {
            let sd = PyDict::new(py);
            sd.set_item("hook", st.hook.map(|h| h as u32))?;
            sd.set_item("priority", st.priority)?;
            sd.set_item("name", &st.name)?;
            sd.set_item("verdict", st.verdict)?;
            sd.set_item("rule", &st.rule)?;
            sd.set_item("reason", st.reason)?;
            sd.set_item("before", line(&st.before))?;
            sd.set_item("after", line(&st.after))?;
            sd.set_item("ctinfo", st.ctinfo)?;
            list.append(sd)?;
        }
        d.set_item("steps", list)?;
        let (class, reason) = out.class();
        d.set_item("verdict", out.verdict)?;
        d.set_item("path", out.path.name())?;
        d.set_item("cls", class.name())?;
        d.set_item("reason", reason)?;
        d.set_item("dropped_by", out.dropped_by_name())?;
        Ok(d)
    }

    /// Packets given in memory, as a capture would be replayed: `records` is an iterable of
    /// `(tstamp, ip_packet_bytes)` pairs (seconds; bytes from the IP header). Returns the
    /// result with `per_packet`, one `PacketResult(frame, cls, reason, dropped_by)` per packet
    /// (frames numbered from 1), as `--output packets` prints them.
    #[pyo3(signature = (records, *, clock="capture", path="forward"))]
    fn feed(
        slf: &Bound<'_, Self>,
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
        clock: &str,
        path: &str,
    ) -> PyResult<ReplayResult> {
        let path = replay_path(path)?;
        let clock = replay_clock(clock)?;
        let (buf, spans) = batch::records(records)?;
        let net = slf.get().inner.clone();
        let runner = net.hooks.snapshot().has_external().then(|| PyRunner { net_obj: slf.clone().unbind() });
        let (summary, rows) = match runner {
            Some(r) => batch::feed(&mut Feeder::with_runner(&net, path, clock, r), &buf, &spans)?,
            None => detached(py, || batch::feed(&mut Feeder::new(&net, path, clock), &buf, &spans))?,
        };
        let mut result = ReplayResult::from_summary(summary);
        result.per_packet = Some(rows);
        Ok(result)
    }

    /// Packets built by the caller, in bulk: packet i is `buffer[offsets[i]:offsets[i+1]]`
    /// (offsets has one entry more than there are packets) at `tstamps[i]` seconds (None: the
    /// namespace's current time), each through the hook pipeline as `replay` sends them
    /// (`path`). Returns numpy arrays (verdicts: uint32 NF_*; ctinfo: int8, -1 where no
    /// conntrack is attached). Needs numpy (`pip install nfct[numpy]`). The GIL is released
    /// unless Python hooks are registered.
    #[pyo3(signature = (buffer, offsets, tstamps=None, *, path="forward"))]
    fn conntrack_batch<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        buffer: PyBuffer<u8>,
        offsets: &Bound<'py, PyAny>,
        tstamps: Option<&Bound<'py, PyAny>>,
        path: &str,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        batch::conntrack_batch(slf, py, buffer, offsets, tstamps, path)
    }

    fn __repr__(&self) -> String {
        format!("<nfct.Net count={} buckets={}>", self.inner.ct.count(), self.inner.ct.table.nbuckets())
    }
}

impl Net {
    /// An interface given as a name or an ifindex (`dev=`), as an ifindex.
    pub(super) fn dev_arg(&self, dev: Option<&Bound<'_, PyAny>>) -> Result<Option<u32>> {
        let Some(d) = dev else { return Ok(None) };
        if let Ok(i) = d.extract::<u32>() {
            return match self.inner.devices().by_index(i) {
                Some(_) => Ok(Some(i)),
                None => Err(Error::value(format!("ifindex {i} is not an interface of the host"))),
            };
        }
        match d.extract::<String>() {
            Ok(name) => self.iif_arg(Some(&name)),
            Err(_) => Err(Error::type_(format!(
                "an interface is a name or an ifindex, not {}",
                super::type_name(d)
            ))),
        }
    }

    /// The interface `--iif NAME` names, as an ifindex.
    fn iif_arg(&self, iif: Option<&str>) -> Result<Option<u32>> {
        let Some(name) = iif else { return Ok(None) };
        if self.inner.routing.is_none() {
            return Err(Error::value("iif names an interface of a host: give the Net a host file"));
        }
        match self.inner.devices().by_name(name) {
            Some(d) => Ok(Some(d.index)),
            None => {
                let names: Vec<&str> = self.inner.devices().all().iter().map(|d| d.name.as_str()).collect();
                Err(Error::value(format!(
                    "iif {name:?} is not an interface of the host ({})",
                    names.join(", ")
                )))
            }
        }
    }
}

/// A traced frame: its IP bytes, capture time, steps and outcome.
type Traced = (Vec<u8>, u64, Vec<crate::ip::TraceStep>, crate::ip::Outcome);

/// Opens where per-packet or event lines go, with the name errors use: "-" is this process's
/// standard output, written through its own descriptor so a redirection (even in append mode)
/// keeps what was there.
fn open_output(path: Option<&std::path::Path>) -> Result<Option<(String, Box<dyn Write>)>> {
    Ok(match path {
        Some(p) if p.as_os_str() == "-" => Some((
            "standard output".into(),
            Box::new(std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock())),
        )),
        Some(p) => {
            let name = p.display().to_string();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .map_err(|e| Error::Output(name.clone(), e))?;
            Some((name, Box::new(std::io::BufWriter::with_capacity(1 << 16, f))))
        }
        None => None,
    })
}

/// The sysctls of one namespace, as a mutable mapping.
#[pyclass(frozen, module = "nfct._nfct", mapping)]
pub struct SysctlMap {
    net: Arc<CoreNet>,
}

#[pymethods]
impl SysctlMap {
    fn __getitem__(&self, name: &str) -> PyResult<u64> {
        if name.trim_start_matches("net.netfilter.") == "nf_conntrack_count" {
            return Ok(self.net.ct.count());
        }
        Ok(self.net.sysctl().get_by_name(name).map_err(Error::from)?)
    }

    fn __setitem__(&self, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let (s, v) = sysctl_write(self.net.sysctl(), name, value)?;
        self.net.set_sysctl(s, v);
        Ok(())
    }

    fn __contains__(&self, name: &str) -> bool {
        Sysctl::lookup(name).is_some() || name == "nf_conntrack_count"
    }

    fn __len__(&self) -> usize {
        SYSCTLS.len() + 1
    }

    fn __iter__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(PyList::new(py, self.keys())?.try_iter()?.into_any().unbind())
    }

    fn keys(&self) -> Vec<&'static str> {
        let mut k: Vec<&'static str> = SYSCTLS.iter().map(|s| s.1).collect();
        k.insert(1, "nf_conntrack_count");
        k
    }

    fn items(&self) -> Vec<(&'static str, u64)> {
        self.keys()
            .into_iter()
            .map(|k| {
                let v = if k == "nf_conntrack_count" {
                    self.net.ct.count()
                } else {
                    self.net.sysctl().get_by_name(k).unwrap_or(0)
                };
                (k, v)
            })
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("<nfct sysctl: {} entries>", self.__len__())
    }
}
