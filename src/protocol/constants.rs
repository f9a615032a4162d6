//! Numbers fixed by the AMQP 0-9-1 spec (with RabbitMQ's extensions).
//!
//! Reply codes carry the spec's names so that a reader who knows the spec or
//! RabbitMQ's docs finds them by name: `NOT_FOUND`, not `ERR_404`.

/// Frame type octets. Anything else on the wire is a 501 frame error.
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
/// Every frame ends with this octet; a different one means we lost framing.
pub const FRAME_END: u8 = 0xCE;

/// Smallest frame-max a peer may negotiate, and the limit that applies
/// before connection.tune-ok. The 0-9-1 spec text and RabbitMQ both use 4096
/// (the shared JSON spec file lists 8192; the contract and RabbitMQ win).
pub const FRAME_MIN_SIZE: u32 = 4096;
/// Bytes a frame adds around its payload: 7-byte header plus the end octet.
pub const FRAME_OVERHEAD: u32 = 8;
/// Length of the frame header (type, channel, payload size).
pub const FRAME_HEADER_SIZE: usize = 7;

/// What a client sends first. A server answers a mismatch by writing its own
/// header and closing.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

pub const REPLY_SUCCESS: u16 = 200;
// Soft errors: close the channel.
pub const CONTENT_TOO_LARGE: u16 = 311;
pub const NO_ROUTE: u16 = 312;
pub const NO_CONSUMERS: u16 = 313;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
// Hard errors: close the connection.
pub const CONNECTION_FORCED: u16 = 320;
pub const INVALID_PATH: u16 = 402;
pub const FRAME_ERROR: u16 = 501;
pub const SYNTAX_ERROR: u16 = 502;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const RESOURCE_ERROR: u16 = 506;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;
pub const INTERNAL_ERROR: u16 = 541;

/// True for the reply codes that close the whole connection rather than
/// one channel (the spec's "hard-error" class).
pub fn is_hard_error(reply_code: u16) -> bool {
    matches!(
        reply_code,
        CONNECTION_FORCED
            | INVALID_PATH
            | FRAME_ERROR
            | SYNTAX_ERROR
            | COMMAND_INVALID
            | CHANNEL_ERROR
            | UNEXPECTED_FRAME
            | RESOURCE_ERROR
            | NOT_ALLOWED
            | NOT_IMPLEMENTED
            | INTERNAL_ERROR
    )
}

pub const CLASS_CONNECTION: u16 = 10;
pub const CLASS_CHANNEL: u16 = 20;
pub const CLASS_ACCESS: u16 = 30;
pub const CLASS_EXCHANGE: u16 = 40;
pub const CLASS_QUEUE: u16 = 50;
pub const CLASS_BASIC: u16 = 60;
pub const CLASS_CONFIRM: u16 = 85;
pub const CLASS_TX: u16 = 90;
