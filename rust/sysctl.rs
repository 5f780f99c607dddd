//! The per-table knobs of `/proc/sys/net/netfilter`, with the Linux 6.18 defaults (spec §18).
//!
//! Values are kept in atomics so that a shared table can read them on every packet without a
//! lock while Python changes them between calls. Timeouts are in seconds, as the sysctls are.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! sysctls {
    ($($variant:ident = $name:literal : $default:expr, $writable:expr;)*) => {
        /// One sysctl, named as in `/proc/sys/net/netfilter` without the prefix path.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(non_camel_case_types)]
        pub enum SysctlKey { $($variant),* }

        /// Every sysctl: (name, default, writable).
        pub const SYSCTLS: &[(SysctlKey, &str, u64, bool)] = &[$((SysctlKey::$variant, $name, $default, $writable)),*];
    };
}

sysctls! {
    Max = "nf_conntrack_max": 262_144, true;
    Buckets = "nf_conntrack_buckets": 262_144, true;
    ExpectMax = "nf_conntrack_expect_max": 4096, true;
    Checksum = "nf_conntrack_checksum": 1, true;
    LogInvalid = "nf_conntrack_log_invalid": 0, true;
    Acct = "nf_conntrack_acct": 0, true;
    Timestamp = "nf_conntrack_timestamp": 0, true;
    Events = "nf_conntrack_events": 2, true;
    GenericTimeout = "nf_conntrack_generic_timeout": 600, true;
    IcmpTimeout = "nf_conntrack_icmp_timeout": 30, true;
    Icmpv6Timeout = "nf_conntrack_icmpv6_timeout": 30, true;
    UdpTimeout = "nf_conntrack_udp_timeout": 30, true;
    UdpTimeoutStream = "nf_conntrack_udp_timeout_stream": 120, true;
    GreTimeout = "nf_conntrack_gre_timeout": 30, true;
    GreTimeoutStream = "nf_conntrack_gre_timeout_stream": 180, true;
    TcpTimeoutSynSent = "nf_conntrack_tcp_timeout_syn_sent": 120, true;
    TcpTimeoutSynRecv = "nf_conntrack_tcp_timeout_syn_recv": 60, true;
    TcpTimeoutEstablished = "nf_conntrack_tcp_timeout_established": 432_000, true;
    TcpTimeoutFinWait = "nf_conntrack_tcp_timeout_fin_wait": 120, true;
    TcpTimeoutCloseWait = "nf_conntrack_tcp_timeout_close_wait": 60, true;
    TcpTimeoutLastAck = "nf_conntrack_tcp_timeout_last_ack": 30, true;
    TcpTimeoutTimeWait = "nf_conntrack_tcp_timeout_time_wait": 120, true;
    TcpTimeoutClose = "nf_conntrack_tcp_timeout_close": 10, true;
    TcpTimeoutMaxRetrans = "nf_conntrack_tcp_timeout_max_retrans": 300, true;
    TcpTimeoutUnacknowledged = "nf_conntrack_tcp_timeout_unacknowledged": 300, true;
    TcpLoose = "nf_conntrack_tcp_loose": 1, true;
    TcpBeLiberal = "nf_conntrack_tcp_be_liberal": 0, true;
    TcpIgnoreInvalidRst = "nf_conntrack_tcp_ignore_invalid_rst": 0, true;
    TcpMaxRetrans = "nf_conntrack_tcp_max_retrans": 3, true;
    SctpTimeoutClosed = "nf_conntrack_sctp_timeout_closed": 10, true;
    SctpTimeoutCookieWait = "nf_conntrack_sctp_timeout_cookie_wait": 3, true;
    SctpTimeoutCookieEchoed = "nf_conntrack_sctp_timeout_cookie_echoed": 3, true;
    SctpTimeoutEstablished = "nf_conntrack_sctp_timeout_established": 210, true;
    SctpTimeoutShutdownSent = "nf_conntrack_sctp_timeout_shutdown_sent": 3, true;
    SctpTimeoutShutdownRecd = "nf_conntrack_sctp_timeout_shutdown_recd": 3, true;
    SctpTimeoutShutdownAckSent = "nf_conntrack_sctp_timeout_shutdown_ack_sent": 3, true;
    SctpTimeoutHeartbeatSent = "nf_conntrack_sctp_timeout_heartbeat_sent": 30, true;
    Frag6Timeout = "nf_conntrack_frag6_timeout": 60, true;
    Frag6HighThresh = "nf_conntrack_frag6_high_thresh": 4_194_304, true;
    Frag6LowThresh = "nf_conntrack_frag6_low_thresh": 3_145_728, true;
}

/// Why a sysctl could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SysctlError {
    Unknown(String),
    ReadOnly(String),
    Invalid { name: String, value: i128, why: &'static str },
}

impl std::fmt::Display for SysctlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SysctlError::Unknown(n) => write!(f, "unknown sysctl {n:?}"),
            SysctlError::ReadOnly(n) => write!(f, "sysctl {n} is read-only"),
            SysctlError::Invalid { name, value, why } => write!(f, "invalid value {value} for {name}: {why}"),
        }
    }
}

impl std::error::Error for SysctlError {}

/// The sysctl values of one table.
#[derive(Debug)]
pub struct Sysctl {
    values: Box<[AtomicU64]>,
}

impl Default for Sysctl {
    fn default() -> Sysctl {
        Sysctl { values: SYSCTLS.iter().map(|s| AtomicU64::new(s.2)).collect() }
    }
}

impl Clone for Sysctl {
    fn clone(&self) -> Sysctl {
        Sysctl { values: self.values.iter().map(|v| AtomicU64::new(v.load(Ordering::Relaxed))).collect() }
    }
}

impl Sysctl {
    /// The current value.
    #[inline]
    pub fn get(&self, s: SysctlKey) -> u64 {
        self.values[s as usize].load(Ordering::Relaxed)
    }

    /// A timeout sysctl in nanoseconds.
    #[inline]
    pub fn timeout_ns(&self, s: SysctlKey) -> u64 {
        self.get(s).saturating_mul(1_000_000_000)
    }

    /// Sets a value without the range checks (for the table itself).
    pub fn set(&self, s: SysctlKey, v: u64) {
        self.values[s as usize].store(v, Ordering::Relaxed);
    }

    /// Looks a sysctl up by its `/proc/sys/net/netfilter` name.
    pub fn lookup(name: &str) -> Option<SysctlKey> {
        let name = name.strip_prefix("net.netfilter.").unwrap_or(name);
        SYSCTLS.iter().find(|s| s.1 == name).map(|s| s.0)
    }

    /// The name of a sysctl.
    pub fn name(s: SysctlKey) -> &'static str {
        SYSCTLS[s as usize].1
    }

    /// Reads a sysctl by name.
    pub fn get_by_name(&self, name: &str) -> Result<u64, SysctlError> {
        Sysctl::lookup(name).map(|s| self.get(s)).ok_or_else(|| SysctlError::Unknown(name.to_string()))
    }

    /// Checks a value a user wants to write, as the kernel's proc handlers would.
    pub fn validate(name: &str, value: i128) -> Result<(SysctlKey, u64), SysctlError> {
        let s = Sysctl::lookup(name).ok_or_else(|| SysctlError::Unknown(name.to_string()))?;
        if !SYSCTLS[s as usize].3 {
            return Err(SysctlError::ReadOnly(name.to_string()));
        }
        let bad = |why| SysctlError::Invalid { name: name.to_string(), value, why };
        if value < 0 {
            return Err(bad("must not be negative"));
        }
        let limit: i128 = match s {
            SysctlKey::Checksum
            | SysctlKey::Acct
            | SysctlKey::Timestamp
            | SysctlKey::TcpLoose
            | SysctlKey::TcpBeLiberal
            | SysctlKey::TcpIgnoreInvalidRst => 1,
            SysctlKey::Events => 2,
            SysctlKey::LogInvalid => 255,
            SysctlKey::Buckets => i128::from(u32::MAX / 2),
            SysctlKey::Max | SysctlKey::ExpectMax | SysctlKey::TcpMaxRetrans => i128::from(i32::MAX),
            // Timeouts are stored as 32-bit jiffies at HZ=250 in the kernel.
            _ => i128::from(u32::MAX / 250),
        };
        if value > limit {
            return Err(bad("out of range"));
        }
        if s == SysctlKey::Buckets && value == 0 {
            return Err(bad("must be at least 1"));
        }
        Ok((s, value as u64))
    }

    /// All (name, value) pairs.
    pub fn items(&self) -> Vec<(&'static str, u64)> {
        SYSCTLS.iter().map(|s| (s.1, self.get(s.0))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_names() {
        let s = Sysctl::default();
        assert_eq!(s.get(SysctlKey::UdpTimeout), 30);
        assert_eq!(s.get_by_name("nf_conntrack_udp_timeout_stream").unwrap(), 120);
        assert_eq!(s.get_by_name("net.netfilter.nf_conntrack_max").unwrap(), 262_144);
        for (i, e) in SYSCTLS.iter().enumerate() {
            assert_eq!(e.0 as usize, i);
        }
        assert!(matches!(s.get_by_name("nope"), Err(SysctlError::Unknown(_))));
    }

    #[test]
    fn validation() {
        assert!(Sysctl::validate("nf_conntrack_checksum", 2).is_err());
        assert!(Sysctl::validate("nf_conntrack_udp_timeout", -1).is_err());
        assert!(Sysctl::validate("nf_conntrack_buckets", 0).is_err());
        assert_eq!(Sysctl::validate("nf_conntrack_max", 0).unwrap(), (SysctlKey::Max, 0));
    }
}
