//! A Riffle node at run time: its metadata replica and shard replicas, and everything that keeps
//! them working together across the cluster.
//!
//! - [`node`]: the [`Node`] (configuration, shared state, start-up of the background tasks,
//!   shutdown).
//! - [`membership`]: start-up of the metadata replica, bootstrapping and joining a cluster.
//! - [`agent`]: the once-a-second work — local replicas follow the control state, stream and
//!   consumer lifecycles, the scheduler (on the metadata leader), leadership hand-over and
//!   replica moves (on shard leaders), retention.
//! - [`service`]: the typed shard service (append, seal, read, locate, follow).
//! - [`routing`]: every data operation runs on its shard's leader, wherever it is: routing
//!   takes it there, and `LocalShards` serves it when the leader is here (over the local
//!   replicas; the gRPC server and the simulated network call the same `LocalShards`).
//! - [`serve`]: the leader's side of a Follow stream, the control calls and Raft messages other
//!   nodes send; [`follow`]: the subscribing side of a Follow stream.
//! - [`liveness`]: pings and the UDP [`beacon`] tell which nodes are up; a leader's node going
//!   down makes the surviving voters campaign at once.
//! - [`hibernation`]: quiet, fully replicated groups stop ticking.
//! - [`error`]: the node's typed errors, each naming the Kinesis error type a client would see
//!   (the conversion to a client's error is `riffle-api`'s).
//! - [`peer`]: the typed [`peer::PeerClient`] one node uses to call another, with two
//!   transports: gRPC ([`transport::grpc`], the only user of riffle-proto: protobuf is
//!   converted at its edge) and an in-process network that can drop, delay, partition and
//!   isolate in tests ([`transport::sim`]).
//!
//! This layer does not speak the Kinesis wire protocol or decide what a request means (that is
//! `riffle-api`), does not decide placement (the control plane's scheduler does; the agent
//! carries it out), does not name openraft (`riffle-raft` does) and does not know the record
//! log's byte format (`riffle-shard` does: routing has it encode a batch once, from the typed
//! records the API hands over).

mod agent;
pub mod beacon;
pub mod error;
pub mod follow;
mod hibernation;
mod liveness;
mod membership;
pub mod node;
pub mod peer;
mod routing;
pub mod serve;
pub mod service;
#[cfg(test)]
mod testing;
pub mod transport;

pub use error::DataError;
pub use error::JoinError;
pub use error::NodeError;
pub use node::Node;
pub use node::NodeConfig;
pub use riffle_shard::batch::AppendRecord;
pub use riffle_shard::shard::ReadPage;
pub use riffle_shard::shard::ReadRecord;
