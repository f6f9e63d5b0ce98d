//! Inputs of Riffle's lease operations (`RiffleSyncLeases` … `RiffleDeleteLeases`, see
//! `ops::leases` for what they do). Every string member is required and must not be empty.

use riffle_types::KinesisError;
use riffle_types::ValidationErrors;

use crate::wire::Map;

/// RiffleSyncLeases: a lease for every shard of the stream that has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncLeasesInput {
    pub application: String,
    pub stream: String,
}

/// RiffleListLeases and RiffleDeleteLeases: one application's lease table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTableInput {
    pub application: String,
}

/// RiffleTakeLease: only while the lease's counter is still `counter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeLeaseInput {
    pub application: String,
    pub shard_id: String,
    pub owner: String,
    pub counter: u64,
}

/// RiffleRenewLeases: each `(shard id, counter)` still held at that counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewLeasesInput {
    pub application: String,
    pub owner: String,
    pub leases: Vec<(String, u64)>,
}

/// RiffleCheckpoint: a sequence number or `SHARD_END`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInput {
    pub application: String,
    pub shard_id: String,
    pub owner: String,
    pub checkpoint: String,
}

/// RiffleReleaseLease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseLeaseInput {
    pub application: String,
    pub shard_id: String,
    pub owner: String,
}

/// Required string members, with the model's null message for each missing or empty one.
fn required<const N: usize>(input: &Map, members: [&str; N]) -> Result<[String; N], KinesisError> {
    let mut errors = ValidationErrors::new();
    let mut values: [String; N] = std::array::from_fn(|_| String::new());
    for (value, member) in values.iter_mut().zip(members) {
        match input.string(member)? {
            Some(text) if !text.is_empty() => *value = text.to_string(),
            _ => errors.push("null", member, "Member must not be null"),
        }
    }
    errors.into_result()?;
    Ok(values)
}

pub fn sync_leases(input: &Map) -> Result<SyncLeasesInput, KinesisError> {
    let [application, stream] = required(input, ["ApplicationName", "StreamName"])?;
    Ok(SyncLeasesInput {
        application,
        stream,
    })
}

pub fn lease_table(input: &Map) -> Result<LeaseTableInput, KinesisError> {
    let [application] = required(input, ["ApplicationName"])?;
    Ok(LeaseTableInput { application })
}

pub fn take_lease(input: &Map) -> Result<TakeLeaseInput, KinesisError> {
    let [application, shard_id, owner] = required(input, ["ApplicationName", "ShardId", "Owner"])?;
    let counter = input
        .int("Counter")?
        .ok_or_else(|| KinesisError::validation("Counter must not be null"))?;
    Ok(TakeLeaseInput {
        application,
        shard_id,
        owner,
        counter: counter.max(0) as u64,
    })
}

pub fn renew_leases(input: &Map) -> Result<RenewLeasesInput, KinesisError> {
    let [application, owner] = required(input, ["ApplicationName", "Owner"])?;
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
    Ok(RenewLeasesInput {
        application,
        owner,
        leases,
    })
}

pub fn checkpoint(input: &Map) -> Result<CheckpointInput, KinesisError> {
    let [application, shard_id, owner, checkpoint] =
        required(input, ["ApplicationName", "ShardId", "Owner", "Checkpoint"])?;
    Ok(CheckpointInput {
        application,
        shard_id,
        owner,
        checkpoint,
    })
}

pub fn release_lease(input: &Map) -> Result<ReleaseLeaseInput, KinesisError> {
    let [application, shard_id, owner] = required(input, ["ApplicationName", "ShardId", "Owner"])?;
    Ok(ReleaseLeaseInput {
        application,
        shard_id,
        owner,
    })
}
