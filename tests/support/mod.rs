//! The one helper tree of Warren's integration tests. Every test file includes it with
//! `mod support;` and uses what it needs:
//!
//! * [`broker`]: the brokers under test. `Broker::start` runs the `warren` binary cargo built
//!   for this test run on a free loopback port with a fresh data directory and waits for
//!   `Server startup complete` (`Broker::start_with` also changes its command first, e.g. with
//!   a `pre_exec` hook); `RestartableBroker` kills (SIGKILL) or stops (SIGTERM) it and
//!   starts it again on the same data directory. `WARREN_TEST_AMQP_PORT` points the tests at
//!   an already running broker instead (RabbitMQ, see `tests/rabbitmq-node.sh`).
//! * [`process`]: child processes (brokers, client scripts) whose output is captured line by
//!   line and shown when a test fails.
//! * [`scripts`]: the tutorial scripts in `tests/py` (pika, from a venv under `target/`) and
//!   `tests/js` (amqplib, from node_modules under `target/`), provisioned once and run.
//! * [`raw`]: a synchronous AMQP 0-9-1 client on a raw socket, for tests that must see (or
//!   send) exactly which frames go over the wire.
//! * [`lapin_client`]: lapin plumbing (connect, channels, declare, publish, consume, ...).
//! * [`policy_ctl`]: policies set with `warren ctl`, or with rabbitmqctl on a RabbitMQ node.
//!
//! Every child process inherits the test's environment (so `WARREN_*` settings reach every
//! broker, restarted ones included), and is stopped through its `Child` handle, by PID: the
//! harness never kills anything by name.
#![allow(dead_code)]

pub mod broker;
pub mod lapin_client;
pub mod policy_ctl;
pub mod powercut;
pub mod process;
pub mod raw;
pub mod scripts;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[allow(unused_imports)] // each test file uses one or the other
pub use broker::{Broker, RestartableBroker};

/// A suffix unique across processes and calls: pid, a counter and the clock.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// `target/` of this checkout (where provisioned clients are kept).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// A fresh, empty directory under cargo's target tmp dir.
pub fn fresh_dir(kind: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("warren-{kind}-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("expected to create {dir:?}, got {e}"));
    dir
}

/// A fresh directory that is removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(kind: &str) -> TempDir {
        TempDir(fresh_dir(kind))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs an async test body on a fresh two-thread tokio runtime, bounded by `timeout` (a bound
/// reached only when something hangs).
pub fn run_async<F: Future<Output = ()>>(timeout: Duration, body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(timeout, body)
            .await
            .unwrap_or_else(|_| {
                panic!("expected the test to finish within {timeout:?}, got a timeout")
            });
    });
}

/// One queue name per shard of a broker run with `--shards shards`, each `prefix-<i>`, so that
/// a test can use a queue on every shard (whichever shard its connection landed on, one of
/// them is remote).
pub fn queue_per_shard(prefix: &str, shards: usize) -> Vec<String> {
    (0..shards)
        .map(|shard| {
            (0..10_000)
                .map(|i| format!("{prefix}-{i}"))
                .find(|name| warren::ids::queue_shard("/", name, shards) == shard)
                .unwrap_or_else(|| panic!("expected a queue name for shard {shard}, got none"))
        })
        .collect()
}
