//! An eventfd a shard parks on: other shards write to it to wake this one.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use super::uring::{result, Op};
use super::{backend, Backend};

pub struct EventFd(Inner);

enum Inner {
    Uring(OwnedFd),
    Epoll(tokio::io::unix::AsyncFd<OwnedFd>),
}

impl EventFd {
    /// Waits on a duplicate of `fd` (an eventfd owned elsewhere).
    pub fn watch(fd: RawFd) -> io::Result<EventFd> {
        // SAFETY: dup returns a new descriptor (checked below) that this value then owns.
        let own = unsafe { libc::dup(fd) };
        if own < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `own` is a fresh, valid descriptor owned by nothing else.
        let owned = unsafe { OwnedFd::from_raw_fd(own) };
        Ok(EventFd(match backend() {
            Backend::Uring => Inner::Uring(owned),
            Backend::Epoll => {
                // SAFETY: fcntl on a descriptor owned here; sets O_NONBLOCK for the reactor.
                unsafe {
                    let flags = libc::fcntl(own, libc::F_GETFL);
                    libc::fcntl(own, libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
                use tokio::io::{unix::AsyncFd, Interest};
                // SAFETY: `owned` is an open descriptor that the AsyncFd owns from here on and
                // that always returns itself from as_raw_fd.
                let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) };
                Inner::Epoll(fd.map_err(|e| e.into_parts().1)?)
            }
        }))
    }

    /// Waits until the counter is non-zero and resets it.
    pub async fn wait(&self) -> io::Result<()> {
        match &self.0 {
            Inner::Uring(fd) => {
                use std::os::fd::AsRawFd;
                let mut counter = Box::new(0u64);
                let ptr: *mut u8 = (&mut *counter as *mut u64).cast();
                let entry = opcode::Read::new(types::Fd(fd.as_raw_fd()), ptr, 8).build();
                result(Op::new(entry, counter).await.0).map(|_| ())
            }
            Inner::Epoll(fd) => loop {
                let mut guard = fd.readable().await?;
                let mut value = 0u64;
                // SAFETY: reads 8 bytes into a local u64 from a descriptor this value owns.
                let n = unsafe {
                    use std::os::fd::AsRawFd;
                    libc::read(fd.get_ref().as_raw_fd(), (&mut value as *mut u64).cast(), 8)
                };
                if n == 8 {
                    return Ok(());
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::WouldBlock {
                    return Err(err);
                }
                guard.clear_ready();
            },
        }
    }
}
