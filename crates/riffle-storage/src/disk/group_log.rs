//! One group's in-memory state ([`GroupLog`]): its index of 32-byte [`Slot`]s (term, tag, kind
//! and journal [`Location`], or pending) and the payloads of records not yet durable.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::LogRecord;
use crate::index::IndexSlot;
use crate::index::LogIndex;

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
