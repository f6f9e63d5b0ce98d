//! The journal thread: the only writer of the journal and of sled, and the only caller of
//! `fdatasync` and `sled::Db::flush`.
//!
//! One *round*: take every queued operation; encode all their journal records into one buffer
//! and write it (one `pwrite` per touched segment); `fdatasync` once (plus a directory sync
//! when a segment was created); apply the sled side of the batch in order (purge positions,
//! key-value changes, group registry); fire the batch's callbacks in order, flushing sled first
//! if any of them (or an earlier one) needs sled to be durable; then turn the written pending
//! slots into on-disk locations. Operations arriving during the round wait for the next one
//! (group commit).
//!
//! After a round: a lazy sled flush at most every [`LAZY_FLUSH_INTERVAL`], then maintenance
//! (segment deletion, compaction) when a purge became durable, a group was dropped or a segment
//! was rolled.
//!
//! Any I/O error poisons the storage: the failed batch's callbacks get the error and every
//! later operation fails, since a Raft group must not carry on over a log that may have holes.
//!
//! Here: the thread's loop, the round, the segment being appended to ([`JournalWriter`]:
//! staging, `pwrite`, `fdatasync`, rolling) and the reporting of outcomes to callers. Beside it:
//! - [`sled_ops`]: the sled side of a round, and sled flushes.
//! - [`maintenance`]: segment deletion and compaction.

mod maintenance;
mod sled_ops;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

pub(crate) use maintenance::SegmentInfo;

use crate::GroupId;
use crate::LogRecord;
use crate::disk::GroupLog;
use crate::disk::Location;
use crate::disk::MAX_SEGMENT_SEQ;
use crate::disk::Op;
use crate::disk::RunMode;
use crate::disk::Shared;
use crate::disk::Stats;
use crate::disk::poisoned_error;
use crate::journal;
use crate::journal::SEGMENT_HEADER_LEN;
use crate::lock;
use crate::meta::GroupMeta;
use crate::meta::JournalPos;
use crate::recovery::ActiveSegment;
use std::fs::File;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

/// How long lazily written sled state (purge positions, key-value writes without `done`) may
/// stay unflushed.
pub(crate) const LAZY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The journal thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    journal: JournalWriter,
    segments: BTreeMap<u64, SegmentInfo>,
    /// Registered groups, as last written to sled.
    metas: HashMap<GroupId, GroupMeta>,
    groups_tree: sled::Tree,
    /// Purge positions known to be flushed to sled.
    durable_purged: HashMap<GroupId, u64>,
    /// Purge positions written to sled since its last flush.
    unflushed_purges: HashMap<GroupId, u64>,
    sled_dirty: bool,
    last_sled_flush: Instant,
    maintenance_due: bool,
    /// Every operation up to this queue sequence number has been processed.
    processed_seq: u64,
    poisoned: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        dir: PathBuf,
        segment_bytes: u64,
        active: ActiveSegment,
        segments: BTreeMap<u64, SegmentInfo>,
        metas: HashMap<GroupId, GroupMeta>,
        groups_tree: sled::Tree,
    ) -> Self {
        let durable_purged = metas
            .iter()
            .filter_map(|(group, meta)| meta.purged.map(|purged| (*group, purged.index)))
            .collect();
        let journal = JournalWriter::new(dir, segment_bytes, active);
        Writer {
            shared,
            journal,
            segments,
            metas,
            groups_tree,
            durable_purged,
            unflushed_purges: HashMap::new(),
            sled_dirty: false,
            last_sled_flush: Instant::now(),
            // Recovery may have left deletable segments behind (a crash between a durable
            // purge and the deletion).
            maintenance_due: true,
            processed_seq: 0,
            poisoned: false,
        }
    }

    /// The thread body. A panic (a bug) poisons the storage instead of hanging callers.
    pub(crate) fn run(mut self) {
        let shared = self.shared.clone();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.run_loop()));
        if outcome.is_err() {
            tracing::error!("storage journal thread panicked; failing every further operation");
            shared.poisoned.store(true, Ordering::SeqCst);
            fail_until_stopped(&shared);
        }
    }

    fn run_loop(&mut self) {
        self.after_round(false);
        loop {
            let (batch, mode) = self.next_batch();
            if mode == RunMode::Crash {
                // Queued work is lost as in a power cut: callbacks dropped unfired.
                drop(batch);
                return;
            }
            let drained = batch.is_empty() && mode == RunMode::Drain;
            if !batch.is_empty() {
                self.round(batch);
            }
            self.after_round(drained);
            if drained {
                return;
            }
        }
    }

    /// Waits for work; returns with an empty batch when a lazy flush is due.
    fn next_batch(&self) -> (Vec<(u64, Op)>, RunMode) {
        let mut queue = lock(&self.shared.queue);
        loop {
            if !queue.ops.is_empty() || queue.mode != RunMode::Running {
                return (std::mem::take(&mut queue.ops), queue.mode);
            }
            if self.sled_dirty && !self.poisoned {
                let wait = LAZY_FLUSH_INTERVAL.saturating_sub(self.last_sled_flush.elapsed());
                if wait.is_zero() {
                    return (Vec::new(), RunMode::Running);
                }
                queue = self
                    .shared
                    .queue_ready
                    .wait_timeout(queue, wait)
                    .unwrap_or_else(|error| error.into_inner())
                    .0;
            } else {
                queue = self
                    .shared
                    .queue_ready
                    .wait(queue)
                    .unwrap_or_else(|error| error.into_inner());
            }
        }
    }

    fn poison(&mut self, error: &io::Error, what: &str) {
        if !self.poisoned {
            tracing::error!(error = %error, "storage {what} failed; failing every further operation");
        }
        self.poisoned = true;
        self.shared.poisoned.store(true, Ordering::SeqCst);
    }

    fn round(&mut self, batch: Vec<(u64, Op)>) {
        Stats::add(&self.shared.stats.rounds, 1);
        let last_seq = batch.last().map_or(self.processed_seq, |(seq, _)| *seq);
        self.processed_seq = last_seq;
        if self.poisoned {
            complete_all(batch, Some(&poisoned_error()));
            return;
        }
        let locations = match self.write_journal(&batch) {
            Ok(locations) => locations,
            Err(error) => {
                self.poison(&error, "journal write");
                complete_all(batch, Some(&error));
                return;
            }
        };
        if let Err(error) = self.apply_sled_ops(&batch) {
            self.poison(&error, "metadata write");
            complete_all(batch, Some(&error));
            return;
        }
        // Callbacks first: settling takes every group's lock, and a caller preempted while
        // holding one must not delay the whole round's acknowledgements.
        let mut sled_flushed = false;
        let mut failure: Option<io::Error> = None;
        let mut appended = Vec::new();
        for (_, op) in batch {
            if failure.is_none() && !sled_flushed && needs_sled_flush(&op) {
                match self.flush_sled() {
                    Ok(()) => sled_flushed = true,
                    Err(error) => {
                        self.poison(&error, "metadata flush");
                        failure = Some(error);
                    }
                }
            }
            if let Op::Append {
                log, records, done, ..
            } = op
            {
                fire(done, outcome(failure.as_ref()));
                appended.push((log, records));
            } else {
                complete(op, failure.as_ref());
            }
        }
        self.settle_pending(&appended, &locations);
    }

    /// Stages and commits every journal record of the batch. Returns the locations of the
    /// appended records, in batch order.
    fn write_journal(&mut self, batch: &[(u64, Op)]) -> io::Result<Vec<Location>> {
        let stats = &self.shared.stats;
        let mut locations = Vec::new();
        for (_, op) in batch {
            match op {
                Op::Append { group, records, .. } => {
                    for record in records {
                        let location = self.journal.stage(
                            stats,
                            journal::entry_record_len(record),
                            |buf| journal::encode_entry(buf, *group, record),
                        )?;
                        self.segments
                            .entry(u64::from(location.segment))
                            .or_insert_with(|| SegmentInfo::new(SEGMENT_HEADER_LEN))
                            .pin(*group, record.index);
                        locations.push(location);
                    }
                }
                Op::Truncate { group, after } => {
                    self.journal
                        .stage(stats, journal::TRUNCATE_RECORD_LEN, |buf| {
                            journal::encode_truncate(buf, *group, *after)
                        })?;
                }
                _ => {}
            }
        }
        #[cfg(test)]
        if self.shared.fail_next_commit.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("injected journal failure"));
        }
        self.journal.commit(stats)?;
        self.note_segment_lengths();
        Ok(locations)
    }

    fn note_segment_lengths(&mut self) {
        let position = self.journal.position();
        self.segments
            .entry(position.seq)
            .or_insert_with(|| SegmentInfo::new(SEGMENT_HEADER_LEN))
            .len = position.offset;
        if self.journal.rolled {
            self.journal.rolled = false;
            self.maintenance_due = true;
        }
    }

    /// Points the slots just written at their journal locations, unless they changed meanwhile
    /// (truncated, re-appended, group dropped).
    fn settle_pending(
        &self,
        appended: &[(Arc<Mutex<GroupLog>>, Vec<LogRecord>)],
        locations: &[Location],
    ) {
        let mut locations = locations.iter();
        for (log, records) in appended {
            let mut log = lock(log);
            for record in records {
                let Some(location) = locations.next() else {
                    return;
                };
                if log.dropped {
                    continue;
                }
                let payload_matches = log.pending.get(&record.index).is_some_and(|pending| {
                    pending.as_ptr() == record.payload.as_ptr()
                        && pending.len() == record.payload.len()
                });
                let Some(slot) = log.index.get_mut(record.index) else {
                    continue;
                };
                if !slot.is_pending()
                    || slot.term != record.term
                    || slot.kind != record.kind
                    || slot.tag != record.tag
                    || !payload_matches
                {
                    continue;
                }
                slot.set_location(*location);
                log.pending.remove(&record.index);
            }
        }
    }

    fn after_round(&mut self, shutting_down: bool) {
        if self.poisoned {
            return;
        }
        let flush_due = self.sled_dirty
            && (shutting_down || self.last_sled_flush.elapsed() >= LAZY_FLUSH_INTERVAL);
        if flush_due && let Err(error) = self.flush_sled() {
            self.poison(&error, "metadata flush");
            return;
        }
        if self.maintenance_due && !shutting_down {
            self.maintenance_due = false;
            self.maintain();
        }
    }
}

/// Whether the op's callback may only fire once sled is flushed.
fn needs_sled_flush(op: &Op) -> bool {
    matches!(
        op,
        Op::Kv { done: Some(_), .. }
            | Op::Flush { .. }
            | Op::CreateGroup { .. }
            | Op::DropGroup { .. }
    )
}

/// Runs a `Durable`; a panicking callback is logged, not allowed to kill the journal thread.
fn fire(done: crate::Durable, result: io::Result<()>) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
        tracing::error!("a storage durability callback panicked");
    }
}

fn copy_error(error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), error.to_string())
}

fn outcome(failure: Option<&io::Error>) -> io::Result<()> {
    match failure {
        Some(error) => Err(copy_error(error)),
        None => Ok(()),
    }
}

/// Reports the outcome of an operation to its caller.
fn complete(op: Op, failure: Option<&io::Error>) {
    let result = || outcome(failure);
    match op {
        Op::Append { done, .. } | Op::Flush { done } => fire(done, result()),
        Op::Kv {
            done: Some(done), ..
        } => fire(done, result()),
        Op::CreateGroup { reply, .. } | Op::DropGroup { reply, .. } => {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(result());
        }
        Op::Kv { done: None, .. } | Op::Truncate { .. } | Op::Purge { .. } => {}
    }
}

fn complete_all(batch: Vec<(u64, Op)>, failure: Option<&io::Error>) {
    for (_, op) in batch {
        complete(op, failure);
    }
}

/// After a journal thread panic: fail everything until the storage is dropped.
fn fail_until_stopped(shared: &Shared) {
    let mut queue = lock(&shared.queue);
    loop {
        let batch = std::mem::take(&mut queue.ops);
        let mode = queue.mode;
        drop(queue);
        complete_all(batch, Some(&poisoned_error()));
        if mode != RunMode::Running {
            return;
        }
        queue = lock(&shared.queue);
        while queue.ops.is_empty() && queue.mode == RunMode::Running {
            queue = shared
                .queue_ready
                .wait(queue)
                .unwrap_or_else(|error| error.into_inner());
        }
    }
}

/// A disk operation slower than this is logged: every acknowledgement waits on it, so it shows
/// up as a write stall (the usual cause is the disk or the host, not Riffle).
const SLOW_DISK: std::time::Duration = std::time::Duration::from_millis(100);

fn warn_if_slow(started: Instant, what: &str) {
    let took = started.elapsed();
    if took >= SLOW_DISK {
        tracing::warn!(took_ms = took.as_millis() as u64, "slow {what}");
    }
}

// ---------------------------------------------------------------------------------------
// The segment being appended to: records are staged into one buffer, written with one
// `pwrite`, made durable with one `fdatasync` (and a directory sync when a segment was
// created), and the segment is rolled when the next record would not fit.
// ---------------------------------------------------------------------------------------

/// The staging buffer is given back to the allocator after a round larger than this.
const KEEP_BUFFER_BYTES: usize = 16 << 20;

/// Appends to the active segment and rolls segments.
struct JournalWriter {
    dir: PathBuf,
    segment_bytes: u64,
    seq: u64,
    file: File,
    /// Bytes written to `file`.
    len: u64,
    /// Bytes staged for `file`, to be written at `len`.
    buf: Vec<u8>,
    /// Written but not yet synced.
    unsynced: bool,
    /// A segment was created since the last directory sync.
    created: bool,
    /// A segment was rolled since the journal thread last looked.
    rolled: bool,
}

impl JournalWriter {
    /// Continues the active segment that recovery found.
    fn new(dir: PathBuf, segment_bytes: u64, active: ActiveSegment) -> Self {
        JournalWriter {
            dir,
            segment_bytes,
            seq: active.seq,
            file: active.file,
            len: active.len,
            buf: Vec::new(),
            unsynced: false,
            created: false,
            rolled: false,
        }
    }

    /// Where the next record goes.
    fn position(&self) -> JournalPos {
        JournalPos {
            seq: self.seq,
            offset: self.len + self.buf.len() as u64,
        }
    }

    /// Stages a record of `record_len` bytes written by `encode`, rolling first if it does not
    /// fit. Returns its location.
    fn stage(
        &mut self,
        stats: &Stats,
        record_len: u64,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<Location> {
        let offset = self.len + self.buf.len() as u64;
        if offset > SEGMENT_HEADER_LEN && offset + record_len > self.segment_bytes {
            self.roll(stats)?;
        }
        let offset = self.len + self.buf.len() as u64;
        let staged_before = self.buf.len();
        encode(&mut self.buf);
        debug_assert_eq!((self.buf.len() - staged_before) as u64, record_len);
        let out_of_range = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("journal {what} out of range"),
            )
        };
        Ok(Location {
            segment: u32::try_from(self.seq).map_err(|_| out_of_range("segment number"))?,
            offset: u32::try_from(offset).map_err(|_| out_of_range("offset"))?,
            len: u32::try_from(record_len).map_err(|_| out_of_range("record length"))?,
        })
    }

    fn write_staged(&mut self, stats: &Stats) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buf, self.len)?;
        self.len += self.buf.len() as u64;
        Stats::add(&stats.journal_bytes, self.buf.len() as u64);
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self, stats: &Stats) -> io::Result<()> {
        if self.unsynced {
            let started = Instant::now();
            self.file.sync_data()?;
            warn_if_slow(started, "journal fdatasync");
            Stats::add(&stats.data_syncs, 1);
            self.unsynced = false;
        }
        Ok(())
    }

    /// Finishes the active segment (written and synced *before* the next one exists, so only
    /// the newest segment can hold a torn write) and starts the next.
    fn roll(&mut self, stats: &Stats) -> io::Result<()> {
        self.write_staged(stats)?;
        self.sync(stats)?;
        let next_seq = self.seq + 1;
        if next_seq > MAX_SEGMENT_SEQ {
            return Err(io::Error::other("journal segment numbers exhausted"));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(journal::segment_path(&self.dir, next_seq))?;
        self.file = file;
        self.seq = next_seq;
        self.len = 0;
        self.buf
            .extend_from_slice(&journal::segment_header(next_seq));
        self.created = true;
        self.rolled = true;
        Stats::add(&stats.segments_created, 1);
        Ok(())
    }

    /// Writes and syncs everything staged.
    fn commit(&mut self, stats: &Stats) -> io::Result<()> {
        self.write_staged(stats)?;
        self.sync(stats)?;
        if self.created {
            journal::sync_dir(&self.dir)?;
            Stats::add(&stats.dir_syncs, 1);
            self.created = false;
        }
        Ok(())
    }
}
