//! Timers: tokio's, which both backends drive.

pub use tokio::time::{sleep, timeout};
