//! Behaviour of `Bindings` across exchange types.

use bytes::Bytes;
use smallvec::SmallVec;

use super::*;
use crate::protocol::table::FieldValue;

fn no_args() -> FieldTable {
    FieldTable::default()
}

fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
    FieldTable(
        entries
            .iter()
            .map(|(key, value)| (Bytes::copy_from_slice(key.as_bytes()), value.clone()))
            .collect(),
    )
}

fn text(value: &'static str) -> FieldValue {
    FieldValue::LongStr(Bytes::from_static(value.as_bytes()))
}

fn route(bindings: &Bindings<u32>, key: &str, headers: Option<&FieldTable>) -> Vec<u32> {
    let mut out: SmallVec<[u32; 8]> = SmallVec::new();
    bindings.route(key.as_bytes(), headers, &mut out);
    let mut out = out.to_vec();
    let routed = out.len();
    out.sort_unstable();
    out.dedup();
    assert_eq!(
        out.len(),
        routed,
        "route appended a destination twice for key {key:?}"
    );
    out
}

#[test]
fn exchange_kind_parses_rabbitmq_names() {
    for kind in [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ] {
        assert_eq!(ExchangeKind::parse(kind.as_str().as_bytes()), Some(kind));
    }
    assert_eq!(ExchangeKind::parse(b"x-consistent-hash"), None);
    assert_eq!(ExchangeKind::parse(b"Direct"), None);
}

#[test]
fn direct_routes_on_exact_key_only() {
    let mut bindings = Bindings::new(ExchangeKind::Direct);
    assert!(bindings.bind(1, b"orders", &no_args()));
    assert!(bindings.bind(2, b"orders", &no_args()));
    assert!(bindings.bind(3, b"", &no_args()));
    assert!(bindings.bind(4, b"orders.eu", &no_args()));
    assert_eq!(route(&bindings, "orders", None), vec![1, 2]);
    assert_eq!(route(&bindings, "", None), vec![3]);
    assert_eq!(route(&bindings, "orders.*", None), Vec::<u32>::new());
    assert_eq!(route(&bindings, "Orders", None), Vec::<u32>::new());
}

#[test]
fn duplicate_bind_is_a_no_op_but_other_arguments_make_a_new_binding() {
    let mut bindings = Bindings::new(ExchangeKind::Direct);
    let ab = table(&[("a", FieldValue::I32(1)), ("b", text("x"))]);
    let ba = table(&[("b", text("x")), ("a", FieldValue::I32(1))]);
    assert!(bindings.bind(1, b"k", &ab));
    assert!(
        !bindings.bind(1, b"k", &ab),
        "same binding twice should be a no-op"
    );
    assert!(
        !bindings.bind(1, b"k", &ba),
        "argument order should not make a new binding"
    );
    assert!(bindings.bind(1, b"k", &no_args()));
    assert_eq!(bindings.len(), 2);
    assert_eq!(route(&bindings, "k", None), vec![1]);
    assert!(bindings.unbind(1, b"k", &ba));
    assert_eq!(
        route(&bindings, "k", None),
        vec![1],
        "the other binding with key k remains"
    );
    assert!(bindings.unbind(1, b"k", &no_args()));
    assert_eq!(route(&bindings, "k", None), Vec::<u32>::new());
    assert!(bindings.is_empty());
    assert!(!bindings.has_destination(1));
}

#[test]
fn unbind_of_missing_binding_returns_false() {
    let mut bindings = Bindings::new(ExchangeKind::Topic);
    bindings.bind(1, b"a.*", &no_args());
    assert!(!bindings.unbind(2, b"a.*", &no_args()));
    assert!(!bindings.unbind(1, b"a.#", &no_args()));
    assert!(!bindings.unbind(1, b"a.*", &table(&[("x", FieldValue::Void)])));
    assert_eq!(bindings.len(), 1);
    assert_eq!(route(&bindings, "a.b", None), vec![1]);
}

#[test]
fn fanout_ignores_the_key_and_routes_each_destination_once() {
    let mut bindings = Bindings::new(ExchangeKind::Fanout);
    for dest in 1..=8 {
        assert!(bindings.bind(dest, b"", &no_args()));
    }
    assert!(bindings.bind(3, b"other-key", &no_args()));
    assert_eq!(
        route(&bindings, "anything.at.all", None),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(bindings.unbind(3, b"", &no_args()));
    assert!(
        route(&bindings, "", None).contains(&3),
        "3 is still bound with another key"
    );
    assert!(bindings.unbind(3, b"other-key", &no_args()));
    assert_eq!(route(&bindings, "", None), vec![1, 2, 4, 5, 6, 7, 8]);
}

#[test]
fn topic_routes_each_destination_once_when_several_patterns_match() {
    let mut bindings = Bindings::new(ExchangeKind::Topic);
    bindings.bind(1, b"a.*", &no_args());
    bindings.bind(1, b"#", &no_args());
    bindings.bind(1, b"a.b", &table(&[("x", FieldValue::I32(1))]));
    bindings.bind(1, b"a.b", &no_args());
    bindings.bind(2, b"*.b", &no_args());
    assert_eq!(route(&bindings, "a.b", None), vec![1, 2]);
    assert_eq!(route(&bindings, "c", None), vec![1]);
    // Outputs already in `out` are not touched by deduplication.
    let mut out: SmallVec<[u32; 8]> = SmallVec::new();
    out.push(2);
    bindings.route(b"a.b", None, &mut out);
    let mut appended = out[1..].to_vec();
    appended.sort_unstable();
    assert_eq!((out[0], appended), (2, vec![1, 2]));
}

#[test]
fn remove_destination_drops_all_its_bindings_and_prunes_the_trie() {
    let mut bindings = Bindings::new(ExchangeKind::Topic);
    for pattern in ["a.*.c", "a.#", "x.y.z", "#.deep.#.er"] {
        bindings.bind(1, pattern.as_bytes(), &no_args());
        bindings.bind(1, pattern.as_bytes(), &table(&[("v", FieldValue::I32(2))]));
    }
    bindings.bind(2, b"a.#", &no_args());
    let nodes_with_both = bindings.topic_node_count();
    assert_eq!(bindings.remove_destination(1), 8);
    assert_eq!(bindings.remove_destination(1), 0);
    assert_eq!(bindings.len(), 1);
    assert!(!bindings.has_destination(1));
    assert_eq!(route(&bindings, "a.b.c", None), vec![2]);
    assert!(bindings.topic_node_count() < nodes_with_both);
    assert_eq!(
        bindings.topic_node_count(),
        3,
        "root, a and a.# should remain"
    );
    assert_eq!(bindings.remove_destination(2), 1);
    assert_eq!(bindings.topic_node_count(), 1);
}

#[test]
fn remove_destination_for_each_kind() {
    for kind in [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ] {
        let mut bindings = Bindings::new(kind);
        bindings.bind(1, b"k", &no_args());
        bindings.bind(1, b"j", &no_args());
        bindings.bind(2, b"k", &no_args());
        assert_eq!(bindings.remove_destination(1), 2, "{kind:?}");
        assert_eq!(route(&bindings, "k", None), vec![2], "{kind:?}");
        assert_eq!(route(&bindings, "j", None), kind_routes_j(kind), "{kind:?}");
        assert_eq!(bindings.len(), 1, "{kind:?}");
    }
}

fn kind_routes_j(kind: ExchangeKind) -> Vec<u32> {
    match kind {
        ExchangeKind::Direct | ExchangeKind::Topic => vec![],
        ExchangeKind::Fanout | ExchangeKind::Headers => vec![2],
    }
}

#[test]
fn iter_lists_every_binding_with_sorted_arguments() {
    let mut bindings = Bindings::new(ExchangeKind::Direct);
    bindings.bind(
        1,
        b"k",
        &table(&[("b", FieldValue::I32(1)), ("a", FieldValue::I32(2))]),
    );
    bindings.bind(1, b"k", &no_args());
    bindings.bind(2, b"j", &no_args());
    let mut listed: Vec<(u32, Vec<u8>, Vec<Bytes>)> = bindings
        .iter()
        .map(|(dest, key, arguments)| {
            (
                dest,
                key.to_vec(),
                arguments.0.iter().map(|(k, _)| k.clone()).collect(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            (1, b"k".to_vec(), vec![]),
            (
                1,
                b"k".to_vec(),
                vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
            ),
            (2, b"j".to_vec(), vec![]),
        ]
    );
}

#[test]
fn topic_churn_does_not_grow_the_trie() {
    let mut bindings = Bindings::new(ExchangeKind::Topic);
    for round in 0..50u32 {
        for queue in 0..100u32 {
            let pattern = format!("t{round}.q{queue}.#.*");
            assert!(bindings.bind(queue, pattern.as_bytes(), &no_args()));
        }
        for queue in 0..100u32 {
            let pattern = format!("t{round}.q{queue}.#.*");
            assert!(bindings.unbind(queue, pattern.as_bytes(), &no_args()));
        }
        assert_eq!(
            bindings.topic_node_count(),
            1,
            "round {round} left nodes behind"
        );
    }
    assert!(bindings.is_empty());
}

#[test]
fn headers_exchange_routes_on_headers_not_key() {
    let mut bindings = Bindings::new(ExchangeKind::Headers);
    let pdf_report = table(&[("format", text("pdf")), ("type", text("report"))]);
    let any_pdf_or_log = table(&[
        ("x-match", text("any")),
        ("format", text("pdf")),
        ("type", text("log")),
    ]);
    bindings.bind(1, b"ignored", &pdf_report);
    bindings.bind(2, b"", &any_pdf_or_log);
    bindings.bind(2, b"", &pdf_report);
    bindings.bind(3, b"", &table(&[("trace", FieldValue::Void)]));
    let message = table(&[
        ("type", text("report")),
        ("format", text("pdf")),
        ("trace", FieldValue::I32(0)),
    ]);
    assert_eq!(route(&bindings, "whatever", Some(&message)), vec![1, 2, 3]);
    let log = table(&[("type", text("log"))]);
    assert_eq!(route(&bindings, "", Some(&log)), vec![2]);
    assert_eq!(route(&bindings, "", None), Vec::<u32>::new());
    assert!(bindings.unbind(2, b"", &any_pdf_or_log));
    assert_eq!(route(&bindings, "", Some(&log)), Vec::<u32>::new());
    assert_eq!(route(&bindings, "", Some(&message)), vec![1, 2, 3]);
}

#[test]
fn headers_binding_without_arguments_matches_every_message() {
    let mut bindings = Bindings::new(ExchangeKind::Headers);
    bindings.bind(1, b"", &no_args());
    bindings.bind(2, b"", &table(&[("x-match", text("any"))]));
    assert_eq!(route(&bindings, "", None), vec![1]);
}
