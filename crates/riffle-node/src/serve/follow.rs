//! The shard leader's side of a Follow stream (push delivery for SubscribeToShard): pages of
//! committed records from a position, each produced as soon as the records are applied on the
//! leader (the shard's applied watch wakes it; nothing polls). The subscribing node's side is
//! [`crate::follow`].
//!
//! Backpressure: the leader reads the next page only when the stream is polled for it; between
//! nodes that is when gRPC's HTTP/2 stream window has room.
//!
//! One subscription per consumer and shard (AWS's rule): the leader keeps who follows each shard
//! for which consumer. A new subscription within 5 seconds of the current one's start is refused
//! with ResourceInUseException; a later one takes over, and the old one ends with that error.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use riffle_raft::ProposeError;
use riffle_shard::shard::ReadPage;
use riffle_shard::shard::ShardReplica;
use riffle_types::seqnum::Position;
use tokio::sync::watch;

use crate::service::FollowRequest;
use crate::service::Following;
use crate::service::ServeError;
use crate::service::Served;
use crate::service::ShardError;

/// Most records in one pushed page.
const PAGE_RECORDS: usize = 10_000;
/// A new subscription for the same consumer and shard is refused this soon after the current
/// one started.
const TAKEOVER_AFTER_MS: u64 = 5_000;
/// While nothing commits, the leader confirms it still leads this often (a deposed leader that
/// has not noticed would otherwise keep a subscription waiting forever).
const LEADERSHIP_CHECK: Duration = Duration::from_secs(2);

type Registry = Arc<Mutex<HashMap<(String, u64), Holder>>>;

/// Who follows each shard this node leads, for each consumer.
#[derive(Default)]
pub struct Subscriptions {
    active: Registry,
}

struct Holder {
    subscription: u64,
    started_ms: u64,
    /// Set when another subscription takes over.
    taken_over: watch::Sender<bool>,
}

/// A registered subscription; dropping it unregisters it.
struct Registration {
    active: Registry,
    key: (String, u64),
    subscription: u64,
    taken_over: watch::Receiver<bool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut active) = self.active.lock()
            && active
                .get(&self.key)
                .is_some_and(|holder| holder.subscription == self.subscription)
        {
            active.remove(&self.key);
        }
    }
}

impl Subscriptions {
    fn register(&self, request: &FollowRequest) -> Result<Registration, ShardError> {
        let key = (request.consumer.clone(), request.group);
        let mut active = self
            .active
            .lock()
            .map_err(|_| ShardError::RegistryPoisoned)?;
        if let Some(holder) = active.get(&key)
            && holder.subscription != request.subscription
        {
            if request.resume || request.started_ms < holder.started_ms {
                return Err(ShardError::TakenOver {
                    consumer: request.consumer.clone(),
                });
            }
            if request.started_ms < holder.started_ms + TAKEOVER_AFTER_MS {
                return Err(ShardError::SubscriptionActive {
                    consumer: request.consumer.clone(),
                    started_ago_ms: request.started_ms.saturating_sub(holder.started_ms),
                });
            }
            holder.taken_over.send_replace(true);
        }
        let (taken_over, receiver) = watch::channel(false);
        active.insert(
            key.clone(),
            Holder {
                subscription: request.subscription,
                started_ms: request.started_ms,
                taken_over,
            },
        );
        Ok(Registration {
            active: self.active.clone(),
            key,
            subscription: request.subscription,
            taken_over: receiver,
        })
    }
}

/// Serves a Follow stream from `replica`, which leads its shard (see the module comment). The
/// stream ends after an error (a not-leader one included) or the end of a closed shard.
pub(crate) fn serve(
    replica: ShardReplica,
    subscriptions: &Subscriptions,
    stop: watch::Receiver<bool>,
    request: FollowRequest,
) -> Served<Following> {
    let registration = subscriptions.register(&request)?;
    let serving = Serving {
        applied: replica.watch_applied(),
        tip: replica.readable_tip(),
        replica,
        registration,
        stop,
        from: request.from,
        max_bytes: request.max_bytes.max(1),
        done: false,
    };
    let tip = serving.tip;
    let pages = futures_util::stream::unfold(serving, |mut serving| async move {
        let message = serving.next().await?;
        Some((message, serving))
    })
    .boxed();
    Ok(Following { tip, pages })
}

/// The leader's side of one Follow stream.
struct Serving {
    replica: ShardReplica,
    registration: Registration,
    applied: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
    from: Position,
    max_bytes: usize,
    /// The readable tip at acceptance.
    tip: u64,
    done: bool,
}

impl Serving {
    /// The next message of the stream, or `None` once it has ended.
    async fn next(&mut self) -> Option<Served<ReadPage>> {
        if self.done {
            return None;
        }
        let message = self.produce().await;
        // An error or the end of a closed shard is the stream's last message.
        let goes_on = message.as_ref().is_ok_and(|page| !page.end_of_shard);
        self.done = !goes_on;
        Some(message)
    }

    async fn produce(&mut self) -> Served<ReadPage> {
        loop {
            if *self.registration.taken_over.borrow() {
                return Err(ShardError::TakenOver {
                    consumer: self.registration.key.0.clone(),
                }
                .into());
            }
            if *self.stop.borrow() || !self.replica.group().is_leader() {
                return Err(ServeError::NotLeader(None));
            }
            // Seen before reading, so an apply that lands during the read wakes the wait below.
            self.applied.borrow_and_update();
            let sealed = self.replica.progress().sealed_at().is_some();
            if self.from.entry <= self.replica.readable_tip() || sealed {
                let replica = self.replica.clone();
                let (from, max_bytes) = (self.from, self.max_bytes);
                let read = tokio::task::spawn_blocking(move || {
                    replica.read(from, PAGE_RECORDS, max_bytes)
                })
                .await;
                let page = match read {
                    Ok(Ok(page)) => page,
                    Ok(Err(error)) => return Err(ShardError::Read(error).into()),
                    Err(error) => return Err(ShardError::ReadTask(error).into()),
                };
                let moved = page.next != self.from;
                self.from = page.next;
                if !page.records.is_empty() || page.end_of_shard {
                    return Ok(page);
                }
                if moved {
                    // Entries without records (membership changes, the seal): read on.
                    continue;
                }
            }
            tokio::select! {
                changed = self.applied.changed() => {
                    if changed.is_err() {
                        return Err(ServeError::NotLeader(None));
                    }
                }
                _ = self.registration.taken_over.changed() => {}
                _ = self.stop.changed() => {}
                () = tokio::time::sleep(LEADERSHIP_CHECK) => {
                    if let Err(error) = self.replica.group().lease_read_barrier().await {
                        let leader = match error {
                            ProposeError::NotLeader { leader } => leader.map(|(_, node)| node.node),
                            _ => None,
                        };
                        return Err(ServeError::NotLeader(leader));
                    }
                }
            }
        }
    }
}
