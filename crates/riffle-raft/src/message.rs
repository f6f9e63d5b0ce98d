//! The Raft messages one node sends another, as plain Rust types: what a [`crate::RaftClient`]
//! carries and what a [`crate::Group`] serves. openraft's own types stay inside this crate, and
//! protobuf stays in the node's gRPC transport, which converts these at its edge (the in-process
//! test network passes them as they are).
//!
//! Entries travel exactly as they are stored (kind, tag, payload), so a follower appends the
//! bytes the leader appended; the payload is a [`Bytes`] moved, never copied.

use std::fmt;

use bytes::Bytes;
use riffle_storage::GroupId;

use crate::types::ReplicaId;

/// A replica's vote: the term and the candidate it voted for; `committed` once that candidate
/// won (it is then the leader of the term).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vote {
    pub term: u64,
    pub voted_for: ReplicaId,
    pub committed: bool,
}

/// A log position: the term of the leader that wrote the entry and its index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}

/// A log entry as stored: `kind` and `tag` are the storage record's (the proposer's tag for a
/// normal entry), `payload` its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub log_id: LogId,
    pub kind: u8,
    pub tag: u64,
    pub payload: Bytes,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("log_id", &self.log_id)
            .field("kind", &self.kind)
            .field("tag", &self.tag)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Replicates entries (or, with none, a heartbeat) to replica `target` of `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntriesRequest {
    pub group: GroupId,
    pub target: ReplicaId,
    pub vote: Vote,
    pub prev_log_id: Option<LogId>,
    pub entries: Vec<Entry>,
    pub leader_commit: Option<LogId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendEntriesResponse {
    Success,
    /// Appended up to `matching` (the rest did not fit).
    PartialSuccess(Option<LogId>),
    /// The previous entry does not match: the leader backs up.
    Conflict,
    /// The target has seen a newer vote: the sender is no longer leader.
    HigherVote(Vote),
    /// The target does not host the group (yet), or could not take the message: the leader
    /// treats it as unreachable and retries later.
    Unavailable(String),
}

/// Asks replica `target` of `group` for its vote (or, `pre_vote`, whether it would grant it).
/// `leadership_transfer` makes the voter grant it despite its leader lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    pub group: GroupId,
    pub target: ReplicaId,
    pub vote: Vote,
    pub last_log_id: Option<LogId>,
    pub pre_vote: bool,
    pub leadership_transfer: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteResponse {
    /// The voter's vote after the request, whether it was granted, and the voter's last log id.
    Answered {
        vote: Vote,
        granted: bool,
        last_log_id: Option<LogId>,
    },
    /// As for [`AppendEntriesResponse::Unavailable`].
    Unavailable(String),
}

/// The leader tells replica `target` of `group` (replica `to`) to take over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferLeaderRequest {
    pub group: GroupId,
    pub target: ReplicaId,
    pub from_leader: Vote,
    pub to: ReplicaId,
    pub last_log_id: Option<LogId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferLeaderResponse {
    Accepted,
    /// The target refused (for example, its vote changed meanwhile).
    Rejected(String),
    /// As for [`AppendEntriesResponse::Unavailable`].
    Unavailable(String),
}

/// A whole snapshot for replica `target` of `group`.
#[derive(Clone, PartialEq, Eq)]
pub struct InstallSnapshotRequest {
    pub group: GroupId,
    pub target: ReplicaId,
    pub vote: Vote,
    pub last_log_id: Option<LogId>,
    pub last_membership_log_id: Option<LogId>,
    /// The membership as of the snapshot, encoded as in the log.
    pub last_membership: Bytes,
    pub data: Vec<u8>,
}

impl fmt::Debug for InstallSnapshotRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallSnapshotRequest")
            .field("group", &self.group)
            .field("target", &self.target)
            .field("vote", &self.vote)
            .field("last_log_id", &self.last_log_id)
            .field("data_len", &self.data.len())
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotResponse {
    /// Installed; the target's vote.
    Installed { vote: Vote },
    /// As for [`AppendEntriesResponse::Unavailable`].
    Unavailable(String),
}
