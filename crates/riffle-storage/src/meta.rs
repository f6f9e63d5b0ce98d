//! What [`crate::DiskStorage`] keeps in sled besides key spaces: the `__groups` registry, one
//! entry per registered group, keyed by the big-endian group id.

use std::io;

use crate::GroupId;
use crate::LogPosition;
use crate::StorageError;

/// The sled tree holding the group registry.
pub(crate) const GROUPS_TREE: &str = "__groups";

/// A position in the journal: segment sequence number and byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct JournalPos {
    pub seq: u64,
    pub offset: u64,
}

/// A registered group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    /// Where the journal ended when the group was created. Records of the group before this
    /// position belong to an earlier, dropped group with the same id and are ignored.
    pub created_at: JournalPos,
    /// The last purged position, as last written (durable after the next sled flush).
    pub purged: Option<LogPosition>,
}

const META_VERSION: u8 = 1;
const META_LEN: usize = 1 + 8 + 8 + 1 + 8 + 8;

/// The registry key of a group (big-endian, so sled iterates groups in order).
pub(crate) fn group_key(group: GroupId) -> [u8; 8] {
    group.to_be_bytes()
}

impl GroupMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(META_LEN);
        bytes.push(META_VERSION);
        bytes.extend_from_slice(&self.created_at.seq.to_le_bytes());
        bytes.extend_from_slice(&self.created_at.offset.to_le_bytes());
        let purged = self.purged.unwrap_or(LogPosition { index: 0, term: 0 });
        bytes.push(u8::from(self.purged.is_some()));
        bytes.extend_from_slice(&purged.index.to_le_bytes());
        bytes.extend_from_slice(&purged.term.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Result<(GroupId, GroupMeta), StorageError> {
        let corrupt =
            |what: &str| StorageError::Corrupt(format!("group registry entry {key:?}: {what}"));
        let group_bytes: [u8; 8] = key.try_into().map_err(|_| corrupt("key is not 8 bytes"))?;
        if bytes.len() != META_LEN {
            return Err(corrupt("wrong length"));
        }
        if bytes[0] != META_VERSION {
            return Err(corrupt("unknown version"));
        }
        let u64_at = |at: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(raw)
        };
        let purged = match bytes[17] {
            0 => None,
            1 => Some(LogPosition {
                index: u64_at(18),
                term: u64_at(26),
            }),
            _ => return Err(corrupt("bad purged flag")),
        };
        let meta = GroupMeta {
            created_at: JournalPos {
                seq: u64_at(1),
                offset: u64_at(9),
            },
            purged,
        };
        Ok((GroupId::from_be_bytes(group_bytes), meta))
    }
}

/// Maps a sled error to a storage error.
pub(crate) fn sled_error(error: sled::Error) -> StorageError {
    match error {
        sled::Error::Io(io_error) => StorageError::Io(io_error),
        sled::Error::Corruption { .. } => StorageError::Corrupt(format!("sled: {error}")),
        other => StorageError::Io(io::Error::other(format!("sled: {other}"))),
    }
}

/// Maps a sled error to an I/O error (for `Durable` callbacks).
pub(crate) fn sled_io_error(error: sled::Error) -> io::Error {
    sled_error(error).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        for purged in [None, Some(LogPosition { index: 9, term: 3 })] {
            let meta = GroupMeta {
                created_at: JournalPos {
                    seq: 4,
                    offset: 1234,
                },
                purged,
            };
            let (group, decoded) = GroupMeta::decode(&group_key(77), &meta.encode()).unwrap();
            assert_eq!(group, 77);
            assert_eq!(decoded, meta);
        }
    }

    #[test]
    fn damaged_meta_is_corrupt() {
        let meta = GroupMeta {
            created_at: JournalPos { seq: 1, offset: 16 },
            purged: None,
        };
        let mut bytes = meta.encode();
        bytes[17] = 7;
        assert!(matches!(
            GroupMeta::decode(&group_key(1), &bytes),
            Err(StorageError::Corrupt(_))
        ));
        assert!(matches!(
            GroupMeta::decode(&[1, 2], &meta.encode()),
            Err(StorageError::Corrupt(_))
        ));
    }
}
