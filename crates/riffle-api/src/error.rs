//! The one place where Riffle's internal errors become the Kinesis error a client reads.
//!
//! Handlers return [`ApiError`]: the API's own decisions (validation, not-found and the like,
//! with AWS's types and messages) are [`KinesisError`]s already; the control plane's and the
//! node's errors arrive typed and are converted here, once, when the request is answered
//! ([`Api::execute`](crate::Api::execute)). Each of those says which Kinesis type it is reported
//! as ([`CodedError`]) and its `Display` is the message; an error forwarded from another node or
//! decided by the metadata state machine is passed on unchanged.

use riffle_control::ControlError;
use riffle_types::CodedError;
use riffle_types::KinesisError;

/// Why a request failed, before it is reported to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Decided by the API (AWS's error type and message).
    #[error(transparent)]
    Kinesis(#[from] KinesisError),
    /// A control command or a read of the metadata failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A pagination token could not be encoded.
    #[error("{0}")]
    Token(#[source] serde_json::Error),
}

impl From<ApiError> for KinesisError {
    fn from(error: ApiError) -> KinesisError {
        match error {
            ApiError::Kinesis(error) => error,
            ApiError::Control(ControlError::Rejected(error) | ControlError::Remote(error)) => error,
            ApiError::Control(error) => reported(&error),
            ApiError::Token(error) => KinesisError::internal(error.to_string()),
        }
    }
}

/// An internal error as the client reads it.
fn reported(error: &impl CodedError) -> KinesisError {
    KinesisError::new(error.code(), error.to_string())
}
