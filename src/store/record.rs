//! The on-disk record format shared by segments and definition logs.
//!
//! Every record is framed as `len: u32 | crc32: u32 | kind: u8 | fields`, where `len` counts
//! `kind` and the fields and the CRC covers them. A reader stops at the first frame that is
//! short or fails its CRC: that is a torn tail, left by a crash in the middle of a write.
//! Integers are big-endian; strings are AMQP short strings (u8 length) or long strings (u32
//! length); tables use the AMQP field-table encoding.

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;
use crate::protocol::FieldTable;
use crate::protocol::Reader;
use crate::routing::ExchangeKind;

mod access;
mod admin;
pub use access::{LimitScope, LimitsDef, TopicPermissionDef, VhostDef};

pub const HEADER_BYTES: usize = 8;
/// The vhost every data directory starts with.
pub const DEFAULT_VHOST: &[u8] = b"/";
/// No record is larger than this (a body is capped well below it by max-message-size); a
/// claimed length above it is treated as a torn tail, never allocated.
pub const MAX_RECORD_BYTES: usize = 1 << 30;
/// No queue's seq gets this far (seqs count up by one per message from 1); a record claiming
/// more is corrupt, even with a good CRC: recovery would overflow the queue's next seq.
pub const MAX_SEQ: u64 = i64::MAX as u64;

const PUBLISH: u8 = 1;
const ACK: u8 = 2;
const QUEUE: u8 = 10;
const QUEUE_GONE: u8 = 11;
const EXCHANGE: u8 = 20;
const EXCHANGE_GONE: u8 = 21;
const BIND: u8 = 22;
const UNBIND: u8 = 23;
const QUEUE_UNBOUND: u8 = 24;
const POLICY: u8 = 30;
const POLICY_GONE: u8 = 31;
const USER: u8 = 40;
const USER_GONE: u8 = 41;
const PERMISSION: u8 = 42;
const PERMISSION_GONE: u8 = 43;

/// Where a binding leads, by name (queue references do not survive a restart).
#[derive(Debug, Clone, PartialEq)]
pub enum DestName {
    Queue(Bytes),
    Exchange(Bytes),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindingDef {
    pub vhost: Bytes,
    pub source: Bytes,
    pub dest: DestName,
    pub routing_key: Bytes,
    pub arguments: FieldTable,
}

/// A policy (or, with `operator`, an operator policy) as stored: the broker compiles its
/// pattern and checks its definition before it is ever written.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDef {
    pub vhost: Bytes,
    pub name: Bytes,
    pub operator: bool,
    pub pattern: Bytes,
    /// `queues`, `exchanges` or `all`.
    pub apply_to: Bytes,
    pub priority: i64,
    /// Definition keys without the `x-` of the arguments they stand for.
    pub definition: FieldTable,
}

/// A user as stored: a salted password hash (never the password) in RabbitMQ's format.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDef {
    pub name: Bytes,
    /// Salt and digest, as RabbitMQ's `password_hash` holds them before base64; empty: the
    /// user cannot log in with a password.
    pub password_hash: Bytes,
    /// `rabbit_password_hashing_sha256` (or `_sha512`, `_md5`).
    pub hashing: Bytes,
    /// Comma-separated tags (`administrator`, `monitoring`, ...).
    pub tags: Bytes,
}

/// What a user may do in a vhost: three regular expressions on resource names.
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionDef {
    pub user: Bytes,
    pub vhost: Bytes,
    pub configure: Bytes,
    pub write: Bytes,
    pub read: Bytes,
}

/// A record as read back.
#[derive(Debug, Clone)]
pub enum Record {
    /// A message of a queue: persistent in a durable queue, or any message whose body was
    /// paged out of memory (`transient`: not to be recovered).
    Publish {
        queue_id: u64,
        seq: u64,
        redelivered: bool,
        transient: bool,
        msg: Message,
    },
    /// The message is gone from its queue (acked, dropped, purged, expired).
    Ack {
        queue_id: u64,
        seq: u64,
    },
    Queue {
        queue_id: u64,
        vhost: Bytes,
        name: Bytes,
        auto_delete: bool,
        arguments: FieldTable,
    },
    QueueGone {
        queue_id: u64,
    },
    Exchange {
        vhost: Bytes,
        name: Bytes,
        kind: ExchangeKind,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    },
    ExchangeGone {
        vhost: Bytes,
        name: Bytes,
    },
    Bind(BindingDef),
    Unbind(BindingDef),
    /// Every binding to the queue went with it.
    QueueUnbound {
        vhost: Bytes,
        name: Bytes,
    },
    /// A policy set (or replaced, by name).
    Policy(PolicyDef),
    /// A policy cleared.
    PolicyGone {
        vhost: Bytes,
        name: Bytes,
        operator: bool,
    },
    /// A user added or changed.
    User(UserDef),
    UserGone {
        name: Bytes,
    },
    Permission(PermissionDef),
    PermissionGone {
        user: Bytes,
        vhost: Bytes,
    },
    TopicPermission(TopicPermissionDef),
    /// A user's topic permissions on one exchange of a vhost cleared.
    TopicPermissionGone {
        user: Bytes,
        vhost: Bytes,
        exchange: Bytes,
    },
    Limits(LimitsDef),
    /// A vhost added (or its description and tags changed).
    Vhost(VhostDef),
    /// A vhost deleted, with everything in it.
    VhostGone {
        name: Bytes,
    },
}

/// Appends one framed record to `out`; `fields` writes the kind byte and the fields.
fn frame(out: &mut BytesMut, fields: impl FnOnce(&mut BytesMut)) -> usize {
    let at = out.len();
    out.put_u64(0); // len + crc, patched below
    fields(out);
    let len = out.len() - at - HEADER_BYTES;
    let crc = crc32fast::hash(&out[at + HEADER_BYTES..]);
    out[at..at + 4].copy_from_slice(&(len as u32).to_be_bytes());
    out[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
    out.len() - at
}

fn put_shortstr(out: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(255)];
    out.put_u8(s.len() as u8);
    out.put_slice(s);
}

/// A resource's vhost, after its other fields: written only when it is not `/`, so records of
/// the default vhost read the same as before vhosts existed.
fn put_vhost(out: &mut BytesMut, vhost: &[u8]) {
    if vhost != DEFAULT_VHOST {
        put_shortstr(out, vhost);
    }
}

/// The vhost [`put_vhost`] wrote: `/` when nothing follows.
fn read_vhost(r: &mut Reader) -> Option<Bytes> {
    if r.buf.is_empty() {
        Some(Bytes::from_static(DEFAULT_VHOST))
    } else {
        r.shortstr().ok().filter(|v| v.as_ref() != DEFAULT_VHOST)
    }
}

fn put_longstr(out: &mut BytesMut, s: &[u8]) {
    out.put_u32(s.len() as u32);
    out.put_slice(s);
}

/// Appends a publish record and returns its framed length.
pub fn put_publish(
    out: &mut BytesMut,
    queue_id: u64,
    seq: u64,
    redelivered: bool,
    transient: bool,
    msg: &Message,
) -> usize {
    frame(out, |out| {
        out.put_u8(PUBLISH);
        out.put_u64(queue_id);
        out.put_u64(seq);
        out.put_u8(u8::from(redelivered) | u8::from(transient) << 1);
        put_shortstr(out, &msg.exchange);
        put_shortstr(out, &msg.routing_key);
        put_longstr(out, &msg.properties);
        put_longstr(out, &msg.body);
    })
}

pub fn put_ack(out: &mut BytesMut, queue_id: u64, seq: u64) -> usize {
    frame(out, |out| {
        out.put_u8(ACK);
        out.put_u64(queue_id);
        out.put_u64(seq);
    })
}

/// Appends a definition record (anything but publish and ack).
pub fn put_def(out: &mut BytesMut, record: &Record) -> usize {
    frame(out, |out| match record {
        Record::Publish { .. } | Record::Ack { .. } => {
            unreachable!("messages are written with put_publish / put_ack")
        }
        Record::Queue {
            queue_id,
            vhost,
            name,
            auto_delete,
            arguments,
        } => {
            out.put_u8(QUEUE);
            out.put_u64(*queue_id);
            put_shortstr(out, name);
            out.put_u8(u8::from(*auto_delete));
            arguments.encode(out);
            put_vhost(out, vhost);
        }
        Record::QueueGone { queue_id } => {
            out.put_u8(QUEUE_GONE);
            out.put_u64(*queue_id);
        }
        Record::Exchange {
            vhost,
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        } => {
            out.put_u8(EXCHANGE);
            put_shortstr(out, name);
            put_shortstr(out, kind.as_str().as_bytes());
            out.put_u8(u8::from(*auto_delete) | u8::from(*internal) << 1);
            arguments.encode(out);
            put_vhost(out, vhost);
        }
        Record::ExchangeGone { vhost, name } => {
            out.put_u8(EXCHANGE_GONE);
            put_shortstr(out, name);
            put_vhost(out, vhost);
        }
        Record::Bind(b) | Record::Unbind(b) => {
            out.put_u8(if matches!(record, Record::Bind(_)) {
                BIND
            } else {
                UNBIND
            });
            put_shortstr(out, &b.source);
            match &b.dest {
                DestName::Queue(name) => {
                    out.put_u8(0);
                    put_shortstr(out, name);
                }
                DestName::Exchange(name) => {
                    out.put_u8(1);
                    put_shortstr(out, name);
                }
            }
            put_shortstr(out, &b.routing_key);
            b.arguments.encode(out);
            put_vhost(out, &b.vhost);
        }
        Record::QueueUnbound { vhost, name } => {
            out.put_u8(QUEUE_UNBOUND);
            put_shortstr(out, name);
            put_vhost(out, vhost);
        }
        Record::Policy(_) | Record::PolicyGone { .. } => admin::put_policy(out, record),
        Record::User(_) | Record::UserGone { .. } => admin::put_user(out, record),
        Record::Permission(_) | Record::PermissionGone { .. } => admin::put_permission(out, record),
        Record::TopicPermission(_)
        | Record::TopicPermissionGone { .. }
        | Record::Limits(_)
        | Record::Vhost(_)
        | Record::VhostGone { .. } => access::put(out, record),
    })
}

/// What [`next`] found at the front of a buffer.
pub enum Next {
    /// A whole, intact record and its framed length.
    Record(Record, usize),
    /// Nothing left.
    End,
    /// A short, oversized, corrupt or undecodable frame: a torn tail.
    Torn,
}

/// Reads the record at the front of `buf` (a slice of a whole file).
pub fn next(buf: &Bytes) -> Next {
    if buf.is_empty() {
        return Next::End;
    }
    if buf.len() < HEADER_BYTES {
        return Next::Torn;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_RECORD_BYTES || buf.len() - HEADER_BYTES < len {
        return Next::Torn;
    }
    let body = buf.slice(HEADER_BYTES..HEADER_BYTES + len);
    if crc32fast::hash(&body) != crc {
        return Next::Torn;
    }
    match decode(body) {
        Some(record) => Next::Record(record, HEADER_BYTES + len),
        None => Next::Torn,
    }
}

fn decode(body: Bytes) -> Option<Record> {
    let mut r = Reader::new(body);
    let kind = r.octet().ok()?;
    let record = match kind {
        PUBLISH => {
            let queue_id = r.longlong().ok()?;
            let seq = r.longlong().ok().filter(|&s| s <= MAX_SEQ)?;
            let flags = r.octet().ok()?;
            let exchange = r.shortstr().ok()?;
            let routing_key = r.shortstr().ok()?;
            let properties = r.longstr().ok()?;
            let body = r.longstr().ok()?;
            Record::Publish {
                queue_id,
                seq,
                redelivered: flags & 1 != 0,
                transient: flags & 2 != 0,
                msg: Message::new(exchange, routing_key, properties, body, flags & 2 == 0),
            }
        }
        ACK => Record::Ack {
            queue_id: r.longlong().ok()?,
            seq: r.longlong().ok().filter(|&s| s <= MAX_SEQ)?,
        },
        QUEUE | QUEUE_GONE | EXCHANGE | EXCHANGE_GONE | BIND | UNBIND | QUEUE_UNBOUND => {
            read_resource(kind, &mut r)?
        }
        POLICY | POLICY_GONE => admin::read_policy(kind, &mut r)?,
        USER | USER_GONE => admin::read_user(kind, &mut r)?,
        PERMISSION | PERMISSION_GONE => admin::read_permission(kind, &mut r)?,
        access::TOPIC_PERMISSION
        | access::TOPIC_PERMISSION_GONE
        | access::LIMITS
        | access::VHOST
        | access::VHOST_GONE => access::read(kind, &mut r)?,
        _ => return None,
    };
    // A record is exactly its fields: bytes after them mean it is not what the writer wrote.
    r.buf.is_empty().then_some(record)
}

/// A queue, exchange or binding record, after its kind byte.
fn read_resource(kind: u8, r: &mut Reader) -> Option<Record> {
    let record = match kind {
        QUEUE => {
            let queue_id = r.longlong().ok()?;
            let name = r.shortstr().ok()?;
            let auto_delete = r.octet().ok()? & 1 != 0;
            let arguments = r.table().ok()?;
            Record::Queue {
                queue_id,
                vhost: read_vhost(r)?,
                name,
                auto_delete,
                arguments,
            }
        }
        QUEUE_GONE => Record::QueueGone {
            queue_id: r.longlong().ok()?,
        },
        EXCHANGE => {
            let name = r.shortstr().ok()?;
            let kind = ExchangeKind::parse(&r.shortstr().ok()?)?;
            let flags = r.octet().ok()?;
            let arguments = r.table().ok()?;
            Record::Exchange {
                vhost: read_vhost(r)?,
                name,
                kind,
                auto_delete: flags & 1 != 0,
                internal: flags & 2 != 0,
                arguments,
            }
        }
        EXCHANGE_GONE => {
            let name = r.shortstr().ok()?;
            Record::ExchangeGone {
                vhost: read_vhost(r)?,
                name,
            }
        }
        BIND | UNBIND => {
            let source = r.shortstr().ok()?;
            let dest = match r.octet().ok()? {
                0 => DestName::Queue(r.shortstr().ok()?),
                1 => DestName::Exchange(r.shortstr().ok()?),
                _ => return None,
            };
            let routing_key = r.shortstr().ok()?;
            let arguments = r.table().ok()?;
            let def = BindingDef {
                vhost: read_vhost(r)?,
                source,
                dest,
                routing_key,
                arguments,
            };
            if kind == BIND {
                Record::Bind(def)
            } else {
                Record::Unbind(def)
            }
        }
        QUEUE_UNBOUND => {
            let name = r.shortstr().ok()?;
            Record::QueueUnbound {
                vhost: read_vhost(r)?,
                name,
            }
        }
        _ => return None,
    };
    Some(record)
}

#[cfg(test)]
mod tests;
