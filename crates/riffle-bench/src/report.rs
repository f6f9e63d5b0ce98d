//! One way to print a throughput run, for every mode, and one for the put-to-read modes (text,
//! or one JSON object with `--json`).

use anyhow::bail;
use hdrhistogram::Histogram;
use serde_json::Value;

use crate::ledger::Outcome;

/// What a run measured.
pub struct Report<'a> {
    /// What ran, e.g. `PutRecords 100x1024B, 16 connections`.
    pub title: String,
    pub records: u64,
    pub failed_records: u64,
    pub errors: u64,
    pub seconds: f64,
    pub record_bytes: usize,
    /// Latency per call (or batch), in microseconds.
    pub latency: &'a Histogram<u64>,
    /// Mode-specific fields: added to the JSON object, and to the text line as `key value`.
    pub extra: Value,
}

impl Report<'_> {
    pub fn print(&self, json: bool) {
        let records_per_sec = self.records as f64 / self.seconds.max(0.001);
        let mib_per_sec = records_per_sec * self.record_bytes as f64 / (1024.0 * 1024.0);
        let ms = |quantile: f64| self.latency.value_at_quantile(quantile) as f64 / 1000.0;
        let max_ms = self.latency.max() as f64 / 1000.0;
        if json {
            let mut result = serde_json::json!({
                "records_per_sec": records_per_sec,
                "mib_per_sec": mib_per_sec,
                "calls": self.latency.len(),
                "failed_records": self.failed_records,
                "errors": self.errors,
                "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": max_ms,
                "record_bytes": self.record_bytes,
                "seconds": self.seconds,
            });
            add_extra(&mut result, &self.extra);
            println!("{result}");
            return;
        }
        let extra = extra_text(&self.extra);
        println!(
            "{}, {:.1}s: {records_per_sec:.0} records/s, {mib_per_sec:.1} MiB/s, {} calls, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {max_ms:.2} ms, failed records {}, errors {}{extra}",
            self.title,
            self.seconds,
            self.latency.len(),
            ms(0.5),
            ms(0.99),
            ms(0.999),
            self.failed_records,
            self.errors,
        );
    }
}

/// Mode-specific fields as text: `, key value` each.
fn extra_text(extra: &Value) -> String {
    let mut text = String::new();
    for (key, value) in extra.as_object().into_iter().flatten() {
        text.push_str(&format!(", {} {value}", key.replace('_', " ")));
    }
    text
}

fn add_extra(result: &mut Value, extra: &Value) {
    if let (Some(result), Some(extra)) = (result.as_object_mut(), extra.as_object()) {
        result.extend(extra.clone());
    }
}

/// What a put-to-read run (`--mode fanout`, `--mode poll`) measured.
pub struct ReadReport<'a> {
    pub mode: &'static str,
    /// What read the records, e.g. `SubscribeToShard fan-out`.
    pub title: String,
    /// How a record reached its reader (`deliver`, `consume`): names the latency
    /// (`put-to-deliver`, `deliver_p50_ms`).
    pub verb: &'static str,
    /// The same in the past tense, naming the count of records read (`delivered`).
    pub verb_past: &'static str,
    pub shards: usize,
    pub outcome: &'a Outcome,
    /// Mode-specific fields: added to the JSON object, and to the text line as `key value`.
    pub extra: Value,
}

impl ReadReport<'_> {
    /// Prints the report, then fails if an acknowledged record was never read.
    pub fn print_and_check(&self, json: bool) -> anyhow::Result<()> {
        let Outcome {
            written,
            reads,
            lost,
            reader_errors,
        } = self.outcome;
        let (verb, verb_past) = (self.verb, self.verb_past);
        let ms = |histogram: &Histogram<u64>, quantile: f64| {
            histogram.value_at_quantile(quantile) as f64 / 1000.0
        };
        let latency = &reads.latency;
        let put = &written.put_latency;
        if json {
            let mut result = serde_json::json!({
                "mode": self.mode,
                "shards": self.shards,
                "rate": written.rate,
                "batch": written.batch,
                "record_bytes": written.record_bytes,
                "seconds": written.seconds,
                "acknowledged": written.acknowledged.len(),
                verb_past: reads.ids.len(),
                "measured": latency.len(),
                "lost": lost,
                "duplicates": reads.duplicates,
                "failed_records": written.failed_records,
                "reader_errors": reader_errors,
                format!("{verb}_p50_ms"): ms(latency, 0.5),
                format!("{verb}_p90_ms"): ms(latency, 0.9),
                format!("{verb}_p99_ms"): ms(latency, 0.99),
                format!("{verb}_p999_ms"): ms(latency, 0.999),
                format!("{verb}_max_ms"): latency.max() as f64 / 1000.0,
                format!("{verb}_mean_ms"): latency.mean() / 1000.0,
                "put_p50_ms": ms(put, 0.5),
                "put_p99_ms": ms(put, 0.99),
            });
            add_extra(&mut result, &self.extra);
            println!("{result}");
        } else {
            println!(
                "{}, {} shards, {} records/s in PutRecords of {} x {} B, {:.1} s: \
                 put-to-{verb} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, mean {:.2} ms \
                 ({} measured); PutRecords ack p50 {:.2} ms, p99 {:.2} ms; acknowledged {}, {verb_past} {}, lost {lost}, duplicates {}, failed records {}, reader errors {reader_errors:?}{}",
                self.title,
                self.shards,
                written.rate,
                written.batch,
                written.record_bytes,
                written.seconds,
                ms(latency, 0.5),
                ms(latency, 0.9),
                ms(latency, 0.99),
                ms(latency, 0.999),
                latency.max() as f64 / 1000.0,
                latency.mean() / 1000.0,
                latency.len(),
                ms(put, 0.5),
                ms(put, 0.99),
                written.acknowledged.len(),
                reads.ids.len(),
                reads.duplicates,
                written.failed_records,
                extra_text(&self.extra),
            );
        }
        if *lost > 0 {
            bail!("{lost} acknowledged records were never {verb_past}");
        }
        Ok(())
    }
}
