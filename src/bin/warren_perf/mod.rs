//! warren-perf's parts: one blocking connection type (`conn`), the run's
//! topology and pre-encoded publish frames (`topology`), the two worker
//! kinds (`producer`, `consumer`) and shared counters and clocks (`stats`).

pub mod args;
pub mod conn;
pub mod consumer;
pub mod link;
pub mod producer;
pub mod report;
pub mod stats;
pub mod topology;
