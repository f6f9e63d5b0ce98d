//! Which shard replicas run on this node: those the control state places here. New ones start
//! (a bounded number per pass), replicas no longer placed here stop and their storage goes, and
//! groups left on disk by a stream deleted while this node was down are dropped.

use std::collections::BTreeMap;

use riffle_control::ControlState;
use riffle_control::model::ShardRecord;
use riffle_control::model::StreamRecord;
use riffle_control::plane::CONTROL_GROUP;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardReplica;
use riffle_storage::StorageError;

use crate::node::Node;
use crate::node::NodeError;

/// New replicas started by one reconcile pass (about one pass a second). Every started group
/// is awake (ticking, electing, heartbeating) until it hibernates a few seconds later; starting
/// thousands at once (a stream of 10,000 shards, a restart) swamps the node with timers and
/// elections. The nodes walk the groups in the same order, so a group's voters start together.
const STARTS_PER_PASS: usize = 200;

impl Node {
    /// Starts replicas placed on this node and drops those no longer in the state.
    /// Returns whether every wanted replica runs (else the next pass retries).
    pub(super) async fn sync_local_replicas(&self, state: &ControlState) -> bool {
        let mut complete = true;
        let mut wanted: BTreeMap<u64, (&StreamRecord, &ShardRecord)> = BTreeMap::new();
        for stream in state.streams.values() {
            for shard in &stream.shards {
                if shard
                    .replicas
                    .iter()
                    .any(|replica| replica.node == self.config.node_id)
                {
                    wanted.insert(shard.group, (stream, shard));
                }
            }
        }
        let mut started = 0usize;
        for (group, (stream, shard)) in &wanted {
            if self.local_shard(*group).is_some() || self.is_stopping() {
                continue;
            }
            if started == STARTS_PER_PASS {
                complete = false;
                break;
            }
            started += 1;
            if let Err(error) = self.start_replica(state, shard).await {
                complete = false;
                tracing::error!(stream = %stream.name, shard = %shard.id(), group, %error, "cannot start shard replica");
            }
        }
        let stale: Vec<u64> = self
            .shards
            .groups()
            .into_iter()
            .filter(|group| !wanted.contains_key(group))
            .collect();
        for group in stale {
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
        // Groups left on disk by a stream deleted while this node was down.
        let on_disk: Vec<u64> = self
            .storage
            .groups()
            .into_iter()
            .filter(|group| *group != CONTROL_GROUP)
            .collect();
        for group in on_disk {
            if !wanted.contains_key(&group)
                && self.local_shard(group).is_none()
                && let Err(error) = self.drop_storage_group(group).await
            {
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
