//! The metadata group: its state machine and the handle the rest of the node uses to propose
//! control commands and read the agreed state.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use riffle_shard::consensus::Command;
use riffle_shard::consensus::Group;
use riffle_shard::consensus::Machine;
use riffle_shard::consensus::ProposeError;
use riffle_shard::consensus::Reply;
use riffle_types::ErrorCode;
use riffle_types::KinesisError;
use serde::Deserialize;
use serde::Serialize;
use tokio::sync::watch;

use crate::command;
use crate::command::ControlCommand;
use crate::command::ControlReply;
use crate::model::ControlState;

/// The metadata group's id on every node.
pub const CONTROL_GROUP: u64 = 0;
/// Command kind of a control command.
pub const COMMAND_CONTROL: u8 = 1;

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
}

impl ControlMachine {
    pub fn new() -> (ControlMachine, watch::Receiver<Arc<ControlState>>) {
        let (published, receiver) = watch::channel(Arc::new(ControlState::default()));
        (
            ControlMachine {
                state: ControlState::default(),
                published,
            },
            receiver,
        )
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

    fn applied_to(&mut self, _index: u64) {
        // Cheap: streams are shared `Arc`s, only the maps are copied.
        self.published.send_replace(Arc::new(self.state.clone()));
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

/// Proposes control commands and reads the agreed state.
#[derive(Clone)]
pub struct ControlPlane {
    group: Group<ControlMachine>,
    state: watch::Receiver<Arc<ControlState>>,
}

impl ControlPlane {
    pub fn new(group: Group<ControlMachine>, state: watch::Receiver<Arc<ControlState>>) -> Self {
        ControlPlane { group, state }
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

    /// Returns once this node leads the metadata group and has applied everything committed
    /// before the call.
    pub async fn propose_barrier(&self) -> Result<(), KinesisError> {
        self.group
            .read_barrier()
            .await
            .map_err(|error| KinesisError::unavailable(format!("metadata group: {error}")))
    }

    /// Proposes a command; returns once it is committed and applied on this node.
    pub async fn propose(&self, command: ControlCommand) -> Result<ControlReply, KinesisError> {
        let name = command.name();
        let body = serde_json::to_vec(&command)
            .map_err(|error| KinesisError::internal(format!("cannot encode {name}: {error}")))?;
        let proposal = Command {
            kind: COMMAND_CONTROL,
            tag: 0,
            body: Bytes::from(body),
        };
        let proposed = self
            .group
            .propose(proposal)
            .await
            .map_err(|error| match error {
                ProposeError::NotLeader { .. } => KinesisError::unavailable(format!(
                    "the metadata group has no leader on this node right now ({name})"
                )),
                ProposeError::Ambiguous(reason) => KinesisError::internal(format!(
                    "{name} may or may not have taken effect (leadership changed): {reason}"
                )),
                ProposeError::Stopped(reason) => {
                    KinesisError::unavailable(format!("metadata group stopped: {reason}"))
                }
            })?;
        match proposed.reply {
            Reply::Data(bytes) => {
                let outcome: ApplyOutcome = serde_json::from_slice(&bytes).map_err(|error| {
                    KinesisError::internal(format!("undecodable reply to {name}: {error}"))
                })?;
                outcome.map_err(|repr| {
                    let code = ErrorCode::from_type_name(&repr.code)
                        .unwrap_or(ErrorCode::InternalFailureException);
                    KinesisError::new(code, repr.message)
                })
            }
            Reply::Rejected { reason } => Err(KinesisError::internal(format!(
                "{name} was rejected: {reason}"
            ))),
            Reply::Applied => Err(KinesisError::internal(format!("{name} produced no reply"))),
        }
    }
}
