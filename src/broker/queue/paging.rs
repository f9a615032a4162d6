//! Paging: past the shard's memory budget, bodies of waiting messages leave memory (written to
//! the store first if they are not there yet) and are read back just before delivery.

use bytes::Bytes;

use super::Queue;
use crate::broker::Shared;
use crate::counter::decrease;
use crate::message::Loc;

impl Queue {
    /// A message that could not be dispatched at once waits: give it compact storage so it
    /// does not pin the read buffer it arrived in, or, past the shard's memory budget, drop its
    /// body from memory (writing it to the store first if it is not there yet).
    pub fn compact_waiting(&mut self, sh: &mut Shared) {
        let newest = self.next_seq - 1;
        let priority = self.last_priority;
        let durable = self.durable;
        let queue_id = self.queue_id;
        let Some(last) = self.ready.newest_mut(newest, priority) else {
            return;
        };
        if last.redelivered || last.msg.loc.paged {
            return;
        }
        let over_budget = sh.resident > sh.budget;
        match sh.store.as_mut() {
            Some(store) if over_budget && !last.msg.body.is_empty() => {
                let msg = &mut last.msg;
                if !msg.loc.is_stored() {
                    let transient = !(durable && msg.persistent);
                    msg.loc = store.append_publish(queue_id, newest, false, transient, msg);
                }
                decrease(&mut sh.resident, msg.body.len() as u64, "resident bytes");
                msg.body = Bytes::new();
                msg.loc.paged = true;
                msg.compact();
            }
            _ => last.msg.compact(),
        }
    }

    /// Bodies read back from the store for messages at the head.
    pub fn paged_in(&mut self, bodies: &mut Vec<(u64, Bytes)>, sh: &mut Shared) {
        self.paging_in = false;
        for (seq, body) in bodies.drain(..) {
            if let Some(r) = self.ready.find_mut(seq) {
                if r.msg.loc.paged {
                    sh.resident += body.len() as u64;
                    r.msg.body = body;
                    r.msg.loc.paged = false;
                }
            }
        }
    }

    /// Asks the shard's pager for the bodies of the paged messages at the head.
    pub(super) fn request_page_in(&mut self, sh: &mut Shared) {
        if self.paging_in {
            return;
        }
        let mut want: Vec<(u64, Loc)> = Vec::new();
        let mut bytes = 0u64;
        for r in self.ready.iter_front() {
            if want.len() >= 256 || bytes >= 4 << 20 {
                break;
            }
            if r.msg.loc.paged {
                want.push((r.seq, r.msg.loc));
                bytes += u64::from(r.msg.loc.len);
            }
        }
        if !want.is_empty() {
            self.paging_in = true;
            sh.page_in.push((self.id, want));
        }
    }
}
