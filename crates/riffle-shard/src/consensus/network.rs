//! openraft's network interface, routed through one node-wide [`PeerTransport`] that carries
//! every group's Raft traffic to other nodes (multiplexed by group id).

use std::future::Future;
use std::sync::Arc;

use openraft::OptionalSend;
use openraft::RaftNetworkFactory;
use openraft::base::BoxFuture;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
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

use super::types::ReplicaId;
use super::types::ReplicaNode;
use super::types::Snapshot;
use super::types::TypeConfig;
use super::types::Vote;

pub type RpcResult<T> = Result<T, RPCError<TypeConfig>>;

/// Carries Raft RPCs of any group to the node hosting the target replica.
pub trait PeerTransport: Send + Sync + 'static {
    fn append_entries(
        &self,
        group: GroupId,
        target: ReplicaId,
        node: ReplicaNode,
        request: AppendEntriesRequest<TypeConfig>,
    ) -> BoxFuture<'static, RpcResult<AppendEntriesResponse<TypeConfig>>>;

    fn vote(
        &self,
        group: GroupId,
        target: ReplicaId,
        node: ReplicaNode,
        request: VoteRequest<TypeConfig>,
    ) -> BoxFuture<'static, RpcResult<VoteResponse<TypeConfig>>>;

    fn full_snapshot(
        &self,
        group: GroupId,
        target: ReplicaId,
        node: ReplicaNode,
        vote: Vote,
        snapshot: Snapshot,
    ) -> BoxFuture<'static, Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>>>;

    fn transfer_leader(
        &self,
        group: GroupId,
        target: ReplicaId,
        node: ReplicaNode,
        request: TransferLeaderRequest<TypeConfig>,
    ) -> BoxFuture<'static, RpcResult<TransferLeaderResponse<TypeConfig>>>;
}

#[derive(Debug, thiserror::Error)]
#[error("no transport to replica {target} of group {group}: this node runs without peers")]
struct NoTransport {
    group: GroupId,
    target: ReplicaId,
}

/// The per-group network factory openraft asks for connections.
#[derive(Clone)]
pub struct Network {
    group: GroupId,
    transport: Option<Arc<dyn PeerTransport>>,
}

impl Network {
    pub fn new(group: GroupId, transport: Option<Arc<dyn PeerTransport>>) -> Self {
        Network { group, transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: ReplicaId, node: &ReplicaNode) -> Connection {
        Connection {
            group: self.group,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// A connection to one replica of the group (a view on the shared transport).
pub struct Connection {
    group: GroupId,
    target: ReplicaId,
    node: ReplicaNode,
    transport: Option<Arc<dyn PeerTransport>>,
}

impl Connection {
    fn transport(&self) -> Result<&Arc<dyn PeerTransport>, Unreachable<TypeConfig>> {
        self.transport.as_ref().ok_or_else(|| {
            Unreachable::new(&NoTransport {
                group: self.group,
                target: self.target,
            })
        })
    }
}

impl RaftNetworkV2<TypeConfig> for Connection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        request: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<TypeConfig>> {
        let transport = self.transport()?;
        transport
            .append_entries(self.group, self.target, self.node.clone(), request)
            .await
    }

    async fn vote(
        &mut self,
        request: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<TypeConfig>> {
        let transport = self.transport()?;
        transport
            .vote(self.group, self.target, self.node.clone(), request)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let transport = self.transport()?;
        transport
            .full_snapshot(self.group, self.target, self.node.clone(), vote, snapshot)
            .await
    }

    async fn transfer_leader(
        &mut self,
        request: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<TransferLeaderResponse<TypeConfig>> {
        let transport = self.transport()?;
        transport
            .transfer_leader(self.group, self.target, self.node.clone(), request)
            .await
    }
}
