//! The agent: a node's background work that keeps its part of the cluster in line with the
//! control state, once a second and whenever the state changes.
//!
//! - [`replicas`]: start the replicas placed on this node, drop those no longer placed here.
//! - [`lifecycle`]: on the metadata leader, record observed shard leaders and move streams and
//!   consumers through their lifecycles (sealing replaced shards).
//! - [`schedule`]: on the metadata leader, run the scheduler and propose its decisions.
//! - [`handover`] and [`moves`]: on each shard leader, carry those decisions out (hand
//!   leadership to the preferred node, move replicas through membership changes).
//! - retention: every local replica drops what is older than its stream's retention.
//!
//! The decisions are pure functions next to the code that acts on them, unit-tested without
//! Raft; the agent only gathers what they need and carries out what they return.

mod handover;
mod lifecycle;
mod moves;
mod replicas;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use riffle_control::ControlError;
use riffle_control::ControlState;
use riffle_raft::ProposeError;

use crate::error::DataError;
use crate::node::Node;
use crate::node::now_ms;

/// Why a step of the agent's work did not happen. It is logged where the agent handles it; the
/// next pass tries again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error(transparent)]
    Control(#[from] ControlError),
    /// Sealing a replaced shard failed.
    #[error(transparent)]
    Seal(DataError),
    #[error("seal answered closed")]
    SealClosed,
    /// A membership change did not finish in time.
    #[error("{0} timed out")]
    TimedOut(&'static str),
    /// A membership change failed.
    #[error(transparent)]
    Membership(#[from] ProposeError),
}

impl Node {
    /// One pass of the agent: local replicas follow the state; on the metadata leader,
    /// lifecycles move forward and observed shard leaders are recorded.
    pub(crate) async fn reconcile(&self) {
        let control = self.control();
        let state = control.state();
        // The replica set only changes with the state (or after a failed start): skip the walk
        // over every shard otherwise, idle nodes with thousands of shards must stay idle.
        let unchanged = self
            .synced_state
            .lock()
            .ok()
            .and_then(|synced| synced.as_ref().map(|synced| Arc::ptr_eq(synced, &state)))
            .unwrap_or(false);
        if !unchanged {
            self.learn_addresses(&state);
            let complete = self.sync_local_replicas(&state).await;
            if let Ok(mut synced) = self.synced_state.lock() {
                *synced = complete.then(|| state.clone());
            }
        }
        if control.is_leader() {
            self.record_shard_leaders(&state).await;
            self.advance_lifecycles(&state).await;
            self.schedule(&state).await;
        }
        self.drive_led_shards(&state).await;
    }

    /// Retention: every local replica drops what is older than its stream's retention.
    async fn trim_retention(&self, state: &ControlState) {
        let now = now_ms();
        for stream in state.streams.values() {
            let cutoff = now.saturating_sub(u64::from(stream.retention_hours) * 3_600_000);
            for shard in &stream.shards {
                let Some(replica) = self.local_shard(shard.group) else {
                    continue;
                };
                if let Err(error) = replica.trim_before(cutoff).await {
                    tracing::warn!(stream = %stream.name, shard = %shard.id(), %error, "retention trim failed");
                }
            }
        }
    }
}

pub(crate) async fn run_agent(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut state = node.control().watch();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut retention = tokio::time::interval(node.config.retention_interval);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                node.reconcile().await;
            }
            _ = tick.tick() => node.reconcile().await,
            _ = retention.tick() => {
                let snapshot = node.control().state();
                node.trim_retention(&snapshot).await;
            }
        }
        if *stop.borrow() {
            break;
        }
    }
}
