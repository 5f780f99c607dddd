//! Batches of packets: warm the cache lines their lookups will touch before the packets go
//! through `nf_conntrack_in` one by one (DPDK's bulk-lookup idea applied to the packet path).

use super::BULK;
use crate::core::{get_tuple, Net};
use crate::tuple::{Direction, Zone, AF_INET6};
use crate::wire::ip;

impl Net {
    /// Prefetches what the lookups of `pkts` (each starting at its L3 header, family `pf`) will
    /// read, `BULK` packets at a time: parses each tuple, hashes it, then `Table::prefetch`.
    /// Only a hint: it changes nothing, packets that do not parse are skipped, and the hash
    /// assumes the default zone (a packet in another zone is simply not prefetched usefully).
    /// The tuples are hashed again when the packets are processed; that costs less than the
    /// cache misses it overlaps once the table outgrows the cache (benches/RESULTS.md).
    pub fn prefetch_packets<'a, I>(&self, pf: u8, pkts: I) -> u32
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let zone_id = Zone::default().id_for(Direction::Original);
        let mut hashes = [0u32; BULK];
        let mut n = 0;
        let mut acc = 0;
        for data in pkts {
            let parsed = if pf == AF_INET6 { ip::ipv6_get_l4proto(data) } else { ip::ipv4_get_l4proto(data) };
            let Ok(l3) = parsed else { continue };
            let Some(t) = get_tuple(&l3, data.get(l3.l4_off..).unwrap_or(&[])) else { continue };
            hashes[n] = self.hash(&t, zone_id);
            n += 1;
            if n == BULK {
                acc ^= self.table.prefetch(&hashes);
                n = 0;
            }
        }
        acc ^ self.table.prefetch(&hashes[..n])
    }
}

/// Entries beyond which a batch's lookups are prefetched: below it the table sits in the
/// caches and the second parse and hash of each tuple cost more than they save
/// (benches/RESULTS.md §0: −11% at 10k entries, +43% at 100k, +55% at 1M).
pub const PREFETCH_MIN_ENTRIES: u64 = 32_768;

impl Net {
    /// `prefetch_packets` for a window of packets of either family, when the table is large
    /// enough for it to pay.
    pub fn prefetch_window<'a>(&self, pkts: impl Iterator<Item = &'a [u8]> + Clone) -> u32 {
        if self.count() < PREFETCH_MIN_ENTRIES {
            return 0;
        }
        let v6 = pkts.clone().any(|p| p.first().is_some_and(|b| b >> 4 == 6));
        let mut acc = self.prefetch_packets(crate::tuple::AF_INET, pkts.clone());
        if v6 {
            acc ^= self.prefetch_packets(AF_INET6, pkts);
        }
        acc
    }
}
