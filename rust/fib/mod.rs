//! A host's interfaces (`struct net_device`) and routing tables (`fib_table`, the IPv6 FIB):
//! data, and the lookups the IP layer and nft's `fib` expression make (`fib_lookup` through the
//! default rules: local, then main, then default; longest prefix first, lowest metric among
//! equals; `inet_dev_addr_type`).
//!
//! Built from what `ip -j addr` and `ip -j route` print (see `host`). Depends on std only.

use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// `ARPHRD_*` link types nft's `meta iiftype`/`oiftype` compare.
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_NONE: u16 = 0xfffe;
pub const ARPHRD_LOOPBACK: u16 = 772;

/// One address of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// One interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dev {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    pub loopback: bool,
    /// `ARPHRD_*` (`link_type` in `ip -j`).
    pub link_type: u16,
    pub addrs: Vec<IfAddr>,
}

/// A host's interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    devs: Vec<Dev>,
}

/// No interfaces (nfct's default router).
pub static NO_DEVICES: Devices = Devices { devs: Vec::new() };

impl Devices {
    pub fn new(mut devs: Vec<Dev>) -> Devices {
        devs.sort_by_key(|d| d.index);
        Devices { devs }
    }

    pub fn all(&self) -> &[Dev] {
        &self.devs
    }

    pub fn by_index(&self, index: u32) -> Option<&Dev> {
        self.devs.iter().find(|d| d.index == index)
    }

    pub fn by_name(&self, name: &str) -> Option<&Dev> {
        self.devs.iter().find(|d| d.name == name)
    }

    /// The first interface that is up and not loopback (where a capture without interface
    /// names arrives).
    pub fn first_up(&self) -> Option<&Dev> {
        self.devs.iter().find(|d| d.up && !d.loopback)
    }

    /// The interface holding address `a`, if any does.
    pub fn owner_of(&self, a: IpAddr) -> Option<&Dev> {
        self.devs.iter().find(|d| d.addrs.iter().any(|x| x.addr == a))
    }

    pub fn is_empty(&self) -> bool {
        self.devs.is_empty()
    }
}

/// `RTN_*`: what a route says about its destinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteType {
    Unicast,
    Local,
    Broadcast,
    Anycast,
    Multicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Throw,
}

impl RouteType {
    /// The type of a name as `ip route` prints it.
    pub fn from_name(s: &str) -> Option<RouteType> {
        Some(match s {
            "unicast" => RouteType::Unicast,
            "local" => RouteType::Local,
            "broadcast" => RouteType::Broadcast,
            "anycast" => RouteType::Anycast,
            "multicast" => RouteType::Multicast,
            "blackhole" => RouteType::Blackhole,
            "unreachable" => RouteType::Unreachable,
            "prohibit" => RouteType::Prohibit,
            "throw" => RouteType::Throw,
            _ => return None,
        })
    }

    /// `RTN_*` numbers (nft's `fib ... type` values).
    pub fn rtn(self) -> u32 {
        match self {
            RouteType::Unicast => 1,
            RouteType::Local => 2,
            RouteType::Broadcast => 3,
            RouteType::Anycast => 4,
            RouteType::Multicast => 5,
            RouteType::Blackhole => 6,
            RouteType::Unreachable => 7,
            RouteType::Prohibit => 8,
            RouteType::Throw => 9,
        }
    }
}

/// Routing table ids.
pub const RT_TABLE_DEFAULT: u32 = 253;
pub const RT_TABLE_MAIN: u32 = 254;
pub const RT_TABLE_LOCAL: u32 = 255;

/// One route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub table: u32,
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub typ: RouteType,
    /// The interface it goes out of (index), when it has one.
    pub dev: Option<u32>,
    pub gateway: Option<IpAddr>,
    pub prefsrc: Option<IpAddr>,
    pub metric: u32,
    /// The path MTU the route sets (`mtu` metric), when it does.
    pub mtu: Option<u32>,
}

/// An address as a 128-bit number (IPv4 in the low 32 bits) and its width.
fn bits(a: IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

/// `a` with all but its first `len` bits cleared (width `w`).
fn masked(a: u128, len: u8, w: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let keep = u128::MAX << (w - len.min(w));
        a & keep & if w == 128 { u128::MAX } else { (1u128 << w) - 1 }
    }
}

/// One table of one family, indexed by prefix length (longest first; a fast non-keyed hash:
/// the keys are the host's own routes, not packet data).
#[derive(Clone, Debug, Default)]
struct Table {
    by_len: Vec<(u8, FxHashMap<u128, Vec<Route>>)>,
}

impl Table {
    fn add(&mut self, r: Route) {
        let (a, w) = bits(r.dst);
        let key = masked(a, r.prefix_len, w);
        let at = match self.by_len.binary_search_by(|(l, _)| r.prefix_len.cmp(l)) {
            Ok(i) => i,
            Err(i) => {
                self.by_len.insert(i, (r.prefix_len, FxHashMap::default()));
                i
            }
        };
        let routes = self.by_len[at].1.entry(key).or_default();
        routes.push(r);
        routes.sort_by_key(|r| r.metric);
    }

    /// The longest-prefix route for `dst` (lowest metric among equals; with `oif`, only
    /// routes out of that interface).
    fn lookup(&self, dst: IpAddr, oif: Option<u32>) -> Option<&Route> {
        let (a, w) = bits(dst);
        for (len, m) in &self.by_len {
            if let Some(rs) = m.get(&masked(a, *len, w)) {
                if let Some(r) = rs.iter().find(|r| oif.is_none() || r.dev == oif || r.dev.is_none()) {
                    return Some(r);
                }
            }
        }
        None
    }

    fn iter(&self) -> impl Iterator<Item = &Route> {
        self.by_len.iter().flat_map(|(_, m)| m.values().flatten())
    }
}

/// The routing tables of both families (the default rules only: local, main, default).
#[derive(Clone, Debug, Default)]
pub struct Fib {
    v4: [Table; 3],
    v6: [Table; 3],
}

/// The tables in the order the default rules consult them.
const ORDER: [u32; 3] = [RT_TABLE_LOCAL, RT_TABLE_MAIN, RT_TABLE_DEFAULT];

impl Fib {
    /// Adds a route; None (refused) for a table other than local, main or default.
    pub fn add(&mut self, r: Route) -> Option<()> {
        let i = ORDER.iter().position(|t| *t == r.table)?;
        match r.dst {
            IpAddr::V4(_) => self.v4[i].add(r),
            IpAddr::V6(_) => self.v6[i].add(r),
        }
        Some(())
    }

    fn tables(&self, v6: bool) -> &[Table; 3] {
        if v6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// `fib_lookup` through the default rules: the route for `dst`.
    pub fn lookup(&self, dst: IpAddr, oif: Option<u32>) -> Option<&Route> {
        self.tables(dst.is_ipv6()).iter().find_map(|t| t.lookup(dst, oif))
    }

    /// `inet_dev_addr_type` (IPv4) / the address type nft's `fib ... type` gives: what the
    /// local table says of `a` (restricted to routes of `dev` when given), else unicast.
    pub fn addr_type(&self, a: IpAddr, dev: Option<u32>) -> RouteType {
        match a {
            IpAddr::V4(v) => {
                let o = v.octets();
                if o[0] == 0 || v.is_broadcast() {
                    return RouteType::Broadcast;
                }
                if v.is_multicast() {
                    return RouteType::Multicast;
                }
            }
            IpAddr::V6(v) => {
                if v.is_multicast() {
                    return RouteType::Multicast;
                }
            }
        }
        match self.tables(a.is_ipv6())[0].lookup(a, None) {
            Some(r) if dev.is_none() || r.dev == dev => r.typ,
            _ => RouteType::Unicast,
        }
    }

    /// Every route, for listings and tests.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.v4.iter().chain(self.v6.iter()).flat_map(Table::iter)
    }
}

/// The IP layer's per-host settings that routing reads (`net.ipv4.*`, `net.ipv6.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConf {
    /// `net.ipv4.conf.all.forwarding` (`ip_forward`), and per interface by name.
    pub forward4: bool,
    pub forward4_dev: Vec<(String, bool)>,
    /// `net.ipv6.conf.all.forwarding`.
    pub forward6: bool,
    /// `net.ipv4.conf.all.rp_filter`, and per interface by name (the kernel uses the larger).
    pub rp_filter: u8,
    pub rp_filter_dev: Vec<(String, u8)>,
}

impl Default for IpConf {
    /// A router: forwarding on, no reverse-path filter.
    fn default() -> IpConf {
        IpConf {
            forward4: true,
            forward4_dev: Vec::new(),
            forward6: true,
            rp_filter: 0,
            rp_filter_dev: Vec::new(),
        }
    }
}

impl IpConf {
    /// Whether IPv4 packets arriving on `dev` may be forwarded (`IN_DEV_FORWARD`).
    pub fn forwards4(&self, dev: Option<&str>) -> bool {
        match dev.and_then(|d| self.forward4_dev.iter().find(|(n, _)| n == d)) {
            Some((_, on)) => *on,
            None => self.forward4,
        }
    }

    /// The reverse-path filter of `dev` (`IN_DEV_RPFILTER`: the larger of all and the device's).
    pub fn rp_filter(&self, dev: Option<&str>) -> u8 {
        let d = dev.and_then(|d| self.rp_filter_dev.iter().find(|(n, _)| n == d)).map_or(0, |x| x.1);
        self.rp_filter.max(d)
    }
}

/// A host's routing: interfaces, tables and IP settings.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    pub devices: Devices,
    pub fib: Fib,
    pub conf: IpConf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(table: u32, dst: &str, len: u8, typ: RouteType, dev: u32, metric: u32) -> Route {
        Route {
            table,
            dst: dst.parse().unwrap(),
            prefix_len: len,
            typ,
            dev: Some(dev),
            gateway: None,
            prefsrc: None,
            metric,
            mtu: None,
        }
    }

    #[test]
    fn longest_prefix_then_metric_local_first() {
        let mut f = Fib::default();
        f.add(route(RT_TABLE_MAIN, "0.0.0.0", 0, RouteType::Unicast, 2, 0)).unwrap();
        f.add(route(RT_TABLE_MAIN, "10.0.0.0", 8, RouteType::Unicast, 3, 100)).unwrap();
        f.add(route(RT_TABLE_MAIN, "10.0.0.0", 8, RouteType::Unicast, 4, 10)).unwrap();
        f.add(route(RT_TABLE_MAIN, "10.1.0.0", 16, RouteType::Blackhole, 0, 0)).unwrap();
        f.add(route(RT_TABLE_LOCAL, "10.0.0.1", 32, RouteType::Local, 4, 0)).unwrap();
        assert!(f.add(route(100, "10.0.0.0", 8, RouteType::Unicast, 4, 0)).is_none());
        let at = |s: &str| f.lookup(s.parse().unwrap(), None).map(|r| (r.typ, r.dev));
        assert_eq!(at("10.0.0.1"), Some((RouteType::Local, Some(4))));
        assert_eq!(at("10.0.0.2"), Some((RouteType::Unicast, Some(4))));
        assert_eq!(at("10.1.2.3"), Some((RouteType::Blackhole, Some(0))));
        assert_eq!(at("192.0.2.1"), Some((RouteType::Unicast, Some(2))));
        assert_eq!(f.lookup("10.0.0.2".parse().unwrap(), Some(3)).map(|r| r.dev), Some(Some(3)));
        assert_eq!(at("::1"), None);
        assert_eq!(f.addr_type("10.0.0.1".parse().unwrap(), None), RouteType::Local);
        assert_eq!(f.addr_type("10.0.0.1".parse().unwrap(), Some(2)), RouteType::Unicast);
        assert_eq!(f.addr_type("10.0.0.2".parse().unwrap(), None), RouteType::Unicast);
        assert_eq!(f.addr_type("255.255.255.255".parse().unwrap(), None), RouteType::Broadcast);
        assert_eq!(f.addr_type("224.0.0.1".parse().unwrap(), None), RouteType::Multicast);
        assert_eq!(f.routes().count(), 5);
    }

    #[test]
    fn ipv6_prefixes() {
        let mut f = Fib::default();
        f.add(route(RT_TABLE_MAIN, "::", 0, RouteType::Unicast, 2, 1024)).unwrap();
        f.add(route(RT_TABLE_MAIN, "fe80::", 64, RouteType::Unicast, 3, 256)).unwrap();
        let at = |s: &str| f.lookup(s.parse().unwrap(), None).and_then(|r| r.dev);
        assert_eq!(at("fe80::1"), Some(3));
        assert_eq!(at("2001:db8::1"), Some(2));
        assert_eq!(masked(u128::MAX, 128, 128), u128::MAX);
        assert_eq!(masked(0xffff_ffff, 8, 32), 0xff00_0000);
    }
}
