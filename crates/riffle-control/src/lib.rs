//! The control plane: the metadata Raft group that owns the truth about nodes, streams, shards
//! and placement.
//!
//! Every control decision is a committed [`command::ControlCommand`]; [`command::apply`] is
//! pure, so it is unit-tested without Raft. This layer decides placement and drives stream
//! lifecycles; it never reads or writes records (that is the shard layer's job). Its calls fail
//! with a typed [`ControlError`]; only `apply`'s refusals carry a Kinesis error, the one AWS
//! would return, decided identically on every replica.

pub mod command;
pub mod error;
pub mod leases;
pub mod model;
pub mod placement;
pub mod plane;
pub mod reshard;
pub mod scheduler;

pub use command::ControlCommand;
pub use command::ControlReply;
pub use error::ControlError;
pub use model::ControlState;
pub use plane::ControlPlane;
