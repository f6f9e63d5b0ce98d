//! `riffle cluster status`: fetches `/_riffle/status` from any node and prints it.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;
use anyhow::bail;
use serde_json::Value;

/// Prints the cluster status as a table (or the JSON document with `json`).
pub fn print(endpoint: &str, json: bool) -> anyhow::Result<()> {
    let document = fetch(endpoint)?;
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
            println!(
                "  {az:<8} node {id:<3} {:<6} {:<22}{}",
                if node["alive"].as_bool() == Some(true) {
                    "alive"
                } else {
                    "DOWN"
                },
                node["address"].as_str().unwrap_or(""),
                if Some(id) == leader {
                    " metadata leader"
                } else {
                    ""
                }
            );
        }
    }
    println!("shards:");
    println!(
        "  {:<24} {:<22} {:<8} {:<7} replicas",
        "stream", "shard", "state", "leader"
    );
    for shard in document["shards"].as_array().into_iter().flatten() {
        let replicas: Vec<String> = shard["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|node| node.to_string())
            .collect();
        println!(
            "  {:<24} {:<22} {:<8} {:<7} {}",
            shard["stream"].as_str().unwrap_or(""),
            shard["shard_id"].as_str().unwrap_or(""),
            shard["state"].as_str().unwrap_or(""),
            shard["leader"]
                .as_u64()
                .map(|node| node.to_string())
                .unwrap_or_else(|| "-".into()),
            replicas.join(",")
        );
    }
    Ok(())
}

/// GET `{endpoint}/_riffle/status` over plain HTTP/1.1.
fn fetch(endpoint: &str) -> anyhow::Result<Value> {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if endpoint.starts_with("https://") {
        bail!("only http:// endpoints are supported");
    }
    let mut stream =
        TcpStream::connect(authority).with_context(|| format!("connecting to {authority}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET /_riffle/status HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "{authority} answered: {}",
            head.lines().next().unwrap_or("")
        );
    }
    serde_json::from_str(body).context("status is not JSON")
}
