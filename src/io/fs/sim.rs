//! Disk fault injection and a recording of file operations, for the reliability tests.
//!
//! Both are off unless the broker starts with one of these variables set; then they apply to
//! every file operation of the shards (recovery, which runs before, is not touched):
//!
//! - `WARREN_FS_FAULT=<op>:<n>:<error>[:<times>]`: the `n`th operation of kind `op` (`open`,
//!   `write`, `fsync` or `unlink`; counted from 1 across the process) and the `times - 1`
//!   after it (default 1) fail with `error`: `EIO`, `ENOSPC`, or `short` (a write that stores
//!   the first half of its bytes, then fails with ENOSPC, as a filling disk does).
//! - `WARREN_FS_JOURNAL=<path>`: every file operation is appended to `path` once it has
//!   completed, so that a test can rebuild what a disk would hold after a power cut at any
//!   point: what was synced survives, what was only written may be lost or torn.
//!
//! Journal format (integers little endian; a path is a u32 length and its bytes, relative to
//! the data directory): one tag byte, then
//! `F` path, u64 length, bytes: a file as it was when the journal started (all synced);
//! `C` path: a file was created; `W` path, u64 offset, u32 length, bytes: a write;
//! `S` path, u64 token: an fsync began (of a file, or of a directory: `.` is the data
//! directory); `E` u64 token: that fsync completed without error; `U` path: a file was
//! unlinked.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Kinds of operation a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Open = 0,
    Write = 1,
    Fsync = 2,
    Unlink = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Errno(i32),
    Short,
}

#[derive(Debug)]
struct Fault {
    op: Op,
    from: u64,
    times: u64,
    failure: Failure,
}

struct Sim {
    root: PathBuf,
    fault: Option<Fault>,
    counts: [AtomicU64; 4],
    journal: Option<Mutex<std::fs::File>>,
    tokens: AtomicU64,
}

static SIM: OnceLock<Option<Sim>> = OnceLock::new();

/// What a write should do: all of it, or store only a prefix and then fail.
pub enum WritePlan {
    All,
    ShortThenFail(usize),
}

/// Reads the variables and, if any is set, starts the simulation over `data_dir` (a
/// snapshot of every file into the journal first). Call once, after recovery and before any
/// shard runs. A bad setting is an error: a test that asks for a fault must get it.
pub fn start(data_dir: &Path) -> io::Result<()> {
    let fault = match std::env::var("WARREN_FS_FAULT") {
        Ok(spec) => Some(parse_fault(&spec).map_err(io::Error::other)?),
        Err(_) => None,
    };
    let journal = match std::env::var_os("WARREN_FS_JOURNAL") {
        Some(path) => Some(Mutex::new(open_journal(Path::new(&path), data_dir)?)),
        None => None,
    };
    if fault.is_none() && journal.is_none() {
        return Ok(());
    }
    crate::warn!(
        "file operation simulation on (fault {fault:?}, journal {})",
        journal.is_some()
    );
    let sim = Sim {
        root: data_dir.to_path_buf(),
        fault,
        counts: Default::default(),
        journal,
        tokens: AtomicU64::new(0),
    };
    SIM.set(Some(sim))
        .map_err(|_| io::Error::other("file simulation started twice"))
}

fn sim() -> Option<&'static Sim> {
    SIM.get().and_then(Option::as_ref)
}

fn parse_fault(spec: &str) -> Result<Fault, String> {
    let bad = || {
        format!("WARREN_FS_FAULT={spec}: expected <open|write|fsync|unlink>:<n>:<EIO|ENOSPC|short>[:<times>]")
    };
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return Err(bad());
    }
    let op = match parts[0] {
        "open" => Op::Open,
        "write" => Op::Write,
        "fsync" => Op::Fsync,
        "unlink" => Op::Unlink,
        _ => return Err(bad()),
    };
    let from: u64 = parts[1].parse().map_err(|_| bad())?;
    let failure = match parts[2] {
        "EIO" => Failure::Errno(libc::EIO),
        "ENOSPC" => Failure::Errno(libc::ENOSPC),
        "short" if op == Op::Write => Failure::Short,
        _ => return Err(bad()),
    };
    let times = match parts.get(3) {
        Some(t) => t.parse().map_err(|_| bad())?,
        None => 1,
    };
    Ok(Fault {
        op,
        from,
        times,
        failure,
    })
}

/// Counts an operation of kind `op` and says whether it must fail, and how.
fn injected(op: Op) -> Option<Failure> {
    let sim = sim()?;
    let fault = sim.fault.as_ref()?;
    if fault.op != op {
        return None;
    }
    let n = sim.counts[op as usize].fetch_add(1, Ordering::Relaxed) + 1;
    let hit = n >= fault.from && n < fault.from.saturating_add(fault.times);
    if hit {
        crate::warn!("injected fault: {op:?} #{n} fails with {:?}", fault.failure);
    }
    hit.then_some(fault.failure)
}

fn errno(failure: Failure) -> io::Error {
    match failure {
        Failure::Errno(e) => io::Error::from_raw_os_error(e),
        Failure::Short => io::Error::from_raw_os_error(libc::ENOSPC),
    }
}

/// Before an open, fsync or unlink: the injected error, if this one must fail.
pub fn check(op: Op) -> io::Result<()> {
    match injected(op) {
        Some(failure) => Err(errno(failure)),
        None => Ok(()),
    }
}

/// Before a write of `len` bytes: what to do.
pub fn plan_write(len: usize) -> io::Result<WritePlan> {
    match injected(Op::Write) {
        None => Ok(WritePlan::All),
        Some(Failure::Short) => Ok(WritePlan::ShortThenFail(len / 2)),
        Some(failure) => Err(errno(failure)),
    }
}

/// The error a short write ends with.
pub fn short_write_error() -> io::Error {
    errno(Failure::Short)
}

/// True when operations must be journaled (and so files must remember their paths).
pub fn journaling() -> bool {
    sim().is_some_and(|s| s.journal.is_some())
}

fn open_journal(path: &Path, data_dir: &Path) -> io::Result<std::fs::File> {
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut out = Vec::new();
    snapshot(data_dir, data_dir, &mut out)?;
    journal.write_all(&out)?;
    Ok(journal)
}

/// Every file under `dir` as an `F` entry.
fn snapshot(root: &Path, dir: &Path, out: &mut Vec<u8>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            snapshot(root, &path, out)?;
        } else if entry.file_type()?.is_file() && entry.file_name() != ".lock" {
            let bytes = std::fs::read(&path)?;
            out.push(b'F');
            push_path(out, path.strip_prefix(root).unwrap_or(&path));
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
    }
    Ok(())
}

fn push_path(out: &mut Vec<u8>, path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let bytes = if bytes.is_empty() { b"." } else { bytes };
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends one entry built by `fill` (given the path relative to the data directory).
fn record(path: &Path, fill: impl FnOnce(&mut Vec<u8>, &Path)) {
    let Some(sim) = sim() else { return };
    let Some(journal) = &sim.journal else { return };
    let path = path.strip_prefix(&sim.root).unwrap_or(path);
    let mut out = Vec::new();
    fill(&mut out, path);
    let mut file = journal
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Err(err) = file.write_all(&out) {
        crate::error!("file journal: {err}");
    }
}

pub fn created(path: &Path) {
    record(path, |out, p| {
        out.push(b'C');
        push_path(out, p);
    });
}

pub fn wrote(path: &Path, offset: u64, bytes: &[u8]) {
    record(path, |out, p| {
        out.push(b'W');
        push_path(out, p);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    });
}

pub fn unlinked(path: &Path) {
    record(path, |out, p| {
        out.push(b'U');
        push_path(out, p);
    });
}

/// An fsync of `path` (a file or a directory) begins: the token to pass to [`synced`].
pub fn sync_begins(path: &Path) -> u64 {
    let Some(sim) = sim() else { return 0 };
    let token = sim.tokens.fetch_add(1, Ordering::Relaxed);
    record(path, |out, p| {
        out.push(b'S');
        push_path(out, p);
        out.extend_from_slice(&token.to_le_bytes());
    });
    token
}

/// The fsync that began with `token` completed without error.
pub fn synced(token: u64) {
    record(Path::new(""), |out, _| {
        out.push(b'E');
        out.extend_from_slice(&token.to_le_bytes());
    });
}
