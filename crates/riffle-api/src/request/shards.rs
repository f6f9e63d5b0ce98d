//! Inputs of the shard operations: ListShards (every ShardFilter type, signed NextTokens),
//! SplitShard, MergeShards.

use riffle_types::HashKey;
use riffle_types::HashKeyError;
use riffle_types::KinesisError;
use riffle_types::PageToken;
use riffle_types::ShardId;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Ctx;
use super::members::StreamRef;
use super::members::bounded_int;
use super::members::check_shard_id;
use super::members::quoted;
use super::members::required_stream;
use super::members::stream_identity;
use crate::wire::Map;

/// A `ShardFilter` (FROM_TRIM_HORIZON when absent). It travels inside ListShards' NextToken.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ShardFilter {
    FromTrimHorizon,
    AtTrimHorizon,
    AtLatest,
    /// Shards with an index above this one.
    AfterShardId(u32),
    /// Epoch milliseconds.
    AtTimestamp(u64),
    /// Epoch milliseconds.
    FromTimestamp(u64),
}

/// ListShards, from the stream and its members or from a `NextToken`.
#[derive(Clone, Debug, PartialEq)]
pub struct ListShardsInput {
    pub stream: StreamRef,
    /// The creation time the shards must belong to (`StreamCreationTimestamp`, or the
    /// incarnation a NextToken was issued for).
    pub created_ms: Option<u64>,
    /// List the shards with an index above this one.
    pub after: Option<u32>,
    pub filter: ShardFilter,
    pub max_results: usize,
}

/// SplitShard.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitShardInput {
    pub stream: StreamRef,
    /// `ShardToSplit` as given (its shape is valid; whether it exists is the handler's call).
    pub shard_id: String,
    pub new_starting_hash_key: HashKey,
}

/// MergeShards.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeShardsInput {
    pub stream: StreamRef,
    pub shard_id: String,
    pub adjacent_shard_id: String,
}

/// ListShards' page token payload (sealed with the cluster's token key).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ListShardsToken {
    pub stream: String,
    pub created_ms: u64,
    /// The last shard index returned.
    pub after: u32,
    pub filter: ShardFilter,
    pub max_results: usize,
}

/// The token class of ListShards' `NextToken`.
pub(crate) const LIST_SHARDS_TOKEN: u8 = 1;

fn read_filter(
    ctx: &Ctx<'_>,
    errors: &mut ValidationErrors,
    input: &Map,
) -> Result<ShardFilter, KinesisError> {
    let Some(filter) = input.map("ShardFilter")? else {
        return Ok(ShardFilter::FromTrimHorizon);
    };
    let kind = filter.string("Type")?;
    let shard_id = filter.string("ShardId")?;
    check_shard_id(errors, "shardFilter.shardId", shard_id, false);
    let timestamp = filter.timestamp("Timestamp")?;
    let Some(kind) = kind else {
        errors.push("null", "shardFilter.type", "Member must not be null");
        return Ok(ShardFilter::FromTrimHorizon);
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
            ShardFilter::AfterShardId(id.0)
        }
        "AT_TRIM_HORIZON" => ShardFilter::AtTrimHorizon,
        "FROM_TRIM_HORIZON" => ShardFilter::FromTrimHorizon,
        "AT_LATEST" => ShardFilter::AtLatest,
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
                ShardFilter::AtTimestamp(millis)
            } else {
                ShardFilter::FromTimestamp(millis)
            }
        }
        other => {
            errors.push(
                &quoted(other),
                "shardFilter.type",
                "Member must satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
            );
            ShardFilter::FromTrimHorizon
        }
    };
    Ok(parsed)
}

pub fn list_shards(ctx: &Ctx<'_>, input: &Map) -> Result<ListShardsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = stream_identity(ctx, input, &mut errors)?;
    let next_token = input.string("NextToken")?;
    let exclusive_start = input.string("ExclusiveStartShardId")?;
    check_shard_id(&mut errors, "exclusiveStartShardId", exclusive_start, false);
    let max_results = bounded_int(&mut errors, input, "MaxResults", "maxResults", 1, 10_000)?;
    let creation = input.timestamp("StreamCreationTimestamp")?;
    let filter = read_filter(ctx, &mut errors, input)?;
    errors.into_result()?;
    let key = ctx.token_key()?;

    match (next_token, stream) {
        (Some(_), Some(_)) => {
            let member = if input.string("StreamName")?.is_some() {
                "StreamName"
            } else {
                "StreamARN"
            };
            Err(KinesisError::invalid_argument(format!(
                "NextToken and {member} cannot be provided together."
            )))
        }
        (Some(token), None) => {
            if exclusive_start.is_some() {
                return Err(KinesisError::invalid_argument(
                    "NextToken and ExclusiveStartShardId cannot be provided together.",
                ));
            }
            let payload = PageToken::open(key, LIST_SHARDS_TOKEN, token, ctx.now_ms)
                .map_err(|error| super::token_error(error, "NextToken"))?;
            let token: ListShardsToken = serde_json::from_slice(&payload)
                .map_err(|_| KinesisError::invalid_argument("Invalid NextToken."))?;
            Ok(ListShardsInput {
                stream: StreamRef::named(token.stream),
                created_ms: Some(token.created_ms),
                after: Some(token.after),
                filter: token.filter,
                max_results: token.max_results,
            })
        }
        (None, Some(stream)) => {
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
            Ok(ListShardsInput {
                stream,
                created_ms: creation.map(|timestamp| timestamp.millis.max(0) as u64),
                after,
                filter,
                max_results: max.min(limits::LIST_SHARDS_DEFAULT_MAX),
            })
        }
        (None, None) => Err(KinesisError::invalid_argument(
            "Either NextToken or StreamName should be provided.",
        )),
    }
}

pub fn split_shard(ctx: &Ctx<'_>, input: &Map) -> Result<SplitShardInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
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
    Ok(SplitShardInput {
        stream,
        shard_id: shard_id.unwrap_or_default().to_string(),
        new_starting_hash_key: parsed_start.unwrap_or(HashKey::MIN),
    })
}

pub fn merge_shards(ctx: &Ctx<'_>, input: &Map) -> Result<MergeShardsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let first = input.string("ShardToMerge")?;
    let second = input.string("AdjacentShardToMerge")?;
    check_shard_id(&mut errors, "shardToMerge", first, true);
    check_shard_id(&mut errors, "adjacentShardToMerge", second, true);
    errors.into_result()?;
    Ok(MergeShardsInput {
        stream,
        shard_id: first.unwrap_or_default().to_string(),
        adjacent_shard_id: second.unwrap_or_default().to_string(),
    })
}
