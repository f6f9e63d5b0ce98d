//! The consumer library (`riffle-consumer`) end to end: two worker processes of one application
//! (the example binary) share a stream on a real node while it is written to, resharded
//! (UpdateShardCount 2 → 4) and one worker is killed with SIGKILL. Every acknowledged record is
//! processed at least once, nothing else is, checkpoints never move backwards, no child shard
//! is touched before its parents are finished, and the survivor takes the dead worker's shards.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;
use std::path::Path;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::types::ScalingType;
use riffle_client::ops::leases::Lease;
use riffle_client::ops::leases::RiffleListLeases;
use riffle_consumer::Client as LeaseClient;
use riffle_control::leases::checkpoint_key;
use riffle_tests::RiffleProcess;
use riffle_tests::client;
use riffle_tests::create_active_stream;
use riffle_tests::stream_name;
use riffle_tests::workspace_binary;

/// A worker process of the example binary, killed when dropped.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(
    endpoint: &str,
    stream: &str,
    id: &str,
    out: &Path,
    fan_out: bool,
) -> WorkerProcess {
    let mut command = Command::new(workspace_binary("riffle-consumer-example").unwrap());
    command
        .args(["--endpoint", endpoint, "--stream", stream])
        .args(["--application", "app", "--worker", id])
        .args(["--lease-seconds", "3", "--out"])
        .arg(out)
        .env("RIFFLE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if fan_out {
        command.args(["--fan-out", "app-efo"]);
    }
    WorkerProcess(command.spawn().unwrap())
}

#[derive(Default)]
struct Observed {
    checkpoints: HashMap<String, String>,
    violations: Vec<String>,
    owners_seen: HashMap<String, HashSet<String>>,
}

/// Watches the lease table: checkpoints only move forward, and a child is owned or
/// checkpointed only once each parent is at SHARD_END.
async fn observe(leases: LeaseClient, observed: Arc<Mutex<Observed>>, stop: Arc<AtomicBool>) {
    let list = RiffleListLeases {
        application_name: "app".to_string(),
    };
    while !stop.load(Ordering::Relaxed) {
        if let Ok(table) = leases.call(&list).await {
            let by_shard: HashMap<&str, &Lease> = table
                .leases
                .iter()
                .map(|lease| (lease.shard_id.as_str(), lease))
                .collect();
            let mut observed = observed.lock().unwrap();
            for lease in &table.leases {
                let shard = lease.shard_id.clone();
                if let Some(owner) = &lease.owner {
                    observed
                        .owners_seen
                        .entry(shard.clone())
                        .or_default()
                        .insert(owner.clone());
                }
                let active = lease.owner.is_some() || lease.checkpoint.is_some();
                for parent in &lease.parent_shard_ids {
                    let finished = by_shard.get(parent.as_str()).is_none_or(|p| {
                        p.checkpoint.as_deref() == Some(riffle_consumer::SHARD_END)
                    });
                    if active && lease.checkpoint.is_some() && !finished {
                        observed.violations.push(format!(
                            "{shard} checkpointed before its parent {parent} finished"
                        ));
                    }
                }
                if let Some(checkpoint) = lease.checkpoint.as_deref() {
                    if let Some(previous) = observed.checkpoints.get(&shard)
                        && checkpoint_key(Some(checkpoint)) < checkpoint_key(Some(previous))
                    {
                        let message = format!(
                            "{shard}: checkpoint moved back from {previous} to {checkpoint}"
                        );
                        observed.violations.push(message);
                    }
                    observed
                        .checkpoints
                        .insert(shard.clone(), checkpoint.to_string());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(fan_out: bool) {
    let dir = tempfile::tempdir().unwrap();
    let node = RiffleProcess::start(&dir.path().join("node")).unwrap();
    let endpoint = node.endpoint();
    let kinesis = client(&endpoint);
    let name = stream_name(if fan_out { "kclefo" } else { "kcl" });
    create_active_stream(&kinesis, &name, 2).await.unwrap();
    let outputs = [dir.path().join("w1.out"), dir.path().join("w2.out")];
    let mut w1 = Some(start_worker(&endpoint, &name, "w1", &outputs[0], fan_out));
    let _w2 = start_worker(&endpoint, &name, "w2", &outputs[1], fan_out);

    let observed = Arc::new(Mutex::new(Observed::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let observer = tokio::spawn(observe(
        LeaseClient::new(vec![endpoint.clone()]),
        observed.clone(),
        stop.clone(),
    ));

    // Writes: 8 partition keys, records `k<key>-<n>`.
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let attempted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (kinesis, name) = (kinesis.clone(), name.clone());
        let (acked, attempted, writing) = (acked.clone(), attempted.clone(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while writing.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..8).map(|key| format!("k{key}-{n:06}")).collect();
                n += 1;
                attempted.lock().unwrap().extend(ids.iter().cloned());
                let entries = ids
                    .iter()
                    .map(|id| {
                        PutRecordsRequestEntry::builder()
                            .partition_key(id.split('-').next().unwrap())
                            .data(Blob::new(id.as_bytes()))
                            .build()
                            .unwrap()
                    })
                    .collect();
                if let Ok(output) = kinesis
                    .put_records()
                    .stream_name(&name)
                    .set_records(Some(entries))
                    .send()
                    .await
                {
                    let mut acked = acked.lock().unwrap();
                    for (id, record) in ids.iter().zip(output.records()) {
                        if record.sequence_number().is_some() {
                            acked.insert(id.clone());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(5)).await;
    kinesis
        .update_shard_count()
        .stream_name(&name)
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // w1 dies holding leases: w2 must take them over from w1's checkpoints.
    let held_by_w1: Vec<String> = {
        let list = RiffleListLeases {
            application_name: "app".to_string(),
        };
        let table = LeaseClient::new(vec![endpoint.clone()])
            .call(&list)
            .await
            .unwrap();
        table
            .leases
            .into_iter()
            .filter(|lease| {
                lease.owner.as_deref() == Some("w1")
                    && lease.checkpoint.as_deref() != Some(riffle_consumer::SHARD_END)
            })
            .map(|lease| lease.shard_id)
            .collect()
    };
    drop(w1.take());
    tokio::time::sleep(Duration::from_secs(6)).await;
    writing.store(false, Ordering::Relaxed);
    writer.await.unwrap();

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let attempted = std::mem::take(&mut *attempted.lock().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let processed = loop {
        let mut processed: BTreeMap<String, usize> = BTreeMap::new();
        for output in &outputs {
            let text = std::fs::read_to_string(output).unwrap_or_default();
            for line in text.lines() {
                let mut fields = line.split(' ');
                if let (Some(_shard), Some(_sequence), Some(id)) =
                    (fields.next(), fields.next(), fields.next())
                {
                    *processed.entry(id.to_string()).or_default() += 1;
                }
            }
        }
        let missing = acked
            .iter()
            .filter(|id| !processed.contains_key(*id))
            .count();
        if missing == 0 {
            break processed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} acknowledged records not processed within 60 s",
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    stop.store(true, Ordering::Relaxed);
    observer.await.unwrap();

    for id in processed.keys() {
        assert!(attempted.contains(id), "phantom record {id}");
    }
    let observed = std::mem::take(&mut *observed.lock().unwrap());
    assert!(observed.violations.is_empty(), "{:?}", observed.violations);
    assert!(
        acked.len() > 500,
        "only {} records acknowledged",
        acked.len()
    );
    // Both parents finished; the four children exist and were worked on.
    let finished = observed
        .checkpoints
        .values()
        .filter(|checkpoint| *checkpoint == riffle_consumer::SHARD_END)
        .count();
    assert!(finished >= 2, "parents finished: {finished}");
    assert!(
        observed.checkpoints.len() >= 5,
        "{:?}",
        observed.checkpoints
    );
    assert!(!held_by_w1.is_empty(), "w1 held leases when it was killed");
    for shard in &held_by_w1 {
        assert!(
            observed.owners_seen[shard].contains("w2"),
            "{shard} was never taken over by w2"
        );
    }
    let ended: usize = outputs
        .iter()
        .map(|output| {
            let text = std::fs::read_to_string(output).unwrap_or_default();
            text.lines().filter(|line| line.starts_with("END ")).count()
        })
        .sum();
    assert!(ended >= 2, "the workers saw both parents end ({ended})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_survive_a_kill_and_a_reshard_by_polling() {
    run(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_survive_a_kill_and_a_reshard_by_fan_out() {
    run(true).await;
}
