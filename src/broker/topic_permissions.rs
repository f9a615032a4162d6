//! Topic permissions, as RabbitMQ has them: per (user, vhost, topic exchange), a `write`
//! regular expression on the routing keys the user may publish with and a `read` one on the
//! binding keys it may bind with. `{username}`, `{vhost}` and `{client_id}` in a pattern stand
//! for the connection's own. Without topic permissions on an exchange, every key is allowed.
//!
//! They are topology (replicated to every shard); a connection compiles its user's patterns
//! once, when it opens the vhost, and checks only exchanges of type topic.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::permissions::{Access, Matcher};
use crate::store::record::TopicPermissionDef;

/// Every (user, vhost, exchange) topic permission, as defined (patterns not yet expanded).
#[derive(Debug, Clone, Default)]
pub struct TopicPermissions {
    by_key: BTreeMap<(Bytes, Bytes, Bytes), TopicPermissionDef>,
}

/// What a pattern's variables stand for on one connection.
pub struct Variables<'a> {
    pub username: &'a str,
    pub vhost: &'a str,
    pub client_id: Option<&'a str>,
}

/// A pattern with its variables replaced.
fn expand(pattern: &[u8], vars: &Variables) -> Vec<u8> {
    let mut text = String::from_utf8_lossy(pattern).into_owned();
    text = text.replace("{username}", vars.username);
    text = text.replace("{vhost}", vars.vhost);
    if let Some(id) = vars.client_id {
        text = text.replace("{client_id}", id);
    }
    text.into_bytes()
}

/// Refuses patterns that do not compile (variables stand in as plain words).
pub fn validate(def: &TopicPermissionDef) -> Result<(), String> {
    let vars = Variables {
        username: "u",
        vhost: "v",
        client_id: Some("c"),
    };
    for pattern in [&def.write, &def.read] {
        Matcher::compile(&expand(pattern, &vars))?;
    }
    Ok(())
}

impl TopicPermissions {
    pub fn set(&mut self, def: TopicPermissionDef) {
        let key = (def.user.clone(), def.vhost.clone(), def.exchange.clone());
        self.by_key.insert(key, def);
    }

    /// Clears one exchange's, or with an empty `exchange` every one of the user's in `vhost`.
    pub fn clear(&mut self, user: &[u8], vhost: &[u8], exchange: &[u8]) {
        self.by_key.retain(|(u, v, x), _| {
            !(u.as_ref() == user && v.as_ref() == vhost && (exchange.is_empty() || x == exchange))
        });
    }

    /// A deleted user's topic permissions go with it.
    pub fn clear_user(&mut self, user: &[u8]) {
        self.by_key.retain(|(u, _, _), _| u.as_ref() != user);
    }

    /// A deleted vhost's topic permissions go with it.
    pub fn clear_vhost(&mut self, vhost: &[u8]) {
        self.by_key.retain(|(_, v, _), _| v.as_ref() != vhost);
    }

    /// In (user, vhost, exchange) order.
    pub fn iter(&self) -> impl Iterator<Item = &TopicPermissionDef> {
        self.by_key.values()
    }

    /// The user's topic permissions in `vhost`, compiled for one connection; None when it
    /// has none (every key allowed, nothing to check).
    pub fn for_connection(&self, vars: &Variables) -> Option<Rc<TopicGrants>> {
        let mut by_exchange = FxHashMap::default();
        for def in self.by_key.values() {
            if def.user.as_ref() != vars.username.as_bytes()
                || def.vhost.as_ref() != vars.vhost.as_bytes()
            {
                continue;
            }
            // Validated when set: a pattern that fails here allows nothing.
            let compile = |p: &Bytes| Matcher::compile(&expand(p, vars)).ok();
            let grant = (compile(&def.write), compile(&def.read));
            by_exchange.insert(def.exchange.clone(), grant);
        }
        (!by_exchange.is_empty()).then(|| Rc::new(TopicGrants { by_exchange }))
    }
}

/// One connection's compiled topic permissions, by exchange: (write, read).
pub struct TopicGrants {
    by_exchange: FxHashMap<Bytes, (Option<Matcher>, Option<Matcher>)>,
}

impl TopicGrants {
    /// May `key` be published with (`Write`) or bound with (`Read`) on the topic exchange
    /// `exchange`? An empty pattern allows only the empty key, as in RabbitMQ.
    pub fn allows(&self, access: Access, exchange: &[u8], key: &[u8]) -> bool {
        let Some((write, read)) = self.by_exchange.get(exchange) else {
            return true;
        };
        let matcher = if access == Access::Write { write } else { read };
        matcher.as_ref().is_some_and(|m| m.matches(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(write: &str, read: &str) -> TopicPermissionDef {
        TopicPermissionDef {
            user: Bytes::from_static(b"alice"),
            vhost: Bytes::from_static(b"/"),
            exchange: Bytes::from_static(b"amq.topic"),
            write: Bytes::copy_from_slice(write.as_bytes()),
            read: Bytes::copy_from_slice(read.as_bytes()),
        }
    }

    fn vars() -> Variables<'static> {
        Variables {
            username: "alice",
            vhost: "/",
            client_id: None,
        }
    }

    #[test]
    fn variables_expand_per_connection() {
        let mut all = TopicPermissions::default();
        all.set(def("^{username}\\.", ""));
        let grants = all.for_connection(&vars()).expect("alice has some");
        assert!(grants.allows(Access::Write, b"amq.topic", b"alice.x"));
        assert!(!grants.allows(Access::Write, b"amq.topic", b"bob.x"));
        assert!(!grants.allows(Access::Read, b"amq.topic", b"alice.x"));
        assert!(grants.allows(Access::Read, b"amq.topic", b""));
        assert!(grants.allows(Access::Write, b"other.topic", b"bob.x"));
        let bob = Variables {
            username: "bob",
            ..vars()
        };
        assert!(all.for_connection(&bob).is_none());
    }

    #[test]
    fn clearing_one_exchange_or_all() {
        let mut all = TopicPermissions::default();
        all.set(def(".*", ".*"));
        let mut other = def(".*", ".*");
        other.exchange = Bytes::from_static(b"t2");
        all.set(other);
        all.clear(b"alice", b"/", b"t2");
        assert_eq!(all.iter().count(), 1);
        all.clear(b"alice", b"/", b"");
        assert_eq!(all.iter().count(), 0);
        assert!(validate(&def("(", "")).is_err());
        assert!(validate(&def("^{username}-{vhost}-{client_id}$", "")).is_ok());
    }
}
