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
use riffle_client::Client;
use riffle_client::Spread;
use riffle_client::StartingPosition;
use riffle_client::ops::consumers::SubscribeToShard;
use riffle_client::ops::consumers::SubscriptionEvent;

use crate::Args;
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
    client: Client,
    consumer: String,
    shard: String,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let mut continuation: Option<String> = None;
    let mut first = true;
    while !shared.ledger.stopped() {
        let input = SubscribeToShard {
            consumer_arn: consumer.clone(),
            shard_id: shard.clone(),
            starting_position: match &continuation {
                Some(sequence) => StartingPosition::AfterSequenceNumber(sequence.clone()),
                None => StartingPosition::Latest,
            },
        };
        let mut subscription = match client.subscribe_to_shard(&input).await {
            Ok(subscription) => subscription,
            Err(error) if error.is("ResourceInUseException") => {
                // The previous subscription is younger than 5 seconds.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(error) => bail!("SubscribeToShard {shard}: {error}"),
        };
        loop {
            let event = match subscription.next().await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                // An exception event ends the subscription; the next one resumes.
                Err(error) if error.service().is_some() => {
                    shared
                        .exceptions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(error.code().unwrap_or("?").to_string());
                    break;
                }
                Err(error) => bail!("SubscribeToShard {shard}: {error}"),
            };
            let received = ledger::now_micros();
            match event {
                SubscriptionEvent::Started => {
                    if first {
                        first = false;
                        shared.subscribed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SubscriptionEvent::Records(event) => {
                    continuation = Some(event.continuation_sequence_number);
                    shared.ledger.record_read(&event.records, received)?;
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
pub async fn run(client: Client, args: &Args) -> anyhow::Result<()> {
    let (write_endpoints, subscribe_endpoint) = ledger::split_endpoints(&args.endpoint)?;
    let consumer_client = client.with_endpoints(vec![subscribe_endpoint], Spread::Sticky);
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
            consumer_client.clone(),
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
