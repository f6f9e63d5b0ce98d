//! The metadata group's commands and how they change [`ControlState`]. `apply` is a pure,
//! deterministic function: every replica applying the same log reaches the same state, and a
//! rejected command changes nothing.
//!
//! [`apply`] routes each command to the module of its family: [`cluster`] (the cluster and its
//! nodes), [`streams`] (a stream's life and settings), [`consumers`] (registered consumers),
//! [`resharding`] (splits, merges, scaling steps, seals), [`replicas`] (replica moves and
//! leaders) and [`crate::leases`] (consumer applications' lease tables). What several families
//! share (finding a stream, status and shard-limit checks, creating a placed shard) is here.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_types::HashKey;
use riffle_types::HashKeyRange;
use riffle_types::KinesisError;
use serde::Deserialize;
use serde::Serialize;

use crate::model::ControlState;
use crate::model::NodeRecord;
use crate::model::ReplicaRecord;
use crate::model::ShardRecord;
use crate::model::ShardState;
use crate::model::StreamMode;
use crate::model::StreamRecord;
use crate::model::StreamStatus;
use crate::placement::Placer;
use crate::reshard::ReshardPlan;

mod cluster;
mod consumers;
mod replicas;
mod resharding;
mod streams;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionChange {
    Increase,
    Decrease,
}

/// A change to the control state, proposed to the metadata group.
///
/// Commands are entries of the metadata group's Raft log (JSON, on disk, replayed by newer
/// versions): never rename a variant or a field, and give a new field `#[serde(default)]`.
/// `wire_form` tests pin the JSON of every command.
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

/// Applies `command` to `state`, in the module of its family.
pub fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    match command {
        ControlCommand::Lease(command) => crate::leases::apply(state, command),
        command @ (ControlCommand::InitCluster { .. }
        | ControlCommand::RegisterNode { .. }
        | ControlCommand::SetDraining { .. }) => cluster::apply(state, command),
        command @ (ControlCommand::CreateStream { .. }
        | ControlCommand::StreamActive { .. }
        | ControlCommand::DeleteStream { .. }
        | ControlCommand::StreamDeleted { .. }
        | ControlCommand::AddTags { .. }
        | ControlCommand::RemoveTags { .. }
        | ControlCommand::SetRetention { .. }
        | ControlCommand::UpdateStreamMode { .. }) => streams::apply(state, command),
        command @ (ControlCommand::RegisterConsumer { .. }
        | ControlCommand::ConsumerActive { .. }
        | ControlCommand::DeregisterConsumer { .. }
        | ControlCommand::ConsumerDeleted { .. }) => consumers::apply(state, command),
        command @ (ControlCommand::SplitShard { .. }
        | ControlCommand::MergeShards { .. }
        | ControlCommand::UpdateShardCount { .. }
        | ControlCommand::ReshardStep { .. }
        | ControlCommand::ShardSealed { .. }) => resharding::apply(state, command),
        command @ (ControlCommand::StartReplicaMove { .. }
        | ControlCommand::FinishReplicaMove { .. }
        | ControlCommand::CancelReplicaMove { .. }
        | ControlCommand::SetPreferredLeaders { .. }
        | ControlCommand::ShardLeaders { .. }) => replicas::apply(state, command),
    }
}

/// What a family's `apply` answers to a command of another family. [`apply`] never routes one
/// there; this is an error and not a panic because a panic while applying a committed entry
/// would stop every replica at that same entry.
fn misrouted(family: &str, command: &ControlCommand) -> KinesisError {
    KinesisError::internal(format!(
        "command {} was routed to the {family} commands",
        command.name()
    ))
}

/// The account, for error messages.
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

/// The stream `name` if it is still the incarnation created at `created_ms`: a command about
/// a stream deleted (and maybe re-created) since it was proposed finds nothing.
fn incarnation<'a>(
    state: &'a ControlState,
    name: &str,
    created_ms: u64,
) -> Option<&'a StreamRecord> {
    state
        .streams
        .get(name)
        .map(|stream| &**stream)
        .filter(|stream| stream.created_ms == created_ms)
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

/// Shard `index` of the incarnation of `name` created at `created_ms`, if both exist.
fn incarnation_shard_mut<'a>(
    state: &'a mut ControlState,
    name: &str,
    created_ms: u64,
    index: u32,
) -> Option<&'a mut ShardRecord> {
    incarnation_mut(state, name, created_ms)?
        .shards
        .get_mut(index as usize)
}

/// The statuses in which a stream's tags and registered consumers may change: not while it
/// is being created or deleted.
const ACTIVE_OR_UPDATING: &[StreamStatus] = &[StreamStatus::Active, StreamStatus::Updating];

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

/// Whether a reshard is under way: a parent shard still waits for its seal.
fn is_resharding(stream: &StreamRecord) -> bool {
    stream
        .shards
        .iter()
        .any(|shard| shard.state == ShardState::Closing)
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

/// A new open shard: the next group id, replicas placed by `placer` with the next replica ids
/// (neither is ever reused).
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

/// States built through the real commands, for the tests of every family and the scheduler's.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use riffle_types::KinesisError;

    use super::ControlCommand;
    use super::ControlReply;
    use super::apply;
    use crate::model::ControlState;
    use crate::model::NodeRecord;
    use crate::model::StreamMode;

    /// A cluster with one node, in `az-a`.
    pub(crate) fn cluster() -> ControlState {
        cluster_of(&[(1, "az-a")])
    }

    /// A cluster with the given `(node id, AZ)` nodes.
    pub(crate) fn cluster_of(nodes: &[(u64, &str)]) -> ControlState {
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
        for (id, az) in nodes {
            apply(
                &mut state,
                ControlCommand::RegisterNode {
                    node: NodeRecord {
                        id: *id,
                        peer_addr: format!("p{id}"),
                        api_addr: format!("a{id}"),
                        az: (*az).to_string(),
                        draining: false,
                    },
                },
            )
            .unwrap();
        }
        state
    }

    pub(crate) fn create(
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

    pub(crate) fn activate(state: &mut ControlState, name: &str) {
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
}

#[cfg(test)]
mod wire_form;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command reaches the module that handles it (whatever that module then answers).
    #[test]
    fn every_command_reaches_its_family() {
        for (command, _) in wire_form::every_command() {
            let name = command.name();
            let mut state = fixtures::cluster();
            let misrouted = format!("command {name} was routed to");
            if let Err(error) = apply(&mut state, command) {
                assert!(!error.message.starts_with(&misrouted), "{}", error.message);
            }
        }
    }
}
