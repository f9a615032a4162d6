//! TCP sockets of either backend.
//!
//! Reads and writes take owned buffers and hand them back, as completion-based I/O needs
//! (the kernel owns the buffer until the operation completes). A stream is shared by a
//! connection's reader and writer tasks, so every method takes `&self`.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;

use super::{backend, Backend};

pub struct TcpListener(ListenerInner);

enum ListenerInner {
    Uring(tokio_uring::net::TcpListener),
    Epoll(tokio::net::TcpListener),
}

impl TcpListener {
    /// Takes over a bound, listening, non-blocking socket on the calling shard.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener(match backend() {
            Backend::Uring => {
                ListenerInner::Uring(tokio_uring::net::TcpListener::from_std(listener))
            }
            Backend::Epoll => ListenerInner::Epoll(tokio::net::TcpListener::from_std(listener)?),
        }))
    }

    /// The next connection. Never cancel this future: an accept that completes after its
    /// future is dropped would leak the accepted socket.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.0 {
            ListenerInner::Uring(l) => {
                let (s, peer) = l.accept().await?;
                Ok((TcpStream(StreamInner::Uring(s)), peer))
            }
            ListenerInner::Epoll(l) => {
                let (s, peer) = l.accept().await?;
                Ok((TcpStream(StreamInner::Epoll(s)), peer))
            }
        }
    }
}

pub struct TcpStream(StreamInner);

enum StreamInner {
    Uring(tokio_uring::net::TcpStream),
    Epoll(tokio::net::TcpStream),
}

impl TcpStream {
    /// Reads into the spare capacity of `buf` (after its `len()`), so a partial frame at the
    /// front stays untouched. `Ok(0)` is end of stream, or no spare capacity.
    pub async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        match &self.0 {
            StreamInner::Uring(s) => {
                use tokio_uring::buf::BoundedBuf;
                let start = buf.len();
                let (res, slice) = s.read(buf.slice(start..)).await;
                (res, slice.into_inner())
            }
            StreamInner::Epoll(s) => loop {
                if let Err(e) = s.readable().await {
                    return (Err(e), buf);
                }
                match s.try_read_buf(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    res => return (res, buf),
                }
            },
        }
    }

    /// Writes all of `buf`, handing it back for reuse.
    pub async fn write_all(&self, buf: BytesMut) -> (io::Result<()>, BytesMut) {
        match &self.0 {
            StreamInner::Uring(s) => s.write_all(buf).await,
            StreamInner::Epoll(s) => {
                let mut done = 0;
                while done < buf.len() {
                    if let Err(e) = s.writable().await {
                        return (Err(e), buf);
                    }
                    match s.try_write(&buf[done..]) {
                        Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return (Err(e), buf),
                    }
                }
                (Ok(()), buf)
            }
        }
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match &self.0 {
            StreamInner::Uring(s) => s.set_nodelay(on),
            StreamInner::Epoll(s) => s.set_nodelay(on),
        }
    }

    /// Shuts both directions down at once; pending reads and writes then complete.
    pub fn shutdown(&self) {
        use std::os::fd::AsRawFd;
        let fd = match &self.0 {
            StreamInner::Uring(s) => s.as_raw_fd(),
            StreamInner::Epoll(s) => s.as_raw_fd(),
        };
        // SAFETY: shutdown(2) on a descriptor this stream owns; no memory is involved.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}
