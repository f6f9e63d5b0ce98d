//! Serving: what this node does when it is asked, by itself (routing) or by another node (the
//! transports).
//!
//! The shard calls that land here are served by [`crate::routing::LocalShards`]; the leader's
//! side of a Follow stream is in [`follow`]. The control calls other nodes make (propose and
//! read-index on the metadata leader, ping, hibernate) and the delivery of Raft messages to local
//! groups are in [`peers`].

pub mod follow;
mod peers;

use riffle_raft::Group;
use riffle_raft::Machine;

/// The node of the replica leading a local group, as the group knows it.
pub(crate) fn leader_node<M: Machine>(group: &Group<M>) -> Option<u64> {
    let leader = group.leader()?;
    group
        .members()
        .into_iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, node)| node.node)
}
