//! A queue's message counters, apart so that listings can name them without the queue.

/// A queue's message counts since it was created (RabbitMQ's queue `message_stats`).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    pub publish: u64,
    /// Deliveries to consumers that acknowledge, and to no-ack consumers.
    pub deliver: u64,
    pub deliver_no_ack: u64,
    /// basic.get answered with a message (acknowledgement required, or not), or empty.
    pub get: u64,
    pub get_no_ack: u64,
    pub get_empty: u64,
    pub ack: u64,
    pub redeliver: u64,
}
