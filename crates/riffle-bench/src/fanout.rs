//! `--mode fanout`: put-to-deliver latency through enhanced fan-out. One consumer is registered
//! and subscribes to every shard (SubscribeToShard, LATEST) through one endpoint; records are
//! written at a fixed rate (open loop) through the others. Each record carries a bench-wide id
//! and the time its PutRecords call was scheduled, so the subscriber measures schedule-to-
//! delivery latency (coordinated omission cannot hide a stall: a late call is charged from
//! when it should have gone out) and checks that every acknowledged record arrives exactly once.

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
use anyhow::bail;
use base64::Engine as _;
use bytes::Bytes;
use bytes::BytesMut;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use http_body_util::Full;
use rand::Rng;
use riffle_types::eventstream::Message;

use crate::Args;
use crate::HttpClient;
use crate::call;

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

async fn json_call(
    client: &HttpClient,
    endpoint: &str,
    operation: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let (status, body) = call(
        client,
        endpoint,
        operation,
        serde_json::to_vec(&body)?.into(),
    )
    .await?;
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status != 200 {
        bail!("{operation} failed: {status} {value}");
    }
    Ok(value)
}

async fn shard_ids(
    client: &HttpClient,
    endpoint: &str,
    stream: &str,
) -> anyhow::Result<Vec<String>> {
    let listed = json_call(
        client,
        endpoint,
        "ListShards",
        serde_json::json!({"StreamName": stream}),
    )
    .await?;
    Ok(listed["Shards"]
        .as_array()
        .context("no Shards")?
        .iter()
        .filter(|shard| shard["SequenceNumberRange"]["EndingSequenceNumber"].is_null())
        .filter_map(|shard| shard["ShardId"].as_str().map(str::to_string))
        .collect())
}

/// What the subscribers saw.
struct Delivered {
    latency: Histogram<u64>,
    ids: HashSet<u64>,
    duplicates: u64,
    events: u64,
    exceptions: Vec<String>,
}

struct Shared {
    delivered: Mutex<Delivered>,
    /// Record ids at or after this are measured (those before belong to the warm-up).
    first_measured: AtomicU64,
    subscribed: AtomicU64,
    stop: AtomicBool,
}

/// Reads one shard's subscriptions until stopped, re-subscribing after the 5-minute limit or an
/// exception from the last continuation.
async fn subscriber(
    client: HttpClient,
    endpoint: String,
    consumer: String,
    shard: String,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut continuation: Option<String> = None;
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let position = match &continuation {
            Some(sequence) => {
                serde_json::json!({"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": sequence})
            }
            None => serde_json::json!({"Type": "LATEST"}),
        };
        let body = serde_json::json!({"ConsumerARN": consumer, "ShardId": shard, "StartingPosition": position});
        let request = http::Request::post(&endpoint)
            .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
        let response = client.request(request).await?;
        if response.status() != 200 {
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            if text.contains("ResourceInUseException") {
                // The previous subscription is younger than 5 seconds.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            bail!("SubscribeToShard {shard}: {status} {text}");
        }
        let mut body = response.into_body();
        let mut buffer = BytesMut::new();
        'frames: while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            let received = now_micros();
            buffer.extend_from_slice(&data);
            loop {
                let (message, used) = match Message::decode(&buffer) {
                    Ok(decoded) => decoded,
                    Err(riffle_types::eventstream::DecodeError::Incomplete(_)) => break,
                    Err(error) => bail!("bad event-stream message: {error:?}"),
                };
                let _ = buffer.split_to(used);
                match message.header(":message-type") {
                    Some("exception") => {
                        let kind = message.header(":exception-type").unwrap_or("?").to_string();
                        shared
                            .delivered
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .exceptions
                            .push(kind);
                        break 'frames;
                    }
                    _ if message.header(":event-type") == Some("initial-response") => {
                        if first {
                            first = false;
                            shared.subscribed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        let event: serde_json::Value = serde_json::from_slice(&message.payload)?;
                        if let Some(sequence) = event["ContinuationSequenceNumber"].as_str() {
                            continuation = Some(sequence.to_string());
                        }
                        record_event(&event, received, &shared)?;
                    }
                }
            }
            if shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn record_event(event: &serde_json::Value, received: u64, shared: &Shared) -> anyhow::Result<()> {
    let first_measured = shared.first_measured.load(Ordering::Relaxed);
    let mut delivered = shared
        .delivered
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    delivered.events += 1;
    for record in event["Records"].as_array().into_iter().flatten() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(record["Data"].as_str().unwrap_or_default())?;
        if data.len() < 16 {
            continue;
        }
        let id = u64::from_be_bytes(data[0..8].try_into()?);
        let sent = u64::from_be_bytes(data[8..16].try_into()?);
        if !delivered.ids.insert(id) {
            delivered.duplicates += 1;
            continue;
        }
        if id >= first_measured {
            let _ = delivered
                .latency
                .record(received.saturating_sub(sent).max(1));
        }
    }
    Ok(())
}

/// Runs the fan-out latency benchmark and prints its report.
pub async fn run(client: HttpClient, args: &Args) -> anyhow::Result<()> {
    let write_endpoints: Vec<String> = if args.endpoint.len() > 1 {
        args.endpoint[..args.endpoint.len() - 1].to_vec()
    } else {
        args.endpoint.clone()
    };
    let subscribe_endpoint = args.endpoint.last().context("no endpoint")?.clone();
    let consumer = riffle_consumer::ensure_consumer(
        &riffle_consumer::Client::new(vec![subscribe_endpoint.clone()]),
        &args.stream,
        "riffle-bench",
    )
    .await?;
    let shards = shard_ids(&client, &subscribe_endpoint, &args.stream).await?;
    let shared = Arc::new(Shared {
        delivered: Mutex::new(Delivered {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            ids: HashSet::new(),
            duplicates: 0,
            events: 0,
            exceptions: Vec::new(),
        }),
        first_measured: AtomicU64::new(u64::MAX),
        subscribed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let mut subscribers = Vec::new();
    for shard in &shards {
        subscribers.push(tokio::spawn(subscriber(
            client.clone(),
            subscribe_endpoint.clone(),
            consumer.clone(),
            shard.clone(),
            shared.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.subscribed.load(Ordering::Relaxed) < shards.len() as u64 {
        if Instant::now() > deadline {
            bail!("subscriptions did not start within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Open loop: one PutRecords call of `batch` records every batch/rate seconds, each on its
    // own task, whatever the previous calls are doing.
    let batch = args.batch.max(1);
    let rate = args.rate.unwrap_or(1000).max(1);
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let acked = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let put_latency = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let failures = Arc::new(AtomicU64::new(0));
    let padding = args.record_bytes.max(16) - 16;
    let started = Instant::now();
    let total = Duration::from_secs(args.warmup + args.seconds);
    let mut next_id = 0u64;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::new();
    let mut call_index = 0usize;
    while started.elapsed() < total {
        tick.tick().await;
        if started.elapsed() >= Duration::from_secs(args.warmup)
            && shared.first_measured.load(Ordering::Relaxed) == u64::MAX
        {
            shared.first_measured.store(next_id, Ordering::Relaxed);
        }
        let scheduled = now_micros();
        let ids: Vec<u64> = (next_id..next_id + batch as u64).collect();
        next_id += batch as u64;
        let records: Vec<serde_json::Value> = {
            let mut rng = rand::rng();
            ids.iter()
                .map(|id| {
                    let mut data = Vec::with_capacity(16 + padding);
                    data.extend_from_slice(&id.to_be_bytes());
                    data.extend_from_slice(&scheduled.to_be_bytes());
                    data.resize(16 + padding, 0x5a);
                    serde_json::json!({
                        "PartitionKey": format!("pk-{}", rng.random::<u64>()),
                        "Data": base64::engine::general_purpose::STANDARD.encode(&data),
                    })
                })
                .collect()
        };
        let body = serde_json::json!({"StreamName": args.stream, "Records": records});
        let endpoint = write_endpoints[call_index % write_endpoints.len()].clone();
        call_index += 1;
        let (client, acked, put_latency, failures) = (
            client.clone(),
            acked.clone(),
            put_latency.clone(),
            failures.clone(),
        );
        calls.push(tokio::spawn(async move {
            let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let result = call(&client, &endpoint, "PutRecords", body).await;
            let elapsed = now_micros().saturating_sub(scheduled);
            match result {
                Ok((200, body)) => {
                    let output: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_default();
                    let mut acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                    for (id, record) in ids
                        .iter()
                        .zip(output["Records"].as_array().into_iter().flatten())
                    {
                        if record["SequenceNumber"].is_string() {
                            acked.insert(*id);
                        } else {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = put_latency
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(elapsed.max(1));
                }
                _ => {
                    failures.fetch_add(ids.len() as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    let elapsed = started.elapsed().as_secs_f64();
    for call in calls {
        let _ = call.await;
    }
    // Let the last events arrive.
    let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
    let drain = Instant::now() + Duration::from_secs(10);
    loop {
        let missing = {
            let delivered = shared
                .delivered
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?;
            acked
                .iter()
                .filter(|id| !delivered.ids.contains(id))
                .count()
        };
        if missing == 0 || Instant::now() > drain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    for subscriber in subscribers {
        subscriber.abort();
    }
    let delivered = shared
        .delivered
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let lost = acked
        .iter()
        .filter(|id| !delivered.ids.contains(id))
        .count();
    let put = put_latency.lock().unwrap_or_else(|e| e.into_inner());
    let latency = &delivered.latency;
    let ms = |histogram: &Histogram<u64>, quantile: f64| {
        histogram.value_at_quantile(quantile) as f64 / 1000.0
    };
    let result = serde_json::json!({
        "mode": "fanout",
        "shards": shards.len(),
        "rate": rate,
        "batch": batch,
        "record_bytes": 16 + padding,
        "seconds": elapsed,
        "acknowledged": acked.len(),
        "delivered": delivered.ids.len(),
        "measured": latency.len(),
        "lost": lost,
        "duplicates": delivered.duplicates,
        "failed_records": failures.load(Ordering::Relaxed),
        "events": delivered.events,
        "exceptions": delivered.exceptions,
        "deliver_p50_ms": ms(latency, 0.5),
        "deliver_p90_ms": ms(latency, 0.9),
        "deliver_p99_ms": ms(latency, 0.99),
        "deliver_p999_ms": ms(latency, 0.999),
        "deliver_max_ms": latency.max() as f64 / 1000.0,
        "deliver_mean_ms": latency.mean() / 1000.0,
        "put_p50_ms": ms(&put, 0.5),
        "put_p99_ms": ms(&put, 0.99),
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "SubscribeToShard fan-out, {} shards, {} records/s in PutRecords of {} x {} B, {:.1} s: \
             put-to-deliver p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, mean {:.2} ms \
             ({} measured); PutRecords ack p50 {:.2} ms, p99 {:.2} ms; acknowledged {}, delivered {}, lost {}, duplicates {}, failed records {}, exceptions {:?}",
            shards.len(),
            rate,
            batch,
            16 + padding,
            elapsed,
            ms(latency, 0.5),
            ms(latency, 0.9),
            ms(latency, 0.99),
            ms(latency, 0.999),
            latency.max() as f64 / 1000.0,
            latency.mean() / 1000.0,
            latency.len(),
            ms(&put, 0.5),
            ms(&put, 0.99),
            acked.len(),
            delivered.ids.len(),
            lost,
            delivered.duplicates,
            failures.load(Ordering::Relaxed),
            delivered.exceptions,
        );
    }
    if lost > 0 {
        bail!("{lost} acknowledged records were never delivered");
    }
    Ok(())
}
