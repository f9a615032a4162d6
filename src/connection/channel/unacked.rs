//! A channel's unacked deliveries: delivery tag -> (queue, queue position), in tag order, so
//! that an ack, nack or reject finds what it names and sends it back to its queue.

use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::broker::AmqpError;
use crate::ids::QueueRef;

struct Entry {
    delivery_tag: u64,
    queue: QueueRef,
    seq: u64,
}

/// Positions of unacked messages in one queue.
pub type QueueSeqs = (QueueRef, SmallVec<[u64; 4]>);
/// Unacked messages grouped by queue (usually one).
pub type Groups = SmallVec<[QueueSeqs; 1]>;

#[derive(Default)]
pub struct Unacked {
    /// Strictly increasing delivery tags.
    entries: VecDeque<Entry>,
}

impl Unacked {
    /// Deliveries not settled yet.
    pub fn count(&self) -> usize {
        self.entries.len()
    }

    pub fn push(&mut self, delivery_tag: u64, queue: QueueRef, seq: u64) {
        debug_assert!(
            self.entries
                .back()
                .is_none_or(|e| e.delivery_tag < delivery_tag),
            "delivery tag {delivery_tag} issued out of order"
        );
        self.entries.push_back(Entry {
            delivery_tag,
            queue,
            seq,
        });
    }

    /// Takes the deliveries an ack/nack/reject names, grouped by queue. `next_tag` is the
    /// next tag the channel would issue: RabbitMQ accepts multiple=true for a tag that was
    /// already acked, as long as the tag was issued on this channel.
    pub fn take(
        &mut self,
        delivery_tag: u64,
        multiple: bool,
        next_tag: u64,
    ) -> Result<Groups, AmqpError> {
        let mut groups = SmallVec::new();
        if !multiple {
            let index = self
                .entries
                .binary_search_by_key(&delivery_tag, |e| e.delivery_tag)
                .map_err(|_| unknown_tag(delivery_tag))?;
            if let Some(e) = self.entries.remove(index) {
                add_to_group(&mut groups, e.queue, e.seq);
            }
            return Ok(groups);
        }
        let all = delivery_tag == 0;
        while self
            .entries
            .front()
            .is_some_and(|e| all || e.delivery_tag <= delivery_tag)
        {
            if let Some(e) = self.entries.pop_front() {
                add_to_group(&mut groups, e.queue, e.seq);
            }
        }
        if groups.is_empty() && !all && delivery_tag >= next_tag {
            return Err(unknown_tag(delivery_tag));
        }
        Ok(groups)
    }

    /// Every unacked delivery, grouped by queue.
    pub fn take_all(&mut self) -> Groups {
        let mut groups = SmallVec::new();
        for e in self.entries.drain(..) {
            add_to_group(&mut groups, e.queue, e.seq);
        }
        groups
    }
}

fn unknown_tag(delivery_tag: u64) -> AmqpError {
    AmqpError::precondition(format!("unknown delivery tag {delivery_tag}"))
}

pub fn add_to_group(groups: &mut Groups, queue: QueueRef, seq: u64) {
    match groups.iter_mut().find(|(q, _)| *q == queue) {
        Some((_, seqs)) => seqs.push(seq),
        None => {
            let mut seqs = SmallVec::new();
            seqs.push(seq);
            groups.push((queue, seqs));
        }
    }
}
