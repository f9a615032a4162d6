//! Virtual hosts: each has its own exchanges (the predeclared ones included), and its
//! deletion takes everything in it from the replica (each shard deletes its queues).

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;

use super::{Topology, TopologyChange, PREDECLARED};
use crate::protocol::FieldTable;
use crate::store::record::VhostDef;

/// A vhost: what it is, and its exchanges by name.
pub struct Vhost {
    pub def: VhostDef,
    pub(super) exchanges: HashMap<Bytes, u32>,
}

impl Topology {
    /// Adds a vhost with the exchanges every vhost starts with, numbered from `next_id`
    /// (the same on every replica, which applies the same changes in the same order).
    pub(super) fn add_vhost(&mut self, def: &VhostDef) {
        if self.vhosts.contains_key(&def.name) {
            return;
        }
        let vhost = def.name.clone();
        self.vhosts.insert(
            vhost.clone(),
            Vhost {
                def: def.clone(),
                exchanges: HashMap::new(),
            },
        );
        for (name, kind, internal) in PREDECLARED {
            self.apply_one(&TopologyChange::DeclareExchange {
                id: self.next_id,
                vhost: vhost.clone(),
                name: Bytes::from_static(name.as_bytes()),
                kind: *kind,
                durable: true,
                auto_delete: false,
                internal: *internal,
                arguments: FieldTable::default(),
            });
        }
    }

    /// The vhost goes with its exchanges (and so every binding in it), policies, permissions
    /// and limits.
    pub(super) fn delete_vhost(&mut self, name: &[u8]) {
        let Some(vhost) = self.vhosts.remove(name) else {
            return;
        };
        for id in vhost.exchanges.values() {
            self.exchanges.remove(id);
        }
        Rc::make_mut(&mut self.policies).clear_vhost(name);
        self.permissions.clear_vhost(name);
        self.topic_permissions.clear_vhost(name);
        self.limits.clear_vhost(name);
    }

    pub fn vhost(&self, name: &[u8]) -> Option<&Vhost> {
        self.vhosts.get(name)
    }

    pub fn vhosts(&self) -> impl Iterator<Item = &Vhost> {
        self.vhosts.values()
    }
}
