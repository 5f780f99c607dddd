//! SCTP packet views (RFC 9260 §3): the common header's verification tag, the chunk headers
//! and the initiate tag of INIT/INIT_ACK. Total, like the rest of `wire`.

use super::be32;

/// Chunk types (`SCTP_CID_*`).
pub const CID_DATA: u8 = 0;
pub const CID_INIT: u8 = 1;
pub const CID_INIT_ACK: u8 = 2;
pub const CID_SACK: u8 = 3;
pub const CID_HEARTBEAT: u8 = 4;
pub const CID_HEARTBEAT_ACK: u8 = 5;
pub const CID_ABORT: u8 = 6;
pub const CID_SHUTDOWN: u8 = 7;
pub const CID_SHUTDOWN_ACK: u8 = 8;
pub const CID_ERROR: u8 = 9;
pub const CID_COOKIE_ECHO: u8 = 10;
pub const CID_COOKIE_ACK: u8 = 11;
pub const CID_SHUTDOWN_COMPLETE: u8 = 14;

/// `SCTP_CHUNK_FLAG_T`: the sender reflected the peer's tag (ABORT, SHUTDOWN_COMPLETE).
pub const CHUNK_FLAG_T: u8 = 0x01;

/// Length of the common header (`struct sctphdr`).
pub const COMMON_HDR: usize = 12;
/// Length of a chunk header (`struct sctp_chunkhdr`).
pub const CHUNK_HDR: usize = 4;
/// Length of the INIT/INIT_ACK fixed part (`struct sctp_inithdr`).
pub const INIT_HDR: usize = 16;

/// One chunk header and where it sits in the L4 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub off: usize,
    pub ty: u8,
    pub flags: u8,
    pub len: u16,
}

/// The verification tag of the common header, if it is all there.
pub fn vtag(l4: &[u8]) -> Option<u32> {
    if l4.len() < COMMON_HDR {
        return None;
    }
    be32(l4, 4)
}

/// `for_each_sctp_chunk`: walks chunk headers from the end of the common header while a whole
/// 4-byte header fits, advancing by the length rounded up to 4. A zero-length chunk is yielded
/// and ends the walk (it would never advance; the tracker's checks reject it).
pub fn chunks(l4: &[u8]) -> impl Iterator<Item = Chunk> + '_ {
    let mut off = COMMON_HDR;
    std::iter::from_fn(move || {
        let h = l4.get(off..off.checked_add(CHUNK_HDR)?)?;
        let c = Chunk { off, ty: h[0], flags: h[1], len: u16::from_be_bytes([h[2], h[3]]) };
        let step = (usize::from(c.len) + 3) & !3;
        off = if step == 0 { usize::MAX } else { off + step };
        Some(c)
    })
}

/// The initiate tag of an INIT/INIT_ACK chunk at `off` (needs the whole `sctp_inithdr`).
pub fn init_tag(l4: &[u8], off: usize) -> Option<u32> {
    let start = off.checked_add(CHUNK_HDR)?;
    l4.get(start..start.checked_add(INIT_HDR)?)?;
    be32(l4, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_chunks_and_reads_tags() {
        // Common header (ports, vtag 0x01020304, crc), INIT (20 bytes), then a zero-length chunk.
        let mut p = vec![0, 1, 0, 2, 1, 2, 3, 4, 0, 0, 0, 0];
        p.extend_from_slice(&[
            CID_INIT, 0, 0, 20, 0xaa, 0xbb, 0xcc, 0xdd, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1,
        ]);
        p.extend_from_slice(&[CID_DATA, 0, 0, 0]);
        assert_eq!(vtag(&p), Some(0x0102_0304));
        let c: Vec<Chunk> = chunks(&p).collect();
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].ty, c[0].off, c[0].len), (CID_INIT, 12, 20));
        assert_eq!(init_tag(&p, c[0].off), Some(0xaabb_ccdd));
        assert_eq!(init_tag(&p[..20], 12), None);
        assert_eq!(vtag(&p[..11]), None);
        assert_eq!(init_tag(&p, usize::MAX), None);
    }
}
