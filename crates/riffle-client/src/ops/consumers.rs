//! Enhanced fan-out: RegisterStreamConsumer, DescribeStreamConsumer, DeregisterStreamConsumer,
//! and SubscribeToShard with its event stream.

use bytes::Bytes;
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use riffle_types::eventstream::DecodeError;
use riffle_types::eventstream::Message;
use serde::Deserialize;
use serde::Serialize;
use serde::Serializer;
use serde::ser::SerializeMap;

use super::Empty;
use super::StartingPosition;
use super::records::ChildShard;
use super::records::Record;
use crate::client::Client;
use crate::client::Operation;
use crate::error::Error;
use crate::error::NoAnswerKind;
use crate::error::ServiceError;

#[derive(Debug, Clone, Serialize)]
pub struct RegisterStreamConsumer {
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    #[serde(rename = "ConsumerName")]
    pub consumer_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterStreamConsumerOutput {
    pub consumer: ConsumerDescription,
}

impl Operation for RegisterStreamConsumer {
    const NAME: &'static str = "RegisterStreamConsumer";
    type Output = RegisterStreamConsumerOutput;
}

/// Names a consumer by its ARN, or by its stream's ARN and its name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DescribeStreamConsumer {
    #[serde(rename = "StreamARN", skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,
    #[serde(rename = "ConsumerName", skip_serializing_if = "Option::is_none")]
    pub consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN", skip_serializing_if = "Option::is_none")]
    pub consumer_arn: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamConsumerOutput {
    pub consumer_description: ConsumerDescription,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerDescription {
    #[serde(rename = "ConsumerName")]
    pub consumer_name: String,
    #[serde(rename = "ConsumerARN")]
    pub consumer_arn: String,
    /// `CREATING`, `ACTIVE` or `DELETING`.
    #[serde(rename = "ConsumerStatus")]
    pub consumer_status: String,
}

impl Operation for DescribeStreamConsumer {
    const NAME: &'static str = "DescribeStreamConsumer";
    type Output = DescribeStreamConsumerOutput;
}

/// Takes the same members as [`DescribeStreamConsumer`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeregisterStreamConsumer(pub DescribeStreamConsumer);

impl Operation for DeregisterStreamConsumer {
    const NAME: &'static str = "DeregisterStreamConsumer";
    type Output = Empty;
}

#[derive(Debug, Clone)]
pub struct SubscribeToShard {
    pub consumer_arn: String,
    pub shard_id: String,
    pub starting_position: StartingPosition,
}

impl Serialize for SubscribeToShard {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Position<'a>(&'a StartingPosition);
        impl Serialize for Position<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                self.0
                    .serialize_members(&mut map, "Type", "SequenceNumber")?;
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("ConsumerARN", &self.consumer_arn)?;
        map.serialize_entry("ShardId", &self.shard_id)?;
        map.serialize_entry("StartingPosition", &Position(&self.starting_position))?;
        map.end()
    }
}

/// A SubscribeToShardEvent: a page of records pushed by the shard's leader.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubscribeToShardEvent {
    #[serde(default)]
    pub records: Vec<Record>,
    /// Resume after this to continue exactly where this event ends.
    pub continuation_sequence_number: String,
    #[serde(default)]
    pub millis_behind_latest: u64,
    /// In the last event of a closed shard.
    #[serde(default)]
    pub child_shards: Option<Vec<ChildShard>>,
}

/// What a subscription delivers.
#[derive(Debug, Clone)]
pub enum SubscriptionEvent {
    /// The `initial-response`: the subscription is open.
    Started,
    Records(SubscribeToShardEvent),
}

/// An open SubscribeToShard call: its event stream, read message by message.
pub struct Subscription {
    body: Incoming,
    buffer: BytesMut,
}

impl Subscription {
    /// The next event; `Ok(None)` when the stream ended (after its 5 minutes, or when the node
    /// closed it). An exception event is an `Err` carrying the exception's type.
    pub async fn next(&mut self) -> Result<Option<SubscriptionEvent>, Error> {
        loop {
            match Message::decode(&self.buffer) {
                Ok((message, used)) => {
                    let _ = self.buffer.split_to(used);
                    if let Some(event) = event_of(&message)? {
                        return Ok(Some(event));
                    }
                    continue;
                }
                Err(DecodeError::Incomplete(_)) => {}
                Err(error) => {
                    return Err(Error::NoAnswer {
                        kind: NoAnswerKind::Body,
                        detail: format!("bad event-stream message: {error}"),
                    });
                }
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => {
                    return Err(Error::NoAnswer {
                        kind: NoAnswerKind::Connection,
                        detail: error.to_string(),
                    });
                }
                None => return Ok(None),
            }
        }
    }
}

/// An event, an exception as an error, or nothing for event types this client does not know.
fn event_of(message: &Message) -> Result<Option<SubscriptionEvent>, Error> {
    let undecodable = |error: serde_json::Error| Error::NoAnswer {
        kind: NoAnswerKind::Body,
        detail: format!("undecodable event: {error}"),
    };
    if message.header(":message-type") == Some("exception") {
        let payload: serde_json::Value =
            serde_json::from_slice(&message.payload).unwrap_or_default();
        let error = ServiceError::from_exception(
            message.header(":exception-type").unwrap_or("Exception"),
            payload["message"].as_str().unwrap_or_default().to_string(),
        );
        return Err(if error.status >= 500 {
            Error::Failed(error)
        } else {
            Error::Rejected(error)
        });
    }
    match message.header(":event-type") {
        Some("initial-response") => Ok(Some(SubscriptionEvent::Started)),
        Some("SubscribeToShardEvent") => serde_json::from_slice(&message.payload)
            .map(|event| Some(SubscriptionEvent::Records(event)))
            .map_err(undecodable),
        _ => Ok(None),
    }
}

impl Client {
    /// Opens a subscription; its events are read with [`Subscription::next`].
    pub async fn subscribe_to_shard(
        &self,
        input: &SubscribeToShard,
    ) -> Result<Subscription, Error> {
        let body = serde_json::to_vec(input).map_err(|error| Error::Request(error.to_string()))?;
        let body = self
            .open_stream("SubscribeToShard", Bytes::from(body))
            .await?;
        Ok(Subscription {
            body,
            buffer: BytesMut::new(),
        })
    }
}
