//! Acknowledged means durable: a write load interrupted by `kill -9` and a restart loses no
//! acknowledged record, and every record comes back in order under the same sequence number.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use riffle_tests::RiffleProcess;
use riffle_tests::assert_checked;
use riffle_tests::client;
use riffle_tests::read_stream;
use riffle_tests::start_writers;
use riffle_tests::stream_name;
use riffle_tests::wait_active;

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

    // Eight writers, one partition key each, twenty records a call.
    let mut load = start_writers(&[node.endpoint()], &name, 8, 20, Duration::ZERO);
    // Let the load run, then pull the plug while requests are in flight.
    while load.acknowledged() < 3_000 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill9().unwrap();
    let history = load.stop().await;
    assert!(history.acknowledged() >= 3_000);

    let node = RiffleProcess::start(dir.path()).unwrap();
    let kinesis = client(&node.endpoint());
    wait_active(&kinesis, &name).await.unwrap();
    let stored = read_stream(&node.endpoint(), &name).await;
    // Nothing acknowledged lost or changed, nothing stored twice or out of order per writer.
    assert_checked(&node.endpoint(), &history, &stored);

    // The stream keeps working, and new numbers continue above the old ones.
    let put = kinesis
        .put_record()
        .stream_name(&name)
        .partition_key("writer-0")
        .data(Blob::new("after"))
        .send()
        .await
        .unwrap();
    let shard_records = &stored
        .iter()
        .find(|shard| shard.shard_id == put.shard_id())
        .expect("the shard was read back")
        .records;
    if let Some(last) = shard_records.last() {
        assert!(put.sequence_number() > last.sequence_number.as_str());
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
    let stored = read_stream(&node.endpoint(), &name).await;
    let records: Vec<(&[u8], &str)> = stored
        .iter()
        .filter(|shard| shard.shard_id == put.shard_id())
        .flat_map(|shard| &shard.records)
        .map(|record| (&record.data[..], record.sequence_number.as_str()))
        .collect();
    assert_eq!(records, [(&b"v"[..], put.sequence_number())]);
}
