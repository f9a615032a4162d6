//! The io_uring backend: one ring per shard thread, driven from the shard's tokio
//! current-thread runtime.
//!
//! - **Submitting.** An operation's entry goes into the submission queue when its future is
//!   created ([`Op::new`]). The first entry after a submit wakes the submitter task, which
//!   the runtime runs after the tasks already waiting in this turn: so everything queued in a
//!   turn reaches the kernel in one `io_uring_enter`, in that turn, without waiting for the
//!   thread to park (tokio-uring 0.5 submitted only from its park hook, so a busy shard held
//!   its writes back). [`super::yield_now`] and the park hook submit too.
//! - **Completing.** The ring's fd is registered with tokio's reactor; when it turns readable
//!   the reaper task drains the completion queue and wakes the waiting futures. The submitter
//!   also reaps right after each submit, since many operations (a recv with data waiting, a
//!   send with room in the socket buffer) complete inside `io_uring_enter`.
//! - **Buffers.** An [`Op`] owns everything the kernel may touch (buffers, addresses, paths)
//!   until its completion arrives. If the future is dropped first, its data moves into the
//!   slot table as an orphan, an async cancel is queued, and the data is freed when the
//!   operation's completion finally comes; an orphaned accept closes the socket it accepted.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue, IoUring};
use slab::Slab;

/// Submission queue entries per ring (the completion queue gets twice as many).
const ENTRIES: u32 = 1024;
/// user_data of entries whose completion nobody waits for (async cancels).
const IGNORED: u64 = u64::MAX;

enum Slot {
    /// Queued or in flight; the future waits.
    Waiting(Option<Waker>),
    /// Completed before its future looked again.
    Done(i32),
    /// The future went away: what the kernel may still touch stays here until the
    /// completion; `closes_fd`: the result is a descriptor nobody will own.
    Orphan {
        _keep: Box<dyn Any>,
        closes_fd: bool,
    },
}

struct Driver {
    ring: IoUring,
    slots: Slab<Slot>,
    /// Entries queued since the last submit.
    queued: u32,
    submit_scheduled: bool,
    submitter: Option<Waker>,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// Runs `f` on this thread's driver. Never called with the driver borrowed: no borrow lives
/// across an await, and wakers only schedule tasks.
fn with_driver<R>(f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    DRIVER
        .try_with(|d| d.try_borrow_mut().ok()?.as_mut().map(f))
        .ok()
        .flatten()
}

impl Driver {
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every buffer, address or path an entry points to is owned by its Op
            // (or by its orphan slot) until the entry's completion has been reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                break;
            }
            self.submit(); // the queue is full: make room
        }
        self.queued += 1;
        if !self.submit_scheduled {
            self.submit_scheduled = true;
            if let Some(w) = &self.submitter {
                w.wake_by_ref();
            }
        }
    }

    fn submit(&mut self) {
        self.submit_scheduled = false;
        if self.queued == 0 && !self.ring.submission().cq_overflow() {
            return;
        }
        loop {
            match self.ring.submit() {
                Ok(sqes) => {
                    crate::stats::shard_metrics::uring_submitted(sqes);
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {
                    // The completion queue is full: drain it, then try again.
                    self.reap();
                }
                Err(e) => {
                    crate::error!("io_uring_enter failed: {e}");
                    break;
                }
            }
        }
        self.queued = 0;
    }

    fn reap(&mut self) {
        let Driver { ring, slots, .. } = self;
        for cqe in ring.completion() {
            let user_data = cqe.user_data();
            if user_data == IGNORED {
                continue;
            }
            let index = user_data as usize;
            let res = cqe.result();
            match slots.get_mut(index) {
                Some(Slot::Waiting(waker)) => {
                    if let Some(w) = waker.take() {
                        w.wake();
                    }
                    slots[index] = Slot::Done(res);
                }
                Some(Slot::Orphan { closes_fd, .. }) => {
                    if *closes_fd && res >= 0 {
                        // SAFETY: the kernel handed this descriptor to an accept nobody
                        // waits for any more; it is closed once, here.
                        unsafe { libc::close(res) };
                    }
                    slots.remove(index);
                }
                Some(Slot::Done(_)) | None => {
                    debug_assert!(false, "io_uring completion for unknown slot {index}");
                }
            }
        }
    }
}

/// Submits what is queued and reaps what completed (a yield point, or the park hook).
pub fn submit() {
    with_driver(|d| {
        d.submit();
        d.reap();
    });
}

/// An io_uring operation: resolves to the kernel's result (a count, or a negative errno)
/// and the data it owned.
pub struct Op<T: 'static> {
    index: usize,
    data: Option<T>,
    closes_fd: bool,
}

impl<T: 'static> Op<T> {
    /// Queues `entry`, which may point into `data` only.
    pub fn new(entry: squeue::Entry, data: T) -> Op<T> {
        let index = with_driver(|d| {
            let index = d.slots.insert(Slot::Waiting(None));
            d.push(entry.user_data(index as u64));
            index
        });
        let Some(index) = index else {
            // No ring on this thread: only a programming error gets here.
            panic!("io_uring operation outside an io_uring shard");
        };
        Op {
            index,
            data: Some(data),
            closes_fd: false,
        }
    }

    /// The result is a new descriptor (accept): closed if the future is dropped first.
    pub fn result_is_fd(mut self) -> Self {
        self.closes_fd = true;
        self
    }
}

impl<T: Unpin + 'static> Future for Op<T> {
    type Output = (i32, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        let done = with_driver(|d| match d.slots.get_mut(index) {
            Some(Slot::Done(res)) => {
                let res = *res;
                d.slots.remove(index);
                Some(res)
            }
            Some(Slot::Waiting(waker)) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                None
            }
            _ => Some(-libc::ECANCELED),
        })
        .flatten();
        match (done, self.data.take()) {
            (Some(res), Some(data)) => Poll::Ready((res, data)),
            (_, data) => {
                self.data = data;
                Poll::Pending
            }
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        if self.data.is_none() {
            return; // completed and handed out
        }
        let (index, closes_fd) = (self.index, self.closes_fd);
        let data = &mut self.data;
        let handled = with_driver(|d| match d.slots.get(index) {
            Some(Slot::Done(res)) => {
                if closes_fd && *res >= 0 {
                    // SAFETY: an accepted descriptor nobody took; closed once, here.
                    unsafe { libc::close(*res) };
                }
                d.slots.remove(index);
                true
            }
            Some(Slot::Waiting(_)) => {
                d.slots[index] = Slot::Orphan {
                    _keep: Box::new(data.take()),
                    closes_fd,
                };
                d.push(
                    opcode::AsyncCancel::new(index as u64)
                        .build()
                        .user_data(IGNORED),
                );
                true
            }
            _ => false,
        });
        if handled != Some(true) {
            // The driver is gone (thread exit) while the kernel may still use the data.
            if let Some(data) = self.data.take() {
                std::mem::forget(data);
            }
        }
    }
}

/// Turns a kernel result into a count or an error.
pub fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// The submitter task: runs once per turn in which something was queued.
async fn submitter() {
    std::future::poll_fn(|cx| {
        with_driver(|d| {
            d.submitter = Some(cx.waker().clone());
            d.submit();
            d.reap();
        });
        Poll::<()>::Pending
    })
    .await;
}

/// The ring's fd, borrowed for the reactor (the ring closes it).
struct RingFd(RawFd);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The reaper task: wakes the futures whose operations completed.
async fn reaper(fd: RawFd) {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the ring's fd stays open for as long as the driver, which outlives this task
    // (both live until the shard's thread ends).
    let registered = unsafe { AsyncFd::register_with_interest(RingFd(fd), Interest::READABLE) };
    let Ok(afd) = registered else {
        crate::error!("cannot watch the io_uring completion queue");
        return;
    };
    loop {
        let Ok(mut ready) = afd.readable().await else {
            return;
        };
        with_driver(Driver::reap);
        ready.clear_ready();
    }
}

/// Runs `future` on a current-thread runtime with a ring for this thread.
pub fn run<F: Future>(future: F) -> io::Result<F::Output> {
    let ring = IoUring::builder().build(ENTRIES)?;
    let fd = ring.as_raw_fd();
    DRIVER.with(|d| {
        *d.borrow_mut() = Some(Driver {
            ring,
            slots: Slab::with_capacity(256),
            queued: 0,
            submit_scheduled: false,
            submitter: None,
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(submit)
        .build()?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&runtime, async move {
        tokio::task::spawn_local(submitter());
        tokio::task::spawn_local(reaper(fd));
        future.await
    }))
}
