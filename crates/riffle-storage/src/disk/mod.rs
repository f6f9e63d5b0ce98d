//! [`DiskStorage`]: every group's log in one shared journal (see `journal.rs` for the format
//! and `writer/` for the journal thread), small state in sled.
//!
//! # Threads and locks
//!
//! Callers (Raft tasks, request handlers) only touch memory: they update a group's index under
//! that group's mutex and push an [`Op`] on the queue *while still holding it*, so the queue
//! order of one group's operations is its call order. One journal thread (`riffle-journal`)
//! owns every write to disk: the journal segments and sled, including sled flushes. Lock order:
//! membership → group map → group → key-value overlay → queue. Nothing holds a lock across
//! disk I/O except the journal thread holding the queue-independent state it owns.
//!
//! # Memory
//!
//! Each present log entry costs one 32-byte [`Slot`] (term, tag, kind and journal location),
//! plus, until it is durable, a reference to its payload `Bytes`. A node retaining 10 million
//! entries thus holds ~320 MiB of index. Lazily written key-value changes are held in an overlay
//! until the journal thread has applied them to sled (see [`DiskStorage::kv_write`]).
//!
//! # Modules
//!
//! Here: [`DiskStorage`] and the caller side of every [`Storage`] call (memory first, then the
//! queue). Beside it:
//! - [`open`]: options, opening (directories, sled, journal recovery), starting the journal
//!   thread.
//! - [`shared`]: what callers and the journal thread share: the queue of [`Op`]s, the key-value
//!   overlay, the sled trees, the poison flag, the counters.
//! - [`group_log`]: a group's in-memory state, its index of [`Slot`]s and pending payloads.
//! - [`read`]: segment handles, and loading planned records from the journal.

mod group_log;
mod open;
mod read;
mod shared;

pub(crate) use group_log::GroupLog;
pub(crate) use group_log::Location;
pub(crate) use group_log::MAX_SEGMENT_SEQ;
pub(crate) use group_log::Slot;
pub use open::DEFAULT_SEGMENT_BYTES;
pub use open::DiskOptions;
pub use shared::DiskStats;
pub(crate) use shared::Op;
pub(crate) use shared::RunMode;
pub(crate) use shared::Shared;
pub(crate) use shared::Stats;
pub(crate) use shared::poisoned_error;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use read::Planned;

use crate::Durable;
use crate::GroupId;
use crate::KeyValue;
use crate::KvOp;
use crate::LogBounds;
use crate::LogPosition;
use crate::LogRecord;
use crate::RECORD_OVERHEAD;
use crate::Storage;
use crate::StorageError;
use crate::check_space_name;
use crate::index::LogIndex;
use crate::journal::MAX_PAYLOAD_LEN;
use crate::journal::RECORD_HEADER_LEN;
use crate::lock;
use crate::meta::sled_error;
use crate::read_lock;
use crate::write_lock;

/// Durable storage on local disk. See the crate docs and `journal.rs` for the design.
///
/// Dropping it processes everything already queued, flushes, and stops the journal thread
/// (blocking for that long).
pub struct DiskStorage {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl DiskStorage {
    /// Counters of the journal thread.
    #[doc(hidden)]
    pub fn stats(&self) -> DiskStats {
        self.shared.stats.snapshot()
    }

    /// Stops the journal thread as a power cut would: queued operations are dropped (their
    /// `Durable`s never fire) and nothing more is flushed. For crash-recovery tests.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.stop(RunMode::Crash);
    }

    fn stop(&mut self, mode: RunMode) {
        let Some(handle) = self.writer.take() else {
            return;
        };
        lock(&self.shared.queue).mode = mode;
        self.shared.queue_ready.notify_all();
        if handle.join().is_err() {
            tracing::error!("storage journal thread panicked");
        }
    }

    /// Enqueues a membership operation and blocks until the journal thread answered.
    fn wait_for(
        &self,
        make_op: impl FnOnce(mpsc::Sender<io::Result<()>>) -> Op,
    ) -> Result<(), StorageError> {
        let (reply, answer) = mpsc::channel();
        self.shared.enqueue(make_op(reply));
        match answer.recv() {
            Ok(result) => result.map_err(StorageError::Io),
            Err(_) => Err(StorageError::Io(io::Error::other(
                "storage journal thread stopped",
            ))),
        }
    }
}

impl Drop for DiskStorage {
    fn drop(&mut self) {
        self.stop(RunMode::Drain);
    }
}

impl Storage for DiskStorage {
    fn create_group(&self, group: GroupId) -> Result<(), StorageError> {
        let _membership = lock(&self.shared.membership);
        if read_lock(&self.shared.groups).contains_key(&group) {
            return Err(StorageError::GroupExists { group });
        }
        self.shared.check_healthy()?;
        self.wait_for(|reply| Op::CreateGroup { group, reply })?;
        let log = GroupLog::new(LogIndex::new(None));
        write_lock(&self.shared.groups).insert(group, Arc::new(Mutex::new(log)));
        Ok(())
    }

    fn drop_group(&self, group: GroupId) -> Result<(), StorageError> {
        let _membership = lock(&self.shared.membership);
        self.shared.check_healthy()?;
        let log = write_lock(&self.shared.groups)
            .remove(&group)
            .ok_or(StorageError::UnknownGroup { group })?;
        {
            let mut log = lock(&log);
            log.dropped = true;
            log.pending.clear();
        }
        self.wait_for(|reply| Op::DropGroup { group, reply })
    }

    fn groups(&self) -> Vec<GroupId> {
        let mut groups: Vec<GroupId> = read_lock(&self.shared.groups).keys().copied().collect();
        groups.sort_unstable();
        groups
    }

    fn append(
        &self,
        group: GroupId,
        records: Vec<LogRecord>,
        done: Durable,
    ) -> Result<(), StorageError> {
        self.shared.check_healthy()?;
        if let Some(record) = records
            .iter()
            .find(|record| record.payload.len() > MAX_PAYLOAD_LEN)
        {
            return Err(StorageError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "record {} of group {group} has a {} byte payload, too large",
                    record.index,
                    record.payload.len()
                ),
            )));
        }
        let log = self.shared.group(group)?;
        let mut guard = lock(&log);
        if guard.dropped {
            return Err(StorageError::UnknownGroup { group });
        }
        guard.index.check_append(group, &records)?;
        for record in &records {
            guard.index.push(record.index, Slot::pending(record));
            guard.pending.insert(record.index, record.payload.clone());
        }
        let seq = self.shared.enqueue(Op::Append {
            group,
            log: log.clone(),
            records,
            done,
        });
        guard.last_op_seq = seq;
        Ok(())
    }

    fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<(), StorageError> {
        self.shared.check_healthy()?;
        let log = self.shared.group(group)?;
        let mut guard = lock(&log);
        if guard.dropped {
            return Err(StorageError::UnknownGroup { group });
        }
        // Memory already reflects every queued operation, so when nothing is removed here the
        // disk will not hold anything above `after` either: no record needed.
        if guard.index.truncate_after(after) == 0 {
            return Ok(());
        }
        match after.and_then(|after| after.checked_add(1)) {
            Some(first_removed) => drop(guard.pending.split_off(&first_removed)),
            None if after.is_none() => guard.pending.clear(),
            None => {}
        }
        let seq = self.shared.enqueue(Op::Truncate { group, after });
        guard.last_op_seq = seq;
        Ok(())
    }

    fn purge_upto(&self, group: GroupId, upto: LogPosition) -> Result<(), StorageError> {
        self.shared.check_healthy()?;
        let log = self.shared.group(group)?;
        let mut guard = lock(&log);
        if guard.dropped {
            return Err(StorageError::UnknownGroup { group });
        }
        if !guard.index.purge_upto(upto) {
            return Ok(());
        }
        guard.pending = match upto.index.checked_add(1) {
            Some(first_kept) => guard.pending.split_off(&first_kept),
            None => BTreeMap::new(),
        };
        let seq = self.shared.enqueue(Op::Purge { group, upto });
        guard.last_op_seq = seq;
        Ok(())
    }

    fn bounds(&self, group: GroupId) -> Result<LogBounds, StorageError> {
        self.shared.with_log(group, |log| log.index.bounds())
    }

    fn term_at(&self, group: GroupId, index: u64) -> Result<Option<u64>, StorageError> {
        self.shared
            .with_log(group, |log| log.index.get(index).map(|slot| slot.term))
    }

    fn read(
        &self,
        group: GroupId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StorageError> {
        // A segment can be deleted between planning and reading (purge, compaction); planning
        // again then sees the records' new state.
        const ATTEMPTS: usize = 3;
        let log = self.shared.group(group)?;
        let mut attempt = 0;
        loop {
            let plan = {
                let guard = lock(&log);
                let mut plan = Vec::new();
                let mut budget_used = 0usize;
                for (index, slot) in guard.index.range(from, until) {
                    let payload = if slot.is_pending() {
                        guard.pending.get(&index).cloned()
                    } else {
                        None
                    };
                    let payload_len = match &payload {
                        Some(payload) => payload.len(),
                        None => (slot.len as usize).saturating_sub(RECORD_HEADER_LEN),
                    };
                    let size = payload_len + RECORD_OVERHEAD;
                    if !plan.is_empty() && budget_used.saturating_add(size) > max_bytes {
                        break;
                    }
                    budget_used = budget_used.saturating_add(size);
                    plan.push(Planned {
                        index,
                        slot: *slot,
                        payload,
                    });
                }
                plan
            };
            attempt += 1;
            match self.load(group, plan) {
                Err(StorageError::Io(error))
                    if error.kind() == io::ErrorKind::NotFound && attempt < ATTEMPTS =>
                {
                    continue;
                }
                result => return result,
            }
        }
    }

    fn first_index_with_tag_at_least(
        &self,
        group: GroupId,
        tag: u64,
    ) -> Result<Option<u64>, StorageError> {
        self.shared
            .with_log(group, |log| log.index.first_index_with_tag_at_least(tag))
    }

    fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        check_space_name(space)?;
        // The overlay is checked first: the journal thread applies a change to sled before it
        // removes it from the overlay, so a change is always visible in one of the two.
        if let Some(entries) = lock(&self.shared.overlay).get(space)
            && let Some((_, value)) = entries.get(key)
        {
            return Ok(value.clone());
        }
        let Some(tree) = self.shared.tree(space) else {
            return Ok(None);
        };
        Ok(tree
            .get(key)
            .map_err(sled_error)?
            .map(|value| value.to_vec()))
    }

    /// Changes become visible at once (through an in-memory overlay) but are applied to sled
    /// by the journal thread, after everything queued before them reached the journal: this is
    /// what keeps lazy writes from overtaking earlier log operations on disk.
    fn kv_write(
        &self,
        space: &str,
        ops: Vec<KvOp>,
        done: Option<Durable>,
    ) -> Result<(), StorageError> {
        check_space_name(space)?;
        self.shared.check_healthy()?;
        let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = ops
            .iter()
            .map(|op| match op {
                KvOp::Put(key, value) => (key.clone(), Some(value.clone())),
                KvOp::Delete(key) => (key.clone(), None),
            })
            .collect();
        // Enqueued under the overlay lock so that the overlay and the queue agree on the order
        // of writes to one key.
        let mut overlay = lock(&self.shared.overlay);
        let seq = self.shared.enqueue(Op::Kv {
            space: space.to_string(),
            ops,
            done,
        });
        let entries = overlay.entry(space.to_string()).or_default();
        for (key, value) in changes {
            entries.insert(key, (seq, value));
        }
        Ok(())
    }

    fn kv_scan(&self, space: &str, prefix: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        check_space_name(space)?;
        // Overlay first, then sled (see `kv_get`).
        let overlay_entries: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            match lock(&self.shared.overlay).get(space) {
                Some(entries) => entries
                    .range(prefix.to_vec()..)
                    .take_while(|(key, _)| key.starts_with(prefix))
                    .map(|(key, (_, value))| (key.clone(), value.clone()))
                    .collect(),
                None => Vec::new(),
            };
        let mut merged = BTreeMap::new();
        if let Some(tree) = self.shared.tree(space) {
            for entry in tree.scan_prefix(prefix) {
                let (key, value) = entry.map_err(sled_error)?;
                merged.insert(key.to_vec(), value.to_vec());
            }
        }
        for (key, value) in overlay_entries {
            match value {
                Some(value) => merged.insert(key, value),
                None => merged.remove(&key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    fn flush(&self, done: Durable) {
        if self.shared.is_poisoned() {
            done(Err(poisoned_error()));
            return;
        }
        self.shared.enqueue(Op::Flush { done });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use bytes::Bytes;

    use super::*;

    fn record(index: u64, size: usize) -> LogRecord {
        LogRecord {
            index,
            term: 1,
            kind: 0,
            tag: index,
            payload: Bytes::from(vec![index as u8; size]),
        }
    }

    fn append_and_wait(
        storage: &DiskStorage,
        group: GroupId,
        records: Vec<LogRecord>,
    ) -> io::Result<()> {
        let (sender, receiver) = mpsc::channel();
        storage
            .append(
                group,
                records,
                Box::new(move |result| sender.send(result).unwrap()),
            )
            .unwrap();
        receiver.recv().unwrap()
    }

    #[test]
    fn durable_records_leave_memory_for_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let storage = DiskStorage::open(DiskOptions::new(dir.path())).unwrap();
        storage.create_group(1).unwrap();
        let records: Vec<LogRecord> = (1..=3).map(|index| record(index, 1000)).collect();
        append_and_wait(&storage, 1, records.clone()).unwrap();
        // Slots are settled right after the callbacks fire; the next round starts after that.
        let (sender, receiver) = mpsc::channel();
        storage.flush(Box::new(move |result| sender.send(result).unwrap()));
        receiver.recv().unwrap().unwrap();
        let log = storage.shared.group(1).unwrap();
        {
            let log = lock(&log);
            assert!(
                log.pending.is_empty(),
                "payloads of durable records are still held in memory"
            );
            let offsets: Vec<u32> = log
                .index
                .iter()
                .map(|(_, slot)| slot.location().unwrap().offset)
                .collect();
            assert_eq!(offsets, vec![16, 16 + 1046, 16 + 2 * 1046]);
        }
        assert_eq!(storage.read(1, 1, 4, usize::MAX).unwrap(), records);
    }

    #[test]
    fn a_failed_write_poisons_the_storage() {
        let dir = tempfile::tempdir().unwrap();
        let storage = DiskStorage::open(DiskOptions::new(dir.path())).unwrap();
        storage.create_group(1).unwrap();
        append_and_wait(&storage, 1, vec![record(1, 10)]).unwrap();
        storage
            .shared
            .fail_next_commit
            .store(true, Ordering::SeqCst);
        assert!(
            append_and_wait(&storage, 1, vec![record(2, 10)]).is_err(),
            "the failed batch must report it"
        );
        assert!(matches!(
            storage.append(1, vec![record(3, 10)], Box::new(|_| {})),
            Err(StorageError::Io(_))
        ));
        assert!(matches!(
            storage.truncate_after(1, None),
            Err(StorageError::Io(_))
        ));
        assert!(matches!(
            storage.kv_write("meta", Vec::new(), None),
            Err(StorageError::Io(_))
        ));
        let (sender, receiver) = mpsc::channel();
        storage.flush(Box::new(move |result| sender.send(result).unwrap()));
        assert!(receiver.recv().unwrap().is_err());
        // Reads of what is in memory still work.
        assert_eq!(
            storage.bounds(1).unwrap().last,
            Some(LogPosition { index: 2, term: 1 })
        );
    }

    #[test]
    fn a_panicking_callback_does_not_stop_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let storage = DiskStorage::open(DiskOptions::new(dir.path())).unwrap();
        storage.create_group(1).unwrap();
        storage
            .append(1, vec![record(1, 10)], Box::new(|_| panic!("callback bug")))
            .unwrap();
        append_and_wait(&storage, 1, vec![record(2, 10)]).unwrap();
    }
}
