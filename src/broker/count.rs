//! The node's queue count, shared by every shard's broker, and its limit (`--queue-max`,
//! RabbitMQ's cluster_queue_limit), with the count of each vhost against its `max-queues`.
//! Touched only when a queue is created or removed (the lock is never on a message's path).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

#[derive(Debug, Default)]
pub struct QueueCount {
    counts: Mutex<Counts>,
    /// 0: no limit.
    max: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_vhost: HashMap<Bytes, usize>,
}

/// Which limit refused a new queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The vhost's `max-queues`.
    Vhost(u64),
    /// `--queue-max`.
    Node(usize),
}

impl QueueCount {
    pub fn new(max: usize) -> Self {
        QueueCount {
            counts: Mutex::default(),
            max,
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic elsewhere while holding it leaves plain counters behind: still usable.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new queue of `vhost`, unless its `vhost_max` or the node's limit is reached.
    pub fn try_add(&self, vhost: &Bytes, vhost_max: Option<u64>) -> Result<(), Full> {
        let mut c = self.counts();
        let in_vhost = c.per_vhost.get(vhost).copied().unwrap_or(0);
        if let Some(max) = vhost_max.filter(|max| in_vhost as u64 >= *max) {
            return Err(Full::Vhost(max));
        }
        if self.max != 0 && c.total >= self.max {
            return Err(Full::Node(self.max));
        }
        c.total += 1;
        *c.per_vhost.entry(vhost.clone()).or_default() += 1;
        Ok(())
    }

    /// Counts a queue that exists whatever the limits (one recovered at start).
    pub fn add(&self, vhost: &Bytes) {
        let mut c = self.counts();
        c.total += 1;
        *c.per_vhost.entry(vhost.clone()).or_default() += 1;
    }

    pub fn remove(&self, vhost: &[u8]) {
        let mut c = self.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_vhost.get_mut(vhost) {
            *n -= 1;
            if *n == 0 {
                c.per_vhost.remove(vhost);
            }
        }
    }

    pub fn get(&self) -> usize {
        self.counts().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_holds_and_a_removal_makes_room() {
        let v = Bytes::from_static(b"/");
        let c = QueueCount::new(2);
        assert!(c.try_add(&v, None).is_ok() && c.try_add(&v, None).is_ok());
        assert_eq!(
            c.try_add(&v, None),
            Err(Full::Node(2)),
            "the third is refused"
        );
        assert_eq!(c.get(), 2);
        c.remove(&v);
        assert!(c.try_add(&v, None).is_ok());
        c.add(&v);
        assert_eq!(c.get(), 3, "recovered queues count beyond the limit");
        let unlimited = QueueCount::new(0);
        assert!((0..1000).all(|_| unlimited.try_add(&v, None).is_ok()));
    }

    #[test]
    fn each_vhost_counts_against_its_own_limit() {
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"b"));
        let c = QueueCount::new(0);
        assert!(c.try_add(&a, Some(1)).is_ok());
        assert_eq!(c.try_add(&a, Some(1)), Err(Full::Vhost(1)));
        assert!(c.try_add(&b, Some(1)).is_ok(), "b has its own count");
        c.remove(&a);
        assert!(c.try_add(&a, Some(1)).is_ok());
        assert_eq!(c.get(), 2);
    }
}
