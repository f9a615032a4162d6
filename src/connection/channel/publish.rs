//! basic.publish and its content: the method opens an incoming message, the content header
//! gives its size and properties, body frames fill it; the complete message is routed on
//! this shard's replica ([`crate::broker::publish`]) and handed to each queue's shard.

use crate::stats::{self, Counter};
use bytes::{Bytes, BytesMut};

use super::{close_channel, confirms, reply_to, Channel, Ctx, Fail};
use crate::broker::permissions::Access;
use crate::broker::publish::{fan_out, is_default_exchange, route as route_message, Route};
use crate::broker::topology::{internal_exchange, no_exchange};
use crate::broker::{AmqpError, Origin, ShardMsg};
use crate::connection::error::method_error;
use crate::connection::traced;
use crate::connection::{Conn, HardError};
use crate::message::Message;
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::{BasicProperties, ContentHeader, Frame, Method};
use crate::routing::ExchangeKind;
use crate::shard::Shard;

enum Body {
    Empty,
    /// One body frame: the frame's own bytes, no copy.
    One(Bytes),
    /// Several frames, gathered into one buffer that grows with the bytes that arrive (never
    /// past the size the header declared, itself bounded by max_message_size).
    Many(BytesMut),
}

/// A message being assembled from its frames.
pub struct Incoming {
    exchange: Bytes,
    routing_key: Bytes,
    mandatory: bool,
    /// (body size, raw properties) once the content header arrived.
    header: Option<(u64, Bytes)>,
    body: Body,
    received: u64,
}

impl Incoming {
    /// The content header arrived: body frames are due.
    pub fn awaits_body(&self) -> bool {
        self.header.is_some()
    }
}

/// basic.publish: checks the exchange and waits for the content.
pub fn publish(ctx: &Ctx, m: &BasicPublish) -> Result<(), Fail> {
    ctx.conn.published.set(true);
    if m.immediate {
        return Err(Fail::Hard(HardError::new(
            NOT_IMPLEMENTED,
            "immediate=true",
        )));
    }
    if !ctx.may_write_anywhere() {
        ctx.permit(Access::Write, "exchange", &m.exchange)?;
    }
    if !is_default_exchange(&m.exchange) {
        let topology = ctx.shard.topology.borrow();
        let state = ctx.conn.state.borrow();
        let vhost = &state.vhost;
        match topology.exchange(vhost, &m.exchange) {
            None => return Err(Fail::Soft(no_exchange(vhost, &m.exchange))),
            Some(ex) if ex.internal => {
                return Err(Fail::Soft(internal_exchange(vhost, &m.exchange)));
            }
            Some(ex) if ex.kind == ExchangeKind::Topic => {
                drop((topology, state));
                ctx.permit_topic(Access::Write, &m.exchange, &m.routing_key)?;
            }
            Some(_) => {}
        }
    }
    ctx.with(|ch| {
        ch.incoming = Some(Incoming {
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
            mandatory: m.mandatory,
            header: None,
            body: Body::Empty,
            received: 0,
        });
    });
    Ok(())
}

/// What a content frame did to the incoming message.
enum Step {
    /// More frames to come (or the frame was ignored).
    Pending,
    /// The message is complete.
    Complete(Incoming),
    /// A soft error: the channel closes with it.
    Refused(AmqpError),
}

/// A content header or body frame on a non-zero channel.
pub fn content(shard: &Shard, conn: &Conn, frame: Frame) -> Result<(), HardError> {
    let channel = frame.channel;
    let step = {
        let mut state = conn.state.borrow_mut();
        let Some(ch) = state.channels.get_mut(&channel) else {
            return Err(HardError::new(CHANNEL_ERROR, "expected 'channel.open'"));
        };
        if ch.closing {
            return Ok(());
        }
        let step = assemble(ch, frame, shard.config.max_message_size_bytes)?;
        match step {
            Step::Complete(incoming) if ch.tx.is_some() => {
                if let Some(tx) = ch.tx.as_mut() {
                    tx.publishes.push(incoming);
                }
                Step::Pending
            }
            step => step,
        }
    };
    let refused = match step {
        Step::Pending => return Ok(()),
        Step::Refused(err) => err,
        Step::Complete(incoming) => {
            let ctx = Ctx {
                shard,
                conn,
                channel,
            };
            match route(&ctx, incoming) {
                Ok(()) => return Ok(()),
                Err(e) if e.code >= 500 => return Err(HardError::new(e.code, e.text)),
                Err(e) => e,
            }
        }
    };
    let method = Method::BasicPublish(BasicPublish::default());
    close_channel(shard, conn, channel, refused, &method);
    Ok(())
}

/// Adds a content frame to the channel's incoming message.
fn assemble(ch: &mut Channel, frame: Frame, max_message_size: u64) -> Result<Step, HardError> {
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
    let complete = if frame.kind == FRAME_HEADER {
        match header(incoming, frame, max_message_size)? {
            Some(refused) => return Ok(Step::Refused(refused)),
            None => incoming.header.as_ref().is_some_and(|(size, _)| *size == 0),
        }
    } else {
        body(incoming, frame)?
    };
    Ok(match (complete, ch.incoming.take()) {
        (true, Some(incoming)) => Step::Complete(incoming),
        (_, taken) => {
            ch.incoming = taken;
            Step::Pending
        }
    })
}

/// The content header: body size and raw properties. Some(refusal) when the body is too big.
fn header(
    incoming: &mut Incoming,
    frame: Frame,
    max_message_size: u64,
) -> Result<Option<AmqpError>, HardError> {
    if incoming.header.is_some() {
        return Err(HardError::new(
            UNEXPECTED_FRAME,
            "expected content body, got content header instead",
        ));
    }
    // The class is checked before the rest is decoded: RabbitMQ refuses another class as an
    // unexpected frame of the publish, whatever follows it.
    if let Some(class) = frame.payload.get(..2) {
        let class_id = u16::from_be_bytes([class[0], class[1]]);
        if class_id != CLASS_BASIC {
            return Err(HardError::new(
                UNEXPECTED_FRAME,
                format!(
                    "expected content header for class 60, got one for class {class_id} instead"
                ),
            )
            .on(&Method::BasicPublish(BasicPublish::default())));
        }
    }
    let header = ContentHeader::decode(frame.payload).map_err(method_error)?;
    if header.body_size > max_message_size {
        let size = header.body_size;
        return Ok(Some(AmqpError::precondition(format!(
            "message size {size} is larger than configured max size {max_message_size}"
        ))));
    }
    incoming.header = Some((header.body_size, header.properties_raw));
    Ok(None)
}

/// A body frame; true once the whole body arrived.
fn body(incoming: &mut Incoming, frame: Frame) -> Result<bool, HardError> {
    let Some((body_size, _)) = incoming.header else {
        return Err(HardError::new(
            UNEXPECTED_FRAME,
            "expected content header, got content body instead",
        ));
    };
    incoming.received += frame.payload.len() as u64;
    if incoming.received > body_size {
        // Like RabbitMQ, a body past the declared size leaves the message incomplete for
        // good: the next method on the channel is the unexpected frame. Nothing is kept.
        incoming.body = Body::Empty;
        return Ok(false);
    }
    incoming.body = match std::mem::replace(&mut incoming.body, Body::Empty) {
        Body::Empty => Body::One(frame.payload),
        Body::One(first) => {
            // Sized by what arrived, not by what the header claims: a peer that announces
            // 128 MiB on every channel and sends a few bytes gets a few bytes allocated.
            let arrived = first.len() + frame.payload.len();
            let mut all =
                BytesMut::with_capacity(arrived.saturating_mul(2).min(body_size as usize));
            all.extend_from_slice(&first);
            all.extend_from_slice(&frame.payload);
            Body::Many(all)
        }
        Body::Many(mut all) => {
            all.extend_from_slice(&frame.payload);
            Body::Many(all)
        }
    };
    Ok(incoming.received == body_size)
}

/// Validated user-id: a message may only name the connection's own user, unless the user is
/// an impersonator (RabbitMQ's rule and wording).
fn check_user_id(ctx: &Ctx, properties: &[u8]) -> Result<(), AmqpError> {
    let Ok(decoded) = BasicProperties::decode(properties) else {
        return Ok(());
    };
    let Some(claimed) = decoded.user_id else {
        return Ok(());
    };
    let state = ctx.conn.state.borrow();
    if state.impersonator || claimed.as_ref() == state.user.as_bytes() {
        return Ok(());
    }
    Err(AmqpError::precondition(format!(
        "user_id property set to '{}' but authenticated user was '{}'",
        String::from_utf8_lossy(&claimed),
        state.user
    )))
}

/// A complete message: route it on this shard's replica and hand it to each queue's shard.
pub fn route(ctx: &Ctx, incoming: Incoming) -> Result<(), AmqpError> {
    stats::add(Counter::Publish, 1);
    let (_, mut properties) = incoming.header.unwrap_or_default();
    let body = match incoming.body {
        Body::Empty => Bytes::new(),
        Body::One(b) => b,
        Body::Many(b) => b.freeze(),
    };
    if BasicProperties::has_user_id(&properties) {
        check_user_id(ctx, &properties)?;
    }
    if reply_to::has_reply_to(&properties) {
        properties = reply_to::rewrite_request(ctx, properties)?;
    }
    let persistent = BasicProperties::peek_delivery_mode(&properties) == Some(2);
    let msg = Message::new(
        incoming.exchange,
        incoming.routing_key,
        properties,
        body,
        persistent,
    );
    if is_default_exchange(&msg.exchange) {
        let published = &ctx.conn.default_published;
        published.set(published.get() + 1);
        if let Some(token) = msg.routing_key.strip_prefix(reply_to::REPLY_TO_PREFIX) {
            // A reply to a direct reply-to requester: straight to its channel, no queue.
            if crate::trace::on() {
                // A direct reply goes to a channel, not to a queue.
                traced::published(ctx.conn, ctx.channel, &ctx.vhost(), &msg, 0);
            }
            if let Some(to) = reply_to::parse_token(ctx.shard.count, token) {
                let reply = ShardMsg::DirectReply {
                    conn: to.conn,
                    channel: to.channel,
                    secret: to.secret,
                    msg,
                };
                ctx.shard.send(to.conn.shard as usize, reply);
            }
            confirms::confirm_now(ctx);
            return Ok(());
        }
    }
    let vhost = ctx.vhost();
    let route = route_message(&ctx.shard.topology.borrow(), ctx.shard.count, &vhost, &msg);
    if crate::trace::on() {
        traced::published(ctx.conn, ctx.channel, &vhost, &msg, route.targets());
    }
    if let Route::Queues(queues) = &route {
        if queues.is_empty() {
            if incoming.mandatory {
                use crate::shard::Client;
                stats::add(Counter::ReturnUnroutable, 1);
                ctx.conn.basic_return(ctx.channel, &msg);
            } else {
                stats::add(Counter::DropUnroutable, 1);
            }
            confirms::confirm_now(ctx);
            return Ok(());
        }
    }
    {
        let mut credit = ctx.conn.credit.borrow_mut();
        for key in route.credit_keys() {
            credit.spend(key);
        }
    }
    let origin = Origin {
        conn: ctx.conn.cref,
        channel: ctx.channel,
        mandatory: incoming.mandatory,
        confirm: confirms::register(ctx, route.targets()),
        dead_letter: false,
    };
    let mut out = ctx.shard.take_outbox();
    fan_out(route, &vhost, msg, origin, &mut out);
    ctx.shard.send_all(out);
    Ok(())
}
