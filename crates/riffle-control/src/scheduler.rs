//! The scheduler's decisions, as pure functions: the control state and what the metadata leader
//! observes (nodes down and since when, shard leaders, write rates) in, control commands out.
//!
//! The metadata leader runs [`plan`] every second and proposes what it returns. Every decision
//! is therefore a committed entry, and a new metadata leader resumes from the state where the
//! old one stopped. The commands are re-validated when applied, so a plan computed from a state
//! that moved on meanwhile changes nothing. What the commands ask for is carried out by the
//! nodes: the agent seals resharded parents, a shard's leader transfers leadership to the
//! preferred node and drives replica moves through Raft membership changes.
//!
//! Rules:
//! - **UpdateShardCount**: one [`uniform_scaling_step`] at a time until the open shards are the
//!   target's equal ranges.
//! - **On-demand scaling**: a shard whose write rate reaches the split threshold splits at its
//!   hash midpoint; two adjacent shards that together write less than `merge_fraction` of it
//!   merge, never below `min_shards`; each after its cooldown since the stream's last reshard.
//! - **Leader placement**: every shard's preferred leader is an up, non-draining node holding a
//!   voting replica (the current leader when it qualifies); per stream, preferred leaders are
//!   spread so that no node has two more than another; then, cluster-wide, leaders of hot and
//!   cold shards of a stream swap nodes while that evens the write load between nodes.
//! - **Replica repair**: a node down longer than the grace period has each of its replicas
//!   replaced on an up node: one in the same AZ first, else an AZ the shard does not use yet,
//!   else any; among equals the node with the fewest replicas.
//! - **Replica balance**: with every node up and no move running, replicas move from the node
//!   holding the most to the node holding the fewest until they differ by at most one (a node
//!   that joined fills up this way), never putting two replicas of a shard in one AZ that were
//!   not already.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use riffle_types::HashKey;
use riffle_types::HashKeyRange;
use riffle_types::limits;

use crate::command::ControlCommand;
use crate::command::open_shard_total;
use crate::model::ControlState;
use crate::model::ShardRecord;
use crate::model::ShardState;
use crate::model::StreamMode;
use crate::model::StreamRecord;
use crate::model::StreamStatus;
use crate::reshard::ReshardPlan;
use crate::reshard::uniform_scaling_step;

/// A shard's write capacity, after Kinesis: 1 MiB or 1000 records per second.
pub const SHARD_WRITE_BYTES_PER_SEC: f64 = 1_048_576.0;
pub const SHARD_WRITE_RECORDS_PER_SEC: f64 = 1_000.0;

/// A shard's write rate, as measured by its leader.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShardLoad {
    pub bytes_per_sec: f64,
    pub records_per_sec: f64,
}

impl ShardLoad {
    /// The load as a fraction of one shard's write capacity (the nearer of the two limits).
    pub fn utilization(&self) -> f64 {
        (self.bytes_per_sec / SHARD_WRITE_BYTES_PER_SEC)
            .max(self.records_per_sec / SHARD_WRITE_RECORDS_PER_SEC)
    }
}

/// When on-demand streams split and merge.
#[derive(Clone, Debug, PartialEq)]
pub struct OnDemandPolicy {
    /// A shard writing at least this many bytes, or records, per second is split.
    pub split_bytes_per_sec: f64,
    pub split_records_per_sec: f64,
    /// Two adjacent shards writing together less than this fraction of the split threshold
    /// are merged.
    pub merge_fraction: f64,
    /// An on-demand stream keeps at least this many open shards.
    pub min_shards: u32,
    /// How long after a stream's last reshard before it splits again, or merges.
    pub split_cooldown_ms: u64,
    pub merge_cooldown_ms: u64,
}

impl Default for OnDemandPolicy {
    /// Splits at 75% of a shard's capacity, merges neighbours below a quarter of that.
    fn default() -> Self {
        OnDemandPolicy {
            split_bytes_per_sec: 0.75 * SHARD_WRITE_BYTES_PER_SEC,
            split_records_per_sec: 0.75 * SHARD_WRITE_RECORDS_PER_SEC,
            merge_fraction: 0.25,
            min_shards: limits::ON_DEMAND_INITIAL_SHARDS,
            split_cooldown_ms: 30_000,
            merge_cooldown_ms: 15 * 60_000,
        }
    }
}

impl OnDemandPolicy {
    /// Load relative to the split threshold: at 1 or above, the shard splits.
    pub fn heat(&self, load: &ShardLoad) -> f64 {
        (load.bytes_per_sec / self.split_bytes_per_sec)
            .max(load.records_per_sec / self.split_records_per_sec)
    }
}

/// The scheduler's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Open-shard limit across all streams (on-demand splits stop there).
    pub shard_limit: u32,
    pub on_demand: OnDemandPolicy,
    /// How long a node stays down before its replicas are rebuilt elsewhere.
    pub repair_grace_ms: u64,
    /// Replica moves running at once, cluster-wide.
    pub max_moves_in_flight: usize,
    /// Preferred-leader changes per round (each becomes a leadership transfer).
    pub max_leader_changes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            shard_limit: limits::DEFAULT_SHARD_LIMIT,
            on_demand: OnDemandPolicy::default(),
            repair_grace_ms: 5 * 60_000,
            max_moves_in_flight: 8,
            max_leader_changes: 32,
        }
    }
}

/// What the metadata leader observes of the cluster.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub now_ms: u64,
    /// Registered nodes believed down, with when they were first seen down.
    pub down_since_ms: BTreeMap<u64, u64>,
    /// The node leading each shard group, where known.
    pub leaders: BTreeMap<u64, u64>,
    /// Each shard group's write rate, where its leader reported one.
    pub load: BTreeMap<u64, ShardLoad>,
}

impl Observed {
    pub fn is_up(&self, node: u64) -> bool {
        !self.down_since_ms.contains_key(&node)
    }

    fn down_nodes(&self) -> Vec<u64> {
        self.down_since_ms.keys().copied().collect()
    }
}

/// Everything the scheduler wants done now.
pub fn plan(state: &ControlState, observed: &Observed, policy: &Policy) -> Vec<ControlCommand> {
    let mut commands = plan_resharding(state, observed, policy);
    commands.extend(plan_leaders(state, observed, policy));
    commands.extend(plan_replica_moves(state, observed, policy));
    commands
}

// -------------------------------------------------------------------------------------------
// Resharding: UpdateShardCount steps and on-demand scaling.
// -------------------------------------------------------------------------------------------

/// The next reshard step of every stream that has one to take.
pub fn plan_resharding(
    state: &ControlState,
    observed: &Observed,
    policy: &Policy,
) -> Vec<ControlCommand> {
    let mut open_total = open_shard_total(state) as u32;
    let mut commands = Vec::new();
    for stream in state.streams.values() {
        let settled = matches!(stream.status, StreamStatus::Active | StreamStatus::Updating)
            && !stream
                .shards
                .iter()
                .any(|shard| shard.state == ShardState::Closing);
        if !settled {
            continue;
        }
        let (step, shard_limit) = match stream.scaling_target {
            // The target was checked against the limit when accepted; the steps on the way
            // may pass it for a moment.
            Some(target) => (
                uniform_scaling_step(stream, target)
                    .map(|plan| (plan, format!("UpdateShardCount to {target}"))),
                u32::MAX,
            ),
            None if stream.mode == StreamMode::OnDemand
                && stream.status == StreamStatus::Active =>
            {
                let headroom = policy.shard_limit.saturating_sub(open_total);
                (
                    autoscale_step(stream, observed, &policy.on_demand, headroom),
                    policy.shard_limit,
                )
            }
            None => (None, policy.shard_limit),
        };
        let Some((plan, reason)) = step else {
            continue;
        };
        open_total = open_total.saturating_add_signed(plan.added_open_shards() as i32);
        commands.push(ControlCommand::ReshardStep {
            name: stream.name.clone(),
            created_ms: stream.created_ms,
            plan,
            reason,
            now_ms: observed.now_ms,
            shard_limit,
            avoid: observed.down_nodes(),
        });
    }
    commands
}

/// An on-demand stream's next split (hot shards) or merge (cold neighbours), with the reason.
fn autoscale_step(
    stream: &StreamRecord,
    observed: &Observed,
    policy: &OnDemandPolicy,
    headroom: u32,
) -> Option<(ReshardPlan, String)> {
    let mut open: Vec<&ShardRecord> = stream
        .shards
        .iter()
        .filter(|shard| shard.state == ShardState::Open)
        .collect();
    open.sort_by_key(|shard| shard.range.start);
    let since_reshard = observed.now_ms.saturating_sub(stream.last_resharded_ms);
    let load_of = |shard: &ShardRecord| observed.load.get(&shard.group).copied();

    if since_reshard >= policy.split_cooldown_ms {
        let room = headroom.min(limits::MAX_SHARDS_PER_STREAM.saturating_sub(open.len() as u32));
        let mut hot: Vec<(&ShardRecord, ShardLoad, HashKey)> = open
            .iter()
            .filter_map(|shard| {
                let load = load_of(shard)?;
                let middle = midpoint(&shard.range)?;
                (policy.heat(&load) >= 1.0).then_some((*shard, load, middle))
            })
            .collect();
        hot.sort_by(|a, b| policy.heat(&b.1).total_cmp(&policy.heat(&a.1)));
        hot.truncate(room as usize);
        if !hot.is_empty() {
            let plan = ReshardPlan {
                splits: hot
                    .iter()
                    .map(|(shard, _, middle)| (shard.index, *middle))
                    .collect(),
                merges: Vec::new(),
            };
            let shards: Vec<String> = hot
                .iter()
                .map(|(shard, load, _)| format!("{} wrote {}", shard.id(), describe(load)))
                .collect();
            let reason = format!(
                "on-demand split: {} (threshold {})",
                shards.join(", "),
                describe(&ShardLoad {
                    bytes_per_sec: policy.split_bytes_per_sec,
                    records_per_sec: policy.split_records_per_sec,
                })
            );
            return Some((plan, reason));
        }
    }

    let spare = (open.len() as u32).saturating_sub(policy.min_shards) as usize;
    if spare == 0 || since_reshard < policy.merge_cooldown_ms {
        return None;
    }
    let mut plan = ReshardPlan::default();
    let mut described = Vec::new();
    let mut cursor = 0;
    while cursor + 1 < open.len() && plan.merges.len() < spare {
        let (left, right) = (open[cursor], open[cursor + 1]);
        let cold = match (load_of(left), load_of(right)) {
            (Some(a), Some(b)) if left.range.is_adjacent(&right.range) => {
                (policy.heat(&a) + policy.heat(&b) < policy.merge_fraction).then_some((a, b))
            }
            _ => None,
        };
        match cold {
            Some((a, b)) => {
                plan.merges.push((left.index, right.index));
                described.push(format!(
                    "{} and {} wrote {}",
                    left.id(),
                    right.id(),
                    describe(&ShardLoad {
                        bytes_per_sec: a.bytes_per_sec + b.bytes_per_sec,
                        records_per_sec: a.records_per_sec + b.records_per_sec,
                    })
                ));
                cursor += 2;
            }
            None => cursor += 1,
        }
    }
    if plan.merges.is_empty() {
        return None;
    }
    let reason = format!(
        "on-demand merge: {} (below {:.0}% of the split threshold)",
        described.join(", "),
        policy.merge_fraction * 100.0
    );
    Some((plan, reason))
}

/// Where to split a range in two halves; `None` for a range of one key.
fn midpoint(range: &HashKeyRange) -> Option<HashKey> {
    let width = range.end.0.checked_sub(range.start.0)?;
    (width > 0).then(|| HashKey(range.start.0 + width / 2 + 1))
}

fn describe(load: &ShardLoad) -> String {
    format!(
        "{:.0} records/s, {:.0} KiB/s",
        load.records_per_sec,
        load.bytes_per_sec / 1024.0
    )
}

// -------------------------------------------------------------------------------------------
// Leader placement.
// -------------------------------------------------------------------------------------------

/// Preferred-leader changes: off down or draining nodes, then spread per stream, then evened
/// by load. At most one command.
pub fn plan_leaders(
    state: &ControlState,
    observed: &Observed,
    policy: &Policy,
) -> Vec<ControlCommand> {
    let eligible = |node: u64| {
        observed.is_up(node)
            && state
                .nodes
                .get(&node)
                .is_some_and(|record| !record.draining)
    };
    let mut placement = LeaderPlacement::new(state);
    let mut budget = policy.max_leader_changes;

    // 1. Every shard led from somewhere usable.
    for stream in state.streams.values() {
        for shard in &stream.shards {
            if budget == 0 || shard.preferred_node().is_some_and(eligible) {
                continue;
            }
            let candidates: Vec<u64> = shard
                .voters()
                .map(|replica| replica.node)
                .filter(|node| eligible(*node))
                .collect();
            let current = observed
                .leaders
                .get(&shard.group)
                .filter(|node| candidates.contains(node));
            let choice = current.copied().or_else(|| {
                candidates
                    .iter()
                    .copied()
                    .min_by_key(|node| (placement.cluster_count(*node), *node))
            });
            if let Some(node) = choice {
                placement.set(shard, node);
                budget -= 1;
            }
        }
    }

    // 2. Per stream, open shards' leaders spread over the nodes.
    for stream in state.streams.values() {
        let open: Vec<&ShardRecord> = stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .collect();
        let nodes: BTreeSet<u64> = open
            .iter()
            .flat_map(|shard| shard.voters().map(|replica| replica.node))
            .filter(|node| eligible(*node))
            .collect();
        while budget > 0 {
            let count = |node: u64| {
                open.iter()
                    .filter(|shard| placement.preferred(shard) == Some(node))
                    .count()
            };
            let counts: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, count(*n))).collect();
            // The move between the most different pair of nodes: from a node with the most
            // leaders to one with at least two fewer that holds a voter of the shard.
            let best = open
                .iter()
                .filter_map(|shard| {
                    let from = placement.preferred(shard)?;
                    let from_count = *counts.get(&from)?;
                    shard
                        .voters()
                        .map(|replica| replica.node)
                        .filter_map(|to| Some((to, *counts.get(&to)?)))
                        .filter(|(_, to_count)| to_count + 2 <= from_count)
                        .map(|(to, to_count)| {
                            let already_leads = observed.leaders.get(&shard.group) == Some(&to);
                            let key = (
                                std::cmp::Reverse(from_count - to_count),
                                !already_leads,
                                placement.cluster_count(to),
                                shard.group,
                                to,
                            );
                            (key, *shard, to)
                        })
                        .min_by_key(|(key, _, _)| *key)
                })
                .min_by_key(|(key, _, _)| *key);
            let Some((_, shard, to)) = best else {
                break;
            };
            placement.set(shard, to);
            budget -= 1;
        }
    }

    // 3. Cluster-wide, swap a hot and a cold leader of one stream between the most and the
    //    least loaded nodes while that evens the load (per-stream counts stay as they are).
    if budget >= 2
        && let Some((hot, to_cold, cold, to_hot)) =
            best_load_swap(state, observed, &placement, &eligible)
    {
        placement.set(hot, to_cold);
        placement.set(cold, to_hot);
    }

    let leaders: Vec<(u64, u64)> = placement.changes.into_iter().collect();
    if leaders.is_empty() {
        return Vec::new();
    }
    vec![ControlCommand::SetPreferredLeaders { leaders }]
}

/// Preferred leaders as planned so far: the state's, with the round's changes on top.
struct LeaderPlacement {
    changes: BTreeMap<u64, u64>,
    /// Open shards each node is preferred for, cluster-wide.
    counts: BTreeMap<u64, usize>,
}

impl LeaderPlacement {
    fn new(state: &ControlState) -> Self {
        let mut counts = BTreeMap::new();
        for shard in state
            .streams
            .values()
            .flat_map(|stream| stream.shards.iter())
            .filter(|shard| shard.state == ShardState::Open)
        {
            if let Some(node) = shard.preferred_node() {
                *counts.entry(node).or_insert(0) += 1;
            }
        }
        LeaderPlacement {
            changes: BTreeMap::new(),
            counts,
        }
    }

    fn preferred(&self, shard: &ShardRecord) -> Option<u64> {
        self.changes
            .get(&shard.group)
            .copied()
            .or_else(|| shard.preferred_node())
    }

    fn cluster_count(&self, node: u64) -> usize {
        self.counts.get(&node).copied().unwrap_or(0)
    }

    fn set(&mut self, shard: &ShardRecord, node: u64) {
        if shard.state == ShardState::Open {
            if let Some(old) = self.preferred(shard)
                && let Some(count) = self.counts.get_mut(&old)
            {
                *count = count.saturating_sub(1);
            }
            *self.counts.entry(node).or_insert(0) += 1;
        }
        self.changes.insert(shard.group, node);
    }
}

/// Write load (in shard capacities) below which nodes count as evenly loaded.
const LOAD_TOLERANCE: f64 = 0.5;

/// The swap of two open shards' leaders (same stream: `hot` from the most loaded node to the
/// least, `cold` the other way) that evens the nodes' write load most, if it is worth it.
fn best_load_swap<'a>(
    state: &'a ControlState,
    observed: &Observed,
    placement: &LeaderPlacement,
    eligible: &dyn Fn(u64) -> bool,
) -> Option<(&'a ShardRecord, u64, &'a ShardRecord, u64)> {
    let utilization = |shard: &ShardRecord| {
        observed
            .load
            .get(&shard.group)
            .map(ShardLoad::utilization)
            .unwrap_or(0.0)
    };
    let mut node_load: BTreeMap<u64, f64> = state
        .nodes
        .keys()
        .filter(|node| eligible(**node))
        .map(|node| (*node, 0.0))
        .collect();
    for shard in state
        .streams
        .values()
        .flat_map(|stream| stream.shards.iter())
        .filter(|shard| shard.state == ShardState::Open)
    {
        if let Some(node) = placement.preferred(shard)
            && let Some(load) = node_load.get_mut(&node)
        {
            *load += utilization(shard);
        }
    }
    let (&busy, &busy_load) = node_load.iter().max_by(|a, b| a.1.total_cmp(b.1))?;
    let (&idle, &idle_load) = node_load.iter().min_by(|a, b| a.1.total_cmp(b.1))?;
    let gap = busy_load - idle_load;
    if busy == idle || gap < LOAD_TOLERANCE {
        return None;
    }
    let mut best: Option<(f64, &ShardRecord, &ShardRecord)> = None;
    for stream in state.streams.values() {
        let led_by = |node: u64| {
            stream.shards.iter().filter(move |shard| {
                shard.state == ShardState::Open
                    && placement.preferred(shard) == Some(node)
                    && shard.has_voter_on(busy)
                    && shard.has_voter_on(idle)
            })
        };
        for hot in led_by(busy) {
            for cold in led_by(idle) {
                let moved = utilization(hot) - utilization(cold);
                let new_gap = (gap - 2.0 * moved).abs();
                // Worth it only if the gap shrinks by a quarter or more (no churn over noise).
                if new_gap <= gap * 0.75 && best.is_none_or(|(gap, _, _)| new_gap < gap) {
                    best = Some((new_gap, hot, cold));
                }
            }
        }
    }
    let (_, hot, cold) = best?;
    Some((hot, idle, cold, busy))
}

// -------------------------------------------------------------------------------------------
// Replica repair and balance.
// -------------------------------------------------------------------------------------------

/// Replica moves to start: repairs of nodes down past the grace period first, then (with the
/// whole cluster up) balance.
pub fn plan_replica_moves(
    state: &ControlState,
    observed: &Observed,
    policy: &Policy,
) -> Vec<ControlCommand> {
    let shards = || {
        state
            .streams
            .values()
            .flat_map(|stream| stream.shards.iter().map(move |shard| (stream, shard)))
    };
    let in_flight = shards().filter(|(_, shard)| shard.moving.is_some()).count();
    let mut budget = policy.max_moves_in_flight.saturating_sub(in_flight);
    let mut counts: BTreeMap<u64, usize> = state.nodes.keys().map(|node| (*node, 0)).collect();
    for (_, shard) in shards() {
        for replica in &shard.replicas {
            *counts.entry(replica.node).or_insert(0) += 1;
        }
    }
    let usable = |node: u64| {
        observed.is_up(node)
            && state
                .nodes
                .get(&node)
                .is_some_and(|record| !record.draining)
    };
    let az_of = |node: u64| state.nodes.get(&node).map(|record| record.az.as_str());
    let mut commands = Vec::new();
    // Repairs.
    for (&dead, &since) in &observed.down_since_ms {
        let down_for = observed.now_ms.saturating_sub(since);
        if down_for < policy.repair_grace_ms || !state.nodes.contains_key(&dead) {
            continue;
        }
        for (stream, shard) in shards() {
            if budget == 0 {
                return commands;
            }
            if shard.moving.is_some() || !shard.has_voter_on(dead) {
                continue;
            }
            let others: BTreeSet<&str> = shard
                .replicas
                .iter()
                .filter(|replica| replica.node != dead)
                .filter_map(|replica| az_of(replica.node))
                .collect();
            let target = state
                .nodes
                .values()
                .filter(|node| usable(node.id))
                .filter(|node| !shard.replicas.iter().any(|r| r.node == node.id))
                .min_by_key(|node| {
                    (
                        others.contains(node.az.as_str()),
                        Some(node.az.as_str()) != az_of(dead),
                        counts.get(&node.id).copied().unwrap_or(0),
                        node.id,
                    )
                });
            let Some(target) = target else {
                continue;
            };
            let reason = format!(
                "repair: node {dead} down for {}s (grace {}s)",
                down_for / 1000,
                policy.repair_grace_ms / 1000
            );
            commands.push(start_move(
                stream,
                shard,
                dead,
                target.id,
                reason,
                observed.now_ms,
                &mut counts,
            ));
            budget -= 1;
        }
    }

    // Balance, one wave at a time, with everything up.
    if !observed.down_since_ms.is_empty() || in_flight > 0 || !commands.is_empty() {
        return commands;
    }
    let nodes: Vec<u64> = counts.keys().copied().filter(|n| usable(*n)).collect();
    let mut moved: BTreeSet<u64> = BTreeSet::new();
    while budget > 0 {
        // The move between the most different pair of nodes that the AZ rule allows.
        let best = shards()
            .filter(|(_, shard)| shard.moving.is_none() && !moved.contains(&shard.group))
            .flat_map(|(stream, shard)| {
                let (counts, nodes) = (&counts, &nodes);
                shard
                    .voters()
                    .map(|replica| replica.node)
                    .filter(move |from| shard.preferred_node() != Some(*from))
                    .flat_map(move |from| nodes.iter().map(move |to| (stream, shard, from, *to)))
                    .filter(move |(_, shard, from, to)| {
                        counts[to] + 2 <= counts.get(from).copied().unwrap_or(0)
                            && !shard.replicas.iter().any(|replica| replica.node == *to)
                            && (az_of(*to) == az_of(*from)
                                || !shard
                                    .replicas
                                    .iter()
                                    .filter(|replica| replica.node != *from)
                                    .any(|replica| az_of(replica.node) == az_of(*to)))
                    })
            })
            .max_by_key(|(_, shard, from, to)| {
                (
                    counts[from] - counts[to],
                    std::cmp::Reverse((shard.group, *to)),
                )
            });
        let Some((stream, shard, busy, idle)) = best else {
            break;
        };
        let reason = format!(
            "balance: node {busy} held {} replicas, node {idle} {}",
            counts[&busy], counts[&idle]
        );
        moved.insert(shard.group);
        commands.push(start_move(
            stream,
            shard,
            busy,
            idle,
            reason,
            observed.now_ms,
            &mut counts,
        ));
        budget -= 1;
    }
    commands
}

/// The command that replaces `shard`'s voter on `from` (which must exist) by a replica on `to`;
/// updates the replica counts.
fn start_move(
    stream: &StreamRecord,
    shard: &ShardRecord,
    from: u64,
    to: u64,
    reason: String,
    now_ms: u64,
    counts: &mut BTreeMap<u64, usize>,
) -> ControlCommand {
    let from_replica = shard
        .voters()
        .find(|replica| replica.node == from)
        .map(|replica| replica.replica)
        .unwrap_or_default();
    *counts.entry(to).or_insert(0) += 1;
    if let Some(count) = counts.get_mut(&from) {
        *count = count.saturating_sub(1);
    }
    ControlCommand::StartReplicaMove {
        name: stream.name.clone(),
        created_ms: stream.created_ms,
        shard: shard.index,
        from_replica,
        to_node: to,
        reason,
        now_ms,
    }
}

#[cfg(test)]
mod tests;
