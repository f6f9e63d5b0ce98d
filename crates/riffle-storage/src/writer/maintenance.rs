//! Reclaiming journal space after a round: which segments a registered group may still need
//! (pins against durable purge positions), deleting the others oldest first, and compacting an
//! old segment that little live data pins (its live records are copied to the head).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::Mutex;

use super::Writer;
use crate::GroupId;
use crate::disk::GroupLog;
use crate::disk::Location;
use crate::disk::Slot;
use crate::disk::Stats;
use crate::journal;
use crate::journal::RecordBody;
use crate::journal::SEGMENT_HEADER_LEN;
use crate::lock;
use crate::read_lock;

/// Compaction only runs when the journal holds more segments than this.
const COMPACT_MIN_SEGMENTS: usize = 4;
/// ... and when the oldest segment's live records are below this share of it.
const COMPACT_MAX_LIVE_PERCENT: u64 = 25;
/// Segments compacted per maintenance pass, so that appends are not held up for long.
const COMPACT_MAX_PER_PASS: usize = 2;

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

impl Writer {
    /// Deletes segments nobody needs, oldest first, then compacts the oldest segment if few of
    /// its records are still live.
    pub(super) fn maintain(&mut self) {
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
