//! Who is asking, and what their tags let them see and do, as in RabbitMQ: `administrator`
//! everything, `monitoring` every object read-only, `policymaker` the policies of its vhosts,
//! `management` the objects of the vhosts it has permissions in; no such tag, no API.

use serde_json::Value;

use super::http::{Reply, Req};
use super::state::Api;
use crate::shard::control::{ApiOp, Control};

pub struct Who {
    pub name: String,
    pub tags: Vec<String>,
}

impl Who {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    /// Sees every vhost's objects.
    pub fn is_monitoring(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }

    fn is_management(&self) -> bool {
        self.is_monitoring() || self.is_policymaker() || self.has("management")
    }

    /// Has permissions in `vhost`: only then does the API show its queues, exchanges,
    /// bindings and policies, administrators included (as RabbitMQ does).
    pub fn has_access(&self, snapshot: &Value, vhost: &str) -> bool {
        let perms = snapshot["permissions"].as_array().map(Vec::as_slice);
        perms
            .unwrap_or_default()
            .iter()
            .any(|p| p["user"] == self.name.as_str() && p["vhost"] == vhost)
    }

    /// Sees `vhost` in the vhost list (monitoring users see them all).
    pub fn sees_vhost(&self, snapshot: &Value, vhost: &str) -> bool {
        self.is_monitoring() || self.has_access(snapshot, vhost)
    }

    /// May see `item` (which has a `vhost`).
    pub fn sees(&self, snapshot: &Value, item: &Value) -> bool {
        let vhost = item["vhost"].as_str().unwrap_or_default();
        self.has_access(snapshot, vhost)
    }

    /// The objects of `vhost` may be read: 404 when it does not exist, 401 without access.
    pub fn enter(&self, snapshot: &Value, vhost: &str) -> Result<(), Reply> {
        let exists = snapshot["vhosts"]
            .as_array()
            .is_some_and(|all| all.iter().any(|v| v["name"] == vhost));
        if !exists {
            return Err(Reply::not_found());
        }
        if !self.has_access(snapshot, vhost) {
            return Err(Reply::unauthorised("Not authorised to access virtual host"));
        }
        Ok(())
    }

    pub fn require_admin(&self) -> Result<(), Reply> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Reply::unauthorised("Not administrator user"))
        }
    }

    pub fn require_monitoring(&self) -> Result<(), Reply> {
        if self.is_monitoring() {
            Ok(())
        } else {
            Err(Reply::unauthorised("Not monitor user"))
        }
    }
}

/// Checks the request's credentials against the broker's users.
pub async fn login(api: &Api, req: &Req) -> Result<Who, Reply> {
    let Some((user, password)) = &req.credentials else {
        return Err(Reply::no_credentials());
    };
    let op = ApiOp::Login {
        user: bytes::Bytes::copy_from_slice(user.as_bytes()),
        password: bytes::Bytes::copy_from_slice(password.as_bytes()),
        loopback: req.peer.ip().is_loopback() || is_mapped_loopback(req.peer.ip()),
    };
    let tags = api
        .ask(Control::Api(op))
        .await
        .map_err(|_| Reply::login_failed())?;
    let who = Who {
        name: user.clone(),
        tags: tags
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if !who.is_management() {
        return Err(Reply::unauthorised("Not management user"));
    }
    Ok(who)
}

fn is_mapped_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}
