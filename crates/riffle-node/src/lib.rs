//! A Riffle node: its metadata replica and shard replicas, the agent that makes the local
//! replicas match the control state, routing of every data operation to its shard's leader
//! (local or on another node), liveness of the other nodes, and hibernation of quiet groups.
//!
//! Node-to-node calls go through [`peer::PeerClient`]: gRPC in production ([`transport::grpc`]), an
//! in-process network that can drop, delay, partition and isolate in tests ([`transport::sim`]). This
//! layer does not speak the Kinesis wire protocol (that is `riffle-api`).

pub mod beacon;
pub mod follow;
pub mod node;
pub mod peer;
mod routing;
pub mod serve;
pub mod service;
#[cfg(test)]
mod testing;
pub mod transport;

pub use node::DataError;
pub use node::Node;
pub use node::NodeConfig;
pub use node::NodeError;
