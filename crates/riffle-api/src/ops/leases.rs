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
use riffle_control::ControlReply;
use riffle_control::leases::LeaseCommand;
use riffle_control::leases::LeaseRecord;
use riffle_types::KinesisError;
use riffle_types::ValidationErrors;

use super::Api;
use super::common::Ctx;
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

/// Required string members, with the model's null message for each missing one.
fn required<'m>(input: &'m Map, members: &[&str]) -> Result<Vec<&'m str>, KinesisError> {
    let mut errors = ValidationErrors::new();
    let mut values = Vec::with_capacity(members.len());
    for member in members {
        match input.string(member)? {
            Some(value) if !value.is_empty() => values.push(value),
            _ => {
                errors.push("null", member, "Member must not be null");
                values.push("");
            }
        }
    }
    errors.into_result()?;
    Ok(values)
}

async fn propose(api: &Api, command: LeaseCommand) -> Result<ControlReply, KinesisError> {
    api.node
        .control()
        .propose(ControlCommand::Lease(command))
        .await
}

async fn list(api: &Api, app: &str) -> Result<Value, KinesisError> {
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

pub async fn sync_leases(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(input, &["ApplicationName", "StreamName"])?;
    let (app, stream) = (values[0].to_string(), values[1].to_string());
    propose(
        api,
        LeaseCommand::Sync {
            app: app.clone(),
            stream,
        },
    )
    .await?;
    list(api, &app).await
}

pub async fn list_leases(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(input, &["ApplicationName"])?;
    list(api, values[0]).await
}

pub async fn take_lease(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(input, &["ApplicationName", "ShardId", "Owner"])?;
    let counter = input
        .int("Counter")?
        .ok_or_else(|| KinesisError::validation("Counter must not be null"))?;
    let reply = propose(
        api,
        LeaseCommand::Take {
            app: values[0].to_string(),
            shard_id: values[1].to_string(),
            owner: values[2].to_string(),
            counter: counter.max(0) as u64,
        },
    )
    .await?;
    Ok(leases_reply(reply, "Lease"))
}

pub async fn renew_leases(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(input, &["ApplicationName", "Owner"])?;
    let mut leases = Vec::new();
    for lease in input.array("Leases")?.unwrap_or_default() {
        let lease = lease
            .as_map()
            .ok_or_else(|| KinesisError::validation("Leases must hold objects"))?;
        let (Some(shard_id), Some(counter)) = (lease.string("ShardId")?, lease.int("Counter")?)
        else {
            return Err(KinesisError::validation(
                "each of Leases needs ShardId and Counter",
            ));
        };
        leases.push((shard_id.to_string(), counter.max(0) as u64));
    }
    let reply = propose(
        api,
        LeaseCommand::Renew {
            app: values[0].to_string(),
            owner: values[1].to_string(),
            leases,
        },
    )
    .await?;
    Ok(leases_reply(reply, "Leases"))
}

pub async fn checkpoint(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(
        input,
        &["ApplicationName", "ShardId", "Owner", "Checkpoint"],
    )?;
    propose(
        api,
        LeaseCommand::Checkpoint {
            app: values[0].to_string(),
            shard_id: values[1].to_string(),
            owner: values[2].to_string(),
            checkpoint: values[3].to_string(),
        },
    )
    .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn release_lease(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(input, &["ApplicationName", "ShardId", "Owner"])?;
    propose(
        api,
        LeaseCommand::Release {
            app: values[0].to_string(),
            shard_id: values[1].to_string(),
            owner: values[2].to_string(),
        },
    )
    .await?;
    Ok(Value::Map(Map::new()))
}

pub async fn delete_leases(api: &Api, _ctx: &Ctx<'_>, input: &Map) -> Result<Value, KinesisError> {
    let values = required(input, &["ApplicationName"])?;
    propose(
        api,
        LeaseCommand::Delete {
            app: values[0].to_string(),
        },
    )
    .await?;
    Ok(Value::Map(Map::new()))
}
