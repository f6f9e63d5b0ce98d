//! Three nodes in one process over the in-process network, driven through the Kinesis API
//! handlers, under message loss and delay, partitions, an isolated leader, a crash with restart,
//! and resharding racing a crash. After each fault heals, every shard is read back and checked
//! with `riffle-chaos`'s history checker: no acknowledged record lost or moved, none invented or
//! changed, none stored more often than its writes allow, and each writer's records (one
//! partition key each) in the order they were written, across split and merged shards too.
//!
//! The scheduler's work is checked here as well: leaders spread over the nodes and come back to
//! a node that returns, a node down past the repair grace has its replicas rebuilt, and an
//! on-demand stream under load gains shards by itself.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use riffle_api::Api;
use riffle_api::Operation;
use riffle_api::wire;
use riffle_api::wire::Format;
use riffle_api::wire::Map;
use riffle_api::wire::Value;
use riffle_chaos::history::History;
use riffle_chaos::load::Load;
use riffle_chaos::load::LoadConfig;
use riffle_chaos::read::read_stream;
use riffle_client::Error as ClientError;
use riffle_client::Kinesis;
use riffle_client::NoAnswerKind;
use riffle_client::ServiceError;
use riffle_control::model::ShardState;
use riffle_node::Node;
use riffle_node::NodeConfig;
use riffle_node::peer::PeerClient;
use riffle_node::transport::sim::SimNetwork;
use riffle_storage::MemStorage;
use riffle_storage::Storage;
use riffle_tests::assert_checked;
use riffle_types::HashKeyRange;

const NODES: u64 = 3;

struct SimCluster {
    network: Arc<SimNetwork>,
    storages: Vec<Arc<dyn Storage>>,
    nodes: Vec<Option<Arc<Node>>>,
    apis: Vec<Option<Arc<Api>>>,
}

fn config(id: u64) -> NodeConfig {
    let mut config = NodeConfig::single(id);
    config.az = format!("az-{}", (b'a' + (id - 1) as u8) as char);
    config.peers = (1..=NODES)
        .map(|peer| (peer, format!("sim-{peer}")))
        .collect();
    config.peer_addr = format!("sim-{id}");
    config.node_down_after = Duration::from_secs(1);
    config.hibernate_after = Duration::from_secs(2);
    // Short enough for tests to watch the scheduler act.
    config.scheduler.repair_grace_ms = 3_000;
    config.scheduler.on_demand.split_records_per_sec = 150.0;
    config.scheduler.on_demand.split_cooldown_ms = 3_000;
    config
}

impl SimCluster {
    async fn start() -> SimCluster {
        let network = SimNetwork::new();
        let storages: Vec<Arc<dyn Storage>> = (0..NODES)
            .map(|_| Arc::new(MemStorage::new()) as Arc<dyn Storage>)
            .collect();
        let mut cluster = SimCluster {
            network,
            storages,
            nodes: vec![None, None, None],
            apis: vec![None, None, None],
        };
        let starts: Vec<_> = (1..=NODES).map(|id| cluster.boot(id)).collect();
        for node in futures_util::future::join_all(starts).await {
            let id = node.id() as usize;
            cluster.apis[id - 1] = Some(Arc::new(Api::new(node.clone())));
            cluster.nodes[id - 1] = Some(node);
        }
        cluster
    }

    /// Creates node `id` over its storage, makes it reachable, starts it.
    fn boot(&self, id: u64) -> impl std::future::Future<Output = Arc<Node>> + use<> {
        let client = self.network.client(id) as Arc<dyn PeerClient>;
        let node = Node::new(
            config(id),
            self.storages[(id - 1) as usize].clone(),
            Some(client),
        );
        self.network.register(&node);
        async move {
            node.start().await.expect("node starts");
            node
        }
    }

    fn api(&self, id: u64) -> Option<Arc<Api>> {
        self.apis.get((id - 1) as usize).cloned().flatten()
    }

    /// A node that joins the running cluster (as `--join` does) in `az`.
    async fn add_node(&mut self, id: u64, az: &str) {
        let mut config = config(id);
        config.peers = Vec::new();
        config.join_via = Some(2);
        config.az = az.to_string();
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let node = Node::new(
            config,
            storage.clone(),
            Some(self.network.client(id) as Arc<dyn PeerClient>),
        );
        self.network.register(&node);
        node.start().await.expect("the new node joins");
        assert_eq!(self.nodes.len() as u64, id - 1, "nodes join in id order");
        self.storages.push(storage);
        self.apis.push(Some(Arc::new(Api::new(node.clone()))));
        self.nodes.push(Some(node));
    }

    /// A running node's view of the control state.
    fn state(&self) -> Arc<riffle_control::ControlState> {
        self.nodes
            .iter()
            .flatten()
            .next()
            .expect("a node runs")
            .control()
            .state()
    }

    /// Stops node `id` as a crash would: it vanishes from the network; its storage stays.
    async fn crash(&mut self, id: u64) {
        self.network.unregister(id);
        self.apis[(id - 1) as usize] = None;
        if let Some(node) = self.nodes[(id - 1) as usize].take() {
            node.shutdown().await;
        }
    }

    async fn shutdown(mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.crash(id).await;
        }
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect::<Map>(),
    )
}

fn text(value: &str) -> Value {
    Value::String(value.to_string())
}

async fn call(
    api: &Api,
    operation: Operation,
    input: Value,
) -> Result<Value, riffle_types::KinesisError> {
    api.handle(operation, &input).await
}

async fn create_stream(cluster: &SimCluster, name: &str, shards: i64) {
    create(
        cluster,
        name,
        vec![
            ("StreamName", text(name)),
            ("ShardCount", Value::Int(shards)),
        ],
    )
    .await;
}

async fn create_on_demand_stream(cluster: &SimCluster, name: &str) {
    create(
        cluster,
        name,
        vec![
            ("StreamName", text(name)),
            (
                "StreamModeDetails",
                map(vec![("StreamMode", text("ON_DEMAND"))]),
            ),
        ],
    )
    .await;
}

async fn create(cluster: &SimCluster, name: &str, input: Vec<(&str, Value)>) {
    let api = cluster.api(1).expect("node 1 runs");
    call(&api, Operation::CreateStream, map(input))
        .await
        .expect("CreateStream");
    wait_active(&api, name, Duration::from_secs(10)).await;
}

/// Waits until the stream is ACTIVE (creation, or a reshard, finished).
async fn wait_active(api: &Api, name: &str, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        let summary = call(
            api,
            Operation::DescribeStreamSummary,
            map(vec![("StreamName", text(name))]),
        )
        .await
        .unwrap();
        let status = summary
            .as_map()
            .and_then(|m| m.get("StreamDescriptionSummary"))
            .and_then(|s| s.as_map())
            .and_then(|s| s.get("StreamStatus"))
            .and_then(|s| s.as_str())
            .map(str::to_string);
        if status.as_deref() == Some("ACTIVE") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {name} did not become ACTIVE within {timeout:?}");
}

/// Polls `condition` every 200 ms until it holds; panics with `what` after `timeout`.
async fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Kinesis API of the running nodes called in-process, with its input and output as JSON
/// would carry them over HTTP: each call goes to the next running node (a crashed node's slot
/// is empty). The history writers and the read-back run on it as on a real cluster.
#[derive(Clone)]
struct InProcess {
    apis: Arc<Mutex<Vec<Option<Arc<Api>>>>>,
    next: Arc<AtomicUsize>,
}

impl InProcess {
    fn new(apis: Arc<Mutex<Vec<Option<Arc<Api>>>>>) -> InProcess {
        InProcess {
            apis,
            next: Arc::default(),
        }
    }

    /// Node `api` alone.
    fn one(api: Arc<Api>) -> InProcess {
        InProcess::new(Arc::new(Mutex::new(vec![Some(api)])))
    }

    fn pick(&self) -> Option<Arc<Api>> {
        let apis = self.apis.lock().unwrap();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..apis.len()).find_map(|offset| apis[(start + offset) % apis.len()].clone())
    }
}

impl Kinesis for InProcess {
    fn call<O: riffle_client::Operation>(
        &self,
        input: &O,
    ) -> impl std::future::Future<Output = Result<O::Output, ClientError>> + Send {
        let api = self.pick();
        let body = serde_json::to_vec(input);
        async move {
            let api = api.ok_or_else(|| ClientError::NotSent("no node runs".into()))?;
            let body = body.map_err(|error| ClientError::Request(error.to_string()))?;
            let operation = Operation::parse(O::NAME)
                .ok_or_else(|| ClientError::Request(format!("no operation {}", O::NAME)))?;
            let input = wire::decode(Format::Json, &body)
                .map_err(|error| ClientError::Request(format!("{error:?}")))?;
            match api.handle(operation, &input).await {
                Ok(output) => {
                    serde_json::from_slice(&wire::encode(Format::Json, &output)).map_err(|error| {
                        ClientError::NoAnswer {
                            kind: NoAnswerKind::Body,
                            detail: error.to_string(),
                        }
                    })
                }
                Err(error) => {
                    let error = ServiceError {
                        code: error.code.type_name().to_string(),
                        message: error.message,
                        status: error.code.http_status(),
                    };
                    Err(if error.status >= 500 {
                        ClientError::Failed(error)
                    } else {
                        ClientError::Rejected(error)
                    })
                }
            }
        }
    }
}

/// Six writers (one partition key each, ten records a call) through the running nodes.
fn writers(apis: Arc<Mutex<Vec<Option<Arc<Api>>>>>, name: &str) -> Load {
    let config = LoadConfig {
        stream: name.to_string(),
        writers: 6,
        keys_per_writer: 1,
        records_per_key: 10,
        rate: 0,
        pause: Duration::from_millis(5),
        record_bytes: 0,
    };
    Load::start(InProcess::new(apis), config, Default::default())
}

/// Reads every shard back through `api` and checks it against the writers' history: no
/// acknowledged record lost or moved, none invented or changed, none stored more often than its
/// writes allow, and each writer's records (one partition key each, hence one chain of shards
/// through any resharding) in the order written, parents before children.
async fn check_through(api: &Arc<Api>, name: &str, history: &History) {
    let read = read_stream(
        &InProcess::one(api.clone()),
        name,
        std::time::Instant::now() + Duration::from_secs(60),
    )
    .await
    .unwrap_or_else(|error| panic!("reading {name} back: {error:#}"));
    assert_checked(&format!("node {}", api.node().id()), history, &read);
}

/// Runs writers through all nodes while `fault` runs, then checks every invariant.
async fn scenario<F, Fut>(name: &str, fault: F)
where
    F: FnOnce(Arc<Mutex<SimCluster>>, Arc<Mutex<Vec<Option<Arc<Api>>>>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cluster = SimCluster::start().await;
    create_stream(&cluster, name, 4).await;
    run_scenario(cluster, name, fault).await;
}

async fn run_scenario<F, Fut>(cluster: SimCluster, name: &str, fault: F)
where
    F: FnOnce(Arc<Mutex<SimCluster>>, Arc<Mutex<Vec<Option<Arc<Api>>>>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let apis = Arc::new(Mutex::new(cluster.apis.clone()));
    let cluster = Arc::new(Mutex::new(cluster));
    let mut load = writers(apis.clone(), name);
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault(cluster.clone(), apis.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let history = load.stop().await;
    let cluster = Arc::try_unwrap(cluster)
        .ok()
        .expect("no other cluster handle")
        .into_inner()
        .unwrap();
    cluster.network.heal();
    assert!(
        history.acknowledged() > 50,
        "too few writes succeeded ({}) to test anything",
        history.acknowledged()
    );
    // Read back through every node: each must see everything acknowledged.
    for id in 1..=cluster.nodes.len() as u64 {
        let api = cluster.api(id).expect("all nodes run after healing");
        check_through(&api, name, &history).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lossy_and_slow_network() {
    scenario("lossy", |cluster, _| async move {
        cluster.lock().unwrap().network.set_loss(0.05, 0.05);
        cluster
            .lock()
            .unwrap()
            .network
            .set_delay(Duration::from_millis(1), Duration::from_millis(15));
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.lock().unwrap().network.heal();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_minority() {
    scenario("partition", |cluster, _| async move {
        cluster.lock().unwrap().network.partition(&[1], &[2, 3]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster.lock().unwrap().network.heal();
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn isolated_metadata_leader() {
    scenario("isolated-leader", |cluster, _| async move {
        let leader = {
            let cluster = cluster.lock().unwrap();
            cluster
                .nodes
                .iter()
                .flatten()
                .find_map(|node| node.control().leader())
                .expect("a metadata leader")
        };
        let others: Vec<u64> = (1..=NODES).filter(|id| *id != leader).collect();
        cluster.lock().unwrap().network.isolate(leader, &others);
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster.lock().unwrap().network.heal();
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
}

/// Crashes node `id` while writers use the cluster (its API disappears from theirs too).
async fn crash_shared(cluster: &Mutex<SimCluster>, apis: &Mutex<Vec<Option<Arc<Api>>>>, id: u64) {
    let index = (id - 1) as usize;
    let taken = {
        let mut guard = cluster.lock().unwrap();
        guard.network.unregister(id);
        apis.lock().unwrap()[index] = None;
        guard.apis[index] = None;
        guard.nodes[index].take()
    };
    if let Some(node) = taken {
        node.shutdown().await;
    }
}

/// Restarts a crashed node over its storage and gives its API back to the writers.
async fn restart_shared(cluster: &Mutex<SimCluster>, apis: &Mutex<Vec<Option<Arc<Api>>>>, id: u64) {
    let index = (id - 1) as usize;
    let boot = cluster.lock().unwrap().boot(id);
    let node = boot.await;
    let api = Arc::new(Api::new(node.clone()));
    let mut guard = cluster.lock().unwrap();
    guard.apis[index] = Some(api.clone());
    guard.nodes[index] = Some(node);
    apis.lock().unwrap()[index] = Some(api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_and_restart() {
    scenario("crash", |cluster, apis| async move {
        crash_shared(&cluster, &apis, 2).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        restart_shared(&cluster, &apis, 2).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
}

/// The open shards' hash ranges, ordered.
fn open_ranges(state: &riffle_control::ControlState, name: &str) -> Vec<HashKeyRange> {
    let mut ranges: Vec<HashKeyRange> = state.streams[name]
        .shards
        .iter()
        .filter(|shard| shard.state == ShardState::Open)
        .map(|shard| shard.range)
        .collect();
    ranges.sort_by_key(|range| range.start);
    ranges
}

/// Calls an operation, retrying while the stream is busy with a previous reshard.
async fn call_when_active(api: &Api, name: &str, operation: Operation, input: Value) -> Value {
    wait_active(api, name, Duration::from_secs(30)).await;
    call(api, operation, input)
        .await
        .unwrap_or_else(|error| panic!("{operation:?}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_races_writes_and_a_crash() {
    scenario("reshard", |cluster, apis| async move {
        let api = cluster.lock().unwrap().api(1).expect("node 1 runs");
        let name = "reshard";
        // Split shard 0 (of four) in the middle of its range.
        let first = HashKeyRange::split_evenly(4)[0];
        let middle = first.start.0 + (first.end.0 - first.start.0) / 2 + 1;
        call_when_active(
            &api,
            name,
            Operation::SplitShard,
            map(vec![
                ("StreamName", text(name)),
                ("ShardToSplit", text("shardId-000000000000")),
                ("NewStartingHashKey", text(&middle.to_string())),
            ]),
        )
        .await;
        // A node dies while the stream reshards.
        crash_shared(&cluster, &apis, 3).await;
        call_when_active(
            &api,
            name,
            Operation::MergeShards,
            map(vec![
                ("StreamName", text(name)),
                ("ShardToMerge", text("shardId-000000000002")),
                ("AdjacentShardToMerge", text("shardId-000000000003")),
            ]),
        )
        .await;
        let answer = call_when_active(
            &api,
            name,
            Operation::UpdateShardCount,
            map(vec![
                ("StreamName", text(name)),
                ("TargetShardCount", Value::Int(6)),
                ("ScalingType", text("UNIFORM_SCALING")),
            ]),
        )
        .await;
        let answer = answer.as_map().cloned().unwrap_or_default();
        assert_eq!(answer.get("CurrentShardCount"), Some(&Value::Int(4)));
        assert_eq!(answer.get("TargetShardCount"), Some(&Value::Int(6)));
        restart_shared(&cluster, &apis, 3).await;
        wait_active(&api, name, Duration::from_secs(60)).await;
        let state = api.node().control().state();
        assert_eq!(open_ranges(&state, name), HashKeyRange::split_evenly(6));
        // Lineage: every shard but the first four has parents, merges two adjacent ones.
        for shard in &state.streams[name].shards[4..] {
            let parent = shard.parent.expect("a child names its parent");
            assert!(parent < shard.index);
            if let Some(adjacent) = shard.adjacent_parent {
                let ranges = (
                    state.streams[name].shards[parent as usize].range,
                    state.streams[name].shards[adjacent as usize].range,
                );
                assert!(ranges.0.is_adjacent(&ranges.1));
            }
        }
    })
    .await;
}

/// Open shards whose group each node's replica actually leads, per node.
fn leaders_per_node(cluster: &SimCluster, name: &str) -> BTreeMap<u64, usize> {
    let state = cluster.state();
    let mut counts = BTreeMap::new();
    for node in cluster.nodes.iter().flatten() {
        let led = state.streams[name]
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .filter(|shard| {
                node.local_shard(shard.group)
                    .is_some_and(|replica| replica.group().is_leader())
            })
            .count();
        counts.insert(node.id(), led);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaders_spread_and_return_to_a_restarted_node() {
    let mut cluster = SimCluster::start().await;
    create_stream(&cluster, "spread", 12).await;
    let even = |counts: &BTreeMap<u64, usize>| counts.values().all(|count| *count == 4);
    wait_until(
        Duration::from_secs(20),
        "4/4/4 leaders after creation",
        || even(&leaders_per_node(&cluster, "spread")),
    )
    .await;
    cluster.crash(3).await;
    wait_until(Duration::from_secs(20), "nodes 1 and 2 lead all 12", || {
        leaders_per_node(&cluster, "spread").values().sum::<usize>() == 12
    })
    .await;
    let node = cluster.boot(3).await;
    cluster.apis[2] = Some(Arc::new(Api::new(node.clone())));
    cluster.nodes[2] = Some(node);
    wait_until(
        Duration::from_secs(30),
        "4/4/4 leaders after node 3 returned",
        || {
            let counts = leaders_per_node(&cluster, "spread");
            counts.len() == 3 && even(&counts)
        },
    )
    .await;
    // Drain node 1: its leaders leave; undrain: they come back.
    let api = cluster.api(2).expect("node 2 runs");
    api.node().set_draining(1, true).await.unwrap();
    wait_until(Duration::from_secs(30), "node 1 drained", || {
        leaders_per_node(&cluster, "spread").get(&1) == Some(&0)
    })
    .await;
    api.node().set_draining(1, false).await.unwrap();
    wait_until(Duration::from_secs(30), "4/4/4 after undrain", || {
        even(&leaders_per_node(&cluster, "spread"))
    })
    .await;
    cluster.shutdown().await;
}

/// When liveness calls a shard leader's node down, a surviving voter campaigns at once and the
/// other voter grants its vote although its leader lease is still running. Election timeouts
/// are switched off on the survivors, so only that path can elect the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_lost_with_its_node_is_replaced_without_election_timeouts() {
    let mut cluster = SimCluster::start().await;
    create_stream(&cluster, "takeover", 2).await;
    let state = cluster.state();
    let shard = state.streams["takeover"].shards[0].clone();
    let leader_node = cluster
        .nodes
        .iter()
        .flatten()
        .find(|node| {
            node.local_shard(shard.group)
                .is_some_and(|replica| replica.group().is_leader())
        })
        .map(|node| node.id())
        .expect("the shard has a leader");
    let survivors: Vec<u64> = (1..=NODES).filter(|id| *id != leader_node).collect();
    for id in &survivors {
        let node = cluster.nodes[(*id - 1) as usize]
            .clone()
            .expect("node runs");
        node.local_shard(shard.group)
            .expect("a replica on every node")
            .group()
            .set_timeout_elections(false);
    }
    cluster.crash(leader_node).await;
    let led_by_survivor = || {
        survivors.iter().any(|id| {
            cluster.nodes[(*id - 1) as usize]
                .as_ref()
                .and_then(|node| node.local_shard(shard.group))
                .is_some_and(|replica| replica.group().is_leader())
        })
    };
    wait_until(
        Duration::from_secs(20),
        "a surviving replica leads",
        led_by_survivor,
    )
    .await;
    // The new leader takes writes.
    let api = cluster.api(survivors[0]).expect("survivor runs");
    let put = map(vec![
        ("StreamName", text("takeover")),
        ("PartitionKey", text("k")),
        ("ExplicitHashKey", text("0")),
        ("Data", text("aGVsbG8=")),
    ]);
    let reply = call(&api, Operation::PutRecord, put)
        .await
        .expect("PutRecord");
    assert!(
        reply
            .as_map()
            .is_some_and(|m| m.get("SequenceNumber").is_some())
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_down_past_the_grace_period_is_rebuilt_elsewhere() {
    let mut cluster = SimCluster::start().await;
    cluster.add_node(4, "az-a").await;
    create_stream(&cluster, "repair", 4).await;
    let on_node_one = |state: &riffle_control::ControlState| {
        state.streams["repair"]
            .shards
            .iter()
            .filter(|shard| shard.replicas.iter().any(|replica| replica.node == 1))
            .count()
    };
    let hosted = on_node_one(&cluster.state());
    assert!(hosted > 0, "node 1 hosts replicas to repair");
    run_scenario(cluster, "repair", |cluster, apis| async move {
        crash_shared(&cluster, &apis, 1).await;
        let done = || {
            let state = cluster.lock().unwrap().state();
            on_node_one(&state) == 0
                && state.streams["repair"]
                    .shards
                    .iter()
                    .all(|shard| shard.moving.is_none() && shard.voters().count() == 3)
        };
        wait_until(Duration::from_secs(60), "node 1's replicas rebuilt", done).await;
        // Node 4 shares node 1's AZ: the rebuilt replicas are there.
        let state = cluster.lock().unwrap().state();
        for shard in &state.streams["repair"].shards {
            let azs: HashSet<&str> = shard
                .replicas
                .iter()
                .map(|replica| state.nodes[&replica.node].az.as_str())
                .collect();
            assert_eq!(azs.len(), 3, "{}: one replica per AZ", shard.id());
            // The group itself agrees: its voters are the recorded replicas.
            let guard = cluster.lock().unwrap();
            let leader = guard
                .nodes
                .iter()
                .flatten()
                .filter_map(|node| node.local_shard(shard.group))
                .find(|replica| replica.group().is_leader())
                .expect("the shard has a leader");
            let voters: Vec<u64> = shard.voters().map(|replica| replica.replica).collect();
            assert_eq!(
                leader
                    .group()
                    .membership()
                    .voters
                    .into_iter()
                    .collect::<Vec<_>>(),
                voters
            );
        }
        // The restarted node drops what it no longer hosts, then takes replicas back.
        restart_shared(&cluster, &apis, 1).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_on_demand_stream_under_load_gains_shards() {
    let cluster = SimCluster::start().await;
    create_on_demand_stream(&cluster, "autoscale").await;
    run_scenario(cluster, "autoscale", |cluster, _| async move {
        let open = || cluster.lock().unwrap().state().streams["autoscale"].open_shard_count();
        assert_eq!(open(), 4, "on-demand streams start with four shards");
        wait_until(Duration::from_secs(40), "the stream split a shard", || {
            open() > 4
        })
        .await;
        let state = cluster.lock().unwrap().state();
        let reasons: Vec<String> = state.streams["autoscale"]
            .shards
            .iter()
            .filter_map(|shard| shard.reason.clone())
            .collect();
        assert!(
            reasons
                .iter()
                .any(|reason| reason.starts_with("on-demand split")),
            "{reasons:?}"
        );
        // Let writes cross the split before the invariants are checked.
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_joins_and_hosts_replicas() {
    let cluster = SimCluster::start().await;
    let mut joiner_config = config(4);
    joiner_config.peers = Vec::new();
    joiner_config.join_via = Some(2);
    joiner_config.az = "az-d".into();
    let joiner = Node::new(
        joiner_config,
        Arc::new(MemStorage::new()),
        Some(cluster.network.client(4) as Arc<dyn PeerClient>),
    );
    cluster.network.register(&joiner);
    joiner.start().await.expect("the new node joins");
    let api = Arc::new(Api::new(joiner.clone()));
    assert!(
        joiner.control().state().nodes.contains_key(&4),
        "the joiner is registered"
    );

    create_stream(&cluster, "joined", 8).await;
    let state = joiner.control().state();
    let hosted = state.streams["joined"]
        .shards
        .iter()
        .filter(|shard| shard.replicas.iter().any(|replica| replica.node == 4))
        .count();
    assert!(hosted > 0, "placement uses the new node");
    // Writes and reads work through the new node.
    let mut load = writers(Arc::new(Mutex::new(vec![Some(api.clone())])), "joined");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let history = load.stop().await;
    assert!(history.acknowledged() > 0);
    check_through(&api, "joined", &history).await;
    joiner.shutdown().await;
    cluster.shutdown().await;
}
