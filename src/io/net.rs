//! TCP sockets of either backend.
//!
//! Reads and writes take owned buffers and hand them back, as completion-based I/O needs
//! (the kernel owns the buffer until the operation completes). A stream is shared by a
//! connection's reader and writer tasks, so every method takes `&self`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::Duration;

use bytes::BytesMut;
use io_uring::{opcode, types};

use super::uring::{result, Op};
use super::{backend, Backend};

pub struct TcpListener(ListenerInner);

enum ListenerInner {
    Uring(std::net::TcpListener),
    Epoll(tokio::net::TcpListener),
}

impl TcpListener {
    /// Takes over a bound, listening, non-blocking socket on the calling shard.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener(match backend() {
            Backend::Uring => ListenerInner::Uring(listener),
            Backend::Epoll => ListenerInner::Epoll(tokio::net::TcpListener::from_std(listener)?),
        }))
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match &self.0 {
            ListenerInner::Uring(l) => {
                let fd = types::Fd(l.as_raw_fd());
                let entry = opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build();
                let (res, ()) = Op::new(entry, ()).result_is_fd().await;
                let fd = result(res)?;
                // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
                let stream = unsafe { std::net::TcpStream::from_raw_fd(fd as i32) };
                let peer = stream.peer_addr()?;
                Ok((TcpStream(StreamInner::Uring(stream)), peer))
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
    Uring(std::net::TcpStream),
    Epoll(tokio::net::TcpStream),
}

impl TcpStream {
    /// Reads into the spare capacity of `buf` (after its `len()`), so a partial frame at the
    /// front stays untouched. `Ok(0)` is end of stream, or no spare capacity.
    pub async fn read(&self, mut buf: BytesMut) -> (io::Result<usize>, BytesMut) {
        match &self.0 {
            StreamInner::Uring(s) => {
                let spare = buf.capacity() - buf.len();
                if spare == 0 {
                    return (Ok(0), buf);
                }
                // SAFETY (of the pointer): it addresses the spare capacity of `buf`, which the
                // Op owns until the completion, and `spare` bytes are allocated there.
                let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
                let fd = types::Fd(s.as_raw_fd());
                let entry = opcode::Recv::new(fd, ptr, spare.min(u32::MAX as usize) as u32).build();
                let (res, mut buf) = Op::new(entry, buf).await;
                let n = result(res);
                if let Ok(n) = n {
                    // SAFETY: the kernel initialized `n` bytes after the old length.
                    unsafe { buf.set_len(buf.len() + n) };
                }
                (n, buf)
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

    /// Writes all of `buf`, handing it back for reuse. Fails with `TimedOut` (and hands back
    /// nothing) when one write makes no progress for `stall`: the peer stopped reading.
    pub async fn write_all(
        &self,
        mut buf: BytesMut,
        stall: Duration,
    ) -> (io::Result<()>, BytesMut) {
        let mut done = 0;
        while done < buf.len() {
            let Ok((res, back)) = super::time::timeout(stall, self.write(buf, done)).await else {
                return (Err(io::ErrorKind::TimedOut.into()), BytesMut::new());
            };
            buf = back;
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// One write of `buf[from..]`.
    async fn write(&self, buf: BytesMut, from: usize) -> (io::Result<usize>, BytesMut) {
        match &self.0 {
            StreamInner::Uring(s) => {
                let left = (buf.len() - from).min(u32::MAX as usize) as u32;
                // SAFETY (of the pointer): inside `buf`, which the Op owns until completion.
                let ptr = unsafe { buf.as_ptr().add(from) };
                let fd = types::Fd(s.as_raw_fd());
                let entry = opcode::Send::new(fd, ptr, left)
                    .flags(libc::MSG_NOSIGNAL)
                    .build();
                let (res, buf) = Op::new(entry, buf).await;
                (result(res), buf)
            }
            StreamInner::Epoll(s) => loop {
                if let Err(e) = s.writable().await {
                    return (Err(e), buf);
                }
                match s.try_write(&buf[from..]) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    res => return (res, buf),
                }
            },
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
        let fd = match &self.0 {
            StreamInner::Uring(s) => s.as_raw_fd(),
            StreamInner::Epoll(s) => s.as_raw_fd(),
        };
        // SAFETY: shutdown(2) on a descriptor this stream owns; no memory is involved.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}
