//! Node-wide counts of open connections per user and per vhost and of open channels per
//! user, against the limits `set_user_limits` and `set_vhost_limits` set. Connections live
//! on every shard, so the counts are shared; they are touched when a connection or channel
//! opens or closes, never per message.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Counts {
    user_connections: HashMap<String, u64>,
    vhost_connections: HashMap<Vec<u8>, u64>,
    user_channels: HashMap<String, u64>,
}

static COUNTS: Mutex<Option<Counts>> = Mutex::new(None);

fn counts() -> MutexGuard<'static, Option<Counts>> {
    // A panic elsewhere while holding the lock leaves plain counters: still usable.
    COUNTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Which limit refused a connection.
pub enum Refused {
    User(u64),
    Vhost(u64),
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: &K, by: u64) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(by);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Counts a connection of `user` to `vhost`, unless a limit (None: no limit) is reached.
pub fn open_connection(
    user: &str,
    vhost: &[u8],
    user_max: Option<u64>,
    vhost_max: Option<u64>,
) -> Result<(), Refused> {
    let mut guard = counts();
    let c = guard.get_or_insert_with(Counts::default);
    let by_vhost = c.vhost_connections.get(vhost).copied().unwrap_or(0);
    if let Some(max) = vhost_max.filter(|max| by_vhost >= *max) {
        return Err(Refused::Vhost(max));
    }
    let by_user = c.user_connections.get(user).copied().unwrap_or(0);
    if let Some(max) = user_max.filter(|max| by_user >= *max) {
        return Err(Refused::User(max));
    }
    *c.user_connections.entry(user.to_string()).or_default() += 1;
    *c.vhost_connections.entry(vhost.to_vec()).or_default() += 1;
    Ok(())
}

/// A counted connection closed with `channels` channels still open.
pub fn close_connection(user: &str, vhost: &[u8], channels: u64) {
    let mut guard = counts();
    let c = guard.get_or_insert_with(Counts::default);
    decrement(&mut c.user_connections, &user.to_string(), 1);
    decrement(&mut c.vhost_connections, &vhost.to_vec(), 1);
    decrement(&mut c.user_channels, &user.to_string(), channels);
}

/// Counts a channel of `user`, unless `max` is reached.
pub fn open_channel(user: &str, max: Option<u64>) -> bool {
    let mut guard = counts();
    let c = guard.get_or_insert_with(Counts::default);
    let n = c.user_channels.entry(user.to_string()).or_default();
    if max.is_some_and(|max| *n >= max) {
        return false;
    }
    *n += 1;
    true
}

pub fn close_channel(user: &str) {
    let mut guard = counts();
    let c = guard.get_or_insert_with(Counts::default);
    decrement(&mut c.user_channels, &user.to_string(), 1);
}
