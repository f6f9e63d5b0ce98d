//! The history checker: what was read back against what the writers were told. One pure
//! function, [`check`], used by the chaos runner, the end-to-end tests and the simulation.
//!
//! The rules, each a field of [`Verdict`]:
//! - every acknowledged record is stored (`lost`), at the shard and sequence number its
//!   acknowledgement named (`moved`);
//! - every stored record was written: its id is in the history (`phantoms`), with the partition
//!   key and payload bytes it was written with (`corrupted`);
//! - a record is stored at most once per attempt that may have stored it: one for its
//!   acknowledgement, one per ambiguous attempt (`duplicates`); a record whose every attempt was
//!   definitely rejected is not stored at all (`rejected_stored`);
//! - per partition key, order follows the shard lineage (a parent's records before its
//!   children's, by ParentShardId and AdjacentParentShardId; sequence numbers within a shard):
//!   acknowledged records are stored in the order they were acknowledged, and no copy of a
//!   record precedes a record acknowledged before that record was first sent (`reordered`);
//! - within a shard, sequence numbers increase (`unordered_shards`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::HashSet;

use riffle_client::ops::records::Record;
use serde::Serialize;

use crate::history::Fingerprint;
use crate::history::History;
use crate::history::record_id;

/// One shard as read back: its parents and its records in the order read.
#[derive(Debug, Clone, Default)]
pub struct ShardRead {
    pub shard_id: String,
    /// ParentShardId and AdjacentParentShardId, where the shard has them.
    pub parents: Vec<String>,
    pub records: Vec<Record>,
}

/// The verdict on one read-back. `ok()` holds when no rule was broken.
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
    /// Stored with another partition key or other payload bytes than written.
    pub corrupted: Vec<String>,
    /// Stored more often than its attempts can explain.
    pub duplicates: Vec<String>,
    /// Stored although every attempt was definitely rejected.
    pub rejected_stored: Vec<String>,
    /// Per partition key, stored out of the order the writes were acknowledged and sent in.
    pub reordered: Vec<String>,
    /// Sequence numbers not increasing within a shard.
    pub unordered_shards: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.findings().next().is_none()
    }

    /// Every finding, by kind.
    pub fn findings(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("lost", &self.lost),
            ("phantom", &self.phantoms),
            ("moved", &self.moved),
            ("corrupted", &self.corrupted),
            ("duplicate", &self.duplicates),
            ("stored after a rejection", &self.rejected_stored),
            ("reordered", &self.reordered),
            ("shard out of order", &self.unordered_shards),
        ]
        .into_iter()
        .flat_map(|(kind, findings)| findings.iter().map(move |finding| (kind, finding)))
    }

    /// The summary, then up to `limit` findings, one a line.
    pub fn details(&self, limit: usize) -> String {
        let mut text = self.summary();
        for (kind, finding) in self.findings().take(limit) {
            text.push_str(&format!("\n  {kind}: {finding}"));
        }
        text
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
             lost {lost}, phantom {phantoms}, moved {moved}, corrupted {corrupted}, reordered \
             {reordered}, duplicates {duplicates}, stored after a rejection {rejected}, shards out \
             of order {unordered}; {ambiguous} records had an ambiguous attempt ({unacked} never \
             acknowledged, {landed} stored without an acknowledgement, {extra} extra copies)",
            verdict = if self.ok() { "PASS" } else { "FAIL" },
            endpoint = self.endpoint,
            acked = self.acknowledged,
            stored = self.stored,
            attempted = self.attempted,
            lost = sample(&self.lost),
            phantoms = sample(&self.phantoms),
            moved = sample(&self.moved),
            corrupted = sample(&self.corrupted),
            reordered = sample(&self.reordered),
            duplicates = sample(&self.duplicates),
            rejected = sample(&self.rejected_stored),
            unordered = sample(&self.unordered_shards),
            ambiguous = self.ambiguous,
            unacked = self.ambiguous_unacknowledged,
            landed = self.stored_unacknowledged,
            extra = self.ambiguous_duplicates,
        )
    }
}

/// Where a copy is stored: the shard (its index in the read-back) and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position<'a> {
    shard: usize,
    sequence_number: &'a str,
}

/// The shards' ancestry, to order positions in different shards of one key's lineage.
struct Lineage<'a> {
    read: &'a [ShardRead],
    /// Per shard (index in `read`), the indexes of all its ancestors.
    ancestors: Vec<HashSet<usize>>,
}

impl<'a> Lineage<'a> {
    fn new(read: &'a [ShardRead]) -> Lineage<'a> {
        let index: HashMap<&str, usize> = read
            .iter()
            .enumerate()
            .map(|(position, shard)| (shard.shard_id.as_str(), position))
            .collect();
        let ancestors = (0..read.len())
            .map(|shard| {
                let mut found = HashSet::new();
                let mut pending = vec![shard];
                while let Some(next) = pending.pop() {
                    for parent in &read[next].parents {
                        if let Some(&parent) = index.get(parent.as_str())
                            && parent != shard
                            && found.insert(parent)
                        {
                            pending.push(parent);
                        }
                    }
                }
                found
            })
            .collect();
        Lineage { read, ancestors }
    }

    /// `Less` when `a` comes first: same shard by sequence number, else parent before child.
    /// `None` for shards of which neither descends from the other.
    fn compare(&self, a: Position, b: Position) -> Option<Ordering> {
        if a.shard == b.shard {
            return Some(sequence_order(a.sequence_number, b.sequence_number));
        }
        if self.ancestors[b.shard].contains(&a.shard) {
            return Some(Ordering::Less);
        }
        if self.ancestors[a.shard].contains(&b.shard) {
            return Some(Ordering::Greater);
        }
        None
    }

    fn show(&self, position: Position) -> String {
        format!(
            "{}/{}",
            self.read[position.shard].shard_id, position.sequence_number
        )
    }
}

/// Kinesis sequence numbers are decimal strings of varying length.
fn sequence_order(a: &str, b: &str) -> Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

/// Checks a whole read-back (every shard of the stream) against the history.
pub fn check(endpoint: &str, history: &History, read: &[ShardRead]) -> Verdict {
    let records = &history.records;
    let mut verdict = Verdict {
        endpoint: endpoint.to_string(),
        attempted: records.len() as u64,
        acknowledged: records.values().filter(|r| r.acked.is_some()).count() as u64,
        ambiguous: records.values().filter(|r| r.ambiguous > 0).count() as u64,
        ambiguous_unacknowledged: records
            .values()
            .filter(|r| r.acked.is_none() && r.ambiguous > 0)
            .count() as u64,
        stored: read.iter().map(|shard| shard.records.len() as u64).sum(),
        ..Verdict::default()
    };
    let lineage = Lineage::new(read);
    let mut copies: HashMap<&str, Vec<Position>> = HashMap::new();
    for (shard_index, shard) in read.iter().enumerate() {
        for pair in shard.records.windows(2) {
            let (previous, next) = (&pair[0].sequence_number, &pair[1].sequence_number);
            if sequence_order(previous, next) != Ordering::Less {
                verdict
                    .unordered_shards
                    .push(format!("{}: {next} after {previous}", shard.shard_id));
            }
        }
        for stored in &shard.records {
            let position = Position {
                shard: shard_index,
                sequence_number: &stored.sequence_number,
            };
            let Some((id, written)) =
                record_id(&stored.data).and_then(|id| records.get_key_value(id))
            else {
                verdict.phantoms.push(format!(
                    "{} at {}",
                    String::from_utf8_lossy(&stored.data[..stored.data.len().min(40)]),
                    lineage.show(position)
                ));
                continue;
            };
            if stored.partition_key != written.partition_key {
                verdict.corrupted.push(format!(
                    "{id} at {}: partition key {:?}, written {:?}",
                    lineage.show(position),
                    stored.partition_key,
                    written.partition_key
                ));
            }
            let payload = Fingerprint::of(&stored.data);
            if payload != written.payload {
                verdict.corrupted.push(format!(
                    "{id} at {}: payload of {} bytes differs from the {} bytes written",
                    lineage.show(position),
                    payload.len,
                    written.payload.len
                ));
            }
            copies.entry(id.as_str()).or_default().push(position);
        }
    }
    for (id, record) in records {
        let stored = copies
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        match &record.acked {
            Some(_) if stored.is_empty() => verdict.lost.push(id.clone()),
            Some(ack) => {
                let at_ack = |p: &&Position| {
                    read[p.shard].shard_id == ack.shard_id
                        && p.sequence_number == ack.sequence_number
                };
                if !stored.iter().any(|p| at_ack(&p)) {
                    let places: Vec<String> = stored.iter().map(|p| lineage.show(*p)).collect();
                    verdict.moved.push(format!(
                        "{id}: acknowledged at {}/{}, stored at {}",
                        ack.shard_id,
                        ack.sequence_number,
                        places.join(", ")
                    ));
                }
            }
            None if !stored.is_empty() && record.copies_allowed() == 0 => {
                verdict.rejected_stored.push(format!(
                    "{id}: stored {} times, each of its {} attempts was rejected",
                    stored.len(),
                    record.attempts
                ));
                continue;
            }
            None if !stored.is_empty() => verdict.stored_unacknowledged += 1,
            None => {}
        }
        let allowed = record.copies_allowed() as usize;
        if stored.len() > allowed {
            verdict.duplicates.push(format!(
                "{id} stored {} times, {allowed} of its attempts could have stored it",
                stored.len()
            ));
        } else if stored.len() > 1 {
            verdict.ambiguous_duplicates += stored.len() as u64 - 1;
        }
    }
    check_order(history, &lineage, &copies, &mut verdict);
    verdict.lost.sort();
    verdict.phantoms.sort();
    verdict.moved.sort();
    verdict.corrupted.sort();
    verdict.duplicates.sort();
    verdict.rejected_stored.sort();
    verdict.reordered.sort();
    verdict
}

/// A point of a key's timeline: a record acknowledged at its stored position, or first sent.
enum Event<'a> {
    Acked { id: &'a str, at: Position<'a> },
    FirstSent { id: &'a str },
}

/// The order rules, per partition key, over the history's logical time.
fn check_order<'a>(
    history: &'a History,
    lineage: &Lineage,
    copies: &HashMap<&'a str, Vec<Position<'a>>>,
    verdict: &mut Verdict,
) {
    let mut per_key: BTreeMap<&str, Vec<(u64, Event)>> = BTreeMap::new();
    // Each record's acknowledged copy (if stored where the acknowledgement said).
    let mut acked_copy: HashMap<&str, Position> = HashMap::new();
    for (id, record) in &history.records {
        let timeline = per_key.entry(record.partition_key.as_str()).or_default();
        timeline.push((record.first_sent, Event::FirstSent { id }));
        let Some(ack) = &record.acked else { continue };
        let stored = copies.get(id.as_str()).into_iter().flatten().find(|p| {
            lineage.read[p.shard].shard_id == ack.shard_id
                && p.sequence_number == ack.sequence_number
        });
        if let Some(position) = stored {
            acked_copy.insert(id, *position);
            timeline.push((ack.at, Event::Acked { id, at: *position }));
        }
    }
    for (key, mut timeline) in per_key {
        timeline.sort_by_key(|(at, _)| *at);
        // The latest acknowledged copy so far, and whose it is.
        let mut bound: Option<(&str, Position)> = None;
        for (_, event) in &timeline {
            match event {
                Event::Acked { id, at } => {
                    if let Some((before, previous)) = bound
                        && lineage.compare(previous, *at) != Some(Ordering::Less)
                    {
                        verdict.reordered.push(format!(
                            "{key}: {id} acknowledged after {before} but stored at {}, not after {}",
                            lineage.show(*at),
                            lineage.show(previous)
                        ));
                    }
                    bound = Some((id, *at));
                }
                Event::FirstSent { id } => {
                    let Some((before, previous)) = bound else {
                        continue;
                    };
                    // Copies other than the acknowledged one (that one is checked above).
                    let others = copies
                        .get(id)
                        .into_iter()
                        .flatten()
                        .filter(|p| acked_copy.get(id) != Some(*p));
                    for copy in others {
                        if lineage.compare(previous, *copy) != Some(Ordering::Less) {
                            verdict.reordered.push(format!(
                                "{key}: a copy of {id} at {} is not after {before} at {}, \
                                 acknowledged before {id} was sent",
                                lineage.show(*copy),
                                lineage.show(previous)
                            ));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
