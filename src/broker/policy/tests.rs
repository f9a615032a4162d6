use super::*;

fn def(name: &str, pattern: &str, priority: i64, json: &str, operator: bool) -> PolicyDef {
    let value: serde_json::Value = serde_json::from_str(json).expect("json");
    PolicyDef {
        vhost: Bytes::from_static(b"/"),
        name: Bytes::copy_from_slice(name.as_bytes()),
        operator,
        pattern: Bytes::copy_from_slice(pattern.as_bytes()),
        apply_to: Bytes::from_static(b"queues"),
        priority,
        definition: definition_from_json(&value).expect("definition"),
    }
}

fn policies(defs: Vec<PolicyDef>) -> Policies {
    let mut p = Policies::default();
    for d in defs {
        p.set(Policy::compile(d).expect("valid policy"));
    }
    p
}

fn int(table: &FieldTable, key: &str) -> Option<i64> {
    table.get(key).and_then(FieldValue::as_i64)
}

#[test]
fn the_highest_priority_policy_applies() {
    let p = policies(vec![
        def("low", "^work", 1, r#"{"max-length": 10}"#, false),
        def("high", "^work", 5, r#"{"max-length": 20}"#, false),
        def("other", "^mail", 9, r#"{"max-length": 30}"#, false),
    ]);
    let none = FieldTable::default();
    let args = p.queue_arguments(b"/", b"work.1", &none);
    assert_eq!(int(&args, "x-max-length"), Some(20));
    assert!(matches!(
        p.queue_arguments(b"/", b"jobs", &FieldTable::default()),
        Cow::Borrowed(_)
    ));
}

#[test]
fn numeric_limits_take_the_lowest_and_other_keys_prefer_the_argument() {
    let p = policies(vec![
        def(
            "p",
            ".*",
            0,
            r#"{"max-length": 10, "message-ttl": 5000, "dead-letter-exchange": "dlx", "overflow": "reject-publish"}"#,
            false,
        ),
        def("cap", ".*", 0, r#"{"max-length": 7}"#, true),
    ]);
    let mut args = FieldTable::default();
    args.insert("x-message-ttl", FieldValue::I32(100));
    args.insert(
        "x-dead-letter-exchange",
        FieldValue::LongStr(Bytes::from_static(b"mine")),
    );
    let eff = p.queue_arguments(b"/", b"q", &args);
    assert_eq!(int(&eff, "x-max-length"), Some(7));
    assert_eq!(int(&eff, "x-message-ttl"), Some(100));
    assert_eq!(
        eff.get("x-dead-letter-exchange")
            .and_then(FieldValue::as_bytes),
        Some(&b"mine"[..])
    );
    assert_eq!(
        eff.get("x-overflow").and_then(FieldValue::as_bytes),
        Some(&b"reject-publish"[..])
    );
}

#[test]
fn bad_definitions_are_refused() {
    for (json, operator) in [
        (r#"{"max-length": -1}"#, false),
        (r#"{"expires": 0}"#, false),
        (r#"{"overflow": "sideways"}"#, false),
        (r#"{"max-priority": 5}"#, false),
        (r#"{"nonsense": 1}"#, false),
        (r#"{"dead-letter-exchange": "dlx"}"#, true),
    ] {
        let d = def("p", ".*", 0, json, operator);
        assert!(Policy::compile(d).is_err(), "{json} accepted");
    }
    let mut d = def("p", "(", 0, r#"{"max-length": 1}"#, false);
    assert!(Policy::compile(d.clone()).is_err());
    d.pattern = Bytes::from_static(b".*");
    d.apply_to = Bytes::from_static(b"streams");
    assert!(Policy::compile(d).is_err());
    assert!(Policy::compile(def("p", ".*", 0, r#"{"ha-mode": "all"}"#, false)).is_ok());
}

#[test]
fn replacing_and_clearing_by_name() {
    let mut p = policies(vec![def("p", ".*", 0, r#"{"max-length": 1}"#, false)]);
    p.set(Policy::compile(def("p", ".*", 0, r#"{"max-length": 2}"#, false)).expect("ok"));
    assert_eq!(p.iter().count(), 1);
    assert_eq!(
        int(
            &p.queue_arguments(b"/", b"q", &FieldTable::default()),
            "x-max-length"
        ),
        Some(2)
    );
    assert!(!p.clear(b"/", b"p", true));
    assert!(p.clear(b"/", b"p", false));
    assert!(p.is_empty());
}

#[test]
fn alternate_exchange_from_argument_or_policy() {
    let mut d = def("ae", "^in$", 0, r#"{"alternate-exchange": "spill"}"#, false);
    d.apply_to = Bytes::from_static(b"exchanges");
    let p = policies(vec![d]);
    let none = FieldTable::default();
    assert_eq!(
        p.alternate_exchange(b"/", b"in", &none).as_deref(),
        Some(&b"spill"[..])
    );
    assert_eq!(p.alternate_exchange(b"/", b"inbox", &none), None);
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange",
        FieldValue::LongStr(Bytes::from_static(b"mine")),
    );
    assert_eq!(
        p.alternate_exchange(b"/", b"in", &args).as_deref(),
        Some(&b"mine"[..])
    );
    // An exchanges-only policy leaves queues alone.
    assert!(matches!(
        p.queue_arguments(b"/", b"in", &none),
        Cow::Borrowed(_)
    ));
}
