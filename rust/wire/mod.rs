//! Packet bytes: link-layer decapsulation, IP header sanity and L4 header views.
//!
//! Every parser here is total: truncated or hostile bytes give `None`/`Err`, never a panic.
//! Nothing allocates; every function works on borrowed slices.

pub mod checksum;
pub mod ip;
pub mod l4;
pub mod link;
