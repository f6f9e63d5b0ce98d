//! Test support: start real `riffle` processes on loopback and talk to them with the official
//! `aws-sdk-kinesis` client; write histories through them and check what they stored with
//! `riffle-chaos`'s writers and checker (over `riffle-client`).
//!
//! The binary is the one cargo built next to the test executable (`target/<profile>/riffle`);
//! `scripts/test.sh` builds it first. Set `RIFFLE_BIN` to use another one.

use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use anyhow::Context;
use anyhow::bail;
use aws_credential_types::Credentials;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::BehaviorVersion;
use aws_sdk_kinesis::config::Region;

/// Path of the `riffle` binary under test (`RIFFLE_BIN` overrides it).
pub fn riffle_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("RIFFLE_BIN") {
        return Ok(PathBuf::from(path));
    }
    workspace_binary("riffle")
}

/// Path of a binary of this workspace, built next to the test executable.
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable is not inside a cargo target directory")?;
    let binary = profile_dir.join(name);
    if !binary.exists() {
        bail!(
            "{} does not exist: build it first with `cargo build --workspace`",
            binary.display()
        );
    }
    Ok(binary)
}

/// A `riffle` node running as a child process. Killed when dropped.
pub struct RiffleProcess {
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
}

impl RiffleProcess {
    /// Starts a node on `127.0.0.1:0` over `data_dir` and waits until it serves.
    pub fn start(data_dir: &Path) -> anyhow::Result<RiffleProcess> {
        Self::start_with(data_dir, &[])
    }

    /// Like [`RiffleProcess::start`] with extra command-line arguments.
    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<RiffleProcess> {
        std::fs::create_dir_all(data_dir)?;
        let ready_file = data_dir.join("ready");
        let _ = std::fs::remove_file(&ready_file);
        let log_path = data_dir.join("riffle.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(riffle_binary()?)
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir.join("data"))
            .arg("--ready-file")
            .arg(&ready_file)
            .arg("--log")
            .arg("info,openraft=warn")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning riffle")?;
        let mut process = RiffleProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready_file)
                && let Ok(addr) = text.trim().parse()
            {
                process.addr = addr;
                return Ok(process);
            }
            if let Some(child) = process.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "riffle exited with {status} before serving; log:\n{}",
                    process.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "riffle did not become ready within 60 s; log:\n{}",
                    process.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for a clean exit (returns the exit status success).
    pub fn terminate(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RiffleProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failing test's nodes live in a temporary directory that is about to go: show the
        // end of each node's log with the failure (the test runner prints it).
        if std::thread::panicking() {
            const LINES: usize = 60;
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "--- last {LINES} lines of {} ---\n{tail}",
                    self.log_path.display()
                );
            }
        }
    }
}

/// A free loopback port (bound and released: a small race with other processes is possible).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A cluster of `riffle` processes on loopback, one AZ per node. Killed when dropped.
pub struct RiffleCluster {
    pub nodes: Vec<Option<RiffleProcess>>,
    dir: PathBuf,
    peers: String,
    peer_ports: Vec<u16>,
    api_ports: Vec<u16>,
}

impl RiffleCluster {
    /// Starts `size` nodes under `dir` and waits until each serves.
    pub fn start(dir: &Path, size: usize) -> anyhow::Result<RiffleCluster> {
        let peer_ports: Vec<u16> = (0..size)
            .map(|_| free_port())
            .collect::<anyhow::Result<_>>()?;
        let api_ports: Vec<u16> = (0..size)
            .map(|_| free_port())
            .collect::<anyhow::Result<_>>()?;
        let peers = peer_ports
            .iter()
            .enumerate()
            .map(|(index, port)| format!("{}=127.0.0.1:{port}", index + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = RiffleCluster {
            nodes: (0..size).map(|_| None).collect(),
            dir: dir.into(),
            peers,
            peer_ports,
            api_ports,
        };
        // Nodes wait for a metadata quorum before they serve, so start them all, then wait.
        let mut children = Vec::new();
        for id in 1..=size {
            children.push(cluster.spawn(id)?);
        }
        for (index, child) in children.into_iter().enumerate() {
            cluster.nodes[index] = Some(child.wait_ready()?);
        }
        Ok(cluster)
    }

    fn spawn(&self, id: usize) -> anyhow::Result<Starting> {
        let az = format!("az-{}", (b'a' + ((id - 1) % 26) as u8) as char);
        let args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--az".to_string(),
            az,
            "--peer-listen".to_string(),
            format!("127.0.0.1:{}", self.peer_ports[id - 1]),
            "--peers".to_string(),
            self.peers.clone(),
        ];
        Starting::spawn(
            &self.dir.join(format!("node{id}")),
            self.api_ports[id - 1],
            &args,
        )
    }

    /// Node `id` (1-based).
    pub fn node(&self, id: usize) -> &RiffleProcess {
        self.nodes[id - 1].as_ref().expect("node is running")
    }

    pub fn endpoint(&self, id: usize) -> String {
        format!("http://127.0.0.1:{}", self.api_ports[id - 1])
    }

    /// SIGKILL node `id`.
    pub fn kill9(&mut self, id: usize) -> anyhow::Result<()> {
        if let Some(mut node) = self.nodes[id - 1].take() {
            node.kill9()?;
        }
        Ok(())
    }

    /// Starts node `id` again on its data (same ports).
    pub fn restart(&mut self, id: usize) -> anyhow::Result<()> {
        self.nodes[id - 1] = Some(self.spawn(id)?.wait_ready()?);
        Ok(())
    }
}

/// A node process that has been spawned but may not serve yet.
struct Starting {
    process: RiffleProcess,
    ready_file: PathBuf,
}

impl Starting {
    fn spawn(data_dir: &Path, api_port: u16, extra_args: &[String]) -> anyhow::Result<Starting> {
        std::fs::create_dir_all(data_dir)?;
        let ready_file = data_dir.join("ready");
        let _ = std::fs::remove_file(&ready_file);
        let log_path = data_dir.join("riffle.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(riffle_binary()?)
            .arg("server")
            .arg("--listen")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--data-dir")
            .arg(data_dir.join("data"))
            .arg("--ready-file")
            .arg(&ready_file)
            .arg("--log")
            .arg("info,openraft=warn")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning riffle")?;
        let process = RiffleProcess {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], api_port)),
            data_dir: data_dir.into(),
            log_path,
        };
        Ok(Starting {
            process,
            ready_file,
        })
    }

    fn wait_ready(mut self) -> anyhow::Result<RiffleProcess> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if std::fs::read_to_string(&self.ready_file).is_ok_and(|text| !text.trim().is_empty()) {
                return Ok(self.process);
            }
            if let Some(child) = self.process.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "riffle exited with {status} before serving; log:\n{}",
                    self.process.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "riffle did not become ready within 90 s; log:\n{}",
                    self.process.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An `aws-sdk-kinesis` client for `endpoint` with dummy credentials.
pub fn client(endpoint: &str) -> Client {
    let credentials = Credentials::new(
        "AKIDRIFFLETEST",
        "riffle-test-secret",
        None,
        None,
        "riffle-tests",
    );
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .build();
    Client::from_conf(config)
}

/// A unique stream name for a test.
pub fn stream_name(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Waits until the stream is ACTIVE.
pub async fn wait_active(client: &Client, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await?;
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().as_str().to_string());
        if status.as_deref() == Some("ACTIVE") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("stream {name} is still {status:?} after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The error code (`__type`) of a failed SDK call.
pub fn error_code<E, R>(error: &aws_sdk_kinesis::error::SdkError<E, R>) -> Option<String>
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata,
{
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    match error {
        aws_sdk_kinesis::error::SdkError::ServiceError(service) => {
            service.err().code().map(str::to_string)
        }
        _ => error.code().map(str::to_string),
    }
}

/// Creates a stream with `shards` shards, waits until it is ACTIVE and returns its ARN.
pub async fn create_active_stream(
    client: &Client,
    name: &str,
    shards: i32,
) -> anyhow::Result<String> {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await?;
    wait_active(client, name).await?;
    let summary = client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await?
        .stream_description_summary
        .ok_or_else(|| anyhow::anyhow!("no StreamDescriptionSummary"))?;
    Ok(summary.stream_arn)
}

/// Waits (up to 5 s) until a registered consumer is ACTIVE.
pub async fn wait_consumer_active(client: &Client, consumer_arn: &str) -> anyhow::Result<()> {
    use aws_sdk_kinesis::types::ConsumerStatus;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client
            .describe_stream_consumer()
            .consumer_arn(consumer_arn)
            .send()
            .await?
            .consumer_description
            .ok_or_else(|| anyhow::anyhow!("no ConsumerDescription"))?
            .consumer_status;
        if status == ConsumerStatus::Active {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("consumer {consumer_arn} still {status:?} after 5 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers a consumer on a stream and waits until it is ACTIVE; returns its ARN.
pub async fn register_active_consumer(
    client: &Client,
    stream_arn: &str,
    name: &str,
) -> anyhow::Result<String> {
    let consumer = client
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await?
        .consumer
        .ok_or_else(|| anyhow::anyhow!("no Consumer"))?;
    wait_consumer_active(client, &consumer.consumer_arn).await?;
    Ok(consumer.consumer_arn)
}

/// Starts a SubscribeToShard subscription of `consumer_arn` to `shard_id` at `kind`.
pub async fn subscribe(
    client: &Client,
    consumer_arn: &str,
    shard_id: &str,
    kind: aws_sdk_kinesis::types::ShardIteratorType,
) -> Result<
    aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardOutput,
    aws_sdk_kinesis::error::SdkError<
        aws_sdk_kinesis::operation::subscribe_to_shard::SubscribeToShardError,
        aws_sdk_kinesis::config::http::HttpResponse,
    >,
> {
    let position = aws_sdk_kinesis::types::StartingPosition::builder()
        .r#type(kind)
        .build()
        .expect("a starting position with a type");
    client
        .subscribe_to_shard()
        .consumer_arn(consumer_arn)
        .shard_id(shard_id)
        .starting_position(position)
        .send()
        .await
}

/// Writers of checked records (see `riffle_chaos::load`) through `endpoints`, calls spread over
/// them in turn: `writers` partition keys (one per writer), `records_per_call` records each per
/// call, `pause` after every call.
pub fn start_writers(
    endpoints: &[String],
    stream: &str,
    writers: usize,
    records_per_call: usize,
    pause: Duration,
) -> riffle_chaos::load::Load {
    let client = riffle_client::Client::builder(endpoints.to_vec())
        .spread(riffle_client::Spread::RoundRobin)
        .build();
    let config = riffle_chaos::load::LoadConfig {
        stream: stream.to_string(),
        writers,
        keys_per_writer: 1,
        records_per_key: records_per_call,
        rate: 0,
        pause,
        record_bytes: 0,
    };
    riffle_chaos::load::Load::start(client, config, Default::default())
}

/// Every shard of `stream` read back through the node at `endpoint` alone.
pub async fn read_stream(endpoint: &str, stream: &str) -> Vec<riffle_chaos::check::ShardRead> {
    let node = riffle_client::Client::new(vec![endpoint.to_string()]);
    riffle_chaos::read::read_stream(&node, stream, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap_or_else(|error| panic!("reading {stream} back through {endpoint}: {error:#}"))
}

/// Checks a read-back against the writers' history; panics with the checker's findings.
pub fn assert_checked(
    endpoint: &str,
    history: &riffle_chaos::history::History,
    read: &[riffle_chaos::check::ShardRead],
) {
    let verdict = riffle_chaos::check::check(endpoint, history, read);
    assert!(verdict.ok(), "{}", verdict.details(20));
}
