//! Serving: what this node does when it is asked, by itself (routing) or by another node (the
//! transports).
//!
//! [`LocalShards`] holds the shard replicas running here and implements the typed
//! [`ShardService`] over them; the leader's side of a Follow stream is in [`follow`]. The
//! control calls other nodes make (propose and read-index on the metadata leader, ping,
//! hibernate) and the delivery of Raft messages to local groups are in [`peers`].

pub mod follow;
mod peers;

use std::collections::HashMap;
use std::sync::RwLock;

use riffle_raft::Group;
use riffle_raft::Machine;
use riffle_raft::ProposeError;
use riffle_shard::shard::ReadPage;
use riffle_shard::shard::ShardReplica;
use riffle_storage::GroupId;
use riffle_types::seqnum::Position;
use tokio::sync::watch;

use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::ServeError;
use crate::service::Served;
use crate::service::ShardError;
use crate::service::ShardService;

/// The shard replicas running on this node, and the shard service over them.
pub struct LocalShards {
    replicas: RwLock<HashMap<GroupId, ShardReplica>>,
    /// SubscribeToShard subscriptions following shards this node leads.
    subscriptions: follow::Subscriptions,
    /// Set when the node stops (Follow streams end).
    stop: watch::Receiver<bool>,
}

impl LocalShards {
    pub fn new(stop: watch::Receiver<bool>) -> LocalShards {
        LocalShards {
            replicas: RwLock::new(HashMap::new()),
            subscriptions: follow::Subscriptions::default(),
            stop,
        }
    }

    /// The local replica of a shard group, if this node hosts one and it is running.
    pub fn get(&self, group: GroupId) -> Option<ShardReplica> {
        self.replicas.read().ok()?.get(&group).cloned()
    }

    pub(crate) fn insert(&self, group: GroupId, replica: ShardReplica) {
        if let Ok(mut replicas) = self.replicas.write() {
            replicas.insert(group, replica);
        }
    }

    pub(crate) fn remove(&self, group: GroupId) -> Option<ShardReplica> {
        self.replicas.write().ok()?.remove(&group)
    }

    /// Takes every replica out (the node stops).
    pub(crate) fn drain(&self) -> Vec<ShardReplica> {
        match self.replicas.write() {
            Ok(mut replicas) => replicas.drain().map(|(_, replica)| replica).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The groups hosted here.
    pub(crate) fn groups(&self) -> Vec<GroupId> {
        match self.replicas.read() {
            Ok(replicas) => replicas.keys().copied().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Runs `visit` on every replica (under the read lock: keep it short, no awaiting).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&ShardReplica)) {
        if let Ok(replicas) = self.replicas.read() {
            replicas.values().for_each(&mut visit);
        }
    }

    /// A local replica that leads its group, or the not-leader answer to give.
    pub(crate) fn leading_replica(&self, group: GroupId) -> Served<ShardReplica> {
        let Some(replica) = self.get(group) else {
            return Err(ServeError::NotLeader(None));
        };
        if !replica.group().is_leader() {
            // A follower asked to serve may be asleep while its leader is gone: wake it so that
            // its election timer runs.
            replica.group().wake();
            return Err(ServeError::NotLeader(leader_node(replica.group())));
        }
        Ok(replica)
    }

    async fn append_or_seal(&self, group: GroupId, append: Append) -> Served<u64> {
        let replica = self.leading_replica(group)?;
        let outcome = match append {
            Append::Records(request) => replica.append(request.batch, request.arrival_ms).await,
            Append::Seal(request) => replica.seal(request.now_ms).await,
        };
        outcome.map_err(ServeError::from)
    }

    /// The leading replica of `group`, once a lease check confirmed it still leads; a deposed
    /// leader that has not noticed answers with the leader it learned of.
    async fn confirmed_leader(&self, group: GroupId) -> Served<ShardReplica> {
        let replica = self.leading_replica(group)?;
        if let Err(error) = replica.group().lease_read_barrier().await {
            return Err(ServeError::NotLeader(match error {
                ProposeError::NotLeader { leader } => leader.map(|(_, node)| node.node),
                _ => None,
            }));
        }
        Ok(replica)
    }
}

enum Append {
    Records(AppendRequest),
    Seal(SealRequest),
}

impl ShardService for LocalShards {
    async fn append(&self, request: AppendRequest) -> Served<u64> {
        self.append_or_seal(request.group, Append::Records(request))
            .await
    }

    async fn seal(&self, request: SealRequest) -> Served<u64> {
        self.append_or_seal(request.group, Append::Seal(request))
            .await
    }

    async fn read(&self, request: ReadRequest) -> Served<ReadPage> {
        let replica = self.confirmed_leader(request.group).await?;
        // Reads of old data come from disk: keep them off the async threads.
        let read = tokio::task::spawn_blocking(move || {
            replica.read(request.from, request.max_records, request.max_bytes)
        })
        .await;
        match read {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(error)) => Err(ShardError::Read(error).into()),
            Err(error) => Err(ShardError::ReadTask(error).into()),
        }
    }

    async fn locate(&self, request: LocateRequest) -> Served<Position> {
        let replica = self.leading_replica(request.group)?;
        if replica.group().lease_read_barrier().await.is_err() {
            return Err(ServeError::NotLeader(None));
        }
        let position = match request.at_timestamp_ms {
            None => Ok(replica.latest()),
            Some(timestamp) => replica.position_at_time(timestamp),
        };
        position.map_err(|error| ShardError::Locate(error).into())
    }

    async fn follow(&self, request: FollowRequest) -> Served<Following> {
        // Confirmed leader (a deposed one that has not noticed would wait in vain).
        let replica = self.confirmed_leader(request.group).await?;
        follow::serve(replica, &self.subscriptions, self.stop.clone(), request)
    }
}

/// The node of the replica leading a local group, as the group knows it.
pub(crate) fn leader_node<M: Machine>(group: &Group<M>) -> Option<u64> {
    let leader = group.leader()?;
    group
        .members()
        .into_iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, node)| node.node)
}
