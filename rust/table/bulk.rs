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
