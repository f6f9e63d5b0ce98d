//! Enhanced fan-out consumers: RegisterStreamConsumer, DescribeStreamConsumer,
//! ListStreamConsumers, DeregisterStreamConsumer. Consumers are metadata (replicated by the
//! control plane); SubscribeToShard is not served yet.

use riffle_control::ControlCommand;
use riffle_control::model::ConsumerRecord;
use riffle_control::model::StreamRecord;
use riffle_types::KinesisError;
use riffle_types::StreamArn;
use riffle_types::ValidationErrors;

use super::Api;
use super::common::Ctx;
use super::common::bounded_int;
use super::common::check_stream_arn;
use super::common::find_stream;
use super::common::quoted;
use super::common::timestamp;
use crate::wire::Map;
use crate::wire::Value;

/// Validates a consumer name: 1–128 characters of `[a-zA-Z0-9_.-]`.
fn check_consumer_name(errors: &mut ValidationErrors, name: Option<&str>) {
    let Some(name) = name else { return };
    if name.is_empty() || name.chars().count() > 128 {
        errors.push(
            &quoted(name),
            "consumerName",
            "Member must have length less than or equal to 128",
        );
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        errors.push(
            &quoted(name),
            "consumerName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        );
    }
}

/// The stream named by a `StreamARN` member (consumer operations take only the ARN).
fn stream_of_arn(
    ctx: &Ctx<'_>,
    arn: &str,
    errors: &mut ValidationErrors,
) -> Result<String, KinesisError> {
    check_stream_arn(errors, "streamARN", Some(arn));
    if !errors.is_empty() {
        return Ok(String::new());
    }
    let parsed = StreamArn::parse(arn)
        .ok_or_else(|| KinesisError::invalid_argument(format!("Invalid StreamARN {arn}.")))?;
    if parsed.account != ctx.account || parsed.region != ctx.region {
        return Err(ctx.stream_not_found(&parsed.stream_name));
    }
    Ok(parsed.stream_name)
}

/// (stream, consumer name, creation seconds) from a consumer ARN
/// (`arn:aws:kinesis:R:A:stream/S/consumer/N:SECONDS`).
pub(super) fn parse_consumer_arn(
    ctx: &Ctx<'_>,
    arn: &str,
) -> Result<(String, String, Option<u64>), KinesisError> {
    let invalid = || KinesisError::invalid_argument(format!("Invalid ConsumerARN {arn}."));
    let (stream_arn, consumer) = arn.split_once("/consumer/").ok_or_else(invalid)?;
    let mut errors = ValidationErrors::new();
    let stream = stream_of_arn(ctx, stream_arn, &mut errors)?;
    errors.into_result().map_err(|_| invalid())?;
    let (name, seconds) = match consumer.rsplit_once(':') {
        Some((name, seconds)) => (name, Some(seconds.parse().map_err(|_| invalid())?)),
        None => (consumer, None),
    };
    if name.is_empty() {
        return Err(invalid());
    }
    Ok((stream, name.to_string(), seconds))
}

/// The consumer a Describe/Deregister request names: `ConsumerARN`, or `StreamARN` plus
/// `ConsumerName`.
fn consumer_identity(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<(String, String, Option<u64>), KinesisError> {
    let consumer_arn = input.string("ConsumerARN")?;
    let stream_arn = input.string("StreamARN")?;
    let name = input.string("ConsumerName")?;
    let mut errors = ValidationErrors::new();
    check_consumer_name(&mut errors, name);
    match (consumer_arn, stream_arn, name) {
        (Some(arn), None, None) => {
            errors.into_result()?;
            parse_consumer_arn(ctx, arn)
        }
        (None, Some(stream_arn), Some(name)) => {
            let stream = stream_of_arn(ctx, stream_arn, &mut errors)?;
            errors.into_result()?;
            Ok((stream, name.to_string(), None))
        }
        _ => Err(KinesisError::invalid_argument(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
        )),
    }
}

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

/// Finds the consumer in a freshly synced state; a creation time in the ARN must match.
pub(super) async fn lookup(
    api: &Api,
    ctx: &Ctx<'_>,
    stream: &str,
    name: &str,
    seconds: Option<u64>,
) -> Result<(std::sync::Arc<StreamRecord>, ConsumerRecord), KinesisError> {
    let state = api.synced_state().await;
    let record = find_stream(ctx, &state, stream)?;
    let consumer = record
        .consumers
        .get(name)
        .filter(|c| seconds.is_none_or(|s| c.created_ms / 1000 == s))
        .cloned()
        .ok_or_else(|| not_found(ctx, stream, name))?;
    Ok((record, consumer))
}

pub async fn register_stream_consumer(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream_arn = input.string("StreamARN")?;
    let name = input.string("ConsumerName")?;
    if stream_arn.is_none() {
        errors.push("null", "streamARN", "Member must not be null");
    }
    if name.is_none() {
        errors.push("null", "consumerName", "Member must not be null");
    }
    check_consumer_name(&mut errors, name);
    let stream = match stream_arn {
        Some(arn) => stream_of_arn(ctx, arn, &mut errors)?,
        None => String::new(),
    };
    errors.into_result()?;
    let name = name.unwrap_or_default().to_string();
    api.node
        .control()
        .propose(ControlCommand::RegisterConsumer {
            stream: stream.clone(),
            name: name.clone(),
            now_ms: ctx.now_ms,
        })
        .await?;
    let (record, consumer) = lookup(api, ctx, &stream, &name, None).await?;
    let mut out = Map::with_capacity(1);
    out.push("Consumer", render(ctx, &record, &consumer, false));
    Ok(Value::Map(out))
}

pub async fn describe_stream_consumer(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let (stream, name, seconds) = consumer_identity(ctx, input)?;
    let (record, consumer) = lookup(api, ctx, &stream, &name, seconds).await?;
    let mut out = Map::with_capacity(1);
    out.push("ConsumerDescription", render(ctx, &record, &consumer, true));
    Ok(Value::Map(out))
}

pub async fn deregister_stream_consumer(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let (stream, name, seconds) = consumer_identity(ctx, input)?;
    // An ARN names one incarnation: a consumer registered again under the same name is another.
    lookup(api, ctx, &stream, &name, seconds).await?;
    api.node
        .control()
        .propose(ControlCommand::DeregisterConsumer { stream, name })
        .await?;
    Ok(Value::Map(Map::new()))
}

/// ListStreamConsumers: consumers in name order; `NextToken` is the last name returned.
pub async fn list_stream_consumers(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<Value, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream_arn = input.string("StreamARN")?;
    if stream_arn.is_none() {
        errors.push("null", "streamARN", "Member must not be null");
    }
    let max_results = bounded_int(&mut errors, input, "MaxResults", "maxResults", 1, 10_000)?;
    let token = input.string("NextToken")?;
    let stream = match stream_arn {
        Some(arn) => stream_of_arn(ctx, arn, &mut errors)?,
        None => String::new(),
    };
    errors.into_result()?;
    let after = match token {
        Some(token) => Some(
            token
                .strip_prefix("c1:")
                .filter(|name| !name.is_empty())
                .ok_or_else(|| KinesisError::invalid_argument("Invalid NextToken."))?
                .to_string(),
        ),
        None => None,
    };
    let limit = max_results.map(|n| n as usize).unwrap_or(100);
    let state = api.synced_state().await;
    let record = find_stream(ctx, &state, &stream)?;
    let remaining: Vec<&ConsumerRecord> = record
        .consumers
        .values()
        .filter(|c| after.as_deref().is_none_or(|after| c.name.as_str() > after))
        .collect();
    let page = &remaining[..remaining.len().min(limit)];
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
