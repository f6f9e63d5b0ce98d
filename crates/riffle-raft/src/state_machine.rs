//! openraft's state machine interface over an application [`Machine`]. The adapter keeps the
//! Raft bookkeeping (applied log id, membership, snapshots) and persists it in the group's key
//! space; the machine only applies commands.

use std::io;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use futures_util::Stream;
use futures_util::TryStreamExt;
use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;
use riffle_storage::GroupId;
use riffle_storage::KvOp;
use riffle_storage::Storage;
use riffle_storage::group_space;
use tokio::sync::Mutex;

use crate::codec::AppliedRepr;
use crate::types::Command;
use crate::types::LogId;
use crate::types::Reply;
use crate::types::Snapshot;
use crate::types::SnapshotMeta;
use crate::types::StoredMembership;
use crate::types::TypeConfig;

const APPLIED_KEY: &[u8] = b"applied";
/// How often a checkpointing machine's state is written at most. A stale checkpoint only means
/// more replay on restart: the log is durable.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
const SNAPSHOT_KEY: &[u8] = b"snapshot";

/// An application state machine driven by committed commands.
pub trait Machine: Send + 'static {
    /// Applies one committed command at log `index`. Must be deterministic: every replica
    /// applying the same log must reach the same state and reply.
    fn apply(&mut self, index: u64, command: &Command) -> Reply;

    /// Called after every applied entry (blank and membership entries included), before the
    /// proposer is answered: whatever the machine publishes here is visible to a client as soon
    /// as its write returns.
    fn applied_to(&mut self, index: u64);

    /// The machine's state, for snapshots and checkpoints.
    fn state(&self) -> Vec<u8>;

    /// Replaces the machine's state with one produced by [`Machine::state`].
    fn restore(&mut self, state: &[u8]) -> io::Result<()>;

    /// Whether to checkpoint `state()` as entries are applied (lazily, without waiting for the
    /// disk, at most every [`CHECKPOINT_INTERVAL`]). Right for tiny states: recovery then
    /// replays almost nothing. Large states rely on snapshots and replay the log since the last.
    fn checkpoint_every_batch(&self) -> bool;
}

struct Inner<M> {
    machine: M,
    applied: Option<LogId>,
    membership: StoredMembership,
    last_checkpoint: Option<Instant>,
}

/// The adapter openraft drives. Cheap to clone.
pub struct StateMachineStore<M: Machine> {
    inner: Arc<Mutex<Inner<M>>>,
    storage: Arc<dyn Storage>,
    space: Arc<str>,
}

impl<M: Machine> Clone for StateMachineStore<M> {
    fn clone(&self) -> Self {
        StateMachineStore {
            inner: self.inner.clone(),
            storage: self.storage.clone(),
            space: self.space.clone(),
        }
    }
}

impl<M: Machine> StateMachineStore<M> {
    /// Loads the machine's last checkpoint or snapshot (whichever is newer) from storage.
    pub fn open(storage: Arc<dyn Storage>, group: GroupId, mut machine: M) -> io::Result<Self> {
        let space: Arc<str> = group_space(group).into();
        let mut applied = None;
        let mut membership = StoredMembership::default();
        let checkpoint = load_repr(&*storage, &space, APPLIED_KEY)?;
        let snapshot = load_repr(&*storage, &space, SNAPSHOT_KEY)?;
        let newest = match (checkpoint, snapshot) {
            (Some(checkpoint), Some(snapshot)) => {
                if checkpoint.applied() >= snapshot.applied() {
                    Some(checkpoint)
                } else {
                    Some(snapshot)
                }
            }
            (checkpoint, snapshot) => checkpoint.or(snapshot),
        };
        if let Some(repr) = newest {
            machine.restore(&repr.state)?;
            applied = repr.applied();
            membership = repr.stored_membership()?;
            if let Some(applied) = &applied {
                machine.applied_to(applied.index);
            }
        }
        let inner = Inner {
            machine,
            applied,
            membership,
            last_checkpoint: None,
        };
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(inner)),
            storage,
            space,
        })
    }

    /// Writes the machine's applied position and state, lazily: the log is durable, so a lost
    /// checkpoint only means a little more replay on restart.
    fn write_checkpoint(&self, inner: &mut Inner<M>) -> io::Result<()> {
        inner.last_checkpoint = Some(Instant::now());
        let repr = AppliedRepr::new(
            inner.applied.as_ref(),
            &inner.membership,
            inner.machine.state(),
        )?;
        self.storage.kv_write(
            &self.space,
            vec![KvOp::Put(APPLIED_KEY.to_vec(), repr.encode()?)],
            None,
        )?;
        Ok(())
    }

    /// Runs `f` on the machine (for reads of machine state that are not published elsewhere).
    pub async fn with_machine<T>(&self, f: impl FnOnce(&M) -> T) -> T {
        let inner = self.inner.lock().await;
        f(&inner.machine)
    }
}

fn load_repr(storage: &dyn Storage, space: &str, key: &[u8]) -> io::Result<Option<AppliedRepr>> {
    match storage.kv_get(space, key)? {
        Some(bytes) => Ok(Some(AppliedRepr::decode(&bytes)?)),
        None => Ok(None),
    }
}

/// Builds a snapshot of the machine as of its last applied entry.
pub struct SnapshotBuilder<M: Machine> {
    store: StateMachineStore<M>,
}

impl<M: Machine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<M> {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let repr = {
            let inner = self.store.inner.lock().await;
            AppliedRepr::new(
                inner.applied.as_ref(),
                &inner.membership,
                inner.machine.state(),
            )?
        };
        let bytes = repr.encode()?;
        // Durable before openraft may purge the log the snapshot covers.
        write_durably(
            &*self.store.storage,
            &self.store.space,
            SNAPSHOT_KEY,
            bytes.clone(),
        )
        .await?;
        let meta = SnapshotMeta {
            last_log_id: repr.applied(),
            last_membership: repr.stored_membership()?,
        };
        Ok(Snapshot {
            meta,
            snapshot: bytes,
        })
    }
}

async fn write_durably(
    storage: &dyn Storage,
    space: &str,
    key: &[u8],
    value: Vec<u8>,
) -> io::Result<()> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    storage.kv_write(
        space,
        vec![KvOp::Put(key.to_vec(), value)],
        Some(Box::new(move |result| {
            let _ = done_tx.send(result);
        })),
    )?;
    done_rx
        .await
        .map_err(|_| io::Error::other("storage flusher stopped before the write was durable"))?
}

impl<M: Machine> RaftStateMachine<TypeConfig> for StateMachineStore<M> {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder<M>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.inner.lock().await;
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut inner = self.inner.lock().await;
        let mut applied_any = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::Applied,
                EntryPayload::Normal(command) => inner.machine.apply(log_id.index, &command),
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(log_id), membership);
                    Reply::Applied
                }
            };
            inner.applied = Some(log_id);
            inner.machine.applied_to(log_id.index);
            applied_any = true;
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        if !applied_any {
            return Ok(());
        }
        let checkpoint_due = inner
            .last_checkpoint
            .is_none_or(|at| at.elapsed() >= CHECKPOINT_INTERVAL);
        if inner.machine.checkpoint_every_batch() && checkpoint_due {
            self.write_checkpoint(&mut inner)?;
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let repr = AppliedRepr::decode(&snapshot)?;
        write_durably(&*self.storage, &self.space, SNAPSHOT_KEY, snapshot).await?;
        let mut inner = self.inner.lock().await;
        inner.machine.restore(&repr.state)?;
        inner.applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        if let Some(applied) = inner.applied {
            inner.machine.applied_to(applied.index);
        }
        if inner.machine.checkpoint_every_batch() {
            self.write_checkpoint(&mut inner)?;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(bytes) = self.storage.kv_get(&self.space, SNAPSHOT_KEY)? else {
            return Ok(None);
        };
        let repr = AppliedRepr::decode(&bytes)?;
        let meta = SnapshotMeta {
            last_log_id: repr.applied(),
            last_membership: repr.stored_membership()?,
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: bytes,
        }))
    }
}
