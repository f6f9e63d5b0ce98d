//! Resharding as data: a [`ReshardPlan`] is a set of splits and merges of a stream's open
//! shards that happen together; [`uniform_scaling_step`] computes the next plan that brings a
//! stream to `UpdateShardCount`'s target with equal hash ranges. Pure functions.
//!
//! UpdateShardCount to T ends with the ranges of `HashKeyRange::split_evenly(T)`. Lineage stays
//! the kind Kinesis clients know (a child has one parent after a split, two adjacent parents
//! after a merge), so the way there goes through intermediate shards, as AWS's does: first every
//! open shard that straddles a target boundary is split at it, then the pieces inside each target
//! range are merged pairwise, adjacent ones first. With T between half and double the open
//! count, a target range holds at most three pieces and a shard at most three, so it takes a
//! few steps.

use riffle_types::HashKey;
use riffle_types::HashKeyRange;
use serde::Deserialize;
use serde::Serialize;

use crate::model::ShardState;
use crate::model::StreamRecord;

/// Splits and merges of open shards, applied together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshardPlan {
    /// `(shard index, new starting hash key)`.
    pub splits: Vec<(u32, HashKey)>,
    /// `(shard index, adjacent shard index)`.
    pub merges: Vec<(u32, u32)>,
}

impl ReshardPlan {
    pub fn is_empty(&self) -> bool {
        self.splits.is_empty() && self.merges.is_empty()
    }

    /// Open shards this plan adds (a split adds one, a merge removes one).
    pub fn added_open_shards(&self) -> i64 {
        self.splits.len() as i64 - self.merges.len() as i64
    }
}

/// Open shards of `stream`, by starting hash key.
fn open_shards_sorted(stream: &StreamRecord) -> Vec<(u32, HashKeyRange)> {
    let mut open: Vec<(u32, HashKeyRange)> = stream
        .shards
        .iter()
        .filter(|shard| shard.state == ShardState::Open)
        .map(|shard| (shard.index, shard.range))
        .collect();
    open.sort_by_key(|(_, range)| range.start);
    open
}

/// Whether the open shards are exactly `split_evenly(target)`.
pub fn is_uniform(stream: &StreamRecord, target: u32) -> bool {
    let open: Vec<HashKeyRange> = open_shards_sorted(stream)
        .into_iter()
        .map(|(_, range)| range)
        .collect();
    open == HashKeyRange::split_evenly(target)
}

/// The next step towards `target` uniform open shards, or `None` when the stream is there.
/// Shards being closed must have finished (the caller waits until none is `Closing`).
pub fn uniform_scaling_step(stream: &StreamRecord, target: u32) -> Option<ReshardPlan> {
    if is_uniform(stream, target) {
        return None;
    }
    let targets = HashKeyRange::split_evenly(target);
    let open = open_shards_sorted(stream);
    // Phase 1: split every open shard at the first target boundary strictly inside it.
    let mut plan = ReshardPlan::default();
    for (index, range) in &open {
        let boundary = targets
            .iter()
            .map(|target_range| target_range.start)
            .find(|start| start.0 > range.start.0 && start.0 <= range.end.0);
        if let Some(boundary) = boundary {
            plan.splits.push((*index, boundary));
        }
    }
    if !plan.is_empty() {
        return Some(plan);
    }
    // Phase 2: every open shard now lies inside one target range; merge neighbours that share
    // one, pairwise (each shard in at most one merge per step).
    let target_of = |range: &HashKeyRange| {
        targets
            .iter()
            .position(|target_range| target_range.contains(range.start))
    };
    let mut cursor = 0;
    while cursor + 1 < open.len() {
        let (left, left_range) = open[cursor];
        let (right, right_range) = open[cursor + 1];
        if target_of(&left_range) == target_of(&right_range) && left_range.is_adjacent(&right_range)
        {
            plan.merges.push((left, right));
            cursor += 2;
        } else {
            cursor += 1;
        }
    }
    (!plan.is_empty()).then_some(plan)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::ShardRecord;
    use crate::model::StreamMode;
    use crate::model::StreamStatus;

    fn stream_with(ranges: Vec<HashKeyRange>) -> StreamRecord {
        StreamRecord {
            name: "s".into(),
            created_ms: 0,
            status: StreamStatus::Updating,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            shards: ranges
                .into_iter()
                .enumerate()
                .map(|(index, range)| ShardRecord {
                    index: index as u32,
                    group: index as u64 + 1,
                    range,
                    parent: None,
                    adjacent_parent: None,
                    created_ms: 0,
                    state: ShardState::Open,
                    replicas: Vec::new(),
                    leader: None,
                    reason: None,
                    moving: None,
                    preferred: None,
                })
                .collect(),
            tags: BTreeMap::new(),
            scaling_target: None,
            last_resharded_ms: 0,
            consumers: Default::default(),
        }
    }

    /// Applies a plan to the ranges only (what `command::apply` does to the shard list).
    fn apply_plan(stream: &mut StreamRecord, plan: &ReshardPlan) {
        for (index, key) in &plan.splits {
            let range = stream.shards[*index as usize].range;
            let (low, high) = range.split_at(*key).unwrap();
            stream.shards[*index as usize].state = ShardState::Closed {
                sealed_at: 1,
                closed_ms: 1,
            };
            for child in [low, high] {
                let next = stream.shards.len() as u32;
                let mut shard = stream.shards[0].clone();
                shard.index = next;
                shard.range = child;
                shard.state = ShardState::Open;
                shard.parent = Some(*index);
                stream.shards.push(shard);
            }
        }
        for (left, right) in &plan.merges {
            let union = stream.shards[*left as usize]
                .range
                .union(&stream.shards[*right as usize].range);
            for index in [left, right] {
                stream.shards[*index as usize].state = ShardState::Closed {
                    sealed_at: 1,
                    closed_ms: 1,
                };
            }
            let next = stream.shards.len() as u32;
            let mut shard = stream.shards[0].clone();
            shard.index = next;
            shard.range = union;
            shard.state = ShardState::Open;
            shard.parent = Some(*left);
            shard.adjacent_parent = Some(*right);
            stream.shards.push(shard);
        }
    }

    /// Runs scaling to completion; returns the number of steps.
    fn scale(from: u32, to: u32) -> usize {
        let mut stream = stream_with(HashKeyRange::split_evenly(from));
        let mut steps = 0;
        while let Some(plan) = uniform_scaling_step(&stream, to) {
            // Every shard appears in at most one operation of a step.
            let mut touched: Vec<u32> = plan.splits.iter().map(|(index, _)| *index).collect();
            touched.extend(plan.merges.iter().flat_map(|(a, b)| [*a, *b]));
            let mut unique = touched.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(
                unique.len(),
                touched.len(),
                "{from}->{to}: a shard twice in one step"
            );
            apply_plan(&mut stream, &plan);
            steps += 1;
            assert!(steps < 20, "{from}->{to} does not converge");
        }
        assert!(is_uniform(&stream, to), "{from}->{to} did not end uniform");
        steps
    }

    #[test]
    fn doubling_is_one_round_of_splits() {
        assert_eq!(scale(4, 8), 1);
        assert_eq!(scale(1, 2), 1);
    }

    #[test]
    fn halving_is_one_round_of_merges() {
        assert_eq!(scale(8, 4), 1);
        assert_eq!(scale(2, 1), 1);
    }

    #[test]
    fn every_allowed_change_converges_to_equal_ranges() {
        for from in 1..=12u32 {
            for to in from.div_ceil(2)..=(from * 2) {
                if to != from {
                    scale(from, to);
                }
            }
        }
    }

    #[test]
    fn a_uniform_stream_needs_nothing() {
        let stream = stream_with(HashKeyRange::split_evenly(5));
        assert!(uniform_scaling_step(&stream, 5).is_none());
    }
}
