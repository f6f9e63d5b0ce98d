//! A stream's life and settings: creation with its first shards, CREATING/UPDATING → ACTIVE,
//! deletion, tags, retention and capacity mode.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_types::HashKeyRange;
use riffle_types::KinesisError;
use riffle_types::limits;

use super::ACTIVE_OR_UPDATING;
use super::ControlCommand;
use super::ControlReply;
use super::Names;
use super::RetentionChange;
use super::ShardSpec;
use super::check_shard_limit;
use super::incarnation;
use super::incarnation_mut;
use super::is_resharding;
use super::misrouted;
use super::new_shard;
use super::require_status;
use super::stream_mut;
use crate::model::ControlState;
use crate::model::StreamRecord;
use crate::model::StreamStatus;
use crate::placement::Placer;
use crate::reshard;

/// Applies a stream command; [`super::apply`] routes only those here.
pub(super) fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    let names = Names::of(state);
    match command {
        ControlCommand::CreateStream {
            name,
            shard_count,
            mode,
            tags,
            now_ms,
            shard_limit,
            replication_factor,
            avoid,
        } => {
            if state.streams.contains_key(&name) {
                return Err(KinesisError::in_use(format!(
                    "Stream {name} under account {} already exists.",
                    names.account
                )));
            }
            check_shard_limit(state, &names, shard_count, shard_limit)?;
            let ranges = HashKeyRange::split_evenly(shard_count);
            let mut shards = Vec::with_capacity(ranges.len());
            let mut placer = Placer::new(state, &avoid);
            for (index, range) in ranges.into_iter().enumerate() {
                let shard = new_shard(
                    state,
                    &mut placer,
                    ShardSpec {
                        index: index as u32,
                        range,
                        parent: None,
                        adjacent_parent: None,
                        now_ms,
                        replication_factor,
                        reason: "CreateStream".to_string(),
                    },
                )?;
                shards.push(shard);
            }
            let stream = StreamRecord {
                name: name.clone(),
                created_ms: now_ms,
                status: StreamStatus::Creating,
                mode,
                retention_hours: limits::DEFAULT_RETENTION_HOURS,
                shards,
                tags,
                scaling_target: None,
                last_resharded_ms: now_ms,
                consumers: BTreeMap::new(),
            };
            state.streams.insert(name, Arc::new(stream));
            Ok(ControlReply::StreamCreated { created_ms: now_ms })
        }
        ControlCommand::StreamActive { name, created_ms } => {
            let Some(stream) = incarnation_mut(state, &name, created_ms) else {
                return Ok(ControlReply::Unchanged);
            };
            let busy = is_resharding(stream);
            let scaling = stream
                .scaling_target
                .is_some_and(|target| !reshard::is_uniform(stream, target));
            if busy
                || scaling
                || !matches!(
                    stream.status,
                    StreamStatus::Creating | StreamStatus::Updating
                )
            {
                return Ok(ControlReply::Unchanged);
            }
            stream.scaling_target = None;
            stream.status = StreamStatus::Active;
            Ok(ControlReply::Done)
        }
        ControlCommand::DeleteStream { name } => {
            let stream = stream_mut(state, &name, &names)?;
            if stream.status == StreamStatus::Deleting {
                return Ok(ControlReply::Unchanged);
            }
            stream.status = StreamStatus::Deleting;
            Ok(ControlReply::Done)
        }
        ControlCommand::StreamDeleted { name, created_ms } => {
            let deletable = incarnation(state, &name, created_ms)
                .is_some_and(|stream| stream.status == StreamStatus::Deleting);
            if !deletable {
                return Ok(ControlReply::Unchanged);
            }
            state.streams.remove(&name);
            Ok(ControlReply::Done)
        }
        ControlCommand::AddTags { name, tags } => {
            let stream = stream_mut(state, &name, &names)?;
            require_status(stream, &names, ACTIVE_OR_UPDATING)?;
            let mut merged = stream.tags.clone();
            merged.extend(tags);
            if merged.len() > limits::MAX_TAGS_PER_STREAM {
                return Err(KinesisError::invalid_argument(format!(
                    "Failed to add tags to stream {name} under account {} because a given stream cannot have more than {} tags associated with it.",
                    names.account,
                    limits::MAX_TAGS_PER_STREAM
                )));
            }
            stream.tags = merged;
            Ok(ControlReply::Done)
        }
        ControlCommand::RemoveTags { name, keys } => {
            let stream = stream_mut(state, &name, &names)?;
            require_status(stream, &names, ACTIVE_OR_UPDATING)?;
            for key in keys {
                stream.tags.remove(&key);
            }
            Ok(ControlReply::Done)
        }
        ControlCommand::SetRetention {
            name,
            hours,
            change,
        } => {
            let stream = stream_mut(state, &name, &names)?;
            require_status(stream, &names, &[StreamStatus::Active])?;
            if hours < limits::MIN_RETENTION_HOURS {
                return Err(KinesisError::invalid_argument(format!(
                    "Minimum allowed retention period is {} hours. Requested retention period ({hours} hours) is too short.",
                    limits::MIN_RETENTION_HOURS
                )));
            }
            if hours > limits::MAX_RETENTION_HOURS {
                return Err(KinesisError::invalid_argument(format!(
                    "Maximum allowed retention period is {} hours. Requested retention period ({hours} hours) is too long.",
                    limits::MAX_RETENTION_HOURS
                )));
            }
            let current = stream.retention_hours;
            match change {
                RetentionChange::Increase if hours < current => {
                    return Err(KinesisError::invalid_argument(format!(
                        "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
                    )));
                }
                RetentionChange::Decrease if hours > current => {
                    return Err(KinesisError::invalid_argument(format!(
                        "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
                    )));
                }
                _ => {}
            }
            stream.retention_hours = hours;
            Ok(ControlReply::Done)
        }
        ControlCommand::UpdateStreamMode {
            name,
            mode,
            now_ms: _,
        } => {
            let stream = stream_mut(state, &name, &names)?;
            require_status(stream, &names, &[StreamStatus::Active])?;
            if stream.mode == mode {
                return Ok(ControlReply::Unchanged);
            }
            stream.mode = mode;
            Ok(ControlReply::Done)
        }
        other => Err(misrouted("stream", &other)),
    }
}

#[cfg(test)]
mod tests {
    use crate::command::ControlCommand;
    use crate::command::ControlReply;
    use crate::command::RetentionChange;
    use crate::command::apply;
    use crate::command::fixtures::activate;
    use crate::command::fixtures::cluster;
    use crate::command::fixtures::create;
    use crate::model::ControlState;
    use crate::model::StreamStatus;

    #[test]
    fn create_allocates_unique_groups_and_replicas() {
        let mut state = cluster();
        create(&mut state, "a", 3).unwrap();
        create(&mut state, "b", 2).unwrap();
        let groups: Vec<u64> = state
            .streams
            .values()
            .flat_map(|s| s.shards.iter().map(|sh| sh.group))
            .collect();
        let mut unique = groups.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        assert!(!groups.contains(&0), "group 0 is the metadata group");
        let replicas: Vec<u64> = state
            .streams
            .values()
            .flat_map(|s| {
                s.shards
                    .iter()
                    .flat_map(|sh| sh.replicas.iter().map(|r| r.replica))
            })
            .collect();
        assert_eq!(
            replicas.len(),
            5,
            "one node: replication factor capped at one"
        );
        assert_eq!(state.streams["a"].status, StreamStatus::Creating);
        let error = create(&mut state, "a", 1).unwrap_err();
        assert_eq!(error.code, riffle_types::ErrorCode::ResourceInUseException);
    }

    #[test]
    fn shard_limit_is_enforced() {
        let mut state = cluster();
        create(&mut state, "a", 8).unwrap();
        let error = create(&mut state, "b", 3).unwrap_err();
        assert_eq!(error.code, riffle_types::ErrorCode::LimitExceededException);
        assert!(
            error
                .message
                .contains("Current shard count for the account: 8. Limit: 10.")
        );
        create(&mut state, "b", 2).unwrap();
    }

    #[test]
    fn retention_changes_follow_aws_rules() {
        let mut state = cluster();
        create(&mut state, "r", 1).unwrap();
        activate(&mut state, "r");
        let set = |state: &mut ControlState, hours, change| {
            apply(
                state,
                ControlCommand::SetRetention {
                    name: "r".into(),
                    hours,
                    change,
                },
            )
        };
        set(&mut state, 48, RetentionChange::Increase).unwrap();
        assert_eq!(state.streams["r"].retention_hours, 48);
        assert!(
            set(&mut state, 36, RetentionChange::Increase)
                .unwrap_err()
                .message
                .contains("DecreaseRetentionPeriod")
        );
        assert!(
            set(&mut state, 72, RetentionChange::Decrease)
                .unwrap_err()
                .message
                .contains("IncreaseRetentionPeriod")
        );
        assert!(
            set(&mut state, 23, RetentionChange::Decrease)
                .unwrap_err()
                .message
                .contains("too short")
        );
        assert!(
            set(&mut state, 8761, RetentionChange::Increase)
                .unwrap_err()
                .message
                .contains("too long")
        );
        set(&mut state, 24, RetentionChange::Decrease).unwrap();
    }

    #[test]
    fn delete_then_deleted_removes_only_that_incarnation() {
        let mut state = cluster();
        create(&mut state, "d", 1).unwrap();
        apply(
            &mut state,
            ControlCommand::DeleteStream { name: "d".into() },
        )
        .unwrap();
        assert_eq!(state.streams["d"].status, StreamStatus::Deleting);
        let stale = apply(
            &mut state,
            ControlCommand::StreamDeleted {
                name: "d".into(),
                created_ms: 1,
            },
        )
        .unwrap();
        assert_eq!(stale, ControlReply::Unchanged);
        apply(
            &mut state,
            ControlCommand::StreamDeleted {
                name: "d".into(),
                created_ms: 2_000,
            },
        )
        .unwrap();
        assert!(!state.streams.contains_key("d"));
        let error = apply(
            &mut state,
            ControlCommand::DeleteStream { name: "d".into() },
        )
        .unwrap_err();
        assert_eq!(
            error.code,
            riffle_types::ErrorCode::ResourceNotFoundException
        );
    }
}
