//! Routing what this shard's queues dead-lettered, and the timer that expires messages in
//! queues no consumer looks at (so that a delay queue's messages are dead-lettered on time)
//! and deletes queues unused for their x-expires period.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Shard;
use crate::broker::publish::{fan_out, route};
use crate::broker::Origin;
use crate::io::time;

/// How often queues without consumers are checked for expired messages.
const EXPIRE_EVERY: Duration = Duration::from_millis(25);

impl Shard {
    /// Publishes every dead letter the queues left to its dead-letter exchange, as a publish
    /// with no connection behind it: no confirm, not mandatory. An exchange that is gone
    /// routes nowhere, and the message is dropped, as in RabbitMQ.
    pub(super) fn route_dead_letters(&self) {
        let letters = self.broker.borrow_mut().take_dead_letters();
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let origin = Origin::dead_letter(self.id as u16);
        let mut out = self.take_outbox();
        for letter in letters {
            let vhost = letter.vhost.clone();
            let msg = letter.republish(now_secs);
            let route = route(&self.topology.borrow(), self.count, &vhost, &msg);
            fan_out(route, &vhost, msg, origin, &mut out);
        }
        self.send_all(out);
    }
}

/// Expires messages of idle queues every [`EXPIRE_EVERY`].
pub(super) async fn expire_idle_queues(shard: Rc<Shard>) {
    loop {
        time::sleep(EXPIRE_EVERY).await;
        let mut out = shard.take_outbox();
        shard.broker.borrow_mut().expire_all(&mut out);
        let busy = !out.is_empty() || shard.broker.borrow().has_dead_letters();
        shard.send_all(out);
        if busy {
            shard.flush();
        }
    }
}
