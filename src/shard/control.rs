//! Requests from outside the shards (`warren ctl`, definitions loaded at start, later the
//! management API): they arrive on a channel from another thread and are served on shard 0,
//! the topology owner, as any topology change is.

mod api;
mod definitions;
mod gather;
mod listing;
mod snapshot;
mod verbs;

use std::rc::Rc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::Shard;
use crate::broker::policy::definition_to_json;
use crate::broker::topology::TopologyChange;
use crate::broker::users::tags_list;
use crate::store::record::{LimitScope, PermissionDef, PolicyDef, UserDef};
pub use api::{ApiOp, GetSettle};
pub use verbs::{BindingDef, Query, QueueDef};

mod access;

/// What an operator asks.
#[derive(Debug)]
pub enum Control {
    SetPolicy(PolicyDef),
    ClearPolicy {
        vhost: Bytes,
        name: Bytes,
        operator: bool,
    },
    /// Policies (or operator policies) in rabbitmqctl's columns.
    ListPolicies {
        operator: bool,
        vhost: Bytes,
    },
    AddUser(UserDef),
    DeleteUser {
        name: Bytes,
    },
    /// A new password hash (the rest of the user unchanged).
    ChangePassword(UserDef),
    SetUserTags {
        name: Bytes,
        tags: Bytes,
    },
    /// Users in rabbitmqctl's columns.
    ListUsers,
    /// A user from a definitions file: added, or replacing the one of that name.
    ImportUser(UserDef),
    SetPermissions(PermissionDef),
    ClearPermissions {
        user: Bytes,
        vhost: Bytes,
    },
    /// Permissions in a vhost, in rabbitmqctl's columns.
    ListPermissions {
        vhost: Bytes,
    },
    /// A change applied as it is (topic permissions, limits).
    Change(TopologyChange),
    /// Removes one limit of a user or vhost, or every one with `all`.
    ClearLimit {
        scope: LimitScope,
        name: Bytes,
        key: String,
    },
    /// Topic permissions of a vhost (or of a user, in every vhost).
    ListTopicPermissions {
        vhost: Option<Bytes>,
        user: Option<Bytes>,
    },
    /// Limits of one user or vhost (JSON), or of all of them (rows).
    ListLimits {
        scope: LimitScope,
        name: Option<Bytes>,
    },
    /// Vhosts in rabbitmqctl's columns (`name` when none are asked for).
    ListVhosts {
        columns: Vec<String>,
    },
    /// Listings, status, definitions (see [`verbs`]).
    Query(Query),
    /// The management API's queue and message operations (see [`api`]).
    Api(ApiOp),
}

/// The answer: text to show, or why the request was refused.
pub type ControlReply = Result<String, String>;

pub struct ControlRequest {
    pub what: Control,
    pub reply: oneshot::Sender<ControlReply>,
}

pub type ControlSender = mpsc::UnboundedSender<ControlRequest>;
pub type ControlReceiver = mpsc::UnboundedReceiver<ControlRequest>;

pub fn channel() -> (ControlSender, ControlReceiver) {
    mpsc::unbounded_channel()
}

/// Serves control requests on `shard` (shard 0) until every sender is gone.
pub async fn serve(shard: Rc<Shard>, mut requests: ControlReceiver) {
    verbs::mark_started();
    while let Some(request) = requests.recv().await {
        let shard = shard.clone();
        crate::io::spawn(async move {
            let answer = match request.what {
                Control::Query(query) => verbs::handle(&shard, query).await,
                Control::Api(op) => api::handle(&shard, op).await,
                what => handle(&shard, what).await,
            };
            let _ = request.reply.send(answer);
        });
    }
}

async fn handle(shard: &Shard, what: Control) -> ControlReply {
    let change = match what {
        Control::ListPolicies { operator, vhost } => {
            return Ok(list_policies(shard, operator, &vhost))
        }
        Control::ListUsers => return Ok(list_users(shard)),
        Control::ListPermissions { vhost } => return Ok(list_permissions(shard, &vhost)),
        Control::ListTopicPermissions { vhost, user } => {
            return Ok(access::list_topic_permissions(shard, vhost, user))
        }
        Control::ListLimits { scope, name } => return Ok(access::list_limits(shard, scope, name)),
        Control::ListVhosts { columns } => return access::list_vhosts(shard, &columns),
        Control::Change(change) => change,
        Control::ClearLimit { scope, name, key } => access::clear_limit(shard, scope, name, &key)?,
        Control::SetPermissions(def) => TopologyChange::SetPermissions(def),
        Control::ClearPermissions { user, vhost } => {
            TopologyChange::ClearPermissions { user, vhost }
        }
        Control::SetPolicy(def) => TopologyChange::SetPolicy(def),
        Control::AddUser(user) => TopologyChange::AddUser(user),
        Control::DeleteUser { name } => TopologyChange::DeleteUser { name },
        Control::ChangePassword(new) => {
            let user = existing_user(shard, &new.name)?;
            TopologyChange::UpdateUser(UserDef {
                password_hash: new.password_hash,
                hashing: new.hashing,
                ..user
            })
        }
        Control::ImportUser(user) => match existing_user(shard, &user.name) {
            Ok(_) => TopologyChange::UpdateUser(user),
            Err(_) => TopologyChange::AddUser(user),
        },
        Control::SetUserTags { name, tags } => {
            let user = existing_user(shard, &name)?;
            TopologyChange::UpdateUser(UserDef { tags, ..user })
        }
        Control::ClearPolicy {
            vhost,
            name,
            operator,
        } => TopologyChange::ClearPolicy {
            vhost,
            name,
            operator,
        },
        Control::Query(query) => return verbs::handle(shard, query).await,
        Control::Api(op) => return api::handle(shard, op).await,
    };
    match shard.change_topology(change).await {
        Ok(()) => Ok(String::new()),
        Err(err) => Err(err.text),
    }
}

fn existing_user(shard: &Shard, name: &[u8]) -> Result<UserDef, String> {
    let topology = shard.topology.borrow();
    match topology.users().get(name) {
        Some(user) => Ok(user.clone()),
        None => Err(format!(
            "User \"{}\" does not exist",
            String::from_utf8_lossy(name)
        )),
    }
}

fn text(b: &Bytes) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// As `rabbitmqctl -q list_policies` prints them: a header, then tab-separated rows.
/// Nothing at all when there is none, as rabbitmqctl 3.10 prints.
fn list_policies(shard: &Shard, operator: bool, vhost: &[u8]) -> String {
    let topology = shard.topology.borrow();
    let mut policies = topology
        .policies()
        .iter()
        .filter(|p| p.operator == operator && p.vhost == vhost)
        .peekable();
    if policies.peek().is_none() {
        return String::new();
    }
    let mut out = String::from("vhost\tname\tpattern\tapply-to\tdefinition\tpriority");
    for p in policies {
        out.push_str(&format!(
            "\n{}\t{}\t{}\t{}\t{}\t{}",
            text(&p.vhost),
            text(&p.name),
            text(&p.pattern),
            text(&p.apply_to),
            definition_to_json(&p.definition),
            p.priority
        ));
    }
    out
}

/// As `rabbitmqctl -q list_permissions -p VHOST` prints them.
fn list_permissions(shard: &Shard, vhost: &[u8]) -> String {
    let topology = shard.topology.borrow();
    let mut permissions = topology
        .permissions()
        .iter()
        .filter(|p| p.vhost == vhost)
        .peekable();
    if permissions.peek().is_none() {
        return String::new();
    }
    let mut out = String::from("user\tconfigure\twrite\tread");
    for p in permissions {
        out.push_str(&format!(
            "\n{}\t{}\t{}\t{}",
            text(&p.user),
            text(&p.configure),
            text(&p.write),
            text(&p.read)
        ));
    }
    out
}

/// As `rabbitmqctl -q list_users` prints them.
fn list_users(shard: &Shard) -> String {
    let topology = shard.topology.borrow();
    let mut out = String::from("user\ttags");
    for user in topology.users().iter() {
        out.push_str(&format!("\n{}\t{}", text(&user.name), tags_list(user)));
    }
    out
}
