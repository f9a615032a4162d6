//! A Prometheus histogram that one shard fills on its own thread: a fixed array of
//! `Cell<u64>` buckets and a sum, so an observation is a scan of at most [`MAX_BOUNDS`]
//! integers and two increments, with no allocation, atomic or lock. Bounds are integers in
//! the unit the caller measures in (nanoseconds, records); they become Prometheus'
//! floating-point `le` values (seconds, records) only in [`Snapshot::to_json`], off the
//! message path.
//!
//! Buckets count what falls into them alone; the cumulative counts Prometheus wants
//! (`le="x"`: everything at or below `x`) are summed when the exposition is rendered.

use std::cell::Cell;

use serde_json::{json, Value};

/// Most finite bounds a histogram has; one more bucket holds what is above them all (+Inf).
pub const MAX_BOUNDS: usize = 15;

pub struct Histogram {
    /// Inclusive upper bounds (Prometheus' `le`), strictly ascending.
    bounds: &'static [u64],
    /// `counts[i]`: observations in `(bounds[i - 1], bounds[i]]`; `counts[bounds.len()]`:
    /// those above the last bound.
    counts: [Cell<u64>; MAX_BOUNDS + 1],
    sum: Cell<u64>,
}

impl Histogram {
    /// A histogram with these bounds; fails to compile (in a `const`) or panics when they
    /// are too many or not ascending, since a misplaced bound would corrupt every sample.
    pub const fn new(bounds: &'static [u64]) -> Histogram {
        assert!(bounds.len() <= MAX_BOUNDS, "too many histogram bounds");
        let mut i = 1;
        while i < bounds.len() {
            assert!(bounds[i - 1] < bounds[i], "histogram bounds must ascend");
            i += 1;
        }
        Histogram {
            bounds,
            counts: [const { Cell::new(0) }; MAX_BOUNDS + 1],
            sum: Cell::new(0),
        }
    }

    /// Counts `value` in the first bucket whose bound is at least `value`.
    #[inline]
    pub fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        bump(&self.counts[bucket], 1);
        bump(&self.sum, value);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            bounds: self.bounds,
            counts: std::array::from_fn(|i| self.counts[i].get()),
            sum: self.sum.get(),
        }
    }
}

fn bump(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

/// A histogram's values at one moment; per bucket, not cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub bounds: &'static [u64],
    pub counts: [u64; MAX_BOUNDS + 1],
    pub sum: u64,
}

impl Snapshot {
    /// Per-bucket counts, the one above every bound (+Inf) last.
    pub fn buckets(&self) -> &[u64] {
        &self.counts[..=self.bounds.len()]
    }

    /// How many values were observed.
    pub fn count(&self) -> u64 {
        self.buckets().iter().fold(0, |a, b| a.wrapping_add(*b))
    }

    /// `{"le": [bounds], "counts": [per bucket, +Inf last], "sum": sum}`, with the bounds and
    /// the sum divided by `units_per_base` (1e9 turns nanoseconds into seconds), as
    /// Prometheus wants base units.
    pub fn to_json(&self, units_per_base: f64) -> Value {
        let le: Vec<f64> = self
            .bounds
            .iter()
            .map(|&b| b as f64 / units_per_base)
            .collect();
        json!({
            "le": le,
            "counts": self.buckets(),
            "sum": self.sum as f64 / units_per_base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BOUNDS: [u64; 3] = [10, 100, 1000];

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_is_at_least_it() {
        let h = Histogram::new(&BOUNDS);
        for v in [0, 10, 11, 100, 999, 1000, 1001, u64::MAX / 2] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(
            s.buckets(),
            &[2, 2, 2, 2],
            "expected 0,10 | 11,100 | 999,1000 | 1001,huge"
        );
        assert_eq!(s.count(), 8);
        assert_eq!(s.sum, 10 + 11 + 100 + 999 + 1000 + 1001 + u64::MAX / 2);
    }

    #[test]
    fn json_scales_bounds_and_sum_to_base_units() {
        static NS: [u64; 2] = [100_000, 1_000_000_000];
        let h = Histogram::new(&NS);
        h.observe(2_500_000);
        let v = h.snapshot().to_json(1e9);
        assert_eq!(v["le"], json!([0.0001, 1.0]));
        assert_eq!(v["counts"], json!([0, 1, 0]));
        assert_eq!(v["sum"], json!(0.0025));
    }

    #[test]
    #[should_panic(expected = "ascend")]
    fn bounds_out_of_order_are_refused() {
        static BAD: [u64; 2] = [5, 5];
        let _ = Histogram::new(&BAD);
    }
}
