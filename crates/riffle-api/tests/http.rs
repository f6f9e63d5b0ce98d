//! Drives `riffle_api::http::serve` with a tiny echo service over real sockets, as HTTP/1.1 and
//! as HTTP/2 with prior knowledge (what the Java SDK v2 and JS v3 speak).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::HeaderMap;
use http::{Method, Request, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use riffle_api::http::{Call, Reply as ServiceReply, Service, serve};
use riffle_api::wire::{self, Format, Map, Timestamp, Value};
use riffle_types::KinesisError;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

const JSON: &str = "application/x-amz-json-1.1";
const CBOR: &str = "application/x-amz-cbor-1.1";
const BLOB: &[u8] = &[1, 2, 3];
const AT: Timestamp = Timestamp {
    millis: 1_506_440_188_749,
};

/// What `Events` answers with, message by message.
const EVENTS: [&[u8]; 2] = [b"first message", b"second message"];

/// Echoes the call back; `Fail`, `Crash` and `Panic` fail, `Nothing` has no output, `Slow`
/// waits for the test to open its gate, `Events` answers with an event stream.
#[derive(Default)]
struct Echo {
    slow_entered: Notify,
    slow_gate: Notify,
}

impl Service for Echo {
    async fn call(&self, call: Call) -> Result<ServiceReply, KinesisError> {
        if call.operation == "Events" {
            let events =
                futures_util::stream::iter(EVENTS.iter().map(|event| Bytes::from_static(event)));
            return Ok(ServiceReply::Events(Box::pin(events)));
        }
        self.answer(call).await.map(ServiceReply::Document)
    }
}

impl Echo {
    async fn answer(&self, call: Call) -> Result<Value, KinesisError> {
        match call.operation.as_str() {
            "Fail" => Err(KinesisError::not_found(
                "Stream missing under account 000000000000 not found.",
            )),
            "Crash" => Err(KinesisError::internal("boom")),
            "Panic" => panic!("operation bug"),
            "Nothing" => Ok(Value::Null),
            "Slow" => {
                self.slow_entered.notify_one();
                self.slow_gate.notified().await;
                Ok(Value::Map(Map::new().with("Slow", true)))
            }
            _ => {
                let format = match call.format {
                    Format::Json => "json",
                    Format::Cbor => "cbor",
                };
                Ok(Value::Map(
                    Map::new()
                        .with("Op", call.operation)
                        .with("Format", format)
                        .with("Echo", call.input)
                        .with("RequestId", call.request_id)
                        .with(
                            "Loopback",
                            call.peer.is_some_and(|peer| peer.ip().is_loopback()),
                        )
                        .with("Blob", Bytes::from_static(BLOB))
                        .with("At", AT),
                ))
            }
        }
    }
}

struct Server {
    address: SocketAddr,
    echo: Arc<Echo>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let echo = Arc::new(Echo::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, Arc::clone(&echo), async {
        let _ = stopped.await;
    }));
    Server {
        address,
        echo,
        stop,
        task,
    }
}

impl Server {
    /// Stops the server and waits for `serve` to return, bounded well below the 10 s grace
    /// period so a shutdown that waits for idle connections fails the test.
    async fn shut_down(self) {
        self.stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve returns promptly once idle connections are closed");
        result.unwrap().unwrap();
    }
}

type TestBody = BoxBody<Bytes, Infallible>;

#[derive(Clone, Copy, Debug)]
enum Protocol {
    Http1,
    Http2,
}

const PROTOCOLS: [Protocol; 2] = [Protocol::Http1, Protocol::Http2];

fn client(protocol: Protocol) -> Client<HttpConnector, TestBody> {
    let mut builder = Client::builder(TokioExecutor::new());
    if let Protocol::Http2 = protocol {
        builder.http2_only(true);
    }
    builder.build_http()
}

struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name} in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    fn json(&self) -> String {
        assert_eq!(self.header("content-type"), JSON);
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    fn cbor(&self) -> Map {
        assert_eq!(self.header("content-type"), CBOR);
        match wire::decode(Format::Cbor, &self.body).unwrap() {
            Value::Map(map) => map,
            other => panic!("cbor reply is not a map: {other:?}"),
        }
    }
}

async fn send(
    client: &Client<HttpConnector, TestBody>,
    server: &Server,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", server.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        version,
        headers,
        body,
    }
}

fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).boxed()
}

async fn kinesis(
    client: &Client<HttpConnector, TestBody>,
    server: &Server,
    operation: &str,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Reply {
    let target = format!("Kinesis_20131202.{operation}");
    send(
        client,
        server,
        Method::POST,
        "/",
        &[("x-amz-target", &target), ("content-type", content_type)],
        full(body),
    )
    .await
}

/// The headers every response carries, whatever it is.
fn assert_common_headers(reply: &Reply, protocol: Protocol) {
    let expected_version = match protocol {
        Protocol::Http1 => Version::HTTP_11,
        Protocol::Http2 => Version::HTTP_2,
    };
    assert_eq!(reply.version, expected_version);
    let request_id = reply.header("x-amzn-requestid");
    assert_eq!(request_id.len(), 36, "uuid: {request_id}");
    assert_eq!(request_id.as_bytes()[14], b'4', "a v4 uuid: {request_id}");
    assert_eq!(BASE64.decode(reply.header("x-amz-id-2")).unwrap().len(), 72);
    httpdate::parse_http_date(reply.header("date")).unwrap();
    assert!(!reply.header("content-type").is_empty());
    assert_eq!(reply.header("content-length"), reply.body.len().to_string());
    assert_eq!(reply.header("access-control-allow-origin"), "*");
    assert_eq!(
        reply.header("access-control-expose-headers"),
        "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date"
    );
}

#[tokio::test]
async fn json_calls_round_trip() {
    let server = start().await;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        let reply = kinesis(
            &client,
            &server,
            "PutRecord",
            JSON,
            r#"{"StreamName":"s","Data":"AAEC","Unknown":[1,{}]}"#,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_common_headers(&reply, protocol);
        assert!(reply.headers.get("x-amzn-errortype").is_none());
        let request_id = reply.header("x-amzn-requestid");
        assert_eq!(
            reply.json(),
            format!(
                r#"{{"Op":"PutRecord","Format":"json","Echo":{{"StreamName":"s","Data":"AAEC","Unknown":[1,{{}}]}},"RequestId":"{request_id}","Loopback":true,"Blob":"AQID","At":1506440188.749}}"#
            )
        );

        // `application/json` with parameters is read as AWS JSON and answered as AWS JSON.
        let reply = kinesis(
            &client,
            &server,
            "ListStreams",
            "application/json; charset=utf-8",
            "{}",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            reply
                .json()
                .starts_with(r#"{"Op":"ListStreams","Format":"json","Echo":{},"#)
        );
    }
    server.shut_down().await;
}

/// An event-stream answer (SubscribeToShard's) goes out as it is produced, with its own
/// content type and the headers of every response.
#[tokio::test]
async fn event_stream_replies_are_streamed() {
    let server = start().await;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        let reply = kinesis(&client, &server, "Events", CBOR, vec![0xA0]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(
            reply.header("content-type"),
            "application/vnd.amazon.eventstream"
        );
        assert_eq!(reply.header("x-amzn-requestid").len(), 36);
        assert_eq!(reply.header("access-control-allow-origin"), "*");
        assert_eq!(reply.body, Bytes::from(EVENTS.concat()));
    }
    server.shut_down().await;
}

#[tokio::test]
async fn cbor_calls_round_trip() {
    let server = start().await;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        // Jackson's indefinite-length map {"Data": h'010203'}.
        let body = vec![
            0xBF, 0x64, b'D', b'a', b't', b'a', 0x43, 0x01, 0x02, 0x03, 0xFF,
        ];
        let reply = kinesis(&client, &server, "PutRecord", CBOR, body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_common_headers(&reply, protocol);
        let request_id = reply.header("x-amzn-requestid").to_owned();
        let expected = Map::new()
            .with("Op", "PutRecord")
            .with("Format", "cbor")
            .with("Echo", Map::new().with("Data", Bytes::from_static(BLOB)))
            .with("RequestId", request_id)
            .with("Loopback", true)
            .with("Blob", Bytes::from_static(BLOB))
            .with("At", AT);
        assert_eq!(reply.cbor(), expected);
        // The timestamp goes out as tag 1 over integer milliseconds.
        let tagged_millis = [0xC1, 0x1B, 0x00, 0x00, 0x01, 0x5E, 0xBE, 0xD5, 0x13, 0x4D];
        assert!(
            reply
                .body
                .windows(tagged_millis.len())
                .any(|window| window == tagged_millis)
        );
    }
    server.shut_down().await;
}

#[tokio::test]
async fn operation_errors_use_the_request_format() {
    let server = start().await;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        let reply = kinesis(&client, &server, "Fail", JSON, "{}").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_common_headers(&reply, protocol);
        assert_eq!(
            reply.header("x-amzn-errortype"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            reply.json(),
            r#"{"__type":"ResourceNotFoundException","message":"Stream missing under account 000000000000 not found."}"#
        );

        let reply = kinesis(&client, &server, "Fail", CBOR, vec![0xA0]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.header("x-amzn-errortype"),
            "ResourceNotFoundException"
        );
        assert_eq!(
            reply.cbor(),
            Map::new().with("__type", "ResourceNotFoundException").with(
                "message",
                "Stream missing under account 000000000000 not found."
            )
        );

        let reply = kinesis(&client, &server, "Crash", JSON, "{}").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            reply.json(),
            r#"{"__type":"InternalFailureException","message":"boom"}"#
        );

        let reply = kinesis(&client, &server, "Panic", JSON, "{}").await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.header("x-amzn-errortype"), "InternalFailureException");

        let reply = kinesis(&client, &server, "Nothing", JSON, "{}").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.json(), "{}");
        let reply = kinesis(&client, &server, "Nothing", CBOR, vec![0xA0]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.as_ref(), [0xA0]);
    }
    server.shut_down().await;
}

#[tokio::test]
async fn envelope_errors() {
    let server = start().await;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        let error_type = |reply: &Reply| reply.header("x-amzn-errortype").to_owned();

        // No target, or another service's target.
        let reply = send(
            &client,
            &server,
            Method::POST,
            "/",
            &[("content-type", JSON)],
            full("{}"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_common_headers(&reply, protocol);
        assert_eq!(error_type(&reply), "UnknownOperationException");
        assert!(
            reply
                .json()
                .starts_with(r#"{"__type":"UnknownOperationException","message":"#)
        );
        for target in [
            "DynamoDB_20120810.ListTables",
            "Kinesis_20131202.",
            "Kinesis_20131202",
        ] {
            let headers = [("x-amz-target", target), ("content-type", CBOR)];
            let reply = send(
                &client,
                &server,
                Method::POST,
                "/",
                &headers,
                full(vec![0xA0]),
            )
            .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{target}");
            assert_eq!(
                reply.cbor().string("__type").unwrap(),
                Some("UnknownOperationException")
            );
        }

        // Unsupported or missing content type: answered in JSON.
        let reply = kinesis(&client, &server, "ListStreams", "text/plain", "{}").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(error_type(&reply), "SerializationException");
        assert!(reply.json().contains("unsupported content type"));
        let headers = [("x-amz-target", "Kinesis_20131202.ListStreams")];
        let reply = send(&client, &server, Method::POST, "/", &headers, full("{}")).await;
        assert_eq!(error_type(&reply), "SerializationException");
        assert_common_headers(&reply, protocol);

        // Bodies that are empty, malformed, or not a structure.
        for (content_type, body) in [
            (JSON, &b""[..]),
            (JSON, b"{\"StreamName\":"),
            (JSON, b"not json"),
            (JSON, b"[1,2]"),
            (JSON, b"{} {}"),
            (CBOR, &[]),
            (CBOR, &[0xBF, 0x61]),
            (CBOR, &[0x83, 1, 2, 3]),
            (CBOR, &[0xA1, 0x01, 0x02]),
        ] {
            let reply = kinesis(
                &client,
                &server,
                "PutRecord",
                content_type,
                Bytes::from_static(body),
            )
            .await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:02X?}");
            assert_eq!(error_type(&reply), "SerializationException", "{body:02X?}");
            assert_eq!(reply.header("content-type"), content_type);
        }
    }
    server.shut_down().await;
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let server = start().await;
    let seventeen_mib = 17 * 1024 * 1024;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        // Declared length.
        let reply = kinesis(
            &client,
            &server,
            "PutRecords",
            JSON,
            vec![b' '; seventeen_mib],
        )
        .await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_common_headers(&reply, protocol);
        assert_eq!(reply.header("x-amzn-errortype"), "SerializationException");
        assert!(reply.json().contains("16777216"));

        // No declared length (chunked on HTTP/1.1): the limit applies as the body streams in.
        let chunks =
            (0..17).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b' '; 1024 * 1024]))));
        let streamed = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
        let headers = [
            ("x-amz-target", "Kinesis_20131202.PutRecords"),
            ("content-type", CBOR),
        ];
        let reply = send(&client, &server, Method::POST, "/", &headers, streamed).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            reply.cbor().string("__type").unwrap(),
            Some("SerializationException")
        );

        // Just under the limit is read in full (and then fails to parse as the spaces it is).
        let reply = kinesis(
            &client,
            &server,
            "PutRecords",
            JSON,
            vec![b' '; 16 * 1024 * 1024],
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);

        // The server keeps serving.
        let reply = kinesis(&client, &server, "ListStreams", JSON, "{}").await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    server.shut_down().await;
}

#[tokio::test]
async fn health_cors_and_other_methods() {
    let server = start().await;
    for protocol in PROTOCOLS {
        let client = client(protocol);
        for path in ["/health", "/healthz"] {
            let reply = send(&client, &server, Method::GET, path, &[], full(Bytes::new())).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_common_headers(&reply, protocol);
            assert_eq!(reply.body.as_ref(), b"ok");
        }

        let preflight_headers = [
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-amz-target,x-amz-date",
            ),
        ];
        let reply = send(
            &client,
            &server,
            Method::OPTIONS,
            "/",
            &preflight_headers,
            full(Bytes::new()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_common_headers(&reply, protocol);
        assert_eq!(reply.header("access-control-allow-methods"), "POST");
        assert_eq!(
            reply.header("access-control-allow-headers"),
            "content-type,x-amz-target,x-amz-date"
        );
        assert_eq!(reply.header("access-control-max-age"), "172800");
        assert!(reply.body.is_empty());

        for (method, path) in [
            (Method::GET, "/"),
            (Method::PUT, "/"),
            (Method::DELETE, "/health"),
        ] {
            let reply = send(
                &client,
                &server,
                method.clone(),
                path,
                &[],
                full(Bytes::new()),
            )
            .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
            assert_common_headers(&reply, protocol);
            assert_eq!(reply.header("x-amzn-errortype"), "AccessDeniedException");
            assert!(
                reply
                    .json()
                    .starts_with(r#"{"__type":"AccessDeniedException","message":"#)
            );
        }
    }
    server.shut_down().await;
}

#[tokio::test]
async fn every_response_has_its_own_request_id() {
    let server = start().await;
    let client = client(Protocol::Http2);
    let first = kinesis(&client, &server, "ListStreams", JSON, "{}").await;
    let second = kinesis(&client, &server, "ListStreams", JSON, "{}").await;
    assert_ne!(
        first.header("x-amzn-requestid"),
        second.header("x-amzn-requestid")
    );
    assert_ne!(first.header("x-amz-id-2"), second.header("x-amz-id-2"));
    server.shut_down().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    for protocol in PROTOCOLS {
        let server = start().await;
        let client = client(protocol);
        let address = server.address;
        let echo = Arc::clone(&server.echo);
        let in_flight = tokio::spawn({
            let client = client.clone();
            let target = "Kinesis_20131202.Slow";
            let request = Request::post(format!("http://{address}/"))
                .header("x-amz-target", target)
                .header("content-type", JSON)
                .body(full("{}"))
                .unwrap();
            async move {
                let response = client.request(request).await.unwrap();
                let status = response.status();
                (
                    status,
                    response.into_body().collect().await.unwrap().to_bytes(),
                )
            }
        });
        echo.slow_entered.notified().await;

        let Server { stop, task, .. } = server;
        stop.send(()).unwrap();
        // The listener closes: new connections are refused while the slow call is still open.
        let mut refused = false;
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(address).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            refused,
            "{protocol:?}: listener still accepting after shutdown"
        );
        assert!(
            !task.is_finished(),
            "{protocol:?}: serve returned before the in-flight call finished"
        );

        echo.slow_gate.notify_one();
        let (status, body) = in_flight.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.as_ref(), br#"{"Slow":true}"#);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("serve returns once the in-flight call is answered")
            .unwrap()
            .unwrap();
    }
}

/// Sends raw HTTP/1.1 `head` (and `body`, all of it, before reading anything, as simple
/// clients do) and returns everything the server sent until it closed the connection.
async fn raw_http1(server: &Server, head: &str, body: &[u8]) -> io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(server.address).await?;
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn oversized_bodies_are_drained_for_clients_that_write_before_reading() {
    let server = start().await;
    let length = 17 * 1024 * 1024;
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: Kinesis_20131202.PutRecords\r\n\
         content-type: {JSON}\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
    );
    let response = raw_http1(&server, &head, &vec![b' '; length])
        .await
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{response}"
    );
    assert!(
        response.contains("x-amzn-errortype: SerializationException\r\n"),
        "{response}"
    );
    // hyper adds its own Date only when the response has none.
    assert_eq!(response.matches("\r\ndate: ").count(), 1, "{response}");
    server.shut_down().await;
}

#[tokio::test]
async fn oversized_bodies_behind_expect_continue_are_refused_unread() {
    let server = start().await;
    let head = format!(
        "POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: Kinesis_20131202.PutRecords\r\n\
         content-type: {JSON}\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        17 * 1024 * 1024
    );
    // No body is sent: the client waits for `100 Continue`, which must not come.
    let response = raw_http1(&server, &head, b"").await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{response}"
    );
    assert!(!response.contains("100 Continue"), "{response}");
    server.shut_down().await;
}
