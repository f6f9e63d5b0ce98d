//! The in-memory shape of one group's log, shared by both implementations: a purged position
//! and a contiguous run of slots. [`crate::MemStorage`] stores whole records in the slots,
//! [`crate::DiskStorage`] stores where each record lives in the journal.
//!
//! All log semantics of the [`crate::Storage`] trait that do not touch bytes (contiguity,
//! truncation, purge, bounds, tag search) live here, once.

use std::collections::VecDeque;

use crate::GroupId;
use crate::LogBounds;
use crate::LogPosition;
use crate::LogRecord;
use crate::StorageError;

/// What the index needs to know about a slot.
pub(crate) trait IndexSlot {
    fn term(&self) -> u64;
    fn tag(&self) -> u64;
}

impl IndexSlot for LogRecord {
    fn term(&self) -> u64 {
        self.term
    }

    fn tag(&self) -> u64 {
        self.tag
    }
}

/// One group's log: `slots[k]` holds index `first_index + k`; every index is above `purged`.
#[derive(Debug)]
pub(crate) struct LogIndex<S> {
    purged: Option<LogPosition>,
    /// Index of `slots[0]`; meaningless while `slots` is empty.
    first_index: u64,
    slots: VecDeque<S>,
}

impl<S: IndexSlot> LogIndex<S> {
    /// An empty log, purged up to `purged`.
    pub(crate) fn new(purged: Option<LogPosition>) -> Self {
        LogIndex {
            purged,
            first_index: 0,
            slots: VecDeque::new(),
        }
    }

    /// A log built by recovery. The caller guarantees `slots` start at `first_index`, above
    /// `purged`.
    pub(crate) fn from_parts(
        purged: Option<LogPosition>,
        first_index: u64,
        slots: VecDeque<S>,
    ) -> Self {
        debug_assert!(
            slots.is_empty() || purged.is_none_or(|purged| first_index == purged.index + 1)
        );
        LogIndex {
            purged,
            first_index,
            slots,
        }
    }

    /// Index of the last present slot.
    pub(crate) fn last_index(&self) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        Some(self.first_index + self.slots.len() as u64 - 1)
    }

    /// The index the next append must start at; `None` when any index is accepted (empty log
    /// that was never purged).
    pub(crate) fn expected_next(&self) -> Option<u64> {
        match self.last_index() {
            Some(last) => Some(last + 1),
            None => self.purged.map(|purged| purged.index + 1),
        }
    }

    /// Checks that `records` may be appended: contiguous among themselves and with the log.
    pub(crate) fn check_append(
        &self,
        group: GroupId,
        records: &[LogRecord],
    ) -> Result<(), StorageError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        if let Some(expected) = self.expected_next()
            && first.index != expected
        {
            return Err(StorageError::NotContiguous {
                group,
                expected,
                got: first.index,
            });
        }
        let mut expected = first.index;
        for record in records {
            if record.index != expected {
                return Err(StorageError::NotContiguous {
                    group,
                    expected,
                    got: record.index,
                });
            }
            // An index of u64::MAX cannot be followed; only a further record would overflow.
            expected = expected.wrapping_add(1);
        }
        if records.len() > 1 && first.index.checked_add(records.len() as u64 - 1).is_none() {
            return Err(StorageError::NotContiguous {
                group,
                expected: first.index,
                got: u64::MAX,
            });
        }
        Ok(())
    }

    /// Pushes the slot of `index`, which [`Self::check_append`] accepted.
    pub(crate) fn push(&mut self, index: u64, slot: S) {
        if self.slots.is_empty() {
            self.first_index = index;
        }
        debug_assert_eq!(self.first_index + self.slots.len() as u64, index);
        self.slots.push_back(slot);
    }

    /// Removes every slot above `after` (all when `None`). Returns how many were removed.
    pub(crate) fn truncate_after(&mut self, after: Option<u64>) -> usize {
        let keep = match after {
            None => 0,
            Some(after) if after < self.first_index => 0,
            Some(after) => usize::try_from(after - self.first_index + 1).unwrap_or(usize::MAX),
        };
        let removed = self.slots.len().saturating_sub(keep);
        self.slots.truncate(keep);
        removed
    }

    /// Removes every slot up to `upto.index` and remembers `upto` as purged. Returns false (and
    /// changes nothing) when the log is already purged that far.
    pub(crate) fn purge_upto(&mut self, upto: LogPosition) -> bool {
        if self.purged.is_some_and(|purged| purged.index >= upto.index) {
            return false;
        }
        self.purged = Some(upto);
        if self.slots.is_empty() {
            return true;
        }
        let drop_count = if upto.index < self.first_index {
            0
        } else {
            usize::try_from(upto.index - self.first_index + 1)
                .unwrap_or(usize::MAX)
                .min(self.slots.len())
        };
        self.slots.drain(..drop_count);
        self.first_index = upto.index + 1;
        true
    }

    pub(crate) fn bounds(&self) -> LogBounds {
        let last = match self.slots.back() {
            Some(slot) => Some(LogPosition {
                index: self.first_index + self.slots.len() as u64 - 1,
                term: slot.term(),
            }),
            None => self.purged,
        };
        LogBounds {
            purged: self.purged,
            last,
        }
    }

    fn position_of(&self, index: u64) -> Option<usize> {
        if index < self.first_index {
            return None;
        }
        let position = usize::try_from(index - self.first_index).ok()?;
        (position < self.slots.len()).then_some(position)
    }

    pub(crate) fn get(&self, index: u64) -> Option<&S> {
        self.position_of(index)
            .map(|position| &self.slots[position])
    }

    pub(crate) fn get_mut(&mut self, index: u64) -> Option<&mut S> {
        self.position_of(index)
            .map(|position| &mut self.slots[position])
    }

    /// Present slots with `from <= index < until`, in order.
    pub(crate) fn range(&self, from: u64, until: u64) -> impl Iterator<Item = (u64, &S)> + '_ {
        let start = from.max(self.first_index);
        let end = until.min(self.first_index.saturating_add(self.slots.len() as u64));
        let (skip, take) = if start >= end || self.slots.is_empty() {
            (0, 0)
        } else {
            (
                usize::try_from(start - self.first_index).unwrap_or(usize::MAX),
                usize::try_from(end - start).unwrap_or(usize::MAX),
            )
        };
        let first_index = self.first_index;
        self.slots
            .iter()
            .enumerate()
            .skip(skip)
            .take(take)
            .map(move |(position, slot)| (first_index + position as u64, slot))
    }

    /// All present slots, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &S)> + '_ {
        let first_index = self.first_index;
        self.slots
            .iter()
            .enumerate()
            .map(move |(position, slot)| (first_index + position as u64, slot))
    }

    pub(crate) fn first_index_with_tag_at_least(&self, tag: u64) -> Option<u64> {
        let position = self.slots.partition_point(|slot| slot.tag() < tag);
        (position < self.slots.len()).then(|| self.first_index + position as u64)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(index: u64, term: u64, tag: u64) -> LogRecord {
        LogRecord {
            index,
            term,
            kind: 0,
            tag,
            payload: Bytes::new(),
        }
    }

    fn filled(indexes: std::ops::RangeInclusive<u64>) -> LogIndex<LogRecord> {
        let mut log = LogIndex::new(None);
        for index in indexes {
            log.push(index, record(index, 1, index * 10));
        }
        log
    }

    #[test]
    fn purge_past_the_end_empties_and_sets_next() {
        let mut log = filled(3..=5);
        assert!(log.purge_upto(LogPosition { index: 9, term: 2 }));
        assert_eq!(
            log.bounds(),
            LogBounds {
                purged: Some(LogPosition { index: 9, term: 2 }),
                last: Some(LogPosition { index: 9, term: 2 })
            }
        );
        assert_eq!(log.expected_next(), Some(10));
        assert!(!log.purge_upto(LogPosition { index: 4, term: 1 }));
    }

    #[test]
    fn truncate_below_first_clears() {
        let mut log = filled(3..=5);
        assert_eq!(log.truncate_after(Some(1)), 3);
        assert_eq!(log.bounds(), LogBounds::default());
        assert_eq!(log.expected_next(), None);
    }

    #[test]
    fn range_clamps_to_present_slots() {
        let log = filled(3..=5);
        let indexes: Vec<u64> = log.range(0, u64::MAX).map(|(index, _)| index).collect();
        assert_eq!(indexes, vec![3, 4, 5]);
        assert_eq!(log.range(4, 5).count(), 1);
        assert_eq!(log.range(6, 9).count(), 0);
        assert_eq!(log.range(5, 4).count(), 0);
    }

    #[test]
    fn tag_search_is_a_lower_bound() {
        let log = filled(3..=5);
        assert_eq!(log.first_index_with_tag_at_least(0), Some(3));
        assert_eq!(log.first_index_with_tag_at_least(31), Some(4));
        assert_eq!(log.first_index_with_tag_at_least(40), Some(4));
        assert_eq!(log.first_index_with_tag_at_least(51), None);
    }

    #[test]
    fn overflowing_batches_are_refused() {
        let log: LogIndex<LogRecord> = LogIndex::new(None);
        let records = vec![record(u64::MAX, 1, 0), record(0, 1, 0)];
        assert!(log.check_append(1, &records).is_err());
    }
}
