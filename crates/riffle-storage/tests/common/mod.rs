//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::mpsc;

use bytes::Bytes;
use riffle_storage::Durable;
use riffle_storage::GroupId;
use riffle_storage::LogRecord;
use riffle_storage::Storage;
use riffle_storage::StorageError;

/// Deterministic payload bytes of `(group, index, term)`, `size` bytes long.
pub fn payload(group: GroupId, index: u64, term: u64, size: usize) -> Bytes {
    let seed = group.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(31)
        ^ term.wrapping_mul(1_000_003);
    (0..size)
        .map(|position| (seed.wrapping_add(position as u64 * 7) >> 3) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A record with a deterministic payload and `tag = index * 10`.
pub fn record(group: GroupId, index: u64, term: u64, size: usize) -> LogRecord {
    LogRecord {
        index,
        term,
        kind: (index % 3) as u8,
        tag: index * 10,
        payload: payload(group, index, term, size),
    }
}

/// Records `indexes` of one term.
pub fn records(
    group: GroupId,
    indexes: std::ops::RangeInclusive<u64>,
    term: u64,
    size: usize,
) -> Vec<LogRecord> {
    indexes
        .map(|index| record(group, index, term, size))
        .collect()
}

/// A `Durable` and the receiving end of its outcome.
pub fn durable() -> (Durable, mpsc::Receiver<io::Result<()>>) {
    let (sender, receiver) = mpsc::channel();
    let done: Durable = Box::new(move |result| {
        let _ = sender.send(result);
    });
    (done, receiver)
}

/// Appends and waits until the records are durable.
pub fn append_durably(
    storage: &dyn Storage,
    group: GroupId,
    records: Vec<LogRecord>,
) -> Result<(), StorageError> {
    let (done, outcome) = durable();
    storage.append(group, records, done)?;
    outcome
        .recv()
        .expect("the durable callback must fire")
        .map_err(StorageError::Io)
}

/// Waits for a flush.
pub fn flush(storage: &dyn Storage) {
    let (done, outcome) = durable();
    storage.flush(done);
    outcome
        .recv()
        .expect("the flush callback must fire")
        .expect("flush must succeed");
}

/// Two flushes: the second one's round starts after the journal thread finished the
/// maintenance (segment deletion, compaction) that the first one's sled flush allowed.
pub fn settle(storage: &dyn Storage) {
    flush(storage);
    flush(storage);
}

/// Every present record of a group.
pub fn read_all(storage: &dyn Storage, group: GroupId) -> Vec<LogRecord> {
    storage.read(group, 0, u64::MAX, usize::MAX).expect("read")
}

/// The journal segment files under a storage directory, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "wal"))
        .collect();
    files.sort();
    files
}
