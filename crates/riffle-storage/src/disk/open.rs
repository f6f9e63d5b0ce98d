//! Opening a [`DiskStorage`]: its options, its directories, sled and the group registry, the
//! replay of the journal (`recovery.rs`), and the start of the journal thread.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;

use super::DiskStorage;
use super::group_log::GroupLog;
use super::read::SegmentReaders;
use super::shared::Queue;
use super::shared::RunMode;
use super::shared::Shared;
use super::shared::Stats;
use crate::StorageError;
use crate::check_space_name;
use crate::journal;
use crate::meta::GROUPS_TREE;
use crate::meta::GroupMeta;
use crate::meta::sled_error;
use crate::recovery;
use crate::writer::Writer;

/// Default size at which the journal rolls to a new segment.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Smallest accepted segment size.
const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// Largest accepted segment size (record offsets are stored as u32).
const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Where and how [`DiskStorage`] keeps its files.
#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// Directory holding `journal/` (segment files) and `meta/` (sled).
    pub dir: PathBuf,
    /// Size at which the journal rolls to a new segment file, clamped to 4 KiB..4 GiB. Space is
    /// reclaimed a whole segment at a time.
    pub segment_bytes: u64,
}

impl DiskOptions {
    /// Options with defaults for everything but the directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskOptions {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

impl DiskStorage {
    /// Opens (or creates) the storage in `options.dir`, replaying the journal. Blocking: reads
    /// every record header of the journal (payloads only of the newest segment).
    pub fn open(options: DiskOptions) -> Result<DiskStorage, StorageError> {
        let segment_bytes = options
            .segment_bytes
            .clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES);
        let journal_dir = options.dir.join("journal");
        let meta_dir = options.dir.join("meta");
        create_dir_durably(&journal_dir)?;
        create_dir_durably(&meta_dir)?;

        let db = open_sled(&meta_dir)?;
        let groups_tree = db.open_tree(GROUPS_TREE).map_err(sled_error)?;
        let mut metas = HashMap::new();
        for entry in groups_tree.iter() {
            let (key, value) = entry.map_err(sled_error)?;
            let (group, meta) = GroupMeta::decode(&key, &value)?;
            metas.insert(group, meta);
        }

        let recovered = recovery::recover(&journal_dir, &metas)?;
        let mut trees = HashMap::new();
        for name in db.tree_names() {
            let Ok(space) = std::str::from_utf8(&name) else {
                continue;
            };
            if check_space_name(space).is_err() {
                continue;
            }
            trees.insert(space.to_string(), db.open_tree(&name).map_err(sled_error)?);
        }
        let first_live = recovered
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(recovered.active.seq);
        let groups = recovered
            .groups
            .into_iter()
            .map(|(group, index)| (group, Arc::new(Mutex::new(GroupLog::new(index)))))
            .collect();
        let shared = Arc::new(Shared {
            groups: RwLock::new(groups),
            queue: Mutex::new(Queue {
                ops: Vec::new(),
                next_seq: 1,
                mode: RunMode::Running,
            }),
            queue_ready: Condvar::new(),
            overlay: Mutex::new(HashMap::new()),
            db,
            trees: RwLock::new(trees),
            segments: SegmentReaders::new(journal_dir.clone(), first_live),
            poisoned: AtomicBool::new(false),
            membership: Mutex::new(()),
            stats: Stats::default(),
            #[cfg(test)]
            fail_next_commit: AtomicBool::new(false),
        });
        let writer = Writer::new(
            shared.clone(),
            journal_dir,
            segment_bytes,
            recovered.active,
            recovered.segments,
            metas,
            groups_tree,
        );
        let handle = std::thread::Builder::new()
            .name("riffle-journal".to_string())
            .spawn(move || writer.run())
            .map_err(StorageError::Io)?;
        Ok(DiskStorage {
            shared,
            writer: Some(handle),
        })
    }
}

/// Opens the sled database, waiting (up to 5 s) for its file lock when an earlier handle in this
/// process is still being released: sled's background jobs can hold the last reference for a
/// moment after the previous `DiskStorage` was dropped, and a reopen right away (a node restarted
/// in-process, a test reopening its directory) would otherwise fail on a loaded machine.
fn open_sled(meta_dir: &Path) -> Result<sled::Db, StorageError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(meta_dir)
            .flush_every_ms(None)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => return Err(sled_error(error)),
        }
    }
}

fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        journal::sync_dir(parent)?;
    }
    Ok(())
}
