//! Inputs of the stream lifecycle and description operations: CreateStream, DeleteStream,
//! DescribeStream, DescribeStreamSummary, ListStreams, Increase/DecreaseStreamRetentionPeriod,
//! DescribeLimits, UpdateShardCount, UpdateStreamMode.

use std::collections::BTreeMap;

use riffle_control::model::StreamMode;
use riffle_types::KinesisError;
use riffle_types::PageToken;
use riffle_types::ShardId;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Ctx;
use super::members::StreamRef;
use super::members::bounded_int;
use super::members::check_shard_id;
use super::members::check_stream_name;
use super::members::quoted;
use super::members::required_stream;
use super::members::stream_identity;
use super::tags::read_tag_map;
use crate::wire::Map;

/// CreateStream.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateStreamInput {
    pub stream: StreamRef,
    /// The shard count asked for, or on-demand's initial count.
    pub shard_count: u32,
    pub mode: StreamMode,
    /// `Tags`; empty when the request has none (an empty `Tags` map is a validation error).
    pub tags: BTreeMap<String, String>,
}

/// DeleteStream.
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteStreamInput {
    pub stream: StreamRef,
    pub enforce_consumer_deletion: bool,
}

/// DescribeStream.
#[derive(Clone, Debug, PartialEq)]
pub struct DescribeStreamInput {
    pub stream: StreamRef,
    /// Shards to describe at most.
    pub limit: usize,
    /// The index of `ExclusiveStartShardId`, when it is a shard id.
    pub after: Option<u32>,
}

/// DescribeStreamSummary.
#[derive(Clone, Debug, PartialEq)]
pub struct DescribeStreamSummaryInput {
    pub stream: StreamRef,
}

/// ListStreams, from `ExclusiveStartStreamName` and `Limit` or from a `NextToken`.
#[derive(Clone, Debug, PartialEq)]
pub struct ListStreamsInput {
    /// List the streams whose names sort after this one.
    pub after: Option<String>,
    pub limit: usize,
}

/// Increase- and DecreaseStreamRetentionPeriod.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionPeriodInput {
    pub stream: StreamRef,
    pub hours: u32,
}

/// DescribeLimits (no members).
#[derive(Clone, Debug, PartialEq)]
pub struct DescribeLimitsInput;

/// UpdateShardCount (`ScalingType` is always UNIFORM_SCALING).
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateShardCountInput {
    pub stream: StreamRef,
    pub target: u32,
}

/// UpdateStreamMode.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateStreamModeInput {
    pub stream: StreamRef,
    pub mode: StreamMode,
}

/// ListStreams' page token payload (sealed with the cluster's token key).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct ListStreamsToken {
    pub after: String,
    pub limit: usize,
}

/// The token class of ListStreams' `NextToken`.
pub(crate) const LIST_STREAMS_TOKEN: u8 = 2;

pub fn create_stream(input: &Map) -> Result<CreateStreamInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = input.string("StreamName")?;
    match name {
        None => errors.push("null", "streamName", "Member must not be null"),
        Some(_) => check_stream_name(&mut errors, "streamName", name),
    }
    let shard_count = bounded_int(
        &mut errors,
        input,
        "ShardCount",
        "shardCount",
        1,
        i64::from(i32::MAX),
    )?;
    let mode = match input.map("StreamModeDetails")? {
        Some(details) => read_stream_mode(&mut errors, details)?,
        None => StreamMode::Provisioned,
    };
    let tags = match input.map("Tags")? {
        Some(tags) => read_tag_map(&mut errors, tags, "tags")?,
        None => BTreeMap::new(),
    };
    errors.into_result()?;
    let shard_count = match (mode, shard_count) {
        (StreamMode::OnDemand, Some(_)) => {
            return Err(KinesisError::invalid_argument(
                "ShardCount is not expected when StreamMode=ON_DEMAND",
            ));
        }
        (StreamMode::OnDemand, None) => limits::ON_DEMAND_INITIAL_SHARDS,
        (StreamMode::Provisioned, Some(count)) => count as u32,
        (StreamMode::Provisioned, None) => {
            return Err(KinesisError::invalid_argument(
                "ShardCount is required when StreamMode=PROVISIONED",
            ));
        }
    };
    Ok(CreateStreamInput {
        stream: StreamRef::named(name.unwrap_or_default()),
        shard_count,
        mode,
        tags,
    })
}

/// `StreamModeDetails.StreamMode` (required inside the structure).
fn read_stream_mode(
    errors: &mut ValidationErrors,
    details: &Map,
) -> Result<StreamMode, KinesisError> {
    Ok(match details.string("StreamMode")? {
        None => {
            errors.push(
                "null",
                "streamModeDetails.streamMode",
                "Member must not be null",
            );
            StreamMode::Provisioned
        }
        Some(text) => StreamMode::parse(text).unwrap_or_else(|| {
            errors.push(
                &quoted(text),
                "streamModeDetails.streamMode",
                "Member must satisfy enum value set: [ON_DEMAND, PROVISIONED]",
            );
            StreamMode::Provisioned
        }),
    })
}

pub fn update_shard_count(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<UpdateShardCountInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let target = bounded_int(
        &mut errors,
        input,
        "TargetShardCount",
        "targetShardCount",
        1,
        i64::from(i32::MAX),
    )?;
    if target.is_none() {
        errors.push("null", "targetShardCount", "Member must not be null");
    }
    match input.string("ScalingType")? {
        None => errors.push("null", "scalingType", "Member must not be null"),
        Some("UNIFORM_SCALING") => {}
        Some(other) => errors.push(
            &quoted(other),
            "scalingType",
            "Member must satisfy enum value set: [UNIFORM_SCALING]",
        ),
    }
    errors.into_result()?;
    Ok(UpdateShardCountInput {
        stream,
        target: target.unwrap_or_default() as u32,
    })
}

pub fn update_stream_mode(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<UpdateStreamModeInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let arn = input.string("StreamARN")?;
    if arn.is_none() {
        errors.push("null", "streamARN", "Member must not be null");
    }
    let stream = stream_identity(ctx, input, &mut errors)?;
    let mode = match input.map("StreamModeDetails")? {
        Some(details) => Some(read_stream_mode(&mut errors, details)?),
        None => {
            errors.push("null", "streamModeDetails", "Member must not be null");
            None
        }
    };
    errors.into_result()?;
    let (Some(stream), Some(mode)) = (stream, mode) else {
        return Err(KinesisError::invalid_argument(
            "StreamARN must be provided.",
        ));
    };
    Ok(UpdateStreamModeInput { stream, mode })
}

pub fn delete_stream(ctx: &Ctx<'_>, input: &Map) -> Result<DeleteStreamInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let enforce_consumer_deletion = input.bool("EnforceConsumerDeletion")?.unwrap_or(false);
    errors.into_result()?;
    Ok(DeleteStreamInput {
        stream,
        enforce_consumer_deletion,
    })
}

pub fn describe_stream(ctx: &Ctx<'_>, input: &Map) -> Result<DescribeStreamInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let limit = bounded_int(&mut errors, input, "Limit", "limit", 1, 10_000)?;
    let exclusive_start = input.string("ExclusiveStartShardId")?;
    check_shard_id(&mut errors, "exclusiveStartShardId", exclusive_start, false);
    errors.into_result()?;
    Ok(DescribeStreamInput {
        stream,
        limit: limit
            .map(|limit| limit as usize)
            .unwrap_or(limits::DESCRIBE_STREAM_MAX_LIMIT)
            .min(limits::DESCRIBE_STREAM_MAX_LIMIT),
        after: exclusive_start.and_then(ShardId::parse).map(|id| id.0),
    })
}

pub fn describe_stream_summary(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<DescribeStreamSummaryInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    errors.into_result()?;
    Ok(DescribeStreamSummaryInput { stream })
}

pub fn list_streams(ctx: &Ctx<'_>, input: &Map) -> Result<ListStreamsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let limit = bounded_int(&mut errors, input, "Limit", "limit", 1, 10_000)?;
    let exclusive_start = input.string("ExclusiveStartStreamName")?;
    check_stream_name(&mut errors, "exclusiveStartStreamName", exclusive_start);
    let next_token = input.string("NextToken")?;
    errors.into_result()?;
    let key = ctx.token_key()?;
    Ok(match next_token {
        Some(token) => {
            let payload = PageToken::open(key, LIST_STREAMS_TOKEN, token, ctx.now_ms)
                .map_err(|error| super::token_error(error, "NextToken"))?;
            let token: ListStreamsToken = serde_json::from_slice(&payload)
                .map_err(|_| KinesisError::invalid_argument("Invalid NextToken."))?;
            ListStreamsInput {
                after: Some(token.after),
                limit: token.limit,
            }
        }
        None => ListStreamsInput {
            after: exclusive_start.map(str::to_string),
            limit: limit
                .map(|limit| limit as usize)
                .unwrap_or(limits::LIST_STREAMS_MAX_LIMIT)
                .min(limits::LIST_STREAMS_MAX_LIMIT),
        },
    })
}

pub fn retention_period(ctx: &Ctx<'_>, input: &Map) -> Result<RetentionPeriodInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let hours = bounded_int(
        &mut errors,
        input,
        "RetentionPeriodHours",
        "retentionPeriodHours",
        1,
        8760 * 100,
    )?;
    if hours.is_none() {
        errors.push("null", "retentionPeriodHours", "Member must not be null");
    }
    errors.into_result()?;
    Ok(RetentionPeriodInput {
        stream,
        hours: hours.unwrap_or_default().clamp(0, i64::from(u32::MAX)) as u32,
    })
}
