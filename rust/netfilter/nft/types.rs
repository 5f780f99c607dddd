//! The values nft's registers hold and the datatypes that give literals their meaning: every
//! value is a fixed-width big-endian byte string (a concatenation is its parts one after the
//! other), so equality, ordering and set lookups are byte comparisons. The symbolic names nft
//! prints (`tcp`, `established`, `echo-request`, `local`, ...) are resolved by datatype.

use std::net::IpAddr;

/// Longest value a register holds (a concatenation of two IPv6 addresses and two ports fits).
pub const VAL_MAX: usize = 64;

/// A register value: up to `VAL_MAX` bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Val {
    len: u8,
    b: [u8; VAL_MAX],
}

impl std::fmt::Debug for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x")?;
        for b in self.bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Default for Val {
    fn default() -> Val {
        Val { len: 0, b: [0; VAL_MAX] }
    }
}

impl Val {
    /// A value of these bytes (truncated to `VAL_MAX`).
    pub fn from_bytes(bytes: &[u8]) -> Val {
        let mut v = Val::default();
        let n = bytes.len().min(VAL_MAX);
        v.b[..n].copy_from_slice(&bytes[..n]);
        v.len = n as u8;
        v
    }

    /// An unsigned number `n` in `width` bytes, big-endian (its low bytes).
    pub fn uint(n: u64, width: usize) -> Val {
        let be = n.to_be_bytes();
        let w = width.min(8);
        let mut v = Val::default();
        v.b[..w].copy_from_slice(&be[8 - w..]);
        v.len = w as u8;
        v
    }

    pub fn bytes(&self) -> &[u8] {
        &self.b[..usize::from(self.len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value as a number (its last 8 bytes).
    pub fn as_u64(&self) -> u64 {
        self.bytes().iter().fold(0u64, |a, &b| (a << 8) | u64::from(b))
    }

    /// This value followed by `o`.
    pub fn concat(&self, o: &Val) -> Val {
        let mut v = *self;
        let n = o.len().min(VAL_MAX - self.len());
        v.b[self.len()..self.len() + n].copy_from_slice(&o.bytes()[..n]);
        v.len += n as u8;
        v
    }

    /// A bitwise operation with `o`, byte by byte (the shorter is taken as zero-extended on
    /// the left, as a number).
    pub fn bitwise(&self, o: &Val, f: impl Fn(u8, u8) -> u8) -> Val {
        let n = self.len().max(o.len());
        let mut v = Val { len: n as u8, b: [0; VAL_MAX] };
        for i in 0..n {
            let a = (i + self.len()).checked_sub(n).map_or(0, |j| self.b[j]);
            let c = (i + o.len()).checked_sub(n).map_or(0, |j| o.b[j]);
            v.b[i] = f(a, c);
        }
        v
    }

    /// A shift by `n` bits (left when `left`), keeping the width.
    pub fn shift(&self, n: u32, left: bool) -> Val {
        let x = self.as_u64();
        let y = if n >= 64 {
            0
        } else if left {
            x << n
        } else {
            x >> n
        };
        Val::uint(y, self.len())
    }

    /// Whether every byte is zero.
    pub fn is_zero(&self) -> bool {
        self.bytes().iter().all(|&b| b == 0)
    }
}

/// What a value means, and so how a literal is read: nft's datatypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Datatype {
    Ipv4Addr,
    Ipv6Addr,
    InetProto,
    InetService,
    Mark,
    IfName,
    IfIndex,
    /// `ct state` bits.
    CtState,
    /// `ct status` bits.
    CtStatus,
    CtDir,
    NfProto,
    IcmpType,
    Icmpv6Type,
    IcmpCode,
    Icmpv6Code,
    TcpFlag,
    /// `fib ... type` (`RTN_*`).
    FibAddrType,
    /// `meta iiftype`/`oiftype` (`ARPHRD_*`).
    IfType,
    /// `meta pkttype`.
    PktType,
    /// `meta protocol` (an ethertype).
    EtherType,
    /// A plain number of this many bytes.
    Integer(u8),
    /// A map's verdicts.
    Verdict,
    /// `ct zone`.
    Zone,
    Boolean,
}

impl Datatype {
    /// The width of its values in bytes.
    pub fn width(self) -> usize {
        match self {
            Datatype::Ipv4Addr => 4,
            Datatype::Ipv6Addr => 16,
            Datatype::InetProto | Datatype::CtDir | Datatype::NfProto => 1,
            Datatype::IcmpType | Datatype::Icmpv6Type | Datatype::IcmpCode | Datatype::Icmpv6Code => 1,
            Datatype::TcpFlag | Datatype::PktType | Datatype::Boolean => 1,
            Datatype::InetService | Datatype::IfType | Datatype::EtherType | Datatype::Zone => 2,
            Datatype::Mark | Datatype::IfIndex | Datatype::CtState | Datatype::CtStatus => 4,
            Datatype::FibAddrType => 4,
            Datatype::IfName => 16,
            Datatype::Integer(n) => usize::from(n),
            Datatype::Verdict => 0,
        }
    }

    /// The datatype of a name a set's `type` gives.
    pub fn from_set_type(name: &str) -> Option<Datatype> {
        Some(match name {
            "ipv4_addr" => Datatype::Ipv4Addr,
            "ipv6_addr" => Datatype::Ipv6Addr,
            "inet_proto" => Datatype::InetProto,
            "inet_service" => Datatype::InetService,
            "mark" => Datatype::Mark,
            "ifname" => Datatype::IfName,
            "iface_index" => Datatype::IfIndex,
            "ct_state" => Datatype::CtState,
            "ct_status" => Datatype::CtStatus,
            "ct_dir" => Datatype::CtDir,
            "nf_proto" => Datatype::NfProto,
            "icmp_type" => Datatype::IcmpType,
            "icmpv6_type" => Datatype::Icmpv6Type,
            "icmp_code" => Datatype::IcmpCode,
            "icmpv6_code" => Datatype::Icmpv6Code,
            "tcp_flag" => Datatype::TcpFlag,
            "fib_addrtype" => Datatype::FibAddrType,
            "iface_type" => Datatype::IfType,
            "pkt_type" => Datatype::PktType,
            "ether_type" => Datatype::EtherType,
            "verdict" => Datatype::Verdict,
            "ct_zone" => Datatype::Zone,
            "integer" => Datatype::Integer(4),
            "boolean" => Datatype::Boolean,
            _ => return None,
        })
    }

    /// Whether its values are bit sets (a bare match on them tests bits: `LHS & RHS != 0`).
    pub fn is_bitmask(self) -> bool {
        matches!(self, Datatype::CtState | Datatype::CtStatus | Datatype::TcpFlag)
    }

    /// The value of a symbolic name of this datatype, as nft prints it.
    pub fn symbol(self, s: &str) -> Option<u64> {
        let table: &[(&str, u64)] = match self {
            Datatype::InetProto => &[
                ("icmp", 1),
                ("igmp", 2),
                ("tcp", 6),
                ("udp", 17),
                ("dccp", 33),
                ("ipv6", 41),
                ("gre", 47),
                ("esp", 50),
                ("ah", 51),
                ("ipv6-icmp", 58),
                ("icmpv6", 58),
                ("sctp", 132),
                ("udplite", 136),
                ("comp", 108),
            ],
            Datatype::CtState => {
                &[("invalid", 1), ("established", 2), ("related", 4), ("new", 8), ("untracked", 64)]
            }
            Datatype::CtStatus => &[
                ("expected", 1),
                ("seen-reply", 2),
                ("assured", 4),
                ("confirmed", 8),
                ("snat", 16),
                ("dnat", 32),
                ("dying", 512),
            ],
            Datatype::CtDir => &[("original", 0), ("reply", 1)],
            Datatype::NfProto => &[("ipv4", 2), ("ipv6", 10)],
            Datatype::IcmpType => &[
                ("echo-reply", 0),
                ("destination-unreachable", 3),
                ("source-quench", 4),
                ("redirect", 5),
                ("echo-request", 8),
                ("router-advertisement", 9),
                ("router-solicitation", 10),
                ("time-exceeded", 11),
                ("parameter-problem", 12),
                ("timestamp-request", 13),
                ("timestamp-reply", 14),
                ("info-request", 15),
                ("info-reply", 16),
                ("address-mask-request", 17),
                ("address-mask-reply", 18),
            ],
            Datatype::Icmpv6Type => &[
                ("destination-unreachable", 1),
                ("packet-too-big", 2),
                ("time-exceeded", 3),
                ("parameter-problem", 4),
                ("echo-request", 128),
                ("echo-reply", 129),
                ("mld-listener-query", 130),
                ("mld-listener-report", 131),
                ("mld-listener-done", 132),
                ("mld-listener-reduction", 132),
                ("nd-router-solicit", 133),
                ("nd-router-advert", 134),
                ("nd-neighbor-solicit", 135),
                ("nd-neighbor-advert", 136),
                ("nd-redirect", 137),
                ("router-renumbering", 138),
                ("ind-neighbor-solicit", 141),
                ("ind-neighbor-advert", 142),
                ("mld2-listener-report", 143),
            ],
            Datatype::IcmpCode => &[
                ("net-unreachable", 0),
                ("host-unreachable", 1),
                ("prot-unreachable", 2),
                ("port-unreachable", 3),
                ("frag-needed", 4),
                ("net-prohibited", 9),
                ("host-prohibited", 10),
                ("admin-prohibited", 13),
            ],
            Datatype::Icmpv6Code => &[
                ("no-route", 0),
                ("admin-prohibited", 1),
                ("addr-unreachable", 3),
                ("port-unreachable", 4),
                ("policy-fail", 5),
                ("reject-route", 6),
            ],
            Datatype::TcpFlag => &[
                ("fin", 0x01),
                ("syn", 0x02),
                ("rst", 0x04),
                ("psh", 0x08),
                ("ack", 0x10),
                ("urg", 0x20),
                ("ecn", 0x40),
                ("cwr", 0x80),
            ],
            Datatype::FibAddrType => &[
                ("unspec", 0),
                ("unicast", 1),
                ("local", 2),
                ("broadcast", 3),
                ("anycast", 4),
                ("multicast", 5),
                ("blackhole", 6),
                ("unreachable", 7),
                ("prohibit", 8),
            ],
            Datatype::IfType => &[("ether", 1), ("ppp", 512), ("loopback", 772), ("none", 0xfffe)],
            Datatype::PktType => {
                &[("host", 0), ("unicast", 0), ("broadcast", 1), ("multicast", 2), ("other", 3)]
            }
            Datatype::EtherType => &[("ip", 0x0800), ("ip6", 0x86dd), ("arp", 0x0806), ("vlan", 0x8100)],
            Datatype::InetService => &[
                ("ssh", 22),
                ("domain", 53),
                ("http", 80),
                ("https", 443),
                ("ntp", 123),
                ("smtp", 25),
                ("bootps", 67),
                ("bootpc", 68),
                ("dhcpv6-client", 546),
                ("dhcpv6-server", 547),
            ],
            Datatype::Boolean => &[("exists", 1), ("missing", 0), ("true", 1), ("false", 0)],
            _ => &[],
        };
        table.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// A literal of this datatype: a JSON number or string (an address, a name, a number as
    /// text); None if it is not one.
    pub fn literal(self, lit: &Literal<'_>) -> Option<Val> {
        let w = self.width();
        match (self, lit) {
            (Datatype::Ipv4Addr, Literal::Str(s)) => match s.parse::<IpAddr>().ok()? {
                IpAddr::V4(a) => Some(Val::from_bytes(&a.octets())),
                IpAddr::V6(_) => None,
            },
            (Datatype::Ipv6Addr, Literal::Str(s)) => match s.parse::<IpAddr>().ok()? {
                IpAddr::V6(a) => Some(Val::from_bytes(&a.octets())),
                IpAddr::V4(_) => None,
            },
            (Datatype::IfName, Literal::Str(s)) => {
                if s.len() >= 16 {
                    return None;
                }
                let mut b = [0u8; 16];
                b[..s.len()].copy_from_slice(s.as_bytes());
                Some(Val::from_bytes(&b))
            }
            (Datatype::Boolean, Literal::Bool(b)) => Some(Val::uint(u64::from(*b), 1)),
            (Datatype::Ipv4Addr | Datatype::Ipv6Addr | Datatype::IfName | Datatype::Verdict, _) => None,
            (_, Literal::Num(n)) => fits(*n, w).then(|| Val::uint(*n, w)),
            (_, Literal::Str(s)) => {
                let n = self.symbol(s).or_else(|| parse_num(s))?;
                fits(n, w).then(|| Val::uint(n, w))
            }
            (_, Literal::Bool(_)) => None,
        }
    }
}

/// Whether `n` fits in `w` bytes.
fn fits(n: u64, w: usize) -> bool {
    w >= 8 || n < (1u64 << (8 * w))
}

/// A number written as text (decimal or 0x-hex).
pub fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// A JSON immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Literal<'a> {
    Num(u64),
    Str(&'a str),
    Bool(bool),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_by_datatype() {
        let v = |d: Datatype, l| d.literal(&l).map(|v| v.bytes().to_vec());
        assert_eq!(v(Datatype::Ipv4Addr, Literal::Str("10.0.0.1")), Some(vec![10, 0, 0, 1]));
        assert_eq!(v(Datatype::Ipv4Addr, Literal::Str("::1")), None);
        assert_eq!(v(Datatype::InetProto, Literal::Str("udp")), Some(vec![17]));
        assert_eq!(v(Datatype::InetService, Literal::Num(443)), Some(vec![1, 187]));
        assert_eq!(v(Datatype::InetService, Literal::Num(70000)), None);
        assert_eq!(v(Datatype::Icmpv6Type, Literal::Str("echo-request")), Some(vec![128]));
        assert_eq!(v(Datatype::IcmpType, Literal::Str("echo-request")), Some(vec![8]));
        assert_eq!(v(Datatype::Mark, Literal::Str("0x4000")), Some(vec![0, 0, 0x40, 0]));
        assert_eq!(v(Datatype::IfName, Literal::Str("lo")).map(|b| b.len()), Some(16));
        assert_eq!(v(Datatype::CtState, Literal::Str("bogus")), None);
    }

    #[test]
    fn arithmetic() {
        let a = Val::uint(0x0f0f, 4);
        assert_eq!(a.bitwise(&Val::uint(0xff, 4), |x, y| x & y).as_u64(), 0x0f);
        assert_eq!(a.bitwise(&Val::uint(0x4000, 4), |x, y| x | y).as_u64(), 0x4f0f);
        assert_eq!(a.shift(4, true).as_u64(), 0xf0f0);
        assert_eq!(Val::uint(1, 1).concat(&Val::uint(2, 2)).bytes(), &[1, 0, 2]);
        assert!(Val::uint(0, 4).is_zero());
    }
}
