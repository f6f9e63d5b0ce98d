//! Where shard replicas go: pure functions of the control state, so every metadata replica
//! computes the same placement.
//!
//! Rules: replicas of one shard on distinct nodes, in distinct AZs whenever there are enough
//! AZs; nodes being drained or known down (`avoid`, passed in by the proposer so that the
//! result stays deterministic) only when nothing else is left; among equals, the nodes holding
//! the fewest replicas; the first replica (the preferred leader) on the chosen node leading the
//! fewest shards.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use crate::model::ControlState;
use crate::model::NodeRecord;

/// Replica and preferred-leader counts per node, updated as a command places shards.
pub struct Placer {
    nodes: Vec<NodeRecord>,
    avoid: BTreeSet<u64>,
    replicas: BTreeMap<u64, usize>,
    leaders: BTreeMap<u64, usize>,
}

impl Placer {
    pub fn new(state: &ControlState, avoid: &[u64]) -> Placer {
        let nodes: Vec<NodeRecord> = state.nodes.values().cloned().collect();
        let avoid: BTreeSet<u64> = nodes
            .iter()
            .filter(|node| node.draining || avoid.contains(&node.id))
            .map(|node| node.id)
            .collect();
        let mut replicas: BTreeMap<u64, usize> = nodes.iter().map(|node| (node.id, 0)).collect();
        let mut leaders = replicas.clone();
        for stream in state.streams.values() {
            for shard in &stream.shards {
                for replica in &shard.replicas {
                    *replicas.entry(replica.node).or_default() += 1;
                }
                if let Some(first) = shard.replicas.first() {
                    *leaders.entry(first.node).or_default() += 1;
                }
            }
        }
        Placer {
            nodes,
            avoid,
            replicas,
            leaders,
        }
    }

    /// Chooses `replication_factor` nodes (fewer if the cluster is smaller), preferred leader
    /// first. Empty when no node is registered.
    pub fn place(&mut self, replication_factor: usize) -> Vec<u64> {
        let wanted = replication_factor.max(1).min(self.nodes.len());
        let mut chosen: Vec<u64> = Vec::with_capacity(wanted);
        let mut used_azs: BTreeSet<&str> = BTreeSet::new();
        while chosen.len() < wanted {
            // Prefer an unused AZ; within that, the least loaded node; ties by id.
            let candidate = self
                .nodes
                .iter()
                .filter(|node| !chosen.contains(&node.id))
                .min_by_key(|node| {
                    (
                        self.avoid.contains(&node.id),
                        used_azs.contains(node.az.as_str()),
                        self.replicas.get(&node.id).copied().unwrap_or(0),
                        node.id,
                    )
                });
            let Some(node) = candidate else { break };
            used_azs.insert(node.az.as_str());
            chosen.push(node.id);
        }
        if let Some(leader_slot) = (0..chosen.len()).min_by_key(|&slot| {
            (
                self.avoid.contains(&chosen[slot]),
                self.leaders.get(&chosen[slot]).copied().unwrap_or(0),
                chosen[slot],
            )
        }) {
            chosen.swap(0, leader_slot);
        }
        for node in &chosen {
            *self.replicas.entry(*node).or_default() += 1;
        }
        if let Some(leader) = chosen.first() {
            *self.leaders.entry(*leader).or_default() += 1;
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(nodes: &[(u64, &str)]) -> ControlState {
        let mut state = ControlState::default();
        for (id, az) in nodes {
            state.nodes.insert(
                *id,
                NodeRecord {
                    id: *id,
                    peer_addr: String::new(),
                    api_addr: String::new(),
                    az: (*az).to_string(),
                    draining: false,
                },
            );
        }
        state
    }

    #[test]
    fn replicas_land_in_distinct_azs_and_leaders_spread() {
        let state = state(&[(1, "az-a"), (2, "az-b"), (3, "az-c"), (4, "az-a")]);
        let mut placer = Placer::new(&state, &[]);
        let mut leader_counts: BTreeMap<u64, usize> = BTreeMap::new();
        for _ in 0..12 {
            let nodes = placer.place(3);
            assert_eq!(nodes.len(), 3);
            let azs: BTreeSet<&str> = nodes.iter().map(|id| state.nodes[id].az.as_str()).collect();
            assert_eq!(azs.len(), 3, "replicas {nodes:?} share an AZ");
            *leader_counts.entry(nodes[0]).or_default() += 1;
        }
        assert_eq!(
            leader_counts.values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3, 3]
        );
    }

    #[test]
    fn small_clusters_cap_the_replication_factor() {
        let state = state(&[(7, "az-a")]);
        assert_eq!(Placer::new(&state, &[]).place(3), vec![7]);
        assert!(
            Placer::new(&ControlState::default(), &[])
                .place(3)
                .is_empty()
        );
    }

    #[test]
    fn avoided_and_draining_nodes_come_last() {
        let mut state = state(&[(1, "az-a"), (2, "az-b"), (3, "az-c"), (4, "az-a")]);
        state.nodes.get_mut(&2).unwrap().draining = true;
        let nodes = Placer::new(&state, &[3]).place(2);
        assert_eq!(nodes.len(), 2);
        assert!(!nodes.contains(&2) && !nodes.contains(&3), "{nodes:?}");
        // With nothing else left they are still used (a replica to repair beats none).
        let nodes = Placer::new(&state, &[3]).place(4);
        assert_eq!(nodes.len(), 4);
        assert!(
            nodes[0] != 2 && nodes[0] != 3,
            "the preferred leader is on a usable node"
        );
    }

    #[test]
    fn one_az_still_spreads_over_nodes() {
        let state = state(&[(1, "az-a"), (2, "az-a"), (3, "az-a")]);
        let mut placer = Placer::new(&state, &[]);
        let nodes = placer.place(3);
        let distinct: BTreeSet<u64> = nodes.iter().copied().collect();
        assert_eq!(distinct.len(), 3);
    }
}
