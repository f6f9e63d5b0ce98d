//! The Raft machinery shared by every group on a node: shard groups and the metadata group.
//!
//! This layer owns the openraft wiring — [`Group`] (start, bootstrap, propose, read barriers,
//! leadership, membership changes, hibernation), the log store over the node's shared journal,
//! the state-machine adapter over an application [`Machine`], and the network adapter over one
//! node-wide [`RaftClient`] that speaks this crate's own typed messages ([`message`]). It is the
//! only crate that names openraft (an alpha, pinned exactly: an upgrade touches only this crate).
//!
//! It must not know what a group's commands mean (shards and the control plane define their
//! machines), how nodes are reached (the node's transports implement [`RaftClient`]), or any
//! wire format: protobuf conversion lives in the node's gRPC transport.

mod activity;
mod codec;
mod convert;
mod group;
mod log_store;
pub mod message;
mod network;
mod state_machine;
mod types;

pub use activity::AwakeSet;
pub use codec::record_command;
pub use group::Group;
pub use group::GroupError;
pub use group::GroupOptions;
pub use group::Membership;
pub use group::ProposeError;
pub use group::Proposed;
pub use network::PeerError;
pub use network::RaftClient;
pub use state_machine::Machine;
pub use types::Command;
pub use types::ReplicaId;
pub use types::ReplicaNode;
pub use types::Reply;
