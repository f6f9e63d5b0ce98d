//! A small Kinesis JSON client: one call at a time per request, over any of several endpoints
//! (an endpoint that fails is left for the next one), with the service's error type kept.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Time allowed for one call (a subscription's body is read separately, without a limit).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A failed call: the service's error type (`ResourceInUseException`, …) or a transport error.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: String,
    pub message: String,
}

impl CallError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

/// The Kinesis JSON protocol over several endpoints.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    endpoints: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
}

impl Client {
    pub fn new(endpoints: Vec<String>) -> Client {
        Client {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
            endpoints: Arc::new(endpoints),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn endpoint(&self) -> &str {
        let index = self.next.load(Ordering::Relaxed) % self.endpoints.len().max(1);
        self.endpoints.get(index).map(String::as_str).unwrap_or("")
    }

    fn move_on(&self) {
        self.next.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends one request; returns the response (any status) or a transport error.
    async fn send(
        &self,
        operation: &str,
        input: &Value,
    ) -> Result<hyper::Response<Incoming>, CallError> {
        let body = serde_json::to_vec(input).unwrap_or_default();
        let request = http::Request::post(self.endpoint())
            .header("x-amz-target", format!("Kinesis_20131202.{operation}"))
            .header("content-type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(body)))
            .map_err(|error| CallError {
                code: "ClientError".into(),
                message: error.to_string(),
            })?;
        match tokio::time::timeout(CALL_TIMEOUT, self.http.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                self.move_on();
                Err(CallError {
                    code: "TransportError".into(),
                    message: error.to_string(),
                })
            }
            Err(_) => {
                self.move_on();
                Err(CallError {
                    code: "TransportError".into(),
                    message: format!("no answer in {CALL_TIMEOUT:?}"),
                })
            }
        }
    }

    /// One call, answered with its JSON output or its error.
    pub async fn call(&self, operation: &str, input: Value) -> Result<Value, CallError> {
        let response = self.send(operation, &input).await?;
        let status = response.status();
        let body = match tokio::time::timeout(CALL_TIMEOUT, response.into_body().collect()).await {
            Ok(Ok(body)) => body.to_bytes(),
            _ => {
                self.move_on();
                return Err(CallError {
                    code: "TransportError".into(),
                    message: "response body not received".into(),
                });
            }
        };
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        if status.is_server_error() {
            self.move_on();
        }
        let code = value["__type"]
            .as_str()
            .map(|kind| kind.rsplit('#').next().unwrap_or(kind).to_string())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let message = value["message"]
            .as_str()
            .or_else(|| value["Message"].as_str())
            .unwrap_or_default()
            .to_string();
        Err(CallError { code, message })
    }

    /// Starts a SubscribeToShard call: the response whose body is the event stream.
    pub async fn subscribe(&self, input: Value) -> Result<Incoming, CallError> {
        let response = self.send("SubscribeToShard", &input).await?;
        if response.status().is_success() {
            return Ok(response.into_body());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Err(CallError {
            code: value["__type"]
                .as_str()
                .unwrap_or("SubscribeFailed")
                .to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}
