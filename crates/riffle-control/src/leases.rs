//! Lease tables for consumer applications (the `riffle-consumer` library, in the manner of
//! KCL's DynamoDB lease table), kept in the replicated metadata so a consumer needs nothing but
//! Riffle.
//!
//! One table per application, over one stream: a lease per shard with its owner, a counter and
//! a checkpoint. Every take, renewal and release bumps the counter, and takes and renewals are
//! conditional on the counter the worker last saw, so two workers can never both hold a lease.
//! Workers call a lease expired when its counter has not moved for the lease duration on their
//! own clock (no clocks are compared across machines). Checkpoints only move forward: a
//! checkpoint below the stored one is refused, whoever sends it.

use std::collections::BTreeMap;
use std::sync::Arc;

use riffle_types::KinesisError;
use serde::Deserialize;
use serde::Serialize;

use crate::command::ControlReply;
use crate::model::ControlState;

/// The checkpoint of a shard processed to its end (a closed shard's last record is done).
pub const SHARD_END: &str = "SHARD_END";

/// An application's leases over one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTable {
    pub stream: String,
    /// The stream incarnation the leases belong to (a re-created stream starts a new table).
    pub stream_created_ms: u64,
    /// By shard id.
    pub leases: BTreeMap<String, LeaseRecord>,
}

/// One shard's lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub shard_id: String,
    /// Parent shards (a split's one, a merge's two): processed to their end before this one.
    pub parents: Vec<String>,
    pub owner: Option<String>,
    /// Bumped by every take, renewal and release.
    pub counter: u64,
    /// How far processing got: a sequence number, [`SHARD_END`], or none yet (start at the
    /// application's initial position).
    pub checkpoint: Option<String>,
}

/// A change to a lease table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaseCommand {
    /// Creates the table if needed (anew if the stream was re-created) and adds a lease for every
    /// shard of the stream that has none.
    Sync { app: String, stream: String },
    /// Takes a lease for `owner` if its counter is still `counter`.
    Take {
        app: String,
        shard_id: String,
        owner: String,
        counter: u64,
    },
    /// Renews the leases `owner` holds at the given counters; the others are left alone (the
    /// reply lists only the renewed ones).
    Renew {
        app: String,
        owner: String,
        leases: Vec<(String, u64)>,
    },
    /// Records how far `owner` processed a shard it holds.
    Checkpoint {
        app: String,
        shard_id: String,
        owner: String,
        checkpoint: String,
    },
    /// Gives a held lease up (for another worker to take at once).
    Release {
        app: String,
        shard_id: String,
        owner: String,
    },
    /// Deletes the application's table.
    Delete { app: String },
}

fn table_mut<'s>(
    state: &'s mut ControlState,
    app: &str,
) -> Result<&'s mut LeaseTable, KinesisError> {
    state
        .leases
        .get_mut(app)
        .map(Arc::make_mut)
        .ok_or_else(|| KinesisError::not_found(format!("Application {app} has no lease table.")))
}

fn lease_mut<'t>(
    table: &'t mut LeaseTable,
    app: &str,
    shard_id: &str,
) -> Result<&'t mut LeaseRecord, KinesisError> {
    table.leases.get_mut(shard_id).ok_or_else(|| {
        KinesisError::not_found(format!(
            "Application {app} has no lease for shard {shard_id}."
        ))
    })
}

fn held_by<'t>(
    lease: &'t mut LeaseRecord,
    owner: &str,
) -> Result<&'t mut LeaseRecord, KinesisError> {
    if lease.owner.as_deref() != Some(owner) {
        return Err(KinesisError::in_use(format!(
            "The lease for shard {} is held by {}, not {owner}.",
            lease.shard_id,
            lease.owner.as_deref().unwrap_or("nobody")
        )));
    }
    Ok(lease)
}

/// Orders checkpoints: none < sequence numbers (by value) < SHARD_END.
pub fn checkpoint_key(checkpoint: Option<&str>) -> (u8, usize, &str) {
    match checkpoint {
        None => (0, 0, ""),
        Some(SHARD_END) => (2, 0, ""),
        Some(number) => {
            let digits = number.trim_start_matches('0');
            (1, digits.len(), digits)
        }
    }
}

/// Applies a lease command.
pub fn apply(
    state: &mut ControlState,
    command: LeaseCommand,
) -> Result<ControlReply, KinesisError> {
    match command {
        LeaseCommand::Sync { app, stream } => {
            let Some(record) = state.streams.get(&stream).cloned() else {
                return Err(KinesisError::not_found(format!(
                    "Stream {stream} not found."
                )));
            };
            let table = Arc::make_mut(state.leases.entry(app).or_default());
            if table.stream != stream || table.stream_created_ms != record.created_ms {
                *table = LeaseTable {
                    stream,
                    stream_created_ms: record.created_ms,
                    leases: BTreeMap::new(),
                };
            }
            let mut added = false;
            for shard in &record.shards {
                let shard_id = shard.id().to_string();
                if table.leases.contains_key(&shard_id) {
                    continue;
                }
                let parents = [shard.parent, shard.adjacent_parent]
                    .into_iter()
                    .flatten()
                    .map(|index| riffle_types::ShardId(index).to_string())
                    .collect();
                table.leases.insert(
                    shard_id.clone(),
                    LeaseRecord {
                        shard_id,
                        parents,
                        owner: None,
                        counter: 0,
                        checkpoint: None,
                    },
                );
                added = true;
            }
            Ok(if added {
                ControlReply::Done
            } else {
                ControlReply::Unchanged
            })
        }
        LeaseCommand::Take {
            app,
            shard_id,
            owner,
            counter,
        } => {
            let table = table_mut(state, &app)?;
            let lease = lease_mut(table, &app, &shard_id)?;
            if lease.counter != counter {
                return Err(KinesisError::in_use(format!(
                    "The lease for shard {shard_id} changed (counter {}, expected {counter}).",
                    lease.counter
                )));
            }
            lease.owner = Some(owner);
            lease.counter += 1;
            Ok(ControlReply::Leases(vec![lease.clone()]))
        }
        LeaseCommand::Renew { app, owner, leases } => {
            let table = table_mut(state, &app)?;
            let mut renewed = Vec::new();
            for (shard_id, counter) in leases {
                if let Some(lease) = table.leases.get_mut(&shard_id)
                    && lease.counter == counter
                    && lease.owner.as_deref() == Some(owner.as_str())
                {
                    lease.counter += 1;
                    renewed.push(lease.clone());
                }
            }
            Ok(ControlReply::Leases(renewed))
        }
        LeaseCommand::Checkpoint {
            app,
            shard_id,
            owner,
            checkpoint,
        } => {
            let table = table_mut(state, &app)?;
            let lease = held_by(lease_mut(table, &app, &shard_id)?, &owner)?;
            if checkpoint != SHARD_END && !checkpoint.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(KinesisError::invalid_argument(format!(
                    "Checkpoint {checkpoint} is neither a sequence number nor {SHARD_END}."
                )));
            }
            let current = checkpoint_key(lease.checkpoint.as_deref());
            let new = checkpoint_key(Some(&checkpoint));
            if new < current {
                return Err(KinesisError::invalid_argument(format!(
                    "Checkpoint {checkpoint} for shard {shard_id} is before the stored checkpoint {}.",
                    lease.checkpoint.as_deref().unwrap_or_default()
                )));
            }
            if new == current {
                return Ok(ControlReply::Unchanged);
            }
            lease.checkpoint = Some(checkpoint);
            Ok(ControlReply::Done)
        }
        LeaseCommand::Release {
            app,
            shard_id,
            owner,
        } => {
            let table = table_mut(state, &app)?;
            let lease = held_by(lease_mut(table, &app, &shard_id)?, &owner)?;
            lease.owner = None;
            lease.counter += 1;
            Ok(ControlReply::Done)
        }
        LeaseCommand::Delete { app } => Ok(if state.leases.remove(&app).is_some() {
            ControlReply::Done
        } else {
            ControlReply::Unchanged
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_lease() -> ControlState {
        let mut state = ControlState::default();
        let mut table = LeaseTable {
            stream: "s".into(),
            stream_created_ms: 1,
            leases: BTreeMap::new(),
        };
        table.leases.insert(
            "shardId-000000000000".into(),
            LeaseRecord {
                shard_id: "shardId-000000000000".into(),
                parents: Vec::new(),
                owner: None,
                counter: 0,
                checkpoint: None,
            },
        );
        state.leases.insert("app".into(), Arc::new(table));
        state
    }

    fn take(
        state: &mut ControlState,
        owner: &str,
        counter: u64,
    ) -> Result<ControlReply, KinesisError> {
        apply(
            state,
            LeaseCommand::Take {
                app: "app".into(),
                shard_id: "shardId-000000000000".into(),
                owner: owner.into(),
                counter,
            },
        )
    }

    fn checkpoint(
        state: &mut ControlState,
        owner: &str,
        at: &str,
    ) -> Result<ControlReply, KinesisError> {
        apply(
            state,
            LeaseCommand::Checkpoint {
                app: "app".into(),
                shard_id: "shardId-000000000000".into(),
                owner: owner.into(),
                checkpoint: at.into(),
            },
        )
    }

    #[test]
    fn only_one_of_two_racing_takes_wins() {
        let mut state = state_with_lease();
        assert!(take(&mut state, "a", 0).is_ok());
        assert!(take(&mut state, "b", 0).is_err());
        // b saw the new counter: it may steal (the lease looked expired to it).
        assert!(take(&mut state, "b", 1).is_ok());
        let renewed = apply(
            &mut state,
            LeaseCommand::Renew {
                app: "app".into(),
                owner: "a".into(),
                leases: vec![("shardId-000000000000".into(), 1)],
            },
        )
        .unwrap();
        assert_eq!(renewed, ControlReply::Leases(Vec::new()), "a lost it");
    }

    #[test]
    fn checkpoints_only_move_forward_and_only_for_the_owner() {
        let mut state = state_with_lease();
        take(&mut state, "a", 0).unwrap();
        assert!(checkpoint(&mut state, "b", "5").is_err(), "not b's lease");
        checkpoint(&mut state, "a", "100").unwrap();
        assert!(checkpoint(&mut state, "a", "99").is_err(), "backwards");
        assert!(checkpoint(&mut state, "a", "0100").is_ok(), "same value");
        checkpoint(&mut state, "a", "1000").unwrap();
        checkpoint(&mut state, "a", SHARD_END).unwrap();
        assert!(
            checkpoint(&mut state, "a", "99999").is_err(),
            "past the end"
        );
        assert!(checkpoint(&mut state, "a", "12x").is_err(), "not a number");
    }
}
