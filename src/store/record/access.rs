//! Access-control records beside users and permissions: topic permissions and the limits of
//! users and vhosts. Same framing as every record (see the parent module).

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_longstr, put_shortstr, Record};
use crate::protocol::{FieldTable, Reader};

pub(super) const TOPIC_PERMISSION: u8 = 44;
pub(super) const TOPIC_PERMISSION_GONE: u8 = 45;
pub(super) const LIMITS: u8 = 46;
pub(super) const VHOST: u8 = 47;
pub(super) const VHOST_GONE: u8 = 48;

/// A virtual host: its own exchanges, queues, bindings, policies, permissions and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct VhostDef {
    pub name: Bytes,
    pub description: Bytes,
    /// Comma-separated, as rabbitmqctl takes them.
    pub tags: Bytes,
}

/// What a user may publish to (`write`) and bind from (`read`) one topic exchange of a vhost:
/// regular expressions on routing keys, with `{username}`, `{vhost}` and `{client_id}`
/// expanded per connection.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPermissionDef {
    pub user: Bytes,
    pub vhost: Bytes,
    pub exchange: Bytes,
    pub write: Bytes,
    pub read: Bytes,
}

/// Whose limits: a user's (`max-connections`, `max-channels`) or a vhost's
/// (`max-connections`, `max-queues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LimitScope {
    User,
    Vhost,
}

/// Every limit of a user or vhost, replacing the ones before; an empty table clears them.
/// Values are integers; a negative one means no limit, as in RabbitMQ.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsDef {
    pub scope: LimitScope,
    pub name: Bytes,
    pub limits: FieldTable,
}

pub(super) fn put(out: &mut BytesMut, record: &Record) {
    match record {
        Record::TopicPermission(p) => {
            out.put_u8(TOPIC_PERMISSION);
            put_shortstr(out, &p.user);
            put_shortstr(out, &p.vhost);
            put_shortstr(out, &p.exchange);
            put_longstr(out, &p.write);
            put_longstr(out, &p.read);
        }
        Record::TopicPermissionGone {
            user,
            vhost,
            exchange,
        } => {
            out.put_u8(TOPIC_PERMISSION_GONE);
            put_shortstr(out, user);
            put_shortstr(out, vhost);
            put_shortstr(out, exchange);
        }
        Record::Limits(l) => {
            out.put_u8(LIMITS);
            out.put_u8(match l.scope {
                LimitScope::User => 0,
                LimitScope::Vhost => 1,
            });
            put_shortstr(out, &l.name);
            l.limits.encode(out);
        }
        Record::Vhost(v) => {
            out.put_u8(VHOST);
            put_shortstr(out, &v.name);
            put_longstr(out, &v.description);
            put_longstr(out, &v.tags);
        }
        Record::VhostGone { name } => {
            out.put_u8(VHOST_GONE);
            put_shortstr(out, name);
        }
        _ => unreachable!("only access records are written here"),
    }
}

pub(super) fn read(kind: u8, r: &mut Reader) -> Option<Record> {
    match kind {
        VHOST => {
            return Some(Record::Vhost(VhostDef {
                name: r.shortstr().ok()?,
                description: r.longstr().ok()?,
                tags: r.longstr().ok()?,
            }))
        }
        VHOST_GONE => {
            return Some(Record::VhostGone {
                name: r.shortstr().ok()?,
            })
        }
        _ => {}
    }
    if kind == LIMITS {
        let scope = match r.octet().ok()? {
            0 => LimitScope::User,
            1 => LimitScope::Vhost,
            _ => return None,
        };
        return Some(Record::Limits(LimitsDef {
            scope,
            name: r.shortstr().ok()?,
            limits: r.table().ok()?,
        }));
    }
    let user = r.shortstr().ok()?;
    let vhost = r.shortstr().ok()?;
    let exchange = r.shortstr().ok()?;
    if kind == TOPIC_PERMISSION_GONE {
        return Some(Record::TopicPermissionGone {
            user,
            vhost,
            exchange,
        });
    }
    Some(Record::TopicPermission(TopicPermissionDef {
        user,
        vhost,
        exchange,
        write: r.longstr().ok()?,
        read: r.longstr().ok()?,
    }))
}
