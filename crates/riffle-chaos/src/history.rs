//! The history of a write load: for every record ever attempted, its partition key and payload,
//! when it was first sent and acknowledged (on one logical clock), and how each attempt ended.
//! [`crate::check`] judges what was read back against it.
//!
//! Writers must keep at most one call in flight per partition key, and put a record's id at the
//! start of its data ([`record_data`]): the checker finds a stored record's history by that id.

use std::collections::HashMap;
use std::hash::Hasher;

use riffle_client::Error;
use riffle_client::ops::records::PutRecordsOutput;

/// A payload's length and digest: enough to tell a stored payload from the one written without
/// keeping every payload of a long run in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: usize,
    pub digest: u64,
}

impl Fingerprint {
    pub fn of(data: &[u8]) -> Fingerprint {
        // SipHash with fixed keys: the same bytes give the same digest within a process.
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(data);
        Fingerprint {
            len: data.len(),
            digest: hasher.finish(),
        }
    }
}

/// Where an acknowledgement said a record went, and when (logical time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub shard_id: String,
    pub sequence_number: String,
    pub at: u64,
}

/// Everything known about one record.
#[derive(Debug, Clone)]
pub struct RecordHistory {
    pub partition_key: String,
    pub payload: Fingerprint,
    /// Logical time of the first attempt.
    pub first_sent: u64,
    pub attempts: u32,
    /// Attempts whose outcome is not known: each may have stored the record once.
    pub ambiguous: u32,
    /// Attempts certainly not carried out (a rejection, a throttled entry, nothing sent).
    pub rejected: u32,
    pub acked: Option<Ack>,
}

impl RecordHistory {
    /// How many stored copies the attempts can explain: each attempt not definitely rejected
    /// (acknowledged, ambiguous, or never answered) stored the record at most once.
    pub fn copies_allowed(&self) -> u32 {
        self.attempts.saturating_sub(self.rejected)
    }
}

/// How one attempt of one record ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Acked {
        shard_id: String,
        sequence_number: String,
    },
    Rejected,
    Ambiguous,
}

/// The history of a load, by record id.
#[derive(Debug, Default)]
pub struct History {
    clock: u64,
    pub records: HashMap<String, RecordHistory>,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// A call carrying these records (`id`, partition key, data) is about to be sent.
    pub fn sending<'a>(&mut self, records: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>) {
        let now = self.tick();
        for (id, partition_key, data) in records {
            let record = self
                .records
                .entry(id.to_string())
                .or_insert_with(|| RecordHistory {
                    partition_key: partition_key.to_string(),
                    payload: Fingerprint::of(data),
                    first_sent: now,
                    attempts: 0,
                    ambiguous: 0,
                    rejected: 0,
                    acked: None,
                });
            record.attempts += 1;
        }
    }

    /// How an attempt of `id` ended. Acknowledgements of one call are recorded in request
    /// order, so each gets a later time than the one before it.
    pub fn ended(&mut self, id: &str, outcome: Outcome) {
        let now = self.tick();
        let Some(record) = self.records.get_mut(id) else {
            return;
        };
        match outcome {
            Outcome::Acked {
                shard_id,
                sequence_number,
            } => {
                record.acked.get_or_insert(Ack {
                    shard_id,
                    sequence_number,
                    at: now,
                });
            }
            Outcome::Rejected => record.rejected += 1,
            Outcome::Ambiguous => record.ambiguous += 1,
        }
    }

    /// Records the outcome of a PutRecords call that carried `ids` (in request order); returns
    /// each record's outcome.
    pub fn put_records_ended(
        &mut self,
        ids: &[String],
        result: &Result<PutRecordsOutput, Error>,
    ) -> Vec<Outcome> {
        let outcomes: Vec<Outcome> = match result {
            Ok(output) => ids
                .iter()
                .enumerate()
                .map(|(index, _)| match output.records.get(index) {
                    Some(entry) => match entry.written() {
                        Some((shard_id, sequence_number)) => Outcome::Acked {
                            shard_id: shard_id.to_string(),
                            sequence_number: sequence_number.to_string(),
                        },
                        None if entry.is_ambiguous_failure() => Outcome::Ambiguous,
                        None => Outcome::Rejected,
                    },
                    // An answer without the entry's result says nothing about it.
                    None => Outcome::Ambiguous,
                })
                .collect(),
            Err(error) if error.is_ambiguous() => vec![Outcome::Ambiguous; ids.len()],
            Err(_) => vec![Outcome::Rejected; ids.len()],
        };
        for (id, outcome) in ids.iter().zip(&outcomes) {
            self.ended(id, outcome.clone());
        }
        outcomes
    }

    /// Records acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.records.values().filter(|r| r.acked.is_some()).count()
    }

    pub fn is_acknowledged(&self, id: &str) -> bool {
        self.records.get(id).is_some_and(|r| r.acked.is_some())
    }

    /// Ids of the acknowledged records.
    pub fn acknowledged_ids(&self) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .filter(|(_, record)| record.acked.is_some())
            .map(|(id, _)| id.as_str())
    }
}

/// A record's data: its id, the time of its first attempt (epoch ms), and padding up to
/// `bytes`.
pub fn record_data(id: &str, sent_ms: u64, bytes: usize) -> Vec<u8> {
    let mut data = format!("{id} {sent_ms}").into_bytes();
    if data.len() + 1 < bytes {
        data.push(b' ');
        data.resize(bytes, b'x');
    }
    data
}

/// The id a record's data starts with (up to the first space).
pub fn record_id(data: &[u8]) -> Option<&str> {
    let end = data.iter().position(|b| *b == b' ').unwrap_or(data.len());
    std::str::from_utf8(&data[..end])
        .ok()
        .filter(|id| !id.is_empty())
}

/// The time of the record's first attempt (epoch ms), from its data.
pub fn record_sent_ms(data: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(data).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_data_carries_its_id_and_send_time() {
        let data = record_data("p001k002n00000003", 1234, 64);
        assert_eq!(data.len(), 64);
        assert_eq!(record_id(&data), Some("p001k002n00000003"));
        assert_eq!(record_sent_ms(&data), Some(1234));
        let short = record_data("a", 5, 0);
        assert_eq!(short, b"a 5");
        assert_eq!(record_id(b""), None);
    }

    #[test]
    fn outcomes_count_the_copies_an_attempt_can_explain() {
        let mut history = History::default();
        let ids = vec!["a".to_string(), "b".to_string()];
        history.sending([("a", "k", &b"a 1"[..]), ("b", "k", &b"b 1"[..])]);
        let timeout = Err(Error::NoAnswer {
            kind: riffle_client::NoAnswerKind::Timeout,
            detail: String::new(),
        });
        history.put_records_ended(&ids, &timeout);
        history.sending([("a", "k", &b"a 1"[..]), ("b", "k", &b"b 1"[..])]);
        let output: PutRecordsOutput = serde_json::from_str(
            r#"{"FailedRecordCount":1,"Records":[{"ShardId":"s","SequenceNumber":"1"},
                {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"slow"}]}"#,
        )
        .unwrap();
        history.put_records_ended(&ids, &Ok(output));
        let a = &history.records["a"];
        assert_eq!((a.attempts, a.ambiguous, a.rejected), (2, 1, 0));
        assert_eq!(a.copies_allowed(), 2);
        assert_eq!(a.first_sent, 1);
        let b = &history.records["b"];
        assert_eq!((b.attempts, b.ambiguous, b.rejected), (2, 1, 1));
        assert_eq!(b.copies_allowed(), 1);
        assert_eq!(history.acknowledged(), 1);
    }
}
