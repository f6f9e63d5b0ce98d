//! An example worker: processes a stream with `riffle-consumer` and prints one line per record
//! (`SHARD SEQUENCE_NUMBER DATA`, data as UTF-8), plus `END SHARD` when a shard is finished.
//! Start several with the same `--application` and different `--worker` to share the shards;
//! kill one and the others take its shards over after `--lease-seconds`.
//!
//!   riffle-consumer-example --endpoint http://127.0.0.1:4567 --stream orders \
//!       --application billing --worker w1 [--fan-out CONSUMER_NAME] [--latest] [--out FILE]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use clap::Parser;
use riffle_consumer::Client;
use riffle_consumer::ReadMode;
use riffle_consumer::Record;
use riffle_consumer::ShardProcessor;
use riffle_consumer::Start;
use riffle_consumer::Worker;
use riffle_consumer::WorkerConfig;

#[derive(Parser, Debug)]
#[command(
    name = "riffle-consumer-example",
    about = "Prints a stream's records with riffle-consumer"
)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:4567", num_args = 1..)]
    endpoint: Vec<String>,
    #[arg(long)]
    stream: String,
    #[arg(long)]
    application: String,
    #[arg(long)]
    worker: String,
    /// Read through enhanced fan-out as this registered consumer (registered if needed).
    #[arg(long)]
    fan_out: Option<String>,
    /// Start shards without a checkpoint at LATEST instead of TRIM_HORIZON.
    #[arg(long)]
    latest: bool,
    #[arg(long, default_value_t = 10)]
    lease_seconds: u64,
    /// Append the lines to this file (flushed after every batch) instead of stdout.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

struct Printer {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Printer {
    fn write(&self, text: &str) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

impl ShardProcessor for Printer {
    fn process(&mut self, shard_id: &str, records: &[Record]) {
        let mut text = String::new();
        for record in records {
            text.push_str(&format!(
                "{shard_id} {} {}\n",
                record.sequence_number,
                String::from_utf8_lossy(&record.data)
            ));
        }
        self.write(&text);
    }

    fn shard_ended(&mut self, shard_id: &str) {
        self.write(&format!("END {shard_id}\n"));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RIFFLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let out: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let out = Arc::new(Mutex::new(out));
    let mut config = WorkerConfig::new(&args.application, &args.stream, &args.worker);
    config.lease_duration = Duration::from_secs(args.lease_seconds.max(1));
    if args.latest {
        config.initial_position = Start::Latest;
    }
    if let Some(name) = args.fan_out {
        config.read_mode = ReadMode::FanOut {
            consumer_name: name,
        };
    }
    let worker = Worker::new(Client::new(args.endpoint), config, move |_shard| {
        Box::new(Printer { out: out.clone() })
    });
    worker
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
