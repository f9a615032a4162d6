//! Topology changes as stored records: which changes are durable, and the replica that the
//! stored changes rebuild at start.

use std::collections::HashMap;

use bytes::Bytes;

use super::{BindingChange, Dest, Topology, TopologyChange};
use crate::ids::QueueRef;
use crate::store::record::{BindingDef, DestName, Record};

impl Topology {
    /// The record that makes a validated change durable, if it touches durable entities
    /// (an exchange, or a binding whose source and destination are both durable). Called on
    /// the owner shard before the change is applied.
    pub fn persisted(&self, change: &TopologyChange) -> Option<Record> {
        match change {
            TopologyChange::DeclareExchange {
                name,
                kind,
                durable: true,
                auto_delete,
                internal,
                arguments,
                ..
            } => Some(Record::Exchange {
                name: name.clone(),
                kind: *kind,
                auto_delete: *auto_delete,
                internal: *internal,
                arguments: arguments.clone(),
            }),
            TopologyChange::DeclareExchange { .. } => None,
            TopologyChange::DeleteExchange { name, .. } => self
                .exchange(name)
                .filter(|ex| ex.durable)
                .map(|_| Record::ExchangeGone { name: name.clone() }),
            TopologyChange::Bind(b) | TopologyChange::Unbind(b) => {
                let source_durable = self.exchange(&b.source).is_some_and(|ex| ex.durable);
                if !(source_durable && b.dest_durable) {
                    return None;
                }
                let def = BindingDef {
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
                name,
                durable: true,
                ..
            } => Some(Record::QueueUnbound { name: name.clone() }),
            TopologyChange::RemoveQueue { .. } => None,
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
        }
    }

    /// The replica as the stored changes leave it. `queues` maps recovered queue names to
    /// their references; bindings to other queues are dropped.
    pub fn replay(records: &[Record], queues: &HashMap<Bytes, QueueRef>) -> Topology {
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

/// The change a stored record stands for; None for records of other kinds, and for bindings
/// and removals naming queues or exchanges that are gone.
fn change_of(
    record: &Record,
    queues: &HashMap<Bytes, QueueRef>,
    t: &Topology,
) -> Option<TopologyChange> {
    let change = match record {
        Record::Exchange {
            name,
            kind,
            auto_delete,
            internal,
            arguments,
        } => TopologyChange::DeclareExchange {
            id: 0,
            name: name.clone(),
            kind: *kind,
            durable: true,
            auto_delete: *auto_delete,
            internal: *internal,
            arguments: arguments.clone(),
        },
        Record::ExchangeGone { name } => TopologyChange::DeleteExchange {
            name: name.clone(),
            if_unused: false,
        },
        Record::Bind(def) | Record::Unbind(def) => {
            let (dest, dest_name) = match &def.dest {
                DestName::Queue(name) => match queues.get(name) {
                    Some(q) => (Dest::Queue(*q), name.clone()),
                    None => return None,
                },
                DestName::Exchange(name) => match t.exchange(name) {
                    Some(ex) => (Dest::Exchange(ex.id), name.clone()),
                    None => return None,
                },
            };
            let b = BindingChange {
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
        Record::QueueUnbound { name } => match queues.get(name) {
            Some(q) => TopologyChange::RemoveQueue {
                queue: *q,
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
        _ => return None,
    };
    Some(change)
}
