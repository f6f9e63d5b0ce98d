//! Inputs of the enhanced fan-out operations: RegisterStreamConsumer, DescribeStreamConsumer,
//! ListStreamConsumers, DeregisterStreamConsumer, SubscribeToShard.

use riffle_types::KinesisError;
use riffle_types::StreamArn;
use riffle_types::ValidationErrors;

use super::Ctx;
use super::members::StreamRef;
use super::members::bounded_int;
use super::members::check_shard_id;
use super::members::check_stream_arn;
use super::members::quoted;
use super::records::StartingPosition;
use super::records::starting_position;
use crate::wire::Map;

/// The consumer a request names: by `ConsumerARN`, or by `StreamARN` and `ConsumerName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRef {
    /// The stream it is registered with (its ARN as the request gave it).
    pub stream: StreamRef,
    pub name: String,
    /// The registration time (epoch seconds) a ConsumerARN carries: it tells apart consumers
    /// registered again under the same name.
    pub created_secs: Option<u64>,
    /// The `ConsumerARN` as given.
    pub given_arn: Option<String>,
}

/// RegisterStreamConsumer.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterStreamConsumerInput {
    pub stream: StreamRef,
    pub consumer_name: String,
}

/// DescribeStreamConsumer and DeregisterStreamConsumer.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerInput {
    pub consumer: ConsumerRef,
}

/// ListStreamConsumers.
#[derive(Clone, Debug, PartialEq)]
pub struct ListStreamConsumersInput {
    pub stream: StreamRef,
    pub max_results: usize,
    /// List the consumers whose names sort after this one (from `NextToken`).
    pub after: Option<String>,
}

/// SubscribeToShard.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscribeToShardInput {
    pub consumer: ConsumerRef,
    pub shard_id: String,
    /// `StartingPosition` by GetShardIterator's rules and messages. Its errors are reported
    /// only once the consumer is known to be ACTIVE (the order in which Riffle has always
    /// answered), hence kept here rather than failing the decoding.
    pub start: Result<StartingPosition, KinesisError>,
}

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
) -> Result<StreamRef, KinesisError> {
    check_stream_arn(errors, "streamARN", Some(arn));
    if !errors.is_empty() {
        return Ok(StreamRef::default());
    }
    let parsed = StreamArn::parse(arn)
        .ok_or_else(|| KinesisError::invalid_argument(format!("Invalid StreamARN {arn}.")))?;
    if parsed.account != ctx.account || parsed.region != ctx.region {
        return Err(ctx.stream_not_found(&parsed.stream_name));
    }
    Ok(StreamRef {
        name: parsed.stream_name,
        given_arn: Some(arn.to_string()),
    })
}

/// A consumer ARN (`arn:aws:kinesis:R:A:stream/S/consumer/N:SECONDS`; the seconds may be left
/// out).
fn parse_consumer_arn(ctx: &Ctx<'_>, arn: &str) -> Result<ConsumerRef, KinesisError> {
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
    Ok(ConsumerRef {
        stream,
        name: name.to_string(),
        created_secs: seconds,
        given_arn: Some(arn.to_string()),
    })
}

/// The consumer a Describe/Deregister request names: `ConsumerARN`, or `StreamARN` plus
/// `ConsumerName`.
fn consumer_identity(ctx: &Ctx<'_>, input: &Map) -> Result<ConsumerRef, KinesisError> {
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
            Ok(ConsumerRef {
                stream,
                name: name.to_string(),
                created_secs: None,
                given_arn: None,
            })
        }
        _ => Err(KinesisError::invalid_argument(
            "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
        )),
    }
}

pub fn register_stream_consumer(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<RegisterStreamConsumerInput, KinesisError> {
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
        None => StreamRef::default(),
    };
    errors.into_result()?;
    Ok(RegisterStreamConsumerInput {
        stream,
        consumer_name: name.unwrap_or_default().to_string(),
    })
}

pub fn consumer(ctx: &Ctx<'_>, input: &Map) -> Result<ConsumerInput, KinesisError> {
    Ok(ConsumerInput {
        consumer: consumer_identity(ctx, input)?,
    })
}

pub fn list_stream_consumers(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<ListStreamConsumersInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream_arn = input.string("StreamARN")?;
    if stream_arn.is_none() {
        errors.push("null", "streamARN", "Member must not be null");
    }
    let max_results = bounded_int(&mut errors, input, "MaxResults", "maxResults", 1, 10_000)?;
    let token = input.string("NextToken")?;
    let stream = match stream_arn {
        Some(arn) => stream_of_arn(ctx, arn, &mut errors)?,
        None => StreamRef::default(),
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
    Ok(ListStreamConsumersInput {
        stream,
        max_results: max_results.map(|n| n as usize).unwrap_or(100),
        after,
    })
}

pub fn subscribe_to_shard(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<SubscribeToShardInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let consumer_arn = input.string("ConsumerARN")?;
    let shard_id = input.string("ShardId")?;
    let position = input.map("StartingPosition")?;
    if consumer_arn.is_none() {
        errors.push("null", "consumerARN", "Member must not be null");
    }
    if shard_id.is_none() {
        errors.push("null", "shardId", "Member must not be null");
    }
    check_shard_id(&mut errors, "shardId", shard_id, false);
    let kind = position.map(|p| p.string("Type")).transpose()?.flatten();
    if kind.is_none() {
        errors.push("null", "startingPosition.type", "Member must not be null");
    }
    errors.into_result()?;
    let consumer = parse_consumer_arn(ctx, consumer_arn.unwrap_or_default())?;
    let start = position
        .map(|p| p.string("SequenceNumber"))
        .transpose()
        .map(Option::flatten)
        .and_then(|sequence_number| {
            starting_position(
                ValidationErrors::new(),
                kind,
                sequence_number,
                position.and_then(|p| p.get("Timestamp")),
            )
        });
    Ok(SubscribeToShardInput {
        consumer,
        shard_id: shard_id.unwrap_or_default().to_string(),
        start,
    })
}
