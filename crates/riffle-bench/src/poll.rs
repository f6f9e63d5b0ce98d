//! `--mode poll`: put-to-consume latency through GetRecords. One task per shard takes a LATEST
//! iterator through one endpoint before any record is written, then polls as a KCL polling
//! consumer does: GetRecords again at once after a call that returned records, after
//! `--poll-interval-ms` after one that returned none. Records are written at a fixed rate (open
//! loop) through the other endpoints, and [`ledger`](crate::ledger) measures schedule-to-consume
//! latency and checks that every acknowledged record is consumed exactly once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use riffle_client::Client;
use riffle_client::Error;
use riffle_client::StartingPosition;
use riffle_client::ops::records::GetRecords;
use riffle_client::ops::records::GetShardIterator;

use crate::Args;
use crate::ledger;
use crate::ledger::Ledger;

/// Pause after a throttled (or otherwise retryable) GetRecords.
const BACKOFF: Duration = Duration::from_millis(100);

/// A shard iterator after `sequence_number`, or at LATEST without one.
async fn shard_iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    sequence_number: Option<&str>,
) -> anyhow::Result<String> {
    let position = match sequence_number {
        Some(sequence_number) => StartingPosition::AfterSequenceNumber(sequence_number.into()),
        None => StartingPosition::Latest,
    };
    let input = GetShardIterator {
        stream_name: stream.to_string(),
        shard_id: shard.to_string(),
        position,
    };
    Ok(client.call(&input).await?.shard_iterator)
}

/// Throttling or a server fault: the service said to try again.
fn is_retryable(error: &Error) -> bool {
    error.service().is_some() && error.is_retryable()
}

/// Reads one shard from `iterator` until stopped or the shard ends.
async fn poller(
    client: Client,
    stream: String,
    shard: String,
    mut iterator: String,
    idle: Duration,
    ledger: Arc<Ledger>,
) -> anyhow::Result<()> {
    let mut last_sequence_number: Option<String> = None;
    while !ledger.stopped() {
        let input = GetRecords {
            shard_iterator: iterator.clone(),
            limit: None,
        };
        let output = match client.call(&input).await {
            Ok(output) => output,
            // Restart after the last record consumed; before the first one, LATEST is where
            // this reader started (a KCL consumer restarts from its initial position too).
            Err(error) if error.is("ExpiredIteratorException") => {
                iterator =
                    shard_iterator(&client, &stream, &shard, last_sequence_number.as_deref())
                        .await?;
                continue;
            }
            Err(error) if is_retryable(&error) => {
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
            Err(error) => bail!("GetRecords {shard}: {error}"),
        };
        ledger.record_read(&output.records, ledger::now_micros())?;
        if let Some(last) = output.records.last() {
            last_sequence_number = Some(last.sequence_number.clone());
        }
        let Some(next_iterator) = output.next_shard_iterator else {
            return Ok(()); // the shard was closed and has been read to its end
        };
        iterator = next_iterator;
        if output.records.is_empty() {
            tokio::time::sleep(idle).await;
        }
    }
    Ok(())
}

/// Runs the polling latency benchmark and prints its report.
pub async fn run(client: Client, args: &Args) -> anyhow::Result<()> {
    let (write_endpoints, read_endpoint) = ledger::split_endpoints(&args.endpoint)?;
    let reader_client = client.with_endpoints(vec![read_endpoint], riffle_client::Spread::Sticky);
    let shards = ledger::shard_ids(&reader_client, &args.stream).await?;
    let ledger = Arc::new(Ledger::new()?);
    let idle = Duration::from_millis(args.poll_interval_ms);
    let mut pollers = Vec::new();
    for shard in &shards {
        let iterator = shard_iterator(&reader_client, &args.stream, shard, None).await?;
        pollers.push(tokio::spawn(poller(
            reader_client.clone(),
            args.stream.clone(),
            shard.clone(),
            iterator,
            idle,
            ledger.clone(),
        )));
    }

    let written = ledger::write(&client, &write_endpoints, args, &ledger).await?;
    let outcome = ledger::finish(&ledger, written, pollers).await?;
    let get_records_calls = outcome.reads.reads;
    let records_per_call = outcome.reads.records as f64 / get_records_calls.max(1) as f64;
    crate::report::ReadReport {
        mode: "poll",
        title: format!(
            "GetRecords polling ({} ms when idle)",
            args.poll_interval_ms
        ),
        verb: "consume",
        verb_past: "consumed",
        shards: shards.len(),
        outcome: &outcome,
        extra: serde_json::json!({
            "get_records_calls": get_records_calls,
            "records_per_call": (records_per_call * 100.0).round() / 100.0,
        }),
    }
    .print_and_check(args.json)
}
