//! Arguments from Python converted, with one clear error each: addresses, sysctl values,
//! replay paths and clocks, listing formats, capture paths.

use super::errors::{Error, Result};
use super::type_name;
use crate::format::ListFormat;
use crate::replay::{Clock, ReplayPath};
use crate::sysctl::{Sysctl, SysctlError, SysctlKey};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyString};
use std::path::PathBuf;

/// One IP address given from Python: a `str` or an `ipaddress` object.
pub(super) fn parse_addr(a: &Bound<'_, PyAny>, what: &str) -> Result<std::net::IpAddr> {
    let text = match a.cast::<PyString>() {
        Ok(s) => s.to_string(),
        Err(_) if a.hasattr("packed").unwrap_or(false) && a.hasattr("version").unwrap_or(false) => {
            a.str().map(|s| s.to_string()).map_err(|_| Error::type_(format!("{what} is not an address")))?
        }
        Err(_) => {
            return Err(Error::type_(format!(
                "{what} must be a str or an ipaddress address, not {}",
                type_name(a)
            )))
        }
    };
    text.parse().map_err(|_| Error::value(format!("{what} {text:?} is not an IP address")))
}

/// A sequence of addresses (a single `str` is refused: it is a sequence of characters).
pub(super) fn parse_addrs(v: &Bound<'_, PyAny>, what: &str) -> Result<Vec<std::net::IpAddr>> {
    if v.is_instance_of::<PyString>() {
        return Err(Error::type_(format!("{what} must be a sequence of addresses, not a str")));
    }
    let it = v.try_iter().map_err(|_| Error::type_(format!("{what} must be a sequence of addresses")))?;
    let mut out = Vec::new();
    for a in it {
        let a = a.map_err(|_| Error::type_(format!("{what} must be a sequence of addresses")))?;
        out.push(parse_addr(&a, "local address")?);
    }
    Ok(out)
}

/// A sysctl value given from Python: an int (not a bool) in the sysctl's range.
pub(super) fn sysctl_value(name: &str, value: &Bound<'_, PyAny>) -> Result<(SysctlKey, u64)> {
    Ok(Sysctl::validate(name, sysctl_int(name, value)?)?)
}

/// As `sysctl_value`, also checked against the other values of `current` (the frag6
/// thresholds bound each other), for a write into a live table.
pub(super) fn sysctl_write(
    current: &Sysctl,
    name: &str,
    value: &Bound<'_, PyAny>,
) -> Result<(SysctlKey, u64)> {
    Ok(current.check_with(name, sysctl_int(name, value)?)?)
}

/// The low frag6 threshold at most the high one, once a whole `sysctl=` mapping is applied.
pub(super) fn frag_thresholds(s: &Sysctl) -> Result<()> {
    let low = s.get(SysctlKey::Frag6LowThresh);
    s.check_with("nf_conntrack_frag6_high_thresh", i128::from(s.get(SysctlKey::Frag6HighThresh)))
        .and_then(|_| s.check_with("nf_conntrack_frag6_low_thresh", i128::from(low)))
        .map(|_| ())
        .map_err(Error::from)
}

fn sysctl_int(name: &str, value: &Bound<'_, PyAny>) -> Result<i128> {
    if name.trim_start_matches("net.netfilter.") == "nf_conntrack_count" {
        return Err(Error::Sysctl(SysctlError::ReadOnly(name.to_string())));
    }
    if Sysctl::lookup(name).is_none() {
        return Err(Error::Sysctl(SysctlError::Unknown(name.to_string())));
    }
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(Error::type_(format!("sysctl {name} takes an int, not {}", type_name(value))));
    }
    value.extract::<i128>().map_err(|_| {
        // An int too large for any sysctl: out of its range, whatever the range is.
        let beyond = if value.gt(0).unwrap_or(false) { i128::MAX } else { i128::MIN };
        match Sysctl::validate(name, beyond) {
            Err(SysctlError::Invalid { name, why, .. }) => {
                let text = value.str().map(|s| s.to_string()).unwrap_or_default();
                Error::value(format!("invalid value {text} for {name}: {why}"))
            }
            Err(e) => e.into(),
            Ok(_) => Error::value(format!("sysctl {name}: value out of range")),
        }
    })
}

/// The replay path of a name.
pub(super) fn replay_path(path: &str) -> Result<ReplayPath> {
    match path {
        "forward" => Ok(ReplayPath::Forward),
        "local-in" => Ok(ReplayPath::LocalIn),
        "local-out" => Ok(ReplayPath::LocalOut),
        _ => Err(Error::value(format!("path must be forward, local-in or local-out, not {path:?}"))),
    }
}

/// The replay clock of a name.
pub(super) fn replay_clock(clock: &str) -> Result<Clock> {
    match clock {
        "capture" => Ok(Clock::Capture),
        "frozen" => Ok(Clock::Frozen),
        _ => Err(Error::value(format!("clock must be 'capture' or 'frozen', not {clock:?}"))),
    }
}

/// A listing format of a name.
pub(super) fn list_format(fmt: &str) -> Result<ListFormat> {
    ListFormat::from_name(fmt)
        .ok_or_else(|| Error::value(format!("unknown format {fmt:?}: use extended, conntrack or proc")))
}

/// The captures argument: a sequence of paths (a single path is refused with a clear error).
pub(super) fn paths_arg(v: &Bound<'_, PyAny>) -> Result<Vec<PathBuf>> {
    if v.is_instance_of::<PyString>() || v.hasattr("__fspath__").unwrap_or(false) {
        return Err(Error::type_("captures must be a list of paths, not a single path: use [path]"));
    }
    v.extract::<Vec<PathBuf>>()
        .map_err(|_| Error::type_(format!("captures must be a list of paths, not {}", type_name(v))))
}

/// An int argument within `lo..=hi`: a value out of the range is a `NfctValueError` naming the
/// argument and the range (PyO3's own error is a bare `OverflowError`), a non-int a
/// `NfctTypeError` naming it.
fn int_arg(v: &Bound<'_, PyAny>, name: &str, lo: i128, hi: i128) -> Result<i128> {
    if !v.is_instance_of::<PyInt>() {
        return Err(Error::type_(format!("{name} must be an int, not {}", type_name(v))));
    }
    match v.extract::<i128>() {
        Ok(x) if (lo..=hi).contains(&x) => Ok(x),
        _ => {
            let text = v.str().map(|s| s.to_string()).unwrap_or_default();
            Err(Error::value(format!("{name} {text} is out of range: {lo} to {hi}")))
        }
    }
}

/// For `#[pyo3(from_py_with = ...)]`: one function per (argument name, integer type), plain
/// and optional (None allowed).
macro_rules! int_args {
    ($($plain:ident / $opt:ident: $t:ty = $name:literal;)*) => {$(
        #[allow(dead_code)]
        pub(super) fn $plain(v: &Bound<'_, PyAny>) -> PyResult<$t> {
            Ok(int_arg(v, $name, <$t>::MIN as i128, <$t>::MAX as i128)? as $t)
        }
        #[allow(dead_code)]
        pub(super) fn $opt(v: &Bound<'_, PyAny>) -> PyResult<Option<$t>> {
            if v.is_none() {
                return Ok(None);
            }
            $plain(v).map(Some)
        }
    )*};
}

int_args! {
    seed / seed_opt: u64 = "seed";
    capacity / capacity_opt: usize = "capacity";
    zone / zone_opt: u16 = "zone";
    mark / mark_opt: u32 = "mark";
    mask / mask_opt: u32 = "mask";
    set_mark / set_mark_opt: u32 = "set_mark";
    set_mask / set_mask_opt: u32 = "set_mask";
    timeout / timeout_opt: u64 = "timeout";
    priority / priority_opt: i32 = "priority";
    sport / sport_opt: u16 = "sport";
    dport / dport_opt: u16 = "dport";
    reply_sport / reply_sport_opt: u16 = "reply_sport";
    reply_dport / reply_dport_opt: u16 = "reply_dport";
    mtu / mtu_opt: u32 = "mtu";
}
