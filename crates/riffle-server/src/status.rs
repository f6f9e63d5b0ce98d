//! `riffle cluster status` (fetches `/_riffle/status` from any node and prints it),
//! `riffle node drain|undrain N` and `riffle health` (the same request with a short timeout).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::net::ToSocketAddrs;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use serde_json::Value;

/// Prints the cluster status as a table (or the JSON document with `json`).
pub fn print(endpoint: &str, json: bool) -> anyhow::Result<()> {
    let document = request(endpoint, "GET", "/_riffle/status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    let leader = document["metadata_leader"].as_u64();
    println!("nodes (asked node {}):", document["node"]);
    let mut by_az: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for node in document["nodes"].as_array().into_iter().flatten() {
        by_az
            .entry(node["az"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(node);
    }
    for (az, nodes) in by_az {
        for node in nodes {
            let id = node["id"].as_u64().unwrap_or(0);
            let mut notes = Vec::new();
            if node["draining"].as_bool() == Some(true) {
                notes.push("draining");
            }
            if Some(id) == leader {
                notes.push("metadata leader");
            }
            println!(
                "  {az:<8} node {id:<3} {:<6} {:<22} {:>5} replicas {:>5} leaders  {}",
                if node["alive"].as_bool() == Some(true) {
                    "alive"
                } else {
                    "DOWN"
                },
                node["address"].as_str().unwrap_or(""),
                node["replicas"],
                node["leaders"],
                notes.join(", ")
            );
        }
    }
    println!("shards:");
    println!(
        "  {:<24} {:<22} {:<8} {:<7} {:<10} why",
        "stream", "shard", "state", "leader", "replicas"
    );
    let node_list = |value: &Value| -> String {
        let nodes: Vec<String> = value
            .as_array()
            .into_iter()
            .flatten()
            .map(|node| node.to_string())
            .collect();
        nodes.join(",")
    };
    for shard in document["shards"].as_array().into_iter().flatten() {
        let mut replicas = node_list(&shard["replicas"]);
        let learners = node_list(&shard["learners"]);
        if !learners.is_empty() {
            replicas = format!("{replicas}+{learners}");
        }
        let mut why = shard["reason"].as_str().unwrap_or("").to_string();
        if let Some(moving) = shard["moving"].as_object() {
            why = format!(
                "MOVING node {} -> {} ({}); {why}",
                moving["from_node"],
                moving["to_node"],
                moving["reason"].as_str().unwrap_or("")
            );
        }
        println!(
            "  {:<24} {:<22} {:<8} {:<7} {:<10} {}",
            shard["stream"].as_str().unwrap_or(""),
            shard["shard_id"].as_str().unwrap_or(""),
            shard["state"].as_str().unwrap_or(""),
            shard["leader"]
                .as_u64()
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
    let action = if draining { "drain" } else { "undrain" };
    request(endpoint, "POST", &format!("/_riffle/nodes/{node}/{action}"))?;
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
    match request_within(endpoint, "GET", "/_riffle/status", HEALTH_TIMEOUT) {
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
            // `{:#}`: the whole context chain; an answer's body may hold line breaks.
            let reason = format!("{error:#}").replace(['\r', '\n'], " ");
            println!("unhealthy: {endpoint}: {reason}");
            false
        }
    }
}

/// `method` `{endpoint}{path}` over plain HTTP/1.1; the JSON answer.
fn request(endpoint: &str, method: &str, path: &str) -> anyhow::Result<Value> {
    request_within(endpoint, method, path, Duration::from_secs(30))
}

/// [`request`], giving up once `timeout` has passed (connecting, sending and reading together).
fn request_within(
    endpoint: &str,
    method: &str,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .with_context(|| format!("no complete answer within {timeout:?}"))
    };
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if endpoint.starts_with("https://") {
        bail!("only http:// endpoints are supported");
    }
    let mut stream = connect(authority, remaining()?)?;
    stream.set_write_timeout(Some(remaining()?))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(remaining()?))?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("no complete answer from {authority} within {timeout:?}")
            }
            Err(error) => {
                return Err(error).with_context(|| format!("reading from {authority}"));
            }
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{authority} answered: {} {}",
            head.lines().next().unwrap_or(""),
            body.trim()
        );
    }
    serde_json::from_str(body).context("status is not JSON")
}

/// Connects to `authority` (`host:port`, names resolved), trying each address until one answers.
fn connect(authority: &str, timeout: Duration) -> anyhow::Result<TcpStream> {
    let addresses = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?;
    let mut last = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    match last {
        Some(error) => Err(error).with_context(|| format!("connecting to {authority}")),
        None => bail!("{authority} resolves to no address"),
    }
}
