//! The `Storage` contract, checked against both implementations.

mod common;

use bytes::Bytes;
use common::append_durably;
use common::durable;
use common::read_all;
use common::record;
use common::records;
use riffle_storage::KvOp;
use riffle_storage::LogBounds;
use riffle_storage::LogPosition;
use riffle_storage::LogRecord;
use riffle_storage::Storage;
use riffle_storage::StorageError;
use riffle_storage::group_space;

fn position(index: u64, term: u64) -> LogPosition {
    LogPosition { index, term }
}

fn indexes(records: &[LogRecord]) -> Vec<u64> {
    records.iter().map(|record| record.index).collect()
}

fn append_then_read(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    assert_eq!(storage.bounds(1).unwrap(), LogBounds::default());
    let written = records(1, 1..=5, 1, 100);
    let (done, outcome) = durable();
    storage.append(1, written.clone(), done).unwrap();
    // Readable at once, durable or not.
    assert_eq!(read_all(storage, 1), written);
    outcome.recv().unwrap().unwrap();
    assert_eq!(read_all(storage, 1), written);
    assert_eq!(
        storage.read(1, 3, 5, usize::MAX).unwrap(),
        written[2..4].to_vec()
    );
    assert_eq!(storage.read(1, 6, 9, usize::MAX).unwrap(), Vec::new());
    assert_eq!(
        storage.bounds(1).unwrap(),
        LogBounds {
            purged: None,
            last: Some(position(5, 1))
        }
    );
    assert_eq!(storage.groups(), vec![1]);
}

fn read_respects_max_bytes(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    let written = records(1, 1..=4, 1, 100);
    let size = written[0].size();
    append_durably(storage, 1, written).unwrap();
    assert_eq!(
        indexes(&storage.read(1, 1, 5, 0).unwrap()),
        vec![1],
        "at least one record"
    );
    assert_eq!(indexes(&storage.read(1, 1, 5, size).unwrap()), vec![1]);
    assert_eq!(
        indexes(&storage.read(1, 1, 5, 2 * size - 1).unwrap()),
        vec![1]
    );
    assert_eq!(
        indexes(&storage.read(1, 1, 5, 2 * size).unwrap()),
        vec![1, 2]
    );
    assert_eq!(
        indexes(&storage.read(1, 2, 5, 3 * size).unwrap()),
        vec![2, 3, 4]
    );
}

fn truncate_then_reappend(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    append_durably(storage, 1, records(1, 1..=10, 1, 50)).unwrap();
    storage.truncate_after(1, Some(5)).unwrap();
    assert_eq!(storage.bounds(1).unwrap().last, Some(position(5, 1)));
    assert_eq!(indexes(&read_all(storage, 1)), vec![1, 2, 3, 4, 5]);
    assert!(matches!(
        storage.append(1, records(1, 7..=7, 2, 50), Box::new(|_| {})),
        Err(StorageError::NotContiguous {
            group: 1,
            expected: 6,
            got: 7
        })
    ));
    append_durably(storage, 1, records(1, 6..=8, 2, 50)).unwrap();
    let mut expected = records(1, 1..=5, 1, 50);
    expected.extend(records(1, 6..=8, 2, 50));
    assert_eq!(read_all(storage, 1), expected);
    // Truncating above the end changes nothing.
    storage.truncate_after(1, Some(20)).unwrap();
    assert_eq!(read_all(storage, 1), expected);
    storage.truncate_after(1, None).unwrap();
    assert_eq!(storage.bounds(1).unwrap(), LogBounds::default());
    // An empty log that was never purged accepts any start.
    append_durably(storage, 1, records(1, 100..=101, 3, 50)).unwrap();
    assert_eq!(storage.bounds(1).unwrap().last, Some(position(101, 3)));
}

fn purge_then_bounds_and_read(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    append_durably(storage, 1, records(1, 1..=10, 1, 50)).unwrap();
    storage.purge_upto(1, position(4, 1)).unwrap();
    assert_eq!(
        storage.bounds(1).unwrap(),
        LogBounds {
            purged: Some(position(4, 1)),
            last: Some(position(10, 1))
        }
    );
    assert_eq!(
        indexes(&storage.read(1, 0, 100, usize::MAX).unwrap()),
        (5..=10).collect::<Vec<_>>()
    );
    assert_eq!(storage.term_at(1, 4).unwrap(), None);
    assert_eq!(storage.term_at(1, 5).unwrap(), Some(1));
    // Purging less than already purged is a no-op.
    storage.purge_upto(1, position(2, 1)).unwrap();
    assert_eq!(storage.bounds(1).unwrap().purged, Some(position(4, 1)));
    // Purging past the end empties the log; the next append follows the purge point.
    storage.purge_upto(1, position(12, 3)).unwrap();
    assert_eq!(
        storage.bounds(1).unwrap(),
        LogBounds {
            purged: Some(position(12, 3)),
            last: Some(position(12, 3))
        }
    );
    assert!(read_all(storage, 1).is_empty());
    assert!(matches!(
        storage.append(1, records(1, 14..=14, 3, 50), Box::new(|_| {})),
        Err(StorageError::NotContiguous {
            group: 1,
            expected: 13,
            got: 14
        })
    ));
    append_durably(storage, 1, records(1, 13..=13, 3, 50)).unwrap();
    assert_eq!(storage.bounds(1).unwrap().last, Some(position(13, 3)));
    // Truncating everything after a purge keeps the purge point.
    storage.truncate_after(1, None).unwrap();
    assert_eq!(
        storage.bounds(1).unwrap(),
        LogBounds {
            purged: Some(position(12, 3)),
            last: Some(position(12, 3))
        }
    );
}

fn term_at_reports_present_records_only(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    assert_eq!(storage.term_at(1, 1).unwrap(), None);
    append_durably(storage, 1, records(1, 1..=3, 1, 10)).unwrap();
    append_durably(storage, 1, records(1, 4..=5, 4, 10)).unwrap();
    assert_eq!(storage.term_at(1, 3).unwrap(), Some(1));
    assert_eq!(storage.term_at(1, 4).unwrap(), Some(4));
    assert_eq!(storage.term_at(1, 6).unwrap(), None);
    assert_eq!(storage.term_at(1, 0).unwrap(), None);
}

fn tag_search_finds_the_first_at_least(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    let tags = [10, 20, 20, 30];
    let written: Vec<LogRecord> = tags
        .iter()
        .enumerate()
        .map(|(position, tag)| LogRecord {
            tag: *tag,
            ..record(1, position as u64 + 1, 1, 10)
        })
        .collect();
    append_durably(storage, 1, written).unwrap();
    assert_eq!(
        storage.first_index_with_tag_at_least(1, 0).unwrap(),
        Some(1)
    );
    assert_eq!(
        storage.first_index_with_tag_at_least(1, 20).unwrap(),
        Some(2)
    );
    assert_eq!(
        storage.first_index_with_tag_at_least(1, 21).unwrap(),
        Some(4)
    );
    assert_eq!(storage.first_index_with_tag_at_least(1, 31).unwrap(), None);
    storage.purge_upto(1, position(2, 1)).unwrap();
    assert_eq!(
        storage.first_index_with_tag_at_least(1, 0).unwrap(),
        Some(3)
    );
}

fn key_value_spaces(storage: &dyn Storage) {
    let put =
        |key: &str, value: &str| KvOp::Put(key.as_bytes().to_vec(), value.as_bytes().to_vec());
    storage
        .kv_write(
            "meta",
            vec![put("a/1", "x"), put("a/2", "y"), put("b/1", "z")],
            None,
        )
        .unwrap();
    assert_eq!(storage.kv_get("meta", b"a/1").unwrap(), Some(b"x".to_vec()));
    assert_eq!(storage.kv_get("meta", b"a/3").unwrap(), None);
    assert_eq!(storage.kv_get("other", b"a/1").unwrap(), None);
    let scanned = storage.kv_scan("meta", b"a/").unwrap();
    assert_eq!(
        scanned,
        vec![
            (b"a/1".to_vec(), b"x".to_vec()),
            (b"a/2".to_vec(), b"y".to_vec())
        ]
    );
    let (done, outcome) = durable();
    storage
        .kv_write(
            "meta",
            vec![KvOp::Delete(b"a/1".to_vec()), put("a/2", "w")],
            Some(done),
        )
        .unwrap();
    outcome.recv().unwrap().unwrap();
    assert_eq!(storage.kv_get("meta", b"a/1").unwrap(), None);
    assert_eq!(storage.kv_scan("meta", b"").unwrap().len(), 2);
    assert_eq!(
        storage.kv_scan("meta", b"a/").unwrap(),
        vec![(b"a/2".to_vec(), b"w".to_vec())]
    );
    assert!(storage.kv_scan("empty", b"").unwrap().is_empty());
    assert!(matches!(
        storage.kv_write("__groups", vec![put("k", "v")], None),
        Err(StorageError::Io(_))
    ));
}

fn drop_group_removes_log_and_space(storage: &dyn Storage) {
    storage.create_group(1).unwrap();
    storage.create_group(2).unwrap();
    assert!(matches!(
        storage.create_group(1),
        Err(StorageError::GroupExists { group: 1 })
    ));
    append_durably(storage, 1, records(1, 1..=3, 1, 10)).unwrap();
    let (done, outcome) = durable();
    storage
        .kv_write(
            &group_space(1),
            vec![KvOp::Put(b"vote".to_vec(), b"v".to_vec())],
            Some(done),
        )
        .unwrap();
    outcome.recv().unwrap().unwrap();
    storage
        .kv_write(
            &group_space(2),
            vec![KvOp::Put(b"vote".to_vec(), b"w".to_vec())],
            None,
        )
        .unwrap();
    storage.drop_group(1).unwrap();
    assert_eq!(storage.groups(), vec![2]);
    assert!(matches!(
        storage.bounds(1),
        Err(StorageError::UnknownGroup { group: 1 })
    ));
    assert!(matches!(
        storage.read(1, 0, 10, 100),
        Err(StorageError::UnknownGroup { group: 1 })
    ));
    assert_eq!(storage.kv_get(&group_space(1), b"vote").unwrap(), None);
    assert_eq!(
        storage.kv_get(&group_space(2), b"vote").unwrap(),
        Some(b"w".to_vec())
    );
    assert!(matches!(
        storage.drop_group(1),
        Err(StorageError::UnknownGroup { group: 1 })
    ));
    storage.create_group(1).unwrap();
    assert_eq!(storage.bounds(1).unwrap(), LogBounds::default());
    assert!(read_all(storage, 1).is_empty());
}

fn contiguity_is_enforced(storage: &dyn Storage) {
    assert!(matches!(
        storage.append(9, records(9, 1..=1, 1, 10), Box::new(|_| {})),
        Err(StorageError::UnknownGroup { group: 9 })
    ));
    storage.create_group(9).unwrap();
    let mut gapped = records(9, 5..=6, 1, 10);
    gapped.push(record(9, 8, 1, 10));
    assert!(matches!(
        storage.append(9, gapped, Box::new(|_| {})),
        Err(StorageError::NotContiguous {
            group: 9,
            expected: 7,
            got: 8
        })
    ));
    assert_eq!(
        storage.bounds(9).unwrap(),
        LogBounds::default(),
        "a refused batch leaves no trace"
    );
    append_durably(storage, 9, records(9, 5..=6, 1, 10)).unwrap();
    assert!(matches!(
        storage.append(9, records(9, 6..=6, 1, 10), Box::new(|_| {})),
        Err(StorageError::NotContiguous {
            group: 9,
            expected: 7,
            got: 6
        })
    ));
    append_durably(storage, 9, Vec::new()).unwrap();
    append_durably(storage, 9, records(9, 7..=7, 1, 10)).unwrap();
    assert_eq!(storage.bounds(9).unwrap().last, Some(position(7, 1)));
}

fn empty_payloads_round_trip(storage: &dyn Storage) {
    storage.create_group(3).unwrap();
    let written: Vec<LogRecord> = (1..=3)
        .map(|index| LogRecord {
            index,
            term: 1,
            kind: 7,
            tag: 0,
            payload: Bytes::new(),
        })
        .collect();
    append_durably(storage, 3, written.clone()).unwrap();
    assert_eq!(read_all(storage, 3), written);
}

fn flush_fires(storage: &dyn Storage) {
    common::flush(storage);
}

macro_rules! behaviour_tests {
    ($($name:ident),* $(,)?) => {
        mod mem {
            $(
                #[test]
                fn $name() {
                    let storage = riffle_storage::MemStorage::new();
                    super::$name(&storage);
                }
            )*
        }

        mod disk {
            use riffle_storage::Storage;

            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let storage = riffle_storage::DiskStorage::open(riffle_storage::DiskOptions::new(dir.path())).unwrap();
                    super::$name(&storage);
                    // The same state must come back after a restart.
                    let groups = storage.groups();
                    let before: Vec<_> = groups.iter().map(|group| (storage.bounds(*group).unwrap(), crate::common::read_all(&storage, *group))).collect();
                    drop(storage);
                    let storage = riffle_storage::DiskStorage::open(riffle_storage::DiskOptions::new(dir.path())).unwrap();
                    assert_eq!(storage.groups(), groups);
                    let after: Vec<_> = groups.iter().map(|group| (storage.bounds(*group).unwrap(), crate::common::read_all(&storage, *group))).collect();
                    assert_eq!(after, before);
                }
            )*
        }
    };
}

behaviour_tests!(
    append_then_read,
    read_respects_max_bytes,
    truncate_then_reappend,
    purge_then_bounds_and_read,
    term_at_reports_present_records_only,
    tag_search_finds_the_first_at_least,
    key_value_spaces,
    drop_group_removes_log_and_space,
    contiguity_is_enforced,
    empty_payloads_round_trip,
    flush_fires,
);
