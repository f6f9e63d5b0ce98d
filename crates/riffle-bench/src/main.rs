//! `riffle-bench`: drives a Kinesis-compatible endpoint with PutRecords and reports throughput
//! and acknowledgement latency. Closed loop: each connection sends its next request as soon as
//! the previous one is answered, so the numbers are the server's maximum at that concurrency.
//! `--mode fanout` measures put-to-deliver latency through SubscribeToShard instead
//! ([`fanout`]), `--mode poll` put-to-consume latency through GetRecords ([`poll`]).
//!
//! It speaks raw HTTP/1.1 + JSON with pre-encoded bodies, so the client spends almost no CPU
//! (this matters on a 2-core machine where client and server share the cores).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;

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

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn call(
    client: &HttpClient,
    endpoint: &str,
    operation: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let request = http::Request::post(endpoint)
        .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(body))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

async fn ensure_stream(client: &HttpClient, args: &Args) -> anyhow::Result<()> {
    let endpoint = &args.endpoint[0];
    let create = serde_json::json!({"StreamName": args.stream, "ShardCount": args.shards});
    let (status, body) = call(
        client,
        endpoint,
        "CreateStream",
        serde_json::to_vec(&create)?.into(),
    )
    .await?;
    if status != 200 && !String::from_utf8_lossy(&body).contains("ResourceInUseException") {
        bail!(
            "CreateStream failed: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    for _ in 0..600 {
        let describe = serde_json::json!({"StreamName": args.stream});
        let (_, body) = call(
            client,
            endpoint,
            "DescribeStreamSummary",
            serde_json::to_vec(&describe)?.into(),
        )
        .await?;
        let summary: serde_json::Value = serde_json::from_slice(&body)?;
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("stream {} did not become ACTIVE", args.stream)
}

/// Pre-encoded PutRecords bodies with random partition keys (cycled through).
fn bodies(args: &Args) -> Vec<Bytes> {
    let mut rng = rand::rng();
    (0..64)
        .map(|_| {
            let records: Vec<serde_json::Value> = (0..args.batch)
                .map(|_| {
                    let mut data = vec![0u8; args.record_bytes];
                    rng.fill(&mut data[..]);
                    serde_json::json!({
                        "PartitionKey": format!("pk-{}", rng.random::<u64>()),
                        "Data": base64::engine::general_purpose::STANDARD.encode(&data),
                    })
                })
                .collect();
            let body = serde_json::json!({"StreamName": args.stream, "Records": records});
            Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
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
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.connections)
        .build_http();
    ensure_stream(&client, &args)
        .await
        .context("preparing the stream")?;
    match args.mode {
        Mode::Fanout => return fanout::run(client, &args).await,
        Mode::Poll => return poll::run(client, &args).await,
        Mode::Put | Mode::Nats => {}
    }
    let bodies = Arc::new(bodies(&args));
    if args.rate.is_some() {
        return open::run(client, &args, bodies).await;
    }
    let counters = Arc::new(Counters::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));

    let timeline = Arc::new(Timeline::new(args.warmup + args.seconds + 1));
    let mut workers = Vec::new();
    for connection in 0..args.connections {
        let client = client.clone();
        let endpoints = args.endpoint.clone();
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
            let mut endpoint_index = connection % endpoints.len();
            while !stop.load(Ordering::Relaxed) {
                let body = bodies[next % bodies.len()].clone();
                next += 1;
                let started = Instant::now();
                let result = call(&client, &endpoints[endpoint_index], "PutRecords", body).await;
                let micros = started.elapsed().as_micros() as u64;
                let failed = !matches!(result, Ok((200, _)));
                if failed {
                    timeline.error();
                    // As SDKs do: back off a little, and (unlike them) try another node.
                    endpoint_index = (endpoint_index + 1) % endpoints.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                } else {
                    timeline.success();
                }
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match result {
                    Ok((200, body)) => {
                        let _ = histogram.record(micros.max(1));
                        let failed = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|value| value["FailedRecordCount"].as_u64())
                            .unwrap_or(batch);
                        counters
                            .records
                            .fetch_add(batch - failed.min(batch), Ordering::Relaxed);
                        counters.failed_records.fetch_add(failed, Ordering::Relaxed);
                    }
                    _ => {
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
