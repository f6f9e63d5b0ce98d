//! [`DiskStorage`]: every group's log in one shared journal (see `journal.rs` for the format
//! and `writer.rs` for the journal thread), small state in sled.
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

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;

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
use crate::index::IndexSlot;
use crate::index::LogIndex;
use crate::journal;
use crate::journal::MAX_PAYLOAD_LEN;
use crate::journal::RECORD_HEADER_LEN;
use crate::journal::RecordBody;
use crate::lock;
use crate::meta::GROUPS_TREE;
use crate::meta::GroupMeta;
use crate::meta::sled_error;
use crate::read_lock;
use crate::recovery;
use crate::write_lock;
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

    fn snapshot(&self) -> DiskStats {
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

/// Where a record lives in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u32,
    pub offset: u32,
    pub len: u32,
}

/// Largest usable segment sequence number (the two above it mark pending slots and holes).
pub(crate) const MAX_SEGMENT_SEQ: u64 = u32::MAX as u64 - 2;

/// One entry of a group's in-memory index: 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub term: u64,
    pub tag: u64,
    pub offset: u32,
    pub len: u32,
    /// Journal segment, or [`Slot::PENDING`] (payload in `GroupLog::pending`), or
    /// [`Slot::HOLE`] (recovery only: present but location not seen yet).
    pub segment: u32,
    pub kind: u8,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

impl Slot {
    pub(crate) const PENDING: u32 = u32::MAX;
    pub(crate) const HOLE: u32 = u32::MAX - 1;

    pub(crate) fn pending(record: &LogRecord) -> Slot {
        Slot {
            term: record.term,
            tag: record.tag,
            offset: 0,
            len: 0,
            segment: Slot::PENDING,
            kind: record.kind,
        }
    }

    pub(crate) fn on_disk(term: u64, tag: u64, kind: u8, location: Location) -> Slot {
        Slot {
            term,
            tag,
            offset: location.offset,
            len: location.len,
            segment: location.segment,
            kind,
        }
    }

    pub(crate) fn hole() -> Slot {
        Slot {
            term: 0,
            tag: 0,
            offset: 0,
            len: 0,
            segment: Slot::HOLE,
            kind: 0,
        }
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.segment == Slot::PENDING
    }

    pub(crate) fn is_hole(&self) -> bool {
        self.segment == Slot::HOLE
    }

    /// The journal location, `None` for pending slots and holes.
    pub(crate) fn location(&self) -> Option<Location> {
        (self.segment != Slot::PENDING && self.segment != Slot::HOLE).then_some(Location {
            segment: self.segment,
            offset: self.offset,
            len: self.len,
        })
    }

    pub(crate) fn set_location(&mut self, location: Location) {
        self.segment = location.segment;
        self.offset = location.offset;
        self.len = location.len;
    }
}

impl IndexSlot for Slot {
    fn term(&self) -> u64 {
        self.term
    }

    fn tag(&self) -> u64 {
        self.tag
    }
}

/// One group's in-memory state.
pub(crate) struct GroupLog {
    pub index: LogIndex<Slot>,
    /// Payloads of pending slots (appended, not yet durable), by index.
    pub pending: BTreeMap<u64, Bytes>,
    /// Queue sequence number of the last operation enqueued for this group.
    pub last_op_seq: u64,
    /// Set by `drop_group` before it enqueues the drop; later calls fail as if the group did
    /// not exist.
    pub dropped: bool,
}

impl GroupLog {
    pub(crate) fn new(index: LogIndex<Slot>) -> Self {
        GroupLog {
            index,
            pending: BTreeMap::new(),
            last_op_seq: 0,
            dropped: false,
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
    fn new(dir: PathBuf, first_live: u64) -> Self {
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
    membership: Mutex<()>,
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

    fn check_healthy(&self) -> Result<(), StorageError> {
        if self.is_poisoned() {
            return Err(StorageError::Io(poisoned_error()));
        }
        Ok(())
    }

    fn group(&self, group: GroupId) -> Result<Arc<Mutex<GroupLog>>, StorageError> {
        read_lock(&self.groups)
            .get(&group)
            .cloned()
            .ok_or(StorageError::UnknownGroup { group })
    }

    /// Runs `inspect` on a group's state (map lock, then group lock: the documented order).
    fn with_log<T>(
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

    fn tree(&self, space: &str) -> Option<sled::Tree> {
        read_lock(&self.trees).get(space).cloned()
    }
}

/// The error every operation gets once the journal is poisoned.
pub(crate) fn poisoned_error() -> io::Error {
    io::Error::other("storage journal is poisoned by an earlier i/o error")
}

/// Durable storage on local disk. See the crate docs and `journal.rs` for the design.
///
/// Dropping it processes everything already queued, flushes, and stops the journal thread
/// (blocking for that long).
pub struct DiskStorage {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
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

    /// Reads the planned records; `NotFound` means a segment vanished under the plan.
    fn load(&self, group: GroupId, plan: Vec<Planned>) -> Result<Vec<LogRecord>, StorageError> {
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
struct Planned {
    index: u64,
    slot: Slot,
    payload: Option<Bytes>,
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

impl Drop for DiskStorage {
    fn drop(&mut self) {
        self.stop(RunMode::Drain);
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
