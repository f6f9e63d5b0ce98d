//! Typed requests: the one place where an operation name (from `X-Amz-Target`) and a decoded
//! document ([`Value`], from JSON or CBOR) become a validated [`Request`].
//!
//! Decoding checks what AWS checks before it looks at any state, in AWS's order and with its
//! messages: wire types (SerializationException), the model's constraints (one
//! ValidationException listing every violation), and the rules that need no state (StreamName
//! and StreamARN agree, the ARN is this cluster's, NextTokens and shard iterators open with the
//! cluster's token key). What needs the metadata (does the stream exist, is the consumer
//! ACTIVE) is the handlers' (`crate::ops`). Decoding is pure: it reads only its arguments.
//!
//! Each request names the IAM action and the resources it touches ([`Request::permissions`],
//! see `auth`), which is what an authorizer decides on.

mod auth;
mod consumers;
mod leases;
mod members;
mod records;
mod shards;
mod streams;
mod tags;
#[cfg(test)]
mod tests;

use riffle_control::model::StreamRecord;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use riffle_types::TokenError;
use riffle_types::TokenKey;

pub use auth::Action;
pub use auth::Permission;
pub use auth::Resource;
pub use consumers::ConsumerInput;
pub use consumers::ConsumerRef;
pub use consumers::ListStreamConsumersInput;
pub use consumers::RegisterStreamConsumerInput;
pub use consumers::SubscribeToShardInput;
pub use leases::CheckpointInput;
pub use leases::LeaseTableInput;
pub use leases::ReleaseLeaseInput;
pub use leases::RenewLeasesInput;
pub use leases::SyncLeasesInput;
pub use leases::TakeLeaseInput;
pub use members::StreamRef;
pub use records::GetRecordsInput;
pub use records::GetShardIteratorInput;
pub use records::IteratorType;
pub use records::NewRecord;
pub use records::PutRecordInput;
pub use records::PutRecordsInput;
pub use records::StartingPosition;
pub use shards::ListShardsInput;
pub use shards::MergeShardsInput;
pub use shards::ShardFilter;
pub use shards::SplitShardInput;
pub(crate) use shards::{LIST_SHARDS_TOKEN, ListShardsToken};
pub use streams::CreateStreamInput;
pub use streams::DeleteStreamInput;
pub use streams::DescribeLimitsInput;
pub use streams::DescribeStreamInput;
pub use streams::DescribeStreamSummaryInput;
pub use streams::ListStreamsInput;
pub use streams::RetentionPeriodInput;
pub use streams::UpdateShardCountInput;
pub use streams::UpdateStreamModeInput;
pub(crate) use streams::{LIST_STREAMS_TOKEN, ListStreamsToken};
pub use tags::AddTagsInput;
pub use tags::ListTagsForResourceInput;
pub use tags::ListTagsForStreamInput;
pub use tags::RemoveTagsInput;

use crate::wire::Value;
use crate::wire::fields;

/// Declares [`Operation`] with its wire name and IAM action, and a span per operation (a
/// `tracing` span's name is static, so each operation gets its own call site).
macro_rules! operations {
    ($($operation:ident => $action:literal,)*) => {
        /// Every operation Riffle serves: Kinesis Data Streams' and Riffle's lease operations.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operation {
            $($operation,)*
        }

        impl Operation {
            /// Every operation, in declaration order.
            pub const ALL: &'static [Operation] = &[$(Operation::$operation,)*];

            /// The name after `Kinesis_20131202.` in `X-Amz-Target`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$operation => stringify!($operation),)*
                }
            }

            /// The operation a target names, if Riffle serves it.
            pub fn parse(name: &str) -> Option<Operation> {
                match name {
                    $(stringify!($operation) => Some(Operation::$operation),)*
                    _ => None,
                }
            }

            /// The IAM action the operation needs.
            pub fn action(self) -> Action {
                match self {
                    $(Operation::$operation => Action($action),)*
                }
            }

            /// The span a request of this operation runs in, named after the operation.
            pub fn span(self, request_id: &str) -> tracing::Span {
                match self {
                    $(Operation::$operation => {
                        tracing::info_span!(stringify!($operation), request_id = %request_id)
                    })*
                }
            }
        }
    };
}

operations! {
    CreateStream => "kinesis:CreateStream",
    DeleteStream => "kinesis:DeleteStream",
    DescribeStream => "kinesis:DescribeStream",
    DescribeStreamSummary => "kinesis:DescribeStreamSummary",
    ListStreams => "kinesis:ListStreams",
    ListShards => "kinesis:ListShards",
    SplitShard => "kinesis:SplitShard",
    MergeShards => "kinesis:MergeShards",
    PutRecord => "kinesis:PutRecord",
    PutRecords => "kinesis:PutRecords",
    GetShardIterator => "kinesis:GetShardIterator",
    GetRecords => "kinesis:GetRecords",
    IncreaseStreamRetentionPeriod => "kinesis:IncreaseStreamRetentionPeriod",
    DecreaseStreamRetentionPeriod => "kinesis:DecreaseStreamRetentionPeriod",
    AddTagsToStream => "kinesis:AddTagsToStream",
    RemoveTagsFromStream => "kinesis:RemoveTagsFromStream",
    ListTagsForStream => "kinesis:ListTagsForStream",
    TagResource => "kinesis:TagResource",
    UntagResource => "kinesis:UntagResource",
    ListTagsForResource => "kinesis:ListTagsForResource",
    DescribeLimits => "kinesis:DescribeLimits",
    UpdateShardCount => "kinesis:UpdateShardCount",
    UpdateStreamMode => "kinesis:UpdateStreamMode",
    RegisterStreamConsumer => "kinesis:RegisterStreamConsumer",
    DescribeStreamConsumer => "kinesis:DescribeStreamConsumer",
    ListStreamConsumers => "kinesis:ListStreamConsumers",
    DeregisterStreamConsumer => "kinesis:DeregisterStreamConsumer",
    SubscribeToShard => "kinesis:SubscribeToShard",
    RiffleSyncLeases => "riffle:SyncLeases",
    RiffleListLeases => "riffle:ListLeases",
    RiffleTakeLease => "riffle:TakeLease",
    RiffleRenewLeases => "riffle:RenewLeases",
    RiffleCheckpoint => "riffle:Checkpoint",
    RiffleReleaseLease => "riffle:ReleaseLease",
    RiffleDeleteLeases => "riffle:DeleteLeases",
}

/// What a request is decoded and run against: the node's account and region, the time, and
/// the cluster's token key (absent until the metadata group has agreed on one).
pub struct Ctx<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub now_ms: u64,
    pub token_key: Option<TokenKey>,
}

impl Ctx<'_> {
    /// The key that seals iterators and page tokens.
    pub fn token_key(&self) -> Result<&TokenKey, KinesisError> {
        self.token_key
            .as_ref()
            .ok_or_else(|| KinesisError::unavailable("the cluster is not initialized yet"))
    }

    /// `arn:aws:kinesis:{region}:{account}:stream/{name}`.
    pub fn stream_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:kinesis:{}:{}:stream/{name}",
            self.region, self.account
        )
    }

    /// `arn:aws:riffle:{region}:{account}:lease-table/{application}`.
    pub fn lease_table_arn(&self, application: &str) -> String {
        format!(
            "arn:aws:riffle:{}:{}:lease-table/{application}",
            self.region, self.account
        )
    }

    /// A stream's ARN, as descriptions show it.
    pub fn arn(&self, stream: &StreamRecord) -> String {
        stream.arn(self.region, self.account)
    }

    pub fn stream_not_found(&self, name: &str) -> KinesisError {
        KinesisError::not_found(format!(
            "Stream {name} under account {} not found.",
            self.account
        ))
    }
}

/// A decoded, validated request: one variant per [`Operation`].
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    CreateStream(CreateStreamInput),
    DeleteStream(DeleteStreamInput),
    DescribeStream(DescribeStreamInput),
    DescribeStreamSummary(DescribeStreamSummaryInput),
    ListStreams(ListStreamsInput),
    ListShards(ListShardsInput),
    SplitShard(SplitShardInput),
    MergeShards(MergeShardsInput),
    PutRecord(PutRecordInput),
    PutRecords(PutRecordsInput),
    GetShardIterator(GetShardIteratorInput),
    GetRecords(GetRecordsInput),
    IncreaseStreamRetentionPeriod(RetentionPeriodInput),
    DecreaseStreamRetentionPeriod(RetentionPeriodInput),
    AddTagsToStream(AddTagsInput),
    RemoveTagsFromStream(RemoveTagsInput),
    ListTagsForStream(ListTagsForStreamInput),
    TagResource(AddTagsInput),
    UntagResource(RemoveTagsInput),
    ListTagsForResource(ListTagsForResourceInput),
    DescribeLimits(DescribeLimitsInput),
    UpdateShardCount(UpdateShardCountInput),
    UpdateStreamMode(UpdateStreamModeInput),
    RegisterStreamConsumer(RegisterStreamConsumerInput),
    DescribeStreamConsumer(ConsumerInput),
    ListStreamConsumers(ListStreamConsumersInput),
    DeregisterStreamConsumer(ConsumerInput),
    SubscribeToShard(SubscribeToShardInput),
    RiffleSyncLeases(SyncLeasesInput),
    RiffleListLeases(LeaseTableInput),
    RiffleTakeLease(TakeLeaseInput),
    RiffleRenewLeases(RenewLeasesInput),
    RiffleCheckpoint(CheckpointInput),
    RiffleReleaseLease(ReleaseLeaseInput),
    RiffleDeleteLeases(LeaseTableInput),
}

impl Request {
    /// Decodes `input` (the request body) as `operation`'s input.
    pub fn decode(
        operation: Operation,
        input: &Value,
        ctx: &Ctx<'_>,
    ) -> Result<Request, KinesisError> {
        let input = fields(input)?;
        Ok(match operation {
            Operation::CreateStream => Request::CreateStream(streams::create_stream(input)?),
            Operation::DeleteStream => Request::DeleteStream(streams::delete_stream(ctx, input)?),
            Operation::DescribeStream => {
                Request::DescribeStream(streams::describe_stream(ctx, input)?)
            }
            Operation::DescribeStreamSummary => {
                Request::DescribeStreamSummary(streams::describe_stream_summary(ctx, input)?)
            }
            Operation::ListStreams => Request::ListStreams(streams::list_streams(ctx, input)?),
            Operation::ListShards => Request::ListShards(shards::list_shards(ctx, input)?),
            Operation::SplitShard => Request::SplitShard(shards::split_shard(ctx, input)?),
            Operation::MergeShards => Request::MergeShards(shards::merge_shards(ctx, input)?),
            Operation::PutRecord => Request::PutRecord(records::put_record(ctx, input)?),
            Operation::PutRecords => Request::PutRecords(records::put_records(ctx, input)?),
            Operation::GetShardIterator => {
                Request::GetShardIterator(records::get_shard_iterator(ctx, input)?)
            }
            Operation::GetRecords => Request::GetRecords(records::get_records(ctx, input)?),
            Operation::IncreaseStreamRetentionPeriod => {
                Request::IncreaseStreamRetentionPeriod(streams::retention_period(ctx, input)?)
            }
            Operation::DecreaseStreamRetentionPeriod => {
                Request::DecreaseStreamRetentionPeriod(streams::retention_period(ctx, input)?)
            }
            Operation::AddTagsToStream => {
                Request::AddTagsToStream(tags::add_tags_to_stream(ctx, input)?)
            }
            Operation::RemoveTagsFromStream => {
                Request::RemoveTagsFromStream(tags::remove_tags_from_stream(ctx, input)?)
            }
            Operation::ListTagsForStream => {
                Request::ListTagsForStream(tags::list_tags_for_stream(ctx, input)?)
            }
            Operation::TagResource => Request::TagResource(tags::tag_resource(ctx, input)?),
            Operation::UntagResource => Request::UntagResource(tags::untag_resource(ctx, input)?),
            Operation::ListTagsForResource => {
                Request::ListTagsForResource(tags::list_tags_for_resource(ctx, input)?)
            }
            Operation::DescribeLimits => Request::DescribeLimits(DescribeLimitsInput),
            Operation::UpdateShardCount => {
                Request::UpdateShardCount(streams::update_shard_count(ctx, input)?)
            }
            Operation::UpdateStreamMode => {
                Request::UpdateStreamMode(streams::update_stream_mode(ctx, input)?)
            }
            Operation::RegisterStreamConsumer => {
                Request::RegisterStreamConsumer(consumers::register_stream_consumer(ctx, input)?)
            }
            Operation::DescribeStreamConsumer => {
                Request::DescribeStreamConsumer(consumers::consumer(ctx, input)?)
            }
            Operation::ListStreamConsumers => {
                Request::ListStreamConsumers(consumers::list_stream_consumers(ctx, input)?)
            }
            Operation::DeregisterStreamConsumer => {
                Request::DeregisterStreamConsumer(consumers::consumer(ctx, input)?)
            }
            Operation::SubscribeToShard => {
                Request::SubscribeToShard(consumers::subscribe_to_shard(ctx, input)?)
            }
            Operation::RiffleSyncLeases => Request::RiffleSyncLeases(leases::sync_leases(input)?),
            Operation::RiffleListLeases => Request::RiffleListLeases(leases::lease_table(input)?),
            Operation::RiffleTakeLease => Request::RiffleTakeLease(leases::take_lease(input)?),
            Operation::RiffleRenewLeases => {
                Request::RiffleRenewLeases(leases::renew_leases(input)?)
            }
            Operation::RiffleCheckpoint => Request::RiffleCheckpoint(leases::checkpoint(input)?),
            Operation::RiffleReleaseLease => {
                Request::RiffleReleaseLease(leases::release_lease(input)?)
            }
            Operation::RiffleDeleteLeases => {
                Request::RiffleDeleteLeases(leases::lease_table(input)?)
            }
        })
    }

    /// The operation this request is for.
    pub fn operation(&self) -> Operation {
        match self {
            Request::CreateStream(_) => Operation::CreateStream,
            Request::DeleteStream(_) => Operation::DeleteStream,
            Request::DescribeStream(_) => Operation::DescribeStream,
            Request::DescribeStreamSummary(_) => Operation::DescribeStreamSummary,
            Request::ListStreams(_) => Operation::ListStreams,
            Request::ListShards(_) => Operation::ListShards,
            Request::SplitShard(_) => Operation::SplitShard,
            Request::MergeShards(_) => Operation::MergeShards,
            Request::PutRecord(_) => Operation::PutRecord,
            Request::PutRecords(_) => Operation::PutRecords,
            Request::GetShardIterator(_) => Operation::GetShardIterator,
            Request::GetRecords(_) => Operation::GetRecords,
            Request::IncreaseStreamRetentionPeriod(_) => Operation::IncreaseStreamRetentionPeriod,
            Request::DecreaseStreamRetentionPeriod(_) => Operation::DecreaseStreamRetentionPeriod,
            Request::AddTagsToStream(_) => Operation::AddTagsToStream,
            Request::RemoveTagsFromStream(_) => Operation::RemoveTagsFromStream,
            Request::ListTagsForStream(_) => Operation::ListTagsForStream,
            Request::TagResource(_) => Operation::TagResource,
            Request::UntagResource(_) => Operation::UntagResource,
            Request::ListTagsForResource(_) => Operation::ListTagsForResource,
            Request::DescribeLimits(_) => Operation::DescribeLimits,
            Request::UpdateShardCount(_) => Operation::UpdateShardCount,
            Request::UpdateStreamMode(_) => Operation::UpdateStreamMode,
            Request::RegisterStreamConsumer(_) => Operation::RegisterStreamConsumer,
            Request::DescribeStreamConsumer(_) => Operation::DescribeStreamConsumer,
            Request::ListStreamConsumers(_) => Operation::ListStreamConsumers,
            Request::DeregisterStreamConsumer(_) => Operation::DeregisterStreamConsumer,
            Request::SubscribeToShard(_) => Operation::SubscribeToShard,
            Request::RiffleSyncLeases(_) => Operation::RiffleSyncLeases,
            Request::RiffleListLeases(_) => Operation::RiffleListLeases,
            Request::RiffleTakeLease(_) => Operation::RiffleTakeLease,
            Request::RiffleRenewLeases(_) => Operation::RiffleRenewLeases,
            Request::RiffleCheckpoint(_) => Operation::RiffleCheckpoint,
            Request::RiffleReleaseLease(_) => Operation::RiffleReleaseLease,
            Request::RiffleDeleteLeases(_) => Operation::RiffleDeleteLeases,
        }
    }
}

/// The error for a page token that failed to open.
fn token_error(error: TokenError, member: &str) -> KinesisError {
    match error {
        TokenError::Expired { .. } => KinesisError::new(
            ErrorCode::ExpiredNextTokenException,
            format!("The {member} has expired. Request a new one."),
        ),
        TokenError::Malformed => KinesisError::invalid_argument(format!("Invalid {member}.")),
    }
}
