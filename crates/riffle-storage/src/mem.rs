//! [`MemStorage`]: the whole [`Storage`] contract in memory, for unit tests and simulation of
//! the layers above. Every operation is "durable" as soon as it returns.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Mutex;

use crate::Durable;
use crate::GroupId;
use crate::KeyValue;
use crate::KvOp;
use crate::LogBounds;
use crate::LogPosition;
use crate::LogRecord;
use crate::Storage;
use crate::StorageError;
use crate::group_space;
use crate::index::LogIndex;
use crate::lock;

/// In-memory [`Storage`]. `Durable` callbacks run synchronously inside the call that was given
/// them (after the storage's lock is released, so they may call back into it).
#[derive(Default)]
pub struct MemStorage {
    state: Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    groups: BTreeMap<GroupId, LogIndex<LogRecord>>,
    spaces: HashMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        MemStorage::default()
    }

    fn with_group<T>(
        &self,
        group: GroupId,
        action: impl FnOnce(&mut LogIndex<LogRecord>) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut state = lock(&self.state);
        let log = state
            .groups
            .get_mut(&group)
            .ok_or(StorageError::UnknownGroup { group })?;
        action(log)
    }
}

impl Storage for MemStorage {
    fn create_group(&self, group: GroupId) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        if state.groups.contains_key(&group) {
            return Err(StorageError::GroupExists { group });
        }
        state.groups.insert(group, LogIndex::new(None));
        Ok(())
    }

    fn drop_group(&self, group: GroupId) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        if state.groups.remove(&group).is_none() {
            return Err(StorageError::UnknownGroup { group });
        }
        state.spaces.remove(&group_space(group));
        Ok(())
    }

    fn groups(&self) -> Vec<GroupId> {
        lock(&self.state).groups.keys().copied().collect()
    }

    fn append(
        &self,
        group: GroupId,
        records: Vec<LogRecord>,
        done: Durable,
    ) -> Result<(), StorageError> {
        self.with_group(group, |log| {
            log.check_append(group, &records)?;
            for record in records {
                log.push(record.index, record);
            }
            Ok(())
        })?;
        done(Ok(()));
        Ok(())
    }

    fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<(), StorageError> {
        self.with_group(group, |log| {
            log.truncate_after(after);
            Ok(())
        })
    }

    fn purge_upto(&self, group: GroupId, upto: LogPosition) -> Result<(), StorageError> {
        self.with_group(group, |log| {
            log.purge_upto(upto);
            Ok(())
        })
    }

    fn bounds(&self, group: GroupId) -> Result<LogBounds, StorageError> {
        self.with_group(group, |log| Ok(log.bounds()))
    }

    fn term_at(&self, group: GroupId, index: u64) -> Result<Option<u64>, StorageError> {
        self.with_group(group, |log| Ok(log.get(index).map(|record| record.term)))
    }

    fn read(
        &self,
        group: GroupId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StorageError> {
        self.with_group(group, |log| {
            let mut records = Vec::new();
            let mut budget_used = 0usize;
            for (_, record) in log.range(from, until) {
                let size = record.size();
                if !records.is_empty() && budget_used.saturating_add(size) > max_bytes {
                    break;
                }
                budget_used = budget_used.saturating_add(size);
                records.push(record.clone());
            }
            Ok(records)
        })
    }

    fn first_index_with_tag_at_least(
        &self,
        group: GroupId,
        tag: u64,
    ) -> Result<Option<u64>, StorageError> {
        self.with_group(group, |log| Ok(log.first_index_with_tag_at_least(tag)))
    }

    fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        crate::check_space_name(space)?;
        let state = lock(&self.state);
        Ok(state
            .spaces
            .get(space)
            .and_then(|entries| entries.get(key).cloned()))
    }

    fn kv_write(
        &self,
        space: &str,
        ops: Vec<KvOp>,
        done: Option<Durable>,
    ) -> Result<(), StorageError> {
        crate::check_space_name(space)?;
        {
            let mut state = lock(&self.state);
            let entries = state.spaces.entry(space.to_string()).or_default();
            for op in ops {
                match op {
                    KvOp::Put(key, value) => {
                        entries.insert(key, value);
                    }
                    KvOp::Delete(key) => {
                        entries.remove(&key);
                    }
                }
            }
        }
        if let Some(done) = done {
            done(Ok(()));
        }
        Ok(())
    }

    fn kv_scan(&self, space: &str, prefix: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        crate::check_space_name(space)?;
        let state = lock(&self.state);
        let Some(entries) = state.spaces.get(space) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    fn flush(&self, done: Durable) {
        done(Ok(()));
    }
}
