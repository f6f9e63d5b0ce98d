//! Riffle's domain types, shared by every layer: names and ids, hash keys and ranges, sequence
//! numbers, shard iterators and page tokens, limits, and the Kinesis error-code table.
//!
//! This crate does no I/O and has no async code, so everything in it is unit- and
//! property-tested in isolation. It must not depend on any other Riffle crate.
//!
//! Callers pass the current time in (epoch milliseconds or seconds as named), so every
//! function here is deterministic.

pub mod arn;
pub mod error;
pub mod eventstream;
pub mod hash;
pub mod ids;
pub mod limits;
pub mod seqnum;
pub mod token;

pub use arn::{ConsumerArn, StreamArn};
pub use error::{CodedError, ErrorCode, KinesisError, ValidationErrors};
pub use hash::{HashKey, HashKeyError, HashKeyRange, SplitError};
pub use ids::{
    GroupId, STREAM_NAME_PATTERN, ShardId, is_valid_consumer_name, is_valid_stream_name,
};
pub use seqnum::{Position, RECORD_BITS, SeqNumError, SequenceNumber};
pub use token::{PageToken, ShardIterator, TokenError, TokenKey};
