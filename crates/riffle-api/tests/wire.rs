//! Property tests of the two codecs through the public API: round trips over random documents,
//! Jackson-style (indefinite-length, non-shortest) CBOR, and decoding garbage without panics.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use proptest::prelude::*;
use riffle_api::wire::{self, Format, Map, Timestamp, Value};

/// Timestamps whose seconds still resolve milliseconds in an f64 (±557 years around 1970).
const TIMESTAMP_RANGE: std::ops::Range<i64> = -(1 << 44)..(1 << 44);

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |number| number.is_finite())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..40)
            .prop_map(|bytes| Value::Bytes(Bytes::from(bytes))),
        TIMESTAMP_RANGE.prop_map(|millis| Value::Timestamp(Timestamp { millis })),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[A-Za-z_]{0,8}", inner), 0..6)
                .prop_map(|members| Value::Map(Map::from(members))),
        ]
    })
}

/// Checks that `decoded` is what JSON gives back for `original`: blobs come back as base64
/// strings and timestamps as seconds, both of which the typed accessors turn back into the
/// original; floats may differ in the last bit (serde_json's default parser is not exact).
fn json_equivalent(original: &Value, decoded: &Value, path: &str) -> Result<(), String> {
    let mismatch = || {
        Err(format!(
            "at {path}: sent {original:?}, got back {decoded:?}"
        ))
    };
    match (original, decoded) {
        (Value::Bytes(bytes), Value::String(text)) => {
            if *text != BASE64.encode(bytes) || decoded.blob() != Ok(Some(bytes.clone())) {
                return mismatch();
            }
        }
        (Value::Timestamp(timestamp), Value::Float(_)) => {
            if decoded.timestamp() != Ok(Some(*timestamp)) {
                return mismatch();
            }
        }
        (Value::Float(sent), Value::Float(received)) => {
            let tolerance = sent.abs().max(f64::MIN_POSITIVE) * 4.0 * f64::EPSILON;
            if (sent - received).abs() > tolerance {
                return mismatch();
            }
        }
        (Value::Array(sent), Value::Array(received)) => {
            if sent.len() != received.len() {
                return mismatch();
            }
            for (index, (sent, received)) in sent.iter().zip(received).enumerate() {
                json_equivalent(sent, received, &format!("{path}[{index}]"))?;
            }
        }
        (Value::Map(sent), Value::Map(received)) => {
            if sent.len() != received.len() {
                return mismatch();
            }
            for ((sent_key, sent), (received_key, received)) in sent.iter().zip(received.iter()) {
                if sent_key != received_key {
                    return mismatch();
                }
                json_equivalent(sent, received, &format!("{path}.{sent_key}"))?;
            }
        }
        _ if original == decoded => {}
        _ => return mismatch(),
    }
    Ok(())
}

/// Encodes like Jackson's CBOR generator at its most awkward: indefinite-length containers and
/// chunked strings, non-shortest integer heads, single-precision floats where exact, undefined
/// for null.
fn jackson_style(value: &Value, out: &mut Vec<u8>) {
    fn head(major: u8, argument: u64, out: &mut Vec<u8>) {
        // Always the 8-byte form: legal, just not shortest.
        out.push((major << 5) | 27);
        out.extend_from_slice(&argument.to_be_bytes());
    }
    fn text(text: &str, out: &mut Vec<u8>) {
        out.push(0x7F);
        let split = text
            .char_indices()
            .nth(1)
            .map_or(text.len(), |(index, _)| index);
        for chunk in [&text[..split], &text[split..]] {
            head(3, chunk.len() as u64, out);
            out.extend_from_slice(chunk.as_bytes());
        }
        out.push(0xFF);
    }
    fn int(number: i64, out: &mut Vec<u8>) {
        if number >= 0 {
            head(0, number as u64, out);
        } else {
            head(1, !number as u64, out);
        }
    }
    match value {
        Value::Null => out.push(0xF7),
        Value::Bool(flag) => out.push(if *flag { 0xF5 } else { 0xF4 }),
        Value::Int(number) => int(*number, out),
        Value::Float(number) => {
            let single = *number as f32;
            if f64::from(single) == *number {
                out.push(0xFA);
                out.extend_from_slice(&single.to_bits().to_be_bytes());
            } else {
                out.push(0xFB);
                out.extend_from_slice(&number.to_bits().to_be_bytes());
            }
        }
        Value::String(string) => text(string, out),
        Value::Bytes(bytes) => {
            out.push(0x5F);
            let (first, second) = bytes.split_at(bytes.len() / 2);
            for chunk in [first, second] {
                head(2, chunk.len() as u64, out);
                out.extend_from_slice(chunk);
            }
            out.push(0xFF);
        }
        Value::Timestamp(timestamp) => {
            out.push(0xC1);
            int(timestamp.millis, out);
        }
        Value::Array(elements) => {
            out.push(0x9F);
            for element in elements {
                jackson_style(element, out);
            }
            out.push(0xFF);
        }
        Value::Map(map) => {
            out.push(0xBF);
            for (key, member) in map.iter() {
                text(key, out);
                jackson_style(member, out);
            }
            out.push(0xFF);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cbor_round_trips_exactly(value in document()) {
        let encoded = wire::encode(Format::Cbor, &value);
        prop_assert_eq!(wire::decode(Format::Cbor, &encoded).unwrap(), value);
    }

    #[test]
    fn jackson_style_cbor_decodes_to_the_same_document(value in document()) {
        let mut encoded = Vec::new();
        jackson_style(&value, &mut encoded);
        // Undefined (0xF7) reads as null, so the document is unchanged.
        prop_assert_eq!(wire::decode(Format::Cbor, &encoded).unwrap(), value);
    }

    #[test]
    fn json_round_trips_up_to_blob_and_timestamp_encoding(value in document()) {
        let encoded = wire::encode(Format::Json, &value);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&encoded).is_ok(), "serde_json rejects our output");
        let decoded = wire::decode(Format::Json, &encoded).unwrap();
        if let Err(mismatch) = json_equivalent(&value, &decoded, "$") {
            return Err(TestCaseError::fail(mismatch));
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = wire::decode(Format::Cbor, &body);
        let _ = wire::decode(Format::Json, &body);
    }

    #[test]
    fn decoding_corrupted_documents_never_panics(
        value in document(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        for format in [Format::Cbor, Format::Json] {
            let mut body = wire::encode(format, &value);
            if body.is_empty() {
                continue;
            }
            for (position, byte) in &edits {
                let index = position.index(body.len());
                body[index] = *byte;
            }
            let _ = wire::decode(format, &body);
            let _ = wire::decode(format, &body[..cut.index(body.len())]);
        }
    }
}
