//! A running Raft group on this node: start/stop, bootstrap, propose, leadership.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use openraft::ChangeMembers;
use openraft::Config;
use openraft::LinearizerOption;
use openraft::ReadPolicy;
use openraft::SnapshotPolicy;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::errors::InitializeError;
use openraft::errors::LinearizableReadError;
use openraft::errors::RaftError;
use openraft::raft::ClientWriteResponse;
use riffle_storage::GroupId;
use riffle_storage::Storage;

use crate::activity::Activity;
use crate::activity::AwakeSet;
use crate::convert;
use crate::log_store::LogStore;
use crate::message;
use crate::network::Network;
use crate::network::RaftClient;
use crate::state_machine::Machine;
use crate::state_machine::StateMachineStore;
use crate::types::Command;
use crate::types::ReplicaId;
use crate::types::ReplicaNode;
use crate::types::Reply;
use crate::types::Snapshot;
use crate::types::TypeConfig;

type RaftHandle<M> = openraft::Raft<TypeConfig, StateMachineStore<M>>;

/// Maps a failed write (entry or membership change) to what callers act on.
fn write_error(error: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ProposeError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            let leader = match (forward.leader_id, forward.leader_node) {
                (Some(id), Some(node)) => Some((id, node)),
                _ => None,
            };
            ProposeError::NotLeader { leader }
        }
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(forward)) => {
            ProposeError::Ambiguous(forward.to_string())
        }
        RaftError::APIError(other) => ProposeError::Stopped(other.to_string()),
        RaftError::Fatal(fatal) => ProposeError::Stopped(fatal.to_string()),
    }
}

/// A group's members as one replica knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub voters: BTreeSet<ReplicaId>,
    pub learners: BTreeSet<ReplicaId>,
    /// A membership change is half done (old and new voters both decide).
    pub joint: bool,
}

/// Timers and log policy of one kind of group.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries (`None`: only when asked, e.g. by retention).
    pub snapshot_every: Option<u64>,
    /// Purge the log automatically behind snapshots (keeping this many entries), or never
    /// (`None`: the application purges, e.g. shard retention).
    pub keep_after_snapshot: Option<u64>,
    /// Where the group records whether it is awake, if anywhere.
    pub awake: Option<Arc<AwakeSet>>,
}

impl GroupOptions {
    /// Shard groups: slow heartbeats (idle groups must be cheap; quiet ones hibernate), and an
    /// election timeout of 1.5–2 s. openraft's leader lease equals the maximum election timeout,
    /// so a narrow range lets the first follower to time out win quickly after a leader dies.
    pub fn shard() -> Self {
        GroupOptions {
            heartbeat_ms: 250,
            election_timeout_min_ms: 1500,
            election_timeout_max_ms: 2000,
            snapshot_every: None,
            keep_after_snapshot: None,
            awake: None,
        }
    }

    /// The metadata group: few instances, so faster failover; its log is compacted by snapshots.
    pub fn control() -> Self {
        GroupOptions {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every: Some(1000),
            keep_after_snapshot: Some(1000),
            awake: None,
        }
    }

    fn raft_config(&self, group: GroupId) -> Result<Config, GroupError> {
        let config = Config {
            cluster_name: format!("riffle-group-{group}"),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: match self.snapshot_every {
                Some(entries) => SnapshotPolicy::LogsSinceLast(entries),
                None => SnapshotPolicy::Never,
            },
            max_in_snapshot_log_to_keep: self.keep_after_snapshot.unwrap_or(u64::MAX),
            purge_batch_size: 1,
            // Large snapshots (a shard's retained records) must not time out mid-transfer.
            install_snapshot_timeout: 60_000,
            api_channel_size: Some(4096),
            notification_channel_size: Some(4096),
            enable_pre_vote: Some(true),
            ..Config::default()
        };
        config
            .validate()
            .map_err(|error| GroupError::Config(error.to_string()))
    }
}

/// Why a group could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("group storage failed: {0}")]
    Storage(#[from] io::Error),
    #[error("raft group stopped: {0}")]
    Stopped(String),
    #[error("group could not be initialized: {0}")]
    Initialize(String),
}

/// Why a proposal did not produce a reply.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This replica is not the leader; nothing was appended.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        leader: Option<(ReplicaId, ReplicaNode)>,
    },
    /// The entry was appended but discarded when another leader took over: it may or may not be
    /// committed by the new leader. The caller cannot know; the write is ambiguous.
    #[error("leadership changed while the entry was in flight: {0}")]
    Ambiguous(String),
    /// The group has stopped (shut down or failed).
    #[error("raft group stopped: {0}")]
    Stopped(String),
}

/// A committed and applied proposal.
#[derive(Clone, Debug)]
pub struct Proposed {
    /// The log index the command was committed at.
    pub index: u64,
    pub reply: Reply,
}

/// A Raft group replica running on this node.
pub struct Group<M: Machine> {
    id: GroupId,
    replica: ReplicaId,
    raft: RaftHandle<M>,
    state_machine: StateMachineStore<M>,
    activity: Arc<Activity>,
    /// Kept rather than asked of openraft per call: making a receiver is far costlier than
    /// reading one, and leadership is read for every group on every liveness round.
    server_metrics: ServerMetricsWatch,
}

type ServerMetricsWatch = openraft::type_config::alias::WatchReceiverOf<
    TypeConfig,
    openraft::metrics::RaftServerMetrics<TypeConfig>,
>;

impl<M: Machine> Clone for Group<M> {
    fn clone(&self) -> Self {
        Group {
            id: self.id,
            replica: self.replica,
            raft: self.raft.clone(),
            state_machine: self.state_machine.clone(),
            activity: self.activity.clone(),
            server_metrics: self.server_metrics.clone(),
        }
    }
}

impl<M: Machine> Group<M> {
    /// Starts replica `replica` of group `id` over existing (or empty) storage for the group.
    pub async fn start(
        storage: Arc<dyn Storage>,
        id: GroupId,
        replica: ReplicaId,
        machine: M,
        options: &GroupOptions,
        client: Option<Arc<dyn RaftClient>>,
    ) -> Result<Self, GroupError> {
        let config = Arc::new(options.raft_config(id)?);
        let log_store = LogStore::new(storage.clone(), id);
        let state_machine = StateMachineStore::open(storage, id, machine)?;
        let network = Network::new(id, client);
        let raft = openraft::Raft::new(replica, config, network, log_store, state_machine.clone())
            .await
            .map_err(|fatal| GroupError::Stopped(fatal.to_string()))?;
        if let Some(awake) = &options.awake {
            awake.set(id, true);
        }
        let activity = Arc::new(Activity {
            group: id,
            awake_set: options.awake.clone(),
            hibernating: AtomicBool::new(false),
            last_active_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            last_append_ms: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        });
        let server_metrics = raft.server_metrics();
        Ok(Group {
            id,
            replica,
            raft,
            state_machine,
            activity,
            server_metrics,
        })
    }

    pub fn id(&self) -> GroupId {
        self.id
    }

    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// Makes `members` the group's first membership if the group has never been initialized;
    /// a no-op otherwise (so every member may call it with the same set).
    pub async fn bootstrap(
        &self,
        members: BTreeMap<ReplicaId, ReplicaNode>,
    ) -> Result<(), GroupError> {
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(GroupError::Initialize(error.to_string())),
        }
    }

    /// Adds a learner (a non-voting member that receives the log), without waiting for it to
    /// catch up. Must run on the leader.
    pub async fn add_learner(
        &self,
        replica: ReplicaId,
        node: ReplicaNode,
    ) -> Result<(), ProposeError> {
        self.wake();
        self.raft
            .add_learner(replica, node, false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Makes `voters` the group's voters (through joint consensus; every new voter must already
    /// be a learner). Members no longer voting leave the group. Must run on the leader.
    pub async fn change_voters(&self, voters: BTreeSet<ReplicaId>) -> Result<(), ProposeError> {
        self.wake();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Removes learners from the group. Must run on the leader.
    pub async fn remove_learners(&self, learners: BTreeSet<ReplicaId>) -> Result<(), ProposeError> {
        self.wake();
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(learners), false)
            .await
            .map(|_| ())
            .map_err(write_error)
    }

    /// Asks the group to hand leadership to `to` (which takes over once it has the leader's
    /// log). Ignored unless this replica leads.
    pub async fn transfer_leader(&self, to: ReplicaId) -> Result<(), GroupError> {
        self.wake();
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|fatal| GroupError::Stopped(fatal.to_string()))
    }

    /// The group's voters and learners, as this replica knows them.
    pub fn membership(&self) -> Membership {
        let metrics = self.server_metrics.borrow_watched();
        let config = metrics.membership_config.membership();
        let voters: BTreeSet<ReplicaId> = config.voter_ids().collect();
        let learners = config
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains(id))
            .collect();
        Membership {
            voters,
            learners,
            joint: config.get_joint_config().len() > 1,
        }
    }

    /// On the leader: how many entries `replica` is behind (`None` when unknown here).
    pub fn lag_of(&self, replica: ReplicaId) -> Option<u64> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let last = metrics.last_log_index?;
        let matched = metrics.replication.as_ref()?.get(&replica)?.as_ref()?.index;
        Some(last.saturating_sub(matched))
    }

    /// Starts an election now (the preferred leader of a new group does, instead of waiting
    /// for an election timeout).
    pub async fn campaign(&self) -> Result<(), GroupError> {
        self.raft
            .trigger()
            .elect(false)
            .await
            .map_err(|fatal| GroupError::Stopped(fatal.to_string()))
    }

    /// Starts an election now because the current leader's node is down, and makes the other
    /// voters grant it even though their leader lease has not run out.
    ///
    /// Why: openraft's leader lease equals the maximum election timeout, so a follower whose
    /// timer fires first is refused by the others until their lease ends, and the election
    /// usually succeeds only on its second round (3–4 s after a leader dies). Liveness knows
    /// earlier that the leader's node is gone; the vote requests of this election carry the
    /// leadership-transfer flag, which the voters honour regardless of their lease (Raft
    /// dissertation §4.2.3). Safety does not depend on the lease: a vote still needs a log at
    /// least as new as the voter's and a majority. What a wrong "down" costs is one needless
    /// leader change (a live leader that lost its followers' votes steps down on its next
    /// heartbeat). Returns whether the election was started: not when this replica leads, or
    /// knows a leader other than the lost `leader` (someone already took over).
    ///
    /// Not while the leader is evidently alive: AppendEntries (heartbeats go out every 250 ms
    /// while a group is awake) arrived within the last 750 ms. Liveness may call an overloaded
    /// node down whose groups still replicate; deposing their leaders would only add load.
    pub async fn take_over_from(&self, leader: ReplicaId) -> Result<bool, GroupError> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leaderless = metrics
            .current_leader
            .is_none_or(|current| current == leader);
        if !leaderless
            || leader == self.replica
            || self.activity.appended_within(Duration::from_millis(750))
        {
            return Ok(false);
        }
        self.wake();
        let request = openraft::raft::TransferLeaderRequest::new(metrics.vote, self.replica, None);
        let accepted = self
            .raft
            .handle_transfer_leader(request)
            .await
            .map_err(|fatal| GroupError::Stopped(fatal.to_string()))?;
        // Refused only when the vote changed meanwhile (another election already runs).
        Ok(accepted.is_ok())
    }

    /// Turns this replica's election timeout on or off (on by default). Off, it never campaigns
    /// by itself; [`Group::campaign`] and [`Group::take_over_from`] still work. Tests use it to
    /// prove which path elected a leader.
    #[doc(hidden)]
    pub fn set_timeout_elections(&self, enabled: bool) {
        self.raft.runtime_config().elect(enabled);
    }

    /// When this replica is the group's only voter, becomes leader now instead of after an
    /// election timeout (nobody else can win; matters on restart of single-replica groups).
    pub async fn campaign_if_sole_voter(&self) -> Result<(), GroupError> {
        let voters: Vec<ReplicaId> = self.raft.voter_ids().collect();
        if voters == [self.replica] && !self.is_leader() {
            self.raft
                .trigger()
                .elect(false)
                .await
                .map_err(|fatal| GroupError::Stopped(fatal.to_string()))?;
        }
        Ok(())
    }

    /// Whether this replica is the leader right now.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.replica)
    }

    /// The current leader's replica id, if known.
    pub fn leader(&self) -> Option<ReplicaId> {
        self.server_metrics.borrow_watched().current_leader
    }

    /// Waits until the group knows a leader (or `timeout` passes).
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<ReplicaId> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
            .ok()?;
        metrics.current_leader
    }

    /// Waits until the group knows a leader other than `lost` (or `timeout` passes).
    pub async fn wait_for_leader_other_than(
        &self,
        lost: ReplicaId,
        timeout: Duration,
    ) -> Option<ReplicaId> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| m.current_leader.is_some_and(|leader| leader != lost),
                "a new leader known",
            )
            .await
            .ok()?;
        metrics.current_leader
    }

    /// Proposes a command; returns once it is committed (durable on a majority) and applied here.
    pub async fn propose(&self, command: Command) -> Result<Proposed, ProposeError> {
        self.wake();
        self.activity.served.store(true, Ordering::Relaxed);
        match self.raft.client_write(command).await {
            Ok(ClientWriteResponse { log_id, data, .. }) => Ok(Proposed {
                index: log_id.index,
                reply: data,
            }),
            Err(error) => Err(write_error(error)),
        }
    }

    /// Returns once this replica has confirmed it is the leader and has applied everything
    /// committed before the call (a linearizable read barrier).
    pub async fn read_barrier(&self) -> Result<u64, ProposeError> {
        self.read_barrier_with(ReadPolicy::ReadIndex).await
    }

    /// Like [`Group::read_barrier`], but a quorum acknowledgement younger than the leader lease
    /// is reused (no round trip while the group is busy); a stale one (say after hibernation)
    /// makes the leader send heartbeats and wait for them.
    pub async fn lease_read_barrier(&self) -> Result<u64, ProposeError> {
        let option = LinearizerOption::new(None, true).with_wait_timeout(Duration::from_secs(3));
        self.read_barrier_with(option).await
    }

    async fn read_barrier_with(
        &self,
        policy: impl Into<LinearizerOption>,
    ) -> Result<u64, ProposeError> {
        self.wake();
        self.activity.served.store(true, Ordering::Relaxed);
        match self.raft.ensure_linearizable(policy).await {
            Ok(read) => Ok(read.index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(forward))) => {
                let leader = match (forward.leader_id, forward.leader_node) {
                    (Some(id), Some(node)) => Some((id, node)),
                    _ => None,
                };
                Err(ProposeError::NotLeader { leader })
            }
            Err(RaftError::APIError(other)) => Err(ProposeError::Stopped(other.to_string())),
            Err(RaftError::Fatal(fatal)) => Err(ProposeError::Stopped(fatal.to_string())),
        }
    }

    /// Builds a snapshot now, then purges the log up to `upto` (never past the snapshot), and
    /// waits (bounded) until the purge is done.
    pub async fn snapshot_and_purge(&self, upto: u64) -> Result<(), GroupError> {
        let stopped =
            |fatal: openraft::errors::Fatal<TypeConfig>| GroupError::Stopped(fatal.to_string());
        let wanted = Some(upto);
        let covered = |m: &openraft::RaftMetrics<TypeConfig>| m.snapshot.map(|s| s.index) >= wanted;
        if !covered(&self.raft.metrics().borrow_watched()) {
            self.raft.trigger().snapshot().await.map_err(stopped)?;
            let _ = self
                .raft
                .wait(Some(Duration::from_secs(30)))
                .metrics(covered, "snapshot covers purge point")
                .await;
        }
        self.raft.trigger().purge_log(upto).await.map_err(stopped)?;
        let _ = self
            .raft
            .wait(Some(Duration::from_secs(30)))
            .metrics(|m| m.purged.map(|p| p.index) >= wanted, "log purged")
            .await;
        Ok(())
    }

    /// Runs `f` on the state machine.
    pub async fn with_machine<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        self.state_machine.with_machine(f).await
    }

    /// Stops ticking (no heartbeats, no election timers): the group costs nothing while quiet.
    /// Any proposal, read or incoming Raft message wakes it.
    pub fn hibernate(&self) {
        if !self.activity.hibernating.swap(true, Ordering::AcqRel) {
            self.raft.runtime_config().tick(false);
            if let Some(awake) = &self.activity.awake_set {
                awake.set(self.activity.group, false);
            }
            tracing::debug!(group = self.id, "hibernating");
        }
    }

    /// Resumes ticking (if hibernating) and marks the group active.
    pub fn wake(&self) {
        self.activity.touch();
        if self.activity.hibernating.swap(false, Ordering::AcqRel) {
            if let Some(awake) = &self.activity.awake_set {
                awake.set(self.activity.group, true);
            }
            self.raft.runtime_config().tick(true);
            tracing::debug!(group = self.id, "woken");
        }
    }

    pub fn is_hibernating(&self) -> bool {
        self.activity.hibernating.load(Ordering::Acquire)
    }

    /// How long since this replica last proposed, read or was woken.
    pub fn idle_for(&self) -> Duration {
        self.activity.idle_for()
    }

    /// Whether this replica has proposed or served a read since it started (a group that
    /// has not — new, or just restarted — can go to sleep as soon as it is replicated).
    pub fn has_served(&self) -> bool {
        self.activity.served.load(Ordering::Relaxed)
    }

    /// Whether this replica leads a group in which every member on a node outside `down_nodes`
    /// has every entry applied and acknowledged, and those members (leader included) form a
    /// majority: safe to put to sleep. Members on down nodes are woken again when they return.
    pub fn is_quiet_and_replicated(&self, down_nodes: &HashSet<u64>) -> bool {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(self.replica) {
            return false;
        }
        let last = metrics.last_log_index;
        if metrics.last_applied.map(|id| id.index) != last {
            return false;
        }
        let Some(replication) = &metrics.replication else {
            return false;
        };
        let membership = metrics.membership_config.membership();
        let node_of = |replica: &ReplicaId| membership.get_node(replica).map(|node| node.node);
        let voters: Vec<ReplicaId> = membership.voter_ids().collect();
        let up_voters = voters
            .iter()
            .filter(|voter| node_of(voter).is_none_or(|node| !down_nodes.contains(&node)))
            .count();
        if up_voters * 2 <= voters.len() {
            return false;
        }
        replication
            .iter()
            .filter(|(id, _)| **id != self.replica)
            .filter(|(id, _)| node_of(id).is_none_or(|node| !down_nodes.contains(&node)))
            .all(|(_, matched)| matched.map(|id| id.index) == last)
    }

    /// The replicas of the group (voters and learners) with the nodes hosting them.
    pub fn members(&self) -> Vec<(ReplicaId, ReplicaNode)> {
        let metrics = self.server_metrics.borrow_watched();
        metrics
            .membership_config
            .nodes()
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    }

    /// This replica's current vote (the leader it follows).
    pub fn vote(&self) -> message::Vote {
        convert::vote_out(&self.server_metrics.borrow_watched().vote)
    }

    /// Makes this replica go to sleep if it follows the leader that asks (`leader_vote`) and
    /// has everything that leader has. Returns whether it now hibernates.
    pub fn hibernate_follower(&self, leader_vote: &message::Vote) -> bool {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let following = convert::vote_out(&metrics.vote) == *leader_vote
            && metrics.current_leader.is_some()
            && metrics.current_leader != Some(self.replica);
        let caught_up = metrics.last_applied.map(|id| id.index) == metrics.last_log_index;
        if following && caught_up {
            self.hibernate();
            return true;
        }
        false
    }

    /// Serves an AppendEntries from another node.
    pub async fn handle_append_entries(
        &self,
        request: message::AppendEntriesRequest,
    ) -> message::AppendEntriesResponse {
        self.wake();
        self.activity.mark_append();
        let request = match convert::append_request_in(request) {
            Ok(request) => request,
            Err(error) => {
                return message::AppendEntriesResponse::Unavailable(format!(
                    "undecodable append-entries: {error}"
                ));
            }
        };
        match self.raft.append_entries(request).await {
            Ok(response) => convert::append_response_out(&response),
            Err(error) => message::AppendEntriesResponse::Unavailable(error.to_string()),
        }
    }

    /// Serves a (pre-)vote from another node.
    pub async fn handle_vote(&self, request: message::VoteRequest) -> message::VoteResponse {
        self.wake();
        let pre_vote = request.pre_vote;
        let request = convert::vote_request_in(request);
        let takeover = request.leadership_transfer && !pre_vote;
        let candidate_log = request.last_log_id;
        let response = if pre_vote {
            self.raft.pre_vote(request).await
        } else {
            self.raft.vote(request).await
        };
        match response {
            Ok(response) => {
                // A candidate taking over from a lost leader was refused because this replica's
                // log is newer (a quorum needs only one follower up to date, so the candidate
                // liveness picked may lag): this replica must lead instead, and campaigns now
                // rather than after its election timeout.
                if takeover && !response.vote_granted && response.last_log_id > candidate_log {
                    self.take_over_after_refusing();
                }
                convert::vote_response_out(&response)
            }
            Err(error) => message::VoteResponse::Unavailable(error.to_string()),
        }
    }

    fn take_over_after_refusing(&self) {
        let Some(leader) = self.leader() else {
            return;
        };
        let group = self.clone();
        tokio::spawn(async move {
            // The refused candidate holds the next term, so this replica's first campaign (at
            // that same term) splits the vote; the next one, a term higher, wins it.
            for wait in [50u64, 100, 200, 400].map(Duration::from_millis) {
                match group.take_over_from(leader).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::warn!(group = group.id, %error, "could not campaign");
                        return;
                    }
                }
                if let Some(elected) = group.wait_for_leader_other_than(leader, wait).await {
                    tracing::info!(
                        group = group.id,
                        elected,
                        "campaigned: refused a takeover candidate with an older log"
                    );
                    return;
                }
            }
        });
    }

    /// Serves a leadership transfer notice from the leader.
    pub async fn handle_transfer_leader(
        &self,
        request: message::TransferLeaderRequest,
    ) -> message::TransferLeaderResponse {
        self.wake();
        let request = convert::transfer_request_in(request);
        match self.raft.handle_transfer_leader(request).await {
            Ok(Ok(())) => message::TransferLeaderResponse::Accepted,
            Ok(Err(rejected)) => message::TransferLeaderResponse::Rejected(rejected.to_string()),
            Err(fatal) => message::TransferLeaderResponse::Unavailable(fatal.to_string()),
        }
    }

    /// Installs a full snapshot sent by the leader.
    pub async fn handle_install_snapshot(
        &self,
        request: message::InstallSnapshotRequest,
    ) -> message::SnapshotResponse {
        self.wake();
        let (vote, meta, data) = match convert::snapshot_request_in(request) {
            Ok(decoded) => decoded,
            Err(error) => return message::SnapshotResponse::Unavailable(error.to_string()),
        };
        match self
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: data,
                },
            )
            .await
        {
            Ok(response) => message::SnapshotResponse::Installed {
                vote: convert::vote_out(&response.vote),
            },
            Err(fatal) => message::SnapshotResponse::Unavailable(fatal.to_string()),
        }
    }

    /// Stops the replica's tasks. Storage is left as is.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(group = self.id, %error, "raft group did not shut down cleanly");
        }
    }
}
