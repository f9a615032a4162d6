//! Channels: the per-channel state of a connection and the methods that run on it.
//!
//! A channel assigns delivery tags, remembers which queue and queue position each unacked
//! delivery came from, and assembles published content (method, header, body frames) into a
//! `Message`. Queue operations go to the queue's owner shard through `Shard::request`; no
//! borrow of the connection state is held across those awaits.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::{short_text, Conn, HardError};
use crate::broker::topology::{
    default_exchange_refused, no_exchange, unknown_type, BindingChange, Dest, TopologyChange,
};
use crate::broker::{AmqpError, ConsumerSpec, Message, OpOk, QueueOp, QueueRef, SettleKind};
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::{BasicProperties, ContentHeader, Frame, Method};
use crate::routing::ExchangeKind;
use crate::shard::{Delivery, Origin, QueueTarget, Shard, ShardMsg};

struct Unacked {
    delivery_tag: u64,
    queue: QueueRef,
    seq: u64,
}

struct ChannelConsumer {
    tag: Bytes,
    id: u64,
    queue: Option<QueueRef>,
}

enum Body {
    Empty,
    /// One body frame: the frame's own bytes, no copy.
    One(Bytes),
    /// Several frames, gathered into one buffer sized from the header (bounded by
    /// max_message_size, checked before allocating).
    Many(BytesMut),
}

struct Incoming {
    exchange: Bytes,
    routing_key: Bytes,
    mandatory: bool,
    /// (body size, raw properties) once the content header arrived.
    header: Option<(u64, Bytes)>,
    body: Body,
    received: u64,
}

pub struct Channel {
    pub closing: bool,
    next_delivery_tag: u64,
    unacked: VecDeque<Unacked>,
    consumers: Vec<ChannelConsumer>,
    /// Deliveries that reached a consumer before its consume-ok went out.
    held: Vec<Delivery>,
    prefetch_count: u16,
    channel_prefetch_count: u16,
    incoming: Option<Incoming>,
    /// The last queue declared on this channel: "" in queue methods means this one.
    last_queue: Bytes,
    /// confirm.select was sent: publishes are numbered and confirmed.
    confirm: Option<Confirms>,
    /// tx.select was sent: publishes and settlements wait for tx.commit.
    tx: Option<Tx>,
    /// Consumer tag of the direct reply-to pseudo-consumer (`amq.rabbitmq.reply-to`).
    reply_consumer: Option<Bytes>,
    /// A method of this channel is in progress (possibly awaiting another shard).
    pub busy: bool,
    /// Server-sent basic.cancel notices held until the method in progress has answered.
    pub deferred_cancels: Vec<Bytes>,
}

/// Publisher confirms of one channel. `pending` is in sequence order; an entry is complete
/// when every queue the message went to has taken it, and confirms go out only for a complete
/// prefix, so a `multiple` ack never covers a message still in flight.
#[derive(Default)]
pub struct Confirms {
    next_seq: u64,
    pending: VecDeque<PendingConfirm>,
}

struct PendingConfirm {
    seq: u64,
    /// Queues yet to take the message.
    remaining: u32,
    ok: bool,
}

impl Confirms {
    fn register(&mut self, targets: u32) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.pending.push_back(PendingConfirm {
            seq,
            remaining: targets,
            ok: true,
        });
        seq
    }

    fn complete(&mut self, seq: u64, ok: bool) {
        if let Ok(i) = self.pending.binary_search_by_key(&seq, |p| p.seq) {
            let p = &mut self.pending[i];
            p.remaining = p.remaining.saturating_sub(1);
            p.ok &= ok;
        }
    }

    /// Pops the complete prefix as acks (runs folded into one `multiple` ack) and nacks.
    fn take_ready(&mut self, out: &mut Vec<Method>) {
        let mut run: Option<(u64, u64)> = None;
        let flush = |run: &mut Option<(u64, u64)>, out: &mut Vec<Method>| {
            if let Some((first, last)) = run.take() {
                out.push(Method::BasicAck(BasicAck {
                    delivery_tag: last,
                    multiple: last > first,
                }));
            }
        };
        while self.pending.front().is_some_and(|p| p.remaining == 0) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if p.ok {
                run = Some(run.map_or((p.seq, p.seq), |(first, _)| (first, p.seq)));
            } else {
                flush(&mut run, out);
                out.push(Method::BasicNack(BasicNack {
                    delivery_tag: p.seq,
                    multiple: false,
                    requeue: false,
                }));
            }
        }
        flush(&mut run, out);
    }
}

/// What a transaction holds until commit.
#[derive(Default)]
struct Tx {
    publishes: Vec<Incoming>,
    settles: Vec<(u64, bool, SettleKind)>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            closing: false,
            next_delivery_tag: 1,
            unacked: VecDeque::new(),
            consumers: Vec::new(),
            held: Vec::new(),
            prefetch_count: 0,
            channel_prefetch_count: 0,
            incoming: None,
            last_queue: Bytes::new(),
            confirm: None,
            tx: None,
            reply_consumer: None,
            busy: false,
            deferred_cancels: Vec::new(),
        }
    }

    /// A publisher confirm arrived from a queue.
    pub fn confirmed(&mut self, seq: u64, ok: bool) {
        if let Some(confirm) = self.confirm.as_mut() {
            confirm.complete(seq, ok);
        }
    }

    /// The confirms now due, in order, folded into `multiple` acks where possible.
    pub fn take_confirms(&mut self, out: &mut Vec<Method>) {
        if let Some(confirm) = self.confirm.as_mut() {
            confirm.take_ready(out);
        }
    }

    pub fn reply_consumer(&self) -> Option<&Bytes> {
        self.reply_consumer.as_ref()
    }

    /// A delivery tag for a message no one will ack (direct reply-to).
    pub fn next_tag(&mut self) -> u64 {
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        tag
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
            self.unacked.push_back(Unacked {
                delivery_tag: tag,
                queue,
                seq,
            });
        }
        tag
    }

    pub fn remove_consumer_by_tag(&mut self, tag: &Bytes) -> bool {
        let before = self.consumers.len();
        self.consumers.retain(|c| c.tag != *tag);
        self.consumers.len() != before
    }

    /// Takes the unacked deliveries an ack/nack/reject names, grouped by queue.
    fn take_unacked(
        &mut self,
        delivery_tag: u64,
        multiple: bool,
    ) -> Result<SmallVec<[QueueSeqs; 1]>, AmqpError> {
        let mut groups = SmallVec::new();
        if multiple {
            let all = delivery_tag == 0;
            while let Some(front) = self.unacked.front() {
                if !all && front.delivery_tag > delivery_tag {
                    break;
                }
                if let Some(u) = self.unacked.pop_front() {
                    add_to_group(&mut groups, u);
                }
            }
            // RabbitMQ accepts multiple=true for a tag that was already acked, as long as
            // the tag was issued on this channel.
            if groups.is_empty() && !all && delivery_tag >= self.next_delivery_tag {
                return Err(unknown_tag(delivery_tag));
            }
        } else {
            let index = self
                .unacked
                .binary_search_by_key(&delivery_tag, |u| u.delivery_tag)
                .map_err(|_| unknown_tag(delivery_tag))?;
            if let Some(u) = self.unacked.remove(index) {
                add_to_group(&mut groups, u);
            }
        }
        Ok(groups)
    }

    /// Everything the channel holds goes back: consumers cancelled, unacked requeued.
    pub fn release(&mut self, shard: &Shard) {
        for c in self.consumers.drain(..) {
            if let Some(queue) = c.queue {
                shard.send(
                    queue.shard as usize,
                    ShardMsg::Oneway(QueueOp::Cancel {
                        queue,
                        consumer_id: c.id,
                    }),
                );
            }
        }
        for d in self.held.drain(..) {
            if !d.no_ack {
                self.unacked.push_back(Unacked {
                    delivery_tag: 0,
                    queue: d.queue,
                    seq: d.seq,
                });
            }
        }
        let mut groups = SmallVec::new();
        for u in self.unacked.drain(..) {
            add_to_group(&mut groups, u);
        }
        for (queue, seqs) in groups {
            shard.send(
                queue.shard as usize,
                ShardMsg::Settle {
                    queue,
                    kind: SettleKind::Requeue,
                    seqs,
                },
            );
        }
        self.incoming = None;
    }
}

fn unknown_tag(delivery_tag: u64) -> AmqpError {
    AmqpError::precondition(format!("unknown delivery tag {delivery_tag}"))
}

/// Positions of unacked messages in one queue.
type QueueSeqs = (QueueRef, SmallVec<[u64; 4]>);

fn add_to_group(groups: &mut SmallVec<[QueueSeqs; 1]>, u: Unacked) {
    match groups.iter_mut().find(|(q, _)| *q == u.queue) {
        Some((_, seqs)) => seqs.push(u.seq),
        None => {
            let mut seqs = SmallVec::new();
            seqs.push(u.seq);
            groups.push((u.queue, seqs));
        }
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

fn not_implemented(method: &Method) -> Fail {
    Fail::Hard(
        HardError::new(
            NOT_IMPLEMENTED,
            format!("{} is not implemented yet", method.name()),
        )
        .on(method),
    )
}

/// A method on a non-zero channel.
pub async fn method(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    method: Method,
) -> Result<(), HardError> {
    {
        let mut state = conn.state.borrow_mut();
        match state.channels.get_mut(&channel) {
            None => {
                if let Method::ChannelOpen(_) = method {
                    // Like RabbitMQ, channel_max limits how many channels are open at once,
                    // not the channel number.
                    if state.channels.len() >= usize::from(state.channel_max) {
                        let text = format!(
                            "number of channels opened ({}) has reached the negotiated channel_max ({})",
                            state.channels.len(),
                            state.channel_max
                        );
                        return Err(HardError::new(NOT_ALLOWED, text).on(&method));
                    }
                    state.channels.insert(channel, Channel::new());
                    drop(state);
                    conn.send_method(
                        channel,
                        &Method::ChannelOpenOk(ChannelOpenOk {
                            channel_id: Bytes::new(),
                        }),
                    );
                    return Ok(());
                }
                return Err(HardError::new(CHANNEL_ERROR, "expected 'channel.open'").on(&method));
            }
            Some(ch) if ch.closing => {
                // After we sent channel.close, everything but close / close-ok is dropped.
                match method {
                    Method::ChannelCloseOk(_) => {
                        state.channels.remove(&channel);
                    }
                    Method::ChannelClose(_) => {
                        state.channels.remove(&channel);
                        drop(state);
                        conn.send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                    }
                    _ => {}
                }
                return Ok(());
            }
            Some(ch) if ch.incoming.is_some() => {
                return Err(HardError::new(
                    UNEXPECTED_FRAME,
                    format!("expected content header for class 60, got non content header frame instead ({})", method.name()),
                )
                .on(&method));
            }
            Some(_) => {
                if let Method::ChannelOpen(_) = method {
                    return Err(
                        HardError::new(CHANNEL_ERROR, "second 'channel.open' seen").on(&method)
                    );
                }
            }
        }
    }
    with_channel(conn, channel, |ch| ch.busy = true);
    let result = run(shard, conn, channel, &method).await;
    let cancels = with_channel(conn, channel, |ch| {
        ch.busy = false;
        std::mem::take(&mut ch.deferred_cancels)
    })
    .unwrap_or_default();
    for consumer_tag in cancels {
        let notice = Method::BasicCancel(BasicCancel {
            consumer_tag,
            nowait: true,
        });
        conn.send_method(channel, &notice);
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

/// Soft error: release the channel's resources and send channel.close; the channel then
/// ignores everything until close-ok.
fn close_channel(shard: &Shard, conn: &Conn, channel: u16, err: AmqpError, method: &Method) {
    let mut state = conn.state.borrow_mut();
    let Some(ch) = state.channels.get_mut(&channel) else {
        return;
    };
    ch.closing = true;
    ch.release(shard);
    drop(state);
    let text = format!("{} - {}", super::reply_name(err.code), err.text);
    conn.send_method(
        channel,
        &Method::ChannelClose(ChannelClose {
            reply_code: err.code,
            reply_text: short_text(text),
            class_id: method.class_id(),
            method_id: method.method_id(),
        }),
    );
}

/// Runs `f` on the channel's state (which `method` checked exists).
fn with_channel<R>(conn: &Conn, channel: u16, f: impl FnOnce(&mut Channel) -> R) -> Option<R> {
    conn.state.borrow_mut().channels.get_mut(&channel).map(f)
}

fn queue_name_or_last(conn: &Conn, channel: u16, name: &Bytes) -> Result<Bytes, AmqpError> {
    if !name.is_empty() {
        return Ok(name.clone());
    }
    let last = with_channel(conn, channel, |ch| ch.last_queue.clone()).unwrap_or_default();
    if last.is_empty() {
        return Err(AmqpError::not_found(
            "no previously declared queue".to_string(),
        ));
    }
    Ok(last)
}

async fn run(shard: &Shard, conn: &Conn, channel: u16, method: &Method) -> Result<(), Fail> {
    match method {
        Method::ChannelClose(_) => {
            let ch = conn.state.borrow_mut().channels.remove(&channel);
            if let Some(mut ch) = ch {
                ch.release(shard);
            }
            conn.send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
        }
        Method::ChannelCloseOk(_) => {}
        Method::ChannelFlow(m) => {
            conn.send_method(
                channel,
                &Method::ChannelFlowOk(ChannelFlowOk { active: m.active }),
            );
        }
        Method::ChannelFlowOk(_) => {}
        Method::AccessRequest(_) => {
            conn.send_method(
                channel,
                &Method::AccessRequestOk(AccessRequestOk { ticket: 1 }),
            );
        }
        Method::QueueDeclare(m) => queue_declare(shard, conn, channel, m).await?,
        Method::QueueDelete(m) => {
            let name = queue_name_or_last(conn, channel, &m.queue)?;
            let op = QueueOp::Delete {
                name: name.clone(),
                if_unused: m.if_unused,
                if_empty: m.if_empty,
                owner: conn.cref,
            };
            let OpOk::Count(message_count) = shard.request(shard.queue_owner(&name), op).await?
            else {
                return Err(internal());
            };
            if !m.nowait {
                conn.send_method(
                    channel,
                    &Method::QueueDeleteOk(QueueDeleteOk { message_count }),
                );
            }
        }
        Method::QueuePurge(m) => {
            let name = queue_name_or_last(conn, channel, &m.queue)?;
            let op = QueueOp::Purge {
                name: name.clone(),
                owner: conn.cref,
            };
            let OpOk::Count(message_count) = shard.request(shard.queue_owner(&name), op).await?
            else {
                return Err(internal());
            };
            if !m.nowait {
                conn.send_method(
                    channel,
                    &Method::QueuePurgeOk(QueuePurgeOk { message_count }),
                );
            }
        }
        Method::BasicQos(m) => {
            if m.prefetch_size != 0 {
                return Err(Fail::Hard(HardError::new(
                    NOT_IMPLEMENTED,
                    format!("prefetch_size!=0 ({})", m.prefetch_size),
                )));
            }
            with_channel(conn, channel, |ch| {
                if m.global {
                    ch.channel_prefetch_count = m.prefetch_count;
                } else {
                    ch.prefetch_count = m.prefetch_count;
                }
            });
            conn.send_method(channel, &Method::BasicQosOk(BasicQosOk {}));
        }
        Method::BasicConsume(m) if &m.queue[..] == REPLY_TO_QUEUE => {
            reply_to_consume(conn, channel, m)?
        }
        Method::BasicConsume(m) => basic_consume(shard, conn, channel, m).await?,
        Method::BasicGet(m) => basic_get(shard, conn, channel, m).await?,
        Method::ConfirmSelect(m) => {
            with_channel(conn, channel, |ch| {
                if ch.tx.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from tx to confirm mode".to_string(),
                    ));
                }
                ch.confirm.get_or_insert_with(Confirms::default);
                Ok(())
            })
            .unwrap_or(Ok(()))?;
            if !m.nowait {
                conn.send_method(channel, &Method::ConfirmSelectOk(ConfirmSelectOk {}));
            }
        }
        Method::TxSelect(_) => {
            with_channel(conn, channel, |ch| {
                if ch.confirm.is_some() {
                    return Err(AmqpError::precondition(
                        "cannot switch from confirm to tx mode".to_string(),
                    ));
                }
                ch.tx.get_or_insert_with(Tx::default);
                Ok(())
            })
            .unwrap_or(Ok(()))?;
            conn.send_method(channel, &Method::TxSelectOk(TxSelectOk {}));
        }
        Method::TxCommit(_) => {
            let tx = take_tx(conn, channel)?;
            let published = !tx.publishes.is_empty();
            for incoming in tx.publishes {
                publish(shard, conn, channel, incoming)?;
            }
            for (delivery_tag, multiple, kind) in tx.settles {
                settle_now(shard, conn, channel, delivery_tag, multiple, kind)?;
            }
            with_channel(conn, channel, |ch| ch.tx = Some(Tx::default()));
            if published {
                // commit-ok once the transaction's persistent messages are on disk.
                shard.sync_barrier().await?;
            }
            conn.send_method(channel, &Method::TxCommitOk(TxCommitOk {}));
        }
        Method::TxRollback(_) => {
            take_tx(conn, channel)?;
            with_channel(conn, channel, |ch| ch.tx = Some(Tx::default()));
            conn.send_method(channel, &Method::TxRollbackOk(TxRollbackOk {}));
        }
        Method::BasicCancel(m) => {
            with_channel(conn, channel, |ch| {
                if ch.reply_consumer.as_ref() == Some(&m.consumer_tag) {
                    ch.reply_consumer = None;
                }
            });
            let consumer = with_channel(conn, channel, |ch| {
                let i = ch.consumers.iter().position(|c| c.tag == m.consumer_tag)?;
                Some(ch.consumers.remove(i))
            })
            .flatten();
            if let Some(ChannelConsumer {
                queue: Some(queue),
                id,
                ..
            }) = consumer
            {
                shard
                    .request(
                        queue.shard as usize,
                        QueueOp::Cancel {
                            queue,
                            consumer_id: id,
                        },
                    )
                    .await?;
            }
            if !m.nowait {
                conn.send_method(
                    channel,
                    &Method::BasicCancelOk(BasicCancelOk {
                        consumer_tag: m.consumer_tag.clone(),
                    }),
                );
            }
        }
        Method::BasicPublish(m) => {
            conn.published.set(true);
            if m.immediate {
                return Err(Fail::Hard(HardError::new(
                    NOT_IMPLEMENTED,
                    "immediate=true",
                )));
            }
            if !is_default_exchange(&m.exchange) {
                let topology = shard.topology.borrow();
                match topology.exchange(&m.exchange) {
                    None => return Err(Fail::Soft(no_exchange(&m.exchange))),
                    Some(ex) if ex.internal => {
                        return Err(Fail::Soft(AmqpError::access_refused(format!(
                            "cannot publish to internal exchange '{}' in vhost '/'",
                            String::from_utf8_lossy(&m.exchange)
                        ))))
                    }
                    Some(_) => {}
                }
            }
            with_channel(conn, channel, |ch| {
                ch.incoming = Some(Incoming {
                    exchange: m.exchange.clone(),
                    routing_key: m.routing_key.clone(),
                    mandatory: m.mandatory,
                    header: None,
                    body: Body::Empty,
                    received: 0,
                });
            });
        }
        Method::BasicAck(m) => settle(
            shard,
            conn,
            channel,
            m.delivery_tag,
            m.multiple,
            SettleKind::Ack,
        )?,
        Method::BasicReject(m) => {
            let kind = if m.requeue {
                SettleKind::Requeue
            } else {
                SettleKind::Ack
            };
            settle(shard, conn, channel, m.delivery_tag, false, kind)?
        }
        Method::BasicNack(m) => {
            let kind = if m.requeue {
                SettleKind::Requeue
            } else {
                SettleKind::Ack
            };
            settle(shard, conn, channel, m.delivery_tag, m.multiple, kind)?
        }
        Method::BasicRecover(m) => {
            recover(shard, conn, channel, m.requeue)?;
            conn.send_method(channel, &Method::BasicRecoverOk(BasicRecoverOk {}));
        }
        Method::BasicRecoverAsync(m) => recover(shard, conn, channel, m.requeue)?,
        Method::ExchangeDeclare(m) => exchange_declare(shard, conn, channel, m).await?,
        Method::ExchangeDelete(m) => {
            if m.exchange.is_empty() || m.exchange.starts_with(b"amq.") {
                return Err(Fail::Soft(reserved_exchange(&m.exchange)));
            }
            let change = TopologyChange::DeleteExchange {
                name: m.exchange.clone(),
                if_unused: m.if_unused,
            };
            shard.change_topology(change).await?;
            if !m.nowait {
                conn.send_method(channel, &Method::ExchangeDeleteOk(ExchangeDeleteOk {}));
            }
        }
        Method::ExchangeBind(m) => {
            exchange_bind(
                shard,
                &m.source,
                &m.destination,
                &m.routing_key,
                &m.arguments,
                true,
            )
            .await?;
            if !m.nowait {
                conn.send_method(channel, &Method::ExchangeBindOk(ExchangeBindOk {}));
            }
        }
        Method::ExchangeUnbind(m) => {
            exchange_bind(
                shard,
                &m.source,
                &m.destination,
                &m.routing_key,
                &m.arguments,
                false,
            )
            .await?;
            if !m.nowait {
                conn.send_method(channel, &Method::ExchangeUnbindOk(ExchangeUnbindOk {}));
            }
        }
        Method::QueueBind(m) => {
            let name = queue_name_or_last(conn, channel, &m.queue)?;
            queue_bind(
                shard,
                conn,
                &name,
                &m.exchange,
                &m.routing_key,
                &m.arguments,
                true,
            )
            .await?;
            if !m.nowait {
                conn.send_method(channel, &Method::QueueBindOk(QueueBindOk {}));
            }
        }
        Method::QueueUnbind(m) => {
            let name = queue_name_or_last(conn, channel, &m.queue)?;
            queue_bind(
                shard,
                conn,
                &name,
                &m.exchange,
                &m.routing_key,
                &m.arguments,
                false,
            )
            .await?;
            conn.send_method(channel, &Method::QueueUnbindOk(QueueUnbindOk {}));
        }
        _ => return Err(not_implemented(method)),
    }
    Ok(())
}

fn is_default_exchange(name: &[u8]) -> bool {
    name.is_empty() || name == b"amq.default"
}

fn reserved_exchange(name: &[u8]) -> AmqpError {
    if name.is_empty() {
        default_exchange_refused()
    } else {
        AmqpError::access_refused(format!(
            "exchange name '{}' contains reserved prefix 'amq.*'",
            String::from_utf8_lossy(name)
        ))
    }
}

async fn exchange_declare(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    m: &ExchangeDeclare,
) -> Result<(), Fail> {
    if is_default_exchange(&m.exchange) {
        return Err(Fail::Soft(default_exchange_refused()));
    }
    if m.passive {
        if shard.topology.borrow().exchange(&m.exchange).is_none() {
            return Err(Fail::Soft(no_exchange(&m.exchange)));
        }
    } else {
        if m.exchange.starts_with(b"amq.") {
            return Err(Fail::Soft(reserved_exchange(&m.exchange)));
        }
        let kind = ExchangeKind::parse(&m.kind).ok_or_else(|| Fail::from(unknown_type(&m.kind)))?;
        let change = TopologyChange::DeclareExchange {
            id: 0,
            name: m.exchange.clone(),
            kind,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: m.arguments.clone(),
        };
        shard.change_topology(change).await?;
    }
    if !m.nowait {
        conn.send_method(channel, &Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
    }
    Ok(())
}

async fn exchange_bind(
    shard: &Shard,
    source: &Bytes,
    destination: &Bytes,
    routing_key: &Bytes,
    arguments: &crate::protocol::FieldTable,
    bind: bool,
) -> Result<(), Fail> {
    if is_default_exchange(source) || is_default_exchange(destination) {
        return Err(Fail::Soft(default_exchange_refused()));
    }
    let dest = shard
        .topology
        .borrow()
        .exchange(destination)
        .map(|ex| (ex.id, ex.durable));
    let Some((dest, dest_durable)) = dest else {
        return if bind {
            Err(Fail::Soft(no_exchange(destination)))
        } else {
            Ok(())
        };
    };
    let change = BindingChange {
        source: source.clone(),
        dest: Dest::Exchange(dest),
        dest_name: destination.clone(),
        dest_durable,
        routing_key: routing_key.clone(),
        arguments: arguments.clone(),
    };
    change_binding(shard, bind, change).await
}

/// Applies a bind or unbind everywhere.
async fn change_binding(shard: &Shard, bind: bool, change: BindingChange) -> Result<(), Fail> {
    let change = if bind {
        TopologyChange::Bind(change)
    } else {
        TopologyChange::Unbind(change)
    };
    shard.change_topology(change).await?;
    Ok(())
}

async fn queue_bind(
    shard: &Shard,
    conn: &Conn,
    queue: &Bytes,
    exchange: &Bytes,
    routing_key: &Bytes,
    arguments: &crate::protocol::FieldTable,
    bind: bool,
) -> Result<(), Fail> {
    if is_default_exchange(exchange) {
        return Err(Fail::Soft(default_exchange_refused()));
    }
    let name = queue;
    let lookup = QueueOp::Declare {
        name: queue.clone(),
        passive: true,
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: crate::protocol::FieldTable::default(),
        owner: conn.cref,
    };
    let (queue, durable) = match shard.request(shard.queue_owner(queue), lookup).await {
        Ok(OpOk::Declared { queue, durable, .. }) => (queue, durable),
        Ok(_) => return Err(internal()),
        Err(e) if !bind && e.code == NOT_FOUND => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if bind && shard.topology.borrow().exchange(exchange).is_none() {
        return Err(Fail::Soft(no_exchange(exchange)));
    }
    let change = BindingChange {
        source: exchange.clone(),
        dest: Dest::Queue(queue),
        dest_name: name.clone(),
        dest_durable: durable,
        routing_key: routing_key.clone(),
        arguments: arguments.clone(),
    };
    change_binding(shard, bind, change).await
}

fn internal() -> Fail {
    Fail::Hard(HardError::new(
        INTERNAL_ERROR,
        "unexpected reply from queue shard",
    ))
}

async fn queue_declare(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    m: &QueueDeclare,
) -> Result<(), Fail> {
    let server_named = m.queue.is_empty();
    let name = if server_named {
        server_named_queue(shard)
    } else {
        if !m.passive && m.queue.starts_with(b"amq.") {
            return Err(Fail::Soft(AmqpError::access_refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                String::from_utf8_lossy(&m.queue)
            ))));
        }
        m.queue.clone()
    };
    if let Some(crate::protocol::FieldValue::LongStr(kind)) = m.arguments.get("x-queue-type") {
        if !matches!(&kind[..], b"classic" | b"quorum" | b"stream") {
            return Err(Fail::Soft(AmqpError::precondition(format!(
                "invalid arg 'x-queue-type' for queue '{}' in vhost '/': unsupported queue type '{}'",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(kind)
            ))));
        }
    }
    let op = QueueOp::Declare {
        name: name.clone(),
        passive: m.passive,
        durable: m.durable,
        exclusive: m.exclusive,
        auto_delete: m.auto_delete,
        arguments: m.arguments.clone(),
        owner: conn.cref,
    };
    let OpOk::Declared {
        name,
        message_count,
        consumer_count,
        ..
    } = shard.request(shard.queue_owner(&name), op).await?
    else {
        return Err(internal());
    };
    with_channel(conn, channel, |ch| ch.last_queue = name.clone());
    if !m.nowait {
        conn.send_method(
            channel,
            &Method::QueueDeclareOk(QueueDeclareOk {
                queue: name,
                message_count,
                consumer_count,
            }),
        );
    }
    Ok(())
}

fn take_tx(conn: &Conn, channel: u16) -> Result<Tx, AmqpError> {
    with_channel(conn, channel, |ch| ch.tx.take())
        .flatten()
        .ok_or_else(|| AmqpError::precondition("channel is not transactional".to_string()))
}

/// Consuming from `amq.rabbitmq.reply-to`: no queue, replies come straight to this channel.
fn reply_to_consume(conn: &Conn, channel: u16, m: &BasicConsume) -> Result<(), Fail> {
    if !m.no_ack {
        return Err(Fail::Soft(AmqpError::precondition(
            "reply consumer cannot acknowledge".to_string(),
        )));
    }
    let tag = if m.consumer_tag.is_empty() {
        Bytes::from(format!("amq.ctag-{}", random_suffix()))
    } else {
        m.consumer_tag.clone()
    };
    with_channel(conn, channel, |ch| {
        if ch.reply_consumer.is_some() {
            return Err(AmqpError::precondition(
                "reply consumer already set".to_string(),
            ));
        }
        ch.reply_consumer = Some(tag.clone());
        Ok(())
    })
    .unwrap_or(Ok(()))?;
    if !m.nowait {
        conn.send_method(
            channel,
            &Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag }),
        );
    }
    Ok(())
}

async fn basic_get(shard: &Shard, conn: &Conn, channel: u16, m: &BasicGet) -> Result<(), Fail> {
    let name = queue_name_or_last(conn, channel, &m.queue)?;
    let op = QueueOp::Get {
        name: name.clone(),
        no_ack: m.no_ack,
        conn: conn.cref,
        channel,
    };
    let OpOk::Got(got) = shard.request(shard.queue_owner(&name), op).await? else {
        return Err(internal());
    };
    let Some(got) = got else {
        conn.send_method(
            channel,
            &Method::BasicGetEmpty(BasicGetEmpty {
                cluster_id: Bytes::new(),
            }),
        );
        return Ok(());
    };
    let tag = with_channel(conn, channel, |ch| {
        (!ch.closing).then(|| ch.track(got.queue, got.seq, m.no_ack))
    })
    .flatten();
    let Some(delivery_tag) = tag else {
        if !m.no_ack {
            let mut seqs = SmallVec::new();
            seqs.push(got.seq);
            let queue = got.queue;
            shard.send(
                queue.shard as usize,
                ShardMsg::Settle {
                    queue,
                    kind: SettleKind::Requeue,
                    seqs,
                },
            );
        }
        return Ok(());
    };
    let method = Method::BasicGetOk(BasicGetOk {
        delivery_tag,
        redelivered: got.redelivered,
        exchange: got.msg.exchange.clone(),
        routing_key: got.msg.routing_key.clone(),
        message_count: got.message_count,
    });
    conn.write_content(channel, &method, &got.msg);
    Ok(())
}

async fn basic_consume(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    m: &BasicConsume,
) -> Result<(), Fail> {
    let name = queue_name_or_last(conn, channel, &m.queue)?;
    let tag = if m.consumer_tag.is_empty() {
        Bytes::from(format!("amq.ctag-{}", random_suffix()))
    } else {
        m.consumer_tag.clone()
    };
    let id = shard.next_consumer_id();
    let limits = with_channel(conn, channel, |ch| {
        if ch.consumers.iter().any(|c| c.tag == tag) {
            return Err(HardError::new(
                NOT_ALLOWED,
                format!(
                    "attempt to reuse consumer tag '{}'",
                    String::from_utf8_lossy(&tag)
                ),
            ));
        }
        ch.consumers.push(ChannelConsumer {
            tag: tag.clone(),
            id,
            queue: None,
        });
        Ok((ch.prefetch_count, ch.channel_prefetch_count))
    });
    let (prefetch_count, channel_prefetch_count) = match limits {
        Some(limits) => limits?,
        None => return Ok(()),
    };
    let spec = ConsumerSpec {
        id,
        conn: conn.cref,
        channel,
        tag: tag.clone(),
        no_ack: m.no_ack,
        exclusive: m.exclusive,
        prefetch_count,
        channel_prefetch_count,
    };
    let result = shard
        .request(shard.queue_owner(&name), QueueOp::Consume { name, spec })
        .await;
    let queue = match result {
        Ok(OpOk::Consuming(queue)) => queue,
        Ok(_) => return Err(internal()),
        Err(e) => {
            with_channel(conn, channel, |ch| ch.remove_consumer_by_tag(&tag));
            return Err(e.into());
        }
    };
    // The channel may have closed while the queue answered: then the consumer goes too.
    let active = with_channel(conn, channel, |ch| {
        if ch.closing {
            return false;
        }
        match ch.consumers.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.queue = Some(queue);
                true
            }
            None => false,
        }
    })
    .unwrap_or(false);
    if !active {
        shard.send(
            queue.shard as usize,
            ShardMsg::Oneway(QueueOp::Cancel {
                queue,
                consumer_id: id,
            }),
        );
        return Ok(());
    }
    if !m.nowait {
        conn.send_method(
            channel,
            &Method::BasicConsumeOk(BasicConsumeOk {
                consumer_tag: tag.clone(),
            }),
        );
    }
    // Deliveries that raced ahead of consume-ok go out now, in order.
    let held: Vec<Delivery> = with_channel(conn, channel, |ch| {
        let (mine, others): (Vec<Delivery>, Vec<Delivery>) =
            ch.held.drain(..).partition(|d| d.consumer_tag == tag);
        ch.held = others;
        mine
    })
    .unwrap_or_default();
    for d in held {
        if let Some((queue, seq)) = conn.deliver(d) {
            let mut seqs = SmallVec::new();
            seqs.push(seq);
            shard.send(
                queue.shard as usize,
                ShardMsg::Settle {
                    queue,
                    kind: SettleKind::Requeue,
                    seqs,
                },
            );
        }
    }
    Ok(())
}

fn settle(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    delivery_tag: u64,
    multiple: bool,
    kind: SettleKind,
) -> Result<(), Fail> {
    let buffered = with_channel(conn, channel, |ch| match ch.tx.as_mut() {
        Some(tx) => {
            tx.settles.push((delivery_tag, multiple, kind));
            true
        }
        None => false,
    });
    if buffered == Some(true) {
        return Ok(());
    }
    settle_now(shard, conn, channel, delivery_tag, multiple, kind)
}

fn settle_now(
    shard: &Shard,
    conn: &Conn,
    channel: u16,
    delivery_tag: u64,
    multiple: bool,
    kind: SettleKind,
) -> Result<(), Fail> {
    let groups = with_channel(conn, channel, |ch| ch.take_unacked(delivery_tag, multiple))
        .unwrap_or(Ok(SmallVec::new()))?;
    for (queue, seqs) in groups {
        shard.send(queue.shard as usize, ShardMsg::Settle { queue, kind, seqs });
    }
    Ok(())
}

/// basic.recover: every unacked delivery of the channel goes back to its queue.
fn recover(shard: &Shard, conn: &Conn, channel: u16, requeue: bool) -> Result<(), Fail> {
    if !requeue {
        return Err(Fail::Hard(HardError::new(NOT_IMPLEMENTED, "requeue=false")));
    }
    settle_now(shard, conn, channel, 0, true, SettleKind::Requeue)
}

/// A content header or body frame on a non-zero channel.
pub fn content(shard: &Shard, conn: &Conn, frame: Frame) -> Result<(), HardError> {
    let max_message_size = shard.config.max_message_size_bytes;
    let mut state = conn.state.borrow_mut();
    let Some(ch) = state.channels.get_mut(&frame.channel) else {
        return Err(HardError::new(CHANNEL_ERROR, "expected 'channel.open'"));
    };
    if ch.closing {
        return Ok(());
    }
    let Some(incoming) = ch.incoming.as_mut() else {
        return Err(HardError::new(
            UNEXPECTED_FRAME,
            if frame.kind == FRAME_HEADER {
                "unexpected content header frame: no basic.publish before it"
            } else {
                "unexpected content body frame: no basic.publish and content header before it"
            },
        ));
    };
    if frame.kind == FRAME_HEADER {
        if incoming.header.is_some() {
            return Err(HardError::new(
                UNEXPECTED_FRAME,
                "expected content body, got content header instead",
            ));
        }
        let header = ContentHeader::decode(frame.payload).map_err(super::method_error)?;
        if header.class_id != CLASS_BASIC {
            return Err(HardError::new(
                UNEXPECTED_FRAME,
                format!(
                    "expected content header for class 60, got class {}",
                    header.class_id
                ),
            ));
        }
        if header.body_size > max_message_size {
            let size = header.body_size;
            drop(state);
            close_channel(
                shard,
                conn,
                frame.channel,
                AmqpError::precondition(format!(
                    "message size {size} is larger than configured max size {max_message_size}"
                )),
                &Method::BasicPublish(BasicPublish::default()),
            );
            return Ok(());
        }
        incoming.header = Some((header.body_size, header.properties_raw));
        if header.body_size > 0 {
            return Ok(());
        }
    } else {
        let Some((body_size, _)) = incoming.header else {
            return Err(HardError::new(
                UNEXPECTED_FRAME,
                "expected content header, got content body instead",
            ));
        };
        incoming.received += frame.payload.len() as u64;
        if incoming.received > body_size {
            return Err(HardError::new(
                FRAME_ERROR,
                format!("content body larger than the {body_size} bytes its header declared"),
            ));
        }
        incoming.body = match std::mem::replace(&mut incoming.body, Body::Empty) {
            Body::Empty => Body::One(frame.payload),
            Body::One(first) => {
                let mut all = BytesMut::with_capacity(body_size as usize);
                all.extend_from_slice(&first);
                all.extend_from_slice(&frame.payload);
                Body::Many(all)
            }
            Body::Many(mut all) => {
                all.extend_from_slice(&frame.payload);
                Body::Many(all)
            }
        };
        if incoming.received < body_size {
            return Ok(());
        }
    }
    let Some(incoming) = ch.incoming.take() else {
        return Ok(());
    };
    if let Some(tx) = ch.tx.as_mut() {
        tx.publishes.push(incoming);
        return Ok(());
    }
    drop(state);
    publish(shard, conn, frame.channel, incoming)
        .map_err(|e| HardError::new(e.code, e.text))
        .or_else(|e| {
            if e.code < 500 {
                close_channel(
                    shard,
                    conn,
                    frame.channel,
                    AmqpError::new(e.code, e.text),
                    &publish_method(),
                );
                Ok(())
            } else {
                Err(e)
            }
        })
}

/// A complete message: route it on this shard's replica and hand it to each queue's shard.
/// The default exchange routes by name to whichever shard owns that name.
fn publish(shard: &Shard, conn: &Conn, channel: u16, incoming: Incoming) -> Result<(), AmqpError> {
    let (_, mut properties) = incoming.header.unwrap_or_default();
    let body = match incoming.body {
        Body::Empty => Bytes::new(),
        Body::One(b) => b,
        Body::Many(b) => b.freeze(),
    };
    if has_reply_to(&properties) {
        properties = direct_reply_to_request(conn, channel, properties)?;
    }
    let persistent = BasicProperties::peek_delivery_mode(&properties) == Some(2);
    let msg = Message::new(
        incoming.exchange,
        incoming.routing_key,
        properties,
        body,
        persistent,
    );
    let origin = |confirm| Origin {
        conn: conn.cref,
        channel,
        mandatory: incoming.mandatory,
        confirm,
    };
    if is_default_exchange(&msg.exchange) {
        if let Some(rest) = msg.routing_key.strip_prefix(REPLY_TO_PREFIX) {
            // A reply to a direct reply-to requester: straight to its channel, no queue.
            if let Some((requester, requester_channel)) = parse_reply_token(shard, rest) {
                let target = requester.shard as usize;
                shard.send(
                    target,
                    ShardMsg::DirectReply {
                        conn: requester,
                        channel: requester_channel,
                        msg,
                    },
                );
            }
            confirm_now(conn, channel);
            return Ok(());
        }
        let confirm = register_confirm(conn, channel, 1);
        let target = shard.queue_owner(&msg.routing_key);
        let queue = QueueTarget::Name(msg.routing_key.clone());
        shard.send(
            target,
            ShardMsg::Enqueue {
                queue,
                msg,
                origin: origin(confirm),
            },
        );
        return Ok(());
    }
    let mut queues: SmallVec<[QueueRef; 8]> = SmallVec::new();
    {
        let topology = shard.topology.borrow();
        // Headers are parsed only when a headers exchange could look at them.
        let headers = if topology.has_headers_bindings() {
            BasicProperties::decode(&msg.properties)
                .ok()
                .and_then(|p| p.headers)
        } else {
            None
        };
        // The exchange was checked at basic.publish; if it went since, nothing matches.
        let _ = topology.route(
            &msg.exchange,
            &msg.routing_key,
            headers.as_ref(),
            &mut queues,
        );
    }
    if queues.is_empty() {
        if incoming.mandatory {
            conn.basic_return(channel, &msg);
        }
        confirm_now(conn, channel);
        return Ok(());
    }
    let confirm = register_confirm(conn, channel, queues.len() as u32);
    let last = queues.len() - 1;
    let mut msg = Some(msg);
    for (i, queue) in queues.into_iter().enumerate() {
        // The last queue takes the message itself; the others get a handle clone.
        let msg = if i == last { msg.take() } else { msg.clone() };
        let Some(msg) = msg else { break };
        let origin = Origin {
            mandatory: false,
            ..origin(confirm)
        };
        shard.send(
            queue.shard as usize,
            ShardMsg::Enqueue {
                queue: QueueTarget::Ref(queue),
                msg,
                origin,
            },
        );
    }
    Ok(())
}

fn publish_method() -> Method {
    Method::BasicPublish(BasicPublish::default())
}

/// In confirm mode, numbers the publish and waits for `targets` queues to confirm it.
fn register_confirm(conn: &Conn, channel: u16, targets: u32) -> Option<u64> {
    with_channel(conn, channel, |ch| {
        ch.confirm.as_mut().map(|c| c.register(targets))
    })
    .flatten()
}

/// A publish that reached no queue is confirmed at once (after its basic.return).
fn confirm_now(conn: &Conn, channel: u16) {
    if let Some(seq) = register_confirm(conn, channel, 0) {
        conn.confirmed(channel, seq, true);
    }
}

pub const REPLY_TO_QUEUE: &[u8] = b"amq.rabbitmq.reply-to";
const REPLY_TO_PREFIX: &[u8] = b"amq.rabbitmq.reply-to.";

/// Property flag bit of reply-to in the first flags word.
fn has_reply_to(properties: &[u8]) -> bool {
    properties.len() >= 2 && (u16::from_be_bytes([properties[0], properties[1]]) & (1 << 9)) != 0
}

/// A request with `reply_to = amq.rabbitmq.reply-to` gets a reply address naming this
/// connection and channel, which must be consuming from the pseudo-queue.
fn direct_reply_to_request(conn: &Conn, channel: u16, raw: Bytes) -> Result<Bytes, AmqpError> {
    let Ok(mut props) = BasicProperties::decode(&raw) else {
        return Ok(raw);
    };
    if props.reply_to.as_deref() != Some(REPLY_TO_QUEUE) {
        return Ok(raw);
    }
    let consuming = with_channel(conn, channel, |ch| ch.reply_consumer.is_some()).unwrap_or(false);
    if !consuming {
        return Err(AmqpError::precondition(
            "fast reply consumer does not exist".to_string(),
        ));
    }
    let c = conn.cref;
    props.reply_to = Some(Bytes::from(format!(
        "amq.rabbitmq.reply-to.{:x}.{:x}.{:x}.{:x}",
        c.shard, c.key, c.serial, channel
    )));
    let mut out = BytesMut::with_capacity(raw.len() + 48);
    props.encode(&mut out);
    Ok(out.freeze())
}

fn parse_reply_token(shard: &Shard, token: &[u8]) -> Option<(crate::broker::ConnRef, u16)> {
    let text = std::str::from_utf8(token).ok()?;
    let mut parts = text.split('.').map(|p| u64::from_str_radix(p, 16).ok());
    let (shard_id, key, serial, channel) = (
        parts.next()??,
        parts.next()??,
        parts.next()??,
        parts.next()??,
    );
    if parts.next().is_some() || shard_id as usize >= shard.count {
        return None;
    }
    let conn = crate::broker::ConnRef {
        shard: u16::try_from(shard_id).ok()?,
        key: u32::try_from(key).ok()?,
        serial: u32::try_from(serial).ok()?,
    };
    Some((conn, u16::try_from(channel).ok()?))
}

/// `amq.gen-…` names that hash to this shard, so server-named queues stay local.
fn server_named_queue(shard: &Shard) -> Bytes {
    loop {
        let name = format!("amq.gen-{}", random_suffix());
        if shard.queue_owner(name.as_bytes()) == shard.id {
            return Bytes::from(name);
        }
    }
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
