//! `--mode fanout`: put-to-deliver latency through enhanced fan-out. One consumer is registered
//! and subscribes to every shard (SubscribeToShard, LATEST) through one endpoint; records are
//! written at a fixed rate (open loop) through the others, and [`ledger`](crate::ledger)
//! measures schedule-to-delivery latency and checks that every acknowledged record arrives
//! exactly once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use bytes::BytesMut;
use http_body_util::BodyExt;
use http_body_util::Full;
use riffle_types::eventstream::Message;

use crate::Args;
use crate::HttpClient;
use crate::ledger;
use crate::ledger::Ledger;

struct Shared {
    ledger: Ledger,
    subscribed: AtomicU64,
    /// Exceptions that ended a subscription, by `:exception-type`.
    exceptions: Mutex<Vec<String>>,
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
    while !shared.ledger.stopped() {
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
            let received = ledger::now_micros();
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
                            .exceptions
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
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
                        shared.ledger.record_read(&event["Records"], received)?;
                    }
                }
            }
            if shared.ledger.stopped() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Runs the fan-out latency benchmark and prints its report.
pub async fn run(client: HttpClient, args: &Args) -> anyhow::Result<()> {
    let (write_endpoints, subscribe_endpoint) = ledger::split_endpoints(&args.endpoint)?;
    let consumer_client = riffle_consumer::Client::new(vec![subscribe_endpoint.clone()]);
    let consumer =
        riffle_consumer::ensure_consumer(&consumer_client, &args.stream, "riffle-bench").await?;
    let shards = ledger::shard_ids(&consumer_client, &args.stream).await?;
    let shared = Arc::new(Shared {
        ledger: Ledger::new()?,
        subscribed: AtomicU64::new(0),
        exceptions: Mutex::new(Vec::new()),
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

    let written = ledger::write(&client, &write_endpoints, args, &shared.ledger).await?;
    let outcome = ledger::finish(&shared.ledger, written, subscribers).await?;
    let exceptions =
        std::mem::take(&mut *shared.exceptions.lock().unwrap_or_else(|e| e.into_inner()));
    crate::report::ReadReport {
        mode: "fanout",
        title: "SubscribeToShard fan-out".to_string(),
        verb: "deliver",
        verb_past: "delivered",
        shards: shards.len(),
        outcome: &outcome,
        extra: serde_json::json!({
            "events": outcome.reads.reads,
            "exceptions": exceptions,
        }),
    }
    .print_and_check(args.json)
}
