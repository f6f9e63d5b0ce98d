//! The worker: lease renewal, taking and balancing, and one task per held shard (see the
//! crate documentation for the rules).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use riffle_client::Client;
use riffle_client::Error;
use riffle_client::ops::leases::Lease;
use riffle_client::ops::leases::LeaseCounter;
use riffle_client::ops::leases::LeaseTable;
use riffle_client::ops::leases::RiffleCheckpoint;
use riffle_client::ops::leases::RiffleListLeases;
use riffle_client::ops::leases::RiffleReleaseLease;
use riffle_client::ops::leases::RiffleRenewLeases;
use riffle_client::ops::leases::RiffleSyncLeases;
use riffle_client::ops::leases::RiffleTakeLease;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Record;
use crate::SHARD_END;
use crate::reader::ReadMode;
use crate::reader::ShardReader;
use crate::reader::Start;

/// What an application does with a shard's records. One processor per shard, called from that
/// shard's task, in order.
pub trait ShardProcessor: Send + 'static {
    /// Handles a batch of the shard's records. When it returns, the worker checkpoints the
    /// batch's last record (so a batch may be seen again after a failover, never skipped).
    fn process(&mut self, shard_id: &str, records: &[Record]);
    /// Every record of the shard was processed (it was split or merged; its children follow).
    fn shard_ended(&mut self, _shard_id: &str) {}
    /// The lease was lost (taken by another worker, or not renewed in time): stop.
    fn lease_lost(&mut self, _shard_id: &str) {}
}

/// A worker's settings.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Workers with the same application name share the stream's shards.
    pub application: String,
    pub stream: String,
    /// Unique among the application's workers.
    pub worker_id: String,
    /// Where a shard without a checkpoint starts: TrimHorizon or Latest.
    pub initial_position: Start,
    pub read_mode: ReadMode,
    /// A lease nobody renewed for this long is taken over.
    pub lease_duration: Duration,
}

impl WorkerConfig {
    pub fn new(application: &str, stream: &str, worker_id: &str) -> WorkerConfig {
        WorkerConfig {
            application: application.to_string(),
            stream: stream.to_string(),
            worker_id: worker_id.to_string(),
            initial_position: Start::TrimHorizon,
            read_mode: ReadMode::Polling {
                idle: Duration::from_millis(250),
            },
            lease_duration: Duration::from_secs(10),
        }
    }
}

type Factory = Arc<dyn Fn(&str) -> Box<dyn ShardProcessor> + Send + Sync>;

/// A shard this worker processes.
struct Held {
    counter: u64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Set by the task once the shard is processed to its end and checkpointed so.
    finished: Arc<AtomicBool>,
}

/// One worker of an application.
pub struct Worker {
    client: Client,
    config: WorkerConfig,
    factory: Factory,
    held: HashMap<String, Held>,
    /// Each lease's counter and owner as last seen, and since when (this worker's clock).
    seen: HashMap<String, (u64, Option<String>, Instant)>,
    last_renewed: Instant,
}

impl Worker {
    pub fn new(
        client: Client,
        config: WorkerConfig,
        factory: impl Fn(&str) -> Box<dyn ShardProcessor> + Send + Sync + 'static,
    ) -> Worker {
        Worker {
            client,
            config,
            factory: Arc::new(factory),
            held: HashMap::new(),
            seen: HashMap::new(),
            last_renewed: Instant::now(),
        }
    }

    /// Runs until `shutdown` completes; then stops its shard tasks and releases its leases.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let tick = (self.config.lease_duration / 3).max(Duration::from_millis(100));
        let mut ticks = 0u64;
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.step(ticks.is_multiple_of(10)).await {
                tracing::warn!(worker = %self.config.worker_id, %error, "lease step failed");
            }
            ticks += 1;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(tick) => {}
            }
        }
        let held: Vec<String> = self.held.keys().cloned().collect();
        for shard_id in held {
            if let Some(held) = self.held.remove(&shard_id) {
                held.stop.send_replace(true);
                let _ = held.task.await;
                let _ = self.client.call(&self.release(&shard_id)).await;
            }
        }
    }

    fn release(&self, shard_id: &str) -> RiffleReleaseLease {
        RiffleReleaseLease {
            application_name: self.config.application.clone(),
            shard_id: shard_id.to_string(),
            owner: self.config.worker_id.clone(),
        }
    }

    /// Which shards this worker holds now.
    pub fn held(&self) -> Vec<String> {
        self.held.keys().cloned().collect()
    }

    async fn step(&mut self, sync: bool) -> Result<(), Error> {
        self.renew().await?;
        let finished: Vec<String> = self
            .held
            .iter()
            .filter(|(_, held)| held.finished.load(Ordering::Acquire) || held.task.is_finished())
            .map(|(shard_id, _)| shard_id.clone())
            .collect();
        for shard_id in &finished {
            self.held.remove(shard_id);
            let _ = self.client.call(&self.release(shard_id)).await;
        }
        // New shards (after a reshard) get leases when the table is synced.
        let sync_leases = RiffleSyncLeases {
            application_name: self.config.application.clone(),
            stream_name: self.config.stream.clone(),
        };
        let table: LeaseTable = if sync || !finished.is_empty() || self.seen.is_empty() {
            self.client.call(&sync_leases).await?
        } else {
            let list = RiffleListLeases {
                application_name: self.config.application.clone(),
            };
            match self.client.call(&list).await {
                Ok(table) => table,
                Err(error) if error.is("ResourceNotFoundException") => {
                    self.client.call(&sync_leases).await?
                }
                Err(error) => return Err(error),
            }
        };
        let leases = table.leases;
        let now = Instant::now();
        for lease in &leases {
            let changed = self
                .seen
                .get(&lease.shard_id)
                .is_none_or(|(counter, owner, _)| {
                    *counter != lease.counter || *owner != lease.owner
                });
            if changed {
                self.seen.insert(
                    lease.shard_id.clone(),
                    (lease.counter, lease.owner.clone(), now),
                );
            }
        }
        self.balance(&leases, now).await;
        Ok(())
    }

    /// Renews every held lease; the ones that could not be renewed are lost.
    async fn renew(&mut self) -> Result<(), Error> {
        if self.held.is_empty() {
            self.last_renewed = Instant::now();
            return Ok(());
        }
        let leases: Vec<LeaseCounter> = self
            .held
            .iter()
            .filter(|(_, held)| !held.finished.load(Ordering::Acquire))
            .map(|(shard_id, held)| LeaseCounter {
                shard_id: shard_id.clone(),
                counter: held.counter,
            })
            .collect();
        let input = RiffleRenewLeases {
            application_name: self.config.application.clone(),
            owner: self.config.worker_id.clone(),
            leases,
        };
        let renewed = match self.client.call(&input).await {
            Ok(renewed) => renewed,
            Err(error) => {
                // Unrenewed for a whole lease duration: others may hold them by now.
                if self.last_renewed.elapsed() >= self.config.lease_duration {
                    self.drop_all();
                }
                return Err(error);
            }
        };
        self.last_renewed = Instant::now();
        let renewed: HashMap<String, u64> = renewed
            .leases
            .into_iter()
            .map(|lease| (lease.shard_id, lease.counter))
            .collect();
        let lost: Vec<String> = self
            .held
            .iter()
            .filter(|(shard_id, held)| {
                !held.finished.load(Ordering::Acquire) && !renewed.contains_key(*shard_id)
            })
            .map(|(shard_id, _)| shard_id.clone())
            .collect();
        for (shard_id, counter) in renewed {
            if let Some(held) = self.held.get_mut(&shard_id) {
                held.counter = counter;
            }
        }
        for shard_id in lost {
            tracing::info!(worker = %self.config.worker_id, shard = %shard_id, "lease lost");
            if let Some(held) = self.held.remove(&shard_id) {
                held.stop.send_replace(true);
            }
        }
        Ok(())
    }

    fn drop_all(&mut self) {
        for (_, held) in self.held.drain() {
            held.stop.send_replace(true);
        }
    }

    /// Takes free or expired leases up to a fair share, or one from the busiest worker.
    async fn balance(&mut self, leases: &[Lease], now: Instant) {
        let view = View {
            me: &self.config.worker_id,
            held: &self.held.keys().cloned().collect(),
            seen: &self.seen,
            now,
            lease_duration: self.config.lease_duration,
        };
        let wanted: Vec<Lease> = choose(&view, leases).into_iter().cloned().collect();
        for lease in &wanted {
            self.take(lease).await;
        }
    }

    async fn take(&mut self, lease: &Lease) {
        let input = RiffleTakeLease {
            application_name: self.config.application.clone(),
            shard_id: lease.shard_id.clone(),
            owner: self.config.worker_id.clone(),
            counter: lease.counter,
        };
        let taken = match self.client.call(&input).await {
            Ok(taken) => taken.lease,
            Err(error) => {
                tracing::debug!(shard = %lease.shard_id, %error, "lease not taken");
                return;
            }
        };
        tracing::info!(
            worker = %self.config.worker_id,
            shard = %lease.shard_id,
            from = lease.owner.as_deref().unwrap_or("nobody"),
            checkpoint = taken.checkpoint.as_deref().unwrap_or("none"),
            "lease taken"
        );
        let start = match taken.checkpoint.as_deref() {
            Some(SHARD_END) => return,
            Some(number) => Start::AfterSequenceNumber(number.to_string()),
            None => self.config.initial_position.clone(),
        };
        let (stop, stopped) = watch::channel(false);
        let finished = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(process_shard(
            self.client.clone(),
            self.config.clone(),
            lease.shard_id.clone(),
            start,
            (self.factory)(&lease.shard_id),
            stopped,
            finished.clone(),
        ));
        self.held.insert(
            lease.shard_id.clone(),
            Held {
                counter: taken.counter,
                stop,
                task,
                finished,
            },
        );
    }
}

/// Reads one shard, hands its batches to the processor and checkpoints after each, until the
/// shard ends or the lease is lost.
async fn process_shard(
    client: Client,
    config: WorkerConfig,
    shard_id: String,
    start: Start,
    mut processor: Box<dyn ShardProcessor>,
    mut stop: watch::Receiver<bool>,
    finished: Arc<AtomicBool>,
) {
    let mut reader = ShardReader::new(
        client.clone(),
        &config.stream,
        &shard_id,
        config.read_mode.clone(),
        start,
    );
    let checkpoint = |at: String| {
        let input = RiffleCheckpoint {
            application_name: config.application.clone(),
            shard_id: shard_id.clone(),
            owner: config.worker_id.clone(),
            checkpoint: at,
        };
        let client = client.clone();
        async move { client.call(&input).await }
    };
    loop {
        let batch = tokio::select! {
            _ = stop.changed() => {
                processor.lease_lost(&shard_id);
                return;
            }
            batch = reader.next() => batch,
        };
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::debug!(shard = %shard_id, %error, "read failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if *stop.borrow() {
            processor.lease_lost(&shard_id);
            return;
        }
        if let Some(last) = batch.records.last() {
            processor.process(&shard_id, &batch.records);
            if let Err(error) = checkpoint(last.sequence_number.clone()).await {
                if error.is("ResourceInUseException") {
                    processor.lease_lost(&shard_id);
                    return;
                }
                // The next batch's checkpoint covers this one.
                tracing::debug!(shard = %shard_id, %error, "checkpoint failed");
            }
        }
        if batch.end_of_shard {
            loop {
                match checkpoint(SHARD_END.to_string()).await {
                    Ok(_) => break,
                    Err(error) if error.is("ResourceInUseException") => {
                        processor.lease_lost(&shard_id);
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
            processor.shard_ended(&shard_id);
            finished.store(true, Ordering::Release);
            return;
        }
    }
}

/// What a worker knows when it decides which leases to take.
struct View<'a> {
    me: &'a str,
    held: &'a std::collections::HashSet<String>,
    seen: &'a HashMap<String, (u64, Option<String>, Instant)>,
    now: Instant,
    lease_duration: Duration,
}

/// The leases to take: free or expired ones whose parents are finished, up to a fair share of
/// the processable shards among the live workers; when none is free, one lease of a worker
/// holding more than its share.
fn choose<'l>(view: &View<'_>, leases: &'l [Lease]) -> Vec<&'l Lease> {
    let by_shard: BTreeMap<&str, &Lease> = leases
        .iter()
        .map(|lease| (lease.shard_id.as_str(), lease))
        .collect();
    let done = |shard_id: &str| {
        by_shard
            .get(shard_id)
            .is_none_or(|lease| lease.checkpoint.as_deref() == Some(SHARD_END))
    };
    let expired = |lease: &Lease| {
        lease.owner.is_none()
            || view
                .seen
                .get(&lease.shard_id)
                .is_some_and(|(_, _, since)| view.now.duration_since(*since) >= view.lease_duration)
    };
    // Shards that can be processed now: not finished, parents finished.
    let ready: Vec<&Lease> = leases
        .iter()
        .filter(|lease| lease.checkpoint.as_deref() != Some(SHARD_END))
        .filter(|lease| lease.parent_shard_ids.iter().all(|parent| done(parent)))
        .collect();
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for lease in &ready {
        if let Some(owner) = &lease.owner
            && !expired(lease)
        {
            *owners.entry(owner.as_str()).or_default() += 1;
        }
    }
    owners.entry(view.me).or_insert(0);
    let mine = view.held.len();
    let target = ready.len().div_ceil(owners.len().max(1));
    if mine >= target {
        return Vec::new();
    }
    // Free: nobody renews it, or it is this worker's own from an earlier run.
    let mut wanted: Vec<&Lease> = ready
        .iter()
        .filter(|lease| !view.held.contains(&lease.shard_id))
        .filter(|lease| expired(lease) || lease.owner.as_deref() == Some(view.me))
        .copied()
        .collect();
    wanted.truncate(target - mine);
    if wanted.is_empty() {
        // Nothing free: take one lease from a worker holding more than its share.
        let busiest = owners
            .iter()
            .filter(|(owner, _)| **owner != view.me)
            .max_by_key(|(owner, count)| (**count, **owner));
        if let Some((owner, count)) = busiest
            && *count > target
            && let Some(lease) = ready
                .iter()
                .find(|lease| lease.owner.as_deref() == Some(*owner))
        {
            wanted.push(lease);
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(
        shard: &str,
        parents: &[&str],
        owner: Option<&str>,
        checkpoint: Option<&str>,
    ) -> Lease {
        Lease {
            shard_id: shard.into(),
            parent_shard_ids: parents.iter().map(|p| p.to_string()).collect(),
            owner: owner.map(str::to_string),
            counter: 1,
            checkpoint: checkpoint.map(str::to_string),
        }
    }

    fn choose_for(me: &str, held: &[&str], leases: &[Lease], stale: &[&str]) -> Vec<String> {
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(60);
        let seen: HashMap<String, (u64, Option<String>, Instant)> = leases
            .iter()
            .map(|l| {
                let since = if stale.contains(&l.shard_id.as_str()) {
                    long_ago
                } else {
                    now
                };
                (l.shard_id.clone(), (l.counter, l.owner.clone(), since))
            })
            .collect();
        let held = held.iter().map(|h| h.to_string()).collect();
        let view = View {
            me,
            held: &held,
            seen: &seen,
            now,
            lease_duration: Duration::from_secs(10),
        };
        choose(&view, leases)
            .into_iter()
            .map(|l| l.shard_id.clone())
            .collect()
    }

    #[test]
    fn children_wait_for_every_parent_to_finish() {
        let leases = [
            lease("p0", &[], Some("a"), Some("100")),
            lease("p1", &[], None, Some(SHARD_END)),
            lease("c2", &["p0", "p1"], None, None),
        ];
        assert!(
            choose_for("b", &[], &leases, &[]).is_empty(),
            "p0 is still being read"
        );
        let leases = [
            lease("p0", &[], Some("a"), Some(SHARD_END)),
            lease("p1", &[], None, Some(SHARD_END)),
            lease("c2", &["p0", "p1"], None, None),
        ];
        assert_eq!(choose_for("b", &[], &leases, &[]), ["c2"]);
    }

    #[test]
    fn a_dead_workers_leases_are_taken_and_live_ones_are_not() {
        let leases = [
            lease("s0", &[], Some("a"), Some("1")),
            lease("s1", &[], Some("dead"), Some("2")),
        ];
        // a renews s0 (its counter moves), nobody renews s1.
        assert_eq!(choose_for("b", &[], &leases, &["s1"]), ["s1"]);
        // While both are renewed, b (the third worker, share 1) takes nothing.
        assert!(choose_for("b", &[], &leases, &[]).is_empty());
    }

    #[test]
    fn a_worker_takes_its_share_and_steals_at_most_one() {
        let leases: Vec<Lease> = (0..4)
            .map(|i| lease(&format!("s{i}"), &[], Some("a"), None))
            .collect();
        // a holds all four and renews them: b steals one (a has more than its share of 2).
        assert_eq!(choose_for("b", &[], &leases, &[]).len(), 1);
        // Two each: nothing to do.
        let mut even = leases.clone();
        even[2].owner = Some("b".into());
        even[3].owner = Some("b".into());
        assert!(choose_for("b", &["s2", "s3"], &even, &[]).is_empty());
    }
}
