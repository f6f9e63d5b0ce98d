//! Helpers the handlers share: finding streams and shards in the agreed state (with AWS's
//! not-found messages), and rendering shared shapes.

use std::sync::Arc;

use riffle_control::model::ControlState;
use riffle_control::model::ShardRecord;
use riffle_control::model::StreamRecord;
use riffle_control::model::StreamStatus;
use riffle_types::KinesisError;
use riffle_types::ShardId;

use crate::request::Ctx;
use crate::wire::Map;
use crate::wire::Timestamp;
use crate::wire::Value;

/// Looks a stream up in the agreed state.
pub fn find_stream(
    ctx: &Ctx<'_>,
    state: &ControlState,
    name: &str,
) -> Result<Arc<StreamRecord>, KinesisError> {
    state
        .streams
        .get(name)
        .cloned()
        .ok_or_else(|| ctx.stream_not_found(name))
}

/// A stream that accepts data operations (ACTIVE or UPDATING).
pub fn data_stream(
    ctx: &Ctx<'_>,
    state: &ControlState,
    name: &str,
) -> Result<Arc<StreamRecord>, KinesisError> {
    let stream = find_stream(ctx, state, name)?;
    match stream.status {
        StreamStatus::Active | StreamStatus::Updating => Ok(stream),
        StreamStatus::Creating | StreamStatus::Deleting => Err(ctx.stream_not_found(name)),
    }
}

/// A shard of a stream, by the id string a request carries.
pub fn find_shard<'s>(
    ctx: &Ctx<'_>,
    stream: &'s StreamRecord,
    shard_id: &str,
) -> Result<&'s ShardRecord, KinesisError> {
    ShardId::parse(shard_id)
        .and_then(|id| stream.shard(id))
        .ok_or_else(|| {
            KinesisError::not_found(format!(
                "Shard {shard_id} in stream {} under account {} does not exist",
                stream.name, ctx.account
            ))
        })
}
/// A shard as Kinesis describes it.
pub fn shard_value(shard: &ShardRecord) -> Value {
    let mut range = Map::with_capacity(2);
    range.push("StartingHashKey", shard.range.start.to_string());
    range.push("EndingHashKey", shard.range.end.to_string());
    let mut sequence_range = Map::with_capacity(2);
    sequence_range.push(
        "StartingSequenceNumber",
        shard.starting_sequence_number().encode(),
    );
    sequence_range.push_some(
        "EndingSequenceNumber",
        shard.ending_sequence_number().map(|number| number.encode()),
    );
    let mut map = Map::with_capacity(5);
    map.push("ShardId", shard.id().to_string());
    map.push_some(
        "ParentShardId",
        shard.parent.map(|index| ShardId(index).to_string()),
    );
    map.push_some(
        "AdjacentParentShardId",
        shard
            .adjacent_parent
            .map(|index| ShardId(index).to_string()),
    );
    map.push("HashKeyRange", range);
    map.push("SequenceNumberRange", sequence_range);
    Value::Map(map)
}

/// `StreamModeDetails`.
pub fn mode_value(stream: &StreamRecord) -> Value {
    Value::Map(Map::new().with("StreamMode", stream.mode.as_str()))
}

pub fn timestamp(millis: u64) -> Value {
    Value::Timestamp(Timestamp::from_millis(millis as i64))
}

/// Whether a shard appears in listings: not expired by retention, and not a child of a shard
/// still being closed (AWS shows children only once the split or merge completed).
pub fn is_listed(ctx: &Ctx<'_>, stream: &StreamRecord, shard: &ShardRecord) -> bool {
    if let riffle_control::model::ShardState::Closed { closed_ms, .. } = shard.state {
        let horizon = ctx
            .now_ms
            .saturating_sub(u64::from(stream.retention_hours) * 3_600_000);
        if closed_ms < horizon {
            return false;
        }
    }
    let parent_closing = |parent: Option<u32>| {
        parent
            .and_then(|index| stream.shards.get(index as usize))
            .is_some_and(|parent| parent.state == riffle_control::model::ShardState::Closing)
    };
    !(parent_closing(shard.parent) || parent_closing(shard.adjacent_parent))
}
