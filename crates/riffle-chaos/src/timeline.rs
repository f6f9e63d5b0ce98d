//! The per-second record of a run, shared by the writers, the live readers and the fault
//! schedule: records acknowledged, failed and consumed each second, events, error kinds, the
//! longest gap between acknowledgements and put-to-consume latencies.

use std::collections::BTreeMap;
use std::time::Instant;

use riffle_client::Error;
use serde::Serialize;

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Second {
    /// Records acknowledged.
    pub acked: u64,
    /// Records that failed (per-record errors, or in a failed call).
    pub failed: u64,
    /// Calls that failed as a whole.
    pub failed_calls: u64,
    /// Records the live readers consumed.
    pub consumed: u64,
}

/// A fault or other event on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_ms: u64,
    pub what: String,
}

/// The per-second record of a run, shared by producers, readers and the fault schedule.
#[derive(Debug)]
pub struct Timeline {
    started: Instant,
    pub seconds: Vec<Second>,
    pub events: Vec<Event>,
    pub errors: BTreeMap<String, u64>,
    last_ack: Option<Instant>,
    /// The longest time without any acknowledgement: (from ms, to ms).
    pub longest_gap: Option<(u64, u64)>,
    /// Put-to-consume latency of records the live readers saw, in ms.
    pub consume_latency_ms: Vec<u32>,
    /// When the load stopped (the end of the last gap; the read-back is not an outage).
    stopped: Option<Instant>,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline {
            started: Instant::now(),
            seconds: Vec::new(),
            events: Vec::new(),
            errors: BTreeMap::new(),
            last_ack: None,
            longest_gap: None,
            consume_latency_ms: Vec::new(),
            stopped: None,
        }
    }

    /// Marks the end of the load.
    pub fn stop(&mut self) {
        self.fill_to_now();
        self.stopped.get_or_insert_with(Instant::now);
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Makes sure every elapsed second has its entry (an outage has empty seconds too).
    pub fn fill_to_now(&mut self) {
        let _ = self.second();
    }

    pub(crate) fn second(&mut self) -> &mut Second {
        let index = self.started.elapsed().as_secs() as usize;
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, Second::default());
        }
        &mut self.seconds[index]
    }

    pub fn event(&mut self, what: impl Into<String>) {
        let at_ms = self.elapsed_ms();
        self.events.push(Event {
            at_ms,
            what: what.into(),
        });
    }

    pub(crate) fn acked(&mut self, records: u64) {
        if records == 0 {
            return;
        }
        let now = Instant::now();
        if let Some(last) = self.last_ack {
            let gap = now - last;
            let longest = self.longest_gap.map(|(from, to)| to - from).unwrap_or(0);
            if gap.as_millis() as u64 > longest {
                let to = (now - self.started).as_millis() as u64;
                self.longest_gap = Some((to - gap.as_millis() as u64, to));
            }
        }
        self.last_ack = Some(now);
        self.second().acked += records;
    }

    pub(crate) fn failed(&mut self, records: u64, call: Option<&Error>, codes: &[String]) {
        let second = self.second();
        second.failed += records;
        if call.is_some() {
            second.failed_calls += 1;
        }
        if let Some(error) = call {
            *self.errors.entry(error.label()).or_default() += 1;
        }
        for code in codes {
            *self.errors.entry(code.clone()).or_default() += 1;
        }
    }

    /// The longest gap between acknowledgements, counting the time from the last one to the
    /// end of the load (a run that ends inside an outage has a gap too).
    pub fn longest_gap_ms(&self) -> u64 {
        let mut longest = self.longest_gap.map(|(from, to)| to - from).unwrap_or(0);
        if let Some(last) = self.last_ack {
            let end = self.stopped.unwrap_or_else(Instant::now);
            longest = longest.max(end.saturating_duration_since(last).as_millis() as u64);
        }
        longest
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_read_back_after_the_load_is_not_a_gap() {
        let mut timeline = Timeline::new();
        let first = Instant::now();
        timeline.acked(10);
        std::thread::sleep(Duration::from_millis(30));
        timeline.acked(10);
        timeline.stop();
        let load = first.elapsed().as_millis() as u64;
        std::thread::sleep(Duration::from_millis(100));
        let gap = timeline.longest_gap_ms();
        assert!(
            gap >= 30 && gap <= load,
            "gap {gap} ms, load lasted {load} ms"
        );
    }
}
