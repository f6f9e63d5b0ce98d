//! Stream lifecycle and description: CreateStream, DeleteStream, DescribeStream,
//! DescribeStreamSummary, ListStreams, Increase/DecreaseStreamRetentionPeriod, DescribeLimits.

use std::collections::BTreeMap;
use std::time::Duration;

use riffle_control::ControlCommand;
use riffle_control::command::RetentionChange;
use riffle_control::command::open_shard_total;
use riffle_control::model::StreamMode;
use riffle_control::model::StreamStatus;
use riffle_types::KinesisError;
use riffle_types::ShardId;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Api;
use super::common::Ctx;
use super::common::bounded_int;
use super::common::check_stream_name;
use super::common::find_stream;
use super::common::is_listed;
use super::common::mode_value;
use super::common::quoted;
use super::common::required_stream;
use super::common::shard_value;
use super::common::stream_identity;
use super::common::timestamp;
use super::tags::read_tag_map;
use crate::wire::Map;
use crate::wire::Value;

/// How long CreateStream waits for the stream to become ACTIVE before returning anyway
/// (clients poll the status, as they must against AWS).
const CREATE_WAIT: Duration = Duration::from_secs(10);

pub async fn create_stream(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
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
    let name = name.unwrap_or_default().to_string();
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
    let config = api.node.config();
    api.node
        .control()
        .propose(ControlCommand::CreateStream {
            name: name.clone(),
            shard_count,
            mode,
            tags,
            now_ms: ctx.now_ms,
            shard_limit: config.shard_limit,
            replication_factor: config.replication_factor,
            avoid: api.node.down_nodes_list(),
        })
        .await?;
    wait_for_status(api, &name, StreamStatus::Active, CREATE_WAIT).await;
    Ok(Value::Map(Map::new()))
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

/// UpdateShardCount: accepted at once (the stream turns UPDATING); the scheduler reshards step
/// by step to equal ranges, then the stream is ACTIVE again.
pub async fn update_shard_count(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
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
    let target = target.unwrap_or_default() as u32;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let current = stream.open_shard_count();
    api.node
        .control()
        .propose(ControlCommand::UpdateShardCount {
            name: name.clone(),
            target,
            now_ms: ctx.now_ms,
            shard_limit: api.node.config().shard_limit,
        })
        .await?;
    let mut output = Map::with_capacity(4);
    output.push("StreamName", name);
    output.push("CurrentShardCount", current as i64);
    output.push("TargetShardCount", i64::from(target));
    output.push("StreamARN", ctx.arn(&stream));
    Ok(Value::Map(output))
}

/// UpdateStreamMode: PROVISIONED ⇄ ON_DEMAND; the shards stay as they are (on-demand streams
/// then scale with their load).
pub async fn update_stream_mode(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let arn = input.string("StreamARN")?;
    if arn.is_none() {
        errors.push("null", "streamARN", "Member must not be null");
    }
    let name = stream_identity(ctx, input, &mut errors)?;
    let mode = match input.map("StreamModeDetails")? {
        Some(details) => Some(read_stream_mode(&mut errors, details)?),
        None => {
            errors.push("null", "streamModeDetails", "Member must not be null");
            None
        }
    };
    errors.into_result()?;
    let (Some(name), Some(mode)) = (name, mode) else {
        return Err(KinesisError::invalid_argument(
            "StreamARN must be provided.",
        ));
    };
    if mode == StreamMode::OnDemand {
        let state = api.synced_state().await;
        let on_demand = state
            .streams
            .values()
            .filter(|stream| stream.mode == StreamMode::OnDemand && stream.name != name)
            .count();
        if on_demand >= limits::DEFAULT_ON_DEMAND_STREAM_LIMIT as usize {
            return Err(KinesisError::limit_exceeded(format!(
                "This request would exceed the on-demand stream count limit of {} for the account {}.",
                limits::DEFAULT_ON_DEMAND_STREAM_LIMIT,
                ctx.account
            )));
        }
    }
    api.node
        .control()
        .propose(ControlCommand::UpdateStreamMode {
            name,
            mode,
            now_ms: ctx.now_ms,
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

/// Waits (bounded) until the stream reaches `status`.
async fn wait_for_status(api: &Api, name: &str, status: StreamStatus, timeout: Duration) {
    let mut watch = api.node.control().watch();
    let reached = |state: &riffle_control::ControlState| {
        state.streams.get(name).is_none_or(|s| s.status == status)
    };
    let _ = tokio::time::timeout(timeout, async {
        loop {
            if reached(&watch.borrow_and_update()) {
                return;
            }
            if watch.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
}

pub async fn delete_stream(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let enforce_consumer_deletion = input.bool("EnforceConsumerDeletion")?.unwrap_or(false);
    errors.into_result()?;
    if !enforce_consumer_deletion {
        let state = api.synced_state().await;
        if let Some(stream) = state.streams.get(&name)
            && !stream.consumers.is_empty()
        {
            return Err(KinesisError::in_use(format!(
                "Stream {name} under account {} has {} registered consumers; deregister them or set EnforceConsumerDeletion.",
                ctx.account,
                stream.consumers.len()
            )));
        }
    }
    api.node
        .control()
        .propose(ControlCommand::DeleteStream { name })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn describe_stream(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    let limit = bounded_int(&mut errors, input, "Limit", "limit", 1, 10_000)?;
    let exclusive_start = input.string("ExclusiveStartShardId")?;
    super::common::check_shard_id(&mut errors, "exclusiveStartShardId", exclusive_start, false);
    errors.into_result()?;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let limit = limit
        .map(|limit| limit as usize)
        .unwrap_or(limits::DESCRIBE_STREAM_MAX_LIMIT)
        .min(limits::DESCRIBE_STREAM_MAX_LIMIT);
    let after = exclusive_start.and_then(ShardId::parse).map(|id| id.0);
    let listed: Vec<_> = stream
        .shards
        .iter()
        .filter(|shard| is_listed(ctx, &stream, shard))
        .filter(|shard| after.is_none_or(|after| shard.index > after))
        .collect();
    let has_more = listed.len() > limit;
    let shards: Vec<Value> = listed.into_iter().take(limit).map(shard_value).collect();
    let mut description = Map::with_capacity(11);
    description.push("StreamName", stream.name.clone());
    description.push("StreamARN", ctx.arn(&stream));
    description.push("StreamStatus", stream.status.as_str());
    description.push("StreamModeDetails", mode_value(&stream));
    description.push("Shards", shards);
    description.push("HasMoreShards", has_more);
    description.push("RetentionPeriodHours", stream.retention_hours);
    description.push("StreamCreationTimestamp", timestamp(stream.created_ms));
    description.push("EnhancedMonitoring", enhanced_monitoring());
    description.push("EncryptionType", "NONE");
    Ok(Value::Map(
        Map::new().with("StreamDescription", description),
    ))
}

fn enhanced_monitoring() -> Value {
    Value::Array(vec![Value::Map(
        Map::new().with("ShardLevelMetrics", Value::Array(Vec::new())),
    )])
}

pub async fn describe_stream_summary(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
    errors.into_result()?;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let mut summary = Map::with_capacity(11);
    summary.push("StreamName", stream.name.clone());
    summary.push("StreamARN", ctx.arn(&stream));
    summary.push("StreamStatus", stream.status.as_str());
    summary.push("StreamModeDetails", mode_value(&stream));
    summary.push("RetentionPeriodHours", stream.retention_hours);
    summary.push("StreamCreationTimestamp", timestamp(stream.created_ms));
    summary.push("EnhancedMonitoring", enhanced_monitoring());
    summary.push("EncryptionType", "NONE");
    summary.push("OpenShardCount", stream.open_shard_count() as i64);
    summary.push("ConsumerCount", stream.consumers.len() as i64);
    Ok(Value::Map(
        Map::new().with("StreamDescriptionSummary", summary),
    ))
}

const LIST_STREAMS_TOKEN: u8 = 2;

#[derive(serde::Serialize, serde::Deserialize)]
struct ListStreamsToken {
    after: String,
    limit: usize,
}

pub async fn list_streams(api: &Api, ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let limit = bounded_int(&mut errors, input, "Limit", "limit", 1, 10_000)?;
    let exclusive_start = input.string("ExclusiveStartStreamName")?;
    check_stream_name(&mut errors, "exclusiveStartStreamName", exclusive_start);
    let next_token = input.string("NextToken")?;
    errors.into_result()?;
    let key = api.token_key()?;
    let (after, limit) = match next_token {
        Some(token) => {
            let payload =
                riffle_types::PageToken::open(&key, LIST_STREAMS_TOKEN, token, ctx.now_ms)
                    .map_err(|error| super::common_token_error(error, "NextToken"))?;
            let token: ListStreamsToken = serde_json::from_slice(&payload)
                .map_err(|_| KinesisError::invalid_argument("Invalid NextToken."))?;
            (Some(token.after), token.limit)
        }
        None => (
            exclusive_start.map(str::to_string),
            limit
                .map(|limit| limit as usize)
                .unwrap_or(limits::LIST_STREAMS_MAX_LIMIT)
                .min(limits::LIST_STREAMS_MAX_LIMIT),
        ),
    };
    let state = api.synced_state().await;
    let candidates: Vec<_> = state
        .streams
        .values()
        .filter(|stream| {
            after
                .as_deref()
                .is_none_or(|after| stream.name.as_str() > after)
        })
        .collect();
    let has_more = candidates.len() > limit;
    let page: Vec<_> = candidates.into_iter().take(limit).collect();
    let names: Vec<Value> = page
        .iter()
        .map(|stream| Value::from(stream.name.as_str()))
        .collect();
    let summaries: Vec<Value> = page
        .iter()
        .map(|stream| {
            let mut summary = Map::with_capacity(5);
            summary.push("StreamName", stream.name.clone());
            summary.push("StreamARN", ctx.arn(stream));
            summary.push("StreamStatus", stream.status.as_str());
            summary.push("StreamModeDetails", mode_value(stream));
            summary.push("StreamCreationTimestamp", timestamp(stream.created_ms));
            Value::Map(summary)
        })
        .collect();
    let mut output = Map::with_capacity(4);
    output.push("StreamNames", names);
    output.push("HasMoreStreams", has_more);
    if has_more && let Some(last) = page.last() {
        let token = ListStreamsToken {
            after: last.name.clone(),
            limit,
        };
        let payload = serde_json::to_vec(&token)
            .map_err(|error| KinesisError::internal(error.to_string()))?;
        output.push(
            "NextToken",
            riffle_types::PageToken::seal(&key, LIST_STREAMS_TOKEN, &payload, ctx.now_ms),
        );
    }
    output.push("StreamSummaries", summaries);
    Ok(Value::Map(output))
}

pub async fn change_retention(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
    change: RetentionChange,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let name = required_stream(ctx, input, &mut errors)?;
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
    let hours = hours.unwrap_or_default().clamp(0, i64::from(u32::MAX)) as u32;
    api.node
        .control()
        .propose(ControlCommand::SetRetention {
            name,
            hours,
            change,
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn describe_limits(
    api: &Api,
    _ctx: &Ctx<'_>,
    _input: &Map,
) -> Result<Value, KinesisError> {
    let state = api.synced_state().await;
    let on_demand = state
        .streams
        .values()
        .filter(|stream| stream.mode == StreamMode::OnDemand)
        .count();
    let mut output = Map::with_capacity(4);
    output.push("ShardLimit", api.node.config().shard_limit);
    output.push("OpenShardCount", open_shard_total(&state) as i64);
    output.push("OnDemandStreamCount", on_demand as i64);
    output.push(
        "OnDemandStreamCountLimit",
        limits::DEFAULT_ON_DEMAND_STREAM_LIMIT as i64,
    );
    Ok(Value::Map(output))
}
