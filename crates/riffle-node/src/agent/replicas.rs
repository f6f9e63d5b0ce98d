//! Which shard replicas run on this node: those the control state places here. New ones start
//! (a bounded number per pass), replicas no longer placed here stop and their storage goes, and
//! groups left on disk by a stream deleted while this node was down are dropped.

use std::collections::BTreeMap;
use std::collections::HashSet;

use riffle_control::ControlState;
use riffle_control::model::ShardRecord;
use riffle_control::model::StreamRecord;
use riffle_control::plane::CONTROL_GROUP;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardReplica;
use riffle_storage::StorageError;

use crate::error::NodeError;
use crate::node::Node;

/// New replicas started by one reconcile pass (about one pass a second). Every started group
/// is awake (ticking, electing, heartbeating) until it hibernates a few seconds later; starting
/// thousands at once (a stream of 10,000 shards, a restart) swamps the node with timers and
/// elections. The nodes walk the groups in the same order, so a group's voters start together.
const STARTS_PER_PASS: usize = 200;

/// The shards with a replica (voter or learner) on `node`, by group, in group order.
pub(super) fn placed_on(
    state: &ControlState,
    node: u64,
) -> BTreeMap<u64, (&StreamRecord, &ShardRecord)> {
    let mut placed = BTreeMap::new();
    for stream in state.streams.values() {
        for shard in &stream.shards {
            if shard.replicas.iter().any(|replica| replica.node == node) {
                placed.insert(shard.group, (stream.as_ref(), shard));
            }
        }
    }
    placed
}

/// What one pass does with the local replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ReplicaPlan {
    /// Groups to start now, in group order.
    pub start: Vec<u64>,
    /// More groups wait to be started (the next pass starts them).
    pub deferred: bool,
    /// Running groups no longer placed here: stop them and drop their storage.
    pub stop: Vec<u64>,
}

/// Starts the wanted groups that are not running (at most `limit`, in group order, so that the
/// nodes start a group's voters together) and stops the running groups no longer wanted.
pub(super) fn plan_replicas(
    wanted: impl IntoIterator<Item = u64>,
    running: &HashSet<u64>,
    limit: usize,
) -> ReplicaPlan {
    let wanted: Vec<u64> = wanted.into_iter().collect();
    let mut missing = wanted
        .iter()
        .copied()
        .filter(|group| !running.contains(group));
    let start: Vec<u64> = missing.by_ref().take(limit).collect();
    let deferred = missing.next().is_some();
    let mut stop: Vec<u64> = running
        .iter()
        .copied()
        .filter(|group| !wanted.contains(group))
        .collect();
    stop.sort_unstable();
    ReplicaPlan {
        start,
        deferred,
        stop,
    }
}

/// Groups on disk that are neither the metadata group, placed here nor running: left by a
/// stream deleted while this node was down.
pub(super) fn orphaned(
    on_disk: impl IntoIterator<Item = u64>,
    wanted: &BTreeMap<u64, (&StreamRecord, &ShardRecord)>,
    running: impl Fn(u64) -> bool,
) -> Vec<u64> {
    on_disk
        .into_iter()
        .filter(|group| *group != CONTROL_GROUP && !wanted.contains_key(group) && !running(*group))
        .collect()
}

impl Node {
    /// Starts replicas placed on this node and drops those no longer in the state.
    /// Returns whether every wanted replica runs (else the next pass retries).
    pub(super) async fn sync_local_replicas(&self, state: &ControlState) -> bool {
        let wanted = placed_on(state, self.config.node_id);
        let running: HashSet<u64> = self.shards.groups().into_iter().collect();
        let plan = plan_replicas(wanted.keys().copied(), &running, STARTS_PER_PASS);
        let mut complete = !plan.deferred;
        for group in plan.start {
            if self.is_stopping() {
                continue;
            }
            let Some((stream, shard)) = wanted.get(&group) else {
                continue;
            };
            if let Err(error) = self.start_replica(state, shard).await {
                complete = false;
                tracing::error!(stream = %stream.name, shard = %shard.id(), group, %error, "cannot start shard replica");
            }
        }
        for group in plan.stop {
            let replica = self.shards.remove(group);
            if let Some(replica) = replica {
                replica.shutdown().await;
            }
            self.awake.forget(group);
            if let Ok(mut leading) = self.leading_groups.lock() {
                leading.remove(&group);
            }
            match self.drop_storage_group(group).await {
                Ok(()) => tracing::info!(group, "dropped shard replica"),
                Err(error) => tracing::error!(group, %error, "cannot drop shard replica"),
            }
        }
        let orphans = orphaned(self.storage.groups(), &wanted, |group| {
            self.local_shard(group).is_some()
        });
        for group in orphans {
            if let Err(error) = self.drop_storage_group(group).await {
                tracing::error!(group, %error, "cannot drop orphaned group");
            }
        }
        complete
    }

    /// Removes a group's log and state from storage (a durable, blocking call: kept off the
    /// async threads).
    async fn drop_storage_group(&self, group: u64) -> Result<(), StorageError> {
        let storage = self.storage.clone();
        tokio::task::spawn_blocking(move || storage.drop_group(group))
            .await
            .map_err(|error| StorageError::Io(std::io::Error::other(error)))?
    }

    async fn start_replica(
        &self,
        state: &ControlState,
        shard: &ShardRecord,
    ) -> Result<(), NodeError> {
        let Some(local) = shard
            .replicas
            .iter()
            .find(|replica| replica.node == self.config.node_id)
        else {
            return Ok(());
        };
        let storage = self.storage.clone();
        let group = shard.group;
        let is_new = !storage.groups().contains(&group);
        if is_new {
            tokio::task::spawn_blocking(move || storage.create_group(group))
                .await
                .map_err(|error| StorageError::Io(std::io::Error::other(error)))??;
        }
        let replica = ShardReplica::start(
            self.storage.clone(),
            group,
            local.replica,
            &self.shard_options,
            self.raft_client(),
        )
        .await?;
        // A learner (a replica being added) starts empty: the leader adds it to the group and
        // sends it the log. Voters of a new shard bootstrap the group together.
        if is_new && !local.learner {
            let members = shard
                .voters()
                .map(|member| {
                    let node = state.nodes.get(&member.node);
                    let replica_node = ReplicaNode {
                        node: member.node,
                        addr: node.map(|n| n.peer_addr.clone()).unwrap_or_default(),
                        az: node.map(|n| n.az.clone()).unwrap_or_default(),
                    };
                    (member.replica, replica_node)
                })
                .collect();
            replica.group().bootstrap(members).await?;
        }
        replica.group().campaign_if_sole_voter().await?;
        // The placement's first replica is the preferred leader: it campaigns at once, the
        // others wait for it (or for an election timeout if it is down).
        let preferred = shard.preferred_node() == Some(self.config.node_id);
        if preferred && is_new && !local.learner && shard.replicas.len() > 1 {
            replica.group().campaign().await?;
        }
        self.shards.insert(group, replica);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shard_on;
    use crate::testing::state_with;

    fn shard(group: u64, nodes: &[u64]) -> ShardRecord {
        let mut shard = shard_on(nodes);
        shard.group = group;
        shard
    }

    #[test]
    fn a_node_runs_the_replicas_placed_on_it_learners_included() {
        let mut learner_here = shard(7, &[2, 3, 1]);
        learner_here.replicas[2].learner = true;
        let state = state_with(vec![
            ("a", vec![shard(5, &[1, 2, 3]), shard(6, &[2, 3, 4])]),
            ("b", vec![learner_here, shard(3, &[3, 1, 2])]),
        ]);
        let placed = placed_on(&state, 1);
        assert_eq!(placed.keys().copied().collect::<Vec<_>>(), [3, 5, 7]);
        assert_eq!(placed[&3].0.name, "b");
    }

    #[test]
    fn a_pass_starts_missing_replicas_in_group_order_up_to_its_limit() {
        let running = HashSet::from([2, 9]);
        let plan = plan_replicas([1, 2, 3, 4, 5], &running, 2);
        assert_eq!(plan.start, [1, 3]);
        assert!(plan.deferred, "4 and 5 wait for the next pass");
        assert_eq!(plan.stop, [9], "9 is no longer placed here");

        let plan = plan_replicas([1, 2, 3], &running, 2);
        assert_eq!(plan.start, [1, 3]);
        assert!(!plan.deferred, "exactly the limit: nothing left");
    }

    #[test]
    fn groups_on_disk_that_nothing_wants_are_orphans_but_never_the_metadata_group() {
        let state = state_with(vec![("a", vec![shard(5, &[1, 2, 3])])]);
        let wanted = placed_on(&state, 1);
        let running = |group: u64| group == 8;
        assert_eq!(orphaned([0, 5, 6, 8, 9], &wanted, running), [6, 9]);
    }
}
