//! Raft messages: `riffle_raft::message` <-> protobuf. Entry payloads are moved, never copied.

use riffle_proto::peer as pb;
use riffle_raft::message as raft;

use super::Malformed;
use super::malformed;

pub fn vote_to_pb(vote: raft::Vote) -> pb::Vote {
    pb::Vote {
        term: vote.term,
        voted_for: vote.voted_for,
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: Option<pb::Vote>) -> Result<raft::Vote, Malformed> {
    let vote = vote.ok_or_else(|| malformed("message without a vote"))?;
    Ok(raft::Vote {
        term: vote.term,
        voted_for: vote.voted_for,
        committed: vote.committed,
    })
}

fn log_id_to_pb(log_id: raft::LogId) -> pb::LogId {
    pb::LogId {
        term: log_id.term,
        index: log_id.index,
    }
}

fn log_id_from_pb(log_id: pb::LogId) -> raft::LogId {
    raft::LogId {
        term: log_id.term,
        index: log_id.index,
    }
}

fn entry_to_pb(entry: raft::Entry) -> pb::Entry {
    pb::Entry {
        term: entry.log_id.term,
        index: entry.log_id.index,
        kind: u32::from(entry.kind),
        tag: entry.tag,
        payload: entry.payload,
    }
}

fn entry_from_pb(entry: pb::Entry) -> Result<raft::Entry, Malformed> {
    let kind = u8::try_from(entry.kind).map_err(|_| malformed("entry kind out of range"))?;
    Ok(raft::Entry {
        log_id: raft::LogId {
            term: entry.term,
            index: entry.index,
        },
        kind,
        tag: entry.tag,
        payload: entry.payload,
    })
}

pub fn append_entries_request_to_pb(
    request: raft::AppendEntriesRequest,
) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        group: request.group,
        target: request.target,
        vote: Some(vote_to_pb(request.vote)),
        prev_log_id: request.prev_log_id.map(log_id_to_pb),
        entries: request.entries.into_iter().map(entry_to_pb).collect(),
        leader_commit: request.leader_commit.map(log_id_to_pb),
    }
}

pub fn append_entries_request_from_pb(
    request: pb::AppendEntriesRequest,
) -> Result<raft::AppendEntriesRequest, Malformed> {
    Ok(raft::AppendEntriesRequest {
        group: request.group,
        target: request.target,
        vote: vote_from_pb(request.vote)?,
        prev_log_id: request.prev_log_id.map(log_id_from_pb),
        entries: request
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: request.leader_commit.map(log_id_from_pb),
    })
}

pub fn append_entries_response_to_pb(
    response: raft::AppendEntriesResponse,
) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match response {
        raft::AppendEntriesResponse::Success => R::Success(pb::Success {}),
        raft::AppendEntriesResponse::PartialSuccess(matching) => {
            R::PartialSuccess(pb::PartialSuccess {
                matching: matching.map(log_id_to_pb),
            })
        }
        raft::AppendEntriesResponse::Conflict => R::Conflict(pb::Conflict {}),
        raft::AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
        raft::AppendEntriesResponse::Unavailable(reason) => R::Unavailable(reason),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

pub fn append_entries_response_from_pb(
    response: pb::AppendEntriesResponse,
) -> Result<raft::AppendEntriesResponse, Malformed> {
    use pb::append_entries_response::Result as R;
    Ok(match response.result {
        Some(R::Success(_)) => raft::AppendEntriesResponse::Success,
        Some(R::PartialSuccess(partial)) => {
            raft::AppendEntriesResponse::PartialSuccess(partial.matching.map(log_id_from_pb))
        }
        Some(R::Conflict(_)) => raft::AppendEntriesResponse::Conflict,
        Some(R::HigherVote(vote)) => {
            raft::AppendEntriesResponse::HigherVote(vote_from_pb(Some(vote))?)
        }
        Some(R::Unavailable(reason)) => raft::AppendEntriesResponse::Unavailable(reason),
        None => return Err(malformed("append-entries response without a result")),
    })
}

pub fn vote_request_to_pb(request: raft::VoteRequest) -> pb::VoteRequest {
    pb::VoteRequest {
        group: request.group,
        target: request.target,
        vote: Some(vote_to_pb(request.vote)),
        last_log_id: request.last_log_id.map(log_id_to_pb),
        pre_vote: request.pre_vote,
        leadership_transfer: request.leadership_transfer,
    }
}

pub fn vote_request_from_pb(request: pb::VoteRequest) -> Result<raft::VoteRequest, Malformed> {
    Ok(raft::VoteRequest {
        group: request.group,
        target: request.target,
        vote: vote_from_pb(request.vote)?,
        last_log_id: request.last_log_id.map(log_id_from_pb),
        pre_vote: request.pre_vote,
        leadership_transfer: request.leadership_transfer,
    })
}

pub fn vote_response_to_pb(response: raft::VoteResponse) -> pb::VoteResponse {
    match response {
        raft::VoteResponse::Answered {
            vote,
            granted,
            last_log_id,
        } => pb::VoteResponse {
            vote: Some(vote_to_pb(vote)),
            vote_granted: granted,
            last_log_id: last_log_id.map(log_id_to_pb),
            unavailable: String::new(),
        },
        raft::VoteResponse::Unavailable(reason) => pb::VoteResponse {
            unavailable: reason,
            ..Default::default()
        },
    }
}

pub fn vote_response_from_pb(response: pb::VoteResponse) -> Result<raft::VoteResponse, Malformed> {
    if !response.unavailable.is_empty() {
        return Ok(raft::VoteResponse::Unavailable(response.unavailable));
    }
    Ok(raft::VoteResponse::Answered {
        vote: vote_from_pb(response.vote)?,
        granted: response.vote_granted,
        last_log_id: response.last_log_id.map(log_id_from_pb),
    })
}

pub fn transfer_request_to_pb(request: raft::TransferLeaderRequest) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        group: request.group,
        target: request.target,
        from_leader: Some(vote_to_pb(request.from_leader)),
        to_node_id: request.to,
        last_log_id: request.last_log_id.map(log_id_to_pb),
    }
}

pub fn transfer_request_from_pb(
    request: pb::TransferLeaderRequest,
) -> Result<raft::TransferLeaderRequest, Malformed> {
    Ok(raft::TransferLeaderRequest {
        group: request.group,
        target: request.target,
        from_leader: vote_from_pb(request.from_leader)?,
        to: request.to_node_id,
        last_log_id: request.last_log_id.map(log_id_from_pb),
    })
}

pub fn transfer_response_to_pb(
    response: raft::TransferLeaderResponse,
) -> pb::TransferLeaderResponse {
    match response {
        raft::TransferLeaderResponse::Accepted => pb::TransferLeaderResponse::default(),
        raft::TransferLeaderResponse::Rejected(rejected) => pb::TransferLeaderResponse {
            rejected,
            unavailable: String::new(),
        },
        raft::TransferLeaderResponse::Unavailable(unavailable) => pb::TransferLeaderResponse {
            rejected: String::new(),
            unavailable,
        },
    }
}

pub fn transfer_response_from_pb(
    response: pb::TransferLeaderResponse,
) -> raft::TransferLeaderResponse {
    if !response.unavailable.is_empty() {
        raft::TransferLeaderResponse::Unavailable(response.unavailable)
    } else if !response.rejected.is_empty() {
        raft::TransferLeaderResponse::Rejected(response.rejected)
    } else {
        raft::TransferLeaderResponse::Accepted
    }
}

/// The first message of a snapshot stream (the data follows in chunks).
pub fn snapshot_meta_to_pb(request: &raft::InstallSnapshotRequest) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        group: request.group,
        target: request.target,
        vote: Some(vote_to_pb(request.vote)),
        last_log_id: request.last_log_id.map(log_id_to_pb),
        last_membership_log_id: request.last_membership_log_id.map(log_id_to_pb),
        last_membership: request.last_membership.clone(),
    }
}

pub fn snapshot_request_from_pb(
    meta: pb::SnapshotMeta,
    data: Vec<u8>,
) -> Result<raft::InstallSnapshotRequest, Malformed> {
    Ok(raft::InstallSnapshotRequest {
        group: meta.group,
        target: meta.target,
        vote: vote_from_pb(meta.vote)?,
        last_log_id: meta.last_log_id.map(log_id_from_pb),
        last_membership_log_id: meta.last_membership_log_id.map(log_id_from_pb),
        last_membership: meta.last_membership,
        data,
    })
}

pub fn snapshot_response_to_pb(response: raft::SnapshotResponse) -> pb::SnapshotResponse {
    match response {
        raft::SnapshotResponse::Installed { vote } => pb::SnapshotResponse {
            vote: Some(vote_to_pb(vote)),
            unavailable: String::new(),
        },
        raft::SnapshotResponse::Unavailable(unavailable) => pb::SnapshotResponse {
            vote: None,
            unavailable,
        },
    }
}

pub fn snapshot_response_from_pb(
    response: pb::SnapshotResponse,
) -> Result<raft::SnapshotResponse, Malformed> {
    if !response.unavailable.is_empty() {
        return Ok(raft::SnapshotResponse::Unavailable(response.unavailable));
    }
    Ok(raft::SnapshotResponse::Installed {
        vote: vote_from_pb(response.vote)?,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn vote() -> raft::Vote {
        raft::Vote {
            term: 3,
            voted_for: 2,
            committed: true,
        }
    }

    #[test]
    fn append_entries_round_trip_with_their_bytes() {
        let payload = Bytes::from_static(b"batch");
        let request = raft::AppendEntriesRequest {
            group: 7,
            target: 4,
            vote: vote(),
            prev_log_id: Some(raft::LogId { term: 2, index: 9 }),
            entries: vec![
                raft::Entry {
                    log_id: raft::LogId { term: 3, index: 10 },
                    kind: 0,
                    tag: 5,
                    payload: Bytes::new(),
                },
                raft::Entry {
                    log_id: raft::LogId { term: 3, index: 11 },
                    kind: 17,
                    tag: 99,
                    payload: payload.clone(),
                },
            ],
            leader_commit: Some(raft::LogId { term: 3, index: 10 }),
        };
        let sent = append_entries_request_to_pb(request.clone());
        assert_eq!(
            sent.entries[1].payload.as_ptr(),
            payload.as_ptr(),
            "the payload is moved, not copied"
        );
        assert_eq!(append_entries_request_from_pb(sent).unwrap(), request);

        let mut out_of_range = append_entries_request_to_pb(request);
        out_of_range.entries[0].kind = 300;
        assert!(append_entries_request_from_pb(out_of_range).is_err());
    }

    #[test]
    fn append_entries_responses_round_trip() {
        for response in [
            raft::AppendEntriesResponse::Success,
            raft::AppendEntriesResponse::PartialSuccess(Some(raft::LogId { term: 1, index: 5 })),
            raft::AppendEntriesResponse::PartialSuccess(None),
            raft::AppendEntriesResponse::Conflict,
            raft::AppendEntriesResponse::HigherVote(vote()),
            raft::AppendEntriesResponse::Unavailable("no such group".into()),
        ] {
            let back =
                append_entries_response_from_pb(append_entries_response_to_pb(response.clone()));
            assert_eq!(back.unwrap(), response);
        }
        assert!(
            append_entries_response_from_pb(pb::AppendEntriesResponse { result: None }).is_err()
        );
    }

    #[test]
    fn votes_transfers_and_snapshots_round_trip() {
        let request = raft::VoteRequest {
            group: 1,
            target: 3,
            vote: vote(),
            last_log_id: Some(raft::LogId { term: 3, index: 20 }),
            pre_vote: true,
            leadership_transfer: true,
        };
        assert_eq!(
            vote_request_from_pb(vote_request_to_pb(request.clone())).unwrap(),
            request
        );
        for response in [
            raft::VoteResponse::Answered {
                vote: vote(),
                granted: true,
                last_log_id: Some(raft::LogId { term: 3, index: 20 }),
            },
            raft::VoteResponse::Unavailable("not hosted".into()),
        ] {
            let back = vote_response_from_pb(vote_response_to_pb(response.clone())).unwrap();
            assert_eq!(back, response);
        }
        assert!(
            vote_request_from_pb(pb::VoteRequest::default()).is_err(),
            "a vote request without a vote is malformed"
        );

        let transfer = raft::TransferLeaderRequest {
            group: 4,
            target: 5,
            from_leader: vote(),
            to: 5,
            last_log_id: None,
        };
        assert_eq!(
            transfer_request_from_pb(transfer_request_to_pb(transfer.clone())).unwrap(),
            transfer
        );
        for response in [
            raft::TransferLeaderResponse::Accepted,
            raft::TransferLeaderResponse::Rejected("vote changed".into()),
            raft::TransferLeaderResponse::Unavailable("stopped".into()),
        ] {
            let back = transfer_response_from_pb(transfer_response_to_pb(response.clone()));
            assert_eq!(back, response);
        }

        let snapshot = raft::InstallSnapshotRequest {
            group: 9,
            target: 2,
            vote: vote(),
            last_log_id: Some(raft::LogId { term: 3, index: 40 }),
            last_membership_log_id: Some(raft::LogId { term: 1, index: 1 }),
            last_membership: Bytes::from_static(b"{}"),
            data: b"state".to_vec(),
        };
        let meta = snapshot_meta_to_pb(&snapshot);
        assert_eq!(
            snapshot_request_from_pb(meta, snapshot.data.clone()).unwrap(),
            snapshot
        );
        for response in [
            raft::SnapshotResponse::Installed { vote: vote() },
            raft::SnapshotResponse::Unavailable("not hosted".into()),
        ] {
            let back = snapshot_response_from_pb(snapshot_response_to_pb(response.clone()));
            assert_eq!(back.unwrap(), response);
        }
    }
}
