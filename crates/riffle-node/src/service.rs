//! The shard service: what the leader of a shard does for any node — append a batch, seal the
//! shard, read a page, locate LATEST or AT_TIMESTAMP, follow the shard's commits — as typed
//! requests and answers.
//!
//! One implementation serves them over this node's replicas ([`crate::routing::LocalShards`]).
//! Routing calls it directly when this node leads the shard, and the transports call it for
//! other nodes (the gRPC server after converting protobuf at its edge, the simulated network as
//! is). So a local call builds no protobuf, and record bytes are moved, never copied.

use std::future::Future;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use riffle_shard::shard::ReadPage;
use riffle_storage::GroupId;
use riffle_types::seqnum::Position;

pub use crate::error::ServeError;
pub use crate::error::ShardError;

/// Appends one encoded record batch to a shard.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    pub group: GroupId,
    /// The batch (`riffle_shard::batch`), encoded once by the node that routed it.
    pub batch: Bytes,
    pub arrival_ms: u64,
}

/// Seals a shard: nothing can be appended after it.
#[derive(Clone, Copy, Debug)]
pub struct SealRequest {
    pub group: GroupId,
    pub now_ms: u64,
}

/// Reads a page of records from `from` on, after a lease check on the leader (so a record
/// acknowledged to anyone is visible).
#[derive(Clone, Copy, Debug)]
pub struct ReadRequest {
    pub group: GroupId,
    pub from: Position,
    pub max_records: usize,
    pub max_bytes: usize,
}

/// Where LATEST (`at_timestamp_ms` absent) or AT_TIMESTAMP starts.
#[derive(Clone, Copy, Debug)]
pub struct LocateRequest {
    pub group: GroupId,
    pub at_timestamp_ms: Option<u64>,
}

/// Follows a shard's committed records from `from` on, for a SubscribeToShard subscription.
#[derive(Clone, Debug)]
pub struct FollowRequest {
    pub group: GroupId,
    pub from: Position,
    /// Largest page, in bytes of record data and keys (at least one record is always sent).
    pub max_bytes: usize,
    /// Who follows, for the one-subscription-per-consumer-and-shard rule: the consumer's ARN,
    /// the subscription's cluster-unique id and when (ms since the epoch) it was accepted.
    pub consumer: String,
    pub subscription: u64,
    pub started_ms: u64,
    /// A subscription moving to a new leader: it keeps its place unless another one took over.
    pub resume: bool,
}

/// A call's answer from the node that served it.
pub type Served<T> = Result<T, ServeError>;

/// Pages of committed records, pushed as they commit. The stream ends after an error or the
/// end of a closed shard; an end without either means the stream was lost (the subscribing
/// node resumes it on the shard's leader).
pub type PageStream = BoxStream<'static, Served<ReadPage>>;

/// An accepted Follow: the leader's readable tip at acceptance and the pages that follow.
pub struct Following {
    pub tip: u64,
    pub pages: PageStream,
}

/// What a shard's leader serves (see the module comment).
pub trait ShardService {
    fn append(&self, request: AppendRequest) -> impl Future<Output = Served<u64>> + Send;
    fn seal(&self, request: SealRequest) -> impl Future<Output = Served<u64>> + Send;
    fn read(&self, request: ReadRequest) -> impl Future<Output = Served<ReadPage>> + Send;
    fn locate(&self, request: LocateRequest) -> impl Future<Output = Served<Position>> + Send;
    fn follow(&self, request: FollowRequest) -> impl Future<Output = Served<Following>> + Send;
}
