//! The chaos workload: writers through random endpoints ([`crate::load`], one record in flight
//! per partition key), and live readers following every shard and its children, counting what
//! they consume into the timeline.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use rand::Rng;
use riffle_client::Client;
use riffle_client::Spread;
use riffle_client::StartingPosition;
use riffle_client::ops::records::GetRecords;
use riffle_client::ops::streams::CreateStream;
use riffle_client::ops::streams::DescribeStreamSummary;

use crate::history::History;
use crate::history::record_sent_ms;
use crate::load::Load;
use crate::load::LoadConfig;
use crate::read::list_shards;
use crate::read::shard_iterator;
use crate::timeline::Timeline;

/// Shape of the load.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub stream: String,
    pub endpoints: Vec<String>,
    /// Concurrent producers; each owns `keys_per_producer` partition keys.
    pub producers: usize,
    pub keys_per_producer: usize,
    /// Target records per second over all producers (0: as fast as acknowledgements come).
    pub rate: u64,
    pub record_bytes: usize,
    /// Per-call timeout; a call that times out is ambiguous.
    pub call_timeout: Duration,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            stream: "chaos".to_string(),
            endpoints: vec!["http://127.0.0.1:4567".to_string()],
            producers: 8,
            keys_per_producer: 16,
            rate: 2000,
            record_bytes: 256,
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// A client spreading calls over every node at random, avoiding for a while a node that did
/// not answer (as a client behind a load balancer would).
pub fn cluster_client(endpoints: &[String], timeout: Duration) -> Client {
    Client::builder(endpoints.to_vec())
        .spread(Spread::Random)
        .timeout(timeout)
        .build()
}

/// A running workload: producers and live readers until [`Workload::stop`].
pub struct Workload {
    pub config: WorkloadConfig,
    load: Load,
    stop: Arc<AtomicBool>,
    follower: tokio::task::JoinHandle<()>,
}

/// Creates the stream (if missing) with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, stream: &str, shards: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let input = CreateStream {
        stream_name: stream.to_string(),
        shard_count: Some(shards),
        ..CreateStream::default()
    };
    loop {
        match client.call(&input).await {
            Ok(_) => break,
            Err(error) if error.is("ResourceInUseException") => break,
            Err(error) if Instant::now() > deadline => {
                anyhow::bail!("CreateStream {stream}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    wait_active(client, stream, deadline).await
}

/// Waits until DescribeStreamSummary says ACTIVE.
pub async fn wait_active(client: &Client, stream: &str, deadline: Instant) -> anyhow::Result<()> {
    let input = DescribeStreamSummary {
        stream_name: stream.to_string(),
    };
    loop {
        let summary = client.call(&input).await;
        if let Ok(summary) = &summary
            && summary.stream_description_summary.stream_status == "ACTIVE"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("stream {stream} not ACTIVE in time (last answer: {summary:?})");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Workload {
    /// Starts producers and live readers against an existing, ACTIVE stream.
    pub fn start(config: WorkloadConfig, timeline: Arc<Mutex<Timeline>>) -> Workload {
        let client = cluster_client(&config.endpoints, config.call_timeout);
        let load = Load::start(
            client.clone(),
            LoadConfig {
                stream: config.stream.clone(),
                writers: config.producers,
                keys_per_writer: config.keys_per_producer,
                records_per_key: 1,
                rate: config.rate,
                pause: Duration::ZERO,
                record_bytes: config.record_bytes,
            },
            timeline.clone(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let follower = tokio::spawn(follow(
            config.stream.clone(),
            client,
            timeline,
            stop.clone(),
        ));
        Workload {
            config,
            load,
            stop,
            follower,
        }
    }

    /// Stops producing and reading; returns once every call in flight has its answer, with the
    /// producers' history.
    pub async fn stop(&mut self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        let history = self.load.stop().await;
        let _ = (&mut self.follower).await;
        history
    }
}

/// Follows every shard from TRIM_HORIZON, and the children of every shard that closes, counting
/// what it reads into the timeline (with put-to-consume latency from the records' send times).
async fn follow(
    stream: String,
    client: Client,
    timeline: Arc<Mutex<Timeline>>,
    stop: Arc<AtomicBool>,
) {
    // shard id → (iterator, or None when it must be fetched; last sequence number read)
    let mut shards: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut listed = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) {
        if listed.elapsed() > Duration::from_secs(2)
            && let Ok(all) = list_shards(&client, &stream).await
        {
            for shard in all {
                if !finished.contains(&shard.shard_id) {
                    shards.entry(shard.shard_id).or_insert((None, None));
                }
            }
            listed = Instant::now();
        }
        let mut read_any = false;
        let ids: Vec<String> = shards.keys().cloned().collect();
        for shard in ids {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let (iterator, last) = shards.get(&shard).cloned().unwrap_or_default();
            let iterator = match iterator {
                Some(iterator) => iterator,
                None => {
                    let position = match &last {
                        Some(sequence) => StartingPosition::AfterSequenceNumber(sequence.clone()),
                        None => StartingPosition::TrimHorizon,
                    };
                    match shard_iterator(&client, &stream, &shard, position).await {
                        Ok(iterator) => iterator,
                        Err(_) => continue,
                    }
                }
            };
            let input = GetRecords {
                shard_iterator: iterator,
                limit: Some(10_000),
            };
            let page = match client.call(&input).await {
                Ok(page) => page,
                Err(_) => {
                    // An expired or foreign iterator is fetched again after the last record.
                    if let Some(entry) = shards.get_mut(&shard) {
                        entry.0 = None;
                    }
                    continue;
                }
            };
            let now = now_ms();
            let latencies: Vec<u32> = page
                .records
                .iter()
                .filter_map(|record| record_sent_ms(&record.data))
                .map(|sent| now.saturating_sub(sent).min(u32::MAX as u64) as u32)
                .collect();
            let last_sequence = page
                .records
                .last()
                .map(|record| record.sequence_number.clone())
                .or(last);
            if !page.records.is_empty() {
                read_any = true;
                let mut timeline = timeline.lock().unwrap_or_else(|e| e.into_inner());
                timeline.second().consumed += page.records.len() as u64;
                timeline.consume_latency_ms.extend(latencies);
            }
            match page.next_shard_iterator {
                Some(next) => {
                    shards.insert(shard, (Some(next), last_sequence));
                }
                None => {
                    // The shard closed and has been read to its end; its children are listed
                    // in ChildShards and picked up here without waiting for ListShards.
                    for child in page.child_shards.into_iter().flatten() {
                        if !finished.contains(&child.shard_id) {
                            shards.entry(child.shard_id).or_insert((None, None));
                        }
                    }
                    shards.remove(&shard);
                    finished.insert(shard);
                }
            }
        }
        if !read_any {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A random jitter in [0, max).
pub fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    Duration::from_millis(rand::rng().random_range(0..max.as_millis() as u64))
}
