//! The local cluster of `scripts/local-cluster.sh`: its node processes, hurt with signals (no
//! network isolation) and started again with the script.

use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;

use crate::faults::BoxFuture;
use crate::faults::Cluster;
use crate::faults::Fault;
use crate::faults::FaultInjector;
use crate::faults::NodeInfo;

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

    /// The cluster under test, hurt through this.
    pub fn into_cluster(self) -> Cluster {
        Cluster::new(self.nodes.clone(), Box::new(self))
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

    async fn inject_fault(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
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

    async fn heal_fault(&mut self, fault: Fault, node: &NodeInfo) -> anyhow::Result<()> {
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

impl FaultInjector for LocalCluster {
    fn inject<'a>(&'a mut self, fault: Fault, node: &'a NodeInfo) -> BoxFuture<'a> {
        Box::pin(self.inject_fault(fault, node))
    }

    fn heal<'a>(&'a mut self, fault: Fault, node: &'a NodeInfo) -> BoxFuture<'a> {
        Box::pin(self.heal_fault(fault, node))
    }
}
