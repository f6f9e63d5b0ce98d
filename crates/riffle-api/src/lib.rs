//! The Kinesis Data Streams API front end: the HTTP/1.1 + h2c listener, the JSON and CBOR
//! codecs that turn requests into protocol-neutral documents and back, and the operations.
//!
//! This layer decodes, validates (with AWS's error types and messages) and maps errors; it holds
//! no stream state of its own. Control operations become commands to the metadata group; data
//! operations go to shard groups through the node.

pub use riffle_types::eventstream;
pub mod http;
pub mod ops;
pub mod wire;

pub use ops::Api;
pub use ops::Operation;
