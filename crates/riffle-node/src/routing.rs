//! Routing: every data operation runs on its shard's leader, wherever it is.
//!
//! One loop ([`Node::on_shard_leader`]) finds the leader for any call: it tries its best guess
//! (the last node that answered as leader, else this node if its replica leads, else the leader
//! recorded in the control state, else the preferred replica), follows not-leader hints, moves
//! to the next replica when a node is unreachable or liveness calls it down, and gives up after
//! [`ROUTE_DEADLINE`] (an election takes a few seconds). Where the next attempt goes is decided
//! by [`Route`], a pure state machine. One adapter ([`Node::call_on`]) runs a [`ShardCall`] on
//! one node: the local [`ShardService`] when it is this node — no protobuf, nothing copied —
//! else the peer transport.
//!
//! An append that was sent but not answered is not retried elsewhere (it may have been
//! written): the client gets an error and retries, as it would against AWS.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use riffle_control::model::ShardRecord;
use riffle_shard::batch;
use riffle_shard::batch::AppendRecord;
use riffle_shard::shard::ReadPage;
use riffle_storage::GroupId;
use riffle_types::seqnum::Position;

use crate::error::DataError;
use crate::error::NoAnswer;
use crate::node::Node;
use crate::node::now_ms;
use crate::peer::PeerClient;
use crate::peer::PeerError;
use crate::peer::PeerResult;
use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::ServeError;
use crate::service::Served;
use crate::service::ShardService;

/// How long a routed call keeps looking for a leader.
const ROUTE_DEADLINE: Duration = Duration::from_secs(10);
/// The pause after every replica said no (an election is probably running).
const ROUND_PAUSE: Duration = Duration::from_millis(100);
/// How often a call in flight checks whether liveness called its node down.
const DOWN_CHECK: Duration = Duration::from_millis(250);

/// The outcome of one routed attempt.
#[derive(Debug)]
pub(crate) enum Routed<T> {
    Done(T),
    Closed,
    NotLeader(Option<u64>),
    Unreachable,
    Failed(DataError),
}

impl<T> From<Served<T>> for Routed<T> {
    fn from(served: Served<T>) -> Self {
        match served {
            Ok(value) => Routed::Done(value),
            Err(ServeError::NotLeader(hint)) => Routed::NotLeader(hint),
            Err(ServeError::Closed) => Routed::Closed,
            Err(ServeError::Failed(error)) => Routed::Failed(error.into()),
        }
    }
}

/// What a call sent to a node that gave no answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// Nothing happened that matters (a read): try the next node.
    MoveOn,
    /// It may have been done (a write): report the outcome unknown, do not retry elsewhere.
    OutcomeUnknown,
}

/// A call that routing runs on a shard's leader, locally or through the peer transport.
pub(crate) trait ShardCall: Clone + Send + 'static {
    type Output: Send + 'static;
    const UNANSWERED: Unanswered;
    fn serve(self, service: &impl ShardService) -> impl Future<Output = Served<Self::Output>>;
    fn send(self, peers: &dyn PeerClient, node: u64) -> PeerResult<Served<Self::Output>>;
}

impl ShardCall for AppendRequest {
    type Output = u64;
    const UNANSWERED: Unanswered = Unanswered::OutcomeUnknown;
    fn serve(self, service: &impl ShardService) -> impl Future<Output = Served<u64>> {
        service.append(self)
    }
    fn send(self, peers: &dyn PeerClient, node: u64) -> PeerResult<Served<u64>> {
        peers.append(node, self)
    }
}

impl ShardCall for SealRequest {
    type Output = u64;
    const UNANSWERED: Unanswered = Unanswered::OutcomeUnknown;
    fn serve(self, service: &impl ShardService) -> impl Future<Output = Served<u64>> {
        service.seal(self)
    }
    fn send(self, peers: &dyn PeerClient, node: u64) -> PeerResult<Served<u64>> {
        peers.seal(node, self)
    }
}

impl ShardCall for ReadRequest {
    type Output = ReadPage;
    const UNANSWERED: Unanswered = Unanswered::MoveOn;
    fn serve(self, service: &impl ShardService) -> impl Future<Output = Served<ReadPage>> {
        service.read(self)
    }
    fn send(self, peers: &dyn PeerClient, node: u64) -> PeerResult<Served<ReadPage>> {
        peers.read(node, self)
    }
}

impl ShardCall for LocateRequest {
    type Output = Position;
    const UNANSWERED: Unanswered = Unanswered::MoveOn;
    fn serve(self, service: &impl ShardService) -> impl Future<Output = Served<Position>> {
        service.locate(self)
    }
    fn send(self, peers: &dyn PeerClient, node: u64) -> PeerResult<Served<Position>> {
        peers.locate(node, self)
    }
}

impl ShardCall for FollowRequest {
    type Output = Following;
    const UNANSWERED: Unanswered = Unanswered::MoveOn;
    fn serve(self, service: &impl ShardService) -> impl Future<Output = Served<Following>> {
        service.follow(self)
    }
    fn send(self, peers: &dyn PeerClient, node: u64) -> PeerResult<Served<Following>> {
        peers.follow(node, self)
    }
}

/// The node to try first for a shard: the last one that answered as leader, else this node if
/// its replica leads, else the leader recorded in the control state, else the preferred (first)
/// replica.
pub(crate) fn leader_guess(
    cached: Option<u64>,
    leads_here: bool,
    me: u64,
    shard: &ShardRecord,
) -> u64 {
    if let Some(node) = cached {
        return node;
    }
    if leads_here {
        return me;
    }
    shard
        .leader
        .or_else(|| shard.replicas.first().map(|replica| replica.node))
        .unwrap_or(me)
}

/// What routing does after an attempt that found no leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Follow the not-leader hint: try the named node now (the leader cache is kept).
    FollowHint,
    /// Try the next replica (after a pause when every replica has said no).
    Next { pause: bool },
    /// Past the deadline: the shard has no reachable leader.
    GiveUp,
}

/// Where a routed call goes next: a pure state machine over the shard's replicas.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    replicas: Vec<u64>,
    candidate: u64,
    misses: usize,
}

impl Route {
    pub(crate) fn new(replicas: Vec<u64>, first: u64) -> Route {
        Route {
            replicas,
            candidate: first,
            misses: 0,
        }
    }

    /// The node to try now.
    pub(crate) fn candidate(&self) -> u64 {
        self.candidate
    }

    /// The candidate answered not-leader (with its hint) or was unreachable (`hint` is
    /// `None`). A hint naming another replica of the shard is followed at once; otherwise the
    /// next replica in placement order is tried, until `past_deadline`.
    pub(crate) fn after_miss(&mut self, hint: Option<u64>, past_deadline: bool) -> Step {
        if let Some(hint) = hint
            && hint != self.candidate
            && self.replicas.contains(&hint)
        {
            self.candidate = hint;
            return Step::FollowHint;
        }
        self.misses += 1;
        let position = self
            .replicas
            .iter()
            .position(|node| *node == self.candidate)
            .unwrap_or(0);
        self.candidate = self
            .replicas
            .get((position + 1) % self.replicas.len().max(1))
            .copied()
            .unwrap_or(self.candidate);
        if past_deadline {
            return Step::GiveUp;
        }
        Step::Next {
            pause: self.misses.is_multiple_of(self.replicas.len().max(1)),
        }
    }
}

/// Which node leads each shard group, as last learned (answers and hints).
#[derive(Debug, Default)]
pub(crate) struct LeaderCache {
    leaders: std::sync::RwLock<HashMap<GroupId, u64>>,
}

impl LeaderCache {
    fn get(&self, group: GroupId) -> Option<u64> {
        self.leaders.read().ok()?.get(&group).copied()
    }

    fn remember(&self, group: GroupId, node: u64) {
        if let Ok(mut leaders) = self.leaders.write() {
            leaders.insert(group, node);
        }
    }

    fn forget(&self, group: GroupId) {
        if let Ok(mut leaders) = self.leaders.write() {
            leaders.remove(&group);
        }
    }
}

impl Node {
    /// Runs a call to `node`, giving up (`None`) as soon as liveness calls the node down: a
    /// frozen or cut-off node never answers, and its callers should not wait for the
    /// transport's timeout to move on.
    pub(crate) async fn until_down<T>(
        &self,
        node: u64,
        call: impl Future<Output = T>,
    ) -> Option<T> {
        let went_down = async {
            loop {
                tokio::time::sleep(DOWN_CHECK).await;
                if self.is_down(node) {
                    break;
                }
            }
        };
        tokio::select! {
            result = call => Some(result),
            () = went_down => None,
        }
    }

    /// Runs `call` on `node`: this node's shard service, or the peer transport.
    async fn call_on<C: ShardCall>(&self, node: u64, call: C) -> Routed<C::Output> {
        if node == self.id() {
            return call.serve(self.shards()).await.into();
        }
        let Some(peers) = &self.peers else {
            return Routed::Unreachable;
        };
        let outcome = self.until_down(node, call.send(peers.as_ref(), node)).await;
        let unanswered = match outcome {
            Some(Ok(served)) => return served.into(),
            Some(Err(PeerError::Unreachable { .. })) => return Routed::Unreachable,
            // Sent, but no answer: it may have run.
            Some(Err(error @ PeerError::Failed { .. })) => NoAnswer::Transport(error),
            None => NoAnswer::Down { node },
        };
        match C::UNANSWERED {
            Unanswered::MoveOn => Routed::Unreachable,
            // Retrying elsewhere could write it twice, so the client decides (it sees an error
            // and retries).
            Unanswered::OutcomeUnknown => Routed::Failed(DataError::OutcomeUnknown(unanswered)),
        }
    }

    /// Runs `call` against the shard's leader (see the module comment); returns the leader's
    /// node with the answer.
    pub(crate) async fn on_shard_leader<C: ShardCall>(
        &self,
        shard: &ShardRecord,
        call: C,
    ) -> Result<(u64, C::Output), DataError> {
        let deadline = tokio::time::Instant::now() + ROUTE_DEADLINE;
        let replicas: Vec<u64> = shard.replicas.iter().map(|replica| replica.node).collect();
        let leads_here = self
            .local_shard(shard.group)
            .is_some_and(|replica| replica.group().is_leader());
        let first = leader_guess(
            self.leader_cache.get(shard.group),
            leads_here,
            self.id(),
            shard,
        );
        let mut route = Route::new(replicas, first);
        loop {
            let candidate = route.candidate();
            // A node liveness calls down is skipped like an unreachable one (a frozen node
            // accepts connections but never answers).
            let routed = if self.is_down(candidate) {
                Routed::Unreachable
            } else {
                self.call_on(candidate, call.clone()).await
            };
            let hint = match routed {
                Routed::Done(value) => {
                    self.leader_cache.remember(shard.group, candidate);
                    return Ok((candidate, value));
                }
                Routed::Closed => return Err(DataError::Closed),
                Routed::Failed(error) => {
                    // The next request guesses again rather than trusting this node.
                    self.leader_cache.forget(shard.group);
                    return Err(error);
                }
                Routed::NotLeader(hint) => hint,
                Routed::Unreachable => None,
            };
            match route.after_miss(hint, tokio::time::Instant::now() >= deadline) {
                Step::FollowHint => {}
                Step::Next { pause } => {
                    self.leader_cache.forget(shard.group);
                    if pause {
                        tokio::time::sleep(ROUND_PAUSE).await;
                    }
                }
                Step::GiveUp => {
                    self.leader_cache.forget(shard.group);
                    return Err(DataError::NoLeader { shard: shard.id() });
                }
            }
        }
    }

    /// Appends `records` to a shard as one batch (on its leader); returns the log index of the
    /// batch's entry (a record's position is that index and its place in `records`). The batch
    /// is encoded here, once, and moved from then on.
    pub async fn append<'a, I>(
        &self,
        shard: &ShardRecord,
        records: I,
        arrival_ms: u64,
    ) -> Result<u64, DataError>
    where
        I: IntoIterator<Item = AppendRecord<'a>>,
        I::IntoIter: Clone,
    {
        let request = AppendRequest {
            group: shard.group,
            batch: batch::encode(arrival_ms, records),
            arrival_ms,
        };
        self.on_shard_leader(shard, request)
            .await
            .map(|(_, answer)| answer)
    }

    /// Seals a shard (on its leader); returns the seal's log index.
    pub async fn seal_shard(&self, shard: &ShardRecord) -> Result<u64, DataError> {
        let request = SealRequest {
            group: shard.group,
            now_ms: now_ms(),
        };
        self.on_shard_leader(shard, request)
            .await
            .map(|(_, answer)| answer)
    }

    /// Reads records from a shard on its leader, after making sure the leader has applied
    /// everything committed (so an acknowledged record is always visible).
    pub async fn read(
        &self,
        shard: &ShardRecord,
        from: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadPage, DataError> {
        let request = ReadRequest {
            group: shard.group,
            from,
            max_records,
            max_bytes,
        };
        self.on_shard_leader(shard, request)
            .await
            .map(|(_, answer)| answer)
    }

    /// Where LATEST (no timestamp) or AT_TIMESTAMP starts in a shard, asked of its leader.
    pub async fn locate(
        &self,
        shard: &ShardRecord,
        at_timestamp_ms: Option<u64>,
    ) -> Result<Position, DataError> {
        let request = LocateRequest {
            group: shard.group,
            at_timestamp_ms,
        };
        self.on_shard_leader(shard, request)
            .await
            .map(|(_, answer)| answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shard_on;

    #[test]
    fn the_first_guess_is_the_cache_then_this_node_then_the_recorded_leader_then_the_first_replica()
    {
        let mut shard = shard_on(&[1, 2, 3]);
        shard.leader = Some(3);
        assert_eq!(leader_guess(Some(2), true, 1, &shard), 2, "the cache wins");
        assert_eq!(
            leader_guess(None, true, 1, &shard),
            1,
            "then a local leader"
        );
        assert_eq!(
            leader_guess(None, false, 1, &shard),
            3,
            "then the recorded leader"
        );
        shard.leader = None;
        assert_eq!(
            leader_guess(None, false, 2, &shard),
            1,
            "then the first replica"
        );
        shard.replicas.clear();
        assert_eq!(leader_guess(None, false, 2, &shard), 2, "else this node");
    }

    #[test]
    fn a_hint_naming_another_replica_is_followed_at_once() {
        let mut route = Route::new(vec![1, 2, 3], 1);
        assert_eq!(route.after_miss(Some(3), false), Step::FollowHint);
        assert_eq!(route.candidate(), 3);
        // Not a replica of the shard (a stale hint), or the node that answered: move on.
        assert_eq!(
            route.after_miss(Some(9), false),
            Step::Next { pause: false }
        );
        assert_eq!(
            route.candidate(),
            1,
            "after 3 comes 1 (placement order wraps)"
        );
        assert_eq!(
            route.after_miss(Some(1), false),
            Step::Next { pause: false }
        );
        assert_eq!(route.candidate(), 2);
    }

    #[test]
    fn an_unreachable_node_moves_the_call_to_the_next_replica_pausing_after_each_round() {
        let mut route = Route::new(vec![1, 2, 3], 2);
        let mut tried = vec![route.candidate()];
        let mut pauses = Vec::new();
        for _ in 0..6 {
            match route.after_miss(None, false) {
                Step::Next { pause } => pauses.push(pause),
                other => panic!("expected the next replica, got {other:?}"),
            }
            tried.push(route.candidate());
        }
        assert_eq!(tried, [2, 3, 1, 2, 3, 1, 2]);
        assert_eq!(
            pauses,
            [false, false, true, false, false, true],
            "a pause once every replica has said no"
        );
    }

    #[test]
    fn a_guess_outside_the_replicas_moves_to_the_second_replica() {
        // A cached leader that no longer hosts the shard counts as the first replica's place.
        let mut route = Route::new(vec![4, 5, 6], 9);
        assert_eq!(route.after_miss(None, false), Step::Next { pause: false });
        assert_eq!(route.candidate(), 5);
    }

    #[test]
    fn routing_gives_up_past_the_deadline() {
        let mut route = Route::new(vec![1, 2, 3], 1);
        assert_eq!(route.after_miss(None, false), Step::Next { pause: false });
        assert_eq!(route.after_miss(None, true), Step::GiveUp);
        assert_eq!(
            route.after_miss(Some(9), true),
            Step::GiveUp,
            "a hint outside the replicas changes nothing"
        );
    }
}
