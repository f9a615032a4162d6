//! Checking a topology change on the owner shard before anyone applies it: equivalence of a
//! redeclared exchange, bindings to things that exist, valid `x-match`.

use super::{lossy, no_exchange, BindingChange, Dest, Exchange, Topology, TopologyChange};
use crate::broker::ops::AmqpError;
use crate::broker::permissions::Permission;
use crate::broker::policy::Policy;
use crate::broker::{limits, topic_permissions};
use crate::protocol::constants::COMMAND_INVALID;
use crate::protocol::FieldTable;
use crate::routing::ExchangeKind;
use crate::store::record::LimitScope;

impl Topology {
    /// Checks a change on the owner shard and fills in what the owner decides (exchange ids).
    /// Returns None when the change is a no-op (e.g. redeclaring an identical exchange).
    pub fn validate(&self, change: TopologyChange) -> Result<Option<TopologyChange>, AmqpError> {
        match change {
            TopologyChange::DeclareExchange {
                vhost,
                name,
                kind,
                durable,
                auto_delete,
                internal,
                arguments,
                ..
            } => {
                self.vhost_exists(&vhost)?;
                if let Some(existing) = self.exchange(&vhost, &name) {
                    check_equivalent(existing, kind, durable, auto_delete, internal)?;
                    check_alternate(existing, &arguments)?;
                    return Ok(None);
                }
                Ok(Some(TopologyChange::DeclareExchange {
                    id: self.next_id,
                    vhost,
                    name,
                    kind,
                    durable,
                    auto_delete,
                    internal,
                    arguments,
                }))
            }
            TopologyChange::DeleteExchange {
                vhost,
                name,
                if_unused,
            } => {
                let Some(ex) = self.exchange(&vhost, &name) else {
                    return Ok(None);
                };
                if if_unused && !ex.bindings.is_empty() {
                    return Err(AmqpError::precondition(format!(
                        "exchange '{}' in vhost '{}' in use",
                        lossy(&name),
                        lossy(&vhost)
                    )));
                }
                Ok(Some(TopologyChange::DeleteExchange {
                    vhost,
                    name,
                    if_unused,
                }))
            }
            TopologyChange::Bind(b) => self.validate_bind(b),
            TopologyChange::Unbind(b) => Ok(self
                .exchange(&b.vhost, &b.source)
                .is_some()
                .then_some(TopologyChange::Unbind(b))),
            change @ TopologyChange::RemoveQueue { .. } => Ok(Some(change)),
            change => self.validate_admin(change),
        }
    }

    /// Policies and users.
    fn validate_admin(&self, change: TopologyChange) -> Result<Option<TopologyChange>, AmqpError> {
        match change {
            TopologyChange::SetPolicy(def) => match self
                .vhost_exists(&def.vhost)
                .and_then(|()| Policy::compile(def).map_err(AmqpError::precondition))
            {
                // Setting a policy exactly as it is changes nothing (definitions loaded at
                // every start).
                Ok(policy) if self.policies.iter().any(|p| *p == policy.def) => Ok(None),
                Ok(policy) => Ok(Some(TopologyChange::SetPolicy(policy.def))),
                Err(e) => Err(e),
            },
            TopologyChange::ClearPolicy {
                vhost,
                name,
                operator,
            } => {
                if !self.policies.contains(&vhost, &name, operator) {
                    let kind = if operator {
                        "operator policy"
                    } else {
                        "policy"
                    };
                    return Err(AmqpError::not_found(format!(
                        "no {kind} '{}' in vhost '{}'",
                        lossy(&name),
                        lossy(&vhost)
                    )));
                }
                Ok(Some(TopologyChange::ClearPolicy {
                    vhost,
                    name,
                    operator,
                }))
            }
            TopologyChange::AddUser(user) => {
                if self.users.get(&user.name).is_some() {
                    return Err(AmqpError::precondition(format!(
                        "User \"{}\" already exists",
                        lossy(&user.name)
                    )));
                }
                Ok(Some(TopologyChange::AddUser(user)))
            }
            TopologyChange::UpdateUser(user) => {
                self.user_exists(&user.name)?;
                Ok(Some(TopologyChange::UpdateUser(user)))
            }
            TopologyChange::DeleteUser { name } => {
                self.user_exists(&name)?;
                Ok(Some(TopologyChange::DeleteUser { name }))
            }
            TopologyChange::SetPermissions(def) => {
                self.user_exists(&def.user)?;
                self.vhost_exists(&def.vhost)?;
                let permission = Permission::compile(def).map_err(AmqpError::precondition)?;
                Ok(Some(TopologyChange::SetPermissions(permission.def)))
            }
            TopologyChange::ClearPermissions { user, vhost } => {
                self.user_exists(&user)?;
                self.vhost_exists(&vhost)?;
                Ok(Some(TopologyChange::ClearPermissions { user, vhost }))
            }
            access => self.validate_access(access),
        }
    }

    /// Topic permissions and limits.
    fn validate_access(&self, change: TopologyChange) -> Result<Option<TopologyChange>, AmqpError> {
        match change {
            TopologyChange::SetTopicPermission(def) => {
                self.user_exists(&def.user)?;
                self.vhost_exists(&def.vhost)?;
                topic_permissions::validate(&def).map_err(AmqpError::precondition)?;
                Ok(Some(TopologyChange::SetTopicPermission(def)))
            }
            TopologyChange::ClearTopicPermissions {
                ref user,
                ref vhost,
                ..
            } => {
                self.user_exists(user)?;
                self.vhost_exists(vhost)?;
                Ok(Some(change))
            }
            TopologyChange::SetLimits(def) => {
                match def.scope {
                    LimitScope::User => self.user_exists(&def.name)?,
                    LimitScope::Vhost => self.vhost_exists(&def.name)?,
                }
                limits::validate(&def).map_err(AmqpError::precondition)?;
                Ok(Some(TopologyChange::SetLimits(def)))
            }
            TopologyChange::AddVhost(def) => {
                if self.vhosts.contains_key(&def.name) {
                    return Ok(None);
                }
                Ok(Some(TopologyChange::AddVhost(def)))
            }
            TopologyChange::DeleteVhost { name } => {
                self.vhost_exists(&name)?;
                Ok(Some(TopologyChange::DeleteVhost { name }))
            }
            other => Ok(Some(other)),
        }
    }

    pub fn vhost_exists(&self, vhost: &[u8]) -> Result<(), AmqpError> {
        if self.vhosts.contains_key(vhost) {
            return Ok(());
        }
        Err(AmqpError::not_found(format!(
            "Virtual host '{}' does not exist",
            lossy(vhost)
        )))
    }

    fn user_exists(&self, name: &[u8]) -> Result<(), AmqpError> {
        match self.users.get(name) {
            Some(_) => Ok(()),
            None => Err(AmqpError::not_found(format!(
                "User \"{}\" does not exist",
                lossy(name)
            ))),
        }
    }

    fn validate_bind(&self, b: BindingChange) -> Result<Option<TopologyChange>, AmqpError> {
        let ex = self
            .exchange(&b.vhost, &b.source)
            .ok_or_else(|| no_exchange(&b.vhost, &b.source))?;
        if let Dest::Exchange(id) = b.dest {
            if !self.exchanges.contains_key(&id) {
                return Err(AmqpError::not_found(format!(
                    "no destination exchange in vhost '{}'",
                    lossy(&b.vhost)
                )));
            }
        }
        if let Some(text) = check_x_match(ex.kind, &b.arguments) {
            return Err(AmqpError::precondition(text));
        }
        Ok(Some(TopologyChange::Bind(b)))
    }
}

/// A redeclared exchange must match the existing one, in RabbitMQ's words.
fn check_equivalent(
    existing: &Exchange,
    kind: ExchangeKind,
    durable: bool,
    auto_delete: bool,
    internal: bool,
) -> Result<(), AmqpError> {
    let mismatch = |field: &str, received: &str, current: &str| {
        Err(AmqpError::precondition(format!(
            "inequivalent arg '{field}' for exchange '{}' in vhost '{}': received '{received}' but current is '{current}'",
            lossy(&existing.name),
            lossy(&existing.vhost)
        )))
    };
    if existing.kind != kind {
        return mismatch("type", kind.as_str(), existing.kind.as_str());
    }
    for (field, received, current) in [
        ("durable", durable, existing.durable),
        ("auto_delete", auto_delete, existing.auto_delete),
        ("internal", internal, existing.internal),
    ] {
        if received != current {
            return mismatch(field, bool_str(received), bool_str(current));
        }
    }
    Ok(())
}

/// `alternate-exchange` must match on redeclare, in RabbitMQ's wording: a value present on
/// one side only shows as "none" and "the value 'NAME' of type 'longstr'".
fn check_alternate(existing: &Exchange, arguments: &FieldTable) -> Result<(), AmqpError> {
    let received = arguments
        .get("alternate-exchange")
        .and_then(|v| v.as_bytes());
    // The argument, not the effective alternate: a policy's does not make a redeclare differ.
    let current = existing
        .arguments
        .get("alternate-exchange")
        .and_then(|v| v.as_bytes());
    if received == current {
        return Ok(());
    }
    let show = |v: Option<&[u8]>, other: Option<&[u8]>| match (v, other) {
        (None, _) => "none".to_string(),
        (Some(v), Some(_)) => format!("'{}'", lossy(v)),
        (Some(v), None) => format!("the value '{}' of type 'longstr'", lossy(v)),
    };
    Err(AmqpError::precondition(format!(
        "inequivalent arg 'alternate-exchange' for exchange '{}' in vhost '{}': received {} but current is {}",
        lossy(&existing.name),
        lossy(&existing.vhost),
        show(received, current),
        show(current, received)
    )))
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// Headers bindings must carry a valid x-match: the refusal text when they do not.
fn check_x_match(kind: ExchangeKind, arguments: &FieldTable) -> Option<String> {
    if kind != ExchangeKind::Headers {
        return None;
    }
    let v = arguments.get("x-match")?;
    match v.as_bytes() {
        Some(b"all" | b"any" | b"all-with-x" | b"any-with-x") => None,
        _ => Some(format!(
            "Invalid x-match field value {v:?}; expected all, any, all-with-x, or any-with-x"
        )),
    }
}

/// An unknown exchange type is a connection error in RabbitMQ.
pub fn unknown_type(kind: &[u8]) -> AmqpError {
    AmqpError::new(
        COMMAND_INVALID,
        format!("invalid exchange type '{}'", lossy(kind)),
    )
}
