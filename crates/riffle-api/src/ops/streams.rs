//! Stream lifecycle and description: CreateStream, DeleteStream, DescribeStream,
//! DescribeStreamSummary, ListStreams, Increase/DecreaseStreamRetentionPeriod, DescribeLimits,
//! UpdateShardCount, UpdateStreamMode.

use std::time::Duration;

use riffle_control::ControlCommand;
use riffle_control::command::RetentionChange;
use riffle_control::command::open_shard_total;
use riffle_control::model::StreamMode;
use riffle_control::model::StreamStatus;
use riffle_types::KinesisError;
use riffle_types::PageToken;
use riffle_types::limits;

use super::Api;
use super::common::find_stream;
use super::common::is_listed;
use super::common::mode_value;
use super::common::shard_value;
use super::common::timestamp;
use crate::error::ApiError;
use crate::request::CreateStreamInput;
use crate::request::Ctx;
use crate::request::DeleteStreamInput;
use crate::request::DescribeStreamInput;
use crate::request::DescribeStreamSummaryInput;
use crate::request::LIST_STREAMS_TOKEN;
use crate::request::ListStreamsInput;
use crate::request::ListStreamsToken;
use crate::request::RetentionPeriodInput;
use crate::request::UpdateShardCountInput;
use crate::request::UpdateStreamModeInput;
use crate::wire::Map;
use crate::wire::Value;

/// How long CreateStream waits for the stream to become ACTIVE before returning anyway
/// (clients poll the status, as they must against AWS).
const CREATE_WAIT: Duration = Duration::from_secs(10);

pub async fn create_stream(
    api: &Api,
    ctx: &Ctx<'_>,
    input: CreateStreamInput,
) -> Result<Value, ApiError> {
    let config = api.node.config();
    let name = input.stream.name;
    api.node
        .control()
        .propose(ControlCommand::CreateStream {
            name: name.clone(),
            shard_count: input.shard_count,
            mode: input.mode,
            tags: input.tags,
            now_ms: ctx.now_ms,
            shard_limit: config.shard_limit,
            replication_factor: config.replication_factor,
            avoid: api.node.down_nodes_list(),
        })
        .await?;
    wait_for_status(api, &name, StreamStatus::Active, CREATE_WAIT).await;
    Ok(Value::Map(Map::new()))
}

/// UpdateShardCount: accepted at once (the stream turns UPDATING); the scheduler reshards step
/// by step to equal ranges, then the stream is ACTIVE again.
pub async fn update_shard_count(
    api: &Api,
    ctx: &Ctx<'_>,
    input: UpdateShardCountInput,
) -> Result<Value, ApiError> {
    let name = input.stream.name;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let current = stream.open_shard_count();
    api.node
        .control()
        .propose(ControlCommand::UpdateShardCount {
            name: name.clone(),
            target: input.target,
            now_ms: ctx.now_ms,
            shard_limit: api.node.config().shard_limit,
        })
        .await?;
    let mut output = Map::with_capacity(4);
    output.push("StreamName", name);
    output.push("CurrentShardCount", current as i64);
    output.push("TargetShardCount", i64::from(input.target));
    output.push("StreamARN", ctx.arn(&stream));
    Ok(Value::Map(output))
}

/// UpdateStreamMode: PROVISIONED ⇄ ON_DEMAND; the shards stay as they are (on-demand streams
/// then scale with their load).
pub async fn update_stream_mode(
    api: &Api,
    ctx: &Ctx<'_>,
    input: UpdateStreamModeInput,
) -> Result<Value, ApiError> {
    let UpdateStreamModeInput { stream, mode } = input;
    let name = stream.name;
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
            )).into());
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

pub async fn delete_stream(
    api: &Api,
    ctx: &Ctx<'_>,
    input: DeleteStreamInput,
) -> Result<Value, ApiError> {
    let name = input.stream.name;
    if !input.enforce_consumer_deletion {
        let state = api.synced_state().await;
        if let Some(stream) = state.streams.get(&name)
            && !stream.consumers.is_empty()
        {
            return Err(KinesisError::in_use(format!(
                "Stream {name} under account {} has {} registered consumers; deregister them or set EnforceConsumerDeletion.",
                ctx.account,
                stream.consumers.len()
            )).into());
        }
    }
    api.node
        .control()
        .propose(ControlCommand::DeleteStream { name })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn describe_stream(
    api: &Api,
    ctx: &Ctx<'_>,
    input: DescribeStreamInput,
) -> Result<Value, ApiError> {
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &input.stream.name)?;
    let listed: Vec<_> = stream
        .shards
        .iter()
        .filter(|shard| is_listed(ctx, &stream, shard))
        .filter(|shard| input.after.is_none_or(|after| shard.index > after))
        .collect();
    let has_more = listed.len() > input.limit;
    let shards: Vec<Value> = listed
        .into_iter()
        .take(input.limit)
        .map(shard_value)
        .collect();
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
    input: DescribeStreamSummaryInput,
) -> Result<Value, ApiError> {
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &input.stream.name)?;
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

pub async fn list_streams(
    api: &Api,
    ctx: &Ctx<'_>,
    input: ListStreamsInput,
) -> Result<Value, ApiError> {
    let ListStreamsInput { after, limit } = input;
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
        let payload = serde_json::to_vec(&token).map_err(ApiError::Token)?;
        output.push(
            "NextToken",
            PageToken::seal(ctx.token_key()?, LIST_STREAMS_TOKEN, &payload, ctx.now_ms),
        );
    }
    output.push("StreamSummaries", summaries);
    Ok(Value::Map(output))
}

pub async fn change_retention(
    api: &Api,
    input: RetentionPeriodInput,
    change: RetentionChange,
) -> Result<Value, ApiError> {
    api.node
        .control()
        .propose(ControlCommand::SetRetention {
            name: input.stream.name,
            hours: input.hours,
            change,
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn describe_limits(api: &Api) -> Result<Value, ApiError> {
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
