//! Push delivery of a shard's committed records, for SubscribeToShard.
//!
//! The shard leader serves `Follow` ([`Node::serve_follow`]): a stream of pages of committed
//! records from a position, each produced as soon as the records are applied on the leader
//! (the shard's applied watch wakes it; nothing polls). The node holding the subscription
//! follows the leader with [`Node::follow`]; when the leader changes, or its node stops
//! answering, the [`Follower`] re-opens the stream on the new leader at the position after the
//! last record it received. Positions are log positions, the same on every replica, so nothing
//! is skipped or repeated.
//!
//! Backpressure: the leader reads the next page only when the stream is polled for it. Between
//! nodes that is when gRPC's HTTP/2 stream window has room; on the subscribing node the follower
//! runs one page ahead of the client's HTTP response, which is written only as fast as the
//! client's own flow-control window allows.
//!
//! One subscription per consumer and shard (AWS's rule): the leader keeps who follows each shard
//! for which consumer. A new subscription within 5 seconds of the current one's start is refused
//! with ResourceInUseException; a later one takes over, and the old one ends with that error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use riffle_control::model::ShardRecord;
use riffle_proto::peer as pb;
use riffle_raft::ProposeError;
use riffle_shard::shard::ReadPage;
use riffle_shard::shard::ReadRecord;
use riffle_shard::shard::ShardReplica;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use riffle_types::seqnum::Position;
use tokio::sync::watch;

use crate::node::DataError;
use crate::node::Node;
use crate::node::Routed;
use crate::node::now_ms;
use crate::peer::PeerError;
use crate::peer::kinesis_error_from_pb;
use crate::peer::kinesis_error_to_pb;

/// Most records in one pushed page.
const PAGE_RECORDS: u32 = 10_000;
/// A new subscription for the same consumer and shard is refused this soon after the current
/// one started.
const TAKEOVER_AFTER_MS: u64 = 5_000;
/// While nothing commits, the leader confirms it still leads this often (a deposed leader that
/// has not noticed would otherwise keep a subscription waiting forever).
const LEADERSHIP_CHECK: Duration = Duration::from_secs(2);

/// Who follows each shard this node leads, for each consumer.
#[derive(Default)]
pub struct Subscriptions {
    active: Arc<Mutex<HashMap<(String, u64), Holder>>>,
}

struct Holder {
    subscription: u64,
    started_ms: u64,
    /// Set when another subscription takes over.
    taken_over: watch::Sender<bool>,
}

/// A registered subscription; dropping it unregisters it.
struct Registration {
    active: Arc<Mutex<HashMap<(String, u64), Holder>>>,
    key: (String, u64),
    subscription: u64,
    taken_over: watch::Receiver<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut active) = self.active.lock()
            && active
                .get(&self.key)
                .is_some_and(|holder| holder.subscription == self.subscription)
        {
            active.remove(&self.key);
        }
    }
}

impl Subscriptions {
    fn register(&self, request: &pb::FollowRequest) -> Result<Registration, KinesisError> {
        let key = (request.consumer.clone(), request.group);
        let mut active = self
            .active
            .lock()
            .map_err(|_| KinesisError::internal("subscription registry poisoned"))?;
        if let Some(holder) = active.get(&key)
            && holder.subscription != request.subscription
        {
            if request.resume || request.started_ms < holder.started_ms {
                return Err(KinesisError::in_use(format!(
                    "Another subscription for consumer {} took over this shard.",
                    request.consumer
                )));
            }
            if request.started_ms < holder.started_ms + TAKEOVER_AFTER_MS {
                return Err(KinesisError::in_use(format!(
                    "Another active subscription exists for this consumer: {} (started {} ms ago; a new one may take over after 5 seconds).",
                    request.consumer,
                    request.started_ms.saturating_sub(holder.started_ms)
                )));
            }
            holder.taken_over.send_replace(true);
        }
        let (taken_over, receiver) = watch::channel(false);
        active.insert(
            key.clone(),
            Holder {
                subscription: request.subscription,
                started_ms: request.started_ms,
                taken_over,
            },
        );
        Ok(Registration {
            active: self.active.clone(),
            key,
            subscription: request.subscription,
            taken_over: receiver,
        })
    }
}

/// The leader's side of one Follow stream.
struct Serving {
    replica: ShardReplica,
    registration: Registration,
    applied: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
    from: Position,
    max_bytes: usize,
    accepted: bool,
    done: bool,
}

fn not_leader(leader_node: u64) -> pb::ReadResponse {
    pb::ReadResponse {
        not_leader: Some(pb::NotLeader { leader_node }),
        ..Default::default()
    }
}

fn error_page(error: &KinesisError) -> pb::ReadResponse {
    pb::ReadResponse {
        error: Some(kinesis_error_to_pb(error)),
        ..Default::default()
    }
}

/// A page as a read or follow answer carries it.
pub(crate) fn page_to_pb(page: ReadPage) -> pb::ReadResponse {
    pb::ReadResponse {
        records: page
            .records
            .into_iter()
            .map(|record| pb::ReadRecord {
                entry: record.position.entry,
                record: record.position.record,
                arrival_ms: record.arrival_ms,
                partition_key: record.partition_key,
                data: record.data,
            })
            .collect(),
        next_entry: page.next.entry,
        next_record: page.next.record,
        end_of_shard: page.end_of_shard,
        tip: page.tip,
        error: None,
        not_leader: None,
    }
}

/// A page from a read or follow answer.
pub(crate) fn page_from_pb(response: pb::ReadResponse) -> ReadPage {
    ReadPage {
        records: response
            .records
            .into_iter()
            .map(|record| ReadRecord {
                position: Position {
                    entry: record.entry,
                    record: record.record,
                },
                arrival_ms: record.arrival_ms,
                partition_key: record.partition_key,
                data: record.data,
            })
            .collect(),
        next: Position {
            entry: response.next_entry,
            record: response.next_record,
        },
        end_of_shard: response.end_of_shard,
        tip: response.tip,
    }
}

impl Serving {
    /// The next message of the stream, or `None` once it has ended.
    async fn next(&mut self) -> Option<pb::ReadResponse> {
        if self.done {
            return None;
        }
        let message = self.produce().await;
        if message.not_leader.is_some() || message.error.is_some() || message.end_of_shard {
            self.done = true;
        }
        Some(message)
    }

    async fn produce(&mut self) -> pb::ReadResponse {
        if !self.accepted {
            self.accepted = true;
            return pb::ReadResponse {
                next_entry: self.from.entry,
                next_record: self.from.record,
                tip: self.replica.readable_tip(),
                ..Default::default()
            };
        }
        loop {
            if *self.registration.taken_over.borrow() {
                return error_page(&KinesisError::in_use(format!(
                    "Another subscription for consumer {} took over this shard.",
                    self.registration.key.0
                )));
            }
            if *self.stop.borrow() || !self.replica.group().is_leader() {
                return not_leader(0);
            }
            // Seen before reading, so an apply that lands during the read wakes the wait below.
            self.applied.borrow_and_update();
            let sealed = self.replica.progress().sealed_at().is_some();
            if self.from.entry <= self.replica.readable_tip() || sealed {
                let replica = self.replica.clone();
                let (from, max_bytes) = (self.from, self.max_bytes);
                let read = tokio::task::spawn_blocking(move || {
                    replica.read(from, PAGE_RECORDS as usize, max_bytes)
                })
                .await;
                let page = match read {
                    Ok(Ok(page)) => page,
                    Ok(Err(error)) => {
                        return error_page(&KinesisError::internal(format!(
                            "cannot read shard: {error}"
                        )));
                    }
                    Err(error) => {
                        return error_page(&KinesisError::internal(format!(
                            "read task failed: {error}"
                        )));
                    }
                };
                let moved = page.next != self.from;
                self.from = page.next;
                if !page.records.is_empty() || page.end_of_shard {
                    return page_to_pb(page);
                }
                if moved {
                    // Entries without records (membership changes, the seal): read on.
                    continue;
                }
            }
            tokio::select! {
                changed = self.applied.changed() => {
                    if changed.is_err() {
                        return not_leader(0);
                    }
                }
                _ = self.registration.taken_over.changed() => {}
                _ = self.stop.changed() => {}
                () = tokio::time::sleep(LEADERSHIP_CHECK) => {
                    if let Err(error) = self.replica.group().lease_read_barrier().await {
                        let leader = match error {
                            ProposeError::NotLeader { leader } => {
                                leader.map(|(_, node)| node.node).unwrap_or(0)
                            }
                            _ => 0,
                        };
                        return not_leader(leader);
                    }
                }
            }
        }
    }
}

impl Node {
    /// Serves a Follow stream for a shard this node leads (see the module comment). The first
    /// message accepts (or refuses) the subscription; the stream ends after a `not_leader`,
    /// an `error` or the end of a closed shard.
    pub async fn serve_follow(
        &self,
        request: pb::FollowRequest,
    ) -> BoxStream<'static, pb::ReadResponse> {
        let only = |message| futures_util::stream::once(async move { message }).boxed();
        let replica = match self.leading_replica(request.group) {
            Ok(replica) => replica,
            Err(not_leader) => {
                return only(pb::ReadResponse {
                    not_leader: Some(not_leader),
                    ..Default::default()
                });
            }
        };
        // Confirmed leader (a deposed one that has not noticed would wait in vain).
        if let Err(error) = replica.group().lease_read_barrier().await {
            let leader = match error {
                ProposeError::NotLeader { leader } => {
                    leader.map(|(_, node)| node.node).unwrap_or(0)
                }
                _ => 0,
            };
            return only(not_leader(leader));
        }
        let registration = match self.subscriptions.register(&request) {
            Ok(registration) => registration,
            Err(error) => return only(error_page(&error)),
        };
        let serving = Serving {
            applied: replica.watch_applied(),
            replica,
            registration,
            stop: self.stop.subscribe(),
            from: Position {
                entry: request.entry,
                record: request.record,
            },
            max_bytes: usize::try_from(request.max_bytes)
                .unwrap_or(usize::MAX)
                .max(1),
            accepted: false,
            done: false,
        };
        futures_util::stream::unfold(serving, |mut serving| async move {
            let message = serving.next().await?;
            Some((message, serving))
        })
        .boxed()
    }

    /// Follows a shard's committed records from `from` on, wherever its leader is; the first
    /// call to the leader happens here, so a refused subscription (ResourceInUseException) or
    /// an unreachable shard is an error before anything is delivered.
    pub async fn follow(
        self: &Arc<Self>,
        shard: &ShardRecord,
        from: Position,
        max_bytes: usize,
        consumer: String,
        subscription: u64,
    ) -> Result<Follower, DataError> {
        let mut follower = Follower {
            node: self.clone(),
            shard: shard.clone(),
            request: pb::FollowRequest {
                group: shard.group,
                entry: from.entry,
                record: from.record,
                max_bytes: max_bytes as u64,
                consumer,
                subscription,
                started_ms: now_ms(),
                resume: false,
            },
            leader: 0,
            stream: None,
            tip: 0,
            ended: false,
        };
        follower.open().await?;
        Ok(follower)
    }

    /// Opens a Follow stream on `node` and waits for its first message.
    async fn open_follow_on(
        &self,
        node: u64,
        request: pb::FollowRequest,
    ) -> Routed<(u64, u64, FollowStream)> {
        let mut stream: FollowStream = if node == self.config().node_id {
            self.serve_follow(request).await.map(Ok).boxed()
        } else {
            let Some(peers) = &self.peers else {
                return Routed::Unreachable;
            };
            match self.until_down(node, peers.follow(node, request)).await {
                Some(Ok(stream)) => stream,
                Some(Err(_)) | None => return Routed::Unreachable,
            }
        };
        let first = match self.until_down(node, stream.next()).await {
            Some(Some(Ok(first))) => first,
            Some(Some(Err(_)) | None) | None => return Routed::Unreachable,
        };
        if let Some(not_leader) = first.not_leader {
            return Routed::NotLeader(
                (not_leader.leader_node != 0).then_some(not_leader.leader_node),
            );
        }
        if let Some(error) = first.error {
            return Routed::Failed(kinesis_error_from_pb(error));
        }
        Routed::Done((node, first.tip, stream))
    }
}

/// Messages of one Follow stream as the subscribing node receives them.
pub type FollowStream = BoxStream<'static, Result<pb::ReadResponse, PeerError>>;

/// A subscribing node's end of a shard's record stream: pages of committed records in log
/// order, each exactly once, across leader changes.
pub struct Follower {
    node: Arc<Node>,
    shard: ShardRecord,
    request: pb::FollowRequest,
    /// The node serving the current stream.
    leader: u64,
    stream: Option<FollowStream>,
    /// The leader's readable tip at the last page.
    tip: u64,
    ended: bool,
}

impl Follower {
    /// Where the next record will come from.
    pub fn position(&self) -> Position {
        Position {
            entry: self.request.entry,
            record: self.request.record,
        }
    }

    /// The leader's last readable log index when the last page (or the acceptance) was sent.
    pub fn tip(&self) -> u64 {
        self.tip
    }

    async fn open(&mut self) -> Result<(), DataError> {
        let node = self.node.clone();
        let request = self.request.clone();
        let (leader, tip, stream) = node
            .on_shard_leader(&self.shard, |candidate| {
                node.open_follow_on(candidate, request.clone())
            })
            .await?;
        if self.request.resume {
            tracing::info!(
                group = self.shard.group,
                leader,
                entry = self.request.entry,
                record = self.request.record,
                "subscription resumed on the shard's new leader"
            );
        }
        self.leader = leader;
        self.tip = tip;
        self.stream = Some(stream);
        // From now on an opening is a resumption: the subscription keeps its place.
        self.request.resume = true;
        Ok(())
    }

    /// The next page with records (or the closed shard's end), or `None` after the end. An
    /// error ends the subscription: the shard has no reachable leader, or another
    /// subscription took over (ResourceInUseException).
    pub async fn next(&mut self) -> Option<Result<ReadPage, KinesisError>> {
        if self.ended {
            return None;
        }
        loop {
            let Some(stream) = self.stream.as_mut() else {
                if let Err(error) = self.open().await {
                    self.ended = true;
                    return Some(Err(match error {
                        DataError::Closed => KinesisError::internal("the shard closed"),
                        DataError::Failed(error) => error,
                    }));
                }
                continue;
            };
            let message = self.node.until_down(self.leader, stream.next()).await;
            let response = match message {
                Some(Some(Ok(response))) => response,
                // The leader's node went down or the stream broke: find the leader again.
                Some(Some(Err(_)) | None) | None => {
                    tracing::debug!(
                        group = self.shard.group,
                        leader = self.leader,
                        "follow stream lost; resuming on the shard's leader"
                    );
                    self.stream = None;
                    continue;
                }
            };
            if response.not_leader.is_some() {
                self.stream = None;
                continue;
            }
            if let Some(error) = response.error {
                self.ended = true;
                let error = kinesis_error_from_pb(error);
                if error.code != ErrorCode::ResourceInUseException {
                    tracing::warn!(group = self.shard.group, %error.message, "follow failed");
                }
                return Some(Err(error));
            }
            let page = page_from_pb(response);
            self.request.entry = page.next.entry;
            self.request.record = page.next.record;
            self.tip = page.tip;
            if page.end_of_shard {
                self.ended = true;
            }
            return Some(Ok(page));
        }
    }
}
