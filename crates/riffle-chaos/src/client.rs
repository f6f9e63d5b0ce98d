//! A small Kinesis JSON client over HTTP/1.1 that tells definite failures from ambiguous ones,
//! which the checker needs: a write that may have happened may legitimately appear twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::seq::IndexedRandom;
use serde_json::Value;
use serde_json::json;

/// Why a call did not succeed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The service answered with a client error (4xx): nothing was written.
    Rejected { kind: String, message: String },
    /// The request never left: the connection was refused or could not be made.
    Unreachable(String),
    /// The request may have been carried out: a timeout, a broken connection, a 5xx.
    Ambiguous(String),
}

impl CallError {
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, CallError::Ambiguous(_))
    }

    /// A short label for reports ("ResourceNotFoundException", "timeout", "unreachable").
    pub fn label(&self) -> String {
        match self {
            CallError::Rejected { kind, .. } => kind.clone(),
            CallError::Unreachable(_) => "unreachable".to_string(),
            CallError::Ambiguous(reason) => {
                if reason == "timeout" {
                    "timeout".to_string()
                } else {
                    reason.split(':').next().unwrap_or("error").to_string()
                }
            }
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Rejected { kind, message } => write!(f, "{kind}: {message}"),
            CallError::Unreachable(reason) => write!(f, "unreachable: {reason}"),
            CallError::Ambiguous(reason) => write!(f, "ambiguous: {reason}"),
        }
    }
}

impl std::error::Error for CallError {}

/// Calls the Kinesis JSON API (`application/x-amz-json-1.1`) on any of a cluster's endpoints.
///
/// Like a client behind a load balancer with passive health checks, it avoids for a few seconds
/// an endpoint that did not answer (refused, timed out, broken connection): a frozen node
/// accepts connections and never answers, and a client that keeps picking it stalls.
#[derive(Clone)]
pub struct Kinesis {
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    avoid: Arc<Mutex<HashMap<String, Instant>>>,
}

/// How long an endpoint that did not answer is avoided.
const AVOID_FOR: Duration = Duration::from_secs(5);

impl Kinesis {
    pub fn new(timeout: Duration) -> Kinesis {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Kinesis {
            http,
            timeout,
            avoid: Arc::default(),
        }
    }

    /// A random endpoint among those not avoided right now (any, if all are).
    pub fn pick(&self, endpoints: &[String]) -> String {
        let now = Instant::now();
        let healthy: Vec<&String> = match self.avoid.lock() {
            Ok(avoid) => endpoints
                .iter()
                .filter(|e| avoid.get(*e).is_none_or(|until| *until <= now))
                .collect(),
            Err(_) => endpoints.iter().collect(),
        };
        let choices: Vec<&String> = if healthy.is_empty() {
            endpoints.iter().collect()
        } else {
            healthy
        };
        choices
            .choose(&mut rand::rng())
            .map(|e| (*e).clone())
            .expect("at least one endpoint")
    }

    /// One call of `op` with a JSON body on `endpoint` (e.g. `http://127.0.0.1:4567`).
    pub async fn call(&self, endpoint: &str, op: &str, body: &Value) -> Result<Value, CallError> {
        let request = http::Request::post(format!("{}/", endpoint.trim_end_matches('/')))
            .header("X-Amz-Target", format!("Kinesis_20131202.{op}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|error| CallError::Rejected {
                kind: "InvalidRequest".to_string(),
                message: error.to_string(),
            })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|error| {
                if error.is_connect() {
                    CallError::Unreachable(error.to_string())
                } else {
                    CallError::Ambiguous(format!("connection: {error}"))
                }
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|error| CallError::Ambiguous(format!("body: {error}")))?
                .to_bytes();
            Ok::<_, CallError>((status, bytes))
        };
        let outcome = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::Ambiguous("timeout".to_string()))
            .and_then(|result| result);
        let (status, bytes) = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                if let Ok(mut avoid) = self.avoid.lock() {
                    avoid.insert(endpoint.to_string(), Instant::now() + AVOID_FOR);
                }
                return Err(error);
            }
        };
        let value: Value = if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&bytes).map_err(|error| {
                CallError::Ambiguous(format!("undecodable {status} response: {error}"))
            })?
        };
        if status.is_success() {
            return Ok(value);
        }
        let kind = value["__type"]
            .as_str()
            .unwrap_or("UnknownError")
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .to_string();
        let message = value["message"]
            .as_str()
            .or_else(|| value["Message"].as_str())
            .unwrap_or_default()
            .to_string();
        if status.is_client_error() {
            Err(CallError::Rejected { kind, message })
        } else {
            Err(CallError::Ambiguous(format!("{kind}: {message}")))
        }
    }
}
