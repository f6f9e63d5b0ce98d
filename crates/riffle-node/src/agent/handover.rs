//! On each shard leader: hand leadership to the node the scheduler prefers, once that node
//! answers and its replica is a caught-up voter; fall back to another caught-up voter when a
//! transfer does not complete.

use std::collections::HashSet;
use std::time::Duration;
use std::time::Instant;

use riffle_control::ControlState;
use riffle_control::model::ShardRecord;
use riffle_shard::shard::ShardReplica;

use crate::node::Node;

impl Node {
    /// For every shard this node leads: carry out the scheduler's decisions that need the
    /// leader (replica moves through membership changes, handing leadership to the preferred
    /// node).
    pub(super) async fn drive_led_shards(&self, state: &ControlState) {
        // Visiting every shard's replica each second is most of an idle node's work with
        // thousands of shards. A sleeping group needs a visit only for a move, or to hand its
        // leadership to another preferred node: only awake groups can have a membership to
        // tidy (membership changes need a leader at work).
        let awake: HashSet<u64> = self.awake.snapshot().into_iter().collect();
        let led: HashSet<u64> = self
            .leading_groups
            .lock()
            .map(|groups| groups.keys().copied().collect())
            .unwrap_or_default();
        let me = Some(self.config.node_id);
        for stream in state.streams.values() {
            for shard in &stream.shards {
                let visit = shard.moving.is_some()
                    || awake.contains(&shard.group)
                    || (led.contains(&shard.group) && shard.preferred_node() != me);
                if !visit {
                    continue;
                }
                let Some(replica) = self.local_shard(shard.group) else {
                    continue;
                };
                if !replica.group().is_leader() {
                    continue;
                }
                let result = match &shard.moving {
                    Some(moving) => {
                        self.drive_move(state, stream, shard, moving, &replica)
                            .await
                    }
                    None => self.tidy_membership(shard, &replica).await,
                };
                if let Err(error) = result {
                    tracing::debug!(stream = %stream.name, shard = %shard.id(), %error, "membership change will be retried");
                    continue;
                }
                if shard.moving.is_none()
                    && let Some(preferred) = shard.preferred_node()
                    && preferred != self.config.node_id
                {
                    self.hand_over(shard, preferred, &replica).await;
                }
            }
        }
    }

    /// Asks a group this node leads to make the replica on `node` its leader, when that node
    /// is up and its replica caught up; at most every few seconds per group.
    pub(super) async fn hand_over(&self, shard: &ShardRecord, node: u64, replica: &ShardReplica) {
        const RETRY_AFTER: Duration = Duration::from_secs(5);
        const MAX_LAG: u64 = 64;
        // A transfer between caught-up voters takes milliseconds; the group takes no writes
        // while one is pending, so a target that died meanwhile must not hold it long.
        const TRANSFER_DEADLINE: Duration = Duration::from_secs(1);
        let Some(target) = shard.voters().find(|member| member.node == node) else {
            return;
        };
        let group = replica.group();
        if !self.answered_recently(node)
            || !group.membership().voters.contains(&target.replica)
            || group.lag_of(target.replica).is_none_or(|lag| lag > MAX_LAG)
        {
            return;
        }
        if let Ok(mut transfers) = self.transfers.lock() {
            if transfers
                .get(&shard.group)
                .is_some_and(|at| at.elapsed() < RETRY_AFTER)
            {
                return;
            }
            transfers.insert(shard.group, Instant::now());
        }
        tracing::debug!(
            group = shard.group,
            to_node = node,
            "handing leadership over"
        );
        let vote = group.vote();
        if let Err(error) = group.transfer_leader(target.replica).await {
            tracing::warn!(group = shard.group, %error, "leadership transfer failed");
            return;
        }
        // openraft's transfer has no deadline: the leader stops heartbeats and forwards writes
        // to the target until the target takes over. A target that stops answering right then
        // (a paused, killed or cut-off node) would leave the group unwritable, with its
        // followers asleep, for as long as that lasts. If the transfer has not happened after a
        // second, hand over to another caught-up voter on a live node instead.
        let alive = self.alive_nodes();
        let others: Vec<u64> = shard
            .voters()
            .filter(|member| member.node != node && member.node != self.config.node_id)
            .filter(|member| alive.contains(&member.node))
            .map(|member| member.replica)
            .collect();
        let replica = replica.clone();
        let group_id = shard.group;
        tokio::spawn(async move {
            tokio::time::sleep(TRANSFER_DEADLINE).await;
            let group = replica.group();
            if !group.is_leader() || group.vote() != vote {
                return;
            }
            let fallback = others
                .into_iter()
                .find(|other| group.lag_of(*other).is_some_and(|lag| lag <= MAX_LAG));
            match fallback {
                Some(other) => {
                    tracing::warn!(
                        group = group_id,
                        to_node = node,
                        fallback = other,
                        "leadership transfer did not complete; handing over to another voter"
                    );
                    if let Err(error) = group.transfer_leader(other).await {
                        tracing::warn!(group = group_id, %error, "fallback leadership transfer failed");
                    }
                }
                None => tracing::warn!(
                    group = group_id,
                    to_node = node,
                    "leadership transfer did not complete and no other voter is caught up"
                ),
            }
        });
    }
}
