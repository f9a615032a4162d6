//! A message as the broker passes it around: `Bytes` handles into the frames it arrived in.
//!
//! Cloning a `Message` (fanout to N queues) bumps reference counts; the body is never copied.

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// Content-header property flags and list exactly as published, re-emitted on delivery.
    pub properties: Bytes,
    pub body: Bytes,
    /// delivery-mode 2.
    pub persistent: bool,
    /// Where the queue holding this message wrote it in the shard's store, if it did.
    pub loc: Loc,
}

/// A record in a shard's segment store: segment id (0: not stored), offset and framed length.
/// `paged` says the body was dropped from memory and must be read back before delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub off: u32,
    pub len: u32,
    pub paged: bool,
}

impl Loc {
    pub fn is_stored(&self) -> bool {
        self.seg != 0
    }
}

/// Bodies this small are copied out of the read buffer when they wait in a queue, so that a
/// 16-byte message does not pin a 64 KiB read buffer for as long as it is queued.
pub const COMPACT_BELOW_BYTES: usize = 512;

impl Message {
    pub fn new(
        exchange: Bytes,
        routing_key: Bytes,
        properties: Bytes,
        body: Bytes,
        persistent: bool,
    ) -> Self {
        Message {
            exchange,
            routing_key,
            properties,
            body,
            persistent,
            loc: Loc::default(),
        }
    }

    /// Copies the message into one allocation of its own (see `COMPACT_BELOW_BYTES`); a
    /// large body keeps its own buffer, which it fills on its own anyway.
    pub fn compact(&mut self) {
        let small_body = self.body.len() < COMPACT_BELOW_BYTES;
        let total = self.exchange.len()
            + self.routing_key.len()
            + self.properties.len()
            + if small_body { self.body.len() } else { 0 };
        let mut all = BytesMut::with_capacity(total);
        let mut take = |part: &mut Bytes| {
            all.extend_from_slice(part);
            *part = all.split().freeze();
        };
        take(&mut self.exchange);
        take(&mut self.routing_key);
        take(&mut self.properties);
        if small_body {
            take(&mut self.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_every_part_intact() {
        let frame = Bytes::from_static(b"exchange-key-props-body");
        let mut msg = Message::new(
            frame.slice(0..8),
            frame.slice(9..12),
            frame.slice(13..18),
            frame.slice(19..23),
            false,
        );
        msg.compact();
        assert_eq!(&msg.exchange[..], b"exchange");
        assert_eq!(&msg.routing_key[..], b"key");
        assert_eq!(&msg.properties[..], b"props");
        assert_eq!(&msg.body[..], b"body");
    }
}
