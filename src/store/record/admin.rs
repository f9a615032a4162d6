//! Records of users, permissions and policies (see the parent module for the framing).

use bytes::{BufMut, BytesMut};

use super::*;

pub(super) fn put_user(out: &mut BytesMut, record: &Record) {
    match record {
        Record::User(u) => {
            out.put_u8(USER);
            put_shortstr(out, &u.name);
            put_longstr(out, &u.password_hash);
            put_shortstr(out, &u.hashing);
            put_longstr(out, &u.tags);
        }
        Record::UserGone { name } => {
            out.put_u8(USER_GONE);
            put_shortstr(out, name);
        }
        _ => unreachable!("only user records are written here"),
    }
}

pub(super) fn put_permission(out: &mut BytesMut, record: &Record) {
    match record {
        Record::Permission(p) => {
            out.put_u8(PERMISSION);
            put_shortstr(out, &p.user);
            put_shortstr(out, &p.vhost);
            put_longstr(out, &p.configure);
            put_longstr(out, &p.write);
            put_longstr(out, &p.read);
        }
        Record::PermissionGone { user, vhost } => {
            out.put_u8(PERMISSION_GONE);
            put_shortstr(out, user);
            put_shortstr(out, vhost);
        }
        _ => unreachable!("only permission records are written here"),
    }
}

pub(super) fn put_policy(out: &mut BytesMut, record: &Record) {
    match record {
        Record::Policy(p) => {
            out.put_u8(POLICY);
            put_shortstr(out, &p.vhost);
            put_shortstr(out, &p.name);
            out.put_u8(u8::from(p.operator));
            put_longstr(out, &p.pattern);
            put_shortstr(out, &p.apply_to);
            out.put_i64(p.priority);
            p.definition.encode(out);
        }
        Record::PolicyGone {
            vhost,
            name,
            operator,
        } => {
            out.put_u8(POLICY_GONE);
            put_shortstr(out, vhost);
            put_shortstr(out, name);
            out.put_u8(u8::from(*operator));
        }
        _ => unreachable!("only policy records are written here"),
    }
}

pub(super) fn read_permission(kind: u8, r: &mut Reader) -> Option<Record> {
    let user = r.shortstr().ok()?;
    let vhost = r.shortstr().ok()?;
    if kind == PERMISSION_GONE {
        return Some(Record::PermissionGone { user, vhost });
    }
    Some(Record::Permission(PermissionDef {
        user,
        vhost,
        configure: r.longstr().ok()?,
        write: r.longstr().ok()?,
        read: r.longstr().ok()?,
    }))
}

pub(super) fn read_user(kind: u8, r: &mut Reader) -> Option<Record> {
    if kind == USER_GONE {
        return Some(Record::UserGone {
            name: r.shortstr().ok()?,
        });
    }
    Some(Record::User(UserDef {
        name: r.shortstr().ok()?,
        password_hash: r.longstr().ok()?,
        hashing: r.shortstr().ok()?,
        tags: r.longstr().ok()?,
    }))
}

pub(super) fn read_policy(kind: u8, r: &mut Reader) -> Option<Record> {
    if kind == POLICY_GONE {
        return Some(Record::PolicyGone {
            vhost: r.shortstr().ok()?,
            name: r.shortstr().ok()?,
            operator: r.octet().ok()? & 1 != 0,
        });
    }
    Some(Record::Policy(PolicyDef {
        vhost: r.shortstr().ok()?,
        name: r.shortstr().ok()?,
        operator: r.octet().ok()? & 1 != 0,
        pattern: r.longstr().ok()?,
        apply_to: r.shortstr().ok()?,
        priority: r.longlong().ok()? as i64,
        definition: r.table().ok()?,
    }))
}
