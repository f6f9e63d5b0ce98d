//! Membership: how a node starts and gets into the cluster. The metadata replica starts first
//! (bootstrapped from the configured voters when the storage is new, or joining through any
//! member with `--join`: the metadata leader registers the new node and adds it as a learner),
//! then the node makes sure the cluster is initialized and itself registered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use riffle_control::ControlCommand;
use riffle_control::ControlPlane;
use riffle_control::ControlState;
use riffle_control::model::NodeRecord;
use riffle_control::plane::CONTROL_GROUP;
use riffle_control::plane::ControlMachine;
use riffle_raft::Group;
use riffle_raft::GroupOptions;
use riffle_raft::ReplicaNode;
use riffle_storage::StorageError;
use riffle_types::CodedError;
use riffle_types::ErrorCode;
use riffle_types::TokenKey;

use crate::error::JoinError;
use crate::error::NodeError;
use crate::node::Node;
use crate::node::now_ms;
use crate::peer::JoinRequest;
use crate::peer::PeerForwarder;

impl Node {
    /// Starts the metadata replica (reachable by peers at once) and waits until the group has a
    /// leader and this node has applied everything committed before now.
    pub(crate) async fn start_control(&self) -> Result<(), NodeError> {
        let is_new = !self.storage.groups().contains(&CONTROL_GROUP);
        if is_new {
            let storage = self.storage.clone();
            tokio::task::spawn_blocking(move || storage.create_group(CONTROL_GROUP))
                .await
                .map_err(|error| StorageError::Io(std::io::Error::other(error)))??;
        }
        let (machine, watch) = ControlMachine::new();
        let group = Group::start(
            self.storage.clone(),
            CONTROL_GROUP,
            self.config.node_id,
            machine,
            &GroupOptions::control(),
            self.raft_client(),
        )
        .await?;
        // Every voter bootstraps with the same membership, which is safe; on restart it is a
        // no-op. Replica ids of the metadata group are node ids.
        let mut voters: BTreeMap<u64, ReplicaNode> = self
            .config
            .peers
            .iter()
            .map(|(id, addr)| {
                (
                    *id,
                    ReplicaNode {
                        node: *id,
                        addr: addr.clone(),
                        az: String::new(),
                    },
                )
            })
            .collect();
        voters.insert(
            self.config.node_id,
            ReplicaNode {
                node: self.config.node_id,
                addr: self.config.peer_addr.clone(),
                az: self.config.az.clone(),
            },
        );
        if self.config.join_via.is_none() {
            group.bootstrap(voters).await?;
            group.campaign_if_sole_voter().await?;
        }
        let forwarder = self
            .peers
            .clone()
            .map(|peers| Arc::new(PeerForwarder(peers)) as Arc<_>);
        if self
            .control
            .set(ControlPlane::new(group, watch, forwarder))
            .is_err()
        {
            return Ok(());
        }
        let plane = self.control();
        if is_new && let Some(via) = self.config.join_via {
            self.ask_to_join(via).await?;
        }
        // Wait as long as it takes: peers may start later.
        let mut waited = 0u32;
        loop {
            if self.is_stopping() {
                return Err(NodeError::Stopping);
            }
            // A joining node learns where the others are from the log it receives.
            self.learn_addresses(&plane.state());
            match plane.sync().await {
                Ok(()) => break,
                Err(error) => {
                    waited += 1;
                    if waited.is_multiple_of(3) {
                        tracing::info!(%error, "waiting for the metadata group to elect a leader");
                    }
                }
            }
        }
        Ok(())
    }

    /// Tells the transport where every registered node is.
    pub(crate) fn learn_addresses(&self, state: &ControlState) {
        if let Some(peers) = &self.peers {
            let addresses: Vec<(u64, String)> = state
                .nodes
                .values()
                .map(|node| (node.id, node.peer_addr.clone()))
                .collect();
            peers.learn_addresses(&addresses);
        }
    }

    /// Asks node `via` (any member) to add this node to the cluster, until it says yes.
    async fn ask_to_join(&self, via: u64) -> Result<(), NodeError> {
        let Some(peers) = &self.peers else {
            return Err(NodeError::NoPeerTransport);
        };
        let request = JoinRequest {
            node_id: self.config.node_id,
            peer_addr: self.config.peer_addr.clone(),
            api_addr: self.config.api_addr.clone(),
            az: self.config.az.clone(),
        };
        let mut attempts = 0u32;
        loop {
            if self.is_stopping() {
                return Err(NodeError::Stopping);
            }
            match peers.join(via, request.clone()).await {
                Ok(Ok(())) => {
                    tracing::info!(via, "joined the cluster as a metadata learner");
                    return Ok(());
                }
                Ok(Err(error)) => {
                    if error.code() != ErrorCode::ServiceUnavailable {
                        return Err(NodeError::Join(error));
                    }
                    attempts += 1;
                    if attempts % 10 == 1 {
                        tracing::info!(via, %error, "waiting to join the cluster");
                    }
                }
                Err(error) => {
                    attempts += 1;
                    if attempts % 10 == 1 {
                        tracing::info!(via, %error, "waiting to join the cluster");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Lets a new node in: registers it and adds it to the metadata group as a learner (on the
    /// metadata leader; another node forwards the request there).
    pub async fn serve_join(&self, request: JoinRequest) -> Result<(), JoinError> {
        let Some(control) = self.control.get() else {
            return Err(JoinError::NotStarted);
        };
        if !control.is_leader() {
            let (Some(leader), Some(peers)) = (control.leader(), &self.peers) else {
                return Err(JoinError::NoLeader);
            };
            return match peers.join(leader, request).await {
                Ok(answer) => answer,
                Err(failure) => Err(JoinError::Forward(failure)),
            };
        }
        if request.node_id == 0 {
            return Err(JoinError::InvalidNodeId);
        }
        let record = NodeRecord {
            id: request.node_id,
            peer_addr: request.peer_addr.clone(),
            api_addr: request.api_addr.clone(),
            az: request.az.clone(),
            draining: false,
        };
        if let Some(peers) = &self.peers {
            peers.learn_addresses(&[(record.id, record.peer_addr.clone())]);
        }
        control
            .propose(ControlCommand::RegisterNode { node: record })
            .await?;
        let node = ReplicaNode {
            node: request.node_id,
            addr: request.peer_addr,
            az: request.az,
        };
        control
            .group()
            .add_learner(request.node_id, node)
            .await
            .map_err(JoinError::AddLearner)
    }

    /// Makes sure the cluster is initialized and this node is registered.
    pub(crate) async fn join_cluster(&self) -> Result<(), NodeError> {
        let control = self.control();
        if control.state().cluster.is_none() {
            let key: [u8; 32] = rand::random();
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            control
                .propose(ControlCommand::InitCluster {
                    cluster_id,
                    token_key_hex: encode_hex(&key),
                    account: self.config.account.clone(),
                    region: self.config.region.clone(),
                    now_ms: now_ms(),
                })
                .await?;
        }
        let record = NodeRecord {
            id: self.config.node_id,
            peer_addr: self.config.peer_addr.clone(),
            api_addr: self.config.api_addr.clone(),
            az: self.config.az.clone(),
            draining: false,
        };
        if control.state().nodes.get(&record.id) != Some(&record) {
            control
                .propose(ControlCommand::RegisterNode { node: record })
                .await?;
        }
        Ok(())
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

pub(crate) fn decode_key(text: &str) -> Option<TokenKey> {
    let bytes: [u8; 32] = decode_hex(text)?.try_into().ok()?;
    Some(TokenKey::new(bytes))
}
