//! A closing connection's exclusive queues, found through the per-connection index.

use bytes::Bytes;

use super::{Broker, ConnRef, OpOk, Outbox, QueueOp};
use crate::protocol::FieldTable;

fn conn(key: u32) -> ConnRef {
    ConnRef {
        shard: 0,
        key,
        serial: 1,
    }
}

fn declare(broker: &mut Broker, name: &'static str, exclusive: bool, owner: ConnRef) {
    let op = QueueOp::Declare {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::from_static(name.as_bytes()),
        passive: false,
        durable: false,
        exclusive,
        auto_delete: false,
        arguments: FieldTable::default(),
        owner,
    };
    let result = broker.apply(op, &mut Outbox::new());
    assert!(
        matches!(result, Ok(OpOk::Declared { .. })),
        "expected {name} declared, got {result:?}"
    );
}

fn exists(broker: &Broker, name: &'static str) -> bool {
    broker.by_name.get(b"/", name.as_bytes()).is_some()
}

#[test]
fn closing_a_connection_deletes_its_exclusive_queues_and_no_other() {
    let (a, b) = (conn(1), conn(2));
    let mut broker = Broker::new(0);
    declare(&mut broker, "a1", true, a);
    declare(&mut broker, "a2", true, a);
    declare(&mut broker, "b1", true, b);
    declare(&mut broker, "shared", false, a);
    let op = QueueOp::Delete {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::from_static(b"a2"),
        if_unused: false,
        if_empty: false,
        owner: a,
    };
    assert!(broker.apply(op, &mut Outbox::new()).is_ok(), "a2 deleted");
    broker
        .apply(QueueOp::ConnectionClosed { conn: a }, &mut Outbox::new())
        .expect("connection closed");
    assert!(!exists(&broker, "a1"), "expected a's exclusive queue gone");
    assert!(exists(&broker, "b1"), "expected b's exclusive queue kept");
    assert!(
        exists(&broker, "shared"),
        "expected the non-exclusive queue kept"
    );
    assert!(
        !broker.exclusive_by_conn.contains_key(&a),
        "expected a forgotten by the index"
    );
    assert_eq!(
        broker.exclusive_by_conn[&b].len(),
        1,
        "expected b's one queue indexed"
    );
    assert!(broker.check_invariants());
}
