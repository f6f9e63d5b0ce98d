//! AWS JSON 1.1: decoding through serde_json into [`Value`], encoding by hand straight from the
//! tree (no intermediate `serde_json::Value`, one pre-sized buffer).
//!
//! Output rules that clients depend on: blobs are standard padded base64 strings; timestamps
//! are epoch seconds written as a plain decimal with exactly three fraction digits, never in
//! exponent form (`1.603149588042E9` breaks the Java SDK v2's timestamp parser).

use std::cell::Cell;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{DecodeError, MAX_ITEMS, Map, Timestamp, Value};

pub(super) fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let budget = Cell::new(MAX_ITEMS);
    let value = Budgeted {
        items_left: &budget,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Any self-describing format (serde_json in practice), limited to [`MAX_ITEMS`] values.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        let budget = Cell::new(MAX_ITEMS);
        Budgeted {
            items_left: &budget,
        }
        .deserialize(deserializer)
    }
}

/// Deserializes one [`Value`], charging it and everything inside to a shared item budget.
#[derive(Clone, Copy)]
struct Budgeted<'b> {
    items_left: &'b Cell<usize>,
}

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let Some(items_left) = self.items_left.get().checked_sub(1) else {
            return Err(de::Error::custom("too many values"));
        };
        self.items_left.set(items_left);
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any json value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Int(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        // Beyond i64 no Kinesis integer member can hold it; keep its magnitude so the typed
        // layer reports a range error rather than a type error.
        Ok(i64::try_from(value).map_or(Value::Float(value as f64), Value::Int))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_bytes<E>(self, value: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(bytes::Bytes::copy_from_slice(value)))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // serde_json gives no size hint; the cap guards other deserializers that lie.
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(element) = seq.next_element_seed(self)? {
            elements.push(element);
        }
        Ok(Value::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::with_capacity(access.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = access.next_key::<String>()? {
            map.push(key, access.next_value_seed(self)?);
        }
        Ok(Value::Map(map))
    }
}

pub(super) fn encode_into(value: &Value, out: &mut Vec<u8>) {
    out.reserve(size_hint(value));
    write_value(value, out);
}

/// A close lower bound of the encoded size, so large responses (GetRecords with megabytes of
/// blobs) are written into one allocation instead of a doubling series of copies.
fn size_hint(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Int(_) | Value::Float(_) => 20,
        Value::Timestamp(_) => 16,
        Value::String(text) => text.len() + 2,
        Value::Bytes(bytes) => bytes.len().div_ceil(3) * 4 + 2,
        Value::Array(elements) => {
            2 + elements
                .iter()
                .map(|element| size_hint(element) + 1)
                .sum::<usize>()
        }
        Value::Map(map) => {
            2 + map
                .iter()
                .map(|(key, member)| key.len() + 4 + size_hint(member))
                .sum::<usize>()
        }
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(number) => write_i64(*number, out),
        Value::Float(number) => write_f64(*number, out),
        Value::String(text) => write_string(text, out),
        Value::Bytes(bytes) => write_base64(bytes, out),
        Value::Timestamp(timestamp) => write_timestamp(*timestamp, out),
        Value::Array(elements) => {
            out.push(b'[');
            for (index, element) in elements.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(element, out);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            out.push(b'{');
            for (index, (key, member)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(member, out);
            }
            out.push(b'}');
        }
    }
}

fn write_u64(mut number: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

fn write_i64(number: i64, out: &mut Vec<u8>) {
    if number < 0 {
        out.push(b'-');
    }
    write_u64(number.unsigned_abs(), out);
}

/// Shortest round-trip form (serde_json's); non-finite numbers have no JSON form and become
/// `null`, as serde_json does.
fn write_f64(number: f64, out: &mut Vec<u8>) {
    if !number.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    match serde_json::to_string(&number) {
        Ok(text) => out.extend_from_slice(text.as_bytes()),
        // Unreachable: serializing a finite f64 to a String cannot fail.
        Err(_) => out.extend_from_slice(b"null"),
    }
}

/// Epoch seconds with exactly three fraction digits: `1506440188.749`, `1.000`, `-0.500`.
pub(super) fn write_timestamp(timestamp: Timestamp, out: &mut Vec<u8>) {
    if timestamp.millis < 0 {
        out.push(b'-');
    }
    let magnitude = timestamp.millis.unsigned_abs();
    write_u64(magnitude / 1000, out);
    let fraction = (magnitude % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    match BASE64.encode_slice(bytes, &mut out[start..]) {
        Ok(written) => out.truncate(start + written),
        // Unreachable: the slice is exactly the padded encoded length. Stay correct anyway.
        Err(_) => {
            out.truncate(start);
            out.extend_from_slice(BASE64.encode(bytes).as_bytes());
        }
    }
    out.push(b'"');
}

/// Writes a JSON string literal, escaping exactly what serde_json escapes (quote, backslash
/// and C0 controls) so output matches serde_json byte for byte.
fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut run_start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0F)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..index]);
        out.extend_from_slice(escape);
        run_start = index + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn encode(value: &Value) -> String {
        let mut out = Vec::new();
        encode_into(value, &mut out);
        String::from_utf8(out).expect("json output is utf-8")
    }

    fn timestamp_text(millis: i64) -> String {
        encode(&Value::Timestamp(Timestamp { millis }))
    }

    #[test]
    fn timestamps_are_plain_decimal_seconds_with_three_digits() {
        assert_eq!(timestamp_text(1_506_440_188_749), "1506440188.749");
        assert_eq!(timestamp_text(1_603_149_588_042), "1603149588.042");
        assert_eq!(timestamp_text(1000), "1.000");
        assert_eq!(timestamp_text(0), "0.000");
        assert_eq!(timestamp_text(5), "0.005");
        assert_eq!(timestamp_text(1_506_440_188_000), "1506440188.000");
        assert_eq!(timestamp_text(-1500), "-1.500");
        assert_eq!(timestamp_text(-5), "-0.005");
        assert_eq!(timestamp_text(i64::MAX), "9223372036854775.807");
        assert_eq!(timestamp_text(i64::MIN), "-9223372036854775.808");
    }

    #[test]
    fn documents_encode_exactly() {
        let document = Value::Map(
            Map::new()
                .with("StreamName", "s")
                .with("Data", Bytes::from_static(b"hello"))
                .with("Empty", Bytes::new())
                .with("Count", -42)
                .with("Ok", true)
                .with("Nothing", Value::Null)
                .with("Ratio", 0.5)
                .with("Big", 1e20)
                .with("NaN", f64::NAN)
                .with(
                    "List",
                    vec![Value::Int(1), Value::from("two"), Value::Array(vec![])],
                )
                .with("Nested", Map::new())
                .with(
                    "At",
                    Timestamp {
                        millis: 1_506_440_188_749,
                    },
                ),
        );
        assert_eq!(
            encode(&document),
            r#"{"StreamName":"s","Data":"aGVsbG8=","Empty":"","Count":-42,"Ok":true,"Nothing":null,"Ratio":0.5,"Big":1e+20,"NaN":null,"List":[1,"two",[]],"Nested":{},"At":1506440188.749}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let text =
            "quote\" backslash\\ nl\n cr\r tab\t bs\u{8} ff\u{c} nul\u{0} us\u{1f} del\u{7f} é ☃ 𝄞";
        assert_eq!(
            encode(&Value::from(text)),
            "\"quote\\\" backslash\\\\ nl\\n cr\\r tab\\t bs\\b ff\\f nul\\u0000 us\\u001f del\u{7f} é ☃ 𝄞\""
        );
    }

    #[test]
    fn integers_keep_their_kind() {
        assert_eq!(decode(b"5").unwrap(), Value::Int(5));
        assert_eq!(
            decode(b"-9223372036854775808").unwrap(),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            decode(b"9223372036854775807").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            decode(b"9223372036854775808").unwrap(),
            Value::Float(9_223_372_036_854_775_808.0)
        );
        assert_eq!(decode(b"1.000").unwrap(), Value::Float(1.0));
        assert_eq!(decode(b"1e3").unwrap(), Value::Float(1000.0));
        assert_eq!(encode(&Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(encode(&Value::Int(0)), "0");
    }

    #[test]
    fn decode_keeps_member_order_and_duplicates() {
        let value = decode(br#" {"b": 1, "a": [true, null, "x"], "b": {"c": 2.5}} "#).unwrap();
        let map = value.as_map().unwrap();
        let keys: Vec<&str> = map.iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["b", "a", "b"]);
        assert_eq!(map.get("b"), Some(&Value::Map(Map::new().with("c", 2.5))));
        assert_eq!(
            map.get("a"),
            Some(&Value::Array(vec![
                Value::Bool(true),
                Value::Null,
                Value::from("x")
            ]))
        );
    }

    #[test]
    fn value_count_is_bounded() {
        let array_of = |count: usize| {
            let mut body = b"[".to_vec();
            body.extend(std::iter::repeat_n(&b"0,"[..], count).flatten());
            body.pop();
            body.push(b']');
            body
        };
        // The array itself is one of the values.
        let decoded = decode(&array_of(MAX_ITEMS - 1)).unwrap();
        assert_eq!(decoded.as_array().map(<[Value]>::len), Some(MAX_ITEMS - 1));
        let error = decode(&array_of(MAX_ITEMS)).unwrap_err().to_string();
        assert!(error.contains("too many values"), "{error}");
    }

    #[test]
    fn malformed_json_is_rejected() {
        for body in [
            &b""[..],
            b"{",
            b"{} {}",
            b"{\"a\":}",
            b"nul",
            b"\"\xff\"",
            b"{'a':1}",
        ] {
            assert!(
                decode(body).is_err(),
                "{:?} should not decode",
                String::from_utf8_lossy(body)
            );
        }
    }

    proptest! {
        #[test]
        fn string_escaping_matches_serde_json(text in any::<String>()) {
            let expected = serde_json::to_string(&text).unwrap();
            prop_assert_eq!(encode(&Value::String(text)), expected);
        }

        /// Within ±557 years of 1970 an f64 of seconds still resolves milliseconds.
        #[test]
        fn timestamps_read_back_as_the_same_millis(millis in -(1i64 << 44)..(1i64 << 44)) {
            let text = timestamp_text(millis);
            prop_assert!(!text.contains(['e', 'E']));
            let seconds: f64 = text.parse().unwrap();
            prop_assert_eq!((seconds * 1000.0).round() as i64, millis);
        }
    }
}
