//! Where a store keeps its files, and reading a body back out of a framed record.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::{self, Record};

/// The body of a framed publish record.
pub fn body_of(frame: &Bytes) -> std::io::Result<Bytes> {
    match record::next(frame) {
        record::Next::Record(Record::Publish { msg, .. }, _) => Ok(msg.body),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "store: no intact publish record where a paged message should be",
        )),
    }
}

/// Most bytes a shard's store holds in memory waiting for the writer before the shard stops
/// taking new messages. Persistent messages are held back by their confirms anyway; this
/// bounds what paged-out transient bodies (confirmed on enqueue) can pile up.
pub const BACKLOG_LIMIT_BYTES: usize = 8 << 20;

pub const DEFS_FILE: &str = "defs.log";
pub const META_FILE: &str = "meta";

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

pub fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("seg-{id:010}.log"))
}

/// The segment id in a file name made by [`segment_path`].
pub fn segment_id(name: &str) -> Option<u32> {
    name.strip_prefix("seg-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}
