//! Connection-level (hard) errors and the reply texts RabbitMQ clients match on.

use super::Method;
use crate::protocol::constants::*;
use crate::protocol::MethodError;

/// A connection-level (hard) error: connection.close with this code.
#[derive(Debug)]
pub struct HardError {
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl HardError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        HardError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }
    /// Names the method the error is about in the close.
    pub fn on(mut self, method: &Method) -> Self {
        self.class_id = method.class_id();
        self.method_id = method.method_id();
        self
    }
}

/// RabbitMQ prefixes reply texts with the code's name ("NOT_FOUND - no queue 'x' ...").
pub fn reply_name(code: u16) -> &'static str {
    match code {
        REPLY_SUCCESS => "OK",
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        NO_CONSUMERS => "NO_CONSUMERS",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        RESOURCE_ERROR => "RESOURCE_ERROR",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

/// Short strings are at most 255 bytes; cut on a char boundary.
pub fn short_text(mut text: String) -> bytes::Bytes {
    if text.len() > 255 {
        let mut end = 255;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    bytes::Bytes::from(text)
}

pub fn method_error(err: MethodError) -> HardError {
    match err {
        MethodError::Unknown {
            class_id,
            method_id,
        } => HardError {
            code: NOT_IMPLEMENTED,
            text: format!("unknown method {class_id}/{method_id}"),
            class_id,
            method_id,
        },
        // RabbitMQ reports undecodable arguments as a frame error, and clients match on it.
        MethodError::Syntax(what) => {
            HardError::new(FRAME_ERROR, format!("cannot decode method frame: {what}"))
        }
    }
}
