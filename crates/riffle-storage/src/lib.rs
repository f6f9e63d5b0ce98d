//! Node-local durable storage for Riffle.
//!
//! This layer owns the bytes on one node's disk: the Raft log of every group hosted here (shard
//! groups and the metadata group), their small "hard state" (vote, committed, purged), and the
//! key-value state of state machines. It knows nothing about Raft, Kinesis or openraft: a log is
//! a sequence of opaque [`LogRecord`]s per [`GroupId`], and a key space is a sorted map of bytes.
//!
//! Two implementations sit behind the [`Storage`] trait:
//! - [`DiskStorage`]: one shared append-only journal (segment files) for all groups' log
//!   records, plus sled for key-value state. Every durability request of the whole node goes
//!   through one journal thread, so many concurrent appends across all groups share one
//!   `fdatasync` (group commit). Record payloads are written once (compaction copies only the
//!   few live records of an otherwise dead segment). Format and write path: `journal.rs`.
//! - [`MemStorage`]: everything in memory, for fast unit tests of the layers above.
//!
//! Where things are: `disk/` ([`DiskStorage`] and the caller side of each call; opening; state
//! shared with the journal thread; reads), `writer/` (the journal thread: its loop and round, the
//! active segment, the sled side, segment deletion and compaction), `journal.rs` (record format),
//! `recovery.rs` (replay on open), `index.rs` (a group's in-memory index), `meta.rs` (the group
//! registry in sled), `mem.rs`. An append to its acknowledgement: `disk/mod.rs` (index, then the
//! queue) → `writer/mod.rs` (the round: `pwrite`, `fdatasync`, then the callbacks fire).
//!
//! What this layer must not do: interpret payloads, decide what is committed, or block an async
//! runtime thread on a disk flush (durability is reported through [`Durable`] callbacks).

mod disk;
mod index;
mod journal;
mod mem;
mod meta;
mod recovery;
mod writer;

use std::io;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::PoisonError;
use std::sync::RwLock;
use std::sync::RwLockReadGuard;
use std::sync::RwLockWriteGuard;

use bytes::Bytes;

pub use disk::DEFAULT_SEGMENT_BYTES;
pub use disk::DiskOptions;
#[doc(hidden)]
pub use disk::DiskStats;
pub use disk::DiskStorage;
pub use mem::MemStorage;

/// Identifies one replicated log on this node (a shard group or the metadata group).
pub type GroupId = u64;

/// One entry of a group's log, as stored. `kind`, `tag` and `payload` are opaque to storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Raft log index; records of one group are contiguous.
    pub index: u64,
    /// Raft term of the entry.
    pub term: u64,
    /// Caller-defined entry kind (blank, normal, membership...).
    pub kind: u8,
    /// Caller-defined searchable value, expected to be non-decreasing along the log (the shard
    /// layer stores the arrival time in milliseconds). See [`Storage::first_index_with_tag_at_least`].
    pub tag: u64,
    /// The entry's bytes.
    pub payload: Bytes,
}

impl LogRecord {
    /// Bytes this record accounts for in read budgets.
    pub fn size(&self) -> usize {
        self.payload.len() + RECORD_OVERHEAD
    }
}

/// Approximate per-record bookkeeping overhead used by read budgets.
pub const RECORD_OVERHEAD: usize = 32;

/// `(index, term)` of a log position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub index: u64,
    pub term: u64,
}

/// The extent of a group's log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogBounds {
    /// The last purged entry, if any was purged.
    pub purged: Option<LogPosition>,
    /// The last entry present; equals `purged` when the log is empty after a purge, `None` when
    /// the log never had an entry.
    pub last: Option<LogPosition>,
}

/// Called once when the operation it was handed to is durable on disk (or failed).
/// Called from the flusher thread: it must not block.
pub type Durable = Box<dyn FnOnce(io::Result<()>) + Send + 'static>;

/// A `(key, value)` pair of a key space.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One change to a key space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Errors that make a storage call impossible (as opposed to I/O errors).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("log group {group} does not exist on this node")]
    UnknownGroup { group: GroupId },
    #[error("log group {group} already exists on this node")]
    GroupExists { group: GroupId },
    #[error("append to group {group} is not contiguous: expected index {expected}, got {got}")]
    NotContiguous {
        group: GroupId,
        expected: u64,
        got: u64,
    },
    #[error("storage i/o failed")]
    Io(#[from] io::Error),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
}

impl From<StorageError> for io::Error {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Io(io_error) => io_error,
            other => io::Error::other(other),
        }
    }
}

/// The node's durable storage. All methods are cheap and non-blocking unless documented
/// otherwise; durability is signalled through [`Durable`] callbacks.
///
/// Ordering contract (what Raft needs): for one group, `append`, `truncate_after` and
/// `purge_upto` take effect in memory immediately and reach the disk in call order; a
/// `Durable` callback fires only when that operation *and every operation called before it on
/// the whole node* is durable. Operations without a callback (`truncate_after`, `purge_upto`,
/// `kv_write` without `done`) become durable with a later flush, and never before an operation
/// called earlier: after a crash the disk holds a prefix of the node's operations, so for
/// example a lazily written "applied" index can never be ahead of the log on disk.
///
/// When a call returns an error, the `Durable` it was given is dropped without being called.
/// Key space names starting with `__` are reserved for the implementation.
pub trait Storage: Send + Sync + 'static {
    /// Registers a new, empty log group. Durable before returning (blocking: call from a
    /// blocking context or accept a short stall).
    fn create_group(&self, group: GroupId) -> Result<(), StorageError>;

    /// Removes a group, its log and its key space ([`group_space`]). Durable before returning.
    fn drop_group(&self, group: GroupId) -> Result<(), StorageError>;

    /// Groups present on this node, in ascending order.
    fn groups(&self) -> Vec<GroupId>;

    /// Appends records to a group's log. The records are readable immediately; `done` fires once
    /// they are durable. The first record's index must be `last + 1` (or anything when the log is
    /// empty and was never purged, or `purged + 1` after a purge).
    fn append(
        &self,
        group: GroupId,
        records: Vec<LogRecord>,
        done: Durable,
    ) -> Result<(), StorageError>;

    /// Removes every record with index > `after` (all records when `None`). Ordered with appends.
    fn truncate_after(&self, group: GroupId, after: Option<u64>) -> Result<(), StorageError>;

    /// Removes every record with index <= `upto.index` and remembers `upto` as the last purged
    /// position. Space is reclaimed later, in the background.
    fn purge_upto(&self, group: GroupId, upto: LogPosition) -> Result<(), StorageError>;

    /// The extent of a group's log.
    fn bounds(&self, group: GroupId) -> Result<LogBounds, StorageError>;

    /// Term of the record at `index`, if present.
    fn term_at(&self, group: GroupId, index: u64) -> Result<Option<u64>, StorageError>;

    /// Reads records with `from <= index < until`, in order, stopping early (after at least one
    /// record) once `max_bytes` of [`LogRecord::size`] would be exceeded. Purged or truncated
    /// indexes are simply absent: the result starts at the first present index >= `from`.
    fn read(
        &self,
        group: GroupId,
        from: u64,
        until: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogRecord>, StorageError>;

    /// The smallest present index whose record has `tag >= tag`, assuming tags are
    /// non-decreasing along the log (binary search). `None` if no such record is present.
    fn first_index_with_tag_at_least(
        &self,
        group: GroupId,
        tag: u64,
    ) -> Result<Option<u64>, StorageError>;

    /// Reads a key from a key space.
    fn kv_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Applies a batch of changes to one key space atomically. When `done` is given it fires once
    /// the batch is durable; otherwise the batch becomes durable with a later flush.
    fn kv_write(
        &self,
        space: &str,
        ops: Vec<KvOp>,
        done: Option<Durable>,
    ) -> Result<(), StorageError>;

    /// All `(key, value)` pairs of a key space whose key starts with `prefix`, in key order.
    fn kv_scan(&self, space: &str, prefix: &[u8]) -> Result<Vec<KeyValue>, StorageError>;

    /// Fires `done` once everything written so far is durable.
    fn flush(&self, done: Durable);
}

/// Locks a mutex, ignoring poisoning: every critical section in this crate leaves its data
/// consistent before doing anything that can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks an `RwLock`, ignoring poisoning (see [`lock`]).
pub(crate) fn read_lock<T>(rw_lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rw_lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks an `RwLock`, ignoring poisoning (see [`lock`]).
pub(crate) fn write_lock<T>(rw_lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rw_lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Key spaces starting with this are reserved (sled's default tree, the group registry).
const RESERVED_SPACE_PREFIX: &str = "__";

/// Refuses reserved key space names.
pub(crate) fn check_space_name(space: &str) -> Result<(), StorageError> {
    if space.starts_with(RESERVED_SPACE_PREFIX) {
        return Err(StorageError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("key space name {space:?} is reserved"),
        )));
    }
    Ok(())
}

/// The key space reserved for a group's own small state (vote, committed, snapshot...). It is
/// removed with the group by [`Storage::drop_group`].
pub fn group_space(group: GroupId) -> String {
    format!("group-{group:020}")
}
