//! Builders for unit tests of the node's decisions.

use std::sync::Arc;

use riffle_control::ControlState;
use riffle_control::model::ReplicaRecord;
use riffle_control::model::ShardRecord;
use riffle_control::model::ShardState;
use riffle_control::model::StreamMode;
use riffle_control::model::StreamRecord;
use riffle_control::model::StreamStatus;
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

/// A control state with one active stream per entry, holding the given shards.
pub fn state_with(streams: Vec<(&str, Vec<ShardRecord>)>) -> ControlState {
    let mut state = ControlState::default();
    for (name, shards) in streams {
        let stream = StreamRecord {
            name: name.to_string(),
            created_ms: 0,
            status: StreamStatus::Active,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            shards,
            tags: Default::default(),
            scaling_target: None,
            last_resharded_ms: 0,
            consumers: Default::default(),
        };
        state.streams.insert(name.to_string(), Arc::new(stream));
    }
    state
}
