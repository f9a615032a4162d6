//! The broker state a shard owns: its queues, their messages and consumers.
//!
//! Everything here is single-threaded and synchronous. Operations never talk to a socket or a
//! ring directly: they push `(target shard, ShardMsg)` pairs into an outbox that the shard sends
//! once the operation returns, so no borrow of this state is ever held across a send.

mod admin;
pub mod count;
pub mod dead_letter;
pub mod envelope;
pub mod inspect;
pub mod limits;
pub mod ops;
pub mod overflow;
pub mod permissions;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod ready;
mod scoped;
#[cfg(test)]
mod tests;
pub mod topic_permissions;
pub mod topology;
pub mod users;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ready::Ready;
use rustc_hash::FxHashMap;
use slab::Slab;
use smallvec::SmallVec;

use count::QueueCount;
use dead_letter::DeadLetter;
pub use envelope::{CreditKey, Delivery, Origin, Outbox, QueueTarget, ShardMsg, Waiter};
pub use ops::{AmqpError, ConsumerSpec, Got, OpOk, QueueOp, SettleKind};
use policy::Policies;
pub use queue::Pushed;
use queue::Queue;
use scoped::Scoped;

pub use crate::ids::{ConnRef, QueueRef};
pub use crate::message::{Loc, Message};
use crate::store::pager::PageRequest;
use crate::store::recover::RecoveredQueue;
use crate::store::Store;

pub struct Broker {
    shard: u16,
    queues: Slab<Queue>,
    /// Slab keys by (vhost, name).
    by_name: Scoped<usize>,
    /// The exclusive queues of each owning connection (slab keys), so that a closing
    /// connection touches only its own queues.
    exclusive_by_conn: FxHashMap<ConnRef, SmallVec<[usize; 2]>>,
    next_serial: u32,
    sh: Shared,
    /// The last operation wrote a definition that must be durable before its -ok goes out.
    sync_wanted: bool,
    /// Queues on every shard, against `--queue-max`.
    queue_count: Arc<QueueCount>,
    /// The policies every queue here reads its settings through (shared with the topology).
    policies: Rc<Policies>,
    /// Each vhost's `max-queues` limit (vhost limits), where it has one.
    vhost_queue_max: HashMap<Bytes, u64>,
}

/// What every queue of a shard shares.
pub struct Shared {
    /// Unacked deliveries per (connection, channel), for basic.qos global=true.
    pub channel_in_flight: FxHashMap<(ConnRef, u16), u32>,
    /// The shard's store; None for an in-memory broker (benches).
    pub store: Option<Store<Waiter>>,
    /// Bytes of message bodies the shard's queues hold in memory, and how many they may hold
    /// before bodies of waiting messages are paged out to the store.
    pub resident: u64,
    pub budget: u64,
    /// Publisher credit granted back by this shard's queues since it was last sent, per
    /// (publishing connection, destination); see `queue/credit.rs`.
    pub grants: FxHashMap<(ConnRef, CreditKey), u32>,
    /// Some grant reached a batch.
    pub grants_due: bool,
    /// Bodies to read back from the store, per queue: (seq, where).
    pub page_in: Vec<PageRequest>,
    /// Reused buffer for messages leaving a queue in bulk.
    pub scratch: Vec<Ready>,
    /// Messages queues dead-lettered, for the shard to route.
    pub dead_letters: Vec<DeadLetter>,
}

impl Shared {
    /// Credit for `n` messages `conn` published to `key` goes back to it.
    pub fn grant(&mut self, conn: ConnRef, key: CreditKey, n: u32) {
        let gathered = self.grants.entry((conn, key)).or_insert(0);
        *gathered += n;
        self.grants_due |= *gathered >= envelope::GRANT_BATCH;
    }
}

impl Broker {
    /// A broker that keeps everything in memory.
    pub fn new(shard: usize) -> Self {
        Broker {
            shard: shard as u16,
            queues: Slab::new(),
            by_name: Scoped::default(),
            exclusive_by_conn: FxHashMap::default(),
            next_serial: 1,
            sh: Shared {
                channel_in_flight: FxHashMap::default(),
                store: None,
                resident: 0,
                budget: u64::MAX,
                grants: FxHashMap::default(),
                grants_due: false,
                page_in: Vec::new(),
                scratch: Vec::new(),
                dead_letters: Vec::new(),
            },
            sync_wanted: false,
            queue_count: Arc::default(),
            policies: Rc::default(),
            vhost_queue_max: HashMap::new(),
        }
    }

    /// Every vhost's `max-queues` limit now (absent: no limit); they bound new queues only.
    pub fn set_vhost_queue_max(&mut self, max: HashMap<Bytes, u64>) {
        self.vhost_queue_max = max;
    }

    /// Applies `policies` to every queue at once: new limits, TTLs and dead-letter targets
    /// hold from now; a queue now over a drop-head length limit drops its oldest messages.
    pub fn set_policies(&mut self, policies: Rc<Policies>) {
        self.policies = policies;
        for (_, q) in self.queues.iter_mut() {
            q.apply_policies(&self.policies);
            q.drop_over_limit(&mut self.sh);
        }
        debug_assert!(self.check_invariants());
    }

    /// Counts this broker's queues in `count`, shared by every shard, against its limit.
    pub fn count_queues_in(&mut self, count: Arc<QueueCount>) {
        for (_, q) in &self.queues {
            count.add(&q.vhost);
        }
        self.queue_count = count;
    }

    /// Adds queues recovered from the store, in the given order (their references are
    /// deterministic: slab keys from 0, serials from 1).
    pub fn recovered(&mut self, queues: Vec<RecoveredQueue>, resident: u64) {
        for rq in queues {
            let key = self.insert_queue(
                rq.queue_id,
                rq.vhost,
                rq.name,
                true,
                None,
                rq.auto_delete,
                rq.arguments,
            );
            let q = &mut self.queues[key];
            q.set_next_seq(rq.next_seq);
            for (seq, msg) in rq.messages {
                q.push_recovered(seq, msg);
            }
        }
        self.sh.resident = resident;
    }

    /// The reference a recovered queue gets: see [`Broker::recovered`].
    pub fn recovered_ref(shard: usize, index: usize) -> QueueRef {
        QueueRef {
            shard: shard as u16,
            key: index as u32,
            serial: index as u32 + 1,
        }
    }

    pub fn attach_store(&mut self, store: Store<Waiter>, budget: u64) {
        self.sh.store = Some(store);
        self.sh.budget = budget;
    }

    pub fn store(&self) -> Option<&Store<Waiter>> {
        self.sh.store.as_ref()
    }

    pub fn store_mut(&mut self) -> Option<&mut Store<Waiter>> {
        self.sh.store.as_mut()
    }

    pub fn resident_bytes(&self) -> u64 {
        self.sh.resident
    }

    /// True once after an operation that wrote a definition which must be durable before
    /// the operation's -ok goes out.
    pub fn take_sync_wanted(&mut self) -> bool {
        std::mem::take(&mut self.sync_wanted)
    }

    pub fn has_page_requests(&self) -> bool {
        !self.sh.page_in.is_empty()
    }

    pub fn take_page_requests(&mut self) -> Vec<PageRequest> {
        std::mem::take(&mut self.sh.page_in)
    }

    /// Bodies the pager read back for `queue`.
    pub fn paged_in(&mut self, queue: QueueRef, bodies: &mut Vec<(u64, Bytes)>, out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.paged_in(bodies, &mut self.sh);
        q.dispatch(&mut self.sh, out);
        q.drop_over_limit(&mut self.sh);
        debug_assert!(q.check_invariants());
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_queue(
        &mut self,
        queue_id: u64,
        vhost: Bytes,
        name: Bytes,
        durable: bool,
        owner: Option<ConnRef>,
        auto_delete: bool,
        arguments: crate::protocol::FieldTable,
    ) -> usize {
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let entry = self.queues.vacant_entry();
        let key = entry.key();
        let id = QueueRef {
            shard: self.shard,
            key: key as u32,
            serial,
        };
        entry.insert(Queue::new(
            id,
            queue_id,
            vhost.clone(),
            name.clone(),
            durable,
            owner,
            auto_delete,
            arguments,
        ));
        self.queues[key].apply_policies(&self.policies);
        self.by_name.insert(vhost, name, key);
        if let Some(owner) = owner {
            self.exclusive_by_conn.entry(owner).or_default().push(key);
        }
        key
    }

    /// A queue id unique across restarts: time, shard and a counter, mixed.
    fn new_queue_id(&self) -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x = nanos ^ (u64::from(self.shard) << 56) ^ (u64::from(self.next_serial) << 20);
        // splitmix64 finalizer
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    fn lookup(&self, queue: QueueRef) -> Option<usize> {
        let q = self.queues.get(queue.key as usize)?;
        (q.id == queue).then_some(queue.key as usize)
    }

    fn queue_ref(&self, key: usize) -> QueueRef {
        self.queues[key].id
    }

    /// The slab key of the queue a publish names, if it exists.
    fn find(&self, target: &QueueTarget) -> Option<usize> {
        match target {
            QueueTarget::Name { vhost, name } => self.by_name.get(vhost, name).copied(),
            QueueTarget::Ref(queue) => self.lookup(*queue),
        }
    }

    /// A publish routed to a queue on this shard. Hands the message back when the queue does
    /// not exist (to be dropped, or returned when mandatory); see [`Pushed`] otherwise.
    /// `from` is the publishing connection: the queue holds its credit back until it delivers
    /// the message (a missing or full queue grants it back at once).
    #[allow(clippy::result_large_err)] // handing the message back by value is the point
    pub fn enqueue(
        &mut self,
        target: QueueTarget,
        msg: Message,
        from: ConnRef,
        out: &mut Outbox,
    ) -> Result<Pushed, Message> {
        let credit = target.credit_key(self.shard);
        let Some(key) = self.find(&target) else {
            *self.sh.grants.entry((from, credit)).or_insert(0) += 1;
            return Err(msg);
        };
        let q = &mut self.queues[key];
        let pushed = q.push(msg, (from, credit), &mut self.sh);
        if pushed != Pushed::Rejected {
            q.dispatch(&mut self.sh, out);
            q.drop_over_limit(&mut self.sh);
            q.compact_waiting(&mut self.sh);
        }
        debug_assert!(q.check_invariants());
        Ok(pushed)
    }

    /// As [`Broker::enqueue`], for a message another queue dead-lettered: dropped (and
    /// reported as refused) when it would close a dead-letter cycle.
    #[allow(clippy::result_large_err)]
    pub fn enqueue_dead_letter(
        &mut self,
        target: QueueTarget,
        msg: Message,
        from: ConnRef,
        out: &mut Outbox,
    ) -> Result<Pushed, Message> {
        let name = self.find(&target).map(|k| self.queues[k].name.clone());
        if let Some(name) = name.filter(|n| dead_letter::is_cycle(n, &msg)) {
            crate::warn!(
                "dead-letter cycle: message dropped instead of entering queue '{}' again",
                String::from_utf8_lossy(&name)
            );
            return Ok(Pushed::Rejected);
        }
        self.enqueue(target, msg, from, out)
    }

    /// Messages queues dead-lettered, for the shard to route.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.sh.dead_letters)
    }

    pub fn has_dead_letters(&self) -> bool {
        !self.sh.dead_letters.is_empty()
    }

    /// Removes expired messages at the head of every queue that may hold some, so that they
    /// go (or are dead-lettered) on time even where no consumer looks, and deletes queues
    /// unused for their x-expires period.
    pub fn expire_all(&mut self, out: &mut Outbox) {
        for (_, q) in self.queues.iter_mut() {
            if q.may_expire() {
                q.expire(&mut self.sh);
            }
        }
        self.delete_unused(out);
        // Nobody waits for these deletions to be durable.
        self.sync_wanted = false;
    }

    pub fn credit(&mut self, queue: QueueRef, consumer_id: u64, n: u32, out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.credit(consumer_id, n);
        q.dispatch(&mut self.sh, out);
        debug_assert!(q.check_invariants());
    }

    pub fn settle(&mut self, queue: QueueRef, kind: SettleKind, seqs: &[u64], out: &mut Outbox) {
        let Some(key) = self.lookup(queue) else {
            return;
        };
        let q = &mut self.queues[key];
        q.settle(kind, seqs, &mut self.sh);
        q.dispatch(&mut self.sh, out);
        debug_assert!(q.check_invariants());
    }

    /// Moves the publisher credit gathered into `out`, one message per (connection,
    /// destination): the batches that are full, or with `all` everything.
    pub fn drain_grants(&mut self, all: bool, out: &mut Outbox) {
        self.sh.grants.retain(|&(conn, key), &mut n| {
            let send = all || n >= envelope::GRANT_BATCH;
            if send {
                out.push((
                    conn.shard as usize,
                    ShardMsg::PublishCredit { conn, key, n },
                ));
            }
            !send
        });
        self.sh.grants_due = false;
    }

    /// Some publisher's credit reached a batch.
    pub fn grants_due(&self) -> bool {
        self.sh.grants_due
    }

    pub fn has_grants(&self) -> bool {
        !self.sh.grants.is_empty()
    }

    /// Panics with what drifted; true otherwise, so that it can sit in `debug_assert!`. Scans
    /// every queue only while the shard holds few.
    pub fn check_invariants(&self) -> bool {
        assert_eq!(
            self.by_name.len(),
            self.queues.len(),
            "shard {}: {} names for {} queues",
            self.shard,
            self.by_name.len(),
            self.queues.len()
        );
        if self.queues.len() > 1024 {
            return true;
        }
        self.check_exclusive_index();
        for (key, q) in &self.queues {
            assert_eq!(
                self.by_name.get(&q.vhost, &q.name),
                Some(&key),
                "shard {}: queue name index",
                self.shard
            );
            assert_eq!(
                q.id.key as usize, key,
                "shard {}: queue reference",
                self.shard
            );
            q.check_invariants();
        }
        true
    }

    /// `exclusive_by_conn` lists exactly the exclusive queues, each under its owner.
    fn check_exclusive_index(&self) {
        let mut listed = 0;
        for (owner, keys) in &self.exclusive_by_conn {
            assert!(
                !keys.is_empty(),
                "shard {}: empty exclusive list",
                self.shard
            );
            for &key in keys {
                listed += 1;
                assert!(
                    self.queues
                        .get(key)
                        .is_some_and(|q| q.exclusive_owner == Some(*owner)),
                    "shard {}: exclusive index names queue {key}, not owned by {owner:?}",
                    self.shard
                );
            }
        }
        let exclusive = self
            .queues
            .iter()
            .filter(|(_, q)| q.exclusive_owner.is_some())
            .count();
        assert_eq!(
            listed, exclusive,
            "shard {}: exclusive index lists {listed} of {exclusive} exclusive queues",
            self.shard
        );
    }
}
