//! What only `DiskStorage` has: restarts, torn writes, segment reclamation, group commit.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::Barrier;

use common::append_durably;
use common::durable;
use common::read_all;
use common::record;
use common::records;
use common::segment_files;
use common::settle;
use riffle_storage::DiskOptions;
use riffle_storage::DiskStorage;
use riffle_storage::KvOp;
use riffle_storage::LogBounds;
use riffle_storage::LogPosition;
use riffle_storage::LogRecord;
use riffle_storage::Storage;
use riffle_storage::StorageError;
use riffle_storage::group_space;

fn open(dir: &Path) -> DiskStorage {
    DiskStorage::open(DiskOptions::new(dir)).expect("open storage")
}

fn open_small(dir: &Path, segment_bytes: u64) -> DiskStorage {
    DiskStorage::open(DiskOptions {
        dir: dir.to_path_buf(),
        segment_bytes,
    })
    .expect("open storage")
}

fn position(index: u64, term: u64) -> LogPosition {
    LogPosition { index, term }
}

fn snapshot(storage: &DiskStorage) -> Vec<(u64, LogBounds, Vec<LogRecord>)> {
    storage
        .groups()
        .into_iter()
        .map(|group| {
            (
                group,
                storage.bounds(group).unwrap(),
                read_all(storage, group),
            )
        })
        .collect()
}

#[test]
fn reopen_after_clean_drop_returns_identical_state() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    for group in 1..=3 {
        storage.create_group(group).unwrap();
        append_durably(
            &storage,
            group,
            records(group, 1..=20, 1, 300 * group as usize),
        )
        .unwrap();
    }
    storage.purge_upto(2, position(7, 1)).unwrap();
    storage.truncate_after(3, Some(15)).unwrap();
    // Neither waited for nor flushed: a clean drop must still persist them.
    storage
        .append(1, records(1, 21..=22, 2, 10), Box::new(|_| {}))
        .unwrap();
    storage
        .kv_write("meta", vec![KvOp::Put(b"k".to_vec(), b"v".to_vec())], None)
        .unwrap();
    storage
        .kv_write(
            &group_space(1),
            vec![KvOp::Put(b"vote".to_vec(), b"t2".to_vec())],
            None,
        )
        .unwrap();
    let before = snapshot(&storage);
    drop(storage);

    let storage = open(dir.path());
    assert_eq!(snapshot(&storage), before);
    assert_eq!(storage.bounds(2).unwrap().purged, Some(position(7, 1)));
    assert_eq!(storage.kv_get("meta", b"k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        storage.kv_get(&group_space(1), b"vote").unwrap(),
        Some(b"t2".to_vec())
    );
    // Appends continue where the log ended.
    append_durably(&storage, 1, records(1, 23..=23, 2, 10)).unwrap();
}

#[test]
fn truncate_records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.create_group(1).unwrap();
    append_durably(&storage, 1, records(1, 1..=10, 1, 64)).unwrap();
    storage.truncate_after(1, Some(5)).unwrap();
    append_durably(&storage, 1, records(1, 6..=8, 2, 64)).unwrap();
    drop(storage);

    let storage = open(dir.path());
    let mut expected = records(1, 1..=5, 1, 64);
    expected.extend(records(1, 6..=8, 2, 64));
    assert_eq!(read_all(&storage, 1), expected);
    assert_eq!(storage.bounds(1).unwrap().last, Some(position(8, 2)));
}

/// Cuts `bytes` off the end of the newest segment.
fn cut_tail(dir: &Path, bytes: u64) {
    let newest = segment_files(dir).pop().unwrap();
    let file = OpenOptions::new().write(true).open(&newest).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - bytes).unwrap();
}

#[test]
fn torn_tail_of_newest_segment_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.create_group(1).unwrap();
    append_durably(&storage, 1, records(1, 1..=10, 1, 200)).unwrap();
    // Not waited for: in a crash these could be lost, or torn.
    storage
        .append(1, records(1, 11..=13, 1, 200), Box::new(|_| {}))
        .unwrap();
    drop(storage);
    cut_tail(dir.path(), 3);

    let storage = open(dir.path());
    assert_eq!(
        read_all(&storage, 1),
        records(1, 1..=12, 1, 200),
        "only the torn record is gone"
    );
    // The journal goes on after the cut.
    append_durably(&storage, 1, records(1, 13..=14, 2, 200)).unwrap();
    drop(storage);
    let storage = open(dir.path());
    let mut expected = records(1, 1..=12, 1, 200);
    expected.extend(records(1, 13..=14, 2, 200));
    assert_eq!(read_all(&storage, 1), expected);
}

#[test]
fn crash_keeps_every_durable_record() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.create_group(1).unwrap();
    storage.create_group(2).unwrap();
    append_durably(&storage, 1, records(1, 1..=10, 1, 500)).unwrap();
    let (done, outcome) = durable();
    storage
        .kv_write(
            &group_space(1),
            vec![KvOp::Put(b"vote".to_vec(), b"3".to_vec())],
            Some(done),
        )
        .unwrap();
    outcome.recv().unwrap().unwrap();
    let newest = segment_files(dir.path()).pop().unwrap();
    let durable_len = std::fs::metadata(&newest).unwrap().len();
    for index in 11..=60 {
        storage
            .append(1, vec![record(1, index, 1, 500)], Box::new(|_| {}))
            .unwrap();
        storage
            .append(2, vec![record(2, index, 1, 500)], Box::new(|_| {}))
            .unwrap();
    }
    storage.simulate_crash();
    // Tear whatever was written after the last acknowledged round (a torn write can only
    // affect unacknowledged bytes).
    let crashed_len = std::fs::metadata(&newest).unwrap().len();
    if crashed_len > durable_len {
        cut_tail(dir.path(), (crashed_len - durable_len).min(5));
    }

    let storage = open(dir.path());
    let recovered = read_all(&storage, 1);
    assert!(
        recovered.len() >= 10,
        "durable records lost: {} left",
        recovered.len()
    );
    let last = recovered.last().unwrap().index;
    assert_eq!(
        recovered,
        records(1, 1..=last, 1, 500),
        "a prefix of what was appended, nothing else"
    );
    let other = read_all(&storage, 2);
    if let Some(last) = other.last() {
        assert_eq!(other, records(2, 11..=last.index, 1, 500));
    }
    assert_eq!(
        storage.kv_get(&group_space(1), b"vote").unwrap(),
        Some(b"3".to_vec())
    );
}

#[test]
fn garbage_after_the_last_record_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.create_group(1).unwrap();
    append_durably(&storage, 1, records(1, 1..=5, 1, 100)).unwrap();
    drop(storage);
    let newest = segment_files(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&newest).unwrap().len();
    // What a preallocating file system leaves after a crash.
    OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&[0u8; 4096])
        .unwrap();

    let storage = open(dir.path());
    assert_eq!(read_all(&storage, 1), records(1, 1..=5, 1, 100));
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), clean_len);
}

#[test]
fn damaged_payload_in_newest_segment_cuts_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.create_group(1).unwrap();
    append_durably(&storage, 1, records(1, 1..=5, 1, 100)).unwrap();
    drop(storage);
    let newest = segment_files(dir.path()).pop().unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&newest)
        .unwrap();
    // A byte in the payload of the fourth record: 16-byte header + 3 records of 146 bytes + 46.
    let offset = 16 + 3 * 146 + 46 + 10;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[byte[0] ^ 0xff], offset).unwrap();

    let storage = open(dir.path());
    assert_eq!(read_all(&storage, 1), records(1, 1..=3, 1, 100));
}

#[test]
fn damage_in_an_older_segment_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_small(dir.path(), 4096);
    storage.create_group(1).unwrap();
    append_durably(&storage, 1, records(1, 1..=20, 1, 1000)).unwrap();
    drop(storage);
    let files = segment_files(dir.path());
    assert!(
        files.len() > 3,
        "expected several segments, got {}",
        files.len()
    );
    let oldest = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files[0])
        .unwrap();

    // A damaged payload in an old segment is only noticed when read.
    let payload_offset = 16 + 46 + 500;
    let mut byte = [0u8; 1];
    oldest.read_exact_at(&mut byte, payload_offset).unwrap();
    oldest
        .write_all_at(&[byte[0] ^ 0xff], payload_offset)
        .unwrap();
    let storage = open_small(dir.path(), 4096);
    assert!(matches!(
        storage.read(1, 1, 2, usize::MAX),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(
        storage.read(1, 2, 3, usize::MAX).unwrap(),
        records(1, 2..=2, 1, 1000)
    );
    drop(storage);

    // A damaged header in an old segment stops the open.
    oldest.write_all_at(&[byte[0]], payload_offset).unwrap();
    oldest.write_all_at(&[0xAB], 16 + 20).unwrap();
    assert!(matches!(
        DiskStorage::open(DiskOptions {
            dir: dir.path().to_path_buf(),
            segment_bytes: 4096
        }),
        Err(StorageError::Corrupt(_))
    ));
}

#[test]
fn purged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_small(dir.path(), 64 << 10);
    for group in 1..=3 {
        storage.create_group(group).unwrap();
    }
    for batch in 0..20 {
        for group in 1..=3 {
            let first = batch * 10 + 1;
            append_durably(&storage, group, records(group, first..=first + 9, 1, 1024)).unwrap();
        }
    }
    let files_before = segment_files(dir.path()).len();
    assert!(
        files_before >= 8,
        "expected the journal to roll, got {files_before} segments"
    );
    for group in 1..=3 {
        storage.purge_upto(group, position(200, 1)).unwrap();
    }
    settle(&storage);
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "only the active segment stays"
    );
    assert!(storage.stats().segments_deleted >= files_before as u64 - 1);
    drop(storage);

    let storage = open_small(dir.path(), 64 << 10);
    for group in 1..=3 {
        assert_eq!(
            storage.bounds(group).unwrap(),
            LogBounds {
                purged: Some(position(200, 1)),
                last: Some(position(200, 1))
            }
        );
        append_durably(&storage, group, records(group, 201..=201, 1, 10)).unwrap();
    }
}

/// Group 1 writes one small record into the oldest segment and never purges; group 2 fills
/// `group2_records` KiB-sized records after it and purges them all.
fn pinned_journal(dir: &Path, group2_records: u64) -> DiskStorage {
    let storage = open_small(dir, 64 << 10);
    storage.create_group(1).unwrap();
    storage.create_group(2).unwrap();
    append_durably(&storage, 1, records(1, 1..=1, 1, 100)).unwrap();
    for first in (1..=group2_records).step_by(10) {
        append_durably(&storage, 2, records(2, first..=first + 9, 1, 1024)).unwrap();
    }
    storage.purge_upto(2, position(group2_records, 1)).unwrap();
    settle(&storage);
    storage
}

#[test]
fn pinned_oldest_segment_holds_back_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    // ~2.5 segments: too few for compaction.
    let storage = pinned_journal(dir.path(), 150);
    let files = segment_files(dir.path()).len();
    assert!(
        files >= 3,
        "expected the journal to roll, got {files} segments"
    );
    assert_eq!(
        storage.stats().segments_deleted,
        0,
        "group 1 pins the oldest segment"
    );
    storage.purge_upto(1, position(1, 1)).unwrap();
    settle(&storage);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[test]
fn compaction_frees_a_pinned_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    let storage = pinned_journal(dir.path(), 600);
    let stats = storage.stats();
    assert!(
        stats.segments_created >= 8,
        "expected the journal to roll, got {stats:?}"
    );
    assert!(
        stats.segments_compacted >= 1,
        "the oldest segment should have been compacted: {stats:?}"
    );
    assert!(
        segment_files(dir.path()).len() <= 2,
        "left: {:?}",
        segment_files(dir.path())
    );
    assert_eq!(read_all(&storage, 1), records(1, 1..=1, 1, 100));
    drop(storage);

    let storage = open_small(dir.path(), 64 << 10);
    assert_eq!(read_all(&storage, 1), records(1, 1..=1, 1, 100));
    assert_eq!(
        storage.bounds(2).unwrap(),
        LogBounds {
            purged: Some(position(600, 1)),
            last: Some(position(600, 1))
        }
    );
    append_durably(&storage, 1, records(1, 2..=2, 1, 100)).unwrap();
}

#[test]
fn a_recreated_group_does_not_see_its_predecessor() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.create_group(7).unwrap();
    append_durably(&storage, 7, records(7, 1..=5, 1, 50)).unwrap();
    storage.drop_group(7).unwrap();
    storage.create_group(7).unwrap();
    append_durably(&storage, 7, records(7, 1..=2, 9, 50)).unwrap();
    drop(storage);

    let storage = open(dir.path());
    assert_eq!(read_all(&storage, 7), records(7, 1..=2, 9, 50));
    storage.drop_group(7).unwrap();
    drop(storage);
    let storage = open(dir.path());
    assert!(storage.groups().is_empty());
}

#[test]
fn dropped_groups_do_not_pin_segments() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open_small(dir.path(), 64 << 10);
    storage.create_group(1).unwrap();
    storage.create_group(2).unwrap();
    append_durably(&storage, 1, records(1, 1..=1, 1, 100)).unwrap();
    for first in (1..=150).step_by(10) {
        append_durably(&storage, 2, records(2, first..=first + 9, 1, 1024)).unwrap();
    }
    storage.purge_upto(2, position(150, 1)).unwrap();
    storage.drop_group(1).unwrap();
    settle(&storage);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[test]
fn appends_from_many_threads_share_fsyncs() {
    const THREADS: u64 = 8;
    const GROUPS: u64 = 20;
    const APPENDS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(open(dir.path()));
    for group in 0..GROUPS {
        storage.create_group(group).unwrap();
    }
    let syncs_before = storage.stats().data_syncs;
    let start = Arc::new(Barrier::new(THREADS as usize));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let storage = storage.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                // Each thread owns the groups congruent to it, and appends to them in turn.
                let groups: Vec<u64> = (0..GROUPS)
                    .filter(|group| group % THREADS == thread)
                    .collect();
                let mut next_index = vec![1u64; groups.len()];
                let mut outcomes = Vec::new();
                start.wait();
                for append in 0..APPENDS / THREADS {
                    let slot = append as usize % groups.len();
                    let (done, outcome) = durable();
                    storage
                        .append(
                            groups[slot],
                            vec![record(groups[slot], next_index[slot], 1, 512)],
                            done,
                        )
                        .unwrap();
                    next_index[slot] += 1;
                    outcomes.push(outcome);
                }
                for outcome in outcomes {
                    outcome.recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let syncs = storage.stats().data_syncs - syncs_before;
    let appended: usize = (0..GROUPS)
        .map(|group| read_all(&*storage, group).len())
        .sum();
    assert_eq!(appended as u64, APPENDS);
    assert!(
        syncs < APPENDS / 2,
        "{syncs} fdatasyncs for {APPENDS} appends: no group commit"
    );
}

#[test]
fn reads_stay_consistent_while_segments_are_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(open_small(dir.path(), 16 << 10));
    for group in 0..4 {
        storage.create_group(group).unwrap();
    }
    let writers: Vec<_> = (0..4u64)
        .map(|group| {
            let storage = storage.clone();
            std::thread::spawn(move || {
                for index in 1..=400u64 {
                    append_durably(&*storage, group, vec![record(group, index, 1, 300)]).unwrap();
                    // Groups keep different amounts of history, so segments get pinned and
                    // compacted as well as simply deleted.
                    if index % 25 == 0 && index > 50 * (group + 1) {
                        storage
                            .purge_upto(group, position(index - 50 * (group + 1), 1))
                            .unwrap();
                        common::flush(&*storage);
                    }
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2u64)
        .map(|reader| {
            let storage = storage.clone();
            std::thread::spawn(move || {
                for round in 0..3000u64 {
                    let group = (round + reader) % 4;
                    for record_read in storage.read(group, 0, u64::MAX, 64 << 10).unwrap() {
                        assert_eq!(record_read, record(group, record_read.index, 1, 300));
                    }
                }
            })
        })
        .collect();
    for thread in writers.into_iter().chain(readers) {
        thread.join().unwrap();
    }
    settle(&*storage);
    let stats = storage.stats();
    assert!(stats.segments_deleted > 0, "{stats:?}");
    let before = snapshot(&storage);
    drop(storage);
    let storage = open_small(dir.path(), 16 << 10);
    assert_eq!(snapshot(&storage), before);
}
