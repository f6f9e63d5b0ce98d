//! `GET /_riffle/status`: the cluster as this node sees it (what `riffle cluster status` shows).

use riffle_node::Node;
use serde_json::Value;
use serde_json::json;

/// `{"nodes": [{"id", "az", "address", "alive"}], "metadata_leader": id, "shards": [...]}`.
pub async fn cluster_status(node: &Node) -> Value {
    let control = node.control();
    if let Err(error) = control.sync().await {
        tracing::debug!(%error, "status from the local metadata copy");
    }
    let state = control.state();
    let alive = node.alive_nodes();
    let nodes: Vec<Value> = state
        .nodes
        .values()
        .map(|record| {
            json!({
                "id": record.id,
                "az": record.az,
                "address": record.api_addr,
                "peer_address": record.peer_addr,
                "alive": alive.contains(&record.id),
            })
        })
        .collect();
    let shards: Vec<Value> = state
        .streams
        .values()
        .flat_map(|stream| {
            stream.shards.iter().map(move |shard| {
                json!({
                    "stream": stream.name,
                    "shard_id": shard.id().to_string(),
                    "state": match shard.state {
                        riffle_control::model::ShardState::Open => "OPEN",
                        riffle_control::model::ShardState::Closing => "CLOSING",
                        riffle_control::model::ShardState::Closed { .. } => "CLOSED",
                    },
                    "leader": shard.leader,
                    "replicas": shard.replicas.iter().map(|replica| replica.node).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    let (replicas, hibernating) = node.replica_counts();
    json!({
        "node": node.id(),
        "metadata_leader": control.leader(),
        "nodes": nodes,
        "shards": shards,
        "local_replicas": replicas,
        "local_hibernating": hibernating,
    })
}
