//! Message tracing (`warren ctl trace`), RabbitMQ's firehose without its exchange: while a
//! trace session is open, every publish a channel routes and every delivery (or basic.get) in
//! the session's vhost is handed, as an [`Event`], to whoever opened the session.
//!
//! Tracing is off almost always, so the message path pays for it only with one relaxed load
//! of a process-wide flag ([`on`]) per message:
//!
//! ```text
//! shard thread                                  trace thread (server::ctl)
//!   if trace::on() {            // relaxed load
//!       trace::emit(vhost, || event)  --------> Subscription::recv_timeout -> socket
//!   }                       bounded channel,
//!                           try_send: full = dropped and counted, never waits
//! ```
//!
//! Sessions live in a mutex-guarded list that only [`subscribe`] and a session's drop
//! change. A shard thread does not take that mutex per message: it keeps a thread-local copy
//! of the list, tagged with the list's generation, and copies it again only when the
//! generation moved. A session that ended may still sit in a copy until then; its channel is
//! disconnected, so what is sent to it goes nowhere.
//!
//! The flag and the list are process-wide (like the log), not per broker: one process runs
//! one broker.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;

/// How many trace sessions may be open at once: each has a thread and a channel of its own.
pub const MAX_SESSIONS: usize = 8;

/// Events a session buffers for its reader; past that they are dropped (and counted).
pub const SESSION_CAPACITY: usize = 4096;

/// Some session is open. Written under [`SESSIONS`]' lock, read without it on every message:
/// relaxed is enough, a shard that sees it a moment late misses only the first events.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Bumped on every change of [`SESSIONS`]: a shard's copy of the list is current while its
/// generation matches.
static GENERATION: AtomicU64 = AtomicU64::new(0);

static SESSIONS: Mutex<Vec<Arc<Session>>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's copy of [`SESSIONS`] and the generation it was taken at.
    static COPY: RefCell<(u64, Vec<Arc<Session>>)> = const { RefCell::new((0, Vec::new())) };
}

/// Who published or received: the connection (its peer address and the name its client
/// gave, if any), the user, the channel.
#[derive(Debug, Clone)]
pub struct Party {
    pub peer: SocketAddr,
    pub client_name: Option<String>,
    pub user: String,
    pub channel: u16,
}

/// A message a channel routed.
#[derive(Debug, Clone)]
pub struct Publish {
    pub vhost: Bytes,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// The content header's properties as they arrived (decoded by the reader, not here).
    pub properties: Bytes,
    pub body_bytes: u64,
    /// How many queues it was routed to (0: unroutable).
    pub routed_queues: u32,
    pub by: Party,
}

/// A message handed to a consumer, or to basic.get.
#[derive(Debug, Clone)]
pub struct Deliver {
    pub vhost: Bytes,
    pub queue: Bytes,
    /// None for basic.get.
    pub consumer_tag: Option<Bytes>,
    pub redelivered: bool,
    pub exchange: Bytes,
    pub routing_key: Bytes,
    pub properties: Bytes,
    pub body_bytes: u64,
    pub to: Party,
}

/// What a trace reports. Its bytes are copies, not slices of a connection's read buffer: an
/// event waiting for its reader must not pin a whole buffer.
#[derive(Debug, Clone)]
pub enum Event {
    Publish(Box<Publish>),
    Deliver(Box<Deliver>),
}

/// One open trace: its vhost, and the way to its reader.
struct Session {
    vhost: Bytes,
    events: SyncSender<Event>,
    dropped: AtomicU64,
}

/// Is any trace open? The only cost of tracing on the message path while none is.
#[inline]
pub fn on() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Is `vhost` traced?
pub fn is_traced(vhost: &[u8]) -> bool {
    on() && sessions().iter().any(|s| s.vhost == vhost)
}

/// Hands the event `make` builds to every session of `vhost`; `make` runs only if there is
/// one. Never blocks: a session whose reader is behind loses the event (and counts it).
#[cold]
#[inline(never)]
pub fn emit(vhost: &[u8], make: impl FnOnce() -> Event) {
    let generation = GENERATION.load(Ordering::Acquire);
    COPY.with(|copy| {
        let mut copy = copy.borrow_mut();
        if copy.0 != generation {
            *copy = (generation, sessions().clone());
        }
        let mut targets = copy.1.iter().filter(|s| s.vhost == vhost).peekable();
        if targets.peek().is_none() {
            return;
        }
        let mut event = Some(make());
        while let Some(session) = targets.next() {
            // The last session takes the event itself; any before it get a copy.
            let one = match targets.peek() {
                Some(_) => event.clone(),
                None => event.take(),
            };
            if let Some(one) = one {
                session.offer(one);
            }
        }
    });
}

impl Session {
    fn offer(&self, event: Event) {
        match self.events.try_send(event) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn sessions() -> MutexGuard<'static, Vec<Arc<Session>>> {
    SESSIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An open trace, read by one thread. Dropping it ends the trace (and tracing altogether
/// when it was the last one).
pub struct Subscription {
    session: Arc<Session>,
    events: Receiver<Event>,
}

/// Opens a trace of `vhost`, buffering up to `capacity` events; refused past
/// [`MAX_SESSIONS`].
pub fn subscribe(vhost: &[u8], capacity: usize) -> Result<Subscription, String> {
    let (sender, events) = mpsc::sync_channel(capacity);
    let session = Arc::new(Session {
        vhost: Bytes::copy_from_slice(vhost),
        events: sender,
        dropped: AtomicU64::new(0),
    });
    let mut all = sessions();
    if all.len() >= MAX_SESSIONS {
        return Err(format!(
            "{MAX_SESSIONS} traces are open already; stop one (hang up its warren ctl trace)"
        ));
    }
    all.push(session.clone());
    GENERATION.fetch_add(1, Ordering::Release);
    ACTIVE.store(true, Ordering::Relaxed);
    Ok(Subscription { session, events })
}

impl Subscription {
    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        self.events.recv_timeout(timeout)
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Events dropped since the last call because the reader was behind.
    pub fn take_dropped(&self) -> u64 {
        self.session.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut all = sessions();
        all.retain(|s| !Arc::ptr_eq(s, &self.session));
        GENERATION.fetch_add(1, Ordering::Release);
        ACTIVE.store(!all.is_empty(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(vhost: &str, exchange: &str) -> Event {
        Event::Publish(Box::new(Publish {
            vhost: Bytes::copy_from_slice(vhost.as_bytes()),
            exchange: Bytes::copy_from_slice(exchange.as_bytes()),
            routing_key: Bytes::from_static(b"rk"),
            properties: Bytes::new(),
            body_bytes: 3,
            routed_queues: 1,
            by: Party {
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                client_name: None,
                user: "guest".to_string(),
                channel: 1,
            },
        }))
    }

    fn exchange_of(event: Event) -> String {
        match event {
            Event::Publish(p) => String::from_utf8_lossy(&p.exchange).into_owned(),
            Event::Deliver(d) => panic!("expected a publish, got {d:?}"),
        }
    }

    /// One test, since the sessions are process-wide: in steps.
    #[test]
    fn sessions_see_their_vhost_drop_when_full_and_end_on_drop() {
        let vhost = b"trace-unit-test";
        let trace = subscribe(vhost, 2).expect("a session");
        assert!(on() && is_traced(vhost));
        assert!(!is_traced(b"trace-unit-other"));

        let mut built = 0;
        emit(b"trace-unit-other", || {
            built += 1;
            publish("trace-unit-other", "x")
        });
        assert_eq!(built, 0, "expected no event built for an untraced vhost");

        for name in ["a", "b", "c"] {
            emit(vhost, || publish("trace-unit-test", name));
        }
        assert_eq!(trace.try_recv().map(exchange_of).as_deref(), Some("a"));
        assert_eq!(trace.try_recv().map(exchange_of).as_deref(), Some("b"));
        assert!(trace.try_recv().is_none(), "expected the third dropped");
        assert_eq!(trace.take_dropped(), 1);
        assert_eq!(trace.take_dropped(), 0);

        drop(trace);
        assert!(!is_traced(vhost));
        // A copy made while the session was open is refreshed, not used.
        emit(vhost, || {
            panic!("expected no event built after the trace ended")
        });
    }
}
