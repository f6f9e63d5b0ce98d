//! Decoding and authorization, per operation: what each request decodes to, which IAM action
//! it needs on which resources, and which error wins when several apply.

use bytes::Bytes;
use riffle_types::ErrorCode;
use riffle_types::HashKey;
use riffle_types::PageToken;
use riffle_types::ShardIterator;
use riffle_types::TokenKey;
use riffle_types::seqnum::Position;

use super::*;
use crate::wire;
use crate::wire::Format;
use crate::wire::Map;
use crate::wire::Timestamp;

const ACCOUNT: &str = "123456789012";
const NOW_MS: u64 = 1_700_000_000_000;
const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";
const CONSUMER_ARN: &str =
    "arn:aws:kinesis:us-east-1:123456789012:stream/orders/consumer/billing:1700000000";
const LEASES_ARN: &str = "arn:aws:riffle:us-east-1:123456789012:lease-table/billing";

fn key() -> TokenKey {
    TokenKey::new([7; 32])
}

fn ctx() -> Ctx<'static> {
    Ctx {
        account: ACCOUNT,
        region: "us-east-1",
        now_ms: NOW_MS,
        token_key: Some(key()),
    }
}

fn json(text: &str) -> Value {
    wire::decode(Format::Json, text.as_bytes()).expect("test documents are valid JSON")
}

fn decode(operation: Operation, text: &str) -> Result<Request, KinesisError> {
    Request::decode(operation, &json(text), &ctx())
}

fn decoded(operation: Operation, text: &str) -> Request {
    decode(operation, text).unwrap_or_else(|error| panic!("{operation:?} {text}: {error}"))
}

fn decode_error(operation: Operation, text: &str) -> KinesisError {
    match decode(operation, text) {
        Ok(request) => panic!("{operation:?} {text} decoded to {request:?}"),
        Err(error) => error,
    }
}

/// `(action, resource ARN)` for every permission the request needs.
fn permissions(operation: Operation, text: &str) -> Vec<(String, String)> {
    decoded(operation, text)
        .permissions(&ctx())
        .into_iter()
        .map(|permission| {
            (
                permission.action.to_string(),
                permission.resource.arn().into_owned(),
            )
        })
        .collect()
}

fn iterator_for(stream: &str) -> String {
    ShardIterator {
        stream_name: stream.to_string(),
        stream_created_ms: NOW_MS - 60_000,
        shard_index: 1,
        position: Position::new(3, 0),
        issued_ms: NOW_MS - 1_000,
    }
    .encode(&key())
}

fn list_shards_token(stream: &str) -> String {
    let payload = serde_json::to_vec(&ListShardsToken {
        stream: stream.to_string(),
        created_ms: NOW_MS - 60_000,
        after: 0,
        filter: ShardFilter::AtLatest,
        max_results: 1,
    })
    .expect("serializes");
    PageToken::seal(&key(), LIST_SHARDS_TOKEN, &payload, NOW_MS)
}

/// One valid request per operation, with the permissions it needs (Service Authorization
/// Reference for Kinesis; Riffle's own namespace for the lease operations).
/// `(action, resource ARN)` pairs a request should need.
type Expected = Vec<(&'static str, String)>;

fn authorization_cases() -> Vec<(Operation, String, Expected)> {
    let stream = || STREAM_ARN.to_string();
    let on_stream = |action: &'static str| vec![(action, stream())];
    let any = |action: &'static str| vec![(action, "*".to_string())];
    let leases = |action: &'static str| vec![(action, LEASES_ARN.to_string())];
    use Operation::*;
    vec![
        (CreateStream, r#"{"StreamName":"orders","ShardCount":1}"#.into(), on_stream("kinesis:CreateStream")),
        (DeleteStream, r#"{"StreamName":"orders"}"#.into(), on_stream("kinesis:DeleteStream")),
        (DescribeStream, r#"{"StreamName":"orders"}"#.into(), on_stream("kinesis:DescribeStream")),
        (DescribeStreamSummary, format!(r#"{{"StreamARN":"{STREAM_ARN}"}}"#), on_stream("kinesis:DescribeStreamSummary")),
        (ListStreams, "{}".into(), any("kinesis:ListStreams")),
        (ListShards, r#"{"StreamName":"orders"}"#.into(), on_stream("kinesis:ListShards")),
        (SplitShard, r#"{"StreamName":"orders","ShardToSplit":"shardId-000000000000","NewStartingHashKey":"5"}"#.into(), on_stream("kinesis:SplitShard")),
        (MergeShards, r#"{"StreamName":"orders","ShardToMerge":"shardId-000000000000","AdjacentShardToMerge":"shardId-000000000001"}"#.into(), on_stream("kinesis:MergeShards")),
        (PutRecord, r#"{"StreamName":"orders","PartitionKey":"k","Data":"aGk="}"#.into(), on_stream("kinesis:PutRecord")),
        (PutRecords, r#"{"StreamName":"orders","Records":[{"PartitionKey":"k","Data":"aGk="}]}"#.into(), on_stream("kinesis:PutRecords")),
        (GetShardIterator, r#"{"StreamName":"orders","ShardId":"shardId-000000000000","ShardIteratorType":"LATEST"}"#.into(), on_stream("kinesis:GetShardIterator")),
        (GetRecords, format!(r#"{{"ShardIterator":"{}"}}"#, iterator_for("orders")), on_stream("kinesis:GetRecords")),
        (IncreaseStreamRetentionPeriod, r#"{"StreamName":"orders","RetentionPeriodHours":48}"#.into(), on_stream("kinesis:IncreaseStreamRetentionPeriod")),
        (DecreaseStreamRetentionPeriod, r#"{"StreamName":"orders","RetentionPeriodHours":24}"#.into(), on_stream("kinesis:DecreaseStreamRetentionPeriod")),
        (AddTagsToStream, r#"{"StreamName":"orders","Tags":{"team":"a"}}"#.into(), on_stream("kinesis:AddTagsToStream")),
        (RemoveTagsFromStream, r#"{"StreamName":"orders","TagKeys":["team"]}"#.into(), on_stream("kinesis:RemoveTagsFromStream")),
        (ListTagsForStream, r#"{"StreamName":"orders"}"#.into(), on_stream("kinesis:ListTagsForStream")),
        (TagResource, format!(r#"{{"ResourceARN":"{STREAM_ARN}","Tags":{{"team":"a"}}}}"#), on_stream("kinesis:TagResource")),
        (UntagResource, format!(r#"{{"ResourceARN":"{STREAM_ARN}","TagKeys":["team"]}}"#), on_stream("kinesis:UntagResource")),
        (ListTagsForResource, format!(r#"{{"ResourceARN":"{STREAM_ARN}"}}"#), on_stream("kinesis:ListTagsForResource")),
        (DescribeLimits, "{}".into(), any("kinesis:DescribeLimits")),
        (UpdateShardCount, r#"{"StreamName":"orders","TargetShardCount":2,"ScalingType":"UNIFORM_SCALING"}"#.into(), any("kinesis:UpdateShardCount")),
        (UpdateStreamMode, format!(r#"{{"StreamARN":"{STREAM_ARN}","StreamModeDetails":{{"StreamMode":"ON_DEMAND"}}}}"#), any("kinesis:UpdateStreamMode")),
        (RegisterStreamConsumer, format!(r#"{{"StreamARN":"{STREAM_ARN}","ConsumerName":"billing"}}"#), on_stream("kinesis:RegisterStreamConsumer")),
        (DescribeStreamConsumer, format!(r#"{{"ConsumerARN":"{CONSUMER_ARN}"}}"#), vec![("kinesis:DescribeStreamConsumer", CONSUMER_ARN.to_string())]),
        (ListStreamConsumers, format!(r#"{{"StreamARN":"{STREAM_ARN}"}}"#), on_stream("kinesis:ListStreamConsumers")),
        (DeregisterStreamConsumer, format!(r#"{{"ConsumerARN":"{CONSUMER_ARN}"}}"#), vec![("kinesis:DeregisterStreamConsumer", CONSUMER_ARN.to_string())]),
        (SubscribeToShard, format!(r#"{{"ConsumerARN":"{CONSUMER_ARN}","ShardId":"shardId-000000000000","StartingPosition":{{"Type":"LATEST"}}}}"#), vec![("kinesis:SubscribeToShard", CONSUMER_ARN.to_string())]),
        (RiffleSyncLeases, r#"{"ApplicationName":"billing","StreamName":"orders"}"#.into(), vec![("riffle:SyncLeases", LEASES_ARN.to_string()), ("riffle:SyncLeases", stream())]),
        (RiffleListLeases, r#"{"ApplicationName":"billing"}"#.into(), leases("riffle:ListLeases")),
        (RiffleTakeLease, r#"{"ApplicationName":"billing","ShardId":"shardId-000000000000","Owner":"w1","Counter":3}"#.into(), leases("riffle:TakeLease")),
        (RiffleRenewLeases, r#"{"ApplicationName":"billing","Owner":"w1","Leases":[{"ShardId":"shardId-000000000000","Counter":4}]}"#.into(), leases("riffle:RenewLeases")),
        (RiffleCheckpoint, r#"{"ApplicationName":"billing","ShardId":"shardId-000000000000","Owner":"w1","Checkpoint":"SHARD_END"}"#.into(), leases("riffle:Checkpoint")),
        (RiffleReleaseLease, r#"{"ApplicationName":"billing","ShardId":"shardId-000000000000","Owner":"w1"}"#.into(), leases("riffle:ReleaseLease")),
        (RiffleDeleteLeases, r#"{"ApplicationName":"billing"}"#.into(), leases("riffle:DeleteLeases")),
    ]
}

#[test]
fn every_operation_names_its_action_and_resources() {
    let cases = authorization_cases();
    for operation in Operation::ALL {
        assert!(
            cases.iter().any(|(case, _, _)| case == operation),
            "{operation:?} has no authorization case"
        );
    }
    for (operation, input, expected) in cases {
        let request = decoded(operation, &input);
        assert_eq!(request.operation(), operation);
        assert_eq!(request.action(), operation.action());
        let expected: Vec<(String, String)> = expected
            .into_iter()
            .map(|(action, arn)| (action.to_string(), arn))
            .collect();
        assert_eq!(permissions(operation, &input), expected, "{operation:?}");
    }
}

#[test]
fn operation_names_actions_and_spans_agree() {
    for &operation in Operation::ALL {
        assert_eq!(Operation::parse(operation.name()), Some(operation));
        let action = operation.action();
        let expected_name = operation
            .name()
            .strip_prefix("Riffle")
            .unwrap_or(operation.name());
        assert_eq!(action.name(), expected_name);
        let service = if operation.name().starts_with("Riffle") {
            "riffle"
        } else {
            "kinesis"
        };
        assert_eq!(action.service(), service);
        // A span without a subscriber is disabled and keeps no metadata.
        let span_name = tracing::subscriber::with_default(tracing_subscriber::registry(), || {
            operation
                .span("request-1")
                .metadata()
                .map(|meta| meta.name())
        });
        assert_eq!(span_name, Some(operation.name()));
    }
    assert_eq!(Operation::parse("SubscribeToShardX"), None);
    assert_eq!(Operation::parse("subscribetoshard"), None);
    assert_eq!(Operation::ALL.len(), 35);
}

#[test]
fn a_stream_arn_is_used_as_given_and_a_name_resolves_in_this_account() {
    let china = "arn:aws-cn:kinesis:us-east-1:123456789012:stream/orders";
    let input = format!(r#"{{"StreamARN":"{china}","PartitionKey":"k","Data":"aGk="}}"#);
    assert_eq!(
        permissions(Operation::PutRecord, &input),
        vec![("kinesis:PutRecord".to_string(), china.to_string())]
    );
    let both = format!(r#"{{"StreamName":"orders","StreamARN":"{china}"}}"#);
    assert_eq!(
        permissions(Operation::DescribeStreamSummary, &both),
        vec![(
            "kinesis:DescribeStreamSummary".to_string(),
            china.to_string()
        )]
    );
}

#[test]
fn create_stream_with_tags_also_needs_add_tags_to_stream() {
    assert_eq!(
        permissions(
            Operation::CreateStream,
            r#"{"StreamName":"orders","ShardCount":1,"Tags":{"team":"a"}}"#
        ),
        vec![
            ("kinesis:CreateStream".to_string(), STREAM_ARN.to_string()),
            (
                "kinesis:AddTagsToStream".to_string(),
                STREAM_ARN.to_string()
            ),
        ]
    );
}

#[test]
fn reads_by_token_name_the_stream_inside_the_token() {
    let other = "arn:aws:kinesis:us-east-1:123456789012:stream/payments";
    let input = format!(r#"{{"ShardIterator":"{}"}}"#, iterator_for("payments"));
    assert_eq!(
        permissions(Operation::GetRecords, &input),
        vec![("kinesis:GetRecords".to_string(), other.to_string())]
    );
    let input = format!(r#"{{"NextToken":"{}"}}"#, list_shards_token("payments"));
    assert_eq!(
        permissions(Operation::ListShards, &input),
        vec![("kinesis:ListShards".to_string(), other.to_string())]
    );
}

#[test]
fn a_consumer_named_by_stream_and_name_is_a_named_consumer() {
    let input = format!(r#"{{"StreamARN":"{STREAM_ARN}","ConsumerName":"billing"}}"#);
    let request = decoded(Operation::DescribeStreamConsumer, &input);
    let resources = request.resources(&ctx());
    assert_eq!(
        resources,
        vec![Resource::NamedConsumer {
            stream_arn: STREAM_ARN.to_string(),
            name: "billing".to_string()
        }]
    );
    assert_eq!(resources[0].arn(), format!("{STREAM_ARN}/consumer/billing"));
}

#[test]
fn put_records_decodes_records_in_order_without_copying_cbor_data() {
    let first = Bytes::from(vec![1u8; 64]);
    let records = vec![
        Value::Map(
            Map::new()
                .with("Data", first.clone())
                .with("PartitionKey", "user-1"),
        ),
        Value::Map(
            Map::new()
                .with("Data", Bytes::from_static(b"two"))
                .with("PartitionKey", "user-2")
                .with("ExplicitHashKey", "7"),
        ),
    ];
    let input = Value::Map(
        Map::new()
            .with("StreamName", "orders")
            .with("Records", records),
    );
    let Request::PutRecords(request) =
        Request::decode(Operation::PutRecords, &input, &ctx()).expect("decodes")
    else {
        panic!("not a PutRecords request");
    };
    assert_eq!(request.stream, StreamRef::named("orders"));
    assert_eq!(request.records.len(), 2);
    assert_eq!(request.records[0].partition_key, "user-1");
    assert_eq!(
        request.records[0].hash,
        HashKey::from_partition_key("user-1")
    );
    // The record's data is the request's buffer, not a copy of it.
    assert_eq!(request.records[0].data.as_ptr(), first.as_ptr());
    assert_eq!(request.records[1].hash, HashKey(7));
}

#[test]
fn put_records_messages_name_each_record_from_one() {
    let error = decode_error(
        Operation::PutRecords,
        r#"{"StreamName":"orders","Records":[{"Data":"aGk=","PartitionKey":"k"},{"Data":"aGk=","PartitionKey":""},{"PartitionKey":"k"}]}"#,
    );
    assert_eq!(error.code, ErrorCode::ValidationException);
    assert_eq!(
        error.message,
        "2 validation errors detected: Value '' at 'records.2.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; Value null at 'records.3.member.data' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn get_shard_iterator_decodes_its_starting_position() {
    let Request::GetShardIterator(request) = decoded(
        Operation::GetShardIterator,
        r#"{"StreamName":"orders","ShardId":"shardId-000000000001","ShardIteratorType":"AT_TIMESTAMP","Timestamp":1700000000.5}"#,
    ) else {
        panic!("not a GetShardIterator request");
    };
    assert_eq!(request.shard_id, "shardId-000000000001");
    assert_eq!(
        request.start,
        StartingPosition {
            kind: IteratorType::AtTimestamp,
            sequence_number: None,
            timestamp: Some(Timestamp::from_millis(1_700_000_000_500)),
        }
    );
}

#[test]
fn validation_errors_are_reported_together_in_member_order() {
    let error = decode_error(
        Operation::GetShardIterator,
        r#"{"StreamName":"bad name","ShardIteratorType":"SOMETIME","StartingSequenceNumber":"01"}"#,
    );
    assert_eq!(error.code, ErrorCode::ValidationException);
    assert_eq!(
        error.message,
        "4 validation errors detected: Value 'bad name' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value null at 'shardId' failed to satisfy constraint: Member must not be null; Value 'SOMETIME' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]; Value '01' at 'startingSequenceNumber' failed to satisfy constraint: Member must satisfy regular expression pattern: 0|([1-9]\\d{0,128})"
    );
    // A member of the wrong wire type wins over every validation error.
    let error = decode_error(
        Operation::GetShardIterator,
        r#"{"StreamName":"bad name","ShardIteratorType":"SOMETIME","Timestamp":"noon"}"#,
    );
    assert_eq!(error.code, ErrorCode::SerializationException);
}

#[test]
fn a_stream_arn_of_another_account_is_not_found_before_other_members_are_read() {
    let foreign = "arn:aws:kinesis:us-east-1:111111111111:stream/orders";
    let error = decode_error(
        Operation::PutRecord,
        &format!(r#"{{"StreamARN":"{foreign}","PartitionKey":5}}"#),
    );
    assert_eq!(error.code, ErrorCode::ResourceNotFoundException);
    assert_eq!(
        error.message,
        "Stream orders under account 111111111111 not found."
    );
    let error = decode_error(
        Operation::PutRecord,
        &format!(r#"{{"StreamName":"payments","StreamARN":"{STREAM_ARN}"}}"#),
    );
    assert_eq!(error.code, ErrorCode::InvalidArgumentException);
}

#[test]
fn subscribe_reports_its_starting_position_errors_after_decoding() {
    // The consumer ARN's own checks fail the decoding at once ...
    let error = decode_error(
        Operation::SubscribeToShard,
        r#"{"ConsumerARN":"nonsense","ShardId":"shardId-000000000000","StartingPosition":{"Type":"SOMETIME"}}"#,
    );
    assert_eq!(error.message, "Invalid ConsumerARN nonsense.");
    // ... while the starting position is checked by GetShardIterator's rules and kept, to be
    // reported once the consumer is found ACTIVE.
    let Request::SubscribeToShard(request) = decoded(
        Operation::SubscribeToShard,
        &format!(
            r#"{{"ConsumerARN":"{CONSUMER_ARN}","ShardId":"shardId-000000000000","StartingPosition":{{"Type":"SOMETIME","SequenceNumber":"01"}}}}"#
        ),
    ) else {
        panic!("not a SubscribeToShard request");
    };
    assert_eq!(request.consumer.name, "billing");
    assert_eq!(request.consumer.stream.name, "orders");
    assert_eq!(request.consumer.created_secs, Some(1_700_000_000));
    let start_error = request.start.expect_err("the starting position is invalid");
    assert_eq!(start_error.code, ErrorCode::ValidationException);
    assert!(
        start_error
            .message
            .starts_with("2 validation errors detected: Value 'SOMETIME' at 'shardIteratorType'")
    );
    // A missing type is the decoder's own error, with SubscribeToShard's member name.
    let error = decode_error(
        Operation::SubscribeToShard,
        &format!(r#"{{"ConsumerARN":"{CONSUMER_ARN}","ShardId":"shardId-000000000000"}}"#),
    );
    assert_eq!(
        error.message,
        "1 validation error detected: Value null at 'startingPosition.type' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn tokens_need_the_cluster_key_and_open_with_it() {
    let no_key = Ctx {
        token_key: None,
        ..ctx()
    };
    let error = Request::decode(Operation::ListStreams, &json("{}"), &no_key)
        .expect_err("no key, no ListStreams");
    assert_eq!(error.code, ErrorCode::ServiceUnavailable);
    let Request::GetRecords(request) = decoded(
        Operation::GetRecords,
        &format!(
            r#"{{"ShardIterator":"{}","Limit":10}}"#,
            iterator_for("orders")
        ),
    ) else {
        panic!("not a GetRecords request");
    };
    assert_eq!(request.iterator.stream_name, "orders");
    assert_eq!(request.iterator.position, Position::new(3, 0));
    assert_eq!(request.limit, Some(10));
    let error = decode_error(Operation::GetRecords, r#"{"ShardIterator":"AAAA"}"#);
    assert_eq!(error.message, "Invalid ShardIterator.");
    let error = decode_error(
        Operation::ListShards,
        &format!(
            r#"{{"NextToken":"{}","StreamName":"orders"}}"#,
            list_shards_token("orders")
        ),
    );
    assert_eq!(
        error.message,
        "NextToken and StreamName cannot be provided together."
    );
}

#[test]
fn lease_operations_need_every_string_member() {
    let error = decode_error(
        Operation::RiffleTakeLease,
        r#"{"ApplicationName":"billing","Owner":"","Counter":1}"#,
    );
    assert_eq!(
        error.message,
        "2 validation errors detected: Value null at 'ShardId' failed to satisfy constraint: Member must not be null; Value null at 'Owner' failed to satisfy constraint: Member must not be null"
    );
    let Request::RiffleRenewLeases(request) = decoded(
        Operation::RiffleRenewLeases,
        r#"{"ApplicationName":"billing","Owner":"w1","Leases":[{"ShardId":"s0","Counter":4},{"ShardId":"s1","Counter":-1}]}"#,
    ) else {
        panic!("not a RiffleRenewLeases request");
    };
    assert_eq!(
        request.leases,
        vec![("s0".to_string(), 4), ("s1".to_string(), 0)]
    );
}
