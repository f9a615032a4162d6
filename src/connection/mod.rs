//! Client connections: accept, handshake, channels, and framing out.
//!
//! Each connection is three tasks on its shard ([`listener`] starts them). The [`reader`]
//! reads into a `BytesMut`, splits complete frames off it without copying, and hands them to
//! the [`handshake`] (channel 0) or to their [`channel`], one file per method family. Frames
//! the connection produces (replies, and deliveries, confirms and returns that arrive from
//! queues meanwhile, see [`output`]) are appended to its output buffer; the [`writer`] swaps
//! that buffer out and writes it with one syscall per turn, so many frames share one write.
//! The [`heartbeat`] task keeps the link alive. The reader stops reading while a ring to
//! another shard is full, which is how a slow shard pushes back on the sockets feeding it.

mod channel;
mod credit;
mod error;
mod handshake;
mod heartbeat;
mod lifecycle_log;
mod listener;
mod output;
mod reader;
mod traced;
mod tracking;
mod writer;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use tokio::sync::Notify;

use crate::broker::permissions::Permission;
use crate::broker::topic_permissions::TopicGrants;
use crate::ids::{ConnRef, QueueRef};
use crate::protocol::frame::encode_method;
use crate::protocol::method::*;
use crate::protocol::{FieldTable, Method};

use channel::Channel;
pub use error::{reply_name, short_text, HardError};
pub use listener::accept_loop;

/// Free space offered to a read: it starts small so an idle connection costs little memory,
/// doubles while reads fill it, and shrinks back when they do not. The ceiling bounds how much
/// work one read brings in before the shard's other connections get their turn.
const READ_MIN_BYTES: usize = 2 * 1024;
const READ_MAX_BYTES: usize = 16 * 1024;
/// A writer keeps its spare buffer for reuse only below this size.
const SPARE_KEEP_BYTES: usize = 256 * 1024;
/// Frame size allowed before tune-ok (RabbitMQ uses the same floor).
const PRE_TUNE_FRAME_MAX: u32 = 131_072;
/// How long a closing connection waits for the peer's close-ok.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);
/// Frames handled before a connection yields to the rest of its shard.
const FRAMES_PER_TURN: u32 = 384;
/// How long a finished connection waits for the peer to close the socket.
const LINGER_TIMEOUT: Duration = Duration::from_secs(10);
/// Output above this stops the reader until the writer catches up.
const OUTPUT_HIGH_WATER_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 8-byte protocol header.
    Header,
    StartOk,
    TuneOk,
    Open,
    Opened,
    /// We sent connection.close and wait for close-ok.
    Closing,
    /// Done: the reader stops.
    Closed,
}

/// Client capabilities from connection.start-ok that change what we send.
#[derive(Debug, Default, Clone, Copy)]
struct ClientCapabilities {
    consumer_cancel_notify: bool,
    connection_blocked: bool,
}

struct ConnState {
    phase: Phase,
    frame_max: u32,
    channel_max: u16,
    heartbeat_secs: u16,
    capabilities: ClientCapabilities,
    channels: FxHashMap<u16, Channel>,
    user: String,
    /// The user's permissions in the vhost, taken when it was opened.
    permission: Option<Rc<Permission>>,
    /// The user has the `impersonator` tag: it may publish with another `user-id`.
    impersonator: bool,
    /// The user's topic permissions in the vhost, compiled when it was opened; None: none.
    topic: Option<Rc<TopicGrants>>,
    /// Counted against user and vhost connection limits (see `tracking`) since the open.
    tracked: bool,
    /// The vhost it opened.
    vhost: Bytes,
    /// From connection.start-ok, for the management API.
    client_properties: FieldTable,
    /// When it was accepted, in milliseconds since the Unix epoch.
    connected_at_ms: u64,
    /// The SASL mechanism it logged in with.
    mechanism: String,
    /// The client's product, version and connection name, for the log.
    client: lifecycle_log::ClientInfo,
}

/// Deliveries of one consumer written since the last write.
#[derive(Debug, Clone, Copy)]
struct Credit {
    queue: QueueRef,
    consumer_id: u64,
    n: u32,
}

pub struct Conn {
    pub cref: ConnRef,
    /// Transit credit owed to queues for deliveries in `out`.
    credits: RefCell<Vec<Credit>>,
    /// Channels with publisher confirms waiting to be encoded.
    confirms_due: RefCell<Vec<u16>>,
    peer: SocketAddr,
    out: RefCell<BytesMut>,
    writable: Notify,
    state: RefCell<ConnState>,
    /// Set when the reader is done; the writer drains what is left and stops.
    done: Cell<bool>,
    last_read: Cell<Instant>,
    last_write: Cell<Instant>,
    /// Close the socket at once instead of waiting for the peer (wrong protocol header).
    hang_up: Cell<bool>,
    /// The peer published at least once: it is blocked while a resource alarm is in force.
    pub published: Cell<bool>,
    /// connection.blocked was sent and connection.unblocked is owed.
    told_blocked: Cell<bool>,
    /// Credit per destination queue (credit flow): no reading while one is used up.
    credit: RefCell<credit::PublishCredit>,
    /// Wakes the reader when credit comes back.
    credit_back: Notify,
    /// Shards this connection declared exclusive queues or consumed on: the only ones told
    /// when it closes (see `listener::release`).
    queue_shards: RefCell<SmallVec<[u16; 4]>>,
    /// The user a verified TLS client certificate names (`--ssl-cert-login-from`): the
    /// connection may log in with EXTERNAL as that user.
    cert_user: Option<String>,
    /// Bytes and reads/writes on the socket, for the management API.
    pub(crate) io_counts: IoCounts,
    /// Messages it published to the default exchange (the exchange's `publish_in`).
    pub(crate) default_published: Cell<u64>,
    /// Over TLS: the negotiated version and cipher suite (rustls' names).
    tls: Option<(&'static str, &'static str)>,
}

/// A connection's socket traffic: RabbitMQ's `recv_oct`, `recv_cnt`, `send_oct`, `send_cnt`.
#[derive(Default)]
pub(crate) struct IoCounts {
    recv_oct: Cell<u64>,
    recv_cnt: Cell<u64>,
    send_oct: Cell<u64>,
    send_cnt: Cell<u64>,
}

impl IoCounts {
    fn received(&self, n: usize) {
        self.recv_oct.set(self.recv_oct.get() + n as u64);
        self.recv_cnt.set(self.recv_cnt.get() + 1);
    }

    fn sent(&self, n: usize) {
        self.send_oct.set(self.send_oct.get() + n as u64);
        self.send_cnt.set(self.send_cnt.get() + 1);
    }

    /// (recv_oct, recv_cnt, send_oct, send_cnt).
    pub(crate) fn get(&self) -> [u64; 4] {
        [
            self.recv_oct.get(),
            self.recv_cnt.get(),
            self.send_oct.get(),
            self.send_cnt.get(),
        ]
    }
}

impl Conn {
    fn new(
        cref: ConnRef,
        peer: SocketAddr,
        cert_user: Option<String>,
        tls: Option<(&'static str, &'static str)>,
    ) -> Self {
        let now = Instant::now();
        Conn {
            cref,
            peer,
            out: RefCell::new(BytesMut::new()),
            credits: RefCell::new(Vec::new()),
            confirms_due: RefCell::new(Vec::new()),
            writable: Notify::new(),
            state: RefCell::new(ConnState {
                phase: Phase::Header,
                frame_max: PRE_TUNE_FRAME_MAX,
                channel_max: 0,
                heartbeat_secs: 0,
                capabilities: ClientCapabilities::default(),
                channels: FxHashMap::default(),
                user: String::new(),
                permission: None,
                impersonator: false,
                topic: None,
                tracked: false,
                vhost: Bytes::new(),
                client_properties: FieldTable::default(),
                connected_at_ms: crate::io::time::unix_ms(),
                mechanism: String::new(),
                client: lifecycle_log::ClientInfo::default(),
            }),
            done: Cell::new(false),
            last_read: Cell::new(now),
            last_write: Cell::new(now),
            hang_up: Cell::new(false),
            published: Cell::new(false),
            told_blocked: Cell::new(false),
            credit: RefCell::new(credit::PublishCredit::default()),
            credit_back: Notify::new(),
            queue_shards: RefCell::new(SmallVec::new()),
            cert_user,
            io_counts: IoCounts::default(),
            tls,
            default_published: Cell::new(0),
        }
    }

    /// Remembers that shard `owner` may hold state of this connection (an exclusive queue,
    /// a consumer): it is told when the connection closes. Called before the request, so
    /// that a connection that closes while waiting for the answer still tells it.
    fn uses_queue_shard(&self, owner: usize) {
        let owner = owner as u16;
        let mut shards = self.queue_shards.borrow_mut();
        if !shards.contains(&owner) {
            shards.push(owner);
        }
    }

    fn send_method(&self, channel: u16, method: &Method) {
        encode_method(&mut self.out.borrow_mut(), channel, method);
        self.writable.notify_one();
    }

    /// The reader must wait for credit: some destination is out of it, and the connection
    /// has no consumer whose acks it must keep reading (see `credit.rs`).
    fn waits_for_credit(&self) -> bool {
        self.credit.borrow().exhausted()
            && !self
                .state
                .borrow()
                .channels
                .values()
                .any(|ch| ch.has_acking_consumer())
    }

    /// The connection is gone: its user's and vhost's counts drop (see `tracking`).
    fn untrack(&self) {
        let mut state = self.state.borrow_mut();
        if std::mem::take(&mut state.tracked) {
            let channels = state.channels.len() as u64;
            tracking::close_connection(&state.user, &state.vhost, channels);
        }
    }

    fn frame_max(&self) -> u32 {
        self.state.borrow().frame_max
    }

    /// Sends connection.close and stops processing anything but close-ok.
    fn hard_close(&self, err: HardError) {
        let mut state = self.state.borrow_mut();
        if matches!(state.phase, Phase::Closing | Phase::Closed) {
            return;
        }
        crate::warn!(
            "closing AMQP connection {} ({}): {} - {}",
            self.peer,
            state.user,
            err.code,
            err.text
        );
        state.phase = Phase::Closing;
        drop(state);
        let text = format!("{} - {}", reply_name(err.code), err.text);
        self.send_method(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: err.code,
                reply_text: short_text(text),
                class_id: err.class_id,
                method_id: err.method_id,
            }),
        );
    }
}
