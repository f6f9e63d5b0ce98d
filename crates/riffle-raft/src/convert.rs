//! Conversions between openraft's messages and this crate's ([`crate::message`]). Entries
//! travel exactly as they are stored (kind, tag, payload), so a follower appends the bytes the
//! leader appended.

use std::io;

use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use riffle_storage::LogRecord;

use crate::codec;
use crate::message;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::ReplicaId;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;
use crate::types::TypeConfig;
use crate::types::Vote;

pub fn vote_out(vote: &Vote) -> message::Vote {
    let leader_id = vote.leader_id();
    message::Vote {
        term: leader_id.term,
        voted_for: leader_id.voted_for,
        committed: vote.is_committed(),
    }
}

pub fn vote_in(vote: message::Vote) -> Vote {
    if vote.committed {
        Vote::new_committed(vote.term, vote.voted_for)
    } else {
        Vote::new(vote.term, vote.voted_for)
    }
}

pub fn log_id_out(log_id: &LogId) -> message::LogId {
    message::LogId {
        term: log_id.leader_id.term,
        index: log_id.index,
    }
}

pub fn log_id_in(log_id: message::LogId) -> LogId {
    codec::log_id(log_id.term, log_id.index)
}

fn entry_out(entry: &Entry) -> io::Result<message::Entry> {
    // The follower recomputes the stored tag from its own previous entry (identical logs give
    // identical tags), so the proposer's tag is what travels.
    let record = codec::entry_to_record(entry, 0)?;
    Ok(message::Entry {
        log_id: message::LogId {
            term: record.term,
            index: record.index,
        },
        kind: record.kind,
        tag: record.tag,
        payload: record.payload,
    })
}

fn entry_in(entry: message::Entry) -> io::Result<Entry> {
    codec::record_to_entry(&LogRecord {
        index: entry.log_id.index,
        term: entry.log_id.term,
        kind: entry.kind,
        tag: entry.tag,
        payload: entry.payload,
    })
}

pub fn append_request_out(
    group: u64,
    target: ReplicaId,
    request: &AppendEntriesRequest<TypeConfig>,
) -> io::Result<message::AppendEntriesRequest> {
    Ok(message::AppendEntriesRequest {
        group,
        target,
        vote: vote_out(&request.vote),
        prev_log_id: request.prev_log_id.as_ref().map(log_id_out),
        entries: request
            .entries
            .iter()
            .map(entry_out)
            .collect::<io::Result<_>>()?,
        leader_commit: request.leader_commit.as_ref().map(log_id_out),
    })
}

pub fn append_request_in(
    request: message::AppendEntriesRequest,
) -> io::Result<AppendEntriesRequest<TypeConfig>> {
    Ok(AppendEntriesRequest {
        vote: vote_in(request.vote),
        prev_log_id: request.prev_log_id.map(log_id_in),
        entries: request
            .entries
            .into_iter()
            .map(entry_in)
            .collect::<io::Result<_>>()?,
        leader_commit: request.leader_commit.map(log_id_in),
    })
}

pub fn append_response_out(
    response: &AppendEntriesResponse<TypeConfig>,
) -> message::AppendEntriesResponse {
    match response {
        AppendEntriesResponse::Success => message::AppendEntriesResponse::Success,
        AppendEntriesResponse::PartialSuccess(matching) => {
            message::AppendEntriesResponse::PartialSuccess(matching.as_ref().map(log_id_out))
        }
        AppendEntriesResponse::Conflict => message::AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(vote) => {
            message::AppendEntriesResponse::HigherVote(vote_out(vote))
        }
    }
}

/// `Err(reason)` when the target did not host the group (the caller treats it as unreachable).
pub fn append_response_in(
    response: message::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<TypeConfig>, String> {
    Ok(match response {
        message::AppendEntriesResponse::Success => AppendEntriesResponse::Success,
        message::AppendEntriesResponse::PartialSuccess(matching) => {
            AppendEntriesResponse::PartialSuccess(matching.map(log_id_in))
        }
        message::AppendEntriesResponse::Conflict => AppendEntriesResponse::Conflict,
        message::AppendEntriesResponse::HigherVote(vote) => {
            AppendEntriesResponse::HigherVote(vote_in(vote))
        }
        message::AppendEntriesResponse::Unavailable(reason) => return Err(reason),
    })
}

pub fn vote_request_out(
    group: u64,
    target: ReplicaId,
    request: &VoteRequest<TypeConfig>,
    pre_vote: bool,
) -> message::VoteRequest {
    message::VoteRequest {
        group,
        target,
        vote: vote_out(&request.vote),
        last_log_id: request.last_log_id.as_ref().map(log_id_out),
        pre_vote,
        leadership_transfer: request.leadership_transfer,
    }
}

pub fn vote_request_in(request: message::VoteRequest) -> VoteRequest<TypeConfig> {
    let mut vote_request =
        VoteRequest::new(vote_in(request.vote), request.last_log_id.map(log_id_in));
    vote_request.leadership_transfer = request.leadership_transfer;
    vote_request
}

pub fn vote_response_out(response: &VoteResponse<TypeConfig>) -> message::VoteResponse {
    message::VoteResponse::Answered {
        vote: vote_out(&response.vote),
        granted: response.vote_granted,
        last_log_id: response.last_log_id.as_ref().map(log_id_out),
    }
}

pub fn vote_response_in(
    response: message::VoteResponse,
) -> Result<VoteResponse<TypeConfig>, String> {
    match response {
        message::VoteResponse::Answered {
            vote,
            granted,
            last_log_id,
        } => Ok(VoteResponse::new(
            vote_in(vote),
            last_log_id.map(log_id_in),
            granted,
        )),
        message::VoteResponse::Unavailable(reason) => Err(reason),
    }
}

pub fn transfer_request_out(
    group: u64,
    target: ReplicaId,
    request: &TransferLeaderRequest<TypeConfig>,
) -> message::TransferLeaderRequest {
    message::TransferLeaderRequest {
        group,
        target,
        from_leader: vote_out(request.from_leader()),
        to: *request.to_node_id(),
        last_log_id: request.last_log_id().map(log_id_out),
    }
}

pub fn transfer_request_in(
    request: message::TransferLeaderRequest,
) -> TransferLeaderRequest<TypeConfig> {
    TransferLeaderRequest::new(
        vote_in(request.from_leader),
        request.to,
        request.last_log_id.map(log_id_in),
    )
}

pub fn snapshot_request_out(
    group: u64,
    target: ReplicaId,
    vote: &Vote,
    meta: &SnapshotMeta,
    data: Vec<u8>,
) -> io::Result<message::InstallSnapshotRequest> {
    Ok(message::InstallSnapshotRequest {
        group,
        target,
        vote: vote_out(vote),
        last_log_id: meta.last_log_id.as_ref().map(log_id_out),
        last_membership_log_id: meta.last_membership.log_id().as_ref().map(log_id_out),
        last_membership: bytes::Bytes::from(codec::encode_membership(
            meta.last_membership.membership(),
        )?),
        data,
    })
}

/// The vote, the snapshot's metadata and its data.
pub fn snapshot_request_in(
    request: message::InstallSnapshotRequest,
) -> io::Result<(Vote, SnapshotMeta, Vec<u8>)> {
    let membership = codec::decode_membership(&request.last_membership)?;
    let snapshot_meta = SnapshotMeta {
        last_log_id: request.last_log_id.map(log_id_in),
        last_membership: StoredMembership::new(
            request.last_membership_log_id.map(log_id_in),
            membership,
        ),
    };
    Ok((vote_in(request.vote), snapshot_meta, request.data))
}

pub fn snapshot_response_in(
    response: message::SnapshotResponse,
) -> Result<SnapshotResponse<TypeConfig>, String> {
    match response {
        message::SnapshotResponse::Installed { vote } => Ok(SnapshotResponse::new(vote_in(vote))),
        message::SnapshotResponse::Unavailable(reason) => Err(reason),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::EntryPayload;
    use openraft::entry::RaftEntry;

    use super::*;
    use crate::types::Command;

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
        let sent = append_request_out(7, 4, &request).unwrap();
        assert_eq!((sent.group, sent.target), (7, 4));
        let back = append_request_in(sent).unwrap();
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
            let back = append_response_in(append_response_out(&response)).unwrap();
            assert_eq!(back, response);
        }
        let unavailable = message::AppendEntriesResponse::Unavailable("no such group".into());
        assert_eq!(
            append_response_in(unavailable).unwrap_err(),
            "no such group"
        );
    }

    #[test]
    fn votes_round_trip() {
        let mut request =
            VoteRequest::<TypeConfig>::new(Vote::new(4, 3), Some(codec::log_id(3, 20)));
        request.leadership_transfer = true;
        let back = vote_request_in(vote_request_out(1, 3, &request, false));
        assert_eq!(back.vote, request.vote);
        assert_eq!(back.last_log_id, request.last_log_id);
        assert!(back.leadership_transfer);
        let response = VoteResponse::<TypeConfig>::new(
            Vote::new_committed(4, 3),
            Some(codec::log_id(3, 20)),
            true,
        );
        let back = vote_response_in(vote_response_out(&response)).unwrap();
        assert_eq!(
            (back.vote, back.vote_granted, back.last_log_id),
            (response.vote, true, response.last_log_id)
        );
    }
}
