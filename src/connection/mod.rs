//! Client connections: accept, handshake, the reader loop, the writer, heartbeats.
//!
//! Each connection is two tasks on its shard. The reader reads into a `BytesMut`, splits
//! complete frames off it without copying, and handles them; frames it produces (replies, and
//! deliveries that arrive from queues meanwhile) are appended to the connection's output buffer.
//! The writer swaps that buffer out and writes it with one syscall per turn, so many frames
//! share one write. The reader stops reading while a ring to another shard is full, which is
//! how a slow shard pushes back on the sockets feeding it.

mod channel;
mod handshake;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

use crate::broker::{ConnRef, Message, QueueOp, QueueRef};
use crate::protocol::constants::*;
use crate::protocol::frame::{encode_body, encode_header, encode_heartbeat, encode_method};
use crate::protocol::method::*;
use crate::protocol::{parse_frame, Frame, Method, MethodError};
use crate::shard::{Delivery, Shard, ShardMsg};

use channel::Channel;

/// Free space offered to a read: it starts small so an idle connection costs little memory,
/// doubles while reads fill it, and shrinks back when they do not. The ceiling is kept low on
/// purpose: tokio-uring submits queued operations only when the shard's runtime parks, so the
/// work one read brings in bounds how long every other connection of the shard waits for its
/// next read or write to be submitted (16 KiB: ~500 small publishes, a few hundred µs). With
/// 64 KiB, a flooding publisher stretched that cycle to ~1 ms and capped a prefetch-bound
/// consumer at ~100k msg/s; with 16 KiB it reaches ~300k.
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

/// Creates a listening socket with SO_REUSEPORT, so every shard can accept on the same port.
/// Fails when some other process already listens on `addr`. Every shard binds with
/// SO_REUSEPORT, which would otherwise let a second broker share the port silently and split
/// the clients between the two; a probe bound without it sees the other listener. A broker
/// that was just killed releases its io_uring-held sockets a moment after it exits, so the
/// probe retries for a few seconds before giving up.
pub fn ensure_address_free(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        match probe.bind(&addr.into()) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e} (is another broker running there?)"),
                ))
            }
        }
    }
}

pub fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into()).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr}: {e} (is another broker running there?)"),
        )
    })?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts forever. Never cancelled: a cancelled io_uring accept can leak the accepted fd.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio_uring::spawn(serve(shard.clone(), stream, peer));
            }
            Err(err) => {
                crate::warn!("shard {}: accept failed: {err}", shard.id);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

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

/// A connection-level (hard) error: connection.close with this code.
#[derive(Debug)]
pub struct HardError {
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl HardError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        HardError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }
    fn on(mut self, method: &Method) -> Self {
        self.class_id = method.class_id();
        self.method_id = method.method_id();
        self
    }
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
}

impl Conn {
    fn new(cref: ConnRef, peer: SocketAddr) -> Self {
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
            }),
            done: Cell::new(false),
            last_read: Cell::new(now),
            last_write: Cell::new(now),
            hang_up: Cell::new(false),
            published: Cell::new(false),
            told_blocked: Cell::new(false),
        }
    }

    /// A resource alarm changed (`state` 0: cleared). A publishing connection is told, if its
    /// client asked for connection.blocked notifications.
    pub fn alarm(&self, state: u8) {
        if state != 0 {
            if self.published.get() {
                self.tell_blocked(state);
            }
        } else if self.told_blocked.replace(false) {
            self.send_method(0, &Method::ConnectionUnblocked(ConnectionUnblocked {}));
        }
    }

    fn tell_blocked(&self, state: u8) {
        let wanted = self.state.borrow().capabilities.connection_blocked;
        if wanted && !self.told_blocked.replace(true) {
            let reason = bytes::Bytes::from_static(crate::alarm::Alarms::reason(state).as_bytes());
            self.send_method(0, &Method::ConnectionBlocked(ConnectionBlocked { reason }));
        }
    }

    fn send_method(&self, channel: u16, method: &Method) {
        encode_method(&mut self.out.borrow_mut(), channel, method);
        self.writable.notify_one();
    }

    fn frame_max(&self) -> u32 {
        self.state.borrow().frame_max
    }

    /// A message for one of this connection's consumers. Returns the message's queue position
    /// when it has to go back (its channel closed meanwhile).
    pub fn deliver(&self, d: Delivery) -> Option<(QueueRef, u64)> {
        let mut state = self.state.borrow_mut();
        let Some(ch) = state.channels.get_mut(&d.channel) else {
            return (!d.no_ack).then_some((d.queue, d.seq));
        };
        if ch.closing {
            return (!d.no_ack).then_some((d.queue, d.seq));
        }
        if ch.is_pending_consumer(&d.consumer_tag) {
            ch.hold(d);
            return None;
        }
        let tag = ch.track_delivery(&d);
        drop(state);
        self.owe_credit(d.queue, d.consumer_id);
        let method = Method::BasicDeliver(BasicDeliver {
            consumer_tag: d.consumer_tag.clone(),
            delivery_tag: tag,
            redelivered: d.redelivered,
            exchange: d.msg.exchange.clone(),
            routing_key: d.msg.routing_key.clone(),
        });
        self.write_content(d.channel, &method, &d.msg);
        None
    }

    fn owe_credit(&self, queue: QueueRef, consumer_id: u64) {
        let mut credits = self.credits.borrow_mut();
        match credits
            .iter_mut()
            .find(|c| c.consumer_id == consumer_id && c.queue == queue)
        {
            Some(c) => c.n += 1,
            None => credits.push(Credit {
                queue,
                consumer_id,
                n: 1,
            }),
        }
    }

    /// The consumer's queue was deleted: tell the client if it understands basic.cancel.
    pub fn consumer_cancelled(&self, channel: u16, tag: &bytes::Bytes) {
        let mut state = self.state.borrow_mut();
        let notify = state.capabilities.consumer_cancel_notify;
        let Some(ch) = state.channels.get_mut(&channel) else {
            return;
        };
        if ch.closing || !ch.remove_consumer_by_tag(tag) {
            return;
        }
        if ch.busy {
            // A method of this channel is waiting for its -ok: the notice follows it, as
            // RabbitMQ's does (a client deleting the queue it consumes expects delete-ok first).
            if notify {
                ch.deferred_cancels.push(tag.clone());
            }
            return;
        }
        drop(state);
        if notify {
            self.send_method(
                channel,
                &Method::BasicCancel(BasicCancel {
                    consumer_tag: tag.clone(),
                    nowait: true,
                }),
            );
        }
    }

    /// basic.return 312 NO_ROUTE for a mandatory message nothing took.
    pub fn basic_return(&self, channel: u16, msg: &Message) {
        let open = matches!(self.state.borrow().channels.get(&channel), Some(ch) if !ch.closing);
        if !open {
            return;
        }
        let method = Method::BasicReturn(BasicReturn {
            reply_code: NO_ROUTE,
            reply_text: bytes::Bytes::from_static(b"NO_ROUTE"),
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
        });
        self.write_content(channel, &method, msg);
    }

    /// A content-carrying method (deliver, get-ok, return) with the message's header and body.
    pub fn write_content(&self, channel: u16, method: &Method, msg: &Message) {
        let frame_max = self.frame_max();
        let mut out = self.out.borrow_mut();
        encode_method(&mut out, channel, method);
        encode_header(&mut out, channel, msg.body.len() as u64, &msg.properties);
        encode_body(&mut out, channel, &msg.body, frame_max);
        drop(out);
        self.writable.notify_one();
    }

    /// A queue took (or refused) a message this connection published in confirm mode.
    ///
    /// The acks themselves go out when the writer next runs (see `emit_confirms`), so that
    /// confirms arriving together leave as one `multiple` ack, as RabbitMQ's do.
    pub fn confirmed(&self, channel: u16, seq: u64, ok: bool) {
        match self.state.borrow_mut().channels.get_mut(&channel) {
            Some(ch) if !ch.closing => ch.confirmed(seq, ok),
            _ => return,
        }
        let mut dirty = self.confirms_due.borrow_mut();
        if !dirty.contains(&channel) {
            dirty.push(channel);
        }
        drop(dirty);
        self.writable.notify_one();
    }

    /// Encodes the confirms that became due since the last write.
    fn emit_confirms(&self) {
        let channels = std::mem::take(&mut *self.confirms_due.borrow_mut());
        for channel in channels {
            let mut due = Vec::new();
            if let Some(ch) = self.state.borrow_mut().channels.get_mut(&channel) {
                if !ch.closing {
                    ch.take_confirms(&mut due);
                }
            }
            let mut out = self.out.borrow_mut();
            for method in &due {
                encode_method(&mut out, channel, method);
            }
        }
    }

    /// A reply to this channel's direct reply-to consumer.
    pub fn direct_reply(&self, channel: u16, msg: &Message) {
        let (tag, delivery_tag) = {
            let mut state = self.state.borrow_mut();
            let Some(ch) = state.channels.get_mut(&channel) else {
                return;
            };
            let Some(tag) = ch.reply_consumer().cloned() else {
                return;
            };
            (tag, ch.next_tag())
        };
        let method = Method::BasicDeliver(BasicDeliver {
            consumer_tag: tag,
            delivery_tag,
            redelivered: false,
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
        });
        self.write_content(channel, &method, msg);
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

/// RabbitMQ prefixes reply texts with the code's name ("NOT_FOUND - no queue 'x' ...").
pub fn reply_name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// Short strings are at most 255 bytes; cut on a char boundary.
pub fn short_text(mut text: String) -> bytes::Bytes {
    if text.len() > 255 {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    bytes::Bytes::from(text)
}

fn method_error(err: MethodError) -> HardError {
    match err {
        MethodError::Unknown {
            class_id,
            method_id,
        } => HardError {
            code: NOT_IMPLEMENTED,
            text: format!("unknown method {class_id}/{method_id}"),
            class_id,
            method_id,
        },
        // RabbitMQ reports undecodable arguments as a frame error, and clients match on it.
        MethodError::Syntax(what) => {
            HardError::new(FRAME_ERROR, format!("cannot decode method frame: {what}"))
        }
    }
}

/// Serves one connection until it closes, then releases everything it held.
async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(stream);
    let conn = shard.register(|cref| Conn::new(cref, peer));
    let writer = tokio_uring::spawn(write_loop(shard.clone(), conn.clone(), stream.clone()));
    let heartbeat = tokio_uring::spawn(heartbeat_loop(conn.clone(), stream.clone()));
    read_loop(&shard, &conn, &stream).await;
    conn.done.set(true);
    conn.writable.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    heartbeat.abort();
    release(&shard, &conn);
    shard.unregister(conn.cref);
    if !conn.hang_up.get() {
        linger(&stream).await;
    }
}

/// Waits (bounded) for the peer to close first, as RabbitMQ does after close-ok: a client may
/// still be reading our last frames, and an early FIN or a reset (closing with unread input)
/// makes some clients report the close as an aborted connection.
async fn linger(stream: &TcpStream) {
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut buf = vec![0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, stream.read(buf)).await {
            Ok((Ok(n), b)) if n > 0 => buf = b,
            _ => break,
        }
    }
}

async fn read_loop(shard: &Rc<Shard>, conn: &Rc<Conn>, stream: &TcpStream) {
    let mut buf = BytesMut::new();
    let mut want = READ_MIN_BYTES;
    loop {
        // A resource alarm: a publishing connection is not read until it clears (its
        // heartbeats are not expected meanwhile, as in RabbitMQ).
        loop {
            let alarm = shard.alarms.state();
            if alarm == 0 || !conn.published.get() {
                break;
            }
            conn.tell_blocked(alarm);
            if conn.done.get() {
                return;
            }
            shard.flush();
            tokio::time::sleep(crate::alarm::CHECK_EVERY / 2).await;
            conn.last_read.set(Instant::now());
        }
        while shard.congested() || conn.out.borrow().len() > OUTPUT_HIGH_WATER_BYTES {
            if conn.done.get() {
                return;
            }
            shard.flush();
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        let closing = conn.state.borrow().phase == Phase::Closing;
        // tokio-uring reads at the start of the buffer it is given, so hand it only the spare
        // capacity: a partial frame from the previous read stays in front, untouched.
        let start = buf.len();
        let offered = buf.capacity() - start;
        let read = stream.read(buf.slice(start..));
        let (result, b) = if closing {
            match tokio::time::timeout(CLOSE_OK_TIMEOUT, read).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            read.await
        };
        buf = b.into_inner();
        match result {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                conn.last_read.set(Instant::now());
                want = if n == offered {
                    (want * 2).min(READ_MAX_BYTES)
                } else if n < want / 4 {
                    (want / 2).max(READ_MIN_BYTES)
                } else {
                    want
                };
            }
        }
        if !process(shard, conn, &mut buf).await {
            shard.flush();
            return;
        }
        shard.flush();
    }
}

/// Handles every complete frame in `buf`. Returns false when the connection is finished.
async fn process(shard: &Rc<Shard>, conn: &Rc<Conn>, buf: &mut BytesMut) -> bool {
    if conn.state.borrow().phase == Phase::Header {
        if buf.len() < 8 {
            return true;
        }
        let header = buf.split_to(8);
        if &header[..] != PROTOCOL_HEADER {
            // Tell the client which protocol we speak, then hang up (AMQP 0-9-1 section 4.2.2).
            conn.out.borrow_mut().extend_from_slice(PROTOCOL_HEADER);
            conn.hang_up.set(true);
            conn.writable.notify_one();
            return false;
        }
        handshake::send_start(conn);
        conn.state.borrow_mut().phase = Phase::StartOk;
    }
    let mut budget = FRAMES_PER_TURN;
    loop {
        budget -= 1;
        if budget == 0 {
            // Let the shard's other connections and its mailbox (acks, credit) run: a
            // publisher with a full read buffer must not delay everyone's round trips.
            budget = FRAMES_PER_TURN;
            shard.flush();
            tokio::task::yield_now().await;
        }
        let frame_max = conn.frame_max();
        let frame = match parse_frame(buf, frame_max) {
            Ok(Some(frame)) => frame,
            Ok(None) => return true,
            Err(err) => {
                // The stream cannot be re-synchronised after a framing error.
                conn.hard_close(HardError::new(FRAME_ERROR, err.to_string()));
                return false;
            }
        };
        let phase = conn.state.borrow().phase;
        match phase {
            Phase::Closed => return false,
            Phase::Closing => {
                if closing_frame(conn, &frame) {
                    return false;
                }
                continue;
            }
            _ => {}
        }
        if let Err(err) = handle_frame(shard, conn, frame).await {
            conn.hard_close(err);
        }
        if conn.state.borrow().phase == Phase::Closed {
            return false;
        }
    }
}

/// While we wait for close-ok, only connection.close(-ok) matters. Returns true when done.
fn closing_frame(conn: &Conn, frame: &Frame) -> bool {
    if frame.kind != FRAME_METHOD || frame.channel != 0 {
        return false;
    }
    match Method::decode(frame.payload.clone()) {
        Ok(Method::ConnectionCloseOk(_)) => true,
        Ok(Method::ConnectionClose(_)) => {
            conn.send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
            true
        }
        _ => false,
    }
}

async fn handle_frame(shard: &Rc<Shard>, conn: &Rc<Conn>, frame: Frame) -> Result<(), HardError> {
    match frame.kind {
        FRAME_HEARTBEAT => {
            if frame.channel != 0 {
                return Err(HardError::new(
                    UNEXPECTED_FRAME,
                    format!("heartbeat frame on channel {}", frame.channel),
                ));
            }
            Ok(())
        }
        FRAME_METHOD => {
            let method = Method::decode(frame.payload).map_err(method_error)?;
            if frame.channel == 0 {
                handshake::connection_method(shard, conn, method).await
            } else {
                let phase = conn.state.borrow().phase;
                if phase != Phase::Opened {
                    return Err(HardError::new(
                        COMMAND_INVALID,
                        format!(
                            "method {} on channel {} before connection.open",
                            method.name(),
                            frame.channel
                        ),
                    )
                    .on(&method));
                }
                channel::method(shard, conn, frame.channel, method).await
            }
        }
        FRAME_HEADER | FRAME_BODY => {
            if frame.channel == 0 {
                return Err(HardError::new(
                    UNEXPECTED_FRAME,
                    "content frame on channel 0",
                ));
            }
            channel::content(shard, conn, frame)
        }
        other => Err(HardError::new(
            FRAME_ERROR,
            format!("unknown frame type {other}"),
        )),
    }
}

/// Writes whatever the connection produced, one write per turn.
async fn write_loop(shard: Rc<Shard>, conn: Rc<Conn>, stream: Rc<TcpStream>) {
    let mut spare = BytesMut::new();
    let mut credits: Vec<Credit> = Vec::new();
    loop {
        conn.emit_confirms();
        if conn.out.borrow().is_empty() {
            if conn.done.get() {
                return;
            }
            conn.writable.notified().await;
            continue;
        }
        let buf = std::mem::replace(&mut *conn.out.borrow_mut(), spare);
        // The deliveries in this buffer: once it is written, their queues may send more.
        std::mem::swap(&mut credits, &mut *conn.credits.borrow_mut());
        let (result, mut buf) = stream.write_all(buf).await;
        if result.is_err() {
            conn.done.set(true);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        for credit in credits.drain(..) {
            let msg = ShardMsg::Credit {
                queue: credit.queue,
                consumer_id: credit.consumer_id,
                n: credit.n,
            };
            shard.send(credit.queue.shard as usize, msg);
        }
        shard.flush();
        conn.last_write.set(Instant::now());
        buf.clear();
        spare = if buf.capacity() <= SPARE_KEEP_BYTES {
            buf
        } else {
            BytesMut::new()
        };
    }
}

/// Sends heartbeats when the link is idle and drops peers silent for two intervals.
async fn heartbeat_loop(conn: Rc<Conn>, stream: Rc<TcpStream>) {
    loop {
        let interval_secs = conn.state.borrow().heartbeat_secs;
        if interval_secs == 0 {
            // Not negotiated yet (or disabled): check again later.
            tokio::time::sleep(Duration::from_secs(1)).await;
            if conn.done.get() {
                return;
            }
            continue;
        }
        let interval = Duration::from_secs(u64::from(interval_secs));
        tokio::time::sleep(interval / 2).await;
        if conn.done.get() {
            return;
        }
        if conn.last_write.get().elapsed() >= interval / 2 {
            encode_heartbeat(&mut conn.out.borrow_mut());
            conn.writable.notify_one();
        }
        if conn.last_read.get().elapsed() > interval * 2 {
            crate::warn!(
                "closing AMQP connection {}: missed heartbeats from client, timeout: {}s",
                conn.peer,
                interval_secs
            );
            conn.done.set(true);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// The connection is gone: requeue its unacked messages, cancel its consumers and delete
/// its exclusive queues, on whichever shards they live.
fn release(shard: &Shard, conn: &Conn) {
    let channels: Vec<Channel> = conn
        .state
        .borrow_mut()
        .channels
        .drain()
        .map(|(_, ch)| ch)
        .collect();
    for mut ch in channels {
        ch.release(shard);
    }
    for target in 0..shard.count {
        shard.send(
            target,
            crate::shard::ShardMsg::Oneway(QueueOp::ConnectionClosed { conn: conn.cref }),
        );
    }
    shard.flush();
}
