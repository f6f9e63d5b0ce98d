//! Where a routed call goes next, as pure functions of what routing has learned: the first
//! guess of a shard's leader ([`leader_guess`]) and the walk over the replicas after a miss
//! ([`Route`]). The loop that acts on them is [`super::Node::on_shard_leader`].

use riffle_control::model::ShardRecord;

/// The node to try first for a shard: the last one that answered as leader, else this node if
/// its replica leads, else the leader recorded in the control state, else the preferred (first)
/// replica.
pub(crate) fn leader_guess(
    cached: Option<u64>,
    leads_here: bool,
    me: u64,
    shard: &ShardRecord,
) -> u64 {
    if let Some(node) = cached {
        return node;
    }
    if leads_here {
        return me;
    }
    shard
        .leader
        .or_else(|| shard.replicas.first().map(|replica| replica.node))
        .unwrap_or(me)
}

/// What routing does after an attempt that found no leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Follow the not-leader hint: try the named node now (the leader cache is kept).
    FollowHint,
    /// Try the next replica (after a pause when every replica has said no).
    Next { pause: bool },
    /// Past the deadline: the shard has no reachable leader.
    GiveUp,
}

/// Where a routed call goes next: a pure state machine over the shard's replicas.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    replicas: Vec<u64>,
    candidate: u64,
    misses: usize,
}

impl Route {
    pub(crate) fn new(replicas: Vec<u64>, first: u64) -> Route {
        Route {
            replicas,
            candidate: first,
            misses: 0,
        }
    }

    /// The node to try now.
    pub(crate) fn candidate(&self) -> u64 {
        self.candidate
    }

    /// The candidate answered not-leader (with its hint) or was unreachable (`hint` is
    /// `None`). A hint naming another replica of the shard is followed at once; otherwise the
    /// next replica in placement order is tried, until `past_deadline`.
    pub(crate) fn after_miss(&mut self, hint: Option<u64>, past_deadline: bool) -> Step {
        if let Some(hint) = hint
            && hint != self.candidate
            && self.replicas.contains(&hint)
        {
            self.candidate = hint;
            return Step::FollowHint;
        }
        self.misses += 1;
        let position = self
            .replicas
            .iter()
            .position(|node| *node == self.candidate)
            .unwrap_or(0);
        self.candidate = self
            .replicas
            .get((position + 1) % self.replicas.len().max(1))
            .copied()
            .unwrap_or(self.candidate);
        if past_deadline {
            return Step::GiveUp;
        }
        Step::Next {
            pause: self.misses.is_multiple_of(self.replicas.len().max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::shard_on;

    #[test]
    fn the_first_guess_is_the_cache_then_this_node_then_the_recorded_leader_then_the_first_replica()
    {
        let mut shard = shard_on(&[1, 2, 3]);
        shard.leader = Some(3);
        assert_eq!(leader_guess(Some(2), true, 1, &shard), 2, "the cache wins");
        assert_eq!(
            leader_guess(None, true, 1, &shard),
            1,
            "then a local leader"
        );
        assert_eq!(
            leader_guess(None, false, 1, &shard),
            3,
            "then the recorded leader"
        );
        shard.leader = None;
        assert_eq!(
            leader_guess(None, false, 2, &shard),
            1,
            "then the first replica"
        );
        shard.replicas.clear();
        assert_eq!(leader_guess(None, false, 2, &shard), 2, "else this node");
    }

    #[test]
    fn a_hint_naming_another_replica_is_followed_at_once() {
        let mut route = Route::new(vec![1, 2, 3], 1);
        assert_eq!(route.after_miss(Some(3), false), Step::FollowHint);
        assert_eq!(route.candidate(), 3);
        // Not a replica of the shard (a stale hint), or the node that answered: move on.
        assert_eq!(
            route.after_miss(Some(9), false),
            Step::Next { pause: false }
        );
        assert_eq!(
            route.candidate(),
            1,
            "after 3 comes 1 (placement order wraps)"
        );
        assert_eq!(
            route.after_miss(Some(1), false),
            Step::Next { pause: false }
        );
        assert_eq!(route.candidate(), 2);
    }

    #[test]
    fn an_unreachable_node_moves_the_call_to_the_next_replica_pausing_after_each_round() {
        let mut route = Route::new(vec![1, 2, 3], 2);
        let mut tried = vec![route.candidate()];
        let mut pauses = Vec::new();
        for _ in 0..6 {
            match route.after_miss(None, false) {
                Step::Next { pause } => pauses.push(pause),
                other => panic!("expected the next replica, got {other:?}"),
            }
            tried.push(route.candidate());
        }
        assert_eq!(tried, [2, 3, 1, 2, 3, 1, 2]);
        assert_eq!(
            pauses,
            [false, false, true, false, false, true],
            "a pause once every replica has said no"
        );
    }

    #[test]
    fn a_guess_outside_the_replicas_moves_to_the_second_replica() {
        // A cached leader that no longer hosts the shard counts as the first replica's place.
        let mut route = Route::new(vec![4, 5, 6], 9);
        assert_eq!(route.after_miss(None, false), Step::Next { pause: false });
        assert_eq!(route.candidate(), 5);
    }

    #[test]
    fn routing_gives_up_past_the_deadline() {
        let mut route = Route::new(vec![1, 2, 3], 1);
        assert_eq!(route.after_miss(None, false), Step::Next { pause: false });
        assert_eq!(route.after_miss(None, true), Step::GiveUp);
        assert_eq!(
            route.after_miss(Some(9), true),
            Step::GiveUp,
            "a hint outside the replicas changes nothing"
        );
    }
}
