//! `riffle-bench`: drives a Kinesis-compatible endpoint with PutRecords and reports throughput
//! and acknowledgement latency. Closed loop: each connection sends its next request as soon as
//! the previous one is answered, so the numbers are the server's maximum at that concurrency.
//! `--mode fanout` measures put-to-deliver latency through SubscribeToShard instead
//! ([`fanout`]), `--mode poll` put-to-consume latency through GetRecords ([`poll`]).
//!
//! It speaks HTTP/1.1 + JSON through `riffle-client` with bodies encoded before the run, one
//! keep-alive connection per worker, so the client spends almost no CPU (this matters on a
//! 2-core machine where client and server share the cores).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use rand::Rng;
use riffle_client::Client;
use riffle_client::Encoded;
use riffle_client::Spread;
use riffle_client::ops::records::PutRecords;
use riffle_client::ops::records::PutRecordsEntry;
use riffle_client::ops::streams::CreateStream;
use riffle_client::ops::streams::DescribeStreamSummary;

mod fanout;
mod ledger;
#[cfg(feature = "nats")]
mod nats;
mod open;
mod poll;
mod report;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Closed-loop PutRecords throughput and acknowledgement latency.
    Put,
    /// Open-loop writes at --rate while a consumer subscribes to every shard through the last
    /// --endpoint: put-to-deliver latency, and every acknowledged record delivered once.
    Fanout,
    /// Open-loop writes at --rate while one GetRecords poller per shard reads through the last
    /// --endpoint: put-to-consume latency, and every acknowledged record consumed once.
    Poll,
    /// The Put load against NATS JetStream (--nats-url), one JetStream stream per shard (built
    /// with `--features nats`).
    Nats,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "riffle-bench",
    args_override_self = true,
    about = "PutRecords load against a Kinesis-compatible endpoint"
)]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Put)]
    mode: Mode,
    /// NATS server URL(s) for --mode nats.
    #[arg(long, default_value = "nats://127.0.0.1:4222", num_args = 1..)]
    nats_url: Vec<String>,
    /// Replicas of each JetStream stream in --mode nats.
    #[arg(long, default_value_t = 3)]
    nats_replicas: usize,
    /// Records per second: put mode runs open loop at this rate (latency from each call's
    /// scheduled time) instead of closed loop; fanout and poll modes write at this rate
    /// (default 1000).
    #[arg(long)]
    rate: Option<u64>,
    /// Poll mode: milliseconds to wait after a GetRecords call that returned no records (as
    /// KCL's idleTimeBetweenReadsInMillis); after one that returned records, the next goes at once.
    #[arg(long, default_value_t = 200)]
    poll_interval_ms: u64,
    /// Endpoint URL(s); connections are spread over them.
    #[arg(long, default_value = "http://127.0.0.1:4567", num_args = 1..)]
    endpoint: Vec<String>,
    /// Stream to write to (created with --shards if it does not exist).
    #[arg(long, default_value = "bench")]
    stream: String,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// Concurrent connections (each with one request in flight).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Records per PutRecords call.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Bytes of data per record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Seconds to measure (after the warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print acknowledged records and errors per second while running.
    #[arg(long)]
    timeline: bool,
}

async fn ensure_stream(client: &Client, args: &Args) -> anyhow::Result<()> {
    let create = CreateStream {
        stream_name: args.stream.clone(),
        shard_count: Some(args.shards),
        ..CreateStream::default()
    };
    match client.call(&create).await {
        Ok(_) => {}
        Err(error) if error.is("ResourceInUseException") => {}
        Err(error) => bail!("CreateStream failed: {error}"),
    }
    let describe = DescribeStreamSummary {
        stream_name: args.stream.clone(),
    };
    for _ in 0..600 {
        let summary = client.call(&describe).await?;
        if summary.stream_description_summary.stream_status == "ACTIVE" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("stream {} did not become ACTIVE", args.stream)
}

/// PutRecords bodies with random partition keys, encoded once (cycled through).
fn bodies(args: &Args) -> anyhow::Result<Vec<Encoded<PutRecords>>> {
    let mut rng = rand::rng();
    (0..64)
        .map(|_| {
            let records: Vec<PutRecordsEntry> = (0..args.batch)
                .map(|_| {
                    let mut data = vec![0u8; args.record_bytes];
                    rng.fill(&mut data[..]);
                    PutRecordsEntry {
                        partition_key: format!("pk-{}", rng.random::<u64>()),
                        data: Bytes::from(data),
                        explicit_hash_key: None,
                    }
                })
                .collect();
            let input = PutRecords {
                stream_name: args.stream.clone(),
                records,
            };
            Ok(Encoded::new(&input)?)
        })
        .collect()
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    failed_records: AtomicU64,
    errors: AtomicU64,
}

/// Successful calls per 100 ms slot of the measured period, to find the longest write gap.
struct Timeline {
    started: Instant,
    slots: Vec<AtomicU64>,
    errors: Vec<AtomicU64>,
}

impl Timeline {
    fn new(seconds: u64) -> Timeline {
        let slots = (seconds * 10 + 10) as usize;
        Timeline {
            started: Instant::now(),
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            errors: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn slot(&self) -> usize {
        ((self.started.elapsed().as_millis() / 100) as usize).min(self.slots.len() - 1)
    }

    fn success(&self) {
        self.slots[self.slot()].fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self) {
        self.errors[self.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Longest run of 100 ms slots without a single acknowledged call, in milliseconds.
    fn longest_gap_ms(&self, measured_slots: usize) -> u64 {
        let mut longest = 0;
        let mut current = 0;
        for slot in self.slots.iter().take(measured_slots) {
            if slot.load(Ordering::Relaxed) == 0 {
                current += 1;
                longest = longest.max(current);
            } else {
                current = 0;
            }
        }
        longest * 100
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.mode == Mode::Nats {
        #[cfg(feature = "nats")]
        return nats::run(&args).await;
        #[cfg(not(feature = "nats"))]
        bail!("this riffle-bench was built without NATS support (cargo build --features nats)");
    }
    // One pool of keep-alive connections: each worker has one call in flight, so the pool holds
    // a connection per worker.
    let client = Client::builder(args.endpoint.clone())
        .max_idle_per_host(args.connections)
        .build();
    ensure_stream(&client, &args)
        .await
        .context("preparing the stream")?;
    match args.mode {
        Mode::Fanout => return fanout::run(client, &args).await,
        Mode::Poll => return poll::run(client, &args).await,
        Mode::Put | Mode::Nats => {}
    }
    let bodies = Arc::new(bodies(&args)?);
    if args.rate.is_some() {
        return open::run(client, &args, bodies).await;
    }
    let counters = Arc::new(Counters::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let timeline = Arc::new(Timeline::new(args.warmup + args.seconds + 1));
    let mut workers = Vec::new();
    for connection in 0..args.connections {
        // Workers start on different endpoints, and move on when theirs fails.
        let mut endpoints = args.endpoint.clone();
        let first = connection % endpoints.len();
        endpoints.rotate_left(first);
        let client = client.with_endpoints(endpoints, Spread::Sticky);
        let timeline = timeline.clone();
        let bodies = bodies.clone();
        let counters = counters.clone();
        let measuring = measuring.clone();
        let stop = stop.clone();
        let batch = args.batch as u64;
        workers.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let mut next = connection;
            while !stop.load(Ordering::Relaxed) {
                let body = &bodies[next % bodies.len()];
                next += 1;
                let started = Instant::now();
                let result = client.call_encoded(body).await;
                let micros = started.elapsed().as_micros() as u64;
                if result.is_err() {
                    timeline.error();
                    // As SDKs do: back off a little (the client moves to another node when
                    // this one failed).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    timeline.success();
                }
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match result {
                    Ok(output) => {
                        let _ = histogram.record(micros.max(1));
                        let failed = output.failed_record_count.min(batch);
                        counters
                            .records
                            .fetch_add(batch - failed, Ordering::Relaxed);
                        counters.failed_records.fetch_add(failed, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            histogram
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let printer = args.timeline.then(|| {
        let timeline = timeline.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut second = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let range = second * 10..(second + 1) * 10;
                let ok: u64 = timeline.slots[range.clone()]
                    .iter()
                    .map(|slot| slot.load(Ordering::Relaxed))
                    .sum();
                let errors: u64 = timeline.errors[range]
                    .iter()
                    .map(|slot| slot.load(Ordering::Relaxed))
                    .sum();
                eprintln!("t={second:>3}s  ok calls {ok:>6}  errors {errors:>6}");
                second += 1;
                if (second + 1) * 10 > timeline.slots.len() {
                    break;
                }
            }
        })
    });
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let measured_slots = ((args.warmup + args.seconds) * 10) as usize;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(printer) = printer {
        printer.abort();
    }
    let longest_gap_ms = timeline.longest_gap_ms(measured_slots);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for worker in workers {
        histogram.add(worker.await?)?;
    }

    report::Report {
        title: format!(
            "PutRecords {}x{}B, {} connections",
            args.batch, args.record_bytes, args.connections
        ),
        records: counters.records.load(Ordering::Relaxed),
        failed_records: counters.failed_records.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        seconds: elapsed,
        record_bytes: args.record_bytes,
        latency: &histogram,
        extra: serde_json::json!({
            "longest_gap_ms": longest_gap_ms,
            "connections": args.connections,
            "batch": args.batch,
        }),
    }
    .print(args.json);
    Ok(())
}
