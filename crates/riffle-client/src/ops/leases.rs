//! Riffle's lease API (`Riffle*` operations on the Kinesis endpoint): consumer applications'
//! lease tables, kept in the replicated metadata.

use serde::Deserialize;
use serde::Serialize;

use super::Empty;
use crate::client::Operation;

/// A lease as the table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Lease {
    pub shard_id: String,
    #[serde(default)]
    pub parent_shard_ids: Vec<String>,
    #[serde(default)]
    pub owner: Option<String>,
    pub counter: u64,
    /// A sequence number, or `SHARD_END`.
    #[serde(default)]
    pub checkpoint: Option<String>,
}

/// A lease table: the stream it covers and its leases.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseTable {
    pub stream_name: String,
    #[serde(default)]
    pub leases: Vec<Lease>,
}

/// Adds a lease for every shard of the stream that has none; answers the table.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleSyncLeases {
    pub application_name: String,
    pub stream_name: String,
}

impl Operation for RiffleSyncLeases {
    const NAME: &'static str = "RiffleSyncLeases";
    type Output = LeaseTable;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleListLeases {
    pub application_name: String,
}

impl Operation for RiffleListLeases {
    const NAME: &'static str = "RiffleListLeases";
    type Output = LeaseTable;
}

/// Takes a lease if its counter is still `counter`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleTakeLease {
    pub application_name: String,
    pub shard_id: String,
    pub owner: String,
    pub counter: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TakenLease {
    pub lease: Lease,
}

impl Operation for RiffleTakeLease {
    const NAME: &'static str = "RiffleTakeLease";
    type Output = TakenLease;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LeaseCounter {
    pub shard_id: String,
    pub counter: u64,
}

/// Renews the owner's leases whose counters are still those given; answers those renewed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleRenewLeases {
    pub application_name: String,
    pub owner: String,
    pub leases: Vec<LeaseCounter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RenewedLeases {
    #[serde(default)]
    pub leases: Vec<Lease>,
}

impl Operation for RiffleRenewLeases {
    const NAME: &'static str = "RiffleRenewLeases";
    type Output = RenewedLeases;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleCheckpoint {
    pub application_name: String,
    pub shard_id: String,
    pub owner: String,
    /// A sequence number, or `SHARD_END`.
    pub checkpoint: String,
}

impl Operation for RiffleCheckpoint {
    const NAME: &'static str = "RiffleCheckpoint";
    type Output = Empty;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleReleaseLease {
    pub application_name: String,
    pub shard_id: String,
    pub owner: String,
}

impl Operation for RiffleReleaseLease {
    const NAME: &'static str = "RiffleReleaseLease";
    type Output = Empty;
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RiffleDeleteLeases {
    pub application_name: String,
}

impl Operation for RiffleDeleteLeases {
    const NAME: &'static str = "RiffleDeleteLeases";
    type Output = Empty;
}
