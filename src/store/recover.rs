//! Recovery at start, before any shard runs.
//!
//! Every `shard-*` directory is read, whatever the shard count was when it was written, so a
//! queue whose name now hashes to another shard is still recovered whole:
//!
//! 1. The definition logs give the durable queues (by queue id) and, from shard 0's log, the
//!    exchange and binding changes in order.
//! 2. A first pass over every segment finds the live messages: publish records of a durable
//!    queue with no ack record anywhere. A record found twice (see step 4) counts once.
//! 3. A segment whose records are all live and belong to its own shard stays as it is. From
//!    the others, a second pass copies each live record, unchanged, into fresh segments of the
//!    shard that owns its queue now; fresh definition logs are written (write, fsync, rename).
//! 4. Only then are the copied segments deleted. A crash in between leaves both copies, which
//!    step 2 of the next start treats as one.
//!
//! A record that is short or fails its CRC is a torn tail: the file is truncated there, with a
//! warning, and recovery goes on. Every recovered message is marked redelivered, since it may
//! have been delivered before the stop.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};

use super::record::{self, Next, Record};
use super::{segment_id, segment_path, shard_dir, DEFS_FILE};
use crate::broker::{Loc, Message};
use crate::protocol::FieldTable;
use crate::shard::queue_shard_bytes;

/// A durable queue as recovered, with its live messages in order.
pub struct RecoveredQueue {
    pub queue_id: u64,
    pub name: Bytes,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// Above every seq any record of this queue ever used.
    pub next_seq: u64,
    pub messages: Vec<(u64, Message)>,
}

/// What one shard starts with.
#[derive(Default)]
pub struct ShardStart {
    pub queues: Vec<RecoveredQueue>,
    /// The segment id the shard appends to first.
    pub first_segment: u32,
    /// Live messages per recovered segment.
    pub live: FxHashMap<u32, u64>,
    pub defs_len: u64,
    /// Body bytes kept in memory.
    pub resident_bytes: u64,
}

pub struct Recovered {
    pub shards: Vec<ShardStart>,
    /// Exchange and binding changes, in order, to replay into every shard's replica.
    pub topology: Vec<Record>,
    pub messages: u64,
}

struct QueueDef {
    name: Bytes,
    auto_delete: bool,
    arguments: FieldTable,
}

/// Where a live publish record was found.
#[derive(Clone, Copy)]
struct Found {
    dir: u16,
    seg: u32,
    off: u32,
}

/// Recovers `data_dir` for `shards` shards, keeping at most `budget_per_shard` body bytes in
/// memory per shard (the rest stays on disk, read back on delivery).
pub fn recover(
    data_dir: &Path,
    shards: usize,
    segment_size: u64,
    budget_per_shard: u64,
) -> io::Result<Recovered> {
    fs::create_dir_all(data_dir)?;
    let dirs = shard_dirs(data_dir)?;

    // 1. Definitions.
    let mut queues: FxHashMap<u64, QueueDef> = FxHashMap::default();
    let mut topology = Vec::new();
    for (index, dir) in &dirs {
        for rec in read_records(&dir.join(DEFS_FILE))? {
            match rec {
                Record::Queue {
                    queue_id,
                    name,
                    auto_delete,
                    arguments,
                } => {
                    queues.insert(
                        queue_id,
                        QueueDef {
                            name,
                            auto_delete,
                            arguments,
                        },
                    );
                }
                Record::QueueGone { queue_id } => {
                    queues.remove(&queue_id);
                }
                Record::Publish { .. } | Record::Ack { .. } => {}
                other if *index == 0 => topology.push(other),
                _ => {}
            }
        }
    }
    // Two queues of one name (a delete lost in a crash): the later id wins.
    let mut by_name: FxHashMap<Bytes, u64> = FxHashMap::default();
    let mut ids: Vec<u64> = queues.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        if let Some(old) = by_name.insert(queues[&id].name.clone(), id) {
            queues.remove(&old);
        }
    }

    // 2. Which messages are live.
    let mut segments: Vec<(u16, u32, PathBuf)> = Vec::new();
    for (index, dir) in &dirs {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(segment_id) {
                segments.push((*index as u16, id, entry.path()));
            }
        }
    }
    segments.sort_by_key(|(dir, id, _)| (*id, *dir));
    let old_max = segments.iter().map(|(_, id, _)| *id).max().unwrap_or(0);
    let mut found: FxHashMap<(u64, u64), Found> = FxHashMap::default();
    let mut acked: FxHashSet<(u64, u64)> = FxHashSet::default();
    let mut max_seq: FxHashMap<u64, u64> = FxHashMap::default();
    // Publish records per segment, live or not.
    let mut publishes: FxHashMap<(u16, u32), u64> = FxHashMap::default();
    for (dir, seg, path) in &segments {
        scan(path, |rec, off, _| match rec {
            Record::Publish {
                queue_id,
                seq,
                transient,
                ..
            } => {
                note_seq(&mut max_seq, queue_id, seq);
                *publishes.entry((*dir, *seg)).or_insert(0) += 1;
                if !transient && queues.contains_key(&queue_id) {
                    found.entry((queue_id, seq)).or_insert(Found {
                        dir: *dir,
                        seg: *seg,
                        off,
                    });
                }
            }
            Record::Ack { queue_id, seq } => {
                note_seq(&mut max_seq, queue_id, seq);
                acked.insert((queue_id, seq));
            }
            _ => {}
        })?;
    }
    found.retain(|key, _| !acked.contains(key));
    drop(acked);
    let live_at: FxHashSet<(u16, u32, u32)> =
        found.values().map(|f| (f.dir, f.seg, f.off)).collect();
    let owner_of = |queue_id: u64| queue_shard_bytes(b"/", &queues[&queue_id].name, shards);

    // A segment whose every publish record is live and owned by its directory's shard stays
    // where it is (the usual case for a backlog when the shard count did not change); the
    // others are copied. Keeping one with a dead record would need the acks that cancel it.
    let mut live_in: FxHashMap<(u16, u32), u64> = FxHashMap::default();
    let mut misplaced: FxHashSet<(u16, u32)> = FxHashSet::default();
    for (&(queue_id, _), f) in &found {
        *live_in.entry((f.dir, f.seg)).or_insert(0) += 1;
        if owner_of(queue_id) != usize::from(f.dir) {
            misplaced.insert((f.dir, f.seg));
        }
    }
    let kept: FxHashSet<(u16, u32)> = live_in
        .iter()
        .filter(|(key, live)| {
            publishes.get(key) == Some(live)
                && !misplaced.contains(key)
                && usize::from(key.0) < shards
        })
        .map(|(key, _)| *key)
        .collect();

    // 3. Copy live records to the shards that own their queues now.
    let mut starts: Vec<ShardStart> = (0..shards).map(|_| ShardStart::default()).collect();
    let mut writers: Vec<SegmentWriter> = (0..shards)
        .map(|i| SegmentWriter::new(shard_dir(data_dir, i), old_max + 1, segment_size))
        .collect::<io::Result<_>>()?;
    let mut messages: FxHashMap<u64, Vec<(u64, Message)>> = FxHashMap::default();
    let mut total = 0u64;
    for (dir, seg, path) in &segments {
        let mut failed = None;
        let keep_segment = kept.contains(&(*dir, *seg));
        scan(path, |rec, off, frame| {
            if failed.is_some() || !live_at.contains(&(*dir, *seg, off)) {
                return;
            }
            let Record::Publish {
                queue_id, seq, msg, ..
            } = rec
            else {
                return;
            };
            let owner = owner_of(queue_id);
            let loc = if keep_segment {
                Loc {
                    seg: *seg,
                    off,
                    len: frame.len() as u32,
                    paged: false,
                }
            } else {
                match writers[owner].append(frame) {
                    Ok(loc) => loc,
                    Err(err) => {
                        failed = Some(err);
                        return;
                    }
                }
            };
            let start = &mut starts[owner];
            let keep = start.resident_bytes + msg.body.len() as u64 <= budget_per_shard;
            let mut msg = Message {
                // Copied, so that nothing pins the segment buffer.
                body: if keep {
                    Bytes::copy_from_slice(&msg.body)
                } else {
                    Bytes::new()
                },
                loc: Loc {
                    paged: !keep,
                    ..loc
                },
                ..msg
            };
            msg.compact();
            if keep {
                start.resident_bytes += msg.body.len() as u64;
            }
            *start.live.entry(loc.seg).or_insert(0) += 1;
            messages.entry(queue_id).or_default().push((seq, msg));
            total += 1;
        })?;
        if let Some(err) = failed {
            return Err(err);
        }
    }
    for (i, w) in writers.into_iter().enumerate() {
        starts[i].first_segment = w.finish()? + 1;
    }

    // Fresh definition logs, atomically replacing the old ones.
    let mut defs: Vec<Vec<u8>> = vec![Vec::new(); shards];
    let mut ordered: Vec<(&u64, &QueueDef)> = queues.iter().collect();
    ordered.sort_unstable_by_key(|(id, _)| **id);
    let mut buf = bytes::BytesMut::new();
    for (&queue_id, def) in ordered {
        let owner = owner_of(queue_id);
        record::put_def(
            &mut buf,
            &Record::Queue {
                queue_id,
                name: def.name.clone(),
                auto_delete: def.auto_delete,
                arguments: def.arguments.clone(),
            },
        );
        defs[owner].extend_from_slice(&buf.split());
        let mut msgs = messages.remove(&queue_id).unwrap_or_default();
        msgs.sort_unstable_by_key(|(seq, _)| *seq);
        starts[owner].queues.push(RecoveredQueue {
            queue_id,
            name: def.name.clone(),
            auto_delete: def.auto_delete,
            arguments: def.arguments.clone(),
            next_seq: max_seq.get(&queue_id).copied().unwrap_or(0) + 1,
            messages: msgs,
        });
    }
    for rec in &topology {
        record::put_def(&mut buf, rec);
    }
    defs[0].extend_from_slice(&buf.split());
    for (i, bytes) in defs.iter().enumerate() {
        let dir = shard_dir(data_dir, i);
        replace_file(&dir, DEFS_FILE, bytes)?;
        starts[i].defs_len = bytes.len() as u64;
    }

    // 4. The old segments, and directories of shards that no longer exist, go.
    for (dir, seg, path) in &segments {
        if !kept.contains(&(*dir, *seg)) {
            fs::remove_file(path)?;
        }
    }
    for (index, dir) in &dirs {
        if *index >= shards {
            fs::remove_dir_all(dir)?;
        }
    }
    sync_dir(data_dir)?;
    Ok(Recovered {
        shards: starts,
        topology,
        messages: total,
    })
}

fn note_seq(max_seq: &mut FxHashMap<u64, u64>, queue_id: u64, seq: u64) {
    let m = max_seq.entry(queue_id).or_insert(0);
    *m = (*m).max(seq);
}

/// `shard-N` directories under `data_dir`, by N.
fn shard_dirs(data_dir: &Path) -> io::Result<BTreeMap<usize, PathBuf>> {
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

/// Calls `each(record, offset, framed bytes)` for every intact record of the file at `path`,
/// truncating a torn tail.
fn scan(path: &Path, mut each: impl FnMut(Record, u32, &[u8])) -> io::Result<()> {
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
            Next::Torn => {
                crate::warn!(
                    "{}: torn or corrupt record at byte {off} of {}; truncating it there",
                    path.display(),
                    all.len()
                );
                let file = fs::OpenOptions::new().write(true).open(path)?;
                file.set_len(off as u64)?;
                file.sync_all()?;
                return Ok(());
            }
        }
    }
}

fn read_records(path: &Path) -> io::Result<Vec<Record>> {
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

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Appends framed records to numbered segments of one shard directory during recovery.
struct SegmentWriter {
    dir: PathBuf,
    id: u32,
    len: u64,
    max: u64,
    file: Option<io::BufWriter<fs::File>>,
}

impl SegmentWriter {
    fn new(dir: PathBuf, first: u32, max: u64) -> io::Result<SegmentWriter> {
        fs::create_dir_all(&dir)?;
        Ok(SegmentWriter {
            dir,
            id: first,
            len: 0,
            max,
            file: None,
        })
    }

    fn append(&mut self, frame: &[u8]) -> io::Result<Loc> {
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
    fn finish(mut self) -> io::Result<u32> {
        let wrote = self.file.is_some();
        self.close()?;
        sync_dir(&self.dir)?;
        Ok(if wrote { self.id } else { self.id - 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "warren-recover-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn message(body: &str) -> Message {
        Message::new(
            Bytes::new(),
            Bytes::from_static(b"q"),
            Bytes::from_static(b"\0\0"),
            Bytes::from(body.to_string()),
            true,
        )
    }

    #[test]
    fn recovers_live_messages_in_order_across_shard_counts_and_truncates_a_torn_tail() {
        let data = temp_dir("basic");
        let old = shard_dir(&data, 3); // written by a broker that had 4 shards
        fs::create_dir_all(&old).expect("shard dir");
        let mut defs = BytesMut::new();
        for (queue_id, name) in [(7, "q"), (8, "gone")] {
            record::put_def(
                &mut defs,
                &Record::Queue {
                    queue_id,
                    name: Bytes::from_static(name.as_bytes()),
                    auto_delete: false,
                    arguments: FieldTable::default(),
                },
            );
        }
        record::put_def(&mut defs, &Record::QueueGone { queue_id: 8 });
        fs::write(old.join(DEFS_FILE), &defs).expect("defs");
        let mut seg = BytesMut::new();
        for seq in [3u64, 1, 2, 4] {
            record::put_publish(&mut seg, 7, seq, false, false, &message(&format!("m{seq}")));
        }
        record::put_publish(&mut seg, 7, 5, false, true, &message("transient"));
        record::put_publish(&mut seg, 8, 1, false, false, &message("of a deleted queue"));
        record::put_ack(&mut seg, 7, 2);
        let whole = seg.len();
        record::put_publish(&mut seg, 7, 6, false, false, &message("torn"));
        let torn_at = whole + 10;
        fs::write(segment_path(&old, 5), &seg[..torn_at]).expect("segment");

        let recovered = recover(&data, 2, 1 << 20, u64::MAX).expect("recovery");
        assert_eq!(recovered.messages, 3);
        let owner = queue_shard_bytes(b"/", b"q", 2);
        let q = &recovered.shards[owner].queues[0];
        assert_eq!(&q.name[..], b"q");
        let bodies: Vec<&[u8]> = q.messages.iter().map(|(_, m)| &m.body[..]).collect();
        assert_eq!(
            bodies,
            vec![&b"m1"[..], b"m3", b"m4"],
            "acked, transient and torn ones go"
        );
        assert!(q.next_seq > 5, "seqs are never reused");
        assert!(
            !old.exists(),
            "the directory of a shard that no longer exists goes"
        );

        // A second start finds the same, from the copies.
        let again = recover(&data, 2, 1 << 20, 0).expect("second recovery");
        let q = &again.shards[owner].queues[0];
        assert_eq!(q.messages.len(), 3);
        assert!(
            q.messages
                .iter()
                .all(|(_, m)| m.loc.paged && m.body.is_empty()),
            "with no memory budget every body stays on disk"
        );
        let _ = fs::remove_dir_all(&data);
    }
}
