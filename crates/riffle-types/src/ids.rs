//! Identifiers: Raft group ids, shard ids, and the stream/consumer name rule.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identifies one Raft group (the control-plane group or one shard's replication group).
pub type GroupId = u64;

/// The model's pattern for stream and consumer names, quoted verbatim in validation messages.
pub const STREAM_NAME_PATTERN: &str = "[a-zA-Z0-9_.-]+";

/// Longest stream or consumer name, in characters.
pub const MAX_STREAM_NAME_CHARS: usize = 128;

/// Longest digit run accepted in a shard id; the canonical form pads to exactly this many.
const SHARD_ID_DIGITS: usize = 12;

const SHARD_ID_PREFIX: &str = "shardId-";

/// A shard's index within its stream. Indices are allocated sequentially and never reused, so
/// a child shard always has a larger index than its parents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl ShardId {
    /// Parses the padded wire form (`shardId-000000000007`) and the short forms clients send
    /// (`shardId-7`, `7`), as kinesalite does. Anything else, including more than 12 digits or
    /// a value that does not fit a `u32`, is `None`.
    pub fn parse(text: &str) -> Option<ShardId> {
        let digits = text.strip_prefix(SHARD_ID_PREFIX).unwrap_or(text);
        // `u32::from_str` alone would also accept a leading `+`.
        if digits.is_empty()
            || digits.len() > SHARD_ID_DIGITS
            || !digits.bytes().all(|byte| byte.is_ascii_digit())
        {
            return None;
        }
        digits.parse::<u32>().ok().map(ShardId)
    }

    /// The shard's index.
    pub fn index(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHARD_ID_PREFIX}{:012}", self.0)
    }
}

/// Whether `name` is a valid stream name: 1 to 128 characters of `[a-zA-Z0-9_.-]`.
pub fn is_valid_stream_name(name: &str) -> bool {
    // Every allowed character is ASCII, so the byte length is the character length.
    !name.is_empty() && name.len() <= MAX_STREAM_NAME_CHARS && name.bytes().all(is_name_byte)
}

/// Whether `name` is a valid consumer name; the model uses the same rule as for streams.
pub fn is_valid_consumer_name(name: &str) -> bool {
    is_valid_stream_name(name)
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shard_id_displays_padded() {
        assert_eq!(ShardId(7).to_string(), "shardId-000000000007");
        assert_eq!(ShardId(0).to_string(), "shardId-000000000000");
        assert_eq!(ShardId(u32::MAX).to_string(), "shardId-004294967295");
    }

    #[test]
    fn shard_id_parses_long_and_short_forms() {
        assert_eq!(ShardId::parse("shardId-000000000007"), Some(ShardId(7)));
        assert_eq!(ShardId::parse("shardId-7"), Some(ShardId(7)));
        assert_eq!(ShardId::parse("7"), Some(ShardId(7)));
        assert_eq!(ShardId::parse("000000000012"), Some(ShardId(12)));
        assert_eq!(
            ShardId::parse("shardId-004294967295"),
            Some(ShardId(u32::MAX))
        );
    }

    #[test]
    fn shard_id_rejects_everything_else() {
        for text in [
            "",
            "shardId-",
            "shardId-0000000000007", // 13 digits
            "shardId-004294967296",  // u32::MAX + 1
            "shardid-000000000007",  // prefix is case-sensitive
            "shardId--1",
            "shardId-+7",
            "+7",
            "-7",
            " 7",
            "7 ",
            "shardId-7x",
            "shard-7",
            "shardId-００7", // non-ASCII digits
        ] {
            assert_eq!(ShardId::parse(text), None, "{text:?} should not parse");
        }
    }

    #[test]
    fn shard_ids_order_by_index() {
        assert!(ShardId(2) < ShardId(10));
        // The padded strings sort the same way, which ListShards relies on.
        assert!(ShardId(2).to_string() < ShardId(10).to_string());
    }

    #[test]
    fn stream_names() {
        assert!(is_valid_stream_name("a"));
        assert!(is_valid_stream_name("my-stream_1.v2"));
        assert!(is_valid_stream_name(&"x".repeat(128)));
        assert!(!is_valid_stream_name(""));
        assert!(!is_valid_stream_name(&"x".repeat(129)));
        assert!(!is_valid_stream_name("a b"));
        assert!(!is_valid_stream_name("a/b"));
        assert!(!is_valid_stream_name("a:b"));
        assert!(!is_valid_stream_name("é"));
        assert!(is_valid_consumer_name("consumer-1"));
        assert!(!is_valid_consumer_name("consumer/1"));
    }

    #[test]
    fn pattern_constant_matches_aws_text() {
        assert_eq!(STREAM_NAME_PATTERN, "[a-zA-Z0-9_.-]+");
    }

    proptest! {
        #[test]
        fn shard_id_round_trips(index in any::<u32>()) {
            let shard = ShardId(index);
            prop_assert_eq!(ShardId::parse(&shard.to_string()), Some(shard));
            prop_assert_eq!(ShardId::parse(&index.to_string()), Some(shard));
        }

        #[test]
        fn shard_id_parse_never_panics(text in ".*") {
            let _ = ShardId::parse(&text);
        }

        #[test]
        fn valid_names_match_the_pattern(name in "[a-zA-Z0-9_.-]{1,128}") {
            prop_assert!(is_valid_stream_name(&name));
        }
    }
}
