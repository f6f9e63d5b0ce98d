//! What this node serves other nodes besides shard calls: Raft messages for its groups, the
//! control calls forwarded to the metadata leader (propose, read index), pings and hibernation
//! requests. The transports call these with typed messages.

use bytes::Bytes;
use riffle_control::plane::CONTROL_GROUP;
use riffle_control::plane::Forwarded;
use riffle_raft::Group;
use riffle_raft::Machine;
use riffle_raft::message as raft;
use riffle_storage::GroupId;

use crate::node::Node;
use crate::peer::ControlAnswer;
use crate::peer::HibernateRequest;
use crate::peer::PingAnswer;

/// A Raft message for some local group.
enum RaftCall {
    AppendEntries(raft::AppendEntriesRequest),
    Vote(raft::VoteRequest),
    TransferLeader(raft::TransferLeaderRequest),
    Snapshot(raft::InstallSnapshotRequest),
}

/// The answer to a [`RaftCall`].
enum RaftAnswer {
    AppendEntries(raft::AppendEntriesResponse),
    Vote(raft::VoteResponse),
    TransferLeader(raft::TransferLeaderResponse),
    Snapshot(raft::SnapshotResponse),
}

impl RaftCall {
    async fn run<M: Machine>(self, group: Group<M>) -> RaftAnswer {
        match self {
            RaftCall::AppendEntries(request) => {
                RaftAnswer::AppendEntries(group.handle_append_entries(request).await)
            }
            RaftCall::Vote(request) => RaftAnswer::Vote(group.handle_vote(request).await),
            RaftCall::TransferLeader(request) => {
                RaftAnswer::TransferLeader(group.handle_transfer_leader(request).await)
            }
            RaftCall::Snapshot(request) => {
                RaftAnswer::Snapshot(group.handle_install_snapshot(request).await)
            }
        }
    }
}

/// Why a Raft message found no local group (the sender is answered unavailable, with this
/// as the reason).
#[derive(Debug, thiserror::Error)]
enum Undeliverable {
    #[error("the metadata group is not started on this node yet")]
    NotStarted,
    #[error("group {group} is not hosted on node {node}")]
    NotHosted { group: GroupId, node: u64 },
}

impl Node {
    /// Delivers a Raft message to a local group.
    async fn deliver(&self, group: GroupId, call: RaftCall) -> Result<RaftAnswer, Undeliverable> {
        if group == CONTROL_GROUP {
            return match self.control_if_started() {
                Some(control) => Ok(call.run(control.group().clone()).await),
                None => Err(Undeliverable::NotStarted),
            };
        }
        match self.local_shard(group) {
            Some(replica) => Ok(call.run(replica.group().clone()).await),
            None => Err(Undeliverable::NotHosted {
                group,
                node: self.id(),
            }),
        }
    }

    pub async fn serve_append_entries(
        &self,
        request: raft::AppendEntriesRequest,
    ) -> raft::AppendEntriesResponse {
        match self
            .deliver(request.group, RaftCall::AppendEntries(request))
            .await
        {
            Ok(RaftAnswer::AppendEntries(response)) => response,
            Ok(_) => raft::AppendEntriesResponse::Unavailable("mismatched answer".into()),
            Err(error) => raft::AppendEntriesResponse::Unavailable(error.to_string()),
        }
    }

    pub async fn serve_vote(&self, request: raft::VoteRequest) -> raft::VoteResponse {
        match self.deliver(request.group, RaftCall::Vote(request)).await {
            Ok(RaftAnswer::Vote(response)) => response,
            Ok(_) => raft::VoteResponse::Unavailable("mismatched answer".into()),
            Err(error) => raft::VoteResponse::Unavailable(error.to_string()),
        }
    }

    pub async fn serve_transfer_leader(
        &self,
        request: raft::TransferLeaderRequest,
    ) -> raft::TransferLeaderResponse {
        match self
            .deliver(request.group, RaftCall::TransferLeader(request))
            .await
        {
            Ok(RaftAnswer::TransferLeader(response)) => response,
            Ok(_) => raft::TransferLeaderResponse::Unavailable("mismatched answer".into()),
            Err(error) => raft::TransferLeaderResponse::Unavailable(error.to_string()),
        }
    }

    pub async fn serve_install_snapshot(
        &self,
        request: raft::InstallSnapshotRequest,
    ) -> raft::SnapshotResponse {
        match self
            .deliver(request.group, RaftCall::Snapshot(request))
            .await
        {
            Ok(RaftAnswer::Snapshot(response)) => response,
            Ok(_) => raft::SnapshotResponse::Unavailable("mismatched answer".into()),
            Err(error) => raft::SnapshotResponse::Unavailable(error.to_string()),
        }
    }

    /// Proposes an encoded control command for another node (this node must lead the metadata
    /// group): the encoded reply and the log index it was applied at.
    pub async fn serve_propose(&self, command: Bytes) -> ControlAnswer<(Bytes, u64)> {
        let Some(control) = self.control_if_started() else {
            return Ok(Forwarded::NotLeader(None));
        };
        if !control.is_leader() {
            return Ok(Forwarded::NotLeader(control.leader()));
        }
        control.propose_locally(command).await.map(Forwarded::Done)
    }

    /// This node's confirmed commit index as the metadata leader, for another node's read.
    pub async fn serve_read_index(&self) -> ControlAnswer<u64> {
        let Some(control) = self.control_if_started() else {
            return Ok(Forwarded::NotLeader(None));
        };
        if !control.is_leader() {
            return Ok(Forwarded::NotLeader(control.leader()));
        }
        control.read_index_locally().await.map(Forwarded::Done)
    }

    /// Answers a liveness ping with the groups this node leads (as last refreshed).
    pub fn serve_ping(&self, _from_node: u64) -> PingAnswer {
        PingAnswer {
            node_id: self.id(),
            leading: self.leading_report(),
        }
    }

    /// Puts a local follower replica to sleep if it follows the asking leader and has
    /// everything it has; returns whether it now hibernates.
    pub fn serve_hibernate(&self, request: HibernateRequest) -> bool {
        let Some(replica) = self.local_shard(request.group) else {
            return false;
        };
        if replica.group().replica() != request.target {
            return false;
        }
        replica.group().hibernate_follower(&request.leader_vote)
    }
}
