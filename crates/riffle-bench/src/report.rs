//! One way to print a throughput run, for every mode (text, or one JSON object with `--json`).

use hdrhistogram::Histogram;
use serde_json::Value;

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
            if let (Some(result), Some(extra)) = (result.as_object_mut(), self.extra.as_object()) {
                result.extend(extra.clone());
            }
            println!("{result}");
            return;
        }
        let mut extra = String::new();
        for (key, value) in self.extra.as_object().into_iter().flatten() {
            extra.push_str(&format!(", {} {value}", key.replace('_', " ")));
        }
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
