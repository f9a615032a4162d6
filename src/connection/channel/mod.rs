//! Channels: the per-channel state of a connection and the methods that run on it, one file
//! per method family:
//!
//! | file | methods |
//! |---|---|
//! | `lifecycle.rs` | channel.open / close / flow, access.request |
//! | `queue.rs` | queue.declare / delete / purge / bind / unbind |
//! | `exchange.rs` | exchange.declare / delete / bind / unbind |
//! | `consume.rs` | basic.qos / consume / cancel |
//! | `publish.rs` | basic.publish and its content frames |
//! | `settle.rs` | basic.ack / nack / reject / recover |
//! | `get.rs` | basic.get |
//! | `confirms.rs` | confirm.select and publisher confirms |
//! | `tx.rs` | tx.select / commit / rollback |
//! | `reply_to.rs` | direct reply-to (`amq.rabbitmq.reply-to`) |
//!
//! A channel assigns delivery tags, remembers which queue and queue position each unacked
//! delivery came from ([`unacked`]), and assembles published content into a `Message`. Queue
//! operations go to the queue's owner shard through `Shard::request`; no borrow of the
//! connection state is held across those awaits.

mod confirms;
mod consume;
mod exchange;
mod get;
mod lifecycle;
mod publish;
mod queue;
mod reply_to;
mod settle;
mod tx;
mod unacked;

use crate::broker::inspect::{ChannelInfo, ConsumerInfo};
use bytes::Bytes;

use super::{short_text, Conn, HardError};
use crate::broker::permissions::Access;
use crate::broker::{AmqpError, Delivery, QueueOp, QueueRef, SettleKind, ShardMsg};
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::Method;
use crate::routing::ExchangeKind;
use crate::shard::Shard;
pub use publish::content;

pub struct Channel {
    pub closing: bool,
    next_delivery_tag: u64,
    unacked: unacked::Unacked,
    consumers: Vec<ChannelConsumer>,
    /// Deliveries that reached a consumer before its consume-ok went out.
    held: Vec<Delivery>,
    prefetch_count: u16,
    channel_prefetch_count: u16,
    incoming: Option<publish::Incoming>,
    /// The last queue declared on this channel: "" in queue methods means this one.
    last_queue: Bytes,
    /// confirm.select was sent: publishes are numbered and confirmed.
    confirm: Option<confirms::Confirms>,
    /// tx.select was sent: publishes and settlements wait for tx.commit.
    tx: Option<tx::Tx>,
    /// Consumer tag of the direct reply-to pseudo-consumer (`amq.rabbitmq.reply-to`).
    reply_consumer: Option<Bytes>,
    /// The random secret in this channel's reply addresses (direct reply-to).
    reply_secret: u128,
    /// A method of this channel is in progress (possibly awaiting another shard).
    pub busy: bool,
    /// Server-sent basic.cancel notices held until the method in progress has answered.
    pub deferred_cancels: Vec<Bytes>,
}

struct ChannelConsumer {
    tag: Bytes,
    id: u64,
    no_ack: bool,
    /// None until the queue accepted the consumer.
    queue: Option<QueueRef>,
    /// The queue's name (for traces: a delivery names only the queue's reference).
    queue_name: Bytes,
}

impl Channel {
    /// What the management API shows of it.
    pub fn info(&self, number: u16) -> ChannelInfo {
        let consumers = self
            .consumers
            .iter()
            .map(|c| ConsumerInfo {
                tag: c.tag.clone(),
                queue: c.queue,
                ack_required: !c.no_ack,
            })
            .collect();
        ChannelInfo {
            number,
            prefetch_count: self.prefetch_count,
            global_prefetch_count: self.channel_prefetch_count,
            messages_unacknowledged: self.unacked.count() as u64,
            confirm: self.confirm.is_some(),
            transactional: self.tx.is_some(),
            consumers,
        }
    }

    fn new() -> Self {
        Channel {
            closing: false,
            next_delivery_tag: 1,
            unacked: unacked::Unacked::default(),
            consumers: Vec::new(),
            held: Vec::new(),
            prefetch_count: 0,
            channel_prefetch_count: 0,
            incoming: None,
            last_queue: Bytes::new(),
            confirm: None,
            tx: None,
            reply_consumer: None,
            reply_secret: 0,
            busy: false,
            deferred_cancels: Vec::new(),
        }
    }

    /// The direct reply-to consumer, for a reply whose address carries `secret`.
    pub fn reply_consumer(&self, secret: u128) -> Option<&Bytes> {
        self.reply_consumer
            .as_ref()
            .filter(|_| secret == self.reply_secret && secret != 0)
    }

    /// The next delivery tag.
    pub fn next_tag(&mut self) -> u64 {
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        tag
    }

    /// The name of the queue consumer `tag` reads.
    pub fn consumer_queue(&self, tag: &Bytes) -> Option<Bytes> {
        let consumer = self.consumers.iter().find(|c| c.tag == *tag)?;
        Some(consumer.queue_name.clone())
    }

    pub fn is_pending_consumer(&self, tag: &Bytes) -> bool {
        self.consumers
            .iter()
            .any(|c| c.queue.is_none() && c.tag == *tag)
    }

    pub fn hold(&mut self, d: Delivery) {
        self.held.push(d);
    }

    /// Assigns the next delivery tag and remembers where an unacked delivery came from.
    pub fn track_delivery(&mut self, d: &Delivery) -> u64 {
        self.track(d.queue, d.seq, d.no_ack)
    }

    fn track(&mut self, queue: QueueRef, seq: u64, no_ack: bool) -> u64 {
        let tag = self.next_tag();
        if !no_ack {
            self.unacked.push(tag, queue, seq);
        }
        tag
    }

    /// A consumer of this channel acks what it gets.
    pub fn has_acking_consumer(&self) -> bool {
        self.consumers.iter().any(|c| !c.no_ack)
    }

    pub fn remove_consumer_by_tag(&mut self, tag: &Bytes) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|c| c.tag != *tag);
        self.consumers.len() != before
    }

    /// Everything the channel holds goes back: consumers cancelled, unacked requeued.
    pub fn release(&mut self, shard: &Shard) {
        for c in self.consumers.drain(..) {
            if let Some(queue) = c.queue {
                let consumer_id = c.id;
                let op = QueueOp::Cancel {
                    queue,
                    consumer_id,
                    channel_closed: true,
                };
                shard.send(queue.shard as usize, ShardMsg::Oneway(op));
            }
        }
        let mut groups = self.unacked.take_all();
        for d in self.held.drain(..) {
            if !d.no_ack {
                unacked::add_to_group(&mut groups, d.queue, d.seq);
            }
        }
        for (queue, seqs) in groups {
            let kind = SettleKind::Requeue;
            shard.send(queue.shard as usize, ShardMsg::Settle { queue, kind, seqs });
        }
        self.incoming = None;
    }
}

/// Errors a channel method can raise: soft ones close the channel, hard ones the connection.
enum Fail {
    Soft(AmqpError),
    Hard(HardError),
}

impl From<AmqpError> for Fail {
    fn from(e: AmqpError) -> Self {
        if e.code >= 500 {
            Fail::Hard(HardError::new(e.code, e.text))
        } else {
            Fail::Soft(e)
        }
    }
}

impl From<HardError> for Fail {
    fn from(e: HardError) -> Self {
        Fail::Hard(e)
    }
}

/// A queue shard answered with something other than what the operation returns.
fn internal() -> Fail {
    Fail::Hard(HardError::new(
        INTERNAL_ERROR,
        "unexpected reply from queue shard",
    ))
}

/// A method on a non-zero channel.
pub async fn method(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    method: Method,
) -> Result<(), HardError> {
    if !lifecycle::admit(shard, conn, channel, &method)? {
        return Ok(());
    }
    with_channel(conn, channel, |ch| ch.busy = true);
    let result = run(shard, conn, channel, &method).await;
    let cancels = with_channel(conn, channel, |ch| {
        ch.busy = false;
        std::mem::take(&mut ch.deferred_cancels)
    })
    .unwrap_or_default();
    for consumer_tag in cancels {
        let notice = BasicCancel {
            consumer_tag,
            nowait: true,
        };
        conn.send_method(channel, &Method::BasicCancel(notice));
    }
    match result {
        Ok(()) => Ok(()),
        Err(Fail::Hard(e)) => Err(if e.class_id == 0 { e.on(&method) } else { e }),
        Err(Fail::Soft(e)) => {
            close_channel(shard, conn, channel, e, &method);
            Ok(())
        }
    }
}

/// Runs a method on an open channel: each family in its own file.
async fn run(shard: &Shard, conn: &Conn, channel: u16, method: &Method) -> Result<(), Fail> {
    let ctx = Ctx {
        shard,
        conn,
        channel,
    };
    match method {
        Method::ChannelClose(_) => lifecycle::close(&ctx),
        Method::ChannelCloseOk(_) | Method::ChannelFlowOk(_) => Ok(()),
        Method::ChannelFlow(m) => lifecycle::flow(&ctx, m),
        Method::AccessRequest(_) => lifecycle::access_request(&ctx),
        Method::QueueDeclare(m) => queue::declare(&ctx, m).await,
        Method::QueueDelete(m) => queue::delete(&ctx, m).await,
        Method::QueuePurge(m) => queue::purge(&ctx, m).await,
        Method::QueueBind(m) => queue::bind(&ctx, m).await,
        Method::QueueUnbind(m) => queue::unbind(&ctx, m).await,
        Method::ExchangeDeclare(m) => exchange::declare(&ctx, m).await,
        Method::ExchangeDelete(m) => exchange::delete(&ctx, m).await,
        Method::ExchangeBind(m) => exchange::bind(&ctx, m).await,
        Method::ExchangeUnbind(m) => exchange::unbind(&ctx, m).await,
        Method::BasicQos(m) => consume::qos(&ctx, m),
        Method::BasicConsume(m) if &m.queue[..] == reply_to::REPLY_TO_QUEUE => {
            reply_to::consume(&ctx, m)
        }
        Method::BasicConsume(m) => consume::consume(&ctx, m).await,
        Method::BasicCancel(m) => consume::cancel(&ctx, m).await,
        Method::BasicPublish(m) => publish::publish(&ctx, m),
        Method::BasicAck(m) => settle::ack(&ctx, m),
        Method::BasicReject(m) => settle::reject(&ctx, m),
        Method::BasicNack(m) => settle::nack(&ctx, m),
        Method::BasicRecover(m) => settle::recover(&ctx, m.requeue, true),
        Method::BasicRecoverAsync(m) => settle::recover(&ctx, m.requeue, false),
        Method::BasicGet(m) => get::get(&ctx, m).await,
        Method::ConfirmSelect(m) => confirms::select(&ctx, m),
        Method::TxSelect(_) => tx::select(&ctx),
        Method::TxCommit(_) => tx::commit(&ctx).await,
        Method::TxRollback(_) => tx::rollback(&ctx),
        _ => Err(Fail::Hard(
            HardError::new(
                NOT_IMPLEMENTED,
                format!("{} is not implemented yet", method.name()),
            )
            .on(method),
        )),
    }
}

/// What every method handler works on.
struct Ctx<'a> {
    shard: &'a Shard,
    conn: &'a Conn,
    channel: u16,
}

impl Ctx<'_> {
    /// Runs `f` on the channel's state, if the channel is still open.
    fn with<R>(&self, f: impl FnOnce(&mut Channel) -> R) -> Option<R> {
        with_channel(self.conn, self.channel, f)
    }

    fn send(&self, method: Method) {
        self.conn.send_method(self.channel, &method);
    }

    /// The vhost the connection opened: every name it uses is in it.
    fn vhost(&self) -> Bytes {
        self.conn.state.borrow().vhost.clone()
    }

    /// Refuses, as RabbitMQ does (403, channel error), what the user's permissions in the
    /// vhost do not allow on the `kind` ("queue" or "exchange") named `name`.
    fn permit(&self, access: Access, kind: &str, name: &[u8]) -> Result<(), AmqpError> {
        let state = self.conn.state.borrow();
        let allowed = state
            .permission
            .as_ref()
            .is_some_and(|p| p.allows(access, name));
        if allowed {
            return Ok(());
        }
        let name = if name.is_empty() {
            &b"amq.default"[..]
        } else {
            name
        };
        Err(AmqpError::access_refused(format!(
            "access to {kind} '{}' in vhost '{}' refused for user '{}'",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(&state.vhost),
            state.user
        )))
    }

    /// Topic permissions: may `key` be published with (`Write`) or bound with (`Read`) on
    /// `exchange`, when it is a topic exchange? 403 in RabbitMQ's words when not.
    fn permit_topic(&self, access: Access, exchange: &[u8], key: &[u8]) -> Result<(), AmqpError> {
        let state = self.conn.state.borrow();
        let Some(grants) = state.topic.as_ref() else {
            return Ok(());
        };
        let is_topic = self
            .shard
            .topology
            .borrow()
            .exchange(&state.vhost, exchange)
            .is_some_and(|ex| ex.kind == ExchangeKind::Topic);
        if !is_topic || grants.allows(access, exchange, key) {
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "access to topic '{}' in exchange '{}' in vhost '{}' refused for user '{}'",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(exchange),
            String::from_utf8_lossy(&state.vhost),
            state.user
        )))
    }

    /// True when publishing needs no check per exchange (write permission `.*`).
    fn may_write_anywhere(&self) -> bool {
        let state = self.conn.state.borrow();
        state
            .permission
            .as_ref()
            .is_some_and(|p| p.allows_all(Access::Write))
    }

    /// The queue a queue method names: "" means the last one declared on the channel.
    fn queue_name_or_last(&self, name: &Bytes) -> Result<Bytes, AmqpError> {
        if !name.is_empty() {
            return Ok(name.clone());
        }
        let last = self.with(|ch| ch.last_queue.clone()).unwrap_or_default();
        if last.is_empty() {
            return Err(AmqpError::not_found(
                "no previously declared queue".to_string(),
            ));
        }
        Ok(last)
    }
}

/// Soft error: release the channel's resources and send channel.close; the channel then
/// ignores everything until close-ok.
fn close_channel(shard: &Shard, conn: &Conn, channel: u16, err: AmqpError, method: &Method) {
    let mut state = conn.state.borrow_mut();
    let Some(ch) = state.channels.get_mut(&channel) else {
        return;
    };
    ch.closing = true;
    ch.release(shard);
    let user = state.user.clone();
    drop(state);
    let text = format!("{} - {}", super::reply_name(err.code), err.text);
    crate::warn!(
        "channel error on AMQP connection {} ({user}), channel {channel}: {text}",
        conn.peer
    );
    let close = ChannelClose {
        reply_code: err.code,
        reply_text: short_text(text),
        class_id: method.class_id(),
        method_id: method.method_id(),
    };
    conn.send_method(channel, &Method::ChannelClose(close));
}

/// Runs `f` on the channel's state.
fn with_channel<R>(conn: &Conn, channel: u16, f: impl FnOnce(&mut Channel) -> R) -> Option<R> {
    conn.state.borrow_mut().channels.get_mut(&channel).map(f)
}

/// 22 URL-safe base64 characters of randomness (as RabbitMQ's generated names have).
pub fn random_suffix() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (t.as_nanos() as u64) ^ (std::process::id() as u64).rotate_left(32) | 1
        });
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    STATE.with(|state| {
        let mut x = state.get();
        let mut out = String::with_capacity(22);
        for _ in 0..22 {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
            out.push(ALPHABET[(r >> 58) as usize] as char);
        }
        state.set(x);
        out
    })
}
