//! `GET /_riffle/status`: the cluster as this node sees it (what `riffle cluster status` shows):
//! nodes (alive, draining, how many replicas and open-shard leaders each holds) and every
//! shard with its replicas, leader, preferred leader, why it exists and any replica move.

use riffle_control::model::ShardState;
use riffle_node::Node;
use serde_json::Value;
use serde_json::json;

/// `{"nodes": [{"id", "az", "address", "alive", "draining", "replicas", "leaders"}],
/// "metadata_leader": id, "shards": [...]}`.
pub async fn cluster_status(node: &Node) -> Value {
    let control = node.control();
    if let Err(error) = control.sync().await {
        tracing::debug!(%error, "status from the local metadata copy");
    }
    let state = control.state();
    let alive = node.alive_nodes();
    let all_shards = || {
        state
            .streams
            .values()
            .flat_map(|stream| stream.shards.iter())
    };
    let nodes: Vec<Value> = state
        .nodes
        .values()
        .map(|record| {
            let replicas = all_shards()
                .filter(|shard| shard.replicas.iter().any(|r| r.node == record.id))
                .count();
            let leaders = all_shards()
                .filter(|shard| shard.state == ShardState::Open && shard.leader == Some(record.id))
                .count();
            json!({
                "id": record.id,
                "az": record.az,
                "address": record.api_addr,
                "peer_address": record.peer_addr,
                "alive": alive.contains(&record.id),
                "draining": record.draining,
                "replicas": replicas,
                "leaders": leaders,
            })
        })
        .collect();
    let shards: Vec<Value> = state
        .streams
        .values()
        .flat_map(|stream| {
            stream.shards.iter().map(move |shard| {
                let node_of = |replica: u64| {
                    shard
                        .replicas
                        .iter()
                        .find(|member| member.replica == replica)
                        .map(|member| member.node)
                };
                let moving = shard.moving.as_ref().map(|moving| {
                    json!({
                        "from_node": node_of(moving.from_replica),
                        "to_node": node_of(moving.to_replica),
                        "reason": moving.reason,
                        "started_ms": moving.started_ms,
                    })
                });
                json!({
                    "stream": stream.name,
                    "shard_id": shard.id().to_string(),
                    "state": match shard.state {
                        ShardState::Open => "OPEN",
                        ShardState::Closing => "CLOSING",
                        ShardState::Closed { .. } => "CLOSED",
                    },
                    "leader": shard.leader,
                    "preferred_leader": shard.preferred_node(),
                    "replicas": shard.voters().map(|replica| replica.node).collect::<Vec<_>>(),
                    "learners": shard
                        .replicas
                        .iter()
                        .filter(|replica| replica.learner)
                        .map(|replica| replica.node)
                        .collect::<Vec<_>>(),
                    "reason": shard.reason,
                    "moving": moving,
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
