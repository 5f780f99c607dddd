//! Streaming reader for pcap and pcapng capture files, built on the `pcap-parser` crate.
//!
//! Memory stays bounded: records are parsed out of a refillable buffer (1 MiB, or just above
//! the file size for small files; grown only for a record that does not fit, up to
//! `MAX_RECORD` bytes). Supported: classic pcap with microsecond or nanosecond timestamps in
//! either byte order (and the little-endian "modified" Kuznetsov variant), pcapng with any number of sections and interfaces (each with its own linktype,
//! `if_tsresol` and `if_tsoffset`), enhanced and simple packet blocks. A truncated or corrupt
//! file yields every good record before the damage, then an error naming the byte offset.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, Block, LegacyPcapBlock,
    LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader,
};

/// A classic pcap record parser of `pcap-parser` (one per byte order and record header size).
type FrameParser =
    for<'b> fn(&'b [u8]) -> pcap_parser::nom::IResult<&'b [u8], LegacyPcapBlock<'b>, PcapError<&'b [u8]>>;

/// Initial size of the parse buffer (files smaller than this get a buffer just above their size).
const INITIAL_BUFFER: usize = 1 << 20;
/// Smallest parse buffer.
const MIN_BUFFER: usize = 64 << 10;
/// Largest record/block we are willing to buffer; a larger declared length is corruption.
const MAX_RECORD: usize = 64 << 20;
/// libpcap's default maximum snapshot length; a classic record longer than both this and the
/// file's snaplen is treated as corrupt (libpcap rejects such records too).
const MAX_SNAPLEN: u32 = 262_144;

const PCAPNG_MAGIC: u32 = 0x0A0D_0D0A;

/// One captured frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// 1-based position among packet records (the Wireshark frame number).
    pub index: u64,
    /// Capture timestamp in nanoseconds since the epoch. A pcapng simple packet block has no
    /// timestamp: it gets the previous record's (0 if none).
    pub ts_ns: i64,
    /// Link type of the interface the frame was captured on (`LINKTYPE_*`).
    pub linktype: u32,
    /// The captured bytes (possibly shorter than the original frame if snapped).
    pub data: &'a [u8],
    /// The interface it was captured on, where a pcapng file names it (`if_name`).
    pub iface: Option<&'a str>,
}

/// A capture file that cannot be read further: names the file and the byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// The file as given to [`Capture::open`].
    pub path: String,
    /// Byte offset in the file of the header/record/block that could not be read.
    pub offset: u64,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} at byte offset {}", self.path, self.message, self.offset)
    }
}

impl std::error::Error for CaptureError {}

/// A `Read` adapter that keeps reading until the buffer is full or the input ends, so the
/// parser's single `read` per refill never sees a short read that is not the end of file.
struct FillReader<R: Read>(R);

impl<R: Read> Read for FillReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(rest) = buf.get_mut(filled..) else { break };
            match self.0.read(rest) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if filled == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(filled)
    }
}

/// One pcapng interface (from an Interface Description Block).
#[derive(Clone, Debug)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second (`if_tsresol`).
    units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
    /// `if_name`, when given.
    name: Option<String>,
}

/// What the file header said.
#[derive(Clone, Debug)]
enum Format {
    /// Classic pcap; fields known once the file header block has been returned.
    Pcap { linktype: u32, nanos: bool, big_endian: bool, snaplen: u32, record_hdr: usize },
    /// pcapng; interfaces of the current section.
    PcapNg { big_endian: bool, interfaces: Vec<Interface> },
}

/// A capture file open for streaming.
pub struct Capture {
    path: String,
    reader: Box<dyn PcapReaderIterator + Send>,
    format: Format,
    /// Packet records delivered so far.
    index: u64,
    /// Timestamp of the last record (for simple packet blocks).
    last_ts: i64,
    /// Set once the end or an error was reached; later calls repeat it.
    finished: Option<Result<(), CaptureError>>,
    /// Current size of the reader's buffer.
    capacity: usize,
    /// Size of the file at open time, if it is a regular file (bounds corrupt lengths).
    file_len: Option<u64>,
}

/// What to do after one `next()` call (computed while the reader is borrowed).
enum Step {
    Consume(usize),
    Refill,
    Grow,
    Done,
    Truncated,
    Fail(String),
}

/// pcapng `if_tsresol` to units per second: 10^v, or 2^(v & 0x7f) if the high bit is set.
fn ts_units(resol: u8) -> Option<u64> {
    if resol & 0x80 == 0 {
        10u64.checked_pow(u32::from(resol))
    } else {
        1u64.checked_shl(u32::from(resol & 0x7f))
    }
}

/// `units` timestamp ticks at `units_per_sec`, plus `offset_s` seconds, in ns (saturating).
fn ticks_to_ns(ticks: u64, units_per_sec: u64, offset_s: i64) -> i64 {
    let per = u128::from(units_per_sec.max(1));
    let ns = u128::from(ticks) * 1_000_000_000 / per;
    let total = i128::try_from(ns).unwrap_or(i128::MAX) + i128::from(offset_s) * 1_000_000_000;
    i64::try_from(total.clamp(i128::from(i64::MIN), i128::from(i64::MAX))).unwrap_or(i64::MAX)
}

fn u32_at(b: &[u8], off: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian { u32::from_be_bytes(bytes) } else { u32::from_le_bytes(bytes) })
}

impl Capture {
    fn error(&self, offset: u64, message: impl Into<String>) -> CaptureError {
        CaptureError { path: self.path.clone(), offset, message: message.into() }
    }

    /// Opens `path` and reads its file header. Errors (offset 0): missing or unreadable file,
    /// empty file, not a pcap/pcapng file, truncated file header.
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let name = path.display().to_string();
        let err = |message: String| CaptureError { path: name.clone(), offset: 0, message };
        let file = File::open(path).map_err(|e| err(format!("cannot open: {e}")))?;
        let file_len = file.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        // Small files get a small buffer (it is zero-filled up front); big ones 1 MiB.
        let capacity = match file_len {
            Some(len) => usize::try_from(len.saturating_add(4096))
                .unwrap_or(INITIAL_BUFFER)
                .clamp(MIN_BUFFER, INITIAL_BUFFER),
            None => INITIAL_BUFFER,
        };
        let mut file = FillReader(file);
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(|e| err(format!("cannot read: {e}")))?;
        if n == 0 {
            return Err(err("empty file (no pcap or pcapng header)".into()));
        }
        if n < magic.len() {
            return Err(err(format!("file too short ({n} bytes) for a capture header")));
        }
        file.0.seek(SeekFrom::Start(0)).map_err(|e| err(format!("cannot seek: {e}")))?;
        let le = u32::from_le_bytes(magic);
        let map_open = |e: PcapError<&'static [u8]>| match e {
            PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof => {
                err("truncated file header".into())
            }
            PcapError::ReadError => err("read error".into()),
            other => err(format!("bad file header: {other}")),
        };
        let (reader, format): (Box<dyn PcapReaderIterator + Send>, Format) = match le {
            PCAPNG_MAGIC => (
                Box::new(PcapNGReader::new(capacity, file).map_err(map_open)?),
                Format::PcapNg { big_endian: false, interfaces: Vec::new() },
            ),
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 | 0xa1b2_cd34 => (
                Box::new(LegacyPcapReader::new(capacity, file).map_err(map_open)?),
                Format::Pcap { linktype: 0, nanos: false, big_endian: false, snaplen: 0, record_hdr: 16 },
            ),
            _ => {
                return Err(err(format!(
                    "not a pcap or pcapng file (first bytes {:02x} {:02x} {:02x} {:02x})",
                    magic[0], magic[1], magic[2], magic[3]
                )))
            }
        };
        Ok(Capture { path: name, reader, format, index: 0, last_ts: 0, finished: None, capacity, file_len })
    }

    /// Calls `f` for every record in order. A truncated or corrupt file delivers every good
    /// record before it, then returns `Err` naming the offset of the bad/truncated record. A
    /// file that simply ends cleanly returns `Ok(number of records delivered by this call)`;
    /// calling again after the end returns `Ok(0)` (or the same error).
    pub fn for_each<F: FnMut(&Record<'_>)>(&mut self, mut f: F) -> Result<u64, CaptureError> {
        if let Some(done) = &self.finished {
            return done.clone().map(|()| 0);
        }
        let result = self.run(&mut f, u64::MAX).map(|(n, _)| n);
        self.finished = Some(result.as_ref().map(|_| ()).map_err(Clone::clone));
        result
    }

    /// As [`Capture::for_each`], stopping once `max` records (at least 1) have been delivered:
    /// `Ok(true)` when that limit stopped it (records may remain, and the next call goes on
    /// from there), `Ok(false)` once the capture has ended cleanly (and on every later call).
    /// A truncated or corrupt file delivers every good record before it, then the error, as
    /// `for_each` does.
    pub fn read_some<F: FnMut(&Record<'_>)>(&mut self, max: u64, mut f: F) -> Result<bool, CaptureError> {
        if let Some(done) = &self.finished {
            return done.clone().map(|()| false);
        }
        match self.run(&mut f, max.max(1)) {
            Ok((_, true)) => Ok(true),
            result => {
                let result = result.map(|_| false);
                self.finished = Some(result.as_ref().map(|_| ()).map_err(Clone::clone));
                result
            }
        }
    }

    /// Delivers records until the end, an error, or `max` of them: (records delivered, whether
    /// the limit stopped it).
    fn run<F: FnMut(&Record<'_>)>(&mut self, f: &mut F, max: u64) -> Result<(u64, bool), CaptureError> {
        let start = self.index;
        let mut stalled = 0u32;
        loop {
            if let Some(done) = self.run_buffered(f, max - (self.index - start)) {
                return done.map(|()| (self.index - start, true));
            }
            let offset = self.reader.consumed() as u64;
            let step = match self.reader.next() {
                Ok((len, block)) => {
                    match handle_block(&mut self.format, &mut self.index, &mut self.last_ts, block, f) {
                        Ok(()) => Step::Consume(len),
                        Err(msg) => Step::Fail(msg),
                    }
                }
                Err(PcapError::Eof) => Step::Done,
                Err(PcapError::Incomplete(_)) => Step::Refill,
                Err(PcapError::UnexpectedEof) => Step::Truncated,
                Err(PcapError::BufferTooSmall) => Step::Grow,
                Err(PcapError::ReadError) => Step::Fail("read error".into()),
                Err(PcapError::HeaderNotRecognized) => Step::Fail("header not recognized".into()),
                Err(PcapError::NomError(_, kind)) | Err(PcapError::OwnedNomError(_, kind)) => {
                    Step::Fail(format!("corrupt record or block ({kind:?})"))
                }
            };
            match step {
                Step::Consume(len) => {
                    stalled = 0;
                    // Without moving what is left to the front of the buffer: `consume` does
                    // that each time half the buffer has been read (half a megabyte moved for
                    // each half megabyte of records); `refill` does it anyway, when only the
                    // part of one record is left.
                    self.reader.consume_noshift(len);
                    if self.index - start >= max {
                        return Ok((self.index - start, true));
                    }
                }
                Step::Done => return Ok((self.index - start, false)),
                Step::Truncated => {
                    if self.reader.data().is_empty() {
                        return Ok((self.index - start, false));
                    }
                    return Err(self.error(offset, "truncated record (file ends inside it)"));
                }
                Step::Fail(msg) => return Err(self.error(offset, msg)),
                Step::Refill => {
                    if let Some(msg) = self.inconsistent_block() {
                        return Err(self.error(offset, msg));
                    }
                    let before = self.reader.data().len();
                    if self.reader.refill().is_err() {
                        return Err(self.error(offset, "read error"));
                    }
                    if self.reader.data().len() == before && !self.reader.reader_exhausted() {
                        stalled += 1;
                        if stalled > 3 {
                            return Err(self.error(offset, "reader made no progress"));
                        }
                    }
                }
                Step::Grow => {
                    let Some(need) = self.declared_len() else {
                        return Err(self.error(offset, "corrupt record or block"));
                    };
                    if let Some(msg) = self.implausible_len(offset, need) {
                        return Err(self.error(offset, msg));
                    }
                    if need < self.capacity {
                        return Err(self.error(offset, "corrupt record or block (inconsistent lengths)"));
                    }
                    let new = need.saturating_add(need / 4).min(MAX_RECORD + 4096);
                    self.reader.grow(new);
                    self.capacity = new;
                    if self.reader.refill().is_err() {
                        return Err(self.error(offset, "read error"));
                    }
                }
            }
        }
    }

    /// Classic pcap, once the file header is read: delivers the records that lie whole in the
    /// buffer (at most `max`), parsed in place with the reader's own record parser and checked
    /// by `handle_block` as `run` checks them, without a reader call per record. What it leaves
    /// (a record cut by the buffer's end, the end of the file) goes to `run`'s record-by-record
    /// path, which reads on or reports it as before. Some when `run` is done: `max` records
    /// delivered, or a record's error.
    fn run_buffered<F: FnMut(&Record<'_>)>(
        &mut self,
        f: &mut F,
        max: u64,
    ) -> Option<Result<(), CaptureError>> {
        let Format::Pcap { big_endian, record_hdr, .. } = self.format else { return None };
        if self.reader.consumed() == 0 || max == 0 {
            return None;
        }
        let parse: FrameParser = match (record_hdr, big_endian) {
            (24, _) => parse_pcap_frame_modified,
            (_, true) => parse_pcap_frame_be,
            (_, false) => parse_pcap_frame,
        };
        let data = self.reader.data();
        let (mut off, mut n) = (0usize, 0u64);
        let mut failed = None;
        while n < max {
            let Some(rest) = data.get(off..) else { break };
            let Ok((after, block)) = parse(rest) else { break };
            let len = rest.len() - after.len();
            let block = PcapBlockOwned::Legacy(block);
            if let Err(msg) = handle_block(&mut self.format, &mut self.index, &mut self.last_ts, block, f) {
                failed = Some(msg);
                break;
            }
            off += len;
            n += 1;
        }
        self.reader.consume_noshift(off);
        if let Some(msg) = failed {
            return Some(Err(self.error(self.reader.consumed() as u64, msg)));
        }
        (n == max).then_some(Ok(()))
    }

    /// Total length the record/block at the front of the buffer declares for itself.
    fn declared_len(&self) -> Option<usize> {
        let data = self.reader.data();
        match &self.format {
            Format::Pcap { big_endian, record_hdr, .. } => {
                let caplen = u32_at(data, 8, *big_endian)?;
                usize::try_from(caplen).ok()?.checked_add(*record_hdr)
            }
            Format::PcapNg { big_endian, .. } => {
                // The block type is endian-neutral only for a section header; its own
                // byte-order magic decides there.
                let be = if u32_at(data, 0, false) == Some(PCAPNG_MAGIC) {
                    u32_at(data, 8, false) != Some(0x1A2B_3C4D)
                } else {
                    *big_endian
                };
                usize::try_from(u32_at(data, 4, be)?).ok()
            }
        }
    }

    /// A declared record length that cannot be right: beyond `MAX_RECORD`, beyond the end of
    /// the file, or (classic pcap) beyond both the snapshot length and 262144.
    fn implausible_len(&self, offset: u64, need: usize) -> Option<String> {
        if need > MAX_RECORD {
            return Some(format!("record length {need} exceeds the {MAX_RECORD}-byte limit (corrupt?)"));
        }
        if let Format::Pcap { snaplen, record_hdr, .. } = self.format {
            let caplen = need.saturating_sub(record_hdr);
            if caplen > usize::try_from(snaplen.max(MAX_SNAPLEN)).unwrap_or(usize::MAX) {
                return Some(format!(
                    "record capture length {caplen} exceeds the snapshot length {snaplen} (corrupt?)"
                ));
            }
        }
        match self.file_len {
            Some(len) if offset.saturating_add(need as u64) > len => Some(format!(
                "truncated record (declares {need} bytes, the file ends {} bytes later)",
                len.saturating_sub(offset)
            )),
            _ => None,
        }
    }

    /// The parser asked for more data although the whole declared block is already buffered:
    /// the block's inner lengths disagree with its total length.
    fn inconsistent_block(&self) -> Option<&'static str> {
        let n = self.declared_len()?;
        (n >= 12 && self.reader.data().len() >= n)
            .then_some("corrupt block (inner lengths exceed the block length)")
    }
}

/// Applies one parsed block: updates the format state, or delivers a packet record to `f`.
fn handle_block<F: FnMut(&Record<'_>)>(
    format: &mut Format,
    index: &mut u64,
    last_ts: &mut i64,
    block: PcapBlockOwned<'_>,
    f: &mut F,
) -> Result<(), String> {
    match block {
        PcapBlockOwned::LegacyHeader(h) => {
            *format = Format::Pcap {
                linktype: (h.network.0 as u32) & 0xffff,
                nanos: h.is_nanosecond_precision(),
                big_endian: h.is_bigendian(),
                snaplen: h.snaplen,
                record_hdr: if h.is_modified_format() { 24 } else { 16 },
            };
            Ok(())
        }
        PcapBlockOwned::Legacy(b) => {
            let Format::Pcap { linktype, nanos, snaplen, .. } = *format else {
                return Err("classic record in a pcapng file".into());
            };
            if b.caplen > snaplen.max(MAX_SNAPLEN) {
                return Err(format!(
                    "record capture length {} exceeds the snapshot length {} (corrupt?)",
                    b.caplen, snaplen
                ));
            }
            let frac = i64::from(b.ts_usec) * if nanos { 1 } else { 1_000 };
            let ts_ns = i64::from(b.ts_sec) * 1_000_000_000 + frac;
            *index += 1;
            *last_ts = ts_ns;
            let data = b.data.get(..b.caplen as usize).unwrap_or(b.data);
            f(&Record { index: *index, ts_ns, linktype, data, iface: None });
            Ok(())
        }
        PcapBlockOwned::NG(block) => {
            let Format::PcapNg { big_endian, interfaces } = format else {
                return Err("pcapng block in a classic pcap file".into());
            };
            match block {
                Block::SectionHeader(shb) => {
                    *big_endian = shb.big_endian();
                    interfaces.clear();
                }
                Block::InterfaceDescription(idb) => {
                    let mut resol: u8 = 6;
                    let mut offset_s: i64 = 0;
                    let mut name = None;
                    for opt in &idb.options {
                        let Ok(v) = opt.as_bytes() else { continue };
                        match opt.code.0 {
                            2 => {
                                let n = v.split(|&b| b == 0).next().unwrap_or_default();
                                name =
                                    std::str::from_utf8(n).ok().filter(|n| !n.is_empty()).map(str::to_string);
                            }
                            9 => {
                                if let Some(&r) = v.first() {
                                    resol = r;
                                }
                            }
                            14 => {
                                if let Ok(b8) = <[u8; 8]>::try_from(v) {
                                    offset_s = if *big_endian {
                                        i64::from_be_bytes(b8)
                                    } else {
                                        i64::from_le_bytes(b8)
                                    };
                                }
                            }
                            _ => {}
                        }
                    }
                    let units_per_sec =
                        ts_units(resol).ok_or_else(|| format!("unsupported if_tsresol {resol:#04x}"))?;
                    interfaces.push(Interface {
                        linktype: (idb.linktype.0 as u32) & 0xffff,
                        snaplen: idb.snaplen,
                        units_per_sec,
                        offset_s,
                        name,
                    });
                }
                Block::EnhancedPacket(epb) => {
                    let iface = interfaces
                        .get(epb.if_id as usize)
                        .ok_or_else(|| format!("packet block for undefined interface {}", epb.if_id))?;
                    let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                    let ts_ns = ticks_to_ns(ticks, iface.units_per_sec, iface.offset_s);
                    let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                    *index += 1;
                    *last_ts = ts_ns;
                    f(&Record {
                        index: *index,
                        ts_ns,
                        linktype: iface.linktype,
                        data,
                        iface: iface.name.as_deref(),
                    });
                }
                Block::SimplePacket(spb) => {
                    let iface = interfaces
                        .first()
                        .ok_or_else(|| "simple packet block with no interface".to_string())?;
                    let mut len = spb.data.len().min(spb.origlen as usize);
                    if iface.snaplen != 0 {
                        len = len.min(iface.snaplen as usize);
                    }
                    let data = spb.data.get(..len).unwrap_or(spb.data);
                    *index += 1;
                    f(&Record {
                        index: *index,
                        ts_ns: *last_ts,
                        linktype: iface.linktype,
                        data,
                        iface: iface.name.as_deref(),
                    });
                }
                _ => {}
            }
            Ok(())
        }
    }
}

/// `LINKTYPE_RAW`: records that start at the IP header.
pub const LINKTYPE_RAW: u32 = 101;

/// The header of a pcap file of raw IP packets with nanosecond timestamps (what
/// `nfct replay --write` produces; tcpdump and Wireshark read it).
pub fn write_pcap_header(w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&0x0004_0000u32.to_le_bytes());
    h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    w.write_all(&h)
}

/// One record of that file: `pkt` at `ts_ns` (ns since the epoch).
pub fn write_pcap_record(w: &mut dyn std::io::Write, ts_ns: u64, pkt: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(pkt.len()).unwrap_or(u32::MAX);
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&((ts_ns % 1_000_000_000) as u32).to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&len.to_le_bytes());
    w.write_all(&h)?;
    w.write_all(pkt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    static COUNTER: AtomicU32 = AtomicU32::new(0);

    /// A file under the temp dir that is removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str, bytes: &[u8]) -> TempFile {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("nfct-capture-test-{}-{n}-{tag}", std::process::id()));
            std::fs::write(&p, bytes).expect("write temp file");
            TempFile(p)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Owned copy of a delivered record.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Rec {
        index: u64,
        ts_ns: i64,
        linktype: u32,
        data: Vec<u8>,
    }

    impl Rec {
        fn of(r: &Record<'_>) -> Rec {
            Rec { index: r.index, ts_ns: r.ts_ns, linktype: r.linktype, data: r.data.to_vec() }
        }
    }

    /// The same three packets as a classic pcap and as a pcapng (an enhanced, a simple and
    /// an enhanced packet block).
    fn three_records() -> [Vec<u8>; 2] {
        let classic = pcap(0xa1b2_c3d4, false, 1, &[(1, 2, F1), (3, 4, F2), (5, 6, F3)]);
        let ng = Ng { be: false };
        let mut png = ng.shb();
        png.extend(ng.idb(1, 0, Some(9), Some(-5)));
        png.extend(ng.epb(0, 77, F1));
        png.extend(ng.spb(F2));
        png.extend(ng.epb(0, 99, F3));
        [classic, png]
    }

    fn read_all(bytes: &[u8]) -> (Vec<Rec>, Result<u64, CaptureError>) {
        let f = TempFile::new("cap", bytes);
        let mut cap = match Capture::open(&f.0) {
            Ok(c) => c,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let mut out = Vec::new();
        let r = cap.for_each(|r| out.push(Rec::of(r)));
        (out, r)
    }

    /// Classic pcap bytes: `magic` as written little- or big-endian, then records
    /// (sec, frac, data) with caplen = origlen = data length.
    fn pcap(magic: u32, be: bool, linktype: u32, records: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let w16 = |v: &mut Vec<u8>, x: u16| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        let mut v = Vec::new();
        w32(&mut v, magic);
        w16(&mut v, 2);
        w16(&mut v, 4);
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, 65535);
        w32(&mut v, linktype);
        for (sec, frac, data) in records {
            w32(&mut v, *sec);
            w32(&mut v, *frac);
            w32(&mut v, data.len() as u32);
            w32(&mut v, data.len() as u32);
            v.extend_from_slice(data);
        }
        v
    }

    const F1: &[u8] = &[0x45, 0, 0, 20, 1, 2, 3, 4, 5, 6];
    const F2: &[u8] = &[0x60, 0, 0, 0, 0, 0, 59, 64, 9, 9, 9];
    const F3: &[u8] = &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

    #[test]
    fn pcap_microseconds_both_byte_orders() {
        for be in [false, true] {
            let bytes = pcap(0xa1b2_c3d4, be, 101, &[(1_600_000_000, 250_000, F1), (1_600_000_001, 1, F2)]);
            let (recs, r) = read_all(&bytes);
            assert_eq!(r, Ok(2), "be={be}");
            assert_eq!(
                recs,
                vec![
                    Rec { index: 1, ts_ns: 1_600_000_000_250_000_000, linktype: 101, data: F1.to_vec() },
                    Rec { index: 2, ts_ns: 1_600_000_001_000_001_000, linktype: 101, data: F2.to_vec() },
                ]
            );
        }
    }

    #[test]
    fn pcap_nanoseconds_both_byte_orders() {
        for be in [false, true] {
            let bytes = pcap(0xa1b2_3c4d, be, 1, &[(1_700_000_000, 123_456_789, F3)]);
            let (recs, r) = read_all(&bytes);
            assert_eq!(r, Ok(1));
            assert_eq!(recs[0].ts_ns, 1_700_000_000_123_456_789);
            assert_eq!(recs[0].linktype, 1);
            assert_eq!(recs[0].data, F3);
        }
    }

    #[test]
    fn pcap_truncated_mid_record_gives_earlier_records_then_offset() {
        let bytes = pcap(0xa1b2_c3d4, false, 1, &[(1, 0, F1), (2, 0, F2), (3, 0, F3)]);
        let third = 24 + (16 + F1.len()) + (16 + F2.len());
        // Cut inside the third record's data, and inside its header.
        for cut in [bytes.len() - 3, third + 10, third + 1] {
            let (recs, r) = read_all(&bytes[..cut]);
            assert_eq!(recs.len(), 2, "cut {cut}");
            assert_eq!(recs[1].data, F2);
            let e = r.expect_err("truncated");
            assert_eq!(e.offset, third as u64, "cut {cut}");
            assert!(e.message.contains("truncated"), "{e}");
            assert!(e.to_string().ends_with(&format!("at byte offset {third}")), "{e}");
        }
        // Cut exactly at a record boundary: clean end.
        let (recs, r) = read_all(&bytes[..third]);
        assert_eq!((recs.len(), r), (2, Ok(2)));
        // Header only: no records.
        let (recs, r) = read_all(&bytes[..24]);
        assert_eq!((recs.len(), r), (0, Ok(0)));
    }

    #[test]
    fn open_errors() {
        let (_, r) = read_all(&[]);
        let e = r.expect_err("empty");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("empty"), "{e}");

        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        let e = read_all(&garbage).1.expect_err("garbage");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("not a pcap"), "{e}");

        let e = read_all(&[0xd4, 0xc3]).1.expect_err("short");
        assert_eq!(e.offset, 0);

        let bytes = pcap(0xa1b2_c3d4, false, 1, &[]);
        let e = read_all(&bytes[..10]).1.expect_err("truncated header");
        assert!(e.message.contains("truncated file header"), "{e}");

        let missing = std::env::temp_dir().join("nfct-capture-test-does-not-exist.pcap");
        let e = Capture::open(&missing).err().expect("missing");
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("cannot open"), "{e}");
        assert!(e.path.contains("does-not-exist"));
    }

    #[test]
    fn corrupt_caplen_is_an_error_at_its_record() {
        let mut bytes = pcap(0xa1b2_c3d4, false, 1, &[(1, 0, F1), (2, 0, F2)]);
        let second = 24 + 16 + F1.len();
        // caplen = 0x7fffffff
        bytes[second + 8..second + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let (recs, r) = read_all(&bytes);
        assert_eq!(recs.len(), 1);
        assert_eq!(r.expect_err("corrupt").offset, second as u64);
        // caplen above snaplen/262144 but small enough to be buffered.
        let mut bytes = pcap(0xa1b2_c3d4, false, 1, &[(1, 0, F1)]);
        let big = vec![0x45u8; 300_000];
        bytes.extend_from_slice(&5u32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&(big.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(big.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&big);
        let (recs, r) = read_all(&bytes);
        assert_eq!(recs.len(), 1);
        assert_eq!(r.expect_err("too long").offset, second as u64);
    }

    #[test]
    fn record_larger_than_the_initial_buffer() {
        let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| i as u8).collect();
        let mut bytes = pcap(0xa1b2_c3d4, false, 1, &[(1, 0, F1), (2, 0, &big), (3, 0, F3)]);
        // snaplen large enough for the big record.
        bytes[16..20].copy_from_slice(&(8u32 << 20).to_le_bytes());
        let (recs, r) = read_all(&bytes);
        assert_eq!(r, Ok(3));
        assert_eq!(recs[1].data.len(), big.len());
        assert_eq!(recs[1].data, big);
        assert_eq!(recs[2].data, F3);
    }

    #[test]
    fn many_records_across_refills() {
        let frame = [0x45u8; 1500];
        let recs: Vec<(u32, u32, &[u8])> =
            (0..3000u32).map(|i| (i, i % 1_000_000, &frame[..(i as usize % 1500)])).collect();
        let bytes = pcap(0xa1b2_c3d4, false, 1, &recs);
        let (out, r) = read_all(&bytes);
        assert_eq!(r, Ok(3000));
        for (i, rec) in out.iter().enumerate() {
            assert_eq!(rec.index, i as u64 + 1);
            assert_eq!(rec.data.len(), i % 1500);
            assert_eq!(rec.ts_ns, i as i64 * 1_000_000_000 + (i as i64 % 1_000_000) * 1000);
        }
    }

    /// pcapng block: type, body (padded to 4), lengths; `be` picks the byte order.
    fn ng_block(be: bool, typ: u32, body: &[u8]) -> Vec<u8> {
        let pad = (4 - body.len() % 4) % 4;
        let total = (12 + body.len() + pad) as u32;
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut v = Vec::new();
        v.extend_from_slice(&w(typ));
        v.extend_from_slice(&w(total));
        v.extend_from_slice(body);
        v.extend(std::iter::repeat_n(0u8, pad));
        v.extend_from_slice(&w(total));
        v
    }

    struct Ng {
        be: bool,
    }

    impl Ng {
        fn u16(&self, x: u16) -> [u8; 2] {
            if self.be {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        }
        fn u32(&self, x: u32) -> [u8; 4] {
            if self.be {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        }
        fn shb(&self) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&self.u32(0x1A2B_3C4D));
            b.extend_from_slice(&self.u16(1));
            b.extend_from_slice(&self.u16(0));
            b.extend_from_slice(&[0xff; 8]);
            ng_block(self.be, 0x0A0D_0D0A, &b)
        }
        /// IDB with optional if_tsresol and if_tsoffset.
        fn idb(&self, linktype: u16, snaplen: u32, tsresol: Option<u8>, tsoffset: Option<i64>) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&self.u16(linktype));
            b.extend_from_slice(&self.u16(0));
            b.extend_from_slice(&self.u32(snaplen));
            if let Some(r) = tsresol {
                b.extend_from_slice(&self.u16(9));
                b.extend_from_slice(&self.u16(1));
                b.extend_from_slice(&[r, 0, 0, 0]);
            }
            if let Some(o) = tsoffset {
                b.extend_from_slice(&self.u16(14));
                b.extend_from_slice(&self.u16(8));
                b.extend_from_slice(&if self.be { o.to_be_bytes() } else { o.to_le_bytes() });
            }
            if tsresol.is_some() || tsoffset.is_some() {
                b.extend_from_slice(&[0, 0, 0, 0]);
            }
            ng_block(self.be, 1, &b)
        }
        fn epb(&self, if_id: u32, ticks: u64, data: &[u8]) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&self.u32(if_id));
            b.extend_from_slice(&self.u32((ticks >> 32) as u32));
            b.extend_from_slice(&self.u32(ticks as u32));
            b.extend_from_slice(&self.u32(data.len() as u32));
            b.extend_from_slice(&self.u32(data.len() as u32));
            b.extend_from_slice(data);
            b.extend(std::iter::repeat_n(0u8, (4 - data.len() % 4) % 4));
            ng_block(self.be, 6, &b)
        }
        fn spb(&self, data: &[u8]) -> Vec<u8> {
            let mut b = Vec::new();
            b.extend_from_slice(&self.u32(data.len() as u32));
            b.extend_from_slice(data);
            ng_block(self.be, 3, &b)
        }
    }

    #[test]
    fn pcapng_interfaces_resolutions_and_block_kinds() {
        for be in [false, true] {
            let ng = Ng { be };
            let mut f = ng.shb();
            f.extend(ng.idb(1, 0, None, None)); // if 0: Ethernet, microseconds
            f.extend(ng.idb(101, 65535, Some(9), Some(100))); // if 1: raw, ns, +100 s
            f.extend(ng.idb(113, 0, Some(0x80 | 10), None)); // if 2: SLL, 2^-10 s
            f.extend(ng_block(be, 0x0000_0BAD, &[1, 2, 3, 4])); // custom/unknown block: skipped
            f.extend(ng.epb(0, 1_600_000_000_123_456, F3));
            f.extend(ng.epb(1, 1_500_000_000_000_000_007, F1));
            f.extend(ng.epb(2, 3 * 1024 + 512, F2));
            f.extend(ng.spb(F1));
            let (recs, r) = read_all(&f);
            assert_eq!(r, Ok(4), "be={be}");
            assert_eq!(
                recs[0],
                Rec { index: 1, ts_ns: 1_600_000_000_123_456_000, linktype: 1, data: F3.to_vec() }
            );
            assert_eq!(
                recs[1],
                Rec { index: 2, ts_ns: 1_500_000_100_000_000_007, linktype: 101, data: F1.to_vec() }
            );
            assert_eq!(recs[2], Rec { index: 3, ts_ns: 3_500_000_000, linktype: 113, data: F2.to_vec() });
            // SPB: interface 0, previous timestamp, padding removed.
            assert_eq!(recs[3], Rec { index: 4, ts_ns: 3_500_000_000, linktype: 1, data: F1.to_vec() });
        }
    }

    #[test]
    fn pcapng_new_section_resets_interfaces() {
        let le = Ng { be: false };
        let be = Ng { be: true };
        let mut f = le.shb();
        f.extend(le.idb(1, 0, None, None));
        f.extend(le.epb(0, 1_000_000, F1));
        let second = f.len();
        f.extend(be.shb());
        f.extend(be.idb(228, 0, None, None));
        f.extend(be.epb(0, 2_000_000, F1));
        let bad = f.len();
        f.extend(be.epb(1, 3_000_000, F2)); // interface 1 not defined in this section
        f.extend(be.epb(0, 4_000_000, F3));
        let (recs, r) = read_all(&f);
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].linktype, recs[0].ts_ns), (1, 1_000_000_000));
        assert_eq!((recs[1].linktype, recs[1].ts_ns), (228, 2_000_000_000));
        let e = r.expect_err("undefined interface");
        assert_eq!(e.offset, bad as u64);
        assert!(e.message.contains("undefined interface 1"), "{e}");
        assert!(second < bad);
    }

    #[test]
    fn pcapng_truncated_and_corrupt() {
        let ng = Ng { be: false };
        let mut f = ng.shb();
        f.extend(ng.idb(1, 0, None, None));
        f.extend(ng.epb(0, 1, F1));
        let third = f.len();
        f.extend(ng.epb(0, 2, F3));
        let (recs, r) = read_all(&f[..f.len() - 5]);
        assert_eq!(recs.len(), 1);
        assert_eq!(r.expect_err("truncated").offset, third as u64);
        // Block length smaller than the minimum.
        let mut g = f.clone();
        g[third + 4..third + 8].copy_from_slice(&8u32.to_le_bytes());
        let (recs, r) = read_all(&g);
        assert_eq!(recs.len(), 1);
        assert_eq!(r.expect_err("corrupt").offset, third as u64);
        // EPB caplen larger than its block.
        let mut h = f.clone();
        h[third + 20..third + 24].copy_from_slice(&200u32.to_le_bytes());
        let (recs, r) = read_all(&h);
        assert_eq!(recs.len(), 1);
        assert_eq!(r.expect_err("inconsistent").offset, third as u64);
        // Huge block length.
        let mut k = f.clone();
        k[third + 4..third + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let (recs, r) = read_all(&k);
        assert_eq!(recs.len(), 1);
        assert_eq!(r.expect_err("huge").offset, third as u64);
        // Packet before any interface.
        let mut m = ng.shb();
        let at = m.len();
        m.extend(ng.epb(0, 1, F1));
        assert_eq!(read_all(&m).1.expect_err("no idb").offset, at as u64);
        // Bad if_tsresol (2^-100).
        let mut n = ng.shb();
        let at = n.len();
        n.extend(ng.idb(1, 0, Some(0x80 | 100), None));
        assert_eq!(read_all(&n).1.expect_err("tsresol").offset, at as u64);
    }

    #[test]
    fn for_each_after_the_end_repeats_the_outcome() {
        let bytes = pcap(0xa1b2_c3d4, false, 1, &[(1, 0, F1)]);
        let f = TempFile::new("twice", &bytes);
        let mut cap = Capture::open(&f.0).expect("open");
        assert_eq!(cap.for_each(|_| {}), Ok(1));
        assert_eq!(cap.for_each(|_| panic!("no more records")), Ok(0));
        let g = TempFile::new("twice-bad", &bytes[..bytes.len() - 1]);
        let mut cap = Capture::open(&g.0).expect("open");
        let e1 = cap.for_each(|_| {}).expect_err("truncated");
        let e2 = cap.for_each(|_| {}).expect_err("again");
        assert_eq!(e1, e2);
    }

    /// Reads `bytes` `max` records at a time with `read_some`: the records, and the outcome
    /// (Ok(total) at a clean end).
    fn read_in_steps(bytes: &[u8], max: u64) -> (Vec<Rec>, Result<u64, CaptureError>) {
        let f = TempFile::new("steps", bytes);
        let mut cap = match Capture::open(&f.0) {
            Ok(c) => c,
            Err(e) => return (Vec::new(), Err(e)),
        };
        let mut out = Vec::new();
        loop {
            let before = out.len();
            let r = cap.read_some(max, |r| out.push(Rec::of(r)));
            match r {
                Ok(true) => assert_eq!((out.len() - before) as u64, max, "a step stops at its limit"),
                Ok(false) => {
                    assert_eq!(cap.read_some(max, |_| panic!("no more records")), Ok(false));
                    let n = out.len() as u64;
                    return (out, Ok(n));
                }
                Err(e) => {
                    assert_eq!(cap.read_some(max, |_| panic!("no more records")), Err(e.clone()));
                    return (out, Err(e));
                }
            }
        }
    }

    #[test]
    fn read_some_delivers_what_for_each_does() {
        let [classic, png] = three_records();
        for bytes in [&classic, &png] {
            let (all, end) = read_all(bytes);
            assert_eq!(end, Ok(3));
            for max in [1, 2, 3, 4, 100] {
                assert_eq!(read_in_steps(bytes, max), (all.clone(), Ok(3)), "max {max}");
            }
            // Truncated inside the last record: the good records, then the same error.
            let cut = &bytes[..bytes.len() - 3];
            let (recs, err) = read_all(cut);
            assert_eq!(recs.len(), 2);
            let err = err.expect_err("truncated");
            for max in [1, 2, 5] {
                let (r, e) = read_in_steps(cut, max);
                let e = e.expect_err("truncated in steps");
                assert_eq!(
                    (r, e.offset, e.message),
                    (recs.clone(), err.offset, err.message.clone()),
                    "max {max}"
                );
            }
        }
    }

    #[test]
    fn mutated_files_never_panic() {
        let [classic, png] = three_records();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..1500u32 {
            let mut b = if round % 2 == 0 { classic.clone() } else { png.clone() };
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for k in 0..(x % 4 + 1) {
                let i = 4 + (x.rotate_left(k as u32 * 11) as usize) % (b.len() - 4);
                b[i] = (x >> (k * 8)) as u8;
            }
            let cut = b.len() - (x as usize >> 5) % 12;
            let (recs, _) = read_all(&b[..cut]);
            assert!(recs.len() <= 4);
        }
    }

    /// Every shared capture reads to its end, with the README's packet count and a first
    /// timestamp between 1995 and 2030.
    #[test]
    fn shared_captures_read_completely() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
        if !dir.is_dir() {
            eprintln!("../shared/pcaps absent, skipping");
            return;
        }
        let expected: &[(&str, u64)] = &[
            ("arkime-socks5-http-302-frag.pcap", 72),
            ("arkime-v6.pcap", 161),
            ("arkime-wireshark-retrans.pcap", 108),
            ("ndpi-alexa-app.pcapng", 3103),
            ("ndpi-nintendo.pcap", 1000),
            ("ndpi-quic_interop_V.pcapng", 246),
            ("ndpi-reddit.pcap", 1942),
            ("ndpi-synscan.pcap", 2011),
            ("pcapplusplus-DnsPackets.pcap", 464),
            ("pcapplusplus-VlanPackets.pcap", 26),
            ("pcapplusplus-ip6_fragments.pcap", 36),
            ("pcapplusplus-many-protocols.pcap", 4709),
            ("pcapplusplus-raw_ip.pcap", 100),
            ("pcapplusplus-sll.pcap", 518),
            ("suricata-http-range-multiflows.pcap", 614),
            ("suricata-icmpv4-ping.pcap", 150),
            ("tcpdump-afs.pcap", 601),
            ("tcpreplay-test.pcap", 179),
            ("zeek-206_example_b.pcap", 1556),
            ("zeek-NTP_sync.pcap", 32),
            ("zeek-echo-connections.pcap", 82582),
            ("zeek-handshake-reorder.pcap", 14),
            ("zeek-http-qinq-0.pcap", 14),
            ("zeek-icmp6-ping.pcap", 8),
            ("zeek-linux_dlt_sll2.pcap", 6),
            ("zeek-missing-syn.pcap", 21),
            ("zeek-redis-attr.pcap", 28),
            ("zeek-smtp.pcap", 125),
        ];
        const Y1995: i64 = 788_918_400_000_000_000;
        const Y2030: i64 = 1_893_456_000_000_000_000;
        for &(name, count) in expected {
            let mut cap = Capture::open(&dir.join(name)).expect("open");
            let mut first = None;
            let mut last_index = 0;
            let n = cap
                .for_each(|r| {
                    first.get_or_insert(r.ts_ns);
                    assert_eq!(r.index, last_index + 1);
                    last_index = r.index;
                })
                .expect("read");
            assert_eq!(n, count, "{name}");
            let ts = first.expect("at least one record");
            assert!((Y1995..Y2030).contains(&ts), "{name}: first timestamp {ts}");
        }
    }
}
