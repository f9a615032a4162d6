//! Publisher credit (credit flow): how a queue holds its publishers back.
//!
//! A publishing connection holds credit per destination queue and stops reading its socket
//! when it runs out (see `connection/credit.rs`). A queue grants credit back as it *delivers*
//! the messages, not as it enqueues them: while its consumers are active and behind, its
//! publishers can run ahead by their initial credit at most, so the backlog stays bounded and
//! delivery is never starved by ingest. A queue with no consumer grants on enqueue (a backlog
//! is legitimate when nobody consumes; the memory budget pages it out), and when its last
//! consumer goes, or it is purged or deleted, it grants everything it held back.
//!
//! Grants are counted per (connection, destination) in the shard's [`Shared::grants`] and sent
//! back in batches (see `GRANT_BATCH`), one message for many messages delivered.

use super::Queue;
use crate::broker::envelope::CreditKey;
use crate::broker::Shared;
use crate::ids::ConnRef;

impl Queue {
    /// A message from `from` arrived: granted back at once when nobody consumes, held back
    /// until it is delivered otherwise.
    pub(super) fn hold_credit(&mut self, from: ConnRef, key: CreditKey, sh: &mut Shared) {
        if self.consumers.is_empty() {
            sh.grant(from, key, 1);
            return;
        }
        match self.ungranted.back_mut() {
            Some((conn, k, n)) if *conn == from && *k == key => *n += 1,
            _ => self.ungranted.push_back((from, key, 1)),
        }
    }

    /// `n` messages left the queue (delivered, taken, dropped): as many held-back messages,
    /// oldest first, are granted back to their publishers.
    pub(super) fn grant(&mut self, mut n: u32, sh: &mut Shared) {
        while n > 0 {
            let Some((conn, key, held)) = self.ungranted.front_mut() else {
                return;
            };
            let take = (*held).min(n);
            sh.grant(*conn, *key, take);
            *held -= take;
            n -= take;
            if *held == 0 {
                self.ungranted.pop_front();
            }
        }
    }

    /// Grants back everything held (no consumer left, purge, delete).
    pub(super) fn grant_all(&mut self, sh: &mut Shared) {
        for (conn, key, n) in self.ungranted.drain(..) {
            sh.grant(conn, key, n);
        }
    }

    /// Messages held back from their publishers.
    pub fn ungranted(&self) -> u64 {
        self.ungranted.iter().map(|(_, _, n)| u64::from(*n)).sum()
    }
}
