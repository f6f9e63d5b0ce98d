//! The HTTP front door: one cleartext port serving HTTP/1.1 and HTTP/2 with prior knowledge
//! (the Java SDK v2 async client and JS v3 speak h2c to every operation), the awsJson1_1 /
//! CBOR envelope checks, and the response headers every AWS SDK expects.
//!
//! This layer only splits `X-Amz-Target`, picks the format from `Content-Type` and decodes the
//! body into a [`Value`]; the operation name is not validated here, and the [`Service`]
//! answers unknown names with `UnknownOperationException`. Responses use the request's format,
//! errors included, because the Java SDK v2 parses by its configured protocol.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use riffle_types::{ErrorCode, KinesisError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::wire::{self, Format, Map, Value};

/// Largest request body accepted. A 10 MiB PutRecords is ~13.4 MiB once base64 encoded in
/// JSON; anything above this gets a 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How long [`serve`] lets in-flight connections finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `X-Amz-Target` prefix of every Kinesis operation.
pub const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// Most bytes of an oversized body read and thrown away so an HTTP/1.1 client that writes its
/// whole body before reading sees the 413 instead of a reset connection.
const DRAIN_LIMIT_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after an accept error that is not about one connection (e.g. EMFILE), so the loop
/// does not spin while descriptors are exhausted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

const EXPOSED_HEADERS: &str =
    "x-amzn-RequestId,x-amzn-ErrorType,x-amz-request-id,x-amz-id-2,x-amzn-ErrorMessage,Date";
const PREFLIGHT_MAX_AGE: &str = "172800";
const X_AMZ_TARGET: HeaderName = HeaderName::from_static("x-amz-target");
const X_AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const X_AMZ_ID_2: HeaderName = HeaderName::from_static("x-amz-id-2");
const X_AMZN_ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// The Kinesis operations behind the front door.
pub trait Service: Send + Sync + 'static {
    /// Handles one decoded Kinesis call. `operation` is the name after `Kinesis_20131202.`.
    fn call(&self, call: Call) -> impl Future<Output = Result<Reply, KinesisError>> + Send;

    /// The span a request for `operation` (the name after `Kinesis_20131202.`, unvalidated)
    /// runs in, from reading its body to its answer.
    fn span(&self, operation: &str, request_id: &str) -> tracing::Span {
        unknown_operation_span(operation, request_id)
    }

    /// Answers an administrative request (a `GET`, or a `POST` when `post`, to a path under
    /// `/_riffle/`) with a status and a JSON document, or `None` when there is no such path.
    fn admin(
        &self,
        post: bool,
        path: &str,
    ) -> impl Future<Output = Option<(StatusCode, Vec<u8>)>> + Send {
        let _ = (post, path);
        async { None }
    }
}

/// A span for a request whose operation is not one the service names its spans after.
pub fn unknown_operation_span(operation: &str, request_id: &str) -> tracing::Span {
    tracing::info_span!("kinesis", op = %operation, request_id = %request_id)
}

/// What a call answers with.
pub enum Reply {
    /// The operation's output (sent in the request's format); [`Value::Null`] for none.
    Document(Value),
    /// SubscribeToShard: encoded event-stream messages as they are produced (already framed;
    /// the first is the `initial-response`), sent as `application/vnd.amazon.eventstream`.
    Events(EventBytes),
}

/// The body of a SubscribeToShard response: event-stream messages as they are produced.
pub type EventBytes = std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>>;

/// A response body: complete, or streamed (SubscribeToShard).
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// One decoded request.
#[derive(Debug)]
pub struct Call {
    /// The operation name from `X-Amz-Target`, unvalidated (e.g. `PutRecords`).
    pub operation: String,
    /// The request's encoding; the response uses it too.
    pub format: Format,
    /// The request body; always a [`Value::Map`].
    pub input: Value,
    /// The `x-amzn-RequestId` the response will carry.
    pub request_id: String,
    /// The client's address.
    pub peer: Option<SocketAddr>,
}

/// Serves Kinesis over HTTP/1.1 and h2c on `listener` until `shutdown` resolves, then stops
/// accepting, gives open connections [`SHUTDOWN_GRACE`] to finish their requests, closes the
/// rest and returns.
///
/// Accept errors are logged and retried, so this currently always returns `Ok`.
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(
                        Arc::clone(&builder),
                        stream,
                        peer,
                        Arc::clone(&service),
                        stop_receiver.clone(),
                    ));
                }
                Err(error) if is_per_connection_error(&error) => {
                    tracing::debug!(%error, "accept failed for one connection");
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed; pausing before retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => log_join(joined),
        }
    }

    drop(listener);
    // Every connection task holds a receiver, so this only fails when none are open.
    let _ = stop_sender.send(true);
    let open = connections.len();
    tracing::debug!(open, "shutting down: waiting for open connections");
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = connections.join_next().await {
            log_join(joined);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "closing connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

fn is_per_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::warn!(%error, "connection task panicked");
    }
}

async fn serve_connection<S: Service>(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<S>,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
    }
    let requests_stop = stop.clone();
    let hyper_service = service_fn(move |request| {
        let service = Arc::clone(&service);
        let stop = requests_stop.clone();
        async move { Ok::<_, Infallible>(handle(request, service, Some(peer), stop).await) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), hyper_service);
    tokio::pin!(connection);
    let stop_requested = async {
        // An error means the server is gone, which is a stop as well.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop_requested => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection closed with an error");
    }
}

/// Answers one HTTP request; never fails, every problem becomes an error response.
async fn handle<S: Service>(
    request: Request<Incoming>,
    service: Arc<S>,
    peer: Option<SocketAddr>,
    stop: watch::Receiver<bool>,
) -> Response<ResponseBody> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let admin = request.uri().path().starts_with("/_riffle/")
        && (request.method() == Method::GET || request.method() == Method::POST);
    let mut response = if admin {
        let post = request.method() == Method::POST;
        match service.admin(post, request.uri().path()).await {
            Some((status, document)) => {
                body_response(status, "application/json", Bytes::from(document))
            }
            None => body_response(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found"),
            ),
        }
    } else if request.method() == Method::POST {
        let mut response = kinesis_call(request, service.as_ref(), &request_id, peer, stop).await;
        add_common_headers(response.headers_mut(), &request_id);
        return response;
    } else if request.method() == Method::GET
        && matches!(request.uri().path(), "/health" | "/healthz")
    {
        body_response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok"),
        )
    } else if request.method() == Method::OPTIONS {
        preflight_response(request.headers())
    } else {
        let error = KinesisError::new(
            ErrorCode::AccessDeniedException,
            "Unable to determine service/operation name to be authorized",
        );
        error_response(Format::Json, StatusCode::FORBIDDEN, &error)
    };
    add_common_headers(response.headers_mut(), &request_id);
    response.map(|body| body.boxed_unsync())
}

/// One Kinesis call: envelope checks, the body decoded, the service's answer in the request's
/// format (a document, or for SubscribeToShard an event stream: chunked on HTTP/1.1, DATA
/// frames on HTTP/2).
async fn kinesis_call<S: Service>(
    request: Request<Incoming>,
    service: &S,
    request_id: &str,
    peer: Option<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) -> Response<ResponseBody> {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let format = content_type.and_then(Format::from_content_type);
    let reply_format = format.unwrap_or(Format::Json);
    let operation = parts
        .headers
        .get(X_AMZ_TARGET)
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.strip_prefix(TARGET_PREFIX))
        .filter(|operation| !operation.is_empty())
        .map(str::to_owned);
    let span = match &operation {
        Some(operation) => service.span(operation, request_id),
        None => unknown_operation_span("-", request_id),
    };

    async {
        let started = Instant::now();
        let body = match read_body(&parts.headers, body).await {
            Ok(body) => Ok(body),
            Err(BodyError::TooLarge) => {
                let error = KinesisError::serialization(format!(
                    "request body is larger than the {MAX_BODY_BYTES}-byte limit"
                ));
                let response = error_response(reply_format, StatusCode::PAYLOAD_TOO_LARGE, &error);
                log_outcome(&response, &error, started);
                return response.map(|body| body.boxed_unsync());
            }
            Err(BodyError::Read(error)) => Err(KinesisError::serialization(format!(
                "could not read the request body: {error}"
            ))),
        };
        let result = match body.and_then(|body| decode_call(operation, format, content_type, &body))
        {
            Ok((operation, input)) => {
                let call = Call {
                    operation,
                    format: reply_format,
                    input,
                    request_id: request_id.to_owned(),
                    peer,
                };
                // A panicking operation answers 500 instead of taking the connection down.
                match AssertUnwindSafe(service.call(call)).catch_unwind().await {
                    Ok(result) => result,
                    Err(_) => Err(KinesisError::internal("the operation failed unexpectedly")),
                }
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(reply) => {
                tracing::debug!(
                    status = 200,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "request succeeded"
                );
                match reply {
                    Reply::Document(output) => {
                        success_response(reply_format, &output).map(|body| body.boxed_unsync())
                    }
                    Reply::Events(events) => {
                        use futures_util::StreamExt as _;
                        // A subscription lasts up to 5 minutes; a stopping server ends it (the
                        // client resubscribes elsewhere) rather than waiting for it.
                        let stopping = async move {
                            let _ = stop.wait_for(|stop| *stop).await;
                        };
                        let body = http_body_util::StreamBody::new(
                            events
                                .take_until(stopping)
                                .map(|bytes| Ok::<_, Infallible>(hyper::body::Frame::data(bytes))),
                        );
                        let mut response = Response::new(body.boxed_unsync());
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/vnd.amazon.eventstream"),
                        );
                        response
                    }
                }
            }
            Err(error) => {
                let status = StatusCode::from_u16(error.code.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let response = error_response(reply_format, status, &error);
                log_outcome(&response, &error, started);
                response.map(|body| body.boxed_unsync())
            }
        }
    }
    .instrument(span)
    .await
}

/// The pre-dispatch checks, in AWS's order: target, content type, empty body, parse.
fn decode_call(
    operation: Option<String>,
    format: Option<Format>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(String, Value), KinesisError> {
    let Some(operation) = operation else {
        return Err(KinesisError::new(
            ErrorCode::UnknownOperationException,
            format!("missing or unrecognized X-Amz-Target: expected {TARGET_PREFIX}<Operation>"),
        ));
    };
    let Some(format) = format else {
        return Err(KinesisError::serialization(format!(
            "unsupported content type {:?}: expected application/x-amz-json-1.1 or application/x-amz-cbor-1.1",
            content_type.unwrap_or_default()
        )));
    };
    if body.is_empty() {
        return Err(KinesisError::serialization("request body is empty"));
    }
    let input = wire::decode(format, body)?;
    if !matches!(input, Value::Map(_)) {
        return Err(KinesisError::serialization(
            "request body must be a structure",
        ));
    }
    Ok((operation, input))
}

fn log_outcome(response: &Response<Full<Bytes>>, error: &KinesisError, started: Instant) {
    let status = response.status().as_u16();
    let elapsed_us = started.elapsed().as_micros() as u64;
    if response.status().is_server_error() {
        tracing::warn!(status, error_type = error.code.type_name(), message = %error.message, elapsed_us, "request failed");
    } else {
        tracing::debug!(status, error_type = error.code.type_name(), message = %error.message, elapsed_us, "request rejected");
    }
}

enum BodyError {
    TooLarge,
    Read(hyper::Error),
}

/// Collects the body up to [`MAX_BODY_BYTES`]. A single-frame body is returned without a copy.
async fn read_body(headers: &HeaderMap, mut body: Incoming) -> Result<Bytes, BodyError> {
    let declared = body.size_hint().lower();
    if declared > MAX_BODY_BYTES as u64 {
        // With `Expect: 100-continue` the client has sent nothing yet and waits; answering
        // without reading tells it not to send.
        let client_waits = headers
            .get(header::EXPECT)
            .is_some_and(|expect| expect.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !client_waits && declared <= DRAIN_LIMIT_BYTES {
            discard(body, 0).await;
        }
        return Err(BodyError::TooLarge);
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        // Trailers carry nothing Kinesis uses.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > MAX_BODY_BYTES {
            discard(body, total as u64).await;
            return Err(BodyError::TooLarge);
        }
        if !data.is_empty() {
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = BytesMut::with_capacity(total);
            for chunk in &chunks {
                joined.extend_from_slice(chunk);
            }
            joined.freeze()
        }
    })
}

/// Reads and drops the rest of an oversized body, bounded in bytes and time.
async fn discard(mut body: Incoming, already_read: u64) {
    let drain = async {
        let mut seen = already_read;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_LIMIT_BYTES {
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::debug!("gave up draining an oversized request body");
    }
}

/// A response with a complete body. `Content-Length` is set here rather than left to hyper,
/// which leaves it out of empty HTTP/2 responses.
fn body_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let content_length = HeaderValue::from(body.len());
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, content_length);
    response
}

/// A 200 with the operation's output. Operations without output return [`Value::Null`], sent
/// as an empty structure, which every SDK accepts.
fn success_response(format: Format, output: &Value) -> Response<Full<Bytes>> {
    let body = match output {
        Value::Null => wire::encode(format, &Value::Map(Map::new())),
        output => wire::encode(format, output),
    };
    body_response(StatusCode::OK, format.content_type(), Bytes::from(body))
}

fn error_response(
    format: Format,
    status: StatusCode,
    error: &KinesisError,
) -> Response<Full<Bytes>> {
    let body = wire::encode(format, &wire::error_document(error));
    let mut response = body_response(status, format.content_type(), Bytes::from(body));
    response.headers_mut().insert(
        X_AMZN_ERROR_TYPE,
        HeaderValue::from_static(error.code.type_name()),
    );
    response
}

/// CORS preflight for browser SDKs: allow whatever was asked.
fn preflight_response(request_headers: &HeaderMap) -> Response<Full<Bytes>> {
    let mut response = body_response(StatusCode::OK, Format::Json.content_type(), Bytes::new());
    let headers = response.headers_mut();
    if let Some(requested) = request_headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
    }
    if let Some(requested) = request_headers.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, requested.clone());
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    response
}

/// Headers on every response: request ids, `Date` (SDKs correct clock skew from it), CORS, and
/// a `Content-Type` even when the body is empty.
fn add_common_headers(headers: &mut HeaderMap, request_id: &str) {
    insert_text(headers, X_AMZN_REQUEST_ID, request_id);
    insert_text(headers, X_AMZ_ID_2, &extended_request_id());
    insert_text(
        headers,
        header::DATE,
        &httpdate::fmt_http_date(SystemTime::now()),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(Format::Json.content_type()),
        );
    }
}

/// Inserts an ASCII header value; the callers only pass uuids, base64 and HTTP dates.
fn insert_text(headers: &mut HeaderMap, name: HeaderName, text: &str) {
    match HeaderValue::from_str(text) {
        Ok(value) => {
            headers.insert(name, value);
        }
        Err(_) => {
            tracing::warn!(header = %name, "dropping a header value that is not visible ascii")
        }
    }
}

/// `x-amz-id-2`: base64 of 72 random bytes, like AWS's extended request id.
fn extended_request_id() -> String {
    let mut random = [0u8; 72];
    for chunk in random.chunks_mut(16) {
        let uuid = uuid::Uuid::new_v4();
        chunk.copy_from_slice(&uuid.as_bytes()[..chunk.len()]);
    }
    BASE64.encode(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_dispatch_checks_run_in_aws_order() {
        let json = Some(Format::Json);
        let op = || Some("PutRecord".to_owned());
        let code = |result: Result<(String, Value), KinesisError>| result.unwrap_err().code;
        assert_eq!(
            code(decode_call(None, None, None, b"")),
            ErrorCode::UnknownOperationException
        );
        assert_eq!(
            code(decode_call(None, json, None, b"{}")),
            ErrorCode::UnknownOperationException
        );
        let unsupported = decode_call(op(), None, Some("text/plain"), b"{}").unwrap_err();
        assert_eq!(unsupported.code, ErrorCode::SerializationException);
        assert!(
            unsupported
                .message
                .starts_with("unsupported content type \"text/plain\"")
        );
        assert_eq!(
            decode_call(op(), json, None, b"").unwrap_err().message,
            "request body is empty"
        );
        assert_eq!(
            code(decode_call(op(), json, None, b"{")),
            ErrorCode::SerializationException
        );
        assert_eq!(
            decode_call(op(), json, None, b"[]").unwrap_err().message,
            "request body must be a structure"
        );
        let (operation, input) = decode_call(op(), json, None, br#"{"StreamName":"s"}"#).unwrap();
        assert_eq!(operation, "PutRecord");
        assert_eq!(input, Value::Map(Map::new().with("StreamName", "s")));
    }

    #[test]
    fn extended_request_ids_are_72_random_bytes() {
        let first = extended_request_id();
        assert_eq!(first.len(), 96);
        assert_eq!(BASE64.decode(&first).unwrap().len(), 72);
        assert_ne!(first, extended_request_id());
    }
}
