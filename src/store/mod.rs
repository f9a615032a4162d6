//! The per-shard store: append-only segments for messages, an append-only log for definitions,
//! and group commit.
//!
//! The broker appends records synchronously into memory ([`Store::append_publish`] and
//! friends); the shard's writer task ([`writer`]) takes everything appended so far, writes it
//! with io_uring, syncs once (fdatasync) for the whole batch, and only then releases what waited
//! for it: publisher confirms, declare-ok and bind-ok of durable entities, tx.commit-ok. While
//! one batch is being written and synced, the next one gathers, so one sync covers every record
//! appended since the previous one.
//!
//! Layout under the data directory: `shard-N/seg-XXXXXXXXXX.log` (message records, fixed
//! maximum size, numbered upward), `shard-N/defs.log` (this shard's durable queues; on shard 0
//! also durable exchanges and bindings, in the order they changed), and `meta` (the shard count
//! the files were written for). A segment is deleted once no message in it is live and no ack
//! in it still cancels a message in a segment that exists.
//!
//! Acks are written but never waited for: after a crash an unsynced ack only means a
//! redelivery, flagged `redelivered`, which AMQP allows.

mod files;
mod invariants;
pub mod pager;
pub mod record;
pub mod recover;
pub mod writer;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::Notify;

use crate::counter::decrease;
use crate::message::{Loc, Message};
pub use files::{
    body_of, segment_id, segment_path, shard_dir, BACKLOG_LIMIT_BYTES, DEFS_FILE, META_FILE,
};
use record::Record;

/// When confirms of persistent messages go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncPolicy {
    /// After fdatasync: confirmed means on disk (the default).
    Always,
    /// After the write reaches the kernel: survives a broker crash, not a power loss.
    Never,
}

/// Bookkeeping of one segment.
#[derive(Debug, Default)]
struct Segment {
    /// Publish records in it whose message is still in a queue.
    live: u64,
    /// Segments holding messages that acks in this one cancel (with counts): while any of
    /// them exists, this one must stay, or those messages would come back on recovery.
    cancels: FxHashMap<u32, u32>,
}

/// Bytes waiting for the writer, for one file.
pub struct Chunk {
    pub file: FileId,
    pub offset: u64,
    pub bytes: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileId {
    Segment(u32),
    Defs,
}

/// What the writer takes in one go.
#[derive(Default)]
pub struct Batch {
    pub chunks: Vec<Chunk>,
    /// Every record appended up to here is in `chunks` (or written before).
    pub ticket: u64,
    /// Something waits for these records to be durable.
    pub sync: bool,
    /// Segments to unlink once `chunks` are written.
    pub delete: Vec<u32>,
}

/// `W` is whatever waits for a sync (the broker's confirms and replies): the store keeps
/// them in order and hands them back, never looks inside.
pub struct Store<W> {
    dir: PathBuf,
    segment_size: u64,
    policy: SyncPolicy,
    /// Current segment: id, bytes appended to it so far (written or not).
    current: u32,
    current_len: u64,
    /// Appended, not yet handed to the writer.
    seg_buf: BytesMut,
    seg_buf_offset: u64,
    defs_buf: BytesMut,
    defs_len: u64,
    defs_buf_offset: u64,
    /// Finished parts of earlier segments, not yet handed to the writer.
    sealed: Vec<Chunk>,
    /// Handed to the writer, not yet written: still read from here.
    unwritten: Vec<Chunk>,
    /// Chunks of a batch whose write or sync failed: written again, at the same offsets, with
    /// the next batch (a failed fsync may have dropped them from the page cache), and read
    /// from here meanwhile, so a paged-out body is never lost to a failed write.
    retry: Vec<Chunk>,
    /// Records appended so far; a ticket names a prefix of them.
    appended: u64,
    /// Records known to be durable (or written, under `SyncPolicy::Never`).
    synced: u64,
    /// Someone waits for records after `synced`.
    wanted: bool,
    waiters: VecDeque<(u64, W)>,
    segments: FxHashMap<u32, Segment>,
    /// For each segment, the segments whose acks cancel messages in it.
    cancelled_by: FxHashMap<u32, FxHashSet<u32>>,
    deletable: Vec<u32>,
    /// Wakes the writer task.
    pub wake: Arc<Notify>,
    /// The writer was woken since it last took a batch.
    woken: bool,
}

impl<W> Store<W> {
    /// A store that appends to segment `first_segment` (a fresh id) and to `defs_len` bytes of
    /// an existing definitions log. `live` gives the live count of recovered segments.
    pub fn new(
        dir: PathBuf,
        segment_size: u64,
        policy: SyncPolicy,
        first_segment: u32,
        defs_len: u64,
        live: FxHashMap<u32, u64>,
    ) -> Store<W> {
        let mut segments: FxHashMap<u32, Segment> = live
            .into_iter()
            .map(|(id, live)| {
                (
                    id,
                    Segment {
                        live,
                        ..Segment::default()
                    },
                )
            })
            .collect();
        segments.insert(first_segment, Segment::default());
        Store {
            dir,
            segment_size: segment_size.max(4096),
            policy,
            current: first_segment,
            current_len: 0,
            seg_buf: BytesMut::with_capacity(64 * 1024),
            seg_buf_offset: 0,
            defs_buf: BytesMut::new(),
            defs_len,
            defs_buf_offset: defs_len,
            sealed: Vec::new(),
            unwritten: Vec::new(),
            retry: Vec::new(),
            appended: 0,
            synced: 0,
            wanted: false,
            waiters: VecDeque::new(),
            segments,
            cancelled_by: FxHashMap::default(),
            deletable: Vec::new(),
            wake: Arc::new(Notify::new()),
            woken: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn policy(&self) -> SyncPolicy {
        self.policy
    }

    /// Starts a new segment if `len` more bytes would not fit in the current one.
    fn make_room(&mut self, len: usize) {
        if self.current_len == 0 || self.current_len + len as u64 <= self.segment_size {
            return;
        }
        self.roll();
    }

    /// Seals the current segment and starts the next one.
    fn roll(&mut self) {
        self.seal_current();
        let old = self.current;
        self.current += 1;
        self.current_len = 0;
        self.seg_buf_offset = 0;
        self.segments.insert(self.current, Segment::default());
        self.check_deletable(old);
    }

    fn seal_current(&mut self) {
        if !self.seg_buf.is_empty() {
            let bytes = self.seg_buf.split().freeze();
            self.sealed.push(Chunk {
                file: FileId::Segment(self.current),
                offset: self.seg_buf_offset,
                bytes,
            });
            self.seg_buf_offset = self.current_len;
        }
    }

    fn appended_one(&mut self) {
        self.appended += 1;
        self.wake_writer();
    }

    /// One wake-up per batch: the writer takes everything there is when it looks.
    fn wake_writer(&mut self) {
        if !self.woken {
            self.woken = true;
            self.wake.notify_one();
        }
    }

    /// Appends a publish record; returns where it went.
    pub fn append_publish(
        &mut self,
        queue_id: u64,
        seq: u64,
        redelivered: bool,
        transient: bool,
        msg: &Message,
    ) -> Loc {
        let estimate = msg.body.len() + msg.properties.len() + 64 + 2 * 255;
        self.make_room(estimate);
        let off = self.current_len;
        let len = record::put_publish(
            &mut self.seg_buf,
            queue_id,
            seq,
            redelivered,
            transient,
            msg,
        );
        self.current_len += len as u64;
        if let Some(s) = self.segments.get_mut(&self.current) {
            s.live += 1;
        }
        self.appended_one();
        crate::stats::add(crate::stats::Counter::DiskWrites, 1);
        Loc {
            seg: self.current,
            off: off as u32,
            len: len as u32,
            paged: false,
        }
    }

    /// The message at `loc` left its queue: record that, so recovery does not bring it back.
    pub fn append_ack(&mut self, queue_id: u64, seq: u64, loc: Loc) {
        if !loc.is_stored() {
            return;
        }
        self.make_room(32);
        let len = record::put_ack(&mut self.seg_buf, queue_id, seq);
        self.current_len += len as u64;
        if loc.seg != self.current {
            let current = self.current;
            if let Some(s) = self.segments.get_mut(&current) {
                *s.cancels.entry(loc.seg).or_insert(0) += 1;
            }
            self.cancelled_by
                .entry(loc.seg)
                .or_default()
                .insert(current);
        }
        self.appended_one();
        self.release(loc);
    }

    /// The message at `loc` is gone with no ack record needed (its queue's deletion is
    /// recorded in the definitions).
    pub fn release(&mut self, loc: Loc) {
        if !loc.is_stored() {
            return;
        }
        if let Some(s) = self.segments.get_mut(&loc.seg) {
            decrease(&mut s.live, 1, "live records of a segment");
        }
        self.check_deletable(loc.seg);
    }

    fn check_deletable(&mut self, id: u32) {
        if id == self.current {
            return;
        }
        let Some(s) = self.segments.get(&id) else {
            return;
        };
        if s.live > 0 || !s.cancels.is_empty() {
            return;
        }
        self.segments.remove(&id);
        self.deletable.push(id);
        self.wake_writer();
        // Acks elsewhere that cancelled messages in `id` are no longer needed.
        if let Some(by) = self.cancelled_by.remove(&id) {
            for other in by {
                if let Some(s) = self.segments.get_mut(&other) {
                    s.cancels.remove(&id);
                }
                self.check_deletable(other);
            }
        }
    }

    /// Appends a definition record; whoever needs it durable registers with `after_sync`.
    pub fn append_def(&mut self, record: &Record) {
        let len = record::put_def(&mut self.defs_buf, record);
        self.defs_len += len as u64;
        self.appended_one();
    }

    /// Keeps `waiter` until everything appended so far is durable; hands it back at once
    /// when that is already so.
    pub fn after_sync(&mut self, waiter: W) -> Option<W> {
        if self.synced >= self.appended {
            return Some(waiter);
        }
        self.wanted = true;
        self.waiters.push_back((self.appended, waiter));
        self.wake_writer();
        None
    }

    /// Everything appended since the last batch, for the writer, or None when it has nothing
    /// to do. Every look clears `woken`, so the next record wakes the writer again even when
    /// this look found nothing (a waiter released by the batch in flight woke it for naught).
    pub fn next_batch(&mut self) -> Option<Batch> {
        self.woken = false;
        (!self.idle()).then(|| self.take_batch())
    }

    fn take_batch(&mut self) -> Batch {
        self.seal_current();
        // Failed chunks first (of segments that still exist), then what is new.
        let segments = &self.segments;
        let mut chunks: Vec<Chunk> = std::mem::take(&mut self.retry)
            .into_iter()
            .filter(|c| match c.file {
                FileId::Segment(id) => segments.contains_key(&id),
                FileId::Defs => true,
            })
            .collect();
        chunks.append(&mut self.sealed);
        if !self.defs_buf.is_empty() {
            chunks.push(Chunk {
                file: FileId::Defs,
                offset: self.defs_buf_offset,
                bytes: self.defs_buf.split().freeze(),
            });
            self.defs_buf_offset = self.defs_len;
        }
        let sync = std::mem::take(&mut self.wanted);
        self.unwritten = chunks
            .iter()
            .map(|c| Chunk {
                file: c.file,
                offset: c.offset,
                bytes: c.bytes.clone(),
            })
            .collect();
        let batch = Batch {
            chunks,
            ticket: self.appended,
            sync: sync && self.policy == SyncPolicy::Always,
            delete: std::mem::take(&mut self.deletable),
        };
        debug_assert!(self.check_invariants());
        batch
    }

    /// Bytes appended but not yet written.
    pub fn backlog_bytes(&self) -> usize {
        self.seg_buf.len()
            + self.defs_buf.len()
            + self.sealed.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.unwritten.iter().map(|c| c.bytes.len()).sum::<usize>()
            + self.retry.iter().map(|c| c.bytes.len()).sum::<usize>()
    }

    /// True when the writer has nothing to do.
    pub fn idle(&self) -> bool {
        self.seg_buf.is_empty()
            && self.defs_buf.is_empty()
            && self.sealed.is_empty()
            && self.deletable.is_empty()
            && self.waiters.is_empty()
            && self.retry.is_empty()
    }

    /// The writer wrote everything up to `ticket` (`ok`: without error), and synced it when
    /// `batch_synced`: moves the waiters it covers to `out`, each with whether its records
    /// are durable (false when a write or sync failed: the batch is then written again with
    /// the next one, but what waited on it is told it is not durable).
    pub fn written(&mut self, ticket: u64, batch_synced: bool, ok: bool, out: &mut Vec<(W, bool)>) {
        let batch = std::mem::take(&mut self.unwritten);
        if !ok {
            self.retry = batch;
            // Later records must not land after a hole: start a clean segment.
            if self.current_len > 0 {
                self.roll();
            }
        }
        let durable = ok && (batch_synced || self.policy == SyncPolicy::Never);
        if durable || !ok {
            self.synced = self.synced.max(ticket);
            while self.waiters.front().is_some_and(|(t, _)| *t <= ticket) {
                let Some((_, waiter)) = self.waiters.pop_front() else {
                    break;
                };
                out.push((waiter, ok));
            }
        }
        if !self.waiters.is_empty() {
            self.wanted = true;
        }
        debug_assert!(self.check_invariants());
    }

    /// The framed record at `loc` if it is still in memory, waiting to be written.
    pub fn pending_frame(&self, loc: Loc) -> Option<Bytes> {
        let (off, len) = (u64::from(loc.off), loc.len as usize);
        if loc.seg == self.current && off >= self.seg_buf_offset {
            let at = (off - self.seg_buf_offset) as usize;
            return self.seg_buf.get(at..at + len).map(Bytes::copy_from_slice);
        }
        self.sealed
            .iter()
            .chain(self.unwritten.iter())
            .chain(self.retry.iter())
            .filter(|c| c.file == FileId::Segment(loc.seg))
            .find(|c| c.offset <= off && off + len as u64 <= c.offset + c.bytes.len() as u64)
            .map(|c| {
                let at = (off - c.offset) as usize;
                c.bytes.slice(at..at + len)
            })
    }

    pub fn segment_path(&self, id: u32) -> PathBuf {
        segment_path(&self.dir, id)
    }

    pub fn defs_path(&self) -> PathBuf {
        self.dir.join(DEFS_FILE)
    }
}

#[cfg(test)]
mod tests;
