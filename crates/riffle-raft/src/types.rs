//! The openraft type configuration shared by every group on a node, and the application data
//! that flows through it.

use std::fmt;

use bytes::Bytes;

/// A replica's Raft member id. Replica ids are allocated by the control plane and never reused,
/// so a removed replica can never be mistaken for a new one.
pub type ReplicaId = u64;

/// Where a replica lives. Carried in Raft membership so that every member knows how to reach
/// the others; the transport resolves `node` to the node's current address.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaNode {
    /// The physical node hosting the replica.
    pub node: u64,
    /// The node's peer address when the membership was written (informational).
    pub addr: String,
    /// The node's availability zone.
    pub az: String,
}

/// A command proposed to a group: an application-defined kind, a searchable tag (the shard
/// layer uses the arrival time in milliseconds) and opaque bytes. Encoded once by the proposer
/// and stored, replicated and read back without re-encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Command {
    pub kind: u8,
    pub tag: u64,
    pub body: Bytes,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("kind", &self.kind)
            .field("tag", &self.tag)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command(kind={}, {} bytes)", self.kind, self.body.len())
    }
}

/// What applying a command produced. Deterministic: every replica computes the same reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Applied; nothing to report beyond the entry's log index.
    Applied,
    /// Applied, with a machine-defined answer.
    Data(Bytes),
    /// The machine refused the command (for example a write to a sealed shard); nothing changed.
    Rejected { reason: String },
}

openraft::declare_raft_types!(
    /// The type configuration of every Raft group in Riffle.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = ReplicaId,
        Node = ReplicaNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, ReplicaId>,
);

pub type LogId = openraft::LogId<openraft::vote::leader_id_std::CommittedLeaderId<u64>>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type Vote = <TypeConfig as openraft::RaftTypeConfig>::Vote;
pub type Membership = openraft::Membership<ReplicaId, ReplicaNode>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Vec<u8>>;
