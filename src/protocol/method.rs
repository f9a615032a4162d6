//! Methods: the commands inside method frames.
//!
//! Each method is a plain struct named `ClassMethod` (`BasicPublish`,
//! `QueueDeclareOk`) with the spec's arguments as public fields, wrapped by
//! the `Method` enum. All of them come out of one table, `method/spec.rs`,
//! expanded by the macro in `method/define.rs`.
//!
//! Decoding is zero-copy: short and long strings are `Bytes` slices of the
//! frame payload, so a basic.publish costs two reference-count bumps, not two
//! allocations. The hot path can avoid even that: `peek_ids` reads the class
//! and method ids of a payload without decoding it.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use warren::protocol::method::{BasicAck, Method};
//!
//! let mut out = BytesMut::new();
//! Method::from(BasicAck { delivery_tag: 7, multiple: true }).encode(&mut out);
//! let back = Method::decode(out.freeze()).expect("what we encode decodes");
//! assert_eq!(back.name(), "basic.ack");
//! ```

#[macro_use]
mod define;
mod spec;

pub use spec::*;

pub use super::error::{LongStr, MethodError, ShortStr};

impl Method {
    /// True for the methods a content header and body follow.
    pub fn has_content(&self) -> bool {
        matches!(
            self,
            Method::BasicPublish(_)
                | Method::BasicReturn(_)
                | Method::BasicDeliver(_)
                | Method::BasicGetOk(_)
        )
    }
}

/// (class id, method id) of a method payload without decoding it; `None`
/// when the payload is shorter than the four id bytes.
#[inline]
pub fn peek_ids(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [c0, c1, m0, m1, ..] => Some((
            u16::from_be_bytes([*c0, *c1]),
            u16::from_be_bytes([*m0, *m1]),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
