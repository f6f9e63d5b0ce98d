//! The `application/vnd.amazon.eventstream` framing SubscribeToShard answers with.
//!
//! A message is a 12-byte prelude (total length, headers length, CRC32 of those 8 bytes), typed
//! headers, the payload, and a CRC32 of everything before it. Header values carry a type byte:
//! 0/1 boolean true/false, 2 byte, 3 short, 4 integer, 5 long, 6 bytes, 7 string, 8 timestamp
//! (ms), 9 UUID. Integers are big-endian.

use bytes::BufMut;
use bytes::Bytes;
use bytes::BytesMut;

/// Prelude (12) + message CRC (4).
const OVERHEAD: usize = 16;
/// AWS caps a message at 16 MiB and its headers at 128 KiB.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 128 * 1024;

/// A header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Bytes),
    String(String),
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One event-stream message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("need {0} more bytes")]
    Incomplete(usize),
    #[error("prelude CRC mismatch")]
    PreludeCrc,
    #[error("message CRC mismatch")]
    MessageCrc,
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}

impl Message {
    /// A Kinesis event: `:message-type` event, `:event-type`, `:content-type`.
    pub fn event(event_type: &str, content_type: &str, payload: Bytes) -> Message {
        Message {
            headers: vec![
                (":event-type".into(), HeaderValue::String(event_type.into())),
                (
                    ":content-type".into(),
                    HeaderValue::String(content_type.into()),
                ),
                (":message-type".into(), HeaderValue::String("event".into())),
            ],
            payload,
        }
    }

    /// A Kinesis exception event (`:message-type` exception, `:exception-type`).
    pub fn exception(exception_type: &str, content_type: &str, payload: Bytes) -> Message {
        Message {
            headers: vec![
                (
                    ":exception-type".into(),
                    HeaderValue::String(exception_type.into()),
                ),
                (
                    ":content-type".into(),
                    HeaderValue::String(content_type.into()),
                ),
                (
                    ":message-type".into(),
                    HeaderValue::String("exception".into()),
                ),
            ],
            payload,
        }
    }

    /// The value of a string header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(key, value)| match value {
            HeaderValue::String(text) if key == name => Some(text.as_str()),
            _ => None,
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut headers = BytesMut::new();
        for (name, value) in &self.headers {
            let name = &name.as_bytes()[..name.len().min(255)];
            headers.put_u8(name.len() as u8);
            headers.put_slice(name);
            match value {
                HeaderValue::Bool(true) => headers.put_u8(0),
                HeaderValue::Bool(false) => headers.put_u8(1),
                HeaderValue::Byte(v) => {
                    headers.put_u8(2);
                    headers.put_i8(*v);
                }
                HeaderValue::Short(v) => {
                    headers.put_u8(3);
                    headers.put_i16(*v);
                }
                HeaderValue::Int(v) => {
                    headers.put_u8(4);
                    headers.put_i32(*v);
                }
                HeaderValue::Long(v) => {
                    headers.put_u8(5);
                    headers.put_i64(*v);
                }
                HeaderValue::Bytes(v) => {
                    headers.put_u8(6);
                    headers.put_u16(v.len().min(u16::MAX as usize) as u16);
                    headers.put_slice(&v[..v.len().min(u16::MAX as usize)]);
                }
                HeaderValue::String(v) => {
                    headers.put_u8(7);
                    headers.put_u16(v.len().min(u16::MAX as usize) as u16);
                    headers.put_slice(&v.as_bytes()[..v.len().min(u16::MAX as usize)]);
                }
                HeaderValue::Timestamp(v) => {
                    headers.put_u8(8);
                    headers.put_i64(*v);
                }
                HeaderValue::Uuid(v) => {
                    headers.put_u8(9);
                    headers.put_slice(v);
                }
            }
        }
        let total = OVERHEAD + headers.len() + self.payload.len();
        let mut out = BytesMut::with_capacity(total);
        out.put_u32(total as u32);
        out.put_u32(headers.len() as u32);
        let prelude_crc = crc32fast::hash(&out[..8]);
        out.put_u32(prelude_crc);
        out.put_slice(&headers);
        out.put_slice(&self.payload);
        let message_crc = crc32fast::hash(&out);
        out.put_u32(message_crc);
        out.freeze()
    }

    /// Decodes the first message of `bytes`; returns it and the bytes it used.
    pub fn decode(bytes: &[u8]) -> Result<(Message, usize), DecodeError> {
        if bytes.len() < 12 {
            return Err(DecodeError::Incomplete(12 - bytes.len()));
        }
        let total = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let headers_len = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let prelude_crc = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..8]) != prelude_crc {
            return Err(DecodeError::PreludeCrc);
        }
        if !(OVERHEAD..=MAX_MESSAGE).contains(&total) || headers_len > MAX_HEADERS {
            return Err(DecodeError::Invalid("lengths out of range"));
        }
        if headers_len > total - OVERHEAD {
            return Err(DecodeError::Invalid("headers longer than the message"));
        }
        if bytes.len() < total {
            return Err(DecodeError::Incomplete(total - bytes.len()));
        }
        let message_crc = u32::from_be_bytes(bytes[total - 4..total].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..total - 4]) != message_crc {
            return Err(DecodeError::MessageCrc);
        }
        let mut headers = Vec::new();
        let mut rest = &bytes[12..12 + headers_len];
        while !rest.is_empty() {
            let (name, value, used) = decode_header(rest)?;
            headers.push((name, value));
            rest = &rest[used..];
        }
        let payload = Bytes::copy_from_slice(&bytes[12 + headers_len..total - 4]);
        Ok((Message { headers, payload }, total))
    }
}

fn decode_header(bytes: &[u8]) -> Result<(String, HeaderValue, usize), DecodeError> {
    let short = DecodeError::Invalid("truncated header");
    let take = |from: usize, len: usize| bytes.get(from..from + len).ok_or(short.clone());
    let name_len = *bytes.first().ok_or(short.clone())? as usize;
    let name = std::str::from_utf8(take(1, name_len)?)
        .map_err(|_| DecodeError::Invalid("header name is not UTF-8"))?
        .to_string();
    let at = 1 + name_len;
    let kind = *take(at, 1)?.first().expect("one byte");
    let at = at + 1;
    let fixed = |len: usize| take(at, len);
    let (value, len) = match kind {
        0 => (HeaderValue::Bool(true), 0),
        1 => (HeaderValue::Bool(false), 0),
        2 => (HeaderValue::Byte(fixed(1)?[0] as i8), 1),
        3 => (
            HeaderValue::Short(i16::from_be_bytes(fixed(2)?.try_into().expect("2"))),
            2,
        ),
        4 => (
            HeaderValue::Int(i32::from_be_bytes(fixed(4)?.try_into().expect("4"))),
            4,
        ),
        5 | 8 => {
            let v = i64::from_be_bytes(fixed(8)?.try_into().expect("8"));
            (
                if kind == 5 {
                    HeaderValue::Long(v)
                } else {
                    HeaderValue::Timestamp(v)
                },
                8,
            )
        }
        6 | 7 => {
            let len = u16::from_be_bytes(fixed(2)?.try_into().expect("2")) as usize;
            let data = take(at + 2, len)?;
            let value = if kind == 6 {
                HeaderValue::Bytes(Bytes::copy_from_slice(data))
            } else {
                HeaderValue::String(
                    std::str::from_utf8(data)
                        .map_err(|_| DecodeError::Invalid("header string is not UTF-8"))?
                        .to_string(),
                )
            };
            (value, 2 + len)
        }
        9 => (HeaderValue::Uuid(fixed(16)?.try_into().expect("16")), 16),
        _ => return Err(DecodeError::Invalid("unknown header type")),
    };
    Ok((name, value, at + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_message_matches_aws_test_vector() {
        // awslabs event-stream test suite, "empty_message".
        let encoded = Message::default().encode();
        assert_eq!(
            encoded.as_ref(),
            [
                0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff
            ]
        );
        assert_eq!(Message::decode(&encoded).unwrap(), (Message::default(), 16));
    }

    #[test]
    fn every_header_type_round_trips() {
        let message = Message {
            headers: vec![
                ("t".into(), HeaderValue::Bool(true)),
                ("f".into(), HeaderValue::Bool(false)),
                ("b".into(), HeaderValue::Byte(-3)),
                ("s".into(), HeaderValue::Short(-300)),
                ("i".into(), HeaderValue::Int(70_000)),
                ("l".into(), HeaderValue::Long(-5_000_000_000)),
                (
                    "y".into(),
                    HeaderValue::Bytes(Bytes::from_static(b"\x00\x01\xff")),
                ),
                (
                    ":event-type".into(),
                    HeaderValue::String("SubscribeToShardEvent".into()),
                ),
                ("ts".into(), HeaderValue::Timestamp(1_795_000_000_123)),
                ("u".into(), HeaderValue::Uuid([7; 16])),
            ],
            payload: Bytes::from_static(b"{\"Records\":[]}"),
        };
        let encoded = message.encode();
        let (decoded, used) = Message::decode(&encoded).unwrap();
        assert_eq!(decoded, message);
        assert_eq!(used, encoded.len());
        assert_eq!(decoded.header(":event-type"), Some("SubscribeToShardEvent"));
    }

    #[test]
    fn messages_back_to_back_decode_one_at_a_time() {
        let first = Message::event(
            "initial-response",
            "application/x-amz-json-1.1",
            Bytes::from_static(b"{}"),
        );
        let second = Message::exception(
            "ResourceNotFoundException",
            "application/x-amz-json-1.1",
            Bytes::from_static(b"{\"message\":\"gone\"}"),
        );
        let mut stream = first.encode().to_vec();
        stream.extend_from_slice(&second.encode());
        let (one, used) = Message::decode(&stream).unwrap();
        assert_eq!(one, first);
        let (two, rest) = Message::decode(&stream[used..]).unwrap();
        assert_eq!(two, second);
        assert_eq!(used + rest, stream.len());
        assert_eq!(two.header(":message-type"), Some("exception"));
        // A partial message asks for more bytes.
        assert_eq!(
            Message::decode(&stream[..used - 1]),
            Err(DecodeError::Incomplete(1))
        );
    }

    #[test]
    fn corruption_is_caught_by_the_crcs() {
        let encoded = Message::event(
            "SubscribeToShardEvent",
            "application/json",
            Bytes::from_static(b"payload"),
        )
        .encode();
        let mut prelude = encoded.to_vec();
        prelude[3] ^= 1;
        assert_eq!(Message::decode(&prelude), Err(DecodeError::PreludeCrc));
        let mut body = encoded.to_vec();
        let last_payload_byte = body.len() - 5;
        body[last_payload_byte] ^= 0x20;
        assert_eq!(Message::decode(&body), Err(DecodeError::MessageCrc));
        let mut crc = encoded.to_vec();
        let end = crc.len() - 1;
        crc[end] ^= 0xff;
        assert_eq!(Message::decode(&crc), Err(DecodeError::MessageCrc));
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(
            names in proptest::collection::vec("[a-z:-]{1,20}", 0..6),
            values in proptest::collection::vec(proptest::prelude::any::<i64>(), 6),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        ) {
            let headers = names
                .into_iter()
                .zip(values)
                .map(|(name, value)| (name, HeaderValue::Long(value)))
                .collect();
            let message = Message { headers, payload: Bytes::from(payload) };
            let encoded = message.encode();
            proptest::prop_assert_eq!(Message::decode(&encoded), Ok((message, encoded.len())));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = Message::decode(&bytes);
        }
    }
}
