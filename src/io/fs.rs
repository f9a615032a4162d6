//! Files of either backend: positioned reads and writes, fdatasync, unlink, directory sync.
//!
//! On epoll every call runs on tokio's blocking pool, so a slow disk never stalls the shard
//! thread; on io_uring they are ring operations.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{backend, Backend};

pub struct File(FileInner);

enum FileInner {
    Uring(tokio_uring::fs::File),
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
        let path: PathBuf = path.to_path_buf();
        Ok(File(match backend() {
            // Opening is rare (a segment per 64 MiB) and cheap; the ring is for data.
            Backend::Uring => {
                FileInner::Uring(tokio_uring::fs::File::from_std(open_std(&path, write)?))
            }
            Backend::Epoll => {
                FileInner::Epoll(Arc::new(blocking(move || open_std(&path, write)).await?))
            }
        }))
    }

    /// Writes all of `bytes` at `offset`.
    pub async fn write_all_at(&self, bytes: Bytes, offset: u64) -> io::Result<()> {
        match &self.0 {
            FileInner::Uring(f) => f.write_all_at(bytes, offset).await.0,
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
        match &self.0 {
            FileInner::Uring(f) => {
                let (res, buf) = f.read_exact_at(vec![0u8; len], offset).await;
                res.map(|()| Bytes::from(buf))
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
        match &self.0 {
            FileInner::Uring(f) => f.sync_data().await,
            FileInner::Epoll(f) => {
                let f = f.clone();
                blocking(move || f.sync_data()).await
            }
        }
    }
}

/// Unlinks `path`.
pub async fn remove_file(path: &Path) -> io::Result<()> {
    match backend() {
        Backend::Uring => tokio_uring::fs::remove_file(path).await,
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
