//! The `warren ctl` verbs that read the running broker (queues, exchanges, bindings,
//! connections, status) or load topology (definitions): served on shard 0, gathering from
//! every shard where the state lives there (see [`super::gather`]).

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;

use super::listing::{self, columns};
use super::ControlReply;
use crate::broker::inspect::Inspect;
use crate::broker::topology::{BindingChange, Dest, TopologyChange};
use crate::broker::{OpOk, QueueOp};
use crate::ids::ConnRef;
use crate::protocol::FieldTable;
use crate::shard::Shard;

/// A read-only or topology-loading request.
#[derive(Debug)]
pub enum Query {
    ListQueues {
        vhost: Bytes,
        columns: Vec<String>,
    },
    ListExchanges {
        vhost: Bytes,
        columns: Vec<String>,
    },
    ListBindings {
        vhost: Bytes,
        columns: Vec<String>,
    },
    ListConnections {
        columns: Vec<String>,
    },
    CloseConnection {
        name: String,
        explanation: String,
    },
    Status,
    /// Everything the management API shows, as JSON (see [`super::snapshot`]).
    Snapshot,
    /// Definitions in RabbitMQ's export format, as JSON text.
    ExportDefinitions,
    ImportQueue(QueueDef),
    ImportBinding(BindingDef),
    /// Removes a binding (nothing happens if there is none).
    Unbind(BindingDef),
}

/// A durable queue from a definitions file.
#[derive(Debug)]
pub struct QueueDef {
    pub vhost: Bytes,
    pub name: Bytes,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// A binding from a definitions file.
#[derive(Debug)]
pub struct BindingDef {
    pub vhost: Bytes,
    pub source: Bytes,
    pub destination: Bytes,
    /// `destination_type` is `queue` (else `exchange`).
    pub to_queue: bool,
    pub routing_key: Bytes,
    pub arguments: FieldTable,
}

/// When the control service started: the broker's uptime for `status`.
static STARTED: OnceLock<Instant> = OnceLock::new();

pub fn mark_started() {
    STARTED.get_or_init(Instant::now);
}

pub async fn handle(shard: &Shard, query: Query) -> ControlReply {
    match query {
        Query::ListQueues { vhost, columns: c } => {
            let c = columns(&c, listing::QUEUE_COLUMNS, &["name", "messages"])?;
            // A vhost that does not exist has no queues, as rabbitmqctl 3.10 answers.
            let mut queues = shard.all_queues().await;
            queues.retain(|q| q.vhost == vhost);
            Ok(listing::list_queues(&queues, &c))
        }
        Query::ListExchanges { vhost, columns: c } => {
            let c = columns(&c, listing::EXCHANGE_COLUMNS, &["name", "type"])?;
            existing_vhost(shard, &vhost)?;
            Ok(listing::list_exchanges(
                &shard.topology.borrow(),
                &vhost,
                &c,
            ))
        }
        Query::ListBindings { vhost, columns: c } => {
            let c = columns(&c, listing::BINDING_COLUMNS, listing::BINDING_COLUMNS)?;
            existing_vhost(shard, &vhost)?;
            let mut queues = shard.all_queues().await;
            queues.retain(|q| q.vhost == vhost);
            let bindings = listing::bindings(&shard.topology.borrow(), &queues, &vhost, true);
            Ok(listing::list_bindings(&bindings, &c))
        }
        Query::ListConnections { columns: c } => {
            let default = ["user", "peer_host", "peer_port", "state"];
            let c = columns(&c, listing::CONNECTION_COLUMNS, &default)?;
            Ok(listing::list_connections(
                &shard.all_connections().await,
                &c,
            ))
        }
        Query::CloseConnection { name, explanation } => {
            close_connection(shard, name, explanation).await
        }
        Query::Status => Ok(status(shard).await),
        Query::Snapshot => Ok(super::snapshot::snapshot(shard).await),
        Query::ExportDefinitions => Ok(super::definitions::export(shard).await),
        Query::ImportQueue(def) => import_queue(shard, def).await,
        Query::ImportBinding(def) => import_binding(shard, def, true).await,
        Query::Unbind(def) => import_binding(shard, def, false).await,
    }
}

/// The refusal of `-p` naming a vhost that does not exist.
fn existing_vhost(shard: &Shard, vhost: &[u8]) -> Result<(), String> {
    shard
        .topology
        .borrow()
        .vhost_exists(vhost)
        .map_err(|e| e.text)
}

async fn close_connection(shard: &Shard, name: String, explanation: String) -> ControlReply {
    let what = Inspect::CloseConnection {
        name: name.clone(),
        explanation,
    };
    let mut closed = 0;
    for answer in shard.gather(what).await {
        if let crate::broker::inspect::Inspected::Closed(n) = answer {
            closed += n;
        }
    }
    if closed == 0 {
        return Err(format!("no connection named '{name}'"));
    }
    Ok(String::new())
}

/// A short summary in the spirit of `rabbitmqctl status`.
async fn status(shard: &Shard) -> String {
    let connections = shard.all_connections().await.len();
    let queues = shard.all_queues().await.len();
    let uptime_secs = STARTED.get().map_or(0, |t| t.elapsed().as_secs());
    let listeners: Vec<String> = shard
        .config
        .listen
        .iter()
        .map(|a| format!("interface: {}, port: {}, protocol: amqp", a.ip(), a.port()))
        .collect();
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l["VmRSS:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    format!(
        "Runtime\n\nOS PID: {}\nUptime (seconds): {uptime_secs}\nWarren version: {}\n\
         Shards: {}\n\nListeners\n\n{}\n\nTotals\n\nConnection count: {connections}\n\
         Queue count: {queues}\n\nMemory\n\nTotal memory used (RSS): {rss}",
        std::process::id(),
        env!("CARGO_PKG_VERSION"),
        shard.count,
        listeners.join("\n"),
    )
}

/// Who declares an imported queue: no connection (only an exclusive queue keeps its owner).
pub(super) fn no_connection() -> ConnRef {
    ConnRef {
        shard: 0,
        key: u32::MAX,
        serial: 0,
    }
}

async fn import_queue(shard: &Shard, def: QueueDef) -> ControlReply {
    let owner = shard.queue_owner(&def.vhost, &def.name);
    let op = QueueOp::Declare {
        vhost: def.vhost,
        name: def.name,
        passive: false,
        durable: def.durable,
        exclusive: false,
        auto_delete: def.auto_delete,
        arguments: def.arguments,
        owner: no_connection(),
    };
    shard.request(owner, op).await.map_err(|e| e.text)?;
    Ok(String::new())
}

/// Binds (or with `bind` false unbinds) as the definition says.
async fn import_binding(shard: &Shard, def: BindingDef, bind: bool) -> ControlReply {
    let vhost = def.vhost.clone();
    let missing = |kind: &str, name: &[u8]| {
        format!(
            "no {kind} '{}' in vhost '{}'",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(&vhost)
        )
    };
    if shard
        .topology
        .borrow()
        .exchange(&def.vhost, &def.source)
        .is_none()
    {
        return Err(missing("exchange", &def.source));
    }
    let (dest, dest_durable, via) = if def.to_queue {
        let lookup = QueueOp::Declare {
            vhost: def.vhost.clone(),
            name: def.destination.clone(),
            passive: true,
            durable: false,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
            owner: no_connection(),
        };
        let owner = shard.queue_owner(&def.vhost, &def.destination);
        match shard.request(owner, lookup).await {
            Ok(OpOk::Declared { queue, durable, .. }) => (Dest::Queue(queue), durable, owner),
            _ => return Err(missing("queue", &def.destination)),
        }
    } else {
        let topology = shard.topology.borrow();
        match topology.exchange(&def.vhost, &def.destination) {
            Some(ex) => (Dest::Exchange(ex.id), ex.durable, 0),
            None => return Err(missing("exchange", &def.destination)),
        }
    };
    let change = BindingChange {
        vhost: def.vhost,
        source: def.source,
        dest,
        dest_name: def.destination,
        dest_durable,
        routing_key: def.routing_key,
        arguments: def.arguments,
    };
    let change = if bind {
        TopologyChange::Bind(change)
    } else {
        TopologyChange::Unbind(change)
    };
    shard
        .change_topology_via(via, change)
        .await
        .map_err(|e| e.text)?;
    Ok(String::new())
}
