//! `riffle chaos run`: local clusters (`--local DIR`, signals) run here; Docker clusters run in
//! the `riffle-chaos` binary (the one that links a Docker client, which this binary must not),
//! which this command replaces itself with, passing its arguments on.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use anyhow::bail;
use riffle_chaos::cli::RunArgs;

/// The binary that runs chaos against Docker clusters.
const DOCKER_BINARY: &str = "riffle-chaos";

/// Runs the scenario; exits 1 when the checker finds a violation.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.docker_cluster().is_some() {
        return run_docker();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = runtime.block_on(async {
        let cluster = args
            .local_cluster()?
            .context("a local run needs --local DIR")?;
        riffle_chaos::cli::run(args, cluster).await
    })?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs `riffle-chaos run …` with this command's own arguments (those after `chaos`).
fn run_docker() -> anyhow::Result<()> {
    let binary = docker_binary()?;
    let arguments: Vec<OsString> = std::env::args_os()
        .skip_while(|argument| argument != "chaos")
        .skip(1)
        .collect();
    let mut command = std::process::Command::new(&binary);
    command.args(&arguments);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Only returns if the binary could not be started.
        let error = command.exec();
        Err(error).with_context(|| format!("running {}", binary.display()))
    }
    #[cfg(not(unix))]
    {
        let status = command
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

/// `riffle-chaos` next to this binary (as cargo builds them), else on the PATH.
fn docker_binary() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(DOCKER_BINARY)));
    if let Some(path) = beside.filter(|path| path.is_file()) {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(DOCKER_BINARY))
            .find(|path| path.is_file())
    });
    match on_path {
        Some(path) => Ok(path),
        None => bail!(
            "chaos against Docker clusters runs in the {DOCKER_BINARY} binary, which is not next \
             to this one nor on the PATH: build it with `cargo build --release -p \
             riffle-chaos-docker` (or `cargo build -p riffle-chaos-docker` for target/debug), or \
             run against a local cluster with --local DIR"
        ),
    }
}
