//! The shared write-ahead journal: one append-only sequence of segment files that holds the
//! log records of every group on the node.
//!
//! # Why one journal
//!
//! `fdatasync` costs a fixed ~0.2–0.4 ms per dirty *file* on the machines we measured, so
//! per-group log files make a commit round cost O(groups). Writing every group's records into
//! one file makes a round cost one `fdatasync`, however many groups took part (group commit).
//! sled keeps only small state (group registry, purge positions, key spaces).
//!
//! # Files
//!
//! `journal/{seq:020}.wal`, `seq` starting at 1 and growing by one per segment. Each segment
//! starts with a 16-byte header: the magic `RFLJRNL1` then `seq` (u64 LE), so a renamed or
//! foreign file is detected. A segment is rolled once the next record would push it past
//! `segment_bytes` (a record larger than that gets a segment of its own). A segment is fully
//! `fdatasync`ed *before* its successor is created, so only the newest segment can ever end in a
//! torn write.
//!
//! # Record framing (little-endian)
//!
//! ```text
//! offset size field
//!  0     4    header_crc   crc32 of bytes 4..46
//!  4     4    payload_len
//!  8     1    type         1 = ENTRY, 2 = TRUNCATE
//!  9     8    group
//! 17     8    index        ENTRY: log index; TRUNCATE: `after` (0 when `None`)
//! 25     8    term         ENTRY: term; TRUNCATE: 0
//! 33     1    kind         ENTRY: caller kind; TRUNCATE: 1 when `after` is `Some`, else 0
//! 34     8    tag          ENTRY: caller tag; TRUNCATE: 0
//! 42     4    payload_crc  crc32 of the payload
//! 46     n    payload
//! ```
//!
//! Two checksums instead of one: recovery must walk every record header of every segment but
//! should not read old payloads (a node may hold many GiB of retained records). The header CRC
//! lets it trust a header it read alone; payloads of old segments are verified when read.
//!
//! # Write path
//!
//! Callers update the in-memory index at once (records are readable immediately, before they are
//! durable, as openraft expects) and enqueue an operation to the single journal thread (see
//! `writer/`). That thread takes *everything* queued, encodes it into one buffer, writes it
//! with one `pwrite` per touched segment and one `fdatasync`, flushes sled if an operation in
//! the batch needs it, and only then fires the batch's `Durable` callbacks, in order. While it
//! syncs, new operations queue up behind it and form the next batch.
//!
//! # Replay
//!
//! ENTRY at `index` for a group: skipped if `index <= purged`; appended if it extends the log;
//! a *relocation* (location update) if a record with the same index and term is already
//! present, which is what segment compaction writes. Because compaction copies live records to
//! the head of the journal, a group's replayed log can temporarily have a gap below its newest
//! records; the gap must be filled by the end of the replay, otherwise the journal is corrupt.
//! TRUNCATE removes the records above `after`, as the live call did.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;

use crate::GroupId;
use crate::LogRecord;

/// Bytes at the start of every segment: magic then the segment's sequence number.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 16;
const SEGMENT_MAGIC: &[u8; 8] = b"RFLJRNL1";

/// Bytes of a record before its payload.
pub(crate) const RECORD_HEADER_LEN: usize = 46;

/// Largest payload a record can carry (record lengths are stored as u32).
pub(crate) const MAX_PAYLOAD_LEN: usize = u32::MAX as usize - RECORD_HEADER_LEN;

const TYPE_ENTRY: u8 = 1;
const TYPE_TRUNCATE: u8 = 2;

/// The file name of segment `seq`.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The path of segment `seq` in `dir`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// The sequence number of a segment file name, `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header written at the start of segment `seq`.
pub(crate) fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..].copy_from_slice(&seq.to_le_bytes());
    header
}

/// What a record says, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordBody {
    Entry {
        index: u64,
        term: u64,
        kind: u8,
        tag: u64,
    },
    Truncate {
        after: Option<u64>,
    },
}

/// A decoded, header-checked record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub group: GroupId,
    pub body: RecordBody,
    pub payload_len: u32,
    pub payload_crc: u32,
}

impl RecordHeader {
    /// Total bytes of the record on disk.
    pub(crate) fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.payload_len)
    }
}

/// Bytes an ENTRY record for `record` occupies.
pub(crate) fn entry_record_len(record: &LogRecord) -> u64 {
    (RECORD_HEADER_LEN + record.payload.len()) as u64
}

/// Bytes a TRUNCATE record occupies.
pub(crate) const TRUNCATE_RECORD_LEN: u64 = RECORD_HEADER_LEN as u64;

/// Appends the ENTRY record of `record` to `buf`. The caller has checked
/// `record.payload.len() <= MAX_PAYLOAD_LEN`.
pub(crate) fn encode_entry(buf: &mut Vec<u8>, group: GroupId, record: &LogRecord) {
    debug_assert!(record.payload.len() <= MAX_PAYLOAD_LEN);
    let payload_len = u32::try_from(record.payload.len()).unwrap_or(u32::MAX);
    encode_header(
        buf,
        TYPE_ENTRY,
        group,
        record.index,
        record.term,
        record.kind,
        record.tag,
        payload_len,
        crc32fast::hash(&record.payload),
    );
    buf.extend_from_slice(&record.payload);
}

/// Appends the TRUNCATE record of `(group, after)` to `buf`.
pub(crate) fn encode_truncate(buf: &mut Vec<u8>, group: GroupId, after: Option<u64>) {
    let has_after = u8::from(after.is_some());
    encode_header(
        buf,
        TYPE_TRUNCATE,
        group,
        after.unwrap_or(0),
        0,
        has_after,
        0,
        0,
        crc32fast::hash(&[]),
    );
}

#[allow(clippy::too_many_arguments)]
fn encode_header(
    buf: &mut Vec<u8>,
    record_type: u8,
    group: GroupId,
    index: u64,
    term: u64,
    kind: u8,
    tag: u64,
    payload_len: u32,
    payload_crc: u32,
) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.push(record_type);
    buf.extend_from_slice(&group.to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(&term.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(&tag.to_le_bytes());
    buf.extend_from_slice(&payload_crc.to_le_bytes());
    debug_assert_eq!(buf.len() - start, RECORD_HEADER_LEN);
    let header_crc = crc32fast::hash(&buf[start + 4..start + RECORD_HEADER_LEN]);
    buf[start..start + 4].copy_from_slice(&header_crc.to_le_bytes());
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Decodes and checks a record header. `bytes` must hold at least [`RECORD_HEADER_LEN`] bytes.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<RecordHeader, String> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(format!(
            "record header needs {RECORD_HEADER_LEN} bytes, got {}",
            bytes.len()
        ));
    }
    let stored_crc = le_u32(bytes, 0);
    let computed_crc = crc32fast::hash(&bytes[4..RECORD_HEADER_LEN]);
    if stored_crc != computed_crc {
        return Err(format!(
            "record header checksum mismatch (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        ));
    }
    let payload_len = le_u32(bytes, 4);
    if payload_len as usize > MAX_PAYLOAD_LEN {
        return Err(format!("record payload length {payload_len} is too large"));
    }
    let group = le_u64(bytes, 9);
    let index = le_u64(bytes, 17);
    let term = le_u64(bytes, 25);
    let kind = bytes[33];
    let tag = le_u64(bytes, 34);
    let payload_crc = le_u32(bytes, 42);
    let body = match bytes[8] {
        TYPE_ENTRY => RecordBody::Entry {
            index,
            term,
            kind,
            tag,
        },
        TYPE_TRUNCATE => {
            if payload_len != 0 {
                return Err("truncate record with a payload".to_string());
            }
            RecordBody::Truncate {
                after: (kind == 1).then_some(index),
            }
        }
        other => return Err(format!("unknown record type {other}")),
    };
    Ok(RecordHeader {
        group,
        body,
        payload_len,
        payload_crc,
    })
}

/// Checks the payload of a record against its header.
pub(crate) fn check_payload(header: &RecordHeader, payload: &[u8]) -> Result<(), String> {
    if payload.len() != header.payload_len as usize {
        return Err(format!(
            "record payload has {} bytes, header says {}",
            payload.len(),
            header.payload_len
        ));
    }
    let computed_crc = crc32fast::hash(payload);
    if computed_crc != header.payload_crc {
        return Err(format!(
            "record payload checksum mismatch (stored {:#010x}, computed {computed_crc:#010x})",
            header.payload_crc
        ));
    }
    Ok(())
}

/// Decodes and fully checks one whole record (header and payload).
pub(crate) fn decode_record(bytes: &[u8]) -> Result<RecordHeader, String> {
    let header = decode_header(bytes)?;
    if bytes.len() as u64 != header.record_len() {
        return Err(format!(
            "record spans {} bytes, header says {}",
            bytes.len(),
            header.record_len()
        ));
    }
    check_payload(&header, &bytes[RECORD_HEADER_LEN..])?;
    Ok(header)
}

/// One step of a segment scan.
#[derive(Debug)]
pub(crate) enum ScanStep {
    /// A valid record starting at `offset`.
    Record { offset: u64, header: RecordHeader },
    /// The segment ends cleanly.
    End,
    /// The bytes at `offset` are not a valid record (torn write or corruption).
    Bad { offset: u64, reason: String },
}

/// Walks the records of one segment file through a small read window, so that small records
/// cost a fraction of a syscall each and large payloads are skipped without being read (unless
/// `verify_payloads` is set, which the newest segment needs to find a torn tail).
pub(crate) struct SegmentScanner<'a> {
    file: &'a File,
    file_len: u64,
    position: u64,
    verify_payloads: bool,
    window: Vec<u8>,
    window_start: u64,
    /// Bytes read from the file so far.
    bytes_read: u64,
}

/// Read size while records are small: many headers per syscall.
const SCAN_WINDOW_BYTES: usize = 64 * 1024;
/// Read size right after skipping a large payload: one page, so that seeking over big
/// payloads reads only a few percent of them.
const SCAN_SEEK_READ_BYTES: usize = 4 * 1024;

impl<'a> SegmentScanner<'a> {
    /// Starts a scan right after the segment header.
    pub(crate) fn new(file: &'a File, file_len: u64, verify_payloads: bool) -> Self {
        SegmentScanner {
            file,
            file_len,
            position: SEGMENT_HEADER_LEN,
            verify_payloads,
            window: Vec::new(),
            window_start: 0,
            bytes_read: 0,
        }
    }

    /// Bytes read from the file so far.
    #[cfg(test)]
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// `len` bytes at `offset`, or `None` when the file ends first.
    fn bytes_at(&mut self, offset: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let end = offset.saturating_add(len as u64);
        if end > self.file_len {
            return Ok(None);
        }
        let window_end = self.window_start + self.window.len() as u64;
        if offset < self.window_start || end > window_end {
            let available = usize::try_from(self.file_len - offset).unwrap_or(usize::MAX);
            let skipped = offset.saturating_sub(window_end);
            let read_size = if skipped >= (SCAN_WINDOW_BYTES / 4) as u64 {
                SCAN_SEEK_READ_BYTES
            } else {
                SCAN_WINDOW_BYTES
            };
            let fill = len.max(read_size).min(available);
            self.window.resize(fill, 0);
            self.file.read_exact_at(&mut self.window, offset)?;
            self.window_start = offset;
            self.bytes_read += fill as u64;
        }
        let start_in_window = usize::try_from(offset - self.window_start).unwrap_or(usize::MAX);
        Ok(Some(&self.window[start_in_window..start_in_window + len]))
    }

    /// The next record, the end, or the first bad spot.
    pub(crate) fn next_step(&mut self) -> io::Result<ScanStep> {
        let offset = self.position;
        if offset == self.file_len {
            return Ok(ScanStep::End);
        }
        let header = match self.bytes_at(offset, RECORD_HEADER_LEN)? {
            None => {
                return Ok(ScanStep::Bad {
                    offset,
                    reason: "partial record header at end of segment".to_string(),
                });
            }
            Some(bytes) => match decode_header(bytes) {
                Ok(header) => header,
                Err(reason) => return Ok(ScanStep::Bad { offset, reason }),
            },
        };
        let record_end = offset + header.record_len();
        if record_end > self.file_len {
            return Ok(ScanStep::Bad {
                offset,
                reason: "record runs past the end of the segment".to_string(),
            });
        }
        if self.verify_payloads {
            let payload_offset = offset + RECORD_HEADER_LEN as u64;
            let Some(payload) = self.bytes_at(payload_offset, header.payload_len as usize)? else {
                return Ok(ScanStep::Bad {
                    offset,
                    reason: "record runs past the end of the segment".to_string(),
                });
            };
            if let Err(reason) = check_payload(&header, payload) {
                return Ok(ScanStep::Bad { offset, reason });
            }
        }
        self.position = record_end;
        Ok(ScanStep::Record { offset, header })
    }
}

/// Checks the header of segment `seq`. `None` when the file is too short to hold one.
pub(crate) fn check_segment_header(
    file: &File,
    file_len: u64,
    seq: u64,
) -> io::Result<Option<bool>> {
    if file_len < SEGMENT_HEADER_LEN {
        return Ok(None);
    }
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)?;
    Ok(Some(header == segment_header(seq)))
}

/// Opens a directory and syncs it, so that creations and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn record(index: u64, term: u64, kind: u8, tag: u64, payload: &[u8]) -> LogRecord {
        LogRecord {
            index,
            term,
            kind,
            tag,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn segment_names_round_trip_and_reject_strangers() {
        assert_eq!(segment_file_name(7), "00000000000000000007.wal");
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("7.wal"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000007.tmp"), None);
    }

    #[test]
    fn truncate_record_round_trips() {
        for after in [None, Some(0), Some(41)] {
            let mut buf = Vec::new();
            encode_truncate(&mut buf, 9, after);
            assert_eq!(buf.len() as u64, TRUNCATE_RECORD_LEN);
            let header = decode_record(&buf).unwrap();
            assert_eq!(header.group, 9);
            assert_eq!(header.body, RecordBody::Truncate { after });
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 3, &record(5, 2, 1, 77, b"hello journal"));
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode_record(&damaged).is_err(),
                    "flip of byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    /// A segment file holding `count` entries of `payload_len` bytes.
    fn segment_file(count: u64, payload_len: usize) -> (tempfile::NamedTempFile, u64) {
        let mut buf = segment_header(1).to_vec();
        for index in 1..=count {
            encode_entry(
                &mut buf,
                1,
                &record(index, 1, 0, index, &vec![index as u8; payload_len]),
            );
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().write_all_at(&buf, 0).unwrap();
        (file, buf.len() as u64)
    }

    fn scan_all(file: &File, file_len: u64, verify_payloads: bool) -> (Vec<u64>, ScanStep, u64) {
        let mut scanner = SegmentScanner::new(file, file_len, verify_payloads);
        let mut offsets = Vec::new();
        loop {
            match scanner.next_step().unwrap() {
                ScanStep::Record { offset, .. } => offsets.push(offset),
                last => return (offsets, last, scanner.bytes_read()),
            }
        }
    }

    #[test]
    fn scanning_old_segments_seeks_over_large_payloads() {
        let (file, len) = segment_file(20, 100 * 1024);
        let (offsets, last, bytes_read) = scan_all(file.as_file(), len, false);
        assert_eq!(offsets.len(), 20);
        assert!(matches!(last, ScanStep::End));
        assert!(
            bytes_read * 10 < len,
            "read {bytes_read} of {len} bytes to walk the headers"
        );
        let (offsets, _, bytes_read) = scan_all(file.as_file(), len, true);
        assert_eq!(offsets.len(), 20);
        assert!(bytes_read >= len - SEGMENT_HEADER_LEN);
    }

    #[test]
    fn scanning_small_records_batches_reads() {
        let (file, len) = segment_file(2000, 100);
        let (offsets, last, bytes_read) = scan_all(file.as_file(), len, false);
        assert_eq!(offsets.len(), 2000);
        assert!(matches!(last, ScanStep::End));
        assert!(bytes_read < 2 * len);
    }

    #[test]
    fn scan_stops_at_a_torn_record() {
        let (file, len) = segment_file(5, 1000);
        let (offsets, _, _) = scan_all(file.as_file(), len, false);
        let (kept, last, _) = scan_all(file.as_file(), len - 1, false);
        assert_eq!(kept, offsets[..4].to_vec());
        assert!(matches!(last, ScanStep::Bad { offset, .. } if offset == offsets[4]));
        // A flipped payload byte is only seen when payloads are verified.
        file.as_file()
            .write_all_at(&[0xEE], offsets[2] + RECORD_HEADER_LEN as u64 + 5)
            .unwrap();
        assert_eq!(scan_all(file.as_file(), len, false).0.len(), 5);
        let (kept, last, _) = scan_all(file.as_file(), len, true);
        assert_eq!(kept, offsets[..2].to_vec());
        assert!(matches!(last, ScanStep::Bad { offset, .. } if offset == offsets[2]));
    }

    proptest! {
        #[test]
        fn entry_record_round_trips(
            group in any::<u64>(),
            index in any::<u64>(),
            term in any::<u64>(),
            kind in any::<u8>(),
            tag in any::<u64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let original = record(index, term, kind, tag, &payload);
            let mut buf = Vec::new();
            encode_entry(&mut buf, group, &original);
            prop_assert_eq!(buf.len() as u64, entry_record_len(&original));
            let header = decode_record(&buf).unwrap();
            prop_assert_eq!(header.group, group);
            prop_assert_eq!(header.body, RecordBody::Entry { index, term, kind, tag });
            prop_assert_eq!(&buf[RECORD_HEADER_LEN..], &payload[..]);
        }
    }
}
