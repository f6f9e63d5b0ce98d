//! The node-to-node protocol (`proto/riffle/peer.proto`), compiled by tonic and prost.
//!
//! Only generated code lives here. Conversions between these messages and Riffle's domain or
//! openraft types live next to the code that uses them, so domain crates never see prost types.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod peer {
    tonic::include_proto!("riffle.peer");
}
