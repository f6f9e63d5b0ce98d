//! The client against nodes that fail the ways real ones do: a refused connection (nothing was
//! sent: the next endpoint takes the call), a node that reads the request and dies, and a node
//! that never answers (the call may have been carried out: never resent, ambiguous).

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use riffle_client::Client;
use riffle_client::Error;
use riffle_client::NoAnswerKind;
use riffle_client::Spread;
use riffle_client::ops::records::PutRecord;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What a test node does with each request it reads.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Answers with this status and body.
    Answer(u16, &'static str),
    /// Closes the connection without answering.
    Die,
    /// Keeps the connection open and never answers.
    Freeze,
}

/// A node on loopback; counts the requests it read in full.
struct TestNode {
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

async fn node(behaviour: Behaviour) -> TestNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                loop {
                    if read_request(&mut socket).await.is_none() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    match behaviour {
                        Behaviour::Answer(status, body) => {
                            let head = format!(
                                "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            let _ = socket.write_all(head.as_bytes()).await;
                            let _ = socket.write_all(body.as_bytes()).await;
                        }
                        Behaviour::Die => return,
                        Behaviour::Freeze => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                    }
                }
            });
        }
    });
    TestNode { endpoint, requests }
}

/// Reads one request (head and `content-length` body); `None` at the end of the connection.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = socket.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return Some(());
        }
        let read = socket.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// An address nothing listens on (bound, then released).
async fn refused_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn put() -> PutRecord {
    PutRecord {
        stream_name: "s".into(),
        partition_key: "k".into(),
        data: Bytes::from_static(b"v"),
        explicit_hash_key: None,
    }
}

const WRITTEN: &str = r#"{"ShardId":"shardId-000000000000","SequenceNumber":"49"}"#;

#[tokio::test]
async fn a_call_that_was_not_sent_moves_to_the_next_endpoint() {
    let refused = refused_endpoint().await;
    let healthy = node(Behaviour::Answer(200, WRITTEN)).await;
    let client = Client::new(vec![refused, healthy.endpoint.clone()]);
    let written = client.call(&put()).await.unwrap();
    assert_eq!(written.sequence_number, "49");
    assert_eq!(healthy.requests.load(Ordering::SeqCst), 1);
    // Every endpoint refusing: a definite failure, nothing was carried out.
    let nobody = Client::new(vec![refused_endpoint().await, refused_endpoint().await]);
    let error = nobody.call(&put()).await.unwrap_err();
    assert!(matches!(error, Error::NotSent(_)), "{error:?}");
    assert!(error.is_definite());
}

#[tokio::test]
async fn a_write_that_may_have_reached_a_node_is_never_resent() {
    let dying = node(Behaviour::Die).await;
    let healthy = node(Behaviour::Answer(200, WRITTEN)).await;
    let client = Client::builder(vec![dying.endpoint.clone(), healthy.endpoint.clone()])
        .spread(Spread::Sticky)
        .build();
    let error = client.call(&put()).await.unwrap_err();
    assert!(error.is_ambiguous(), "{error:?}");
    assert_eq!(dying.requests.load(Ordering::SeqCst), 1);
    assert_eq!(healthy.requests.load(Ordering::SeqCst), 0, "not resent");
    // The failed node is left for the next call.
    client.call(&put()).await.unwrap();
    assert_eq!(healthy.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_node_that_never_answers_makes_the_call_ambiguous() {
    let frozen = node(Behaviour::Freeze).await;
    let healthy = node(Behaviour::Answer(200, WRITTEN)).await;
    let client = Client::builder(vec![frozen.endpoint.clone(), healthy.endpoint.clone()])
        .timeout(Duration::from_millis(300))
        .build();
    let error = client.call(&put()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::NoAnswer {
                kind: NoAnswerKind::Timeout,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(frozen.requests.load(Ordering::SeqCst), 1);
    assert_eq!(healthy.requests.load(Ordering::SeqCst), 0, "not resent");
}

#[tokio::test]
async fn error_documents_become_rejections_or_failures() {
    let rejecting = node(Behaviour::Answer(
        400,
        r#"{"__type":"ResourceNotFoundException","message":"Stream s not found."}"#,
    ))
    .await;
    let error = Client::new(vec![rejecting.endpoint.clone()])
        .call(&put())
        .await
        .unwrap_err();
    assert!(error.is("ResourceNotFoundException") && error.is_definite());
    assert_eq!(
        error.to_string(),
        "ResourceNotFoundException: Stream s not found."
    );
    let failing = node(Behaviour::Answer(
        503,
        r#"{"__type":"ServiceUnavailable","message":"no leader"}"#,
    ))
    .await;
    let error = Client::new(vec![failing.endpoint.clone()])
        .call(&put())
        .await
        .unwrap_err();
    assert!(error.is("ServiceUnavailable") && error.is_ambiguous());
    assert_eq!(failing.requests.load(Ordering::SeqCst), 1, "not resent");
}
