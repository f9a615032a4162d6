//! The control socket `warren ctl` talks to (`<data-dir>/warren.sock`, owner-only), and the
//! definitions file loaded at start. Both run off the shards, on a plain thread, and hand
//! each request to shard 0 ([`crate::shard::control`]).
//!
//! The socket speaks one JSON object per line each way: a request such as
//! `{"command": "set-policy", "operator": false, "policy": {...}}` (a policy in RabbitMQ's
//! export format), and `{"ok": true, "output": "..."}` or `{"ok": false, "error": "..."}`.
//! The management API takes the same lines at `POST /api/warren/ctl` ([`remote_reply`]),
//! which is how `warren ctl --api URL` manages a broker on another host. `trace` is the one
//! request answered with more than one line (see [`trace`]).

mod trace;
pub(super) use trace::properties_json;
mod verbs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::broker::permissions::Permission;
use crate::broker::policy::definition_from_json;
use crate::broker::topology::TopologyChange;
use crate::broker::users::{imported_user, new_user, KNOWN_TAGS};
use crate::config::Config;
use crate::shard::control::{Control, ControlReply, ControlRequest, ControlSender, Query};
use crate::store::record::{PermissionDef, PolicyDef, VhostDef};

mod access;

/// Longest request line read from the socket.
const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// Listens on the control socket on a thread of its own. The data directory is locked by
/// this broker, so a socket file left there is a dead broker's and is replaced.
pub fn start(config: &Config, control: ControlSender) -> std::io::Result<()> {
    let path = crate::config::ctl_socket(&config.data_dir);
    // Traced connections are named as list_connections names them.
    let listen = config.listen.first().copied();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", path.display()),
        )
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("warren-ctl".to_string())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &control, listen);
            }
        })?;
    Ok(())
}

/// One client: requests until it hangs up (or stays silent too long). A trace takes the
/// connection over.
fn serve(stream: UnixStream, control: &ControlSender, listen: Option<SocketAddr>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(stream.take(MAX_REQUEST_BYTES)).lines();
    while let Some(Ok(line)) = lines.next() {
        if trace::is_trace(&line) {
            trace::start(writer, &line, control, listen);
            return;
        }
        if writeln!(writer, "{}", reply(&line, control)).is_err() {
            return;
        }
    }
}

/// The answer line to a request line.
fn reply(line: &str, control: &ControlSender) -> Value {
    match answer(line, control) {
        Ok(output) => json!({"ok": true, "output": output}),
        Err(error) => json!({"ok": false, "error": error}),
    }
}

/// The answer to a request line that came through the management API (`POST
/// /api/warren/ctl`, from an administrator), exactly as the socket would answer it. It blocks
/// on shard 0: call it off the API's runtime. Two requests are the socket's only: a trace
/// (a stream, not one answer), and a definitions import by path (a file on the broker's
/// host; over the API the document comes inline).
pub(super) fn remote_reply(line: &str, control: &ControlSender) -> Value {
    let request = serde_json::from_str::<Value>(line).unwrap_or_default();
    let refusal = match request["command"].as_str() {
        Some("trace") => Some(
            "trace streams over the control socket only: run `warren ctl trace` on the \
             broker's host",
        ),
        Some("import-definitions") if request.get("path").is_some() => Some(
            "over the management API, import-definitions takes the document inline \
             ('definitions'), not a path on the broker's host",
        ),
        _ => None,
    };
    match refusal {
        Some(error) => json!({"ok": false, "error": error}),
        None => reply(line, control),
    }
}

/// Serves one request line. A definitions file is loaded here, item by item, each one a
/// request to shard 0 as at start.
fn answer(line: &str, control: &ControlSender) -> ControlReply {
    if let Ok(request) = serde_json::from_str::<Value>(line) {
        if request["command"] == "import-definitions" {
            // The document itself (from `warren ctl --api`, whose file is on another host),
            // or the path of a file on this host.
            if let Some(defs) = request.get("definitions") {
                let count = import_document(defs, control)?;
                crate::info!("Loaded {count} definition(s) sent by warren ctl");
                return Ok(String::new());
            }
            let path = request["path"].as_str().ok_or("path must be a string")?;
            load_definitions(Path::new(path), control).map_err(|e| e.to_string())?;
            return Ok(String::new());
        }
    }
    ask(control, parse_request(line)?)
}

/// The default vhost and user, as RabbitMQ creates them on a fresh node: `vhost` instead of
/// `/` when it is another (`--default-vhost`), the user on a broker that never had users, and
/// its full permissions on `vhost` on a broker that never had permissions (steps each decided
/// by its own kind of record, so that a crash between them is finished at the next start).
/// Deleting any later is remembered. A failed write is only logged: the change is in force
/// until the next start, which tries again.
pub fn seed_default_user(
    control: &ControlSender,
    seed: Seed,
    name: &str,
    password: &str,
    vhost: &str,
) {
    if seed.vhost && vhost != "/" {
        let def = VhostDef {
            name: Bytes::copy_from_slice(vhost.as_bytes()),
            description: Bytes::from_static(b"Default virtual host"),
            tags: Bytes::new(),
        };
        let root = Bytes::from_static(b"/");
        for change in [
            TopologyChange::AddVhost(def),
            TopologyChange::DeleteVhost { name: root },
        ] {
            if let Err(err) = ask(control, Control::Change(change)) {
                crate::warn!("the default vhost '{vhost}' may not be stored: {err}");
            }
        }
    }
    if seed.user {
        let user = new_user(name.as_bytes(), password.as_bytes(), b"administrator");
        match ask(control, Control::AddUser(user)) {
            Ok(_) => crate::info!("Created the default user '{name}'"),
            Err(err) => crate::warn!("the default user '{name}' may not be stored: {err}"),
        }
    }
    if seed.permissions {
        let full = Permission::full(name.as_bytes(), vhost.as_bytes());
        if let Err(err) = ask(control, Control::SetPermissions(full)) {
            crate::warn!("the default user's permissions may not be stored: {err}");
        }
    }
}

/// What [`seed_default_user`] has to create.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    /// A fresh node: the default vhost replaces `/`.
    pub vhost: bool,
    pub user: bool,
    pub permissions: bool,
}

/// Hands `what` to shard 0 and waits for its answer.
pub fn ask(control: &ControlSender, what: Control) -> ControlReply {
    let (reply, answer) = oneshot::channel();
    control
        .send(ControlRequest { what, reply })
        .map_err(|_| "the broker is stopping".to_string())?;
    answer
        .blocking_recv()
        .unwrap_or_else(|_| Err("the broker is stopping".to_string()))
}

/// A request in the socket's JSON form, built by the management API.
pub(super) fn request(request: &Value) -> Result<Control, String> {
    parse_request(&request.to_string())
}

/// One item of a definitions section as a request (see [`definition_item`]).
pub(super) fn definition_request(section: &str, item: &Value) -> Option<Result<Control, String>> {
    definition_item(section, item)
}

/// Applies a whole definitions document (the management API's `POST /api/definitions`).
pub(super) fn import_document(defs: &Value, control: &ControlSender) -> Result<usize, String> {
    let sections = defs.as_object().ok_or("expected a JSON object")?;
    import_definitions(sections, control)
}

fn parse_request(line: &str) -> Result<Control, String> {
    let request: Value =
        serde_json::from_str(line).map_err(|e| format!("not a JSON request: {e}"))?;
    let operator = request["operator"].as_bool().unwrap_or(false);
    let text = |v: &Value, what: &str| -> Result<Bytes, String> {
        v.as_str()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .ok_or_else(|| format!("{what} must be a string"))
    };
    let default_vhost = json!("/");
    let vhost = request.get("vhost").unwrap_or(&default_vhost);
    match request["command"].as_str() {
        Some("set-policy") => {
            policy_from_json(&request["policy"], operator).map(Control::SetPolicy)
        }
        Some("clear-policy") => Ok(Control::ClearPolicy {
            vhost: text(vhost, "vhost")?,
            name: text(&request["name"], "name")?,
            operator,
        }),
        Some("list-policies") => Ok(Control::ListPolicies {
            operator,
            vhost: text(vhost, "vhost")?,
        }),
        Some("add-user") => Ok(Control::AddUser(new_user(
            &text(&request["name"], "name")?,
            &text(&request["password"], "password")?,
            b"",
        ))),
        Some("delete-user") => Ok(Control::DeleteUser {
            name: text(&request["name"], "name")?,
        }),
        Some("change-password") => Ok(Control::ChangePassword(new_user(
            &text(&request["name"], "name")?,
            &text(&request["password"], "password")?,
            b"",
        ))),
        Some("set-user-tags") => Ok(Control::SetUserTags {
            name: text(&request["name"], "name")?,
            tags: tags_of(&request["tags"])?,
        }),
        Some("list-users") => Ok(Control::ListUsers),
        Some("set-permissions") => Ok(Control::SetPermissions(PermissionDef {
            user: text(&request["user"], "user")?,
            vhost: text(vhost, "vhost")?,
            configure: text(&request["configure"], "configure")?,
            write: text(&request["write"], "write")?,
            read: text(&request["read"], "read")?,
        })),
        Some("clear-permissions") => Ok(Control::ClearPermissions {
            user: text(&request["user"], "user")?,
            vhost: text(vhost, "vhost")?,
        }),
        Some("list-permissions") => Ok(Control::ListPermissions {
            vhost: text(vhost, "vhost")?,
        }),
        Some(other) => access::parse(other, &request)
            .or_else(|| verbs::parse_query(other, &request))
            .unwrap_or_else(|| Err(format!("unknown command '{other}'"))),
        None => Err("a request needs a command".to_string()),
    }
}

/// Tags as a JSON array or a comma-separated string (RabbitMQ 3.10 exports the latter),
/// stored comma-separated; `none` alone means no tags.
fn tags_of(tags: &Value) -> Result<Bytes, String> {
    let list: Vec<String> = match tags {
        Value::Null => Vec::new(),
        Value::String(s) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string).ok_or("tags must be strings"))
            .collect::<Result<_, _>>()?,
        _ => return Err("tags must be a list".to_string()),
    };
    let list: Vec<String> = list
        .into_iter()
        .filter(|t| !t.is_empty() && t != "none")
        .collect();
    for tag in &list {
        if !KNOWN_TAGS.contains(&tag.as_str()) {
            crate::warn!("user tag '{tag}' has no meaning to Warren; kept as given");
        }
    }
    Ok(Bytes::from(list.join(",")))
}

/// A user as RabbitMQ exports it: `name`, `password_hash` (base64), `hashing_algorithm`,
/// `tags`.
fn user_from_json(user: &Value) -> Result<crate::store::record::UserDef, String> {
    let name = user["name"]
        .as_str()
        .ok_or("user field 'name' must be a string")?;
    let hash = user["password_hash"].as_str().unwrap_or_default();
    let tags = tags_of(&user["tags"])?;
    let tags = std::str::from_utf8(&tags).unwrap_or_default();
    imported_user(name, hash, user["hashing_algorithm"].as_str(), tags)
}

/// A permission as RabbitMQ exports it: `user`, `vhost`, `configure`, `write`, `read`.
fn permission_from_json(p: &Value) -> Result<PermissionDef, String> {
    let field = |key: &str| -> Result<Bytes, String> {
        p[key]
            .as_str()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .ok_or_else(|| format!("permission field '{key}' must be a string"))
    };
    Ok(PermissionDef {
        user: field("user")?,
        vhost: field("vhost")?,
        configure: field("configure")?,
        write: field("write")?,
        read: field("read")?,
    })
}

/// A policy as RabbitMQ exports it: `vhost` (default `/`), `name`, `pattern`, `apply-to`
/// (default `all`; `queues` for an operator policy), `priority` (default 0), `definition`.
pub fn policy_from_json(policy: &Value, operator: bool) -> Result<PolicyDef, String> {
    let text = |key: &str, default: Option<&str>| -> Result<Bytes, String> {
        match (policy.get(key), default) {
            (Some(Value::String(s)), _) => Ok(Bytes::copy_from_slice(s.as_bytes())),
            (None | Some(Value::Null), Some(d)) => Ok(Bytes::copy_from_slice(d.as_bytes())),
            _ => Err(format!("policy field '{key}' must be a string")),
        }
    };
    let priority = match policy.get("priority") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| "policy field 'priority' must be an integer".to_string())?,
    };
    let definition = match policy.get("definition") {
        Some(d) => definition_from_json(d)?,
        None => return Err("policy field 'definition' is missing".to_string()),
    };
    Ok(PolicyDef {
        vhost: text("vhost", Some("/"))?,
        name: text("name", None)?,
        operator,
        pattern: text("pattern", None)?,
        apply_to: text("apply-to", Some(if operator { "queues" } else { "all" }))?,
        priority,
        definition,
    })
}

/// Loads a definitions file (RabbitMQ's export format) into the running broker: at start
/// (`--definitions`) and for `warren ctl import_definitions`. One item the broker refuses
/// stops the load, naming it.
pub fn load_definitions(path: &Path, control: &ControlSender) -> std::io::Result<()> {
    let fail =
        |why: String| std::io::Error::other(format!("definitions {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let defs: Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let Some(sections) = defs.as_object() else {
        return Err(fail("expected a JSON object".to_string()));
    };
    let count = import_definitions(sections, control).map_err(fail)?;
    crate::info!("Loaded {count} definition(s) from {}", path.display());
    Ok(())
}

/// Sections read by [`import_definitions`], in the order they are applied (a binding needs
/// its queue and exchanges, a permission its user), and those with nothing to load.
const SECTIONS: [&str; 11] = [
    "vhosts",
    "users",
    "user_limits",
    "permissions",
    "topic_permissions",
    "vhost_limits",
    "policies",
    "operator_policies",
    "queues",
    "exchanges",
    "bindings",
];
const NOTHING_TO_LOAD: [&str; 6] = [
    "rabbit_version",
    "rabbitmq_version",
    "product_name",
    "product_version",
    "parameters",
    "global_parameters",
];

/// Applies every item of the known sections; how many there were.
fn import_definitions(
    sections: &serde_json::Map<String, Value>,
    control: &ControlSender,
) -> Result<usize, String> {
    for (section, items) in sections {
        let known =
            SECTIONS.contains(&section.as_str()) || NOTHING_TO_LOAD.contains(&section.as_str());
        if !known && items.as_array().is_some_and(|a| !a.is_empty()) {
            crate::warn!("definitions: '{section}' not loaded (Warren has no such thing)");
        }
    }
    let mut count = 0;
    for section in SECTIONS {
        // User limits ride on the users, vhost limits on the parameters.
        let from = match section {
            "user_limits" => "users",
            "vhost_limits" => "parameters",
            other => other,
        };
        let items = sections.get(from).and_then(Value::as_array);
        for item in items.map(Vec::as_slice).unwrap_or_default() {
            let what = match definition_item(section, item) {
                Some(what) => what.map_err(|e| format!("{section}: {e}"))?,
                None => continue,
            };
            ask(control, what).map_err(|e| {
                let name = item["name"]
                    .as_str()
                    .or(item["user"].as_str())
                    .unwrap_or("");
                format!("{section} '{name}': {e}")
            })?;
            count += 1;
        }
    }
    Ok(count)
}

/// The request that loads one item of a definitions section; None when the item holds
/// nothing for this pass (a user without limits, a parameter of another component).
fn definition_item(section: &str, item: &Value) -> Option<Result<Control, String>> {
    let what = |f: fn(&Value) -> Result<Control, String>| Some(f(item));
    match section {
        "vhosts" => what(access::vhost_from_json),
        "users" => what(|i| user_from_json(i).map(Control::ImportUser)),
        "user_limits" => access::user_limits_from_json(item),
        "permissions" => what(|i| permission_from_json(i).map(Control::SetPermissions)),
        "topic_permissions" => what(access::topic_permission_from_json),
        "vhost_limits" => access::vhost_limits_from_json(item),
        "policies" => what(|i| policy_from_json(i, false).map(Control::SetPolicy)),
        "operator_policies" => what(|i| policy_from_json(i, true).map(Control::SetPolicy)),
        "queues" => what(|i| {
            Ok(Control::Query(Query::ImportQueue(verbs::queue_from_json(
                i,
            )?)))
        }),
        "exchanges" => verbs::exchange_from_json(item),
        _ => what(|i| {
            Ok(Control::Query(Query::ImportBinding(
                verbs::binding_from_json(i)?,
            )))
        }),
    }
}
