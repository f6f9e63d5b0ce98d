//! Replication: every shard is one openraft group whose log is the shard's record log, and the
//! metadata group runs on the same machinery.
//!
//! This layer owns the Raft groups hosted on a node, the shard state machine (which assigns
//! sequence numbers by position and seals closed shards) and the record-batch format. It does
//! not decide placement or talk HTTP: the control plane tells it which groups to run, the API
//! layer asks it to append and read.

pub mod batch;
pub mod consensus;
pub mod shard;
