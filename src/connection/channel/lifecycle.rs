//! channel.open / close / flow and access.request, and which methods a channel accepts in
//! its current state.

use crate::stats::{self, Counter};
use bytes::Bytes;

use super::{Channel, Ctx, Fail};
use crate::connection::{tracking, Conn, HardError};
use crate::protocol::constants::*;
use crate::protocol::method::*;
use crate::protocol::Method;
use crate::shard::Shard;
use crate::store::record::LimitScope;

/// Decides whether `method` runs on `channel` now: opens a channel on channel.open, drops
/// what a closing channel receives (answering its close), and refuses methods outside a
/// channel's state. Ok(true): run the method.
pub fn admit(shard: &Shard, conn: &Conn, channel: u16, method: &Method) -> Result<bool, HardError> {
    let mut state = conn.state.borrow_mut();
    let open = state.channels.len();
    let channel_max = state.channel_max;
    match state.channels.get_mut(&channel) {
        None => {
            let Method::ChannelOpen(_) = method else {
                return Err(HardError::new(CHANNEL_ERROR, "expected 'channel.open'").on(method));
            };
            // Like RabbitMQ, channel_max limits how many channels are open at once, not the
            // channel number.
            if open >= usize::from(channel_max) {
                let text = format!(
                    "number of channels opened ({open}) has reached the negotiated channel_max ({channel_max})"
                );
                return Err(HardError::new(NOT_ALLOWED, text).on(method));
            }
            let limits = shard.topology.borrow();
            let max = limits
                .limits()
                .get(LimitScope::User, state.user.as_bytes(), "max-channels");
            drop(limits);
            if !tracking::open_channel(&state.user, max) {
                let text = format!(
                    "number of channels opened for user '{}' has reached the maximum allowed user limit of ({})",
                    state.user,
                    max.unwrap_or_default()
                );
                return Err(HardError::new(NOT_ALLOWED, text).on(method));
            }
            state.channels.insert(channel, Channel::new());
            stats::add(Counter::ChannelCreated, 1);
            drop(state);
            let ok = ChannelOpenOk {
                channel_id: Bytes::new(),
            };
            conn.send_method(channel, &Method::ChannelOpenOk(ok));
            Ok(false)
        }
        Some(ch) if ch.closing => {
            // After we sent channel.close, everything but close / close-ok is dropped.
            match method {
                Method::ChannelCloseOk(_) => {
                    state.channels.remove(&channel);
                    tracking::close_channel(&state.user);
                    stats::add(Counter::ChannelClosed, 1);
                }
                Method::ChannelClose(_) => {
                    state.channels.remove(&channel);
                    tracking::close_channel(&state.user);
                    stats::add(Counter::ChannelClosed, 1);
                    drop(state);
                    conn.send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                }
                _ => {}
            }
            Ok(false)
        }
        // RabbitMQ names the publish whose content was cut short, not the method.
        Some(Channel {
            incoming: Some(incoming),
            ..
        }) => {
            let text = if incoming.awaits_body() {
                "expected content body, got non content body frame instead"
            } else {
                "expected content header for class 60, got non content header frame instead"
            };
            let publish = Method::BasicPublish(BasicPublish::default());
            Err(HardError::new(UNEXPECTED_FRAME, text).on(&publish))
        }
        Some(_) if matches!(method, Method::ChannelOpen(_)) => {
            Err(HardError::new(CHANNEL_ERROR, "second 'channel.open' seen").on(method))
        }
        Some(_) => Ok(true),
    }
}

pub fn close(ctx: &Ctx) -> Result<(), Fail> {
    let ch = {
        let mut state = ctx.conn.state.borrow_mut();
        let ch = state.channels.remove(&ctx.channel);
        if ch.is_some() {
            tracking::close_channel(&state.user);
            stats::add(Counter::ChannelClosed, 1);
        }
        ch
    };
    if let Some(mut ch) = ch {
        ch.release(ctx.shard);
    }
    ctx.send(Method::ChannelCloseOk(ChannelCloseOk {}));
    Ok(())
}

/// channel.flow: RabbitMQ does not let a client pause its deliveries this way (it refuses
/// active=false with 540 NOT_IMPLEMENTED); active=true is a no-op.
pub fn flow(ctx: &Ctx, m: &ChannelFlow) -> Result<(), Fail> {
    if !m.active {
        return Err(Fail::Hard(HardError::new(NOT_IMPLEMENTED, "active=false")));
    }
    ctx.send(Method::ChannelFlowOk(ChannelFlowOk { active: true }));
    Ok(())
}

pub fn access_request(ctx: &Ctx) -> Result<(), Fail> {
    ctx.send(Method::AccessRequestOk(AccessRequestOk { ticket: 1 }));
    Ok(())
}
