//! A shard replica: a Raft group whose log is the shard's record log.
//!
//! Write path: the API layer encodes a [`crate::batch`] for the shard and calls
//! [`ShardReplica::append`]; the batch becomes one log entry. It is acknowledged once committed
//! (durable on a majority) and applied. Applying is O(1): the machine only checks that the shard
//! is still open. A record's position is `(entry index, place in batch)`, fixed by the log, so
//! every replica derives the same sequence numbers without storing them.
//!
//! Read path: [`ShardReplica::read`] reads entries straight from storage, never past the last
//! applied entry (nothing uncommitted is visible) and never past the seal.

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use riffle_storage::GroupId;
use riffle_storage::Storage;
use riffle_types::seqnum::Position;
use tokio::sync::watch;

use crate::batch::Batch;
use riffle_raft::Command;
use riffle_raft::Group;
use riffle_raft::GroupError;
use riffle_raft::GroupOptions;
use riffle_raft::Machine;
use riffle_raft::ProposeError;
use riffle_raft::RaftClient;
use riffle_raft::ReplicaId;
use riffle_raft::Reply;
use riffle_raft::record_command;

/// Command kind of a record batch.
pub const COMMAND_RECORDS: u8 = 1;
/// Command kind of the seal that closes a shard (after a split or merge).
pub const COMMAND_SEAL: u8 = 2;

/// Progress of a shard replica that readers watch without locking the Raft group.
#[derive(Debug, Default)]
pub struct ShardProgress {
    /// Last applied log index (0: nothing applied yet).
    applied: AtomicU64,
    /// Log index of the seal entry (0: open).
    sealed_at: AtomicU64,
}

impl ShardProgress {
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn sealed_at(&self) -> Option<u64> {
        match self.sealed_at.load(Ordering::Acquire) {
            0 => None,
            index => Some(index),
        }
    }
}

/// The shard state machine: all it keeps is where (if anywhere) the shard was sealed.
pub struct ShardMachine {
    sealed_at: Option<u64>,
    progress: Arc<ShardProgress>,
    applied_tx: watch::Sender<u64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ShardState {
    sealed_at: Option<u64>,
}

impl Machine for ShardMachine {
    fn apply(&mut self, index: u64, command: &Command) -> Reply {
        match command.kind {
            COMMAND_RECORDS => match self.sealed_at {
                None => Reply::Applied,
                Some(sealed_at) => Reply::Rejected {
                    reason: format!("shard was sealed at log index {sealed_at}"),
                },
            },
            COMMAND_SEAL => {
                let sealed_at = *self.sealed_at.get_or_insert(index);
                self.progress.sealed_at.store(sealed_at, Ordering::Release);
                Reply::Data(Bytes::copy_from_slice(&sealed_at.to_le_bytes()))
            }
            other => Reply::Rejected {
                reason: format!("unknown shard command kind {other}"),
            },
        }
    }

    fn applied_to(&mut self, index: u64) {
        self.progress.applied.store(index, Ordering::Release);
        self.applied_tx.send_replace(index);
    }

    fn state(&self) -> Vec<u8> {
        serde_json::to_vec(&ShardState {
            sealed_at: self.sealed_at,
        })
        .unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> io::Result<()> {
        let state: ShardState = serde_json::from_slice(state)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        self.sealed_at = state.sealed_at;
        self.progress
            .sealed_at
            .store(state.sealed_at.unwrap_or(0), Ordering::Release);
        Ok(())
    }

    fn checkpoint_every_batch(&self) -> bool {
        true
    }
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The shard is sealed: the records were not written and must go to a child shard.
    #[error("shard is closed")]
    Closed,
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error("unexpected reply from the shard state machine: {0}")]
    Unexpected(String),
}

/// A record read back, with its position in the shard.
#[derive(Clone, Debug)]
pub struct ReadRecord {
    pub position: Position,
    pub arrival_ms: u64,
    pub partition_key: Bytes,
    pub data: Bytes,
}

/// One page of a shard read.
#[derive(Clone, Debug)]
pub struct ReadPage {
    pub records: Vec<ReadRecord>,
    /// Where the next read continues.
    pub next: Position,
    /// The shard is sealed and `next` is past its last record: there is nothing more, ever.
    pub end_of_shard: bool,
    /// The last readable entry index when the read happened.
    pub tip: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("shard storage failed: {0}")]
    Storage(#[from] io::Error),
    #[error("corrupt record batch at log index {index}: {reason}")]
    Corrupt { index: u64, reason: String },
}

/// Totals appended through a replica (while it led), for write-rate reports.
#[derive(Debug, Default)]
pub struct WriteMeter {
    bytes: AtomicU64,
    records: AtomicU64,
}

impl WriteMeter {
    fn add(&self, bytes: u64, records: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
    }

    /// `(bytes, records)` appended since the replica started.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.records.load(Ordering::Relaxed),
        )
    }
}

/// A running replica of one shard.
#[derive(Clone)]
pub struct ShardReplica {
    group: Group<ShardMachine>,
    storage: Arc<dyn Storage>,
    progress: Arc<ShardProgress>,
    applied_rx: watch::Receiver<u64>,
    meter: Arc<WriteMeter>,
}

impl ShardReplica {
    /// Starts the replica over its storage (empty for a new shard).
    pub async fn start(
        storage: Arc<dyn Storage>,
        group: GroupId,
        replica: ReplicaId,
        options: &GroupOptions,
        client: Option<Arc<dyn RaftClient>>,
    ) -> Result<Self, GroupError> {
        let progress = Arc::new(ShardProgress::default());
        let (applied_tx, applied_rx) = watch::channel(0);
        let machine = ShardMachine {
            sealed_at: None,
            progress: progress.clone(),
            applied_tx,
        };
        let group = Group::start(storage.clone(), group, replica, machine, options, client).await?;
        Ok(ShardReplica {
            group,
            storage,
            progress,
            applied_rx,
            meter: Arc::default(),
        })
    }

    pub fn group(&self) -> &Group<ShardMachine> {
        &self.group
    }

    pub fn progress(&self) -> &ShardProgress {
        &self.progress
    }

    /// What was appended through this replica.
    pub fn meter(&self) -> &WriteMeter {
        &self.meter
    }

    /// A receiver that changes whenever more of the log is applied (for waiting readers).
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied_rx.clone()
    }

    /// Appends one encoded batch; returns the log index of its entry once it is committed and
    /// applied.
    pub async fn append(&self, batch: Bytes, arrival_ms: u64) -> Result<u64, AppendError> {
        let size = (
            batch.len() as u64,
            u64::from(crate::batch::record_count(&batch)),
        );
        let command = Command {
            kind: COMMAND_RECORDS,
            tag: arrival_ms,
            body: batch,
        };
        let proposed = self.group.propose(command).await?;
        match proposed.reply {
            Reply::Applied => {
                self.meter.add(size.0, size.1);
                Ok(proposed.index)
            }
            Reply::Rejected { .. } => Err(AppendError::Closed),
            Reply::Data(_) => Err(AppendError::Unexpected(
                "data reply to a record batch".into(),
            )),
        }
    }

    /// Seals the shard: no record can be appended after this. Idempotent; returns the log
    /// index of the (first) seal entry.
    pub async fn seal(&self, now_ms: u64) -> Result<u64, AppendError> {
        if let Some(sealed_at) = self.progress.sealed_at() {
            return Ok(sealed_at);
        }
        let command = Command {
            kind: COMMAND_SEAL,
            tag: now_ms,
            body: Bytes::new(),
        };
        let proposed = self.group.propose(command).await?;
        match proposed.reply {
            Reply::Data(bytes) if bytes.len() == 8 => {
                let mut index = [0u8; 8];
                index.copy_from_slice(&bytes);
                Ok(u64::from_le_bytes(index))
            }
            other => Err(AppendError::Unexpected(format!("seal reply {other:?}"))),
        }
    }

    /// The last entry index a reader may see: applied, and before the seal.
    pub fn readable_tip(&self) -> u64 {
        let applied = self.progress.applied();
        match self.progress.sealed_at() {
            Some(sealed_at) => applied.min(sealed_at.saturating_sub(1)),
            None => applied,
        }
    }

    /// The first position still stored (the trim horizon).
    pub fn trim_horizon(&self) -> Result<Position, ReadError> {
        let bounds = self
            .storage
            .bounds(self.group.id())
            .map_err(io::Error::from)?;
        let first = bounds.purged.map(|purged| purged.index + 1).unwrap_or(0);
        Ok(Position {
            entry: first,
            record: 0,
        })
    }

    /// The position just after the newest readable record (LATEST).
    pub fn latest(&self) -> Position {
        Position {
            entry: self.readable_tip() + 1,
            record: 0,
        }
    }

    /// The position of the first record that arrived at or after `timestamp_ms`, or
    /// [`ShardReplica::latest`] when none did.
    pub fn position_at_time(&self, timestamp_ms: u64) -> Result<Position, ReadError> {
        let found = self
            .storage
            .first_index_with_tag_at_least(self.group.id(), timestamp_ms)
            .map_err(io::Error::from)?;
        Ok(match found {
            Some(entry) if entry <= self.readable_tip() => Position { entry, record: 0 },
            _ => self.latest(),
        })
    }

    /// Reads records from `from` on: at most `max_records` records and about `max_bytes` bytes
    /// (at least one record when any is available).
    pub fn read(
        &self,
        from: Position,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadPage, ReadError> {
        let tip = self.readable_tip();
        let sealed_at = self.progress.sealed_at();
        let mut page = ReadPage {
            records: Vec::new(),
            next: from,
            end_of_shard: false,
            tip,
        };
        let horizon = self.trim_horizon()?;
        if page.next < horizon {
            // Trimmed by retention: continue from the oldest record still kept.
            page.next = horizon;
        }
        let mut bytes_read = 0usize;
        'entries: while page.next.entry <= tip
            && page.records.len() < max_records
            && bytes_read < max_bytes
        {
            let budget = max_bytes.saturating_sub(bytes_read).max(1);
            let entries = self
                .storage
                .read(self.group.id(), page.next.entry, tip + 1, budget)
                .map_err(io::Error::from)?;
            if entries.is_empty() {
                break;
            }
            for entry in entries {
                if entry.index > page.next.entry {
                    page.next = Position {
                        entry: entry.index,
                        record: 0,
                    };
                }
                let batch = match record_command(&entry) {
                    Some(command) if command.kind == COMMAND_RECORDS => {
                        Batch::decode(&command.body).map_err(|error| ReadError::Corrupt {
                            index: entry.index,
                            reason: error.to_string(),
                        })?
                    }
                    _ => {
                        page.next = Position {
                            entry: entry.index + 1,
                            record: 0,
                        };
                        continue;
                    }
                };
                let skip = page.next.record as usize;
                for (offset, record) in batch.records.into_iter().enumerate().skip(skip) {
                    if page.records.len() >= max_records
                        || (bytes_read >= max_bytes && !page.records.is_empty())
                    {
                        break 'entries;
                    }
                    bytes_read += record.data.len() + record.partition_key.len();
                    let position = Position {
                        entry: entry.index,
                        record: offset as u32,
                    };
                    page.records.push(ReadRecord {
                        position,
                        arrival_ms: batch.arrival_ms,
                        partition_key: record.partition_key,
                        data: record.data,
                    });
                    page.next = Position {
                        entry: entry.index,
                        record: offset as u32 + 1,
                    };
                }
                page.next = Position {
                    entry: entry.index + 1,
                    record: 0,
                };
            }
        }
        if let Some(sealed_at) = sealed_at {
            page.end_of_shard =
                page.next.entry >= sealed_at && self.progress.applied() >= sealed_at;
        }
        Ok(page)
    }

    /// Arrival time of the newest readable record batch (for MillisBehindLatest).
    pub fn tip_arrival_ms(&self) -> Result<Option<u64>, ReadError> {
        let tip = self.readable_tip();
        if tip == 0 {
            return Ok(None);
        }
        let entries = self
            .storage
            .read(self.group.id(), tip, tip + 1, 1)
            .map_err(io::Error::from)?;
        Ok(entries.first().map(|entry| entry.tag))
    }

    /// Drops every entry whose records all arrived before `cutoff_ms` (retention).
    pub async fn trim_before(&self, cutoff_ms: u64) -> Result<(), GroupError> {
        let first_kept = self
            .storage
            .first_index_with_tag_at_least(self.group.id(), cutoff_ms)
            .map_err(io::Error::from)?;
        let applied = self.progress.applied();
        let upto = match first_kept {
            Some(first_kept) => first_kept.saturating_sub(1).min(applied),
            None => applied,
        };
        let bounds = self
            .storage
            .bounds(self.group.id())
            .map_err(io::Error::from)?;
        let purged = bounds.purged.map(|p| p.index).unwrap_or(0);
        if upto <= purged {
            return Ok(());
        }
        self.group.snapshot_and_purge(upto).await
    }

    pub async fn shutdown(&self) {
        self.group.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use riffle_storage::MemStorage;

    use super::*;
    use crate::batch::BatchBuilder;
    use riffle_raft::ReplicaNode;

    async fn single_replica(storage: Arc<dyn Storage>) -> ShardReplica {
        storage.create_group(7).unwrap();
        let replica = ShardReplica::start(storage, 7, 1, &GroupOptions::shard(), None)
            .await
            .unwrap();
        replica
            .group()
            .bootstrap(BTreeMap::from([(1, ReplicaNode::default())]))
            .await
            .unwrap();
        replica.group().campaign_if_sole_voter().await.unwrap();
        replica
    }

    fn batch(arrival_ms: u64, records: &[&str]) -> Bytes {
        let mut builder = BatchBuilder::new(arrival_ms, 64);
        for record in records {
            builder.push("key", record.as_bytes());
        }
        builder.finish()
    }

    fn datas(page: &ReadPage) -> Vec<String> {
        page.records
            .iter()
            .map(|record| String::from_utf8_lossy(&record.data).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn appended_batches_read_back_at_their_positions() {
        let replica = single_replica(Arc::new(MemStorage::new())).await;
        let first = replica
            .append(batch(1_000, &["a", "b"]), 1_000)
            .await
            .unwrap();
        let second = replica.append(batch(2_000, &["c"]), 2_000).await.unwrap();
        assert!(second > first);
        let (bytes, records) = replica.meter().totals();
        assert_eq!(records, 3, "the meter counts appended records");
        assert!(bytes > 3, "and their encoded bytes");

        let page = replica
            .read(
                Position {
                    entry: 0,
                    record: 0,
                },
                100,
                1 << 20,
            )
            .unwrap();
        assert_eq!(datas(&page), ["a", "b", "c"]);
        assert_eq!(
            page.records[1].position,
            Position {
                entry: first,
                record: 1
            }
        );
        assert_eq!(
            page.records[2].position,
            Position {
                entry: second,
                record: 0
            }
        );
        assert_eq!(page.records[2].arrival_ms, 2_000);
        assert!(!page.end_of_shard);

        // Paging by record count resumes mid-batch.
        let page = replica
            .read(
                Position {
                    entry: 0,
                    record: 0,
                },
                1,
                1 << 20,
            )
            .unwrap();
        assert_eq!(datas(&page), ["a"]);
        let page = replica.read(page.next, 10, 1 << 20).unwrap();
        assert_eq!(datas(&page), ["b", "c"]);
        assert_eq!(page.next, replica.latest());

        assert_eq!(
            replica.position_at_time(1_500).unwrap(),
            Position {
                entry: second,
                record: 0
            }
        );
        assert_eq!(replica.position_at_time(9_000).unwrap(), replica.latest());
        replica.shutdown().await;
    }

    #[tokio::test]
    async fn sealed_shards_reject_writes_and_end() {
        let replica = single_replica(Arc::new(MemStorage::new())).await;
        replica.append(batch(1, &["kept"]), 1).await.unwrap();
        let sealed_at = replica.seal(2).await.unwrap();
        assert_eq!(
            replica.seal(3).await.unwrap(),
            sealed_at,
            "sealing twice keeps the first seal"
        );
        assert!(matches!(
            replica.append(batch(4, &["late"]), 4).await,
            Err(AppendError::Closed)
        ));

        let page = replica
            .read(
                Position {
                    entry: 0,
                    record: 0,
                },
                100,
                1 << 20,
            )
            .unwrap();
        assert_eq!(datas(&page), ["kept"], "nothing after the seal is visible");
        assert!(page.end_of_shard);
        replica.shutdown().await;
    }

    #[tokio::test]
    async fn retention_trims_old_entries_only() {
        let replica = single_replica(Arc::new(MemStorage::new())).await;
        replica.append(batch(1_000, &["old"]), 1_000).await.unwrap();
        let young = replica
            .append(batch(5_000, &["young"]), 5_000)
            .await
            .unwrap();
        replica.trim_before(3_000).await.unwrap();
        assert_eq!(
            replica.trim_horizon().unwrap(),
            Position {
                entry: young,
                record: 0
            }
        );
        let page = replica
            .read(
                Position {
                    entry: 0,
                    record: 0,
                },
                100,
                1 << 20,
            )
            .unwrap();
        assert_eq!(datas(&page), ["young"]);
        replica.shutdown().await;
    }

    #[tokio::test]
    async fn a_restarted_replica_keeps_its_log_and_seal() {
        let storage: Arc<dyn Storage> = Arc::new(MemStorage::new());
        let replica = single_replica(storage.clone()).await;
        let entry = replica.append(batch(10, &["x"]), 10).await.unwrap();
        let sealed_at = replica.seal(11).await.unwrap();
        replica.shutdown().await;

        let restarted = ShardReplica::start(storage, 7, 1, &GroupOptions::shard(), None)
            .await
            .unwrap();
        restarted.group().campaign_if_sole_voter().await.unwrap();
        restarted
            .group()
            .wait_for_leader(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        // The recovered log is re-applied before the replica serves again.
        restarted.group().read_barrier().await.unwrap();
        assert_eq!(restarted.progress().sealed_at(), Some(sealed_at));
        let page = restarted
            .read(
                Position {
                    entry: 0,
                    record: 0,
                },
                10,
                1 << 20,
            )
            .unwrap();
        assert_eq!(page.records[0].position, Position { entry, record: 0 });
        assert!(page.end_of_shard);
        restarted.shutdown().await;
    }
}
