//! Files of either backend: positioned reads and writes, fdatasync, unlink, directory sync.
//!
//! On epoll every call runs on tokio's blocking pool, so a slow disk never stalls the shard
//! thread; on io_uring they are ring operations.

pub mod sim;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::os::fd::AsRawFd;

use bytes::Bytes;
use io_uring::{opcode, types};

use super::uring::{result, Op};
use super::{backend, Backend};

pub struct File {
    inner: FileInner,
    path: PathBuf,
}

enum FileInner {
    Uring(std::fs::File),
    Epoll(Arc<std::fs::File>),
}

/// Runs blocking file work off the shard thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("file task failed: {e}"))))
}

fn open_std(path: &Path, write: bool) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .open(path)
}

impl File {
    /// Opens `path` for reading and writing at explicit offsets, creating it if missing.
    pub async fn open_rw(path: &Path) -> io::Result<File> {
        File::open(path, true).await
    }

    /// Opens `path` for reading.
    pub async fn open_read(path: &Path) -> io::Result<File> {
        File::open(path, false).await
    }

    async fn open(path: &Path, write: bool) -> io::Result<File> {
        sim::check(sim::Op::Open)?;
        let path: PathBuf = path.to_path_buf();
        let creates = write && sim::journaling() && !path.exists();
        let inner = match backend() {
            // Opening is rare (a segment per 64 MiB) and cheap; the ring is for data.
            Backend::Uring => FileInner::Uring(open_std(&path, write)?),
            Backend::Epoll => {
                let at = path.clone();
                FileInner::Epoll(Arc::new(blocking(move || open_std(&at, write)).await?))
            }
        };
        if creates {
            sim::created(&path);
        }
        Ok(File { inner, path })
    }

    /// Writes all of `bytes` at `offset`, or the part a simulated fault lets through.
    pub async fn write_all_at(&self, bytes: Bytes, offset: u64) -> io::Result<()> {
        match sim::plan_write(bytes.len())? {
            sim::WritePlan::All => {
                self.write_at(bytes.clone(), offset).await?;
                sim::wrote(&self.path, offset, &bytes);
                Ok(())
            }
            sim::WritePlan::ShortThenFail(part) => {
                self.write_at(bytes.slice(..part), offset).await?;
                sim::wrote(&self.path, offset, &bytes[..part]);
                Err(sim::short_write_error())
            }
        }
    }

    async fn write_at(&self, bytes: Bytes, offset: u64) -> io::Result<()> {
        match &self.inner {
            FileInner::Uring(f) => {
                let fd = types::Fd(f.as_raw_fd());
                let mut done = 0usize;
                let mut bytes = bytes;
                while done < bytes.len() {
                    let left = (bytes.len() - done).min(1 << 30) as u32;
                    // SAFETY (of the pointer): inside `bytes`, owned by the Op until completion.
                    let ptr = unsafe { bytes.as_ptr().add(done) };
                    let entry = opcode::Write::new(fd, ptr, left)
                        .offset(offset + done as u64)
                        .build();
                    let (res, back) = Op::new(entry, bytes).await;
                    bytes = back;
                    match result(res)? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => done += n,
                    }
                }
                Ok(())
            }
            FileInner::Epoll(f) => {
                let f = f.clone();
                blocking(move || {
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(&bytes, offset)
                })
                .await
            }
        }
    }

    /// Reads exactly `len` bytes at `offset`.
    pub async fn read_exact_at(&self, len: usize, offset: u64) -> io::Result<Bytes> {
        match &self.inner {
            FileInner::Uring(f) => {
                let fd = types::Fd(f.as_raw_fd());
                let mut buf = vec![0u8; len];
                let mut done = 0usize;
                while done < len {
                    let left = (len - done).min(1 << 30) as u32;
                    // SAFETY (of the pointer): inside `buf`, owned by the Op until completion.
                    let ptr = unsafe { buf.as_mut_ptr().add(done) };
                    let entry = opcode::Read::new(fd, ptr, left)
                        .offset(offset + done as u64)
                        .build();
                    let (res, back) = Op::new(entry, buf).await;
                    buf = back;
                    match result(res)? {
                        0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                        n => done += n,
                    }
                }
                Ok(Bytes::from(buf))
            }
            FileInner::Epoll(f) => {
                let f = f.clone();
                blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = vec![0u8; len];
                    f.read_exact_at(&mut buf, offset)?;
                    Ok(Bytes::from(buf))
                })
                .await
            }
        }
    }

    /// fdatasync: what was written is on disk when this returns Ok.
    pub async fn sync_data(&self) -> io::Result<()> {
        sim::check(sim::Op::Fsync)?;
        let token = sim::sync_begins(&self.path);
        // Timed here, on the shard's thread, so that the latency is the one a confirm waits
        // for (on epoll that includes the hop to the blocking pool); failed syncs count too.
        let started = std::time::Instant::now();
        let synced = self.fdatasync().await;
        crate::stats::shard_metrics::fsync_took(started.elapsed());
        synced?;
        sim::synced(token);
        Ok(())
    }

    async fn fdatasync(&self) -> io::Result<()> {
        match &self.inner {
            FileInner::Uring(f) => {
                let fd = types::Fd(f.as_raw_fd());
                let entry = opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build();
                result(Op::new(entry, ()).await.0).map(|_| ())
            }
            FileInner::Epoll(f) => {
                let f = f.clone();
                blocking(move || f.sync_data()).await
            }
        }
    }
}

/// Unlinks `path`.
pub async fn remove_file(path: &Path) -> io::Result<()> {
    sim::check(sim::Op::Unlink)?;
    unlink(path).await?;
    sim::unlinked(path);
    Ok(())
}

async fn unlink(path: &Path) -> io::Result<()> {
    match backend() {
        Backend::Uring => {
            use std::os::unix::ffi::OsStrExt;
            let path = std::ffi::CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let entry = opcode::UnlinkAt::new(types::Fd(libc::AT_FDCWD), path.as_ptr()).build();
            let (res, path) = Op::new(entry, path).await;
            match result(res) {
                // Kernels before 5.11 have no unlinkat operation.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    std::fs::remove_file(std::ffi::OsStr::from_bytes(path.as_bytes()))
                }
                res => res.map(|_| ()),
            }
        }
        Backend::Epoll => {
            let path = path.to_path_buf();
            blocking(move || std::fs::remove_file(path)).await
        }
    }
}

/// fsync of a directory, so that entries created or removed in it survive a power loss.
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = File::open_read(dir).await?;
    dir.sync_data().await
}
