//! Shards: every shard replica is one riffle-raft group whose log is the shard's record log.
//!
//! This layer owns the shard state machine (which assigns sequence numbers by position and seals
//! closed shards), reads by log position, and the record-batch format. It does not decide
//! placement, route calls or talk to other nodes: the node tells it which replicas to run and
//! hands it records to append; the Raft machinery (and openraft) is `riffle-raft`'s.

pub mod batch;
pub mod shard;
