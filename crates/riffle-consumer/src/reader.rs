//! Reading one shard from a position, in order, by polling (GetShardIterator + GetRecords) or
//! by enhanced fan-out (SubscribeToShard, re-subscribed after its 5 minutes from the last
//! continuation). Either way the reader hands out batches and says when the shard has ended.

use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use riffle_types::eventstream::DecodeError;
use riffle_types::eventstream::Message;
use serde_json::Value;
use serde_json::json;

use crate::Record;
use crate::client::CallError;
use crate::client::Client;

/// Where reading starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    TrimHorizon,
    Latest,
    AfterSequenceNumber(String),
}

impl Start {
    fn iterator_fields(&self) -> (&'static str, Option<&str>) {
        match self {
            Start::TrimHorizon => ("TRIM_HORIZON", None),
            Start::Latest => ("LATEST", None),
            Start::AfterSequenceNumber(number) => ("AFTER_SEQUENCE_NUMBER", Some(number)),
        }
    }
}

/// How a worker reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// GetRecords, asking again every `idle` while the shard is quiet.
    Polling { idle: Duration },
    /// SubscribeToShard as the registered consumer with this name (registered if needed).
    FanOut { consumer_name: String },
}

/// Records read in one step.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// The shard is closed and everything in it has been read.
    pub end_of_shard: bool,
}

fn record_of(value: &Value) -> Option<Record> {
    Some(Record {
        sequence_number: value["SequenceNumber"].as_str()?.to_string(),
        partition_key: value["PartitionKey"].as_str()?.to_string(),
        data: base64::engine::general_purpose::STANDARD
            .decode(value["Data"].as_str()?)
            .ok()?
            .into(),
        approximate_arrival_ms: value["ApproximateArrivalTimestamp"]
            .as_f64()
            .map(|seconds| (seconds * 1000.0) as u64)
            .unwrap_or(0),
    })
}

fn records_of(output: &Value) -> Vec<Record> {
    output["Records"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(record_of)
        .collect()
}

/// Reads one shard.
pub struct ShardReader {
    client: Client,
    stream: String,
    shard_id: String,
    mode: ReadMode,
    /// Where to (re)start: moves past every record handed out.
    start: Start,
    iterator: Option<String>,
    consumer_arn: Option<String>,
    subscription: Option<(Incoming, BytesMut)>,
    ended: bool,
}

impl ShardReader {
    pub fn new(
        client: Client,
        stream: &str,
        shard_id: &str,
        mode: ReadMode,
        start: Start,
    ) -> ShardReader {
        ShardReader {
            client,
            stream: stream.to_string(),
            shard_id: shard_id.to_string(),
            mode,
            start,
            iterator: None,
            consumer_arn: None,
            subscription: None,
            ended: false,
        }
    }

    /// The next batch (possibly empty while the shard is quiet).
    pub async fn next(&mut self) -> Result<Batch, CallError> {
        if self.ended {
            return Ok(Batch {
                records: Vec::new(),
                end_of_shard: true,
            });
        }
        let batch = match self.mode.clone() {
            ReadMode::Polling { idle } => self.poll(idle).await,
            ReadMode::FanOut { consumer_name } => self.fan_out(&consumer_name).await,
        }?;
        if let Some(last) = batch.records.last() {
            self.start = Start::AfterSequenceNumber(last.sequence_number.clone());
        }
        self.ended = batch.end_of_shard;
        Ok(batch)
    }

    async fn poll(&mut self, idle: Duration) -> Result<Batch, CallError> {
        let iterator = match self.iterator.take() {
            Some(iterator) => iterator,
            None => {
                let (kind, number) = self.start.iterator_fields();
                let mut input = json!({"StreamName": self.stream, "ShardId": self.shard_id, "ShardIteratorType": kind});
                if let Some(number) = number {
                    input["StartingSequenceNumber"] = json!(number);
                }
                let output = self.client.call("GetShardIterator", input).await?;
                output["ShardIterator"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
        };
        let output = self
            .client
            .call(
                "GetRecords",
                json!({"ShardIterator": iterator, "Limit": 1000}),
            )
            .await?;
        let records = records_of(&output);
        match output["NextShardIterator"].as_str() {
            Some(next) => self.iterator = Some(next.to_string()),
            None => {
                return Ok(Batch {
                    records,
                    end_of_shard: true,
                });
            }
        }
        if records.is_empty() {
            tokio::time::sleep(idle).await;
        }
        Ok(Batch {
            records,
            end_of_shard: false,
        })
    }

    async fn consumer_arn(&mut self, name: &str) -> Result<String, CallError> {
        if let Some(arn) = &self.consumer_arn {
            return Ok(arn.clone());
        }
        let arn = crate::ensure_consumer(&self.client, &self.stream, name).await?;
        self.consumer_arn = Some(arn.clone());
        Ok(arn)
    }

    async fn fan_out(&mut self, consumer_name: &str) -> Result<Batch, CallError> {
        loop {
            if self.subscription.is_none() {
                let consumer_arn = self.consumer_arn(consumer_name).await?;
                let (kind, number) = self.start.iterator_fields();
                let mut position = json!({"Type": kind});
                if let Some(number) = number {
                    position["SequenceNumber"] = json!(number);
                }
                let input = json!({"ConsumerARN": consumer_arn, "ShardId": self.shard_id, "StartingPosition": position});
                match self.client.subscribe(input).await {
                    Ok(body) => self.subscription = Some((body, BytesMut::new())),
                    // The previous holder of this shard subscribed less than 5 seconds ago.
                    Err(error) if error.is("ResourceInUseException") => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            let Some((body, buffer)) = self.subscription.as_mut() else {
                continue;
            };
            // A whole message may already be buffered.
            match Message::decode(buffer) {
                Ok((message, used)) => {
                    let _ = buffer.split_to(used);
                    if let Some(batch) = self.on_message(&message)? {
                        return Ok(batch);
                    }
                    continue;
                }
                Err(DecodeError::Incomplete(_)) => {}
                Err(error) => {
                    self.subscription = None;
                    return Err(CallError {
                        code: "EventStreamError".into(),
                        message: error.to_string(),
                    });
                }
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                // The subscription ended (5 minutes) or broke: subscribe again from where
                // the records handed out end.
                Some(Err(_)) | None => self.subscription = None,
            }
        }
    }

    /// One event-stream message: a batch for a SubscribeToShardEvent, nothing for the
    /// initial response, an error for an exception.
    fn on_message(&mut self, message: &Message) -> Result<Option<Batch>, CallError> {
        if message.header(":message-type") == Some("exception") {
            self.subscription = None;
            let payload: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
            return Err(CallError {
                code: message
                    .header(":exception-type")
                    .unwrap_or("Exception")
                    .to_string(),
                message: payload["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        if message.header(":event-type") != Some("SubscribeToShardEvent") {
            return Ok(None);
        }
        let event: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        let end_of_shard = event["ChildShards"].is_array();
        Ok(Some(Batch {
            records: records_of(&event),
            end_of_shard,
        }))
    }
}
