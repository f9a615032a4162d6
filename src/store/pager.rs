//! Reads bodies of paged-out messages back from the store, just before a queue delivers
//! them. A queue asks by leaving a request with its shard; the shard hands the pager a
//! [`PagerHost`] through which it takes the requests and returns the bodies.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use crate::ids::QueueRef;
use crate::io::fs::File;
use crate::message::Loc;

/// Bodies wanted by one queue: (queue position, where the record is).
pub type PageRequest = (QueueRef, Vec<(u64, Loc)>);

/// What the pager needs from the shard that owns the store.
pub trait PagerHost {
    fn take_page_requests(&self) -> Vec<PageRequest>;
    /// The record at `loc` if it is still in memory, waiting to be written.
    fn pending_frame(&self, loc: Loc) -> Option<Bytes>;
    /// Bodies read back for `queue`, as (queue position, body).
    fn paged_in(&self, queue: QueueRef, bodies: &mut Vec<(u64, Bytes)>);
}

/// Segments kept open between requests, at most this many.
const OPEN_SEGMENTS_MAX: usize = 64;

pub async fn run<H: PagerHost>(host: Rc<H>, wake: Rc<Notify>, dir: PathBuf) {
    let mut files: FxHashMap<u32, Rc<File>> = FxHashMap::default();
    let mut bodies = Vec::new();
    loop {
        let requests = host.take_page_requests();
        if requests.is_empty() {
            wake.notified().await;
            continue;
        }
        for (queue, items) in requests {
            for (seq, loc) in items {
                let frame = match host.pending_frame(loc) {
                    Some(frame) => Ok(frame),
                    None => read_frame(&mut files, &dir, loc).await,
                };
                match frame.and_then(|f| super::body_of(&f)) {
                    Ok(body) => bodies.push((seq, body)),
                    Err(err) => crate::error!(
                        "store {}: cannot read a paged message back from segment {}: {err}",
                        dir.display(),
                        loc.seg
                    ),
                }
            }
            host.paged_in(queue, &mut bodies);
        }
        if files.len() > OPEN_SEGMENTS_MAX {
            files.clear();
        }
    }
}

/// Reads the framed record at `loc` from its segment file.
async fn read_frame(
    files: &mut FxHashMap<u32, Rc<File>>,
    dir: &Path,
    loc: Loc,
) -> std::io::Result<Bytes> {
    let file = match files.get(&loc.seg) {
        Some(f) => f.clone(),
        None => {
            let f = Rc::new(File::open_read(&super::segment_path(dir, loc.seg)).await?);
            files.insert(loc.seg, f.clone());
            f
        }
    };
    crate::stats::add(crate::stats::Counter::DiskReads, 1);
    file.read_exact_at(loc.len as usize, u64::from(loc.off))
        .await
}
