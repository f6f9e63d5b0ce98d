//! `riffle-client`: the one Kinesis client of Riffle's own tools (the consumer library, chaos,
//! the benchmark, `riffle cluster status`).
//!
//! It owns the client side of the wire: AWS JSON 1.1 over HTTP/1.1 keep-alive connections
//! (hyper), typed requests and answers for the operations those tools call ([`ops`]), the
//! SubscribeToShard event stream, Riffle's lease operations and admin paths ([`status`]),
//! several endpoints with failover ([`Spread`]), and errors that say what is known about a
//! failed call's effect ([`Error`]): a request that never left is tried on the next endpoint; a
//! request that may have reached a node is never resent, and its failure is ambiguous, apart
//! from a definite rejection. The [`Kinesis`] trait lets code written against the client run
//! against a test's in-process API as well.
//!
//! It must not depend on any server crate (only `riffle-types`): it talks to a cluster exactly
//! as any other client does.

mod client;
mod endpoints;
mod error;
pub mod ops;
pub mod status;

pub use client::Client;
pub use client::ClientBuilder;
pub use client::Encoded;
pub use client::Kinesis;
pub use client::Operation;
pub use endpoints::Spread;
pub use error::Error;
pub use error::NoAnswerKind;
pub use error::ServiceError;
pub use ops::StartingPosition;
