//! Chaos for Riffle clusters: a checked Kinesis workload, faults injected while it runs, and
//! the history checker the end-to-end tests and the simulation use as well.
//!
//! This crate talks to a cluster only as clients do (through `riffle-client`: the Kinesis API
//! and `GET /_riffle/status`) and must not depend on any server crate. It holds no Docker
//! client either: the Docker fault injector lives in `riffle-chaos-docker` (the `riffle-chaos`
//! binary), so that the server binary, which runs local chaos, does not link one.
//!
//! - [`history`]: what the writers attempted and were told, per record, on a logical clock.
//! - [`check`]: the read-back verdict (a pure function over a history and a read-back).
//! - [`load`]: writers of uniquely identified records through any [`riffle_client::Kinesis`]
//!   (an HTTP client, or the simulation's in-process API); [`read`]: the read-back by lineage.
//! - [`workload`]: the chaos load (writers through random nodes, live readers);
//!   [`timeline`]: its per-second record.
//! - [`faults`]: faults, targets, the cluster under test; [`local`]: local processes
//!   (`scripts/local-cluster.sh`) through signals.
//! - [`scenario`]: schedules and the run; [`report`]: text, JSON and SVG; [`cli`]: `chaos run`.

pub mod check;
pub mod cli;
pub mod faults;
pub mod history;
pub mod load;
pub mod local;
pub mod read;
pub mod report;
pub mod scenario;
pub mod timeline;
pub mod workload;
