//! `struct net`: one network namespace as nfct models it: its conntrack (table, sysctls,
//! statistics, events), its netfilter hook registrations, its defragmentation queues, the
//! addresses the host owns, and its clock (jiffies).
//!
//! Depends on `core`, `netfilter` and `defrag`; the IP layer (`ip`) and the drivers above it
//! (`replay`, `python`) take a `&Net`.

use crate::core::{Conntrack, CtOptions};
use crate::defrag::Defrag;
use crate::fib::{Devices, Fib, Routing};
use crate::nat::NatState;
use crate::netfilter::Hooks;
use crate::proto::tcp::RstTimeout;
use crate::sysctl::{Sysctl, SysctlKey};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Options fixed when a namespace is created.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    /// A fixed hash seed for reproducible bucket placement (random when None).
    pub seed: Option<u64>,
    /// Which kernel to follow where 6.12 and 6.18 differ (spec §7.10).
    pub rst_timeout: RstTimeout,
    /// The addresses this host owns (the routing decision's local delivery).
    pub local_addrs: Vec<IpAddr>,
    /// The host's interfaces, routing tables and IP settings; None for nfct's default router.
    pub routing: Option<Routing>,
    /// The MTU of the default router's way out (1500 when None).
    pub egress_mtu: Option<u32>,
}

/// One network namespace.
#[derive(Debug)]
pub struct Net {
    /// Conntrack (`net->ct` and the table it uses).
    pub ct: Conntrack,
    /// The netfilter hooks (`net->nf`).
    pub hooks: Hooks,
    /// Reassembly in front of conntrack (`nf_defrag_ipv4/ipv6`, spec §1.2).
    pub defrag: Defrag,
    /// NAT's source mappings (`nf_nat_bysource`).
    pub nat: NatState,
    /// The addresses the host owns.
    pub local: LocalAddrs,
    /// The host's interfaces, routing tables and IP settings; None for nfct's default router
    /// (every non-local unicast destination forwarded, out of one interface).
    pub routing: Option<Routing>,
    /// The MTU of the default router's way out.
    pub egress_mtu: u32,
    /// Jiffies, in ns: moved forward by the drivers (packets' times, `advance_to`), never back.
    clock: AtomicU64,
    /// The seeded generator of rules' random numbers (`numgen random`, `meta random`).
    rng: AtomicU64,
}

impl Net {
    /// A namespace with the Linux 6.18 defaults, changed by `sysctl`, with conntrack's own hook
    /// operations registered.
    pub fn new(opts: NetOptions, sysctl: Sysctl) -> Net {
        Net {
            ct: Conntrack::new(CtOptions { seed: opts.seed, rst_timeout: opts.rst_timeout }, sysctl),
            hooks: Hooks::with_conntrack(),
            defrag: Defrag::new(),
            nat: NatState::default(),
            local: LocalAddrs::new(&opts.local_addrs),
            routing: opts.routing,
            egress_mtu: opts.egress_mtu.unwrap_or(1500),
            clock: AtomicU64::new(0),
            rng: AtomicU64::new(opts.seed.unwrap_or_else(seed_from_os) | 1),
        }
    }

    /// The interface packets from the wire arrive on when nothing says otherwise: the first
    /// that is up and not loopback (none for nfct's default router).
    pub fn default_iif(&self) -> Option<u32> {
        self.devices().first_up().map(|d| d.index)
    }

    /// The host's interfaces (none for nfct's default router).
    pub fn devices(&self) -> &Devices {
        self.routing.as_ref().map_or(&crate::fib::NO_DEVICES, |r| &r.devices)
    }

    /// The host's routing tables, if it has them.
    pub fn fib(&self) -> Option<&Fib> {
        self.routing.as_ref().map(|r| &r.fib)
    }

    /// A random number for rules (xorshift64*, seeded by the namespace's seed).
    pub fn random(&self) -> u32 {
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::Relaxed);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// The namespace's clock, ns.
    #[inline]
    pub fn now(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// Moves the clock forward to `t` (never back: jiffies only grow) and returns the time.
    #[inline]
    pub fn advance_to(&self, t: u64) -> u64 {
        // Most packets do not move the clock: read before writing the shared line.
        let cur = self.clock.load(Ordering::Relaxed);
        if t <= cur {
            return cur;
        }
        self.clock.fetch_max(t, Ordering::Relaxed).max(t)
    }

    /// The netfilter sysctls (`/proc/sys/net/netfilter`).
    #[inline]
    pub fn sysctl(&self) -> &Sysctl {
        &self.ct.sysctl
    }

    /// Sets a sysctl the way writing it in /proc does (the bucket count resizes the table).
    pub fn set_sysctl(&self, key: SysctlKey, v: u64) {
        self.ct.set_sysctl(key, v);
    }
}

/// A random seed from the OS (0 if it has none to give).
fn seed_from_os() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_le_bytes(b)
}

/// The addresses a host owns (`Net(local_addrs=...)`): packets to them are delivered locally,
/// packets from them (arriving from the wire) are martians, and packets it sends to them loop
/// back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    v4: Vec<[u8; 4]>,
    v6: Vec<[u8; 16]>,
}

impl LocalAddrs {
    pub fn new(addrs: &[IpAddr]) -> LocalAddrs {
        let mut l = LocalAddrs::default();
        for a in addrs {
            match a {
                IpAddr::V4(a) => l.v4.push(a.octets()),
                IpAddr::V6(a) => l.v6.push(a.octets()),
            }
        }
        l
    }

    pub fn addrs(&self) -> Vec<IpAddr> {
        let v4 = self.v4.iter().map(|a| IpAddr::from(*a));
        v4.chain(self.v6.iter().map(|a| IpAddr::from(*a))).collect()
    }

    pub fn has_v4(&self, a: [u8; 4]) -> bool {
        self.v4.contains(&a)
    }

    pub fn has_v6(&self, a: &[u8; 16]) -> bool {
        self.v6.contains(a)
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.has_v4(a.octets()),
            IpAddr::V6(a) => self.has_v6(&a.octets()),
        }
    }
}
