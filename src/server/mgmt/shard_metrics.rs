//! Warren's engine series on `/metrics`, one sample per shard (`shard="N"`), from the
//! snapshot's `shard_metrics` list (see `stats::shard_metrics` for where each is counted):
//!
//! ```text
//! warren_shard_ring_depth_messages         gauge      pushed to other shards, not yet taken
//! warren_shard_ring_overflow_messages      gauge      held because a ring was full
//! warren_shard_queues                      gauge      queues this shard owns
//! warren_shard_connections                 gauge      client connections on this shard
//! warren_shard_io_uring_sqes_submitted_total counter  entries handed to the kernel
//! warren_shard_io_uring_submit_calls_total   counter  io_uring_enter calls that submitted
//! warren_shard_fsync_seconds               histogram  each fdatasync, submission to completion
//! warren_shard_group_commit_records        histogram  store records per group commit
//! ```
//!
//! The histograms arrive per bucket and are summed into Prometheus' cumulative `le` buckets
//! here, on the API thread, so a shard only ever increments one bucket.

use std::fmt::Write;

use serde_json::Value;

/// A plain series: name, snapshot field, type, help.
const PLAIN: [(&str, &str, &str, &str); 6] = [
    (
        "warren_shard_ring_depth_messages",
        "ring_depth",
        "gauge",
        "Messages this shard pushed into its rings to other shards that they have not taken yet",
    ),
    (
        "warren_shard_ring_overflow_messages",
        "ring_overflow",
        "gauge",
        "Messages this shard holds for other shards because their ring was full",
    ),
    (
        "warren_shard_queues",
        "queues",
        "gauge",
        "Queues owned by this shard",
    ),
    (
        "warren_shard_connections",
        "connections",
        "gauge",
        "Client connections served by this shard",
    ),
    (
        "warren_shard_io_uring_sqes_submitted_total",
        "io_uring_sqes_submitted",
        "counter",
        "io_uring submission queue entries handed to the kernel (0 on the epoll backend)",
    ),
    (
        "warren_shard_io_uring_submit_calls_total",
        "io_uring_submit_calls",
        "counter",
        "io_uring_enter calls that submitted entries (0 on the epoll backend)",
    ),
];

/// A histogram: name, snapshot field, help.
const HISTOGRAMS: [(&str, &str, &str); 2] = [
    (
        "warren_shard_fsync_seconds",
        "fsync_seconds",
        "Latency of each fdatasync of this shard's store, from submission to completion",
    ),
    (
        "warren_shard_group_commit_records",
        "group_commit_records",
        "Store records (messages, acks, definitions) made durable by one group commit",
    ),
];

/// Appends the series above for every shard of `snap["shard_metrics"]`.
pub fn render(out: &mut String, snap: &Value) {
    let shards = snap["shard_metrics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (name, field, kind, help) in PLAIN {
        family(out, name, kind, help);
        for (shard, m) in shards.iter().enumerate() {
            let value = m[field].as_f64().unwrap_or(0.0);
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
        }
    }
    for (name, field, help) in HISTOGRAMS {
        family(out, name, "histogram", help);
        for (shard, m) in shards.iter().enumerate() {
            histogram(out, name, shard, &m[field]);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}\n# HELP {name} {help}");
}

/// `_bucket` samples with cumulative counts (the last `le="+Inf"`), then `_sum` and `_count`,
/// from `{"le": [bounds], "counts": [per bucket, +Inf last], "sum": s}`.
fn histogram(out: &mut String, name: &str, shard: usize, h: &Value) {
    let bounds = h["le"].as_array().map(Vec::as_slice).unwrap_or_default();
    let counts = h["counts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let count_at = |i: usize| counts.get(i).and_then(Value::as_u64).unwrap_or(0);
    let mut cumulative = 0u64;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative = cumulative.saturating_add(count_at(i));
        let Some(le) = bound.as_f64() else { continue };
        let _ = writeln!(
            out,
            "{name}_bucket{{shard=\"{shard}\",le=\"{le}\"}} {cumulative}"
        );
    }
    // Whatever lies past the finite bounds (one +Inf bucket, or more if malformed).
    let above: u64 = (bounds.len()..counts.len()).map(count_at).sum();
    let total = cumulative.saturating_add(above);
    let sum = h["sum"].as_f64().unwrap_or(0.0);
    let _ = writeln!(
        out,
        "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {total}\n\
         {name}_sum{{shard=\"{shard}\"}} {sum}\n\
         {name}_count{{shard=\"{shard}\"}} {total}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(snap: &Value) -> String {
        let mut out = String::new();
        render(&mut out, snap);
        out
    }

    fn hist(le: Value, counts: Value, sum: f64) -> Value {
        json!({"le": le, "counts": counts, "sum": sum})
    }

    #[test]
    fn buckets_are_cumulative_and_end_in_inf() {
        let fsync = hist(json!([0.0001, 0.001, 0.01]), json!([1, 0, 2, 3]), 0.5);
        let snap = json!({"shard_metrics": [{"fsync_seconds": fsync}]});
        let out = rendered(&snap);
        for line in [
            "warren_shard_fsync_seconds_bucket{shard=\"0\",le=\"0.0001\"} 1",
            "warren_shard_fsync_seconds_bucket{shard=\"0\",le=\"0.001\"} 1",
            "warren_shard_fsync_seconds_bucket{shard=\"0\",le=\"0.01\"} 3",
            "warren_shard_fsync_seconds_bucket{shard=\"0\",le=\"+Inf\"} 6",
            "warren_shard_fsync_seconds_sum{shard=\"0\"} 0.5",
            "warren_shard_fsync_seconds_count{shard=\"0\"} 6",
            "# TYPE warren_shard_fsync_seconds histogram",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "expected line {line:?}, got:\n{out}"
            );
        }
    }

    #[test]
    fn a_shards_own_histogram_renders_as_it_counted() {
        use crate::stats::histogram::Histogram;
        static BOUNDS: [u64; 2] = [1, 4];
        let h = Histogram::new(&BOUNDS);
        for v in [1, 3, 4, 9] {
            h.observe(v);
        }
        let snap =
            json!({"shard_metrics": [{}, {"group_commit_records": h.snapshot().to_json(1.0)}]});
        let out = rendered(&snap);
        let name = "warren_shard_group_commit_records";
        for line in [
            format!("{name}_bucket{{shard=\"1\",le=\"1\"}} 1"),
            format!("{name}_bucket{{shard=\"1\",le=\"4\"}} 3"),
            format!("{name}_bucket{{shard=\"1\",le=\"+Inf\"}} 4"),
            format!("{name}_sum{{shard=\"1\"}} 17"),
            format!("{name}_count{{shard=\"1\"}} 4"),
            format!("{name}_count{{shard=\"0\"}} 0"),
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "expected line {line:?}, got:\n{out}"
            );
        }
    }

    #[test]
    fn plain_series_have_one_sample_per_shard() {
        let snap = json!({"shard_metrics": [
            {"ring_depth": 3, "io_uring_sqes_submitted": 10},
            {"ring_depth": 0, "io_uring_sqes_submitted": 7},
        ]});
        let out = rendered(&snap);
        assert!(out.contains("warren_shard_ring_depth_messages{shard=\"0\"} 3\n"));
        assert!(out.contains("warren_shard_io_uring_sqes_submitted_total{shard=\"1\"} 7\n"));
        assert!(out.contains("# TYPE warren_shard_io_uring_submit_calls_total counter\n"));
    }

    #[test]
    fn a_snapshot_without_shard_metrics_renders_only_the_families() {
        let out = rendered(&json!({}));
        assert!(
            out.lines().all(|l| l.starts_with("# ")),
            "expected no samples, got:\n{out}"
        );
    }
}
