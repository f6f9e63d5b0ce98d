//! The data plane through the official `aws-sdk-kinesis` client: PutRecord(s), every iterator
//! type, GetRecords paging and errors, ListShards filters, and resharding (split, merge) with
//! lineage and ChildShards.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::types::ShardFilter;
use aws_sdk_kinesis::types::ShardFilterType;
use aws_sdk_kinesis::types::ShardIteratorType;
use riffle_tests::RiffleProcess;
use riffle_tests::client;
use riffle_tests::error_code;
use riffle_tests::stream_name;
use riffle_tests::wait_active;

fn node() -> (tempfile::TempDir, RiffleProcess) {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = RiffleProcess::start(dir.path()).expect("start riffle");
    (dir, process)
}

async fn create(kinesis: &Client, shards: i32) -> String {
    let name = stream_name("records");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(kinesis, &name).await.unwrap();
    name
}

fn entry(key: &str, data: &[u8]) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(data))
        .build()
        .unwrap()
}

async fn iterator(kinesis: &Client, name: &str, shard: &str, kind: ShardIteratorType) -> String {
    kinesis
        .get_shard_iterator()
        .stream_name(name)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_string()
}

/// Reads a shard from `iterator` until caught up (or its end); returns (sequence, key, data).
async fn drain(kinesis: &Client, mut iterator: String) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = kinesis
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap();
        for record in page.records() {
            out.push((
                record.sequence_number().to_string(),
                record.partition_key().unwrap_or_default().to_string(),
                record.data().as_ref().to_vec(),
            ));
        }
        match page.next_shard_iterator() {
            Some(next) if !page.records().is_empty() || page.millis_behind_latest() != Some(0) => {
                iterator = next.to_string()
            }
            _ => break,
        }
    }
    out
}

#[tokio::test]
async fn put_and_read_back_in_order() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 4).await;

    let mut by_shard: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut sequence_numbers = Vec::new();
    for batch in 0..5 {
        let entries: Vec<_> = (0..100)
            .map(|i| {
                let key = format!("key-{}", i % 17);
                entry(&key, format!("{batch}-{i}").as_bytes())
            })
            .collect();
        let output = kinesis
            .put_records()
            .stream_name(&name)
            .set_records(Some(entries.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(output.failed_record_count(), Some(0));
        assert_eq!(output.records().len(), 100);
        for (sent, result) in entries.iter().zip(output.records()) {
            let shard = result.shard_id().unwrap().to_string();
            sequence_numbers.push((shard.clone(), result.sequence_number().unwrap().to_string()));
            by_shard.entry(shard).or_default().push((
                sent.partition_key().unwrap_or_default().to_string(),
                sent.data().as_ref().to_vec(),
            ));
        }
    }
    let single = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("key-3")
        .data(Blob::new("last"))
        .send()
        .await
        .unwrap();
    by_shard
        .entry(single.shard_id().to_string())
        .or_default()
        .push(("key-3".into(), b"last".to_vec()));
    sequence_numbers.push((
        single.shard_id().to_string(),
        single.sequence_number().to_string(),
    ));

    // Within a shard, sequence numbers increase in write order.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for (shard, sequence_number) in &sequence_numbers {
        assert_eq!(sequence_number.len(), 56);
        if let Some(previous) = last.get(shard) {
            assert!(
                sequence_number > previous,
                "{sequence_number} not above {previous}"
            );
        }
        last.insert(shard.clone(), sequence_number.clone());
    }

    // Every record is read back, per shard, in the order written.
    for (shard, written) in &by_shard {
        let read = drain(
            &kinesis,
            iterator(&kinesis, &name, shard, ShardIteratorType::TrimHorizon).await,
        )
        .await;
        let read: Vec<(String, Vec<u8>)> =
            read.into_iter().map(|(_, key, data)| (key, data)).collect();
        assert_eq!(&read, written, "shard {shard}");
    }
    // Keys land on the shard their hash belongs to: the same key always on one shard.
    let mut key_shards: BTreeMap<String, String> = BTreeMap::new();
    for (shard, written) in &by_shard {
        for (key, _) in written {
            if let Some(other) = key_shards.insert(key.clone(), shard.clone()) {
                assert_eq!(&other, shard, "key {key} on two shards");
            }
        }
    }
}

#[tokio::test]
async fn explicit_hash_keys_route_exactly() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 2).await;
    let low = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("any")
        .explicit_hash_key("0")
        .data(Blob::new("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(low.shard_id(), "shardId-000000000000");
    let high = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("any")
        .explicit_hash_key(u128::MAX.to_string())
        .data(Blob::new("b"))
        .send()
        .await
        .unwrap();
    assert_eq!(high.shard_id(), "shardId-000000000001");
    let boundary = (1u128 << 127).to_string();
    let at_boundary = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("any")
        .explicit_hash_key(boundary)
        .data(Blob::new("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(at_boundary.shard_id(), "shardId-000000000001");

    let error = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("any")
        .explicit_hash_key("340282366920938463463374607431768211456")
        .data(Blob::new("d"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let error = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("any")
        .explicit_hash_key("12x")
        .data(Blob::new("d"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));
}

#[tokio::test]
async fn put_validation_errors() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 1).await;

    let too_big = vec![0u8; 1_048_577];
    let error = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new(too_big))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));

    let error = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("k".repeat(257))
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));

    let entries: Vec<_> = (0..501).map(|i| entry(&i.to_string(), b"x")).collect();
    let error = kinesis
        .put_records()
        .stream_name(&name)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));

    let error = kinesis
        .put_record()
        .stream_name("absent")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceNotFoundException")
    );

    let error = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new("x"))
        .sequence_number_for_ordering("12345")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );

    // A sequence number we issued is a valid SequenceNumberForOrdering.
    let first = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new("1"))
        .send()
        .await
        .unwrap();
    let second = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new("2"))
        .sequence_number_for_ordering(first.sequence_number())
        .send()
        .await
        .unwrap();
    assert!(second.sequence_number() > first.sequence_number());
}

#[tokio::test]
async fn every_iterator_type() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 1).await;
    let shard = "shardId-000000000000";

    // AFTER the shard's starting sequence number works before any record exists.
    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let start = shards.shards()[0]
        .sequence_number_range()
        .unwrap()
        .starting_sequence_number()
        .to_string();
    let from_start = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .starting_sequence_number(&start)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_string();
    let latest_before = iterator(&kinesis, &name, shard, ShardIteratorType::Latest).await;

    let mut numbers = Vec::new();
    for i in 0..5 {
        let put = kinesis
            .put_record()
            .stream_name(&name)
            .partition_key("k")
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .unwrap();
        numbers.push(put.sequence_number().to_string());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let datas = |records: &[(String, String, Vec<u8>)]| -> Vec<String> {
        records
            .iter()
            .map(|(_, _, data)| String::from_utf8_lossy(data).into_owned())
            .collect()
    };
    assert_eq!(
        datas(&drain(&kinesis, from_start).await),
        ["r0", "r1", "r2", "r3", "r4"]
    );
    assert_eq!(
        datas(&drain(&kinesis, latest_before).await),
        ["r0", "r1", "r2", "r3", "r4"]
    );
    let latest_after = iterator(&kinesis, &name, shard, ShardIteratorType::Latest).await;
    assert!(drain(&kinesis, latest_after).await.is_empty());

    let at = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&numbers[2])
        .send()
        .await
        .unwrap();
    assert_eq!(
        datas(&drain(&kinesis, at.shard_iterator().unwrap().to_string()).await),
        ["r2", "r3", "r4"]
    );
    let after = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
        .starting_sequence_number(&numbers[2])
        .send()
        .await
        .unwrap();
    assert_eq!(
        datas(&drain(&kinesis, after.shard_iterator().unwrap().to_string()).await),
        ["r3", "r4"]
    );

    let at_time = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(DateTime::from_secs(0))
        .send()
        .await
        .unwrap();
    assert_eq!(
        drain(&kinesis, at_time.shard_iterator().unwrap().to_string())
            .await
            .len(),
        5
    );

    let future = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(DateTime::from_secs(4_000_000_000))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&future).as_deref(),
        Some("InvalidArgumentException")
    );

    // A sequence number of another shard (or a made-up one) is rejected.
    let error = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number("49590338271490256608559692538361571095921575989136588898")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let error = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceNotFoundException")
    );
    let error = kinesis
        .get_shard_iterator()
        .stream_name(&name)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .starting_sequence_number(&numbers[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
}

#[tokio::test]
async fn get_records_pages_and_rejects_bad_iterators() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 1).await;
    let entries: Vec<_> = (0..30)
        .map(|i| entry("k", format!("{i}").as_bytes()))
        .collect();
    kinesis
        .put_records()
        .stream_name(&name)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap();

    let mut it = iterator(
        &kinesis,
        &name,
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let page = kinesis
            .get_records()
            .shard_iterator(&it)
            .limit(7)
            .send()
            .await
            .unwrap();
        assert!(page.records().len() <= 7);
        seen.extend(
            page.records()
                .iter()
                .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned()),
        );
        // A fresh iterator comes back every time, even with nothing new.
        it = page
            .next_shard_iterator()
            .expect("open shards always return a next iterator")
            .to_string();
    }
    let expected: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected);
    let page = kinesis
        .get_records()
        .shard_iterator(&it)
        .send()
        .await
        .unwrap();
    assert!(page.records().is_empty());
    assert_eq!(page.millis_behind_latest(), Some(0));

    let error = kinesis
        .get_records()
        .shard_iterator("AAAAAAAAAAEbogus")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let mut tampered = it.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let error = kinesis
        .get_records()
        .shard_iterator(String::from_utf8(tampered).unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let error = kinesis
        .get_records()
        .shard_iterator(&it)
        .limit(10_001)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));
}

#[tokio::test]
async fn split_and_merge_keep_lineage_and_order() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 2).await;
    let key_for = |shard_high: bool| {
        if shard_high {
            u128::MAX.to_string()
        } else {
            "1".to_string()
        }
    };

    for i in 0..10 {
        kinesis
            .put_record()
            .stream_name(&name)
            .partition_key("k")
            .explicit_hash_key(key_for(false))
            .data(Blob::new(format!("before-{i}")))
            .send()
            .await
            .unwrap();
    }
    // Split shard 0 in the middle.
    let middle = ((1u128 << 127) / 2).to_string();
    kinesis
        .split_shard()
        .stream_name(&name)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&middle)
        .send()
        .await
        .unwrap();
    let error = kinesis
        .split_shard()
        .stream_name(&name)
        .shard_to_split("shardId-000000000001")
        .new_starting_hash_key(u128::MAX.to_string())
        .send()
        .await
        .unwrap_err();
    let code = error_code(&error);
    assert!(
        code.as_deref() == Some("ResourceInUseException")
            || code.as_deref() == Some("InvalidArgumentException"),
        "{code:?}"
    );
    wait_active(&kinesis, &name).await.unwrap();
    for i in 0..10 {
        kinesis
            .put_record()
            .stream_name(&name)
            .partition_key("k")
            .explicit_hash_key(key_for(false))
            .data(Blob::new(format!("after-{i}")))
            .send()
            .await
            .unwrap();
    }

    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let ids: Vec<&str> = shards.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003"
        ]
    );
    let parent = &shards.shards()[0];
    assert!(
        parent
            .sequence_number_range()
            .unwrap()
            .ending_sequence_number()
            .is_some(),
        "parent is closed"
    );
    for child in &shards.shards()[2..] {
        assert_eq!(child.parent_shard_id(), Some("shardId-000000000000"));
    }
    let open = kinesis
        .list_shards()
        .stream_name(&name)
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtLatest)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let open_ids: Vec<&str> = open.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        open_ids,
        [
            "shardId-000000000001",
            "shardId-000000000002",
            "shardId-000000000003"
        ]
    );
    let after_filter = kinesis
        .list_shards()
        .stream_name(&name)
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AfterShardId)
                .shard_id("shardId-000000000001")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(after_filter.shards().len(), 2);
    let horizon = kinesis
        .list_shards()
        .stream_name(&name)
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AtTrimHorizon)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let horizon_ids: Vec<&str> = horizon.shards().iter().map(|s| s.shard_id()).collect();
    assert_eq!(
        horizon_ids,
        ["shardId-000000000000", "shardId-000000000001"]
    );

    // The parent reads to its end, then names its children; the child holds the rest.
    let mut it = iterator(
        &kinesis,
        &name,
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await;
    let mut parent_data = Vec::new();
    let mut children = Vec::new();
    for _ in 0..50 {
        let page = kinesis
            .get_records()
            .shard_iterator(&it)
            .send()
            .await
            .unwrap();
        parent_data.extend(
            page.records()
                .iter()
                .map(|r| String::from_utf8_lossy(r.data().as_ref()).into_owned()),
        );
        match page.next_shard_iterator() {
            Some(next) => it = next.to_string(),
            None => {
                children = page
                    .child_shards()
                    .iter()
                    .map(|c| c.shard_id().to_string())
                    .collect();
                for child in page.child_shards() {
                    assert_eq!(child.parent_shards(), ["shardId-000000000000"]);
                }
                break;
            }
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("before-{i}")).collect();
    assert_eq!(parent_data, expected);
    assert_eq!(children, ["shardId-000000000002", "shardId-000000000003"]);
    let child = drain(
        &kinesis,
        iterator(
            &kinesis,
            &name,
            "shardId-000000000002",
            ShardIteratorType::TrimHorizon,
        )
        .await,
    )
    .await;
    let child: Vec<String> = child
        .into_iter()
        .map(|(_, _, d)| String::from_utf8_lossy(&d).into_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    assert_eq!(child, expected);

    // Merge the two children back.
    kinesis
        .merge_shards()
        .stream_name(&name)
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();
    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let merged = shards.shards().last().unwrap();
    assert_eq!(merged.shard_id(), "shardId-000000000004");
    assert_eq!(merged.parent_shard_id(), Some("shardId-000000000002"));
    assert_eq!(
        merged.adjacent_parent_shard_id(),
        Some("shardId-000000000003")
    );
    assert_eq!(merged.hash_key_range().unwrap().starting_hash_key(), "0");

    // A closed shard cannot be split again; non-adjacent shards cannot merge.
    let error = kinesis
        .split_shard()
        .stream_name(&name)
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("1000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let error = kinesis
        .merge_shards()
        .stream_name(&name)
        .shard_to_merge("shardId-000000000004")
        .adjacent_shard_to_merge("shardId-000000000004")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
}

#[tokio::test]
async fn list_shards_tokens_and_argument_rules() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = create(&kinesis, 5).await;
    let first = kinesis
        .list_shards()
        .stream_name(&name)
        .max_results(2)
        .send()
        .await
        .unwrap();
    assert_eq!(first.shards().len(), 2);
    let token = first.next_token().expect("more shards remain").to_string();
    let second = kinesis
        .list_shards()
        .next_token(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.shards()[0].shard_id(), "shardId-000000000002");
    let third = kinesis
        .list_shards()
        .next_token(second.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(third.shards().len(), 1);
    assert!(third.next_token().is_none());

    let error = kinesis
        .list_shards()
        .stream_name(&name)
        .next_token(&token)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let error = kinesis.list_shards().send().await.unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let error = kinesis
        .list_shards()
        .stream_name(&name)
        .shard_filter(
            ShardFilter::builder()
                .r#type(ShardFilterType::AfterShardId)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
    let exclusive = kinesis
        .list_shards()
        .stream_name(&name)
        .exclusive_start_shard_id("shardId-000000000003")
        .send()
        .await
        .unwrap();
    assert_eq!(exclusive.shards().len(), 1);
}
