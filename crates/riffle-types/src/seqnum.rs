//! Kinesis sequence numbers in AWS's 56-digit "version 2" layout, and the log position each
//! one encodes.
//!
//! KCL 2.x's `SequenceNumberValidator` decodes version-2 numbers and checks that the embedded
//! shard index matches the shard being checkpointed, so Riffle emits exactly that layout: a
//! 188-bit number, written here as 47 hex digits, most significant first.
//!
//! | hex digits | bits (from LSB) | content |
//! |---|---|---|
//! | 1 | 184..188 | version, `2` |
//! | 9 | 148..184 | shard creation time, epoch seconds |
//! | 1 | 144..148 | low nibble of the shard index |
//! | 16 | 80..144 | per-shard counter, top nibble at most 7 |
//! | 2 | 72..80 | reserved, `00` |
//! | 9 | 36..72 | record arrival time, epoch seconds |
//! | 8 | 4..36 | shard index |
//! | 1 | 0..4 | version, `2` |
//!
//! Within one shard the leading fields are constant, so the decimal strings order by counter
//! first: that is what makes them strictly increasing in log order whatever the clocks say.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bits of a [`Position`] counter that hold the record's place within its log entry.
pub const RECORD_BITS: u32 = 12;

/// Most records one log entry can hold (4096), fixed by [`RECORD_BITS`].
pub const MAX_RECORDS_PER_ENTRY: u32 = 1 << RECORD_BITS;

/// Bits available for the log index: the counter has 63 bits and the record takes 12.
pub const ENTRY_BITS: u32 = 63 - RECORD_BITS;

/// Largest per-shard counter (`7fffffffffffffff`); AWS uses it in a closed shard's
/// `EndingSequenceNumber`.
pub const MAX_COUNTER: u64 = (1 << 63) - 1;

/// Largest time the 9-hex-digit fields hold (2^36 - 1 seconds, in the year 4147).
pub const MAX_ENCODED_SECS: u64 = (1 << 36) - 1;

/// Where a record lives in its shard's replicated log.
///
/// Ordered by `(entry, record)`, which is log order and therefore sequence-number order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Raft log index of the entry holding the record's batch; below 2^51.
    pub entry: u64,
    /// The record's 0-based place in that batch; below [`MAX_RECORDS_PER_ENTRY`].
    pub record: u32,
}

impl Position {
    /// The position `record` within log entry `entry`.
    pub fn new(entry: u64, record: u32) -> Position {
        debug_assert!(
            entry < 1 << ENTRY_BITS,
            "log index {entry} does not fit a sequence number"
        );
        debug_assert!(
            record < MAX_RECORDS_PER_ENTRY,
            "record {record} exceeds a log entry"
        );
        Position { entry, record }
    }

    /// The sequence-number counter for this position: `entry << 12 | record`.
    pub fn counter(&self) -> u64 {
        debug_assert!(
            self.entry < 1 << ENTRY_BITS,
            "log index {} too large",
            self.entry
        );
        debug_assert!(
            self.record < MAX_RECORDS_PER_ENTRY,
            "record {} too large",
            self.record
        );
        (self.entry << RECORD_BITS) | u64::from(self.record & (MAX_RECORDS_PER_ENTRY - 1))
    }

    /// The position a counter encodes.
    pub fn from_counter(counter: u64) -> Position {
        debug_assert!(
            counter <= MAX_COUNTER,
            "counter {counter} has the top bit set"
        );
        let record_mask = u64::from(MAX_RECORDS_PER_ENTRY - 1);
        Position {
            entry: counter >> RECORD_BITS,
            // Masked to 12 bits, so it always fits a u32.
            record: (counter & record_mask) as u32,
        }
    }
}

/// A sequence number string was not a version-2 Kinesis sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SeqNumError {
    /// Not `0|([1-9]\d{0,128})`, or a number that does not decode to the version-2 layout.
    #[error("malformed sequence number")]
    Malformed,
}

/// A decoded version-2 sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SequenceNumber {
    /// When the shard was created, epoch seconds; clamped to [`MAX_ENCODED_SECS`] on encode.
    /// Distinguishes numbers from a re-created stream with the same name.
    pub shard_created_secs: u64,
    /// The shard's index ([`crate::ShardId`]).
    pub shard_index: u32,
    /// Per-shard counter, [`Position::counter`] of the record; at most [`MAX_COUNTER`].
    pub counter: u64,
    /// When the record arrived, epoch seconds; clamped to [`MAX_ENCODED_SECS`] on encode.
    pub arrival_secs: u64,
}

const VERSION: u64 = 2;
/// Every version-2 number lies in [2 * 2^184, 3 * 2^184), all of which have 56 digits.
const ENCODED_DIGITS: usize = 56;
/// The model's pattern allows up to 129 digits.
const MAX_PATTERN_DIGITS: usize = 129;

/// A field of the layout: its offset from the least significant bit and its width.
#[derive(Clone, Copy)]
struct Field {
    offset: u32,
    width: u32,
}

const VERSION_LOW: Field = Field {
    offset: 0,
    width: 4,
};
const SHARD_INDEX: Field = Field {
    offset: 4,
    width: 32,
};
const ARRIVAL_SECS: Field = Field {
    offset: 36,
    width: 36,
};
const RESERVED_BYTE: Field = Field {
    offset: 72,
    width: 8,
};
const COUNTER: Field = Field {
    offset: 80,
    width: 64,
};
const SHARD_NIBBLE: Field = Field {
    offset: 144,
    width: 4,
};
const CREATED_SECS: Field = Field {
    offset: 148,
    width: 36,
};
const VERSION_HIGH: Field = Field {
    offset: 184,
    width: 4,
};
/// Bits 188..192 of the 192-bit working integer, zero for every 188-bit number.
const ABOVE_LAYOUT: Field = Field {
    offset: 188,
    width: 4,
};

impl SequenceNumber {
    /// The shard's `StartingSequenceNumber`: counter 0 (below every record, since Raft log
    /// indices start at 1) and arrival time equal to the shard's creation time.
    pub fn shard_start(shard_created_secs: u64, shard_index: u32) -> SequenceNumber {
        SequenceNumber {
            shard_created_secs,
            shard_index,
            counter: 0,
            arrival_secs: shard_created_secs,
        }
    }

    /// The log position this sequence number's counter encodes.
    pub fn position(&self) -> Position {
        Position::from_counter(self.counter)
    }

    /// The 56-digit decimal string clients see.
    pub fn encode(&self) -> String {
        debug_assert!(
            self.counter <= MAX_COUNTER,
            "counter {} has the top bit set",
            self.counter
        );
        let mut value = U192::ZERO;
        value.set(VERSION_HIGH, VERSION);
        value.set(CREATED_SECS, self.shard_created_secs.min(MAX_ENCODED_SECS));
        value.set(SHARD_NIBBLE, u64::from(self.shard_index));
        value.set(COUNTER, self.counter & MAX_COUNTER);
        value.set(RESERVED_BYTE, 0);
        value.set(ARRIVAL_SECS, self.arrival_secs.min(MAX_ENCODED_SECS));
        value.set(SHARD_INDEX, u64::from(self.shard_index));
        value.set(VERSION_LOW, VERSION);
        value.to_decimal()
    }

    /// Decodes a sequence number a client sent back. Anything that is not a well-formed
    /// version-2 number, as Riffle or AWS would produce it, is [`SeqNumError::Malformed`].
    pub fn parse(text: &str) -> Result<SequenceNumber, SeqNumError> {
        let matches_pattern = text == "0"
            || (!text.is_empty()
                && text.len() <= MAX_PATTERN_DIGITS
                && !text.starts_with('0')
                && text.bytes().all(|byte| byte.is_ascii_digit()));
        // Any other length is a valid Kinesis sequence number of some other layout, which no
        // Riffle shard could have produced.
        if !matches_pattern || text.len() != ENCODED_DIGITS {
            return Err(SeqNumError::Malformed);
        }
        let value = U192::from_decimal(text).ok_or(SeqNumError::Malformed)?;
        let shard_index = value.get(SHARD_INDEX);
        let counter = value.get(COUNTER);
        let well_formed = value.get(ABOVE_LAYOUT) == 0
            && value.get(VERSION_HIGH) == VERSION
            && value.get(VERSION_LOW) == VERSION
            && value.get(RESERVED_BYTE) == 0
            && value.get(SHARD_NIBBLE) == shard_index & 0xF
            && counter <= MAX_COUNTER;
        if !well_formed {
            return Err(SeqNumError::Malformed);
        }
        Ok(SequenceNumber {
            shard_created_secs: value.get(CREATED_SECS),
            // The field is 32 bits wide, so this conversion cannot fail.
            shard_index: u32::try_from(shard_index).map_err(|_| SeqNumError::Malformed)?,
            counter,
            arrival_secs: value.get(ARRIVAL_SECS),
        })
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// An unsigned 192-bit integer, little-endian 64-bit limbs: just enough arithmetic for the
/// layout above, so the crate needs no bignum dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct U192([u64; 3]);

/// The largest power of ten that fits a u64, so decimal conversion works 19 digits at a time.
const TEN_POW_19: u64 = 10_000_000_000_000_000_000;

fn low_bits_mask(width: u32) -> u64 {
    if width >= 64 {
        u64::MAX
    } else {
        (1 << width) - 1
    }
}

impl U192 {
    const ZERO: U192 = U192([0; 3]);

    /// ORs `value` (truncated to the field's width) into the field.
    fn set(&mut self, field: Field, value: u64) {
        debug_assert!(field.width <= 64 && field.offset + field.width <= 192);
        let value = value & low_bits_mask(field.width);
        let limb = (field.offset / 64) as usize;
        let shift = field.offset % 64;
        self.0[limb] |= value << shift;
        if shift + field.width > 64 {
            // shift > 0 here, because width <= 64.
            self.0[limb + 1] |= value >> (64 - shift);
        }
    }

    fn get(&self, field: Field) -> u64 {
        debug_assert!(field.width <= 64 && field.offset + field.width <= 192);
        let limb = (field.offset / 64) as usize;
        let shift = field.offset % 64;
        let mut value = self.0[limb] >> shift;
        if shift + field.width > 64 {
            value |= self.0[limb + 1] << (64 - shift);
        }
        value & low_bits_mask(field.width)
    }

    fn is_zero(&self) -> bool {
        self.0 == [0; 3]
    }

    /// Divides in place by a non-zero `divisor` and returns the remainder.
    fn div_rem_in_place(&mut self, divisor: u64) -> u64 {
        let mut remainder: u128 = 0;
        for limb in self.0.iter_mut().rev() {
            let current = (remainder << 64) | u128::from(*limb);
            // remainder < divisor, so current / divisor < 2^64.
            *limb = (current / u128::from(divisor)) as u64;
            remainder = current % u128::from(divisor);
        }
        // remainder < divisor, a u64.
        remainder as u64
    }

    /// `self * factor + addend`, or `None` past 2^192.
    fn checked_mul_add(&self, factor: u64, addend: u64) -> Option<U192> {
        let mut result = [0u64; 3];
        let mut carry = u128::from(addend);
        for (out, limb) in result.iter_mut().zip(self.0) {
            let product = u128::from(limb) * u128::from(factor) + carry;
            *out = product as u64;
            carry = product >> 64;
        }
        (carry == 0).then_some(U192(result))
    }

    fn to_decimal(self) -> String {
        // 2^192 < 10^58, so four 19-digit chunks always suffice.
        let mut chunks = [0u64; 4];
        let mut used = 0;
        let mut rest = self;
        loop {
            chunks[used] = rest.div_rem_in_place(TEN_POW_19);
            used += 1;
            if rest.is_zero() {
                break;
            }
        }
        let mut text = chunks[used - 1].to_string();
        for chunk in chunks[..used - 1].iter().rev() {
            text.push_str(&format!("{chunk:019}"));
        }
        text
    }

    /// Parses ASCII digits (already validated), or `None` past 2^192.
    fn from_decimal(digits: &str) -> Option<U192> {
        digits.bytes().try_fold(U192::ZERO, |value, byte| {
            value.checked_mul_add(10, u64::from(byte.wrapping_sub(b'0')))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real sequence numbers returned by AWS, decoded by hand from their hex form.
    const AWS_SAMPLES: &[(&str, SequenceNumber)] = &[
        (
            "49590338271490256608559692538361571095921575989136588898",
            SequenceNumber {
                shard_created_secs: 0x5bf4e5c2,
                shard_index: 6,
                counter: 0x67648a17,
                arrival_secs: 0x5c181eea,
            },
        ),
        (
            "49546986683135544286507457936321625675700192471156785154",
            SequenceNumber {
                shard_created_secs: 0x54b6fffe,
                shard_index: 0,
                counter: 0x1d5,
                arrival_secs: 0x54b7009a,
            },
        ),
    ];

    #[test]
    fn decodes_aws_sequence_numbers() {
        for (text, expected) in AWS_SAMPLES {
            assert_eq!(SequenceNumber::parse(text), Ok(*expected), "{text}");
            assert_eq!(expected.encode(), *text);
        }
    }

    #[test]
    fn encodes_known_values() {
        // Expected strings computed independently from the hex layout.
        let record = SequenceNumber {
            shard_created_secs: 1_700_000_000,
            shard_index: 7,
            counter: Position::new(42, 3).counter(),
            arrival_secs: 1_700_000_123,
        };
        assert_eq!(
            record.encode(),
            "49646437577264581633306590975794232830896706729889759346"
        );
        assert_eq!(record.to_string(), record.encode());
        assert_eq!(SequenceNumber::parse(&record.encode()), Ok(record));
        assert_eq!(
            record.position(),
            Position {
                entry: 42,
                record: 3
            }
        );

        let start = SequenceNumber::shard_start(1_700_000_000, 7);
        assert_eq!(start.counter, 0);
        assert_eq!(start.arrival_secs, 1_700_000_000);
        assert_eq!(
            start.encode(),
            "49646437577264581633306590767816679453493968206817132658"
        );

        let wide_index = SequenceNumber {
            shard_created_secs: 1_700_000_000,
            shard_index: 0x1234567f,
            counter: 5,
            arrival_secs: 1_700_000_001,
        };
        assert_eq!(
            wide_index.encode(),
            "49646437577442987594894835752955009828773228318344701938"
        );
        assert_eq!(SequenceNumber::parse(&wide_index.encode()), Ok(wide_index));
    }

    #[test]
    fn extremes_have_56_digits() {
        let smallest = SequenceNumber {
            shard_created_secs: 0,
            shard_index: 0,
            counter: 0,
            arrival_secs: 0,
        };
        let largest = SequenceNumber {
            shard_created_secs: MAX_ENCODED_SECS,
            shard_index: u32::MAX,
            counter: MAX_COUNTER,
            arrival_secs: MAX_ENCODED_SECS,
        };
        assert_eq!(
            smallest.encode(),
            "49039857307708443467467104868809893875799651909875269634"
        );
        assert_eq!(
            largest.encode(),
            "73559785961551514828601391991642868751110021924530421746"
        );
        assert_eq!(smallest.encode().len(), 56);
        assert_eq!(largest.encode().len(), 56);
        assert_eq!(SequenceNumber::parse(&largest.encode()), Ok(largest));
    }

    #[test]
    fn times_past_36_bits_are_clamped() {
        let far_future = SequenceNumber {
            shard_created_secs: u64::MAX,
            shard_index: 1,
            counter: 1,
            arrival_secs: 1 << 40,
        };
        let decoded = SequenceNumber::parse(&far_future.encode()).unwrap();
        assert_eq!(decoded.shard_created_secs, MAX_ENCODED_SECS);
        assert_eq!(decoded.arrival_secs, MAX_ENCODED_SECS);
        assert_eq!(decoded.counter, 1);
    }

    #[test]
    fn rejects_other_layouts() {
        let valid = "49646437577264581633306590975794232830896706729889759346";
        let mut rejected = vec![
            String::new(),
            "0".to_string(),
            "1".to_string(),
            "00".to_string(),
            format!("0{valid}"),
            format!("{valid}0"),
            valid[1..].to_string(),
            format!("{valid} "),
            "-1".to_string(),
            "9".repeat(129),
            "9".repeat(130),
            // A version-1 layout number (last hex digit 1), as older AWS streams return.
            "49545115243490985018280067714973144582180062593244200961".to_string(),
        ];
        // Same number with the low version nibble changed from 2 to 3: +1.
        rejected.push("49646437577264581633306590975794232830896706729889759347".to_string());
        for text in &rejected {
            assert_eq!(
                SequenceNumber::parse(text),
                Err(SeqNumError::Malformed),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_each_broken_field() {
        let sample = SequenceNumber {
            shard_created_secs: 1_700_000_000,
            shard_index: 7,
            counter: 99,
            arrival_secs: 1_700_000_123,
        };
        let build = |tamper: &dyn Fn(&mut U192)| {
            let mut value = U192::from_decimal(&sample.encode()).unwrap();
            tamper(&mut value);
            value.to_decimal()
        };
        assert!(SequenceNumber::parse(&build(&|_| {})).is_ok());
        let tampers: [&dyn Fn(&mut U192); 5] = [
            &|value| value.set(RESERVED_BYTE, 1),
            &|value| value.set(SHARD_NIBBLE, 8),
            &|value| value.set(COUNTER, 1 << 63),
            &|value| value.set(VERSION_LOW, 1),
            &|value| value.set(ABOVE_LAYOUT, 1),
        ];
        for tamper in tampers {
            assert_eq!(
                SequenceNumber::parse(&build(tamper)),
                Err(SeqNumError::Malformed)
            );
        }
    }

    #[test]
    fn positions_pack_into_counters() {
        assert_eq!(Position::new(1, 0).counter(), 4096);
        assert_eq!(Position::new(1, 4095).counter(), 8191);
        assert_eq!(Position::new(0, 7).counter(), 7);
        assert_eq!(
            Position::from_counter(8191),
            Position {
                entry: 1,
                record: 4095
            }
        );
        let last = Position::new((1 << ENTRY_BITS) - 1, MAX_RECORDS_PER_ENTRY - 1);
        assert_eq!(last.counter(), MAX_COUNTER);
        assert_eq!(Position::from_counter(MAX_COUNTER), last);
        assert!(Position::new(1, 4095) < Position::new(2, 0));
        assert!(Position::new(2, 0) < Position::new(2, 1));
    }

    #[test]
    fn u192_decimal_matches_known_powers() {
        let mut two_pow_188 = U192::ZERO;
        two_pow_188.set(ABOVE_LAYOUT, 1);
        assert_eq!(
            two_pow_188.to_decimal(),
            "392318858461667547739736838950479151006397215279002157056"
        );
        assert_eq!(U192::ZERO.to_decimal(), "0");
        assert_eq!(
            U192([u64::MAX; 3]).to_decimal(),
            "6277101735386680763835789423207666416102355444464034512895"
        );
        assert_eq!(
            U192::from_decimal("6277101735386680763835789423207666416102355444464034512895"),
            Some(U192([u64::MAX; 3]))
        );
        // 2^192 itself does not fit.
        assert_eq!(
            U192::from_decimal("6277101735386680763835789423207666416102355444464034512896"),
            None
        );
    }

    fn any_sequence_number() -> impl Strategy<Value = SequenceNumber> {
        (
            0..=MAX_ENCODED_SECS,
            any::<u32>(),
            0..=MAX_COUNTER,
            0..=MAX_ENCODED_SECS,
        )
            .prop_map(|(shard_created_secs, shard_index, counter, arrival_secs)| {
                SequenceNumber {
                    shard_created_secs,
                    shard_index,
                    counter,
                    arrival_secs,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(number in any_sequence_number()) {
            let text = number.encode();
            prop_assert_eq!(text.len(), 56);
            prop_assert_eq!(SequenceNumber::parse(&text), Ok(number));
        }

        #[test]
        fn any_fields_encode_to_56_digits(
            shard_created_secs in any::<u64>(),
            shard_index in any::<u32>(),
            counter in 0..=MAX_COUNTER,
            arrival_secs in any::<u64>(),
        ) {
            let number = SequenceNumber { shard_created_secs, shard_index, counter, arrival_secs };
            let text = number.encode();
            prop_assert_eq!(text.len(), 56);
            prop_assert!(SequenceNumber::parse(&text).is_ok());
        }

        #[test]
        fn order_within_a_shard_follows_the_counter(
            shard_created_secs in 0..=MAX_ENCODED_SECS,
            shard_index in any::<u32>(),
            counters in (0..=MAX_COUNTER, 0..=MAX_COUNTER),
            arrivals in (0..=MAX_ENCODED_SECS, 0..=MAX_ENCODED_SECS),
        ) {
            prop_assume!(counters.0 != counters.1);
            let first = SequenceNumber { shard_created_secs, shard_index, counter: counters.0, arrival_secs: arrivals.0 };
            let second = SequenceNumber { shard_created_secs, shard_index, counter: counters.1, arrival_secs: arrivals.1 };
            // Equal-length decimal strings compare like the numbers they spell.
            prop_assert_eq!(first.encode().cmp(&second.encode()), counters.0.cmp(&counters.1));
        }

        #[test]
        fn accepted_strings_are_exactly_encodings(text in "[1-9][0-9]{55}") {
            if let Ok(number) = SequenceNumber::parse(&text) {
                prop_assert_eq!(number.encode(), text);
            }
        }

        #[test]
        fn numbers_outside_the_version_2_band_are_rejected(text in "[1-3][0-9]{55}|[89][0-9]{55}|[1-9][0-9]{0,54}|[1-9][0-9]{56,128}") {
            prop_assert_eq!(SequenceNumber::parse(&text), Err(SeqNumError::Malformed));
        }

        #[test]
        fn parse_never_panics(text in ".{0,140}") {
            let _ = SequenceNumber::parse(&text);
        }

        #[test]
        fn positions_round_trip(entry in 0..(1u64 << ENTRY_BITS), record in 0..MAX_RECORDS_PER_ENTRY) {
            let position = Position::new(entry, record);
            prop_assert_eq!(Position::from_counter(position.counter()), position);
            prop_assert!(position.counter() <= MAX_COUNTER);
        }

        #[test]
        fn counter_order_is_position_order(
            first in (0..(1u64 << ENTRY_BITS), 0..MAX_RECORDS_PER_ENTRY),
            second in (0..(1u64 << ENTRY_BITS), 0..MAX_RECORDS_PER_ENTRY),
        ) {
            let first = Position::new(first.0, first.1);
            let second = Position::new(second.0, second.1);
            prop_assert_eq!(first.counter().cmp(&second.counter()), first.cmp(&second));
        }
    }
}
