//! Frames: splitting the input stream, and writing frames out.
//!
//! Reading follows mini-redis's check-then-parse: `parse_frame` looks at
//! the 7-byte header first and refuses a frame type we do not know or a size
//! above the negotiated frame-max right there, before a single payload byte
//! is awaited or buffered. So a peer that claims a 4 GiB frame costs us seven
//! bytes, not four gigabytes. A frame that is merely incomplete is the normal
//! state of a stream: `Ok(None)` and the buffer is untouched.
//!
//! A complete frame is split off the read buffer with `split_to().freeze()`,
//! so the payload (and every string decoded from it) shares the read
//! buffer's memory.
//!
//! Writing appends to a reused `BytesMut`: one connection flushes many frames
//! per loop turn with a single write.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::constants::{
    CLASS_BASIC, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEADER_SIZE, FRAME_HEARTBEAT,
    FRAME_METHOD, FRAME_MIN_SIZE, FRAME_OVERHEAD,
};
use super::method::Method;
use super::wire::{patch_u32, put_shortstr};

/// One frame as read off the wire; `payload` excludes header and end octet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// Framing errors: all are connection-fatal (501 FRAME_ERROR); the Display
/// text is what the peer reads as connection.close's reply-text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `size` is the claimed payload size; the whole frame is `size + 8`.
    TooLarge {
        size: u32,
        frame_max: u32,
    },
    BadFrameEnd(u8),
    UnknownType(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::TooLarge { size, frame_max } => write!(
                f,
                "frame of {} bytes exceeds the negotiated frame_max of {frame_max} bytes",
                u64::from(size) + u64::from(FRAME_OVERHEAD)
            ),
            FrameError::BadFrameEnd(octet) => {
                write!(f, "frame end octet was 0x{octet:02x}, expected 0xce")
            }
            FrameError::UnknownType(kind) => write!(f, "unknown frame type {kind}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits one complete frame off the front of `buf`.
///
/// `frame_max` is the negotiated limit, which connection.tune defines for the whole frame;
/// like RabbitMQ, this accepts a payload of up to `frame_max` bytes (8 framing bytes of
/// slack), since clients such as rabbitpy and AMQPStorm fill body frames to exactly
/// `frame_max`. Callers pass the negotiated value, or
/// `FRAME_MIN_SIZE` before tuning; a negotiated 0 ("no limit") must be
/// mapped to the broker's own bound by the caller: this function enforces
/// exactly the number it gets.
pub fn parse_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER_SIZE) else {
        return Ok(None);
    };
    let kind = header[0];
    let channel = u16::from_be_bytes([header[1], header[2]]);
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    if size > frame_max {
        return Err(FrameError::TooLarge { size, frame_max });
    }
    // Cannot overflow: size <= frame_max <= u32::MAX, and usize is 64 bits.
    let end_at = FRAME_HEADER_SIZE + size as usize;
    let Some(&end) = buf.get(end_at) else {
        return Ok(None);
    };
    if end != FRAME_END {
        return Err(FrameError::BadFrameEnd(end));
    }
    buf.advance(FRAME_HEADER_SIZE);
    let payload = buf.split_to(size as usize).freeze();
    buf.advance(1);
    Ok(Some(Frame {
        kind,
        channel,
        payload,
    }))
}

#[inline]
fn put_frame_header(out: &mut BytesMut, kind: u8, channel: u16, size: u32) {
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(size);
}

/// Appends a method frame.
pub fn encode_method(out: &mut BytesMut, channel: u16, method: &Method) {
    let start = out.len();
    put_frame_header(out, FRAME_METHOD, channel, 0);
    method.encode(out);
    let size = out.len() - start - FRAME_HEADER_SIZE;
    patch_u32(out, start + 3, size as u32);
    out.put_u8(FRAME_END);
}

/// Appends a basic.deliver method frame, byte for byte what `encode_method` writes for
/// `Method::BasicDeliver`, straight from borrowed fields: the delivery path builds no method
/// value and clones no `Bytes` for it.
pub fn encode_deliver(out: &mut BytesMut, channel: u16, d: &DeliverFields<'_>) {
    let start = out.len();
    put_frame_header(out, FRAME_METHOD, channel, 0);
    out.put_u16(CLASS_BASIC);
    out.put_u16(super::method::BasicDeliver::METHOD_ID);
    put_shortstr(out, d.consumer_tag);
    out.put_u64(d.delivery_tag);
    out.put_u8(u8::from(d.redelivered));
    put_shortstr(out, d.exchange);
    put_shortstr(out, d.routing_key);
    let size = out.len() - start - FRAME_HEADER_SIZE;
    patch_u32(out, start + 3, size as u32);
    out.put_u8(FRAME_END);
}

/// The arguments of basic.deliver, borrowed.
pub struct DeliverFields<'a> {
    pub consumer_tag: &'a [u8],
    pub delivery_tag: u64,
    pub redelivered: bool,
    pub exchange: &'a [u8],
    pub routing_key: &'a [u8],
}

/// Appends a content header frame for class basic, weight 0, with the
/// property list exactly as received (flags included).
pub fn encode_header(out: &mut BytesMut, channel: u16, body_size: u64, properties_raw: &[u8]) {
    let size = 2 + 2 + 8 + properties_raw.len();
    out.reserve(size + FRAME_OVERHEAD as usize);
    put_frame_header(out, FRAME_HEADER, channel, size as u32);
    out.put_u16(CLASS_BASIC);
    out.put_u16(0);
    out.put_u64(body_size);
    out.put_slice(properties_raw);
    out.put_u8(FRAME_END);
}

/// Largest body-frame payload for `frame_max`. A frame_max below the
/// spec's minimum can only be a caller bug; it is clamped to the minimum
/// rather than looping over one-byte frames.
#[inline]
pub fn max_body_payload(frame_max: u32) -> usize {
    debug_assert!(
        frame_max >= FRAME_MIN_SIZE,
        "frame_max {frame_max} below FRAME_MIN_SIZE"
    );
    (frame_max.max(FRAME_MIN_SIZE) - FRAME_OVERHEAD) as usize
}

/// Appends as many body frames as `body` needs (none for an empty body).
pub fn encode_body(out: &mut BytesMut, channel: u16, body: &[u8], frame_max: u32) {
    let chunk_max = max_body_payload(frame_max);
    let frames = body.len().div_ceil(chunk_max);
    out.reserve(body.len() + frames * FRAME_OVERHEAD as usize);
    for chunk in body.chunks(chunk_max) {
        put_frame_header(out, FRAME_BODY, channel, chunk.len() as u32);
        out.put_slice(chunk);
        out.put_u8(FRAME_END);
    }
}

/// Appends a heartbeat frame (channel 0, empty payload).
pub fn encode_heartbeat(out: &mut BytesMut) {
    put_frame_header(out, FRAME_HEARTBEAT, 0, 0);
    out.put_u8(FRAME_END);
}

/// Writes only the 7-byte header of a body frame of `len` bytes, for
/// vectored writes: this prefix, then the body `Bytes`, then `FRAME_END`.
pub fn body_frame_prefix(out: &mut BytesMut, channel: u16, len: u32) {
    put_frame_header(out, FRAME_BODY, channel, len);
}

#[cfg(test)]
mod tests;
