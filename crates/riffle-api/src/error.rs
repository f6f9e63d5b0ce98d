//! The one place where Riffle's internal errors become the Kinesis error a client reads.
//!
//! Handlers return [`ApiError`]: the API's own decisions (validation, not-found and the like,
//! with AWS's types and messages) are [`KinesisError`]s already; the control plane's
//! ([`ControlError`]) and the node's ([`DataError`]) arrive typed and are converted here, once,
//! when the request is answered ([`Api::execute`](crate::Api::execute), or `to_client` for an
//! error reported inside an answer: a PutRecords entry, a SubscribeToShard exception event).
//! Each of those says which Kinesis type it is reported as ([`CodedError`]) and its `Display` is
//! the message; an error decided by the metadata state machine or forwarded from another node is
//! passed on unchanged.

use riffle_control::ControlError;
use riffle_node::DataError;
use riffle_node::service::ShardError;
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
    /// A shard call (append, read, locate, follow) failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A pagination token could not be encoded.
    #[error("{0}")]
    Token(#[source] serde_json::Error),
}

impl From<ApiError> for KinesisError {
    fn from(error: ApiError) -> KinesisError {
        match error {
            ApiError::Kinesis(error) => error,
            ApiError::Control(ControlError::Rejected(error) | ControlError::Remote(error)) => error,
            ApiError::Data(DataError::Failed(ShardError::Remote(error))) => error,
            ApiError::Control(error) => reported(&error),
            ApiError::Data(error) => reported(&error),
            ApiError::Token(error) => KinesisError::internal(error.to_string()),
        }
    }
}

/// An error as the client reads it.
pub(crate) fn to_client(error: impl Into<ApiError>) -> KinesisError {
    KinesisError::from(error.into())
}

/// An internal error as the client reads it.
fn reported(error: &impl CodedError) -> KinesisError {
    KinesisError::new(error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use riffle_node::error::NoAnswer;
    use riffle_node::peer::PeerError;
    use riffle_types::ErrorCode;
    use riffle_types::ShardId;

    use super::*;

    /// What the client reads: the `__type`, the HTTP status and the message.
    fn seen(error: impl Into<ApiError>) -> (&'static str, u16, String) {
        let error = to_client(error);
        (
            error.code.type_name(),
            error.code.http_status(),
            error.message,
        )
    }

    #[test]
    fn an_append_whose_outcome_is_unknown_is_an_internal_failure() {
        let unanswered = DataError::OutcomeUnknown(NoAnswer::Transport(PeerError::Failed {
            node: 2,
            reason: "deadline has elapsed".into(),
        }));
        assert_eq!(
            seen(unanswered),
            (
                "InternalFailureException",
                500,
                "write outcome unknown: call to node 2 failed: deadline has elapsed".to_string()
            )
        );
        let deposed = DataError::Failed(ShardError::LeaderChanged {
            reason: "a vote was granted".into(),
        });
        assert_eq!(
            seen(deposed),
            (
                "InternalFailureException",
                500,
                "write outcome unknown after a leader change: a vote was granted".to_string()
            )
        );
        let lost = ControlError::OutcomeUnknown {
            reason: "deposed".into(),
        };
        assert_eq!(
            seen(lost),
            (
                "InternalFailureException",
                500,
                "the control command may or may not have taken effect (leadership changed): deposed"
                    .to_string()
            )
        );
    }

    #[test]
    fn nothing_happened_is_service_unavailable() {
        assert_eq!(
            seen(DataError::NoLeader { shard: ShardId(1) }),
            (
                "ServiceUnavailable",
                503,
                "shard shardId-000000000001 has no reachable leader".to_string()
            )
        );
        assert_eq!(
            seen(ControlError::NoLeader),
            (
                "ServiceUnavailable",
                503,
                "the metadata group has no reachable leader".to_string()
            )
        );
    }

    #[test]
    fn rejections_and_errors_from_other_nodes_reach_the_client_unchanged() {
        let refused =
            KinesisError::in_use("Another subscription for consumer arn:c took over this shard.");
        let forwarded = DataError::Failed(ShardError::Remote(refused.clone()));
        assert_eq!(to_client(forwarded), refused);
        let taken_over = DataError::Failed(ShardError::TakenOver {
            consumer: "arn:c".into(),
        });
        assert_eq!(
            to_client(taken_over),
            refused,
            "decided on this node: the same"
        );
        let rejected = KinesisError::not_found("Stream s under account 1 not found.");
        assert_eq!(
            to_client(ControlError::Rejected(rejected.clone())),
            rejected
        );
        let remote = KinesisError::unavailable("metadata group: raft group stopped: x");
        assert_eq!(to_client(ControlError::Remote(remote.clone())), remote);
        let decided = KinesisError::new(ErrorCode::ExpiredIteratorException, "expired");
        assert_eq!(to_client(decided.clone()), decided);
    }
}
