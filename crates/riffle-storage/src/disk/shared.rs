//! What callers and the journal thread share ([`Shared`]): the group map, the queue of [`Op`]s
//! (in call order per group), the key-value overlay, the open sled trees, the segment handles,
//! the poison flag and the journal thread's counters.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use super::group_log::GroupLog;
use super::read::SegmentReaders;
use crate::Durable;
use crate::GroupId;
use crate::KvOp;
use crate::LogPosition;
use crate::LogRecord;
use crate::StorageError;
use crate::lock;
use crate::read_lock;

/// Counters of the journal thread, for tests and benchmarks.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Commit rounds (batches taken off the queue).
    pub rounds: u64,
    /// `fdatasync` calls on journal segments.
    pub data_syncs: u64,
    /// `fsync` calls on the journal directory.
    pub dir_syncs: u64,
    /// sled flushes.
    pub sled_flushes: u64,
    /// Bytes written to the journal.
    pub journal_bytes: u64,
    pub segments_created: u64,
    pub segments_deleted: u64,
    /// Segments freed by copying their few live records to the head of the journal.
    pub segments_compacted: u64,
    pub records_relocated: u64,
}

/// Atomic counters behind [`DiskStats`].
#[derive(Default)]
pub(crate) struct Stats {
    pub rounds: AtomicU64,
    pub data_syncs: AtomicU64,
    pub dir_syncs: AtomicU64,
    pub sled_flushes: AtomicU64,
    pub journal_bytes: AtomicU64,
    pub segments_created: AtomicU64,
    pub segments_deleted: AtomicU64,
    pub segments_compacted: AtomicU64,
    pub records_relocated: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> DiskStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DiskStats {
            rounds: get(&self.rounds),
            data_syncs: get(&self.data_syncs),
            dir_syncs: get(&self.dir_syncs),
            sled_flushes: get(&self.sled_flushes),
            journal_bytes: get(&self.journal_bytes),
            segments_created: get(&self.segments_created),
            segments_deleted: get(&self.segments_deleted),
            segments_compacted: get(&self.segments_compacted),
            records_relocated: get(&self.records_relocated),
        }
    }
}

/// Work for the journal thread.
pub(crate) enum Op {
    Append {
        group: GroupId,
        log: Arc<Mutex<GroupLog>>,
        records: Vec<LogRecord>,
        done: Durable,
    },
    Truncate {
        group: GroupId,
        after: Option<u64>,
    },
    Purge {
        group: GroupId,
        upto: LogPosition,
    },
    Kv {
        space: String,
        ops: Vec<KvOp>,
        done: Option<Durable>,
    },
    Flush {
        done: Durable,
    },
    CreateGroup {
        group: GroupId,
        reply: mpsc::Sender<io::Result<()>>,
    },
    DropGroup {
        group: GroupId,
        reply: mpsc::Sender<io::Result<()>>,
    },
}

/// What the journal thread should do once the queue is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunMode {
    Running,
    /// Process everything queued, flush, exit (clean shutdown).
    Drain,
    /// Exit at once, dropping queued work unfired (crash simulation).
    Crash,
}

pub(crate) struct Queue {
    pub ops: Vec<(u64, Op)>,
    pub next_seq: u64,
    pub mode: RunMode,
}

/// Lazily written key-value changes not yet applied to sled, per space and key: the queue
/// sequence number of the write and the value (`None` = deleted).
pub(crate) type Overlay = HashMap<String, BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>>;

/// State shared by callers and the journal thread.
pub(crate) struct Shared {
    pub groups: RwLock<HashMap<GroupId, Arc<Mutex<GroupLog>>>>,
    pub queue: Mutex<Queue>,
    pub queue_ready: Condvar,
    pub overlay: Mutex<Overlay>,
    pub db: sled::Db,
    /// Open sled trees of key spaces (never the reserved ones).
    pub trees: RwLock<HashMap<String, sled::Tree>>,
    pub segments: SegmentReaders,
    /// Set after an I/O error: every later operation fails.
    pub poisoned: AtomicBool,
    /// Serializes `create_group` and `drop_group`.
    pub(super) membership: Mutex<()>,
    pub stats: Stats,
    /// Test hook: the next journal commit fails as if the disk had.
    #[cfg(test)]
    pub fail_next_commit: AtomicBool,
}

impl Shared {
    /// Pushes an operation and wakes the journal thread. Returns its sequence number.
    pub(crate) fn enqueue(&self, op: Op) -> u64 {
        let mut queue = lock(&self.queue);
        let seq = queue.next_seq;
        queue.next_seq += 1;
        queue.ops.push((seq, op));
        drop(queue);
        self.queue_ready.notify_one();
        seq
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    pub(super) fn check_healthy(&self) -> Result<(), StorageError> {
        if self.is_poisoned() {
            return Err(StorageError::Io(poisoned_error()));
        }
        Ok(())
    }

    pub(super) fn group(&self, group: GroupId) -> Result<Arc<Mutex<GroupLog>>, StorageError> {
        read_lock(&self.groups)
            .get(&group)
            .cloned()
            .ok_or(StorageError::UnknownGroup { group })
    }

    /// Runs `inspect` on a group's state (map lock, then group lock: the documented order).
    pub(super) fn with_log<T>(
        &self,
        group: GroupId,
        inspect: impl FnOnce(&GroupLog) -> T,
    ) -> Result<T, StorageError> {
        let groups = read_lock(&self.groups);
        let log = groups
            .get(&group)
            .ok_or(StorageError::UnknownGroup { group })?;
        Ok(inspect(&lock(log)))
    }

    pub(super) fn tree(&self, space: &str) -> Option<sled::Tree> {
        read_lock(&self.trees).get(space).cloned()
    }
}

/// The error every operation gets once the journal is poisoned.
pub(crate) fn poisoned_error() -> io::Error {
    io::Error::other("storage journal is poisoned by an earlier i/o error")
}
