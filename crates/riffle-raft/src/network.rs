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
use riffle_storage::GroupId;

use crate::convert;
use crate::message;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;
use crate::types::Snapshot;
use crate::types::TypeConfig;
use crate::types::Vote;

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

/// Sends Raft messages of any group to another node (implemented by the node's transports: gRPC,
/// and the in-process test network).
pub trait RaftClient: Send + Sync + 'static {
    fn append_entries(
        &self,
        node: u64,
        request: message::AppendEntriesRequest,
    ) -> BoxFuture<'static, Result<message::AppendEntriesResponse, PeerError>>;

    fn vote(
        &self,
        node: u64,
        request: message::VoteRequest,
    ) -> BoxFuture<'static, Result<message::VoteResponse, PeerError>>;

    fn transfer_leader(
        &self,
        node: u64,
        request: message::TransferLeaderRequest,
    ) -> BoxFuture<'static, Result<message::TransferLeaderResponse, PeerError>>;

    fn install_snapshot(
        &self,
        node: u64,
        request: message::InstallSnapshotRequest,
    ) -> BoxFuture<'static, Result<message::SnapshotResponse, PeerError>>;
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
        let message = convert::vote_request_out(self.group, self.target, &request, pre_vote);
        let response = self
            .client()?
            .vote(self.node, message)
            .await
            .map_err(rpc_error)?;
        convert::vote_response_in(response)
            .map_err(|reason| RPCError::Unreachable(unreachable(reason)))
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<TypeConfig>> {
        let message =
            convert::append_request_out(self.group, self.target, &request).map_err(decode_error)?;
        let response = self
            .client()?
            .append_entries(self.node, message)
            .await
            .map_err(rpc_error)?;
        convert::append_response_in(response)
            .map_err(|reason| RPCError::Unreachable(unreachable(reason)))
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
        let message = convert::snapshot_request_out(
            self.group,
            self.target,
            &vote,
            &snapshot.meta,
            snapshot.snapshot,
        )
        .map_err(|error| StreamingError::Unreachable(unreachable(error.to_string())))?;
        let client = self.client()?;
        let response = client
            .install_snapshot(self.node, message)
            .await
            .map_err(|error| match error {
                PeerError::Unreachable { .. } => {
                    StreamingError::Unreachable(unreachable(error.to_string()))
                }
                PeerError::Failed { .. } => {
                    StreamingError::Network(NetworkError::new(&Reason(error.to_string())))
                }
            })?;
        convert::snapshot_response_in(response)
            .map_err(|reason| StreamingError::Unreachable(unreachable(reason)))
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<TransferLeaderResponse<TypeConfig>> {
        let message = convert::transfer_request_out(self.group, self.target, &request);
        let response = self
            .client()?
            .transfer_leader(self.node, message)
            .await
            .map_err(rpc_error)?;
        match response {
            message::TransferLeaderResponse::Accepted => Ok(Ok(())),
            message::TransferLeaderResponse::Unavailable(reason) => {
                Err(RPCError::Unreachable(unreachable(reason)))
            }
            message::TransferLeaderResponse::Rejected(reason) => {
                Err(RPCError::Network(NetworkError::new(&Reason(reason))))
            }
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        // An unreachable replica is retried at a steady, modest pace (its node may be down).
        Some(Backoff::new(std::iter::repeat(Duration::from_millis(250))))
    }
}
