//! File work of recovery: listing shard directories, scanning records, writing fresh
//! segments and replacing definition logs atomically. Recovery runs before any shard, on the
//! main thread, so plain blocking I/O is right here.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::message::Loc;
use crate::store::record::{self, Next, Record};
use crate::store::segment_path;

/// `shard-N` directories under `data_dir`, by N.
pub(super) fn shard_dirs(data_dir: &Path) -> io::Result<BTreeMap<usize, PathBuf>> {
    let mut dirs = BTreeMap::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let index = name
            .to_str()
            .and_then(|n| n.strip_prefix("shard-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let (Some(index), true) = (index, entry.file_type()?.is_dir()) {
            dirs.insert(index, entry.path());
        }
    }
    Ok(dirs)
}

/// Calls `each(record, offset, framed bytes)` for every intact record of the file at `path`.
/// A corrupt stretch in the middle (a failed write's hole, a damaged sector) is skipped up to
/// the next intact record, so the records after it survive; only a torn or corrupt tail,
/// with no intact record after it, is truncated.
pub(super) fn scan(path: &Path, mut each: impl FnMut(Record, u32, &[u8])) -> io::Result<()> {
    let all = match fs::read(path) {
        Ok(b) => Bytes::from(b),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut off = 0usize;
    loop {
        match record::next(&all.slice(off..)) {
            Next::Record(rec, len) => {
                each(rec, off as u32, &all[off..off + len]);
                off += len;
            }
            Next::End => return Ok(()),
            Next::Torn => match next_intact(&all, off + 1) {
                Some(resume) => {
                    crate::warn!(
                        "{}: corrupt record at byte {off}; skipped {} bytes to the next intact record",
                        path.display(),
                        resume - off
                    );
                    off = resume;
                }
                None => return truncate_at(path, off, all.len()),
            },
        }
    }
}

/// The offset of the first intact record at or after `from`, if any.
fn next_intact(all: &Bytes, from: usize) -> Option<usize> {
    (from..all.len()).find(|&at| matches!(record::next(&all.slice(at..)), Next::Record(..)))
}

/// Cuts a torn tail (a crash in the middle of a write) off the file.
fn truncate_at(path: &Path, off: usize, len: usize) -> io::Result<()> {
    crate::warn!(
        "{}: torn or corrupt record at byte {off} of {len}; truncating it there",
        path.display()
    );
    let file = fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(off as u64)?;
    file.sync_all()
}

pub(super) fn read_records(path: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    scan(path, |rec, _, _| out.push(rec))?;
    Ok(out)
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, fsync, rename, fsync the dir.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Appends framed records to numbered segments of one shard directory during recovery.
pub(super) struct SegmentWriter {
    dir: PathBuf,
    id: u32,
    len: u64,
    max: u64,
    file: Option<io::BufWriter<fs::File>>,
}

impl SegmentWriter {
    pub(super) fn new(dir: PathBuf, first: u32, max: u64) -> io::Result<SegmentWriter> {
        fs::create_dir_all(&dir)?;
        Ok(SegmentWriter {
            dir,
            id: first,
            len: 0,
            max,
            file: None,
        })
    }

    pub(super) fn append(&mut self, frame: &[u8]) -> io::Result<Loc> {
        if self.file.is_some() && self.len + frame.len() as u64 > self.max {
            self.close()?;
            self.id += 1;
            self.len = 0;
        }
        if self.file.is_none() {
            let file = fs::File::create(segment_path(&self.dir, self.id))?;
            self.file = Some(io::BufWriter::with_capacity(1 << 20, file));
        }
        let off = self.len;
        if let Some(f) = self.file.as_mut() {
            f.write_all(frame)?;
        }
        self.len += frame.len() as u64;
        Ok(Loc {
            seg: self.id,
            off: off as u32,
            len: frame.len() as u32,
            paged: false,
        })
    }

    fn close(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            let file = f.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        Ok(())
    }

    /// Syncs what was written; returns the last segment id used.
    pub(super) fn finish(mut self) -> io::Result<u32> {
        let wrote = self.file.is_some();
        self.close()?;
        sync_dir(&self.dir)?;
        Ok(if wrote { self.id } else { self.id - 1 })
    }
}
