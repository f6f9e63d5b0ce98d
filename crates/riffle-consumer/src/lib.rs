//! `riffle-consumer`: a consumer library with KCL's semantics that needs nothing but Riffle.
//!
//! A [`Worker`] of an application processes a stream's shards through a [`ShardProcessor`] per
//! shard. Workers of the same application share the shards through leases kept in Riffle's
//! replicated metadata (the lease API, `Riffle*` operations; see `riffle-api`'s `ops/leases.rs`):
//!
//! - every `lease_duration / 3` a worker renews the leases it holds, reads the lease table,
//!   and takes leases nobody renews (a lease whose counter has not moved for `lease_duration`
//!   on this worker's clock, or that has no owner) until it holds its fair share; when none are
//!   free and another worker holds more than its share, it takes one of that worker's leases;
//! - takes and renewals are conditional on the lease counter, so a lease has one holder;
//! - a shard is read from its checkpoint (or the application's initial position), by polling or
//!   by enhanced fan-out; after each batch the processor has handled, the worker checkpoints the
//!   batch's last sequence number, so every record is processed at least once, and checkpoints
//!   never move backwards (the metadata refuses it);
//! - a shard that ends (split or merged) is checkpointed `SHARD_END`; a child's lease is taken
//!   only once all its parents are at `SHARD_END`, so a partition key's records are processed
//!   in order across resharding;
//! - a worker that dies stops renewing; after `lease_duration` the others take its leases and
//!   resume from its last checkpoints.

mod reader;
mod worker;

pub use reader::Batch;
pub use reader::ReadMode;
pub use reader::ShardReader;
pub use reader::Start;
pub use riffle_client::Client;
pub use riffle_client::Error;
pub use riffle_client::ops::records::Record;
pub use worker::ShardProcessor;
pub use worker::Worker;
pub use worker::WorkerConfig;

use riffle_client::ops::consumers::DescribeStreamConsumer;
use riffle_client::ops::consumers::RegisterStreamConsumer;
use riffle_client::ops::streams::DescribeStreamSummary;

/// The checkpoint of a shard processed to its end.
pub const SHARD_END: &str = "SHARD_END";

/// Registers the enhanced fan-out consumer `name` on `stream` if it is not registered yet and
/// waits until it is ACTIVE; returns its ARN.
pub async fn ensure_consumer(client: &Client, stream: &str, name: &str) -> Result<String, Error> {
    let summary = client
        .call(&DescribeStreamSummary {
            stream_name: stream.to_string(),
        })
        .await?;
    let stream_arn = summary.stream_description_summary.stream_arn;
    let register = RegisterStreamConsumer {
        stream_arn: stream_arn.clone(),
        consumer_name: name.to_string(),
    };
    match client.call(&register).await {
        Ok(_) => {}
        Err(error) if error.is("ResourceInUseException") => {}
        Err(error) => return Err(error),
    }
    let describe = DescribeStreamConsumer {
        stream_arn: Some(stream_arn),
        consumer_name: Some(name.to_string()),
        consumer_arn: None,
    };
    loop {
        let description = client.call(&describe).await?.consumer_description;
        if description.consumer_status == "ACTIVE" {
            return Ok(description.consumer_arn);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
