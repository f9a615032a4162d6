//! Shards: one thread per core, each with its own runtime, queues and connections, talking to
//! the others only through the SPSC rings of [`ring`].
//!
//! A shard processes messages from three sources, always with no borrow held across an await:
//! its sockets (connection tasks), its incoming rings ([`mailbox`]), and its local inbox
//! (messages one part of the shard sends to another, e.g. a delivery from a local queue to a
//! local connection). Whoever puts something in the local inbox calls [`Shard::flush`] before
//! its next await, which runs the inbox dry and sends what piled up for other shards, waking
//! them only if they are parked.
//!
//! Queue operations that need an answer (declare, consume, ...) go through
//! [`Shard::request`] ([`request`]): applied directly when the queue is local, otherwise sent
//! to the owner and awaited. Because each ring is FIFO, a connection's publishes and requests
//! reach a queue in the order it sent them. Exchanges and bindings change through the
//! topology owner ([`metadata`]), which applies a change everywhere before its `-ok`.
//!
//! ```text
//! connection task --send--> local inbox --flush--> handle (broker ops)
//!                 \--send--> ring to shard N --mailbox on N--> handle
//! ```

pub mod client;
pub mod control;
mod dead_letters;
mod handle;
mod housekeeping;
pub mod mailbox;
mod metadata;
pub mod overflow;
mod request;
pub mod ring;
#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

use slab::Slab;
use tokio::sync::{oneshot, Notify};

use crate::alarm::Alarms;
use crate::broker::topology::Topology;
use crate::broker::{AmqpError, Broker, OpOk, Outbox, ShardMsg};
use crate::config::Config;
use crate::ids::{queue_shard_bytes, ConnRef};
pub use client::Client;
pub use housekeeping::spawn_tasks;

/// Slots per ring. Bounded: a full ring pushes back on the sockets that feed it.
pub const RING_CAPACITY: usize = 16 * 1024;

type ReplyTx = oneshot::Sender<Result<OpOk, AmqpError>>;

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<Config>,
    pub alarms: Arc<Alarms>,
    /// Client connections open on all shards (for `--connection-max`).
    connections: Arc<std::sync::atomic::AtomicUsize>,
    pub broker: RefCell<Broker>,
    pub topology: RefCell<Topology>,
    /// On the topology owner: changes still being applied elsewhere (see [`metadata`]).
    topology_waiting: RefCell<HashMap<u64, metadata::Pending>>,
    /// Wakes the pager task (bodies to read back from the store).
    page_wake: Rc<Notify>,
    conns: RefCell<Slab<Rc<dyn Client>>>,
    endpoint: RefCell<ring::Endpoint<ShardMsg>>,
    /// Messages for a full ring, per target; non-empty means "stop reading sockets".
    overflow: RefCell<overflow::Overflow<ShardMsg>>,
    local: RefCell<VecDeque<ShardMsg>>,
    /// Spare outbox for broker operations (see `send_all`).
    outbox: RefCell<Outbox>,
    pending: RefCell<HashMap<u64, ReplyTx>>,
    next_request_id: Cell<u64>,
    next_serial: Cell<u32>,
    next_consumer_id: Cell<u64>,
    flushing: Cell<bool>,
}

impl Shard {
    pub fn new(
        config: Arc<Config>,
        alarms: Arc<Alarms>,
        connections: Arc<std::sync::atomic::AtomicUsize>,
        endpoint: ring::Endpoint<ShardMsg>,
        broker: Broker,
        topology: Topology,
    ) -> Self {
        let (id, count) = (endpoint.id(), endpoint.count());
        Shard {
            id,
            count,
            config,
            alarms,
            connections,
            broker: RefCell::new(broker),
            topology: RefCell::new(topology),
            topology_waiting: RefCell::new(HashMap::new()),
            page_wake: Rc::new(Notify::new()),
            conns: RefCell::new(Slab::new()),
            endpoint: RefCell::new(endpoint),
            overflow: RefCell::new(overflow::Overflow::new(count, overflow::OVERFLOW_MAX_MSGS)),
            local: RefCell::new(VecDeque::new()),
            outbox: RefCell::new(Vec::new()),
            pending: RefCell::new(HashMap::new()),
            next_request_id: Cell::new(1),
            next_serial: Cell::new(1),
            next_consumer_id: Cell::new(1),
            flushing: Cell::new(false),
        }
    }

    /// Counts a new client connection; false (and not counted) when `--connection-max`
    /// connections are open already.
    pub fn admit_connection(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let max = self.config.connection_max;
        let open = self.connections.fetch_add(1, Relaxed);
        if max > 0 && open >= max {
            self.connections.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// An admitted connection is gone.
    pub fn connection_gone(&self) {
        self.connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Registers a connection made by `make` from its new global reference.
    pub fn register<C: Client + 'static>(&self, make: impl FnOnce(ConnRef) -> C) -> Rc<C> {
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
        if conns
            .get(cref.key as usize)
            .is_some_and(|c| c.cref() == cref)
        {
            conns.remove(cref.key as usize);
        }
    }

    fn client(&self, cref: ConnRef) -> Option<Rc<dyn Client>> {
        self.conns
            .borrow()
            .get(cref.key as usize)
            .filter(|c| c.cref() == cref)
            .cloned()
    }

    pub fn next_consumer_id(&self) -> u64 {
        let id = self.next_consumer_id.get();
        self.next_consumer_id.set(id + 1);
        ((self.id as u64) << 48) | id
    }

    /// The shard that owns queue `name` of `vhost`.
    pub fn queue_owner(&self, vhost: &[u8], name: &[u8]) -> usize {
        queue_shard_bytes(vhost, name, self.count)
    }

    /// Queues a message for `target`; nothing is processed until [`Shard::flush`].
    #[allow(clippy::result_large_err)] // a full ring hands the message back by value
    pub fn send(&self, target: usize, msg: ShardMsg) {
        if target == self.id {
            self.local.borrow_mut().push_back(msg);
            return;
        }
        let mut endpoint = self.endpoint.borrow_mut();
        self.overflow
            .borrow_mut()
            .send(target, msg, |msg| endpoint.try_push(target, msg));
    }

    /// Sends everything in `out` and keeps the emptied vector for reuse, so routing a message
    /// allocates nothing here.
    pub fn send_all(&self, mut out: Outbox) {
        for (target, msg) in out.drain(..) {
            self.send(target, msg);
        }
        *self.outbox.borrow_mut() = out;
    }

    /// The spare outbox, for an operation that produces messages.
    pub fn take_outbox(&self) -> Outbox {
        std::mem::take(&mut *self.outbox.borrow_mut())
    }

    /// True while some ring is full: connection tasks stop reading until it drains.
    pub fn congested(&self) -> bool {
        !self.overflow.borrow().is_empty() || self.store_backlogged()
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
        // Reset even if a handler panics, so that a caught panic cannot wedge the shard.
        struct Reset<'a>(&'a Cell<bool>);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _reset = Reset(&self.flushing);
        loop {
            let next = self.local.borrow_mut().pop_front();
            match next {
                Some(msg) => self.handle(msg),
                None if self.broker.borrow().grants_due() => {
                    // Publisher credit, in batches of many messages.
                    self.send_grants(false);
                }
                None if self.broker.borrow().has_dead_letters() => self.route_dead_letters(),
                None => break,
            }
        }
        self.retry_overflow();
        self.endpoint.borrow_mut().wake_pending();
        if self.broker.borrow().has_page_requests() {
            self.page_wake.notify_one();
        }
    }

    /// Sends publishers the credit gathered for them (the full batches, or with `all`
    /// everything).
    pub fn send_grants(&self, all: bool) {
        let mut out = self.take_outbox();
        self.broker.borrow_mut().drain_grants(all, &mut out);
        self.send_all(out);
    }

    #[allow(clippy::result_large_err)] // a full ring hands the message back by value
    fn retry_overflow(&self) {
        let mut endpoint = self.endpoint.borrow_mut();
        self.overflow
            .borrow_mut()
            .retry(|target, msg| endpoint.try_push(target, msg));
    }
}
