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

mod files;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};

use super::record::{self, Record};
use super::{segment_id, shard_dir, DEFS_FILE};
use crate::ids::queue_shard_bytes;
use crate::message::{Loc, Message};
use crate::protocol::FieldTable;
pub use files::replace_file;
use files::{read_records, scan, shard_dirs, sync_dir, SegmentWriter};

/// A durable queue as recovered, with its live messages in order.
pub struct RecoveredQueue {
    pub queue_id: u64,
    pub vhost: Bytes,
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
    vhost: Bytes,
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

/// A segment file: (shard directory index, segment id, path).
type SegmentFile = (u16, u32, PathBuf);

/// What the first pass over the segments learned.
#[derive(Default)]
struct Live {
    /// Live publish records by (queue id, seq).
    found: FxHashMap<(u64, u64), Found>,
    /// Highest seq any record of a queue used.
    max_seq: FxHashMap<u64, u64>,
    /// Publish records per segment, live or not.
    publishes: FxHashMap<(u16, u32), u64>,
}

/// The segment id after `id`; an error, not a wrap to 0, when a (hostile or corrupt) file
/// name took the last one.
fn next_segment_id(id: u32) -> io::Result<u32> {
    id.checked_add(1).ok_or_else(|| {
        io::Error::other(format!(
            "segment id {id} is the last there is; rename the segment files to lower ids"
        ))
    })
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
    let (queues, topology) = read_definitions(&dirs)?;
    let segments = list_segments(&dirs)?;
    let live = find_live(&segments, &queues)?;
    let owner_of = |queue_id: u64| {
        let q = &queues[&queue_id];
        queue_shard_bytes(&q.vhost, &q.name, shards)
    };
    let kept = segments_to_keep(&live, &owner_of, shards);
    let old_max = segments.iter().map(|(_, id, _)| *id).max().unwrap_or(0);
    let first_new = next_segment_id(old_max)?;
    let mut copy = Copy {
        starts: (0..shards).map(|_| ShardStart::default()).collect(),
        writers: (0..shards)
            .map(|i| SegmentWriter::new(shard_dir(data_dir, i), first_new, segment_size))
            .collect::<io::Result<_>>()?,
        messages: FxHashMap::default(),
        total: 0,
        budget_per_shard,
    };
    copy_live(&mut copy, &segments, &live, &kept, &owner_of)?;
    let Copy {
        mut starts,
        writers,
        messages,
        total,
        ..
    } = copy;
    for (i, w) in writers.into_iter().enumerate() {
        starts[i].first_segment = next_segment_id(w.finish()?)?;
    }
    let defs = Definitions {
        queues: &queues,
        topology: &topology,
        max_seq: &live.max_seq,
    };
    write_definitions(data_dir, &defs, &mut starts, messages, &owner_of)?;
    remove_old(data_dir, &dirs, &segments, &kept, shards)?;
    Ok(Recovered {
        shards: starts,
        topology,
        messages: total,
    })
}

/// Step 1: durable queues by id (two of one name, from a delete lost in a crash: the later
/// id wins; none in a vhost that no longer exists) and shard 0's exchange and binding
/// changes, in order.
fn read_definitions(
    dirs: &BTreeMap<usize, PathBuf>,
) -> io::Result<(FxHashMap<u64, QueueDef>, Vec<Record>)> {
    let mut queues: FxHashMap<u64, QueueDef> = FxHashMap::default();
    let mut topology = Vec::new();
    for (index, dir) in dirs {
        for rec in read_records(&dir.join(DEFS_FILE))? {
            match rec {
                Record::Queue {
                    queue_id,
                    vhost,
                    name,
                    auto_delete,
                    arguments,
                } => {
                    let def = QueueDef {
                        vhost,
                        name,
                        auto_delete,
                        arguments,
                    };
                    queues.insert(queue_id, def);
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
    let vhosts = live_vhosts(&topology);
    queues.retain(|_, q| vhosts.contains(&q.vhost));
    let mut by_name: FxHashMap<(Bytes, Bytes), u64> = FxHashMap::default();
    let mut ids: Vec<u64> = queues.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let key = (queues[&id].vhost.clone(), queues[&id].name.clone());
        if let Some(old) = by_name.insert(key, id) {
            queues.remove(&old);
        }
    }
    Ok((queues, topology))
}

/// The vhosts shard 0's records leave: `/` unless deleted, and every one added since.
fn live_vhosts(topology: &[Record]) -> FxHashSet<Bytes> {
    let mut vhosts = FxHashSet::default();
    vhosts.insert(Bytes::from_static(record::DEFAULT_VHOST));
    for rec in topology {
        match rec {
            Record::Vhost(def) => {
                vhosts.insert(def.name.clone());
            }
            Record::VhostGone { name } => {
                vhosts.remove(name);
            }
            _ => {}
        }
    }
    vhosts
}

/// Every segment file of every shard directory, oldest first.
fn list_segments(dirs: &BTreeMap<usize, PathBuf>) -> io::Result<Vec<SegmentFile>> {
    let mut segments = Vec::new();
    for (index, dir) in dirs {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(segment_id) {
                segments.push((*index as u16, id, entry.path()));
            }
        }
    }
    segments.sort_by_key(|(dir, id, _)| (*id, *dir));
    Ok(segments)
}

/// Step 2: the live messages (published to a durable queue, not transient, never acked).
fn find_live(segments: &[SegmentFile], queues: &FxHashMap<u64, QueueDef>) -> io::Result<Live> {
    let mut live = Live::default();
    let mut acked: FxHashSet<(u64, u64)> = FxHashSet::default();
    for (dir, seg, path) in segments {
        scan(path, |rec, off, _| match rec {
            Record::Publish {
                queue_id,
                seq,
                transient,
                ..
            } => {
                note_seq(&mut live.max_seq, queue_id, seq);
                *live.publishes.entry((*dir, *seg)).or_insert(0) += 1;
                if !transient && queues.contains_key(&queue_id) {
                    let at = Found {
                        dir: *dir,
                        seg: *seg,
                        off,
                    };
                    live.found.entry((queue_id, seq)).or_insert(at);
                }
            }
            Record::Ack { queue_id, seq } => {
                note_seq(&mut live.max_seq, queue_id, seq);
                acked.insert((queue_id, seq));
            }
            _ => {}
        })?;
    }
    live.found.retain(|key, _| !acked.contains(key));
    Ok(live)
}

fn note_seq(max_seq: &mut FxHashMap<u64, u64>, queue_id: u64, seq: u64) {
    let m = max_seq.entry(queue_id).or_insert(0);
    *m = (*m).max(seq);
}

/// A segment whose every publish record is live and owned by its directory's shard stays
/// where it is (the usual case for a backlog when the shard count did not change); the others
/// are copied. Keeping one with a dead record would need the acks that cancel it.
fn segments_to_keep(
    live: &Live,
    owner_of: &impl Fn(u64) -> usize,
    shards: usize,
) -> FxHashSet<(u16, u32)> {
    let mut live_in: FxHashMap<(u16, u32), u64> = FxHashMap::default();
    let mut misplaced: FxHashSet<(u16, u32)> = FxHashSet::default();
    for (&(queue_id, _), f) in &live.found {
        *live_in.entry((f.dir, f.seg)).or_insert(0) += 1;
        if owner_of(queue_id) != usize::from(f.dir) {
            misplaced.insert((f.dir, f.seg));
        }
    }
    live_in
        .iter()
        .filter(|(key, live_count)| {
            live.publishes.get(key) == Some(live_count)
                && !misplaced.contains(key)
                && usize::from(key.0) < shards
        })
        .map(|(key, _)| *key)
        .collect()
}

/// The state of step 3, per owning shard.
struct Copy {
    starts: Vec<ShardStart>,
    writers: Vec<SegmentWriter>,
    messages: FxHashMap<u64, Vec<(u64, Message)>>,
    total: u64,
    budget_per_shard: u64,
}

/// Step 3: every live record goes to the shard that owns its queue now, copied unless its
/// segment is kept.
fn copy_live(
    copy: &mut Copy,
    segments: &[SegmentFile],
    live: &Live,
    kept: &FxHashSet<(u16, u32)>,
    owner_of: &impl Fn(u64) -> usize,
) -> io::Result<()> {
    let live_at: FxHashSet<(u16, u32, u32)> =
        live.found.values().map(|f| (f.dir, f.seg, f.off)).collect();
    for (dir, seg, path) in segments {
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
                match copy.writers[owner].append(frame) {
                    Ok(loc) => loc,
                    Err(err) => {
                        failed = Some(err);
                        return;
                    }
                }
            };
            copy.adopt(owner, queue_id, seq, msg, loc);
        })?;
        if let Some(err) = failed {
            return Err(err);
        }
    }
    Ok(())
}

impl Copy {
    /// A live message of `owner`'s: its body stays in memory while the shard's budget allows.
    fn adopt(&mut self, owner: usize, queue_id: u64, seq: u64, msg: Message, loc: Loc) {
        let start = &mut self.starts[owner];
        let keep = start.resident_bytes + msg.body.len() as u64 <= self.budget_per_shard;
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
        self.messages.entry(queue_id).or_default().push((seq, msg));
        self.total += 1;
    }
}

/// The definitions recovery writes back.
struct Definitions<'a> {
    queues: &'a FxHashMap<u64, QueueDef>,
    topology: &'a [Record],
    max_seq: &'a FxHashMap<u64, u64>,
}

/// Fresh definition logs, atomically replacing the old ones; each queue goes to its owner.
fn write_definitions(
    data_dir: &Path,
    defs: &Definitions,
    starts: &mut [ShardStart],
    mut messages: FxHashMap<u64, Vec<(u64, Message)>>,
    owner_of: &impl Fn(u64) -> usize,
) -> io::Result<()> {
    let mut logs: Vec<Vec<u8>> = vec![Vec::new(); starts.len()];
    let mut ordered: Vec<(&u64, &QueueDef)> = defs.queues.iter().collect();
    ordered.sort_unstable_by_key(|(id, _)| **id);
    let mut buf = bytes::BytesMut::new();
    for (&queue_id, def) in ordered {
        let owner = owner_of(queue_id);
        let rec = Record::Queue {
            queue_id,
            vhost: def.vhost.clone(),
            name: def.name.clone(),
            auto_delete: def.auto_delete,
            arguments: def.arguments.clone(),
        };
        record::put_def(&mut buf, &rec);
        logs[owner].extend_from_slice(&buf.split());
        let mut msgs = messages.remove(&queue_id).unwrap_or_default();
        msgs.sort_unstable_by_key(|(seq, _)| *seq);
        starts[owner].queues.push(RecoveredQueue {
            queue_id,
            vhost: def.vhost.clone(),
            name: def.name.clone(),
            auto_delete: def.auto_delete,
            arguments: def.arguments.clone(),
            next_seq: defs.max_seq.get(&queue_id).copied().unwrap_or(0) + 1,
            messages: msgs,
        });
    }
    for rec in defs.topology {
        record::put_def(&mut buf, rec);
    }
    logs[0].extend_from_slice(&buf.split());
    for (i, bytes) in logs.iter().enumerate() {
        replace_file(&shard_dir(data_dir, i), DEFS_FILE, bytes)?;
        starts[i].defs_len = bytes.len() as u64;
    }
    Ok(())
}

/// Step 4: the copied segments, and directories of shards that no longer exist, go.
fn remove_old(
    data_dir: &Path,
    dirs: &BTreeMap<usize, PathBuf>,
    segments: &[SegmentFile],
    kept: &FxHashSet<(u16, u32)>,
    shards: usize,
) -> io::Result<()> {
    for (dir, seg, path) in segments {
        if !kept.contains(&(*dir, *seg)) {
            fs::remove_file(path)?;
        }
    }
    for (index, dir) in dirs {
        if *index >= shards {
            fs::remove_dir_all(dir)?;
        }
    }
    sync_dir(data_dir)
}
