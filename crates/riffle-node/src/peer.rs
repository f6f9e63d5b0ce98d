//! Node-to-node calls. [`PeerClient`] is everything one node asks of another: the Raft traffic
//! of every group (multiplexed by group id) plus the calls forwarded to a leader. Two
//! implementations: gRPC over one channel per node pair ([`crate::transport::grpc`]) and an in-process
//! network with fault injection for tests ([`crate::transport::sim`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use riffle_control::plane::ControlForwarder;
use riffle_control::plane::Forwarded;
use riffle_proto::peer as pb;
pub use riffle_raft::PeerError;
pub use riffle_raft::RaftClient;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;

pub use crate::follow::FollowStream;

pub type PeerResult<T> = BoxFuture<'static, Result<T, PeerError>>;

/// Calls to other nodes.
pub trait PeerClient: RaftClient {
    fn append(&self, node: u64, request: pb::AppendRequest) -> PeerResult<pb::AppendResponse>;
    fn read(&self, node: u64, request: pb::ReadRequest) -> PeerResult<pb::ReadResponse>;
    fn locate(&self, node: u64, request: pb::LocateRequest) -> PeerResult<pb::LocateResponse>;
    /// Opens a Follow stream (a shard's records pushed by its leader).
    fn follow(&self, node: u64, request: pb::FollowRequest) -> PeerResult<FollowStream>;
    fn propose(&self, node: u64, request: pb::ProposeRequest) -> PeerResult<pb::ProposeResponse>;
    fn read_index(&self, node: u64) -> PeerResult<pb::ReadIndexResponse>;
    fn ping(&self, node: u64, request: pb::PingRequest) -> PeerResult<pb::PingResponse>;
    fn hibernate(
        &self,
        node: u64,
        request: pb::HibernateRequest,
    ) -> PeerResult<pb::HibernateResponse>;
    fn join(&self, node: u64, request: pb::JoinRequest) -> PeerResult<pb::JoinResponse>;

    /// Learns where nodes are (from the control state). Transports that address nodes by
    /// network address keep this; others ignore it.
    fn learn_addresses(&self, _nodes: &[(u64, String)]) {}

    /// Where `node` is reached, for transports that address nodes by network address.
    fn address_of(&self, _node: u64) -> Option<String> {
        None
    }
}

/// A Kinesis error received from another node.
pub fn kinesis_error_from_pb(error: pb::KinesisError) -> KinesisError {
    let code =
        ErrorCode::from_type_name(&error.code).unwrap_or(ErrorCode::InternalFailureException);
    KinesisError::new(code, error.message)
}

/// A Kinesis error to send to another node.
pub fn kinesis_error_to_pb(error: &KinesisError) -> pb::KinesisError {
    pb::KinesisError {
        code: error.code.type_name().to_string(),
        message: error.message.clone(),
    }
}

fn not_leader_hint(not_leader: &pb::NotLeader) -> Option<u64> {
    (not_leader.leader_node != 0).then_some(not_leader.leader_node)
}

fn transport_error(error: PeerError) -> KinesisError {
    match error {
        // Nothing was delivered: the caller may try elsewhere.
        PeerError::Unreachable { .. } => KinesisError::unavailable(error.to_string()),
        // It may have run: the outcome is unknown.
        PeerError::Failed { .. } => KinesisError::internal(format!("outcome unknown: {error}")),
    }
}

/// Forwards control calls to the metadata leader through a [`PeerClient`].
pub struct PeerForwarder(pub Arc<dyn PeerClient>);

impl ControlForwarder for PeerForwarder {
    fn propose(
        &self,
        node: u64,
        command: Bytes,
    ) -> BoxFuture<'static, Result<Forwarded<(Bytes, u64)>, KinesisError>> {
        let call = self.0.propose(node, pb::ProposeRequest { command });
        async move {
            let response = call.await.map_err(transport_error)?;
            if let Some(not_leader) = response.not_leader {
                return Ok(Forwarded::NotLeader(not_leader_hint(&not_leader)));
            }
            if let Some(error) = response.error {
                return Err(kinesis_error_from_pb(error));
            }
            Ok(Forwarded::Done((response.reply, response.index)))
        }
        .boxed()
    }

    fn read_index(&self, node: u64) -> BoxFuture<'static, Result<Forwarded<u64>, KinesisError>> {
        let call = self.0.read_index(node);
        async move {
            let response = call.await.map_err(|error| match error {
                // A read index has no side effect, so any transport failure is retryable.
                PeerError::Unreachable { .. } | PeerError::Failed { .. } => {
                    KinesisError::unavailable(error.to_string())
                }
            })?;
            if let Some(not_leader) = response.not_leader {
                return Ok(Forwarded::NotLeader(not_leader_hint(&not_leader)));
            }
            if let Some(error) = response.error {
                return Err(kinesis_error_from_pb(error));
            }
            Ok(Forwarded::Done(response.index))
        }
        .boxed()
    }
}
