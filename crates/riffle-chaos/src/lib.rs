//! Chaos for Riffle clusters: inject faults into Docker containers or local processes, drive a
//! checked Kinesis workload through them, and report what the clients saw.
//!
//! - [`faults`]: the cluster under test (Docker through bollard, or `scripts/local-cluster.sh`
//!   processes through signals) and the faults: kill, stop, pause, isolate.
//! - [`workload`]: producers (one record in flight per partition key, retried as SDKs do),
//!   readers following every shard and its children, the ledger and the timeline.
//! - [`check`]: the read-back verdict: nothing acknowledged lost or moved, no phantom, order per
//!   partition key, duplicates only for ambiguous writes.
//! - [`scenario`]: schedules (single fault, repeated random faults, rolling and full restarts,
//!   a reshard during a fault) and the run itself.
//! - [`report`]: text, JSON and SVG.

pub mod check;
pub mod client;
pub mod faults;
pub mod report;
pub mod scenario;
pub mod workload;
