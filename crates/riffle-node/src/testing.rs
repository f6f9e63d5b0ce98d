//! Builders for unit tests of the node's decisions.

use riffle_control::model::ReplicaRecord;
use riffle_control::model::ShardRecord;
use riffle_control::model::ShardState;
use riffle_types::HashKeyRange;

/// An open shard of group 42 with one voting replica per node in `nodes` (replica ids 101,
/// 102, … in that order), no recorded leader and nothing moving.
pub fn shard_on(nodes: &[u64]) -> ShardRecord {
    ShardRecord {
        index: 0,
        group: 42,
        range: HashKeyRange::split_evenly(1)[0],
        parent: None,
        adjacent_parent: None,
        created_ms: 0,
        state: ShardState::Open,
        replicas: nodes
            .iter()
            .enumerate()
            .map(|(place, node)| ReplicaRecord {
                replica: 101 + place as u64,
                node: *node,
                learner: false,
            })
            .collect(),
        leader: None,
        reason: None,
        moving: None,
        preferred: None,
    }
}
