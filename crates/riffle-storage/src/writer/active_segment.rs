//! The segment being appended to: records are staged into one buffer, written with one
//! `pwrite`, made durable with one `fdatasync` (and a directory sync when a segment was
//! created), and the segment is rolled when the next record would not fit.

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use super::warn_if_slow;
use crate::disk::Location;
use crate::disk::MAX_SEGMENT_SEQ;
use crate::disk::Stats;
use crate::journal;
use crate::journal::SEGMENT_HEADER_LEN;
use crate::meta::JournalPos;
use crate::recovery::ActiveSegment;

/// The staging buffer is given back to the allocator after a round larger than this.
const KEEP_BUFFER_BYTES: usize = 16 << 20;

/// Appends to the active segment and rolls segments.
pub(super) struct JournalWriter {
    pub(super) dir: PathBuf,
    segment_bytes: u64,
    pub(super) seq: u64,
    file: File,
    /// Bytes written to `file`.
    len: u64,
    /// Bytes staged for `file`, to be written at `len`.
    buf: Vec<u8>,
    /// Written but not yet synced.
    unsynced: bool,
    /// A segment was created since the last directory sync.
    created: bool,
    /// A segment was rolled since the journal thread last looked.
    pub(super) rolled: bool,
}

impl JournalWriter {
    /// Continues the active segment that recovery found.
    pub(super) fn new(dir: PathBuf, segment_bytes: u64, active: ActiveSegment) -> Self {
        JournalWriter {
            dir,
            segment_bytes,
            seq: active.seq,
            file: active.file,
            len: active.len,
            buf: Vec::new(),
            unsynced: false,
            created: false,
            rolled: false,
        }
    }

    /// Where the next record goes.
    pub(super) fn position(&self) -> JournalPos {
        JournalPos {
            seq: self.seq,
            offset: self.len + self.buf.len() as u64,
        }
    }

    /// Stages a record of `record_len` bytes written by `encode`, rolling first if it does not
    /// fit. Returns its location.
    pub(super) fn stage(
        &mut self,
        stats: &Stats,
        record_len: u64,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<Location> {
        let offset = self.len + self.buf.len() as u64;
        if offset > SEGMENT_HEADER_LEN && offset + record_len > self.segment_bytes {
            self.roll(stats)?;
        }
        let offset = self.len + self.buf.len() as u64;
        let staged_before = self.buf.len();
        encode(&mut self.buf);
        debug_assert_eq!((self.buf.len() - staged_before) as u64, record_len);
        let out_of_range = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("journal {what} out of range"),
            )
        };
        Ok(Location {
            segment: u32::try_from(self.seq).map_err(|_| out_of_range("segment number"))?,
            offset: u32::try_from(offset).map_err(|_| out_of_range("offset"))?,
            len: u32::try_from(record_len).map_err(|_| out_of_range("record length"))?,
        })
    }

    fn write_staged(&mut self, stats: &Stats) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.buf, self.len)?;
        self.len += self.buf.len() as u64;
        Stats::add(&stats.journal_bytes, self.buf.len() as u64);
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.unsynced = true;
        Ok(())
    }

    fn sync(&mut self, stats: &Stats) -> io::Result<()> {
        if self.unsynced {
            let started = Instant::now();
            self.file.sync_data()?;
            warn_if_slow(started, "journal fdatasync");
            Stats::add(&stats.data_syncs, 1);
            self.unsynced = false;
        }
        Ok(())
    }

    /// Finishes the active segment (written and synced *before* the next one exists, so only
    /// the newest segment can hold a torn write) and starts the next.
    fn roll(&mut self, stats: &Stats) -> io::Result<()> {
        self.write_staged(stats)?;
        self.sync(stats)?;
        let next_seq = self.seq + 1;
        if next_seq > MAX_SEGMENT_SEQ {
            return Err(io::Error::other("journal segment numbers exhausted"));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(journal::segment_path(&self.dir, next_seq))?;
        self.file = file;
        self.seq = next_seq;
        self.len = 0;
        self.buf
            .extend_from_slice(&journal::segment_header(next_seq));
        self.created = true;
        self.rolled = true;
        Stats::add(&stats.segments_created, 1);
        Ok(())
    }

    /// Writes and syncs everything staged.
    pub(super) fn commit(&mut self, stats: &Stats) -> io::Result<()> {
        self.write_staged(stats)?;
        self.sync(stats)?;
        if self.created {
            journal::sync_dir(&self.dir)?;
            Stats::add(&stats.dir_syncs, 1);
            self.created = false;
        }
        Ok(())
    }
}
