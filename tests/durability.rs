//! Acknowledged means durable: a write load interrupted by `kill -9` and a restart loses no
//! acknowledged record, and every record comes back in order under the same sequence number.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::types::ShardIteratorType;
use riffle_tests::RiffleProcess;
use riffle_tests::client;
use riffle_tests::stream_name;
use riffle_tests::wait_active;

/// Acknowledged records: id → (shard, sequence number).
type Acked = Arc<Mutex<HashMap<String, (String, String)>>>;

async fn writer(kinesis: Client, name: String, writer: usize, acked: Acked, stop: Arc<AtomicBool>) {
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..20).map(|i| format!("w{writer}-{}", next + i)).collect();
        next += ids.len();
        let entries: Vec<_> = ids
            .iter()
            .map(|id| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("writer-{writer}"))
                    .data(Blob::new(id.as_bytes()))
                    .build()
                    .unwrap()
            })
            .collect();
        // Errors are expected once the node is killed: those records are simply not acked.
        let Ok(output) = kinesis
            .put_records()
            .stream_name(&name)
            .set_records(Some(entries))
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut acked = acked.lock().unwrap();
        for (id, result) in ids.iter().zip(output.records()) {
            if let (Some(shard), Some(sequence)) = (result.shard_id(), result.sequence_number()) {
                acked.insert(id.clone(), (shard.to_string(), sequence.to_string()));
            }
        }
    }
}

async fn read_all(kinesis: &Client, name: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let shards = kinesis
        .list_shards()
        .stream_name(name)
        .send()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for shard in shards.shards() {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .unwrap()
            .to_string();
        let mut records = Vec::new();
        loop {
            let page = kinesis
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .unwrap();
            for record in page.records() {
                records.push((
                    String::from_utf8(record.data().as_ref().to_vec()).unwrap(),
                    record.sequence_number().to_string(),
                ));
            }
            if page.records().is_empty() {
                break;
            }
            iterator = page.next_shard_iterator().unwrap().to_string();
        }
        out.insert(shard.shard_id().to_string(), records);
    }
    out
}

#[tokio::test]
async fn kill_nine_under_load_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = RiffleProcess::start(dir.path()).unwrap();
    let kinesis = client(&node.endpoint());
    let name = stream_name("durable");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(4)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            tokio::spawn(writer(
                kinesis.clone(),
                name.clone(),
                w,
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // Let the load run, then pull the plug while requests are in flight.
    while acked.lock().unwrap().len() < 3_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill9().unwrap();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3_000);

    let node = RiffleProcess::start(dir.path()).unwrap();
    let kinesis = client(&node.endpoint());
    wait_active(&kinesis, &name).await.unwrap();
    let stored = read_all(&kinesis, &name).await;

    let mut found: HashMap<&str, (&str, &str)> = HashMap::new();
    for (shard, records) in &stored {
        for window in records.windows(2) {
            assert!(
                window[0].1 < window[1].1,
                "shard {shard} out of order: {:?}",
                window
            );
        }
        for (id, sequence) in records {
            let previous = found.insert(id.as_str(), (shard.as_str(), sequence.as_str()));
            assert!(previous.is_none(), "record {id} stored twice");
        }
    }
    for (id, (shard, sequence)) in &acked {
        let Some((stored_shard, stored_sequence)) = found.get(id.as_str()) else {
            panic!(
                "acknowledged record {id} lost ({} acked, {} stored)",
                acked.len(),
                found.len()
            );
        };
        assert_eq!(
            (stored_shard, stored_sequence),
            (&shard.as_str(), &sequence.as_str()),
            "record {id} changed"
        );
    }
    // Per writer (one partition key each), acknowledged records keep their write order.
    for records in stored.values() {
        let mut last_per_writer: HashMap<&str, usize> = HashMap::new();
        for (id, _) in records {
            let (writer, number) = id.split_once('-').unwrap();
            let number: usize = number.parse().unwrap();
            if let Some(last) = last_per_writer.insert(writer, number) {
                assert!(number > last, "{writer} reordered: {number} after {last}");
            }
        }
    }

    // The stream keeps working, and new numbers continue above the old ones.
    let put = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("writer-0")
        .data(Blob::new("after"))
        .send()
        .await
        .unwrap();
    let shard_records = &stored[put.shard_id()];
    if let Some((_, last)) = shard_records.last() {
        assert!(put.sequence_number() > last.as_str());
    }
}

#[tokio::test]
async fn clean_restart_keeps_streams_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = RiffleProcess::start(dir.path()).unwrap();
    let kinesis = client(&node.endpoint());
    let name = stream_name("restart");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();
    kinesis
        .add_tags_to_stream()
        .stream_name(&name)
        .tags("kept", "yes")
        .send()
        .await
        .unwrap();
    let put = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("k")
        .data(Blob::new("v"))
        .send()
        .await
        .unwrap();
    assert!(
        node.terminate().unwrap(),
        "SIGTERM must stop the node cleanly"
    );

    let node = RiffleProcess::start(dir.path()).unwrap();
    let kinesis = client(&node.endpoint());
    let tags = kinesis
        .list_tags_for_stream()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags()[0].key(), "kept");
    let stored = read_all(&kinesis, &name).await;
    assert_eq!(
        stored[put.shard_id()],
        [("v".to_string(), put.sequence_number().to_string())]
    );
}
