//! Warren: an AMQP 0-9-1 broker built as one io_uring shard per core.
pub mod protocol;
pub mod routing;
