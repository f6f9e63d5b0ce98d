//! On each shard leader: carry out a replica move (add the new replica as a learner, promote it
//! in place of the old one once caught up through joint consensus, record the finish; give up
//! when its node stays down), and remove learners the state no longer lists.

use std::collections::BTreeSet;
use std::time::Duration;

use riffle_control::ControlCommand;
use riffle_control::ControlState;
use riffle_control::model::ShardRecord;
use riffle_control::model::StreamRecord;
use riffle_raft::Membership;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardReplica;

use super::StepError;
use crate::node::Node;
use crate::node::now_ms;

/// The new replica is caught up (may become a voter) within this many entries of the leader.
const CAUGHT_UP: u64 = 64;
/// How long one membership step may take before the next pass retries it.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A replica move as this leader sees it.
#[derive(Clone, Debug)]
pub(super) struct MoveView<'a> {
    /// This (leading) replica.
    pub leader: u64,
    /// The group's membership as this replica knows it.
    pub membership: &'a Membership,
    /// The replica leaving and the one replacing it.
    pub from: u64,
    pub to: u64,
    /// The new replica's node, per the control state (`None`: the state does not list it).
    pub to_node: Option<u64>,
    /// How far behind the new replica is (`None`: unknown here).
    pub to_lag: Option<u64>,
    /// How long the move has been running, and the repair grace.
    pub running_for: Duration,
    pub grace: Duration,
    /// Whether the new replica's node is up.
    pub to_node_alive: bool,
}

/// The next step of a replica move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum MoveStep {
    /// This replica is the one leaving: hand leadership to another voter first.
    HandOverFirst,
    /// The voters have switched (not jointly any more): record the move as finished.
    RecordFinish,
    /// Add the new replica as a learner.
    AddLearner,
    /// The learner caught up: make these the voters (joint consensus).
    Promote(BTreeSet<u64>),
    /// The learner's node has been down past the grace: remove it and cancel the move.
    GiveUp,
    /// Nothing to do now (a joint change is finishing, the learner is catching up, or the
    /// state does not list the new replica).
    Wait,
}

/// Decides a move's next step. Each pass takes one: the state lives in the group's membership
/// and the control state, so any leader resumes where another stopped.
pub(super) fn next_move_step(view: &MoveView<'_>) -> MoveStep {
    let membership = view.membership;
    if view.leader == view.from {
        return MoveStep::HandOverFirst;
    }
    if membership.voters.contains(&view.to) && !membership.voters.contains(&view.from) {
        return if membership.joint {
            MoveStep::Wait
        } else {
            MoveStep::RecordFinish
        };
    }
    if view.to_node.is_none() {
        return MoveStep::Wait;
    }
    if !membership.learners.contains(&view.to) {
        return MoveStep::AddLearner;
    }
    if view.to_lag.is_some_and(|lag| lag <= CAUGHT_UP) {
        let mut voters = membership.voters.clone();
        voters.remove(&view.from);
        voters.insert(view.to);
        return MoveStep::Promote(voters);
    }
    // Still catching up; give up only if its node has been down past the repair grace.
    if view.running_for > view.grace && !view.to_node_alive {
        return MoveStep::GiveUp;
    }
    MoveStep::Wait
}

/// Learners of the group that the control state no longer lists (a move given up).
pub(super) fn stray_learners(membership: &Membership, shard: &ShardRecord) -> BTreeSet<u64> {
    membership
        .learners
        .iter()
        .copied()
        .filter(|learner| {
            !shard
                .replicas
                .iter()
                .any(|member| member.replica == *learner)
        })
        .collect()
}

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
    ) -> Result<(), StepError> {
        let group = replica.group();
        let membership = group.membership();
        let (from, to) = (moving.from_replica, moving.to_replica);
        let target = shard.replicas.iter().find(|member| member.replica == to);
        let alive = self.alive_nodes();
        let view = MoveView {
            leader: group.replica(),
            membership: &membership,
            from,
            to,
            to_node: target.map(|target| target.node),
            to_lag: group.lag_of(to),
            running_for: Duration::from_millis(now_ms().saturating_sub(moving.started_ms)),
            grace: Duration::from_millis(self.config.scheduler.repair_grace_ms),
            to_node_alive: target.is_some_and(|target| alive.contains(&target.node)),
        };
        match next_move_step(&view) {
            MoveStep::Wait => Ok(()),
            MoveStep::HandOverFirst => {
                if let Some(next) = shard
                    .voters()
                    .find(|member| member.replica != from && alive.contains(&member.node))
                {
                    self.hand_over(shard, next.node, replica).await;
                }
                Ok(())
            }
            MoveStep::RecordFinish => self
                .control()
                .propose(ControlCommand::FinishReplicaMove {
                    name: stream.name.clone(),
                    created_ms: stream.created_ms,
                    shard: shard.index,
                    from_replica: from,
                    to_replica: to,
                })
                .await
                .map(|_| ())
                .map_err(StepError::from),
            MoveStep::AddLearner => {
                let to_node = view.to_node.unwrap_or_default();
                let node = state.nodes.get(&to_node);
                let member = ReplicaNode {
                    node: to_node,
                    addr: node.map(|n| n.peer_addr.clone()).unwrap_or_default(),
                    az: node.map(|n| n.az.clone()).unwrap_or_default(),
                };
                tracing::info!(group = shard.group, replica = to, node = to_node, reason = %moving.reason, "adding a learner");
                tokio::time::timeout(STEP_TIMEOUT, group.add_learner(to, member))
                    .await
                    .map_err(|_| StepError::TimedOut("adding the learner"))?
                    .map_err(StepError::from)
            }
            MoveStep::Promote(voters) => {
                tracing::info!(group = shard.group, from, to, "promoting the learner");
                tokio::time::timeout(STEP_TIMEOUT, group.change_voters(voters))
                    .await
                    .map_err(|_| StepError::TimedOut("the membership change"))?
                    .map_err(StepError::from)
            }
            MoveStep::GiveUp => {
                tracing::warn!(
                    group = shard.group,
                    replica = to,
                    "giving up a replica move: its node is down"
                );
                tokio::time::timeout(STEP_TIMEOUT, group.remove_learners([to].into()))
                    .await
                    .map_err(|_| StepError::TimedOut("removing the learner"))??;
                self.control()
                    .propose(ControlCommand::CancelReplicaMove {
                        name: stream.name.clone(),
                        created_ms: stream.created_ms,
                        shard: shard.index,
                        to_replica: to,
                    })
                    .await?;
                Ok(())
            }
        }
    }

    /// Removes learners the control state no longer lists (a move given up).
    pub(super) async fn tidy_membership(
        &self,
        shard: &ShardRecord,
        replica: &ShardReplica,
    ) -> Result<(), StepError> {
        let group = replica.group();
        let stray = stray_learners(&group.membership(), shard);
        if stray.is_empty() {
            return Ok(());
        }
        tokio::time::timeout(STEP_TIMEOUT, group.remove_learners(stray))
            .await
            .map_err(|_| StepError::TimedOut("removing learners"))??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shard_on;

    fn membership(voters: &[u64], learners: &[u64], joint: bool) -> Membership {
        Membership {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            joint,
        }
    }

    /// Replica 101 (this leader), 102 and 103 vote; 103 is being replaced by 104 on node 4.
    fn view(membership: &Membership) -> MoveView<'_> {
        MoveView {
            leader: 101,
            membership,
            from: 103,
            to: 104,
            to_node: Some(4),
            to_lag: None,
            running_for: Duration::from_secs(1),
            grace: Duration::from_secs(60),
            to_node_alive: true,
        }
    }

    #[test]
    fn a_move_adds_the_learner_then_promotes_it_once_caught_up_then_records_the_finish() {
        let before = membership(&[101, 102, 103], &[], false);
        assert_eq!(next_move_step(&view(&before)), MoveStep::AddLearner);

        let learning = membership(&[101, 102, 103], &[104], false);
        assert_eq!(
            next_move_step(&view(&learning)),
            MoveStep::Wait,
            "progress unknown: wait"
        );
        let behind = MoveView {
            to_lag: Some(65),
            ..view(&learning)
        };
        assert_eq!(next_move_step(&behind), MoveStep::Wait);
        let caught_up = MoveView {
            to_lag: Some(64),
            ..view(&learning)
        };
        assert_eq!(
            next_move_step(&caught_up),
            MoveStep::Promote(BTreeSet::from([101, 102, 104]))
        );

        let joint = membership(&[101, 102, 104], &[], true);
        assert_eq!(
            next_move_step(&view(&joint)),
            MoveStep::Wait,
            "the joint change is finishing"
        );
        let switched = membership(&[101, 102, 104], &[], false);
        assert_eq!(next_move_step(&view(&switched)), MoveStep::RecordFinish);
    }

    #[test]
    fn the_leaving_replica_hands_leadership_over_first() {
        let before = membership(&[101, 102, 103], &[], false);
        let leaving = MoveView {
            leader: 103,
            ..view(&before)
        };
        assert_eq!(next_move_step(&leaving), MoveStep::HandOverFirst);
    }

    #[test]
    fn a_move_is_given_up_only_when_its_node_is_down_past_the_grace() {
        let learning = membership(&[101, 102, 103], &[104], false);
        let down_early = MoveView {
            to_node_alive: false,
            ..view(&learning)
        };
        assert_eq!(next_move_step(&down_early), MoveStep::Wait);
        let down_late = MoveView {
            to_node_alive: false,
            running_for: Duration::from_secs(61),
            ..view(&learning)
        };
        assert_eq!(next_move_step(&down_late), MoveStep::GiveUp);
        let alive_late = MoveView {
            running_for: Duration::from_secs(61),
            ..view(&learning)
        };
        assert_eq!(
            next_move_step(&alive_late),
            MoveStep::Wait,
            "a slow learner on a live node keeps going"
        );
        let before = membership(&[101, 102, 103], &[], false);
        let unlisted = MoveView {
            to_node: None,
            ..view(&before)
        };
        assert_eq!(next_move_step(&unlisted), MoveStep::Wait);
    }

    #[test]
    fn learners_the_state_does_not_list_are_stray() {
        let mut shard = shard_on(&[1, 2, 3]);
        shard.replicas.push(riffle_control::model::ReplicaRecord {
            replica: 104,
            node: 4,
            learner: true,
        });
        let group = membership(&[101, 102, 103], &[104, 105], false);
        assert_eq!(stray_learners(&group, &shard), BTreeSet::from([105]));
    }
}
