//! `riffle cluster status` (fetches `/_riffle/status` from any node and prints it),
//! `riffle node drain|undrain N` and `riffle health` (the same request with a short timeout).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::Duration;
use std::time::Instant;

use riffle_client::Client;
use riffle_client::status::NodeStatus;

/// Prints the cluster status as a table (or the JSON document with `json`).
pub fn print(endpoint: &str, json: bool) -> anyhow::Result<()> {
    let client = client(endpoint, Duration::from_secs(30));
    if json {
        let document = block_on(client.status_document())?;
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let status = block_on(client.status())?;
    println!("nodes (asked node {}):", status.node);
    let mut by_az: BTreeMap<&str, Vec<&NodeStatus>> = BTreeMap::new();
    for node in &status.nodes {
        by_az.entry(node.az.as_str()).or_default().push(node);
    }
    for (az, nodes) in by_az {
        for node in nodes {
            let mut notes = Vec::new();
            if node.draining {
                notes.push("draining");
            }
            if Some(node.id) == status.metadata_leader {
                notes.push("metadata leader");
            }
            // The counts print unpadded, as they always have (they were JSON values, whose
            // Display ignores widths).
            println!(
                "  {az:<8} node {:<3} {:<6} {:<22} {} replicas {} leaders  {}",
                node.id,
                if node.alive { "alive" } else { "DOWN" },
                node.address,
                node.replicas,
                node.leaders,
                notes.join(", ")
            );
        }
    }
    println!("shards:");
    println!(
        "  {:<24} {:<22} {:<8} {:<7} {:<10} why",
        "stream", "shard", "state", "leader", "replicas"
    );
    let node_list = |nodes: &[u64]| -> String {
        let nodes: Vec<String> = nodes.iter().map(u64::to_string).collect();
        nodes.join(",")
    };
    // A node the status could not name shows as `null`, as in the JSON.
    let node_or_null =
        |node: Option<u64>| node.map_or_else(|| "null".to_string(), |n| n.to_string());
    for shard in &status.shards {
        let mut replicas = node_list(&shard.replicas);
        let learners = node_list(&shard.learners);
        if !learners.is_empty() {
            replicas = format!("{replicas}+{learners}");
        }
        let mut why = shard.reason.clone().unwrap_or_default();
        if let Some(moving) = &shard.moving {
            why = format!(
                "MOVING node {} -> {} ({}); {why}",
                node_or_null(moving.from_node),
                node_or_null(moving.to_node),
                moving.reason
            );
        }
        println!(
            "  {:<24} {:<22} {:<8} {:<7} {:<10} {}",
            shard.stream,
            shard.shard_id,
            shard.state,
            shard
                .leader
                .map(|node| node.to_string())
                .unwrap_or_else(|| "-".into()),
            replicas,
            why
        );
    }
    Ok(())
}

/// `riffle node drain N` / `undrain N`: leaders move off the node (or may come back).
pub fn drain(endpoint: &str, node: u64, draining: bool) -> anyhow::Result<()> {
    block_on(client(endpoint, Duration::from_secs(30)).set_draining(node, draining))?;
    if draining {
        println!(
            "node {node} is draining: its shard leaders move to other nodes and no new replicas are placed on it"
        );
    } else {
        println!("node {node} is no longer draining");
    }
    Ok(())
}

/// Time `riffle health` allows for connecting, asking and reading the whole answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// `riffle health`: whether the node at `endpoint` answers `GET /_riffle/status` with 200 within
/// [`HEALTH_TIMEOUT`] (a node still forming its cluster does not answer yet). Prints one line.
pub fn health(endpoint: &str) -> bool {
    let started = Instant::now();
    match block_on(client(endpoint, HEALTH_TIMEOUT).status_document()) {
        Ok(document) => {
            println!(
                "healthy: node {} at {endpoint} answered in {} ms (metadata leader {})",
                document["node"],
                started.elapsed().as_millis(),
                document["metadata_leader"]
            );
            true
        }
        Err(error) => {
            // An answer's body may hold line breaks.
            let reason = format!("{error:#}").replace(['\r', '\n'], " ");
            println!("unhealthy: {endpoint}: {reason}");
            false
        }
    }
}

/// A client of the one node at `endpoint` (no other node is asked), `timeout` per request.
fn client(endpoint: &str, timeout: Duration) -> Client {
    Client::builder(vec![endpoint.to_string()])
        .timeout(timeout)
        .build()
}

/// Runs one request on a runtime of its own (these commands do nothing else).
fn block_on<T>(
    request: impl std::future::Future<Output = Result<T, riffle_client::Error>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(request)?)
}
