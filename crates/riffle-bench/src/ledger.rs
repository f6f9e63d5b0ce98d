//! What the put-to-read modes (`--mode fanout`, `--mode poll`) share: open-loop writes of
//! records that each carry a bench-wide id and the time their PutRecords call was scheduled,
//! and the ledger of what the readers saw. Latency runs from the scheduled time to the moment a
//! reader had the record (coordinated omission cannot hide a stall: a late call is charged from
//! when it should have gone out), and after the run every acknowledged record must have been
//! read exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;
use riffle_client::Client;
use riffle_client::Spread;
use riffle_client::ops::records::PutRecords;
use riffle_client::ops::records::PutRecordsEntry;
use riffle_client::ops::records::Record;
use riffle_client::ops::streams::ListShards;
use tokio::task::JoinHandle;

use crate::Args;

/// Bytes at the start of every record's data: its id and its call's scheduled time (µs since
/// the epoch), both big-endian u64.
const HEADER_BYTES: usize = 16;

/// How long readers get, after the last write, to catch up before a missing record is lost.
const DRAIN: Duration = Duration::from_secs(10);

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

/// Writes go through every endpoint but the last and reads through the last (with a single
/// endpoint, both go through it), so a record usually crosses nodes on its way.
pub fn split_endpoints(endpoints: &[String]) -> anyhow::Result<(Vec<String>, String)> {
    let read_endpoint = endpoints.last().context("no endpoint")?.clone();
    let write_endpoints = if endpoints.len() > 1 {
        endpoints[..endpoints.len() - 1].to_vec()
    } else {
        endpoints.to_vec()
    };
    Ok((write_endpoints, read_endpoint))
}

/// The stream's open shards.
pub async fn shard_ids(client: &Client, stream: &str) -> anyhow::Result<Vec<String>> {
    let listed = client.call(&ListShards::first_page(stream)).await?;
    Ok(listed
        .shards
        .into_iter()
        .filter(|shard| shard.is_open())
        .map(|shard| shard.shard_id)
        .collect())
}

/// What the readers saw.
pub struct Reads {
    /// Schedule-to-read latency of the measured records, in microseconds.
    pub latency: Histogram<u64>,
    pub ids: HashSet<u64>,
    pub duplicates: u64,
    /// Reads that returned a `Records` list (GetRecords calls, SubscribeToShard events).
    pub reads: u64,
    /// Records those reads returned, duplicates included.
    pub records: u64,
}

impl Reads {
    fn new() -> anyhow::Result<Reads> {
        Ok(Reads {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            ids: HashSet::new(),
            duplicates: 0,
            reads: 0,
            records: 0,
        })
    }
}

pub struct Ledger {
    reads: Mutex<Reads>,
    /// Record ids at or after this are measured (those before belong to the warm-up).
    first_measured: AtomicU64,
    stop: AtomicBool,
}

impl Ledger {
    pub fn new() -> anyhow::Result<Ledger> {
        Ok(Ledger {
            reads: Mutex::new(Reads::new()?),
            first_measured: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
        })
    }

    /// The run is over: readers return.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn reads(&self) -> std::sync::MutexGuard<'_, Reads> {
        self.reads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One read's `Records` (as GetRecords and SubscribeToShard return them), which reached the
    /// reader at `received` (µs since the epoch).
    pub fn record_read(&self, records: &[Record], received: u64) -> anyhow::Result<()> {
        let first_measured = self.first_measured.load(Ordering::Relaxed);
        let mut reads = self.reads();
        reads.reads += 1;
        for record in records {
            reads.records += 1;
            let data = &record.data;
            if data.len() < HEADER_BYTES {
                continue;
            }
            let id = u64::from_be_bytes(data[0..8].try_into()?);
            let sent = u64::from_be_bytes(data[8..16].try_into()?);
            if !reads.ids.insert(id) {
                reads.duplicates += 1;
                continue;
            }
            if id >= first_measured {
                let _ = reads.latency.record(received.saturating_sub(sent).max(1));
            }
        }
        Ok(())
    }

    fn missing(&self, acknowledged: &HashSet<u64>) -> usize {
        let reads = self.reads();
        acknowledged
            .iter()
            .filter(|id| !reads.ids.contains(id))
            .count()
    }
}

/// What the writer did.
pub struct Written {
    pub acknowledged: HashSet<u64>,
    /// PutRecords latency from each call's scheduled time, in microseconds.
    pub put_latency: Histogram<u64>,
    pub failed_records: u64,
    pub rate: u64,
    pub batch: usize,
    pub record_bytes: usize,
    /// Warm-up included.
    pub seconds: f64,
}

/// Open loop for `--warmup` + `--seconds`: one PutRecords call of `--batch` records every
/// batch/rate seconds, each on its own task whatever the previous calls are doing, spread over
/// `endpoints` in turn. Returns once every call has been answered.
pub async fn write(
    client: &Client,
    endpoints: &[String],
    args: &Args,
    ledger: &Ledger,
) -> anyhow::Result<Written> {
    let client = client.with_endpoints(endpoints.to_vec(), Spread::RoundRobin);
    let batch = args.batch.max(1);
    let rate = args.rate.unwrap_or(1000).max(1);
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let acknowledged = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let put_latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let failures = Arc::new(AtomicU64::new(0));
    let padding = args.record_bytes.max(HEADER_BYTES) - HEADER_BYTES;
    let started = Instant::now();
    let total = Duration::from_secs(args.warmup + args.seconds);
    let mut next_id = 0u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::new();
    while started.elapsed() < total {
        tick.tick().await;
        if started.elapsed() >= Duration::from_secs(args.warmup)
            && ledger.first_measured.load(Ordering::Relaxed) == u64::MAX
        {
            ledger.first_measured.store(next_id, Ordering::Relaxed);
        }
        let scheduled = now_micros();
        let ids: Vec<u64> = (next_id..next_id + batch as u64).collect();
        next_id += batch as u64;
        let records: Vec<PutRecordsEntry> = {
            let mut rng = rand::rng();
            ids.iter()
                .map(|id| {
                    let mut data = Vec::with_capacity(HEADER_BYTES + padding);
                    data.extend_from_slice(&id.to_be_bytes());
                    data.extend_from_slice(&scheduled.to_be_bytes());
                    data.resize(HEADER_BYTES + padding, 0x5a);
                    PutRecordsEntry {
                        partition_key: format!("pk-{}", rng.random::<u64>()),
                        data: Bytes::from(data),
                        explicit_hash_key: None,
                    }
                })
                .collect()
        };
        let input = PutRecords {
            stream_name: args.stream.clone(),
            records,
        };
        let (client, acknowledged, put_latency, failures) = (
            client.clone(),
            acknowledged.clone(),
            put_latency.clone(),
            failures.clone(),
        );
        calls.push(tokio::spawn(async move {
            let result = client.call(&input).await;
            let elapsed = now_micros().saturating_sub(scheduled);
            match result {
                Ok(output) => {
                    let mut acknowledged = acknowledged.lock().unwrap_or_else(|e| e.into_inner());
                    for (id, record) in ids.iter().zip(&output.records) {
                        if record.sequence_number.is_some() {
                            acknowledged.insert(*id);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = put_latency
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(elapsed.max(1));
                }
                Err(_) => {
                    failures.fetch_add(ids.len() as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    let seconds = started.elapsed().as_secs_f64();
    for call in calls {
        let _ = call.await;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap_or_else(|e| e.into_inner()));
    let put_latency = put_latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Written {
        acknowledged,
        put_latency,
        failed_records: failures.load(Ordering::Relaxed),
        rate,
        batch,
        record_bytes: HEADER_BYTES + padding,
        seconds,
    })
}

/// A finished put-to-read run.
pub struct Outcome {
    pub written: Written,
    pub reads: Reads,
    /// Acknowledged records no reader saw.
    pub lost: usize,
    /// Why readers stopped before the end of the run, if any did.
    pub reader_errors: Vec<String>,
}

/// Gives the readers up to [`DRAIN`] to see every acknowledged record, then stops them.
pub async fn finish(
    ledger: &Ledger,
    written: Written,
    readers: Vec<JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + DRAIN;
    while ledger.missing(&written.acknowledged) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ledger.stop.store(true, Ordering::Relaxed);
    let mut reader_errors = Vec::new();
    for reader in readers {
        if !reader.is_finished() {
            reader.abort();
            continue;
        }
        if let Ok(Err(error)) = reader.await {
            reader_errors.push(format!("{error:#}"));
        }
    }
    let lost = ledger.missing(&written.acknowledged);
    let reads = std::mem::replace(&mut *ledger.reads(), Reads::new()?);
    Ok(Outcome {
        written,
        reads,
        lost,
        reader_errors,
    })
}
