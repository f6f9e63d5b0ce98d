//! CBOR (RFC 8949) as the AWS Java SDKs speak it, for `application/x-amz-cbor-1.1`.
//!
//! Decoding accepts everything Jackson's CBOR generator emits: definite and indefinite lengths
//! (Jackson writes indefinite-length maps), half/single/double floats, tag 1 over epoch
//! *milliseconds* (AWS's reading, not RFC 8949's seconds) as [`Value::Timestamp`]. Other tags are
//! looked through. The decoder never trusts a claimed length for preallocation beyond what the
//! remaining input could hold, bounds nesting, and rejects trailing bytes.
//!
//! Encoding is canonical-ish: definite lengths, shortest integer heads, doubles for floats,
//! tag 1 + integer milliseconds for timestamps.

use bytes::Bytes;

use super::{DecodeError, MAX_ITEMS, Map, Timestamp, Value};

/// Deepest nesting of arrays, maps and tags accepted; Kinesis documents are at most ~4 deep.
pub(super) const MAX_DEPTH: usize = 64;

/// Most container slots reserved ahead of decoding them; larger containers grow as their
/// items actually arrive, so a claimed length costs nothing by itself.
const MAX_PREALLOCATED: usize = 4096;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const INFO_INDEFINITE: u8 = 31;
const BREAK: u8 = 0xFF;
const TAG_EPOCH_TIMESTAMP: u64 = 1;
const TAG_POSITIVE_BIGNUM: u64 = 2;
const TAG_NEGATIVE_BIGNUM: u64 = 3;

pub(super) fn decode(body: &[u8]) -> Result<Value, DecodeError> {
    let mut decoder = Decoder {
        input: body,
        position: 0,
        items_left: MAX_ITEMS,
    };
    let value = decoder.value(0)?;
    if decoder.position != body.len() {
        return Err(decoder.error("trailing bytes after the top-level value"));
    }
    Ok(value)
}

/// The argument of an item head: a length, a number, a tag, or "indefinite".
enum Argument {
    Definite(u64),
    Indefinite,
}

struct Decoder<'a> {
    input: &'a [u8],
    position: usize,
    items_left: usize,
}

impl<'a> Decoder<'a> {
    fn error(&self, reason: &'static str) -> DecodeError {
        DecodeError::Cbor {
            offset: self.position,
            reason,
        }
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.position
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.position)
            .copied()
            .ok_or_else(|| self.error("unexpected end of input"))
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if count > self.remaining() {
            return Err(self.error("unexpected end of input"));
        }
        let start = self.position;
        self.position += count;
        Ok(&self.input[start..self.position])
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    /// Reads an item head: major type and argument.
    fn head(&mut self) -> Result<(u8, u8, Argument), DecodeError> {
        let initial = self.take_array::<1>()?[0];
        let major = initial >> 5;
        let info = initial & 0x1F;
        let argument = match info {
            0..=23 => Argument::Definite(u64::from(info)),
            24 => Argument::Definite(u64::from(self.take_array::<1>()?[0])),
            25 => Argument::Definite(u64::from(u16::from_be_bytes(self.take_array()?))),
            26 => Argument::Definite(u64::from(u32::from_be_bytes(self.take_array()?))),
            27 => Argument::Definite(u64::from_be_bytes(self.take_array()?)),
            28..=30 => return Err(self.error("reserved additional information value")),
            _ => Argument::Indefinite,
        };
        Ok((major, info, argument))
    }

    fn length(&self, argument: u64) -> Result<usize, DecodeError> {
        usize::try_from(argument).map_err(|_| self.error("length does not fit in memory"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.items_left = self
            .items_left
            .checked_sub(1)
            .ok_or_else(|| self.error("too many data items"))?;
        let (major, info, argument) = self.head()?;
        match (major, argument) {
            (MAJOR_UNSIGNED, Argument::Definite(number)) => {
                Ok(i64::try_from(number).map_or(Value::Float(number as f64), Value::Int))
            }
            (MAJOR_NEGATIVE, Argument::Definite(number)) => Ok(match i64::try_from(number) {
                // -1 - n cannot overflow for n <= i64::MAX.
                Ok(magnitude) => Value::Int(-1 - magnitude),
                Err(_) => Value::Float(-1.0 - number as f64),
            }),
            (MAJOR_BYTES, argument) => Ok(Value::Bytes(Bytes::from(
                self.string_bytes(MAJOR_BYTES, argument)?,
            ))),
            (MAJOR_TEXT, argument) => Ok(Value::String(self.text(argument)?)),
            (MAJOR_ARRAY, argument) => {
                let depth = self.nest(depth)?;
                self.array(argument, depth)
            }
            (MAJOR_MAP, argument) => {
                let depth = self.nest(depth)?;
                self.map(argument, depth)
            }
            (MAJOR_TAG, Argument::Definite(tag)) => {
                let depth = self.nest(depth)?;
                self.tagged(tag, depth)
            }
            (MAJOR_SIMPLE, argument) => self.simple(info, argument),
            _ => Err(self.error("indefinite length on an integer or tag")),
        }
    }

    /// The depth for a container's children, or an error past [`MAX_DEPTH`].
    fn nest(&self, depth: usize) -> Result<usize, DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        Ok(depth + 1)
    }

    /// The content of a byte or text string (`major`), joining indefinite-length chunks.
    fn string_bytes(&mut self, major: u8, argument: Argument) -> Result<Vec<u8>, DecodeError> {
        match argument {
            Argument::Definite(length) => {
                let length = self.length(length)?;
                Ok(self.take(length)?.to_vec())
            }
            Argument::Indefinite => {
                let mut content = Vec::new();
                loop {
                    if self.peek()? == BREAK {
                        self.position += 1;
                        return Ok(content);
                    }
                    let (chunk_major, _, chunk_argument) = self.head()?;
                    let Argument::Definite(chunk_length) = chunk_argument else {
                        return Err(self.error("nested indefinite-length string chunk"));
                    };
                    if chunk_major != major {
                        return Err(self.error("string chunk of a different major type"));
                    }
                    let chunk_length = self.length(chunk_length)?;
                    let chunk = self.take(chunk_length)?;
                    // RFC 8949 §3.2.3: each text chunk is itself well-formed UTF-8.
                    if major == MAJOR_TEXT && std::str::from_utf8(chunk).is_err() {
                        return Err(self.error("text string is not utf-8"));
                    }
                    content.extend_from_slice(chunk);
                }
            }
        }
    }

    fn text(&mut self, argument: Argument) -> Result<String, DecodeError> {
        let start = self.position;
        let content = self.string_bytes(MAJOR_TEXT, argument)?;
        String::from_utf8(content).map_err(|_| DecodeError::Cbor {
            offset: start,
            reason: "text string is not utf-8",
        })
    }

    fn array(&mut self, argument: Argument, depth: usize) -> Result<Value, DecodeError> {
        match argument {
            Argument::Definite(count) => {
                let count = self.length(count)?;
                let mut elements = Vec::with_capacity(count.min(MAX_PREALLOCATED));
                for _ in 0..count {
                    elements.push(self.value(depth)?);
                }
                Ok(Value::Array(elements))
            }
            Argument::Indefinite => {
                let mut elements = Vec::new();
                while self.peek()? != BREAK {
                    elements.push(self.value(depth)?);
                }
                self.position += 1;
                Ok(Value::Array(elements))
            }
        }
    }

    fn map(&mut self, argument: Argument, depth: usize) -> Result<Value, DecodeError> {
        match argument {
            Argument::Definite(count) => {
                let count = self.length(count)?;
                let mut map = Map::with_capacity(count.min(MAX_PREALLOCATED));
                for _ in 0..count {
                    let key = self.key()?;
                    map.push(key, self.value(depth)?);
                }
                Ok(Value::Map(map))
            }
            Argument::Indefinite => {
                let mut map = Map::new();
                while self.peek()? != BREAK {
                    let key = self.key()?;
                    map.push(key, self.value(depth)?);
                }
                self.position += 1;
                Ok(Value::Map(map))
            }
        }
    }

    fn key(&mut self) -> Result<String, DecodeError> {
        let start = self.position;
        let (major, _, argument) = self.head()?;
        if major != MAJOR_TEXT {
            return Err(DecodeError::Cbor {
                offset: start,
                reason: "map key is not a text string",
            });
        }
        self.text(argument)
    }

    fn tagged(&mut self, tag: u64, depth: usize) -> Result<Value, DecodeError> {
        match tag {
            TAG_EPOCH_TIMESTAMP => {
                let start = self.position;
                let millis = match self.value(depth)? {
                    Value::Int(millis) => millis,
                    Value::Float(millis) if millis.is_finite() && millis.abs() < 9.2e18 => {
                        millis.round() as i64
                    }
                    _ => {
                        return Err(DecodeError::Cbor {
                            offset: start,
                            reason: "tag 1 does not wrap an epoch number",
                        });
                    }
                };
                Ok(Value::Timestamp(Timestamp { millis }))
            }
            TAG_POSITIVE_BIGNUM | TAG_NEGATIVE_BIGNUM => {
                Err(self.error("bignums are not supported"))
            }
            _ => self.value(depth),
        }
    }

    fn simple(&mut self, info: u8, argument: Argument) -> Result<Value, DecodeError> {
        match (info, argument) {
            (20, _) => Ok(Value::Bool(false)),
            (21, _) => Ok(Value::Bool(true)),
            (22, _) | (23, _) => Ok(Value::Null),
            (25, Argument::Definite(bits)) => Ok(Value::Float(half_to_f64(bits as u16))),
            (26, Argument::Definite(bits)) => {
                Ok(Value::Float(f64::from(f32::from_bits(bits as u32))))
            }
            (27, Argument::Definite(bits)) => Ok(Value::Float(f64::from_bits(bits))),
            (INFO_INDEFINITE, _) => Err(DecodeError::Cbor {
                offset: self.position - 1,
                reason: "unexpected break",
            }),
            _ => Err(self.error("unsupported simple value")),
        }
    }
}

/// IEEE 754 binary16 to f64 (RFC 8949 appendix D).
fn half_to_f64(half: u16) -> f64 {
    let exponent = i32::from((half >> 10) & 0x1F);
    let mantissa = f64::from(half & 0x3FF);
    let magnitude = match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (mantissa + 1024.0) * 2f64.powi(exponent - 25),
    };
    if half & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

pub(super) fn encode_into(value: &Value, out: &mut Vec<u8>) {
    out.reserve(size_hint(value));
    write_value(value, out);
}

/// A close upper-ish estimate of the encoded size, to reserve once.
fn size_hint(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 9,
        Value::Timestamp(_) => 10,
        Value::String(text) => text.len() + 9,
        Value::Bytes(bytes) => bytes.len() + 9,
        Value::Array(elements) => 9 + elements.iter().map(size_hint).sum::<usize>(),
        Value::Map(map) => {
            9 + map
                .iter()
                .map(|(key, member)| key.len() + 9 + size_hint(member))
                .sum::<usize>()
        }
    }
}

fn write_head(major: u8, argument: u64, out: &mut Vec<u8>) {
    let major = major << 5;
    // The casts below are lossless: each arm's range fits the width written.
    match argument {
        0..=23 => out.push(major | argument as u8),
        24..=0xFF => out.extend_from_slice(&[major | 24, argument as u8]),
        0x100..=0xFFFF => {
            out.push(major | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xFFFF_FFFF => {
            out.push(major | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

fn write_int(number: i64, out: &mut Vec<u8>) {
    if number >= 0 {
        write_head(MAJOR_UNSIGNED, number.unsigned_abs(), out);
    } else {
        // -1 - n: for negative n, !n == -1 - n, and it is non-negative.
        write_head(MAJOR_NEGATIVE, (!number) as u64, out);
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xF6),
        Value::Bool(false) => out.push(0xF4),
        Value::Bool(true) => out.push(0xF5),
        Value::Int(number) => write_int(*number, out),
        Value::Float(number) => {
            out.push(0xFB);
            out.extend_from_slice(&number.to_bits().to_be_bytes());
        }
        Value::String(text) => {
            write_head(MAJOR_TEXT, text.len() as u64, out);
            out.extend_from_slice(text.as_bytes());
        }
        Value::Bytes(bytes) => {
            write_head(MAJOR_BYTES, bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        }
        Value::Timestamp(timestamp) => {
            write_head(MAJOR_TAG, TAG_EPOCH_TIMESTAMP, out);
            write_int(timestamp.millis, out);
        }
        Value::Array(elements) => {
            write_head(MAJOR_ARRAY, elements.len() as u64, out);
            for element in elements {
                write_value(element, out);
            }
        }
        Value::Map(map) => {
            write_head(MAJOR_MAP, map.len() as u64, out);
            for (key, member) in map.iter() {
                write_head(MAJOR_TEXT, key.len() as u64, out);
                out.extend_from_slice(key.as_bytes());
                write_value(member, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(value, &mut out);
        out
    }

    fn reason(body: &[u8]) -> &'static str {
        match decode(body) {
            Err(DecodeError::Cbor { reason, .. }) => reason,
            other => panic!("expected a cbor error for {body:02X?}, got {other:?}"),
        }
    }

    #[test]
    fn indefinite_length_map_with_a_byte_string() {
        let body = [
            0xBF, 0x64, b'D', b'a', b't', b'a', 0x43, 0x01, 0x02, 0x03, 0xFF,
        ];
        let expected = Value::Map(Map::new().with("Data", Bytes::from_static(&[1, 2, 3])));
        assert_eq!(decode(&body).unwrap(), expected);
        // The encoder writes the definite-length form.
        assert_eq!(
            encode(&expected),
            [0xA1, 0x64, b'D', b'a', b't', b'a', 0x43, 0x01, 0x02, 0x03]
        );
    }

    #[test]
    fn tag_1_is_epoch_milliseconds() {
        // 1506440188749 ms = 0x0000_015E_BED5_134D.
        let body = [0xC1, 0x1B, 0x00, 0x00, 0x01, 0x5E, 0xBE, 0xD5, 0x13, 0x4D];
        let timestamp = Value::Timestamp(Timestamp {
            millis: 1_506_440_188_749,
        });
        assert_eq!(decode(&body).unwrap(), timestamp);
        assert_eq!(encode(&timestamp), body);
        // A float count of milliseconds is accepted too.
        let float_body = [0xC1, 0xFB, 0x42, 0x75, 0xEB, 0xED, 0x51, 0x34, 0xD0, 0x00];
        assert_eq!(decode(&float_body).unwrap(), timestamp);
        // Small and negative counts use short heads.
        assert_eq!(
            encode(&Value::Timestamp(Timestamp { millis: 1000 })),
            [0xC1, 0x19, 0x03, 0xE8]
        );
        assert_eq!(
            encode(&Value::Timestamp(Timestamp { millis: -1 })),
            [0xC1, 0x20]
        );
        assert_eq!(
            reason(&[0xC1, 0x61, b'x']),
            "tag 1 does not wrap an epoch number"
        );
    }

    #[test]
    fn half_single_and_double_floats() {
        let cases: &[(&[u8], f64)] = &[
            (&[0xF9, 0x00, 0x00], 0.0),
            (&[0xF9, 0x3C, 0x00], 1.0),
            (&[0xF9, 0x3E, 0x00], 1.5),
            (&[0xF9, 0xC4, 0x00], -4.0),
            (&[0xF9, 0x7B, 0xFF], 65504.0),
            (&[0xF9, 0x00, 0x01], 5.960_464_477_539_063e-8),
            (&[0xF9, 0x04, 0x00], 0.000_061_035_156_25),
            (&[0xF9, 0x7C, 0x00], f64::INFINITY),
            (&[0xF9, 0xFC, 0x00], f64::NEG_INFINITY),
            (&[0xFA, 0x47, 0xC3, 0x50, 0x00], 100_000.0),
            (&[0xFA, 0x3F, 0xC0, 0x00, 0x00], 1.5),
            (&[0xFB, 0x3F, 0xF1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A], 1.1),
        ];
        for (body, expected) in cases {
            assert_eq!(
                decode(body).unwrap(),
                Value::Float(*expected),
                "{body:02X?}"
            );
        }
        let Value::Float(nan) = decode(&[0xF9, 0x7E, 0x00]).unwrap() else {
            panic!("half NaN is a float")
        };
        assert!(nan.is_nan());
        assert_eq!(
            encode(&Value::Float(1.1)),
            [0xFB, 0x3F, 0xF1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9A]
        );
    }

    #[test]
    fn integers_use_the_shortest_head() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 0x18]),
            (255, &[0x18, 0xFF]),
            (256, &[0x19, 0x01, 0x00]),
            (65_536, &[0x1A, 0x00, 0x01, 0x00, 0x00]),
            (
                4_294_967_296,
                &[0x1B, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00],
            ),
            (-1, &[0x20]),
            (-24, &[0x37]),
            (-25, &[0x38, 0x18]),
            (-1000, &[0x39, 0x03, 0xE7]),
            (
                i64::MAX,
                &[0x1B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
            (
                i64::MIN,
                &[0x3B, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ),
        ];
        for (number, bytes) in cases {
            assert_eq!(encode(&Value::Int(*number)), *bytes, "{number}");
            assert_eq!(decode(bytes).unwrap(), Value::Int(*number));
        }
        // Beyond i64 the magnitude survives as a float.
        assert_eq!(
            decode(&[0x1B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap(),
            Value::Float(u64::MAX as f64)
        );
        assert_eq!(
            decode(&[0x3B, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            Value::Float(-9_223_372_036_854_775_809.0)
        );
    }

    #[test]
    fn simple_values_strings_and_containers() {
        assert_eq!(decode(&[0xF4]).unwrap(), Value::Bool(false));
        assert_eq!(decode(&[0xF5]).unwrap(), Value::Bool(true));
        assert_eq!(decode(&[0xF6]).unwrap(), Value::Null);
        assert_eq!(decode(&[0xF7]).unwrap(), Value::Null);
        // Indefinite text and byte strings are concatenated chunks.
        assert_eq!(
            decode(&[0x7F, 0x62, b'a', b'b', 0x61, b'c', 0xFF]).unwrap(),
            Value::from("abc")
        );
        assert_eq!(
            decode(&[0x5F, 0x41, 0x01, 0x40, 0x42, 0x02, 0x03, 0xFF]).unwrap(),
            Value::Bytes(Bytes::from_static(&[1, 2, 3]))
        );
        // Indefinite array inside a definite map; unknown tag 55799 (self-describe) looked through.
        let body = [
            0xD9, 0xD9, 0xF7, 0xA1, 0x61, b'R', 0x9F, 0x01, 0xF6, 0x80, 0xFF,
        ];
        let expected = Value::Map(
            Map::new().with("R", vec![Value::Int(1), Value::Null, Value::Array(vec![])]),
        );
        assert_eq!(decode(&body).unwrap(), expected);
        assert_eq!(
            encode(&expected),
            [0xA1, 0x61, b'R', 0x83, 0x01, 0xF6, 0x80]
        );
        assert_eq!(encode(&Value::from("é")), [0x62, 0xC3, 0xA9]);
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert_eq!(reason(&[]), "unexpected end of input");
        assert_eq!(reason(&[0xA1, 0x61, b'a']), "unexpected end of input");
        assert_eq!(reason(&[0x19, 0x01]), "unexpected end of input");
        assert_eq!(reason(&[0xBF, 0x61, b'a', 0x01]), "unexpected end of input");
        assert_eq!(
            reason(&[0x5B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            "unexpected end of input"
        );
        assert_eq!(
            reason(&[0x9B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            "unexpected end of input"
        );
        assert_eq!(
            reason(&[0xBB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            "unexpected end of input"
        );
        assert_eq!(
            reason(&[0x01, 0x02]),
            "trailing bytes after the top-level value"
        );
        assert_eq!(reason(&[0xFF]), "unexpected break");
        assert_eq!(reason(&[0x62, 0xC3, 0x28]), "text string is not utf-8");
        // A multi-byte character split across chunks is invalid per chunk.
        assert_eq!(
            reason(&[0x7F, 0x61, 0xC3, 0x61, 0xA9, 0xFF]),
            "text string is not utf-8"
        );
        assert_eq!(
            reason(&[0x7F, 0x41, b'a', 0xFF]),
            "string chunk of a different major type"
        );
        assert_eq!(
            reason(&[0x7F, 0x7F, 0xFF, 0xFF]),
            "nested indefinite-length string chunk"
        );
        assert_eq!(reason(&[0xA1, 0x01, 0x02]), "map key is not a text string");
        assert_eq!(
            reason(&[0xA1, 0x41, b'a', 0x02]),
            "map key is not a text string"
        );
        assert_eq!(reason(&[0x1C]), "reserved additional information value");
        assert_eq!(reason(&[0x1F]), "indefinite length on an integer or tag");
        assert_eq!(
            reason(&[0xDF, 0x01]),
            "indefinite length on an integer or tag"
        );
        assert_eq!(reason(&[0xC2, 0x41, 0x01]), "bignums are not supported");
        assert_eq!(reason(&[0xF8, 0x20]), "unsupported simple value");
        assert_eq!(reason(&[0xE0]), "unsupported simple value");
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| {
            let mut body = vec![0x81; depth];
            body.push(0x00);
            body
        };
        assert!(decode(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(reason(&nested(MAX_DEPTH + 1)), "nesting too deep");
        // Tags count as nesting, so a tag chain cannot recurse without bound.
        let mut tags = vec![0xC6; 10_000];
        tags.push(0x00);
        assert_eq!(reason(&tags), "nesting too deep");
        let mut indefinite = vec![0x9F; 100_000];
        indefinite.push(0xFF);
        assert_eq!(reason(&indefinite), "nesting too deep");
    }

    #[test]
    fn item_count_is_bounded() {
        // An array of MAX_ITEMS - 1 nulls is MAX_ITEMS items with the array itself.
        let mut body = vec![0x9A];
        body.extend_from_slice(&(MAX_ITEMS as u32 - 1).to_be_bytes());
        body.resize(body.len() + MAX_ITEMS - 1, 0xF6);
        let decoded = decode(&body).unwrap();
        assert_eq!(decoded.as_array().map(<[Value]>::len), Some(MAX_ITEMS - 1));
        body[1..5].copy_from_slice(&(MAX_ITEMS as u32).to_be_bytes());
        body.push(0xF6);
        assert_eq!(reason(&body), "too many data items");
        // A claimed length alone reserves little and fails on the missing items.
        let huge_claim = [0x9B, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xF6];
        assert_eq!(reason(&huge_claim), "unexpected end of input");
    }
}
