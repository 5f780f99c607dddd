//! nfct: Linux netfilter connection tracking in userspace, faithful to the kernel.
//!
//! Each module is named after the kernel concept (and source file) it models, and every
//! dependency points down this list; a module never imports one above it:
//!
//! * `uapi`: the kernel's numbers (AF_*, IPPROTO_*, NF_*, NFPROTO_*, NF_IP_PRI_*, IP_CT_*,
//!   IPS_*, IPCT_*), the leaf; `sysctl` and `stats` are leaves too.
//! * `wire`: packet bytes parsed and checked (total parsers: hostile input gives a result, never
//!   a panic); every read of header bytes is here. Depends on `uapi` only.
//! * `tuple`: `nf_conntrack_tuple`, read from a packet, inverted, zoned and hashed; `fib`: the
//!   host's interfaces and routing tables (data and lookups).
//! * `proto::state`: the trackers' per-entry state (data only); `conn`: `struct nf_conn` and the
//!   snapshot the listings print; `proto`: one tracker per L4 protocol, acting on a `Conn`.
//! * `table`: the lock-striped bucket array with its slab of entries, both directions indexed
//!   (a data structure: it knows neither the core nor the printers).
//! * `format`: the text conntrack-tools and /proc print; `events`: ctnetlink messages and their
//!   bounded queue; `defrag`: IPv4/IPv6 reassembly in front of conntrack.
//! * `core`: a namespace's conntrack: `nf_conntrack_in`, `init_conntrack`, `early_drop`,
//!   confirmation, deletion, statistics and the garbage collector. Time is passed in; it knows
//!   nothing of hooks.
//! * `ctnetlink`: the control plane's filters, deletions, flush and updates (`conntrack
//!   -D/-F/-U`).
//! * `nat`: `nf_nat`: a connection's binding chosen on its first packet (the unique-tuple
//!   search, masquerade's and redirect's addresses) and packets rewritten to follow it.
//! * `netfilter`: the hook registry and what an operation runs, the nft rules (`nft`); data
//!   and rule evaluation, no `Net`.
//! * `net`: `struct net`, one namespace: conntrack, hooks, defrag, addresses, the clock.
//! * `host`: a host read from `ip -j` and `nft -j` output (the host file), applied to a `Net`.
//! * `ip`: the IP layer: `ip_rcv`/`ipv6_rcv`, forwarding, `ip_local_out` with the loopback
//!   pass, the routing decision (`ip::route`), `nf_hook_slow` over a `Net`.
//! * `replay`: capture reading, the one per-packet driver (`Feeder`), threads, the clock policy.
//! * `python` (behind the `python` feature): the only module that knows PyO3.
#![forbid(unsafe_code)]

pub mod conn;
pub mod core;
pub mod ctnetlink;
pub mod defrag;
pub mod events;
pub mod fib;
pub mod format;
pub mod host;
pub mod ip;
pub mod nat;
pub mod net;
pub mod netfilter;
pub mod proto;
pub mod replay;
pub mod stats;
pub mod sysctl;
pub mod table;
pub mod tuple;
pub mod uapi;
pub mod wire;

#[cfg(feature = "python")]
mod python;
