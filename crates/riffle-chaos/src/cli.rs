//! `chaos run`'s command line, shared by `riffle chaos run` (local clusters) and the
//! `riffle-chaos` binary (Docker clusters too): parsing, the run, the report.

use std::path::PathBuf;
use std::time::Duration;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;
use clap::ValueEnum;

use crate::faults::Cluster;
use crate::faults::Fault;
use crate::faults::Target;
use crate::local::LocalCluster;
use crate::scenario::Scenario;
use crate::scenario::Schedule;
use crate::workload::WorkloadConfig;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleKind {
    /// One fault on one target, healed after --down.
    Single,
    /// A random --fault on a random --target every --every seconds for --duration.
    Repeat,
    /// Each node stopped and started in turn.
    Rolling,
    /// Every node killed, then all started.
    FullRestart,
    /// Load (and --reshard-to) only.
    None,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The Docker cluster: containers labelled riffle.cluster=NAME (scripts/cluster.sh: compose).
    #[arg(long, value_name = "NAME", conflicts_with = "local")]
    pub docker: Option<String>,
    /// The scripts/local-cluster.sh cluster in DIR (signals instead of the Docker API).
    #[arg(long, value_name = "DIR")]
    pub local: Option<PathBuf>,
    /// How a killed or stopped local node is started again (node id appended).
    #[arg(long, default_value = "scripts/local-cluster.sh start")]
    start_command: String,
    #[arg(long, value_enum, default_value = "single")]
    schedule: ScheduleKind,
    /// kill, stop, pause or isolate (repeat the flag for --schedule repeat).
    #[arg(long = "fault", default_value = "kill")]
    faults: Vec<String>,
    /// node:N, az:NAME, leader (the busiest leader of the run's stream), leader:STREAM[/SHARD],
    /// random, random-az (repeat the flag for --schedule repeat).
    #[arg(long = "target", default_value = "random")]
    targets: Vec<String>,
    /// Seconds of load before the first fault.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Seconds a fault lasts.
    #[arg(long, default_value_t = 15)]
    down: u64,
    /// Seconds of load after the last heal.
    #[arg(long, default_value_t = 10)]
    settle: u64,
    /// Seconds between faults (--schedule repeat).
    #[arg(long, default_value_t = 20)]
    every: u64,
    /// Seconds of faults (--schedule repeat, none).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    #[arg(long, default_value_t = 4)]
    shards: u32,
    /// UpdateShardCount to this many shards as the first fault hits.
    #[arg(long)]
    reshard_to: Option<u32>,
    /// Stream name (default chaos-<unix seconds>).
    #[arg(long)]
    stream: Option<String>,
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Partition keys per producer (one record in flight per key).
    #[arg(long, default_value_t = 16)]
    keys: usize,
    /// Target records/s over all producers (0: closed loop).
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    #[arg(long, default_value_t = 256)]
    record_bytes: usize,
    /// Per-call timeout in seconds; a call that times out is ambiguous.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
    /// Print the timeline second by second as it happens.
    #[arg(long)]
    live: bool,
    /// Write report.txt, report.json and report.svg here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the JSON report instead of the text one.
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    /// The Docker cluster the run is against (`compose` unless named), or `None` for a local
    /// one.
    pub fn docker_cluster(&self) -> Option<&str> {
        match &self.local {
            Some(_) => None,
            None => Some(self.docker.as_deref().unwrap_or("compose")),
        }
    }

    /// The local cluster of `--local DIR`.
    pub fn local_cluster(&self) -> anyhow::Result<Option<Cluster>> {
        let Some(dir) = &self.local else {
            return Ok(None);
        };
        let start_command = self
            .start_command
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Ok(Some(
            LocalCluster::discover(dir.clone(), start_command)?.into_cluster(),
        ))
    }
}

/// Runs the scenario against `cluster` and prints (and, with `--out`, writes) the report;
/// returns whether the checker found nothing wrong.
pub async fn run(args: RunArgs, mut cluster: Cluster) -> anyhow::Result<bool> {
    let stream = args.stream.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("chaos-{secs}")
    });
    let faults = args
        .faults
        .iter()
        .map(|f| Fault::parse(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let targets = args
        .targets
        .iter()
        .map(|t| {
            if t == "leader" {
                Ok(Target::Leader {
                    stream: stream.clone(),
                    shard: None,
                })
            } else {
                Target::parse(t)
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secs = Duration::from_secs;
    let schedule = match args.schedule {
        ScheduleKind::Single => Schedule::Single {
            fault: faults[0],
            target: targets[0].clone(),
            down: secs(args.down),
        },
        ScheduleKind::Repeat => Schedule::Repeat {
            faults,
            targets,
            every: secs(args.every),
            down: secs(args.down),
            total: secs(args.duration),
        },
        ScheduleKind::Rolling => Schedule::Rolling {
            down: secs(args.down),
        },
        ScheduleKind::FullRestart => Schedule::FullRestart {
            down: secs(args.down),
        },
        ScheduleKind::None => Schedule::None {
            total: secs(args.duration),
        },
    };
    let scenario = Scenario {
        schedule,
        shards: args.shards,
        warmup: secs(args.warmup),
        settle: secs(args.settle),
        reshard_to: args.reshard_to,
        live: args.live,
    };
    let workload = WorkloadConfig {
        stream,
        endpoints: Vec::new(),
        producers: args.producers,
        keys_per_producer: args.keys,
        rate: args.rate,
        record_bytes: args.record_bytes,
        call_timeout: secs(args.timeout),
    };
    let report = crate::scenario::run(&mut cluster, &scenario, workload).await?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.txt"), report.text())?;
        std::fs::write(dir.join("report.json"), report.json())?;
        std::fs::write(dir.join("report.svg"), report.svg())?;
    }
    let text = if args.json {
        report.json()
    } else {
        report.text()
    };
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(report.ok)
}
