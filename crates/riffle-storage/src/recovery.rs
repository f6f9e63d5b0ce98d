//! Rebuilding the in-memory indexes from the journal when [`crate::DiskStorage`] opens.
//!
//! Segments are scanned oldest first. Old segments were fully synced before their successor
//! was created, so any bad record in them is corruption; the newest segment may end in a torn
//! write, which is cut off (it was never acknowledged: `Durable`s fire only after the sync).
//! Only the newest segment's payloads are read; older segments are walked header by header.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::GroupId;
use crate::LogPosition;
use crate::StorageError;
use crate::disk::Location;
use crate::disk::MAX_SEGMENT_SEQ;
use crate::disk::Slot;
use crate::index::LogIndex;
use crate::journal;
use crate::journal::RecordBody;
use crate::journal::SEGMENT_HEADER_LEN;
use crate::journal::ScanStep;
use crate::journal::SegmentScanner;
use crate::meta::GroupMeta;
use crate::meta::JournalPos;
use crate::writer::SegmentInfo;

/// The segment new records are appended to.
pub(crate) struct ActiveSegment {
    pub seq: u64,
    pub file: File,
    /// Bytes in the file (all valid).
    pub len: u64,
}

/// What [`recover`] rebuilt.
pub(crate) struct Recovered {
    pub groups: HashMap<GroupId, LogIndex<Slot>>,
    pub segments: BTreeMap<u64, SegmentInfo>,
    pub active: ActiveSegment,
}

/// Replays the journal in `dir` for the registered groups `metas`.
pub(crate) fn recover(
    dir: &Path,
    metas: &HashMap<GroupId, GroupMeta>,
) -> Result<Recovered, StorageError> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(journal::parse_segment_file_name) {
            Some(seq) if seq <= MAX_SEGMENT_SEQ => seqs.push(seq),
            Some(seq) => {
                return Err(StorageError::Corrupt(format!(
                    "journal segment number {seq} is out of range"
                )));
            }
            None => tracing::warn!(file = ?name, "ignoring unknown file in the journal directory"),
        }
    }
    seqs.sort_unstable();

    let mut replays: HashMap<GroupId, ReplayLog> = metas
        .iter()
        .map(|(group, meta)| (*group, ReplayLog::new(meta.purged)))
        .collect();
    let mut segments = BTreeMap::new();
    let mut active = None;
    for (position, &seq) in seqs.iter().enumerate() {
        let newest = position + 1 == seqs.len();
        let (info, file) = replay_segment(dir, seq, newest, metas, &mut replays)?;
        if newest {
            active = Some(ActiveSegment {
                seq,
                file,
                len: info.len,
            });
        }
        segments.insert(seq, info);
    }
    let active = match active {
        Some(active) => active,
        None => {
            // A fresh journal. Numbering continues after anything the registry mentions, so
            // that "created at" positions stay in the past even if segments were removed by hand.
            let seq = metas
                .values()
                .map(|meta| meta.created_at.seq + 1)
                .max()
                .unwrap_or(1);
            if !metas.is_empty() {
                tracing::warn!(
                    segment = seq,
                    "journal is empty although groups are registered"
                );
            }
            let active = create_segment(dir, seq)?;
            segments.insert(seq, SegmentInfo::new(active.len));
            active
        }
    };

    let mut groups = HashMap::new();
    for (group, replay) in replays {
        let index = replay
            .finish()
            .map_err(|reason| StorageError::Corrupt(format!("group {group}: {reason}")))?;
        groups.insert(group, index);
    }
    Ok(Recovered {
        groups,
        segments,
        active,
    })
}

/// Creates segment `seq` holding only its header, durably.
pub(crate) fn create_segment(dir: &Path, seq: u64) -> io::Result<ActiveSegment> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(journal::segment_path(dir, seq))?;
    file.write_all_at(&journal::segment_header(seq), 0)?;
    file.sync_data()?;
    journal::sync_dir(dir)?;
    Ok(ActiveSegment {
        seq,
        file,
        len: SEGMENT_HEADER_LEN,
    })
}

fn replay_segment(
    dir: &Path,
    seq: u64,
    newest: bool,
    metas: &HashMap<GroupId, GroupMeta>,
    replays: &mut HashMap<GroupId, ReplayLog>,
) -> Result<(SegmentInfo, File), StorageError> {
    let path = journal::segment_path(dir, seq);
    let file = OpenOptions::new().read(true).write(newest).open(&path)?;
    let file_len = file.metadata()?.len();
    match journal::check_segment_header(&file, file_len, seq)? {
        Some(true) => {}
        _ if newest => {
            // Created just before a crash, before its header was durable.
            tracing::warn!(
                segment = seq,
                "rewriting the missing header of the newest journal segment"
            );
            file.set_len(0)?;
            file.write_all_at(&journal::segment_header(seq), 0)?;
            file.sync_all()?;
            return Ok((SegmentInfo::new(SEGMENT_HEADER_LEN), file));
        }
        _ => {
            return Err(StorageError::Corrupt(format!(
                "journal segment {seq} has a bad header"
            )));
        }
    }

    let mut info = SegmentInfo::new(SEGMENT_HEADER_LEN);
    let mut scanner = SegmentScanner::new(&file, file_len, newest);
    loop {
        match scanner.next_step()? {
            ScanStep::End => break,
            ScanStep::Bad { offset, reason } => {
                if !newest {
                    return Err(StorageError::Corrupt(format!(
                        "journal segment {seq} offset {offset}: {reason}"
                    )));
                }
                tracing::warn!(segment = seq, offset, reason = %reason, "cutting a torn write off the newest journal segment");
                file.set_len(offset)?;
                file.sync_all()?;
                info.len = offset;
                break;
            }
            ScanStep::Record { offset, header } => {
                info.len = offset + header.record_len();
                let position = JournalPos { seq, offset };
                let Some(meta) = metas.get(&header.group) else {
                    continue;
                };
                if position < meta.created_at {
                    continue;
                }
                let Some(replay) = replays.get_mut(&header.group) else {
                    continue;
                };
                let corrupt = |reason: String| {
                    StorageError::Corrupt(format!(
                        "group {} at journal segment {seq} offset {offset}: {reason}",
                        header.group
                    ))
                };
                match header.body {
                    RecordBody::Entry {
                        index,
                        term,
                        kind,
                        tag,
                    } => {
                        let location = Location {
                            segment: u32::try_from(seq)
                                .map_err(|_| corrupt("segment number out of range".to_string()))?,
                            offset: u32::try_from(offset)
                                .map_err(|_| corrupt("offset out of range".to_string()))?,
                            len: u32::try_from(header.record_len())
                                .map_err(|_| corrupt("record too long".to_string()))?,
                        };
                        replay
                            .apply_entry(index, Slot::on_disk(term, tag, kind, location))
                            .map_err(corrupt)?;
                        info.pin(header.group, index);
                    }
                    RecordBody::Truncate { after } => replay.apply_truncate(after),
                }
            }
        }
    }
    Ok((info, file))
}

/// Largest gap a replay accepts below or above a group's records (a guard against building a
/// huge index from a bug; real gaps are bounded by the records compaction relocated).
const MAX_REPLAY_GAP: u64 = 1 << 28;

/// A group's log while the journal is replayed. Unlike [`LogIndex`] it may have holes: a
/// record relocated by compaction is replayed after the records that followed it.
struct ReplayLog {
    purged: Option<LogPosition>,
    first_index: u64,
    slots: VecDeque<Slot>,
    holes: u64,
}

impl ReplayLog {
    fn new(purged: Option<LogPosition>) -> Self {
        ReplayLog {
            purged,
            first_index: 0,
            slots: VecDeque::new(),
            holes: 0,
        }
    }

    fn push_holes_back(&mut self, count: u64) -> Result<(), String> {
        if count > MAX_REPLAY_GAP {
            return Err(format!("gap of {count} records in the log"));
        }
        self.slots
            .extend(std::iter::repeat_n(Slot::hole(), count as usize));
        self.holes += count;
        Ok(())
    }

    fn apply_entry(&mut self, index: u64, slot: Slot) -> Result<(), String> {
        if self.purged.is_some_and(|purged| index <= purged.index) {
            return Ok(());
        }
        if self.slots.is_empty() {
            // After a purge the log restarts right above it; a never-purged log starts anywhere.
            self.first_index = self.purged.map_or(index, |purged| purged.index + 1);
            self.holes = 0;
            self.push_holes_back(index - self.first_index)?;
            self.slots.push_back(slot);
            return Ok(());
        }
        let next_index = self.first_index + self.slots.len() as u64;
        if index >= next_index {
            self.push_holes_back(index - next_index)?;
            self.slots.push_back(slot);
            return Ok(());
        }
        if index >= self.first_index {
            let existing = &mut self.slots[(index - self.first_index) as usize];
            if existing.is_hole() {
                *existing = slot;
                self.holes -= 1;
            } else if existing.term == slot.term {
                // A relocation by compaction: the later copy is the one that survives.
                *existing = slot;
            } else {
                return Err(format!(
                    "index {index} written with term {} over term {} without a truncate",
                    slot.term, existing.term
                ));
            }
            return Ok(());
        }
        // Below the first record: a relocated record of a never-purged log.
        let gap = self.first_index - index - 1;
        if gap > MAX_REPLAY_GAP {
            return Err(format!("gap of {gap} records in the log"));
        }
        for _ in 0..gap {
            self.slots.push_front(Slot::hole());
        }
        self.holes += gap;
        self.slots.push_front(slot);
        self.first_index = index;
        Ok(())
    }

    fn apply_truncate(&mut self, after: Option<u64>) {
        let keep = match after {
            None => 0,
            Some(after) if after < self.first_index => 0,
            Some(after) => usize::try_from(after - self.first_index + 1).unwrap_or(usize::MAX),
        };
        if keep >= self.slots.len() {
            return;
        }
        let removed_holes = self
            .slots
            .iter()
            .skip(keep)
            .filter(|slot| slot.is_hole())
            .count() as u64;
        self.holes -= removed_holes;
        self.slots.truncate(keep);
    }

    fn finish(self) -> Result<LogIndex<Slot>, String> {
        if self.holes > 0 {
            let missing = self
                .slots
                .iter()
                .position(Slot::is_hole)
                .map(|position| self.first_index + position as u64);
            return Err(format!(
                "{} records missing from the journal, first at index {missing:?}",
                self.holes
            ));
        }
        Ok(LogIndex::from_parts(
            self.purged,
            self.first_index,
            self.slots,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(term: u64, segment: u32) -> Slot {
        Slot::on_disk(
            term,
            0,
            0,
            Location {
                segment,
                offset: 16,
                len: 46,
            },
        )
    }

    #[test]
    fn relocated_prefix_fills_the_gap() {
        let mut replay = ReplayLog::new(Some(LogPosition { index: 7, term: 1 }));
        replay.apply_entry(11, slot(1, 2)).unwrap();
        replay.apply_entry(12, slot(1, 2)).unwrap();
        assert_eq!(replay.holes, 3);
        for index in 8..=10 {
            replay.apply_entry(index, slot(1, 5)).unwrap();
        }
        let log = replay.finish().unwrap();
        assert_eq!(log.bounds().last, Some(LogPosition { index: 12, term: 1 }));
        assert_eq!(log.get(8).unwrap().segment, 5);
    }

    #[test]
    fn unfilled_gap_is_corruption() {
        let mut replay = ReplayLog::new(Some(LogPosition { index: 7, term: 1 }));
        replay.apply_entry(10, slot(1, 2)).unwrap();
        assert!(replay.finish().is_err());
    }

    #[test]
    fn conflicting_term_without_truncate_is_corruption() {
        let mut replay = ReplayLog::new(None);
        replay.apply_entry(1, slot(1, 1)).unwrap();
        replay.apply_entry(2, slot(1, 1)).unwrap();
        assert!(replay.apply_entry(2, slot(2, 1)).is_err());
        replay.apply_truncate(Some(1));
        replay.apply_entry(2, slot(2, 1)).unwrap();
        assert_eq!(
            replay.finish().unwrap().bounds().last,
            Some(LogPosition { index: 2, term: 2 })
        );
    }

    #[test]
    fn never_purged_log_accepts_a_relocated_prefix_below_it() {
        let mut replay = ReplayLog::new(None);
        replay.apply_entry(11, slot(1, 2)).unwrap();
        replay.apply_entry(10, slot(1, 5)).unwrap();
        let log = replay.finish().unwrap();
        assert_eq!(
            log.iter().map(|(index, _)| index).collect::<Vec<_>>(),
            vec![10, 11]
        );
    }

    #[test]
    fn truncate_drops_holes_above_it() {
        let mut replay = ReplayLog::new(Some(LogPosition { index: 0, term: 0 }));
        replay.apply_entry(5, slot(1, 1)).unwrap();
        replay.apply_truncate(Some(0));
        replay.apply_entry(1, slot(2, 1)).unwrap();
        assert_eq!(
            replay.finish().unwrap().bounds().last,
            Some(LogPosition { index: 1, term: 2 })
        );
    }
}
