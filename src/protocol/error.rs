//! The decode error every part of the codec reports, and the string types it
//! decodes into. A leaf: wire, tables, properties and methods all use it.

use std::fmt;

/// A short string as on the wire: raw bytes, at most 255 of them. Not
/// validated as UTF-8; RabbitMQ does not either, and routing compares bytes.
pub type ShortStr = bytes::Bytes;
/// A long string as on the wire (u32 length).
pub type LongStr = bytes::Bytes;

/// Why a method (or a content header, or a field table) failed to decode.
/// Never allocates: the hot path reports errors as cheaply as it succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodError {
    /// Ids we have no method for; the connection answers 540 NOT_IMPLEMENTED.
    Unknown { class_id: u16, method_id: u16 },
    /// Truncated or malformed arguments; the connection answers 502
    /// SYNTAX_ERROR with this text.
    Syntax(&'static str),
}

impl MethodError {
    /// The reply code a connection.close for this error carries.
    pub fn reply_code(&self) -> u16 {
        match self {
            MethodError::Unknown { .. } => super::constants::NOT_IMPLEMENTED,
            MethodError::Syntax(_) => super::constants::SYNTAX_ERROR,
        }
    }
}

impl fmt::Display for MethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodError::Unknown {
                class_id,
                method_id,
            } => write!(f, "unknown method {class_id}/{method_id}"),
            MethodError::Syntax(what) => write!(f, "syntax error: {what}"),
        }
    }
}

impl std::error::Error for MethodError {}
