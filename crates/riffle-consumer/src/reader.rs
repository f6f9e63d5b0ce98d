//! Reading one shard from a position, in order, by polling (GetShardIterator + GetRecords) or
//! by enhanced fan-out (SubscribeToShard, re-subscribed after its 5 minutes from the last
//! continuation). Either way the reader hands out batches and says when the shard has ended.

use std::time::Duration;

use riffle_client::Client;
use riffle_client::Error;
use riffle_client::NoAnswerKind;
use riffle_client::StartingPosition;
use riffle_client::ops::consumers::SubscribeToShard;
use riffle_client::ops::consumers::Subscription;
use riffle_client::ops::consumers::SubscriptionEvent;
use riffle_client::ops::records::GetRecords;
use riffle_client::ops::records::GetShardIterator;

use crate::Record;

/// Where reading starts.
pub type Start = StartingPosition;

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
    subscription: Option<Subscription>,
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
    pub async fn next(&mut self) -> Result<Batch, Error> {
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

    async fn poll(&mut self, idle: Duration) -> Result<Batch, Error> {
        let iterator = match self.iterator.take() {
            Some(iterator) => iterator,
            None => {
                let input = GetShardIterator {
                    stream_name: self.stream.clone(),
                    shard_id: self.shard_id.clone(),
                    position: self.start.clone(),
                };
                self.client.call(&input).await?.shard_iterator
            }
        };
        let page = self
            .client
            .call(&GetRecords {
                shard_iterator: iterator,
                limit: Some(1000),
            })
            .await?;
        let records = page.records;
        match page.next_shard_iterator {
            Some(next) => self.iterator = Some(next),
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

    async fn consumer_arn(&mut self, name: &str) -> Result<String, Error> {
        if let Some(arn) = &self.consumer_arn {
            return Ok(arn.clone());
        }
        let arn = crate::ensure_consumer(&self.client, &self.stream, name).await?;
        self.consumer_arn = Some(arn.clone());
        Ok(arn)
    }

    async fn fan_out(&mut self, consumer_name: &str) -> Result<Batch, Error> {
        loop {
            let subscription = match self.subscription.as_mut() {
                Some(subscription) => subscription,
                None => {
                    let input = SubscribeToShard {
                        consumer_arn: self.consumer_arn(consumer_name).await?,
                        shard_id: self.shard_id.clone(),
                        starting_position: self.start.clone(),
                    };
                    match self.client.subscribe_to_shard(&input).await {
                        Ok(subscription) => self.subscription.insert(subscription),
                        // The previous holder of this shard subscribed less than 5 seconds ago.
                        Err(error) if error.is("ResourceInUseException") => {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                }
            };
            match subscription.next().await {
                Ok(Some(SubscriptionEvent::Records(event))) => {
                    return Ok(Batch {
                        records: event.records,
                        end_of_shard: event.child_shards.is_some(),
                    });
                }
                Ok(Some(SubscriptionEvent::Started)) => {}
                // The subscription ended (5 minutes) or broke: subscribe again from where the
                // records handed out end.
                Ok(None)
                | Err(Error::NoAnswer {
                    kind: NoAnswerKind::Connection,
                    ..
                }) => self.subscription = None,
                // An exception event or an unreadable message: the caller hears of it, the
                // next call subscribes again.
                Err(error) => {
                    self.subscription = None;
                    return Err(error);
                }
            }
        }
    }
}
