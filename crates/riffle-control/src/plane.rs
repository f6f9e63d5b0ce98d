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
use riffle_raft::Reply;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::watch;

use crate::command;
use crate::command::ControlCommand;
use crate::command::ControlReply;
use crate::error::ControlError;
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
#[derive(Debug, PartialEq, Eq)]
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
    ) -> futures_util::future::BoxFuture<'static, Result<Forwarded<(Bytes, u64)>, ControlError>>;

    /// The commit index `node` (the leader) has confirmed for a linearizable read.
    fn read_index(
        &self,
        node: u64,
    ) -> futures_util::future::BoxFuture<'static, Result<Forwarded<u64>, ControlError>>;
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
    pub async fn wait_applied(&self, index: u64) -> Result<(), ControlError> {
        let mut applied = self.applied.clone();
        let waited =
            tokio::time::timeout(LEADER_WAIT, applied.wait_for(|applied| *applied >= index)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ControlError::NotCaughtUp { index }),
        }
    }

    /// Makes the next reads of [`ControlPlane::state`] see everything committed before this
    /// call (a linearizable read of the metadata, wherever the leader is).
    pub async fn sync(&self) -> Result<(), ControlError> {
        let index = self
            .on_leader(
                |plane| async move { plane.read_index_locally().await.map(Forwarded::Done) },
                |forwarder, node| forwarder.read_index(node),
            )
            .await?;
        self.wait_applied(index).await
    }

    /// Proposes a command; returns once it is committed, and applied on this node.
    pub async fn propose(&self, command: ControlCommand) -> Result<ControlReply, ControlError> {
        let name = command.name();
        let body = serde_json::to_vec(&command).map_err(|source| ControlError::Encode {
            command: name,
            source,
        })?;
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
    async fn on_leader<T, L, LF, R>(&self, local: L, remote: R) -> Result<T, ControlError>
    where
        L: Fn(ControlPlane) -> LF,
        LF: std::future::Future<Output = Result<Forwarded<T>, ControlError>>,
        R: Fn(
            &Arc<dyn ControlForwarder>,
            u64,
        )
            -> futures_util::future::BoxFuture<'static, Result<Forwarded<T>, ControlError>>,
    {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut hint: Option<u64> = None;
        loop {
            let leader = hint.take().or_else(|| self.group.leader());
            let outcome = match leader {
                Some(node) if node == self.group.replica() => local(self.clone()).await,
                Some(node) => match &self.forwarder {
                    Some(forwarder) => remote(forwarder, node).await,
                    None => Err(ControlError::NoPeers),
                },
                None => Ok(Forwarded::NotLeader(None)),
            };
            match outcome {
                Ok(Forwarded::Done(value)) => return Ok(value),
                Ok(Forwarded::NotLeader(next)) => hint = next.filter(|next| Some(*next) != leader),
                // Nothing happened (no leader yet, the leader not reached): try again.
                Err(error) if error.is_unavailable() => {}
                Err(error) => return Err(error),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ControlError::NoLeader);
            }
            if hint.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Proposes encoded command bytes on this node, which must lead the metadata group.
    /// Returns the encoded reply and the log index (served for other nodes too).
    pub async fn propose_locally(&self, body: Bytes) -> Result<(Bytes, u64), ControlError> {
        let proposal = Command {
            kind: COMMAND_CONTROL,
            tag: 0,
            body,
        };
        let proposed = self.group.propose(proposal).await?;
        match proposed.reply {
            Reply::Data(bytes) => Ok((bytes, proposed.index)),
            Reply::Rejected { reason } => Err(ControlError::Unapplied { reason }),
            Reply::Applied => Err(ControlError::NoReply),
        }
    }

    /// This node's confirmed commit index as the metadata leader (served for other nodes).
    pub async fn read_index_locally(&self) -> Result<u64, ControlError> {
        Ok(self.group.lease_read_barrier().await?)
    }
}

/// The reply `apply` produced, as the proposer reads it: a rejection is the Kinesis error
/// `apply` decided, stored as its type name and message and rebuilt here unchanged.
fn decode_reply(name: &'static str, bytes: &[u8]) -> Result<ControlReply, ControlError> {
    let outcome: ApplyOutcome =
        serde_json::from_slice(bytes).map_err(|source| ControlError::Decode {
            command: name,
            source,
        })?;
    outcome.map_err(|repr| {
        let code =
            ErrorCode::from_type_name(&repr.code).unwrap_or(ErrorCode::InternalFailureException);
        ControlError::Rejected(KinesisError::new(code, repr.message))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command's reply as it travels from the metadata leader to the proposer (and between
    /// nodes of different versions): a rejection is its Kinesis type name and message.
    #[test]
    fn a_rejected_command_reaches_the_proposer_with_its_type_and_message() {
        let (mut machine, _watch) = ControlMachine::new();
        let command = ControlCommand::DeleteStream { name: "s".into() };
        let body = Bytes::from(serde_json::to_vec(&command).unwrap());
        let reply = machine.apply(
            1,
            &Command {
                kind: COMMAND_CONTROL,
                tag: 0,
                body,
            },
        );
        let Reply::Data(bytes) = reply else {
            panic!("a rejection is a reply, got {reply:?}");
        };
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"Err":{"code":"ResourceNotFoundException","message":"Stream s under account  not found."}}"#
        );
        match decode_reply("DeleteStream", &bytes) {
            Err(ControlError::Rejected(error)) => {
                assert_eq!(error.code, ErrorCode::ResourceNotFoundException);
                assert_eq!(error.message, "Stream s under account  not found.");
            }
            other => panic!("expected the rejection, got {other:?}"),
        }
        assert_eq!(
            decode_reply("DeleteStream", br#"{"Ok":"Done"}"#).unwrap(),
            ControlReply::Done
        );
        match decode_reply("DeleteStream", b"{") {
            Err(error @ ControlError::Decode { .. }) => assert!(
                error
                    .to_string()
                    .starts_with("undecodable reply to DeleteStream: "),
                "{error}"
            ),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}
