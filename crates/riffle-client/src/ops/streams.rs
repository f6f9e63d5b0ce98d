//! Streams and shards: CreateStream, DeleteStream, DescribeStreamSummary, ListShards,
//! UpdateShardCount.

use serde::Deserialize;
use serde::Serialize;

use super::Empty;
use super::HashKeyRange;
use crate::client::Operation;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateStream {
    pub stream_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_mode_details: Option<StreamModeDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamModeDetails {
    /// `PROVISIONED` or `ON_DEMAND`.
    pub stream_mode: String,
}

impl Operation for CreateStream {
    const NAME: &'static str = "CreateStream";
    type Output = Empty;
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteStream {
    pub stream_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforce_consumer_deletion: Option<bool>,
}

impl Operation for DeleteStream {
    const NAME: &'static str = "DeleteStream";
    type Output = Empty;
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamSummary {
    pub stream_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeStreamSummaryOutput {
    pub stream_description_summary: StreamDescriptionSummary,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDescriptionSummary {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    /// `CREATING`, `ACTIVE`, `UPDATING` or `DELETING`.
    pub stream_status: String,
    #[serde(default)]
    pub open_shard_count: u32,
    #[serde(default)]
    pub consumer_count: u32,
    #[serde(default)]
    pub stream_mode_details: Option<StreamModeDetails>,
}

impl Operation for DescribeStreamSummary {
    const NAME: &'static str = "DescribeStreamSummary";
    type Output = DescribeStreamSummaryOutput;
}

/// One page of a stream's shards: the first with `stream_name`, the next ones with the
/// `next_token` alone.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShards {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
}

impl ListShards {
    pub fn first_page(stream_name: &str) -> ListShards {
        ListShards {
            stream_name: Some(stream_name.to_string()),
            ..ListShards::default()
        }
    }

    pub fn next_page(next_token: &str) -> ListShards {
        ListShards {
            next_token: Some(next_token.to_string()),
            ..ListShards::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListShardsOutput {
    #[serde(default)]
    pub shards: Vec<Shard>,
    #[serde(default)]
    pub next_token: Option<String>,
}

impl Operation for ListShards {
    const NAME: &'static str = "ListShards";
    type Output = ListShardsOutput;
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Shard {
    pub shard_id: String,
    #[serde(default)]
    pub parent_shard_id: Option<String>,
    #[serde(default)]
    pub adjacent_parent_shard_id: Option<String>,
    pub hash_key_range: HashKeyRange,
    pub sequence_number_range: SequenceNumberRange,
}

impl Shard {
    /// The shard it was split from or merged from (one or two).
    pub fn parents(&self) -> Vec<String> {
        self.parent_shard_id
            .iter()
            .chain(self.adjacent_parent_shard_id.iter())
            .cloned()
            .collect()
    }

    /// A closed shard has an ending sequence number.
    pub fn is_open(&self) -> bool {
        self.sequence_number_range.ending_sequence_number.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SequenceNumberRange {
    pub starting_sequence_number: String,
    #[serde(default)]
    pub ending_sequence_number: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCount {
    pub stream_name: String,
    pub target_shard_count: u32,
    /// `UNIFORM_SCALING`, the only scaling type.
    pub scaling_type: String,
}

impl UpdateShardCount {
    pub fn uniform(stream_name: &str, target_shard_count: u32) -> UpdateShardCount {
        UpdateShardCount {
            stream_name: stream_name.to_string(),
            target_shard_count,
            scaling_type: "UNIFORM_SCALING".to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateShardCountOutput {
    pub stream_name: String,
    pub current_shard_count: u32,
    pub target_shard_count: u32,
}

impl Operation for UpdateShardCount {
    const NAME: &'static str = "UpdateShardCount";
    type Output = UpdateShardCountOutput;
}
