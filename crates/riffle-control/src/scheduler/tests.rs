//! Every scheduler rule, on states built through the real commands; plans are applied back
//! with [`apply`] so that the tests see what the cluster would.

use super::*;
use crate::command::ControlReply;
use crate::command::apply;
use crate::command::fixtures::cluster_of;
use crate::model::NodeRecord;
use crate::model::StreamMode;

const NOW: u64 = 10_000_000;

fn three_azs() -> ControlState {
    cluster_of(&[(1, "az-a"), (2, "az-b"), (3, "az-c")])
}

fn create(state: &mut ControlState, name: &str, shards: u32, mode: StreamMode) {
    apply(
        state,
        ControlCommand::CreateStream {
            name: name.into(),
            shard_count: shards,
            mode,
            tags: Default::default(),
            now_ms: 1_000,
            shard_limit: 1_000,
            replication_factor: 3,
            avoid: Vec::new(),
        },
    )
    .unwrap();
    // The agent marks it ACTIVE once the groups run.
    let created_ms = state.streams[name].created_ms;
    apply(
        state,
        ControlCommand::StreamActive {
            name: name.into(),
            created_ms,
        },
    )
    .unwrap();
}

/// Applies commands the way the metadata group would (errors are re-validation refusals).
fn apply_all(state: &mut ControlState, commands: Vec<ControlCommand>) {
    for command in commands {
        let _ = apply(state, command);
    }
}

/// What the agent does after a reshard step: seals every Closing shard, then tries ACTIVE.
fn seal_and_activate(state: &mut ControlState, name: &str) {
    let stream = state.streams[name].clone();
    for shard in stream
        .shards
        .iter()
        .filter(|s| s.state == ShardState::Closing)
    {
        apply(
            state,
            ControlCommand::ShardSealed {
                name: name.into(),
                created_ms: stream.created_ms,
                shard: shard.index,
                sealed_at: 10,
                now_ms: NOW,
            },
        )
        .unwrap();
    }
    apply(
        state,
        ControlCommand::StreamActive {
            name: name.into(),
            created_ms: stream.created_ms,
        },
    )
    .unwrap();
}

fn open_shards(state: &ControlState, name: &str) -> Vec<ShardRecord> {
    let mut open: Vec<ShardRecord> = state.streams[name]
        .shards
        .iter()
        .filter(|shard| shard.state == ShardState::Open)
        .cloned()
        .collect();
    open.sort_by_key(|shard| shard.range.start);
    open
}

fn observed() -> Observed {
    Observed {
        now_ms: NOW,
        ..Observed::default()
    }
}

fn load(records_per_sec: f64) -> ShardLoad {
    ShardLoad {
        bytes_per_sec: records_per_sec * 100.0,
        records_per_sec,
    }
}

fn preferred_counts(state: &ControlState, name: &str) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for shard in open_shards(state, name) {
        *counts.entry(shard.preferred_node().unwrap()).or_insert(0) += 1;
    }
    counts
}

// --- UpdateShardCount -----------------------------------------------------------------------

#[test]
fn update_shard_count_steps_until_uniform_then_stops() {
    let mut state = three_azs();
    create(&mut state, "s", 3, StreamMode::Provisioned);
    let reply = apply(
        &mut state,
        ControlCommand::UpdateShardCount {
            name: "s".into(),
            target: 5,
            now_ms: NOW,
            shard_limit: 1_000,
        },
    )
    .unwrap();
    assert_eq!(reply, ControlReply::Done);
    let policy = Policy::default();
    let mut steps = 0;
    loop {
        let commands = plan_resharding(&state, &observed(), &policy);
        if commands.is_empty() {
            break;
        }
        assert_eq!(commands.len(), 1);
        let ControlCommand::ReshardStep { reason, .. } = &commands[0] else {
            panic!("unexpected {:?}", commands[0]);
        };
        assert_eq!(reason, "UpdateShardCount to 5");
        apply_all(&mut state, commands);
        // Nothing more while parents are being sealed.
        assert!(plan_resharding(&state, &observed(), &policy).is_empty());
        seal_and_activate(&mut state, "s");
        steps += 1;
        assert!(steps < 10, "does not converge");
    }
    let ranges: Vec<HashKeyRange> = open_shards(&state, "s").iter().map(|s| s.range).collect();
    assert_eq!(ranges, HashKeyRange::split_evenly(5));
    assert_eq!(state.streams["s"].status, StreamStatus::Active);
    assert_eq!(state.streams["s"].scaling_target, None);
}

// --- On-demand scaling ----------------------------------------------------------------------

fn on_demand_policy() -> Policy {
    Policy {
        on_demand: OnDemandPolicy {
            split_cooldown_ms: 1_000,
            merge_cooldown_ms: 60_000,
            ..OnDemandPolicy::default()
        },
        ..Policy::default()
    }
}

#[test]
fn a_hot_on_demand_shard_splits_at_its_midpoint_and_says_why() {
    let mut state = three_azs();
    create(&mut state, "s", 4, StreamMode::OnDemand);
    let open = open_shards(&state, "s");
    let mut seen = observed();
    for shard in &open {
        seen.load.insert(shard.group, load(100.0));
    }
    let hot = &open[1];
    seen.load.insert(hot.group, load(800.0));
    let commands = plan_resharding(&state, &seen, &on_demand_policy());
    assert_eq!(commands.len(), 1, "{commands:?}");
    let ControlCommand::ReshardStep { plan, reason, .. } = &commands[0] else {
        panic!("{commands:?}");
    };
    assert_eq!(plan.merges, vec![]);
    assert_eq!(plan.splits.len(), 1);
    let (index, key) = plan.splits[0];
    assert_eq!(index, hot.index);
    let (low, high) = hot.range.split_at(key).unwrap();
    assert!(low.end.0.abs_diff(high.end.0 - high.start.0) <= 1 + low.start.0);
    assert!(reason.contains("on-demand split"), "{reason}");
    assert!(reason.contains(&hot.id().to_string()), "{reason}");
    assert!(reason.contains("800 records/s"), "{reason}");

    apply_all(&mut state, commands);
    seal_and_activate(&mut state, "s");
    assert_eq!(state.streams["s"].open_shard_count(), 5);
    let child = open_shards(&state, "s")
        .into_iter()
        .find(|shard| shard.parent == Some(hot.index))
        .unwrap();
    assert!(child.reason.unwrap().contains("on-demand split"));
}

#[test]
fn on_demand_splits_wait_for_the_cooldown_and_for_measurements() {
    let mut state = three_azs();
    create(&mut state, "s", 4, StreamMode::OnDemand);
    let open = open_shards(&state, "s");
    let mut policy = on_demand_policy();
    let mut seen = observed();
    // No measurement: nothing.
    assert!(plan_resharding(&state, &seen, &policy).is_empty());
    seen.load.insert(open[0].group, load(2_000.0));
    // Within the cooldown since the last reshard (creation at 1 s): nothing.
    policy.on_demand.split_cooldown_ms = NOW;
    assert!(plan_resharding(&state, &seen, &policy).is_empty());
    policy.on_demand.split_cooldown_ms = 1_000;
    assert_eq!(plan_resharding(&state, &seen, &policy).len(), 1);
    // Provisioned streams never scale by themselves.
    let mut provisioned = three_azs();
    create(&mut provisioned, "s", 4, StreamMode::Provisioned);
    let mut seen = observed();
    for shard in open_shards(&provisioned, "s") {
        seen.load.insert(shard.group, load(5_000.0));
    }
    assert!(plan_resharding(&provisioned, &seen, &policy).is_empty());
}

#[test]
fn on_demand_splits_stop_at_the_shard_limit() {
    let mut state = three_azs();
    create(&mut state, "s", 4, StreamMode::OnDemand);
    let mut seen = observed();
    for shard in open_shards(&state, "s") {
        seen.load.insert(shard.group, load(5_000.0));
    }
    let mut policy = on_demand_policy();
    policy.shard_limit = 6;
    let commands = plan_resharding(&state, &seen, &policy);
    let ControlCommand::ReshardStep { plan, .. } = &commands[0] else {
        panic!("{commands:?}");
    };
    assert_eq!(plan.splits.len(), 2, "only two more shards fit");
    policy.shard_limit = 4;
    assert!(plan_resharding(&state, &seen, &policy).is_empty());
}

#[test]
fn cold_on_demand_neighbours_merge_but_not_below_the_minimum() {
    let mut state = three_azs();
    create(&mut state, "s", 8, StreamMode::OnDemand);
    let open = open_shards(&state, "s");
    let mut seen = observed();
    for (position, shard) in open.iter().enumerate() {
        // Shards 2 and 3 are warm; the others idle.
        let rate = if position == 2 || position == 3 {
            400.0
        } else {
            5.0
        };
        seen.load.insert(shard.group, load(rate));
    }
    let mut policy = on_demand_policy();
    policy.on_demand.merge_cooldown_ms = NOW; // not yet
    assert!(plan_resharding(&state, &seen, &policy).is_empty());
    policy.on_demand.merge_cooldown_ms = 60_000;
    let commands = plan_resharding(&state, &seen, &policy);
    let ControlCommand::ReshardStep { plan, reason, .. } = &commands[0] else {
        panic!("{commands:?}");
    };
    assert!(reason.starts_with("on-demand merge"), "{reason}");
    let pairs: Vec<(u32, u32)> = vec![
        (open[0].index, open[1].index),
        (open[4].index, open[5].index),
        (open[6].index, open[7].index),
    ];
    assert_eq!(plan.merges, pairs);
    apply_all(&mut state, commands);
    seal_and_activate(&mut state, "s");
    assert_eq!(state.streams["s"].open_shard_count(), 5);

    // At the minimum (4 by default) it stays.
    let mut state = three_azs();
    create(&mut state, "s", 4, StreamMode::OnDemand);
    let mut seen = observed();
    for shard in open_shards(&state, "s") {
        seen.load.insert(shard.group, load(0.0));
    }
    assert!(plan_resharding(&state, &seen, &policy).is_empty());
}

// --- Leader placement -----------------------------------------------------------------------

#[test]
fn twelve_shards_get_four_leaders_per_node() {
    let mut state = three_azs();
    create(&mut state, "s", 12, StreamMode::Provisioned);
    // Skew it: every shard prefers node 1.
    let groups: Vec<(u64, u64)> = open_shards(&state, "s")
        .iter()
        .map(|shard| (shard.group, 1))
        .collect();
    apply(
        &mut state,
        ControlCommand::SetPreferredLeaders { leaders: groups },
    )
    .unwrap();
    assert_eq!(preferred_counts(&state, "s")[&1], 12);
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    let counts = preferred_counts(&state, "s");
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    // Balanced: nothing more to do.
    assert!(plan_leaders(&state, &observed(), &Policy::default()).is_empty());
}

#[test]
fn leaders_leave_a_down_node_for_the_current_leader_and_come_back() {
    let mut state = three_azs();
    create(&mut state, "s", 12, StreamMode::Provisioned);
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    let before = preferred_counts(&state, "s");
    assert_eq!(before[&3], 4);
    // Node 3 goes down; its shards failed over, some to node 1, some to node 2.
    let mut seen = observed();
    seen.down_since_ms.insert(3, NOW - 1_000);
    let on_three: Vec<ShardRecord> = open_shards(&state, "s")
        .into_iter()
        .filter(|shard| shard.preferred_node() == Some(3))
        .collect();
    for (position, shard) in on_three.iter().enumerate() {
        seen.leaders
            .insert(shard.group, if position % 2 == 0 { 1 } else { 2 });
    }
    let commands = plan_leaders(&state, &seen, &Policy::default());
    apply_all(&mut state, commands);
    for (position, shard) in on_three.iter().enumerate() {
        let now = state.streams["s"].shards[shard.index as usize].preferred_node();
        assert_eq!(now, Some(if position % 2 == 0 { 1 } else { 2 }));
    }
    assert_eq!(
        preferred_counts(&state, "s")
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![6, 6]
    );
    // Node 3 returns: leadership spreads back onto it.
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    assert_eq!(
        preferred_counts(&state, "s")
            .values()
            .copied()
            .collect::<Vec<_>>(),
        vec![4, 4, 4]
    );
}

#[test]
fn draining_moves_every_leader_away_and_undrain_brings_them_back() {
    let mut state = three_azs();
    create(&mut state, "s", 12, StreamMode::Provisioned);
    apply(
        &mut state,
        ControlCommand::SetDraining {
            node: 2,
            draining: true,
        },
    )
    .unwrap();
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    let counts = preferred_counts(&state, "s");
    assert_eq!(counts.get(&2), None, "{counts:?}");
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![6, 6]);
    apply(
        &mut state,
        ControlCommand::SetDraining {
            node: 2,
            draining: false,
        },
    )
    .unwrap();
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    assert_eq!(preferred_counts(&state, "s")[&2], 4);
}

#[test]
fn leader_changes_per_round_are_bounded() {
    let mut state = three_azs();
    create(&mut state, "s", 12, StreamMode::Provisioned);
    let groups: Vec<(u64, u64)> = open_shards(&state, "s")
        .iter()
        .map(|shard| (shard.group, 1))
        .collect();
    apply(
        &mut state,
        ControlCommand::SetPreferredLeaders { leaders: groups },
    )
    .unwrap();
    let policy = Policy {
        max_leader_changes: 3,
        ..Policy::default()
    };
    let commands = plan_leaders(&state, &observed(), &policy);
    let ControlCommand::SetPreferredLeaders { leaders } = &commands[0] else {
        panic!("{commands:?}");
    };
    assert_eq!(leaders.len(), 3);
}

#[test]
fn hot_and_cold_leaders_swap_to_even_the_load() {
    let mut state = three_azs();
    create(&mut state, "s", 6, StreamMode::Provisioned);
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    // Two leaders per node; node 1's two are hot.
    let mut seen = observed();
    for shard in open_shards(&state, "s") {
        let hot = shard.preferred_node() == Some(1);
        seen.load
            .insert(shard.group, load(if hot { 900.0 } else { 10.0 }));
    }
    let commands = plan_leaders(&state, &seen, &Policy::default());
    assert_eq!(commands.len(), 1, "{commands:?}");
    apply_all(&mut state, commands);
    let counts = preferred_counts(&state, "s");
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    let hot_on_one = open_shards(&state, "s")
        .iter()
        .filter(|shard| shard.preferred_node() == Some(1))
        .filter(|shard| seen.load[&shard.group].records_per_sec > 100.0)
        .count();
    assert_eq!(hot_on_one, 1, "one hot leader moved off node 1");
    // Even enough now: no further swaps.
    assert!(plan_leaders(&state, &seen, &Policy::default()).is_empty());
}

// --- Replica repair and balance -------------------------------------------------------------

fn four_nodes() -> ControlState {
    cluster_of(&[(1, "az-a"), (2, "az-b"), (3, "az-c"), (4, "az-a")])
}

fn replicas_on(state: &ControlState, node: u64) -> usize {
    state
        .streams
        .values()
        .flat_map(|stream| stream.shards.iter())
        .flat_map(|shard| shard.replicas.iter())
        .filter(|replica| replica.node == node)
        .count()
}

/// What the shard leaders do once a learner caught up.
fn finish_moves(state: &mut ControlState) {
    let stream_names: Vec<String> = state.streams.keys().cloned().collect();
    for name in stream_names {
        let stream = state.streams[&name].clone();
        for shard in &stream.shards {
            if let Some(moving) = &shard.moving {
                apply(
                    state,
                    ControlCommand::FinishReplicaMove {
                        name: name.clone(),
                        created_ms: stream.created_ms,
                        shard: shard.index,
                        from_replica: moving.from_replica,
                        to_replica: moving.to_replica,
                    },
                )
                .unwrap();
            }
        }
    }
}

#[test]
fn a_node_down_past_the_grace_period_is_rebuilt_in_its_az() {
    let mut state = cluster_of(&[(1, "az-a"), (2, "az-b"), (3, "az-c")]);
    create(&mut state, "s", 6, StreamMode::Provisioned);
    apply(
        &mut state,
        ControlCommand::RegisterNode {
            node: NodeRecord {
                id: 4,
                peer_addr: "p4".into(),
                api_addr: "a4".into(),
                az: "az-a".into(),
                draining: false,
            },
        },
    )
    .unwrap();
    apply(
        &mut state,
        ControlCommand::RegisterNode {
            node: NodeRecord {
                id: 5,
                peer_addr: "p5".into(),
                api_addr: "a5".into(),
                az: "az-b".into(),
                draining: false,
            },
        },
    )
    .unwrap();
    let policy = Policy {
        repair_grace_ms: 60_000,
        max_moves_in_flight: 4,
        ..Policy::default()
    };
    let mut seen = observed();
    seen.down_since_ms.insert(1, NOW - 30_000);
    assert!(
        plan_replica_moves(&state, &seen, &policy).is_empty(),
        "within the grace period nothing moves"
    );
    seen.down_since_ms.insert(1, NOW - 61_000);
    let commands = plan_replica_moves(&state, &seen, &policy);
    assert_eq!(commands.len(), 4, "bounded by the moves in flight");
    for command in &commands {
        let ControlCommand::StartReplicaMove {
            to_node, reason, ..
        } = command
        else {
            panic!("{command:?}");
        };
        assert_eq!(*to_node, 4, "same AZ first");
        assert!(reason.contains("node 1 down for 61s"), "{reason}");
    }
    apply_all(&mut state, commands);
    assert!(
        plan_replica_moves(&state, &seen, &policy).is_empty(),
        "no more while four are in flight"
    );
    finish_moves(&mut state);
    let commands = plan_replica_moves(&state, &seen, &policy);
    apply_all(&mut state, commands);
    finish_moves(&mut state);
    assert_eq!(replicas_on(&state, 1), 0);
    assert_eq!(replicas_on(&state, 4), 6);
    for shard in open_shards(&state, "s") {
        let azs: BTreeSet<&str> = shard
            .replicas
            .iter()
            .map(|r| state.nodes[&r.node].az.as_str())
            .collect();
        assert_eq!(azs.len(), 3, "one replica per AZ still");
        assert!(shard.replicas.iter().all(|r| !r.learner));
    }
}

#[test]
fn without_a_node_in_the_same_az_another_az_is_used() {
    let mut state = cluster_of(&[(1, "az-a"), (2, "az-b"), (3, "az-c")]);
    create(&mut state, "s", 2, StreamMode::Provisioned);
    apply(
        &mut state,
        ControlCommand::RegisterNode {
            node: NodeRecord {
                id: 4,
                peer_addr: "p4".into(),
                api_addr: "a4".into(),
                az: "az-d".into(),
                draining: false,
            },
        },
    )
    .unwrap();
    let mut seen = observed();
    seen.down_since_ms.insert(2, 0);
    let commands = plan_replica_moves(&state, &seen, &Policy::default());
    assert_eq!(commands.len(), 2);
    assert!(
        commands
            .iter()
            .all(|command| matches!(command, ControlCommand::StartReplicaMove { to_node: 4, .. }))
    );
    // With nowhere to go (three nodes, three replicas each) nothing is planned.
    let mut state = three_azs();
    create(&mut state, "s", 2, StreamMode::Provisioned);
    assert!(plan_replica_moves(&state, &seen, &Policy::default()).is_empty());
}

#[test]
fn a_new_node_takes_replicas_until_balanced_within_az_rules() {
    let mut state = cluster_of(&[(1, "az-a"), (2, "az-b"), (3, "az-c")]);
    create(&mut state, "s", 12, StreamMode::Provisioned);
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    apply(
        &mut state,
        ControlCommand::RegisterNode {
            node: NodeRecord {
                id: 4,
                peer_addr: "p4".into(),
                api_addr: "a4".into(),
                az: "az-a".into(),
                draining: false,
            },
        },
    )
    .unwrap();
    let policy = Policy::default();
    for _ in 0..20 {
        let commands = plan_replica_moves(&state, &observed(), &policy);
        if commands.is_empty() {
            break;
        }
        for command in &commands {
            let ControlCommand::StartReplicaMove { reason, .. } = command else {
                panic!("{command:?}");
            };
            assert!(reason.starts_with("balance"), "{reason}");
        }
        apply_all(&mut state, commands);
        assert!(
            plan_replica_moves(&state, &observed(), &policy).is_empty(),
            "one wave at a time"
        );
        finish_moves(&mut state);
    }
    // Node 4 shares az-a with node 1: it can only take node 1's replicas, so they end even.
    assert_eq!(replicas_on(&state, 1) + replicas_on(&state, 4), 12);
    assert!(
        replicas_on(&state, 1).abs_diff(replicas_on(&state, 4)) <= 1,
        "{} {}",
        replicas_on(&state, 1),
        replicas_on(&state, 4)
    );
    assert_eq!(replicas_on(&state, 2), 12);
    // Leaders follow onto the new node.
    let commands = plan_leaders(&state, &observed(), &Policy::default());
    apply_all(&mut state, commands);
    let counts = preferred_counts(&state, "s");
    assert!(counts.get(&4).copied().unwrap_or(0) >= 2, "{counts:?}");
    // No balance while a node is down.
    let mut seen = observed();
    seen.down_since_ms.insert(2, NOW);
    let mut unbalanced = four_nodes();
    create(&mut unbalanced, "s", 12, StreamMode::Provisioned);
    assert!(plan_replica_moves(&unbalanced, &seen, &policy).is_empty());
}
