//! The mesh of bounded SPSC rings between shards.
//!
//! Every ordered pair of shards (source, target) has one `rtrb` ring; only the source's thread
//! pushes and only the target's thread pops, so neither side takes a lock. A shard drains all of
//! its incoming rings in one batch per loop turn.
//!
//! Wake-ups: a shard with nothing to do parks its mailbox task on an eventfd read. Before parking
//! it sets `parked` and re-checks its rings; a source, after pushing a batch, reads `parked` and
//! writes the eventfd only if the target is parked. Both sides go through a SeqCst fence between
//! their store and their load (the classic Dekker pattern), so either the source sees `parked`
//! or the target sees the message: a wake-up is never lost, and a busy shard is never woken.
//!
//! A full ring is not an error: `try_push` hands the message back, and the caller holds it in a
//! small bounded overflow and stops reading from the sockets that feed it until the ring drains.

use std::os::fd::RawFd;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use rtrb::{Consumer, Producer, PushError, RingBuffer};

/// Per-shard wake state, on its own cache lines: every other shard reads `parked`.
#[repr(align(128))]
pub struct Waker {
    parked: AtomicBool,
    /// The shard takes nothing from its rings because its overflow towards some shard is at
    /// its bound (see `overflow`). Read by peers to avoid pausing on each other forever.
    paused: AtomicBool,
    eventfd: RawFd,
}

impl Waker {
    fn wake(&self) {
        if self.parked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: eventfd is a valid eventfd owned by this Waker for the process lifetime;
            // writing 8 bytes from a valid u64 is the eventfd protocol.
            unsafe {
                libc::write(self.eventfd, (&one as *const u64).cast(), 8);
            }
        }
    }
}

/// One shard's view of the mesh: its outgoing producers and incoming consumers.
pub struct Endpoint<T> {
    id: usize,
    outgoing: Vec<Option<Producer<T>>>,
    incoming: Vec<Option<Consumer<T>>>,
    wakers: Arc<[Waker]>,
    /// Targets pushed to since the last `wake_pending`.
    dirty: Vec<bool>,
    /// The incoming ring `drain` visits first; it moves on by one every call.
    drain_start: usize,
}

/// Builds the rings for `shards` shards with `capacity` slots each; endpoint i belongs to shard i.
pub fn mesh<T>(shards: usize, capacity: usize) -> std::io::Result<Vec<Endpoint<T>>> {
    let mut wakers = Vec::with_capacity(shards);
    for _ in 0..shards {
        // SAFETY: plain syscall with constant flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        wakers.push(Waker {
            parked: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            eventfd: fd,
        });
    }
    let wakers: Arc<[Waker]> = wakers.into();
    let mut endpoints: Vec<Endpoint<T>> = (0..shards)
        .map(|id| Endpoint {
            id,
            outgoing: (0..shards).map(|_| None).collect(),
            incoming: (0..shards).map(|_| None).collect(),
            wakers: wakers.clone(),
            dirty: vec![false; shards],
            drain_start: 0,
        })
        .collect();
    for source in 0..shards {
        for target in 0..shards {
            if source != target {
                let (producer, consumer) = RingBuffer::new(capacity);
                endpoints[source].outgoing[target] = Some(producer);
                endpoints[target].incoming[source] = Some(consumer);
            }
        }
    }
    Ok(endpoints)
}

impl<T> Endpoint<T> {
    /// How many shards the mesh connects.
    pub fn count(&self) -> usize {
        self.outgoing.len()
    }

    pub fn id(&self) -> usize {
        self.id
    }

    /// The eventfd the owning shard parks on.
    pub fn eventfd(&self) -> RawFd {
        self.wakers[self.id].eventfd
    }

    /// Messages pushed into this shard's outgoing rings that their targets have not taken
    /// yet. Reads each target's read index (one atomic load per ring), so it is for metrics,
    /// never for the message path; the targets drain meanwhile, so it is a moment's view.
    pub fn outgoing_len(&self) -> usize {
        self.outgoing
            .iter()
            .flatten()
            .map(|p| p.buffer().capacity() - p.slots())
            .sum()
    }

    /// Pushes to `target`'s ring, or hands the message back if the ring is full.
    pub fn try_push(&mut self, target: usize, msg: T) -> Result<(), T> {
        let Some(producer) = self.outgoing.get_mut(target).and_then(Option::as_mut) else {
            return Err(msg);
        };
        match producer.push(msg) {
            Ok(()) => {
                self.dirty[target] = true;
                Ok(())
            }
            Err(PushError::Full(msg)) => Err(msg),
        }
    }

    /// Wakes every parked target pushed to since the last call. Called once per batch.
    pub fn wake_pending(&mut self) {
        let mut any = false;
        for dirty in &self.dirty {
            any |= *dirty;
        }
        if !any {
            return;
        }
        // Pairs with the fence in `prepare_park`: our pushes are visible before we read `parked`.
        fence(Ordering::SeqCst);
        for (target, dirty) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                self.wakers[target].wake();
            }
        }
    }

    /// Pops up to `max` messages from the incoming rings, fairly: each ring may give at most
    /// its share of `max` in the first pass, and the ring visited first moves on by one every
    /// call, so one busy peer can neither starve the others nor always go first. What the
    /// first pass left of `max` goes to whichever rings still hold messages.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let count = self.incoming.len();
        let share = (max / count.saturating_sub(1).max(1)).max(1);
        let start = self.drain_start;
        self.drain_start = (start + 1) % count.max(1);
        let mut n = 0;
        for budget in [share, max] {
            for i in 0..count {
                let Some(consumer) = self.incoming[(start + i) % count].as_mut() else {
                    continue;
                };
                let mut taken = 0;
                while taken < budget && n < max {
                    let Ok(msg) = consumer.pop() else { break };
                    f(msg);
                    taken += 1;
                    n += 1;
                }
            }
        }
        debug_assert!(self.check_invariants());
        n
    }

    /// Panics unless the endpoint is wired as `mesh` built it: one ring to and from every
    /// other shard, none to itself, a dirty flag and a waker per shard.
    pub fn check_invariants(&self) -> bool {
        let count = self.outgoing.len();
        assert!(
            self.id < count,
            "ring endpoint {} of {count} shards",
            self.id
        );
        assert_eq!(
            self.incoming.len(),
            count,
            "ring endpoint {}: incoming rings",
            self.id
        );
        assert_eq!(
            self.dirty.len(),
            count,
            "ring endpoint {}: dirty flags",
            self.id
        );
        assert_eq!(
            self.wakers.len(),
            count,
            "ring endpoint {}: wakers",
            self.id
        );
        assert!(
            self.drain_start < count,
            "ring endpoint {}: drain starts at ring {}",
            self.id,
            self.drain_start
        );
        for peer in 0..count {
            let wired = peer != self.id;
            assert_eq!(
                self.outgoing[peer].is_some(),
                wired,
                "ring {} -> {peer}",
                self.id
            );
            assert_eq!(
                self.incoming[peer].is_some(),
                wired,
                "ring {peer} -> {}",
                self.id
            );
            assert!(
                wired || !self.dirty[peer],
                "ring endpoint {} dirty for itself",
                self.id
            );
        }
        true
    }

    fn incoming_empty(&self) -> bool {
        self.incoming.iter().flatten().all(|c| c.is_empty())
    }

    /// Marks this shard parked. Returns false (and unparks) if a message arrived meanwhile,
    /// in which case the caller must drain instead of waiting on the eventfd.
    pub fn prepare_park(&self) -> bool {
        let waker = &self.wakers[self.id];
        waker.parked.store(true, Ordering::SeqCst);
        // Pairs with the fence in `wake_pending`.
        fence(Ordering::SeqCst);
        if self.incoming_empty() {
            true
        } else {
            waker.parked.store(false, Ordering::SeqCst);
            false
        }
    }

    /// Tells the peers whether this shard has stopped taking from its rings. Relaxed: it
    /// is a hint that only decides whether a peer pauses one turn more or less.
    pub fn set_paused(&self, paused: bool) {
        self.wakers[self.id].paused.store(paused, Ordering::Relaxed);
    }

    /// Whether `target` said it stopped taking from its rings.
    pub fn is_paused(&self, target: usize) -> bool {
        self.wakers
            .get(target)
            .is_some_and(|w| w.paused.load(Ordering::Relaxed))
    }

    pub fn unpark(&self) {
        self.wakers[self.id].parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_drain_and_full_ring_hands_message_back() {
        let mut eps = mesh::<u32>(2, 4).expect("eventfd");
        let (a, b) = eps.split_at_mut(1);
        for i in 0..4 {
            assert!(a[0].try_push(1, i).is_ok());
        }
        assert_eq!(
            a[0].try_push(1, 99),
            Err(99),
            "a full ring must hand the message back"
        );
        let mut got = Vec::new();
        assert_eq!(b[0].drain(10, |m| got.push(m)), 4);
        assert_eq!(got, vec![0, 1, 2, 3], "ring must keep order");
    }

    #[test]
    fn outgoing_len_counts_what_targets_have_not_taken() {
        let mut eps = mesh::<u32>(3, 4).expect("eventfd");
        eps[0].try_push(1, 1).expect("space");
        eps[0].try_push(2, 2).expect("space");
        eps[0].try_push(2, 3).expect("space");
        assert_eq!(eps[0].outgoing_len(), 3);
        eps[2].drain(1, |_| {});
        assert_eq!(
            eps[0].outgoing_len(),
            2,
            "expected one fewer after shard 2 took one"
        );
        assert_eq!(eps[1].outgoing_len(), 0, "shard 1 sent nothing");
    }

    #[test]
    fn park_sees_pending_message() {
        let mut eps = mesh::<u32>(2, 4).expect("eventfd");
        let (a, b) = eps.split_at_mut(1);
        assert!(b[0].prepare_park(), "empty rings may park");
        a[0].try_push(1, 7).expect("space");
        a[0].wake_pending();
        assert!(
            !b[0].prepare_park(),
            "a pending message must prevent parking"
        );
    }

    /// Pushes `n` messages `(source, i)` from `source` to `target`.
    fn fill(eps: &mut [Endpoint<(usize, u32)>], source: usize, target: usize, n: u32) {
        for i in 0..n {
            eps[source]
                .try_push(target, (source, i))
                .expect("room in the ring");
        }
    }

    #[test]
    fn a_busy_ring_cannot_starve_another() {
        let mut eps = mesh::<(usize, u32)>(3, 1024).expect("eventfd");
        fill(&mut eps, 0, 2, 1000); // shard 0 floods shard 2
        fill(&mut eps, 1, 2, 1); // shard 1 sends one message
        let mut got = Vec::new();
        eps[2].drain(64, |m| got.push(m));
        assert!(
            got.contains(&(1, 0)),
            "expected shard 1's message in the first batch of 64 while shard 0 floods, got only {} messages from shard 0",
            got.iter().filter(|m| m.0 == 0).count()
        );
    }

    #[test]
    fn drain_order_rotates_between_turns() {
        let mut eps = mesh::<(usize, u32)>(3, 1024).expect("eventfd");
        fill(&mut eps, 0, 2, 100);
        fill(&mut eps, 1, 2, 100);
        let mut firsts = Vec::new();
        for _ in 0..4 {
            let mut first = None;
            eps[2].drain(8, |m| {
                first.get_or_insert(m.0);
            });
            firsts.push(first.expect("a message"));
        }
        assert!(
            firsts.contains(&0) && firsts.contains(&1),
            "expected each ring to be drained first in some turn, got first sources {firsts:?}"
        );
    }
}
