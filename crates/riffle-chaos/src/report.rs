//! The report of a run: text for people, JSON for scripts, SVG for slides.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::check::Verdict;
use crate::timeline::Event;
use crate::timeline::Second;
use crate::timeline::Timeline;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub stream: String,
    pub seconds: Vec<Second>,
    pub events: Vec<Event>,
    /// Error kinds seen by producers, with counts.
    pub errors: BTreeMap<String, u64>,
    /// The longest time without any acknowledged write.
    pub longest_gap_ms: u64,
    /// When it was (ms since the start of the load).
    pub longest_gap_at_ms: Option<(u64, u64)>,
    /// Whole seconds (after the first) in which nothing was acknowledged.
    pub seconds_without_writes: u64,
    pub acked_per_sec: f64,
    pub consume_p50_ms: Option<u32>,
    pub consume_p99_ms: Option<u32>,
    /// One read-back per node.
    pub verdicts: Vec<Verdict>,
    pub ok: bool,
}

impl Report {
    pub fn new(
        scenario: &str,
        stream: &str,
        timeline: &Timeline,
        verdicts: Vec<Verdict>,
    ) -> Report {
        let seconds = timeline.seconds.clone();
        let acked: u64 = seconds.iter().map(|s| s.acked).sum();
        let seconds_without_writes = seconds.iter().skip(1).filter(|s| s.acked == 0).count() as u64;
        let mut latencies = timeline.consume_latency_ms.clone();
        latencies.sort_unstable();
        let percentile = |p: f64| -> Option<u32> {
            if latencies.is_empty() {
                None
            } else {
                let index = ((latencies.len() - 1) as f64 * p).round() as usize;
                Some(latencies[index])
            }
        };
        let ok = !verdicts.is_empty() && verdicts.iter().all(Verdict::ok);
        Report {
            scenario: scenario.to_string(),
            stream: stream.to_string(),
            acked_per_sec: if seconds.is_empty() {
                0.0
            } else {
                acked as f64 / seconds.len() as f64
            },
            seconds,
            events: timeline.events.clone(),
            errors: timeline.errors.clone(),
            longest_gap_ms: timeline.longest_gap_ms(),
            longest_gap_at_ms: timeline.longest_gap,
            seconds_without_writes,
            consume_p50_ms: percentile(0.50),
            consume_p99_ms: percentile(0.99),
            verdicts,
            ok,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario {} on stream {}", self.scenario, self.stream);
        for event in &self.events {
            let _ = writeln!(
                out,
                "  {:>7.1}s  {}",
                event.at_ms as f64 / 1000.0,
                event.what
            );
        }
        let _ = writeln!(out, "timeline (records acknowledged / failed per second):");
        let peak = self
            .seconds
            .iter()
            .map(|s| s.acked)
            .max()
            .unwrap_or(1)
            .max(1);
        for (index, second) in self.seconds.iter().enumerate() {
            let _ = writeln!(out, "  {}", line(index, second, peak));
        }
        let gap_at = self
            .longest_gap_at_ms
            .map(|(from, to)| {
                format!(
                    " ({:.1}s → {:.1}s)",
                    from as f64 / 1000.0,
                    to as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "writes: {:.0} records/s acknowledged on average; longest write gap {} ms{}; {} whole seconds without an acknowledged write",
            self.acked_per_sec, self.longest_gap_ms, gap_at, self.seconds_without_writes
        );
        if !self.errors.is_empty() {
            let errors: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect();
            let _ = writeln!(out, "producer errors: {}", errors.join(", "));
        }
        if let (Some(p50), Some(p99)) = (self.consume_p50_ms, self.consume_p99_ms) {
            let _ = writeln!(
                out,
                "put-to-consume (live readers, polling): p50 {p50} ms, p99 {p99} ms"
            );
        }
        for verdict in &self.verdicts {
            // A failing verdict lists its first findings under its summary.
            let _ = writeln!(out, "{}", verdict.details(10));
        }
        let _ = writeln!(out, "verdict: {}", if self.ok { "PASS" } else { "FAIL" });
        out
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Acknowledged (green) and failed (red) records per second, faults as labelled lines.
    pub fn svg(&self) -> String {
        let (width, height, left, top, bottom) = (960.0, 360.0, 60.0, 40.0, 40.0);
        let plot_w = width - left - 20.0;
        let plot_h = height - top - bottom;
        let n = self.seconds.len().max(1) as f64;
        let peak = self
            .seconds
            .iter()
            .map(|s| s.acked.max(s.failed))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let x = |second: f64| left + second / n * plot_w;
        let y = |value: f64| top + plot_h - value / peak * plot_h;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="20" font-size="14">{} — {} — longest write gap {} ms</text>"#,
            escape(&self.scenario),
            if self.ok { "PASS" } else { "FAIL" },
            self.longest_gap_ms
        );
        let bar = plot_w / n;
        for (index, second) in self.seconds.iter().enumerate() {
            let x0 = x(index as f64);
            if second.acked > 0 {
                let _ = writeln!(
                    svg,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#3a9a4a"/>"##,
                    y(second.acked as f64),
                    (bar - 1.0).max(0.5),
                    plot_h - (y(second.acked as f64) - top)
                );
            }
            if second.failed > 0 {
                let _ = writeln!(
                    svg,
                    r##"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d04040" fill-opacity="0.8"/>"##,
                    y(second.failed as f64),
                    (bar / 2.0).max(0.5),
                    plot_h - (y(second.failed as f64) - top)
                );
            }
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
            top + plot_h,
            left + plot_w,
            top + plot_h
        );
        let _ = writeln!(
            svg,
            r#"<text x="5" y="{}">{peak:.0}/s</text><text x="5" y="{}">0</text>"#,
            top + 10.0,
            top + plot_h
        );
        let step = ((n / 10.0).ceil() as usize).max(1);
        for second in (0..self.seconds.len()).step_by(step) {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{second}s</text>"#,
                x(second as f64),
                top + plot_h + 16.0
            );
        }
        for (index, event) in self.events.iter().enumerate() {
            let ex = x(event.at_ms as f64 / 1000.0);
            let _ = writeln!(
                svg,
                r##"<line x1="{ex:.1}" y1="{top}" x2="{ex:.1}" y2="{}" stroke="#555" stroke-dasharray="4 3"/>"##,
                top + plot_h
            );
            let _ = writeln!(
                svg,
                r##"<text x="{:.1}" y="{}" fill="#333">{}</text>"##,
                ex + 3.0,
                top + 14.0 + (index % 4) as f64 * 14.0,
                escape(&event.what)
            );
        }
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" fill="#3a9a4a">acknowledged records/s</text><text x="{}" y="{}" fill="#d04040">failed records/s</text>"##,
            left,
            height - 6.0,
            left + 200.0,
            height - 6.0
        );
        svg.push_str("</svg>\n");
        svg
    }
}

/// One second as a terminal line: `  12s  ack  1980  fail    0  read  1975  ████████`.
pub fn line(index: usize, second: &Second, peak: u64) -> String {
    let bars = (second.acked * 40).div_ceil(peak.max(1)) as usize;
    format!(
        "{index:>4}s  ack {:>6}  fail {:>5}  read {:>6}  {}{}",
        second.acked,
        second.failed,
        second.consumed,
        "█".repeat(bars.min(40)),
        if second.failed_calls > 0 {
            format!("  ({} failed calls)", second.failed_calls)
        } else {
            String::new()
        }
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
