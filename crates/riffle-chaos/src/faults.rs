//! Fault injection: the faults, their targets, and the cluster under test, whose nodes a
//! [`FaultInjector`] hurts (signals to `scripts/local-cluster.sh` processes here, the Docker
//! API in the `riffle-chaos` binary, which keeps the Docker client out of the server).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use rand::seq::IndexedRandom;
use riffle_client::Client;
use serde::Serialize;

/// One node of the cluster under test.
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    pub id: u64,
    pub az: String,
    /// Its Kinesis API as the workload reaches it.
    pub endpoint: String,
    /// Container id (Docker) or node directory (local).
    pub handle: String,
}

/// What is done to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL; healing starts it again on its data.
    Kill,
    /// Graceful stop (SIGTERM); healing starts it again.
    Stop,
    /// Frozen (SIGSTOP / cgroup freezer); healing thaws it.
    Pause,
    /// Cut off from the network (Docker only); healing reconnects it.
    Isolate,
}

impl Fault {
    pub fn parse(text: &str) -> anyhow::Result<Fault> {
        Ok(match text {
            "kill" => Fault::Kill,
            "stop" => Fault::Stop,
            "pause" => Fault::Pause,
            "isolate" => Fault::Isolate,
            other => bail!("unknown fault {other:?} (kill, stop, pause, isolate)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Stop => "stop",
            Fault::Pause => "pause",
            Fault::Isolate => "isolate",
        }
    }
}

/// Which nodes a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(u64),
    /// Every node of an AZ.
    Az(String),
    /// The leader of a shard (`Some`), or the node leading the most shards of the stream.
    Leader {
        stream: String,
        shard: Option<String>,
    },
    /// A node picked at random.
    RandomNode,
    /// Every node of an AZ picked at random.
    RandomAz,
}

impl Target {
    /// `node:2`, `az:az-b`, `leader:STREAM[/SHARD]`, `random`, `random-az`.
    pub fn parse(text: &str) -> anyhow::Result<Target> {
        Ok(match text.split_once(':') {
            Some(("node", id)) => Target::Node(id.parse().context("node id")?),
            Some(("az", az)) => Target::Az(az.to_string()),
            Some(("leader", rest)) => match rest.split_once('/') {
                Some((stream, shard)) => Target::Leader {
                    stream: stream.to_string(),
                    shard: Some(shard.to_string()),
                },
                None => Target::Leader {
                    stream: rest.to_string(),
                    shard: None,
                },
            },
            None if text == "random" => Target::RandomNode,
            None if text == "random-az" => Target::RandomAz,
            _ => bail!(
                "unknown target {text:?} (node:N, az:NAME, leader:STREAM[/SHARD], random, random-az)"
            ),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Node(id) => write!(f, "node {id}"),
            Target::Az(az) => write!(f, "{az}"),
            Target::Leader {
                stream,
                shard: Some(shard),
            } => write!(f, "the leader of {stream}/{shard}"),
            Target::Leader {
                stream,
                shard: None,
            } => write!(f, "the busiest leader of {stream}"),
            Target::RandomNode => write!(f, "a random node"),
            Target::RandomAz => write!(f, "a random AZ"),
        }
    }
}

/// Does faults to nodes and undoes them: Docker's API (the `riffle-chaos` binary) or signals to
/// local processes ([`crate::local::LocalCluster`]).
pub trait FaultInjector: Send {
    /// Does `fault` to `node`.
    fn inject<'a>(&'a mut self, fault: Fault, node: &'a NodeInfo) -> BoxFuture<'a>;
    /// Undoes `fault` on `node` (starts, thaws or reconnects it) without waiting for it.
    fn heal<'a>(&'a mut self, fault: Fault, node: &'a NodeInfo) -> BoxFuture<'a>;
}

/// What a [`FaultInjector`] returns.
pub type BoxFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

/// The cluster under test and the means to hurt it.
pub struct Cluster {
    nodes: Vec<NodeInfo>,
    injector: Box<dyn FaultInjector>,
}

impl Cluster {
    pub fn new(nodes: Vec<NodeInfo>, injector: Box<dyn FaultInjector>) -> Cluster {
        Cluster { nodes, injector }
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.endpoint.clone()).collect()
    }

    /// The nodes `target` names now (asking the cluster for leaders where needed).
    pub async fn resolve(&self, target: &Target) -> anyhow::Result<Vec<NodeInfo>> {
        let nodes = self.nodes();
        let ids: Vec<u64> = match target {
            Target::Node(id) => vec![*id],
            Target::Az(az) => nodes.iter().filter(|n| &n.az == az).map(|n| n.id).collect(),
            Target::RandomNode => nodes
                .choose(&mut rand::rng())
                .map(|n| vec![n.id])
                .unwrap_or_default(),
            Target::RandomAz => {
                let mut azs: Vec<&str> = nodes.iter().map(|n| n.az.as_str()).collect();
                azs.sort();
                azs.dedup();
                let az = azs.choose(&mut rand::rng()).copied().unwrap_or_default();
                nodes.iter().filter(|n| n.az == az).map(|n| n.id).collect()
            }
            Target::Leader { stream, shard } => {
                vec![leader_of(&self.endpoints(), stream, shard.as_deref()).await?]
            }
        };
        let chosen: Vec<NodeInfo> = nodes
            .iter()
            .filter(|n| ids.contains(&n.id))
            .cloned()
            .collect();
        if chosen.is_empty() {
            bail!("{target} names no node of this cluster");
        }
        Ok(chosen)
    }

    pub async fn inject(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        self.injector.inject(fault, node).await
    }

    /// Undoes `fault` on `node` (starts, thaws or reconnects it) without waiting for it.
    pub async fn heal(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        self.injector.heal(fault, node).await
    }
}

/// Waits until `node` serves its status page again (a restarted node serves once it has
/// rejoined the cluster, so heal every node of a fault first, then wait for each).
pub async fn wait_serving(node: &NodeInfo, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let client = status_client(&node.endpoint);
    while client.status_document().await.is_err() {
        if Instant::now() > deadline {
            bail!("node {} does not serve {limit:?} after healing", node.id);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The node that leads `shard` of `stream` (or, without a shard, the most of its shards), from
/// `GET /_riffle/status` on the first endpoint that answers.
pub async fn leader_of(
    endpoints: &[String],
    stream: &str,
    shard: Option<&str>,
) -> anyhow::Result<u64> {
    for endpoint in endpoints {
        let Ok(status) = status_client(endpoint).status().await else {
            continue;
        };
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for entry in &status.shards {
            if entry.stream != stream || entry.state != "OPEN" {
                continue;
            }
            let Some(leader) = entry.leader else {
                continue;
            };
            if shard.is_none_or(|s| entry.shard_id == s) {
                *counts.entry(leader).or_default() += 1;
            }
        }
        if let Some((leader, _)) = counts.into_iter().max_by_key(|(id, n)| (*n, *id)) {
            return Ok(leader);
        }
    }
    bail!(
        "no node knows a leader for {stream}{}",
        shard.map(|s| format!("/{s}")).unwrap_or_default()
    )
}

/// A client for one node's status page: 2 s per request, no other node tried.
pub fn status_client(endpoint: &str) -> Client {
    Client::builder(vec![endpoint.to_string()])
        .timeout(Duration::from_secs(2))
        .build()
}

/// Waits until `endpoint` serves its status page with every node it lists alive.
pub async fn wait_healthy(endpoint: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    let client = status_client(endpoint);
    loop {
        if let Ok(status) = client.status().await
            && status.all_alive()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{endpoint} not healthy after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
