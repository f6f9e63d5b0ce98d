//! Shards: ListShards (with every ShardFilter type and signed NextTokens), SplitShard,
//! MergeShards.

use riffle_control::ControlCommand;
use riffle_control::model::ShardRecord;
use riffle_control::model::ShardState;
use riffle_control::model::StreamRecord;
use riffle_types::KinesisError;
use riffle_types::PageToken;

use super::Api;
use super::common::find_shard;
use super::common::find_stream;
use super::common::is_listed;
use super::common::shard_value;
use crate::error::ApiError;
use crate::request::Ctx;
use crate::request::LIST_SHARDS_TOKEN;
use crate::request::ListShardsInput;
use crate::request::ListShardsToken;
use crate::request::MergeShardsInput;
use crate::request::ShardFilter;
use crate::request::SplitShardInput;
use crate::wire::Map;
use crate::wire::Value;

/// Whether `shard` passes `filter` (listing rules aside).
fn passes(ctx: &Ctx<'_>, stream: &StreamRecord, shard: &ShardRecord, filter: &ShardFilter) -> bool {
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
        ShardFilter::FromTrimHorizon => true,
        ShardFilter::AtTrimHorizon => open_at(horizon),
        ShardFilter::AtLatest => closed_ms.is_none(),
        ShardFilter::AfterShardId(after) => shard.index > *after,
        ShardFilter::AtTimestamp(time) => open_at(*time),
        ShardFilter::FromTimestamp(time) => {
            closed_ms.is_none_or(|closed| closed >= (*time).max(horizon))
        }
    }
}

pub async fn list_shards(
    api: &Api,
    ctx: &Ctx<'_>,
    input: ListShardsInput,
) -> Result<Value, ApiError> {
    let ListShardsInput {
        stream: stream_ref,
        created_ms,
        after,
        filter,
        max_results,
    } = input;
    let name = stream_ref.name;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    if created_ms.is_some_and(|created| created != stream.created_ms) {
        return Err(ctx.stream_not_found(&name).into());
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
        let payload = serde_json::to_vec(&token).map_err(ApiError::Token)?;
        output.push(
            "NextToken",
            PageToken::seal(ctx.token_key()?, LIST_SHARDS_TOKEN, &payload, ctx.now_ms),
        );
    }
    Ok(Value::Map(output))
}

pub async fn split_shard(
    api: &Api,
    ctx: &Ctx<'_>,
    input: SplitShardInput,
) -> Result<Value, ApiError> {
    let name = input.stream.name;
    let state = api.synced_state().await;
    let stream = find_stream(ctx, &state, &name)?;
    let shard = find_shard(ctx, &stream, &input.shard_id).map_err(|_| {
        KinesisError::not_found(format!(
            "Could not find shard {} in stream {name} under account {}.",
            input.shard_id, ctx.account
        ))
    })?;
    api.node
        .control()
        .propose(ControlCommand::SplitShard {
            name,
            shard: shard.index,
            new_start: input.new_starting_hash_key,
            now_ms: ctx.now_ms,
            shard_limit: api.node.config().shard_limit,
            avoid: api.node.down_nodes_list(),
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn merge_shards(
    api: &Api,
    ctx: &Ctx<'_>,
    input: MergeShardsInput,
) -> Result<Value, ApiError> {
    let name = input.stream.name;
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
    let shard = lookup(&input.shard_id)?;
    let adjacent = lookup(&input.adjacent_shard_id)?;
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
