//! Shards: one thread per core, each with its own tokio-uring runtime, listener, queues and
//! connections, talking to the others only through the SPSC rings of [`ring`].
//!
//! A shard processes messages from three sources, always with no borrow held across an await:
//! its sockets (connection tasks), its incoming rings (the mailbox task), and its local inbox
//! (messages one part of the shard sends to another, e.g. a delivery from a local queue to a
//! local connection). Whoever puts something in the local inbox calls [`Shard::flush`] before
//! its next await, which runs the inbox dry and sends what piled up for other shards, waking
//! them only if they are parked.
//!
//! Queue operations that need an answer (declare, consume, ...) go through [`Shard::request`]:
//! applied directly when the queue is local, otherwise sent to the owner and awaited. Because
//! each ring is FIFO, a connection's publishes and requests reach a queue in the order it sent
//! them.

pub mod hash;
pub mod ring;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use slab::Slab;
use smallvec::SmallVec;
use tokio::sync::oneshot;

pub use hash::{queue_shard, queue_shard_bytes};

use crate::broker::topology::{Topology, TopologyChange};
use crate::broker::{AmqpError, Broker, ConnRef, Message, OpOk, QueueOp, QueueRef, SettleKind};
use crate::config::Config;
use crate::connection::Conn;

/// Slots per ring. Bounded: a full ring pushes back on the sockets that feed it.
pub const RING_CAPACITY: usize = 16 * 1024;
/// Most messages drained from the rings in one mailbox turn before yielding to sockets.
const DRAIN_BATCH: usize = 4096;

/// A message handed to a queue or connection on another (or the same) shard.
#[derive(Debug)]
pub struct Delivery {
    pub conn: ConnRef,
    pub channel: u16,
    pub consumer_tag: Bytes,
    pub consumer_id: u64,
    pub queue: QueueRef,
    pub seq: u64,
    pub redelivered: bool,
    pub no_ack: bool,
    pub msg: Message,
}

#[derive(Debug)]
pub enum ShardMsg {
    /// A publish routed to a queue on the target shard.
    Enqueue {
        queue: QueueTarget,
        msg: Message,
        origin: Origin,
    },
    /// Publisher confirm for one message from one of its target queues.
    Confirm {
        conn: ConnRef,
        channel: u16,
        seq: u64,
        ok: bool,
    },
    /// A reply published to `amq.rabbitmq.reply-to.…`, for the requester's channel.
    DirectReply {
        conn: ConnRef,
        channel: u16,
        msg: Message,
    },
    /// A message for a consumer whose connection lives on the target shard.
    Deliver(Delivery),
    /// Acks or requeues from a channel, for a queue on the target shard.
    Settle {
        queue: QueueRef,
        kind: SettleKind,
        seqs: SmallVec<[u64; 4]>,
    },
    /// A connection wrote `n` deliveries of the consumer to its socket: more may come.
    Credit {
        queue: QueueRef,
        consumer_id: u64,
        n: u32,
    },
    /// The queue went away: the consumer is cancelled by the server.
    ConsumerCancelled {
        conn: ConnRef,
        channel: u16,
        tag: Bytes,
    },
    /// A mandatory message that no queue took (basic.return 312 NO_ROUTE).
    Return {
        conn: ConnRef,
        channel: u16,
        msg: Message,
    },
    Request {
        from: u16,
        id: u64,
        op: QueueOp,
    },
    /// An operation whose answer nobody waits for (cleanup after a channel or connection).
    Oneway(QueueOp),
    Reply {
        id: u64,
        result: Result<OpOk, AmqpError>,
    },
    /// To shard 0, the topology owner: validate, apply everywhere, then answer `id` on `from`
    /// (id 0: nobody waits).
    TopologyRequest {
        from: u16,
        id: u64,
        change: TopologyChange,
    },
    /// From shard 0: apply to the local replica and acknowledge `token`.
    TopologyApply {
        change: TopologyChange,
        token: u64,
    },
    TopologyApplied {
        token: u64,
    },
    /// Answer `id` on `from` once everything this shard's store holds so far is durable
    /// (tx.commit waits for it).
    SyncBarrier {
        from: u16,
        id: u64,
    },
}

/// Who published a message, and what they asked for.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub conn: ConnRef,
    pub channel: u16,
    /// basic.return when no queue takes it.
    pub mandatory: bool,
    /// Publisher-confirm sequence number, in confirm mode.
    pub confirm: Option<u64>,
}

/// How a publish names its queue: the default exchange routes by name (the owner shard looks
/// it up), exchanges route to queue references from the replica.
#[derive(Debug)]
pub enum QueueTarget {
    Name(Bytes),
    Ref(QueueRef),
}

/// The shard that serializes topology changes.
const TOPOLOGY_OWNER: usize = 0;

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<Config>,
    pub alarms: Arc<crate::alarm::Alarms>,
    pub broker: RefCell<Broker>,
    pub topology: RefCell<Topology>,
    /// On the topology owner: changes still being applied elsewhere, by token:
    /// (shards yet to acknowledge, requesting shard, request id, stored in the definitions).
    topology_waiting: RefCell<HashMap<u64, (usize, u16, u64, bool)>>,
    /// Wakes the pager task (bodies to read back from the store).
    page_wake: tokio::sync::Notify,
    pub conns: RefCell<Slab<Rc<Conn>>>,
    endpoint: RefCell<ring::Endpoint<ShardMsg>>,
    /// Messages for a full ring, per target; non-empty means "stop reading sockets".
    overflow: RefCell<Vec<VecDeque<ShardMsg>>>,
    local: RefCell<VecDeque<ShardMsg>>,
    /// Spare outbox for broker operations (see `send_all`).
    outbox: RefCell<crate::broker::Outbox>,
    pending: RefCell<HashMap<u64, oneshot::Sender<Result<OpOk, AmqpError>>>>,
    next_request_id: Cell<u64>,
    next_serial: Cell<u32>,
    next_consumer_id: Cell<u64>,
    flushing: Cell<bool>,
}

impl Shard {
    fn new(
        id: usize,
        count: usize,
        config: Arc<Config>,
        alarms: Arc<crate::alarm::Alarms>,
        endpoint: ring::Endpoint<ShardMsg>,
        broker: Broker,
        topology: Topology,
    ) -> Self {
        Shard {
            id,
            count,
            config,
            alarms,
            broker: RefCell::new(broker),
            topology: RefCell::new(topology),
            topology_waiting: RefCell::new(HashMap::new()),
            page_wake: tokio::sync::Notify::new(),
            conns: RefCell::new(Slab::new()),
            endpoint: RefCell::new(endpoint),
            overflow: RefCell::new((0..count).map(|_| VecDeque::new()).collect()),
            local: RefCell::new(VecDeque::new()),
            outbox: RefCell::new(Vec::new()),
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(1),
            next_serial: Cell::new(1),
            next_consumer_id: Cell::new(1),
            flushing: Cell::new(false),
        }
    }

    /// Registers a connection and returns its global reference.
    pub fn register(&self, make: impl FnOnce(ConnRef) -> Conn) -> Rc<Conn> {
        let serial = self.next_serial.get();
        self.next_serial.set(serial.wrapping_add(1));
        let mut conns = self.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let cref = ConnRef {
            shard: self.id as u16,
            key: entry.key() as u32,
            serial,
        };
        let conn = Rc::new(make(cref));
        entry.insert(conn.clone());
        conn
    }

    pub fn unregister(&self, cref: ConnRef) {
        let mut conns = self.conns.borrow_mut();
        if conns.get(cref.key as usize).is_some_and(|c| c.cref == cref) {
            conns.remove(cref.key as usize);
        }
    }

    fn conn(&self, cref: ConnRef) -> Option<Rc<Conn>> {
        self.conns
            .borrow()
            .get(cref.key as usize)
            .filter(|c| c.cref == cref)
            .cloned()
    }

    pub fn next_consumer_id(&self) -> u64 {
        let id = self.next_consumer_id.get();
        self.next_consumer_id.set(id + 1);
        ((self.id as u64) << 48) | id
    }

    /// The shard that owns queue `name` (vhost "/").
    pub fn queue_owner(&self, name: &[u8]) -> usize {
        queue_shard_bytes(b"/", name, self.count)
    }

    /// Queues a message for `target`; nothing is processed until [`Shard::flush`].
    pub fn send(&self, target: usize, msg: ShardMsg) {
        if target == self.id {
            self.local.borrow_mut().push_back(msg);
            return;
        }
        let mut overflow = self.overflow.borrow_mut();
        if !overflow[target].is_empty() {
            overflow[target].push_back(msg);
            return;
        }
        if let Err(msg) = self.endpoint.borrow_mut().try_push(target, msg) {
            overflow[target].push_back(msg);
        }
    }

    /// Sends everything in `out` and keeps the emptied vector for reuse, so routing a message
    /// allocates nothing here.
    pub fn send_all(&self, mut out: crate::broker::Outbox) {
        for (target, msg) in out.drain(..) {
            self.send(target, msg);
        }
        *self.outbox.borrow_mut() = out;
    }

    fn take_outbox(&self) -> crate::broker::Outbox {
        std::mem::take(&mut *self.outbox.borrow_mut())
    }

    /// True while some ring is full: connection tasks stop reading until it drains.
    pub fn congested(&self) -> bool {
        self.overflow.borrow().iter().any(|q| !q.is_empty()) || self.store_backlogged()
    }

    /// The store has more waiting to be written than it may hold in memory: stop taking new
    /// messages (sockets and rings) until the writer catches up, as a full ring does.
    pub fn store_backlogged(&self) -> bool {
        self.broker
            .borrow()
            .store()
            .is_some_and(|s| s.backlog_bytes() > crate::store::BACKLOG_LIMIT_BYTES)
    }

    /// Runs the local inbox dry, retries overflowed sends and wakes parked targets.
    pub fn flush(&self) {
        if self.flushing.replace(true) {
            return; // already flushing further up this stack
        }
        loop {
            let next = self.local.borrow_mut().pop_front();
            match next {
                Some(msg) => self.handle(msg),
                None => break,
            }
        }
        self.retry_overflow();
        self.endpoint.borrow_mut().wake_pending();
        if self.broker.borrow().has_page_requests() {
            self.page_wake.notify_one();
        }
        self.flushing.set(false);
    }

    fn retry_overflow(&self) {
        let mut overflow = self.overflow.borrow_mut();
        let mut endpoint = self.endpoint.borrow_mut();
        for (target, queue) in overflow.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                if let Err(msg) = endpoint.try_push(target, msg) {
                    queue.push_front(msg);
                    break;
                }
            }
        }
    }

    /// Validates a topology change on the owner shard and returns once every shard applied it.
    pub async fn change_topology(&self, change: TopologyChange) -> Result<(), AmqpError> {
        let (id, rx) = self.expect_reply();
        self.send(
            TOPOLOGY_OWNER,
            ShardMsg::TopologyRequest {
                from: self.id as u16,
                id,
                change,
            },
        );
        self.flush();
        rx.await.unwrap_or_else(|_| Err(stopped())).map(|_| ())
    }

    fn expect_reply(&self) -> (u64, oneshot::Receiver<Result<OpOk, AmqpError>>) {
        let id = self.next_request_id.get();
        self.next_request_id.set(id + 1);
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(id, tx);
        (id, rx)
    }

    fn reply(&self, to: u16, id: u64, result: Result<OpOk, AmqpError>) {
        if id != 0 {
            self.send(to as usize, ShardMsg::Reply { id, result });
        }
    }

    /// Sends `msg` to `target` once everything this shard's store holds so far is durable.
    fn send_after_sync(&self, target: usize, msg: ShardMsg) {
        let now = match self.broker.borrow_mut().store_mut() {
            Some(store) => store.after_sync(target, msg),
            None => Some((target, msg)),
        };
        if let Some((target, msg)) = now {
            self.send(target, msg);
        }
    }

    fn reply_after_sync(&self, to: u16, id: u64, result: Result<OpOk, AmqpError>) {
        if id != 0 {
            self.send_after_sync(to as usize, ShardMsg::Reply { id, result });
        }
    }

    /// Applies a queue operation on this shard; the reply to `id` on `to` waits for the
    /// store when the operation wrote a durable definition.
    fn apply_and_reply(&self, to: u16, id: u64, op: QueueOp) {
        let mut out = self.take_outbox();
        let (result, wait) = {
            let mut broker = self.broker.borrow_mut();
            let result = broker.apply(op, &mut out);
            (result, broker.take_sync_wanted())
        };
        // The answer first: a consumer's consume-ok must precede its deliveries.
        if wait {
            self.reply_after_sync(to, id, result);
        } else {
            self.reply(to, id, result);
        }
        self.send_all(out);
    }

    /// Returns once everything every shard's store held when this was called is durable.
    pub async fn sync_barrier(&self) -> Result<(), AmqpError> {
        let mut waits = Vec::with_capacity(self.count);
        for target in 0..self.count {
            let (id, rx) = self.expect_reply();
            self.send(
                target,
                ShardMsg::SyncBarrier {
                    from: self.id as u16,
                    id,
                },
            );
            waits.push(rx);
        }
        self.flush();
        for rx in waits {
            rx.await.unwrap_or_else(|_| Err(stopped()))?;
        }
        Ok(())
    }

    /// Applies `op` on the shard that owns the queue and returns its answer.
    pub async fn request(&self, target: usize, op: QueueOp) -> Result<OpOk, AmqpError> {
        if target == self.id {
            // Everything this shard sent earlier must land before the operation runs.
            self.flush();
            let mut out = self.take_outbox();
            let (result, wait) = {
                let mut broker = self.broker.borrow_mut();
                let result = broker.apply(op, &mut out);
                (result, broker.take_sync_wanted())
            };
            // Not flushed here: the caller writes its -ok before the next flush delivers
            // what the operation released.
            self.send_all(out);
            if !wait {
                return result;
            }
            let (id, rx) = self.expect_reply();
            self.reply_after_sync(self.id as u16, id, result);
            self.flush();
            return rx.await.unwrap_or_else(|_| Err(stopped()));
        }
        let (id, rx) = self.expect_reply();
        self.send(
            target,
            ShardMsg::Request {
                from: self.id as u16,
                id,
                op,
            },
        );
        self.flush();
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    fn handle(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Enqueue { queue, msg, origin } => {
                let mut out = self.take_outbox();
                let result = self.broker.borrow_mut().enqueue(queue, msg, &mut out);
                self.send_all(out);
                let target = origin.conn.shard as usize;
                if let Ok(true) = result {
                    // Written to the store: confirmed once it is on disk.
                    if let Some(seq) = origin.confirm {
                        let confirm = ShardMsg::Confirm {
                            conn: origin.conn,
                            channel: origin.channel,
                            seq,
                            ok: true,
                        };
                        self.send_after_sync(target, confirm);
                    }
                    return;
                }
                if let Err(msg) = result {
                    if origin.mandatory {
                        self.send(
                            target,
                            ShardMsg::Return {
                                conn: origin.conn,
                                channel: origin.channel,
                                msg,
                            },
                        );
                    }
                }
                // Unroutable messages are confirmed too (after their basic.return), as in RabbitMQ.
                if let Some(seq) = origin.confirm {
                    self.send(
                        target,
                        ShardMsg::Confirm {
                            conn: origin.conn,
                            channel: origin.channel,
                            seq,
                            ok: true,
                        },
                    );
                }
            }
            ShardMsg::Confirm {
                conn,
                channel,
                seq,
                ok,
            } => {
                if let Some(conn) = self.conn(conn) {
                    conn.confirmed(channel, seq, ok);
                }
            }
            ShardMsg::DirectReply { conn, channel, msg } => {
                if let Some(conn) = self.conn(conn) {
                    conn.direct_reply(channel, &msg);
                }
            }
            ShardMsg::Deliver(delivery) => match self.conn(delivery.conn) {
                Some(conn) => {
                    if let Some((queue, seq)) = conn.deliver(delivery) {
                        self.bounce(queue, seq);
                    }
                }
                None if !delivery.no_ack => self.bounce(delivery.queue, delivery.seq),
                None => {}
            },
            ShardMsg::Settle { queue, kind, seqs } => {
                let mut out = self.take_outbox();
                self.broker
                    .borrow_mut()
                    .settle(queue, kind, &seqs, &mut out);
                self.send_all(out);
            }
            ShardMsg::Credit {
                queue,
                consumer_id,
                n,
            } => {
                let mut out = self.take_outbox();
                self.broker
                    .borrow_mut()
                    .credit(queue, consumer_id, n, &mut out);
                self.send_all(out);
            }
            ShardMsg::ConsumerCancelled { conn, channel, tag } => {
                if let Some(conn) = self.conn(conn) {
                    conn.consumer_cancelled(channel, &tag);
                }
            }
            ShardMsg::Return { conn, channel, msg } => {
                if let Some(conn) = self.conn(conn) {
                    conn.basic_return(channel, &msg);
                }
            }
            ShardMsg::Request { from, id, op } => self.apply_and_reply(from, id, op),
            ShardMsg::Oneway(op) => {
                let mut out = self.take_outbox();
                let _ = self.broker.borrow_mut().apply(op, &mut out);
                self.send_all(out);
            }
            ShardMsg::TopologyRequest { from, id, change } => {
                let validated = self.topology.borrow().validate(change);
                match validated {
                    Err(err) => self.reply(from, id, Err(err)),
                    Ok(None) => self.reply(from, id, Ok(OpOk::Done)),
                    Ok(Some(change)) => {
                        let record = self.topology.borrow().persisted(&change);
                        let stored = match (record, self.broker.borrow_mut().store_mut()) {
                            (Some(record), Some(store)) => {
                                store.append_def(&record);
                                true
                            }
                            _ => false,
                        };
                        self.topology.borrow_mut().apply(&change);
                        if self.count == 1 {
                            self.topology_reply(from, id, stored);
                            return;
                        }
                        let token = self.next_request_id.get();
                        self.next_request_id.set(token + 1);
                        self.topology_waiting
                            .borrow_mut()
                            .insert(token, (self.count - 1, from, id, stored));
                        for target in (0..self.count).filter(|&t| t != self.id) {
                            self.send(
                                target,
                                ShardMsg::TopologyApply {
                                    change: change.clone(),
                                    token,
                                },
                            );
                        }
                    }
                }
            }
            ShardMsg::TopologyApply { change, token } => {
                self.topology.borrow_mut().apply(&change);
                self.send(TOPOLOGY_OWNER, ShardMsg::TopologyApplied { token });
            }
            ShardMsg::TopologyApplied { token } => {
                let done = {
                    let mut waiting = self.topology_waiting.borrow_mut();
                    match waiting.get_mut(&token) {
                        Some(entry) if entry.0 > 1 => {
                            entry.0 -= 1;
                            None
                        }
                        Some(_) => waiting.remove(&token),
                        None => None,
                    }
                };
                if let Some((_, from, id, stored)) = done {
                    self.topology_reply(from, id, stored);
                }
            }
            ShardMsg::SyncBarrier { from, id } => self.reply_after_sync(from, id, Ok(OpOk::Done)),
            ShardMsg::Reply { id, result } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.send(result);
                }
            }
        }
    }

    /// A topology change is done everywhere; a stored one answers once it is on disk.
    fn topology_reply(&self, from: u16, id: u64, stored: bool) {
        if stored {
            self.reply_after_sync(from, id, Ok(OpOk::Done));
        } else {
            self.reply(from, id, Ok(OpOk::Done));
        }
    }

    /// Reads bodies of paged-out messages back from the store (io_uring), when a queue is
    /// about to deliver them.
    async fn pager(self: Rc<Self>) {
        let mut files: HashMap<u32, Rc<tokio_uring::fs::File>> = HashMap::new();
        let mut bodies = Vec::new();
        loop {
            let requests = self.broker.borrow_mut().take_page_requests();
            if requests.is_empty() {
                self.page_wake.notified().await;
                continue;
            }
            let Some(dir) = self.broker.borrow().store().map(|s| s.dir().to_path_buf()) else {
                continue;
            };
            for (queue, items) in requests {
                for (seq, loc) in items {
                    let pending = self
                        .broker
                        .borrow()
                        .store()
                        .and_then(|s| s.pending_frame(loc));
                    let frame = match pending {
                        Some(frame) => Ok(frame),
                        None => read_frame(&mut files, &dir, loc).await,
                    };
                    match frame.and_then(|f| crate::store::body_of(&f)) {
                        Ok(body) => bodies.push((seq, body)),
                        Err(err) => crate::error!(
                            "shard {}: cannot read a paged message back from segment {}: {err}",
                            self.id,
                            loc.seg
                        ),
                    }
                }
                let mut out = self.take_outbox();
                self.broker
                    .borrow_mut()
                    .paged_in(queue, &mut bodies, &mut out);
                self.send_all(out);
                self.flush();
            }
            if files.len() > 64 {
                files.clear();
            }
        }
    }

    /// Tells this shard's connections when a resource alarm is raised or cleared, and hands
    /// memory this thread freed back to the OS: the allocator otherwise keeps it, so a shard
    /// that churned through a large backlog would look as big as its peak.
    async fn watch_alarms(self: Rc<Self>) {
        let mut last = 0;
        loop {
            tokio::time::sleep(crate::alarm::CHECK_EVERY / 2).await;
            // SAFETY: mi_collect only works on the calling thread's own heap.
            unsafe { libmimalloc_sys::mi_collect(false) };
            let now = self.alarms.state();
            if (now == 0) != (last == 0) {
                let conns: Vec<Rc<Conn>> =
                    self.conns.borrow().iter().map(|(_, c)| c.clone()).collect();
                for conn in conns {
                    conn.alarm(now);
                }
            }
            last = now;
        }
    }

    /// A delivery whose channel is gone goes back to its queue.
    fn bounce(&self, queue: QueueRef, seq: u64) {
        let mut seqs = SmallVec::new();
        seqs.push(seq);
        self.send(
            queue.shard as usize,
            ShardMsg::Settle {
                queue,
                kind: SettleKind::Requeue,
                seqs,
            },
        );
    }

    /// Drains the incoming rings forever; parks on the eventfd when there is nothing to do.
    async fn mailbox(self: Rc<Self>) {
        let fd = self.endpoint.borrow().eventfd();
        // SAFETY: dup gives this File its own descriptor for the shared eventfd.
        let file = unsafe {
            use std::os::fd::FromRawFd;
            std::fs::File::from_raw_fd(libc::dup(fd))
        };
        let eventfd = tokio_uring::fs::File::from_std(file);
        let mut buf = vec![0u8; 8];
        let mut batch = Vec::with_capacity(DRAIN_BATCH);
        loop {
            if self.store_backlogged() {
                // Senders' rings fill up and they stop reading their sockets in turn.
                self.flush();
                tokio::time::sleep(Duration::from_micros(100)).await;
                continue;
            }
            let n = self
                .endpoint
                .borrow_mut()
                .drain(DRAIN_BATCH, |m| batch.push(m));
            for msg in batch.drain(..) {
                self.handle(msg);
            }
            self.flush();
            if n > 0 {
                tokio::task::yield_now().await;
                continue;
            }
            if self.congested() {
                tokio::time::sleep(Duration::from_micros(50)).await;
                continue;
            }
            if self.endpoint.borrow().prepare_park() {
                let (res, b) = eventfd.read_at(buf, 0).await;
                buf = b;
                self.endpoint.borrow().unpark();
                if let Err(err) = res {
                    crate::error!("shard {}: eventfd read failed: {err}", self.id);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
}

/// Reads the framed record at `loc` from its segment file.
async fn read_frame(
    files: &mut HashMap<u32, Rc<tokio_uring::fs::File>>,
    dir: &std::path::Path,
    loc: crate::broker::Loc,
) -> std::io::Result<Bytes> {
    let file = match files.get(&loc.seg) {
        Some(f) => f.clone(),
        None => {
            let f = Rc::new(
                tokio_uring::fs::File::open(crate::store::segment_path(dir, loc.seg)).await?,
            );
            files.insert(loc.seg, f.clone());
            f
        }
    };
    let (res, buf) = file
        .read_exact_at(vec![0u8; loc.len as usize], u64::from(loc.off))
        .await;
    res?;
    Ok(Bytes::from(buf))
}

fn stopped() -> AmqpError {
    AmqpError::new(crate::protocol::constants::INTERNAL_ERROR, "shard stopped")
}

/// Starts every shard and blocks until SIGINT or SIGTERM.
pub fn run(config: Config) -> std::io::Result<()> {
    // Before any shard thread exists, so that they all inherit the mask.
    let signals = block_signals()?;
    start(config)?;
    let signal = wait_for_signal(&signals);
    crate::info!("Received signal {signal}, stopping");
    Ok(())
}

/// Starts every shard on its own thread and returns once all of them accept connections.
/// The shards run until the process exits.
pub fn start(config: Config) -> std::io::Result<()> {
    probe_io_uring()?;
    let count = config.shard_count();
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot create data directory {}: {e}",
                config.data_dir.display()
            ),
        )
    })?;
    lock_data_dir(&config.data_dir)?;
    for addr in &config.listen {
        crate::connection::ensure_address_free(*addr)?;
    }
    let budget = config.memory_budget_bytes() / count as u64;
    let started = std::time::Instant::now();
    let recovered =
        crate::store::recover::recover(&config.data_dir, count, config.segment_size, budget)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot recover {}: {e}", config.data_dir.display()),
                )
            })?;
    let queue_count: usize = recovered.shards.iter().map(|s| s.queues.len()).sum();
    crate::info!(
        "Recovered {} durable queue(s) and {} message(s) in {} ms",
        queue_count,
        recovered.messages,
        started.elapsed().as_millis()
    );
    // Recovered queues get deterministic references, so every shard can rebuild the same
    // routing replica from the stored topology changes.
    let mut queue_refs = HashMap::new();
    for (shard, start) in recovered.shards.iter().enumerate() {
        for (index, q) in start.queues.iter().enumerate() {
            queue_refs.insert(q.name.clone(), Broker::recovered_ref(shard, index));
        }
    }
    let topology_records = Arc::new(recovered.topology);
    let queue_refs = Arc::new(queue_refs);
    let alarms = crate::alarm::start_monitor(
        config.data_dir.clone(),
        config.memory_high_watermark.bytes(),
        config.disk_free_limit,
    )?;
    let endpoints = ring::mesh::<ShardMsg>(count, RING_CAPACITY)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let mut listeners = Vec::new();
    for _ in 0..count {
        let mut per_shard = Vec::new();
        for addr in &config.listen {
            per_shard.push(crate::connection::listener(*addr)?);
        }
        listeners.push(per_shard);
    }
    crate::info!(
        "Warren {} starting: {} shard(s), listening on {}, data in {}",
        env!("CARGO_PKG_VERSION"),
        count,
        config
            .listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.data_dir.display()
    );
    for (id, ((endpoint, listeners), start)) in endpoints
        .into_iter()
        .zip(listeners)
        .zip(recovered.shards)
        .enumerate()
    {
        let config = config.clone();
        let ready_tx = ready_tx.clone();
        let topology_records = topology_records.clone();
        let queue_refs = queue_refs.clone();
        let alarms = alarms.clone();
        let mut broker = Broker::new(id);
        let live = start.live;
        let (first_segment, defs_len) = (start.first_segment, start.defs_len);
        broker.recovered(start.queues, start.resident_bytes);
        std::thread::Builder::new()
            .name(format!("warren-shard-{id}"))
            .spawn(move || {
                pin_to_core(id);
                let mut builder = tokio_uring::builder();
                builder.entries(1024);
                let failed_tx = ready_tx.clone();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    builder.start(async move {
                        let store = crate::store::Store::new(
                            crate::store::shard_dir(&config.data_dir, id),
                            config.segment_size,
                            config.sync,
                            first_segment,
                            defs_len,
                            live,
                        );
                        broker.attach_store(store, budget);
                        let topology = Topology::replay(&topology_records, &queue_refs);
                        drop((topology_records, queue_refs));
                        let shard = Rc::new(Shard::new(
                            id, count, config, alarms, endpoint, broker, topology,
                        ));
                        tokio_uring::spawn(shard.clone().mailbox());
                        tokio_uring::spawn(crate::store::writer::run(shard.clone()));
                        tokio_uring::spawn(shard.clone().pager());
                        tokio_uring::spawn(shard.clone().watch_alarms());
                        for listener in listeners {
                            let listener = tokio_uring::net::TcpListener::from_std(listener);
                            tokio_uring::spawn(crate::connection::accept_loop(
                                shard.clone(),
                                listener,
                            ));
                        }
                        let _ = ready_tx.send(Ok(()));
                        std::future::pending::<()>().await;
                    })
                }));
                if result.is_err() {
                    let _ =
                        failed_tx.send(Err(std::io::Error::other(format!("shard {id} failed"))));
                }
            })?;
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err),
            Err(_) => return Err(std::io::Error::other("a shard failed to start")),
        }
    }
    crate::info!("Server startup complete; {count} shard(s) accepting connections");
    Ok(())
}

/// Takes an exclusive lock on the data directory for the life of the process, so that two
/// brokers never write the same files. The kernel drops it when the process dies, even by
/// SIGKILL.
fn lock_data_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let fd = file.into_raw_fd(); // kept open until exit: the lock lives as long as the fd
                                 // SAFETY: fd is a valid descriptor owned by this process.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::other(format!(
            "data directory {} is in use by another Warren process (lock {} is held)",
            dir.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Says in one line, with the fix, when io_uring cannot be used (old kernel, the sysctl, or a
/// container's seccomp profile), instead of failing later inside a shard.
fn probe_io_uring() -> std::io::Result<()> {
    // SAFETY: io_uring_setup with one entry and zeroed params; the returned fd is closed.
    let fd = unsafe {
        let mut params = [0u8; 120];
        libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr())
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by io_uring_setup and is owned here.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    Err(std::io::Error::other(format!(
        "io_uring is unavailable ({err}; kernel.io_uring_disabled={disabled}): run \
         `sysctl -w kernel.io_uring_disabled=0`, or in a container allow the io_uring_setup, \
         io_uring_enter and io_uring_register syscalls in its seccomp profile (see tuning/README.md)"
    )))
}

fn pin_to_core(id: usize) {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity/setaffinity read and write it in place.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &allowed))
            .collect();
        if cpus.is_empty() {
            return;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[id % cpus.len()], &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Blocks SIGINT/SIGTERM in every thread (shards inherit the mask) so that only the main thread
/// receives them, synchronously, through sigwait.
fn block_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset manipulation on a local, then pthread_sigmask on the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(set)
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid, initialized sigset; sig is a valid out pointer.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}
