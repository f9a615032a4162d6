//! The ready messages of one queue: one FIFO per priority level (one level unless the queue
//! was declared with `x-max-priority`), each sorted by `seq`, plus message expiry.
//!
//! Expiry is checked at the head of each level, as RabbitMQ does: with a queue-wide TTL the
//! head is always the oldest message, and a per-message TTL takes effect when the message
//! reaches the head.

use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Instant;

use super::Message;

pub struct Ready {
    pub seq: u64,
    pub redelivered: bool,
    /// Milliseconds on `now_ms`'s clock after which the message is dropped; 0 = never.
    pub expires_ms: u64,
    pub priority: u8,
    pub msg: Message,
    /// Times the message came back to the queue unacked (see `queue/redelivery.rs`).
    pub returns: u32,
    /// Body bytes, for x-max-length-bytes; kept apart because paging empties `msg.body`.
    body_len: u32,
}

impl Ready {
    pub fn new(seq: u64, redelivered: bool, expires_ms: u64, priority: u8, msg: Message) -> Self {
        // A message recovered with its body left on disk: its record's length stands in.
        let body_len = if msg.loc.paged {
            msg.loc.len
        } else {
            msg.body.len() as u32
        };
        Ready {
            seq,
            redelivered,
            expires_ms,
            priority,
            msg,
            returns: 0,
            body_len,
        }
    }

    pub fn body_len(&self) -> u64 {
        u64::from(self.body_len)
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms != 0 && self.expires_ms < now_ms
    }
}

/// Milliseconds since the first call, never 0 (0 means "no expiry").
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

pub struct ReadyList {
    levels: Vec<VecDeque<Ready>>,
    len: usize,
    /// Body bytes of every ready message.
    bytes: u64,
    /// Whether any message ever had an expiry (saves a clock read per dispatch otherwise).
    may_expire: bool,
}

impl ReadyList {
    pub fn new(max_priority: u8) -> Self {
        ReadyList {
            levels: (0..=max_priority).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
            may_expire: false,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn level(&self, priority: u8) -> usize {
        usize::from(priority).min(self.levels.len() - 1)
    }

    /// Appends a new message (its seq is the highest so far).
    pub fn push_back(&mut self, ready: Ready) {
        self.may_expire |= ready.expires_ms != 0;
        let level = self.level(ready.priority);
        self.bytes += ready.body_len();
        self.levels[level].push_back(ready);
        self.len += 1;
    }

    /// Puts a requeued message back in its original position.
    pub fn insert_in_order(&mut self, ready: Ready) {
        self.may_expire |= ready.expires_ms != 0;
        let index = self.level(ready.priority);
        let level = &mut self.levels[index];
        let at = level.partition_point(|r| r.seq < ready.seq);
        self.bytes += ready.body_len();
        level.insert(at, ready);
        self.len += 1;
    }

    /// The next message to deliver: highest priority first, oldest first within it.
    pub fn pop_front(&mut self) -> Option<Ready> {
        let ready = self
            .levels
            .iter_mut()
            .rev()
            .find_map(|level| level.pop_front())?;
        self.len -= 1;
        self.bytes -= ready.body_len();
        Some(ready)
    }

    /// The message with sequence number `seq` if it is the newest of its level.
    pub fn newest_mut(&mut self, seq: u64, priority: u8) -> Option<&mut Ready> {
        let level = self.level(priority);
        self.levels[level].back_mut().filter(|r| r.seq == seq)
    }

    /// Moves expired messages at the head of every level into `gone`; with `stop_at_paged`,
    /// a level stops at an expired message whose body is paged out, and true says one did.
    pub fn drop_expired(&mut self, gone: &mut Vec<Ready>, stop_at_paged: bool) -> bool {
        if !self.may_expire {
            return false;
        }
        let now = now_ms();
        let mut stopped = false;
        for level in &mut self.levels {
            while let Some(r) = level.front().filter(|r| r.expired(now)) {
                if stop_at_paged && r.msg.loc.paged {
                    stopped = true;
                    break;
                }
                if let Some(r) = level.pop_front() {
                    self.len -= 1;
                    self.bytes -= r.body_len();
                    gone.push(r);
                }
            }
        }
        stopped
    }

    /// Whether any message ever had an expiry and some are ready.
    pub fn may_expire(&self) -> bool {
        self.may_expire && self.len > 0
    }

    /// Moves every message into `gone`.
    pub fn drain_into(&mut self, gone: &mut Vec<Ready>) {
        for level in &mut self.levels {
            gone.extend(level.drain(..));
        }
        self.len = 0;
        self.bytes = 0;
    }

    /// The message `pop_front` would return.
    pub fn front(&self) -> Option<&Ready> {
        self.levels.iter().rev().find_map(|level| level.front())
    }

    /// Messages in delivery order, as far as `pop_front` would go without requeues.
    pub fn iter_front(&self) -> impl Iterator<Item = &Ready> {
        self.levels.iter().rev().flat_map(|level| level.iter())
    }

    /// True when the message with sequence number `seq` is ready.
    pub fn contains(&self, seq: u64) -> bool {
        self.levels.iter().any(|level| {
            let at = level.partition_point(|r| r.seq < seq);
            level.get(at).is_some_and(|r| r.seq == seq)
        })
    }

    /// Panics unless `len` counts every level and, for lists of at most `scan_max`
    /// messages, each level is in strictly increasing seq order and `bytes` sums the bodies.
    pub fn check_invariants(&self, scan_max: usize) {
        let total: usize = self.levels.iter().map(|l| l.len()).sum();
        assert_eq!(
            total, self.len,
            "ready list: len {} but levels hold {total}",
            self.len
        );
        if self.len > scan_max {
            return;
        }
        for (i, level) in self.levels.iter().enumerate() {
            let sorted = level
                .iter()
                .zip(level.iter().skip(1))
                .all(|(a, b)| a.seq < b.seq);
            assert!(sorted, "ready list: priority level {i} is out of seq order");
        }
        let bytes: u64 = self.levels.iter().flatten().map(Ready::body_len).sum();
        assert_eq!(
            bytes, self.bytes,
            "ready list: bytes {} but levels hold {bytes}",
            self.bytes
        );
    }

    /// The message with sequence number `seq`, wherever it is.
    pub fn find_mut(&mut self, seq: u64) -> Option<&mut Ready> {
        for level in &mut self.levels {
            let at = level.partition_point(|r| r.seq < seq);
            if level.get(at).is_some_and(|r| r.seq == seq) {
                return level.get_mut(at);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ready(seq: u64, priority: u8, expires_ms: u64) -> Ready {
        let msg = Message::new(
            Bytes::new(),
            Bytes::new(),
            Bytes::new(),
            Bytes::from(seq.to_string()),
            false,
        );
        Ready::new(seq, false, expires_ms, priority, msg)
    }

    #[test]
    fn higher_priority_first_then_fifo() {
        let mut list = ReadyList::new(5);
        for (seq, priority) in [(1, 0), (2, 5), (3, 3), (4, 5), (5, 9)] {
            list.push_back(ready(seq, priority, 0));
        }
        let order: Vec<u64> = std::iter::from_fn(|| list.pop_front())
            .map(|r| r.seq)
            .collect();
        // Priority 9 is capped at the queue's maximum, 5.
        assert_eq!(order, vec![2, 4, 5, 3, 1]);
    }

    #[test]
    fn requeue_goes_back_in_seq_order() {
        let mut list = ReadyList::new(0);
        list.push_back(ready(3, 0, 0));
        list.insert_in_order(ready(1, 0, 0));
        list.insert_in_order(ready(2, 0, 0));
        let order: Vec<u64> = std::iter::from_fn(|| list.pop_front())
            .map(|r| r.seq)
            .collect();
        assert_eq!(order, vec![1, 2, 3]);
    }

    #[test]
    fn expired_heads_are_dropped() {
        let mut list = ReadyList::new(0);
        let now = now_ms();
        list.push_back(ready(1, 0, now.saturating_sub(1).max(1)));
        list.push_back(ready(2, 0, 0));
        std::thread::sleep(std::time::Duration::from_millis(3));
        let mut gone = Vec::new();
        list.drop_expired(&mut gone, false);
        assert_eq!(gone.len(), 1);
        assert_eq!(list.len(), 1);
    }
}
