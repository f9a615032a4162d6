//! Direct reply-to: a requester consumes from the pseudo-queue `amq.rabbitmq.reply-to`
//! (no-ack), its requests' `reply_to` is rewritten to an address naming its connection and
//! channel, and a reply published to that address goes straight to the requester, with no
//! queue in between.

use bytes::{Bytes, BytesMut};

use super::consume::consumer_tag;
use super::{Ctx, Fail};
use crate::broker::AmqpError;
use crate::ids::ConnRef;
use crate::protocol::method::*;
use crate::protocol::{BasicProperties, Method};

pub const REPLY_TO_QUEUE: &[u8] = b"amq.rabbitmq.reply-to";
pub const REPLY_TO_PREFIX: &[u8] = b"amq.rabbitmq.reply-to.";

/// Consuming from `amq.rabbitmq.reply-to`: no queue, replies come straight to this channel.
pub fn consume(ctx: &Ctx, m: &BasicConsume) -> Result<(), Fail> {
    if !m.no_ack {
        return Err(Fail::Soft(AmqpError::precondition(
            "reply consumer cannot acknowledge".to_string(),
        )));
    }
    let tag = consumer_tag(&m.consumer_tag);
    ctx.with(|ch| {
        if ch.reply_consumer.is_some() {
            return Err(AmqpError::precondition(
                "reply consumer already set".to_string(),
            ));
        }
        ch.reply_consumer = Some(tag.clone());
        ch.reply_secret = random_secret();
        Ok(())
    })
    .unwrap_or(Ok(()))?;
    if !m.nowait {
        ctx.send(Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag }));
    }
    Ok(())
}

/// Property flag bit of reply-to in the first flags word.
pub fn has_reply_to(properties: &[u8]) -> bool {
    properties.len() >= 2 && (u16::from_be_bytes([properties[0], properties[1]]) & (1 << 9)) != 0
}

/// A request with `reply_to = amq.rabbitmq.reply-to` gets a reply address naming this
/// connection and channel, which must be consuming from the pseudo-queue.
pub fn rewrite_request(ctx: &Ctx, raw: Bytes) -> Result<Bytes, AmqpError> {
    let Ok(mut props) = BasicProperties::decode(&raw) else {
        return Ok(raw);
    };
    if props.reply_to.as_deref() != Some(REPLY_TO_QUEUE) {
        return Ok(raw);
    }
    let secret = ctx
        .with(|ch| ch.reply_consumer.as_ref().map(|_| ch.reply_secret))
        .flatten();
    let Some(secret) = secret else {
        return Err(AmqpError::precondition(
            "fast reply consumer does not exist".to_string(),
        ));
    };
    let c = ctx.conn.cref;
    props.reply_to = Some(Bytes::from(format!(
        "amq.rabbitmq.reply-to.{:x}.{:x}.{:x}.{:x}.{secret:032x}",
        c.shard, c.key, c.serial, ctx.channel
    )));
    let mut out = BytesMut::with_capacity(raw.len() + 48);
    props.encode(&mut out);
    Ok(out.freeze())
}

/// Where a reply address leads: the requester's connection and channel, and the secret the
/// channel checks.
pub struct ReplyAddress {
    pub conn: ConnRef,
    pub channel: u16,
    pub secret: u128,
}

/// The requester a reply address names, if it is well formed.
pub fn parse_token(shards: usize, token: &[u8]) -> Option<ReplyAddress> {
    let text = std::str::from_utf8(token).ok()?;
    let mut parts = text.split('.');
    let mut number = || u64::from_str_radix(parts.next()?, 16).ok();
    let (shard_id, key, serial, channel) = (number()?, number()?, number()?, number()?);
    let secret = u128::from_str_radix(parts.next()?, 16).ok()?;
    if parts.next().is_some() || shard_id as usize >= shards {
        return None;
    }
    let conn = ConnRef {
        shard: u16::try_from(shard_id).ok()?,
        key: u32::try_from(key).ok()?,
        serial: u32::try_from(serial).ok()?,
    };
    let channel = u16::try_from(channel).ok()?;
    Some(ReplyAddress {
        conn,
        channel,
        secret,
    })
}

/// 128 random bits from the kernel (never 0): reply addresses cannot be guessed, so one
/// client cannot inject replies into another's RPC.
fn random_secret() -> u128 {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the local array.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let secret = u128::from_ne_bytes(bytes);
    if n == bytes.len() as isize && secret != 0 {
        return secret;
    }
    // No kernel randomness (never expected): fall back on the name generator's.
    let fallback = super::random_suffix();
    u128::from(crate::ids::name_hash(fallback.as_bytes())) | 1
}
