//! The node's queue count, shared by every shard's broker, and its limit (`--queue-max`,
//! RabbitMQ's cluster_queue_limit). Touched only when a queue is created or removed.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct QueueCount {
    count: AtomicUsize,
    /// 0: no limit.
    max: usize,
}

impl QueueCount {
    pub fn new(max: usize) -> Self {
        QueueCount {
            count: AtomicUsize::new(0),
            max,
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts a new queue; false (and not counted) when the limit is reached.
    pub fn try_add(&self) -> bool {
        let max = self.max;
        self.count
            .fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .is_ok()
    }

    /// Counts a queue that exists whatever the limit (one recovered at start).
    pub fn add(&self) {
        self.count.fetch_add(1, Relaxed);
    }

    pub fn remove(&self) {
        let _ = self
            .count
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    pub fn get(&self) -> usize {
        self.count.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_and_a_removal_makes_room() {
        let c = QueueCount::new(2);
        assert!(c.try_add() && c.try_add());
        assert!(!c.try_add(), "the third is refused");
        assert_eq!(c.get(), 2);
        c.remove();
        assert!(c.try_add());
        c.add();
        assert_eq!(c.get(), 3, "recovered queues count beyond the limit");
        let unlimited = QueueCount::new(0);
        assert!((0..1000).all(|_| unlimited.try_add()));
    }
}
