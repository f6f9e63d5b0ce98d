//! The cluster and its nodes: the cluster's identity (once), node registrations, draining.

use riffle_types::KinesisError;

use super::ControlCommand;
use super::ControlReply;
use super::misrouted;
use crate::model::ClusterInfo;
use crate::model::ControlState;

/// Applies a cluster command; [`super::apply`] routes only those here.
pub(super) fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    match command {
        ControlCommand::InitCluster {
            cluster_id,
            token_key_hex,
            account,
            region,
            now_ms,
        } => {
            if state.cluster.is_some() {
                return Ok(ControlReply::Unchanged);
            }
            state.cluster = Some(ClusterInfo {
                cluster_id,
                token_key_hex,
                account,
                region,
                created_ms: now_ms,
            });
            state.next_group = state.next_group.max(1);
            state.next_replica = state.next_replica.max(1);
            Ok(ControlReply::Done)
        }
        ControlCommand::RegisterNode { mut node } => {
            // Draining is decided by operators, not by a node re-registering.
            node.draining = state
                .nodes
                .get(&node.id)
                .is_some_and(|known| known.draining);
            if state.nodes.get(&node.id) == Some(&node) {
                return Ok(ControlReply::Unchanged);
            }
            state.nodes.insert(node.id, node);
            Ok(ControlReply::Done)
        }
        ControlCommand::SetDraining { node, draining } => {
            let Some(record) = state.nodes.get_mut(&node) else {
                return Err(KinesisError::not_found(format!(
                    "Node {node} is not part of the cluster."
                )));
            };
            if record.draining == draining {
                return Ok(ControlReply::Unchanged);
            }
            record.draining = draining;
            Ok(ControlReply::Done)
        }
        other => Err(misrouted("cluster", &other)),
    }
}
