//! The node itself: its configuration, the state its modules share (the metadata replica, the
//! local shard replicas, what liveness and the agent remember), start-up of the background tasks
//! and shutdown. The work is done in the modules named in the crate's documentation; each adds
//! the methods it owns to [`Node`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::RwLock;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use riffle_control::ControlPlane;
use riffle_control::ControlState;
use riffle_control::scheduler::Policy;
use riffle_raft::AwakeSet;
use riffle_raft::GroupOptions;
use riffle_raft::RaftClient;
use riffle_shard::shard::ShardReplica;
use riffle_storage::Storage;
use riffle_types::TokenKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::beacon::Beacon;
use crate::error::NodeError;
use crate::liveness::Led;
use crate::liveness::PeerHealth;
use crate::peer::LeaderOf;
use crate::peer::PeerClient;
use crate::routing::LeaderCache;
use crate::routing::LocalShards;

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

/// A running node.
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) peers: Option<Arc<dyn PeerClient>>,
    pub(crate) control: OnceLock<ControlPlane>,
    pub(crate) shards: LocalShards,
    pub(crate) shard_options: GroupOptions,
    pub(crate) token_key: RwLock<Option<TokenKey>>,
    pub(crate) health: RwLock<HashMap<u64, PeerHealth>>,
    /// UDP pings answered outside the runtime (see [`crate::beacon`]); without it (tests on the
    /// in-process network) only the peer-protocol pings tell liveness.
    pub(crate) beacon: OnceLock<Arc<Beacon>>,
    /// Which node leads each shard group, as last learned (answers and hints).
    pub(crate) leader_cache: LeaderCache,
    /// The local groups this node leads, as pings report them.
    pub(crate) leading: RwLock<Vec<LeaderOf>>,
    /// Which local shard groups this node leads, by group. Only awake groups can change
    /// leadership, so only they are re-checked.
    pub(crate) leading_groups: Mutex<HashMap<u64, Led>>,
    /// When this node last asked each group it leads to hand leadership over.
    pub(crate) transfers: Mutex<HashMap<u64, Instant>>,
    /// When the scheduler last ran here (it runs on the metadata leader, once a second).
    pub(crate) last_schedule: Mutex<Option<Instant>>,
    /// Local shard groups that are awake (ticking).
    pub(crate) awake: Arc<AwakeSet>,
    /// The control state the local replicas were last fully reconciled with.
    pub(crate) synced_state: Mutex<Option<Arc<ControlState>>>,
    pub(crate) started_at: Instant,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
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
            tokio::spawn(crate::agent::run_agent(self.clone())),
            tokio::spawn(crate::liveness::run_liveness(self.clone())),
            tokio::spawn(crate::hibernation::run_hibernation(self.clone())),
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

    pub(crate) fn is_stopping(&self) -> bool {
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
            .and_then(|cluster| crate::membership::decode_key(&cluster.token_key_hex))?;
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

    pub(crate) fn raft_client(&self) -> Option<Arc<dyn RaftClient>> {
        self.peers.clone().map(|peers| peers as Arc<dyn RaftClient>)
    }
}
