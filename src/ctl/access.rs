//! `warren ctl` verbs for topic permissions and limits, with rabbitmqctl's names and flags.

use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Sets what USER may publish to (WRITE) and bind from (READ) the topic EXCHANGE:
    /// regular expressions on routing keys; {username}, {vhost} and {client_id} expand.
    #[command(alias = "set_topic_permissions")]
    SetTopicPermissions {
        user: String,
        exchange: String,
        write: String,
        read: String,
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Removes USER's topic permissions on EXCHANGE, or on every exchange.
    #[command(alias = "clear_topic_permissions")]
    ClearTopicPermissions {
        user: String,
        exchange: Option<String>,
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Lists the topic permissions in a vhost.
    #[command(alias = "list_topic_permissions")]
    ListTopicPermissions {
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Lists a user's topic permissions in every vhost.
    #[command(alias = "list_user_topic_permissions")]
    ListUserTopicPermissions { user: String },
    /// Sets a user's limits as JSON: '{"max-connections": 10, "max-channels": 100}'
    /// (a negative value: no limit).
    #[command(alias = "set_user_limits")]
    SetUserLimits { user: String, limits: String },
    /// Removes one limit of a user (max-connections, max-channels) or `all`.
    #[command(alias = "clear_user_limits")]
    ClearUserLimits { user: String, limit: String },
    /// Lists every user's limits, or one user's as JSON.
    #[command(alias = "list_user_limits")]
    ListUserLimits {
        #[arg(long)]
        user: Option<String>,
    },
    /// Sets a vhost's limits as JSON: '{"max-connections": 100, "max-queues": 1000}'.
    #[command(alias = "set_vhost_limits")]
    SetVhostLimits {
        limits: String,
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Removes every limit of a vhost.
    #[command(alias = "clear_vhost_limits")]
    ClearVhostLimits {
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Adds a virtual host, with its own exchanges, queues, bindings and policies.
    #[command(alias = "add_vhost")]
    AddVhost {
        vhost: String,
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated.
        #[arg(long)]
        tags: Option<String>,
    },
    /// Deletes a virtual host and everything in it; its connections are closed.
    #[command(alias = "delete_vhost")]
    DeleteVhost { vhost: String },
    /// Lists the virtual hosts: COLUMNs among name, description, tags, tracing.
    #[command(alias = "list_vhosts")]
    ListVhosts { columns: Vec<String> },
    /// Shows a vhost's limits as JSON, or (--global) every vhost's.
    #[command(alias = "list_vhost_limits")]
    ListVhostLimits {
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
        #[arg(long)]
        global: bool,
    },
}

impl AccessCommand {
    /// The control-socket request.
    pub fn request(self) -> Value {
        use AccessCommand as C;
        match self {
            C::SetTopicPermissions {
                user,
                exchange,
                write,
                read,
                vhost,
            } => json!({"command": "set-topic-permissions", "user": user, "vhost": vhost,
                "exchange": exchange, "write": write, "read": read}),
            C::ClearTopicPermissions {
                user,
                exchange,
                vhost,
            } => json!({"command": "clear-topic-permissions", "user": user, "vhost": vhost,
                "exchange": exchange}),
            C::ListTopicPermissions { vhost } => {
                json!({"command": "list-topic-permissions", "vhost": vhost})
            }
            C::ListUserTopicPermissions { user } => {
                json!({"command": "list-topic-permissions", "user": user})
            }
            C::SetUserLimits { user, limits } => {
                json!({"command": "set-limits", "scope": "user", "name": user, "limits": limits})
            }
            C::ClearUserLimits { user, limit } => {
                json!({"command": "clear-limit", "scope": "user", "name": user, "key": limit})
            }
            C::ListUserLimits { user } => {
                json!({"command": "list-limits", "scope": "user", "name": user})
            }
            C::SetVhostLimits { limits, vhost } => {
                json!({"command": "set-limits", "scope": "vhost", "name": vhost, "limits": limits})
            }
            C::ClearVhostLimits { vhost } => {
                json!({"command": "clear-limit", "scope": "vhost", "name": vhost, "key": "all"})
            }
            C::AddVhost {
                vhost,
                description,
                tags,
            } => json!({"command": "add-vhost", "vhost": vhost, "description": description,
                "tags": tags}),
            C::DeleteVhost { vhost } => json!({"command": "delete-vhost", "vhost": vhost}),
            C::ListVhosts { columns } => json!({"command": "list-vhosts", "columns": columns}),
            C::ListVhostLimits { vhost, global } => {
                let name = (!global).then_some(vhost);
                json!({"command": "list-limits", "scope": "vhost", "name": name})
            }
        }
    }
}
