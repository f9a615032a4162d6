//! The writer task of a shard's store: takes what the broker appended, writes it through
//! io_uring, syncs once per batch when something waits for durability, unlinks segments that
//! are no longer needed, and releases the confirms and replies that waited.

use std::rc::Rc;

use rustc_hash::{FxHashMap, FxHashSet};
use tokio_uring::fs::File;

use super::{Batch, FileId};
use crate::shard::Shard;

pub async fn run(shard: Rc<Shard>) {
    let Some((wake, dir)) = shard
        .broker
        .borrow()
        .store()
        .map(|s| (s.wake.clone(), s.dir().to_path_buf()))
    else {
        return;
    };
    let mut files: FxHashMap<FileId, Rc<File>> = FxHashMap::default();
    // Written since their last sync.
    let mut dirty: FxHashSet<FileId> = FxHashSet::default();
    let mut released = Vec::new();
    loop {
        let batch = {
            let mut broker = shard.broker.borrow_mut();
            match broker.store_mut() {
                Some(store) if !store.idle() => Some(store.take_batch()),
                _ => None,
            }
        };
        let Some(batch) = batch else {
            wake.notified().await;
            continue;
        };
        let Batch {
            chunks,
            ticket,
            sync,
            delete,
        } = batch;
        let mut ok = true;
        for chunk in chunks {
            let file = match files.get(&chunk.file) {
                Some(f) => f.clone(),
                None => match open(&dir, chunk.file) {
                    Ok(f) => {
                        let f = Rc::new(f);
                        files.insert(chunk.file, f.clone());
                        f
                    }
                    Err(err) => {
                        crate::error!(
                            "store {}: cannot open {:?}: {err}",
                            dir.display(),
                            chunk.file
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            let (res, _) = file.write_all_at(chunk.bytes, chunk.offset).await;
            if let Err(err) = res {
                crate::error!(
                    "store {}: write to {:?} failed: {err}",
                    dir.display(),
                    chunk.file
                );
                ok = false;
            }
            dirty.insert(chunk.file);
        }
        if sync && ok {
            for id in dirty.drain() {
                if let Some(file) = files.get(&id) {
                    if let Err(err) = file.sync_data().await {
                        crate::error!(
                            "store {}: fdatasync of {:?} failed: {err}",
                            dir.display(),
                            id
                        );
                        ok = false;
                    }
                }
            }
        }
        // Only the newest segment and the definitions log are written again.
        let newest = files
            .keys()
            .filter_map(|f| match f {
                FileId::Segment(id) => Some(*id),
                FileId::Defs => None,
            })
            .max();
        files.retain(|id, _| match id {
            FileId::Segment(s) => Some(*s) == newest || dirty.contains(id),
            FileId::Defs => true,
        });
        for id in delete {
            files.remove(&FileId::Segment(id));
            dirty.remove(&FileId::Segment(id));
            let path = super::segment_path(&dir, id);
            if let Err(err) = tokio_uring::fs::remove_file(&path).await {
                if err.kind() != std::io::ErrorKind::NotFound {
                    crate::warn!("store: cannot delete {}: {err}", path.display());
                }
            }
        }
        {
            let mut broker = shard.broker.borrow_mut();
            if let Some(store) = broker.store_mut() {
                store.written(ticket, sync, ok, &mut released);
            }
        }
        for (target, msg) in released.drain(..) {
            shard.send(target, msg);
        }
        shard.flush();
    }
}

/// Opens (creating if needed) a store file for appending at explicit offsets. A new segment's
/// directory entry is synced so that the file itself survives a power loss.
fn open(dir: &std::path::Path, id: FileId) -> std::io::Result<File> {
    let path = match id {
        FileId::Segment(s) => super::segment_path(dir, s),
        FileId::Defs => dir.join(super::DEFS_FILE),
    };
    let existed = path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&path)?;
    if !existed {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(File::from_std(file))
}
