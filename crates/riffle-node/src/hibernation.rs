//! Hibernation: a leader whose group has been quiet (`hibernate_after`; less for a group that
//! has served nothing since it started) with every live follower caught up asks the followers
//! to stop ticking, then stops itself: idle groups cost no timers. Any proposal, read or Raft
//! message wakes a group.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use riffle_raft::Group;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardMachine;
use riffle_shard::shard::ShardReplica;

use crate::liveness::Led;
use crate::node::Node;
use crate::peer::HibernateRequest;

/// A group that has served nothing since it started sleeps after this much quiet (or after
/// `hibernate_after` if that is shorter).
const NEW_GROUP_QUIET: Duration = Duration::from_secs(2);

/// Groups put to sleep at once by one hibernation pass.
const HIBERNATE_CONCURRENCY: usize = 32;

/// Whether a group idle for `idle_for` may sleep: after `hibernate_after` once it has served a
/// write or read, after at most [`NEW_GROUP_QUIET`] before that.
fn quiet_long_enough(has_served: bool, idle_for: Duration, hibernate_after: Duration) -> bool {
    let needed = if has_served {
        hibernate_after
    } else {
        hibernate_after.min(NEW_GROUP_QUIET)
    };
    idle_for >= needed
}

impl Node {
    /// Puts quiet, fully replicated groups this node leads to sleep (followers first). Members
    /// on down nodes are left out (a majority must be up and caught up): with a node down, its
    /// groups would otherwise all stay awake and keep the survivors busy. They are woken when
    /// the node returns, so that it catches up.
    async fn hibernate_quiet_groups(&self) {
        let down = self.down_nodes();
        let candidates: Vec<ShardReplica> = self
            .awake
            .snapshot()
            .into_iter()
            .filter_map(|group| self.local_shard(group))
            .filter(|replica| {
                let group = replica.group();
                !group.is_hibernating()
                    && self.quiet_long_enough(group)
                    && group.is_quiet_and_replicated(&down)
            })
            .collect();
        // Each group costs two round trips (one per follower); thousands of new groups must
        // not wait for each other.
        futures_util::stream::iter(candidates)
            .for_each_concurrent(HIBERNATE_CONCURRENCY, |replica| {
                let down = &down;
                async move { self.hibernate_group(&replica, down).await }
            })
            .await;
    }

    /// Whether `group` has been idle long enough to sleep: `hibernate_after` once it has served
    /// a write or read, at most [`NEW_GROUP_QUIET`] before that (a new or restarted group has
    /// nothing in flight; keeping thousands of them awake for long only burns CPU).
    fn quiet_long_enough(&self, group: &Group<ShardMachine>) -> bool {
        quiet_long_enough(
            group.has_served(),
            group.idle_for(),
            self.config.hibernate_after,
        )
    }

    /// Puts the followers of one led group to sleep, then the leader if all of them went.
    async fn hibernate_group(&self, replica: &ShardReplica, down: &HashSet<u64>) {
        let group = replica.group();
        let followers: Vec<(u64, ReplicaNode)> = group
            .members()
            .into_iter()
            .filter(|(id, node)| *id != group.replica() && !down.contains(&node.node))
            .collect();
        let vote = group.vote();
        let Some(peers) = &self.peers else {
            return;
        };
        for (target, node) in &followers {
            let request = HibernateRequest {
                group: group.id(),
                target: *target,
                leader_vote: vote,
            };
            match peers.hibernate(node.node, request).await {
                Ok(true) => {}
                _ => return,
            }
        }
        // Re-check: a write may have arrived while the followers were asked.
        if group.is_quiet_and_replicated(down) && self.quiet_long_enough(group) {
            if let Ok(mut leading) = self.leading_groups.lock() {
                let totals = replica.meter().totals();
                leading
                    .entry(group.id())
                    .or_insert_with(|| Led::new(group.replica(), totals));
            }
            group.hibernate();
        }
    }

    /// Per-node counts for status: `(shard replicas hosted, hibernating)`.
    pub fn replica_counts(&self) -> (usize, usize) {
        let (mut hosted, mut hibernating) = (0, 0);
        self.shards.for_each(|replica| {
            hosted += 1;
            if replica.group().is_hibernating() {
                hibernating += 1;
            }
        });
        (hosted, hibernating)
    }
}

pub(crate) async fn run_hibernation(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => node.hibernate_quiet_groups().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_that_served_nothing_sleeps_sooner() {
        let after = Duration::from_secs(10);
        assert!(!quiet_long_enough(true, Duration::from_secs(9), after));
        assert!(quiet_long_enough(true, Duration::from_secs(10), after));
        assert!(
            quiet_long_enough(false, Duration::from_secs(2), after),
            "new or restarted: two seconds of quiet are enough"
        );
        assert!(!quiet_long_enough(
            false,
            Duration::from_millis(1_999),
            after
        ));
        assert!(
            quiet_long_enough(false, Duration::from_secs(1), Duration::from_secs(1)),
            "unless hibernate_after is shorter"
        );
    }
}
