//! Why a call did not succeed, sorted by what the caller can know about its effect: a writer
//! that retries must tell "not carried out" from "may have been carried out", or it cannot
//! reason about duplicates (and the chaos checker cannot judge a history).

use std::fmt;

use riffle_types::ErrorCode;

/// An error document from the service: `{"__type": ..., "message": ...}` and the HTTP status
/// it came with (or, for an exception event of a subscription, the status its type maps to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The bare `__type` (`ResourceInUseException`), without any `namespace#` prefix.
    pub code: String,
    pub message: String,
    pub status: u16,
}

impl ServiceError {
    /// Reads an error body; a body that is not an error document still yields a code
    /// (`HTTP 502`), so that a proxy's page is not mistaken for success.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> ServiceError {
        let document: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let code = document["__type"]
            .as_str()
            .map(|kind| {
                // Clients strip a `namespace#` prefix and a `:reason` suffix.
                let kind = kind.rsplit('#').next().unwrap_or(kind);
                kind.split(':').next().unwrap_or(kind).to_string()
            })
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = document["message"]
            .as_str()
            .or_else(|| document["Message"].as_str())
            .unwrap_or_default()
            .to_string();
        ServiceError {
            code,
            message,
            status,
        }
    }

    /// The status an error type is answered with (for exception events, which carry none).
    pub(crate) fn from_exception(code: &str, message: String) -> ServiceError {
        let status = ErrorCode::from_type_name(code).map_or(400, ErrorCode::http_status);
        ServiceError {
            code: code.to_string(),
            message,
            status,
        }
    }
}

/// How a call that reached no verdict failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAnswerKind {
    /// No complete answer within the call's timeout.
    Timeout,
    /// The connection broke after the request may have been written.
    Connection,
    /// The answer's body broke off or could not be decoded.
    Body,
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The service refused the call (a 4xx error document): nothing was carried out.
    Rejected(ServiceError),
    /// The service failed (a 5xx error document): the call may or may not have been carried out.
    Failed(ServiceError),
    /// The request reached no node: every endpoint tried refused the connection or could not
    /// be connected to. Nothing was carried out.
    NotSent(String),
    /// The request may have reached a node but no usable answer came back.
    NoAnswer { kind: NoAnswerKind, detail: String },
    /// The request could not be built (an invalid endpoint URL, an unencodable input).
    Request(String),
}

impl Error {
    /// The service's error document, if it sent one.
    pub fn service(&self) -> Option<&ServiceError> {
        match self {
            Error::Rejected(error) | Error::Failed(error) => Some(error),
            _ => None,
        }
    }

    /// The service's error type (`ResourceNotFoundException`), if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.service().map(|error| error.code.as_str())
    }

    /// Whether the service answered with this error type.
    pub fn is(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// The call may have been carried out although it failed: a write may be stored (once).
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Error::Failed(_) | Error::NoAnswer { .. })
    }

    /// The call was certainly not carried out: a write is not stored.
    pub fn is_definite(&self) -> bool {
        !self.is_ambiguous()
    }

    /// Whether trying again later may succeed: throttling, a server fault, no answer, no node.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Rejected(error) | Error::Failed(error) => ErrorCode::from_type_name(&error.code)
                .map_or(error.status >= 500, |code| code.is_retryable()),
            Error::NotSent(_) | Error::NoAnswer { .. } => true,
            Error::Request(_) => false,
        }
    }

    /// A short label for reports: the error type, `timeout`, `connection`, `body`,
    /// `unreachable` or `request`.
    pub fn label(&self) -> String {
        match self {
            Error::Rejected(error) | Error::Failed(error) => error.code.clone(),
            Error::NotSent(_) => "unreachable".to_string(),
            Error::NoAnswer { kind, .. } => match kind {
                NoAnswerKind::Timeout => "timeout",
                NoAnswerKind::Connection => "connection",
                NoAnswerKind::Body => "body",
            }
            .to_string(),
            Error::Request(_) => "request".to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected(error) | Error::Failed(error) => {
                write!(f, "{}: {}", error.code, error.message)
            }
            Error::NotSent(reason) => write!(f, "not sent: {reason}"),
            Error::NoAnswer { kind, detail } => write!(f, "no answer ({kind:?}): {detail}"),
            Error::Request(reason) => write!(f, "invalid request: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_read_as_clients_read_them() {
        let error = ServiceError::from_body(
            400,
            br#"{"__type":"com.amazonaws#ResourceNotFoundException:x","Message":"gone"}"#,
        );
        assert_eq!(error.code, "ResourceNotFoundException");
        assert_eq!(error.message, "gone");
        let proxy = ServiceError::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(proxy.code, "HTTP 502");
    }

    #[test]
    fn outcomes_tell_rejections_from_ambiguous_failures() {
        let rejected = Error::Rejected(ServiceError::from_body(
            400,
            br#"{"__type":"ProvisionedThroughputExceededException","message":"slow down"}"#,
        ));
        assert!(rejected.is_definite() && rejected.is_retryable());
        assert!(rejected.is("ProvisionedThroughputExceededException"));
        let failed = Error::Failed(ServiceError::from_body(
            500,
            br#"{"__type":"InternalFailureException","message":"oops"}"#,
        ));
        assert!(failed.is_ambiguous() && failed.is_retryable());
        let not_sent = Error::NotSent("connection refused".into());
        assert!(not_sent.is_definite());
        assert_eq!(not_sent.label(), "unreachable");
        let timeout = Error::NoAnswer {
            kind: NoAnswerKind::Timeout,
            detail: String::new(),
        };
        assert!(timeout.is_ambiguous());
        assert_eq!(timeout.label(), "timeout");
        let invalid = Error::Rejected(ServiceError::from_body(
            400,
            br#"{"__type":"ValidationException","message":"no"}"#,
        ));
        assert!(!invalid.is_retryable());
    }
}
