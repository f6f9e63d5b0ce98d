//! `--mode nats`: the same closed-loop load against NATS JetStream, for side-by-side numbers
//! (`scripts/bench-compare.sh`). A "shard" is a JetStream stream (`<stream>-<i>`, one Raft group
//! each, like a Riffle shard), created fresh with `--nats-replicas` replicas on file storage.
//! Connections are spread over the given servers. Each connection publishes a batch of `--batch` messages of `--record-bytes` random bytes (the
//! same payloads Riffle gets as PutRecords records) to random streams and waits for every ack,
//! then sends the next batch; a batch's latency is from its first publish to its last ack.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream;
use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::Rng;

use crate::Args;

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let first = args.nats_url.first().context("no --nats-url")?;
    let admin = async_nats::connect(first.as_str())
        .await
        .with_context(|| format!("connecting to {first}"))?;
    let js = jetstream::new(admin);
    let names: Vec<String> = (0..args.shards)
        .map(|i| format!("{}-{i}", args.stream))
        .collect();
    for name in &names {
        let _ = js.delete_stream(name).await;
        js.create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![name.clone()],
            storage: jetstream::stream::StorageType::File,
            num_replicas: args.nats_replicas,
            ..Default::default()
        })
        .await
        .map_err(|error| anyhow::anyhow!("creating JetStream stream {name}: {error}"))?;
    }
    let payloads: Arc<Vec<Bytes>> = Arc::new({
        let mut rng = rand::rng();
        (0..256)
            .map(|_| {
                let mut data = vec![0u8; args.record_bytes];
                rng.fill(&mut data[..]);
                Bytes::from(data)
            })
            .collect()
    });
    let names = Arc::new(names);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    // Connections are spread over the servers, as Riffle's are over its endpoints.
    for connection in 0..args.connections {
        let url = &args.nats_url[connection % args.nats_url.len()];
        let client = async_nats::connect(url.as_str())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let js = jetstream::new(client);
        let (payloads, names) = (payloads.clone(), names.clone());
        let (measuring, stop, records, errors) = (
            measuring.clone(),
            stop.clone(),
            records.clone(),
            errors.clone(),
        );
        let batch = args.batch;
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let mut next = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut acks = Vec::with_capacity(batch);
                let mut failed = 0u64;
                for _ in 0..batch {
                    let stream = names[rand::rng().random_range(0..names.len())].clone();
                    next += 1;
                    match js
                        .publish(stream, payloads[next % payloads.len()].clone())
                        .await
                    {
                        Ok(ack) => acks.push(ack),
                        Err(_) => failed += 1,
                    }
                }
                for ack in acks {
                    if ack.await.is_err() {
                        failed += 1;
                    }
                }
                let micros = started.elapsed().as_micros() as u64;
                if failed > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if measuring.load(Ordering::Relaxed) {
                    errors.fetch_add(failed, Ordering::Relaxed);
                    records.fetch_add(batch as u64 - failed, Ordering::Relaxed);
                    if failed == 0 {
                        let _ = histogram.record(micros.max(1));
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for worker in workers {
        histogram.add(worker.await?)?;
    }
    crate::report::Report {
        title: format!(
            "JetStream publish {}x{}B, {} connections, {} streams R{}",
            args.batch, args.record_bytes, args.connections, args.shards, args.nats_replicas
        ),
        records: records.load(Ordering::Relaxed),
        failed_records: errors.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds: elapsed,
        record_bytes: args.record_bytes,
        latency: &histogram,
        extra: serde_json::json!({
            "connections": args.connections,
            "batch": args.batch,
            "streams": args.shards,
            "replicas": args.nats_replicas,
        }),
    }
    .print(args.json);
    Ok(())
}
