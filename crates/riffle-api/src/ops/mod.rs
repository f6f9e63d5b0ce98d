//! The handlers: one module per operation family. A handler takes its operation's typed input
//! (decoded and validated by [`crate::request`]) and acts through the node: control commands
//! to the metadata group, data to shard groups.

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

use http::StatusCode;

use crate::error::ApiError;
use crate::http::Call;
use crate::http::Reply;
use crate::http::Service;
use crate::request::Ctx;
use crate::request::Operation;
use crate::request::Request;
use crate::wire::Format;
use crate::wire::Value;

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

    /// What requests are decoded and run against now.
    fn context(&self) -> Ctx<'_> {
        let config = self.node.config();
        Ctx {
            account: &config.account,
            region: &config.region,
            now_ms: now_ms(),
            token_key: self.node.token_key(),
        }
    }

    /// Decodes and runs one call: its output document, or for SubscribeToShard its event
    /// stream (events encoded in `format`).
    pub async fn execute(
        &self,
        operation: Operation,
        input: &Value,
        format: Format,
    ) -> Result<Reply, KinesisError> {
        let ctx = self.context();
        let request = Request::decode(operation, input, &ctx)?;
        // The request's internal errors become the client's here (see `crate::error`).
        self.run(&ctx, request, format)
            .await
            .map_err(KinesisError::from)
    }

    /// Runs one operation that answers with a document (every one but SubscribeToShard).
    pub async fn handle(&self, operation: Operation, input: &Value) -> Result<Value, KinesisError> {
        if operation == Operation::SubscribeToShard {
            return Err(KinesisError::invalid_argument(
                "SubscribeToShard answers with an event stream, not a document",
            ));
        }
        match self.execute(operation, input, Format::Json).await? {
            Reply::Document(output) => Ok(output),
            Reply::Events(_) => Err(KinesisError::internal(
                "an event stream where a document was expected",
            )),
        }
    }

    /// Runs a decoded request.
    async fn run(
        &self,
        ctx: &Ctx<'_>,
        request: Request,
        format: Format,
    ) -> Result<Reply, ApiError> {
        let output = match request {
            Request::CreateStream(input) => streams::create_stream(self, ctx, input).await,
            Request::DeleteStream(input) => streams::delete_stream(self, ctx, input).await,
            Request::DescribeStream(input) => streams::describe_stream(self, ctx, input).await,
            Request::DescribeStreamSummary(input) => {
                streams::describe_stream_summary(self, ctx, input).await
            }
            Request::ListStreams(input) => streams::list_streams(self, ctx, input).await,
            Request::ListShards(input) => shards::list_shards(self, ctx, input).await,
            Request::SplitShard(input) => shards::split_shard(self, ctx, input).await,
            Request::MergeShards(input) => shards::merge_shards(self, ctx, input).await,
            Request::PutRecord(input) => records::put_record(self, ctx, input).await,
            Request::PutRecords(input) => records::put_records(self, ctx, input).await,
            Request::GetShardIterator(input) => records::get_shard_iterator(self, ctx, input).await,
            Request::GetRecords(input) => records::get_records(self, ctx, input).await,
            Request::IncreaseStreamRetentionPeriod(input) => {
                streams::change_retention(self, input, RetentionChange::Increase).await
            }
            Request::DecreaseStreamRetentionPeriod(input) => {
                streams::change_retention(self, input, RetentionChange::Decrease).await
            }
            Request::AddTagsToStream(input) | Request::TagResource(input) => {
                tags::add_tags(self, input).await
            }
            Request::RemoveTagsFromStream(input) | Request::UntagResource(input) => {
                tags::remove_tags(self, input).await
            }
            Request::ListTagsForStream(input) => tags::list_tags_for_stream(self, ctx, input).await,
            Request::ListTagsForResource(input) => {
                tags::list_tags_for_resource(self, ctx, input).await
            }
            Request::DescribeLimits(_) => streams::describe_limits(self).await,
            Request::UpdateShardCount(input) => streams::update_shard_count(self, ctx, input).await,
            Request::UpdateStreamMode(input) => streams::update_stream_mode(self, ctx, input).await,
            Request::RegisterStreamConsumer(input) => {
                consumers::register_stream_consumer(self, ctx, input).await
            }
            Request::DescribeStreamConsumer(input) => {
                consumers::describe_stream_consumer(self, ctx, input).await
            }
            Request::ListStreamConsumers(input) => {
                consumers::list_stream_consumers(self, ctx, input).await
            }
            Request::DeregisterStreamConsumer(input) => {
                consumers::deregister_stream_consumer(self, ctx, input).await
            }
            Request::SubscribeToShard(input) => {
                return subscribe::subscribe_to_shard(self, ctx, input, format)
                    .await
                    .map(Reply::Events);
            }
            Request::RiffleSyncLeases(input) => leases::sync_leases(self, input).await,
            Request::RiffleListLeases(input) => leases::list_leases(self, input).await,
            Request::RiffleTakeLease(input) => leases::take_lease(self, input).await,
            Request::RiffleRenewLeases(input) => leases::renew_leases(self, input).await,
            Request::RiffleCheckpoint(input) => leases::checkpoint(self, input).await,
            Request::RiffleReleaseLease(input) => leases::release_lease(self, input).await,
            Request::RiffleDeleteLeases(input) => leases::delete_leases(self, input).await,
        }?;
        Ok(Reply::Document(output))
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
                    .map_err(crate::error::to_client)
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

    fn span(&self, operation: &str, request_id: &str) -> tracing::Span {
        match Operation::parse(operation) {
            Some(operation) => operation.span(request_id),
            None => crate::http::unknown_operation_span(operation, request_id),
        }
    }

    async fn call(&self, call: Call) -> Result<Reply, KinesisError> {
        let Some(operation) = Operation::parse(&call.operation) else {
            return Err(KinesisError::new(
                ErrorCode::UnknownOperationException,
                format!(
                    "Operation {} is not supported by this endpoint.",
                    call.operation
                ),
            ));
        };
        self.execute(operation, &call.input, call.format).await
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}
