//! The control plane's state: what the metadata group agrees on. Pure data plus the queries
//! every layer needs (routing, shard listings); no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_types::HashKey;
use riffle_types::HashKeyRange;
use riffle_types::SequenceNumber;
use riffle_types::ShardId;
use riffle_types::seqnum::Position;
use serde::Deserialize;
use serde::Serialize;

/// Everything the metadata group agrees on.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ControlState {
    /// Set once, by the first command of a new cluster.
    pub cluster: Option<ClusterInfo>,
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub streams: BTreeMap<String, Arc<StreamRecord>>,
    /// Next shard group id to allocate (group 0 is the metadata group).
    pub next_group: u64,
    /// Next shard replica id to allocate; replica ids are never reused.
    pub next_replica: u64,
    /// Consumer applications' lease tables, by application name ([`crate::leases`]).
    #[serde(default)]
    pub leases: BTreeMap<String, Arc<crate::leases::LeaseTable>>,
}

/// Cluster-wide constants fixed at bootstrap.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    /// Key that authenticates shard iterators and page tokens, so that any node accepts any
    /// node's tokens. Hex-encoded 32 bytes.
    pub token_key_hex: String,
    /// Account id and region used in ARNs and messages.
    pub account: String,
    pub region: String,
    pub created_ms: u64,
}

/// A node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: u64,
    /// Address other nodes use to reach this node's peer (gRPC) service.
    pub peer_addr: String,
    /// Address of this node's Kinesis API.
    pub api_addr: String,
    pub az: String,
    /// Being drained: leaders move away and no new replicas are placed here.
    #[serde(default)]
    pub draining: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamMode {
    Provisioned,
    OnDemand,
}

impl StreamMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::Provisioned => "PROVISIONED",
            StreamMode::OnDemand => "ON_DEMAND",
        }
    }

    pub fn parse(text: &str) -> Option<StreamMode> {
        match text {
            "PROVISIONED" => Some(StreamMode::Provisioned),
            "ON_DEMAND" => Some(StreamMode::OnDemand),
            _ => None,
        }
    }
}

/// A stream incarnation. `created_ms` tells incarnations of the same name apart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StreamRecord {
    pub name: String,
    pub created_ms: u64,
    pub status: StreamStatus,
    pub mode: StreamMode,
    pub retention_hours: u32,
    /// Every shard ever created in this incarnation, by index (closed ones included until
    /// retention removes their data).
    pub shards: Vec<ShardRecord>,
    pub tags: BTreeMap<String, String>,
    /// UpdateShardCount in progress: the open-shard count the stream is being resharded to.
    #[serde(default)]
    pub scaling_target: Option<u32>,
    /// When the stream was last resharded (for on-demand scaling cooldowns).
    #[serde(default)]
    pub last_resharded_ms: u64,
    /// Registered enhanced fan-out consumers, by name.
    #[serde(default)]
    pub consumers: BTreeMap<String, ConsumerRecord>,
}

/// A stream consumer's lifecycle (RegisterStreamConsumer → ACTIVE; Deregister → gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConsumerStatus {
    Creating,
    Active,
    Deleting,
}

impl ConsumerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerStatus::Creating => "CREATING",
            ConsumerStatus::Active => "ACTIVE",
            ConsumerStatus::Deleting => "DELETING",
        }
    }
}

/// A registered stream consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRecord {
    pub name: String,
    pub created_ms: u64,
    pub status: ConsumerStatus,
}

impl ConsumerRecord {
    /// `arn:aws:kinesis:REGION:ACCOUNT:stream/STREAM/consumer/NAME:CREATED_SECONDS`.
    pub fn arn(&self, stream_arn: &str) -> String {
        format!(
            "{stream_arn}/consumer/{}:{}",
            self.name,
            self.created_ms / 1000
        )
    }
}

/// Where a shard is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    /// Accepting writes.
    Open,
    /// A split or merge replaced it: it accepts writes only until its seal entry commits.
    Closing,
    /// Sealed at log index `sealed_at`; readable to its end, never written again.
    Closed { sealed_at: u64, closed_ms: u64 },
}

/// One replica of a shard group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaRecord {
    /// Raft member id, never reused.
    pub replica: u64,
    pub node: u64,
    /// A replica being added (to replace another): it starts empty, catches up as a learner,
    /// and becomes a voter when the move finishes.
    #[serde(default)]
    pub learner: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardRecord {
    pub index: u32,
    /// The Raft group holding the shard's log.
    pub group: u64,
    pub range: HashKeyRange,
    pub parent: Option<u32>,
    pub adjacent_parent: Option<u32>,
    pub created_ms: u64,
    pub state: ShardState,
    pub replicas: Vec<ReplicaRecord>,
    /// The node whose replica leads the shard, as last reported (for routing and status; the
    /// shard group itself is the authority).
    #[serde(default)]
    pub leader: Option<u64>,
    /// Why the shard exists (how it was created), for status.
    #[serde(default)]
    pub reason: Option<String>,
    /// A replica move in progress: which replica is being replaced (and why).
    #[serde(default)]
    pub moving: Option<ReplicaMove>,
    /// The node the scheduler wants to lead this shard (its leader transfers leadership there
    /// when it can). `None`: the first replica's node, as placed.
    #[serde(default)]
    pub preferred: Option<u64>,
}

/// One replica of a shard being replaced by another (repair of a dead node, or rebalancing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMove {
    pub from_replica: u64,
    pub to_replica: u64,
    pub reason: String,
    pub started_ms: u64,
}

impl ShardRecord {
    /// Replicas that vote (not learners).
    pub fn voters(&self) -> impl Iterator<Item = &ReplicaRecord> {
        self.replicas.iter().filter(|replica| !replica.learner)
    }

    /// The node that should lead this shard.
    pub fn preferred_node(&self) -> Option<u64> {
        self.preferred
            .or_else(|| self.voters().next().map(|replica| replica.node))
    }

    /// Whether `node` hosts a voting replica of this shard.
    pub fn has_voter_on(&self, node: u64) -> bool {
        self.voters().any(|replica| replica.node == node)
    }

    pub fn id(&self) -> ShardId {
        ShardId(self.index)
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, ShardState::Closed { .. })
    }

    /// Open for writes (possibly about to be sealed).
    pub fn is_writable(&self) -> bool {
        !self.is_closed()
    }

    pub fn created_secs(&self) -> u64 {
        self.created_ms / 1000
    }

    /// StartingSequenceNumber.
    pub fn starting_sequence_number(&self) -> SequenceNumber {
        SequenceNumber::shard_start(self.created_secs(), self.index)
    }

    /// EndingSequenceNumber, for a closed shard: the position of its seal entry, above every
    /// record the shard holds.
    pub fn ending_sequence_number(&self) -> Option<SequenceNumber> {
        match self.state {
            ShardState::Closed {
                sealed_at,
                closed_ms,
            } => Some(self.sequence_number(
                Position {
                    entry: sealed_at,
                    record: 0,
                },
                closed_ms,
            )),
            _ => None,
        }
    }

    /// The sequence number of the record at `position` that arrived at `arrival_ms`.
    pub fn sequence_number(&self, position: Position, arrival_ms: u64) -> SequenceNumber {
        SequenceNumber {
            shard_created_secs: self.created_secs(),
            shard_index: self.index,
            counter: position.counter(),
            arrival_secs: arrival_ms / 1000,
        }
    }
}

impl StreamRecord {
    pub fn shard(&self, id: ShardId) -> Option<&ShardRecord> {
        self.shards
            .get(id.0 as usize)
            .filter(|shard| shard.index == id.0)
    }

    pub fn open_shard_count(&self) -> usize {
        self.shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .count()
    }

    /// The shard a record with `key` is written to: among the shards that still accept writes
    /// and cover the key, the oldest. During a split or merge the parent (older) keeps taking
    /// writes until it is sealed, so per-key order holds across the lineage; shards in
    /// `excluded` (found sealed by a write) are skipped so the write moves to a child.
    pub fn route(&self, key: HashKey, excluded: &[u32]) -> Option<&ShardRecord> {
        self.shards
            .iter()
            .filter(|shard| {
                shard.is_writable() && shard.range.contains(key) && !excluded.contains(&shard.index)
            })
            .min_by_key(|shard| shard.index)
    }

    /// The children of a shard (those naming it as parent or adjacent parent).
    pub fn children(&self, index: u32) -> impl Iterator<Item = &ShardRecord> {
        self.shards.iter().filter(move |shard| {
            shard.parent == Some(index) || shard.adjacent_parent == Some(index)
        })
    }

    pub fn arn(&self, region: &str, account: &str) -> String {
        riffle_types::StreamArn {
            partition: "aws".to_string(),
            region: region.to_string(),
            account: account.to_string(),
            stream_name: self.name.clone(),
        }
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(
        index: u32,
        range: HashKeyRange,
        state: ShardState,
        parent: Option<u32>,
    ) -> ShardRecord {
        ShardRecord {
            index,
            group: index as u64 + 1,
            range,
            parent,
            adjacent_parent: None,
            created_ms: 1_000_000,
            state,
            replicas: vec![],
            leader: None,
            reason: None,
            moving: None,
            preferred: None,
        }
    }

    fn stream(shards: Vec<ShardRecord>) -> StreamRecord {
        StreamRecord {
            name: "s".into(),
            created_ms: 1,
            status: StreamStatus::Active,
            mode: StreamMode::Provisioned,
            retention_hours: 24,
            shards,
            tags: BTreeMap::new(),
            scaling_target: None,
            last_resharded_ms: 0,
            consumers: BTreeMap::new(),
        }
    }

    #[test]
    fn routing_prefers_the_parent_until_it_is_sealed() {
        let full = HashKeyRange::FULL;
        let (low, high) = full.split_at(HashKey(1 << 127)).unwrap();
        let stream = stream(vec![
            shard(0, full, ShardState::Closing, None),
            shard(1, low, ShardState::Open, Some(0)),
            shard(2, high, ShardState::Open, Some(0)),
        ]);
        let key = HashKey(5);
        assert_eq!(stream.route(key, &[]).map(|s| s.index), Some(0));
        assert_eq!(stream.route(key, &[0]).map(|s| s.index), Some(1));
        assert_eq!(
            stream.route(HashKey(u128::MAX), &[0]).map(|s| s.index),
            Some(2)
        );
        assert_eq!(
            stream.children(0).map(|s| s.index).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn closed_shards_take_no_writes() {
        let full = HashKeyRange::FULL;
        let stream = stream(vec![
            shard(
                0,
                full,
                ShardState::Closed {
                    sealed_at: 9,
                    closed_ms: 5_000,
                },
                None,
            ),
            shard(1, full, ShardState::Open, Some(0)),
        ]);
        assert_eq!(stream.route(HashKey(7), &[]).map(|s| s.index), Some(1));
        assert_eq!(stream.open_shard_count(), 1);
        let ending = stream.shards[0].ending_sequence_number().unwrap();
        assert_eq!(
            ending.position(),
            Position {
                entry: 9,
                record: 0
            }
        );
        assert!(stream.shards[1].ending_sequence_number().is_none());
    }
}
