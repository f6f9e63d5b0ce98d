//! Kinesis operations: the typed [`Operation`] enum parsed from the target header, and one
//! handler module per operation family. Handlers validate input with AWS's messages, then act
//! through the node (control commands to the metadata group, data to shard groups).

mod common;
mod consumers;
mod leases;
mod records;
mod shards;
mod status;
mod streams;
mod subscribe;
mod tags;

use std::sync::Arc;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use riffle_control::ControlState;
use riffle_control::command::RetentionChange;
use riffle_node::Node;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use riffle_types::TokenError;
use riffle_types::TokenKey;

use http::StatusCode;

use crate::http::Call;
use crate::http::Service;
use crate::wire::Value;
use crate::wire::fields;

/// Every operation Riffle serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    CreateStream,
    DeleteStream,
    DescribeStream,
    DescribeStreamSummary,
    ListStreams,
    ListShards,
    SplitShard,
    MergeShards,
    PutRecord,
    PutRecords,
    GetShardIterator,
    GetRecords,
    IncreaseStreamRetentionPeriod,
    DecreaseStreamRetentionPeriod,
    AddTagsToStream,
    RemoveTagsFromStream,
    ListTagsForStream,
    TagResource,
    UntagResource,
    ListTagsForResource,
    DescribeLimits,
    UpdateShardCount,
    UpdateStreamMode,
    RegisterStreamConsumer,
    DescribeStreamConsumer,
    ListStreamConsumers,
    DeregisterStreamConsumer,
    RiffleSyncLeases,
    RiffleListLeases,
    RiffleTakeLease,
    RiffleRenewLeases,
    RiffleCheckpoint,
    RiffleReleaseLease,
    RiffleDeleteLeases,
}

impl Operation {
    const ALL: [Operation; 34] = [
        Operation::CreateStream,
        Operation::DeleteStream,
        Operation::DescribeStream,
        Operation::DescribeStreamSummary,
        Operation::ListStreams,
        Operation::ListShards,
        Operation::SplitShard,
        Operation::MergeShards,
        Operation::PutRecord,
        Operation::PutRecords,
        Operation::GetShardIterator,
        Operation::GetRecords,
        Operation::IncreaseStreamRetentionPeriod,
        Operation::DecreaseStreamRetentionPeriod,
        Operation::AddTagsToStream,
        Operation::RemoveTagsFromStream,
        Operation::ListTagsForStream,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTagsForResource,
        Operation::DescribeLimits,
        Operation::UpdateShardCount,
        Operation::UpdateStreamMode,
        Operation::RegisterStreamConsumer,
        Operation::DescribeStreamConsumer,
        Operation::ListStreamConsumers,
        Operation::DeregisterStreamConsumer,
        Operation::RiffleSyncLeases,
        Operation::RiffleListLeases,
        Operation::RiffleTakeLease,
        Operation::RiffleRenewLeases,
        Operation::RiffleCheckpoint,
        Operation::RiffleReleaseLease,
        Operation::RiffleDeleteLeases,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateStream => "CreateStream",
            Operation::DeleteStream => "DeleteStream",
            Operation::DescribeStream => "DescribeStream",
            Operation::DescribeStreamSummary => "DescribeStreamSummary",
            Operation::ListStreams => "ListStreams",
            Operation::ListShards => "ListShards",
            Operation::SplitShard => "SplitShard",
            Operation::MergeShards => "MergeShards",
            Operation::PutRecord => "PutRecord",
            Operation::PutRecords => "PutRecords",
            Operation::GetShardIterator => "GetShardIterator",
            Operation::GetRecords => "GetRecords",
            Operation::IncreaseStreamRetentionPeriod => "IncreaseStreamRetentionPeriod",
            Operation::DecreaseStreamRetentionPeriod => "DecreaseStreamRetentionPeriod",
            Operation::AddTagsToStream => "AddTagsToStream",
            Operation::RemoveTagsFromStream => "RemoveTagsFromStream",
            Operation::ListTagsForStream => "ListTagsForStream",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::ListTagsForResource => "ListTagsForResource",
            Operation::DescribeLimits => "DescribeLimits",
            Operation::UpdateShardCount => "UpdateShardCount",
            Operation::UpdateStreamMode => "UpdateStreamMode",
            Operation::RegisterStreamConsumer => "RegisterStreamConsumer",
            Operation::DescribeStreamConsumer => "DescribeStreamConsumer",
            Operation::ListStreamConsumers => "ListStreamConsumers",
            Operation::DeregisterStreamConsumer => "DeregisterStreamConsumer",
            Operation::RiffleSyncLeases => "RiffleSyncLeases",
            Operation::RiffleListLeases => "RiffleListLeases",
            Operation::RiffleTakeLease => "RiffleTakeLease",
            Operation::RiffleRenewLeases => "RiffleRenewLeases",
            Operation::RiffleCheckpoint => "RiffleCheckpoint",
            Operation::RiffleReleaseLease => "RiffleReleaseLease",
            Operation::RiffleDeleteLeases => "RiffleDeleteLeases",
        }
    }

    pub fn parse(name: &str) -> Option<Operation> {
        Operation::ALL
            .into_iter()
            .find(|operation| operation.name() == name)
    }
}

/// The Kinesis API of one node.
pub struct Api {
    node: Arc<Node>,
}

impl Api {
    pub fn new(node: Arc<Node>) -> Api {
        Api { node }
    }

    /// The node behind this API.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The control state, including everything committed before this call (a linearizable
    /// read through the metadata leader). Falls back to this node's copy when no leader can be
    /// reached, so that descriptions stay available in a minority partition.
    async fn synced_state(&self) -> Arc<ControlState> {
        if let Err(error) = self.node.control().sync().await {
            tracing::debug!(%error, "serving the local metadata copy");
        }
        self.node.control().state()
    }

    /// This node's copy of the control state when it knows `stream`, else a synced one (a
    /// stream created through another node a moment ago).
    async fn state_for(&self, stream: &str) -> Arc<ControlState> {
        let state = self.node.control().state();
        if state.streams.contains_key(stream) {
            return state;
        }
        self.synced_state().await
    }

    fn token_key(&self) -> Result<TokenKey, KinesisError> {
        self.node
            .token_key()
            .ok_or_else(|| KinesisError::unavailable("the cluster is not initialized yet"))
    }

    /// Runs one operation.
    pub async fn handle(&self, operation: Operation, input: &Value) -> Result<Value, KinesisError> {
        let input = fields(input)?;
        let config = self.node.config();
        let ctx = common::Ctx {
            account: &config.account,
            region: &config.region,
            now_ms: now_ms(),
        };
        match operation {
            Operation::CreateStream => streams::create_stream(self, &ctx, input).await,
            Operation::DeleteStream => streams::delete_stream(self, &ctx, input).await,
            Operation::DescribeStream => streams::describe_stream(self, &ctx, input).await,
            Operation::DescribeStreamSummary => {
                streams::describe_stream_summary(self, &ctx, input).await
            }
            Operation::ListStreams => streams::list_streams(self, &ctx, input).await,
            Operation::ListShards => shards::list_shards(self, &ctx, input).await,
            Operation::SplitShard => shards::split_shard(self, &ctx, input).await,
            Operation::MergeShards => shards::merge_shards(self, &ctx, input).await,
            Operation::PutRecord => records::put_record(self, &ctx, input).await,
            Operation::PutRecords => records::put_records(self, &ctx, input).await,
            Operation::GetShardIterator => records::get_shard_iterator(self, &ctx, input).await,
            Operation::GetRecords => records::get_records(self, &ctx, input).await,
            Operation::IncreaseStreamRetentionPeriod => {
                streams::change_retention(self, &ctx, input, RetentionChange::Increase).await
            }
            Operation::DecreaseStreamRetentionPeriod => {
                streams::change_retention(self, &ctx, input, RetentionChange::Decrease).await
            }
            Operation::AddTagsToStream => tags::add_tags_to_stream(self, &ctx, input).await,
            Operation::RegisterStreamConsumer => {
                consumers::register_stream_consumer(self, &ctx, input).await
            }
            Operation::DescribeStreamConsumer => {
                consumers::describe_stream_consumer(self, &ctx, input).await
            }
            Operation::ListStreamConsumers => {
                consumers::list_stream_consumers(self, &ctx, input).await
            }
            Operation::DeregisterStreamConsumer => {
                consumers::deregister_stream_consumer(self, &ctx, input).await
            }
            Operation::RemoveTagsFromStream => {
                tags::remove_tags_from_stream(self, &ctx, input).await
            }
            Operation::ListTagsForStream => tags::list_tags_for_stream(self, &ctx, input).await,
            Operation::TagResource => tags::tag_resource(self, &ctx, input).await,
            Operation::UntagResource => tags::untag_resource(self, &ctx, input).await,
            Operation::ListTagsForResource => tags::list_tags_for_resource(self, &ctx, input).await,
            Operation::DescribeLimits => streams::describe_limits(self, &ctx, input).await,
            Operation::UpdateShardCount => streams::update_shard_count(self, &ctx, input).await,
            Operation::UpdateStreamMode => streams::update_stream_mode(self, &ctx, input).await,
            Operation::RiffleSyncLeases => leases::sync_leases(self, &ctx, input).await,
            Operation::RiffleListLeases => leases::list_leases(self, &ctx, input).await,
            Operation::RiffleTakeLease => leases::take_lease(self, &ctx, input).await,
            Operation::RiffleRenewLeases => leases::renew_leases(self, &ctx, input).await,
            Operation::RiffleCheckpoint => leases::checkpoint(self, &ctx, input).await,
            Operation::RiffleReleaseLease => leases::release_lease(self, &ctx, input).await,
            Operation::RiffleDeleteLeases => leases::delete_leases(self, &ctx, input).await,
        }
    }
}

impl Service for Api {
    async fn admin(&self, post: bool, path: &str) -> Option<(StatusCode, Vec<u8>)> {
        let document = match (post, path) {
            (false, "/_riffle/status") => Ok(status::cluster_status(&self.node).await),
            (true, path) => {
                // POST /_riffle/nodes/{id}/drain and .../undrain.
                let rest = path.strip_prefix("/_riffle/nodes/")?;
                let (id, action) = rest.split_once('/')?;
                let id: u64 = id.parse().ok()?;
                let draining = match action {
                    "drain" => true,
                    "undrain" => false,
                    _ => return None,
                };
                self.node
                    .set_draining(id, draining)
                    .await
                    .map(|()| serde_json::json!({ "node": id, "draining": draining }))
            }
            _ => return None,
        };
        let (status, document) = match document {
            Ok(document) => (StatusCode::OK, document),
            Err(error) => (
                StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
                serde_json::json!({ "__type": error.code.to_string(), "message": error.message }),
            ),
        };
        Some((status, serde_json::to_vec(&document).ok()?))
    }

    async fn call(&self, call: Call) -> Result<Value, KinesisError> {
        let Some(operation) = Operation::parse(&call.operation) else {
            return Err(KinesisError::new(
                ErrorCode::UnknownOperationException,
                format!(
                    "Operation {} is not supported by this endpoint.",
                    call.operation
                ),
            ));
        };
        self.handle(operation, &call.input).await
    }

    async fn subscribe(&self, call: Call) -> Result<crate::http::EventBytes, KinesisError> {
        let input = fields(&call.input)?;
        let config = self.node.config();
        let ctx = common::Ctx {
            account: &config.account,
            region: &config.region,
            now_ms: now_ms(),
        };
        subscribe::subscribe_to_shard(self, &ctx, input, call.format).await
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// The error for a page token that failed to open.
fn common_token_error(error: TokenError, member: &str) -> KinesisError {
    match error {
        TokenError::Expired { .. } => KinesisError::new(
            ErrorCode::ExpiredNextTokenException,
            format!("The {member} has expired. Request a new one."),
        ),
        TokenError::Malformed => KinesisError::invalid_argument(format!("Invalid {member}.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_round_trip() {
        for operation in Operation::ALL {
            assert_eq!(Operation::parse(operation.name()), Some(operation));
        }
        assert_eq!(Operation::parse("SubscribeToShardX"), None);
    }
}
