//! A real three-process cluster driven by `aws-sdk-kinesis`: any node serves any request,
//! iterators travel between nodes, killing the node that leads shards (or the metadata group)
//! under a write load through every endpoint loses and reorders nothing, neither does a
//! reshard that overlaps a node kill, and shard leaders spread over the nodes (again after a
//! killed node returns).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use riffle_chaos::check::ShardRead;
use riffle_chaos::history::record_id;
use riffle_chaos::load::Load;
use riffle_client::ops::records::Record;
use riffle_client::status::ClusterStatus;
use riffle_tests::RiffleCluster;
use riffle_tests::assert_checked;
use riffle_tests::client;
use riffle_tests::read_stream;
use riffle_tests::start_writers;
use riffle_tests::stream_name;
use riffle_tests::wait_active;

/// `GET /_riffle/status` of the node at `endpoint`.
async fn status_of(endpoint: &str) -> ClusterStatus {
    riffle_client::Client::new(vec![endpoint.to_string()])
        .status()
        .await
        .unwrap()
}

/// Which node leads the most shards of `stream`.
async fn busiest_leader(endpoint: &str, stream: &str) -> usize {
    let status = status_of(endpoint).await;
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for shard in &status.shards {
        if shard.stream == stream
            && let Some(leader) = shard.leader
        {
            *counts.entry(leader).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map(|(node, _)| node as usize)
        .unwrap_or(1)
}

/// Six writers (one partition key each, ten records a call) through `endpoints`.
fn writers(endpoints: &[String], stream: &str) -> Load {
    start_writers(endpoints, stream, 6, 10, Duration::from_millis(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_node_serves_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = RiffleCluster::start(dir.path(), 3).unwrap();
    let nodes: Vec<Client> = (1..=3).map(|id| client(&cluster.endpoint(id))).collect();
    let name = stream_name("anynode");
    nodes[0]
        .create_stream()
        .stream_name(&name)
        .shard_count(3)
        .send()
        .await
        .unwrap();
    // Visible on the other nodes at once.
    wait_active(&nodes[2], &name).await.unwrap();

    let put = nodes[1]
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new("one"))
        .send()
        .await
        .unwrap();
    // An iterator made on node 1 works on node 3, and sees the write made through node 2.
    let iterator = nodes[0]
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_string();
    let page = nodes[2]
        .get_records()
        .shard_iterator(&iterator)
        .send()
        .await
        .unwrap();
    assert_eq!(page.records().len(), 1);
    assert_eq!(page.records()[0].sequence_number(), put.sequence_number());

    // Every node answers descriptions the same way; errors from the leader come back unchanged.
    for node in &nodes {
        let summary = node
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            summary
                .stream_description_summary()
                .unwrap()
                .open_shard_count(),
            3
        );
        let error = node
            .create_stream()
            .stream_name(&name)
            .shard_count(1)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            riffle_tests::error_code(&error).as_deref(),
            Some("ResourceInUseException")
        );
    }
    // Replicas are spread: three shards, three replicas each, on three different nodes (AZs).
    let status = status_of(&cluster.endpoint(2)).await;
    let shards: Vec<_> = status
        .shards
        .iter()
        .filter(|shard| shard.stream == name)
        .collect();
    assert_eq!(shards.len(), 3);
    for shard in shards {
        let mut replicas = shard.replicas.clone();
        replicas.sort_unstable();
        assert_eq!(replicas, [1, 2, 3], "{shard:?}");
    }
    let azs: HashSet<&str> = status.nodes.iter().map(|node| node.az.as_str()).collect();
    assert_eq!(azs.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_shard_leader_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RiffleCluster::start(dir.path(), 3).unwrap();
    let clients: Vec<Client> = (1..=3).map(|id| client(&cluster.endpoint(id))).collect();
    let name = stream_name("killleader");
    clients[0]
        .create_stream()
        .stream_name(&name)
        .shard_count(6)
        .send()
        .await
        .unwrap();
    wait_active(&clients[0], &name).await.unwrap();
    // Let every shard's leader be recorded before choosing whom to kill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = busiest_leader(&cluster.endpoint(1), &name).await;

    let endpoints: Vec<String> = (1..=3).map(|id| cluster.endpoint(id)).collect();
    let mut load = writers(&endpoints, &name);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill9(victim).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let acked_while_down = load.acknowledged();
    cluster.restart(victim).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = load.stop().await;
    assert!(
        history.acknowledged() > acked_while_down,
        "writes resumed after the restart"
    );
    // The restarted node caught up: reading through each node gives everything.
    for endpoint in &endpoints {
        let stored = read_stream(endpoint, &name).await;
        assert_checked(endpoint, &history, &stored);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_metadata_group_survives_its_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RiffleCluster::start(dir.path(), 3).unwrap();
    let first = client(&cluster.endpoint(1));
    let name = stream_name("metaleader");
    first
        .create_stream()
        .stream_name(&name)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    wait_active(&first, &name).await.unwrap();
    // Find the metadata leader and kill it.
    let status = status_of(&cluster.endpoint(1)).await;
    let leader = status.metadata_leader.expect("a metadata leader") as usize;
    cluster.kill9(leader).unwrap();
    let survivor = client(&cluster.endpoint(if leader == 1 { 2 } else { 1 }));
    // Control operations work again through a survivor (the SDK retries while it elects).
    let second = stream_name("after-leader");
    let mut created = false;
    for _ in 0..40 {
        if survivor
            .create_stream()
            .stream_name(&second)
            .shard_count(1)
            .send()
            .await
            .is_ok()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        created,
        "CreateStream never succeeded after the metadata leader died"
    );
    wait_active(&survivor, &second).await.unwrap();
    survivor
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new("v"))
        .send()
        .await
        .unwrap();
    cluster.restart(leader).unwrap();
    let restarted = client(&cluster.endpoint(leader));
    wait_active(&restarted, &second).await.unwrap();
}

/// Open shards of `stream` led by each node, from `/_riffle/status` (leaders as the metadata
/// leader last recorded them).
async fn leaders_per_node(endpoint: &str) -> BTreeMap<u64, u64> {
    let status = status_of(endpoint).await;
    status
        .nodes
        .iter()
        .map(|node| (node.id, node.leaders))
        .collect()
}

async fn wait_for_leaders(endpoint: &str, wanted: &[u64], timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let counts = leaders_per_node(endpoint).await;
        if counts.values().copied().collect::<Vec<_>>() == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "leaders per node {counts:?}, wanted {wanted:?} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twelve_shard_leaders_spread_four_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RiffleCluster::start(dir.path(), 3).unwrap();
    let kinesis = client(&cluster.endpoint(1));
    let name = stream_name("spread");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(12)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();
    wait_for_leaders(&cluster.endpoint(1), &[4, 4, 4], Duration::from_secs(20)).await;
    cluster.kill9(3).unwrap();
    wait_for_leaders(&cluster.endpoint(1), &[6, 6, 0], Duration::from_secs(20)).await;
    cluster.restart(3).unwrap();
    wait_for_leaders(&cluster.endpoint(1), &[4, 4, 4], Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_overlapping_a_node_kill_loses_nothing() {
    use aws_sdk_kinesis::types::ScalingType;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RiffleCluster::start(dir.path(), 3).unwrap();
    let clients: Vec<Client> = (1..=3).map(|id| client(&cluster.endpoint(id))).collect();
    let name = stream_name("reshardkill");
    clients[0]
        .create_stream()
        .stream_name(&name)
        .shard_count(4)
        .send()
        .await
        .unwrap();
    wait_active(&clients[0], &name).await.unwrap();
    let endpoints: Vec<String> = (1..=3).map(|id| cluster.endpoint(id)).collect();
    let mut load = writers(&endpoints, &name);
    tokio::time::sleep(Duration::from_secs(2)).await;
    clients[0]
        .update_shard_count()
        .stream_name(&name)
        .target_shard_count(8)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    // Node 2 dies while the parents are being sealed and the children start.
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.kill9(2).unwrap();
    wait_active(&clients[0], &name).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(2).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = load.stop().await;
    assert!(
        history.acknowledged() > 100,
        "{} writes acknowledged",
        history.acknowledged()
    );
    let summary = clients[0]
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .open_shard_count(),
        8
    );
    for endpoint in &endpoints {
        let stored = read_stream(endpoint, &name).await;
        assert_eq!(stored.len(), 12, "4 parents and 8 children");
        assert_checked(endpoint, &history, &stored);
    }
}

/// A SubscribeToShard subscription held by one node while the shard's leader (another node) is
/// killed: the subscription stays open, and the records keep coming from the new leader without
/// a gap, a repeat or a reordering. Every acknowledged record is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_follows_its_shard_across_a_leader_kill() {
    use aws_sdk_kinesis::types::SubscribeToShardEventStream;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = RiffleCluster::start(dir.path(), 3).unwrap();
    let name = stream_name("subfailover");
    let stream_arn = riffle_tests::create_active_stream(&client(&cluster.endpoint(1)), &name, 1)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = busiest_leader(&cluster.endpoint(1), &name).await;
    // The subscription lives on one other node, the writes go through the third.
    let others: Vec<usize> = (1..=3).filter(|id| *id != leader).collect();
    let (subscriber, via) = (others[0], others[1]);
    let reader = client(&cluster.endpoint(subscriber));
    let consumer = riffle_tests::register_active_consumer(&reader, &stream_arn, "follower")
        .await
        .unwrap();
    let shard = reader
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id
        .clone();
    let mut subscription =
        riffle_tests::subscribe(&reader, &consumer, &shard, ShardIteratorType::TrimHorizon)
            .await
            .unwrap();

    let mut load = start_writers(
        &[cluster.endpoint(via)],
        &name,
        1,
        10,
        Duration::from_millis(2),
    );
    let delivered = Arc::new(Mutex::new(Vec::<Record>::new()));
    let receiving = {
        let delivered = delivered.clone();
        tokio::spawn(async move {
            loop {
                let event =
                    tokio::time::timeout(Duration::from_secs(60), subscription.event_stream.recv())
                        .await
                        .expect("an event within 60 s")
                        .expect("no error event")
                        .expect("the subscription stays open");
                if let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event {
                    let mut delivered = delivered.lock().unwrap();
                    for record in event.records() {
                        delivered.push(Record {
                            sequence_number: record.sequence_number().to_string(),
                            partition_key: record.partition_key().unwrap_or_default().to_string(),
                            data: Bytes::copy_from_slice(record.data().as_ref()),
                            approximate_arrival_timestamp: None,
                        });
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = delivered.lock().unwrap().len();
    cluster.kill9(leader).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let history = load.stop().await;
    // Everything acknowledged arrives (a few seconds for the last pages).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = {
            let delivered = delivered.lock().unwrap();
            let ids: HashSet<&str> = delivered
                .iter()
                .filter_map(|record| record_id(&record.data))
                .collect();
            history.acknowledged_ids().all(|id| ids.contains(id))
        };
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!receiving.is_finished(), "the subscription ended early");
    receiving.abort();
    let delivered = std::mem::take(&mut *delivered.lock().unwrap());
    assert!(before_kill > 0, "records were delivered before the kill");
    assert!(
        delivered.len() > before_kill + 100,
        "records kept coming after the kill ({before_kill} before, {} in all)",
        delivered.len()
    );
    let stored = [ShardRead {
        shard_id: shard.clone(),
        parents: Vec::new(),
        records: delivered,
    }];
    assert_checked(
        &format!("a subscription through node {subscriber}"),
        &history,
        &stored,
    );
}
