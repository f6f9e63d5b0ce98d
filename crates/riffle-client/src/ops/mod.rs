//! Typed requests and answers of the operations Riffle's own tools call, with the members they
//! use. Members are named as on the wire (`StreamName`); answers ignore members they do not
//! name, so a newer server's additions do not break an older client.

pub mod consumers;
pub mod leases;
pub mod records;
pub mod streams;

use serde::Deserialize;
use serde::Serialize;
use serde::ser::SerializeMap;

/// Where reading a shard starts (GetShardIterator's `ShardIteratorType` and its members, or
/// SubscribeToShard's `StartingPosition`).
#[derive(Debug, Clone, PartialEq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    AtSequenceNumber(String),
    AfterSequenceNumber(String),
    /// Epoch seconds.
    AtTimestamp(f64),
}

impl StartingPosition {
    fn type_name(&self) -> &'static str {
        match self {
            StartingPosition::TrimHorizon => "TRIM_HORIZON",
            StartingPosition::Latest => "LATEST",
            StartingPosition::AtSequenceNumber(_) => "AT_SEQUENCE_NUMBER",
            StartingPosition::AfterSequenceNumber(_) => "AFTER_SEQUENCE_NUMBER",
            StartingPosition::AtTimestamp(_) => "AT_TIMESTAMP",
        }
    }

    /// Writes the position as `type_key` plus `SequenceNumber`-like or `Timestamp` members.
    fn serialize_members<M: SerializeMap>(
        &self,
        map: &mut M,
        type_key: &'static str,
        sequence_key: &'static str,
    ) -> Result<(), M::Error> {
        map.serialize_entry(type_key, self.type_name())?;
        match self {
            StartingPosition::AtSequenceNumber(number)
            | StartingPosition::AfterSequenceNumber(number) => {
                map.serialize_entry(sequence_key, number)
            }
            StartingPosition::AtTimestamp(seconds) => map.serialize_entry("Timestamp", seconds),
            StartingPosition::TrimHorizon | StartingPosition::Latest => Ok(()),
        }
    }
}

/// A hash-key range, decimal strings as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HashKeyRange {
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

/// The answer of operations that answer nothing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Empty {}

/// `Data` members: base64 in JSON, [`bytes::Bytes`] in Rust.
pub(crate) mod blob {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use bytes::Bytes;
    use serde::Deserializer;
    use serde::Serializer;
    use serde::de::Error;
    use serde::de::Visitor;

    pub fn serialize<S: Serializer>(data: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        struct Base64;
        impl Visitor<'_> for Base64 {
            type Value = Bytes;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a base64 string")
            }
            fn visit_str<E: Error>(self, text: &str) -> Result<Bytes, E> {
                BASE64.decode(text).map(Bytes::from).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Base64)
    }
}
