//! The metadata group: its state machine and the handle the rest of the node uses to propose
//! control commands (on the metadata leader, forwarded there when this node is not it) and to
//! read the agreed state.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use riffle_raft::Command;
use riffle_raft::Group;
use riffle_raft::Machine;
use riffle_raft::ProposeError;
use riffle_raft::Reply;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::watch;

use crate::command;
use crate::command::ControlCommand;
use crate::command::ControlReply;
use crate::model::ControlState;

/// The metadata group's id on every node. Its replica ids are node ids.
pub const CONTROL_GROUP: u64 = 0;
/// Command kind of a control command.
pub const COMMAND_CONTROL: u8 = 1;

/// How long a proposal waits for a metadata leader to exist or answer.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// A Kinesis error as stored in a reply (so a rejected command reaches the client unchanged).
#[derive(Serialize, Deserialize)]
struct ErrorRepr {
    code: String,
    message: String,
}

type ApplyOutcome = Result<ControlReply, ErrorRepr>;

/// The metadata group's state machine. The whole state lives in memory (it is small: streams,
/// shards, placement) and is persisted by snapshots plus the log since the last one.
pub struct ControlMachine {
    state: ControlState,
    published: watch::Sender<Arc<ControlState>>,
    applied: watch::Sender<u64>,
}

/// Receivers of what the control machine publishes.
pub struct ControlWatch {
    pub state: watch::Receiver<Arc<ControlState>>,
    pub applied: watch::Receiver<u64>,
}

impl ControlMachine {
    pub fn new() -> (ControlMachine, ControlWatch) {
        let (published, state) = watch::channel(Arc::new(ControlState::default()));
        let (applied_tx, applied) = watch::channel(0);
        let machine = ControlMachine {
            state: ControlState::default(),
            published,
            applied: applied_tx,
        };
        (machine, ControlWatch { state, applied })
    }
}

impl Machine for ControlMachine {
    fn apply(&mut self, _index: u64, command: &Command) -> Reply {
        let decoded: ControlCommand = match serde_json::from_slice(&command.body) {
            Ok(decoded) => decoded,
            Err(error) => {
                return Reply::Rejected {
                    reason: format!("undecodable control command: {error}"),
                };
            }
        };
        let outcome: ApplyOutcome =
            command::apply(&mut self.state, decoded).map_err(|error| ErrorRepr {
                code: error.code.type_name().to_string(),
                message: error.message,
            });
        match serde_json::to_vec(&outcome) {
            Ok(bytes) => Reply::Data(Bytes::from(bytes)),
            Err(error) => Reply::Rejected {
                reason: format!("unencodable control reply: {error}"),
            },
        }
    }

    fn applied_to(&mut self, index: u64) {
        // Cheap: streams are shared `Arc`s, only the maps are copied. State first, so whoever
        // sees the index also sees the state it stands for.
        self.published.send_replace(Arc::new(self.state.clone()));
        self.applied.send_replace(index);
    }

    fn state(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> io::Result<()> {
        self.state = serde_json::from_slice(state)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        self.published.send_replace(Arc::new(self.state.clone()));
        Ok(())
    }

    fn checkpoint_every_batch(&self) -> bool {
        false
    }
}

/// What a forwarded call to the metadata leader produced.
pub enum Forwarded<T> {
    Done(T),
    /// The node asked is not the leader; it names the leader's node when it knows it.
    NotLeader(Option<u64>),
}

/// Carries control calls to the node leading the metadata group (implemented by the node's
/// peer transport).
pub trait ControlForwarder: Send + Sync + 'static {
    /// Proposes encoded command bytes on `node`; returns the encoded reply and its log index.
    fn propose(
        &self,
        node: u64,
        command: Bytes,
    ) -> futures_util::future::BoxFuture<'static, Result<Forwarded<(Bytes, u64)>, KinesisError>>;

    /// The commit index `node` (the leader) has confirmed for a linearizable read.
    fn read_index(
        &self,
        node: u64,
    ) -> futures_util::future::BoxFuture<'static, Result<Forwarded<u64>, KinesisError>>;
}

/// Proposes control commands and reads the agreed state.
#[derive(Clone)]
pub struct ControlPlane {
    group: Group<ControlMachine>,
    state: watch::Receiver<Arc<ControlState>>,
    applied: watch::Receiver<u64>,
    forwarder: Option<Arc<dyn ControlForwarder>>,
}

impl ControlPlane {
    pub fn new(
        group: Group<ControlMachine>,
        watch: ControlWatch,
        forwarder: Option<Arc<dyn ControlForwarder>>,
    ) -> Self {
        ControlPlane {
            group,
            state: watch.state,
            applied: watch.applied,
            forwarder,
        }
    }

    pub fn group(&self) -> &Group<ControlMachine> {
        &self.group
    }

    /// The state as applied on this node.
    pub fn state(&self) -> Arc<ControlState> {
        self.state.borrow().clone()
    }

    /// A receiver that changes whenever the state does.
    pub fn watch(&self) -> watch::Receiver<Arc<ControlState>> {
        self.state.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.group.is_leader()
    }

    /// The node leading the metadata group, if known.
    pub fn leader(&self) -> Option<u64> {
        self.group.leader()
    }

    /// Waits until this node has applied the metadata log up to `index` (bounded).
    pub async fn wait_applied(&self, index: u64) -> Result<(), KinesisError> {
        let mut applied = self.applied.clone();
        let waited =
            tokio::time::timeout(LEADER_WAIT, applied.wait_for(|applied| *applied >= index)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(KinesisError::unavailable(format!(
                "this node has not caught up with the metadata log (index {index})"
            ))),
        }
    }

    /// Makes the next reads of [`ControlPlane::state`] see everything committed before this
    /// call (a linearizable read of the metadata, wherever the leader is).
    pub async fn sync(&self) -> Result<(), KinesisError> {
        let index = self
            .on_leader(
                |plane| async move {
                    plane
                        .group
                        .lease_read_barrier()
                        .await
                        .map(Forwarded::Done)
                        .map_err(|error| metadata_unavailable(&error))
                },
                |forwarder, node| forwarder.read_index(node),
            )
            .await?;
        self.wait_applied(index).await
    }

    /// Proposes a command; returns once it is committed, and applied on this node.
    pub async fn propose(&self, command: ControlCommand) -> Result<ControlReply, KinesisError> {
        let name = command.name();
        let body = serde_json::to_vec(&command)
            .map_err(|error| KinesisError::internal(format!("cannot encode {name}: {error}")))?;
        let body = Bytes::from(body);
        let (reply, index) = self
            .on_leader(
                |plane| {
                    let body = body.clone();
                    async move { plane.propose_locally(body).await.map(Forwarded::Done) }
                },
                |forwarder, node| forwarder.propose(node, body.clone()),
            )
            .await?;
        self.wait_applied(index).await?;
        decode_reply(name, &reply)
    }

    /// Runs `local` if this node leads the metadata group, else `remote` on the leader,
    /// following not-leader hints until an answer or [`LEADER_WAIT`].
    async fn on_leader<T, L, LF, R>(&self, local: L, remote: R) -> Result<T, KinesisError>
    where
        L: Fn(ControlPlane) -> LF,
        LF: std::future::Future<Output = Result<Forwarded<T>, KinesisError>>,
        R: Fn(
            &Arc<dyn ControlForwarder>,
            u64,
        )
            -> futures_util::future::BoxFuture<'static, Result<Forwarded<T>, KinesisError>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut hint: Option<u64> = None;
        loop {
            let leader = hint.take().or_else(|| self.group.leader());
            let outcome = match leader {
                Some(node) if node == self.group.replica() => local(self.clone()).await,
                Some(node) => match &self.forwarder {
                    Some(forwarder) => remote(forwarder, node).await,
                    None => Err(KinesisError::unavailable(
                        "the metadata leader is on another node and this node has no peers",
                    )),
                },
                None => Ok(Forwarded::NotLeader(None)),
            };
            match outcome {
                Ok(Forwarded::Done(value)) => return Ok(value),
                Ok(Forwarded::NotLeader(next)) => hint = next.filter(|next| Some(*next) != leader),
                Err(error) if error.code == ErrorCode::ServiceUnavailable => {}
                Err(error) => return Err(error),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(KinesisError::unavailable(
                    "the metadata group has no reachable leader",
                ));
            }
            if hint.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Proposes encoded command bytes on this node, which must lead the metadata group.
    /// Returns the encoded reply and the log index (served for other nodes too).
    pub async fn propose_locally(&self, body: Bytes) -> Result<(Bytes, u64), KinesisError> {
        let proposal = Command {
            kind: COMMAND_CONTROL,
            tag: 0,
            body,
        };
        let proposed = self
            .group
            .propose(proposal)
            .await
            .map_err(|error| metadata_unavailable(&error))?;
        match proposed.reply {
            Reply::Data(bytes) => Ok((bytes, proposed.index)),
            Reply::Rejected { reason } => Err(KinesisError::internal(format!(
                "control command rejected: {reason}"
            ))),
            Reply::Applied => Err(KinesisError::internal("control command produced no reply")),
        }
    }

    /// This node's confirmed commit index as the metadata leader (served for other nodes).
    pub async fn read_index_locally(&self) -> Result<u64, KinesisError> {
        self.group
            .lease_read_barrier()
            .await
            .map_err(|error| metadata_unavailable(&error))
    }
}

fn metadata_unavailable(error: &ProposeError) -> KinesisError {
    match error {
        ProposeError::NotLeader { .. } | ProposeError::Stopped(_) => {
            KinesisError::unavailable(format!("metadata group: {error}"))
        }
        ProposeError::Ambiguous(reason) => KinesisError::internal(format!(
            "the control command may or may not have taken effect (leadership changed): {reason}"
        )),
    }
}

fn decode_reply(name: &str, bytes: &[u8]) -> Result<ControlReply, KinesisError> {
    let outcome: ApplyOutcome = serde_json::from_slice(bytes)
        .map_err(|error| KinesisError::internal(format!("undecodable reply to {name}: {error}")))?;
    outcome.map_err(|repr| {
        let code =
            ErrorCode::from_type_name(&repr.code).unwrap_or(ErrorCode::InternalFailureException);
        KinesisError::new(code, repr.message)
    })
}
