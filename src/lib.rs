//! Warren: an AMQP 0-9-1 broker built as one io_uring shard per core.
//!
//! The message path, top to bottom: [`connection`] reads frames from a socket and parses them
//! with [`protocol`]; a publish is routed by [`routing`] on the shard that read it and handed to
//! each queue's owner [`shard`] (directly or over a ring); the [`broker`] queue dispatches to a
//! consumer, whose connection writes the frames back out.

#[macro_use]
pub mod log;
pub mod alarm;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod protocol;
pub mod routing;
pub mod shard;
pub mod store;
