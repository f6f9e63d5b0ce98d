//! How Raft entries, votes and log ids are laid out in storage. Normal entries keep the
//! proposer's bytes untouched (the payload is the command body); only the small, rare pieces
//! (membership, vote) go through serde.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io;

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use riffle_storage::LogPosition;
use riffle_storage::LogRecord;

use crate::types::Command;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::Membership;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;
use crate::types::StoredMembership;
use crate::types::Vote;

/// Storage `kind` of a blank entry (written by every new leader).
pub const KIND_BLANK: u8 = 0;
/// Storage `kind` of a membership entry.
pub const KIND_MEMBERSHIP: u8 = 1;
/// Normal entries store `KIND_COMMAND_BASE + command.kind`.
pub const KIND_COMMAND_BASE: u8 = 16;

pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new_term_index(term, index)
}

pub fn log_id_position(log_id: &LogId) -> LogPosition {
    LogPosition {
        index: log_id.index,
        term: log_id.leader_id.term,
    }
}

pub fn position_log_id(position: LogPosition) -> LogId {
    log_id(position.term, position.index)
}

/// The storage record of an entry. `previous_tag` is the tag of the entry before it, so that
/// tags stay non-decreasing along the log whatever the proposers' clocks did.
pub fn entry_to_record(entry: &Entry, previous_tag: u64) -> io::Result<LogRecord> {
    let index = entry.log_id.index;
    let term = entry.log_id.leader_id.term;
    let record = match &entry.payload {
        EntryPayload::Blank => LogRecord {
            index,
            term,
            kind: KIND_BLANK,
            tag: previous_tag,
            payload: Bytes::new(),
        },
        EntryPayload::Normal(command) => LogRecord {
            index,
            term,
            kind: KIND_COMMAND_BASE.saturating_add(command.kind),
            tag: previous_tag.max(command.tag),
            payload: command.body.clone(),
        },
        EntryPayload::Membership(membership) => LogRecord {
            index,
            term,
            kind: KIND_MEMBERSHIP,
            tag: previous_tag,
            payload: Bytes::from(encode_membership(membership)?),
        },
    };
    Ok(record)
}

/// The entry a storage record holds.
pub fn record_to_entry(record: &LogRecord) -> io::Result<Entry> {
    let log_id = log_id(record.term, record.index);
    let payload = match record.kind {
        KIND_BLANK => EntryPayload::Blank,
        KIND_MEMBERSHIP => EntryPayload::Membership(decode_membership(&record.payload)?),
        kind if kind >= KIND_COMMAND_BASE => EntryPayload::Normal(Command {
            kind: kind - KIND_COMMAND_BASE,
            tag: record.tag,
            body: record.payload.clone(),
        }),
        other => {
            return Err(invalid_data(format!(
                "unknown log entry kind {other} at index {}",
                record.index
            )));
        }
    };
    Ok(Entry::new(log_id, payload))
}

/// The command of a normal entry's record; `None` for blank and membership entries.
pub fn record_command(record: &LogRecord) -> Option<Command> {
    (record.kind >= KIND_COMMAND_BASE).then(|| Command {
        kind: record.kind - KIND_COMMAND_BASE,
        tag: record.tag,
        body: record.payload.clone(),
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct MembershipRepr {
    configs: Vec<BTreeSet<ReplicaId>>,
    nodes: BTreeMap<ReplicaId, ReplicaNode>,
}

pub fn encode_membership(membership: &Membership) -> io::Result<Vec<u8>> {
    let repr = MembershipRepr {
        configs: membership.get_joint_config().clone(),
        nodes: membership
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect(),
    };
    serde_json::to_vec(&repr).map_err(io::Error::other)
}

pub fn decode_membership(bytes: &[u8]) -> io::Result<Membership> {
    let repr: MembershipRepr = serde_json::from_slice(bytes).map_err(invalid_data)?;
    Membership::new(repr.configs, repr.nodes).map_err(invalid_data)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct VoteRepr {
    term: u64,
    voted_for: ReplicaId,
    committed: bool,
}

pub fn encode_vote(vote: &Vote) -> io::Result<Vec<u8>> {
    let leader_id = vote.leader_id();
    let repr = VoteRepr {
        term: leader_id.term,
        voted_for: leader_id.voted_for,
        committed: vote.is_committed(),
    };
    serde_json::to_vec(&repr).map_err(io::Error::other)
}

pub fn decode_vote(bytes: &[u8]) -> io::Result<Vote> {
    let repr: VoteRepr = serde_json::from_slice(bytes).map_err(invalid_data)?;
    let vote = if repr.committed {
        Vote::new_committed(repr.term, repr.voted_for)
    } else {
        Vote::new(repr.term, repr.voted_for)
    };
    Ok(vote)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LogIdRepr {
    term: u64,
    index: u64,
}

pub fn encode_log_id(log_id: &LogId) -> io::Result<Vec<u8>> {
    serde_json::to_vec(&LogIdRepr {
        term: log_id.leader_id.term,
        index: log_id.index,
    })
    .map_err(io::Error::other)
}

pub fn decode_log_id(bytes: &[u8]) -> io::Result<LogId> {
    let repr: LogIdRepr = serde_json::from_slice(bytes).map_err(invalid_data)?;
    Ok(log_id(repr.term, repr.index))
}

/// Applied position, membership and machine state, as persisted by a state machine.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AppliedRepr {
    pub applied: Option<(u64, u64)>,
    pub membership_log_id: Option<(u64, u64)>,
    pub membership: Vec<u8>,
    pub state: Vec<u8>,
}

impl AppliedRepr {
    pub fn new(
        applied: Option<&LogId>,
        membership: &StoredMembership,
        state: Vec<u8>,
    ) -> io::Result<Self> {
        Ok(AppliedRepr {
            applied: applied.map(|id| (id.leader_id.term, id.index)),
            membership_log_id: membership
                .log_id()
                .as_ref()
                .map(|id| (id.leader_id.term, id.index)),
            membership: encode_membership(membership.membership())?,
            state,
        })
    }

    pub fn applied(&self) -> Option<LogId> {
        self.applied.map(|(term, index)| log_id(term, index))
    }

    pub fn stored_membership(&self) -> io::Result<StoredMembership> {
        let membership = decode_membership(&self.membership)?;
        let log_id = self
            .membership_log_id
            .map(|(term, index)| log_id(term, index));
        Ok(StoredMembership::new(log_id, membership))
    }

    pub fn encode(&self) -> io::Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(io::Error::other)
    }

    pub fn decode(bytes: &[u8]) -> io::Result<Self> {
        serde_json::from_slice(bytes).map_err(invalid_data)
    }
}

pub fn invalid_data(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> ReplicaNode {
        ReplicaNode {
            node: id,
            addr: format!("10.0.0.{id}:7000"),
            az: format!("az-{id}"),
        }
    }

    #[test]
    fn normal_entries_keep_their_bytes_and_tags_never_decrease() {
        let command = Command {
            kind: 3,
            tag: 500,
            body: Bytes::from_static(b"records"),
        };
        let entry = Entry::new(log_id(2, 7), EntryPayload::Normal(command.clone()));
        let record = entry_to_record(&entry, 900).unwrap();
        assert_eq!(record.kind, KIND_COMMAND_BASE + 3);
        assert_eq!(
            record.tag, 900,
            "a tag below the previous one is raised to it"
        );
        assert_eq!(record.payload, command.body);
        let back = record_to_entry(&record).unwrap();
        assert_eq!(back.log_id, log_id(2, 7));
        match back.payload {
            EntryPayload::Normal(decoded) => assert_eq!(decoded.body, command.body),
            other => panic!("expected a normal entry, got {other:?}"),
        }
        assert_eq!(record_command(&record).map(|c| c.kind), Some(3));
    }

    #[test]
    fn membership_and_blank_entries_round_trip() {
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([(1, node(1)), (2, node(2)), (3, node(3))]),
        )
        .unwrap();
        let entry = Entry::new(log_id(1, 1), EntryPayload::Membership(membership.clone()));
        let record = entry_to_record(&entry, 10).unwrap();
        assert_eq!(record.tag, 10);
        assert!(record_command(&record).is_none());
        match record_to_entry(&record).unwrap().payload {
            EntryPayload::Membership(decoded) => assert_eq!(decoded, membership),
            other => panic!("expected membership, got {other:?}"),
        }

        let blank = entry_to_record(&Entry::new(log_id(4, 9), EntryPayload::Blank), 77).unwrap();
        assert_eq!((blank.kind, blank.tag), (KIND_BLANK, 77));
        assert!(matches!(
            record_to_entry(&blank).unwrap().payload,
            EntryPayload::Blank
        ));
    }

    #[test]
    fn votes_keep_their_committed_flag() {
        for vote in [Vote::new(5, 2), Vote::new_committed(6, 3)] {
            let decoded = decode_vote(&encode_vote(&vote).unwrap()).unwrap();
            assert_eq!(decoded, vote);
        }
    }

    #[test]
    fn unknown_kinds_are_rejected() {
        let record = LogRecord {
            index: 1,
            term: 1,
            kind: 9,
            tag: 0,
            payload: Bytes::new(),
        };
        assert!(record_to_entry(&record).is_err());
    }
}
