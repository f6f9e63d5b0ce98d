//! Enhanced fan-out consumers: RegisterStreamConsumer, DescribeStreamConsumer,
//! ListStreamConsumers, DeregisterStreamConsumer. Consumers are metadata (replicated by the
//! control plane); SubscribeToShard (`subscribe.rs`) reads through them.

use std::sync::Arc;

use riffle_control::ControlCommand;
use riffle_control::model::ConsumerRecord;
use riffle_control::model::StreamRecord;
use riffle_types::KinesisError;

use super::Api;
use super::common::find_stream;
use super::common::timestamp;
use crate::error::ApiError;
use crate::request::ConsumerInput;
use crate::request::ConsumerRef;
use crate::request::Ctx;
use crate::request::ListStreamConsumersInput;
use crate::request::RegisterStreamConsumerInput;
use crate::wire::Map;
use crate::wire::Value;

fn not_found(ctx: &Ctx<'_>, stream: &str, name: &str) -> KinesisError {
    KinesisError::not_found(format!(
        "Consumer {name} under stream {stream} under account {} not found.",
        ctx.account
    ))
}

/// A consumer as `Consumer` / `ConsumerDescription` render it.
fn render(
    ctx: &Ctx<'_>,
    stream: &StreamRecord,
    consumer: &ConsumerRecord,
    with_stream: bool,
) -> Value {
    let stream_arn = ctx.arn(stream);
    let mut out = Map::with_capacity(5);
    out.push("ConsumerName", consumer.name.clone());
    out.push("ConsumerARN", consumer.arn(&stream_arn));
    out.push("ConsumerStatus", consumer.status.as_str());
    out.push("ConsumerCreationTimestamp", timestamp(consumer.created_ms));
    if with_stream {
        out.push("StreamARN", stream_arn);
    }
    Value::Map(out)
}

/// Finds the consumer in a freshly synced state; a creation time in its ARN must match.
pub(super) async fn lookup(
    api: &Api,
    ctx: &Ctx<'_>,
    consumer: &ConsumerRef,
) -> Result<(Arc<StreamRecord>, ConsumerRecord), KinesisError> {
    let stream = &consumer.stream.name;
    let state = api.synced_state().await;
    let record = find_stream(ctx, &state, stream)?;
    let found = record
        .consumers
        .get(&consumer.name)
        .filter(|c| {
            consumer
                .created_secs
                .is_none_or(|s| c.created_ms / 1000 == s)
        })
        .cloned()
        .ok_or_else(|| not_found(ctx, stream, &consumer.name))?;
    Ok((record, found))
}

pub async fn register_stream_consumer(
    api: &Api,
    ctx: &Ctx<'_>,
    input: RegisterStreamConsumerInput,
) -> Result<Value, ApiError> {
    api.node
        .control()
        .propose(ControlCommand::RegisterConsumer {
            stream: input.stream.name.clone(),
            name: input.consumer_name.clone(),
            now_ms: ctx.now_ms,
        })
        .await?;
    let registered = ConsumerRef {
        stream: input.stream,
        name: input.consumer_name,
        created_secs: None,
        given_arn: None,
    };
    let (record, consumer) = lookup(api, ctx, &registered).await?;
    let mut out = Map::with_capacity(1);
    out.push("Consumer", render(ctx, &record, &consumer, false));
    Ok(Value::Map(out))
}

pub async fn describe_stream_consumer(
    api: &Api,
    ctx: &Ctx<'_>,
    input: ConsumerInput,
) -> Result<Value, ApiError> {
    let (record, consumer) = lookup(api, ctx, &input.consumer).await?;
    let mut out = Map::with_capacity(1);
    out.push("ConsumerDescription", render(ctx, &record, &consumer, true));
    Ok(Value::Map(out))
}

pub async fn deregister_stream_consumer(
    api: &Api,
    ctx: &Ctx<'_>,
    input: ConsumerInput,
) -> Result<Value, ApiError> {
    // An ARN names one incarnation: a consumer registered again under the same name is another.
    lookup(api, ctx, &input.consumer).await?;
    api.node
        .control()
        .propose(ControlCommand::DeregisterConsumer {
            stream: input.consumer.stream.name,
            name: input.consumer.name,
        })
        .await?;
    Ok(Value::Map(Map::new()))
}

/// ListStreamConsumers: consumers in name order; `NextToken` is the last name returned.
pub async fn list_stream_consumers(
    api: &Api,
    ctx: &Ctx<'_>,
    input: ListStreamConsumersInput,
) -> Result<Value, ApiError> {
    let state = api.synced_state().await;
    let record = find_stream(ctx, &state, &input.stream.name)?;
    let after = input.after.as_deref();
    let remaining: Vec<&ConsumerRecord> = record
        .consumers
        .values()
        .filter(|c| after.is_none_or(|after| c.name.as_str() > after))
        .collect();
    let page = &remaining[..remaining.len().min(input.max_results)];
    let mut out = Map::with_capacity(2);
    out.push(
        "Consumers",
        page.iter()
            .map(|c| render(ctx, &record, c, false))
            .collect::<Vec<Value>>(),
    );
    if remaining.len() > page.len()
        && let Some(last) = page.last()
    {
        out.push("NextToken", format!("c1:{}", last.name));
    }
    Ok(Value::Map(out))
}
