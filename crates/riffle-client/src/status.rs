//! Riffle's admin endpoints: `GET /_riffle/status` (the cluster as the asked node sees it) and
//! `POST /_riffle/nodes/{id}/drain|undrain`.

use http::Method;
use serde::Deserialize;

use crate::client::Client;
use crate::error::Error;

/// `GET /_riffle/status`, typed.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: u64,
    #[serde(default)]
    pub metadata_leader: Option<u64>,
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    #[serde(default)]
    pub shards: Vec<ShardStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub az: String,
    /// Its Kinesis API address.
    #[serde(default)]
    pub address: String,
    pub alive: bool,
    #[serde(default)]
    pub draining: bool,
    #[serde(default)]
    pub replicas: u64,
    /// Open shards it leads.
    #[serde(default)]
    pub leaders: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ShardStatus {
    pub stream: String,
    pub shard_id: String,
    /// `OPEN`, `CLOSING` or `CLOSED`.
    pub state: String,
    #[serde(default)]
    pub leader: Option<u64>,
    /// Nodes of the voting replicas.
    #[serde(default)]
    pub replicas: Vec<u64>,
    /// Nodes of replicas still catching up.
    #[serde(default)]
    pub learners: Vec<u64>,
    /// Why the shard exists ("UpdateShardCount to 8", …).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub moving: Option<ReplicaMove>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReplicaMove {
    #[serde(default)]
    pub from_node: Option<u64>,
    #[serde(default)]
    pub to_node: Option<u64>,
    #[serde(default)]
    pub reason: String,
}

impl ClusterStatus {
    /// Whether every node the answering node knows is alive.
    pub fn all_alive(&self) -> bool {
        self.nodes.iter().all(|node| node.alive)
    }
}

impl Client {
    /// `GET /_riffle/status` as the JSON document the node sent.
    pub async fn status_document(&self) -> Result<serde_json::Value, Error> {
        self.admin(Method::GET, "/_riffle/status").await
    }

    /// `GET /_riffle/status`.
    pub async fn status(&self) -> Result<ClusterStatus, Error> {
        self.admin(Method::GET, "/_riffle/status").await
    }

    /// Moves every shard leader off `node` and places nothing new on it (or undoes that).
    pub async fn set_draining(&self, node: u64, draining: bool) -> Result<(), Error> {
        let action = if draining { "drain" } else { "undrain" };
        let _: serde_json::Value = self
            .admin(Method::POST, &format!("/_riffle/nodes/{node}/{action}"))
            .await?;
        Ok(())
    }
}
