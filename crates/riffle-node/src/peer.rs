//! Node-to-node calls. [`PeerClient`] is everything one node asks of another: the Raft traffic
//! of every group (multiplexed by group id), the shard calls routed to a leader
//! ([`crate::service`]), the control calls forwarded to the metadata leader, liveness pings,
//! hibernation and joining — all typed. Two implementations: gRPC over one channel per node pair
//! ([`crate::transport::grpc`], the only place protobuf appears) and an in-process network with
//! fault injection for tests ([`crate::transport::sim`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use riffle_control::ControlError;
use riffle_control::plane::ControlForwarder;
use riffle_control::plane::Forwarded;
pub use riffle_raft::PeerError;
pub use riffle_raft::RaftClient;
use riffle_raft::message::Vote;
use riffle_shard::shard::ReadPage;
use riffle_storage::GroupId;
use riffle_types::seqnum::Position;

use crate::error::JoinError;
use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::Served;

/// A call to another node: its answer, or why none came ([`PeerError`]).
pub type PeerResult<T> = BoxFuture<'static, Result<T, PeerError>>;

/// A group a node leads, as its pings report it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LeaderOf {
    pub group: GroupId,
    /// The leading replica.
    pub replica: u64,
    /// The group's write rate while this replica led (smoothed), for the scheduler.
    pub write_bytes_per_sec: u64,
    pub write_records_per_sec: u64,
}

/// A node's answer to a ping.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PingAnswer {
    pub node_id: u64,
    /// The groups whose local replica leads.
    pub leading: Vec<LeaderOf>,
}

/// Asks a follower replica to stop ticking (its group is quiet and fully replicated).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HibernateRequest {
    pub group: GroupId,
    pub target: u64,
    /// The leader's vote: a follower only sleeps for the leader it follows.
    pub leader_vote: Vote,
}

/// A new node asks to join: it is registered and becomes a learner of the metadata group.
#[derive(Clone, Debug, PartialEq)]
pub struct JoinRequest {
    pub node_id: u64,
    pub peer_addr: String,
    pub api_addr: String,
    pub az: String,
}

/// Calls to other nodes.
pub trait PeerClient: RaftClient {
    fn append(&self, node: u64, request: AppendRequest) -> PeerResult<Served<u64>>;
    fn seal(&self, node: u64, request: SealRequest) -> PeerResult<Served<u64>>;
    fn read(&self, node: u64, request: ReadRequest) -> PeerResult<Served<ReadPage>>;
    fn locate(&self, node: u64, request: LocateRequest) -> PeerResult<Served<Position>>;
    /// Opens a Follow stream (a shard's records pushed by its leader); answers once the leader
    /// accepted or refused the subscription.
    fn follow(&self, node: u64, request: FollowRequest) -> PeerResult<Served<Following>>;
    /// Proposes an encoded control command on `node` (the metadata leader): the encoded reply
    /// and the log index it was applied at.
    fn propose(&self, node: u64, command: Bytes) -> PeerResult<ControlAnswer<(Bytes, u64)>>;
    /// The commit index `node` (the metadata leader) confirmed, for a linearizable read.
    fn read_index(&self, node: u64) -> PeerResult<ControlAnswer<u64>>;
    fn ping(&self, node: u64, from_node: u64) -> PeerResult<PingAnswer>;
    /// Whether the follower now hibernates.
    fn hibernate(&self, node: u64, request: HibernateRequest) -> PeerResult<bool>;
    fn join(&self, node: u64, request: JoinRequest) -> PeerResult<Result<(), JoinError>>;

    /// Learns where nodes are (from the control state). Transports that address nodes by
    /// network address keep this; others ignore it.
    fn learn_addresses(&self, _nodes: &[(u64, String)]) {}

    /// Where `node` is reached, for transports that address nodes by network address.
    fn address_of(&self, _node: u64) -> Option<String> {
        None
    }
}

/// A control call's answer from the node asked: done, not the metadata leader (with a hint),
/// or the leader's error.
pub type ControlAnswer<T> = Result<Forwarded<T>, ControlError>;

/// Forwards control calls to the metadata leader through a [`PeerClient`].
pub struct PeerForwarder(pub Arc<dyn PeerClient>);

impl ControlForwarder for PeerForwarder {
    fn propose(
        &self,
        node: u64,
        command: Bytes,
    ) -> BoxFuture<'static, ControlAnswer<(Bytes, u64)>> {
        let call = self.0.propose(node, command);
        async move {
            call.await.map_err(|error| match error {
                // Nothing was delivered: the caller may try elsewhere.
                PeerError::Unreachable { .. } => ControlError::Forward(error),
                // It may have run: the outcome is unknown.
                PeerError::Failed { .. } => ControlError::ForwardOutcomeUnknown(error),
            })?
        }
        .boxed()
    }

    fn read_index(&self, node: u64) -> BoxFuture<'static, ControlAnswer<u64>> {
        let call = self.0.read_index(node);
        // A read index has no side effect, so any transport failure is retryable.
        async move { call.await.map_err(ControlError::Forward)? }.boxed()
    }
}
