//! The data plane: PutRecord, PutRecords, GetShardIterator, GetRecords.
//!
//! Writes: records are routed by hash key to the shard that accepts writes for it and handed to
//! the node, which encodes them once into one batch per shard and appends it to the shard's
//! Raft group; a record's sequence number follows from where its batch landed in the log. A
//! shard sealed by a split or merge rejects the batch without writing it, and the records move
//! to the child shard.

use std::sync::Arc;

use futures_util::future::join_all;
use riffle_control::model::ShardRecord;
use riffle_control::model::ShardState;
use riffle_control::model::StreamRecord;
use riffle_node::AppendRecord;
use riffle_node::DataError;
use riffle_node::ReadPage;
use riffle_node::ReadRecord;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use riffle_types::SequenceNumber;
use riffle_types::ShardId;
use riffle_types::ShardIterator;
use riffle_types::limits;
use riffle_types::seqnum::Position;

use super::Api;
use super::common::data_stream;
use super::common::find_shard;
use super::common::find_stream;
use super::common::timestamp;
use crate::error::ApiError;
use crate::request::Ctx;
use crate::request::GetRecordsInput;
use crate::request::GetShardIteratorInput;
use crate::request::IteratorType;
use crate::request::NewRecord;
use crate::request::PutRecordInput;
use crate::request::PutRecordsInput;
use crate::request::StartingPosition;
use crate::wire::Map;
use crate::wire::Value;

/// How many times a write follows a shard that turned out sealed (a split can chain).
const MAX_REROUTES: usize = 8;

/// Where a record ended up.
enum Outcome {
    Written {
        shard: ShardId,
        sequence_number: String,
    },
    Failed {
        code: ErrorCode,
        message: String,
    },
}

/// Writes `entries` to `stream_name`, following sealed shards to their children.
async fn write_entries(
    api: &Api,
    ctx: &Ctx<'_>,
    stream_name: &str,
    entries: &[NewRecord],
) -> Result<Vec<Outcome>, ApiError> {
    let mut outcomes: Vec<Option<Outcome>> = entries.iter().map(|_| None).collect();
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut sealed: Vec<u32> = Vec::new();
    let arrival_ms = ctx.now_ms;
    for _ in 0..MAX_REROUTES {
        if pending.is_empty() {
            break;
        }
        // After a shard turned out sealed, the children must be visible: read the state anew.
        let state = if sealed.is_empty() {
            api.state_for(stream_name).await
        } else {
            api.synced_state().await
        };
        let stream: Arc<StreamRecord> = data_stream(ctx, &state, stream_name)?;
        // Group the pending records by target shard, keeping request order within a shard.
        let mut by_shard: Vec<(&ShardRecord, Vec<usize>)> = Vec::new();
        for &index in &pending {
            let Some(shard) = stream.route(entries[index].hash, &sealed) else {
                outcomes[index] = Some(Outcome::Failed {
                    code: ErrorCode::InternalFailureException,
                    message: "no open shard covers the record's hash key".into(),
                });
                continue;
            };
            match by_shard
                .iter_mut()
                .find(|(candidate, _)| candidate.index == shard.index)
            {
                Some((_, indexes)) => indexes.push(index),
                None => by_shard.push((shard, vec![index])),
            }
        }
        let appends = by_shard.iter().map(|(shard, indexes)| async move {
            let records = indexes.iter().map(|&index| AppendRecord {
                partition_key: &entries[index].partition_key,
                data: &entries[index].data,
            });
            api.node.append(shard, records, arrival_ms).await
        });
        let results = join_all(appends).await;
        let mut still_pending = Vec::new();
        for ((shard, indexes), result) in by_shard.iter().zip(results) {
            match result {
                Ok(entry) => {
                    for (place, &index) in indexes.iter().enumerate() {
                        let position = Position {
                            entry,
                            record: place as u32,
                        };
                        outcomes[index] = Some(Outcome::Written {
                            shard: shard.id(),
                            sequence_number: shard.sequence_number(position, arrival_ms).encode(),
                        });
                    }
                }
                Err(DataError::Closed) => {
                    sealed.push(shard.index);
                    still_pending.extend(indexes.iter().copied());
                }
                Err(error) => {
                    // Each record's outcome reports the error as the client would see it.
                    let error = crate::error::to_client(error);
                    for &index in indexes {
                        outcomes[index] = Some(Outcome::Failed {
                            code: error.code,
                            message: error.message.clone(),
                        });
                    }
                }
            }
        }
        still_pending.sort_unstable();
        pending = still_pending;
    }
    Ok(outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or(Outcome::Failed {
                code: ErrorCode::InternalFailureException,
                message: "the stream kept resharding while writing".into(),
            })
        })
        .collect())
}

pub async fn put_record(
    api: &Api,
    ctx: &Ctx<'_>,
    input: PutRecordInput,
) -> Result<Value, ApiError> {
    let outcomes = write_entries(
        api,
        ctx,
        &input.stream.name,
        std::slice::from_ref(&input.record),
    )
    .await?;
    match outcomes.into_iter().next() {
        Some(Outcome::Written {
            shard,
            sequence_number,
        }) => {
            let mut output = Map::with_capacity(2);
            output.push("ShardId", shard.to_string());
            output.push("SequenceNumber", sequence_number);
            Ok(Value::Map(output))
        }
        Some(Outcome::Failed { code, message }) => Err(KinesisError::new(code, message).into()),
        None => Err(KinesisError::internal("no outcome for the record").into()),
    }
}

pub async fn put_records(
    api: &Api,
    ctx: &Ctx<'_>,
    input: PutRecordsInput,
) -> Result<Value, ApiError> {
    let outcomes = write_entries(api, ctx, &input.stream.name, &input.records).await?;
    let mut failed = 0i64;
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|outcome| {
            let mut result = Map::with_capacity(2);
            match outcome {
                Outcome::Written {
                    shard,
                    sequence_number,
                } => {
                    result.push("SequenceNumber", sequence_number);
                    result.push("ShardId", shard.to_string());
                }
                Outcome::Failed { code, message } => {
                    failed += 1;
                    let (code, message) = match code {
                        ErrorCode::ProvisionedThroughputExceededException => {
                            (code.type_name(), message)
                        }
                        _ => {
                            tracing::debug!(%message, "put_records entry failed");
                            ("InternalFailure", "Internal Service Failure".to_string())
                        }
                    };
                    result.push("ErrorCode", code);
                    result.push("ErrorMessage", message);
                }
            }
            Value::Map(result)
        })
        .collect();
    let mut output = Map::with_capacity(2);
    output.push("FailedRecordCount", failed);
    output.push("Records", results);
    Ok(Value::Map(output))
}

pub async fn get_shard_iterator(
    api: &Api,
    ctx: &Ctx<'_>,
    input: GetShardIteratorInput,
) -> Result<Value, ApiError> {
    let state = api.state_for(&input.stream.name).await;
    let stream = data_stream(ctx, &state, &input.stream.name)?;
    let shard = find_shard(ctx, &stream, &input.shard_id)?;
    let position = resolve_start(api, ctx, &stream, shard, &input.start).await?;
    let iterator = ShardIterator {
        stream_name: stream.name.clone(),
        stream_created_ms: stream.created_ms,
        shard_index: shard.index,
        position,
        issued_ms: ctx.now_ms,
    };
    Ok(Value::Map(
        Map::new().with("ShardIterator", iterator.encode(ctx.token_key()?)),
    ))
}

/// Where reading `shard` starts for `start`: the one resolution of starting positions,
/// shared by GetShardIterator and SubscribeToShard (same rules, same errors).
pub(super) async fn resolve_start(
    api: &Api,
    ctx: &Ctx<'_>,
    stream: &StreamRecord,
    shard: &ShardRecord,
    start: &StartingPosition,
) -> Result<Position, ApiError> {
    let kind = start.kind.as_str();
    let position = match start.kind {
        IteratorType::TrimHorizon | IteratorType::Latest => {
            if start.sequence_number.is_some() {
                return Err(KinesisError::invalid_argument(format!(
                    "Request for an iterator of type {kind} should not contain a StartingSequenceNumber."
                )).into());
            }
            if start.kind == IteratorType::Latest {
                api.node.locate(shard, None).await?
            } else {
                Position {
                    entry: 0,
                    record: 0,
                }
            }
        }
        IteratorType::AtSequenceNumber | IteratorType::AfterSequenceNumber => {
            let Some(text) = start.sequence_number.as_deref() else {
                return Err(KinesisError::invalid_argument(format!(
                    "A StartingSequenceNumber is required for an iterator of type {kind}."
                ))
                .into());
            };
            let number = own_sequence_number(ctx, stream, shard, text)?;
            let position = number.position();
            if start.kind == IteratorType::AtSequenceNumber {
                position
            } else {
                Position {
                    entry: position.entry,
                    record: position.record + 1,
                }
            }
        }
        IteratorType::AtTimestamp => {
            let Some(at_time) = start.timestamp else {
                return Err(KinesisError::invalid_argument(
                    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP. Current request has no timestamp parameter.",
                ).into());
            };
            let millis = at_time.millis.max(0) as u64;
            if millis > ctx.now_ms {
                return Err(KinesisError::invalid_argument(format!(
                    "The timestampInMillis parameter cannot be greater than the currentTimestampInMillis. timestampInMillis: {millis}, currentTimestampInMillis: {}",
                    ctx.now_ms
                )).into());
            }
            api.node.locate(shard, Some(millis)).await?
        }
    };
    Ok(position)
}

/// Parses a sequence number that must belong to `shard` of this stream incarnation.
fn own_sequence_number(
    ctx: &Ctx<'_>,
    stream: &StreamRecord,
    shard: &ShardRecord,
    text: &str,
) -> Result<SequenceNumber, KinesisError> {
    let number = SequenceNumber::parse(text).map_err(|_| {
        KinesisError::invalid_argument(format!(
            "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} is invalid.",
            shard.id(),
            stream.name,
            ctx.account
        ))
    })?;
    if number.shard_index != shard.index {
        return Err(KinesisError::invalid_argument(format!(
            "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
            ShardId(number.shard_index),
            shard.id()
        )));
    }
    if number.shard_created_secs != shard.created_secs() {
        return Err(KinesisError::invalid_argument(format!(
            "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {} did not come from this stream.",
            shard.id(),
            stream.name,
            ctx.account
        )));
    }
    Ok(number)
}

pub async fn get_records(
    api: &Api,
    ctx: &Ctx<'_>,
    input: GetRecordsInput,
) -> Result<Value, ApiError> {
    let GetRecordsInput { iterator, limit } = input;
    let mut state = api.state_for(&iterator.stream_name).await;
    let stream = find_stream(ctx, &state, &iterator.stream_name)?;
    if stream.created_ms != iterator.stream_created_ms {
        return Err(ctx.stream_not_found(&iterator.stream_name).into());
    }
    let shard = stream.shard(ShardId(iterator.shard_index)).ok_or_else(|| {
        KinesisError::not_found(format!(
            "Shard {} in stream {} under account {} does not exist",
            ShardId(iterator.shard_index),
            stream.name,
            ctx.account
        ))
    })?;
    let max_records = limit.unwrap_or(limits::MAX_GET_RECORDS_LIMIT);
    let page = api
        .node
        .read(
            shard,
            iterator.position,
            max_records,
            limits::MAX_GET_RECORDS_BYTES,
        )
        .await?;
    // At the end of a closed shard the children must be known here too: this node's copy of
    // the metadata may not have seen the split yet.
    let shard_closed = matches!(shard.state, ShardState::Closed { .. });
    if page.end_of_shard && (!shard_closed || stream.children(shard.index).next().is_none()) {
        state = api.synced_state().await;
    }
    let stream = find_stream(ctx, &state, &iterator.stream_name)?;
    let millis_behind = millis_behind_latest(&page, ctx.now_ms);
    let records: Vec<Value> = page
        .records
        .into_iter()
        .map(|record| record_value(shard, record))
        .collect();
    let mut output = Map::with_capacity(4);
    output.push("Records", records);
    output.push("MillisBehindLatest", millis_behind);
    if page.end_of_shard {
        output.push("ChildShards", child_shards(&stream, shard.index));
    } else {
        let next = ShardIterator {
            stream_name: stream.name.clone(),
            stream_created_ms: stream.created_ms,
            shard_index: shard.index,
            position: page.next,
            issued_ms: ctx.now_ms,
        };
        output.push("NextShardIterator", next.encode(ctx.token_key()?));
    }
    Ok(Value::Map(output))
}

/// A record as GetRecords and SubscribeToShard return it.
pub(super) fn record_value(shard: &ShardRecord, record: ReadRecord) -> Value {
    let mut value = Map::with_capacity(4);
    value.push(
        "SequenceNumber",
        shard
            .sequence_number(record.position, record.arrival_ms)
            .encode(),
    );
    value.push("ApproximateArrivalTimestamp", timestamp(record.arrival_ms));
    value.push("Data", record.data);
    value.push(
        "PartitionKey",
        String::from_utf8_lossy(&record.partition_key).into_owned(),
    );
    Value::Map(value)
}

/// How far behind the shard's newest record a page ends: 0 when it reaches the tip.
pub(super) fn millis_behind_latest(page: &ReadPage, now_ms: u64) -> i64 {
    let caught_up = page.next.entry > page.tip;
    match page.records.last() {
        Some(last) if !caught_up => now_ms.saturating_sub(last.arrival_ms) as i64,
        _ => 0,
    }
}

/// The `ChildShards` of a closed shard: each child with its parents and hash-key range.
pub(super) fn child_shards(stream: &StreamRecord, parent: u32) -> Vec<Value> {
    stream
        .children(parent)
        .map(|child| {
            let mut range = Map::with_capacity(2);
            range.push("StartingHashKey", child.range.start.to_string());
            range.push("EndingHashKey", child.range.end.to_string());
            let parents: Vec<Value> = [child.parent, child.adjacent_parent]
                .into_iter()
                .flatten()
                .map(|index| Value::from(ShardId(index).to_string()))
                .collect();
            let mut value = Map::with_capacity(3);
            value.push("ShardId", child.id().to_string());
            value.push("ParentShards", parents);
            value.push("HashKeyRange", range);
            Value::Map(value)
        })
        .collect()
}
