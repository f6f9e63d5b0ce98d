//! How this node reaches the others: [`grpc`] in production (the only user of riffle-proto),
//! [`sim`] in tests (in-process, with faults). Both implement [`crate::peer::PeerClient`] and
//! hand incoming calls to the same serving code.

pub mod grpc;
pub mod sim;
