//! openraft's log storage over [`riffle_storage::Storage`]: every group's log lives in the
//! node's shared journal, its vote and committed id in the group's key space.

use std::fmt::Debug;
use std::io;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use riffle_storage::GroupId;
use riffle_storage::KvOp;
use riffle_storage::Storage;
use riffle_storage::group_space;

use crate::codec;
use crate::types::Entry;
use crate::types::LogId;
use crate::types::TypeConfig;
use crate::types::Vote;

const VOTE_KEY: &[u8] = b"vote";
/// How often the committed hint is written at most.
const HINT_INTERVAL: Duration = Duration::from_millis(200);
const COMMITTED_KEY: &[u8] = b"committed";

/// The Raft log of one group. Cheap to clone: clones share the storage.
#[derive(Clone)]
pub struct LogStore {
    storage: Arc<dyn Storage>,
    group: GroupId,
    space: Arc<str>,
    last_hint: Arc<Mutex<Option<Instant>>>,
}

impl LogStore {
    pub fn new(storage: Arc<dyn Storage>, group: GroupId) -> Self {
        LogStore {
            storage,
            group,
            space: group_space(group).into(),
            last_hint: Arc::default(),
        }
    }

    /// Whether the committed hint should be written now (and records that it is).
    fn hint_due(&self) -> bool {
        let Ok(mut last) = self.last_hint.lock() else {
            return true;
        };
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < HINT_INTERVAL) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn last_tag(&self) -> io::Result<u64> {
        let bounds = self.storage.bounds(self.group)?;
        let Some(last) = bounds.last else {
            return Ok(0);
        };
        if bounds.purged == Some(last) {
            return Ok(0);
        }
        let records = self
            .storage
            .read(self.group, last.index, last.index + 1, 1)?;
        Ok(records.first().map(|record| record.tag).unwrap_or(0))
    }
}

fn range_to_indexes<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(start) => *start,
        Bound::Excluded(start) => start.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.saturating_add(1),
        Bound::Excluded(end) => *end,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = range_to_indexes(&range);
        if start >= end {
            return Ok(Vec::new());
        }
        let records = self.storage.read(self.group, start, end, usize::MAX)?;
        records.iter().map(codec::record_to_entry).collect()
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, io::Error> {
        // Bounded so that one replication request never has to hold more than a few MiB.
        const REPLICATION_READ_BYTES: usize = 4 << 20;
        let records = self
            .storage
            .read(self.group, start, end, REPLICATION_READ_BYTES)?;
        records.iter().map(codec::record_to_entry).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        match self.storage.kv_get(&self.space, VOTE_KEY)? {
            Some(bytes) => Ok(Some(codec::decode_vote(&bytes)?)),
            None => Ok(None),
        }
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let bounds = self.storage.bounds(self.group)?;
        Ok(LogState {
            last_purged_log_id: bounds.purged.map(codec::position_log_id),
            last_log_id: bounds.last.map(codec::position_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        // A vote must be on disk before the node acts on it (it could otherwise vote twice in a
        // term after a crash), so wait for the flusher.
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let ops = vec![KvOp::Put(VOTE_KEY.to_vec(), codec::encode_vote(vote)?)];
        self.storage.kv_write(
            &self.space,
            ops,
            Some(Box::new(move |result| {
                let _ = done_tx.send(result);
            })),
        )?;
        done_rx
            .await
            .map_err(|_| io::Error::other("storage flusher stopped before the vote was durable"))?
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Only a hint for faster recovery (re-apply on restart without waiting for a leader):
        // written lazily and at most every HINT_INTERVAL (a stale hint is still a correct lower
        // bound), and clamped to the durable log when read back.
        if committed.is_some() && !self.hint_due() {
            return Ok(());
        }
        let op = match committed {
            Some(log_id) => KvOp::Put(COMMITTED_KEY.to_vec(), codec::encode_log_id(&log_id)?),
            None => KvOp::Delete(COMMITTED_KEY.to_vec()),
        };
        self.storage.kv_write(&self.space, vec![op], None)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let Some(bytes) = self.storage.kv_get(&self.space, COMMITTED_KEY)? else {
            return Ok(None);
        };
        let committed = codec::decode_log_id(&bytes)?;
        let bounds = self.storage.bounds(self.group)?;
        let Some(last) = bounds.last else {
            return Ok(None);
        };
        if committed.index <= last.index {
            return Ok(Some(committed));
        }
        // The hint is ahead of the durable log (it cannot be, unless the disk lied): only claim
        // what is actually present.
        tracing::warn!(
            group = self.group,
            committed = committed.index,
            last = last.index,
            "committed hint ahead of log"
        );
        Ok(Some(codec::position_log_id(last)))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut previous_tag = self.last_tag()?;
        let mut records = Vec::new();
        for entry in entries {
            let record = codec::entry_to_record(&entry, previous_tag)?;
            previous_tag = record.tag;
            records.push(record);
        }
        if records.is_empty() {
            callback.io_completed(Ok(()));
            return Ok(());
        }
        self.storage.append(
            self.group,
            records,
            Box::new(move |result| callback.io_completed(result)),
        )?;
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.storage
            .truncate_after(self.group, last_log_id.map(|log_id| log_id.index))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.storage
            .purge_upto(self.group, codec::log_id_position(&log_id))?;
        Ok(())
    }
}
