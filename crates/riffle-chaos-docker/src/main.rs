//! `riffle-chaos run`: the same command as `riffle chaos run`, with Docker clusters
//! (`--docker NAME`, the default `compose`) as well as local ones (`--local DIR`).
//! `riffle chaos run --docker …` runs this binary.

use clap::Parser;
use clap::Subcommand;
use riffle_chaos::cli::RunArgs;
use riffle_chaos_docker::DockerCluster;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "riffle-chaos",
    version,
    about = "Fault injection with a checked workload (Docker containers or local processes)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write through every node while faults hit the cluster, then read everything back
    /// through every node and check it; exits 1 on any violation.
    Run(Box<RunArgs>),
}

fn main() -> anyhow::Result<()> {
    let Command::Run(args) = Cli::parse().command;
    // Logs go to stderr, filtered by RIFFLE_LOG (default: warnings); stdout is the report.
    let filter = std::env::var("RIFFLE_LOG").unwrap_or_else(|_| "warn".to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = runtime.block_on(async {
        let cluster = match (args.local_cluster()?, args.docker_cluster()) {
            (Some(local), _) => local,
            (None, name) => DockerCluster::discover(name.unwrap_or("compose"))
                .await?
                .into_cluster(),
        };
        riffle_chaos::cli::run(*args, cluster).await
    })?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
