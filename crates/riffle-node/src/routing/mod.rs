//! Shard calls, end to end on a node: every data operation runs on its shard's leader, wherever
//! it is; this module takes it there and, when the leader is here, serves it.
//!
//! One loop ([`Node::on_shard_leader`]) finds the leader for any call: it tries its best guess
//! (the last node that answered as leader, else this node if its replica leads, else the leader
//! recorded in the control state, else the preferred replica), follows not-leader hints, moves
//! to the next replica when a node is unreachable or liveness calls it down, and gives up after
//! [`ROUTE_DEADLINE`] (an election takes a few seconds). Where the next attempt goes is decided
//! by [`route::Route`], a pure state machine. One adapter ([`Node::call_on`]) runs a
//! [`ShardCall`] on one node: the local [`LocalShards`] when it is this node — no protobuf,
//! nothing copied — else the peer transport, whose server on the leader's node calls the same
//! [`LocalShards`].
//!
//! An append that was sent but not answered is not retried elsewhere (it may have been
//! written): the client gets an error and retries, as it would against AWS.

mod route;

use std::collections::HashMap;
use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use riffle_control::model::ShardRecord;
use riffle_raft::ProposeError;
use riffle_shard::batch;
use riffle_shard::batch::AppendRecord;
use riffle_shard::shard::ReadPage;
use riffle_shard::shard::ShardReplica;
use riffle_storage::GroupId;
use riffle_types::seqnum::Position;
use tokio::sync::watch;

use crate::error::DataError;
use crate::error::NoAnswer;
use crate::node::Node;
use crate::node::now_ms;
use crate::peer::PeerClient;
use crate::peer::PeerError;
use crate::peer::PeerResult;
use crate::serve::follow;
use crate::serve::leader_node;
use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::ServeError;
use crate::service::Served;
use crate::service::ShardError;
use crate::service::ShardService;
use route::Route;
use route::Step;
pub(crate) use route::leader_guess;

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

/// The shard replicas running on this node, and the shard service over them.
pub struct LocalShards {
    replicas: RwLock<HashMap<GroupId, ShardReplica>>,
    /// SubscribeToShard subscriptions following shards this node leads.
    subscriptions: follow::Subscriptions,
    /// Set when the node stops (Follow streams end).
    stop: watch::Receiver<bool>,
}

impl LocalShards {
    pub fn new(stop: watch::Receiver<bool>) -> LocalShards {
        LocalShards {
            replicas: RwLock::new(HashMap::new()),
            subscriptions: follow::Subscriptions::default(),
            stop,
        }
    }

    /// The local replica of a shard group, if this node hosts one and it is running.
    pub fn get(&self, group: GroupId) -> Option<ShardReplica> {
        self.replicas.read().ok()?.get(&group).cloned()
    }

    pub(crate) fn insert(&self, group: GroupId, replica: ShardReplica) {
        if let Ok(mut replicas) = self.replicas.write() {
            replicas.insert(group, replica);
        }
    }

    pub(crate) fn remove(&self, group: GroupId) -> Option<ShardReplica> {
        self.replicas.write().ok()?.remove(&group)
    }

    /// Takes every replica out (the node stops).
    pub(crate) fn drain(&self) -> Vec<ShardReplica> {
        match self.replicas.write() {
            Ok(mut replicas) => replicas.drain().map(|(_, replica)| replica).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The groups hosted here.
    pub(crate) fn groups(&self) -> Vec<GroupId> {
        match self.replicas.read() {
            Ok(replicas) => replicas.keys().copied().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Runs `visit` on every replica (under the read lock: keep it short, no awaiting).
    pub(crate) fn for_each(&self, mut visit: impl FnMut(&ShardReplica)) {
        if let Ok(replicas) = self.replicas.read() {
            replicas.values().for_each(&mut visit);
        }
    }

    /// A local replica that leads its group, or the not-leader answer to give.
    pub(crate) fn leading_replica(&self, group: GroupId) -> Served<ShardReplica> {
        let Some(replica) = self.get(group) else {
            return Err(ServeError::NotLeader(None));
        };
        if !replica.group().is_leader() {
            // A follower asked to serve may be asleep while its leader is gone: wake it so that
            // its election timer runs.
            replica.group().wake();
            return Err(ServeError::NotLeader(leader_node(replica.group())));
        }
        Ok(replica)
    }

    async fn append_or_seal(&self, group: GroupId, append: Append) -> Served<u64> {
        let replica = self.leading_replica(group)?;
        let outcome = match append {
            Append::Records(request) => replica.append(request.batch, request.arrival_ms).await,
            Append::Seal(request) => replica.seal(request.now_ms).await,
        };
        outcome.map_err(ServeError::from)
    }

    /// The leading replica of `group`, once a lease check confirmed it still leads; a deposed
    /// leader that has not noticed answers with the leader it learned of.
    async fn confirmed_leader(&self, group: GroupId) -> Served<ShardReplica> {
        let replica = self.leading_replica(group)?;
        if let Err(error) = replica.group().lease_read_barrier().await {
            return Err(ServeError::NotLeader(match error {
                ProposeError::NotLeader { leader } => leader.map(|(_, node)| node.node),
                _ => None,
            }));
        }
        Ok(replica)
    }
}

enum Append {
    Records(AppendRequest),
    Seal(SealRequest),
}

impl ShardService for LocalShards {
    async fn append(&self, request: AppendRequest) -> Served<u64> {
        self.append_or_seal(request.group, Append::Records(request))
            .await
    }

    async fn seal(&self, request: SealRequest) -> Served<u64> {
        self.append_or_seal(request.group, Append::Seal(request))
            .await
    }

    async fn read(&self, request: ReadRequest) -> Served<ReadPage> {
        let replica = self.confirmed_leader(request.group).await?;
        // Reads of old data come from disk: keep them off the async threads.
        let read = tokio::task::spawn_blocking(move || {
            replica.read(request.from, request.max_records, request.max_bytes)
        })
        .await;
        match read {
            Ok(Ok(page)) => Ok(page),
            Ok(Err(error)) => Err(ShardError::Read(error).into()),
            Err(error) => Err(ShardError::ReadTask(error).into()),
        }
    }

    async fn locate(&self, request: LocateRequest) -> Served<Position> {
        let replica = self.leading_replica(request.group)?;
        if replica.group().lease_read_barrier().await.is_err() {
            return Err(ServeError::NotLeader(None));
        }
        let position = match request.at_timestamp_ms {
            None => Ok(replica.latest()),
            Some(timestamp) => replica.position_at_time(timestamp),
        };
        position.map_err(|error| ShardError::Locate(error).into())
    }

    async fn follow(&self, request: FollowRequest) -> Served<Following> {
        // Confirmed leader (a deposed one that has not noticed would wait in vain).
        let replica = self.confirmed_leader(request.group).await?;
        follow::serve(replica, &self.subscriptions, self.stop.clone(), request)
    }
}
