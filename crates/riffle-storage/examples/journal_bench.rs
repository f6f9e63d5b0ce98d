//! Closed-loop append benchmark: the shared journal (`DiskStorage`) against "sled as the log".
//!
//! N writer threads each append one entry at a time to their groups and wait until it is
//! durable before the next. Reports entries/s, MiB/s, syncs/s, append-to-durable latency and
//! the disk space used per logical byte.
//!
//! ```text
//! cargo run --release -p riffle-storage --example journal_bench -- \
//!     --groups 16 --entry-bytes 102400 --seconds 5 --writers 16 [--only disk|sled] [--dir PATH]
//! ```
//!
//! The sled baseline is given the same group commit: one tree per group, writers insert and
//! then wait for a single flusher thread whose `Db::flush` covers every insert made before it
//! started (so sled is not penalised by concurrent `flush` callers).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool reports on stdout

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use bytes::Bytes;
use riffle_storage::DiskOptions;
use riffle_storage::DiskStorage;
use riffle_storage::LogRecord;
use riffle_storage::Storage;

#[derive(Clone, Debug)]
struct Config {
    groups: u64,
    entry_bytes: usize,
    seconds: u64,
    writers: u64,
    only: Option<String>,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        groups: 16,
        entry_bytes: 100 * 1024,
        seconds: 5,
        writers: 16,
        only: None,
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|error| format!("{flag}: {error}"))
        };
        match flag.as_str() {
            "--groups" => config.groups = number(value()?)?,
            "--entry-bytes" => config.entry_bytes = number(value()?)? as usize,
            "--seconds" => config.seconds = number(value()?)?,
            "--writers" => config.writers = number(value()?)?,
            "--only" => config.only = Some(value()?),
            "--dir" => config.dir = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if config.groups == 0 || config.writers == 0 {
        return Err("--groups and --writers must be at least 1".to_string());
    }
    Ok(config)
}

/// What one run measured.
struct Outcome {
    entries: u64,
    elapsed: Duration,
    syncs: u64,
    latencies: Vec<Duration>,
    disk_bytes: u64,
}

/// The groups a writer appends to: its own when there are enough, else a shared one.
fn groups_of(config: &Config, writer: u64) -> Vec<u64> {
    if config.groups >= config.writers {
        (0..config.groups)
            .filter(|group| group % config.writers == writer)
            .collect()
    } else {
        vec![writer % config.groups]
    }
}

fn directory_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => directory_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Appends one entry to a group (taking its index from the group's counter), returns once durable.
type AppendFn = Arc<dyn Fn(u64, Bytes, &Mutex<u64>) + Send + Sync>;

/// Runs `writers` closed-loop threads until the deadline. `append` appends one entry to `group`
/// (taking its index from the group's counter) and returns once it is durable.
fn drive(config: &Config, append: AppendFn) -> (u64, Duration, Vec<Duration>) {
    let payload = Bytes::from(
        (0..config.entry_bytes)
            .map(|position| (position * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let next_index: Arc<Vec<Mutex<u64>>> =
        Arc::new((0..config.groups).map(|_| Mutex::new(1)).collect());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.seconds);
    let threads: Vec<_> = (0..config.writers)
        .map(|writer| {
            let groups = groups_of(config, writer);
            let append = append.clone();
            let payload = payload.clone();
            let next_index = next_index.clone();
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                let mut turn = 0usize;
                while Instant::now() < deadline {
                    let group = groups[turn % groups.len()];
                    turn += 1;
                    let begun = Instant::now();
                    append(group, payload.clone(), &next_index[group as usize]);
                    latencies.push(begun.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().expect("writer thread"));
    }
    let elapsed = started.elapsed();
    (latencies.len() as u64, elapsed, latencies)
}

fn run_disk(config: &Config, dir: &Path) -> Outcome {
    let storage = Arc::new(DiskStorage::open(DiskOptions::new(dir)).expect("open DiskStorage"));
    for group in 0..config.groups {
        storage.create_group(group).expect("create group");
    }
    let syncs_before = storage.stats().data_syncs;
    let append_storage = storage.clone();
    let append = Arc::new(move |group: u64, payload: Bytes, next_index: &Mutex<u64>| {
        let (sender, receiver) = mpsc::channel();
        {
            // Appends of one group must be issued in index order; the lock covers only the
            // (non-blocking) append call, not the wait for durability.
            let mut next = next_index.lock().expect("index lock");
            let record = LogRecord {
                index: *next,
                term: 1,
                kind: 0,
                tag: 0,
                payload,
            };
            append_storage
                .append(
                    group,
                    vec![record],
                    Box::new(move |result| sender.send(result).expect("waiting writer")),
                )
                .expect("append");
            *next += 1;
        }
        receiver
            .recv()
            .expect("durable fired")
            .expect("append durable");
    });
    let (entries, elapsed, latencies) = drive(config, append);
    let syncs = storage.stats().data_syncs - syncs_before;
    let disk_bytes = directory_bytes(dir);
    drop(storage);
    Outcome {
        entries,
        elapsed,
        syncs,
        latencies,
        disk_bytes,
    }
}

/// Requested and completed flush "tickets" of the sled flusher.
#[derive(Default)]
struct FlushState {
    requested: u64,
    completed: u64,
    flushes: u64,
    stop: bool,
}

fn run_sled(config: &Config, dir: &Path) -> Outcome {
    let db = sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .expect("open sled");
    let trees: Arc<Vec<sled::Tree>> = Arc::new(
        (0..config.groups)
            .map(|group| db.open_tree(format!("group-{group}")).expect("open tree"))
            .collect(),
    );
    let state = Arc::new((Mutex::new(FlushState::default()), Condvar::new()));
    let flusher = {
        let state = state.clone();
        let db = db.clone();
        std::thread::spawn(move || {
            let (lock, changed) = &*state;
            loop {
                let target = {
                    let mut guard = lock.lock().expect("flush lock");
                    while guard.requested == guard.completed && !guard.stop {
                        guard = changed.wait(guard).expect("flush lock");
                    }
                    if guard.stop {
                        return;
                    }
                    guard.requested
                };
                // Every insert that asked for ticket <= target happened before this flush.
                db.flush().expect("sled flush");
                let mut guard = lock.lock().expect("flush lock");
                guard.completed = target;
                guard.flushes += 1;
                changed.notify_all();
            }
        })
    };
    let append_trees = trees.clone();
    let append_state = state.clone();
    let append = Arc::new(move |group: u64, payload: Bytes, next_index: &Mutex<u64>| {
        {
            let mut next = next_index.lock().expect("index lock");
            append_trees[group as usize]
                .insert(next.to_be_bytes(), payload.as_ref())
                .expect("sled insert");
            *next += 1;
        }
        let (lock, changed) = &*append_state;
        let mut guard = lock.lock().expect("flush lock");
        guard.requested += 1;
        let ticket = guard.requested;
        changed.notify_all();
        while guard.completed < ticket {
            guard = changed.wait(guard).expect("flush lock");
        }
    });
    let (entries, elapsed, latencies) = drive(config, append);
    let syncs = {
        let (lock, changed) = &*state;
        let mut guard = lock.lock().expect("flush lock");
        guard.stop = true;
        changed.notify_all();
        guard.flushes
    };
    flusher.join().expect("flusher thread");
    let disk_bytes = directory_bytes(dir);
    drop(trees);
    drop(db);
    Outcome {
        entries,
        elapsed,
        syncs,
        latencies,
        disk_bytes,
    }
}

fn report(name: &str, config: &Config, outcome: &mut Outcome) {
    outcome.latencies.sort_unstable();
    let seconds = outcome.elapsed.as_secs_f64();
    let logical_bytes = outcome.entries as f64 * config.entry_bytes as f64;
    let mean_ms = if outcome.latencies.is_empty() {
        0.0
    } else {
        outcome
            .latencies
            .iter()
            .map(Duration::as_secs_f64)
            .sum::<f64>()
            / outcome.latencies.len() as f64
            * 1e3
    };
    let percentile_ms = |fraction: f64| {
        if outcome.latencies.is_empty() {
            return 0.0;
        }
        let position = ((outcome.latencies.len() as f64 * fraction).ceil() as usize)
            .clamp(1, outcome.latencies.len())
            - 1;
        outcome.latencies[position].as_secs_f64() * 1e3
    };
    println!(
        "{name:<5} groups={:<3} writers={:<3} entry={:>6}B  {:>8.0} entries/s  {:>7.1} MiB/s  {:>7.0} syncs/s  \
         latency mean={:.2}ms p50={:.2}ms p99={:.2}ms  disk/logical={:.2}",
        config.groups,
        config.writers,
        config.entry_bytes,
        outcome.entries as f64 / seconds,
        logical_bytes / seconds / (1024.0 * 1024.0),
        outcome.syncs as f64 / seconds,
        mean_ms,
        percentile_ms(0.50),
        percentile_ms(0.99),
        if logical_bytes > 0.0 {
            outcome.disk_bytes as f64 / logical_bytes
        } else {
            0.0
        },
    );
}

fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("journal_bench: {message}");
            std::process::exit(2);
        }
    };
    let base = config.dir.clone().unwrap_or_else(std::env::temp_dir);
    let run = |name: &str| config.only.as_deref().is_none_or(|only| only == name);
    if run("disk") {
        let dir = tempfile::Builder::new()
            .prefix("journal-bench-disk")
            .tempdir_in(&base)
            .expect("temp dir");
        let mut outcome = run_disk(&config, dir.path());
        report("disk", &config, &mut outcome);
    }
    if run("sled") {
        let dir = tempfile::Builder::new()
            .prefix("journal-bench-sled")
            .tempdir_in(&base)
            .expect("temp dir");
        let mut outcome = run_sled(&config, dir.path());
        report("sled", &config, &mut outcome);
    }
}
