//! Conversions between openraft's messages and the node-to-node protobuf messages
//! (`riffle_proto::peer`). Entries travel exactly as they are stored (kind, tag, payload), so a
//! follower appends the bytes the leader appended.

use std::io;

use bytes::Bytes;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use riffle_proto::peer as pb;
use riffle_storage::LogRecord;

use super::codec;
use super::types::Entry;
use super::types::LogId;
use super::types::ReplicaId;
use super::types::StoredMembership;
use super::types::TypeConfig;
use super::types::Vote;

pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    let leader_id = vote.leader_id();
    pb::Vote {
        term: leader_id.term,
        voted_for: leader_id.voted_for,
        committed: vote.is_committed(),
    }
}

pub fn vote_from_pb(vote: Option<pb::Vote>) -> io::Result<Vote> {
    let vote = vote.ok_or_else(|| codec::invalid_data("message without a vote"))?;
    Ok(if vote.committed {
        Vote::new_committed(vote.term, vote.voted_for)
    } else {
        Vote::new(vote.term, vote.voted_for)
    })
}

pub fn log_id_to_pb(log_id: &LogId) -> pb::LogId {
    pb::LogId {
        term: log_id.leader_id.term,
        index: log_id.index,
    }
}

pub fn log_id_from_pb(log_id: pb::LogId) -> LogId {
    codec::log_id(log_id.term, log_id.index)
}

fn entry_to_pb(entry: &Entry) -> io::Result<pb::Entry> {
    // The follower recomputes the stored tag from its own previous entry (identical logs give
    // identical tags), so the proposer's tag is what travels.
    let record = codec::entry_to_record(entry, 0)?;
    Ok(pb::Entry {
        term: record.term,
        index: record.index,
        kind: u32::from(record.kind),
        tag: record.tag,
        payload: record.payload,
    })
}

fn entry_from_pb(entry: pb::Entry) -> io::Result<Entry> {
    let kind =
        u8::try_from(entry.kind).map_err(|_| codec::invalid_data("entry kind out of range"))?;
    codec::record_to_entry(&LogRecord {
        index: entry.index,
        term: entry.term,
        kind,
        tag: entry.tag,
        payload: entry.payload,
    })
}

pub fn append_request_to_pb(
    group: u64,
    target: ReplicaId,
    request: &AppendEntriesRequest<TypeConfig>,
) -> io::Result<pb::AppendEntriesRequest> {
    Ok(pb::AppendEntriesRequest {
        group,
        target,
        vote: Some(vote_to_pb(&request.vote)),
        prev_log_id: request.prev_log_id.as_ref().map(log_id_to_pb),
        entries: request
            .entries
            .iter()
            .map(entry_to_pb)
            .collect::<io::Result<_>>()?,
        leader_commit: request.leader_commit.as_ref().map(log_id_to_pb),
    })
}

pub fn append_request_from_pb(
    request: pb::AppendEntriesRequest,
) -> io::Result<AppendEntriesRequest<TypeConfig>> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(request.vote)?,
        prev_log_id: request.prev_log_id.map(log_id_from_pb),
        entries: request
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<io::Result<_>>()?,
        leader_commit: request.leader_commit.map(log_id_from_pb),
    })
}

pub fn append_response_to_pb(
    response: &AppendEntriesResponse<TypeConfig>,
) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match response {
        AppendEntriesResponse::Success => R::Success(pb::Success {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: matching.as_ref().map(log_id_to_pb),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Conflict {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

/// `Err(reason)` when the target did not host the group (the caller treats it as unreachable).
pub fn append_response_from_pb(
    response: pb::AppendEntriesResponse,
) -> io::Result<Result<AppendEntriesResponse<TypeConfig>, String>> {
    use pb::append_entries_response::Result as R;
    Ok(Ok(match response.result {
        Some(R::Success(_)) => AppendEntriesResponse::Success,
        Some(R::PartialSuccess(partial)) => {
            AppendEntriesResponse::PartialSuccess(partial.matching.map(log_id_from_pb))
        }
        Some(R::Conflict(_)) => AppendEntriesResponse::Conflict,
        Some(R::HigherVote(vote)) => AppendEntriesResponse::HigherVote(vote_from_pb(Some(vote))?),
        Some(R::Unavailable(reason)) => return Ok(Err(reason)),
        None => {
            return Err(codec::invalid_data(
                "append-entries response without a result",
            ));
        }
    }))
}

pub fn vote_request_to_pb(
    group: u64,
    target: ReplicaId,
    request: &VoteRequest<TypeConfig>,
    pre_vote: bool,
) -> pb::VoteRequest {
    pb::VoteRequest {
        group,
        target,
        vote: Some(vote_to_pb(&request.vote)),
        last_log_id: request.last_log_id.as_ref().map(log_id_to_pb),
        pre_vote,
        leadership_transfer: request.leadership_transfer,
    }
}

pub fn vote_request_from_pb(request: pb::VoteRequest) -> io::Result<VoteRequest<TypeConfig>> {
    let mut vote_request = VoteRequest::new(
        vote_from_pb(request.vote)?,
        request.last_log_id.map(log_id_from_pb),
    );
    vote_request.leadership_transfer = request.leadership_transfer;
    Ok(vote_request)
}

pub fn vote_response_to_pb(response: &VoteResponse<TypeConfig>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: response.last_log_id.as_ref().map(log_id_to_pb),
        unavailable: String::new(),
    }
}

pub fn vote_response_from_pb(
    response: pb::VoteResponse,
) -> io::Result<Result<VoteResponse<TypeConfig>, String>> {
    if !response.unavailable.is_empty() {
        return Ok(Err(response.unavailable));
    }
    Ok(Ok(VoteResponse::new(
        vote_from_pb(response.vote)?,
        response.last_log_id.map(log_id_from_pb),
        response.vote_granted,
    )))
}

pub fn transfer_request_to_pb(
    group: u64,
    target: ReplicaId,
    request: &TransferLeaderRequest<TypeConfig>,
) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        group,
        target,
        from_leader: Some(vote_to_pb(request.from_leader())),
        to_node_id: *request.to_node_id(),
        last_log_id: request.last_log_id().map(log_id_to_pb),
    }
}

pub fn transfer_request_from_pb(
    request: pb::TransferLeaderRequest,
) -> io::Result<TransferLeaderRequest<TypeConfig>> {
    Ok(TransferLeaderRequest::new(
        vote_from_pb(request.from_leader)?,
        request.to_node_id,
        request.last_log_id.map(log_id_from_pb),
    ))
}

pub fn snapshot_meta_to_pb(
    group: u64,
    target: ReplicaId,
    vote: &Vote,
    meta: &super::types::SnapshotMeta,
) -> io::Result<pb::SnapshotMeta> {
    Ok(pb::SnapshotMeta {
        group,
        target,
        vote: Some(vote_to_pb(vote)),
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_pb),
        last_membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_to_pb),
        last_membership: Bytes::from(codec::encode_membership(meta.last_membership.membership())?),
    })
}

pub fn snapshot_meta_from_pb(
    meta: pb::SnapshotMeta,
) -> io::Result<(Vote, super::types::SnapshotMeta)> {
    let vote = vote_from_pb(meta.vote)?;
    let membership = codec::decode_membership(&meta.last_membership)?;
    let snapshot_meta = super::types::SnapshotMeta {
        last_log_id: meta.last_log_id.map(log_id_from_pb),
        last_membership: StoredMembership::new(
            meta.last_membership_log_id.map(log_id_from_pb),
            membership,
        ),
    };
    Ok((vote, snapshot_meta))
}

pub fn snapshot_response_from_pb(
    response: pb::SnapshotResponse,
) -> io::Result<Result<SnapshotResponse<TypeConfig>, String>> {
    if !response.unavailable.is_empty() {
        return Ok(Err(response.unavailable));
    }
    Ok(Ok(SnapshotResponse::new(vote_from_pb(response.vote)?)))
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::consensus::types::Command;

    #[test]
    fn append_requests_round_trip() {
        let entries = vec![
            Entry::new(codec::log_id(3, 10), EntryPayload::Blank),
            Entry::new(
                codec::log_id(3, 11),
                EntryPayload::Normal(Command {
                    kind: 1,
                    tag: 99,
                    body: Bytes::from_static(b"batch"),
                }),
            ),
        ];
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 2),
            prev_log_id: Some(codec::log_id(2, 9)),
            entries,
            leader_commit: Some(codec::log_id(3, 10)),
        };
        let wire = append_request_to_pb(7, 4, &request).unwrap();
        assert_eq!((wire.group, wire.target), (7, 4));
        let back = append_request_from_pb(wire).unwrap();
        assert_eq!(back.vote, request.vote);
        assert_eq!(back.prev_log_id, request.prev_log_id);
        assert_eq!(back.leader_commit, request.leader_commit);
        assert_eq!(back.entries.len(), 2);
        match &back.entries[1].payload {
            EntryPayload::Normal(command) => {
                assert_eq!(
                    (command.kind, command.tag, command.body.as_ref()),
                    (1, 99, &b"batch"[..])
                )
            }
            other => panic!("expected a normal entry, got {other:?}"),
        }
    }

    #[test]
    fn append_responses_round_trip() {
        for response in [
            AppendEntriesResponse::<TypeConfig>::Success,
            AppendEntriesResponse::PartialSuccess(Some(codec::log_id(1, 5))),
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(9, 1)),
        ] {
            let back = append_response_from_pb(append_response_to_pb(&response))
                .unwrap()
                .unwrap();
            assert_eq!(back, response);
        }
        let unavailable = pb::AppendEntriesResponse {
            result: Some(pb::append_entries_response::Result::Unavailable(
                "no such group".into(),
            )),
        };
        assert_eq!(
            append_response_from_pb(unavailable).unwrap().unwrap_err(),
            "no such group"
        );
    }

    #[test]
    fn votes_round_trip() {
        let mut request =
            VoteRequest::<TypeConfig>::new(Vote::new(4, 3), Some(codec::log_id(3, 20)));
        request.leadership_transfer = true;
        let back = vote_request_from_pb(vote_request_to_pb(1, 3, &request, false)).unwrap();
        assert_eq!(back.vote, request.vote);
        assert_eq!(back.last_log_id, request.last_log_id);
        assert!(back.leadership_transfer);
        let response = VoteResponse::<TypeConfig>::new(
            Vote::new_committed(4, 3),
            Some(codec::log_id(3, 20)),
            true,
        );
        let back = vote_response_from_pb(vote_response_to_pb(&response))
            .unwrap()
            .unwrap();
        assert_eq!(
            (back.vote, back.vote_granted, back.last_log_id),
            (response.vote, true, response.last_log_id)
        );
    }
}
