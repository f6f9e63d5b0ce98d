//! Kinesis service limits Riffle enforces, with AWS's default values. Sizes are in bytes,
//! durations in milliseconds or hours as named.

/// Largest record: data bytes (before base64) plus the partition key's UTF-8 bytes (1 MiB).
pub const MAX_RECORD_DATA_BYTES: usize = 1_048_576;

/// Most entries in one `PutRecords` request.
pub const MAX_PUT_RECORDS_ENTRIES: usize = 500;

/// Largest `PutRecords` request, data plus partition keys of all entries (10 MiB).
pub const MAX_PUT_RECORDS_BYTES: usize = 10 * 1_048_576;

/// Longest partition key, in Unicode characters (not bytes).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Largest `Limit` a `GetRecords` call accepts.
pub const MAX_GET_RECORDS_LIMIT: usize = 10_000;

/// Most data one `GetRecords` response returns (10 MiB).
pub const MAX_GET_RECORDS_BYTES: usize = 10 * 1_048_576;

/// How long a shard iterator stays valid after it is issued (5 minutes).
pub const ITERATOR_TTL_MS: u64 = 300_000;

/// How long a `NextToken` stays valid after it is issued (5 minutes).
pub const NEXT_TOKEN_TTL_MS: u64 = 300_000;

/// Shortest retention period a stream can have.
pub const MIN_RETENTION_HOURS: u32 = 24;

/// Longest retention period a stream can have (365 days).
pub const MAX_RETENTION_HOURS: u32 = 8_760;

/// Retention period of a new stream.
pub const DEFAULT_RETENTION_HOURS: u32 = 24;

/// Open shards allowed across the whole cluster (`DescribeLimits.ShardLimit`), AWS's quota in
/// its largest regions; meant to become configurable.
pub const DEFAULT_SHARD_LIMIT: u32 = 20_000;

/// Shards an on-demand stream starts with.
pub const ON_DEMAND_INITIAL_SHARDS: u32 = 4;

/// On-demand streams allowed (`DescribeLimits.OnDemandStreamCountLimit`).
pub const DEFAULT_ON_DEMAND_STREAM_LIMIT: u32 = 50;

/// Most tags one stream can carry.
pub const MAX_TAGS_PER_STREAM: usize = 50;

/// Longest tag key, in Unicode characters.
pub const MAX_TAG_KEY_CHARS: usize = 128;

/// Longest tag value, in Unicode characters.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// Most shards one `DescribeStream` page lists; larger `Limit`s are reduced to this.
pub const DESCRIBE_STREAM_MAX_LIMIT: usize = 100;

/// Most streams one `ListStreams` page lists; the model allows larger `Limit`s but AWS
/// returns at most this many.
pub const LIST_STREAMS_MAX_LIMIT: usize = 100;

/// Shards per `ListShards` page when `MaxResults` is absent, also the largest it may be.
pub const LIST_SHARDS_DEFAULT_MAX: usize = 1_000;

/// Most open shards a stream can reach through `UpdateShardCount`.
pub const MAX_SHARDS_PER_STREAM: u32 = 10_000;

// Checked at compile time, so a bad edit to the values above fails the build.
const _: () = {
    assert!(MIN_RETENTION_HOURS <= DEFAULT_RETENTION_HOURS);
    assert!(DEFAULT_RETENTION_HOURS <= MAX_RETENTION_HOURS);
    assert!(ON_DEMAND_INITIAL_SHARDS <= MAX_SHARDS_PER_STREAM);
    assert!(MAX_SHARDS_PER_STREAM <= DEFAULT_SHARD_LIMIT);
    assert!(MAX_RECORD_DATA_BYTES <= MAX_PUT_RECORDS_BYTES);
    assert!(MAX_RECORD_DATA_BYTES <= MAX_GET_RECORDS_BYTES);
};

/// Registered consumers per stream (enhanced fan-out).
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_aws() {
        assert_eq!(MAX_RECORD_DATA_BYTES, 1 << 20);
        assert_eq!(MAX_PUT_RECORDS_BYTES, 10 << 20);
        assert_eq!(MAX_GET_RECORDS_BYTES, 10 << 20);
        assert_eq!(ITERATOR_TTL_MS, 5 * 60 * 1000);
        assert_eq!(NEXT_TOKEN_TTL_MS, 5 * 60 * 1000);
        assert_eq!(MAX_RETENTION_HOURS, 365 * 24);
    }
}
