//! The client: one pool of HTTP/1.1 keep-alive connections, the endpoints, and one exchange
//! path (send, fail over while nothing was sent, read the answer, classify a failure) for the
//! Kinesis operations and Riffle's admin paths alike.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::StatusCode;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::endpoints::Endpoints;
use crate::endpoints::Spread;
use crate::error::Error;
use crate::error::NoAnswerKind;
use crate::error::ServiceError;

/// The `X-Amz-Target` prefix of every Kinesis operation (and of Riffle's lease operations).
const TARGET_PREFIX: &str = "Kinesis_20131202.";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A Kinesis operation: its input is the request body; `Output` is what a success decodes to.
pub trait Operation: Serialize + Sync {
    /// The operation's name, as in `X-Amz-Target: Kinesis_20131202.<NAME>`.
    const NAME: &'static str;
    type Output: DeserializeOwned + Send;
}

/// Anything that answers Kinesis operations: a [`Client`] over HTTP, or a test's in-process
/// API. Code written against it (the chaos workload, the history writers and readers) runs
/// against a real cluster and a simulated one alike.
pub trait Kinesis: Clone + Send + Sync + 'static {
    fn call<O: Operation>(
        &self,
        input: &O,
    ) -> impl Future<Output = Result<O::Output, Error>> + Send;
}

impl Kinesis for Client {
    fn call<O: Operation>(
        &self,
        input: &O,
    ) -> impl Future<Output = Result<O::Output, Error>> + Send {
        Client::call(self, input)
    }
}

/// A request body encoded once and sent any number of times (a load generator's pre-built
/// PutRecords calls): sending it clones a `Bytes`, nothing is encoded again.
pub struct Encoded<O> {
    body: Bytes,
    operation: PhantomData<fn() -> O>,
}

impl<O: Operation> Encoded<O> {
    pub fn new(input: &O) -> Result<Encoded<O>, Error> {
        let body = serde_json::to_vec(input).map_err(|error| Error::Request(error.to_string()))?;
        Ok(Encoded {
            body: Bytes::from(body),
            operation: PhantomData,
        })
    }

    /// Bytes of the encoded body.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }
}

impl<O> Clone for Encoded<O> {
    fn clone(&self) -> Self {
        Encoded {
            body: self.body.clone(),
            operation: PhantomData,
        }
    }
}

/// How a [`Client`] is set up.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    spread: Spread,
    timeout: Duration,
    connect_timeout: Duration,
    max_idle_per_host: usize,
}

impl ClientBuilder {
    /// How calls are spread over the endpoints (default: [`Spread::Sticky`]).
    pub fn spread(mut self, spread: Spread) -> Self {
        self.spread = spread;
        self
    }

    /// Time allowed for a whole call: connecting, sending and reading the answer (for a
    /// subscription, until its response head). Default 20 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed for a TCP connection; a node that does not accept within it is not sent
    /// the request, so the call moves to the next endpoint. Default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Idle keep-alive connections kept per node (a load generator wants one per worker).
    pub fn max_idle_per_host(mut self, connections: usize) -> Self {
        self.max_idle_per_host = connections;
        self
    }

    pub fn build(self) -> Client {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(self.max_idle_per_host)
            .build(connector);
        Client {
            http,
            endpoints: Arc::new(Endpoints::new(self.endpoints, self.spread)),
            timeout: self.timeout,
        }
    }
}

/// A Kinesis client over any number of nodes. Cloning is cheap and shares the connections and
/// the endpoints' health.
///
/// A call is sent again only when it never left: when an endpoint refuses the connection (or
/// cannot be connected to), the next endpoint is tried, each at most once per call. Once a
/// request may have reached a node it is never resent; its failure comes back as
/// [`Error::Failed`] or [`Error::NoAnswer`], which [`Error::is_ambiguous`] tells from a definite
/// rejection. (hyper itself resends a request only when a pooled connection turned out closed
/// before any of it was written.)
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    endpoints: Arc<Endpoints>,
    timeout: Duration,
}

/// What is sent: a Kinesis operation, or a Riffle admin path.
enum Request<'a> {
    Kinesis { operation: &'a str, body: Bytes },
    Admin { method: Method, path: &'a str },
}

impl Client {
    /// A client with the defaults ([`Spread::Sticky`], 20 s per call).
    pub fn new(endpoints: Vec<String>) -> Client {
        Client::builder(endpoints).build()
    }

    pub fn builder(endpoints: Vec<String>) -> ClientBuilder {
        ClientBuilder {
            endpoints,
            spread: Spread::Sticky,
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(2),
            max_idle_per_host: usize::MAX,
        }
    }

    /// The same connection pool over other endpoints (one node only, to read through that
    /// node; or the same nodes in another order, so that workers start on different ones).
    pub fn with_endpoints(&self, endpoints: Vec<String>, spread: Spread) -> Client {
        Client {
            http: self.http.clone(),
            endpoints: Arc::new(Endpoints::new(endpoints, spread)),
            timeout: self.timeout,
        }
    }

    /// The same client with another per-call timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Client {
        Client {
            timeout,
            ..self.clone()
        }
    }

    pub fn endpoints(&self) -> &[String] {
        self.endpoints.urls()
    }

    /// Calls a Kinesis operation.
    pub async fn call<O: Operation>(&self, input: &O) -> Result<O::Output, Error> {
        self.call_encoded(&Encoded::new(input)?).await
    }

    /// Calls a Kinesis operation with a body encoded beforehand.
    pub async fn call_encoded<O: Operation>(
        &self,
        encoded: &Encoded<O>,
    ) -> Result<O::Output, Error> {
        let body = self
            .exchange(Request::Kinesis {
                operation: O::NAME,
                body: encoded.body.clone(),
            })
            .await?;
        decode(&body)
    }

    /// Calls an operation by name with an untyped JSON input (for operations and members this
    /// crate has no type for).
    pub async fn call_json(
        &self,
        operation: &str,
        input: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let body = serde_json::to_vec(input).map_err(|error| Error::Request(error.to_string()))?;
        let answer = self
            .exchange(Request::Kinesis {
                operation,
                body: Bytes::from(body),
            })
            .await?;
        decode(&answer)
    }

    /// `GET` or `POST` of a Riffle admin path (`/_riffle/status`), answered with JSON.
    pub(crate) async fn admin<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T, Error> {
        let body = self.exchange(Request::Admin { method, path }).await?;
        decode(&body)
    }

    /// Starts a call whose answer is streamed (SubscribeToShard): the response once its head
    /// arrived with a success status (the body is read by the caller, with no time limit).
    pub(crate) async fn open_stream(
        &self,
        operation: &str,
        body: Bytes,
    ) -> Result<Incoming, Error> {
        let deadline = Instant::now() + self.timeout;
        let request = Request::Kinesis { operation, body };
        let (response, endpoint) = self.send(&request, deadline).await?;
        if response.status().is_success() {
            return Ok(response.into_body());
        }
        let status = response.status();
        let body = self.read_body(response, endpoint, deadline).await?;
        Err(self.service_error(status, &body, endpoint))
    }

    /// One exchange: the answer's body on success, the classified failure otherwise.
    async fn exchange(&self, request: Request<'_>) -> Result<Bytes, Error> {
        let deadline = Instant::now() + self.timeout;
        let (response, endpoint) = self.send(&request, deadline).await?;
        let status = response.status();
        let body = self.read_body(response, endpoint, deadline).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(self.service_error(status, &body, endpoint))
    }

    fn service_error(&self, status: StatusCode, body: &[u8], endpoint: usize) -> Error {
        let error = ServiceError::from_body(status.as_u16(), body);
        if status.is_server_error() {
            self.endpoints.failed(endpoint);
            Error::Failed(error)
        } else {
            Error::Rejected(error)
        }
    }

    async fn read_body(
        &self,
        response: http::Response<Incoming>,
        endpoint: usize,
        deadline: Instant,
    ) -> Result<Bytes, Error> {
        match tokio::time::timeout_at(deadline, response.into_body().collect()).await {
            Ok(Ok(body)) => Ok(body.to_bytes()),
            Ok(Err(error)) => {
                self.endpoints.failed(endpoint);
                Err(Error::NoAnswer {
                    kind: NoAnswerKind::Body,
                    detail: error.to_string(),
                })
            }
            Err(_) => {
                self.endpoints.failed(endpoint);
                Err(no_answer_in(self.timeout))
            }
        }
    }

    /// Sends `request` to an endpoint, moving to the next while a connection cannot be made;
    /// returns the response head and the endpoint that answered.
    async fn send(
        &self,
        request: &Request<'_>,
        deadline: Instant,
    ) -> Result<(http::Response<Incoming>, usize), Error> {
        let mut tried = Vec::new();
        let mut not_sent = Vec::new();
        while let Some(endpoint) = self.endpoints.pick(&tried) {
            tried.push(endpoint);
            let url = self.endpoints.url(endpoint);
            let http_request = build(url, request)?;
            match tokio::time::timeout_at(deadline, self.http.request(http_request)).await {
                Ok(Ok(response)) => return Ok((response, endpoint)),
                Ok(Err(error)) if error.is_connect() => {
                    // Nothing was written: the next endpoint may take it.
                    self.endpoints.failed(endpoint);
                    not_sent.push(format!("{url}: {}", error_chain(&error)));
                }
                Ok(Err(error)) => {
                    self.endpoints.failed(endpoint);
                    return Err(Error::NoAnswer {
                        kind: NoAnswerKind::Connection,
                        detail: format!("{url}: {}", error_chain(&error)),
                    });
                }
                Err(_) => {
                    self.endpoints.failed(endpoint);
                    return Err(no_answer_in(self.timeout));
                }
            }
        }
        if not_sent.is_empty() {
            return Err(Error::Request("the client has no endpoint".into()));
        }
        Err(Error::NotSent(not_sent.join("; ")))
    }
}

fn no_answer_in(timeout: Duration) -> Error {
    Error::NoAnswer {
        kind: NoAnswerKind::Timeout,
        detail: format!("no answer within {timeout:?}"),
    }
}

fn build(url: &str, request: &Request<'_>) -> Result<http::Request<Full<Bytes>>, Error> {
    let built = match request {
        Request::Kinesis { operation, body } => http::Request::post(format!("{url}/"))
            .header("x-amz-target", format!("{TARGET_PREFIX}{operation}"))
            .header("content-type", JSON_CONTENT_TYPE)
            .body(Full::new(body.clone())),
        Request::Admin { method, path } => http::Request::builder()
            .method(method.clone())
            .uri(format!("{url}{path}"))
            .body(Full::new(Bytes::new())),
    };
    built.map_err(|error| Error::Request(format!("{url}: {error}")))
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Decodes an answer; an empty body (operations without output) reads as `{}`.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|error| Error::NoAnswer {
        kind: NoAnswerKind::Body,
        detail: format!("undecodable answer: {error}"),
    })
}
