//! The sled side of a round, applied in queue order once the round's journal records are
//! written: purge positions, key-value changes (leaving the overlay once sled has them) and the
//! group registry; and sled flushes, after which purges count as durable.

use std::io;
use std::time::Instant;

use super::Writer;
use super::warn_if_slow;
use crate::KvOp;
use crate::disk::Op;
use crate::disk::Stats;
use crate::group_space;
use crate::lock;
use crate::meta::GroupMeta;
use crate::meta::group_key;
use crate::meta::sled_io_error;
use crate::read_lock;
use crate::write_lock;

impl Writer {
    /// Applies the sled side of the batch, in order. Key-value changes leave the overlay only
    /// after sled has them, so readers always see them in one place or the other.
    pub(super) fn apply_sled_ops(&mut self, batch: &[(u64, Op)]) -> io::Result<()> {
        let created_at = self.journal.position();
        for (seq, op) in batch {
            match op {
                Op::Purge { group, upto } => {
                    let Some(meta) = self.metas.get_mut(group) else {
                        continue;
                    };
                    if meta.purged.is_some_and(|purged| purged.index >= upto.index) {
                        continue;
                    }
                    meta.purged = Some(*upto);
                    self.groups_tree
                        .insert(group_key(*group), meta.encode())
                        .map_err(sled_io_error)?;
                    self.unflushed_purges.insert(*group, upto.index);
                    self.sled_dirty = true;
                }
                Op::Kv { space, ops, .. } => {
                    let tree = self.tree_for_write(space)?;
                    let mut sled_batch = sled::Batch::default();
                    for kv_op in ops {
                        match kv_op {
                            KvOp::Put(key, value) => {
                                sled_batch.insert(key.as_slice(), value.as_slice())
                            }
                            KvOp::Delete(key) => sled_batch.remove(key.as_slice()),
                        }
                    }
                    tree.apply_batch(sled_batch).map_err(sled_io_error)?;
                    self.retire_overlay(space, ops, *seq);
                    self.sled_dirty = true;
                }
                Op::CreateGroup { group, .. } => {
                    let meta = GroupMeta {
                        created_at,
                        purged: None,
                    };
                    self.groups_tree
                        .insert(group_key(*group), meta.encode())
                        .map_err(sled_io_error)?;
                    self.metas.insert(*group, meta);
                    self.durable_purged.remove(group);
                    self.unflushed_purges.remove(group);
                    self.sled_dirty = true;
                }
                Op::DropGroup { group, .. } => {
                    self.groups_tree
                        .remove(group_key(*group))
                        .map_err(sled_io_error)?;
                    self.metas.remove(group);
                    self.durable_purged.remove(group);
                    self.unflushed_purges.remove(group);
                    for info in self.segments.values_mut() {
                        info.pins.remove(group);
                    }
                    let space = group_space(*group);
                    write_lock(&self.shared.trees).remove(&space);
                    self.shared
                        .db
                        .drop_tree(space.as_bytes())
                        .map_err(sled_io_error)?;
                    lock(&self.shared.overlay).remove(&space);
                    self.sled_dirty = true;
                    self.maintenance_due = true;
                }
                Op::Append { .. } | Op::Truncate { .. } | Op::Flush { .. } => {}
            }
        }
        Ok(())
    }

    fn tree_for_write(&self, space: &str) -> io::Result<sled::Tree> {
        if let Some(tree) = read_lock(&self.shared.trees).get(space) {
            return Ok(tree.clone());
        }
        let tree = self
            .shared
            .db
            .open_tree(space.as_bytes())
            .map_err(sled_io_error)?;
        write_lock(&self.shared.trees).insert(space.to_string(), tree.clone());
        Ok(tree)
    }

    fn retire_overlay(&self, space: &str, ops: &[KvOp], seq: u64) {
        let mut overlay = lock(&self.shared.overlay);
        let Some(entries) = overlay.get_mut(space) else {
            return;
        };
        for kv_op in ops {
            let key = match kv_op {
                KvOp::Put(key, _) | KvOp::Delete(key) => key,
            };
            // A later write of the same key stays until it is applied too.
            if entries
                .get(key)
                .is_some_and(|(entry_seq, _)| *entry_seq == seq)
            {
                entries.remove(key);
            }
        }
        if entries.is_empty() {
            overlay.remove(space);
        }
    }

    pub(super) fn flush_sled(&mut self) -> io::Result<()> {
        let started = Instant::now();
        self.shared.db.flush().map_err(sled_io_error)?;
        warn_if_slow(started, "sled flush");
        Stats::add(&self.shared.stats.sled_flushes, 1);
        self.sled_dirty = false;
        self.last_sled_flush = Instant::now();
        if !self.unflushed_purges.is_empty() {
            for (group, index) in self.unflushed_purges.drain() {
                let durable = self.durable_purged.entry(group).or_insert(index);
                *durable = (*durable).max(index);
            }
            self.maintenance_due = true;
        }
        Ok(())
    }
}
