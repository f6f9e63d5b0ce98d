//! The node's errors: why it did not start ([`NodeError`]), why a join was refused
//! ([`JoinError`]), why a shard's leader did not serve a call ([`ServeError`], [`ShardError`]) and
//! why a routed data call failed ([`DataError`]).
//!
//! Those that can reach a client say which Kinesis error type they are reported as
//! ([`CodedError`]); their `Display` is the message the client reads. They become a client's
//! `KinesisError` only in `riffle-api` (its `error` module). Between nodes they travel as the
//! peer protocol's `KinesisError { code, message }`, converted at the gRPC edge
//! (`transport::grpc::convert`), and arrive as a `Remote` variant holding both unchanged: an
//! error forwarded from the leader reaches the client as the leader reported it.

use riffle_control::ControlError;
use riffle_raft::PeerError;
use riffle_raft::ProposeError;
use riffle_shard::shard::AppendError;
use riffle_shard::shard::ReadError;
use riffle_storage::StorageError;
use riffle_types::CodedError;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use riffle_types::ShardId;

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    #[error("raft group failed: {0}")]
    Group(#[from] riffle_raft::GroupError),
    #[error("control plane: {0}")]
    Control(#[from] ControlError),
    /// The node asked to let this one in refused for good.
    #[error("control plane: {0}")]
    Join(#[source] JoinError),
    #[error("joining needs a peer transport")]
    NoPeerTransport,
    #[error("the node is stopping")]
    Stopping,
}

/// Why a node was not let in (answered to the joining node, which retries while it is
/// [`ErrorCode::ServiceUnavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("this node has not started yet")]
    NotStarted,
    #[error("no metadata leader known")]
    NoLeader,
    /// The metadata leader's node, to which the request was forwarded, did not answer.
    #[error("{0}")]
    Forward(#[source] PeerError),
    #[error("node ids are positive")]
    InvalidNodeId,
    /// Registering the node in the metadata failed.
    #[error(transparent)]
    Register(#[from] ControlError),
    #[error("cannot add the learner: {0}")]
    AddLearner(#[source] ProposeError),
    /// The node asked answered with this error (received over the gRPC transport).
    #[error("{}", .0.message)]
    Remote(KinesisError),
}

impl CodedError for JoinError {
    fn code(&self) -> ErrorCode {
        match self {
            JoinError::NotStarted
            | JoinError::NoLeader
            | JoinError::Forward(_)
            | JoinError::AddLearner(_) => ErrorCode::ServiceUnavailable,
            JoinError::InvalidNodeId => ErrorCode::InvalidArgumentException,
            JoinError::Register(error) => error.code(),
            JoinError::Remote(error) => error.code,
        }
    }
}

/// Why the node asked did not serve a shard call.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// It does not lead the group; the leader's node, when it knows it.
    #[error("not the shard's leader (leader's node: {0:?})")]
    NotLeader(Option<u64>),
    /// The shard is sealed: nothing was written (appends only).
    #[error("the shard is closed")]
    Closed,
    /// The leader failed the call.
    #[error(transparent)]
    Failed(#[from] ShardError),
}

impl From<AppendError> for ServeError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Closed => ServeError::Closed,
            AppendError::Propose(ProposeError::NotLeader { leader }) => {
                ServeError::NotLeader(leader.map(|(_, node)| node.node))
            }
            // The group stopped (its node shuts down) possibly after the entry was appended and
            // replicated: the new leader may commit it. Routing the write elsewhere could store
            // it twice (seen as a reordered record in sim_cluster crash_and_restart), so the
            // outcome is reported unknown and the client decides.
            AppendError::Propose(ProposeError::Stopped(reason)) => {
                ShardError::GroupStopped { reason }.into()
            }
            AppendError::Propose(ProposeError::Ambiguous(reason)) => {
                ShardError::LeaderChanged { reason }.into()
            }
            AppendError::Unexpected(reason) => ShardError::UnexpectedReply { reason }.into(),
        }
    }
}

/// Why a shard's leader failed a call it served.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The group stopped with the append in flight: it may or may not be committed.
    #[error("write outcome unknown: the shard group stopped ({reason})")]
    GroupStopped { reason: String },
    /// Leadership changed with the append in flight: it may or may not be committed.
    #[error("write outcome unknown after a leader change: {reason}")]
    LeaderChanged { reason: String },
    /// The shard's state machine answered something an append or seal never gets.
    #[error("{reason}")]
    UnexpectedReply { reason: String },
    #[error("cannot read shard: {0}")]
    Read(#[source] ReadError),
    #[error("read task failed: {0}")]
    ReadTask(#[source] tokio::task::JoinError),
    #[error("cannot locate: {0}")]
    Locate(#[source] ReadError),
    /// A later subscription for the same consumer and shard took over (AWS's rule).
    #[error("Another subscription for consumer {consumer} took over this shard.")]
    TakenOver { consumer: String },
    /// The consumer's subscription to the shard started less than 5 seconds ago.
    #[error(
        "Another active subscription exists for this consumer: {consumer} (started {started_ago_ms} ms ago; a new one may take over after 5 seconds)."
    )]
    SubscriptionActive {
        consumer: String,
        started_ago_ms: u64,
    },
    #[error("subscription registry poisoned")]
    RegistryPoisoned,
    /// The leader's node sent an append answer without a result.
    #[error("empty append response")]
    EmptyAnswer,
    /// The leader's node reported this error (received over the gRPC transport): passed on
    /// unchanged.
    #[error("{}", .0.message)]
    Remote(KinesisError),
}

impl CodedError for ShardError {
    fn code(&self) -> ErrorCode {
        match self {
            ShardError::TakenOver { .. } | ShardError::SubscriptionActive { .. } => {
                ErrorCode::ResourceInUseException
            }
            ShardError::Remote(error) => error.code,
            ShardError::GroupStopped { .. }
            | ShardError::LeaderChanged { .. }
            | ShardError::UnexpectedReply { .. }
            | ShardError::Read(_)
            | ShardError::ReadTask(_)
            | ShardError::Locate(_)
            | ShardError::RegistryPoisoned
            | ShardError::EmptyAnswer => ErrorCode::InternalFailureException,
        }
    }
}

/// Why a call sent to a shard leader's node got no answer.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    /// The call was sent and the transport gave up waiting.
    #[error(transparent)]
    Transport(PeerError),
    /// Liveness called the node down while the call was in flight.
    #[error("node {node} stopped answering")]
    Down { node: u64 },
}

/// Why a data operation on a shard (routed to its leader) did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The shard is sealed: nothing was written; the records belong to a child shard. Only
    /// appends and seals are answered so.
    #[error("the shard closed during the call")]
    Closed,
    /// No replica answered as the shard's leader before routing's deadline (an election may be
    /// running): nothing happened.
    #[error("shard {shard} has no reachable leader")]
    NoLeader { shard: ShardId },
    /// A write was sent to the leader's node, which gave no answer: it may have been written,
    /// so it is not retried elsewhere (the client decides).
    #[error("write outcome unknown: {0}")]
    OutcomeUnknown(#[source] NoAnswer),
    /// The leader failed the call.
    #[error(transparent)]
    Failed(#[from] ShardError),
}

impl CodedError for DataError {
    fn code(&self) -> ErrorCode {
        match self {
            DataError::NoLeader { .. } => ErrorCode::ServiceUnavailable,
            DataError::Closed | DataError::OutcomeUnknown(_) => ErrorCode::InternalFailureException,
            DataError::Failed(error) => error.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(error: &impl CodedError) -> (ErrorCode, String) {
        (error.code(), error.to_string())
    }

    #[test]
    fn an_append_whose_outcome_is_unknown_is_an_internal_failure() {
        let unanswered = DataError::OutcomeUnknown(NoAnswer::Transport(PeerError::Failed {
            node: 2,
            reason: "deadline has elapsed".into(),
        }));
        assert_eq!(
            reported(&unanswered),
            (
                ErrorCode::InternalFailureException,
                "write outcome unknown: call to node 2 failed: deadline has elapsed".to_string()
            )
        );
        assert_eq!(
            reported(&DataError::OutcomeUnknown(NoAnswer::Down { node: 3 })),
            (
                ErrorCode::InternalFailureException,
                "write outcome unknown: node 3 stopped answering".to_string()
            )
        );
        let stopped = ServeError::from(AppendError::Propose(ProposeError::Stopped(
            "shut down".into(),
        )));
        let ServeError::Failed(stopped) = stopped else {
            panic!("a stopped group fails the append, got {stopped:?}");
        };
        assert_eq!(
            reported(&DataError::from(stopped)),
            (
                ErrorCode::InternalFailureException,
                "write outcome unknown: the shard group stopped (shut down)".to_string()
            )
        );
        let deposed = ServeError::from(AppendError::Propose(ProposeError::Ambiguous(
            "deposed".into(),
        )));
        let ServeError::Failed(deposed) = deposed else {
            panic!("a deposed leader fails the append, got {deposed:?}");
        };
        assert_eq!(
            reported(&deposed),
            (
                ErrorCode::InternalFailureException,
                "write outcome unknown after a leader change: deposed".to_string()
            )
        );
    }

    #[test]
    fn a_sealed_shard_or_a_not_leader_answer_is_no_failure() {
        assert!(matches!(
            ServeError::from(AppendError::Closed),
            ServeError::Closed
        ));
        assert!(matches!(
            ServeError::from(AppendError::Propose(ProposeError::NotLeader {
                leader: None
            })),
            ServeError::NotLeader(None)
        ));
    }

    #[test]
    fn a_shard_without_a_reachable_leader_is_unavailable() {
        assert_eq!(
            reported(&DataError::NoLeader { shard: ShardId(3) }),
            (
                ErrorCode::ServiceUnavailable,
                "shard shardId-000000000003 has no reachable leader".to_string()
            )
        );
    }

    #[test]
    fn a_refused_subscription_is_resource_in_use_with_aws_message() {
        let active = ShardError::SubscriptionActive {
            consumer: "arn:c".into(),
            started_ago_ms: 1200,
        };
        assert_eq!(
            reported(&active),
            (
                ErrorCode::ResourceInUseException,
                "Another active subscription exists for this consumer: arn:c (started 1200 ms ago; a new one may take over after 5 seconds)."
                    .to_string()
            )
        );
        assert_eq!(
            reported(&ShardError::TakenOver {
                consumer: "arn:c".into()
            }),
            (
                ErrorCode::ResourceInUseException,
                "Another subscription for consumer arn:c took over this shard.".to_string()
            )
        );
    }

    #[test]
    fn a_remote_error_keeps_its_type_and_message() {
        let remote = DataError::Failed(ShardError::Remote(KinesisError::in_use("taken")));
        assert_eq!(
            reported(&remote),
            (ErrorCode::ResourceInUseException, "taken".to_string())
        );
    }
}
