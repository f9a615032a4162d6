use super::*;
use crate::broker::topology::BindingChange;

fn exchange(t: &mut Topology, name: &'static str, kind: ExchangeKind) -> u32 {
    let declare = TopologyChange::DeclareExchange {
        id: 0,
        vhost: Bytes::from_static(b"/"),
        name: Bytes::from_static(name.as_bytes()),
        kind,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::default(),
    };
    let change = t.validate(declare).ok().flatten().expect("a new exchange");
    t.apply(&change);
    t.exchange(b"/", name.as_bytes())
        .map(|ex| ex.id)
        .expect("declared")
}

fn bind(t: &mut Topology, source: &'static str, dest: Dest) {
    let change = TopologyChange::Bind(BindingChange {
        vhost: Bytes::from_static(b"/"),
        source: Bytes::from_static(source.as_bytes()),
        dest,
        dest_name: Bytes::new(),
        dest_durable: false,
        routing_key: Bytes::new(),
        arguments: FieldTable::default(),
    });
    t.apply(&change);
}

fn queue(n: u32) -> QueueRef {
    QueueRef {
        shard: 0,
        key: n,
        serial: 1,
    }
}

#[test]
fn a_fanout_to_100k_queues_routes_each_once_without_quadratic_work() {
    let mut t = Topology::new();
    exchange(&mut t, "wide", ExchangeKind::Fanout);
    let via = exchange(&mut t, "via", ExchangeKind::Fanout);
    for n in 0..100_000 {
        bind(&mut t, "wide", Dest::Queue(queue(n)));
        bind(&mut t, "via", Dest::Queue(queue(n)));
    }
    bind(&mut t, "wide", Dest::Exchange(via));
    let mut queues = SmallVec::new();
    let started = std::time::Instant::now();
    t.route(b"/", b"wide", b"", None, &mut queues)
        .expect("routes");
    let took = started.elapsed();
    assert_eq!(queues.len(), 100_000, "expected each queue once");
    // A lookup per destination needs ~10^10 comparisons here (seconds); sorting needs
    // milliseconds. The bound is generous.
    assert!(
        took < std::time::Duration::from_secs(2),
        "routing took {took:?}"
    );
}
