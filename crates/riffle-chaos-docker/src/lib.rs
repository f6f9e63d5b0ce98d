//! Chaos against Docker clusters: containers labelled `riffle.cluster=<name>`, `riffle.node`,
//! `riffle.az`, found and hurt through the Docker API (bollard, with version negotiation).
//!
//! This crate exists so that the Docker client is linked only into the `riffle-chaos` binary
//! and the container tests, never into the `riffle` server binary: `riffle chaos run --docker`
//! runs this binary. Everything else about a chaos run is `riffle-chaos`.

use std::collections::HashMap;

use anyhow::Context;
use anyhow::bail;
use bollard::Docker;
use bollard::models::EndpointSettings;
use bollard::models::NetworkConnectRequest;
use bollard::models::NetworkDisconnectRequest;
use bollard::query_parameters::KillContainerOptionsBuilder;
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::query_parameters::StopContainerOptionsBuilder;
use riffle_chaos::faults::BoxFuture;
use riffle_chaos::faults::Cluster;
use riffle_chaos::faults::Fault;
use riffle_chaos::faults::FaultInjector;
use riffle_chaos::faults::NodeInfo;

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

    /// The cluster under test, hurt through this.
    pub fn into_cluster(self) -> Cluster {
        Cluster::new(self.nodes.clone(), Box::new(self))
    }

    async fn inject_fault(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
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

    async fn heal_fault(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
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

impl FaultInjector for DockerCluster {
    fn inject<'a>(&'a mut self, fault: Fault, node: &'a NodeInfo) -> BoxFuture<'a> {
        Box::pin(self.inject_fault(fault, node))
    }

    fn heal<'a>(&'a mut self, fault: Fault, node: &'a NodeInfo) -> BoxFuture<'a> {
        Box::pin(self.heal_fault(fault, node))
    }
}
