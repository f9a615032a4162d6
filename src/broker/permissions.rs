//! Permissions, as RabbitMQ has them: per (user, vhost), three regular expressions on
//! resource names: `configure` (declare, delete), `write` (publish to an exchange, bind to a
//! queue or exchange) and `read` (consume, get, purge a queue; bind from an exchange). A user
//! without permissions on a vhost may not open it. The default exchange is named
//! `amq.default` for these checks.
//!
//! Permissions are topology, replicated to every shard; a connection takes its user's
//! permissions when it opens the vhost (a change applies to connections opened after it).

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use regex::bytes::Regex;

use crate::store::record::PermissionDef;

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Configure,
    Write,
    Read,
}

/// One of the three patterns: `.*` and the empty pattern (RabbitMQ's synonym for `^$`) are
/// decided without a regex.
#[derive(Debug, Clone)]
pub(super) enum Matcher {
    All,
    Nothing,
    Pattern(Regex),
}

impl Matcher {
    pub(super) fn compile(pattern: &[u8]) -> Result<Matcher, String> {
        match pattern {
            b".*" | b"^.*" | b"^.*$" | b".*$" => Ok(Matcher::All),
            b"" | b"^$" => Ok(Matcher::Nothing),
            _ => {
                let text = std::str::from_utf8(pattern)
                    .map_err(|_| "a permission pattern must be UTF-8".to_string())?;
                Regex::new(text).map(Matcher::Pattern).map_err(|e| {
                    let why = e.to_string().lines().last().unwrap_or_default().to_string();
                    format!("invalid permission pattern '{text}': {why}")
                })
            }
        }
    }

    pub(super) fn matches(&self, name: &[u8]) -> bool {
        match self {
            Matcher::All => true,
            Matcher::Nothing => name.is_empty(),
            Matcher::Pattern(re) => re.is_match(name),
        }
    }
}

/// A user's permissions in one vhost, compiled.
#[derive(Debug, Clone)]
pub struct Permission {
    pub def: PermissionDef,
    configure: Matcher,
    write: Matcher,
    read: Matcher,
}

impl Permission {
    pub fn compile(def: PermissionDef) -> Result<Permission, String> {
        Ok(Permission {
            configure: Matcher::compile(&def.configure)?,
            write: Matcher::compile(&def.write)?,
            read: Matcher::compile(&def.read)?,
            def,
        })
    }

    /// Full access (`.*` for all three), as the default user gets on the default vhost.
    pub fn full(user: &[u8], vhost: &[u8]) -> PermissionDef {
        PermissionDef {
            user: Bytes::copy_from_slice(user),
            vhost: Bytes::copy_from_slice(vhost),
            configure: Bytes::from_static(b".*"),
            write: Bytes::from_static(b".*"),
            read: Bytes::from_static(b".*"),
        }
    }

    /// May the user do `access` on the resource `name`? (The default exchange is "".)
    pub fn allows(&self, access: Access, name: &[u8]) -> bool {
        let name: &[u8] = if name.is_empty() {
            b"amq.default"
        } else {
            name
        };
        match access {
            Access::Configure => self.configure.matches(name),
            Access::Write => self.write.matches(name),
            Access::Read => self.read.matches(name),
        }
    }

    /// True when every check passes whatever the name (the common `.*` case).
    pub fn allows_all(&self, access: Access) -> bool {
        let m = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        matches!(m, Matcher::All)
    }
}

/// Every (user, vhost) permission.
#[derive(Debug, Clone, Default)]
pub struct Permissions {
    by_key: BTreeMap<(Bytes, Bytes), Rc<Permission>>,
}

impl Permissions {
    pub fn get(&self, user: &[u8], vhost: &[u8]) -> Option<&Rc<Permission>> {
        let key = (Bytes::copy_from_slice(user), Bytes::copy_from_slice(vhost));
        self.by_key.get(&key)
    }

    pub fn set(&mut self, permission: Permission) {
        let key = (permission.def.user.clone(), permission.def.vhost.clone());
        self.by_key.insert(key, Rc::new(permission));
    }

    pub fn clear(&mut self, user: &[u8], vhost: &[u8]) -> bool {
        let key = (Bytes::copy_from_slice(user), Bytes::copy_from_slice(vhost));
        self.by_key.remove(&key).is_some()
    }

    /// A deleted user's permissions go with it.
    pub fn clear_user(&mut self, user: &[u8]) {
        self.by_key.retain(|(u, _), _| u.as_ref() != user);
    }

    /// A deleted vhost's permissions go with it.
    pub fn clear_vhost(&mut self, vhost: &[u8]) {
        self.by_key.retain(|(_, v), _| v.as_ref() != vhost);
    }

    /// In (user, vhost) order.
    pub fn iter(&self) -> impl Iterator<Item = &PermissionDef> {
        self.by_key.values().map(|p| &p.def)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn permission(configure: &str, write: &str, read: &str) -> Permission {
        Permission::compile(PermissionDef {
            user: Bytes::from_static(b"u"),
            vhost: Bytes::from_static(b"/"),
            configure: Bytes::copy_from_slice(configure.as_bytes()),
            write: Bytes::copy_from_slice(write.as_bytes()),
            read: Bytes::copy_from_slice(read.as_bytes()),
        })
        .expect("valid patterns")
    }

    #[test]
    fn each_access_has_its_own_pattern() {
        let p = permission("^u-", ".*", "");
        assert!(p.allows(Access::Configure, b"u-queue"));
        assert!(!p.allows(Access::Configure, b"other"));
        assert!(p.allows(Access::Write, b"anything"));
        assert!(!p.allows(Access::Read, b"u-queue"));
        assert!(p.allows_all(Access::Write) && !p.allows_all(Access::Configure));
    }

    #[test]
    fn the_default_exchange_is_amq_default() {
        let p = permission("", "^amq\\.default$", "");
        assert!(p.allows(Access::Write, b""));
        assert!(!p.allows(Access::Write, b"amq.direct"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        let def = PermissionDef {
            user: Bytes::from_static(b"u"),
            vhost: Bytes::from_static(b"/"),
            configure: Bytes::from_static(b"("),
            write: Bytes::new(),
            read: Bytes::new(),
        };
        assert!(Permission::compile(def).is_err());
    }
}
