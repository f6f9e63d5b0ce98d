//! Splits, merges, UpdateShardCount and the scheduler's resharding steps, and the seal that
//! closes a parent shard.

use riffle_types::KinesisError;
use riffle_types::ShardId;
use riffle_types::limits;

use super::ControlCommand;
use super::ControlReply;
use super::Names;
use super::ShardSpec;
use super::check_shard_limit;
use super::incarnation;
use super::incarnation_shard_mut;
use super::is_resharding;
use super::misrouted;
use super::new_shard;
use super::open_shard_total;
use super::require_status;
use super::stream_mut;
use super::stream_ref;
use crate::model::ControlState;
use crate::model::ShardRecord;
use crate::model::ShardState;
use crate::model::StreamMode;
use crate::model::StreamRecord;
use crate::model::StreamStatus;
use crate::placement::Placer;
use crate::reshard;
use crate::reshard::ReshardPlan;

/// Applies a resharding command; [`super::apply`] routes only those here.
pub(super) fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    let names = Names::of(state);
    match command {
        ControlCommand::SplitShard {
            name,
            shard,
            new_start,
            now_ms,
            shard_limit,
            avoid,
        } => {
            {
                let stream = stream_ref(state, &name, &names)?;
                check_reshardable(stream, &names)?;
                let parent = open_shard(stream, shard, &names)?;
                let range = parent.range;
                let valid =
                    new_start.0 > range.start.0.saturating_add(1) && new_start.0 < range.end.0;
                if !valid {
                    return Err(KinesisError::invalid_argument(format!(
                        "NewStartingHashKey {new_start} used in SplitShard() on shard {} in stream {name} under account {} is not both greater than one plus the shard's StartingHashKey {} and less than the shard's EndingHashKey {}.",
                        ShardId(shard),
                        names.account,
                        range.start,
                        range.end
                    )));
                }
            }
            check_shard_limit(state, &names, 1, shard_limit)?;
            let plan = ReshardPlan {
                splits: vec![(shard, new_start)],
                merges: Vec::new(),
            };
            let reason = format!("SplitShard of {}", ShardId(shard));
            apply_reshard(state, &name, &plan, &reason, now_ms, &avoid, &names)?;
            Ok(ControlReply::Done)
        }
        ControlCommand::MergeShards {
            name,
            shard,
            adjacent,
            now_ms,
            avoid,
        } => {
            // `apply_reshard` checks that both shards are open and adjacent.
            check_reshardable(stream_ref(state, &name, &names)?, &names)?;
            let plan = ReshardPlan {
                splits: Vec::new(),
                merges: vec![(shard, adjacent)],
            };
            let reason = format!(
                "MergeShards of {} and {}",
                ShardId(shard),
                ShardId(adjacent)
            );
            apply_reshard(state, &name, &plan, &reason, now_ms, &avoid, &names)?;
            Ok(ControlReply::Done)
        }
        ControlCommand::UpdateShardCount {
            name,
            target,
            now_ms: _,
            shard_limit,
        } => {
            let stream = stream_ref(state, &name, &names)?;
            check_reshardable(stream, &names)?;
            let open = stream.open_shard_count() as u32;
            if target > open.saturating_mul(2) {
                return Err(KinesisError::limit_exceeded(format!(
                    "UpdateShardCount cannot scale up over double your current open shard count. Current open shard count: {open}, Target shard count: {target}"
                )));
            }
            if u64::from(target) * 2 < u64::from(open) {
                return Err(KinesisError::limit_exceeded(format!(
                    "UpdateShardCount cannot scale down below half your current open shard count. Current open shard count: {open}, Target shard count: {target}"
                )));
            }
            let total_open = open_shard_total(state) as u32;
            if target > limits::MAX_SHARDS_PER_STREAM || total_open - open + target > shard_limit {
                return Err(KinesisError::limit_exceeded(format!(
                    "Target shard count or number of open shards cannot be greater than {shard_limit}. Current open shard count: {open}, Target shard count: {target}"
                )));
            }
            if reshard::is_uniform(stream, target) {
                return Ok(ControlReply::Unchanged);
            }
            let stream = stream_mut(state, &name, &names)?;
            stream.scaling_target = Some(target);
            stream.status = StreamStatus::Updating;
            Ok(ControlReply::Done)
        }
        ControlCommand::ReshardStep {
            name,
            created_ms,
            plan,
            reason,
            now_ms,
            shard_limit,
            avoid,
        } => {
            let Some(stream) = incarnation(state, &name, created_ms) else {
                return Ok(ControlReply::Unchanged);
            };
            let settled = matches!(stream.status, StreamStatus::Active | StreamStatus::Updating)
                && !is_resharding(stream);
            if !settled || plan.is_empty() {
                return Ok(ControlReply::Unchanged);
            }
            let added = plan.added_open_shards().max(0) as u32;
            check_shard_limit(state, &names, added, shard_limit)?;
            apply_reshard(state, &name, &plan, &reason, now_ms, &avoid, &names)?;
            Ok(ControlReply::Done)
        }
        ControlCommand::ShardSealed {
            name,
            created_ms,
            shard,
            sealed_at,
            now_ms,
        } => {
            let Some(record) = incarnation_shard_mut(state, &name, created_ms, shard) else {
                return Ok(ControlReply::Unchanged);
            };
            if record.is_closed() {
                return Ok(ControlReply::Unchanged);
            }
            record.state = ShardState::Closed {
                sealed_at,
                closed_ms: now_ms,
            };
            Ok(ControlReply::Done)
        }
        other => Err(misrouted("resharding", &other)),
    }
}

/// Applies a plan's splits and merges to the stream's open shards: children are created with
/// placement, parents become `Closing` (sealed by the agent once the children run), the stream
/// becomes `UPDATING`. Validates everything first, so a bad plan changes nothing.
fn apply_reshard(
    state: &mut ControlState,
    name: &str,
    plan: &ReshardPlan,
    reason: &str,
    now_ms: u64,
    avoid: &[u64],
    names: &Names,
) -> Result<(), KinesisError> {
    let replication_factor = replication_of(state, name);
    let mut children: Vec<ShardSpec> = Vec::new();
    {
        let stream = stream_ref(state, name, names)?;
        let mut next_index = stream.shards.len() as u32;
        let mut touched: Vec<u32> = Vec::new();
        for (shard, new_start) in &plan.splits {
            let parent = open_shard(stream, *shard, names)?;
            let (low, high) = parent
                .range
                .split_at(*new_start)
                .map_err(|error| KinesisError::invalid_argument(error.to_string()))?;
            touched.push(*shard);
            for range in [low, high] {
                children.push(ShardSpec {
                    index: next_index,
                    range,
                    parent: Some(*shard),
                    adjacent_parent: None,
                    now_ms,
                    replication_factor,
                    reason: reason.to_string(),
                });
                next_index += 1;
            }
        }
        for (shard, adjacent) in &plan.merges {
            let first = open_shard(stream, *shard, names)?;
            let second = open_shard(stream, *adjacent, names)?;
            if shard == adjacent || !first.range.is_adjacent(&second.range) {
                return Err(KinesisError::invalid_argument(format!(
                    "Shards {} and {} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                    ShardId(*shard),
                    ShardId(*adjacent),
                    names.account
                )));
            }
            touched.extend([*shard, *adjacent]);
            children.push(ShardSpec {
                index: next_index,
                range: first.range.union(&second.range),
                parent: Some(*shard),
                adjacent_parent: Some(*adjacent),
                now_ms,
                replication_factor,
                reason: reason.to_string(),
            });
            next_index += 1;
        }
        let mut unique = touched.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != touched.len() {
            return Err(KinesisError::invalid_argument(
                "a shard appears twice in one resharding step",
            ));
        }
    }
    let mut placer = Placer::new(state, avoid);
    let mut created = Vec::with_capacity(children.len());
    for spec in children {
        created.push(new_shard(state, &mut placer, spec)?);
    }
    let stream = stream_mut(state, name, names)?;
    for (shard, _) in &plan.splits {
        stream.shards[*shard as usize].state = ShardState::Closing;
    }
    for (shard, adjacent) in &plan.merges {
        stream.shards[*shard as usize].state = ShardState::Closing;
        stream.shards[*adjacent as usize].state = ShardState::Closing;
    }
    stream.shards.extend(created);
    stream.status = StreamStatus::Updating;
    stream.last_resharded_ms = now_ms;
    Ok(())
}

fn check_reshardable(stream: &StreamRecord, names: &Names) -> Result<(), KinesisError> {
    if stream.mode == StreamMode::OnDemand {
        return Err(KinesisError::validation(format!(
            "Request is invalid. Stream {} under account {} is in On-Demand mode.",
            stream.name, names.account
        )));
    }
    require_status(stream, names, &[StreamStatus::Active])
}

fn open_shard<'a>(
    stream: &'a StreamRecord,
    index: u32,
    names: &Names,
) -> Result<&'a ShardRecord, KinesisError> {
    let shard = stream.shard(ShardId(index)).ok_or_else(|| {
        KinesisError::not_found(format!(
            "Could not find shard {} in stream {} under account {}.",
            ShardId(index),
            stream.name,
            names.account
        ))
    })?;
    if shard.state != ShardState::Open {
        return Err(KinesisError::invalid_argument(format!(
            "Shard {} in stream {} under account {} has already been merged or split, and thus is not eligible for merging or splitting.",
            ShardId(index),
            stream.name,
            names.account
        )));
    }
    Ok(shard)
}

/// The replication factor a stream's existing shards use (new children match it).
fn replication_of(state: &ControlState, name: &str) -> u32 {
    state
        .streams
        .get(name)
        .and_then(|stream| stream.shards.first())
        .map(|shard| shard.replicas.len().max(1) as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use riffle_types::ErrorCode;
    use riffle_types::HashKey;

    use crate::command::ControlCommand;
    use crate::command::apply;
    use crate::command::fixtures::activate;
    use crate::command::fixtures::cluster;
    use crate::command::fixtures::create;
    use crate::model::ControlState;
    use crate::model::ShardState;
    use crate::model::StreamMode;
    use crate::model::StreamStatus;

    #[test]
    fn split_closes_the_parent_only_when_sealed() {
        let mut state = cluster();
        create(&mut state, "s", 1).unwrap();
        let split = |state: &mut ControlState, key: u128| {
            apply(
                state,
                ControlCommand::SplitShard {
                    name: "s".into(),
                    shard: 0,
                    new_start: HashKey(key),
                    now_ms: 3_000,
                    shard_limit: 10,
                    avoid: Vec::new(),
                },
            )
        };
        assert_eq!(
            split(&mut state, 1 << 127).unwrap_err().code,
            riffle_types::ErrorCode::ResourceInUseException
        );
        activate(&mut state, "s");
        assert_eq!(
            split(&mut state, 1).unwrap_err().code,
            riffle_types::ErrorCode::InvalidArgumentException
        );
        split(&mut state, 1 << 127).unwrap();
        let stream = &state.streams["s"];
        assert_eq!(stream.status, StreamStatus::Updating);
        assert_eq!(stream.shards.len(), 3);
        assert_eq!(stream.shards[0].state, ShardState::Closing);
        assert_eq!(stream.shards[1].range.end.0, (1 << 127) - 1);
        assert_eq!(stream.shards[2].range.start.0, 1 << 127);
        assert_eq!(stream.shards[2].parent, Some(0));
        // Not ACTIVE while the parent is still closing.
        activate(&mut state, "s");
        assert_eq!(state.streams["s"].status, StreamStatus::Updating);
        let created_ms = state.streams["s"].created_ms;
        apply(
            &mut state,
            ControlCommand::ShardSealed {
                name: "s".into(),
                created_ms,
                shard: 0,
                sealed_at: 42,
                now_ms: 4_000,
            },
        )
        .unwrap();
        activate(&mut state, "s");
        let stream = &state.streams["s"];
        assert_eq!(stream.status, StreamStatus::Active);
        assert_eq!(
            stream.shards[0].state,
            ShardState::Closed {
                sealed_at: 42,
                closed_ms: 4_000
            }
        );
        assert_eq!(stream.open_shard_count(), 2);
        // A closed shard cannot be split again.
        let error = split(&mut state, 1 << 126).unwrap_err();
        assert_eq!(
            error.code,
            riffle_types::ErrorCode::InvalidArgumentException
        );
        assert!(error.message.contains("has already been merged or split"));
    }

    #[test]
    fn merge_requires_adjacent_open_shards() {
        let mut state = cluster();
        create(&mut state, "m", 3).unwrap();
        activate(&mut state, "m");
        let merge = |state: &mut ControlState, a: u32, b: u32| {
            apply(
                state,
                ControlCommand::MergeShards {
                    name: "m".into(),
                    shard: a,
                    adjacent: b,
                    now_ms: 5,
                    avoid: Vec::new(),
                },
            )
        };
        assert_eq!(
            merge(&mut state, 0, 2).unwrap_err().code,
            riffle_types::ErrorCode::InvalidArgumentException
        );
        assert_eq!(
            merge(&mut state, 0, 9).unwrap_err().code,
            riffle_types::ErrorCode::ResourceNotFoundException
        );
        merge(&mut state, 1, 0).unwrap();
        let stream = &state.streams["m"];
        let child = &stream.shards[3];
        assert_eq!((child.parent, child.adjacent_parent), (Some(1), Some(0)));
        assert_eq!(child.range.start.0, 0);
        assert_eq!(child.range.end, stream.shards[1].range.end);
    }

    /// Merges and UpdateShardCount are refused for an on-demand stream first, then for one
    /// that is not ACTIVE, with AWS's messages.
    #[test]
    fn merge_and_update_shard_count_refuse_on_demand_then_inactive_streams() {
        let mut state = cluster();
        let merge = |state: &mut ControlState, name: &str| {
            apply(
                state,
                ControlCommand::MergeShards {
                    name: name.into(),
                    shard: 0,
                    adjacent: 1,
                    now_ms: 3_000,
                    avoid: Vec::new(),
                },
            )
        };
        let update = |state: &mut ControlState, name: &str| {
            apply(
                state,
                ControlCommand::UpdateShardCount {
                    name: name.into(),
                    target: 4,
                    now_ms: 3_000,
                    shard_limit: 10,
                },
            )
        };
        create(&mut state, "p", 2).unwrap();
        apply(
            &mut state,
            ControlCommand::CreateStream {
                name: "o".into(),
                shard_count: 2,
                mode: StreamMode::OnDemand,
                tags: BTreeMap::new(),
                now_ms: 2_000,
                shard_limit: 10,
                replication_factor: 3,
                avoid: Vec::new(),
            },
        )
        .unwrap();
        for error in [
            merge(&mut state, "o").unwrap_err(),
            update(&mut state, "o").unwrap_err(),
        ] {
            assert_eq!(error.code, ErrorCode::ValidationException);
            assert_eq!(
                error.message,
                "Request is invalid. Stream o under account 000000000000 is in On-Demand mode."
            );
        }
        for error in [
            merge(&mut state, "p").unwrap_err(),
            update(&mut state, "p").unwrap_err(),
        ] {
            assert_eq!(error.code, ErrorCode::ResourceInUseException);
            assert_eq!(
                error.message,
                "Stream p under account 000000000000 not ACTIVE, instead in state CREATING"
            );
        }
        activate(&mut state, "p");
        update(&mut state, "p").unwrap();
        assert_eq!(state.streams["p"].status, StreamStatus::Updating);
    }
}
