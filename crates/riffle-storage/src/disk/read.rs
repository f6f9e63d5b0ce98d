//! Reading records back from the journal: read-only segment handles ([`SegmentReaders`], also
//! used by compaction and retired by segment deletion) and loading a read's planned records,
//! adjacent ones of a segment with one `pread`, each checked against its index slot.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::DiskStorage;
use super::group_log::Slot;
use crate::GroupId;
use crate::LogRecord;
use crate::StorageError;
use crate::journal;
use crate::journal::RECORD_HEADER_LEN;
use crate::journal::RecordBody;
use crate::lock;

/// Read-only segment handles kept open at most (a node retaining much data has many segments;
/// file descriptors are limited). Readers of an evicted segment simply open it again.
const MAX_OPEN_SEGMENTS: usize = 128;

/// Read-only handles of journal segments, opened on demand.
pub(crate) struct SegmentReaders {
    dir: PathBuf,
    open: Mutex<BTreeMap<u64, Arc<File>>>,
    /// Segments below this were deleted.
    first_live: AtomicU64,
}

impl SegmentReaders {
    pub(super) fn new(dir: PathBuf, first_live: u64) -> Self {
        SegmentReaders {
            dir,
            open: Mutex::new(BTreeMap::new()),
            first_live: AtomicU64::new(first_live),
        }
    }

    /// A handle of segment `seq`; `NotFound` once it was deleted.
    pub(crate) fn get(&self, seq: u64) -> io::Result<Arc<File>> {
        if let Some(file) = lock(&self.open).get(&seq) {
            return Ok(file.clone());
        }
        let gone = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("journal segment {seq} was deleted"),
            )
        };
        if seq < self.first_live.load(Ordering::SeqCst) {
            return Err(gone());
        }
        let file = Arc::new(File::open(journal::segment_path(&self.dir, seq))?);
        let mut open = lock(&self.open);
        // Checked again under the lock: `retire` may have run while the file was being opened,
        // and a handle cached now would never be removed.
        if seq < self.first_live.load(Ordering::SeqCst) {
            return Err(gone());
        }
        let file = open.entry(seq).or_insert(file).clone();
        if open.len() > MAX_OPEN_SEGMENTS {
            // The oldest segments are the least read (only by consumers far behind).
            let evicted = open.keys().copied().find(|open_seq| *open_seq != seq);
            if let Some(evicted) = evicted {
                open.remove(&evicted);
            }
        }
        Ok(file)
    }

    /// Forgets segment `seq` before it is deleted. Segments are deleted oldest first.
    pub(crate) fn retire(&self, seq: u64) {
        self.first_live.fetch_max(seq + 1, Ordering::SeqCst);
        lock(&self.open).remove(&seq);
    }
}

impl DiskStorage {
    /// Reads the planned records; `NotFound` means a segment vanished under the plan.
    pub(super) fn load(
        &self,
        group: GroupId,
        plan: Vec<Planned>,
    ) -> Result<Vec<LogRecord>, StorageError> {
        // Adjacent records of one segment are read with one pread, up to this many bytes.
        const MAX_RUN_BYTES: u64 = 8 << 20;
        let mut records = Vec::with_capacity(plan.len());
        let mut position = 0;
        while position < plan.len() {
            let first = &plan[position];
            let Some(first_location) = first.slot.location() else {
                let Some(payload) = first.payload.clone() else {
                    return Err(StorageError::Corrupt(format!(
                        "group {group} index {}: pending record without payload",
                        first.index
                    )));
                };
                records.push(first.to_record(payload));
                position += 1;
                continue;
            };
            let run_start = u64::from(first_location.offset);
            let mut run_end = run_start + u64::from(first_location.len);
            let mut run_stop = position + 1;
            while let Some(next) = plan.get(run_stop)
                && let Some(next_location) = next.slot.location()
                && next_location.segment == first_location.segment
                && u64::from(next_location.offset) == run_end
                && run_end - run_start < MAX_RUN_BYTES
            {
                run_end += u64::from(next_location.len);
                run_stop += 1;
            }
            let file = self
                .shared
                .segments
                .get(u64::from(first_location.segment))?;
            let run_len = usize::try_from(run_end - run_start).map_err(|_| {
                StorageError::Corrupt("journal read run exceeds address space".to_string())
            })?;
            let mut buffer = vec![0u8; run_len];
            file.read_exact_at(&mut buffer, run_start)
                .map_err(|error| {
                    if error.kind() == io::ErrorKind::UnexpectedEof {
                        StorageError::Corrupt(format!(
                            "journal segment {} ends before offset {run_end}",
                            first_location.segment
                        ))
                    } else {
                        StorageError::Io(error)
                    }
                })?;
            let run = Bytes::from(buffer);
            for planned in &plan[position..run_stop] {
                let Some(location) = planned.slot.location() else {
                    continue;
                };
                let start =
                    usize::try_from(u64::from(location.offset) - run_start).unwrap_or(usize::MAX);
                let bytes = run.slice(start..start + location.len as usize);
                let header = journal::decode_record(&bytes).map_err(|reason| {
                    StorageError::Corrupt(format!(
                        "group {group} index {}: journal segment {} offset {}: {reason}",
                        planned.index, location.segment, location.offset
                    ))
                })?;
                let expected = RecordBody::Entry {
                    index: planned.index,
                    term: planned.slot.term,
                    kind: planned.slot.kind,
                    tag: planned.slot.tag,
                };
                if header.group != group || header.body != expected {
                    return Err(StorageError::Corrupt(format!(
                        "group {group} index {}: journal segment {} offset {} holds another record",
                        planned.index, location.segment, location.offset
                    )));
                }
                records.push(planned.to_record(bytes.slice(RECORD_HEADER_LEN..)));
            }
            position = run_stop;
        }
        Ok(records)
    }
}

/// One record to read: its index, slot, and payload if pending.
pub(super) struct Planned {
    pub(super) index: u64,
    pub(super) slot: Slot,
    pub(super) payload: Option<Bytes>,
}

impl Planned {
    fn to_record(&self, payload: Bytes) -> LogRecord {
        LogRecord {
            index: self.index,
            term: self.slot.term,
            kind: self.slot.kind,
            tag: self.slot.tag,
            payload,
        }
    }
}
