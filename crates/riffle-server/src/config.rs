//! Configuration: defaults, overlaid by a TOML file (`--config`), overlaid by `RIFFLE_*`
//! environment variables, overlaid by command-line flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use riffle_control::scheduler::OnDemandPolicy;
use riffle_control::scheduler::Policy;
use serde::Deserialize;

/// Options of `riffle server`. Every flag can also be set as `RIFFLE_<NAME>` or in the TOML file
/// under the same name with underscores.
#[derive(Args, Clone, Debug, Default)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "RIFFLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the Kinesis API.
    #[arg(long, env = "RIFFLE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding this node's data.
    #[arg(long, env = "RIFFLE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster, never reused).
    #[arg(long, env = "RIFFLE_NODE_ID")]
    pub node_id: Option<u64>,
    /// This node's availability zone.
    #[arg(long, env = "RIFFLE_AZ")]
    pub az: Option<String>,
    /// Address of the node-to-node (gRPC) service. Required in a cluster.
    #[arg(long, env = "RIFFLE_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// The cluster's metadata voters, this node included: `1=host:port,2=host:port,...`
    /// (peer addresses). Every voter gets the same list; absent for a single node.
    #[arg(long, env = "RIFFLE_PEERS")]
    pub peers: Option<String>,
    /// Join an existing cluster through this peer address of any member (instead of --peers):
    /// the node becomes a learner of the metadata group and hosts shard replicas.
    #[arg(long, env = "RIFFLE_JOIN")]
    pub join: Option<String>,
    /// Kinesis API address other nodes and `cluster status` advertise (default: `listen`).
    #[arg(long, env = "RIFFLE_ADVERTISE_API")]
    pub advertise_api: Option<String>,
    /// Peer address other nodes use to reach this one (default: `peer_listen`).
    #[arg(long, env = "RIFFLE_ADVERTISE_PEER")]
    pub advertise_peer: Option<String>,
    /// Seconds a quiet, fully replicated shard group waits before it stops ticking.
    #[arg(long, env = "RIFFLE_HIBERNATE_AFTER_SECS")]
    pub hibernate_after_secs: Option<u64>,
    /// Account id shown in ARNs and error messages (12 digits).
    #[arg(long, env = "RIFFLE_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Region shown in ARNs.
    #[arg(long, env = "RIFFLE_REGION")]
    pub region: Option<String>,
    /// Open-shard limit across all streams.
    #[arg(long, env = "RIFFLE_SHARD_LIMIT")]
    pub shard_limit: Option<u32>,
    /// Replicas per shard (capped by the number of nodes).
    #[arg(long, env = "RIFFLE_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
    /// Journal segment size in MiB.
    #[arg(long, env = "RIFFLE_SEGMENT_MIB")]
    pub segment_mib: Option<u64>,
    /// Seconds between retention trims.
    #[arg(long, env = "RIFFLE_RETENTION_CHECK_SECS")]
    pub retention_check_secs: Option<u64>,
    /// How long a node stays down before its shard replicas are rebuilt on other nodes:
    /// seconds, or with a unit (`90s`, `5m`, `1h`).
    #[arg(long, env = "RIFFLE_REPLICA_REPAIR_GRACE")]
    pub replica_repair_grace: Option<String>,
    /// Replica moves (repair or balance) running at once, cluster-wide.
    #[arg(long, env = "RIFFLE_MAX_REPLICA_MOVES")]
    pub max_replica_moves: Option<usize>,
    /// On-demand streams split a shard writing this many records per second (or more)...
    #[arg(long, env = "RIFFLE_ON_DEMAND_SPLIT_RECORDS_PER_SEC")]
    pub on_demand_split_records_per_sec: Option<u64>,
    /// ...or this many KiB per second (or more).
    #[arg(long, env = "RIFFLE_ON_DEMAND_SPLIT_KIB_PER_SEC")]
    pub on_demand_split_kib_per_sec: Option<u64>,
    /// Seconds after a reshard before an on-demand stream splits again.
    #[arg(long, env = "RIFFLE_ON_DEMAND_SPLIT_COOLDOWN_SECS")]
    pub on_demand_split_cooldown_secs: Option<u64>,
    /// Seconds after a reshard before an on-demand stream merges cold shards.
    #[arg(long, env = "RIFFLE_ON_DEMAND_MERGE_COOLDOWN_SECS")]
    pub on_demand_merge_cooldown_secs: Option<u64>,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `riffle=debug`.
    #[arg(long, env = "RIFFLE_LOG")]
    pub log: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "RIFFLE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Once serving, write the bound API address to this file (for scripts and tests).
    #[arg(long, env = "RIFFLE_READY_FILE")]
    pub ready_file: Option<PathBuf>,
}

/// The TOML file's shape (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    node_id: Option<u64>,
    az: Option<String>,
    peer_listen: Option<SocketAddr>,
    peers: Option<String>,
    join: Option<String>,
    advertise_api: Option<String>,
    advertise_peer: Option<String>,
    hibernate_after_secs: Option<u64>,
    account_id: Option<String>,
    region: Option<String>,
    shard_limit: Option<u32>,
    replication_factor: Option<u32>,
    segment_mib: Option<u64>,
    retention_check_secs: Option<u64>,
    replica_repair_grace: Option<String>,
    max_replica_moves: Option<usize>,
    on_demand_split_records_per_sec: Option<u64>,
    on_demand_split_kib_per_sec: Option<u64>,
    on_demand_split_cooldown_secs: Option<u64>,
    on_demand_merge_cooldown_secs: Option<u64>,
    log: Option<String>,
    log_format: Option<String>,
    ready_file: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub node_id: u64,
    pub az: String,
    pub peer_listen: Option<SocketAddr>,
    /// Metadata voters `(node id, peer address)`; empty for a single node.
    pub peers: Vec<(u64, String)>,
    /// Peer address of a member to join through.
    pub join: Option<String>,
    pub advertise_api: Option<String>,
    pub advertise_peer: Option<String>,
    pub hibernate_after_secs: u64,
    pub account_id: String,
    pub region: String,
    pub shard_limit: u32,
    pub replication_factor: u32,
    pub segment_mib: u64,
    pub retention_check_secs: u64,
    /// What the metadata leader's scheduler does (resharding, leaders, replica repair).
    pub scheduler: Policy,
    pub log: String,
    pub log_format: LogFormat,
    pub ready_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServerArgs {
    /// Resolves flags and environment (already merged by clap) over the file over defaults.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let log_format = match self
            .log_format
            .clone()
            .or(file.log_format)
            .as_deref()
            .unwrap_or("text")
        {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => anyhow::bail!("log_format must be `text` or `json`, not `{other}`"),
        };
        let config = ServerConfig {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 4567))),
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./riffle-data")),
            node_id: self.node_id.or(file.node_id).unwrap_or(1),
            az: self
                .az
                .clone()
                .or(file.az)
                .unwrap_or_else(|| "az-a".to_string()),
            peer_listen: self.peer_listen.or(file.peer_listen),
            peers: parse_peers(self.peers.clone().or(file.peers).as_deref().unwrap_or(""))?,
            join: self.join.clone().or(file.join),
            advertise_api: self.advertise_api.clone().or(file.advertise_api),
            advertise_peer: self.advertise_peer.clone().or(file.advertise_peer),
            hibernate_after_secs: self
                .hibernate_after_secs
                .or(file.hibernate_after_secs)
                .unwrap_or(10),
            account_id: self
                .account_id
                .clone()
                .or(file.account_id)
                .unwrap_or_else(|| "000000000000".to_string()),
            region: self
                .region
                .clone()
                .or(file.region)
                .unwrap_or_else(|| "us-east-1".to_string()),
            shard_limit: self
                .shard_limit
                .or(file.shard_limit)
                .unwrap_or(riffle_types::limits::DEFAULT_SHARD_LIMIT),
            replication_factor: self
                .replication_factor
                .or(file.replication_factor)
                .unwrap_or(3),
            segment_mib: self.segment_mib.or(file.segment_mib).unwrap_or(64),
            retention_check_secs: self
                .retention_check_secs
                .or(file.retention_check_secs)
                .unwrap_or(60),
            scheduler: {
                let defaults = Policy::default();
                let on_demand = OnDemandPolicy::default();
                let grace = match self
                    .replica_repair_grace
                    .clone()
                    .or(file.replica_repair_grace)
                {
                    Some(text) => parse_duration_secs(&text)?.saturating_mul(1000),
                    None => defaults.repair_grace_ms,
                };
                Policy {
                    repair_grace_ms: grace,
                    max_moves_in_flight: self
                        .max_replica_moves
                        .or(file.max_replica_moves)
                        .unwrap_or(defaults.max_moves_in_flight),
                    on_demand: OnDemandPolicy {
                        split_records_per_sec: self
                            .on_demand_split_records_per_sec
                            .or(file.on_demand_split_records_per_sec)
                            .map_or(on_demand.split_records_per_sec, |rate| rate as f64),
                        split_bytes_per_sec: self
                            .on_demand_split_kib_per_sec
                            .or(file.on_demand_split_kib_per_sec)
                            .map_or(on_demand.split_bytes_per_sec, |kib| kib as f64 * 1024.0),
                        split_cooldown_ms: self
                            .on_demand_split_cooldown_secs
                            .or(file.on_demand_split_cooldown_secs)
                            .map_or(on_demand.split_cooldown_ms, |secs| secs * 1000),
                        merge_cooldown_ms: self
                            .on_demand_merge_cooldown_secs
                            .or(file.on_demand_merge_cooldown_secs)
                            .map_or(on_demand.merge_cooldown_ms, |secs| secs * 1000),
                        ..on_demand
                    },
                    ..defaults
                }
            },
            log: self
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info,openraft=warn".to_string()),
            log_format,
            ready_file: self.ready_file.clone().or(file.ready_file),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Parses `300`, `90s`, `5m` or `1h` into seconds.
fn parse_duration_secs(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration like 90s, 5m or 1h"))?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        other => anyhow::bail!("unknown duration unit `{other}` in `{text}` (use s, m or h)"),
    };
    Ok(value.saturating_mul(scale))
}

/// Parses `1=host:port,2=host:port`.
fn parse_peers(text: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut peers = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (id, address) = item
            .split_once('=')
            .with_context(|| format!("peer `{item}` is not `id=host:port`"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("peer id `{id}` is not a number"))?;
        anyhow::ensure!(id > 0, "peer ids are positive");
        anyhow::ensure!(
            address.contains(':'),
            "peer address `{address}` needs a port"
        );
        anyhow::ensure!(
            peers.iter().all(|(known, _)| *known != id),
            "peer id {id} appears twice"
        );
        peers.push((id, address.trim().to_string()));
    }
    Ok(peers)
}

impl ServerConfig {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.node_id > 0, "node_id must be a positive integer");
        if !self.peers.is_empty() {
            anyhow::ensure!(
                self.peers.iter().any(|(id, _)| *id == self.node_id),
                "--peers must list this node ({}) too",
                self.node_id
            );
            anyhow::ensure!(
                self.peer_listen.is_some(),
                "a node with --peers needs --peer-listen"
            );
        }
        anyhow::ensure!(
            self.account_id.len() == 12 && self.account_id.bytes().all(|b| b.is_ascii_digit()),
            "account_id must be 12 digits"
        );
        anyhow::ensure!(
            !self.region.is_empty() && !self.region.contains(':'),
            "region must be a plain name"
        );
        anyhow::ensure!(
            self.replication_factor >= 1,
            "replication_factor must be at least 1"
        );
        anyhow::ensure!(self.segment_mib >= 1, "segment_mib must be at least 1");
        anyhow::ensure!(
            self.retention_check_secs >= 1,
            "retention_check_secs must be at least 1"
        );
        let on_demand = &self.scheduler.on_demand;
        anyhow::ensure!(
            on_demand.split_records_per_sec >= 1.0 && on_demand.split_bytes_per_sec >= 1024.0,
            "on-demand split thresholds must be at least 1 record/s and 1 KiB/s"
        );
        anyhow::ensure!(
            self.scheduler.max_moves_in_flight >= 1,
            "max_replica_moves must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_readme() {
        let config = ServerArgs::default().resolve().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4567");
        assert_eq!(config.data_dir, PathBuf::from("./riffle-data"));
        assert_eq!(config.account_id, "000000000000");
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn repair_grace_takes_units() {
        assert_eq!(parse_duration_secs("300").unwrap(), 300);
        assert_eq!(parse_duration_secs("90s").unwrap(), 90);
        assert_eq!(parse_duration_secs("5m").unwrap(), 300);
        assert_eq!(parse_duration_secs("1h").unwrap(), 3600);
        assert!(parse_duration_secs("5 minutes").is_err());
        assert!(parse_duration_secs("m").is_err());
        let config = ServerArgs {
            replica_repair_grace: Some("20s".into()),
            on_demand_split_records_per_sec: Some(50),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(config.scheduler.repair_grace_ms, 20_000);
        assert_eq!(config.scheduler.on_demand.split_records_per_sec, 50.0);
        assert_eq!(
            ServerArgs::default().resolve().unwrap().scheduler,
            Policy::default()
        );
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("riffle.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nregion = \"eu-west-1\"\nshard_limit = 7\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            shard_limit: Some(9),
            ..ServerArgs::default()
        };
        let config = args.resolve().unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.shard_limit, 9, "a flag beats the file");
    }

    #[test]
    fn peers_parse() {
        assert_eq!(
            parse_peers("1=127.0.0.1:4667, 2=10.0.0.2:4667").unwrap(),
            vec![
                (1, "127.0.0.1:4667".to_string()),
                (2, "10.0.0.2:4667".to_string())
            ]
        );
        assert!(parse_peers("").unwrap().is_empty());
        assert!(parse_peers("x=1:2").is_err());
        assert!(parse_peers("1=nohost").is_err());
        assert!(parse_peers("1=a:1,1=b:2").is_err());
        let args = ServerArgs {
            peers: Some("2=127.0.0.1:1".into()),
            ..ServerArgs::default()
        };
        assert!(
            args.resolve().is_err(),
            "the peer list must include this node"
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("riffle.toml");
        std::fs::write(&path, "no_such_option = 1\n").unwrap();
        assert!(
            ServerArgs {
                config: Some(path),
                ..ServerArgs::default()
            }
            .resolve()
            .is_err()
        );
        assert!(
            ServerArgs {
                account_id: Some("12".into()),
                ..ServerArgs::default()
            }
            .resolve()
            .is_err()
        );
        assert!(
            ServerArgs {
                node_id: Some(0),
                ..ServerArgs::default()
            }
            .resolve()
            .is_err()
        );
    }
}

#[cfg(test)]
mod example_file {
    use super::*;

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/riffle.example.toml");
        let from_file = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        let defaults = ServerArgs::default().resolve().unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }
}
