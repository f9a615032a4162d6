//! A connection as its shard sees it: where messages for the connection's channels land.
//!
//! The connection layer sits above the shard, so the shard never names its type: each
//! connection registers itself as an `Rc<dyn Client>` and the shard calls through this trait
//! when a delivery, confirm, return or notice arrives for it.

use bytes::Bytes;

use crate::broker::inspect::ConnectionInfo;
use crate::broker::{CreditKey, Delivery};
use crate::ids::{ConnRef, QueueRef};
use crate::message::Message;

pub trait Client {
    fn cref(&self) -> ConnRef;
    /// A message for one of the connection's consumers. Returns the message's queue position
    /// when it has to go back (its channel closed meanwhile).
    fn deliver(&self, delivery: Delivery) -> Option<(QueueRef, u64)>;
    /// A queue took (`ok`) or refused a message the connection published in confirm mode.
    fn confirmed(&self, channel: u16, seq: u64, ok: bool);
    /// A reply for the channel's direct reply-to consumer, sent to an address carrying
    /// `secret`.
    fn direct_reply(&self, channel: u16, secret: u128, msg: &Message);
    /// The consumer's queue went away: basic.cancel from the server.
    fn consumer_cancelled(&self, channel: u16, tag: &Bytes);
    /// A mandatory message no queue took: basic.return 312 NO_ROUTE.
    fn basic_return(&self, channel: u16, msg: &Message);
    /// A queue granted back credit for `n` messages the connection published to `key`.
    fn publish_credit(&self, key: CreditKey, n: u32);
    /// A resource alarm changed (0: cleared).
    fn alarm(&self, state: u8);
    /// What `warren ctl list_connections` shows (`name` left empty: the shard fills it in).
    fn info(&self) -> Option<ConnectionInfo> {
        None
    }
    /// `warren ctl close_connection`: connection.close 320 CONNECTION_FORCED with
    /// `explanation`.
    fn force_close(&self, _explanation: &str) {}
}
