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

    /// Checks a value a user wants to write, as the kernel's proc handlers would, and returns
    /// what the kernel would then hold: the ranges are those Linux 6.18 (HZ=250) accepts, as
    /// observed by writing each sysctl in a network namespace (`tools/probe_sysctls.py`; the
    /// table is in `docs/fidelity.md`, the recording in `tests/scenarios/sysctl_ranges.json`).
    /// Two values differ from what was written:
    /// `nf_conntrack_buckets` is rounded up to a multiple of 512 (the hash table's allocation
    /// unit, `nf_ct_alloc_hashtable`), and a negative timeout, which the kernel accepts (the
    /// jiffies conversion takes a sign) and which makes entries expire at once, is kept as 0,
    /// which does the same. The frag6 thresholds also depend on each other: see
    /// [`Sysctl::check_with`].
    pub fn validate(name: &str, value: i128) -> Result<(SysctlKey, u64), SysctlError> {
        let s = Sysctl::lookup(name).ok_or_else(|| SysctlError::Unknown(name.to_string()))?;
        if !SYSCTLS[s as usize].3 {
            return Err(SysctlError::ReadOnly(name.to_string()));
        }
        let name = Sysctl::name(s);
        let bad = |why| SysctlError::Invalid { name: name.to_string(), value, why };
        let (lo, hi) = range(s);
        if value < lo || value > hi {
            return Err(bad(match s {
                SysctlKey::Buckets if value > hi && value <= i128::from(i32::MAX) => {
                    "out of range: at most 268434944 (the kernel cannot allocate more, ENOMEM)"
                }
                SysctlKey::Buckets if value == 0 => "must be at least 1",
                _ => range_text(s),
            }));
        }
        let v = match s {
            SysctlKey::Buckets => (value as u64).div_ceil(BUCKET_ROUNDING) * BUCKET_ROUNDING,
            _ if is_timeout(s) => value.max(0) as u64,
            _ => value as u64,
        };
        Ok((s, v))
    }

    /// [`Sysctl::validate`], then the checks that depend on the other values of this table:
    /// `nf_conntrack_frag6_low_thresh` at most the high threshold, the high threshold at least
    /// the low one (the kernel's `extra1`/`extra2` bounds point at each other).
    pub fn check_with(&self, name: &str, value: i128) -> Result<(SysctlKey, u64), SysctlError> {
        let (s, v) = Sysctl::validate(name, value)?;
        let bad = |why| SysctlError::Invalid { name: Sysctl::name(s).to_string(), value, why };
        match s {
            SysctlKey::Frag6LowThresh if v > self.get(SysctlKey::Frag6HighThresh) => {
                Err(bad("must not exceed nf_conntrack_frag6_high_thresh"))
            }
            SysctlKey::Frag6HighThresh if v < self.get(SysctlKey::Frag6LowThresh) => {
                Err(bad("must not be below nf_conntrack_frag6_low_thresh"))
            }
            _ => Ok((s, v)),
        }
    }

    /// The values the kernel accepts for a sysctl, inclusive (before the frag6 thresholds'
    /// dependence on each other).
    pub fn range(name: &str) -> Option<(i128, i128)> {
        Sysctl::lookup(name).map(range)
    }

    /// All (name, value) pairs.
    pub fn items(&self) -> Vec<(&'static str, u64)> {
        SYSCTLS.iter().map(|s| (s.1, self.get(s.0))).collect()
    }
}

/// `nf_conntrack_buckets` is allocated in pages of 512 bucket heads (4096 / 8 bytes).
pub const BUCKET_ROUNDING: u64 = 512;
/// The largest bucket count the kernel accepts: more is rounded up to 2^28 heads, 2 GiB, which
/// its allocator refuses (ENOMEM); above `INT_MAX` the write itself is EINVAL.
pub const BUCKETS_MAX: i128 = 268_434_944;
/// The timeouts are converted to jiffies (HZ=250) in an int: at most `INT_MAX / HZ` seconds,
/// either sign.
pub const TIMEOUT_MAX: i128 = (i32::MAX / 250) as i128;

fn is_timeout(s: SysctlKey) -> bool {
    Sysctl::name(s).contains("_timeout")
}

/// The accepted values of one sysctl (observed on Linux 6.18.44, HZ=250), inclusive.
fn range(s: SysctlKey) -> (i128, i128) {
    use SysctlKey::*;
    match s {
        // proc_dou8vec_minmax with 0..1 (0..2 for events): no sign, no other value.
        Checksum | Acct | Timestamp | TcpLoose | TcpBeLiberal | TcpIgnoreInvalidRst => (0, 1),
        Events => (0, 2),
        // u8 values.
        LogInvalid | TcpMaxRetrans => (0, 255),
        // proc_dointvec_minmax from 0 (1 for the expectation limit) to INT_MAX.
        Max => (0, i128::from(i32::MAX)),
        ExpectMax => (1, i128::from(i32::MAX)),
        Buckets => (1, BUCKETS_MAX),
        // proc_doulongvec_minmax: an unsigned long, bounded by the other threshold.
        Frag6HighThresh | Frag6LowThresh => (0, i128::from(u64::MAX)),
        _ => (-TIMEOUT_MAX, TIMEOUT_MAX),
    }
}

/// The range of a sysctl in words, for an error message.
fn range_text(s: SysctlKey) -> &'static str {
    use SysctlKey::*;
    match s {
        Checksum | Acct | Timestamp | TcpLoose | TcpBeLiberal | TcpIgnoreInvalidRst => "out of range: 0 or 1",
        Events => "out of range: 0, 1 or 2",
        LogInvalid | TcpMaxRetrans => "out of range: 0 to 255",
        Max => "out of range: 0 (no limit) to 2147483647",
        ExpectMax => "out of range: 1 to 2147483647",
        Buckets => "out of range: 1 to 268434944 (rounded up to a multiple of 512)",
        Frag6HighThresh | Frag6LowThresh => "out of range: 0 to 18446744073709551615",
        _ => "out of range: -8589934 to 8589934 seconds (2^31-1 jiffies at HZ=250; a negative timeout expires entries at once, as 0 does)",
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
        assert!(Sysctl::validate("nf_conntrack_buckets", 0).is_err());
        assert_eq!(Sysctl::validate("nf_conntrack_max", 0).unwrap(), (SysctlKey::Max, 0));
    }

    /// The edges observed on Linux 6.18.44 (tools/probe_sysctls.py; every value probed is
    /// checked against the recording by tests/test_sysctl.py).
    #[test]
    fn kernel_ranges() {
        let ok = |n: &str, v: i128| Sysctl::validate(n, v).map(|r| r.1).ok();
        // Buckets: rounded up to 512s, at most 268434944, never 0 or negative.
        assert_eq!(ok("nf_conntrack_buckets", 1), Some(512));
        assert_eq!(ok("nf_conntrack_buckets", 513), Some(1024));
        assert_eq!(ok("nf_conntrack_buckets", 262_144), Some(262_144));
        assert_eq!(ok("nf_conntrack_buckets", 268_434_944), Some(268_434_944));
        for v in [-1, 0, 268_434_945, 268_435_455, 268_435_456, 1 << 31] {
            assert_eq!(ok("nf_conntrack_buckets", v), None, "{v}");
        }
        // Timeouts: INT_MAX / HZ seconds either way; a negative one acts as 0.
        assert_eq!(ok("nf_conntrack_udp_timeout", 8_589_934), Some(8_589_934));
        assert_eq!(ok("nf_conntrack_udp_timeout", 8_589_935), None);
        assert_eq!(ok("nf_conntrack_udp_timeout", -8_589_934), Some(0));
        assert_eq!(ok("nf_conntrack_udp_timeout", -8_589_935), None);
        assert_eq!(ok("nf_conntrack_tcp_timeout_established", -1), Some(0));
        // u8 values, booleans, events.
        assert_eq!(ok("nf_conntrack_tcp_max_retrans", 255), Some(255));
        assert_eq!(ok("nf_conntrack_tcp_max_retrans", 256), None);
        assert_eq!(ok("nf_conntrack_log_invalid", -1), None);
        assert_eq!(ok("nf_conntrack_events", 3), None);
        assert_eq!(ok("nf_conntrack_acct", 2), None);
        // Limits: max from 0 (unlimited), the expectation limit from 1, both to INT_MAX.
        assert_eq!(ok("nf_conntrack_max", i128::from(i32::MAX)), Some(i32::MAX as u64));
        assert_eq!(ok("nf_conntrack_max", 1 << 31), None);
        assert_eq!(ok("nf_conntrack_expect_max", 0), None);
        // The frag6 thresholds: unsigned longs, each bounded by the other.
        assert_eq!(ok("nf_conntrack_frag6_high_thresh", i128::from(u64::MAX)), Some(u64::MAX));
        assert_eq!(ok("nf_conntrack_frag6_high_thresh", 1 << 64), None);
        let s = Sysctl::default();
        assert!(s.check_with("nf_conntrack_frag6_high_thresh", 3_145_727).is_err());
        assert!(s.check_with("nf_conntrack_frag6_high_thresh", 3_145_728).is_ok());
        assert!(s.check_with("nf_conntrack_frag6_low_thresh", 4_194_305).is_err());
        assert!(s.check_with("nf_conntrack_frag6_low_thresh", 0).is_ok());
    }

    #[test]
    fn messages_name_the_sysctl_and_the_range() {
        let e = Sysctl::validate("net.netfilter.nf_conntrack_buckets", 268_435_456).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value 268435456 for nf_conntrack_buckets: out of range: at most 268434944 (the kernel cannot allocate more, ENOMEM)"
        );
        let e = Sysctl::validate("nf_conntrack_udp_timeout", 17_179_869).unwrap_err();
        assert!(e.to_string().starts_with("invalid value 17179869 for nf_conntrack_udp_timeout: out of range: -8589934 to 8589934 seconds"), "{e}");
    }
}
