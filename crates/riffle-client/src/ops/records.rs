//! Records: PutRecord, PutRecords, GetShardIterator, GetRecords.

use bytes::Bytes;
use serde::Deserialize;
use serde::Serialize;
use serde::Serializer;
use serde::ser::SerializeMap;

use super::HashKeyRange;
use super::StartingPosition;
use super::blob;
use crate::client::Operation;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecord {
    pub stream_name: String,
    pub partition_key: String,
    #[serde(with = "blob")]
    pub data: Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit_hash_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordOutput {
    pub shard_id: String,
    pub sequence_number: String,
}

impl Operation for PutRecord {
    const NAME: &'static str = "PutRecord";
    type Output = PutRecordOutput;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecords {
    pub stream_name: String,
    pub records: Vec<PutRecordsEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsEntry {
    pub partition_key: String,
    #[serde(with = "blob")]
    pub data: Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit_hash_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsOutput {
    #[serde(default)]
    pub failed_record_count: u64,
    /// One result per entry, in request order.
    #[serde(default)]
    pub records: Vec<PutRecordsResult>,
}

/// Where one entry went, or why it was not written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsResult {
    #[serde(default)]
    pub shard_id: Option<String>,
    #[serde(default)]
    pub sequence_number: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

impl PutRecordsResult {
    /// `(shard id, sequence number)` of a written entry.
    pub fn written(&self) -> Option<(&str, &str)> {
        Some((self.shard_id.as_deref()?, self.sequence_number.as_deref()?))
    }

    /// A failed entry may still have been written unless the failure was throttling: AWS
    /// documents `InternalFailure` per record as an outcome that is not known.
    pub fn is_ambiguous_failure(&self) -> bool {
        self.written().is_none()
            && self.error_code.as_deref() != Some("ProvisionedThroughputExceededException")
    }
}

impl Operation for PutRecords {
    const NAME: &'static str = "PutRecords";
    type Output = PutRecordsOutput;
}

#[derive(Debug, Clone)]
pub struct GetShardIterator {
    pub stream_name: String,
    pub shard_id: String,
    pub position: StartingPosition,
}

impl Serialize for GetShardIterator {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("StreamName", &self.stream_name)?;
        map.serialize_entry("ShardId", &self.shard_id)?;
        self.position
            .serialize_members(&mut map, "ShardIteratorType", "StartingSequenceNumber")?;
        map.end()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShardIteratorOutput {
    pub shard_iterator: String,
}

impl Operation for GetShardIterator {
    const NAME: &'static str = "GetShardIterator";
    type Output = GetShardIteratorOutput;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecords {
    pub shard_iterator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetRecordsOutput {
    #[serde(default)]
    pub records: Vec<Record>,
    /// `None` once a closed shard has been read to its end.
    #[serde(default)]
    pub next_shard_iterator: Option<String>,
    #[serde(default)]
    pub millis_behind_latest: Option<u64>,
    /// At the end of a closed shard: the shards that continue it.
    #[serde(default)]
    pub child_shards: Option<Vec<ChildShard>>,
}

impl Operation for GetRecords {
    const NAME: &'static str = "GetRecords";
    type Output = GetRecordsOutput;
}

/// A record as GetRecords and SubscribeToShard return it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub sequence_number: String,
    pub partition_key: String,
    #[serde(with = "blob")]
    pub data: Bytes,
    /// Epoch seconds (millisecond precision).
    #[serde(default)]
    pub approximate_arrival_timestamp: Option<f64>,
}

impl Record {
    pub fn approximate_arrival_ms(&self) -> u64 {
        self.approximate_arrival_timestamp
            .map(|seconds| (seconds * 1000.0) as u64)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChildShard {
    pub shard_id: String,
    #[serde(default)]
    pub parent_shards: Vec<String>,
    pub hash_key_range: HashKeyRange,
}
