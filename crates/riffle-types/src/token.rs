//! Opaque tokens handed to clients: shard iterators and `NextToken` page tokens.
//!
//! Both are authenticated with HMAC-SHA256 under a per-cluster [`TokenKey`], so a client can
//! neither forge a position nor revive an expired token by editing its issue time. They are not
//! encrypted: the contents (stream name, shard, log position) are not secret.
//!
//! Binary layout, base64-encoded (standard alphabet, padded):
//!
//! ```text
//! 00 00 00 00 00 00 00 01   prefix, so iterators start with `AAAAAAAAAAE` like AWS's
//! version:u8                FORMAT_VERSION
//! class:u8                  shard iterator or page token, so one can never pass for the other
//! issued_ms:u64
//! body                      class-specific, see below
//! mac:[u8; 16]              HMAC-SHA256 over everything above, truncated
//! ```
//!
//! Shard iterator body: `stream_created_ms:u64 shard_index:u32 entry:u64 record:u32
//! stream_name:bytes` (the name runs to the MAC). Page token body: `kind:u8 payload:bytes`.
//! Integers are big-endian.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::limits::{ITERATOR_TTL_MS, NEXT_TOKEN_TTL_MS};
use crate::seqnum::Position;

/// Longest `ShardIterator` string the Kinesis model allows.
pub const MAX_SHARD_ITERATOR_CHARS: usize = 512;

/// Longest `NextToken` string the Kinesis model allows.
pub const MAX_NEXT_TOKEN_CHARS: usize = 1_048_576;

const PREFIX: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];
const FORMAT_VERSION: u8 = 1;
const CLASS_SHARD_ITERATOR: u8 = 1;
const CLASS_PAGE_TOKEN: u8 = 2;
/// prefix + version + class + issued_ms.
const HEADER_BYTES: usize = PREFIX.len() + 1 + 1 + 8;
/// stream_created_ms + shard_index + entry + record.
const ITERATOR_FIXED_BODY_BYTES: usize = 8 + 4 + 8 + 4;
/// 128 bits of tag is ample for tokens that live five minutes, and keeps iterators short.
const MAC_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The per-cluster secret that authenticates tokens. Every node must hold the same key, or an
/// iterator issued by one node is rejected by another.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// Wraps 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> TokenKey {
        TokenKey(bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC hashes or pads keys of any length, so a 32-byte key is always accepted.
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this cluster issued: bad encoding, wrong key, tampered, truncated, or of
    /// another kind. Maps to `InvalidArgumentException`.
    #[error("malformed token")]
    Malformed,
    /// Authentic but older than its time to live. Maps to `ExpiredIteratorException` or
    /// `ExpiredNextTokenException`, whose messages state both times.
    #[error("token issued at {issued_ms} ms has expired (now {now_ms} ms)")]
    Expired {
        /// When the token was issued, epoch milliseconds.
        issued_ms: u64,
        /// The time it was presented, epoch milliseconds.
        now_ms: u64,
    },
}

/// The state a shard iterator carries between `GetShardIterator`/`GetRecords` calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardIterator {
    /// The stream's name.
    pub stream_name: String,
    /// The stream's creation time, so an iterator for a deleted and re-created stream of the
    /// same name is recognised as stale.
    pub stream_created_ms: u64,
    /// The shard's index ([`crate::ShardId`]).
    pub shard_index: u32,
    /// The next record to return.
    pub position: Position,
    /// When the iterator was issued, epoch milliseconds.
    pub issued_ms: u64,
}

impl ShardIterator {
    /// The opaque string returned to the client (at most 248 characters for a 128-character
    /// stream name).
    pub fn encode(&self, key: &TokenKey) -> String {
        let mut frame = header(
            CLASS_SHARD_ITERATOR,
            self.issued_ms,
            ITERATOR_FIXED_BODY_BYTES + self.stream_name.len(),
        );
        frame.extend_from_slice(&self.stream_created_ms.to_be_bytes());
        frame.extend_from_slice(&self.shard_index.to_be_bytes());
        frame.extend_from_slice(&self.position.entry.to_be_bytes());
        frame.extend_from_slice(&self.position.record.to_be_bytes());
        frame.extend_from_slice(self.stream_name.as_bytes());
        seal_frame(key, frame)
    }

    /// Verifies and decodes an iterator a client sent back. Surrounding whitespace and double
    /// quotes are ignored, since users paste CLI output.
    pub fn decode(text: &str, key: &TokenKey, now_ms: u64) -> Result<ShardIterator, TokenError> {
        let opened = open_frame(key, text, CLASS_SHARD_ITERATOR, MAX_SHARD_ITERATOR_CHARS)?;
        let mut body = Reader(opened.body());
        let stream_created_ms = body.u64()?;
        let shard_index = body.u32()?;
        let entry = body.u64()?;
        let record = body.u32()?;
        let stream_name = std::str::from_utf8(body.rest())
            .map_err(|_| TokenError::Malformed)?
            .to_string();
        check_fresh(opened.issued_ms, now_ms, ITERATOR_TTL_MS)?;
        Ok(ShardIterator {
            stream_name,
            stream_created_ms,
            shard_index,
            position: Position { entry, record },
            issued_ms: opened.issued_ms,
        })
    }
}

/// `NextToken` strings for ListShards, ListStreams and ListStreamConsumers. The caller
/// serialises its own cursor into `payload`; `kind` tells the operations' tokens apart so one
/// operation's token is refused by another.
pub struct PageToken;

impl PageToken {
    /// Seals `payload` into an opaque token issued at `now_ms`.
    pub fn seal(key: &TokenKey, kind: u8, payload: &[u8], now_ms: u64) -> String {
        let mut frame = header(CLASS_PAGE_TOKEN, now_ms, 1 + payload.len());
        frame.push(kind);
        frame.extend_from_slice(payload);
        seal_frame(key, frame)
    }

    /// Verifies a token of `kind` and returns its payload; expired after
    /// [`NEXT_TOKEN_TTL_MS`].
    pub fn open(key: &TokenKey, kind: u8, text: &str, now_ms: u64) -> Result<Vec<u8>, TokenError> {
        let opened = open_frame(key, text, CLASS_PAGE_TOKEN, MAX_NEXT_TOKEN_CHARS)?;
        let mut body = Reader(opened.body());
        if body.u8()? != kind {
            return Err(TokenError::Malformed);
        }
        let payload = body.rest().to_vec();
        check_fresh(opened.issued_ms, now_ms, NEXT_TOKEN_TTL_MS)?;
        Ok(payload)
    }
}

fn header(class: u8, issued_ms: u64, body_bytes: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_BYTES + body_bytes + MAC_BYTES);
    frame.extend_from_slice(&PREFIX);
    frame.push(FORMAT_VERSION);
    frame.push(class);
    frame.extend_from_slice(&issued_ms.to_be_bytes());
    frame
}

fn seal_frame(key: &TokenKey, mut frame: Vec<u8>) -> String {
    let tag = key.mac().chain_update(&frame).finalize().into_bytes();
    frame.extend_from_slice(&tag[..MAC_BYTES]);
    BASE64.encode(frame)
}

/// An authenticated frame of the expected class.
struct Opened {
    issued_ms: u64,
    /// The whole decoded frame; the body lies between the header and the MAC.
    frame: Vec<u8>,
}

impl Opened {
    fn body(&self) -> &[u8] {
        &self.frame[HEADER_BYTES..self.frame.len() - MAC_BYTES]
    }
}

/// Decodes and authenticates a token. Every failure is the same `Malformed`, so a client
/// learns nothing about which check failed.
fn open_frame(
    key: &TokenKey,
    text: &str,
    class: u8,
    max_chars: usize,
) -> Result<Opened, TokenError> {
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '"');
    // Checked before decoding so an oversized string costs no allocation.
    if trimmed.len() > max_chars {
        return Err(TokenError::Malformed);
    }
    let frame = BASE64.decode(trimmed).map_err(|_| TokenError::Malformed)?;
    if frame.len() < HEADER_BYTES + MAC_BYTES {
        return Err(TokenError::Malformed);
    }
    let (signed, tag) = frame.split_at(frame.len() - MAC_BYTES);
    // Constant-time comparison, so the tag cannot be guessed byte by byte.
    key.mac()
        .chain_update(signed)
        .verify_truncated_left(tag)
        .map_err(|_| TokenError::Malformed)?;
    let mut header = Reader(signed);
    let well_formed = header.take(PREFIX.len())? == PREFIX
        && header.u8()? == FORMAT_VERSION
        && header.u8()? == class;
    if !well_formed {
        return Err(TokenError::Malformed);
    }
    let issued_ms = header.u64()?;
    Ok(Opened { issued_ms, frame })
}

/// Only called on authenticated tokens, so `issued_ms` is one this cluster wrote. A token
/// issued slightly in the future (clock skew between nodes) is accepted.
fn check_fresh(issued_ms: u64, now_ms: u64, ttl_ms: u64) -> Result<(), TokenError> {
    if now_ms > issued_ms.saturating_add(ttl_ms) {
        return Err(TokenError::Expired { issued_ms, now_ms });
    }
    Ok(())
}

/// Reads big-endian fields off the front of a byte slice; running short is `Malformed`.
struct Reader<'bytes>(&'bytes [u8]);

impl<'bytes> Reader<'bytes> {
    fn take(&mut self, count: usize) -> Result<&'bytes [u8], TokenError> {
        if self.0.len() < count {
            return Err(TokenError::Malformed);
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        self.take(N)?.try_into().map_err(|_| TokenError::Malformed)
    }

    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, TokenError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, TokenError> {
        self.array().map(u64::from_be_bytes)
    }

    fn rest(&mut self) -> &'bytes [u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn key() -> TokenKey {
        TokenKey::new([7; 32])
    }

    fn sample_iterator() -> ShardIterator {
        ShardIterator {
            stream_name: "orders".to_string(),
            stream_created_ms: 1_690_000_000_123,
            shard_index: 3,
            position: Position {
                entry: 1_234_567,
                record: 42,
            },
            issued_ms: NOW_MS,
        }
    }

    #[test]
    fn iterator_round_trips_and_looks_like_aws() {
        let iterator = sample_iterator();
        let text = iterator.encode(&key());
        assert!(text.starts_with("AAAAAAAAAAE"), "{text}");
        assert_eq!(ShardIterator::decode(&text, &key(), NOW_MS), Ok(iterator));
    }

    #[test]
    fn iterator_for_longest_name_fits_the_model() {
        let iterator = ShardIterator {
            stream_name: "n".repeat(128),
            stream_created_ms: u64::MAX,
            shard_index: u32::MAX,
            position: Position {
                entry: u64::MAX,
                record: u32::MAX,
            },
            issued_ms: u64::MAX,
        };
        let text = iterator.encode(&key());
        // 18 header + 24 fixed body + 128 name + 16 MAC = 186 bytes -> 248 base64 characters.
        assert_eq!(text.len(), 248);
        assert!(text.len() <= MAX_SHARD_ITERATOR_CHARS);
        assert_eq!(ShardIterator::decode(&text, &key(), 0), Ok(iterator));
    }

    #[test]
    fn pasted_quotes_and_whitespace_are_ignored() {
        let iterator = sample_iterator();
        let text = iterator.encode(&key());
        for pasted in [
            format!("\"{text}\""),
            format!("  {text}\n"),
            format!(" \"{text}\"\r\n"),
        ] {
            assert_eq!(
                ShardIterator::decode(&pasted, &key(), NOW_MS),
                Ok(iterator.clone())
            );
        }
    }

    #[test]
    fn iterator_expires_after_five_minutes() {
        let iterator = sample_iterator();
        let text = iterator.encode(&key());
        assert!(ShardIterator::decode(&text, &key(), NOW_MS + 300_000).is_ok());
        assert_eq!(
            ShardIterator::decode(&text, &key(), NOW_MS + 300_001),
            Err(TokenError::Expired {
                issued_ms: NOW_MS,
                now_ms: NOW_MS + 300_001
            })
        );
        // Issued "in the future" by a node whose clock runs ahead: still accepted.
        assert!(ShardIterator::decode(&text, &key(), NOW_MS - 10_000).is_ok());
    }

    #[test]
    fn expiry_does_not_overflow() {
        let iterator = ShardIterator {
            issued_ms: u64::MAX - 5,
            ..sample_iterator()
        };
        let text = iterator.encode(&key());
        assert!(ShardIterator::decode(&text, &key(), u64::MAX).is_ok());
    }

    #[test]
    fn other_keys_and_garbage_are_malformed() {
        let text = sample_iterator().encode(&key());
        let other_key = TokenKey::new([8; 32]);
        assert_eq!(
            ShardIterator::decode(&text, &other_key, NOW_MS),
            Err(TokenError::Malformed)
        );
        let mut truncated = BASE64.decode(&text).unwrap();
        truncated.pop();
        for garbage in [
            String::new(),
            "\"\"".to_string(),
            "not base64!".to_string(),
            "AAAAAAAAAAE=".to_string(),
            text[..text.len() - 4].to_string(),
            BASE64.encode(&truncated),
            "A".repeat(MAX_SHARD_ITERATOR_CHARS + 4),
        ] {
            assert_eq!(
                ShardIterator::decode(&garbage, &key(), NOW_MS),
                Err(TokenError::Malformed),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn expired_and_forged_is_malformed_not_expired() {
        // A forged token must never reveal that its issue time was also stale.
        let text = sample_iterator().encode(&TokenKey::new([9; 32]));
        assert_eq!(
            ShardIterator::decode(&text, &key(), u64::MAX),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn page_tokens_round_trip_and_expire() {
        let text = PageToken::seal(&key(), 4, b"shardId-000000000009", NOW_MS);
        assert_eq!(
            PageToken::open(&key(), 4, &text, NOW_MS + 300_000),
            Ok(b"shardId-000000000009".to_vec())
        );
        assert_eq!(
            PageToken::open(&key(), 5, &text, NOW_MS),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            PageToken::open(&key(), 4, &text, NOW_MS + 300_001),
            Err(TokenError::Expired {
                issued_ms: NOW_MS,
                now_ms: NOW_MS + 300_001
            })
        );
        let empty = PageToken::seal(&key(), 0, b"", NOW_MS);
        assert_eq!(PageToken::open(&key(), 0, &empty, NOW_MS), Ok(Vec::new()));
    }

    #[test]
    fn token_classes_do_not_cross() {
        let iterator = sample_iterator().encode(&key());
        for kind in 0..=u8::MAX {
            assert_eq!(
                PageToken::open(&key(), kind, &iterator, NOW_MS),
                Err(TokenError::Malformed)
            );
        }
        // A page token whose payload happens to be a valid iterator body.
        let page = PageToken::seal(&key(), 0, &[0u8; 40], NOW_MS);
        assert_eq!(
            ShardIterator::decode(&page, &key(), NOW_MS),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let rendered = format!("{:?}", TokenKey::new([0xab; 32]));
        assert_eq!(rendered, "TokenKey(<redacted>)");
        assert!(!rendered.contains("171"));
    }

    fn any_iterator() -> impl Strategy<Value = ShardIterator> {
        (
            "[a-zA-Z0-9_.-]{1,128}",
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(
                |(stream_name, stream_created_ms, shard_index, entry, record, issued_ms)| {
                    ShardIterator {
                        stream_name,
                        stream_created_ms,
                        shard_index,
                        position: Position { entry, record },
                        issued_ms,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn iterators_round_trip(iterator in any_iterator()) {
            let text = iterator.encode(&key());
            prop_assert!(text.len() <= MAX_SHARD_ITERATOR_CHARS);
            prop_assert!(text.starts_with("AAAAAAAAAAE"));
            prop_assert_eq!(ShardIterator::decode(&text, &key(), iterator.issued_ms), Ok(iterator));
        }

        #[test]
        fn page_tokens_round_trip(kind in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..600), issued_ms in any::<u64>()) {
            let text = PageToken::seal(&key(), kind, &payload, issued_ms);
            prop_assert_eq!(PageToken::open(&key(), kind, &text, issued_ms), Ok(payload));
        }

        #[test]
        fn any_flipped_iterator_byte_is_malformed(iterator in any_iterator(), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut frame = BASE64.decode(iterator.encode(&key())).unwrap();
            let position = index.index(frame.len());
            frame[position] ^= flip;
            prop_assert_eq!(ShardIterator::decode(&BASE64.encode(&frame), &key(), iterator.issued_ms), Err(TokenError::Malformed));
        }

        #[test]
        fn any_flipped_page_token_byte_is_malformed(payload in proptest::collection::vec(any::<u8>(), 0..64), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut frame = BASE64.decode(PageToken::seal(&key(), 1, &payload, NOW_MS)).unwrap();
            let position = index.index(frame.len());
            frame[position] ^= flip;
            prop_assert_eq!(PageToken::open(&key(), 1, &BASE64.encode(&frame), NOW_MS), Err(TokenError::Malformed));
        }

        #[test]
        fn truncated_iterators_are_malformed(iterator in any_iterator(), keep in any::<prop::sample::Index>()) {
            let frame = BASE64.decode(iterator.encode(&key())).unwrap();
            let kept = &frame[..keep.index(frame.len())];
            prop_assert_eq!(ShardIterator::decode(&BASE64.encode(kept), &key(), iterator.issued_ms), Err(TokenError::Malformed));
        }

        #[test]
        fn random_strings_never_panic(text in ".{0,600}", now_ms in any::<u64>()) {
            prop_assert!(ShardIterator::decode(&text, &key(), now_ms).is_err());
            prop_assert!(PageToken::open(&key(), 0, &text, now_ms).is_err());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), prefixed in any::<bool>(), now_ms in any::<u64>()) {
            let mut frame = if prefixed { PREFIX.to_vec() } else { Vec::new() };
            frame.extend_from_slice(&bytes);
            let text = BASE64.encode(&frame);
            prop_assert_eq!(ShardIterator::decode(&text, &key(), now_ms), Err(TokenError::Malformed));
            prop_assert_eq!(PageToken::open(&key(), 0, &text, now_ms), Err(TokenError::Malformed));
        }
    }
}
