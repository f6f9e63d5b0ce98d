//! The wire as non-Rust SDKs speak it: CBOR (what the Java SDKs send, with Jackson's
//! indefinite-length maps and tag-1 millisecond timestamps) and HTTP/2 with prior knowledge
//! (what the Java SDK v2 and JS v3 use for every call), next to plain JSON over HTTP/1.1.
//! The CBOR here is written and read by a small codec of this file, independent of Riffle's.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use riffle_tests::RiffleProcess;
use riffle_tests::stream_name;

/// A CBOR value, as much as these tests need.
#[derive(Clone, Debug, PartialEq)]
enum Cbor {
    Uint(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Cbor>),
    Map(BTreeMap<String, Cbor>),
    Tag(u64, Box<Cbor>),
    Bool(bool),
    Null,
    Float(f64),
}

fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend(value.to_be_bytes());
        }
    }
}

/// Encodes like Jackson: maps are indefinite-length.
fn encode(value: &Cbor, out: &mut Vec<u8>) {
    match value {
        Cbor::Uint(n) => head(out, 0, *n),
        Cbor::Bytes(bytes) => {
            head(out, 2, bytes.len() as u64);
            out.extend(bytes);
        }
        Cbor::Text(text) => {
            head(out, 3, text.len() as u64);
            out.extend(text.as_bytes());
        }
        Cbor::Array(items) => {
            head(out, 4, items.len() as u64);
            items.iter().for_each(|item| encode(item, out));
        }
        Cbor::Map(map) => {
            out.push(0xbf);
            for (key, item) in map {
                encode(&Cbor::Text(key.clone()), out);
                encode(item, out);
            }
            out.push(0xff);
        }
        Cbor::Tag(tag, inner) => {
            head(out, 6, *tag);
            encode(inner, out);
        }
        Cbor::Bool(flag) => out.push(if *flag { 0xf5 } else { 0xf4 }),
        Cbor::Null => out.push(0xf6),
        Cbor::Float(number) => {
            out.push(0xfb);
            out.extend(number.to_be_bytes());
        }
    }
}

fn decode(input: &[u8], at: &mut usize) -> Cbor {
    let initial = input[*at];
    *at += 1;
    let major = initial >> 5;
    let info = initial & 0x1f;
    let mut argument = || -> Option<u64> {
        let n = match info {
            0..=23 => return Some(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return None,
            _ => panic!("unsupported additional info {info}"),
        };
        let mut value = 0u64;
        for byte in &input[*at..*at + n] {
            value = value << 8 | u64::from(*byte);
        }
        *at += n;
        Some(value)
    };
    match major {
        0 => Cbor::Uint(argument().unwrap()),
        2 => {
            let len = argument().unwrap() as usize;
            *at += len;
            Cbor::Bytes(input[*at - len..*at].to_vec())
        }
        3 => {
            let len = argument().unwrap() as usize;
            *at += len;
            Cbor::Text(String::from_utf8(input[*at - len..*at].to_vec()).unwrap())
        }
        4 => {
            let len = argument().unwrap();
            Cbor::Array((0..len).map(|_| decode(input, at)).collect())
        }
        5 => {
            let mut map = BTreeMap::new();
            match argument() {
                Some(len) => {
                    for _ in 0..len {
                        let Cbor::Text(key) = decode(input, at) else {
                            panic!("non-text key")
                        };
                        map.insert(key, decode(input, at));
                    }
                }
                None => {
                    while input[*at] != 0xff {
                        let Cbor::Text(key) = decode(input, at) else {
                            panic!("non-text key")
                        };
                        map.insert(key, decode(input, at));
                    }
                    *at += 1;
                }
            }
            Cbor::Map(map)
        }
        6 => {
            let tag = argument().unwrap();
            Cbor::Tag(tag, Box::new(decode(input, at)))
        }
        7 => match info {
            20 => Cbor::Bool(false),
            21 => Cbor::Bool(true),
            22 | 23 => Cbor::Null,
            27 => {
                let bytes: [u8; 8] = input[*at..*at + 8].try_into().unwrap();
                *at += 8;
                Cbor::Float(f64::from_be_bytes(bytes))
            }
            _ => panic!("unsupported simple value {info}"),
        },
        _ => panic!("unsupported major type {major}"),
    }
}

fn map(entries: &[(&str, Cbor)]) -> Cbor {
    Cbor::Map(
        entries
            .iter()
            .map(|(key, value)| (key.to_string(), value.clone()))
            .collect(),
    )
}

fn text(value: &str) -> Cbor {
    Cbor::Text(value.to_string())
}

struct Response {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

struct Raw {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
}

impl Raw {
    fn new(endpoint: &str, http2: bool) -> Raw {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build_http();
        Raw {
            client,
            endpoint: endpoint.to_string(),
        }
    }

    async fn call(&self, operation: &str, content_type: &str, body: Vec<u8>) -> Response {
        let request = http::Request::post(&self.endpoint)
            .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Response {
            status,
            headers,
            body,
        }
    }

    async fn cbor(&self, operation: &str, input: &Cbor) -> (u16, Cbor) {
        let mut body = Vec::new();
        encode(input, &mut body);
        let response = self
            .call(operation, "application/x-amz-cbor-1.1", body)
            .await;
        assert_eq!(
            response.headers["content-type"],
            "application/x-amz-cbor-1.1"
        );
        let mut at = 0;
        let value = decode(&response.body, &mut at);
        assert_eq!(at, response.body.len(), "trailing bytes in a CBOR response");
        (response.status, value)
    }

    async fn json(
        &self,
        operation: &str,
        input: serde_json::Value,
    ) -> (u16, serde_json::Value, http::HeaderMap) {
        let response = self
            .call(
                operation,
                "application/x-amz-json-1.1",
                serde_json::to_vec(&input).unwrap(),
            )
            .await;
        assert_eq!(
            response.headers["content-type"],
            "application/x-amz-json-1.1"
        );
        (
            response.status,
            serde_json::from_slice(&response.body).unwrap(),
            response.headers,
        )
    }
}

fn field<'a>(value: &'a Cbor, key: &str) -> &'a Cbor {
    match value {
        Cbor::Map(map) => map
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {value:?}")),
        other => panic!("not a map: {other:?}"),
    }
}

async fn wait_active(raw: &Raw, name: &str) {
    for _ in 0..200 {
        let (_, summary, _) = raw
            .json(
                "DescribeStreamSummary",
                serde_json::json!({"StreamName": name}),
            )
            .await;
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("stream {name} never became ACTIVE");
}

async fn cbor_round_trip(http2: bool) {
    let dir = tempfile::tempdir().unwrap();
    let node = RiffleProcess::start(dir.path()).unwrap();
    let raw = Raw::new(&node.endpoint(), http2);
    let name = stream_name(if http2 { "cbor-h2" } else { "cbor-h1" });

    let (status, _) = raw
        .cbor(
            "CreateStream",
            &map(&[("StreamName", text(&name)), ("ShardCount", Cbor::Uint(1))]),
        )
        .await;
    assert_eq!(status, 200);
    wait_active(&raw, &name).await;

    let payload = vec![0u8, 159, 146, 150, 255];
    let (status, put) = raw
        .cbor(
            "PutRecord",
            &map(&[
                ("StreamName", text(&name)),
                ("PartitionKey", text("k")),
                ("Data", Cbor::Bytes(payload.clone())),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{put:?}");
    let Cbor::Text(sequence) = field(&put, "SequenceNumber") else {
        panic!("sequence number is not text")
    };

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (status, iterator) = raw
        .cbor(
            "GetShardIterator",
            &map(&[
                ("StreamName", text(&name)),
                ("ShardId", text("shardId-000000000000")),
                ("ShardIteratorType", text("AT_TIMESTAMP")),
                // Jackson writes timestamps as tag 1 over epoch milliseconds.
                (
                    "Timestamp",
                    Cbor::Tag(1, Box::new(Cbor::Uint(before - 60_000))),
                ),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{iterator:?}");
    let (status, records) = raw
        .cbor(
            "GetRecords",
            &map(&[("ShardIterator", field(&iterator, "ShardIterator").clone())]),
        )
        .await;
    assert_eq!(status, 200);
    let Cbor::Array(records) = field(&records, "Records") else {
        panic!("Records is not an array")
    };
    assert_eq!(records.len(), 1);
    assert_eq!(
        field(&records[0], "Data"),
        &Cbor::Bytes(payload),
        "blobs come back as raw byte strings"
    );
    assert_eq!(
        field(&records[0], "SequenceNumber"),
        &Cbor::Text(sequence.clone())
    );
    match field(&records[0], "ApproximateArrivalTimestamp") {
        Cbor::Tag(1, inner) => {
            let millis = match **inner {
                Cbor::Uint(millis) => millis,
                Cbor::Float(millis) => millis as u64,
                ref other => panic!("timestamp payload {other:?}"),
            };
            assert!(
                millis >= before - 5_000 && millis <= before + 60_000,
                "timestamp {millis} is not epoch millis"
            );
        }
        other => panic!("timestamp is not tag 1: {other:?}"),
    }

    let (status, error) = raw
        .cbor("DescribeStream", &map(&[("StreamName", text("absent"))]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(field(&error, "__type"), &text("ResourceNotFoundException"));
}

#[tokio::test]
async fn cbor_over_http1() {
    cbor_round_trip(false).await;
}

#[tokio::test]
async fn cbor_over_h2c_prior_knowledge() {
    cbor_round_trip(true).await;
}

#[tokio::test]
async fn json_envelope_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let node = RiffleProcess::start(dir.path()).unwrap();
    for http2 in [false, true] {
        let raw = Raw::new(&node.endpoint(), http2);
        let name = stream_name("json");
        let (status, body, headers) = raw
            .json(
                "CreateStream",
                serde_json::json!({"StreamName": name, "ShardCount": 1}),
            )
            .await;
        assert_eq!((status, body), (200, serde_json::json!({})));
        assert!(headers.contains_key("x-amzn-requestid"));
        assert!(headers.contains_key("date"));
        wait_active(&raw, &name).await;

        let (_, summary, _) = raw
            .json(
                "DescribeStreamSummary",
                serde_json::json!({"StreamName": name}),
            )
            .await;
        let created = &summary["StreamDescriptionSummary"]["StreamCreationTimestamp"];
        assert!(
            created.is_f64() || created.is_u64(),
            "timestamps are epoch-second numbers: {created}"
        );
        let text = serde_json::to_string(created).unwrap();
        assert!(
            !text.contains('e') && !text.contains('E'),
            "no exponent notation: {text}"
        );

        let (status, put, _) = raw
            .json(
                "PutRecord",
                serde_json::json!({"StreamName": name, "PartitionKey": "k", "Data": "aGVsbG8="}),
            )
            .await;
        assert_eq!(status, 200, "{put}");
        let (status, error, headers) = raw
            .json(
                "PutRecord",
                serde_json::json!({"StreamName": name, "PartitionKey": "k", "Data": "not base64!"}),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(error["__type"], "SerializationException");
        assert!(headers.contains_key("x-amzn-requestid"));

        let (status, error, _) = raw.json("NoSuchOperation", serde_json::json!({})).await;
        assert_eq!(status, 400);
        assert_eq!(error["__type"], "UnknownOperationException");

        let response = raw
            .call(
                "ListStreams",
                "application/x-amz-json-1.1",
                b"{not json".to_vec(),
            )
            .await;
        assert_eq!(response.status, 400);
        let error: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(error["__type"], "SerializationException");
    }
}
