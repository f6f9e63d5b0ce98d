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

/// A voter at most this many entries behind the leader is caught up: leadership may go to it.
const MAX_LAG: u64 = 64;
/// A group is asked to hand over at most this often.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// A transfer between caught-up voters takes milliseconds; the group takes no writes while one
/// is pending, so a target that died meanwhile must not hold it long.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(1);

/// The replica leadership would go to, as the leader sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Target {
    /// Its node answered a ping in the last second.
    pub answered_recently: bool,
    /// It votes in the group's current membership.
    pub is_voter: bool,
    /// How many entries it is behind the leader (`None`: unknown here).
    pub lag: Option<u64>,
}

/// Whether to hand leadership over now, or why not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HandOver {
    Ask,
    /// Its node has not answered lately (it may have died a moment ago).
    TargetSilent,
    /// It is not (yet) a voter of the group.
    TargetNotVoter,
    /// It is more than [`MAX_LAG`] entries behind, or its progress is unknown.
    TargetBehind,
    /// This group was asked less than [`RETRY_AFTER`] ago.
    TooSoon,
}

/// Decides a hand-over to `target`; `since_last_ask` is how long ago this group was last asked
/// to hand over (`None`: never).
pub(super) fn hand_over(target: Target, since_last_ask: Option<Duration>) -> HandOver {
    if !target.answered_recently {
        return HandOver::TargetSilent;
    }
    if !target.is_voter {
        return HandOver::TargetNotVoter;
    }
    if target.lag.is_none_or(|lag| lag > MAX_LAG) {
        return HandOver::TargetBehind;
    }
    if since_last_ask.is_some_and(|since| since < RETRY_AFTER) {
        return HandOver::TooSoon;
    }
    HandOver::Ask
}

/// Who may take over if the transfer to the replica on `target_node` does not complete: the
/// shard's other voters on live nodes (not this one), in placement order.
pub(super) fn fallback_candidates(
    shard: &ShardRecord,
    target_node: u64,
    me: u64,
    alive: &HashSet<u64>,
) -> Vec<u64> {
    shard
        .voters()
        .filter(|member| member.node != target_node && member.node != me)
        .filter(|member| alive.contains(&member.node))
        .map(|member| member.replica)
        .collect()
}

/// The first candidate caught up with the leader, if any.
pub(super) fn first_caught_up(
    candidates: &[u64],
    lag_of: impl Fn(u64) -> Option<u64>,
) -> Option<u64> {
    candidates
        .iter()
        .copied()
        .find(|candidate| lag_of(*candidate).is_some_and(|lag| lag <= MAX_LAG))
}

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
        let Some(target) = shard.voters().find(|member| member.node == node) else {
            return;
        };
        let group = replica.group();
        let view = Target {
            answered_recently: self.answered_recently(node),
            is_voter: group.membership().voters.contains(&target.replica),
            lag: group.lag_of(target.replica),
        };
        {
            let mut transfers = self.transfers.lock().ok();
            let since_last_ask = transfers
                .as_ref()
                .and_then(|transfers| transfers.get(&shard.group))
                .map(Instant::elapsed);
            if hand_over(view, since_last_ask) != HandOver::Ask {
                return;
            }
            if let Some(transfers) = transfers.as_mut() {
                transfers.insert(shard.group, Instant::now());
            }
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
        let others = fallback_candidates(shard, node, self.config.node_id, &self.alive_nodes());
        let replica = replica.clone();
        let group_id = shard.group;
        tokio::spawn(async move {
            tokio::time::sleep(TRANSFER_DEADLINE).await;
            let group = replica.group();
            if !group.is_leader() || group.vote() != vote {
                return;
            }
            let fallback = first_caught_up(&others, |other| group.lag_of(other));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shard_on;

    const READY: Target = Target {
        answered_recently: true,
        is_voter: true,
        lag: Some(0),
    };

    #[test]
    fn leadership_goes_only_to_a_caught_up_voter_whose_node_answers() {
        assert_eq!(hand_over(READY, None), HandOver::Ask);
        let silent = Target {
            answered_recently: false,
            ..READY
        };
        assert_eq!(hand_over(silent, None), HandOver::TargetSilent);
        let learner = Target {
            is_voter: false,
            ..READY
        };
        assert_eq!(hand_over(learner, None), HandOver::TargetNotVoter);
        let at_limit = Target {
            lag: Some(64),
            ..READY
        };
        assert_eq!(
            hand_over(at_limit, None),
            HandOver::Ask,
            "64 entries behind is caught up"
        );
        let behind = Target {
            lag: Some(65),
            ..READY
        };
        assert_eq!(hand_over(behind, None), HandOver::TargetBehind);
        let unknown = Target { lag: None, ..READY };
        assert_eq!(hand_over(unknown, None), HandOver::TargetBehind);
    }

    #[test]
    fn a_group_is_asked_at_most_every_five_seconds() {
        assert_eq!(
            hand_over(READY, Some(Duration::from_millis(4_999))),
            HandOver::TooSoon
        );
        assert_eq!(
            hand_over(READY, Some(Duration::from_secs(5))),
            HandOver::Ask
        );
        let behind = Target {
            lag: Some(1_000),
            ..READY
        };
        assert_eq!(
            hand_over(behind, Some(Duration::from_secs(1))),
            HandOver::TargetBehind,
            "an ineligible target is reported as such, whenever the last ask was"
        );
    }

    #[test]
    fn the_fallback_is_another_live_voter_not_the_target_nor_this_node() {
        // Replicas 101..=105 on nodes 1..=5; this node (1) leads; the target is on node 2.
        let mut shard = shard_on(&[1, 2, 3, 4, 5]);
        shard.replicas[4].learner = true;
        let alive = HashSet::from([1, 2, 3, 5]);
        assert_eq!(
            fallback_candidates(&shard, 2, 1, &alive),
            [103],
            "node 4 is down and node 5 only has a learner"
        );
        let all_alive = HashSet::from([1, 2, 3, 4, 5]);
        assert_eq!(fallback_candidates(&shard, 2, 1, &all_alive), [103, 104]);
    }

    #[test]
    fn the_fallback_is_the_first_caught_up_candidate() {
        let lags = |replica: u64| match replica {
            103 => Some(65),
            104 => None,
            105 => Some(64),
            _ => Some(0),
        };
        assert_eq!(first_caught_up(&[103, 104, 105, 106], lags), Some(105));
        assert_eq!(first_caught_up(&[103, 104], lags), None);
    }
}
