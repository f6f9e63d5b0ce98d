//! The workload: producers writing uniquely identified records to random endpoints (retrying as
//! SDKs do, one record in flight per partition key), readers following every shard and its
//! children, and the ledger and per-second timeline they fill in.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Serialize;
use serde_json::Value;
use serde_json::json;

use crate::client::CallError;
use crate::client::Kinesis;

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

/// What the producers know about one record.
#[derive(Debug, Clone, Default)]
pub struct RecordState {
    /// Where the acknowledgement said it went (shard id, sequence number).
    pub acked: Option<(String, String)>,
    pub attempts: u32,
    /// Some attempt ended without a definite answer: the record may be stored more than once.
    pub ambiguous: bool,
}

/// Every record ever attempted, by id (`p003k007n00000042`).
#[derive(Debug, Default)]
pub struct Ledger {
    pub records: HashMap<String, RecordState>,
}

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Records acknowledged.
    pub acked: u64,
    /// Records that failed (per-record errors, or in a failed call).
    pub failed: u64,
    /// Calls that failed as a whole.
    pub failed_calls: u64,
    /// Records the live readers consumed.
    pub consumed: u64,
}

/// A fault or other event on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ms: u64,
    pub what: String,
}

/// The per-second record of a run, shared by producers, readers and the fault schedule.
#[derive(Debug)]
pub struct Timeline {
    started: Instant,
    pub seconds: Vec<Second>,
    pub events: Vec<Event>,
    pub errors: BTreeMap<String, u64>,
    last_ack: Option<Instant>,
    /// The longest time without any acknowledgement: (from ms, to ms).
    pub longest_gap: Option<(u64, u64)>,
    /// Put-to-consume latency of records the live readers saw, in ms.
    pub consume_latency_ms: Vec<u32>,
    /// When the load stopped (the end of the last gap; the read-back is not an outage).
    stopped: Option<Instant>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline {
            started: Instant::now(),
            seconds: Vec::new(),
            events: Vec::new(),
            errors: BTreeMap::new(),
            last_ack: None,
            longest_gap: None,
            consume_latency_ms: Vec::new(),
            stopped: None,
        }
    }

    /// Marks the end of the load.
    pub fn stop(&mut self) {
        self.fill_to_now();
        self.stopped.get_or_insert_with(Instant::now);
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Makes sure every elapsed second has its entry (an outage has empty seconds too).
    pub fn fill_to_now(&mut self) {
        let _ = self.second();
    }

    fn second(&mut self) -> &mut Second {
        let index = self.started.elapsed().as_secs() as usize;
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, Second::default());
        }
        &mut self.seconds[index]
    }

    pub fn event(&mut self, what: impl Into<String>) {
        let at_ms = self.elapsed_ms();
        self.events.push(Event {
            at_ms,
            what: what.into(),
        });
    }

    fn acked(&mut self, records: u64) {
        if records == 0 {
            return;
        }
        let now = Instant::now();
        if let Some(last) = self.last_ack {
            let gap = now - last;
            let longest = self.longest_gap.map(|(from, to)| to - from).unwrap_or(0);
            if gap.as_millis() as u64 > longest {
                let to = (now - self.started).as_millis() as u64;
                self.longest_gap = Some((to - gap.as_millis() as u64, to));
            }
        }
        self.last_ack = Some(now);
        self.second().acked += records;
    }

    fn failed(&mut self, records: u64, call: Option<&CallError>, codes: &[String]) {
        let second = self.second();
        second.failed += records;
        if call.is_some() {
            second.failed_calls += 1;
        }
        if let Some(error) = call {
            *self.errors.entry(error.label()).or_default() += 1;
        }
        for code in codes {
            *self.errors.entry(code.clone()).or_default() += 1;
        }
    }

    /// The longest gap between acknowledgements, counting the time from the last one to the
    /// end of the load (a run that ends inside an outage has a gap too).
    pub fn longest_gap_ms(&self) -> u64 {
        let mut longest = self.longest_gap.map(|(from, to)| to - from).unwrap_or(0);
        if let Some(last) = self.last_ack {
            let end = self.stopped.unwrap_or_else(Instant::now);
            longest = longest.max(end.saturating_duration_since(last).as_millis() as u64);
        }
        longest
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

/// A running workload: producers and live readers until [`Workload::stop`].
pub struct Workload {
    pub config: WorkloadConfig,
    pub ledger: Arc<Mutex<Ledger>>,
    pub timeline: Arc<Mutex<Timeline>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Creates the stream (if missing) with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(
    kinesis: &Kinesis,
    endpoints: &[String],
    stream: &str,
    shards: u32,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let endpoint = endpoints.choose(&mut rand::rng()).expect("an endpoint");
        match kinesis
            .call(
                endpoint,
                "CreateStream",
                &json!({"StreamName": stream, "ShardCount": shards}),
            )
            .await
        {
            Ok(_) => break,
            Err(CallError::Rejected { kind, .. }) if kind == "ResourceInUseException" => break,
            Err(error) if Instant::now() > deadline => {
                anyhow::bail!("CreateStream {stream}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    wait_active(kinesis, endpoints, stream, deadline).await
}

/// Waits until DescribeStreamSummary says ACTIVE.
pub async fn wait_active(
    kinesis: &Kinesis,
    endpoints: &[String],
    stream: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let endpoint = endpoints.choose(&mut rand::rng()).expect("an endpoint");
        let summary = kinesis
            .call(
                endpoint,
                "DescribeStreamSummary",
                &json!({"StreamName": stream}),
            )
            .await;
        if let Ok(summary) = &summary
            && summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
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

/// The record's id and the time of its first attempt, from its data.
pub fn parse_data(data: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(data).ok()?;
    let mut parts = text.splitn(3, ' ');
    let id = parts.next()?;
    let sent = parts.next()?.parse().ok()?;
    Some((id, sent))
}

/// The partition key of a record id (`p003k007n00000042` → `p003k007`).
pub fn key_of(id: &str) -> &str {
    id.split_once('n').map(|(key, _)| key).unwrap_or(id)
}

/// The record's number within its key.
pub fn number_of(id: &str) -> Option<u64> {
    id.split_once('n').and_then(|(_, n)| n.parse().ok())
}

impl Workload {
    /// Starts producers and live readers against an existing, ACTIVE stream.
    pub fn start(config: WorkloadConfig, timeline: Arc<Mutex<Timeline>>) -> Workload {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let kinesis = Kinesis::new(config.call_timeout);
        let mut tasks = Vec::new();
        for producer in 0..config.producers {
            tasks.push(tokio::spawn(produce(
                producer,
                config.clone(),
                kinesis.clone(),
                ledger.clone(),
                timeline.clone(),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(follow(
            config.clone(),
            kinesis,
            timeline.clone(),
            stop.clone(),
        )));
        Workload {
            config,
            ledger,
            timeline,
            stop,
            tasks,
        }
    }

    /// Stops producing and reading; returns once every call in flight has its answer.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.timeline.lock().expect("timeline").stop();
    }
}

async fn produce(
    producer: usize,
    config: WorkloadConfig,
    kinesis: Kinesis,
    ledger: Arc<Mutex<Ledger>>,
    timeline: Arc<Mutex<Timeline>>,
    stop: Arc<AtomicBool>,
) {
    let keys = config.keys_per_producer.max(1);
    // The record of each key that is not acknowledged yet: (number, first attempt ms).
    let mut pending: Vec<Option<(u64, u64)>> = vec![None; keys];
    let mut next = vec![0u64; keys];
    let interval = if config.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(keys as f64 * config.producers.max(1) as f64 / config.rate as f64)
    };
    let padding = "x".repeat(config.record_bytes.saturating_sub(40));
    let mut backoff = Duration::from_millis(50);
    let mut next_batch = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if interval > Duration::ZERO {
            tokio::time::sleep_until(next_batch.into()).await;
            next_batch = (next_batch + interval).max(Instant::now() - interval * 4);
        }
        let mut ids = Vec::with_capacity(keys);
        let mut entries = Vec::with_capacity(keys);
        for key in 0..keys {
            let (number, sent) = *pending[key].get_or_insert_with(|| {
                next[key] += 1;
                (next[key] - 1, now_ms())
            });
            let partition_key = format!("p{producer:03}k{key:03}");
            let id = format!("{partition_key}n{number:08}");
            let data = format!("{id} {sent} {padding}");
            entries.push(json!({"PartitionKey": partition_key, "Data": BASE64.encode(data)}));
            ids.push(id);
        }
        {
            let mut ledger = ledger.lock().expect("ledger");
            for id in &ids {
                ledger.records.entry(id.clone()).or_default().attempts += 1;
            }
        }
        let endpoint = kinesis.pick(&config.endpoints);
        let result = kinesis
            .call(
                &endpoint,
                "PutRecords",
                &json!({"StreamName": config.stream, "Records": entries}),
            )
            .await;
        match result {
            Ok(response) => {
                let results = response["Records"].as_array().cloned().unwrap_or_default();
                let mut acked = 0;
                let mut codes = Vec::new();
                {
                    let mut ledger = ledger.lock().expect("ledger");
                    for (key, id) in ids.iter().enumerate() {
                        let result = results.get(key).cloned().unwrap_or(Value::Null);
                        let record = ledger.records.entry(id.clone()).or_default();
                        match (
                            result["ShardId"].as_str(),
                            result["SequenceNumber"].as_str(),
                        ) {
                            (Some(shard), Some(sequence)) => {
                                record.acked = Some((shard.to_string(), sequence.to_string()));
                                pending[key] = None;
                                acked += 1;
                            }
                            _ => {
                                let code = result["ErrorCode"].as_str().unwrap_or("missing result");
                                // Only throttling is a definite "not written"; an internal failure
                                // may have been written (AWS says the same).
                                if code != "ProvisionedThroughputExceededException" {
                                    record.ambiguous = true;
                                }
                                codes.push(code.to_string());
                            }
                        }
                    }
                }
                {
                    let mut timeline = timeline.lock().expect("timeline");
                    timeline.acked(acked);
                    if !codes.is_empty() {
                        timeline.failed(codes.len() as u64, None, &codes);
                    }
                }
                if codes.is_empty() {
                    backoff = Duration::from_millis(50);
                } else {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
            }
            Err(error) => {
                if error.is_ambiguous() {
                    let mut ledger = ledger.lock().expect("ledger");
                    for id in &ids {
                        ledger.records.entry(id.clone()).or_default().ambiguous = true;
                    }
                }
                tracing::debug!(producer, %endpoint, %error, "PutRecords failed");
                timeline
                    .lock()
                    .expect("timeline")
                    .failed(ids.len() as u64, Some(&error), &[]);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Follows every shard from TRIM_HORIZON, and the children of every shard that closes, counting
/// what it reads into the timeline (with put-to-consume latency from the records' send times).
async fn follow(
    config: WorkloadConfig,
    kinesis: Kinesis,
    timeline: Arc<Mutex<Timeline>>,
    stop: Arc<AtomicBool>,
) {
    // shard id → (iterator or None when it must be fetched, last sequence number read)
    let mut shards: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut finished: std::collections::BTreeSet<String> = Default::default();
    let mut listed = Instant::now() - Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) {
        let endpoint = kinesis.pick(&config.endpoints);
        if listed.elapsed() > Duration::from_secs(2)
            && let Ok(all) = list_shards(&kinesis, &endpoint, &config.stream).await
        {
            for shard in all {
                if !finished.contains(&shard) {
                    shards.entry(shard).or_insert((None, None));
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
                None => match shard_iterator(
                    &kinesis,
                    &endpoint,
                    &config.stream,
                    &shard,
                    last.as_deref(),
                )
                .await
                {
                    Ok(iterator) => iterator,
                    Err(_) => continue,
                },
            };
            let response = match kinesis
                .call(
                    &endpoint,
                    "GetRecords",
                    &json!({"ShardIterator": iterator, "Limit": 10000}),
                )
                .await
            {
                Ok(response) => response,
                Err(_) => {
                    // An expired or foreign iterator is fetched again after the last record.
                    if let Some(entry) = shards.get_mut(&shard) {
                        entry.0 = None;
                    }
                    continue;
                }
            };
            let records = response["Records"].as_array().cloned().unwrap_or_default();
            let now = now_ms();
            let mut latencies = Vec::with_capacity(records.len());
            let mut last_sequence = last;
            for record in &records {
                if let Some(data) = record["Data"].as_str().and_then(|d| BASE64.decode(d).ok())
                    && let Some((_, sent)) = parse_data(&data)
                {
                    latencies.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                }
                last_sequence = record["SequenceNumber"].as_str().map(str::to_string);
            }
            if !records.is_empty() {
                read_any = true;
                let mut timeline = timeline.lock().expect("timeline");
                timeline.second().consumed += records.len() as u64;
                timeline.consume_latency_ms.extend(latencies);
            }
            match response["NextShardIterator"].as_str() {
                Some(next) => {
                    shards.insert(shard, (Some(next.to_string()), last_sequence));
                }
                None => {
                    // The shard closed and has been read to its end; its children are listed
                    // in ChildShards and picked up here without waiting for ListShards.
                    for child in response["ChildShards"].as_array().into_iter().flatten() {
                        if let Some(child) = child["ShardId"].as_str()
                            && !finished.contains(child)
                        {
                            shards.entry(child.to_string()).or_insert((None, None));
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

async fn shard_iterator(
    kinesis: &Kinesis,
    endpoint: &str,
    stream: &str,
    shard: &str,
    after: Option<&str>,
) -> Result<String, CallError> {
    let body = match after {
        Some(sequence) => json!({"StreamName": stream, "ShardId": shard,
            "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": sequence}),
        None => {
            json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"})
        }
    };
    let response = kinesis.call(endpoint, "GetShardIterator", &body).await?;
    response["ShardIterator"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| CallError::Ambiguous("no ShardIterator".to_string()))
}

/// Every shard of the stream, open and closed, in id order (parents before children).
pub async fn list_shards(
    kinesis: &Kinesis,
    endpoint: &str,
    stream: &str,
) -> Result<Vec<String>, CallError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let body = match &token {
            Some(token) => json!({"NextToken": token}),
            None => json!({"StreamName": stream}),
        };
        let response = kinesis.call(endpoint, "ListShards", &body).await?;
        for shard in response["Shards"].as_array().into_iter().flatten() {
            if let Some(id) = shard["ShardId"].as_str() {
                shards.push(id.to_string());
            }
        }
        match response["NextToken"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    shards.sort();
    Ok(shards)
}

/// One stored record as read back: (shard id, sequence number, record id).
pub type Stored = (String, String, String);

/// Reads every shard of the stream to its end (closed shards) or to the tip (open shards)
/// through one endpoint, retrying transient failures until `deadline`.
pub async fn read_back(
    kinesis: &Kinesis,
    endpoint: &str,
    stream: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<Stored>> {
    async fn retry<T, F, Fut>(deadline: Instant, what: &str, mut call: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) if Instant::now() > deadline => {
                    anyhow::bail!("{what}: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }
    let shards = retry(deadline, "ListShards", || {
        list_shards(kinesis, endpoint, stream)
    })
    .await?;
    let mut stored = Vec::new();
    for shard in shards {
        let mut iterator = retry(deadline, "GetShardIterator", || {
            shard_iterator(kinesis, endpoint, stream, &shard, None)
        })
        .await?;
        let mut last: Option<String> = None;
        loop {
            let response = match kinesis
                .call(
                    endpoint,
                    "GetRecords",
                    &json!({"ShardIterator": iterator, "Limit": 10000}),
                )
                .await
            {
                Ok(response) => response,
                Err(error) => {
                    if Instant::now() > deadline {
                        anyhow::bail!("GetRecords {shard}: {error}");
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    iterator = retry(deadline, "GetShardIterator", || {
                        shard_iterator(kinesis, endpoint, stream, &shard, last.as_deref())
                    })
                    .await?;
                    continue;
                }
            };
            let records = response["Records"].as_array().cloned().unwrap_or_default();
            for record in &records {
                let sequence = record["SequenceNumber"].as_str().unwrap_or_default();
                let data = record["Data"]
                    .as_str()
                    .and_then(|d| BASE64.decode(d).ok())
                    .unwrap_or_default();
                let id = parse_data(&data)
                    .map(|(id, _)| id.to_string())
                    .unwrap_or_else(|| format!("<undecodable {}>", String::from_utf8_lossy(&data)));
                stored.push((shard.clone(), sequence.to_string(), id));
                last = Some(sequence.to_string());
            }
            match response["NextShardIterator"].as_str() {
                None => break,
                Some(_) if records.is_empty() && response["MillisBehindLatest"] == 0 => break,
                Some(next) => iterator = next.to_string(),
            }
        }
    }
    Ok(stored)
}

/// A random jitter in [0, max).
pub fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return max;
    }
    Duration::from_millis(rand::rng().random_range(0..max.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_back_after_the_load_is_not_a_gap() {
        let mut timeline = Timeline::new();
        let first = Instant::now();
        timeline.acked(10);
        std::thread::sleep(Duration::from_millis(30));
        timeline.acked(10);
        timeline.stop();
        let load = first.elapsed().as_millis() as u64;
        std::thread::sleep(Duration::from_millis(100));
        let gap = timeline.longest_gap_ms();
        assert!(
            gap >= 30 && gap <= load,
            "gap {gap} ms, load lasted {load} ms"
        );
    }
}
