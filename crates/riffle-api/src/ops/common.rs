//! Helpers every operation uses: identifying the stream, validating members with AWS's
//! messages, and rendering shared shapes.

use std::sync::Arc;

use riffle_control::model::ControlState;
use riffle_control::model::ShardRecord;
use riffle_control::model::StreamRecord;
use riffle_control::model::StreamStatus;
use riffle_types::KinesisError;
use riffle_types::ShardId;
use riffle_types::StreamArn;
use riffle_types::ValidationErrors;
use riffle_types::is_valid_stream_name;

use crate::wire::Map;
use crate::wire::Timestamp;
use crate::wire::Value;

/// Context an operation runs in.
pub struct Ctx<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub now_ms: u64,
}

impl Ctx<'_> {
    pub fn stream_not_found(&self, name: &str) -> KinesisError {
        KinesisError::not_found(format!(
            "Stream {name} under account {} not found.",
            self.account
        ))
    }

    pub fn arn(&self, stream: &StreamRecord) -> String {
        stream.arn(self.region, self.account)
    }
}

/// Quotes a string value the way AWS validation messages do.
pub fn quoted(text: &str) -> String {
    format!("'{text}'")
}

/// Validates a stream name member (when present).
pub fn check_stream_name(errors: &mut ValidationErrors, member: &str, name: Option<&str>) {
    let Some(name) = name else { return };
    if name.is_empty() {
        errors.push(
            &quoted(name),
            member,
            "Member must have length greater than or equal to 1",
        );
    } else if name.chars().count() > 128 {
        errors.push(
            &quoted(name),
            member,
            "Member must have length less than or equal to 128",
        );
    } else if !is_valid_stream_name(name) {
        errors.push(
            &quoted(name),
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        );
    }
}

/// Validates a StreamARN member (when present).
pub fn check_stream_arn(errors: &mut ValidationErrors, member: &str, arn: Option<&str>) {
    let Some(arn) = arn else { return };
    if arn.is_empty() || arn.len() > 2048 {
        errors.push(
            &quoted(arn),
            member,
            "Member must have length between 1 and 2048",
        );
    } else if StreamArn::parse(arn).is_none() {
        errors.push(
            &quoted(arn),
            member,
            "Member must satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+",
        );
    }
}

/// The stream a request names by `StreamName`, `StreamARN` or both (which must agree).
/// Returns the name; validation errors are added to `errors` and reported by the caller.
pub fn stream_identity(
    ctx: &Ctx<'_>,
    input: &Map,
    errors: &mut ValidationErrors,
) -> Result<Option<String>, KinesisError> {
    let name = input.string("StreamName")?;
    let arn = input.string("StreamARN")?;
    check_stream_name(errors, "streamName", name);
    check_stream_arn(errors, "streamARN", arn);
    if !errors.is_empty() {
        return Ok(None);
    }
    let from_arn = match arn.and_then(StreamArn::parse) {
        Some(parsed) => {
            if parsed.account != ctx.account || parsed.region != ctx.region {
                return Err(KinesisError::not_found(format!(
                    "Stream {} under account {} not found.",
                    parsed.stream_name, parsed.account
                )));
            }
            Some(parsed.stream_name)
        }
        None => None,
    };
    match (name, from_arn) {
        (Some(name), Some(from_arn)) if name != from_arn => {
            Err(KinesisError::invalid_argument(format!(
                "StreamARN {} does not match StreamName {name}.",
                arn.unwrap_or_default()
            )))
        }
        (Some(name), _) => Ok(Some(name.to_string())),
        (None, Some(from_arn)) => Ok(Some(from_arn)),
        (None, None) => Ok(None),
    }
}

/// Like [`stream_identity`] but the stream is required.
pub fn required_stream(
    ctx: &Ctx<'_>,
    input: &Map,
    errors: &mut ValidationErrors,
) -> Result<String, KinesisError> {
    let name = stream_identity(ctx, input, errors)?;
    match name {
        Some(name) => Ok(name),
        None if !errors.is_empty() => Ok(String::new()),
        None => Err(KinesisError::invalid_argument(
            "Either StreamName or StreamARN must be provided.",
        )),
    }
}

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

/// Validates a shard id member's shape (pattern and length, as the model says).
pub fn check_shard_id(
    errors: &mut ValidationErrors,
    member: &str,
    shard_id: Option<&str>,
    required: bool,
) {
    match shard_id {
        None if required => errors.push("null", member, "Member must not be null"),
        None => {}
        Some(id) if id.is_empty() || id.len() > 128 => errors.push(
            &quoted(id),
            member,
            "Member must have length between 1 and 128",
        ),
        Some(id) if !is_valid_stream_name(id) => errors.push(
            &quoted(id),
            member,
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ),
        Some(_) => {}
    }
}

/// An integer member within `[min, max]`, with AWS's messages.
pub fn bounded_int(
    errors: &mut ValidationErrors,
    input: &Map,
    key: &str,
    member: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, KinesisError> {
    let value = input.int(key)?;
    if let Some(value) = value {
        if value < min {
            errors.push(
                &value.to_string(),
                member,
                &format!("Member must have value greater than or equal to {min}"),
            );
        } else if value > max {
            errors.push(
                &value.to_string(),
                member,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }
    Ok(value)
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
