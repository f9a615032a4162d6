//! The I/O seam: every socket, file, timer and fsync of a shard goes through here.
//!
//! A shard runs one single-threaded runtime ([`run`]) and spawns its tasks with [`spawn`].
//! Two backends serve the same shard loop:
//!
//! - **io_uring** (the default): sockets and files are completion-based operations on a
//!   ring owned by the shard's thread.
//! - **epoll**: plain tokio (a current-thread runtime per shard), for hosts where io_uring is
//!   refused: Docker's and containerd's default seccomp profiles, `kernel.io_uring_disabled`,
//!   gVisor, old kernels. File operations run on tokio's blocking pool there, so an fsync
//!   never stalls the shard.
//!
//! `--io auto` probes io_uring once at start ([`resolve`]) and falls back to epoll with one
//! log line that says why and how to enable io_uring.
//!
//! A client connection is a [`Stream`]: plain TCP, or TLS ([`tls`]: rustls driven through
//! its buffered API on top of the same sockets, so both backends serve AMQPS).
//!
//! Nothing outside this module names io_uring or tokio's reactor. Both backends run the shard
//! on a tokio current-thread runtime; timers ([`time`]) are tokio's in both.

pub mod fs;
pub mod net;
mod probe;
pub mod stream;
pub mod time;
pub mod tls;
mod uring;
mod wake;

use std::cell::Cell;
use std::future::Future;

pub use probe::uring_refusal;
pub use stream::Stream;
pub use wake::EventFd;

/// What `--io` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    /// io_uring when the kernel allows it, epoll otherwise.
    Auto,
    /// io_uring, or refuse to start.
    Uring,
    /// epoll (plain tokio), even where io_uring works.
    Epoll,
}

/// The backend a shard runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Uring,
    Epoll,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        }
    }
}

/// Decides the backend for `choice`: `auto` probes io_uring and falls back to epoll with one
/// log line naming the cause and the fix; `uring` fails with that line instead.
pub fn resolve(choice: IoChoice) -> std::io::Result<Backend> {
    match (choice, uring_refusal()) {
        (IoChoice::Epoll, _) => Ok(Backend::Epoll),
        (_, None) => Ok(Backend::Uring),
        (IoChoice::Uring, Some(why)) => Err(std::io::Error::other(why)),
        (IoChoice::Auto, Some(why)) => {
            crate::warn!("{why}; running on epoll instead");
            Ok(Backend::Epoll)
        }
    }
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Epoll) };
}

/// The backend of the calling shard thread.
pub fn backend() -> Backend {
    BACKEND.with(Cell::get)
}

/// Runs `future` to completion on a new single-threaded runtime of `backend` on this thread;
/// tasks it spawns with [`spawn`] run on the same thread.
pub fn run<F: Future>(backend: Backend, future: F) -> std::io::Result<F::Output> {
    BACKEND.with(|b| b.set(backend));
    match backend {
        Backend::Uring => uring::run(future),
        Backend::Epoll => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let local = tokio::task::LocalSet::new();
            Ok(local.block_on(&runtime, future))
        }
    }
}

/// Spawns a task on the calling shard's runtime.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    tokio::task::spawn_local(future)
}

/// Lets the shard's other tasks run, after handing the kernel what is queued (io_uring).
pub async fn yield_now() {
    if backend() == Backend::Uring {
        uring::submit();
    }
    tokio::task::yield_now().await;
}

/// Runs `future`, turning a panic inside it into `Err` with the panic's message: one
/// connection's bug closes that connection, not the shard.
pub async fn catch_unwind<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx)));
        match polled {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(panic) => std::task::Poll::Ready(Err(panic_message(panic.as_ref()))),
        }
    })
    .await
}

/// The message a panic carried.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        return (*s).to_string();
    }
    panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Spawns one of a shard's core tasks: if it ever panics, the broker logs it and exits with
/// status 70, so that its service manager restarts it and recovery runs, rather than going
/// on with a shard that no longer drains its rings or writes its store.
pub fn spawn_core<F>(what: &'static str, future: F)
where
    F: Future<Output = ()> + 'static,
{
    spawn(async move {
        if let Err(panic) = catch_unwind(future).await {
            crate::error!("{what} panicked: {panic}; exiting so that the broker is restarted");
            std::process::exit(70);
        }
    });
}
