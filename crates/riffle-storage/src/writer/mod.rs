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

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use crate::GroupId;
use crate::KvOp;
use crate::LogRecord;
use crate::disk::GroupLog;
use crate::disk::Location;
use crate::disk::MAX_SEGMENT_SEQ;
use crate::disk::Op;
use crate::disk::RunMode;
use crate::disk::Shared;
use crate::disk::Slot;
use crate::disk::Stats;
use crate::disk::poisoned_error;
use crate::group_space;
use crate::journal;
use crate::journal::RecordBody;
use crate::journal::SEGMENT_HEADER_LEN;
use crate::lock;
use crate::meta::GroupMeta;
use crate::meta::JournalPos;
use crate::meta::group_key;
use crate::meta::sled_io_error;
use crate::read_lock;
use crate::recovery::ActiveSegment;
use crate::write_lock;

/// How long lazily written sled state (purge positions, key-value writes without `done`) may
/// stay unflushed.
pub(crate) const LAZY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Compaction only runs when the journal holds more segments than this.
const COMPACT_MIN_SEGMENTS: usize = 4;
/// ... and when the oldest segment's live records are below this share of it.
const COMPACT_MAX_LIVE_PERCENT: u64 = 25;
/// Segments compacted per maintenance pass, so that appends are not held up for long.
const COMPACT_MAX_PER_PASS: usize = 2;

/// The staging buffer is given back to the allocator after a round larger than this.
const KEEP_BUFFER_BYTES: usize = 16 << 20;

/// What the journal thread knows about a segment.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    /// Bytes in the segment.
    pub len: u64,
    /// For each group, the highest index it wrote into this segment. The segment can go once
    /// every registered group's durable purge position reaches its entry.
    pub pins: HashMap<GroupId, u64>,
}

impl SegmentInfo {
    pub(crate) fn new(len: u64) -> Self {
        SegmentInfo {
            len,
            pins: HashMap::new(),
        }
    }

    pub(crate) fn pin(&mut self, group: GroupId, index: u64) {
        self.pins
            .entry(group)
            .and_modify(|max| *max = (*max).max(index))
            .or_insert(index);
    }
}

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
        let journal = JournalWriter {
            dir,
            segment_bytes,
            seq: active.seq,
            file: active.file,
            len: active.len,
            buf: Vec::new(),
            unsynced: false,
            created: false,
            rolled: false,
        };
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

    /// Applies the sled side of the batch, in order. Key-value changes leave the overlay only
    /// after sled has them, so readers always see them in one place or the other.
    fn apply_sled_ops(&mut self, batch: &[(u64, Op)]) -> io::Result<()> {
        let created_at = self.journal.position();
        for (seq, op) in batch {
            match op {
                Op::Purge { group, upto } => {
                    let Some(meta) = self.metas.get_mut(group) else {
                        continue;
                    };
                    if meta.purged.is_some_and(|purged| purged.index >= upto.index) {
                        continue;
                    }
                    meta.purged = Some(*upto);
                    self.groups_tree
                        .insert(group_key(*group), meta.encode())
                        .map_err(sled_io_error)?;
                    self.unflushed_purges.insert(*group, upto.index);
                    self.sled_dirty = true;
                }
                Op::Kv { space, ops, .. } => {
                    let tree = self.tree_for_write(space)?;
                    let mut sled_batch = sled::Batch::default();
                    for kv_op in ops {
                        match kv_op {
                            KvOp::Put(key, value) => {
                                sled_batch.insert(key.as_slice(), value.as_slice())
                            }
                            KvOp::Delete(key) => sled_batch.remove(key.as_slice()),
                        }
                    }
                    tree.apply_batch(sled_batch).map_err(sled_io_error)?;
                    self.retire_overlay(space, ops, *seq);
                    self.sled_dirty = true;
                }
                Op::CreateGroup { group, .. } => {
                    let meta = GroupMeta {
                        created_at,
                        purged: None,
                    };
                    self.groups_tree
                        .insert(group_key(*group), meta.encode())
                        .map_err(sled_io_error)?;
                    self.metas.insert(*group, meta);
                    self.durable_purged.remove(group);
                    self.unflushed_purges.remove(group);
                    self.sled_dirty = true;
                }
                Op::DropGroup { group, .. } => {
                    self.groups_tree
                        .remove(group_key(*group))
                        .map_err(sled_io_error)?;
                    self.metas.remove(group);
                    self.durable_purged.remove(group);
                    self.unflushed_purges.remove(group);
                    for info in self.segments.values_mut() {
                        info.pins.remove(group);
                    }
                    let space = group_space(*group);
                    write_lock(&self.shared.trees).remove(&space);
                    self.shared
                        .db
                        .drop_tree(space.as_bytes())
                        .map_err(sled_io_error)?;
                    lock(&self.shared.overlay).remove(&space);
                    self.sled_dirty = true;
                    self.maintenance_due = true;
                }
                Op::Append { .. } | Op::Truncate { .. } | Op::Flush { .. } => {}
            }
        }
        Ok(())
    }

    fn tree_for_write(&self, space: &str) -> io::Result<sled::Tree> {
        if let Some(tree) = read_lock(&self.shared.trees).get(space) {
            return Ok(tree.clone());
        }
        let tree = self
            .shared
            .db
            .open_tree(space.as_bytes())
            .map_err(sled_io_error)?;
        write_lock(&self.shared.trees).insert(space.to_string(), tree.clone());
        Ok(tree)
    }

    fn retire_overlay(&self, space: &str, ops: &[KvOp], seq: u64) {
        let mut overlay = lock(&self.shared.overlay);
        let Some(entries) = overlay.get_mut(space) else {
            return;
        };
        for kv_op in ops {
            let key = match kv_op {
                KvOp::Put(key, _) | KvOp::Delete(key) => key,
            };
            // A later write of the same key stays until it is applied too.
            if entries
                .get(key)
                .is_some_and(|(entry_seq, _)| *entry_seq == seq)
            {
                entries.remove(key);
            }
        }
        if entries.is_empty() {
            overlay.remove(space);
        }
    }

    fn flush_sled(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.shared.db.flush().map_err(sled_io_error)?;
        warn_if_slow(started, "sled flush");
        Stats::add(&self.shared.stats.sled_flushes, 1);
        self.sled_dirty = false;
        self.last_sled_flush = Instant::now();
        if !self.unflushed_purges.is_empty() {
            for (group, index) in self.unflushed_purges.drain() {
                let durable = self.durable_purged.entry(group).or_insert(index);
                *durable = (*durable).max(index);
            }
            self.maintenance_due = true;
        }
        Ok(())
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

    /// Deletes segments nobody needs, oldest first, then compacts the oldest segment if few of
    /// its records are still live.
    fn maintain(&mut self) {
        if let Err(error) = self.collect_garbage() {
            self.poison(&error, "journal segment deletion");
            return;
        }
        for _ in 0..COMPACT_MAX_PER_PASS {
            match self.compact_oldest() {
                Ok(true) => {
                    if let Err(error) = self.collect_garbage() {
                        self.poison(&error, "journal segment deletion");
                        return;
                    }
                }
                Ok(false) => break,
                Err(error) => {
                    self.poison(&error, "journal compaction");
                    return;
                }
            }
        }
    }

    /// Whether a registered group may still need records of this segment.
    fn is_pinned(&self, info: &SegmentInfo) -> bool {
        info.pins.iter().any(|(group, max_index)| {
            self.metas.contains_key(group)
                && self
                    .durable_purged
                    .get(group)
                    .is_none_or(|purged| purged < max_index)
        })
    }

    /// Deletes unpinned segments from the oldest on, stopping at the first pinned one: a
    /// TRUNCATE record must never outlive the older records it removed.
    fn collect_garbage(&mut self) -> io::Result<()> {
        while let Some((&seq, info)) = self.segments.first_key_value() {
            if seq == self.journal.seq || self.is_pinned(info) {
                break;
            }
            self.delete_segment(seq)?;
        }
        Ok(())
    }

    fn delete_segment(&mut self, seq: u64) -> io::Result<()> {
        debug_assert_eq!(
            self.segments.keys().next(),
            Some(&seq),
            "segments are deleted oldest first"
        );
        self.shared.segments.retire(seq);
        match std::fs::remove_file(journal::segment_path(&self.journal.dir, seq)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        // Synced before the next deletion, so that deletions become durable oldest first too.
        journal::sync_dir(&self.journal.dir)?;
        Stats::add(&self.shared.stats.dir_syncs, 1);
        Stats::add(&self.shared.stats.segments_deleted, 1);
        self.segments.remove(&seq);
        tracing::debug!(segment = seq, "deleted journal segment");
        Ok(())
    }

    /// Copies the live records of the oldest segment to the head of the journal and deletes
    /// it, when it is pinned by little live data. Returns whether a segment was freed.
    ///
    /// Safe because, for every group involved, memory equals the durable state at this point
    /// (no operation of the group is queued, purges are flushed), so the copies plus the rest
    /// of the journal replay to exactly what the deleted segment contributed. Replay treats a
    /// copy as a relocation (same index and term) or as filling a gap.
    fn compact_oldest(&mut self) -> io::Result<bool> {
        if self.segments.len() <= COMPACT_MIN_SEGMENTS {
            return Ok(false);
        }
        if self.sled_dirty {
            // Purge positions must be durable before records are judged dead.
            self.flush_sled()?;
            self.collect_garbage()?;
            if self.segments.len() <= COMPACT_MIN_SEGMENTS {
                return Ok(false);
            }
        }
        let Some((&victim_seq, victim)) = self.segments.first_key_value() else {
            return Ok(false);
        };
        if victim_seq == self.journal.seq {
            return Ok(false);
        }
        let victim_len = victim.len;
        let pinning: Vec<GroupId> = victim
            .pins
            .iter()
            .filter(|(group, max_index)| {
                self.metas.contains_key(group)
                    && self
                        .durable_purged
                        .get(group)
                        .is_none_or(|purged| purged < max_index)
            })
            .map(|(group, _)| *group)
            .collect();
        let Ok(victim_segment) = u32::try_from(victim_seq) else {
            return Ok(false);
        };

        let mut moves: Vec<CompactionMove> = Vec::new();
        let mut live_bytes = 0u64;
        {
            let groups = read_lock(&self.shared.groups);
            for group in pinning {
                // Registered but not in the map: being dropped or created. Try again later.
                let Some(log) = groups.get(&group) else {
                    return Ok(false);
                };
                let guard = lock(log);
                if guard.last_op_seq > self.processed_seq {
                    return Ok(false);
                }
                let live: Vec<(u64, Slot)> = guard
                    .index
                    .iter()
                    .filter(|(_, slot)| slot.segment == victim_segment)
                    .map(|(index, slot)| (index, *slot))
                    .collect();
                live_bytes += live
                    .iter()
                    .map(|(_, slot)| u64::from(slot.len))
                    .sum::<u64>();
                drop(guard);
                moves.push(CompactionMove {
                    group,
                    log: log.clone(),
                    live,
                });
            }
        }
        if live_bytes * 100 >= victim_len * COMPACT_MAX_LIVE_PERCENT {
            return Ok(false);
        }

        let file = self.shared.segments.get(victim_seq)?;
        let mut relocated = 0u64;
        let mut new_locations: Vec<Vec<Location>> = Vec::with_capacity(moves.len());
        for CompactionMove { group, live, .. } in &moves {
            let mut group_locations = Vec::with_capacity(live.len());
            for (index, slot) in live {
                let mut record = vec![0u8; slot.len as usize];
                file.read_exact_at(&mut record, u64::from(slot.offset))?;
                let header = journal::decode_record(&record).map_err(|reason| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "journal segment {victim_seq} offset {}: {reason}",
                            slot.offset
                        ),
                    )
                })?;
                let expected = RecordBody::Entry {
                    index: *index,
                    term: slot.term,
                    kind: slot.kind,
                    tag: slot.tag,
                };
                if header.group != *group || header.body != expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "journal segment {victim_seq} offset {}: unexpected record",
                            slot.offset
                        ),
                    ));
                }
                let location =
                    self.journal
                        .stage(&self.shared.stats, record.len() as u64, |buf| {
                            buf.extend_from_slice(&record)
                        })?;
                self.segments
                    .entry(u64::from(location.segment))
                    .or_insert_with(|| SegmentInfo::new(SEGMENT_HEADER_LEN))
                    .pin(*group, *index);
                group_locations.push(location);
                relocated += 1;
            }
            new_locations.push(group_locations);
        }
        self.journal.commit(&self.shared.stats)?;
        self.note_segment_lengths();
        for (CompactionMove { log, live, .. }, locations) in moves.iter().zip(new_locations) {
            let mut guard = lock(log);
            for ((index, old_slot), location) in live.iter().zip(locations) {
                if let Some(slot) = guard.index.get_mut(*index)
                    && slot.location() == old_slot.location()
                    && slot.term == old_slot.term
                {
                    slot.set_location(location);
                }
            }
        }
        self.delete_segment(victim_seq)?;
        Stats::add(&self.shared.stats.segments_compacted, 1);
        Stats::add(&self.shared.stats.records_relocated, relocated);
        tracing::debug!(segment = victim_seq, relocated, "compacted journal segment");
        Ok(true)
    }
}

/// The live records of one group in a segment being compacted.
struct CompactionMove {
    group: GroupId,
    log: Arc<Mutex<GroupLog>>,
    live: Vec<(u64, Slot)>,
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
