//! Typed reads of request members with AWS's type-coercion semantics.
//!
//! Every accessor returns `Ok(None)` for an absent member or an explicit `null` (AWS treats both
//! as "not given"), the value when its wire type fits the model type, and a
//! `SerializationException` otherwise. Messages follow the ones AWS's Java stack produces
//! (as recorded by kinesalite), which some tests in the wild match on. Members the operation
//! does not ask for are never looked at, which is how unknown members are ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use riffle_types::KinesisError;

use super::{Map, Timestamp, Value};

/// The members of a request or nested structure; anything but a map is a
/// `SerializationException`.
pub fn fields(value: &Value) -> Result<&Map, KinesisError> {
    match value {
        Value::Map(map) => Ok(map),
        Value::Array(_) => Err(start_of_list()),
        _ => Err(KinesisError::serialization("Expected a structure")),
    }
}

fn start_of_list() -> KinesisError {
    KinesisError::serialization("Start of list found where not expected")
}

fn start_of_structure() -> KinesisError {
    KinesisError::serialization("Start of structure or map found where not expected.")
}

/// The Java class AWS names when a scalar has the wrong type.
fn java_class(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "class java.lang.Boolean",
        Value::Int(_) | Value::Float(_) | Value::Timestamp(_) => "class java.math.BigDecimal",
        Value::String(_) => "class java.lang.String",
        Value::Bytes(_) => "class java.nio.ByteBuffer",
        Value::Null | Value::Array(_) | Value::Map(_) => "class java.lang.Object",
    }
}

/// The error for `value` (never null) where a scalar of `model_type` was expected.
fn not_convertible(value: &Value, article_and_type: &str) -> KinesisError {
    match value {
        Value::Array(_) => start_of_list(),
        Value::Map(_) => start_of_structure(),
        _ => KinesisError::serialization(format!(
            "{} can not be converted to {article_and_type}",
            java_class(value)
        )),
    }
}

/// Decodes a JSON blob: standard alphabet, padding required, no stray bits.
fn decode_base64(text: &str) -> Result<Bytes, KinesisError> {
    if !text.len().is_multiple_of(4) {
        return Err(KinesisError::serialization(format!(
            "'{text}' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: {}",
            text.len()
        )));
    }
    match BASE64.decode(text) {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        Err(base64::DecodeError::InvalidByte(_, byte)) => {
            Err(KinesisError::serialization(format!(
                "'{text}' can not be converted to a Blob: Invalid Base64 character: '{}'",
                char::from(byte).escape_default()
            )))
        }
        Err(base64::DecodeError::InvalidLastSymbol(..)) => {
            Err(KinesisError::serialization(format!(
                "'{text}' can not be converted to a Blob: Invalid last non-pad Base64 character detected"
            )))
        }
        Err(error) => Err(KinesisError::serialization(format!(
            "'{text}' can not be converted to a Blob: {error}"
        ))),
    }
}

/// Seconds (JSON, or an untagged CBOR number) to milliseconds, rounding to the nearest
/// millisecond because `1506440188.749` is not exact in binary.
fn seconds_to_timestamp(seconds: f64) -> Result<Timestamp, KinesisError> {
    let millis = (seconds * 1000.0).round();
    // i64::MAX as f64 rounds up to 2^63, so the comparison is strict.
    if !millis.is_finite() || millis >= i64::MAX as f64 || millis < i64::MIN as f64 {
        return Err(KinesisError::serialization(format!(
            "timestamp {seconds} is out of range"
        )));
    }
    Ok(Timestamp {
        millis: millis as i64,
    })
}

impl Value {
    /// A string member. Numbers and booleans are not coerced.
    pub fn string(&self) -> Result<Option<&str>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text)),
            other => Err(not_convertible(other, "an String")),
        }
    }

    /// An integer or long member. Fractions are dropped toward negative infinity, as AWS does;
    /// strings are not coerced.
    pub fn int(&self) -> Result<Option<i64>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::Int(number) => Ok(Some(*number)),
            Value::Float(number) => {
                let floored = number.floor();
                if !floored.is_finite() || floored >= i64::MAX as f64 || floored < i64::MIN as f64 {
                    return Err(KinesisError::serialization(format!(
                        "number {number} is out of range for a Long"
                    )));
                }
                Ok(Some(floored as i64))
            }
            other => Err(not_convertible(other, "an Integer")),
        }
    }

    /// A boolean member. Strings and numbers are not coerced.
    pub fn bool(&self) -> Result<Option<bool>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::Bool(flag) => Ok(Some(*flag)),
            Value::String(text) => Err(KinesisError::serialization(format!(
                "'{}' can not be converted to an Boolean",
                text.to_uppercase()
            ))),
            other => Err(not_convertible(other, "an Boolean")),
        }
    }

    /// A blob member: CBOR bytes as they are, or base64 text (JSON, or CBOR from a client that
    /// sent text anyway).
    pub fn blob(&self) -> Result<Option<Bytes>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::Bytes(bytes) => Ok(Some(bytes.clone())),
            Value::String(text) => decode_base64(text).map(Some),
            other => Err(not_convertible(other, "a Blob")),
        }
    }

    /// A timestamp member: CBOR tag 1 (milliseconds), or a plain number of epoch seconds with
    /// an optional fraction (JSON, and untagged CBOR numbers).
    pub fn timestamp(&self) -> Result<Option<Timestamp>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::Timestamp(timestamp) => Ok(Some(*timestamp)),
            Value::Int(seconds) => match seconds.checked_mul(1000) {
                Some(millis) => Ok(Some(Timestamp { millis })),
                None => Err(KinesisError::serialization(format!(
                    "timestamp {seconds} is out of range"
                ))),
            },
            Value::Float(seconds) => seconds_to_timestamp(*seconds).map(Some),
            other => Err(not_convertible(other, "a Timestamp")),
        }
    }

    /// A structure or map member.
    pub fn map(&self) -> Result<Option<&Map>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::Map(map) => Ok(Some(map)),
            Value::Array(_) => Err(start_of_list()),
            _ => Err(KinesisError::serialization("Expected map or null")),
        }
    }

    /// A list member.
    pub fn array(&self) -> Result<Option<&[Value]>, KinesisError> {
        match self {
            Value::Null => Ok(None),
            Value::Array(elements) => Ok(Some(elements)),
            Value::Map(_) => Err(start_of_structure()),
            _ => Err(KinesisError::serialization("Expected list or null")),
        }
    }
}

impl Map {
    /// The string member `key`; see [`Value::string`].
    pub fn string(&self, key: &str) -> Result<Option<&str>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::string)
    }

    /// The integer member `key`; see [`Value::int`].
    pub fn int(&self, key: &str) -> Result<Option<i64>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::int)
    }

    /// The boolean member `key`; see [`Value::bool`].
    pub fn bool(&self, key: &str) -> Result<Option<bool>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::bool)
    }

    /// The blob member `key`; see [`Value::blob`].
    pub fn blob(&self, key: &str) -> Result<Option<Bytes>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::blob)
    }

    /// The timestamp member `key`; see [`Value::timestamp`].
    pub fn timestamp(&self, key: &str) -> Result<Option<Timestamp>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::timestamp)
    }

    /// The structure or map member `key`; see [`Value::map`].
    pub fn map(&self, key: &str) -> Result<Option<&Map>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::map)
    }

    /// The list member `key`; see [`Value::array`].
    pub fn array(&self, key: &str) -> Result<Option<&[Value]>, KinesisError> {
        self.get(key).map_or(Ok(None), Value::array)
    }
}

#[cfg(test)]
mod tests {
    use riffle_types::ErrorCode;

    use super::*;
    use crate::wire::{Format, decode};

    fn json(text: &str) -> Map {
        match decode(Format::Json, text.as_bytes()).unwrap() {
            Value::Map(map) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn message(result: Result<impl std::fmt::Debug, KinesisError>) -> String {
        let error = result.expect_err("expected a serialization error");
        assert_eq!(error.code, ErrorCode::SerializationException);
        error.message
    }

    #[test]
    fn absent_and_null_members_are_none() {
        let map = json(r#"{"Present": null}"#);
        assert_eq!(map.string("Present").unwrap(), None);
        assert_eq!(map.string("Absent").unwrap(), None);
        assert_eq!(map.int("Present").unwrap(), None);
        assert_eq!(map.bool("Present").unwrap(), None);
        assert_eq!(map.blob("Present").unwrap(), None);
        assert_eq!(map.timestamp("Present").unwrap(), None);
        assert_eq!(map.map("Present").unwrap(), None);
        assert_eq!(map.array("Present").unwrap(), None);
    }

    #[test]
    fn json_members_read_as_their_model_types() {
        let map = json(
            r#"{"StreamName":"s","Limit":10,"Fraction":2.7,"Negative":-2.5,"Flag":false,"Data":"aGk=",
                "Seconds":1506440188,"At":1506440188.749,"Tags":{"k":"v"},"Records":[{"Data":""}],"Extra":[1]}"#,
        );
        assert_eq!(map.string("StreamName").unwrap(), Some("s"));
        assert_eq!(map.int("Limit").unwrap(), Some(10));
        assert_eq!(map.int("Fraction").unwrap(), Some(2));
        assert_eq!(map.int("Negative").unwrap(), Some(-3));
        assert_eq!(map.bool("Flag").unwrap(), Some(false));
        assert_eq!(map.blob("Data").unwrap(), Some(Bytes::from_static(b"hi")));
        assert_eq!(
            map.timestamp("Seconds").unwrap(),
            Some(Timestamp {
                millis: 1_506_440_188_000
            })
        );
        assert_eq!(
            map.timestamp("At").unwrap(),
            Some(Timestamp {
                millis: 1_506_440_188_749
            })
        );
        assert_eq!(
            map.map("Tags").unwrap().unwrap().string("k").unwrap(),
            Some("v")
        );
        let records = map.array("Records").unwrap().unwrap();
        assert_eq!(
            fields(&records[0]).unwrap().blob("Data").unwrap(),
            Some(Bytes::new())
        );
    }

    #[test]
    fn cbor_members_read_as_their_model_types() {
        let map = Map::new()
            .with("Data", Bytes::from_static(&[0, 255]))
            .with("Text", "AP8=")
            .with(
                "At",
                Timestamp {
                    millis: 1_506_440_188_749,
                },
            )
            .with("Seconds", 12)
            .with("HalfSeconds", 1.5);
        assert_eq!(
            map.blob("Data").unwrap(),
            Some(Bytes::from_static(&[0, 255]))
        );
        assert_eq!(
            map.blob("Text").unwrap(),
            Some(Bytes::from_static(&[0, 255]))
        );
        assert_eq!(
            map.timestamp("At").unwrap(),
            Some(Timestamp {
                millis: 1_506_440_188_749
            })
        );
        assert_eq!(
            map.timestamp("Seconds").unwrap(),
            Some(Timestamp { millis: 12_000 })
        );
        assert_eq!(
            map.timestamp("HalfSeconds").unwrap(),
            Some(Timestamp { millis: 1500 })
        );
    }

    #[test]
    fn wrong_types_are_serialization_exceptions() {
        let map = json(r#"{"S":"x","N":5,"F":1.5,"B":true,"L":[],"M":{},"Huge":1e300}"#);
        assert_eq!(
            message(map.int("S")),
            "class java.lang.String can not be converted to an Integer"
        );
        assert_eq!(
            message(map.int("B")),
            "class java.lang.Boolean can not be converted to an Integer"
        );
        assert_eq!(
            message(map.int("L")),
            "Start of list found where not expected"
        );
        assert_eq!(
            message(map.int("M")),
            "Start of structure or map found where not expected."
        );
        assert!(message(map.int("Huge")).contains("out of range"));
        assert_eq!(
            message(map.string("N")),
            "class java.math.BigDecimal can not be converted to an String"
        );
        assert_eq!(
            message(map.string("F")),
            "class java.math.BigDecimal can not be converted to an String"
        );
        assert_eq!(
            message(map.bool("S")),
            "'X' can not be converted to an Boolean"
        );
        assert_eq!(
            message(map.bool("N")),
            "class java.math.BigDecimal can not be converted to an Boolean"
        );
        assert_eq!(
            message(map.blob("N")),
            "class java.math.BigDecimal can not be converted to a Blob"
        );
        assert_eq!(
            message(map.timestamp("S")),
            "class java.lang.String can not be converted to a Timestamp"
        );
        assert!(message(map.timestamp("Huge")).contains("out of range"));
        assert_eq!(message(map.map("S")), "Expected map or null");
        assert_eq!(
            message(map.map("L")),
            "Start of list found where not expected"
        );
        assert_eq!(message(map.array("N")), "Expected list or null");
        assert_eq!(
            message(map.array("M")),
            "Start of structure or map found where not expected."
        );
        assert_eq!(message(fields(&Value::Int(1))), "Expected a structure");
        assert_eq!(
            message(fields(&Value::Array(vec![]))),
            "Start of list found where not expected"
        );
    }

    #[test]
    fn base64_blobs_need_padding_and_the_standard_alphabet() {
        let blob = |text: &str| Value::from(text).blob();
        assert_eq!(blob("").unwrap(), Some(Bytes::new()));
        assert_eq!(blob("AAAA").unwrap(), Some(Bytes::from_static(&[0, 0, 0])));
        assert_eq!(
            blob("+/8=").unwrap(),
            Some(Bytes::from_static(&[0xFB, 0xFF]))
        );
        assert_eq!(
            message(blob("aGk")),
            "'aGk' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3"
        );
        assert_eq!(message(blob("aGk=a")).split(": ").last(), Some("5"));
        assert_eq!(
            message(blob("aG!=")),
            "'aG!=' can not be converted to a Blob: Invalid Base64 character: '!'"
        );
        assert_eq!(
            message(blob("-_8=")),
            "'-_8=' can not be converted to a Blob: Invalid Base64 character: '-'"
        );
        assert_eq!(
            message(blob("a=bc")),
            "'a=bc' can not be converted to a Blob: Invalid Base64 character: '='"
        );
        assert_eq!(
            message(blob("aGl=")),
            "'aGl=' can not be converted to a Blob: Invalid last non-pad Base64 character detected"
        );
        assert!(message(blob("aG==aGk=")).starts_with("'aG==aGk=' can not be converted to a Blob"));
    }
}
