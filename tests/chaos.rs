//! Chaos tests: a three-node cluster in containers from the locally built image `riffle:dev`
//! (scripts/docker-image.sh), started with testcontainers, one container per AZ; for each
//! fault class a short checked run of `riffle_chaos`: producers through every node, the fault,
//! healing, then everything read back through every node and checked (nothing acknowledged lost
//! or moved, no phantom, order per partition key, duplicates only for ambiguous writes).
//!
//! Needs a Docker engine and the image; `scripts/test.sh` builds it and runs this binary on its
//! own (`cargo nextest run -p riffle-tests --test chaos`), one test at a time.

use std::sync::Arc;
use std::time::Duration;

use riffle_chaos::faults::Fault;
use riffle_chaos::faults::Target;
use riffle_chaos::faults::wait_healthy;
use riffle_chaos::scenario::Scenario;
use riffle_chaos::scenario::Schedule;
use riffle_chaos::scenario::run;
use riffle_chaos::workload::WorkloadConfig;
use riffle_chaos_docker::DockerCluster;
use testcontainers::ContainerAsync;
use testcontainers::GenericImage;
use testcontainers::ImageExt;
use testcontainers::core::IntoContainerPort;
use testcontainers::core::WaitFor;
use testcontainers::runners::AsyncRunner;

const AZS: [&str; 3] = ["az-a", "az-b", "az-c"];

/// Three containers on their own network, labelled for `DockerCluster::discover`.
struct DockerNodes {
    name: String,
    _containers: Vec<ContainerAsync<GenericImage>>,
}

async fn start_cluster(test: &str) -> DockerNodes {
    shim::install().await;
    let name = format!("rt-{test}-{}", std::process::id());
    let peers = (1..=3)
        .map(|n| format!("{n}={name}-{n}:4667"))
        .collect::<Vec<_>>()
        .join(",");
    let mut containers = Vec::new();
    for node in 1..=3u64 {
        let host = format!("{name}-{node}");
        // A fixed host port: a restarted container keeps it (a random one would change).
        let port = free_port();
        let container = GenericImage::new("riffle", "dev")
            .with_exposed_port(4567.tcp())
            .with_wait_for(WaitFor::message_on_stderr("starting"))
            .with_mapped_port(port, 4567.tcp())
            .with_network(name.clone())
            .with_container_name(host.clone())
            .with_hostname(host.clone())
            .with_label("riffle.cluster", name.clone())
            .with_label("riffle.node", node.to_string())
            .with_label("riffle.az", AZS[node as usize - 1])
            .with_env_var("RIFFLE_LOG", "info,openraft=warn")
            .with_cmd([
                "server".to_string(),
                format!("--node-id={node}"),
                format!("--az={}", AZS[node as usize - 1]),
                "--listen=0.0.0.0:4567".to_string(),
                "--peer-listen=0.0.0.0:4667".to_string(),
                format!("--advertise-api={host}:4567"),
                format!("--advertise-peer={host}:4667"),
                format!("--peers={peers}"),
                "--data-dir=/data".to_string(),
            ])
            .start()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "starting node {node} from riffle:dev (run scripts/docker-image.sh): {error}"
                )
            });
        containers.push(container);
    }
    DockerNodes {
        name,
        _containers: containers,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

async fn chaos(test: &str, schedule: Schedule, reshard_to: Option<u32>) {
    let during_fault = matches!(schedule, Schedule::Single { .. });
    let nodes = start_cluster(test).await;
    let mut cluster = DockerCluster::discover(&nodes.name)
        .await
        .unwrap()
        .into_cluster();
    for endpoint in cluster.endpoints() {
        wait_healthy(&endpoint, Duration::from_secs(90))
            .await
            .unwrap();
    }
    let scenario = Scenario {
        schedule,
        shards: 4,
        warmup: Duration::from_secs(5),
        settle: Duration::from_secs(5),
        reshard_to,
        live: false,
    };
    let workload = WorkloadConfig {
        stream: format!("chaos-{test}"),
        producers: 4,
        keys_per_producer: 8,
        rate: 600,
        call_timeout: Duration::from_secs(5),
        ..WorkloadConfig::default()
    };
    let report = run(&mut cluster, &scenario, workload).await.unwrap();
    let text = report.text();
    // The report is the test's output (nextest shows it for failures, and with --no-capture).
    std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes()).unwrap();
    assert!(report.ok, "checker verdict FAIL:\n{text}");
    let acknowledged = report.verdicts[0].acknowledged;
    assert!(
        acknowledged > 1000,
        "too little acknowledged ({acknowledged}):\n{text}"
    );
    // Writes came back after the fault: the last seconds of load acknowledged records.
    let tail: u64 = report.seconds.iter().rev().take(3).map(|s| s.acked).sum();
    assert!(tail > 0, "no write acknowledged after healing:\n{text}");
    if during_fault {
        // With one AZ (or one node) out, the other two keep a majority of every shard: writes
        // continue before the fault is healed.
        let at = |prefix: &str| {
            report
                .events
                .iter()
                .find(|e| e.what.starts_with(prefix))
                .map(|e| (e.at_ms / 1000) as usize)
                .unwrap_or_else(|| panic!("no {prefix:?} event:\n{text}"))
        };
        let (from, to) = (at(fault_prefix(&scenario.schedule)) + 1, at("heal"));
        let during: u64 = report.seconds[from..to].iter().map(|s| s.acked).sum();
        assert!(
            during > 0,
            "no write acknowledged while the fault lasted:\n{text}"
        );
    }
}

fn fault_prefix(schedule: &Schedule) -> &'static str {
    match schedule {
        Schedule::Single { fault, .. } => fault.name(),
        _ => "kill",
    }
}

fn single(fault: Fault, target: Target) -> Schedule {
    Schedule::Single {
        fault,
        target,
        down: Duration::from_secs(12),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_kill() {
    chaos("node-kill", single(Fault::Kill, Target::Node(2)), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_kill() {
    chaos(
        "leader-kill",
        single(
            Fault::Kill,
            Target::Leader {
                stream: "chaos-leader-kill".to_string(),
                shard: None,
            },
        ),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn az_kill() {
    chaos(
        "az-kill",
        single(Fault::Kill, Target::Az("az-b".into())),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn az_pause() {
    chaos(
        "az-pause",
        single(Fault::Pause, Target::Az("az-b".into())),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn az_isolate() {
    chaos(
        "az-isolate",
        single(Fault::Isolate, Target::Az("az-c".into())),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reshard_during_a_kill() {
    chaos(
        "reshard-kill",
        single(Fault::Kill, Target::Node(3)),
        Some(8),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_restart() {
    chaos(
        "full-restart",
        Schedule::FullRestart {
            down: Duration::from_secs(3),
        },
        None,
    )
    .await;
}

/// testcontainers 0.28 speaks Docker API 1.53 without negotiating; this machine's engine (and
/// Debian 12's, 20.10) stops at 1.41. The shim listens on a Unix socket, rewrites the version
/// prefix of every request path to the engine's own, and forwards to /var/run/docker.sock;
/// `DOCKER_HOST` points testcontainers at it. (riffle-chaos-docker's bollard client negotiates.)
mod shim {
    use std::sync::OnceLock;

    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use tokio::net::UnixListener;
    use tokio::net::UnixStream;

    use super::*;

    const ENGINE: &str = "/var/run/docker.sock";

    static INSTALLED: OnceLock<()> = OnceLock::new();

    /// Starts the shim on its own thread (it outlives any one test's runtime) and points
    /// `DOCKER_HOST` at it.
    pub async fn install() {
        if INSTALLED.get().is_some() {
            return;
        }
        let path =
            std::env::temp_dir().join(format!("riffle-docker-shim-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (ready, started) = tokio::sync::oneshot::channel();
        let socket = path.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the shim");
            runtime.block_on(serve(socket, ready));
        });
        started.await.expect("the Docker API shim started");
        // Set once, before testcontainers first reads its configuration.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("DOCKER_HOST", format!("unix://{}", path.display()));
        }
        let _ = INSTALLED.set(());
    }

    async fn serve(path: std::path::PathBuf, ready: tokio::sync::oneshot::Sender<()>) {
        let version = Arc::new(engine_version().await);
        let listener = UnixListener::bind(&path).expect("binding the Docker API shim");
        let _ = ready.send(());
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let version = version.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| forward(request, version.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn engine_version() -> String {
        let stream = UnixStream::connect(ENGINE)
            .await
            .expect("the Docker engine's socket");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("talking to the Docker engine");
        tokio::spawn(connection);
        let response = sender
            .send_request(
                http::Request::get("/version")
                    .header("Host", "docker")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .unwrap(),
            )
            .await
            .expect("GET /version");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let version: serde_json::Value = serde_json::from_slice(&body).unwrap();
        version["ApiVersion"].as_str().unwrap_or("1.41").to_string()
    }

    async fn forward(
        request: http::Request<Incoming>,
        version: Arc<String>,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let rewritten = match path
            .strip_prefix("/v")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((_, rest)) => format!("/v{version}/{rest}"),
            None => path,
        };
        parts.uri = rewritten.parse().expect("a path");
        let stream = UnixStream::connect(ENGINE)
            .await
            .expect("the Docker engine's socket");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        sender
            .send_request(http::Request::from_parts(parts, body))
            .await
    }
}
