//! A Linux host read from the tools' own JSON (the host file `nfct host-snapshot` writes):
//! `"addr"` as `ip -j addr show` prints it, `"route"` as `ip -j -4/-6 route show table all`
//! print it (concatenated), `"ruleset"` as `nft -j list ruleset` prints it, `"sysctl"` as
//! `{"net.netfilter.nf_conntrack_tcp_loose": "1", ...}`, and optionally `"rule"` as
//! `ip -j rule show` prints it. Every part is optional.
//!
//! What nfct does not model is refused with one error naming it: other routing tables and
//! policy rules, multipath routes, a route through an interface the host does not have.

use crate::fib::{
    Dev, Devices, Fib, IfAddr, Route, RouteType, Routing, RT_TABLE_DEFAULT, RT_TABLE_LOCAL, RT_TABLE_MAIN,
};
use crate::fib::{ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE};
use crate::net::Net;
use crate::netfilter::nft::{self, ChainRef, Ruleset, TableFamily};
use crate::netfilter::OpKind;
use crate::sysctl::{Sysctl, SysctlKey};
use crate::uapi::{NFPROTO_INET, NFPROTO_IPV4, NFPROTO_IPV6};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;

/// A host: its interfaces, routing tables and IP settings, ruleset and conntrack sysctls.
#[derive(Clone, Debug, Default)]
pub struct Host {
    pub routing: Routing,
    pub ruleset: Option<Ruleset>,
    /// The conntrack sysctls the file sets (`net.netfilter.*`).
    pub sysctls: Vec<(SysctlKey, u64)>,
    /// Sysctls the file holds that nfct does not apply (names), for a warning.
    pub ignored: Vec<String>,
}

/// A host file nfct cannot use: which part, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    pub part: &'static str,
    pub message: String,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host file, \"{}\": {}", self.part, self.message)
    }
}

impl std::error::Error for HostError {}

fn err(part: &'static str, message: impl Into<String>) -> HostError {
    HostError { part, message: message.into() }
}

impl Host {
    /// Reads a host file's text.
    pub fn parse(text: &str) -> Result<Host, HostError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| err("file", format!("not JSON: {e}")))?;
        Host::from_json(&doc)
    }

    /// Reads a parsed host file.
    pub fn from_json(doc: &Value) -> Result<Host, HostError> {
        let o = doc.as_object().ok_or_else(|| err("file", "expected a JSON object"))?;
        for k in o.keys() {
            if !matches!(k.as_str(), "addr" | "route" | "ruleset" | "sysctl" | "rule") {
                return Err(err(
                    "file",
                    format!("unknown part \"{k}\" (addr, route, ruleset, sysctl, rule)"),
                ));
            }
        }
        let mut host = Host::default();
        if let Some(a) = o.get("addr") {
            host.routing.devices = devices(a)?;
        }
        if let Some(r) = o.get("rule") {
            rules(r)?;
        }
        host.routing.fib = match o.get("route") {
            Some(r) => routes(r, &host.routing.devices)?,
            None => routes_from_addrs(&host.routing.devices),
        };
        if let Some(s) = o.get("sysctl") {
            sysctls(s, &mut host)?;
        }
        if let Some(r) = o.get("ruleset") {
            let ifaces: Vec<(String, u32)> =
                host.routing.devices.all().iter().map(|d| (d.name.clone(), d.index)).collect();
            host.ruleset =
                Some(nft::json::compile_for(r, &ifaces).map_err(|e| err("ruleset", e.to_string()))?);
        }
        Ok(host)
    }

    /// `--mtu N`: the interfaces of the default routes get this MTU.
    pub fn set_default_route_mtu(&mut self, mtu: u32) {
        let devs: Vec<u32> = [false, true].iter().filter_map(|v6| self.default_route_dev(*v6)).collect();
        let mut all = self.routing.devices.all().to_vec();
        for d in all.iter_mut().filter(|d| devs.contains(&d.index)) {
            d.mtu = mtu;
        }
        self.routing.devices = Devices::new(all);
    }

    /// The interface of the default route of a family (`--mtu`'s target).
    pub fn default_route_dev(&self, v6: bool) -> Option<u32> {
        let any: IpAddr = if v6 { "::".parse().ok()? } else { "0.0.0.0".parse().ok()? };
        self.routing
            .fib
            .routes()
            .find(|r| r.prefix_len == 0 && r.dst == any && r.table == RT_TABLE_MAIN)
            .and_then(|r| r.dev)
    }
}

/// Registers a ruleset's base chains at their hooks, in the order `nft list ruleset` lists
/// them (tables, and the chains of each, in the order they were made), after conntrack's own
/// operations; returns the operations' ids. Among operations of equal priority the registry
/// runs the one registered last first, as the kernel does: seen in the harness, where an `ip6`
/// input chain at priority 0 loaded after the harness's own `inet` one dropped packets before
/// the harness counted them, and a chain at conntrack's -200 ran before conntrack. A chain
/// added later to an older table is listed with that table: for it the listing does not tell.
pub fn install(net: &Net, ruleset: &Arc<Ruleset>) -> Vec<u64> {
    let mut ids = Vec::new();
    for (t, c) in ruleset.base_chains() {
        let chain = ChainRef { ruleset: ruleset.clone(), table: t, chain: c, builtin: false };
        let Some(base) = chain.chain().base else { continue };
        let pf = match chain.table().family {
            TableFamily::Ip => NFPROTO_IPV4,
            TableFamily::Ip6 => NFPROTO_IPV6,
            TableFamily::Inet => NFPROTO_INET,
            TableFamily::Netdev => continue,
        };
        let name = chain.name();
        if let Ok(id) = net.hooks.register(pf, base.hook, base.prio, name.into(), OpKind::Chain(chain)) {
            ids.push(id);
        }
    }
    ids
}

/// The interfaces of `ip -j addr show`.
fn devices(v: &Value) -> Result<Devices, HostError> {
    let list = v.as_array().ok_or_else(|| err("addr", "expected the list `ip -j addr show` prints"))?;
    let mut devs = Vec::new();
    for d in list {
        let name = d
            .get("ifname")
            .and_then(Value::as_str)
            .ok_or_else(|| err("addr", "an interface without ifname"))?;
        let index = d
            .get("ifindex")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| err("addr", format!("{name}: no ifindex")))?;
        let flags: Vec<&str> = d
            .get("flags")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mtu = d.get("mtu").and_then(Value::as_u64).unwrap_or(1500) as u32;
        let link_type = match d.get("link_type").and_then(Value::as_str) {
            Some("loopback") => ARPHRD_LOOPBACK,
            Some("none") => ARPHRD_NONE,
            _ => ARPHRD_ETHER,
        };
        let mut addrs = Vec::new();
        for a in d.get("addr_info").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let Some(local) = a.get("local").and_then(Value::as_str) else { continue };
            let addr: IpAddr =
                local.parse().map_err(|_| err("addr", format!("{name}: {local:?} is not an address")))?;
            let prefix_len =
                a.get("prefixlen").and_then(Value::as_u64).unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
            addrs.push(IfAddr { addr, prefix_len: prefix_len.min(128) as u8 });
        }
        devs.push(Dev {
            index,
            name: name.to_string(),
            mtu,
            up: flags.contains(&"UP"),
            loopback: flags.contains(&"LOOPBACK") || link_type == ARPHRD_LOOPBACK,
            link_type,
            addrs,
        });
    }
    Ok(Devices::new(devs))
}

/// Only the default rules (`local`, `main`, `default`) are modelled.
fn rules(v: &Value) -> Result<(), HostError> {
    let list = v.as_array().ok_or_else(|| err("rule", "expected the list `ip -j rule show` prints"))?;
    for r in list {
        let table = r.get("table").and_then(Value::as_str).unwrap_or("?");
        let default = matches!(
            (r.get("priority").and_then(Value::as_u64), table),
            (Some(0), "local") | (Some(32766), "main") | (Some(32767), "default")
        );
        let plain = r.get("src").and_then(Value::as_str).is_none_or(|s| s == "all")
            && r.as_object()
                .is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "priority" | "src" | "table")));
        if !default || !plain {
            return Err(err(
                "rule",
                format!("policy routing ({}) is not modelled: only the default rules", r),
            ));
        }
    }
    Ok(())
}

/// The table id of a route's `table` field.
fn table_id(v: Option<&Value>) -> Result<u32, String> {
    match v {
        None => Ok(RT_TABLE_MAIN),
        Some(Value::String(s)) => match s.as_str() {
            "main" => Ok(RT_TABLE_MAIN),
            "local" => Ok(RT_TABLE_LOCAL),
            "default" => Ok(RT_TABLE_DEFAULT),
            other => Err(format!("table {other}")),
        },
        Some(x) => Err(format!("table {x}")),
    }
}

/// The routes of `ip -j route show table all` (both families, concatenated).
fn routes(v: &Value, devs: &Devices) -> Result<Fib, HostError> {
    let list =
        v.as_array().ok_or_else(|| err("route", "expected the list `ip -j route show table all` prints"))?;
    let mut fib = Fib::default();
    for r in list {
        let show = || r.to_string();
        let table = table_id(r.get("table")).map_err(|t| {
            err("route", format!("{t} is not modelled (local, main and default only): {}", show()))
        })?;
        if r.get("nexthops").is_some() {
            return Err(err("route", format!("multipath routes are not modelled: {}", show())));
        }
        let typ = match r.get("type").and_then(Value::as_str) {
            None => RouteType::Unicast,
            Some(t) => {
                RouteType::from_name(t).ok_or_else(|| err("route", format!("route type {t}: {}", show())))?
            }
        };
        let dst = r
            .get("dst")
            .and_then(Value::as_str)
            .ok_or_else(|| err("route", format!("no dst: {}", show())))?;
        let dev = match r.get("dev").and_then(Value::as_str) {
            Some(name) => Some(devs.by_name(name).map(|d| d.index).ok_or_else(|| {
                err("route", format!("interface {name} is not in the \"addr\" part: {}", show()))
            })?),
            None => None,
        };
        let addr = |s: &str| -> Result<IpAddr, HostError> {
            s.parse().map_err(|_| err("route", format!("{s:?} is not an address: {}", show())))
        };
        let v6_hint = r.get("gateway").and_then(Value::as_str).is_some_and(|g| g.contains(':'))
            || r.get("prefsrc").and_then(Value::as_str).is_some_and(|g| g.contains(':'))
            || dst.contains(':');
        let (dst, prefix_len) = match dst.split_once('/') {
            _ if dst == "default" => {
                let any = if v6_hint || looks_v6(r) { "::" } else { "0.0.0.0" };
                (addr(any)?, 0)
            }
            Some((a, l)) => {
                let a = addr(a)?;
                let l: u8 = l.parse().map_err(|_| err("route", format!("prefix length {l}: {}", show())))?;
                (a, l)
            }
            None => {
                let a = addr(dst)?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let gateway = r.get("gateway").and_then(Value::as_str).map(addr).transpose()?;
        let prefsrc = r.get("prefsrc").and_then(Value::as_str).map(addr).transpose()?;
        let metric = r.get("metric").and_then(Value::as_u64).unwrap_or(0) as u32;
        let mtu = r
            .get("metrics")
            .and_then(Value::as_array)
            .and_then(|m| m.iter().find_map(|x| x.get("mtu").and_then(Value::as_u64)))
            .map(|m| m as u32);
        fib.add(Route { table, dst, prefix_len, typ, dev, gateway, prefsrc, metric, mtu })
            .ok_or_else(|| err("route", format!("table not modelled: {}", show())))?;
    }
    Ok(fib)
}

/// Whether a default route is IPv6 (`ip -j -6 route` prints a "pref" field, IPv4 does not).
fn looks_v6(r: &Value) -> bool {
    r.get("pref").is_some()
}

/// The routes the kernel makes from the addresses alone (no "route" part): each address local
/// in the local table, its prefix reachable in the main table through its interface.
fn routes_from_addrs(devs: &Devices) -> Fib {
    let mut fib = Fib::default();
    for d in devs.all() {
        for a in &d.addrs {
            let full = if a.addr.is_ipv4() { 32 } else { 128 };
            let local = Route {
                table: RT_TABLE_LOCAL,
                dst: a.addr,
                prefix_len: full,
                typ: RouteType::Local,
                dev: Some(d.index),
                gateway: None,
                prefsrc: Some(a.addr),
                metric: 0,
                mtu: None,
            };
            let _ = fib.add(local);
            if a.prefix_len < full && !d.loopback {
                let _ = fib.add(Route {
                    table: RT_TABLE_MAIN,
                    dst: a.addr,
                    prefix_len: a.prefix_len,
                    typ: RouteType::Unicast,
                    dev: Some(d.index),
                    gateway: None,
                    prefsrc: Some(a.addr),
                    metric: 0,
                    mtu: None,
                });
            }
        }
    }
    fib
}

/// The sysctl part: `net.netfilter.*` apply to conntrack; forwarding and rp_filter to routing.
fn sysctls(v: &Value, host: &mut Host) -> Result<(), HostError> {
    let o = v.as_object().ok_or_else(|| err("sysctl", "expected {\"name\": \"value\", ...}"))?;
    for (name, val) in o {
        let text = match val {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(err("sysctl", format!("{name}: the value is not a string or number"))),
        };
        let name = name.replace('/', ".");
        if let Some(bare) = name.strip_prefix("net.netfilter.") {
            // A reading, not a setting.
            if bare == "nf_conntrack_count" {
                continue;
            }
            match (Sysctl::lookup(bare), text.parse::<i128>()) {
                (Some(_), Ok(n)) => match Sysctl::validate(bare, n) {
                    Ok(kv) => host.sysctls.push(kv),
                    Err(crate::sysctl::SysctlError::ReadOnly(_)) => {}
                    Err(e) => return Err(err("sysctl", e.to_string())),
                },
                _ => host.ignored.push(name),
            }
            continue;
        }
        let num = || -> Result<i64, HostError> {
            text.parse().map_err(|_| err("sysctl", format!("{name}: {text:?} is not a number")))
        };
        let parts: Vec<&str> = name.split('.').collect();
        match parts.as_slice() {
            ["net", "ipv4", "ip_forward"] => host.routing.conf.forward4 = num()? != 0,
            ["net", "ipv4", "conf", "all", "forwarding"] => host.routing.conf.forward4 = num()? != 0,
            ["net", "ipv4", "conf", "all", "rp_filter"] => {
                host.routing.conf.rp_filter = num()?.clamp(0, 2) as u8
            }
            ["net", "ipv4", "conf", "default", _] => host.ignored.push(name.clone()),
            ["net", "ipv4", "conf", dev, "forwarding"] => {
                host.routing.conf.forward4_dev.push((dev.to_string(), num()? != 0))
            }
            ["net", "ipv4", "conf", dev, "rp_filter"] => {
                host.routing.conf.rp_filter_dev.push((dev.to_string(), num()?.clamp(0, 2) as u8))
            }
            ["net", "ipv6", "conf", "all", "forwarding"] => host.routing.conf.forward6 = num()? != 0,
            _ => host.ignored.push(name.clone()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `ip -j` printed inside the kernel harness's namespace.
    const HARNESS: &str = r#"{
      "addr": [{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},
               {"ifindex":2,"ifname":"nfct0","flags":["POINTOPOINT","MULTICAST","NOARP","UP","LOWER_UP"],"mtu":1500,"link_type":"none","addr_info":[{"family":"inet","local":"192.0.0.8","prefixlen":32},{"family":"inet6","local":"fe80::44c2:e0c0:b16b:d3bf","prefixlen":64}]},
               {"ifindex":4,"link":"nfct-v1","ifname":"nfct-v0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether","addr_info":[]}],
      "route": [{"dst":"default","gateway":"169.254.255.1","dev":"nfct-v0","flags":["onlink"]},
                {"type":"local","dst":"127.0.0.0/8","dev":"lo","table":"local","protocol":"kernel","scope":"host","prefsrc":"127.0.0.1","flags":[]},
                {"type":"local","dst":"192.0.0.8","dev":"nfct0","table":"local","protocol":"kernel","scope":"host","prefsrc":"192.0.0.8","flags":[]},
                {"dst":"fe80::/64","dev":"nfct0","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},
                {"dst":"default","gateway":"fe80::1","dev":"nfct-v0","metric":1024,"flags":[],"pref":"medium"},
                {"type":"local","dst":"::1","dev":"lo","table":"local","protocol":"kernel","metric":0,"flags":[],"pref":"medium"},
                {"type":"multicast","dst":"ff00::/8","dev":"nfct0","table":"local","protocol":"kernel","metric":256,"flags":[],"pref":"medium"}],
      "sysctl": {"net.ipv4.ip_forward": "1", "net.ipv4.conf.nfct0.rp_filter": "2", "net.netfilter.nf_conntrack_tcp_loose": "0",
                 "net.netfilter.nf_conntrack_count": "3", "net.netfilter.nf_log_all_netns": "0", "kernel.hostname": "x"},
      "rule": [{"priority":0,"src":"all","table":"local"},{"priority":32766,"src":"all","table":"main"},{"priority":32767,"src":"all","table":"default"}]
    }"#;

    #[test]
    fn the_harness_namespace() {
        let h = Host::parse(HARNESS).unwrap();
        let r = &h.routing;
        assert_eq!(r.devices.all().len(), 3);
        assert_eq!(r.devices.first_up().map(|d| d.name.as_str()), Some("nfct0"));
        let at = |a: &str| r.fib.lookup(a.parse().unwrap(), None).map(|r| (r.typ, r.dev));
        assert_eq!(at("192.0.0.8"), Some((RouteType::Local, Some(2))));
        assert_eq!(at("10.1.2.3"), Some((RouteType::Unicast, Some(4))));
        assert_eq!(at("127.0.0.5"), Some((RouteType::Local, Some(1))));
        assert_eq!(at("fe80::9"), Some((RouteType::Unicast, Some(2))));
        assert_eq!(at("2001:db8::1"), Some((RouteType::Unicast, Some(4))));
        assert_eq!(h.default_route_dev(false), Some(4));
        assert_eq!(h.default_route_dev(true), Some(4));
        assert_eq!(r.conf.rp_filter(Some("nfct0")), 2);
        assert_eq!(r.conf.rp_filter(Some("lo")), 0);
        assert_eq!(h.sysctls, [(SysctlKey::TcpLoose, 0)]);
        assert_eq!(h.ignored, ["kernel.hostname", "net.netfilter.nf_log_all_netns"]);
    }

    #[test]
    fn refusals_name_the_part() {
        let e = Host::parse(r#"{"route": [{"dst":"10.0.0.0/8","dev":"eth9"}]}"#).unwrap_err();
        assert_eq!(e.part, "route");
        assert!(e.message.contains("eth9"), "{e}");
        let e = Host::parse(r#"{"route": [{"dst":"10.0.0.0/8","table":"100"}]}"#).unwrap_err();
        assert!(e.to_string().contains("table 100 is not modelled"), "{e}");
        let e = Host::parse(r#"{"rule": [{"priority":100,"src":"10.0.0.0/8","table":"100"}]}"#).unwrap_err();
        assert_eq!(e.part, "rule");
        assert!(Host::parse(r#"{"adr": []}"#).unwrap_err().message.contains("unknown part"));
        assert!(Host::parse("[").is_err());
        let e = Host::parse(r#"{"sysctl": {"net.netfilter.nf_conntrack_max": "-1"}}"#).unwrap_err();
        assert_eq!(e.part, "sysctl");
    }

    #[test]
    fn routes_made_from_addresses() {
        let h = Host::parse(
            r#"{"addr": [{"ifindex":2,"ifname":"eth0","flags":["UP"],"mtu":9000,"addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24}]}]}"#,
        )
        .unwrap();
        let at = |a: &str| h.routing.fib.lookup(a.parse().unwrap(), None).map(|r| r.typ);
        assert_eq!(at("10.0.0.1"), Some(RouteType::Local));
        assert_eq!(at("10.0.0.7"), Some(RouteType::Unicast));
        assert_eq!(at("10.0.1.7"), None);
        assert_eq!(h.routing.devices.by_name("eth0").map(|d| d.mtu), Some(9000));
    }

    #[test]
    fn equal_priorities_run_the_chain_listed_last_first() {
        let chain = |t: &str, n: &str| {
            format!(
                r#"{{"chain": {{"family": "inet", "table": "{t}", "name": "{n}", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}}}"#
            )
        };
        let doc = format!(
            r#"{{"ruleset": {{"nftables": [{{"table": {{"family": "inet", "name": "old", "handle": 1}}}}, {},
                {{"table": {{"family": "inet", "name": "new", "handle": 2}}}}, {}, {}]}}}}"#,
            chain("old", "a"),
            chain("new", "b"),
            chain("new", "c")
        );
        let h = Host::parse(&doc).unwrap();
        let net = Net::new(crate::net::NetOptions::default(), crate::sysctl::Sysctl::default());
        install(&net, &Arc::new(h.ruleset.unwrap()));
        let names: Vec<String> = net
            .hooks
            .list(crate::netfilter::Family::V4, crate::uapi::Hook::Forward)
            .into_iter()
            .filter(|(p, _)| *p == 0)
            .map(|(_, n)| n.to_string())
            .collect();
        assert_eq!(names, ["inet new c", "inet new b", "inet old a"]);
    }
}
