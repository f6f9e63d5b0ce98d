//! Registered (enhanced fan-out) consumers of a stream: CREATING until the metadata leader
//! activates them, DELETING until it removes them.

use std::sync::Arc;

use riffle_types::KinesisError;
use riffle_types::limits;

use super::ACTIVE_OR_UPDATING;
use super::ControlCommand;
use super::ControlReply;
use super::Names;
use super::misrouted;
use super::require_status;
use super::stream_mut;
use crate::model::ConsumerRecord;
use crate::model::ConsumerStatus;
use crate::model::ControlState;

/// Applies a consumer command; [`super::apply`] routes only those here.
pub(super) fn apply(
    state: &mut ControlState,
    command: ControlCommand,
) -> Result<ControlReply, KinesisError> {
    let names = Names::of(state);
    match command {
        ControlCommand::RegisterConsumer {
            stream,
            name,
            now_ms,
        } => {
            let record = stream_mut(state, &stream, &names)?;
            require_status(record, &names, ACTIVE_OR_UPDATING)?;
            if record.consumers.contains_key(&name) {
                return Err(KinesisError::in_use(format!(
                    "Consumer {name} under stream {stream} under account {} already exists.",
                    names.account
                )));
            }
            if record.consumers.len() >= limits::MAX_CONSUMERS_PER_STREAM {
                return Err(KinesisError::limit_exceeded(format!(
                    "Stream {stream} under account {} has reached its limit of {} consumers.",
                    names.account,
                    limits::MAX_CONSUMERS_PER_STREAM
                )));
            }
            record.consumers.insert(
                name.clone(),
                ConsumerRecord {
                    name,
                    created_ms: now_ms,
                    status: ConsumerStatus::Creating,
                },
            );
            Ok(ControlReply::Done)
        }
        ControlCommand::ConsumerActive {
            stream,
            name,
            created_ms,
        } => {
            let Some(consumer) = state
                .streams
                .get_mut(&stream)
                .map(Arc::make_mut)
                .and_then(|record| record.consumers.get_mut(&name))
                .filter(|c| c.created_ms == created_ms && c.status == ConsumerStatus::Creating)
            else {
                return Ok(ControlReply::Unchanged);
            };
            consumer.status = ConsumerStatus::Active;
            Ok(ControlReply::Done)
        }
        ControlCommand::DeregisterConsumer { stream, name } => {
            let record = stream_mut(state, &stream, &names)?;
            let Some(consumer) = record.consumers.get_mut(&name) else {
                return Err(KinesisError::not_found(format!(
                    "Consumer {name} under stream {stream} under account {} not found.",
                    names.account
                )));
            };
            if consumer.status == ConsumerStatus::Deleting {
                return Ok(ControlReply::Unchanged);
            }
            consumer.status = ConsumerStatus::Deleting;
            Ok(ControlReply::Done)
        }
        ControlCommand::ConsumerDeleted {
            stream,
            name,
            created_ms,
        } => {
            let Some(record) = state.streams.get_mut(&stream).map(Arc::make_mut) else {
                return Ok(ControlReply::Unchanged);
            };
            let gone = record.consumers.get(&name).is_some_and(|c| {
                c.created_ms == created_ms && c.status == ConsumerStatus::Deleting
            });
            if !gone {
                return Ok(ControlReply::Unchanged);
            }
            record.consumers.remove(&name);
            Ok(ControlReply::Done)
        }
        other => Err(misrouted("consumer", &other)),
    }
}
