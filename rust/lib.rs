//! nfct: Linux netfilter connection tracking in userspace, faithful to the kernel.
//!
//! Data flows one way through modules named after the kernel concepts they model:
//! `wire` parses and checks packet bytes (total parsers: hostile input gives a result, never a
//! panic); `tuple` builds, inverts and hashes `nf_conntrack_tuple`s; `proto` holds one tracker
//! per L4 protocol; `table` is the lock-striped bucket array with its slab of entries, both
//! directions indexed; `core` is `nf_conntrack_in`, `init_conntrack`, confirmation, statistics
//! and the clock-driven garbage collector; `format` prints what conntrack-tools print;
//! `replay` reads captures and feeds them through the core in batches; `python` (behind the
//! `python` feature) is the only module that knows PyO3.
#![forbid(unsafe_code)]

pub mod core;
pub mod defrag;
pub mod events;
pub mod format;
pub mod hooks;
pub mod proto;
pub mod replay;
pub mod stats;
pub mod sysctl;
pub mod table;
pub mod tuple;
pub mod wire;

#[cfg(feature = "python")]
mod python;
