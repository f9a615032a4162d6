//! `warren ctl`: the operator's command line, talking to a running broker over its control
//! socket (`<data-dir>/warren.sock`), as `rabbitmqctl` talks to a RabbitMQ node. Commands
//! and their options follow rabbitmqctl's (`set_policy` spelled either way). With `--api
//! URL` the same requests go to a broker's management API instead ([`remote`]), so a broker
//! on another host is managed the same way.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

mod access;
mod remote;
mod trace;

#[derive(Parser, Debug)]
#[command(name = "warren ctl", about = "Manage a running Warren broker")]
struct Ctl {
    /// The broker's data directory (its control socket is there).
    #[arg(
        long = "data-dir",
        env = "WARREN_DATA_DIR",
        default_value = "data",
        global = true
    )]
    data_dir: PathBuf,
    /// Manage the broker through its management API at this URL
    /// (http://HOST:PORT) instead of its control socket; needs an administrator.
    #[arg(long, env = "WARREN_API", global = true)]
    api: Option<String>,
    /// The management API user (with --api).
    #[arg(
        long = "username",
        env = "WARREN_API_USER",
        default_value = "guest",
        global = true
    )]
    api_user: String,
    /// The management API user's password (with --api).
    // Named apart from the `password` of add_user and change_password: a global option
    // shares its id with a verb's argument of the same name, and would take its value.
    #[arg(
        long = "password",
        env = "WARREN_API_PASSWORD",
        default_value = "guest",
        global = true,
        hide_env_values = true
    )]
    api_password: String,
    #[command(subcommand)]
    command: Command,
}

/// Where requests go.
enum Target {
    Socket(PathBuf),
    Api(remote::Api),
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Sets (or replaces) a policy: NAME, a PATTERN (regular expression) on queue and/or
    /// exchange names, and a DEFINITION in JSON, e.g. '{"max-length": 1000}'.
    #[command(alias = "set_policy")]
    SetPolicy(PolicyArgs),
    /// Removes a policy.
    #[command(alias = "clear_policy")]
    ClearPolicy(NameArgs),
    /// Lists the policies.
    #[command(alias = "list_policies")]
    ListPolicies(VhostArgs),
    /// Sets an operator policy: caps on numeric limits that users' arguments and policies
    /// cannot exceed.
    #[command(alias = "set_operator_policy")]
    SetOperatorPolicy(PolicyArgs),
    /// Removes an operator policy.
    #[command(alias = "clear_operator_policy")]
    ClearOperatorPolicy(NameArgs),
    /// Lists the operator policies.
    #[command(alias = "list_operator_policies")]
    ListOperatorPolicies(VhostArgs),
    /// Adds a user with a password (stored as a salted hash) and no tags.
    #[command(alias = "add_user")]
    AddUser { name: String, password: String },
    /// Deletes a user.
    #[command(alias = "delete_user")]
    DeleteUser { name: String },
    /// Sets a user's password.
    #[command(alias = "change_password")]
    ChangePassword { name: String, password: String },
    /// Replaces a user's tags (administrator, monitoring, policymaker, management,
    /// impersonator; none for no tags).
    #[command(alias = "set_user_tags")]
    SetUserTags { name: String, tags: Vec<String> },
    /// Lists users and their tags.
    #[command(alias = "list_users")]
    ListUsers,
    /// Sets what USER may do in a vhost: regular expressions on the names it may configure
    /// (declare, delete), write (publish to, bind to) and read (consume, get, bind from).
    #[command(alias = "set_permissions")]
    SetPermissions {
        user: String,
        configure: String,
        write: String,
        read: String,
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Removes USER's permissions in a vhost.
    #[command(alias = "clear_permissions")]
    ClearPermissions {
        user: String,
        #[arg(long, short = 'p', default_value = "/")]
        vhost: String,
    },
    /// Lists the permissions in a vhost.
    #[command(alias = "list_permissions")]
    ListPermissions(VhostArgs),
    /// Lists queues: name and messages, or the columns given (name, messages,
    /// messages_ready, messages_unacknowledged, consumers, durable, auto_delete, exclusive,
    /// arguments, type).
    #[command(alias = "list_queues")]
    ListQueues(ColumnArgs),
    /// Lists exchanges: name and type, or the columns given (name, type, durable,
    /// auto_delete, internal, arguments).
    #[command(alias = "list_exchanges")]
    ListExchanges(ColumnArgs),
    /// Lists bindings: source_name, source_kind, destination_name, destination_kind,
    /// routing_key, arguments (or the columns given).
    #[command(alias = "list_bindings")]
    ListBindings(ColumnArgs),
    /// Lists client connections: user, peer_host, peer_port, state, or the columns given
    /// (also name, vhost, channels).
    #[command(alias = "list_connections")]
    ListConnections { columns: Vec<String> },
    /// Closes the connection NAME (as list_connections names it): the client gets
    /// connection.close 320 CONNECTION_FORCED with EXPLANATION.
    #[command(alias = "close_connection")]
    CloseConnection { name: String, explanation: String },
    /// A short summary of the running broker.
    Status,
    /// Writes the definitions (users, permissions, policies, durable queues, exchanges and
    /// bindings) as RabbitMQ's JSON to PATH, or to standard output for -.
    #[command(alias = "export_definitions")]
    ExportDefinitions { path: String },
    /// Loads a definitions file (RabbitMQ's JSON export) into the running broker.
    #[command(alias = "import_definitions")]
    ImportDefinitions { path: PathBuf },
    /// Prints every publish and delivery in a vhost as one JSON line each, until
    /// interrupted (RabbitMQ's firehose tracer, without its exchange); tracing is off again
    /// once this stops. Over the control socket only.
    Trace(VhostArgs),
    #[command(flatten)]
    Access(access::AccessCommand),
}

#[derive(Args, Debug)]
struct ColumnArgs {
    #[arg(long, short = 'p', default_value = "/")]
    vhost: String,
    columns: Vec<String>,
}

/// Columns given one per argument or comma-separated.
fn column_list(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .flat_map(|c| c.split(','))
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Args, Debug)]
struct PolicyArgs {
    name: String,
    pattern: String,
    definition: String,
    #[arg(long, short = 'p', default_value = "/")]
    vhost: String,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i64,
    /// queues, exchanges or all (operator policies: queues).
    #[arg(long = "apply-to")]
    apply_to: Option<String>,
}

#[derive(Args, Debug)]
struct NameArgs {
    name: String,
    #[arg(long, short = 'p', default_value = "/")]
    vhost: String,
}

#[derive(Args, Debug)]
struct VhostArgs {
    #[arg(long, short = 'p', default_value = "/")]
    vhost: String,
}

/// Runs `warren ctl ARGS...` (`args` without the program name and `ctl`); the exit code.
pub fn main(args: &[String]) -> i32 {
    let argv = std::iter::once("warren ctl".to_string()).chain(args.iter().cloned());
    let ctl = match Ctl::try_parse_from(argv) {
        Ok(ctl) => ctl,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 64 } else { 0 };
        }
    };
    let export_to = match &ctl.command {
        Command::ExportDefinitions { path } if path != "-" => Some(PathBuf::from(path)),
        _ => None,
    };
    let target = match &ctl.api {
        Some(url) => match remote::Api::parse(url, &ctl.api_user, &ctl.api_password) {
            Ok(api) => Target::Api(api),
            Err(err) => return usage_error(&err),
        },
        None => Target::Socket(crate::config::ctl_socket(&ctl.data_dir)),
    };
    if let Command::Trace(v) = &ctl.command {
        return match &target {
            Target::Socket(socket) => trace::run(socket, &v.vhost),
            Target::Api(_) => usage_error(trace::NOT_OVER_API),
        };
    }
    let inline = matches!(target, Target::Api(_));
    let request = match request(ctl.command, inline) {
        Ok(request) => request,
        Err(err) => return usage_error(&err),
    };
    match send(&target, &request) {
        Ok(output) if export_to.is_some() => write_definitions(export_to, &output),
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            0
        }
        Err(err) => {
            eprintln!("warren ctl: {err}");
            1
        }
    }
}

fn usage_error(err: &str) -> i32 {
    eprintln!("warren ctl: {err}");
    64
}

/// The request line for `command`; `inline`: a definitions file travels as its content
/// (for a broker that may be on another host) rather than as its path.
fn request(command: Command, inline: bool) -> Result<Value, String> {
    let policy = |p: PolicyArgs, operator: bool| -> Result<Value, String> {
        let definition: Value = serde_json::from_str(&p.definition)
            .map_err(|e| format!("the definition is not valid JSON: {e}"))?;
        let apply_to = p
            .apply_to
            .unwrap_or_else(|| if operator { "queues" } else { "all" }.to_string());
        Ok(json!({
            "command": "set-policy",
            "operator": operator,
            "policy": {
                "vhost": p.vhost, "name": p.name, "pattern": p.pattern,
                "apply-to": apply_to, "priority": p.priority, "definition": definition,
            },
        }))
    };
    let clear = |n: NameArgs, operator: bool| json!({"command": "clear-policy", "operator": operator, "vhost": n.vhost, "name": n.name});
    let list = |v: VhostArgs, operator: bool| json!({"command": "list-policies", "operator": operator, "vhost": v.vhost});
    Ok(match command {
        Command::SetPolicy(p) => policy(p, false)?,
        Command::SetOperatorPolicy(p) => policy(p, true)?,
        Command::ClearPolicy(n) => clear(n, false),
        Command::ClearOperatorPolicy(n) => clear(n, true),
        Command::ListPolicies(v) => list(v, false),
        Command::ListOperatorPolicies(v) => list(v, true),
        Command::AddUser { name, password } => {
            json!({"command": "add-user", "name": name, "password": password})
        }
        Command::DeleteUser { name } => json!({"command": "delete-user", "name": name}),
        Command::ChangePassword { name, password } => {
            json!({"command": "change-password", "name": name, "password": password})
        }
        Command::SetUserTags { name, tags } => {
            json!({"command": "set-user-tags", "name": name, "tags": tags})
        }
        Command::ListUsers => json!({"command": "list-users"}),
        Command::SetPermissions {
            user,
            configure,
            write,
            read,
            vhost,
        } => json!({"command": "set-permissions", "user": user, "vhost": vhost,
            "configure": configure, "write": write, "read": read}),
        Command::ClearPermissions { user, vhost } => {
            json!({"command": "clear-permissions", "user": user, "vhost": vhost})
        }
        Command::ListPermissions(v) => json!({"command": "list-permissions", "vhost": v.vhost}),
        Command::Access(a) => a.request(),
        other => query(other, inline)?,
    })
}

/// The listing, status and definitions requests.
fn query(command: Command, inline: bool) -> Result<Value, String> {
    let listing = |command: &str, c: ColumnArgs| json!({"command": command, "vhost": c.vhost, "columns": column_list(&c.columns)});
    Ok(match command {
        Command::ListQueues(c) => listing("list-queues", c),
        Command::ListExchanges(c) => listing("list-exchanges", c),
        Command::ListBindings(c) => listing("list-bindings", c),
        Command::ListConnections { columns } => {
            json!({"command": "list-connections", "columns": column_list(&columns)})
        }
        Command::CloseConnection { name, explanation } => {
            json!({"command": "close-connection", "name": name, "explanation": explanation})
        }
        Command::Status => json!({"command": "status"}),
        Command::ExportDefinitions { .. } => json!({"command": "export-definitions"}),
        Command::ImportDefinitions { path } if inline => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let definitions: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
            json!({"command": "import-definitions", "definitions": definitions})
        }
        Command::ImportDefinitions { path } => {
            let path = std::fs::canonicalize(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            json!({"command": "import-definitions", "path": path})
        }
        other => return Err(format!("unexpected command {other:?}")),
    })
}

/// Writes exported definitions to their file; the exit code.
fn write_definitions(path: Option<PathBuf>, json: &str) -> i32 {
    let Some(path) = path else {
        return 0;
    };
    match std::fs::write(&path, json) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("warren ctl: cannot write {}: {err}", path.display());
            1
        }
    }
}

/// The control socket, or why it cannot be reached.
fn connect(socket: &std::path::Path) -> Result<UnixStream, String> {
    UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach a broker at {} ({e}); is it running with this --data-dir? \
             (or manage it through its management API with --api URL)",
            socket.display()
        )
    })
}

/// Sends one request and returns the broker's output, or its refusal.
fn send(target: &Target, request: &Value) -> Result<String, String> {
    let reply = match target {
        Target::Socket(socket) => ask_socket(socket, request)?,
        Target::Api(api) => api.send(request)?,
    };
    if reply["ok"].as_bool() == Some(true) {
        Ok(reply["output"].as_str().unwrap_or_default().to_string())
    } else {
        Err(reply["error"].as_str().unwrap_or("refused").to_string())
    }
}

/// One request line over the control socket; the answer line.
fn ask_socket(socket: &std::path::Path, request: &Value) -> Result<Value, String> {
    let mut stream = connect(socket)?;
    writeln!(stream, "{request}").map_err(|e| format!("cannot send the request: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("no answer from the broker: {e}"))?;
    serde_json::from_str(&line).map_err(|_| format!("unexpected answer: {line:?}"))
}
