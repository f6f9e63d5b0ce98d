//! An in-process network for tests: several [`Node`]s in one process talk through it instead of
//! gRPC, and a test can drop, delay, partition and isolate their messages. Calls go through the
//! same [`PeerClient`] interface and reach the same serving code as gRPC calls do (typed messages, no protobuf).

use std::collections::HashMap;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;
use std::sync::Weak;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use rand::Rng;
use riffle_raft::message as raft;

use bytes::Bytes;
use riffle_shard::shard::ReadPage;
use riffle_types::seqnum::Position;

use crate::error::JoinError;
use crate::node::Node;
use crate::peer::ControlAnswer;
use crate::peer::HibernateRequest;
use crate::peer::JoinRequest;
use crate::peer::PeerClient;
use crate::peer::PeerError;
use crate::peer::PeerResult;
use crate::peer::PingAnswer;
use crate::peer::RaftClient;
use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::Served;
use crate::service::ShardService;

#[derive(Debug, Default)]
struct Faults {
    /// Directed links that carry nothing: `(from, to)`.
    blocked: HashSet<(u64, u64)>,
    /// Probability that a request is lost before it arrives.
    drop_request: f64,
    /// Probability that a reply is lost after the request ran.
    drop_reply: f64,
    /// Delay added to every message, uniformly in `[min, max]`.
    delay: Option<(Duration, Duration)>,
}

/// The network between simulated nodes.
#[derive(Default)]
pub struct SimNetwork {
    nodes: RwLock<HashMap<u64, Weak<Node>>>,
    faults: Mutex<Faults>,
}

impl SimNetwork {
    pub fn new() -> Arc<SimNetwork> {
        Arc::new(SimNetwork::default())
    }

    /// A client for node `from` to reach the others.
    pub fn client(self: &Arc<Self>, from: u64) -> Arc<SimClient> {
        Arc::new(SimClient {
            from,
            network: self.clone(),
        })
    }

    /// Makes `node` reachable (again) under its id; replaces an earlier incarnation.
    pub fn register(&self, node: &Arc<Node>) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.insert(node.id(), Arc::downgrade(node));
        }
    }

    /// Forgets a node (as if its process died).
    pub fn unregister(&self, node: u64) {
        if let Ok(mut nodes) = self.nodes.write() {
            nodes.remove(&node);
        }
    }

    fn with_faults(&self, change: impl FnOnce(&mut Faults)) {
        if let Ok(mut faults) = self.faults.lock() {
            change(&mut faults);
        }
    }

    /// Cuts every link between the two sides (both directions).
    pub fn partition(&self, side_a: &[u64], side_b: &[u64]) {
        self.with_faults(|faults| {
            for a in side_a {
                for b in side_b {
                    faults.blocked.insert((*a, *b));
                    faults.blocked.insert((*b, *a));
                }
            }
        });
    }

    /// Cuts `node` off from `others`.
    pub fn isolate(&self, node: u64, others: &[u64]) {
        self.partition(&[node], others);
    }

    /// Restores every link and removes every fault.
    pub fn heal(&self) {
        self.with_faults(|faults| *faults = Faults::default());
    }

    /// Loses requests with probability `requests` and replies with probability `replies`.
    pub fn set_loss(&self, requests: f64, replies: f64) {
        self.with_faults(|faults| {
            faults.drop_request = requests;
            faults.drop_reply = replies;
        });
    }

    /// Delays every message by a uniform random time in `[min, max]`.
    pub fn set_delay(&self, min: Duration, max: Duration) {
        self.with_faults(|faults| faults.delay = Some((min, max)));
    }

    /// Decides a message's fate: `Err` when it cannot be delivered, else its delay and whether
    /// its reply will be lost.
    fn route(&self, from: u64, to: u64) -> Result<(Arc<Node>, Duration, bool), PeerError> {
        let unreachable = |reason: &str| PeerError::Unreachable {
            node: to,
            reason: reason.to_string(),
        };
        let (delay, lose_request, lose_reply) = {
            let faults = self
                .faults
                .lock()
                .map_err(|_| unreachable("network lock poisoned"))?;
            if faults.blocked.contains(&(from, to)) {
                return Err(unreachable("link cut"));
            }
            let mut rng = rand::rng();
            let delay = match faults.delay {
                Some((min, max)) if max > min => rng.random_range(min..=max),
                Some((min, _)) => min,
                None => Duration::ZERO,
            };
            (
                delay,
                rng.random_bool(faults.drop_request.clamp(0.0, 1.0)),
                rng.random_bool(faults.drop_reply.clamp(0.0, 1.0)),
            )
        };
        if lose_request {
            return Err(unreachable("request lost"));
        }
        let node = self
            .nodes
            .read()
            .ok()
            .and_then(|nodes| nodes.get(&to).and_then(Weak::upgrade))
            .ok_or_else(|| unreachable("node not running"))?;
        Ok((node, delay, lose_reply))
    }
}

/// One node's view of the simulated network.
pub struct SimClient {
    from: u64,
    network: Arc<SimNetwork>,
}

impl SimClient {
    /// Delivers a call to node `to`, applying the network's faults.
    fn call<T, F, Fut>(&self, to: u64, serve: F) -> BoxFuture<'static, Result<T, PeerError>>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Node>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let routed = self.network.route(self.from, to);
        let network = self.network.clone();
        let from = self.from;
        async move {
            let (node, delay, lose_reply) = routed?;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let answer = serve(node).await;
            // The link may have been cut while the call ran: the reply does not come back.
            let cut = network
                .faults
                .lock()
                .map(|faults| faults.blocked.contains(&(to, from)))
                .unwrap_or(true);
            if lose_reply || cut {
                return Err(PeerError::Failed {
                    node: to,
                    reason: "reply lost".into(),
                });
            }
            Ok(answer)
        }
        .boxed()
    }
}

impl RaftClient for SimClient {
    fn append_entries(
        &self,
        node: u64,
        request: raft::AppendEntriesRequest,
    ) -> BoxFuture<'static, Result<raft::AppendEntriesResponse, PeerError>> {
        self.call(node, move |target| async move {
            target.serve_append_entries(request).await
        })
    }

    fn vote(
        &self,
        node: u64,
        request: raft::VoteRequest,
    ) -> BoxFuture<'static, Result<raft::VoteResponse, PeerError>> {
        self.call(node, move |target| async move {
            target.serve_vote(request).await
        })
    }

    fn transfer_leader(
        &self,
        node: u64,
        request: raft::TransferLeaderRequest,
    ) -> BoxFuture<'static, Result<raft::TransferLeaderResponse, PeerError>> {
        self.call(node, move |target| async move {
            target.serve_transfer_leader(request).await
        })
    }

    fn install_snapshot(
        &self,
        node: u64,
        request: raft::InstallSnapshotRequest,
    ) -> BoxFuture<'static, Result<raft::SnapshotResponse, PeerError>> {
        self.call(node, move |target| async move {
            target.serve_install_snapshot(request).await
        })
    }
}

impl PeerClient for SimClient {
    fn append(&self, node: u64, request: AppendRequest) -> PeerResult<Served<u64>> {
        self.call(node, move |target| async move {
            target.shards().append(request).await
        })
    }

    fn seal(&self, node: u64, request: SealRequest) -> PeerResult<Served<u64>> {
        self.call(node, move |target| async move {
            target.shards().seal(request).await
        })
    }

    fn read(&self, node: u64, request: ReadRequest) -> PeerResult<Served<ReadPage>> {
        self.call(node, move |target| async move {
            target.shards().read(request).await
        })
    }

    fn locate(&self, node: u64, request: LocateRequest) -> PeerResult<Served<Position>> {
        self.call(node, move |target| async move {
            target.shards().locate(request).await
        })
    }

    fn follow(&self, node: u64, request: FollowRequest) -> PeerResult<Served<Following>> {
        let opened = self.call(node, move |target| async move {
            target.shards().follow(request).await
        });
        let network = self.network.clone();
        let (from, to) = (self.from, node);
        async move {
            let following = match opened.await? {
                Ok(following) => following,
                Err(refusal) => return Ok(Err(refusal)),
            };
            // Each page crosses the network too: a cut link or a stopped node ends the stream,
            // as a broken connection would.
            let pages = following
                .pages
                .take_while(move |_| futures_util::future::ready(network.route(to, from).is_ok()))
                .boxed();
            Ok(Ok(Following {
                tip: following.tip,
                pages,
            }))
        }
        .boxed()
    }

    fn propose(&self, node: u64, command: Bytes) -> PeerResult<ControlAnswer<(Bytes, u64)>> {
        self.call(node, move |target| async move {
            target.serve_propose(command).await
        })
    }

    fn read_index(&self, node: u64) -> PeerResult<ControlAnswer<u64>> {
        self.call(node, move |target| async move {
            target.serve_read_index().await
        })
    }

    fn ping(&self, node: u64, from_node: u64) -> PeerResult<PingAnswer> {
        self.call(
            node,
            move |target| async move { target.serve_ping(from_node) },
        )
    }

    fn hibernate(&self, node: u64, request: HibernateRequest) -> PeerResult<bool> {
        self.call(node, move |target| async move {
            target.serve_hibernate(request)
        })
    }

    fn join(&self, node: u64, request: JoinRequest) -> PeerResult<Result<(), JoinError>> {
        self.call(node, move |target| async move {
            target.serve_join(request).await
        })
    }
}
