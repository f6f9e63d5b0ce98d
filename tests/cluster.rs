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
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::types::ShardIteratorType;
use riffle_tests::RiffleCluster;
use riffle_tests::client;
use riffle_tests::stream_name;
use riffle_tests::wait_active;

/// `GET /_riffle/status` of the node at `endpoint`.
async fn status_of(endpoint: &str) -> serde_json::Value {
    let authority = endpoint.trim_start_matches("http://").to_string();
    let body = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::io::Write;
        let mut socket = std::net::TcpStream::connect(&authority).unwrap();
        write!(
            socket,
            "GET /_riffle/status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        socket.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    })
    .await
    .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Which node leads the most shards of `stream`.
async fn busiest_leader(endpoint: &str, stream: &str) -> usize {
    let status = status_of(endpoint).await;
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for shard in status["shards"].as_array().unwrap() {
        if shard["stream"] == stream
            && let Some(leader) = shard["leader"].as_u64()
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

#[derive(Default)]
struct Ledger {
    acked: HashMap<String, (String, String)>,
    ambiguous: HashSet<String>,
    attempted: HashSet<String>,
}

async fn writer(
    clients: Vec<Client>,
    name: String,
    writer: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let mut next = 0usize;
    let mut target = writer;
    while !stop.load(Ordering::Relaxed) {
        target += 1;
        let client = &clients[target % clients.len()];
        let ids: Vec<String> = (0..10)
            .map(|i| format!("w{writer}-{:06}", next + i))
            .collect();
        next += ids.len();
        let entries: Vec<_> = ids
            .iter()
            .map(|id| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("writer-{writer}"))
                    .data(Blob::new(id.as_bytes()))
                    .build()
                    .unwrap()
            })
            .collect();
        ledger.lock().unwrap().attempted.extend(ids.iter().cloned());
        let result = client
            .put_records()
            .stream_name(&name)
            .set_records(Some(entries))
            .send()
            .await;
        {
            let mut ledger = ledger.lock().unwrap();
            match result {
                Ok(output) => {
                    for (id, record) in ids.iter().zip(output.records()) {
                        match (record.shard_id(), record.sequence_number()) {
                            (Some(shard), Some(sequence)) => {
                                ledger
                                    .acked
                                    .insert(id.clone(), (shard.to_string(), sequence.to_string()));
                            }
                            _ => {
                                ledger.ambiguous.insert(id.clone());
                            }
                        }
                    }
                }
                Err(_) => ledger.ambiguous.extend(ids.iter().cloned()),
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn read_all(kinesis: &Client, name: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let shards = kinesis
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .unwrap()
            .to_string();
        let mut records = Vec::new();
        loop {
            let page = kinesis
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .unwrap();
            for record in page.records() {
                records.push((
                    String::from_utf8(record.data().as_ref().to_vec()).unwrap(),
                    record.sequence_number().to_string(),
                ));
            }
            match page.next_shard_iterator() {
                Some(next) if !page.records().is_empty() => iterator = next.to_string(),
                _ => break,
            }
        }
        out.insert(shard.shard_id().to_string(), records);
    }
    out
}

/// Shards in index order (children come after their parents), so each writer's records (one
/// partition key) must come out in the order written even across resharding.
fn check(ledger: &Ledger, stored: &BTreeMap<String, Vec<(String, String)>>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut positions: HashMap<&str, (&str, &str)> = HashMap::new();
    let mut last_per_writer: HashMap<&str, &str> = HashMap::new();
    for (shard, records) in stored {
        for window in records.windows(2) {
            assert!(
                window[0].1 < window[1].1,
                "shard {shard}: sequence numbers not increasing"
            );
        }
        for (id, sequence) in records {
            assert!(ledger.attempted.contains(id), "phantom record {id}");
            *seen.entry(id.as_str()).or_default() += 1;
            positions.insert(id.as_str(), (shard.as_str(), sequence.as_str()));
            let writer = id.split('-').next().unwrap_or_default();
            if let Some(previous) = last_per_writer.insert(writer, id.as_str()) {
                assert!(
                    id.as_str() > previous,
                    "{shard}: {id} stored after {previous}"
                );
            }
        }
    }
    for (id, count) in &seen {
        assert!(
            *count == 1 || ledger.ambiguous.contains(*id),
            "{id} stored {count} times"
        );
    }
    for (id, (shard, sequence)) in &ledger.acked {
        let stored = positions
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged record {id} lost"));
        assert_eq!(
            *stored,
            (shard.as_str(), sequence.as_str()),
            "record {id} changed"
        );
    }
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
    let shards: Vec<&serde_json::Value> = status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|shard| shard["stream"] == name.as_str())
        .collect();
    assert_eq!(shards.len(), 3);
    for shard in shards {
        let mut replicas: Vec<u64> = shard["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_u64())
            .collect();
        replicas.sort_unstable();
        assert_eq!(replicas, [1, 2, 3], "{shard}");
    }
    let azs: HashSet<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|node| node["az"].as_str())
        .collect();
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

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            tokio::spawn(writer(
                clients.clone(),
                name.clone(),
                w,
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.kill9(victim).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let acked_while_down = ledger.lock().unwrap().acked.len();
    cluster.restart(victim).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        ledger.acked.len() > acked_while_down,
        "writes resumed after the restart"
    );
    // The restarted node caught up: reading through each node gives everything.
    for id in 1..=3 {
        let stored = read_all(&client(&cluster.endpoint(id)), &name).await;
        check(&ledger, &stored);
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
    let leader = status["metadata_leader"]
        .as_u64()
        .expect("a metadata leader") as usize;
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
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| {
            (
                node["id"].as_u64().unwrap(),
                node["leaders"].as_u64().unwrap(),
            )
        })
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
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|w| {
            tokio::spawn(writer(
                clients.clone(),
                name.clone(),
                w,
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();
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
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        ledger.acked.len() > 100,
        "{} writes acknowledged",
        ledger.acked.len()
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
    for id in 1..=3 {
        let stored = read_all(&client(&cluster.endpoint(id)), &name).await;
        assert_eq!(stored.len(), 12, "4 parents and 8 children");
        check(&ledger, &stored);
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

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(writer(
        vec![client(&cluster.endpoint(via))],
        name.clone(),
        0,
        ledger.clone(),
        stop.clone(),
    ));
    let delivered = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
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
                        delivered.push((
                            String::from_utf8(record.data().as_ref().to_vec()).unwrap(),
                            record.sequence_number().to_string(),
                        ));
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_kill = delivered.lock().unwrap().len();
    cluster.kill9(leader).unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    // Everything acknowledged arrives (a few seconds for the last pages).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = {
            let delivered = delivered.lock().unwrap();
            let ids: HashSet<&str> = delivered.iter().map(|(id, _)| id.as_str()).collect();
            ledger.acked.keys().all(|id| ids.contains(id.as_str()))
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
    let stored = BTreeMap::from([(shard.clone(), delivered)]);
    check(&ledger, &stored);
}
