//! The serialized form of commands and replies. Commands are entries of the metadata group's
//! Raft log, on disk and replayed after an upgrade, and replies travel to forwarding nodes, so
//! their JSON must not change: a renamed variant or field here is a log that no longer decodes.

use std::collections::BTreeMap;

use riffle_types::HashKey;

use super::*;
use crate::leases::LeaseCommand;
use crate::leases::LeaseRecord;
use crate::model::NodeRecord;
use crate::model::StreamMode;
use crate::reshard::ReshardPlan;

/// One command of every kind, with its JSON as the log holds it.
pub(super) fn every_command() -> Vec<(ControlCommand, &'static str)> {
    let lease = |command| ControlCommand::Lease(command);
    vec![
        (
            lease(LeaseCommand::Sync {
                app: "app".into(),
                stream: "s".into(),
            }),
            r#"{"Lease":{"Sync":{"app":"app","stream":"s"}}}"#,
        ),
        (
            lease(LeaseCommand::Take {
                app: "app".into(),
                shard_id: "shardId-000000000000".into(),
                owner: "w1".into(),
                counter: 3,
            }),
            r#"{"Lease":{"Take":{"app":"app","shard_id":"shardId-000000000000","owner":"w1","counter":3}}}"#,
        ),
        (
            lease(LeaseCommand::Renew {
                app: "app".into(),
                owner: "w1".into(),
                leases: vec![("shardId-000000000000".into(), 4)],
            }),
            r#"{"Lease":{"Renew":{"app":"app","owner":"w1","leases":[["shardId-000000000000",4]]}}}"#,
        ),
        (
            lease(LeaseCommand::Checkpoint {
                app: "app".into(),
                shard_id: "shardId-000000000000".into(),
                owner: "w1".into(),
                checkpoint: "49590338271490256608559692538361571095921575989136588898".into(),
            }),
            r#"{"Lease":{"Checkpoint":{"app":"app","shard_id":"shardId-000000000000","owner":"w1","checkpoint":"49590338271490256608559692538361571095921575989136588898"}}}"#,
        ),
        (
            lease(LeaseCommand::Release {
                app: "app".into(),
                shard_id: "shardId-000000000000".into(),
                owner: "w1".into(),
            }),
            r#"{"Lease":{"Release":{"app":"app","shard_id":"shardId-000000000000","owner":"w1"}}}"#,
        ),
        (
            lease(LeaseCommand::Delete { app: "app".into() }),
            r#"{"Lease":{"Delete":{"app":"app"}}}"#,
        ),
        (
            ControlCommand::InitCluster {
                cluster_id: "c".into(),
                token_key_hex: "00ff".into(),
                account: "000000000000".into(),
                region: "us-east-1".into(),
                now_ms: 1,
            },
            r#"{"InitCluster":{"cluster_id":"c","token_key_hex":"00ff","account":"000000000000","region":"us-east-1","now_ms":1}}"#,
        ),
        (
            ControlCommand::RegisterNode {
                node: NodeRecord {
                    id: 2,
                    peer_addr: "10.0.0.2:7001".into(),
                    api_addr: "10.0.0.2:4567".into(),
                    az: "az-b".into(),
                    draining: false,
                },
            },
            r#"{"RegisterNode":{"node":{"id":2,"peer_addr":"10.0.0.2:7001","api_addr":"10.0.0.2:4567","az":"az-b","draining":false}}}"#,
        ),
        (
            ControlCommand::CreateStream {
                name: "s".into(),
                shard_count: 2,
                mode: StreamMode::OnDemand,
                tags: BTreeMap::from([("team".to_string(), "data".to_string())]),
                now_ms: 2_000,
                shard_limit: 500,
                replication_factor: 3,
                avoid: vec![3],
            },
            r#"{"CreateStream":{"name":"s","shard_count":2,"mode":"OnDemand","tags":{"team":"data"},"now_ms":2000,"shard_limit":500,"replication_factor":3,"avoid":[3]}}"#,
        ),
        (
            ControlCommand::StreamActive {
                name: "s".into(),
                created_ms: 2_000,
            },
            r#"{"StreamActive":{"name":"s","created_ms":2000}}"#,
        ),
        (
            ControlCommand::DeleteStream { name: "s".into() },
            r#"{"DeleteStream":{"name":"s"}}"#,
        ),
        (
            ControlCommand::StreamDeleted {
                name: "s".into(),
                created_ms: 2_000,
            },
            r#"{"StreamDeleted":{"name":"s","created_ms":2000}}"#,
        ),
        (
            ControlCommand::AddTags {
                name: "s".into(),
                tags: BTreeMap::from([("team".to_string(), "data".to_string())]),
            },
            r#"{"AddTags":{"name":"s","tags":{"team":"data"}}}"#,
        ),
        (
            ControlCommand::RegisterConsumer {
                stream: "s".into(),
                name: "fan".into(),
                now_ms: 3_000,
            },
            r#"{"RegisterConsumer":{"stream":"s","name":"fan","now_ms":3000}}"#,
        ),
        (
            ControlCommand::ConsumerActive {
                stream: "s".into(),
                name: "fan".into(),
                created_ms: 3_000,
            },
            r#"{"ConsumerActive":{"stream":"s","name":"fan","created_ms":3000}}"#,
        ),
        (
            ControlCommand::DeregisterConsumer {
                stream: "s".into(),
                name: "fan".into(),
            },
            r#"{"DeregisterConsumer":{"stream":"s","name":"fan"}}"#,
        ),
        (
            ControlCommand::ConsumerDeleted {
                stream: "s".into(),
                name: "fan".into(),
                created_ms: 3_000,
            },
            r#"{"ConsumerDeleted":{"stream":"s","name":"fan","created_ms":3000}}"#,
        ),
        (
            ControlCommand::RemoveTags {
                name: "s".into(),
                keys: vec!["team".into()],
            },
            r#"{"RemoveTags":{"name":"s","keys":["team"]}}"#,
        ),
        (
            ControlCommand::SetRetention {
                name: "s".into(),
                hours: 48,
                change: RetentionChange::Increase,
            },
            r#"{"SetRetention":{"name":"s","hours":48,"change":"Increase"}}"#,
        ),
        (
            ControlCommand::SetRetention {
                name: "s".into(),
                hours: 24,
                change: RetentionChange::Decrease,
            },
            r#"{"SetRetention":{"name":"s","hours":24,"change":"Decrease"}}"#,
        ),
        (
            ControlCommand::SplitShard {
                name: "s".into(),
                shard: 0,
                new_start: HashKey(1 << 127),
                now_ms: 4_000,
                shard_limit: 500,
                avoid: Vec::new(),
            },
            r#"{"SplitShard":{"name":"s","shard":0,"new_start":170141183460469231731687303715884105728,"now_ms":4000,"shard_limit":500,"avoid":[]}}"#,
        ),
        (
            ControlCommand::MergeShards {
                name: "s".into(),
                shard: 1,
                adjacent: 2,
                now_ms: 5_000,
                avoid: vec![3],
            },
            r#"{"MergeShards":{"name":"s","shard":1,"adjacent":2,"now_ms":5000,"avoid":[3]}}"#,
        ),
        (
            ControlCommand::UpdateShardCount {
                name: "s".into(),
                target: 4,
                now_ms: 6_000,
                shard_limit: 500,
            },
            r#"{"UpdateShardCount":{"name":"s","target":4,"now_ms":6000,"shard_limit":500}}"#,
        ),
        (
            ControlCommand::ReshardStep {
                name: "s".into(),
                created_ms: 2_000,
                plan: ReshardPlan {
                    splits: vec![(0, HashKey(1 << 126))],
                    merges: vec![(1, 2)],
                },
                reason: "on-demand scaling".into(),
                now_ms: 7_000,
                shard_limit: 500,
                avoid: Vec::new(),
            },
            r#"{"ReshardStep":{"name":"s","created_ms":2000,"plan":{"splits":[[0,85070591730234615865843651857942052864]],"merges":[[1,2]]},"reason":"on-demand scaling","now_ms":7000,"shard_limit":500,"avoid":[]}}"#,
        ),
        (
            ControlCommand::UpdateStreamMode {
                name: "s".into(),
                mode: StreamMode::Provisioned,
                now_ms: 8_000,
            },
            r#"{"UpdateStreamMode":{"name":"s","mode":"Provisioned","now_ms":8000}}"#,
        ),
        (
            ControlCommand::SetDraining {
                node: 2,
                draining: true,
            },
            r#"{"SetDraining":{"node":2,"draining":true}}"#,
        ),
        (
            ControlCommand::StartReplicaMove {
                name: "s".into(),
                created_ms: 2_000,
                shard: 0,
                from_replica: 1,
                to_node: 2,
                reason: "node 1 down".into(),
                now_ms: 9_000,
            },
            r#"{"StartReplicaMove":{"name":"s","created_ms":2000,"shard":0,"from_replica":1,"to_node":2,"reason":"node 1 down","now_ms":9000}}"#,
        ),
        (
            ControlCommand::FinishReplicaMove {
                name: "s".into(),
                created_ms: 2_000,
                shard: 0,
                from_replica: 1,
                to_replica: 7,
            },
            r#"{"FinishReplicaMove":{"name":"s","created_ms":2000,"shard":0,"from_replica":1,"to_replica":7}}"#,
        ),
        (
            ControlCommand::CancelReplicaMove {
                name: "s".into(),
                created_ms: 2_000,
                shard: 0,
                to_replica: 7,
            },
            r#"{"CancelReplicaMove":{"name":"s","created_ms":2000,"shard":0,"to_replica":7}}"#,
        ),
        (
            ControlCommand::SetPreferredLeaders {
                leaders: vec![(1, 2), (3, 1)],
            },
            r#"{"SetPreferredLeaders":{"leaders":[[1,2],[3,1]]}}"#,
        ),
        (
            ControlCommand::ShardLeaders {
                leaders: vec![(1, 2)],
            },
            r#"{"ShardLeaders":{"leaders":[[1,2]]}}"#,
        ),
        (
            ControlCommand::ShardSealed {
                name: "s".into(),
                created_ms: 2_000,
                shard: 0,
                sealed_at: 42,
                now_ms: 10_000,
            },
            r#"{"ShardSealed":{"name":"s","created_ms":2000,"shard":0,"sealed_at":42,"now_ms":10000}}"#,
        ),
    ]
}

fn every_reply() -> Vec<(ControlReply, &'static str)> {
    vec![
        (ControlReply::Done, r#""Done""#),
        (ControlReply::Unchanged, r#""Unchanged""#),
        (
            ControlReply::StreamCreated { created_ms: 2_000 },
            r#"{"StreamCreated":{"created_ms":2000}}"#,
        ),
        (
            ControlReply::Leases(vec![LeaseRecord {
                shard_id: "shardId-000000000002".into(),
                parents: vec!["shardId-000000000000".into()],
                owner: Some("w1".into()),
                counter: 5,
                checkpoint: Some("SHARD_END".into()),
            }]),
            r#"{"Leases":[{"shard_id":"shardId-000000000002","parents":["shardId-000000000000"],"owner":"w1","counter":5,"checkpoint":"SHARD_END"}]}"#,
        ),
    ]
}

/// The JSON of every command and reply is what the log holds, and decodes back to the same.
#[test]
fn commands_and_replies_keep_their_json() {
    for (command, json) in every_command() {
        let encoded = serde_json::to_string(&command).expect("a command encodes");
        assert_eq!(
            encoded,
            json,
            "{} changed its serialized form",
            command.name()
        );
        let decoded: ControlCommand = serde_json::from_str(json).expect("the log's JSON decodes");
        assert_eq!(
            serde_json::to_string(&decoded).expect("a command encodes"),
            json
        );
    }
    for (reply, json) in every_reply() {
        assert_eq!(
            serde_json::to_string(&reply).expect("a reply encodes"),
            json
        );
        let decoded: ControlReply = serde_json::from_str(json).expect("a reply decodes");
        assert_eq!(decoded, reply);
    }
}

/// Commands written before `avoid` existed still decode, with nothing to avoid.
#[test]
fn commands_without_avoid_still_decode() {
    let written_before_avoid = [
        r#"{"CreateStream":{"name":"s","shard_count":1,"mode":"Provisioned","tags":{},"now_ms":1,"shard_limit":10,"replication_factor":3}}"#,
        r#"{"SplitShard":{"name":"s","shard":0,"new_start":1024,"now_ms":1,"shard_limit":10}}"#,
        r#"{"MergeShards":{"name":"s","shard":0,"adjacent":1,"now_ms":1}}"#,
        r#"{"ReshardStep":{"name":"s","created_ms":1,"plan":{"splits":[],"merges":[[0,1]]},"reason":"r","now_ms":1,"shard_limit":10}}"#,
    ];
    for json in written_before_avoid {
        let decoded: ControlCommand = serde_json::from_str(json).expect("an old command decodes");
        let avoid = match decoded {
            ControlCommand::CreateStream { avoid, .. }
            | ControlCommand::SplitShard { avoid, .. }
            | ControlCommand::MergeShards { avoid, .. }
            | ControlCommand::ReshardStep { avoid, .. } => avoid,
            other => panic!("{json} decoded as {}", other.name()),
        };
        assert!(avoid.is_empty(), "{json}");
    }
}
