//! `x-overflow` (and the `overflow` policy key): what a queue does when a publish would take
//! it past its length limits. Its own module, so that queues and policies both read it
//! without depending on each other.

/// What a queue does when a publish would take it past x-max-length or x-max-length-bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest ready messages: RabbitMQ's default.
    DropHead,
    /// Refuse the new message: the publisher gets basic.nack when it uses confirms.
    RejectPublish,
    /// As RejectPublish; RabbitMQ also dead-letters the refused message.
    RejectPublishDlx,
}

impl Overflow {
    pub fn parse(value: &[u8]) -> Option<Overflow> {
        match value {
            b"drop-head" => Some(Overflow::DropHead),
            b"reject-publish" => Some(Overflow::RejectPublish),
            b"reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
            _ => None,
        }
    }
}
