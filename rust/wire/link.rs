//! Link-layer decapsulation: find the IP packet inside a captured frame, the way a replay
//! harness extracts what it writes into a TUN device (`IFF_TUN | IFF_NO_PI`).

use super::be16;

/// BSD loopback (`DLT_NULL`): 4-byte address family in the capturing host's byte order.
pub const LINKTYPE_NULL: u32 = 0;
/// Ethernet II / 802.3.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Raw IPv4/IPv6, no link header.
pub const LINKTYPE_RAW: u32 = 101;
/// OpenBSD loopback: 4-byte address family in network byte order.
pub const LINKTYPE_LOOP: u32 = 108;
/// Linux cooked capture v1 (16-byte header).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// Raw IPv4 only.
pub const LINKTYPE_IPV4: u32 = 228;
/// Raw IPv6 only.
pub const LINKTYPE_IPV6: u32 = 229;
/// Linux cooked capture v2 (20-byte header).
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// Historic DLT values some systems write for raw IP (`DLT_RAW` on BSD / OpenBSD).
const DLT_RAW_12: u32 = 12;
const DLT_RAW_14: u32 = 14;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ1: u16 = 0x9100;
const ETH_P_QINQ2: u16 = 0x9200;
const ETH_P_QINQ3: u16 = 0x9300;
const ETH_P_MPLS_UC: u16 = 0x8847;
const ETH_P_PPP_SES: u16 = 0x8864;
const PPP_IP: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// Bound on stacked VLAN tags / MPLS labels, so a hostile frame cannot make us loop long.
const MAX_STACK: usize = 64;

/// Payload if its first byte's version nibble is 4 or 6 (IP carried without a type field).
#[inline]
fn by_version(p: &[u8]) -> Option<&[u8]> {
    match p.first().map(|b| b >> 4) {
        Some(4 | 6) => Some(p),
        _ => None,
    }
}

/// The encapsulations crossed on the way from the link header to the IP packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encap {
    /// 802.1Q / 802.1ad / 0x9100-0x9300 tags popped.
    pub vlan_tags: u8,
    /// MPLS labels popped (0 if the frame was not MPLS).
    pub mpls_labels: u8,
    /// Carried in a PPPoE session frame.
    pub pppoe: bool,
}

/// Follows an EtherType (after the link header) to the IP packet: VLAN tags of any depth,
/// MPLS label stacks, PPPoE session frames.
fn by_ethertype(mut ethertype: u16, mut payload: &[u8]) -> Option<(&[u8], Encap)> {
    let mut enc = Encap::default();
    for _ in 0..MAX_STACK {
        match ethertype {
            ETH_P_IP | ETH_P_IPV6 => return Some((payload, enc)),
            ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1 | ETH_P_QINQ2 | ETH_P_QINQ3 => {
                // TCI (2 bytes) then the inner EtherType.
                ethertype = be16(payload, 2)?;
                payload = payload.get(4..)?;
                enc.vlan_tags = enc.vlan_tags.saturating_add(1);
            }
            ETH_P_MPLS_UC => {
                // Pop labels up to and including the bottom-of-stack one.
                for _ in 0..MAX_STACK {
                    let entry = payload.get(..4)?;
                    payload = payload.get(4..)?;
                    enc.mpls_labels = enc.mpls_labels.saturating_add(1);
                    if entry.get(2).is_some_and(|b| b & 0x01 != 0) {
                        return by_version(payload).map(|p| (p, enc));
                    }
                }
                return None;
            }
            ETH_P_PPP_SES => {
                // PPPoE header (6 bytes) then the 2-byte PPP protocol.
                let proto = be16(payload, 6)?;
                let inner = payload.get(8..)?;
                enc.pppoe = true;
                return match proto {
                    PPP_IP | PPP_IPV6 => Some((inner, enc)),
                    _ => None,
                };
            }
            _ => return None,
        }
    }
    None
}

/// Address family values that mean IPv6 in a NULL/LOOP header (Linux/BSDs/Darwin: 10, 24, 28,
/// 30).
#[inline]
fn af_is_inet6(af: u32) -> bool {
    matches!(af, 10 | 24 | 28 | 30)
}

/// The IP packet (starting at the IPv4/IPv6 header) inside a captured frame, or `None` if the
/// frame carries no IP (ARP, CDP, LLDP, ...) or is too short to tell.
///
/// Ethernet with any stack of 802.1Q/802.1ad/0x9100 tags (QinQ), MPLS unicast 0x8847 (labels
/// popped to the bottom of the stack, then the version nibble decides), PPPoE session (0x8864,
/// PPP protocol 0x0021/0x0057); SLL (protocol at bytes 14-15, 16-byte header); SLL2 (protocol
/// at bytes 0-1, 20-byte header); NULL (4-byte host-order address family, either byte order:
/// 2 -> IPv4; 10, 24, 28, 30 -> IPv6); LOOP (network-order family); RAW and DLT 12/14 (version
/// nibble 4 or 6); IPV4/IPV6 (version nibble must match). Unknown linktypes -> `None`
/// ([`is_supported`] tells them apart from frames that are not IP).
/// The slice may carry link-layer padding after the IP packet; `ip::ipv4_rcv_check` /
/// `ip::ipv6_rcv_check` give the length to trim to.
pub fn ip_payload(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    ip_payload_encap(linktype, frame).map(|(p, _)| p)
}

/// Whether frames of `linktype` are decoded at all (by [`ip_payload`]): Ethernet, NULL, LOOP,
/// RAW (and DLT 12/14), Linux SLL and SLL2, IPV4, IPV6. A frame of any other link type is never
/// looked into, so whether it carries IP is unknown.
pub fn is_supported(linktype: u32) -> bool {
    matches!(
        linktype,
        LINKTYPE_ETHERNET
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_LINUX_SLL2
            | LINKTYPE_NULL
            | LINKTYPE_LOOP
            | LINKTYPE_RAW
            | DLT_RAW_12
            | DLT_RAW_14
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
    )
}

/// The `LINKTYPE_*` name (as tcpdump.org lists it, without the prefix) of the link types nfct
/// decodes and of those a capture it cannot read commonly has, for the messages that name a
/// link type; `None` for the others.
pub fn name(linktype: u32) -> Option<&'static str> {
    const USER: [&str; 16] = [
        "USER0", "USER1", "USER2", "USER3", "USER4", "USER5", "USER6", "USER7", "USER8", "USER9", "USER10",
        "USER11", "USER12", "USER13", "USER14", "USER15",
    ];
    Some(match linktype {
        LINKTYPE_NULL => "NULL",
        LINKTYPE_ETHERNET => "ETHERNET",
        9 => "PPP",
        10 => "FDDI",
        50 => "PPP_HDLC",
        51 => "PPP_ETHER",
        LINKTYPE_RAW => "RAW",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        LINKTYPE_LOOP => "LOOP",
        LINKTYPE_LINUX_SLL => "LINUX_SLL",
        119 => "IEEE802_11_PRISM",
        127 => "IEEE802_11_RADIOTAP",
        143 => "DOCSIS",
        147..=162 => USER[(linktype - 147) as usize],
        187 => "BLUETOOTH_HCI_H4",
        189 => "USB_LINUX",
        192 => "PPI",
        195 => "IEEE802_15_4_WITHFCS",
        201 => "BLUETOOTH_HCI_H4_WITH_PHDR",
        220 => "USB_LINUX_MMAPPED",
        LINKTYPE_IPV4 => "IPV4",
        LINKTYPE_IPV6 => "IPV6",
        253 => "NETLINK",
        LINKTYPE_LINUX_SLL2 => "LINUX_SLL2",
        _ => return None,
    })
}

/// The link layers nfct decodes, as its messages list them (`nfct replay`'s line on frames it
/// skipped, `nfct explain`'s error on one).
pub const DECODED: &str = "Ethernet, Linux SLL/SLL2, NULL/LOOP and raw IP";

/// A link type as messages name it: its number, then its [`name`] if it has one
/// (`147 (USER0)`, `4000`).
pub fn describe(linktype: u32) -> String {
    match name(linktype) {
        Some(n) => format!("{linktype} ({n})"),
        None => linktype.to_string(),
    }
}

/// Pairs a payload found without any tag/label with an empty [`Encap`].
#[inline]
fn with_no_encap(p: Option<&[u8]>) -> Option<(&[u8], Encap)> {
    p.map(|p| (p, Encap::default()))
}

/// [`ip_payload`] plus the encapsulations crossed (VLAN tags, MPLS labels, PPPoE), so a replay
/// can mimic a harness that does not decode some of them (the kernel harness behind
/// `shared/pcaps/kernel/` skipped MPLS frames).
pub fn ip_payload_encap(linktype: u32, frame: &[u8]) -> Option<(&[u8], Encap)> {
    match linktype {
        LINKTYPE_ETHERNET => by_ethertype(be16(frame, 12)?, frame.get(14..)?),
        LINKTYPE_LINUX_SLL => by_ethertype(be16(frame, 14)?, frame.get(16..)?),
        LINKTYPE_LINUX_SLL2 => by_ethertype(be16(frame, 0)?, frame.get(20..)?),
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let fam = frame.first_chunk::<4>()?;
            let payload = frame.get(4..)?;
            let be = u32::from_be_bytes(*fam);
            let candidates =
                if linktype == LINKTYPE_LOOP { [be, be] } else { [u32::from_le_bytes(*fam), be] };
            with_no_encap(candidates.iter().any(|&af| af == 2 || af_is_inet6(af)).then_some(payload))
        }
        LINKTYPE_RAW | DLT_RAW_12 | DLT_RAW_14 => with_no_encap(by_version(frame)),
        LINKTYPE_IPV4 => with_no_encap((frame.first().map(|b| b >> 4) == Some(4)).then_some(frame)),
        LINKTYPE_IPV6 => with_no_encap((frame.first().map(|b| b >> 4) == Some(6)).then_some(frame)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Minimal IPv4 header start (only the version nibble matters to the link layer).
    const IP4: [u8; 4] = [0x45, 0x00, 0x00, 0x14];
    const IP6: [u8; 4] = [0x60, 0x00, 0x00, 0x00];

    fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(rest);
        f
    }

    #[test]
    fn link_types_are_named_with_their_number() {
        assert_eq!(describe(147), "147 (USER0)");
        assert_eq!(describe(162), "162 (USER15)");
        assert_eq!(describe(105), "105 (IEEE802_11)");
        assert_eq!(describe(LINKTYPE_LINUX_SLL2), "276 (LINUX_SLL2)");
        assert_eq!(describe(4000), "4000");
        assert_eq!((name(146), name(163)), (None, None));
    }

    #[test]
    fn supported_is_exactly_what_is_decoded() {
        // One frame per way a link type can carry IPv4/IPv6: raw, Ethernet, SLL, SLL2,
        // NULL (either byte order) and LOOP headers in front of the packet.
        let with = |hdr: &[u8], p: &[u8]| [hdr, p].concat();
        let mut sll = [0u8; 16];
        sll[14..].copy_from_slice(&[0x08, 0x00]);
        let mut sll2 = [0u8; 20];
        sll2[..2].copy_from_slice(&[0x08, 0x00]);
        let frames = [
            IP4.to_vec(),
            IP6.to_vec(),
            eth(0x0800, &IP4),
            with(&sll, &IP4),
            with(&sll2, &IP4),
            with(&2u32.to_le_bytes(), &IP4),
            with(&2u32.to_be_bytes(), &IP4),
        ];
        for lt in (0..1024).chain([u32::from(u16::MAX), u32::MAX]) {
            let decodes = frames.iter().any(|f| ip_payload(lt, f).is_some());
            assert_eq!(decodes, is_supported(lt), "link type {lt}");
        }
        assert!(!is_supported(105) && !is_supported(147));
    }

    #[test]
    fn ethernet_plain_and_tagged() {
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x0800, &IP4)), Some(&IP4[..]));
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x86dd, &IP6)), Some(&IP6[..]));
        // ARP
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x0806, &[0, 1, 8, 0])), None);
        // 802.3 length field + LLC (CDP)
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x0030, &[0xaa, 0xaa, 3, 0])), None);
        // QinQ: 802.1ad outer (vid 100) + 802.1Q inner (vid 200) + IPv4
        let mut q = vec![0x00, 0x64, 0x81, 0x00, 0x00, 0xc8, 0x08, 0x00];
        q.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x88a8, &q)), Some(&IP4[..]));
        // 0x9100 outer + 802.1Q inner + IPv6
        let mut q2 = vec![0x00, 0x0a, 0x81, 0x00, 0x00, 0x0b, 0x86, 0xdd];
        q2.extend_from_slice(&IP6);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x9100, &q2)), Some(&IP6[..]));
        // Truncated tag.
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8100, &[0x00])), None);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &[0u8; 13]), None);
        // Runaway tag stack.
        let many: Vec<u8> = (0..200).flat_map(|_| [0x00, 0x01, 0x81, 0x00]).collect();
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8100, &many)), None);
    }

    #[test]
    fn mpls_and_pppoe() {
        // Two labels, the second has S=1, then IPv4.
        let mut m = vec![0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40];
        m.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8847, &m)), Some(&IP4[..]));
        // Bottom label followed by an Ethernet pseudowire (first nibble 0): not IP.
        let pw = [0x00, 0x01, 0x01, 0x40, 0x00, 0x11, 0x22, 0x33];
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8847, &pw)), None);
        // No bottom-of-stack label before the end.
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8847, &[0, 1, 0, 64])), None);
        // PPPoE session: ver/type 0x11, code 0, session 0x1234, length, PPP proto 0x0021.
        let mut p = vec![0x11, 0x00, 0x12, 0x34, 0x00, 0x16, 0x00, 0x21];
        p.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8864, &p)), Some(&IP4[..]));
        p[7] = 0x57;
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8864, &p)), Some(&IP4[..]));
        p[6] = 0xc0; // LCP 0xc021
        assert_eq!(ip_payload(LINKTYPE_ETHERNET, &eth(0x8864, &p)), None);
    }

    #[test]
    fn cooked_null_raw() {
        // SLL: packet type, arphrd, addr len, 8-byte addr, protocol 0x0800.
        let mut s = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        s.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LINKTYPE_LINUX_SLL, &s), Some(&IP4[..]));
        s[14..16].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(ip_payload(LINKTYPE_LINUX_SLL, &s), None);
        // SLL2: protocol first, 20-byte header.
        let mut s2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        s2.extend_from_slice(&IP6);
        assert_eq!(ip_payload(LINKTYPE_LINUX_SLL2, &s2), Some(&IP6[..]));
        // NULL, little-endian AF_INET and big-endian AF_INET6 (Darwin 30).
        let mut n = vec![2, 0, 0, 0];
        n.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LINKTYPE_NULL, &n), Some(&IP4[..]));
        let mut n6 = vec![0, 0, 0, 30];
        n6.extend_from_slice(&IP6);
        assert_eq!(ip_payload(LINKTYPE_NULL, &n6), Some(&IP6[..]));
        let mut n7 = vec![7, 0, 0, 0];
        n7.extend_from_slice(&IP4);
        assert_eq!(ip_payload(LINKTYPE_NULL, &n7), None);
        // LOOP is network order only.
        assert_eq!(ip_payload(LINKTYPE_LOOP, &n), None);
        assert_eq!(ip_payload(LINKTYPE_LOOP, &n6), Some(&IP6[..]));
        // Raw.
        assert_eq!(ip_payload(LINKTYPE_RAW, &IP4), Some(&IP4[..]));
        assert_eq!(ip_payload(12, &IP6), Some(&IP6[..]));
        assert_eq!(ip_payload(14, &IP6), Some(&IP6[..]));
        assert_eq!(ip_payload(LINKTYPE_RAW, &[0x50]), None);
        assert_eq!(ip_payload(LINKTYPE_RAW, &[]), None);
        assert_eq!(ip_payload(LINKTYPE_IPV4, &IP4), Some(&IP4[..]));
        assert_eq!(ip_payload(LINKTYPE_IPV4, &IP6), None);
        assert_eq!(ip_payload(LINKTYPE_IPV6, &IP6), Some(&IP6[..]));
        assert_eq!(ip_payload(9999, &IP4), None);
    }

    #[test]
    fn noise_never_panics() {
        let mut x: u64 = 0xdead_beef_cafe_f00d;
        let mut buf = [0u8; 48];
        for i in 0..40_000u32 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Bias the EtherType towards the interesting ones.
            let et: [u8; 2] = match i % 6 {
                0 => [0x81, 0x00],
                1 => [0x88, 0x47],
                2 => [0x88, 0x64],
                3 => [0x88, 0xa8],
                _ => [buf[12], buf[13]],
            };
            buf[12] = et[0];
            buf[13] = et[1];
            let len = (x as usize) % 49;
            for lt in [0, 1, 101, 108, 113, 228, 229, 276] {
                if let Some(p) = ip_payload(lt, &buf[..len]) {
                    assert!(p.len() <= len);
                }
            }
        }
    }
}
