//! What a shard's engine does underneath the messages, for Prometheus' `warren_shard_*`
//! series: io_uring submissions, fdatasync latency and group-commit size. Counted where they
//! happen (the io_uring driver, the file seam, the store's writer) in `Cell`s of a
//! thread-local, as [`super`]'s message counters are: each shard is one thread, so there is
//! nothing to share, and a count costs one increment. Shard 0 gathers them with
//! `Inspect::ShardMetrics`; the shard adds the gauges it reads from its own state then (ring
//! depth, queues, connections), so those cost nothing at all in between.

use std::cell::Cell;
use std::time::Duration;

use serde_json::{json, Value};

use super::histogram::{self, Histogram};

/// fdatasync latency bounds, in nanoseconds: 100 µs (a fast NVMe) to 1 s (a disk in
/// trouble); an fsync here usually takes 2 to 5 ms.
pub static FSYNC_BOUNDS_NS: [u64; 13] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Group-commit size bounds, in store records: powers of two up to 8192.
pub static COMMIT_BOUNDS_RECORDS: [u64; 14] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
];

struct Counters {
    uring_sqes: Cell<u64>,
    uring_submits: Cell<u64>,
    fsync_ns: Histogram,
    commit_records: Histogram,
}

thread_local! {
    static COUNTERS: Counters = const {
        Counters {
            uring_sqes: Cell::new(0),
            uring_submits: Cell::new(0),
            fsync_ns: Histogram::new(&FSYNC_BOUNDS_NS),
            commit_records: Histogram::new(&COMMIT_BOUNDS_RECORDS),
        }
    };
}

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

/// One `io_uring_enter` that submitted `sqes` submission queue entries.
#[inline]
pub fn uring_submitted(sqes: usize) {
    COUNTERS.with(|c| {
        bump(&c.uring_submits, 1);
        bump(&c.uring_sqes, sqes as u64);
    });
}

/// One fdatasync took `elapsed`, from its submission to its completion as the shard saw it.
#[inline]
pub fn fsync_took(elapsed: Duration) {
    let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    COUNTERS.with(|c| c.fsync_ns.observe(ns));
}

/// One group commit made `records` store records durable.
#[inline]
pub fn group_commit(records: u64) {
    COUNTERS.with(|c| c.commit_records.observe(records));
}

/// One shard's metrics: this thread's counters, and gauges its shard fills in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMetrics {
    /// Messages pushed into this shard's outgoing rings that their targets have not taken.
    pub ring_depth_msgs: u64,
    /// Messages held in this shard's overflow because their ring was full.
    pub overflow_msgs: u64,
    pub queues: u64,
    pub connections: u64,
    pub uring_sqes: u64,
    pub uring_submits: u64,
    pub fsync_ns: histogram::Snapshot,
    pub commit_records: histogram::Snapshot,
}

/// This thread's counters, with the gauges at zero.
pub fn snapshot() -> ShardMetrics {
    COUNTERS.with(|c| ShardMetrics {
        ring_depth_msgs: 0,
        overflow_msgs: 0,
        queues: 0,
        connections: 0,
        uring_sqes: c.uring_sqes.get(),
        uring_submits: c.uring_submits.get(),
        fsync_ns: c.fsync_ns.snapshot(),
        commit_records: c.commit_records.snapshot(),
    })
}

impl ShardMetrics {
    /// The object of the management snapshot's `shard_metrics` list (histograms in base
    /// units: seconds and records).
    pub fn to_json(&self) -> Value {
        json!({
            "ring_depth": self.ring_depth_msgs,
            "ring_overflow": self.overflow_msgs,
            "queues": self.queues,
            "connections": self.connections,
            "io_uring_sqes_submitted": self.uring_sqes,
            "io_uring_submit_calls": self.uring_submits,
            "fsync_seconds": self.fsync_ns.to_json(1e9),
            "group_commit_records": self.commit_records.to_json(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_on_their_thread() {
        let there = std::thread::spawn(|| {
            uring_submitted(3);
            uring_submitted(0);
            fsync_took(Duration::from_micros(3_000));
            group_commit(40);
            snapshot()
        })
        .join()
        .expect("thread");
        assert_eq!((there.uring_submits, there.uring_sqes), (2, 3));
        assert_eq!(there.fsync_ns.count(), 1);
        assert_eq!(
            there.fsync_ns.buckets()[5],
            1,
            "expected 3 ms in the 5 ms bucket"
        );
        assert_eq!(
            there.commit_records.buckets()[6],
            1,
            "expected 40 in the 64 bucket"
        );
        let v = there.to_json();
        assert_eq!(v["fsync_seconds"]["sum"], json!(0.003));
        assert_eq!(v["io_uring_submit_calls"], json!(2));
    }
}
