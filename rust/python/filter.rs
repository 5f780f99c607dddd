//! The keyword arguments of `Net.delete`, `Net.update` and `Net.select` read into a
//! `ctnetlink::Filter`: the filters of `conntrack -D/-U/-L` by their long option names.

use super::errors::{Error, Result};
use super::type_name;
use crate::ctnetlink::{Filter, Prefix, TupleFilter};
use crate::uapi::{AF_INET, AF_INET6, IPPROTOS, STATUS};
use pyo3::prelude::*;
use std::net::IpAddr;

/// The filter keywords, as Python passes them.
#[derive(Default)]
pub(super) struct FilterArgs<'py> {
    pub family: Option<&'py Bound<'py, PyAny>>,
    pub proto: Option<&'py Bound<'py, PyAny>>,
    pub src: Option<&'py Bound<'py, PyAny>>,
    pub dst: Option<&'py Bound<'py, PyAny>>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub reply_src: Option<&'py Bound<'py, PyAny>>,
    pub reply_dst: Option<&'py Bound<'py, PyAny>>,
    pub reply_sport: Option<u16>,
    pub reply_dport: Option<u16>,
    pub mark: Option<u32>,
    pub mask: Option<u32>,
    pub zone: Option<u16>,
    pub state: Option<String>,
    pub status: Option<&'py Bound<'py, PyAny>>,
}

/// An address or `address/prefix-length` (str, or an `ipaddress` object).
fn prefix(name: &str, v: &Bound<'_, PyAny>) -> Result<Prefix> {
    let text =
        v.str().map(|s| s.to_string()).map_err(|_| Error::type_(format!("{name} must be an address")))?;
    let (a, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text.as_str(), None),
    };
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| Error::value(format!("{name}={text:?} is not an address or a prefix")))?;
    let full = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => full,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(n) if n <= full => n,
            _ => return Err(Error::value(format!("{name}={text:?}: the prefix length must be 0 to {full}"))),
        },
    };
    Ok(Prefix { addr, len })
}

/// A protocol by number or name (`"tcp"`, `"udp"`, `"icmpv6"`, ...).
fn proto(v: &Bound<'_, PyAny>) -> Result<u8> {
    if let Ok(n) = v.extract::<u8>() {
        return Ok(n);
    }
    let name: String = v
        .extract()
        .map_err(|_| Error::type_(format!("proto must be a name or number, not {}", type_name(v))))?;
    let want = name.to_ascii_uppercase();
    IPPROTOS
        .members
        .iter()
        .find(|(n, _)| n.strip_prefix("IPPROTO_") == Some(want.as_str()))
        .map(|(_, v)| *v as u8)
        .ok_or_else(|| {
            Error::value(format!("proto {name:?} is not a protocol name (tcp, udp, icmp, ...) or number"))
        })
}

/// Status bits by number, or by names as `conntrack -u` takes them (`"ASSURED,SEEN_REPLY"` or a
/// list of names).
fn status(v: &Bound<'_, PyAny>) -> Result<u32> {
    if let Ok(n) = v.extract::<u32>() {
        return Ok(n);
    }
    let names: Vec<String> = match v.extract::<String>() {
        Ok(s) => s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
        Err(_) => v.extract().map_err(|_| {
            Error::type_(format!("status must be bits, names or a list of names, not {}", type_name(v)))
        })?,
    };
    let mut bits = 0u32;
    for n in names {
        let want = n.to_ascii_uppercase();
        let want = want.strip_prefix("IPS_").unwrap_or(&want);
        let Some((_, b)) = STATUS.members.iter().find(|(m, _)| m.strip_prefix("IPS_") == Some(want)) else {
            return Err(Error::value(format!(
                "status {n:?} is not a status flag (ASSURED, SEEN_REPLY, ...)"
            )));
        };
        bits |= *b as u32;
    }
    Ok(bits)
}

impl FilterArgs<'_> {
    /// The filter these keywords describe.
    pub fn filter(&self) -> Result<Filter> {
        let family = match self.family {
            None => None,
            Some(f) => Some(match f.extract::<String>().as_deref() {
                Ok("ipv4") | Ok("inet") => AF_INET,
                Ok("ipv6") | Ok("inet6") => AF_INET6,
                _ => match f.extract::<u8>() {
                    Ok(v) if v == AF_INET || v == AF_INET6 => v,
                    _ => return Err(Error::value("family must be \"ipv4\" or \"ipv6\"")),
                },
            }),
        };
        if self.mask.is_some() && self.mark.is_none() {
            return Err(Error::value("mask needs mark"));
        }
        let opt = |name: &str, v: Option<&Bound<'_, PyAny>>| v.map(|v| prefix(name, v)).transpose();
        Ok(Filter {
            l3num: family,
            proto: self.proto.map(proto).transpose()?,
            orig: TupleFilter {
                src: opt("src", self.src)?,
                dst: opt("dst", self.dst)?,
                sport: self.sport,
                dport: self.dport,
            },
            reply: TupleFilter {
                src: opt("reply_src", self.reply_src)?,
                dst: opt("reply_dst", self.reply_dst)?,
                sport: self.reply_sport,
                dport: self.reply_dport,
            },
            mark: self.mark.map(|m| (m, self.mask.unwrap_or(u32::MAX))),
            zone: self.zone,
            state: self.state.clone(),
            status: self.status.map(status).transpose()?,
        })
    }
}
