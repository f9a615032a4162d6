//! A message as the broker passes it around: `Bytes` handles into the frames it arrived in.
//!
//! Cloning a `Message` (fanout to N queues) bumps reference counts; the body is never copied.

use bytes::Bytes;

#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: Bytes,
    pub routing_key: Bytes,
    /// Content-header property flags and list exactly as published, re-emitted on delivery.
    pub properties: Bytes,
    pub body: Bytes,
    /// delivery-mode 2.
    pub persistent: bool,
}

/// Bodies this small are copied out of the read buffer when they wait in a queue, so that a
/// 16-byte message does not pin a 64 KiB read buffer for as long as it is queued.
pub const COMPACT_BELOW_BYTES: usize = 512;

impl Message {
    /// Copies the small parts into their own allocations (see `COMPACT_BELOW_BYTES`).
    pub fn compact(&mut self) {
        if self.body.len() < COMPACT_BELOW_BYTES {
            self.body = Bytes::copy_from_slice(&self.body);
        }
        self.exchange = Bytes::copy_from_slice(&self.exchange);
        self.routing_key = Bytes::copy_from_slice(&self.routing_key);
        self.properties = Bytes::copy_from_slice(&self.properties);
    }
}
