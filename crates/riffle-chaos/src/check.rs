//! The checker: what was read back against what the producers were told.

use std::collections::BTreeMap;
use std::collections::HashMap;

use serde::Serialize;

use crate::workload::Ledger;
use crate::workload::Stored;
use crate::workload::key_of;
use crate::workload::number_of;

/// The verdict on one read-back. `ok()` holds when nothing acknowledged was lost or moved,
/// nothing was invented, every partition key kept its order, and every duplicate belongs to a
/// write whose outcome was ambiguous.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub endpoint: String,
    pub attempted: u64,
    pub acknowledged: u64,
    /// Records with at least one ambiguous attempt (timeout, broken connection, 5xx).
    pub ambiguous: u64,
    /// Of those, never acknowledged.
    pub ambiguous_unacknowledged: u64,
    pub stored: u64,
    /// Records stored once or more that were not acknowledged (ambiguous writes that landed).
    pub stored_unacknowledged: u64,
    /// Extra copies of ambiguous writes (allowed, reported).
    pub ambiguous_duplicates: u64,
    pub lost: Vec<String>,
    pub phantoms: Vec<String>,
    /// Acknowledged at one (shard, sequence number), stored elsewhere.
    pub moved: Vec<String>,
    /// Stored more than once though no attempt was ambiguous.
    pub duplicates: Vec<String>,
    /// Per partition key, a record stored before one acknowledged ahead of it was sent.
    pub reordered: Vec<String>,
    /// Sequence numbers not increasing within a shard.
    pub unordered_shards: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.phantoms.is_empty()
            && self.moved.is_empty()
            && self.duplicates.is_empty()
            && self.reordered.is_empty()
            && self.unordered_shards.is_empty()
    }

    /// One line per finding kind, for the text report.
    pub fn summary(&self) -> String {
        let sample = |list: &Vec<String>| {
            let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
            if list.is_empty() {
                "0".to_string()
            } else {
                format!("{} (e.g. {})", list.len(), shown.join(", "))
            }
        };
        format!(
            "{verdict} via {endpoint}: {acked} acknowledged, {stored} stored, {attempted} attempted; \
             lost {lost}, phantom {phantoms}, moved {moved}, reordered {reordered}, \
             duplicates {duplicates}; {ambiguous} records had an ambiguous attempt ({unacked} never \
             acknowledged, {landed} stored without an acknowledgement, {extra} extra copies)",
            verdict = if self.ok() { "PASS" } else { "FAIL" },
            endpoint = self.endpoint,
            acked = self.acknowledged,
            stored = self.stored,
            attempted = self.attempted,
            lost = sample(&self.lost),
            phantoms = sample(&self.phantoms),
            moved = sample(&self.moved),
            reordered = sample(&self.reordered),
            duplicates = sample(&self.duplicates),
            ambiguous = self.ambiguous,
            unacked = self.ambiguous_unacknowledged,
            landed = self.stored_unacknowledged,
            extra = self.ambiguous_duplicates,
        )
    }
}

/// Checks `stored` (a whole read-back, shards in id order, so parents before children) against
/// the ledger.
pub fn check(endpoint: &str, ledger: &Ledger, stored: &[Stored]) -> Verdict {
    let mut verdict = Verdict {
        endpoint: endpoint.to_string(),
        attempted: ledger.records.len() as u64,
        acknowledged: ledger
            .records
            .values()
            .filter(|r| r.acked.is_some())
            .count() as u64,
        ambiguous: ledger.records.values().filter(|r| r.ambiguous).count() as u64,
        ambiguous_unacknowledged: ledger
            .records
            .values()
            .filter(|r| r.acked.is_none() && r.ambiguous)
            .count() as u64,
        stored: stored.len() as u64,
        ..Verdict::default()
    };
    let mut positions: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    let mut last_in_shard: HashMap<&str, &str> = HashMap::new();
    // Per key, record numbers in stored order (first copies only).
    let mut per_key: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (shard, sequence, id) in stored {
        if let Some(previous) = last_in_shard.insert(shard, sequence)
            && !sequence_less(previous, sequence)
        {
            verdict
                .unordered_shards
                .push(format!("{shard}: {sequence} after {previous}"));
        }
        if !ledger.records.contains_key(id.as_str()) {
            verdict.phantoms.push(id.clone());
            continue;
        }
        let copies = positions.entry(id.as_str()).or_default();
        copies.push((shard.as_str(), sequence.as_str()));
        if copies.len() == 1
            && let Some(number) = number_of(id)
        {
            per_key.entry(key_of(id)).or_default().push(number);
        }
    }
    for (id, record) in &ledger.records {
        let copies = positions.get(id.as_str());
        match (&record.acked, copies) {
            (Some(_), None) => verdict.lost.push(id.clone()),
            (Some((shard, sequence)), Some(copies)) => {
                if !copies
                    .iter()
                    .any(|(s, q)| *s == shard.as_str() && *q == sequence.as_str())
                {
                    verdict.moved.push(format!(
                        "{id}: acknowledged at {shard}/{sequence}, stored at {copies:?}"
                    ));
                }
            }
            (None, Some(_)) => verdict.stored_unacknowledged += 1,
            (None, None) => {}
        }
        if let Some(copies) = copies
            && copies.len() > 1
        {
            if record.ambiguous {
                verdict.ambiguous_duplicates += copies.len() as u64 - 1;
            } else {
                verdict
                    .duplicates
                    .push(format!("{id} stored {} times", copies.len()));
            }
        }
    }
    // A key's record n+1 is first sent only once n is acknowledged, so first copies must be
    // stored in increasing order.
    for (key, numbers) in per_key {
        for pair in numbers.windows(2) {
            if pair[1] <= pair[0] {
                verdict
                    .reordered
                    .push(format!("{key}: n{} stored after n{}", pair[1], pair[0]));
            }
        }
    }
    verdict.lost.sort();
    verdict.phantoms.sort();
    verdict.moved.sort();
    verdict.duplicates.sort();
    verdict
}

/// Kinesis sequence numbers are decimal strings of varying length.
fn sequence_less(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::RecordState;

    /// (id, acknowledged at (shard, sequence number), ambiguous)
    type Row<'a> = (&'a str, Option<(&'a str, &'a str)>, bool);

    fn ledger(records: &[Row]) -> Ledger {
        let mut ledger = Ledger::default();
        for (id, acked, ambiguous) in records {
            ledger.records.insert(
                id.to_string(),
                RecordState {
                    acked: acked.map(|(s, q)| (s.to_string(), q.to_string())),
                    attempts: 1,
                    ambiguous: *ambiguous,
                },
            );
        }
        ledger
    }

    fn stored(rows: &[(&str, &str, &str)]) -> Vec<Stored> {
        rows.iter()
            .map(|(s, q, id)| (s.to_string(), q.to_string(), id.to_string()))
            .collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let ledger = ledger(&[
            ("p000k000n00000000", Some(("s0", "10")), false),
            ("p000k000n00000001", Some(("s1", "20")), false),
        ]);
        let verdict = check(
            "e",
            &ledger,
            &stored(&[
                ("s0", "10", "p000k000n00000000"),
                ("s1", "20", "p000k000n00000001"),
            ]),
        );
        assert!(verdict.ok(), "{}", verdict.summary());
        assert_eq!(verdict.acknowledged, 2);
    }

    #[test]
    fn every_kind_of_violation_is_found() {
        let ledger = ledger(&[
            ("p000k000n00000000", Some(("s0", "10")), false),
            ("p000k000n00000001", Some(("s0", "11")), false),
            ("p000k001n00000000", Some(("s0", "12")), false),
            ("p000k002n00000000", Some(("s0", "13")), false),
            ("p000k003n00000000", None, true),
        ]);
        let verdict = check(
            "e",
            &ledger,
            &stored(&[
                ("s0", "11", "p000k000n00000001"),
                ("s0", "12", "p000k000n00000000"),
                ("s0", "14", "p000k002n00000000"),
                ("s0", "15", "p000k002n00000000"),
                ("s0", "16", "p009k000n00000000"),
                ("s0", "17", "p000k003n00000000"),
                ("s0", "18", "p000k003n00000000"),
                ("s0", "9", "p000k003n00000000"),
            ]),
        );
        assert!(!verdict.ok());
        assert_eq!(verdict.lost, vec!["p000k001n00000000"]);
        assert_eq!(verdict.phantoms, vec!["p009k000n00000000"]);
        assert_eq!(verdict.moved.len(), 2, "{:?}", verdict.moved);
        assert_eq!(verdict.duplicates.len(), 1);
        assert_eq!(verdict.reordered.len(), 1);
        assert_eq!(verdict.unordered_shards.len(), 1);
        assert_eq!(verdict.ambiguous_duplicates, 2);
        assert_eq!(verdict.stored_unacknowledged, 1);
    }

    #[test]
    fn a_key_followed_into_a_child_keeps_its_order() {
        let ledger = ledger(&[
            ("p000k000n00000000", Some(("s0", "10")), false),
            ("p000k000n00000001", Some(("s2", "5")), false),
        ]);
        let verdict = check(
            "e",
            &ledger,
            &stored(&[
                ("s0", "10", "p000k000n00000000"),
                ("s2", "5", "p000k000n00000001"),
            ]),
        );
        assert!(verdict.ok(), "{}", verdict.summary());
    }
}
