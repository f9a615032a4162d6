//! Exchanges and bindings: the routing replica every shard holds.
//!
//! Changes are decided by one owner shard (shard 0), which validates them against its own
//! replica, then sends the same change, in the same order, to every shard; the client's -ok
//! goes out once every shard has applied it. So a publish on any connection after bind-ok
//! routes with the binding, and every replica stays identical because each applies the same
//! deterministic changes in the same order (including auto-delete cascades).

mod records;
mod validate;
mod vhosts;

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use bytes::Bytes;
use smallvec::SmallVec;

use super::limits::Limits;
use super::ops::AmqpError;
use super::permissions::{Permission, Permissions};
use super::policy::{Policies, Policy};
use super::topic_permissions::TopicPermissions;
use super::users::Users;
use crate::ids::QueueRef;
use crate::protocol::FieldTable;
use crate::routing::{Bindings, ExchangeKind};
use crate::store::record::{
    LimitScope, LimitsDef, PermissionDef, PolicyDef, TopicPermissionDef, UserDef, VhostDef,
    DEFAULT_VHOST,
};
pub use records::QueueNames;
pub use validate::unknown_type;
pub use vhosts::Vhost;

/// Where a binding leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    Queue(QueueRef),
    Exchange(u32),
}

pub struct Exchange {
    pub id: u32,
    pub vhost: Bytes,
    pub name: Bytes,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    pub bindings: Bindings<Dest>,
    /// Where what this exchange routes nowhere goes: its `alternate-exchange` argument, else
    /// its policy's.
    pub alternate: Option<Bytes>,
    /// Messages published to it on this shard, and of those the ones it routed to a queue
    /// (the management API's `publish_in` and `publish_out`).
    pub publish_in: Cell<u64>,
    pub publish_out: Cell<u64>,
}

#[derive(Debug, Clone)]
pub enum TopologyChange {
    DeclareExchange {
        id: u32,
        vhost: Bytes,
        name: Bytes,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    },
    DeleteExchange {
        vhost: Bytes,
        name: Bytes,
        if_unused: bool,
    },
    Bind(BindingChange),
    Unbind(BindingChange),
    /// The queue is gone: every binding to it goes (and auto-delete exchanges left empty).
    RemoveQueue {
        queue: QueueRef,
        vhost: Bytes,
        name: Bytes,
        durable: bool,
    },
    /// A policy or operator policy set, or replaced by name.
    SetPolicy(PolicyDef),
    ClearPolicy {
        vhost: Bytes,
        name: Bytes,
        operator: bool,
    },
    /// A new user; refused if the name is taken.
    AddUser(UserDef),
    /// A user's new password hash or tags; refused if there is no such user.
    UpdateUser(UserDef),
    DeleteUser {
        name: Bytes,
    },
    SetPermissions(PermissionDef),
    ClearPermissions {
        user: Bytes,
        vhost: Bytes,
    },
    SetTopicPermission(TopicPermissionDef),
    /// One exchange's topic permissions of the user in the vhost; every one with an empty
    /// `exchange` (the default exchange is never a topic exchange).
    ClearTopicPermissions {
        user: Bytes,
        vhost: Bytes,
        exchange: Bytes,
    },
    /// A user's or vhost's limits, replacing the ones before (empty: cleared).
    SetLimits(LimitsDef),
    /// A new vhost with its predeclared exchanges; refused if the name is taken.
    AddVhost(VhostDef),
    /// The vhost and everything in it: exchanges, bindings, policies, permissions, limits
    /// (each shard deletes its queues in it as it applies this).
    DeleteVhost {
        name: Bytes,
    },
}

#[derive(Debug, Clone)]
pub struct BindingChange {
    /// Source and destination are both in this vhost.
    pub vhost: Bytes,
    pub source: Bytes,
    pub dest: Dest,
    /// The destination's name and durability: a binding is stored when both ends are durable.
    pub dest_name: Bytes,
    pub dest_durable: bool,
    pub routing_key: Bytes,
    pub arguments: FieldTable,
}

/// The exchanges every vhost starts with: (name, type, internal). `amq.rabbitmq.trace` is
/// RabbitMQ's firehose exchange, internal, listed as RabbitMQ lists it.
pub const PREDECLARED: &[(&str, ExchangeKind, bool)] = &[
    ("amq.direct", ExchangeKind::Direct, false),
    ("amq.fanout", ExchangeKind::Fanout, false),
    ("amq.topic", ExchangeKind::Topic, false),
    ("amq.headers", ExchangeKind::Headers, false),
    ("amq.match", ExchangeKind::Headers, false),
    ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
];

pub struct Topology {
    exchanges: HashMap<u32, Exchange>,
    vhosts: BTreeMap<Bytes, Vhost>,
    next_id: u32,
    /// Recomputed on every change (changes are rare, publishes are not).
    headers_bound: bool,
    /// Shared with the shard's queues, which read their policies from it.
    policies: Rc<Policies>,
    users: Users,
    permissions: Permissions,
    topic_permissions: TopicPermissions,
    limits: Limits,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

pub fn no_exchange(vhost: &[u8], name: &[u8]) -> AmqpError {
    AmqpError::not_found(format!(
        "no exchange '{}' in vhost '{}'",
        lossy(name),
        lossy(vhost)
    ))
}

pub fn internal_exchange(vhost: &[u8], name: &[u8]) -> AmqpError {
    AmqpError::access_refused(format!(
        "cannot publish to internal exchange '{}' in vhost '{}'",
        lossy(name),
        lossy(vhost)
    ))
}

pub fn default_exchange_refused() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange".to_string())
}

impl Topology {
    pub fn new() -> Self {
        let mut t = Topology {
            exchanges: HashMap::new(),
            vhosts: BTreeMap::new(),
            next_id: 1,
            headers_bound: false,
            policies: Rc::default(),
            users: Users::default(),
            permissions: Permissions::default(),
            topic_permissions: TopicPermissions::default(),
            limits: Limits::default(),
        };
        // Every data directory starts with `/` (a stored VhostGone takes it away again).
        t.apply(&TopologyChange::AddVhost(VhostDef {
            name: Bytes::from_static(DEFAULT_VHOST),
            description: Bytes::from_static(b"Default virtual host"),
            tags: Bytes::new(),
        }));
        t
    }

    pub fn exchange(&self, vhost: &[u8], name: &[u8]) -> Option<&Exchange> {
        self.exchanges
            .get(self.vhosts.get(vhost)?.exchanges.get(name)?)
    }

    /// True when some headers exchange has bindings, i.e. routing may need the headers.
    pub fn has_headers_bindings(&self) -> bool {
        self.headers_bound
    }

    pub fn exchanges(&self) -> impl Iterator<Item = &Exchange> {
        self.exchanges.values()
    }

    pub fn policies(&self) -> &Rc<Policies> {
        &self.policies
    }

    pub fn users(&self) -> &Users {
        &self.users
    }

    pub fn permissions(&self) -> &Permissions {
        &self.permissions
    }

    pub fn topic_permissions(&self) -> &TopicPermissions {
        &self.topic_permissions
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every vhost's `max-queues` limit, where it has one.
    pub fn vhost_queue_max(&self) -> HashMap<Bytes, u64> {
        self.vhosts
            .keys()
            .filter_map(|v| {
                let max = self.limits.get(LimitScope::Vhost, v, "max-queues")?;
                Some((v.clone(), max))
            })
            .collect()
    }

    /// Applies a validated change. Deterministic: every replica ends up identical.
    pub fn apply(&mut self, change: &TopologyChange) {
        self.apply_one(change);
        self.headers_bound = self
            .exchanges
            .values()
            .any(|ex| ex.kind == ExchangeKind::Headers && !ex.bindings.is_empty());
    }

    fn apply_one(&mut self, change: &TopologyChange) {
        match change {
            TopologyChange::DeclareExchange {
                id,
                vhost,
                name,
                kind,
                durable,
                auto_delete,
                internal,
                arguments,
            } => {
                let Some(names) = self.vhosts.get_mut(vhost) else {
                    return;
                };
                if names.exchanges.contains_key(name) {
                    return;
                }
                self.next_id = self.next_id.max(id + 1);
                names.exchanges.insert(name.clone(), *id);
                self.exchanges.insert(
                    *id,
                    Exchange {
                        id: *id,
                        vhost: vhost.clone(),
                        name: name.clone(),
                        kind: *kind,
                        durable: *durable,
                        auto_delete: *auto_delete,
                        internal: *internal,
                        arguments: arguments.clone(),
                        bindings: Bindings::new(*kind),
                        alternate: self.policies.alternate_exchange(vhost, name, arguments),
                        publish_in: Cell::new(0),
                        publish_out: Cell::new(0),
                    },
                );
            }
            TopologyChange::DeleteExchange { vhost, name, .. } => {
                let id = self
                    .vhosts
                    .get_mut(vhost)
                    .and_then(|v| v.exchanges.remove(name));
                if let Some(id) = id {
                    self.exchanges.remove(&id);
                    self.remove_destination(Dest::Exchange(id));
                }
            }
            TopologyChange::Bind(b) => {
                if let Some(id) = self.exchange(&b.vhost, &b.source).map(|ex| ex.id) {
                    if let Some(ex) = self.exchanges.get_mut(&id) {
                        ex.bindings.bind(b.dest, &b.routing_key, &b.arguments);
                    }
                }
            }
            TopologyChange::Unbind(b) => {
                let Some(id) = self.exchange(&b.vhost, &b.source).map(|ex| ex.id) else {
                    return;
                };
                if let Some(ex) = self.exchanges.get_mut(&id) {
                    ex.bindings.unbind(b.dest, &b.routing_key, &b.arguments);
                }
                self.auto_delete_if_unused(id);
            }
            TopologyChange::RemoveQueue { queue, .. } => {
                self.remove_destination(Dest::Queue(*queue))
            }
            admin => self.apply_admin(admin),
        }
    }

    /// Policies, users and permissions.
    fn apply_admin(&mut self, change: &TopologyChange) {
        match change {
            TopologyChange::SetPolicy(def) => {
                // Validated on the owner; a definition that fails here changes nothing.
                if let Ok(policy) = Policy::compile(def.clone()) {
                    Rc::make_mut(&mut self.policies).set(policy);
                    self.apply_policies();
                }
            }
            TopologyChange::ClearPolicy {
                vhost,
                name,
                operator,
            } => {
                Rc::make_mut(&mut self.policies).clear(vhost, name, *operator);
                self.apply_policies();
            }
            TopologyChange::AddUser(user) | TopologyChange::UpdateUser(user) => {
                self.users.put(user.clone());
            }
            TopologyChange::DeleteUser { name } => {
                self.users.remove(name);
                self.permissions.clear_user(name);
                self.topic_permissions.clear_user(name);
                self.limits.clear_user(name);
            }
            TopologyChange::SetPermissions(def) => {
                if let Ok(permission) = Permission::compile(def.clone()) {
                    self.permissions.set(permission);
                }
            }
            TopologyChange::ClearPermissions { user, vhost } => {
                self.permissions.clear(user, vhost);
            }
            TopologyChange::SetTopicPermission(def) => self.topic_permissions.set(def.clone()),
            TopologyChange::ClearTopicPermissions {
                user,
                vhost,
                exchange,
            } => self.topic_permissions.clear(user, vhost, exchange),
            TopologyChange::SetLimits(def) => self.limits.set(def.clone()),
            TopologyChange::AddVhost(def) => self.add_vhost(def),
            TopologyChange::DeleteVhost { name } => self.delete_vhost(name),
            _ => {}
        }
    }

    /// Exchanges take their alternate exchange from the policies as they now are.
    fn apply_policies(&mut self) {
        for ex in self.exchanges.values_mut() {
            ex.alternate = self
                .policies
                .alternate_exchange(&ex.vhost, &ex.name, &ex.arguments);
        }
    }

    fn remove_destination(&mut self, dest: Dest) {
        let mut emptied = Vec::new();
        for ex in self.exchanges.values_mut() {
            if ex.bindings.remove_destination(dest) > 0 && ex.auto_delete && ex.bindings.is_empty()
            {
                emptied.push(ex.id);
            }
        }
        emptied.sort_unstable();
        for id in emptied {
            self.auto_delete_if_unused(id);
        }
    }

    /// An auto-delete exchange goes when its last binding (as source) goes.
    fn auto_delete_if_unused(&mut self, id: u32) {
        let Some(ex) = self.exchanges.get(&id) else {
            return;
        };
        if ex.auto_delete && ex.bindings.is_empty() {
            let (vhost, name) = (ex.vhost.clone(), ex.name.clone());
            self.apply_one(&TopologyChange::DeleteExchange {
                vhost,
                name,
                if_unused: false,
            });
        }
    }

    /// One exchange's bindings; when they route nowhere, its alternate exchange (if it exists)
    /// is next, as in RabbitMQ.
    fn route_exchange(
        &self,
        ex: &Exchange,
        routing_key: &[u8],
        headers: Option<&FieldTable>,
        dests: &mut SmallVec<[Dest; 8]>,
    ) {
        let before = dests.len();
        ex.bindings.route(routing_key, headers, dests);
        if dests.len() == before {
            let alternate = ex.alternate.as_ref();
            if let Some(alternate) = alternate.and_then(|n| self.exchange(&ex.vhost, n)) {
                dests.push(Dest::Exchange(alternate.id));
            }
        }
    }

    /// Queues a message published to `exchange` reaches, each once, following
    /// exchange-to-exchange bindings and alternate exchanges (cycles allowed: each exchange
    /// is visited once).
    pub fn route(
        &self,
        vhost: &[u8],
        exchange: &[u8],
        routing_key: &[u8],
        headers: Option<&FieldTable>,
        queues: &mut SmallVec<[QueueRef; 8]>,
    ) -> Result<(), AmqpError> {
        let ex = self
            .exchange(vhost, exchange)
            .ok_or_else(|| no_exchange(vhost, exchange))?;
        if ex.internal {
            return Err(internal_exchange(vhost, exchange));
        }
        let mut dests: SmallVec<[Dest; 8]> = SmallVec::new();
        self.route_exchange(ex, routing_key, headers, &mut dests);
        let mut visited: SmallVec<[u32; 4]> = SmallVec::new();
        visited.push(ex.id);
        let mut i = 0;
        while i < dests.len() {
            match dests[i] {
                Dest::Queue(q) => queues.push(q),
                Dest::Exchange(id) => {
                    if !visited.contains(&id) {
                        visited.push(id);
                        if let Some(next) = self.exchanges.get(&id) {
                            self.route_exchange(next, routing_key, headers, &mut dests);
                        }
                    }
                }
            }
            i += 1;
        }
        // Each queue once, whatever number of bindings or exchanges led there: sorting keeps
        // a fanout to N queues at N log N, where a lookup per destination was N^2.
        if visited.len() > 1 || queues.len() > 1 {
            queues.sort_unstable();
            queues.dedup();
        }
        ex.publish_in.set(ex.publish_in.get() + 1);
        if !queues.is_empty() {
            ex.publish_out.set(ex.publish_out.get() + 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
