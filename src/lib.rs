//! Warren: an AMQP 0-9-1 broker built as one shard per core.
//!
//! Layers, top to bottom; a module imports only from layers below it (`tests/layering.rs`
//! keeps it so):
//!
//! ```text
//! main
//! ctl         `warren ctl`: the operator's command line, over the control socket or the API
//! server      boot, listeners, signals, control socket, management API and Prometheus (mgmt)
//! connection  handshake, channels (one file per method family), framing out
//! shard       threads, rings, mailbox, request/reply, metadata broadcast
//! config alarm auth
//! broker      exchanges, publish routing, queues, dispatch
//! store       segments, definitions, recovery, pager
//! routing     bindings of one exchange: direct, fanout, topic trie, headers
//! io          sockets, files, timers, fsync: io_uring or epoll backend
//! protocol    wire, frames, methods, tables, properties
//! ids message counter stats log trace
//! ```
//!
//! The message path reads top to bottom: [`connection`] reads frames from a socket and parses
//! them with [`protocol`]; a publish is routed by [`broker::publish`] on the shard that read it
//! and handed to each queue's owner [`shard`] (directly or over a ring); the [`broker`] queue
//! dispatches to a consumer, whose connection writes the frames back out.

#[macro_use]
pub mod log;
pub mod alarm;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod counter;
pub mod ctl;
pub mod ids;
pub mod io;
pub mod message;
pub mod protocol;
pub mod routing;
pub mod server;
pub mod shard;
pub mod stats;
pub mod store;
pub mod trace;
