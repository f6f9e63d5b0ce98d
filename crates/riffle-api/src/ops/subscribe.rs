//! SubscribeToShard: an `initial-response` event, then SubscribeToShardEvent messages with the
//! shard's records, `ContinuationSequenceNumber` and `MillisBehindLatest`, and `ChildShards` in
//! the last event of a closed shard; errors after the start become exception events. A
//! subscription ends after 5 minutes, as on AWS.
//!
//! Records are pushed, not polled: the shard leader sends them to this node as they commit
//! (`riffle_node::follow`), across leader changes without gaps or repeats. Each event goes out
//! as soon as its page arrives, paced to 2 MiB/s per subscription (AWS's per-consumer, per-shard
//! rate) and to the client's HTTP flow control. One subscription per consumer and shard: a
//! second one within 5 seconds of the first is refused with ResourceInUseException; a later one
//! takes over and the first ends with a ResourceInUseException event.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use riffle_control::model::ConsumerStatus;
use riffle_control::model::ShardRecord;
use riffle_node::DataError;
use riffle_node::ReadPage;
use riffle_types::KinesisError;
use riffle_types::SequenceNumber;
use riffle_types::seqnum::Position;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Api;
use super::common::data_stream;
use super::common::find_shard;
use super::consumers::lookup;
use super::records::child_shards;
use super::records::millis_behind_latest;
use super::records::record_value;
use super::records::resolve_start;
use crate::error::ApiError;
use crate::eventstream::Message;
use crate::http::EventBytes;
use crate::request::Ctx;
use crate::request::SubscribeToShardInput;
use crate::wire;
use crate::wire::Format;
use crate::wire::Map;
use crate::wire::Value;

/// How long one subscription lasts.
const SUBSCRIPTION: Duration = Duration::from_secs(300);
/// How often an event is sent while nothing arrives (keeps clients and proxies informed).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Delivery rate of one subscription (bytes of record data and keys per second), and the most
/// one event carries.
const RATE: f64 = 2.0 * 1024.0 * 1024.0;
const PAGE_BYTES: usize = 1 << 20;

/// Subscriptions started on this node, for cluster-unique subscription ids.
static SUBSCRIPTIONS: AtomicU64 = AtomicU64::new(0);

pub async fn subscribe_to_shard(
    api: &Api,
    ctx: &Ctx<'_>,
    input: SubscribeToShardInput,
    format: Format,
) -> Result<EventBytes, ApiError> {
    let SubscribeToShardInput {
        consumer,
        shard_id,
        start,
    } = input;
    let (_, registered) = lookup(api, ctx, &consumer).await?;
    if registered.status != ConsumerStatus::Active {
        return Err(KinesisError::in_use(format!(
            "Consumer {} under stream {} is not ACTIVE (it is {}).",
            consumer.name,
            consumer.stream.name,
            registered.status.as_str()
        ))
        .into());
    }

    // The starting position, by the same rules and errors as GetShardIterator.
    let start = start?;
    let stream = consumer.stream.name.clone();
    let state = api.state_for(&stream).await;
    let record = data_stream(ctx, &state, &stream)?;
    let shard = find_shard(ctx, &record, &shard_id)?.clone();
    let position = resolve_start(api, ctx, &record, &shard, &start).await?;
    let consumer_arn = consumer.given_arn.as_deref();

    let node = api.node.clone();
    let subscription = (node.id() << 40) | SUBSCRIPTIONS.fetch_add(1, Ordering::Relaxed);
    let mut follower = node
        .follow(
            &shard,
            position,
            PAGE_BYTES,
            consumer_arn.unwrap_or_default().to_string(),
            subscription,
        )
        .await?;
    // The follower runs in its own task, one page ahead: the subscription waits on a channel,
    // which it can stop waiting on for a heartbeat without losing a page.
    let (pages, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = pages.closed() => return,
                page = follower.next() => {
                    let Some(page) = page else { return };
                    if pages.send(page).await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let now = Instant::now();
    let state = Subscription {
        api: Api::new(api.node.clone()),
        format,
        stream: stream.clone(),
        shard,
        pages: receiver,
        position,
        started: now,
        last_event: now,
        allowance: RATE,
        allowance_at: now,
        initial_sent: false,
        ended: false,
    };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        let message = state.next().await?;
        Some((message, state))
    });
    Ok(Box::pin(events))
}

struct Subscription {
    api: Api,
    format: Format,
    stream: String,
    shard: ShardRecord,
    pages: mpsc::Receiver<Result<ReadPage, DataError>>,
    /// Where the next record comes from.
    position: Position,
    started: Instant,
    last_event: Instant,
    /// Bytes that may be sent now (token bucket at [`RATE`]; negative after a large event).
    allowance: f64,
    allowance_at: Instant,
    initial_sent: bool,
    ended: bool,
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
        if self.ended {
            return None;
        }
        let end = self.started + SUBSCRIPTION;
        // Paced: wait until the allowance is back above zero.
        self.refill();
        if self.allowance < 0.0 {
            let wait = Duration::from_secs_f64(-self.allowance / RATE);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = tokio::time::sleep_until(end) => return None,
            }
            self.refill();
        }
        tokio::select! {
            page = self.pages.recv() => match page {
                Some(Ok(page)) => Some(self.event(page).await),
                Some(Err(error)) => Some(self.exception(error)),
                None => None,
            },
            () = tokio::time::sleep_until(self.last_event + HEARTBEAT) => {
                let heartbeat = ReadPage {
                    records: Vec::new(),
                    next: self.position,
                    end_of_shard: false,
                    tip: 0,
                };
                Some(self.event(heartbeat).await)
            }
            () = tokio::time::sleep_until(end) => None,
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.allowance_at).as_secs_f64();
        self.allowance = (self.allowance + elapsed * RATE).min(RATE);
        self.allowance_at = now;
    }

    async fn event(&mut self, page: ReadPage) -> Bytes {
        let now_ms = super::now_ms();
        let millis_behind = millis_behind_latest(&page, now_ms);
        self.position = page.next;
        let continuation = match page.records.last() {
            Some(last) => self
                .shard
                .sequence_number(last.position, last.arrival_ms)
                .encode(),
            None => continuation_at(
                self.shard.created_secs(),
                self.shard.index,
                page.next,
                now_ms,
            ),
        };
        let bytes: usize = page
            .records
            .iter()
            .map(|record| record.data.len() + record.partition_key.len())
            .sum();
        self.allowance -= bytes as f64;
        let records: Vec<Value> = page
            .records
            .into_iter()
            .map(|record| record_value(&self.shard, record))
            .collect();
        let mut event = Map::with_capacity(4);
        event.push("Records", Value::Array(records));
        event.push("ContinuationSequenceNumber", continuation);
        event.push("MillisBehindLatest", millis_behind);
        if page.end_of_shard {
            self.ended = true;
            // This node's copy of the metadata may not have seen the split or merge yet.
            let state = self.api.synced_state().await;
            let children = state
                .streams
                .get(&self.stream)
                .map(|stream| child_shards(stream, self.shard.index))
                .unwrap_or_default();
            event.push("ChildShards", children);
        }
        self.last_event = Instant::now();
        let payload = wire::encode(self.format, &Value::Map(event));
        Message::event("SubscribeToShardEvent", self.content_type(), payload.into()).encode()
    }

    /// The subscription's last event: the error as the client sees it.
    fn exception(&mut self, error: DataError) -> Bytes {
        self.ended = true;
        let error = crate::error::to_client(error);
        let payload = wire::encode(self.format, &wire::error_document(&error));
        Message::exception(error.code.type_name(), self.content_type(), payload.into()).encode()
    }
}

/// A continuation sequence number for an event without records: resuming AFTER it starts
/// exactly at `next` (the counter just below `next`'s).
fn continuation_at(
    shard_created_secs: u64,
    shard_index: u32,
    next: Position,
    now_ms: u64,
) -> String {
    let counter = next.counter().saturating_sub(1);
    SequenceNumber {
        shard_created_secs,
        shard_index,
        counter,
        arrival_secs: now_ms / 1000,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continuation_without_records_resumes_exactly_at_the_next_position() {
        for next in [
            Position::new(7, 0),
            Position::new(7, 5),
            Position::new(1, 0),
        ] {
            let text = continuation_at(1_700_000_000, 3, next, 1_700_000_123_000);
            let number = SequenceNumber::parse(&text).expect("parses");
            let at = number.position();
            // AFTER_SEQUENCE_NUMBER starts one record later in the same entry; a record offset
            // past an entry's end continues with the next entry.
            let after = Position {
                entry: at.entry,
                record: at.record + 1,
            };
            if next.record > 0 {
                assert_eq!(after, next);
            } else {
                assert_eq!(after.entry + 1, next.entry);
                assert_eq!(after.record, riffle_types::seqnum::MAX_RECORDS_PER_ENTRY);
            }
        }
    }
}
