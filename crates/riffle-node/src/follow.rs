//! Push delivery of a shard's committed records, for SubscribeToShard: the subscribing node's
//! side.
//!
//! The shard's leader serves a Follow stream ([`crate::serve::follow`]). The node holding the
//! subscription follows the leader with [`Node::follow`]; when the leader changes, or its node
//! stops answering, the [`Follower`] re-opens the stream on the new leader (through the same
//! routing as every shard call) at the position after the last record it received. Positions
//! are log positions, the same on every replica, so nothing is skipped or repeated.
//!
//! Backpressure: the follower runs one page ahead of the client's HTTP response, which is
//! written only as fast as the client's own flow-control window allows.

use std::sync::Arc;

use futures_util::StreamExt;
use riffle_control::model::ShardRecord;
use riffle_shard::shard::ReadPage;
use riffle_types::CodedError;
use riffle_types::ErrorCode;
use riffle_types::seqnum::Position;

use crate::error::DataError;
use crate::node::Node;
use crate::node::now_ms;
use crate::service::FollowRequest;
use crate::service::PageStream;
use crate::service::ServeError;

impl Node {
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
            request: FollowRequest {
                group: shard.group,
                from,
                max_bytes,
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
}

/// A subscribing node's end of a shard's record stream: pages of committed records in log
/// order, each exactly once, across leader changes.
pub struct Follower {
    node: Arc<Node>,
    shard: ShardRecord,
    /// The next opening's request: its position is after the last record received.
    request: FollowRequest,
    /// The node serving the current stream.
    leader: u64,
    stream: Option<PageStream>,
    /// The leader's readable tip at the last page.
    tip: u64,
    ended: bool,
}

impl Follower {
    /// Where the next record will come from.
    pub fn position(&self) -> Position {
        self.request.from
    }

    /// The leader's last readable log index when the last page (or the acceptance) was sent.
    pub fn tip(&self) -> u64 {
        self.tip
    }

    async fn open(&mut self) -> Result<(), DataError> {
        let (leader, following) = self
            .node
            .on_shard_leader(&self.shard, self.request.clone())
            .await?;
        if self.request.resume {
            tracing::info!(
                group = self.shard.group,
                leader,
                entry = self.request.from.entry,
                record = self.request.from.record,
                "subscription resumed on the shard's new leader"
            );
        }
        self.leader = leader;
        self.tip = following.tip;
        self.stream = Some(following.pages);
        // From now on an opening is a resumption: the subscription keeps its place.
        self.request.resume = true;
        Ok(())
    }

    /// The next page with records (or the closed shard's end), or `None` after the end. An
    /// error ends the subscription: the shard has no reachable leader, or another
    /// subscription took over (ResourceInUseException).
    pub async fn next(&mut self) -> Option<Result<ReadPage, DataError>> {
        if self.ended {
            return None;
        }
        loop {
            let Some(stream) = self.stream.as_mut() else {
                if let Err(error) = self.open().await {
                    self.ended = true;
                    return Some(Err(error));
                }
                continue;
            };
            let message = self.node.until_down(self.leader, stream.next()).await;
            let page = match message {
                Some(Some(Ok(page))) => page,
                // The leader's node went down or the stream broke: find the leader again.
                Some(None) | None => {
                    tracing::debug!(
                        group = self.shard.group,
                        leader = self.leader,
                        "follow stream lost; resuming on the shard's leader"
                    );
                    self.stream = None;
                    continue;
                }
                Some(Some(Err(ServeError::NotLeader(_)))) => {
                    self.stream = None;
                    continue;
                }
                Some(Some(Err(ServeError::Failed(error)))) => {
                    self.ended = true;
                    if error.code() != ErrorCode::ResourceInUseException {
                        tracing::warn!(group = self.shard.group, error.message = %error, "follow failed");
                    }
                    return Some(Err(error.into()));
                }
                Some(Some(Err(ServeError::Closed))) => {
                    self.ended = true;
                    return Some(Err(DataError::Closed));
                }
            };
            self.request.from = page.next;
            self.tip = page.tip;
            if page.end_of_shard {
                self.ended = true;
            }
            return Some(Ok(page));
        }
    }
}
