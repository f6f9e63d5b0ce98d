//! SubscribeToShard: an `initial-response` event, then SubscribeToShardEvent messages with the
//! shard's records, `ContinuationSequenceNumber` and `MillisBehindLatest`, and `ChildShards` in
//! the last event of a closed shard; errors after the start become exception events. A
//! subscription ends after 5 minutes, as on AWS.
//!
//! First version: the records come from the shard leader through the GetRecords path, asked
//! again every 200 ms while the shard is quiet. Push from the leader's commit stream is the next
//! step (issue 6).

use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use riffle_control::model::ConsumerStatus;
use riffle_types::KinesisError;
use riffle_types::ValidationErrors;

use super::Api;
use super::Operation;
use super::common::Ctx;
use super::consumers::lookup;
use super::consumers::parse_consumer_arn;
use crate::eventstream::Message;
use crate::http::EventBytes;
use crate::wire;
use crate::wire::Format;
use crate::wire::Map;
use crate::wire::Value;

/// How long one subscription lasts.
const SUBSCRIPTION: Duration = Duration::from_secs(300);
/// How often an event is sent while nothing arrives (keeps clients and proxies informed).
const HEARTBEAT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(200);

pub async fn subscribe_to_shard(
    api: &Api,
    ctx: &Ctx<'_>,
    input: &Map,
    format: Format,
) -> Result<EventBytes, KinesisError> {
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
    super::common::check_shard_id(&mut errors, "shardId", shard_id, false);
    let kind = position.map(|p| p.string("Type")).transpose()?.flatten();
    if kind.is_none() {
        errors.push("null", "startingPosition.type", "Member must not be null");
    }
    errors.into_result()?;
    let (stream, name, seconds) = parse_consumer_arn(ctx, consumer_arn.unwrap_or_default())?;
    let (_, consumer) = lookup(api, ctx, &stream, &name, seconds).await?;
    if consumer.status != ConsumerStatus::Active {
        return Err(KinesisError::in_use(format!(
            "Consumer {name} under stream {stream} is not ACTIVE (it is {}).",
            consumer.status.as_str()
        )));
    }

    // The starting position becomes a shard iterator (same rules and errors as GetShardIterator).
    let mut request = Map::with_capacity(5);
    request.push("StreamName", stream.clone());
    request.push("ShardId", shard_id.unwrap_or_default().to_string());
    request.push("ShardIteratorType", kind.unwrap_or_default().to_string());
    if let Some(position) = position {
        if let Some(sequence) = position.string("SequenceNumber")? {
            request.push("StartingSequenceNumber", sequence.to_string());
        }
        if let Some(timestamp) = position.get("Timestamp") {
            request.push("Timestamp", timestamp.clone());
        }
    }
    let iterator = api
        .handle(Operation::GetShardIterator, &Value::Map(request))
        .await?;
    let iterator = iterator
        .as_map()
        .and_then(|m| m.get("ShardIterator"))
        .and_then(Value::as_str)
        .ok_or_else(|| KinesisError::internal("no shard iterator"))?
        .to_string();
    let continuation = position
        .and_then(|p| p.get("SequenceNumber"))
        .and_then(Value::as_str)
        .map(str::to_string);

    let state = Subscription {
        api: Api::new(api.node.clone()),
        format,
        iterator: Some(iterator),
        continuation,
        started: Instant::now(),
        last_event: Instant::now(),
        initial_sent: false,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let message = state.next().await?;
        Some((message, state))
    });
    Ok(Box::pin(stream))
}

struct Subscription {
    api: Api,
    format: Format,
    /// `None` once the stream has ended (closed shard read to its end, or an error).
    iterator: Option<String>,
    continuation: Option<String>,
    started: Instant,
    last_event: Instant,
    initial_sent: bool,
}

impl Subscription {
    fn content_type(&self) -> &'static str {
        self.format.content_type()
    }

    /// The next framed message, or `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.initial_sent {
            self.initial_sent = true;
            let payload = wire::encode(self.format, &Value::Map(Map::new()));
            return Some(
                Message::event("initial-response", self.content_type(), payload.into()).encode(),
            );
        }
        loop {
            let iterator = self.iterator.take()?;
            if self.started.elapsed() >= SUBSCRIPTION {
                return None;
            }
            let mut request = Map::with_capacity(2);
            request.push("ShardIterator", iterator);
            request.push("Limit", 10_000i64);
            let output = match self
                .api
                .handle(Operation::GetRecords, &Value::Map(request))
                .await
            {
                Ok(output) => output,
                Err(error) => return Some(self.exception(&error)),
            };
            // Taken apart, not copied: the records' data moves into the event.
            let mut output = match output {
                Value::Map(output) => output,
                _ => Map::new(),
            };
            let records = match output.take("Records") {
                Some(Value::Array(records)) => records,
                _ => Vec::new(),
            };
            if let Some(last) = records
                .last()
                .and_then(|r| r.as_map())
                .and_then(|r| r.get("SequenceNumber"))
                .and_then(Value::as_str)
            {
                self.continuation = Some(last.to_string());
            }
            let next = output
                .get("NextShardIterator")
                .and_then(Value::as_str)
                .map(str::to_string);
            let closed = next.is_none();
            let due = self.last_event.elapsed() >= HEARTBEAT;
            self.iterator = next;
            if records.is_empty() && !closed && !due {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let mut event = Map::with_capacity(4);
            event.push("Records", Value::Array(records));
            if let Some(continuation) = &self.continuation {
                event.push("ContinuationSequenceNumber", continuation.clone());
            }
            event.push(
                "MillisBehindLatest",
                output.take("MillisBehindLatest").unwrap_or(Value::Int(0)),
            );
            if closed {
                event.push(
                    "ChildShards",
                    output
                        .take("ChildShards")
                        .unwrap_or(Value::Array(Vec::new())),
                );
            }
            self.last_event = Instant::now();
            let payload = wire::encode(self.format, &Value::Map(event));
            return Some(
                Message::event("SubscribeToShardEvent", self.content_type(), payload.into())
                    .encode(),
            );
        }
    }

    fn exception(&mut self, error: &KinesisError) -> Bytes {
        self.iterator = None;
        let payload = wire::encode(self.format, &wire::error_document(error));
        Message::exception(error.code.type_name(), self.content_type(), payload.into()).encode()
    }
}
