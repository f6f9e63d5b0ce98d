//! Open-loop PutRecords (`--rate N` with the default put mode): one call every `batch / rate`
//! seconds, each on its own task whatever the earlier calls are doing, with latency measured
//! from when the call was *scheduled* (so a stalled server is charged for every call it
//! delayed: no coordinated omission). Reports the same fields as the closed loop.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use hdrhistogram::Histogram;
use riffle_client::Client;
use riffle_client::Encoded;
use riffle_client::Spread;
use riffle_client::ops::records::PutRecords;

use crate::Args;

pub async fn run(
    client: Client,
    args: &Args,
    bodies: Arc<Vec<Encoded<PutRecords>>>,
) -> anyhow::Result<()> {
    // Calls go to the endpoints in turn.
    let client = client.with_endpoints(args.endpoint.clone(), Spread::RoundRobin);
    let batch = args.batch.max(1) as u64;
    let rate = args.rate.unwrap_or(1000).max(1);
    let interval = Duration::from_secs_f64(batch as f64 / rate as f64);
    let histogram = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let records = Arc::new(AtomicU64::new(0));
    let failed_records = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let warmup = Duration::from_secs(args.warmup);
    let total = warmup + Duration::from_secs(args.seconds);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::new();
    let mut index = 0usize;
    while started.elapsed() < total {
        let scheduled = tick.tick().await;
        let measured = started.elapsed() >= warmup;
        let body = bodies[index % bodies.len()].clone();
        index += 1;
        let (client, histogram, records, failed_records, errors) = (
            client.clone(),
            histogram.clone(),
            records.clone(),
            failed_records.clone(),
            errors.clone(),
        );
        calls.push(tokio::spawn(async move {
            let result = client.call_encoded(&body).await;
            let micros = scheduled.elapsed().as_micros() as u64;
            if !measured {
                return;
            }
            match result {
                Ok(output) => {
                    let failed = output.failed_record_count.min(batch);
                    records.fetch_add(batch - failed, Ordering::Relaxed);
                    failed_records.fetch_add(failed, Ordering::Relaxed);
                    let _ = histogram
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(micros.max(1));
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let elapsed = started.elapsed().saturating_sub(warmup).as_secs_f64();
    for call in calls {
        let _ = call.await;
    }
    let histogram = histogram.lock().unwrap_or_else(|e| e.into_inner());
    crate::report::Report {
        title: format!(
            "PutRecords open loop at {rate} records/s ({}x{}B per call), latency from schedule",
            args.batch, args.record_bytes
        ),
        records: records.load(Ordering::Relaxed),
        failed_records: failed_records.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        seconds: elapsed,
        record_bytes: args.record_bytes,
        latency: &histogram,
        extra: serde_json::json!({
            "mode": "open-loop",
            "target_records_per_sec": rate,
            "batch": args.batch,
        }),
    }
    .print(args.json);
    Ok(())
}
