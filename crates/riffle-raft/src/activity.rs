//! What hibernation and liveness need to know about a group without asking openraft: whether
//! it is awake, when it was last active, and when AppendEntries last arrived.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use riffle_storage::GroupId;

/// The groups of a node that are awake (ticking), so that periodic work can visit only them:
/// a node may host thousands of sleeping groups, and touching each costs memory traffic.
#[derive(Debug, Default)]
pub struct AwakeSet {
    groups: std::sync::Mutex<HashSet<GroupId>>,
}

impl AwakeSet {
    pub(crate) fn set(&self, group: GroupId, awake: bool) {
        let mut groups = match self.groups.lock() {
            Ok(groups) => groups,
            Err(poisoned) => poisoned.into_inner(),
        };
        if awake {
            groups.insert(group);
        } else {
            groups.remove(&group);
        }
    }

    /// The awake groups right now.
    pub fn snapshot(&self) -> Vec<GroupId> {
        match self.groups.lock() {
            Ok(groups) => groups.iter().copied().collect(),
            Err(poisoned) => poisoned.into_inner().iter().copied().collect(),
        }
    }

    /// Forgets a group that stopped.
    pub fn forget(&self, group: GroupId) {
        self.set(group, false);
    }
}

/// What hibernation needs to know about a group, shared by its handles.
#[derive(Debug)]
pub(crate) struct Activity {
    pub(crate) group: GroupId,
    pub(crate) awake_set: Option<Arc<AwakeSet>>,
    pub(crate) hibernating: AtomicBool,
    /// When this replica last proposed, read or was woken (ms since `epoch`).
    pub(crate) last_active_ms: AtomicU64,
    /// Whether this replica has proposed or served a read barrier since it started.
    pub(crate) served: AtomicBool,
    /// When this replica last received AppendEntries (a heartbeat included), ms since `epoch`;
    /// `u64::MAX` if never.
    pub(crate) last_append_ms: AtomicU64,
    pub(crate) epoch: Instant,
}

impl Activity {
    pub(crate) fn touch(&self) {
        self.last_active_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn mark_append(&self) {
        self.last_append_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether AppendEntries arrived within `window`.
    pub(crate) fn appended_within(&self, window: Duration) -> bool {
        let last = self.last_append_ms.load(Ordering::Relaxed);
        last != u64::MAX
            && (self.epoch.elapsed().as_millis() as u64).saturating_sub(last)
                < window.as_millis() as u64
    }

    pub(crate) fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)))
    }
}
