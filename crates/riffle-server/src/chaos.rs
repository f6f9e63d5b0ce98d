//! `riffle chaos run`: a checked workload against a Docker or local cluster while faults hit it.

use riffle_chaos::cli::RunArgs;
use riffle_chaos::docker::DockerCluster;

/// Runs the scenario; exits 1 when the checker finds a violation.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
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
        riffle_chaos::cli::run(args, cluster).await
    })?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
