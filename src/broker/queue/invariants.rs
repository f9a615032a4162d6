//! What must hold of a queue after every operation, checked under `debug_assert!` (CI runs
//! the integration tests against a broker built with debug assertions on).
//!
//! Counts are checked every time; whole-queue scans only while the queue is small, so that a
//! debug build stays usable with a large backlog.

use super::{Queue, TRANSIT_WINDOW};

/// Queues at most this long (ready or unacked) get the full scans.
const SCAN_MAX: usize = 1024;

impl Queue {
    /// Panics with what drifted; returns true so that it can sit in `debug_assert!`.
    pub fn check_invariants(&self) -> bool {
        self.ready.check_invariants(SCAN_MAX);
        self.check_turns();
        for c in &self.consumers {
            assert!(
                c.in_transit <= TRANSIT_WINDOW,
                "queue {}: consumer {} has {} deliveries in transit, window {TRANSIT_WINDOW}",
                self.display_name(),
                c.spec.id,
                c.in_transit
            );
        }
        assert!(
            self.consumers.is_empty() <= self.ungranted.is_empty(),
            "queue {}: holds publisher credit back with no consumer",
            self.display_name()
        );
        assert!(
            self.ungranted.iter().all(|(_, _, n)| *n > 0),
            "queue {}: an empty run of held-back credit",
            self.display_name()
        );
        if self.unacked.len() <= SCAN_MAX && self.ready.len() <= SCAN_MAX {
            self.check_unacked();
        }
        true
    }

    /// `by_id` indexes every consumer; `turns` and `channel_waiting` hold exactly the queued
    /// consumers, once each.
    fn check_turns(&self) {
        assert_eq!(
            self.by_id.len(),
            self.consumers.len(),
            "queue {}: consumer index size",
            self.display_name()
        );
        for (i, c) in self.consumers.iter().enumerate() {
            assert_eq!(
                self.by_id.get(&c.spec.id),
                Some(&i),
                "queue {}: consumer {} indexed wrongly",
                self.display_name(),
                c.spec.id
            );
        }
        let queued = self.consumers.iter().filter(|c| c.queued).count();
        let waiting = self.turns.iter().chain(&self.channel_waiting);
        assert_eq!(
            queued,
            self.turns.len() + self.channel_waiting.len(),
            "queue {}: queued consumers and turns differ",
            self.display_name()
        );
        if queued <= SCAN_MAX {
            for id in waiting {
                let c = self.by_id.get(id).map(|&i| &self.consumers[i]);
                assert!(
                    c.is_some_and(|c| c.queued),
                    "queue {}: turn for consumer {id}, which is not queued",
                    self.display_name()
                );
            }
        }
    }

    /// Every unacked seq was issued, is not also ready, and is counted by its consumer.
    fn check_unacked(&self) {
        for &seq in self.unacked.keys() {
            assert!(
                seq < self.next_seq,
                "queue {}: unacked seq {seq} was never issued (next {})",
                self.display_name(),
                self.next_seq
            );
            assert!(
                !self.ready.contains(seq),
                "queue {}: seq {seq} is both ready and unacked",
                self.display_name()
            );
        }
        for c in &self.consumers {
            let held = self
                .unacked
                .values()
                .filter(|u| u.consumer_id == c.spec.id)
                .count();
            assert_eq!(
                held,
                c.in_flight as usize,
                "queue {}: consumer {} holds {held} unacked but counts {}",
                self.display_name(),
                c.spec.id,
                c.in_flight
            );
        }
    }
}
