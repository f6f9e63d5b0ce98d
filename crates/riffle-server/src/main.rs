//! `riffle`: runs a Riffle node (`riffle` alone is `riffle server`), inspects a cluster
//! (`riffle cluster status`), drains nodes (`riffle node drain|undrain N`), checks one node's
//! health (`riffle health`) and runs chaos scenarios (`riffle chaos run`).

mod chaos;
mod config;
mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clap::Subcommand;
use riffle_api::Api;
use riffle_node::Node;
use riffle_node::NodeConfig;
use riffle_node::beacon::Beacon;
use riffle_node::peer::PeerClient;
use riffle_node::transport::grpc::GrpcPeers;
use riffle_storage::DiskOptions;
use riffle_storage::DiskStorage;
use riffle_storage::Storage;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::config::ServerArgs;
use crate::config::ServerConfig;

#[derive(Parser, Debug)]
#[command(
    name = "riffle",
    version,
    about = "A self-hosted, replicated Kinesis Data Streams service"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (the default).
    Server(Box<ServerArgs>),
    /// Inspect a running cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Operate on one node of a running cluster.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Fault injection with a checked workload (local processes here; Docker containers
    /// through the riffle-chaos binary).
    Chaos {
        #[command(subcommand)]
        command: ChaosCommand,
    },
    /// Exit 0 if the node answers `GET /_riffle/status` with 200 within 2 s, else 1
    /// (for container health checks).
    Health {
        /// Kinesis API endpoint of the node.
        #[arg(long, default_value = "http://127.0.0.1:4567")]
        endpoint: String,
    },
}

#[derive(Subcommand, Debug)]
enum ChaosCommand {
    /// Write through every node while faults hit the cluster, then read everything back
    /// through every node and check it; exits 1 on any lost, phantom, moved, duplicated or
    /// reordered record.
    Run(Box<riffle_chaos::cli::RunArgs>),
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Move every shard leader off the node and place nothing new on it.
    Drain {
        /// The node's id.
        node: u64,
        /// Kinesis API endpoint of any node.
        #[arg(long, default_value = "http://127.0.0.1:4567")]
        endpoint: String,
    },
    /// Undo `drain`: the node takes leaders and new replicas again.
    Undrain {
        node: u64,
        #[arg(long, default_value = "http://127.0.0.1:4567")]
        endpoint: String,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Nodes by AZ (alive, metadata leader) and every shard's replicas and leader.
    Status {
        /// Kinesis API endpoint of any node.
        #[arg(long, default_value = "http://127.0.0.1:4567")]
        endpoint: String,
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// The transport's name for the member a joining node contacts (its real id is not known yet).
const JOIN_VIA: u64 = u64::MAX;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Server(args)) => *args,
        Some(Command::Cluster {
            command: ClusterCommand::Status { endpoint, json },
        }) => {
            return status::print(&endpoint, json);
        }
        Some(Command::Chaos {
            command: ChaosCommand::Run(args),
        }) => {
            init_cli_logging();
            return chaos::run(*args);
        }
        Some(Command::Health { endpoint }) => {
            std::process::exit(if status::health(&endpoint) { 0 } else { 1 });
        }
        Some(Command::Node { command }) => {
            return match command {
                NodeCommand::Drain { node, endpoint } => status::drain(&endpoint, node, true),
                NodeCommand::Undrain { node, endpoint } => status::drain(&endpoint, node, false),
            };
        }
        None => cli.server,
    };
    let config = args.resolve()?;
    init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("riffle")
        .build()?;
    runtime.block_on(run(config))
}

/// Logs of client commands go to stderr, filtered by RIFFLE_LOG (default: warnings).
fn init_cli_logging() {
    let filter = std::env::var("RIFFLE_LOG").unwrap_or_else(|_| "warn".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .try_init();
}

fn init_logging(config: &ServerConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter `{}`", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

async fn run(config: ServerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the Kinesis API to {}", config.listen))?;
    let api_addr = listener.local_addr()?;
    let peer_listener = match config.peer_listen {
        Some(address) => Some(
            riffle_node::transport::grpc::bind(address)
                .await
                .with_context(|| format!("binding the peer service to {address}"))?,
        ),
        None => None,
    };
    let peer_addr = match (&config.advertise_peer, &peer_listener) {
        (Some(advertised), _) => advertised.clone(),
        (None, Some(listener)) => listener.local_addr()?.to_string(),
        (None, None) => String::new(),
    };

    let mut disk = DiskOptions::new(config.data_dir.clone());
    disk.segment_bytes = config.segment_mib * 1024 * 1024;
    let storage: Arc<dyn Storage> = Arc::new(
        DiskStorage::open(disk)
            .with_context(|| format!("opening storage in {}", config.data_dir.display()))?,
    );
    let node_config = NodeConfig {
        node_id: config.node_id,
        az: config.az.clone(),
        api_addr: config
            .advertise_api
            .clone()
            .unwrap_or_else(|| api_addr.to_string()),
        peer_addr: peer_addr.clone(),
        peers: config.peers.clone(),
        join_via: config.join.as_ref().map(|_| JOIN_VIA),
        account: config.account_id.clone(),
        region: config.region.clone(),
        shard_limit: config.shard_limit,
        replication_factor: config.replication_factor,
        retention_interval: Duration::from_secs(config.retention_check_secs),
        hibernate_after: Duration::from_secs(config.hibernate_after_secs),
        node_down_after: Duration::from_millis(1500),
        scheduler: config.scheduler.clone(),
    };
    let mut known = config.peers.clone();
    if let Some(address) = &config.join {
        known.push((JOIN_VIA, address.clone()));
    }
    let peers: Option<Arc<dyn PeerClient>> = peer_listener
        .as_ref()
        .map(|_| GrpcPeers::new(&known) as Arc<dyn PeerClient>);
    let node = Node::new(node_config, storage.clone(), peers);
    // Liveness pings answered on threads of their own (riffle_node::beacon), on the peer port
    // number over UDP. Without it liveness falls back to the peer-protocol pings alone.
    if let Some(listener) = &peer_listener {
        let address = listener.local_addr()?;
        match Beacon::start(config.node_id, address) {
            Ok(beacon) => node.attach_beacon(beacon),
            Err(error) => {
                tracing::warn!(%error, %address, "no liveness beacon (UDP); pings use the peer protocol only")
            }
        }
    }

    // The peer service runs before the node starts: other nodes must reach this one while the
    // metadata group elects its leader.
    let (stop_peers, peers_stopped) = tokio::sync::watch::channel(false);
    let peer_server = peer_listener.map(|listener| {
        let node = node.clone();
        let mut stopped = peers_stopped.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(error) = riffle_node::transport::grpc::serve(listener, node, shutdown).await
            {
                tracing::error!(%error, "peer service failed");
            }
        })
    });
    tracing::info!(node_id = config.node_id, az = %config.az, peer = %peer_addr, "starting");
    tokio::select! {
        started = node.start() => started.context("starting the node")?,
        () = shutdown_signal() => {
            tracing::info!("stopped before the cluster formed");
            return Ok(());
        }
    }
    let api = Arc::new(Api::new(node.clone()));

    tracing::info!(listen = %api_addr, data_dir = %config.data_dir.display(), node_id = config.node_id, "riffle is serving");
    if let Some(path) = &config.ready_file {
        std::fs::write(path, api_addr.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    riffle_api::http::serve(listener, api, shutdown_signal())
        .await
        .context("serving the Kinesis API")?;

    tracing::info!("shutting down");
    node.shutdown().await;
    stop_peers.send_replace(true);
    if let Some(server) = peer_server {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    storage.flush(Box::new(move |result| {
        let _ = done_tx.send(result);
    }));
    match done_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => tracing::info!("stopped cleanly"),
        Ok(Err(error)) => tracing::error!(%error, "final flush failed"),
        Err(_) => tracing::error!("final flush did not finish in time"),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
