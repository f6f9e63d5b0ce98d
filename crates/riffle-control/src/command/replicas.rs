//! Where a shard's replicas and leaders are: replica moves (start, finish, cancel) and the
//! per-group leaders the scheduler prefers and the metadata leader observes.

use std::sync::Arc;

use riffle_types::KinesisError;

use super::ControlCommand;
use super::ControlReply;
use super::incarnation_shard_mut;
use super::misrouted;
use crate::model::ControlState;
use crate::model::ReplicaMove;
use crate::model::ReplicaRecord;
use crate::model::ShardRecord;

/// Applies a replica command; [`super::apply`] routes only those here.
pub(super) fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    match command {
        ControlCommand::StartReplicaMove {
            name,
            created_ms,
            shard,
            from_replica,
            to_node,
            reason,
            now_ms,
        } => {
            if !state.nodes.contains_key(&to_node) {
                return Ok(ControlReply::Unchanged);
            }
            let to_replica = state.next_replica.max(1);
            let Some(record) = incarnation_shard_mut(state, &name, created_ms, shard) else {
                return Ok(ControlReply::Unchanged);
            };
            let moving_ok = record.moving.is_none()
                && record
                    .voters()
                    .any(|replica| replica.replica == from_replica)
                && !record
                    .replicas
                    .iter()
                    .any(|replica| replica.node == to_node);
            if !moving_ok {
                return Ok(ControlReply::Unchanged);
            }
            record.replicas.push(ReplicaRecord {
                replica: to_replica,
                node: to_node,
                learner: true,
            });
            record.moving = Some(ReplicaMove {
                from_replica,
                to_replica,
                reason,
                started_ms: now_ms,
            });
            state.next_replica = to_replica + 1;
            Ok(ControlReply::Done)
        }
        ControlCommand::FinishReplicaMove {
            name,
            created_ms,
            shard,
            from_replica,
            to_replica,
        } => {
            let Some(record) = incarnation_shard_mut(state, &name, created_ms, shard) else {
                return Ok(ControlReply::Unchanged);
            };
            let matches = record.moving.as_ref().is_some_and(|moving| {
                moving.from_replica == from_replica && moving.to_replica == to_replica
            });
            if !matches {
                return Ok(ControlReply::Unchanged);
            }
            record
                .replicas
                .retain(|replica| replica.replica != from_replica);
            for replica in &mut record.replicas {
                if replica.replica == to_replica {
                    replica.learner = false;
                }
            }
            record.moving = None;
            Ok(ControlReply::Done)
        }
        ControlCommand::CancelReplicaMove {
            name,
            created_ms,
            shard,
            to_replica,
        } => {
            let Some(record) = incarnation_shard_mut(state, &name, created_ms, shard) else {
                return Ok(ControlReply::Unchanged);
            };
            if record
                .moving
                .as_ref()
                .is_none_or(|moving| moving.to_replica != to_replica)
            {
                return Ok(ControlReply::Unchanged);
            }
            record
                .replicas
                .retain(|replica| replica.replica != to_replica);
            record.moving = None;
            Ok(ControlReply::Done)
        }
        ControlCommand::SetPreferredLeaders { leaders } => {
            Ok(set_node_by_group(state, leaders, NodeField::Preferred))
        }
        ControlCommand::ShardLeaders { leaders } => {
            Ok(set_node_by_group(state, leaders, NodeField::Leader))
        }
        other => Err(misrouted("replica", &other)),
    }
}

/// A per-shard node field set by group.
#[derive(Clone, Copy)]
enum NodeField {
    Leader,
    Preferred,
}

impl NodeField {
    fn of(self, shard: &mut ShardRecord) -> &mut Option<u64> {
        match self {
            NodeField::Leader => &mut shard.leader,
            NodeField::Preferred => &mut shard.preferred,
        }
    }

    fn get(self, shard: &ShardRecord) -> Option<u64> {
        match self {
            NodeField::Leader => shard.leader,
            NodeField::Preferred => shard.preferred,
        }
    }
}

/// Sets `field` of the shards of the given groups to nodes that host one of their voting
/// replicas; streams without a change are not copied.
fn set_node_by_group(
    state: &mut ControlState,
    changes: Vec<(u64, u64)>,
    field: NodeField,
) -> ControlReply {
    let wanted: std::collections::HashMap<u64, u64> = changes.into_iter().collect();
    let applies = |shard: &ShardRecord| {
        wanted
            .get(&shard.group)
            .filter(|node| field.get(shard) != Some(**node) && shard.has_voter_on(**node))
            .copied()
    };
    let mut changed = false;
    for stream in state.streams.values_mut() {
        if !stream.shards.iter().any(|shard| applies(shard).is_some()) {
            continue;
        }
        for shard in &mut Arc::make_mut(stream).shards {
            if let Some(node) = applies(shard) {
                *field.of(shard) = Some(node);
                changed = true;
            }
        }
    }
    if changed {
        ControlReply::Done
    } else {
        ControlReply::Unchanged
    }
}
