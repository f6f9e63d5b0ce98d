//! Riffle's lease API: the lease tables of consumer applications (`riffle-consumer`, KCL's
//! model), kept in the replicated metadata. Extensions of the Kinesis JSON protocol: same
//! endpoint, same `x-amz-target` prefix, operation names starting with `Riffle`.
//!
//! | operation | input | output |
//! |---|---|---|
//! | RiffleSyncLeases | ApplicationName, StreamName | StreamName, Leases (a lease per shard is created as shards appear) |
//! | RiffleListLeases | ApplicationName | StreamName, Leases |
//! | RiffleTakeLease | ApplicationName, ShardId, Owner, Counter | Lease (only if Counter is still current) |
//! | RiffleRenewLeases | ApplicationName, Owner, Leases: [{ShardId, Counter}] | Leases (the renewed ones) |
//! | RiffleCheckpoint | ApplicationName, ShardId, Owner, Checkpoint | (nothing) |
//! | RiffleReleaseLease | ApplicationName, ShardId, Owner | (nothing) |
//! | RiffleDeleteLeases | ApplicationName | (nothing) |
//!
//! A lease is `{ShardId, ParentShardIds, Owner?, Counter, Checkpoint?}`; a checkpoint is a
//! sequence number or `SHARD_END`. A take or renewal at a stale counter, and a checkpoint or
//! release by a worker that does not hold the lease, fail with ResourceInUseException; a
//! checkpoint before the stored one fails with InvalidArgumentException.

use riffle_control::ControlCommand;
use riffle_control::ControlError;
use riffle_control::ControlReply;
use riffle_control::leases::LeaseCommand;
use riffle_control::leases::LeaseRecord;
use riffle_types::KinesisError;

use super::Api;
use crate::error::ApiError;
use crate::request::CheckpointInput;
use crate::request::LeaseTableInput;
use crate::request::ReleaseLeaseInput;
use crate::request::RenewLeasesInput;
use crate::request::SyncLeasesInput;
use crate::request::TakeLeaseInput;
use crate::wire::Map;
use crate::wire::Value;

fn lease_value(lease: &LeaseRecord) -> Value {
    let mut value = Map::with_capacity(5);
    value.push("ShardId", lease.shard_id.clone());
    value.push(
        "ParentShardIds",
        lease
            .parents
            .iter()
            .map(|parent| Value::from(parent.clone()))
            .collect::<Vec<_>>(),
    );
    value.push_some("Owner", lease.owner.clone());
    value.push("Counter", lease.counter as i64);
    value.push_some("Checkpoint", lease.checkpoint.clone());
    Value::Map(value)
}

async fn propose(api: &Api, command: LeaseCommand) -> Result<ControlReply, ControlError> {
    api.node
        .control()
        .propose(ControlCommand::Lease(command))
        .await
}

async fn list(api: &Api, app: &str) -> Result<Value, ApiError> {
    let state = api.synced_state().await;
    let table = state
        .leases
        .get(app)
        .ok_or_else(|| KinesisError::not_found(format!("Application {app} has no lease table.")))?;
    let mut out = Map::with_capacity(2);
    out.push("StreamName", table.stream.clone());
    out.push(
        "Leases",
        table.leases.values().map(lease_value).collect::<Vec<_>>(),
    );
    Ok(Value::Map(out))
}

fn leases_reply(reply: ControlReply, member: &str) -> Value {
    let leases = match reply {
        ControlReply::Leases(leases) => leases,
        _ => Vec::new(),
    };
    let mut out = Map::with_capacity(1);
    if member == "Lease" {
        if let Some(lease) = leases.first() {
            out.push("Lease", lease_value(lease));
        }
    } else {
        out.push(member, leases.iter().map(lease_value).collect::<Vec<_>>());
    }
    Value::Map(out)
}

pub async fn sync_leases(api: &Api, input: SyncLeasesInput) -> Result<Value, ApiError> {
    propose(
        api,
        LeaseCommand::Sync {
            app: input.application.clone(),
            stream: input.stream,
        },
    )
    .await?;
    list(api, &input.application).await
}

pub async fn list_leases(api: &Api, input: LeaseTableInput) -> Result<Value, ApiError> {
    list(api, &input.application).await
}

pub async fn take_lease(api: &Api, input: TakeLeaseInput) -> Result<Value, ApiError> {
    let reply = propose(
        api,
        LeaseCommand::Take {
            app: input.application,
            shard_id: input.shard_id,
            owner: input.owner,
            counter: input.counter,
        },
    )
    .await?;
    Ok(leases_reply(reply, "Lease"))
}

pub async fn renew_leases(api: &Api, input: RenewLeasesInput) -> Result<Value, ApiError> {
    let reply = propose(
        api,
        LeaseCommand::Renew {
            app: input.application,
            owner: input.owner,
            leases: input.leases,
        },
    )
    .await?;
    Ok(leases_reply(reply, "Leases"))
}

pub async fn checkpoint(api: &Api, input: CheckpointInput) -> Result<Value, ApiError> {
    propose(
        api,
        LeaseCommand::Checkpoint {
            app: input.application,
            shard_id: input.shard_id,
            owner: input.owner,
            checkpoint: input.checkpoint,
        },
    )
    .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn release_lease(api: &Api, input: ReleaseLeaseInput) -> Result<Value, ApiError> {
    propose(
        api,
        LeaseCommand::Release {
            app: input.application,
            shard_id: input.shard_id,
            owner: input.owner,
        },
    )
    .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn delete_leases(api: &Api, input: LeaseTableInput) -> Result<Value, ApiError> {
    propose(
        api,
        LeaseCommand::Delete {
            app: input.application,
        },
    )
    .await?;
    Ok(Value::Map(Map::new()))
}
