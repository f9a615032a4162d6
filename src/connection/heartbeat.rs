//! Heartbeats: sent when the link is idle, and a peer silent for two intervals is dropped.

use std::rc::Rc;
use std::time::Duration;

use super::Conn;
use crate::io::time;
use crate::io::Stream;
use crate::protocol::frame::encode_heartbeat;

/// Sends heartbeats when the link is idle and drops peers silent for two intervals.
pub async fn heartbeat_loop(conn: Rc<Conn>, stream: Rc<Stream>) {
    loop {
        let interval_secs = conn.state.borrow().heartbeat_secs;
        if interval_secs == 0 {
            // Not negotiated yet (or disabled): check again later.
            time::sleep(Duration::from_secs(1)).await;
            if conn.done.get() {
                return;
            }
            continue;
        }
        let interval = Duration::from_secs(u64::from(interval_secs));
        time::sleep(interval / 2).await;
        if conn.done.get() {
            return;
        }
        if conn.last_write.get().elapsed() >= interval / 2 {
            encode_heartbeat(&mut conn.out.borrow_mut());
            conn.writable.notify_one();
        }
        if conn.last_read.get().elapsed() > interval * 2 {
            crate::warn!(
                "closing AMQP connection {}: missed heartbeats from client, timeout: {}s",
                conn.peer,
                interval_secs
            );
            conn.done.set(true);
            stream.shutdown();
            return;
        }
    }
}
