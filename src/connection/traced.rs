//! This connection's publishes and deliveries as trace events ([`crate::trace`]). Every
//! caller checks `trace::on()` first, so none of this runs while nobody traces; it is kept
//! out of line so that the message path stays as it was.

use bytes::Bytes;

use super::Conn;
use crate::message::Message;
use crate::trace::{self, Deliver, Event, Party, Publish};

/// An owned copy: a short field is often a slice of the read buffer, which a queued event
/// must not keep alive.
fn copy(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

impl Conn {
    fn party(&self, channel: u16) -> Party {
        let state = self.state.borrow();
        Party {
            peer: self.peer,
            client_name: state.client.connection_name().map(str::to_string),
            user: state.user.clone(),
            channel,
        }
    }
}

/// A message `channel` routed to `routed_queues` queues of `vhost`.
#[cold]
#[inline(never)]
pub fn published(conn: &Conn, channel: u16, vhost: &Bytes, msg: &Message, routed_queues: u32) {
    trace::emit(vhost, || {
        Event::Publish(Box::new(Publish {
            vhost: copy(vhost),
            exchange: copy(&msg.exchange),
            routing_key: copy(&msg.routing_key),
            properties: copy(&msg.properties),
            body_bytes: msg.body.len() as u64,
            routed_queues,
            by: conn.party(channel),
        }))
    });
}

/// A message on its way to a consumer (`consumer_tag`) or to basic.get (None).
pub struct Delivered<'a> {
    pub channel: u16,
    pub queue: &'a [u8],
    pub consumer_tag: Option<&'a [u8]>,
    pub redelivered: bool,
    pub msg: &'a Message,
}

#[cold]
#[inline(never)]
pub fn delivered(conn: &Conn, d: &Delivered) {
    let vhost = conn.state.borrow().vhost.clone();
    trace::emit(&vhost, || {
        Event::Deliver(Box::new(Deliver {
            vhost: copy(&vhost),
            queue: copy(d.queue),
            consumer_tag: d.consumer_tag.map(copy),
            redelivered: d.redelivered,
            exchange: copy(&d.msg.exchange),
            routing_key: copy(&d.msg.routing_key),
            properties: copy(&d.msg.properties),
            body_bytes: d.msg.body.len() as u64,
            to: conn.party(d.channel),
        }))
    });
}

/// A delivery to consumer `tag` of `channel`: traced with the queue the consumer reads.
#[cold]
#[inline(never)]
pub fn delivered_to_consumer(
    conn: &Conn,
    channel: u16,
    tag: &Bytes,
    redelivered: bool,
    msg: &Message,
) {
    let queue = conn
        .state
        .borrow()
        .channels
        .get(&channel)
        .and_then(|ch| ch.consumer_queue(tag))
        .unwrap_or_default();
    let d = Delivered {
        channel,
        queue: &queue,
        consumer_tag: Some(tag),
        redelivered,
        msg,
    };
    delivered(conn, &d);
}
