//! Publisher credit on the connection's side (credit flow; the queue's side is in
//! `broker/queue/credit.rs`).
//!
//! Each destination a connection publishes to starts with [`INITIAL_CREDIT`] messages; every
//! publish routed there spends one, and the queue gives them back as it delivers. While any
//! destination is out of credit the connection's socket is not read, so TCP pushes back on
//! the publisher, as it does for a full ring or a resource alarm. A connection that also
//! consumes with manual acks is read anyway: its acks are what lets its own queues deliver,
//! and holding them back could hold two such connections back forever.

use rustc_hash::FxHashMap;

use crate::broker::envelope::INITIAL_CREDIT as INITIAL;
use crate::broker::CreditKey;

/// Credit per destination (see `broker::envelope::INITIAL_CREDIT`).
pub const INITIAL_CREDIT: i32 = INITIAL as i32;

#[derive(Default)]
pub struct PublishCredit {
    /// Credit left per destination; a destination at its initial credit is not listed.
    left: FxHashMap<CreditKey, i32>,
    /// Destinations at zero credit or below.
    exhausted: u32,
}

impl PublishCredit {
    /// One message routed to `key`.
    pub fn spend(&mut self, key: CreditKey) {
        let left = self.left.entry(key).or_insert(INITIAL_CREDIT);
        *left -= 1;
        if *left == 0 {
            self.exhausted += 1;
        }
    }

    /// The queue gave back `n`; true when that unblocks the connection.
    pub fn grant(&mut self, key: CreditKey, n: u32) -> bool {
        let Some(left) = self.left.get_mut(&key) else {
            return false;
        };
        let was = *left;
        *left = left.saturating_add(i32::try_from(n).unwrap_or(i32::MAX));
        if was <= 0 && *left > 0 {
            self.exhausted -= 1;
        }
        if *left >= INITIAL_CREDIT {
            self.left.remove(&key);
        }
        was <= 0 && self.exhausted == 0
    }

    pub fn exhausted(&self) -> bool {
        self.exhausted > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::QueueRef;

    fn key(n: u32) -> CreditKey {
        CreditKey::Queue(QueueRef {
            shard: 0,
            key: n,
            serial: 1,
        })
    }

    #[test]
    fn exhausted_after_initial_credit_and_unblocked_by_a_grant() {
        let mut c = PublishCredit::default();
        for _ in 0..INITIAL_CREDIT - 1 {
            c.spend(key(1));
        }
        assert!(!c.exhausted());
        c.spend(key(1));
        c.spend(key(1)); // a read batch may overshoot
        assert!(c.exhausted());
        assert!(!c.grant(key(1), 1), "still at zero");
        assert!(c.grant(key(1), 200), "positive again");
        assert!(!c.exhausted());
    }

    #[test]
    fn every_exhausted_destination_must_be_granted() {
        let mut c = PublishCredit::default();
        for _ in 0..INITIAL_CREDIT {
            c.spend(key(1));
            c.spend(key(2));
        }
        assert!(!c.grant(key(1), 10), "key 2 is still out");
        assert!(c.grant(key(2), 10));
        c.grant(key(1), INITIAL_CREDIT as u32);
        c.grant(key(2), INITIAL_CREDIT as u32);
        assert!(
            c.left.is_empty(),
            "destinations back at their initial credit are forgotten"
        );
    }
}
