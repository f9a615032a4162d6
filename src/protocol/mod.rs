//! AMQP 0-9-1 wire codec, in RabbitMQ's dialect.
//!
//! The message path enters here as bytes and leaves as bytes:
//!
//! ```text
//! socket -> parse_frame -> Frame { kind, channel, payload }
//!             method frame  -> Method::decode    (or peek_ids on the hot path)
//!             header frame  -> ContentHeader::decode (properties stay raw)
//!             body frame    -> payload as is
//! Method / header / body -> encode_method, encode_header, encode_body -> socket
//! ```
//!
//! Three rules hold throughout:
//! - **Zero-copy.** Frames are split off the read buffer; strings, tables
//!   and property lists are `Bytes` slices of the frame.
//! - **Bounded.** Every length a peer claims is checked against the bytes
//!   present (or against frame-max, from the header alone) before use;
//!   table nesting is capped at `table::MAX_DEPTH`.
//! - **No panics on input.** Malformed input is a `FrameError` (501) or a
//!   `MethodError` (502/540), never a crash.
//!
//! ```
//! use bytes::BytesMut;
//! use warren::protocol::{constants, frame, parse_frame, Method};
//! use warren::protocol::method::BasicQos;
//!
//! let mut wire = BytesMut::new();
//! let qos = Method::from(BasicQos { prefetch_count: 10, ..Default::default() });
//! frame::encode_method(&mut wire, 1, &qos);
//! let frame = parse_frame(&mut wire, constants::FRAME_MIN_SIZE).unwrap().unwrap();
//! assert_eq!(Method::decode(frame.payload).unwrap(), qos);
//! ```

pub mod constants;
mod error;
pub mod frame;
pub mod method;
pub mod properties;
pub mod table;
mod wire;

#[cfg(test)]
mod testutil;

pub use frame::{parse_frame, Frame, FrameError};
pub use method::{Method, MethodError};
pub use properties::{BasicProperties, ContentHeader};
pub use table::{FieldTable, FieldValue};
pub use wire::{Reader, SHORTSTR_MAX};
