//! openraft's network interface over one node-wide [`RaftClient`]: every group's Raft traffic
//! to a node goes through the same client (one channel per node pair), tagged with the group.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::OptionalSend;
use openraft::RaftNetworkFactory;
use openraft::base::BoxFuture;
use openraft::errors::NetworkError;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
use openraft::network::Backoff;
use openraft::network::RPCOption;
use openraft::network::v2::RaftNetworkV2;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use riffle_proto::peer as pb;
use riffle_storage::GroupId;

use super::types::ReplicaId;
use super::types::ReplicaNode;
use super::types::Snapshot;
use super::types::TypeConfig;
use super::types::Vote;
use super::wire;

pub type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

/// Why a call to another node produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// The node could not be reached (down, refused, partitioned): nothing was delivered.
    #[error("node {node} unreachable: {reason}")]
    Unreachable { node: u64, reason: String },
    /// The call was sent but no answer came back in time: it may or may not have run.
    #[error("call to node {node} failed: {reason}")]
    Failed { node: u64, reason: String },
}

/// Sends Raft messages of any group to another node (implemented by the gRPC transport and by
/// the in-process test network).
pub trait RaftClient: Send + Sync + 'static {
    fn append_entries(
        &self,
        node: u64,
        request: pb::AppendEntriesRequest,
    ) -> BoxFuture<'static, Result<pb::AppendEntriesResponse, PeerError>>;

    fn vote(
        &self,
        node: u64,
        request: pb::VoteRequest,
    ) -> BoxFuture<'static, Result<pb::VoteResponse, PeerError>>;

    fn transfer_leader(
        &self,
        node: u64,
        request: pb::TransferLeaderRequest,
    ) -> BoxFuture<'static, Result<pb::TransferLeaderResponse, PeerError>>;

    fn install_snapshot(
        &self,
        node: u64,
        meta: pb::SnapshotMeta,
        data: Vec<u8>,
    ) -> BoxFuture<'static, Result<pb::SnapshotResponse, PeerError>>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reason(String);

fn unreachable(reason: impl Into<String>) -> Unreachable<TypeConfig> {
    Unreachable::new(&Reason(reason.into()))
}

fn rpc_error(error: PeerError) -> RPCError<TypeConfig> {
    match error {
        PeerError::Unreachable { .. } => RPCError::Unreachable(unreachable(error.to_string())),
        PeerError::Failed { .. } => {
            RPCError::Network(NetworkError::new(&Reason(error.to_string())))
        }
    }
}

fn decode_error(error: std::io::Error) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&error))
}

/// The per-group network factory openraft asks for connections.
#[derive(Clone)]
pub struct Network {
    group: GroupId,
    client: Option<Arc<dyn RaftClient>>,
}

impl Network {
    pub fn new(group: GroupId, client: Option<Arc<dyn RaftClient>>) -> Self {
        Network { group, client }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: ReplicaId, node: &ReplicaNode) -> Connection {
        Connection {
            group: self.group,
            target,
            node: node.node,
            client: self.client.clone(),
        }
    }
}

/// A connection to one replica of the group (a view on the shared client).
pub struct Connection {
    group: GroupId,
    target: ReplicaId,
    /// The node hosting the target replica.
    node: u64,
    client: Option<Arc<dyn RaftClient>>,
}

impl Connection {
    fn client(&self) -> Result<&Arc<dyn RaftClient>, Unreachable<TypeConfig>> {
        self.client.as_ref().ok_or_else(|| {
            unreachable(format!(
                "no transport to replica {} of group {}: this node runs without peers",
                self.target, self.group
            ))
        })
    }

    async fn send_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        pre_vote: bool,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        let wire_request = wire::vote_request_to_pb(self.group, self.target, &request, pre_vote);
        let response = self
            .client()?
            .vote(self.node, wire_request)
            .await
            .map_err(rpc_error)?;
        match wire::vote_response_from_pb(response).map_err(decode_error)? {
            Ok(response) => Ok(response),
            Err(reason) => Err(RPCError::Unreachable(unreachable(reason))),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<TypeConfig>> {
        let wire_request =
            wire::append_request_to_pb(self.group, self.target, &request).map_err(decode_error)?;
        let response = self
            .client()?
            .append_entries(self.node, wire_request)
            .await
            .map_err(rpc_error)?;
        match wire::append_response_from_pb(response).map_err(decode_error)? {
            Ok(response) => Ok(response),
            Err(reason) => Err(RPCError::Unreachable(unreachable(reason))),
        }
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        self.send_vote(request, false).await
    }

    async fn pre_vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        self.send_vote(request, true).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let meta = wire::snapshot_meta_to_pb(self.group, self.target, &vote, &snapshot.meta)
            .map_err(|error| StreamingError::Unreachable(unreachable(error.to_string())))?;
        let client = self.client()?;
        let response = client
            .install_snapshot(self.node, meta, snapshot.snapshot)
            .await
            .map_err(|error| match error {
                PeerError::Unreachable { .. } => {
                    StreamingError::Unreachable(unreachable(error.to_string()))
                }
                PeerError::Failed { .. } => {
                    StreamingError::Network(NetworkError::new(&Reason(error.to_string())))
                }
            })?;
        match wire::snapshot_response_from_pb(response) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reason)) => Err(StreamingError::Unreachable(unreachable(reason))),
            Err(error) => Err(StreamingError::Network(NetworkError::new(&error))),
        }
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<TransferLeaderResponse<TypeConfig>> {
        let wire_request = wire::transfer_request_to_pb(self.group, self.target, &request);
        let response = self
            .client()?
            .transfer_leader(self.node, wire_request)
            .await
            .map_err(rpc_error)?;
        if !response.unavailable.is_empty() {
            return Err(RPCError::Unreachable(unreachable(response.unavailable)));
        }
        if !response.rejected.is_empty() {
            return Err(RPCError::Network(NetworkError::new(&Reason(
                response.rejected,
            ))));
        }
        Ok(Ok(()))
    }

    fn backoff(&self) -> Option<Backoff> {
        // An unreachable replica is retried at a steady, modest pace (its node may be down).
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(250))))
    }
}
