//! Writers of uniquely identified records, through anything that answers Kinesis calls (a
//! [`riffle_client::Client`] over HTTP, or a test's in-process API), recording every attempt in
//! the [`History`] and the [`Timeline`].
//!
//! Each writer owns its partition keys and keeps one call in flight for all of them (so at
//! most one per key, as the checker's order rules assume). A call carries, per key, the key's
//! records not acknowledged yet (oldest first, resent as SDK users do) topped up with new ones.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use riffle_client::Kinesis;
use riffle_client::ops::records::PutRecords;
use riffle_client::ops::records::PutRecordsEntry;
use tokio::task::JoinHandle;

use crate::history::History;
use crate::history::Outcome;
use crate::history::record_data;
use crate::timeline::Timeline;

/// Shape of the writes.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub stream: String,
    /// Concurrent writers; each owns `keys_per_writer` partition keys.
    pub writers: usize,
    pub keys_per_writer: usize,
    /// Records of each key in every call.
    pub records_per_key: usize,
    /// Target records per second over all writers (0: as fast as answers come).
    pub rate: u64,
    /// Pause after every call.
    pub pause: Duration,
    /// Bytes of data per record (at least the id and the send time).
    pub record_bytes: usize,
}

/// Running writers, until [`Load::stop`].
pub struct Load {
    pub history: Arc<Mutex<History>>,
    pub timeline: Arc<Mutex<Timeline>>,
    stop: Arc<AtomicBool>,
    writers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `config.writers` writers against an existing, ACTIVE stream.
    pub fn start<K: Kinesis>(
        kinesis: K,
        config: LoadConfig,
        timeline: Arc<Mutex<Timeline>>,
    ) -> Load {
        let history = Arc::new(Mutex::new(History::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..config.writers.max(1))
            .map(|writer| {
                tokio::spawn(write(
                    writer,
                    config.clone(),
                    kinesis.clone(),
                    history.clone(),
                    timeline.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Load {
            history,
            timeline,
            stop,
            writers,
        }
    }

    /// Records acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        lock(&self.history).acknowledged()
    }

    /// Stops the writers; returns once every call in flight has its answer, with the history
    /// (final from then on).
    pub async fn stop(&mut self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        for writer in self.writers.drain(..) {
            if let Err(error) = writer.await {
                tracing::warn!(%error, "a writer failed");
            }
        }
        lock(&self.timeline).stop();
        std::mem::take(&mut *lock(&self.history))
    }
}

/// The history and timeline stay usable when a writer panicked holding them.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A writer's partition keys are `p{writer}k{key}`; a record's id is `{key}n{number}`.
fn key_name(writer: usize, key: usize) -> String {
    format!("p{writer:03}k{key:03}")
}

/// One record of a call: its key (index), number within the key, and id.
struct Sent {
    key: usize,
    number: u64,
    id: String,
}

async fn write<K: Kinesis>(
    writer: usize,
    config: LoadConfig,
    kinesis: K,
    history: Arc<Mutex<History>>,
    timeline: Arc<Mutex<Timeline>>,
    stop: Arc<AtomicBool>,
) {
    let keys: Vec<String> = (0..config.keys_per_writer.max(1))
        .map(|key| key_name(writer, key))
        .collect();
    let per_key = config.records_per_key.max(1);
    // Per key, its records not acknowledged yet: (number, first attempt ms), oldest first.
    let mut pending: Vec<VecDeque<(u64, u64)>> = vec![VecDeque::new(); keys.len()];
    let mut next = vec![0u64; keys.len()];
    let interval = if config.rate == 0 {
        Duration::ZERO
    } else {
        let per_call = (keys.len() * per_key * config.writers.max(1)) as f64;
        Duration::from_secs_f64(per_call / config.rate as f64)
    };
    let mut backoff = Duration::from_millis(50);
    let mut next_call = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if interval > Duration::ZERO {
            tokio::time::sleep_until(next_call.into()).await;
            // After a stall, catch up by at most a few calls' worth.
            next_call = (next_call + interval).max(Instant::now() - interval * 4);
        }
        let mut sent = Vec::with_capacity(keys.len() * per_key);
        let mut entries = Vec::with_capacity(keys.len() * per_key);
        for (key, name) in keys.iter().enumerate() {
            while pending[key].len() < per_key {
                pending[key].push_back((next[key], now_ms()));
                next[key] += 1;
            }
            for &(number, sent_ms) in pending[key].iter().take(per_key) {
                let id = format!("{name}n{number:08}");
                entries.push(PutRecordsEntry {
                    partition_key: name.clone(),
                    data: Bytes::from(record_data(&id, sent_ms, config.record_bytes)),
                    explicit_hash_key: None,
                });
                sent.push(Sent { key, number, id });
            }
        }
        lock(&history).sending(sent.iter().zip(&entries).map(|(record, entry)| {
            (
                record.id.as_str(),
                entry.partition_key.as_str(),
                &entry.data[..],
            )
        }));
        let input = PutRecords {
            stream_name: config.stream.clone(),
            records: entries,
        };
        let result = kinesis.call(&input).await;
        let ids: Vec<String> = sent.iter().map(|record| record.id.clone()).collect();
        let outcomes = lock(&history).put_records_ended(&ids, &result);
        let mut acked = 0;
        for (record, outcome) in sent.iter().zip(&outcomes) {
            if matches!(outcome, Outcome::Acked { .. }) {
                pending[record.key].retain(|(number, _)| *number != record.number);
                acked += 1;
            }
        }
        let failed = match &result {
            Ok(output) => {
                let codes: Vec<String> = (0..sent.len())
                    .filter_map(|index| match output.records.get(index) {
                        Some(entry) if entry.written().is_some() => None,
                        Some(entry) => Some(
                            entry
                                .error_code
                                .clone()
                                .unwrap_or_else(|| "missing result".to_string()),
                        ),
                        None => Some("missing result".to_string()),
                    })
                    .collect();
                let mut timeline = lock(&timeline);
                timeline.acked(acked);
                if !codes.is_empty() {
                    timeline.failed(codes.len() as u64, None, &codes);
                }
                !codes.is_empty()
            }
            Err(error) => {
                tracing::debug!(writer, %error, "PutRecords failed");
                lock(&timeline).failed(sent.len() as u64, Some(error), &[]);
                true
            }
        };
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        } else {
            backoff = Duration::from_millis(50);
        }
        if !config.pause.is_zero() {
            tokio::time::sleep(config.pause).await;
        }
    }
}
