//! The writer task of a shard's store: takes what the broker appended, writes it through the
//! I/O seam, syncs once per batch when something waits for durability, unlinks segments that
//! are no longer needed, and reports back so that what waited for the sync is released.
//!
//! The store does not know who owns it: the shard hands the writer a [`WriterHost`].

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::Notify;

use super::{Batch, Chunk, FileId};
use crate::io::fs::{self, File};
use crate::io::time;

/// How long the writer waits after a failed batch before writing it again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// What the writer needs from the shard that owns the store.
pub trait WriterHost {
    /// Everything appended since the last batch, or None when there is nothing to do.
    fn take_batch(&self) -> Option<Batch>;
    /// Everything up to `ticket` was written (`ok`: without error), and synced when `synced`.
    fn written(&self, ticket: u64, synced: bool, ok: bool);
}

/// Open files of the store, and those written since their last sync.
struct Files {
    dir: PathBuf,
    open: FxHashMap<FileId, Rc<File>>,
    dirty: FxHashSet<FileId>,
}

pub async fn run<H: WriterHost>(host: Rc<H>, wake: Arc<Notify>, dir: PathBuf) {
    let mut files = Files {
        dir,
        open: FxHashMap::default(),
        dirty: FxHashSet::default(),
    };
    // Records are numbered by ticket: a group commit made durable those after this one.
    let mut synced_ticket = 0;
    loop {
        let Some(batch) = host.take_batch() else {
            wake.notified().await;
            continue;
        };
        let Batch {
            chunks,
            ticket,
            sync,
            delete,
        } = batch;
        let mut ok = files.write(chunks).await;
        if sync && ok {
            ok = files.sync().await;
            if ok {
                commit_done(&mut synced_ticket, ticket);
            }
        }
        files.forget_old();
        files.delete(delete).await;
        host.written(ticket, sync, ok);
        if !ok {
            // The failed chunks come back with the next batch; give the disk a moment.
            time::sleep(RETRY_AFTER).await;
        }
    }
}

/// Counts a group commit's records for the shard's metrics; a sync that made no new record
/// durable (after a failed write was retried) is not one.
fn commit_done(synced_ticket: &mut u64, ticket: u64) {
    let records = ticket.saturating_sub(*synced_ticket);
    if records > 0 {
        crate::stats::shard_metrics::group_commit(records);
    }
    *synced_ticket = ticket.max(*synced_ticket);
}

impl Files {
    /// Writes every chunk; false when any write failed.
    async fn write(&mut self, chunks: Vec<Chunk>) -> bool {
        let mut ok = true;
        for chunk in chunks {
            let file = match self.file(chunk.file).await {
                Ok(f) => f,
                Err(err) => {
                    crate::error!(
                        "store {}: cannot open {:?}: {err}",
                        self.dir.display(),
                        chunk.file
                    );
                    ok = false;
                    continue;
                }
            };
            if let Err(err) = file.write_all_at(chunk.bytes, chunk.offset).await {
                crate::error!(
                    "store {}: write to {:?} failed: {err}",
                    self.dir.display(),
                    chunk.file
                );
                ok = false;
            }
            self.dirty.insert(chunk.file);
        }
        ok
    }

    /// fdatasync of every file written since its last sync.
    async fn sync(&mut self) -> bool {
        let mut ok = true;
        for id in self.dirty.drain() {
            if let Some(file) = self.open.get(&id) {
                if let Err(err) = file.sync_data().await {
                    crate::error!(
                        "store {}: fdatasync of {id:?} failed: {err}",
                        self.dir.display()
                    );
                    ok = false;
                }
            }
        }
        ok
    }

    async fn file(&mut self, id: FileId) -> std::io::Result<Rc<File>> {
        if let Some(f) = self.open.get(&id) {
            return Ok(f.clone());
        }
        let f = Rc::new(open(&self.dir, id).await?);
        self.open.insert(id, f.clone());
        Ok(f)
    }

    /// Only the newest segment and the definitions log are written again.
    fn forget_old(&mut self) {
        let newest = self
            .open
            .keys()
            .filter_map(|f| match f {
                FileId::Segment(id) => Some(*id),
                FileId::Defs => None,
            })
            .max();
        let dirty = &self.dirty;
        self.open.retain(|id, _| match id {
            FileId::Segment(s) => Some(*s) == newest || dirty.contains(id),
            FileId::Defs => true,
        });
    }

    async fn delete(&mut self, segments: Vec<u32>) {
        for id in segments {
            self.open.remove(&FileId::Segment(id));
            self.dirty.remove(&FileId::Segment(id));
            let path = super::segment_path(&self.dir, id);
            if let Err(err) = fs::remove_file(&path).await {
                if err.kind() != std::io::ErrorKind::NotFound {
                    crate::warn!("store: cannot delete {}: {err}", path.display());
                }
            }
        }
    }
}

/// Opens (creating if needed) a store file for writing at explicit offsets. A new segment's
/// directory entry is synced so that the file itself survives a power loss.
async fn open(dir: &Path, id: FileId) -> std::io::Result<File> {
    let path = match id {
        FileId::Segment(s) => super::segment_path(dir, s),
        FileId::Defs => dir.join(super::DEFS_FILE),
    };
    let existed = path.exists();
    let file = File::open_rw(&path).await?;
    if !existed {
        fs::sync_dir(dir).await?;
    }
    Ok(file)
}
