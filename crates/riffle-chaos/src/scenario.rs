//! A chaos run: create a stream, start the workload, apply the fault schedule, heal, stop the
//! load, read everything back through every node and check it.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use rand::seq::IndexedRandom;
use riffle_client::Client;
use riffle_client::Error;
use riffle_client::Spread;
use riffle_client::ops::streams::UpdateShardCount;

use crate::check::check;
use crate::faults::Cluster;
use crate::faults::Fault;
use crate::faults::NodeInfo;
use crate::faults::Target;
use crate::faults::wait_healthy;
use crate::faults::wait_serving;
use crate::read::read_stream;
use crate::report::Report;
use crate::report::line;
use crate::timeline::Timeline;
use crate::workload::Workload;
use crate::workload::WorkloadConfig;
use crate::workload::cluster_client;
use crate::workload::create_stream;
use crate::workload::jitter;

/// When faults happen.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// One fault on one target, healed after `down`.
    Single {
        fault: Fault,
        target: Target,
        down: Duration,
    },
    /// A random fault on a random target every `every` (± half of it) for `total`.
    Repeat {
        faults: Vec<Fault>,
        targets: Vec<Target>,
        every: Duration,
        down: Duration,
        total: Duration,
    },
    /// Each node in turn stopped gracefully and started again, waiting for a healthy cluster
    /// in between.
    Rolling { down: Duration },
    /// Every node killed, then all started again.
    FullRestart { down: Duration },
    /// Load only.
    None { total: Duration },
}

impl Schedule {
    pub fn name(&self) -> String {
        match self {
            Schedule::Single { fault, target, .. } => format!("{} {target}", fault.name()),
            Schedule::Repeat { .. } => "repeated random faults".to_string(),
            Schedule::Rolling { .. } => "rolling restart".to_string(),
            Schedule::FullRestart { .. } => "full-cluster restart".to_string(),
            Schedule::None { .. } => "no fault".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub schedule: Schedule,
    pub shards: u32,
    /// Load before the first fault.
    pub warmup: Duration,
    /// Load after the last heal.
    pub settle: Duration,
    /// `UpdateShardCount` to this many shards when the first fault is injected.
    pub reshard_to: Option<u32>,
    /// Print the timeline as it happens.
    pub live: bool,
}

/// Runs `scenario` against `cluster` and returns its report. Every fault it injects is healed
/// before it returns, also when something fails midway.
pub async fn run(
    cluster: &mut Cluster,
    scenario: &Scenario,
    mut workload: WorkloadConfig,
) -> anyhow::Result<Report> {
    workload.endpoints = cluster.endpoints();
    let kinesis = cluster_client(&workload.endpoints, Duration::from_secs(10));
    create_stream(&kinesis, &workload.stream, scenario.shards).await?;
    let timeline = Arc::new(Mutex::new(Timeline::new()));
    let live = scenario
        .live
        .then(|| tokio::spawn(print_live(timeline.clone())));
    let mut load = Workload::start(workload.clone(), timeline.clone());
    timeline.lock().expect("timeline").event(format!(
        "load: {} producers × {} keys → {} records/s target, {} shards",
        workload.producers, workload.keys_per_producer, workload.rate, scenario.shards
    ));
    tokio::time::sleep(scenario.warmup).await;

    let mut faulted: Vec<(Fault, NodeInfo)> = Vec::new();
    let outcome = apply(
        cluster,
        scenario,
        &workload,
        &kinesis,
        &timeline,
        &mut faulted,
    )
    .await;
    // Whatever happened, leave nothing broken behind.
    for (fault, node) in faulted.drain(..).rev() {
        if let Err(error) = cluster.heal(fault, &node).await {
            tracing::warn!(node = node.id, %error, "healing after a failed schedule");
        }
    }
    outcome?;
    tokio::time::sleep(scenario.settle).await;
    // The producers are stopped: the history is final.
    let history = load.stop().await;
    timeline.lock().expect("timeline").fill_to_now();
    event(
        &timeline,
        "load stopped; reading everything back through every node",
    );
    if let Some(live) = live {
        live.abort();
    }

    for endpoint in &workload.endpoints {
        wait_healthy(endpoint, Duration::from_secs(120)).await?;
    }
    let mut verdicts = Vec::new();
    for endpoint in &workload.endpoints {
        // Through this node only: each must serve everything.
        let node = kinesis.with_endpoints(vec![endpoint.clone()], Spread::Sticky);
        let read = read_stream(
            &node,
            &workload.stream,
            Instant::now() + Duration::from_secs(120),
        )
        .await?;
        verdicts.push(check(endpoint, &history, &read));
    }
    let timeline = timeline.lock().expect("timeline");
    Ok(Report::new(
        &scenario.schedule.name(),
        &workload.stream,
        &timeline,
        verdicts,
    ))
}

fn event(timeline: &Arc<Mutex<Timeline>>, what: impl Into<String>) {
    let what = what.into();
    let mut timeline = timeline.lock().expect("timeline");
    tracing::info!(at_ms = timeline.elapsed_ms(), "{what}");
    timeline.event(what);
}

fn names(nodes: &[NodeInfo]) -> String {
    nodes
        .iter()
        .map(|n| format!("node {} ({})", n.id, n.az))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn apply(
    cluster: &mut Cluster,
    scenario: &Scenario,
    workload: &WorkloadConfig,
    kinesis: &Client,
    timeline: &Arc<Mutex<Timeline>>,
    faulted: &mut Vec<(Fault, NodeInfo)>,
) -> anyhow::Result<()> {
    let reshard = |to: u32| {
        let kinesis = kinesis.clone();
        let stream = workload.stream.clone();
        let timeline = timeline.clone();
        tokio::spawn(async move { update_shard_count(&kinesis, &stream, to, &timeline).await })
    };
    let mut resharding = None;
    match &scenario.schedule {
        Schedule::None { total } => {
            if let Some(to) = scenario.reshard_to {
                resharding = Some(reshard(to));
            }
            tokio::time::sleep(*total).await;
        }
        Schedule::Single {
            fault,
            target,
            down,
        } => {
            let nodes = cluster.resolve(target).await?;
            inject(cluster, *fault, &nodes, timeline, faulted).await?;
            if let Some(to) = scenario.reshard_to {
                resharding = Some(reshard(to));
            }
            tokio::time::sleep(*down).await;
            heal(cluster, faulted, timeline).await?;
        }
        Schedule::Repeat {
            faults,
            targets,
            every,
            down,
            total,
        } => {
            let end = Instant::now() + *total;
            let mut first = true;
            while Instant::now() + *down < end {
                let fault = *faults.choose(&mut rand::rng()).unwrap_or(&Fault::Kill);
                let target = targets
                    .choose(&mut rand::rng())
                    .cloned()
                    .unwrap_or(Target::RandomNode);
                let nodes = cluster.resolve(&target).await?;
                inject(cluster, fault, &nodes, timeline, faulted).await?;
                if first && let Some(to) = scenario.reshard_to {
                    resharding = Some(reshard(to));
                }
                first = false;
                tokio::time::sleep(*down).await;
                heal(cluster, faulted, timeline).await?;
                tokio::time::sleep(*every / 2 + jitter(*every)).await;
            }
        }
        Schedule::Rolling { down } => {
            let nodes = cluster.nodes().to_vec();
            for node in nodes {
                inject(
                    cluster,
                    Fault::Stop,
                    std::slice::from_ref(&node),
                    timeline,
                    faulted,
                )
                .await?;
                tokio::time::sleep(*down).await;
                heal(cluster, faulted, timeline).await?;
                for endpoint in cluster.endpoints() {
                    wait_healthy(&endpoint, Duration::from_secs(120)).await?;
                }
                event(timeline, "cluster healthy");
            }
        }
        Schedule::FullRestart { down } => {
            let nodes = cluster.nodes().to_vec();
            inject(cluster, Fault::Kill, &nodes, timeline, faulted).await?;
            tokio::time::sleep(*down).await;
            heal(cluster, faulted, timeline).await?;
        }
    }
    if let Some(resharding) = resharding {
        resharding.await??;
    }
    Ok(())
}

async fn inject(
    cluster: &mut Cluster,
    fault: Fault,
    nodes: &[NodeInfo],
    timeline: &Arc<Mutex<Timeline>>,
    faulted: &mut Vec<(Fault, NodeInfo)>,
) -> anyhow::Result<()> {
    event(timeline, format!("{} {}", fault.name(), names(nodes)));
    for node in nodes {
        cluster.inject(fault, node).await?;
        faulted.push((fault, node.clone()));
    }
    Ok(())
}

async fn heal(
    cluster: &mut Cluster,
    faulted: &mut Vec<(Fault, NodeInfo)>,
    timeline: &Arc<Mutex<Timeline>>,
) -> anyhow::Result<()> {
    let nodes: Vec<NodeInfo> = faulted.iter().map(|(_, n)| n.clone()).collect();
    event(timeline, format!("heal {}", names(&nodes)));
    while let Some((fault, node)) = faulted.pop() {
        if let Err(error) = cluster.heal(fault, &node).await {
            faulted.push((fault, node));
            return Err(error);
        }
    }
    for node in &nodes {
        wait_serving(node, Duration::from_secs(90)).await?;
    }
    event(timeline, format!("{} serving again", names(&nodes)));
    Ok(())
}

async fn update_shard_count(
    kinesis: &Client,
    stream: &str,
    to: u32,
    timeline: &Arc<Mutex<Timeline>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    event(timeline, format!("UpdateShardCount to {to}"));
    let input = UpdateShardCount::uniform(stream, to);
    loop {
        match kinesis.call(&input).await {
            Ok(_) => break,
            Err(Error::Rejected(error))
                if error.code != "ResourceInUseException"
                    && error.code != "LimitExceededException" =>
            {
                anyhow::bail!("UpdateShardCount: {}: {}", error.code, error.message)
            }
            Err(error) if Instant::now() > deadline => anyhow::bail!("UpdateShardCount: {error}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    crate::workload::wait_active(kinesis, stream, Instant::now() + Duration::from_secs(120))
        .await?;
    event(timeline, format!("stream ACTIVE with {to} shards"));
    Ok(())
}

/// Prints each finished second (and each event) as the run goes.
async fn print_live(timeline: Arc<Mutex<Timeline>>) {
    let mut printed_seconds = 0;
    let mut printed_events = 0;
    let mut peak = 1;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut timeline = timeline.lock().expect("timeline");
        timeline.fill_to_now();
        let done = (timeline.elapsed_ms() / 1000) as usize;
        let mut out = String::new();
        for event in &timeline.events[printed_events..] {
            out.push_str(&format!(
                "  >> {:>6.1}s  {}\n",
                event.at_ms as f64 / 1000.0,
                event.what
            ));
        }
        printed_events = timeline.events.len();
        while printed_seconds < done.min(timeline.seconds.len()) {
            let second = &timeline.seconds[printed_seconds];
            peak = peak.max(second.acked);
            out.push_str(&format!("{}\n", line(printed_seconds, second, peak)));
            printed_seconds += 1;
        }
        drop(timeline);
        if !out.is_empty() {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(out.as_bytes());
            let _ = stdout.flush();
        }
    }
}
