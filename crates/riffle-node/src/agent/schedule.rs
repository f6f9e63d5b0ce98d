//! On the metadata leader, at most once a second: run the scheduler (`riffle_control::scheduler::plan`,
//! pure) over the state and what this node observes, and propose its decisions.

use std::time::Duration;
use std::time::Instant;

use riffle_control::ControlCommand;
use riffle_control::ControlError;
use riffle_control::ControlState;
use riffle_control::scheduler;
use riffle_control::scheduler::Observed;
use riffle_control::scheduler::Policy;
use riffle_control::scheduler::ShardLoad;

use crate::node::Node;
use crate::node::now_ms;

impl Node {
    /// Metadata leader, at most once a second: runs the scheduler over the state and what this
    /// node observes, and proposes its decisions.
    pub(super) async fn schedule(&self, state: &ControlState) {
        if let Ok(mut last) = self.last_schedule.lock() {
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let observed = self.observe();
        let policy = Policy {
            shard_limit: self.config.shard_limit,
            ..self.config.scheduler.clone()
        };
        for command in scheduler::plan(state, &observed, &policy) {
            let name = command.name();
            match &command {
                ControlCommand::ReshardStep {
                    name: stream,
                    reason,
                    ..
                } => tracing::info!(stream, reason, "resharding"),
                ControlCommand::StartReplicaMove {
                    name: stream,
                    shard,
                    to_node,
                    reason,
                    ..
                } => tracing::info!(stream, shard, to_node, reason, "moving a replica"),
                _ => {}
            }
            if let Err(error) = self.control().propose(command).await {
                tracing::debug!(command = name, %error, "scheduler decision not taken; will retry");
            }
        }
    }

    /// What the scheduler needs to know that is not in the state: down nodes (and since when,
    /// as this node saw it), shard leaders and their write rates.
    fn observe(&self) -> Observed {
        let now = now_ms();
        let mut observed = Observed {
            now_ms: now,
            ..Observed::default()
        };
        if let Ok(health) = self.health.read() {
            for (node, peer) in health.iter().filter(|(_, peer)| !peer.alive) {
                let since = peer.last_ok.unwrap_or(self.started_at);
                let down_for = since.elapsed().as_millis() as u64;
                observed
                    .down_since_ms
                    .insert(*node, now.saturating_sub(down_for));
            }
        }
        for (node, leader) in self.reported_leaders() {
            observed.leaders.insert(leader.group, node);
            observed.load.insert(
                leader.group,
                ShardLoad {
                    bytes_per_sec: leader.write_bytes_per_sec as f64,
                    records_per_sec: leader.write_records_per_sec as f64,
                },
            );
        }
        observed
    }

    /// Drains a node (its leaders move away, nothing new is placed on it) or takes it back.
    pub async fn set_draining(&self, node: u64, draining: bool) -> Result<(), ControlError> {
        self.control()
            .propose(ControlCommand::SetDraining { node, draining })
            .await
            .map(|_| ())
    }
}
