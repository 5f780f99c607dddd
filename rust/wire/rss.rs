//! A symmetric flow hash over packet headers, as receive-side scaling spreads packets over
//! CPUs: both directions of a flow hash alike; TCP, SCTP and DCCP on their ports as well as
//! their addresses (RSS's 4-tuple), everything else on protocol and addresses only, so the
//! fragments of a UDP datagram stay with the rest of their flow; an ICMP or ICMPv6 error hashes
//! as the packet it quotes.

use super::ip::{ipv4_fields, ipv6_fields};
use crate::uapi::{IPPROTO_DCCP, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP};

/// The symmetric hash of an IP packet's flow (0 for bytes that are not an IP header).
pub fn flow_hash(pkt: &[u8]) -> u64 {
    hash_depth(pkt, 0)
}

fn hash_depth(pkt: &[u8], depth: u8) -> u64 {
    // Each end as one number (address, then port), so that the canonical order is one
    // comparison and the hash a few multiplications: every worker of a threaded replay hashes
    // every packet.
    let (proto, src, dst, l4, frag) = match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let Some(h) = ipv4_fields(pkt) else { return 0 };
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let (s, d) = (u32::from_be_bytes(h.src), u32::from_be_bytes(h.dst));
            (h.protocol, u128::from(s), u128::from(d), pkt.get(ihl..).unwrap_or(&[]), h.fragment)
        }
        Some(6) => {
            let Some(h) = ipv6_fields(pkt) else { return 0 };
            let (s, d) = (u128::from_be_bytes(h.src), u128::from_be_bytes(h.dst));
            (h.next_header, s, d, pkt.get(40..).unwrap_or(&[]), false)
        }
        _ => return 0,
    };
    let error = match proto {
        IPPROTO_ICMP => l4.first().is_some_and(|&t| matches!(t, 3 | 4 | 5 | 11 | 12)),
        IPPROTO_ICMPV6 => l4.first().is_some_and(|&t| (1..=4).contains(&t)),
        _ => false,
    };
    if error && !frag && depth == 0 && l4.len() > 8 {
        return hash_depth(&l4[8..], 1);
    }
    let ports = match l4.first_chunk::<4>() {
        Some(p) if matches!(proto, IPPROTO_TCP | IPPROTO_SCTP | IPPROTO_DCCP) && !frag => {
            (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]))
        }
        _ => (0, 0),
    };
    let (a, b) = ((src, ports.0), (dst, ports.1));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let end = |(addr, port): (u128, u16)| fold(addr ^ (u128::from(port) << 64 | u128::from(port)));
    fold(u128::from(end(lo)) << 64 | u128::from(end(hi) ^ u64::from(proto)))
}

/// 128 bits to 64, every input bit moving the high bits of the result (which the worker
/// choice, `% threads`, depends on through the final mix).
#[inline]
fn fold(x: u128) -> u64 {
    let (l, h) = (x as u64, (x >> 64) as u64);
    let m = u128::from(l ^ 0x9e37_79b9_7f4a_7c15) * u128::from(h ^ 0xc2b2_ae3d_27d4_eb4f);
    let y = (m as u64) ^ ((m >> 64) as u64);
    y ^ (y >> 29)
}

#[cfg(test)]
mod tests {
    use super::flow_hash;

    #[test]
    fn symmetric_and_fragments_together() {
        let mut a = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        a.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0, 0, 0, 0, 0, 0]);
        let mut b = a.clone();
        b[12..16].copy_from_slice(&[10, 0, 0, 2]);
        b[16..20].copy_from_slice(&[10, 0, 0, 1]);
        b[20..24].copy_from_slice(&[0, 80, 0x30, 0x39]);
        assert_eq!(flow_hash(&a), flow_hash(&b));
        let mut other = a.clone();
        other[21] = 0x3a;
        assert_ne!(flow_hash(&a), flow_hash(&other));
        // UDP: addresses only, so a non-first fragment goes with its flow.
        let mut udp = a.clone();
        udp[9] = 17;
        let mut later = udp.clone();
        later[7] = 0x03;
        later[20..24].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(flow_hash(&udp), flow_hash(&later));
        // An ICMP error from a router goes where the packet it quotes went.
        let mut err = vec![0x45, 0, 0, 68, 0, 2, 0, 0, 64, 1, 0, 0, 10, 9, 9, 9, 10, 0, 0, 1];
        err.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        err.extend_from_slice(&a);
        assert_eq!(flow_hash(&err), flow_hash(&b));
        // IPv6: both directions alike, another port another flow.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        v6.extend_from_slice(&[0x20, 1, 0xd, 0xb8].repeat(4));
        v6.extend_from_slice(&[0x20, 1, 0xd, 0xb9].repeat(4));
        v6.extend_from_slice(&a[20..]);
        let mut v6r = v6.clone();
        v6r[8..24].copy_from_slice(&v6[24..40]);
        v6r[24..40].copy_from_slice(&v6[8..24]);
        v6r[40..44].copy_from_slice(&[0, 80, 0x30, 0x39]);
        assert_eq!(flow_hash(&v6), flow_hash(&v6r));
        let mut v6o = v6.clone();
        v6o[41] = 0x3a;
        assert_ne!(flow_hash(&v6), flow_hash(&v6o));
        assert_eq!(flow_hash(&[]), 0);
        assert_eq!(flow_hash(&[0x45, 0, 0]), 0);
    }

    #[test]
    fn spreads_flows_evenly() {
        // 20,000 TCP flows from consecutive addresses and ports: each of 2, 3 and 4 workers
        // gets its share within 3%.
        for workers in [2u64, 3, 4] {
            let mut got = vec![0u32; workers as usize];
            for i in 0..20_000u32 {
                let mut p = vec![0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0];
                p.extend_from_slice(&(0x0a00_0000 | (i / 7)).to_be_bytes());
                p.extend_from_slice(&[192, 0, 2, 1]);
                p.extend_from_slice(&(1024 + (i % 7) as u16 * 1000).to_be_bytes());
                p.extend_from_slice(&[0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0, 0, 0, 0, 0, 0]);
                got[(flow_hash(&p) % workers) as usize] += 1;
            }
            let share = 20_000 / workers as u32;
            for g in got {
                assert!(g.abs_diff(share) < share * 3 / 100, "{workers} workers: {g} of {share}");
            }
        }
    }
}
