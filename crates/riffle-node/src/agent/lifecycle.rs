//! On the metadata leader: record which node leads each shard (for routing and status) and move
//! streams and consumers through their lifecycles — CREATING/UPDATING → ACTIVE once every open
//! shard has a leader and every replaced shard is sealed, DELETING → gone.

use std::collections::HashMap;

use riffle_control::ControlCommand;
use riffle_control::ControlState;
use riffle_control::model::ConsumerStatus;
use riffle_control::model::ShardState;
use riffle_control::model::StreamRecord;
use riffle_control::model::StreamStatus;

use super::StepError;
use crate::error::DataError;
use crate::node::Node;
use crate::node::now_ms;

impl Node {
    /// Which node leads each shard group, from this node's replicas and the last pings.
    fn observed_leaders(&self) -> HashMap<u64, u64> {
        self.reported_leaders()
            .into_iter()
            .map(|(node, leader)| (leader.group, node))
            .collect()
    }

    /// Metadata leader: commits shard leaders that changed (for routing and status).
    pub(super) async fn record_shard_leaders(&self, state: &ControlState) {
        let observed = self.observed_leaders();
        let changed: Vec<(u64, u64)> = state
            .streams
            .values()
            .flat_map(|stream| stream.shards.iter())
            .filter_map(|shard| {
                let node = *observed.get(&shard.group)?;
                (shard.leader != Some(node)).then_some((shard.group, node))
            })
            .collect();
        if changed.is_empty() {
            return;
        }
        if let Err(error) = self
            .control()
            .propose(ControlCommand::ShardLeaders { leaders: changed })
            .await
        {
            tracing::debug!(%error, "cannot record shard leaders; will retry");
        }
    }

    /// Metadata-leader duties: CREATING/UPDATING → ACTIVE, seal replaced shards, finish deletes.
    pub(super) async fn advance_lifecycles(&self, state: &ControlState) {
        for stream in state.streams.values() {
            let result = match stream.status {
                StreamStatus::Creating | StreamStatus::Updating => {
                    self.advance_stream(stream).await
                }
                StreamStatus::Deleting => self
                    .control()
                    .propose(ControlCommand::StreamDeleted {
                        name: stream.name.clone(),
                        created_ms: stream.created_ms,
                    })
                    .await
                    .map(|_| ())
                    .map_err(StepError::from),
                StreamStatus::Active => Ok(()),
            };
            if let Err(error) = result {
                tracing::warn!(stream = %stream.name, %error, "stream lifecycle step failed; will retry");
            }
            // Consumers need nothing from the shards: CREATING becomes ACTIVE and DELETING goes
            // away on the next pass.
            for consumer in stream.consumers.values() {
                let command = match consumer.status {
                    ConsumerStatus::Creating => ControlCommand::ConsumerActive {
                        stream: stream.name.clone(),
                        name: consumer.name.clone(),
                        created_ms: consumer.created_ms,
                    },
                    ConsumerStatus::Deleting => ControlCommand::ConsumerDeleted {
                        stream: stream.name.clone(),
                        name: consumer.name.clone(),
                        created_ms: consumer.created_ms,
                    },
                    ConsumerStatus::Active => continue,
                };
                if let Err(error) = self.control().propose(command).await {
                    tracing::warn!(stream = %stream.name, consumer = %consumer.name, %error, "consumer lifecycle step failed; will retry");
                }
            }
        }
    }

    async fn advance_stream(&self, stream: &StreamRecord) -> Result<(), StepError> {
        // Every open shard must have a leader before anything else moves.
        let observed = self.observed_leaders();
        if stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Open)
            .any(|shard| !observed.contains_key(&shard.group))
        {
            return Ok(());
        }
        for shard in stream
            .shards
            .iter()
            .filter(|shard| shard.state == ShardState::Closing)
        {
            let sealed_at = match self.seal_shard(shard).await {
                Ok(sealed_at) => sealed_at,
                Err(DataError::Closed) => return Err(StepError::SealClosed),
                Err(error) => return Err(StepError::Seal(error)),
            };
            self.control()
                .propose(ControlCommand::ShardSealed {
                    name: stream.name.clone(),
                    created_ms: stream.created_ms,
                    shard: shard.index,
                    sealed_at,
                    now_ms: now_ms(),
                })
                .await?;
        }
        self.control()
            .propose(ControlCommand::StreamActive {
                name: stream.name.clone(),
                created_ms: stream.created_ms,
            })
            .await?;
        Ok(())
    }
}
