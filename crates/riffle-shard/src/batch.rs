//! The record-batch format: the body of a shard log entry. One PutRecord(s) call becomes one
//! batch per shard it touches; the batch is encoded once ([`encode`], by the node that routes
//! the records to the shard's leader) and then stored, replicated and read back byte for byte.
//!
//! Layout (little endian): `[version u8 = 1][arrival_ms u64][count u32]`, then per record
//! `[partition_key_len u16][partition_key utf-8][data_len u32][data]`.

use bytes::Buf;
use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;

const VERSION: u8 = 1;
const HEADER_BYTES: usize = 1 + 8 + 4;

/// A record to append, as the API hands it over: validated, borrowed (encoding copies it into
/// the batch, once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendRecord<'a> {
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// Encodes `records` as one batch, in one allocation of the exact size.
pub fn encode<'a, I>(arrival_ms: u64, records: I) -> Bytes
where
    I: IntoIterator<Item = AppendRecord<'a>>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    let size = records
        .clone()
        .map(|record| BatchBuilder::record_size(record.partition_key, record.data))
        .sum();
    let mut builder = BatchBuilder::new(arrival_ms, size);
    for record in records {
        builder.push(record.partition_key, record.data);
    }
    builder.finish()
}

/// Builds one batch.
pub struct BatchBuilder {
    buffer: BytesMut,
    count: u32,
}

impl BatchBuilder {
    /// `capacity_hint`: expected encoded size, to allocate once.
    pub fn new(arrival_ms: u64, capacity_hint: usize) -> Self {
        let mut buffer = BytesMut::with_capacity(HEADER_BYTES + capacity_hint);
        buffer.put_u8(VERSION);
        buffer.put_u64_le(arrival_ms);
        buffer.put_u32_le(0);
        BatchBuilder { buffer, count: 0 }
    }

    /// Encoded size of one record, for capacity hints.
    pub fn record_size(partition_key: &str, data: &[u8]) -> usize {
        2 + partition_key.len() + 4 + data.len()
    }

    /// Adds a record. The caller has validated sizes: a partition key is at most 256 characters
    /// (1 KiB of UTF-8) and data at most 10 MiB.
    pub fn push(&mut self, partition_key: &str, data: &[u8]) {
        debug_assert!(partition_key.len() <= u16::MAX as usize);
        debug_assert!(data.len() <= u32::MAX as usize);
        self.buffer.put_u16_le(partition_key.len() as u16);
        self.buffer.put_slice(partition_key.as_bytes());
        self.buffer.put_u32_le(data.len() as u32);
        self.buffer.put_slice(data);
        self.count += 1;
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(mut self) -> Bytes {
        self.buffer[9..HEADER_BYTES].copy_from_slice(&self.count.to_le_bytes());
        self.buffer.freeze()
    }
}

/// The number of records an encoded batch holds, from its header (0 if it has none).
pub fn record_count(batch: &[u8]) -> u32 {
    batch
        .get(9..HEADER_BYTES)
        .and_then(|count| count.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0)
}

/// One record read back from a batch; the byte fields share the batch's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub partition_key: Bytes,
    pub data: Bytes,
}

impl BatchRecord {
    /// The partition key as text (validated as UTF-8 when the batch was decoded).
    pub fn partition_key_str(&self) -> &str {
        std::str::from_utf8(&self.partition_key).unwrap_or_default()
    }
}

/// A decoded batch.
#[derive(Clone, Debug)]
pub struct Batch {
    pub arrival_ms: u64,
    pub records: Vec<BatchRecord>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed record batch: {0}")]
pub struct BatchError(&'static str);

impl Batch {
    /// Decodes a batch, sharing `bytes` for the record fields.
    pub fn decode(bytes: &Bytes) -> Result<Batch, BatchError> {
        let mut cursor = bytes.clone();
        if cursor.remaining() < HEADER_BYTES {
            return Err(BatchError("truncated header"));
        }
        if cursor.get_u8() != VERSION {
            return Err(BatchError("unknown version"));
        }
        let arrival_ms = cursor.get_u64_le();
        let count = cursor.get_u32_le() as usize;
        let mut records = Vec::with_capacity(count.min(cursor.remaining() / 6));
        for _ in 0..count {
            if cursor.remaining() < 2 {
                return Err(BatchError("truncated partition key length"));
            }
            let key_len = cursor.get_u16_le() as usize;
            if cursor.remaining() < key_len + 4 {
                return Err(BatchError("truncated partition key"));
            }
            let partition_key = cursor.split_to(key_len);
            if std::str::from_utf8(&partition_key).is_err() {
                return Err(BatchError("partition key is not utf-8"));
            }
            let data_len = cursor.get_u32_le() as usize;
            if cursor.remaining() < data_len {
                return Err(BatchError("truncated data"));
            }
            let data = cursor.split_to(data_len);
            records.push(BatchRecord {
                partition_key,
                data,
            });
        }
        if cursor.has_remaining() {
            return Err(BatchError("trailing bytes"));
        }
        Ok(Batch {
            arrival_ms,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip() {
        let mut builder = BatchBuilder::new(1_700_000_000_123, 64);
        builder.push("user-7", b"first");
        builder.push("ключ", b"");
        builder.push("k", &[0u8, 255, 1]);
        assert_eq!(builder.len(), 3);
        let bytes = builder.finish();
        let batch = Batch::decode(&bytes).unwrap();
        assert_eq!(batch.arrival_ms, 1_700_000_000_123);
        let keys: Vec<&str> = batch
            .records
            .iter()
            .map(BatchRecord::partition_key_str)
            .collect();
        assert_eq!(keys, ["user-7", "ключ", "k"]);
        assert_eq!(batch.records[0].data.as_ref(), b"first");
        assert_eq!(batch.records[2].data.as_ref(), &[0u8, 255, 1]);
    }

    #[test]
    fn encode_writes_one_exactly_sized_batch() {
        let records = [
            AppendRecord {
                partition_key: "user-7",
                data: b"first",
            },
            AppendRecord {
                partition_key: "k",
                data: &[0u8, 255, 1],
            },
        ];
        let bytes = encode(42, records);
        assert_eq!(
            bytes.len(),
            HEADER_BYTES + (2 + 6 + 4 + 5) + (2 + 1 + 4 + 3)
        );
        let mut builder = BatchBuilder::new(42, 0);
        for record in &records {
            builder.push(record.partition_key, record.data);
        }
        assert_eq!(
            bytes,
            builder.finish(),
            "the same bytes as pushing one by one"
        );
        let batch = Batch::decode(&bytes).unwrap();
        assert_eq!(batch.arrival_ms, 42);
        assert_eq!(batch.records[1].data.as_ref(), &[0u8, 255, 1]);
        assert_eq!(record_count(&bytes), 2);
    }

    #[test]
    fn corrupt_batches_are_errors() {
        let mut builder = BatchBuilder::new(5, 16);
        builder.push("a", b"xyz");
        let bytes = builder.finish();
        for cut in 0..bytes.len() {
            assert!(
                Batch::decode(&bytes.slice(..cut)).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut extended = bytes.to_vec();
        extended.push(0);
        assert!(Batch::decode(&Bytes::from(extended)).is_err());
    }
}
