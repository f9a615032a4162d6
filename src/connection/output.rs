//! What arrives for a connection from queues and other shards (deliveries, confirms,
//! returns, server-sent cancels, direct replies, alarms), encoded into its output buffer. The
//! writer task sends the buffer with one write per turn.

use bytes::Bytes;

use super::{Conn, Credit, HardError, Phase};
use crate::broker::inspect::ConnectionInfo;
use crate::broker::{CreditKey, Delivery};
use crate::ids::{ConnRef, QueueRef};
use crate::message::Message;
use crate::protocol::constants::{CONNECTION_FORCED, NO_ROUTE};
use crate::protocol::frame::{
    encode_body, encode_deliver, encode_header, encode_method, DeliverFields,
};
use crate::protocol::method::*;
use crate::protocol::Method;
use crate::shard::Client;
use crate::stats::{self, Counter};

impl Conn {
    /// connection.blocked, once per alarm, to a client that asked for it.
    pub(super) fn tell_blocked(&self, state: u8) {
        let wanted = self.state.borrow().capabilities.connection_blocked;
        if wanted && !self.told_blocked.replace(true) {
            let reason = Bytes::from_static(crate::alarm::Alarms::reason(state).as_bytes());
            self.send_method(0, &Method::ConnectionBlocked(ConnectionBlocked { reason }));
        }
    }

    /// One more delivery of the consumer in this turn's output: its queue may send another
    /// once the writer wrote it.
    fn owe_credit(&self, queue: QueueRef, consumer_id: u64) {
        let mut credits = self.credits.borrow_mut();
        let owed = credits
            .iter_mut()
            .find(|c| c.consumer_id == consumer_id && c.queue == queue);
        match owed {
            Some(c) => c.n += 1,
            None => credits.push(Credit {
                queue,
                consumer_id,
                n: 1,
            }),
        }
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

    /// Encodes the confirms that became due since the last write.
    pub(super) fn emit_confirms(&self) {
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
}

impl Client for Conn {
    fn cref(&self) -> ConnRef {
        self.cref
    }

    fn info(&self) -> Option<ConnectionInfo> {
        let state = self.state.borrow();
        let phase = match state.phase {
            Phase::Header | Phase::StartOk => "starting",
            Phase::TuneOk => "tuning",
            Phase::Open => "opening",
            Phase::Opened => "running",
            Phase::Closing | Phase::Closed => "closing",
        };
        Some(ConnectionInfo {
            name: String::new(),
            user: state.user.clone(),
            vhost: String::from_utf8_lossy(&state.vhost).into_owned(),
            peer: self.peer,
            state: phase,
            channels: state.channels.len(),
            client_properties: state.client_properties.clone(),
            connected_at_ms: state.connected_at_ms,
            frame_max: state.frame_max,
            channel_max: state.channel_max,
            heartbeat_secs: state.heartbeat_secs,
            channel_details: channel_infos(&state.channels),
            io_counts: self.io_counts.get(),
            default_published: self.default_published.get(),
            auth_mechanism: state.mechanism.clone(),
            tls: self.tls,
            idle_ms: self
                .last_read
                .get()
                .max(self.last_write.get())
                .elapsed()
                .as_millis() as u64,
        })
    }

    fn force_close(&self, explanation: &str) {
        self.hard_close(HardError::new(CONNECTION_FORCED, explanation));
    }

    fn publish_credit(&self, key: CreditKey, n: u32) {
        if self.credit.borrow_mut().grant(key, n) {
            self.credit_back.notify_one();
        }
    }

    /// A publishing connection is told, if its client asked for connection.blocked.
    fn alarm(&self, state: u8) {
        if state != 0 {
            if self.published.get() {
                self.tell_blocked(state);
            }
        } else if self.told_blocked.replace(false) {
            self.send_method(0, &Method::ConnectionUnblocked(ConnectionUnblocked {}));
        }
    }

    fn deliver(&self, d: Delivery) -> Option<(QueueRef, u64)> {
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
        let delivery_tag = ch.track_delivery(&d);
        drop(state);
        let counter = if d.no_ack {
            Counter::DeliverNoAck
        } else {
            Counter::Deliver
        };
        stats::add(counter, 1);
        stats::add(Counter::Redeliver, u64::from(d.redelivered));
        self.owe_credit(d.queue, d.consumer_id);
        let fields = DeliverFields {
            consumer_tag: &d.consumer_tag,
            delivery_tag,
            redelivered: d.redelivered,
            exchange: &d.msg.exchange,
            routing_key: &d.msg.routing_key,
        };
        let frame_max = self.frame_max();
        let mut out = self.out.borrow_mut();
        encode_deliver(&mut out, d.channel, &fields);
        encode_header(
            &mut out,
            d.channel,
            d.msg.body.len() as u64,
            &d.msg.properties,
        );
        encode_body(&mut out, d.channel, &d.msg.body, frame_max);
        drop(out);
        self.writable.notify_one();
        if crate::trace::on() {
            let (tag, msg) = (&d.consumer_tag, &d.msg);
            super::traced::delivered_to_consumer(self, d.channel, tag, d.redelivered, msg);
        }
        None
    }

    /// Told only if the client understands basic.cancel.
    fn consumer_cancelled(&self, channel: u16, tag: &Bytes) {
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
            let cancel = BasicCancel {
                consumer_tag: tag.clone(),
                nowait: true,
            };
            self.send_method(channel, &Method::BasicCancel(cancel));
        }
    }

    fn basic_return(&self, channel: u16, msg: &Message) {
        let open = matches!(self.state.borrow().channels.get(&channel), Some(ch) if !ch.closing);
        if !open {
            return;
        }
        let method = Method::BasicReturn(BasicReturn {
            reply_code: NO_ROUTE,
            reply_text: Bytes::from_static(b"NO_ROUTE"),
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
        });
        self.write_content(channel, &method, msg);
    }

    /// The acks themselves go out when the writer next runs (see `emit_confirms`), so that
    /// confirms arriving together leave as one `multiple` ack, as RabbitMQ's do.
    fn confirmed(&self, channel: u16, seq: u64, ok: bool) {
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

    fn direct_reply(&self, channel: u16, secret: u128, msg: &Message) {
        let (tag, delivery_tag) = {
            let mut state = self.state.borrow_mut();
            let Some(ch) = state.channels.get_mut(&channel) else {
                return;
            };
            // A reply address names the channel and its secret: a guessed one goes nowhere.
            let Some(tag) = ch.reply_consumer(secret).cloned() else {
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
}

/// Channels in number order.
fn channel_infos(
    channels: &rustc_hash::FxHashMap<u16, super::channel::Channel>,
) -> Vec<crate::broker::inspect::ChannelInfo> {
    let mut infos: Vec<_> = channels.iter().map(|(n, ch)| ch.info(*n)).collect();
    infos.sort_by_key(|c| c.number);
    infos
}
