//! The one table of Kinesis error types: every error Riffle returns to a client is a
//! [`KinesisError`] whose [`ErrorCode`] fixes the `__type` name, the HTTP status and whether SDKs
//! treat it as retryable.

use std::fmt;

/// Every Kinesis error type Riffle can return. The variant name is the wire `__type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A request member violates a model constraint (pattern, length, range, required).
    ValidationException,
    /// A well-formed argument that is invalid for the resource's current state.
    InvalidArgumentException,
    /// The stream, shard or consumer does not exist (or is not yet usable).
    ResourceNotFoundException,
    /// The resource exists but is in a state that forbids the operation.
    ResourceInUseException,
    /// A quota or per-API rate limit was exceeded; retryable.
    LimitExceededException,
    /// A shard's read or write throughput was exceeded; retryable.
    ProvisionedThroughputExceededException,
    /// The shard iterator is older than its five-minute lifetime.
    ExpiredIteratorException,
    /// The pagination token is older than its five-minute lifetime.
    ExpiredNextTokenException,
    /// The caller may not perform the operation.
    AccessDeniedException,
    /// The request body could not be decoded.
    SerializationException,
    /// The `X-Amz-Target` header names no Kinesis operation.
    UnknownOperationException,
    /// The request carried no SigV4 signature.
    MissingAuthenticationTokenException,
    /// The SigV4 `Authorization` header is incomplete.
    IncompleteSignatureException,
    /// The SigV4 signature does not match the request.
    InvalidSignatureException,
    /// The access key is not known.
    UnrecognizedClientException,
    /// Kinesis' modelled server fault (HTTP 500).
    InternalFailureException,
    /// The node cannot serve right now (no leader yet, shutting down); SDKs retry it (HTTP 503).
    ServiceUnavailable,
}

impl ErrorCode {
    /// The `__type` value clients match on.
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorCode::ValidationException => "ValidationException",
            ErrorCode::InvalidArgumentException => "InvalidArgumentException",
            ErrorCode::ResourceNotFoundException => "ResourceNotFoundException",
            ErrorCode::ResourceInUseException => "ResourceInUseException",
            ErrorCode::LimitExceededException => "LimitExceededException",
            ErrorCode::ProvisionedThroughputExceededException => {
                "ProvisionedThroughputExceededException"
            }
            ErrorCode::ExpiredIteratorException => "ExpiredIteratorException",
            ErrorCode::ExpiredNextTokenException => "ExpiredNextTokenException",
            ErrorCode::AccessDeniedException => "AccessDeniedException",
            ErrorCode::SerializationException => "SerializationException",
            ErrorCode::UnknownOperationException => "UnknownOperationException",
            ErrorCode::MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            ErrorCode::IncompleteSignatureException => "IncompleteSignatureException",
            ErrorCode::InvalidSignatureException => "InvalidSignatureException",
            ErrorCode::UnrecognizedClientException => "UnrecognizedClientException",
            ErrorCode::InternalFailureException => "InternalFailureException",
            ErrorCode::ServiceUnavailable => "ServiceUnavailable",
        }
    }

    /// Parses a `__type` name (as forwarded between nodes).
    pub fn from_type_name(name: &str) -> Option<ErrorCode> {
        ALL_CODES
            .iter()
            .copied()
            .find(|code| code.type_name() == name)
    }

    /// HTTP status of the response carrying this error.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InternalFailureException => 500,
            ErrorCode::ServiceUnavailable => 503,
            _ => 400,
        }
    }

    /// Whether AWS SDKs retry this error (throttling or server fault).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::LimitExceededException
                | ErrorCode::ProvisionedThroughputExceededException
                | ErrorCode::InternalFailureException
                | ErrorCode::ServiceUnavailable
        )
    }
}

/// Every code, for lookups and exhaustive tests.
pub const ALL_CODES: &[ErrorCode] = &[
    ErrorCode::ValidationException,
    ErrorCode::InvalidArgumentException,
    ErrorCode::ResourceNotFoundException,
    ErrorCode::ResourceInUseException,
    ErrorCode::LimitExceededException,
    ErrorCode::ProvisionedThroughputExceededException,
    ErrorCode::ExpiredIteratorException,
    ErrorCode::ExpiredNextTokenException,
    ErrorCode::AccessDeniedException,
    ErrorCode::SerializationException,
    ErrorCode::UnknownOperationException,
    ErrorCode::MissingAuthenticationTokenException,
    ErrorCode::IncompleteSignatureException,
    ErrorCode::InvalidSignatureException,
    ErrorCode::UnrecognizedClientException,
    ErrorCode::InternalFailureException,
    ErrorCode::ServiceUnavailable,
];

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// An error as the client sees it: a Kinesis error type and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KinesisError {
    /// The Kinesis error type.
    pub code: ErrorCode,
    /// Human-readable detail, phrased like AWS's where clients or tests match on it.
    pub message: String,
}

impl KinesisError {
    /// An error of any type.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        KinesisError {
            code,
            message: message.into(),
        }
    }

    /// A `ValidationException`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationException, message)
    }

    /// An `InvalidArgumentException`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgumentException, message)
    }

    /// A `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceNotFoundException, message)
    }

    /// A `ResourceInUseException`.
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceInUseException, message)
    }

    /// A `LimitExceededException`.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::LimitExceededException, message)
    }

    /// A `SerializationException`.
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SerializationException, message)
    }

    /// An `InternalFailureException` (HTTP 500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalFailureException, message)
    }

    /// A `ServiceUnavailable` (HTTP 503).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServiceUnavailable, message)
    }
}

/// An internal error that can reach a client. Each layer's error enum (the control plane's, the
/// node's) says here which Kinesis error type it is reported as; its `Display` is the message the
/// client reads. From those two, `riffle-api` builds the client's [`KinesisError`] (its `error`
/// module, the one place that does), and the node's gRPC edge builds the peer protocol's error
/// message, so a call served on another node reads exactly as one served here.
pub trait CodedError: std::error::Error {
    /// The Kinesis error type this error is reported as.
    fn code(&self) -> ErrorCode;
}

/// Collects model-constraint violations and renders them the way AWS does:
/// `2 validation errors detected: Value 'x' at 'streamName' failed to satisfy constraint: Member
/// must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value null at 'shardCount' ...`.
#[derive(Clone, Debug, Default)]
pub struct ValidationErrors {
    violations: Vec<String>,
}

impl ValidationErrors {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation. `value` is the offending value as AWS prints it (already quoted
    /// when it is a string, `null` when missing); `member` is the lowerCamel member path.
    pub fn push(&mut self, value: &str, member: &str, constraint: &str) {
        self.violations.push(format!(
            "Value {value} at '{member}' failed to satisfy constraint: {constraint}"
        ));
    }

    /// Whether no violation was recorded.
    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` when nothing was recorded, otherwise the ValidationException.
    pub fn into_result(self) -> Result<(), KinesisError> {
        if self.violations.is_empty() {
            return Ok(());
        }
        let count = self.violations.len();
        let noun = if count == 1 { "error" } else { "errors" };
        Err(KinesisError::validation(format!(
            "{count} validation {noun} detected: {}",
            self.violations.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for code in ALL_CODES {
            assert_eq!(ErrorCode::from_type_name(code.type_name()), Some(*code));
        }
        assert_eq!(ErrorCode::from_type_name("NoSuchThing"), None);
    }

    #[test]
    fn only_faults_are_5xx() {
        assert_eq!(ErrorCode::InternalFailureException.http_status(), 500);
        assert_eq!(ErrorCode::ServiceUnavailable.http_status(), 503);
        assert_eq!(ErrorCode::ResourceNotFoundException.http_status(), 400);
        assert_eq!(ErrorCode::ValidationException.http_status(), 400);
    }

    #[test]
    fn validation_messages_follow_aws() {
        let mut errors = ValidationErrors::new();
        errors.push("null", "streamName", "Member must not be null");
        let error = errors.into_result().unwrap_err();
        assert_eq!(error.code, ErrorCode::ValidationException);
        assert_eq!(
            error.message,
            "1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"
        );

        let mut errors = ValidationErrors::new();
        errors.push(
            "'a b'",
            "streamName",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        );
        errors.push(
            "0",
            "shardCount",
            "Member must have value greater than or equal to 1",
        );
        let message = errors.into_result().unwrap_err().message;
        assert!(message.starts_with("2 validation errors detected: Value 'a b' at 'streamName'"));
        assert!(message.contains("; Value 0 at 'shardCount'"));
    }
}
