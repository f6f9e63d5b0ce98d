//! One node's runtime: its metadata replica, its shard replicas, and the agent that keeps the
//! local replicas in line with the control state and drives stream lifecycles.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use riffle_shard::consensus::Group;
use riffle_shard::consensus::GroupOptions;
use riffle_shard::consensus::ReplicaNode;
use riffle_shard::shard::ShardReplica;
use riffle_storage::Storage;
use riffle_storage::StorageError;
use riffle_types::KinesisError;
use riffle_types::TokenKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command::ControlCommand;
use crate::model::ControlState;
use crate::model::NodeRecord;
use crate::model::ShardRecord;
use crate::model::ShardState;
use crate::model::StreamRecord;
use crate::model::StreamStatus;
use crate::plane::CONTROL_GROUP;
use crate::plane::ControlMachine;
use crate::plane::ControlPlane;

/// What a node needs to know about itself.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    pub az: String,
    /// Advertised address of the Kinesis API.
    pub api_addr: String,
    /// Advertised address of the peer (node-to-node) service.
    pub peer_addr: String,
    /// Account id and region shown in ARNs and messages.
    pub account: String,
    pub region: String,
    /// Open-shard limit across all streams (DescribeLimits' ShardLimit).
    pub shard_limit: u32,
    /// Replicas per shard (capped by the number of nodes).
    pub replication_factor: u32,
    /// How often retention trimming runs.
    pub retention_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("raft group failed: {0}")]
    Group(#[from] riffle_shard::consensus::GroupError),
    #[error("control plane: {0}")]
    Control(#[from] KinesisError),
    #[error("the metadata group elected no leader within {0:?}")]
    NoLeader(Duration),
}

/// A running node.
pub struct Node {
    config: NodeConfig,
    storage: Arc<dyn Storage>,
    control: ControlPlane,
    shards: RwLock<HashMap<u64, ShardReplica>>,
    shard_options: GroupOptions,
    token_key: RwLock<Option<TokenKey>>,
    stop: watch::Sender<bool>,
    agent: std::sync::Mutex<Option<JoinHandle<()>>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    /// Starts the node over `storage`: the metadata replica first (bootstrapping a new
    /// single-node cluster when the storage is empty), then its shard replicas and the agent.
    pub async fn start(
        config: NodeConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<Node>, NodeError> {
        let control = start_control(&config, storage.clone()).await?;
        let (stop, _) = watch::channel(false);
        let node = Arc::new(Node {
            config,
            storage,
            control,
            shards: RwLock::new(HashMap::new()),
            shard_options: GroupOptions::shard(),
            token_key: RwLock::new(None),
            stop,
            agent: std::sync::Mutex::new(None),
        });
        node.join_cluster().await?;
        node.reconcile().await;
        let agent = tokio::spawn(run_agent(node.clone()));
        if let Ok(mut slot) = node.agent.lock() {
            *slot = Some(agent);
        }
        Ok(node)
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn control(&self) -> &ControlPlane {
        &self.control
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The key that authenticates shard iterators and page tokens cluster-wide.
    pub fn token_key(&self) -> Option<TokenKey> {
        if let Ok(slot) = self.token_key.read()
            && slot.is_some()
        {
            return slot.clone();
        }
        let state = self.control.state();
        let key = state
            .cluster
            .as_ref()
            .and_then(|cluster| decode_key(&cluster.token_key_hex))?;
        if let Ok(mut slot) = self.token_key.write() {
            *slot = Some(key.clone());
        }
        Some(key)
    }

    /// The local replica of a shard group, if this node hosts one and it is running.
    pub fn local_shard(&self, group: u64) -> Option<ShardReplica> {
        self.shards.read().ok()?.get(&group).cloned()
    }

    /// Stops the agent and every group. Storage stays as it is.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let agent = self.agent.lock().ok().and_then(|mut slot| slot.take());
        if let Some(agent) = agent {
            let _ = agent.await;
        }
        let replicas: Vec<ShardReplica> = match self.shards.write() {
            Ok(mut shards) => shards.drain().map(|(_, replica)| replica).collect(),
            Err(_) => Vec::new(),
        };
        for replica in replicas {
            replica.shutdown().await;
        }
        self.control.group().shutdown().await;
    }

    /// Makes sure the cluster is initialized and this node is registered.
    async fn join_cluster(&self) -> Result<(), NodeError> {
        let state = self.control.state();
        if state.cluster.is_none() {
            let key: [u8; 32] = rand::random();
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            self.control
                .propose(ControlCommand::InitCluster {
                    cluster_id,
                    token_key_hex: encode_hex(&key),
                    account: self.config.account.clone(),
                    region: self.config.region.clone(),
                    now_ms: now_ms(),
                })
                .await?;
        }
        let record = NodeRecord {
            id: self.config.node_id,
            peer_addr: self.config.peer_addr.clone(),
            api_addr: self.config.api_addr.clone(),
            az: self.config.az.clone(),
        };
        if self.control.state().nodes.get(&record.id) != Some(&record) {
            self.control
                .propose(ControlCommand::RegisterNode { node: record })
                .await?;
        }
        Ok(())
    }

    /// One pass of the agent: local replicas follow the state; on the metadata leader,
    /// lifecycles move forward.
    async fn reconcile(&self) {
        let state = self.control.state();
        self.sync_local_replicas(&state).await;
        if self.control.is_leader() {
            self.advance_lifecycles(&state).await;
        }
    }

    /// Starts replicas placed on this node and drops those no longer in the state.
    async fn sync_local_replicas(&self, state: &ControlState) {
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
        for (group, (stream, shard)) in &wanted {
            if self.local_shard(*group).is_some() {
                continue;
            }
            if let Err(error) = self.start_replica(state, shard).await {
                tracing::error!(stream = %stream.name, shard = %shard.id(), group, %error, "cannot start shard replica");
            }
        }
        let stale: Vec<u64> = match self.shards.read() {
            Ok(shards) => shards
                .keys()
                .filter(|group| !wanted.contains_key(group))
                .copied()
                .collect(),
            Err(_) => Vec::new(),
        };
        for group in stale {
            let replica = self
                .shards
                .write()
                .ok()
                .and_then(|mut shards| shards.remove(&group));
            if let Some(replica) = replica {
                replica.shutdown().await;
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
            None,
        )
        .await?;
        if is_new {
            let members = shard
                .replicas
                .iter()
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
        if let Ok(mut shards) = self.shards.write() {
            shards.insert(group, replica);
        }
        Ok(())
    }

    /// Metadata-leader duties: CREATING/UPDATING → ACTIVE, seal replaced shards, finish deletes.
    async fn advance_lifecycles(&self, state: &ControlState) {
        for stream in state.streams.values() {
            let result = match stream.status {
                StreamStatus::Creating | StreamStatus::Updating => {
                    self.advance_stream(stream).await
                }
                StreamStatus::Deleting => self
                    .control
                    .propose(ControlCommand::StreamDeleted {
                        name: stream.name.clone(),
                        created_ms: stream.created_ms,
                    })
                    .await
                    .map(|_| ()),
                StreamStatus::Active => Ok(()),
            };
            if let Err(error) = result {
                tracing::warn!(stream = %stream.name, %error, "stream lifecycle step failed; will retry");
            }
        }
    }

    async fn advance_stream(&self, stream: &StreamRecord) -> Result<(), KinesisError> {
        // Every writable shard must have a leader before anything else moves.
        for shard in stream
            .shards
            .iter()
            .filter(|shard| shard.is_writable() && shard.state == ShardState::Open)
        {
            if !self.shard_has_leader(shard) {
                return Ok(());
            }
        }
        for shard in stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Closing)
        {
            let Some(replica) = self.local_shard(shard.group) else {
                return Ok(());
            };
            let sealed_at = replica.seal(now_ms()).await.map_err(|error| {
                KinesisError::unavailable(format!("cannot seal {}: {error}", shard.id()))
            })?;
            self.control
                .propose(ControlCommand::ShardSealed {
                    name: stream.name.clone(),
                    created_ms: stream.created_ms,
                    shard: shard.index,
                    sealed_at,
                    now_ms: now_ms(),
                })
                .await?;
        }
        self.control
            .propose(ControlCommand::StreamActive {
                name: stream.name.clone(),
                created_ms: stream.created_ms,
            })
            .await?;
        Ok(())
    }

    fn shard_has_leader(&self, shard: &ShardRecord) -> bool {
        self.local_shard(shard.group)
            .is_some_and(|replica| replica.group().leader().is_some())
    }

    /// Retention: every local replica drops what is older than its stream's retention.
    async fn trim_retention(&self, state: &ControlState) {
        let now = now_ms();
        for stream in state.streams.values() {
            let cutoff = now.saturating_sub(u64::from(stream.retention_hours) * 3_600_000);
            for shard in &stream.shards {
                let Some(replica) = self.local_shard(shard.group) else {
                    continue;
                };
                if let Err(error) = replica.trim_before(cutoff).await {
                    tracing::warn!(stream = %stream.name, shard = %shard.id(), %error, "retention trim failed");
                }
            }
        }
    }
}

async fn start_control(
    config: &NodeConfig,
    storage: Arc<dyn Storage>,
) -> Result<ControlPlane, NodeError> {
    let is_new = !storage.groups().contains(&CONTROL_GROUP);
    if is_new {
        let storage = storage.clone();
        tokio::task::spawn_blocking(move || storage.create_group(CONTROL_GROUP))
            .await
            .map_err(|error| StorageError::Io(std::io::Error::other(error)))??;
    }
    let (machine, state) = ControlMachine::new();
    let group = Group::start(
        storage,
        CONTROL_GROUP,
        config.node_id,
        machine,
        &GroupOptions::control(),
        None,
    )
    .await?;
    let me = ReplicaNode {
        node: config.node_id,
        addr: config.peer_addr.clone(),
        az: config.az.clone(),
    };
    // Single-node cluster: this node is the only voter. (Bootstrap is a no-op on restart, but
    // still triggers an immediate election.)
    group
        .bootstrap(BTreeMap::from([(config.node_id, me)]))
        .await?;
    let timeout = Duration::from_secs(10);
    if group.wait_for_leader(timeout).await.is_none() {
        return Err(NodeError::NoLeader(timeout));
    }
    // Wait until the state machine has caught up with the log it recovered, so the first
    // reads after start see everything that was committed before the restart.
    let plane = ControlPlane::new(group, state);
    plane.propose_barrier().await?;
    Ok(plane)
}

async fn run_agent(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut state = node.control.watch();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut retention = tokio::time::interval(node.config.retention_interval);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                node.reconcile().await;
            }
            _ = tick.tick() => node.reconcile().await,
            _ = retention.tick() => {
                let snapshot = node.control.state();
                node.trim_retention(&snapshot).await;
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

fn decode_key(text: &str) -> Option<TokenKey> {
    let bytes: [u8; 32] = decode_hex(text)?.try_into().ok()?;
    Some(TokenKey::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(encode_hex(&bytes), "0001abff");
        assert_eq!(decode_hex("0001abff").unwrap(), bytes);
        assert!(decode_hex("0g").is_none());
        assert!(decode_hex("abc").is_none());
    }
}

#[cfg(test)]
mod node_tests {
    use std::collections::BTreeMap;

    use riffle_storage::MemStorage;

    use super::*;
    use crate::model::StreamMode;

    fn config() -> NodeConfig {
        NodeConfig {
            node_id: 1,
            az: "az-a".into(),
            api_addr: "127.0.0.1:4567".into(),
            peer_addr: String::new(),
            account: "000000000000".into(),
            region: "us-east-1".into(),
            shard_limit: 100,
            replication_factor: 3,
            retention_interval: Duration::from_secs(3600),
        }
    }

    async fn wait_until(node: &Node, what: &str, check: impl Fn(&ControlState) -> bool) {
        let mut watch = node.control().watch();
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if check(&watch.borrow_and_update()) {
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "timed out waiting until {what}");
    }

    #[tokio::test]
    async fn streams_go_active_run_their_groups_and_are_dropped_on_delete() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let node = Node::start(config(), storage.clone()).await.unwrap();
        assert!(node.token_key().is_some(), "a new cluster gets a token key");
        node.control()
            .propose(ControlCommand::CreateStream {
                name: "s".into(),
                shard_count: 3,
                mode: StreamMode::Provisioned,
                tags: BTreeMap::new(),
                now_ms: now_ms(),
                shard_limit: 100,
                replication_factor: 3,
            })
            .await
            .unwrap();
        wait_until(&node, "the stream is ACTIVE", |state| {
            state
                .streams
                .get("s")
                .is_some_and(|stream| stream.status == StreamStatus::Active)
        })
        .await;
        let groups: Vec<u64> = node.control().state().streams["s"]
            .shards
            .iter()
            .map(|shard| shard.group)
            .collect();
        for group in &groups {
            let replica = node.local_shard(*group).expect("every shard runs locally");
            assert!(replica.group().is_leader());
            assert!(storage.groups().contains(group));
        }

        node.control()
            .propose(ControlCommand::DeleteStream { name: "s".into() })
            .await
            .unwrap();
        wait_until(&node, "the stream is gone", |state| {
            !state.streams.contains_key("s")
        })
        .await;
        // The agent drops the replicas on its next pass.
        for _ in 0..100 {
            if groups.iter().all(|group| {
                node.local_shard(*group).is_none() && !storage.groups().contains(group)
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for group in &groups {
            assert!(node.local_shard(*group).is_none());
            assert!(
                !storage.groups().contains(group),
                "group {group} data not dropped"
            );
        }
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_restarted_node_recovers_its_state() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let node = Node::start(config(), storage.clone()).await.unwrap();
        let key_before = node
            .control()
            .state()
            .cluster
            .clone()
            .unwrap()
            .token_key_hex;
        node.control()
            .propose(ControlCommand::CreateStream {
                name: "kept".into(),
                shard_count: 2,
                mode: StreamMode::Provisioned,
                tags: BTreeMap::new(),
                now_ms: now_ms(),
                shard_limit: 100,
                replication_factor: 1,
            })
            .await
            .unwrap();
        node.shutdown().await;

        let node = Node::start(config(), storage).await.unwrap();
        let state = node.control().state();
        assert_eq!(
            state.cluster.as_ref().unwrap().token_key_hex,
            key_before,
            "the token key survives restarts"
        );
        assert!(state.streams.contains_key("kept"));
        wait_until(&node, "the stream is ACTIVE", |state| {
            state
                .streams
                .get("kept")
                .is_some_and(|stream| stream.status == StreamStatus::Active)
        })
        .await;
        node.shutdown().await;
    }
}
