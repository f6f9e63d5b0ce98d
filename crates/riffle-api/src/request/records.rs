//! Inputs of the data operations: PutRecord, PutRecords, GetShardIterator, GetRecords, and the
//! starting position that GetShardIterator and SubscribeToShard share.

use bytes::Bytes;
use riffle_types::ErrorCode;
use riffle_types::HashKey;
use riffle_types::HashKeyError;
use riffle_types::KinesisError;
use riffle_types::SequenceNumber;
use riffle_types::ShardIterator;
use riffle_types::TokenError;
use riffle_types::ValidationErrors;
use riffle_types::limits;

use super::Ctx;
use super::members::StreamRef;
use super::members::bounded_int;
use super::members::check_sequence_number_pattern;
use super::members::check_shard_id;
use super::members::quoted;
use super::members::required_stream;
use crate::wire::Map;
use crate::wire::Timestamp;
use crate::wire::Value;

/// One record to write, validated. `data` shares the request body's buffer (CBOR) or the
/// base64-decoded bytes (JSON): nothing is copied again on the way to the shard.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRecord {
    pub partition_key: String,
    pub data: Bytes,
    /// `ExplicitHashKey`, else the MD5 of the partition key.
    pub hash: HashKey,
}

/// PutRecord.
#[derive(Clone, Debug, PartialEq)]
pub struct PutRecordInput {
    pub stream: StreamRef,
    pub record: NewRecord,
    /// Checked and otherwise unused: sequence numbers only grow within a shard.
    pub sequence_number_for_ordering: Option<SequenceNumber>,
}

/// PutRecords.
#[derive(Clone, Debug, PartialEq)]
pub struct PutRecordsInput {
    pub stream: StreamRef,
    /// In request order, 1 to 500 of them, at most 5 MiB together.
    pub records: Vec<NewRecord>,
}

/// GetShardIterator.
#[derive(Clone, Debug, PartialEq)]
pub struct GetShardIteratorInput {
    pub stream: StreamRef,
    pub shard_id: String,
    pub start: StartingPosition,
}

/// GetRecords: the iterator opened (its tag checked, its age within 5 minutes).
#[derive(Clone, Debug, PartialEq)]
pub struct GetRecordsInput {
    pub iterator: ShardIterator,
    /// `Limit`: records to return at most.
    pub limit: Option<usize>,
}

/// `ShardIteratorType`, or SubscribeToShard's `StartingPosition.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IteratorType {
    AtSequenceNumber,
    AfterSequenceNumber,
    TrimHorizon,
    Latest,
    AtTimestamp,
}

impl IteratorType {
    pub fn parse(text: &str) -> Option<IteratorType> {
        match text {
            "AT_SEQUENCE_NUMBER" => Some(IteratorType::AtSequenceNumber),
            "AFTER_SEQUENCE_NUMBER" => Some(IteratorType::AfterSequenceNumber),
            "TRIM_HORIZON" => Some(IteratorType::TrimHorizon),
            "LATEST" => Some(IteratorType::Latest),
            "AT_TIMESTAMP" => Some(IteratorType::AtTimestamp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IteratorType::AtSequenceNumber => "AT_SEQUENCE_NUMBER",
            IteratorType::AfterSequenceNumber => "AFTER_SEQUENCE_NUMBER",
            IteratorType::TrimHorizon => "TRIM_HORIZON",
            IteratorType::Latest => "LATEST",
            IteratorType::AtTimestamp => "AT_TIMESTAMP",
        }
    }
}

/// Where reading starts: the members of GetShardIterator (or SubscribeToShard's
/// StartingPosition) with their shapes checked. Whether they fit together (a sequence number
/// for TRIM_HORIZON, none for AT_SEQUENCE_NUMBER, a timestamp in the future) is decided where
/// the position is resolved, after the stream and shard are found, as AWS does.
#[derive(Clone, Debug, PartialEq)]
pub struct StartingPosition {
    pub kind: IteratorType,
    /// Matches the model's sequence-number pattern; whether it belongs to the shard is checked
    /// on resolution.
    pub sequence_number: Option<String>,
    pub timestamp: Option<Timestamp>,
}

/// How AWS prints a blob in validation messages.
fn blob_repr(data: &Bytes) -> String {
    format!(
        "'java.nio.HeapByteBuffer[pos=0 lim={0} cap={0}]'",
        data.len()
    )
}

/// A record's member path in messages: `data` for PutRecord, `records.N.member.data` for the
/// N-th (from 1) record of PutRecords. Built only for a message, never per record.
fn member_path(record: Option<usize>, member: &str) -> String {
    match record {
        None => member.to_string(),
        Some(index) => format!("records.{}.member.{member}", index + 1),
    }
}

/// Validates one record's members; `record` is its place in PutRecords (`None` for PutRecord).
fn read_record(
    errors: &mut ValidationErrors,
    input: &Map,
    record: Option<usize>,
) -> Result<Option<NewRecord>, KinesisError> {
    let data = input.blob("Data")?;
    let partition_key = input.string("PartitionKey")?;
    let explicit = input.string("ExplicitHashKey")?;
    match &data {
        None => errors.push(
            "null",
            &member_path(record, "data"),
            "Member must not be null",
        ),
        Some(data) if data.len() > limits::MAX_RECORD_DATA_BYTES => errors.push(
            &blob_repr(data),
            &member_path(record, "data"),
            &format!(
                "Member must have length less than or equal to {}",
                limits::MAX_RECORD_DATA_BYTES
            ),
        ),
        Some(_) => {}
    }
    match partition_key {
        None => errors.push(
            "null",
            &member_path(record, "partitionKey"),
            "Member must not be null",
        ),
        Some(key) => {
            let length = key.chars().count();
            if length == 0 {
                errors.push(
                    &quoted(key),
                    &member_path(record, "partitionKey"),
                    "Member must have length greater than or equal to 1",
                );
            } else if length > limits::MAX_PARTITION_KEY_CHARS {
                errors.push(
                    &quoted(key),
                    &member_path(record, "partitionKey"),
                    "Member must have length less than or equal to 256",
                );
            }
        }
    }
    let mut hash = None;
    if let Some(text) = explicit {
        match HashKey::parse_decimal(text) {
            Ok(key) => hash = Some(key),
            Err(HashKeyError::NotDecimal) => errors.push(
                &quoted(text),
                &member_path(record, "explicitHashKey"),
                "Member must satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
            ),
            Err(HashKeyError::OutOfRange) => {
                return Err(KinesisError::invalid_argument(format!(
                    "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
                )));
            }
        }
    }
    let (Some(data), Some(partition_key)) = (data, partition_key) else {
        return Ok(None);
    };
    let hash = hash.unwrap_or_else(|| HashKey::from_partition_key(partition_key));
    Ok(Some(NewRecord {
        partition_key: partition_key.to_string(),
        data,
        hash,
    }))
}

pub fn put_record(ctx: &Ctx<'_>, input: &Map) -> Result<PutRecordInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let record = read_record(&mut errors, input, None)?;
    let ordering = input.string("SequenceNumberForOrdering")?;
    check_sequence_number_pattern(&mut errors, "sequenceNumberForOrdering", ordering);
    errors.into_result()?;
    let sequence_number_for_ordering = match ordering {
        // Sequence numbers only grow within a shard, so any number we issued is already below
        // the next one; foreign numbers are rejected as AWS does.
        Some(text) => Some(SequenceNumber::parse(text).map_err(|_| {
            KinesisError::invalid_argument(format!(
                "ExclusiveMinimumSequenceNumber {text} used in PutRecord on stream {} under account {} is invalid.",
                stream.name, ctx.account
            ))
        })?),
        None => None,
    };
    let Some(record) = record else {
        return Err(KinesisError::validation("record is incomplete"));
    };
    Ok(PutRecordInput {
        stream,
        record,
        sequence_number_for_ordering,
    })
}

pub fn put_records(ctx: &Ctx<'_>, input: &Map) -> Result<PutRecordsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let records = input.array("Records")?;
    let mut entries = Vec::new();
    match records {
        None => errors.push("null", "records", "Member must not be null"),
        Some([]) => errors.push(
            "[]",
            "records",
            "Member must have length greater than or equal to 1",
        ),
        Some(records) if records.len() > limits::MAX_PUT_RECORDS_ENTRIES => errors.push(
            &format!("[{} records]", records.len()),
            "records",
            "Member must have length less than or equal to 500",
        ),
        Some(records) => {
            entries.reserve(records.len());
            for (index, record) in records.iter().enumerate() {
                let record = crate::wire::fields(record)?;
                if let Some(entry) = read_record(&mut errors, record, Some(index))? {
                    entries.push(entry);
                }
            }
        }
    }
    errors.into_result()?;
    let total: usize = entries
        .iter()
        .map(|entry| entry.data.len() + entry.partition_key.len())
        .sum();
    if total > limits::MAX_PUT_RECORDS_BYTES {
        return Err(KinesisError::invalid_argument(format!(
            "Records size exceeds {} MB limit",
            limits::MAX_PUT_RECORDS_BYTES / 1_048_576
        )));
    }
    Ok(PutRecordsInput {
        stream,
        records: entries,
    })
}

/// The starting-position members by GetShardIterator's rules and messages, after whatever
/// `errors` already holds: the type (required, one of five), the sequence number's shape, the
/// timestamp's wire type.
pub fn starting_position(
    mut errors: ValidationErrors,
    kind: Option<&str>,
    sequence_number: Option<&str>,
    timestamp: Option<&Value>,
) -> Result<StartingPosition, KinesisError> {
    let parsed_kind = kind.and_then(IteratorType::parse);
    match kind {
        None => errors.push("null", "shardIteratorType", "Member must not be null"),
        Some(kind) if parsed_kind.is_none() => errors.push(
            &quoted(kind),
            "shardIteratorType",
            "Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
        ),
        Some(_) => {}
    }
    check_sequence_number_pattern(&mut errors, "startingSequenceNumber", sequence_number);
    let timestamp = timestamp.map_or(Ok(None), Value::timestamp)?;
    errors.into_result()?;
    Ok(StartingPosition {
        // Unreachable default: a missing or unknown type was reported just above.
        kind: parsed_kind.unwrap_or(IteratorType::TrimHorizon),
        sequence_number: sequence_number.map(str::to_string),
        timestamp,
    })
}

pub fn get_shard_iterator(
    ctx: &Ctx<'_>,
    input: &Map,
) -> Result<GetShardIteratorInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let stream = required_stream(ctx, input, &mut errors)?;
    let shard_id = input.string("ShardId")?;
    check_shard_id(&mut errors, "shardId", shard_id, true);
    let kind = input.string("ShardIteratorType")?;
    let sequence_number = input.string("StartingSequenceNumber")?;
    let start = starting_position(errors, kind, sequence_number, input.get("Timestamp"))?;
    Ok(GetShardIteratorInput {
        stream,
        shard_id: shard_id.unwrap_or_default().to_string(),
        start,
    })
}

pub fn get_records(ctx: &Ctx<'_>, input: &Map) -> Result<GetRecordsInput, KinesisError> {
    let mut errors = ValidationErrors::new();
    let token = input.string("ShardIterator")?;
    match token {
        None => errors.push("null", "shardIterator", "Member must not be null"),
        Some(token) if token.is_empty() || token.len() > 512 => errors.push(
            &quoted(token),
            "shardIterator",
            "Member must have length between 1 and 512",
        ),
        Some(_) => {}
    }
    let limit = bounded_int(
        &mut errors,
        input,
        "Limit",
        "limit",
        1,
        limits::MAX_GET_RECORDS_LIMIT as i64,
    )?;
    errors.into_result()?;
    let iterator = ShardIterator::decode(token.unwrap_or_default(), ctx.token_key()?, ctx.now_ms).map_err(|error| {
        match error {
            TokenError::Expired { issued_ms, now_ms } => KinesisError::new(
                ErrorCode::ExpiredIteratorException,
                format!(
                    "Iterator expired. The iterator was created at time {issued_ms} while right now it is {now_ms} which is further in the future than the tolerated delay of {} milliseconds.",
                    limits::ITERATOR_TTL_MS
                ),
            ),
            TokenError::Malformed => KinesisError::invalid_argument("Invalid ShardIterator."),
        }
    })?;
    Ok(GetRecordsInput {
        iterator,
        limit: limit.map(|limit| limit as usize),
    })
}
