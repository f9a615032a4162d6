//! Requests from outside the shards (`warren ctl`, definitions loaded at start, later the
//! management API): they arrive on a channel from another thread and are served on shard 0,
//! the topology owner, as any topology change is.

use std::rc::Rc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::Shard;
use crate::broker::policy::definition_to_json;
use crate::broker::topology::TopologyChange;
use crate::store::record::PolicyDef;

/// What an operator asks.
#[derive(Debug)]
pub enum Control {
    SetPolicy(PolicyDef),
    ClearPolicy {
        vhost: Bytes,
        name: Bytes,
        operator: bool,
    },
    /// Policies (or operator policies) as a JSON array, in RabbitMQ's export format.
    ListPolicies {
        operator: bool,
    },
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
    while let Some(request) = requests.recv().await {
        let shard = shard.clone();
        crate::io::spawn(async move {
            let answer = handle(&shard, request.what).await;
            let _ = request.reply.send(answer);
        });
    }
}

async fn handle(shard: &Shard, what: Control) -> ControlReply {
    let change = match what {
        Control::ListPolicies { operator } => return Ok(list_policies(shard, operator)),
        Control::SetPolicy(def) => TopologyChange::SetPolicy(def),
        Control::ClearPolicy {
            vhost,
            name,
            operator,
        } => TopologyChange::ClearPolicy {
            vhost,
            name,
            operator,
        },
    };
    match shard.change_topology(change).await {
        Ok(()) => Ok(String::new()),
        Err(err) => Err(err.text),
    }
}

fn list_policies(shard: &Shard, operator: bool) -> String {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let topology = shard.topology.borrow();
    let list: Vec<serde_json::Value> = topology
        .policies()
        .iter()
        .filter(|p| p.operator == operator)
        .map(|p| {
            serde_json::json!({
                "vhost": text(&p.vhost),
                "name": text(&p.name),
                "pattern": text(&p.pattern),
                "apply-to": text(&p.apply_to),
                "definition": definition_to_json(&p.definition),
                "priority": p.priority,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}
