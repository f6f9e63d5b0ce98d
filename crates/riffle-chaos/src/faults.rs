//! Fault injection. A [`Cluster`] is either Docker containers (found by their `riffle.*`
//! labels, driven through the Docker API with bollard) or the processes of
//! `scripts/local-cluster.sh` (driven with signals).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use bollard::Docker;
use bollard::models::EndpointSettings;
use bollard::models::NetworkConnectRequest;
use bollard::models::NetworkDisconnectRequest;
use bollard::query_parameters::KillContainerOptionsBuilder;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::query_parameters::StopContainerOptionsBuilder;
use rand::seq::IndexedRandom;
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

/// The cluster under test and the means to hurt it.
pub enum Cluster {
    Docker(DockerCluster),
    Local(LocalCluster),
}

impl Cluster {
    pub fn nodes(&self) -> &[NodeInfo] {
        match self {
            Cluster::Docker(docker) => &docker.nodes,
            Cluster::Local(local) => &local.nodes,
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.endpoint.clone()).collect()
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
        match self {
            Cluster::Docker(docker) => docker.inject(fault, node).await,
            Cluster::Local(local) => local.inject(fault, node).await,
        }
    }

    /// Undoes `fault` on `node` (starts, thaws or reconnects it) without waiting for it.
    pub async fn heal(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        match self {
            Cluster::Docker(docker) => docker.heal(fault, node).await,
            Cluster::Local(local) => local.heal(fault, node).await,
        }
    }
}

/// Waits until `node` serves its status page again (a restarted node serves once it has
/// rejoined the cluster, so heal every node of a fault first, then wait for each).
pub async fn wait_serving(node: &NodeInfo, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while status(&node.endpoint).await.is_err() {
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
        let Ok(status) = status(endpoint).await else {
            continue;
        };
        let mut counts: HashMap<u64, usize> = HashMap::new();
        for entry in status["shards"].as_array().into_iter().flatten() {
            if entry["stream"] != stream || entry["state"] != "OPEN" {
                continue;
            }
            let Some(leader) = entry["leader"].as_u64() else {
                continue;
            };
            if shard.is_none_or(|s| entry["shard_id"] == s) {
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

/// `GET {endpoint}/_riffle/status` (2 s timeout).
pub async fn status(endpoint: &str) -> anyhow::Result<serde_json::Value> {
    use http_body_util::BodyExt;
    use http_body_util::Empty;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = format!("{}/_riffle/status", endpoint.trim_end_matches('/')).parse()?;
    let response = tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .context("status: timeout")??;
    if !response.status().is_success() {
        bail!("status: HTTP {}", response.status());
    }
    let body = tokio::time::timeout(Duration::from_secs(2), response.into_body().collect())
        .await
        .context("status: timeout")??
        .to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// Waits until `endpoint` serves its status page with every node it lists alive.
pub async fn wait_healthy(endpoint: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(status) = status(endpoint).await
            && status["nodes"]
                .as_array()
                .is_some_and(|nodes| nodes.iter().all(|n| n["alive"] == true))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{endpoint} not healthy after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Containers labelled `riffle.cluster=<name>`, `riffle.node=<id>`, `riffle.az=<az>`, whose
/// Kinesis port 4567 is published on the host.
pub struct DockerCluster {
    docker: Docker,
    nodes: Vec<NodeInfo>,
    /// Networks (and aliases) of isolated containers, to reconnect them.
    isolated: HashMap<String, Vec<(String, EndpointSettings)>>,
}

impl DockerCluster {
    /// Finds the running containers of cluster `name` through the local Docker socket.
    pub async fn discover(name: &str) -> anyhow::Result<DockerCluster> {
        let docker = Docker::connect_with_local_defaults()
            .context("connecting to the Docker engine")?
            .negotiate_version()
            .await
            .context("negotiating the Docker API version")?;
        let filters = HashMap::from([("label", vec![format!("riffle.cluster={name}")])]);
        let containers = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("listing containers")?;
        let mut nodes = Vec::new();
        for container in containers {
            let labels = container.labels.clone().unwrap_or_default();
            let id = labels
                .get("riffle.node")
                .and_then(|id| id.parse().ok())
                .context("a riffle container without a riffle.node label")?;
            let az = labels.get("riffle.az").cloned().unwrap_or_default();
            let port = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.private_port == 4567 && p.public_port.is_some())
                .and_then(|p| p.public_port)
                .with_context(|| {
                    format!("node {id}: port 4567 is not published (is it running?)")
                })?;
            nodes.push(NodeInfo {
                id,
                az,
                endpoint: format!("http://127.0.0.1:{port}"),
                handle: container.id.clone().unwrap_or_default(),
            });
        }
        if nodes.is_empty() {
            bail!("no container is labelled riffle.cluster={name}");
        }
        nodes.sort_by_key(|n| n.id);
        Ok(DockerCluster {
            docker,
            nodes,
            isolated: HashMap::new(),
        })
    }

    async fn inject(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        let container = node.handle.as_str();
        match fault {
            Fault::Kill => {
                self.docker
                    .kill_container(
                        container,
                        Some(KillContainerOptionsBuilder::new().signal("SIGKILL").build()),
                    )
                    .await?
            }
            Fault::Stop => {
                self.docker
                    .stop_container(
                        container,
                        Some(StopContainerOptionsBuilder::new().t(10).build()),
                    )
                    .await?
            }
            Fault::Pause => self.docker.pause_container(container).await?,
            Fault::Isolate => {
                let inspect = self.docker.inspect_container(container, None).await?;
                let networks: Vec<(String, EndpointSettings)> = inspect
                    .network_settings
                    .and_then(|s| s.networks)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                for (network, _) in &networks {
                    self.docker
                        .disconnect_network(
                            network,
                            NetworkDisconnectRequest {
                                container: container.to_string(),
                                force: Some(true),
                            },
                        )
                        .await
                        .with_context(|| {
                            format!("disconnecting node {} from {network}", node.id)
                        })?;
                }
                self.isolated.insert(container.to_string(), networks);
            }
        }
        Ok(())
    }

    async fn heal(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        let container = node.handle.as_str();
        match fault {
            Fault::Kill | Fault::Stop => self.docker.start_container(container, None).await?,
            Fault::Pause => self.docker.unpause_container(container).await?,
            Fault::Isolate => {
                for (network, settings) in self.isolated.remove(container).unwrap_or_default() {
                    let endpoint = EndpointSettings {
                        aliases: settings.aliases.clone(),
                        ..Default::default()
                    };
                    self.docker
                        .connect_network(
                            &network,
                            NetworkConnectRequest {
                                container: container.to_string(),
                                endpoint_config: Some(endpoint),
                            },
                        )
                        .await
                        .with_context(|| format!("reconnecting node {} to {network}", node.id))?;
                }
            }
        }
        Ok(())
    }
}

/// The nodes of `scripts/local-cluster.sh` (`.riffle-local/nodeN/pid`, Kinesis on port 4566+N).
pub struct LocalCluster {
    root: PathBuf,
    /// Runs `<start_command> N` to start node N again (`scripts/local-cluster.sh start`).
    start_command: Vec<String>,
    nodes: Vec<NodeInfo>,
}

impl LocalCluster {
    pub fn discover(root: PathBuf, start_command: Vec<String>) -> anyhow::Result<LocalCluster> {
        let mut nodes = Vec::new();
        for id in 1..=9u64 {
            let dir = root.join(format!("node{id}"));
            if !dir.is_dir() {
                continue;
            }
            let az = std::fs::read_to_string(dir.join("az"))
                .map(|az| az.trim().to_string())
                .unwrap_or_else(|_| ["az-a", "az-b", "az-c"][((id - 1) % 3) as usize].to_string());
            nodes.push(NodeInfo {
                id,
                az,
                endpoint: format!("http://127.0.0.1:{}", 4566 + id),
                handle: dir.display().to_string(),
            });
        }
        if nodes.is_empty() {
            bail!(
                "no node directory under {} (run scripts/local-cluster.sh up)",
                root.display()
            );
        }
        Ok(LocalCluster {
            root,
            start_command,
            nodes,
        })
    }

    fn pid(&self, node: &NodeInfo) -> anyhow::Result<String> {
        let path = self.root.join(format!("node{}/pid", node.id));
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("node {} is not running ({})", node.id, path.display()))?
            .trim()
            .to_string())
    }

    async fn signal(&self, node: &NodeInfo, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid(node)?;
        let status = tokio::process::Command::new("kill")
            .args([format!("-{signal}"), pid.clone()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -{signal} {pid} (node {}) failed", node.id);
        }
        Ok(())
    }

    async fn wait_exit(&self, node: &NodeInfo) -> anyhow::Result<()> {
        let pid = self.pid(node)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                self.signal(node, "KILL").await?;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = std::fs::remove_file(self.root.join(format!("node{}/pid", node.id)));
        Ok(())
    }

    async fn inject(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        match fault {
            Fault::Kill => {
                self.signal(node, "KILL").await?;
                self.wait_exit(node).await
            }
            Fault::Stop => {
                self.signal(node, "TERM").await?;
                self.wait_exit(node).await
            }
            Fault::Pause => self.signal(node, "STOP").await,
            Fault::Isolate => bail!(
                "network isolation needs containers: use the Docker cluster (scripts/cluster.sh)"
            ),
        }
    }

    async fn heal(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
        match fault {
            Fault::Kill | Fault::Stop => {
                let (program, args) = self
                    .start_command
                    .split_first()
                    .context("no start command")?;
                let output = tokio::process::Command::new(program)
                    .args(args)
                    .arg(node.id.to_string())
                    .output()
                    .await
                    .with_context(|| format!("running {program}"))?;
                if !output.status.success() {
                    bail!(
                        "starting node {} failed: {}",
                        node.id,
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                Ok(())
            }
            Fault::Pause => self.signal(node, "CONT").await,
            Fault::Isolate => Ok(()),
        }
    }
}
