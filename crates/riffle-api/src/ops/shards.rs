//! Shards: ListShards (with every ShardFilter type and signed NextTokens), SplitShard,
//! MergeShards.

use riffle_control::ControlCommand;
use riffle_control::model::ShardRecord;
use riffle_control::model::ShardState;
use riffle_control::model::StreamRecord;
use riffle_types::HashKey;
use riffle_types::HashKeyError;
use riffle_types::KinesisError;
use riffle_types::PageToken;
use riffle_types::ShardId;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Api;
use super::common::Ctx;
use super::common::bounded_int;
use super::common::check_shard_id;
use super::common::find_shard;
use super::common::find_stream;
use super::common::is_listed;
use super::common::quoted;
use super::common::required_stream;
use super::common::shard_value;
use super::common::stream_identity;
use crate::wire::Map;
use crate::wire::Value;

const LIST_SHARDS_TOKEN: u8 = 1;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum Filter {
    FromTrimHorizon,
    AtTrimHorizon,
    AtLatest,
    AfterShardId(u32),
    AtTimestamp(u64),
    FromTimestamp(u64),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ListShardsToken {
    stream: String,
    created_ms: u64,
    /// The last shard index returned.
    after: u32,
    filter: Filter,
    max_results: usize,
}

fn read_filter(
    ctx: &Ctx<'_>,
    errors: &mut ValidationErrors,
    input: &Map,
) -> Result<Filter, KinesisError> {
    let Some(filter) = input.map("ShardFilter")? else {
        return Ok(Filter::FromTrimHorizon);
    };
    let kind = filter.string("Type")?;
    let shard_id = filter.string("ShardId")?;
    check_shard_id(errors, "shardFilter.shardId", shard_id, false);
    let timestamp = filter.timestamp("Timestamp")?;
    let Some(kind) = kind else {
        errors.push("null", "shardFilter.type", "Member must not be null");
        return Ok(Filter::FromTrimHorizon);
    };
    let parsed = match kind {
        "AFTER_SHARD_ID" => {
            let Some(shard_id) = shard_id else {
                return Err(KinesisError::invalid_argument(
                    "Must specify ShardId when the ShardFilter type is AFTER_SHARD_ID.",
                ));
            };
            let id = ShardId::parse(shard_id).ok_or_else(|| {
                KinesisError::invalid_argument(format!(
                    "Invalid ShardId {shard_id} in ShardFilter."
                ))
            })?;
            Filter::AfterShardId(id.0)
        }
        "AT_TRIM_HORIZON" => Filter::AtTrimHorizon,
        "FROM_TRIM_HORIZON" => Filter::FromTrimHorizon,
        "AT_LATEST" => Filter::AtLatest,
        "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {
            let Some(timestamp) = timestamp else {
                return Err(KinesisError::invalid_argument(format!(
                    "Must specify Timestamp when the ShardFilter type is {kind}."
                )));
            };
            let millis = timestamp.millis.max(0) as u64;
            if millis > ctx.now_ms {
                return Err(KinesisError::invalid_argument(
                    "The Timestamp in ShardFilter cannot be greater than the current time.",
                ));
            }
            if kind == "AT_TIMESTAMP" {
                Filter::AtTimestamp(millis)
            } else {
                Filter::FromTimestamp(millis)
            }
        }
        other => {
            errors.push(
                &quoted(other),
                "shardFilter.type",
                "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
            );
            Filter::FromTrimHorizon
        }
    };
    Ok(parsed)
}

/// Whether `shard` passes `filter` (listing rules aside).
fn passes(ctx: &Ctx<'_>, stream: &StreamRecord, shard: &ShardRecord, filter: &Filter) -> bool {
    let horizon = ctx
        .now_ms
        .saturating_sub(u64::from(stream.retention_hours) * 3_600_000);
    let closed_ms = match shard.state {
        ShardState::Closed { closed_ms, .. } => Some(closed_ms),
        _ => None,
    };
    let open_at = |time: u64| {
        let created_by_then = shard.created_ms <= time.max(stream.created_ms);
        created_by_then && closed_ms.is_none_or(|closed| closed > time)
    };
    match filter {
        Filter::FromTrimHorizon => true,
        Filter::AtTrimHorizon => open_at(horizon),
        Filter::AtLatest => closed_ms.is_none(),
        Filter::AfterShardId(after) => shard.index > *after,
        Filter::AtTimestamp(time) => open_at(*time),
        Filter::FromTimestamp(time) => {
            closed_ms.is_none_or(|closed| closed >= (*time).max(horizon))
        }
    }
}

pub async fn list_shards(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = stream_identity(ctx, input, &mut errors)?;
    let next_token = input.string("NextToken")?;
    let exclusive_start = input.string("ExclusiveStartShardId")?;
    check_shard_id(&mut errors, "exclusiveStartShardId", exclusive_start, false);
    let max_results = bounded_int(&mut errors, input, "MaxResults", "maxResults", 1, 10_000)?;
    let creation = input.timestamp("StreamCreationTimestamp")?;
    let filter = read_filter(ctx, &mut errors, input)?;
    errors.into_result()?;
    let key = api.token_key()?;

    let (name, created_ms, after, filter, max_results) = match (next_token, name) {
        (Some(_), Some(_)) => {
            let member = if input.string("StreamName")?.is_some() {
                "StreamName"
            } else {
                "StreamARN"
            };
            return Err(KinesisError::invalid_argument(format!(
                "NextToken and {member} cannot be provided together."
            )));
        }
        (Some(token), None) => {
            if exclusive_start.is_some() {
                return Err(KinesisError::invalid_argument(
                    "NextToken and ExclusiveStartShardId cannot be provided together.",
                ));
            }
            let payload = PageToken::open(&key, LIST_SHARDS_TOKEN, token, ctx.now_ms)
                .map_err(|error| super::common_token_error(error, "NextToken"))?;
            let token: ListShardsToken = serde_json::from_slice(&payload)
                .map_err(|_| KinesisError::invalid_argument("Invalid NextToken."))?;
            (
                token.stream,
                Some(token.created_ms),
                Some(token.after),
                token.filter,
                token.max_results,
            )
        }
        (None, Some(name)) => {
            let after = match exclusive_start {
                Some(id) => Some(
                    ShardId::parse(id)
                        .ok_or_else(|| {
                            KinesisError::invalid_argument(format!(
                                "Invalid ExclusiveStartShardId {id}."
                            ))
                        })?
                        .0,
                ),
                None => None,
            };
            let max = max_results
                .map(|max| max as usize)
                .unwrap_or(limits::LIST_SHARDS_DEFAULT_MAX);
            let created = creation.map(|timestamp| timestamp.millis.max(0) as u64);
            (
                name,
                created,
                after,
                filter,
                max.min(limits::LIST_SHARDS_DEFAULT_MAX),
            )
        }
        (None, None) => {
            return Err(KinesisError::invalid_argument(
                "Either NextToken or StreamName should be provided.",
            ));
        }
    };
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    if created_ms.is_some_and(|created| created != stream.created_ms) {
        return Err(ctx.stream_not_found(&name));
    }
    let candidates: Vec<&ShardRecord> = stream
        .shards
        .iter()
        .filter(|shard| is_listed(ctx, &stream, shard))
        .filter(|shard| after.is_none_or(|after| shard.index > after))
        .filter(|shard| passes(ctx, &stream, shard, &filter))
        .collect();
    let has_more = candidates.len() > max_results;
    let page: Vec<&ShardRecord> = candidates.into_iter().take(max_results).collect();
    let mut output = Map::with_capacity(2);
    output.push(
        "Shards",
        page.iter()
            .map(|shard| shard_value(shard))
            .collect::<Vec<_>>(),
    );
    if has_more && let Some(last) = page.last() {
        let token = ListShardsToken {
            stream: stream.name.clone(),
            created_ms: stream.created_ms,
            after: last.index,
            filter,
            max_results,
        };
        let payload = serde_json::to_vec(&token)
            .map_err(|error| KinesisError::internal(error.to_string()))?;
        output.push(
            "NextToken",
            PageToken::seal(&key, LIST_SHARDS_TOKEN, &payload, ctx.now_ms),
        );
    }
    Ok(Value::Map(output))
}

pub async fn split_shard(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let shard_id = input.string("ShardToSplit")?;
    check_shard_id(&mut errors, "shardToSplit", shard_id, true);
    let new_start = input.string("NewStartingHashKey")?;
    let parsed_start = match new_start {
        None => {
            errors.push("null", "newStartingHashKey", "Member must not be null");
            None
        }
        Some(text) => match HashKey::parse_decimal(text) {
            Ok(key) => Some(key),
            Err(HashKeyError::NotDecimal) => {
                errors.push(
                    &quoted(text),
                    "newStartingHashKey",
                    "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                );
                None
            }
            Err(HashKeyError::OutOfRange) => {
                return Err(KinesisError::invalid_argument(format!(
                    "NewStartingHashKey {text} must be in the range [0, 2^128-1]."
                )));
            }
        },
    };
    errors.into_result()?;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let shard = find_shard(ctx, &stream, shard_id.unwrap_or_default()).map_err(|_| {
        KinesisError::not_found(format!(
            "Could not find shard {} in stream {name} under account {}.",
            shard_id.unwrap_or_default(),
            ctx.account
        ))
    })?;
    api.node
        .control()
        .propose(ControlCommand::SplitShard {
            name,
            shard: shard.index,
            new_start: parsed_start.unwrap_or(HashKey::MIN),
            now_ms: ctx.now_ms,
            shard_limit: api.node.config().shard_limit,
            avoid: api.node.down_nodes_list(),
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn merge_shards(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let first = input.string("ShardToMerge")?;
    let second = input.string("AdjacentShardToMerge")?;
    check_shard_id(&mut errors, "shardToMerge", first, true);
    check_shard_id(&mut errors, "adjacentShardToMerge", second, true);
    errors.into_result()?;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let lookup = |id: &str| {
        find_shard(ctx, &stream, id)
            .map(|shard| shard.index)
            .map_err(|_| {
                KinesisError::not_found(format!(
                    "Could not find shard {id} in stream {name} under account {}.",
                    ctx.account
                ))
            })
    };
    let shard = lookup(first.unwrap_or_default())?;
    let adjacent = lookup(second.unwrap_or_default())?;
    api.node
        .control()
        .propose(ControlCommand::MergeShards {
            name: name.clone(),
            shard,
            adjacent,
            now_ms: ctx.now_ms,
            avoid: api.node.down_nodes_list(),
        })
        .await?;
    Ok(Value::Map(Map::new()))
}
