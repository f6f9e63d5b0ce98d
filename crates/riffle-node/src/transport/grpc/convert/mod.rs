//! Conversions between the node's typed messages and the protobuf messages of
//! `proto/riffle/peer.proto`: the only place that knows both. Byte fields (entry payloads,
//! record batches, record data) are `Bytes` on both sides and are moved, never copied. Raft
//! messages are in [`raft`]; shard calls, control calls, pings, hibernation and joining here.

mod raft;

pub use raft::*;

use bytes::Bytes;
use riffle_control::ControlError;
use riffle_control::plane::Forwarded;
use riffle_proto::peer as pb;
use riffle_shard::shard::ReadPage;
use riffle_shard::shard::ReadRecord;
use riffle_types::CodedError;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use riffle_types::seqnum::Position;

use crate::error::JoinError;
use crate::peer::ControlAnswer;
use crate::peer::HibernateRequest;
use crate::peer::JoinRequest;
use crate::peer::LeaderOf;
use crate::peer::PingAnswer;
use crate::service::AppendRequest;
use crate::service::FollowRequest;
use crate::service::LocateRequest;
use crate::service::ReadRequest;
use crate::service::SealRequest;
use crate::service::ServeError;
use crate::service::Served;
use crate::service::ShardError;

/// A protobuf message that lacks something the typed message needs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct Malformed(pub String);

fn malformed(what: impl Into<String>) -> Malformed {
    Malformed(what.into())
}

// ------------------------------------------------------------------------------------------
// Errors and refusals
// ------------------------------------------------------------------------------------------

/// A Kinesis error received from another node.
pub fn kinesis_error_from_pb(error: pb::KinesisError) -> KinesisError {
    let code =
        ErrorCode::from_type_name(&error.code).unwrap_or(ErrorCode::InternalFailureException);
    KinesisError::new(code, error.message)
}

/// An error of this node's, sent to another node as its client would see it: the Kinesis
/// type it is reported as and its message (the caller passes it on unchanged).
pub fn error_to_pb(error: &impl CodedError) -> pb::KinesisError {
    pb::KinesisError {
        code: error.code().type_name().to_string(),
        message: error.to_string(),
    }
}

fn not_leader_to_pb(hint: Option<u64>) -> pb::NotLeader {
    pb::NotLeader {
        leader_node: hint.unwrap_or(0),
    }
}

fn not_leader_from_pb(not_leader: pb::NotLeader) -> ServeError {
    ServeError::NotLeader((not_leader.leader_node != 0).then_some(not_leader.leader_node))
}

/// A refusal as the optional `error` and `not_leader` fields of an answer carry it (only an
/// append's answer has a place for "closed": elsewhere it travels as an error).
fn refusal_to_pb(error: ServeError) -> (Option<pb::KinesisError>, Option<pb::NotLeader>) {
    match error {
        ServeError::NotLeader(hint) => (None, Some(not_leader_to_pb(hint))),
        ServeError::Failed(error) => (Some(error_to_pb(&error)), None),
        // Only appends are answered "closed"; elsewhere it would be an internal failure.
        ServeError::Closed => (
            Some(pb::KinesisError {
                code: ErrorCode::InternalFailureException.type_name().to_string(),
                message: "the shard is closed".to_string(),
            }),
            None,
        ),
    }
}

/// The refusal in an answer's `error` and `not_leader` fields, if any.
fn refusal_from_pb(
    error: Option<pb::KinesisError>,
    not_leader: Option<pb::NotLeader>,
) -> Option<ServeError> {
    if let Some(not_leader) = not_leader {
        return Some(not_leader_from_pb(not_leader));
    }
    error.map(|error| ShardError::Remote(kinesis_error_from_pb(error)).into())
}

// ------------------------------------------------------------------------------------------
// Shard calls
// ------------------------------------------------------------------------------------------

pub fn append_request_to_pb(request: AppendRequest) -> pb::AppendRequest {
    pb::AppendRequest {
        group: request.group,
        batch: request.batch,
        arrival_ms: request.arrival_ms,
        seal: false,
    }
}

pub fn seal_request_to_pb(request: SealRequest) -> pb::AppendRequest {
    pb::AppendRequest {
        group: request.group,
        batch: Bytes::new(),
        arrival_ms: request.now_ms,
        seal: true,
    }
}

/// An `Append` call: records to append, or (with `seal`) the shard to seal.
pub enum AppendCall {
    Records(AppendRequest),
    Seal(SealRequest),
}

pub fn append_call_from_pb(request: pb::AppendRequest) -> AppendCall {
    if request.seal {
        AppendCall::Seal(SealRequest {
            group: request.group,
            now_ms: request.arrival_ms,
        })
    } else {
        AppendCall::Records(AppendRequest {
            group: request.group,
            batch: request.batch,
            arrival_ms: request.arrival_ms,
        })
    }
}

pub fn append_response_to_pb(served: Served<u64>) -> pb::AppendResponse {
    use pb::append_response::Result as R;
    let result = match served {
        Ok(entry) => R::Entry(entry),
        Err(ServeError::Closed) => R::Closed(pb::Closed {}),
        Err(ServeError::NotLeader(hint)) => R::NotLeader(not_leader_to_pb(hint)),
        Err(ServeError::Failed(error)) => R::Error(error_to_pb(&error)),
    };
    pb::AppendResponse {
        result: Some(result),
    }
}

pub fn append_response_from_pb(response: pb::AppendResponse) -> Served<u64> {
    use pb::append_response::Result as R;
    match response.result {
        Some(R::Entry(entry)) => Ok(entry),
        Some(R::Closed(_)) => Err(ServeError::Closed),
        Some(R::NotLeader(not_leader)) => Err(not_leader_from_pb(not_leader)),
        Some(R::Error(error)) => Err(ShardError::Remote(kinesis_error_from_pb(error)).into()),
        None => Err(ShardError::EmptyAnswer.into()),
    }
}

pub fn read_request_to_pb(request: ReadRequest) -> pb::ReadRequest {
    pb::ReadRequest {
        group: request.group,
        entry: request.from.entry,
        record: request.from.record,
        max_records: request.max_records.min(u32::MAX as usize) as u32,
        max_bytes: request.max_bytes as u64,
    }
}

pub fn read_request_from_pb(request: pb::ReadRequest) -> ReadRequest {
    ReadRequest {
        group: request.group,
        from: Position {
            entry: request.entry,
            record: request.record,
        },
        max_records: request.max_records as usize,
        max_bytes: usize::try_from(request.max_bytes).unwrap_or(usize::MAX),
    }
}

/// A page as a read answer or a Follow message carries it.
pub fn page_to_pb(page: ReadPage) -> pb::ReadResponse {
    pb::ReadResponse {
        records: page
            .records
            .into_iter()
            .map(|record| pb::ReadRecord {
                entry: record.position.entry,
                record: record.position.record,
                arrival_ms: record.arrival_ms,
                partition_key: record.partition_key,
                data: record.data,
            })
            .collect(),
        next_entry: page.next.entry,
        next_record: page.next.record,
        end_of_shard: page.end_of_shard,
        tip: page.tip,
        error: None,
        not_leader: None,
    }
}

fn page_from_pb(response: pb::ReadResponse) -> ReadPage {
    ReadPage {
        records: response
            .records
            .into_iter()
            .map(|record| ReadRecord {
                position: Position {
                    entry: record.entry,
                    record: record.record,
                },
                arrival_ms: record.arrival_ms,
                partition_key: record.partition_key,
                data: record.data,
            })
            .collect(),
        next: Position {
            entry: response.next_entry,
            record: response.next_record,
        },
        end_of_shard: response.end_of_shard,
        tip: response.tip,
    }
}

pub fn read_response_to_pb(served: Served<ReadPage>) -> pb::ReadResponse {
    match served {
        Ok(page) => page_to_pb(page),
        Err(error) => {
            let (error, not_leader) = refusal_to_pb(error);
            pb::ReadResponse {
                error,
                not_leader,
                ..Default::default()
            }
        }
    }
}

pub fn read_response_from_pb(mut response: pb::ReadResponse) -> Served<ReadPage> {
    match refusal_from_pb(response.error.take(), response.not_leader.take()) {
        Some(refusal) => Err(refusal),
        None => Ok(page_from_pb(response)),
    }
}

pub fn locate_request_to_pb(request: LocateRequest) -> pb::LocateRequest {
    pb::LocateRequest {
        group: request.group,
        at_timestamp_ms: request.at_timestamp_ms,
    }
}

pub fn locate_request_from_pb(request: pb::LocateRequest) -> LocateRequest {
    LocateRequest {
        group: request.group,
        at_timestamp_ms: request.at_timestamp_ms,
    }
}

pub fn locate_response_to_pb(served: Served<Position>) -> pb::LocateResponse {
    match served {
        Ok(position) => pb::LocateResponse {
            entry: position.entry,
            record: position.record,
            ..Default::default()
        },
        Err(error) => {
            let (error, not_leader) = refusal_to_pb(error);
            pb::LocateResponse {
                error,
                not_leader,
                ..Default::default()
            }
        }
    }
}

pub fn locate_response_from_pb(response: pb::LocateResponse) -> Served<Position> {
    match refusal_from_pb(response.error, response.not_leader) {
        Some(refusal) => Err(refusal),
        None => Ok(Position {
            entry: response.entry,
            record: response.record,
        }),
    }
}

pub fn follow_request_to_pb(request: FollowRequest) -> pb::FollowRequest {
    pb::FollowRequest {
        group: request.group,
        entry: request.from.entry,
        record: request.from.record,
        max_bytes: request.max_bytes as u64,
        consumer: request.consumer,
        subscription: request.subscription,
        started_ms: request.started_ms,
        resume: request.resume,
    }
}

pub fn follow_request_from_pb(request: pb::FollowRequest) -> FollowRequest {
    FollowRequest {
        group: request.group,
        from: Position {
            entry: request.entry,
            record: request.record,
        },
        max_bytes: usize::try_from(request.max_bytes).unwrap_or(usize::MAX),
        consumer: request.consumer,
        subscription: request.subscription,
        started_ms: request.started_ms,
        resume: request.resume,
    }
}

/// The first message of an accepted Follow stream: no records, the position it starts from
/// and the leader's readable tip.
pub fn follow_accepted_to_pb(from: Position, tip: u64) -> pb::ReadResponse {
    pb::ReadResponse {
        next_entry: from.entry,
        next_record: from.record,
        tip,
        ..Default::default()
    }
}

// ------------------------------------------------------------------------------------------
// Control, liveness, hibernation, joining
// ------------------------------------------------------------------------------------------

/// A control call's refusal as the optional `error` and `not_leader` fields of its answer carry
/// it; `None` when it was done.
fn control_refusal_to_pb<T>(
    answer: &ControlAnswer<T>,
) -> (Option<pb::KinesisError>, Option<pb::NotLeader>) {
    match answer {
        Ok(Forwarded::Done(_)) => (None, None),
        Ok(Forwarded::NotLeader(hint)) => (None, Some(not_leader_to_pb(*hint))),
        Err(error) => (Some(error_to_pb(error)), None),
    }
}

/// The control call's answer from its `error` and `not_leader` fields, else `done`.
fn control_answer_from_pb<T>(
    error: Option<pb::KinesisError>,
    not_leader: Option<pb::NotLeader>,
    done: T,
) -> ControlAnswer<T> {
    if let Some(not_leader) = not_leader {
        let hint = not_leader.leader_node;
        return Ok(Forwarded::NotLeader((hint != 0).then_some(hint)));
    }
    match error {
        Some(error) => Err(ControlError::Remote(kinesis_error_from_pb(error))),
        None => Ok(Forwarded::Done(done)),
    }
}

pub fn propose_response_to_pb(answer: ControlAnswer<(Bytes, u64)>) -> pb::ProposeResponse {
    let (error, not_leader) = control_refusal_to_pb(&answer);
    match answer {
        Ok(Forwarded::Done((reply, index))) => pb::ProposeResponse {
            reply,
            index,
            ..Default::default()
        },
        _ => pb::ProposeResponse {
            error,
            not_leader,
            ..Default::default()
        },
    }
}

pub fn propose_response_from_pb(response: pb::ProposeResponse) -> ControlAnswer<(Bytes, u64)> {
    control_answer_from_pb(
        response.error,
        response.not_leader,
        (response.reply, response.index),
    )
}

pub fn read_index_response_to_pb(answer: ControlAnswer<u64>) -> pb::ReadIndexResponse {
    let (error, not_leader) = control_refusal_to_pb(&answer);
    match answer {
        Ok(Forwarded::Done(index)) => pb::ReadIndexResponse {
            index,
            ..Default::default()
        },
        _ => pb::ReadIndexResponse {
            error,
            not_leader,
            ..Default::default()
        },
    }
}

pub fn read_index_response_from_pb(response: pb::ReadIndexResponse) -> ControlAnswer<u64> {
    control_answer_from_pb(response.error, response.not_leader, response.index)
}

pub fn ping_answer_to_pb(answer: PingAnswer) -> pb::PingResponse {
    pb::PingResponse {
        node_id: answer.node_id,
        leading: answer
            .leading
            .into_iter()
            .map(|leader| pb::LeaderOf {
                group: leader.group,
                replica: leader.replica,
                write_bytes_per_sec: leader.write_bytes_per_sec,
                write_records_per_sec: leader.write_records_per_sec,
            })
            .collect(),
    }
}

pub fn ping_answer_from_pb(response: pb::PingResponse) -> PingAnswer {
    PingAnswer {
        node_id: response.node_id,
        leading: response
            .leading
            .into_iter()
            .map(|leader| LeaderOf {
                group: leader.group,
                replica: leader.replica,
                write_bytes_per_sec: leader.write_bytes_per_sec,
                write_records_per_sec: leader.write_records_per_sec,
            })
            .collect(),
    }
}

pub fn hibernate_request_to_pb(request: HibernateRequest) -> pb::HibernateRequest {
    pb::HibernateRequest {
        group: request.group,
        target: request.target,
        leader_vote: Some(vote_to_pb(request.leader_vote)),
    }
}

pub fn hibernate_request_from_pb(
    request: pb::HibernateRequest,
) -> Result<HibernateRequest, Malformed> {
    Ok(HibernateRequest {
        group: request.group,
        target: request.target,
        leader_vote: vote_from_pb(request.leader_vote)?,
    })
}

pub fn join_request_to_pb(request: JoinRequest) -> pb::JoinRequest {
    pb::JoinRequest {
        node_id: request.node_id,
        peer_addr: request.peer_addr,
        api_addr: request.api_addr,
        az: request.az,
    }
}

pub fn join_request_from_pb(request: pb::JoinRequest) -> JoinRequest {
    JoinRequest {
        node_id: request.node_id,
        peer_addr: request.peer_addr,
        api_addr: request.api_addr,
        az: request.az,
    }
}

pub fn join_response_to_pb(answer: Result<(), JoinError>) -> pb::JoinResponse {
    pb::JoinResponse {
        error: answer.err().map(|error| error_to_pb(&error)),
    }
}

pub fn join_response_from_pb(response: pb::JoinResponse) -> Result<(), JoinError> {
    match response.error {
        Some(error) => Err(JoinError::Remote(kinesis_error_from_pb(error))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> ReadPage {
        ReadPage {
            records: vec![ReadRecord {
                position: Position {
                    entry: 7,
                    record: 2,
                },
                arrival_ms: 1_000,
                partition_key: Bytes::from_static(b"key"),
                data: Bytes::from_static(b"data"),
            }],
            next: Position {
                entry: 7,
                record: 3,
            },
            end_of_shard: true,
            tip: 9,
        }
    }

    #[test]
    fn pages_round_trip_with_their_bytes() {
        let page = page();
        let data = page.records[0].data.clone();
        let sent = read_response_to_pb(Ok(page));
        assert_eq!(
            sent.records[0].data.as_ptr(),
            data.as_ptr(),
            "record data is moved, not copied"
        );
        let back = read_response_from_pb(sent).unwrap();
        let expected = super::tests::page();
        assert_eq!(back.records[0].position, expected.records[0].position);
        assert_eq!(
            back.records[0].partition_key,
            expected.records[0].partition_key
        );
        assert_eq!(back.records[0].data, expected.records[0].data);
        assert_eq!(back.records[0].arrival_ms, 1_000);
        assert_eq!(
            (back.next, back.end_of_shard, back.tip),
            (expected.next, true, 9)
        );
    }

    #[test]
    fn refusals_round_trip() {
        for (sent, expected) in [
            (ServeError::NotLeader(Some(3)), "NotLeader(Some(3))"),
            (ServeError::NotLeader(None), "NotLeader(None)"),
            (ServeError::Closed, "Closed"),
        ] {
            let back = append_response_from_pb(append_response_to_pb(Err(sent))).unwrap_err();
            assert_eq!(format!("{back:?}"), expected);
        }
        let failed = ServeError::Failed(ShardError::Remote(KinesisError::in_use("taken over")));
        match read_response_from_pb(read_response_to_pb(Err(failed))) {
            Err(ServeError::Failed(ShardError::Remote(error))) => {
                assert_eq!(error.code, ErrorCode::ResourceInUseException);
                assert_eq!(error.message, "taken over");
            }
            other => panic!("expected the error back, got {other:?}"),
        }
        match locate_response_from_pb(locate_response_to_pb(Err(ServeError::NotLeader(Some(2))))) {
            Err(ServeError::NotLeader(Some(2))) => {}
            other => panic!("expected a not-leader hint, got {other:?}"),
        }
        assert_eq!(
            append_response_from_pb(append_response_to_pb(Ok(41))).unwrap(),
            41
        );
    }

    /// What a shard leader refused arrives on the calling node, whatever the call, as the
    /// leader's client would have seen it: the same Kinesis type and message.
    #[test]
    fn a_leader_error_crosses_to_the_caller_with_its_type_and_message() {
        fn refusal() -> ServeError {
            ShardError::SubscriptionActive {
                consumer: "arn:c".into(),
                started_ago_ms: 1200,
            }
            .into()
        }
        let expected = KinesisError::in_use(
            "Another active subscription exists for this consumer: arn:c (started 1200 ms ago; a new one may take over after 5 seconds).",
        );
        let answers = [
            append_response_from_pb(append_response_to_pb(Err(refusal()))).map(|_| ()),
            read_response_from_pb(read_response_to_pb(Err(refusal()))).map(|_| ()),
            locate_response_from_pb(locate_response_to_pb(Err(refusal()))).map(|_| ()),
        ];
        for answer in answers {
            match answer {
                Err(ServeError::Failed(ShardError::Remote(error))) => assert_eq!(error, expected),
                other => panic!("expected the leader's error, got {other:?}"),
            }
        }
        let unknown = ShardError::GroupStopped {
            reason: "shut down".into(),
        };
        match append_response_from_pb(append_response_to_pb(Err(unknown.into()))) {
            Err(ServeError::Failed(ShardError::Remote(error))) => assert_eq!(
                error,
                KinesisError::internal(
                    "write outcome unknown: the shard group stopped (shut down)"
                )
            ),
            other => panic!("expected the leader's error, got {other:?}"),
        }
        // A control call's error and a join's refusal travel the same way.
        let not_caught_up = ControlError::NotCaughtUp { index: 9 };
        match propose_response_from_pb(propose_response_to_pb(Err(not_caught_up))) {
            Err(ControlError::Remote(error)) => {
                assert_eq!(
                    error,
                    KinesisError::unavailable(
                        "this node has not caught up with the metadata log (index 9)"
                    )
                );
            }
            other => panic!("expected the leader's error, got {other:?}"),
        }
        match join_response_from_pb(join_response_to_pb(Err(JoinError::InvalidNodeId))) {
            Err(JoinError::Remote(error)) => {
                assert_eq!(
                    error,
                    KinesisError::invalid_argument("node ids are positive")
                )
            }
            other => panic!("expected the refusal, got {other:?}"),
        }
    }

    #[test]
    fn appends_and_seals_share_one_call() {
        let batch = Bytes::from_static(b"batch");
        let sent = append_request_to_pb(AppendRequest {
            group: 5,
            batch: batch.clone(),
            arrival_ms: 10,
        });
        assert_eq!(sent.batch.as_ptr(), batch.as_ptr(), "the batch is moved");
        match append_call_from_pb(sent) {
            AppendCall::Records(request) => {
                assert_eq!((request.group, request.arrival_ms), (5, 10));
                assert_eq!(request.batch, batch);
            }
            AppendCall::Seal(_) => panic!("an append came back as a seal"),
        }
        match append_call_from_pb(seal_request_to_pb(SealRequest {
            group: 5,
            now_ms: 11,
        })) {
            AppendCall::Seal(request) => assert_eq!((request.group, request.now_ms), (5, 11)),
            AppendCall::Records(_) => panic!("a seal came back as an append"),
        }
    }

    #[test]
    fn follow_requests_and_control_answers_round_trip() {
        let request = FollowRequest {
            group: 3,
            from: Position {
                entry: 4,
                record: 1,
            },
            max_bytes: 1 << 20,
            consumer: "arn:consumer".into(),
            subscription: 77,
            started_ms: 123,
            resume: true,
        };
        let back = follow_request_from_pb(follow_request_to_pb(request.clone()));
        assert_eq!(back.from, request.from);
        assert_eq!(
            (
                back.group,
                back.max_bytes,
                back.subscription,
                back.started_ms,
                back.resume
            ),
            (3, 1 << 20, 77, 123, true)
        );
        assert_eq!(back.consumer, "arn:consumer");

        let reply = propose_response_from_pb(propose_response_to_pb(Ok(Forwarded::Done((
            Bytes::from_static(b"{}"),
            12,
        )))));
        assert_eq!(
            reply.unwrap(),
            Forwarded::Done((Bytes::from_static(b"{}"), 12))
        );
        match read_index_response_from_pb(read_index_response_to_pb(Ok(Forwarded::NotLeader(
            Some(1),
        )))) {
            Ok(Forwarded::NotLeader(Some(1))) => {}
            other => panic!("expected a not-leader hint, got {other:?}"),
        }
        let answer = PingAnswer {
            node_id: 2,
            leading: vec![LeaderOf {
                group: 8,
                replica: 81,
                write_bytes_per_sec: 100,
                write_records_per_sec: 10,
            }],
        };
        assert_eq!(
            ping_answer_from_pb(ping_answer_to_pb(answer.clone())),
            answer
        );
        let refused = join_response_from_pb(join_response_to_pb(Err(JoinError::InvalidNodeId)));
        assert_eq!(refused.unwrap_err().to_string(), "node ids are positive");
    }
}
