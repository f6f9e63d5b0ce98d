//! Protocol-neutral request and response documents.
//!
//! Kinesis speaks AWS JSON 1.1 and, for the Java SDKs, CBOR. The two encode the same logical
//! shape differently (a blob is a base64 string in JSON and a byte string in CBOR; a timestamp
//! is epoch seconds in JSON and tag 1 over epoch milliseconds in CBOR), and the decoder cannot
//! know a member's model type. So both codecs decode into one [`Value`] tree that keeps what the
//! wire said, and the typed accessors ([`fields`], [`Map::string`], [`Map::blob`],
//! [`Map::timestamp`], ...) interpret it by the shape the operation expects. On the way out the operation layer builds a [`Value`] with [`Value::Bytes`] and
//! [`Value::Timestamp`] and each encoder writes them the way its protocol wants.

mod cbor;
mod input;
mod json;

pub use input::fields;

use bytes::Bytes;
use riffle_types::{ErrorCode, KinesisError};

/// A decoded request or a response to encode.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null`, CBOR null or undefined.
    Null,
    /// JSON `true`/`false`, CBOR simple values 20 and 21.
    Bool(bool),
    /// Any integer that fits in an `i64`; larger ones decode as [`Value::Float`].
    Int(i64),
    /// A number with a fraction or exponent (JSON), or a CBOR half/single/double float.
    Float(f64),
    /// Text; in JSON also every blob on input (base64).
    String(String),
    /// A CBOR byte string on input; a blob to emit on output (base64 text in JSON).
    Bytes(Bytes),
    /// A CBOR tag 1 on input; a timestamp to emit on output (epoch seconds in JSON).
    Timestamp(Timestamp),
    /// A list.
    Array(Vec<Value>),
    /// A structure or map; CBOR map keys must be text.
    Map(Map),
}

/// A point in time as Kinesis carries it: epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    pub millis: i64,
}

impl Timestamp {
    /// A timestamp `millis` milliseconds after the epoch.
    pub fn from_millis(millis: i64) -> Timestamp {
        Timestamp { millis }
    }
}

/// An object / CBOR map whose members keep the order they were decoded or pushed in.
///
/// Members are not deduplicated: [`Map::get`] returns the last member with a key, so a request
/// that repeats a member behaves as "last one wins" (as Jackson does) without the decoder paying
/// for a lookup per member.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

impl Map {
    /// An empty map.
    pub fn new() -> Map {
        Map::default()
    }

    /// An empty map with room for `capacity` members.
    pub fn with_capacity(capacity: usize) -> Map {
        Map {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Appends a member, keeping any earlier member with the same key (see the type docs).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.entries.push((key.into(), value.into()));
    }

    /// Appends a member only when `value` is `Some`: optional output members are left out
    /// rather than sent as `null`.
    pub fn push_some<V: Into<Value>>(&mut self, key: impl Into<String>, value: Option<V>) {
        if let Some(value) = value {
            self.push(key, value);
        }
    }

    /// Builder form of [`Map::push`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Map {
        self.push(key, value);
        self
    }

    /// Removes and returns the last member named `key` (no copy of its value).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        let index = self.entries.iter().rposition(|(name, _)| name == key)?;
        Some(self.entries.remove(index).1)
    }

    /// The last member named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Number of members, duplicates included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no members.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Members in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// The members, in order.
    pub fn into_entries(self) -> Vec<(String, Value)> {
        self.entries
    }
}

impl From<Vec<(String, Value)>> for Map {
    fn from(entries: Vec<(String, Value)>) -> Map {
        Map { entries }
    }
}

impl<K: Into<String>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Map {
        Map {
            entries: iter
                .into_iter()
                .map(|(key, value)| (key.into(), value.into()))
                .collect(),
        }
    }
}

impl Value {
    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(elements) => Some(elements),
            _ => None,
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Value {
        Value::Bool(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Value {
        Value::Int(value)
    }
}

impl From<i32> for Value {
    fn from(value: i32) -> Value {
        Value::Int(i64::from(value))
    }
}

impl From<u32> for Value {
    fn from(value: u32) -> Value {
        Value::Int(i64::from(value))
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Value {
        Value::Float(value)
    }
}

impl From<String> for Value {
    fn from(value: String) -> Value {
        Value::String(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Value {
        Value::String(value.to_owned())
    }
}

impl From<Bytes> for Value {
    fn from(value: Bytes) -> Value {
        Value::Bytes(value)
    }
}

impl From<Timestamp> for Value {
    fn from(value: Timestamp) -> Value {
        Value::Timestamp(value)
    }
}

impl From<Map> for Value {
    fn from(value: Map) -> Value {
        Value::Map(value)
    }
}

impl From<Vec<Value>> for Value {
    fn from(value: Vec<Value>) -> Value {
        Value::Array(value)
    }
}

/// The two payload encodings of the Kinesis API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// AWS JSON 1.1 (boto3, the CLI, Go, JS, Rust, .NET SDKs).
    Json,
    /// CBOR 1.1 (the Java SDKs v1 and v2, hence KCL, Flink, Spark).
    Cbor,
}

const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const CBOR_CONTENT_TYPE: &str = "application/x-amz-cbor-1.1";

impl Format {
    /// The format a `Content-Type` value names, ignoring parameters such as `charset` and
    /// letter case. Plain `application/json` is read as AWS JSON.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case(JSON_CONTENT_TYPE)
            || media_type.eq_ignore_ascii_case("application/json")
        {
            Some(Format::Json)
        } else if media_type.eq_ignore_ascii_case(CBOR_CONTENT_TYPE) {
            Some(Format::Cbor)
        } else {
            None
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON_CONTENT_TYPE,
            Format::Cbor => CBOR_CONTENT_TYPE,
        }
    }
}

/// A body that is not a well-formed document of its format.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// serde_json's error, with line and column.
    #[error("invalid json: {0}")]
    Json(#[from] serde_json::Error),
    /// Malformed or unsupported CBOR at byte `offset`.
    #[error("invalid cbor at byte {offset}: {reason}")]
    Cbor {
        /// Where the offending item starts (or where input ran out).
        offset: usize,
        /// What is wrong, e.g. `unexpected end of input`.
        reason: &'static str,
    },
}

impl From<DecodeError> for KinesisError {
    fn from(error: DecodeError) -> KinesisError {
        KinesisError::new(ErrorCode::SerializationException, error.to_string())
    }
}

/// Most values (scalars and containers) in one decoded document. A one-byte CBOR item or a
/// two-byte JSON `0,` becomes a ~40-byte [`Value`], so this caps what one request body can
/// cost at ~40 MiB; the largest real request (PutRecords, 500 records) has ~2000.
pub const MAX_ITEMS: usize = 1 << 20;

/// Decodes one document; trailing bytes other than JSON whitespace are an error, and so is a
/// document of more than [`MAX_ITEMS`] values.
pub fn decode(format: Format, body: &[u8]) -> Result<Value, DecodeError> {
    match format {
        Format::Json => json::decode(body),
        Format::Cbor => cbor::decode(body),
    }
}

/// Encodes one document.
pub fn encode(format: Format, value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(format, value, &mut out);
    out
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into(format: Format, value: &Value, out: &mut Vec<u8>) {
    match format {
        Format::Json => json::encode_into(value, out),
        Format::Cbor => cbor::encode_into(value, out),
    }
}

/// The error document of the awsJson1_1 protocol, `{"__type": ..., "message": ...}`, which the
/// CBOR protocol reuses as a map.
pub fn error_document(error: &KinesisError) -> Value {
    Value::Map(
        Map::with_capacity(2)
            .with("__type", error.code.type_name())
            .with("message", error.message.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_ignore_parameters_and_case() {
        assert_eq!(
            Format::from_content_type("application/x-amz-json-1.1"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("application/x-amz-json-1.1; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type(" Application/X-Amz-Cbor-1.1 "),
            Some(Format::Cbor)
        );
        assert_eq!(
            Format::from_content_type("application/json"),
            Some(Format::Json)
        );
        assert_eq!(
            Format::from_content_type("application/x-amz-json-1.0"),
            None
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
        assert_eq!(Format::from_content_type(""), None);
        assert_eq!(Format::Json.content_type(), "application/x-amz-json-1.1");
        assert_eq!(Format::Cbor.content_type(), "application/x-amz-cbor-1.1");
    }

    #[test]
    fn map_get_returns_the_last_duplicate() {
        let map = Map::new().with("A", 1).with("B", 2).with("A", 3);
        assert_eq!(map.get("A"), Some(&Value::Int(3)));
        assert_eq!(map.get("B"), Some(&Value::Int(2)));
        assert_eq!(map.get("C"), None);
        assert_eq!(map.len(), 3);
        let keys: Vec<&str> = map.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["A", "B", "A"]);
    }

    #[test]
    fn error_document_in_both_formats() {
        let error = KinesisError::not_found("stream s not found");
        let document = error_document(&error);
        assert_eq!(
            encode(Format::Json, &document),
            br#"{"__type":"ResourceNotFoundException","message":"stream s not found"}"#
        );
        let cbor = encode(Format::Cbor, &document);
        assert_eq!(cbor[0], 0xA2);
        assert_eq!(decode(Format::Cbor, &cbor).unwrap(), document);
    }
}
