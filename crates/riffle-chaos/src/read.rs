//! Reading a stream back for the checker: every shard, open and closed, with its lineage, from
//! its first record to its end (a closed shard) or its tip (an open one).

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;
use std::time::Instant;

use riffle_client::Error;
use riffle_client::Kinesis;
use riffle_client::StartingPosition;
use riffle_client::ops::records::GetRecords;
use riffle_client::ops::records::GetShardIterator;
use riffle_client::ops::records::Record;
use riffle_client::ops::streams::ListShards;
use riffle_client::ops::streams::Shard;

use crate::check::ShardRead;

/// Records asked for per GetRecords call.
const PAGE: u32 = 10_000;

/// Every shard of the stream, open and closed, parents before children.
pub async fn list_shards<K: Kinesis>(kinesis: &K, stream: &str) -> Result<Vec<Shard>, Error> {
    let mut shards = Vec::new();
    let mut page = kinesis.call(&ListShards::first_page(stream)).await?;
    loop {
        shards.append(&mut page.shards);
        match page.next_token.take() {
            Some(token) => page = kinesis.call(&ListShards::next_page(&token)).await?,
            None => break,
        }
    }
    Ok(lineage_order(shards))
}

/// Orders shards so that every shard comes after its parents (ids break ties; a parent that is
/// not listed, trimmed by retention, does not hold its children back).
fn lineage_order(mut shards: Vec<Shard>) -> Vec<Shard> {
    shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    let listed: HashSet<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut ordered = Vec::with_capacity(shards.len());
    while !shards.is_empty() {
        let ready = shards.iter().position(|shard| {
            shard
                .parents()
                .iter()
                .all(|parent| placed.contains(parent) || !listed.contains(parent))
        });
        // A cycle cannot happen; if it did, the rest keeps id order.
        let shard = shards.remove(ready.unwrap_or(0));
        placed.insert(shard.shard_id.clone());
        ordered.push(shard);
    }
    ordered
}

/// A shard iterator at `position`.
pub async fn shard_iterator<K: Kinesis>(
    kinesis: &K,
    stream: &str,
    shard_id: &str,
    position: StartingPosition,
) -> Result<String, Error> {
    let input = GetShardIterator {
        stream_name: stream.to_string(),
        shard_id: shard_id.to_string(),
        position,
    };
    Ok(kinesis.call(&input).await?.shard_iterator)
}

/// Calls `call` until it succeeds, pausing after each failure, until `deadline`.
async fn retry<T, F, Fut>(deadline: Instant, what: &str, mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() > deadline => anyhow::bail!("{what}: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Reads every shard of `stream` to its end (closed shards) or to its tip (open shards),
/// retrying failed calls (after an error, from the last record read) until `deadline`.
pub async fn read_stream<K: Kinesis>(
    kinesis: &K,
    stream: &str,
    deadline: Instant,
) -> anyhow::Result<Vec<ShardRead>> {
    let shards = retry(deadline, "ListShards", || list_shards(kinesis, stream)).await?;
    let mut read = Vec::with_capacity(shards.len());
    for shard in shards {
        let shard_id = shard.shard_id.as_str();
        let mut records: Vec<Record> = Vec::new();
        let mut iterator = retry(deadline, "GetShardIterator", || {
            shard_iterator(kinesis, stream, shard_id, StartingPosition::TrimHorizon)
        })
        .await?;
        loop {
            let input = GetRecords {
                shard_iterator: iterator.clone(),
                limit: Some(PAGE),
            };
            let mut page = match kinesis.call(&input).await {
                Ok(page) => page,
                Err(error) => {
                    if Instant::now() > deadline {
                        anyhow::bail!("GetRecords {shard_id}: {error}");
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let resume = match records.last() {
                        Some(last) => {
                            StartingPosition::AfterSequenceNumber(last.sequence_number.clone())
                        }
                        None => StartingPosition::TrimHorizon,
                    };
                    iterator = retry(deadline, "GetShardIterator", || {
                        shard_iterator(kinesis, stream, shard_id, resume.clone())
                    })
                    .await?;
                    continue;
                }
            };
            let at_tip = page.records.is_empty() && page.millis_behind_latest.unwrap_or(0) == 0;
            records.append(&mut page.records);
            match page.next_shard_iterator {
                None => break,
                Some(_) if at_tip => break,
                Some(next) => iterator = next,
            }
        }
        read.push(ShardRead {
            shard_id: shard.shard_id.clone(),
            parents: shard.parents(),
            records,
        });
    }
    Ok(read)
}
