//! On each shard leader: carry out a replica move (add the new replica as a learner, promote it
//! in place of the old one once caught up through joint consensus, record the finish; give up
//! when its node stays down), and remove learners the state no longer lists.

use std::time::Duration;

use riffle_control::ControlCommand;
use riffle_control::ControlState;
use riffle_control::model::ShardRecord;
use riffle_control::model::StreamRecord;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardReplica;
use riffle_types::KinesisError;

use crate::node::Node;
use crate::node::now_ms;

impl Node {
    /// Moves a replica: adds the new one as a learner, promotes it in place of the old one once
    /// it has caught up, then records the move. Each call takes the next step (state lives in
    /// the group's membership and the control state, so any leader resumes where another
    /// stopped). A move whose new replica's node stays down is given up.
    pub(super) async fn drive_move(
        &self,
        state: &ControlState,
        stream: &StreamRecord,
        shard: &ShardRecord,
        moving: &riffle_control::model::ReplicaMove,
        replica: &ShardReplica,
    ) -> Result<(), KinesisError> {
        const CAUGHT_UP: u64 = 64;
        const STEP_TIMEOUT: Duration = Duration::from_secs(10);
        let group = replica.group();
        let membership = group.membership();
        let (from, to) = (moving.from_replica, moving.to_replica);
        if group.replica() == from {
            // The replica leaving leads: hand leadership to another voter first.
            if let Some(next) = shard
                .voters()
                .find(|member| member.replica != from && self.alive_nodes().contains(&member.node))
            {
                self.hand_over(shard, next.node, replica).await;
            }
            return Ok(());
        }
        let step_failed = |error: String| KinesisError::internal(error);
        if membership.voters.contains(&to) && !membership.voters.contains(&from) {
            if membership.joint {
                return Ok(());
            }
            return self
                .control()
                .propose(ControlCommand::FinishReplicaMove {
                    name: stream.name.clone(),
                    created_ms: stream.created_ms,
                    shard: shard.index,
                    from_replica: from,
                    to_replica: to,
                })
                .await
                .map(|_| ());
        }
        let Some(target) = shard.replicas.iter().find(|member| member.replica == to) else {
            return Ok(());
        };
        if !membership.learners.contains(&to) {
            let node = state.nodes.get(&target.node);
            let member = ReplicaNode {
                node: target.node,
                addr: node.map(|n| n.peer_addr.clone()).unwrap_or_default(),
                az: node.map(|n| n.az.clone()).unwrap_or_default(),
            };
            tracing::info!(group = shard.group, replica = to, node = target.node, reason = %moving.reason, "adding a learner");
            return tokio::time::timeout(STEP_TIMEOUT, group.add_learner(to, member))
                .await
                .map_err(|_| step_failed("adding the learner timed out".into()))?
                .map_err(|error| step_failed(error.to_string()));
        }
        if group.lag_of(to).is_some_and(|lag| lag <= CAUGHT_UP) {
            let mut voters = membership.voters.clone();
            voters.remove(&from);
            voters.insert(to);
            tracing::info!(group = shard.group, from, to, "promoting the learner");
            tokio::time::timeout(STEP_TIMEOUT, group.change_voters(voters))
                .await
                .map_err(|_| step_failed("the membership change timed out".into()))?
                .map_err(|error| step_failed(error.to_string()))?;
            return Ok(());
        }
        // Still catching up; give up only if its node has been down past the repair grace.
        let started = Duration::from_millis(now_ms().saturating_sub(moving.started_ms));
        let grace = Duration::from_millis(self.config.scheduler.repair_grace_ms);
        if started > grace && !self.alive_nodes().contains(&target.node) {
            tracing::warn!(
                group = shard.group,
                replica = to,
                "giving up a replica move: its node is down"
            );
            tokio::time::timeout(STEP_TIMEOUT, group.remove_learners([to].into()))
                .await
                .map_err(|_| step_failed("removing the learner timed out".into()))?
                .map_err(|error| step_failed(error.to_string()))?;
            self.control()
                .propose(ControlCommand::CancelReplicaMove {
                    name: stream.name.clone(),
                    created_ms: stream.created_ms,
                    shard: shard.index,
                    to_replica: to,
                })
                .await?;
        }
        Ok(())
    }

    /// Removes learners the control state no longer lists (a move given up).
    pub(super) async fn tidy_membership(
        &self,
        shard: &ShardRecord,
        replica: &ShardReplica,
    ) -> Result<(), KinesisError> {
        let group = replica.group();
        let stray: std::collections::BTreeSet<u64> = group
            .membership()
            .learners
            .into_iter()
            .filter(|learner| {
                !shard
                    .replicas
                    .iter()
                    .any(|member| member.replica == *learner)
            })
            .collect();
        if stray.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(Duration::from_secs(10), group.remove_learners(stray))
            .await
            .map_err(|_| KinesisError::internal("removing learners timed out"))?
            .map_err(|error| KinesisError::internal(error.to_string()))
    }
}
