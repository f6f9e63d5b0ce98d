//! The 128-bit hash key space records are routed by, and the shard ranges that partition it.

use std::fmt;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A point in the hash key space `[0, 2^128 - 1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HashKey(pub u128);

/// Why an `ExplicitHashKey` or `NewStartingHashKey` string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashKeyError {
    /// Not a canonical decimal number (`0|([1-9]\d{0,38})`).
    #[error("hash key is not a decimal number")]
    NotDecimal,
    /// A decimal number of at least 2^128.
    #[error("hash key must be in the range [0, 2^128-1]")]
    OutOfRange,
}

/// 2^128 - 1 has 39 decimal digits.
const MAX_HASH_KEY_DIGITS: usize = 39;

impl HashKey {
    /// The smallest hash key.
    pub const MIN: HashKey = HashKey(0);
    /// The largest hash key, 2^128 - 1.
    pub const MAX: HashKey = HashKey(u128::MAX);

    /// The key Kinesis routes a partition key to: MD5 of its UTF-8 bytes, read big-endian.
    pub fn from_partition_key(partition_key: &str) -> HashKey {
        let digest: [u8; 16] = Md5::digest(partition_key.as_bytes()).into();
        HashKey(u128::from_be_bytes(digest))
    }

    /// Parses a decimal hash key as sent in `ExplicitHashKey` and `NewStartingHashKey`.
    pub fn parse_decimal(text: &str) -> Result<HashKey, HashKeyError> {
        let canonical = text == "0"
            || (!text.is_empty()
                && text.len() <= MAX_HASH_KEY_DIGITS
                && !text.starts_with('0')
                && text.bytes().all(|byte| byte.is_ascii_digit()));
        if !canonical {
            return Err(HashKeyError::NotDecimal);
        }
        // A 39-digit string can exceed u128::MAX, so accumulate with checked arithmetic.
        let mut value: u128 = 0;
        for byte in text.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|shifted| shifted.checked_add(u128::from(byte - b'0')))
                .ok_or(HashKeyError::OutOfRange)?;
        }
        Ok(HashKey(value))
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A shard's slice of the hash key space, inclusive at both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashKeyRange {
    /// First key in the range (`StartingHashKey`).
    pub start: HashKey,
    /// Last key in the range (`EndingHashKey`), inclusive.
    pub end: HashKey,
}

/// `SplitShard` was given a `NewStartingHashKey` that would leave one child empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("new starting hash key {new_start} is not within ({}, {}]", range.start, range.end)]
pub struct SplitError {
    /// The range that was to be split.
    pub range: HashKeyRange,
    /// The rejected split point.
    pub new_start: HashKey,
}

impl HashKeyRange {
    /// The whole hash key space, as covered by a one-shard stream.
    pub const FULL: HashKeyRange = HashKeyRange {
        start: HashKey::MIN,
        end: HashKey::MAX,
    };

    /// The range `[start, end]`; `start <= end` is the caller's invariant.
    pub fn new(start: HashKey, end: HashKey) -> HashKeyRange {
        debug_assert!(start <= end, "empty hash key range [{start}, {end}]");
        HashKeyRange { start, end }
    }

    /// Whether `key` falls in this range.
    pub fn contains(&self, key: HashKey) -> bool {
        self.start <= key && key <= self.end
    }

    /// The initial layout of an `n`-shard stream, as AWS, kinesalite, moto and kinesis-mock
    /// lay it out: step = floor(2^128 / n), shard `i` covers `[i*step, (i+1)*step - 1]`, and the
    /// last shard also absorbs the remainder so it ends at 2^128 - 1. `n == 0` yields no ranges.
    pub fn split_evenly(n: u32) -> Vec<HashKeyRange> {
        if n == 0 {
            return Vec::new();
        }
        if n == 1 {
            // floor(2^128 / 1) does not fit a u128; the answer is simply the whole space.
            return vec![HashKeyRange::FULL];
        }
        let count = u128::from(n);
        // floor(2^128 / n) = floor((2^128 - 1) / n), plus one exactly when n divides 2^128,
        // which is when (2^128 - 1) leaves the largest possible remainder n - 1.
        let step = u128::MAX / count + u128::from(u128::MAX % count == count - 1);
        (0..count)
            .map(|index| {
                let start = index * step;
                let end = if index + 1 == count {
                    u128::MAX
                } else {
                    start + step - 1
                };
                HashKeyRange {
                    start: HashKey(start),
                    end: HashKey(end),
                }
            })
            .collect()
    }

    /// Splits this range at `new_start` into `[start, new_start - 1]` and `[new_start, end]`.
    ///
    /// Accepted iff `start < new_start <= end`, which is exactly when both children are
    /// non-empty. This is looser than the wording of AWS's error message ("greater than one
    /// plus the StartingHashKey and less than the EndingHashKey"); peers disagree on that edge,
    /// so the API layer may add the stricter check before calling this.
    pub fn split_at(&self, new_start: HashKey) -> Result<(HashKeyRange, HashKeyRange), SplitError> {
        if new_start <= self.start || new_start > self.end {
            return Err(SplitError {
                range: *self,
                new_start,
            });
        }
        // new_start > start >= 0, so new_start - 1 cannot underflow.
        let lower = HashKeyRange {
            start: self.start,
            end: HashKey(new_start.0 - 1),
        };
        let upper = HashKeyRange {
            start: new_start,
            end: self.end,
        };
        Ok((lower, upper))
    }

    /// Whether the two ranges touch with no gap and no overlap, in either order (the
    /// `MergeShards` precondition).
    pub fn is_adjacent(&self, other: &HashKeyRange) -> bool {
        let follows = |lower: &HashKeyRange, upper: &HashKeyRange| {
            lower.end.0.checked_add(1) == Some(upper.start.0)
        };
        follows(self, other) || follows(other, self)
    }

    /// The range covering two adjacent ranges (the child of `MergeShards`). Callers check
    /// [`HashKeyRange::is_adjacent`] first; for non-adjacent ranges the result would also
    /// cover the gap between them.
    pub fn union(&self, other: &HashKeyRange) -> HashKeyRange {
        debug_assert!(
            self.is_adjacent(other),
            "union of non-adjacent ranges {self:?} and {other:?}"
        );
        HashKeyRange {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TWO_POW_127: u128 = 1 << 127;

    #[test]
    fn partition_key_hashes_match_md5() {
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            HashKey::from_partition_key("a"),
            HashKey(0x0cc175b9c0f1b6a831c399e269772661)
        );
        assert_eq!(
            HashKey::from_partition_key("a").to_string(),
            "16955237001963240173058271559858726497"
        );
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(
            HashKey::from_partition_key(""),
            HashKey(0xd41d8cd98f00b204e9800998ecf8427e)
        );
        // Multi-byte UTF-8 is hashed as bytes: md5("é") = md5(c3 a9)
        assert_eq!(
            HashKey::from_partition_key("é"),
            HashKey(u128::from_be_bytes(Md5::digest([0xc3u8, 0xa9]).into()))
        );
    }

    #[test]
    fn parses_canonical_decimals() {
        assert_eq!(HashKey::parse_decimal("0"), Ok(HashKey(0)));
        assert_eq!(HashKey::parse_decimal("1"), Ok(HashKey(1)));
        assert_eq!(
            HashKey::parse_decimal("340282366920938463463374607431768211455"),
            Ok(HashKey::MAX)
        );
        assert_eq!(
            HashKey::parse_decimal("170141183460469231731687303715884105728"),
            Ok(HashKey(TWO_POW_127))
        );
    }

    #[test]
    fn rejects_non_decimals() {
        for text in [
            "", "00", "01", "-1", "+1", "1.0", " 1", "1 ", "0x10", "1e3", "١",
        ] {
            assert_eq!(
                HashKey::parse_decimal(text),
                Err(HashKeyError::NotDecimal),
                "{text:?}"
            );
        }
        // 40 digits is outside the pattern even though it is a number.
        assert_eq!(
            HashKey::parse_decimal(&format!("1{}", "0".repeat(39))),
            Err(HashKeyError::NotDecimal)
        );
    }

    #[test]
    fn rejects_values_past_the_space() {
        // 2^128
        assert_eq!(
            HashKey::parse_decimal("340282366920938463463374607431768211456"),
            Err(HashKeyError::OutOfRange)
        );
        assert_eq!(
            HashKey::parse_decimal(&"9".repeat(39)),
            Err(HashKeyError::OutOfRange)
        );
    }

    #[test]
    fn two_shards_split_at_two_pow_127() {
        let ranges = HashKeyRange::split_evenly(2);
        assert_eq!(
            ranges,
            vec![
                HashKeyRange {
                    start: HashKey(0),
                    end: HashKey(TWO_POW_127 - 1)
                },
                HashKeyRange {
                    start: HashKey(TWO_POW_127),
                    end: HashKey::MAX
                },
            ]
        );
        assert_eq!(
            ranges[0].end.to_string(),
            "170141183460469231731687303715884105727"
        );
        assert_eq!(
            ranges[1].start.to_string(),
            "170141183460469231731687303715884105728"
        );
    }

    #[test]
    fn three_shards_match_kinesalite() {
        // Values DescribeStream returns for a 3-shard stream on AWS and kinesalite.
        let ranges = HashKeyRange::split_evenly(3);
        let rendered: Vec<(String, String)> = ranges
            .iter()
            .map(|range| (range.start.to_string(), range.end.to_string()))
            .collect();
        assert_eq!(
            rendered,
            vec![
                (
                    "0".to_string(),
                    "113427455640312821154458202477256070484".to_string()
                ),
                (
                    "113427455640312821154458202477256070485".to_string(),
                    "226854911280625642308916404954512140969".to_string()
                ),
                (
                    "226854911280625642308916404954512140970".to_string(),
                    "340282366920938463463374607431768211455".to_string()
                ),
            ]
        );
    }

    #[test]
    fn degenerate_split_counts() {
        assert_eq!(HashKeyRange::split_evenly(0), Vec::new());
        assert_eq!(HashKeyRange::split_evenly(1), vec![HashKeyRange::FULL]);
    }

    #[test]
    fn split_at_boundaries() {
        let range = HashKeyRange::new(HashKey(10), HashKey(20));
        assert!(range.split_at(HashKey(10)).is_err());
        assert!(range.split_at(HashKey(21)).is_err());
        assert!(range.split_at(HashKey(0)).is_err());
        assert_eq!(
            range.split_at(HashKey(11)),
            Ok((
                HashKeyRange::new(HashKey(10), HashKey(10)),
                HashKeyRange::new(HashKey(11), HashKey(20))
            ))
        );
        assert_eq!(
            range.split_at(HashKey(20)),
            Ok((
                HashKeyRange::new(HashKey(10), HashKey(19)),
                HashKeyRange::new(HashKey(20), HashKey(20))
            ))
        );
        let error = range.split_at(HashKey(5)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "new starting hash key 5 is not within (10, 20]"
        );
        // A single-key range cannot be split at all.
        let single = HashKeyRange::new(HashKey(7), HashKey(7));
        assert!(single.split_at(HashKey(7)).is_err());
        assert!(single.split_at(HashKey(8)).is_err());
    }

    #[test]
    fn adjacency_at_the_edges_of_the_space() {
        let low = HashKeyRange::new(HashKey(0), HashKey(9));
        let high = HashKeyRange::new(HashKey(10), HashKey::MAX);
        assert!(low.is_adjacent(&high));
        assert!(high.is_adjacent(&low));
        assert_eq!(low.union(&high), HashKeyRange::FULL);
        assert_eq!(high.union(&low), HashKeyRange::FULL);
        // Ending at MAX must not overflow when probing for a follower.
        assert!(!HashKeyRange::FULL.is_adjacent(&HashKeyRange::FULL));
        // Gap and overlap are both not adjacent.
        assert!(!low.is_adjacent(&HashKeyRange::new(HashKey(11), HashKey(20))));
        assert!(!low.is_adjacent(&HashKeyRange::new(HashKey(9), HashKey(20))));
    }

    #[test]
    fn contains_is_inclusive() {
        let range = HashKeyRange::new(HashKey(10), HashKey(20));
        assert!(range.contains(HashKey(10)));
        assert!(range.contains(HashKey(20)));
        assert!(!range.contains(HashKey(9)));
        assert!(!range.contains(HashKey(21)));
        assert!(HashKeyRange::FULL.contains(HashKey::MAX));
    }

    /// Checks that `ranges` tile `[0, MAX]` with no gap and no overlap.
    fn assert_tiles_space(ranges: &[HashKeyRange], count: u32) -> Result<(), TestCaseError> {
        prop_assert_eq!(ranges.len(), count as usize);
        prop_assert_eq!(ranges[0].start, HashKey::MIN);
        prop_assert_eq!(ranges[ranges.len() - 1].end, HashKey::MAX);
        for pair in ranges.windows(2) {
            prop_assert!(pair[0].start <= pair[0].end);
            prop_assert_eq!(pair[0].end.0 + 1, pair[1].start.0);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn split_evenly_tiles_the_space(count in 1u32..=10_000) {
            let ranges = HashKeyRange::split_evenly(count);
            assert_tiles_space(&ranges, count)?;
            // All shards but the last hold exactly step keys; the last holds step plus the
            // remainder 2^128 mod n, which is less than n.
            let first_width = ranges[0].end.0 - ranges[0].start.0;
            for range in &ranges[..ranges.len() - 1] {
                prop_assert_eq!(range.end.0 - range.start.0, first_width);
            }
            let last = ranges[ranges.len() - 1];
            let extra = (last.end.0 - last.start.0) - first_width;
            let count_wide = u128::from(count);
            prop_assert_eq!(extra, (u128::MAX % count_wide + 1) % count_wide);
            if count > 1 {
                // step == floor(2^128 / n) iff n*step <= 2^128 < n*(step + 1), rearranged so
                // that neither side needs 129 bits.
                let step = first_width + 1;
                prop_assert!(step * (count_wide - 1) <= u128::MAX - step + 1);
                let over = (step + 1).checked_mul(count_wide - 1).and_then(|sum| sum.checked_add(step));
                prop_assert!(over.is_none());
            }
        }

        #[test]
        fn split_at_children_reunite(start in any::<u128>(), end in any::<u128>(), point in any::<u128>()) {
            let (start, end) = if start <= end { (start, end) } else { (end, start) };
            let parent = HashKeyRange::new(HashKey(start), HashKey(end));
            match parent.split_at(HashKey(point)) {
                Ok((lower, upper)) => {
                    prop_assert!(start < point && point <= end);
                    prop_assert!(lower.start <= lower.end && upper.start <= upper.end);
                    prop_assert!(lower.is_adjacent(&upper));
                    prop_assert!(upper.is_adjacent(&lower));
                    prop_assert_eq!(lower.union(&upper), parent);
                    prop_assert_eq!(upper.union(&lower), parent);
                    prop_assert!(lower.contains(HashKey(point - 1)) && upper.contains(HashKey(point)));
                }
                Err(error) => {
                    prop_assert!(point <= start || point > end);
                    prop_assert_eq!(error.new_start, HashKey(point));
                }
            }
        }

        #[test]
        fn decimal_round_trips(value in any::<u128>()) {
            prop_assert_eq!(HashKey::parse_decimal(&HashKey(value).to_string()), Ok(HashKey(value)));
        }

        #[test]
        fn parse_never_panics(text in "[0-9]{0,45}|.{0,45}") {
            let _ = HashKey::parse_decimal(&text);
        }
    }
}
