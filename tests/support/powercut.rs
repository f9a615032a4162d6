//! A model of what a disk holds after a power cut, rebuilt from the broker's journal of file
//! operations (`WARREN_FS_JOURNAL`, format in `src/io/fs/sim.rs`).
//!
//! What an fsync covered survives: the data of a file synced with fdatasync, the entries of a
//! directory synced. Everything else may or may not have reached the disk: each write not yet
//! synced survives in order up to a random point, where one write may be torn; a file created
//! or unlinked since its directory was last synced may keep either fate.

use std::collections::BTreeMap;
use std::path::Path;

/// One operation of the journal.
#[derive(Debug, Clone)]
pub enum Entry {
    Base(String, Vec<u8>),
    Create(String),
    Write(String, u64, Vec<u8>),
    SyncBegin(String, u64),
    SyncEnd(u64),
    Unlink(String),
}

/// Parses a journal; a torn last entry (the broker killed mid-append) is dropped.
pub fn parse(bytes: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some((entry, next)) = parse_one(bytes, at) {
        entries.push(entry);
        at = next;
    }
    entries
}

/// Byte offsets where each entry ends: entry `i` is in a journal at least `ends[i]` long.
pub fn entry_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while let Some((_, next)) = parse_one(bytes, at) {
        ends.push(next);
        at = next;
    }
    ends
}

fn take(bytes: &[u8], at: &mut usize, n: usize) -> Option<Vec<u8>> {
    let end = at.checked_add(n)?;
    let out = bytes.get(*at..end)?.to_vec();
    *at = end;
    Some(out)
}

fn u64_at(bytes: &[u8], at: &mut usize) -> Option<u64> {
    Some(u64::from_le_bytes(take(bytes, at, 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: &mut usize) -> Option<u32> {
    Some(u32::from_le_bytes(take(bytes, at, 4)?.try_into().ok()?))
}

fn path_at(bytes: &[u8], at: &mut usize) -> Option<String> {
    let n = u32_at(bytes, at)? as usize;
    String::from_utf8(take(bytes, at, n)?).ok()
}

fn parse_one(bytes: &[u8], start: usize) -> Option<(Entry, usize)> {
    let mut at = start;
    let tag = *bytes.get(at)?;
    at += 1;
    let entry = match tag {
        b'F' => {
            let path = path_at(bytes, &mut at)?;
            let len = u64_at(bytes, &mut at)? as usize;
            Entry::Base(path, take(bytes, &mut at, len)?)
        }
        b'C' => Entry::Create(path_at(bytes, &mut at)?),
        b'W' => {
            let path = path_at(bytes, &mut at)?;
            let offset = u64_at(bytes, &mut at)?;
            let len = u32_at(bytes, &mut at)? as usize;
            Entry::Write(path, offset, take(bytes, &mut at, len)?)
        }
        b'S' => {
            let path = path_at(bytes, &mut at)?;
            Entry::SyncBegin(path, u64_at(bytes, &mut at)?)
        }
        b'E' => Entry::SyncEnd(u64_at(bytes, &mut at)?),
        b'U' => Entry::Unlink(path_at(bytes, &mut at)?),
        other => panic!("expected a journal entry tag at byte {start}, got {other}"),
    };
    Some((entry, at))
}

/// A file's contents: what is durable, and the writes since that may be lost.
#[derive(Clone, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
}

fn apply(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    if data.len() < start + bytes.len() {
        data.resize(start + bytes.len(), 0);
    }
    data[start..start + bytes.len()].copy_from_slice(bytes);
}

/// What a sync in flight will make durable when it completes.
enum Snapshot {
    File(usize, Vec<u8>, usize),
    Dir(String, BTreeMap<String, usize>),
}

/// The disk after replaying a prefix of the journal.
#[derive(Default)]
pub struct Disk {
    inodes: Vec<Inode>,
    /// Names as the running broker saw them.
    current: BTreeMap<String, usize>,
    /// Names as a synced directory holds them.
    durable: BTreeMap<String, usize>,
    syncing: BTreeMap<u64, Snapshot>,
}

fn parent(path: &str) -> String {
    match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_string_lossy().into_owned(),
        _ => ".".to_string(),
    }
}

impl Disk {
    pub fn replay(entries: &[Entry]) -> Disk {
        let mut disk = Disk::default();
        for entry in entries {
            disk.step(entry);
        }
        disk
    }

    fn step(&mut self, entry: &Entry) {
        match entry {
            Entry::Base(path, bytes) => {
                let inode = self.new_inode(bytes.clone());
                self.current.insert(path.clone(), inode);
                self.durable.insert(path.clone(), inode);
            }
            Entry::Create(path) => {
                let inode = self.new_inode(Vec::new());
                self.current.insert(path.clone(), inode);
            }
            Entry::Write(path, offset, bytes) => {
                let inode = *self
                    .current
                    .get(path)
                    .unwrap_or_else(|| panic!("expected a write to an existing file, {path}"));
                let node = &mut self.inodes[inode];
                apply(&mut node.current, *offset, bytes);
                node.pending.push((*offset, bytes.clone()));
            }
            Entry::SyncBegin(path, token) => self.sync_begins(path, *token),
            Entry::SyncEnd(token) => self.sync_ends(*token),
            Entry::Unlink(path) => {
                self.current.remove(path);
            }
        }
    }

    fn new_inode(&mut self, bytes: Vec<u8>) -> usize {
        self.inodes.push(Inode {
            durable: bytes.clone(),
            current: bytes,
            pending: Vec::new(),
        });
        self.inodes.len() - 1
    }

    fn sync_begins(&mut self, path: &str, token: u64) {
        let snapshot = match self.current.get(path) {
            Some(&inode) => {
                let node = &self.inodes[inode];
                Snapshot::File(inode, node.current.clone(), node.pending.len())
            }
            None => {
                let entries = self
                    .current
                    .iter()
                    .filter(|(name, _)| parent(name) == path)
                    .map(|(name, inode)| (name.clone(), *inode))
                    .collect();
                Snapshot::Dir(path.to_string(), entries)
            }
        };
        self.syncing.insert(token, snapshot);
    }

    fn sync_ends(&mut self, token: u64) {
        match self.syncing.remove(&token) {
            Some(Snapshot::File(inode, bytes, covered)) => {
                let node = &mut self.inodes[inode];
                node.durable = bytes;
                node.pending.drain(..covered);
            }
            Some(Snapshot::Dir(dir, entries)) => {
                self.durable.retain(|name, _| parent(name) != dir);
                self.durable.extend(entries);
            }
            None => panic!("expected a sync that began before it ended, token {token}"),
        }
    }

    /// Writes what survives a power cut now into `dir`, with the lost and torn parts chosen by
    /// `rand` (which returns a number below its argument).
    pub fn materialize(&self, dir: &Path, rand: &mut dyn FnMut(usize) -> usize) {
        let mut names: BTreeMap<&String, usize> = BTreeMap::new();
        for (name, &inode) in &self.durable {
            // Unlinked (or replaced) since the directory was synced: either fate.
            if self.current.get(name) == Some(&inode) || rand(2) == 0 {
                names.insert(name, inode);
            }
        }
        for (name, &inode) in &self.current {
            if !names.contains_key(name) && self.durable.get(name) != Some(&inode) && rand(2) == 0 {
                names.insert(name, inode);
            }
        }
        for (name, inode) in names {
            let path = dir.join(name);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).expect("create a directory of the cut disk");
            }
            std::fs::write(&path, self.surviving(inode, rand)).expect("write a cut file");
        }
    }

    /// The durable bytes of `inode`, then a random prefix of its pending writes, the last of
    /// them possibly torn.
    fn surviving(&self, inode: usize, rand: &mut dyn FnMut(usize) -> usize) -> Vec<u8> {
        let node = &self.inodes[inode];
        let mut data = node.durable.clone();
        let kept = rand(node.pending.len() + 1);
        for (offset, bytes) in &node.pending[..kept] {
            apply(&mut data, *offset, bytes);
        }
        if let Some((offset, bytes)) = node.pending.get(kept) {
            let torn = rand(bytes.len());
            apply(&mut data, *offset, &bytes[..torn]);
        }
        data
    }
}
