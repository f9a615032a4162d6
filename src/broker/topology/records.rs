//! Topology changes as stored records: which changes are durable, and the replica that the
//! stored changes rebuild at start.

use std::collections::HashMap;

use bytes::Bytes;

use super::{BindingChange, Dest, Topology, TopologyChange};
use crate::ids::QueueRef;
use crate::store::record::{BindingDef, DestName, Record};

/// Queues by (vhost, name).
pub type QueueNames = HashMap<(Bytes, Bytes), QueueRef>;

impl Topology {
    /// The record that makes a validated change durable, if it touches durable entities
    /// (an exchange, or a binding whose source and destination are both durable). Called on
    /// the owner shard before the change is applied.
    pub fn persisted(&self, change: &TopologyChange) -> Option<Record> {
        match change {
            TopologyChange::DeclareExchange {
                vhost,
                name,
                kind,
                durable: true,
                auto_delete,
                internal,
                arguments,
                ..
            } => Some(Record::Exchange {
                vhost: vhost.clone(),
                name: name.clone(),
                kind: *kind,
                auto_delete: *auto_delete,
                internal: *internal,
                arguments: arguments.clone(),
            }),
            TopologyChange::DeclareExchange { .. } => None,
            TopologyChange::DeleteExchange { vhost, name, .. } => self
                .exchange(vhost, name)
                .filter(|ex| ex.durable)
                .map(|_| Record::ExchangeGone {
                    vhost: vhost.clone(),
                    name: name.clone(),
                }),
            TopologyChange::Bind(b) | TopologyChange::Unbind(b) => {
                let source_durable = self
                    .exchange(&b.vhost, &b.source)
                    .is_some_and(|ex| ex.durable);
                if !(source_durable && b.dest_durable) {
                    return None;
                }
                let def = BindingDef {
                    vhost: b.vhost.clone(),
                    source: b.source.clone(),
                    dest: match b.dest {
                        Dest::Queue(_) => DestName::Queue(b.dest_name.clone()),
                        Dest::Exchange(_) => DestName::Exchange(b.dest_name.clone()),
                    },
                    routing_key: b.routing_key.clone(),
                    arguments: b.arguments.clone(),
                };
                Some(if matches!(change, TopologyChange::Bind(_)) {
                    Record::Bind(def)
                } else {
                    Record::Unbind(def)
                })
            }
            TopologyChange::RemoveQueue {
                vhost,
                name,
                durable: true,
                ..
            } => Some(Record::QueueUnbound {
                vhost: vhost.clone(),
                name: name.clone(),
            }),
            TopologyChange::RemoveQueue { .. } => None,
            admin => admin_record(admin),
        }
    }

    /// The replica as the stored changes leave it. `queues` maps recovered queues' (vhost,
    /// name) to their references; bindings to other queues are dropped.
    pub fn replay(records: &[Record], queues: &QueueNames) -> Topology {
        let mut t = Topology::new();
        for record in records {
            let Some(change) = change_of(record, queues, &t) else {
                continue;
            };
            let checked = matches!(
                record,
                Record::User(_)
                    | Record::UserGone { .. }
                    | Record::Permission(_)
                    | Record::PermissionGone { .. }
                    | Record::TopicPermission(_)
                    | Record::TopicPermissionGone { .. }
                    | Record::Limits(_)
                    | Record::Vhost(_)
                    | Record::VhostGone { .. }
            );
            if checked {
                t.apply(&change);
            } else if let Ok(Some(change)) = t.validate(change) {
                t.apply(&change);
            }
        }
        t
    }
}

/// The record of a policy, user, permission, limits or vhost change (always stored).
fn admin_record(change: &TopologyChange) -> Option<Record> {
    match change {
        TopologyChange::SetPolicy(def) => Some(Record::Policy(def.clone())),
        TopologyChange::ClearPolicy {
            vhost,
            name,
            operator,
        } => Some(Record::PolicyGone {
            vhost: vhost.clone(),
            name: name.clone(),
            operator: *operator,
        }),
        TopologyChange::AddUser(user) | TopologyChange::UpdateUser(user) => {
            Some(Record::User(user.clone()))
        }
        TopologyChange::DeleteUser { name } => Some(Record::UserGone { name: name.clone() }),
        TopologyChange::SetPermissions(def) => Some(Record::Permission(def.clone())),
        TopologyChange::ClearPermissions { user, vhost } => Some(Record::PermissionGone {
            user: user.clone(),
            vhost: vhost.clone(),
        }),
        TopologyChange::SetTopicPermission(def) => Some(Record::TopicPermission(def.clone())),
        TopologyChange::ClearTopicPermissions {
            user,
            vhost,
            exchange,
        } => Some(Record::TopicPermissionGone {
            user: user.clone(),
            vhost: vhost.clone(),
            exchange: exchange.clone(),
        }),
        TopologyChange::SetLimits(def) => Some(Record::Limits(def.clone())),
        TopologyChange::AddVhost(def) => Some(Record::Vhost(def.clone())),
        TopologyChange::DeleteVhost { name } => Some(Record::VhostGone { name: name.clone() }),
        _ => None,
    }
}

/// The change a stored record stands for; None for records of other kinds, and for bindings
/// and removals naming queues or exchanges that are gone.
fn change_of(record: &Record, queues: &QueueNames, t: &Topology) -> Option<TopologyChange> {
    let queue = |vhost: &Bytes, name: &Bytes| queues.get(&(vhost.clone(), name.clone())).copied();
    let change = match record {
        Record::Exchange {
            vhost,
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        } => TopologyChange::DeclareExchange {
            id: 0,
            vhost: vhost.clone(),
            name: name.clone(),
            kind: *kind,
            durable: true,
            auto_delete: *auto_delete,
            internal: *internal,
            arguments: arguments.clone(),
        },
        Record::ExchangeGone { vhost, name } => TopologyChange::DeleteExchange {
            vhost: vhost.clone(),
            name: name.clone(),
            if_unused: false,
        },
        Record::Bind(def) | Record::Unbind(def) => {
            let (dest, dest_name) = match &def.dest {
                DestName::Queue(name) => match queue(&def.vhost, name) {
                    Some(q) => (Dest::Queue(q), name.clone()),
                    None => return None,
                },
                DestName::Exchange(name) => match t.exchange(&def.vhost, name) {
                    Some(ex) => (Dest::Exchange(ex.id), name.clone()),
                    None => return None,
                },
            };
            let b = BindingChange {
                vhost: def.vhost.clone(),
                source: def.source.clone(),
                dest,
                dest_name,
                dest_durable: true,
                routing_key: def.routing_key.clone(),
                arguments: def.arguments.clone(),
            };
            if matches!(record, Record::Bind(_)) {
                TopologyChange::Bind(b)
            } else {
                TopologyChange::Unbind(b)
            }
        }
        Record::QueueUnbound { vhost, name } => match queue(vhost, name) {
            Some(q) => TopologyChange::RemoveQueue {
                queue: q,
                vhost: vhost.clone(),
                name: name.clone(),
                durable: true,
            },
            None => return None,
        },
        Record::Policy(def) => TopologyChange::SetPolicy(def.clone()),
        Record::PolicyGone {
            vhost,
            name,
            operator,
        } => TopologyChange::ClearPolicy {
            vhost: vhost.clone(),
            name: name.clone(),
            operator: *operator,
        },
        access => return access_change_of(access),
    };
    Some(change)
}

/// The change a stored user, permission or limits record stands for.
fn access_change_of(record: &Record) -> Option<TopologyChange> {
    let change = match record {
        // Users and permissions were checked when made: applied as stored.
        Record::User(user) => TopologyChange::UpdateUser(user.clone()),
        Record::UserGone { name } => TopologyChange::DeleteUser { name: name.clone() },
        Record::Permission(def) => TopologyChange::SetPermissions(def.clone()),
        Record::PermissionGone { user, vhost } => TopologyChange::ClearPermissions {
            user: user.clone(),
            vhost: vhost.clone(),
        },
        Record::TopicPermission(def) => TopologyChange::SetTopicPermission(def.clone()),
        Record::TopicPermissionGone {
            user,
            vhost,
            exchange,
        } => TopologyChange::ClearTopicPermissions {
            user: user.clone(),
            vhost: vhost.clone(),
            exchange: exchange.clone(),
        },
        Record::Limits(def) => TopologyChange::SetLimits(def.clone()),
        Record::Vhost(def) => TopologyChange::AddVhost(def.clone()),
        Record::VhostGone { name } => TopologyChange::DeleteVhost { name: name.clone() },
        _ => return None,
    };
    Some(change)
}
