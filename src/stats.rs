//! Message counters of one shard thread, for the management API's rates and Prometheus:
//! plain `Cell`s in a thread-local (each shard is one thread), bumped where a channel
//! publishes, delivers, gets, acknowledges and confirms. No atomics, no locks: the counters
//! are read only on that thread, when shard 0 gathers them ([`snapshot`]). The engine's own
//! counts (io_uring submissions, fsync latency, group-commit size) follow the same pattern in
//! [`shard_metrics`].

pub mod histogram;
pub mod shard_metrics;

use std::cell::Cell;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Messages a channel received from a publisher (RabbitMQ's `publish`).
    Publish,
    /// Deliveries to consumers that acknowledge.
    Deliver,
    /// Deliveries to consumers in no-ack mode.
    DeliverNoAck,
    /// basic.get answered with a message, acknowledgement required.
    Get,
    /// basic.get in no-ack mode.
    GetNoAck,
    /// basic.get of an empty queue.
    GetEmpty,
    /// Deliveries and gets of messages delivered before.
    Redeliver,
    /// Messages acknowledged by consumers.
    Ack,
    /// Publishes confirmed to the publisher.
    Confirm,
    /// Mandatory publishes returned as unroutable.
    ReturnUnroutable,
    /// Publishes routed to no queue and dropped.
    DropUnroutable,
    /// Message records written to the store, and message bodies read back from it.
    DiskWrites,
    DiskReads,
    /// Churn: connections opened and closed, channels opened and closed, queues created,
    /// declared (created or not) and deleted.
    ConnectionCreated,
    ConnectionClosed,
    ChannelCreated,
    ChannelClosed,
    QueueCreated,
    QueueDeclared,
    QueueDeleted,
}

const COUNTERS: usize = 20;

thread_local! {
    static COUNTS: [Cell<u64>; COUNTERS] = const { [const { Cell::new(0) }; COUNTERS] };
}

/// Adds `n` to this thread's `counter`.
#[inline]
pub fn add(counter: Counter, n: u64) {
    COUNTS.with(|c| {
        let cell = &c[counter as usize];
        cell.set(cell.get().wrapping_add(n));
    });
}

thread_local! {
    /// Publishes to the default exchange by connections of this thread that closed, per vhost.
    static DEFAULT_EXCHANGE: std::cell::RefCell<Vec<(Vec<u8>, u64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A closing connection of `vhost` had published `n` messages to the default exchange
/// (counted on the connection while it lived: no lookup per message).
pub fn add_default_exchange(vhost: &[u8], n: u64) {
    if n == 0 {
        return;
    }
    DEFAULT_EXCHANGE.with(|all| {
        let mut all = all.borrow_mut();
        match all.iter_mut().find(|(v, _)| v == vhost) {
            Some((_, sum)) => *sum += n,
            None => all.push((vhost.to_vec(), n)),
        }
    });
}

/// This thread's closed connections' default-exchange publishes, per vhost.
pub fn default_exchange() -> Vec<(Vec<u8>, u64)> {
    DEFAULT_EXCHANGE.with(|all| all.borrow().clone())
}

/// This thread's counters so far.
pub fn snapshot() -> Totals {
    Totals(COUNTS.with(|c| std::array::from_fn(|i| c[i].get())))
}

/// Counter values, summed over shards by [`Totals::add`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals([u64; COUNTERS]);

impl Totals {
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter as usize]
    }

    pub fn add(&mut self, other: &Totals) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.wrapping_add(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_thread_and_sums() {
        add(Counter::Publish, 3);
        add(Counter::Ack, 1);
        let here = snapshot();
        let there = std::thread::spawn(|| {
            add(Counter::Publish, 5);
            snapshot()
        })
        .join()
        .expect("thread");
        assert_eq!(there.get(Counter::Publish), 5);
        assert_eq!(there.get(Counter::Ack), 0);
        let mut sum = here;
        sum.add(&there);
        assert_eq!(sum.get(Counter::Publish), here.get(Counter::Publish) + 5);
    }
}
