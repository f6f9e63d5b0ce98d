//! One node's runtime: its metadata replica, its shard replicas, the agent that keeps the local
//! replicas in line with the control state and drives stream lifecycles, and the routing of
//! data operations to shard leaders (local call or forwarded to the leader's node).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::RwLock;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use futures_util::StreamExt;
use riffle_control::ControlCommand;
use riffle_control::ControlPlane;
use riffle_control::ControlState;
use riffle_control::model::ConsumerStatus;
use riffle_control::model::NodeRecord;
use riffle_control::model::ShardRecord;
use riffle_control::model::ShardState;
use riffle_control::model::StreamRecord;
use riffle_control::model::StreamStatus;
use riffle_control::plane::CONTROL_GROUP;
use riffle_control::plane::ControlMachine;
use riffle_control::scheduler;
use riffle_control::scheduler::Observed;
use riffle_control::scheduler::Policy;
use riffle_control::scheduler::ShardLoad;
use riffle_raft::AwakeSet;
use riffle_raft::Group;
use riffle_raft::GroupOptions;
use riffle_raft::RaftClient;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardMachine;
use riffle_shard::shard::ShardReplica;
use riffle_storage::Storage;
use riffle_storage::StorageError;
use riffle_types::KinesisError;
use riffle_types::TokenKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::beacon::Beacon;
use crate::peer::HibernateRequest;
use crate::peer::JoinRequest;
use crate::peer::LeaderOf;
use crate::peer::PeerClient;
use crate::peer::PeerForwarder;
use crate::routing::LeaderCache;
use crate::serve::LocalShards;

/// A group that has served nothing since it started sleeps after this much quiet (or after
/// `hibernate_after` if that is shorter).
const NEW_GROUP_QUIET: Duration = Duration::from_secs(2);

/// After a leader's node goes down, the surviving voters of its groups campaign this far apart.
/// Longer than the skew between two nodes' detections (pings go out every 500 ms on each node,
/// unsynchronised): were the second candidate to start before the first, they would split the
/// vote and the group would fall back to election timeouts.
const TAKEOVER_STAGGER: Duration = Duration::from_millis(750);

/// Groups put to sleep at once by one hibernation pass.
const HIBERNATE_CONCURRENCY: usize = 32;

/// New replicas started by one reconcile pass (about one pass a second). Every started group
/// is awake (ticking, electing, heartbeating) until it hibernates a few seconds later; starting
/// thousands at once (a stream of 10,000 shards, a restart) swamps the node with timers and
/// elections. The nodes walk the groups in the same order, so a group's voters start together.
const STARTS_PER_PASS: usize = 200;

/// What a node needs to know about itself and its cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    pub az: String,
    /// Advertised address of the Kinesis API.
    pub api_addr: String,
    /// Advertised address of the peer (node-to-node) service.
    pub peer_addr: String,
    /// The metadata group's voters: `(node id, peer address)`, this node included. Empty for a
    /// single-node cluster or a node that joins.
    pub peers: Vec<(u64, String)>,
    /// A node that joins an existing cluster asks this node (by id; its address is known to
    /// the transport) to let it in. It becomes a learner of the metadata group.
    pub join_via: Option<u64>,
    /// Account id and region shown in ARNs and messages.
    pub account: String,
    pub region: String,
    /// Open-shard limit across all streams (DescribeLimits' ShardLimit).
    pub shard_limit: u32,
    /// Replicas per shard (capped by the number of nodes).
    pub replication_factor: u32,
    /// How often retention trimming runs.
    pub retention_interval: Duration,
    /// A shard group quiet for this long (and fully replicated) stops ticking.
    pub hibernate_after: Duration,
    /// A node not answering pings for this long is considered down.
    pub node_down_after: Duration,
    /// Resharding, leader placement and replica repair (what the metadata leader schedules).
    pub scheduler: Policy,
}

impl NodeConfig {
    /// A single-node configuration with defaults, for tests and the embedded default.
    pub fn single(node_id: u64) -> NodeConfig {
        NodeConfig {
            node_id,
            az: "az-a".into(),
            api_addr: String::new(),
            peer_addr: String::new(),
            peers: Vec::new(),
            join_via: None,
            account: "000000000000".into(),
            region: "us-east-1".into(),
            shard_limit: riffle_types::limits::DEFAULT_SHARD_LIMIT,
            replication_factor: 3,
            retention_interval: Duration::from_secs(60),
            hibernate_after: Duration::from_secs(10),
            node_down_after: Duration::from_millis(1500),
            scheduler: Policy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("raft group failed: {0}")]
    Group(#[from] riffle_raft::GroupError),
    #[error("control plane: {0}")]
    Control(#[from] KinesisError),
    #[error("the node is stopping")]
    Stopping,
}

/// Why a data operation on a shard did not happen.
#[derive(Debug)]
pub enum DataError {
    /// The shard is sealed: nothing was written; the records belong to a child shard.
    Closed,
    /// Anything else, as the client should see it.
    Failed(KinesisError),
}

/// What this node knows about another node's health.
#[derive(Clone, Debug, Default)]
struct PeerHealth {
    last_ok: Option<Instant>,
    alive: bool,
    /// Groups the node said it leads, with the leading replica and write rates.
    leading: Vec<LeaderOf>,
}

/// A local group this node leads, with its measured write rate.
#[derive(Clone, Copy, Debug)]
struct Led {
    replica: u64,
    /// `(bytes, records)` appended as of `at`.
    totals: (u64, u64),
    at: Instant,
    bytes_per_sec: f64,
    records_per_sec: f64,
}

impl Led {
    fn new(replica: u64, totals: (u64, u64)) -> Led {
        Led {
            replica,
            totals,
            at: Instant::now(),
            bytes_per_sec: 0.0,
            records_per_sec: 0.0,
        }
    }

    /// Folds the totals now into the smoothed rates (an exponential average over a few
    /// seconds: one busy second does not make a hot shard, a sustained load does).
    fn sample(&mut self, totals: (u64, u64)) {
        const WEIGHT: f64 = 0.3;
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        if elapsed < 0.1 {
            return;
        }
        let bytes = totals.0.saturating_sub(self.totals.0) as f64 / elapsed;
        let records = totals.1.saturating_sub(self.totals.1) as f64 / elapsed;
        self.bytes_per_sec += WEIGHT * (bytes - self.bytes_per_sec);
        self.records_per_sec += WEIGHT * (records - self.records_per_sec);
        self.totals = totals;
        self.at = now;
    }
}

/// A running node.
pub struct Node {
    config: NodeConfig,
    storage: Arc<dyn Storage>,
    pub(crate) peers: Option<Arc<dyn PeerClient>>,
    control: OnceLock<ControlPlane>,
    shards: LocalShards,
    shard_options: GroupOptions,
    token_key: RwLock<Option<TokenKey>>,
    health: RwLock<HashMap<u64, PeerHealth>>,
    /// UDP pings answered outside the runtime (see [`crate::beacon`]); without it (tests on the
    /// in-process network) only the peer-protocol pings tell liveness.
    beacon: OnceLock<Arc<Beacon>>,
    /// Which node leads each shard group, as last learned (answers and hints).
    pub(crate) leader_cache: LeaderCache,
    /// The local groups this node leads, as pings report them.
    leading: RwLock<Vec<LeaderOf>>,
    /// Which local shard groups this node leads, by group. Only awake groups can change
    /// leadership, so only they are re-checked.
    leading_groups: Mutex<HashMap<u64, Led>>,
    /// When this node last asked each group it leads to hand leadership over.
    transfers: Mutex<HashMap<u64, Instant>>,
    /// When the scheduler last ran here (it runs on the metadata leader, once a second).
    last_schedule: Mutex<Option<Instant>>,
    /// Local shard groups that are awake (ticking).
    awake: Arc<AwakeSet>,
    /// The control state the local replicas were last fully reconciled with.
    synced_state: Mutex<Option<Arc<ControlState>>>,
    started_at: Instant,
    pub(crate) stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    /// Creates the node without starting anything, so that its peer service can be serving
    /// (peers must reach this node while its groups elect leaders) before [`Node::start`].
    pub fn new(
        config: NodeConfig,
        storage: Arc<dyn Storage>,
        peers: Option<Arc<dyn PeerClient>>,
    ) -> Arc<Node> {
        let (stop, _) = watch::channel(false);
        let awake = Arc::new(AwakeSet::default());
        let mut shard_options = GroupOptions::shard();
        shard_options.awake = Some(awake.clone());
        Arc::new(Node {
            config,
            storage,
            peers,
            control: OnceLock::new(),
            shards: LocalShards::new(stop.subscribe()),
            shard_options,
            token_key: RwLock::new(None),
            health: RwLock::new(HashMap::new()),
            beacon: OnceLock::new(),
            leader_cache: LeaderCache::default(),
            leading: RwLock::new(Vec::new()),
            leading_groups: Mutex::new(HashMap::new()),
            transfers: Mutex::new(HashMap::new()),
            last_schedule: Mutex::new(None),
            awake,
            synced_state: Mutex::new(None),
            started_at: Instant::now(),
            stop,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Lets liveness also count the answers of a [`Beacon`] (call before [`Node::start`]).
    pub fn attach_beacon(&self, beacon: Arc<Beacon>) {
        let _ = self.beacon.set(beacon);
    }

    /// Starts the node: the metadata replica first (bootstrapping the cluster from the
    /// configured voters when the storage is new), then its shard replicas and background
    /// tasks. Returns once the metadata group has a leader and this node is registered.
    pub async fn start(self: &Arc<Self>) -> Result<(), NodeError> {
        self.start_control().await?;
        self.join_cluster().await?;
        self.reconcile().await;
        let tasks = vec![
            tokio::spawn(run_agent(self.clone())),
            tokio::spawn(run_liveness(self.clone())),
            tokio::spawn(run_hibernation(self.clone())),
        ];
        if let Ok(mut slot) = self.tasks.lock() {
            slot.extend(tasks);
        }
        Ok(())
    }

    /// A started single-node cluster (tests and the embedded default).
    pub async fn start_single(
        config: NodeConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<Node>, NodeError> {
        let node = Node::new(config, storage, None);
        node.start().await?;
        Ok(node)
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    pub fn id(&self) -> u64 {
        self.config.node_id
    }

    /// The control plane. Panics if called before [`Node::start`] returned, which the API
    /// never does (it is built on a started node).
    pub fn control(&self) -> &ControlPlane {
        self.control
            .get()
            .expect("the control plane exists once Node::start has returned")
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The key that authenticates shard iterators and page tokens cluster-wide.
    pub fn token_key(&self) -> Option<TokenKey> {
        if let Ok(slot) = self.token_key.read()
            && slot.is_some()
        {
            return slot.clone();
        }
        let state = self.control.get()?.state();
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
        self.shards.get(group)
    }

    /// The shard replicas running here, and the shard service over them.
    pub fn shards(&self) -> &LocalShards {
        &self.shards
    }

    /// The control plane, if [`Node::start`] got that far (peers may call before).
    pub(crate) fn control_if_started(&self) -> Option<&ControlPlane> {
        self.control.get()
    }

    /// The groups this node leads, as last refreshed (what pings report).
    pub(crate) fn leading_report(&self) -> Vec<LeaderOf> {
        self.leading
            .read()
            .map(|leading| leading.clone())
            .unwrap_or_default()
    }

    /// Nodes this node currently believes alive (itself included).
    pub fn alive_nodes(&self) -> HashSet<u64> {
        let mut alive: HashSet<u64> = match self.health.read() {
            Ok(health) => health
                .iter()
                .filter(|(_, h)| h.alive)
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => HashSet::new(),
        };
        alive.insert(self.config.node_id);
        alive
    }

    /// Whether `node` answered a ping in the last second (this node always has): stricter than
    /// "not down", for handing it leadership (a node killed a moment ago is not down yet).
    fn answered_recently(&self, node: u64) -> bool {
        node == self.config.node_id
            || self
                .health
                .read()
                .map(|health| {
                    health.get(&node).is_some_and(|peer| {
                        peer.alive
                            && peer
                                .last_ok
                                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
                    })
                })
                .unwrap_or(false)
    }

    /// Whether liveness currently calls `node` down (never this node).
    pub(crate) fn is_down(&self, node: u64) -> bool {
        node != self.config.node_id
            && self
                .health
                .read()
                .map(|health| health.get(&node).is_some_and(|peer| !peer.alive))
                .unwrap_or(false)
    }

    /// Stops the background tasks and every group. Storage stays as it is.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Some(beacon) = self.beacon.get() {
            beacon.stop();
        }
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .map(|mut tasks| tasks.drain(..).collect())
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
        let replicas = self.shards.drain();
        for replica in replicas {
            replica.shutdown().await;
        }
        if let Some(control) = self.control.get() {
            control.group().shutdown().await;
        }
    }

    fn raft_client(&self) -> Option<Arc<dyn RaftClient>> {
        self.peers.clone().map(|peers| peers as Arc<dyn RaftClient>)
    }

    /// Starts the metadata replica (reachable by peers at once) and waits until the group has a
    /// leader and this node has applied everything committed before now.
    async fn start_control(&self) -> Result<(), NodeError> {
        let is_new = !self.storage.groups().contains(&CONTROL_GROUP);
        if is_new {
            let storage = self.storage.clone();
            tokio::task::spawn_blocking(move || storage.create_group(CONTROL_GROUP))
                .await
                .map_err(|error| StorageError::Io(std::io::Error::other(error)))??;
        }
        let (machine, watch) = ControlMachine::new();
        let group = Group::start(
            self.storage.clone(),
            CONTROL_GROUP,
            self.config.node_id,
            machine,
            &GroupOptions::control(),
            self.raft_client(),
        )
        .await?;
        // Every voter bootstraps with the same membership, which is safe; on restart it is a
        // no-op. Replica ids of the metadata group are node ids.
        let mut voters: BTreeMap<u64, ReplicaNode> = self
            .config
            .peers
            .iter()
            .map(|(id, addr)| {
                (
                    *id,
                    ReplicaNode {
                        node: *id,
                        addr: addr.clone(),
                        az: String::new(),
                    },
                )
            })
            .collect();
        voters.insert(
            self.config.node_id,
            ReplicaNode {
                node: self.config.node_id,
                addr: self.config.peer_addr.clone(),
                az: self.config.az.clone(),
            },
        );
        if self.config.join_via.is_none() {
            group.bootstrap(voters).await?;
            group.campaign_if_sole_voter().await?;
        }
        let forwarder = self
            .peers
            .clone()
            .map(|peers| Arc::new(PeerForwarder(peers)) as Arc<_>);
        if self
            .control
            .set(ControlPlane::new(group, watch, forwarder))
            .is_err()
        {
            return Ok(());
        }
        let plane = self.control();
        if is_new && let Some(via) = self.config.join_via {
            self.ask_to_join(via).await?;
        }
        // Wait as long as it takes: peers may start later.
        let mut waited = 0u32;
        loop {
            if self.is_stopping() {
                return Err(NodeError::Stopping);
            }
            // A joining node learns where the others are from the log it receives.
            self.learn_addresses(&plane.state());
            match plane.sync().await {
                Ok(()) => break,
                Err(error) => {
                    waited += 1;
                    if waited.is_multiple_of(3) {
                        tracing::info!(%error, "waiting for the metadata group to elect a leader");
                    }
                }
            }
        }
        Ok(())
    }

    /// Tells the transport where every registered node is.
    fn learn_addresses(&self, state: &ControlState) {
        if let Some(peers) = &self.peers {
            let addresses: Vec<(u64, String)> = state
                .nodes
                .values()
                .map(|node| (node.id, node.peer_addr.clone()))
                .collect();
            peers.learn_addresses(&addresses);
        }
    }

    /// Asks node `via` (any member) to add this node to the cluster, until it says yes.
    async fn ask_to_join(&self, via: u64) -> Result<(), NodeError> {
        let Some(peers) = &self.peers else {
            return Err(NodeError::Control(KinesisError::invalid_argument(
                "joining needs a peer transport",
            )));
        };
        let request = JoinRequest {
            node_id: self.config.node_id,
            peer_addr: self.config.peer_addr.clone(),
            api_addr: self.config.api_addr.clone(),
            az: self.config.az.clone(),
        };
        let mut attempts = 0u32;
        loop {
            if self.is_stopping() {
                return Err(NodeError::Stopping);
            }
            match peers.join(via, request.clone()).await {
                Ok(Ok(())) => {
                    tracing::info!(via, "joined the cluster as a metadata learner");
                    return Ok(());
                }
                Ok(Err(error)) => {
                    if error.code != riffle_types::ErrorCode::ServiceUnavailable {
                        return Err(NodeError::Control(error));
                    }
                    attempts += 1;
                    if attempts % 10 == 1 {
                        tracing::info!(via, %error, "waiting to join the cluster");
                    }
                }
                Err(error) => {
                    attempts += 1;
                    if attempts % 10 == 1 {
                        tracing::info!(via, %error, "waiting to join the cluster");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Lets a new node in: registers it and adds it to the metadata group as a learner (on the
    /// metadata leader; another node forwards the request there).
    pub async fn serve_join(&self, request: JoinRequest) -> Result<(), KinesisError> {
        let error = Err;
        let Some(control) = self.control.get() else {
            return error(KinesisError::unavailable("this node has not started yet"));
        };
        if !control.is_leader() {
            let (Some(leader), Some(peers)) = (control.leader(), &self.peers) else {
                return error(KinesisError::unavailable("no metadata leader known"));
            };
            return match peers.join(leader, request).await {
                Ok(answer) => answer,
                Err(failure) => error(KinesisError::unavailable(failure.to_string())),
            };
        }
        if request.node_id == 0 {
            return error(KinesisError::invalid_argument("node ids are positive"));
        }
        let record = NodeRecord {
            id: request.node_id,
            peer_addr: request.peer_addr.clone(),
            api_addr: request.api_addr.clone(),
            az: request.az.clone(),
            draining: false,
        };
        if let Some(peers) = &self.peers {
            peers.learn_addresses(&[(record.id, record.peer_addr.clone())]);
        }
        if let Err(failure) = control
            .propose(ControlCommand::RegisterNode { node: record })
            .await
        {
            return error(failure);
        }
        let node = ReplicaNode {
            node: request.node_id,
            addr: request.peer_addr,
            az: request.az,
        };
        match control.group().add_learner(request.node_id, node).await {
            Ok(()) => Ok(()),
            Err(failure) => error(KinesisError::unavailable(format!(
                "cannot add the learner: {failure}"
            ))),
        }
    }

    /// Makes sure the cluster is initialized and this node is registered.
    async fn join_cluster(&self) -> Result<(), NodeError> {
        let control = self.control();
        if control.state().cluster.is_none() {
            let key: [u8; 32] = rand::random();
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            control
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
            draining: false,
        };
        if control.state().nodes.get(&record.id) != Some(&record) {
            control
                .propose(ControlCommand::RegisterNode { node: record })
                .await?;
        }
        Ok(())
    }

    /// One pass of the agent: local replicas follow the state; on the metadata leader,
    /// lifecycles move forward and observed shard leaders are recorded.
    async fn reconcile(&self) {
        let control = self.control();
        let state = control.state();
        // The replica set only changes with the state (or after a failed start): skip the walk
        // over every shard otherwise, idle nodes with thousands of shards must stay idle.
        let unchanged = self
            .synced_state
            .lock()
            .ok()
            .and_then(|synced| synced.as_ref().map(|synced| Arc::ptr_eq(synced, &state)))
            .unwrap_or(false);
        if !unchanged {
            self.learn_addresses(&state);
            let complete = self.sync_local_replicas(&state).await;
            if let Ok(mut synced) = self.synced_state.lock() {
                *synced = complete.then(|| state.clone());
            }
        }
        if control.is_leader() {
            self.record_shard_leaders(&state).await;
            self.advance_lifecycles(&state).await;
            self.schedule(&state).await;
        }
        self.drive_led_shards(&state).await;
    }

    /// Starts replicas placed on this node and drops those no longer in the state.
    /// Returns whether every wanted replica runs (else the next pass retries).
    async fn sync_local_replicas(&self, state: &ControlState) -> bool {
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

    /// What every node (this one included) last said it leads: `(node, group and rates)`.
    fn reported_leaders(&self) -> Vec<(u64, LeaderOf)> {
        let mut reported = Vec::new();
        if let Ok(health) = self.health.read() {
            for (node, peer) in health.iter().filter(|(_, peer)| peer.alive) {
                reported.extend(peer.leading.iter().map(|leader| (*node, *leader)));
            }
        }
        if let Ok(leading) = self.leading.read() {
            reported.extend(leading.iter().map(|leader| (self.config.node_id, *leader)));
        }
        reported
    }

    /// Which node leads each shard group, from this node's replicas and the last pings.
    fn observed_leaders(&self) -> HashMap<u64, u64> {
        self.reported_leaders()
            .into_iter()
            .map(|(node, leader)| (leader.group, node))
            .collect()
    }

    /// Metadata leader: commits shard leaders that changed (for routing and status).
    async fn record_shard_leaders(&self, state: &ControlState) {
        let observed = self.observed_leaders();
        let changed: Vec<(u64, u64)> = state
            .streams
            .values()
            .flat_map(|stream| stream.shards.iter())
            .filter_map(|shard| {
                let node = *observed.get(&shard.group)?;
                (shard.leader != Some(node)).then_some((shard.group, node))
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        if let Err(error) = self
            .control()
            .propose(ControlCommand::ShardLeaders { leaders: changed })
            .await
        {
            tracing::debug!(%error, "cannot record shard leaders; will retry");
        }
    }

    /// Metadata-leader duties: CREATING/UPDATING → ACTIVE, seal replaced shards, finish deletes.
    async fn advance_lifecycles(&self, state: &ControlState) {
        for stream in state.streams.values() {
            let result = match stream.status {
                StreamStatus::Creating | StreamStatus::Updating => {
                    self.advance_stream(stream).await
                }
                StreamStatus::Deleting => self
                    .control()
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
            // Consumers need nothing from the shards: CREATING becomes ACTIVE and DELETING goes
            // away on the next pass.
            for consumer in stream.consumers.values() {
                let command = match consumer.status {
                    ConsumerStatus::Creating => ControlCommand::ConsumerActive {
                        stream: stream.name.clone(),
                        name: consumer.name.clone(),
                        created_ms: consumer.created_ms,
                    },
                    ConsumerStatus::Deleting => ControlCommand::ConsumerDeleted {
                        stream: stream.name.clone(),
                        name: consumer.name.clone(),
                        created_ms: consumer.created_ms,
                    },
                    ConsumerStatus::Active => continue,
                };
                if let Err(error) = self.control().propose(command).await {
                    tracing::warn!(stream = %stream.name, consumer = %consumer.name, %error, "consumer lifecycle step failed; will retry");
                }
            }
        }
    }

    async fn advance_stream(&self, stream: &StreamRecord) -> Result<(), KinesisError> {
        // Every open shard must have a leader before anything else moves.
        let observed = self.observed_leaders();
        if stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .any(|shard| !observed.contains_key(&shard.group))
        {
            return Ok(());
        }
        for shard in stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Closing)
        {
            let sealed_at = match self.seal_shard(shard).await {
                Ok(sealed_at) => sealed_at,
                Err(DataError::Failed(error)) => return Err(error),
                Err(DataError::Closed) => {
                    return Err(KinesisError::internal("seal answered closed"));
                }
            };
            self.control()
                .propose(ControlCommand::ShardSealed {
                    name: stream.name.clone(),
                    created_ms: stream.created_ms,
                    shard: shard.index,
                    sealed_at,
                    now_ms: now_ms(),
                })
                .await?;
        }
        self.control()
            .propose(ControlCommand::StreamActive {
                name: stream.name.clone(),
                created_ms: stream.created_ms,
            })
            .await?;
        Ok(())
    }

    /// Metadata leader, at most once a second: runs the scheduler over the state and what this
    /// node observes, and proposes its decisions.
    async fn schedule(&self, state: &ControlState) {
        if let Ok(mut last) = self.last_schedule.lock() {
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let observed = self.observe();
        let policy = Policy {
            shard_limit: self.config.shard_limit,
            ..self.config.scheduler.clone()
        };
        for command in scheduler::plan(state, &observed, &policy) {
            let name = command.name();
            match &command {
                ControlCommand::ReshardStep {
                    name: stream,
                    reason,
                    ..
                } => tracing::info!(stream, reason, "resharding"),
                ControlCommand::StartReplicaMove {
                    name: stream,
                    shard,
                    to_node,
                    reason,
                    ..
                } => tracing::info!(stream, shard, to_node, reason, "moving a replica"),
                _ => {}
            }
            if let Err(error) = self.control().propose(command).await {
                tracing::debug!(command = name, %error, "scheduler decision not taken; will retry");
            }
        }
    }

    /// What the scheduler needs to know that is not in the state: down nodes (and since when,
    /// as this node saw it), shard leaders and their write rates.
    fn observe(&self) -> Observed {
        let now = now_ms();
        let mut observed = Observed {
            now_ms: now,
            ..Observed::default()
        };
        if let Ok(health) = self.health.read() {
            for (node, peer) in health.iter().filter(|(_, peer)| !peer.alive) {
                let since = peer.last_ok.unwrap_or(self.started_at);
                let down_for = since.elapsed().as_millis() as u64;
                observed
                    .down_since_ms
                    .insert(*node, now.saturating_sub(down_for));
            }
        }
        for (node, leader) in self.reported_leaders() {
            observed.leaders.insert(leader.group, node);
            observed.load.insert(
                leader.group,
                ShardLoad {
                    bytes_per_sec: leader.write_bytes_per_sec as f64,
                    records_per_sec: leader.write_records_per_sec as f64,
                },
            );
        }
        observed
    }

    /// Drains a node (its leaders move away, nothing new is placed on it) or takes it back.
    pub async fn set_draining(&self, node: u64, draining: bool) -> Result<(), KinesisError> {
        self.control()
            .propose(ControlCommand::SetDraining { node, draining })
            .await
            .map(|_| ())
    }

    /// For every shard this node leads: carry out the scheduler's decisions that need the
    /// leader (replica moves through membership changes, handing leadership to the preferred
    /// node).
    async fn drive_led_shards(&self, state: &ControlState) {
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
    async fn hand_over(&self, shard: &ShardRecord, node: u64, replica: &ShardReplica) {
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

    /// Moves a replica: adds the new one as a learner, promotes it in place of the old one once
    /// it has caught up, then records the move. Each call takes the next step (state lives in
    /// the group's membership and the control state, so any leader resumes where another
    /// stopped). A move whose new replica's node stays down is given up.
    async fn drive_move(
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
    async fn tidy_membership(
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

    /// Recomputes which local groups this node leads (what pings report). Done once per
    /// liveness round rather than per ping, so that it costs O(groups) twice a second.
    fn refresh_leading(&self) {
        let Ok(mut groups) = self.leading_groups.lock() else {
            return;
        };
        let awake: HashSet<u64> = self.awake.snapshot().into_iter().collect();
        for &group in &awake {
            match self.local_shard(group) {
                Some(replica) if replica.group().is_leader() => {
                    let id = replica.group().replica();
                    let totals = replica.meter().totals();
                    groups
                        .entry(group)
                        .and_modify(|led| led.replica = id)
                        .or_insert_with(|| Led::new(id, totals));
                }
                _ => {
                    groups.remove(&group);
                }
            }
        }
        let mut leading: Vec<LeaderOf> = Vec::with_capacity(groups.len() + 1);
        for (group, led) in groups.iter_mut() {
            // A sleeping group takes no writes (a write wakes it first): once its rates have
            // decayed to nothing there is nothing to sample, and visiting thousands of them
            // every second is most of an idle node's work.
            let settled = led.bytes_per_sec < 0.5 && led.records_per_sec < 0.5;
            if (awake.contains(group) || !settled)
                && let Some(replica) = self.local_shard(*group)
            {
                led.sample(replica.meter().totals());
            }
            leading.push(LeaderOf {
                group: *group,
                replica: led.replica,
                write_bytes_per_sec: led.bytes_per_sec.round() as u64,
                write_records_per_sec: led.records_per_sec.round() as u64,
            });
        }
        drop(groups);
        if let Some(control) = self.control.get()
            && control.is_leader()
        {
            leading.push(LeaderOf {
                group: CONTROL_GROUP,
                replica: self.config.node_id,
                ..Default::default()
            });
        }
        if let Ok(mut slot) = self.leading.write() {
            *slot = leading;
        }
    }

    // ---------------------------------------------------------------------------------------
    // Liveness and hibernation.
    // ---------------------------------------------------------------------------------------

    /// Nodes to ping: every registered node and every configured voter, except this one.
    fn other_nodes(&self) -> Vec<u64> {
        let mut nodes: Vec<u64> = self.config.peers.iter().map(|(id, _)| *id).collect();
        if let Some(control) = self.control.get() {
            nodes.extend(control.state().nodes.keys().copied());
        }
        nodes.sort_unstable();
        nodes.dedup();
        nodes.retain(|node| *node != self.config.node_id);
        nodes
    }

    /// One liveness round: pings every other node through the peer protocol (the answer says
    /// which groups it leads) and counts a node as answering if either that ping or the beacon
    /// heard from it. A node heard from by neither for `node_down_after` is down.
    async fn ping_all(self: &Arc<Self>) {
        let Some(peers) = &self.peers else { return };
        let nodes = self.other_nodes();
        let beacon = self.beacon.get();
        if let Some(beacon) = beacon {
            // The transport's address book (configured peers, then the control state).
            let targets = nodes
                .iter()
                .filter_map(|node| Some((*node, peers.address_of(*node)?)))
                .collect();
            beacon.set_targets(targets);
        }
        let pings = nodes.iter().map(|node| {
            let call = peers.ping(*node, self.config.node_id);
            async move {
                (
                    *node,
                    tokio::time::timeout(Duration::from_secs(1), call).await,
                )
            }
        });
        let results = futures_util::future::join_all(pings).await;
        let now = Instant::now();
        let mut went_down = Vec::new();
        let mut came_back = Vec::new();
        if let Ok(mut health) = self.health.write() {
            for (node, result) in results {
                let entry = health.entry(node).or_default();
                let was_heard = entry.last_ok.is_some();
                if let Ok(Ok(response)) = result {
                    entry.last_ok = Some(now);
                    entry.leading = response.leading;
                }
                if let Some(heard) = beacon.and_then(|beacon| beacon.last_heard(node)) {
                    entry.last_ok = entry.last_ok.max(Some(heard));
                }
                // Give nodes a grace period at startup before calling them down.
                let since = entry.last_ok.unwrap_or(self.started_at);
                let down = now.saturating_duration_since(since) >= self.config.node_down_after;
                if !down && entry.last_ok.is_some() {
                    if !entry.alive && was_heard {
                        came_back.push(node);
                    }
                    entry.alive = true;
                    continue;
                }
                if down && entry.alive {
                    went_down.push(node);
                }
                if down {
                    entry.alive = false;
                    entry.leading.clear();
                }
            }
        }
        for node in went_down {
            tracing::warn!(node, "node is down");
            self.wake_groups_on(node, true);
            self.take_over_groups_led_on(node).await;
        }
        for node in came_back {
            tracing::info!(node, "node is back");
            self.wake_groups_on(node, false);
        }
    }

    /// A node went down (groups it led must elect a new leader: they wake) or came back (it
    /// must catch up: every local group with a replica there wakes). Groups that only had a
    /// follower on a node that went down stay asleep: waking thousands of groups at once is
    /// what overloads the survivors.
    fn wake_groups_on(&self, node: u64, went_down: bool) {
        self.shards.for_each(|replica| {
            let group = replica.group();
            if !group.is_hibernating() {
                return;
            }
            let affected = if went_down {
                leader_on(group, node).is_some()
            } else {
                group
                    .members()
                    .iter()
                    .any(|(_, member)| member.node == node)
            };
            if affected {
                group.wake();
            }
        });
    }

    /// `node` went down: in every local group whose leader is there, the surviving voters start
    /// an election at once instead of waiting for election timeouts and leader leases to run out
    /// (see [`riffle_raft::Group::take_over_from`]). They go one at a time in replica
    /// id order, [`TAKEOVER_STAGGER`] apart, so that they do not split the vote; the next one
    /// tries only if no leader emerged (the first may have lost for want of the newest log: a
    /// quorum needs only one follower up to date).
    async fn take_over_groups_led_on(self: &Arc<Self>, node: u64) {
        let down = self.down_nodes();
        let mut candidates: Vec<(ShardReplica, u64, usize)> = Vec::new();
        self.shards.for_each(|replica| {
            let candidate = (|| {
                let group = replica.group();
                let leader = leader_on(group, node)?;
                let members = group.members();
                let up = |voter: &u64| {
                    members
                        .iter()
                        .any(|(id, at)| id == voter && !down.contains(&at.node))
                };
                // Voters are a BTreeSet: in replica id order.
                let rank = group
                    .membership()
                    .voters
                    .into_iter()
                    .filter(up)
                    .position(|voter| voter == group.replica())?;
                Some((replica.clone(), leader, rank))
            })();
            candidates.extend(candidate);
        });
        for (replica, leader, rank) in candidates {
            let node_handle = self.clone();
            let campaign = async move {
                if rank > 0 {
                    tokio::time::sleep(TAKEOVER_STAGGER * rank as u32).await;
                    if node_handle.is_stopping() {
                        return;
                    }
                }
                let group = replica.group();
                match group.take_over_from(leader).await {
                    Ok(true) => {
                        let started = Instant::now();
                        let elected = group
                            .wait_for_leader_other_than(leader, Duration::from_secs(10))
                            .await;
                        tracing::info!(
                            group = group.id(),
                            node,
                            rank,
                            ?elected,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "campaigned: the leader's node is down"
                        );
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!(group = group.id(), %error, "could not campaign"),
                }
            };
            tokio::spawn(campaign);
        }
    }

    /// Nodes this node currently believes down, sorted (what placement should avoid).
    pub fn down_nodes_list(&self) -> Vec<u64> {
        let mut nodes: Vec<u64> = self.down_nodes().into_iter().collect();
        nodes.sort_unstable();
        nodes
    }

    /// Nodes known to the cluster that this node currently believes down.
    fn down_nodes(&self) -> HashSet<u64> {
        match self.health.read() {
            Ok(health) => health
                .iter()
                .filter(|(_, peer)| !peer.alive)
                .map(|(node, _)| *node)
                .collect(),
            Err(_) => HashSet::new(),
        }
    }

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
        let needed = if group.has_served() {
            self.config.hibernate_after
        } else {
            self.config.hibernate_after.min(NEW_GROUP_QUIET)
        };
        group.idle_for() >= needed
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

async fn run_agent(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut state = node.control().watch();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
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
                let snapshot = node.control().state();
                node.trim_retention(&snapshot).await;
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}

async fn run_liveness(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                // Pings go out every round (failure detection); what this node leads changes
                // rarely and costs a pass over every group, so it is refreshed every other round.
                round += 1;
                if round % 2 == 1 {
                    node.refresh_leading();
                }
                node.ping_all().await;
            }
        }
    }
}

async fn run_hibernation(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => node.hibernate_quiet_groups().await,
        }
    }
}

/// The group's current leader, if it is a replica on `node`.
fn leader_on(group: &Group<ShardMachine>, node: u64) -> Option<u64> {
    let leader = group.leader()?;
    group
        .members()
        .iter()
        .any(|(id, member)| *id == leader && member.node == node)
        .then_some(leader)
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
