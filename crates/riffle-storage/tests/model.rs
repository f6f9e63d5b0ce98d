//! Random operation sequences against a plain in-memory model of the log contract. The disk
//! implementation runs with tiny segments, so rolling, deletion and compaction all happen, and
//! is reopened along the way: after every reopen it must hold exactly the model's state.

mod common;

use std::path::Path;

use common::read_all;
use proptest::prelude::*;
use riffle_storage::DiskOptions;
use riffle_storage::DiskStorage;
use riffle_storage::LogBounds;
use riffle_storage::LogPosition;
use riffle_storage::LogRecord;
use riffle_storage::MemStorage;
use riffle_storage::Storage;

const GROUPS: u64 = 3;

#[derive(Clone, Debug)]
enum Action {
    /// Append `count` records of `size` bytes; `wait` for them to be durable.
    Append {
        group: u64,
        count: u64,
        size: usize,
        wait: bool,
    },
    /// Truncate after `last - back` (everything when that is below the first record).
    Truncate { group: u64, back: u64 },
    /// Purge up to `last - back`; a negative `back` purges past the end of the log.
    Purge { group: u64, back: i64 },
    /// Wait until everything is durable (lets the journal reclaim segments).
    Flush,
    /// Drop the storage and open it again.
    Reopen,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (0..GROUPS, 1..5u64, 0..700usize, any::<bool>())
            .prop_map(|(group, count, size, wait)| Action::Append { group, count, size, wait }),
        1 => (0..GROUPS, 0..6u64).prop_map(|(group, back)| Action::Truncate { group, back }),
        2 => (0..GROUPS, -2..8i64).prop_map(|(group, back)| Action::Purge { group, back }),
        1 => Just(Action::Flush),
        1 => Just(Action::Reopen),
    ]
}

/// One group as the contract describes it.
#[derive(Clone, Debug, Default)]
struct ModelLog {
    purged: Option<LogPosition>,
    records: Vec<LogRecord>,
    term: u64,
}

impl ModelLog {
    fn last(&self) -> Option<LogPosition> {
        match self.records.last() {
            Some(record) => Some(LogPosition {
                index: record.index,
                term: record.term,
            }),
            None => self.purged,
        }
    }

    fn bounds(&self) -> LogBounds {
        LogBounds {
            purged: self.purged,
            last: self.last(),
        }
    }

    fn next_index(&self) -> u64 {
        self.last().map_or(1, |last| last.index + 1)
    }
}

struct Model {
    logs: Vec<ModelLog>,
}

impl Model {
    fn new() -> Self {
        Model {
            logs: (0..GROUPS)
                .map(|_| ModelLog {
                    term: 1,
                    ..ModelLog::default()
                })
                .collect(),
        }
    }

    /// Applies `action` to the model and the storage (reopening is left to the caller).
    fn apply(&mut self, storage: &dyn Storage, action: &Action) {
        match *action {
            Action::Append {
                group,
                count,
                size,
                wait,
            } => {
                let log = &mut self.logs[group as usize];
                let first = log.next_index();
                let records: Vec<LogRecord> = (first..first + count)
                    .map(|index| LogRecord {
                        tag: index,
                        ..common::record(group, index, log.term, size)
                    })
                    .collect();
                log.records.extend(records.iter().cloned());
                if wait {
                    common::append_durably(storage, group, records).unwrap();
                } else {
                    storage
                        .append(group, records, Box::new(|result| result.unwrap()))
                        .unwrap();
                }
            }
            Action::Truncate { group, back } => {
                let log = &mut self.logs[group as usize];
                let Some(last) = log.records.last().map(|record| record.index) else {
                    return;
                };
                let after = last
                    .checked_sub(back)
                    .filter(|after| *after >= log.records[0].index);
                log.records
                    .retain(|record| after.is_some_and(|after| record.index <= after));
                log.term += 1;
                storage.truncate_after(group, after).unwrap();
            }
            Action::Purge { group, back } => {
                let log = &mut self.logs[group as usize];
                let Some(last) = log.last() else { return };
                let index = last.index as i64 - back;
                if index < 1 {
                    return;
                }
                let index = index as u64;
                let term = log
                    .records
                    .iter()
                    .find(|record| record.index == index)
                    .map_or(log.term, |record| record.term);
                let upto = LogPosition { index, term };
                if log.purged.is_none_or(|purged| purged.index < index) {
                    log.purged = Some(upto);
                    log.records.retain(|record| record.index > index);
                }
                storage.purge_upto(group, upto).unwrap();
            }
            Action::Flush => common::flush(storage),
            Action::Reopen => {}
        }
    }

    fn check(&self, storage: &dyn Storage) -> Result<(), TestCaseError> {
        for (group, log) in self.logs.iter().enumerate() {
            let group = group as u64;
            prop_assert_eq!(
                storage.bounds(group).unwrap(),
                log.bounds(),
                "bounds of group {}",
                group
            );
            let stored = read_all(storage, group);
            prop_assert_eq!(
                stored.len(),
                log.records.len(),
                "record count of group {}",
                group
            );
            prop_assert!(stored == log.records, "records of group {} differ", group);
            if let Some(first) = log.records.first() {
                prop_assert_eq!(
                    storage.term_at(group, first.index).unwrap(),
                    Some(first.term)
                );
                prop_assert_eq!(
                    storage.first_index_with_tag_at_least(group, 0).unwrap(),
                    Some(first.index)
                );
            }
        }
        Ok(())
    }
}

fn open(dir: &Path) -> DiskStorage {
    DiskStorage::open(DiskOptions {
        dir: dir.to_path_buf(),
        segment_bytes: 4096,
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn disk_storage_matches_the_model_across_reopens(actions in proptest::collection::vec(action(), 1..100)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut storage = open(dir.path());
        for group in 0..GROUPS {
            storage.create_group(group).unwrap();
        }
        for action in &actions {
            model.apply(&storage, action);
            if matches!(action, Action::Reopen) {
                drop(storage);
                storage = open(dir.path());
                model.check(&storage)?;
            } else {
                for group in 0..GROUPS {
                    prop_assert_eq!(storage.bounds(group).unwrap(), model.logs[group as usize].bounds());
                }
            }
        }
        model.check(&storage)?;
        common::settle(&storage);
        model.check(&storage)?;
        drop(storage);
        let storage = open(dir.path());
        model.check(&storage)?;
    }

    #[test]
    fn mem_storage_matches_the_model(actions in proptest::collection::vec(action(), 1..80)) {
        let storage = MemStorage::new();
        let mut model = Model::new();
        for group in 0..GROUPS {
            storage.create_group(group).unwrap();
        }
        for action in &actions {
            model.apply(&storage, action);
            model.check(&storage)?;
        }
    }
}
