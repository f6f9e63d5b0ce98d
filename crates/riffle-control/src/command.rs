//! The metadata group's commands and how they change [`ControlState`]. `apply` is a pure,
//! deterministic function: every replica applying the same log reaches the same state, and a
//! rejected command changes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_types::HashKey;
use riffle_types::HashKeyRange;
use riffle_types::KinesisError;
use riffle_types::ShardId;
use riffle_types::limits;
use serde::Deserialize;
use serde::Serialize;

use crate::model::ClusterInfo;
use crate::model::ConsumerRecord;
use crate::model::ConsumerStatus;
use crate::model::ControlState;
use crate::model::NodeRecord;
use crate::model::ReplicaMove;
use crate::model::ReplicaRecord;
use crate::model::ShardRecord;
use crate::model::ShardState;
use crate::model::StreamMode;
use crate::model::StreamRecord;
use crate::model::StreamStatus;
use crate::placement::Placer;
use crate::reshard;
use crate::reshard::ReshardPlan;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionChange {
    Increase,
    Decrease,
}

/// A change to the control state, proposed to the metadata group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlCommand {
    /// A consumer application's lease table ([`crate::leases`]).
    Lease(crate::leases::LeaseCommand),
    InitCluster {
        cluster_id: String,
        token_key_hex: String,
        account: String,
        region: String,
        now_ms: u64,
    },
    RegisterNode {
        node: NodeRecord,
    },
    CreateStream {
        name: String,
        shard_count: u32,
        mode: StreamMode,
        tags: BTreeMap<String, String>,
        now_ms: u64,
        shard_limit: u32,
        replication_factor: u32,
        /// Nodes the proposer knows are down: placed on only when nothing else is left.
        #[serde(default)]
        avoid: Vec<u64>,
    },
    /// Every shard group of a CREATING or UPDATING stream is running: it becomes ACTIVE.
    StreamActive {
        name: String,
        created_ms: u64,
    },
    DeleteStream {
        name: String,
    },
    /// Every node has dropped the stream's groups (or will, on seeing it gone).
    StreamDeleted {
        name: String,
        created_ms: u64,
    },
    AddTags {
        name: String,
        tags: BTreeMap<String, String>,
    },
    /// RegisterStreamConsumer: a new consumer, CREATING until the metadata leader activates it.
    RegisterConsumer {
        stream: String,
        name: String,
        now_ms: u64,
    },
    ConsumerActive {
        stream: String,
        name: String,
        created_ms: u64,
    },
    /// DeregisterStreamConsumer: DELETING until the metadata leader removes it.
    DeregisterConsumer {
        stream: String,
        name: String,
    },
    ConsumerDeleted {
        stream: String,
        name: String,
        created_ms: u64,
    },
    RemoveTags {
        name: String,
        keys: Vec<String>,
    },
    SetRetention {
        name: String,
        hours: u32,
        change: RetentionChange,
    },
    SplitShard {
        name: String,
        shard: u32,
        new_start: HashKey,
        now_ms: u64,
        shard_limit: u32,
        #[serde(default)]
        avoid: Vec<u64>,
    },
    MergeShards {
        name: String,
        shard: u32,
        adjacent: u32,
        now_ms: u64,
        #[serde(default)]
        avoid: Vec<u64>,
    },
    /// UpdateShardCount: reshard (through intermediate steps) to `target` equal open shards.
    UpdateShardCount {
        name: String,
        target: u32,
        now_ms: u64,
        shard_limit: u32,
    },
    /// A scheduler step: splits and merges of open shards (scaling or on-demand load).
    ReshardStep {
        name: String,
        created_ms: u64,
        plan: ReshardPlan,
        reason: String,
        now_ms: u64,
        shard_limit: u32,
        #[serde(default)]
        avoid: Vec<u64>,
    },
    UpdateStreamMode {
        name: String,
        mode: StreamMode,
        now_ms: u64,
    },
    /// Drain a node (leaders move away, nothing new is placed there) or take it back.
    SetDraining {
        node: u64,
        draining: bool,
    },
    /// Start replacing a replica of a shard by a new one on `to_node`.
    StartReplicaMove {
        name: String,
        created_ms: u64,
        shard: u32,
        from_replica: u64,
        to_node: u64,
        reason: String,
        now_ms: u64,
    },
    /// The shard group's membership now has the new replica as a voter and not the old one.
    FinishReplicaMove {
        name: String,
        created_ms: u64,
        shard: u32,
        from_replica: u64,
        to_replica: u64,
    },
    /// Give up a move that has not changed the group's voters (the new replica is dropped).
    CancelReplicaMove {
        name: String,
        created_ms: u64,
        shard: u32,
        to_replica: u64,
    },
    /// The scheduler's leader placement: `(group, node)` pairs whose preferred leader changes.
    SetPreferredLeaders {
        leaders: Vec<(u64, u64)>,
    },
    /// Shard leaders as observed by the metadata leader: `(group, node)` pairs that changed.
    ShardLeaders {
        leaders: Vec<(u64, u64)>,
    },
    /// The shard's seal entry committed at `sealed_at`: it is closed.
    ShardSealed {
        name: String,
        created_ms: u64,
        shard: u32,
        sealed_at: u64,
        now_ms: u64,
    },
}

impl ControlCommand {
    pub fn name(&self) -> &'static str {
        match self {
            ControlCommand::Lease(_) => "Lease",
            ControlCommand::InitCluster { .. } => "InitCluster",
            ControlCommand::RegisterNode { .. } => "RegisterNode",
            ControlCommand::CreateStream { .. } => "CreateStream",
            ControlCommand::StreamActive { .. } => "StreamActive",
            ControlCommand::DeleteStream { .. } => "DeleteStream",
            ControlCommand::StreamDeleted { .. } => "StreamDeleted",
            ControlCommand::AddTags { .. } => "AddTags",
            ControlCommand::RegisterConsumer { .. } => "RegisterConsumer",
            ControlCommand::ConsumerActive { .. } => "ConsumerActive",
            ControlCommand::DeregisterConsumer { .. } => "DeregisterConsumer",
            ControlCommand::ConsumerDeleted { .. } => "ConsumerDeleted",
            ControlCommand::RemoveTags { .. } => "RemoveTags",
            ControlCommand::SetRetention { .. } => "SetRetention",
            ControlCommand::SplitShard { .. } => "SplitShard",
            ControlCommand::MergeShards { .. } => "MergeShards",
            ControlCommand::UpdateShardCount { .. } => "UpdateShardCount",
            ControlCommand::ReshardStep { .. } => "ReshardStep",
            ControlCommand::UpdateStreamMode { .. } => "UpdateStreamMode",
            ControlCommand::SetDraining { .. } => "SetDraining",
            ControlCommand::StartReplicaMove { .. } => "StartReplicaMove",
            ControlCommand::FinishReplicaMove { .. } => "FinishReplicaMove",
            ControlCommand::CancelReplicaMove { .. } => "CancelReplicaMove",
            ControlCommand::SetPreferredLeaders { .. } => "SetPreferredLeaders",
            ControlCommand::ShardLeaders { .. } => "ShardLeaders",
            ControlCommand::ShardSealed { .. } => "ShardSealed",
        }
    }
}

/// What a successfully applied command reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    Done,
    /// The command had already taken effect (or no longer applies); nothing changed.
    Unchanged,
    StreamCreated {
        created_ms: u64,
    },
    /// The leases a take or renewal changed, as they are now.
    Leases(Vec<crate::leases::LeaseRecord>),
}

/// Applies `command` to `state`.
pub fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    let names = Names::of(state);
    match command {
        ControlCommand::Lease(command) => crate::leases::apply(state, command),
        ControlCommand::InitCluster {
            cluster_id,
            token_key_hex,
            account,
            region,
            now_ms,
        } => {
            if state.cluster.is_some() {
                return Ok(ControlReply::Unchanged);
            }
            state.cluster = Some(ClusterInfo {
                cluster_id,
                token_key_hex,
                account,
                region,
                created_ms: now_ms,
            });
            state.next_group = state.next_group.max(1);
            state.next_replica = state.next_replica.max(1);
            Ok(ControlReply::Done)
        }
        ControlCommand::RegisterNode { mut node } => {
            // Draining is decided by operators, not by a node re-registering.
            node.draining = state
                .nodes
                .get(&node.id)
                .is_some_and(|known| known.draining);
            if state.nodes.get(&node.id) == Some(&node) {
                return Ok(ControlReply::Unchanged);
            }
            state.nodes.insert(node.id, node);
            Ok(ControlReply::Done)
        }
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
            let busy = stream
                .shards
                .iter()
                .any(|shard| shard.state == ShardState::Closing);
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
            let deletable = state.streams.get(&name).is_some_and(|stream| {
                stream.created_ms == created_ms && stream.status == StreamStatus::Deleting
            });
            if !deletable {
                return Ok(ControlReply::Unchanged);
            }
            state.streams.remove(&name);
            Ok(ControlReply::Done)
        }
        ControlCommand::AddTags { name, tags } => {
            let stream = stream_mut(state, &name, &names)?;
            require_status(
                stream,
                &names,
                &[StreamStatus::Active, StreamStatus::Updating],
            )?;
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
        ControlCommand::RegisterConsumer {
            stream,
            name,
            now_ms,
        } => {
            let record = stream_mut(state, &stream, &names)?;
            require_status(
                record,
                &names,
                &[StreamStatus::Active, StreamStatus::Updating],
            )?;
            if record.consumers.contains_key(&name) {
                return Err(KinesisError::in_use(format!(
                    "Consumer {name} under stream {stream} under account {} already exists.",
                    names.account
                )));
            }
            if record.consumers.len() >= limits::MAX_CONSUMERS_PER_STREAM {
                return Err(KinesisError::limit_exceeded(format!(
                    "Stream {stream} under account {} has reached its limit of {} consumers.",
                    names.account,
                    limits::MAX_CONSUMERS_PER_STREAM
                )));
            }
            record.consumers.insert(
                name.clone(),
                ConsumerRecord {
                    name,
                    created_ms: now_ms,
                    status: ConsumerStatus::Creating,
                },
            );
            Ok(ControlReply::Done)
        }
        ControlCommand::ConsumerActive {
            stream,
            name,
            created_ms,
        } => {
            let Some(consumer) = state
                .streams
                .get_mut(&stream)
                .map(Arc::make_mut)
                .and_then(|record| record.consumers.get_mut(&name))
                .filter(|c| c.created_ms == created_ms && c.status == ConsumerStatus::Creating)
            else {
                return Ok(ControlReply::Unchanged);
            };
            consumer.status = ConsumerStatus::Active;
            Ok(ControlReply::Done)
        }
        ControlCommand::DeregisterConsumer { stream, name } => {
            let record = stream_mut(state, &stream, &names)?;
            let Some(consumer) = record.consumers.get_mut(&name) else {
                return Err(KinesisError::not_found(format!(
                    "Consumer {name} under stream {stream} under account {} not found.",
                    names.account
                )));
            };
            if consumer.status == ConsumerStatus::Deleting {
                return Ok(ControlReply::Unchanged);
            }
            consumer.status = ConsumerStatus::Deleting;
            Ok(ControlReply::Done)
        }
        ControlCommand::ConsumerDeleted {
            stream,
            name,
            created_ms,
        } => {
            let Some(record) = state.streams.get_mut(&stream).map(Arc::make_mut) else {
                return Ok(ControlReply::Unchanged);
            };
            let gone = record.consumers.get(&name).is_some_and(|c| {
                c.created_ms == created_ms && c.status == ConsumerStatus::Deleting
            });
            if !gone {
                return Ok(ControlReply::Unchanged);
            }
            record.consumers.remove(&name);
            Ok(ControlReply::Done)
        }
        ControlCommand::RemoveTags { name, keys } => {
            let stream = stream_mut(state, &name, &names)?;
            require_status(
                stream,
                &names,
                &[StreamStatus::Active, StreamStatus::Updating],
            )?;
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
            {
                let stream = stream_ref(state, &name, &names)?;
                check_reshardable(stream, &names)?;
                let first = open_shard(stream, shard, &names)?;
                let second = open_shard(stream, adjacent, &names)?;
                if shard == adjacent || !first.range.is_adjacent(&second.range) {
                    return Err(KinesisError::invalid_argument(format!(
                        "Shards {} and {} in stream {name} under account {} are not an adjacent pair of shards eligible for merging",
                        ShardId(shard),
                        ShardId(adjacent),
                        names.account
                    )));
                }
            }
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
            if stream.mode == StreamMode::OnDemand {
                return Err(KinesisError::validation(format!(
                    "Request is invalid. Stream {name} under account {} is in On-Demand mode.",
                    names.account
                )));
            }
            require_status(stream, &names, &[StreamStatus::Active])?;
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
            let Some(stream) = state
                .streams
                .get(&name)
                .filter(|stream| stream.created_ms == created_ms)
            else {
                return Ok(ControlReply::Unchanged);
            };
            let settled = matches!(stream.status, StreamStatus::Active | StreamStatus::Updating)
                && !stream
                    .shards
                    .iter()
                    .any(|shard| shard.state == ShardState::Closing);
            if !settled || plan.is_empty() {
                return Ok(ControlReply::Unchanged);
            }
            let added = plan.added_open_shards().max(0) as u32;
            check_shard_limit(state, &names, added, shard_limit)?;
            apply_reshard(state, &name, &plan, &reason, now_ms, &avoid, &names)?;
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
        ControlCommand::SetDraining { node, draining } => {
            let Some(record) = state.nodes.get_mut(&node) else {
                return Err(KinesisError::not_found(format!(
                    "Node {node} is not part of the cluster."
                )));
            };
            if record.draining == draining {
                return Ok(ControlReply::Unchanged);
            }
            record.draining = draining;
            Ok(ControlReply::Done)
        }
        ControlCommand::StartReplicaMove {
            name,
            created_ms,
            shard,
            from_replica,
            to_node,
            reason,
            now_ms,
        } => {
            if !state.nodes.contains_key(&to_node) {
                return Ok(ControlReply::Unchanged);
            }
            let to_replica = state.next_replica.max(1);
            let Some(stream) = incarnation_mut(state, &name, created_ms) else {
                return Ok(ControlReply::Unchanged);
            };
            let Some(record) = stream.shards.get_mut(shard as usize) else {
                return Ok(ControlReply::Unchanged);
            };
            let moving_ok = record.moving.is_none()
                && record
                    .voters()
                    .any(|replica| replica.replica == from_replica)
                && !record
                    .replicas
                    .iter()
                    .any(|replica| replica.node == to_node);
            if !moving_ok {
                return Ok(ControlReply::Unchanged);
            }
            record.replicas.push(ReplicaRecord {
                replica: to_replica,
                node: to_node,
                learner: true,
            });
            record.moving = Some(ReplicaMove {
                from_replica,
                to_replica,
                reason,
                started_ms: now_ms,
            });
            state.next_replica = to_replica + 1;
            Ok(ControlReply::Done)
        }
        ControlCommand::FinishReplicaMove {
            name,
            created_ms,
            shard,
            from_replica,
            to_replica,
        } => {
            let Some(stream) = incarnation_mut(state, &name, created_ms) else {
                return Ok(ControlReply::Unchanged);
            };
            let Some(record) = stream.shards.get_mut(shard as usize) else {
                return Ok(ControlReply::Unchanged);
            };
            let matches = record.moving.as_ref().is_some_and(|moving| {
                moving.from_replica == from_replica && moving.to_replica == to_replica
            });
            if !matches {
                return Ok(ControlReply::Unchanged);
            }
            record
                .replicas
                .retain(|replica| replica.replica != from_replica);
            for replica in &mut record.replicas {
                if replica.replica == to_replica {
                    replica.learner = false;
                }
            }
            record.moving = None;
            Ok(ControlReply::Done)
        }
        ControlCommand::CancelReplicaMove {
            name,
            created_ms,
            shard,
            to_replica,
        } => {
            let Some(stream) = incarnation_mut(state, &name, created_ms) else {
                return Ok(ControlReply::Unchanged);
            };
            let Some(record) = stream.shards.get_mut(shard as usize) else {
                return Ok(ControlReply::Unchanged);
            };
            if record
                .moving
                .as_ref()
                .is_none_or(|moving| moving.to_replica != to_replica)
            {
                return Ok(ControlReply::Unchanged);
            }
            record
                .replicas
                .retain(|replica| replica.replica != to_replica);
            record.moving = None;
            Ok(ControlReply::Done)
        }
        ControlCommand::SetPreferredLeaders { leaders } => {
            Ok(set_node_by_group(state, leaders, NodeField::Preferred))
        }
        ControlCommand::ShardLeaders { leaders } => {
            Ok(set_node_by_group(state, leaders, NodeField::Leader))
        }
        ControlCommand::ShardSealed {
            name,
            created_ms,
            shard,
            sealed_at,
            now_ms,
        } => {
            let Some(stream) = incarnation_mut(state, &name, created_ms) else {
                return Ok(ControlReply::Unchanged);
            };
            let Some(record) = stream.shards.get_mut(shard as usize) else {
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

/// A per-shard node field set by group.
#[derive(Clone, Copy)]
enum NodeField {
    Leader,
    Preferred,
}

impl NodeField {
    fn of(self, shard: &mut ShardRecord) -> &mut Option<u64> {
        match self {
            NodeField::Leader => &mut shard.leader,
            NodeField::Preferred => &mut shard.preferred,
        }
    }

    fn get(self, shard: &ShardRecord) -> Option<u64> {
        match self {
            NodeField::Leader => shard.leader,
            NodeField::Preferred => shard.preferred,
        }
    }
}

/// Sets `field` of the shards of the given groups to nodes that host one of their voting
/// replicas; streams without a change are not copied.
fn set_node_by_group(
    state: &mut ControlState,
    changes: Vec<(u64, u64)>,
    field: NodeField,
) -> ControlReply {
    let wanted: std::collections::HashMap<u64, u64> = changes.into_iter().collect();
    let applies = |shard: &ShardRecord| {
        wanted
            .get(&shard.group)
            .filter(|node| field.get(shard) != Some(**node) && shard.has_voter_on(**node))
            .copied()
    };
    let mut changed = false;
    for stream in state.streams.values_mut() {
        if !stream.shards.iter().any(|shard| applies(shard).is_some()) {
            continue;
        }
        for shard in &mut Arc::make_mut(stream).shards {
            if let Some(node) = applies(shard) {
                *field.of(shard) = Some(node);
                changed = true;
            }
        }
    }
    if changed {
        ControlReply::Done
    } else {
        ControlReply::Unchanged
    }
}

/// Account and region, for messages and ARNs.
struct Names {
    account: String,
}

impl Names {
    fn of(state: &ControlState) -> Names {
        let account = state
            .cluster
            .as_ref()
            .map(|cluster| cluster.account.clone())
            .unwrap_or_default();
        Names { account }
    }
}

fn not_found(name: &str, names: &Names) -> KinesisError {
    KinesisError::not_found(format!(
        "Stream {name} under account {} not found.",
        names.account
    ))
}

fn stream_ref<'a>(
    state: &'a ControlState,
    name: &str,
    names: &Names,
) -> Result<&'a StreamRecord, KinesisError> {
    state
        .streams
        .get(name)
        .map(|stream| &**stream)
        .ok_or_else(|| not_found(name, names))
}

fn stream_mut<'a>(
    state: &'a mut ControlState,
    name: &str,
    names: &Names,
) -> Result<&'a mut StreamRecord, KinesisError> {
    state
        .streams
        .get_mut(name)
        .map(Arc::make_mut)
        .ok_or_else(|| not_found(name, names))
}

fn incarnation_mut<'a>(
    state: &'a mut ControlState,
    name: &str,
    created_ms: u64,
) -> Option<&'a mut StreamRecord> {
    state
        .streams
        .get_mut(name)
        .filter(|stream| stream.created_ms == created_ms)
        .map(Arc::make_mut)
}

fn require_status(
    stream: &StreamRecord,
    names: &Names,
    allowed: &[StreamStatus],
) -> Result<(), KinesisError> {
    if allowed.contains(&stream.status) {
        return Ok(());
    }
    Err(KinesisError::in_use(format!(
        "Stream {} under account {} not ACTIVE, instead in state {}",
        stream.name,
        names.account,
        stream.status.as_str()
    )))
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

/// Open shards across all streams (what counts against the shard limit).
pub fn open_shard_total(state: &ControlState) -> usize {
    state
        .streams
        .values()
        .map(|stream| stream.open_shard_count())
        .sum()
}

fn check_shard_limit(
    state: &ControlState,
    names: &Names,
    additional: u32,
    limit: u32,
) -> Result<(), KinesisError> {
    let current = open_shard_total(state);
    if current + additional as usize <= limit as usize {
        return Ok(());
    }
    let region = state
        .cluster
        .as_ref()
        .map(|cluster| cluster.region.as_str())
        .unwrap_or_default();
    Err(KinesisError::limit_exceeded(format!(
        "This request would exceed the shard limit for the account {} in {region}. Current shard count for the account: {current}. Limit: {limit}. Number of additional shards that would have resulted from this request: {additional}. Refer to the AWS Service Limits page (https://docs.aws.amazon.com/general/latest/gr/aws_service_limits.html) for current limits and how to request higher limits.",
        names.account
    )))
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

/// What a new shard is, before placement.
struct ShardSpec {
    index: u32,
    range: HashKeyRange,
    parent: Option<u32>,
    adjacent_parent: Option<u32>,
    now_ms: u64,
    replication_factor: u32,
    reason: String,
}

fn new_shard(
    state: &mut ControlState,
    placer: &mut Placer,
    spec: ShardSpec,
) -> Result<ShardRecord, KinesisError> {
    let nodes = placer.place(spec.replication_factor as usize);
    if nodes.is_empty() {
        return Err(KinesisError::unavailable(
            "no node is registered to host shard replicas",
        ));
    }
    let group = state.next_group.max(1);
    state.next_group = group + 1;
    let mut replicas = Vec::with_capacity(nodes.len());
    for node in nodes {
        let replica = state.next_replica.max(1);
        state.next_replica = replica + 1;
        replicas.push(ReplicaRecord {
            replica,
            node,
            learner: false,
        });
    }
    Ok(ShardRecord {
        index: spec.index,
        group,
        range: spec.range,
        parent: spec.parent,
        adjacent_parent: spec.adjacent_parent,
        created_ms: spec.now_ms,
        state: ShardState::Open,
        replicas,
        leader: None,
        reason: Some(spec.reason),
        moving: None,
        preferred: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ControlState {
        let mut state = ControlState::default();
        apply(
            &mut state,
            ControlCommand::InitCluster {
                cluster_id: "c".into(),
                token_key_hex: "00".repeat(32),
                account: "000000000000".into(),
                region: "us-east-1".into(),
                now_ms: 1,
            },
        )
        .unwrap();
        apply(
            &mut state,
            ControlCommand::RegisterNode {
                node: NodeRecord {
                    id: 1,
                    peer_addr: "p".into(),
                    api_addr: "a".into(),
                    az: "az-a".into(),
                    draining: false,
                },
            },
        )
        .unwrap();
        state
    }

    fn create(
        state: &mut ControlState,
        name: &str,
        shards: u32,
    ) -> Result<ControlReply, KinesisError> {
        apply(
            state,
            ControlCommand::CreateStream {
                name: name.into(),
                shard_count: shards,
                mode: StreamMode::Provisioned,
                tags: BTreeMap::new(),
                now_ms: 2_000,
                shard_limit: 10,
                replication_factor: 3,
                avoid: Vec::new(),
            },
        )
    }

    fn activate(state: &mut ControlState, name: &str) {
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

#[cfg(test)]
mod wire_form;
