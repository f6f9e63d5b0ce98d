//! Stream lifecycle, description, listing, tags, retention and limits through the official
//! `aws-sdk-kinesis` client against a real node.

use aws_sdk_kinesis::types::StreamMode;
use aws_sdk_kinesis::types::StreamModeDetails;
use aws_sdk_kinesis::types::StreamStatus;
use riffle_tests::RiffleProcess;
use riffle_tests::client;
use riffle_tests::create_active_stream;
use riffle_tests::error_code;
use riffle_tests::stream_name;
use riffle_tests::wait_active;
use riffle_tests::wait_consumer_active;

fn node() -> (tempfile::TempDir, RiffleProcess) {
    let dir = tempfile::tempdir().expect("temp dir");
    let process = RiffleProcess::start(dir.path()).expect("start riffle");
    (dir, process)
}

#[tokio::test]
async fn create_describe_list_delete() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("life");

    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(3)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();

    let description = kinesis
        .describe_stream()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let description = description.stream_description().unwrap();
    assert_eq!(description.stream_name(), name);
    assert_eq!(description.stream_status(), &StreamStatus::Active);
    assert_eq!(
        description.stream_arn(),
        format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}")
    );
    assert_eq!(description.retention_period_hours(), 24);
    assert!(!description.has_more_shards());
    let shards = description.shards();
    assert_eq!(shards.len(), 3);
    assert_eq!(shards[0].shard_id(), "shardId-000000000000");
    assert_eq!(shards[0].hash_key_range().unwrap().starting_hash_key(), "0");
    assert_eq!(
        shards[2].hash_key_range().unwrap().ending_hash_key(),
        u128::MAX.to_string()
    );
    for window in shards.windows(2) {
        let end: u128 = window[0]
            .hash_key_range()
            .unwrap()
            .ending_hash_key()
            .parse()
            .unwrap();
        let start: u128 = window[1]
            .hash_key_range()
            .unwrap()
            .starting_hash_key()
            .parse()
            .unwrap();
        assert_eq!(end + 1, start, "hash ranges must be contiguous");
    }
    let starting = shards[1]
        .sequence_number_range()
        .unwrap()
        .starting_sequence_number();
    assert_eq!(
        starting.len(),
        56,
        "sequence numbers use the 56-digit layout"
    );

    // Limit and ExclusiveStartShardId page through the shards.
    let page = kinesis
        .describe_stream()
        .stream_name(&name)
        .limit(2)
        .send()
        .await
        .unwrap();
    let page = page.stream_description().unwrap();
    assert_eq!(page.shards().len(), 2);
    assert!(page.has_more_shards());
    let rest = kinesis
        .describe_stream()
        .stream_name(&name)
        .exclusive_start_shard_id("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let rest = rest.stream_description().unwrap();
    assert_eq!(rest.shards().len(), 1);
    assert_eq!(rest.shards()[0].shard_id(), "shardId-000000000002");

    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let summary = summary.stream_description_summary().unwrap();
    assert_eq!(summary.open_shard_count(), 3);
    assert_eq!(
        summary.stream_mode_details().unwrap().stream_mode(),
        &StreamMode::Provisioned
    );

    // By ARN alone.
    let arn = description.stream_arn().to_string();
    let by_arn = kinesis
        .describe_stream_summary()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_arn.stream_description_summary().unwrap().stream_name(),
        name
    );

    let listed = kinesis.list_streams().send().await.unwrap();
    assert!(listed.stream_names().contains(&name));
    assert!(
        listed
            .stream_summaries()
            .iter()
            .any(|summary| summary.stream_name() == name)
    );

    kinesis
        .delete_stream()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..200 {
        match kinesis
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await
        {
            Err(error) => {
                assert_eq!(
                    error_code(&error).as_deref(),
                    Some("ResourceNotFoundException")
                );
                gone = true;
                break;
            }
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    assert!(gone, "stream still exists after DeleteStream");
}

#[tokio::test]
async fn create_errors_match_kinesis() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("errors");

    let error = kinesis
        .create_stream()
        .stream_name("bad name!")
        .shard_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));

    let error = kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));

    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let error = kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceInUseException")
    );

    let error = kinesis
        .describe_stream()
        .stream_name("no-such-stream")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceNotFoundException")
    );

    let error = kinesis
        .delete_stream()
        .stream_name("no-such-stream")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceNotFoundException")
    );

    let error = kinesis
        .describe_stream_summary()
        .stream_arn("arn:aws:kinesis:us-east-1:000000000000:stream/other")
        .stream_name(&name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );

    let error = kinesis
        .create_stream()
        .stream_name(stream_name("huge"))
        .shard_count(1_000_000)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("LimitExceededException")
    );
}

#[tokio::test]
async fn on_demand_streams_start_with_four_shards() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("ondemand");
    let on_demand = StreamModeDetails::builder()
        .stream_mode(StreamMode::OnDemand)
        .build()
        .unwrap();
    kinesis
        .create_stream()
        .stream_name(&name)
        .stream_mode_details(on_demand.clone())
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let summary = summary.stream_description_summary().unwrap();
    assert_eq!(summary.open_shard_count(), 4);
    assert_eq!(
        summary.stream_mode_details().unwrap().stream_mode(),
        &StreamMode::OnDemand
    );

    let error = kinesis
        .create_stream()
        .stream_name(stream_name("ondemand-count"))
        .shard_count(2)
        .stream_mode_details(on_demand)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );

    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let error = kinesis
        .split_shard()
        .stream_name(&name)
        .shard_to_split(shards.shards()[0].shard_id())
        .new_starting_hash_key("1000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));
}

#[tokio::test]
async fn list_streams_pages() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let mut names: Vec<String> = (0..5)
        .map(|i| format!("page-{i}-{}", std::process::id()))
        .collect();
    names.sort();
    for name in &names {
        kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
            .unwrap();
    }
    let first = kinesis.list_streams().limit(2).send().await.unwrap();
    assert_eq!(first.stream_names(), &names[..2]);
    assert!(first.has_more_streams());
    let token = first
        .next_token()
        .expect("a NextToken when more streams exist")
        .to_string();
    let second = kinesis
        .list_streams()
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.stream_names(), &names[2..4]);
    let third = kinesis
        .list_streams()
        .exclusive_start_stream_name(&names[3])
        .send()
        .await
        .unwrap();
    assert_eq!(third.stream_names(), &names[4..]);
    assert!(!third.has_more_streams());

    let error = kinesis
        .list_streams()
        .next_token("garbage")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );
}

#[tokio::test]
async fn tags_through_both_apis() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("tags");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .tags("team", "data")
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();

    kinesis
        .add_tags_to_stream()
        .stream_name(&name)
        .tags("env", "test")
        .tags("owner", "riffle")
        .send()
        .await
        .unwrap();
    let tags = kinesis
        .list_tags_for_stream()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = tags.tags().iter().map(|tag| tag.key()).collect();
    assert_eq!(keys, ["env", "owner", "team"]);
    assert!(!tags.has_more_tags());

    let page = kinesis
        .list_tags_for_stream()
        .stream_name(&name)
        .limit(1)
        .exclusive_start_tag_key("env")
        .send()
        .await
        .unwrap();
    assert_eq!(page.tags().len(), 1);
    assert_eq!(page.tags()[0].key(), "owner");
    assert!(page.has_more_tags());

    kinesis
        .remove_tags_from_stream()
        .stream_name(&name)
        .tag_keys("owner")
        .tag_keys("absent")
        .send()
        .await
        .unwrap();
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}");
    kinesis
        .tag_resource()
        .resource_arn(&arn)
        .tags("cost", "7")
        .send()
        .await
        .unwrap();
    kinesis
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("team")
        .send()
        .await
        .unwrap();
    let tags = kinesis
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = tags
        .tags()
        .iter()
        .map(|tag| (tag.key(), tag.value().unwrap_or("")))
        .collect();
    assert_eq!(pairs, [("cost", "7"), ("env", "test")]);

    let mut too_many = kinesis.add_tags_to_stream().stream_name(&name);
    for i in 0..60 {
        too_many = too_many.tags(format!("k{i}"), "v");
    }
    let error = too_many.send().await.unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("InvalidArgumentException")
    );

    let error = kinesis
        .list_tags_for_resource()
        .resource_arn("arn:aws:kinesis:us-east-1:000000000000:stream/absent")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn retention_rules() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("retention");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();

    kinesis
        .increase_stream_retention_period()
        .stream_name(&name)
        .retention_period_hours(72)
        .send()
        .await
        .unwrap();
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .retention_period_hours(),
        72
    );

    for (hours, increase) in [(48, true), (100, false), (23, false), (8761, true)] {
        let code = if increase {
            let error = kinesis
                .increase_stream_retention_period()
                .stream_name(&name)
                .retention_period_hours(hours)
                .send()
                .await
                .unwrap_err();
            error_code(&error)
        } else {
            let error = kinesis
                .decrease_stream_retention_period()
                .stream_name(&name)
                .retention_period_hours(hours)
                .send()
                .await
                .unwrap_err();
            error_code(&error)
        };
        assert_eq!(
            code.as_deref(),
            Some("InvalidArgumentException"),
            "hours {hours}"
        );
    }
    kinesis
        .decrease_stream_retention_period()
        .stream_name(&name)
        .retention_period_hours(24)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn describe_limits_counts_open_shards() {
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let before = kinesis.describe_limits().send().await.unwrap();
    let name = stream_name("limits");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(2)
        .send()
        .await
        .unwrap();
    let after = kinesis.describe_limits().send().await.unwrap();
    assert_eq!(after.open_shard_count(), before.open_shard_count() + 2);
    assert_eq!(after.shard_limit(), 20_000);
    assert_eq!(after.on_demand_stream_count_limit(), 50);
}

#[tokio::test]
async fn update_shard_count_reshards_to_equal_ranges() {
    use aws_sdk_kinesis::types::ScalingType;
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("scale");
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(3)
        .send()
        .await
        .unwrap();
    wait_active(&kinesis, &name).await.unwrap();

    // Out of [half, double] of the open count: LimitExceeded, with AWS's messages.
    for (target, message) in [
        (7, "cannot scale up over double"),
        (1, "cannot scale down below half"),
    ] {
        let error = kinesis
            .update_shard_count()
            .stream_name(&name)
            .target_shard_count(target)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            error_code(&error).as_deref(),
            Some("LimitExceededException")
        );
        assert!(format!("{error:?}").contains(message), "{error:?}");
    }
    let error = kinesis
        .update_shard_count()
        .stream_name(&name)
        .target_shard_count(4)
        .scaling_type(ScalingType::from("LINEAR"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));

    let answer = kinesis
        .update_shard_count()
        .stream_name(&name)
        .target_shard_count(5)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.current_shard_count(), Some(3));
    assert_eq!(answer.target_shard_count(), Some(5));
    assert_eq!(answer.stream_name(), Some(name.as_str()));
    assert!(
        answer
            .stream_arn()
            .unwrap()
            .ends_with(&format!("stream/{name}"))
    );
    // UPDATING meanwhile: a second change is refused.
    let busy = kinesis
        .update_shard_count()
        .stream_name(&name)
        .target_shard_count(6)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await;
    if let Err(error) = busy {
        assert_eq!(
            error_code(&error).as_deref(),
            Some("ResourceInUseException")
        );
    }
    wait_active(&kinesis, &name).await.unwrap();

    let shards = kinesis
        .list_shards()
        .stream_name(&name)
        .shard_filter(
            aws_sdk_kinesis::types::ShardFilter::builder()
                .r#type(aws_sdk_kinesis::types::ShardFilterType::AtLatest)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let open = shards.shards();
    assert_eq!(open.len(), 5);
    // Equal ranges: the five open shards split the key space evenly, in order.
    let width = u128::MAX / 5;
    let mut starts: Vec<u128> = open
        .iter()
        .map(|shard| {
            shard
                .hash_key_range()
                .unwrap()
                .starting_hash_key()
                .parse()
                .unwrap()
        })
        .collect();
    starts.sort_unstable();
    for (position, start) in starts.iter().enumerate() {
        assert!(
            start.abs_diff(width * position as u128 + position as u128) <= 5,
            "shard {position} starts at {start}"
        );
    }
    for shard in open {
        assert!(shard.parent_shard_id().is_some(), "{shard:?} has a parent");
    }

    // On-demand streams do not take UpdateShardCount; UpdateStreamMode switches them.
    let arn = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_string();
    kinesis
        .update_stream_mode()
        .stream_arn(&arn)
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        summary
            .stream_description_summary()
            .unwrap()
            .stream_mode_details()
            .unwrap()
            .stream_mode(),
        &StreamMode::OnDemand
    );
    let error = kinesis
        .update_shard_count()
        .stream_name(&name)
        .target_shard_count(4)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error).as_deref(), Some("ValidationException"));
    let error = kinesis
        .update_stream_mode()
        .stream_arn(arn.replace(&name, "no-such-stream"))
        .stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::Provisioned)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error).as_deref(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn stream_consumers_register_list_describe_and_deregister() {
    use aws_sdk_kinesis::types::ConsumerStatus;
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("consumers");
    let stream_arn = create_active_stream(&kinesis, &name, 1).await.unwrap();

    let registered = kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("app-1")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap();
    assert_eq!(registered.consumer_name, "app-1");
    // CREATING at first; the metadata leader may have activated it already.
    assert!(
        matches!(
            registered.consumer_status,
            ConsumerStatus::Creating | ConsumerStatus::Active
        ),
        "{:?}",
        registered.consumer_status
    );
    assert!(
        registered
            .consumer_arn
            .starts_with(&format!("{stream_arn}/consumer/app-1:")),
        "{}",
        registered.consumer_arn
    );
    let again = kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("app-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&again).as_deref(),
        Some("ResourceInUseException")
    );

    // CREATING becomes ACTIVE by itself; by ARN or by stream and name.
    let mut status = ConsumerStatus::Creating;
    for _ in 0..50 {
        let described = kinesis
            .describe_stream_consumer()
            .consumer_arn(&registered.consumer_arn)
            .send()
            .await
            .unwrap()
            .consumer_description
            .unwrap();
        assert_eq!(described.stream_arn, stream_arn);
        status = described.consumer_status;
        if status == ConsumerStatus::Active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, ConsumerStatus::Active);
    let by_name = kinesis
        .describe_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("app-1")
        .send()
        .await
        .unwrap()
        .consumer_description
        .unwrap();
    assert_eq!(by_name.consumer_arn, registered.consumer_arn);

    // 20 per stream; paginated listing in name order.
    for i in 2..=20 {
        kinesis
            .register_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(format!("app-{i:02}"))
            .send()
            .await
            .unwrap();
    }
    let over = kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("one-too-many")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&over).as_deref(), Some("LimitExceededException"));
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = kinesis
            .list_stream_consumers()
            .stream_arn(&stream_arn)
            .max_results(7)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        names.extend(page.consumers().iter().map(|c| c.consumer_name.clone()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names.len(), 20);
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    let summary = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap();
    assert_eq!(summary.consumer_count, Some(20));

    // Deregistered consumers go away; a stream with consumers needs EnforceConsumerDeletion.
    kinesis
        .deregister_stream_consumer()
        .consumer_arn(&registered.consumer_arn)
        .send()
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        let result = kinesis
            .describe_stream_consumer()
            .consumer_arn(&registered.consumer_arn)
            .send()
            .await;
        if let Err(error) = &result {
            assert_eq!(
                error_code(error).as_deref(),
                Some("ResourceNotFoundException")
            );
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the deregistered consumer stayed");
    let refused = kinesis
        .delete_stream()
        .stream_name(&name)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("ResourceInUseException")
    );
    kinesis
        .delete_stream()
        .stream_name(&name)
        .enforce_consumer_deletion(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn subscribe_to_shard_delivers_records_in_order() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::ShardIteratorType;
    use aws_sdk_kinesis::types::SubscribeToShardEventStream;
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("subscribe");
    let stream_arn = create_active_stream(&kinesis, &name, 1).await.unwrap();
    let consumer = kinesis
        .register_stream_consumer()
        .stream_arn(&stream_arn)
        .consumer_name("reader")
        .send()
        .await
        .unwrap()
        .consumer
        .unwrap();
    wait_consumer_active(&kinesis, &consumer.consumer_arn)
        .await
        .unwrap();
    let shard = kinesis
        .list_shards()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id
        .clone();
    for i in 0..20 {
        kinesis
            .put_record()
            .stream_name(&name)
            .partition_key("k")
            .data(Blob::new(format!("record-{i:02}")))
            .send()
            .await
            .unwrap();
    }
    let mut output = riffle_tests::subscribe(
        &kinesis,
        &consumer.consumer_arn,
        &shard,
        ShardIteratorType::TrimHorizon,
    )
    .await
    .unwrap();
    let mut received = Vec::new();
    while received.len() < 20 {
        let event = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            output.event_stream.recv(),
        )
        .await
        .expect("an event within 20 s")
        .unwrap()
        .expect("the stream stays open");
        if let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event {
            received.extend(
                event
                    .records()
                    .iter()
                    .map(|r| String::from_utf8(r.data.as_ref().to_vec()).unwrap()),
            );
        }
    }
    let expected: Vec<String> = (0..20).map(|i| format!("record-{i:02}")).collect();
    assert_eq!(received, expected);

    // A consumer that does not exist: the SDK sees ResourceNotFoundException.
    let missing = riffle_tests::subscribe(
        &kinesis,
        &format!("{stream_arn}/consumer/nobody:1"),
        &shard,
        ShardIteratorType::Latest,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error_code(&missing).as_deref(),
        Some("ResourceNotFoundException")
    );
}

/// One subscription per consumer and shard, as on AWS: a second SubscribeToShard within 5
/// seconds of the first is refused with ResourceInUseException; a later one takes over, and the
/// first subscription ends with a ResourceInUseException event. Another consumer is unaffected.
#[tokio::test]
async fn a_second_subscription_is_refused_then_takes_over() {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("takeover");
    let stream_arn = create_active_stream(&kinesis, &name, 1).await.unwrap();
    let first = riffle_tests::register_active_consumer(&kinesis, &stream_arn, "one")
        .await
        .unwrap();
    let other = riffle_tests::register_active_consumer(&kinesis, &stream_arn, "two")
        .await
        .unwrap();
    let mut original = riffle_tests::subscribe(
        &kinesis,
        &first,
        "shardId-000000000000",
        ShardIteratorType::Latest,
    )
    .await
    .unwrap();
    let refused = riffle_tests::subscribe(
        &kinesis,
        &first,
        "shardId-000000000000",
        ShardIteratorType::Latest,
    )
    .await
    .unwrap_err();
    assert_eq!(
        error_code(&refused).as_deref(),
        Some("ResourceInUseException")
    );
    let _unaffected = riffle_tests::subscribe(
        &kinesis,
        &other,
        "shardId-000000000000",
        ShardIteratorType::Latest,
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5_200)).await;
    let _successor = riffle_tests::subscribe(
        &kinesis,
        &first,
        "shardId-000000000000",
        ShardIteratorType::Latest,
    )
    .await
    .unwrap();
    // The original sees its initial response's events (heartbeats) and then the takeover.
    let ended = loop {
        let event = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            original.event_stream.recv(),
        )
        .await
        .expect("the original subscription ends within 10 s");
        match event {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the original subscription ended without an error"),
            Err(error) => break error,
        }
    };
    assert_eq!(
        error_code(&ended).as_deref(),
        Some("ResourceInUseException"),
        "{ended:?}"
    );
}

/// A subscription is paced to 2 MiB/s of record data (AWS's per-consumer, per-shard rate): of 6
/// MiB already in the shard, 2 MiB may go at once (the allowance starts full) and one event of up
/// to 1 MiB may overdraw it, so the rest takes at least (6 - 2 - 1) MiB / 2 MiB/s = 1.5 s.
#[tokio::test]
async fn a_subscription_is_paced_to_two_mib_per_second() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::PutRecordsRequestEntry;
    use aws_sdk_kinesis::types::ShardIteratorType;
    use aws_sdk_kinesis::types::SubscribeToShardEventStream;
    let (_dir, node) = node();
    let kinesis = client(&node.endpoint());
    let name = stream_name("paced");
    let stream_arn = create_active_stream(&kinesis, &name, 1).await.unwrap();
    let consumer = riffle_tests::register_active_consumer(&kinesis, &stream_arn, "paced")
        .await
        .unwrap();
    let record = vec![7u8; 512 * 1024];
    for _ in 0..3 {
        let entries = (0..4)
            .map(|_| {
                PutRecordsRequestEntry::builder()
                    .partition_key("k")
                    .data(Blob::new(record.clone()))
                    .build()
                    .unwrap()
            })
            .collect();
        let output = kinesis
            .put_records()
            .stream_name(&name)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(output.failed_record_count(), Some(0));
    }
    let started = std::time::Instant::now();
    let mut subscription = riffle_tests::subscribe(
        &kinesis,
        &consumer,
        "shardId-000000000000",
        ShardIteratorType::TrimHorizon,
    )
    .await
    .unwrap();
    let mut bytes = 0usize;
    while bytes < 12 * record.len() {
        let event = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            subscription.event_stream.recv(),
        )
        .await
        .expect("an event within 20 s")
        .unwrap()
        .expect("the subscription stays open");
        if let SubscribeToShardEventStream::SubscribeToShardEvent(event) = event {
            bytes += event
                .records()
                .iter()
                .map(|r| r.data().as_ref().len() + r.partition_key().unwrap_or_default().len())
                .sum::<usize>();
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(1450),
        "6 MiB arrived in {elapsed:?}: faster than 2 MiB/s"
    );
}
