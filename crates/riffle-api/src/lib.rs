//! The Kinesis Data Streams API front end: the HTTP/1.1 + h2c listener, the JSON and CBOR
//! codecs that turn requests into protocol-neutral documents and back, the typed requests, and
//! the operations.
//!
//! This layer decodes, validates (with AWS's error types and messages) and maps errors; it holds
//! no stream state of its own. A request goes `http` (envelope, body) → `wire` (JSON or CBOR
//! into a document) → `request` (a validated, typed [`Request`] that names its IAM action and
//! resources) → `ops` (one handler module per operation family) → the node: control
//! operations become commands to the metadata group, data operations go to shard groups.
//! Their typed errors become the client's Kinesis error in one place, [`error`].

pub use riffle_types::eventstream;
pub mod error;
pub mod http;
pub mod ops;
pub mod request;
pub mod wire;

pub use error::ApiError;
pub use ops::Api;
pub use request::Operation;
pub use request::Request;
