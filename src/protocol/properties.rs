//! Content headers and the basic class's 14 message properties.
//!
//! The broker forwards a message's properties to consumers exactly as the
//! publisher sent them, so the hot path never builds a `BasicProperties`:
//! `ContentHeader::decode` validates the property list with an allocation-free
//! walk (`BasicProperties::check`) and keeps the raw bytes, and the one
//! property routing needs (delivery-mode, for persistence) has its own
//! `peek_delivery_mode`. A full decode is for code that inspects headers
//! (dead-lettering, `x-match` bindings, ...).
//!
//! Wire layout: a 16-bit flag word, property i present iff bit 15-i is set;
//! bit 0 says another flag word follows (never needed for basic's 14, but
//! legal, so accepted when it adds no flags); then the present properties in
//! flag order.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::constants::CLASS_BASIC;
use super::error::{MethodError, ShortStr};
use super::table::FieldTable;
use super::wire::{put_shortstr, Reader};

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const KIND: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// Bit 1 names no basic property; a peer setting it is speaking something else.
const RESERVED: u16 = 1 << 1;
const CONTINUATION: u16 = 1;

/// The 14 basic properties, each `None` when absent from the flag word.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    pub content_type: Option<ShortStr>,
    pub content_encoding: Option<ShortStr>,
    pub headers: Option<FieldTable>,
    pub delivery_mode: Option<u8>,
    pub priority: Option<u8>,
    pub correlation_id: Option<ShortStr>,
    pub reply_to: Option<ShortStr>,
    pub expiration: Option<ShortStr>,
    pub message_id: Option<ShortStr>,
    pub timestamp: Option<u64>,
    /// The property the spec calls `type`.
    pub kind: Option<ShortStr>,
    pub user_id: Option<ShortStr>,
    pub app_id: Option<ShortStr>,
    pub cluster_id: Option<ShortStr>,
}

/// Reads the flag words off the front of `buf`; returns the first (the only
/// one with basic properties in it).
fn take_flags(buf: &mut &[u8]) -> Result<u16, MethodError> {
    if buf.len() < 2 {
        return Err(MethodError::Syntax("truncated property flags"));
    }
    let flags = buf.get_u16();
    if flags & RESERVED != 0 {
        return Err(MethodError::Syntax("reserved property flag set"));
    }
    let mut word = flags;
    // Each round consumes two bytes, so the loop is bounded by the input.
    while word & CONTINUATION != 0 {
        if buf.len() < 2 {
            return Err(MethodError::Syntax("truncated property flags"));
        }
        word = buf.get_u16();
        if word & !CONTINUATION != 0 {
            return Err(MethodError::Syntax("unknown property flag set"));
        }
    }
    Ok(flags)
}

fn skip_shortstr(buf: &mut &[u8]) -> Result<(), MethodError> {
    let len = usize::from(
        *buf.first()
            .ok_or(MethodError::Syntax("truncated property"))?,
    );
    if buf.len() < 1 + len {
        return Err(MethodError::Syntax("truncated property"));
    }
    buf.advance(1 + len);
    Ok(())
}

fn skip_fixed(buf: &mut &[u8], n: usize) -> Result<(), MethodError> {
    if buf.len() < n {
        return Err(MethodError::Syntax("truncated property"));
    }
    buf.advance(n);
    Ok(())
}

impl BasicProperties {
    /// Decodes flags and property list. Copies `raw` once so that strings can
    /// be shared slices; use `decode_bytes` when you already hold `Bytes`.
    pub fn decode(raw: &[u8]) -> Result<BasicProperties, MethodError> {
        BasicProperties::decode_bytes(Bytes::copy_from_slice(raw))
    }

    /// Zero-copy decode: strings and header values are slices of `raw`.
    pub fn decode_bytes(raw: Bytes) -> Result<BasicProperties, MethodError> {
        let mut flags_view: &[u8] = &raw;
        let flags = take_flags(&mut flags_view)?;
        let flag_bytes = raw.len() - flags_view.len();
        let mut r = Reader::new(raw);
        r.buf.advance(flag_bytes);

        let present = |bit: u16| flags & bit != 0;
        let mut p = BasicProperties::default();
        if present(CONTENT_TYPE) {
            p.content_type = Some(r.shortstr()?);
        }
        if present(CONTENT_ENCODING) {
            p.content_encoding = Some(r.shortstr()?);
        }
        if present(HEADERS) {
            p.headers = Some(r.table()?);
        }
        if present(DELIVERY_MODE) {
            p.delivery_mode = Some(r.octet()?);
        }
        if present(PRIORITY) {
            p.priority = Some(r.octet()?);
        }
        if present(CORRELATION_ID) {
            p.correlation_id = Some(r.shortstr()?);
        }
        if present(REPLY_TO) {
            p.reply_to = Some(r.shortstr()?);
        }
        if present(EXPIRATION) {
            p.expiration = Some(r.shortstr()?);
        }
        if present(MESSAGE_ID) {
            p.message_id = Some(r.shortstr()?);
        }
        if present(TIMESTAMP) {
            p.timestamp = Some(r.timestamp()?);
        }
        if present(KIND) {
            p.kind = Some(r.shortstr()?);
        }
        if present(USER_ID) {
            p.user_id = Some(r.shortstr()?);
        }
        if present(APP_ID) {
            p.app_id = Some(r.shortstr()?);
        }
        if present(CLUSTER_ID) {
            p.cluster_id = Some(r.shortstr()?);
        }
        r.finish()?;
        Ok(p)
    }

    /// Accepts exactly what `decode` accepts, without allocating.
    pub fn check(raw: &[u8]) -> Result<(), MethodError> {
        let mut buf = raw;
        let flags = take_flags(&mut buf)?;
        for bit in (2..16).rev().map(|i| 1u16 << i) {
            if flags & bit == 0 {
                continue;
            }
            match bit {
                HEADERS => FieldTable::check(&mut buf)?,
                DELIVERY_MODE | PRIORITY => skip_fixed(&mut buf, 1)?,
                TIMESTAMP => skip_fixed(&mut buf, 8)?,
                _ => skip_shortstr(&mut buf)?,
            }
        }
        if !buf.is_empty() {
            return Err(MethodError::Syntax("trailing bytes after arguments"));
        }
        Ok(())
    }

    /// Writes the flag word and the present properties.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut flags = 0u16;
        let mut flag = |set: bool, bit: u16| {
            if set {
                flags |= bit;
            }
        };
        flag(self.content_type.is_some(), CONTENT_TYPE);
        flag(self.content_encoding.is_some(), CONTENT_ENCODING);
        flag(self.headers.is_some(), HEADERS);
        flag(self.delivery_mode.is_some(), DELIVERY_MODE);
        flag(self.priority.is_some(), PRIORITY);
        flag(self.correlation_id.is_some(), CORRELATION_ID);
        flag(self.reply_to.is_some(), REPLY_TO);
        flag(self.expiration.is_some(), EXPIRATION);
        flag(self.message_id.is_some(), MESSAGE_ID);
        flag(self.timestamp.is_some(), TIMESTAMP);
        flag(self.kind.is_some(), KIND);
        flag(self.user_id.is_some(), USER_ID);
        flag(self.app_id.is_some(), APP_ID);
        flag(self.cluster_id.is_some(), CLUSTER_ID);
        out.put_u16(flags);

        let short = |out: &mut BytesMut, v: &Option<ShortStr>| {
            if let Some(v) = v {
                put_shortstr(out, v);
            }
        };
        short(out, &self.content_type);
        short(out, &self.content_encoding);
        if let Some(h) = &self.headers {
            h.encode(out);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        short(out, &self.correlation_id);
        short(out, &self.reply_to);
        short(out, &self.expiration);
        short(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        short(out, &self.kind);
        short(out, &self.user_id);
        short(out, &self.app_id);
        short(out, &self.cluster_id);
    }

    /// True when the `user-id` property is present (a look at the flag word only).
    pub fn has_user_id(raw: &[u8]) -> bool {
        raw.len() >= 2 && u16::from_be_bytes([raw[0], raw[1]]) & USER_ID != 0
    }

    /// Delivery-mode (2 = persistent) without a full decode; `None` when
    /// absent or when the list is too short to reach it. Skips the
    /// properties before it, including the headers table by its length.
    pub fn peek_delivery_mode(raw: &[u8]) -> Option<u8> {
        let mut buf = raw;
        let flags = take_flags(&mut buf).ok()?;
        if flags & DELIVERY_MODE == 0 {
            return None;
        }
        if flags & CONTENT_TYPE != 0 {
            skip_shortstr(&mut buf).ok()?;
        }
        if flags & CONTENT_ENCODING != 0 {
            skip_shortstr(&mut buf).ok()?;
        }
        if flags & HEADERS != 0 {
            let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
            skip_fixed(&mut buf, 4usize.checked_add(len)?).ok()?;
        }
        buf.first().copied()
    }
}

/// A content header frame's payload, split without copying: the property
/// list stays raw so it can be forwarded verbatim.
#[derive(Debug, Clone)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties_raw: Bytes,
}

/// class-id, weight, body-size, and at least one flag word.
const CONTENT_HEADER_MIN: usize = 2 + 2 + 8 + 2;

impl ContentHeader {
    /// Splits and validates a header payload. Only class basic carries
    /// content; any other class id is a syntax error. The weight field is
    /// unused in 0-9-1 and ignored, as RabbitMQ does.
    pub fn decode(mut payload: Bytes) -> Result<ContentHeader, MethodError> {
        if payload.len() < CONTENT_HEADER_MIN {
            return Err(MethodError::Syntax("truncated content header"));
        }
        let class_id = payload.get_u16();
        let _weight = payload.get_u16();
        let body_size = payload.get_u64();
        if class_id != CLASS_BASIC {
            return Err(MethodError::Syntax("content header class is not basic"));
        }
        BasicProperties::check(&payload)?;
        Ok(ContentHeader {
            class_id,
            body_size,
            properties_raw: payload,
        })
    }

    /// Full decode of the properties (shares memory with the frame).
    pub fn properties(&self) -> Result<BasicProperties, MethodError> {
        BasicProperties::decode_bytes(self.properties_raw.clone())
    }

    pub fn delivery_mode(&self) -> Option<u8> {
        BasicProperties::peek_delivery_mode(&self.properties_raw)
    }
}

#[cfg(test)]
mod tests;
