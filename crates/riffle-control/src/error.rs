//! Why a control call (a proposal or a linearizable read of the metadata) did not answer.
//!
//! A command the state machine refuses is a [`ControlError::Rejected`] carrying the Kinesis
//! error `apply` decided (AWS's type and message, the same on every replica). Everything else is
//! about getting the call to the metadata leader and back; each variant says which Kinesis error
//! type a client sees ([`CodedError`]) and its `Display` is that error's message.

use riffle_raft::PeerError;
use riffle_raft::ProposeError;
use riffle_types::CodedError;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The metadata state machine refused the command: the client gets this error as it is.
    #[error("{}", .0.message)]
    Rejected(KinesisError),
    /// The metadata leader's node answered a forwarded call with this error (received over the
    /// gRPC transport as that node would have reported it): passed on unchanged.
    #[error("{}", .0.message)]
    Remote(KinesisError),
    /// No metadata leader answered before the proposal's deadline.
    #[error("the metadata group has no reachable leader")]
    NoLeader,
    /// The metadata leader is another node and there is no transport to reach it.
    #[error("the metadata leader is on another node and this node has no peers")]
    NoPeers,
    /// This node's replica did not apply the metadata log up to `index` in time.
    #[error("this node has not caught up with the metadata log (index {index})")]
    NotCaughtUp { index: u64 },
    /// The local replica could not propose or read (it does not lead, or the group stopped):
    /// nothing happened.
    #[error("metadata group: {0}")]
    Metadata(#[source] ProposeError),
    /// Leadership changed with the command in flight: it may or may not have been committed.
    #[error("the control command may or may not have taken effect (leadership changed): {reason}")]
    OutcomeUnknown { reason: String },
    /// The leader's node could not be reached, or gave no answer to a call that changes
    /// nothing (a read index): nothing happened.
    #[error("{0}")]
    Forward(#[source] PeerError),
    /// A command sent to the leader's node got no answer: it may or may not have been committed.
    #[error("outcome unknown: {0}")]
    ForwardOutcomeUnknown(#[source] PeerError),
    #[error("cannot encode {command}: {source}")]
    Encode {
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("undecodable reply to {command}: {source}")]
    Decode {
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The metadata group's machine could not decode the command or encode its reply.
    #[error("control command rejected: {reason}")]
    Unapplied { reason: String },
    #[error("control command produced no reply")]
    NoReply,
}

impl From<ProposeError> for ControlError {
    fn from(error: ProposeError) -> Self {
        match error {
            ProposeError::Ambiguous(reason) => ControlError::OutcomeUnknown { reason },
            error @ (ProposeError::NotLeader { .. } | ProposeError::Stopped(_)) => {
                ControlError::Metadata(error)
            }
        }
    }
}

impl CodedError for ControlError {
    fn code(&self) -> ErrorCode {
        match self {
            ControlError::Rejected(error) | ControlError::Remote(error) => error.code,
            ControlError::NoLeader
            | ControlError::NoPeers
            | ControlError::NotCaughtUp { .. }
            | ControlError::Metadata(_)
            | ControlError::Forward(_) => ErrorCode::ServiceUnavailable,
            ControlError::OutcomeUnknown { .. }
            | ControlError::ForwardOutcomeUnknown(_)
            | ControlError::Encode { .. }
            | ControlError::Decode { .. }
            | ControlError::Unapplied { .. }
            | ControlError::NoReply => ErrorCode::InternalFailureException,
        }
    }
}

impl ControlError {
    /// Nothing happened and trying again may work (no leader yet, a leader not reached): what
    /// a client is told with ServiceUnavailable.
    pub fn is_unavailable(&self) -> bool {
        self.code() == ErrorCode::ServiceUnavailable
    }
}

#[cfg(test)]
mod tests {
    use riffle_raft::ReplicaNode;

    use super::*;

    fn reported(error: &ControlError) -> (ErrorCode, String) {
        (error.code(), error.to_string())
    }

    #[test]
    fn a_replica_that_cannot_propose_is_unavailable_and_a_lost_proposal_is_unknown() {
        let not_leader = ControlError::from(ProposeError::NotLeader { leader: None });
        assert_eq!(
            reported(&not_leader),
            (
                ErrorCode::ServiceUnavailable,
                "metadata group: not the leader (leader: None)".to_string()
            )
        );
        assert!(not_leader.is_unavailable(), "the proposal is retried");
        let stopped = ControlError::from(ProposeError::Stopped("shut down".into()));
        assert_eq!(
            reported(&stopped),
            (
                ErrorCode::ServiceUnavailable,
                "metadata group: raft group stopped: shut down".to_string()
            )
        );
        let ambiguous = ControlError::from(ProposeError::Ambiguous("deposed".into()));
        assert_eq!(
            reported(&ambiguous),
            (
                ErrorCode::InternalFailureException,
                "the control command may or may not have taken effect (leadership changed): deposed"
                    .to_string()
            )
        );
        assert!(
            !ambiguous.is_unavailable(),
            "never retried: it may be committed"
        );
        let hinted = ControlError::from(ProposeError::NotLeader {
            leader: Some((
                2,
                ReplicaNode {
                    node: 2,
                    addr: "p2".into(),
                    az: String::new(),
                },
            )),
        });
        assert!(hinted.is_unavailable());
    }

    #[test]
    fn a_forwarded_command_without_an_answer_is_unknown_but_an_unreached_leader_is_not() {
        let unreachable = PeerError::Unreachable {
            node: 2,
            reason: "connection refused".into(),
        };
        let failed = PeerError::Failed {
            node: 2,
            reason: "deadline".into(),
        };
        assert_eq!(
            reported(&ControlError::Forward(unreachable)),
            (
                ErrorCode::ServiceUnavailable,
                "node 2 unreachable: connection refused".to_string()
            )
        );
        assert_eq!(
            reported(&ControlError::ForwardOutcomeUnknown(failed)),
            (
                ErrorCode::InternalFailureException,
                "outcome unknown: call to node 2 failed: deadline".to_string()
            )
        );
    }

    #[test]
    fn rejections_and_remote_errors_keep_their_type_and_message() {
        let rejected = ControlError::Rejected(KinesisError::in_use("Stream s is in use"));
        assert_eq!(
            reported(&rejected),
            (
                ErrorCode::ResourceInUseException,
                "Stream s is in use".to_string()
            )
        );
        let remote = ControlError::Remote(KinesisError::unavailable("metadata group: x"));
        assert_eq!(
            reported(&remote),
            (
                ErrorCode::ServiceUnavailable,
                "metadata group: x".to_string()
            )
        );
        assert!(
            remote.is_unavailable(),
            "a remote ServiceUnavailable is retried"
        );
    }
}
