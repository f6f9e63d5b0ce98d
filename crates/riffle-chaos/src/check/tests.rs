//! One test per rule: a history and a read-back that break it (and only it), and clean runs
//! the checker must pass (ambiguous writes landing late or twice, keys followed into children
//! whose ids sort before their parents').

use bytes::Bytes;

use super::*;
use crate::history::Outcome;
use crate::history::record_data;

/// Builds a history call by call, with each record's data made by [`record_data`].
#[derive(Default)]
struct Writes {
    history: History,
}

impl Writes {
    /// One call carrying `records` (`(id, key)`), ending for each as `outcomes` says.
    fn call(&mut self, records: &[(&str, &str)], outcomes: &[Outcome]) -> &mut Self {
        let data: Vec<Vec<u8>> = records.iter().map(|(id, _)| data(id)).collect();
        self.history.sending(
            records
                .iter()
                .zip(&data)
                .map(|((id, key), data)| (*id, *key, data.as_slice())),
        );
        for ((id, _), outcome) in records.iter().zip(outcomes) {
            self.history.ended(id, outcome.clone());
        }
        self
    }
}

fn data(id: &str) -> Vec<u8> {
    record_data(id, 7, 24)
}

fn acked(shard: &str, sequence: &str) -> Outcome {
    Outcome::Acked {
        shard_id: shard.into(),
        sequence_number: sequence.into(),
    }
}

fn stored(sequence: &str, key: &str, id: &str) -> Record {
    Record {
        sequence_number: sequence.into(),
        partition_key: key.into(),
        data: Bytes::from(data(id)),
        approximate_arrival_timestamp: None,
    }
}

fn shard(id: &str, parents: &[&str], records: Vec<Record>) -> ShardRead {
    ShardRead {
        shard_id: id.into(),
        parents: parents.iter().map(|p| p.to_string()).collect(),
        records,
    }
}

fn verdict(writes: &Writes, read: &[ShardRead]) -> Verdict {
    check("test", &writes.history, read)
}

/// The verdict fails, and `expected` (not empty) are all its findings.
fn only(verdict: &Verdict, expected: &[String]) {
    assert!(!verdict.ok(), "{}", verdict.summary());
    assert!(!expected.is_empty(), "{}", verdict.summary());
    let all = verdict.findings().count();
    assert_eq!(all, expected.len(), "{}", verdict.summary());
}

#[test]
fn a_clean_run_with_ambiguous_writes_passes() {
    let mut writes = Writes::default();
    writes
        .call(
            &[("a0", "a"), ("b0", "b")],
            &[acked("s0", "10"), Outcome::Ambiguous],
        )
        // b0 again: acknowledged this time; its first attempt landed too (an extra copy).
        .call(&[("b0", "b")], &[acked("s0", "12")])
        // c0 timed out and was given up; it landed after all.
        .call(&[("c0", "c")], &[Outcome::Ambiguous])
        // d0 was throttled and never written.
        .call(&[("d0", "d")], &[Outcome::Rejected]);
    let read = [shard(
        "s0",
        &[],
        vec![
            stored("10", "a", "a0"),
            stored("11", "b", "b0"),
            stored("12", "b", "b0"),
            stored("13", "c", "c0"),
        ],
    )];
    let verdict = verdict(&writes, &read);
    assert!(verdict.ok(), "{}", verdict.summary());
    assert_eq!(verdict.acknowledged, 2);
    assert_eq!(verdict.ambiguous, 2);
    assert_eq!(verdict.ambiguous_duplicates, 1);
    assert_eq!(verdict.stored_unacknowledged, 1);
}

#[test]
fn an_acknowledged_record_that_is_not_stored_is_lost() {
    let mut writes = Writes::default();
    writes.call(
        &[("a0", "a"), ("a1", "a")],
        &[acked("s0", "1"), acked("s0", "2")],
    );
    let verdict = verdict(&writes, &[shard("s0", &[], vec![stored("1", "a", "a0")])]);
    assert_eq!(verdict.lost, ["a1"]);
    only(&verdict, &verdict.lost);
}

#[test]
fn a_record_stored_elsewhere_than_acknowledged_has_moved() {
    let mut writes = Writes::default();
    writes.call(&[("a0", "a")], &[acked("s0", "1")]);
    let verdict = verdict(&writes, &[shard("s0", &[], vec![stored("2", "a", "a0")])]);
    assert_eq!(verdict.moved.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.moved);
}

#[test]
fn a_record_nobody_wrote_is_a_phantom() {
    let mut writes = Writes::default();
    writes.call(&[("a0", "a")], &[acked("s0", "1")]);
    let mut garbage = stored("3", "a", "x");
    garbage.data = Bytes::from_static(b"\xff\xfe");
    let read = [shard(
        "s0",
        &[],
        vec![stored("1", "a", "a0"), stored("2", "a", "zz9"), garbage],
    )];
    let verdict = verdict(&writes, &read);
    assert_eq!(verdict.phantoms.len(), 2, "{}", verdict.summary());
    only(&verdict, &verdict.phantoms);
}

#[test]
fn a_stored_payload_must_be_the_bytes_written() {
    let mut writes = Writes::default();
    writes.call(&[("a0", "a")], &[acked("s0", "1")]);
    // Same id and length, one byte different.
    let mut changed = stored("1", "a", "a0");
    let mut bytes = changed.data.to_vec();
    *bytes.last_mut().unwrap() = b'y';
    changed.data = Bytes::from(bytes);
    let verdict = verdict(&writes, &[shard("s0", &[], vec![changed])]);
    assert_eq!(verdict.corrupted.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.corrupted);
}

#[test]
fn a_stored_partition_key_must_be_the_one_written() {
    let mut writes = Writes::default();
    writes.call(&[("a0", "a")], &[acked("s0", "1")]);
    let verdict = verdict(&writes, &[shard("s0", &[], vec![stored("1", "b", "a0")])]);
    assert_eq!(verdict.corrupted.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.corrupted);
}

#[test]
fn an_unambiguous_write_stored_twice_is_a_duplicate() {
    let mut writes = Writes::default();
    writes.call(&[("a0", "a")], &[acked("s0", "1")]);
    let read = [shard(
        "s0",
        &[],
        vec![stored("1", "a", "a0"), stored("2", "a", "a0")],
    )];
    let verdict = verdict(&writes, &read);
    assert_eq!(verdict.duplicates.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.duplicates);
}

#[test]
fn each_ambiguous_attempt_explains_one_copy_at_most() {
    let mut writes = Writes::default();
    writes
        .call(&[("a0", "a")], &[Outcome::Ambiguous])
        .call(&[("a0", "a")], &[acked("s0", "2")]);
    let twice = [shard(
        "s0",
        &[],
        vec![stored("1", "a", "a0"), stored("2", "a", "a0")],
    )];
    assert!(verdict(&writes, &twice).ok());
    let thrice = [shard(
        "s0",
        &[],
        vec![
            stored("1", "a", "a0"),
            stored("2", "a", "a0"),
            stored("3", "a", "a0"),
        ],
    )];
    let verdict = verdict(&writes, &thrice);
    assert_eq!(verdict.duplicates.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.duplicates);
}

#[test]
fn a_record_stored_after_a_definite_rejection_is_a_violation() {
    let mut writes = Writes::default();
    writes
        .call(&[("a0", "a")], &[Outcome::Rejected])
        .call(&[("a0", "a")], &[Outcome::Rejected]);
    let verdict = verdict(&writes, &[shard("s0", &[], vec![stored("1", "a", "a0")])]);
    assert_eq!(verdict.rejected_stored.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.rejected_stored);
}

#[test]
fn acknowledged_records_of_a_key_are_stored_in_acknowledgement_order() {
    // One call, two records of one key: Kinesis keeps their request order.
    let mut writes = Writes::default();
    writes.call(
        &[("a0", "a"), ("a1", "a")],
        &[acked("s0", "2"), acked("s0", "1")],
    );
    let read = [shard(
        "s0",
        &[],
        vec![stored("1", "a", "a1"), stored("2", "a", "a0")],
    )];
    let verdict = verdict(&writes, &read);
    assert_eq!(verdict.reordered.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.reordered);
}

#[test]
fn no_copy_precedes_a_record_acknowledged_before_it_was_sent() {
    let mut writes = Writes::default();
    writes
        .call(&[("a0", "a")], &[acked("s0", "5")])
        // a1 is sent after a0's acknowledgement; its outcome is not known.
        .call(&[("a1", "a")], &[Outcome::Ambiguous]);
    let read = [shard(
        "s0",
        &[],
        vec![stored("4", "a", "a1"), stored("5", "a", "a0")],
    )];
    let verdict = verdict(&writes, &read);
    assert_eq!(verdict.reordered.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.reordered);
}

#[test]
fn an_ambiguous_write_may_land_after_later_writes() {
    // a0 timed out; a1, sent afterwards, was acknowledged; a0 landed after it. Nothing was
    // acknowledged before a0 was sent, so no order binds it.
    let mut writes = Writes::default();
    writes
        .call(&[("a0", "a")], &[Outcome::Ambiguous])
        .call(&[("a1", "a")], &[acked("s0", "5")]);
    let read = [shard(
        "s0",
        &[],
        vec![stored("5", "a", "a1"), stored("9", "a", "a0")],
    )];
    let verdict = verdict(&writes, &read);
    assert!(verdict.ok(), "{}", verdict.summary());
}

#[test]
fn order_follows_the_lineage_not_the_shard_ids() {
    // The child's id sorts before its parent's; the key moved from the parent to the child.
    let mut writes = Writes::default();
    writes
        .call(&[("a0", "a")], &[acked("shard-z", "10")])
        .call(&[("a1", "a")], &[acked("shard-a", "3")]);
    let in_order = [
        shard("shard-a", &["shard-z"], vec![stored("3", "a", "a1")]),
        shard("shard-z", &[], vec![stored("10", "a", "a0")]),
    ];
    let verdict = verdict(&writes, &in_order);
    assert!(verdict.ok(), "{}", verdict.summary());
    // The same records with the lineage the other way round: a1 now precedes a0.
    let reversed = [
        shard("shard-a", &[], vec![stored("3", "a", "a1")]),
        shard("shard-z", &["shard-a"], vec![stored("10", "a", "a0")]),
    ];
    let verdict = super::check("test", &writes.history, &reversed);
    assert_eq!(verdict.reordered.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.reordered);
}

#[test]
fn a_merged_child_follows_both_parents() {
    let mut writes = Writes::default();
    writes
        .call(
            &[("a0", "a"), ("b0", "b")],
            &[acked("p1", "1"), acked("p2", "1")],
        )
        .call(
            &[("a1", "a"), ("b1", "b")],
            &[acked("c", "1"), acked("c", "2")],
        );
    let read = [
        shard(
            "c",
            &["p1", "p2"],
            vec![stored("1", "a", "a1"), stored("2", "b", "b1")],
        ),
        shard("p1", &[], vec![stored("1", "a", "a0")]),
        shard("p2", &[], vec![stored("1", "b", "b0")]),
    ];
    assert!(verdict(&writes, &read).ok());
}

#[test]
fn a_key_in_two_unrelated_shards_is_out_of_order() {
    let mut writes = Writes::default();
    writes
        .call(&[("a0", "a")], &[acked("s1", "1")])
        .call(&[("a1", "a")], &[acked("s2", "1")]);
    let read = [
        shard("s1", &["s0"], vec![stored("1", "a", "a0")]),
        shard("s2", &["s0"], vec![stored("1", "a", "a1")]),
    ];
    let verdict = verdict(&writes, &read);
    assert_eq!(verdict.reordered.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.reordered);
}

#[test]
fn sequence_numbers_increase_within_a_shard() {
    let mut writes = Writes::default();
    writes.call(
        &[("a0", "a"), ("b0", "b")],
        &[acked("s0", "20"), acked("s0", "3")],
    );
    let read = [shard(
        "s0",
        &[],
        vec![stored("20", "a", "a0"), stored("3", "b", "b0")],
    )];
    let verdict = verdict(&writes, &read);
    assert_eq!(verdict.unordered_shards.len(), 1, "{}", verdict.summary());
    only(&verdict, &verdict.unordered_shards);
}
