//! Liveness: which other nodes are up, and what this node does when one goes down or comes back.
//!
//! Every node pings every other node twice a second through the peer protocol (the answer lists
//! the groups that node leads, with their write rates); the UDP beacon ([`crate::beacon`]) is
//! heard besides. A node heard from by neither for `node_down_after` is down: its groups wake
//! and, in every local group it led, the surviving voters campaign at once, one at a time. When
//! it comes back every local group with a replica there wakes, so that the replica catches up.

use std::collections::BTreeSet;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use riffle_control::plane::CONTROL_GROUP;
use riffle_raft::Group;
use riffle_raft::ReplicaNode;
use riffle_shard::shard::ShardMachine;
use riffle_shard::shard::ShardReplica;

use crate::node::Node;
use crate::peer::LeaderOf;

/// After a leader's node goes down, the surviving voters of its groups campaign this far apart.
/// Longer than the skew between two nodes' detections (pings go out every 500 ms on each node,
/// unsynchronised): were the second candidate to start before the first, they would split the
/// vote and the group would fall back to election timeouts.
const TAKEOVER_STAGGER: Duration = Duration::from_millis(750);

/// A node that answered a ping this recently may be handed leadership: stricter than "not
/// down" (a node killed a moment ago is not down yet).
const ANSWERED_RECENTLY: Duration = Duration::from_secs(1);

/// What this node knows about another node's health.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerHealth {
    /// When the node was last heard from (ping answer or beacon); `None`: never.
    pub(crate) last_ok: Option<Instant>,
    pub(crate) alive: bool,
    /// Groups the node said it leads, with the leading replica and write rates.
    pub(crate) leading: Vec<LeaderOf>,
}

/// What a liveness round concluded about one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Nothing that calls for action.
    Unchanged,
    /// It was alive and has now been silent for `node_down_after`.
    WentDown,
    /// It was down (after having been heard from) and answers again.
    CameBack,
}

/// What one round heard from a node.
pub(crate) struct Heard {
    /// The ping's answer: the groups the node leads (`None`: no answer in time).
    pub(crate) ping: Option<Vec<LeaderOf>>,
    /// When the beacon last heard from it.
    pub(crate) beacon: Option<Instant>,
}

impl PeerHealth {
    /// Folds one liveness round into what is known of the node. A node is down once neither
    /// its pings nor the beacon were heard for `down_after` (counted from this node's start
    /// for a node never heard from: a grace period at start-up). Only a node that was heard
    /// from before can come back.
    pub(crate) fn observe(
        &mut self,
        heard: Heard,
        now: Instant,
        started_at: Instant,
        down_after: Duration,
    ) -> Change {
        let was_heard = self.last_ok.is_some();
        if let Some(leading) = heard.ping {
            self.last_ok = Some(now);
            self.leading = leading;
        }
        if let Some(at) = heard.beacon {
            self.last_ok = self.last_ok.max(Some(at));
        }
        let since = self.last_ok.unwrap_or(started_at);
        let down = now.saturating_duration_since(since) >= down_after;
        if !down && self.last_ok.is_some() {
            let came_back = !self.alive && was_heard;
            self.alive = true;
            return if came_back {
                Change::CameBack
            } else {
                Change::Unchanged
            };
        }
        let went_down = down && self.alive;
        if down {
            self.alive = false;
            self.leading.clear();
        }
        if went_down {
            Change::WentDown
        } else {
            Change::Unchanged
        }
    }

    /// Whether the node is alive and answered within [`ANSWERED_RECENTLY`] of `now`.
    pub(crate) fn answered_recently(&self, now: Instant) -> bool {
        self.alive
            && self
                .last_ok
                .is_some_and(|at| now.saturating_duration_since(at) < ANSWERED_RECENTLY)
    }
}

/// Where this replica stands among the group's voters that may take over from a leader whose
/// node went down: voters on nodes not down, in replica id order. The first campaigns at once,
/// each next one [`TAKEOVER_STAGGER`] later (if still no leader is known). `None`: this replica
/// is not such a voter (a learner, or not in the membership).
pub(crate) fn takeover_rank(
    voters: &BTreeSet<u64>,
    members: &[(u64, ReplicaNode)],
    down: &HashSet<u64>,
    me: u64,
) -> Option<usize> {
    let up = |voter: &&u64| {
        members
            .iter()
            .any(|(id, at)| id == *voter && !down.contains(&at.node))
    };
    // A BTreeSet iterates in replica id order.
    voters.iter().filter(up).position(|voter| *voter == me)
}

/// How long the voter of `rank` waits before campaigning.
pub(crate) fn takeover_delay(rank: usize) -> Duration {
    TAKEOVER_STAGGER * rank as u32
}

/// A local group this node leads, with its measured write rate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Led {
    replica: u64,
    /// `(bytes, records)` appended as of `at`.
    totals: (u64, u64),
    at: Instant,
    bytes_per_sec: f64,
    records_per_sec: f64,
}

impl Led {
    pub(crate) fn new(replica: u64, totals: (u64, u64)) -> Led {
        Led {
            replica,
            totals,
            at: Instant::now(),
            bytes_per_sec: 0.0,
            records_per_sec: 0.0,
        }
    }

    /// Folds the totals now into the smoothed rates (an exponential average over a few
    /// seconds: one busy second does not make a hot shard, a sustained load does).
    fn sample(&mut self, totals: (u64, u64)) {
        const WEIGHT: f64 = 0.3;
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        if elapsed < 0.1 {
            return;
        }
        let bytes = totals.0.saturating_sub(self.totals.0) as f64 / elapsed;
        let records = totals.1.saturating_sub(self.totals.1) as f64 / elapsed;
        self.bytes_per_sec += WEIGHT * (bytes - self.bytes_per_sec);
        self.records_per_sec += WEIGHT * (records - self.records_per_sec);
        self.totals = totals;
        self.at = now;
    }
}

impl Node {
    /// What every node (this one included) last said it leads: `(node, group and rates)`.
    pub(crate) fn reported_leaders(&self) -> Vec<(u64, LeaderOf)> {
        let mut reported = Vec::new();
        if let Ok(health) = self.health.read() {
            for (node, peer) in health.iter().filter(|(_, peer)| peer.alive) {
                reported.extend(peer.leading.iter().map(|leader| (*node, *leader)));
            }
        }
        if let Ok(leading) = self.leading.read() {
            reported.extend(leading.iter().map(|leader| (self.config.node_id, *leader)));
        }
        reported
    }

    /// Nodes this node currently believes alive (itself included).
    pub fn alive_nodes(&self) -> HashSet<u64> {
        let mut alive: HashSet<u64> = match self.health.read() {
            Ok(health) => health
                .iter()
                .filter(|(_, h)| h.alive)
                .map(|(id, _)| *id)
                .collect(),
            Err(_) => HashSet::new(),
        };
        alive.insert(self.config.node_id);
        alive
    }

    /// Whether `node` answered a ping in the last second (this node always has): stricter than
    /// "not down", for handing it leadership (a node killed a moment ago is not down yet).
    pub(crate) fn answered_recently(&self, node: u64) -> bool {
        let now = Instant::now();
        node == self.config.node_id
            || self
                .health
                .read()
                .map(|health| {
                    health
                        .get(&node)
                        .is_some_and(|peer| peer.answered_recently(now))
                })
                .unwrap_or(false)
    }

    /// Whether liveness currently calls `node` down (never this node).
    pub(crate) fn is_down(&self, node: u64) -> bool {
        node != self.config.node_id
            && self
                .health
                .read()
                .map(|health| health.get(&node).is_some_and(|peer| !peer.alive))
                .unwrap_or(false)
    }

    /// Nodes this node currently believes down, sorted (what placement should avoid).
    pub fn down_nodes_list(&self) -> Vec<u64> {
        let mut nodes: Vec<u64> = self.down_nodes().into_iter().collect();
        nodes.sort_unstable();
        nodes
    }

    /// Nodes known to the cluster that this node currently believes down.
    pub(crate) fn down_nodes(&self) -> HashSet<u64> {
        match self.health.read() {
            Ok(health) => health
                .iter()
                .filter(|(_, peer)| !peer.alive)
                .map(|(node, _)| *node)
                .collect(),
            Err(_) => HashSet::new(),
        }
    }

    /// Recomputes which local groups this node leads (what pings report). Done once per
    /// liveness round rather than per ping, so that it costs O(groups) twice a second.
    fn refresh_leading(&self) {
        let Ok(mut groups) = self.leading_groups.lock() else {
            return;
        };
        let awake: HashSet<u64> = self.awake.snapshot().into_iter().collect();
        for &group in &awake {
            match self.local_shard(group) {
                Some(replica) if replica.group().is_leader() => {
                    let id = replica.group().replica();
                    let totals = replica.meter().totals();
                    groups
                        .entry(group)
                        .and_modify(|led| led.replica = id)
                        .or_insert_with(|| Led::new(id, totals));
                }
                _ => {
                    groups.remove(&group);
                }
            }
        }
        let mut leading: Vec<LeaderOf> = Vec::with_capacity(groups.len() + 1);
        for (group, led) in groups.iter_mut() {
            // A sleeping group takes no writes (a write wakes it first): once its rates have
            // decayed to nothing there is nothing to sample, and visiting thousands of them
            // every second is most of an idle node's work.
            let settled = led.bytes_per_sec < 0.5 && led.records_per_sec < 0.5;
            if (awake.contains(group) || !settled)
                && let Some(replica) = self.local_shard(*group)
            {
                led.sample(replica.meter().totals());
            }
            leading.push(LeaderOf {
                group: *group,
                replica: led.replica,
                write_bytes_per_sec: led.bytes_per_sec.round() as u64,
                write_records_per_sec: led.records_per_sec.round() as u64,
            });
        }
        drop(groups);
        if let Some(control) = self.control.get()
            && control.is_leader()
        {
            leading.push(LeaderOf {
                group: CONTROL_GROUP,
                replica: self.config.node_id,
                ..Default::default()
            });
        }
        if let Ok(mut slot) = self.leading.write() {
            *slot = leading;
        }
    }

    /// Nodes to ping: every registered node and every configured voter, except this one.
    fn other_nodes(&self) -> Vec<u64> {
        let mut nodes: Vec<u64> = self.config.peers.iter().map(|(id, _)| *id).collect();
        if let Some(control) = self.control.get() {
            nodes.extend(control.state().nodes.keys().copied());
        }
        nodes.sort_unstable();
        nodes.dedup();
        nodes.retain(|node| *node != self.config.node_id);
        nodes
    }

    /// One liveness round: pings every other node through the peer protocol (the answer says
    /// which groups it leads) and counts a node as answering if either that ping or the beacon
    /// heard from it. A node heard from by neither for `node_down_after` is down.
    async fn ping_all(self: &Arc<Self>) {
        let Some(peers) = &self.peers else { return };
        let nodes = self.other_nodes();
        let beacon = self.beacon.get();
        if let Some(beacon) = beacon {
            // The transport's address book (configured peers, then the control state).
            let targets = nodes
                .iter()
                .filter_map(|node| Some((*node, peers.address_of(*node)?)))
                .collect();
            beacon.set_targets(targets);
        }
        let pings = nodes.iter().map(|node| {
            let call = peers.ping(*node, self.config.node_id);
            async move {
                (
                    *node,
                    tokio::time::timeout(Duration::from_secs(1), call).await,
                )
            }
        });
        let results = futures_util::future::join_all(pings).await;
        let now = Instant::now();
        let mut went_down = Vec::new();
        let mut came_back = Vec::new();
        if let Ok(mut health) = self.health.write() {
            for (node, result) in results {
                let heard = Heard {
                    ping: result
                        .ok()
                        .and_then(Result::ok)
                        .map(|answer| answer.leading),
                    beacon: beacon.and_then(|beacon| beacon.last_heard(node)),
                };
                let change = health.entry(node).or_default().observe(
                    heard,
                    now,
                    self.started_at,
                    self.config.node_down_after,
                );
                match change {
                    Change::WentDown => went_down.push(node),
                    Change::CameBack => came_back.push(node),
                    Change::Unchanged => {}
                }
            }
        }
        for node in went_down {
            tracing::warn!(node, "node is down");
            self.wake_groups_on(node, true);
            self.take_over_groups_led_on(node).await;
        }
        for node in came_back {
            tracing::info!(node, "node is back");
            self.wake_groups_on(node, false);
        }
    }

    /// A node went down (groups it led must elect a new leader: they wake) or came back (it
    /// must catch up: every local group with a replica there wakes). Groups that only had a
    /// follower on a node that went down stay asleep: waking thousands of groups at once is
    /// what overloads the survivors.
    fn wake_groups_on(&self, node: u64, went_down: bool) {
        self.shards.for_each(|replica| {
            let group = replica.group();
            if !group.is_hibernating() {
                return;
            }
            let affected = if went_down {
                leader_on(group, node).is_some()
            } else {
                group
                    .members()
                    .iter()
                    .any(|(_, member)| member.node == node)
            };
            if affected {
                group.wake();
            }
        });
    }

    /// `node` went down: in every local group whose leader is there, the surviving voters start
    /// an election at once instead of waiting for election timeouts and leader leases to run out
    /// (see [`riffle_raft::Group::take_over_from`]). They go one at a time in replica
    /// id order, [`TAKEOVER_STAGGER`] apart, so that they do not split the vote; the next one
    /// tries only if no leader emerged (the first may have lost for want of the newest log: a
    /// quorum needs only one follower up to date).
    async fn take_over_groups_led_on(self: &Arc<Self>, node: u64) {
        let down = self.down_nodes();
        let mut candidates: Vec<(ShardReplica, u64, usize)> = Vec::new();
        self.shards.for_each(|replica| {
            let candidate = (|| {
                let group = replica.group();
                let leader = leader_on(group, node)?;
                let rank = takeover_rank(
                    &group.membership().voters,
                    &group.members(),
                    &down,
                    group.replica(),
                )?;
                Some((replica.clone(), leader, rank))
            })();
            candidates.extend(candidate);
        });
        for (replica, leader, rank) in candidates {
            let node_handle = self.clone();
            let campaign = async move {
                if rank > 0 {
                    tokio::time::sleep(takeover_delay(rank)).await;
                    if node_handle.is_stopping() {
                        return;
                    }
                }
                let group = replica.group();
                match group.take_over_from(leader).await {
                    Ok(true) => {
                        let started = Instant::now();
                        let elected = group
                            .wait_for_leader_other_than(leader, Duration::from_secs(10))
                            .await;
                        tracing::info!(
                            group = group.id(),
                            node,
                            rank,
                            ?elected,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "campaigned: the leader's node is down"
                        );
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!(group = group.id(), %error, "could not campaign"),
                }
            };
            tokio::spawn(campaign);
        }
    }
}

pub(crate) async fn run_liveness(node: Arc<Node>) {
    let mut stop = node.stop.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut round = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                // Pings go out every round (failure detection); what this node leads changes
                // rarely and costs a pass over every group, so it is refreshed every other round.
                round += 1;
                if round % 2 == 1 {
                    node.refresh_leading();
                }
                node.ping_all().await;
            }
        }
    }
}

/// The group's current leader, if it is a replica on `node`.
fn leader_on(group: &Group<ShardMachine>, node: u64) -> Option<u64> {
    let leader = group.leader()?;
    group
        .members()
        .iter()
        .any(|(id, member)| *id == leader && member.node == node)
        .then_some(leader)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOWN_AFTER: Duration = Duration::from_millis(1500);

    fn silent() -> Heard {
        Heard {
            ping: None,
            beacon: None,
        }
    }

    fn pinged() -> Heard {
        Heard {
            ping: Some(vec![LeaderOf {
                group: 7,
                replica: 71,
                ..Default::default()
            }]),
            beacon: None,
        }
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_node_is_down_once_neither_pings_nor_the_beacon_were_heard_for_the_window() {
        let start = Instant::now();
        let mut peer = PeerHealth::default();
        assert_eq!(
            peer.observe(pinged(), at(start, 0), start, DOWN_AFTER),
            Change::Unchanged
        );
        assert!(peer.alive);
        assert_eq!(
            peer.leading.len(),
            1,
            "the ping's answer says what it leads"
        );
        assert_eq!(
            peer.observe(silent(), at(start, 1_400), start, DOWN_AFTER),
            Change::Unchanged,
            "1.4 s of silence is not yet down"
        );
        assert!(peer.alive);
        assert_eq!(
            peer.observe(silent(), at(start, 1_500), start, DOWN_AFTER),
            Change::WentDown
        );
        assert!(!peer.alive);
        assert!(peer.leading.is_empty(), "a down node leads nothing");
        assert_eq!(
            peer.observe(silent(), at(start, 2_000), start, DOWN_AFTER),
            Change::Unchanged,
            "going down is reported once"
        );
        assert_eq!(
            peer.observe(pinged(), at(start, 2_500), start, DOWN_AFTER),
            Change::CameBack
        );
        assert!(peer.alive);
    }

    #[test]
    fn the_beacon_alone_keeps_a_node_alive() {
        let start = Instant::now();
        let mut peer = PeerHealth::default();
        peer.observe(pinged(), at(start, 0), start, DOWN_AFTER);
        for ms in [1_000, 2_000, 3_000] {
            let heard = Heard {
                ping: None,
                beacon: Some(at(start, ms - 100)),
            };
            assert_eq!(
                peer.observe(heard, at(start, ms), start, DOWN_AFTER),
                Change::Unchanged
            );
            assert!(
                peer.alive,
                "pings time out but the beacon hears it at {ms} ms"
            );
        }
    }

    #[test]
    fn a_node_never_heard_from_gets_a_grace_period_and_cannot_come_back() {
        let start = Instant::now();
        let mut peer = PeerHealth::default();
        assert_eq!(
            peer.observe(silent(), at(start, 1_000), start, DOWN_AFTER),
            Change::Unchanged
        );
        assert!(!peer.alive, "never heard: not alive");
        assert_eq!(
            peer.observe(silent(), at(start, 2_000), start, DOWN_AFTER),
            Change::Unchanged,
            "never alive, so it does not go down"
        );
        assert_eq!(
            peer.observe(pinged(), at(start, 2_500), start, DOWN_AFTER),
            Change::Unchanged,
            "the first answer is not a return"
        );
        assert!(peer.alive);
    }

    #[test]
    fn only_a_recent_answer_makes_a_node_a_hand_over_target() {
        let start = Instant::now();
        let mut peer = PeerHealth::default();
        peer.observe(pinged(), start, start, DOWN_AFTER);
        assert!(peer.answered_recently(at(start, 900)));
        assert!(
            !peer.answered_recently(at(start, 1_000)),
            "alive (not yet down) but silent for a second"
        );
    }

    fn member(replica: u64, node: u64) -> (u64, ReplicaNode) {
        (
            replica,
            ReplicaNode {
                node,
                ..ReplicaNode::default()
            },
        )
    }

    #[test]
    fn surviving_voters_campaign_in_replica_id_order_a_stagger_apart() {
        // Replica 10 on node 1 led and node 1 went down; 20 (node 2) and 30 (node 3) survive.
        let voters = BTreeSet::from([10, 20, 30]);
        let members = [member(30, 3), member(10, 1), member(20, 2)];
        let down = HashSet::from([1]);
        assert_eq!(takeover_rank(&voters, &members, &down, 20), Some(0));
        assert_eq!(takeover_rank(&voters, &members, &down, 30), Some(1));
        assert_eq!(takeover_delay(0), Duration::ZERO);
        assert_eq!(takeover_delay(1), Duration::from_millis(750));
        assert_eq!(takeover_delay(2), Duration::from_millis(1_500));
    }

    #[test]
    fn voters_on_down_nodes_and_learners_do_not_count() {
        let voters = BTreeSet::from([10, 20, 30]);
        // A learner (40, node 4) is a member but not a voter.
        let members = [member(10, 1), member(20, 2), member(30, 3), member(40, 4)];
        let down = HashSet::from([1, 2]);
        assert_eq!(
            takeover_rank(&voters, &members, &down, 30),
            Some(0),
            "with nodes 1 and 2 down, replica 30 goes first"
        );
        assert_eq!(takeover_rank(&voters, &members, &down, 40), None);
        assert_eq!(
            takeover_rank(&voters, &members[1..], &HashSet::new(), 20),
            Some(0),
            "a voter missing from the members (node unknown) is skipped"
        );
    }
}
