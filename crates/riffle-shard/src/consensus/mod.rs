//! The only module that names openraft. Everything above it sees [`Group`], [`Machine`],
//! [`Command`] and [`Reply`]; an openraft upgrade (it is an alpha, pinned exactly) touches
//! only this directory.

mod codec;
mod group;
mod log_store;
mod network;
mod state_machine;
mod types;
mod wire;

pub use codec::record_command;
pub use group::AwakeSet;
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
