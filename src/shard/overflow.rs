//! Messages for rings that were full when they were sent, per target shard, with a fixed
//! bound.
//!
//! Who may add to it, and what happens at the bound:
//!
//! - **Connections** (socket-fed: publishes, acks, requests) only handle a frame while the
//!   overflow is empty ([`Overflow::is_empty`], checked before every frame, not only before
//!   every read). So they add at most what one frame fans out to, and then stop reading their
//!   sockets until the rings drain: TCP pushes back on the client.
//! - **The shard itself** (deliveries, confirms, replies, credit and settles made while
//!   handling what came in on the rings) cannot wait in the middle of handling a message, and
//!   must never drop one. So it is not refused here; instead the shard stops *producing*: the
//!   mailbox handles no more from its incoming rings while some target is at the bound
//!   ([`Overflow::room`] is zero), and takes at most `room` messages per turn otherwise. The
//!   peers' rings fill in turn and their connections stop reading. A shard pauses only on a
//!   target that is still draining: if that target is paused too (two shards each full
//!   towards the other), pausing both would deadlock, so both go on and the bound gives way
//!   until one of them drains (see `mailbox`).
//!
//! Each target's deque is allocated once at its full bound on first use, so queueing a
//! message never allocates.

use std::collections::VecDeque;

/// Messages held per target shard while its ring is full.
pub const OVERFLOW_MAX_MSGS: usize = 4096;

pub struct Overflow<T> {
    queues: Vec<VecDeque<T>>,
    bound: usize,
    /// Messages held for all targets.
    total: usize,
}

impl<T> Overflow<T> {
    pub fn new(targets: usize, bound: usize) -> Self {
        Overflow {
            queues: (0..targets).map(|_| VecDeque::new()).collect(),
            bound,
            total: 0,
        }
    }

    /// Nothing held: connections may go on reading.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Messages held for all targets.
    pub fn held(&self) -> usize {
        self.total
    }

    pub fn len(&self, target: usize) -> usize {
        self.queues.get(target).map_or(0, VecDeque::len)
    }

    /// How many more messages the fullest target may take before it is at the bound,
    /// leaving out the targets `skip` names.
    pub fn room(&self, skip: impl Fn(usize) -> bool) -> usize {
        let fullest = self
            .queues
            .iter()
            .enumerate()
            .filter(|(target, _)| !skip(*target))
            .map(|(_, q)| q.len())
            .max()
            .unwrap_or(0);
        self.bound.saturating_sub(fullest)
    }

    /// Sends `msg` to `target` through `push` (the ring), or holds it when the ring is full or
    /// older messages for `target` wait here (they go first: a ring is FIFO).
    pub fn send(&mut self, target: usize, msg: T, push: impl FnOnce(T) -> Result<(), T>) {
        let Some(queue) = self.queues.get_mut(target) else {
            debug_assert!(false, "overflow: no target {target}");
            return;
        };
        let msg = if queue.is_empty() {
            match push(msg) {
                Ok(()) => return,
                Err(msg) => msg,
            }
        } else {
            msg
        };
        if queue.capacity() == 0 {
            queue.reserve_exact(self.bound);
        }
        queue.push_back(msg);
        self.total += 1;
    }

    /// Moves held messages into their rings through `push` until each ring is full again.
    pub fn retry(&mut self, mut push: impl FnMut(usize, T) -> Result<(), T>) {
        if self.total == 0 {
            return;
        }
        for (target, queue) in self.queues.iter_mut().enumerate() {
            while let Some(msg) = queue.pop_front() {
                if let Err(msg) = push(target, msg) {
                    queue.push_front(msg);
                    break;
                }
                self.total -= 1;
            }
        }
        debug_assert!(self.check_invariants());
    }

    /// Panics unless `total` counts what the deques hold.
    pub fn check_invariants(&self) -> bool {
        let held: usize = self.queues.iter().map(VecDeque::len).sum();
        assert_eq!(
            held, self.total,
            "overflow holds {held}, counted {}",
            self.total
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_messages_go_first_and_in_order() {
        let mut o = Overflow::new(2, 8);
        o.send(1, 1, Err); // ring full
        o.send(1, 2, |_| panic!("must queue behind the held message"));
        assert_eq!(o.len(1), 2);
        assert_eq!(o.held(), 2, "expected both held messages counted");
        assert!(!o.is_empty());
        let mut got = Vec::new();
        o.retry(|_, m| {
            got.push(m);
            Ok(())
        });
        assert_eq!(got, vec![1, 2], "expected the held messages in order");
        assert!(o.is_empty());
    }

    #[test]
    fn room_counts_down_to_zero_at_the_bound() {
        let mut o = Overflow::new(3, 4);
        assert_eq!(o.room(|_| false), 4);
        for i in 0..4 {
            o.send(2, i, Err);
        }
        assert_eq!(
            o.room(|_| false),
            0,
            "expected no room with target 2 at the bound"
        );
        assert_eq!(
            o.room(|t| t == 2),
            4,
            "expected room when target 2 is left out"
        );
        o.retry(|_, m| if m < 2 { Ok(()) } else { Err(m) });
        assert_eq!(
            o.room(|_| false),
            2,
            "expected room again after two went out"
        );
    }
}
