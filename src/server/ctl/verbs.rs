//! The control socket's listing, status and definitions requests, and the queues,
//! exchanges and bindings of a definitions file (RabbitMQ's export format).

use bytes::Bytes;
use serde_json::Value;

use crate::broker::policy::definition_from_json;
use crate::broker::topology::TopologyChange;
use crate::routing::ExchangeKind;
use crate::shard::control::{BindingDef, Control, Query, QueueDef};

/// The request for `command`, if it is one of these verbs.
pub fn parse_query(command: &str, request: &Value) -> Option<Result<Control, String>> {
    let vhost = || Bytes::copy_from_slice(request["vhost"].as_str().unwrap_or("/").as_bytes());
    let columns = || -> Vec<String> {
        request["columns"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let query = match command {
        "list-queues" => Query::ListQueues {
            vhost: vhost(),
            columns: columns(),
        },
        "list-exchanges" => Query::ListExchanges {
            vhost: vhost(),
            columns: columns(),
        },
        "list-bindings" => Query::ListBindings {
            vhost: vhost(),
            columns: columns(),
        },
        "list-connections" => Query::ListConnections { columns: columns() },
        "close-connection" => Query::CloseConnection {
            name: request["name"].as_str().unwrap_or_default().to_string(),
            explanation: request["explanation"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        },
        "status" => Query::Status,
        "export-definitions" => Query::ExportDefinitions,
        _ => return None,
    };
    Some(Ok(Control::Query(query)))
}

fn text(item: &Value, key: &str, what: &str) -> Result<Bytes, String> {
    item[key]
        .as_str()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .ok_or_else(|| format!("{what} field '{key}' must be a string"))
}

/// An item's `vhost`; `/` when it has none.
fn vhost_of(item: &Value) -> Bytes {
    Bytes::copy_from_slice(item["vhost"].as_str().unwrap_or("/").as_bytes())
}

fn flag(item: &Value, key: &str, default: bool) -> bool {
    item[key].as_bool().unwrap_or(default)
}

fn arguments(item: &Value, what: &str) -> Result<crate::protocol::FieldTable, String> {
    match item.get("arguments") {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(args) => definition_from_json(args).map_err(|e| format!("{what} arguments: {e}")),
    }
}

/// A queue as RabbitMQ exports it: `name`, `vhost`, `durable`, `auto_delete`, `arguments`
/// (its `type` is also an argument, `x-queue-type`, when it matters).
pub fn queue_from_json(item: &Value) -> Result<QueueDef, String> {
    Ok(QueueDef {
        vhost: vhost_of(item),
        name: text(item, "name", "queue")?,
        durable: flag(item, "durable", true),
        auto_delete: flag(item, "auto_delete", false),
        arguments: arguments(item, "queue")?,
    })
}

/// An exchange as RabbitMQ exports it: `name`, `vhost`, `type`, `durable`, `auto_delete`,
/// `internal`, `arguments`; declared as a client would. None for the predeclared ones (the
/// default exchange and `amq.*`), which RabbitMQ skips too.
pub fn exchange_from_json(item: &Value) -> Option<Result<Control, String>> {
    let declare = || {
        let kind = text(item, "type", "exchange")?;
        Ok(TopologyChange::DeclareExchange {
            id: 0,
            vhost: vhost_of(item),
            name: text(item, "name", "exchange")?,
            kind: ExchangeKind::parse(&kind).ok_or_else(|| {
                format!("unknown exchange type '{}'", String::from_utf8_lossy(&kind))
            })?,
            durable: flag(item, "durable", true),
            auto_delete: flag(item, "auto_delete", false),
            internal: flag(item, "internal", false),
            arguments: arguments(item, "exchange")?,
        })
    };
    match declare() {
        Ok(TopologyChange::DeclareExchange { name, .. })
            if name.is_empty() || name.starts_with(b"amq.") =>
        {
            None
        }
        declared => Some(declared.map(Control::Change)),
    }
}

/// A binding as RabbitMQ exports it: `source`, `vhost`, `destination`, `destination_type`
/// (`queue` or `exchange`), `routing_key`, `arguments`.
pub fn binding_from_json(item: &Value) -> Result<BindingDef, String> {
    let to_queue = match item["destination_type"].as_str() {
        Some("queue") => true,
        Some("exchange") => false,
        _ => return Err("binding field 'destination_type' must be queue or exchange".into()),
    };
    Ok(BindingDef {
        vhost: vhost_of(item),
        source: text(item, "source", "binding")?,
        destination: text(item, "destination", "binding")?,
        to_queue,
        routing_key: text(item, "routing_key", "binding")?,
        arguments: arguments(item, "binding")?,
    })
}
